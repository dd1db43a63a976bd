//! A policy compiled into what the maps must hold, and into the listing's lines.
//!
//! This is all the per-policy work; the kernel then does lookups only.
//!
//! # Layout
//!
//! - this file: the stable [`Ids`] of rules and anti-spoof entries, the [`MapPlan`] that
//!   [`plan`] makes, and the [`LineKind`] that names each counted line;
//! - `listing`: the listing's chains and lines, in the order the programs apply them;
//! - `intervals`: port ranges cut into the intervals the kernel looks ports up by;
//! - `cells`: the anti-spoof lists' answer for each /8, read before their tries;
//! - `exact`: the exact-peer hash's entries, sorted.
mod cells;
mod exact;
mod intervals;
mod listing;
mod skips;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

use firewall_common::{
    ALLOW_CONNECTIONS_SHIFT, ALLOW_KEY_SERVICE_BITS, ALLOW_LIMITED, ALLOW_LOG, ALLOW_ONE_WAY, ALLOW_OWNER,
    ALLOW_PER_SOURCE, ALLOW_RELATED, ALLOW_TRAP, ANTISPOOF_COUNTER_BASE, ANY_PEER, Addr, AllowKey,
    AllowValue, Builtin, CONFIG_BLOCKS_OFFENDERS, CONFIG_DHCP, CONFIG_HAS_BLOCKS, CONFIG_HAS_PREFIXES,
    CONFIG_HAS_RANGES, CONFIG_IPV6, CONFIG_LEARN_DNS, CONFIG_MORE_ADDRESSES, CONFIG_READY, CONFIG_TCP_STRICT,
    Config, Line, MAX_ANTISPOOF, MAX_RULES, PerSourceLimit, RuleUid, TokenBucket, allow_connections,
    rule_counter, v4_mapped,
};
use serde::{Deserialize, Serialize};

pub use self::cells::{CELLS_PER_LIST, antispoof_cells};
pub use self::exact::ExactEntries;
use self::intervals::PortIntervals;
pub use self::intervals::first_port;
pub(crate) use self::listing::ANYWHERE;
pub use self::listing::{ListChain, ListLine, chain_name, listing};
pub use self::skips::service_skips;
use crate::{
    FastMap,
    policy::{Limit, PerSource, Policy, Prefix, Rule, Service, to_addr},
};

/// Stable ids. A rule keeps its index, and with it its two counters, its token bucket and
/// its flows, for as long as its name stays in the policy; an anti-spoof entry keeps its
/// counter for as long as it stays in its list. So a reload keeps every counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ids {
    pub rules: BTreeMap<String, u32>,
    /// Each anti-spoof entry's counter id.
    pub antispoof: BTreeMap<AntispoofEntry, u32>,
}

/// One of the two anti-spoof lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AntispoofList {
    /// `[antispoof] sources`: dropped coming in from them.
    Sources,
    /// `[antispoof] destinations`: dropped coming in to them.
    Destinations,
}

impl AntispoofList {
    /// How the listing's match column, the metrics' `line` label and the state name it.
    pub fn name(self) -> &'static str {
        match self {
            AntispoofList::Sources => "source",
            AntispoofList::Destinations => "destination",
        }
    }
}

/// An anti-spoof entry: what keeps its counter id from one reload to the next. Written in
/// the state as `"source 10.0.0.0/8"`, as every version has written it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AntispoofEntry {
    pub list: AntispoofList,
    pub prefix: Prefix,
}

impl AntispoofEntry {
    pub fn source(prefix: Prefix) -> AntispoofEntry {
        AntispoofEntry { list: AntispoofList::Sources, prefix }
    }

    pub fn destination(prefix: Prefix) -> AntispoofEntry {
        AntispoofEntry { list: AntispoofList::Destinations, prefix }
    }
}

impl fmt::Display for AntispoofEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.list.name(), self.prefix)
    }
}

impl Serialize for AntispoofEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AntispoofEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let entry = |list, prefix: &str| {
            Prefix::parse(prefix)
                .map(|prefix| AntispoofEntry { list, prefix })
                .map_err(serde::de::Error::custom)
        };
        match text.split_once(' ') {
            Some(("source", prefix)) => entry(AntispoofList::Sources, prefix),
            Some(("destination", prefix)) => entry(AntispoofList::Destinations, prefix),
            _ => Err(serde::de::Error::custom(format!("not an anti-spoof entry: {text:?}"))),
        }
    }
}

