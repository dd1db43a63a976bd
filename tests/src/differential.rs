//! The differential run against the seed's iptables script (see tests/tests/integration/differential.rs):
//! one probe matrix, run in one lab three times: with no filter (every probe must get
//! through, or it proves nothing), behind `tests/seed/tight-iptables.sh` (the seed's own
//! script, given the lab's addresses), and behind the firewall with examples/tight.toml.
//!
//! What a probe observes, and where:
//!
//! - connections: a TCP or UDP exchange with an echo server ([`Lab::tcp_probe`], and a
//!   UDP probe that, unlike [`Lab::udp_probe`], takes the `EPERM` an iptables OUTPUT drop
//!   gives the sender for the drop it is), or a TCP connect over IPv6;
//! - crafted packets (scapy, Debian's python3-scapy): each carries its own IP id, and it
//!   counts as delivered when a raw socket (`SOCK_RAW`, one per protocol) on the far side
//!   saw it. A raw socket gets its copy in `ip_local_deliver` after netfilter's INPUT hook
//!   (and after reassembly), and XDP and TC drops happen before it, so "seen" means
//!   delivered under either filter. Ingress packets go out of `c0` as frames and are
//!   looked for in the server namespace; egress ones leave the host through a raw
//!   socket (so through netfilter's OUTPUT and the TC program) and are looked for in the
//!   client namespace;
//! - ping: how many of 12 echo requests, 0.1 s apart, were answered (`ping` from a
//!   stranger; from the host, a raw socket's requests: see [`echo_burst`]).
use std::{
    collections::BTreeMap,
    fmt, fs, io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use firewall_user::policy::{Policy, Service};

use crate::lab::{
    CLIENT_IF, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, STRANGER2, ping_received, rejected, sh,
    tight_text,
};

/// Debian's python3, the one python3-scapy is installed for (a `python3` earlier on PATH,
/// pyenv's say, may lack it).
pub const PYTHON: &str = "/usr/bin/python3";
/// The seed's script, transcribed.
pub const SEED_SCRIPT: &str = "tests/seed/tight-iptables.sh";
/// IPv6 on the veth pair (the documentation prefix), for the one IPv6 probe.
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);
/// Multicast groups the host joins on `s0`, so that without a filter a datagram to them
/// is delivered: 224.0.0.0/4, and 239.255.255.0/24 which the seed also names.
pub const GROUPS: [Ipv4Addr; 2] = [Ipv4Addr::new(224, 1, 2, 3), Ipv4Addr::new(239, 255, 255, 250)];
/// The ports the host sends its two DNS queries from, so that a crafted packet can
/// answer them: a fragmented answer, and an ICMP error quoting the query.
pub const QUERY_FRAGMENTED: u16 = 53531;
pub const QUERY_UNREACHABLE: u16 = 53532;
/// The first crafted packet's IP id; each next one takes the next.
const FIRST_ID: u16 = 0xD100;
/// How many echo requests the ping probes send, 0.1 s apart.
pub const PINGS: u32 = 12;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// What sits between the lab's two namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Filter {
    Nothing,
    Iptables,
    Firewall,
    /// The firewall with the policy `firewall import` made of the seed's iptables-save.
    Imported,
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filter::Nothing => "no filter",
            Filter::Iptables => "iptables",
            Filter::Firewall => "firewall",
            Filter::Imported => "firewall (imported)",
        })
    }
}

/// What one probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A connection probe's outcome.
    Conn(Outcome),
    /// A crafted packet reached the far side's raw socket, or did not.
    Delivered,
    Dropped,
    /// Echo replies received, of [`PINGS`] requests.
    Replies(u32),
}

impl Verdict {
    /// The same, for the comparison: ping counts within one of each other (the two
    /// token buckets are not started at the same instant), everything else equal.
    pub fn agrees(self, other: Verdict) -> bool {
        match (self, other) {
            (Verdict::Replies(a), Verdict::Replies(b)) => a.abs_diff(b) <= 1,
            (a, b) => a == b,
        }
    }

    /// What every probe must see with no filter in the way.
    pub fn through(self) -> bool {
        matches!(self, Verdict::Conn(Outcome::Open) | Verdict::Delivered | Verdict::Replies(PINGS))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Conn(Outcome::Open) => f.write_str("open"),
            Verdict::Conn(Outcome::Blocked) => f.write_str("blocked"),
            Verdict::Conn(Outcome::Refused) => f.write_str("refused"),
            Verdict::Conn(Outcome::Stalled) => f.write_str("stalled"),
            Verdict::Delivered => f.write_str("delivered"),
            Verdict::Dropped => f.write_str("dropped"),
            Verdict::Replies(n) => write!(f, "{n}/{PINGS} replies"),
        }
    }
}

/// A verdict and what else was noticed on the way (the sender's `EPERM`).
#[derive(Clone, Debug)]
pub struct Seen {
    pub verdict: Verdict,
    pub note: Option<String>,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.note {
            Some(note) => write!(f, "{} ({note})", self.verdict),
            None => write!(f, "{}", self.verdict),
        }
    }
}

/// Which way a crafted packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// From the client namespace, as frames on `c0`, to the host.
    In,
    /// From the host, through its stack (netfilter's OUTPUT, then TC egress).
    Out,
}

/// A packet made by hand.
#[derive(Clone, Debug)]
pub struct Crafted {
    pub side: Side,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// The transport layer and what follows, in scapy: `TCP(sport=40001, dport=122, flags="S")`.
    pub l4: String,
    /// The transport source port, for TCP and UDP: part of the mark with the IP id.
    pub sport: Option<u16>,
    /// Send it as IPv4 fragments of this many payload bytes each (a multiple of 8).
    pub fragments: Option<u32>,
    /// A datagram the host sends first, from this local port to this peer, so that the
    /// crafted packet answers a query the host really made.
    pub after_query: Option<(u16, SocketAddrV4)>,
}

