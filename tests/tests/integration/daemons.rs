//! A real lab: the daemons and clients of Debian's packages on the lab's two hosts, each
//! service of the seed shown to work before `up`, then open to its peer and closed to a
//! stranger with examples/tight.toml attached, and the listing's counters to match.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration daemons::`. The programs are those
//! `cargo xtask setup` installs (see tests/src/daemons.rs).
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::{Duration, Instant},
};

use tests::{
    daemons::{
        self, CURL_TIMED_OUT, DNS_ANSWER, Run, answered, delivered, dropped, line_packets, moved, nmap,
        said_ok, synced,
    },
    lab::{HOST, Lab, SERVER_IF, STRANGER, STRANGER2, sh},
    require_root,
};

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn sock(addr: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(addr, port)
}

/// Runs the jobs at once (a blocked client costs its whole timeout) and returns their
/// results in order.
fn together<'a, T: Send>(jobs: Vec<Box<dyn FnOnce() -> T + Send + 'a>>) -> Vec<T> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs.into_iter().map(|job| scope.spawn(job)).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

fn timed_out(run: &Run) -> bool {
    !run.ok() && format!("{}{}", run.stdout, run.stderr).contains("timed out")
}

/// sshd on the seed's port 122: the listed peer logs in with its key, a stranger's
/// connection times out.
#[test]
fn ssh_logs_in_from_its_peer_and_times_out_from_a_stranger() {
    require_root();
    let started = Instant::now();
    let lab = Lab::new("d-ssh");
    let peer = ip(203, 0, 113, 7);
    let sshd = daemons::sshd(&lab, sock(HOST, 122));

    // Without the filter both log in: what fails later fails by the filter's doing.
    let runs =
        together(vec![Box::new(|| sshd.ssh(&lab, peer, 10)), Box::new(|| sshd.ssh(&lab, STRANGER, 10))]);
    for run in &runs {
        assert!(said_ok(run), "before up: {}", run.describe());
    }

    lab.up();
    let before = lab.list();
    let runs =
        together(vec![Box::new(|| sshd.ssh(&lab, peer, 10)), Box::new(|| sshd.ssh(&lab, STRANGER, 3))]);
    let after = lab.list();
    assert!(said_ok(&runs[0]), "the ssh-in peer after up: {}", runs[0].describe());
    assert!(timed_out(&runs[1]), "a stranger's ssh after up must time out: {}", runs[1].describe());
    let log = sshd.daemon.log_text();
    assert_eq!(
        log.matches(&format!("Accepted publickey for root from {STRANGER} ")).count(),
        1,
        "the stranger logged in before up only:\n{log}"
    );

    // A whole session (key exchange, authentication, the command, the close) both ways.
    let (into, out_of) =
        (moved(&before, &after, "INPUT", "ssh-in"), moved(&before, &after, "OUTPUT", "ssh-in"));
    assert!(into >= 8, "INPUT ssh-in (NEW,ESTABLISHED) counted {into} packets of the session");
    assert!(out_of >= 8, "OUTPUT ssh-in (ESTABLISHED) counted {out_of} packets of the session");
    // The stranger's SYN and its retransmission (at 1 s, and 3 s) met INPUT's policy;
    // the server never answered it, and every answer to the peer went out.
    let refused = dropped(&before, &after, "INPUT");
    assert!(refused >= 2, "INPUT policy counted {refused} of the stranger's SYNs");
    assert_eq!(dropped(&before, &after, "OUTPUT"), 0, "OUTPUT policy dropped something");
    eprintln!("ssh: {:.1?}; ssh-in in/out {into}/{out_of}, INPUT policy {refused}", started.elapsed());
}

