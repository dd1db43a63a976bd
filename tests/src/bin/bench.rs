//! `cargo xtask bench`: the firewall's costs, measured on the real programs and the real
//! binary (needs root). Prints Markdown tables, and writes them to docs/BENCHMARKS.md and
//! target/bench/bench.json.
//!
//! 1. Per packet: BPF_PROG_TEST_RUN with a large repeat gives the program's own ns per
//!    packet for each traffic class, with allow-lists of 1 to 1,000,000 peers, beside a
//!    baseline program that does one hash lookup in a map of the same size and returns.
//! 2. Kernel memory of the maps, from the kernel's own accounting (fdinfo `memlock`).
//! 3. Control plane: `up` and `reload` on the real binary in a lab namespace.
//! 4. The verifier's count of processed instructions per program.
//! 5. A SYN flood into the lab, sent by an XDP program in live-frames mode on the client's
//!    end of the veth, so that the receiving filter bounds the rate, not the sender: the
//!    drop-all ceiling, the seed's iptables and the firewall (native, as the drop-all is,
//!    and in its default mode, generic on a veth), packets/s on one CPU. Then one bulk
//!    TCP stream, and named blocklists of 100,000 and 1,000,000 prefixes.
//!
//! The machines are shared and noisy: each figure is the median of several runs, but the
//! per-packet costs, each the least of interleaved rounds (noise only adds to a repeat),
//! read as ratios to the baseline timed in the same rounds.
use std::{
    fmt::Write as _,
    io::Write as _,
    net::Ipv4Addr,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use aya::{
    EbpfLoader, TestRunResult,
    maps::{HashMap, IterableMap},
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use firewall_common::Direction;
use serde_json::json;
use tests::{
    frames::{self, ACK, FIN, OURS, SYN},
    harness::{TestFilter, memlock},
    lab::{CLIENT_IF, HOST, Lab, SERVER_IF, STRANGER},
};

const SIZES: [u32; 4] = [1, 1_000, 100_000, 1_000_000];
const REPEAT: u32 = 200_000;
/// Rounds of per-packet runs: the baseline and every class once a round, in turn.
const ROUNDS: usize = 7;

/// `count` distinct addresses from 100.64.0.0/10, starting at `offset`.
fn peer(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i)
}

fn peers(count: u32, offset: u32) -> String {
    let mut out = String::with_capacity(count as usize * 18);
    for i in 0..count {
        let _ = write!(out, "\"{}\", ", peer(offset + i));
    }
    out
}

/// examples/tight.toml with `ssh-in` admitting `list` (and its first peer).
fn tight_with(list: &str, interface: &str) -> String {
    let text = tests::lab::tight_text();
    let wanted = r#"peers = ["203.0.113.7", "203.0.113.8"]"#;
    assert!(text.contains(wanted), "examples/tight.toml's ssh-in changed");
    text.replacen(wanted, &format!("peers = [{list}\"203.0.113.7\"]"), 1).replacen(
        "interface = \"eth0\"",
        &format!("interface = \"{interface}\""),
        1,
    )
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The program's own ns per packet over a repeat of `frame`.
fn repeated_ns<P>(program: &P, frame: &[u8]) -> f64
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let opts = TestRunOptions { data_in: Some(frame), repeat: REPEAT, ..TestRunOptions::new() };
    program.test_run(opts).expect("test run").duration.as_nanos() as f64
}

/// The least of a series of repeats: the machines' noise (other tenants, interrupts) only
/// ever adds to a repeat's time, so the least is the one it touched least.
fn least(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Runs of [`ns_alternating`]: each one a system call, so fewer than a repeat's.
const ALTERNATING_RUNS: usize = 20_001;

/// Median ns of single runs of `run` on `frames` taken in turn: for a cost that depends
/// on the packet before (a flow's numbers changing), which a repeat of one frame would
/// not show. Each figure includes the test runner's timer, a few ns.
fn ns_alternating(run: &mut dyn FnMut(TestRunOptions) -> std::time::Duration, frames: &[&[u8]]) -> f64 {
    let samples = (0..ALTERNATING_RUNS)
        .map(|i| {
            let frame = frames[i % frames.len()];
            run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() }).as_nanos() as f64
        })
        .collect();
    median(samples)
}

const CLASSES: [&str; 15] = [
    "anti-spoof drop",
    "INVALID drop",
    "ESTABLISHED pass",
    "NEW allowed",
    "NEW allowed, port in a range (its interval looked up first)",
    "policy drop",
    "ARP pass",
    "IPv6 ESTABLISHED pass",
    "IPv6 NEW behind 2 extension headers",
    "IPv6 policy drop",
    "first fragment, ESTABLISHED (remembers its datagram)",
    "later fragment after its first",
    "OUTPUT ESTABLISHED pass (TC)",
    "OUTPUT ESTABLISHED pass (TC, single runs)",
    "OUTPUT ESTABLISHED pass, each acking more (TC, single runs)",
];

struct PerPacket {
    size: u32,
    baseline: f64,
    classes: Vec<f64>,
    allow_exact_bytes: u64,
    conntrack_bytes: u64,
    half_open_bytes: u64,
    /// `PORT_INTERVALS` with a range, the same at every size.
    port_intervals_bytes: u64,
}

