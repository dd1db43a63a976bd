//! The policy file: TOML in, a validated [`Policy`] out, or one error that says
//! `FILE:LINE:COL: message` (see docs/policy.md for the format).
//!
//! # Layout
//!
//! - this file: the validated types, [`load`] and [`parse`], and the order in which the
//!   sections are checked;
//! - `raw`: the TOML as deserialised, each value with its place, and the parser's
//!   messages in TOML's words;
//! - `host`, `antispoof`, `conntrack`, `dns`, `rule`: the validation of each section, a
//!   function a field or group of fields;
//! - `ports`: a rule's ports and ranges, as written and merged;
//! - `prefix`: addresses and prefixes, as written and as the maps hold them.
mod antispoof;
mod conntrack;
mod diff;
mod dns;
mod host;
mod ports;
mod prefix;
mod raw;
mod rule;

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use firewall_common::{
    CONNTRACK_DEFAULT_ENTRIES, Direction, HALF_OPEN_DEFAULT_ENTRIES, PROTO_ICMP, PROTO_ICMPV6, PROTO_UDP,
    icmpv6_equivalent,
};

use self::{
    antispoof::validate_antispoof,
    conntrack::validate_conntrack,
    dns::validate_dns,
    host::validate_host,
    raw::{RawPolicy, toml_message},
    rule::validate_rules,
};
pub use self::{
    antispoof::{
        DEFAULT_ANTISPOOF_DESTINATIONS, DEFAULT_ANTISPOOF_DESTINATIONS6, DEFAULT_ANTISPOOF_SOURCES,
        DEFAULT_ANTISPOOF_SOURCES6,
    },
    conntrack::{duration_text, parse_duration},
    diff::{PolicyDiff, RuleChange},
    dns::{canonical_name, is_dns_name},
    host::may_be_host_address,
    prefix::{Prefix, PrefixError, from_addr, to_addr},
    raw::schema,
    rule::{Claims, parse_limit},
};