/// The lowest id in `range` that `taken` does not hold.
fn lowest_free(range: std::ops::Range<u32>, taken: &mut Vec<u32>) -> u32 {
    let id = range.clone().find(|id| !taken.contains(id)).expect("the policy's limits keep ids in range");
    taken.push(id);
    id
}

impl Ids {
    /// Ids for `policy`, keeping those `previous` gave to the same names.
    pub fn assign(policy: &Policy, previous: &Ids) -> Ids {
        let mut ids = Ids::default();
        let mut taken: Vec<u32> =
            policy.rules.iter().filter_map(|r| previous.rules.get(&r.name).copied()).collect();
        for rule in &policy.rules {
            let id = match previous.rules.get(&rule.name) {
                Some(id) => *id,
                None => lowest_free(0..MAX_RULES, &mut taken),
            };
            ids.rules.insert(rule.name.clone(), id);
        }
        let entries: Vec<AntispoofEntry> = policy
            .antispoof_sources
            .iter()
            .map(|p| AntispoofEntry::source(*p))
            .chain(policy.antispoof_destinations.iter().map(|p| AntispoofEntry::destination(*p)))
            .collect();
        let mut taken: Vec<u32> = entries.iter().filter_map(|e| previous.antispoof.get(e).copied()).collect();
        for entry in entries {
            let id = match previous.antispoof.get(&entry) {
                Some(id) => *id,
                None => {
                    lowest_free(ANTISPOOF_COUNTER_BASE..ANTISPOOF_COUNTER_BASE + MAX_ANTISPOOF, &mut taken)
                }
            };
            ids.antispoof.insert(entry, id);
        }
        ids
    }

    /// The counter ids `self` uses that `previous` did not: they start from zero.
    pub fn new_counters(&self, previous: &Ids) -> Vec<u32> {
        let mut fresh = Vec::new();
        for (name, rule) in &self.rules {
            if previous.rules.get(name) != Some(rule) {
                fresh.extend([rule_counter(*rule, Line::New), rule_counter(*rule, Line::Established)]);
            }
        }
        for (entry, id) in &self.antispoof {
            if previous.antispoof.get(entry) != Some(id) {
                fresh.push(*id);
            }
        }
        fresh
    }

    /// The name of the rule numbered `index`, if one is.
    pub fn rule_name(&self, index: u32) -> Option<&str> {
        self.rules.iter().find(|(_, i)| **i == index).map(|(name, _)| name.as_str())
    }

    pub fn rule(&self, name: &str) -> u32 {
        self.rules[name]
    }

    /// Whether these ids number every rule and anti-spoof entry of `policy`.
    pub fn number(&self, policy: &Policy) -> bool {
        policy.rules.iter().all(|r| self.rules.contains_key(&r.name))
            && policy
                .antispoof_sources
                .iter()
                .all(|p| self.antispoof.contains_key(&AntispoofEntry::source(*p)))
            && policy
                .antispoof_destinations
                .iter()
                .all(|p| self.antispoof.contains_key(&AntispoofEntry::destination(*p)))
    }
}

