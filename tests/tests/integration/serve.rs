//! `firewall serve --metrics`: scraped with curl against `firewall list --json` and
//! checked by Prometheus' own promtool, then scraped by a Prometheus server; reloads on
//! SIGHUP, good and bad; SIGTERM and SIGINT; a stalled client; clients that open
//! connections and send nothing; the filter taken down and put up again; bad addresses,
//! a port in use, no filter.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration serve::`.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    lab::{HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, firewall_bin, ping_received, tight_text, xdp_lines},
    require_root,
};

const SSH_PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);
/// How long `serve` may take to start, answer a signal or exit: generous, never asserted
/// as a speed.
const WITHIN: Duration = Duration::from_secs(20);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `firewall serve ARGS…` in the lab's server namespace, killed on drop; its stderr
/// arrives line by line.
struct Serve {
    child: Child,
    stderr: Receiver<String>,
}

impl Serve {
    /// Starts it and waits for the line that says it serves.
    fn start(lab: &Lab, addr: &str) -> (Serve, String) {
        let mut command = lab.server_command(firewall_bin());
        command.args(["serve", "--metrics", addr, "--iface", SERVER_IF]);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut serve = Serve { child, stderr };
        let line = serve.line();
        (serve, line)
    }

    /// The next line on its stderr.
    fn line(&mut self) -> String {
        match self.stderr.recv_timeout(WITHIN) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("firewall serve said nothing within {WITHIN:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("firewall serve closed its stderr: {:?}", self.child.try_wait())
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: a signal to our own child, which has not been reaped (it is in `self`).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill {signal} {}: {}", self.child.id(), std::io::Error::last_os_error());
    }

    /// Waits for it to exit; its status and what else it said.
    fn exit(mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + WITHIN;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for firewall serve") {
                break status;
            }
            assert!(Instant::now() < deadline, "firewall serve still runs {WITHIN:?} after the signal");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = Vec::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -sf ARGS… URL` in namespace `ns`: its stdout, or its exit code when it failed.
fn curl(ns: &str, args: &[&str], url: &str) -> Result<String, i32> {
    let output = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["curl", "-sf", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl");
    match output.status.code() {
        Some(0) => Ok(text(&output.stdout)),
        code => Err(code.unwrap_or(-1)),
    }
}

/// `curl -s ARGS… http://127.0.0.1:9100PATH` in the server namespace, without `-f`:
/// the HTTP status and the body.
fn http_get(lab: &Lab, args: &[&str], path: &str) -> (u32, String) {
    let output = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.server))
        .args(["curl", "-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://127.0.0.1:9100{path}"))
        .output()
        .expect("running curl");
    let out = text(&output.stdout);
    let (body, code) = out.rsplit_once('\n').unwrap_or_else(|| panic!("curl's output: {out:?}"));
    (code.parse().unwrap_or_else(|_| panic!("curl's status: {out:?}")), body.to_owned())
}

/// One scrape of `http://127.0.0.1:9100/metrics` from the server namespace itself (over
/// loopback, which the filter does not see), in the classic text format.
fn scrape(lab: &Lab) -> Exposition {
    let body = curl(&lab.server, &[], "http://127.0.0.1:9100/metrics")
        .unwrap_or_else(|code| panic!("curl /metrics failed with exit {code}"));
    Exposition::parse(&body, false)
}

/// A sample: its labels and value.
#[derive(Clone, Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition, checked as it is parsed: every sample belongs to a family that a
/// `# HELP` and a `# TYPE` line introduced (in that order, once each), its name is the
/// family's (with `_total` for an OpenMetrics counter, `_info` for info), its labels are
/// well quoted, its value a number; OpenMetrics ends with `# EOF`, the classic format
/// has none.
#[derive(Debug)]
struct Exposition {
    /// Family name → (type, samples by name).
    families: BTreeMap<String, (String, BTreeMap<String, Vec<Sample>>)>,
    text: String,
}

