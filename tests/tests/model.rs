//! The loaded programs against the reference model (`tests::model`): generated frames,
//! alone and in sequences across both programs, must get the model's verdict and be
//! counted on the model's line, every one.
//!
//! The generators aim deep: addresses come mostly from the policy (OURIP, its peers,
//! addresses inside and at the edges of its CIDRs, the anti-spoof ranges) and ports and
//! ICMP types from its services, so most frames reach the allow-lists and the flow
//! table; around them, every malformation the parser must catch (truncation at any
//! length, IHL and TCP data offsets 0 to 15, IPv4 options, bad total lengths, fragments,
//! all 256 TCP flag bytes, VLAN tags, ICMP of every type quoting real and bogus headers,
//! other protocols, ARP, IPv6, random bytes, bit flips).
//!
//! Each policy is loaded once; between cases the harness empties the flow table and
//! refills the token buckets ([`TestFilter::reset_state`]) instead of reloading, which
//! costs the verifier's run each time. Counters are never reset: the test keeps what it
//! expects each line to hold and checks the model's line after every frame (one map
//! lookup) and every line after every case (so a frame counted twice is caught too).
//!
//! Time: the model is given the kernel's clock (`CLOCK_MONOTONIC_COARSE`) as read just
//! before each frame. The policies' limits are slow (per hour or day, small bursts) and
//! their timeouts long, so no bucket refills and no flow expires within a case (a case
//! lasts milliseconds, and its state is reset before the next); the one exception is
//! `examples/tight.toml`, taken verbatim with its 1/sec pings: its buckets could only
//! gain a token in a case lasting over a second. Should the clock tick between reading
//! it and the kernel's run, the model is asked again with the time read just after.
//! The conntrack table holds 65,536 flows and a case opens a few, so the LRU never
//! evicts within a case.
//!
//! Size: `FIREWALL_MODEL_SCALE=N` multiplies every case count (default 1, the CI size);
//! `FIREWALL_MODEL_SEED=HEX` (64 hex digits) replays a run, whose seed every run prints.
use std::{
    cell::RefCell,
    fmt::Write as _,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use firewall_common::{Builtin, Chain, Counter, Direction, Line, builtin_counter, rule_counter};
use firewall_user::policy::Policy;
use proptest::{
    prelude::*,
    sample::{Index, select},
    strategy::ValueTree,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner},
};
use tests::{
    harness::TestFilter,
    model::{self, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG},
};

// ---------------------------------------------------------------------------------------
// Frames, built by hand so that every field can be anything.
// ---------------------------------------------------------------------------------------

const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const TPIDS: [u16; 2] = [model::ETHERTYPE_VLAN, model::ETHERTYPE_QINQ];

/// An IPv4 packet, every field chosen.
#[derive(Clone, Debug)]
struct Packet {
    /// VLAN tags' TPIDs, outermost first.
    tags: Vec<u16>,
    src: [u8; 4],
    dst: [u8; 4],
    /// 4-byte words of IPv4 options (IHL 5 + this).
    options: u8,
    /// The flags and fragment offset field.
    fragment: u16,
    l4: L4,
}

#[derive(Clone, Debug)]
enum L4 {
    Tcp { sport: u16, dport: u16, flags: u8, options: u8, payload: u8 },
    Udp { sport: u16, dport: u16, payload: u8 },
    Icmp { kind: u8, code: u8, rest: [u8; 4], body: IcmpBody },
    Other { protocol: u8, payload: u8 },
}

#[derive(Clone, Debug)]
enum IcmpBody {
    Data(u8),
    /// An error's quote: the start of another datagram, then as `fault` bends it.
    Quote(Box<Packet>, QuoteFault),
}

/// How an ICMP error's quote differs from what RFC 792 has routers send (the quoted
/// datagram's IP header and its first 8 bytes).
#[derive(Clone, Copy, Debug)]
enum QuoteFault {
    None,
    /// The whole quoted datagram, not only its first 8 bytes.
    Whole,
    /// Cut this many bytes short.
    Short(u8),
    /// The quoted header's version nibble.
    Version(u8),
    /// The quoted header's IHL nibble.
    Ihl(u8),
}

/// A frame and where its headers start.
struct Built {
    bytes: Vec<u8>,
    ip: usize,
    l4: usize,
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pattern(len: u8) -> impl Iterator<Item = u8> {
    (0..len).map(|i| i.wrapping_mul(7).wrapping_add(0x41))
}

impl Packet {
    /// The IP datagram: header and payload; also where the payload starts.
    fn datagram(&self) -> (Vec<u8>, usize) {
        let (protocol, l4) = match &self.l4 {
            L4::Tcp { sport, dport, flags, options, payload } => {
                let mut b = Vec::new();
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&1000u32.to_be_bytes());
                b.extend_from_slice(&2000u32.to_be_bytes());
                b.push((5 + options) << 4);
                b.push(*flags);
                b.extend_from_slice(&64240u16.to_be_bytes());
                b.extend_from_slice(&[0; 4]);
                b.extend(std::iter::repeat_n(1u8, usize::from(*options) * 4));
                b.extend(pattern(*payload));
                (firewall_common::PROTO_TCP, b)
            }
            L4::Udp { sport, dport, payload } => {
                let mut b = Vec::new();
                b.extend_from_slice(&sport.to_be_bytes());
                b.extend_from_slice(&dport.to_be_bytes());
                b.extend_from_slice(&(8 + u16::from(*payload)).to_be_bytes());
                b.extend_from_slice(&[0; 2]);
                b.extend(pattern(*payload));
                (firewall_common::PROTO_UDP, b)
            }
            L4::Icmp { kind, code, rest, body } => {
                let mut b = vec![*kind, *code, 0, 0];
                b.extend_from_slice(rest);
                match body {
                    IcmpBody::Data(len) => b.extend(pattern(*len)),
                    IcmpBody::Quote(inner, fault) => b.extend(quote(inner, *fault)),
                }
                let sum = checksum(&b);
                b[2..4].copy_from_slice(&sum.to_be_bytes());
                (firewall_common::PROTO_ICMP, b)
            }
            L4::Other { protocol, payload } => (*protocol, pattern(*payload).collect()),
        };
        let header = 20 + usize::from(self.options) * 4;
        let total = (header + l4.len()) as u16;
        let mut ip = vec![0x40 | (5 + self.options), 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&0x1234u16.to_be_bytes());
        ip.extend_from_slice(&self.fragment.to_be_bytes());
        ip.extend_from_slice(&[64, protocol, 0, 0]);
        ip.extend_from_slice(&self.src);
        ip.extend_from_slice(&self.dst);
        let mut options = vec![1u8; usize::from(self.options) * 4]; // NOPs, then EOL
        if let Some(last) = options.last_mut() {
            *last = 0;
        }
        ip.extend(options);
        let sum = checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip.extend(l4);
        (ip, header)
    }

    fn build(&self) -> Built {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(&MAC_HOST);
        bytes.extend_from_slice(&MAC_PEER);
        for (i, tpid) in self.tags.iter().enumerate() {
            bytes.extend_from_slice(&tpid.to_be_bytes());
            bytes.extend_from_slice(&(100 + i as u16).to_be_bytes());
        }
        bytes.extend_from_slice(&model::ETHERTYPE_IPV4.to_be_bytes());
        let ip = bytes.len();
        let (datagram, header) = self.datagram();
        bytes.extend(datagram);
        Built { bytes, ip, l4: ip + header }
    }
}

fn quote(inner: &Packet, fault: QuoteFault) -> Vec<u8> {
    let (mut datagram, header) = inner.datagram();
    let mut keep = (header + 8).min(datagram.len());
    match fault {
        QuoteFault::None => {}
        QuoteFault::Whole => keep = datagram.len(),
        QuoteFault::Short(n) => keep = keep.saturating_sub(usize::from(n)),
        QuoteFault::Version(v) => datagram[0] = (v << 4) | (datagram[0] & 0x0f),
        QuoteFault::Ihl(ihl) => datagram[0] = (datagram[0] & 0xf0) | ihl,
    }
    datagram.truncate(keep);
    datagram
}

/// A change to a built frame's bytes, at a header field or anywhere.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    Truncate(Index),
    /// Bytes after the datagram (Ethernet padding).
    Pad(u8),
    Version(u8),
    Ihl(u8),
    TotalLength(u16),
    TotalLengthBy(i8),
    Fragment(u16),
    Protocol(u8),
    TcpFlags(u8),
    DataOffset(u8),
    UdpLength(u16),
    UdpLengthBy(i8),
    Ethertype(u16),
    FlipBit(Index, u8),
}

