//! The one header parser both programs share: a cursor that steps through Ethernet, up to
//! two VLAN tags, IPv4 (with options: the header is IHL×4 bytes, not 20) and the
//! transport header. Every step is one fixed-size read behind one `data_end` check,
//! the shape the verifier accepts; a frame that ends early or lies about its lengths is
//! reported as [`Malformed`], never read past.
use core::mem::size_of;

use firewall_common::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use network_types::{eth::EthHdr, icmp::Icmpv4Hdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr, vlan::VlanHdr};

/// What both program types give the parser: the linear packet bytes and the frame length.
pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// The whole frame's length in bytes (for TC, including any non-linear part).
    fn len(&self) -> u32;
}

/// A header that is truncated, or whose length fields contradict the frame.
pub struct Malformed;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

/// IPv4 `frags` field: more-fragments flag and offset mask (the DF bit is fine).
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1FFF;

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
    /// ARP and every other non-IP ethertype.
    NonIp,
    Ipv6,
    Ipv4(Ipv4),
}

/// The IPv4 header's facts the chains need.
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub protocol: u8,
    pub fragment: bool,
    /// Offset of the transport header in the frame.
    l4_offset: usize,
    /// Bytes from the transport header to the end of the IP datagram (tot_len − IHL×4).
    l4_len: usize,
}

/// Ethernet, VLAN tags and the IPv4 header.
#[inline(always)]
pub fn parse_l3(frame: &impl Frame) -> Result<L3, Malformed> {
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
        ETH_P_IP => {}
        ETH_P_IPV6 => return Ok(L3::Ipv6),
        _ => return Ok(L3::NonIp),
    }

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
    Ok(L3::Ipv4(Ipv4 {
        src: ip.src_addr,
        dst: ip.dst_addr,
        protocol: ip.proto,
        fragment: frags & (IP_MF | IP_OFFSET) != 0,
        l4_offset: offset + header_len,
        l4_len: total_len - header_len,
    }))
}

/// The transport header's facts the chains need.
pub enum L4 {
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    Icmp {
        kind: u8,
        echo_id: u16,
    },
    /// A protocol no rule can name (GRE, ESP, …): only the chain policy applies.
    Other,
}

/// The transport header of an unfragmented IPv4 datagram.
#[inline(always)]
pub fn parse_l4(frame: &impl Frame, ip: &Ipv4) -> Result<L4, Malformed> {
    match ip.protocol {
        PROTO_TCP => {
            if ip.l4_len < TcpHdr::LEN {
                return Err(Malformed);
            }
            let tcp: *const TcpHdr = ptr_at(frame, ip.l4_offset)?;
            // SAFETY: checked by `ptr_at`.
            let tcp = unsafe { &*tcp };
            // Byte 12 holds the data offset, byte 13 the flags.
            // SAFETY: the bitfield is `#[repr(C)]` over exactly these two bytes.
            let raw: [u8; 2] = unsafe { core::mem::transmute(tcp._bitfield_1) };
            let header_len = ((raw[0] >> 4) as usize) * 4;
            if header_len < TcpHdr::LEN || header_len > ip.l4_len {
                return Err(Malformed);
            }
            Ok(L4::Tcp {
                src_port: u16::from_be_bytes(tcp.source),
                dst_port: u16::from_be_bytes(tcp.dest),
                flags: raw[1],
            })
        }
        PROTO_UDP => {
            if ip.l4_len < UdpHdr::LEN {
                return Err(Malformed);
            }
            let udp: *const UdpHdr = ptr_at(frame, ip.l4_offset)?;
            // SAFETY: checked by `ptr_at`.
            let udp = unsafe { &*udp };
            let udp_len = u16::from_be_bytes(udp.len) as usize;
            if udp_len < UdpHdr::LEN || udp_len > ip.l4_len {
                return Err(Malformed);
            }
            Ok(L4::Udp { src_port: u16::from_be_bytes(udp.src), dst_port: u16::from_be_bytes(udp.dst) })
        }
        PROTO_ICMP => {
            if ip.l4_len < Icmpv4Hdr::LEN {
                return Err(Malformed);
            }
            let icmp: *const Icmpv4Hdr = ptr_at(frame, ip.l4_offset)?;
            // SAFETY: checked by `ptr_at`.
            let icmp = unsafe { &*icmp };
            Ok(L4::Icmp {
                kind: icmp.type_,
                // The first two bytes of the rest-of-header: the echo identifier.
                echo_id: u16::from_be_bytes([icmp.data[0], icmp.data[1]]),
            })
        }
        _ => Ok(L4::Other),
    }
}

/// The datagram an ICMP error quotes (its IPv4 header and the first 8 bytes after it, as
/// RFC 792 requires), as an [`Ipv4`] and [`L4`] to look up in conntrack. TCP flags are
/// beyond those 8 bytes: the quoted segment's are 0.
#[inline(always)]
pub fn parse_quoted(frame: &impl Frame, ip: &Ipv4) -> Result<(Ipv4, L4), Malformed> {
    let offset = ip.l4_offset + Icmpv4Hdr::LEN;
    let quoted: *const Ipv4Hdr = ptr_at(frame, offset)?;
    // SAFETY: checked by `ptr_at`.
    let quoted = unsafe { &*quoted };
    let header_len = ((quoted.vihl & 0x0F) as usize) * 4;
    if quoted.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Malformed);
    }
    let l4_offset = offset + header_len;
    let ports: *const [u8; 8] = ptr_at(frame, l4_offset)?;
    // SAFETY: checked by `ptr_at`.
    let ports = unsafe { *ports };
    let src_port = u16::from_be_bytes([ports[0], ports[1]]);
    let dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    let l4 = match quoted.proto {
        PROTO_TCP => L4::Tcp { src_port, dst_port, flags: 0 },
        PROTO_UDP => L4::Udp { src_port, dst_port },
        PROTO_ICMP => L4::Icmp { kind: ports[0], echo_id: u16::from_be_bytes([ports[4], ports[5]]) },
        _ => L4::Other,
    };
    let frags = u16::from_be_bytes(quoted.frags);
    let ip = Ipv4 {
        src: quoted.src_addr,
        dst: quoted.dst_addr,
        protocol: quoted.proto,
        fragment: frags & (IP_MF | IP_OFFSET) != 0,
        l4_offset,
        l4_len: 8,
    };
    Ok((ip, l4))
}

/// TCP flag bits.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;

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
#[inline(always)]
pub fn tcp_flags_valid(flags: u8) -> bool {
    let significant = flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK | TCP_URG) & !TCP_PSH;
    VALID_TCP_FLAGS >> significant & 1 == 1
}
