//! From classified lines to rules: an opening line and its return are one rule, the peers
//! of one service one list, and services with the same peers one rule.
use std::{collections::HashMap, net::IpAddr};

use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED,
    PROTO_ICMP, PROTO_TCP,
};

use super::{
    Finding, Findings, Options,
    classify::{Classified, Flow, Role, Svc},
    spec::Rate,
    write::{AntispoofOut, HostOut, line_list},
};
use crate::policy::Prefix;

/// The lines one service admits in one direction with one limit: its peers (`None`:
/// anyone), in order, each with the line that names it.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) direction: Direction,
    pub(super) svc: Svc,
    pub(super) limit: Option<Rate>,
    pub(super) peers: Vec<(Option<Prefix>, usize)>,
    /// The line that named each peer first.
    pub(super) peer_line: HashMap<Option<Prefix>, usize>,
    /// The lines that open its flows, and those of their returns.
    pub(super) lines: Vec<usize>,
    pub(super) returns: Vec<usize>,
    pub(super) notes: Vec<String>,
    pub(super) comments: Vec<String>,
}

/// A return line's service, for pairing with the lines that open its flows (found by
/// the flow's direction, the service and the peer, `None` for anyone).
#[derive(Debug)]
pub(super) struct Return {
    pub(super) svc: Svc,
    pub(super) line: usize,
    pub(super) limit: Option<Rate>,
    /// Some opening line pairs with it.
    pub(super) used: bool,
}

/// One `[[rule]]` to write.
#[derive(Debug)]
pub(super) struct RuleOut {
    pub(super) name: String,
    pub(super) direction: Direction,
    pub(super) protocols: Vec<u8>,
    pub(super) ports: Vec<u16>,
    pub(super) icmp: Option<(u8, bool)>,
    pub(super) peers: Option<Vec<Prefix>>,
    pub(super) limit: Option<Rate>,
    pub(super) opening: Vec<usize>,
    pub(super) returns: Vec<usize>,
    pub(super) notes: Vec<String>,
    pub(super) comments: Vec<String>,
}

/// A line that admits flows, as the grouping reads it: its number, its text, its flow.
pub(super) type FlowLine = (usize, String, Flow);

/// The host the policy is for: `--iface` and `--address`, else the interface and the
/// address that the lines name most. `None`: no address, given or named.
pub(super) fn choose_host(classified: &[Classified], options: &Options) -> Option<HostOut> {
    let named: Vec<String> = classified
        .iter()
        .filter_map(|c| match &c.role {
            Role::Flow(Flow { iface, .. }) | Role::Antispoof { iface, .. } => iface.clone(),
            Role::BuiltIn(_) => None,
        })
        .collect();
    let (iface, iface_from) = match (&options.iface, most_common(&named)) {
        (Some(i), _) => (Some(i.clone()), "--iface".to_owned()),
        (None, Some(i)) => (Some(i.clone()), format!("the dump's -i/-o {i}")),
        (None, None) => (None, String::new()),
    };
    let hosts: Vec<Prefix> = classified
        .iter()
        .filter_map(|c| match &c.role {
            Role::Flow(f) => f.host.filter(|h| h.len == 32),
            _ => None,
        })
        .collect();
    let (address, address_from) = match (options.address, most_common(&hosts).map(|p| p.addr)) {
        (Some(a), _) => (a, "--address"),
        (None, Some(IpAddr::V4(a))) => (a, "the dump's -d on INPUT and -s on OUTPUT"),
        (None, _) => return None,
    };
    Some(HostOut { iface, iface_from, address, address_from: address_from.to_owned() })
}

/// The most frequent of `values` (the first seen of equals).
fn most_common<T: Eq + std::hash::Hash + Clone>(values: &[T]) -> Option<T> {
    let mut counts: HashMap<&T, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut best: Option<(&T, usize)> = None;
    for v in values {
        let n = counts[v];
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((v, n));
        }
    }
    best.map(|(v, _)| v.clone())
}

