//! `firewall blocklist`, and the blocklist's lines in `list`.
use firewall_common::{Builtin, Chain, Counter, Direction, block_counter, builtin_counter};
use serde::Serialize;

use crate::{
    compile::{ANYWHERE, Ids, LineKind, ListChain, ListLine},
    kernel::{filter::kernel_time_ns, maps::LiveMaps},
    ops::{Result, block::entries},
};

/// One entry, as `blocklist` and `list` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockView {
    pub prefix: String,
    /// Seconds until it ends; `None`: until unblocked.
    pub expires_secs: Option<u64>,
    /// Packets and bytes from it (INPUT) and to it (OUTPUT).
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// For an offender a rule's `per_source` limit or trap blocked: the rule. Its packets
    /// are counted with every offender's, and the flows they refused, on the `source-limit`
    /// lines; here they read 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    /// The rule that blocked it is a trap.
    #[serde(skip)]
    pub trapped: bool,
    #[serde(skip)]
    pub slot: u32,
}

/// One named list (`firewall block --from`), as `blocklist` and `list` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListView {
    pub name: String,
    /// The prefixes it holds.
    pub entries: usize,
    /// When it was last loaded, in seconds since the epoch.
    pub loaded: u64,
    /// Seconds until it expires (loaded with `--for`), 0 once it has; `None`: until loaded
    /// again or removed.
    pub expires_secs: Option<u64>,
    /// Its deadline has passed: its prefixes block nothing, and stay in the trie until the
    /// list is loaded again or removed.
    pub expired: bool,
    /// Packets and bytes from its prefixes (INPUT) and to them (OUTPUT).
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    #[serde(skip)]
    pub slot: u32,
}

/// The named lists, with their counters.
pub fn list_views(maps: &LiveMaps, counters: &[Counter]) -> Vec<ListView> {
    let now = kernel_time_ns();
    let counter = |id: u32| counters.get(id as usize).copied().unwrap_or_default();
    maps.lists
        .iter()
        .map(|list| {
            let (i, o) = (
                counter(block_counter(list.slot, Direction::In)),
                counter(block_counter(list.slot, Direction::Out)),
            );
            ListView {
                name: list.name.clone(),
                entries: list.entries,
                loaded: list.loaded,
                expires_secs: (list.deadline_ns != 0)
                    .then(|| list.deadline_ns.saturating_sub(now).div_ceil(1_000_000_000)),
                expired: list.expired(now),
                packets_in: i.packets,
                bytes_in: i.bytes,
                packets_out: o.packets,
                bytes_out: o.bytes,
                slot: list.slot,
            }
        })
        .collect()
}

/// The live entries, with their counters; `ids` names the rules of offenders' entries.
pub fn views(maps: &LiveMaps, counters: &[Counter], ids: &Ids) -> Result<Vec<BlockView>> {
    let now = kernel_time_ns();
    let counter = |id: u32| counters.get(id as usize).copied().unwrap_or_default();
    Ok(entries(maps)?
        .into_iter()
        .filter(|e| !e.expired(now))
        .map(|e| {
            let (i, o) = match e.offender_of {
                Some(_) => (Counter::default(), Counter::default()),
                None => (
                    counter(block_counter(e.slot, Direction::In)),
                    counter(block_counter(e.slot, Direction::Out)),
                ),
            };
            BlockView {
                prefix: e.prefix.to_string(),
                expires_secs: (e.deadline_ns != 0).then(|| (e.deadline_ns - now).div_ceil(1_000_000_000)),
                packets_in: i.packets,
                bytes_in: i.bytes,
                packets_out: o.packets,
                bytes_out: o.bytes,
                blocked_by: e
                    .offender_of
                    .map(|rule| ids.rule_name(rule).unwrap_or("a removed rule").to_owned()),
                trapped: e.offender_of.is_some_and(|rule| is_trap(maps, rule)),
                slot: e.slot,
            }
        })
        .collect())
}

/// Whether rule `rule`'s entry in `PER_SOURCE_LIMITS` is a trap's: a block with no rate (a
/// `per_source` limit that blocks always has one).
fn is_trap(maps: &LiveMaps, rule: u32) -> bool {
    let limit = maps.per_source_limits.as_ref().and_then(|map| map.get(&rule, 0).ok());
    limit.is_some_and(|l| l.interval_ns == 0 && l.block_ns != 0)
}

/// `9m58s`, `2d3h`: the largest two units.
pub fn human_duration(secs: u64) -> String {
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (name, size) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.concat()
}

fn expiry_text(view: &BlockView) -> String {
    match view.expires_secs {
        Some(secs) => format!("blocked, expires in {}", human_duration(secs)),
        None => "blocked until unblocked".into(),
    }
}

