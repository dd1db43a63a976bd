//! IPv6 verdicts of the real programs (BPF_PROG_TEST_RUN), with a policy that has an
//! `address6`: every rule applies to both families, neighbour and listener discovery and
//! packet-too-big pass but to and from blocked peers (and, from sources the anti-spoof
//! list names, but for the link's own), extension headers are walked to the transport
//! header, and nothing IPv6 can pass for an IPv4 peer.
use firewall_common::{Builtin, Chain, Line};
use tests::{
    frames::*,
    harness::{TestFilter, Verdict::*},
};

const POLICY: &str = r#"
[host]
interface = "eth0"
address = "198.51.100.1"
address6 = "2001:db8::1"

[[rule]]
name = "ssh-in"
direction = "in"
protocols = ["tcp"]
port = 122
peers = ["203.0.113.7", "2001:db8:1::7", "2001:db8:2::/48"]

[[rule]]
name = "dns"
direction = "out"
protocols = ["udp", "tcp"]
port = 53
peers = ["198.51.100.53", "2001:db8::53"]

[[rule]]
name = "web-in"
direction = "in"
protocols = ["tcp"]
port = 80
peers = "any"

[[rule]]
name = "ping-in"
direction = "in"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
# Slow enough that the clock cannot refill the bucket during the test.
limit = "1/hour"
burst = 3

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
"#;

const OURS4: [u8; 4] = OURS;
fn ssh_peer() -> [u8; 16] {
    v6("2001:db8:1::7")
}
fn stranger() -> [u8; 16] {
    v6("2001:db8:99::99")
}
fn dns6() -> [u8; 16] {
    v6("2001:db8::53")
}
fn link_local() -> [u8; 16] {
    v6("fe80::2")
}

fn filter() -> TestFilter {
    TestFilter::new(POLICY)
}

#[test]
fn every_rule_applies_to_ipv6_peers_as_to_ipv4_ones() {
    let mut f = filter();
    let o = OURS6;
    // (what, inbound?, frame, rule that admits it or None for INPUT/OUTPUT's policy)
    let cases: Vec<(&str, bool, Vec<u8>, Option<&str>)> = vec![
        ("ssh from the listed IPv6 peer", true, tcp6(ssh_peer(), o, 40000, 122, SYN), Some("ssh-in")),
        (
            "ssh from inside the listed /48",
            true,
            tcp6(v6("2001:db8:2:5::9"), o, 40000, 122, SYN),
            Some("ssh-in"),
        ),
        ("ssh from an IPv6 stranger", true, tcp6(stranger(), o, 40000, 122, SYN), None),
        ("ssh from the IPv4 peer still", true, tcp(SSH_PEER4, OURS4, 40000, 122, SYN), Some("ssh-in")),
        ("http from any IPv6 address", true, tcp6(stranger(), o, 40001, 80, SYN), Some("web-in")),
        ("https from it: not a service", true, tcp6(stranger(), o, 40001, 443, SYN), None),
        ("a DNS query to the IPv6 server", false, udp6(o, dns6(), 40002, 53), Some("dns")),
        ("a DNS query over TCP to it", false, tcp6(o, dns6(), 40003, 53, SYN), Some("dns")),
        ("a DNS query to another server", false, udp6(o, stranger(), 40002, 53), None),
        ("ping6 out to anyone", false, icmp6_echo(o, stranger(), true, 7), Some("ping-out")),
        (
            "an ICMPv4 type number on ICMPv6 (8: not echo)",
            true,
            icmp6(stranger(), o, 8, 64, [0; 4], b""),
            None,
        ),
        ("a protocol no rule names (GRE)", true, other_protocol6(stranger(), o), None),
    ];
    for (what, inbound, frame, rule) in cases {
        let chain = if inbound { Chain::Input } else { Chain::Output };
        let before_rule = rule.map(|r| f.rule_packets(r, Line::New));
        let before_policy = f.builtin_packets(chain, Builtin::Policy);
        let verdict = if inbound { f.ingress(&frame) } else { f.egress(&frame) };
        match rule {
            Some(r) => {
                assert_eq!(verdict, Pass, "{what}");
                assert_eq!(f.rule_packets(r, Line::New), before_rule.unwrap() + 1, "{what}: on {r}'s line");
            }
            None => {
                assert_eq!(verdict, Drop, "{what}");
                assert_eq!(
                    f.builtin_packets(chain, Builtin::Policy),
                    before_policy + 1,
                    "{what}: on the policy"
                );
            }
        }
    }
}

