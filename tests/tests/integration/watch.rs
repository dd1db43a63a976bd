//! `firewall watch` in a real terminal: tmux runs it in the lab's server namespace while
//! the client pings the host, and `capture-pane` reads the screen as a person would.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration watch::`.
use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use tests::{
    lab::{AS_NOBODY, HOST, Lab, SERVER_IF, STRANGER, STRANGER2, TempDir, firewall_bin, world_executable},
    require_root,
};

/// Ping admitted without a limit, so that its rate is the pinger's.
const PING_POLICY: &str = r#"[host]
interface = "s0"
address = "198.51.100.1"

[[rule]]
name = "ping-in"
direction = "in"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
"#;

/// The same with a rule more, for a reload under watch.
const WEB_RULE: &str = r#"
[[rule]]
name = "web-in"
direction = "in"
protocols = ["tcp"]
port = 80
peers = "any"
"#;

/// How long the screen may take to show what a test waits for: several refreshes.
const SHOWS_WITHIN: Duration = Duration::from_secs(15);

/// A tmux server of our own (`tmux -L NAME`), a 160x40 session running a plain shell;
/// killed on drop, with whatever runs in it, and its socket removed (tmux leaves it).
struct Tmux {
    socket: String,
    socket_path: Option<PathBuf>,
}

impl Tmux {
    fn start(tag: &str) -> Tmux {
        let mut tmux = Tmux { socket: format!("fwwatch-{}-{tag}", std::process::id()), socket_path: None };
        let out = tmux
            .command()
            .args(["new-session", "-d", "-x", "160", "-y", "40", "-s", "main"])
            .args(["env", "PS1=$ ", "bash", "--norc", "--noprofile"])
            .output()
            .expect("running tmux (apt-get install tmux)");
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        tmux.socket_path = Some(tmux.pane("#{socket_path}").into());
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        // No configuration file: the defaults, whatever the machine's ~/.tmux.conf says.
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("running tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `line` and Enter.
    fn type_line(&self, line: &str) {
        self.tmux(&["send-keys", "-t", "main", "-l", line]);
        self.tmux(&["send-keys", "-t", "main", "Enter"]);
    }

    fn keys(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "main", key]);
    }

    /// The pane as it shows now.
    /// The pane as it stands between two refreshes: a capture taken while `watch` redraws
    /// shows half of each (seen: a row of the new table missing, another spliced), so
    /// the pane is read until two captures a moment apart agree.
    fn screen(&self) -> String {
        let mut screen = self.tmux(&["capture-pane", "-p", "-t", "main"]);
        for _ in 0..20 {
            sleep(Duration::from_millis(30));
            let again = self.tmux(&["capture-pane", "-p", "-t", "main"]);
            if again == screen {
                break;
            }
            screen = again;
        }
        screen
    }

    /// A tmux format of the pane: `#{alternate_on}`, `#{cursor_flag}`.
    fn pane(&self, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", "main", format]).trim().to_string()
    }

    /// Waits until the screen satisfies `ready`, and returns it; panics with the screen.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SHOWS_WITHIN;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen did not show {what} within {SHOWS_WITHIN:?}:\n{screen}");
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Types `firewall watch ARGS; echo WATCH-EXIT=$?` in the server's namespace.
    fn watch(&self, lab: &Lab, args: &str) {
        self.type_line(&format!(
            "nsenter --net=/run/netns/{} {} watch {args}; echo WATCH-EXIT=$?",
            lab.server,
            firewall_bin().display()
        ));
    }

    /// Waits for the watch to end; its exit status (the echo's line, not the typed one).
    fn watch_exit(&self) -> String {
        let exit = |screen: &str| -> Option<String> {
            screen.lines().find_map(|l| l.strip_prefix("WATCH-EXIT=")).map(|code| code.trim().to_string())
        };
        exit(&self.wait_for("WATCH-EXIT=", |s| exit(s).is_some())).unwrap()
    }

