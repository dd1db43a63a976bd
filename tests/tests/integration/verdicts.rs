//! Verdicts of the real programs, loaded with the seed's policy, on crafted frames
//! (BPF_PROG_TEST_RUN): every rule admits what it should and nothing else, every
//! anti-spoof entry and INVALID case drops and is counted where the listing says, and of
//! what is not IP only the link's own protocols pass.
use firewall_common::{Builtin, Chain, Line, builtin_counter};
use tests::{
    frames::*,
    harness::{TestFilter, Verdict::*},
};

const SSH_PEER: [u8; 4] = [203, 0, 113, 7];
const STRANGER: [u8; 4] = [203, 0, 113, 99];
const DNS: [u8; 4] = [198, 51, 100, 53];
const REPO: [u8; 4] = [203, 0, 113, 80];

/// One row: a frame in one direction, the verdict, the rule whose line counts it
/// (`None`: the chain's policy).
struct Case {
    what: &'static str,
    egress: bool,
    frame: Vec<u8>,
    pass: bool,
}

fn inbound(what: &'static str, frame: Vec<u8>, pass: bool) -> Case {
    Case { what, egress: false, frame, pass }
}

fn outbound(what: &'static str, frame: Vec<u8>, pass: bool) -> Case {
    Case { what, egress: true, frame, pass }
}

/// For each rule of the seed: a frame it admits and a frame it does not.
fn seed_rule_cases() -> Vec<(&'static str, Case, Case)> {
    let o = OURS;
    vec![
        (
            "dns",
            outbound("udp query to a DNS server", udp(o, DNS, 40000, 53), true),
            outbound("udp query to another server", udp(o, [198, 51, 100, 99], 40000, 53), false),
        ),
        (
            "ntp",
            outbound("ntp to an NTP server", udp(o, [198, 51, 100, 123], 123, 123), true),
            outbound("ntp to a stranger", udp(o, [198, 51, 100, 99], 123, 123), false),
        ),
        (
            "repo",
            outbound("http to the mirror", tcp(o, REPO, 40000, 80, SYN), true),
            outbound("http to a stranger", tcp(o, STRANGER, 40000, 80, SYN), false),
        ),
        (
            "web-out",
            outbound("http to an allowed web server", tcp(o, [203, 0, 113, 90], 40001, 80, SYN), true),
            outbound("https to it (only 80 is allowed)", tcp(o, [203, 0, 113, 90], 40001, 443, SYN), false),
        ),
        (
            "ssh-in",
            inbound("ssh from a listed peer", tcp(SSH_PEER, o, 40000, 122, SYN), true),
            inbound("ssh from a stranger", tcp(STRANGER, o, 40000, 122, SYN), false),
        ),
        (
            "ssh-out",
            outbound("ssh to OTHERIP", tcp(o, [203, 0, 113, 22], 40002, 22, SYN), true),
            outbound("ssh to an SSH peer (only in is allowed)", tcp(o, SSH_PEER, 40002, 22, SYN), false),
        ),
        (
            "mail-out",
            outbound("smtp to the smart host", tcp(o, [198, 51, 100, 25], 40003, 25, SYN), true),
            outbound("smtp to the inbound relay", tcp(o, [203, 0, 113, 25], 40003, 25, SYN), false),
        ),
        (
            "mail-in",
            inbound("smtp from the relay", tcp([203, 0, 113, 25], o, 40004, 25, SYN), true),
            inbound(
                "smtp from the smart host (only out is allowed)",
                tcp([198, 51, 100, 25], o, 40004, 25, SYN),
                false,
            ),
        ),
        (
            "web-in",
            inbound("https from anyone", tcp(STRANGER, o, 40005, 443, SYN), true),
            inbound("port 8080 from anyone", tcp(STRANGER, o, 40005, 8080, SYN), false),
        ),
        (
            "ping-in",
            inbound("echo request from anyone", icmp_echo(STRANGER, o, true, 1), true),
            inbound("an echo reply nobody asked for", icmp_echo(STRANGER, o, false, 1), false),
        ),
        (
            "ping-out",
            outbound("echo request to anyone", icmp_echo(o, STRANGER, true, 2), true),
            outbound("an echo reply nobody asked for", icmp_echo(o, STRANGER, false, 2), false),
        ),
        (
            "unreachable-in",
            inbound("fragmentation needed", icmp(STRANGER, o, 3, 4), true),
            inbound("a redirect", icmp(STRANGER, o, 5, 0), false),
        ),
        (
            "unreachable-out",
            outbound("port unreachable", icmp(o, STRANGER, 3, 3), true),
            outbound("time exceeded", icmp(o, STRANGER, 11, 0), false),
        ),
    ]
}

#[test]
fn every_seed_rule_admits_its_traffic_and_nothing_else() {
    let mut f = TestFilter::tight();
    assert_eq!(f.policy.rules.len(), seed_rule_cases().len(), "a case for every rule of examples/tight.toml");
    for (rule, admitted, refused) in seed_rule_cases() {
        for case in [admitted, refused] {
            let chain = if case.egress { Chain::Output } else { Chain::Input };
            let own_line = f.rule_packets(rule, Line::New);
            let policy = f.builtin_packets(chain, Builtin::Policy);
            let verdict = if case.egress { f.egress(&case.frame) } else { f.ingress(&case.frame) };
            assert_eq!(verdict, if case.pass { Pass } else { Drop }, "{rule}: {}", case.what);
            if case.pass {
                assert_eq!(f.rule_packets(rule, Line::New), own_line + 1, "{rule}: counted on its line");
                let bytes = f.counter(firewall_common::rule_counter(f.rule(rule), Line::New)).bytes;
                assert!(bytes >= case.frame.len() as u64, "{rule}: bytes counted");
            } else {
                assert_eq!(
                    f.builtin_packets(chain, Builtin::Policy),
                    policy + 1,
                    "{rule}: {} counted on the policy",
                    case.what
                );
            }
        }
    }
}

