//! IPv6 end to end: the `firewall` binary attached to `s0` with examples/dual-stack.toml,
//! real IPv6 sockets, ping over IPv6 and a packet-too-big from the client namespace.
//! Neighbour discovery is real too: the two namespaces find each other's link-layer
//! addresses through the filter, or nothing here would work.
use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    process::Command,
    time::{Duration, Instant},
};

use tests::{
    daemons::{PYTHON, in_ns, need, run},
    lab::{BLOCKED_AFTER, HOST, HOST6, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER6, ping_received},
    require_root,
};

const SSH_PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 7);
const DNS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 0x53);

/// `firewall up` with examples/dual-stack.toml; the policy file it was given.
fn up(lab: &Lab) -> std::path::PathBuf {
    let policy = lab.dual_stack_policy_file();
    lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]);
    policy
}

fn sa(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(ip), port)
}

#[test]
fn tcp_and_udp_over_ipv6_follow_the_rules() {
    require_root();
    let lab = Lab::dual_stack("v6-tcp");
    lab.tcp_echo(sa(HOST6, 122));
    lab.tcp_echo(sa(HOST6, 443));
    lab.tcp_echo(sa(HOST6, 25));
    lab.udp_echo(sa(DNS6, 53));
    lab.udp_echo(sa(STRANGER6, 53));
    lab.tcp_echo(sa(DNS6, 53));
    let policy = up(&lab);

    let v4_ssh = std::net::SocketAddrV4::new(HOST, 122);
    lab.tcp_echo(v4_ssh);
    let probes = [
        (
            "ssh from the listed IPv6 peer",
            lab.tcp_probe(SSH_PEER6, sa(HOST6, 122), OPEN_WITHIN),
            Outcome::Open,
        ),
        ("ssh from a stranger", lab.tcp_probe(STRANGER6, sa(HOST6, 122), BLOCKED_AFTER), Outcome::Blocked),
        ("https from anyone", lab.tcp_probe(STRANGER6, sa(HOST6, 443), OPEN_WITHIN), Outcome::Open),
        ("smtp: no rule", lab.tcp_probe(STRANGER6, sa(HOST6, 25), BLOCKED_AFTER), Outcome::Blocked),
        ("a DNS query to the IPv6 server", lab.udp_probe(HOST6, sa(DNS6, 53), OPEN_WITHIN), Outcome::Open),
        ("DNS over TCP to it", lab.tcp_probe(HOST6, sa(DNS6, 53), OPEN_WITHIN), Outcome::Open),
        (
            "a DNS query to a stranger",
            lab.udp_probe(HOST6, sa(STRANGER6, 53), BLOCKED_AFTER),
            Outcome::Blocked,
        ),
        // The IPv4 side of the same policy works beside it.
        (
            "ssh from the IPv4 peer",
            lab.tcp_probe(std::net::Ipv4Addr::new(203, 0, 113, 7), v4_ssh, OPEN_WITHIN),
            Outcome::Open,
        ),
    ];
    for (what, outcome, expected) in probes {
        assert_eq!(outcome, expected, "{what}");
    }
    let list = lab.list();
    assert!(list.packets("INPUT", "ssh-in") >= 2, "both families on ssh-in's line");
    assert!(list.packets("OUTPUT", "dns") >= 2 && list.packets("INPUT", "dns") >= 2, "queries and answers");
    assert!(list.policy("INPUT") > 0 && list.policy("OUTPUT") > 0, "the strangers met the policies");
    // Neighbour discovery ran both ways through the filter, and was counted.
    assert!(list.packets("INPUT", "icmpv6-nd") > 0, "neighbour advertisements or solicitations in");
    assert!(list.packets("OUTPUT", "icmpv6-nd") > 0, "and out");
    let flows = lab.firewall_ok(&["conntrack"]);
    assert!(flows.contains(&format!("src={SSH_PEER6} dst={HOST6}")), "an IPv6 flow listed:\n{flows}");

    // Live changes take IPv6 peers like IPv4 ones, file and maps.
    let out = lab.firewall_ok(&["allow", "ssh-in", &STRANGER6.to_string()]);
    assert!(out.contains(&format!("allowed {STRANGER6}")), "{out}");
    assert!(std::fs::read_to_string(&policy).unwrap().contains(&STRANGER6.to_string()));
    assert_eq!(lab.tcp_probe(STRANGER6, sa(HOST6, 122), OPEN_WITHIN), Outcome::Open, "allowed live");
    lab.firewall_ok(&["revoke", "ssh-in", &STRANGER6.to_string()]);
    assert_eq!(lab.tcp_probe(STRANGER6, sa(HOST6, 122), BLOCKED_AFTER), Outcome::Blocked, "revoked live");
}

