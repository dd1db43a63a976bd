//! The ABI between the kernel programs (`firewall-ebpf`) and the `firewall` binary.
//!
//! Everything that crosses the boundary lives here, once: map names, map keys and
//! values, and counter ids. Every type is `#[repr(C)]` with explicit padding so that
//! kernel and user side agree byte for byte; ports are in host order.
//!
//! Addresses are [`Addr`]: 16 bytes in network order, IPv6 as it is, IPv4 as its
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291). So both families share one set of
//! maps and one chain engine, and an IPv4 prefix of length n is the mapped prefix of length
//! 96 + n. The mapped range belongs to IPv4 alone: the parser refuses an IPv6 header that
//! carries a mapped address (RFC 4291 §2.5.5.2: never on the wire), and the policy refuses an
//! IPv6 prefix that overlaps it, so no IPv6 packet can pass for an IPv4 peer.
//!
//! Where a seed rule lives:
//!
//! | seed rule | map | counter |
//! | --- | --- | --- |
//! | anti-spoof `-s`/`-d` lists | [`MAP_ANTISPOOF_CELLS`] (array: each /8's answer, where one answer holds for all of it), then [`MAP_ANTISPOOF_SRC`], [`MAP_ANTISPOOF_DST`] (LPM tries) | one per entry, the trie's value |
//! | `--state INVALID` | none (the parser) | [`Builtin::Invalid`], [`Builtin::InvalidTcpFlags`], [`Builtin::InvalidFragment`] |
//! | (what iptables never sees: the link layer) | none (the parser) | [`Builtin::NonIp`] passes, [`Builtin::OtherEthertype`] drops |
//! | (what iptables never sees: the DHCP client's packet sockets) | [`MAP_CONFIG`]'s [`CONFIG_DHCP`] (`[host] dhcp`) | [`Builtin::Dhcp`] passes |
//! | a service's allow-list | [`MAP_SERVICE_SKIPS`] (array: for each service, whether it has peers, and `any`), then [`MAP_ALLOW_EXACT`] (hash, single addresses and `any`), [`MAP_ALLOW_PREFIX`] (LPM trie, CIDRs) | [`rule_counter`] with [`Line::New`] |
//! | `--state ESTABLISHED` returns | [`MAP_CONNTRACK`] (LRU hash, flows heard both ways), [`MAP_HALF_OPEN`] (LRU hash, the others) | [`rule_counter`] with [`Line::Established`] |
//! | `-m limit` | [`MAP_TOKEN_BUCKETS`] (array, one per rule) | falls through to the chain policy |
//! | `-P … DROP` | none | [`Builtin::Policy`] |
//! | `--state ESTABLISHED` for a datagram's later fragments (iptables reassembles first) | [`MAP_FRAGMENTS`] (LRU hash, the datagrams whose first fragment passed) | the first fragment's line; [`Builtin::FragmentOrphan`], [`Builtin::InvalidFragment`] drop |
//! | `firewall block` (fail2ban's `-I INPUT -s … -j DROP`) | [`MAP_BLOCKLIST`] (LPM trie, deadline in the value) | [`block_counter`], one per entry and direction |
//! | `firewall block --from FILE --list NAME [--for DURATION]` (ipset's `-m set --match-set NAME src -j DROP`, its `timeout`) | [`MAP_BLOCK_LISTS`] (LPM trie, every named list's prefixes; the value is a [`listed_value`]), [`MAP_LIST_DEADLINES`] (array: each list's deadline, by slot) | [`block_counter`], one per list and direction |
//! | `-d $OURIP` / `-s $OURIP` | [`MAP_CONFIG`]'s `address`, `address6` (the first of each family); with [`CONFIG_MORE_ADDRESSES`], [`MAP_HOST_ADDRESSES`] (hash, every address) | FORWARD's [`Builtin::Policy`], [`Builtin::SpoofedSource`] |
//! | `-m hashlimit --hashlimit-mode srcip`, `-m recent --update --hitcount` (ufw's `limit`): a rule's `per_source` | [`MAP_PER_SOURCE_LIMITS`] (array: each rule's rate), [`MAP_PER_SOURCE_BUCKETS`] (LRU hash: one GCRA per rule and source); an offender's block in [`MAP_BLOCKLIST`], written by the programs | [`Builtin::SourceLimit`] |
//! | `-m connlimit --connlimit-above N` (a rule's `per_source.connections`) | [`MAP_PER_SOURCE_CONNECTIONS`] (LRU hash: the flows each source opened under each rule, each asked of the flow tables whether it is still open) | [`Builtin::SourceLimit`] |
//! | `-m owner --uid-owner` (egress) | [`MAP_RULE_UIDS`] (hash: the uids each rule with `uids` admits), asked with the sending socket's uid | the rule's, as above |
//! | `--dport FIRST:LAST`, `-m multiport --dports` with ranges | [`MAP_PORT_INTERVALS`] (array: each port's offset from its interval's first port), with [`CONFIG_HAS_RANGES`]; then the allow-lists | the rule's, as above |
//! | (iptables' `LOG` target, sampled: `firewall drops`) | [`MAP_DROP_EVENTS`] (ring buffer of [`DropEvent`]s) | none: the event names the drop's counter |
//! | (what iptables cannot do: a peer's name learned from the host's own DNS answers, `[dns] learn`) | [`MAP_DNS_ANSWERS`] (ring buffer of held [`DnsAnswer`]s), [`MAP_DNS_LISTENER`] (array: until when `serve` takes them), [`MAP_DNS_RELEASED`] (LRU hash: answers handed back, [`ReleasedKey`]) | the flow's [`Line::Established`], once |
#![no_std]

/// Names of the maps, as the kernel object declares them and as they are pinned.
pub const MAP_CONFIG: &str = "CONFIG";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_CONNTRACK: &str = "CONNTRACK";
pub const MAP_ALLOW_EXACT: &str = "ALLOW_EXACT";
pub const MAP_ALLOW_PREFIX: &str = "ALLOW_PREFIX";
pub const MAP_ANTISPOOF_SRC: &str = "ANTISPOOF_SRC";
pub const MAP_ANTISPOOF_DST: &str = "ANTISPOOF_DST";
pub const MAP_TOKEN_BUCKETS: &str = "TOKEN_BUCKETS";
pub const MAP_BLOCKLIST: &str = "BLOCKLIST";
pub const MAP_HALF_OPEN: &str = "HALF_OPEN";
pub const MAP_FLOW_STATS: &str = "FLOW_STATS";
pub const MAP_FLOWS_ENDED: &str = "FLOWS_ENDED";
pub const MAP_DROP_EVENTS: &str = "DROP_EVENTS";
pub const MAP_FRAGMENTS: &str = "FRAGMENTS";
pub const MAP_SCRATCH: &str = "SCRATCH";
pub const MAP_HOST_ADDRESSES: &str = "HOST_ADDRESSES";
pub const MAP_PORT_INTERVALS: &str = "PORT_INTERVALS";
pub const MAP_PER_SOURCE_LIMITS: &str = "PER_SOURCE_LIMITS";
pub const MAP_PER_SOURCE_BUCKETS: &str = "PER_SOURCE_BUCKETS";
pub const MAP_RULE_UIDS: &str = "RULE_UIDS";
pub const MAP_PER_SOURCE_CONNECTIONS: &str = "PER_SOURCE_CONNECTIONS";
pub const MAP_BLOCK_LISTS: &str = "BLOCK_LISTS";
pub const MAP_LIST_DEADLINES: &str = "LIST_DEADLINES";
pub const MAP_DNS_ANSWERS: &str = "DNS_ANSWERS";
pub const MAP_DNS_LISTENER: &str = "DNS_LISTENER";
pub const MAP_DNS_RELEASED: &str = "DNS_RELEASED";
pub const MAP_ANTISPOOF_CELLS: &str = "ANTISPOOF_CELLS";
pub const MAP_SERVICE_SKIPS: &str = "SERVICE_SKIPS";
/// Every map, in the order `up` pins them.
pub const MAPS: [&str; 27] = [
    MAP_CONFIG,
    MAP_COUNTERS,
    MAP_CONNTRACK,
    MAP_HALF_OPEN,
    MAP_FLOW_STATS,
    MAP_FLOWS_ENDED,
    MAP_ALLOW_EXACT,
    MAP_ALLOW_PREFIX,
    MAP_ANTISPOOF_SRC,
    MAP_ANTISPOOF_DST,
    MAP_TOKEN_BUCKETS,
    MAP_BLOCKLIST,
    MAP_DROP_EVENTS,
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
/// Maps the object declares that `up` does not pin: they hold nothing between packets.
pub const SCRATCH_MAPS: [&str; 1] = [MAP_SCRATCH];

/// Names of the programs in the object.
pub const PROG_INGRESS: &str = "firewall_ingress";
pub const PROG_EGRESS: &str = "firewall_egress";

/// The most rules a policy may have (the token-bucket array's size).
pub const MAX_RULES: u32 = 512;
/// The most anti-spoof entries (sources and destinations together).
pub const MAX_ANTISPOOF: u32 = 448;

/// One of the two anti-spoof lists: which trie, and which half of [`MAP_ANTISPOOF_CELLS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AntispoofList {
    /// `[antispoof] sources`: [`MAP_ANTISPOOF_SRC`].
    Sources = 0,
    /// `[antispoof] destinations`: [`MAP_ANTISPOOF_DST`].
    Destinations = 1,
}

