//! Spoofed packets against live sessions, in the lab: the real `firewall` binary on `s0`,
//! real TCP sessions between the host and a server in the client namespace, and segments
//! forged with scapy (docs/testing.md "Spoofed segments").
//!
//! - A forged RST or FIN outside the window the host advertised changes nothing: the
//!   session's entry stays open with its long timeout, and once the short RST and FIN
//!   timeouts have passed the server, speaking first, still reaches the host (before, the
//!   entry moved to the RST timeout and expired, and the server's next segment was
//!   dropped).
//! - A forged RST inside the window is the host's TCP's to judge: at its edge (the
//!   sequence number the host expects next) the host resets the session, and the entry
//!   ends with it; inside but not at the edge the host answers with a challenge ACK (RFC
//!   5961) and the session goes on, and so does its entry.
//! - A trickle of spoofed SYNs that would churn the conntrack table many times over fills
//!   only the half-open table: an idle session, its server speaking first afterwards,
//!   gets through, and `list` and `serve` count the half-open evictions and none of the
//!   established ones.
//!
//! `FIREWALL_BIN=…/firewall` runs them against another build (they fail on the one before
//! the half-open table and the sequence checks).
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    daemons::{PYTHON, in_ns, need},
    flood::{Sender, Trafgen, eth_header, pin_to_cpu},
    lab::{CLIENT_IF, HOST, Lab, SERVER_IF, STRANGER, firewall_bin, sh, tcp_connect},
    require_root,
};

/// The server the host's sessions go to (a peer of the `db-out` rule), in the client
/// namespace, and its port.
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const SERVER_PORT: u16 = 5432;
/// How long the host waits for what the server sends: enough on a busy machine, and
/// nothing that is dropped ever arrives.
const ARRIVES_WITHIN: Duration = Duration::from_secs(3);

/// A policy on `s0` with the `db-out` rule (the host to the server), `web-in` (open to
/// anyone), RST and FIN timeouts of 3 and 4 s (so the test need not wait 10 s and 2
/// minutes), and `conntrack` lines added.
fn policy(lab: &Lab, conntrack: &str) -> PathBuf {
    let text = format!(
        r#"[host]
interface = "{SERVER_IF}"
address = "{HOST}"

[conntrack]
tcp_rst_timeout = "3s"
tcp_fin_timeout = "4s"
{conntrack}
[[rule]]
name = "db-out"
direction = "out"
protocols = ["tcp"]
port = {SERVER_PORT}
peers = ["{SERVER}"]

[[rule]]
name = "web-in"
direction = "in"
protocols = ["tcp"]
port = 80
peers = "any"
"#
    );
    let path = lab.tmp().join("spoofing.toml");
    std::fs::write(&path, text).expect("writing the policy");
    path
}

/// A TCP session the host opened to the server, both ends' sockets held.
struct Session {
    host: TcpStream,
    server: TcpStream,
    host_port: u16,
}

impl Session {
    /// Connects from the host (on CPU `cpu`, when given: see [`pin_to_cpu`]) and has each
    /// end say something, so that the session is heard both ways.
    fn open(lab: &Lab, listener: &TcpListener, cpu: Option<usize>) -> Session {
        let host = lab.run_in(&lab.server, || {
            if let Some(cpu) = cpu {
                // This thread only: the host's segments leave from the CPU that sends.
                pin_to_cpu(0, cpu);
            }
            tcp_connect(HOST, SocketAddrV4::new(SERVER, SERVER_PORT), Duration::from_secs(5))
        });
        let host = host.unwrap_or_else(|outcome| panic!("the host's session to the server: {outcome:?}"));
        let (server, _) = listener.accept().expect("the server accepts");
        let host_port = host.local_addr().expect("bound").port();
        let mut session = Session { host, server, host_port };
        session.host_says(b"hello\n").expect("the host's first words");
        session.server_says(b"welcome\n").expect("the server's first words");
        session
    }

    /// The host writes `token`; the server reads it.
    fn host_says(&mut self, token: &[u8]) -> Result<(), String> {
        self.host.write_all(token).map_err(|e| format!("the host's write: {e}"))?;
        read_exactly(&mut self.server, token).map_err(|e| format!("the server's read: {e}"))
    }

    /// The server writes `token`; the host reads it within [`ARRIVES_WITHIN`].
    fn server_says(&mut self, token: &[u8]) -> Result<(), String> {
        self.server.write_all(token).map_err(|e| format!("the server's write: {e}"))?;
        read_exactly(&mut self.host, token).map_err(|e| format!("the host's read: {e}"))
    }
}