impl Mutation {
    fn apply(self, b: &mut Built) {
        let bytes = &mut b.bytes;
        let set = |bytes: &mut Vec<u8>, at: usize, value: &[u8]| {
            if at + value.len() <= bytes.len() {
                bytes[at..at + value.len()].copy_from_slice(value);
            }
        };
        match self {
            Mutation::Truncate(at) => {
                let len = at.index(bytes.len() + 1);
                bytes.truncate(len);
            }
            Mutation::Pad(n) => bytes.extend(std::iter::repeat_n(0, usize::from(n))),
            Mutation::Version(v) => {
                if let Some(x) = bytes.get_mut(b.ip) {
                    *x = (v << 4) | (*x & 0x0f);
                }
            }
            Mutation::Ihl(ihl) => {
                if let Some(x) = bytes.get_mut(b.ip) {
                    *x = (*x & 0xf0) | ihl;
                }
            }
            Mutation::TotalLength(len) => set(bytes, b.ip + 2, &len.to_be_bytes()),
            Mutation::TotalLengthBy(delta) => {
                if b.ip + 4 <= bytes.len() {
                    let len = u16::from_be_bytes([bytes[b.ip + 2], bytes[b.ip + 3]]);
                    set(bytes, b.ip + 2, &len.wrapping_add_signed(i16::from(delta)).to_be_bytes());
                }
            }
            Mutation::Fragment(field) => set(bytes, b.ip + 6, &field.to_be_bytes()),
            Mutation::Protocol(p) => set(bytes, b.ip + 9, &[p]),
            Mutation::TcpFlags(flags) => set(bytes, b.l4 + 13, &[flags]),
            Mutation::DataOffset(words) => {
                if let Some(x) = bytes.get_mut(b.l4 + 12) {
                    *x = (words << 4) | (*x & 0x0f);
                }
            }
            Mutation::UdpLength(len) => set(bytes, b.l4 + 4, &len.to_be_bytes()),
            Mutation::UdpLengthBy(delta) => {
                if b.l4 + 6 <= bytes.len() {
                    let len = u16::from_be_bytes([bytes[b.l4 + 4], bytes[b.l4 + 5]]);
                    set(bytes, b.l4 + 4, &len.wrapping_add_signed(i16::from(delta)).to_be_bytes());
                }
            }
            Mutation::Ethertype(t) => {
                let at = b.ip - 2;
                set(bytes, at, &t.to_be_bytes());
            }
            Mutation::FlipBit(at, bit) => {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= 1 << (bit % 8);
                }
            }
        }
    }
}

/// An IPv6 frame. Today every one is dropped on the `ipv6` line; the shapes are the
/// ones an IPv6 policy will have to judge (NDP, packet-too-big, echo, extension headers).
#[derive(Clone, Debug)]
struct Ipv6Frame {
    tags: Vec<u16>,
    src: [u8; 16],
    dst: [u8; 16],
    next_header: u8,
    /// ICMPv6 type, or the ports' first byte.
    kind: u8,
    payload: u8,
    truncate: Option<Index>,
}

impl Ipv6Frame {
    fn bytes(&self) -> Vec<u8> {
        let mut l4 = match self.next_header {
            58 => vec![self.kind, 0, 0, 0, 0, 1, 0, 1],
            6 => {
                let mut t =
                    vec![0x9c, 0x40, 0, 122, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, TCP_SYN, 0xfa, 0xf0, 0, 0, 0, 0];
                t[0] = self.kind;
                t
            }
            17 => vec![self.kind, 0x40, 0, 53, 0, 8, 0, 0],
            // Hop-by-hop or fragment header before ICMPv6.
            0 | 44 => vec![58, 0, 0, 0, 0, 0, 0, 0, self.kind, 0, 0, 0, 0, 0, 0, 0],
            _ => vec![],
        };
        l4.extend(pattern(self.payload));
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAC_HOST);
        bytes.extend_from_slice(&MAC_PEER);
        for tpid in &self.tags {
            bytes.extend_from_slice(&tpid.to_be_bytes());
            bytes.extend_from_slice(&[0, 7]);
        }
        bytes.extend_from_slice(&model::ETHERTYPE_IPV6.to_be_bytes());
        bytes.extend_from_slice(&[0x60, 0, 0, 0]);
        bytes.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&[self.next_header, 255]);
        bytes.extend_from_slice(&self.src);
        bytes.extend_from_slice(&self.dst);
        bytes.extend(l4);
        if let Some(at) = self.truncate {
            let len = at.index(bytes.len() + 1);
            bytes.truncate(len);
        }
        bytes
    }
}

/// One frame of the single-frame generator, in a direction.
#[derive(Clone, Debug)]
enum Loose {
    Ip {
        direction: Direction,
        packet: Packet,
        mutations: Vec<Mutation>,
    },
    Arp {
        direction: Direction,
        tags: Vec<u16>,
        target: [u8; 4],
    },
    Ipv6 {
        direction: Direction,
        frame: Ipv6Frame,
    },
    /// Random bytes, with the ethertype (and the IPv4 version and IHL) set or left alone.
    Bytes {
        direction: Direction,
        bytes: Vec<u8>,
        ethertype: Option<u16>,
    },
}