/// What a probe does.
#[derive(Clone, Debug)]
pub enum Kind {
    Tcp {
        from: Ipv4Addr,
        to: SocketAddrV4,
    },
    Udp {
        from: Ipv4Addr,
        to: SocketAddrV4,
    },
    Tcp6 {
        to: SocketAddrV6,
    },
    /// [`PINGS`] echo requests 0.1 s apart from `from` to `to`, and the replies counted.
    Ping {
        from: Ipv4Addr,
        to: Ipv4Addr,
    },
    Crafted(Crafted),
}

#[derive(Clone, Debug)]
pub struct Probe {
    pub name: String,
    pub kind: Kind,
}

/// The peers of one rule of the policy (single addresses: the lab owns them).
pub fn peers(policy: &Policy, rule: &str) -> Vec<Ipv4Addr> {
    let rule = policy.rules.iter().find(|r| r.name == rule).unwrap_or_else(|| panic!("no rule {rule:?}"));
    rule.peers
        .iter()
        .filter_map(|p| match p.addr {
            std::net::IpAddr::V4(addr) if p.len == 32 => Some(addr),
            _ => None,
        })
        .collect()
}

/// The TCP or UDP ports of one rule.
pub fn ports(policy: &Policy, rule: &str) -> Vec<u16> {
    let rule = policy.rules.iter().find(|r| r.name == rule).unwrap_or_else(|| panic!("no rule {rule:?}"));
    let mut ports: Vec<u16> = rule
        .services
        .iter()
        .filter_map(|s| match s {
            Service::Port { port, .. } => Some(*port),
            Service::Range { .. } | Service::Icmp { .. } => None,
        })
        .collect();
    ports.dedup();
    ports
}

/// examples/tight.toml, parsed.
pub fn tight() -> Policy {
    firewall_user::policy::parse(&tight_text(), Path::new("examples/tight.toml"))
        .unwrap_or_else(|e| panic!("examples/tight.toml: {e}"))
}

/// The seed script's environment for examples/tight.toml: each of its variables is
/// the peers (or ports) of the rule that stands for it.
pub fn seed_env(policy: &Policy) -> Vec<(&'static str, String)> {
    let join = |v: Vec<String>| v.join(" ");
    let addrs = |rule: &str| join(peers(policy, rule).iter().map(|a| a.to_string()).collect());
    let one = |rule: &str| {
        let p = peers(policy, rule);
        assert_eq!(p.len(), 1, "the seed's variable for {rule} holds one address");
        p[0].to_string()
    };
    let ssh = ports(policy, "ssh-in");
    assert_eq!(ssh.len(), 1, "ssh-in has one port");
    let iptables = if Path::new("/usr/sbin/iptables").exists() { "/usr/sbin/iptables" } else { "iptables" };
    vec![
        ("IPTABLES", iptables.to_owned()),
        ("OURIP", policy.address.to_string()),
        ("SSHIPS", addrs("ssh-in")),
        ("DNSIPS", addrs("dns")),
        ("NTPIPS", addrs("ntp")),
        ("MAILOUT", one("mail-out")),
        ("MAILIN", one("mail-in")),
        ("OTHERIP", one("ssh-out")),
        ("REPOIPS", addrs("repo")),
        ("WEBALLOWED", addrs("web-out")),
        ("SERVICES", join(ports(policy, "web-in").iter().map(|p| p.to_string()).collect())),
        ("SSH", ssh[0].to_string()),
    ]
}

fn iptables(lab: &Lab, args: &[&str]) -> String {
    let out = sh(Command::new("ip").args(["netns", "exec", &lab.server, "iptables"]).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `iptables -S` says of a filter table with nothing in it.
pub const IPTABLES_CLEAN: &str = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n";

/// Runs the seed's script in the server namespace: `ip netns exec SERVER sh SCRIPT`.
/// Returns `iptables -S` afterwards.
pub fn iptables_up(lab: &Lab, policy: &Policy) -> String {
    assert_eq!(iptables(lab, &["-S"]), IPTABLES_CLEAN, "the server namespace's filter table is not empty");
    let script = crate::workspace().join(SEED_SCRIPT);
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &lab.server, "sh"])
        .arg(&script)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (name, value) in seed_env(policy) {
        command.env(name, value);
    }
    sh(&mut command);
    iptables(lab, &["-S"])
}

/// `iptables -nvL` in the server namespace (the seed's counters).
pub fn iptables_listing(lab: &Lab) -> String {
    iptables(lab, &["-nvL"])
}

/// Undoes the seed's script: flush, delete user chains, zero, policies ACCEPT; and
/// checks that `iptables -S` is clean.
pub fn iptables_down(lab: &Lab) {
    iptables(lab, &["-F"]);
    iptables(lab, &["-X"]);
    iptables(lab, &["-Z"]);
    for chain in ["INPUT", "FORWARD", "OUTPUT"] {
        iptables(lab, &["-P", chain, "ACCEPT"]);
    }
    assert_eq!(iptables(lab, &["-S"]), IPTABLES_CLEAN, "iptables is not clean after the restore");
}

/// A TCP connection from `from` to `to`:`port`, echoed.
pub fn tcp(name: impl Into<String>, from: Ipv4Addr, to: Ipv4Addr, port: u16) -> Probe {
    Probe { name: name.into(), kind: Kind::Tcp { from, to: SocketAddrV4::new(to, port) } }
}

