//! `firewall block --from FILE --list NAME` and `unblock --list NAME`: named blocklists,
//! what ipset's `hash:net` sets are to an iptables script, fed by a script of their own (a
//! fail2ban or CrowdSec export, a country's prefixes, Spamhaus DROP).
//!
//! A list is live state, as a block is: its prefixes are in the `BLOCK_LISTS` trie (the
//! programs look there after `BLOCKLIST`), its name, counter slot and size in the state
//! directory's index ([`BlockList`]), and its prefixes again as text beside the index. A
//! load diffs the file against that text, so a feed refreshed with a few changes touches a
//! few entries; a million prefixes cost one insert each, once. New prefixes go in before
//! the ones that left come out, so an address in both the old and the new list is never
//! let through; the list's counters go on.
//!
//! A list lasts until a feed replaces it or `unblock --list` lifts it, or, loaded with
//! `--for`, until its deadline, which the programs read from `LIST_DEADLINES` by the
//! list's slot. An entry of an expired list matches and blocks nothing; the programs then
//! ask the trie one bit wider than it (each entry's value carries its length), so a live
//! list's wider prefix still holds the address. One prefix in two lists is one entry,
//! counted on the list that lasts longer (of two alike, the one loaded last); when that
//! list lets it go, it passes to the other, not out of the trie.
use std::collections::{HashMap, HashSet};

use aya::maps::lpm_trie::Key;
use firewall_common::{
    Addr, CONFIG_HAS_BLOCKS, Direction, MAX_LISTED, block_counter, listed_slot, listed_value,
};

use crate::{
    kernel::{
        Filter,
        filter::kernel_time_ns,
        maps::{LiveMaps, MapsError, prefix_key},
        pins::{BlockList, StateLock},
        resize::{Resized, fit_block_slot},
    },
    ops::{
        Result,
        block::{BlockError, entries, free_slot},
        lockout::{SessionGuard, SshSession},
    },
    policy::{Prefix, from_addr},
    unix_now,
};

/// The longest list name.
const MAX_NAME: usize = 64;

/// Why a list, or its name, is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("{source_name}:{line}: {message}")]
    BadLine { source_name: String, line: usize, message: String },
    #[error(
        "{0:?} is not a list name: 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    BadName(String),
    #[error("no list named {name} (lists: {known})")]
    NoList { name: String, known: String },
    #[error("the named lists hold {MAX_LISTED} prefixes at most; with this {name} they would hold {total}")]
    TooMany { name: String, total: usize },
    #[error(
        "a list's name comes from its file: give it with --list NAME when the prefixes come from standard input"
    )]
    NoName,
}

/// Refuses a list name that could not be a file's (the index keeps each list's prefixes
/// in a file of its name) or a metric's label.
pub fn check_name(name: &str) -> std::result::Result<(), ListError> {
    let fits = (1..=MAX_NAME).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if fits { Ok(()) } else { Err(ListError::BadName(name.to_owned())) }
}

/// The prefixes of a list file: one address or prefix a line; `#` and `;` start a comment
/// (FireHOL's netsets use the one, Spamhaus DROP the other), blank lines are skipped. A
/// line that is neither is refused, naming `source_name` and the line.
pub fn parse_list(text: &str, source_name: &str) -> std::result::Result<Vec<Prefix>, ListError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split(['#', ';']).next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let prefix = Prefix::parse(content).map_err(|e| ListError::BadLine {
            source_name: source_name.to_owned(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(prefix);
    }
    Ok(out)
}

/// Prefixes, asked whether one holds an address: one hash set per family and length.
#[derive(Default)]
struct PrefixSet(HashMap<(bool, u8), HashSet<u128>>);

impl PrefixSet {
    fn of<'a>(prefixes: impl IntoIterator<Item = &'a Prefix>) -> PrefixSet {
        let mut set = PrefixSet::default();
        for p in prefixes {
            set.0.entry((p.is_v6(), p.len)).or_default().insert(bits(p.addr));
        }
        set
    }

    /// The prefix of the set that holds `addr`, if one does.
    fn holding(&self, addr: std::net::IpAddr) -> Option<Prefix> {
        let (v6, width) = (addr.is_ipv6(), if addr.is_ipv6() { 128 } else { 32 });
        self.0.iter().filter(|((family, _), _)| *family == v6).find_map(|(&(_, len), set)| {
            let network = bits(addr) & mask(width, len);
            set.contains(&network).then(|| Prefix::from_addr(&to_addr(v6, network), mapped_len(v6, len)))
        })
    }
}

