//! `firewall block` and `unblock` (the entries are shown by [`crate::view::blocklist`]): what fail2ban does, without its setuid
//! scripts. A block is live state, not policy: it lives in the `BLOCKLIST` map only
//! (`reload` and `up` over a live filter leave it alone, `down` ends it), and nothing
//! passes to or from an address inside it, checked before the allow-lists and anti-spoof
//! lists. A block `--for` a while carries its deadline in the map, and the programs stop
//! honouring it then: expiry needs no daemon, no cron job, no second command. While the
//! trie is empty `CONFIG_HAS_BLOCKS` is off and the programs skip it (unless a rule's
//! `per_source` limit blocks offenders: then the programs write entries themselves, and
//! the flag stays on); changes hold the state lock, so two at once cannot disagree about
//! that flag.
//!
//! Offenders a `per_source` limit blocked are entries too, single addresses with
//! [`OFFENDER_SLOT`] for their slot (counted together on the `source-limit` lines):
//! `unblock` lifts them, and `block` of one makes it an entry of its own, with counters.
//!
//! The entries obey one rule, so that the kernel's longest-prefix match is always the
//! entry that decides: no entry expires before an entry it lies inside (see
//! [`firewall_common::BlockEntry`]). [`plan_block`] keeps it: a block already covered by a
//! wider one lasting at least as long is redundant, and a new block absorbs the narrower
//! entries it outlasts.
use std::time::Duration;

use firewall_common::{
    BlockEntry, CONFIG_HAS_BLOCKS, Direction, MAP_BLOCKLIST, MAX_BLOCKED, OFFENDER_SLOT, block_counter,
};

use crate::{
    kernel::{
        Filter,
        filter::kernel_time_ns,
        maps::{LiveMaps, call, gone_is_ok, prefix_key},
        resize::{Resized, fit_block_slot},
    },
    ops::{
        Result,
        lockout::{SessionGuard, SshSession},
    },
    policy::{Prefix, from_addr},
};

/// A blocklist entry as user space sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub prefix: Prefix,
    /// `CLOCK_MONOTONIC_COARSE` ns; 0: until unblocked.
    pub deadline_ns: u64,
    pub slot: u32,
    /// The index of the rule whose `per_source` limit blocked it, for an offender the
    /// programs wrote ([`OFFENDER_SLOT`]).
    pub offender_of: Option<u32>,
}

impl Entry {
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.deadline_ns != 0 && self.deadline_ns <= now
    }
}

/// Whether a block ending at `a` lasts at least as long as one ending at `b` (0: never ends).
fn outlasts(a: u64, b: u64) -> bool {
    a == 0 || (b != 0 && a >= b)
}

/// Whether `wide` contains all of `narrow`.
fn covers(wide: &Prefix, narrow: &Prefix) -> bool {
    wide.addr.is_ipv4() == narrow.addr.is_ipv4() && wide.len <= narrow.len && wide.contains(narrow.addr)
}

/// Why a block or an unblock is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("the blocklist is full ({MAX_BLOCKED} entries); unblock some, or block a wider prefix")]
    Full,
    #[error(
        "{prefix} holds this SSH session's client ({session}): blocking it would cut the session off; pass --force to block it anyway"
    )]
    WouldCutSession { prefix: Prefix, session: SshSession },
    #[error("{prefix} is not an entry of the blocklist; it is blocked by {by}")]
    InsideBlock { prefix: Prefix, by: Prefix },
    #[error("{prefix} is not blocked")]
    NotBlocked { prefix: Prefix },
    #[error(
        "{prefix} is blocked by the list {list}: load the list again without it (`firewall block --from FILE --list {list}`), or lift the whole list with `firewall unblock --list {list}`"
    )]
    InList { prefix: Prefix, list: String },
}

/// What one `block` does to the map.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockPlan {
    /// A wider entry lasting at least as long blocks it already.
    Covered { by: Prefix },
    /// Insert (or update) the entry, then remove the narrower ones it absorbs.
    Insert { entry: Entry, absorbed: Vec<Prefix> },
}