fn read_exactly(stream: &mut TcpStream, token: &[u8]) -> std::io::Result<()> {
    stream.set_read_timeout(Some(ARRIVES_WITHIN))?;
    let mut got = vec![0; token.len()];
    stream.read_exact(&mut got)?;
    if got != token {
        return Err(std::io::Error::other(format!("read {got:?}, not {token:?}")));
    }
    Ok(())
}

/// The server's listening socket, in the client namespace.
fn listen(lab: &Lab) -> TcpListener {
    lab.run_in(&lab.client, || TcpListener::bind(SocketAddrV4::new(SERVER, SERVER_PORT)))
        .unwrap_or_else(|e| panic!("listening on {SERVER}:{SERVER_PORT}: {e}"))
}

/// `firewall conntrack --json`'s entry for the session from the host's port.
fn flow_of(lab: &Lab, host_port: u16) -> Option<Value> {
    let out = lab.firewall_ok(&["conntrack", "--json=1", "--iface", SERVER_IF]);
    let report: Value = serde_json::from_str(&out).expect("conntrack --json=1 is JSON");
    report["flows"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|f| f["sport"] == host_port && f["rule"] == "db-out")
        .cloned()
}

/// Sees the host's next segment of the session on `c0` (as an attacker on the path would),
/// then sends, from the server's address and port, one segment for each `(flags, offset)`
/// (scapy's flag letters), its sequence number `offset` from the acknowledgement number
/// the host's segment carried: what the host expects next.
const FORGE_SCRIPT: &str = r#"
import json, logging, sys
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IP, TCP, AsyncSniffer, conf, send
conf.verb = 0
iface, host, hport, server, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
def from_host(p):
    return IP in p and TCP in p and p[IP].src == host and p[TCP].sport == hport and p[TCP].dport == sport
sniffer = AsyncSniffer(iface=iface, lfilter=from_host, count=1, timeout=15, started_callback=lambda: print("ready", flush=True))
sniffer.start()
sniffer.join()
if not sniffer.results:
    print(json.dumps({"error": "no segment of the host's seen"}), flush=True)
    sys.exit(1)
seen = sniffer.results[0][TCP]
host_next = (seen.seq + len(seen.payload)) % 2**32
sent = []
for spec in sys.argv[6:]:
    flags, offset = spec.split(":")
    seq = (seen.ack + int(offset)) % 2**32
    send(IP(src=server, dst=host) / TCP(sport=sport, dport=hport, flags=flags, seq=seq, ack=host_next, window=502))
    sent.append({"flags": flags, "seq": seq})
print(json.dumps({"ack": seen.ack, "window": seen.window, "host_next": host_next, "sent": sent}), flush=True)
"#;