const SSH_PEER4: [u8; 4] = [203, 0, 113, 7];

fn other_protocol6(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut frame = udp6(src, dst, 1, 1);
    frame[IP6 + 6] = 47;
    frame
}

#[test]
fn ipv6_returns_pass_only_on_the_exact_reversed_tuple() {
    let mut f = filter();
    let o = OURS6;
    assert_eq!(f.egress(&udp6(o, dns6(), 40002, 53)), Pass);
    assert_eq!(f.ingress(&udp6(dns6(), o, 53, 40002)), Pass, "the answer");
    assert_eq!(f.rule_packets("dns", Line::Established), 1);
    assert_eq!(f.ingress(&udp6(dns6(), o, 53, 40003)), Drop, "to another local port");
    assert_eq!(f.ingress(&udp6(dns6(), o, 54, 40002)), Drop, "from another remote port");
    assert_eq!(f.ingress(&udp6(v6("2001:db8::54"), o, 53, 40002)), Drop, "from another server");
    // The same tuple over IPv4 is another flow: families never share an entry.
    assert_eq!(f.ingress(&udp([198, 51, 100, 53], OURS4, 53, 40002)), Drop, "the IPv4 twin");
    assert_eq!(f.rule_packets("dns", Line::Established), 1);

    // TCP over IPv6, both ways.
    assert_eq!(f.ingress(&tcp6(ssh_peer(), o, 40010, 122, SYN)), Pass);
    assert_eq!(f.egress(&tcp6(o, ssh_peer(), 122, 40010, SYN | ACK)), Pass, "the SYN-ACK");
    assert_eq!(f.ingress(&tcp6(ssh_peer(), o, 40010, 122, ACK)), Pass);
    assert_eq!(f.rule_packets("ssh-in", Line::Established), 1);
    assert_eq!(
        f.egress(&tcp6(o, ssh_peer(), 122, 40011, ACK)),
        Pass,
        "picked up: a session older than the filter"
    );
    assert_eq!(f.rule_packets("ssh-in", Line::Established), 2);
}

#[test]
fn ping6_is_limited_with_ipv4_ping_and_replies_only_answer_requests() {
    let mut f = filter();
    let o = OURS6;
    // One bucket per rule, whatever the family: the burst of 3 is shared.
    assert_eq!(f.ingress(&icmp6_echo(stranger(), o, true, 1)), Pass);
    assert_eq!(f.ingress(&icmp_echo([203, 0, 113, 99], OURS4, true, 1)), Pass);
    assert_eq!(f.ingress(&icmp6_echo(stranger(), o, true, 2)), Pass);
    assert_eq!(f.ingress(&icmp6_echo(stranger(), o, true, 3)), Drop, "over the limit");
    assert_eq!(f.rule_packets("ping-in", Line::New), 3);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), 1);
    assert_eq!(f.egress(&icmp6_echo(o, stranger(), false, 1)), Pass, "our reply to an admitted request");
    assert_eq!(f.rule_packets("ping-in", Line::Established), 1);

    // Outbound echo: the reply passes, a request reusing its id does not (GHSA-c66w-hq56-4q97).
    assert_eq!(f.egress(&icmp6_echo(o, v6("2001:db8:5::5"), true, 900)), Pass);
    assert_eq!(f.ingress(&icmp6_echo(v6("2001:db8:5::5"), o, false, 900)), Pass, "the reply");
    assert_eq!(f.rule_packets("ping-out", Line::Established), 1);
    let policy = f.builtin_packets(Chain::Input, Builtin::Policy);
    assert_eq!(
        f.ingress(&icmp6_echo(v6("2001:db8:5::5"), o, true, 900)),
        Drop,
        "a request on the reply's entry"
    );
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), policy + 1);
    assert_eq!(f.ingress(&icmp6_echo(v6("2001:db8:5::5"), o, false, 901)), Drop, "a reply with another id");
}

