//! Live operations on a running filter: `allow`, `revoke`, `reload`, `up` over a live
//! filter, `zero`, `conntrack`, their failures, and the systemd unit. The programs stay
//! attached throughout, and a TCP session held open across each change proves that no
//! allowed flow loses a packet. Changes at once, each taking effect; and the files root
//! writes, written through no link another user plants.
use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Barrier,
    time::{Duration, Instant},
};

use firewall_common::{AllowKey, CONFIG_HAS_BLOCKS, Direction, PROTO_TCP};
use firewall_user::kernel::{maps::LiveMaps, pins::Pins};
use tests::{
    lab::{
        BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, assert_fails, assert_fails_with,
        echo, firewall_bin, stderr, stdout, still_alive,
    },
    require_root,
};

const SSH_PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);

#[test]
fn allow_and_revoke_change_a_rule_live_and_in_the_file() {
    require_root();
    let lab = Lab::new("allow");
    lab.tcp_echo(SSH);
    lab.up();
    let policy = lab.policy_file();
    let original = fs::read_to_string(&policy).unwrap();
    let programs = lab.program_ids();
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "not a peer yet");

    let out = lab.firewall_ok(&["allow", "ssh-in", &STRANGER.to_string()]);
    assert!(out.contains(&format!("allowed {STRANGER} in rule ssh-in")), "{out}");
    let mut held = lab.held_session(STRANGER, SSH);
    assert_eq!(lab.program_ids(), programs, "no program was reloaded");

    // The file: the one line changed, every comment and blank line kept.
    let edited = fs::read_to_string(&policy).unwrap();
    let changed: Vec<(&str, &str)> = original.lines().zip(edited.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(original.lines().count(), edited.lines().count(), "{edited}");
    assert_eq!(
        changed,
        vec![(
            r#"peers = ["203.0.113.7", "203.0.113.8"]"#,
            r#"peers = ["203.0.113.7", "203.0.113.8", "203.0.113.99"]"#
        )]
    );
    let check = Command::new(firewall_bin()).arg("check").arg(&policy).output().unwrap();
    assert!(check.status.success(), "{}", stderr(&check));

    // Its flow is in the table, as conntrack -L shows it.
    let report: serde_json::Value =
        serde_json::from_str(&lab.firewall_ok(&["conntrack", "--json=1"])).expect("conntrack --json=1");
    let flow = report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["src"] == STRANGER.to_string())
        .unwrap_or_else(|| panic!("no flow from {STRANGER} in {report:#}"));
    assert_eq!((flow["protocol"].as_str(), flow["dport"].as_u64()), (Some("tcp"), Some(122)));
    assert_eq!((flow["rule"].as_str(), flow["state"].as_str()), (Some("ssh-in"), Some("ESTABLISHED")));
    let text = lab.firewall_ok(&["conntrack"]);
    assert!(text.contains(&format!("tcp  ESTABLISHED src={STRANGER} dst={HOST}")), "{text}");

    // Revoked: the file is as it was, byte for byte, and the peer is out, its session too.
    let out = lab.firewall_ok(&["revoke", "ssh-in", &STRANGER.to_string()]);
    assert!(out.contains(&format!("revoked {STRANGER}")), "{out}");
    assert_eq!(fs::read_to_string(&policy).unwrap(), original);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);
    assert!(
        echo(&mut held, b"after revoke\n", BLOCKED_AFTER).is_err(),
        "a revoked peer's session ends with its flow"
    );
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open, "the other peers are untouched");
    assert_eq!(lab.program_ids(), programs);

    // A CIDR works too, and an allow of what is there changes nothing.
    lab.firewall_ok(&["allow", "ssh-in", "203.0.113.96/30"]);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "203.0.113.99 is in the /30");
    let out = lab.firewall_ok(&["allow", "ssh-in", "203.0.113.96/30"]);
    assert!(out.contains("nothing changed"), "{out}");
    assert!(fs::read_to_string(&policy).unwrap().contains(r#""203.0.113.96/30"]"#));
}

#[test]
fn a_session_survives_reload_a_bad_reload_and_up_again() {
    require_root();
    let lab = Lab::new("reload");
    lab.tcp_echo(SSH);
    lab.up();
    let policy = lab.policy_file();
    let original = fs::read_to_string(&policy).unwrap();
    let mut held = lab.held_session(SSH_PEER, SSH);
    let programs = lab.program_ids();
    let counted = lab.list().packets("INPUT", "ssh-in");
    assert!(counted > 0);

    // A reload that adds a peer to another rule: applied, nothing else moves.
    let edited = original
        .replace(r"port = 123", "port = 123\n# added by the test")
        .replace(r#"peers = ["203.0.113.25"]"#, r#"peers = ["203.0.113.25", "203.0.113.99"]"#);
    fs::write(&policy, &edited).unwrap();
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains("1 entries added or changed, 0 removed, 0 flows ended"), "{out}");
    still_alive(&mut held, "after a reload");
    assert_eq!(lab.program_ids(), programs, "a reload keeps the programs");
    let after = lab.list();
    assert!(after.packets("INPUT", "ssh-in") > counted, "counters kept across the reload");
    lab.tcp_echo(SocketAddrV4::new(HOST, 25));
    assert_eq!(lab.tcp_probe(STRANGER, SocketAddrV4::new(HOST, 25), OPEN_WITHIN), Outcome::Open);

    // A bad reload fails with the place of the error and changes nothing.
    fs::write(&policy, edited.replace("port = 122", "port = 70000")).unwrap();
    let bad = lab.firewall(&["reload"]);
    assert_fails(&bad, "port 70000 out of range 1-65535");
    assert!(stderr(&bad).contains(&format!("{}:", policy.display())), "names the file: {}", stderr(&bad));
    still_alive(&mut held, "after a failed reload");
    assert_eq!(lab.tcp_probe(STRANGER, SocketAddrV4::new(HOST, 25), OPEN_WITHIN), Outcome::Open);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);

    // `up` over the live filter: new programs in the same links, maps and flows kept.
    fs::write(&policy, &original).unwrap();
    let before_up = lab.list().packets("INPUT", "ssh-in");
    let out = lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]);
    assert!(out.contains("programs replaced in place"), "{out}");
    let (xdp, tc) = lab.program_ids();
    assert_ne!(xdp, programs.0, "a new XDP program");
    assert_eq!(tc.len(), 1, "one egress program: {tc:?}");
    assert_ne!(tc, programs.1, "a new egress program");
    still_alive(&mut held, "after up replaced the programs");
    assert!(lab.list().packets("INPUT", "ssh-in") > before_up, "counters kept across up");
    assert_eq!(
        lab.tcp_probe(STRANGER, SocketAddrV4::new(HOST, 25), BLOCKED_AFTER),
        Outcome::Blocked,
        "up applied the policy it was given"
    );
}

