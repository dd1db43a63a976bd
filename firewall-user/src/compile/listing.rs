//! The listing: the lines `list`, the metrics and the drop events name and count, chain
//! by chain, in the order the programs apply them.
use firewall_common::{
    Builtin, Chain, Direction, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Line, PROTO_ICMP, builtin_counter,
    icmpv6_equivalent, protocol_name, rule_counter,
};
use serde::Serialize;

use super::{AntispoofEntry, AntispoofList, Ids, LineKind};
use crate::policy::{PerSource, Policy, Prefix, Rule, Service, duration_text};

/// One line of the listing, before counters are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListLine {
    /// What it counts; `list --json` writes its name.
    #[serde(rename = "name")]
    pub kind: LineKind,
    pub target: &'static str,
    #[serde(rename = "protocol")]
    pub prot: &'static str,
    pub source: String,
    pub destination: String,
    /// iptables-style match text: `tcp dpt:122 state NEW,ESTABLISHED`.
    #[serde(rename = "match")]
    pub matches: String,
    /// A rule's ports, each `[first, last]`, when one of them is a range (`list --json`
    /// says nothing more of rules without, as before ranges).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<[u16; 2]>>,
    #[serde(skip)]
    pub counter: u32,
}

/// A chain of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListChain {
    pub chain: Chain,
    pub lines: Vec<ListLine>,
}

pub fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Input => "INPUT",
        Chain::Output => "OUTPUT",
        Chain::Forward => "FORWARD",
    }
}

pub(crate) const ANYWHERE: &str = "0.0.0.0/0";
const ANYWHERE6: &str = "::/0";

/// iptables' `prot` column: a rule's protocol, `all` for several.
fn proto_name(protocol: u8) -> &'static str {
    protocol_name(protocol).unwrap_or("all")
}

/// A rule's peers as written: the first, and how many more (its names counted as one
/// each, whatever they hold: `list -v` shows their addresses).
fn peers_text(rule: &Rule) -> String {
    let written = rule.peers.len() + rule.names.len();
    let first = match (rule.peers.first(), rule.names.first()) {
        (Some(one), _) if one.len == 0 => return ANYWHERE.into(),
        (Some(one), _) => one.to_string(),
        (None, Some(name)) => name.name.clone(),
        (None, None) => return "-".into(),
    };
    if written == 1 { first } else { format!("{first} +{}", written - 1) }
}

fn builtin(chain: Chain, line: Builtin, target: &'static str, matches: &str) -> ListLine {
    ListLine {
        kind: LineKind::Builtin(line),
        target,
        prot: "all",
        source: ANYWHERE.into(),
        destination: ANYWHERE.into(),
        matches: matches.into(),
        ports: None,
        counter: builtin_counter(chain, line),
    }
}

/// The protocols of the link itself that pass (`non-ip`): they end at the neighbour, and
/// Linux hands none of them to IP.
const LINK_PROTOCOLS: &str = "ARP, LLDP, 802.1X, LACP, 802.3 LLC";

/// The built-in lines every chain of the host's own traffic starts with: the parse's.
/// The blocklist's lines follow them (`blocklist::insert_lines`).
fn first_lines(policy: &Policy, chain: Chain) -> Vec<ListLine> {
    let mut lines = vec![
        builtin(chain, Builtin::NonIp, "ACCEPT", LINK_PROTOCOLS),
        builtin(chain, Builtin::OtherEthertype, "DROP", &format!("ethertype not IP, {LINK_PROTOCOLS}")),
    ];
    if policy.address6.is_none() {
        lines.push(ListLine {
            source: ANYWHERE6.into(),
            destination: ANYWHERE6.into(),
            ..builtin(chain, Builtin::Ipv6, "DROP", "IPv6 (no address6)")
        });
    }
    lines.push(builtin(chain, Builtin::Invalid, "DROP", "state INVALID (malformed, VLAN tags past two)"));
    // The blocklist's lines come next (a block stops fragments too), with the offenders
    // `per_source` limits blocked, counted on one line with the new flows they refused;
    // then the fragments decided before the chains: a later one follows its first's line,
    // or drops here.
    let limited = policy.rules.iter().any(|r| r.per_source.is_some());
    let trapped = policy.rules.iter().any(|r| r.trap.is_some());
    if limited || trapped {
        let (whose, refused) = match chain {
            Chain::Input if limited => {
                ("from", "a new flow over its source's per_source rate or connections; ")
            }
            Chain::Input => ("from", ""),
            _ => ("to", ""),
        };
        let by = match (limited, trapped) {
            (true, true) => "a per_source limit or a trap",
            (true, false) => "a per_source limit",
            (false, _) => "a trap",
        };
        let matches = format!("{refused}{whose} a source {by} blocked (firewall blocklist)");
        lines.push(builtin(chain, Builtin::SourceLimit, "DROP", &matches));
    }
    lines.extend(fragment_lines(chain));
    lines
}