/// A validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub interface: Option<String>,
    /// The first of `address` (OURIP), which the kernel compares first.
    pub address: Ipv4Addr,
    /// The first of `address6`: with it, IPv6 is filtered by the same rules; without,
    /// dropped whole.
    pub address6: Option<Ipv6Addr>,
    /// The rest of `address`, in the order written (none for a lone address): the fields
    /// above stay what they were when a host had one address of each family, so what
    /// reads them alone reads the first; [`Policy::is_host_address`] asks about all.
    pub more_addresses: Vec<Ipv4Addr>,
    /// The rest of `address6`, likewise.
    pub more_addresses6: Vec<Ipv6Addr>,
    /// `dhcp` (default true): the DHCP client's exchange passes, DHCPv6's too with
    /// `address6`, on a built-in line of its own.
    pub dhcp: bool,
    /// `follow_addresses` (default false): the addresses the interface has are the host's
    /// too, beside the listed ones, as they come and go (`firewall follow` keeps the live
    /// filter to them; see `kernel::filter::in_force_on`).
    pub follow_addresses: bool,
    /// With `follow_addresses`, the interface's addresses when `in_force_on` read them
    /// (sorted): what the policy in force was applied with beyond its text. `None` until
    /// then, and without `follow_addresses`.
    pub followed: Option<Vec<std::net::IpAddr>>,
    /// With peers written as DNS names, the addresses each name held when `in_force_on`
    /// read them (sorted), before the rules took theirs: what the policy in force was
    /// applied with beyond its text. `None` until then, and without names.
    pub resolved: Option<std::collections::BTreeMap<String, Vec<IpAddr>>>,
    pub antispoof_sources: Vec<Prefix>,
    pub antispoof_destinations: Vec<Prefix>,
    pub conntrack: Conntrack,
    /// `[dns]`: how the peers written as names are kept.
    pub dns: Dns,
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Every IPv4 address of the host's, `address` first.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        std::iter::once(self.address).chain(self.more_addresses.iter().copied()).collect()
    }

    /// Every IPv6 address of the host's (none without `address6`), the first first.
    pub fn addresses6(&self) -> Vec<Ipv6Addr> {
        self.address6.into_iter().chain(self.more_addresses6.iter().copied()).collect()
    }

    /// Every address of the host's, IPv4 then IPv6, each in the order written.
    pub fn host_addresses(&self) -> Vec<IpAddr> {
        let v4 = self.addresses().into_iter().map(IpAddr::V4);
        v4.chain(self.addresses6().into_iter().map(IpAddr::V6)).collect()
    }

    /// Every DNS name the rules' peers hold, once, sorted.
    pub fn names(&self) -> Vec<&str> {
        let names: std::collections::BTreeSet<&str> =
            self.rules.iter().flat_map(|r| r.names.iter().map(|n| n.name.as_str())).collect();
        names.into_iter().collect()
    }

    /// Whether `addr` is one of the host's addresses: a packet to it (in) or from it
    /// (out) is ours, and every rule applies to it.
    pub fn is_host_address(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => v4 == self.address || self.more_addresses.contains(&v4),
            IpAddr::V6(v6) => self.address6 == Some(v6) || self.more_addresses6.contains(&v6),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conntrack {
    /// The established table's size: flows heard both ways.
    pub max_entries: u32,
    /// The half-open table's size: flows not heard both ways yet.
    pub max_half_open: u32,
    pub tcp_established_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub tcp_rst_timeout: Duration,
    pub udp_timeout: Duration,
    pub icmp_timeout: Duration,
    /// After the opener's SYN.
    pub tcp_syn_sent_timeout: Duration,
    /// After the responder's SYN-ACK; a session picked up mid-stream until both ends spoke.
    pub tcp_syn_recv_timeout: Duration,
    /// After a first fragment passed: how long its datagram's later fragments may follow.
    pub fragment_timeout: Duration,
    /// A TCP flow may start with a packet other than a bare SYN (netfilter's
    /// `nf_conntrack_tcp_loose`): a session older than the filter is picked up mid-stream.
    pub tcp_loose: bool,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack {
            max_entries: CONNTRACK_DEFAULT_ENTRIES,
            max_half_open: HALF_OPEN_DEFAULT_ENTRIES,
            // netfilter's defaults.
            tcp_established_timeout: Duration::from_secs(5 * 24 * 3600),
            tcp_fin_timeout: Duration::from_secs(120),
            tcp_rst_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_secs(30),
            icmp_timeout: Duration::from_secs(30),
            tcp_syn_sent_timeout: Duration::from_secs(120),
            tcp_syn_recv_timeout: Duration::from_secs(60),
            // A datagram's fragments leave their sender back to back; Linux waits 30 s
            // for stragglers (ipfrag_time), which is long for a door held open.
            fragment_timeout: Duration::from_secs(5),
            tcp_loose: true,
        }
    }
}

/// What a rule matches: a transport service port, a range of them, or an ICMP type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Port {
        protocol: u8,
        port: u16,
    },
    /// Ports `first` to `last`, both in, `first < last` (a range of one port is a `Port`).
    Range {
        protocol: u8,
        first: u16,
        last: u16,
    },
    Icmp {
        kind: u8,
    },
}

impl Service {
    /// The service of `protocol` for ports `first` to `last`: a `Port` when they are one.
    pub fn ports(protocol: u8, first: u16, last: u16) -> Service {
        if first == last {
            Service::Port { protocol, port: first }
        } else {
            Service::Range { protocol, first, last }
        }
    }

    pub fn protocol(&self) -> u8 {
        match self {
            Service::Port { protocol, .. } | Service::Range { protocol, .. } => *protocol,
            Service::Icmp { .. } => PROTO_ICMP,
        }
    }

    /// The first and last of its ports (ICMP: the type, twice): what two rules must not
    /// both claim for one peer.
    pub fn span(&self) -> (u16, u16) {
        match *self {
            Service::Port { port, .. } => (port, port),
            Service::Range { first, last, .. } => (first, last),
            Service::Icmp { kind } => (u16::from(kind), u16::from(kind)),
        }
    }

