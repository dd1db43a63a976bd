//! End to end: the `firewall` binary attached to `s0` in a server namespace with
//! examples/tight.toml, real TCP and UDP sockets and ping from a client namespace that
//! holds every peer of the policy and two strangers.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration e2e::`.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::{Duration, Instant},
};

use tests::{
    lab::{
        BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, STRANGER2, echo, ping_received,
        stdout, xdp_lines,
    },
    require_root,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// One probe: from an address to a service, and what it must see.
#[derive(Clone, Copy, Debug)]
struct Probe {
    proto: Proto,
    from: Ipv4Addr,
    to: SocketAddrV4,
    expect: Outcome,
}

fn tcp(from: Ipv4Addr, to: Ipv4Addr, port: u16, expect: Outcome) -> Probe {
    Probe { proto: Proto::Tcp, from, to: SocketAddrV4::new(to, port), expect }
}

fn udp(from: Ipv4Addr, to: Ipv4Addr, port: u16, expect: Outcome) -> Probe {
    Probe { proto: Proto::Udp, from, to: SocketAddrV4::new(to, port), expect }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// Starts the echo server every probe needs (once per service).
fn serve(lab: &Lab, probes: &[Probe]) {
    let mut started = Vec::new();
    for p in probes {
        if started.contains(&(p.proto, p.to)) {
            continue;
        }
        started.push((p.proto, p.to));
        match p.proto {
            Proto::Tcp => lab.tcp_echo(p.to),
            Proto::Udp => lab.udp_echo(p.to),
        }
    }
}

/// Runs every probe at once (a blocked one costs its whole timeout) and returns the
/// mismatches, described.
fn run(lab: &Lab, probes: &[Probe]) -> Vec<String> {
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .iter()
            .map(|p| {
                // A probe that should pass returns as soon as it does: it may take its
                // time on a loaded machine; one that should be blocked costs its timeout.
                let timeout = if p.expect == Outcome::Open { OPEN_WITHIN } else { BLOCKED_AFTER };
                scope.spawn(move || match p.proto {
                    Proto::Tcp => lab.tcp_probe(p.from, p.to, timeout),
                    Proto::Udp => lab.udp_probe(p.from, p.to, timeout),
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("probe thread")).collect()
    });
    probes
        .iter()
        .zip(outcomes)
        .filter(|(p, got)| p.expect != *got)
        .map(|(p, got)| format!("{:?} {} -> {}: expected {:?}, got {got:?}", p.proto, p.from, p.to, p.expect))
        .collect()
}

/// The same probes with every expectation `Open`: the lab reaches everything before
/// `up`, so a block afterwards is the firewall's doing.
fn all_open(probes: &[Probe]) -> Vec<Probe> {
    probes.iter().map(|p| Probe { expect: Outcome::Open, ..*p }).collect()
}

fn assert_probes(lab: &Lab, probes: &[Probe], when: &str) {
    let wrong = run(lab, probes);
    assert!(
        wrong.is_empty(),
        "{when}: {} of {} probes wrong:\n  {}",
        wrong.len(),
        probes.len(),
        wrong.join("\n  ")
    );
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn inbound_services_open_to_their_peers_and_closed_to_strangers() {
    require_root();
    let lab = Lab::new("inbound");
    use Outcome::{Blocked, Open};
    let probes = [
        // ssh-in: tcp 122 from 203.0.113.7 and .8 only.
        tcp(ip(203, 0, 113, 7), HOST, 122, Open),
        tcp(ip(203, 0, 113, 8), HOST, 122, Open),
        tcp(STRANGER, HOST, 122, Blocked),
        tcp(STRANGER2, HOST, 122, Blocked),
        // mail-in: tcp 25 from the relay 203.0.113.25 only (the ssh peer is not it).
        tcp(ip(203, 0, 113, 25), HOST, 25, Open),
        tcp(STRANGER, HOST, 25, Blocked),
        tcp(ip(203, 0, 113, 7), HOST, 25, Blocked),
        // web-in: tcp 80 and 443 from anyone.
        tcp(STRANGER, HOST, 80, Open),
        tcp(STRANGER2, HOST, 443, Open),
        tcp(ip(203, 0, 113, 7), HOST, 443, Open),
        // Nothing else: a port no rule names, even from an ssh peer.
        tcp(STRANGER, HOST, 8080, Blocked),
        tcp(ip(203, 0, 113, 7), HOST, 8080, Blocked),
    ];
    serve(&lab, &probes);
    assert_probes(&lab, &all_open(&probes), "before up");
    let before = Instant::now();
    lab.up();
    assert_probes(&lab, &probes, "after up");

    let list = lab.list();
    for rule in ["ssh-in", "mail-in", "web-in"] {
        assert!(list.packets("INPUT", rule) > 0, "{rule}: its INPUT (NEW) line counted nothing");
        assert!(list.packets("OUTPUT", rule) > 0, "{rule}: its OUTPUT (ESTABLISHED) line counted nothing");
    }
    // The six blocked connects, a SYN each at least (a retransmission may add more).
    let blocked = probes.iter().filter(|p| p.expect == Blocked).count() as u64;
    assert!(
        list.policy("INPUT") >= blocked,
        "INPUT policy counted {} drops, expected >= {blocked}",
        list.policy("INPUT")
    );
    // Every answer of an admitted connection went out: none fell to OUTPUT's policy.
    assert_eq!(list.policy("OUTPUT"), 0, "OUTPUT policy dropped returns of admitted flows");
    assert_eq!(list.policy("FORWARD"), 0, "nothing here is for another host");
    eprintln!("inbound: probes after up took {:?}", before.elapsed());
}

#[test]
fn outbound_services_open_to_their_peers_and_closed_to_strangers() {
    require_root();
    let lab = Lab::new("outbound");
    use Outcome::{Blocked, Open};
    let probes = [
        // dns: udp and tcp 53 to 198.51.100.53.
        udp(HOST, ip(198, 51, 100, 53), 53, Open),
        tcp(HOST, ip(198, 51, 100, 53), 53, Open),
        udp(HOST, STRANGER2, 53, Blocked),
        tcp(HOST, STRANGER2, 53, Blocked),
        // ntp: udp 123 to 198.51.100.123 (a DNS server is not an NTP server).
        udp(HOST, ip(198, 51, 100, 123), 123, Open),
        udp(HOST, STRANGER2, 123, Blocked),
        udp(HOST, ip(198, 51, 100, 53), 123, Blocked),
        // repo: tcp 80 to 203.0.113.80.
        tcp(HOST, ip(203, 0, 113, 80), 80, Open),
        tcp(HOST, STRANGER, 80, Blocked),
        // web-out: tcp 80 to 203.0.113.90.
        tcp(HOST, ip(203, 0, 113, 90), 80, Open),
        // ssh-out: tcp 22 to 203.0.113.22 (and not to the repository).
        tcp(HOST, ip(203, 0, 113, 22), 22, Open),
        tcp(HOST, STRANGER, 22, Blocked),
        tcp(HOST, ip(203, 0, 113, 80), 22, Blocked),
        // mail-out: tcp 25 to the smart host 198.51.100.25.
        tcp(HOST, ip(198, 51, 100, 25), 25, Open),
        tcp(HOST, STRANGER2, 25, Blocked),
    ];
    serve(&lab, &probes);
    assert_probes(&lab, &all_open(&probes), "before up");
    lab.up();
    assert_probes(&lab, &probes, "after up");

    let list = lab.list();
    for rule in ["dns", "ntp", "repo", "web-out", "ssh-out", "mail-out"] {
        assert!(list.packets("OUTPUT", rule) > 0, "{rule}: its OUTPUT (NEW) line counted nothing");
        assert!(list.packets("INPUT", rule) > 0, "{rule}: its INPUT (ESTABLISHED) line counted nothing");
    }
    let blocked = probes.iter().filter(|p| p.expect == Blocked).count() as u64;
    assert!(
        list.policy("OUTPUT") >= blocked,
        "OUTPUT policy counted {} drops, expected >= {blocked}",
        list.policy("OUTPUT")
    );
    // The answers of admitted flows all came in as ESTABLISHED.
    assert_eq!(list.policy("INPUT"), 0, "INPUT policy dropped returns of admitted flows");
}

#[test]
fn ping_is_rate_limited_to_one_per_second_after_a_burst_of_five() {
    require_root();
    let lab = Lab::new("ping");
    lab.up();
    let started = Instant::now();
    let pid = lab.spawn(
        Command::new("ip")
            .args(["netns", "exec", &lab.client, "ping", "-n", "-c", "15", "-i", "0.1", "-W", "1"])
            .arg(HOST.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );
    let output = lab.wait(pid);
    let elapsed = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let received = ping_received(&stdout);
    eprintln!("ping: {received} of 15 replies in {elapsed:.2}s");
    assert!(received >= 5, "the burst of 5 should pass, got {received} replies:\n{stdout}");
    assert!(
        f64::from(received) <= 5.0 + elapsed + 1.0,
        "{received} replies in {elapsed:.1}s: more than burst 5 + 1/sec allows:\n{stdout}"
    );
    assert!(received < 15, "nothing was limited:\n{stdout}");

    let list = lab.list();
    // Each admitted request is counted on ping-in's line and answered as ESTABLISHED;
    // the others fall to INPUT's policy, as with iptables' -m limit.
    assert_eq!(list.packets("INPUT", "ping-in"), u64::from(received), "requests admitted");
    assert_eq!(list.packets("OUTPUT", "ping-in"), u64::from(received), "replies sent");
    assert_eq!(list.policy("INPUT"), u64::from(15 - received), "requests over the limit");
}

#[test]
fn a_session_open_before_up_survives_it() {
    require_root();
    let lab = Lab::new("lockout");
    let ssh = SocketAddrV4::new(HOST, 122);
    lab.tcp_echo(ssh);
    let peer = Ipv4Addr::new(203, 0, 113, 7);
    let mut session = lab.tcp_connect(peer, ssh, OPEN_WITHIN).expect("ssh-in session before up");
    echo(&mut session, b"before up\n", Duration::from_secs(2)).expect("echo before up");

    lab.up();
    // The peer speaks first, mid-stream: no SYN, and the filter has never seen this flow.
    echo(&mut session, b"after up\n", Duration::from_secs(3)).expect("the session before up was cut by up");
    for i in 0..3 {
        let line = format!("line {i}\n");
        echo(&mut session, line.as_bytes(), Duration::from_secs(2)).expect("the session stalled after up");
    }
    // A stranger's new session to the same port is still refused: the flow was picked
    // up by its rule, not let through wholesale.
    assert_eq!(lab.tcp_probe(STRANGER, ssh, BLOCKED_AFTER), Outcome::Blocked, "stranger to ssh after up");

    let list = lab.list();
    assert!(list.packets("INPUT", "ssh-in") >= 4, "the mid-stream packets were admitted by ssh-in");
    assert!(list.packets("OUTPUT", "ssh-in") >= 4, "the server's answers went out as ESTABLISHED");
    assert_eq!(list.policy("OUTPUT"), 0, "no answer of the session was dropped");
}

#[test]
fn down_detaches_everything_and_traffic_flows_again() {
    require_root();
    let lab = Lab::new("down");
    let closed = SocketAddrV4::new(HOST, 8080);
    lab.tcp_echo(closed);
    lab.up();
    assert_eq!(xdp_lines(&lab.server_link()).len(), 1, "XDP attached after up:\n{}", lab.server_link());
    assert_eq!(lab.tcx_egress(), vec!["firewall_egress".to_string()], "TC egress after up");
    assert!(lab.pin_dir().is_dir(), "pinned at {}", lab.pin_dir().display());
    assert_eq!(lab.tcp_probe(STRANGER, closed, BLOCKED_AFTER), Outcome::Blocked, "8080 while up");

    let out = lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    assert_eq!(out.trim(), format!("firewall down on {SERVER_IF}"));
    let link = lab.server_link();
    assert!(!link.contains("xdp"), "XDP still attached after down:\n{link}");
    assert_eq!(lab.tcx_egress(), Vec::<String>::new(), "TC egress programs after down");
    assert!(!lab.pin_dir().exists(), "{} still exists after down", lab.pin_dir().display());
    // The namespace's own directories go with its last filter.
    assert!(!lab.pin_root().exists(), "{} still exists after down", lab.pin_root().display());
    assert!(!lab.state_root().exists(), "{} still exists after down", lab.state_root().display());
    assert_eq!(lab.tcp_probe(STRANGER, closed, OPEN_WITHIN), Outcome::Open, "8080 after down");
    assert_eq!(
        lab.tcp_probe(STRANGER2, SocketAddrV4::new(HOST, 9), OPEN_WITHIN),
        Outcome::Refused,
        "a closed port answers RST again"
    );

    // Nothing left to list or take down.
    // Exit status 7: no filter is up.
    let list = lab.firewall(&["list", "--json", "--iface", SERVER_IF]);
    assert_eq!(list.status.code(), Some(7));
    assert!(stderr(&list).contains("no filter is up"), "{}", stderr(&list));
    let again = lab.firewall(&["down", "--iface", SERVER_IF]);
    assert_eq!(again.status.code(), Some(7));
    assert!(stderr(&again).contains("no filter is up"), "{}", stderr(&again));
}

/// A veth pair `x0` (server) – `x1` (client), up, beside the lab's own.
fn make_x_pair(lab: &Lab) {
    let made = tests::lab::sh(Command::new("ip").args([
        "-n",
        &lab.server,
        "link",
        "add",
        "x0",
        "type",
        "veth",
        "peer",
        "name",
        "x1",
        "netns",
        &lab.client,
    ]));
    assert!(made.status.success(), "ip link add x0: {}", stderr(&made));
    for (ns, dev) in [(&lab.server, "x0"), (&lab.client, "x1")] {
        assert!(
            tests::lab::sh(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"])).status.success()
        );
    }
}

/// XDP's lines in `ip -d link show x0`, in the server's namespace.
fn x0_xdp(lab: &Lab) -> usize {
    let out = tests::lab::sh(Command::new("ip").args(["-n", &lab.server, "-d", "link", "show", "x0"]));
    xdp_lines(&String::from_utf8_lossy(&out.stdout)).len()
}

/// An interface removed and made again under its name (a container's veth, a bond or a
/// VLAN that a network restart makes anew) is another interface: the kernel severed the
/// filter's links when the first went, so its programs judge nothing. Every change refuses
/// such a filter rather than say it applied, naming the way out, and `up` attaches it to
/// the new interface afresh.
#[test]
fn an_interface_made_again_under_its_name_is_refused_until_up_attaches_afresh() {
    require_root();
    let lab = Lab::new("remade");
    make_x_pair(&lab);
    let policy = lab.policy_file();
    let policy = policy.to_str().unwrap();
    lab.firewall_ok(&["up", "--policy", policy, "--iface", "x0", "--audit"]);
    assert_eq!(x0_xdp(&lab), 1, "XDP on x0");

    let removed = tests::lab::sh(Command::new("ip").args(["-n", &lab.server, "link", "del", "x0"]));
    assert!(removed.status.success(), "{}", stderr(&removed));
    make_x_pair(&lab);
    assert_eq!(x0_xdp(&lab), 0, "the new x0 has no program");
    let severed = "the filter on x0 is attached to nothing: its interface was removed, and the x0 there now is another, unfiltered; `firewall up` attaches the filter to it afresh";
    for args in [vec!["reload", "--iface", "x0"], vec!["allow", "--iface", "x0", "ssh-in", "203.0.113.99"]] {
        let out = lab.firewall(&args);
        assert!(!out.status.success(), "{args:?} said it applied to a filter on nothing");
        assert_eq!(stderr(&out), format!("firewall: {severed}\n"), "{args:?}");
    }
    // What shows the filter says so: its counters stand still, which reads as a quiet host.
    let out = lab.firewall(&["list", "--iface", "x0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("firewall: warning: {severed}\n"));
    assert!(stdout(&out).starts_with(&format!("Not filtering: {severed}\n")), "{}", stdout(&out));
    let json: serde_json::Value =
        serde_json::from_str(&lab.firewall_ok(&["list", "--iface", "x0", "--json"])).expect("list --json");
    assert_eq!(json["attached"], false, "{json}");

    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", "x0"]);
    assert!(out.contains("firewall up on x0: attached"), "{out}");
    assert!(out.contains("was on an interface since removed; it is on the new one now"), "{out}");
    assert!(out.contains("audit mode"), "the severed filter's mode is kept: {out}");
    assert_eq!(x0_xdp(&lab), 1, "XDP on the new x0");
    let out = lab.firewall(&["list", "--iface", "x0"]);
    assert_eq!(stderr(&out), "", "attached again");
    assert!(!stdout(&out).contains("Not filtering"), "{}", stdout(&out));
    let json: serde_json::Value =
        serde_json::from_str(&lab.firewall_ok(&["list", "--iface", "x0", "--json"])).expect("list --json");
    assert_eq!(json["attached"], true, "{json}");
    lab.firewall_ok(&["reload", "--iface", "x0"]);
    lab.firewall_ok(&["down", "--iface", "x0"]);
}