fn per_packet(size: u32) -> PerPacket {
    // With an address6, so that IPv6 goes through the rules (web-in admits anyone).
    let text = tight_with(&peers(size - 1, 0), "eth0").replacen(
        "\naddress = ",
        "\naddress6 = \"2001:db8::1\"\naddress = ",
        1,
    );
    let mut f = TestFilter::new(&text);
    let (ours6, web6) = (frames::OURS6, frames::v6("2001:db8:99::1"));
    let last = peer(size.saturating_sub(2)).octets();
    let listed = if size > 1 { last } else { [203, 0, 113, 7] };
    // The flows ESTABLISHED uses exist before they are timed, each opened by a whole
    // handshake: the peer's SYN (sequence 1000), the host's SYN-ACK (5000), the peer's ACK.
    let (peer_isn, host_isn) = (1000u32, 5000u32);
    let handshake = [
        (Direction::In, frames::tcp_numbered(listed, OURS, (40000, 122), SYN, peer_isn, 0, 64240)),
        (
            Direction::Out,
            frames::tcp_numbered(OURS, listed, (122, 40000), SYN | ACK, host_isn, peer_isn + 1, 64240),
        ),
        (
            Direction::In,
            frames::tcp_numbered(listed, OURS, (40000, 122), ACK, peer_isn + 1, host_isn + 1, 502),
        ),
        (Direction::In, frames::tcp6_numbered(web6, ours6, (40000, 443), SYN, peer_isn, 0, 64240)),
        (
            Direction::Out,
            frames::tcp6_numbered(ours6, web6, (443, 40000), SYN | ACK, host_isn, peer_isn + 1, 64240),
        ),
        (
            Direction::In,
            frames::tcp6_numbered(web6, ours6, (40000, 443), ACK, peer_isn + 1, host_isn + 1, 502),
        ),
    ];
    for (direction, frame) in &handshake {
        let verdict = match direction {
            Direction::In => f.ingress(frame),
            Direction::Out => f.egress(frame),
        };
        assert_eq!(verdict, tests::harness::Verdict::Pass, "the handshake of the timed flows");
    }
    let established = handshake[2].1.clone();
    // A DNS query out, whose answer comes back in fragments.
    let dns = [198, 51, 100, 53];
    assert_eq!(f.egress(&frames::udp(OURS, dns, 40000, 53)), tests::harness::Verdict::Pass, "the query");
    let answer = frames::udp_fragments((dns, OURS), (53, 40000), 3000, 1480, 7);
    let frames: [Vec<u8>; 11] = [
        frames::tcp([10, 1, 2, 3], OURS, 40000, 122, SYN),
        frames::tcp(listed, OURS, 40001, 122, SYN | FIN),
        established,
        frames::tcp(listed, OURS, 40002, 122, SYN),
        frames::tcp([203, 0, 113, 99], OURS, 40003, 122, SYN),
        frames::arp(OURS),
        handshake[5].1.clone(),
        frames::with_extension_headers(frames::tcp6(web6, ours6, 40001, 443, SYN), &[(0, 0), (60, 0)], 0),
        frames::tcp6(web6, ours6, 40002, 122, SYN),
        answer[0].clone(),
        answer[1].clone(),
    ];
    let (mut in_range, in_range_frame) = in_a_range(&text, listed);
    let port_intervals_bytes =
        memlock(in_range.loaded.maps.port_intervals.as_ref().expect("the object has PORT_INTERVALS").map());
    let mut baseline = baseline_object(size, listed);
    let baseline_frame = frames::tcp(listed, OURS, 40002, 122, SYN);

    // Rounds, each timing the baseline and then every class, so that a noisy moment of the
    // shared machine weighs on both sides of a ratio, not on one.
    // The host's own segments: the same acknowledgement again, and one more each time.
    let host_ack = |ack| frames::tcp_numbered(OURS, listed, (122, 40000), ACK, host_isn + 1, ack, 64240);
    let (same, more) = (host_ack(peer_isn + 1), host_ack(peer_isn + 2));
    let mut baseline_series = Vec::with_capacity(ROUNDS);
    // The ingress frames' series, then the port range's, then the host's ACK on TC.
    let mut series = vec![Vec::with_capacity(ROUNDS); frames.len() + 2];
    for _ in 0..ROUNDS {
        let program: &mut Xdp =
            baseline.program_mut("bench_baseline").expect("baseline").try_into().expect("XDP");
        baseline_series.push(repeated_ns(program, &baseline_frame));
        let ingress = f.loaded.ingress().expect("ingress program");
        for (frame, samples) in frames.iter().zip(&mut series) {
            samples.push(repeated_ns(ingress, frame));
        }
        let in_range = in_range.loaded.ingress().expect("ingress program");
        series[frames.len()].push(repeated_ns(in_range, &in_range_frame));
        series[frames.len() + 1].push(repeated_ns(f.loaded.egress().expect("egress program"), &same));
    }
    let mut classes: Vec<f64> = series.iter().map(|samples| least(samples)).collect();
    let in_range_ns = classes.remove(frames.len());
    classes.insert(4, in_range_ns);
    let mut run =
        |opts: TestRunOptions| f.loaded.egress().unwrap().test_run(opts).expect("test run").duration;
    classes.push(ns_alternating(&mut run, &[&same, &same]));
    classes.push(ns_alternating(&mut run, &[&same, &more]));
    let allow_exact_bytes = memlock(f.loaded.maps.allow_exact.map());
    let conntrack_bytes = memlock(f.loaded.maps.conntrack.map());
    let half_open_bytes = memlock(f.loaded.maps.half_open.map());
    PerPacket {
        size,
        baseline: least(&baseline_series),
        classes,
        allow_exact_bytes,
        conntrack_bytes,
        half_open_bytes,
        port_intervals_bytes,
    }
}