#[test]
fn every_antispoof_entry_drops_and_counts_on_its_own_line() {
    let mut f = TestFilter::tight();
    let plan = firewall_user::compile::plan(&f.policy, &f.ids);
    for (prefix, counter) in plan.antispoof_sources {
        // An address inside the prefix, sending what web-in (open to anyone) would otherwise admit.
        let std::net::IpAddr::V4(src) = prefix.addr else { panic!("tight.toml has no IPv6") };
        let mut src = src.octets();
        if prefix.len < 32 {
            src[3] |= 1;
        }
        let frame = tcp(src, OURS, 40000, 80, SYN);
        assert_eq!(f.ingress(&frame), Drop, "source {prefix}");
        assert_eq!(f.packets(counter), 1, "source {prefix}: its counter");
        assert_eq!(f.counter(counter).bytes, frame.len() as u64);
    }
    for (prefix, counter) in plan.antispoof_destinations {
        let std::net::IpAddr::V4(dst) = prefix.addr else { panic!("tight.toml has no IPv6") };
        let mut dst = dst.octets();
        if prefix.len < 32 {
            dst[3] |= 1;
        }
        assert_eq!(f.ingress(&tcp(SSH_PEER, dst, 40000, 122, SYN)), Drop, "destination {prefix}");
        assert_eq!(f.packets(counter), 1, "destination {prefix}: its counter");
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 0);
}

/// Most addresses are judged by their /8's cell in `ANTISPOOF_CELLS`, without the tries: a
/// reload that changes the lists changes the cells with them.
#[test]
fn the_antispoof_cells_answer_for_whole_slash_eights_and_follow_a_reload() {
    use firewall_common::{AntispoofList, CELL_ASK, CELL_NONE, antispoof_cell};
    use firewall_user::policy::Prefix;
    let mut f = TestFilter::tight();
    let cell = |f: &TestFilter, octet: u8| {
        let cells = f.loaded.maps.antispoof_cells.as_ref().expect("the cells' map");
        cells.get(&antispoof_cell(AntispoofList::Sources, false, octet), 0).expect("reading a cell")
    };
    let source = |f: &TestFilter, text: &str| {
        let plan = firewall_user::compile::plan(&f.policy, &f.ids);
        plan.antispoof_sources[&Prefix::parse(text).unwrap()]
    };
    // web-in is open to anyone: what the lists do not name passes.
    let from = |src: [u8; 4]| tcp(src, OURS, 40000, 80, SYN);
    // 10.0.0.0/8 is a cell of its own; 172.16.0.0/12 lies inside its cell, beside addresses
    // it does not hold; no entry lies in 11.0.0.0/8.
    assert_eq!(cell(&f, 10), source(&f, "10.0.0.0/8"));
    assert_eq!(cell(&f, 172), CELL_ASK);
    assert_eq!(cell(&f, 11), CELL_NONE);
    assert_eq!(f.ingress(&from([10, 1, 2, 3])), Drop);
    assert_eq!(f.packets(source(&f, "10.0.0.0/8")), 1);
    assert_eq!(f.ingress(&from([172, 20, 0, 1])), Drop);
    assert_eq!(f.ingress(&from([172, 32, 0, 1])), Pass);
    assert_eq!(f.ingress(&from([11, 1, 2, 3])), Pass);

    // 11.0.0.0/8 listed; 10.0.0.0/8 narrowed to 10.9.0.0/16; 172.16.0.0/12 gone.
    let mut policy = f.policy.clone();
    policy.antispoof_sources.retain(|p| !["10.0.0.0/8", "172.16.0.0/12"].contains(&p.to_string().as_str()));
    policy.antispoof_sources.extend(["11.0.0.0/8", "10.9.0.0/16"].map(|p| Prefix::parse(p).unwrap()));
    f.reload(policy);
    assert_eq!(cell(&f, 11), source(&f, "11.0.0.0/8"));
    assert_eq!(cell(&f, 10), CELL_ASK);
    assert_eq!(cell(&f, 172), CELL_NONE);
    assert_eq!(f.ingress(&from([11, 1, 2, 3])), Drop);
    assert_eq!(f.packets(source(&f, "11.0.0.0/8")), 1);
    assert_eq!(f.ingress(&from([10, 9, 1, 1])), Drop);
    assert_eq!(f.ingress(&from([10, 1, 2, 3])), Pass);
    assert_eq!(f.ingress(&from([172, 20, 0, 1])), Pass);
}

/// Each service's bits in `SERVICE_SKIPS` say which allow-list lookups its packets skip:
/// ssh-in lists peers and no `any`, web-in `any` and no peers, a port no rule serves
/// neither. A reload that opens ssh-in to anyone and narrows web-in to one peer turns the
/// bits with the rules, and the verdicts follow.
#[test]
fn the_service_skips_follow_the_rules_and_a_reload() {
    use firewall_common::{Direction, PROTO_TCP, SKIP_ANYONE, SKIP_PEERS, service_skip_slot};
    use firewall_user::policy::Prefix;
    let mut f = TestFilter::tight();
    let skips = |f: &TestFilter, port: u16| {
        let map = f.loaded.maps.service_skips.as_ref().expect("the skips' map");
        let (index, shift) = service_skip_slot(Direction::In as u8, PROTO_TCP, port).expect("a tcp port");
        (map.get(&index, 0).expect("reading the skips") >> shift) & (SKIP_PEERS | SKIP_ANYONE)
    };
    let syn = |from: [u8; 4], port: u16| tcp(from, OURS, 40000, port, SYN);
    assert_eq!(skips(&f, 122), SKIP_ANYONE, "ssh-in: peers, no any");
    assert_eq!(skips(&f, 80), SKIP_PEERS, "web-in: any, no peers");
    assert_eq!(skips(&f, 9999), SKIP_PEERS | SKIP_ANYONE, "no rule");
    assert_eq!(f.ingress(&syn(SSH_PEER, 122)), Pass);
    assert_eq!(f.ingress(&syn(STRANGER, 122)), Drop);
    assert_eq!(f.ingress(&syn(STRANGER, 80)), Pass);
    assert_eq!(f.ingress(&syn(STRANGER, 9999)), Drop);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 2);

    let mut policy = f.policy.clone();
    for rule in &mut policy.rules {
        match rule.name.as_str() {
            "ssh-in" => rule.peers.push(Prefix::ANY),
            "web-in" => rule.peers = vec![Prefix::parse("203.0.113.7").unwrap()],
            _ => {}
        }
    }
    f.reload(policy);
    assert_eq!(skips(&f, 122), 0, "ssh-in: peers and any");
    assert_eq!(skips(&f, 80), SKIP_ANYONE, "web-in: a peer, no any");
    assert_eq!(skips(&f, 9999), SKIP_PEERS | SKIP_ANYONE, "still no rule");
    assert_eq!(f.ingress(&syn(STRANGER, 122)), Pass, "ssh-in open to anyone");
    assert_eq!(f.ingress(&tcp(STRANGER, OURS, 40001, 80, SYN)), Drop, "web-in narrowed");
    assert_eq!(f.ingress(&syn(SSH_PEER, 80)), Pass, "web-in's peer");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 3);
}