/// Everything the maps must hold for a policy.
#[derive(Debug, Default)]
pub struct MapPlan {
    pub config: Config,
    /// Single peer addresses: the hash map.
    pub allow_exact: ExactEntries,
    /// Prefixes: the LPM trie, by (key prefix length, key).
    pub allow_prefix: FastMap<(u32, AllowKey), AllowValue>,
    /// The key prefix lengths `allow_prefix` uses, longest first.
    pub prefix_lens: Vec<u32>,
    /// Prefix → counter id.
    pub antispoof_sources: BTreeMap<Prefix, u32>,
    pub antispoof_destinations: BTreeMap<Prefix, u32>,
    /// Rule index → bucket, for every limited rule.
    pub token_buckets: BTreeMap<u32, TokenBucket>,
    /// Rule index → its `per_source` limit, for every rule with one.
    pub per_source_limits: BTreeMap<u32, PerSourceLimit>,
    /// Each uid of each rule with `uids` (`RULE_UIDS`).
    pub rule_uids: BTreeSet<RuleUid>,
    /// Every address of the host's, both families (`HOST_ADDRESSES`). The programs ask
    /// it only with `CONFIG_MORE_ADDRESSES`, but it always holds them all, so that a
    /// reload to a policy with more needs only add.
    pub host_addresses: BTreeSet<Addr>,
    /// `PORT_INTERVALS`' values that are not zero (by index): none without ranges.
    pub port_lanes: BTreeMap<u32, u64>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn masked(mut key: AllowKey, len: u32) -> AllowKey {
    let bits = len - ALLOW_KEY_SERVICE_BITS;
    let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
    key.peer = (u128::from_be_bytes(key.peer) & mask).to_be_bytes();
    key
}

impl MapPlan {
    /// What the kernel's allow-list lookup would find for `key` (its port that of a
    /// packet): the exact entry, else the longest prefix.
    pub fn admits(&self, key: &AllowKey) -> Option<AllowValue> {
        let key =
            &AllowKey { port: first_port(&self.port_lanes, key.direction, key.protocol, key.port), ..*key };
        if let Some(value) = self.allow_exact.get(key) {
            return Some(*value);
        }
        self.prefix_lens
            .iter()
            .find_map(|&len| self.allow_prefix.get(&(len, masked(*key, len))).copied())
            .or_else(|| self.allow_exact.get(&AllowKey { peer: ANY_PEER, ..*key }).copied())
    }

