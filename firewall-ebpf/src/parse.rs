//! The one header parser both programs share: a cursor that steps through Ethernet, up to
//! two VLAN tags, IPv4 (with options: the header is IHL×4 bytes, not 20) or IPv6 (with
//! its extension headers), and the transport header. Every step is one fixed-size read
//! behind one `data_end` check, the shape the verifier accepts; a frame that ends early or
//! lies about its lengths is reported as [`Malformed`], never read past.
//!
//! What it does not read it does not pass: a third VLAN tag is [`L3::TooDeep`] (Linux
//! strips priority tags, VLAN 0, at any depth and hands what is inside to IP), and of the
//! other ethertypes only the link's own protocols, which end at the neighbour, pass.
use core::mem::size_of;

use crate::conntrack::flow_key;
use firewall_common::{
    Addr, Direction, FlowKey, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, is_v4_mapped, v4_mapped,
};
use network_types::{
    eth::EthHdr,
    icmp::Icmpv4Hdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// What both program types give the parser: the linear packet bytes and the frame length.
pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// The whole frame's length in bytes (for TC, including any non-linear part).
    fn len(&self) -> u32;
    /// Copies the frame's first `len` (at most `DROP_EVENT_BYTES`) bytes to `head` with the
    /// program type's helper; false if the frame is shorter. A pointer, not a reference:
    /// `head` is a ring record not yet written.
    fn copy_head(&self, head: *mut [u8; firewall_common::DROP_EVENT_BYTES], len: u32) -> bool;
    /// Copies the whole frame, `len` bytes (1 to `DNS_ANSWER_BYTES`), to `to`, as
    /// `copy_head` does: a DNS answer held (ingress alone holds them).
    fn copy_frame(&self, to: *mut [u8; firewall_common::DNS_ANSWER_BYTES], len: u32) -> bool;
    /// The uid of the socket that sent the frame (egress), or
    /// `firewall_common::NO_SOCKET_UID` for a frame of no socket of its own (and every
    /// frame XDP sees).
    fn socket_uid(&self) -> u32;
}

/// Copies as much of the frame's head as it has, in steps the verifier can check (a
/// computed length compiles to a test of the packet pointers, which bounds nothing):
/// enough for the IPv6 or IPv4 header with the ports behind it, or less.
#[inline(always)]
pub fn copy_head(frame: &impl Frame, head: *mut [u8; firewall_common::DROP_EVENT_BYTES]) -> Option<usize> {
    // All there is room for (Ethernet, VLAN tags, IPv4 with options or IPv6, ports);
    // IPv6 and its ports behind one VLAN tag; IPv4 and its ports; Ethernet alone.
    const STEPS: [u32; 4] = [firewall_common::DROP_EVENT_BYTES as u32, 62, 38, 14];
    for len in STEPS {
        if frame.copy_head(head, len) {
            return Some(len as usize);
        }
    }
    None
}

/// A header that is truncated, or whose length fields contradict the frame.
pub struct Malformed;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// The link's own protocols: Linux hands none of them to IP.
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_LLDP: u16 = 0x88CC;
/// 802.1X port authentication (EAPOL).
const ETH_P_PAE: u16 = 0x888E;
/// Slow protocols: LACP, marker, OAM.
const ETH_P_SLOW: u16 = 0x8809;
/// Up to this value the field is an 802.3 length, and an LLC header follows (STP, …):
/// Linux gives such frames to LLC, whose SNAP clients are AppleTalk's, never IP's.
const ETH_DATA_LEN: u16 = 1500;

/// IPv4 `frags` field: more-fragments flag and offset mask, in 8-byte units (the DF bit
/// is fine).
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1FFF;
/// The largest datagram either family reassembles (no jumbograms on Ethernet): a fragment
/// ending past it is no sender's.
const MAX_DATAGRAM: usize = 65_535;

/// IPv6 extension headers (RFC 8200 §4), by their next-header numbers.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTIONS: u8 = 60;
/// Fragment header: offset (13 bits, in 8-byte units: the word masked is the offset in
/// bytes) and the M flag; the 2 bits between are reserved. An atomic fragment (RFC 6946:
/// offset 0, M clear) is a whole datagram.
const IPV6_FRAGMENT_OFFSET: u16 = 0xFFF8;
const IPV6_FRAGMENT_MORE: u16 = 0x0001;
/// Extension headers walked before giving up on a datagram as malformed. A real one has at
/// most hop-by-hop, destination options, routing and fragment before its payload; a longer
/// chain is only ever made to hide the transport header (nebula #1789).
const IPV6_MAX_EXTENSION_HEADERS: usize = 4;