    /// The terminal is the shell's again: the alternate screen left, the cursor shown,
    /// and `stty -a` run in the pane shows canonical mode and echo on.
    fn assert_restored(&self) {
        assert_eq!(self.pane("#{alternate_on}"), "0", "still on the alternate screen:\n{}", self.screen());
        assert_eq!(self.pane("#{cursor_flag}"), "1", "the cursor is still hidden:\n{}", self.screen());
        let screen = self.screen();
        assert!(!screen.contains("pkts/s"), "the table is still on the screen:\n{screen}");
        self.tmux(&["clear-history", "-t", "main"]);
        self.type_line("clear; stty -a; echo STTY-DONE");
        let screen = self.wait_for("stty's modes", |s| s.contains("\nSTTY-DONE"));
        let modes: Vec<&str> = screen.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
            assert!(
                modes.contains(&mode),
                "stty -a does not show {mode} (the terminal is still raw):\n{screen}"
            );
        }
        // And what is typed shows.
        self.type_line("echo typed-and-seen");
        self.wait_for("the typed line and its output", |s| s.matches("typed-and-seen").count() >= 2);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").stderr(Stdio::null()).status();
        if let Some(path) = &self.socket_path {
            let _ = fs::remove_file(path);
        }
    }
}

/// A row of the table as the screen shows it.
#[derive(Debug)]
struct Row {
    packets_per_sec: f64,
    bytes_per_sec: f64,
    packets: f64,
    chain: String,
    target: String,
    rule: String,
}

/// `20.0`, `1680`, `123K`, `2M` → a number.
fn number(text: &str) -> f64 {
    let (digits, scale) = match text.chars().last() {
        Some('K') => (&text[..text.len() - 1], 1e3),
        Some('M') => (&text[..text.len() - 1], 1e6),
        Some('G') => (&text[..text.len() - 1], 1e9),
        _ => (text, 1.0),
    };
    digits.parse::<f64>().unwrap_or_else(|e| panic!("{text:?} is not a number: {e}")) * scale
}

/// The table's rows, top to bottom.
fn table(screen: &str) -> Vec<Row> {
    let lines: Vec<&str> = screen.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.split_whitespace().next() == Some("pkts/s"))
        .unwrap_or_else(|| panic!("no table header on the screen:\n{screen}"));
    let names: Vec<&str> = lines[header].split_whitespace().collect();
    assert_eq!(names[..7], ["pkts/s", "bytes/s", "pkts", "bytes", "chain", "target", "rule"], "{screen}");
    lines[header + 1..]
        .iter()
        .take_while(|l| !l.trim().is_empty() && l.trim() != "q quit")
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 7, "a short row {l:?} in:\n{screen}");
            Row {
                packets_per_sec: number(f[0]),
                bytes_per_sec: number(f[1]),
                packets: number(f[2]),
                chain: f[4].into(),
                target: f[5].into(),
                rule: f[6].into(),
            }
        })
        .collect()
}

/// The number of established flows on the conntrack line, which must say both tables'
/// sizes and evictions.
fn conntrack_flows(screen: &str) -> u64 {
    let line = screen
        .lines()
        .find(|l| l.starts_with("conntrack "))
        .unwrap_or_else(|| panic!("no conntrack line on the screen:\n{screen}"));
    assert!(line.contains(" / 65,536 (") && line.contains(" / 16,384  evicted 0, half-open 0"), "{line:?}");
    line["conntrack ".len()..].split(' ').next().unwrap().replace(',', "").parse().unwrap()
}

fn write_policy(lab: &Lab, name: &str, text: &str) -> PathBuf {
    let path = lab.tmp().join(name);
    fs::write(&path, text).unwrap();
    path
}

fn up(lab: &Lab, policy: &Path) {
    lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]);
}

