//! The maps, typed, whether just created by a load or opened from their pins, and the
//! one routine that makes them hold what a policy wants: [`LiveMaps::apply`].
use std::{
    collections::HashSet,
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicU64, Ordering},
};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, IterableMap as _, LpmTrie, Map, MapData, MapError, PerCpuArray, PerCpuValues,
        lpm_trie::Key,
    },
};
use firewall_common::{
    ALLOW_ONE_WAY, ALLOW_PREFIX_ENTRIES, ALLOW_TRAP, ANTISPOOF_CELLS_ENTRIES, Addr, AllowKey, AllowValue,
    BLOCK_COUNTER_BASE, BlockEntry, CELL_ASK, CONFIG_AUDIT, CONFIG_BLOCKS_OFFENDERS, CONFIG_HAS_BLOCKS,
    CONFIG_HAS_RANGES, CONFIG_LIVE_FLAGS, CONFIG_MORE_ADDRESSES, Config, Counter, DNS_ANSWERS_BYTES,
    DNS_RELEASED_ENTRIES, DROP_EVENTS_BYTES, Direction, FLOW_STATS_ENTRIES, FLOWS_ENDED_ENTRIES,
    FRAGMENTS_ENTRIES, Flow, FlowKey, FlowTable, FragmentKey, FragmentedDatagram, ICMP_ECHO_REQUEST,
    ICMPV6_ECHO_REQUEST, MAP_ALLOW_EXACT, MAP_ALLOW_PREFIX, MAP_ANTISPOOF_CELLS, MAP_ANTISPOOF_DST,
    MAP_ANTISPOOF_SRC, MAP_BLOCK_LISTS, MAP_BLOCKLIST, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS,
    MAP_DNS_ANSWERS, MAP_DNS_LISTENER, MAP_DNS_RELEASED, MAP_DROP_EVENTS, MAP_FLOW_STATS, MAP_FLOWS_ENDED,
    MAP_FRAGMENTS, MAP_HALF_OPEN, MAP_HOST_ADDRESSES, MAP_LIST_DEADLINES, MAP_PER_SOURCE_BUCKETS,
    MAP_PER_SOURCE_CONNECTIONS, MAP_PER_SOURCE_LIMITS, MAP_PORT_INTERVALS, MAP_RULE_UIDS, MAP_SERVICE_SKIPS,
    MAP_TOKEN_BUCKETS, MAPS, MAX_ANTISPOOF, MAX_BLOCKED, MAX_COUNTERS, MAX_HOST_ADDRESSES, MAX_LISTED,
    MAX_RULES, PROTO_ICMP, PROTO_ICMPV6, PerSourceLimit, ReleasedKey, RuleUid, SERVICE_SKIPS_ENTRIES,
    SourceConnections, SourceKey, TOKEN_BUCKETS_ENTRIES, TokenBucket, block_counter, flows_inserted,
    flows_removed,
};

use crate::{
    compile::{ExactEntries, MapPlan, antispoof_cells, service_skips},
    kernel::pins::Pins,
    policy::{Prefix, from_addr},
};

/// A map operation that failed, naming the map and the call.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("the eBPF object has no map {0}")]
    Missing(&'static str),
    #[error("map {name}: {call}")]
    Call { name: &'static str, call: &'static str, source: MapError },
    /// Boxed: a state error is large, and every `Result` here would carry its size.
    #[error(transparent)]
    State(Box<crate::kernel::pins::PinsError>),
    /// A bpf(2) call made without aya: the batch lookups and updates, a first key asked
    /// whatever the layout.
    #[error("map {name}: {call}")]
    Syscall { name: &'static str, call: &'static str, source: std::io::Error },
    #[error("counting the CPUs")]
    Cpus(#[source] std::io::Error),
    #[error("map {MAP_FLOWS_ENDED}: mmap")]
    Mmap(#[source] std::io::Error),
    #[error(
        "the live filter's map {name} has {found} where this firewall's has {wanted}: another version made it; {way_out}"
    )]
    Incompatible { name: &'static str, found: String, wanted: String, way_out: String },
    #[error(
        "the live filter has no map {0}: an older version made it; `firewall up` with its policy makes it in place"
    )]
    MissingPinned(&'static str),
    #[error(
        "the live filter's map {MAP_CONFIG} was made by another version, which keeps the filter's mode there where this one cannot read it: say which, `firewall up --enforce` or `firewall up --audit`"
    )]
    ModeUnreadable,
    #[error(
        "the live filter's programs know one address of each family (an older version loaded them: its maps have no {MAP_HOST_ADDRESSES}), and the policy names more; `firewall up` with it replaces the programs in place (tracked flows and counters kept)"
    )]
    OneAddressEach,
    #[error(
        "the live filter's programs know no port ranges (an older version loaded them: its maps have no {MAP_PORT_INTERVALS}), and the policy names one; `firewall up` with it replaces the programs in place (tracked flows and counters kept)"
    )]
    NoPortRanges,
    #[error(
        "the live filter's programs know no per_source limits (an older version loaded them: its maps have no {MAP_PER_SOURCE_LIMITS}), and the policy has one; `firewall up` with it replaces the programs in place (tracked flows and counters kept)"
    )]
    NoPerSourceLimits,
    #[error(
        "the live filter's programs know no per_source.connections (an older version loaded them: its maps have no {MAP_PER_SOURCE_CONNECTIONS}), and the policy has one; `firewall up` with it replaces the programs in place (tracked flows and counters kept)"
    )]
    NoConnectionLimits,
    #[error(
        "the live filter's programs know no uids (an older version loaded them: its maps have no {MAP_RULE_UIDS}), and the policy names some; `firewall up` with it replaces the programs in place (tracked flows and counters kept)"
    )]
    NoOwnerMatch,
    #[error(
        "the live filter's programs know no named blocklists (an older version loaded them: its maps have no {MAP_BLOCK_LISTS}); `firewall up` with its policy replaces the programs in place (tracked flows and counters kept)"
    )]
    NoBlockLists,
    #[error(
        "the live filter's programs know no list that expires (an older version loaded them: its maps have no {MAP_LIST_DEADLINES}); `firewall up` with its policy replaces the programs in place (tracked flows and counters kept)"
    )]
    NoListExpiry,
    #[error("map {name}: reading its memory (memlock) from /proc/self/fdinfo")]
    Memory { name: &'static str, source: std::io::Error },
}

/// A map's shape: key and value sizes as the kernel object declares them (an LPM trie's
/// key has its 4-byte prefix length in front), and its size where the object fixes it
/// (the sizes of `kernel::resize::RESIZABLE` follow the policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub key: u32,
    pub value: u32,
    pub max_entries: Option<u32>,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-byte keys, {}-byte values", self.key, self.value)?;
        match self.max_entries {
            Some(1) => write!(f, ", 1 entry"),
            Some(n) => write!(f, ", {n} entries"),
            None => Ok(()),
        }
    }
}