fn bits(addr: std::net::IpAddr) -> u128 {
    match addr {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(width: u32, len: u8) -> u128 {
    let len = u32::from(len);
    if len == 0 { 0 } else { (u128::MAX << (128 - len)) >> (128 - width) }
}

fn to_addr(v6: bool, value: u128) -> firewall_common::Addr {
    let ip =
        if v6 { std::net::IpAddr::V6(value.into()) } else { std::net::IpAddr::V4((value as u32).into()) };
    crate::policy::to_addr(ip)
}

fn mapped_len(v6: bool, len: u8) -> u32 {
    u32::from(len) + if v6 { 0 } else { 96 }
}

/// What loading a list did.
#[derive(Debug, PartialEq, Eq)]
pub struct ListLoaded {
    pub name: String,
    /// The prefixes it holds now.
    pub entries: usize,
    pub added: usize,
    pub removed: usize,
    pub flows_ended: usize,
    /// No list had the name before.
    pub created: bool,
    /// `--for`: it expires then.
    pub duration: Option<std::time::Duration>,
    /// `COUNTERS`, grown to count a new list's slot.
    pub resized: Vec<Resized>,
}

impl ListLoaded {
    /// The log's event of it.
    pub fn event<'a>(&self, iface: &'a str) -> crate::log::Event<'a> {
        crate::log::Event::BlockList {
            iface,
            list: self.name.clone(),
            entries: self.entries,
            added: self.added,
            removed: self.removed,
            flows_ended: self.flows_ended,
            duration: self.duration,
        }
    }
}