#[test]
fn neighbour_and_listener_discovery_and_packet_too_big_pass_whatever_the_rules_say() {
    let mut f = filter();
    let o = OURS6;
    let solicited_node = v6("ff02::1:ff00:1");
    let nd = |f: &mut TestFilter, chain| f.builtin_packets(chain, Builtin::NeighbourDiscovery);
    // A router asking for our address, from its link-local address to our solicited-node
    // group: neither end is OURIP6, the source is in fe80::/10 and the destination in
    // ff00::/8, both anti-spoof defaults; it passes first.
    assert_eq!(f.ingress(&neighbour_solicitation(link_local(), solicited_node, o, 255)), Pass);
    assert_eq!(nd(&mut f, Chain::Input), 1);
    // Duplicate address detection comes from the unspecified address.
    assert_eq!(f.ingress(&neighbour_solicitation([0; 16], solicited_node, o, 255)), Pass);
    assert_eq!(nd(&mut f, Chain::Input), 2);
    // Our advertisement back, from our link-local address; a router advertisement in.
    assert_eq!(f.egress(&icmp6(v6("fe80::1"), link_local(), 136, 255, [0x60, 0, 0, 0], &o)), Pass);
    assert_eq!(f.ingress(&icmp6(link_local(), v6("ff02::1"), 134, 255, [64, 0, 0, 0], &[0; 8])), Pass);
    // Multicast listener reports out and queries in: link-local, hop limit 1.
    assert_eq!(f.egress(&icmp6(v6("fe80::1"), v6("ff02::16"), 143, 1, [0; 4], &[0; 20])), Pass);
    assert_eq!(f.ingress(&icmp6(link_local(), v6("ff02::1"), 130, 1, [0; 4], &[0; 16])), Pass);
    assert_eq!(nd(&mut f, Chain::Input), 4);
    assert_eq!(nd(&mut f, Chain::Output), 2);

    // Routed here, neighbour discovery has lost hop limits: it is not from the link.
    let before = f.builtin_packets(Chain::Input, Builtin::Policy);
    assert_eq!(f.ingress(&neighbour_solicitation(stranger(), o, o, 64)), Drop, "routed solicitation");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Policy), before + 1);
    assert_eq!(
        f.ingress(&icmp6(stranger(), o, 130, 1, [0; 4], &[0; 16])),
        Drop,
        "a listener query from afar"
    );
    assert_eq!(nd(&mut f, Chain::Input), 4);

    // Packet too big, quoting one of our segments, from a router anywhere: PMTU discovery.
    let ours = tcp6(o, stranger(), 80, 40001, ACK);
    assert_eq!(f.ingress(&icmp6_error(v6("2001:db8:ff::1"), o, 2, &ours)), Pass);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::PacketTooBig), 1);
    assert_eq!(f.egress(&icmp6_error(o, stranger(), 2, &tcp6(stranger(), o, 40001, 80, ACK))), Pass);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::PacketTooBig), 1);
    // … but only to our address.
    assert_eq!(f.ingress(&icmp6_error(v6("2001:db8:ff::1"), v6("2001:db8::2"), 2, &ours)), Drop);
    assert_eq!(f.builtin_packets(Chain::Forward, Builtin::Policy), 1);
}

/// The anti-spoof source entry of the policy's defaults that holds `text`.
fn antispoof_source_line(f: &TestFilter, text: &str) -> u32 {
    let plan = firewall_user::compile::plan(&f.policy, &f.ids);
    let addr = std::net::IpAddr::V6(v6(text).into());
    let (_, counter) = plan
        .antispoof_sources
        .iter()
        .filter(|(p, _)| p.contains(addr))
        .max_by_key(|(p, _)| p.len)
        .unwrap_or_else(|| panic!("{text} is in no default source prefix"));
    *counter
}

