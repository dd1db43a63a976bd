//! Rules with `returns = false` through the real filter: what they admit comes in, and
//! nothing goes back through them (a UDP service's answer, a TCP SYN-ACK); a reload that
//! makes a rule one-way ends its tracked flows; a filter whose programs predate the field
//! refuses it until `up` replaces them.
use std::{fs, net::SocketAddrV4};

use tests::{
    lab::{BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, assert_fails, echo},
    require_root,
};

const SYSLOG: SocketAddrV4 = SocketAddrV4::new(HOST, 5514);
const MAIL: SocketAddrV4 = SocketAddrV4::new(HOST, 2525);

/// A log host's syslog over UDP and a relay's SMTP, from anyone; `returns` as written.
fn rules(returns: &str) -> String {
    format!(
        r#"
[[rule]]
name = "syslog-in"
direction = "in"
protocols = ["udp"]
port = 5514
peers = "any"
{returns}
[[rule]]
name = "relay-in"
direction = "in"
protocols = ["tcp"]
port = 2525
peers = "any"
{returns}
"#
    )
}

#[test]
fn a_one_way_rule_admits_what_comes_in_and_nothing_goes_back() {
    require_root();
    let lab = Lab::new("one-way");
    lab.udp_echo(SYSLOG);
    lab.tcp_echo(MAIL);
    lab.up_with(&lab.tight_with("one-way.toml", &rules("returns = false")));

    // The datagrams come in (counted on the rule), the echo's answers drop on OUTPUT's
    // policy: no flow stands for them.
    let before = lab.list();
    let (new_before, dropped_before) = (before.packets("INPUT", "syslog-in"), before.policy("OUTPUT"));
    for n in 1..=3 {
        assert_eq!(lab.udp_probe(STRANGER, SYSLOG, BLOCKED_AFTER), Outcome::Blocked, "datagram {n}");
    }
    let after = lab.list();
    assert_eq!(after.packets("INPUT", "syslog-in") - new_before, 3, "{:#}", after.chain("INPUT"));
    assert!(after.policy("OUTPUT") - dropped_before >= 3, "the answers dropped: {:#}", after.chain("OUTPUT"));
    // A SYN comes in, its SYN-ACK does not go out: the connection never opens.
    assert_eq!(lab.tcp_probe(STRANGER, MAIL, BLOCKED_AFTER), Outcome::Blocked);
    assert!(lab.list().packets("INPUT", "relay-in") >= 1);
    assert_eq!(
        lab.firewall_ok(&["conntrack"]),
        "firewall conntrack: 0 flow entries have been shown.\n",
        "a one-way rule tracks nothing"
    );
    // Listed as iptables lists a stateless line, with no ESTABLISHED line in OUTPUT.
    let text = lab.firewall_ok(&["list", "-n"]);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("2525")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0]
            .ends_with("ACCEPT  tcp  0.0.0.0/0          198.51.100.1       relay-in           tcp dpt:2525"),
        "{text}"
    );

    // With its returns (the field left out), the same rules answer; a reload back to
    // one-way ends the session that a rule no longer answers.
    let two_way = lab.tight_with("two-way.toml", &rules(""));
    lab.firewall_ok(&["reload", "--policy", two_way.to_str().unwrap()]);
    assert_eq!(lab.udp_probe(STRANGER, SYSLOG, OPEN_WITHIN), Outcome::Open);
    let mut session = lab.held_session(STRANGER, MAIL);
    let one_way = lab.tight_with("one-way.toml", &rules("returns = false"));
    lab.firewall_ok(&["reload", "--policy", one_way.to_str().unwrap()]);
    assert!(
        echo(&mut session, b"after\n", BLOCKED_AFTER).is_err(),
        "the session went on after its rule became one-way"
    );
}

/// Programs loaded by a version before `returns = false` would track a one-way rule's
/// flows: `reload` refuses it there (the live state, as such a version wrote it, has no
/// `programs`), and a trap likewise; `up` replaces the programs in place, and both reload.
#[test]
fn a_filter_from_before_one_way_rules_refuses_them_until_up_replaces_its_programs() {
    require_root();
    let lab = Lab::new("one-way-older");
    lab.udp_echo(SYSLOG);
    lab.up();
    let state_file = lab.state_dir().join("live.json");
    let mut state: serde_json::Value = serde_json::from_slice(&fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["programs"], 2, "up records its programs' level");
    state.as_object_mut().unwrap().remove("programs");
    fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    lab.firewall_ok(&["reload"]);
    let policy = lab.tight_with("one-way.toml", &rules("returns = false"));
    assert_fails(
        &lab.firewall(&["reload", "--policy", policy.to_str().unwrap()]),
        "the live filter's programs know no returns = false (an older version loaded them), and rule \"syslog-in\" has it; `firewall up` with the policy replaces the programs in place (tracked flows and counters kept)",
    );
    // Nor would they know a trap (level 2): they would admit what it matches.
    let trap = lab.tight_with(
        "trap.toml",
        "[[rule]]\nname = \"scan-trap\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 139\npeers = \"any\"\ntrap = \"1d\"\n",
    );
    assert_fails(
        &lab.firewall(&["reload", "--policy", trap.to_str().unwrap()]),
        "the live filter's programs know no trap (an older version loaded them), and rule \"scan-trap\" is one; `firewall up` with the policy replaces the programs in place (tracked flows and counters kept)",
    );
    lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]);
    let state: serde_json::Value = serde_json::from_slice(&fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["programs"], 2);
    assert_eq!(
        lab.udp_probe(STRANGER, SYSLOG, BLOCKED_AFTER),
        Outcome::Blocked,
        "one-way, once up replaced them"
    );
    lab.firewall_ok(&["reload", "--policy", trap.to_str().unwrap()]);
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}
