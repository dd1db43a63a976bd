//! `firewall list`: the chains laid out like `iptables -nvL`, or as JSON.
use std::fmt::Write as _;

use firewall_common::{Builtin, Counter, builtin_counter};
use serde_json::{Value, json};

use crate::{
    compile::{ListChain, chain_name},
    kernel::maps::{MapMemory, TableStats},
    policy::Policy,
};

/// How to print.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// `-v`: packet and byte counters.
    pub verbose: bool,
    /// `-x`: exact numbers instead of K, M, G.
    pub exact: bool,
    /// The filter is in audit mode: DROP lines read "would drop".
    pub audit: bool,
}

/// What a line's target reads as: in audit mode nothing is dropped, only counted.
fn target(target: &'static str, audit: bool) -> &'static str {
    if audit && target == "DROP" { "would drop" } else { target }
}

fn counter(counters: &[Counter], id: u32) -> Counter {
    counters.get(id as usize).copied().unwrap_or_default()
}

/// A counter in iptables' style: exact up to 99999, then K, M, G, T, rounded.
pub fn human(number: u64, exact: bool, width: usize) -> String {
    if exact || number <= 99_999 {
        return format!("{number:>width$}");
    }
    // Rounded to the nearest unit, as iptables' print_num.
    let mut n = number;
    for unit in ["K", "M", "G", "T"] {
        n = (n + 500) / 1000;
        if n <= 9_999 {
            return format!("{n:>w$}{unit}", w = width - 1);
        }
    }
    format!("{n:>w$}P", w = width - 1)
}

/// `1234567` → `1,234,567`.
pub fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The line after the chains: both flow tables' fill and evictions, `conntrack: 1,234 of
/// 65,536 established, 12 of 16,384 half-open; evicted 0 established, 3 half-open`.
pub fn conntrack_line(established: &TableStats, half_open: &TableStats) -> String {
    format!(
        "conntrack: {} of {} established, {} of {} half-open; evicted {} established, {} half-open",
        grouped(established.entries),
        grouped(established.capacity),
        grouped(half_open.entries),
        grouped(half_open.capacity),
        grouped(established.evicted),
        grouped(half_open.evicted)
    )
}

/// The line after the flow tables', when a family has several addresses: the host's
/// addresses in force, each family's in the policy's order, `host addresses: 198.51.100.1,
/// 198.51.100.2; 2001:db8::1` (IPv4 alone without `address6`). `None` with one of each, as
/// every policy had before lists: the rules' lines show it, and the listing ends on the
/// flow tables' line as it always did (scripts read it there).
pub fn addresses_line(policy: &Policy) -> Option<String> {
    let (v4, v6) = (policy.addresses(), policy.addresses6());
    if v4.len() <= 1 && v6.len() <= 1 {
        return None;
    }
    fn joined(list: &[impl ToString]) -> String {
        list.iter().map(ToString::to_string).collect::<Vec<String>>().join(", ")
    }
    let (v4, v6) = (joined(&v4), joined(&v6));
    Some(if v6.is_empty() { format!("host addresses: {v4}") } else { format!("host addresses: {v4}; {v6}") })
}

/// The text listing. Columns are as wide as iptables' (prot 4, addresses 18) or as their
/// widest entry, so that an IPv6 address or `ipv6-icmp` does not shift the rows after it.
pub fn render(chains: &[ListChain], counters: &[Counter], style: Style) -> String {
    let mut out = String::new();
    let (pw, bw) = if style.exact { (8, 10) } else { (5, 5) };
    let widest = |min: usize, field: fn(&crate::compile::ListLine) -> usize| {
        chains.iter().flat_map(|c| c.lines.iter()).map(field).fold(min, usize::max)
    };
    let prot = widest(4, |l| l.prot.chars().count());
    let addr = widest(18, |l| l.source.chars().count().max(l.destination.chars().count()));
    let name = widest(18, |l| l.kind.name().chars().count());
    let tw = chains
        .iter()
        .flat_map(|c| c.lines.iter())
        .map(|l| target(l.target, style.audit).len())
        .fold(7, usize::max);
    let policy_target = target("DROP", style.audit);
    if style.audit {
        let _ = writeln!(
            out,
            "Audit mode: nothing is dropped, what would be is counted (`firewall reload --enforce` enforces)\n"
        );
    }
    for (i, chain) in chains.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let policy = counter(counters, builtin_counter(chain.chain, Builtin::Policy));
        if style.verbose {
            let _ = writeln!(
                out,
                "Chain {} (policy {policy_target} {} packets, {} bytes)",
                chain_name(chain.chain),
                policy.packets,
                policy.bytes
            );
            let _ = write!(out, "{:>pw$} {:>bw$} ", "pkts", "bytes");
        } else {
            let _ = writeln!(out, "Chain {} (policy {policy_target})", chain_name(chain.chain));
        }
        let _ = writeln!(
            out,
            "{:<tw$} {:<prot$} {:<addr$} {:<addr$} {:<name$} match",
            "target", "prot", "source", "destination", "rule"
        );
        for line in &chain.lines {
            let c = counter(counters, line.counter);
            let mut row = String::new();
            if style.verbose {
                let _ =
                    write!(row, "{} {} ", human(c.packets, style.exact, pw), human(c.bytes, style.exact, bw));
            }
            let _ = write!(
                row,
                "{:<tw$} {:<prot$} {:<addr$} {:<addr$} {:<name$} {}",
                target(line.target, style.audit),
                line.prot,
                line.source,
                line.destination,
                line.kind.name(),
                line.matches
            );
            out.push_str(row.trim_end());
            out.push('\n');
        }
    }
    out
}