/// [`MAP_ANTISPOOF_CELLS`]' entries: for each list, 256 cells of IPv4 (one per first
/// octet: `::ffff:b.0.0.0/104` in the maps' address space) and 256 of IPv6 (one per first
/// byte: `b00::/8`).
pub const ANTISPOOF_CELLS_ENTRIES: u32 = 2 * 512;
/// A cell's value: ask the list's trie, for some prefix of the list lies inside the cell.
/// Zero, so that a cell never written (a map just created, before `up` fills it) asks,
/// as the programs did before the cells.
pub const CELL_ASK: u32 = 0;
/// A cell's value: no prefix of the list holds any address of the cell. Any other value
/// is the counter of the one entry that holds all of them (never 0: see
/// [`ANTISPOOF_COUNTER_BASE`]).
pub const CELL_NONE: u32 = u32::MAX;

/// The index in [`MAP_ANTISPOOF_CELLS`] of the cell of `list` that holds an address of the
/// family `v6` whose first byte (IPv4: first octet) is `byte`. An IPv4 address's cell lies
/// inside IPv6's cell 0 (`::ffff:0:0/96` is in `::/8`): either answers for it.
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub const fn antispoof_cell(list: AntispoofList, v6: bool, byte: u8) -> u32 {
    list as u32 * 512 + if v6 { 256 } else { 0 } + byte as u32
}
/// The most blocklist entries (`firewall block`), and counter slots: a named list takes one.
pub const MAX_BLOCKED: u32 = 4096;
/// The most prefixes of the named lists together (`firewall block --from`). An LPM trie
/// allocates a node per entry as it is inserted, so this is a cap, not a cost.
pub const MAX_LISTED: u32 = 1 << 22;
/// Size of the per-CPU counter array.
pub const MAX_COUNTERS: u32 = BLOCK_COUNTER_BASE + 2 * MAX_BLOCKED;
/// The most addresses `[host]` may name, both families together (`HOST_ADDRESSES`).
pub const MAX_HOST_ADDRESSES: u32 = 256;
/// Size of [`MAP_PORT_INTERVALS`]: four ports a value, for each of the four (direction,
/// tcp or udp) port spaces (see [`port_interval_slot`]).
pub const PORT_INTERVALS_ENTRIES: u32 = 4 << 14;
/// Capacity of [`MAP_PER_SOURCE_BUCKETS`]: the sources whose rate is remembered, of every
/// rule with a `per_source` limit together (an LRU: the least recent go first).
pub const PER_SOURCE_BUCKETS_ENTRIES: u32 = 16_384;
/// Capacity of [`MAP_PER_SOURCE_CONNECTIONS`]: the sources whose open connections are
/// counted, of every rule with `per_source.connections` together (an LRU: the least recent
/// go first, and one forgotten starts again with none).
pub const PER_SOURCE_CONNECTIONS_ENTRIES: u32 = 4096;
/// The most connections `per_source.connections` may allow one source at once: the slots
/// of a [`SourceConnections`].
pub const MAX_CONNECTIONS: usize = 16;
/// Capacity of [`MAP_RULE_UIDS`]: the uids of every rule with `uids` together (a range
/// is one entry a uid).
pub const MAX_RULE_UIDS: u32 = 65_536;
/// The uid the kernel reports for a packet without a socket of its own (the overflow
/// uid, `nobody`'s): forwarded packets, and those the kernel sends for no socket, as a RST
/// to a closed port. No rule may name it, so that such a packet never matches `uids`.
pub const NO_SOCKET_UID: u32 = 65_534;
/// Capacity of the exact-address allow-list hash.
pub const ALLOW_EXACT_ENTRIES: u32 = 1 << 21;
/// Capacity of the prefix allow-list trie.
pub const ALLOW_PREFIX_ENTRIES: u32 = 1 << 16;
/// Default capacity of the conntrack LRU (`[conntrack] max_entries`).
pub const CONNTRACK_DEFAULT_ENTRIES: u32 = 65_536;
/// Default capacity of the half-open flows' LRU (`[conntrack] max_half_open`).
pub const HALF_OPEN_DEFAULT_ENTRIES: u32 = 16_384;
/// Capacity of the fragmented datagrams' LRU: each entry lives `[conntrack]
/// fragment_timeout` at most, and only a first fragment that passed makes one, so this
/// holds 800 such datagrams a second at the default 5 s before the oldest go early.
pub const FRAGMENTS_ENTRIES: u32 = 4096;

/// IP protocol numbers the rules can name (a rule's `icmp` is ICMPv6 for IPv6 peers).
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Each protocol's name, as the policy's `protocols`, iptables and conntrack spell it
/// (ip6tables' listing alone says `ipv6-icmp`). The only place a protocol is named.
pub const PROTOCOL_NAMES: [(u8, &str); 4] =
    [(PROTO_TCP, "tcp"), (PROTO_UDP, "udp"), (PROTO_ICMP, "icmp"), (PROTO_ICMPV6, "icmpv6")];

/// The name of protocol number `protocol`, if the firewall knows it.
pub fn protocol_name(protocol: u8) -> Option<&'static str> {
    PROTOCOL_NAMES.iter().find(|(number, _)| *number == protocol).map(|(_, name)| *name)
}

/// The protocol number named `name`, if the firewall knows it.
pub fn protocol_named(name: &str) -> Option<u8> {
    PROTOCOL_NAMES.iter().find(|(_, known)| *known == name).map(|(number, _)| *number)
}

/// Whether a rule can name `protocol`: ICMPv6 it names as `icmp`.
pub const fn rule_protocol(protocol: u8) -> bool {
    matches!(protocol, PROTO_TCP | PROTO_UDP | PROTO_ICMP)
}

/// TCP flag bits, as iptables' `--tcp-flags` names them: FIN, SYN, RST, PSH, ACK, URG.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;

/// The flag sets a TCP segment can carry, as netfilter's `tcp_valid_flags` (PSH, ECE and
/// CWR do not matter): one bit per combination of FIN, SYN, RST, ACK and URG.
const VALID_TCP_FLAGS: u64 = 1 << TCP_SYN
    | 1 << (TCP_SYN | TCP_URG)
    | 1 << (TCP_SYN | TCP_ACK)
    | 1 << TCP_RST
    | 1 << (TCP_RST | TCP_ACK)
    | 1 << (TCP_FIN | TCP_ACK)
    | 1 << (TCP_FIN | TCP_ACK | TCP_URG)
    | 1 << TCP_ACK
    | 1 << (TCP_ACK | TCP_URG);