/// A UDP exchange from `from` with the echo server at `to`:`port`.
pub fn udp(name: impl Into<String>, from: Ipv4Addr, to: Ipv4Addr, port: u16) -> Probe {
    Probe { name: name.into(), kind: Kind::Udp { from, to: SocketAddrV4::new(to, port) } }
}

/// A lone UDP datagram from `from` to the host's `port`: whether it arrives, answered or
/// not (a one-way rule's service, syslog say, is judged by that).
pub fn udp_datagram(name: impl Into<String>, from: Ipv4Addr, port: u16) -> Probe {
    Crafted::inbound(from, PROTO_UDP, format!("UDP(sport=40600, dport={port})/Raw(b'datagram')"))
        .sport(40600)
        .named(name)
}

impl Crafted {
    /// A packet from `src` to the host, sent as a frame on `c0`.
    fn inbound(src: Ipv4Addr, proto: u8, l4: impl Into<String>) -> Crafted {
        Crafted {
            side: Side::In,
            src,
            dst: HOST,
            proto,
            l4: l4.into(),
            sport: None,
            fragments: None,
            after_query: None,
        }
    }

    /// A packet from the host to `dst`, sent through the host's stack.
    fn outbound(dst: Ipv4Addr, proto: u8, l4: impl Into<String>) -> Crafted {
        Crafted { side: Side::Out, src: HOST, dst, ..Crafted::inbound(HOST, proto, l4) }
    }

    /// A TCP segment from `src` to the host, with flags (scapy's letters: F S R P A U).
    fn segment(src: Ipv4Addr, sport: u16, dport: u16, flags: &str) -> Crafted {
        // No letters at all is scapy's 0, the NULL segment.
        let flags = if flags.is_empty() { "0".to_owned() } else { format!("{flags:?}") };
        Crafted::inbound(src, PROTO_TCP, format!("TCP(sport={sport}, dport={dport}, flags={flags})"))
            .sport(sport)
    }

    fn src(self, src: Ipv4Addr) -> Crafted {
        Crafted { src, ..self }
    }

    fn dst(self, dst: Ipv4Addr) -> Crafted {
        Crafted { dst, ..self }
    }

    fn sport(self, sport: u16) -> Crafted {
        Crafted { sport: Some(sport), ..self }
    }

    fn fragments(self, size: u32) -> Crafted {
        Crafted { fragments: Some(size), ..self }
    }

    fn after_query(self, local_port: u16, peer: SocketAddrV4) -> Crafted {
        Crafted { after_query: Some((local_port, peer)), ..self }
    }

    fn named(self, name: impl Into<String>) -> Probe {
        Probe { name: name.into(), kind: Kind::Crafted(self) }
    }
}

/// scapy's `IP(src=…, dst=…, ttl=63)`, for a header an ICMP error quotes.
fn quoted(src: Ipv4Addr, dst: Ipv4Addr) -> String {
    format!("IP(src={:?}, dst={:?}, ttl=63)", src.to_string(), dst.to_string())
}