#[test]
fn ping6_is_limited_like_ping_and_shares_its_bucket() {
    require_root();
    let lab = Lab::dual_stack("v6-ping");
    up(&lab);
    let started = Instant::now();
    let out = lab.ping(IpAddr::V6(STRANGER6), IpAddr::V6(HOST6), 12, "0.1");
    let elapsed = started.elapsed().as_secs_f64();
    let received = ping_received(&out);
    eprintln!("ping6: {received} of 12 replies in {elapsed:.2}s");
    // The burst of 5, then one a second for as long as ping ran (and one for the edge).
    assert!(received >= 5, "the burst passes: {out}");
    assert!(f64::from(received) <= 5.0 + elapsed + 1.0, "{received} replies in {elapsed:.2}s: {out}");
    let list = lab.list();
    assert_eq!(list.packets("INPUT", "ping-in"), u64::from(received), "admitted requests");
    assert_eq!(list.packets("OUTPUT", "ping-in"), u64::from(received), "their replies");
    assert_eq!(list.policy("INPUT"), u64::from(12 - received), "the rest met the policy");
    // The bucket is the rule's, so IPv4 ping right after finds it drained too.
    let v4 = lab.ping(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 99)), IpAddr::V4(HOST), 3, "0.1");
    assert!(ping_received(&v4) <= 2, "a drained bucket for IPv4 as well: {v4}");
    // Ping out to anyone, over IPv6: the replies come back as the flow's returns.
    let out = lab.ping(IpAddr::V6(HOST6), IpAddr::V6(DNS6), 3, "0.2");
    assert_eq!(ping_received(&out), 3, "{out}");
    assert_eq!(lab.list().packets("INPUT", "ping-out"), 3);
}

/// scapy, in the client namespace: a packet-too-big to the server quoting one of its own
/// echo replies, as a router on the way to `about` would send it.
const PACKET_TOO_BIG: &str = r#"
import logging, sys
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IPv6, ICMPv6PacketTooBig, ICMPv6EchoReply, conf, send
conf.verb = 0
router, host, about = sys.argv[1], sys.argv[2], sys.argv[3]
quoted = IPv6(src=host, dst=about, plen=1400) / ICMPv6EchoReply(id=7, seq=1, data=b"x" * 64)
send(IPv6(src=router, dst=host) / ICMPv6PacketTooBig(mtu=1280) / quoted)
"#;

#[test]
fn packet_too_big_reaches_the_stack_so_pmtu_discovery_works() {
    require_root();
    need("/usr/lib/python3/dist-packages/scapy/__init__.py", "python3-scapy");
    let lab = Lab::dual_stack("v6-ptb");
    up(&lab);
    // Neighbour discovery first, so that the server can answer at all.
    assert_eq!(ping_received(&lab.ping(IpAddr::V6(HOST6), IpAddr::V6(DNS6), 1, "0.2")), 1);
    let route = || {
        let out = Command::new("ip")
            .args(["-n", &lab.server, "-6", "route", "get", &DNS6.to_string()])
            .output()
            .expect("ip route get");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!route().contains("mtu 1280"), "no path MTU yet: {}", route());
    let mut command = in_ns(&lab.client, PYTHON);
    command.args(["-c", PACKET_TOO_BIG, &SSH_PEER6.to_string(), &HOST6.to_string(), &DNS6.to_string()]);
    let done = run(&lab, &mut command, Duration::from_secs(40));
    assert!(done.ok(), "scapy: {}", done.describe());
    let deadline = Instant::now() + OPEN_WITHIN;
    while !route().contains("mtu 1280") {
        assert!(Instant::now() < deadline, "the kernel never learnt the path MTU: {}", route());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.list().packets("INPUT", "icmpv6-ptb"), 1, "counted on its line");
}

/// An ICMPv6 message from the client's end of the link, as its kernel would write it.
fn icmp6_frame(
    from: [u8; 6],
    to: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    kind: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(from, to)
        .ipv6(src.octets(), dst.octets(), if kind == 2 { 64 } else { 255 })
        .icmpv6_raw(kind, 0, rest)
        .write(&mut frame, body)
        .expect("an ICMPv6 frame");
    frame
}