/// False for NULL, SYN+FIN, SYN+RST, FIN/PSH/URG without ACK, XMAS and the rest.
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
#[must_use]
pub const fn tcp_flags_valid(flags: u8) -> bool {
    let significant = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG) & !TCP_PSH;
    VALID_TCP_FLAGS >> significant & 1 == 1
}

/// ICMP types with meaning to conntrack.
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// ICMPv6 types (RFC 4443, 4861, 2710, 3810).
pub const ICMPV6_DEST_UNREACHABLE: u8 = 1;
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
pub const ICMPV6_TIME_EXCEEDED: u8 = 3;
pub const ICMPV6_PARAMETER_PROBLEM: u8 = 4;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// Multicast listener query, report, done (MLDv1) and MLDv2 report.
pub const ICMPV6_MLD: [u8; 4] = [130, 131, 132, 143];
/// Router solicitation … redirect: neighbour discovery.
pub const ICMPV6_ND_FIRST: u8 = 133;
pub const ICMPV6_ND_LAST: u8 = 137;

/// The ICMPv6 type that means what ICMP type `kind` means for IPv4, for the types a rule
/// can name; `None` for the rest (a rule naming one by number applies to IPv4 alone).
pub const fn icmpv6_equivalent(kind: u8) -> Option<u8> {
    match kind {
        ICMP_ECHO_REPLY => Some(ICMPV6_ECHO_REPLY),
        ICMP_DEST_UNREACHABLE => Some(ICMPV6_DEST_UNREACHABLE),
        ICMP_ECHO_REQUEST => Some(ICMPV6_ECHO_REQUEST),
        ICMP_TIME_EXCEEDED => Some(ICMPV6_TIME_EXCEEDED),
        ICMP_PARAMETER_PROBLEM => Some(ICMPV6_PARAMETER_PROBLEM),
        _ => None,
    }
}

/// An address as the maps hold it: IPv6, or IPv4 mapped into IPv6 (see the crate's doc).
pub type Addr = [u8; 16];

/// The first 12 bytes of every IPv4-mapped address.
pub const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
/// Bits of an [`Addr`] before the IPv4 address in it.
pub const V4_MAPPED_BITS: u32 = 96;

/// `::ffff:a.b.c.d`.
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> Addr {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3]]
}

/// Whether `addr` is an IPv4-mapped address, that is an IPv4 one.
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub fn is_v4_mapped(addr: &Addr) -> bool {
    // As two words: one comparison each, not twelve.
    u64::from_ne_bytes([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7]]) == 0
        && u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]])
            == u32::from_ne_bytes([0, 0, 0xff, 0xff])
}

/// Which way a packet travels, from this host's point of view. The XDP program sees
/// `In`, the TC egress program `Out`; a rule's `direction` says which way opens its flows.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    In = 0,
    Out = 1,
}

impl Direction {
    #[must_use]
    pub const fn reverse(self) -> Self {
        match self {
            Direction::In => Direction::Out,
            Direction::Out => Direction::In,
        }
    }
}

/// The iptables chain a verdict is counted in.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// Ingress to the host's address.
    Input = 0,
    /// Egress from the host's address.
    Output = 1,
    /// Ingress to any other address: the kernel would route it, or it is a broadcast.
    Forward = 2,
}

impl Chain {
    pub const ALL: [Chain; 3] = [Chain::Input, Chain::Output, Chain::Forward];

    pub const fn of(direction: Direction) -> Self {
        match direction {
            Direction::In => Chain::Input,
            Direction::Out => Chain::Output,
        }
    }
}

/// The built-in lines of each chain: what the parser and the chain policy decide.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// One of the link's own protocols, which end at the neighbour and never reach the IP
    /// stack (ARP, LLDP, 802.1X, LACP, 802.3 LLC): passed, iptables never sees them and the
    /// host needs them.
    NonIp = 0,
    /// IPv6 while the policy configures none (no `address6`): dropped.
    Ipv6 = 1,
    /// Truncated or malformed headers.
    Invalid = 2,
    /// A TCP flag set no connection can have (NULL, SYN+FIN, XMAS, …).
    InvalidTcpFlags = 3,
    /// A fragment no sender makes: a first fragment too short to hold its transport
    /// header (RFC 1858's tiny fragments), a fragment that would end past 65,535 bytes, one
    /// with more to come whose length is no multiple of 8, or a later fragment that
    /// overlaps the bytes its first carried (and the filter judged).
    InvalidFragment = 4,
    /// Egress with a source other than the host's address (outbound spoofing).
    SpoofedSource = 5,
    /// Nothing admitted it: the chain's DROP policy.
    Policy = 6,
    /// IPv6 neighbour discovery (ICMPv6 133–137, hop limit 255) and multicast listener
    /// discovery (hop limit 1, link-local source): passed, IPv6 does not work without them;
    /// not to or from a blocked address, nor from an anti-spoofed source but the link's own
    /// (`fe80::/10`, `::`).
    NeighbourDiscovery = 7,
    /// ICMPv6 packet-too-big to or from the host: passed, or PMTU discovery breaks (the
    /// seed's point about ICMP type 3 code 4, for IPv6, where routers never fragment); not
    /// to or from a blocked address, nor from an anti-spoofed source.
    PacketTooBig = 8,
    /// Any other ethertype (MPLS, PPPoE, IPX, …): dropped, whatever it carries, since the
    /// parser does not read it and the host may unwrap it into IP.
    OtherEthertype = 9,
    /// The DHCP client's own exchange (`[host] dhcp`, on by default): UDP from port 67 to
    /// port 68 in and from 68 to 67 out, and DHCPv6's 547 to 546 in and 546 to 547 out
    /// (with `address6`), whatever the addresses: passed, or the host gets no lease,
    /// where iptables never sees the client's packet sockets; not to or from a blocked
    /// address. Its name is not reserved: the kind of a line, not its name, tells it
    /// from a rule's.
    Dhcp = 10,
    /// A later fragment (offset not 0) of a datagram whose first fragment did not pass
    /// within `[conntrack] fragment_timeout`: it never came, came later, or was dropped.
    /// There is no header to judge it by. Its name is not reserved, as `dhcp`'s.
    FragmentOrphan = 11,
    /// A rule's `per_source` limit: a new flow from a source over its rate, and every
    /// packet to or from a source such a limit blocked (an entry of the blocklist the
    /// programs wrote, until its deadline). Its name is not reserved, as `dhcp`'s.
    SourceLimit = 12,
}

impl Builtin {
    pub const ALL: [Builtin; 13] = [
        Builtin::NonIp,
        Builtin::Ipv6,
        Builtin::Invalid,
        Builtin::InvalidTcpFlags,
        Builtin::InvalidFragment,
        Builtin::SpoofedSource,
        Builtin::Policy,
        Builtin::NeighbourDiscovery,
        Builtin::PacketTooBig,
        Builtin::OtherEthertype,
        Builtin::Dhcp,
        Builtin::FragmentOrphan,
        Builtin::SourceLimit,
    ];

    /// The line's name in the listing, the metrics and the drop events; no rule may take it
    /// but [`Builtin::Dhcp`]'s (see [`Builtin::reserved`]).
    pub const fn name(self) -> &'static str {
        match self {
            Builtin::NonIp => "non-ip",
            Builtin::Ipv6 => "ipv6",
            Builtin::Invalid => "invalid",
            Builtin::InvalidTcpFlags => "invalid-tcp-flags",
            Builtin::InvalidFragment => "invalid-fragment",
            Builtin::SpoofedSource => "antispoof-source",
            Builtin::Policy => "policy",
            Builtin::NeighbourDiscovery => "icmpv6-nd",
            Builtin::PacketTooBig => "icmpv6-ptb",
            Builtin::OtherEthertype => "ethertype",
            Builtin::Dhcp => "dhcp",
            Builtin::FragmentOrphan => "fragment-orphan",
            Builtin::SourceLimit => "source-limit",
        }
    }
}