#[test]
fn frames_truncated_at_every_length_are_invalid() {
    let mut f = TestFilter::tight();
    let wholes = [
        ("tcp", tcp(SSH_PEER, OURS, 40000, 122, SYN)),
        ("tcp with options", with_ip_options(tcp(SSH_PEER, OURS, 40000, 122, SYN), 3)),
        ("udp", udp(DNS, OURS, 53, 40000)),
        ("icmp", icmp_echo(STRANGER, OURS, true, 9)),
    ];
    // The DNS answer needs its query first.
    assert_eq!(f.egress(&udp(OURS, DNS, 40000, 53)), Pass);
    let mut expected = 0;
    for (what, whole) in wholes {
        assert_eq!(f.ingress(&whole), Pass, "{what}: whole");
        // Shorter than an Ethernet header, the kernel hands no frame to XDP at all (its
        // test runner refuses them too); from there on, every length.
        for len in 0..14 {
            assert!(f.try_ingress(&whole[..len]).is_err(), "the runner took a {len}-byte frame");
        }
        for len in 14..whole.len() {
            assert_eq!(f.ingress(&whole[..len]), Drop, "{what} cut to {len} bytes, ingress");
            expected += 1;
            let out =
                if what == "udp" { udp(OURS, DNS, 40000, 53) } else { tcp(OURS, SSH_PEER, 122, 40000, ACK) };
            // The skb test runner refuses frames without a whole IPv4 header (EINVAL);
            // the stack never sends such frames either.
            if len >= L4 && len < out.len() {
                assert_eq!(f.egress(&out[..len]), Drop, "{what} cut to {len} bytes, egress");
            }
        }
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Invalid), expected);
    assert!(f.builtin_packets(Chain::Output, Builtin::Invalid) > 0);
}

#[test]
fn ip_options_are_skipped_by_their_length() {
    let mut f = TestFilter::tight();
    for words in 1..=10 {
        let frame = with_ip_options(tcp(SSH_PEER, OURS, 40000 + words as u16, 122, SYN), words);
        assert_eq!(f.ingress(&frame), Pass, "ssh with {} bytes of options", words * 4);
        let frame = with_ip_options(tcp(STRANGER, OURS, 40000, 122, SYN), words);
        assert_eq!(f.ingress(&frame), Drop, "a stranger with {} bytes of options", words * 4);
    }
    assert_eq!(f.rule_packets("ssh-in", Line::New), 10);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 10);

    // A header length that contradicts the frame.
    let mut short_ihl = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    short_ihl[IP] = 0x44;
    let mut long_ihl = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    long_ihl[IP] = 0x4f; // 60 bytes of header in a 40-byte datagram
    let mut not_v4 = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    not_v4[IP] = 0x65;
    let mut long_total = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    long_total[IP + 3] += 1;
    for (what, frame) in [
        ("IHL 4", short_ihl),
        ("IHL 15", long_ihl),
        ("version 6", not_v4),
        ("total length past the frame", long_total),
    ] {
        assert_eq!(f.ingress(&frame), Drop, "{what}");
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Invalid), 4);
}

#[test]
fn impossible_tcp_flag_sets_are_invalid_even_from_allowed_peers() {
    let mut f = TestFilter::tight();
    let invalid = [
        ("NULL", 0),
        ("SYN+FIN", SYN | FIN),
        ("SYN+RST", SYN | RST),
        ("FIN without ACK", FIN),
        ("PSH without ACK", PSH),
        ("URG without ACK", URG),
        ("XMAS", FIN | PSH | URG),
        ("everything", FIN | SYN | RST | PSH | ACK | URG),
        ("FIN+RST+ACK", FIN | RST | ACK),
    ];
    for (what, flags) in invalid {
        assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 40000, 122, flags)), Drop, "{what} in");
        assert_eq!(f.egress(&tcp(OURS, REPO, 40000, 80, flags)), Drop, "{what} out");
    }
    let n = invalid.len() as u64;
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::InvalidTcpFlags), n);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::InvalidTcpFlags), n);
    let valid = [
        ("SYN", SYN),
        ("SYN with ECN", SYN | 0xc0),
        ("ACK", ACK),
        ("PSH+ACK", PSH | ACK),
        ("FIN+ACK", FIN | ACK),
        ("RST", RST),
        ("RST+ACK", RST | ACK),
        ("URG+ACK", URG | ACK),
    ];
    for (i, (what, flags)) in valid.into_iter().enumerate() {
        assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 41000 + i as u16, 122, flags)), Pass, "{what}");
    }

    // A data offset below 5 words, or past the segment.
    let mut small = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    small[L4 + 12] = 0x40;
    let mut large = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    large[L4 + 12] = 0x60;
    let mut udp_len = udp(DNS, OURS, 53, 40000);
    udp_len[L4 + 5] = 100;
    for (what, frame) in [
        ("TCP offset 4", small),
        ("TCP offset past the segment", large),
        ("UDP length past the datagram", udp_len),
    ] {
        assert_eq!(f.ingress(&frame), Drop, "{what}");
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Invalid), 3);
}

