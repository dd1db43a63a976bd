//! `[dns] learn`: what a DNS answer the filter held for `serve` says of the names, and the
//! frame made ready to hand back.
//!
//! The filter holds an answer from UDP port 53 on a tracked flow: the host asked that
//! resolver, from that port. Only a well-formed response without error, whose checksum
//! holds, is read: its question's name, the names its CNAMEs lead through, and the A and
//! AAAA records of those names, valid for the least TTL of the chain. And it teaches only
//! from a resolver the policy names ([`names_resolver`]).
use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice, checksum::Sum16BitWords};
use firewall_common::{DNS_PORT, Direction, PROTO_UDP};
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{Name, RData},
};

use crate::policy::{Policy, Service};

/// What one held answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    /// The names it answers, as a policy writes them (lower case, no final dot): the
    /// question's, then each its CNAMEs lead to.
    pub names: Vec<String>,
    /// The addresses of the last of them, in the answer's order.
    pub addrs: Vec<IpAddr>,
    /// The least TTL of the records that led to them, in seconds.
    pub ttl: u32,
    /// The resolver that sent it.
    pub server: IpAddr,
}

/// Whether `policy` names `server` as a DNS server: an outbound rule for UDP port 53
/// lists it, as an address or inside a prefix it writes. Not a rule for any peer (nor a
/// prefix of length 0): with one, a local user could ask a server of theirs about a name
/// of the policy, and teach it any address.
pub fn names_resolver(policy: &Policy, server: IpAddr) -> bool {
    let dns = |s: &Service| match *s {
        Service::Port { protocol, port } => protocol == PROTO_UDP && port == DNS_PORT,
        Service::Range { protocol, first, last } => {
            protocol == PROTO_UDP && (first..=last).contains(&DNS_PORT)
        }
        Service::Icmp { .. } => false,
    };
    policy
        .rules
        .iter()
        .filter(|rule| rule.direction == Direction::Out && rule.services.iter().any(dns))
        .any(|rule| rule.peers.iter().any(|p| p.len > 0 && p.contains(server)))
}

/// The state of a held frame's UDP checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// It holds (or, IPv4's 0, there is none).
    Holds,
    /// It was left for the device to finish (a local sender's offload: a veth peer, a
    /// VM's virtio-net), and is now finished: the stack the frame goes back to would
    /// otherwise find it wrong.
    Finished,
    /// It is wrong: the frame goes back as it came, for the stack to drop, and teaches
    /// nothing.
    Wrong,
}

/// Checks the UDP checksum of `frame` (Ethernet on), finishing one a sender left partial:
/// the pseudo-header's sum alone, not complemented, as Linux writes it for the device to
/// add the rest. `None` for a frame that is not UDP over IP.
pub fn check_checksum(frame: &mut [u8]) -> Option<Checksum> {
    let (offset, field, full, partial) = {
        let packet = SlicedPacket::from_ethernet(frame).ok()?;
        let Some(TransportSlice::Udp(udp)) = &packet.transport else {
            return None;
        };
        let header = udp.to_header();
        let payload = udp.payload();
        let length = header.length.to_be_bytes();
        let (full, pseudo) = match packet.net.as_ref()? {
            NetSlice::Ipv4(ip) => {
                if header.checksum == 0 {
                    return Some(Checksum::Holds);
                }
                let (src, dst) = (ip.header().source(), ip.header().destination());
                let pseudo = Sum16BitWords::new().add_4bytes(src).add_4bytes(dst).add_2bytes([0, 17]);
                (header.calc_checksum_ipv4_raw(src, dst, payload).ok()?, pseudo.add_2bytes(length))
            }
            NetSlice::Ipv6(ip) => {
                let (src, dst) = (ip.header().source(), ip.header().destination());
                let pseudo = Sum16BitWords::new().add_16bytes(src).add_16bytes(dst).add_2bytes([0, 17]);
                (header.calc_checksum_ipv6_raw(src, dst, payload).ok()?, pseudo.add_2bytes(length))
            }
        };
        let offset = udp.slice().as_ptr() as usize - frame.as_ptr() as usize + 6;
        // The sum's bytes as the packet carries them, read as the header's field is.
        (offset, header.checksum, full, u16::from_be_bytes((!pseudo.ones_complement()).to_ne_bytes()))
    };
    Some(if field == full {
        Checksum::Holds
    } else if field == partial {
        frame[offset..offset + 2].copy_from_slice(&full.to_be_bytes());
        Checksum::Finished
    } else {
        Checksum::Wrong
    })
}