/// Pings the host from `from` every 0.1 s for at most a minute, until the lab ends.
fn ping(lab: &Lab, from: Ipv4Addr) {
    lab.spawn(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.client))
            .args(["ping", "-n", "-q", "-i", "0.1", "-w", "60", "-I"])
            .arg(from.to_string())
            .arg(HOST.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_busy_rule_leads_its_rate_follows_the_traffic_and_q_quits() {
    require_root();
    let lab = Lab::new("watch");
    let policy = write_policy(&lab, "ping.toml", PING_POLICY);
    up(&lab, &policy);
    let tmux = Tmux::start("busy");
    tmux.watch(&lab, "");
    let screen = tmux.wait_for("the table", |s| s.contains("pkts/s") && s.contains("conntrack "));
    assert!(screen.lines().next().unwrap().contains(&format!("firewall watch on {SERVER_IF}")), "{screen}");
    assert!(screen.contains(policy.to_str().unwrap()), "the title names the policy file:\n{screen}");
    assert!(screen.contains("q quit"), "{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "1", "watch draws on the alternate screen");
    assert_eq!(tmux.pane("#{cursor_flag}"), "0", "and hides the cursor");

    // One pinger: ping-in's two lines (requests in, replies out) lead the table.
    ping(&lab, STRANGER);
    tmux.wait_for("ping-in busy", |s| {
        table(s).first().is_some_and(|r| r.rule == "ping-in" && r.packets_per_sec > 0.0)
    });
    // Two refreshes more, so that the rate covers a whole interval of pinging.
    sleep(Duration::from_millis(2500));
    let first = tmux.screen();
    let rows = table(&first);
    println!("one pinger:\n{first}");
    for row in &rows[..2] {
        assert_eq!((row.rule.as_str(), row.target.as_str()), ("ping-in", "ACCEPT"), "{first}");
        assert!(row.packets_per_sec > 0.0 && row.bytes_per_sec > 0.0, "{row:?}\n{first}");
    }
    let mut chains = [rows[0].chain.as_str(), rows[1].chain.as_str()];
    chains.sort_unstable();
    assert_eq!(chains, ["INPUT", "OUTPUT"], "{first}");
    assert!(
        rows[2..].iter().all(|r| r.packets_per_sec < rows[1].packets_per_sec),
        "nothing else is as busy:\n{first}"
    );
    assert!(conntrack_flows(&first) >= 1, "the ping's flow is tracked:\n{first}");
    let (rate, total) = (rows[0].packets_per_sec, rows[0].packets);

    // A second pinger: the same lines, at about twice the rate, and their totals grow.
    ping(&lab, STRANGER2);
    sleep(Duration::from_millis(3500));
    let second = tmux.screen();
    println!("two pingers:\n{second}");
    let rows = table(&second);
    assert_eq!((rows[0].rule.as_str(), rows[1].rule.as_str()), ("ping-in", "ping-in"), "{second}");
    assert!(
        rows[0].packets_per_sec > rate * 1.3,
        "the rate did not follow a second pinger: {rate} then {}\n{second}",
        rows[0].packets_per_sec
    );
    assert!(rows[0].packets > total, "the total did not grow: {total} then {}\n{second}", rows[0].packets);
    assert!(conntrack_flows(&second) >= 2, "both pings' flows are tracked:\n{second}");

    // A reload under watch: the new rule shows, at rate 0, below the busy lines.
    let reloaded = write_policy(&lab, "ping-web.toml", &format!("{PING_POLICY}{WEB_RULE}"));
    lab.firewall_ok(&["reload", "--policy", reloaded.to_str().unwrap()]);
    let third = tmux.wait_for("web-in after the reload", |s| table(s).iter().any(|r| r.rule == "web-in"));
    let rows = table(&third);
    assert_eq!(rows[0].rule, "ping-in", "{third}");
    assert!(third.contains(reloaded.to_str().unwrap()), "the title names the new policy file:\n{third}");
    let web: Vec<&Row> = rows.iter().filter(|r| r.rule == "web-in").collect();
    assert_eq!(web.len(), 2, "web-in's line in INPUT and its returns' in OUTPUT:\n{third}");
    assert!(web.iter().all(|r| r.packets_per_sec == 0.0 && r.packets == 0.0), "{third}");

    tmux.keys("q");
    assert_eq!(tmux.watch_exit(), "0", "{}", tmux.screen());
    tmux.assert_restored();
}

#[test]
fn ctrl_c_or_a_sigterm_quits_and_restores_the_terminal() {
    require_root();
    let lab = Lab::new("watch-ctrl-c");
    let policy = write_policy(&lab, "ping.toml", PING_POLICY);
    up(&lab, &policy);
    let tmux = Tmux::start("ctrl-c");
    tmux.watch(&lab, "--interval 0.5");
    let screen = tmux.wait_for("the table", |s| s.contains("pkts/s"));
    assert!(screen.contains("every 500ms"), "{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "1");
    tmux.keys("C-c");
    assert_eq!(tmux.watch_exit(), "0", "{}", tmux.screen());
    tmux.assert_restored();

    // A SIGTERM (`kill`, a shutdown) restores the terminal too.
    tmux.type_line("clear");
    tmux.watch(&lab, "");
    tmux.wait_for("the table", |s| s.contains("pkts/s"));
    // nsenter execs the firewall: the shell's child is the watch itself.
    let shell = tmux.pane("#{pane_pid}");
    let children = fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let watch: Vec<&str> = children
        .split_whitespace()
        .filter(|pid| fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "firewall"))
        .collect();
    assert_eq!(watch.len(), 1, "the shell's children: {children:?}");
    let pid = watch[0];
    assert!(Command::new("kill").args(["-TERM", pid]).status().unwrap().success());
    assert_eq!(tmux.watch_exit(), "0", "{}", tmux.screen());
    tmux.assert_restored();
}

#[test]
fn a_filter_that_goes_down_or_loses_its_interface_is_shown_and_watch_still_quits() {
    require_root();
    let lab = Lab::new("watch-down");
    let policy = write_policy(&lab, "ping.toml", PING_POLICY);
    let tmux = Tmux::start("down");

    // Nothing up: the usual one line, before the screen changes.
    tmux.watch(&lab, "");
    assert_eq!(tmux.watch_exit(), "7", "no filter is up");
    let screen = tmux.screen();
    assert!(screen.contains("firewall: no filter is up in this network namespace"), "{screen}");
    assert!(!screen.contains("pkts/s"), "{screen}");
    tmux.tmux(&["send-keys", "-t", "main", "clear", "Enter"]);
    tmux.wait_for("a clear screen", |s| !s.contains("WATCH-EXIT"));

    up(&lab, &policy);
    tmux.watch(&lab, "--iface s0");
    tmux.wait_for("the table", |s| s.contains("pkts/s"));
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    let screen = tmux.wait_for("the error", |s| s.contains("no filter is up on s0"));
    assert!(
        screen.contains("firewall: no filter is up on s0") && screen.contains("trying again"),
        "{screen}"
    );
    assert!(!screen.contains("pkts/s"), "a stale table stays up:\n{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "1", "watch is still running:\n{screen}");

    // Up again: the view comes back by itself.
    up(&lab, &policy);
    tmux.wait_for("the table again", |s| s.contains("pkts/s") && s.contains("conntrack "));

    // The interface vanishes under the filter: said so too.
    let deleted = Command::new("ip").args(["-n", &lab.server, "link", "del", SERVER_IF]).status().unwrap();
    assert!(deleted.success(), "ip link del {SERVER_IF}");
    let screen = tmux.wait_for("the interface gone", |s| s.contains("interface \"s0\" is gone"));
    assert!(!screen.contains("pkts/s"), "{screen}");
    tmux.keys("Escape");
    assert_eq!(tmux.watch_exit(), "0", "{}", tmux.screen());
    tmux.assert_restored();
}

#[test]
fn watch_without_a_terminal_or_with_a_bad_interval_says_so() {
    require_root();
    let lab = Lab::new("watch-bad");
    let policy = write_policy(&lab, "ping.toml", PING_POLICY);
    up(&lab, &policy);
    let rules = |listing: tests::lab::Listing| -> Vec<String> {
        listing.0["chains"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["rules"].as_array().unwrap().iter().map(|r| r["name"].to_string()))
            .collect()
    };
    let before = rules(lab.list());
    for (args, message) in [
        (
            &["watch"][..],
            "firewall: watch needs a terminal; use `firewall list -v` or `serve --metrics` for scripts\n",
        ),
        (
            &["watch", "--interval", "0"][..],
            "firewall: --interval \"0\": give a number of seconds from 0.1 to 3600\n",
        ),
        (
            &["watch", "--interval", "fast"][..],
            "firewall: --interval \"fast\": give a number of seconds from 0.1 to 3600\n",
        ),
    ] {
        let output = lab.firewall(args);
        assert_eq!(output.status.code(), Some(1), "firewall {args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output), message, "firewall {args:?}");
        assert!(output.stdout.is_empty(), "firewall {args:?} printed {:?}", output.stdout);
    }
    // Without root: the usual refusal, whatever else is wrong.
    let dir = TempDir::new("watch-nobody");
    let mut command = lab.server_command(AS_NOBODY[0]);
    command.args(&AS_NOBODY[1..]).arg(world_executable(&firewall_bin(), &dir)).arg("watch");
    let output = command.output().expect("running setpriv");
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("firewall: needs root"), "{:?}", stderr(&output));
    assert_eq!(stderr(&output).lines().count(), 1, "{:?}", stderr(&output));
    assert_eq!(rules(lab.list()), before, "the filter is as it was");
}