pub(crate) fn layout(name: &str) -> Layout {
    use std::mem::size_of;
    let (key, value, max_entries) = match name {
        MAP_CONFIG => (4, size_of::<Config>(), Some(1)),
        MAP_COUNTERS => (4, size_of::<Counter>(), None),
        MAP_CONNTRACK | MAP_HALF_OPEN => (size_of::<FlowKey>(), size_of::<Flow>(), None),
        MAP_FLOW_STATS => (4, size_of::<u64>(), Some(FLOW_STATS_ENTRIES)),
        MAP_FLOWS_ENDED => (4, size_of::<u64>(), Some(FLOWS_ENDED_ENTRIES)),
        MAP_ALLOW_EXACT => (size_of::<AllowKey>(), size_of::<AllowValue>(), None),
        MAP_ALLOW_PREFIX => (4 + size_of::<AllowKey>(), size_of::<AllowValue>(), Some(ALLOW_PREFIX_ENTRIES)),
        MAP_ANTISPOOF_SRC | MAP_ANTISPOOF_DST => (4 + size_of::<Addr>(), 4, Some(MAX_ANTISPOOF)),
        MAP_ANTISPOOF_CELLS => (4, 4, Some(ANTISPOOF_CELLS_ENTRIES)),
        MAP_SERVICE_SKIPS => (4, 8, Some(SERVICE_SKIPS_ENTRIES)),
        MAP_TOKEN_BUCKETS => (4, size_of::<TokenBucket>(), Some(TOKEN_BUCKETS_ENTRIES)),
        MAP_BLOCKLIST => (4 + size_of::<Addr>(), size_of::<BlockEntry>(), Some(MAX_BLOCKED)),
        MAP_BLOCK_LISTS => (4 + size_of::<Addr>(), 4, Some(MAX_LISTED)),
        MAP_LIST_DEADLINES => (4, size_of::<u64>(), Some(MAX_BLOCKED)),
        // A ring buffer has neither keys nor values; its size is in bytes.
        MAP_DROP_EVENTS => (0, 0, Some(DROP_EVENTS_BYTES)),
        MAP_DNS_ANSWERS => (0, 0, Some(DNS_ANSWERS_BYTES)),
        MAP_DNS_LISTENER => (4, size_of::<u64>(), Some(1)),
        MAP_DNS_RELEASED => (size_of::<ReleasedKey>(), size_of::<u64>(), Some(DNS_RELEASED_ENTRIES)),
        MAP_FRAGMENTS => (size_of::<FragmentKey>(), size_of::<FragmentedDatagram>(), Some(FRAGMENTS_ENTRIES)),
        MAP_HOST_ADDRESSES => (size_of::<Addr>(), size_of::<u32>(), Some(MAX_HOST_ADDRESSES)),
        MAP_PORT_INTERVALS => (4, size_of::<u64>(), None),
        MAP_PER_SOURCE_LIMITS => (4, size_of::<PerSourceLimit>(), Some(MAX_RULES)),
        MAP_PER_SOURCE_BUCKETS => (size_of::<SourceKey>(), size_of::<u64>(), None),
        MAP_RULE_UIDS => (size_of::<RuleUid>(), size_of::<u8>(), None),
        MAP_PER_SOURCE_CONNECTIONS => (size_of::<SourceKey>(), size_of::<SourceConnections>(), None),
        _ => unreachable!("every map is listed in firewall_common::MAPS"),
    };
    Layout { key: key as u32, value: value as u32, max_entries }
}

/// Maps a live filter made by an earlier version may lack, and no fault: its programs never
/// read them, and `up` over it loads programs that do, for which the loader creates the
/// missing map and pins it beside the others (a pin path whose file is missing is created,
/// not refused), so no `down` is needed, nor any flow lost. `FRAGMENTS` holds short-lived
/// state only, which starts empty. `HOST_ADDRESSES`: `reload` and the views work without
/// it, and `reload` refuses only a policy with more than one address of a family
/// ([`MapsError::OneAddressEach`]). `PORT_INTERVALS` likewise, for a policy with a port
/// range ([`MapsError::NoPortRanges`]); the `PER_SOURCE_*` maps for a policy with a
/// `per_source` limit ([`MapsError::NoPerSourceLimits`]); `RULE_UIDS` for one with `uids`
/// ([`MapsError::NoOwnerMatch`]); `PER_SOURCE_CONNECTIONS` for one with
/// `per_source.connections` ([`MapsError::NoConnectionLimits`]); `BLOCK_LISTS` for a
/// named list ([`MapsError::NoBlockLists`]); `LIST_DEADLINES` for a list with `--for`
/// ([`MapsError::NoListExpiry`]). The `DNS_*` maps: `serve` learns no name from the
/// answers of a filter without them. `ANTISPOOF_CELLS`: the older programs ask the tries
/// alone; the loader creates it zeroed, every cell asking the trie, until `apply` fills it.
/// `SERVICE_SKIPS` likewise: zeroed, every lookup asked.
const MAPS_ADDED_LATER: [&str; 14] = [
    MAP_FRAGMENTS,
    MAP_HOST_ADDRESSES,
    MAP_PORT_INTERVALS,
    MAP_PER_SOURCE_LIMITS,
    MAP_PER_SOURCE_BUCKETS,
    MAP_RULE_UIDS,
    MAP_PER_SOURCE_CONNECTIONS,
    MAP_BLOCK_LISTS,
    MAP_LIST_DEADLINES,
    MAP_DNS_ANSWERS,
    MAP_DNS_LISTENER,
    MAP_DNS_RELEASED,
    MAP_ANTISPOOF_CELLS,
    MAP_SERVICE_SKIPS,
];

/// A map of the live filter that is not this version's.
pub(crate) struct Mismatch {
    pub name: &'static str,
    /// Its layout; `None`: the live filter has no such map.
    pub found: Option<Layout>,
    pub wanted: Layout,
}

impl Mismatch {
    /// The refusal of a command that would read it.
    pub fn into_error(self) -> MapsError {
        match self.found {
            None => MapsError::MissingPinned(self.name),
            Some(found) => MapsError::Incompatible {
                name: self.name,
                found: found.to_string(),
                wanted: self.wanted.to_string(),
                way_out: crate::kernel::relayout::way_out(self.name, &found),
            },
        }
    }
}

/// The live filter's maps whose layout is not this firewall's, and those it lacks (but
/// [`MAPS_ADDED_LATER`]), in the order of [`MAPS`].
pub(crate) fn mismatches(pins: &Pins) -> Result<Vec<Mismatch>> {
    let up = MAPS.iter().any(|name| pins.map_path(name).exists());
    let mut mismatches = Vec::new();
    for name in MAPS {
        let path = pins.map_path(name);
        let wanted = layout(name);
        if !path.exists() {
            if up && !MAPS_ADDED_LATER.contains(&name) {
                mismatches.push(Mismatch { name, found: None, wanted });
            }
            continue;
        }
        let info = MapData::from_pin(&path).and_then(|map| map.info()).map_err(call(name, "open pinned"))?;
        let found = Layout {
            key: info.key_size(),
            value: info.value_size(),
            max_entries: wanted.max_entries.map(|_| info.max_entries()),
        };
        if found != wanted {
            mismatches.push(Mismatch { name, found: Some(found), wanted });
        }
    }
    Ok(mismatches)
}

/// Refuses pinned maps whose layout is not this firewall's, and a live filter without one
/// of this firewall's maps (but [`MAPS_ADDED_LATER`]): the programs would read them with
/// the wrong sizes (or index past their end), and aya reuses a pinned map without asking.
/// `up` migrates them instead (`kernel::relayout`).
pub fn check_pinned(pins: &Pins) -> Result<()> {
    match mismatches(pins)?.into_iter().next() {
        None => Ok(()),
        Some(mismatch) => Err(mismatch.into_error()),
    }
}

type Result<T> = std::result::Result<T, MapsError>;

/// The kernel's accounting of `map`'s memory, in bytes: the `memlock` line of its fdinfo.
/// It is what the map holds whether full or empty (a hash's buckets and preallocated
/// entries, an array's values on every CPU), fixed when the kernel made the map, but for
/// the tries, which allocate as entries arrive.
pub fn memlock(map: &MapData) -> std::io::Result<u64> {
    let path = format!("/proc/self/fdinfo/{}", map.fd().as_fd().as_raw_fd());
    let info = std::fs::read_to_string(&path)?;
    info.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|bytes| bytes.trim().parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{path} has no memlock line"))
        })
}

/// Each map's memory, as the kernel accounts it ([`memlock`]), by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapMemory(pub Vec<(&'static str, u64)>);

impl MapMemory {
    /// The bytes of every map together.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, bytes)| bytes).sum()
    }
}

/// One object: each map's name and its bytes, then `total` (map names are upper case).
impl serde::Serialize for MapMemory {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut object = serializer.serialize_map(Some(self.0.len() + 1))?;
        for (name, bytes) in &self.0 {
            object.serialize_entry(name, bytes)?;
        }
        object.serialize_entry("total", &self.total())?;
        object.end()
    }
}

