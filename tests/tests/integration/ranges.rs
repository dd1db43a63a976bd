//! Port ranges through the real filter: a range admits connections to its first, middle
//! and last ports and drops the ports just outside, counted on the rule's line; a reload
//! adds a range live and takes it away with a session held open; a filter made before
//! ranges refuses a policy with one until `up` brings it to them.
use std::{
    fs,
    net::{SocketAddrV4, TcpStream},
};

use firewall_common::CONFIG_HAS_RANGES;
use tests::{
    lab::{
        BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, assert_fails, echo, still_alive,
    },
    require_root,
};

/// Passive FTP's data ports, as a tight script opens them (`--dport 50000:50010`), beside
/// its control port, for one client.
const FTP_RULE: &str = r#"
[[rule]]
name = "passive-ftp"
direction = "in"
protocols = ["tcp"]
ports = [2121, "50000-50010"]
peers = ["203.0.113.99"]
"#;

const INSIDE: [u16; 4] = [2121, 50000, 50005, 50010];
const OUTSIDE: [u16; 2] = [49999, 50011];

fn listen_on_every_port(lab: &Lab) {
    for port in INSIDE.iter().chain(&OUTSIDE) {
        lab.tcp_echo(SocketAddrV4::new(HOST, *port));
    }
}

fn probe(lab: &Lab, port: u16, timeout: std::time::Duration) -> Outcome {
    lab.tcp_probe(STRANGER, SocketAddrV4::new(HOST, port), timeout)
}

/// The range admits what it names and nothing beside it, in the filter's own words.
fn assert_the_range_is_in_force(lab: &Lab) {
    for port in INSIDE {
        assert_eq!(probe(lab, port, OPEN_WITHIN), Outcome::Open, "port {port}, inside");
    }
    let policy_before = lab.list().policy("INPUT");
    for port in OUTSIDE {
        assert_eq!(probe(lab, port, BLOCKED_AFTER), Outcome::Blocked, "port {port}, outside");
    }
    assert!(lab.list().policy("INPUT") > policy_before, "the ports beside it dropped on INPUT's policy");
}