    /// Whether it admits port `port` of `protocol` (tcp or udp).
    pub fn has_port(&self, protocol: u8, port: u16) -> bool {
        let (first, last) = self.span();
        !matches!(self, Service::Icmp { .. }) && self.protocol() == protocol && first <= port && port <= last
    }

    /// Its ports as iptables writes them: `22`, `1024:65535`; `None` for ICMP.
    pub fn iptables_ports(&self) -> Option<String> {
        match self {
            Service::Port { port, .. } => Some(port.to_string()),
            Service::Range { first, last, .. } => Some(format!("{first}:{last}")),
            Service::Icmp { .. } => None,
        }
    }

    /// The allow-list key's protocol and `port` for peers of one family: for IPv6, ICMP is
    /// ICMPv6 with the type that means the same (`None`: a type only IPv4 has). A range's
    /// is its first port's; its other intervals' first ports are the compiler's to add.
    pub fn key_for(&self, v6: bool) -> Option<(u8, u16)> {
        match *self {
            Service::Icmp { kind } if v6 => icmpv6_equivalent(kind).map(|k| (PROTO_ICMPV6, u16::from(k))),
            _ => Some((self.protocol(), self.span().0)),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.protocol() == PROTO_UDP { "udp" } else { "tcp" };
        match self {
            Service::Port { port, .. } => write!(f, "{name} port {port}"),
            Service::Range { first, last, .. } => write!(f, "{name} ports {first}-{last}"),
            Service::Icmp { kind } => write!(f, "icmp type {kind}"),
        }
    }
}

/// `limit = "1/sec"`, `burst = 5`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Time per token.
    pub interval: Duration,
    pub burst: u32,
    /// As written, for the listing: packets per `unit`.
    pub count: u32,
    pub unit: Per,
}

/// A limit's window: iptables' units, or any number of seconds (`"6/30s"`), shown as
/// written (`sec`, `min`, `hour`, `day`, `30s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Per {
    Sec,
    Min,
    Hour,
    Day,
    /// Seconds.
    Window(u32),
}

impl Per {
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Per::Sec => 1,
            Per::Min => 60,
            Per::Hour => 3600,
            Per::Day => 86_400,
            Per::Window(secs) => u64::from(secs),
        })
    }
}

impl fmt::Display for Per {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Per::Sec => f.write_str("sec"),
            Per::Min => f.write_str("min"),
            Per::Hour => f.write_str("hour"),
            Per::Day => f.write_str("day"),
            // In the largest unit that divides it, as `parse_duration` reads it back.
            Per::Window(secs) => {
                match [(86_400, "d"), (3600, "h"), (60, "m")].into_iter().find(|(size, _)| secs % size == 0) {
                    Some((size, unit)) => write!(f, "{}{unit}", secs / size),
                    None => write!(f, "{secs}s"),
                }
            }
        }
    }
}

/// `per_source = { limit = "6/30s", burst = 6, block = "10m", connections = 4 }`: for each
/// source (an address, or its prefix) of an inbound rule, a rate of new flows and how long
/// an offender is blocked, and how many of its flows may be open at once; one or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerSource {
    /// `None`: no rate, only `connections`.
    pub limit: Option<Limit>,
    /// The flows a source may have open at once under the rule (1 to
    /// firewall_common::MAX_CONNECTIONS), as connlimit's `--connlimit-above N` allows N:
    /// one more drops until one of them ends. `None`: no cap.
    pub connections: Option<u8>,
    /// `None`: an offender is not blocked, only its new flows over the rate drop.
    pub block: Option<Duration>,
    /// The prefix lengths a source's address is masked to, IPv4 (default 32: the address)
    /// and IPv6 (default 64: a host commonly has a /64 to itself), as hashlimit's
    /// `--hashlimit-srcmask`: the addresses of one prefix share a bucket.
    pub prefix: u8,
    pub prefix6: u8,
}