/// Makes the list `name` hold exactly `prefixes` (a list made if none has the name),
/// blocking each from now until the list is loaded again without it or removed, or, with
/// a `duration`, until it has passed (the kernel's clock: the programs stop blocking
/// then). Refuses, before changing anything, a prefix that holds the SSH session the
/// command runs from (unless [`SessionGuard::Skip`]), and more prefixes than the lists may
/// hold together.
pub fn load(
    filter: &Filter,
    name: &str,
    prefixes: &[Prefix],
    duration: Option<std::time::Duration>,
    session_guard: SessionGuard,
) -> Result<ListLoaded> {
    check_name(name)?;
    let lock = filter.lock()?;
    let pins = lock.pins();
    let new: HashSet<Prefix> = prefixes.iter().copied().collect();
    if let Some(session) = SshSession::current().filter(|_| session_guard == SessionGuard::Check) {
        let policy = pins.policy()?;
        if session.to_host(&policy)
            && let Some(prefix) = PrefixSet::of(&new).holding(session.client)
        {
            return Err(BlockError::WouldCutSession { prefix, session }.into());
        }
    }
    let mut maps = LiveMaps::open(pins)?;
    if maps.block_lists.is_none() {
        return Err(MapsError::NoBlockLists.into());
    }
    if duration.is_some() && maps.list_deadlines.is_none() {
        return Err(MapsError::NoListExpiry.into());
    }
    let mut lists = maps.lists.clone();
    let others: usize = lists.iter().filter(|l| l.name != name).map(|l| l.entries).sum();
    if others + new.len() > MAX_LISTED as usize {
        return Err(ListError::TooMany { name: name.to_owned(), total: others + new.len() }.into());
    }
    let old: HashSet<Prefix> = members(&lock, name)?;
    let previous = lists.iter().find(|l| l.name == name).cloned();
    let created = previous.is_none();
    let mut resized = Vec::new();
    let slot = match &previous {
        Some(list) => list.slot,
        None => {
            let used: HashSet<u32> =
                entries(&maps)?.iter().map(|e| e.slot).chain(lists.iter().map(|l| l.slot)).collect();
            let slot = free_slot(&used).ok_or(BlockError::Full)?;
            resized = fit_block_slot(pins, &mut maps, slot)?;
            maps.zero_counter(block_counter(slot, Direction::In))?;
            maps.zero_counter(block_counter(slot, Direction::Out))?;
            slot
        }
    };
    let added: Vec<Prefix> = new.difference(&old).copied().collect();
    let removed: Vec<Prefix> = old.difference(&new).copied().collect();
    let deadline_ns = duration.map_or(0, |d| {
        kernel_time_ns().saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).max(1)
    });
    // Entries carry their lengths once the programs read them; a list whose older entries
    // lack them gets them all written when it first may expire.
    let lengths = maps.list_deadlines.is_some();
    let rewrite_all = lengths && deadline_ns != 0 && previous.as_ref().is_some_and(|l| !l.lengths);
    let this = BlockList {
        name: name.into(),
        slot,
        // Recorded first as the union of old and new (the new prefixes appended): should
        // this command die halfway, the record still holds every entry the map may hold
        // for the list, and the next load removes what it must.
        entries: old.len() + added.len(),
        loaded: unix_now(),
        deadline_ns,
        lengths: lengths && (rewrite_all || previous.as_ref().is_none_or(|l| l.lengths)),
    };
    record(&lock, &mut lists, this.clone())?;
    if !added.is_empty() {
        lock.append_block_list_text(name, &text_of(added.iter()))?;
    }
    // Its deadline before its entries: a slot a removed list had keeps that list's.
    maps.set_list_deadline(slot, deadline_ns)?;
    // The prefixes the other lists hold too, each counted on the one that lasts longest:
    // those this list leaves stay theirs, and those it shares it may now outlast, or not.
    let others = other_members(&lock, &lists, name)?;
    let shared = new.iter().filter(|p| others.contains_key(p));
    let written: Vec<(Prefix, u32)> =
        if rewrite_all { new.iter().collect::<Vec<_>>() } else { added.iter().chain(shared).collect() }
            .into_iter()
            .map(|p| match others.get(p) {
                Some(&(other, lasts)) if lasts > this.lasts() => (*p, other),
                _ => (*p, slot),
            })
            .collect();
    let kept_by: HashMap<Prefix, u32> = others.into_iter().map(|(p, (other, _))| (p, other)).collect();
    // A list loaded again after it expired blocks all its prefixes anew: the flows its
    // peers opened meanwhile end, as a new prefix's do.
    let revived = previous.as_ref().is_some_and(|l| l.expired(kernel_time_ns()));
    let newly_blocked: Vec<Prefix> = if revived { new.iter().copied().collect() } else { added.clone() };
    let flows_ended = apply_list(&mut maps, &written, &newly_blocked, &removed, &kept_by)?;
    if !removed.is_empty() {
        lock.save_block_list_text(name, Some(&text_of(new.iter())))?;
    }
    record(&lock, &mut lists, BlockList { entries: new.len(), ..this })?;
    maps.lists = lists;
    let loaded = ListLoaded {
        name: name.into(),
        entries: new.len(),
        added: added.len(),
        removed: removed.len(),
        flows_ended,
        created,
        duration,
        resized,
    };
    loaded.event(&pins.iface).log();
    Ok(loaded)
}