#[test]
fn a_range_admits_its_ports_and_drops_the_ports_beside_it() {
    require_root();
    let lab = Lab::new("ranges");
    listen_on_every_port(&lab);
    lab.up_with(&lab.tight_with("ranges.toml", FTP_RULE));
    assert_ne!(lab.config_flags() & CONFIG_HAS_RANGES, 0, "ranges looked up");
    assert_the_range_is_in_force(&lab);
    // A SYN and the ACK after it, at least, for each of the four connections; the
    // returns on the rule's ESTABLISHED line.
    let listing = lab.list();
    assert!(listing.packets("INPUT", "passive-ftp") >= 8, "{:#}", listing.chain("INPUT"));
    assert!(listing.packets("OUTPUT", "passive-ftp") >= 4, "{:#}", listing.chain("OUTPUT"));
    let text = lab.firewall_ok(&["list", "-n"]);
    assert!(text.contains("tcp multiport dports 2121,50000:50010 state NEW,ESTABLISHED"), "{text}");
    assert!(text.contains("tcp multiport sports 2121,50000:50010 state ESTABLISHED"), "{text}");
    let line = listing.chain("INPUT")["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["name"] == "passive-ftp")
        .cloned()
        .unwrap();
    assert_eq!(line["ports"], serde_json::json!([[2121, 2121], [50000, 50010]]), "{line:#}");
    // Rules without ranges say nothing more than they did.
    assert!(
        listing.chain("INPUT")["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["name"] == "passive-ftp" || l.get("ports").is_none())
    );
}

/// A session to the SSH port, checked.
/// An SSH session from a peer of examples/tight.toml's, held.
fn ssh_session(lab: &Lab) -> TcpStream {
    let ssh = SocketAddrV4::new(HOST, 122);
    lab.tcp_echo(ssh);
    lab.held_session(std::net::Ipv4Addr::new(203, 0, 113, 7), ssh)
}

#[test]
fn a_reload_adds_a_range_live_moves_it_and_takes_it_away_and_sessions_stay() {
    require_root();
    let lab = Lab::new("ranges-reload");
    listen_on_every_port(&lab);
    lab.tcp_echo(SocketAddrV4::new(HOST, 50015));
    lab.up();
    let mut ssh = ssh_session(&lab);
    let programs = lab.program_ids();
    assert_eq!(lab.config_flags() & CONFIG_HAS_RANGES, 0, "no ranges, no lookup");
    assert_eq!(probe(&lab, 50005, BLOCKED_AFTER), Outcome::Blocked, "no rule yet");

    // The intervals' array, one entry without ranges, grows to every port's: the programs
    // are swapped in their links for ones that use it, and the session stays.
    let added = lab.tight_with("added.toml", FTP_RULE);
    let out = lab.firewall_ok(&["reload", "--policy", added.to_str().unwrap()]);
    assert!(out.contains("PORT_INTERVALS resized from 1 to 65536 entries"), "{out}");
    still_alive(&mut ssh, "after a reload that added a range");
    let (xdp, tc) = lab.program_ids();
    assert!(
        xdp != programs.0 && tc.len() == 1 && tc != programs.1,
        "swapped in their links: {programs:?} {tc:?}"
    );
    assert_ne!(lab.config_flags() & CONFIG_HAS_RANGES, 0);
    assert_the_range_is_in_force(&lab);

    // A session inside the range stays while the range grows: its port is still admitted,
    // now by another interval's entry.
    let data = SocketAddrV4::new(HOST, 50007);
    lab.tcp_echo(data);
    let mut inside = lab.tcp_connect(STRANGER, data, OPEN_WITHIN).expect("a session inside the range");
    echo(&mut inside, b"data\n", OPEN_WITHIN).expect("it echoes");
    let grown = lab.tight_with("grown.toml", &FTP_RULE.replace("50000-50010", "50000-50020"));
    let out = lab.firewall_ok(&["reload", "--policy", grown.to_str().unwrap()]);
    assert!(out.contains(" 0 flows ended"), "{out}");
    still_alive(&mut inside, "after its range grew");
    assert_eq!(probe(&lab, 50015, OPEN_WITHIN), Outcome::Open, "the range grew");

    // Taken away: the range's ports drop again, its flows end, the rest is untouched, and
    // the array is back to its one entry.
    let out = lab.firewall_ok(&["reload", "--policy", lab.policy_file().to_str().unwrap()]);
    assert!(out.contains("PORT_INTERVALS resized from 65536 to 1 entries"), "{out}");
    still_alive(&mut ssh, "after a reload that removed the range");
    assert_eq!(lab.config_flags() & CONFIG_HAS_RANGES, 0, "no ranges left");
    assert!(echo(&mut inside, b"after\n", BLOCKED_AFTER).is_err(), "the range's flow ended with it");
    for port in [50000, 50005, 50010, 2121] {
        assert_eq!(probe(&lab, port, BLOCKED_AFTER), Outcome::Blocked, "port {port}, no rule");
    }
    still_alive(&mut ssh, "at the end");
}

/// Like `live.rs`' older filters: one made before `PORT_INTERVALS` reloads a policy of
/// single ports as before, refuses one with a range, and `up` brings it to ranges in place.
#[test]
fn a_filter_from_before_ranges_refuses_one_until_up_brings_it_to_them() {
    require_root();
    let lab = Lab::new("ranges-older");
    listen_on_every_port(&lab);
    lab.up();
    let pinned = lab.pin_dir().join(firewall_common::MAP_PORT_INTERVALS);
    fs::remove_file(&pinned).unwrap();
    let mut ssh = ssh_session(&lab);
    lab.firewall_ok(&["reload"]);
    let added = lab.tight_with("added.toml", FTP_RULE);
    let programs = lab.program_ids();
    assert_fails(
        &lab.firewall(&["reload", "--policy", added.to_str().unwrap()]),
        "the live filter's programs know no port ranges (an older version loaded them: its maps have no PORT_INTERVALS), and the policy names one; `firewall up` with it replaces the programs in place (tracked flows and counters kept)",
    );
    assert_eq!(lab.program_ids(), programs, "the refused reload left the programs alone");
    assert!(!pinned.exists(), "and made no map");
    lab.firewall_ok(&["up", "--policy", added.to_str().unwrap(), "--iface", SERVER_IF]);
    assert!(pinned.exists(), "up created and pinned PORT_INTERVALS");
    still_alive(&mut ssh, "after the upgrade");
    assert_the_range_is_in_force(&lab);
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}
