//! Maps sized to the policy, and resized under a live filter.
//!
//! A map's memory is fixed when the kernel creates it: a hash's bucket array by its
//! `max_entries`, an LRU's or an array's entries all at once. So `up` sizes each map in
//! [`RESIZABLE`] from the policy ([`Sizes::for_plan`]): the exact-peer hash to twice its
//! entries, the flow tables to `[conntrack]`, the maps of features the policy does not use
//! to almost nothing. A later change that needs more room (a live `allow` past the hash's
//! capacity, a `per_source` limit, a larger `max_entries`) grows them first; one that
//! leaves a map far too large shrinks it after ([`Sizes::grown`], [`Sizes::shrunk`]).
//!
//! A resize is a migration, [`swap_in`]: the programs are loaded again with new maps of
//! the new sizes beside the pinned others, the old maps' entries copied in, the programs
//! swapped in their pinned links (`bpf_link_update`: no packet meets an interface without a
//! filter), and the new maps pinned over the old ones' paths (a rename: every later command
//! opens the new). The entries the old programs wrote in the meantime (flows, sources'
//! buckets) are copied once more after the swap, so no flow is lost.
use std::collections::BTreeMap;

use aya::{
    EbpfLoader, Pod,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, PerCpuValues},
};
use firewall_common::{
    ALLOW_EXACT_ENTRIES, BLOCK_COUNTER_BASE, Counter, Direction, Flow, MAP_ALLOW_EXACT, MAP_CONNTRACK,
    MAP_COUNTERS, MAP_HALF_OPEN, MAP_PER_SOURCE_BUCKETS, MAP_PER_SOURCE_CONNECTIONS, MAP_PORT_INTERVALS,
    MAP_RULE_UIDS, MAX_BLOCKED, MAX_RULE_UIDS, PER_SOURCE_BUCKETS_ENTRIES, PER_SOURCE_CONNECTIONS_ENTRIES,
    PORT_INTERVALS_ENTRIES, PROG_EGRESS, PROG_INGRESS, block_counter,
};
use serde::Serialize;

use crate::{
    compile::MapPlan,
    kernel::{
        attach::{link_update_error, pinned_link},
        filter::{FilterError, Result},
        load::Loaded,
        maps::{LiveMaps, MapsError, call, open_pinned},
        pins::{EGRESS_LINK, INGRESS_LINK, Pins, io_err},
        relayout::{EarlierFlow, Relaid},
    },
    policy::Conntrack,
};

/// The maps whose size follows the policy, and `COUNTERS`, whose size follows the
/// blocklist's slots in use ([`fit_block_slot`]). The others are small, or allocated as
/// entries arrive (the tries), and keep the object's size.
pub const RESIZABLE: [&str; 8] = [
    MAP_COUNTERS,
    MAP_ALLOW_EXACT,
    MAP_RULE_UIDS,
    MAP_CONNTRACK,
    MAP_HALF_OPEN,
    MAP_PER_SOURCE_BUCKETS,
    MAP_PER_SOURCE_CONNECTIONS,
    MAP_PORT_INTERVALS,
];

/// The fewest entries a hash sized by its contents gets: its buckets cost 16 bytes each,
/// so 1,024 of them (16 KiB) leave room for a few live `allow`s at no cost worth naming.
const MIN_HASH: u32 = 1024;
/// The size of a map the policy does not use: the kernel wants at least one entry.
const UNUSED: u32 = 1;
/// The blocklist slots (a block's, or a named list's, two counters each) `COUNTERS` has
/// room for when made: a per-CPU array costs its size on every CPU, so the 4,096 slots
/// the programs can count on are made room for only as blocks take them.
const MIN_BLOCK_SLOTS: u32 = 64;
/// A hash sized by its contents shrinks once its capacity is this many times what it
/// would be given anew, so that a peer or two revoked and allowed again never migrate.
const SHRINK_SLACK: u32 = 4;

/// What one map needs: at least `needed` entries (a migration grows it when it has fewer),
/// `target` when it is made or resized, and no more than `target × slack` (a migration
/// shrinks it when it has more).
struct Want {
    needed: u32,
    target: u32,
    slack: u32,
}