#[test]
fn a_blocked_peer_gets_no_discovery_nor_packet_too_big_through() {
    require_root();
    let lab = Lab::dual_stack("v6-block");
    lab.tcp_echo(sa(HOST6, 122));
    lab.tcp_echo(sa(HOST6, 443));
    up(&lab);
    // The server knows DNS6's link-layer address and has a route to it to learn an MTU on.
    assert_eq!(ping_received(&lab.ping(IpAddr::V6(HOST6), IpAddr::V6(DNS6), 1, "0.2")), 1);
    lab.firewall_ok(&["block", &SSH_PEER6.to_string()]);

    let (client, server) = (lab.mac(&lab.client, tests::lab::CLIENT_IF), lab.mac(&lab.server, SERVER_IF));
    let all_nodes = [0x33, 0x33, 0, 0, 0, 1];
    let solicited = [0x33, 0x33, 0xff, 0, 0, 1];
    let group: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    // A solicitation for HOST6 carrying the sender's link-layer address: the server's
    // kernel takes the sender in as a neighbour, so a solicitation that gets through leaves
    // an entry. An advertisement, unsolicited. A packet-too-big about a datagram of ours to
    // DNS6, as the existing test's, which the kernel learns a path MTU from.
    let solicitation = |src: Ipv6Addr| {
        let mut body = HOST6.octets().to_vec();
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&client);
        icmp6_frame(client, solicited, src, group, 135, [0; 4], &body)
    };
    let advertisement = |src: Ipv6Addr| {
        let mut body = src.octets().to_vec();
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&client);
        icmp6_frame(client, all_nodes, src, "ff02::1".parse().unwrap(), 136, [0x20, 0, 0, 0], &body)
    };
    let too_big = |src: Ipv6Addr| {
        let mut quoted = vec![0x60, 0, 0, 0, 0x05, 0x78, 58, 64];
        quoted.extend_from_slice(&HOST6.octets());
        quoted.extend_from_slice(&DNS6.octets());
        quoted.extend_from_slice(&[129, 0, 0, 0, 0, 7, 0, 1]);
        quoted.extend_from_slice(&[0x78; 64]);
        icmp6_frame(client, server, src, HOST6, 2, 1280u32.to_be_bytes(), &quoted)
    };
    let link_local: Ipv6Addr = "fe80::7:7".parse().unwrap();
    let before = lab.list();
    lab.send_frames(
        &lab.client,
        tests::lab::CLIENT_IF,
        &[
            solicitation(SSH_PEER6),
            advertisement(SSH_PEER6),
            too_big(SSH_PEER6),
            // The same host's link-local address, and a peer nobody blocked.
            solicitation(link_local),
            solicitation(STRANGER6),
        ],
    );
    let neighbours = || {
        let out = Command::new("ip")
            .args(["-n", &lab.server, "-6", "neigh", "show", "dev", SERVER_IF])
            .output()
            .expect("ip neigh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let known = |addr: Ipv6Addr| neighbours().lines().any(|l| l.starts_with(&format!("{addr} ")));
    let deadline = Instant::now() + OPEN_WITHIN;
    while !(known(link_local) && known(STRANGER6)) {
        assert!(
            Instant::now() < deadline,
            "the unblocked solicitations never reached the stack:\n{}",
            neighbours()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!known(SSH_PEER6), "the blocked address's solicitation reached the stack:\n{}", neighbours());
    let route = || {
        let out = Command::new("ip")
            .args(["-n", &lab.server, "-6", "route", "get", &DNS6.to_string()])
            .output()
            .expect("ip route get");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        !route().contains("mtu 1280"),
        "a packet-too-big from the blocked address was heard: {}",
        route()
    );
    let after = lab.list();
    let block_line = tests::daemons::line_packets(&after, "INPUT", "blocklist", &SSH_PEER6.to_string());
    assert_eq!(block_line, 3, "its solicitation, advertisement and packet-too-big, on the block's line");
    assert!(after.packets("INPUT", "icmpv6-nd") >= before.packets("INPUT", "icmpv6-nd") + 2, "the others");
    // The same packet-too-big from an address nobody blocked is heard: the frame is sound.
    lab.send_frames(&lab.client, tests::lab::CLIENT_IF, &[too_big(STRANGER6)]);
    let deadline = Instant::now() + OPEN_WITHIN;
    while !route().contains("mtu 1280") {
        assert!(Instant::now() < deadline, "the kernel never learnt the path MTU: {}", route());
        std::thread::sleep(Duration::from_millis(50));
    }

    // IPv6 goes on working for everyone else, discovery afresh through the filter; the
    // blocked peer gets nothing, though ssh-in names it.
    for ns in [&lab.server, &lab.client] {
        tests::lab::sh(Command::new("ip").args(["-n", ns, "-6", "neigh", "flush", "all"]));
    }
    assert_eq!(lab.tcp_probe(STRANGER6, sa(HOST6, 443), OPEN_WITHIN), Outcome::Open, "https from a stranger");
    assert_eq!(
        lab.tcp_probe(SSH_PEER6, sa(HOST6, 122), BLOCKED_AFTER),
        Outcome::Blocked,
        "ssh from the blocked peer"
    );
    assert_eq!(ping_received(&lab.ping(IpAddr::V6(HOST6), IpAddr::V6(DNS6), 1, "0.2")), 1, "ping6 out");
}

#[test]
fn without_address6_ipv6_is_dropped_and_ipv4_is_not() {
    require_root();
    let lab = Lab::dual_stack("v6-off");
    lab.tcp_echo(sa(HOST6, 122));
    lab.tcp_echo(std::net::SocketAddrV4::new(HOST, 122));
    lab.up(); // examples/tight.toml: no address6
    assert_eq!(lab.tcp_probe(SSH_PEER6, sa(HOST6, 122), BLOCKED_AFTER), Outcome::Blocked);
    assert_eq!(ping_received(&lab.ping(IpAddr::V6(STRANGER6), IpAddr::V6(HOST6), 2, "0.2")), 0);
    let ipv4_peer = std::net::Ipv4Addr::new(203, 0, 113, 7);
    assert_eq!(lab.tcp_probe(ipv4_peer, std::net::SocketAddrV4::new(HOST, 122), OPEN_WITHIN), Outcome::Open);
    let list = lab.list();
    assert!(list.packets("INPUT", "ipv6") > 0, "IPv6 counted on its drop line");
    assert!(list.packets("INPUT", "ssh-in") > 0, "the IPv4 session on ssh-in's line");
}

/// A server with a second address of each family, and a third on `s0` that the policy
/// does not list: real TCP to each listed address is served and counted on the rule's
/// line, to the unlisted one it meets FORWARD's policy; `list --json` shows the addresses
/// in force; `check` warns of a listed address `s0` lacks; and a reload that moves the
/// service to another list of addresses keeps a connection open to one they share.
#[test]
fn every_listed_address_is_served_and_a_reload_moving_them_keeps_a_session() {
    use std::net::Ipv4Addr;
    require_root();
    let lab = Lab::dual_stack("addresses");
    let ssh_peer = Ipv4Addr::new(203, 0, 113, 7);
    let (second, unlisted) = (Ipv4Addr::new(198, 51, 100, 2), Ipv4Addr::new(198, 51, 100, 3));
    let (second6, unlisted6) =
        (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2), Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3));
    for addr in [IpAddr::V4(second), IpAddr::V4(unlisted), IpAddr::V6(second6), IpAddr::V6(unlisted6)] {
        lab.add_server_address(addr);
    }
    for addr in [IpAddr::V4(HOST), IpAddr::V4(second), IpAddr::V4(unlisted)] {
        lab.tcp_echo(SocketAddr::new(addr, 122));
    }
    for addr in [HOST6, second6, unlisted6] {
        lab.tcp_echo(sa(addr, 122));
    }
    let policy = |v4: &str, v6: &str| {
        format!(
            "[host]\ninterface = \"{SERVER_IF}\"\naddress = {v4}\naddress6 = {v6}\n[[rule]]\nname = \"ssh-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 122\npeers = [\"{ssh_peer}\", \"{SSH_PEER6}\"]\n"
        )
    };
    let file = lab.tmp().join("addresses.toml");
    let write = |text: String| std::fs::write(&file, text).expect("writing the policy");
    write(policy(
        &format!("[\"{HOST}\", \"{second}\"]"),
        &format!("[\"{HOST6}\", \"{second6}\", \"2001:db8::4\"]"),
    ));
    // 2001:db8::4 is listed but not on s0: check warns of it, and of nothing else.
    let checked = lab.firewall(&["check", file.to_str().unwrap()]);
    assert!(checked.status.success(), "check: {}", String::from_utf8_lossy(&checked.stderr));
    assert_eq!(
        String::from_utf8_lossy(&checked.stderr),
        format!(
            "warning: {}: [host] address6 2001:db8::4 is not on interface {SERVER_IF} now\n",
            file.display()
        )
    );
    lab.firewall_ok(&["up", "--policy", file.to_str().unwrap(), "--iface", SERVER_IF]);

    let mut counted = lab.list().packets("INPUT", "ssh-in");
    for to in [SocketAddr::new(HOST.into(), 122), SocketAddr::new(second.into(), 122)] {
        assert_eq!(lab.tcp_probe(ssh_peer, to, OPEN_WITHIN), Outcome::Open, "to {to}");
        let now = lab.list().packets("INPUT", "ssh-in");
        assert!(now > counted, "the connection to {to} on ssh-in's line");
        counted = now;
    }
    for to in [sa(HOST6, 122), sa(second6, 122)] {
        assert_eq!(lab.tcp_probe(SSH_PEER6, to, OPEN_WITHIN), Outcome::Open, "to {to}");
        let now = lab.list().packets("INPUT", "ssh-in");
        assert!(now > counted, "the connection to {to} on ssh-in's line");
        counted = now;
    }
    // The probes' closing segments have all been counted before the count is taken.
    std::thread::sleep(Duration::from_millis(500));
    let counted = lab.list().packets("INPUT", "ssh-in");
    let forward = lab.list().policy("FORWARD");
    for to in [SocketAddr::new(unlisted.into(), 122), sa(unlisted6, 122)] {
        let from: IpAddr = if to.is_ipv4() { ssh_peer.into() } else { SSH_PEER6.into() };
        assert_eq!(lab.tcp_probe(from, to, BLOCKED_AFTER), Outcome::Blocked, "to the unlisted {to}");
    }
    let list = lab.list();
    assert!(list.policy("FORWARD") >= forward + 2, "both unlisted addresses on FORWARD's policy");
    assert_eq!(list.packets("INPUT", "ssh-in"), counted, "nothing to them on ssh-in's line");
    assert_eq!(list.0["addresses"], serde_json::json!([HOST.to_string(), second.to_string()]));
    assert_eq!(
        list.0["addresses6"],
        serde_json::json!([HOST6.to_string(), second6.to_string(), "2001:db8::4"])
    );
    let text = lab.firewall_ok(&["list", "--iface", SERVER_IF]);
    assert!(
        text.ends_with(&format!("host addresses: {HOST}, {second}; {HOST6}, {second6}, 2001:db8::4\n")),
        "{text}"
    );

    // A session to the second address, then a reload that makes it the first of a new
    // list, drops HOST and takes in the unlisted one: the session goes on.
    let mut session = lab
        .tcp_connect(ssh_peer, SocketAddr::new(second.into(), 122), OPEN_WITHIN)
        .expect("a session to the second address");
    tests::lab::echo(&mut session, b"before\n", OPEN_WITHIN).expect("an echo before the reload");
    write(policy(&format!("[\"{second}\", \"{unlisted}\"]"), &format!("\"{second6}\"")));
    lab.firewall_ok(&["reload", "--iface", SERVER_IF]);
    tests::lab::echo(&mut session, b"after\n", OPEN_WITHIN).expect("the session after the reload");
    assert_eq!(
        lab.tcp_probe(ssh_peer, SocketAddr::new(unlisted.into(), 122), OPEN_WITHIN),
        Outcome::Open,
        "the address the reload listed"
    );
    assert_eq!(
        lab.tcp_probe(ssh_peer, SocketAddr::new(HOST.into(), 122), BLOCKED_AFTER),
        Outcome::Blocked,
        "the address the reload took out"
    );
    assert_eq!(lab.tcp_probe(SSH_PEER6, sa(HOST6, 122), BLOCKED_AFTER), Outcome::Blocked, "HOST6 likewise");
    assert_eq!(
        lab.tcp_probe(SSH_PEER6, sa(second6, 122), OPEN_WITHIN),
        Outcome::Open,
        "second6 kept, now alone"
    );
    let list = lab.list();
    assert_eq!(list.0["addresses"], serde_json::json!([second.to_string(), unlisted.to_string()]));
    assert_eq!(list.0["addresses6"], serde_json::json!([second6.to_string()]));
}