/// The one-lookup program of an object of its own, loaded, its map as big as the
/// allow-list of `size` peers and holding `listed`.
fn baseline_object(size: u32, listed: [u8; 4]) -> aya::Ebpf {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("BENCH_PEERS", size)
        .load(firewall_user::BENCH_BASELINE_OBJECT)
        .expect("loading the baseline");
    let mut map: HashMap<_, [u8; 4], u32> =
        HashMap::try_from(ebpf.take_map("BENCH_PEERS").expect("BENCH_PEERS")).expect("a hash map");
    for i in 0..size.saturating_sub(1) {
        map.insert(peer(i).octets(), 1, 0).expect("baseline insert");
    }
    map.insert(listed, 1, 0).expect("baseline insert");
    let program: &mut Xdp = ebpf.program_mut("bench_baseline").expect("baseline").try_into().expect("XDP");
    program.load().expect("loading the baseline program");
    ebpf
}

/// A filter of the policy `text` and a rule of port ranges for `listed`, and a flow's first
/// packet from `listed` to a port inside a range: so that the other classes' filter stays
/// without ranges.
fn in_a_range(text: &str, listed: [u8; 4]) -> (TestFilter, Vec<u8>) {
    let peer = std::net::Ipv4Addr::from(listed);
    let rule = format!(
        "\n[[rule]]\nname = \"ftp-data\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nports = [21, \"49152-65534\", 8000, \"9000:9100\"]\npeers = [\"{peer}\"]\n"
    );
    (TestFilter::new(&format!("{text}{rule}")), frames::tcp(listed, OURS, 40004, 50000, SYN))
}

fn timed(lab: &Lab, args: &[&str]) -> f64 {
    let started = Instant::now();
    lab.firewall_ok(args);
    started.elapsed().as_secs_f64()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name\t: ").map(str::to_owned)))
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cpus} CPUs, Linux {}", kernel.trim())
}

