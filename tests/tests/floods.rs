//! Floods in the lab: netsniff-ng's trafgen in the client namespace, the real `firewall`
//! binary attached to `s0` with examples/tight.toml, real daemons and sockets on both
//! sides, and the proof in the filter's own counters, its pinned maps and the veth's
//! statistics (tests/src/flood.rs has the pieces).
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test floods -- --nocapture` prints each flood's
//! figures. The sizes below fit CI on two CPUs; `FLOOD_SCALE=10` multiplies every one.
use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use firewall_common::{
    Builtin, Chain, Direction, FlowKey, FlowTable, Line, PROTO_TCP, PROTO_UDP, TCP_OPEN, builtin_counter,
};
use tests::{
    daemons::{self, dropped, line_packets, moved, said_ok},
    flood::{
        LinkStats, Pinned, Sender, SshSession, Trafgen, conntrack_json, count_datagrams, count_echo_replies,
        eth_header, flow_key, link_stats, pin_to_cpu, pin_tx_queues_to_cpus, possible_cpus, scaled,
        set_queues,
    },
    lab::{CLIENT_IF, HOST, Lab, Outcome, SERVER_IF, STRANGER, ping_received, sh},
    require_root,
};

/// SYNs in the conntrack flood: 61 half-open tables of examples/tight.toml's 16,384
/// entries (15 of its established table's 65,536), 11 to 16 s here (the server answers
/// every one with a SYN-ACK, which holds the rate to 60,000–90,000 a second on two CPUs).
const SYN_FLOOD: u64 = 1_000_000;
/// How long the ping flood runs.
const PING_FLOOD: Duration = Duration::from_secs(6);
/// Spoofed datagrams in the martian flood, a multiple of the 8 anti-spoof sources and
/// the 2 sending CPUs: a few seconds of trafgen's TX ring here.
const MARTIAN_FLOOD: u64 = 3_000_000;

/// Every probe of a service must answer within this, flood or not.
const PROBE_WITHIN: Duration = Duration::from_secs(5);

const SSH_PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const DNS_SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);
const WEB: SocketAddrV4 = SocketAddrV4::new(HOST, 80);

/// The floods share two CPUs with everything else: one at a time.
static ONE_FLOOD: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_FLOOD.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `[conntrack]` table sizes of the policy file `up` was given: established, half-open.
fn table_sizes(policy: &std::path::Path) -> (u64, u64) {
    let policy = firewall_user::policy::load(policy).unwrap_or_else(|e| panic!("{e}"));
    (u64::from(policy.conntrack.max_entries), u64::from(policy.conntrack.max_half_open))
}

/// A UDP exchange between the host and the DNS server (the `dns` rule, `out`), its two
/// sockets kept so that the flow can be used again later, from either end.
struct OutFlow {
    host: UdpSocket,
    server: UdpSocket,
    key: FlowKey,
}

impl OutFlow {
    fn open(lab: &Lab) -> OutFlow {
        let server =
            lab.run_in(&lab.client, || UdpSocket::bind(SocketAddrV4::new(DNS_SERVER, 53))).expect("bind");
        let host = lab.run_in(&lab.server, || UdpSocket::bind(SocketAddrV4::new(HOST, 0))).expect("bind");
        host.connect(SocketAddrV4::new(DNS_SERVER, 53)).expect("connect");
        for s in [&host, &server] {
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("read timeout");
        }
        let key = flow_key(DNS_SERVER, 53, host.local_addr().expect("bound").port(), PROTO_UDP);
        OutFlow { host, server, key }
    }

    /// The host asks, the server answers: whether the answer came back.
    fn exchange(&self) -> bool {
        let mut buf = [0u8; 64];
        self.host.send(b"query").expect("send");
        let Ok((_, from)) = self.server.recv_from(&mut buf) else { return false };
        self.server.send_to(b"answer", from).expect("send_to");
        matches!(self.host.recv(&mut buf), Ok(n) if &buf[..n] == b"answer")
    }

    /// The server speaks first, on the flow the host opened earlier.
    fn late_answer_arrives(&self) -> bool {
        let mut buf = [0u8; 64];
        self.server.send_to(b"late", self.host.local_addr().expect("bound")).expect("send_to");
        matches!(self.host.recv(&mut buf), Ok(n) if &buf[..n] == b"late")
    }
}

/// The TCP counters of namespace `ns` that tell why a connection failed (`nstat`, the
/// history file left as it was).
fn tcp_counters(ns: &str) -> String {
    let counters = [
        "TcpOutRsts",
        "TcpExtListenDrops",
        "TcpExtListenOverflows",
        "TcpExtTCPReqQFullDrop",
        "TcpExtSyncookiesSent",
        "TcpExtSyncookiesFailed",
        "TcpExtTCPAbortOnData",
        "TcpExtTCPAbortOnClose",
    ];
    match Command::new("ip").args(["netns", "exec", ns, "nstat", "-asz"]).args(counters).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" "),
        Err(e) => format!("(nstat: {e})"),
    }
}

/// One probe of the live SSH session during the flood.
#[derive(Debug)]
struct SessionProbe {
    /// Whether the session's conntrack entry was there just before.
    tracked_before: bool,
    answered: Result<Duration, String>,
}

#[test]
fn a_syn_flood_fills_the_half_open_table_while_a_live_ssh_session_keeps_answering() {
    require_root();
    let _one = one_at_a_time();
    let started = Instant::now();
    let lab = Lab::new("flood-syn");
    let sshd = daemons::sshd(&lab, SSH);
    // The flood comes from trafgen's one process on CPU 0, and a veth runs the XDP
    // program on the CPU that sent: CPU 0. The kernel's LRU evicts from the lists of the
    // CPU that inserts (kernel/bpf/bpf_lru_list.c): a flow another CPU inserted is out of
    // the flood's reach (an idle session there outlived 800,000 SYNs when one table held
    // every flow). On a real NIC every CPU takes its share of a flood; the session's two
    // ends on CPU 0 meet it so.
    pin_to_cpu(sshd.daemon.pid, 0);
    // A listening socket on the open service: every SYN of the flood reaches it.
    lab.tcp_echo(WEB);
    // The flood's sources, 100.64.0.0/16 (shared address space: no anti-spoof entry
    // lists it), routed through the stranger: the server's SYN-ACKs leave by s0 to one
    // neighbour and die in the client namespace, which forwards nothing.
    sh(Command::new("ip")
        .args(["-n", &lab.server, "route", "add", "100.64.0.0/16", "via"])
        .arg(STRANGER.to_string())
        .args(["dev", SERVER_IF]));
    lab.up();
    let (max, max_half_open) = table_sizes(&lab.policy_file());
    let pinned = Pinned::open(&lab);

    // The session, and an idle out flow, both opened before the flood: heard both ways,
    // in the established table.
    let mut session = SshSession::open(&lab, &sshd, SSH_PEER, Some(0));
    let flows = conntrack_json(&lab);
    let ssh_flow = flows
        .iter()
        .find(|f| f["rule"] == "ssh-in" && f["src"] == SSH_PEER.to_string())
        .unwrap_or_else(|| panic!("no ssh-in flow from {SSH_PEER} in {flows:#?}"));
    assert_eq!(ssh_flow["table"], "established", "{ssh_flow}");
    let ssh_key =
        flow_key(SSH_PEER, ssh_flow["sport"].as_u64().expect("a port") as u16, SSH.port(), PROTO_TCP);
    assert!(pinned.flow(&ssh_key).is_some(), "the session's flow is established before the flood");
    let dns = OutFlow::open(&lab);
    assert!(dns.exchange(), "the dns exchange before the flood");
    let dns_at = Instant::now();
    assert!(pinned.flow(&dns.key).is_some(), "the dns flow is established before the flood");

    // Distinct 5-tuples: the source's last two bytes count through 65,536 values while
    // the source port counts through 63,977 (odd, so the pair repeats only after their
    // product, 4.2 billion).
    let config = format!(
        "{{\n  {},\n  ipv4(saddr=100.64.0.0, saddr[2:2]=dinc(), daddr={HOST}, ttl=64),\n  \
         tcp(sp=dinc(1024, 65000), dp={}, syn, window=64240),\n}}\n",
        eth_header(&lab),
        WEB.port()
    );
    let web_new = pinned.rule_counter("web-in", Line::New);
    let syns = || -> u64 { pinned.per_cpu_packets(web_new).iter().sum() };
    let before = lab.list();
    let (c0_before, s0_before) = both_ends(&lab);
    let count = scaled(SYN_FLOOD);
    let limit = Duration::from_secs(120 + count / 5_000);
    let syns_before = syns();
    let flood_started = Instant::now();
    // Until stopped, after at least `count` SYNs: the steps below take what time the
    // machine gives them (a login under the flood took 4 s on a busy one), and each must
    // meet the flood, not its end.
    let mut trafgen = Trafgen::start(&lab, "syn-flood", &config, Sender::Sendto, None);

    // Until the half-open table is full nothing is evicted.
    while syns() - syns_before < max_half_open && trafgen.running() && flood_started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        syns() - syns_before >= max_half_open,
        "the flood ended before filling the table: {} SYNs",
        syns()
    );

    // A new login from the listed peer, in the middle of the flood. Its client, sshd and
    // the flood share CPU 0, and once, on a loaded CI machine, the server reset a login's
    // connection before the banners while the filter dropped nothing of it (INPUT's
    // policy is asserted untouched below). A user tries again; so does the test, up to
    // three times, and prints each failure with sshd's log and the server's TCP counters.
    let mut failed_logins = Vec::new();
    let login_during = loop {
        let login = sshd.ssh(&lab, SSH_PEER, 10);
        if said_ok(&login) || failed_logins.len() == 2 {
            break login;
        }
        failed_logins.push(format!(
            "{}sshd's log:\n{}server's TCP counters: {}",
            login.describe(),
            sshd.daemon.log_text(),
            tcp_counters(&lab.server)
        ));
    };
    // 1. In use: probe after probe, the entry stays.
    let mut busy = Vec::new();
    for _ in 0..10 {
        let tracked_before = pinned.flow(&ssh_key).is_some();
        let answered = session.probe(PROBE_WITHIN);
        busy.push(SessionProbe { tracked_before, answered });
        std::thread::sleep(Duration::from_millis(20));
    }
    // 2. Idle while the flood sends two whole tables' worth of each kind (the session's
    // entry would have gone, idle for 1.2 tables' worth, when the SYNs' flows shared its
    // table), then the server speaks first: a command that answers when told to (a file
    // appears), so that the first packet after the idle time is the server's.
    let flag = lab.tmp().join("speak");
    session
        .ask_later(&format!("while [ ! -e {} ]; do sleep 0.02; done; echo spoke", flag.display()))
        .expect("writing into the session");
    std::thread::sleep(Duration::from_millis(200));
    let idle_from = syns();
    while syns() - idle_from < 2 * (max + max_half_open)
        && trafgen.running()
        && flood_started.elapsed() < limit
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let idle_syns = syns() - idle_from;
    let tracked_after_idle = pinned.flow(&ssh_key);
    std::fs::write(&flag, "").expect("the flag file");
    let server_first = session.wait_for("spoke", PROBE_WITHIN);
    // 3. And on, until the flood has sent its count.
    let mut during = Vec::new();
    while trafgen.running()
        && (during.len() < 3 || syns() - syns_before < count)
        && flood_started.elapsed() < limit
    {
        during.push(session.probe(PROBE_WITHIN));
        std::thread::sleep(Duration::from_millis(200));
    }
    let sent = trafgen.stop();
    assert!(sent.packets >= count, "the flood stopped after {} SYNs, short of {count}", sent.packets);
    let after = lab.list();
    let (c0_after, s0_after) = both_ends(&lab);
    let (c0, s0) = (c0_after.since(&c0_before), s0_after.since(&s0_before));

    // After: the tables, the session, new logins, the idle out flow.
    let half_open_walked = pinned.flow_count(FlowTable::HalfOpen) as u64;
    let established_walked = pinned.flow_count(FlowTable::Established) as u64;
    let listed = conntrack_json(&lab);
    let half_open_listed = listed.iter().filter(|f| f["table"] == "half_open").count() as u64;
    let tables = after.0["conntrack"].clone();
    let after_probes: Vec<_> = (0..5).map(|_| session.probe(PROBE_WITHIN)).collect();
    let login_after = sshd.ssh(&lab, SSH_PEER, 10);
    let dns_tracked_after = pinned.flow(&dns.key).is_some();
    let dns_idle = dns_at.elapsed();
    let dns_late = dns.late_answer_arrives();
    let dns_again = dns.exchange();

    let (syn_new, synack_out) =
        (moved(&before, &after, "INPUT", "web-in"), moved(&before, &after, "OUTPUT", "web-in"));
    let (input_policy, output_policy) =
        (dropped(&before, &after, "INPUT"), dropped(&before, &after, "OUTPUT"));
    eprintln!(
        "syn flood: {} SYNs sent by trafgen in {:.1?} ({:.0}/s)",
        sent.packets,
        sent.elapsed,
        sent.packets as f64 / sent.elapsed.as_secs_f64()
    );
    eprintln!(
        "  XDP: web-in NEW {syn_new}; INPUT policy {input_policy}; veth c0 tx {} (dropped {}, sent again by trafgen), s0 rx {} (dropped {})",
        c0.tx_packets, c0.tx_dropped, s0.rx_packets, s0.rx_dropped
    );
    eprintln!(
        "  TC: web-in ESTABLISHED (SYN-ACKs) {synack_out}; OUTPUT policy {output_policy} (SYN-ACKs whose flow was evicted)"
    );
    eprintln!(
        "  conntrack: half-open {half_open_walked} entries walked, {half_open_listed} listed by `firewall conntrack`, max_half_open {max_half_open}; established {established_walked} walked; list: {tables}"
    );
    eprintln!("  session in use ({} probes): {busy:?}", busy.len());
    eprintln!(
        "  idle for {idle_syns} SYNs: entry then {tracked_after_idle:?}; then the server first: {server_first:?}"
    );
    eprintln!(
        "  later probes during the flood: {} of {} answered, slowest {:?}",
        during.iter().filter(|p| p.is_ok()).count(),
        during.len(),
        during.iter().filter_map(|p| p.as_ref().ok()).max()
    );
    eprintln!(
        "  after: probes {after_probes:?}; a new login {}; during: a new login {} after {} failed",
        said_ok(&login_after),
        said_ok(&login_during),
        failed_logins.len()
    );
    for failed in &failed_logins {
        eprintln!("  a login during the flood that failed: {failed}");
    }
    eprintln!(
        "  idle dns flow: tracked after the flood {dns_tracked_after}; the server's late datagram, {dns_idle:.1?} after the exchange, arrived {dns_late}; a new exchange {dns_again}"
    );
    eprintln!(
        "  ssh-in lines: INPUT {} OUTPUT {}; took {:.1?} in all",
        moved(&before, &after, "INPUT", "ssh-in"),
        moved(&before, &after, "OUTPUT", "ssh-in"),
        started.elapsed()
    );

    // The flood, accounted for: trafgen's every frame reached XDP (Sendto: refused ones
    // were sent again), each was a SYN the open rule admitted, and the veth lost none.
    assert_eq!(syn_new, sent.packets, "web-in's NEW line against the SYNs trafgen sent");
    assert_eq!(input_policy, 0, "nothing of the flood or the session met INPUT's policy");
    assert_eq!(c0.tx_packets, s0.rx_packets, "what c0 sent, s0 received");
    assert!(
        s0.rx_packets >= sent.packets,
        "s0 received {} frames, fewer than the flood's {}",
        s0.rx_packets,
        sent.packets
    );
    // Each SYN was answered; a SYN-ACK finds its flow, or (a retransmission, seconds
    // later) finds it evicted and meets OUTPUT's policy.
    assert!(
        synack_out + output_policy >= sent.packets,
        "SYN-ACKs: {synack_out} passed + {output_policy} dropped < {} SYNs",
        sent.packets
    );

    // The half-open table filled: every entry but the few free ones each CPU keeps at
    // hand (an LRU hash moves up to 128 free nodes at a time to a CPU's private list).
    let reserve = 128 * possible_cpus() as u64;
    for (what, n) in [("walking the pinned map", half_open_walked), ("firewall conntrack", half_open_listed)]
    {
        assert!(
            n <= max_half_open && n + reserve >= max_half_open,
            "{what}: {n} half-open entries, not within {reserve} of max_half_open {max_half_open}"
        );
    }
    // And evicted nearly every SYN's flow; nothing of the established table went.
    let evicted = |table: &str| tables[table]["evicted"].as_u64().unwrap_or_else(|| panic!("{tables}"));
    assert_eq!(evicted("established"), 0, "{tables}");
    assert!(evicted("half_open") + max_half_open >= sent.packets, "{tables}");
    assert!(established_walked < 100, "the SYNs reached the established table: {established_walked} entries");

    // The session kept working, in use, idle, and after; its entry never went.
    for (i, p) in busy.iter().enumerate() {
        assert!(p.answered.is_ok(), "probe {i} of the session in use: {p:?}");
        assert!(p.tracked_before, "the session's entry was evicted though in use: probe {i}: {p:?}");
    }
    assert!(
        idle_syns >= 2 * (max + max_half_open),
        "the flood ended {idle_syns} SYNs into the session's idle time"
    );
    let entry =
        tracked_after_idle.unwrap_or_else(|| panic!("the idle session's entry went after {idle_syns} SYNs"));
    assert_eq!((entry.origin, entry.tcp_state), (Direction::In as u8, TCP_OPEN), "{entry:?}");
    server_first.unwrap_or_else(|e| panic!("the idle session, server first: {e}"));
    assert!(!during.is_empty(), "the flood ended before the later probes");
    for (i, p) in during.iter().chain(&after_probes).enumerate() {
        assert!(p.is_ok(), "probe {i} of the session, later in the flood or after: {p:?}");
    }
    assert!(
        said_ok(&login_during),
        "a new login from {SSH_PEER} during the flood, the third try: {}sshd's log:\n{}server's TCP counters: {}",
        login_during.describe(),
        sshd.daemon.log_text(),
        tcp_counters(&lab.server)
    );
    assert!(said_ok(&login_after), "a new login from {SSH_PEER} after the flood: {}", login_after.describe());
    // The idle out flow too: established at its answer, the flood cannot touch it; only
    // its own timeout ends it (a flood ten times as long outlasts it).
    assert!(dns_tracked_after, "the idle dns flow's entry after the flood");
    let udp_timeout =
        firewall_user::policy::load(&lab.policy_file()).expect("the policy").conntrack.udp_timeout;
    if dns_idle + Duration::from_secs(2) < udp_timeout {
        assert!(dns_late, "the dns server's late datagram, {dns_idle:.1?} after the host's exchange");
    }
    assert!(dns_again, "a new dns exchange after the flood");
}

#[test]
fn a_ping_flood_from_both_cpus_meets_one_global_token_bucket() {
    require_root();
    let _one = one_at_a_time();
    let started = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "a flood from both CPUs needs two CPUs online, this machine has {cpus}");
    let lab = Lab::new("flood-ping");
    // Two queues each way and each CPU sending into its own (XPS): the veth then runs
    // two NAPI instances, one on each CPU, and the XDP program on both at once.
    set_queues(&lab, &lab.server, SERVER_IF, 2);
    set_queues(&lab, &lab.client, CLIENT_IF, 2);
    pin_tx_queues_to_cpus(&lab.client, CLIENT_IF, 2);
    lab.up();
    let policy = firewall_user::policy::load(&lab.policy_file()).unwrap_or_else(|e| panic!("{e}"));
    let limit =
        policy.rules.iter().find(|r| r.name == "ping-in").and_then(|r| r.limit).expect("ping-in has a limit");
    let pinned = Pinned::open(&lab);
    let ping_new = pinned.rule_counter("ping-in", Line::New);
    let input_policy_id = builtin_counter(Chain::Input, Builtin::Policy);

    // The bucket starts full at `up`, and nothing has taken from it. The flood: echo
    // requests from the stranger, ids and sequence numbers counting.
    let replies = count_echo_replies(&lab, &lab.client, HOST);
    let config = format!(
        "{{\n  {},\n  ipv4(saddr={STRANGER}, daddr={HOST}, ttl=64),\n  icmpv4(echorequest, id=dinc(), seq=dinc()),\n  \
         fill(0x61, 32),\n}}\n",
        eth_header(&lab)
    );
    let before = lab.list();
    let policy_before = pinned.per_cpu_packets(input_policy_id);
    let new_before = pinned.per_cpu_packets(ping_new);
    let c0_before = link_stats(&lab.client, CLIENT_IF);
    let flood_started = Instant::now();
    let trafgen = Trafgen::start(&lab, "ping-flood", &config, Sender::Ring { cpus: 2 }, None);
    std::thread::sleep(PING_FLOOD * scaled(1) as u32);
    let sent = trafgen.stop();
    let elapsed = flood_started.elapsed();
    // The last replies' way back.
    std::thread::sleep(Duration::from_millis(300));
    let replies = replies.stop();
    let after = lab.list();
    let c0 = link_stats(&lab.client, CLIENT_IF).since(&c0_before);
    let per_cpu_policy: Vec<u64> =
        pinned.per_cpu_packets(input_policy_id).iter().zip(&policy_before).map(|(a, b)| a - b).collect();
    let per_cpu_new: Vec<u64> =
        pinned.per_cpu_packets(ping_new).iter().zip(&new_before).map(|(a, b)| a - b).collect();

    let admitted = moved(&before, &after, "INPUT", "ping-in");
    let answered = moved(&before, &after, "OUTPUT", "ping-in");
    let over = dropped(&before, &after, "INPUT");
    let burst = u64::from(limit.burst);
    let most = burst + (elapsed.as_nanos() / limit.interval.as_nanos()) as u64 + 1;
    eprintln!(
        "ping flood: {} echo requests sent by trafgen in {:.1?} ({:.0}/s), per process {:?}; c0 dropped {}",
        sent.packets,
        sent.elapsed,
        sent.packets as f64 / sent.elapsed.as_secs_f64(),
        sent.per_cpu,
        c0.tx_dropped
    );
    eprintln!(
        "  ping-in NEW {admitted} (per CPU {per_cpu_new:?}), limit {} a second, burst {burst}: at most {most} in {elapsed:.1?}",
        limit.count
    );
    eprintln!(
        "  replies: OUTPUT ping-in {answered}, seen by the client {replies}; INPUT policy {over} (per CPU {per_cpu_policy:?}); took {:.1?}",
        started.elapsed()
    );

    // Both CPUs ran the program, each a fair share of the flood.
    assert_eq!(per_cpu_policy.len(), possible_cpus(), "one counter slot per possible CPU");
    let total: u64 = per_cpu_policy.iter().sum();
    for (cpu, n) in per_cpu_policy.iter().enumerate().take(2) {
        assert!(
            *n * 10 >= total,
            "CPU {cpu} judged {n} of the {total} requests over the limit: not both CPUs at once"
        );
    }
    // One bucket for both: at least the burst, at most the burst and one a second.
    assert!(admitted >= burst, "only {admitted} requests admitted, fewer than the burst {burst}");
    assert!(
        admitted <= most,
        "{admitted} requests admitted in {elapsed:.1?}: more than burst {burst} + 1/s + 1 = {most}"
    );
    assert_eq!(per_cpu_new.iter().sum::<u64>(), admitted, "the listing sums the CPUs");
    // Each admitted request answered, once, and nothing else.
    assert_eq!(answered, admitted, "echo replies sent (ping-in's ESTABLISHED line)");
    assert_eq!(replies, admitted, "echo replies that reached the client");
    // The rest fell to INPUT's policy; the veth lost what its rings could not hold.
    assert_eq!(
        admitted + over + c0.tx_dropped,
        sent.packets,
        "requests: admitted + over the limit + lost by the veth"
    );
}

/// The seed's anti-spoof source list, each with the first bytes of the sources the
/// flood spreads over it (the rest counting).
const MARTIANS: [(&str, &str); 8] = [
    ("10.0.0.0/8", "10.0.0.0"),
    ("172.16.0.0/12", "172.16.0.0"),
    ("192.168.0.0/16", "192.168.0.0"),
    ("169.254.0.0/16", "169.254.0.0"),
    ("224.0.0.0/4", "224.0.0.0"),
    ("240.0.0.0/5", "240.0.0.0"),
    ("0.0.0.0/8", "0.0.0.0"),
    ("1.1.1.1", "1.1.1.1"),
];

/// One round of probes of the services during the martian flood.
struct Round {
    /// A command through the live SSH session.
    ssh: Result<Duration, String>,
    /// A new connection to web-in's echo server from a stranger.
    web: Outcome,
    /// A datagram out to the DNS server and its answer.
    dns: Outcome,
    /// `Some(answered)` in the rounds that pinged.
    ping: Option<bool>,
}

/// The flooded port: open to anyone, so that the anti-spoof list alone keeps the flood
/// from its socket.
const FLOODED: SocketAddrV4 = SocketAddrV4::new(HOST, 5353);

#[test]
fn a_martian_flood_is_counted_per_antispoof_entry_while_the_services_answer() {
    require_root();
    let _one = one_at_a_time();
    let started = Instant::now();
    let lab = Lab::new("flood-martian");
    set_queues(&lab, &lab.server, SERVER_IF, 2);
    set_queues(&lab, &lab.client, CLIENT_IF, 2);
    pin_tx_queues_to_cpus(&lab.client, CLIENT_IF, 2);
    let sshd = daemons::sshd(&lab, SSH);
    lab.tcp_echo(WEB);
    lab.udp_echo(SocketAddrV4::new(DNS_SERVER, 53));
    let policy = lab.tmp().join("martian.toml");
    let text = std::fs::read_to_string(lab.policy_file()).expect("the lab's policy");
    std::fs::write(
        &policy,
        format!(
            "{text}\n# The martian flood's target, open to anyone.\n[[rule]]\nname = \"flooded\"\ndirection = \"in\"\n\
             protocols = [\"udp\"]\nport = {}\npeers = \"any\"\n",
            FLOODED.port()
        ),
    )
    .expect("martian.toml");
    lab.firewall_ok(&["up", "--policy", policy.to_str().expect("utf-8"), "--iface", SERVER_IF]);
    let mut session = SshSession::open(&lab, &sshd, SSH_PEER, None);
    let flooded = count_datagrams(&lab, FLOODED);

    // Round robin over one frame for each entry: every process sends them in turn.
    let eth = eth_header(&lab);
    let config: String = MARTIANS
        .iter()
        .map(|(_, first)| {
            // The same number of counting fields in every frame: trafgen 0.6.8 aborts
            // ("xfree: NULL pointer given as argument") when a frame with fewer comes
            // before one with more. 1.1.1.1 is one address: its IP id counts instead.
            let vary = if *first == "1.1.1.1" { ", id=dinc()" } else { ", saddr[2:2]=dinc()" };
            format!(
                "{{\n  {eth},\n  ipv4(saddr={first}{vary}, daddr={HOST}, ttl=64),\n  udp(sp=dinc(1024, 65000), dp={}),\n  \
                 fill(0x6d, 18),\n}}\n",
                FLOODED.port()
            )
        })
        .collect();
    let before = lab.list();
    let c0_before = link_stats(&lab.client, CLIENT_IF);
    let count = scaled(MARTIAN_FLOOD);
    let mut trafgen = Trafgen::start(&lab, "martian-flood", &config, Sender::Ring { cpus: 2 }, Some(count));

    // The services, again and again while the flood runs: the live SSH session, a new
    // web connection from a stranger, a DNS exchange out, a ping within its limit.
    let mut rounds = Vec::new();
    let mut last_ping: Option<Instant> = None;
    while trafgen.running() {
        let ssh = session.probe(PROBE_WITHIN);
        let web = lab.tcp_probe(STRANGER, WEB, PROBE_WITHIN);
        let dns = lab.udp_probe(HOST, SocketAddrV4::new(DNS_SERVER, 53), PROBE_WITHIN);
        // One ping a second at most, and never into the burst: within the limit.
        let ping = if last_ping.is_none_or(|t| t.elapsed() >= Duration::from_millis(1500)) {
            last_ping = Some(Instant::now());
            let run = daemons::run(
                &lab,
                daemons::in_ns(&lab.client, "ping")
                    .args(["-n", "-c", "1", "-W", "5", "-I"])
                    .arg(STRANGER.to_string())
                    .arg(HOST.to_string()),
                Duration::from_secs(10),
            );
            Some(ping_received(&run.stdout) == 1)
        } else {
            None
        };
        rounds.push(Round { ssh, web, dns, ping });
    }
    let sent = trafgen.wait(Duration::from_secs(120 + count / 20_000));
    let c0 = link_stats(&lab.client, CLIENT_IF).since(&c0_before);
    // A datagram from a stranger to the flooded port does arrive: the listener listens.
    let control = lab.run_in(&lab.client, || UdpSocket::bind(SocketAddrV4::new(STRANGER, 0))).expect("bind");
    control.send_to(b"control", FLOODED).expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let received = flooded.stop();
    let after = lab.list();

    let shares: Vec<(&str, u64)> = MARTIANS
        .iter()
        .map(|(prefix, _)| {
            (
                *prefix,
                line_packets(&after, "INPUT", "antispoof", prefix)
                    - line_packets(&before, "INPUT", "antispoof", prefix),
            )
        })
        .collect();
    let counted: u64 = shares.iter().map(|(_, n)| n).sum();
    let answered = |f: fn(&Round) -> bool| rounds.iter().filter(|r| f(r)).count();
    let pings = answered(|r| r.ping.is_some());
    eprintln!(
        "martian flood: {} datagrams sent by trafgen in {:.1?} ({:.0}/s), per process {:?}; c0 dropped {}",
        sent.packets,
        sent.elapsed,
        sent.packets as f64 / sent.elapsed.as_secs_f64(),
        sent.per_cpu,
        c0.tx_dropped
    );
    eprintln!(
        "  anti-spoof lines: {shares:?}, {counted} in all; the flooded port's socket received {received} (the control datagram included)"
    );
    eprintln!(
        "  {} rounds of probes: ssh {} answered, web {}, dns {}, ping {} of {pings}; took {:.1?}",
        rounds.len(),
        answered(|r| r.ssh.is_ok()),
        answered(|r| r.web == Outcome::Open),
        answered(|r| r.dns == Outcome::Open),
        answered(|r| r.ping == Some(true)),
        started.elapsed()
    );

    assert!(rounds.len() >= 3, "only {} rounds of probes while the flood ran", rounds.len());
    for (i, r) in rounds.iter().enumerate() {
        assert!(r.ssh.is_ok(), "round {i}: the SSH session: {:?}", r.ssh);
        assert_eq!(r.web, Outcome::Open, "round {i}: web-in from {STRANGER}");
        assert_eq!(r.dns, Outcome::Open, "round {i}: dns to {DNS_SERVER}");
        assert_ne!(r.ping, Some(false), "round {i}: a ping from {STRANGER}");
    }
    // Every frame that crossed the veth was counted on its anti-spoof entry, and each
    // entry got its share: the processes send the frames in turn, so the entries' counts
    // differ only by what the veth dropped.
    assert_eq!(counted + c0.tx_dropped, sent.packets, "anti-spoof drops + veth drops against frames sent");
    let share = sent.packets / MARTIANS.len() as u64;
    for (prefix, n) in &shares {
        assert!(
            *n <= share && *n + c0.tx_dropped >= share,
            "{prefix}: {n} counted, its share {share}, the veth dropped {}",
            c0.tx_dropped
        );
    }
    assert_eq!(received, 1, "the flooded port's socket received something of the flood (or not the control)");
    assert_eq!(
        moved(&before, &after, "INPUT", "flooded"),
        1,
        "the flooded rule admitted the control datagram alone"
    );
}

/// The counters of both ends of the lab's link, c0's and s0's, read when nothing crosses
/// it: two readings 20 ms apart alike (or, after a second, the last). They are read one
/// after the other, and the live session's packets may be on the wire between the reads;
/// a frame counted at one end and not yet at the other, before the flood or after it, once
/// left the two off by one.
fn both_ends(lab: &Lab) -> (LinkStats, LinkStats) {
    let read = || (link_stats(&lab.client, CLIENT_IF), link_stats(&lab.server, SERVER_IF));
    let mut last = read();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}