impl Builtin {
    /// Whether no rule may take the line's name. `dhcp` and `fragment-orphan` came after
    /// policies could name a rule so (one admitting a DHCP server on the host, say): such
    /// a policy stays valid, and the line's kind tells the two apart.
    pub const fn reserved(self) -> bool {
        !matches!(self, Builtin::Dhcp | Builtin::FragmentOrphan | Builtin::SourceLimit)
    }
}

/// The DHCP ports: a DHCPv4 server's and client's, a DHCPv6 server's and client's.
pub const DHCP_SERVER_PORT: u16 = 67;
pub const DHCP_CLIENT_PORT: u16 = 68;
pub const DHCPV6_SERVER_PORT: u16 = 547;
pub const DHCPV6_CLIENT_PORT: u16 = 546;

/// Built-in lines per chain in the counter array.
pub const BUILTINS_PER_CHAIN: u32 = 16;
/// First counter id handed to anti-spoof entries.
pub const ANTISPOOF_COUNTER_BASE: u32 = 64;
/// First counter id of rule lines.
pub const RULE_COUNTER_BASE: u32 = ANTISPOOF_COUNTER_BASE + MAX_ANTISPOOF;

/// First counter id of blocklist entries: two each (in, out), after the rules'.
pub const BLOCK_COUNTER_BASE: u32 = RULE_COUNTER_BASE + 2 * MAX_RULES;

/// The counter id of a chain's built-in line.
pub const fn builtin_counter(chain: Chain, line: Builtin) -> u32 {
    chain as u32 * BUILTINS_PER_CHAIN + line as u32
}

/// The two lines each rule has, as in the seed: the one that admits new flows in the
/// rule's own chain, and the ESTABLISHED return line in the other chain.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    New = 0,
    Established = 1,
}

/// The counter id of one of a rule's lines.
pub const fn rule_counter(rule: u32, line: Line) -> u32 {
    RULE_COUNTER_BASE + 2 * rule + line as u32
}

/// A `BLOCK_LISTS` value: the counter slot of the list the entry counts on, and the
/// entry's own prefix length as the trie's key has it (an IPv4 /n is 96 + n). The length
/// lets the programs, when the list has expired, ask the trie again one bit wider, so that
/// an expired narrow prefix never hides a live wide one of another list. Entries written
/// before lists could expire have length 0 and a list that never expires.
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub const fn listed_value(slot: u32, key_len: u32) -> u32 {
    slot | key_len << LISTED_LEN_SHIFT
}

/// The slot of a [`listed_value`].
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub const fn listed_slot(value: u32) -> u32 {
    value & ((1 << LISTED_LEN_SHIFT) - 1)
}

/// The key length of a [`listed_value`] (0: not recorded).
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub const fn listed_len(value: u32) -> u32 {
    value >> LISTED_LEN_SHIFT
}

const LISTED_LEN_SHIFT: u32 = 16;

/// How many entries of expired lists the programs look past, one bit wider each time, for
/// a live one holding the same address. An address under more nested prefixes of expired
/// lists than this passes (until the next load of a list, which takes expired lists' entries
/// out).
pub const MAX_LIST_NESTING: u32 = 8;

/// The counter id of blocklist slot `slot`'s line in `direction` (INPUT: from the
/// blocked peers, OUTPUT: to them).
pub const fn block_counter(slot: u32, direction: Direction) -> u32 {
    BLOCK_COUNTER_BASE + 2 * slot + direction as u32
}

/// One line's counters (per CPU; the listing sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// `CONFIG[0]`: what the programs need to know about the host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// The host's IPv4 address (OURIP), mapped: the first of `[host] address`.
    pub address: Addr,
    /// The host's IPv6 address (the first of `address6`), when [`CONFIG_IPV6`] is set.
    pub address6: Addr,
    /// `CONFIG_*` bits.
    pub flags: u32,
    /// `[conntrack] fragment_timeout`: how long after a first fragment passed its
    /// datagram's later fragments may follow, in seconds (the field was padding before:
    /// the layout is unchanged).
    pub fragment_timeout_s: u32,
    pub tcp_established_timeout_ns: u64,
    /// After a FIN: the flow lingers this long for the closing handshake.
    pub tcp_fin_timeout_ns: u64,
    /// After a RST.
    pub tcp_rst_timeout_ns: u64,
    pub udp_timeout_ns: u64,
    /// Echo flows (request one way, replies the other).
    pub icmp_timeout_ns: u64,
    /// After the opener's SYN, until the responder's SYN-ACK.
    pub tcp_syn_sent_timeout_ns: u64,
    /// After the responder's SYN-ACK, until the opener's ACK; and a session picked up
    /// mid-stream until both ends have been heard.
    pub tcp_syn_recv_timeout_ns: u64,
}

impl Config {
    /// How long a flow lives after its last packet, by its protocol and TCP state: the
    /// programs' rule, which `firewall conntrack` reads too.
    #[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
    #[inline(always)]
    pub const fn timeout_ns(&self, protocol: u8, tcp_state: u8) -> u64 {
        match (protocol, tcp_state) {
            (PROTO_TCP, TCP_OPEN) => self.tcp_established_timeout_ns,
            (PROTO_TCP, TCP_FIN_SEEN) => self.tcp_fin_timeout_ns,
            (PROTO_TCP, TCP_SYN_SENT) => self.tcp_syn_sent_timeout_ns,
            (PROTO_TCP, TCP_SYN_RECV) => self.tcp_syn_recv_timeout_ns,
            (PROTO_TCP, _) => self.tcp_rst_timeout_ns,
            (PROTO_UDP, _) => self.udp_timeout_ns,
            _ => self.icmp_timeout_ns,
        }
    }
}