#[test]
fn fragments_follow_their_first_and_nothing_else_gets_through() {
    let mut f = TestFilter::tight();
    let orphans = |f: &mut TestFilter| f.builtin_packets(Chain::Input, Builtin::FragmentOrphan);
    let invalid = |f: &mut TestFilter| f.builtin_packets(Chain::Input, Builtin::InvalidFragment);
    // A query out, its 3,000-byte answer back in three fragments: the first is the flow's
    // return, the later ones follow it, all on the rule's ESTABLISHED line.
    assert_eq!(f.egress(&udp(OURS, DNS, 40000, 53)), Pass);
    let answer = udp_fragments((DNS, OURS), (53, 40000), 3000, 1480, 7);
    assert_eq!(answer.len(), 3);
    for (i, piece) in answer.iter().enumerate() {
        assert_eq!(f.ingress(piece), Pass, "fragment {i} of the answer");
    }
    assert_eq!(f.rule_packets("dns", Line::Established), 3);
    // The host's own large query out: its rule's NEW line, all three.
    for piece in udp_fragments((OURS, DNS), (40001, 53), 3000, 1480, 8) {
        assert_eq!(f.egress(&piece), Pass);
    }
    assert_eq!(f.rule_packets("dns", Line::New), 1 + 3);

    // A later fragment alone, of a datagram to a closed port: no first passed.
    let closed = udp_fragments((STRANGER, OURS), (53, 9999), 3000, 1480, 9);
    assert_eq!(f.ingress(&closed[1]), Drop, "a later fragment alone");
    assert_eq!(orphans(&mut f), 1);
    // Its first, dropped by the policy, admits none of the rest.
    assert_eq!(f.ingress(&closed[0]), Drop, "the first to a closed port");
    assert_eq!(f.ingress(&closed[2]), Drop, "a later one after a dropped first");
    assert_eq!(orphans(&mut f), 2);
    // Of an admitted datagram: one that would overwrite what its first carried (the
    // ports the filter judged), and one past 65,535 bytes.
    let mut overlap = answer[1].clone();
    overlap[IP + 6..IP + 8].copy_from_slice(&(0x2000u16 | 1).to_be_bytes());
    assert_eq!(f.ingress(&overlap), Drop, "overlapping the first");
    let mut past = answer[2].clone();
    past[IP + 6..IP + 8].copy_from_slice(&0x1fffu16.to_be_bytes());
    assert_eq!(f.ingress(&past), Drop, "ending past 65,535 bytes");
    assert_eq!(invalid(&mut f), 2);
    // A tiny first fragment (RFC 1858): 8 bytes, too few for the TCP header it starts;
    // and a first fragment whose length is no multiple of 8 (`udp` carries 5 bytes).
    let mut tiny = fragmented(tcp(SSH_PEER, OURS, 40000, 122, SYN), true, 0);
    tiny.truncate(L4 + 8);
    tiny[IP + 2..IP + 4].copy_from_slice(&28u16.to_be_bytes());
    assert_eq!(f.ingress(&tiny), Drop, "a tiny first fragment");
    assert_eq!(f.ingress(&fragmented(udp(DNS, OURS, 53, 40000), true, 0)), Drop, "an odd length");
    assert_eq!(invalid(&mut f), 4);

    // A later fragment of the admitted answer, after its first's time: the datagram's
    // entry made older than `[conntrack] fragment_timeout`.
    let mut fragments = f.fragments();
    let entries: Vec<_> = fragments.iter().filter_map(Result::ok).collect();
    assert_eq!(entries.len(), 2, "the answer's datagram and the query's: {entries:?}");
    for (key, first) in entries {
        let stale = firewall_common::FragmentedDatagram { deadline_ns: 1, ..first };
        fragments.insert(key, stale, 0).expect("ageing an entry");
    }
    assert_eq!(f.ingress(&answer[2]), Drop, "a later fragment reused after its first's time");
    assert_eq!(orphans(&mut f), 3);

    // Don't-fragment is not a fragment.
    let mut df = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    df[IP + 6] = 0x40;
    assert_eq!(f.ingress(&df), Pass);
}

#[test]
fn arp_passes_and_ipv6_drops_both_ways() {
    let mut f = TestFilter::tight();
    assert_eq!(f.ingress(&arp(OURS)), Pass);
    assert_eq!(f.egress(&arp(SSH_PEER)), Pass);
    assert_eq!(f.ingress(&vlan_tagged(arp(OURS), 7)), Pass, "ARP in a VLAN");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::NonIp), 2);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::NonIp), 1);
    assert_eq!(f.ingress(&ipv6_tcp()), Drop);
    assert_eq!(f.egress(&ipv6_tcp()), Drop);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Ipv6), 1);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Ipv6), 1);
    // VLAN-tagged IP is judged like any other.
    assert_eq!(f.ingress(&vlan_tagged(tcp(SSH_PEER, OURS, 40000, 122, SYN), 7)), Pass);
    assert_eq!(f.ingress(&vlan_tagged(tcp(STRANGER, OURS, 40000, 122, SYN), 7)), Drop);
}

/// `frame` in VLAN tags of these TPIDs (outermost first), all priority tags (VLAN 0).
fn tagged(frame: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for tpid in tpids {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&frame[12..]);
    out
}