/// `[dns]`: the peers written as names.
#[derive(Clone, Debug, PartialEq)]
pub struct Dns {
    /// How long an address that left a name's answer stays admitted (default 1h): open
    /// flows and the answers programs cached keep working.
    pub grace: Duration,
    /// The most addresses one name may hold at once (default 64): a CDN's name, answered
    /// differently each time, would otherwise gather addresses for as long as `grace`.
    pub max_addresses: usize,
    /// Whether `firewall serve` learns the names' addresses from the answers the host's
    /// own resolvers send it too (default true), before the program that asked reads them:
    /// the addresses a CDN gave this host, admitted before its first connection.
    pub learn: bool,
}

impl Default for Dns {
    fn default() -> Dns {
        Dns { grace: Duration::from_secs(3600), max_addresses: 64, learn: true }
    }
}

/// A peer as a command gives it (`allow`, `revoke`): an address or prefix, or a DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Prefix(Prefix),
    /// In lower case, without a final dot.
    Name(String),
}

impl Peer {
    /// An address or prefix as [`Prefix::parse`] reads it, else a DNS name as a policy
    /// may write one ([`is_dns_name`]), else the address's error.
    pub fn parse(text: &str) -> Result<Peer, PrefixError> {
        match Prefix::parse(text) {
            Ok(prefix) => Ok(Peer::Prefix(prefix)),
            Err(_) if is_dns_name(text) => Ok(Peer::Name(dns::canonical_name(text))),
            Err(err) => Err(err),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Prefix(prefix) => prefix.fmt(f),
            Peer::Name(name) => f.write_str(name),
        }
    }
}

/// A peer written as a DNS name, and the addresses it admits now.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerName {
    /// As written, in lower case, without a final dot.
    pub name: String,
    /// Its addresses, each a /32 or /128, that this rule admits: none until the name is
    /// resolved (`crate::names`), and none that the rule cannot use or that an earlier
    /// claim holds (see `names::fold`).
    pub addresses: Vec<Prefix>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub direction: Direction,
    pub services: Vec<Service>,
    /// The peers written as addresses and CIDRs: `Prefix::ANY` alone for `peers = "any"`.
    pub peers: Vec<Prefix>,
    /// The peers written as DNS names, in the order written.
    pub names: Vec<PeerName>,
    pub limit: Option<Limit>,
    /// `related = true`: an ICMP error passes only when the datagram it quotes belongs to
    /// a tracked flow, as netfilter's RELATED.
    pub related: bool,
    pub per_source: Option<PerSource>,
    /// `uids` (outbound rules): only the packets of these users' sockets open flows, as
    /// ranges of uids, merged and sorted; empty: every user's, and packets of no socket.
    pub uids: Vec<(u32, u32)>,
    /// `log = true`: the flows the rule admits are told as events, as drops are, while
    /// `drops` or `serve --log-drops` listens (iptables' `-j LOG` before the ACCEPT).
    pub log: bool,
    /// `returns = true` (the default): the flows the rule admits are tracked, and their
    /// returns pass. `false`: the rule admits the packets that open its flows and tracks
    /// none, so nothing comes back through it (an iptables ACCEPT with no return line).
    pub returns: bool,
    /// `trap = "1d"` (inbound rules): the rule admits nothing, and a source that sends what
    /// it matches is blocked that long (the port-scan trap of scripts: `-m recent --set`
    /// on a port no one uses, then `--rcheck … -j DROP` for all).
    pub trap: Option<Duration>,
}

impl Rule {
    /// Every peer the rule admits now: those written as addresses, then its names'.
    pub fn all_peers(&self) -> impl Iterator<Item = &Prefix> {
        self.peers.iter().chain(self.names.iter().flat_map(|n| n.addresses.iter()))
    }
}

/// A policy error, placed in its file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Reads and validates a policy file.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    // The io error is text in the message, not a `source`: a policy error is one
    // `FILE:LINE:COL: message` whichever way it is printed.
    let text = std::fs::read_to_string(path).map_err(|err| PolicyError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        message: format!("cannot read the policy: {err}"),
    })?;
    parse(&text, path)
}