impl Loose {
    fn realize(&self) -> (Direction, Vec<u8>) {
        match self {
            Loose::Ip { direction, packet, mutations } => {
                let mut built = packet.build();
                for m in mutations {
                    m.apply(&mut built);
                }
                (*direction, built.bytes)
            }
            Loose::Arp { direction, tags, target } => {
                let mut b = vec![0xff; 6];
                b.extend_from_slice(&MAC_PEER);
                for tpid in tags {
                    b.extend_from_slice(&tpid.to_be_bytes());
                    b.extend_from_slice(&[0, 7]);
                }
                b.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
                b.extend_from_slice(&MAC_PEER);
                b.extend_from_slice(&[203, 0, 113, 7]);
                b.extend_from_slice(&[0; 6]);
                b.extend_from_slice(target);
                b.resize(b.len().max(60), 0);
                (*direction, b)
            }
            Loose::Ipv6 { direction, frame } => (*direction, frame.bytes()),
            Loose::Bytes { direction, bytes, ethertype } => {
                let mut b = bytes.clone();
                if let Some(t) = ethertype {
                    if b.len() >= 14 {
                        b[12..14].copy_from_slice(&t.to_be_bytes());
                    }
                    if *t == model::ETHERTYPE_IPV4 && b.len() > 14 {
                        b[14] = 0x45;
                    }
                }
                (*direction, b)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the generators draw from: the policy's own addresses and services.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Pool {
    ours: [u8; 4],
    /// The policy's single peers.
    peers: Vec<[u8; 4]>,
    /// Addresses in and at the edges of its CIDR peers: the first, the second, the last,
    /// and the ones just outside.
    cidr_edges: Vec<[u8; 4]>,
    /// Its CIDR peers (network, mask) for addresses drawn inside them.
    cidrs: Vec<(u32, u32)>,
    /// Addresses inside the anti-spoof entries.
    antispoof: Vec<[u8; 4]>,
    strangers: Vec<[u8; 4]>,
    /// Service ports of rules in each direction (`in`: local ports; `out`: remote).
    ports_in: Vec<u16>,
    ports_out: Vec<u16>,
    icmp_types: Vec<u8>,
    /// What each rule admits, one entry per (service, peer): in each direction.
    admitted_in: Vec<Admitted>,
    admitted_out: Vec<Admitted>,
    /// Peers of the ICMP rules (errors come from routers as well as from the peer).
    icmp_peers: Vec<PeerPick>,
    /// Whether a rule has `related = true`.
    related: bool,
}

/// A packet some rule admits: its service and how to draw its peer.
#[derive(Clone, Debug)]
struct Admitted {
    service: firewall_user::policy::Service,
    peer: PeerPick,
}

#[derive(Clone, Copy, Debug)]
enum PeerPick {
    Exact([u8; 4]),
    /// Inside a CIDR: (network, mask).
    Inside(u32, u32),
    Anyone,
}

fn octets(x: u32) -> [u8; 4] {
    x.to_be_bytes()
}

impl Pool {
    fn of(policy: &Policy) -> Pool {
        let ours = policy.address.octets();
        let mut peers = Vec::new();
        let mut cidr_edges = Vec::new();
        let mut cidrs = Vec::new();
        let mut ports_in = vec![];
        let mut ports_out = vec![];
        let mut icmp_types = vec![0, 3, 8, 11, 12];
        let (mut admitted_in, mut admitted_out) = (vec![], vec![]);
        let mut icmp_peers = vec![PeerPick::Anyone];
        for rule in &policy.rules {
            for peer in &rule.peers {
                // This pool draws IPv4 addresses; IPv6 peers have a pool of their own.
                let std::net::IpAddr::V4(addr) = peer.addr else { continue };
                let net = u32::from(addr);
                let pick = match peer.len {
                    0 => PeerPick::Anyone,
                    32 => PeerPick::Exact(addr.octets()),
                    len => PeerPick::Inside(net, u32::MAX << (32 - len)),
                };
                if rule.services.iter().any(|s| matches!(s, firewall_user::policy::Service::Icmp { .. }))
                    && !matches!(pick, PeerPick::Anyone)
                {
                    icmp_peers.push(pick);
                }
                for service in &rule.services {
                    let admitted = Admitted { service: *service, peer: pick };
                    match rule.direction {
                        Direction::In => admitted_in.push(admitted),
                        Direction::Out => admitted_out.push(admitted),
                    }
                }
                match peer.len {
                    0 => {}
                    32 => peers.push(addr.octets()),
                    len => {
                        let mask = u32::MAX << (32 - len);
                        let last = net | !mask;
                        for a in [net, net + 1, last, net.wrapping_sub(1), last.wrapping_add(1)] {
                            cidr_edges.push(octets(a));
                        }
                        cidrs.push((net, mask));
                    }
                }
            }
            for service in &rule.services {
                match service {
                    firewall_user::policy::Service::Port { port, .. } => match rule.direction {
                        Direction::In => ports_in.push(*port),
                        Direction::Out => ports_out.push(*port),
                    },
                    firewall_user::policy::Service::Icmp { kind } => icmp_types.push(*kind),
                }
            }
        }
        let mut antispoof = Vec::new();
        for p in policy.antispoof_sources.iter().chain(&policy.antispoof_destinations) {
            let std::net::IpAddr::V4(addr) = p.addr else { continue };
            let net = u32::from(addr);
            let host = if p.len == 0 { u32::MAX } else { !(u32::MAX << (32 - p.len)) };
            antispoof.extend([octets(net), octets(net | (host & 0x0102_0304)), octets(net | host)]);
        }
        let o = u32::from(policy.address);
        let strangers = vec![
            [203, 0, 113, 99],
            [192, 0, 2, 200],
            [8, 8, 8, 8],
            octets(o.wrapping_add(1)),
            octets(o.wrapping_sub(1)),
            [198, 51, 100, 255],
            [100, 64, 0, 1],
        ];
        for list in [&mut peers, &mut cidr_edges, &mut antispoof] {
            if list.is_empty() {
                list.push([203, 0, 113, 98]);
            }
        }
        if cidrs.is_empty() {
            cidrs.push((u32::from(Ipv4Addr::new(192, 0, 2, 0)), 0xffff_ff00));
        }
        for list in [&mut ports_in, &mut ports_out] {
            list.extend([22, 53, 80]);
            list.sort_unstable();
            list.dedup();
        }
        icmp_types.sort_unstable();
        icmp_types.dedup();
        Pool {
            ours,
            peers,
            cidr_edges,
            cidrs,
            antispoof,
            strangers,
            ports_in,
            ports_out,
            icmp_types,
            admitted_in,
            admitted_out,
            icmp_peers,
            related: policy.rules.iter().any(|r| r.related),
        }
    }

    /// Where an ICMP error comes from: a peer an ICMP rule names, or anyone.
    fn error_sender(&self) -> BoxedStrategy<[u8; 4]> {
        (select(self.icmp_peers.clone()), self.peer(), any::<u32>())
            .prop_map(|(pick, anyone, r)| match pick {
                PeerPick::Exact(addr) => addr,
                PeerPick::Inside(net, mask) => octets(net | (r & !mask)),
                PeerPick::Anyone => anyone,
            })
            .boxed()
    }

    fn admitted(&self, direction: Direction) -> &[Admitted] {
        match direction {
            Direction::In => &self.admitted_in,
            Direction::Out => &self.admitted_out,
        }
    }

    /// A service and peer that a rule travelling `direction` admits (`None`: the policy
    /// has no such rule).
    fn admitted_tuple(
        &self,
        direction: Direction,
    ) -> Option<BoxedStrategy<(firewall_user::policy::Service, [u8; 4])>> {
        let list = self.admitted(direction).to_vec();
        if list.is_empty() {
            return None;
        }
        let anyone = self.peer();
        Some(
            (select(list), anyone, any::<u32>())
                .prop_map(|(a, anyone, r)| {
                    let peer = match a.peer {
                        PeerPick::Exact(addr) => addr,
                        PeerPick::Inside(net, mask) => octets(net | (r & !mask)),
                        PeerPick::Anyone => anyone,
                    };
                    (a.service, peer)
                })
                .boxed(),
        )
    }

    /// A peer address: mostly one the policy names or contains.
    fn peer(&self) -> BoxedStrategy<[u8; 4]> {
        let cidrs = self.cidrs.clone();
        prop_oneof![
            6 => select(self.peers.clone()),
            3 => select(self.cidr_edges.clone()),
            3 => (select(cidrs), any::<u32>()).prop_map(|((net, mask), r)| octets(net | (r & !mask))),
            2 => select(self.antispoof.clone()),
            2 => select(self.strangers.clone()),
            1 => Just(self.ours),
            1 => any::<[u8; 4]>(),
        ]
        .boxed()
    }

    /// The host's side: OURIP mostly, else another address (FORWARD, outbound spoofing).
    fn local(&self) -> BoxedStrategy<[u8; 4]> {
        prop_oneof![
            12 => Just(self.ours),
            1 => select(self.strangers.clone()),
            1 => select(self.antispoof.clone()),
            1 => select(self.peers.clone()),
        ]
        .boxed()
    }

    /// A service port of a rule in `direction`, or another.
    fn service_port(&self, direction: Direction) -> BoxedStrategy<u16> {
        let ports = match direction {
            Direction::In => self.ports_in.clone(),
            Direction::Out => self.ports_out.clone(),
        };
        prop_oneof![8 => select(ports), 1 => Just(0u16), 2 => any::<u16>()].boxed()
    }

    /// The other end's port: a few ephemeral ones (so tuples meet again), or any.
    fn ephemeral_port(&self) -> BoxedStrategy<u16> {
        prop_oneof![
            4 => select(vec![40000u16, 40001, 50000]),
            1 => select(self.ports_in.clone()),
            1 => select(self.ports_out.clone()),
            1 => any::<u16>(),
        ]
        .boxed()
    }

    fn icmp_type(&self) -> BoxedStrategy<u8> {
        prop_oneof![3 => select(self.icmp_types.clone()), 1 => any::<u8>()].boxed()
    }
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::In), Just(Direction::Out)]
}

fn tags() -> impl Strategy<Value = Vec<u16>> {
    prop_oneof![
        12 => Just(vec![]),
        2 => select(TPIDS.to_vec()).prop_map(|t| vec![t]),
        1 => (select(TPIDS.to_vec()), select(TPIDS.to_vec())).prop_map(|(a, b)| vec![a, b]),
        1 => prop::collection::vec(select(TPIDS.to_vec()), 3..=3),
    ]
}

fn tcp_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => select(vec![
            TCP_SYN,
            TCP_SYN | TCP_ACK,
            TCP_ACK,
            TCP_PSH | TCP_ACK,
            TCP_FIN | TCP_ACK,
            TCP_RST,
            TCP_RST | TCP_ACK,
            TCP_URG | TCP_ACK,
            TCP_SYN | 0xc0,
        ]),
        3 => any::<u8>(),
    ]
}

fn fragment_field() -> impl Strategy<Value = u16> {
    prop_oneof![
        10 => Just(0u16),
        3 => Just(0x4000u16), // don't fragment
        1 => Just(0x2000u16), // a first fragment
        1 => select(vec![1u16, 185, 0x1fff]),
        1 => select(vec![0x2001u16, 0x20b9]),
        1 => any::<u16>(),
    ]
}

fn ip_options() -> impl Strategy<Value = u8> {
    prop_oneof![10 => Just(0u8), 2 => 1u8..=10]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (1u8..=46).prop_map(Mutation::Pad),
        1 => (0u8..16).prop_map(Mutation::Version),
        2 => (0u8..16).prop_map(Mutation::Ihl),
        1 => any::<u16>().prop_map(Mutation::TotalLength),
        2 => (-24i8..=24).prop_map(Mutation::TotalLengthBy),
        1 => fragment_field().prop_map(Mutation::Fragment),
        1 => any::<u8>().prop_map(Mutation::Protocol),
        2 => any::<u8>().prop_map(Mutation::TcpFlags),
        2 => (0u8..16).prop_map(Mutation::DataOffset),
        1 => any::<u16>().prop_map(Mutation::UdpLength),
        1 => (-12i8..=12).prop_map(Mutation::UdpLengthBy),
        1 => select(vec![0x0806u16, model::ETHERTYPE_IPV6, model::ETHERTYPE_VLAN, 0x88cc, 0]).prop_map(Mutation::Ethertype),
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop_oneof![1 => Just(vec![]), 1 => prop::collection::vec(mutation(), 1..=3)]
}

