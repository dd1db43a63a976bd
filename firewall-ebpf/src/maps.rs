//! Every map of the kernel side. `firewall up` pins each by name under the interface's
//! directory (`/sys/fs/bpf/firewall/IFACE/`), so the filter outlives the command and
//! every later command opens them there.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
};
use firewall_common::{
    ALLOW_EXACT_ENTRIES, ALLOW_PREFIX_ENTRIES, ANTISPOOF_CELLS_ENTRIES, Addr, AllowKey, AllowValue,
    BlockEntry, CONNTRACK_DEFAULT_ENTRIES, Config, Counter, DNS_ANSWERS_BYTES, DNS_RELEASED_ENTRIES,
    DROP_EVENTS_BYTES, FLOW_STATS_ENTRIES, FLOWS_ENDED_ENTRIES, FRAGMENTS_ENTRIES, Flow, FlowKey,
    FragmentKey, FragmentedDatagram, HALF_OPEN_DEFAULT_ENTRIES, MAX_ANTISPOOF, MAX_BLOCKED, MAX_COUNTERS,
    MAX_HOST_ADDRESSES, MAX_LISTED, MAX_RULE_UIDS, MAX_RULES, PER_SOURCE_BUCKETS_ENTRIES,
    PER_SOURCE_CONNECTIONS_ENTRIES, PORT_INTERVALS_ENTRIES, PerSourceLimit, ReleasedKey, RuleUid,
    SERVICE_SKIPS_ENTRIES, SourceConnections, SourceKey, TOKEN_BUCKETS_ENTRIES, TokenBucket,
};

/// `CONFIG[0]`: the host's address, timeouts, and whether the policy is in force.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// One packet/byte counter per listing line, per CPU (no atomics on the hot path).
#[map]
pub static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_COUNTERS, 0);

/// Conntrack-lite: the flows rules admitted that were heard both ways (see
/// firewall_common::Flow). LRU, so new such flows evict the idle ones first; spoofed
/// packets, never answered, cannot reach it. `[conntrack] max_entries` sizes it (see
/// firewall-user's `kernel::resize`, as for every map declared with a size here that the
/// policy decides).
#[map]
pub static CONNTRACK: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(CONNTRACK_DEFAULT_ENTRIES, 0);

/// The flows rules admitted that have not been heard both ways yet: where every flow
/// starts, and where a flood of spoofed ones stays. `[conntrack] max_half_open` resizes
/// it at load time.
#[map]
pub static HALF_OPEN: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(HALF_OPEN_DEFAULT_ENTRIES, 0);

/// Per CPU: entries the programs inserted into each flow table, and removed from it
/// (`firewall_common::flows_inserted`, `flows_removed`), for the count of evictions.
#[map]
pub static FLOW_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(FLOW_STATS_ENTRIES, 0);

/// Entries user space removed from each flow table: user space's alone, added to through
/// a shared mapping (so the programs never touch it; declared here to be created and
/// pinned with the others).
#[map]
pub static FLOWS_ENDED: Array<u64> = Array::with_max_entries(FLOWS_ENDED_ENTRIES, BPF_F_MMAPABLE);

/// Allow-list entries for single peer addresses: one hash lookup whatever the list's size.
/// Entries are allocated as they arrive; its buckets are not, so `up` sizes it from the
/// policy (firewall-user's `kernel::resize`), at most this declared capacity.
#[map]
pub static ALLOW_EXACT: HashMap<AllowKey, AllowValue> =
    HashMap::with_max_entries(ALLOW_EXACT_ENTRIES, BPF_F_NO_PREALLOC as u32);

/// Allow-list entries for real prefixes (prefix length 32 + the peer's, as an `Addr`).
#[map]
pub static ALLOW_PREFIX: LpmTrie<AllowKey, AllowValue> = LpmTrie::with_max_entries(ALLOW_PREFIX_ENTRIES, 0);

/// Anti-spoof source prefixes of both families (IPv4 mapped: 96 + its length); the value
/// is the entry's counter id.
#[map]
pub static ANTISPOOF_SRC: LpmTrie<Addr, u32> = LpmTrie::with_max_entries(MAX_ANTISPOOF, 0);