/// Sets aside the lines for another host address or interface: they are not ours to
/// translate. The rest are the anti-spoof lists and the flows to group.
pub(super) fn host_lines(
    classified: Vec<Classified>,
    host: &HostOut,
    findings: &mut Findings,
) -> (Vec<FlowLine>, AntispoofOut) {
    let mut flows = Vec::new();
    let mut antispoof = AntispoofOut::default();
    for Classified { line, text, role } in classified {
        match role {
            Role::Antispoof { source, prefix, iface } => {
                if let Some(why) = not_our_antispoof(host, source, prefix, iface.as_ref()) {
                    findings.untranslated.push(Finding { line, rule: text, why });
                    continue;
                }
                let list = if source { &mut antispoof.sources } else { &mut antispoof.destinations };
                if list.contains(&prefix) {
                    let why = format!("{prefix} is already in the list");
                    findings.built_in.push(Finding { line, rule: text, why });
                } else {
                    list.push(prefix);
                }
                antispoof.lines.push(line);
            }
            Role::Flow(f) => match not_our_flow(host, &f) {
                Some(why) => findings.untranslated.push(Finding { line, rule: text, why }),
                None => flows.push((line, text, f)),
            },
            Role::BuiltIn(_) => unreachable!("built-ins are set aside above"),
        }
    }
    (flows, antispoof)
}

/// Why an anti-spoof line is not the host's: another interface's, or one that would
/// drop every packet to the host.
fn not_our_antispoof(host: &HostOut, source: bool, prefix: Prefix, iface: Option<&String>) -> Option<String> {
    if let Some(why) = other_iface(host, iface) {
        return Some(why);
    }
    let address = host.address;
    (!source && prefix.contains(IpAddr::V4(address))).then(|| {
        format!(
            "it drops every packet to the host address {address} (from {}): not translated",
            host.address_from
        )
    })
}

/// Why a line that admits flows is not the host's: another host address's, or another
/// interface's.
fn not_our_flow(host: &HostOut, f: &Flow) -> Option<String> {
    let address = host.address;
    // The host side's option: -d for what comes in, -s for what goes out.
    let flag = if matches!((f.direction, f.is_return), (Direction::In, false) | (Direction::Out, true)) {
        "-d"
    } else {
        "-s"
    };
    if let Some(h) = f.host.filter(|h| h.len != 32 || h.addr != IpAddr::V4(address)) {
        return Some(format!(
            "{flag} {h} is not the host address {address} (from {}; --address chooses another)",
            host.address_from
        ));
    }
    other_iface(host, f.iface.as_ref())
}

/// Why a line on interface `theirs` is not the host's, if the policy is for another.
fn other_iface(host: &HostOut, theirs: Option<&String>) -> Option<String> {
    match (&host.iface, theirs) {
        (Some(mine), Some(theirs)) if mine != theirs => {
            Some(format!("on interface {theirs}: the policy is for {mine} (from {})", host.iface_from))
        }
        _ => None,
    }
}