/// Puts the blocklist's lines into `list`'s chains where the programs check them: after
/// the built-in first lines of INPUT (from the blocked peers) and OUTPUT (to them), each
/// entry's, then each named list's, as iptables lists an ipset's `--match-set` line.
pub fn insert_lines(chains: &mut [ListChain], views: &[BlockView], lists: &[ListView]) {
    for chain in chains.iter_mut() {
        let direction = match chain.chain {
            Chain::Input => Direction::In,
            Chain::Output => Direction::Out,
            Chain::Forward => continue,
        };
        let after = builtin_counter(chain.chain, Builtin::Invalid);
        let at = chain.lines.iter().position(|l| l.counter == after).map_or(0, |i| i + 1);
        let (peer_is, flag) = match direction {
            Direction::In => ("source", "src"),
            Direction::Out => ("destination", "dst"),
        };
        let line = |kind, peer: String, matches, counter| {
            let (source, destination) = match peer_is {
                "source" => (peer, ANYWHERE.to_owned()),
                _ => (ANYWHERE.to_owned(), peer),
            };
            ListLine { kind, target: "DROP", prot: "all", source, destination, matches, ports: None, counter }
        };
        // An offender's packets are on the `source-limit` line.
        let entries = views.iter().filter(|view| view.blocked_by.is_none()).map(|view| {
            line(
                LineKind::Blocklist(view.prefix.clone()),
                view.prefix.clone(),
                expiry_text(view),
                block_counter(view.slot, direction),
            )
        });
        let named = lists.iter().map(|list| {
            line(
                LineKind::NamedList(list.name.clone()),
                ANYWHERE.to_owned(),
                format!(
                    "match-set {} {flag} ({} prefixes{})",
                    list.name,
                    list.entries,
                    list_expiry_text(list)
                ),
                block_counter(list.slot, direction),
            )
        });
        let lines: Vec<ListLine> = entries.chain(named).collect();
        chain.lines.splice(at..at, lines);
    }
}

/// `firewall blocklist`: one line per entry, then one per named list.
pub fn render(views: &[BlockView], lists: &[ListView]) -> String {
    if views.is_empty() && lists.is_empty() {
        return "no address is blocked\n".into();
    }
    let mut out = render_entries(views);
    if !lists.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&render_lists(lists));
    }
    out
}

/// A list's expiry as its `match-set` line in `list` tells it: nothing for one that
/// never expires.
fn list_expiry_text(list: &ListView) -> String {
    match list.expires_secs {
        None => String::new(),
        Some(_) if list.expired => ", expired".into(),
        Some(secs) => format!(", expires in {}", human_duration(secs)),
    }
}

/// The named lists' table: one line each, with its size, counters and expiry.
fn render_lists(lists: &[ListView]) -> String {
    let width = lists.iter().map(|l| l.name.len()).max().unwrap_or(0).max(18);
    let mut out = format!(
        "{:<width$} {:>10} {:>10} {:>10} {:>10} {:>10}  expires\n",
        "list", "prefixes", "pkts in", "bytes in", "pkts out", "bytes out"
    );
    for l in lists {
        let expires = match l.expires_secs {
            None => "never (until removed)".to_owned(),
            Some(_) if l.expired => "expired: blocks nothing (until loaded again or removed)".to_owned(),
            Some(secs) => format!("in {}", human_duration(secs)),
        };
        out.push_str(&format!(
            "{:<width$} {:>10} {:>10} {:>10} {:>10} {:>10}  {expires}\n",
            l.name, l.entries, l.packets_in, l.bytes_in, l.packets_out, l.bytes_out
        ));
    }
    out
}

/// The entries' table; empty when there are none.
fn render_entries(views: &[BlockView]) -> String {
    if views.is_empty() {
        return String::new();
    }
    let width = views.iter().map(|v| v.prefix.len()).max().unwrap_or(0).max(18);
    let mut out = format!(
        "{:<width$} {:>10} {:>10} {:>10} {:>10}  expires\n",
        "address", "pkts in", "bytes in", "pkts out", "bytes out"
    );
    for v in views {
        let expires =
            v.expires_secs.map_or("never (until unblocked)".into(), |s| format!("in {}", human_duration(s)));
        match &v.blocked_by {
            None => out.push_str(&format!(
                "{:<width$} {:>10} {:>10} {:>10} {:>10}  {expires}\n",
                v.prefix, v.packets_in, v.bytes_in, v.packets_out, v.bytes_out
            )),
            Some(rule) => out.push_str(&format!(
                "{:<width$} {:>10} {:>10} {:>10} {:>10}  {expires} ({} rule {rule}'s {}; counted on source-limit)\n",
                v.prefix,
                "-",
                "-",
                "-",
                "-",
                if v.trapped { "caught by" } else { "over" },
                if v.trapped { "trap" } else { "per_source limit" }
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(598), "9m58s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(2 * 86_400 + 3 * 3600 + 5), "2d3h");
    }
}