fn main() {
    tests::require_root();
    let mut md = String::new();
    let mut json = serde_json::Map::new();
    let _ = writeln!(md, "Machine: {}.\n", machine());

    // 1 and 2: per packet, and memory.
    eprintln!("bench: per packet ({} sizes)…", SIZES.len());
    let rows: Vec<PerPacket> = SIZES.iter().map(|&size| per_packet(size)).collect();
    let _ = writeln!(
        md,
        "### Per packet (XDP ingress, ns, the least of {ROUNDS} interleaved rounds of {REPEAT} runs)\n"
    );
    let _ = write!(md, "| class |");
    for r in &rows {
        let _ = write!(md, " {} peers |", r.size);
    }
    let _ = write!(md, "\n| --- |");
    for _ in &rows {
        let _ = write!(md, " ---: |");
    }
    let _ = write!(md, "\n| baseline: one hash lookup |");
    for r in &rows {
        let _ = write!(md, " {:.0} |", r.baseline);
    }
    for (i, class) in CLASSES.iter().enumerate() {
        let _ = write!(md, "\n| {class} |");
        for r in &rows {
            let _ = write!(md, " {:.0} ({:.2}×) |", r.classes[i], r.classes[i] / r.baseline);
        }
    }
    let _ = writeln!(
        md,
        "\n\n(×: the class's cost over the baseline's, timed in the same rounds. The TC rows are medians of single runs, each with the test runner's timer.)\n"
    );
    let worst_growth = CLASSES
        .iter()
        .enumerate()
        .map(|(i, _)| rows.last().unwrap().classes[i] / rows.first().unwrap().classes[i])
        .fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "Largest growth of a class from 1 to {} peers: {:.2}×.\n",
        SIZES.last().unwrap(),
        worst_growth
    );
    let _ = writeln!(md, "### Kernel memory of the maps (fdinfo `memlock`)\n");
    let _ = writeln!(
        md,
        "| peers | allow-list (exact) | conntrack (65,536 established flows) | half-open flows (16,384) |\n| ---: | ---: | ---: | ---: |"
    );
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            r.size,
            r.allow_exact_bytes as f64 / 1_048_576.0,
            r.conntrack_bytes as f64 / 1_048_576.0,
            r.half_open_bytes as f64 / 1_048_576.0
        );
    }
    let _ = writeln!(
        md,
        "\n`PORT_INTERVALS` (port ranges' intervals, with a range; one entry without): {:.1} MiB.",
        rows[0].port_intervals_bytes as f64 / 1_048_576.0
    );
    json.insert(
        "per_packet_ns".into(),
        json!(rows.iter().map(|r| json!({
            "peers": r.size,
            "baseline": r.baseline,
            "classes": CLASSES.iter().zip(&r.classes).map(|(c, v)| (c.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "allow_exact_bytes": r.allow_exact_bytes,
            "conntrack_bytes": r.conntrack_bytes,
            "half_open_bytes": r.half_open_bytes,
        })).collect::<Vec<_>>()),
    );

    // 3: the control plane, on the binary (`bench quick` skips it and the floods).
    if std::env::args().any(|a| a == "quick") {
        print!("{md}");
        return;
    }
    let lab = Lab::new("bench");

    // Every map of a live filter with the tight policy, as `up` sizes them.
    lab.up();
    let live = tests::harness::pinned_memlock(&lab.pin_dir());
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    let total: u64 = live.iter().map(|(_, bytes)| bytes).sum();
    let _ = writeln!(
        md,
        "\nEvery map of a live filter with the tight policy (65,536 established flows, 16,384 half-open), as `up` sizes them: {:.1} MiB. The largest:\n",
        total as f64 / 1_048_576.0
    );
    let mut largest = live.clone();
    largest.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    for (name, bytes) in largest.iter().take(6) {
        let _ = writeln!(md, "- `{name}`: {:.2} MiB", *bytes as f64 / 1_048_576.0);
    }
    json.insert(
        "tight_policy_map_bytes".into(),
        json!(live.iter().map(|(n, b)| (n.to_string(), json!(b))).collect::<serde_json::Map<_, _>>()),
    );

    eprintln!("bench: floods…");
    let generator = Generator::for_kernel(&lab);
    let floods: Vec<Flood> = FLOOD_SIZES.iter().map(|&n| flood_row(&lab, n, generator)).collect();
    let _ = writeln!(
        md,
        "\n### SYN flood into the lab ({}, packets/s absorbed, median of {FLOOD_ROUNDS} interleaved rounds of {FLOOD_SECONDS} s)\n",
        generator.describe()
    );
    let _ = writeln!(
        md,
        "| SSH peers | XDP drop-all (ceiling) | seed's iptables | firewall, `--mode native` | firewall / ceiling | firewall / iptables | firewall, default mode (generic XDP on a veth) |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for f in &floods {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0}% | {:.1}× | {:.0} |",
            f.peers,
            f.ceiling,
            f.iptables,
            f.firewall,
            100.0 * f.firewall / f.ceiling,
            f.firewall / f.iptables,
            f.firewall_default
        );
    }
    let _ = writeln!(md, "\n![packets per second against peers](flood.svg)\n");
    json.insert(
        "flood_pps".into(),
        json!(floods.iter().map(|f| json!({"peers": f.peers, "xdp_drop_all": f.ceiling, "iptables": f.iptables, "firewall": f.firewall, "firewall_default_mode": f.firewall_default})).collect::<Vec<_>>()),
    );
    chart(&tests::workspace().join("docs/flood.svg"), &floods);

    eprintln!("bench: bulk receive…");
    let bulks = bulk_rows(&lab);
    let _ = writeln!(
        md,
        "\n### Bulk TCP into the lab (iperf3, one stream to the web port, inbound, Gbit/s, median of {BULK_ROUNDS} interleaved rounds of {BULK_SECONDS} s)\n"
    );
    let _ = writeln!(md, "| filter | Gbit/s | over the seed's iptables |\n| --- | ---: | ---: |");
    let iptables = bulks.iter().find(|(name, _)| *name == BULK_IPTABLES).map_or(f64::NAN, |(_, g)| *g);
    for (name, gbits) in &bulks {
        let _ = writeln!(md, "| {name} | {gbits:.1} | {:.0}% |", 100.0 * gbits / iptables);
    }
    json.insert(
        "bulk_gbits".into(),
        json!(bulks.iter().map(|(n, g)| (n.to_string(), json!(g))).collect::<serde_json::Map<_, _>>()),
    );

    eprintln!("bench: control plane…");
    let mut control = Vec::new();
    for (peers_n, runs) in [(100_000u32, 3usize), (1_000_000, 1)] {
        let a = lab.tmp().join(format!("a{peers_n}.toml"));
        let b = lab.tmp().join(format!("b{peers_n}.toml"));
        std::fs::write(&a, tight_with(&peers(peers_n, 0), SERVER_IF)).expect("write");
        std::fs::write(&b, tight_with(&peers(peers_n, peers_n), SERVER_IF)).expect("write");
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        let (mut up, mut same, mut changes) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            up.push(timed(&lab, &["up", "--policy", a, "--iface", SERVER_IF]));
            same.push(timed(&lab, &["reload"]));
            changes.push(timed(&lab, &["reload", "--policy", b]));
            lab.firewall_ok(&["down", "--iface", SERVER_IF]);
        }
        control.push((peers_n, runs, median(up), median(same), median(changes)));
    }
    let lists = named_list_rows(&lab);
    drop(lab);
    let _ = writeln!(md, "\n### Control plane (the binary, seconds)\n");
    let _ = writeln!(
        md,
        "| peers in one rule | runs (median) | `up` | `reload`, nothing changed | `reload`, every peer replaced |\n| ---: | ---: | ---: | ---: | ---: |"
    );
    for (n, runs, up, same, changes) in &control {
        let _ = writeln!(md, "| {n} | {runs} | {up:.2} | {same:.2} | {changes:.2} |");
    }
    json.insert(
        "control_plane_s".into(),
        json!(control.iter().map(|(n, _, up, same, changes)| json!({"peers": n, "up": up, "reload_same": same, "reload_all_changed": changes})).collect::<Vec<_>>()),
    );

    let _ = writeln!(
        md,
        "\n### A named blocklist (`block --from FILE`, seconds; the trie's kernel memory)\n\n| prefixes | first load | the same file again, `--for 3h` | one line changed, `--for 3h` | `BLOCK_LISTS` memory |\n| ---: | ---: | ---: | ---: | ---: |"
    );
    for row in &lists {
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.2} | {:.1} MB |",
            row.prefixes,
            row.first,
            row.same,
            row.one_changed,
            row.memory as f64 / 1e6
        );
    }
    json.insert(
        "named_list_s".into(),
        json!(lists.iter().map(|r| json!({"prefixes": r.prefixes, "first": r.first, "same": r.same, "one_changed": r.one_changed, "memory_bytes": r.memory})).collect::<Vec<_>>()),
    );

    // 4: the verifier.
    let mut f = TestFilter::tight();
    let ingress = f.loaded.ingress().unwrap().info().unwrap().verified_instruction_count().unwrap_or(0);
    let egress = f.loaded.egress().unwrap().info().unwrap().verified_instruction_count().unwrap_or(0);
    let _ = writeln!(
        md,
        "\n### Verifier (instructions processed; budget in tests/tests/integration/verifier.rs)\n"
    );
    let _ = writeln!(
        md,
        "| program | instructions |\n| --- | ---: |\n| XDP ingress | {ingress} |\n| TC egress | {egress} |"
    );
    json.insert("verifier".into(), json!({"ingress": ingress, "egress": egress}));

    print!("{md}");
    let root = tests::workspace();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("bench.json"), serde_json::to_string_pretty(&json).unwrap()).expect("bench.json");
    std::fs::write(out.join("bench.md"), &md).expect("bench.md");
    write_benchmarks_doc(&root.join("docs/BENCHMARKS.md"), &md);
}