impl Want {
    /// A hash sized by how many entries it holds: twice that, a power of two (the
    /// kernel's bucket count is one), at least [`MIN_HASH`], at most `cap`. It grows once
    /// the entries would fill more than half of it, so that a change always fits while
    /// its new entries are in and the old ones not yet out (`LiveMaps::apply` adds before
    /// it removes): the old ones were half of it at most, the new ones are too.
    fn by_count(count: usize, cap: u32) -> Want {
        let twice = u32::try_from(count).unwrap_or(u32::MAX).saturating_mul(2);
        let target = twice.max(MIN_HASH).checked_next_power_of_two().unwrap_or(cap).min(cap);
        Want { needed: twice.min(cap), target, slack: SHRINK_SLACK }
    }

    /// Exactly `size` entries, as the policy says.
    fn exactly(size: u32) -> Want {
        Want { needed: size, target: size, slack: 1 }
    }

    /// `full` entries when the policy uses the map, else [`UNUSED`].
    fn when(used: bool, full: u32) -> Want {
        Want::exactly(if used { full } else { UNUSED })
    }
}

/// What each map of [`RESIZABLE`] needs for `plan`, whose `[conntrack]` is `conntrack`.
fn wants(conntrack: &Conntrack, plan: &MapPlan) -> [(&'static str, Want); 7] {
    [
        (MAP_ALLOW_EXACT, Want::by_count(plan.allow_exact.len(), ALLOW_EXACT_ENTRIES)),
        (MAP_RULE_UIDS, Want::by_count(plan.rule_uids.len(), MAX_RULE_UIDS)),
        (MAP_CONNTRACK, Want::exactly(conntrack.max_entries)),
        (MAP_HALF_OPEN, Want::exactly(conntrack.max_half_open)),
        (MAP_PER_SOURCE_BUCKETS, Want::when(!plan.per_source_limits.is_empty(), PER_SOURCE_BUCKETS_ENTRIES)),
        (MAP_PER_SOURCE_CONNECTIONS, Want::when(plan.has_connections(), PER_SOURCE_CONNECTIONS_ENTRIES)),
        (MAP_PORT_INTERVALS, Want::when(!plan.port_lanes.is_empty(), PORT_INTERVALS_ENTRIES)),
    ]
}

/// The sizes (`max_entries`) of the maps of [`RESIZABLE`], by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sizes(BTreeMap<&'static str, u32>);

/// One map a migration resized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resized {
    pub map: &'static str,
    pub from: u32,
    pub to: u32,
}

impl Resized {
    /// What a reload would do, as a dry run says it.
    pub fn preview_line(&self) -> String {
        format!(
            "resize {} from {} to {} entries (programs swapped in place, flows kept)",
            self.map, self.from, self.to
        )
    }
}

impl std::fmt::Display for Resized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {} entries", self.map, self.from, self.to)
    }
}

impl Sizes {
    /// The sizes a new filter's maps get for `plan` (it has no block yet).
    pub fn for_plan(conntrack: &Conntrack, plan: &MapPlan) -> Sizes {
        let mut sizes: BTreeMap<_, _> =
            wants(conntrack, plan).into_iter().map(|(name, want)| (name, want.target)).collect();
        sizes.insert(MAP_COUNTERS, counters_for(MIN_BLOCK_SLOTS));
        Sizes(sizes)
    }

    /// These sizes, with `COUNTERS` grown to count block slot `slot`: to twice the slots
    /// it has room for, or more, up to the programs' [`MAX_BLOCKED`].
    #[must_use]
    fn with_block_slot(&self, slot: u32) -> Sizes {
        let mut sizes = self.0.clone();
        let slots = (slot + 1).next_power_of_two().clamp(MIN_BLOCK_SLOTS, MAX_BLOCKED);
        let wanted = counters_for(slots);
        let size = sizes.entry(MAP_COUNTERS).or_insert(wanted);
        *size = (*size).max(wanted);
        Sizes(sizes)
    }

    /// The sizes of the live filter's maps (a map an older version did not make is left
    /// out: it is made at its target).
    pub fn of_live(pins: &Pins) -> std::result::Result<Sizes, MapsError> {
        let mut sizes = BTreeMap::new();
        for name in RESIZABLE {
            let path = pins.map_path(name);
            if path.exists() {
                let info =
                    MapData::from_pin(&path).and_then(|m| m.info()).map_err(call(name, "open pinned"))?;
                sizes.insert(name, info.max_entries());
            }
        }
        Ok(Sizes(sizes))
    }