/// Bounds-checked pointer to a `T` at `offset` bytes into the frame.
#[inline(always)]
fn ptr_at<T>(frame: &impl Frame, offset: usize) -> Result<*const T, Malformed> {
    let start = frame.data();
    let end = frame.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Malformed);
    }
    Ok((start + offset) as *const T)
}

/// Layer 3 of a frame.
pub enum L3 {
    /// One of the link's own protocols (ARP, LLDP, 802.1X, LACP, 802.3 LLC).
    NonIp,
    /// Any other ethertype.
    OtherEthertype,
    /// A third VLAN tag: malformed, as far as the filter goes. A variant of its own, not
    /// [`Malformed`]: so the verifier meets about 5,000 fewer instructions (Linux 6.18).
    TooDeep,
    /// IPv6 while the policy configures none: not parsed.
    Ipv6Off,
    Ip(Ip),
}

/// Where a packet stands in its datagram (RFC 791 §2.3, RFC 8200 §4.5).
#[derive(Clone, Copy)]
pub enum Fragment {
    /// A whole datagram, or its first fragment (offset 0): judged by its headers, which it
    /// must hold whole. [`Ip::more`] tells the two apart.
    Headed,
    /// At `offset` bytes, past 0: no headers to judge it by; its first fragment's verdict
    /// admits it.
    Later { offset: u16 },
    /// Lengths no sender makes: ending past 65,535 bytes, or more to come after a length
    /// that is no multiple of 8.
    Absurd,
}

/// What names a fragment's datagram (with the addresses and the direction), and the bytes
/// of its payload this fragment carries (IPv6: after the fragment header). All 0 for a
/// packet that is no fragment.
#[derive(Clone, Copy, Default)]
pub struct Datagram {
    pub id: u32,
    /// IPv4's protocol; the IPv6 fragment header's next-header, alike in every fragment.
    pub protocol: u8,
    pub len: u16,
}

/// Which fragment a packet is, from its offset in bytes, its more-fragments flag (0 or 1)
/// and the payload it carries.
#[inline(always)]
fn fragment(offset: usize, more: u8, len: usize) -> Fragment {
    // `more × (len mod 8)`: a product, not a test of `more` (see [`Ip::more`]).
    if offset + len > MAX_DATAGRAM || more as usize * (len % 8) != 0 {
        return Fragment::Absurd;
    }
    if offset == 0 { Fragment::Headed } else { Fragment::Later { offset: offset as u16 } }
}

/// The IP header's facts the chains need, for either family.
pub struct Ip {
    /// Addresses as the maps hold them (IPv4 mapped into IPv6).
    pub src: Addr,
    pub dst: Addr,
    /// The transport protocol: IPv4's protocol, IPv6's last next-header.
    pub protocol: u8,
    pub fragment: Fragment,
    /// The more-fragments flag (IPv6's M), 0 or 1: a [`Fragment::Headed`] packet with it is
    /// a first fragment. A number, which nothing tests before the verdict: so the verifier
    /// walks a whole datagram and a first fragment as one path through the chains, not two
    /// (a flag it saw set or clear would be a constant, and double them). Read from the
    /// packet; 0 without a fragment header, to which the chain engine adds a 0 the
    /// verifier does not know (`firewall_common::CONFIG_NEVER_SET`).
    pub more: u8,
    pub datagram: Datagram,
    pub v6: bool,
    /// IPv6's hop limit (neighbour discovery needs 255); IPv4's TTL.
    pub hop_limit: u8,
    /// Offset of the transport header in the frame (16 bits: the stack is full).
    l4_offset: u16,
    /// Bytes from the transport header to the end of the datagram.
    l4_len: u16,
}

