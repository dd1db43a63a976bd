//! Frames for the verdict tests, built with etherparse and then bent where a test needs
//! a malformed one.
use etherparse::PacketBuilder;

pub const OURS: [u8; 4] = [198, 51, 100, 1];
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

/// Offsets in an untagged frame with a 20-byte IPv4 header.
pub const IP: usize = 14;
pub const L4: usize = 34;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

fn builder(src: [u8; 4], dst: [u8; 4]) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64)
}

/// A TCP segment with exactly `flags` set.
pub fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let b = builder(src, dst).tcp(sport, dport, 1000, 64240);
    let mut frame = Vec::new();
    b.write(&mut frame, &[]).expect("tcp frame");
    frame[L4 + 13] = flags;
    frame
}

/// A TCP segment with exactly `flags` set, its sequence and acknowledgement numbers and
/// its window chosen.
pub fn tcp_numbered(
    src: [u8; 4],
    dst: [u8; 4],
    (sport, dport): (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
) -> Vec<u8> {
    let mut frame = tcp(src, dst, sport, dport, flags);
    set_numbers(&mut frame, L4, seq, ack, window);
    frame
}

/// Writes a TCP header's sequence and acknowledgement numbers and window (the filter
/// reads no checksum).
fn set_numbers(frame: &mut [u8], l4: usize, seq: u32, ack: u32, window: u16) {
    frame[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
    frame[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
    frame[l4 + 14..l4 + 16].copy_from_slice(&window.to_be_bytes());
}

pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    builder(src, dst).udp(sport, dport).write(&mut frame, b"query").expect("udp frame");
    frame
}

pub fn icmp_echo(src: [u8; 4], dst: [u8; 4], request: bool, id: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    let b = builder(src, dst);
    let b = if request { b.icmpv4_echo_request(id, 1) } else { b.icmpv4_echo_reply(id, 1) };
    b.write(&mut frame, b"ping").expect("icmp frame");
    frame
}

/// An ICMP message of any type, with an 8-byte header and a little payload.
pub fn icmp(src: [u8; 4], dst: [u8; 4], kind: u8, code: u8) -> Vec<u8> {
    let mut frame = icmp_echo(src, dst, true, 0);
    frame[L4] = kind;
    frame[L4 + 1] = code;
    frame
}

/// An ICMP error from `src` to `dst` quoting `about` (a frame): its IPv4 header and the
/// 8 bytes after it, as RFC 792 has routers and hosts do.
pub fn icmp_error(src: [u8; 4], dst: [u8; 4], kind: u8, code: u8, about: &[u8]) -> Vec<u8> {
    let header_len = usize::from(about[IP] & 0x0f) * 4;
    let quoted = &about[IP..(IP + header_len + 8).min(about.len())];
    let mut frame = Vec::new();
    builder(src, dst).icmpv4_raw(kind, code, [0; 4]).write(&mut frame, quoted).expect("icmp error frame");
    frame
}

/// A frame with another IP protocol (GRE) and no transport header we know.
pub fn other_protocol(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut frame = udp(src, dst, 1, 1);
    frame[IP + 9] = 47;
    frame
}

/// An ARP request, who-has `target`.
pub fn arp(target: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&MAC_A);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame.extend_from_slice(&MAC_A);
    frame.extend_from_slice(&[203, 0, 113, 7]);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target);
    frame.resize(60, 0);
    frame
}

pub fn ipv6_tcp() -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            64,
        )
        .tcp(40000, 122, 1, 64240)
        .syn()
        .write(&mut frame, &[])
        .expect("ipv6 frame");
    frame
}