/// The memory of each map pinned in `dir` (a live filter's `Pins::dir`), as the kernel
/// accounts it, in the order of [`MAPS`]. A map an older version did not make is left out.
pub fn pinned_memory(dir: &std::path::Path) -> Result<MapMemory> {
    let mut memory = Vec::new();
    for name in MAPS {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let map = MapData::from_pin(&path).map_err(call(name, "open pinned"))?;
        let bytes = memlock(&map).map_err(|source| MapsError::Memory { name, source })?;
        memory.push((name, bytes));
    }
    Ok(MapMemory(memory))
}

/// Removing an entry that is gone already is no error: the map is as wanted.
pub(crate) fn gone_is_ok(result: std::result::Result<(), MapError>) -> std::result::Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// A map call's error, naming the map and the call.
pub(crate) fn call(name: &'static str, call: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Call { name, call, source }
}

/// The map `name` that the live filter `pins` names pinned.
pub(crate) fn open_pinned(pins: &Pins, name: &'static str) -> Result<Map> {
    let data = MapData::from_pin(pins.map_path(name)).map_err(call(name, "open pinned"))?;
    Map::from_map_data(data).map_err(call(name, "open pinned"))
}

/// Every map of the kernel side.
pub struct LiveMaps {
    pub config: Array<MapData, Config>,
    pub counters: PerCpuArray<MapData, Counter>,
    /// The established flows (heard both ways).
    pub conntrack: HashMap<MapData, FlowKey, Flow>,
    /// The half-open flows.
    pub half_open: HashMap<MapData, FlowKey, Flow>,
    pub flow_stats: PerCpuArray<MapData, u64>,
    pub flows_ended: Array<MapData, u64>,
    pub allow_exact: HashMap<MapData, AllowKey, AllowValue>,
    pub allow_prefix: LpmTrie<MapData, AllowKey, AllowValue>,
    pub antispoof_src: LpmTrie<MapData, Addr, u32>,
    pub antispoof_dst: LpmTrie<MapData, Addr, u32>,
    /// Both lists' answers for each /8 (`compile::antispoof_cells`); `None` on a live
    /// filter older than the map, whose programs ask the tries alone.
    pub antispoof_cells: Option<Array<MapData, u32>>,
    /// The allow-list lookups each service skips (`compile::service_skips`); `None` on a
    /// live filter older than the map, whose programs make them all.
    pub service_skips: Option<Array<MapData, u64>>,
    pub token_buckets: Array<MapData, TokenBucket>,
    pub blocklist: LpmTrie<MapData, Addr, BlockEntry>,
    /// The named lists' prefixes; `None` on a live filter older than the map.
    pub block_lists: Option<LpmTrie<MapData, Addr, u32>>,
    /// Each list's deadline, by slot; `None` on a live filter older than the map, whose
    /// programs read a `BLOCK_LISTS` value as the slot alone.
    pub list_deadlines: Option<Array<MapData, u64>>,
    /// The named lists, from the state's index (none for maps not opened from pins): their
    /// slots are taken, so no block's entry gets one, and read with the counters.
    pub lists: Vec<crate::kernel::pins::BlockList>,
    /// The host's addresses; `None` on a live filter older than the map (see
    /// [`check_pinned`]).
    pub host_addresses: Option<HashMap<MapData, Addr, u32>>,
    /// Each port's distance to the first of its interval; `None` on a live filter older
    /// than the map.
    pub port_intervals: Option<Array<MapData, u64>>,
    /// Each rule's `per_source` limit; `None` on a live filter older than the map.
    pub per_source_limits: Option<Array<MapData, PerSourceLimit>>,
    /// The sources' buckets of those limits; `None` likewise.
    pub per_source_buckets: Option<HashMap<MapData, SourceKey, u64>>,
    /// The uids of the rules with `uids`; `None` likewise.
    pub rule_uids: Option<HashMap<MapData, RuleUid, u8>>,
    /// The flows of the sources of the rules with `per_source.connections`, the programs'
    /// alone; `None` likewise.
    pub per_source_connections: Option<HashMap<MapData, SourceKey, SourceConnections>>,
}

/// What [`LiveMaps::apply`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: usize,
    pub removed: usize,
    pub flows_removed: usize,
    /// The maps resized to fit the policy, by migration (see `kernel::resize`).
    pub resized: Vec<crate::kernel::resize::Resized>,
}

/// What a plan makes of a live flow.
enum FlowFate {
    Kept,
    /// Admitted by another rule now: the flow counts on that rule's line.
    Moved(u16),
    /// Its opening packet would no longer be admitted: the flow ends.
    Ended,
}

fn fate(plan: &MapPlan, key: &FlowKey, flow: &Flow) -> FlowFate {
    let origin = if flow.origin == Direction::In as u8 { Direction::In } else { Direction::Out };
    // The service port the opening packet went to; an echo flow's is the request type.
    let port = match key.protocol {
        PROTO_ICMP => u16::from(ICMP_ECHO_REQUEST),
        PROTO_ICMPV6 => u16::from(ICMPV6_ECHO_REQUEST),
        _ if origin == Direction::In => key.local_port,
        _ => key.peer_port,
    };
    let allow = AllowKey { direction: origin as u8, protocol: key.protocol, port, peer: key.peer };
    // The programs check flows before the anti-spoof lists: a peer those lists now name
    // must lose its flows here.
    let spoofed = plan.antispoof_sources.keys().any(|p| p.contains(from_addr(&key.peer)));
    // A rule that came to have `returns = false`, or to be a trap, keeps no flow.
    match plan.admits(&allow).filter(|v| !spoofed && v.flags & (ALLOW_ONE_WAY | ALLOW_TRAP) == 0) {
        Some(value) if value.rule == u32::from(flow.rule) => FlowFate::Kept,
        // Rule indexes are below MAX_RULES, which 16 bits hold.
        Some(value) => FlowFate::Moved(value.rule as u16),
        None => FlowFate::Ended,
    }
}

/// An address prefix as the tries key it.
pub(crate) fn prefix_key(prefix: &Prefix) -> Key<Addr> {
    let (addr, len) = prefix.to_addr();
    Key::new(len, addr)
}

/// What brings the exact-peer hash from `live` to `wanted`: the entries to write (new, or
/// of another value) and the keys to remove. The live entries sorted as the wanted are,
/// and the two merged: a million entries each side take a tenth of the time a hash of
/// either side would, at a cache miss an entry (`reload` of a million peers replaced).
fn exact_changes(
    mut live: Vec<(AllowKey, AllowValue)>,
    wanted: &ExactEntries,
) -> (Vec<(AllowKey, AllowValue)>, Vec<AllowKey>) {
    let order = ExactEntries::order;
    live.sort_unstable_by_key(|(key, _)| order(key));
    let (mut changed, mut stale) = (Vec::new(), Vec::new());
    let (mut live, mut wanted) = (live.into_iter().peekable(), wanted.as_slice().iter().copied().peekable());
    loop {
        match (live.peek(), wanted.peek()) {
            (None, None) => return (changed, stale),
            (Some(_), None) => stale.extend(live.by_ref().map(|(key, _)| key)),
            (None, Some(_)) => changed.extend(wanted.by_ref()),
            (Some((l, lv)), Some((w, wv))) => match order(l).cmp(&order(w)) {
                std::cmp::Ordering::Less => stale.push(live.next().expect("peeked").0),
                std::cmp::Ordering::Greater => changed.push(wanted.next().expect("peeked")),
                std::cmp::Ordering::Equal => {
                    if lv != wv {
                        changed.push((*w, *wv));
                    }
                    live.next();
                    wanted.next();
                }
            },
        }
    }
}

/// Entries a batch call carries: enough that a million cost a hundred calls, few enough
/// that the kernel reschedules between them.
const BATCH: usize = 10_000;

/// One `bpf_attr` of BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH and BPF_MAP_DELETE_BATCH
/// (`batch`).
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// A map read and changed in batches of [`BATCH`] entries: a million entries cost a
/// hundred system calls, not one or two each (aya has no batch calls). `K` and `V` are
/// the map's key and value, as its typed wrapper has them.
pub(crate) struct Batch<'a, K, V> {
    map: &'a MapData,
    name: &'static str,
    types: std::marker::PhantomData<(K, V)>,
}