fn quote_fault() -> impl Strategy<Value = QuoteFault> {
    prop_oneof![
        8 => Just(QuoteFault::None),
        1 => Just(QuoteFault::Whole),
        2 => (1u8..=12).prop_map(QuoteFault::Short),
        1 => (0u8..16).prop_map(QuoteFault::Version),
        1 => (0u8..16).prop_map(QuoteFault::Ihl),
    ]
}

/// The transport of a packet travelling `direction`, its service drawn from the pool.
fn l4(pool: &Pool, direction: Direction) -> BoxedStrategy<L4> {
    let quoted = inner_packet(pool, direction.reverse());
    prop_oneof![
        8 => (pool.ephemeral_port(), pool.service_port(direction), tcp_flags(), prop_oneof![6 => Just(0u8), 1 => 1u8..=10], 0u8..24)
            .prop_map(|(sport, dport, flags, options, payload)| L4::Tcp { sport, dport, flags, options, payload }),
        5 => (pool.ephemeral_port(), pool.service_port(direction), 0u8..24)
            .prop_map(|(sport, dport, payload)| L4::Udp { sport, dport, payload }),
        2 => (pool.icmp_type(), 0u8..16, any::<[u8; 4]>(), 0u8..24)
            .prop_map(|(kind, code, rest, len)| L4::Icmp { kind, code, rest, body: IcmpBody::Data(len) }),
        3 => (pool.icmp_type(), 0u8..16, quoted, quote_fault())
            .prop_map(|(kind, code, inner, fault)| L4::Icmp { kind, code, rest: [0; 4], body: IcmpBody::Quote(Box::new(inner), fault) }),
        1 => (any::<u8>(), 0u8..24).prop_map(|(protocol, payload)| L4::Other { protocol, payload }),
    ]
    .boxed()
}

/// A datagram an ICMP error may quote, travelling `direction`: no tags, no quote itself.
fn inner_packet(pool: &Pool, direction: Direction) -> BoxedStrategy<Packet> {
    let transport = prop_oneof![
        3 => (pool.ephemeral_port(), pool.service_port(direction), tcp_flags())
            .prop_map(|(sport, dport, flags)| L4::Tcp { sport, dport, flags, options: 0, payload: 4 }),
        3 => (pool.ephemeral_port(), pool.service_port(direction)).prop_map(|(sport, dport)| L4::Udp { sport, dport, payload: 4 }),
        2 => (select(vec![0u8, 8, 3]), any::<[u8; 4]>())
            .prop_map(|(kind, rest)| L4::Icmp { kind, code: 0, rest, body: IcmpBody::Data(4) }),
        1 => Just(L4::Other { protocol: 47, payload: 8 }),
    ];
    (pool.local(), pool.peer(), ip_options(), transport)
        .prop_map(move |(local, peer, options, l4)| {
            let (src, dst) = match direction {
                Direction::In => (peer, local),
                Direction::Out => (local, peer),
            };
            Packet { tags: vec![], src, dst, options, fragment: 0, l4 }
        })
        .boxed()
}

fn packet(pool: &Pool, direction: Direction) -> BoxedStrategy<Packet> {
    let anything = (pool.peer(), l4(pool, direction)).boxed();
    let peer_and_l4 = match pool.admitted_tuple(direction) {
        None => anything,
        Some(admitted) => {
            let quoted = inner_packet(pool, direction.reverse());
            let admitted =
                (admitted, pool.ephemeral_port(), tcp_flags(), any::<[u8; 4]>(), quoted, quote_fault())
                    .prop_map(|((service, peer), sport, flags, rest, inner, fault)| {
                        let l4 = match service {
                            firewall_user::policy::Service::Port {
                                protocol: firewall_common::PROTO_TCP,
                                port,
                            } => L4::Tcp { sport, dport: port, flags, options: 0, payload: 4 },
                            firewall_user::policy::Service::Port { port, .. } => {
                                L4::Udp { sport, dport: port, payload: 4 }
                            }
                            firewall_user::policy::Service::Icmp { kind: kind @ (0 | 8) } => {
                                L4::Icmp { kind, code: 0, rest, body: IcmpBody::Data(8) }
                            }
                            firewall_user::policy::Service::Icmp { kind } => L4::Icmp {
                                kind,
                                code: 4,
                                rest: [0; 4],
                                body: IcmpBody::Quote(Box::new(inner), fault),
                            },
                        };
                        (peer, l4)
                    });
            prop_oneof![1 => anything, 1 => admitted].boxed()
        }
    };
    (tags(), pool.local(), ip_options(), fragment_field(), peer_and_l4)
        .prop_map(move |(tags, local, options, fragment, (peer, l4))| {
            let (src, dst) = match direction {
                Direction::In => (peer, local),
                Direction::Out => (local, peer),
            };
            Packet { tags, src, dst, options, fragment, l4 }
        })
        .boxed()
}

fn ipv6_frame() -> impl Strategy<Value = Ipv6Frame> {
    let host: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let addresses: Vec<[u8; 16]> =
        ["2001:db8::7", "fe80::1", "ff02::1", "ff02::1:ff00:1", "::", "::ffff:203.0.113.7"]
            .iter()
            .map(|a| a.parse::<std::net::Ipv6Addr>().unwrap().octets())
            .collect();
    (
        tags(),
        select(addresses),
        prop_oneof![Just(true), Just(false)],
        select(vec![58u8, 6, 17, 0, 44, 59]),
        prop_oneof![select(vec![128u8, 129, 133, 134, 135, 136, 137, 2, 1]), any::<u8>()],
        0u8..24,
        prop::option::weighted(0.3, any::<Index>()),
    )
        .prop_map(move |(tags, other, inbound, next_header, kind, payload, truncate)| {
            let (src, dst) = if inbound { (other, host) } else { (host, other) };
            Ipv6Frame { tags, src, dst, next_header, kind, payload, truncate }
        })
}