/// Ethernet, VLAN tags and the IP header (IPv6 only when `ipv6`, the policy's `address6`).
#[inline(always)]
pub fn parse_l3(frame: &impl Frame, ipv6: bool) -> Result<L3, Malformed> {
    let eth: *const EthHdr = ptr_at(frame, 0)?;
    let mut offset = EthHdr::LEN;
    // SAFETY: `ptr_at` checked the whole header is inside the frame.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    // Two tags cover 802.1Q and QinQ; unrolled, as the verifier needs no loop.
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: *const VlanHdr = ptr_at(frame, offset)?;
        // SAFETY: checked by `ptr_at`.
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        offset += VlanHdr::LEN;
    }
    match ether_type {
        ETH_P_IP => parse_ipv4(frame, offset).map(L3::Ip),
        ETH_P_IPV6 if ipv6 => parse_ipv6(frame, offset).map(L3::Ip),
        ETH_P_IPV6 => Ok(L3::Ipv6Off),
        ETH_P_ARP | ETH_P_LLDP | ETH_P_PAE | ETH_P_SLOW => Ok(L3::NonIp),
        length if length <= ETH_DATA_LEN => Ok(L3::NonIp),
        // A third tag: deeper than the parser reads, and the host would unwrap it.
        ETH_P_8021Q | ETH_P_8021AD => Ok(L3::TooDeep),
        _ => Ok(L3::OtherEthertype),
    }
}

#[inline(always)]
fn parse_ipv4(frame: &impl Frame, offset: usize) -> Result<Ip, Malformed> {
    let ip: *const Ipv4Hdr = ptr_at(frame, offset)?;
    // SAFETY: checked by `ptr_at`.
    let ip = unsafe { &*ip };
    let header_len = ((ip.vihl & 0x0F) as usize) * 4;
    let total_len = u16::from_be_bytes(ip.tot_len) as usize;
    if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN || total_len < header_len {
        return Err(Malformed);
    }
    // The datagram must fit in the frame (Ethernet may pad it, never cut it).
    if offset + total_len > frame.len() as usize {
        return Err(Malformed);
    }
    let frags = u16::from_be_bytes(ip.frags);
    let more = ((frags & IP_MF) >> 13) as u8;
    let len = total_len - header_len;
    Ok(Ip {
        src: v4_mapped(ip.src_addr),
        dst: v4_mapped(ip.dst_addr),
        protocol: ip.proto,
        fragment: fragment((frags & IP_OFFSET) as usize * 8, more, len),
        more,
        datagram: Datagram { id: u16::from_be_bytes(ip.id) as u32, protocol: ip.proto, len: len as u16 },
        v6: false,
        hop_limit: ip.ttl,
        l4_offset: (offset + header_len) as u16,
        l4_len: len as u16,
    })
}

/// The IPv6 header and its extension headers, up to the transport header.
#[inline(always)]
fn parse_ipv6(frame: &impl Frame, offset: usize) -> Result<Ip, Malformed> {
    let ip: *const Ipv6Hdr = ptr_at(frame, offset)?;
    // SAFETY: checked by `ptr_at`.
    let ip = unsafe { &*ip };
    let payload_len = u16::from_be_bytes(ip.payload_len) as usize;
    // A payload length of 0 announces a jumbogram, which no Ethernet carries.
    if ip.vcf[0] >> 4 != 6 || payload_len == 0 {
        return Err(Malformed);
    }
    let end = offset + Ipv6Hdr::LEN + payload_len;
    if end > frame.len() as usize {
        return Err(Malformed);
    }
    // The mapped range is IPv4's alone in the maps (see firewall_common::Addr).
    if is_v4_mapped(&ip.src_addr) || is_v4_mapped(&ip.dst_addr) {
        return Err(Malformed);
    }
    let mut next = ip.next_hdr;
    let mut cursor = offset + Ipv6Hdr::LEN;
    let mut piece = Fragment::Headed;
    let mut more = 0;
    let mut datagram = Datagram::default();
    for i in 0..IPV6_MAX_EXTENSION_HEADERS {
        let length = match next {
            // Hop-by-hop options come first or not at all (RFC 8200 §4.1).
            IPV6_HOP_BY_HOP if i > 0 => return Err(Malformed),
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTIONS => {
                let header: *const [u8; 2] = ptr_at(frame, cursor)?;
                // SAFETY: checked by `ptr_at`.
                let [next_header, units] = unsafe { *header };
                next = next_header;
                (units as usize + 1) * 8
            }
            // AH counts its length in 4-byte words, not counting the first two (RFC 4302).
            IPV6_AUTH => {
                let header: *const [u8; 2] = ptr_at(frame, cursor)?;
                // SAFETY: checked by `ptr_at`.
                let [next_header, words] = unsafe { *header };
                next = next_header;
                (words as usize + 2) * 4
            }
            IPV6_FRAGMENT => {
                let header: *const [u8; 8] = ptr_at(frame, cursor)?;
                // SAFETY: checked by `ptr_at`.
                let header = unsafe { *header };
                next = header[0];
                let word = u16::from_be_bytes([header[2], header[3]]);
                let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                // What follows the header, to the datagram's end, is this fragment's part.
                let len = end.saturating_sub(cursor + 8);
                more = (word & IPV6_FRAGMENT_MORE) as u8;
                piece = fragment((word & IPV6_FRAGMENT_OFFSET) as usize, more, len);
                datagram = Datagram { id, protocol: next, len: len as u16 };
                8
            }
            _ => break,
        };
        cursor += length;
        if cursor > end {
            return Err(Malformed);
        }
        // Past the fragment header of a later fragment come pieces of headers, not
        // headers: stop there. A first fragment holds the rest of the chain and the
        // transport header (RFC 7112), and is read on.
        if !matches!(piece, Fragment::Headed) {
            break;
        }
    }
    if matches!(piece, Fragment::Headed) && is_extension_header(next) {
        return Err(Malformed);
    }
    Ok(Ip {
        src: ip.src_addr,
        dst: ip.dst_addr,
        protocol: next,
        fragment: piece,
        more,
        datagram,
        v6: true,
        hop_limit: ip.hop_limit,
        l4_offset: cursor as u16,
        l4_len: (end - cursor) as u16,
    })
}