/// The probe matrix for examples/tight.toml in the lab.
pub fn matrix(policy: &Policy) -> Vec<Probe> {
    let ssh_peers = peers(policy, "ssh-in");
    let ssh = ports(policy, "ssh-in")[0];
    let relay = peers(policy, "mail-in")[0];
    let dns = peers(policy, "dns");
    let ntp = peers(policy, "ntp");
    let repo = peers(policy, "repo");
    let web_out = peers(policy, "web-out");
    let other = peers(policy, "ssh-out")[0];
    let smarthost = peers(policy, "mail-out")[0];
    let services = ports(policy, "web-in");
    let web = services[0];
    let closed = 8080;
    let peer = ssh_peers[0];
    let mut m = Vec::new();

    // Inbound services: from each peer a rule names, and from strangers.
    for &p in &ssh_peers {
        m.push(tcp(format!("ssh-in tcp/{ssh} from SSHIPS {p}"), p, HOST, ssh));
    }
    for s in [STRANGER, STRANGER2] {
        m.push(tcp(format!("ssh-in tcp/{ssh} from stranger {s}"), s, HOST, ssh));
    }
    m.push(tcp(format!("mail-in tcp/25 from MAILIN {relay}"), relay, HOST, 25));
    m.push(tcp(format!("mail-in tcp/25 from stranger {STRANGER}"), STRANGER, HOST, 25));
    m.push(tcp(format!("mail-in tcp/25 from SSH peer {peer}"), peer, HOST, 25));
    for (&port, from) in services.iter().zip([STRANGER, STRANGER2].into_iter().cycle()) {
        m.push(tcp(format!("web-in tcp/{port} from stranger {from}"), from, HOST, port));
    }
    m.push(tcp(format!("web-in tcp/{web} from SSH peer {peer}"), peer, HOST, web));
    m.push(tcp(format!("closed tcp/{closed} from stranger {STRANGER}"), STRANGER, HOST, closed));
    m.push(tcp(format!("closed tcp/{closed} from SSH peer {peer}"), peer, HOST, closed));
    m.push(udp(format!("closed udp/{closed} from stranger {STRANGER}"), STRANGER, HOST, closed));
    m.push(tcp(format!("loopback tcp/{closed} host to itself"), HOST, HOST, closed));

    // Outbound services: to each peer, and to a stranger on the same port.
    for &d in &dns {
        m.push(udp(format!("dns udp/53 to DNSIPS {d}"), HOST, d, 53));
        m.push(tcp(format!("dns tcp/53 to DNSIPS {d}"), HOST, d, 53));
    }
    m.push(udp(format!("dns udp/53 to stranger {STRANGER2}"), HOST, STRANGER2, 53));
    m.push(tcp(format!("dns tcp/53 to stranger {STRANGER2}"), HOST, STRANGER2, 53));
    for &n in &ntp {
        m.push(udp(format!("ntp udp/123 to NTPIPS {n}"), HOST, n, 123));
    }
    m.push(udp(format!("ntp udp/123 to stranger {STRANGER2}"), HOST, STRANGER2, 123));
    m.push(udp(format!("ntp udp/123 to DNS server {}", dns[0]), HOST, dns[0], 123));
    for &r in &repo {
        m.push(tcp(format!("repo tcp/80 to REPOIPS {r}"), HOST, r, 80));
    }
    for &w in &web_out {
        m.push(tcp(format!("web-out tcp/80 to WEBALLOWED {w}"), HOST, w, 80));
    }
    m.push(tcp(format!("web-out tcp/80 to stranger {STRANGER}"), HOST, STRANGER, 80));
    m.push(tcp(format!("ssh-out tcp/22 to OTHERIP {other}"), HOST, other, 22));
    m.push(tcp(format!("ssh-out tcp/22 to stranger {STRANGER}"), HOST, STRANGER, 22));
    m.push(tcp(format!("ssh-out tcp/22 to REPO {}", repo[0]), HOST, repo[0], 22));
    m.push(tcp(format!("mail-out tcp/25 to MAILOUT {smarthost}"), HOST, smarthost, 25));
    m.push(tcp(format!("mail-out tcp/25 to stranger {STRANGER2}"), HOST, STRANGER2, 25));

    // Spoofed martian sources, to a service open to anyone.
    let martians =
        [[10, 1, 2, 3], [172, 16, 5, 5], [192, 168, 7, 7], [169, 254, 1, 1], [1, 1, 1, 1], [240, 0, 0, 1]];
    for (i, src) in martians.into_iter().map(Ipv4Addr::from).enumerate() {
        let probe = Crafted::segment(src, 40100 + i as u16, web, "S");
        m.push(probe.named(format!("martian source {src}: SYN to web tcp/{web}")));
    }
    // Martian destinations a packet can be delivered to: multicast (the host has joined
    // the groups) and the limited broadcast.
    for (i, dst) in GROUPS.into_iter().chain([Ipv4Addr::BROADCAST]).enumerate() {
        let sport = 40110 + i as u16;
        let probe =
            Crafted::inbound(STRANGER, PROTO_UDP, format!("UDP(sport={sport}, dport=5000)/Raw(b'martian')"));
        m.push(probe.dst(dst).sport(sport).named(format!("martian destination {dst}: udp from {STRANGER}")));
    }

    // TCP flag sets from an SSH peer to the SSH port: impossible ones, and possible ones
    // that belong to no connection.
    let flag_sets = [
        ("", "NULL"),
        ("FPU", "XMAS"),
        ("SF", "SYN+FIN"),
        ("SR", "SYN+RST"),
        ("F", "FIN alone"),
        ("SA", "SYN+ACK (no connection)"),
        ("R", "RST (no connection)"),
        ("FA", "FIN+ACK (no connection)"),
        ("A", "ACK (no connection: mid-stream)"),
    ];
    for (i, (flags, what)) in flag_sets.into_iter().enumerate() {
        let probe = Crafted::segment(peer, 40200 + i as u16, ssh, flags);
        m.push(probe.named(format!("tcp {what} from SSH peer {peer} to tcp/{ssh}")));
    }
    let probe = Crafted::segment(STRANGER, 40220, ssh, "A");
    m.push(probe.named(format!("tcp ACK (no connection) from stranger {STRANGER} to tcp/{ssh}")));
    // A SYN from port 0, no client's: a scanner's.
    let probe = Crafted::segment(peer, 0, ssh, "S");
    m.push(probe.named(format!("tcp SYN from port 0 from SSH peer {peer} to tcp/{ssh}")));

    // UDP that looks like a DNS answer: to a port that asked nothing, and (fragmented)
    // to the port that did.
    let probe = Crafted::inbound(dns[0], PROTO_UDP, "UDP(sport=53, dport=53999)/Raw(b'answer')").sport(53);
    m.push(probe.named(format!("udp from DNS server {}:53 to a port that sent no query", dns[0])));
    let probe = Crafted::inbound(
        dns[0],
        PROTO_UDP,
        format!("UDP(sport=53, dport={QUERY_FRAGMENTED})/Raw(b'a' * 3000)"),
    );
    let probe = probe.sport(53).fragments(1400).after_query(QUERY_FRAGMENTED, SocketAddrV4::new(dns[0], 53));
    m.push(probe.named(format!("fragmented DNS answer from {}:53 to the query's port", dns[0])));
    let probe =
        Crafted::inbound(STRANGER, PROTO_UDP, format!("UDP(sport=40300, dport={closed})/Raw(b'f' * 3000)"));
    m.push(
        probe
            .sport(40300)
            .fragments(1400)
            .named(format!("fragmented udp to closed udp/{closed} from stranger {STRANGER}")),
    );
    // The TCP header itself split across fragments (8 bytes each).
    let probe = Crafted::segment(STRANGER, 40301, web, "S").fragments(8);
    m.push(probe.named(format!("tiny fragments: SYN to web tcp/{web} from stranger {STRANGER}")));

    // ICMP in.
    let probe = Crafted::inbound(STRANGER, PROTO_ICMP, "ICMP(type=0, id=0xD1D1, seq=1)/Raw(b'pong')");
    m.push(probe.named(format!("icmp echo reply, unsolicited, from stranger {STRANGER}")));
    let l4 = format!(
        "ICMP(type=3, code=4, nexthopmtu=1280)/{}/UDP(sport={QUERY_UNREACHABLE}, dport=53)/Raw(b'query')",
        quoted(HOST, dns[0])
    );
    let probe = Crafted::inbound(STRANGER, PROTO_ICMP, l4)
        .after_query(QUERY_UNREACHABLE, SocketAddrV4::new(dns[0], 53));
    m.push(probe.named(format!("icmp unreachable 3/4 quoting the host's DNS query, from router {STRANGER}")));
    let l4 = format!(
        "ICMP(type=3, code=4, nexthopmtu=1280)/{}/UDP(sport=40400, dport=53)",
        quoted(HOST, STRANGER2)
    );
    let probe = Crafted::inbound(STRANGER, PROTO_ICMP, l4);
    m.push(probe.named(format!("icmp unreachable 3/4 quoting nothing the host sent, from {STRANGER}")));
    let probe = Crafted::inbound(STRANGER, PROTO_ICMP, "ICMP(type=13, id=0xD1D2, seq=1)");
    m.push(probe.named(format!("icmp timestamp request (13) from stranger {STRANGER}")));

    // Crafted packets out of the host.
    let spoofed = Ipv4Addr::new(10, 9, 9, 9);
    let probe = Crafted::outbound(dns[0], PROTO_UDP, "UDP(sport=40500, dport=53)/Raw(b'query')").src(spoofed);
    m.push(
        probe.sport(40500).named(format!("out: udp to DNS server {} from spoofed source {spoofed}", dns[0])),
    );
    let probe = Crafted::outbound(peer, PROTO_TCP, format!("TCP(sport={ssh}, dport=40501, flags='FPU')"));
    m.push(probe.sport(ssh).named(format!("out: tcp XMAS from tcp/{ssh} to SSH peer {peer}")));
    let probe = Crafted::outbound(peer, PROTO_TCP, format!("TCP(sport={ssh}, dport=40502, flags='SA')"));
    m.push(
        probe.sport(ssh).named(format!("out: tcp SYN+ACK (no connection) from tcp/{ssh} to SSH peer {peer}")),
    );
    let probe = Crafted::outbound(
        peer,
        PROTO_TCP,
        format!("TCP(sport={ssh}, dport=40503, flags='A')/Raw(b'banner')"),
    );
    m.push(probe.sport(ssh).named(format!(
        "out: tcp ACK (no connection: the server speaks first) from tcp/{ssh} to SSH peer {peer}"
    )));
    let probe = Crafted::outbound(STRANGER, PROTO_ICMP, "ICMP(type=0, id=0xD1D3, seq=1)/Raw(b'pong')");
    m.push(probe.named(format!("out: icmp echo reply, unsolicited, to stranger {STRANGER}")));
    let l4 = format!("ICMP(type=3, code=3)/{}/UDP(sport=40504, dport=5353)", quoted(STRANGER, HOST));
    let probe = Crafted::outbound(STRANGER, PROTO_ICMP, l4);
    m.push(
        probe.named(format!("out: icmp unreachable 3/3 quoting nothing received, to stranger {STRANGER}")),
    );

    // IPv6: the seed's script is IPv4 only.
    m.push(Probe {
        name: format!("ipv6 tcp/{ssh} from [{CLIENT6}] to [{SERVER6}]"),
        kind: Kind::Tcp6 { to: SocketAddrV6::new(SERVER6, ssh, 0, 0) },
    });

    // Ping, both ways, faster than the limit.
    m.push(Probe {
        name: format!("ping in x{PINGS}, 0.1 s apart, from stranger {STRANGER}"),
        kind: Kind::Ping { from: STRANGER, to: HOST },
    });
    m.push(Probe {
        name: format!("ping out x{PINGS}, 0.1 s apart, to stranger {STRANGER}"),
        kind: Kind::Ping { from: HOST, to: STRANGER },
    });

    let mut names: Vec<&str> = m.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "two probes share a name");
    m
}