/// `Config::flags`: the maps are filled and the policy is in force. Until it is set
/// the programs pass everything, so a half-loaded filter never drops (lock-out guard).
pub const CONFIG_READY: u32 = 1;
/// `Config::flags`: `ALLOW_PREFIX` holds entries. Without it the programs skip that
/// trie: most policies name single peers and `any`, which both live in `ALLOW_EXACT`.
pub const CONFIG_HAS_PREFIXES: u32 = 2;
/// `Config::flags`: the policy has an `address6`: IPv6 is filtered by the rules, not dropped.
pub const CONFIG_IPV6: u32 = 4;
/// `Config::flags`: audit mode (`--audit`): every verdict is counted where it falls, and
/// what would be dropped passes. The lock-out guard for trying a policy on a live host.
pub const CONFIG_AUDIT: u32 = 8;
/// `Config::flags`: `firewall drops` or `firewall serve --log-drops` is listening: a drop
/// sends a [`DropEvent`] through [`MAP_DROP_EVENTS`], at most as many a second as
/// `TOKEN_BUCKETS[LOG_BUCKET]` admits. Off by default: the seed warns that drop logging
/// fills disks.
pub const CONFIG_LOG_DROPS: u32 = 16;
/// `Config::flags`: `BLOCKLIST` holds entries. Without it the programs skip that trie:
/// most hosts block nothing most of the time, and the lookup would cost every new flow.
pub const CONFIG_HAS_BLOCKS: u32 = 32;
/// `Config::flags`: `[host] dhcp` (the default): the DHCP client's exchange passes
/// ([`Builtin::Dhcp`]).
pub const CONFIG_DHCP: u32 = 64;
/// `Config::flags`: never set. `flags & CONFIG_NEVER_SET` is 0, but a 0 read from a map,
/// which the verifier cannot see through: the programs fold it into a packet's
/// more-fragments flag, so that an IPv6 packet without a fragment header, whose flag would
/// otherwise be a constant 0, and a first fragment stay one path through the chains (see
/// firewall-ebpf's `parse::Ip::more`): without it, the verifier walks them twice, 14,000
/// instructions more.
pub const CONFIG_NEVER_SET: u32 = 1 << 31;
/// `Config::flags`: the policy names more than one address of some family: a local
/// address other than `Config::address` or `address6` is the host's when
/// [`MAP_HOST_ADDRESSES`] holds it. Without it the programs skip that lookup: most hosts
/// have one address of each family, and pay one comparison as before.
pub const CONFIG_MORE_ADDRESSES: u32 = 128;
/// `Config::flags`: some rule names a port range: before the allow-lists, a tcp or udp
/// port is replaced by the first port of its interval, read in [`MAP_PORT_INTERVALS`].
/// Without it the programs skip that lookup: policies of single ports pay nothing.
pub const CONFIG_HAS_RANGES: u32 = 256;
/// `Config::flags`: `[conntrack] tcp_loose = false`: a rule admits a TCP packet of no
/// tracked flow only if it is a bare SYN (SYN without ACK, RST or FIN), as netfilter with
/// `nf_conntrack_tcp_loose=0`, or a script's `-p tcp ! --syn -m state --state NEW -j DROP`,
/// does. Without it (the default) a first packet without SYN starts a flow too: a session
/// older than the filter is picked up mid-stream.
pub const CONFIG_TCP_STRICT: u32 = 512;
/// `Config::flags`: some rule's `per_source` limit has a `block`: the programs write
/// offenders into `BLOCKLIST`, so user space keeps [`CONFIG_HAS_BLOCKS`] set while the
/// policy has one, whatever the trie holds. The programs never read it.
pub const CONFIG_BLOCKS_OFFENDERS: u32 = 1024;
/// `Config::flags`: `[dns] learn`, with peers written as names: an answer from UDP port 53
/// on a tracked flow is held for `firewall serve` while it listens (see
/// [`MAP_DNS_LISTENER`]), which learns the names' addresses from it, then hands it back.
pub const CONFIG_LEARN_DNS: u32 = 2048;
/// The `Config::flags` that are the live filter's, not the policy's: a reload keeps them.
pub const CONFIG_LIVE_FLAGS: u32 = CONFIG_LOG_DROPS | CONFIG_HAS_BLOCKS;
/// The token bucket of drop events, after the rules' own.
pub const LOG_BUCKET: u32 = MAX_RULES;
/// Size of the token-bucket array: one per rule and the drop events'.
pub const TOKEN_BUCKETS_ENTRIES: u32 = MAX_RULES + 1;
/// How much of a dropped frame its event carries: Ethernet, two VLAN tags, IPv4 with
/// options or IPv6, and the ports.
pub const DROP_EVENT_BYTES: usize = 96;
/// Size of the drop events' ring buffer, in bytes (a power of two, a multiple of the page
/// size, as the kernel requires). A record takes 120 bytes (a [`DropEvent`] behind the
/// ring's 8-byte header, rounded to 8), so it holds about 2,180 events: the whole burst of
/// any rate up to 2,000 a second (a bucket's burst is one second's worth), while the
/// reader wakes within milliseconds. What does not fit is not sent: events are samples,
/// and a full ring costs the kernel one failed reservation, no more.
pub const DROP_EVENTS_BYTES: u32 = 256 * 1024;

/// One drop, or one flow a rule with `log` admitted, as the kernel sends it through
/// [`MAP_DROP_EVENTS`] while someone listens (see [`CONFIG_LOG_DROPS`]): the line it was
/// counted on and the frame's first bytes, which user space decodes and names (a rule's
/// NEW line tells an admit).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent {
    /// The counter id of the line that dropped it (a [`builtin_counter`], a
    /// [`rule_counter`], an anti-spoof entry's, a [`block_counter`]), or of the NEW line of
    /// the rule with `log` that admitted it.
    pub counter: u32,
    /// The whole frame's length in bytes (what iptables' LOG calls `LEN`, with the link
    /// header).
    pub len: u32,
    /// How many bytes of `head` the frame filled: [`DROP_EVENT_BYTES`], or less for a
    /// shorter frame.
    pub head_len: u16,
    /// The [`Direction`] it travelled.
    pub direction: u8,
    pub _pad: u8,
    /// The frame's first bytes, from its Ethernet header on.
    pub head: [u8; DROP_EVENT_BYTES],
}

impl DropEvent {
    /// The way it travelled; `None` for a byte that is no [`Direction`].
    pub const fn direction(&self) -> Option<Direction> {
        match self.direction {
            0 => Some(Direction::In),
            1 => Some(Direction::Out),
            _ => None,
        }
    }

    /// The bytes of the frame it carries.
    pub fn head(&self) -> &[u8] {
        &self.head[..(self.head_len as usize).min(DROP_EVENT_BYTES)]
    }
}

/// The port DNS answers come from.
pub const DNS_PORT: u16 = 53;
/// The longest frame held as a DNS answer: a full Ethernet frame with two VLAN tags (1,522
/// bytes), rounded up. A longer one (a jumbo MTU's) passes as it would without learning.
pub const DNS_ANSWER_BYTES: usize = 1536;
/// Size of the held answers' ring, in bytes (as [`DROP_EVENTS_BYTES`]): about 40 answers of
/// a full frame, more of the usual few hundred bytes. An answer that finds it full passes,
/// unlearned.
pub const DNS_ANSWERS_BYTES: u32 = 64 * 1024;
/// How many answers handed back may wait at once for their second pass (generic XDP meets
/// them again).
pub const DNS_RELEASED_ENTRIES: u32 = 256;

/// A DNS answer held for `firewall serve` (see [`CONFIG_LEARN_DNS`]): the whole frame,
/// which it hands back to the interface once it has learned what it says.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsAnswer {
    /// How many bytes of `frame` it fills.
    pub len: u32,
    /// The frame, from its Ethernet header on.
    pub frame: [u8; DNS_ANSWER_BYTES],
}

impl DnsAnswer {
    /// The frame's bytes.
    pub fn frame(&self) -> &[u8] {
        &self.frame[..(self.len as usize).min(DNS_ANSWER_BYTES)]
    }
}

/// `DNS_RELEASED` key: an answer handed back by `firewall serve`, by its flow and length, so
/// that its second pass through the program (generic XDP runs in the stack, which the
/// answer re-enters) lets it through, and counts it no more. The value is the marker's
/// deadline (`CLOCK_MONOTONIC_COARSE` ns).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReleasedKey {
    pub flow: FlowKey,
    pub len: u32,
    pub _pad: u32,
}

/// `BLOCKLIST` value: one `firewall block` entry, keyed by its prefix (an [`Addr`] prefix,
/// IPv4 mapped). Nothing passes to or from a peer inside it until `deadline_ns`.
///
/// Expiry is the kernel's: an entry past its deadline matches nothing, with no daemon to
/// remove it. So that an expired entry never hides a live one it is inside, user space
/// keeps every entry expiring no earlier than the entries it is inside (a narrower block
/// lasting less than a wider one is redundant and not stored).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEntry {
    /// `CLOCK_MONOTONIC_COARSE` ns after which the entry no longer blocks; 0: until
    /// `firewall unblock`.
    pub deadline_ns: u64,
    /// Its counters: [`block_counter`]`(slot, …)`; [`OFFENDER_SLOT`] for an offender a
    /// rule's `per_source` limit blocked, counted on [`Builtin::SourceLimit`].
    pub slot: u32,
    /// With [`OFFENDER_SLOT`], the index of the rule whose limit blocked it; else 0.
    pub rule: u32,
}

/// `BlockEntry::slot` of the entries the programs write: an offender of a `per_source`
/// limit, a single address, counted on the chain's [`Builtin::SourceLimit`] line.
pub const OFFENDER_SLOT: u32 = u32::MAX;

/// Key of both allow-lists: "a packet of `protocol` to service `port`, whose remote end is
/// `peer`, travelling in `direction`, may open a flow". For ICMP, `port` is the ICMP type.
///
/// `ALLOW_EXACT` holds single peers and, with `peer` [`ANY_PEER`], the rules open to
/// anyone; `ALLOW_PREFIX` the prefixes in between. The lookup goes from the most specific
/// to the least: the peer, its prefixes, anyone.
///
/// In the LPM trie the first 32 bits (direction, protocol, port) always match exactly:
/// the prefix length is `32 + the peer's prefix length` (as an [`Addr`]: 96 + n for IPv4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowKey {
    pub direction: u8,
    pub protocol: u8,
    /// Host order.
    pub port: u16,
    pub peer: Addr,
}