/// Removes the list `name`: its prefixes pass again (but those another list holds).
/// Returns how many it held.
pub fn remove(filter: &Filter, name: &str) -> Result<usize> {
    let lock = filter.lock()?;
    let mut maps = LiveMaps::open(lock.pins())?;
    let mut lists = maps.lists.clone();
    let Some(at) = lists.iter().position(|l| l.name == name) else {
        let known: Vec<&str> = lists.iter().map(|l| l.name.as_str()).collect();
        let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        return Err(ListError::NoList { name: name.into(), known }.into());
    };
    let old = members(&lock, name)?;
    let kept_by: HashMap<Prefix, u32> =
        other_members(&lock, &lists, name)?.into_iter().map(|(p, (slot, _))| (p, slot)).collect();
    let old: Vec<Prefix> = old.into_iter().collect();
    apply_list(&mut maps, &[], &[], &old, &kept_by)?;
    maps.set_list_deadline(lists[at].slot, 0)?;
    lists.remove(at);
    lock.save_block_lists(&lists)?;
    lock.save_block_list_text(name, None)?;
    maps.lists = lists;
    crate::log::Event::UnblockList { iface: &lock.pins().iface, list: name.into(), entries: old.len() }.log();
    Ok(old.len())
}

/// What a load does to the maps, once the record holds both the old prefixes and the
/// new: writes each prefix of `written` with the slot it counts on (the list's own, or
/// that of another that holds it too and lasts longer), ends the flows of the peers inside
/// `newly_blocked` (the programs look at flows before the blocklists), then lets `removed`
/// go, but those another list holds (`kept_by`), which pass to that list's slot. Returns
/// how many flows ended.
pub fn apply_list<S: std::hash::BuildHasher>(
    maps: &mut LiveMaps,
    written: &[(Prefix, u32)],
    newly_blocked: &[Prefix],
    removed: &[Prefix],
    kept_by: &HashMap<Prefix, u32, S>,
) -> Result<usize> {
    let trie = maps.block_lists_batch().ok_or(MapsError::NoBlockLists)?;
    trie.update(&written.iter().map(|(prefix, slot)| listed_entry(maps, prefix, *slot)).collect::<Vec<_>>())?;
    if !newly_blocked.is_empty() {
        maps.set_flag(CONFIG_HAS_BLOCKS, true)?;
    }
    let_go(maps, removed, kept_by)?;
    let newly = PrefixSet::of(newly_blocked);
    let flows_ended = if newly_blocked.is_empty() {
        0
    } else {
        maps.end_flows(|peer| newly.holding(from_addr(peer)).is_some())?
    };
    maps.settle_blocks_flag()?;
    Ok(flows_ended)
}

/// Takes `prefixes` out of the trie, but those another list holds (`kept_by`), which
/// that list's slot counts from now on.
fn let_go<S: std::hash::BuildHasher>(
    maps: &LiveMaps,
    prefixes: &[Prefix],
    kept_by: &HashMap<Prefix, u32, S>,
) -> Result<()> {
    let trie = maps.block_lists_batch().ok_or(MapsError::NoBlockLists)?;
    let (kept, gone): (Vec<&Prefix>, Vec<&Prefix>) = prefixes.iter().partition(|p| kept_by.contains_key(p));
    trie.update(&kept.iter().map(|p| listed_entry(maps, p, kept_by[*p])).collect::<Vec<_>>())?;
    trie.remove(&gone.iter().map(|p| prefix_key(p)).collect::<Vec<_>>())?;
    Ok(())
}

/// `prefix`'s entry in the trie, counted on `slot`: with its length, unless the live
/// programs are older than lists that expire (they read the value as the slot alone).
fn listed_entry(maps: &LiveMaps, prefix: &Prefix, slot: u32) -> (Key<Addr>, u32) {
    let key = prefix_key(prefix);
    let value = if maps.list_deadlines.is_some() { listed_value(slot, key.prefix_len()) } else { slot };
    (key, value)
}

/// The name of the list whose entry holds `prefix`, if one does (asked of the trie, which
/// answers with the longest match).
pub fn list_holding(maps: &LiveMaps, prefix: &Prefix) -> Option<String> {
    let slot = listed_slot(maps.block_lists.as_ref()?.get(&prefix_key(prefix), 0).ok()?);
    maps.lists.iter().find(|l| l.slot == slot).map(|l| l.name.clone())
}