/// `list --json`: `{"audit": false, "chains": [{"name", "policy", "packets", "bytes", "rules":
/// […]}], "conntrack": {"established": {"entries", "capacity", "evicted"}, "half_open": …},
/// "addresses": ["198.51.100.1", …], "addresses6": ["2001:db8::1", …], "memory": {"ALLOW_EXACT":
/// bytes, …, "total": bytes}}` (targets as the policy says them, DROP even in audit mode;
/// `addresses6` empty without `address6`; each map's memory as the kernel accounts it).
pub fn json(
    chains: &[ListChain],
    counters: &[Counter],
    audit: bool,
    (established, half_open): (&TableStats, &TableStats),
    policy: &Policy,
    memory: &MapMemory,
) -> Value {
    let chains: Vec<Value> = chains
        .iter()
        .map(|chain| {
            let policy = counter(counters, builtin_counter(chain.chain, Builtin::Policy));
            let rules: Vec<Value> = chain
                .lines
                .iter()
                .map(|line| {
                    let c = counter(counters, line.counter);
                    let mut rule = serde_json::to_value(line).expect("plain data");
                    rule["packets"] = json!(c.packets);
                    rule["bytes"] = json!(c.bytes);
                    rule
                })
                .collect();
            json!({
                "name": chain_name(chain.chain),
                "policy": "DROP",
                "packets": policy.packets,
                "bytes": policy.bytes,
                "rules": rules,
            })
        })
        .collect();
    json!({
        "audit": audit,
        "chains": chains,
        "conntrack": { "established": established, "half_open": half_open },
        "addresses": policy.addresses(),
        "addresses6": policy.addresses6(),
        "memory": memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_stay_aligned_with_ipv6_addresses() {
        let text = "[host]\naddress = \"198.51.100.1\"\naddress6 = \"2001:db8::1\"\n[[rule]]\nname = \"ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = [\"2001:db8:7777:7777::7\"]\n";
        let policy = crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let ids = crate::compile::Ids::assign(&policy, &Default::default());
        let chains = crate::compile::listing(&policy, &ids);
        let out = render(&chains, &[], Style::default());
        // Every row's rule name starts where the header's "rule" does.
        let header = out.lines().nth(1).unwrap();
        let at = header.find(" rule ").unwrap() + 1;
        // INPUT's rows follow its two header lines, in the listing's order.
        let rows: Vec<&str> = out.lines().skip(2).take(chains[0].lines.len()).collect();
        assert!(rows.iter().any(|r| r.contains("2001:db8:7777:7777::7")), "{out}");
        for (row, line) in rows.iter().zip(&chains[0].lines) {
            assert_eq!(
                row.get(at..at + line.kind.name().len()),
                Some(line.kind.name()),
                "misaligned:\n{out}"
            );
        }
    }

    #[test]
    fn audit_mode_reads_would_drop() {
        let text = "[host]\naddress = \"198.51.100.1\"\n[[rule]]\nname = \"ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = [\"192.0.2.7\"]\n";
        let policy = crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let ids = crate::compile::Ids::assign(&policy, &Default::default());
        let chains = crate::compile::listing(&policy, &ids);
        let out = render(&chains, &[], Style { verbose: true, audit: true, ..Style::default() });
        assert!(out.starts_with("Audit mode: nothing is dropped"), "{out}");
        assert!(out.contains("Chain INPUT (policy would drop 0 packets, 0 bytes)"), "{out}");
        assert!(out.lines().any(|l| l.contains("would drop") && l.contains("invalid")), "{out}");
        assert!(!out.lines().any(|l| l.contains(" DROP ")), "{out}");
        assert!(out.lines().any(|l| l.contains("ACCEPT") && l.contains("ssh")), "{out}");
    }

    #[test]
    fn the_conntrack_line_names_both_tables() {
        let table = |entries, capacity, evicted| TableStats { entries, capacity, evicted };
        assert_eq!(
            conntrack_line(&table(1_234, 65_536, 0), &table(12, 16_384, 3)),
            "conntrack: 1,234 of 65,536 established, 12 of 16,384 half-open; evicted 0 established, 3 half-open"
        );
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn the_host_s_addresses_are_listed_after_the_flow_tables_and_in_the_json() {
        let parse = |text: &str| crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let one = parse("[host]\naddress = \"198.51.100.1\"\n");
        assert_eq!(addresses_line(&one), None);
        let more = parse(
            "[host]\naddress = [\"198.51.100.1\", \"198.51.100.2\"]\naddress6 = [\"2001:db8::1\", \"2001:db8:1::1\"]\n",
        );
        assert_eq!(
            addresses_line(&more).as_deref(),
            Some("host addresses: 198.51.100.1, 198.51.100.2; 2001:db8::1, 2001:db8:1::1")
        );
        let table = TableStats::default();
        let none = MapMemory::default();
        let value = json(&[], &[], false, (&table, &table), &more, &none);
        assert_eq!(value["addresses"], json!(["198.51.100.1", "198.51.100.2"]));
        assert_eq!(value["addresses6"], json!(["2001:db8::1", "2001:db8:1::1"]));
        assert_eq!(json(&[], &[], false, (&table, &table), &one, &none)["addresses6"], json!([]));
    }

    #[test]
    fn the_maps_memory_is_one_object_with_its_total() {
        let one =
            crate::policy::parse("[host]\naddress = \"198.51.100.1\"\n", std::path::Path::new("p.toml"))
                .unwrap();
        let table = TableStats::default();
        let memory = MapMemory(vec![("CONFIG", 100), ("ALLOW_EXACT", 16_400)]);
        let value = json(&[], &[], false, (&table, &table), &one, &memory);
        assert_eq!(value["memory"], json!({ "CONFIG": 100, "ALLOW_EXACT": 16_400, "total": 16_500 }));
    }

    #[test]
    fn numbers_shorten_as_iptables_does() {
        assert_eq!(human(99_999, false, 5), "99999");
        assert_eq!(human(100_000, false, 5), " 100K");
        assert_eq!(human(1_234_567, false, 5), "1235K");
        assert_eq!(human(12_345_678, false, 5), "  12M");
        assert_eq!(human(12_345_678, true, 8), "12345678");
    }
}