/// Two words, where the derived hash wrote a field at a time and the peer's bytes with
/// their length: user space hashes a million keys to plan a million peers.
impl core::hash::Hash for AllowKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let [port_0, port_1] = self.port.to_ne_bytes();
        state.write_u32(u32::from_ne_bytes([self.direction, self.protocol, port_0, port_1]));
        state.write_u128(u128::from_ne_bytes(self.peer));
    }
}

/// Where `port` of a (direction, protocol) port space lives in [`MAP_PORT_INTERVALS`]: the
/// array index, and the shift of its 16-bit lane in the `u64` value there; `None` for a
/// protocol without ports (ICMP: its `port` is the type, never in a range).
///
/// User space cuts each port space into intervals at every edge of every range and every
/// single port its rules name; the lane holds `port - first`, the distance to the first
/// port of `port`'s interval, whose allow-list entries stand for the whole interval. So a
/// zero-filled array maps every port to itself, and only ports inside ranges are written.
/// Four lanes a value: an array's values are 8 bytes at least, and 65,536 of them (512 KiB)
/// hold all four port spaces.
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub const fn port_interval_slot(direction: u8, protocol: u8, port: u16) -> Option<(u32, u32)> {
    let space = match protocol {
        PROTO_TCP => 0,
        PROTO_UDP => 1,
        _ => return None,
    };
    let index = (((direction as u32 & 1) * 2 + space) << 14) | (port as u32 >> 2);
    Some((index, 16 * (port as u32 & 3)))
}

/// Services a direction has in [`MAP_SERVICE_SKIPS`]: every tcp port, every udp port, every
/// ICMP type, every ICMPv6 type.
const SERVICES_PER_DIRECTION: u32 = 2 * 65_536 + 2 * 256;
/// Size of [`MAP_SERVICE_SKIPS`]: two bits a service, 32 services a `u64` (an array's
/// values are 8 bytes at least): 64 KiB.
pub const SERVICE_SKIPS_ENTRIES: u32 = 2 * SERVICES_PER_DIRECTION / 32;
/// A service's bit in [`MAP_SERVICE_SKIPS`]: no rule lists a peer or a prefix for it, so its
/// packets skip [`MAP_ALLOW_EXACT`]'s lookup of the peer and [`MAP_ALLOW_PREFIX`]'s.
pub const SKIP_PEERS: u64 = 1;
/// A service's bit in [`MAP_SERVICE_SKIPS`]: no rule admits `any` to it, so its packets skip
/// [`MAP_ALLOW_EXACT`]'s second lookup, of [`ANY_PEER`]. With [`SKIP_PEERS`]: no rule serves
/// it at all, and a packet to it meets its chain's policy without a hash lookup.
pub const SKIP_ANYONE: u64 = 2;

/// Where the skip bits of a service (a direction, a protocol, and an allow-list key's
/// port: the port, or the first of its interval, or the ICMP type) live in
/// [`MAP_SERVICE_SKIPS`]: the array index, and the shift of its two bits in the `u64`
/// value there; `None` for a protocol no rule can name.
///
/// Both bits are zero until user space writes them: a zero-filled array asks every lookup,
/// as the programs did before it, and a service about to gain an entry is set to ask before
/// the entry goes in.
#[expect(clippy::inline_always, reason = "the eBPF programs' hot path: no BPF-to-BPF call for it")]
#[inline(always)]
pub const fn service_skip_slot(direction: u8, protocol: u8, port: u16) -> Option<(u32, u32)> {
    let service = match protocol {
        PROTO_TCP => port as u32,
        PROTO_UDP => 65_536 + port as u32,
        PROTO_ICMP if port < 256 => 2 * 65_536 + port as u32,
        PROTO_ICMPV6 if port < 256 => 2 * 65_536 + 256 + port as u32,
        _ => return None,
    };
    let service = (direction as u32 & 1) * SERVICES_PER_DIRECTION + service;
    Some((service / 32, 2 * (service % 32)))
}

/// The peer of an `ALLOW_EXACT` entry that admits anyone, of either family (`::`: a policy
/// cannot name it, and an anti-spoof default drops it as a source).
pub const ANY_PEER: Addr = [0; 16];

/// Bits of the allow-list key before the peer address.
pub const ALLOW_KEY_SERVICE_BITS: u32 = 32;

/// Value of both allow-lists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowValue {
    /// The rule's index: names its counters, its token bucket and the flows it admits.
    pub rule: u32,
    /// `ALLOW_*` bits.
    pub flags: u32,
}

/// `AllowValue::flags`: the rule has a `limit`; consult `TOKEN_BUCKETS[rule]`.
pub const ALLOW_LIMITED: u32 = 1;
/// `AllowValue::flags`: the rule admits an ICMP error only when the header it quotes
/// belongs to a tracked flow (netfilter's RELATED).
pub const ALLOW_RELATED: u32 = 2;

/// `AllowValue::flags`: the rule has a `per_source` limit; consult
/// `PER_SOURCE_LIMITS[rule]` and the source's bucket in `PER_SOURCE_BUCKETS`.
pub const ALLOW_PER_SOURCE: u32 = 4;

/// `AllowValue::flags`: the rule has `uids` (outbound rules): it admits a packet only if
/// `RULE_UIDS` holds the rule with the sending socket's uid.
pub const ALLOW_OWNER: u32 = 8;

/// Key of `RULE_UIDS`: a uid rule `rule` admits the packets of (iptables' `-m owner
/// --uid-owner`). The value is unused (1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleUid {
    pub rule: u32,
    pub uid: u32,
}

/// `AllowValue::flags`: the rule has `log = true`: the flows it admits send events, as
/// drops do, while a listener asks (see [`COUNTER_LOGGED`]).
pub const ALLOW_LOG: u32 = 16;

/// `AllowValue::flags`: the rule has `returns = false`: it admits the packets that open
/// its flows and starts no flow, so nothing comes back through it (iptables' ACCEPT with
/// no return line, no ESTABLISHED catch-all in the other chain). Each packet is judged
/// alone, as a stateless rule's.
pub const ALLOW_ONE_WAY: u32 = 32;

/// `AllowValue::flags`: the rule is a trap (`trap = "1d"`, inbound rules): it admits
/// nothing, and a source that sends what it matches is blocked, as a `per_source` limit's
/// offender, for `PER_SOURCE_LIMITS[rule].block_ns` (the port-scan trap of scripts, `-m
/// recent --set` on a port no one uses, then `--rcheck … -j DROP` for everything).
pub const ALLOW_TRAP: u32 = 64;

/// `AllowValue::flags`, the byte from this bit: the rule's `per_source.connections`, how
/// many flows one source may have open at once under it (netfilter's `connlimit`), 1 to
/// [`MAX_CONNECTIONS`]; 0, no cap. A source is its address masked as for the rule's rate,
/// by `PER_SOURCE_LIMITS[rule]`'s masks; its flows are in `PER_SOURCE_CONNECTIONS`.
pub const ALLOW_CONNECTIONS_SHIFT: u32 = 8;
/// `AllowValue::flags`: the bits of the rule's `per_source.connections`.
pub const ALLOW_CONNECTIONS: u32 = 0xff << ALLOW_CONNECTIONS_SHIFT;

/// The `per_source.connections` an allow-list entry's `flags` carry (0: none).
pub const fn allow_connections(flags: u32) -> u32 {
    (flags & ALLOW_CONNECTIONS) >> ALLOW_CONNECTIONS_SHIFT
}

/// Value of `PER_SOURCE_CONNECTIONS`, whose key is a [`SourceKey`]: the last flows one
/// source opened under one rule, one a slot (an empty slot is all zeroes, protocol 0).
/// Whether a slot's flow is still open the flow tables say, when the next flow asks: an
/// entry gone, expired, or closed by FIN or RST frees its slot, so nothing here needs
/// ending.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceConnections {
    pub flows: [FlowKey; MAX_CONNECTIONS],
}