/// Pairs opening lines with their returns, gathers each service's peers, and merges the
/// services with the same peers into rules.
pub(super) fn group(flows: &[FlowLine], passes_returns: &[String], findings: &mut Findings) -> Vec<RuleOut> {
    let Findings { untranslated, differences, .. } = findings;
    // Indexes throughout: a dump may hold a line for each of 100,000 peers.
    let texts: HashMap<usize, &str> = flows.iter().map(|(l, t, _)| (*l, t.as_str())).collect();
    let finding = |line: usize, why: String| Finding { line, rule: texts[&line].to_owned(), why };
    let mut returns: Vec<Return> = Vec::new();
    let mut returns_by: HashMap<(Direction, Svc, Option<Prefix>), Vec<usize>> = HashMap::new();
    for (line, _, f) in flows.iter().filter(|(_, _, f)| f.is_return) {
        for svc in &f.services {
            returns_by.entry((f.direction, *svc, f.peer)).or_default().push(returns.len());
            returns.push(Return { svc: *svc, line: *line, limit: f.limit, used: false });
        }
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut entry_of: HashMap<(Direction, Svc, Option<Rate>), usize> = HashMap::new();
    // The entries of one service, whatever their limits.
    let mut entries_of: HashMap<(Direction, Svc), Vec<usize>> = HashMap::new();
    for (line, _, f) in flows.iter().filter(|(_, _, f)| !f.is_return) {
        let mut unanswered = false;
        for svc in &f.services {
            // Another entry of this service (with another limit) already has the peer:
            // one peer of a service belongs to one rule.
            let siblings = entries_of.get(&(f.direction, *svc)).map_or(&[][..], Vec::as_slice);
            if let Some(at) = siblings
                .iter()
                .filter(|&&e| entries[e].limit != f.limit)
                .find_map(|&e| entries[e].peer_line.get(&f.peer))
            {
                untranslated.push(finding(
                    *line,
                    format!("its peer is already admitted for this service by line {at}, with another limit: a peer of a service belongs to one rule"),
                ));
                continue;
            }
            let at = *entry_of.entry((f.direction, *svc, f.limit)).or_insert_with(|| {
                entries_of.entry((f.direction, *svc)).or_default().push(entries.len());
                entries.push(Entry {
                    direction: f.direction,
                    svc: *svc,
                    limit: f.limit,
                    peers: Vec::new(),
                    peer_line: HashMap::new(),
                    lines: Vec::new(),
                    returns: Vec::new(),
                    notes: Vec::new(),
                    comments: Vec::new(),
                });
                entries.len() - 1
            });
            let entry = &mut entries[at];
            // Lines come in order: a multiport line's second port is the same line.
            if entry.lines.last() != Some(line) {
                entry.lines.push(*line);
            }
            if let Some(c) = &f.comment
                && !entry.comments.contains(c)
            {
                entry.comments.push(c.clone());
            }
            match entry.peer_line.get(&f.peer) {
                Some(first) => entry.notes.push(format!("line {line} repeats line {first}")),
                None => {
                    entry.peer_line.insert(f.peer, *line);
                    entry.peers.push((f.peer, *line));
                }
            }
            // Only flows have returns: ICMP errors and other types are single messages.
            let needs_return = matches!(svc, Svc::Port { .. } | Svc::Icmp { kind: ICMP_ECHO_REQUEST, .. });
            if !needs_return {
                continue;
            }
            // Its return: one to this peer, or one to anyone.
            let mut keys = vec![(f.direction, *svc, None)];
            if f.peer.is_some() {
                keys.push((f.direction, *svc, f.peer));
            }
            let mut answered = false;
            for r in keys.iter().filter_map(|k| returns_by.get(k)).flatten() {
                let r = &mut returns[*r];
                answered = true;
                if !r.used {
                    r.used = true;
                    entry.returns.push(r.line);
                    if let Some(rate) = r.limit {
                        entry.notes.push(format!(
                            "the --limit {rate} of return line {} is not a bucket of its own: returns pass with their flow, so they are limited with its opening packets",
                            r.line
                        ));
                    }
                } else if !entry.returns.contains(&r.line) {
                    // A return to anyone, already used by another entry's lines.
                    entry.returns.push(r.line);
                }
            }
            unanswered |= !answered;
        }
        // The chain its returns travel through.
        let back = if f.direction == Direction::In { "OUTPUT" } else { "INPUT" };
        if unanswered && !passes_returns.iter().any(|c| c == back) {
            differences.push(finding(
                *line,
                "translated, but it has no return line: the firewall admits the returns of the flows it opens, which this dump drops".into(),
            ));
        }
    }
    let mut listed: std::collections::HashSet<usize> = untranslated.iter().map(|f| f.line).collect();
    for r in &returns {
        // A multiport line is listed once.
        if r.used || !listed.insert(r.line) {
            continue;
        }
        let why = match r.svc {
            Svc::Icmp { .. } => "an echo-reply with no echo-request the other way: replies pass here only as the answers of admitted requests".to_owned(),
            _ => "a return line (--sport) with no line that opens its flow the other way: nothing to translate".to_owned(),
        };
        untranslated.push(finding(r.line, why));
    }

    // "Anyone" covers every named peer of the same service.
    for entry in &mut entries {
        if let Some((_, any_line)) = entry.peers.iter().find(|(p, _)| p.is_none()).copied() {
            let named: Vec<usize> =
                entry.peers.iter().filter(|(p, _)| p.is_some()).map(|(_, l)| *l).collect();
            if !named.is_empty() {
                entry.notes.push(format!(
                    "line {any_line} admits anyone, so the peers of lines {} need no place of their own",
                    line_list(&named)
                ));
            }
            entry.peers.retain(|(p, _)| p.is_none());
        }
        let limited = entry.lines.len();
        if entry.limit.is_some() && limited > 1 {
            entry.notes.push(format!(
                "one token bucket for the rule, where iptables keeps one for each of its {limited} lines"
            ));
        }
    }

    // Rules: TCP and UDP services with the same direction and peers, unlimited, merge
    // (a rule is protocols × ports, so ports group by their set of protocols); ICMP
    // types and limited services are rules of their own.
    let peers_of = |e: &Entry| -> Option<Vec<Prefix>> {
        if e.peers.iter().any(|(p, _)| p.is_none()) {
            None
        } else {
            Some(e.peers.iter().map(|(p, _)| p.expect("named")).collect())
        }
    };
    let same_peers = |a: &Option<Vec<Prefix>>, b: &Option<Vec<Prefix>>| {
        let sorted = |p: &Option<Vec<Prefix>>| {
            p.clone().map(|mut v| {
                v.sort();
                v
            })
        };
        sorted(a) == sorted(b)
    };
    let mut rules: Vec<RuleOut> = Vec::new();
    let mut taken = vec![false; entries.len()];
    for i in 0..entries.len() {
        if taken[i] {
            continue;
        }
        let e = &entries[i];
        let peers = peers_of(e);
        let mut members = vec![i];
        if let (Svc::Port { .. }, None) = (e.svc, e.limit) {
            for (j, other) in entries.iter().enumerate().skip(i + 1) {
                if !taken[j]
                    && matches!(other.svc, Svc::Port { .. })
                    && other.limit.is_none()
                    && other.direction == e.direction
                    && same_peers(&peers_of(other), &peers)
                {
                    members.push(j);
                }
            }
        }
        // port → its protocols, in the order met.
        let mut by_port: Vec<(u16, Vec<u8>)> = Vec::new();
        for &m in &members {
            if let Svc::Port { protocol, port } = entries[m].svc {
                match by_port.iter_mut().find(|(p, _)| *p == port) {
                    Some((_, protos)) => protos.push(protocol),
                    None => by_port.push((port, vec![protocol])),
                }
            }
        }
        let mut groups: Vec<(Vec<u8>, Vec<u16>)> = Vec::new();
        for (port, mut protos) in by_port {
            protos.sort_by_key(|p| {
                members
                    .iter()
                    .position(|&m| matches!(entries[m].svc, Svc::Port { protocol, .. } if protocol == *p))
            });
            match groups.iter_mut().find(|(p, _)| *p == protos) {
                Some((_, ports)) => ports.push(port),
                None => groups.push((protos, vec![port])),
            }
        }
        let rule_of = |members: &[usize], protocols: Vec<u8>, ports: Vec<u16>, icmp| {
            let mut opening: Vec<usize> = members.iter().flat_map(|&m| entries[m].lines.clone()).collect();
            let mut back: Vec<usize> = members.iter().flat_map(|&m| entries[m].returns.clone()).collect();
            let mut notes: Vec<String> = members.iter().flat_map(|&m| entries[m].notes.clone()).collect();
            let mut comments: Vec<String> =
                members.iter().flat_map(|&m| entries[m].comments.clone()).collect();
            for v in [&mut opening, &mut back] {
                v.sort_unstable();
                v.dedup();
            }
            notes.dedup();
            comments.dedup();
            RuleOut {
                name: String::new(),
                direction: e.direction,
                protocols,
                ports,
                icmp,
                peers: peers.clone(),
                limit: e.limit,
                opening,
                returns: back,
                notes,
                comments,
            }
        };
        match e.svc {
            Svc::Icmp { kind, related } => {
                taken[i] = true;
                rules.push(rule_of(&[i], vec![PROTO_ICMP], Vec::new(), Some((kind, related))));
            }
            Svc::Port { .. } => {
                for (protocols, ports) in groups {
                    let mine: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&m| matches!(entries[m].svc, Svc::Port { protocol, port } if protocols.contains(&protocol) && ports.contains(&port)))
                        .collect();
                    for &m in &mine {
                        taken[m] = true;
                    }
                    rules.push(rule_of(&mine, protocols, ports, None));
                }
            }
        }
    }
    // In the order of the dump's first line of each (a return line comes first when
    // iptables-save lists INPUT before OUTPUT).
    rules.sort_by_key(|r| r.opening.iter().chain(&r.returns).min().copied());
    let mut names: Vec<String> = Vec::new();
    for rule in &mut rules {
        rule.name = unique_name(&base_name(rule), &names);
        names.push(rule.name.clone());
    }
    rules
}