#[test]
fn discovery_skips_the_antispoof_sources_only_from_the_link_s_own_addresses() {
    let mut f = filter();
    let o = OURS6;
    let solicited_node = v6("ff02::1:ff00:1");
    let nd = |f: &mut TestFilter| f.builtin_packets(Chain::Input, Builtin::NeighbourDiscovery);
    // From link-local and unspecified sources, which the defaults list (fe80::/10, ::),
    // discovery passes: those addresses belong to the link, and discovery is theirs.
    assert_eq!(f.ingress(&neighbour_solicitation(link_local(), solicited_node, o, 255)), Pass);
    assert_eq!(f.ingress(&neighbour_solicitation([0; 16], solicited_node, o, 255)), Pass);
    assert_eq!(f.ingress(&icmp6(link_local(), v6("ff02::1"), 130, 1, [0; 4], &[0; 16])), Pass);
    // From a routable source the list does not name, too.
    assert_eq!(f.ingress(&neighbour_solicitation(stranger(), solicited_node, o, 255)), Pass);
    assert_eq!(nd(&mut f), 4);
    // From sources the list names for what they are, it is dropped like anything else,
    // counted on their entries: unique-local, loopback, multicast.
    for text in ["fd00::5", "::1", "ff02::1"] {
        let line = antispoof_source_line(&f, text);
        let before = f.packets(line);
        assert_eq!(f.ingress(&neighbour_solicitation(v6(text), solicited_node, o, 255)), Drop, "from {text}");
        assert_eq!(f.packets(line), before + 1, "{text} on its anti-spoof line");
    }
    // Packet-too-big meets the list wherever it comes from.
    let ours = tcp6(o, stranger(), 80, 40001, ACK);
    let line = antispoof_source_line(&f, "fd00::1");
    assert_eq!(f.ingress(&icmp6_error(v6("fd00::1"), o, 2, &ours)), Drop, "from a unique-local router");
    assert_eq!(f.packets(line), 2);
    assert_eq!(f.ingress(&icmp6_error(v6("fe80::1"), o, 2, &ours)), Drop, "from a link-local one");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::PacketTooBig), 0);
    assert_eq!(nd(&mut f), 4);
}

#[test]
fn a_blocked_peer_gets_nothing_through_but_its_link_local_discovery() {
    let mut f = filter();
    let o = OURS6;
    let blocked = v6("2001:db8:5::5");
    let peer_link_local = v6("fe80::5");
    let block = |f: &mut TestFilter, text: &str| {
        let prefix = firewall_user::policy::Prefix::parse(text).expect("a prefix");
        firewall_user::ops::block::apply_block(&mut f.loaded.maps, prefix, 0, 0).expect("blocking");
    };
    block(&mut f, "2001:db8:5::5");
    let (block_in, block_out) = (
        firewall_common::block_counter(0, firewall_common::Direction::In),
        firewall_common::block_counter(0, firewall_common::Direction::Out),
    );
    let solicited_node = v6("ff02::1:ff00:1");
    let ours = tcp6(o, blocked, 80, 40001, ACK);
    // Its solicitation for us, its advertisement, its packet-too-big about our segment:
    // blocked, on the entry's INPUT line.
    assert_eq!(f.ingress(&neighbour_solicitation(blocked, solicited_node, o, 255)), Drop);
    assert_eq!(f.ingress(&icmp6(blocked, o, 136, 255, [0x60, 0, 0, 0], &blocked)), Drop);
    assert_eq!(f.ingress(&icmp6_error(blocked, o, 2, &ours)), Drop);
    assert_eq!(f.packets(block_in), 3);
    // Ours to it: our advertisement (from our link-local address), a packet-too-big.
    assert_eq!(f.egress(&icmp6(v6("fe80::1"), blocked, 136, 255, [0x60, 0, 0, 0], &o)), Drop);
    let theirs = tcp6(blocked, o, 40001, 80, ACK);
    assert_eq!(f.egress(&icmp6_error(o, blocked, 2, &theirs)), Drop);
    assert_eq!(f.packets(block_out), 2);
    // Its link-local address is another address: its discovery passes, and ours to it.
    assert_eq!(f.ingress(&neighbour_solicitation(peer_link_local, solicited_node, o, 255)), Pass);
    assert_eq!(f.egress(&icmp6(v6("fe80::1"), peer_link_local, 136, 255, [0x60, 0, 0, 0], &o)), Pass);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::NeighbourDiscovery), 1);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::NeighbourDiscovery), 1);
    // Unless fe80::/10 itself is blocked (its own slot, 1): then only our discovery to the
    // groups passes, whose peer is a group.
    block(&mut f, "fe80::/10");
    let link_block_in = firewall_common::block_counter(1, firewall_common::Direction::In);
    assert_eq!(f.ingress(&neighbour_solicitation(peer_link_local, solicited_node, o, 255)), Drop);
    assert_eq!(f.packets(link_block_in), 1);
    assert_eq!(f.egress(&neighbour_solicitation(v6("fe80::1"), v6("ff02::1:ff00:5"), blocked, 255)), Pass);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::NeighbourDiscovery), 2);
}