#[inline(always)]
fn is_extension_header(next: u8) -> bool {
    matches!(next, IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AUTH | IPV6_DEST_OPTIONS)
}

/// Whether an ICMP message is an echo, and which half.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    No,
    Request,
    Reply,
}

/// The transport header's facts the chains need.
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        /// Sequence and acknowledgement numbers, and the window as sent (unscaled): what
        /// conntrack records of the host's segments and checks the peer's RST and FIN by.
        seq: u32,
        ack: u32,
        window: u16,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP for IPv4, ICMPv6 for IPv6.
    Icmp {
        kind: u8,
        echo: Echo,
        echo_id: u16,
    },
    /// A protocol no rule can name (GRE, ESP, …): only the chain policy applies.
    Other,
}

#[inline(always)]
fn icmp(protocol: u8, kind: u8, echo_id: u16) -> L4 {
    let echo = match (protocol, kind) {
        (PROTO_ICMP, ICMP_ECHO_REQUEST) | (PROTO_ICMPV6, ICMPV6_ECHO_REQUEST) => Echo::Request,
        (PROTO_ICMP, ICMP_ECHO_REPLY) | (PROTO_ICMPV6, ICMPV6_ECHO_REPLY) => Echo::Reply,
        _ => Echo::No,
    };
    L4::Icmp { kind, echo, echo_id }
}

/// The transport header of a whole datagram or a first fragment (which must hold it all).
#[inline(always)]
pub fn parse_l4(frame: &impl Frame, ip: &Ip) -> Result<L4, Malformed> {
    match ip.protocol {
        PROTO_TCP => {
            if (ip.l4_len as usize) < TcpHdr::LEN {
                return Err(Malformed);
            }
            let tcp: *const TcpHdr = ptr_at(frame, ip.l4_offset as usize)?;
            // SAFETY: checked by `ptr_at`.
            let tcp = unsafe { &*tcp };
            // Byte 12 holds the data offset, byte 13 the flags.
            // SAFETY: the bitfield is `#[repr(C)]` over exactly these two bytes.
            let raw: [u8; 2] = unsafe { core::mem::transmute(tcp._bitfield_1) };
            let header_len = ((raw[0] >> 4) as usize) * 4;
            if header_len < TcpHdr::LEN || header_len > (ip.l4_len as usize) {
                return Err(Malformed);
            }
            Ok(L4::Tcp {
                src_port: u16::from_be_bytes(tcp.source),
                dst_port: u16::from_be_bytes(tcp.dest),
                flags: raw[1],
                seq: u32::from_be_bytes(tcp.seq),
                ack: u32::from_be_bytes(tcp.ack_seq),
                window: u16::from_be_bytes(tcp.window),
            })
        }
        PROTO_UDP => {
            if (ip.l4_len as usize) < UdpHdr::LEN {
                return Err(Malformed);
            }
            let udp: *const UdpHdr = ptr_at(frame, ip.l4_offset as usize)?;
            // SAFETY: checked by `ptr_at`.
            let udp = unsafe { &*udp };
            let udp_len = u16::from_be_bytes(udp.len) as usize;
            // A first fragment carries part of the datagram the length counts: its bound is
            // past any length, by arithmetic rather than a test (see `Ip::more`).
            if udp_len < UdpHdr::LEN || udp_len > (ip.l4_len as usize) + ip.more as usize * MAX_DATAGRAM {
                return Err(Malformed);
            }
            Ok(L4::Udp { src_port: u16::from_be_bytes(udp.src), dst_port: u16::from_be_bytes(udp.dst) })
        }
        // Both families' ICMP headers are 8 bytes: type, code, checksum, 4 more.
        protocol @ (PROTO_ICMP | PROTO_ICMPV6) if (protocol == PROTO_ICMPV6) == ip.v6 => {
            if (ip.l4_len as usize) < Icmpv4Hdr::LEN {
                return Err(Malformed);
            }
            let header: *const Icmpv4Hdr = ptr_at(frame, ip.l4_offset as usize)?;
            // SAFETY: checked by `ptr_at`.
            let header = unsafe { &*header };
            // The first two bytes of the rest-of-header: the echo identifier.
            Ok(icmp(protocol, header.type_, u16::from_be_bytes([header.data[0], header.data[1]])))
        }
        _ => Ok(L4::Other),
    }
}

