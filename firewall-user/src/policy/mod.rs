//! The policy file: TOML in, a validated [`Policy`] out, or one error that says
//! `FILE:LINE:COL: message` (see docs/policy.md for the format).
mod antispoof;
mod conntrack;
mod host;
mod prefix;
mod raw;

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use antispoof::validate_antispoof;
pub use antispoof::{
    DEFAULT_ANTISPOOF_DESTINATIONS, DEFAULT_ANTISPOOF_DESTINATIONS6, DEFAULT_ANTISPOOF_SOURCES,
    DEFAULT_ANTISPOOF_SOURCES6,
};
pub use conntrack::parse_duration;
use conntrack::validate_conntrack;
use firewall_common::{
    CONNTRACK_DEFAULT_ENTRIES, Direction, HALF_OPEN_DEFAULT_ENTRIES, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, MAX_RULES, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_UDP, icmpv6_equivalent, protocol_named, rule_protocol,
};
use host::validate_host;
pub use prefix::{Prefix, PrefixError, from_addr, to_addr};
use raw::{RawIcmpType, RawPeers, RawPolicy, RawRule, toml_message};
use serde_spanned::Spanned;

/// A validated policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub interface: Option<String>,
    pub address: Ipv4Addr,
    /// `address6`: with it, IPv6 is filtered by the same rules; without, dropped whole.
    pub address6: Option<Ipv6Addr>,
    pub antispoof_sources: Vec<Prefix>,
    pub antispoof_destinations: Vec<Prefix>,
    pub conntrack: Conntrack,
    pub rules: Vec<Rule>,
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
        }
    }
}

/// What a rule matches: a transport service port, or an ICMP type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Port { protocol: u8, port: u16 },
    Icmp { kind: u8 },
}

impl Service {
    pub fn protocol(&self) -> u8 {
        match self {
            Service::Port { protocol, .. } => *protocol,
            Service::Icmp { .. } => PROTO_ICMP,
        }
    }

    /// The allow-list key's `port`: the port, or the ICMP type.
    pub fn key_port(&self) -> u16 {
        match self {
            Service::Port { port, .. } => *port,
            Service::Icmp { kind } => u16::from(*kind),
        }
    }

