//! `firewall watch`: per-line packet and byte rates of a live filter, busiest first.
//!
//! This module is the arithmetic and the table's layout, with no terminal: two
//! [`Snapshot`]s make [`Row`]s, and [`columns`] fits them to a width. [`screen`] draws
//! them and runs the loop.
pub mod screen;

use std::{collections::HashMap, time::Duration};

use firewall_common::{Chain, Counter};

use crate::{
    compile::{LineKind, ListLine, chain_name},
    kernel::maps::TableStats,
    view::{
        listing::{grouped, human},
        snapshot::Snapshot,
    },
};

pub use screen::{interval, run};

/// One listing line as `watch` shows it.
#[derive(Clone, Debug)]
pub struct Row {
    pub chain: Chain,
    pub line: ListLine,
    /// The counter at the latest snapshot.
    pub total: Counter,
    pub packets_per_sec: f64,
    pub bytes_per_sec: f64,
}

/// Every line of `current`, with its rates since `previous`, sorted by packets per
/// second, then bytes per second, busiest first; lines of equal rates (those at zero
/// among them) keep the listing's order.
///
/// Lines are matched by counter id, so a reload that adds, removes or reorders rules
/// does not mix them up. A line has rate 0 when there is nothing to compare it with: no
/// previous snapshot, a line that was not there (a new rule), an id that named another
/// line before (a reload can give a removed rule's id to a new one), or a counter that
/// went down (`firewall zero`, or `down` and `up` again).
pub fn rows(previous: Option<&Snapshot>, current: &Snapshot) -> Vec<Row> {
    let before: HashMap<u32, (Chain, LineKind, Counter)> = previous
        .map(|p| p.lines().into_iter().map(|l| (l.line.counter, (l.chain, l.line.kind, l.counter))).collect())
        .unwrap_or_default();
    let seconds = previous.map_or(0.0, |p| current.taken.saturating_duration_since(p.taken).as_secs_f64());
    let mut rows: Vec<Row> = current
        .lines()
        .into_iter()
        .map(|now| {
            let delta = match before.get(&now.line.counter) {
                Some((chain, kind, then))
                    if *chain == now.chain
                        && *kind == now.line.kind
                        && now.counter.packets >= then.packets
                        && now.counter.bytes >= then.bytes
                        && seconds > 0.0 =>
                {
                    Some((now.counter.packets - then.packets, now.counter.bytes - then.bytes))
                }
                _ => None,
            };
            let (packets, bytes) = delta.unwrap_or((0, 0));
            Row {
                chain: now.chain,
                line: now.line,
                total: now.counter,
                packets_per_sec: if delta.is_some() { packets as f64 / seconds } else { 0.0 },
                bytes_per_sec: if delta.is_some() { bytes as f64 / seconds } else { 0.0 },
            }
        })
        .collect();
    // A stable sort: ties stay in the listing's order.
    rows.sort_by(|a, b| {
        b.packets_per_sec.total_cmp(&a.packets_per_sec).then(b.bytes_per_sec.total_cmp(&a.bytes_per_sec))
    });
    rows
}

/// `conntrack 1,234 / 65,536 (1.9%)  half-open 12 / 16,384  evicted 0, half-open 3`: the
/// established table's fill, the half-open one's, and the evictions from each.
pub fn conntrack_text(established: &TableStats, half_open: &TableStats) -> String {
    let (e, h) = (established, half_open);
    let percent = if e.capacity == 0 { 0.0 } else { e.entries as f64 * 100.0 / e.capacity as f64 };
    format!(
        "conntrack {} / {} ({percent:.1}%)  half-open {} / {}  evicted {}, half-open {}",
        grouped(e.entries),
        grouped(e.capacity),
        grouped(h.entries),
        grouped(h.capacity),
        grouped(e.evicted),
        grouped(h.evicted)
    )
}

/// A rate: one decimal below 100 (a slow rule's 0.3/s is worth seeing), then whole
/// numbers shortened with K, M, G as `list` shortens its counters.
pub fn rate_text(rate: f64) -> String {
    if rate <= 0.0 {
        "0".into()
    } else if rate < 99.95 {
        format!("{rate:.1}")
    } else {
        human(rate.round() as u64, false, 1)
    }
}

