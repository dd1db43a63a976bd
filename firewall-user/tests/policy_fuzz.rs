//! The policy parser under fuzzing: whatever the text, `policy::parse` answers and never
//! panics; every refusal is one line, `FILE:LINE:COL: message`, placed inside the text,
//! with a message written for people (no Rust Debug dump, no internal type name); every
//! policy it accepts compiles (`Ids::assign`, `plan`, `listing`) within the kernel's
//! limits; the same text always gets the same answer.
//!
//! The inputs: arbitrary text and bytes; token soups of TOML's syntax and the policy's
//! words; tables of every key with any value; valid policies generated from the grammar
//! (which must be accepted), the same with noise (values replaced by valid, invalid,
//! wrongly typed or IPv6 ones, entries deleted or doubled, tables doubled), and with
//! exactly one fault (which must be refused at that fault's line and column); mutations
//! of `examples/tight.toml`, and that file cut at every character; the rule and
//! anti-spoof limits, exactly and one over.
//!
//! Each property runs 512 cases (about a second in all); `PROPTEST_CASES=N` sets another
//! number for every one. Needs no root. The checks themselves are in `policy_checks/`,
//! shared with the cargo-fuzz target in `fuzz/`.
mod policy_checks;

use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
};

use firewall_common::{MAX_ANTISPOOF, MAX_RULES};
use firewall_user::policy::PolicyError;
use policy_checks::{FILE, check, check_error};
use proptest::{
    prelude::*,
    sample::{Index, select},
    test_runner::FileFailurePersistence,
};

const TIGHT: &str = include_str!("../../examples/tight.toml");