#[test]
fn zero_zeroes_every_counter() {
    require_root();
    let lab = Lab::new("zero");
    lab.tcp_echo(SSH);
    lab.up();
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);
    assert!(lab.list().total_packets() > 0);
    let out = lab.firewall_ok(&["zero"]);
    assert!(out.contains("counters zeroed"), "{out}");
    let listing = lab.list();
    assert_eq!(listing.packets("INPUT", "ssh-in"), 0);
    assert_eq!(listing.policy("INPUT"), 0);
    // Traffic after counts from zero.
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open);
    assert!(lab.list().packets("INPUT", "ssh-in") > 0);
}

#[test]
fn failures_leave_the_filter_and_the_file_as_they_were() {
    require_root();
    let lab = Lab::new("fail");
    lab.tcp_echo(SSH);

    // Nothing up yet: no pins to work on.
    // Exit status 7: no filter is up.
    assert_fails_with(&lab.firewall(&["allow", "ssh-in", "203.0.113.99"]), 7, "no filter is up");
    assert_fails_with(&lab.firewall(&["reload"]), 7, "no filter is up");
    assert_fails_with(&lab.firewall(&["zero"]), 7, "no filter is up");

    lab.up();
    let policy = lab.policy_file();
    let original = fs::read_to_string(&policy).unwrap();
    let unchanged = |what: &str| {
        assert_eq!(fs::read_to_string(&policy).unwrap(), original, "{what} changed the file");
        assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open, "{what}: the peer");
        assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "{what}: the stranger");
    };
    assert_fails(&lab.firewall(&["allow", "no-such-rule", "203.0.113.99"]), "no rule named \"no-such-rule\"");
    unchanged("an unknown rule");
    assert_fails(&lab.firewall(&["allow", "ssh-in", "203.0.113.999"]), "bad address \"203.0.113.999\"");
    unchanged("a bad address");
    assert_fails(&lab.firewall(&["allow", "ssh-in", "203.0.113.99", "10.1.2.3/8"]), "has host bits set");
    unchanged("a bad address among good ones");
    assert_fails(&lab.firewall(&["allow", "web-in", "203.0.113.99"]), "admits any peer");
    unchanged("a rule open to anyone");
    assert_fails(&lab.firewall(&["revoke", "ssh-in", "203.0.113.99"]), "is not a peer of rule \"ssh-in\"");
    unchanged("revoking a stranger");
    assert_fails(
        &lab.firewall(&["allow", "repo", "203.0.113.90"]),
        "203.0.113.90 for tcp port 80 out is already in rule \"repo\"",
    );
    unchanged("a peer another rule owns");
    assert_fails(&lab.firewall(&["revoke", "ssh-out", "203.0.113.22"]), "peers is empty");
    unchanged("revoking the last peer");

    // An edit not yet applied: allow refuses rather than apply it behind the admin's back.
    fs::write(&policy, original.replace("port = 122", "port = 2222")).unwrap();
    assert_fails(&lab.firewall(&["allow", "ssh-in", "203.0.113.99"]), "run `firewall reload` first");
    fs::write(&policy, &original).unwrap();
    unchanged("a file edited behind its back");

    // A policy file that is gone.
    let gone = lab.tmp().join("gone.toml");
    assert_fails(&lab.firewall(&["reload", "--policy", gone.to_str().unwrap()]), "gone.toml");
    unchanged("a missing policy file");

    // The interface gone: its pins stay until `down`, which removes them.
    let del = Command::new("ip").args(["-n", &lab.server, "link", "del", SERVER_IF]).status().unwrap();
    assert!(del.success());
    assert_fails(&lab.firewall(&["reload"]), "interface \"s0\" is gone");
    assert_fails(&lab.firewall(&["allow", "ssh-in", "203.0.113.99"]), "is gone");
    assert_eq!(fs::read_to_string(&policy).unwrap(), original);
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    assert!(!lab.pin_dir().exists(), "down removed the pins of the vanished interface");
}