/// One size of [`named_list_rows`].
struct ListRow {
    prefixes: u32,
    first: f64,
    same: f64,
    one_changed: f64,
    memory: u64,
}

/// A named list of 100,000 and of 1,000,000 prefixes (a /32 or a /24 in turn, as feeds mix
/// them) loaded into the tight policy's filter: the first load, the same file again, the
/// file with one line changed, and the trie's memory.
fn named_list_rows(lab: &Lab) -> Vec<ListRow> {
    let policy = lab.tmp().join("lists.toml");
    std::fs::write(&policy, tight_with("", SERVER_IF)).expect("lists.toml");
    let mut rows = Vec::new();
    for prefixes in [100_000u32, 1_000_000] {
        eprintln!("bench: a named list of {prefixes} prefixes");
        lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]);
        let mut text = String::with_capacity(prefixes as usize * 20);
        for i in 0..prefixes {
            let base = 0x2000_0000 + (i << 8);
            let _ = if i % 2 == 0 {
                writeln!(text, "{}", Ipv4Addr::from(base + 1))
            } else {
                writeln!(text, "{}/24", Ipv4Addr::from(base))
            };
        }
        let file = lab.tmp().join("feed.txt");
        std::fs::write(&file, &text).expect("feed.txt");
        let file = file.to_str().unwrap();
        let first = timed(lab, &["block", "--from", file]);
        // Then as a feed that expires unless refreshed.
        let same = timed(lab, &["block", "--from", file, "--for", "3h"]);
        std::fs::write(file, text.replacen("32.0.0.1\n", "192.0.2.1\n", 1)).expect("feed.txt");
        let one_changed = timed(lab, &["block", "--from", file, "--for", "3h"]);
        let trie = aya::maps::MapData::from_pin(lab.pin_dir().join(firewall_common::MAP_BLOCK_LISTS))
            .expect("the pinned BLOCK_LISTS");
        rows.push(ListRow { prefixes, first, same, one_changed, memory: memlock(&trie) });
        lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    }
    rows
}

const FLOOD_SIZES: [u32; 5] = [1, 100, 1_000, 10_000, 100_000];
const FLOOD_SECONDS: u32 = 2;
const FLOOD_ROUNDS: usize = 3;

struct Flood {
    peers: u32,
    ceiling: f64,
    iptables: f64,
    /// In native mode, as the drop-all is.
    firewall: f64,
    /// In the default mode: generic on the lab's veth.
    firewall_default: f64,
}

fn rx_packets(lab: &Lab) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.server, "cat", "/sys/class/net/s0/statistics/rx_packets"])
        .output()
        .expect("reading rx_packets");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("rx_packets")
}