#[test]
fn the_link_s_own_protocols_pass_and_nothing_else_the_parser_does_not_read() {
    let mut f = TestFilter::tight();
    // A datagram to a port no rule opens, under other ethertypes: what it says it carries
    // decides, both ways.
    let datagram = udp(STRANGER, OURS, 40000, 9999);
    let as_type = |ethertype: u16| {
        let mut frame = datagram.clone();
        frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        frame
    };
    let link = [
        ("ARP", 0x0806),
        ("LLDP", 0x88cc),
        ("802.1X", 0x888e),
        ("slow protocols (LACP)", 0x8809),
        ("an 802.3 length of 1500 (LLC)", 0x05dc),
        ("an 802.3 length of 0", 0),
    ];
    for (what, ethertype) in link {
        assert_eq!(f.ingress(&as_type(ethertype)), Pass, "{what} in");
        assert_eq!(f.egress(&as_type(ethertype)), Pass, "{what} out");
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::NonIp), link.len() as u64);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::NonIp), link.len() as u64);
    let other = [
        ("1501, neither a length nor an ethertype", 0x05dd),
        ("0x0600 (XNS), the first ethertype", 0x0600),
        ("MPLS", 0x8847),
        ("MPLS multicast", 0x8848),
        ("PPPoE discovery", 0x8863),
        ("PPPoE session", 0x8864),
        ("the old QinQ TPID 0x9100", 0x9100),
        ("IPX", 0x8137),
        ("0xffff", 0xffff),
    ];
    for (what, ethertype) in other {
        assert_eq!(f.ingress(&as_type(ethertype)), Drop, "{what} in");
        assert_eq!(f.egress(&as_type(ethertype)), Drop, "{what} out");
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::OtherEthertype), other.len() as u64);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::OtherEthertype), other.len() as u64);

    // Two tags of either TPID are read: the datagram meets the policy, ARP passes, MPLS
    // drops. A third tag, of either TPID, however many follow, is invalid.
    let (q, ad) = (0x8100, 0x88a8);
    let policy = f.builtin_packets(Chain::Input, Builtin::Policy);
    for tags in [&[q][..], &[ad, q], &[ad, ad], &[q, q]] {
        assert_eq!(f.ingress(&tagged(&datagram, tags)), Drop, "{tags:x?}");
        assert_eq!(f.ingress(&tagged(&as_type(0x0806), tags)), Pass, "ARP in {tags:x?}");
        assert_eq!(f.ingress(&tagged(&as_type(0x8847), tags)), Drop, "MPLS in {tags:x?}");
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), policy + 4);
    let deep: [&[u16]; 5] = [&[q, q, q], &[ad, ad, q], &[ad, q, ad], &[q, q, q, q], &[ad; 5]];
    for tags in deep {
        assert_eq!(f.ingress(&tagged(&datagram, tags)), Drop, "{tags:x?} in");
        assert_eq!(f.egress(&tagged(&datagram, tags)), Drop, "{tags:x?} out");
        assert_eq!(f.ingress(&tagged(&as_type(0x0806), tags)), Drop, "ARP in {tags:x?}");
    }
    // Even when the frame ends just after the third tag's TPID.
    assert_eq!(f.ingress(&tagged(&datagram, &[q, q, q])[..22]), Drop, "cut after the third TPID");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Invalid), 2 * deep.len() as u64 + 1);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Invalid), deep.len() as u64);
}

#[test]
fn other_addresses_and_protocols_meet_the_policy() {
    let mut f = TestFilter::tight();
    // Not to our address: the FORWARD chain.
    assert_eq!(f.ingress(&tcp(SSH_PEER, [198, 51, 100, 2], 40000, 122, SYN)), Drop);
    assert_eq!(f.ingress(&tcp(SSH_PEER, [198, 51, 100, 2], 40000, 122, SYN | FIN)), Drop);
    assert_eq!(f.builtin_packets(Chain::Forward, Builtin::Policy), 1);
    assert_eq!(f.builtin_packets(Chain::Forward, Builtin::InvalidTcpFlags), 1);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 0);
    // Leaving with another source: outbound spoofing.
    assert_eq!(f.egress(&udp([198, 51, 100, 2], DNS, 40000, 53)), Drop);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::SpoofedSource), 1);
    // A protocol no rule names.
    assert_eq!(f.ingress(&other_protocol(SSH_PEER, OURS)), Drop);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 1);
}

#[test]
fn returns_pass_only_on_the_exact_reversed_tuple() {
    let mut f = TestFilter::tight();
    // A DNS query out, its answer back.
    assert_eq!(f.egress(&udp(OURS, DNS, 40000, 53)), Pass);
    assert_eq!(f.ingress(&udp(DNS, OURS, 53, 40000)), Pass, "the answer");
    assert_eq!(f.rule_packets("dns", Line::Established), 1);
    // The same server, spoofing: to another local port, or from another port.
    assert_eq!(f.ingress(&udp(DNS, OURS, 53, 40001)), Drop, "to another port");
    assert_eq!(f.ingress(&udp(DNS, OURS, 54, 40000)), Drop, "from another port");
    assert_eq!(f.ingress(&tcp(DNS, OURS, 53, 40000, ACK)), Drop, "as TCP");
    assert_eq!(f.ingress(&udp([198, 51, 100, 54], OURS, 53, 40000)), Drop, "from the other DNS server");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 4);

    // TCP out: the SYN-ACK returns; a bare SYN from the server is a new connection.
    assert_eq!(f.egress(&tcp(OURS, REPO, 40010, 80, SYN)), Pass);
    assert_eq!(f.ingress(&tcp(REPO, OURS, 80, 40010, SYN | ACK)), Pass);
    assert_eq!(f.ingress(&tcp(REPO, OURS, 80, 40010, SYN)), Drop, "a bare SYN never rides a flow");
    assert_eq!(f.egress(&tcp(OURS, REPO, 40010, 80, ACK)), Pass);
    assert_eq!(f.rule_packets("repo", Line::New), 2);
    assert_eq!(f.rule_packets("repo", Line::Established), 1);

    // TCP in: replies go out only to the peer's port.
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 40020, 122, SYN)), Pass);
    assert_eq!(f.egress(&tcp(OURS, SSH_PEER, 122, 40020, SYN | ACK)), Pass);
    assert_eq!(f.egress(&tcp(OURS, SSH_PEER, 122, 40021, SYN | ACK)), Drop, "to another port");
    assert_eq!(f.egress(&tcp(OURS, STRANGER, 122, 40020, SYN | ACK)), Drop, "to a stranger");
    assert_eq!(f.rule_packets("ssh-in", Line::Established), 1);
}

#[test]
fn a_session_met_mid_stream_is_picked_up() {
    // The lock-out trap: an SSH session older than the filter sends an ACK first.
    let mut f = TestFilter::tight();
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 50000, 122, PSH | ACK)), Pass);
    assert_eq!(f.egress(&tcp(OURS, SSH_PEER, 122, 50000, ACK)), Pass);
    assert_eq!(f.rule_packets("ssh-in", Line::New), 1);
    assert_eq!(f.rule_packets("ssh-in", Line::Established), 1);

    // Or our side speaks first (the session prints `firewall up`'s output): an ACK from
    // the service's port to a peer the rule admits is the session's return traffic.
    assert_eq!(f.egress(&tcp(OURS, SSH_PEER, 122, 50001, PSH | ACK)), Pass);
    assert_eq!(f.rule_packets("ssh-in", Line::Established), 2);
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 50001, 122, ACK)), Pass, "and the peer's answer");
    assert_eq!(f.rule_packets("ssh-in", Line::New), 2);
    // Not to a stranger, not a bare SYN, not from a port no inbound rule serves.
    assert_eq!(f.egress(&tcp(OURS, STRANGER, 122, 50000, PSH | ACK)), Drop);
    assert_eq!(f.egress(&tcp(OURS, SSH_PEER, 122, 50002, SYN)), Drop);
    assert_eq!(f.egress(&tcp(OURS, SSH_PEER, 2222, 50000, ACK)), Drop);
    // Ingress keeps to the exact tuple: the mirror's address and port 80 reach nothing.
    assert_eq!(f.ingress(&tcp(REPO, OURS, 80, 50003, ACK)), Drop);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Policy), 3);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 1);
}