/// The flow of the datagram an ICMP error quotes (its IP header and the first 8 bytes
/// after it, as RFC 792 and RFC 4443 require), keyed as a packet travelling `direction`.
/// A quoted IPv6 datagram with extension headers is not followed: its error belongs to no
/// flow.
#[inline(always)]
pub fn parse_quoted(frame: &impl Frame, ip: &Ip, direction: Direction) -> Result<FlowKey, Malformed> {
    let offset = (ip.l4_offset as usize) + Icmpv4Hdr::LEN;
    // Only the peer's address is kept: the stack is small.
    let mut peer: Addr = [0; 16];
    let (protocol, header_len) = if ip.v6 {
        let quoted: *const Ipv6Hdr = ptr_at(frame, offset)?;
        // SAFETY: checked by `ptr_at`.
        let quoted = unsafe { &*quoted };
        // A mapped address would key the quote as an IPv4 flow's (see firewall_common::Addr).
        if quoted.vcf[0] >> 4 != 6 || is_v4_mapped(&quoted.src_addr) || is_v4_mapped(&quoted.dst_addr) {
            return Err(Malformed);
        }
        peer = match direction {
            Direction::In => quoted.src_addr,
            Direction::Out => quoted.dst_addr,
        };
        (quoted.next_hdr, Ipv6Hdr::LEN)
    } else {
        let quoted: *const Ipv4Hdr = ptr_at(frame, offset)?;
        // SAFETY: checked by `ptr_at`.
        let quoted = unsafe { &*quoted };
        let header_len = ((quoted.vihl & 0x0F) as usize) * 4;
        if quoted.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
            return Err(Malformed);
        }
        let v4 = match direction {
            Direction::In => quoted.src_addr,
            Direction::Out => quoted.dst_addr,
        };
        peer[10] = 0xff;
        peer[11] = 0xff;
        peer[12..].copy_from_slice(&v4);
        (quoted.proto, header_len)
    };
    let ports: *const [u8; 8] = ptr_at(frame, offset + header_len)?;
    // SAFETY: checked by `ptr_at`.
    let ports = unsafe { *ports };
    let src_port = u16::from_be_bytes([ports[0], ports[1]]);
    let dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    let l4 = match protocol {
        PROTO_TCP => L4::Tcp { src_port, dst_port, flags: 0, seq: 0, ack: 0, window: 0 },
        PROTO_UDP => L4::Udp { src_port, dst_port },
        PROTO_ICMP | PROTO_ICMPV6 if (protocol == PROTO_ICMPV6) == ip.v6 => {
            icmp(protocol, ports[0], u16::from_be_bytes([ports[4], ports[5]]))
        }
        _ => return Err(Malformed),
    };
    flow_key(direction, peer, protocol, &l4).ok_or(Malformed)
}

/// TCP flags, and which sets are valid: one definition with user space (`import` reads
/// iptables' `--tcp-flags` drops by it).
pub use firewall_common::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, tcp_flags_valid};