#[test]
fn extension_headers_are_walked_to_the_transport_header() {
    let mut f = filter();
    let o = OURS6;
    let ssh = tcp6(ssh_peer(), o, 40000, 122, SYN);
    let ntp = tcp6(ssh_peer(), o, 40000, 123, SYN);
    let ssh_line = |f: &mut TestFilter| f.rule_packets("ssh-in", Line::New);
    // Each of the kinds a datagram may carry, alone and chained, judged on the TCP header
    // behind them: the admitted port passes, the other one meets the policy.
    let chains: [&[(u8, u8)]; 6] = [
        &[(0, 0)],
        &[(60, 1)],
        &[(43, 0)],
        &[(51, 1)],
        &[(0, 0), (60, 0), (43, 2)],
        &[(0, 1), (60, 0), (43, 0), (60, 3)],
    ];
    for headers in chains {
        let before = ssh_line(&mut f);
        assert_eq!(
            f.ingress(&with_extension_headers(ssh.clone(), headers, 0)),
            Pass,
            "ssh behind {headers:?}"
        );
        assert_eq!(ssh_line(&mut f), before + 1);
        assert_eq!(
            f.ingress(&with_extension_headers(ntp.clone(), headers, 0)),
            Drop,
            "port 123 behind {headers:?}"
        );
    }
    // An atomic fragment (offset 0, no more fragments) is a whole datagram.
    assert_eq!(f.ingress(&with_extension_headers(ssh.clone(), &[(44, 0)], 0)), Pass, "atomic fragment");

    let invalid = |f: &mut TestFilter| f.builtin_packets(Chain::Input, Builtin::Invalid);
    let before = invalid(&mut f);
    // More than four: a chain made to hide the transport header.
    let five = [(0, 0), (60, 0), (43, 0), (60, 0), (60, 0)];
    assert_eq!(f.ingress(&with_extension_headers(ssh.clone(), &five, 0)), Drop, "five extension headers");
    // Hop-by-hop anywhere but first.
    assert_eq!(
        f.ingress(&with_extension_headers(ssh.clone(), &[(60, 0), (0, 0)], 0)),
        Drop,
        "hop-by-hop second"
    );
    // A header whose length runs past the payload.
    let mut long = with_extension_headers(ssh.clone(), &[(60, 0)], 0);
    long[L4_6 + 1] = 200;
    assert_eq!(f.ingress(&long), Drop, "a header longer than the datagram");
    assert_eq!(invalid(&mut f), before + 3);

    // Real fragments, as for IPv4 (verdicts.rs): a first one with more to come after 20
    // bytes, no multiple of 8, and a later one with more to come likewise, are no sender's;
    // a later one alone follows no first.
    for field in [1u16 /* M, offset 0 */, (8 << 3) | 1 /* offset 8, M */] {
        let frame = with_extension_headers(ssh.clone(), &[(44, 0)], field);
        assert_eq!(f.ingress(&frame), Drop, "fragment field {field:#x}");
    }
    let frame = with_extension_headers(ssh.clone(), &[(0, 0), (44, 0)], 1);
    assert_eq!(f.ingress(&frame), Drop, "a fragment behind hop-by-hop");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::InvalidFragment), 3);
    let frame = with_extension_headers(ssh.clone(), &[(44, 0)], 8 << 3 /* offset 8, last */);
    assert_eq!(f.ingress(&frame), Drop, "a later fragment alone");
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::FragmentOrphan), 1);
}

#[test]
fn nothing_ipv6_passes_for_an_ipv4_peer() {
    let mut f = filter();
    // The IPv4 peer 203.0.113.7 as an IPv4-mapped source: malformed on the wire.
    let mapped = v6("::ffff:203.0.113.7");
    assert_eq!(f.ingress(&tcp6(mapped, OURS6, 40000, 122, SYN)), Drop);
    assert_eq!(f.ingress(&tcp6(ssh_peer(), v6("::ffff:198.51.100.1"), 40000, 122, SYN)), Drop);
    assert_eq!(f.egress(&tcp6(v6("::ffff:198.51.100.1"), ssh_peer(), 122, 40000, ACK)), Drop);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Invalid), 2);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Invalid), 1);
    assert_eq!(f.rule_packets("ssh-in", Line::New), 0);
}