/// Set on the counter id a verdict names when the frame is to be told as an event even
/// though it passes (a rule with [`ALLOW_LOG`] admitted it); the programs clear it before
/// the counter is counted. Counter ids stay far below it.
pub const COUNTER_LOGGED: u32 = 1 << 31;

/// `PER_SOURCE_LIMITS[rule]`: a rule's `per_source` limit, a GCRA for each source (see
/// [`TokenBucket`]): a source's `burst` new flows at once, then one every `interval_ns`.
/// A source is its address masked to the limit's prefix of its family (an IPv6 host
/// commonly has a /64 to itself), so the addresses of one prefix share a bucket. A new
/// flow over it drops; with `block_ns`, its address is blocked that long, in the
/// blocklist ([`OFFENDER_SLOT`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerSourceLimit {
    pub interval_ns: u64,
    /// `burst * interval_ns`.
    pub burst_ns: u64,
    /// How long an offender is blocked; 0: not blocked, only its flows over the rate drop.
    pub block_ns: u64,
    /// The mask of an IPv4 source (IPv4 mapped: the first 12 bytes all ones), and of an
    /// IPv6 one.
    pub mask4: Addr,
    pub mask6: Addr,
}

/// Key of `PER_SOURCE_BUCKETS`: one source (an address's prefix) of one rule's flows. The
/// value is the source's GCRA `tat` (a `u64`, `CLOCK_MONOTONIC_COARSE` ns). Aligned to 8,
/// so that the programs mask `source` two words at a time.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceKey {
    pub source: Addr,
    pub rule: u32,
    pub _pad: u32,
}

/// `TOKEN_BUCKETS[rule]`: iptables' `-m limit` as a GCRA (generic cell rate algorithm),
/// which is a token bucket kept in one word, so every CPU can update it with one
/// compare-and-swap: the bucket is global, not per CPU.
///
/// A packet at time `now` conforms when `tat <= now + burst_ns - interval_ns`
/// (then `tat = max(tat, now) + interval_ns`): a full bucket admits `burst` packets at
/// once, then one every `interval_ns`, exactly as `--limit` with `--limit-burst`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Theoretical arrival time of the next conforming packet (`CLOCK_MONOTONIC_COARSE` ns).
    pub tat: u64,
    /// One token's worth of time: 1 s / rate.
    pub interval_ns: u64,
    /// `burst * interval_ns`: how far ahead of `now` the bucket may run.
    pub burst_ns: u64,
}

/// Conntrack key: a flow from this host's point of view. The local address is always one
/// of the host's, and every rule applies to all of them alike, so (peer, peer port, local
/// port, protocol) is all a verdict needs, and the same key is found from both directions.
/// With several addresses, two flows that differ only in the local address share a key:
/// both were admitted by the same rule, so they pass alike. For ICMP echo, `peer_port` says which way the
/// requests travel ([`ECHO_REQUESTS_IN`], [`ECHO_REQUESTS_OUT`]: an inbound and an outbound
/// echo with the same peer and identifier are two flows) and `local_port` is the echo
/// identifier.
///
/// 8-aligned (its size is 24 either way): the programs copy a key in three words, where
/// a 2-aligned one took 24 byte loads and stores, and their spills, on the stack.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub peer: Addr,
    pub peer_port: u16,
    pub local_port: u16,
    pub protocol: u8,
    /// Padding, in scalars (the bytes of `[u8; 3]` before): zeroing an array costs the
    /// programs a call of LLVM's memset, a byte loop, on every packet that makes a key.
    pub _pad: u8,
    pub _pad2: u16,
}

/// `FlowKey::peer_port` of an echo flow whose requests come in (ping to this host).
pub const ECHO_REQUESTS_IN: u16 = 1;
/// `FlowKey::peer_port` of an echo flow whose requests go out (ping from this host).
pub const ECHO_REQUESTS_OUT: u16 = 2;

/// `FRAGMENTS` key: one fragmented datagram, as RFC 791 and RFC 8200 identify it for
/// reassembly (source, destination, protocol, identification), and the way it travels.
/// IPv4's 16-bit identification is widened; IPv6's `protocol` is the fragment header's
/// next-header field, which every fragment of a datagram carries alike.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: Addr,
    pub dst: Addr,
    pub id: u32,
    pub protocol: u8,
    /// The [`Direction`] it travels.
    pub direction: u8,
    pub _pad: [u8; 2],
}

/// `FRAGMENTS` value: a datagram whose first fragment passed, so that its later ones
/// follow it until `deadline_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentedDatagram {
    /// `CLOCK_MONOTONIC_COARSE` ns: the first fragment's time plus `[conntrack]
    /// fragment_timeout`. Later fragments after it drop ([`Builtin::FragmentOrphan`]).
    pub deadline_ns: u64,
    /// The line the first fragment was counted on: its later ones count there too.
    pub counter: u32,
    /// Bytes of the datagram's payload the first fragment carried: a later fragment that
    /// starts before them would overwrite what the filter judged.
    pub first_len: u16,
    pub _pad: u16,
}

/// Conntrack value, in either table.
///
/// A flow starts in `HALF_OPEN` and moves to `CONNTRACK` (is promoted) once both ends
/// have been heard: a TCP handshake's third segment, a session picked up mid-stream
/// answered by the side not yet heard, a UDP or echo flow's first reply. So spoofed
/// packets, which are never answered, fill only the half-open table, and an idle flow
/// heard both ways is evicted only by other such flows.
///
/// The host's own TCP segments (egress) are trusted and recorded: an inbound RST or FIN
/// changes the flow only when it lies in the window the host last advertised, as the
/// host's TCP would take it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// `CLOCK_MONOTONIC_COARSE` ns of the last packet (updated at most once a second per
    /// flow, unless the flow changes).
    pub last_seen_ns: u64,
    /// The rule that admitted the flow (below [`MAX_RULES`]: 16 bits keep the value at 24
    /// bytes, where 32 cost the verifier two thirds more).
    pub rule: u16,
    /// The `Direction` of the packet that opened the flow.
    pub origin: u8,
    /// `TCP_*` state.
    pub tcp_state: u8,
    /// `FLOW_*` bits.
    pub flags: u8,
    pub _pad: u8,
    /// The window of the host's last segment with ACK, as sent: unscaled, so a lower bound
    /// of the real one (an inbound RST or FIN beyond it is not believed).
    pub host_window: u16,
    /// The acknowledgement number of the host's last segment with ACK: the next byte it
    /// expects from the peer ([`FLOW_HOST_ACKED`]).
    pub host_ack: u32,
    /// The host's SYN's sequence number plus one: what the peer's SYN-ACK or ACK must
    /// acknowledge ([`FLOW_HOST_SYN`]).
    pub host_syn_next: u32,
}

/// `Flow::tcp_state`. `OPEN`, `FIN_SEEN` and `RST_SEEN` are as many flows' in both tables;
/// the `SYN_*` states are half-open only.
pub const TCP_OPEN: u8 = 0;
pub const TCP_FIN_SEEN: u8 = 1;
pub const TCP_RST_SEEN: u8 = 2;
/// The opener's SYN seen, not yet the responder's SYN-ACK.
pub const TCP_SYN_SENT: u8 = 3;
/// The responder's SYN-ACK seen, not yet the opener's ACK; or a session picked up
/// mid-stream (no SYN seen) not yet heard from both ends.
pub const TCP_SYN_RECV: u8 = 4;

/// `Flow::flags`: a segment other than a RST came in from the peer.
pub const FLOW_HEARD_IN: u8 = 1 << Direction::In as u8;
/// `Flow::flags`: a segment other than a RST went out from the host.
pub const FLOW_HEARD_OUT: u8 = 1 << Direction::Out as u8;
/// `Flow::flags`: `host_ack` and `host_window` hold the host's last segment with ACK.
pub const FLOW_HOST_ACKED: u8 = 4;
/// `Flow::flags`: `host_syn_next` holds the host's SYN's.
pub const FLOW_HOST_SYN: u8 = 8;