/// Anti-spoof destination prefixes; the value is the entry's counter id.
#[map]
pub static ANTISPOOF_DST: LpmTrie<Addr, u32> = LpmTrie::with_max_entries(MAX_ANTISPOOF, 0);

/// Each anti-spoof list's answer for each /8 of either family, where one answer holds for
/// all of it: no entry, or the one entry that holds it all; else ask the trie
/// (firewall_common::antispoof_cell). Most addresses are decided by this one array read,
/// which the kernel inlines, in place of a trie's walk.
#[map]
pub static ANTISPOOF_CELLS: Array<u32> = Array::with_max_entries(ANTISPOOF_CELLS_ENTRIES, 0);

/// `firewall block`: prefixes nothing passes to or from, each until its deadline. Live
/// state, not the policy's: `reload` leaves it alone, `down` ends it.
#[map]
pub static BLOCKLIST: LpmTrie<Addr, BlockEntry> = LpmTrie::with_max_entries(MAX_BLOCKED, 0);

/// `firewall block --from FILE --list NAME`: the named lists' prefixes (a feed's, a
/// country's), nothing passing to or from them; the value is a
/// [`firewall_common::listed_value`]: the counter slot of the list, and the entry's
/// length. Live state, as `BLOCKLIST` is.
#[map]
pub static BLOCK_LISTS: LpmTrie<Addr, u32> = LpmTrie::with_max_entries(MAX_LISTED, 0);

/// Each named list's deadline, by its counter slot (`block --from FILE --for DURATION`):
/// `CLOCK_MONOTONIC_COARSE` ns after which its entries no longer block; 0, as a slot no list
/// has set, for a list that lasts until replaced or removed.
#[map]
pub static LIST_DEADLINES: Array<u64> = Array::with_max_entries(MAX_BLOCKED, 0);

/// One token bucket per rule index; only rules with a `limit` consult theirs. The last,
/// `LOG_BUCKET`, limits drop events.
#[map]
pub static TOKEN_BUCKETS: Array<TokenBucket> = Array::with_max_entries(TOKEN_BUCKETS_ENTRIES, 0);

/// Each rule's `per_source` limit, by rule index; only rules whose allow-list entries say
/// `ALLOW_PER_SOURCE` consult theirs.
#[map]
pub static PER_SOURCE_LIMITS: Array<PerSourceLimit> = Array::with_max_entries(MAX_RULES, 0);

/// One GCRA `tat` per rule and source that opened flows under a `per_source` limit. LRU:
/// sources quiet the longest are forgotten first, and start again with a full burst.
#[map]
pub static PER_SOURCE_BUCKETS: LruHashMap<SourceKey, u64> =
    LruHashMap::with_max_entries(PER_SOURCE_BUCKETS_ENTRIES, 0);

/// The flows each source opened under each rule with `per_source.connections`, by the
/// same key as its bucket (see crate::per_source). LRU: a source quiet the longest is
/// forgotten first, and starts again with no connection counted.
#[map]
pub static PER_SOURCE_CONNECTIONS: LruHashMap<SourceKey, SourceConnections> =
    LruHashMap::with_max_entries(PER_SOURCE_CONNECTIONS_ENTRIES, 0);

/// The uids each rule with `uids` admits the packets of (`firewall_common::RuleUid`; the
/// value is unused). Allocated as entries arrive: a policy without `uids` costs nothing.
#[map]
pub static RULE_UIDS: HashMap<RuleUid, u8> =
    HashMap::with_max_entries(MAX_RULE_UIDS, BPF_F_NO_PREALLOC as u32);

/// The drop events (`firewall_common::DropEvent`), while a listener asks for them: one
/// ring for all CPUs, so they arrive in order, and pinned with the others, so that the
/// listener, another process, reads it (sized in firewall_common::DROP_EVENTS_BYTES).
#[map]
pub static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(DROP_EVENTS_BYTES, 0);

/// The fragmented datagrams whose first fragment passed, so that their later fragments,
/// which carry no headers, follow it (see crate::fragments). LRU: a full table forgets the
/// oldest, whose fragments are long through.
#[map]
pub static FRAGMENTS: LruHashMap<FragmentKey, FragmentedDatagram> =
    LruHashMap::with_max_entries(FRAGMENTS_ENTRIES, 0);