fn parse_labels(text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {name:?} in {line:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        assert!(labels.insert(name.to_owned(), value).is_none(), "label {name} twice in {line:?}");
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

impl Exposition {
    fn parse(text: &str, openmetrics: bool) -> Exposition {
        let mut families: BTreeMap<String, (String, BTreeMap<String, Vec<Sample>>)> = BTreeMap::new();
        let mut helped: Option<String> = None;
        let mut current: Option<(String, String)> = None;
        let mut lines: Vec<&str> = text.lines().collect();
        assert!(text.ends_with('\n'), "the text ends with a newline");
        if openmetrics {
            assert_eq!(lines.pop(), Some("# EOF"), "OpenMetrics ends with # EOF:\n{text}");
        }
        for line in lines {
            if let Some(help) = line.strip_prefix("# HELP ") {
                let (name, words) = help.split_once(' ').unwrap_or_else(|| panic!("bad HELP {line:?}"));
                assert!(!words.trim().is_empty(), "empty HELP: {line:?}");
                assert!(!families.contains_key(name), "family {name} twice:\n{text}");
                helped = Some(name.to_owned());
                current = None;
            } else if let Some(kind) = line.strip_prefix("# TYPE ") {
                let (name, kind) = kind.split_once(' ').unwrap_or_else(|| panic!("bad TYPE {line:?}"));
                assert_eq!(helped.take().as_deref(), Some(name), "TYPE {name} without its HELP first");
                let known: &[&str] =
                    if openmetrics { &["counter", "gauge", "info"] } else { &["counter", "gauge"] };
                assert!(known.contains(&kind), "type {kind:?} of {name}");
                families.insert(name.to_owned(), (kind.to_owned(), BTreeMap::new()));
                current = Some((name.to_owned(), kind.to_owned()));
            } else if line.starts_with('#') {
                panic!("a comment that is neither HELP nor TYPE: {line:?}");
            } else {
                let (family, kind) =
                    current.clone().unwrap_or_else(|| panic!("sample before TYPE: {line:?}"));
                let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => {
                        let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("no }} in {line:?}"));
                        (name, parse_labels(labels, line))
                    }
                    None => (series, BTreeMap::new()),
                };
                let expected = match (openmetrics, kind.as_str()) {
                    (true, "counter") => format!("{family}_total"),
                    (true, "info") => format!("{family}_info"),
                    _ => family.clone(),
                };
                assert_eq!(name, expected, "a sample of family {family} ({kind}): {line:?}");
                let value: f64 = value.parse().unwrap_or_else(|e| panic!("value of {line:?}: {e}"));
                families
                    .get_mut(&family)
                    .expect("typed above")
                    .1
                    .entry(name.to_owned())
                    .or_default()
                    .push(Sample { labels, value });
            }
        }
        assert!(helped.is_none(), "a HELP without its TYPE:\n{text}");
        for (name, (_, samples)) in &families {
            for (sample, list) in samples {
                let unique: BTreeSet<&BTreeMap<String, String>> = list.iter().map(|s| &s.labels).collect();
                assert_eq!(unique.len(), list.len(), "{name}: {sample} repeats a label set:\n{text}");
            }
        }
        Exposition { families, text: text.to_owned() }
    }

    fn samples(&self, name: &str) -> &[Sample] {
        self.families.values().find_map(|(_, samples)| samples.get(name)).map_or(&[], Vec::as_slice)
    }

    /// The one sample of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let found: Vec<&Sample> = self
            .samples(name)
            .iter()
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .collect();
        assert!(found.len() <= 1, "{name}{labels:?} matches {} samples", found.len());
        found.first().map(|s| s.value as u64)
    }

    fn line(&self, name: &str, chain: &str, rule: &str, line: &str) -> u64 {
        self.value(name, &[("chain", chain), ("rule", rule), ("line", line)])
            .unwrap_or_else(|| panic!("no {name} for {chain} {rule} {line} in:\n{}", self.text))
    }

    fn single(&self, name: &str) -> u64 {
        match self.samples(name) {
            [one] => one.value as u64,
            other => panic!("{name}: {} samples in:\n{}", other.len(), self.text),
        }
    }
}