/// A packet a raw socket saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packet {
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    sport: Option<u16>,
}

fn parse_packet(bytes: &[u8]) -> Option<Packet> {
    if bytes.len() < 20 || bytes[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(bytes[0] & 0x0F) * 4;
    let proto = bytes[9];
    let sport = match proto {
        PROTO_TCP | PROTO_UDP if bytes.len() >= ihl + 2 => {
            Some(u16::from_be_bytes([bytes[ihl], bytes[ihl + 1]]))
        }
        _ => None,
    };
    Some(Packet {
        proto,
        src: Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]),
        dst: Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]),
        id: u16::from_be_bytes([bytes[4], bytes[5]]),
        sport,
    })
}

/// Raw sockets for TCP, UDP and ICMP, made in a namespace: each gets a copy of every
/// packet of its protocol delivered there.
struct Observer {
    sockets: Vec<OwnedFd>,
}

impl Observer {
    fn open(lab: &Lab, ns: &str) -> Observer {
        let sockets = lab.run_in(ns, || {
            [libc::IPPROTO_TCP, libc::IPPROTO_UDP, libc::IPPROTO_ICMP]
                .into_iter()
                .map(|proto| {
                    // SAFETY: plain socket(2); the descriptor is owned below.
                    let fd = unsafe {
                        libc::socket(
                            libc::AF_INET,
                            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                            proto,
                        )
                    };
                    assert!(fd >= 0, "raw socket for protocol {proto}: {}", io::Error::last_os_error());
                    // SAFETY: a fresh descriptor nothing else owns.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    let size: libc::c_int = 4 << 20;
                    // SAFETY: setsockopt with an int of the size given.
                    unsafe {
                        libc::setsockopt(
                            fd.as_raw_fd(),
                            libc::SOL_SOCKET,
                            libc::SO_RCVBUFFORCE,
                            (&raw const size).cast(),
                            size_of::<libc::c_int>() as libc::socklen_t,
                        );
                    }
                    fd
                })
                .collect()
        });
        Observer { sockets }
    }