/// dnsmasq on a DNSIPS server answers over UDP and TCP; one on a stranger times out.
#[test]
fn dns_queries_reach_the_listed_server_over_udp_and_tcp_and_nothing_else() {
    require_root();
    let started = Instant::now();
    let lab = Lab::new("d-dns");
    let (server, rogue) = (ip(198, 51, 100, 53), STRANGER2);
    for addr in [server, rogue] {
        let dnsmasq = daemons::dnsmasq(&lab, addr);
        dnsmasq.wait_ready("answering over UDP", || answered(&daemons::dig(&lab, HOST, addr, false, 1)));
        let tcp = daemons::dig(&lab, HOST, addr, true, 5);
        assert!(answered(&tcp), "before up, over TCP: {}", tcp.describe());
    }

    lab.up();
    let before = lab.list();
    let runs = together(vec![
        Box::new(|| daemons::dig(&lab, HOST, server, false, 5)),
        Box::new(|| daemons::dig(&lab, HOST, server, true, 5)),
        Box::new(|| daemons::dig(&lab, HOST, rogue, false, 2)),
        Box::new(|| daemons::dig(&lab, HOST, rogue, true, 2)),
    ]);
    let after = lab.list();
    for run in &runs[..2] {
        assert!(answered(run), "{server} after up must answer {DNS_ANSWER}: {}", run.describe());
    }
    for run in &runs[2..] {
        assert!(timed_out(run) && !answered(run), "{rogue} after up must time out: {}", run.describe());
    }

    // The UDP query and the TCP session went out as NEW on OUTPUT, their answers came
    // back as ESTABLISHED on INPUT.
    let (out, back) = (moved(&before, &after, "OUTPUT", "dns"), moved(&before, &after, "INPUT", "dns"));
    assert!(out >= 4, "OUTPUT dns counted {out}: the UDP query and a TCP session at least");
    assert!(back >= 3, "INPUT dns counted {back}: the UDP answer and a TCP session's answers at least");
    // The queries to the stranger died on the way out (a UDP query, a SYN at least).
    let stopped = dropped(&before, &after, "OUTPUT");
    assert!(stopped >= 2, "OUTPUT policy counted {stopped} of the queries to {rogue}");
    assert_eq!(dropped(&before, &after, "INPUT"), 0, "INPUT policy dropped an answer");
    eprintln!("dns: {:.1?}; dns out/in {out}/{back}, OUTPUT policy {stopped}", started.elapsed());
}

/// chronyd serving NTP on an NTPIPS server gives a one-shot chronyd its sample; one on
/// a stranger never answers.
#[test]
fn ntp_reaches_the_listed_server_and_no_other() {
    require_root();
    let started = Instant::now();
    let lab = Lab::new("d-ntp");
    let (server, rogue) = (ip(198, 51, 100, 123), STRANGER2);
    for addr in [server, rogue] {
        let chronyd = daemons::chronyd_server(&lab, addr);
        chronyd.wait_ready("serving NTP", || synced(&daemons::ntp_query(&lab, HOST, addr, 2)));
    }

    lab.up();
    let before = lab.list();
    let runs = together(vec![
        Box::new(|| daemons::ntp_query(&lab, HOST, server, 10)),
        Box::new(|| daemons::ntp_query(&lab, HOST, rogue, 3)),
    ]);
    let after = lab.list();
    assert!(synced(&runs[0]), "{server} after up: {}", runs[0].describe());
    assert!(!runs[1].ok() && !synced(&runs[1]), "{rogue} after up must not answer: {}", runs[1].describe());

    let (out, back) = (moved(&before, &after, "OUTPUT", "ntp"), moved(&before, &after, "INPUT", "ntp"));
    assert!(out >= 1, "OUTPUT ntp (NEW) counted no request");
    assert!(back >= 1, "INPUT ntp (ESTABLISHED) counted no answer");
    assert!(back <= out, "INPUT ntp counted {back} answers to {out} requests");
    let stopped = dropped(&before, &after, "OUTPUT");
    assert!(stopped >= 1, "OUTPUT policy counted none of the requests to {rogue}");
    assert_eq!(dropped(&before, &after, "INPUT"), 0, "INPUT policy dropped an answer");
    eprintln!("ntp: {:.1?}; ntp out/in {out}/{back}, OUTPUT policy {stopped}", started.elapsed());
}