    /// These sizes without the maps named in `names`: a change sizes those anew, at
    /// their targets (maps made anew at another layout, `kernel::relayout`).
    #[must_use]
    pub fn without(&self, names: &[&str]) -> Sizes {
        Sizes(self.0.iter().filter(|(name, _)| !names.contains(name)).map(|(&n, &s)| (n, s)).collect())
    }

    /// These sizes, with every map too small for `plan` grown to its target.
    #[must_use]
    pub fn grown(&self, conntrack: &Conntrack, plan: &MapPlan) -> Sizes {
        self.adjusted(conntrack, plan, |live, want| (live < want.needed).then_some(want.target))
    }

    /// These sizes, with every map far too large for `plan` shrunk to its target.
    #[must_use]
    pub fn shrunk(&self, conntrack: &Conntrack, plan: &MapPlan) -> Sizes {
        self.adjusted(conntrack, plan, |live, want| {
            (u64::from(live) > u64::from(want.target) * u64::from(want.slack)).then_some(want.target)
        })
    }

    /// The sizes a change to `plan` leaves these at: [`Sizes::grown`] before it is
    /// applied, then [`Sizes::shrunk`] after, as a reload resizes them; what a dry run
    /// announces, resizing nothing.
    #[must_use]
    pub fn to_fit(&self, conntrack: &Conntrack, plan: &MapPlan) -> Sizes {
        self.grown(conntrack, plan).shrunk(conntrack, plan)
    }

    fn adjusted(
        &self,
        conntrack: &Conntrack,
        plan: &MapPlan,
        new: impl Fn(u32, &Want) -> Option<u32>,
    ) -> Sizes {
        let mut sizes = self.0.clone();
        for (name, want) in wants(conntrack, plan) {
            let size = match self.0.get(name) {
                Some(&live) => new(live, &want).unwrap_or(live),
                None => want.target,
            };
            sizes.insert(name, size);
        }
        Sizes(sizes)
    }

    /// The maps whose size differs in `to`, and how. A map these sizes lack (a live
    /// filter an older version made has no such map) is no change: it is made at its size
    /// in `to` by the next load that pins it, which is `up`'s.
    pub fn changes(&self, to: &Sizes) -> Vec<Resized> {
        to.0.iter()
            .filter_map(|(&map, &to)| {
                let from = *self.0.get(map)?;
                (from != to).then_some(Resized { map, from, to })
            })
            .collect()
    }

    /// Sets each size on `loader`.
    pub(crate) fn set_on(&self, loader: &mut EbpfLoader<'_>) {
        for (name, size) in &self.0 {
            loader.map_max_entries(name, *size);
        }
    }
}

/// The size of `COUNTERS` with room for `slots` block slots.
const fn counters_for(slots: u32) -> u32 {
    BLOCK_COUNTER_BASE + 2 * slots
}

/// Makes room in `COUNTERS` for the counters of block slot `slot`, which a block or a
/// named list is about to take: when the array is too small, grows it by one more
/// [`swap_in`], the counters copied. `maps` are the live filter's, opened from `pins`,
/// and are the new ones after. What it resized.
pub(crate) fn fit_block_slot(pins: &Pins, maps: &mut LiveMaps, slot: u32) -> Result<Vec<Resized>> {
    if block_counter(slot, Direction::Out) < maps.counters.len() {
        return Ok(Vec::new());
    }
    let live = Sizes::of_live(pins)?;
    let grown = live.with_block_slot(slot);
    let resized = live.changes(&grown);
    let lists = std::mem::take(&mut maps.lists);
    *maps = swap_in(pins, &grown, &resized, &[], |_| Ok(()))?.0;
    maps.lists = lists;
    Ok(resized)
}