/// Forges `segments` against `session` (see [`FORGE_SCRIPT`]): the host says something,
/// which the script sees, and the forged segments follow at once. What the script saw and
/// sent.
fn forge(lab: &Lab, session: &mut Session, segments: &[(&str, i64)]) -> Value {
    need("/usr/lib/python3/dist-packages/scapy/__init__.py", "python3-scapy");
    let mut command = in_ns(&lab.client, PYTHON);
    command
        .args(["-c", FORGE_SCRIPT, CLIENT_IF, &HOST.to_string(), &session.host_port.to_string()])
        .args([SERVER.to_string(), SERVER_PORT.to_string()])
        .args(segments.iter().map(|(flags, offset)| format!("{flags}:{offset}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let ready = lines.next().and_then(Result::ok);
    assert_eq!(ready.as_deref(), Some("ready"), "the forging script did not start");
    session.host_says(b"the host speaks\n").expect("the host's words the forger sees");
    let report = lines.next().and_then(Result::ok).unwrap_or_default();
    let status = child.wait().expect("waiting for the forging script");
    let mut err = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    assert!(status.success(), "the forging script failed ({status}): {report}\n{err}");
    serde_json::from_str(&report)
        .unwrap_or_else(|e| panic!("the forging script's report ({e}): {report}\n{err}"))
}

/// An entry as `conntrack --json` shows it: table, state, seconds left.
fn described(flow: Option<&Value>) -> String {
    match flow {
        Some(f) => format!("{} {} expires in {} s", f["table"], f["state"], f["expires_secs"]),
        None => "no entry".into(),
    }
}

/// Asserts the session's entry is established and open with the established timeout
/// (5 days: more than a day left).
fn assert_open(flow: Option<&Value>, when: &str) {
    let f = flow.unwrap_or_else(|| panic!("{when}: the session has no entry"));
    assert_eq!(
        (f["table"].as_str(), f["state"].as_str()),
        (Some("established"), Some("ESTABLISHED")),
        "{when}: {f}"
    );
    assert!(f["expires_secs"].as_u64().is_some_and(|s| s > 86_400), "{when}: the RST or FIN timeout: {f}");
}

#[test]
fn forged_rst_and_fin_outside_the_window_leave_a_session_alone() {
    require_root();
    let lab = Lab::new("spoof-rst");
    lab.up_with(&policy(&lab, ""));
    let listener = listen(&lab);
    let mut session = Session::open(&lab, &listener, None);
    let before_forgery = flow_of(&lab, session.host_port);
    let before = lab.list();

    // Far outside the window either way (a quarter of the sequence space): what a forger
    // who guessed the tuple but not the sequence sends; a RST with and without ACK, and a
    // FIN.
    let far = 1i64 << 30;
    let forged = [("R", far), ("R", -far), ("RA", far), ("FA", far), ("FA", -far)];
    let report = forge(&lab, &mut session, &forged);
    let after_forgery = flow_of(&lab, session.host_port);
    let after = lab.list();
    // They reached the host (which ignores them, or answers with a duplicate ACK): they
    // ride the session's entry as its returns, as any segment of its tuple does.
    let returns = after.packets("INPUT", "db-out") - before.packets("INPUT", "db-out");

    // Idle for longer than the RST and FIN timeouts, then the server speaks first.
    std::thread::sleep(Duration::from_secs(5));
    let late = session.server_says(b"the server speaks first\n");
    let after_wait = flow_of(&lab, session.host_port);
    eprintln!(
        "forged {forged:?} against {report}: entry then {}, after 5 s idle {}; the server's late words {late:?}",
        described(after_forgery.as_ref()),
        described(after_wait.as_ref())
    );
    late.unwrap_or_else(|e| panic!("the server's words after the forged segments and 5 s idle: {e}"));
    assert_open(before_forgery.as_ref(), "before the forged segments");
    assert_open(after_forgery.as_ref(), "after the forged segments");
    assert_open(after_wait.as_ref(), "after 5 s idle");
    // The forged segments and the host's words' answer, at least.
    assert!(returns > forged.len() as u64, "the forged segments passed as returns: {returns}");
    session.host_says(b"and the host answers\n").expect("the session goes on both ways");
}

#[test]
fn a_forged_rst_inside_the_window_is_the_hosts_tcp_to_judge() {
    require_root();
    let lab = Lab::new("spoof-rst-in");
    lab.up_with(&policy(&lab, ""));
    let listener = listen(&lab);

    // Inside the window but not at its edge: the host's TCP answers with a challenge ACK
    // (RFC 5961 §3.2) and keeps the session. The filter took the RST (it is inside the
    // window the host advertised), and the host's ACK after it shows it was not taken:
    // the entry is open again.
    let mut session = Session::open(&lab, &listener, None);
    let report = forge(&lab, &mut session, &[("R", 1)]);
    let after_forgery = flow_of(&lab, session.host_port);
    std::thread::sleep(Duration::from_secs(5));
    let late = session.server_says(b"still here\n");
    let after_wait = flow_of(&lab, session.host_port);
    eprintln!(
        "a RST one past the edge, {report}: entry then {}, after 5 s idle {}; the server's late words {late:?}",
        described(after_forgery.as_ref()),
        described(after_wait.as_ref())
    );
    late.unwrap_or_else(|e| panic!("the session after a challenged RST and 5 s idle: {e}"));
    assert_open(after_forgery.as_ref(), "after the challenged RST");
    assert_open(after_wait.as_ref(), "after 5 s idle");

    // At the edge: the host's TCP takes it and resets the session, as it would a RST from
    // the server; an on-path attacker who reads the sequence numbers can always do this,
    // with or without a filter. The entry ends with the session (RST timeout).
    let mut session = Session::open(&lab, &listener, None);
    let report = forge(&lab, &mut session, &[("R", 0)]);
    let after_reset = flow_of(&lab, session.host_port);
    let mut buf = [0u8; 16];
    session.host.set_read_timeout(Some(ARRIVES_WITHIN)).expect("a read timeout");
    let read = session.host.read(&mut buf);
    eprintln!(
        "a RST at the edge, {report}: entry then {}; the host's read {read:?}",
        described(after_reset.as_ref())
    );
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the host's TCP resets the session: {read:?}"
    );
    let f = after_reset.expect("the reset session's entry, until its RST timeout");
    assert_eq!((f["table"].as_str(), f["state"].as_str()), (Some("established"), Some("CLOSE")), "{f}");
    assert!(f["expires_secs"].as_u64().is_some_and(|s| s <= 3), "the RST timeout: {f}");
}

/// `firewall serve --metrics` in the server namespace, scraped once with curl.
fn scrape(lab: &Lab) -> String {
    need("curl", "curl");
    let addr = "127.0.0.1:19391";
    let mut serve = lab.server_command(firewall_bin());
    serve
        .args(["serve", "--metrics", addr, "--iface", SERVER_IF])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pid = lab.spawn(&mut serve);
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let out = in_ns(&lab.server, "curl").args(["-sf", &format!("http://{addr}/metrics")]).output();
        match out {
            Ok(out) if out.status.success() => break String::from_utf8_lossy(&out.stdout).into_owned(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => panic!("firewall serve did not answer on {addr} within 10 s"),
        }
    };
    // SAFETY: a signal to the child started just above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = lab.wait(pid);
    text
}

/// The value of a sample of `metrics` (`name{labels} value`, labels as written).
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

#[test]
fn an_idle_session_outlives_a_trickle_of_spoofed_syns() {
    require_root();
    let lab = Lab::new("spoof-syn");
    // Small tables, so that the trickle churns the old table a dozen times within the
    // test: 12,000 SYNs, a thousand a second, to a service open to anyone.
    lab.up_with(&policy(&lab, "max_entries = 1024\nmax_half_open = 1024\n"));
    lab.tcp_echo(SocketAddrV4::new(HOST, 80));
    // The SYNs' sources, 100.64.0.0/16, routed through the stranger: the host's SYN-ACKs
    // leave by s0 and die in the client namespace, which forwards nothing.
    sh(Command::new("ip")
        .args(["-n", &lab.server, "route", "add", "100.64.0.0/16", "via"])
        .arg(STRANGER.to_string())
        .args(["dev", SERVER_IF]));
    let listener = listen(&lab);
    // On CPU 0, where trafgen sends and the veth runs XDP for what it sends: the kernel's
    // LRU evicts from the lists of the CPU that inserts (floods.rs), so only there could
    // the SYNs reach the session's entry.
    let mut session = Session::open(&lab, &listener, Some(0));
    let before_syns = flow_of(&lab, session.host_port);

    let syns = 12_000;
    let config = format!(
        "{{\n  {},\n  ipv4(saddr=100.64.0.0, saddr[2:2]=dinc(), daddr={HOST}, ttl=64),\n  \
         tcp(sp=dinc(1024, 65000), dp=80, syn, window=64240),\n}}\n",
        eth_header(&lab)
    );
    let sent = Trafgen::start(&lab, "syn-trickle", &config, Sender::Paced { gap_us: 1000 }, Some(syns))
        .wait(Duration::from_secs(120));
    let late = session.server_says(b"the server speaks first\n");
    let after = flow_of(&lab, session.host_port);
    let listing = lab.list();
    let text = lab.firewall_ok(&["list", "--iface", SERVER_IF]);
    let metrics = scrape(&lab);
    let conntrack = &listing.0["conntrack"];
    eprintln!(
        "{} spoofed SYNs in {:.1?}; the server's words after them {late:?}; entry {}; {}",
        sent.packets,
        sent.elapsed,
        described(after.as_ref()),
        text.lines().last().unwrap_or_default()
    );

    late.unwrap_or_else(|e| panic!("the idle session after {} spoofed SYNs: {e}", sent.packets));
    assert_open(before_syns.as_ref(), "before the SYNs");
    assert_open(after.as_ref(), "after the SYNs");
    assert_eq!(sent.packets, syns, "trafgen's count");
    let web = listing.packets("INPUT", "web-in");
    assert!(web >= syns, "every SYN was admitted by web-in: {web}");
    let table =
        |name: &str, field: &str| conntrack[name][field].as_u64().unwrap_or_else(|| panic!("{conntrack}"));
    assert_eq!(table("established", "evicted"), 0, "no established flow evicted: {conntrack}");
    assert_eq!(table("established", "capacity"), 1024, "{conntrack}");
    assert_eq!(table("half_open", "capacity"), 1024, "{conntrack}");
    assert!(table("half_open", "entries") <= 1024, "{conntrack}");
    // Every SYN opened a half-open flow, and the table holds 1,024: the rest were evicted
    // (a SYN-ACK the host retransmits meets a flow of its own, and replaces nothing).
    assert!(
        table("half_open", "evicted") >= syns - 1024 - 64,
        "the SYNs' flows evicted one another: {conntrack}"
    );
    let line = text.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("conntrack: ")
            && line.contains(" of 1,024 established, ")
            && line.contains("evicted 0 established, "),
        "{line}"
    );
    assert_eq!(sample(&metrics, "firewall_conntrack_evictions_total{table=\"established\"}"), 0);
    assert_eq!(
        sample(&metrics, "firewall_conntrack_evictions_total{table=\"half_open\"}"),
        table("half_open", "evicted"),
        "serve and list agree (no flow came or went between them)"
    );
    assert_eq!(sample(&metrics, "firewall_conntrack_half_open_capacity"), 1024);
    assert_eq!(sample(&metrics, "firewall_conntrack_capacity"), 1024);
}