/// HTTP out to the repository and an allowed web server, not to a stranger; HTTP in on
/// 80 and 443 from anyone, not on 8080.
#[test]
fn http_out_to_the_repository_and_allowed_sites_and_in_on_80_and_443_only() {
    require_root();
    let started = Instant::now();
    let lab = Lab::new("d-http");
    let repo = sock(ip(203, 0, 113, 80), 80);
    let site = sock(ip(203, 0, 113, 90), 80);
    let elsewhere = sock(STRANGER, 80);
    let ours = [sock(HOST, 80), sock(HOST, 443), sock(HOST, 8080)];
    // (client, server, its page)
    let mut fetches = Vec::new();
    for to in [repo, site, elsewhere] {
        let (_, page) = daemons::http_server(&lab, to);
        fetches.push((HOST, to, page));
    }
    for to in ours {
        let (_, page) = daemons::http_server(&lab, to);
        fetches.push((STRANGER, to, page));
    }
    let fetch_all = |open_only: bool| -> Vec<Run> {
        together(
            fetches
                .iter()
                .map(|&(from, to, _)| {
                    let blocked = !open_only && (to == elsewhere || to.port() == 8080);
                    let lab = &lab;
                    Box::new(move || daemons::curl(lab, from, to, if blocked { 3 } else { 10 }))
                        as Box<dyn FnOnce() -> Run + Send>
                })
                .collect(),
        )
    };
    for (run, (from, to, page)) in fetch_all(true).iter().zip(&fetches) {
        assert!(
            run.ok() && run.stdout.contains(page.as_str()),
            "before up, {from} -> {to}: {}",
            run.describe()
        );
    }

    lab.up();
    let before = lab.list();
    let runs = fetch_all(false);
    let after = lab.list();
    for (run, (from, to, page)) in runs.iter().zip(&fetches) {
        if *to == elsewhere || to.port() == 8080 {
            assert_eq!(
                run.code(),
                Some(CURL_TIMED_OUT),
                "after up, {from} -> {to} must time out: {}",
                run.describe()
            );
        } else {
            assert!(
                run.ok() && run.stdout.contains(page.as_str()),
                "after up, {from} -> {to}: {}",
                run.describe()
            );
        }
    }

    // Each admitted fetch is a whole TCP session: its opening side's line counts the SYN,
    // the ACK and the request at least, the other side's the SYN-ACK and the page.
    for (chain_new, chain_back, rule, sessions) in
        [("OUTPUT", "INPUT", "repo", 1), ("OUTPUT", "INPUT", "web-out", 1), ("INPUT", "OUTPUT", "web-in", 2)]
    {
        let opened = moved(&before, &after, chain_new, rule);
        let answered = moved(&before, &after, chain_back, rule);
        eprintln!("http: {rule}: {chain_new} {opened}, {chain_back} {answered}");
        assert!(opened >= 3 * sessions, "{chain_new} {rule} (NEW) counted {opened}");
        assert!(answered >= 2 * sessions, "{chain_back} {rule} (ESTABLISHED) counted {answered}");
    }
    let (input, output) = (dropped(&before, &after, "INPUT"), dropped(&before, &after, "OUTPUT"));
    assert!(input >= 1, "INPUT policy counted none of the stranger's SYNs to 8080");
    assert!(output >= 1, "OUTPUT policy counted none of the SYNs to {elsewhere}");
    eprintln!("http: {:.1?}; INPUT/OUTPUT policy {input}/{output}", started.elapsed());
}