/// `promtool check metrics`: Prometheus' own parser and linter, on the classic text.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (apt package prometheus; cargo xtask setup installs it)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("writing to promtool");
    let output = child.wait_with_output().expect("waiting for promtool");
    assert!(output.status.success(), "promtool check metrics: {}{}\n{text}", text_of(&output), output.status);
}

fn text_of(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// The key a listing line has in the metrics: (chain, rule, line).
fn listing_keys(listing: &Value) -> Vec<((String, String, String), u64, u64)> {
    let mut out = Vec::new();
    for chain in listing["chains"].as_array().expect("chains") {
        let chain_name = chain["name"].as_str().expect("a chain's name");
        for line in chain["rules"].as_array().expect("rules") {
            let name = line["name"].as_str().expect("name").to_owned();
            let (source, destination) =
                (line["source"].as_str().unwrap(), line["destination"].as_str().unwrap());
            let which = if name == "antispoof" {
                if source == "0.0.0.0/0" {
                    format!("destination {destination}")
                } else {
                    format!("source {source}")
                }
            } else if !is_rule(&name) {
                "builtin".to_owned()
            } else if line["match"].as_str().unwrap_or("").contains("state ESTABLISHED") {
                "established".to_owned()
            } else {
                "new".to_owned()
            };
            out.push((
                (chain_name.to_owned(), name, which),
                line["packets"].as_u64().expect("packets"),
                line["bytes"].as_u64().expect("bytes"),
            ));
        }
    }
    out
}

/// Whether `name` is one of examples/tight.toml's rules (or the one the test adds).
fn is_rule(name: &str) -> bool {
    name == "metrics-in" || tight_text().contains(&format!("name = \"{name}\""))
}

/// Lines whose counters the lab's own link traffic moves (ARP, IPv6 neighbour and
/// listener discovery of the veth pair), so that no two readings need agree on them.
fn background(key: &(String, String, String)) -> bool {
    key.1 == "non-ip" || key.1 == "ipv6"
}

/// Waits until the counters of the rules stop moving (the last segments of closed TCP
/// sessions), so that a scrape and a listing read one after the other agree.
fn settle(lab: &Lab) {
    let deadline = Instant::now() + WITHIN;
    let mut last = lab.list().0;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = lab.list().0;
        let quiet =
            |v: &Value| listing_keys(v).into_iter().filter(|(k, _, _)| !background(k)).collect::<Vec<_>>();
        if quiet(&now) == quiet(&last) {
            return;
        }
        assert!(Instant::now() < deadline, "the counters still move after {WITHIN:?}");
        last = now;
    }
}

/// Every line of the listing is one sample of each family, with its counters.
fn assert_agrees_with_the_listing(metrics: &Exposition, listing: &Value) {
    let keys = listing_keys(listing);
    assert_eq!(
        metrics.samples("firewall_packets_total").len(),
        keys.len(),
        "one sample a line:\n{}",
        metrics.text
    );
    assert_eq!(metrics.samples("firewall_bytes_total").len(), keys.len());
    for ((chain, rule, line), packets, bytes) in &keys {
        let key = (chain.clone(), rule.clone(), line.clone());
        let scraped = metrics.line("firewall_packets_total", chain, rule, line);
        let scraped_bytes = metrics.line("firewall_bytes_total", chain, rule, line);
        if !background(&key) {
            assert_eq!(
                (scraped, scraped_bytes),
                (*packets, *bytes),
                "{chain} {rule} {line}: scrape and list"
            );
        }
    }
}