    /// Whether a rule has `per_source.connections`: the programs must know them.
    pub fn has_connections(&self) -> bool {
        self.allow_exact.values().chain(self.allow_prefix.values()).any(|v| allow_connections(v.flags) != 0)
    }
}

/// The map contents `policy` wants, with the rules and entries numbered by `ids`.
pub fn plan(policy: &Policy, ids: &Ids) -> MapPlan {
    let mut plan = MapPlan { config: config(policy), ..MapPlan::default() };
    plan.host_addresses = policy.host_addresses().into_iter().map(to_addr).collect();
    let intervals = PortIntervals::of(policy);
    let mut exact = Vec::new();
    for rule in &policy.rules {
        plan_rule(&mut plan, &mut exact, rule, ids.rule(&rule.name), policy.address6.is_some(), &intervals);
    }
    plan.allow_exact = exact.into_iter().collect();
    plan.port_lanes = intervals.lanes();
    if !plan.port_lanes.is_empty() {
        plan.config.flags |= CONFIG_HAS_RANGES;
    }
    for prefix in &policy.antispoof_sources {
        plan.antispoof_sources.insert(*prefix, ids.antispoof[&AntispoofEntry::source(*prefix)]);
    }
    for prefix in &policy.antispoof_destinations {
        plan.antispoof_destinations.insert(*prefix, ids.antispoof[&AntispoofEntry::destination(*prefix)]);
    }
    if !plan.allow_prefix.is_empty() {
        plan.config.flags |= CONFIG_HAS_PREFIXES;
    }
    let mut lens: Vec<u32> = plan.allow_prefix.keys().map(|(len, _)| *len).collect();
    lens.sort_unstable_by(|a, b| b.cmp(a));
    lens.dedup();
    plan.prefix_lens = lens;
    plan
}

/// The config map's entry: the host's addresses and the flows' timeouts.
fn config(policy: &Policy) -> Config {
    let c = &policy.conntrack;
    Config {
        address: v4_mapped(policy.address.octets()),
        address6: policy.address6.map_or([0; 16], |a| a.octets()),
        flags: CONFIG_READY
            | if policy.address6.is_some() { CONFIG_IPV6 } else { 0 }
            | if policy.dhcp { CONFIG_DHCP } else { 0 }
            | if policy.conntrack.tcp_loose { 0 } else { CONFIG_TCP_STRICT }
            | if policy.dns.learn && !policy.names().is_empty() { CONFIG_LEARN_DNS } else { 0 }
            | if policy.more_addresses.is_empty() && policy.more_addresses6.is_empty() {
                0
            } else {
                CONFIG_MORE_ADDRESSES
            },
        fragment_timeout_s: c.fragment_timeout.as_secs() as u32,
        tcp_established_timeout_ns: nanos(c.tcp_established_timeout),
        tcp_fin_timeout_ns: nanos(c.tcp_fin_timeout),
        tcp_rst_timeout_ns: nanos(c.tcp_rst_timeout),
        udp_timeout_ns: nanos(c.udp_timeout),
        icmp_timeout_ns: nanos(c.icmp_timeout),
        tcp_syn_sent_timeout_ns: nanos(c.tcp_syn_sent_timeout),
        tcp_syn_recv_timeout_ns: nanos(c.tcp_syn_recv_timeout),
    }
}

/// One rule's allow-list entries, a service and peer each (two for `any` when the
/// policy has `address6`; a range, one for each interval it covers), and its token bucket
/// if it is limited. `index` is its id. Its exact entries go to `exact`, for
/// [`ExactEntries`] to sort once every rule's are in.
fn plan_rule(
    plan: &mut MapPlan,
    exact: &mut Vec<(AllowKey, AllowValue)>,
    rule: &Rule,
    index: u32,
    ipv6: bool,
    intervals: &PortIntervals,
) {
    let flags = if rule.limit.is_some() { ALLOW_LIMITED } else { 0 }
        | if rule.related { ALLOW_RELATED } else { 0 }
        | if rule.per_source.is_some_and(|p| p.limit.is_some()) { ALLOW_PER_SOURCE } else { 0 }
        | rule.per_source.and_then(|p| p.connections).map_or(0, |n| u32::from(n) << ALLOW_CONNECTIONS_SHIFT)
        | if rule.uids.is_empty() { 0 } else { ALLOW_OWNER }
        | if rule.log { ALLOW_LOG } else { 0 }
        | if rule.returns { 0 } else { ALLOW_ONE_WAY }
        | if rule.trap.is_some() { ALLOW_TRAP } else { 0 };
    for &(first, last) in &rule.uids {
        plan.rule_uids.extend((first..=last).map(|uid| RuleUid { rule: index, uid }));
    }
    let value = AllowValue { rule: index, flags };
    // Most peers are single addresses: room for them all at once, not by doubling.
    exact.reserve(rule.services.len() * rule.all_peers().count());
    for service in &rule.services {
        // A range's intervals are the same for every peer: found once.
        let range_firsts = match service {
            Service::Icmp { .. } => None,
            _ => Some(intervals.firsts(rule.direction, service)),
        };
        for peer in rule.all_peers() {
            // `any` is anyone of either family: one entry, unless the service is ICMP,
            // whose IPv6 peers speak ICMPv6.
            let families: &[bool] = match (*peer == Prefix::ANY, ipv6) {
                (true, true) => &[false, true],
                (true, false) => &[false],
                (false, _) => &[peer.is_v6()],
            };
            for &v6 in families {
                // The policy refuses IPv6 peers for ICMP types that only IPv4 has.
                let Some((protocol, port)) = service.key_for(v6) else { continue };
                let ports = range_firsts.as_deref().unwrap_or(std::slice::from_ref(&port));
                let (addr, len) = if *peer == Prefix::ANY { (ANY_PEER, 128) } else { peer.to_addr() };
                for &port in ports {
                    let key = AllowKey { direction: rule.direction as u8, protocol, port, peer: addr };
                    // Single peers and `any` go in the hash, the rest in the trie.
                    if len == 128 {
                        exact.push((key, value));
                    } else {
                        plan.allow_prefix.insert((ALLOW_KEY_SERVICE_BITS + len, key), value);
                    }
                }
            }
        }
    }
    if let Some(Limit { interval, burst, .. }) = rule.limit {
        let interval_ns = nanos(interval);
        plan.token_buckets
            .insert(index, TokenBucket { tat: 0, interval_ns, burst_ns: interval_ns * u64::from(burst) });
    }
    // A trap's block is an offender's, written by the same code: its entry has the
    // duration alone (a trap admits nothing, so it has no `per_source` of its own).
    if let Some(block) = rule.trap {
        plan.per_source_limits
            .insert(index, PerSourceLimit { block_ns: nanos(block), ..PerSourceLimit::default() });
        plan.config.flags |= CONFIG_HAS_BLOCKS | CONFIG_BLOCKS_OFFENDERS;
    }
    if let Some(PerSource { limit, block, prefix, prefix6, .. }) = rule.per_source {
        // A rule with `connections` alone has its masks here, and no rate (ALLOW_PER_SOURCE
        // unset: never asked).
        let (interval_ns, burst) = limit.map_or((0, 0), |l| (nanos(l.interval), l.burst));
        let block_ns = block.map_or(0, nanos);
        // An IPv4 source is mapped: its prefix is 96 bits longer.
        let mask = |len: u8| if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) }.to_be_bytes();
        plan.per_source_limits.insert(
            index,
            PerSourceLimit {
                interval_ns,
                burst_ns: interval_ns * u64::from(burst),
                block_ns,
                mask4: mask(96 + prefix),
                mask6: mask(prefix6),
            },
        );
        // The programs write offenders into the blocklist: it must be looked in.
        if block_ns != 0 {
            plan.config.flags |= CONFIG_HAS_BLOCKS | CONFIG_BLOCKS_OFFENDERS;
        }
    }
}