/// `[conntrack] tcp_loose = false` (a script's `-p tcp ! --syn -m state --state NEW -j
/// DROP`): a flow opens with a bare SYN only; the host's own answers of a session older than
/// the filter are still picked up.
#[test]
fn without_tcp_loose_only_a_bare_syn_opens_a_flow() {
    let text = tests::lab::tight_text().replace("[conntrack]", "[conntrack]\ntcp_loose = false");
    assert!(text.contains("tcp_loose = false"), "examples/tight.toml has a [conntrack] table");
    let mut f = TestFilter::new(&text);
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 50000, 122, PSH | ACK)), Drop, "mid-stream");
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 50000, 122, SYN | ACK)), Drop, "a SYN-ACK opens nothing");
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 50000, 122, RST)), Drop, "nor a RST");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 3);
    assert_eq!(f.rule_packets("ssh-in", Line::New), 0);
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 50000, 122, SYN)), Pass, "a bare SYN opens");
    assert_eq!(f.rule_packets("ssh-in", Line::New), 1);
    // The host's side of a session older than the filter: picked up, then the peer's
    // packets ride the flow.
    assert_eq!(f.egress(&tcp(OURS, SSH_PEER, 122, 50001, PSH | ACK)), Pass);
    assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, 50001, 122, ACK)), Pass);
    assert_eq!(f.rule_packets("ssh-in", Line::Established), 1);
}

#[test]
fn echo_replies_answer_requests_and_a_request_never_rides_a_reply_entry() {
    let policy = r#"
[host]
address = "198.51.100.1"
[[rule]]
name = "ping-out"
direction = "out"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
"#;
    let mut f = TestFilter::new(policy);
    assert_eq!(f.egress(&icmp_echo(OURS, STRANGER, true, 7)), Pass);
    assert_eq!(f.ingress(&icmp_echo(STRANGER, OURS, false, 7)), Pass, "the reply");
    assert_eq!(f.ingress(&icmp_echo(STRANGER, OURS, false, 8)), Drop, "a reply to another id");
    assert_eq!(f.ingress(&icmp_echo(SSH_PEER, OURS, false, 7)), Drop, "a reply from another host");
    // GHSA-c66w-hq56-4q97: an inbound request reusing the id.
    assert_eq!(f.ingress(&icmp_echo(STRANGER, OURS, true, 7)), Drop, "an inbound request");
    assert_eq!(f.rule_packets("ping-out", Line::Established), 1);
}

#[test]
fn an_inbound_echo_never_replaces_an_outbound_one_with_its_id() {
    // Both pings at once, same peer, same identifier: two flows, each with its replies.
    let mut f = TestFilter::tight();
    assert_eq!(f.egress(&icmp_echo(OURS, STRANGER, true, 77)), Pass, "our ping");
    assert_eq!(f.ingress(&icmp_echo(STRANGER, OURS, true, 77)), Pass, "their ping, same id");
    assert_eq!(f.ingress(&icmp_echo(STRANGER, OURS, false, 77)), Pass, "the reply to ours");
    assert_eq!(f.egress(&icmp_echo(OURS, STRANGER, false, 77)), Pass, "our reply to theirs");
    assert_eq!(f.rule_packets("ping-out", Line::Established), 1);
    assert_eq!(f.rule_packets("ping-in", Line::Established), 1);
    assert_eq!(f.loaded.maps.flows().len(), 2);
}

#[test]
fn flows_to_peers_the_antispoof_sources_name_are_not_tracked() {
    // The seed lets a ping out to 10.0.0.1 and drops its reply on its anti-spoof line,
    // which comes before the ESTABLISHED ones; a tracked flow would carry the reply past
    // the list.
    let mut f = TestFilter::tight();
    let plan = firewall_user::compile::plan(&f.policy, &f.ids);
    let ten = plan
        .antispoof_sources
        .iter()
        .find(|(p, _)| p.to_string() == "10.0.0.0/8")
        .map(|(_, counter)| *counter)
        .expect("10.0.0.0/8 is a default source");
    assert_eq!(f.egress(&icmp_echo(OURS, [10, 0, 0, 1], true, 5)), Pass, "the ping goes out");
    assert!(f.loaded.maps.flows().is_empty(), "and starts no flow");
    assert_eq!(f.ingress(&icmp_echo([10, 0, 0, 1], OURS, false, 5)), Drop, "its reply");
    assert_eq!(f.packets(ten), 1, "on 10.0.0.0/8's line");
    assert_eq!(f.rule_packets("ping-out", Line::Established), 0);
    // Nor does an outbound segment pick up a session from such a peer.
    let before = f.builtin_packets(Chain::Output, Builtin::Policy);
    assert_eq!(f.egress(&tcp(OURS, [10, 0, 0, 7], 80, 40000, ACK)), Drop, "web-in admits anyone");
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Policy), before + 1);
}