/// Loads this version's programs with the maps of `resized` new at the sizes `sizes`
/// gives, those of `relaid` new (`kernel::relayout`: empty, or with the entries of an
/// earlier layout carried over), and the other maps
/// the pinned ones; copies the old maps' entries into the resized ones, lets `before_swap`
/// act on the maps (a policy applied: the new programs start with it), swaps the programs
/// into the pinned links, pins the new maps in the old ones' place, and copies what the
/// old programs wrote meanwhile. Returns the maps and what `before_swap` returned.
///
/// The caller has checked the pinned maps' layouts (`maps::check_pinned`, as
/// `LiveMaps::open` does, or `relayout::relaid` for `up`): aya reuses a pinned map of
/// another layout as it is, so every such map must be in `relaid`.
///
/// A failure before the swap leaves the programs as they were, and the maps they read but
/// for what `before_swap` wrote to the pinned ones. After the swap only the pins remain to
/// be renamed, on the filter's own bpffs directory; were one to fail, the error says which.
pub(crate) fn swap_in<T>(
    pins: &Pins,
    sizes: &Sizes,
    resized: &[Resized],
    relaid: &[Relaid],
    before_swap: impl FnOnce(&mut LiveMaps) -> Result<T>,
) -> Result<(LiveMaps, T)> {
    let relaid_names: Vec<&'static str> = relaid.iter().map(|r| r.map).collect();
    let resized_only: Vec<&'static str> =
        resized.iter().map(|r| r.map).filter(|map| !relaid_names.contains(map)).collect();
    let fresh: Vec<&'static str> = resized_only.iter().chain(&relaid_names).copied().collect();
    // A map made anew is copied from only when its earlier layout is one this version reads.
    let carried: Vec<&'static str> = relaid.iter().filter(|r| r.carried.is_some()).map(|r| r.map).collect();
    let copied: Vec<&'static str> = resized_only.iter().chain(&carried).copied().collect();
    // Opened before the new maps take their pins: the copy after the swap reads them too.
    let mut old = OldMaps::open(pins, &copied, &carried)?;
    let mut loaded = Loaded::load(sizes, Some(pins), &fresh)?;
    copy(&mut old, &mut loaded.maps, Copy::All)?;
    let done = before_swap(&mut loaded.maps)?;

    let ingress = pinned_link(&pins.link_path(INGRESS_LINK))?;
    let egress = pinned_link(&pins.link_path(EGRESS_LINK))?;
    let ingress = aya::programs::xdp::XdpLink::try_from(ingress)
        .map_err(|source| FilterError::Link { path: pins.link_path(INGRESS_LINK), source })?;
    let egress = aya::programs::tc::SchedClassifierLink::try_from(egress)
        .map_err(|source| FilterError::Link { path: pins.link_path(EGRESS_LINK), source })?;
    loaded
        .ingress()?
        .attach_to_link(ingress)
        .map_err(|source| link_update_error(source, &pins.iface, PROG_INGRESS))?;
    loaded
        .egress()?
        .attach_to_link(egress)
        .map_err(|source| link_update_error(source, &pins.iface, PROG_EGRESS))?;

    for name in &fresh {
        let staging = pins.staging_map_path(name);
        let _ = std::fs::remove_file(&staging);
        loaded.pin_map(name, &staging)?;
        std::fs::rename(&staging, pins.map_path(name)).map_err(io_err("rename", &staging))?;
    }
    copy(&mut old, &mut loaded.maps, Copy::Missing)?;
    Ok((loaded.maps, done))
}

/// Shrinks the maps `plan` leaves far too large, from their sizes `live`, by one more
/// [`swap_in`]; what it shrank. Best effort: the policy is in force already, and a map
/// left larger than it need be costs memory only, so a failure is reported on stderr and
/// the next change tries again.
pub(crate) fn shrink(pins: &Pins, live: &Sizes, conntrack: &Conntrack, plan: &MapPlan) -> Vec<Resized> {
    let shrunk = live.shrunk(conntrack, plan);
    let resized = live.changes(&shrunk);
    if resized.is_empty() {
        return resized;
    }
    match swap_in(pins, &shrunk, &resized, &[], |_| Ok(())) {
        Ok(_) => resized,
        Err(err) => {
            eprintln!("firewall: warning: the maps were left at their sizes: {}", crate::one_line(&err));
            Vec::new()
        }
    }
}

/// The layout an old map is read at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// This version's.
    Current,
    /// An earlier version's, which `kernel::relayout::carries` reads.
    Earlier,
}

/// Which entries [`copy`] copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Copy {
    /// Every entry: the new map is empty.
    All,
    /// The entries the new map lacks: those the old programs made after the first copy.
    Missing,
}

