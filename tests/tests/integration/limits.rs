//! `per_source` limits through the real filter, with real connections: a source's new
//! flows past its rate are refused, counted on `source-limit`, while another source's
//! pass; with `block`, the offender goes into the blocklist, nothing of it passes on any
//! port until `unblock`, and `blocklist` names the rule; a session a source already has
//! goes on; a source with its `connections` open has its next refused until one ends; a
//! filter made before the limits refuses one until `up` brings it to them.
use std::{fs, net::SocketAddrV4};

use firewall_common::{CONFIG_HAS_BLOCKS, MAP_PER_SOURCE_CONNECTIONS, MAP_PER_SOURCE_LIMITS};
use tests::{
    lab::{
        BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, STRANGER2, assert_fails, echo,
    },
    require_root,
};

/// A brute-force guard on a port anyone may reach: ufw's `limit`, in the policy's words.
fn guarded(per_source: &str) -> String {
    format!(
        r#"
[[rule]]
name = "guarded"
direction = "in"
protocols = ["tcp"]
port = 2222
peers = "any"
per_source = {per_source}
"#
    )
}

const GUARDED: SocketAddrV4 = SocketAddrV4::new(HOST, 2222);
const WEB: SocketAddrV4 = SocketAddrV4::new(HOST, 80);

fn probe(lab: &Lab, from: std::net::Ipv4Addr, to: SocketAddrV4, timeout: std::time::Duration) -> Outcome {
    lab.tcp_probe(from, to, timeout)
}