/// What `frame`, a held answer, says; `None` for anything but a well-formed UDP DNS
/// response without error that has addresses.
pub fn read(frame: &[u8]) -> Option<Learned> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(TransportSlice::Udp(udp)) = &packet.transport else {
        return None;
    };
    let server: IpAddr = match packet.net.as_ref()? {
        NetSlice::Ipv4(ip) => ip.header().source_addr().into(),
        NetSlice::Ipv6(ip) => ip.header().source_addr().into(),
    };
    let message = Message::from_vec(udp.payload()).ok()?;
    if message.metadata.message_type != MessageType::Response
        || message.metadata.response_code != ResponseCode::NoError
    {
        return None;
    }
    let [query] = message.queries.as_slice() else {
        return None;
    };
    // The chain: the question's name, then each CNAME's target, as long as the answer
    // section leads on (at most as many steps as it has records: no loop).
    let mut chain = vec![query.name.to_lowercase()];
    let mut ttl = u32::MAX;
    for _ in 0..message.answers.len() {
        let last = chain.last().expect("the question's name");
        let next = message.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name.to_lowercase() == *last => Some((target.0.to_lowercase(), r.ttl)),
            _ => None,
        });
        let Some((target, record_ttl)) = next else {
            break;
        };
        if chain.contains(&target) {
            break;
        }
        ttl = ttl.min(record_ttl);
        chain.push(target);
    }
    let last = chain.last().expect("the question's name");
    let mut addrs = Vec::new();
    for record in message.answers.iter().filter(|r| r.name.to_lowercase() == *last) {
        let addr = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        ttl = ttl.min(record.ttl);
        addrs.push(addr);
    }
    if addrs.is_empty() {
        return None;
    }
    Some(Learned { names: chain.iter().map(policy_name).collect(), addrs, ttl, server })
}