#[test]
fn the_systemd_unit_verifies() {
    require_root();
    let unit = tests::workspace().join("dist/firewall@.service");
    let text = fs::read_to_string(&unit).expect("dist/firewall@.service");
    for needed in [
        "Before=network-pre.target",
        "ExecStart=",
        " up ",
        " --fallback last-good",
        "ExecReload=",
        " reload ",
        "ExecStop=",
        " down ",
    ] {
        assert!(text.contains(needed), "the unit lacks {needed:?}");
    }
    let follow = fs::read_to_string(tests::workspace().join("dist/firewall-follow@.service"))
        .expect("dist/firewall-follow@.service");
    for needed in ["BindsTo=firewall@%i.service", "ExecStart=", " follow --iface %I"] {
        assert!(follow.contains(needed), "the follow unit lacks {needed:?}");
    }
    let serve = fs::read_to_string(tests::workspace().join("dist/firewall-serve@.service"))
        .expect("dist/firewall-serve@.service");
    for needed in ["BindsTo=firewall@%i.service", "Type=notify", " serve --iface %I", "ExecReload="] {
        assert!(serve.contains(needed), "the serve unit lacks {needed:?}");
    }
    let dir = tests::lab::TempDir::new("unit");
    // The units name the binary bare, for systemd to find in /usr/sbin (the package) or
    // /usr/local/sbin (from source): here, it is this build's.
    let bin = firewall_bin();
    let here = |text: &str| text.replace("=firewall ", &format!("={} ", bin.display()));
    dir.write("firewall-follow@.service", &here(&follow));
    dir.write("firewall-serve@.service", &here(&serve));
    let verify = |text: &str, instance: &str| {
        let path = dir.write("firewall@.service", text);
        let instance = path.with_file_name(instance);
        let out =
            Command::new("systemd-analyze").arg("verify").arg(&instance).output().expect("systemd-analyze");
        (out.status.success(), format!("{}{}", stdout(&out), stderr(&out)))
    };
    let verify_filter = |text: &str| verify(text, "firewall@eth0.service");
    for instance in ["firewall@eth0.service", "firewall-follow@eth0.service", "firewall-serve@eth0.service"] {
        let (ok, report) = verify(&here(&text), instance);
        assert!(ok && report.trim().is_empty(), "systemd-analyze verify {instance}: {report}");
    }
    // And the check can fail: a unit naming a missing binary does not verify.
    let (ok, report) = verify_filter(&text.replace("=firewall ", "=/nonexistent/firewall "));
    assert!(!ok || report.contains("/nonexistent/firewall"), "a broken unit verified: {report}");
}

#[test]
fn a_reload_that_lists_a_peer_as_spoofed_ends_its_flows() {
    // Flows are checked before the anti-spoof lists, so a reload must end the flows of a
    // peer those lists come to name.
    require_root();
    let lab = Lab::new("spoofed");
    lab.tcp_echo(SSH);
    lab.up();
    let policy = lab.policy_file();
    let mut held = lab.held_session(SSH_PEER, SSH);
    let original = fs::read_to_string(&policy).unwrap();
    let edited =
        original.replacen(r#"sources = ["10.0.0.0/8","#, r#"sources = ["203.0.113.7", "10.0.0.0/8","#, 1);
    assert_ne!(edited, original, "examples/tight.toml's anti-spoof sources changed");
    fs::write(&policy, edited).unwrap();
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains("1 flows ended"), "{out}");
    assert!(echo(&mut held, b"after\n", BLOCKED_AFTER).is_err(), "the spoofed peer's session ended");
    assert!(
        lab.list().0["chains"][0]["rules"].as_array().unwrap().iter().any(|r| r["source"] == "203.0.113.7"
            && r["name"] == "antispoof"
            && r["packets"].as_u64() > Some(0))
    );
}

/// Replaces the map pinned as `name` by one `bpftool map create` makes: `spec` is its
/// type, sizes and flags, as another version of the firewall would have made it.
fn pin_other_layout(lab: &Lab, name: &str, spec: &[&str]) {
    let pinned = lab.pin_dir().join(name);
    fs::remove_file(&pinned).unwrap();
    let made = tests::lab::sh(
        Command::new("bpftool").args(["map", "create"]).arg(&pinned).args(spec).args(["name", name]),
    );
    assert!(made.status.success(), "bpftool map create {name}: {}", stderr(&made));
}