    /// The allow-list key's protocol and `port` for peers of one family: for IPv6, ICMP is
    /// ICMPv6 with the type that means the same (`None`: a type only IPv4 has).
    pub fn key_for(&self, v6: bool) -> Option<(u8, u16)> {
        match *self {
            Service::Icmp { kind } if v6 => icmpv6_equivalent(kind).map(|k| (PROTO_ICMPV6, u16::from(k))),
            _ => Some((self.protocol(), self.key_port())),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Port { protocol: PROTO_UDP, port } => write!(f, "udp port {port}"),
            Service::Port { port, .. } => write!(f, "tcp port {port}"),
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
    pub unit: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub direction: Direction,
    pub services: Vec<Service>,
    /// `Prefix::ANY` alone for `peers = "any"`.
    pub peers: Vec<Prefix>,
    pub limit: Option<Limit>,
    /// `related = true`: an ICMP error passes only when the datagram it quotes belongs to
    /// a tracked flow, as netfilter's RELATED.
    pub related: bool,
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

type Located = (usize, String);

fn fail<T>(spanned_start: usize, message: impl Into<String>) -> Result<T, Located> {
    Err((spanned_start, message.into()))
}

/// Checks the sections in the order of the format's description: `[host]`,
/// `[antispoof]`, `[conntrack]`, the rules. The first error found is the one reported,
/// so this order is part of what a policy's error says.
fn validate(raw: RawPolicy, host_at: usize) -> Result<Policy, Located> {
    let host = validate_host(raw.host, host_at)?;
    let antispoof = validate_antispoof(raw.antispoof, &host)?;
    let conntrack = validate_conntrack(raw.conntrack)?;
    let rules = validate_rules(raw.rule, host.address6.is_some())?;
    Ok(Policy {
        interface: host.interface,
        address: host.address,
        address6: host.address6.map(|(address6, _)| address6),
        antispoof_sources: antispoof.sources,
        antispoof_destinations: antispoof.destinations,
        conntrack,
        rules,
    })
}

/// The `[[rule]]`s: at most `MAX_RULES`, each valid, none claiming an allow-list entry
/// an earlier one has.
fn validate_rules(raw: Vec<Spanned<RawRule>>, ipv6: bool) -> Result<Vec<Rule>, Located> {
    if raw.len() > MAX_RULES as usize {
        return fail(raw[MAX_RULES as usize].span().start, format!("too many rules: at most {MAX_RULES}"));
    }
    let mut names = HashSet::new();
    // (direction, service, exact peer) → the rule that has it: one entry, one owner.
    let mut owners: HashMap<(Direction, Service, Prefix), String> = HashMap::new();
    let mut rules = Vec::with_capacity(raw.len());
    for raw_rule in raw {
        let rule = validate_rule(raw_rule, &mut names, ipv6)?;
        for service in &rule.0.services {
            for (peer, at) in rule.0.peers.iter().zip(&rule.1) {
                if let Some(owner) = owners.insert((rule.0.direction, *service, *peer), rule.0.name.clone()) {
                    let peer = if *peer == Prefix::ANY { "\"any\"".to_string() } else { peer.to_string() };
                    let direction = if rule.0.direction == Direction::In { "in" } else { "out" };
                    return fail(
                        *at,
                        format!("peer {peer} for {service} {direction} is already in rule {owner:?}"),
                    );
                }
            }
        }
        rules.push(rule.0);
    }
    Ok(rules)
}

/// The message for an IPv6 entry in a policy without `address6`.
fn needs_address6(prefix: &Prefix) -> String {
    format!("{prefix} is IPv6, but [host] has no address6, so every IPv6 packet is dropped: add address6")
}

/// `"1/sec"`, `"10/minute"`, as iptables' `--limit`.
pub fn parse_limit(text: &str) -> Option<(u32, &'static str, Duration)> {
    let (count, unit) = text.split_once('/')?;
    let count: u32 = count.parse().ok().filter(|c| *c > 0)?;
    let (unit, per): (&'static str, u64) = match unit {
        "s" | "sec" | "second" => ("sec", 1),
        "m" | "min" | "minute" => ("min", 60),
        "h" | "hour" => ("hour", 3600),
        "d" | "day" => ("day", 86400),
        _ => return None,
    };
    let interval = Duration::from_secs(per) / count;
    (interval >= Duration::from_micros(1)).then_some((count, unit, interval))
}

fn validate_rule(
    raw: Spanned<RawRule>,
    names: &mut HashSet<String>,
    ipv6: bool,
) -> Result<(Rule, Vec<usize>), Located> {
    let rule_at = raw.span().start;
    let raw = raw.into_inner();
    let Some(name) = raw.name else {
        return fail(rule_at, "a [[rule]] needs a name");
    };
    let name_at = name.span().start;
    let name = name.into_inner();
    if name.is_empty()
        || name.len() > 32
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return fail(name_at, format!("bad rule name {name:?}: use 1 to 32 of a-z, 0-9 and -"));
    }
    if crate::compile::LineKind::reserved(&name) {
        return fail(name_at, format!("rule name {name:?} is reserved for the built-in lines"));
    }
    if !names.insert(name.clone()) {
        return fail(name_at, format!("duplicate rule name {name:?}"));
    }

    let direction = match raw.direction.as_ref().map(|d| d.get_ref().as_str()) {
        Some("in") => Direction::In,
        Some("out") => Direction::Out,
        Some(other) => {
            return fail(
                raw.direction.as_ref().unwrap().span().start,
                format!("direction must be \"in\" or \"out\", not {other:?}"),
            );
        }
        None => {
            return fail(rule_at, format!("rule {name:?} needs direction = \"in\" or \"out\""));
        }
    };

    let Some(protocols) = raw.protocols else {
        return fail(rule_at, format!("rule {name:?} needs protocols, as [\"tcp\"]"));
    };
    if protocols.get_ref().is_empty() {
        return fail(protocols.span().start, "protocols is empty");
    }
    let mut protos = Vec::new();
    for p in protocols.get_ref() {
        let Some(proto) = protocol_named(p.get_ref()).filter(|p| rule_protocol(*p)) else {
            return fail(
                p.span().start,
                format!("unknown protocol {:?}: expected tcp, udp or icmp", p.get_ref()),
            );
        };
        if protos.contains(&proto) {
            return fail(p.span().start, format!("protocol {:?} is listed twice", p.get_ref()));
        }
        protos.push(proto);
    }

    let mut ports = Vec::new();
    let port_list: Vec<Spanned<i64>> = match (raw.port, raw.ports) {
        (Some(_), Some(ports)) => return fail(ports.span().start, "use port or ports, not both"),
        (Some(port), None) => vec![port],
        (None, Some(ports)) if ports.get_ref().is_empty() => {
            return fail(ports.span().start, "ports is empty");
        }
        (None, Some(ports)) => ports.into_inner(),
        (None, None) => vec![],
    };
    let port_at = port_list.first().map(|p| p.span().start);
    for port in port_list {
        let value = *port.get_ref();
        if !(1..=65535).contains(&value) {
            return fail(port.span().start, format!("port {value} out of range 1-65535"));
        }
        if !ports.contains(&(value as u16)) {
            ports.push(value as u16);
        }
    }
    let wants_ports = protos.iter().any(|p| *p != PROTO_ICMP);
    if wants_ports && ports.is_empty() {
        return fail(rule_at, format!("rule {name:?} needs port or ports for tcp/udp"));
    }
    if !wants_ports && let Some(at) = port_at {
        return fail(at, "port applies to tcp and udp, not icmp");
    }

    let icmp_kind = match raw.icmp_type {
        None if protos.contains(&PROTO_ICMP) => {
            return fail(
                rule_at,
                format!(
                    "rule {name:?} needs icmp_type (echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem or a number)"
                ),
            );
        }
        None => None,
        Some(t) if !protos.contains(&PROTO_ICMP) => {
            return fail(t.span().start, "icmp_type needs \"icmp\" in protocols");
        }
        Some(t) => {
            let at = t.span().start;
            Some(match t.into_inner() {
                RawIcmpType::Name(n) => match n.as_str() {
                    "echo-request" => ICMP_ECHO_REQUEST,
                    "echo-reply" => ICMP_ECHO_REPLY,
                    "destination-unreachable" => ICMP_DEST_UNREACHABLE,
                    "time-exceeded" => ICMP_TIME_EXCEEDED,
                    "parameter-problem" => ICMP_PARAMETER_PROBLEM,
                    other => {
                        return fail(
                            at,
                            format!(
                                "unknown icmp_type {other:?}: expected echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem or a number"
                            ),
                        );
                    }
                },
                RawIcmpType::Number(n) if (0..=255).contains(&n) => n as u8,
                RawIcmpType::Number(n) => return fail(at, format!("icmp_type {n} out of range 0-255")),
            })
        }
    };
    let mut services = Vec::new();
    for proto in &protos {
        match *proto {
            PROTO_ICMP => services.push(Service::Icmp { kind: icmp_kind.expect("checked above") }),
            protocol => services.extend(ports.iter().map(|&port| Service::Port { protocol, port })),
        }
    }

    let Some(peers) = raw.peers else {
        return fail(rule_at, format!("rule {name:?} needs peers: addresses, CIDRs, or \"any\""));
    };
    let peers_at = peers.span().start;
    let (peers, peer_at) = match peers.into_inner() {
        RawPeers::One(any) if any == "any" => (vec![Prefix::ANY], vec![peers_at]),
        RawPeers::One(other) => {
            return fail(peers_at, format!("peers must be a list of addresses or \"any\", not {other:?}"));
        }
        RawPeers::Many(list) if list.is_empty() => {
            return fail(
                peers_at,
                "peers is empty: the rule would admit nothing (write peers = \"any\" for anyone)",
            );
        }
        RawPeers::Many(list) => {
            let mut out: Vec<Prefix> = Vec::with_capacity(list.len());
            let mut at = Vec::with_capacity(list.len());
            let mut seen = HashSet::new();
            for entry in list {
                let prefix =
                    Prefix::parse(entry.get_ref()).map_err(|e| (entry.span().start, e.to_string()))?;
                if !seen.insert(prefix) {
                    return fail(entry.span().start, format!("peer {prefix} is listed twice"));
                }
                if prefix.len == 0 || prefix.addr.is_unspecified() {
                    return fail(
                        entry.span().start,
                        format!("{prefix} is no peer; write peers = \"any\" for anyone"),
                    );
                }
                if prefix.is_v6() && !ipv6 {
                    return fail(entry.span().start, needs_address6(&prefix));
                }
                if prefix.is_v6()
                    && let Some(kind) = icmp_kind.filter(|k| icmpv6_equivalent(*k).is_none())
                {
                    return fail(
                        entry.span().start,
                        format!(
                            "{prefix} is IPv6, and ICMP type {kind} has no ICMPv6 equivalent: name a type both have (echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem)"
                        ),
                    );
                }
                out.push(prefix);
                at.push(entry.span().start);
            }
            (out, at)
        }
    };

    let limit = match (raw.limit, raw.burst) {
        (None, None) => None,
        (None, Some(burst)) => return fail(burst.span().start, "burst needs a limit"),
        (Some(limit), burst) => {
            let Some((count, unit, interval)) = parse_limit(limit.get_ref()) else {
                return fail(
                    limit.span().start,
                    format!("bad limit {:?}: expected N/sec, N/min, N/hour or N/day", limit.get_ref()),
                );
            };
            let burst = match burst {
                None => 5, // iptables' default --limit-burst
                Some(b) if (1..=10_000).contains(b.get_ref()) => *b.get_ref() as u32,
                Some(b) => return fail(b.span().start, "burst must be between 1 and 10000"),
            };
            Some(Limit { interval, burst, count, unit })
        }
    };

    let related = match raw.related {
        None => false,
        Some(r) if !*r.get_ref() => false,
        Some(r) => match icmp_kind {
            Some(ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM)
                if protos == [PROTO_ICMP] =>
            {
                true
            }
            _ => {
                return fail(
                    r.span().start,
                    "related applies to ICMP error rules (destination-unreachable, time-exceeded, parameter-problem) of protocol icmp alone",
                );
            }
        },
    };

    Ok((Rule { name, direction, services, peers, limit, related }, peer_at))
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
    fn rejects_host_bits_and_overlapping_owners() {
        let err = check(&format!(
            "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = [\"10.1.2.3/8\"]\n"
        ))
        .unwrap_err();
        assert!(err.ends_with("10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"), "{err}");
        let rule = |n: &str| {
            format!(
                "[[rule]]\nname = \"{n}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = [\"192.0.2.1\"]\n"
            )
        };
        let err = check(&format!("{HOST}{}{}", rule("a"), rule("b"))).unwrap_err();
        assert!(err.ends_with("peer 192.0.2.1 for tcp port 1 in is already in rule \"a\""), "{err}");
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
    fn related_is_for_icmp_errors_only() {
        let rule = |proto: &str, kind: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"{proto}\"]\n{kind}\npeers = \"any\"\nrelated = true\n"
            )
        };
        assert!(check(&rule("icmp", "icmp_type = \"destination-unreachable\"")).unwrap().rules[0].related);
        assert!(check(&rule("icmp", "icmp_type = 11")).unwrap().rules[0].related);
        let err = check(&rule("icmp", "icmp_type = \"echo-request\"")).unwrap_err();
        assert!(err.ends_with("related applies to ICMP error rules (destination-unreachable, time-exceeded, parameter-problem) of protocol icmp alone"), "{err}");
        assert!(check(&rule("tcp", "port = 1")).unwrap_err().contains("related applies to ICMP error rules"));
    }

    pub(super) const HOST6: &str =
        "[host]\ninterface = \"eth0\"\naddress = \"198.51.100.1\"\naddress6 = \"2001:db8::1\"\n";

    pub(super) fn ssh_rule(peers: &str) -> String {
        format!(
            "[[rule]]\nname = \"ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = {peers}\n"
        )
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
    fn an_ipv6_peer_needs_an_icmp_type_icmpv6_has() {
        let rule = |kind: &str| {
            format!(
                "{HOST6}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"icmp\"]\nicmp_type = {kind}\npeers = [\"2001:db8:1::7\"]\n"
            )
        };
        assert!(check(&rule("\"time-exceeded\"")).is_ok());
        let err = check(&rule("5")).unwrap_err();
        assert!(err.contains("2001:db8:1::7 is IPv6, and ICMP type 5 has no ICMPv6 equivalent"), "{err}");
        assert_eq!(Service::Icmp { kind: 8 }.key_for(true), Some((PROTO_ICMPV6, 128)));
        assert_eq!(Service::Icmp { kind: 5 }.key_for(false), Some((PROTO_ICMP, 5)));
        assert_eq!(Service::Port { protocol: PROTO_TCP, port: 22 }.key_for(true), Some((PROTO_TCP, 22)));
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

    #[test]
    fn limits_follow_iptables() {
        let p = check(&format!(
            "{HOST}[[rule]]\nname = \"ping\"\ndirection = \"in\"\nprotocols = [\"icmp\"]\nicmp_type = \"echo-request\"\npeers = \"any\"\nlimit = \"1/sec\"\n"
        ))
        .unwrap();
        let limit = p.rules[0].limit.unwrap();
        assert_eq!((limit.interval, limit.burst), (Duration::from_secs(1), 5));
        assert_eq!(parse_limit("3/min").unwrap().2, Duration::from_secs(20));
        assert!(parse_limit("0/sec").is_none());
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(432_000)));
        assert_eq!(parse_duration("5"), None);
    }
}