/// Keys and values the programs' 512-byte stack has no room for, beside the flows' keys and
/// entries, written here before a map call: a key and an entry of `FRAGMENTS`, an address
/// to look up in `HOST_ADDRESSES`, a source's key in `PER_SOURCE_BUCKETS` and
/// `PER_SOURCE_CONNECTIONS` and a new entry of the latter, an offender's entry in
/// `BLOCKLIST`, a peer's key in the blocklists and in the anti-spoof tries, and the count of a source's open
/// connections as its slots are walked.
pub struct Scratch {
    pub fragment: FragmentKey,
    pub datagram: FragmentedDatagram,
    pub address: Addr,
    pub source: SourceKey,
    pub offender_key: Key<Addr>,
    /// A peer's key in `BLOCKLIST` and `BLOCK_LISTS`, an address's in `ANTISPOOF_SRC` and
    /// `ANTISPOOF_DST`.
    pub peer_key: Key<Addr>,
    pub offender: BlockEntry,
    /// Only its first slot is ever written: the rest stay empty.
    pub connections: SourceConnections,
    pub flow: FlowKey,
    /// A packet's key in `ALLOW_EXACT`, for `chain::allow_line`; its peer is zeroed there
    /// for the lookup of `any`.
    pub allow: AllowKey,
    pub open: u32,
    pub free: u32,
}

/// Per CPU and per program (indexed by `Direction`, so neither meets the other's): a
/// [`Scratch`]. Not pinned: it holds nothing between packets.
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(2, 0);

/// Every address of the host's, of both families (IPv4 mapped), when the policy names
/// more than one of a family (`CONFIG_MORE_ADDRESSES`); the value is unused (1). The
/// first of each family is in `CONFIG` too, so a host with one of each never looks here.
#[map]
pub static HOST_ADDRESSES: HashMap<Addr, u32> = HashMap::with_max_entries(MAX_HOST_ADDRESSES, 0);

/// Each tcp and udp port's distance to the first port of its interval, four 16-bit lanes a
/// value (see firewall_common::port_interval_slot): the port the allow-lists know a port in
/// a range by. Zero, every port its own, but inside ranges; asked only with
/// `CONFIG_HAS_RANGES`.
#[map]
pub static PORT_INTERVALS: Array<u64> = Array::with_max_entries(PORT_INTERVALS_ENTRIES, 0);

/// For each service, the allow-list lookups it may skip: no peer or prefix of any rule
/// (`firewall_common::SKIP_PEERS`), no `any` (`SKIP_ANYONE`); two bits a service (see
/// firewall_common::service_skip_slot). One array read, which the kernel inlines, in place
/// of hash lookups that would miss: a packet to a port no rule serves meets its chain's
/// policy with no hash lookup at all.
#[map]
pub static SERVICE_SKIPS: Array<u64> = Array::with_max_entries(SERVICE_SKIPS_ENTRIES, 0);

/// `[dns] learn`: the DNS answers held for `firewall serve` (`firewall_common::DnsAnswer`),
/// which learns the names' addresses from them and hands them back (see crate::dns). One
/// ring for all CPUs, pinned so that `serve`, another process, reads it.
#[map]
pub static DNS_ANSWERS: RingBuf = RingBuf::with_byte_size(DNS_ANSWERS_BYTES, 0);

/// `DNS_LISTENER[0]`: until when (`CLOCK_MONOTONIC_COARSE` ns) `firewall serve` takes the
/// held answers. It moves the deadline on every second; a `serve` stopped, or stuck, lets
/// it pass, and answers then pass unheld.
#[map]
pub static DNS_LISTENER: Array<u64> = Array::with_max_entries(1, 0);

/// The answers `firewall serve` handed back, until their second pass (generic XDP meets
/// them again in the stack): by flow and length, each until its deadline. LRU: a marker
/// no pass took (native XDP's answers never come back) is forgotten.
#[map]
pub static DNS_RELEASED: LruHashMap<ReleasedKey, u64> = LruHashMap::with_max_entries(DNS_RELEASED_ENTRIES, 0);