/// `up --in-force`, what a package upgrade runs: the policy in force put up again as it
/// is, with this binary's programs swapped in place. A runtime-only peer stays admitted
/// (and still runtime-only: the next reload of the file takes it back), the file later
/// commands read stays the same, the mode stays, and a session held open lives on.
#[test]
fn up_in_force_swaps_the_programs_keeping_the_policy_in_force_as_it_is() {
    require_root();
    let lab = Lab::new("in-force");
    lab.tcp_echo(SSH);
    lab.up();
    let mut held = lab.held_session(SSH_PEER, SSH);
    lab.firewall_ok(&["allow", "ssh-in", &STRANGER.to_string(), "--runtime-only"]);
    lab.firewall_ok(&["reload", "--audit"]);
    lab.firewall_ok(&["allow", "ssh-in", &STRANGER.to_string(), "--runtime-only"]);
    let programs = lab.program_ids();
    // (Its command line's errors: cli::a_bad_command_line_is_one_line_and_exit_2.)

    let out = lab.firewall_ok(&["up", "--in-force", "--iface", SERVER_IF, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("up --json");
    assert_eq!(report["replaced"], true, "{report:#}");
    assert_eq!(report["audit"], true, "the live mode kept: {report:#}");
    assert_eq!(report["file"], lab.policy_file().to_str().unwrap(), "{report:#}");
    assert_ne!(lab.program_ids(), programs, "the programs were swapped in");
    still_alive(&mut held, "after up --in-force");
    assert_eq!(
        lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN),
        Outcome::Open,
        "the runtime-only peer is still admitted"
    );
    let preview = lab.firewall(&["reload", "--dry-run"]);
    assert_eq!(preview.status.code(), Some(3), "a reload would change it");
    let preview = stdout(&preview);
    assert!(
        preview.contains(&format!("remove peer {STRANGER} from rule ssh-in")),
        "and still runtime-only: {preview}"
    );
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    // Exit 7, as every command that needs a filter up says none is.
    assert_fails_with(
        &lab.firewall(&["up", "--in-force", "--iface", SERVER_IF]),
        7,
        "firewall: no filter is up on s0",
    );
}

/// Writes into the pinned `CONNTRACK` of the earlier layout (16-byte flows) an inbound TCP
/// flow from `peer`, open, last seen at `last_seen_ns`, admitted by rule 0.
fn pin_earlier_flow(lab: &Lab, peer: Ipv4Addr, peer_port: u16, local_port: u16, last_seen_ns: u64) {
    let mut key = firewall_common::v4_mapped(peer.octets()).to_vec();
    key.extend(peer_port.to_ne_bytes());
    key.extend(local_port.to_ne_bytes());
    key.extend([PROTO_TCP, 0, 0, 0]);
    let mut value = last_seen_ns.to_ne_bytes().to_vec();
    value.extend(0u32.to_ne_bytes());
    value.extend([Direction::In as u8, firewall_common::TCP_OPEN, 0, 0]);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>();
    let conntrack = lab.pin_dir().join(firewall_common::MAP_CONNTRACK);
    let update = tests::lab::sh(
        Command::new("bpftool")
            .args(["map", "update", "pinned"])
            .arg(&conntrack)
            .arg("key")
            .arg("hex")
            .args(hex(&key))
            .arg("value")
            .arg("hex")
            .args(hex(&value)),
    );
    assert!(update.status.success(), "bpftool map update: {}", stderr(&update));
}

#[test]
fn maps_of_another_layout_are_refused_by_readers_and_made_anew_by_up() {
    // aya reuses a pinned map whatever its layout; a firewall of another version (IPv4-only
    // keys, say) would have its maps read with the wrong sizes. Every command that reads
    // them refuses them, leaving the filter as it was; `up` makes them anew in place, as
    // an upgrade needs: the policy's entries written again, the programs' own state
    // started afresh and said so, and a map whose entries only it holds refused.
    require_root();
    let lab = Lab::new("layout");
    lab.tcp_echo(SSH);
    lab.up();
    let policy = lab.policy_file();
    let policy = policy.to_str().unwrap();
    let mut held = lab.held_session(SSH_PEER, SSH);
    let programs = lab.program_ids();
    // The map as the IPv4-only version made it: 8-byte keys.
    pin_other_layout(
        &lab,
        firewall_common::MAP_ALLOW_EXACT,
        &["type", "hash", "key", "8", "value", "8", "entries", "16", "flags", "1"],
    );
    let expected = "the live filter's map ALLOW_EXACT has 8-byte keys, 8-byte values where this firewall's has 20-byte keys, 8-byte values: another version made it; `firewall up` with its policy makes it anew in place";
    assert_fails(&lab.firewall(&["reload"]), expected);
    assert_fails(&lab.firewall(&["list"]), expected);
    assert_fails(&lab.firewall(&["allow", "ssh-in", "203.0.113.50"]), expected);
    assert_eq!(lab.program_ids(), programs, "the programs were left alone");
    // The way out the message gives: the map made anew, filled from the policy, the
    // programs swapped in place, the session kept.
    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF]);
    assert!(
        out.contains("firewall: ALLOW_EXACT made anew at this version's layout (20-byte keys, 8-byte values where it had 8-byte keys, 8-byte values): the policy's entries written again"),
        "{out}"
    );
    assert_ne!(lab.program_ids(), programs, "the programs were swapped in");
    still_alive(&mut held, "after ALLOW_EXACT was made anew");
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open, "a peer's new session");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "a stranger's");
    lab.firewall_ok(&["allow", "ssh-in", "203.0.113.50"]);

    // A filter from before a map existed (the blocklist's): readers refuse it, by name;
    // `up` makes it.
    fs::remove_file(lab.pin_dir().join(firewall_common::MAP_BLOCKLIST)).unwrap();
    let expected = "the live filter has no map BLOCKLIST: an older version made it; `firewall up` with its policy makes it in place";
    assert_fails(&lab.firewall(&["list"]), expected);
    assert_fails(&lab.firewall(&["block", "192.0.2.99"]), expected);
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open, "the filter is as it was");
    lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF]);
    lab.firewall_ok(&["block", "192.0.2.99"]);
    still_alive(&mut held, "after BLOCKLIST was made");

    // And one from before the half-open table: no HALF_OPEN, and flows of 16 bytes, which
    // this version reads. Two such flows, as that version wrote them: one the policy
    // admits, carried over as established with its age (an outbound session whose peer
    // speaks first would stall without it), and a stranger's, which no rule admits now,
    // ended by the policy's apply. The held inbound session is picked up again mid-stream.
    fs::remove_file(lab.pin_dir().join(firewall_common::MAP_HALF_OPEN)).unwrap();
    pin_other_layout(
        &lab,
        firewall_common::MAP_CONNTRACK,
        &["type", "lru_hash", "key", "24", "value", "16", "entries", "65536"],
    );
    let ten_seconds_ago = firewall_user::kernel::filter::kernel_time_ns() - 10_000_000_000;
    for peer in [SSH_PEER, STRANGER] {
        pin_earlier_flow(&lab, peer, 40_123, SSH.port(), ten_seconds_ago);
    }
    assert_fails(
        &lab.firewall(&["conntrack"]),
        "the live filter's map CONNTRACK has 24-byte keys, 16-byte values where this firewall's has 24-byte keys, 24-byte values: another version made it; `firewall up` with its policy makes it anew in place (its tracked flows carried over",
    );
    let up = lab.firewall(&["up", "--policy", policy, "--iface", SERVER_IF]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(
        stdout(&up).contains("firewall: CONNTRACK made anew at this version's layout (24-byte keys, 24-byte values where it had 24-byte keys, 16-byte values): its tracked flows carried over"),
        "{}",
        stdout(&up)
    );
    assert!(!stderr(&up).contains("CONNTRACK"), "nothing lost: {}", stderr(&up));
    still_alive(&mut held, "after CONNTRACK was made anew");
    let conntrack = lab.firewall_ok(&["conntrack"]);
    assert!(conntrack.contains(&format!("src={SSH_PEER}")), "the session is tracked again:\n{conntrack}");
    let carried: Vec<&str> = conntrack.lines().filter(|line| line.contains("sport=40123")).collect();
    assert_eq!(carried.len(), 1, "one flow carried over:\n{conntrack}");
    assert!(
        carried[0].contains(&format!("src={SSH_PEER} dst={HOST} sport=40123 dport={}", SSH.port())),
        "{conntrack}"
    );
    assert!(carried[0].contains("ESTABLISHED"), "{conntrack}");

    // CONFIG held the filter's mode, which this version cannot read at another layout
    // (the first version's: a 4-byte address, flags, five timeouts). The state recorded
    // it when it was last saved: `up` keeps it (audit, here).
    let other_config = ["type", "array", "key", "4", "value", "48", "entries", "1"];
    lab.firewall_ok(&["reload", "--audit"]);
    pin_other_layout(&lab, firewall_common::MAP_CONFIG, &other_config);
    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("up --json");
    assert_eq!(report["audit"], true, "the recorded mode kept: {report:#}");
    assert_eq!(report["relaid"][0]["map"], "CONFIG", "{report:#}");
    still_alive(&mut held, "after CONFIG was made anew in its recorded mode");
    // A state an older version saved records no mode: `up` asks for it.
    let state = lab.state_dir().join("live.json");
    let mut recorded: serde_json::Value = serde_json::from_str(&fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(recorded["mode"], "audit", "{recorded:#}");
    recorded.as_object_mut().unwrap().remove("mode");
    fs::write(&state, recorded.to_string()).unwrap();
    let programs = lab.program_ids();
    pin_other_layout(&lab, firewall_common::MAP_CONFIG, &other_config);
    assert_fails(
        &lab.firewall(&["up", "--policy", policy, "--iface", SERVER_IF]),
        "the live filter's map CONFIG was made by another version, which keeps the filter's mode there where this one cannot read it: say which, `firewall up --enforce` or `firewall up --audit`",
    );
    assert_eq!(lab.program_ids(), programs, "the programs were left alone");
    lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF, "--enforce"]);
    still_alive(&mut held, "after CONFIG was made anew");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "enforced");
    assert_eq!(blocked(&lab), BTreeSet::from(["192.0.2.99".to_string()]), "the block kept its entry");
    assert_ne!(lab.config_flags() & CONFIG_HAS_BLOCKS, 0, "the new CONFIG asks the blocklist");

    // The blocks `block` made are the blocklist's alone: a BLOCKLIST of another layout is
    // never dropped by `up`, which names the way that loses them; one that holds none is
    // made anew.
    let other_blocklist = ["type", "lpm_trie", "key", "8", "value", "8", "entries", "16", "flags", "1"];
    pin_other_layout(&lab, firewall_common::MAP_BLOCKLIST, &other_blocklist);
    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF]);
    assert!(out.contains("firewall: BLOCKLIST made anew at this version's layout ("), "{out}");
    assert!(out.contains("16 entries): it held nothing"), "{out}");
    assert_eq!(blocked(&lab), BTreeSet::new());
    let programs = lab.program_ids();
    pin_other_layout(&lab, firewall_common::MAP_BLOCKLIST, &other_blocklist);
    // One block: 198.51.100.99/32, as that version's 4-byte addresses held it.
    let blocklist = lab.pin_dir().join(firewall_common::MAP_BLOCKLIST);
    let update =
        tests::lab::sh(Command::new("bpftool").args(["map", "update", "pinned"]).arg(&blocklist).args([
            "key", "hex", "20", "00", "00", "00", "c6", "33", "64", "63", "value", "hex", "00", "00", "00",
            "00", "00", "00", "00", "00",
        ]));
    assert!(update.status.success(), "bpftool map update: {}", stderr(&update));
    let expected = "the live filter's map BLOCKLIST has 8-byte keys, 8-byte values, 16 entries where this firewall's has";
    let refused = lab.firewall(&["up", "--policy", policy, "--iface", SERVER_IF]);
    assert_fails(&refused, expected);
    assert_fails(
        &refused,
        "`firewall down` then `firewall up` replaces it (it holds the blocks `firewall block` made, which are lost)",
    );
    assert_eq!(lab.program_ids(), programs, "the programs were left alone");
    still_alive(&mut held, "after the refused up");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}