/// Mail in from the MAILIN relay is delivered (the seed's iptables, with no return rule
/// for it, never could), a stranger's is not; mail out reaches the MAILOUT smart host
/// and no other server.
#[test]
fn mail_is_delivered_in_from_the_relay_and_out_through_the_smart_host_only() {
    require_root();
    let started = Instant::now();
    let lab = Lab::new("d-smtp");
    let relay = ip(203, 0, 113, 25);
    let ours = daemons::smtp_server(&lab, sock(HOST, 25));
    let smarthost = daemons::smtp_server(&lab, sock(ip(198, 51, 100, 25), 25));
    let elsewhere = daemons::smtp_server(&lab, sock(STRANGER, 25));
    // (client, server, may it pass)
    let deliveries = [
        (relay, sock(HOST, 25), &ours, true),
        (STRANGER, sock(HOST, 25), &ours, false),
        (HOST, sock(ip(198, 51, 100, 25), 25), &smarthost, true),
        (HOST, sock(STRANGER, 25), &elsewhere, false),
    ];
    let send_all = |when: &'static str, expect_blocks: bool| -> Vec<Run> {
        together(
            deliveries
                .iter()
                .map(|&(from, to, _, allowed)| {
                    let lab = &lab;
                    let timeout = if expect_blocks && !allowed { 3 } else { 10 };
                    Box::new(move || {
                        daemons::send_mail(lab, from, to, &format!("{when} {from} -> {to}"), timeout)
                    }) as Box<dyn FnOnce() -> Run + Send>
                })
                .collect(),
        )
    };
    for (run, (from, to, server, _)) in send_all("before", false).iter().zip(&deliveries) {
        assert!(run.ok(), "before up, {from} -> {to}: {}", run.describe());
        assert!(
            delivered(server, *from, &format!("before {from} -> {to}")),
            "before up, {from} -> {to}: not in the server's log:\n{}",
            server.log_text()
        );
    }

    lab.up();
    let before = lab.list();
    let runs = send_all("after", true);
    let after = lab.list();
    for (run, (from, to, server, allowed)) in runs.iter().zip(&deliveries) {
        let subject = format!("after {from} -> {to}");
        if *allowed {
            assert!(run.ok(), "after up, {from} -> {to}: {}", run.describe());
            assert!(
                delivered(server, *from, &subject),
                "after up, {from} -> {to}: not delivered:\n{}",
                server.log_text()
            );
        } else {
            assert!(timed_out(run), "after up, {from} -> {to} must time out: {}", run.describe());
            assert!(!delivered(server, *from, &subject), "after up, {from} -> {to} was delivered");
        }
    }

    // A whole SMTP session each way: greeting, EHLO, MAIL, RCPT, DATA, QUIT. The mail-in
    // returns are the ones the seed has no line for.
    for (chain_new, chain_back, rule) in [("INPUT", "OUTPUT", "mail-in"), ("OUTPUT", "INPUT", "mail-out")] {
        let opened = moved(&before, &after, chain_new, rule);
        let answered = moved(&before, &after, chain_back, rule);
        eprintln!("smtp: {rule}: {chain_new} {opened}, {chain_back} {answered}");
        assert!(opened >= 6, "{chain_new} {rule} (NEW) counted {opened}");
        assert!(answered >= 6, "{chain_back} {rule} (ESTABLISHED) counted {answered}");
    }
    let (input, output) = (dropped(&before, &after, "INPUT"), dropped(&before, &after, "OUTPUT"));
    assert!(input >= 2, "INPUT policy counted {input} of the stranger's SYNs to port 25");
    assert!(output >= 2, "OUTPUT policy counted {output} of the SYNs to {STRANGER}:25");
    eprintln!("smtp: {:.1?}; INPUT/OUTPUT policy {input}/{output}", started.elapsed());
}