/// `default` cases, or `PROPTEST_CASES` when it is set.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    // Failures are kept beside this file (policy_fuzz.regressions) and replayed first.
    let failure_persistence = Some(Box::new(FileFailurePersistence::WithSource("regressions")) as _);
    ProptestConfig { cases, failure_persistence, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------
// Policies as documents: tables of `key = value` lines, rendered with the place of
// every header, key, value and list item known, so that a fault's place can be checked.

/// A TOML basic string holding `text`.
fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value as written after `key = `: TOML text, or an array of TOML texts.
#[derive(Clone, Debug)]
enum Value {
    Text(String),
    List { items: Vec<String>, one_per_line: bool },
}

#[derive(Clone, Debug)]
struct Entry {
    key: String,
    value: Value,
}

fn text(key: &str, value: impl Into<String>) -> Entry {
    Entry { key: key.into(), value: Value::Text(value.into()) }
}

fn list(key: &str, items: Vec<String>, one_per_line: bool) -> Entry {
    Entry { key: key.into(), value: Value::List { items, one_per_line } }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Antispoof,
    Conntrack,
    Rule,
    Other,
}

/// What a generated rule is, for the faults that depend on it.
#[derive(Clone, Debug, Default)]
struct RuleMeta {
    /// tcp or udp among its protocols.
    ports: bool,
    /// Its ICMP type, when icmp is among its protocols.
    icmp: Option<u8>,
}

impl RuleMeta {
    fn may_be_related(&self) -> bool {
        !self.ports && matches!(self.icmp, Some(3 | 11 | 12))
    }
}

#[derive(Clone, Debug)]
struct Table {
    header: String,
    kind: Kind,
    entries: Vec<Entry>,
    rule: RuleMeta,
}

impl Table {
    fn new(kind: Kind, entries: Vec<Entry>) -> Table {
        let header = match kind {
            Kind::Host => "[host]",
            Kind::Antispoof => "[antispoof]",
            Kind::Conntrack => "[conntrack]",
            Kind::Rule => "[[rule]]",
            Kind::Other => "[other]",
        };
        Table { header: header.into(), kind, entries, rule: RuleMeta::default() }
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    /// Sets `key` (replacing its value where it is, else as a new last entry); its index.
    fn set(&mut self, key: &str, value: Value) -> usize {
        match self.find(key) {
            Some(at) => {
                self.entries[at].value = value;
                at
            }
            None => {
                self.entries.push(Entry { key: key.into(), value });
                self.entries.len() - 1
            }
        }
    }

    fn set_text(&mut self, key: &str, value: &str) -> usize {
        self.set(key, Value::Text(value.into()))
    }

    fn remove(&mut self, key: &str) {
        self.entries.retain(|e| e.key != key);
    }

    fn items(&self, key: &str) -> Option<&Vec<String>> {
        match self.find(key).map(|at| &self.entries[at].value) {
            Some(Value::List { items, .. }) => Some(items),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Doc {
    tables: Vec<Table>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

/// Where each part of a rendered [`Doc`] is (1-based lines and columns, in characters).
#[derive(Debug, Default)]
struct Layout {
    headers: Vec<(Pos, usize)>,
    keys: Vec<Vec<Pos>>,
    values: Vec<Vec<Pos>>,
    items: Vec<Vec<Vec<Pos>>>,
}

impl Doc {
    fn render(&self) -> (String, Layout) {
        let mut lines: Vec<String> = Vec::new();
        let mut layout = Layout::default();
        for table in &self.tables {
            if !lines.is_empty() {
                lines.push(String::new());
            }
            lines.push(table.header.clone());
            layout.headers.push((Pos { line: lines.len(), column: 1 }, table.header.chars().count()));
            let (mut keys, mut values, mut items) = (vec![], vec![], vec![]);
            for entry in &table.entries {
                let lead = format!("{} = ", entry.key);
                let here = lines.len() + 1;
                keys.push(Pos { line: here, column: 1 });
                values.push(Pos { line: here, column: lead.chars().count() + 1 });
                match &entry.value {
                    Value::Text(value) => {
                        lines.push(format!("{lead}{value}"));
                        items.push(vec![]);
                    }
                    Value::List { items: list, one_per_line: false } => {
                        let mut line = format!("{lead}[");
                        let mut at = vec![];
                        for (i, item) in list.iter().enumerate() {
                            if i > 0 {
                                line.push_str(", ");
                            }
                            at.push(Pos { line: here, column: line.chars().count() + 1 });
                            line.push_str(item);
                        }
                        line.push(']');
                        lines.push(line);
                        items.push(at);
                    }
                    Value::List { items: list, one_per_line: true } => {
                        lines.push(format!("{lead}["));
                        let mut at = vec![];
                        for item in list {
                            lines.push(format!("    {item},"));
                            at.push(Pos { line: lines.len(), column: 5 });
                        }
                        lines.push("]".into());
                        items.push(at);
                    }
                }
            }
            layout.keys.push(keys);
            layout.values.push(values);
            layout.items.push(items);
        }
        let mut out = lines.join("\n");
        out.push('\n');
        (out, layout)
    }

    fn tables_of(&self, kind: Kind) -> Vec<usize> {
        (0..self.tables.len()).filter(|t| self.tables[*t].kind == kind).collect()
    }

    /// The table of `kind` (host, antispoof, conntrack), appended empty if there is none.
    fn table(&mut self, kind: Kind) -> usize {
        match self.tables_of(kind).first() {
            Some(t) => *t,
            None => {
                self.tables.push(Table::new(kind, vec![]));
                self.tables.len() - 1
            }
        }
    }

    fn rule_names(&self) -> Vec<String> {
        self.tables_of(Kind::Rule)
            .into_iter()
            .filter_map(|t| match self.tables[t].find("name").map(|e| &self.tables[t].entries[e].value) {
                Some(Value::Text(name)) => Some(name.trim_matches('"').to_string()),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Valid policies: every key, in every form the grammar allows, each table's keys in any
// order, the tables in any order; rules that never clash (unique names, no peer owned twice).

fn masked(addr: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { addr & (u32::MAX << (32 - len)) }
}

fn covers((net, len): (u32, u8), addr: u32) -> bool {
    masked(addr, len) == net
}

fn prefix_text((net, len): (u32, u8)) -> String {
    if len == 32 {
        quoted(&Ipv4Addr::from(net).to_string())
    } else {
        quoted(&format!("{}/{len}", Ipv4Addr::from(net)))
    }
}

/// The seed's anti-spoof destinations: a host address must be outside them when the
/// policy keeps the defaults.
const DEFAULT_DESTINATIONS: [(u32, u8); 6] = [
    (0xe000_0000, 4),
    (0xf000_0000, 5),
    (0x0000_0000, 8),
    (0x0101_0101, 32),
    (0xefff_ff00, 24),
    (0xffff_ffff, 32),
];

fn host_address() -> impl Strategy<Value = u32> {
    prop_oneof![
        select(vec![0xc633_6401_u32, 0xcb00_7109, 0xc000_02c8, 0x0a01_0203]),
        any::<u32>().prop_filter("a unicast address outside the default destinations", |a| {
            !DEFAULT_DESTINATIONS.iter().any(|d| covers(*d, *a))
        }),
    ]
}

/// A prefix with its host bits clear, `0.0.0.0/0` to a single address.
fn prefix(lengths: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = (u32, u8)> {
    (any::<u32>(), lengths).prop_map(|(addr, len)| (masked(addr, len), len))
}

fn unique_prefixes(
    lengths: std::ops::RangeInclusive<u8>,
    count: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<(u32, u8)>> {
    prop::collection::btree_set(prefix(lengths), count).prop_map(|s| s.into_iter().collect()).prop_shuffle()
}

fn host_table(address: u32) -> impl Strategy<Value = Table> {
    (
        prop::option::of(select(vec!["eth0", "enp3s0", "wlan0", "x", "abcdefghijklmno", "veth-fw.1"])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(move |(interface, dhcp)| {
            let mut entries = vec![text("address", quoted(&Ipv4Addr::from(address).to_string()))];
            entries.extend(interface.map(|i| text("interface", quoted(i))));
            entries.extend(dhcp.map(|on| text("dhcp", on.to_string())));
            entries
        })
        .prop_shuffle()
        .prop_map(|entries| Table::new(Kind::Host, entries))
}

fn antispoof_table(address: u32) -> impl Strategy<Value = Table> {
    let destinations = unique_prefixes(0..=32, 0..12)
        .prop_map(move |list| list.into_iter().filter(|p| !covers(*p, address)).collect::<Vec<_>>());
    (
        prop::option::of((unique_prefixes(0..=32, 0..12), any::<bool>())),
        prop::option::of((destinations, any::<bool>())),
    )
        .prop_map(|(sources, destinations)| {
            let mut entries = vec![];
            for (key, list) in [("sources", sources), ("destinations", destinations)] {
                if let Some((list, one_per_line)) = list {
                    entries.push(self::list(key, list.into_iter().map(prefix_text).collect(), one_per_line));
                }
            }
            entries
        })
        .prop_shuffle()
        .prop_map(|entries| Table::new(Kind::Antispoof, entries))
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (1u64..=1_000_000, select(vec!["s", "m", "h", "d"])).prop_map(|(n, unit)| quoted(&format!("{n}{unit}"))),
        // The largest that fit: the kernel's nanoseconds saturate.
        1 => select(vec!["\"18446744073709551615s\"", "\"213503982334601d\""]).prop_map(String::from),
    ]
}

/// The `[conntrack]` keys that size a table, and those that are durations.
const SIZE_KEYS: [&str; 2] = ["max_entries", "max_half_open"];
const TIMEOUT_KEYS: [&str; 7] = [
    "tcp_established_timeout",
    "tcp_fin_timeout",
    "tcp_rst_timeout",
    "udp_timeout",
    "icmp_timeout",
    "tcp_syn_sent_timeout",
    "tcp_syn_recv_timeout",
];

fn conntrack_table() -> impl Strategy<Value = Table> {
    (
        prop::collection::vec(prop::option::of(1024i64..=16_777_216), 2),
        prop::collection::vec(prop::option::of(duration()), TIMEOUT_KEYS.len()),
    )
        .prop_map(|(sizes, durations)| {
            let mut entries = vec![];
            for (key, value) in SIZE_KEYS.into_iter().zip(sizes) {
                entries.extend(value.map(|n| text(key, n.to_string())));
            }
            let keys = TIMEOUT_KEYS;
            for (key, value) in keys.into_iter().zip(durations) {
                entries.extend(value.map(|v| text(key, v)));
            }
            entries
        })
        .prop_shuffle()
        .prop_map(|entries| Table::new(Kind::Conntrack, entries))
}

/// A rule before names and peers are made unique across the policy.
#[derive(Clone, Debug)]
struct RuleSpec {
    stem: String,
    direction: &'static str,
    protocols: Vec<&'static str>,
    ports: Vec<u16>,
    ports_as_list: bool,
    /// The ICMP type, and how it is written.
    icmp: Option<(u8, String)>,
    related: Option<bool>,
    /// `None`: `"any"`.
    peers: Option<Vec<(u32, u8)>>,
    one_per_line: bool,
    limit: Option<(String, Option<u32>)>,
    comment: Option<String>,
    order: Vec<Index>,
}

fn icmp_type() -> impl Strategy<Value = (u8, String)> {
    prop_oneof![
        select(vec![(8u8, "echo-request"), (0, "echo-reply"), (3, "destination-unreachable")])
            .prop_map(|(n, name)| (n, quoted(name))),
        any::<u8>().prop_map(|n| (n, n.to_string())),
    ]
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let transport = select(vec![vec!["tcp"], vec!["udp"], vec!["tcp", "udp"], vec!["udp", "tcp"]]);
    // What the rule serves: transport ports, one ICMP type, or both.
    let service = prop_oneof![
        (transport.clone(), Just(None)),
        (Just(vec![]), icmp_type().prop_map(Some)),
        (transport, icmp_type().prop_map(Some)),
    ]
    .prop_flat_map(|(transport, icmp)| {
        let related = match &icmp {
            Some((3 | 11 | 12, _)) if transport.is_empty() => prop::option::of(any::<bool>()).boxed(),
            _ => prop::option::of(Just(false)).boxed(),
        };
        (Just(transport), Just(icmp), related, any::<Index>())
    })
    .prop_map(|(transport, icmp, related, at)| {
        let mut protocols = transport;
        if icmp.is_some() {
            protocols.insert(at.index(protocols.len() + 1), "icmp");
        }
        (protocols, icmp, related)
    });
    let limit = prop::option::of((
        (1u32..=1_000_000, select(vec!["s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"]))
            .prop_map(|(n, unit)| quoted(&format!("{n}/{unit}"))),
        prop::option::of(1u32..=10_000),
    ));
    (
        "[a-z0-9-]{1,24}"
            .prop_filter("reserved", |s| !s.starts_with("antispoof") && !s.starts_with("invalid")),
        select(vec!["in", "out"]),
        service,
        (prop::collection::vec(1u16..=65535, 1..=4), any::<bool>()),
        prop::option::weighted(0.8, unique_prefixes(1..=32, 1..6)),
        any::<bool>(),
        limit,
        prop::option::of(".{0,12}"),
        prop::collection::vec(any::<Index>(), 12),
    )
        .prop_map(
            |(
                stem,
                direction,
                (protocols, icmp, related),
                (ports, list),
                peers,
                one_per_line,
                limit,
                comment,
                order,
            )| {
                let peers = peers.map(|p| p.into_iter().filter(|(net, _)| *net != 0).collect::<Vec<_>>());
                RuleSpec {
                    stem,
                    direction,
                    protocols,
                    ports_as_list: list || ports.len() > 1,
                    ports,
                    icmp,
                    related,
                    peers: peers.filter(|p| !p.is_empty()),
                    one_per_line,
                    limit,
                    comment,
                    order,
                }
            },
        )
}

/// (direction, protocol, port or ICMP type, peer or `None` for "any"): one rule owns each.
type Owned<'a> = (&'a str, &'a str, u16, Option<(u32, u8)>);

/// Turns specs into rule tables, making names unique and giving every (direction,
/// service, peer) one owner: a clashing peer is dropped, and a rule left with none gets
/// an address no other rule has.
fn rule_tables(specs: Vec<RuleSpec>) -> Vec<Table> {
    let mut owned: HashSet<Owned> = HashSet::new();
    let mut used: HashSet<(u32, u8)> = specs.iter().flat_map(|s| s.peers.iter().flatten().copied()).collect();
    let mut fresh = 0x6440_0000_u32; // 100.64.0.0, upward
    let mut tables = vec![];
    for (i, spec) in specs.into_iter().enumerate() {
        let services: Vec<(&str, u16)> = spec
            .protocols
            .iter()
            .flat_map(|p| match *p {
                "icmp" => vec![(*p, u16::from(spec.icmp.as_ref().expect("icmp has a type").0))],
                _ => spec.ports.iter().map(|port| (*p, *port)).collect(),
            })
            .collect();
        let free = |peer: Option<(u32, u8)>, owned: &HashSet<_>| {
            services.iter().all(|(p, port)| !owned.contains(&(spec.direction, *p, *port, peer)))
        };
        let mut peers: Option<Vec<(u32, u8)>> = match spec.peers {
            None if free(None, &owned) => None,
            None => Some(vec![]),
            Some(list) => Some(list.into_iter().filter(|p| free(Some(*p), &owned)).collect()),
        };
        if peers.as_ref().is_some_and(Vec::is_empty) {
            while used.contains(&(fresh, 32)) {
                fresh += 1;
            }
            used.insert((fresh, 32));
            peers = Some(vec![(fresh, 32)]);
        }
        for (p, port) in &services {
            match &peers {
                None => owned.insert((spec.direction, p, *port, None)),
                Some(list) => list.iter().all(|peer| owned.insert((spec.direction, p, *port, Some(*peer)))),
            };
        }

        let mut entries = vec![
            text("name", quoted(&format!("{}-{i}", spec.stem))),
            text("direction", quoted(spec.direction)),
            list("protocols", spec.protocols.iter().map(|p| quoted(p)).collect(), false),
        ];
        let has_ports = spec.protocols.iter().any(|p| *p != "icmp");
        if has_ports {
            entries.push(if spec.ports_as_list {
                list("ports", spec.ports.iter().map(u16::to_string).collect(), false)
            } else {
                text("port", spec.ports[0].to_string())
            });
        }
        if let Some((_, written)) = &spec.icmp {
            entries.push(text("icmp_type", written.clone()));
        }
        entries.push(match peers {
            None => text("peers", quoted("any")),
            Some(list) => self::list("peers", list.into_iter().map(prefix_text).collect(), spec.one_per_line),
        });
        if let Some((limit, burst)) = spec.limit {
            entries.push(text("limit", limit));
            entries.extend(burst.map(|b| text("burst", b.to_string())));
        }
        entries.extend(spec.related.map(|r| text("related", r.to_string())));
        entries.extend(spec.comment.map(|c| text("comment", quoted(&c))));
        for (at, index) in (1..entries.len()).rev().zip(&spec.order) {
            entries.swap(at, index.index(at + 1));
        }
        let mut table = Table::new(Kind::Rule, entries);
        table.rule = RuleMeta { ports: has_ports, icmp: spec.icmp.map(|(n, _)| n) };
        tables.push(table);
    }
    tables
}

/// A valid policy of `rules` rules: [host] always, [antispoof] and [conntrack] sometimes,
/// each placed anywhere among the rules.
fn valid_doc(rules: std::ops::Range<usize>) -> impl Strategy<Value = Doc> {
    host_address()
        .prop_flat_map(move |address| {
            (
                host_table(address),
                prop::option::of(antispoof_table(address)),
                prop::option::of(conntrack_table()),
                prop::collection::vec(rule_spec(), rules.clone()),
                prop::collection::vec(any::<Index>(), 3),
            )
        })
        .prop_map(|(host, antispoof, conntrack, specs, at)| {
            let mut tables = rule_tables(specs);
            for (table, at) in [Some(host), antispoof, conntrack].into_iter().zip(at) {
                if let Some(table) = table {
                    let at = at.index(tables.len() + 1);
                    tables.insert(at, table);
                }
            }
            Doc { tables }
        })
}

// ---------------------------------------------------------------------------------------
// One fault in a valid policy, and where the error must point.

#[derive(Clone, Copy, Debug)]
enum FaultKind {
    HostAddress,
    HostInterface,
    HostAddress6,
    HostDhcp,
    HostWithoutAddress,
    HostAddressInDestinations,
    HostAddressTwice,
    HostAddressListItem,
    AntispoofItem,
    AntispoofValue,
    AntispoofTwice,
    MaxEntries,
    Timeout,
    RuleName,
    RuleNameTwice,
    RuleDirection,
    RuleProtocols,
    RuleProtocolItem,
    RuleProtocolTwice,
    RulePort,
    RulePortsItem,
    RulePorts,
    RulePortAndPorts,
    RuleWithoutPort,
    RulePortOnIcmp,
    RuleIcmpType,
    RuleIcmpTypeWithoutIcmp,
    RuleWithoutIcmpType,
    RulePeers,
    RulePeerItem,
    RulePeerTwice,
    RulePeerOwnedTwice,
    RuleLimit,
    RuleBurst,
    RuleBurstWithoutLimit,
    RuleRelatedNotError,
    RuleRelatedType,
    RuleComment,
    RuleWithoutKey,
    UnknownKey,
    DuplicateKey,
    DuplicateTable,
    UnknownTable,
}

const FAULTS: [FaultKind; 43] = {
    use FaultKind::*;
    [
        HostAddress,
        HostInterface,
        HostAddress6,
        HostDhcp,
        HostWithoutAddress,
        HostAddressInDestinations,
        HostAddressTwice,
        HostAddressListItem,
        AntispoofItem,
        AntispoofValue,
        AntispoofTwice,
        MaxEntries,
        Timeout,
        RuleName,
        RuleNameTwice,
        RuleDirection,
        RuleProtocols,
        RuleProtocolItem,
        RuleProtocolTwice,
        RulePort,
        RulePortsItem,
        RulePorts,
        RulePortAndPorts,
        RuleWithoutPort,
        RulePortOnIcmp,
        RuleIcmpType,
        RuleIcmpTypeWithoutIcmp,
        RuleWithoutIcmpType,
        RulePeers,
        RulePeerItem,
        RulePeerTwice,
        RulePeerOwnedTwice,
        RuleLimit,
        RuleBurst,
        RuleBurstWithoutLimit,
        RuleRelatedNotError,
        RuleRelatedType,
        RuleComment,
        RuleWithoutKey,
        UnknownKey,
        DuplicateKey,
        DuplicateTable,
        UnknownTable,
    ]
};

// Invalid values, as TOML text, that stay invalid once IPv6 is accepted.
const BAD_ADDRESSES: &[&str] = &[
    r#""198.51.100.256""#,
    r#""1.2.3""#,
    r#""""#,
    r#""example.com""#,
    r#""198.51.100.1/32""#,
    r#""0.0.0.0""#,
    r#""255.255.255.255""#,
    r#""224.0.0.1""#,
    r#""198.51.100.01""#,
    r#"" 198.51.100.1""#,
    r#""١٩٨.٥١.١٠٠.١""#,
    "5",
    "true",
    "[]",
    "1979-05-27",
    "{}",
];
const BAD_INTERFACES: &[&str] = &[r#""""#, r#""a/b""#, r#""a b""#, r#""abcdefghijklmnop""#, "5", "[]"];
const BAD_ADDRESSES6: &[&str] =
    &[r#""not-an-address""#, r#""2001:db8::1/64""#, r#""2001:db8:::1""#, "6", "[]"];
const BAD_PREFIXES: &[&str] = &[
    r#""10.0.0.1/8""#,
    r#""10.0.0.0/33""#,
    r#""10.0.0.0/-1""#,
    r#""10.0.0.0/""#,
    r#""/8""#,
    r#""10.0.0.0/8/8""#,
    r#""300.0.0.0/8""#,
    r#""10.0.0.0 /8""#,
    r#""""#,
    r#""any""#,
    r#""2001:db8::1/64""#,
    r#""2001:db8::/129""#,
    "5",
    "[]",
];
const BAD_PREFIX_LISTS: &[&str] = &[r#""10.0.0.0/8""#, "5", "{}", "true"];
const BAD_MAX_ENTRIES: &[&str] = &[
    "0",
    "-1",
    "1023",
    "16777217",
    "9223372036854775807",
    "99999999999999999999",
    "1.5",
    r#""65536""#,
    "true",
];
const BAD_DURATIONS: &[&str] = &[
    r#""0s""#,
    r#""-1s""#,
    r#""1y""#,
    r#""5""#,
    r#""s""#,
    r#""""#,
    r#""18446744073709551616s""#,
    r#""213503982334602d""#,
    r#""1.5s""#,
    r#""5 d""#,
    r#"" 5d""#,
    r#""5D""#,
    r#""٥s""#,
    "5",
];
const BAD_NAMES: &[&str] = &[
    r#""""#,
    r#""A""#,
    r#""a_b""#,
    r#""a b""#,
    r#""é""#,
    r#""xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx""#,
    r#""policy""#,
    r#""antispoof""#,
    r#""antispoof-x""#,
    r#""invalid""#,
    r#""invalid-x""#,
    r#""non-ip""#,
    r#""ethertype""#,
    r#""icmpv6-nd""#,
    r#""a\u0000""#,
    r#""a\n""#,
    "5",
];
const BAD_DIRECTIONS: &[&str] = &[r#""IN""#, r#""both""#, r#""""#, r#""forward""#, "1", r#"["in"]"#];
const BAD_PROTOCOL_LISTS: &[&str] = &["[]", r#""tcp""#, "6"];
const BAD_PROTOCOLS: &[&str] = &[r#""sctp""#, r#""TCP""#, r#""""#, r#""icmp ""#, "6", "[]"];
const BAD_PORTS: &[&str] = &[
    "0",
    "65536",
    "-1",
    "99999999999",
    "9223372036854775808",
    r#""80""#,
    r#""2000-1000""#,
    r#""0-10""#,
    r#""1:65536""#,
    r#""http""#,
    r#""1-2-3""#,
    "1.5",
    "[80]",
    "inf",
];
const BAD_PORTS_LISTS: &[&str] = &["[]", "80", r#""80""#];
const BAD_ICMP_TYPES: &[&str] =
    &[r#""echo""#, r#""ECHO-REQUEST""#, r#""""#, "256", "-1", "1.5", "true", "[8]", "99999999999999999999"];
const BAD_PEERS: &[&str] = &[r#""none""#, r#""ANY""#, r#""""#, "[]", "5", "true", "{}"];
const BAD_PEER_ITEMS: &[&str] = &[
    r#""any""#,
    r#""0.0.0.0""#,
    r#""0.0.0.0/0""#,
    r#""0.0.0.0/8""#,
    r#""192.0.2.1/24""#,
    r#""192.0.2.0/33""#,
    r#""192.0.2.0/-1""#,
    r#""192.0.2.0/""#,
    r#""١٢٣.٤.٥.٦""#,
    r#""１.２.３.４""#,
    r#""192.0.2.1 ""#,
    r#""192.0.2""#,
    r#""192.0.2.1.5""#,
    r#""256.1.1.1""#,
    r#""localhost""#,
    r#""""#,
    r#""2001:db8::1/64""#,
    r#""2001:db8:::1""#,
    r#""fe80::1%eth0""#,
    "[]",
    r#"["192.0.2.1"]"#,
    "5",
];
const BAD_LIMITS: &[&str] = &[
    r#""0/sec""#,
    r#""1/fortnight""#,
    r#""99999999999/sec""#,
    r#""1/""#,
    r#""/sec""#,
    r#""1""#,
    r#""-1/sec""#,
    r#""1000001/sec""#,
    r#""1/SEC""#,
    r#"" 1/sec""#,
    r#""""#,
    "1",
];
const BAD_BURSTS: &[&str] = &["0", "-1", "10001", "99999999999999999999", r#""5""#, "1.5"];
const UNKNOWN_KEYS: &[&str] = &["colour", "Name", "peer", "addresss", "max-entries", "prots"];
const UNKNOWN_TABLES: &[&str] = &["[hosts]", "[rules]", "[conntrak]", "[[rulez]]", "[host.extra]"];

fn pick(pool: &'static [&'static str], at: Index) -> &'static str {
    pool[at.index(pool.len())]
}

/// Where a fault's error may point.
#[derive(Clone, Debug)]
enum Target {
    /// A table's header line, anywhere in it.
    Header(usize),
    /// The key of an entry (table, entry).
    Key(usize, usize),
    /// The value of an entry.
    Value(usize, usize),
    /// An item of an entry's list.
    Item(usize, usize, usize),
}

impl Target {
    fn matches(&self, layout: &Layout, err: &PolicyError) -> bool {
        let at = Pos { line: err.line, column: err.column };
        match *self {
            Target::Header(t) => {
                let (pos, width) = layout.headers[t];
                at.line == pos.line && at.column <= width
            }
            Target::Key(t, e) => at == layout.keys[t][e],
            Target::Value(t, e) => at == layout.values[t][e],
            Target::Item(t, e, i) => layout.items[t][e].get(i) == Some(&at),
        }
    }
}

/// A rule of `doc` (which has one at least), picked by `at`.
fn some_rule(doc: &Doc, at: Index) -> usize {
    let rules = doc.tables_of(Kind::Rule);
    *at.get(&rules)
}

/// Makes a rule serve ICMP echo-request alone (its peers may now clash with another
/// rule's: only faults found before the owner check may use it).
fn make_icmp_only(table: &mut Table, kind: &str, number: u8) {
    table.set("protocols", Value::List { items: vec![quoted("icmp")], one_per_line: false });
    table.remove("port");
    table.remove("ports");
    table.remove("related");
    table.set_text("icmp_type", kind);
    table.rule = RuleMeta { ports: false, icmp: Some(number) };
}

fn make_tcp_only(table: &mut Table) {
    table.set("protocols", Value::List { items: vec![quoted("tcp")], one_per_line: false });
    table.remove("icmp_type");
    table.remove("related");
    table.rule = RuleMeta { ports: true, icmp: None };
}

/// Injects one fault of `kind` into the valid `doc`; where the error must point.
fn inject(doc: &mut Doc, kind: FaultKind, a: Index, b: Index) -> Vec<Target> {
    use FaultKind::*;
    let host = doc.table(Kind::Host);
    match kind {
        HostAddress => {
            vec![Target::Value(host, doc.tables[host].set_text("address", pick(BAD_ADDRESSES, b)))]
        }
        HostInterface => {
            vec![Target::Value(host, doc.tables[host].set_text("interface", pick(BAD_INTERFACES, b)))]
        }
        HostAddress6 => {
            vec![Target::Value(host, doc.tables[host].set_text("address6", pick(BAD_ADDRESSES6, b)))]
        }
        HostDhcp => {
            vec![Target::Value(
                host,
                doc.tables[host].set_text("dhcp", pick(&["\"yes\"", "1", "[true]", "\"false\""], b)),
            )]
        }
        HostWithoutAddress => {
            doc.tables[host].remove("address");
            vec![Target::Header(host)]
        }
        HostAddressInDestinations => {
            let e = doc.tables[host].find("address").expect("a valid host has an address");
            let Value::Text(address) = &doc.tables[host].entries[e].value else { unreachable!() };
            let address: Ipv4Addr = address.trim_matches('"').parse().expect("a valid address");
            let len = [32, 24, 8][b.index(3)];
            let cover = prefix_text((masked(u32::from(address), len), len));
            let t = doc.table(Kind::Antispoof);
            let mut items = doc.tables[t].items("destinations").cloned().unwrap_or_default();
            items.insert(a.index(items.len() + 1), cover);
            doc.tables[t].set("destinations", Value::List { items, one_per_line: false });
            vec![Target::Value(host, e)]
        }
        HostAddressTwice | HostAddressListItem => {
            // The host's address as a list, with a fault in its entries: the address again,
            // or a bad one (of the faults a lone string has), somewhere after the first.
            let e = doc.tables[host].find("address").expect("a valid host has an address");
            let Value::Text(address) = doc.tables[host].entries[e].value.clone() else { unreachable!() };
            let mut items = vec![address.clone(), quoted("198.51.100.77")];
            let at = 1 + a.index(items.len());
            let bad = if let HostAddressTwice = kind { address } else { pick(&BAD_ADDRESSES[..9], b).into() };
            items.insert(at, bad);
            let e = doc.tables[host].set("address", Value::List { items, one_per_line: b.index(2) == 0 });
            vec![Target::Item(host, e, at)]
        }
        AntispoofItem | AntispoofTwice => {
            let t = doc.table(Kind::Antispoof);
            let key = ["sources", "destinations"][a.index(2)];
            let mut items = doc.tables[t].items(key).cloned().unwrap_or_default();
            let at = if let AntispoofItem = kind {
                let at = b.index(items.len() + 1);
                items.insert(at, pick(BAD_PREFIXES, b).into());
                at
            } else {
                if items.is_empty() {
                    items.push(quoted("240.0.0.0/5"));
                }
                let copy = items[b.index(items.len())].clone();
                items.push(copy);
                items.len() - 1
            };
            let e = doc.tables[t].set(key, Value::List { items, one_per_line: a.index(3) == 0 });
            vec![Target::Item(t, e, at)]
        }
        AntispoofValue => {
            let t = doc.table(Kind::Antispoof);
            let key = ["sources", "destinations"][a.index(2)];
            vec![Target::Value(t, doc.tables[t].set_text(key, pick(BAD_PREFIX_LISTS, b)))]
        }
        MaxEntries => {
            let t = doc.table(Kind::Conntrack);
            let key = *a.get(&SIZE_KEYS);
            vec![Target::Value(t, doc.tables[t].set_text(key, pick(BAD_MAX_ENTRIES, b)))]
        }
        Timeout => {
            let t = doc.table(Kind::Conntrack);
            let key = *a.get(&TIMEOUT_KEYS);
            vec![Target::Value(t, doc.tables[t].set_text(key, pick(BAD_DURATIONS, b)))]
        }
        RuleName => {
            let t = some_rule(doc, a);
            vec![Target::Value(t, doc.tables[t].set_text("name", pick(BAD_NAMES, b)))]
        }
        RuleNameTwice | RulePeerOwnedTwice => {
            let rules = doc.tables_of(Kind::Rule);
            let first = *a.get(&rules);
            let later: Vec<usize> = rules.iter().copied().filter(|t| *t > first).collect();
            if let (RuleNameTwice, Some(&second)) = (kind, later.get(b.index(later.len().max(1)))) {
                let name = doc.tables[first].find("name").expect("a valid rule has a name");
                let name = doc.tables[first].entries[name].value.clone();
                return vec![Target::Value(second, doc.tables[second].set("name", name))];
            }
            // The rule again, last: under its own name, or renamed so that only its
            // peers clash.
            let mut copy = doc.tables[first].clone();
            if let RulePeerOwnedTwice = kind {
                copy.set_text("name", &quoted("copy"));
            }
            doc.tables.push(copy);
            let t = doc.tables.len() - 1;
            match kind {
                RuleNameTwice => vec![Target::Value(t, doc.tables[t].find("name").expect("copied"))],
                _ => {
                    let e = doc.tables[t].find("peers").expect("a valid rule has peers");
                    match doc.tables[t].entries[e].value {
                        Value::Text(_) => vec![Target::Value(t, e)],
                        Value::List { .. } => vec![Target::Item(t, e, 0)],
                    }
                }
            }
        }
        RuleDirection => {
            let t = some_rule(doc, a);
            vec![Target::Value(t, doc.tables[t].set_text("direction", pick(BAD_DIRECTIONS, b)))]
        }
        RuleProtocols => {
            let t = some_rule(doc, a);
            vec![Target::Value(t, doc.tables[t].set_text("protocols", pick(BAD_PROTOCOL_LISTS, b)))]
        }
        RuleProtocolItem | RuleProtocolTwice => {
            let t = some_rule(doc, a);
            let mut items = doc.tables[t].items("protocols").cloned().expect("a valid rule has protocols");
            let at = match kind {
                RuleProtocolItem => {
                    let at = b.index(items.len());
                    items[at] = pick(BAD_PROTOCOLS, b).into();
                    at
                }
                _ => {
                    items.push(items[b.index(items.len())].clone());
                    items.len() - 1
                }
            };
            let e = doc.tables[t].set("protocols", Value::List { items, one_per_line: false });
            vec![Target::Item(t, e, at)]
        }
        RulePort => {
            let t = some_rule(doc, a);
            doc.tables[t].remove("ports");
            vec![Target::Value(t, doc.tables[t].set_text("port", pick(BAD_PORTS, b)))]
        }
        RulePortsItem => {
            let t = some_rule(doc, a);
            doc.tables[t].remove("port");
            let mut items = doc.tables[t].items("ports").cloned().unwrap_or_else(|| vec!["80".into()]);
            let at = b.index(items.len() + 1);
            items.insert(at, pick(&BAD_PORTS[..11], b).into());
            let e = doc.tables[t].set("ports", Value::List { items, one_per_line: false });
            vec![Target::Item(t, e, at)]
        }
        RulePorts => {
            let t = some_rule(doc, a);
            doc.tables[t].remove("port");
            vec![Target::Value(t, doc.tables[t].set_text("ports", pick(BAD_PORTS_LISTS, b)))]
        }
        RulePortAndPorts => {
            let t = some_rule(doc, a);
            let table = &mut doc.tables[t];
            if table.find("port").is_none() {
                table.set_text("port", "443");
            }
            if table.find("ports").is_none() {
                table.set_text("ports", "[443]");
            }
            vec![Target::Value(t, table.find("ports").expect("set"))]
        }
        RuleWithoutPort => {
            let t = some_rule(doc, a);
            let table = &mut doc.tables[t];
            if !table.rule.ports {
                make_tcp_only(table);
            }
            table.remove("port");
            table.remove("ports");
            vec![Target::Header(t)]
        }
        RulePortOnIcmp => {
            let t = some_rule(doc, a);
            make_icmp_only(&mut doc.tables[t], "\"echo-request\"", 8);
            let e = match b.index(2) {
                0 => doc.tables[t].set_text("port", "22"),
                _ => doc.tables[t]
                    .set("ports", Value::List { items: vec!["22".into(), "23".into()], one_per_line: false }),
            };
            // The port itself, or the first of the list.
            vec![Target::Value(t, e), Target::Item(t, e, 0)]
        }
        RuleIcmpType => {
            let t = some_rule(doc, a);
            if doc.tables[t].rule.icmp.is_none() {
                make_icmp_only(&mut doc.tables[t], "8", 8);
            }
            doc.tables[t].remove("related");
            vec![Target::Value(t, doc.tables[t].set_text("icmp_type", pick(BAD_ICMP_TYPES, b)))]
        }
        RuleIcmpTypeWithoutIcmp => {
            let t = some_rule(doc, a);
            if doc.tables[t].rule.icmp.is_some() {
                make_tcp_only(&mut doc.tables[t]);
                if doc.tables[t].find("ports").is_none() {
                    doc.tables[t].set_text("port", "22");
                }
            }
            let e = doc.tables[t].set_text("icmp_type", "\"echo-request\"");
            vec![Target::Header(t), Target::Key(t, e), Target::Value(t, e)]
        }
        RuleWithoutIcmpType => {
            let t = some_rule(doc, a);
            if doc.tables[t].rule.icmp.is_none() {
                make_icmp_only(&mut doc.tables[t], "8", 8);
            }
            doc.tables[t].remove("icmp_type");
            doc.tables[t].remove("related");
            vec![Target::Header(t)]
        }
        RulePeers => {
            let t = some_rule(doc, a);
            vec![Target::Value(t, doc.tables[t].set_text("peers", pick(BAD_PEERS, b)))]
        }
        RulePeerItem | RulePeerTwice => {
            let t = some_rule(doc, a);
            let mut items =
                doc.tables[t].items("peers").cloned().unwrap_or_else(|| vec![quoted("192.0.2.1")]);
            let at = match kind {
                RulePeerItem => {
                    let at = b.index(items.len() + 1);
                    items.insert(at, pick(BAD_PEER_ITEMS, b).into());
                    at
                }
                _ => {
                    items.push(items[b.index(items.len())].clone());
                    items.len() - 1
                }
            };
            let e = doc.tables[t].set("peers", Value::List { items, one_per_line: a.index(2) == 0 });
            vec![Target::Item(t, e, at)]
        }
        RuleLimit => {
            let t = some_rule(doc, a);
            vec![Target::Value(t, doc.tables[t].set_text("limit", pick(BAD_LIMITS, b)))]
        }
        RuleBurst => {
            let t = some_rule(doc, a);
            if doc.tables[t].find("limit").is_none() {
                doc.tables[t].set_text("limit", "\"1/sec\"");
            }
            vec![Target::Value(t, doc.tables[t].set_text("burst", pick(BAD_BURSTS, b)))]
        }
        RuleBurstWithoutLimit => {
            let t = some_rule(doc, a);
            doc.tables[t].remove("limit");
            vec![Target::Value(t, doc.tables[t].set_text("burst", "5"))]
        }
        RuleRelatedNotError => {
            let t = some_rule(doc, a);
            if doc.tables[t].rule.may_be_related() {
                make_icmp_only(&mut doc.tables[t], "\"echo-request\"", 8);
            }
            vec![Target::Value(t, doc.tables[t].set_text("related", "true"))]
        }
        RuleRelatedType => {
            let t = some_rule(doc, a);
            vec![Target::Value(t, doc.tables[t].set_text("related", pick(&["\"yes\"", "1", "[true]"], b)))]
        }
        RuleComment => {
            let t = some_rule(doc, a);
            vec![Target::Value(t, doc.tables[t].set_text("comment", pick(&["5", "[]", "true"], b)))]
        }
        RuleWithoutKey => {
            let t = some_rule(doc, a);
            doc.tables[t].remove(pick(&["name", "direction", "protocols", "peers"], b));
            vec![Target::Header(t)]
        }
        UnknownKey => {
            let t = a.index(doc.tables.len());
            let e = doc.tables[t].set_text(pick(UNKNOWN_KEYS, b), "1");
            vec![Target::Key(t, e)]
        }
        DuplicateKey => {
            let tables: Vec<usize> =
                (0..doc.tables.len()).filter(|t| !doc.tables[*t].entries.is_empty()).collect();
            let t = *a.get(&tables);
            let copy = b.get(&doc.tables[t].entries).clone();
            doc.tables[t].entries.push(copy);
            vec![Target::Key(t, doc.tables[t].entries.len() - 1)]
        }
        DuplicateTable => {
            let kind = *a.get(&[Kind::Host, Kind::Antispoof, Kind::Conntrack]);
            doc.table(kind);
            doc.tables.push(Table::new(kind, vec![]));
            vec![Target::Header(doc.tables.len() - 1)]
        }
        UnknownTable => {
            let mut table = Table::new(Kind::Other, vec![]);
            table.header = pick(UNKNOWN_TABLES, b).into();
            doc.tables.push(table);
            vec![Target::Header(doc.tables.len() - 1)]
        }
    }
}

// ---------------------------------------------------------------------------------------
// Policies from the grammar with no care for validity: every key, any value from its
// valid and invalid pools, wrong types, unknown keys, repeated keys and tables, IPv6.

/// TOML values any key may meet: the wrong types.
const ANY_TYPE: &[&str] = &[
    "0",
    "-1",
    "1.5",
    "true",
    "\"\"",
    "[]",
    "[[]]",
    "{}",
    "1979-05-27T07:32:00Z",
    "inf",
    "nan",
    "\"any\"",
    "0x50",
    "+80",
    "1_000",
];

fn any_of(pools: Vec<BoxedStrategy<String>>) -> BoxedStrategy<String> {
    let mut all = vec![(1, select(ANY_TYPE).prop_map(String::from).boxed())];
    all.extend(pools.into_iter().map(|p| (6, p)));
    proptest::strategy::Union::new_weighted(all).boxed()
}

fn words(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    select(pool).prop_map(String::from).boxed()
}

fn ipv4_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<u32>().prop_map(|a| quoted(&Ipv4Addr::from(a).to_string())),
        (any::<u32>(), 0u8..=40).prop_map(|(a, l)| quoted(&format!("{}/{l}", Ipv4Addr::from(a)))),
        prefix(0..=32).prop_map(prefix_text),
    ]
    .boxed()
}

fn ipv6_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<u128>().prop_map(|a| quoted(&Ipv6Addr::from(a).to_string())),
        (any::<u128>(), 0u8..=140).prop_map(|(a, l)| quoted(&format!("{}/{l}", Ipv6Addr::from(a)))),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| {
            let net = if l == 0 { 0 } else { a & (u128::MAX << (128 - u32::from(l))) };
            quoted(&format!("{}/{l}", Ipv6Addr::from(net)))
        }),
        words(&[
            r#""2001:db8::1""#,
            r#""2001:db8::/32""#,
            r#""::""#,
            r#""::/0""#,
            r#""::1""#,
            r#""::ffff:198.51.100.1""#,
            r#""::ffff:0:0/96""#,
            r#""fe80::/10""#,
            r#""ff00::/8""#,
            r#""2001:DB8::1""#,
            r#""[2001:db8::1]""#,
        ]),
    ]
    .boxed()
}

fn address_value() -> BoxedStrategy<String> {
    any_of(vec![
        ipv4_text(),
        ipv6_text(),
        words(BAD_ADDRESSES),
        words(BAD_PEER_ITEMS),
        ".{0,20}".prop_map(|s| quoted(&s)).boxed(),
    ])
}

fn array_of(item: BoxedStrategy<String>, len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    prop::collection::vec(item, len).prop_map(|items| format!("[{}]", items.join(", "))).boxed()
}

fn peers_value() -> BoxedStrategy<String> {
    any_of(vec![
        words(BAD_PEERS),
        words(&[r#""any""#]),
        array_of(address_value(), 0..6),
        array_of(array_of(address_value(), 0..2), 1..3),
    ])
}

fn port_value() -> BoxedStrategy<String> {
    any_of(vec![
        (1i64..=65535).prop_map(|p| p.to_string()).boxed(),
        any::<i64>().prop_map(|p| p.to_string()).boxed(),
        words(BAD_PORTS),
    ])
}

fn duration_value() -> BoxedStrategy<String> {
    any_of(vec![
        duration().boxed(),
        (any::<u64>(), select(vec!["s", "m", "h", "d", "y", "S", "ms", "", "d "]))
            .prop_map(|(n, unit)| quoted(&format!("{n}{unit}")))
            .boxed(),
        words(BAD_DURATIONS),
    ])
}

fn limit_value() -> BoxedStrategy<String> {
    any_of(vec![
        (any::<i64>(), select(vec!["s", "sec", "second", "min", "hour", "day", "fortnight", "", "SEC"]))
            .prop_map(|(n, unit)| quoted(&format!("{n}/{unit}")))
            .boxed(),
        (0u32..=2_000_000, select(vec!["sec", "min"]))
            .prop_map(|(n, unit)| quoted(&format!("{n}/{unit}")))
            .boxed(),
        words(BAD_LIMITS),
        words(&[r#""4294967295/day""#, r#""4294967296/sec""#, r#""1000000/sec""#, r#""1/day""#]),
    ])
}

fn name_value() -> BoxedStrategy<String> {
    any_of(vec![
        "[a-z0-9-]{0,34}".prop_map(|s| quoted(&s)).boxed(),
        ".{0,34}".prop_map(|s| quoted(&s)).boxed(),
        words(BAD_NAMES),
        words(&[r#""ipv6""#, r#""policy-x""#, r#""ndp""#]),
    ])
}

/// A value for `key` (valid, invalid or of the wrong type), as TOML text.
fn value_for(key: &str) -> BoxedStrategy<String> {
    match key {
        "interface" => any_of(vec![words(BAD_INTERFACES), ".{0,17}".prop_map(|s| quoted(&s)).boxed()]),
        "address" | "address6" => address_value(),
        "sources" | "destinations" => any_of(vec![array_of(address_value(), 0..8), words(BAD_PREFIX_LISTS)]),
        "max_entries" | "max_half_open" => {
            any_of(vec![any::<i64>().prop_map(|n| n.to_string()).boxed(), words(BAD_MAX_ENTRIES)])
        }
        "name" => name_value(),
        "direction" => any_of(vec![words(&[r#""in""#, r#""out""#]), words(BAD_DIRECTIONS)]),
        "protocols" => any_of(vec![
            array_of(
                words(&[r#""tcp""#, r#""udp""#, r#""icmp""#, r#""icmpv6""#, r#""ipv6-icmp""#, r#""all""#]),
                0..4,
            ),
            array_of(words(BAD_PROTOCOLS), 1..3),
            words(BAD_PROTOCOL_LISTS),
        ]),
        "port" => port_value(),
        "ports" => any_of(vec![array_of(port_value(), 0..5), words(BAD_PORTS_LISTS)]),
        "icmp_type" => any_of(vec![
            icmp_type().prop_map(|(_, text)| text).boxed(),
            (-300i64..300).prop_map(|n| n.to_string()).boxed(),
            words(BAD_ICMP_TYPES),
            words(&[r#""time-exceeded""#, r#""packet-too-big""#, r#""neighbor-solicitation""#]),
        ]),
        "peers" => peers_value(),
        "limit" => limit_value(),
        "burst" => any_of(vec![(-5i64..=10_005).prop_map(|n| n.to_string()).boxed(), words(BAD_BURSTS)]),
        "related" | "dhcp" => any_of(vec![words(&["true", "false"]), words(&["\"yes\"", "1", "[true]"])]),
        "comment" => any_of(vec![".{0,30}".prop_map(|s| quoted(&s)).boxed()]),
        timeout if timeout.ends_with("_timeout") => duration_value(),
        _ => any_of(vec![]),
    }
}

const HOST_KEYS: &[&str] = &["interface", "address", "address6", "dhcp"];
const ANTISPOOF_KEYS: &[&str] = &["sources", "destinations"];
const CONNTRACK_KEYS: &[&str] = &[
    "max_entries",
    "max_half_open",
    "tcp_established_timeout",
    "tcp_fin_timeout",
    "tcp_rst_timeout",
    "udp_timeout",
    "icmp_timeout",
    "tcp_syn_sent_timeout",
    "tcp_syn_recv_timeout",
];
const RULE_KEYS: &[&str] = &[
    "name",
    "direction",
    "protocols",
    "port",
    "ports",
    "icmp_type",
    "peers",
    "limit",
    "burst",
    "related",
    "comment",
];

/// A table of `kind`'s keys, each present or not, plus now and then an unknown or
/// repeated key.
fn mixed_table(header: &'static str, keys: &'static [&'static str]) -> BoxedStrategy<String> {
    let present: Vec<BoxedStrategy<Option<String>>> = keys
        .iter()
        .map(|key| {
            prop::option::weighted(0.8, value_for(key).prop_map(move |v| format!("{key} = {v}"))).boxed()
        })
        .collect();
    let extra = prop::collection::vec(
        select(keys.iter().chain(UNKNOWN_KEYS).copied().collect::<Vec<_>>())
            .prop_flat_map(|key| value_for(key).prop_map(move |v| format!("{key} = {v}"))),
        0..2,
    );
    (present, prop::option::weighted(0.1, extra), prop::collection::vec(any::<Index>(), 16))
        .prop_map(move |(present, extra, order)| {
            let mut lines: Vec<String> = present.into_iter().flatten().collect();
            lines.extend(extra.into_iter().flatten());
            lines.insert(0, header.into());
            shuffled_tail(lines, order)
        })
        .boxed()
}

/// `lines` with every line but the first (the header) shuffled by `order`, joined.
fn shuffled_tail(mut lines: Vec<String>, order: Vec<Index>) -> String {
    for (at, index) in (2..lines.len()).rev().zip(order) {
        let other = 1 + index.index(at);
        lines.swap(at, other);
    }
    lines.join("\n")
}

/// Tables of any keys with any values: mostly refused by TOML's and serde's checks.
fn table_soup() -> impl Strategy<Value = String> {
    let table = prop_oneof![
        3 => mixed_table("[host]", HOST_KEYS),
        1 => mixed_table("[antispoof]", ANTISPOOF_KEYS),
        1 => mixed_table("[conntrack]", CONNTRACK_KEYS),
        6 => mixed_table("[[rule]]", RULE_KEYS),
        1 => select(vec!["[hosts]", "[rule]", "[[host]]", "[ host ]", "[\"host\"]", "[host.x]", "[[rule.x]]", "[]", "[[ rule ]]"])
            .prop_flat_map(|header| mixed_table(header, RULE_KEYS)),
    ];
    prop::collection::vec(table, 0..10).prop_map(|tables| tables.join("\n\n") + "\n")
}

/// What noise does to one entry of a valid policy.
#[derive(Clone, Debug)]
enum Noise {
    Keep,
    Replace(String),
    ReplaceItem(Index, String),
    Delete,
    Twice,
}

fn noise_for(entry: &Entry) -> BoxedStrategy<Noise> {
    let value = value_for(&entry.key);
    let mut choices = vec![
        (400, Just(Noise::Keep).boxed()),
        (6, value.clone().prop_map(Noise::Replace).boxed()),
        (2, Just(Noise::Delete).boxed()),
        (1, Just(Noise::Twice).boxed()),
    ];
    if let Value::List { items, .. } = &entry.value
        && !items.is_empty()
    {
        let item = match entry.key.as_str() {
            "sources" | "destinations" | "peers" => address_value(),
            "ports" => port_value(),
            _ => value,
        };
        choices.push((4, (any::<Index>(), item).prop_map(|(at, item)| Noise::ReplaceItem(at, item)).boxed()));
    }
    proptest::strategy::Union::new_weighted(choices).boxed()
}

/// Valid policies with noise: now and then an entry's value or list item replaced (by a
/// valid value, an invalid one, one of the wrong type, an IPv6 address), an entry deleted
/// or doubled, a table doubled; often several at once, so that faults meet.
fn noisy_doc() -> impl Strategy<Value = String> {
    (valid_doc(0..10), prop::option::weighted(0.03, (any::<Index>(), select(UNKNOWN_TABLES))))
        .prop_flat_map(|(doc, extra_tables)| {
            let noise: Vec<Vec<BoxedStrategy<Noise>>> =
                doc.tables.iter().map(|t| t.entries.iter().map(noise_for).collect()).collect();
            let twice = prop::collection::vec(prop::bool::weighted(0.005), doc.tables.len());
            (Just(doc), noise, twice, Just(extra_tables))
        })
        .prop_map(|(mut doc, noise, twice, extra_tables)| {
            for (table, noise) in doc.tables.iter_mut().zip(noise) {
                let mut entries = vec![];
                for (mut entry, noise) in table.entries.drain(..).zip(noise) {
                    match noise {
                        Noise::Keep => entries.push(entry),
                        Noise::Replace(value) => entries.push(Entry { value: Value::Text(value), ..entry }),
                        Noise::ReplaceItem(at, item) => {
                            if let Value::List { items, .. } = &mut entry.value {
                                let at = at.index(items.len());
                                items[at] = item;
                            }
                            entries.push(entry);
                        }
                        Noise::Delete => {}
                        Noise::Twice => entries.extend([entry.clone(), entry]),
                    }
                }
                table.entries = entries;
            }
            let doubled: Vec<Table> =
                doc.tables.iter().zip(twice).filter(|(_, twice)| *twice).map(|(t, _)| t.clone()).collect();
            doc.tables.extend(doubled);
            if let Some((at, header)) = extra_tables {
                let mut table = Table::new(Kind::Other, vec![text("x", "1")]);
                table.header = header.into();
                let at = at.index(doc.tables.len() + 1);
                doc.tables.insert(at, table);
            }
            doc.render().0
        })
}

// ---------------------------------------------------------------------------------------
// Text with no grammar at all, or only TOML's.

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    " = ",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "#",
    ",",
    "{",
    "}",
    ".",
    "\\",
    "\\u",
    "\\U0010FFFF",
    "\\uD800",
    "host",
    "rule",
    "antispoof",
    "conntrack",
    "address",
    "address6",
    "interface",
    "peers",
    "ports",
    "port",
    "protocols",
    "name",
    "direction",
    "icmp_type",
    "limit",
    "burst",
    "related",
    "sources",
    "destinations",
    "max_entries",
    "max_half_open",
    "udp_timeout",
    "tcp_syn_sent_timeout",
    "any",
    "tcp",
    "icmp",
    "in",
    "out",
    "1",
    "-",
    "+",
    "0",
    "65536",
    "9223372036854775808",
    "1.2.3.4",
    "198.51.100.1",
    "2001:db8::1",
    "/",
    "/24",
    "s",
    "d",
    "é",
    "💥",
    "\u{0}",
    "\u{7f}",
    "\u{feff}",
    "\u{2028}",
    "\u{85}",
    "true",
    "1e3",
    "inf",
    "nan",
    "0x1F",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "_",
];

// ---------------------------------------------------------------------------------------
// Mutations of examples/tight.toml.

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    ReplaceChar(Index, char),
    InsertChar(Index, char),
    DeleteChar(Index),
    InsertToken(Index, &'static str),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let char = prop_oneof![
        select(vec![
            '"', '\'', '[', ']', '=', '\n', '#', ',', '0', '9', '/', '.', ' ', 'x', 'é', '\u{0}', '\r'
        ]),
        any::<char>(),
    ];
    prop_oneof![
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<Index>(), char.clone()).prop_map(|(a, c)| Mutation::ReplaceChar(a, c)),
        (any::<Index>(), char).prop_map(|(a, c)| Mutation::InsertChar(a, c)),
        any::<Index>().prop_map(Mutation::DeleteChar),
        (any::<Index>(), select(TOKENS)).prop_map(|(a, t)| Mutation::InsertToken(a, t)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, mutation: &Mutation) -> String {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut chars: Vec<char> = text.chars().collect();
    match mutation {
        Mutation::DeleteLine(at) if !lines.is_empty() => {
            lines.remove(at.index(lines.len()));
        }
        Mutation::DuplicateLine(at) if !lines.is_empty() => {
            let at = at.index(lines.len());
            lines.insert(at, lines[at]);
        }
        Mutation::SwapLines(a, b) if !lines.is_empty() => {
            let len = lines.len();
            lines.swap(a.index(len), b.index(len));
        }
        Mutation::ReplaceChar(at, c) if !chars.is_empty() => {
            let at = at.index(chars.len());
            chars[at] = *c;
            return chars.into_iter().collect();
        }
        Mutation::InsertChar(at, c) => {
            chars.insert(at.index(chars.len() + 1), *c);
            return chars.into_iter().collect();
        }
        Mutation::DeleteChar(at) if !chars.is_empty() => {
            chars.remove(at.index(chars.len()));
            return chars.into_iter().collect();
        }
        Mutation::InsertToken(at, token) => {
            let at = at.index(chars.len() + 1);
            chars.splice(at..at, token.chars());
            return chars.into_iter().collect();
        }
        Mutation::Truncate(at) => {
            chars.truncate(at.index(chars.len() + 1));
            return chars.into_iter().collect();
        }
        _ => {}
    }
    lines.concat()
}

// ---------------------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_text_gets_an_answer(chars in prop::collection::vec(any::<char>(), 0..256)) {
        let _ = check(&chars.into_iter().collect::<String>());
    }

    #[test]
    fn arbitrary_bytes_get_an_answer(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn toml_token_soup_gets_an_answer(tokens in prop::collection::vec(select(TOKENS), 0..80)) {
        let _ = check(&tokens.concat());
    }

    #[test]
    fn tables_of_any_keys_and_values_get_an_answer(text in table_soup()) {
        let _ = check(&text);
    }

    #[test]
    fn valid_policies_with_noise_get_an_answer(text in noisy_doc()) {
        let _ = check(&text);
    }

    #[test]
    fn valid_policies_are_accepted_and_compile(doc in valid_doc(0..12)) {
        let (text, _) = doc.render();
        let policy = check(&text).unwrap_or_else(|err| panic!("refused a valid policy: {err}\n{text}"));
        let names: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
        prop_assert_eq!(names, doc.rule_names(), "{}", text);
    }

    #[test]
    fn one_fault_is_refused_where_it_is(
        doc in valid_doc(1..6),
        kind in select(FAULTS.to_vec()),
        a in any::<Index>(),
        b in any::<Index>(),
    ) {
        let mut doc = doc;
        let targets = inject(&mut doc, kind, a, b);
        let (text, layout) = doc.render();
        match check(&text) {
            Ok(_) => panic!("accepted a policy with a {kind:?} fault:\n{text}"),
            Err(err) => prop_assert!(
                targets.iter().any(|t| t.matches(&layout, &err)),
                "the {:?} fault is refused elsewhere: {}\n(expected {:?} in {:?})\n{}",
                kind, err, targets, layout, text
            ),
        }
    }

    #[test]
    fn mutated_tight_example_gets_an_answer(mutations in prop::collection::vec(mutation(), 1..5)) {
        let mut text = TIGHT.to_string();
        for m in &mutations {
            text = mutate(&text, m);
        }
        let _ = check(&text);
    }
}

#[test]
fn tight_example_is_accepted() {
    let policy = check(TIGHT).expect("examples/tight.toml is valid");
    assert_eq!(policy.rules.len(), 13);
}

/// Every prefix of the example, cut at each character: the half-written file an editor
/// saves.
#[test]
fn tight_example_cut_at_every_character_gets_an_answer() {
    let mut accepted = HashSet::new();
    for at in TIGHT.char_indices().map(|(at, _)| at).chain([TIGHT.len()]) {
        if check(&TIGHT[..at]).is_ok() {
            accepted.insert(at);
        }
    }
    // The file up to each rule is a policy of the rules before it.
    for (at, _) in TIGHT.match_indices("\n[[rule]]") {
        assert!(accepted.contains(&(at + 1)), "the file cut before the rule at byte {} is refused", at + 1);
    }
}

#[test]
fn tight_example_without_or_with_twice_any_one_line_gets_an_answer() {
    let lines: Vec<&str> = TIGHT.split_inclusive('\n').collect();
    for at in 0..lines.len() {
        let mut without = lines.clone();
        without.remove(at);
        let _ = check(&without.concat());
        let mut twice = lines.clone();
        twice.insert(at, lines[at]);
        let _ = check(&twice.concat());
    }
}

fn many_rules(count: usize) -> String {
    let mut text = String::from("[host]\naddress = \"198.51.100.1\"\n");
    for i in 0..count {
        text.push_str(&format!(
            "\n[[rule]]\nname = \"r{i}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = {}\npeers = \"any\"\n",
            i + 1
        ));
    }
    text
}

/// Exactly MAX_RULES rules are accepted and get ids in range; one more is refused at the
/// rule over the limit.
#[test]
fn the_rule_limit_is_exact() {
    for count in MAX_RULES as usize - 2..=MAX_RULES as usize + 2 {
        let text = many_rules(count);
        match check(&text) {
            Ok(policy) => {
                assert!(count <= MAX_RULES as usize, "{count} rules accepted");
                assert_eq!(policy.rules.len(), count);
            }
            Err(err) => {
                assert!(count > MAX_RULES as usize, "{count} rules refused: {err}");
                // The first rule over the limit: its [[rule]] header.
                let header = 4 + 7 * MAX_RULES as usize;
                assert_eq!((err.line, err.column), (header, 1), "{err}");
                assert!(err.message.contains(&MAX_RULES.to_string()), "{err}");
            }
        }
    }
}

/// `sources` and `destinations`, one entry a line: (the text, the line of each entry).
fn many_antispoof(count: usize) -> (String, Vec<usize>) {
    let mut lines = vec!["[host]".to_string(), "address = \"198.51.100.1\"".into(), "[antispoof]".into()];
    let mut at = vec![];
    let sources = count / 2;
    lines.push("sources = [".into());
    for i in 0..sources {
        lines.push(format!("  \"10.{}.{}.0/24\",", i / 256, i % 256));
        at.push(lines.len());
    }
    lines.push("]".into());
    lines.push("destinations = [".into());
    for i in 0..count - sources {
        lines.push(format!("  \"240.{}.{}.0/24\",", i / 256, i % 256));
        at.push(lines.len());
    }
    lines.push("]".into());
    (lines.join("\n") + "\n", at)
}

/// Exactly MAX_ANTISPOOF entries are accepted; one more is refused at the entry over the
/// limit (or, at least, in the [antispoof] table: its header or the list that overflows).
#[test]
fn the_antispoof_limit_is_exact() {
    for count in MAX_ANTISPOOF as usize - 2..=MAX_ANTISPOOF as usize + 2 {
        let (text, entry_lines) = many_antispoof(count);
        match check(&text) {
            Ok(policy) => {
                assert!(count <= MAX_ANTISPOOF as usize, "{count} anti-spoof entries accepted");
                assert_eq!(policy.antispoof_sources.len() + policy.antispoof_destinations.len(), count);
            }
            Err(err) => {
                assert!(count > MAX_ANTISPOOF as usize, "{count} entries refused: {err}");
                assert!(err.message.contains(&MAX_ANTISPOOF.to_string()), "{err}");
                let over = entry_lines[MAX_ANTISPOOF as usize];
                let destinations = entry_lines[count / 2] - 1;
                assert!([over, 3, destinations].contains(&err.line), "refused away from the entries: {err}");
            }
        }
    }
}

/// The layout agrees with the parser on a known case, so
/// that the fault property's places are right.
#[test]
fn the_layout_places_what_the_parser_places() {
    let doc = Doc {
        tables: vec![
            Table::new(Kind::Host, vec![text("address", quoted("198.51.100.1"))]),
            Table::new(
                Kind::Rule,
                vec![
                    text("name", quoted("x")),
                    text("direction", quoted("in")),
                    list("protocols", vec![quoted("tcp")], false),
                    list("ports", vec!["80".into(), "70000".into()], false),
                    list("peers", vec![quoted("192.0.2.1"), quoted("192.0.2.1")], true),
                ],
            ),
        ],
    };
    let (text, layout) = doc.render();
    let err = check(&text).unwrap_err();
    assert_eq!(err.to_string(), "fuzz/policy.toml:8:14: port 70000 out of range 1-65535");
    assert!(Target::Item(1, 3, 1).matches(&layout, &err), "{layout:?}");
}

/// The error checks refuse what they are meant to refuse, and pass a good error whose
/// quoted user text holds the words they look for.
#[test]
fn the_error_checks_catch_what_they_look_for() {
    let text = "[host]\naddress = \"i64\"\n";
    let error = |line: usize, column: usize, message: &str| PolicyError {
        file: FILE.into(),
        line,
        column,
        message: message.into(),
    };
    check_error(text, &error(2, 11, "bad address \"i64 Some(\\\"x\\\")\""));
    check_error(text, &error(3, 1, "unknown field `Spanned`, expected `None`"));
    let bad = [
        error(2, 11, ""),
        error(2, 11, " padded"),
        error(2, 11, "two\nlines"),
        error(2, 11, "a \u{7} bell"),
        error(0, 1, "line 0"),
        error(4, 1, "past the last line"),
        error(2, 0, "column 0"),
        error(2, 23, "past the line's end"),
        error(2, 11, "invalid type: sequence, expected i64"),
        error(2, 11, "data did not match any variant of untagged enum RawIcmpType"),
        error(2, 11, "expected struct RawHost"),
        error(2, 11, "Spanned { span: 1..2, value: Some(5) }"),
    ];
    for err in bad {
        let caught = std::panic::catch_unwind(|| check_error(text, &err));
        assert!(caught.is_err(), "passed: {err:?}");
    }
    let other_file = PolicyError { file: "other.toml".into(), ..error(2, 11, "bad address") };
    assert!(std::panic::catch_unwind(|| check_error(text, &other_file)).is_err());
}