/// A DNS name as a policy writes it.
fn policy_name(name: &Name) -> String {
    crate::policy::canonical_name(&name.to_ascii())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::{Message, MessageType, OpCode, Query},
        rr::{Name, RData, Record, RecordType, rdata},
    };

    use super::*;

    fn response(question: &str, answers: Vec<Record>) -> Vec<u8> {
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(question).unwrap(), RecordType::A));
        message.add_answers(answers);
        message.to_vec().unwrap()
    }

    fn frame(payload: &[u8], v6: bool) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]);
        let builder = if v6 {
            builder.ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 53],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                64,
            )
        } else {
            builder.ipv4([192, 0, 2, 53], [192, 0, 2, 1], 64)
        };
        let mut out = Vec::new();
        builder.udp(53, 40_000).write(&mut out, payload).unwrap();
        out
    }

    fn a(name: &str, ttl: u32, addr: [u8; 4]) -> Record {
        Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, RData::A(rdata::A(Ipv4Addr::from(addr))))
    }

    fn cname(name: &str, ttl: u32, target: &str) -> Record {
        let target = Name::from_ascii(target).unwrap();
        Record::from_rdata(Name::from_ascii(name).unwrap(), ttl, RData::CNAME(rdata::CNAME(target)))
    }

    #[test]
    fn an_answer_teaches_the_names_its_cnames_lead_through_with_the_least_ttl() {
        let payload = response(
            "API.Example.com.",
            vec![
                cname("api.example.com.", 300, "edge.cdn.example.net."),
                a("edge.cdn.example.net.", 20, [198, 51, 100, 7]),
                a("edge.cdn.example.net.", 20, [198, 51, 100, 8]),
                a("elsewhere.example.org.", 20, [203, 0, 113, 1]),
            ],
        );
        let learned = read(&frame(&payload, false)).expect("an answer");
        assert_eq!(learned.names, ["api.example.com", "edge.cdn.example.net"]);
        assert_eq!(
            learned.addrs,
            [IpAddr::from([198, 51, 100, 7]), IpAddr::from([198, 51, 100, 8])],
            "the chain's last name's records alone"
        );
        assert_eq!(learned.ttl, 20);
        assert_eq!(learned.server, IpAddr::from([192, 0, 2, 53]));
    }

    #[test]
    fn only_a_resolver_the_policy_names_teaches() {
        let policy = |peers: &str| {
            let text = format!(
                "[host]\naddress = \"192.0.2.1\"\n[[rule]]\nname = \"dns\"\ndirection = \"out\"\nprotocols = [\"udp\"]\nport = 53\npeers = {peers}\n"
            );
            crate::policy::parse(&text, std::path::Path::new("t.toml")).unwrap()
        };
        let server = IpAddr::from([192, 0, 2, 53]);
        assert!(names_resolver(&policy("[\"192.0.2.53\"]"), server));
        assert!(names_resolver(&policy("[\"192.0.2.0/24\"]"), server));
        assert!(!names_resolver(&policy("[\"192.0.2.54\"]"), server));
        assert!(!names_resolver(&policy("\"any\""), server), "any server: a local user's own");
    }

    #[test]
    fn queries_errors_and_answers_without_addresses_teach_nothing() {
        let mut query = Message::new(7, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(Name::from_ascii("a.example.com.").unwrap(), RecordType::A));
        assert_eq!(read(&frame(&query.to_vec().unwrap(), false)), None, "a query");
        let mut refused =
            Message::from_vec(&response("a.example.com.", vec![a("a.example.com.", 5, [192, 0, 2, 9])]))
                .unwrap();
        refused.metadata.response_code = ResponseCode::Refused;
        assert_eq!(read(&frame(&refused.to_vec().unwrap(), false)), None, "an error");
        assert_eq!(read(&frame(&response("a.example.com.", vec![]), false)), None, "no address");
        assert_eq!(read(&frame(b"not dns", false)), None, "not DNS");
        let looping = response(
            "a.example.com.",
            vec![cname("a.example.com.", 5, "b.example.com."), cname("b.example.com.", 5, "a.example.com.")],
        );
        assert_eq!(read(&frame(&looping, false)), None, "a CNAME loop");
    }

    #[test]
    fn a_partial_checksum_is_finished_and_a_wrong_one_refused() {
        for v6 in [false, true] {
            let payload = response("a.example.com.", vec![a("a.example.com.", 5, [192, 0, 2, 9])]);
            let good = frame(&payload, v6);
            let at = good.len() - payload.len() - 2;
            let mut frame = good.clone();
            assert_eq!(check_checksum(&mut frame), Some(Checksum::Holds));
            // Linux's CHECKSUM_PARTIAL: the pseudo-header's sum, not complemented.
            let (src, dst, len): (&[u8], &[u8], [u8; 2]) = if v6 {
                (&good[22..38], &good[38..54], ((payload.len() + 8) as u16).to_be_bytes())
            } else {
                (&good[26..30], &good[30..34], ((payload.len() + 8) as u16).to_be_bytes())
            };
            let words = [src, dst, &[0, 17], &len].concat();
            let mut sum: u32 = words.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let partial = sum as u16;
            frame[at..at + 2].copy_from_slice(&partial.to_be_bytes());
            assert_eq!(check_checksum(&mut frame), Some(Checksum::Finished), "v6 {v6}");
            assert_eq!(frame, good, "finished as the sender would have");
            frame[at] ^= 0x40;
            assert_eq!(check_checksum(&mut frame), Some(Checksum::Wrong), "v6 {v6}");
        }
    }
}
