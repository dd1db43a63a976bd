//! Sampled drop events (`firewall drops`, `serve --log-drops`): off until a listener asks,
//! then rate-limited in the kernel, decoded and named as iptables' LOG target would write
//! them, and off again when the listener goes.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration drops:: -- --nocapture`.
use std::{
    io::{BufRead as _, BufReader},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use tests::{
    lab::{HOST, Lab, SERVER_IF, STRANGER, firewall_bin},
    require_root,
};

/// A port nothing admits: its datagrams fall to INPUT's policy.
const CLOSED: SocketAddrV4 = SocketAddrV4::new(HOST, 9999);
const RATE: u32 = 5;
/// Generous: how long a child may take to say its first line or to exit.
const WITHIN: Duration = Duration::from_secs(20);

/// A `firewall` child in the server namespace, its stdout and stderr line by line; killed
/// on drop.
struct Listener {
    child: Child,
    lines: Receiver<(bool, String)>,
}

impl Listener {
    fn start(lab: &Lab, args: &[&str]) -> Listener {
        let mut command = lab.server_command(firewall_bin());
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        for (is_stdout, pipe) in [
            (true, Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>),
            (false, Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send((is_stdout, line)).is_err() {
                        return;
                    }
                }
            });
        }
        Listener { child, lines }
    }

    /// Waits for a line on stderr containing `needle`.
    fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + WITHIN;
        while let Ok((is_stdout, line)) =
            self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if !is_stdout && line.contains(needle) {
                return line;
            }
        }
        panic!("no line with {needle:?} on stderr within {WITHIN:?}");
    }

    /// The lines that arrived within `wait`, from stdout (`true`) or stderr.
    fn lines_within(&self, wait: Duration, stdout: bool) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Ok((is_stdout, line)) =
            self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if is_stdout == stdout {
                out.push(line);
            }
        }
        out
    }

    fn stop(mut self, signal: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: a signal to our own child, not reaped yet.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
        let deadline = Instant::now() + WITHIN;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running {WITHIN:?} after the signal");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` datagrams from `from` to `to`, as fast as they go.
fn datagrams(lab: &Lab, from: Ipv4Addr, to: SocketAddrV4, count: usize) {
    lab.run_in(lab.ns_of(from), || {
        let socket = UdpSocket::bind(SocketAddr::from((from, 0))).unwrap();
        for _ in 0..count {
            socket.send_to(b"knock", to).unwrap();
        }
    });
}

/// Whether the live filter's CONFIG says drop events are on.
fn events_on(lab: &Lab) -> bool {
    lab.config_flags() & firewall_common::CONFIG_LOG_DROPS != 0
}

#[test]
fn drop_events_are_sampled_in_the_kernel_and_told_as_iptables_log_tells_them() {
    require_root();
    let lab = Lab::new("drops");
    lab.up();
    assert!(!events_on(&lab), "drop events are off until someone listens");
    let before = lab.list().policy("INPUT");

    let listener = Listener::start(&lab, &["drops", "--rate", &RATE.to_string(), "--iface", SERVER_IF]);
    listener.wait_stderr("drop events on s0, at most 5 a second");
    assert!(events_on(&lab));
    // The flag is the listener's, not the policy's: a reload keeps it.
    lab.firewall_ok(&["reload"]);
    assert!(events_on(&lab), "a reload turned the drop events off");
    let started = Instant::now();
    datagrams(&lab, STRANGER, CLOSED, 400);
    let lines = listener.lines_within(Duration::from_secs(2), true);
    let elapsed = started.elapsed();
    let dropped = lab.list().policy("INPUT") - before;
    assert!(dropped >= 400, "{dropped} drops counted");
    // The kernel's bucket: a burst of RATE, then RATE a second.
    let most = RATE as usize + (f64::from(RATE) * elapsed.as_secs_f64()).ceil() as usize;
    assert!(
        !lines.is_empty() && lines.len() <= most,
        "{} events for {dropped} drops in {elapsed:?} (at most {most})",
        lines.len()
    );
    // The lab's own link noise (IPv6 multicast listener reports, dropped as `ipv6`)
    // shares the bucket; every event of ours reads as iptables' LOG would write it.
    let ours: Vec<&String> = lines.iter().filter(|l| l.contains("SRC=203.0.113.99")).collect();
    assert!(!ours.is_empty(), "{lines:?}");
    let expected =
        "DROP IN=s0 OUT= CHAIN=INPUT RULE=policy SRC=203.0.113.99 DST=198.51.100.1 LEN=47 PROTO=UDP SPT=";
    for line in ours {
        assert!(line.starts_with(expected) && line.ends_with(" DPT=9999"), "{line:?}");
    }

    // A blocked peer's drops name the entry.
    lab.firewall_ok(&["block", &STRANGER.to_string()]);
    std::thread::sleep(Duration::from_secs(1));
    datagrams(&lab, STRANGER, CLOSED, 10);
    let lines = listener.lines_within(Duration::from_secs(2), true);
    assert!(
        lines.iter().any(|l| l
            .starts_with("DROP IN=s0 OUT= CHAIN=INPUT RULE=blocklist MATCH=203.0.113.99 SRC=203.0.113.99")),
        "{lines:?}"
    );

    // Gone, the listener turns them off again.
    let status = listener.stop(libc::SIGINT);
    assert!(status.success(), "{status}");
    assert!(!events_on(&lab), "drop events still on after the listener left");

    // A filter an older version loaded has no ring of its own (its events went through
    // aya-log's): refused, with the way out, as any map it lacks.
    std::fs::remove_file(lab.pin_dir().join(firewall_common::MAP_DROP_EVENTS)).unwrap();
    let expected = "the live filter has no map DROP_EVENTS: an older version made it; `firewall up` with its policy makes it in place";
    for args in [&["drops", "--iface", SERVER_IF][..], &["reload"]] {
        let out = lab.firewall(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "firewall {args:?}: {stderr}");
    }
    assert!(!events_on(&lab), "the refused listener turned drop events on");
}

#[test]
fn serve_logs_drops_on_stderr_and_counts_them() {
    require_root();
    let lab = Lab::new("servedrops");
    lab.up();
    let serve = Listener::start(
        &lab,
        &["serve", "--metrics", "127.0.0.1:0", "--log-drops", "10", "--iface", SERVER_IF],
    );
    let line = serve.wait_stderr("firewall serve: metrics at http://");
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("the address").to_owned();
    // The events' task starts beside the HTTP one.
    let deadline = Instant::now() + WITHIN;
    while !events_on(&lab) {
        assert!(Instant::now() < deadline, "serve --log-drops never turned drop events on");
        std::thread::sleep(Duration::from_millis(50));
    }
    datagrams(&lab, STRANGER, CLOSED, 50);
    let lines = serve.lines_within(Duration::from_secs(2), false);
    let events: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("firewall serve: DROP IN=s0 OUT= CHAIN=INPUT RULE=policy"))
        .collect();
    assert!(!events.is_empty() && events.len() <= 10 + 10 * 3, "{lines:?}");
    let scrape = lab.run_in(&lab.server, || {
        Command::new("curl").args(["-sf", "--max-time", "10", &url]).output().expect("curl")
    });
    let text = String::from_utf8_lossy(&scrape.stdout);
    let total: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("firewall_drop_events_total "))
        .unwrap_or_else(|| panic!("no firewall_drop_events_total in\n{text}"))
        .parse()
        .unwrap();
    // Every event told is counted (the lab's link noise has events of its own).
    let told = lines.iter().filter(|l| l.starts_with("firewall serve: DROP ")).count() as u64;
    assert!(total >= told, "{total} counted, {told} told");
    assert!(
        text.contains("\nfirewall_blocklist_entries 0\n") && text.contains("\nfirewall_audit 0\n"),
        "{text}"
    );
    assert!(serve.stop(libc::SIGTERM).success());
    assert!(!events_on(&lab), "drop events still on after serve ended");
}