/// Plans blocking `prefix` until `deadline_ns` (0: until unblocked) among the `live`
/// entries (expired ones count as absent); the named lists hold the slots `lists`.
pub fn plan_block(
    live: &[Entry],
    lists: &[u32],
    prefix: Prefix,
    deadline_ns: u64,
    now: u64,
) -> std::result::Result<BlockPlan, BlockError> {
    let active: Vec<&Entry> = live.iter().filter(|e| !e.expired(now)).collect();
    if let Some(wider) = active
        .iter()
        .find(|e| e.prefix != prefix && covers(&e.prefix, &prefix) && outlasts(e.deadline_ns, deadline_ns))
    {
        return Ok(BlockPlan::Covered { by: wider.prefix });
    }
    // The same prefix keeps its slot, so its counters go on; else the lowest free slot
    // (an expired entry's is free: it is removed before anything else). An offender's
    // entry has none of its own.
    let slot = match live.iter().find(|e| e.prefix == prefix && e.offender_of.is_none()) {
        Some(same) => same.slot,
        None => {
            let used: std::collections::HashSet<u32> =
                active.iter().map(|e| e.slot).chain(lists.iter().copied()).collect();
            free_slot(&used).ok_or(BlockError::Full)?
        }
    };
    let absorbed = active
        .iter()
        .filter(|e| e.prefix != prefix && covers(&prefix, &e.prefix) && outlasts(deadline_ns, e.deadline_ns))
        .map(|e| e.prefix)
        .collect();
    Ok(BlockPlan::Insert { entry: Entry { prefix, deadline_ns, slot, offender_of: None }, absorbed })
}

/// The lowest counter slot not in `used`.
pub(crate) fn free_slot(used: &std::collections::HashSet<u32>) -> Option<u32> {
    (0..MAX_BLOCKED).find(|s| !used.contains(s))
}

/// Every entry in the map, expired ones included.
pub fn entries(maps: &LiveMaps) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in &maps.blocklist {
        let (key, value) = item.map_err(call(MAP_BLOCKLIST, "iterate"))?;
        out.push(Entry {
            prefix: Prefix::from_addr(&key.data(), key.prefix_len()),
            deadline_ns: value.deadline_ns,
            slot: value.slot,
            offender_of: (value.slot == OFFENDER_SLOT).then_some(value.rule),
        });
    }
    out.sort_by_key(|e| e.prefix);
    Ok(out)
}

/// Removes expired entries: their slots are free again.
fn sweep(maps: &mut LiveMaps, live: &[Entry], now: u64) {
    for entry in live.iter().filter(|e| e.expired(now)) {
        // Another command may have swept it meanwhile.
        let _ = maps.blocklist.remove(&prefix_key(&entry.prefix));
    }
}

/// What one address of a `block` came to.
#[derive(Debug)]
pub enum Blocked {
    Added { prefix: Prefix, absorbed: Vec<Prefix>, flows_ended: usize },
    Covered { prefix: Prefix, by: Prefix },
}

impl Blocked {
    /// The log's event of a block added (none for one covered already).
    pub fn event<'a>(&self, iface: &'a str, duration: Option<Duration>) -> Option<crate::log::Event<'a>> {
        let Blocked::Added { prefix, absorbed, flows_ended } = self else { return None };
        Some(crate::log::Event::Block {
            iface,
            prefix: prefix.to_string(),
            duration,
            replaced: absorbed.iter().map(ToString::to_string).collect(),
            flows_ended: *flows_ended,
        })
    }

    /// Its one line, as `block` prints it: the log's for a block added.
    pub fn line(&self, iface: &str, duration: Option<Duration>) -> String {
        match (self, self.event(iface, duration)) {
            (_, Some(event)) => event.line("firewall"),
            (Blocked::Covered { prefix, by }, None) => {
                format!(
                    "firewall: {prefix} is blocked already by {by}, for at least as long; nothing changed"
                )
            }
            (Blocked::Added { .. }, None) => unreachable!("an added block has its event"),
        }
    }
}