/// The fragments no first admits: those no sender makes (a tiny first fragment, counted
/// here though decided with the transport header), and later ones whose first did not
/// pass within `[conntrack] fragment_timeout`.
fn fragment_lines(chain: Chain) -> [ListLine; 2] {
    [
        builtin(
            chain,
            Builtin::InvalidFragment,
            "DROP",
            "fragment: tiny, overlapping, odd-sized, past 65535",
        ),
        builtin(chain, Builtin::FragmentOrphan, "DROP", "fragment after the first (no first passed)"),
    ]
}

/// What IPv6 itself needs, with `address6`: after the blocklist and INPUT's anti-spoof
/// sources (which discovery from the link's own addresses skips), before the checks of
/// the host's address.
fn icmpv6_lines(policy: &Policy, chain: Chain) -> Vec<ListLine> {
    if policy.address6.is_none() {
        return Vec::new();
    }
    let ours = policy.addresses6().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let (source, destination) = match chain {
        Chain::Output => (ours, ANYWHERE6.into()),
        _ => (ANYWHERE6.into(), ours),
    };
    vec![
        ListLine {
            prot: "ipv6-icmp",
            source: ANYWHERE6.into(),
            destination: ANYWHERE6.into(),
            ..builtin(
                chain,
                Builtin::NeighbourDiscovery,
                "ACCEPT",
                "icmpv6type 133-137 hoplimit 255, 130-132,143 hoplimit 1 from fe80::/10 (fe80::/10, :: skip antispoof)",
            )
        },
        ListLine {
            prot: "ipv6-icmp",
            source,
            destination,
            ..builtin(chain, Builtin::PacketTooBig, "ACCEPT", "icmpv6type 2 (packet too big)")
        },
    ]
}

/// The listing's lines, in the order the programs apply them: each chain's checks before
/// the rules, the checks of invalid packets, each rule's lines, the chain's policy.
pub fn listing(policy: &Policy, ids: &Ids) -> Vec<ListChain> {
    let ours = our_addresses(policy);
    let mut input = input_lines(policy, ids);
    let mut output = output_lines(policy, &ours);
    // FORWARD's first fragments (of datagrams to no address of ours) meet its own line.
    let mut forward = vec![
        builtin(Chain::Forward, Builtin::Invalid, "DROP", "state INVALID (malformed)"),
        builtin(Chain::Forward, Builtin::InvalidFragment, "DROP", "fragment: tiny, odd-sized"),
    ];
    for (chain, lines) in
        [(Chain::Input, &mut input), (Chain::Output, &mut output), (Chain::Forward, &mut forward)]
    {
        lines.push(invalid_flags_line(chain));
    }
    for rule in &policy.rules {
        let (new_line, established_line) = rule_lines(policy, rule, ids.rule(&rule.name), &ours);
        let (own, other) = match rule.direction {
            Direction::In => (&mut input, &mut output),
            Direction::Out => (&mut output, &mut input),
        };
        own.push(new_line);
        other.extend(established_line);
    }
    let mut chains = Vec::new();
    for (chain, mut lines) in [(Chain::Input, input), (Chain::Output, output), (Chain::Forward, forward)] {
        lines.push(builtin(chain, Builtin::Policy, "DROP", ""));
        chains.push(ListChain { chain, lines });
    }
    chains
}