#[test]
fn the_ping_bucket_admits_the_burst_then_one_a_second() {
    let mut f = TestFilter::tight();
    let verdicts: Vec<_> = (0..10).map(|seq| f.ingress(&icmp_echo(STRANGER, OURS, true, seq))).collect();
    assert_eq!(verdicts.iter().filter(|v| **v == Pass).count(), 5, "the burst: {verdicts:?}");
    assert_eq!(&verdicts[..5], &[Pass; 5]);
    assert_eq!(f.rule_packets("ping-in", Line::New), 5);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 5, "over the limit falls to the policy");
    // The replies to admitted requests go out.
    assert_eq!(f.egress(&icmp_echo(OURS, STRANGER, false, 0)), Pass);
    assert_eq!(f.egress(&icmp_echo(OURS, STRANGER, false, 9)), Drop, "no reply to a refused request");
    // A second later, one more token.
    std::thread::sleep(std::time::Duration::from_millis(1050));
    assert_eq!(f.ingress(&icmp_echo(STRANGER, OURS, true, 20)), Pass);
    assert_eq!(f.ingress(&icmp_echo(STRANGER, OURS, true, 21)), Drop);
    // The other direction's bucket is its own.
    for id in 0..5 {
        assert_eq!(f.egress(&icmp_echo(OURS, STRANGER, true, 100 + id)), Pass);
    }
    assert_eq!(f.egress(&icmp_echo(OURS, STRANGER, true, 105)), Drop);
    assert_eq!(f.packets(builtin_counter(Chain::Output, Builtin::Policy)), 2);
}

#[test]
fn the_most_specific_allow_entry_wins_peer_then_prefix_then_anyone() {
    // Three rules for the same service: one peer, its /24, anyone.
    let rule = |name: &str, peers: &str| {
        format!(
            "[[rule]]\nname = \"{name}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 8443\npeers = {peers}\n"
        )
    };
    let policy = format!(
        "[host]\naddress = \"198.51.100.1\"\n{}{}{}",
        rule("one", r#"["192.0.2.7"]"#),
        rule("net", r#"["192.0.2.0/24", "198.18.0.0/15"]"#),
        rule("all", r#""any""#)
    );
    let mut f = TestFilter::new(&policy);
    for (src, rule) in [
        ([192, 0, 2, 7], "one"),
        ([192, 0, 2, 8], "net"),
        ([198, 19, 1, 1], "net"),
        ([203, 0, 113, 5], "all"),
    ] {
        let before = f.rule_packets(rule, Line::New);
        assert_eq!(f.ingress(&tcp(src, OURS, 40000, 8443, SYN)), Pass, "{src:?}");
        assert_eq!(f.rule_packets(rule, Line::New), before + 1, "{src:?} is {rule}'s");
    }
    // Another port is nobody's.
    assert_eq!(f.ingress(&tcp([192, 0, 2, 7], OURS, 40000, 8444, SYN)), Drop);
}

#[test]
fn related_icmp_errors_pass_only_about_tracked_flows() {
    let policy = r#"
[host]
address = "198.51.100.1"
[[rule]]
name = "dns"
direction = "out"
protocols = ["udp"]
port = 53
peers = ["198.51.100.53"]
[[rule]]
name = "ssh-in"
direction = "in"
protocols = ["tcp"]
port = 122
peers = ["203.0.113.7"]
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
"#;
    let mut f = TestFilter::new(policy);
    let router = [203, 0, 113, 1];
    let query = udp(OURS, DNS, 40000, 53);
    // Before the query, an error about it relates to nothing.
    assert_eq!(f.ingress(&icmp_error(router, OURS, 3, 4, &query)), Drop, "no flow yet");
    assert_eq!(f.egress(&query), Pass);
    // From the server or a router on the way: fragmentation needed, about our query.
    assert_eq!(f.ingress(&icmp_error(DNS, OURS, 3, 3, &query)), Pass);
    assert_eq!(f.ingress(&icmp_error(router, OURS, 3, 4, &query)), Pass, "PMTU discovery works");
    assert_eq!(f.rule_packets("unreachable-in", Line::New), 2);
    // About another port, another protocol, or quoting nothing: not related.
    assert_eq!(f.ingress(&icmp_error(router, OURS, 3, 4, &udp(OURS, DNS, 40001, 53))), Drop);
    assert_eq!(f.ingress(&icmp_error(router, OURS, 3, 4, &tcp(OURS, DNS, 40000, 53, SYN))), Drop);
    let mut bare = icmp(router, OURS, 3, 4);
    bare.truncate(L4 + 8);
    let total = (bare.len() - IP) as u16;
    bare[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    assert_eq!(f.ingress(&bare), Drop, "an error quoting nothing");
    // With IP options in the quoted header.
    assert_eq!(f.ingress(&icmp_error(router, OURS, 3, 4, &with_ip_options(query.clone(), 2))), Pass);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 4);

    // Outbound: port unreachable about a packet a rule admitted in, and no other.
    let syn = tcp(SSH_PEER, OURS, 40000, 122, SYN);
    assert_eq!(f.ingress(&syn), Pass);
    assert_eq!(f.egress(&icmp_error(OURS, SSH_PEER, 3, 3, &syn)), Pass);
    assert_eq!(f.egress(&icmp_error(OURS, STRANGER, 3, 3, &tcp(STRANGER, OURS, 40000, 122, SYN))), Drop);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Policy), 1);
}

#[test]
fn without_related_an_error_rule_admits_every_error_as_the_seed_writes_it() {
    let mut f = TestFilter::tight();
    let unrelated = icmp_error([203, 0, 113, 1], OURS, 3, 4, &udp(OURS, DNS, 41234, 53));
    assert_eq!(f.ingress(&unrelated), Pass);
    assert_eq!(f.rule_packets("unreachable-in", Line::New), 1);
}

/// The policy `f` holds, with `[host] dhcp` set to `on`, applied as a reload applies it.
fn reload_with_dhcp(f: &mut TestFilter, on: bool) {
    let mut policy = f.policy.clone();
    policy.dhcp = on;
    f.reload(policy);
}

#[test]
fn the_dhcp_client_s_exchange_passes_on_its_own_line_and_nothing_else_reaches_its_port() {
    let mut f = TestFilter::tight();
    let dhcp = |f: &mut TestFilter, chain| f.builtin_packets(chain, Builtin::Dhcp);
    let (anyone, broadcast) = ([0; 4], [255; 4]);
    let (server10, server192) = ([10, 0, 0, 1], [192, 168, 1, 1]);
    let exchange = |f: &mut TestFilter| {
        [
            // DISCOVER and REQUEST before a lease, from 0.0.0.0 to broadcast; a renewal's
            // REQUEST from our address to the server.
            f.egress(&udp(anyone, broadcast, 68, 67)),
            f.egress(&udp(OURS, server10, 68, 67)),
            // OFFER and ACK from servers the anti-spoof sources name: to broadcast, to an
            // address not yet ours, to ours.
            f.ingress(&udp(server10, broadcast, 67, 68)),
            f.ingress(&udp(server192, [192, 168, 1, 50], 67, 68)),
            f.ingress(&udp(server192, OURS, 67, 68)),
        ]
    };
    assert_eq!(exchange(&mut f), [Pass; 5]);
    assert_eq!((dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input)), (2, 3));

    // Nothing else reaches the client's port: another source port, TCP, a fragment.
    let policy = f.builtin_packets(Chain::Input, Builtin::Policy);
    assert_eq!(f.ingress(&udp(STRANGER, OURS, 53, 68)), Drop, "from port 53");
    assert_eq!(f.ingress(&udp(STRANGER, OURS, 67, 67)), Drop, "to the server's port");
    assert_eq!(f.ingress(&tcp(STRANGER, OURS, 67, 68, SYN)), Drop, "TCP");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), policy + 3);
    assert_eq!(f.ingress(&udp(server10, broadcast, 1067, 68)), Drop, "a private source, another port");
    assert_eq!(f.ingress(&fragmented(udp(STRANGER, OURS, 67, 68), true, 0)), Drop, "a fragment");
    assert_eq!(f.egress(&udp(anyone, broadcast, 67, 68)), Drop, "a server's answer, sent by us");
    assert_eq!(f.egress(&udp(anyone, broadcast, 68, 68)), Drop);
    assert_eq!((dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input)), (2, 3));

    // A blocked server gets nothing through, either way, on its entry's lines.
    let prefix = firewall_user::policy::Prefix::parse("10.0.0.1").expect("a prefix");
    firewall_user::ops::block::apply_block(&mut f.loaded.maps, prefix, 0, 0).expect("blocking");
    let (block_in, block_out) = (
        firewall_common::block_counter(0, firewall_common::Direction::In),
        firewall_common::block_counter(0, firewall_common::Direction::Out),
    );
    assert_eq!(f.ingress(&udp(server10, broadcast, 67, 68)), Drop);
    assert_eq!(f.egress(&udp(OURS, server10, 68, 67)), Drop);
    assert_eq!((f.packets(block_in), f.packets(block_out)), (1, 1));
    assert_eq!(f.ingress(&udp(server192, broadcast, 67, 68)), Pass, "another server");
    firewall_user::ops::block::lift_blocks(&mut f.loaded.maps, &[prefix], 0).expect("unblocking");

    // `dhcp = false`, by a reload: each drops where it would without the line.
    reload_with_dhcp(&mut f, false);
    let before = (dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input));
    let spoofed_source = f.builtin_packets(Chain::Output, Builtin::SpoofedSource);
    let policy = f.builtin_packets(Chain::Input, Builtin::Policy);
    assert_eq!(exchange(&mut f), [Drop; 5]);
    assert_eq!((dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input)), before);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::SpoofedSource), spoofed_source + 1, "from 0.0.0.0");
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Policy), 1, "to the server");
    assert_eq!(
        f.builtin_packets(Chain::Input, Builtin::Policy),
        policy,
        "the answers meet the anti-spoof lists"
    );
    assert_eq!(f.ingress(&udp(STRANGER, OURS, 67, 68)), Drop, "from a public server");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), policy + 1);
    // And on again.
    reload_with_dhcp(&mut f, true);
    assert_eq!(exchange(&mut f), [Pass; 5]);
    assert_eq!((dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input)), (before.0 + 2, before.1 + 3));
}