/// A filter made before hosts could have several addresses has no HOST_ADDRESSES pinned
/// (nor FRAGMENTS, from before fragments were tracked).
/// Its programs never read one, so `reload` and `list` work on it as they did, and only a
/// policy with a second address of a family is refused, naming the way out: `up`, which
/// loads programs that read the map, creates and pins it, and keeps the open session.
#[test]
fn a_filter_from_before_several_addresses_is_brought_up_to_them_in_place() {
    require_root();
    let lab = Lab::new("older-addresses");
    let second = Ipv4Addr::new(198, 51, 100, 2);
    lab.add_server_address(second);
    lab.tcp_echo(SSH);
    lab.tcp_echo(SocketAddrV4::new(second, 122));
    lab.up();
    let pinned = lab.pin_dir().join(firewall_common::MAP_HOST_ADDRESSES);
    fs::remove_file(&pinned).unwrap();
    // Nor FRAGMENTS, which came later still.
    let fragments = lab.pin_dir().join(firewall_common::MAP_FRAGMENTS);
    fs::remove_file(&fragments).unwrap();
    let mut session = lab.tcp_connect(SSH_PEER, SSH, OPEN_WITHIN).expect("a session before the upgrade");
    echo(&mut session, b"before\n", OPEN_WITHIN).expect("an echo before");

    lab.firewall_ok(&["reload"]);
    assert!(lab.firewall_ok(&["list"]).lines().last().is_some_and(|l| l.starts_with("conntrack: ")));
    let policy = lab.policy_file();
    let text = fs::read_to_string(&policy).unwrap();
    let one = "address = \"198.51.100.1\"";
    assert!(text.contains(one), "the tight policy's address");
    let two = lab.tmp().join("two.toml");
    fs::write(&two, text.replacen(one, &format!("address = [\"198.51.100.1\", \"{second}\"]"), 1)).unwrap();
    let programs = lab.program_ids();
    let refused = "the live filter's programs know one address of each family (an older version loaded them: its maps have no HOST_ADDRESSES), and the policy names more; `firewall up` with it replaces the programs in place (tracked flows and counters kept)";
    // A dry run gives the reload's verdict, not a change the reload would refuse.
    assert_fails(&lab.firewall(&["reload", "--dry-run", "--policy", two.to_str().unwrap()]), refused);
    assert_fails(&lab.firewall(&["check", two.to_str().unwrap(), "--diff", "--iface", SERVER_IF]), refused);
    assert_fails(&lab.firewall(&["reload", "--policy", two.to_str().unwrap()]), refused);
    assert_eq!(lab.program_ids(), programs, "the refused reload left the programs alone");
    assert!(!pinned.exists(), "and made no map");

    lab.firewall_ok(&["up", "--policy", two.to_str().unwrap(), "--iface", SERVER_IF]);
    assert!(pinned.exists(), "up created and pinned HOST_ADDRESSES");
    assert!(fragments.exists(), "and FRAGMENTS");
    assert_ne!(lab.program_ids(), programs, "new programs in the old links");
    echo(&mut session, b"after\n", OPEN_WITHIN).expect("the session after the upgrade");
    assert_eq!(lab.tcp_probe(SSH_PEER, SocketAddrV4::new(second, 122), OPEN_WITHIN), Outcome::Open);
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}