/// Validates policy text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
    let at = |offset: usize, message: String| {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        PolicyError { file: PathBuf::from(path).display().to_string(), line, column, message }
    };
    let raw: RawPolicy = toml::from_str(text).map_err(|err| {
        let offset = err.span().map_or(0, |span| span.start);
        at(offset, toml_message(err.message(), text, offset))
    })?;
    // `[host]` as a header, else wherever `host` is first written (a dotted key).
    let host_at = text.find("[host]").or_else(|| text.find("host")).unwrap_or(0);
    validate(raw, host_at).map_err(|(offset, message)| at(offset, message))
}

/// A validation error: where it is in the text (a byte offset) and its message. `parse`
/// turns the offset into the line and column, once, for every section.
type Located = (usize, String);

fn fail<T>(spanned_start: usize, message: impl Into<String>) -> Result<T, Located> {
    Err((spanned_start, message.into()))
}

/// Checks `[host]`, then `[antispoof]` (which needs the host's addresses), then
/// `[conntrack]`, then `[dns]`, then the rules. The first error found is the one reported, so this
/// order is part of what a policy with several errors is told.
fn validate(raw: RawPolicy, host_at: usize) -> Result<Policy, Located> {
    let host = validate_host(raw.host, host_at)?;
    let antispoof = validate_antispoof(raw.antispoof, &host)?;
    let conntrack = validate_conntrack(raw.conntrack)?;
    let dns = validate_dns(raw.dns)?;
    let rules = validate_rules(raw.rule, !host.addresses6.is_empty())?;
    let (address, more_addresses) = match host.addresses.split_first() {
        Some(((first, _), rest)) => (*first, rest.iter().map(|(a, _)| *a).collect()),
        None => unreachable!("validate_host refuses an address without one"),
    };
    let address6 = host.addresses6.first().map(|(a, _)| *a);
    let more_addresses6 = host.addresses6.iter().skip(1).map(|(a, _)| *a).collect();
    Ok(Policy {
        interface: host.interface,
        address,
        address6,
        more_addresses,
        more_addresses6,
        dhcp: host.dhcp,
        follow_addresses: host.follow_addresses,
        followed: None,
        resolved: None,
        antispoof_sources: antispoof.sources,
        antispoof_destinations: antispoof.destinations,
        conntrack,
        dns,
        rules,
    })
}