/// Blocks each prefix, `duration` long (`None`: until unblocked), at once: their flows
/// end, and no packet passes to or from them. Refuses, before changing anything, a bad
/// address, or one that holds the SSH session the command runs from (unless [`SessionGuard::Skip`]).
pub fn block(
    filter: &Filter,
    prefixes: &[Prefix],
    duration: Option<Duration>,
    session_guard: SessionGuard,
) -> Result<Blocks> {
    // Two changes at once would each decide the trie's flag on what they saw.
    let lock = filter.lock()?;
    let pins = lock.pins();
    if let Some(session) = SshSession::current().filter(|_| session_guard == SessionGuard::Check) {
        let policy = pins.policy()?;
        if let Some(prefix) = prefixes.iter().find(|p| session.to_host(&policy) && p.contains(session.client))
        {
            return Err(BlockError::WouldCutSession { prefix: *prefix, session }.into());
        }
    }
    let mut maps = LiveMaps::open(pins)?;
    let now = kernel_time_ns();
    let deadline_ns = match duration {
        None => 0,
        Some(d) => now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    };
    let mut done = Blocks::default();
    for &prefix in prefixes {
        let blocked = apply_block_making_room(&mut maps, prefix, deadline_ns, now, |maps, slot| {
            done.resized.extend(fit_block_slot(pins, maps, slot)?);
            Ok(())
        })?;
        if let Some(event) = blocked.event(&pins.iface, duration) {
            event.log();
        }
        done.each.push(blocked);
    }
    maps.settle_blocks_flag()?;
    Ok(done)
}

/// What [`block`] did.
#[derive(Debug, Default)]
pub struct Blocks {
    /// Each prefix's, in the order given.
    pub each: Vec<Blocked>,
    /// `COUNTERS`, grown to count the new entries' slots.
    pub resized: Vec<Resized>,
}

/// What `block` does to the maps for one prefix, once it has checked it and holds the
/// lock: the entry nested among the others (or found covered), its counters zeroed if it
/// is new, the flag set, its peers' flows ended. `now` is the kernel's clock. `maps`
/// count every slot (a loaded object's, not pinned: see `block` for a live filter's).
pub fn apply_block(maps: &mut LiveMaps, prefix: Prefix, deadline_ns: u64, now: u64) -> Result<Blocked> {
    apply_block_making_room(maps, prefix, deadline_ns, now, |_, _| Ok(()))
}

/// [`apply_block`], `make_room` called with the slot a new entry takes before its
/// counters are zeroed (a live filter's `COUNTERS` grows to count it).
fn apply_block_making_room(
    maps: &mut LiveMaps,
    prefix: Prefix,
    deadline_ns: u64,
    now: u64,
    mut make_room: impl FnMut(&mut LiveMaps, u32) -> Result<()>,
) -> Result<Blocked> {
    let live = entries(maps)?;
    sweep(maps, &live, now);
    let lists: Vec<u32> = maps.lists.iter().map(|list| list.slot).collect();
    match plan_block(&live, &lists, prefix, deadline_ns, now)? {
        BlockPlan::Covered { by } => Ok(Blocked::Covered { prefix, by }),
        BlockPlan::Insert { entry, absorbed } => {
            if !live.iter().any(|e| e.prefix == prefix && e.slot == entry.slot && !e.expired(now)) {
                make_room(maps, entry.slot)?;
                maps.zero_counter(block_counter(entry.slot, Direction::In))?;
                maps.zero_counter(block_counter(entry.slot, Direction::Out))?;
            }
            let value = BlockEntry { deadline_ns: entry.deadline_ns, slot: entry.slot, rule: 0 };
            maps.blocklist.insert(&prefix_key(&prefix), value, 0).map_err(call(MAP_BLOCKLIST, "insert"))?;
            maps.set_flag(CONFIG_HAS_BLOCKS, true)?;
            // The wider entry is in: its narrower ones can go without a gap.
            for inner in &absorbed {
                let _ = maps.blocklist.remove(&prefix_key(inner));
            }
            // Flows check before the blocklist: the blocked peers' flows must end.
            let flows_ended = maps.end_flows(|peer| prefix.contains(from_addr(peer)))?;
            Ok(Blocked::Added { prefix, absorbed, flows_ended })
        }
    }
}

/// Unblocks each prefix: each must be an entry (a single address inside a wider block
/// is refused, naming the block).
pub fn unblock(filter: &Filter, prefixes: &[Prefix]) -> Result<()> {
    let lock = filter.lock()?;
    let mut maps = LiveMaps::open(lock.pins())?;
    lift_blocks(&mut maps, prefixes, kernel_time_ns())
}