    /// Everything the sockets hold now.
    fn drain(&self) -> Vec<Packet> {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        for fd in &self.sockets {
            loop {
                // SAFETY: recv into a buffer of the length given.
                let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "recv on a raw socket: {e}");
                    break;
                }
                if let Some(p) = parse_packet(&buf[..n as usize]) {
                    seen.push(p);
                }
            }
        }
        seen
    }
}

/// A UDP exchange with an echo server; an `EPERM` on send (what a netfilter OUTPUT drop
/// gives the sender) is a block, noted.
fn udp_probe(lab: &Lab, from: Ipv4Addr, to: SocketAddrV4, timeout: Duration) -> Seen {
    match lab.udp_exchange(from, to, timeout) {
        Ok(outcome) => Seen { verdict: Verdict::Conn(outcome), note: None },
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            Seen { verdict: Verdict::Conn(Outcome::Blocked), note: Some("send: EPERM".into()) }
        }
        Err(e) => panic!("udp send {from} -> {to}: {e}"),
    }
}

/// A TCP connect over IPv6 from the client namespace.
fn tcp6_probe(lab: &Lab, to: SocketAddrV6, timeout: Duration) -> Seen {
    let result = lab.run_in(&lab.client, || TcpStream::connect_timeout(&SocketAddr::V6(to), timeout));
    let (outcome, note) = match result {
        Ok(_) => (Outcome::Open, None),
        Err(e) if rejected(&e) => (Outcome::Refused, None),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => (Outcome::Blocked, None),
        // Neighbour discovery unanswered: nothing came back either.
        Err(e) if e.raw_os_error() == Some(libc::EHOSTUNREACH) => {
            (Outcome::Blocked, Some("EHOSTUNREACH".into()))
        }
        Err(e) => panic!("tcp connect [{CLIENT6}] -> {to}: {e}"),
    };
    Seen { verdict: Verdict::Conn(outcome), note }
}

/// The lab, made ready for the matrix: echo servers, IPv6 addresses, multicast groups,
/// no reverse-path filter (martian sources must reach the filters, not die in routing),
/// and the scapy script.
pub struct Bench<'a> {
    pub lab: &'a Lab,
    pub probes: Vec<Probe>,
    /// The IP id of each crafted probe, by index in `probes`.
    ids: BTreeMap<usize, u16>,
    script: PathBuf,
    _keep: (TcpListener, Vec<UdpSocket>),
}