/// What a listing line counts. Its name (the listing's first column, the metrics' `rule`
/// label, the drop events' `RULE=`) is [`LineKind::name`], defined here once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A built-in line: `non-ip`, `invalid`, `policy`, … ([`Builtin::name`]).
    Builtin(Builtin),
    /// An anti-spoof entry: `antispoof`.
    Antispoof(AntispoofEntry),
    /// A `firewall block` entry: `blocklist`, with its prefix as listed.
    Blocklist(String),
    /// A named list (`firewall block --from`): `blocklist`, with the list's name.
    NamedList(String),
    /// One of a rule's two lines, under the rule's name.
    Rule { name: String, line: Line },
}

impl LineKind {
    pub fn name(&self) -> &str {
        match self {
            LineKind::Builtin(line) => line.name(),
            LineKind::Antispoof(_) => "antispoof",
            LineKind::Blocklist(_) | LineKind::NamedList(_) => "blocklist",
            LineKind::Rule { name, .. } => name,
        }
    }

    /// The entry an anti-spoof or blocklist line stands for: its prefix, or a named
    /// list's `list:NAME` (drop events' `MATCH=`).
    pub fn entry(&self) -> Option<String> {
        match self {
            LineKind::Antispoof(entry) => Some(entry.prefix.to_string()),
            LineKind::Blocklist(prefix) => Some(prefix.clone()),
            LineKind::NamedList(name) => Some(format!("list:{name}")),
            LineKind::Builtin(_) | LineKind::Rule { .. } => None,
        }
    }

    /// Whether a rule may not be named `name`: the built-in lines' names, and every name
    /// of the anti-spoof and INVALID families, present and to come. (`blocklist` and
    /// `dhcp` are not reserved: policies named rules so before those lines came, and the
    /// lines' kinds, not their names, tell them apart.)
    pub fn reserved(name: &str) -> bool {
        name.starts_with("antispoof")
            || name.starts_with("invalid")
            || Builtin::ALL.iter().any(|line| line.reserved() && line.name() == name)
    }
}

impl Serialize for LineKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use firewall_common::{
        Direction, ICMPV6_ECHO_REQUEST, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, V4_MAPPED_BITS,
    };

    use super::*;
    use crate::policy::{parse, to_addr};

    pub(super) const POLICY: &str = r#"