#[test]
fn serve_scrapes_the_listing_reloads_on_hup_and_leaves_the_filter_up_on_term() {
    require_root();
    let lab = Lab::new("serve");
    lab.tcp_echo(SSH);
    lab.up();
    let policy = lab.tmp().join("tight.toml");
    let original = fs::read_to_string(&policy).unwrap();
    let (mut serve, started) = Serve::start(&lab, "0.0.0.0:9100");
    assert_eq!(
        started,
        format!(
            "firewall serve: metrics at http://0.0.0.0:9100/metrics for the filter on {SERVER_IF}; SIGHUP reloads {}",
            policy.display()
        )
    );

    // Known traffic through two rules: five SSH sessions, three pings.
    for _ in 0..5 {
        assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open);
    }
    assert_eq!(ping_received(&lab.ping(IpAddr::V4(SSH_PEER), IpAddr::V4(HOST), 3, "0.2")), 3);
    settle(&lab);
    let metrics = scrape(&lab);
    let listing = lab.list().0;
    assert_agrees_with_the_listing(&metrics, &listing);
    let ssh_in = metrics.line("firewall_packets_total", "INPUT", "ssh-in", "new");
    assert!(ssh_in >= 5 * 3, "five sessions are at least 15 packets in, got {ssh_in}");
    assert!(metrics.line("firewall_packets_total", "OUTPUT", "ssh-in", "established") >= 5 * 2);
    assert_eq!(metrics.line("firewall_packets_total", "INPUT", "ping-in", "new"), 3);
    assert_eq!(metrics.line("firewall_packets_total", "OUTPUT", "ping-in", "established"), 3);
    assert!(metrics.line("firewall_bytes_total", "INPUT", "ping-in", "new") >= 3 * 84);
    let labels = [("chain", "INPUT"), ("rule", "ssh-in"), ("target", "ACCEPT"), ("line", "new")];
    assert_eq!(metrics.value("firewall_packets_total", &labels), Some(ssh_in), "with its target");
    let antispoof: BTreeSet<String> = metrics
        .samples("firewall_packets_total")
        .iter()
        .filter(|s| s.labels["rule"] == "antispoof")
        .map(|s| s.labels["line"].clone())
        .collect();
    assert!(antispoof.contains("source 10.0.0.0/8") && antispoof.contains("destination 255.255.255.255"));
    assert_eq!(antispoof.len(), 8 + 6, "every anti-spoof entry: {antispoof:?}");
    for chain in ["INPUT", "OUTPUT", "FORWARD"] {
        metrics.line("firewall_packets_total", chain, "policy", "builtin");
    }
    assert!(metrics.single("firewall_conntrack_entries") > 0, "the sessions' and pings' flows are tracked");
    assert_eq!(metrics.single("firewall_conntrack_capacity"), 65_536);
    assert_eq!(metrics.single("firewall_conntrack_half_open_capacity"), 16_384);
    for table in ["established", "half_open"] {
        assert_eq!(
            metrics.value("firewall_conntrack_evictions_total", &[("table", table)]),
            Some(0),
            "nothing evicted from the {table} table"
        );
    }
    assert_eq!(metrics.single("firewall_reloads_total"), 0);
    assert_eq!(metrics.single("firewall_reload_failures_total"), 0);
    assert_eq!(metrics.single("firewall_attached"), 1, "the programs are on the interface");
    assert_eq!(metrics.single("firewall_block_lists_expired"), 0);
    // Each map's memory, as `list --json` reports it.
    let memory = metrics.value("firewall_map_memory_bytes", &[("map", "ALLOW_EXACT")]);
    assert!(memory.is_some_and(|bytes| bytes > 0), "ALLOW_EXACT's memory: {memory:?}\n{}", metrics.text);
    assert_eq!(memory, listing["memory"]["ALLOW_EXACT"].as_u64(), "scrape and list");
    assert_eq!(
        metrics.samples("firewall_map_memory_bytes").len(),
        firewall_common::MAPS.len(),
        "a series a map:\n{}",
        metrics.text
    );
    let info = &metrics.samples("firewall_info");
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].labels["iface"].as_str(), info[0].value), (SERVER_IF, 1.0));
    assert_eq!(info[0].labels["policy"], policy.display().to_string());
    promtool_check(&metrics.text);

    // A feed loaded for a second, then not refreshed: told once its deadline passed.
    let feed = lab.tmp().join("feed.txt");
    fs::write(&feed, "192.0.2.99\n").unwrap();
    lab.firewall_ok(&["block", "--from", feed.to_str().unwrap(), "--for", "1s"]);
    assert_eq!(scrape(&lab).single("firewall_block_lists_expired"), 0, "not yet");
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = scrape(&lab);
    assert_eq!(metrics.single("firewall_block_lists_expired"), 1, "the feed expired");
    assert_eq!(metrics.single("firewall_block_list_entries"), 1, "its prefix stays");
    lab.firewall_ok(&["unblock", "--list", "feed"]);

    // OpenMetrics for a client that asks for it, as Prometheus does.
    let open = curl(
        &lab.server,
        &["-H", "Accept: application/openmetrics-text; version=1.0.0"],
        "http://127.0.0.1:9100/metrics",
    )
    .expect("an OpenMetrics scrape");
    let open = Exposition::parse(&open, true);
    assert_eq!(open.line("firewall_packets_total", "INPUT", "ping-in", "new"), 3);
    assert_eq!(open.families["firewall"].0, "info");
    let content_type = |accept: &str| {
        curl(
            &lab.server,
            &["-o", "/dev/null", "-w", "%{content_type}", "-H", accept],
            "http://127.0.0.1:9100/metrics",
        )
        .expect("a scrape")
    };
    assert_eq!(content_type("Accept: */*"), "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        content_type("Accept: application/openmetrics-text"),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );

    // `/` points at /metrics; anything else is 404, anything but GET 405.
    let index = curl(&lab.server, &[], "http://127.0.0.1:9100/").expect("GET /");
    assert!(index.contains("/metrics"), "{index:?}");
    let status = |args: &[&str], path: &str| http_get(&lab, args, path).0;
    assert_eq!(status(&[], "/nothing"), 404);
    assert_eq!(status(&[], "/metrics/"), 404);
    assert_eq!(status(&["-X", "POST"], "/metrics"), 405);
    assert_eq!(status(&["-I"], "/metrics"), 200);

    // From outside, port 9100 is behind the filter: no rule admits it yet.
    let from_peer = ["--interface", "203.0.113.7"];
    let outside = format!("http://{HOST}:9100/metrics");
    assert_eq!(
        curl(&lab.client, &[&from_peer[..], &["--max-time", "1"]].concat(), &outside),
        Err(28),
        "curl timed out"
    );

    // SIGHUP after adding a rule: reloaded, counted, and the rule admits its peer.
    let with_rule = format!(
        "{original}\n[[rule]]\nname = \"metrics-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 9100\npeers = [\"203.0.113.7\"]\n"
    );
    fs::write(&policy, &with_rule).unwrap();
    serve.signal(libc::SIGHUP);
    assert_eq!(
        serve.line(),
        format!("firewall serve: reloaded {}: 1 added, 0 removed, 0 flows ended", policy.display())
    );
    let remote = Exposition::parse(
        &curl(&lab.client, &from_peer, &outside).expect("a scrape through the filter"),
        false,
    );
    assert_eq!(remote.single("firewall_reloads_total"), 1);
    // Read while its own request was under way: its SYN, ACK and request in, its SYN-ACK out.
    assert!(remote.line("firewall_packets_total", "INPUT", "metrics-in", "new") >= 3, "{}", remote.text);
    assert!(remote.line("firewall_packets_total", "OUTPUT", "metrics-in", "established") >= 1);
    settle(&lab);
    let metrics = scrape(&lab);
    assert_agrees_with_the_listing(&metrics, &lab.list().0);
    assert!(metrics.line("firewall_packets_total", "INPUT", "metrics-in", "new") >= 3, "the remote scrape");
    assert!(metrics.line("firewall_packets_total", "OUTPUT", "metrics-in", "established") >= 3);
    assert_eq!(metrics.line("firewall_packets_total", "INPUT", "ssh-in", "new"), ssh_in, "counters kept");
    assert_eq!(metrics.single("firewall_reload_failures_total"), 0);

    // SIGHUP with a broken file: one line of error, counted; the filter as it was.
    fs::write(&policy, with_rule.replace("port = 9100", "port = 70000")).unwrap();
    serve.signal(libc::SIGHUP);
    let line_no = with_rule.lines().position(|l| l == "port = 9100").unwrap() + 1;
    assert_eq!(
        serve.line(),
        format!("firewall serve: {}:{line_no}:8: port 70000 out of range 1-65535", policy.display())
    );
    let metrics = scrape(&lab);
    assert_eq!(metrics.single("firewall_reload_failures_total"), 1);
    assert_eq!(metrics.single("firewall_reloads_total"), 1);
    metrics.line("firewall_packets_total", "INPUT", "metrics-in", "new");
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open, "the filter still admits");
    assert!(curl(&lab.client, &from_peer, &outside).is_ok(), "the rule of the last good reload still holds");
    promtool_check(&metrics.text);

    // SIGTERM: exit 0, the filter stays up.
    let programs = lab.program_ids();
    serve.signal(libc::SIGTERM);
    let (status, rest) = serve.exit();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM; said {rest:?}");
    assert_eq!(rest, vec![format!("firewall serve: stopped; the filter on {SERVER_IF} stays up")]);
    assert_eq!(xdp_lines(&lab.server_link()).len(), 1, "XDP still attached:\n{}", lab.server_link());
    assert_eq!(lab.program_ids(), programs);
    assert_eq!(lab.tcp_probe(SSH_PEER, SSH, OPEN_WITHIN), Outcome::Open);
    assert!(lab.list().packets("INPUT", "metrics-in") > 0, "the listing still has the reloaded rule");

    // SIGINT likewise, from a second run on the same port.
    let (serve, _) = Serve::start(&lab, "0.0.0.0:9100");
    assert_eq!(scrape(&lab).single("firewall_reloads_total"), 0, "a new process counts afresh");
    serve.signal(libc::SIGINT);
    let (status, _) = serve.exit();
    assert_eq!(status.code(), Some(0), "exit status after SIGINT");
    assert_eq!(xdp_lines(&lab.server_link()).len(), 1);
}