impl<'a> Bench<'a> {
    pub fn new(lab: &'a Lab, probes: Vec<Probe>) -> Bench<'a> {
        // /proc/sys/net is the namespace of the thread that opens it.
        for (ns, iface) in [(&lab.server, SERVER_IF), (&lab.client, CLIENT_IF)] {
            lab.run_in(ns, || {
                for conf in ["all", "default", iface] {
                    let path = format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter");
                    fs::write(&path, "0").unwrap_or_else(|e| panic!("writing {path} in {ns}: {e}"));
                }
            });
        }
        for (ns, addr, iface) in [(&lab.server, SERVER6, SERVER_IF), (&lab.client, CLIENT6, CLIENT_IF)] {
            let addr = format!("{addr}/64");
            sh(Command::new("ip").args(["-n", ns, "addr", "add", &addr, "dev", iface, "nodad"]));
        }

        let mut echo = Vec::new();
        for probe in &probes {
            match probe.kind {
                Kind::Tcp { to, .. } if !echo.contains(&(PROTO_TCP, to)) => {
                    echo.push((PROTO_TCP, to));
                    lab.tcp_echo(to);
                }
                Kind::Udp { to, .. } if !echo.contains(&(PROTO_UDP, to)) => {
                    echo.push((PROTO_UDP, to));
                    lab.udp_echo(to);
                }
                _ => {}
            }
        }
        let v6 = probes
            .iter()
            .find_map(|p| match p.kind {
                Kind::Tcp6 { to } => Some(to),
                _ => None,
            })
            .unwrap_or(SocketAddrV6::new(SERVER6, 122, 0, 0));
        let listener = lab
            .run_in(&lab.server, || TcpListener::bind(v6))
            .unwrap_or_else(|e| panic!("listening on {v6}: {e}"));
        let groups = lab.run_in(&lab.server, || {
            GROUPS
                .iter()
                .map(|group| {
                    let socket = UdpSocket::bind(SocketAddrV4::new(*group, 5000))
                        .unwrap_or_else(|e| panic!("binding udp {group}:5000: {e}"));
                    socket
                        .join_multicast_v4(group, &HOST)
                        .unwrap_or_else(|e| panic!("joining {group} on {HOST}: {e}"));
                    socket
                })
                .collect::<Vec<_>>()
        });

        let mut ids = BTreeMap::new();
        for (i, probe) in probes.iter().enumerate() {
            if let Kind::Crafted(_) = probe.kind {
                ids.insert(i, FIRST_ID + ids.len() as u16);
            }
        }
        let script = lab.tmp().join("crafted.py");
        fs::write(
            &script,
            scapy_script(&probes, &ids, &mac(&lab.server, SERVER_IF), &mac(&lab.client, CLIENT_IF)),
        )
        .expect("writing the scapy script");
        Bench { lab, probes, ids, script, _keep: (listener, groups) }
    }

    /// Runs every probe once, with `filter` in place, and returns what each saw (in the
    /// order of `probes`). Connections and pings run together (a blocked connection
    /// costs its whole timeout); the crafted packets after them.
    pub fn run(&self, filter: Filter) -> Vec<Seen> {
        let lab = self.lab;
        let mut seen: Vec<Option<Seen>> = vec![None; self.probes.len()];
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for (i, probe) in self.probes.iter().enumerate() {
                let handle = match probe.kind {
                    Kind::Tcp { from, to } => scope.spawn(move || Seen {
                        verdict: Verdict::Conn(lab.tcp_probe(from, to, OPEN_WITHIN)),
                        note: None,
                    }),
                    Kind::Udp { from, to } => scope.spawn(move || udp_probe(lab, from, to, OPEN_WITHIN)),
                    Kind::Tcp6 { to } => scope.spawn(move || tcp6_probe(lab, to, OPEN_WITHIN)),
                    Kind::Ping { from, to } => scope.spawn(move || ping(lab, from, to)),
                    Kind::Crafted(_) => continue,
                };
                handles.push((i, handle));
            }
            for (i, handle) in handles {
                seen[i] = Some(handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
        });
        for (i, s) in self.crafted(filter) {
            seen[i] = Some(s);
        }
        seen.into_iter().map(|s| s.expect("every probe ran")).collect()
    }

    fn crafted(&self, filter: Filter) -> Vec<(usize, Seen)> {
        let lab = self.lab;
        let inside = Observer::open(lab, &lab.server);
        let outside = Observer::open(lab, &lab.client);
        // The queries the crafted answers answer, sent (and kept open) first.
        let mut queries = Vec::new();
        for probe in &self.probes {
            if let Kind::Crafted(Crafted { after_query: Some((port, peer)), .. }) = probe.kind {
                let socket = lab
                    .run_in(&lab.server, || UdpSocket::bind(SocketAddrV4::new(HOST, port)))
                    .unwrap_or_else(|e| panic!("binding udp {HOST}:{port}: {e}"));
                socket
                    .send_to(b"query", peer)
                    .unwrap_or_else(|e| panic!("{filter}: query {HOST}:{port} -> {peer}: {e}"));
                queries.push(socket);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let senders: Vec<(Side, u32)> = [(Side::In, &lab.client), (Side::Out, &lab.server)]
            .into_iter()
            .map(|(side, ns)| {
                let pid = lab.spawn(
                    Command::new("ip")
                        .args(["netns", "exec", ns, PYTHON])
                        .arg(&self.script)
                        .arg(if side == Side::In { "in" } else { "out" })
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped()),
                );
                (side, pid)
            })
            .collect();
        let mut notes = BTreeMap::new();
        for (side, pid) in senders {
            let out: Output = lab.wait(pid);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{filter}: the scapy sender ({side:?}) failed ({}):\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            for line in stdout.lines() {
                let (name, status) =
                    line.split_once('\t').unwrap_or_else(|| panic!("scapy sender said {line:?}"));
                if status != "sent" {
                    let status = if status == "Operation not permitted" { "EPERM" } else { status };
                    notes.insert(name.to_owned(), format!("send: {status}"));
                }
            }
        }
        // Late packets (reassembly, the stack's own pace) have had time by now.
        std::thread::sleep(Duration::from_millis(300));
        let seen_in = inside.drain();
        let seen_out = outside.drain();
        drop(queries);

        let mut result = Vec::new();
        for (i, probe) in self.probes.iter().enumerate() {
            let Kind::Crafted(c) = &probe.kind else { continue };
            let id = self.ids[&i];
            let pool = if c.side == Side::In { &seen_in } else { &seen_out };
            let delivered = pool.iter().any(|p| {
                p.proto == c.proto && p.src == c.src && p.dst == c.dst && p.id == id && p.sport == c.sport
            });
            let verdict = if delivered { Verdict::Delivered } else { Verdict::Dropped };
            let note = notes.get(&probe.name).cloned();
            result.push((i, Seen { verdict, note }));
        }
        result
    }
}

/// Pings `to` from `from`: `ping` from the client namespace, [`echo_burst`] from the host.
fn ping(lab: &Lab, from: Ipv4Addr, to: Ipv4Addr) -> Seen {
    if from == HOST {
        return echo_burst(lab, to);
    }
    let mut command = Command::new("ip");
    command.args([
        "netns",
        "exec",
        lab.ns_of(from),
        "ping",
        "-n",
        "-c",
        &PINGS.to_string(),
        "-i",
        "0.1",
        "-W",
        "1",
    ]);
    if from != HOST {
        command.args(["-I", &from.to_string()]);
    }
    command.arg(to.to_string()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let pid = lab.spawn(&mut command);
    let out = lab.wait(pid);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let note = stderr.contains("Operation not permitted").then(|| "sendmsg: EPERM".to_owned());
    Seen { verdict: Verdict::Replies(ping_received(&stdout)), note }
}

/// `ping -c PINGS -i 0.1` from the host, by hand: a raw ICMP socket sends the requests
/// 0.1 s apart whatever happens to them, then counts the replies. iputils' `ping` would
/// not compare the filters but its own error handling: a netfilter OUTPUT drop gives it
/// `EPERM`, and it counts the request as sent and lost; a TC drop gives it `ENOBUFS`
/// (it sets IP_RECVERR), and it sends the same request again until one passes, so all
/// 12 get answers in 7 s.
fn echo_burst(lab: &Lab, to: Ipv4Addr) -> Seen {
    const ID: u16 = 0xD2D2;
    let fd = lab.run_in(&lab.server, || {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd =
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
        assert!(fd >= 0, "raw ICMP socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    });
    let dst = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(to).to_be() },
        sin_zero: [0; 8],
    };
    let mut errors: BTreeMap<i32, u32> = BTreeMap::new();
    for seq in 0..PINGS as u16 {
        let mut request = vec![8u8, 0, 0, 0];
        request.extend_from_slice(&ID.to_be_bytes());
        request.extend_from_slice(&seq.to_be_bytes());
        request.extend_from_slice(&[0xA5; 56]);
        let sum = checksum(&request);
        request[2..4].copy_from_slice(&sum.to_be_bytes());
        // SAFETY: sendto with a buffer and an address of the lengths given.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&raw const dst).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            *errors.entry(io::Error::last_os_error().raw_os_error().unwrap_or(0)).or_default() += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The last reply has long arrived after a second (ping's -W 1).
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut replied = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let tv =
            libc::timeval { tv_sec: 0, tv_usec: left.as_micros().clamp(1, 999_999) as libc::suseconds_t };
        // SAFETY: setsockopt with a timeval of the size given.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        // SAFETY: recv into a buffer of the length given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            continue;
        }
        let bytes = &buf[..n as usize];
        let Some(packet) = parse_packet(bytes) else { continue };
        let ihl = usize::from(bytes[0] & 0x0F) * 4;
        if packet.proto == PROTO_ICMP && packet.src == to && bytes.len() >= ihl + 8 && bytes[ihl] == 0 {
            let id = u16::from_be_bytes([bytes[ihl + 4], bytes[ihl + 5]]);
            let seq = u16::from_be_bytes([bytes[ihl + 6], bytes[ihl + 7]]);
            if id == ID && !replied.contains(&seq) {
                replied.push(seq);
            }
        }
    }
    let note = (!errors.is_empty()).then(|| {
        let parts: Vec<String> = errors
            .iter()
            .map(|(errno, n)| match *errno {
                libc::EPERM => format!("{n}x EPERM"),
                libc::ENOBUFS => format!("{n}x ENOBUFS"),
                e => format!("{n}x {}", io::Error::from_raw_os_error(e)),
            })
            .collect();
        format!("sendto: {}", parts.join(", "))
    });
    Seen { verdict: Verdict::Replies(replied.len() as u32), note }
}

/// The Internet checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// The MAC address of `iface` in `ns`.
fn mac(ns: &str, iface: &str) -> String {
    let out = sh(Command::new("ip").args(["-n", ns, "-j", "link", "show", "dev", iface]));
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j link show is JSON");
    links[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no MAC address for {iface} in {ns}: {links}"))
        .to_owned()
}

/// The scapy program that sends the crafted probes of one side (its first argument,
/// `in` or `out`) and prints `NAME<TAB>sent` or `NAME<TAB>ERROR` for each.
fn scapy_script(probes: &[Probe], ids: &BTreeMap<usize, u16>, server_mac: &str, client_mac: &str) -> String {
    let mut table = String::new();
    for (i, probe) in probes.iter().enumerate() {
        let Kind::Crafted(c) = &probe.kind else { continue };
        let side = if c.side == Side::In { "in" } else { "out" };
        let fragments = c.fragments.map_or("None".to_owned(), |n| n.to_string());
        table.push_str(&format!(
            "    ({side:?}, {name:?}, lambda: IP(src={src:?}, dst={dst:?}, id={id}) / {l4}, {fragments}),\n",
            name = probe.name,
            src = c.src.to_string(),
            dst = c.dst.to_string(),
            id = ids[&i],
            l4 = c.l4,
        ));
    }
    format!(
        r#"# Crafted probes of the differential test (tests/src/differential.rs).
import socket
import sys

from scapy.all import ICMP, IP, TCP, UDP, Ether, Raw, conf, fragment

conf.verb = 0
SIDE = sys.argv[1]
SERVER_MAC = {server_mac:?}
CLIENT_MAC = {client_mac:?}
CLIENT_IF = {CLIENT_IF:?}
PROBES = [
{table}]


def mac_for(dst):
    a = [int(x) for x in dst.split(".")]
    if 224 <= a[0] < 240:
        return "01:00:5e:%02x:%02x:%02x" % (a[1] & 0x7F, a[2], a[3])
    if dst == "255.255.255.255":
        return "ff:ff:ff:ff:ff:ff"
    return SERVER_MAC


if SIDE == "in":
    l2 = conf.L2socket(iface=CLIENT_IF)

    def send(p):
        l2.send(Ether(src=CLIENT_MAC, dst=mac_for(p[IP].dst)) / p)

else:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)

    def send(p):
        raw.sendto(bytes(p), (p[IP].dst, 0))


for side, name, build, fragsize in PROBES:
    if side != SIDE:
        continue
    packet = build()
    parts = fragment(packet, fragsize=fragsize) if fragsize else [packet]
    try:
        for part in parts:
            send(part)
        print(name + "\tsent", flush=True)
    except OSError as e:
        print(name + "\t" + (e.strerror or str(e)), flush=True)
"#
    )
}

/// The table: one line per probe, a column per filter and the judgement.
pub fn table(probes: &[Probe], runs: &[(Filter, Vec<Seen>)], judgements: &[String]) -> String {
    let mut header = vec!["probe".to_owned()];
    header.extend(runs.iter().map(|(f, _)| f.to_string()));
    header.push("result".to_owned());
    let mut rows = vec![header];
    for (i, probe) in probes.iter().enumerate() {
        let mut row = vec![probe.name.clone()];
        row.extend(runs.iter().map(|(_, seen)| seen[i].to_string()));
        row.push(judgements[i].clone());
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> =
        (0..columns - 1).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for (n, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < columns {
                line.push_str(&format!("{cell:<width$} | ", width = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            text.push_str(&format!("{}-|-------\n", rule.join("-|-")));
        }
    }
    text
}