/// The single-frame generator.
fn loose(pool: &Pool) -> BoxedStrategy<Loose> {
    let ip = |d: Direction| {
        (packet(pool, d), mutations()).prop_map(move |(packet, mutations)| Loose::Ip {
            direction: d,
            packet,
            mutations,
        })
    };
    prop_oneof![
        20 => ip(Direction::In),
        16 => ip(Direction::Out),
        1 => (direction(), tags(), select(vec![pool.ours, [203, 0, 113, 7]]))
            .prop_map(|(direction, tags, target)| Loose::Arp { direction, tags, target }),
        2 => (direction(), ipv6_frame()).prop_map(|(direction, frame)| Loose::Ipv6 { direction, frame }),
        2 => (
            direction(),
            prop::collection::vec(any::<u8>(), 0..100),
            prop::option::weighted(0.7, select(vec![model::ETHERTYPE_IPV4, model::ETHERTYPE_IPV6, model::ETHERTYPE_VLAN, model::ETHERTYPE_QINQ])),
        )
            .prop_map(|(direction, bytes, ethertype)| Loose::Bytes { direction, bytes, ethertype }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Sequences: flows opened one way, their returns, near misses, errors about them.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlowProto {
    Tcp,
    Udp,
    Echo,
}

/// A flow's tuple from the host's point of view; for echo, `local_port` is the identifier.
#[derive(Clone, Debug)]
struct FlowSpec {
    proto: FlowProto,
    opener: Direction,
    peer: [u8; 4],
    local_port: u16,
    remote_port: u16,
}

#[derive(Clone, Debug)]
enum Change {
    None,
    Peer([u8; 4]),
    PeerPort(u16),
    LocalPort(u16),
    /// TCP for UDP and the other way round; UDP for echo.
    Protocol,
    /// Echo request for reply and the other way round.
    EchoKind,
    /// Built for one direction, sent the other.
    WrongProgram,
}

#[derive(Clone, Debug)]
enum Step {
    /// A packet of a flow: the opener's way (`forward`) or back.
    Flow {
        flow: Index,
        forward: bool,
        flags: u8,
        change: Change,
        tags: Vec<u16>,
        mutations: Vec<Mutation>,
    },
    /// An ICMP error about a packet of a flow, from its peer or a router on the way;
    /// `beyond` bytes of the quote after the datagram's total length (in the padding).
    Error {
        flow: Index,
        about_forward: bool,
        router: Option<[u8; 4]>,
        kind: u8,
        code: u8,
        fault: QuoteFault,
        beyond: u8,
        mutations: Vec<Mutation>,
    },
    Loose(Loose),
}

#[derive(Clone, Debug)]
struct Sequence {
    flows: Vec<FlowSpec>,
    steps: Vec<Step>,
}

fn flow_spec(pool: &Pool) -> BoxedStrategy<FlowSpec> {
    let anything = any_flow_spec(pool);
    let mut admitted = vec![];
    for opener in [Direction::In, Direction::Out] {
        let Some(tuple) = pool.admitted_tuple(opener) else { continue };
        let spec = (tuple, pool.ephemeral_port(), select(vec![0u16, 1, 7, 0xffff])).prop_map(
            move |((service, peer), ephemeral, id)| {
                let (proto, service_port) = match service {
                    firewall_user::policy::Service::Port { protocol: firewall_common::PROTO_TCP, port } => {
                        (FlowProto::Tcp, port)
                    }
                    firewall_user::policy::Service::Port { port, .. } => (FlowProto::Udp, port),
                    // An echo flow; other ICMP types have none, and make one anyway.
                    firewall_user::policy::Service::Icmp { .. } => (FlowProto::Echo, 0),
                };
                let (local_port, remote_port) = match (proto, opener) {
                    (FlowProto::Echo, _) => (id, 0),
                    (_, Direction::In) => (service_port, ephemeral),
                    (_, Direction::Out) => (ephemeral, service_port),
                };
                FlowSpec { proto, opener, peer, local_port, remote_port }
            },
        );
        admitted.push(spec.boxed());
    }
    match admitted.len() {
        0 => anything,
        1 => prop_oneof![1 => anything, 3 => admitted.pop().unwrap()].boxed(),
        _ => {
            let out = admitted.pop().unwrap();
            let inbound = admitted.pop().unwrap();
            prop_oneof![2 => anything, 3 => inbound, 3 => out].boxed()
        }
    }
}

fn any_flow_spec(pool: &Pool) -> BoxedStrategy<FlowSpec> {
    let p = pool.clone();
    (
        prop_oneof![4 => Just(FlowProto::Tcp), 3 => Just(FlowProto::Udp), 2 => Just(FlowProto::Echo)],
        direction(),
    )
        .prop_flat_map(move |(proto, opener)| {
            let (local, remote) = match (proto, opener) {
                (FlowProto::Echo, _) => (select(vec![0u16, 1, 7, 0xffff]).boxed(), Just(0u16).boxed()),
                (_, Direction::In) => (p.service_port(Direction::In), p.ephemeral_port()),
                (_, Direction::Out) => (p.ephemeral_port(), p.service_port(Direction::Out)),
            };
            (Just(proto), Just(opener), p.peer(), local, remote)
        })
        .prop_map(|(proto, opener, peer, local_port, remote_port)| FlowSpec {
            proto,
            opener,
            peer,
            local_port,
            remote_port,
        })
        .boxed()
}

fn change(pool: &Pool) -> BoxedStrategy<Change> {
    prop_oneof![
        12 => Just(Change::None),
        1 => pool.peer().prop_map(Change::Peer),
        1 => pool.ephemeral_port().prop_map(Change::PeerPort),
        1 => pool.ephemeral_port().prop_map(Change::LocalPort),
        1 => Just(Change::Protocol),
        1 => Just(Change::EchoKind),
        1 => Just(Change::WrongProgram),
    ]
    .boxed()
}

fn step(pool: &Pool) -> BoxedStrategy<Step> {
    let router = prop::option::weighted(0.6, pool.error_sender());
    let beyond = prop_oneof![6 => Just(0u8), 1 => 1u8..=8];
    // Errors about flows matter where rules ask for them to be related.
    let errors = if pool.related { 10 } else { 4 };
    prop_oneof![
        14 => (any::<Index>(), prop::bool::weighted(0.55), tcp_flags(), change(pool), prop_oneof![6 => Just(vec![]), 1 => tags()], prop_oneof![5 => Just(vec![]), 1 => mutations()])
            .prop_map(|(flow, forward, flags, change, tags, mutations)| Step::Flow { flow, forward, flags, change, tags, mutations }),
        errors => (any::<Index>(), any::<bool>(), router, prop_oneof![4 => select(vec![3u8, 11, 12]), 1 => any::<u8>()], 0u8..16, quote_fault(), beyond, prop_oneof![5 => Just(vec![]), 1 => mutations()])
            .prop_map(|(flow, about_forward, router, kind, code, fault, beyond, mutations)| Step::Error { flow, about_forward, router, kind, code, fault, beyond, mutations }),
        2 => loose(pool).prop_map(Step::Loose),
    ]
    .boxed()
}

fn sequence(pool: &Pool) -> BoxedStrategy<Sequence> {
    (prop::collection::vec(flow_spec(pool), 1..=3), prop::collection::vec(step(pool), 2..=14))
        .prop_map(|(flows, steps)| Sequence { flows, steps })
        .boxed()
}

impl FlowSpec {
    /// The flow's packet travelling `direction`.
    fn packet(
        &self,
        ours: [u8; 4],
        direction: Direction,
        forward: bool,
        flags: u8,
        change: &Change,
    ) -> Packet {
        let mut peer = self.peer;
        let (mut peer_port, mut local_port) = (self.remote_port, self.local_port);
        let mut proto = self.proto;
        let mut request = forward;
        match change {
            Change::Peer(p) => peer = *p,
            Change::PeerPort(p) => peer_port = *p,
            Change::LocalPort(p) => local_port = *p,
            Change::Protocol => {
                proto = match proto {
                    FlowProto::Tcp => FlowProto::Udp,
                    FlowProto::Udp => FlowProto::Tcp,
                    FlowProto::Echo => FlowProto::Udp,
                }
            }
            Change::EchoKind => request = !request,
            Change::None | Change::WrongProgram => {}
        }
        let (src, dst, sport, dport) = match direction {
            Direction::In => (peer, ours, peer_port, local_port),
            Direction::Out => (ours, peer, local_port, peer_port),
        };
        let l4 = match proto {
            FlowProto::Tcp => L4::Tcp { sport, dport, flags, options: 0, payload: 0 },
            FlowProto::Udp => L4::Udp { sport, dport, payload: 12 },
            FlowProto::Echo => {
                let id = self.local_port.to_be_bytes();
                L4::Icmp {
                    kind: if request { 8 } else { 0 },
                    code: 0,
                    rest: [id[0], id[1], 0, 1],
                    body: IcmpBody::Data(8),
                }
            }
        };
        Packet { tags: vec![], src, dst, options: 0, fragment: 0, l4 }
    }
}

impl Sequence {
    fn realize(&self, ours: [u8; 4]) -> Vec<(Direction, Vec<u8>)> {
        let flow = |at: &Index| &self.flows[at.index(self.flows.len())];
        self.steps
            .iter()
            .map(|step| match step {
                Step::Flow { flow: at, forward, flags, change, tags, mutations } => {
                    let f = flow(at);
                    let direction = if *forward { f.opener } else { f.opener.reverse() };
                    let mut packet = f.packet(ours, direction, *forward, *flags, change);
                    packet.tags = tags.clone();
                    let mut built = packet.build();
                    for m in mutations {
                        m.apply(&mut built);
                    }
                    let sent =
                        if matches!(change, Change::WrongProgram) { direction.reverse() } else { direction };
                    (sent, built.bytes)
                }
                Step::Error { flow: at, about_forward, router, kind, code, fault, beyond, mutations } => {
                    let f = flow(at);
                    let quoted_direction = if *about_forward { f.opener } else { f.opener.reverse() };
                    let flags = if *about_forward { TCP_SYN } else { TCP_SYN | TCP_ACK };
                    let quoted = f.packet(ours, quoted_direction, *about_forward, flags, &Change::None);
                    let direction = quoted_direction.reverse();
                    let sender = router.unwrap_or(f.peer);
                    let (src, dst) = match direction {
                        Direction::In => (sender, ours),
                        Direction::Out => (ours, sender),
                    };
                    let l4 = L4::Icmp {
                        kind: *kind,
                        code: *code,
                        rest: [0; 4],
                        body: IcmpBody::Quote(Box::new(quoted), *fault),
                    };
                    let mut built = Packet { tags: vec![], src, dst, options: 0, fragment: 0, l4 }.build();
                    if *beyond > 0 {
                        Mutation::TotalLengthBy(-(*beyond as i8)).apply(&mut built);
                    }
                    for m in mutations {
                        m.apply(&mut built);
                    }
                    (direction, built.bytes)
                }
                Step::Loose(loose) => loose.realize(),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Random valid policies.
// ---------------------------------------------------------------------------------------

/// Peers that meet: single addresses inside each other's CIDRs, nested CIDRs, `any`.
const PEER_CHOICES: [&str; 14] = [
    "192.0.2.7",
    "192.0.2.8",
    "192.0.2.0/24",
    "192.0.2.0/25",
    "192.0.2.128/26",
    "198.18.0.0/15",
    "198.19.1.0/24",
    "203.0.113.7",
    "203.0.113.0/28",
    "203.0.113.25",
    "10.1.0.0/16",
    "100.64.0.1",
    "198.51.100.53",
    "8.0.0.0/7",
];

fn random_rule(index: usize) -> impl Strategy<Value = String> {
    let protocols = prop_oneof![
        3 => Just(vec!["tcp"]),
        2 => Just(vec!["udp"]),
        3 => Just(vec!["icmp"]),
        1 => Just(vec!["udp", "tcp"]),
        1 => Just(vec!["tcp", "udp", "icmp"]),
    ];
    (
        direction(),
        protocols,
        prop::collection::vec(select(vec![22u16, 25, 53, 80, 122, 443, 8443, 40000]), 1..=3),
        prop_oneof![select(vec!["\"echo-request\"", "\"echo-reply\"", "\"destination-unreachable\"", "11", "12"]).prop_map(String::from), (0u8..=255).prop_map(|n| n.to_string())],
        prop_oneof![1 => Just(None), 3 => Just(Some(())).prop_flat_map(|_| prop::sample::subsequence(PEER_CHOICES.to_vec(), 1..=4)).prop_map(Some)],
        prop::option::weighted(0.25, (1u32..=3, select(vec!["hour", "day"]), 1u32..=3)),
        any::<bool>(),
    )
        .prop_map(move |(direction, protocols, ports, icmp_type, peers, limit, related)| {
            let mut r = format!(
                "[[rule]]\nname = \"r{index}\"\ndirection = \"{}\"\nprotocols = [{}]\n",
                if direction == Direction::In { "in" } else { "out" },
                protocols.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
            );
            if protocols.iter().any(|p| *p != "icmp") {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                writeln!(r, "ports = [{}]", ports.join(", ")).unwrap();
            }
            if protocols.contains(&"icmp") {
                writeln!(r, "icmp_type = {icmp_type}").unwrap();
            }
            match peers {
                None => r.push_str("peers = \"any\"\n"),
                Some(list) => {
                    let list: Vec<String> = list.iter().map(|p| format!("\"{p}\"")).collect();
                    writeln!(r, "peers = [{}]", list.join(", ")).unwrap();
                }
            }
            if let Some((count, unit, burst)) = limit {
                writeln!(r, "limit = \"{count}/{unit}\"\nburst = {burst}").unwrap();
            }
            let error_rule = protocols == ["icmp"]
                && ["\"destination-unreachable\"", "11", "12", "3"].contains(&icmp_type.as_str());
            if related && error_rule {
                r.push_str("related = true\n");
            }
            r
        })
}

fn random_policy() -> impl Strategy<Value = String> {
    let antispoof = prop_oneof![
        3 => Just(String::new()),
        1 => Just("[antispoof]\nsources = []\ndestinations = []\n".to_string()),
        1 => Just("[antispoof]\nsources = [\"10.0.0.0/8\", \"10.1.0.0/16\", \"10.1.2.3\", \"192.0.2.128/26\", \"0.0.0.0/0\"]\ndestinations = [\"198.51.100.0/30\", \"255.255.255.255\"]\n".to_string()),
    ];
    (antispoof, prop::collection::vec(any::<prop::sample::Selector>(), 1..=8)).prop_flat_map(
        |(antispoof, rules)| {
            let rules: Vec<_> = (0..rules.len()).map(random_rule).collect();
            (Just(antispoof), rules).prop_map(|(antispoof, rules)| {
                // A host address that the custom destination list's /30 does not cover.
                format!(
                    "[host]\naddress = \"198.51.100.1\"\n{antispoof}[conntrack]\nmax_entries = 65536\n{}",
                    rules.concat()
                )
            })
        },
    )
}

// ---------------------------------------------------------------------------------------
// Hand-written policies.
// ---------------------------------------------------------------------------------------

const CIDR_POLICY: &str = r#"
[host]
address = "198.51.100.1"
[[rule]]
name = "admin"
direction = "in"
protocols = ["tcp"]
ports = [22, 8443]
peers = ["192.0.2.7", "198.18.0.1"]
[[rule]]
name = "office"
direction = "in"
protocols = ["tcp"]
ports = [22, 8443]
peers = ["192.0.2.0/24", "198.18.0.0/15", "203.0.113.0/28"]
[[rule]]
name = "office-inner"
direction = "in"
protocols = ["tcp"]
port = 22
peers = ["192.0.2.128/25", "198.19.0.0/16"]
[[rule]]
name = "web"
direction = "in"
protocols = ["tcp"]
ports = [80, 443, 8443]
peers = "any"
[[rule]]
name = "backup"
direction = "out"
protocols = ["tcp", "udp"]
port = 873
peers = ["192.0.2.0/26", "192.0.2.64/26", "192.0.2.77"]
[[rule]]
name = "dns"
direction = "out"
protocols = ["udp", "tcp"]
port = 53
peers = ["8.8.8.8", "8.0.0.0/7"]
"#;

const RELATED_POLICY: &str = r#"
[host]
address = "198.51.100.1"
[[rule]]
name = "dns"
direction = "out"
protocols = ["udp", "tcp"]
port = 53
peers = ["198.51.100.53", "192.0.2.0/24"]
[[rule]]
name = "ssh-in"
direction = "in"
protocols = ["tcp"]
port = 122
peers = ["203.0.113.7", "203.0.113.0/28"]
[[rule]]
name = "ping-out"
direction = "out"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
[[rule]]
name = "unreachable-in"
direction = "in"
protocols = ["icmp"]
icmp_type = "destination-unreachable"
peers = "any"
related = true
[[rule]]
name = "unreachable-out"
direction = "out"
protocols = ["icmp"]
icmp_type = "destination-unreachable"
peers = "any"
related = true
[[rule]]
name = "time-exceeded-in"
direction = "in"
protocols = ["icmp"]
icmp_type = 11
peers = ["203.0.113.7", "192.0.2.0/24"]
related = true
limit = "2/hour"
burst = 1
[[rule]]
name = "time-exceeded-any"
direction = "in"
protocols = ["icmp"]
icmp_type = 11
peers = "any"
[[rule]]
name = "problem-out"
direction = "out"
protocols = ["icmp"]
icmp_type = 12
peers = ["203.0.113.7"]
related = true
"#;

const LIMITS_POLICY: &str = r#"
[host]
address = "198.51.100.1"
[conntrack]
max_entries = 65536
tcp_fin_timeout = "1h"
tcp_rst_timeout = "1h"
[[rule]]
name = "ssh-in"
direction = "in"
protocols = ["tcp"]
port = 122
peers = ["203.0.113.7", "192.0.2.0/24"]
limit = "1/hour"
burst = 2
[[rule]]
name = "web-in"
direction = "in"
protocols = ["tcp", "udp"]
ports = [80, 443]
peers = "any"
limit = "3/hour"
burst = 3
[[rule]]
name = "web-friend"
direction = "in"
protocols = ["tcp"]
port = 443
peers = ["192.0.2.7"]
[[rule]]
name = "ping-in"
direction = "in"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
limit = "1/day"
burst = 2
[[rule]]
name = "ping-out"
direction = "out"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = ["203.0.113.0/28", "192.0.2.7"]
limit = "5/hour"
burst = 1
[[rule]]
name = "ntp"
direction = "out"
protocols = ["udp"]
port = 123
peers = "any"
limit = "1/hour"
burst = 1
"#;

const MULTI_POLICY: &str = r#"
[host]
address = "203.0.113.1"
[antispoof]
sources = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "192.0.2.128/26", "203.0.113.0/30"]
destinations = ["198.51.100.0/24", "198.51.100.128/25", "255.255.255.255"]
[[rule]]
name = "everything-out"
direction = "out"
protocols = ["tcp", "udp", "icmp"]
ports = [53, 80, 443, 853]
icmp_type = "echo-request"
peers = ["192.0.2.0/24", "198.18.0.7"]
[[rule]]
name = "replies-in"
direction = "in"
protocols = ["icmp"]
icmp_type = "echo-reply"
peers = "any"
[[rule]]
name = "mail"
direction = "in"
protocols = ["tcp"]
ports = [25, 465, 587]
peers = ["192.0.2.0/25", "192.0.2.130"]
[[rule]]
name = "syslog"
direction = "in"
protocols = ["udp", "tcp"]
port = 514
peers = ["10.1.2.3", "192.0.2.129"]
[[rule]]
name = "odd-icmp"
direction = "in"
protocols = ["icmp"]
icmp_type = 200
peers = "any"
"#;

const EMPTY_POLICY: &str = r#"
[host]
address = "198.51.100.1"
[antispoof]
sources = []
destinations = []
"#;

// ---------------------------------------------------------------------------------------
// Running frames through both and comparing.
// ---------------------------------------------------------------------------------------

fn scale() -> u32 {
    std::env::var("FIREWALL_MODEL_SCALE")
        .ok()
        .map_or(1, |s| s.parse().expect("FIREWALL_MODEL_SCALE: a number"))
}

fn seed() -> [u8; 32] {
    match std::env::var("FIREWALL_MODEL_SEED") {
        Ok(hex) => {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("FIREWALL_MODEL_SEED: hex"))
                .collect();
            bytes.try_into().expect("FIREWALL_MODEL_SEED: 64 hex digits")
        }
        Err(_) => {
            let mut seed = [0u8; 32];
            // SAFETY: a buffer of its length.
            let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
            assert_eq!(n, 32, "getrandom");
            seed
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `CLOCK_MONOTONIC_COARSE`, the clock the programs read.
fn coarse_now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::In => "in (XDP ingress)",
        Direction::Out => "out (TC egress)",
    }
}

/// The frames BPF_PROG_TEST_RUN refuses to run: shorter than an Ethernet header, and for
/// the skb (TC) runner, IPv4 or IPv6 frames without a whole fixed IP header.
fn runner_refuses(direction: Direction, frame: &[u8]) -> bool {
    if frame.len() < 14 {
        return true;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    direction == Direction::Out
        && ((ethertype == model::ETHERTYPE_IPV4 && frame.len() < 14 + 20)
            || (ethertype == model::ETHERTYPE_IPV6 && frame.len() < 14 + 40))
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    frames: u64,
    refused: u64,
    cases: u64,
    sequences: u64,
    clock_retries: u64,
    /// Failing runs: a disagreement, and each failing run of its shrinking.
    disagreements: u64,
    /// Frames that got as far as the flow table or the allow-lists: counted on a rule's
    /// line or on INPUT's or OUTPUT's policy.
    deep: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.frames += other.frames;
        self.refused += other.refused;
        self.cases += other.cases;
        self.sequences += other.sequences;
        self.clock_retries += other.clock_retries;
        self.disagreements += other.disagreements;
        self.deep += other.deep;
    }
}

/// A loaded policy, and what the test expects its counters to hold.
struct Subject {
    name: String,
    text: String,
    filter: TestFilter,
    expected: Vec<Counter>,
    tally: Tally,
    /// Frames each line counted (the generators' reach).
    lines: std::collections::BTreeMap<u32, u64>,
}

impl Subject {
    fn new(name: &str, text: &str) -> Subject {
        let filter = TestFilter::new(text);
        let expected = filter.loaded.maps.counters().expect("reading the counters");
        Subject {
            name: name.into(),
            text: text.into(),
            filter,
            expected,
            tally: Tally::default(),
            lines: Default::default(),
        }
    }

    fn policy(&self) -> &Policy {
        &self.filter.policy
    }

    fn names(&self, ids: &[u32]) -> String {
        let names: Vec<String> =
            ids.iter().map(|id| model::counter_name(&self.filter.policy, &self.filter.ids, *id)).collect();
        if names.is_empty() { "no line".into() } else { names.join(" + ") }
    }

    /// The lines whose counters moved since `expected`, with the new values taken in.
    fn moved_lines(&mut self) -> Vec<u32> {
        let now = self.filter.loaded.maps.counters().expect("reading the counters");
        let moved =
            (0..now.len() as u32).filter(|id| now[*id as usize] != self.expected[*id as usize]).collect();
        self.expected = now;
        moved
    }

    /// Runs one case: from a reset state, every frame through the kernel and the model.
    fn run(&mut self, frames: &[(Direction, Vec<u8>)]) -> Result<model::State, TestCaseError> {
        self.filter.reset_state();
        self.tally.cases += 1;
        self.run_from(model::State::default(), frames)
    }

    /// Runs frames from `state` (the kernel's maps as they are), returning the model's
    /// state after them.
    fn run_from(
        &mut self,
        mut state: model::State,
        frames: &[(Direction, Vec<u8>)],
    ) -> Result<model::State, TestCaseError> {
        let mut log = String::new();
        for (step, (direction, frame)) in frames.iter().enumerate() {
            let before = coarse_now();
            let result = match direction {
                Direction::In => self.filter.try_ingress(frame),
                Direction::Out => self.filter.try_egress(frame),
            };
            let after = coarse_now();
            self.tally.frames += 1;
            let refused = runner_refuses(*direction, frame);
            let kernel = match result {
                Err(_) if refused => {
                    self.tally.refused += 1;
                    writeln!(
                        log,
                        "  {step}: {} {}: refused by the test runner",
                        direction_name(*direction),
                        hex(frame)
                    )
                    .unwrap();
                    continue;
                }
                Err(e) => {
                    return Err(self.disagree(format!(
                        "the test runner refused a {}-byte frame going {}: {e}\n  frame {}",
                        frame.len(),
                        direction_name(*direction),
                        hex(frame)
                    )));
                }
                Ok(_) if refused => {
                    return Err(self.disagree(format!(
                        "the test runner took a frame this test expects it to refuse ({} bytes, {})",
                        frame.len(),
                        direction_name(*direction)
                    )));
                }
                Ok(v) => v,
            };
            let mut next = state.clone();
            let mut expected =
                model::judge(&self.filter.policy, &self.filter.ids, &mut next, frame, *direction, before);
            // The model's line counted this frame, and by its length?
            let counted = {
                let line = self.filter.counter_of(expected.counter);
                let old = self.expected[expected.counter as usize];
                line.packets == old.packets + 1 && line.bytes == old.bytes + frame.len() as u64
            };
            if !counted || kernel != expected.verdict {
                let moved = self.moved_lines();
                // The clock may have ticked between the reading and the kernel's run.
                let mut later = state.clone();
                let retry =
                    model::judge(&self.filter.policy, &self.filter.ids, &mut later, frame, *direction, after);
                if after != before && retry.verdict == kernel && moved == [retry.counter] {
                    self.tally.clock_retries += 1;
                    expected = retry;
                    next = later;
                } else {
                    let message = format!(
                        "the kernel and the model disagree\n  policy {}\n  step {step} of {}: a {}-byte frame going {}\n  frame {}\n  model's parse: {:?}\n  kernel: {kernel:?}, counted on {}\n  model:  {:?}, counted on {}\n  model's flows before: {:?}\n  earlier steps:\n{log}",
                        self.name,
                        frames.len(),
                        frame.len(),
                        direction_name(*direction),
                        hex(frame),
                        model::parse(frame),
                        self.names(&moved),
                        expected.verdict,
                        self.names(&[expected.counter]),
                        state.flows,
                    );
                    return Err(self.disagree(message));
                }
            } else {
                let line = &mut self.expected[expected.counter as usize];
                line.packets += 1;
                line.bytes += frame.len() as u64;
            }
            state = next;
            *self.lines.entry(expected.counter).or_default() += 1;
            if expected.counter >= firewall_common::RULE_COUNTER_BASE
                || [Chain::Input, Chain::Output]
                    .iter()
                    .any(|c| expected.counter == builtin_counter(*c, Builtin::Policy))
            {
                self.tally.deep += 1;
            }
            writeln!(
                log,
                "  {step}: {} {}: {:?} on {}",
                direction_name(*direction),
                hex(frame),
                expected.verdict,
                self.names(&[expected.counter])
            )
            .unwrap();
        }
        // Nothing was counted twice, or anywhere else.
        let before: Vec<Counter> = self.expected.clone();
        let moved = self.moved_lines();
        if !moved.is_empty() {
            let detail: Vec<String> = moved
                .iter()
                .map(|id| {
                    let (was, is) = (before[*id as usize], self.expected[*id as usize]);
                    format!("{}: expected {} packets, holds {}", self.names(&[*id]), was.packets, is.packets)
                })
                .collect();
            return Err(self.disagree(format!(
                "after the case, lines the model did not count moved\n  policy {}\n  {}\n  steps:\n{log}",
                self.name,
                detail.join("\n  ")
            )));
        }
        Ok(state)
    }

    fn disagree(&mut self, message: String) -> TestCaseError {
        self.tally.disagreements += 1;
        // Take in whatever the kernel counted, so the next case starts straight.
        self.moved_lines();
        TestCaseError::fail(message)
    }
}

fn runner(cases: u32, rng: &mut TestRng) -> TestRunner {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
}

fn report(what: &str, subject: &Subject, elapsed: Duration) {
    let t = subject.tally;
    println!(
        "{what}: policy {}: {} frames ({} refused by the runner, {} reached the flows or the allow-lists), {} cases, {} sequences, {} clock retries, {} disagreements, {:.1} s",
        subject.name,
        t.frames,
        t.refused,
        t.deep,
        t.cases,
        t.sequences,
        t.clock_retries,
        t.disagreements,
        elapsed.as_secs_f64()
    );
    let mut lines: Vec<(u64, String)> =
        subject.lines.iter().map(|(id, n)| (*n, subject.names(&[*id]))).collect();
    lines.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let lines: Vec<String> = lines.iter().map(|(n, name)| format!("{name} {n}")).collect();
    println!("  lines counted: {}", lines.join(", "));
}

/// Runs `frame_cases` cases of single frames and `sequence_cases` sequences on one loaded
/// policy; the first disagreement, shrunk, fails the test.
fn exercise(
    subject: Subject,
    frame_cases: u32,
    sequence_cases: u32,
    rng: &mut TestRng,
    total: &mut Tally,
) -> Subject {
    let started = Instant::now();
    let pool = Pool::of(subject.policy());
    let ours = pool.ours;
    let cell = RefCell::new(subject);
    let frames = prop::collection::vec(loose(&pool), 1..=8);
    let result = runner(frame_cases, rng).run(&frames, |case| {
        let realized: Vec<_> = case.iter().map(Loose::realize).collect();
        cell.borrow_mut().run(&realized).map(drop)
    });
    let failure = result.err().map(|e| describe(&cell.borrow(), e));
    let result = if failure.is_none() {
        runner(sequence_cases, rng)
            .run(&sequence(&pool), |case| {
                let mut subject = cell.borrow_mut();
                subject.tally.sequences += 1;
                subject.run(&case.realize(ours)).map(drop)
            })
            .err()
            .map(|e| describe(&cell.borrow(), e))
    } else {
        failure
    };
    let subject = cell.into_inner();
    report("model", &subject, started.elapsed());
    total.add(&subject.tally);
    if let Some(message) = result {
        panic!(
            "{message}\n(frames tried so far: {}, sequences: {}, failing runs while shrinking: {})",
            total.frames, total.sequences, total.disagreements
        );
    }
    subject
}

fn describe<T: std::fmt::Debug>(subject: &Subject, error: TestError<T>) -> String {
    match error {
        // A generated policy is shown whole: nothing else names it.
        TestError::Fail(reason, value) if subject.name.starts_with("random") => {
            format!("{reason}\nthe shrunk case: {value:?}\nthe policy ({}):\n{}", subject.name, subject.text)
        }
        TestError::Fail(reason, value) => format!("{reason}\nthe shrunk case: {value:?}"),
        TestError::Abort(reason) => format!("proptest aborted: {reason}"),
    }
}

fn seeded() -> (TestRng, String) {
    let seed = seed();
    let text = hex(&seed);
    println!("FIREWALL_MODEL_SEED={text} FIREWALL_MODEL_SCALE={}", scale());
    (TestRng::from_seed(RngAlgorithm::ChaCha, &seed), text)
}

fn summary(what: &str, total: &Tally, started: Instant, seed: &str) {
    println!(
        "{what}: {} frames tried ({} refused by the runner, {} reached the flows or the allow-lists), {} sequences, {} disagreements, {:.1} s (seed {seed})",
        total.frames,
        total.refused,
        total.deep,
        total.sequences,
        total.disagreements,
        started.elapsed().as_secs_f64()
    );
    // The generators aim deep; a change that made them miss would leave a test that
    // compares only the parser's early drops.
    assert!(
        total.deep * 3 >= total.frames,
        "only {} of {} frames got past the parser",
        total.deep,
        total.frames
    );
}

#[test]
fn the_seed_policy_agrees_with_the_model() {
    tests::require_root();
    let (mut rng, seed) = seeded();
    let started = Instant::now();
    let mut total = Tally::default();
    let text =
        std::fs::read_to_string(tests::workspace().join("examples/tight.toml")).expect("examples/tight.toml");
    let subject = exercise(
        Subject::new("examples/tight.toml", &text),
        1500 * scale(),
        600 * scale(),
        &mut rng,
        &mut total,
    );
    summary("the seed policy", &total, started, &seed);
    // Every rule was compared where it admits (each line is hit dozens of times a run),
    // and flows were compared on their returns.
    let (policy, ids) = (&subject.filter.policy, &subject.filter.ids);
    for rule in &policy.rules {
        let new = rule_counter(ids.rule(&rule.name), Line::New);
        assert!(
            subject.lines.contains_key(&new),
            "no frame reached {}",
            model::counter_name(policy, ids, new)
        );
    }
    let returns: u64 = policy
        .rules
        .iter()
        .filter_map(|r| subject.lines.get(&rule_counter(ids.rule(&r.name), Line::Established)))
        .sum();
    assert!(returns > 100, "only {returns} frames passed as returns of flows");
}

#[test]
fn hand_written_policies_agree_with_the_model() {
    tests::require_root();
    let (mut rng, seed) = seeded();
    let started = Instant::now();
    let mut total = Tally::default();
    for (name, text) in [
        ("CIDR_POLICY (nested prefixes, single peers inside them, any)", CIDR_POLICY),
        ("RELATED_POLICY (ICMP errors matched to flows)", RELATED_POLICY),
        ("LIMITS_POLICY (slow buckets, small bursts)", LIMITS_POLICY),
        ("MULTI_POLICY (multi-port, multi-protocol, custom anti-spoof)", MULTI_POLICY),
        ("EMPTY_POLICY (no rules, no anti-spoof lists)", EMPTY_POLICY),
    ] {
        exercise(Subject::new(name, text), 800 * scale(), 400 * scale(), &mut rng, &mut total);
    }
    summary("the hand-written policies", &total, started, &seed);
}

#[test]
fn random_policies_agree_with_the_model() {
    tests::require_root();
    let (mut rng, seed) = seeded();
    let started = Instant::now();
    let mut total = Tally::default();
    let mut generator = runner(1, &mut rng);
    let strategy = random_policy();
    let mut loaded = 0;
    let mut refused = 0;
    while loaded < 8 * scale() {
        let text = strategy.new_tree(&mut generator).expect("a policy").current();
        // The generator may give one peer of one service to two rules; validation refuses.
        if firewall_user::policy::parse(&text, std::path::Path::new("random.toml")).is_err() {
            refused += 1;
            assert!(refused < 1000, "the policy generator makes almost only invalid policies");
            continue;
        }
        loaded += 1;
        exercise(Subject::new(&format!("random #{loaded}"), &text), 300, 150, &mut rng, &mut total);
    }
    println!("random policies: {loaded} loaded, {refused} generated ones refused by validation");
    summary("random policies", &total, started, &seed);
}

#[test]
fn a_disagreement_fails_with_the_frame_the_policy_and_both_verdicts() {
    // The comparison must catch a kernel that differs from the model. Make one: the
    // model remembers a DNS query's flow that the kernel is made to forget, so the
    // answer passes in the model and meets the policy in the kernel.
    tests::require_root();
    let text =
        std::fs::read_to_string(tests::workspace().join("examples/tight.toml")).expect("examples/tight.toml");
    let mut subject = Subject::new("examples/tight.toml", &text);
    let (ours, dns) = ([198, 51, 100, 1], [198, 51, 100, 53]);
    let udp = |src, dst, sport, dport| {
        Packet { tags: vec![], src, dst, options: 0, fragment: 0, l4: L4::Udp { sport, dport, payload: 5 } }
            .build()
            .bytes
    };
    let query = udp(ours, dns, 40000, 53);
    let answer = udp(dns, ours, 53, 40000);
    let state = subject.run(&[(Direction::Out, query)]).expect("the query agrees");
    subject.filter.reset_state();
    let message =
        subject.run_from(state, &[(Direction::In, answer.clone())]).expect_err("a disagreement").to_string();
    for part in [
        hex(&answer).as_str(),
        "policy examples/tight.toml",
        "going in (XDP ingress)",
        "kernel: Drop, counted on INPUT policy",
        "model:  Pass, counted on INPUT dns ESTABLISHED",
    ] {
        assert!(message.contains(part), "{part:?} missing from:\n{message}");
    }
    assert_eq!(subject.tally.disagreements, 1);
    // And the next case starts straight: the kernel's count was taken in.
    assert!(subject.run(&[(Direction::In, udp(dns, ours, 53, 40000))]).is_ok());
}