/// SYNs from a stranger to the SSH port for [`FLOOD_SECONDS`], sent by an XDP program on
/// the client's end of the veth run in live-frames mode (BPF_PROG_TEST_RUN), so that the
/// sender costs tens of nanoseconds a frame and the receiver's filter bounds the rate; the
/// packets/s the server's side took in. The veth hands them to the server's NAPI on the
/// sending CPU, so one CPU does both: the rate is that of one receiving CPU, the
/// generator's small share included. (trafgen, a socket's system calls and stack a frame,
/// held the rate of the drop-all program to 0.4 million packets/s; this one, to 6.)
fn flood(lab: &Lab, generator: Generator) -> f64 {
    if generator == Generator::Trafgen {
        return flood_by_trafgen(lab);
    }
    let mac = |ns: &str, dev: &str| -> [u8; 6] {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "cat", &format!("/sys/class/net/{dev}/address")])
            .output()
            .expect("mac");
        let text = String::from_utf8_lossy(&out.stdout);
        let bytes: Vec<u8> =
            text.trim().split(':').map(|b| u8::from_str_radix(b, 16).expect("a MAC")).collect();
        bytes.try_into().expect("six bytes")
    };
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(mac(&lab.client, CLIENT_IF), mac(&lab.server, SERVER_IF))
        .ipv4(STRANGER.octets(), HOST.octets(), 64)
        .tcp(40_000, 122, 1, 64_240)
        .syn()
        .write(&mut frame, &[])
        .expect("a SYN");
    let before = rx_packets(lab);
    let started = Instant::now();
    lab.run_in(&lab.client, || {
        let mut ebpf = EbpfLoader::new().load(firewall_user::BENCH_BASELINE_OBJECT).expect("loading");
        let program: &mut Xdp = ebpf.program_mut("bench_transmit").unwrap().try_into().unwrap();
        program.load().expect("loading the generator");
        let ifindex = if_index(CLIENT_IF);
        // struct xdp_md: data, data_end (the frame's length, as the kernel checks),
        // data_meta, ingress_ifindex (where XDP_TX sends it out), rx_queue_index,
        // egress_ifindex.
        let len = u32::try_from(frame.len()).expect("a short frame");
        let ctx: Vec<u8> = [0, len, 0, ifindex, 0, 0].iter().flat_map(|w: &u32| w.to_ne_bytes()).collect();
        // In runs of a fixed count, until the flood's time is up: a slow receiver (the
        // seed's iptables with many peers) takes its packets in that time, and the veth
        // drops what its ring cannot hold.
        while started.elapsed().as_secs_f64() < f64::from(FLOOD_SECONDS) {
            program
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    repeat: XDP_FLOOD_RUN,
                    attrs: TestRunAttrs::new().xdp_live_frames(64),
                    ..TestRunOptions::new()
                })
                .expect("the generator's run");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    (rx_packets(lab) - before) as f64 / elapsed
}

/// What sends the floods.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Generator {
    /// An XDP program in live-frames mode on the client's end (see [`flood`]).
    LiveFrames,
    /// trafgen, one `sendto` a frame (its TX ring fails once the stack behind iptables
    /// falls behind: see `tests::flood::Sender`), where the kernel refuses live-frames runs
    /// (some do, to root too): its own cost bounds the rate, so the figures tell the
    /// filters apart less well.
    Trafgen,
}

impl Generator {
    /// The live-frames generator if this kernel lets the client's namespace run it.
    fn for_kernel(lab: &Lab) -> Generator {
        match lab.run_in(&lab.client, || {
            firewall_user::kernel::held::load_hand_back(CLIENT_IF, if_index(CLIENT_IF))
        }) {
            Ok(_) => Generator::LiveFrames,
            Err(firewall_user::kernel::held::HeldError::Refused { source, .. }) => {
                eprintln!(
                    "bench: this kernel refuses live-frames runs ({}): the floods are sent by trafgen, whose own cost bounds their rate",
                    firewall_user::one_line(&source)
                );
                Generator::Trafgen
            }
            Err(err) => panic!("the live-frames generator: {}", firewall_user::one_line(&err)),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Generator::LiveFrames => "an XDP generator on the sending end, one CPU for both ends",
            Generator::Trafgen => {
                "trafgen, one frame a system call, this kernel refusing the XDP generator's live-frames runs: its own cost bounds the rates"
            }
        }
    }
}

/// The index of the interface `name` in the calling thread's network namespace.
fn if_index(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).expect("a name");
    // SAFETY: a NUL-terminated name; the call only reads it.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(ifindex, 0, "{name:?} in this namespace");
    ifindex
}

/// SYNs from a stranger to the SSH port for [`FLOOD_SECONDS`], sent by trafgen (see
/// [`Generator::Trafgen`]): the packets/s the server's side took in.
fn flood_by_trafgen(lab: &Lab) -> f64 {
    let config = format!(
        "{{\n  {},\n  ipv4(saddr={STRANGER}, daddr={HOST}, ttl=64),\n  tcp(sp=40000, dp=122, syn, window=64240),\n}}\n",
        tests::flood::eth_header(lab)
    );
    let before = rx_packets(lab);
    let started = Instant::now();
    let trafgen =
        tests::flood::Trafgen::start(lab, "bench-flood", &config, tests::flood::Sender::Sendto, None);
    std::thread::sleep(std::time::Duration::from_secs(u64::from(FLOOD_SECONDS)));
    let _ = trafgen.stop();
    (rx_packets(lab) - before) as f64 / started.elapsed().as_secs_f64()
}

/// Frames the flood's generator sends a system call: tenths of a second at the drop-all
/// program's rate (setting a run up costs milliseconds).
const XDP_FLOOD_RUN: u32 = 1 << 20;