/// `--interval SECONDS`: a number of seconds from 0.1 to 3600.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().parse().ok()?;
    (0.1..=3600.0).contains(&seconds).then(|| Duration::from_secs_f64(seconds))
}

/// The table's columns, in the order shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    PacketRate,
    ByteRate,
    Packets,
    Bytes,
    Chain,
    Target,
    Rule,
    Source,
    Destination,
    Match,
}

impl Field {
    const ALL: [Field; 10] = [
        Field::PacketRate,
        Field::ByteRate,
        Field::Packets,
        Field::Bytes,
        Field::Chain,
        Field::Target,
        Field::Rule,
        Field::Source,
        Field::Destination,
        Field::Match,
    ];

    pub fn header(self) -> &'static str {
        match self {
            Field::PacketRate => "pkts/s",
            Field::ByteRate => "bytes/s",
            Field::Packets => "pkts",
            Field::Bytes => "bytes",
            Field::Chain => "chain",
            Field::Target => "target",
            Field::Rule => "rule",
            Field::Source => "source",
            Field::Destination => "destination",
            Field::Match => "match",
        }
    }

    /// Numbers, right-aligned.
    pub fn is_number(self) -> bool {
        matches!(self, Field::PacketRate | Field::ByteRate | Field::Packets | Field::Bytes)
    }

    /// The text columns give way when the terminal is narrow; the others never do.
    fn is_flexible(self) -> bool {
        matches!(self, Field::Rule | Field::Source | Field::Destination | Field::Match)
    }

    /// The narrowest a text column is worth showing at: a rule name of the usual length,
    /// an IPv4 address.
    fn useful_width(self) -> usize {
        if self == Field::Rule { 16 } else { 15 }
    }

    pub fn text(self, row: &Row) -> String {
        match self {
            Field::PacketRate => rate_text(row.packets_per_sec),
            Field::ByteRate => rate_text(row.bytes_per_sec),
            Field::Packets => human(row.total.packets, false, 1),
            Field::Bytes => human(row.total.bytes, false, 1),
            Field::Chain => chain_name(row.chain).into(),
            Field::Target => row.line.target.into(),
            Field::Rule => row.line.kind.name().to_owned(),
            Field::Source => row.line.source.clone(),
            Field::Destination => row.line.destination.clone(),
            Field::Match => row.line.matches.clone(),
        }
    }
}

/// A column as laid out: which field, how many cells wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub field: Field,
    pub width: u16,
}

/// The columns that fit in `width` cells (one cell between columns), and their widths.
///
/// The numbers, chain and target always show. The text columns get what is left: the
/// rule name first, then source, destination and match in that order, each up to its
/// widest entry; when they cannot all have a useful width, match goes first, then
/// destination, then source (an 80-column terminal shows the rule and its source).
/// Entries wider than their column are cut with `…` by [`fit`].
pub fn columns(width: u16, rows: &[Row]) -> Vec<Column> {
    let natural = |field: Field| {
        rows.iter().map(|r| field.text(r).chars().count()).fold(field.header().len(), usize::max)
    };
    let mut shown: Vec<Field> = Field::ALL.to_vec();
    let avail = |shown: &[Field]| {
        let fixed: usize = shown.iter().filter(|f| !f.is_flexible()).map(|f| natural(*f)).sum();
        usize::from(width).saturating_sub(fixed + shown.len() - 1)
    };
    for drop in [Field::Match, Field::Destination, Field::Source] {
        let wanted: usize =
            shown.iter().filter(|f| f.is_flexible()).map(|f| natural(*f).min(f.useful_width())).sum();
        if wanted <= avail(&shown) {
            break;
        }
        shown.retain(|f| *f != drop);
    }
    let mut left = avail(&shown);
    let mut widths: Vec<usize> =
        shown.iter().map(|f| if f.is_flexible() { 0 } else { natural(*f) }).collect();
    // Each text column its useful width, then each the rest of its widest, in order.
    for cap in [|f: Field, n: usize| n.min(f.useful_width()), |_: Field, n: usize| n] {
        for (field, width) in shown.iter().zip(&mut widths) {
            if field.is_flexible() {
                let more = cap(*field, natural(*field)).saturating_sub(*width).min(left);
                *width += more;
                left -= more;
            }
        }
    }
    shown
        .into_iter()
        .zip(widths)
        .map(|(field, width)| Column { field, width: u16::try_from(width).unwrap_or(u16::MAX) })
        .collect()
}