/// The event itself, through BPF_PROG_TEST_RUN: a crafted frame dropped each way, and what
/// the kernel wrote into the ring for it, field by field.
#[test]
fn a_drop_s_event_holds_its_direction_line_length_and_head() {
    use aya::maps::RingBuf;
    use firewall_common::{
        Builtin, CONFIG_LOG_DROPS, Chain, DROP_EVENT_BYTES, Direction, LOG_BUCKET, MAP_DROP_EVENTS,
        TokenBucket, builtin_counter,
    };
    use firewall_user::view::drops::event_of;
    use tests::harness::{TestFilter, Verdict};

    require_root();
    let mut f = TestFilter::tight();
    let mut ring =
        RingBuf::try_from(f.loaded.ebpf.take_map(MAP_DROP_EVENTS).expect("the ring")).expect("a ring buffer");
    let udp = |src: [u8; 4], dst: [u8; 4], port: u16, payload: &[u8]| {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv4(src, dst, 64)
            .udp(41234, port)
            .write(&mut frame, payload)
            .expect("a UDP frame");
        frame
    };
    let stranger = STRANGER.octets();
    let ours = HOST.octets();
    // Longer than the head: the event has the first DROP_EVENT_BYTES.
    let long = udp(stranger, ours, CLOSED.port(), &[0x5a; 100]);

    // No listener: no event.
    assert_eq!(f.ingress(&long), Verdict::Drop);
    assert!(ring.next().is_none(), "an event while no one listens");

    let maps = &mut f.loaded.maps;
    let bucket = TokenBucket { tat: 0, interval_ns: 1_000_000, burst_ns: 1_000_000_000 };
    maps.token_buckets.set(LOG_BUCKET, bucket, 0).expect("the events' bucket");
    maps.set_flag(CONFIG_LOG_DROPS, true).expect("turning the events on");

    assert_eq!(f.ingress(&long), Verdict::Drop);
    let event = event_of(&ring.next().expect("the ingress drop's event")).expect("a well-formed event");
    assert_eq!(event.direction(), Some(Direction::In));
    assert_eq!(event.counter, builtin_counter(Chain::Input, Builtin::Policy));
    assert_eq!(event.len as usize, long.len());
    assert_eq!(usize::from(event.head_len), DROP_EVENT_BYTES);
    assert_eq!(event.head(), &long[..DROP_EVENT_BYTES]);

    // Out, from a source not ours, and shorter than the head: the IPv4 header and the
    // ports (the kernel copies in steps the verifier can check, 38 bytes the one below 47).
    let short = udp([192, 0, 2, 1], stranger, 53, b"query");
    assert_eq!(short.len(), 47);
    assert_eq!(f.egress(&short), Verdict::Drop);
    let event = event_of(&ring.next().expect("the egress drop's event")).expect("a well-formed event");
    assert_eq!(event.direction(), Some(Direction::Out));
    assert_eq!(event.counter, builtin_counter(Chain::Output, Builtin::SpoofedSource));
    assert_eq!(event.len, 47);
    assert_eq!(event.head(), &short[..38]);
    assert!(ring.next().is_none(), "one event a drop");

    // What passes sends nothing.
    let dns = udp(ours, [198, 51, 100, 53], 53, b"query");
    assert_eq!(f.egress(&dns), Verdict::Pass);
    assert!(ring.next().is_none(), "an event for a packet passed");
}