/// With `[host] follow_addresses`, `firewall follow` keeps the filter to the addresses `s0`
/// has. An address added after `up`, while nothing follows, is a stranger's (FORWARD's
/// policy); once `follow` runs it is served, counted on the rule's line, in both
/// families, and so is one added while it runs; one removed leaves the maps, and
/// `list --json` shows the addresses in force throughout.
#[test]
fn follow_keeps_the_filter_to_the_interface_s_addresses_as_they_come_and_go() {
    use std::net::Ipv4Addr;
    require_root();
    let lab = Lab::dual_stack("follow");
    let ssh_peer = Ipv4Addr::new(203, 0, 113, 7);
    let (early, late) = (Ipv4Addr::new(198, 51, 100, 8), Ipv4Addr::new(198, 51, 100, 9));
    let late6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);
    let file = lab.tmp().join("follow.toml");
    std::fs::write(
        &file,
        format!(
            "[host]\ninterface = \"{SERVER_IF}\"\naddress = \"{HOST}\"\naddress6 = \"{HOST6}\"\nfollow_addresses = true\n[[rule]]\nname = \"ssh-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 122\npeers = [\"{ssh_peer}\", \"{SSH_PEER6}\"]\n"
        ),
    )
    .expect("writing the policy");
    lab.firewall_ok(&["up", "--policy", file.to_str().unwrap(), "--iface", SERVER_IF]);
    let addresses = |lab: &Lab| {
        let list = lab.list();
        let names = |key: &str| -> Vec<String> {
            list.0[key]
                .as_array()
                .expect("a list")
                .iter()
                .map(|a| a.as_str().expect("text").to_owned())
                .collect()
        };
        (names("addresses"), names("addresses6"))
    };
    type InForce = (Vec<String>, Vec<String>);
    let wait_for = |lab: &Lab, what: &str, wanted: &dyn Fn(&InForce) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = addresses(lab);
            if wanted(&now) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: the addresses in force are {now:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Added after `up`, nothing following: a stranger's address.
    lab.add_server_address(early);
    lab.tcp_echo(SocketAddr::new(early.into(), 122));
    let forward = lab.list().policy("FORWARD");
    let to_early = SocketAddr::new(early.into(), 122);
    assert_eq!(lab.tcp_probe(ssh_peer, to_early, BLOCKED_AFTER), Outcome::Blocked, "before follow");
    assert!(lab.list().policy("FORWARD") > forward, "on FORWARD's policy");

    let mut follow = lab.server_command(tests::lab::firewall_bin());
    follow.args(["follow", "--iface", SERVER_IF]).stdout(std::process::Stdio::null());
    lab.spawn(&mut follow);
    wait_for(&lab, "follow's first pass", &|(v4, _)| v4.contains(&early.to_string()));
    let counted = lab.list().packets("INPUT", "ssh-in");
    assert_eq!(lab.tcp_probe(ssh_peer, to_early, OPEN_WITHIN), Outcome::Open, "once followed");
    assert!(lab.list().packets("INPUT", "ssh-in") > counted, "on ssh-in's line");

    // Added while it follows, both families.
    lab.add_server_address(late);
    lab.add_server_address(late6);
    lab.tcp_echo(SocketAddr::new(late.into(), 122));
    lab.tcp_echo(sa(late6, 122));
    wait_for(&lab, "two addresses added", &|(v4, v6)| {
        v4.contains(&late.to_string()) && v6.contains(&late6.to_string())
    });
    assert_eq!(lab.tcp_probe(ssh_peer, SocketAddr::new(late.into(), 122), OPEN_WITHIN), Outcome::Open);
    assert_eq!(lab.tcp_probe(SSH_PEER6, sa(late6, 122), OPEN_WITHIN), Outcome::Open);

    // Removed: out of the maps again; the listed addresses stay.
    let removed = Command::new("ip")
        .args(["-n", &lab.server, "addr", "del", &format!("{early}/32"), "dev", SERVER_IF])
        .status()
        .expect("running ip");
    assert!(removed.success(), "ip addr del");
    wait_for(&lab, "an address removed", &|(v4, _)| !v4.contains(&early.to_string()));
    let (v4, v6) = addresses(&lab);
    assert_eq!(v4, [HOST.to_string(), late.to_string()]);
    assert_eq!(v6, [HOST6.to_string(), late6.to_string()]);
}