/// What `unblock` does to the maps, once it holds the lock: each prefix must be a live
/// entry (one only inside a wider block is refused, naming the block), or nothing changes.
pub fn lift_blocks(maps: &mut LiveMaps, prefixes: &[Prefix], now: u64) -> Result<()> {
    let live = entries(maps)?;
    for prefix in prefixes {
        if live.iter().any(|e| e.prefix == *prefix && !e.expired(now)) {
            continue;
        }
        let refused = match live.iter().find(|e| covers(&e.prefix, prefix) && !e.expired(now)) {
            Some(wider) => BlockError::InsideBlock { prefix: *prefix, by: wider.prefix },
            None => match crate::ops::block_lists::list_holding(maps, prefix) {
                Some(list) => BlockError::InList { prefix: *prefix, list },
                None => BlockError::NotBlocked { prefix: *prefix },
            },
        };
        return Err(refused.into());
    }
    sweep(maps, &live, now);
    for prefix in prefixes {
        gone_is_ok(maps.blocklist.remove(&prefix_key(prefix))).map_err(call(MAP_BLOCKLIST, "remove"))?;
    }
    Ok(maps.settle_blocks_flag()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        Prefix::parse(text).unwrap()
    }

    fn e(prefix: &str, deadline_ns: u64, slot: u32) -> Entry {
        Entry { prefix: p(prefix), deadline_ns, slot, offender_of: None }
    }

    #[test]
    fn blocking_an_offender_gives_it_a_slot_of_its_own() {
        let offender =
            Entry { prefix: p("192.0.2.7"), deadline_ns: 900, slot: OFFENDER_SLOT, offender_of: Some(3) };
        let live = [e("192.0.2.1", 0, 0), offender];
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.7"), 0, 100),
            Ok(BlockPlan::Insert { entry: e("192.0.2.7", 0, 1), absorbed: vec![] })
        );
    }

    #[test]
    fn a_new_block_takes_the_lowest_free_slot() {
        let live = [e("192.0.2.1", 0, 0), e("192.0.2.2", 0, 2)];
        assert_eq!(
            plan_block(&live, &[], p("198.51.100.7"), 500, 100),
            Ok(BlockPlan::Insert { entry: e("198.51.100.7", 500, 1), absorbed: vec![] })
        );
    }

    #[test]
    fn re_blocking_keeps_the_slot_and_takes_the_new_deadline() {
        let live = [e("192.0.2.1", 900, 3)];
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.1"), 400, 100),
            Ok(BlockPlan::Insert { entry: e("192.0.2.1", 400, 3), absorbed: vec![] })
        );
    }

    #[test]
    fn a_wider_block_lasting_as_long_covers_a_narrower_one() {
        let live = [e("192.0.2.0/24", 0, 0)];
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.9"), 500, 100),
            Ok(BlockPlan::Covered { by: p("192.0.2.0/24") })
        );
        let live = [e("192.0.2.0/24", 800, 0)];
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.9"), 500, 100),
            Ok(BlockPlan::Covered { by: p("192.0.2.0/24") })
        );
        // Outlasting it, the narrower one is stored: it is still blocked once the wide ends.
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.9"), 0, 100),
            Ok(BlockPlan::Insert { entry: e("192.0.2.9", 0, 1), absorbed: vec![] })
        );
    }

    #[test]
    fn a_wider_block_absorbs_the_narrower_ones_it_outlasts() {
        let live = [e("192.0.2.9", 300, 0), e("192.0.2.10", 0, 1), e("198.51.100.1", 200, 2)];
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.0/24"), 500, 100),
            Ok(BlockPlan::Insert { entry: e("192.0.2.0/24", 500, 3), absorbed: vec![p("192.0.2.9")] })
        );
    }

    #[test]
    fn expired_entries_count_as_absent() {
        let live = [e("192.0.2.0/24", 50, 0)];
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.9"), 500, 100),
            Ok(BlockPlan::Insert { entry: e("192.0.2.9", 500, 0), absorbed: vec![] })
        );
    }

    #[test]
    fn families_do_not_cover_each_other() {
        let live = [e("2000::/3", 0, 0)];
        assert_eq!(
            plan_block(&live, &[], p("192.0.2.9"), 0, 100),
            Ok(BlockPlan::Insert { entry: e("192.0.2.9", 0, 1), absorbed: vec![] })
        );
    }

    #[test]
    fn a_full_list_says_so() {
        let live: Vec<Entry> =
            (0..MAX_BLOCKED).map(|i| e(&format!("10.{}.{}.1", i / 256, i % 256), 0, i)).collect();
        assert_eq!(plan_block(&live, &[], p("192.0.2.9"), 0, 100), Err(BlockError::Full));
        assert_eq!(
            BlockError::Full.to_string(),
            "the blocklist is full (4096 entries); unblock some, or block a wider prefix"
        );
    }
}