/// Adds `words` 4-byte words of IPv4 options (NOPs ending in EOL) after the base header,
/// fixing IHL and the total length.
pub fn with_ip_options(mut frame: Vec<u8>, words: usize) -> Vec<u8> {
    let mut options = vec![1u8; words * 4];
    if let Some(last) = options.last_mut() {
        *last = 0;
    }
    frame.splice(L4..L4, options);
    frame[IP] = 0x40 | (5 + words as u8);
    let total = u16::from_be_bytes([frame[IP + 2], frame[IP + 3]]) + (words * 4) as u16;
    frame[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    frame
}

/// Sets the IPv4 fragment field (flags and offset in 8-byte units).
pub fn fragmented(mut frame: Vec<u8>, more_fragments: bool, offset: u16) -> Vec<u8> {
    let value = if more_fragments { 0x2000 } else { 0 } | offset;
    frame[IP + 6..IP + 8].copy_from_slice(&value.to_be_bytes());
    frame
}

/// A UDP datagram with `payload` bytes of data, cut into IPv4 fragments of at most `each`
/// bytes of IP payload (a multiple of 8) as a sender's stack cuts it: identification `id`
/// in all, the first holding the UDP header, more-fragments set on all but the last.
pub fn udp_fragments(
    (src, dst): ([u8; 4], [u8; 4]),
    (sport, dport): (u16, u16),
    payload: usize,
    each: usize,
    id: u16,
) -> Vec<Vec<u8>> {
    assert!(each.is_multiple_of(8), "fragments but the last carry a multiple of 8 bytes");
    let data: Vec<u8> = (0..payload).map(|i| (i % 251) as u8).collect();
    let mut whole = Vec::new();
    builder(src, dst).udp(sport, dport).write(&mut whole, &data).expect("udp frame");
    let (head, body) = whole.split_at(L4);
    body.chunks(each)
        .enumerate()
        .map(|(i, piece)| {
            let mut frame = head.to_vec();
            frame.extend_from_slice(piece);
            let total = (20 + piece.len()) as u16;
            frame[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
            frame[IP + 4..IP + 6].copy_from_slice(&id.to_be_bytes());
            let more = (i + 1) * each < body.len();
            let field = if more { 0x2000 } else { 0 } | (i * each / 8) as u16;
            frame[IP + 6..IP + 8].copy_from_slice(&field.to_be_bytes());
            frame
        })
        .collect()
}

/// Wraps the frame in an 802.1Q tag.
pub fn vlan_tagged(frame: Vec<u8>, vid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// The IPv6 address of the host in the IPv6 verdict policies (and the lab).
pub const OURS6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// Offsets in an untagged frame with a bare IPv6 header.
pub const IP6: usize = 14;
pub const L4_6: usize = 54;

/// `2001:db8::X` style addresses for tests: the 16 bytes of `text`.
pub fn v6(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>().unwrap_or_else(|_| panic!("bad IPv6 address {text:?}")).octets()
}

fn builder6(
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
    PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(src, dst, hop_limit)
}

/// A TCP segment over IPv6 with exactly `flags` set.
pub fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut frame = Vec::new();
    builder6(src, dst, 64).tcp(sport, dport, 1000, 64240).write(&mut frame, &[]).expect("tcp6 frame");
    frame[L4_6 + 13] = flags;
    frame
}

/// [`tcp_numbered`] over IPv6.
pub fn tcp6_numbered(
    src: [u8; 16],
    dst: [u8; 16],
    (sport, dport): (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
) -> Vec<u8> {
    let mut frame = tcp6(src, dst, sport, dport, flags);
    set_numbers(&mut frame, L4_6, seq, ack, window);
    frame
}

pub fn udp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    builder6(src, dst, 64).udp(sport, dport).write(&mut frame, b"query").expect("udp6 frame");
    frame
}

/// An ICMPv6 message of any type with the given hop limit, its second word `rest`.
pub fn icmp6(
    src: [u8; 16],
    dst: [u8; 16],
    kind: u8,
    hop_limit: u8,
    rest: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::new();
    builder6(src, dst, hop_limit).icmpv6_raw(kind, 0, rest).write(&mut frame, payload).expect("icmpv6 frame");
    frame
}

/// An ICMPv6 echo request (128) or reply (129).
pub fn icmp6_echo(src: [u8; 16], dst: [u8; 16], request: bool, id: u16) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    icmp6(src, dst, if request { 128 } else { 129 }, 64, [a, b, 0, 1], b"ping")
}

/// A neighbour solicitation for `target` (RFC 4861: hop limit 255), from `src` to `dst`.
pub fn neighbour_solicitation(src: [u8; 16], dst: [u8; 16], target: [u8; 16], hop_limit: u8) -> Vec<u8> {
    icmp6(src, dst, 135, hop_limit, [0; 4], &target)
}

/// An ICMPv6 error from `src` to `dst` quoting `about` (a frame) from its IPv6 header on.
pub fn icmp6_error(src: [u8; 16], dst: [u8; 16], kind: u8, about: &[u8]) -> Vec<u8> {
    let rest = if kind == 2 { 1280u32.to_be_bytes() } else { [0; 4] };
    icmp6(src, dst, kind, 64, rest, &about[IP6..])
}

/// Inserts IPv6 extension headers (next-header numbers, each with `len` 8-byte units
/// beyond the first, or for AH 4-byte words beyond the first two) after the fixed header,
/// chaining their next-header fields and fixing the payload length. A fragment header
/// (44) gets `fragment_field` as its offset-and-M word.
pub fn with_extension_headers(mut frame: Vec<u8>, headers: &[(u8, u8)], fragment_field: u16) -> Vec<u8> {
    let mut next = frame[IP6 + 6];
    let mut bytes = Vec::new();
    for &(kind, len) in headers.iter().rev() {
        let mut header = match kind {
            44 => {
                let mut h = vec![next, 0];
                h.extend_from_slice(&fragment_field.to_be_bytes());
                h.extend_from_slice(&[0, 0, 0x12, 0x34]);
                h
            }
            51 => {
                let mut h = vec![next, len];
                h.resize((usize::from(len) + 2) * 4, 0);
                h
            }
            _ => {
                let mut h = vec![next, len];
                // PadN options filling the header.
                let size = (usize::from(len) + 1) * 8;
                h.extend_from_slice(&[1, (size - 4) as u8]);
                h.resize(size, 0);
                h
            }
        };
        header.extend_from_slice(&bytes);
        bytes = header;
        next = kind;
    }
    frame[IP6 + 6] = next;
    let payload = u16::from_be_bytes([frame[IP6 + 4], frame[IP6 + 5]]) + bytes.len() as u16;
    frame[IP6 + 4..IP6 + 6].copy_from_slice(&payload.to_be_bytes());
    frame.splice(L4_6..L4_6, bytes);
    frame
}