/// `work` over `items` split in one part per CPU (up to [`MAX_WRITERS`]), each part on a
/// thread of its own, when there are batches enough to share: a hash map's writers lock
/// only their buckets, so a million inserts take the kernel half the time on two CPUs.
/// The first error, if any part failed; every part has run either way.
fn in_parallel<T: Sync>(items: &[T], work: impl Fn(&[T]) -> Result<()> + Sync) -> Result<()> {
    let writers = std::thread::available_parallelism().map_or(1, usize::from).min(MAX_WRITERS);
    if writers < 2 || items.len() < 2 * BATCH {
        return work(items);
    }
    let part = items.len().div_ceil(writers);
    std::thread::scope(|scope| {
        let running: Vec<_> = items.chunks(part).map(|part| scope.spawn(|| work(part))).collect();
        running.into_iter().try_for_each(|writer| writer.join().expect("a map writer panicked"))
    })
}

/// The most threads [`in_parallel`] writes a map with.
const MAX_WRITERS: usize = 4;

impl<'a, K: aya::Pod + Sync, V: aya::Pod + Sync> Batch<'a, K, V> {
    pub(crate) fn new(map: &'a MapData, name: &'static str) -> Self {
        Batch { map, name, types: std::marker::PhantomData }
    }

    /// Every entry (a hash map's: the kernel walks its buckets).
    pub(crate) fn entries(&self) -> Result<Vec<(K, V)>> {
        let mut out = Vec::new();
        // SAFETY: `Pod` types are plain data, valid at any bit pattern, zeroes included.
        let (key, value): (K, V) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let (mut keys, mut values) = (vec![key; BATCH], vec![value; BATCH]);
        // The kernel's place in the walk: a hash map's is its bucket's index, 4 bytes.
        let mut token = [0u64; 8];
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { token.as_ptr() as u64 },
                out_batch: token.as_mut_ptr() as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: BATCH as u32,
                map_fd: self.fd(),
                elem_flags: 0,
                flags: 0,
            };
            first = false;
            let done = match Self::call(BPF_MAP_LOOKUP_BATCH, &mut attr) {
                Ok(()) => false,
                // The walk's end: `count` holds what this last call found.
                Err((_, e)) if e.raw_os_error() == Some(libc::ENOENT) => true,
                Err(e) => return Err(self.error("lookup batch", e)),
            };
            let found = attr.count as usize;
            out.extend(keys[..found].iter().copied().zip(values[..found].iter().copied()));
            if done {
                return Ok(out);
            }
        }
    }

    /// Sets each key to its value.
    pub(crate) fn update(&self, entries: &[(K, V)]) -> Result<()> {
        in_parallel(entries, |part| self.update_in_turn(part))
    }

    fn update_in_turn(&self, entries: &[(K, V)]) -> Result<()> {
        for chunk in entries.chunks(BATCH) {
            let keys: Vec<K> = chunk.iter().map(|(key, _)| *key).collect();
            let values: Vec<V> = chunk.iter().map(|(_, value)| *value).collect();
            let mut attr = self.attr(&keys, values.as_ptr() as u64);
            Self::call(BPF_MAP_UPDATE_BATCH, &mut attr).map_err(|e| self.error("update batch", e))?;
        }
        Ok(())
    }

    /// Removes each key; one already gone is no error.
    pub(crate) fn remove(&self, keys: &[K]) -> Result<()> {
        in_parallel(keys, |part| self.remove_in_turn(part))
    }

    fn remove_in_turn(&self, keys: &[K]) -> Result<()> {
        for chunk in keys.chunks(BATCH) {
            let mut rest = chunk;
            // The kernel stops at a key it cannot delete, saying how many it did: skip
            // that one if it was gone, and go on with the others.
            while !rest.is_empty() {
                let mut attr = self.attr(rest, 0);
                match Self::call(BPF_MAP_DELETE_BATCH, &mut attr) {
                    Ok(()) => break,
                    Err((done, e)) if e.raw_os_error() == Some(libc::ENOENT) => rest = &rest[done + 1..],
                    Err(e) => return Err(self.error("delete batch", e)),
                }
            }
        }
        Ok(())
    }

    fn fd(&self) -> u32 {
        self.map.fd().as_fd().as_raw_fd() as u32
    }

    /// The call over `keys` (and the values at `values`, 0 for none).
    fn attr(&self, keys: &[K], values: u64) -> BatchAttr {
        BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys.as_ptr() as u64,
            values,
            count: keys.len() as u32,
            map_fd: self.fd(),
            elem_flags: 0,
            flags: 0,
        }
    }

    /// One batch call; on failure, how many entries it did first.
    fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> std::result::Result<(), (usize, std::io::Error)> {
        // SAFETY: a `bpf_attr` for a batch call of the size given: `count` keys (and
        // values) of the map's sizes, in buffers that outlive the call; the kernel writes
        // back `count`, and for a lookup the entries and its place in the walk.
        let rc =
            unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<BatchAttr>()) };
        if rc < 0 {
            return Err((attr.count as usize, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn error(&self, call: &'static str, (_, source): (usize, std::io::Error)) -> MapsError {
        MapsError::Syscall { name: self.name, call, source }
    }
}

impl LiveMaps {
    /// The named lists' trie, for batch calls; `None` on a live filter older than it.
    pub(crate) fn block_lists_batch(&self) -> Option<Batch<'_, Key<Addr>, u32>> {
        self.block_lists.as_ref().map(|trie| Batch::new(trie.map(), MAP_BLOCK_LISTS))
    }

    /// The exact-peer hash, for batch calls.
    fn allow_exact_batch(&self) -> Batch<'_, AllowKey, AllowValue> {
        Batch::new(self.allow_exact.map(), MAP_ALLOW_EXACT)
    }

    /// The maps `get` gives; those [`MAPS_ADDED_LATER`] only when `has` says it has them.
    fn from_source(
        mut get: impl FnMut(&'static str) -> Result<Map>,
        has: impl Fn(&'static str) -> bool,
    ) -> Result<LiveMaps> {
        macro_rules! typed {
            ($name:expr) => {
                get($name)?.try_into().map_err(call($name, "open"))?
            };
        }
        Ok(LiveMaps {
            config: typed!(MAP_CONFIG),
            counters: typed!(MAP_COUNTERS),
            conntrack: typed!(MAP_CONNTRACK),
            half_open: typed!(MAP_HALF_OPEN),
            flow_stats: typed!(MAP_FLOW_STATS),
            flows_ended: typed!(MAP_FLOWS_ENDED),
            allow_exact: typed!(MAP_ALLOW_EXACT),
            allow_prefix: typed!(MAP_ALLOW_PREFIX),
            antispoof_src: typed!(MAP_ANTISPOOF_SRC),
            antispoof_dst: typed!(MAP_ANTISPOOF_DST),
            antispoof_cells: if has(MAP_ANTISPOOF_CELLS) { Some(typed!(MAP_ANTISPOOF_CELLS)) } else { None },
            service_skips: if has(MAP_SERVICE_SKIPS) { Some(typed!(MAP_SERVICE_SKIPS)) } else { None },
            token_buckets: typed!(MAP_TOKEN_BUCKETS),
            blocklist: typed!(MAP_BLOCKLIST),
            block_lists: if has(MAP_BLOCK_LISTS) { Some(typed!(MAP_BLOCK_LISTS)) } else { None },
            list_deadlines: if has(MAP_LIST_DEADLINES) { Some(typed!(MAP_LIST_DEADLINES)) } else { None },
            lists: Vec::new(),
            host_addresses: if has(MAP_HOST_ADDRESSES) { Some(typed!(MAP_HOST_ADDRESSES)) } else { None },
            port_intervals: if has(MAP_PORT_INTERVALS) { Some(typed!(MAP_PORT_INTERVALS)) } else { None },
            per_source_limits: if has(MAP_PER_SOURCE_LIMITS) {
                Some(typed!(MAP_PER_SOURCE_LIMITS))
            } else {
                None
            },
            per_source_buckets: if has(MAP_PER_SOURCE_BUCKETS) {
                Some(typed!(MAP_PER_SOURCE_BUCKETS))
            } else {
                None
            },
            rule_uids: if has(MAP_RULE_UIDS) { Some(typed!(MAP_RULE_UIDS)) } else { None },
            per_source_connections: if has(MAP_PER_SOURCE_CONNECTIONS) {
                Some(typed!(MAP_PER_SOURCE_CONNECTIONS))
            } else {
                None
            },
        })
    }

    /// The map named `name`, when these maps hold it (the ring buffers, `FRAGMENTS` and
    /// the `DNS_*` maps stay the loaded object's, as the programs alone use them).
    pub(crate) fn map_data(&self, name: &str) -> Option<&MapData> {
        match name {
            MAP_CONFIG => Some(self.config.map()),
            MAP_COUNTERS => Some(self.counters.map()),
            MAP_CONNTRACK => Some(self.conntrack.map()),
            MAP_HALF_OPEN => Some(self.half_open.map()),
            MAP_FLOW_STATS => Some(self.flow_stats.map()),
            MAP_FLOWS_ENDED => Some(self.flows_ended.map()),
            MAP_ALLOW_EXACT => Some(self.allow_exact.map()),
            MAP_ALLOW_PREFIX => Some(self.allow_prefix.map()),
            MAP_ANTISPOOF_SRC => Some(self.antispoof_src.map()),
            MAP_ANTISPOOF_DST => Some(self.antispoof_dst.map()),
            MAP_ANTISPOOF_CELLS => self.antispoof_cells.as_ref().map(|m| m.map()),
            MAP_SERVICE_SKIPS => self.service_skips.as_ref().map(|m| m.map()),
            MAP_TOKEN_BUCKETS => Some(self.token_buckets.map()),
            MAP_BLOCKLIST => Some(self.blocklist.map()),
            MAP_BLOCK_LISTS => self.block_lists.as_ref().map(|m| m.map()),
            MAP_LIST_DEADLINES => self.list_deadlines.as_ref().map(|m| m.map()),
            MAP_HOST_ADDRESSES => self.host_addresses.as_ref().map(|m| m.map()),
            MAP_PORT_INTERVALS => self.port_intervals.as_ref().map(|m| m.map()),
            MAP_PER_SOURCE_LIMITS => self.per_source_limits.as_ref().map(|m| m.map()),
            MAP_PER_SOURCE_BUCKETS => self.per_source_buckets.as_ref().map(|m| m.map()),
            MAP_RULE_UIDS => self.rule_uids.as_ref().map(|m| m.map()),
            MAP_PER_SOURCE_CONNECTIONS => self.per_source_connections.as_ref().map(|m| m.map()),
            _ => None,
        }
    }

    /// Takes the maps out of a loaded object (after its programs are loaded: they hold
    /// the maps' descriptors from then on).
    pub fn take(ebpf: &mut Ebpf) -> Result<LiveMaps> {
        Self::from_source(|name| ebpf.take_map(name).ok_or(MapsError::Missing(name)), |_| true)
    }

    /// Opens the maps a live filter pinned.
    pub fn open(pins: &Pins) -> Result<LiveMaps> {
        check_pinned(pins)?;
        let mut maps =
            Self::from_source(|name| open_pinned(pins, name), |name| pins.map_path(name).exists())?;
        maps.lists = pins.block_lists().map_err(|e| MapsError::State(Box::new(e)))?;
        Ok(maps)
    }

    /// Refuses a plan the live filter's programs, loaded by an older version, know nothing
    /// of: their maps lack one it needs. Checked before anything changes, a resize too.
    pub fn refuse_unknown(&self, plan: &MapPlan) -> Result<()> {
        if self.host_addresses.is_none() && plan.config.flags & CONFIG_MORE_ADDRESSES != 0 {
            return Err(MapsError::OneAddressEach);
        }
        if self.port_intervals.is_none() && !plan.port_lanes.is_empty() {
            return Err(MapsError::NoPortRanges);
        }
        if self.per_source_limits.is_none() && !plan.per_source_limits.is_empty() {
            return Err(MapsError::NoPerSourceLimits);
        }
        if self.rule_uids.is_none() && !plan.rule_uids.is_empty() {
            return Err(MapsError::NoOwnerMatch);
        }
        if self.per_source_connections.is_none() && plan.has_connections() {
            return Err(MapsError::NoConnectionLimits);
        }
        Ok(())
    }

    /// Makes the maps hold `plan`: zeroes `fresh_counters` first, then adds and updates
    /// every wanted entry, and only then removes the stale ones, so no packet of a flow
    /// that stays allowed meets a gap. Last, flows the plan no longer admits are forgotten.
    /// `enforcement` sets the filter's mode; `None` keeps the live filter's.
    pub fn apply(
        &mut self,
        plan: &MapPlan,
        fresh_counters: &[u32],
        enforcement: Option<Enforcement>,
    ) -> Result<Applied> {
        self.refuse_unknown(plan)?;
        let mut applied = Applied::default();
        for id in fresh_counters {
            self.zero_counter(*id)?;
        }
        for (rule, bucket) in &plan.token_buckets {
            let live = self.token_buckets.get(rule, 0).map_err(call(MAP_TOKEN_BUCKETS, "get"))?;
            // A bucket whose rate and burst stay keeps its state.
            if (live.interval_ns, live.burst_ns) != (bucket.interval_ns, bucket.burst_ns) {
                self.token_buckets.set(*rule, bucket, 0).map_err(call(MAP_TOKEN_BUCKETS, "set"))?;
            }
        }
        // Before the allow-list entries that ask for them; a rule's that no longer has one
        // is cleared after them (see `clear_stale_limits`).
        if let Some(map) = &mut self.per_source_limits {
            for (rule, wanted) in &plan.per_source_limits {
                if map.get(rule, 0).map_err(call(MAP_PER_SOURCE_LIMITS, "get"))? != *wanted {
                    map.set(*rule, wanted, 0).map_err(call(MAP_PER_SOURCE_LIMITS, "set"))?;
                }
            }
        }

        // Anti-spoof tries, and their cells: a cell that changes asks the trie while the
        // trie changes, so no packet meets an answer the trie no longer gives, nor misses
        // one it gives already.
        let cells = self.antispoof_cells_changing(plan)?;
        for (trie, wanted, name) in [
            (&mut self.antispoof_src, &plan.antispoof_sources, MAP_ANTISPOOF_SRC),
            (&mut self.antispoof_dst, &plan.antispoof_destinations, MAP_ANTISPOOF_DST),
        ] {
            let live: Vec<(Key<Addr>, u32)> =
                trie.iter().collect::<std::result::Result<_, _>>().map_err(call(name, "iterate"))?;
            for (prefix, counter) in wanted {
                let key = prefix_key(prefix);
                if !live.iter().any(|(k, v)| same_key(k, &key) && v == counter) {
                    trie.insert(&key, counter, 0).map_err(call(name, "insert"))?;
                    applied.added += 1;
                }
            }
            for (key, _) in live {
                let prefix = Prefix::from_addr(&key.data(), key.prefix_len());
                if !wanted.contains_key(&prefix) {
                    gone_is_ok(trie.remove(&key)).map_err(call(name, "remove"))?;
                    applied.removed += 1;
                }
            }
        }
        self.set_antispoof_cells(&cells)?;

        // The rules' uids, before the allow-list entries that ask for them; the stale ones
        // go after those entries.
        let live_uids: std::collections::BTreeSet<RuleUid> = match &self.rule_uids {
            None => Default::default(),
            Some(map) => {
                map.keys().collect::<std::result::Result<_, _>>().map_err(call(MAP_RULE_UIDS, "iterate"))?
            }
        };
        if let Some(map) = &mut self.rule_uids {
            for uid in plan.rule_uids.difference(&live_uids) {
                map.insert(uid, 1, 0).map_err(call(MAP_RULE_UIDS, "insert"))?;
                applied.added += 1;
            }
        }

        // Allow-lists: both maps gain their new entries before either loses one, and a
        // service whose skip bits change asks every lookup while they do (see
        // `service_skips_changing`). Read and written in batches: a policy of a million
        // peers is a hundred calls.
        let skips = self.service_skips_changing(plan)?;
        let live_exact: Vec<(AllowKey, AllowValue)> = self.allow_exact_batch().entries()?;
        let live_prefix: Vec<(Key<AllowKey>, AllowValue)> = self
            .allow_prefix
            .iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(call(MAP_ALLOW_PREFIX, "iterate"))?;
        let (changed, stale) = exact_changes(live_exact, &plan.allow_exact);
        self.allow_exact_batch().update(&changed)?;
        applied.added += changed.len();
        let live_prefix_set: crate::FastMap<(u32, AllowKey), AllowValue> =
            live_prefix.iter().map(|(k, v)| ((k.prefix_len(), k.data()), *v)).collect();
        for ((len, key), value) in &plan.allow_prefix {
            if live_prefix_set.get(&(*len, *key)) != Some(value) {
                self.allow_prefix
                    .insert(&Key::new(*len, *key), value, 0)
                    .map_err(call(MAP_ALLOW_PREFIX, "insert"))?;
                applied.added += 1;
            }
        }
        // The intervals ports are looked up by, once their entries are in and before the
        // stale ones go: every port meets an entry of the old intervals or of the new.
        applied.added += self.apply_port_intervals(plan)?;
        self.allow_exact_batch().remove(&stale)?;
        applied.removed += stale.len();
        for (key, _) in &live_prefix {
            if !plan.allow_prefix.contains_key(&(key.prefix_len(), key.data())) {
                gone_is_ok(self.allow_prefix.remove(key)).map_err(call(MAP_ALLOW_PREFIX, "remove"))?;
                applied.removed += 1;
            }
        }

        self.set_service_skips(&skips)?;

        self.clear_stale_limits(plan)?;
        if let Some(map) = &mut self.rule_uids {
            for uid in live_uids.difference(&plan.rule_uids) {
                gone_is_ok(map.remove(uid)).map_err(call(MAP_RULE_UIDS, "remove"))?;
                applied.removed += 1;
            }
        }

        // The host's addresses: the new ones before the configuration that may name one
        // first or ask for the map, the stale ones after it, so an address the policy
        // keeps is never a stranger's, whichever of the two places holds it.
        let live_addresses: Vec<Addr> = match &self.host_addresses {
            None => Vec::new(),
            Some(map) => map
                .keys()
                .collect::<std::result::Result<_, _>>()
                .map_err(call(MAP_HOST_ADDRESSES, "iterate"))?,
        };
        if let Some(map) = &mut self.host_addresses {
            for addr in &plan.host_addresses {
                if !live_addresses.contains(addr) {
                    map.insert(addr, 1, 0).map_err(call(MAP_HOST_ADDRESSES, "insert"))?;
                    applied.added += 1;
                }
            }
        }

        // The ready bit goes on with the configuration, last.
        // The modes are the live filter's, not the policy's: audit unless told otherwise,
        // drop events while a listener is there, the blocklist's.
        let live = self.config()?.flags;
        let enforcement = enforcement.unwrap_or(Enforcement::of_flags(live));
        let mut config = plan.config;
        if enforcement == Enforcement::Audit {
            config.flags |= CONFIG_AUDIT;
        }
        config.flags |= live & CONFIG_LIVE_FLAGS;
        self.config.set(0, config, 0).map_err(call(MAP_CONFIG, "set"))?;

        if let Some(map) = &mut self.host_addresses {
            for addr in live_addresses.iter().filter(|a| !plan.host_addresses.contains(*a)) {
                gone_is_ok(map.remove(addr)).map_err(call(MAP_HOST_ADDRESSES, "remove"))?;
                applied.removed += 1;
            }
        }

        applied.flows_removed = self.forget_flows(plan)?;
        Ok(applied)
    }

    /// Clears the `per_source` limits of the rules that no longer have one, once their
    /// allow-list entries no longer ask for them (read meanwhile, a cleared limit would
    /// refuse a source whose bucket runs ahead), so that the map holds the policy's alone.
    fn clear_stale_limits(&mut self, plan: &MapPlan) -> Result<()> {
        let Some(map) = &mut self.per_source_limits else { return Ok(()) };
        for rule in (0..MAX_RULES).filter(|rule| !plan.per_source_limits.contains_key(rule)) {
            if map.get(&rule, 0).map_err(call(MAP_PER_SOURCE_LIMITS, "get"))? != PerSourceLimit::default() {
                map.set(rule, PerSourceLimit::default(), 0).map_err(call(MAP_PER_SOURCE_LIMITS, "set"))?;
            }
        }
        Ok(())
    }

    /// The cells of both anti-spoof lists that `plan` changes (index, new answer), each
    /// set to ask the trie meanwhile (see `apply`). None on a live filter without them.
    fn antispoof_cells_changing(&mut self, plan: &MapPlan) -> Result<Vec<(u32, u32)>> {
        let Some(map) = &mut self.antispoof_cells else { return Ok(Vec::new()) };
        let wanted = [&plan.antispoof_sources, &plan.antispoof_destinations]
            .into_iter()
            .flat_map(antispoof_cells)
            .zip(0u32..);
        let mut changing = Vec::new();
        for (cell, index) in wanted {
            let live = map.get(&index, 0).map_err(call(MAP_ANTISPOOF_CELLS, "get"))?;
            if live != cell {
                if live != CELL_ASK {
                    map.set(index, CELL_ASK, 0).map_err(call(MAP_ANTISPOOF_CELLS, "set"))?;
                }
                changing.push((index, cell));
            }
        }
        Ok(changing)
    }

    /// Writes the cells `antispoof_cells_changing` found, the tries holding the plan's
    /// entries now.
    fn set_antispoof_cells(&mut self, cells: &[(u32, u32)]) -> Result<()> {
        let Some(map) = &mut self.antispoof_cells else { return Ok(()) };
        for (index, cell) in cells {
            map.set(*index, cell, 0).map_err(call(MAP_ANTISPOOF_CELLS, "set"))?;
        }
        Ok(())
    }

    /// The `SERVICE_SKIPS` values that change for `plan`, each set to ask every lookup
    /// first (zero), so that no packet skips a lookup of an entry on its way in, or of one
    /// not yet gone; `set_service_skips` writes them once the allow-lists hold the plan.
    fn service_skips_changing(&mut self, plan: &MapPlan) -> Result<Vec<(u32, u64)>> {
        let Some(map) = &self.service_skips else { return Ok(Vec::new()) };
        let batch = Batch::<u32, u64>::new(map.map(), MAP_SERVICE_SKIPS);
        let live = batch.entries()?;
        let wanted = service_skips(plan);
        let (mut changing, mut asking) = (Vec::new(), Vec::new());
        for (index, lanes) in live {
            let Some(&want) = wanted.get(index as usize) else { continue };
            if want != lanes {
                if lanes != 0 {
                    asking.push((index, 0));
                }
                changing.push((index, want));
            }
        }
        batch.update(&asking)?;
        Ok(changing)
    }

    /// Writes the values `service_skips_changing` found.
    fn set_service_skips(&mut self, skips: &[(u32, u64)]) -> Result<()> {
        let Some(map) = &self.service_skips else { return Ok(()) };
        Batch::<u32, u64>::new(map.map(), MAP_SERVICE_SKIPS).update(skips)
    }

    /// Makes `PORT_INTERVALS` hold the plan's lanes, and with ranges in the plan, turns
    /// their lookup on (the configuration written last keeps it so). A filter whose policy
    /// had no ranges holds zeros (its flag is off until it has some): nothing to read then.
    /// How many values it wrote.
    fn apply_port_intervals(&mut self, plan: &MapPlan) -> Result<usize> {
        let had_ranges = self.config()?.flags & CONFIG_HAS_RANGES != 0;
        let Some(map) = &mut self.port_intervals else { return Ok(0) };
        if plan.port_lanes.is_empty() && !had_ranges {
            return Ok(0);
        }
        // Its size, as the kernel made it: one entry while the policy had no ranges.
        let len = map.map().info().map_err(call(MAP_PORT_INTERVALS, "info"))?.max_entries();
        let live: std::collections::BTreeMap<u32, u64> = (0..len)
            .map(|index| map.get(&index, 0).map(|value| (index, value)))
            .filter(|value| !matches!(value, Ok((_, 0))))
            .collect::<std::result::Result<_, _>>()
            .map_err(call(MAP_PORT_INTERVALS, "get"))?;
        let mut written = 0;
        let stale = live
            .iter()
            .filter(|(index, _)| !plan.port_lanes.contains_key(index))
            .map(|(index, _)| (index, &0));
        for (index, value) in plan.port_lanes.iter().chain(stale) {
            if live.get(index).copied().unwrap_or(0) != *value {
                map.set(*index, value, 0).map_err(call(MAP_PORT_INTERVALS, "set"))?;
                written += 1;
            }
        }
        if !plan.port_lanes.is_empty() && !had_ranges {
            self.set_flag(CONFIG_HAS_RANGES, true)?;
        }
        Ok(written)
    }

    /// Removes the flows whose opening packet the plan would no longer admit (a revoked
    /// peer, a removed rule, a rule with `returns = false` now), and points the others at
    /// the rule that admits them now.
    pub(crate) fn forget_flows(&mut self, plan: &MapPlan) -> Result<usize> {
        let mut removed = 0;
        for which in FlowTable::ALL {
            let flows: Vec<(FlowKey, Flow)> =
                self.table(which).iter().filter_map(std::result::Result::ok).collect();
            let mut ended = 0;
            let table = self.table_mut(which);
            for (key, flow) in flows {
                match fate(plan, &key, &flow) {
                    FlowFate::Kept => {}
                    FlowFate::Moved(rule) => {
                        // A flow that ended meanwhile is no error.
                        let _ = table.insert(key, Flow { rule, ..flow }, 2 /* BPF_EXIST */);
                    }
                    FlowFate::Ended => {
                        if table.remove(&key).is_ok() {
                            ended += 1;
                        }
                    }
                }
            }
            self.count_ended(which, ended)?;
            removed += ended;
        }
        Ok(removed as usize)
    }

    /// The live flows that applying `plan` would end, in both tables: what
    /// [`LiveMaps::apply`] would remove, found without changing anything.
    pub fn flows_ending(&self, plan: &MapPlan) -> Vec<(FlowTable, FlowKey, Flow)> {
        let mut flows = self.flows();
        flows.retain(|(_, key, flow)| matches!(fate(plan, key, flow), FlowFate::Ended));
        flows
    }

    /// Ends the flows whose peer `ends` picks, in both tables; how many ended.
    pub fn end_flows(&mut self, ends: impl Fn(&Addr) -> bool) -> Result<usize> {
        let mut removed = 0;
        for which in FlowTable::ALL {
            let table = self.table_mut(which);
            let keys: Vec<FlowKey> =
                table.keys().filter_map(std::result::Result::ok).filter(|k| ends(&k.peer)).collect();
            // A flow that ended meanwhile is no error.
            let ended = keys.iter().filter(|key| table.remove(key).is_ok()).count() as u64;
            self.count_ended(which, ended)?;
            removed += ended;
        }
        Ok(removed as usize)
    }

    pub fn table(&self, which: FlowTable) -> &HashMap<MapData, FlowKey, Flow> {
        match which {
            FlowTable::Established => &self.conntrack,
            FlowTable::HalfOpen => &self.half_open,
        }
    }

    fn table_mut(&mut self, which: FlowTable) -> &mut HashMap<MapData, FlowKey, Flow> {
        match which {
            FlowTable::Established => &mut self.conntrack,
            FlowTable::HalfOpen => &mut self.half_open,
        }
    }

    /// Adds `n` to the entries user space removed from `which`, atomically, through a
    /// shared mapping of `FLOWS_ENDED` (a lookup and an update would lose the count of a
    /// command ending flows at the same moment, which would then show as evictions).
    fn count_ended(&self, which: FlowTable, n: u64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let fd = self.flows_ended.map().fd().as_fd().as_raw_fd();
        // SAFETY: sysconf has no preconditions.
        let len = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        // SAFETY: a fresh shared mapping of the map's first page, which holds its
        // FLOWS_ENDED_ENTRIES u64s (a mmapable array keeps its values 8-byte aligned, one
        // after the other), unmapped below.
        let page = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if page == libc::MAP_FAILED {
            return Err(MapsError::Mmap(std::io::Error::last_os_error()));
        }
        // SAFETY: inside the mapping, aligned; the programs never touch this map and
        // other processes only add to it atomically.
        let slot = unsafe { &*page.cast::<AtomicU64>().add(which as usize) };
        slot.fetch_add(n, Ordering::Relaxed);
        // SAFETY: the mapping made above, no longer used.
        unsafe { libc::munmap(page, len) };
        Ok(())
    }

    pub fn zero_counter(&mut self, id: u32) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| MapsError::Cpus(e))?;
        let zeros = PerCpuValues::try_from(vec![Counter::default(); cpus])
            .map_err(|e| MapsError::Cpus(std::io::Error::other(e)))?;
        self.counters.set(id, zeros, 0).map_err(call(MAP_COUNTERS, "set"))
    }

    /// The counter ids in use: every built-in, anti-spoof and rule line's, the two of each
    /// blocklist entry and of each named list (a slot is zeroed
    /// when an entry or a list takes it, so the others are not worth reading: most of the
    /// array is the blocklist's, and mostly empty).
    fn counters_in_use(&self) -> Result<Vec<u32>> {
        let mut slots: Vec<u32> = self.lists.iter().map(|list| list.slot).collect();
        for entry in &self.blocklist {
            let (_, entry) = entry.map_err(call(MAP_BLOCKLIST, "iterate"))?;
            slots.push(entry.slot);
        }
        let mut ids: Vec<u32> = (0..BLOCK_COUNTER_BASE).collect();
        for slot in slots.into_iter().filter(|&slot| slot < MAX_BLOCKED) {
            ids.extend([block_counter(slot, Direction::In), block_counter(slot, Direction::Out)]);
        }
        Ok(ids)
    }

    /// Zeroes every counter, as `iptables -Z`.
    pub fn zero(&mut self) -> Result<()> {
        for id in self.counters_in_use()? {
            self.zero_counter(id)?;
        }
        Ok(())
    }

    /// Every line's counters summed over the CPUs, indexed by counter id (those of free
    /// blocklist slots read as zero).
    pub fn counters(&self) -> Result<Vec<Counter>> {
        let mut out = vec![Counter::default(); MAX_COUNTERS as usize];
        for id in self.counters_in_use()? {
            let values = self.counters.get(&id, 0).map_err(call(MAP_COUNTERS, "lookup"))?;
            out[id as usize] = values.iter().fold(Counter::default(), |sum, c| Counter {
                packets: sum.packets + c.packets,
                bytes: sum.bytes + c.bytes,
            });
        }
        Ok(out)
    }

    /// The tracked flows of both tables.
    pub fn flows(&self) -> Vec<(FlowTable, FlowKey, Flow)> {
        // Entries may vanish under the iteration (LRU, expiry): skip those.
        FlowTable::ALL
            .into_iter()
            .flat_map(|which| {
                self.table(which).iter().filter_map(std::result::Result::ok).map(move |(k, f)| (which, k, f))
            })
            .collect()
    }

    /// How many flows `which` holds: one `BPF_MAP_GET_NEXT_KEY` a flow, so a full default
    /// established table (65,536) takes some 30 ms.
    pub fn entries(&self, which: FlowTable) -> u64 {
        self.table(which).keys().flatten().count() as u64
    }

    /// A flow table's fill and size, and how many of its entries the kernel's LRU took back
    /// to make room (evicted): all it ever held, less what the programs and user space
    /// removed and what it holds now. Expired entries the LRU reclaimed count as evicted
    /// too: nothing tells them apart.
    pub fn table_stats(&self, which: FlowTable) -> Result<TableStats> {
        let per_cpu = |index: u32| -> Result<u64> {
            let values = self.flow_stats.get(&index, 0).map_err(call(MAP_FLOW_STATS, "lookup"))?;
            Ok(values.iter().sum())
        };
        let (inserted, removed) = (per_cpu(flows_inserted(which))?, per_cpu(flows_removed(which))?);
        let ended = self.flows_ended.get(&(which as u32), 0).map_err(call(MAP_FLOWS_ENDED, "lookup"))?;
        let entries = self.entries(which);
        let evicted = inserted.saturating_sub(removed).saturating_sub(ended).saturating_sub(entries);
        let name = match which {
            FlowTable::Established => MAP_CONNTRACK,
            FlowTable::HalfOpen => MAP_HALF_OPEN,
        };
        let capacity = u64::from(self.table(which).map().info().map_err(call(name, "info"))?.max_entries());
        Ok(TableStats { entries, capacity, evicted })
    }

    /// Sets the deadline of the named list in `slot` (`CLOCK_MONOTONIC_COARSE` ns; 0: none).
    /// A live filter older than the deadlines has only lists without one: 0 asks nothing
    /// of it.
    pub fn set_list_deadline(&mut self, slot: u32, deadline_ns: u64) -> Result<()> {
        match &mut self.list_deadlines {
            Some(deadlines) => deadlines.set(slot, deadline_ns, 0).map_err(call(MAP_LIST_DEADLINES, "set")),
            None if deadline_ns == 0 => Ok(()),
            None => Err(MapsError::NoListExpiry),
        }
    }

    /// Sets or clears one of the live filter's own `CONFIG_*` flags.
    /// Tells the programs whether to look in the tries at all: only while they hold entries
    /// (the blocklist or a named list, expired or not), or while the programs may write
    /// some (`CONFIG_BLOCKS_OFFENDERS`). A key the walk cannot read counts as one.
    pub fn settle_blocks_flag(&mut self) -> Result<()> {
        let listed = self.block_lists.as_ref().is_some_and(|trie| trie.keys().next().is_some());
        let blocked = self.blocklist.keys().next().is_some();
        let any = listed || blocked || self.config()?.flags & CONFIG_BLOCKS_OFFENDERS != 0;
        self.set_flag(CONFIG_HAS_BLOCKS, any)
    }

    pub fn set_flag(&mut self, flag: u32, on: bool) -> Result<()> {
        let mut config = self.config()?;
        if on {
            config.flags |= flag;
        } else {
            config.flags &= !flag;
        }
        self.config.set(0, config, 0).map_err(call(MAP_CONFIG, "set"))
    }

    /// Whether the live filter drops what its policy drops, or only counts it.
    /// `policy` with the addresses `HOST_ADDRESSES` holds beyond those it lists, each
    /// family's after its own: with `[host] follow_addresses`, the interface's addresses the
    /// filter follows, as it enforces them now. Without the key, `policy` as it is.
    pub fn with_followed_addresses(
        &self,
        mut policy: crate::policy::Policy,
    ) -> Result<crate::policy::Policy> {
        let Some(map) = self.host_addresses.as_ref().filter(|_| policy.follow_addresses) else {
            return Ok(policy);
        };
        let mut followed: Vec<std::net::IpAddr> = Vec::new();
        for key in map.keys() {
            let addr = from_addr(&key.map_err(call(MAP_HOST_ADDRESSES, "iterate"))?);
            if !policy.is_host_address(addr) {
                followed.push(addr);
            }
        }
        followed.sort_unstable();
        for addr in followed {
            match addr {
                std::net::IpAddr::V4(v4) => policy.more_addresses.push(v4),
                std::net::IpAddr::V6(v6) => policy.more_addresses6.push(v6),
            }
        }
        Ok(policy)
    }

    pub fn enforcement(&self) -> Result<Enforcement> {
        Ok(Enforcement::of_flags(self.config()?.flags))
    }

    pub fn config(&self) -> Result<Config> {
        self.config.get(&0, 0).map_err(call(MAP_CONFIG, "get"))
    }
}

