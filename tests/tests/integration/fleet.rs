//! What configuration management asks of the command line: `reload --dry-run` and
//! `check --diff` saying what a change would do, and changing nothing; `--json` with its
//! `schema_version` on every command that changes or shows something (and the old bare
//! arrays of `conntrack` and `blocklist`, kept with a warning); and the exit statuses that tell "changed" from "unchanged" and each
//! refusal from the others (docs/operations.md, "Exit statuses").
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration fleet::`.
use std::{
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    process::Output,
};

use serde_json::Value;
use tests::{
    lab::{BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, stderr, stdout, still_alive},
    require_root,
};

const SSH_PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);
const SMTP: SocketAddrV4 = SocketAddrV4::new(HOST, 25);

/// The process's exit status, which must be `code`.
fn exits(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}{}", stdout(output), stderr(output));
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

#[test]
fn a_dry_run_says_what_a_reload_would_change_and_changes_nothing() {
    require_root();
    let lab = Lab::new("dry-run");
    lab.tcp_echo(SSH);
    lab.tcp_echo(SMTP);
    lab.up();
    let policy = lab.policy_file();
    let original = fs::read_to_string(&policy).unwrap();
    let mut held = lab.held_session(SSH_PEER, SSH);

    // Nothing edited: nothing would change, exit 0.
    let same = lab.firewall(&["reload", "--dry-run"]);
    exits(&same, 0);
    assert!(stdout(&same).contains("would change nothing"), "{}", stdout(&same));
    let same = lab.firewall(&["reload", "--dry-run", "--json"]);
    exits(&same, 0);
    let report = json(&same);
    assert_eq!(
        (report["schema_version"].as_u64(), report["changed"].as_bool()),
        (Some(1), Some(false)),
        "{report}"
    );

    // The held session's peer revoked, another allowed, a rule added, one removed.
    let edited = original
        .replace(r#"peers = ["203.0.113.7", "203.0.113.8"]"#, r#"peers = ["203.0.113.8", "203.0.113.99"]"#)
        .replace("name = \"mail-in\"", "name = \"smtp-in\"");
    fs::write(&policy, &edited).unwrap();
    let before = lab.list();
    let dry = lab.firewall(&["reload", "--dry-run"]);
    exits(&dry, 3);
    let said = stdout(&dry);
    for line in [
        "add rule smtp-in",
        "remove rule mail-in",
        "add peer 203.0.113.99 to rule ssh-in",
        "remove peer 203.0.113.7 from rule ssh-in",
        "end flow tcp 203.0.113.7:",
    ] {
        assert!(said.contains(&format!("\n  {line}")), "no {line:?} in:\n{said}");
    }
    assert!(
        said.starts_with(&format!("firewall: reload of {} on {SERVER_IF} would:\n", policy.display())),
        "{said}"
    );
    let report = json(&lab.firewall(&["reload", "--dry-run", "--json"]));
    assert_eq!(report["changed"], true);
    assert_eq!(report["rules_added"], serde_json::json!(["smtp-in"]));
    // The text form's lines, as they are, for a report that shows them.
    let lines: Vec<String> = said.lines().skip(1).map(|line| line.trim_start().to_owned()).collect();
    assert_eq!(report["lines"], serde_json::json!(lines), "{report}");
    assert_eq!(report["flows_ending"][0]["src"], SSH_PEER.to_string(), "{report}");
    assert_eq!(report["flows_ending"][0]["rule"], "ssh-in", "{report}");

    // The dry runs changed nothing: the session goes on, the stranger is still out.
    still_alive(&mut held, "after the dry runs");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);
    let after = lab.list();
    assert_eq!(
        after.packets("INPUT", "mail-in"),
        before.packets("INPUT", "mail-in"),
        "mail-in is still there"
    );

    // `check --diff` says the same of the file, against the live filter.
    let path = policy.to_str().unwrap();
    let diff = lab.firewall(&["check", path, "--diff", "--iface", SERVER_IF]);
    exits(&diff, 3);
    assert_eq!(stdout(&diff), said);

    // The reload does what the dry run said; then there is nothing more to do.
    let out = lab.firewall_ok(&["reload", "--json"]);
    let done: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((done["schema_version"].as_u64(), done["flows_ended"].as_u64()), (Some(1), Some(1)), "{done}");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open);
    exits(&lab.firewall(&["reload", "--dry-run"]), 0);
    exits(&lab.firewall(&["check", path, "--diff", "--iface", SERVER_IF]), 0);

    // A dry run fails as the reload would: a bad policy exits 1, and says where.
    fs::write(&policy, edited.replace("port = 122", "port = 70000")).unwrap();
    let bad = lab.firewall(&["reload", "--dry-run"]);
    exits(&bad, 1);
    assert!(stderr(&bad).contains("port 70000 out of range"), "{}", stderr(&bad));
}

#[test]
fn check_diff_with_no_filter_up_says_up_would_add_it_all() {
    require_root();
    let lab = Lab::new("diff-none");
    let policy = lab.policy_file();
    let diff = lab.firewall(&["check", policy.to_str().unwrap(), "--diff"]);
    exits(&diff, 3);
    let said = stdout(&diff);
    assert!(said.starts_with(&format!("firewall: no filter is up on {SERVER_IF}: `up` of ")), "{said}");
    assert!(
        said.contains("\n  add rule ssh-in\n") && said.contains("\n  add host address 198.51.100.1\n"),
        "{said}"
    );
    let report = json(&lab.firewall(&["check", policy.to_str().unwrap(), "--diff", "--json"]));
    assert_eq!(
        (report["filter_up"].as_bool(), report["changed"].as_bool()),
        (Some(false), Some(true)),
        "{report}"
    );
    // Without --diff, check needs no filter, and its JSON says what it checked.
    let report = json(&lab.firewall(&["check", policy.to_str().unwrap(), "--json"]));
    assert_eq!(report["schema_version"], 1);
    assert!(report["rules"].as_u64().is_some_and(|n| n > 5), "{report}");
}

#[test]
fn each_refusal_has_its_exit_status() {
    require_root();
    let lab = Lab::new("statuses");
    // 7: no filter up.
    let list = lab.firewall(&["list", "--iface", SERVER_IF]);
    exits(&list, 7);
    exits(&lab.firewall(&["reload", "--dry-run", "--iface", SERVER_IF]), 7);
    // 2: usage.
    exits(&lab.firewall(&["reload", "--dry-run", "--confirm", "30"]), 2);
    // 6: a change awaits confirmation.
    lab.up();
    lab.firewall_ok(&["reload", "--confirm", "60"]);
    let pending = lab.firewall(&["reload"]);
    exits(&pending, 6);
    assert!(stderr(&pending).contains("awaits `firewall confirm`"), "{}", stderr(&pending));
    exits(&lab.firewall(&["reload", "--dry-run"]), 6);
    lab.firewall_ok(&["confirm"]);
    exits(&lab.firewall(&["reload", "--dry-run"]), 0);
    // 1: a bad policy, as before the statuses were told apart.
    let bad = lab.tight_with("bad.toml", "\n[[rule]]\nname = \"x\"\n");
    exits(&lab.firewall(&["check", bad.to_str().unwrap()]), 1);
}

#[test]
fn a_runtime_only_change_leaves_the_file_to_its_owner_and_lasts_until_the_next_reload() {
    require_root();
    let lab = Lab::new("runtime");
    lab.tcp_echo(SSH);
    lab.up();
    let policy = lab.policy_file();
    let original = fs::read_to_string(&policy).unwrap();
    let stranger = STRANGER.to_string();

    // The stranger let in live, the file (a template's, say) untouched.
    let out = lab.firewall_ok(&["allow", "ssh-in", &stranger, "--runtime-only"]);
    assert!(out.contains(&format!("allowed {stranger} in rule ssh-in, live only")), "{out}");
    assert_eq!(fs::read_to_string(&policy).unwrap(), original, "the file changed");
    let mut held = lab.held_session(STRANGER, SSH);
    // The dry run shows it as drift: the reload would take it away.
    let dry = lab.firewall(&["reload", "--dry-run"]);
    exits(&dry, 3);
    assert!(
        stdout(&dry).contains(&format!("\n  remove peer {stranger} from rule ssh-in\n")),
        "{}",
        stdout(&dry)
    );
    // A change to the file now would write the runtime change into it: refused, one line.
    let refused = lab.firewall(&["allow", "ssh-in", "203.0.113.98"]);
    exits(&refused, 1);
    assert!(stderr(&refused).contains("holds changes made --runtime-only"), "{}", stderr(&refused));
    // Another runtime-only change goes on top, and revokes work the same way.
    lab.firewall_ok(&["allow", "ssh-in", "203.0.113.98", "--runtime-only"]);
    lab.firewall_ok(&["revoke", "ssh-in", "203.0.113.98", "--runtime-only"]);
    still_alive(&mut held, "after more runtime-only changes");
    assert_eq!(fs::read_to_string(&policy).unwrap(), original, "the file changed");

    // The reload brings the filter back to the file: the stranger's session ends.
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains("1 flows ended"), "{out}");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);
    exits(&lab.firewall(&["reload", "--dry-run"]), 0);
    // And changes to the file work again.
    lab.firewall_ok(&["allow", "ssh-in", "203.0.113.98"]);
    assert!(fs::read_to_string(&policy).unwrap().contains("203.0.113.98"));
}

#[test]
fn every_command_that_changes_or_shows_something_has_json_with_its_schema_version() {
    require_root();
    let lab = Lab::new("json");
    let policy = lab.policy_file();
    let path = policy.to_str().unwrap();
    // What a command prints with --json: one object, schema_version 1 first.
    let report = |args: &[&str]| -> Value {
        let out = lab.firewall(args);
        exits(&out, 0);
        assert!(stdout(&out).starts_with("{\"schema_version\":1,"), "{args:?}: {}", stdout(&out));
        json(&out)
    };

    let up = report(&["up", "--policy", path, "--iface", SERVER_IF, "--json"]);
    assert_eq!(
        (up["iface"].as_str(), up["replaced"].as_bool(), up["audit"].as_bool()),
        (Some(SERVER_IF), Some(false), Some(false)),
        "{up}"
    );
    assert!(up["rules"].as_u64().is_some_and(|n| n > 5), "{up}");
    assert_eq!(up["file"], path, "{up}");

    let allowed = report(&["allow", "ssh-in", "203.0.113.99", "--json"]);
    assert_eq!(
        (allowed["changed"].clone(), allowed["live_only"].as_bool()),
        (serde_json::json!(["203.0.113.99"]), Some(false)),
        "{allowed}"
    );
    let again = report(&["allow", "ssh-in", "203.0.113.99", "--json"]);
    assert_eq!(again["changed"], serde_json::json!([]), "{again}");
    let revoked = report(&["revoke", "ssh-in", "203.0.113.99", "--runtime-only", "--json"]);
    assert_eq!(
        (revoked["rule"].as_str(), revoked["live_only"].as_bool()),
        (Some("ssh-in"), Some(true)),
        "{revoked}"
    );
    report(&["reload", "--json"]);

    let one = report(&["block", "192.0.2.1", "--for", "1h", "--json"]);
    assert_eq!(
        (one["blocked"][0]["prefix"].as_str(), one["duration_secs"].as_u64()),
        (Some("192.0.2.1"), Some(3600)),
        "{one}"
    );
    let wide = report(&["block", "192.0.2.0/24", "--json"]);
    assert_eq!(wide["blocked"][0]["replaced"], serde_json::json!(["192.0.2.1"]), "{wide}");
    assert_eq!(wide["duration_secs"], Value::Null, "{wide}");
    let covered = report(&["block", "192.0.2.7", "--for", "10m", "--json"]);
    assert_eq!(
        covered["covered"],
        serde_json::json!([{ "prefix": "192.0.2.7", "by": "192.0.2.0/24" }]),
        "{covered}"
    );
    let listed = report(&["blocklist", "--json=1"]);
    assert_eq!(listed["blocks"].as_array().map(Vec::len), Some(1), "{listed}");
    // `--json` alone is the bare array of earlier versions, with a warning that says what replaces it.
    let old = lab.firewall(&["blocklist", "--json"]);
    exits(&old, 0);
    assert_eq!(json(&old).as_array().map(Vec::len), Some(1), "{}", stdout(&old));
    assert!(
        stderr(&old).contains("`blocklist --json` prints a bare array")
            && stderr(&old).contains("`--json=1`"),
        "{}",
        stderr(&old)
    );
    let unblocked = report(&["unblock", "192.0.2.0/24", "--json"]);
    assert_eq!(unblocked["unblocked"], serde_json::json!(["192.0.2.0/24"]), "{unblocked}");

    let flows = report(&["conntrack", "--json=1"]);
    assert!(flows["flows"].is_array(), "{flows}");
    let bad = lab.firewall(&["conntrack", "--json=2"]);
    exits(&bad, 2);
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
    let listing = report(&["list", "--json"]);
    assert!(listing["chains"].is_array(), "{listing}");
    assert_eq!(report(&["zero", "--json"])["iface"], SERVER_IF);

    let armed = report(&["reload", "--confirm", "60", "--json"]);
    assert_eq!(armed["confirm_within_secs"], 60, "{armed}");
    let confirmed = report(&["confirm", "--json"]);
    assert_eq!(confirmed["confirmed"], format!("reload of {path}"), "{confirmed}");
    assert_eq!(report(&["down", "--json"])["iface"], SERVER_IF);
}