/// `[host]` with two addresses of each family: every rule applies to both, flows to the
/// second are tracked and return like the first's, an address beside them that the policy
/// does not list is FORWARD's, and a packet leaving from it is spoofed; packet-too-big to
/// the second IPv6 address passes as to the first.
#[test]
fn every_listed_host_address_is_ours_and_no_other() {
    let policy = r#"
[host]
address = ["198.51.100.1", "198.51.100.2"]
address6 = ["2001:db8::1", "2001:db8:1::1"]
[[rule]]
name = "ssh-in"
direction = "in"
protocols = ["tcp"]
port = 122
peers = ["203.0.113.7", "2001:db8:7::7"]
"#;
    let v6 = |text: &str| text.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let (second, unlisted) = ([198, 51, 100, 2], [198, 51, 100, 3]);
    let mut f = TestFilter::new(policy);
    for local in [OURS, second] {
        assert_eq!(f.ingress(&tcp(SSH_PEER, local, 40000, 122, SYN)), Pass, "to {local:?}");
        assert_eq!(f.egress(&tcp(local, SSH_PEER, 122, 40000, SYN | ACK)), Pass, "from {local:?}");
    }
    assert_eq!(f.rule_packets("ssh-in", Line::New), 2);
    assert_eq!(f.rule_packets("ssh-in", Line::Established), 2);
    assert_eq!(f.ingress(&tcp(SSH_PEER, unlisted, 40001, 122, SYN)), Drop);
    assert_eq!(f.builtin_packets(Chain::Forward, Builtin::Policy), 1);
    assert_eq!(f.egress(&tcp(unlisted, SSH_PEER, 122, 40000, SYN | ACK)), Drop);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::SpoofedSource), 1);

    let (peer6, second6, unlisted6) = (v6("2001:db8:7::7"), v6("2001:db8:1::1"), v6("2001:db8:1::2"));
    assert_eq!(f.ingress(&tcp6(peer6, second6, 40000, 122, SYN)), Pass);
    assert_eq!(f.egress(&tcp6(second6, peer6, 122, 40000, SYN | ACK)), Pass);
    assert_eq!(f.rule_packets("ssh-in", Line::New), 3);
    assert_eq!(f.ingress(&tcp6(peer6, unlisted6, 40000, 122, SYN)), Drop);
    assert_eq!(f.builtin_packets(Chain::Forward, Builtin::Policy), 2);
    let router = v6("2001:db8:ff::1");
    let quoted = tcp6(second6, peer6, 122, 40000, ACK);
    assert_eq!(f.ingress(&icmp6_error(router, second6, 2, &quoted)), Pass);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::PacketTooBig), 1);
    assert_eq!(f.ingress(&icmp6_error(router, unlisted6, 2, &quoted)), Drop);
}