/// The host's addresses, as the rules' lines show them: `address`, with `address6`
/// after a comma, each of a list in its order.
fn our_addresses(policy: &Policy) -> String {
    policy.host_addresses().iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The DHCP client's exchange, with `[host] dhcp`: after the blocklist, before the
/// anti-spoof lists and the checks of the host's address, which it skips (a server may
/// have a private address; a client without a lease sends from 0.0.0.0, to broadcast).
fn dhcp_line(policy: &Policy, chain: Chain) -> Option<ListLine> {
    if !policy.dhcp {
        return None;
    }
    let ports = match (chain, policy.address6.is_some()) {
        (Chain::Output, false) => "udp spt:68 dpt:67",
        (Chain::Output, true) => "udp spt:68 dpt:67, spt:546 dpt:547",
        (_, false) => "udp spt:67 dpt:68",
        (_, true) => "udp spt:67 dpt:68, spt:547 dpt:546",
    };
    Some(ListLine {
        prot: "udp",
        ..builtin(chain, Builtin::Dhcp, "ACCEPT", &format!("{ports} (DHCP client; skips antispoof)"))
    })
}

/// INPUT before the checks of invalid packets: the parse's lines, the DHCP client's, the
/// anti-spoof sources, what IPv6 needs, the anti-spoof destinations.
fn input_lines(policy: &Policy, ids: &Ids) -> Vec<ListLine> {
    let mut input = first_lines(policy, Chain::Input);
    input.extend(dhcp_line(policy, Chain::Input));
    input.extend(policy.antispoof_sources.iter().map(|p| antispoof_line(AntispoofEntry::source(*p), ids)));
    input.extend(icmpv6_lines(policy, Chain::Input));
    input.extend(
        policy.antispoof_destinations.iter().map(|p| antispoof_line(AntispoofEntry::destination(*p), ids)),
    );
    input
}

/// An anti-spoof entry's line: its prefix is the source, or the destination, it drops.
fn antispoof_line(entry: AntispoofEntry, ids: &Ids) -> ListLine {
    let prefix = entry.prefix.to_string();
    let (source, destination) = match entry.list {
        AntispoofList::Sources => (prefix, ANYWHERE.into()),
        AntispoofList::Destinations => (ANYWHERE.into(), prefix),
    };
    ListLine {
        kind: LineKind::Antispoof(entry),
        target: "DROP",
        prot: "all",
        source,
        destination,
        matches: String::new(),
        ports: None,
        counter: ids.antispoof[&entry],
    }
}

/// OUTPUT before the checks of invalid packets: the parse's lines, the DHCP client's,
/// what IPv6 needs (which leaves from link-local addresses), then the check that the
/// source is ours.
fn output_lines(policy: &Policy, ours: &str) -> Vec<ListLine> {
    let mut output = first_lines(policy, Chain::Output);
    output.extend(dhcp_line(policy, Chain::Output));
    output.extend(icmpv6_lines(policy, Chain::Output));
    output.push(ListLine {
        source: format!("!{ours}"),
        ..builtin(Chain::Output, Builtin::SpoofedSource, "DROP", "outbound spoofing")
    });
    output
}

/// The check of segments no flow may have, in every chain: their TCP flags.
fn invalid_flags_line(chain: Chain) -> ListLine {
    ListLine { prot: "tcp", ..builtin(chain, Builtin::InvalidTcpFlags, "DROP", "state INVALID (TCP flags)") }
}

/// A rule's two lines: the NEW one, for its own direction's chain, and the ESTABLISHED
/// one (its returns), for the other chain; `None` for a rule without returns. `index` is
/// the rule's id.
fn rule_lines(policy: &Policy, rule: &Rule, index: u32, ours: &str) -> (ListLine, Option<ListLine>) {
    let peers = peers_text(rule);
    let protocols = rule_protocols(rule);
    let prot = if protocols.len() == 1 { proto_name(protocols[0]) } else { "all" };
    // What the rule's NEW line says beside its service and state, as iptables lists its
    // matches: its limit, LOG, owner and per-source limit.
    let mut extra = rule
        .limit
        .map(|l| format!(" limit: avg {}/{} burst {}", l.count, l.unit, l.burst))
        .unwrap_or_default();
    if rule.log {
        extra.push_str(" LOG");
    }
    if !rule.uids.is_empty() {
        let uids: Vec<String> = rule
            .uids
            .iter()
            .map(|&(first, last)| if first == last { first.to_string() } else { format!("{first}-{last}") })
            .collect();
        extra.push_str(&format!(" owner UID match {}", uids.join(",")));
    }
    if let Some(PerSource { limit, connections, block, prefix, prefix6 }) = rule.per_source {
        extra.push_str(" per source:");
        if let Some(l) = limit {
            extra.push_str(&format!(" {}/{} burst {}", l.count, l.unit, l.burst));
        }
        // As connlimit's `--connlimit-upto`: the most open at once.
        if let Some(n) = connections {
            extra.push_str(&format!(" connections upto {n}"));
        }
        // As hashlimit lists its --hashlimit-srcmask; the defaults go unsaid.
        if prefix != 32 {
            extra.push_str(&format!(" srcmask {prefix}"));
        }
        if prefix6 != 64 {
            extra.push_str(&format!(" srcmask6 {prefix6}"));
        }
        if let Some(block) = block {
            extra.push_str(&format!(" block {}", duration_text(block.as_secs())));
        }
    }
    let ranges = rule.services.iter().any(|s| matches!(s, Service::Range { .. }));
    let ports = ranges.then(|| {
        let first = rule.services.first().map(Service::protocol);
        rule.services.iter().filter(|s| Some(s.protocol()) == first).map(|s| s.span().into()).collect()
    });
    let (new_src, new_dst) = match rule.direction {
        Direction::In => (peers, ours.to_owned()),
        Direction::Out => (ours.to_owned(), peers),
    };
    if let Some(block) = rule.trap {
        extra.push_str(&format!(" trap: block {}", duration_text(block.as_secs())));
    }
    let new_line = ListLine {
        kind: LineKind::Rule { name: rule.name.clone(), line: Line::New },
        // A trap admits nothing.
        target: if rule.trap.is_some() { "DROP" } else { "ACCEPT" },
        prot,
        source: new_src.clone(),
        destination: new_dst.clone(),
        // A rule with `returns = false` is stateless, as iptables lists a line with no
        // state match.
        matches: format!(
            "{}{}{extra}",
            service_text(policy, rule, &protocols, false),
            match (rule.related, rule.returns && rule.trap.is_none()) {
                (true, _) => " state RELATED",
                (false, true) => " state NEW,ESTABLISHED",
                (false, false) => "",
            }
        ),
        ports: ports.clone(),
        counter: rule_counter(index, Line::New),
    };
    let established_line = ListLine {
        kind: LineKind::Rule { name: rule.name.clone(), line: Line::Established },
        target: "ACCEPT",
        prot,
        source: new_dst,
        destination: new_src,
        matches: format!("{} state ESTABLISHED", service_text(policy, rule, &protocols, true)),
        ports,
        counter: rule_counter(index, Line::Established),
    };
    // ICMP other than echo is stateless: such a rule has no returns to list, nor has one
    // with `returns = false`, nor a trap.
    let has_returns = rule.returns
        && rule.trap.is_none()
        && rule.services.iter().any(|s| !matches!(s, Service::Icmp { kind } if *kind != ICMP_ECHO_REQUEST));
    (new_line, has_returns.then_some(established_line))
}

/// A rule's protocols, each once, in the order of its services.
fn rule_protocols(rule: &Rule) -> Vec<u8> {
    rule.services.iter().map(Service::protocol).fold(Vec::new(), |mut v, p| {
        if !v.contains(&p) {
            v.push(p);
        }
        v
    })
}

/// A rule's match column before its state, protocol by protocol: the ports of tcp and
/// udp, icmp's types; `established`: as the rule's returns carry them.
fn service_text(policy: &Policy, rule: &Rule, protocols: &[u8], established: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    for p in protocols {
        if *p == PROTO_ICMP {
            parts.extend(icmp_text(policy, rule, established));
            continue;
        }
        let services: Vec<&Service> = rule.services.iter().filter(|s| s.protocol() == *p).collect();
        let ports: Vec<String> = services.iter().filter_map(|s| s.iptables_ports()).collect();
        // A returning packet carries the service port as its source port when the
        // flow was opened towards the service.
        let (one, many) = if established { ("spt", "sports") } else { ("dpt", "dports") };
        match services.as_slice() {
            [Service::Range { .. }] => parts.push(format!("{} {one}s:{}", proto_name(*p), ports[0])),
            [_] => parts.push(format!("{} {one}:{}", proto_name(*p), ports[0])),
            _ => parts.push(format!("{} multiport {many} {}", proto_name(*p), ports.join(","))),
        }
    }
    parts.join(" ")
}

/// icmp's part of a rule's match column: its types, then the ICMPv6 types that mean the
/// same when the rule has IPv6 peers.
fn icmp_text(policy: &Policy, rule: &Rule, established: bool) -> Vec<String> {
    // Only echo flows have returns: the replies.
    let kinds: Vec<u8> = if established {
        vec![ICMP_ECHO_REPLY]
    } else {
        rule.services
            .iter()
            .filter_map(|s| match s {
                Service::Icmp { kind } => Some(*kind),
                _ => None,
            })
            .collect()
    };
    let text = |ks: &[u8]| ks.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
    let mut parts = vec![format!("icmptype {}", text(&kinds))];
    // What the same rule matches for its IPv6 peers.
    let v6 = policy.address6.is_some()
        && (rule.peers.iter().any(|p| *p == Prefix::ANY || p.is_v6()) || !rule.names.is_empty());
    let kinds6: Vec<u8> = kinds.iter().filter_map(|k| icmpv6_equivalent(*k)).collect();
    if v6 && !kinds6.is_empty() {
        parts.push(format!("icmpv6type {}", text(&kinds6)));
    }
    parts
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{compile::tests::POLICY, policy::parse};

    #[test]
    fn the_listing_shows_ipv6_lines_only_with_address6() {
        let policy = parse(POLICY, Path::new("p.toml")).unwrap();
        let ids = Ids::assign(&policy, &Ids::default());
        let names: Vec<String> =
            listing(&policy, &ids)[0].lines.iter().map(|l| l.kind.name().to_owned()).collect();
        assert!(names.contains(&"icmpv6-nd".to_string()) && names.contains(&"icmpv6-ptb".to_string()));
        assert!(!names.contains(&"ipv6".to_string()));
        let v4_only = parse("[host]\naddress = \"198.51.100.1\"\n", Path::new("p.toml")).unwrap();
        let ids = Ids::assign(&v4_only, &Ids::default());
        let names: Vec<String> =
            listing(&v4_only, &ids)[0].lines.iter().map(|l| l.kind.name().to_owned()).collect();
        assert!(names.contains(&"ipv6".to_string()) && !names.contains(&"icmpv6-nd".to_string()));
    }

    #[test]
    fn the_dhcp_lines_go_with_the_switch_and_a_rule_may_be_named_dhcp() {
        let text = "[host]\naddress = \"198.51.100.1\"\n[[rule]]\nname = \"dhcp\"\ndirection = \"in\"\nprotocols = [\"udp\"]\nport = 67\npeers = \"any\"\n";
        let policy = parse(text, Path::new("p.toml")).unwrap();
        let ids = Ids::assign(&policy, &Ids::default());
        let chains = listing(&policy, &ids);
        for chain in &chains[..2] {
            let kinds: Vec<&LineKind> =
                chain.lines.iter().filter(|l| l.kind.name() == "dhcp").map(|l| &l.kind).collect();
            assert!(kinds.contains(&&LineKind::Builtin(Builtin::Dhcp)), "{:?}", chain.chain);
            let line = chain.lines.iter().find(|l| l.kind == LineKind::Builtin(Builtin::Dhcp)).unwrap();
            assert_eq!((line.target, line.counter), ("ACCEPT", builtin_counter(chain.chain, Builtin::Dhcp)));
        }
        // The rule's own lines are under its name too, told apart by their kind.
        assert!(
            chains[0].lines.iter().any(|l| matches!(&l.kind, LineKind::Rule { name, .. } if name == "dhcp"))
        );
        let off =
            parse(&text.replace("\n[[rule]]", "\ndhcp = false\n[[rule]]"), Path::new("p.toml")).unwrap();
        let chains = listing(&off, &ids);
        assert!(chains.iter().all(|c| !c.lines.iter().any(|l| l.kind == LineKind::Builtin(Builtin::Dhcp))));
    }

    #[test]
    fn the_listing_is_in_the_programs_order() {
        let policy = parse(POLICY, Path::new("p.toml")).unwrap();
        let ids = Ids::assign(&policy, &Ids::default());
        let chains = listing(&policy, &ids);
        let names = |chain: usize| -> Vec<String> {
            let mut names: Vec<String> =
                chains[chain].lines.iter().map(|l| l.kind.name().to_owned()).collect();
            names.dedup();
            names
        };
        // The parse's lines (where the blocklist's go after `invalid`), the later fragments
        // decided then, INPUT's anti-spoof sources, what IPv6 needs, the anti-spoof
        // destinations (not our address). The DHCP client's exchange comes before the
        // anti-spoof lists, which it skips.
        let fragments = ["invalid-fragment", "fragment-orphan"];
        assert_eq!(
            names(0)[..10],
            [
                ["non-ip", "ethertype", "invalid"].as_slice(),
                &fragments,
                &["dhcp", "antispoof", "icmpv6-nd", "icmpv6-ptb", "antispoof"]
            ]
            .concat()
        );
        // OUTPUT: what IPv6 needs leaves from link-local addresses, before the check of our source.
        assert_eq!(
            names(1)[..9],
            [
                ["non-ip", "ethertype", "invalid"].as_slice(),
                &fragments,
                &["dhcp", "icmpv6-nd", "icmpv6-ptb", "antispoof-source"]
            ]
            .concat()
        );
        for chain in &chains[..2] {
            let ethertype =
                chain.lines.iter().find(|l| l.kind == LineKind::Builtin(Builtin::OtherEthertype)).unwrap();
            assert_eq!(
                (ethertype.target, ethertype.counter),
                ("DROP", builtin_counter(chain.chain, Builtin::OtherEthertype))
            );
        }
    }

    #[test]
    fn ranges_are_listed_as_iptables_lists_them_and_single_ports_as_before() {
        let rule = |name: &str, ports: &str| {
            format!(
                "[[rule]]\nname = \"{name}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\n{ports}\npeers = \"any\"\n"
            )
        };
        let text = format!(
            "[host]\naddress = \"198.51.100.1\"\n{}{}{}{}",
            rule("one", "port = 22"),
            rule("two", "ports = [80, 443]"),
            rule("high", "port = \"1024:65535\"").replace("\"any\"", "[\"192.0.2.1\"]"),
            rule("mixed", "ports = [81, 444, \"6000-6010\"]")
        );
        let policy = parse(&text, Path::new("p.toml")).unwrap();
        let chains = listing(&policy, &Ids::assign(&policy, &Ids::default()));
        let line = |chain: usize, name: &str| {
            chains[chain].lines.iter().find(|l| l.kind.name() == name).unwrap().clone()
        };
        assert_eq!(line(0, "one").matches, "tcp dpt:22 state NEW,ESTABLISHED");
        assert_eq!(line(0, "two").matches, "tcp multiport dports 80,443 state NEW,ESTABLISHED");
        assert_eq!(line(0, "high").matches, "tcp dpts:1024:65535 state NEW,ESTABLISHED");
        assert_eq!(line(1, "high").matches, "tcp spts:1024:65535 state ESTABLISHED");
        assert_eq!(line(0, "mixed").matches, "tcp multiport dports 81,444,6000:6010 state NEW,ESTABLISHED");
        assert_eq!(line(1, "mixed").matches, "tcp multiport sports 81,444,6000:6010 state ESTABLISHED");
        // `list --json`: the ports of a rule with a range, nothing more for the others.
        let json = |chain: usize, name: &str| serde_json::to_value(line(chain, name)).unwrap();
        assert_eq!(json(0, "mixed")["ports"], serde_json::json!([[81, 81], [444, 444], [6000, 6010]]));
        assert_eq!(json(1, "high")["ports"], serde_json::json!([[1024, 65535]]));
        assert!(json(0, "two").get("ports").is_none());
    }
}