#[test]
fn a_slow_client_holds_up_no_other_and_is_cut_off() {
    require_root();
    let lab = Lab::new("serveslow");
    lab.up();
    let (_serve, _) = Serve::start(&lab, "127.0.0.1:9100");
    let connect =
        || lab.run_in(&lab.server, || TcpStream::connect("127.0.0.1:9100")).expect("connecting to serve");
    // One client stops half-way through its headers, another sends a request and never
    // reads the answer.
    let mut stalled = connect();
    stalled.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let mut deaf = connect();
    deaf.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    for _ in 0..3 {
        let metrics = scrape(&lab);
        assert_eq!(metrics.single("firewall_reloads_total"), 0);
    }
    // The stalled one is disconnected once the header timeout (10 s) is over.
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let ended = stalled.read_to_end(&mut rest);
    assert!(ended.is_ok(), "the server closed the stalled connection (not our read timeout): {ended:?}");
    assert!(!text(&rest).contains("firewall_packets_total"), "no metrics for an unfinished request");
    // And scrapes still work after.
    scrape(&lab);
}

/// `count` connections to serve from `from` (a loopback address), each left idle.
fn idle_connections(lab: &Lab, from: Ipv4Addr, count: usize) -> Vec<TcpStream> {
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9100);
    lab.run_in(&lab.server, || {
        (0..count)
            .map(|_| {
                tests::lab::tcp_connect(from, to, WITHIN)
                    .unwrap_or_else(|o| panic!("connecting from {from}: {o:?}"))
            })
            .collect()
    })
}