/// `text` cut to `width` characters, the last of them `…` when something was cut.
pub fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return text.into();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{path::Path, time::Instant};

    use super::*;
    use crate::{compile::Ids, kernel::pins::LiveState};

    pub(crate) const POLICY: &str = r#"[host]
address = "198.51.100.1"
[[rule]]
name = "ssh-in"
direction = "in"
protocols = ["tcp"]
port = 22
peers = ["203.0.113.7"]
[[rule]]
name = "web-in"
direction = "in"
protocols = ["tcp"]
ports = [80, 443]
peers = "any"
[[rule]]
name = "ping-in"
direction = "in"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
"#;

    /// A snapshot of `text` taken at `taken`, its counters set by `(rule, chain, packets,
    /// bytes)`, every other counter zero; ids kept from `previous` as a reload keeps them.
    pub(crate) fn snapshot(
        text: &str,
        previous: &Ids,
        taken: Instant,
        set: &[(&str, Chain, u64, u64)],
    ) -> (Snapshot, Ids) {
        let policy = crate::policy::parse(text, Path::new("p.toml")).unwrap();
        let ids = Ids::assign(&policy, previous);
        let state = LiveState {
            policy_file: "p.toml".into(),
            ids: ids.clone(),
            programs: 0,
            runtime_only: false,
            mode: None,
            applied_with: Default::default(),
            offloads_to_restore: Vec::new(),
        };
        let mut snapshot = Snapshot::from_parts(policy, state, vec![Counter::default(); 1024], taken);
        snapshot.established.entries = 3;
        for (name, chain, packets, bytes) in set {
            let id = snapshot
                .lines()
                .into_iter()
                .find(|l| l.line.kind.name() == *name && l.chain == *chain)
                .unwrap_or_else(|| panic!("no line {name} in {chain:?}"))
                .line
                .counter;
            snapshot.counters[id as usize] = Counter { packets: *packets, bytes: *bytes };
        }
        (snapshot, ids)
    }

    fn names(rows: &[Row]) -> Vec<(String, Chain)> {
        rows.iter().map(|r| (r.line.kind.name().to_owned(), r.chain)).collect()
    }

    #[test]
    fn rates_are_differences_over_the_time_between_and_the_busiest_come_first() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let (before, ids) = snapshot(
            POLICY,
            &Ids::default(),
            t0,
            &[("ssh-in", Chain::Input, 100, 10_000), ("web-in", Chain::Input, 5, 500)],
        );
        let (after, _) = snapshot(
            POLICY,
            &ids,
            t1,
            &[
                ("ssh-in", Chain::Input, 110, 12_000),
                ("web-in", Chain::Input, 45, 4_500),
                ("ping-in", Chain::Input, 10, 840),
                ("ping-in", Chain::Output, 10, 900),
            ],
        );
        let rows = rows(Some(&before), &after);
        assert_eq!(rows.len(), after.lines().len(), "every line is shown");
        let top = names(&rows[..4]);
        assert_eq!(
            top,
            [
                ("web-in".into(), Chain::Input),
                // Equal packet rates (5/s): the more bytes first.
                ("ssh-in".into(), Chain::Input),
                ("ping-in".into(), Chain::Output),
                ("ping-in".into(), Chain::Input),
            ]
        );
        assert_eq!((rows[0].packets_per_sec, rows[0].bytes_per_sec), (20.0, 2_000.0));
        assert_eq!((rows[0].total.packets, rows[0].total.bytes), (45, 4_500));
        assert_eq!((rows[1].packets_per_sec, rows[1].bytes_per_sec), (5.0, 1_000.0));
        assert_eq!((rows[2].packets_per_sec, rows[2].bytes_per_sec), (5.0, 450.0));
        assert_eq!((rows[3].packets_per_sec, rows[3].bytes_per_sec), (5.0, 420.0));
        // The idle lines follow, in the listing's order.
        let idle: Vec<(String, Chain)> = after
            .lines()
            .into_iter()
            .map(|l| (l.line.kind.name().to_owned(), l.chain))
            .filter(|key| !top.contains(key))
            .collect();
        assert_eq!(names(&rows[4..]), idle);
        assert!(rows[4..].iter().all(|r| r.packets_per_sec == 0.0 && r.bytes_per_sec == 0.0));
    }

    #[test]
    fn equal_rates_keep_the_listing_order() {
        let t0 = Instant::now();
        let (before, ids) = snapshot(POLICY, &Ids::default(), t0, &[]);
        let set = [
            ("ssh-in", Chain::Input, 7, 700),
            ("web-in", Chain::Input, 7, 700),
            ("ping-in", Chain::Input, 7, 700),
        ];
        let (after, _) = snapshot(POLICY, &ids, t0 + Duration::from_secs(1), &set);
        let rows = rows(Some(&before), &after);
        assert_eq!(
            names(&rows[..3]),
            [
                ("ssh-in".into(), Chain::Input),
                ("web-in".into(), Chain::Input),
                ("ping-in".into(), Chain::Input)
            ]
        );
    }

    #[test]
    fn the_first_snapshot_has_no_rates_but_its_totals() {
        let (only, _) = snapshot(POLICY, &Ids::default(), Instant::now(), &[("web-in", Chain::Input, 9, 99)]);
        let rows = rows(None, &only);
        assert!(rows.iter().all(|r| r.packets_per_sec == 0.0));
        let web = rows.iter().find(|r| r.line.kind.name() == "web-in" && r.chain == Chain::Input).unwrap();
        assert_eq!(web.total, Counter { packets: 9, bytes: 99 });
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "whole packets over whole seconds: exact in binary")]
    fn after_a_reload_lines_match_by_counter_and_a_new_rule_starts_at_zero() {
        let t0 = Instant::now();
        let (before, ids) =
            snapshot(POLICY, &Ids::default(), t0, &[("ssh-in", Chain::Input, 1_000, 100_000)]);
        // ssh-in removed: its id goes to the new rule dns-out, which starts from zero
        // (and yet counts 50 packets before the next snapshot: not 950 fewer, nor a rate).
        // web-in and ping-in swap places in the file, keeping their ids.
        let reloaded = POLICY.replace(
            "name = \"ssh-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22",
            "name = \"dns-out\"\ndirection = \"out\"\nprotocols = [\"tcp\"]\nport = 53",
        );
        let (after, new_ids) = snapshot(
            &reloaded,
            &ids,
            t0 + Duration::from_secs(1),
            &[("dns-out", Chain::Output, 50, 5_000), ("ping-in", Chain::Input, 4, 400)],
        );
        assert_eq!(new_ids.rule("dns-out"), ids.rule("ssh-in"), "the test needs the id reused");
        let rows = rows(Some(&before), &after);
        assert_eq!(names(&rows[..1]), [("ping-in".into(), Chain::Input)]);
        assert_eq!(rows[0].packets_per_sec, 4.0);
        let dns = rows.iter().find(|r| r.line.kind.name() == "dns-out" && r.chain == Chain::Output).unwrap();
        assert_eq!((dns.packets_per_sec, dns.total.packets), (0.0, 50));
        assert!(!rows.iter().any(|r| r.line.kind.name() == "ssh-in"));
    }

    #[test]
    fn a_counter_that_went_down_has_rate_zero() {
        let t0 = Instant::now();
        let (before, ids) =
            snapshot(POLICY, &Ids::default(), t0, &[("web-in", Chain::Input, 1_000, 100_000)]);
        // `firewall zero`, then 3 packets.
        let (after, _) =
            snapshot(POLICY, &ids, t0 + Duration::from_secs(1), &[("web-in", Chain::Input, 3, 300)]);
        let rows = rows(Some(&before), &after);
        assert!(rows.iter().all(|r| r.packets_per_sec == 0.0 && r.bytes_per_sec == 0.0));
    }

    #[test]
    fn numbers_read_as_the_listing_reads_them() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_234), "1,234");
        assert_eq!(grouped(65_536), "65,536");
        assert_eq!(grouped(1_234_567), "1,234,567");
        let table = |entries, capacity, evicted| TableStats { entries, capacity, evicted };
        let text = conntrack_text(&table(1_234, 65_536, 0), &table(12, 16_384, 3));
        assert_eq!(text, "conntrack 1,234 / 65,536 (1.9%)  half-open 12 / 16,384  evicted 0, half-open 3");
        assert!(text.len() <= 80, "{text}");
        let zero = TableStats::default();
        assert_eq!(
            conntrack_text(&zero, &zero),
            "conntrack 0 / 0 (0.0%)  half-open 0 / 0  evicted 0, half-open 0"
        );
        assert_eq!(rate_text(0.0), "0");
        assert_eq!(rate_text(0.25), "0.2");
        assert_eq!(rate_text(19.96), "20.0");
        assert_eq!(rate_text(99.97), "100");
        assert_eq!(rate_text(123_456.0), "123K");
        assert_eq!(rate_text(2_500_000.0), "2500K");
    }

    #[test]
    fn intervals_are_seconds_within_reason() {
        assert_eq!(parse_interval("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.5"), Some(Duration::from_millis(500)));
        for bad in ["0", "0.01", "-1", "nan", "inf", "1s", "", "3601"] {
            assert_eq!(parse_interval(bad), None, "{bad:?}");
        }
    }

    fn busy_rows() -> Vec<Row> {
        let t0 = Instant::now();
        let (before, ids) = snapshot(POLICY, &Ids::default(), t0, &[]);
        let (after, _) = snapshot(
            POLICY,
            &ids,
            t0 + Duration::from_secs(1),
            &[("web-in", Chain::Input, 123_456, 98_765_432)],
        );
        rows(Some(&before), &after)
    }

    fn fields(columns: &[Column]) -> Vec<Field> {
        columns.iter().map(|c| c.field).collect()
    }

    #[test]
    fn at_80_columns_the_rule_and_its_source_show_in_full() {
        let rows = busy_rows();
        let columns = columns(80, &rows);
        let used: usize = columns.iter().map(|c| usize::from(c.width)).sum::<usize>() + columns.len() - 1;
        assert!(used <= 80, "{used} cells: {columns:?}");
        assert_eq!(&fields(&columns)[..8], &Field::ALL[..8], "{columns:?}");
        for column in &columns {
            let widest = rows.iter().map(|r| column.field.text(r).chars().count()).max().unwrap();
            if matches!(column.field, Field::Rule | Field::Source) || !column.field.is_flexible() {
                assert!(usize::from(column.width) >= widest, "{column:?} is narrower than {widest}");
            }
        }
    }

    #[test]
    fn a_wide_terminal_shows_every_column_whole() {
        let rows = busy_rows();
        let columns = columns(160, &rows);
        assert_eq!(fields(&columns), Field::ALL);
        for column in &columns {
            let widest = rows.iter().map(|r| column.field.text(r).chars().count()).max().unwrap();
            assert!(usize::from(column.width) >= widest, "{column:?}");
        }
    }

    #[test]
    fn a_narrow_terminal_keeps_the_numbers_and_the_rule() {
        let columns = columns(50, &busy_rows());
        assert_eq!(fields(&columns), &Field::ALL[..7]);
        assert!(columns[6].width > 0);
        assert_eq!(fit("unreachable-out", 6), "unrea…");
        assert_eq!(fit("ping-in", 7), "ping-in");
        assert_eq!(fit("ping-in", 0), "");
    }
}