/// The prefixes the list `name` held when it was last loaded.
fn members(lock: &StateLock, name: &str) -> Result<HashSet<Prefix>> {
    let text = lock.pins().block_list_text(name)?;
    // Written by `load` from parsed prefixes: a line that fails is a damaged state file.
    Ok(parse_list(&text, &format!("the record of list {name}"))?.into_iter().collect())
}

/// The prefixes of every list but `name`, each with the slot of the list holding it that
/// lasts longest (of two alike, the one loaded last), and how long that is
/// ([`BlockList::lasts`]).
fn other_members(lock: &StateLock, lists: &[BlockList], name: &str) -> Result<HashMap<Prefix, (u32, u64)>> {
    let mut others: Vec<&BlockList> = lists.iter().filter(|l| l.name != name).collect();
    others.sort_by_key(|l| (l.lasts(), l.loaded));
    let mut out = HashMap::new();
    for list in others {
        for prefix in members(lock, &list.name)? {
            out.insert(prefix, (list.slot, list.lasts()));
        }
    }
    Ok(out)
}

/// Puts `list` into the index in place of the one of its name, and writes the index.
fn record(lock: &StateLock, lists: &mut Vec<BlockList>, list: BlockList) -> Result<()> {
    match lists.iter_mut().find(|l| l.name == list.name) {
        Some(old) => *old = list,
        None => lists.push(list),
    }
    lists.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(lock.save_block_lists(lists)?)
}

/// Prefixes as a list file holds them: sorted, one a line.
fn text_of<'a>(prefixes: impl Iterator<Item = &'a Prefix>) -> String {
    let mut sorted: Vec<&Prefix> = prefixes.collect();
    sorted.sort();
    sorted.dedup();
    let mut text = String::with_capacity(sorted.len() * 16);
    for prefix in sorted {
        text.push_str(&prefix.to_string());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        Prefix::parse(text).unwrap()
    }

    #[test]
    fn a_list_file_takes_comments_of_either_kind_and_blank_lines() {
        let text = "# a feed\n192.0.2.7\n\n198.51.100.0/24 ; SBL123\n2001:db8::/32   # v6\n  203.0.113.9  \n";
        assert_eq!(
            parse_list(text, "feed.txt"),
            Ok(vec![p("192.0.2.7"), p("198.51.100.0/24"), p("2001:db8::/32"), p("203.0.113.9")])
        );
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_number() {
        let err = parse_list("192.0.2.7\n192.0.2.300\n", "feed.txt").unwrap_err();
        assert_eq!(err.to_string(), "feed.txt:2: bad address \"192.0.2.300\"");
        let err = parse_list("10.0.0.1/8\n", "feed.txt").unwrap_err();
        assert_eq!(err.to_string(), "feed.txt:1: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?");
    }

    #[test]
    fn list_names_are_file_names_and_labels() {
        for good in ["crowdsec", "spamhaus-drop", "cn_v4", "feed.2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "ünï", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_prefix_set_finds_the_prefix_holding_an_address() {
        let set = PrefixSet::of(&[p("192.0.2.0/24"), p("198.51.100.7"), p("2001:db8::/32"), p("0.0.0.0/0")]);
        let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
        assert!(set.holding(ip("203.0.113.1")).is_some_and(|h| h == p("0.0.0.0/0")));
        assert_eq!(set.holding(ip("2001:db8::1")), Some(p("2001:db8::/32")));
        assert_eq!(set.holding(ip("2001:db9::1")), None);
        let narrow = PrefixSet::of(&[p("192.0.2.0/24"), p("198.51.100.7")]);
        assert_eq!(narrow.holding(ip("192.0.2.200")), Some(p("192.0.2.0/24")));
        assert_eq!(narrow.holding(ip("198.51.100.7")), Some(p("198.51.100.7")));
        assert_eq!(narrow.holding(ip("198.51.100.8")), None);
    }
}