/// nmap from the world: a stranger's SYN scan finds the web ports open and every other
/// filtered; its NULL, FIN and XMAS scans get no answer at all and are counted as
/// invalid; the SSH peer's SYN scan finds SSH open.
#[test]
fn nmap_scans_see_only_what_the_policy_offers() {
    require_root();
    let started = Instant::now();
    let lab = Lab::new("d-nmap");
    let ports = [22, 25, 80, 122, 443, 8080];
    // Something listens on every port but 22.
    for port in [25, 80, 122, 443, 8080] {
        lab.tcp_echo(sock(HOST, port));
    }
    let state = |scan: &std::collections::BTreeMap<u16, String>, port: u16| scan[&port].clone();

    let syn = nmap(&lab, STRANGER, HOST, &ports, 'S');
    for port in ports {
        let want = if port == 22 { "closed" } else { "open" };
        assert_eq!(state(&syn, port), want, "before up, SYN scan, port {port}: {syn:?}");
    }
    let null = nmap(&lab, STRANGER, HOST, &ports, 'N');
    assert_eq!(state(&null, 22), "closed", "before up, a NULL scan gets the closed port's RST: {null:?}");

    lab.up();
    let before = lab.list();
    let syn = nmap(&lab, STRANGER, HOST, &ports, 'S');
    for port in ports {
        let want = if port == 80 || port == 443 { "open" } else { "filtered" };
        assert_eq!(state(&syn, port), want, "after up, a stranger's SYN scan, port {port}: {syn:?}");
    }
    let after_syn = lab.list();
    for scan in ['N', 'F', 'X'] {
        let states = nmap(&lab, STRANGER, HOST, &ports, scan);
        for port in ports {
            assert_eq!(
                state(&states, port),
                "open|filtered",
                "after up, -s{scan} scan, port {port}: {states:?}"
            );
        }
    }
    let after_flags = lab.list();
    let peer = ip(203, 0, 113, 7);
    let from_peer = nmap(&lab, peer, HOST, &[22, 25, 122], 'S');
    assert_eq!(state(&from_peer, 122), "open", "the ssh-in peer's SYN scan: {from_peer:?}");
    assert_eq!(state(&from_peer, 25), "filtered", "the ssh-in peer is not the mail relay: {from_peer:?}");
    assert_eq!(state(&from_peer, 22), "filtered", "the ssh-in peer's SYN scan: {from_peer:?}");
    let after_peer = lab.list();

    // The SYN scan: a SYN each to 80 and 443 on web-in, their SYN-ACKs out on it; the
    // four others met INPUT's policy (with nmap's retry, twice each).
    assert!(moved(&before, &after_syn, "INPUT", "web-in") >= 2, "INPUT web-in: the SYNs to 80 and 443");
    assert!(moved(&before, &after_syn, "OUTPUT", "web-in") >= 2, "OUTPUT web-in: the SYN-ACKs");
    let refused = dropped(&before, &after_syn, "INPUT");
    assert!(refused >= 4, "INPUT policy counted {refused} SYNs of the scan, expected >= 4");
    assert_eq!(dropped(&before, &after_syn, "OUTPUT"), 0, "OUTPUT policy dropped an answer");
    // NULL, FIN and XMAS: every probe (each port, each scan, nmap's retry included) is
    // INVALID, and nothing else saw them.
    let invalid = moved(&after_syn, &after_flags, "INPUT", "invalid-tcp-flags");
    let least = (ports.len() * 3) as u64;
    assert!(invalid >= least, "INPUT invalid-tcp-flags counted {invalid}, expected >= {least}");
    assert_eq!(dropped(&after_syn, &after_flags, "INPUT"), 0, "a flag scan probe fell to the policy");
    assert_eq!(moved(&after_syn, &after_flags, "INPUT", "web-in"), 0, "a flag scan probe was admitted");
    assert_eq!(moved(&after_syn, &after_flags, "OUTPUT", "web-in"), 0, "the server answered a flag scan");
    // The peer's SYN to 122 on ssh-in, the SYN-ACK back.
    assert!(moved(&after_flags, &after_peer, "INPUT", "ssh-in") >= 1, "INPUT ssh-in: the peer's SYN");
    assert!(moved(&after_flags, &after_peer, "OUTPUT", "ssh-in") >= 1, "OUTPUT ssh-in: the SYN-ACK");
    eprintln!(
        "nmap: {:.1?}; SYN scan INPUT policy {refused}, flag scans invalid-tcp-flags {invalid}",
        started.elapsed()
    );
}