[host]
address = "198.51.100.1"
address6 = "2001:db8::1"
[[rule]]
name = "ssh"
direction = "in"
protocols = ["tcp"]
port = 22
peers = ["203.0.113.7", "192.0.2.0/24", "2001:db8:1::7", "2001:db8:2::/48"]
[[rule]]
name = "ping"
direction = "in"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
"#;

    #[test]
    fn anti_spoof_ids_keep_the_state_as_every_version_wrote_it() {
        let json =
            r#"{"rules":{"ssh-in":0},"antispoof":{"destination 224.0.0.0/4":1025,"source 10.0.0.0/8":1024}}"#;
        let ids: Ids = serde_json::from_str(json).unwrap();
        let ten = Prefix::parse("10.0.0.0/8").unwrap();
        assert_eq!(ids.antispoof[&AntispoofEntry::source(ten)], 1024);
        assert!(!ids.antispoof.contains_key(&AntispoofEntry::destination(ten)));
        let written: serde_json::Value = serde_json::to_value(&ids).unwrap();
        assert_eq!(written, serde_json::from_str::<serde_json::Value>(json).unwrap());
        let wrong = serde_json::from_str::<Ids>(r#"{"rules":{},"antispoof":{"sauce 10.0.0.0/8":1}}"#);
        assert!(wrong.unwrap_err().to_string().contains("not an anti-spoof entry: \"sauce 10.0.0.0/8\""));
    }

    #[test]
    fn both_families_share_the_maps_ipv4_mapped() {
        let policy = parse(POLICY, Path::new("p.toml")).unwrap();
        let ids = Ids::assign(&policy, &Ids::default());
        let plan = plan(&policy, &ids);
        assert_eq!(plan.config.flags & CONFIG_IPV6, CONFIG_IPV6);
        // The programs read this bit as a 0 the verifier does not know.
        assert_eq!(plan.config.flags & firewall_common::CONFIG_NEVER_SET, 0);
        assert_eq!(plan.config.fragment_timeout_s, 5);
        assert_eq!(plan.config.address, to_addr("198.51.100.1".parse().unwrap()));
        let key = |protocol, port, peer: &str| AllowKey {
            direction: Direction::In as u8,
            protocol,
            port,
            peer: to_addr(peer.parse().unwrap()),
        };
        // Single peers of both families in the hash; prefixes in the trie, at 32 bits of
        // service plus the prefix in the 128-bit space (IPv4: 96 + its length).
        assert!(plan.allow_exact.contains_key(&key(PROTO_TCP, 22, "203.0.113.7")));
        assert!(plan.allow_exact.contains_key(&key(PROTO_TCP, 22, "2001:db8:1::7")));
        assert!(
            plan.allow_prefix.contains_key(&(
                ALLOW_KEY_SERVICE_BITS + V4_MAPPED_BITS + 24,
                key(PROTO_TCP, 22, "192.0.2.0")
            ))
        );
        assert!(
            plan.allow_prefix
                .contains_key(&(ALLOW_KEY_SERVICE_BITS + 48, key(PROTO_TCP, 22, "2001:db8:2::")))
        );
        assert_eq!(plan.prefix_lens, vec![ALLOW_KEY_SERVICE_BITS + 120, ALLOW_KEY_SERVICE_BITS + 48]);
        // What the kernel's lookup would find.
        assert!(plan.admits(&key(PROTO_TCP, 22, "192.0.2.9")).is_some());
        assert!(plan.admits(&key(PROTO_TCP, 22, "2001:db8:2:ffff::1")).is_some());
        assert!(plan.admits(&key(PROTO_TCP, 22, "2001:db8:3::1")).is_none());
        // `any` for ICMP is two entries: ICMP echo for IPv4 peers, ICMPv6 echo for IPv6 ones.
        let any =
            |protocol, port| AllowKey { direction: Direction::In as u8, protocol, port, peer: ANY_PEER };
        assert!(plan.allow_exact.contains_key(&any(PROTO_ICMP, 8)));
        assert!(plan.allow_exact.contains_key(&any(PROTO_ICMPV6, u16::from(ICMPV6_ECHO_REQUEST))));
    }

    #[test]
    fn the_first_address_of_each_family_is_configured_and_every_one_listed() {
        let addr = |text: &str| to_addr(text.parse().unwrap());
        // One of each: the map holds them, the programs need not ask it.
        let policy = parse(POLICY, Path::new("p.toml")).unwrap();
        let one = plan(&policy, &Ids::assign(&policy, &Ids::default()));
        assert_eq!(one.config.flags & CONFIG_MORE_ADDRESSES, 0);
        assert_eq!(one.host_addresses, BTreeSet::from([addr("198.51.100.1"), addr("2001:db8::1")]));
        // More of one family: the first in the configuration, all in the map, and the flag.
        let text =
            POLICY.replace("address = \"198.51.100.1\"", "address = [\"198.51.100.1\", \"198.51.100.2\"]");
        let policy = parse(&text, Path::new("p.toml")).unwrap();
        let more = plan(&policy, &Ids::assign(&policy, &Ids::default()));
        assert_eq!(more.config.flags & CONFIG_MORE_ADDRESSES, CONFIG_MORE_ADDRESSES);
        assert_eq!(more.config.address, addr("198.51.100.1"));
        assert_eq!(more.config.address6, addr("2001:db8::1"));
        assert_eq!(
            more.host_addresses,
            BTreeSet::from([addr("198.51.100.1"), addr("198.51.100.2"), addr("2001:db8::1")])
        );
    }
}