/// Well-known services, for rule names.
pub(super) fn service_name(port: u16) -> Option<&'static str> {
    Some(match port {
        20 | 21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "dns",
        80 => "http",
        110 => "pop3",
        123 => "ntp",
        143 => "imap",
        161 => "snmp",
        389 => "ldap",
        443 => "https",
        465 => "smtps",
        514 => "syslog",
        587 => "submission",
        636 => "ldaps",
        873 => "rsync",
        993 => "imaps",
        995 => "pop3s",
        3306 => "mysql",
        5432 => "postgresql",
        _ => return None,
    })
}

/// `dns-out`, `ssh-in`, `web-in` (80 and 443), `tcp-8080-in`, `ping-in`, `unreachable-out`.
pub(super) fn base_name(rule: &RuleOut) -> String {
    let stem = match rule.icmp {
        Some((ICMP_ECHO_REQUEST, _)) => "ping".to_owned(),
        Some((ICMP_DEST_UNREACHABLE, _)) => "unreachable".to_owned(),
        Some((ICMP_TIME_EXCEEDED, _)) => "time-exceeded".to_owned(),
        Some((ICMP_PARAMETER_PROBLEM, _)) => "parameter-problem".to_owned(),
        Some((kind, _)) => format!("icmp-{kind}"),
        None => {
            let mut ports = rule.ports.clone();
            ports.sort_unstable();
            let names: Option<Vec<&str>> = ports.iter().map(|p| service_name(*p)).collect();
            match names {
                _ if ports == [80, 443] => "web".to_owned(),
                Some(mut names) => {
                    names.dedup();
                    names.join("-")
                }
                None => {
                    let protocols: Vec<&str> =
                        rule.protocols.iter().map(|p| if *p == PROTO_TCP { "tcp" } else { "udp" }).collect();
                    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                    format!("{}-{}", protocols.join("-"), ports.join("-"))
                }
            }
        }
    };
    let direction = if rule.direction == Direction::In { "in" } else { "out" };
    // The policy's names are at most 32 characters; room for "-2" and the direction.
    let room = 32 - 3 - direction.len();
    let stem = if stem.len() > room { stem[..room].trim_end_matches('-').to_owned() } else { stem };
    format!("{stem}-{direction}")
}

#[expect(clippy::maybe_infinite_iter, reason = "`taken` is finite: a free name comes")]
pub(super) fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}-{n}")).find(|name| !taken.contains(name)).expect("a free name")
}