/// SYNs from spoofed martian sources are counted on their anti-spoof lines and SYN+FIN
/// from an allowed peer as invalid; the server answers none of them.
#[test]
fn spoofed_and_impossible_segments_are_dropped_on_their_own_lines_unanswered() {
    require_root();
    let started = Instant::now();
    let lab = Lab::new("d-spoof");
    let port = 122;
    lab.tcp_echo(sock(HOST, port));
    let peer = ip(203, 0, 113, 7);
    let martians = [
        (ip(10, 1, 2, 3), "10.0.0.0/8"),
        (ip(192, 168, 7, 7), "192.168.0.0/16"),
        (ip(169, 254, 1, 1), "169.254.0.0/16"),
    ];
    // The server answers a spoofed SYN into the client's veth (through the stranger as
    // a gateway, whose namespace drops it after scapy has seen it), so that silence after
    // up is the filter's doing and not a missing route.
    for (martian, _) in martians {
        sh(Command::new("ip").args(["-n", &lab.server, "route", "add", &format!("{martian}/32")]).args([
            "via",
            &STRANGER.to_string(),
            "dev",
            SERVER_IF,
        ]));
    }
    let mut probes: Vec<(Ipv4Addr, &str)> = martians.iter().map(|&(m, _)| (m, "S")).collect();
    probes.push((peer, "SF"));
    // The control: the peer's plain SYN, answered before and after.
    probes.push((peer, "S"));
    let wait = Duration::from_secs(2);

    let answers = daemons::tcp_probes(&lab, HOST, port, 2, 41000, wait, &probes);
    for (martian, _) in martians {
        assert_eq!(
            answers.get(&format!("{martian}:S")),
            Some(&vec!["SA".to_owned(); 2]),
            "before up: {answers:?}"
        );
    }
    assert_eq!(answers.get(&format!("{peer}:S")), Some(&vec!["SA".to_owned(); 2]), "before up: {answers:?}");

    lab.up();
    let before = lab.list();
    let count = 3;
    let answers = daemons::tcp_probes(&lab, HOST, port, count, 42000, wait, &probes);
    let after = lab.list();
    let mut expected = std::collections::BTreeMap::new();
    expected.insert(format!("{peer}:S"), vec!["SA".to_owned(); count as usize]);
    assert_eq!(answers, expected, "after up, only the peer's plain SYNs may be answered");

    for (martian, prefix) in martians {
        let counted = line_packets(&after, "INPUT", "antispoof", prefix)
            - line_packets(&before, "INPUT", "antispoof", prefix);
        assert_eq!(counted, u64::from(count), "the antispoof {prefix} line, for SYNs from {martian}");
    }
    let other = line_packets(&after, "INPUT", "antispoof", "172.16.0.0/12")
        - line_packets(&before, "INPUT", "antispoof", "172.16.0.0/12");
    assert_eq!(other, 0, "the antispoof 172.16.0.0/12 line counted another's packets");
    let invalid = moved(&before, &after, "INPUT", "invalid-tcp-flags");
    assert_eq!(invalid, u64::from(count), "INPUT invalid-tcp-flags, for the SYN+FINs from {peer}");
    // The control SYNs were admitted (and the client's RSTs to the unexpected SYN-ACKs).
    assert!(moved(&before, &after, "INPUT", "ssh-in") >= u64::from(count), "INPUT ssh-in: the peer's SYNs");
    assert!(moved(&before, &after, "OUTPUT", "ssh-in") >= u64::from(count), "OUTPUT ssh-in: the SYN-ACKs");
    assert_eq!(dropped(&before, &after, "INPUT"), 0, "INPUT policy: every probe has its own line");
    eprintln!("spoof: {:.1?}", started.elapsed());
}