/// The seed's ruleset with `peers` SSH peers, as iptables-restore input: the seed
/// script itself, run with `$IPTABLES` a shell function that records each call.
fn seed_ruleset(lab: &Lab, peers_n: u32) -> String {
    let mut ssh = String::from("203.0.113.7");
    for i in 0..peers_n.saturating_sub(1) {
        let _ = write!(ssh, " {}", peer(i));
    }
    let vars = format!(
        "OURIP={HOST}\nSSHIPS=\"{ssh}\"\nDNSIPS=\"198.51.100.53 198.51.100.54\"\nNTPIPS=\"198.51.100.123 198.51.100.124 198.51.100.125\"\nMAILOUT=198.51.100.25\nMAILIN=203.0.113.25\nOTHERIP=203.0.113.22\nREPOIPS=\"203.0.113.80 203.0.113.81\"\nWEBALLOWED=\"203.0.113.90 203.0.113.91\"\nSERVICES=\"80 443\"\nSSH=122\n"
    );
    let vars_path = lab.tmp().join("seed-vars.sh");
    std::fs::write(&vars_path, vars).expect("seed-vars.sh");
    let script = tests::workspace().join("tests/seed/tight-iptables.sh");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "record() {{ printf '%s\\n' \"$*\"; }}; IPTABLES=record; . '{}'; . '{}'",
            vars_path.display(),
            script.display()
        ))
        .output()
        .expect("running the seed script");
    assert!(out.status.success(), "the seed script: {}", String::from_utf8_lossy(&out.stderr));
    let mut restore = String::from("*filter\n");
    let mut rules = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-P", chain, policy] => restore.push_str(&format!(":{chain} {policy} [0:0]\n")),
            ["-F" | "-Z" | "-X"] => {}
            ["-A", ..] => {
                rules.push_str(line);
                rules.push('\n');
            }
            _ => panic!("the seed script called iptables {line:?}"),
        }
    }
    restore.push_str(&rules);
    restore.push_str("COMMIT\n");
    restore
}

fn iptables_restore(lab: &Lab, rules: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.server, "iptables-restore"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("iptables-restore");
    child.stdin.take().unwrap().write_all(rules.as_bytes()).expect("feeding iptables-restore");
    assert!(child.wait().expect("iptables-restore").success(), "iptables-restore failed");
}

/// The three filters with `peers_n` peers, flooded in turn, [`FLOOD_ROUNDS`] times over
/// (the machines are shared: interleaving spreads the noise), medians kept.
fn flood_row(lab: &Lab, peers_n: u32, generator: Generator) -> Flood {
    eprintln!("bench: flood, {peers_n} peers");
    let policy = lab.tmp().join("flood.toml");
    std::fs::write(&policy, tight_with(&peers(peers_n.saturating_sub(1), 0), SERVER_IF)).expect("flood.toml");
    let policy = policy.to_str().unwrap().to_owned();
    // The seed's iptables stays loaded throughout: an XDP program in front of it drops
    // every packet of the flood before netfilter sees one.
    iptables_restore(lab, &seed_ruleset(lab, peers_n));
    // The generator's frames reach the server's end only through its NAPI, which a veth
    // runs with an XDP program, or with GRO asked for (iptables alone).
    server_gro(lab, "on");
    let (mut ceiling, mut iptables, mut firewall, mut firewall_default) = (vec![], vec![], vec![], vec![]);
    for _ in 0..FLOOD_ROUNDS {
        iptables.push(flood(lab, generator));
        // The ceiling: an XDP program that drops everything (the baseline, its map empty).
        ceiling.push(lab.run_in(&lab.server, || {
            let mut ebpf = EbpfLoader::new().load(firewall_user::BENCH_BASELINE_OBJECT).expect("loading");
            let program: &mut Xdp = ebpf.program_mut("bench_baseline").unwrap().try_into().unwrap();
            program.load().expect("loading the drop-all program");
            let link = program.attach(SERVER_IF, XdpMode::Default).expect("attaching the drop-all program");
            let pps = flood(lab, generator);
            program.detach(link).expect("detaching");
            pps
        }));
        for (mode, pps) in [("native", &mut firewall), ("auto", &mut firewall_default)] {
            lab.firewall_ok(&["up", "--policy", &policy, "--iface", SERVER_IF, "--mode", mode]);
            pps.push(flood(lab, generator));
            lab.firewall_ok(&["down", "--iface", SERVER_IF]);
        }
    }
    iptables_restore(
        lab,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    );
    server_gro(lab, "off");
    Flood {
        peers: peers_n,
        ceiling: median(ceiling),
        iptables: median(iptables),
        firewall: median(firewall),
        firewall_default: median(firewall_default),
    }
}

/// `ethtool -K s0 gro on|off` in the server's namespace (a veth's is off unless asked).
fn server_gro(lab: &Lab, state: &str) {
    let status = Command::new("ip")
        .args(["netns", "exec", &lab.server, "ethtool", "-K", SERVER_IF, "gro", state])
        .status()
        .expect("ethtool (cargo xtask setup installs it)");
    assert!(status.success(), "ethtool -K {SERVER_IF} gro {state}");
}

const BULK_ROUNDS: usize = 3;
const BULK_SECONDS: u32 = 3;
const BULK_IPTABLES: &str = "the seed's iptables";