#[test]
fn idle_connections_cannot_use_up_descriptors_or_keep_a_scraper_out() {
    require_root();
    let lab = Lab::new("servecap");
    lab.up();
    let (serve, _) = Serve::start(&lab, "127.0.0.1:9100");
    let fds = || fs::read_dir(format!("/proc/{}/fd", serve.child.id())).unwrap().count();
    let idle = fds();
    // Let serve accept what is queued, then count its descriptors.
    let settled = || {
        std::thread::sleep(Duration::from_millis(500));
        fds()
    };

    // One client opens 200 connections and sends nothing: it holds 8, the rest are closed.
    let one = idle_connections(&lab, Ipv4Addr::new(127, 0, 0, 2), 200);
    let open = settled();
    assert!(open <= idle + 8 + 1, "serve holds {open} descriptors, {idle} idle, for one client's 200");
    // Another client still gets its scrape, and the refusals are counted.
    let metrics = scrape(&lab);
    let refused = metrics.single("firewall_serve_connections_refused_total");
    assert!(refused >= 192, "{refused} refusals counted of 192");
    let over = one.into_iter().last().map(|mut last| {
        last.set_read_timeout(Some(WITHIN)).unwrap();
        let mut rest = Vec::new();
        last.read_to_end(&mut rest)
    });
    assert!(matches!(over, Some(Ok(0) | Err(_))), "a connection over the cap was not closed: {over:?}");

    // Many clients, each within its own cap: no more than 128 at once in all.
    let many: Vec<Vec<TcpStream>> =
        (1..=30).map(|i| idle_connections(&lab, Ipv4Addr::new(127, 0, 1, i), 8)).collect();
    let open = settled();
    assert!(open <= idle + 128 + 1, "serve holds {open} descriptors, {idle} idle, for 240 connections");
    drop(many);
    // Once they are gone, scrapes are served again.
    let deadline = Instant::now() + WITHIN;
    while curl(&lab.server, &[], "http://127.0.0.1:9100/metrics").is_err() {
        assert!(Instant::now() < deadline, "no scrape served after the clients left");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_outlives_the_filter_going_down_and_up() {
    require_root();
    let lab = Lab::new("servedown");
    lab.up();
    let (mut serve, _) = Serve::start(&lab, "127.0.0.1:9100");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    let gone = format!("no filter is up on {SERVER_IF} (nothing pinned at {})", lab.pin_dir().display());
    // A scrape fails (Prometheus marks the target down), saying why.
    assert_eq!(http_get(&lab, &[], "/metrics"), (503, format!("firewall serve: {gone}\n")));
    serve.signal(libc::SIGHUP);
    assert_eq!(serve.line(), format!("firewall serve: {gone}"));
    // Up again: the next scrape reads the new filter's maps.
    lab.up();
    let metrics = scrape(&lab);
    assert_eq!(metrics.single("firewall_reload_failures_total"), 1);
    assert_eq!(metrics.samples("firewall_packets_total").len(), listing_keys(&lab.list().0).len());
}

/// `firewall ARGS…` (in `lab`'s server namespace when given), killed if it runs past
/// [`WITHIN`], as a command that should have refused to start would.
fn firewall_within(lab: Option<&Lab>, args: &[&str]) -> Output {
    let mut command = Command::new("timeout");
    command.args(["--signal=KILL", &WITHIN.as_secs().to_string()]);
    if let Some(lab) = lab {
        command.args(["nsenter", &format!("--net=/run/netns/{}", lab.server)]);
    }
    command.arg(firewall_bin()).args(args).output().expect("running firewall")
}

/// Exit `status`, nothing on stdout, exactly `expected` on stderr.
fn assert_refused_with(output: &Output, status: i32, expected: &str) {
    assert_eq!(output.status.code(), Some(status), "{}", text_of(output));
    assert_eq!(text(&output.stderr), expected);
    assert!(output.stdout.is_empty(), "{:?}", text(&output.stdout));
}

/// Exit 1, nothing on stdout, exactly `expected` on stderr.
fn assert_refused(output: &Output, expected: &str) {
    assert_refused_with(output, 1, expected);
}

#[test]
fn serve_refuses_bad_addresses_a_port_in_use_and_no_filter() {
    require_root();
    for bad in ["nonsense", "127.0.0.1", "127.0.0.1:99999", "localhost:9100", ":9100", "::1:9100"] {
        assert_refused(
            &firewall_within(None, &["serve", "--metrics", bad]),
            &format!(
                "firewall: bad --metrics address {bad:?}: give ADDR:PORT, such as 127.0.0.1:9100 or [::1]:9100\n"
            ),
        );
    }

    let lab = Lab::new("servebad");
    let serve = ["serve", "--metrics", "127.0.0.1:9100"];
    // Exit status 7: no filter is up.
    assert_refused_with(
        &firewall_within(Some(&lab), &serve),
        7,
        "firewall: no filter is up in this network namespace; run `firewall up --policy FILE`\n",
    );
    assert_refused_with(
        &firewall_within(Some(&lab), &[&serve[..], &["--iface", "nosuch0"]].concat()),
        7,
        &format!(
            "firewall: no filter is up on nosuch0 (nothing pinned at {})\n",
            lab.pin_root().join("nosuch0").display()
        ),
    );

    lab.up();
    let programs = lab.program_ids();
    let before = lab.list().0;
    let taken = lab.run_in(&lab.server, || TcpListener::bind("127.0.0.1:9100")).expect("binding 9100");
    assert_refused(
        &firewall_within(Some(&lab), &serve),
        "firewall: bind 127.0.0.1:9100: Address already in use (os error 98)\n",
    );
    drop(taken);
    assert_refused(
        &firewall_within(Some(&lab), &["serve", "--metrics", "192.0.2.1:9100"]),
        "firewall: bind 192.0.2.1:9100: Cannot assign requested address (os error 99)\n",
    );
    assert_eq!(lab.program_ids(), programs, "the filter is as it was");
    let after = lab.list().0;
    let rules = |v: &Value| listing_keys(v).into_iter().map(|(k, _, _)| k).collect::<Vec<_>>();
    assert_eq!(rules(&after), rules(&before));
    assert!(Path::new(&lab.pin_dir()).exists());
}

/// `GET URL` of Prometheus' HTTP API from the server namespace, as JSON.
fn prometheus_api(lab: &Lab, path: &str, query: Option<&str>) -> Value {
    let mut args = vec!["-G".to_owned()];
    if let Some(query) = query {
        args.extend(["--data-urlencode".to_owned(), format!("query={query}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let body = curl(&lab.server, &args, &format!("http://127.0.0.1:9090{path}"))
        .unwrap_or_else(|code| panic!("Prometheus' API {path}: curl exit {code}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("Prometheus' API {path}: {e}: {body}"))
}

#[test]
fn prometheus_itself_scrapes_it() {
    require_root();
    let lab = Lab::new("serveprom");
    lab.up();
    let (_serve, _) = Serve::start(&lab, "127.0.0.1:9100");
    assert_eq!(ping_received(&lab.ping(IpAddr::V4(SSH_PEER), IpAddr::V4(HOST), 3, "0.2")), 3);

    // A real Prometheus server, scraping every second; it asks for OpenMetrics.
    let config = lab.tmp().join("prometheus.yml");
    fs::write(
        &config,
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: firewall\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n",
    )
    .unwrap();
    let data = lab.tmp().join("prometheus-data");
    let mut command = lab.server_command("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.spawn(&mut command);

    let deadline = Instant::now() + Duration::from_secs(60);
    let target = loop {
        let found = curl(&lab.server, &[], "http://127.0.0.1:9090/api/v1/targets")
            .ok()
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .and_then(|v| v["data"]["activeTargets"].get(0).cloned())
            .filter(|t| t["health"] != "unknown");
        if let Some(target) = found {
            break target;
        }
        assert!(Instant::now() < deadline, "Prometheus scraped nothing within 60 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(target["health"], "up", "Prometheus' verdict on the scrape: {target:#}");
    assert_eq!(target["lastError"], "", "{target:#}");

    let query = |q: &str| -> Vec<Value> {
        let v = prometheus_api(&lab, "/api/v1/query", Some(q));
        assert_eq!(v["status"], "success", "{q}: {v:#}");
        v["data"]["result"].as_array().expect("a vector").clone()
    };
    let ping = query(r#"firewall_packets_total{chain="INPUT",rule="ping-in",line="new"}"#);
    assert_eq!(ping.len(), 1, "{ping:?}");
    assert_eq!(ping[0]["value"][1], "3", "{ping:?}");
    assert_eq!(ping[0]["metric"]["target"], "ACCEPT");
    let info = query("firewall_info");
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0]["metric"]["iface"], SERVER_IF);
    let lines = query("count(firewall_packets_total)");
    let listed = listing_keys(&lab.list().0).len();
    assert_eq!(lines[0]["value"][1], listed.to_string(), "every line a series");
    assert_eq!(query("firewall_conntrack_capacity")[0]["value"][1], "65536");
}