#[test]
fn a_source_past_its_rate_is_refused_and_another_source_is_not() {
    require_root();
    let lab = Lab::new("limits-rate");
    lab.tcp_echo(GUARDED);
    lab.up_with(&lab.tight_with("limited.toml", &guarded(r#"{ limit = "3/min" }"#)));
    // Three at once (the burst is the count), a session among them held open.
    let mut session = lab.tcp_connect(STRANGER, GUARDED, OPEN_WITHIN).expect("the first connection");
    echo(&mut session, b"first\n", OPEN_WITHIN).expect("it echoes");
    for n in 2..=3 {
        assert_eq!(probe(&lab, STRANGER, GUARDED, OPEN_WITHIN), Outcome::Open, "connection {n}");
    }
    let before = lab.list().packets("INPUT", "source-limit");
    assert_eq!(probe(&lab, STRANGER, GUARDED, BLOCKED_AFTER), Outcome::Blocked, "the fourth within a minute");
    let listing = lab.list();
    assert!(listing.packets("INPUT", "source-limit") > before, "{:#}", listing.chain("INPUT"));
    // Another source has a bucket of its own, and the first's session goes on.
    assert_eq!(probe(&lab, STRANGER2, GUARDED, OPEN_WITHIN), Outcome::Open, "another source");
    echo(&mut session, b"still\n", OPEN_WITHIN).expect("a flow already admitted is not refused");
    // No block was asked for: the offender is in no blocklist, and reaches the web.
    assert_eq!(lab.firewall_ok(&["blocklist"]), "no address is blocked\n");
    lab.tcp_echo(WEB);
    assert_eq!(probe(&lab, STRANGER, WEB, OPEN_WITHIN), Outcome::Open, "the web, not limited");
    let text = lab.firewall_ok(&["list", "-n"]);
    assert!(text.contains("tcp dpt:2222 state NEW,ESTABLISHED per source: 3/min burst 3"), "{text}");
    assert!(text.contains("a new flow over its source's per_source rate"), "{text}");
    // A reload to a policy without the limit clears the rule's entry: the map holds the
    // policy's limits alone.
    assert_eq!(limits_written(&lab), 1);
    lab.firewall_ok(&["reload", "--policy", lab.policy_file().to_str().unwrap()]);
    assert_eq!(limits_written(&lab), 0, "the removed rule's limit stayed in PER_SOURCE_LIMITS");
}

/// How many rules' entries of the pinned `PER_SOURCE_LIMITS` are not all zeros.
fn limits_written(lab: &Lab) -> usize {
    let path = lab.pin_dir().join(MAP_PER_SOURCE_LIMITS);
    let out = tests::lab::sh(
        std::process::Command::new("bpftool").args(["-j", "map", "dump", "pinned"]).arg(&path),
    );
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    let entries = entries.as_array().expect("a list of entries");
    assert_eq!(entries.len(), firewall_common::MAX_RULES as usize);
    entries
        .iter()
        .filter(|entry| {
            entry["value"].as_array().expect("the value's bytes").iter().any(|byte| byte != "0x00")
        })
        .count()
}

#[test]
fn an_offender_is_blocked_on_every_port_until_unblocked() {
    require_root();
    let lab = Lab::new("limits-block");
    lab.tcp_echo(GUARDED);
    lab.tcp_echo(WEB);
    let policy =
        lab.tight_with("blocking.toml", &guarded(r#"{ limit = "2/min", burst = 2, block = "10m" }"#));
    lab.up_with(&policy);
    assert_ne!(lab.config_flags() & CONFIG_HAS_BLOCKS, 0, "the blocklist is looked in from the start");
    for n in 1..=2 {
        assert_eq!(probe(&lab, STRANGER, GUARDED, OPEN_WITHIN), Outcome::Open, "connection {n}");
    }
    assert_eq!(probe(&lab, STRANGER, GUARDED, BLOCKED_AFTER), Outcome::Blocked, "the third: over");
    // Blocked now: the web it could reach before is closed to it too, not to others.
    assert_eq!(probe(&lab, STRANGER, WEB, BLOCKED_AFTER), Outcome::Blocked, "the offender, on the web");
    assert_eq!(probe(&lab, STRANGER2, WEB, OPEN_WITHIN), Outcome::Open, "another source, on the web");
    let listed: serde_json::Value =
        serde_json::from_str(&lab.firewall_ok(&["blocklist", "--json=1"])).unwrap();
    let entries = listed["blocks"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed:#}");
    assert_eq!(entries[0]["prefix"], STRANGER.to_string());
    assert_eq!(entries[0]["blocked_by"], "guarded");
    let expires = entries[0]["expires_secs"].as_u64().unwrap();
    assert!((590..=600).contains(&expires), "blocked for 10 minutes: {expires} s left");
    let text = lab.firewall_ok(&["blocklist"]);
    assert!(text.contains("over rule guarded's per_source limit; counted on source-limit"), "{text}");
    // Its packets on the source-limit line, not on a blocklist line of its own.
    let listing = lab.list();
    assert!(listing.packets("INPUT", "source-limit") >= 2, "{:#}", listing.chain("INPUT"));
    let rules = listing.chain("INPUT")["rules"].as_array().unwrap();
    assert!(rules.iter().all(|line| line["name"] != "blocklist"), "{:#}", listing.chain("INPUT"));
    // A reload keeps the block (live state, as `firewall block`'s), and `unblock` lifts it.
    lab.firewall_ok(&["reload", "--policy", policy.to_str().unwrap()]);
    assert_eq!(probe(&lab, STRANGER, WEB, BLOCKED_AFTER), Outcome::Blocked, "still blocked after a reload");
    lab.firewall_ok(&["unblock", &STRANGER.to_string()]);
    assert_eq!(probe(&lab, STRANGER, WEB, OPEN_WITHIN), Outcome::Open, "unblocked");
    assert_ne!(
        lab.config_flags() & CONFIG_HAS_BLOCKS,
        0,
        "the list stays looked in: the limit may block again"
    );
}

/// Like `ranges.rs`' older filter: one made before `PER_SOURCE_LIMITS` refuses a policy
/// with a limit, and `up` brings it to limits in place.
#[test]
fn a_filter_from_before_limits_refuses_one_until_up_brings_it_to_them() {
    require_root();
    let lab = Lab::new("limits-older");
    lab.tcp_echo(GUARDED);
    lab.up();
    let pinned = lab.pin_dir().join(MAP_PER_SOURCE_LIMITS);
    fs::remove_file(&pinned).unwrap();
    lab.firewall_ok(&["reload"]);
    let limited = lab.tight_with("limited.toml", &guarded(r#"{ limit = "1/min" }"#));
    let programs = lab.program_ids();
    assert_fails(
        &lab.firewall(&["reload", "--policy", limited.to_str().unwrap()]),
        "the live filter's programs know no per_source limits (an older version loaded them: its maps have no PER_SOURCE_LIMITS), and the policy has one; `firewall up` with it replaces the programs in place (tracked flows and counters kept)",
    );
    assert_eq!(lab.program_ids(), programs, "the refused reload left the programs alone");
    lab.firewall_ok(&["up", "--policy", limited.to_str().unwrap(), "--iface", SERVER_IF]);
    assert!(pinned.exists(), "up created and pinned PER_SOURCE_LIMITS");
    assert_eq!(probe(&lab, STRANGER, GUARDED, OPEN_WITHIN), Outcome::Open, "the first");
    assert_eq!(probe(&lab, STRANGER, GUARDED, BLOCKED_AFTER), Outcome::Blocked, "the second within a minute");
    // Likewise one made before `PER_SOURCE_CONNECTIONS`, for a cap of connections.
    let pinned = lab.pin_dir().join(MAP_PER_SOURCE_CONNECTIONS);
    fs::remove_file(&pinned).unwrap();
    let capped = lab.tight_with("capped.toml", &guarded("{ connections = 1 }"));
    assert_fails(
        &lab.firewall(&["reload", "--policy", capped.to_str().unwrap()]),
        "the live filter's programs know no per_source.connections (an older version loaded them: its maps have no PER_SOURCE_CONNECTIONS), and the policy has one; `firewall up` with it replaces the programs in place (tracked flows and counters kept)",
    );
    lab.firewall_ok(&["up", "--policy", capped.to_str().unwrap(), "--iface", SERVER_IF]);
    assert!(pinned.exists(), "up created and pinned PER_SOURCE_CONNECTIONS");
    let _session = lab.held_session(STRANGER, GUARDED);
    assert_eq!(probe(&lab, STRANGER, GUARDED, BLOCKED_AFTER), Outcome::Blocked, "a second at once");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}

/// A trap (the port-scan trap of scripts): a source that touches it is refused there and
/// blocked on every port, counted on the trap's own line, then on `source-limit`; a peer a
/// rule of its own admits on the trap's port is not caught; `unblock` lifts the block.
#[test]
fn a_source_that_touches_a_trap_is_blocked_on_every_port() {
    require_root();
    let lab = Lab::new("limits-trap");
    const TRAP: SocketAddrV4 = SocketAddrV4::new(HOST, 139);
    lab.tcp_echo(TRAP);
    lab.tcp_echo(WEB);
    let rules = format!(
        r#"
[[rule]]
name = "scan-trap"
direction = "in"
protocols = ["tcp"]
port = 139
peers = "any"
trap = "1d"

[[rule]]
name = "share"
direction = "in"
protocols = ["tcp"]
port = 139
peers = ["{STRANGER2}"]
"#
    );
    lab.up_with(&lab.tight_with("trap.toml", &rules));
    assert_ne!(lab.config_flags() & CONFIG_HAS_BLOCKS, 0, "the blocklist is looked in from the start");
    assert_eq!(probe(&lab, STRANGER, WEB, OPEN_WITHIN), Outcome::Open, "the web, before");
    assert_eq!(probe(&lab, STRANGER, TRAP, BLOCKED_AFTER), Outcome::Blocked, "the trap admits nothing");
    assert_eq!(probe(&lab, STRANGER, WEB, BLOCKED_AFTER), Outcome::Blocked, "caught: the web too");
    // The peer with a rule of its own for the port reaches it, and is not caught.
    assert_eq!(probe(&lab, STRANGER2, TRAP, OPEN_WITHIN), Outcome::Open, "the share's own peer");
    assert_eq!(probe(&lab, STRANGER2, WEB, OPEN_WITHIN), Outcome::Open, "and the web");
    let listed: serde_json::Value =
        serde_json::from_str(&lab.firewall_ok(&["blocklist", "--json=1"])).unwrap();
    let entries = listed["blocks"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed:#}");
    assert_eq!(
        (entries[0]["prefix"].as_str(), entries[0]["blocked_by"].as_str()),
        (Some("203.0.113.99"), Some("scan-trap"))
    );
    let text = lab.firewall_ok(&["blocklist"]);
    assert!(text.contains("(caught by rule scan-trap's trap; counted on source-limit)"), "{text}");
    // The trap's line counts what it caught (its SYN and the SYN's retries within the
    // probe), and lists as a DROP without returns.
    let listing = lab.list();
    assert!(listing.packets("INPUT", "scan-trap") >= 1, "{:#}", listing.chain("INPUT"));
    assert!(listing.packets("INPUT", "source-limit") >= 1, "{:#}", listing.chain("INPUT"));
    let text = lab.firewall_ok(&["list", "-n"]);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("scan-trap")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("DROP") && lines[0].ends_with("tcp dpt:139 trap: block 1d"), "{text}");
    lab.firewall_ok(&["unblock", &STRANGER.to_string()]);
    assert_eq!(probe(&lab, STRANGER, WEB, OPEN_WITHIN), Outcome::Open, "unblocked");
}

/// `per_source.connections`, connlimit's `--connlimit-above`: a source holding its
/// connections open has its next one refused, counted on `source-limit`, while another
/// source's pass and its own sessions go on; once one of them ends, it may open one more.
#[test]
fn a_source_with_its_connections_open_is_refused_until_one_ends() {
    require_root();
    let lab = Lab::new("limits-connections");
    lab.tcp_echo(GUARDED);
    lab.up_with(&lab.tight_with("capped.toml", &guarded("{ connections = 2 }")));
    let first = lab.held_session(STRANGER, GUARDED);
    let mut second = lab.held_session(STRANGER, GUARDED);
    let before = lab.list().packets("INPUT", "source-limit");
    assert_eq!(probe(&lab, STRANGER, GUARDED, BLOCKED_AFTER), Outcome::Blocked, "a third at once");
    let listing = lab.list();
    assert!(listing.packets("INPUT", "source-limit") > before, "{:#}", listing.chain("INPUT"));
    assert_eq!(probe(&lab, STRANGER2, GUARDED, OPEN_WITHIN), Outcome::Open, "another source");
    echo(&mut second, b"still\n", OPEN_WITHIN).expect("the sessions it holds go on");
    // Closed (FIN both ways), the first frees its place: the next connection, whose first
    // SYN may race the close, is admitted within its retries.
    drop(first);
    assert_eq!(probe(&lab, STRANGER, GUARDED, OPEN_WITHIN), Outcome::Open, "one ended: one more");
    echo(&mut second, b"again\n", OPEN_WITHIN).expect("the second session goes on");
    // No rate was asked for: nothing is blocked, and the listing says what the cap is.
    assert_eq!(lab.firewall_ok(&["blocklist"]), "no address is blocked\n");
    let text = lab.firewall_ok(&["list", "-n"]);
    assert!(text.contains("tcp dpt:2222 state NEW,ESTABLISHED per source: connections upto 2"), "{text}");
    assert!(text.contains("a new flow over its source's per_source rate or connections"), "{text}");
}