/// iptables' `-j LOG` before an ACCEPT, as a rule's `log = true`: each flow the rule admits
/// is told once, as `ACCEPT` on the rule's line, and nothing of the flow after its first
/// packet; a rule without it tells nothing.
#[test]
fn a_rule_with_log_tells_the_flows_it_admits_and_nothing_more() {
    require_root();
    let lab = Lab::new("drops-log");
    let logged = SocketAddrV4::new(HOST, 2222);
    let quiet = SocketAddrV4::new(HOST, 2223);
    lab.tcp_echo(logged);
    lab.tcp_echo(quiet);
    let extra = r#"
[[rule]]
name = "logged-in"
direction = "in"
protocols = ["tcp"]
port = 2222
peers = "any"
log = true
[[rule]]
name = "quiet-in"
direction = "in"
protocols = ["tcp"]
port = 2223
peers = "any"
"#;
    lab.up_with(&lab.tight_with("logged.toml", extra));
    assert!(lab.firewall_ok(&["list", "-n"]).contains("tcp dpt:2222 state NEW,ESTABLISHED LOG"));

    let listener = Listener::start(&lab, &["drops", "--rate", "100", "--iface", SERVER_IF]);
    listener.wait_stderr("drop events on s0");
    for to in [logged, quiet] {
        for _ in 0..3 {
            let outcome = lab.tcp_probe(STRANGER, to, Duration::from_secs(5));
            assert_eq!(outcome, tests::lab::Outcome::Open, "{to}");
        }
    }
    let lines = listener.lines_within(Duration::from_secs(2), true);
    let told: Vec<&String> = lines.iter().filter(|l| l.contains("SRC=203.0.113.99")).collect();
    // Three connections, three SYNs told; their ACKs, data and FINs rode the flow.
    assert_eq!(told.len(), 3, "{lines:#?}");
    let expected = "ACCEPT IN=s0 OUT= CHAIN=INPUT RULE=logged-in SRC=203.0.113.99 DST=198.51.100.1 LEN=";
    for line in told {
        assert!(line.starts_with(expected) && line.ends_with(" DPT=2222"), "{line:?}");
    }
    listener.stop(libc::SIGINT);
}

/// `firewall drops | head`: once its reader has gone, the next event ends the listener
/// as Ctrl-C does, the events turned off, where it wrote on into the void until stopped.
#[test]
fn a_listener_whose_reader_has_gone_ends_at_the_next_event_and_turns_the_events_off() {
    require_root();
    let lab = Lab::new("drops-gone");
    lab.up();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut command = lab.server_command(firewall_bin());
    command.args(["drops", "--iface", SERVER_IF]).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let deadline = Instant::now() + WITHIN;
    let status = loop {
        if events_on(&lab) {
            datagrams(&lab, STRANGER, CLOSED, 1);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("firewall drops still running {WITHIN:?} after its reader went");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success() && !stderr.contains("panicked"), "{status}: {stderr}");
    assert!(!events_on(&lab), "the events were left on");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}