/// The addresses on `s0` in the server namespace, as `ip -4 addr` shows them.
fn server_addresses(lab: &Lab) -> String {
    let out = sh(Command::new("ip").args(["-n", &lab.server, "-4", "-o", "addr", "show", "dev", SERVER_IF]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dnsmasq serves DHCP on the world's side from a private address; ISC dhclient on the
/// filtered interface, with examples/tight.toml attached, gets a lease and renews it (the
/// server's T1 is seconds), counted on the `dhcp` lines and on no drop. With `dhcp = false`,
/// reloaded, no lease comes: the DISCOVER from 0.0.0.0 meets OUTPUT's source check.
#[test]
fn the_dhcp_client_gets_a_lease_and_renews_it_through_the_filter_and_none_with_dhcp_off() {
    let lab = Lab::new("dhcp");
    let policy = lab.policy_file();
    lab.up_with(&policy);
    let _server = daemons::dhcp_server(&lab);
    let before = lab.list();

    let client = daemons::dhclient(&lab, "on");
    let bound = client.wait_for("BOUND", Duration::from_secs(15));
    let leased = bound.split(' ').nth(1).expect("BOUND names the address").to_owned();
    assert!(leased.starts_with("10.99.0."), "{bound}");
    assert!(server_addresses(&lab).contains(&format!("inet {leased}/24")), "{}", server_addresses(&lab));
    // The renewal: a REQUEST from the leased address to the server, its ACK back.
    let renewed = client.wait_for("RENEW", Duration::from_secs(u64::from(daemons::DHCP_RENEWAL_SECS) + 10));
    assert_eq!(renewed, format!("RENEW {leased}"));
    client.stop(&lab);
    let after = lab.list();
    // DISCOVER, REQUEST, the renewal's REQUEST out; OFFER, ACK, the renewal's ACK in.
    assert!(moved(&before, &after, "OUTPUT", "dhcp") >= 3, "{:#}", after.chain("OUTPUT"));
    assert!(moved(&before, &after, "INPUT", "dhcp") >= 3, "{:#}", after.chain("INPUT"));
    for chain in ["INPUT", "OUTPUT", "FORWARD"] {
        assert_eq!(dropped(&before, &after, chain), 0, "{chain}");
    }
    assert_eq!(after.packets("OUTPUT", "antispoof-source"), before.packets("OUTPUT", "antispoof-source"));
    sh(Command::new("ip").args([
        "-n",
        &lab.server,
        "addr",
        "del",
        &format!("{leased}/24"),
        "dev",
        SERVER_IF,
    ]));

    // `dhcp = false`, reloaded: no lease within the client's bounded wait.
    let text = std::fs::read_to_string(&policy).expect("the lab's policy");
    std::fs::write(&policy, text.replacen("[host]\n", "[host]\ndhcp = false\n", 1)).expect("writing it");
    lab.firewall_ok(&["reload", "--iface", SERVER_IF]);
    let before = lab.list();
    let (run, events) = daemons::dhclient_once(&lab, "off", 4);
    assert!(!run.ok(), "a lease with dhcp = false: {events:?}\n{}", run.describe());
    assert!(!events.iter().any(|e| e.starts_with("BOUND")), "{events:?}");
    assert!(!server_addresses(&lab).contains("10.99.0."), "{}", server_addresses(&lab));
    let after = lab.list();
    let lines = |l: &tests::lab::Listing, chain| l.chain(chain)["rules"].to_string();
    assert!(!lines(&after, "INPUT").contains("\"dhcp\""), "no dhcp line with dhcp = false");
    assert!(
        after.packets("OUTPUT", "antispoof-source") > before.packets("OUTPUT", "antispoof-source"),
        "the DISCOVERs from 0.0.0.0 drop on OUTPUT's source check"
    );
}