/// The live filter's mode, read from its `CONFIG` alone: `up` makes the other maps anew
/// where another version made them at another layout (`kernel::relayout`). A `CONFIG` of
/// another layout holds it where this version cannot read it: then it is the mode the
/// state recorded when it was last saved (`LiveState::mode`), if a version that records
/// it saved it.
pub fn live_enforcement(pins: &Pins) -> Result<Enforcement> {
    if mismatches(pins)?.iter().any(|m| m.name == MAP_CONFIG) {
        return pins.live_state().ok().and_then(|state| state.mode).ok_or(MapsError::ModeUnreadable);
    }
    let config: Array<MapData, Config> =
        open_pinned(pins, MAP_CONFIG)?.try_into().map_err(call(MAP_CONFIG, "open pinned"))?;
    Ok(Enforcement::of_flags(config.get(&0, 0).map_err(call(MAP_CONFIG, "get"))?.flags))
}

/// Whether a filter drops what its policy drops (`--enforce`, a new filter's mode), or
/// counts it as "would drop" and passes it (`--audit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    Enforce,
    Audit,
}

impl Enforcement {
    fn of_flags(flags: u32) -> Enforcement {
        if flags & CONFIG_AUDIT != 0 { Enforcement::Audit } else { Enforcement::Enforce }
    }