/// The pinned maps a resize copies from, by name (a map the live filter lacks is not
/// among them), opened as they are: typed when copied, at this version's layout or, for
/// one made anew that carries its entries over, the earlier one `kernel::relayout` reads.
struct OldMaps {
    maps: Vec<(&'static str, Map, Layout)>,
    /// The counters as the first copy read them.
    counted: Vec<PerCpuValues<Counter>>,
}

impl OldMaps {
    fn open(pins: &Pins, names: &[&'static str], earlier: &[&'static str]) -> Result<OldMaps> {
        let mut maps = Vec::new();
        for &name in names {
            if pins.map_path(name).exists() {
                let layout = if earlier.contains(&name) { Layout::Earlier } else { Layout::Current };
                maps.push((name, open_pinned(pins, name)?, layout));
            }
        }
        Ok(OldMaps { maps, counted: Vec::new() })
    }
}

/// Copies the entries of the maps of `old` into `new`'s of the same names.
fn copy(old: &mut OldMaps, new: &mut LiveMaps, what: Copy) -> Result<()> {
    for (name, map, layout) in &old.maps {
        let name = *name;
        match name {
            MAP_CONNTRACK if *layout == Layout::Earlier => {
                copy_hash_as(map, &mut new.conntrack, name, what, <Flow as From<EarlierFlow>>::from)
            }
            MAP_ALLOW_EXACT if what == Copy::All => copy_hash(map, &mut new.allow_exact, name, what),
            MAP_RULE_UIDS if what == Copy::All => copy_hash(map, some(&mut new.rule_uids, name)?, name, what),
            MAP_CONNTRACK => copy_hash(map, &mut new.conntrack, name, what),
            MAP_HALF_OPEN => copy_hash(map, &mut new.half_open, name, what),
            MAP_PER_SOURCE_BUCKETS => copy_hash(map, some(&mut new.per_source_buckets, name)?, name, what),
            MAP_PER_SOURCE_CONNECTIONS => {
                copy_hash(map, some(&mut new.per_source_connections, name)?, name, what)
            }
            MAP_PORT_INTERVALS if what == Copy::All => {
                copy_array(map, some(&mut new.port_intervals, name)?, name)
            }
            MAP_COUNTERS => copy_counters(map, &mut new.counters, what, &mut old.counted),
            // User space alone writes the others: copied once, before the swap.
            _ => Ok(()),
        }?;
    }
    Ok(())
}

fn some<'a, T>(map: &'a mut Option<T>, name: &'static str) -> Result<&'a mut T> {
    map.as_mut().ok_or(FilterError::Maps(MapsError::Missing(name)))
}

/// Copies a hash's (or an LRU's) entries; with [`Copy::Missing`], only those `new` lacks
/// (an entry the programs already changed in `new` is theirs; one the first copy took and
/// a policy applied since ended comes back, so the caller that applies one before the swap
/// judges the flows again after it: `attach::replace`).
fn copy_hash<K: Pod, V: Pod>(
    old: &Map,
    new: &mut HashMap<MapData, K, V>,
    name: &'static str,
    what: Copy,
) -> Result<()> {
    copy_hash_as(old, new, name, what, |value: V| value)
}

/// [`copy_hash`] from a map whose values are `V`, each converted.
fn copy_hash_as<K: Pod, V: Pod, W: Pod>(
    old: &Map,
    new: &mut HashMap<MapData, K, W>,
    name: &'static str,
    what: Copy,
    convert: impl Fn(V) -> W,
) -> Result<()> {
    let old: HashMap<&MapData, K, V> = old.try_into().map_err(call(name, "open pinned"))?;
    // BPF_ANY, or BPF_NOEXIST.
    let flags = match what {
        Copy::All => 0,
        Copy::Missing => 1,
    };
    // An entry removed while the map is walked is skipped, not an error.
    for (key, value) in old.iter().filter_map(std::result::Result::ok) {
        match new.insert(key, convert(value), flags) {
            Ok(()) => {}
            Err(aya::maps::MapError::SyscallError(e))
                if what == Copy::Missing && e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(source) => return Err(MapsError::Call { name, call: "copy", source }.into()),
        }
    }
    Ok(())
}

/// Copies the counters, as many as both arrays hold. The old programs count on in the old
/// array until the swap, and the new ones in the new array after it: with
/// [`Copy::Missing`], what the old ones counted since the first copy (`copied`, what it
/// read) is added to what the new array holds.
fn copy_counters(
    old: &Map,
    new: &mut PerCpuArray<MapData, Counter>,
    what: Copy,
    copied: &mut Vec<PerCpuValues<Counter>>,
) -> Result<()> {
    let name = MAP_COUNTERS;
    let old: PerCpuArray<&MapData, Counter> = old.try_into().map_err(call(name, "open pinned"))?;
    for index in 0..old.len().min(new.len()) {
        let counted = old.get(&index, 0).map_err(call(name, "copy"))?;
        let values: Vec<Counter> = match what {
            Copy::All => {
                let values = counted.to_vec();
                copied.push(counted);
                values
            }
            Copy::Missing => {
                let before = &copied[index as usize];
                if counted.iter().zip(before.iter()).all(|(now, then)| now == then) {
                    continue;
                }
                let since = new.get(&index, 0).map_err(call(name, "copy"))?;
                (0..counted.len())
                    .map(|cpu| Counter {
                        packets: since[cpu].packets
                            + counted[cpu].packets.saturating_sub(before[cpu].packets),
                        bytes: since[cpu].bytes + counted[cpu].bytes.saturating_sub(before[cpu].bytes),
                    })
                    .collect()
            }
        };
        if values.iter().all(|c| *c == Counter::default()) {
            continue;
        }
        let values = PerCpuValues::try_from(values).map_err(|e| MapsError::Cpus(std::io::Error::other(e)))?;
        new.set(index, values, 0).map_err(call(name, "copy"))?;
    }
    Ok(())
}

/// Copies an array's values, as many as both hold (a shrunk array's are zeros past it).
fn copy_array(old: &Map, new: &mut Array<MapData, u64>, name: &'static str) -> Result<()> {
    let old: Array<&MapData, u64> = old.try_into().map_err(call(name, "open pinned"))?;
    let len = old.len().min(new.len());
    for index in 0..len {
        let value = old.get(&index, 0).map_err(call(name, "copy"))?;
        if value != 0 {
            new.set(index, value, 0).map_err(call(name, "copy"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use firewall_common::{AllowKey, AllowValue};

    use super::*;

    fn plan_with(peers: u32) -> MapPlan {
        let allow_exact = (0..peers)
            .map(|peer| {
                (
                    AllowKey { peer: u128::from(peer).to_be_bytes(), ..AllowKey::default() },
                    AllowValue::default(),
                )
            })
            .collect();
        MapPlan { allow_exact, ..MapPlan::default() }
    }

    fn exact(sizes: &Sizes) -> u32 {
        sizes.0[MAP_ALLOW_EXACT]
    }

    #[test]
    fn the_exact_hash_keeps_room_for_a_change_whose_old_and_new_entries_are_in_at_once() {
        let conntrack = Conntrack::default();
        let small = Sizes::for_plan(&conntrack, &plan_with(100));
        assert_eq!(exact(&small), 1024);
        // 100 peers replaced by 600 others: 700 at once, in 1,024.
        assert_eq!(exact(&small.grown(&conntrack, &plan_with(600))), 2048, "600 would fill more than half");
        assert_eq!(exact(&small.grown(&conntrack, &plan_with(512))), 1024, "512 fill half exactly");
        let large = Sizes::for_plan(&conntrack, &plan_with(100_000));
        assert_eq!(exact(&large), 262_144);
        // Shrunk only once four times too large, so that a revoke and an allow back never migrate.
        assert_eq!(exact(&large.shrunk(&conntrack, &plan_with(40_000))), 262_144);
        assert_eq!(exact(&large.shrunk(&conntrack, &plan_with(20_000))), 262_144, "65,536 would be a fourth");
        assert_eq!(exact(&large.shrunk(&conntrack, &plan_with(16_000))), 32_768);
        assert_eq!(large.changes(&large.shrunk(&conntrack, &plan_with(100_000))), []);
        // Never past the object's capacity: a policy past it fails on insert, as before.
        assert_eq!(exact(&Sizes::for_plan(&conntrack, &plan_with(3_000_000))), ALLOW_EXACT_ENTRIES);
    }

    #[test]
    fn to_fit_is_what_a_reload_grows_then_shrinks_to() {
        let conntrack = Conntrack::default();
        let larger = Conntrack { max_entries: 131_072, ..conntrack.clone() };
        let live = Sizes::for_plan(&conntrack, &plan_with(100));
        for (conntrack, peers) in [(&conntrack, 100), (&conntrack, 600), (&larger, 1500), (&conntrack, 10)] {
            // What `ops::reload::apply` reports: the growth before, then the shrink after.
            let grown = live.grown(conntrack, &plan_with(peers));
            let mut applied = live.changes(&grown);
            applied.extend(grown.changes(&grown.shrunk(conntrack, &plan_with(peers))));
            applied.sort_by_key(|r| r.map);
            assert_eq!(live.changes(&live.to_fit(conntrack, &plan_with(peers))), applied, "{peers} peers");
        }
        assert_eq!(live.changes(&live.to_fit(&conntrack, &plan_with(100))), []);
        assert_eq!(
            live.changes(&live.to_fit(&conntrack, &plan_with(1500))),
            [Resized { map: MAP_ALLOW_EXACT, from: 1024, to: 4096 }]
        );
        let large = Sizes::for_plan(&conntrack, &plan_with(100_000));
        assert_eq!(
            large.changes(&large.to_fit(&conntrack, &plan_with(100))),
            [Resized { map: MAP_ALLOW_EXACT, from: 262_144, to: 1024 }]
        );
        assert_eq!(
            Resized { map: MAP_ALLOW_EXACT, from: 1024, to: 4096 }.preview_line(),
            "resize ALLOW_EXACT from 1024 to 4096 entries (programs swapped in place, flows kept)"
        );
    }

    #[test]
    fn the_counters_make_room_for_64_blocks_then_double_as_blocks_take_slots() {
        let counters = |sizes: &Sizes| sizes.0[MAP_COUNTERS];
        let new = Sizes::for_plan(&Conntrack::default(), &MapPlan::default());
        assert_eq!(counters(&new), BLOCK_COUNTER_BASE + 128);
        assert_eq!(counters(&new.with_block_slot(63)), BLOCK_COUNTER_BASE + 128, "slot 63 fits");
        assert_eq!(counters(&new.with_block_slot(64)), BLOCK_COUNTER_BASE + 256);
        assert_eq!(counters(&new.with_block_slot(300)), BLOCK_COUNTER_BASE + 1024, "to the room it needs");
        assert_eq!(counters(&new.with_block_slot(MAX_BLOCKED - 1)), BLOCK_COUNTER_BASE + 2 * MAX_BLOCKED);
        // A live filter's larger array (an older version's, made whole) is never shrunk.
        let whole = new.with_block_slot(MAX_BLOCKED - 1);
        assert_eq!(whole.changes(&whole.with_block_slot(0)), []);
        // Nor touched by a change to the policy.
        assert_eq!(counters(&whole.to_fit(&Conntrack::default(), &plan_with(100))), counters(&whole));
    }

    #[test]
    fn unused_features_cost_one_entry_and_the_flow_tables_are_the_policys() {
        let conntrack = Conntrack { max_entries: 4096, ..Conntrack::default() };
        let sizes = Sizes::for_plan(&conntrack, &MapPlan::default());
        for map in [MAP_PER_SOURCE_BUCKETS, MAP_PER_SOURCE_CONNECTIONS, MAP_PORT_INTERVALS] {
            assert_eq!(sizes.0[map], UNUSED, "{map}");
        }
        assert_eq!(sizes.0[MAP_CONNTRACK], 4096);
        let larger = Conntrack { max_entries: 8192, ..conntrack.clone() };
        let grown = sizes.grown(&larger, &MapPlan::default());
        assert_eq!(sizes.changes(&grown), [Resized { map: MAP_CONNTRACK, from: 4096, to: 8192 }]);
        // A smaller table is no growth; the shrink after makes it so.
        assert_eq!(grown.changes(&grown.grown(&conntrack, &MapPlan::default())), []);
        assert_eq!(
            grown.changes(&grown.shrunk(&conntrack, &MapPlan::default())),
            [Resized { map: MAP_CONNTRACK, from: 8192, to: 4096 }]
        );
    }
}