/// The two flow tables.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowTable {
    /// `CONNTRACK`: flows heard both ways.
    Established = 0,
    /// `HALF_OPEN`: flows heard one way (or not yet past the TCP handshake).
    HalfOpen = 1,
}

impl FlowTable {
    pub const ALL: [FlowTable; 2] = [FlowTable::Established, FlowTable::HalfOpen];
}

/// `FLOW_STATS` (per CPU) index: entries the programs inserted into `table` (new keys
/// only, not replacements).
pub const fn flows_inserted(table: FlowTable) -> u32 {
    2 * table as u32
}

/// `FLOW_STATS` (per CPU) index: entries the programs removed from `table` (expired ones
/// they met, and half-open ones promoted).
pub const fn flows_removed(table: FlowTable) -> u32 {
    2 * table as u32 + 1
}

/// Size of `FLOW_STATS`.
pub const FLOW_STATS_ENTRIES: u32 = 4;

/// `FLOWS_ENDED[table]`: entries user space removed from `table` (`reload`, `revoke`,
/// `block`), added atomically through a shared mapping of the array, so two commands at
/// once count both. Beside `FLOW_STATS`, it makes a table's evictions: inserted − removed
/// − ended − present (entries the LRU took back, expired ones among them).
pub const FLOWS_ENDED_ENTRIES: u32 = 2;

// The counter id ranges must not overlap: checked when the crate compiles.
const _: () = {
    assert!(Builtin::ALL.len() as u32 <= BUILTINS_PER_CHAIN);
    assert!(builtin_counter(Chain::Forward, Builtin::FragmentOrphan) < ANTISPOOF_COUNTER_BASE);
    assert!(ANTISPOOF_COUNTER_BASE + MAX_ANTISPOOF <= RULE_COUNTER_BASE);
    // A cell's counter is told from CELL_ASK and CELL_NONE.
    assert!(ANTISPOOF_COUNTER_BASE > CELL_ASK && MAX_COUNTERS < CELL_NONE);
    assert!(antispoof_cell(AntispoofList::Destinations, true, 255) == ANTISPOOF_CELLS_ENTRIES - 1);
    // Every service has a slot of its own, the last one the array's last bits.
    assert!(SERVICES_PER_DIRECTION.is_multiple_of(32));
    assert!(
        matches!(service_skip_slot(1, PROTO_ICMPV6, 255), Some((i, 62)) if i == SERVICE_SKIPS_ENTRIES - 1)
    );
    assert!(service_skip_slot(0, PROTO_ICMP, 256).is_none() && service_skip_slot(0, 47, 0).is_none());
    assert!(rule_counter(MAX_RULES - 1, Line::Established) < BLOCK_COUNTER_BASE);
    assert!(block_counter(MAX_BLOCKED - 1, Direction::Out) == MAX_COUNTERS - 1);
    assert!(MAX_COUNTERS < COUNTER_LOGGED);
    // A list's slot fits below the length of a `BLOCK_LISTS` value.
    assert!(MAX_BLOCKED <= 1 << LISTED_LEN_SHIFT);
    // A flow's rule is 16 bits.
    assert!(MAX_RULES <= 1 << 16);
    // A rule's connections fit the byte of its flags.
    assert!(MAX_CONNECTIONS <= 0xff);
    // A drop event's head length is 16 bits; the event has no implicit padding.
    assert!(DROP_EVENT_BYTES <= u16::MAX as usize);
    assert!(core::mem::size_of::<DropEvent>() == 12 + DROP_EVENT_BYTES);
    assert!(DROP_EVENTS_BYTES.is_power_of_two() && DROP_EVENTS_BYTES.is_multiple_of(4096));
    assert!(DNS_ANSWERS_BYTES.is_power_of_two() && DNS_ANSWERS_BYTES.is_multiple_of(4096));
    assert!(core::mem::size_of::<DnsAnswer>() == 4 + DNS_ANSWER_BYTES);
    assert!(core::mem::size_of::<ReleasedKey>() == core::mem::size_of::<FlowKey>() + 8);
    // The last port of the last port space is the array's last lane.
    assert!(match port_interval_slot(Direction::Out as u8, PROTO_UDP, u16::MAX) {
        Some((index, shift)) => index == PORT_INTERVALS_ENTRIES - 1 && shift == 48,
        None => false,
    });
};

#[cfg(feature = "user")]
mod pod {
    use super::{
        AllowKey, AllowValue, BlockEntry, Config, Counter, DnsAnswer, DropEvent, Flow, FlowKey, FragmentKey,
        FragmentedDatagram, PerSourceLimit, ReleasedKey, RuleUid, SourceConnections, SourceKey, TokenBucket,
    };

    // SAFETY: each type is `#[repr(C)]`, `Copy`, made only of integers and byte arrays,
    // with explicit padding, so every bit pattern is valid.
    unsafe impl aya::Pod for Counter {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for Config {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for AllowKey {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for AllowValue {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for TokenBucket {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for Flow {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for BlockEntry {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for DropEvent {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for FragmentKey {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for FragmentedDatagram {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for PerSourceLimit {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for SourceKey {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for RuleUid {}
    // SAFETY: as for `Counter`.
    unsafe impl aya::Pod for SourceConnections {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DnsAnswer {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ReleasedKey {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<Config>(), 96);
        assert_eq!(size_of::<AllowKey>(), 20);
        assert_eq!(size_of::<AllowValue>(), 8);
        assert_eq!(size_of::<TokenBucket>(), 24);
        assert_eq!(size_of::<FlowKey>(), 24);
        assert_eq!(size_of::<Flow>(), 24);
        assert_eq!(size_of::<BlockEntry>(), 16);
        assert_eq!(size_of::<DropEvent>(), 108);
        assert_eq!(size_of::<FragmentKey>(), 40);
        assert_eq!(size_of::<FragmentedDatagram>(), 16);
        assert_eq!(size_of::<PerSourceLimit>(), 56);
        assert_eq!(size_of::<SourceKey>(), 24);
        assert_eq!(size_of::<RuleUid>(), 8);
        assert_eq!(size_of::<SourceConnections>(), 24 * MAX_CONNECTIONS);
    }

    #[test]
    fn every_builtin_line_is_listed_once_with_a_name_of_its_own() {
        for (i, line) in Builtin::ALL.iter().enumerate() {
            assert_eq!(*line as usize, i);
            assert!(Builtin::ALL[..i].iter().all(|other| other.name() != line.name()));
        }
    }

    #[test]
    fn ipv4_maps_into_ipv6() {
        let mapped = v4_mapped([198, 51, 100, 1]);
        assert!(is_v4_mapped(&mapped));
        assert_eq!(mapped[..12], V4_MAPPED_PREFIX);
        assert!(!is_v4_mapped(&ANY_PEER));
        let mut v6 = mapped;
        v6[0] = 0x20;
        assert!(!is_v4_mapped(&v6));
        assert_eq!(icmpv6_equivalent(ICMP_ECHO_REQUEST), Some(ICMPV6_ECHO_REQUEST));
        assert_eq!(icmpv6_equivalent(5), None);
    }

    #[test]
    fn every_port_of_every_port_space_has_a_lane_of_its_own() {
        extern crate std;
        let mut seen = std::collections::HashSet::new();
        for direction in [Direction::In, Direction::Out] {
            for protocol in [PROTO_TCP, PROTO_UDP] {
                for port in 0..=u16::MAX {
                    let (index, shift) = port_interval_slot(direction as u8, protocol, port).unwrap();
                    assert!(index < PORT_INTERVALS_ENTRIES && shift < 64);
                    assert!(seen.insert((index, shift)));
                }
            }
        }
        assert_eq!(port_interval_slot(0, PROTO_ICMP, 8), None);
    }
}
