//! Fragments in the lab, through the real filter: a real DNS server's answer too large for
//! one frame (dnsmasq's 5 KB TXT answer over UDP, as DNSSEC and EDNS0 answers are) and the
//! host's own large datagrams, out to an allowed peer and back, of both families, arrive
//! whole, every fragment counted on the rule's lines; fragments of what no rule admits
//! drop on their own lines. Under the seed's iptables, which reassembles before it
//! filters, the same answers arrive (differential.rs); the attacks, in every combination,
//! are the reference model's (model.rs).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use tests::{
    daemons::{answered_big, dig_big_txt, dnsmasq, moved},
    lab::{HOST, HOST6, Lab, STRANGER},
};

const DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
const DNS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x53, 0, 0, 0, 0, 0x53);
/// A datagram four frames long on the lab's 1500-byte link.
const LARGE: usize = 6000;

#[test]
fn a_large_dns_answer_arrives_whole_in_fragments() {
    let lab = Lab::new("fragments-dns");
    let _dns = dnsmasq(&lab, DNS);
    lab.up();
    let before = lab.list();
    let run = dig_big_txt(&lab, HOST, DNS, 3);
    assert!(answered_big(&run), "the large answer, whole: {}", run.describe());
    let after = lab.list();
    // Four frames at least came back (5 KB over 1,500-byte frames), all on the rule's
    // ESTABLISHED line: the first as the flow's return, the rest following it.
    let returned = moved(&before, &after, "INPUT", "dns");
    assert!(returned >= 4, "the answer's fragments on dns's ESTABLISHED line: {returned}");
    assert_eq!(moved(&before, &after, "INPUT", "fragment-orphan"), 0);
    assert_eq!(moved(&before, &after, "INPUT", "invalid-fragment"), 0);
}

/// Sends `LARGE` bytes from `from` to the echo at `to` and waits for them back.
fn large_exchange(lab: &Lab, from: IpAddr, to: SocketAddr) -> Result<(), String> {
    let socket = lab
        .run_in(lab.ns_of(from), || UdpSocket::bind(SocketAddr::new(from, 0)))
        .map_err(|e| format!("binding {from}: {e}"))?;
    socket.connect(to).map_err(|e| format!("connecting to {to}: {e}"))?;
    let sent: Vec<u8> = (0..LARGE).map(|i| (i % 253) as u8).collect();
    socket.send(&sent).map_err(|e| format!("sending to {to}: {e}"))?;
    socket.set_read_timeout(Some(Duration::from_secs(3))).expect("read timeout");
    let mut buf = vec![0; 65_536];
    let n = socket.recv(&mut buf).map_err(|e| format!("waiting for {to}'s echo: {e}"))?;
    if buf[..n] == sent[..] { Ok(()) } else { Err(format!("{n} bytes back, not the {LARGE} sent")) }
}

/// A UDP echo at `addr` for datagrams up to 64 KB, serving on a thread until the test ends.
fn large_echo(lab: &Lab, addr: SocketAddr) {
    let socket = lab.run_in(lab.ns_of(addr.ip()), || UdpSocket::bind(addr)).expect("binding the echo");
    std::thread::spawn(move || {
        let mut buf = vec![0; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
}

#[test]
fn the_hosts_large_datagrams_go_out_and_their_answers_come_back_in_both_families() {
    let lab = Lab::dual_stack("fragments-both-ways");
    let policy = lab.dual_stack_policy_file();
    lab.up_with(&policy);
    for (host, dns) in [(IpAddr::V4(HOST), IpAddr::V4(DNS)), (IpAddr::V6(HOST6), IpAddr::V6(DNS6))] {
        let to = SocketAddr::new(dns, 53);
        large_echo(&lab, to);
        let before = lab.list();
        large_exchange(&lab, host, to).unwrap_or_else(|e| panic!("{host} -> {to}: {e}"));
        let after = lab.list();
        // Out in five fragments (six for IPv6, whose fragment header takes 8 bytes of
        // each): the first admitted by the rule, the rest following it on its line; back
        // alike, on its ESTABLISHED line.
        let (out, back) = (moved(&before, &after, "OUTPUT", "dns"), moved(&before, &after, "INPUT", "dns"));
        assert!(out >= 5 && back >= 5, "{host} -> {to}: {out} fragments out and {back} back on dns's lines");
        assert_eq!(moved(&before, &after, "INPUT", "fragment-orphan"), 0);
    }
}

#[test]
fn fragments_of_what_no_rule_admits_drop_on_their_own_lines() {
    let lab = Lab::new("fragments-strangers");
    lab.up();
    // A stranger's large datagram to a closed port: its first fragment meets INPUT's
    // policy, the rest follow no first.
    let to = SocketAddr::new(IpAddr::V4(HOST), 9999);
    let before = lab.list();
    let socket =
        lab.run_in(&lab.client, || UdpSocket::bind(SocketAddr::new(IpAddr::V4(STRANGER), 0))).expect("bind");
    socket.send_to(&vec![0u8; LARGE], to).expect("sending");
    std::thread::sleep(Duration::from_millis(300));
    let after = lab.list();
    assert_eq!(after.policy("INPUT") - before.policy("INPUT"), 1, "the first fragment, on the policy");
    assert!(moved(&before, &after, "INPUT", "fragment-orphan") >= 4, "the later fragments, orphans");
}