#[test]
fn ipv6_antispoof_defaults_and_outbound_spoofing() {
    let mut f = filter();
    let plan = firewall_user::compile::plan(&f.policy, &f.ids);
    let ssh_ok = |src: [u8; 16]| tcp6(src, OURS6, 40000, 80, SYN);
    for text in ["fc00::1", "fe80::9", "::1", "ff02::1"] {
        let addr = v6(text);
        let (prefix, counter) = plan
            .antispoof_sources
            .iter()
            .find(|(p, _)| p.contains(std::net::IpAddr::V6(addr.into())))
            .unwrap_or_else(|| panic!("{text} is in no default source prefix"));
        assert_eq!(f.ingress(&ssh_ok(addr)), Drop, "from {text}");
        assert_eq!(f.packets(*counter), 1, "{text} on {prefix}'s line");
    }
    // Multicast to anyone but a discovery message: the destination list.
    let (_, counter) = plan.antispoof_destinations.iter().find(|(p, _)| p.is_v6()).expect("ff00::/8");
    assert_eq!(f.ingress(&udp6(stranger(), v6("ff05::2"), 1000, 53)), Drop);
    assert_eq!(f.packets(*counter), 1);
    // Another address of ours, or a forged one, leaving: OUTPUT's anti-spoof line.
    assert_eq!(f.egress(&udp6(v6("2001:db8::2"), dns6(), 40000, 53)), Drop);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::SpoofedSource), 1);
    // To another address: FORWARD.
    assert_eq!(f.ingress(&tcp6(ssh_peer(), v6("2001:db8::2"), 40000, 122, SYN)), Drop);
    assert_eq!(f.builtin_packets(Chain::Forward, Builtin::Policy), 1);
}

#[test]
fn ipv6_frames_truncated_at_every_length_are_invalid() {
    let mut f = filter();
    let o = OURS6;
    let wholes = [
        ("tcp", tcp6(ssh_peer(), o, 40000, 122, SYN)),
        ("udp", udp6(o, dns6(), 40000, 53)),
        ("icmpv6", icmp6_echo(stranger(), o, true, 5)),
        (
            "tcp behind two headers",
            with_extension_headers(tcp6(ssh_peer(), o, 40000, 122, SYN), &[(0, 0), (60, 1)], 0),
        ),
    ];
    for (what, whole) in wholes {
        let egress = what == "udp";
        let chain = if egress { Chain::Output } else { Chain::Input };
        let verdict = if egress { f.egress(&whole) } else { f.ingress(&whole) };
        assert_eq!(verdict, Pass, "{what}: whole");
        // From the end of the Ethernet header to one byte short of the whole frame; the
        // skb test runner refuses frames without a whole IPv6 header (EINVAL), and the
        // stack never sends such frames either.
        let shortest = if egress { L4_6 } else { IP6 };
        for len in shortest..whole.len() {
            let before = f.builtin_packets(chain, Builtin::Invalid);
            let frame = &whole[..len];
            let verdict = if egress { f.egress(frame) } else { f.ingress(frame) };
            assert_eq!(verdict, Drop, "{what} cut to {len} bytes");
            assert_eq!(
                f.builtin_packets(chain, Builtin::Invalid),
                before + 1,
                "{what} cut to {len}: invalid"
            );
        }
    }
}

#[test]
fn related_ipv6_errors_pass_only_about_tracked_flows() {
    let mut f = filter();
    let o = OURS6;
    let query = udp6(o, dns6(), 40002, 53);
    let router = v6("2001:db8:ff::1");
    // Port unreachable about a query we never sent: not related.
    assert_eq!(f.ingress(&icmp6_error(router, o, 1, &query)), Drop, "about no flow");
    assert_eq!(f.egress(&query), Pass);
    assert_eq!(f.ingress(&icmp6_error(router, o, 1, &query)), Pass, "about our query");
    assert_eq!(f.rule_packets("unreachable-in", Line::New), 1);
    // Quoting the same datagram with one port changed is about no flow.
    let other = udp6(o, dns6(), 40003, 53);
    assert_eq!(f.ingress(&icmp6_error(router, o, 1, &other)), Drop);
    // An IPv4 header quoted inside ICMPv6 is no IPv6 flow's.
    let mut bogus = icmp6_error(router, o, 1, &query);
    bogus[L4_6 + 8] = 0x45;
    assert_eq!(f.ingress(&bogus), Drop);
    assert_eq!(f.rule_packets("unreachable-in", Line::New), 1);
}