/// The peers the live ALLOW_EXACT map admits to tcp port `port` in, as the kernel reads it.
fn live_peers(lab: &Lab, port: u16) -> BTreeSet<String> {
    let pins = Pins {
        iface: SERVER_IF.into(),
        dir: lab.pin_dir(),
        state: lab.state_dir(),
        last_good: lab.last_good(),
    };
    let maps = LiveMaps::open(&pins).expect("opening the pinned maps");
    maps.allow_exact
        .keys()
        .map(|key| key.expect("iterating ALLOW_EXACT"))
        .filter(|key: &AllowKey| {
            key.direction == Direction::In as u8 && key.protocol == PROTO_TCP && key.port == port
        })
        .map(|key| firewall_user::policy::from_addr(&key.peer).to_string())
        .collect()
}

/// The peers rule `rule` of the policy file lists.
fn file_peers(path: &Path, rule: &str) -> BTreeSet<String> {
    let policy = firewall_user::policy::parse(&fs::read_to_string(path).unwrap(), path)
        .unwrap_or_else(|e| panic!("the policy file no longer parses: {e}"));
    let rule = policy.rules.iter().find(|r| r.name == rule).expect("the rule");
    rule.peers.iter().map(ToString::to_string).collect()
}

/// The blocklist's prefixes, as `blocklist --json` reads them from the map.
fn blocked(lab: &Lab) -> BTreeSet<String> {
    let out = lab.firewall_ok(&["blocklist", "--json=1"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("blocklist --json=1");
    report["blocks"].as_array().unwrap().iter().map(|e| e["prefix"].as_str().unwrap().to_owned()).collect()
}

/// Runs every command at once (as near as threads released together make it); their
/// outputs, in the order given.
fn all_at_once(lab: &Lab, commands: &[Vec<String>]) -> Vec<Output> {
    let start = Barrier::new(commands.len());
    std::thread::scope(|scope| {
        let runs: Vec<_> = commands
            .iter()
            .map(|args| {
                let start = &start;
                scope.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    start.wait();
                    lab.firewall(&args)
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().expect("a command's thread")).collect()
    })
}

/// Each succeeded, said it did what it was asked (`said`), and said nothing else on
/// stderr than that it waited for another change.
fn assert_all_done(commands: &[Vec<String>], outputs: &[Output], said: impl Fn(&[String]) -> String) {
    for (args, output) in commands.iter().zip(outputs) {
        let (out, err) = (stdout(output), stderr(output));
        assert!(output.status.success(), "firewall {args:?} failed ({}): {err}", output.status);
        assert!(out.contains(&said(args)), "firewall {args:?} said {out:?}, not {:?}", said(args));
        for line in err.lines() {
            assert!(
                line.starts_with("firewall: waiting for another change on s0 (pid "),
                "firewall {args:?}: {err}"
            );
        }
    }
}

#[test]
fn changes_made_at_once_all_take_effect_one_after_the_other() {
    require_root();
    let lab = Lab::new("atonce");
    lab.up();
    let policy = lab.policy_file();
    let ips = |prefix: &str, range: std::ops::RangeInclusive<u32>| -> Vec<String> {
        range.map(|i| format!("{prefix}.{i}")).collect()
    };
    let (allowed, revoked) = (ips("192.0.2", 1..=12), ips("192.0.2", 101..=108));
    let (blocks, unblocks) = (ips("198.18.1", 1..=6), ips("198.18.0", 1..=4));
    let mut args = vec!["allow".to_owned(), "ssh-in".to_owned()];
    args.extend(revoked.iter().cloned());
    lab.firewall_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut args = vec!["block".to_owned()];
    args.extend(unblocks.iter().cloned());
    lab.firewall_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // 34 changes at once, of every kind that reads and writes the same state: the peers
    // of one rule (in the file and the maps), the blocklist, and CONFIG's flags.
    let kinds: Vec<Vec<String>> = allowed
        .iter()
        .map(|a| vec!["allow".into(), "ssh-in".into(), a.clone()])
        .chain(revoked.iter().map(|a| vec!["revoke".into(), "ssh-in".into(), a.clone()]))
        .chain(blocks.iter().map(|a| vec!["block".into(), a.clone()]))
        .chain(unblocks.iter().map(|a| vec!["unblock".into(), a.clone()]))
        .chain((0..4).map(|_| vec!["reload".into()]))
        .collect();
    // Mixed, not grouped by kind.
    let mut commands = kinds.clone();
    commands.sort_by_key(|args| args.iter().map(|a| a.bytes().map(u32::from).sum::<u32>()).sum::<u32>() % 11);
    let outputs = all_at_once(&lab, &commands);
    assert_all_done(&commands, &outputs, |args| match args[0].as_str() {
        "allow" => format!("allowed {} in rule ssh-in, live and in", args[2]),
        "revoke" => format!("revoked {} in rule ssh-in, live and in", args[2]),
        "block" => format!("blocked {} on s0 until unblocked", args[1]),
        "unblock" => format!("unblocked {} on s0", args[1]),
        _ => "firewall reloaded".into(),
    });

    // Every one of them is in the file, in the policy in force and in the maps.
    let mut peers: BTreeSet<String> = ["203.0.113.7", "203.0.113.8"].map(String::from).into();
    peers.extend(allowed.iter().cloned());
    assert_eq!(file_peers(&policy, "ssh-in"), peers, "the policy file");
    assert_eq!(
        fs::read_to_string(lab.state_dir().join("policy.toml")).unwrap(),
        fs::read_to_string(&policy).unwrap(),
        "the policy in force is not the file"
    );
    assert_eq!(live_peers(&lab, 122), peers, "the live map");
    assert_eq!(blocked(&lab), blocks.iter().cloned().collect(), "the blocklist");
    assert_ne!(lab.config_flags() & CONFIG_HAS_BLOCKS, 0, "the programs skip a blocklist that has entries");
    let out = lab.firewall_ok(&["reload"]);
    assert!(
        out.contains("0 entries added or changed, 0 removed, 0 flows ended"),
        "the maps were not the file's: {out}"
    );

    // The last blocks lifted at once: the programs skip the empty blocklist again.
    let commands: Vec<Vec<String>> = blocks.iter().map(|a| vec!["unblock".into(), a.clone()]).collect();
    let outputs = all_at_once(&lab, &commands);
    assert_all_done(&commands, &outputs, |args| format!("unblocked {} on s0", args[1]));
    assert_eq!(blocked(&lab), BTreeSet::new());
    assert_eq!(lab.config_flags() & CONFIG_HAS_BLOCKS, 0, "the flag outlived the blocklist");
}

#[test]
fn a_change_that_must_wait_says_so_then_takes_effect() {
    require_root();
    let lab = Lab::new("wait");
    lab.up();
    // Another change holds the lock for 3 s, having said who it is, as each does.
    let lock = lab.state_dir().join(firewall_user::kernel::pins::LOCK);
    let mut holder = Command::new("flock");
    holder
        .arg(&lock)
        .args(["sh", "-c"])
        .arg(format!("printf 'pid $$, firewall reload\\n' > {}; sleep 3", lock.display()));
    let holder = lab.spawn(&mut holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&lock).unwrap_or_default().contains("firewall reload") {
        assert!(Instant::now() < deadline, "the holder never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let out = lab.firewall(&["allow", "ssh-in", "192.0.2.50"]);
    let waited = started.elapsed();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(waited >= Duration::from_millis(1500), "it did not wait for the lock ({waited:?})");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("firewall: waiting for another change on s0 (pid ")
            && err.contains(", firewall reload) …"),
        "{err}"
    );
    assert!(stdout(&out).contains("allowed 192.0.2.50 in rule ssh-in"), "{}", stdout(&out));
    assert!(live_peers(&lab, 122).contains("192.0.2.50"));
    let _ = lab.wait(holder);
}

/// Links at the temporary names older versions wrote `dir/name` through, one for each
/// of the next `count` pids (`.NAME.PID.tmp`), each to `victim`, made by nobody.
fn plant_links(dir: &Path, name: &str, victim: &Path, count: u32) {
    let last: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid").unwrap().trim().parse().unwrap();
    let max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    for pid in (1..=count).map(|n| (last + n) % max) {
        let link = dir.join(format!(".{name}.{pid}.tmp"));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    }
}

/// `victim` as it was: its text and mode.
fn assert_untouched(victim: &Path, how: &str) {
    assert_eq!(fs::read_to_string(victim).unwrap(), "victim\n", "{how} wrote through a planted link");
    assert_eq!(fs::metadata(victim).unwrap().mode() & 0o7777, 0o600, "{how} chmodded through a planted link");
}

#[test]
fn root_writes_through_no_link_another_user_plants() {
    require_root();
    let lab = Lab::new("links");
    let dump = lab.tmp().join("rules.v4");
    fs::write(
        &dump,
        "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n\
         -A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 122 -j ACCEPT\n\
         -A OUTPUT -s 198.51.100.1/32 -p tcp -m tcp --sport 122 -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    // A directory anyone may write to, with and without the sticky bit.
    for (tag, dir_mode) in [("open", 0o777), ("sticky", 0o1777)] {
        let dir = lab.tmp().join(tag);
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(dir_mode)).unwrap();
        let policy: PathBuf = dir.join("tight.toml");
        fs::copy(lab.policy_file(), &policy).unwrap();
        fs::set_permissions(&policy, fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(&policy, Some(0), Some(65534)).unwrap();
        let victim = lab.tmp().join(format!("victim-{tag}"));
        fs::write(&victim, "victim\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        lab.up_with(&policy);

        // allow rewrites the policy: not through the links, its mode and owner kept.
        plant_links(&dir, "tight.toml", &victim, 4000);
        let out = lab.firewall_ok(&["allow", "ssh-in", "203.0.113.99"]);
        assert!(out.contains("allowed 203.0.113.99"), "{out}");
        assert_untouched(&victim, &format!("allow ({tag})"));
        let meta = fs::symlink_metadata(&policy).unwrap();
        assert!(meta.is_file(), "{tag}: the policy is no longer a file");
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o640, 0, 65534),
            "{tag}: mode and owner"
        );
        assert!(fs::read_to_string(&policy).unwrap().contains("\"203.0.113.99\""));

        // import -o: a new file, then one replaced with --force.
        let imported = dir.join("imported.toml");
        let (out_arg, dump_arg) = (imported.to_str().unwrap(), dump.to_str().unwrap());
        plant_links(&dir, "imported.toml", &victim, 4000);
        lab.firewall_ok(&["import", dump_arg, "-o", out_arg]);
        assert_untouched(&victim, &format!("import -o ({tag})"));
        plant_links(&dir, "imported.toml", &victim, 4000);
        lab.firewall_ok(&["import", dump_arg, "-o", out_arg, "--force"]);
        assert_untouched(&victim, &format!("import -o --force ({tag})"));
        assert!(fs::symlink_metadata(&imported).unwrap().is_file());

        // Where no sticky bit keeps root's file, another user can put a link in its place:
        // allow refuses to write through it.
        if dir_mode & 0o1000 == 0 {
            fs::remove_file(&policy).unwrap();
            std::os::unix::fs::symlink(&victim, &policy).unwrap();
            std::os::unix::fs::lchown(&policy, Some(65534), Some(65534)).unwrap();
            let refused = lab.firewall(&["allow", "ssh-in", "203.0.113.98"]);
            assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
            assert_untouched(&victim, "allow over a link at the policy's name");
        }
        lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    }
}

/// A reload of the file in force, unchanged, writes nothing: it is found to be the text
/// the maps hold (the state's copy), applied with the interface's addresses as they are,
/// and says so at once. What changed beside the text still counts: an address the
/// interface gained, with `follow_addresses`, is served by that reload, a change made
/// `--runtime-only` is taken back by the next, and another binary compares in full.
#[test]
fn a_reload_of_the_file_in_force_writes_nothing_but_what_changed_beside_it_applies() {
    require_root();
    let lab = Lab::new("same-text");
    let policy = lab.tmp().join("follow.toml");
    let text = fs::read_to_string(lab.policy_file()).unwrap().replacen(
        "[host]\n",
        "[host]\nfollow_addresses = true\n",
        1,
    );
    assert!(text.contains("follow_addresses = true"), "{text}");
    fs::write(&policy, &text).unwrap();
    lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]);
    lab.tcp_echo(SSH);

    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains(": 0 entries added or changed, 0 removed, 0 flows ended"), "{out}");
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open, "the policy is in force");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);

    // The interface gains an address; no `firewall follow` runs. The same text, reloaded,
    // is applied with it: the address is the host's.
    let added = Ipv4Addr::new(198, 51, 100, 9);
    lab.add_server_address(added);
    let to_added = SocketAddrV4::new(added, 122);
    lab.tcp_echo(to_added);
    assert_eq!(lab.tcp_probe(SSH_PEER, to_added, BLOCKED_AFTER), Outcome::Blocked, "a stranger's address");
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains("1 entries added or changed"), "the address went in: {out}");
    assert_eq!(lab.tcp_probe(SSH_PEER, to_added, OPEN_WITHIN), Outcome::Open, "the host's now");
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains(": 0 entries added or changed, 0 removed"), "nothing more: {out}");

    // A peer allowed --runtime-only: the file lacks it, so the reload takes it back.
    lab.firewall_ok(&["allow", "ssh-in", &STRANGER.to_string(), "--runtime-only"]);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "allowed for now");
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains("1 removed"), "{out}");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "taken back");

    // Another binary (an upgrade) may plan the same text otherwise: it compares in full.
    // Seen by an entry taken out of the map behind the filter's back, which the same
    // binary's reload of the same text leaves out and another's puts back.
    let pins = Pins {
        iface: SERVER_IF.into(),
        dir: lab.pin_dir(),
        state: lab.state_dir(),
        last_good: lab.last_good(),
    };
    let mut maps = LiveMaps::open(&pins).expect("opening the pinned maps");
    let key = maps
        .allow_exact
        .keys()
        .map(|key| key.expect("iterating ALLOW_EXACT"))
        .find(|key| firewall_user::policy::from_addr(&key.peer) == std::net::IpAddr::V4(SSH_PEER))
        .expect("the ssh peer's entry");
    maps.allow_exact.remove(&key).expect("removing it");
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains(": 0 entries added or changed, 0 removed"), "the same binary: {out}");
    let upgraded = lab.tmp().join("firewall-upgraded");
    fs::copy(firewall_bin(), &upgraded).expect("copying the binary");
    let mut command = lab.server_command(&upgraded);
    command.arg("reload");
    let out = command.output().expect("running the copy");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(": 1 entries added or changed, 0 removed"),
        "another binary: {}",
        stdout(&out)
    );
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open, "the entry is back");

    // The mode is no part of the text: the same text with --audit turns audit on.
    let out = lab.firewall_ok(&["reload", "--audit"]);
    assert!(out.contains("audit mode"), "{out}");
    assert_ne!(lab.config_flags() & firewall_common::CONFIG_AUDIT, 0, "audit is on");
}
