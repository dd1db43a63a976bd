//! `uids` through the real filter: an outbound rule with `uids` admits the connections of
//! the listed users' sockets and drops the others', root's among them, on OUTPUT's
//! policy; a reload that adds a user lets it through, live; a filter made before `uids`
//! refuses a policy with them until `up` brings it to them.
use std::{fs, net::SocketAddrV4, process::Output};

use firewall_common::MAP_RULE_UIDS;
use tests::{
    lab::{Lab, SERVER_IF, STRANGER, assert_fails},
    require_root,
};

/// A backup service on the stranger, which only the backup user's jobs may reach.
const BACKUP: SocketAddrV4 = SocketAddrV4::new(STRANGER, 873);

fn backup_rule(uids: &str) -> String {
    format!(
        r#"
[[rule]]
name = "backup-out"
direction = "out"
protocols = ["tcp"]
port = 873
peers = ["{STRANGER}"]
uids = {uids}
"#
    )
}

/// Connects from the host to the backup service as `uid` (a real process of that user,
/// bash's `/dev/tcp`), sends a line and reads it back, within three seconds.
fn connect_as(lab: &Lab, uid: u32) -> Output {
    let script = format!(
        "exec 3<>/dev/tcp/{}/{} && echo hi >&3 && read -r -t 2 line <&3 && [ \"$line\" = hi ]",
        BACKUP.ip(),
        BACKUP.port()
    );
    let mut command = lab.server_command("setpriv");
    command.args([
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "timeout",
        "3",
        "bash",
        "-c",
        &script,
    ]);
    command.output().unwrap()
}

fn assert_reaches(lab: &Lab, uid: u32, expected: bool) {
    let output = connect_as(lab, uid);
    assert_eq!(
        output.status.success(),
        expected,
        "uid {uid} {} the backup service: {}",
        if expected { "should reach" } else { "should not reach" },
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn only_the_listed_users_sockets_open_flows_of_a_rule_with_uids() {
    require_root();
    let lab = Lab::new("owner");
    lab.tcp_echo(BACKUP);
    let policy = lab.tight_with("owner.toml", &backup_rule("[1000]"));
    lab.up_with(&policy);
    assert_reaches(&lab, 1000, true);
    let before = lab.list().policy("OUTPUT");
    assert_reaches(&lab, 1001, false);
    assert_reaches(&lab, 0, false);
    assert!(lab.list().policy("OUTPUT") > before, "the others' SYNs dropped on OUTPUT's policy");
    let listing = lab.list();
    assert!(listing.packets("OUTPUT", "backup-out") >= 2, "{:#}", listing.chain("OUTPUT"));
    let text = lab.firewall_ok(&["list", "-n"]);
    assert!(text.contains("tcp dpt:873 state NEW,ESTABLISHED owner UID match 1000"), "{text}");

    // Root's jobs too, from a reload: live. A thousand uids more would fill more than half
    // of the uids' hash, which grows first (the programs swapped in their links).
    let programs = lab.program_ids();
    let widened = lab.tight_with("widened.toml", &backup_rule(r#"[0, "1000-1999"]"#));
    let out = lab.firewall_ok(&["reload", "--policy", widened.to_str().unwrap()]);
    assert!(out.contains("RULE_UIDS resized from 1024 to 2048 entries"), "{out}");
    assert_ne!(lab.program_ids().0, programs.0);
    assert_reaches(&lab, 0, true);
    assert_reaches(&lab, 1500, true);
    assert_reaches(&lab, 2000, false);
}

/// Like `ranges.rs`' older filter: one made before `RULE_UIDS` refuses a policy with
/// `uids`, and `up` brings it to them in place.
#[test]
fn a_filter_from_before_uids_refuses_them_until_up_brings_it_to_them() {
    require_root();
    let lab = Lab::new("owner-older");
    lab.tcp_echo(BACKUP);
    lab.up();
    let pinned = lab.pin_dir().join(MAP_RULE_UIDS);
    fs::remove_file(&pinned).unwrap();
    lab.firewall_ok(&["reload"]);
    let policy = lab.tight_with("owner.toml", &backup_rule("[1000]"));
    assert_fails(
        &lab.firewall(&["reload", "--policy", policy.to_str().unwrap()]),
        "the live filter's programs know no uids (an older version loaded them: its maps have no RULE_UIDS), and the policy names some; `firewall up` with it replaces the programs in place (tracked flows and counters kept)",
    );
    lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]);
    assert!(pinned.exists(), "up created and pinned RULE_UIDS");
    assert_reaches(&lab, 1000, true);
    assert_reaches(&lab, 1001, false);
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}