#[test]
fn without_address6_every_ipv6_packet_is_dropped_and_counted() {
    let mut f = TestFilter::tight();
    let o = OURS6;
    for frame in [
        tcp6(ssh_peer(), o, 40000, 122, SYN),
        neighbour_solicitation(link_local(), v6("ff02::1:ff00:1"), o, 255),
        icmp6_error(stranger(), o, 2, &tcp6(o, stranger(), 80, 40001, ACK)),
    ] {
        assert_eq!(f.ingress(&frame), Drop);
        assert_eq!(f.egress(&frame), Drop);
    }
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Ipv6), 3);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Ipv6), 3);
}

#[test]
fn the_dhcpv6_client_s_exchange_passes_with_address6_and_nothing_else_reaches_its_port() {
    let mut f = filter();
    let o = OURS6;
    let dhcp = |f: &mut TestFilter, chain| f.builtin_packets(chain, Builtin::Dhcp);
    let (ours_link, server_link, all_servers) = (v6("fe80::1"), link_local(), v6("ff02::1:2"));
    let exchange = |f: &mut TestFilter| {
        [
            // SOLICIT to the servers' group, from our link-local address; a RENEW to a
            // server's global address, from ours.
            f.egress(&udp6(ours_link, all_servers, 546, 547)),
            f.egress(&udp6(o, v6("2001:db8:ff::547"), 546, 547)),
            // ADVERTISE and REPLY from the server's link-local address (in fe80::/10, an
            // anti-spoof default) to ours, and from a global one to our address.
            f.ingress(&udp6(server_link, ours_link, 547, 546)),
            f.ingress(&udp6(v6("2001:db8:ff::547"), o, 547, 546)),
        ]
    };
    assert_eq!(exchange(&mut f), [Pass; 4]);
    assert_eq!((dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input)), (2, 2));

    // Nothing else reaches the client's port; DHCPv4's ports are not DHCPv6's.
    assert_eq!(f.ingress(&udp6(stranger(), o, 53, 546)), Drop, "from port 53");
    assert_eq!(f.ingress(&udp6(stranger(), o, 67, 68)), Drop, "DHCPv4's ports over IPv6");
    assert_eq!(f.ingress(&tcp6(stranger(), o, 547, 546, SYN)), Drop, "TCP");
    assert_eq!(f.egress(&udp6(o, stranger(), 68, 67)), Drop, "DHCPv4's ports out over IPv6");
    assert_eq!(f.ingress(&udp(v4_server(), OURS4, 547, 546)), Drop, "DHCPv6's ports over IPv4");
    assert_eq!((dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input)), (2, 2));

    // A blocked server gets nothing through.
    let prefix = firewall_user::policy::Prefix::parse("2001:db8:ff::547").expect("a prefix");
    firewall_user::ops::block::apply_block(&mut f.loaded.maps, prefix, 0, 0).expect("blocking");
    assert_eq!(f.ingress(&udp6(v6("2001:db8:ff::547"), o, 547, 546)), Drop);
    assert_eq!(f.egress(&udp6(o, v6("2001:db8:ff::547"), 546, 547)), Drop);
    assert_eq!(f.packets(firewall_common::block_counter(0, firewall_common::Direction::In)), 1);
    assert_eq!(f.packets(firewall_common::block_counter(0, firewall_common::Direction::Out)), 1);
    firewall_user::ops::block::lift_blocks(&mut f.loaded.maps, &[prefix], 0).expect("unblocking");

    // `dhcp = false`, by a reload: all of it drops.
    let mut policy = f.policy.clone();
    policy.dhcp = false;
    f.reload(policy);
    assert_eq!(exchange(&mut f), [Drop; 4]);
    assert_eq!((dhcp(&mut f, Chain::Output), dhcp(&mut f, Chain::Input)), (2, 2));
}

#[test]
fn without_address6_dhcpv6_drops_on_the_ipv6_line() {
    let mut f = TestFilter::tight();
    assert_eq!(f.ingress(&udp6(link_local(), v6("fe80::1"), 547, 546)), Drop);
    assert_eq!(f.egress(&udp6(v6("fe80::1"), v6("ff02::1:2"), 546, 547)), Drop);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Ipv6), 1);
    assert_eq!(f.builtin_packets(Chain::Output, Builtin::Ipv6), 1);
    assert_eq!(f.builtin_packets(Chain::Input, Builtin::Dhcp), 0);
}

fn v4_server() -> [u8; 4] {
    [198, 51, 100, 67]
}