/// The message for an IPv6 entry (anti-spoof or peer) in a policy without `address6`.
fn needs_address6(prefix: &Prefix) -> String {
    format!("{prefix} is IPv6, but [host] has no address6, so every IPv6 packet is dropped: add address6")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use firewall_common::PROTO_TCP;

    use super::*;

    pub(super) fn check(text: &str) -> Result<Policy, String> {
        parse(text, Path::new("p.toml")).map_err(|e| e.to_string())
    }

    pub(super) const HOST: &str = "[host]\ninterface = \"eth0\"\naddress = \"198.51.100.1\"\n";

    pub(super) const HOST6: &str =
        "[host]\ninterface = \"eth0\"\naddress = \"198.51.100.1\"\naddress6 = \"2001:db8::1\"\n";

    pub(super) fn ssh_rule(peers: &str) -> String {
        format!(
            "[[rule]]\nname = \"ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = {peers}\n"
        )
    }

    #[test]
    fn parses_a_rule_with_defaults() {
        let p = check(&format!(
            "{HOST}[[rule]]\nname = \"ssh-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 122\npeers = [\"203.0.113.7\", \"192.0.2.0/24\"]\n"
        ))
        .unwrap();
        assert_eq!(p.address, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(p.antispoof_sources.len(), 8);
        assert_eq!(p.antispoof_destinations.len(), 6);
        assert_eq!(p.rules[0].services, vec![Service::Port { protocol: PROTO_TCP, port: 122 }]);
        assert_eq!(p.rules[0].peers[1], Prefix { addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), len: 24 });
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let err = check(&format!("{HOST}[[rule]]\nname = \"x\"\ncolour = 1\n")).unwrap_err();
        assert!(err.starts_with("p.toml:6:1: unknown field `colour`"), "{err}");
        let err = check(&format!(
            "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 70000\npeers = \"any\"\n"
        ))
        .unwrap_err();
        assert_eq!(err, "p.toml:8:8: port 70000 out of range 1-65535");
        let err = check(&format!(
            "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = [\"1.2.3.999\"]\n"
        ))
        .unwrap_err();
        assert_eq!(err, "p.toml:9:10: bad address \"1.2.3.999\"");
        let rule =
            "[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = \"any\"\n";
        let err = check(&format!("{HOST}{rule}{rule}")).unwrap_err();
        assert_eq!(err, "p.toml:11:8: duplicate rule name \"x\"");
    }

    #[test]
    fn refuses_what_would_make_no_sense_live() {
        let rule = |peers: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = {peers}\n"
            )
        };
        let err = check(&rule(r#"["0.0.0.0"]"#)).unwrap_err();
        assert!(err.ends_with("0.0.0.0 is no peer; write peers = \"any\" for anyone"), "{err}");
        let err = check(&rule(r#"["0.0.0.0/0"]"#)).unwrap_err();
        assert!(err.contains("is no peer"), "{err}");
        let err = check("[host]\naddress = \"1.1.1.1\"\n").unwrap_err();
        assert_eq!(
            err,
            "p.toml:2:11: address 1.1.1.1 is in antispoof destination 1.1.1.1: every packet to it would be dropped"
        );
    }

    #[test]
    fn ipv6_needs_address6_and_then_takes_addresses_and_prefixes() {
        let p =
            check(&format!("{HOST6}{}", ssh_rule(r#"["2001:db8:1::7", "2001:db8:2::/48", "192.0.2.1"]"#)))
                .unwrap();
        assert_eq!(p.address6, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(p.rules[0].peers[1], Prefix { addr: "2001:db8:2::".parse().unwrap(), len: 48 });
        // The IPv6 defaults join the seed's lists.
        assert_eq!(p.antispoof_sources.len(), 8 + DEFAULT_ANTISPOOF_SOURCES6.len());
        assert!(p.antispoof_destinations.iter().any(|d| d.to_string() == "ff00::/8"));
        // Without address6 the lists are the seed's, and IPv6 entries are refused.
        let err = check(&format!("{HOST}{}", ssh_rule(r#"["2001:db8:1::7"]"#))).unwrap_err();
        assert_eq!(
            err,
            "p.toml:9:10: 2001:db8:1::7 is IPv6, but [host] has no address6, so every IPv6 packet is dropped: add address6"
        );
        let err = check(&format!("{HOST}[antispoof]\nsources = [\"fc00::/7\"]\n")).unwrap_err();
        assert!(
            err.ends_with(
                "fc00::/7 is IPv6, but [host] has no address6, so every IPv6 packet is dropped: add address6"
            ),
            "{err}"
        );
    }

    #[test]
    fn errors_point_at_what_is_wrong() {
        let many: Vec<String> = (0..449).map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256)).collect();
        let text = format!("{HOST}[antispoof]\nsources = [\n{}\n]\n", many.join(",\n"));
        let err = check(&text).unwrap_err();
        assert!(
            err.starts_with("p.toml:454:1: too many anti-spoof entries: at most 448"),
            "the 449th entry, on line 454: {err}"
        );
        let rule = "[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\nicmp_type = 8\npeers = \"any\"\n";
        assert_eq!(
            check(&format!("{HOST}{rule}")).unwrap_err(),
            "p.toml:9:13: icmp_type needs \"icmp\" in protocols"
        );
        let twice = |n: &str| {
            format!(
                "[[rule]]\nname = \"{n}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = \"any\"\n"
            )
        };
        let err = check(&format!("{HOST}{}{}", twice("a"), twice("b"))).unwrap_err();
        assert!(err.ends_with("peer \"any\" for tcp port 1 in is already in rule \"a\""), "{err}");
        for bad in [".", "..", "a:b", "a b", "a\\tb"] {
            let err =
                check(&format!("[host]\ninterface = \"{bad}\"\naddress = \"198.51.100.1\"\n")).unwrap_err();
            assert!(err.contains("bad interface name"), "{bad}: {err}");
        }
        assert!(Prefix::parse("10.0.0.0/+8").unwrap_err().to_string().contains("bad prefix length"));
    }
}