    pub fn is_audit(self) -> bool {
        self == Enforcement::Audit
    }
}

fn same_key(a: &Key<Addr>, b: &Key<Addr>) -> bool {
    a.prefix_len() == b.prefix_len() && a.data() == b.data()
}

/// Flow keys seen twice by a racing iteration are counted once (a flow promoted under it
/// may be met in both tables: the established entry, listed first, is kept).
pub fn dedup_flows(flows: &mut Vec<(FlowTable, FlowKey, Flow)>) {
    let mut seen = HashSet::new();
    flows.retain(|(_, k, _)| seen.insert(*k));
}

/// One flow table's fill and evictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    pub entries: u64,
    /// Its size, as the kernel made it (`[conntrack] max_entries` or `max_half_open` of the
    /// policy last applied: a change of either resizes the table by migration).
    pub capacity: u64,
    /// Entries the LRU took back: inserted − removed − present (never below 0).
    pub evicted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(direction: u8, port: u16, last: u8) -> AllowKey {
        let mut peer = [0; 16];
        peer[15] = last;
        AllowKey { direction, protocol: firewall_common::PROTO_TCP, port, peer }
    }

    fn value(rule: u32) -> AllowValue {
        AllowValue { rule, flags: 0 }
    }

    #[test]
    fn the_exact_changes_write_what_is_new_or_other_and_remove_what_is_gone() {
        let (gone, kept, revalued, kept_out, added) =
            (key(0, 22, 1), key(0, 22, 2), key(0, 80, 1), key(1, 22, 1), key(0, 22, 3));
        let live = vec![(kept_out, value(1)), (gone, value(1)), (revalued, value(2)), (kept, value(1))];
        let wanted: ExactEntries =
            [(kept, value(1)), (revalued, value(3)), (added, value(1)), (kept_out, value(1))]
                .into_iter()
                .collect();
        let (mut changed, mut stale) = exact_changes(live, &wanted);
        changed.sort_by_key(|(k, _)| (k.direction, k.port, k.peer));
        stale.sort_by_key(|k| (k.direction, k.port, k.peer));
        assert_eq!(changed, vec![(added, value(1)), (revalued, value(3))]);
        assert_eq!(stale, vec![gone]);
        // A new filter's: everything written, nothing removed; and everything gone.
        let (changed, stale) = exact_changes(Vec::new(), &wanted);
        assert_eq!((changed.len(), stale.len()), (4, 0));
        let (changed, stale) =
            exact_changes(vec![(gone, value(1)), (kept, value(2))], &ExactEntries::default());
        assert_eq!((changed, stale.len()), (vec![], 2));
    }
}