/// One iperf3 stream from a client address to the web port (80, any peer), for
/// `BULK_SECONDS`: the receiver's Gbit/s.
fn bulk(lab: &Lab) -> f64 {
    let mut server = lab.server_command("iperf3");
    server
        .args(["-s", "-1", "-p", "80", "-B", &HOST.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = server.spawn().expect("iperf3 -s (cargo xtask setup installs iperf3)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.client))
        .args(["iperf3", "-J", "-c", &HOST.to_string(), "-p", "80", "-B", &STRANGER.to_string()])
        .args(["-t", &BULK_SECONDS.to_string()])
        .output()
        .expect("iperf3 -c");
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J");
    report["end"]["sum_received"]["bits_per_second"].as_f64().expect("iperf3's received rate") / 1e9
}

/// Bulk receive with no filter, the seed's iptables, and the firewall in its default mode
/// (generic on the lab's veth) and in native mode, interleaved: each one's median.
fn bulk_rows(lab: &Lab) -> Vec<(&'static str, f64)> {
    let policy = lab.policy_file();
    let policy = policy.to_str().unwrap();
    let mut runs: [(&'static str, Vec<f64>); 4] = [
        ("none", vec![]),
        (BULK_IPTABLES, vec![]),
        ("the firewall, default mode (generic XDP on a veth)", vec![]),
        ("the firewall, `--mode native`", vec![]),
    ];
    for _ in 0..BULK_ROUNDS {
        runs[0].1.push(bulk(lab));
        iptables_restore(lab, &seed_ruleset(lab, 1));
        runs[1].1.push(bulk(lab));
        iptables_restore(
            lab,
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
        );
        for (i, mode) in [(2, "auto"), (3, "native")] {
            lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF, "--mode", mode]);
            runs[i].1.push(bulk(lab));
            lab.firewall_ok(&["down", "--iface", SERVER_IF]);
        }
    }
    runs.into_iter().map(|(name, gbits)| (name, median(gbits))).collect()
}

/// pps against peers, log-log, both filters and the ceiling: an SVG drawn here.
fn chart(path: &Path, floods: &[Flood]) {
    let (w, h, left, bottom, top, right) = (640.0, 400.0, 80.0, 50.0, 30.0, 150.0);
    let x = |peers: u32| left + (f64::from(peers).log10() / 5.0) * (w - left - right);
    let y = |pps: f64| {
        let (lo, hi) = (2.0, 7.0); // 100 to 10M packets/s
        top + (1.0 - (pps.max(1.0).log10() - lo) / (hi - lo)) * (h - top - bottom)
    };
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    );
    const NAMES: [&str; 8] = ["1", "10", "100", "1k", "10k", "100k", "1M", "10M"];
    for e in 2..=7 {
        let yy = y(10f64.powi(e));
        let _ = writeln!(
            svg,
            "<line x1='{left}' x2='{}' y1='{yy}' y2='{yy}' stroke='#ddd'/><text x='{}' y='{}' text-anchor='end'>{}</text>",
            w - right,
            left - 6.0,
            yy + 4.0,
            NAMES[e as usize]
        );
    }
    for e in 0..=5 {
        let xx = x(10u32.pow(e));
        let _ = writeln!(
            svg,
            "<line x1='{xx}' x2='{xx}' y1='{top}' y2='{}' stroke='#eee'/><text x='{xx}' y='{}' text-anchor='middle'>{}</text>",
            h - bottom,
            h - bottom + 16.0,
            NAMES[e as usize]
        );
    }
    let _ = writeln!(
        svg,
        "<text x='{}' y='{}' text-anchor='middle'>SSH peers in the allow-list</text>",
        (left + w - right) / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        svg,
        "<text x='14' y='{}' transform='rotate(-90 14 {})' text-anchor='middle'>packets/s absorbed</text>",
        h / 2.0,
        h / 2.0
    );
    for (i, (name, colour, pick)) in [
        ("XDP drop-all", "#888", (|f: &Flood| f.ceiling) as fn(&Flood) -> f64),
        ("firewall", "#1a7f37", |f: &Flood| f.firewall),
        ("seed's iptables", "#cf222e", |f: &Flood| f.iptables),
    ]
    .into_iter()
    .enumerate()
    {
        let points: Vec<String> =
            floods.iter().map(|f| format!("{:.1},{:.1}", x(f.peers), y(pick(f)))).collect();
        let _ = writeln!(
            svg,
            "<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>",
            points.join(" ")
        );
        for f in floods {
            let _ = writeln!(
                svg,
                "<circle cx='{:.1}' cy='{:.1}' r='3' fill='{colour}'/>",
                x(f.peers),
                y(pick(f))
            );
        }
        let ly = top + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            "<line x1='{}' x2='{}' y1='{ly}' y2='{ly}' stroke='{colour}' stroke-width='2'/><text x='{}' y='{}'>{name}</text>",
            w - right + 10.0,
            w - right + 30.0,
            w - right + 35.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).expect("writing the chart");
}

/// Replaces the generated part of docs/BENCHMARKS.md (between its markers) with `md`.
fn write_benchmarks_doc(path: &Path, md: &str) {
    const BEGIN: &str = "<!-- bench:begin -->";
    const END: &str = "<!-- bench:end -->";
    let Ok(doc) = std::fs::read_to_string(path) else {
        eprintln!("bench: {} not found; tables left in target/bench/bench.md", path.display());
        return;
    };
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        eprintln!("bench: {} has no {BEGIN}…{END} markers", path.display());
        return;
    };
    let updated = format!("{}{BEGIN}\n{md}{}", &doc[..b], &doc[e..]);
    std::fs::write(path, updated).expect("docs/BENCHMARKS.md");
    eprintln!("bench: {} updated", path.display());
}
