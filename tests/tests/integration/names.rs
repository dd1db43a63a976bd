//! Peers written as DNS names (src/names): a real dnsmasq whose records change, the
//! firewall asking it through /etc/resolv.conf as the host's programs do, and real
//! connections to the addresses the name gives, and to those it no longer gives.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use tests::{
    daemons::{self, Daemon},
    lab::{HOST, HOST6, Lab, Outcome, STRANGER, STRANGER2, STRANGER6, firewall_bin, stderr, stdout},
    require_root,
};

/// The name, and the port its rule opens outbound.
const NAME: &str = "svc.example.lab";
const PORT: u16 = 8443;
/// A DNS server the tight policy's `dns` rule admits.
const DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);

/// The lab's tight policy with an outbound rule to `NAME`, and `dns` as its `[dns]`.
fn policy(lab: &Lab, dns: &str) -> PathBuf {
    policy_with_peers(lab, dns, &format!("\"{NAME}\", \"192.0.2.44\""))
}

/// The lab's tight policy with an outbound rule `api` to `peers`, and `dns` as its `[dns]`.
fn policy_with_peers(lab: &Lab, dns: &str, peers: &str) -> PathBuf {
    let extra = format!(
        "\n[dns]\n{dns}\n\n[[rule]]\nname = \"api\"\ndirection = \"out\"\nprotocols = [\"tcp\"]\nport = {PORT}\npeers = [{peers}]\n"
    );
    lab.tight_with("names.toml", &extra)
}

/// dnsmasq on [`DNS`], answering [`NAME`] from the hosts file `hosts` with a TTL of 1 s;
/// `set_hosts` changes its records.
fn dns_server(lab: &Lab, hosts: &Path) -> Daemon {
    let addn = format!("--addn-hosts={}", hosts.display());
    let dnsmasq = daemons::dnsmasq_with(lab, DNS, &[&addn, "--local-ttl=1"]);
    dnsmasq.wait_ready("answering over UDP", || daemons::answered(&daemons::dig(lab, HOST, DNS, false, 1)));
    dnsmasq
}

/// Writes `hosts` with `NAME` at `addrs`, and has dnsmasq read it again: returns once
/// it answers so.
fn set_hosts(lab: &Lab, hosts: &Path, addrs: &[Ipv4Addr], dnsmasq: Option<&Daemon>) {
    let text: String = addrs.iter().map(|a| format!("{a} {NAME}\n")).collect();
    std::fs::write(hosts, text).expect("writing the hosts file");
    let Some(dnsmasq) = dnsmasq else {
        return;
    };
    let hup = Command::new("kill").args(["-HUP", &dnsmasq.pid.to_string()]).status().expect("kill");
    assert!(hup.success(), "kill -HUP dnsmasq");
    let mut wanted: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    wanted.sort();
    dnsmasq.wait_ready("answering with the new records", || {
        let dig = daemons::dig_name(lab, HOST, DNS, NAME, 1);
        let mut answer: Vec<String> = dig.stdout.lines().map(|l| l.trim().to_owned()).collect();
        answer.sort();
        answer == wanted
    });
}

/// `firewall ARGS…` in the server namespace, with /etc/resolv.conf naming [`DNS`] (in a
/// mount namespace of its own: the host's file is left alone).
fn firewall(lab: &Lab, args: &[&str]) -> Output {
    firewall_command(lab, args).output().expect("running the firewall")
}

/// The command [`firewall`] runs: the firewall itself, in the end (`exec` all the way).
fn firewall_command(lab: &Lab, args: &[&str]) -> Command {
    firewall_resolving_by(lab, DNS, args)
}

/// `firewall ARGS…` as [`firewall`] runs it, with `resolver` the one of /etc/resolv.conf.
fn firewall_resolving_by(lab: &Lab, resolver: Ipv4Addr, args: &[&str]) -> Command {
    let resolv = lab.tmp().join(format!("resolv-{resolver}.conf"));
    std::fs::write(&resolv, format!("nameserver {resolver}\n")).expect("writing resolv.conf");
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec nsenter --net=/run/netns/{} \"$@\"",
        resolv.display(),
        lab.server
    );
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(firewall_bin())
        .args(args);
    command
}

fn firewall_ok(lab: &Lab, args: &[&str]) -> (String, String) {
    let output = firewall(lab, args);
    assert!(output.status.success(), "firewall {args:?}: {}{}", stdout(&output), stderr(&output));
    (stdout(&output), stderr(&output))
}

/// Whether a connection from the host to `addr`:[`PORT`] is echoed.
fn open(lab: &Lab, addr: Ipv4Addr) -> bool {
    lab.tcp_probe(HOST, SocketAddrV4::new(addr, PORT), Duration::from_secs(2)) == Outcome::Open
}

/// A lab whose client serves echo on [`PORT`] at each of `echo_on`, with dnsmasq
/// answering [`NAME`] with `answer`, and the tight policy with the rule `api` to
/// [`NAME`] and `dns` as its `[dns]`: the lab, the hosts file, dnsmasq, the policy file.
fn named_lab(
    tag: &str,
    echo_on: &[Ipv4Addr],
    answer: &[Ipv4Addr],
    dns: &str,
) -> (Lab, PathBuf, Daemon, String) {
    let lab = Lab::new(tag);
    for addr in echo_on {
        lab.tcp_echo(SocketAddrV4::new(*addr, PORT));
    }
    let hosts = lab.tmp().join("hosts");
    set_hosts(&lab, &hosts, answer, None);
    let dnsmasq = dns_server(&lab, &hosts);
    let file = policy(&lab, dns).to_str().expect("utf-8").to_owned();
    (lab, hosts, dnsmasq, file)
}

/// `firewall serve` in the background, metrics on 127.0.0.1:`port`: its log's path.
fn start_serve(lab: &Lab, port: u16) -> PathBuf {
    let log = lab.tmp().join(format!("serve-{port}.log"));
    let log_file = std::fs::File::create(&log).expect("serve's log");
    let metrics = format!("127.0.0.1:{port}");
    let mut serve = firewall_command(lab, &["serve", "--metrics", &metrics, "--iface", "s0"]);
    serve.stdout(log_file.try_clone().expect("dup")).stderr(log_file);
    lab.spawn(&mut serve);
    log
}

/// `list`'s line for [`NAME`].
fn name_line(lab: &Lab) -> String {
    let (out, _) = firewall_ok(lab, &["list", "-n"]);
    out.lines()
        .find(|l| l.starts_with(&format!("name {NAME}")))
        .unwrap_or_else(|| panic!("no line for {NAME}:\n{out}"))
        .to_owned()
}

/// A name's address is admitted, and no other; renumbered, the new address is admitted
/// and the old one kept for the grace period; with its DNS server gone, what it held is
/// kept, and `reload` says so.
#[test]
fn a_name_s_addresses_are_admitted_followed_kept_for_grace_and_kept_when_dns_is_down() {
    require_root();
    let (lab, hosts, dnsmasq, file) =
        named_lab("names", &[STRANGER, STRANGER2], &[STRANGER], "grace = \"1h\"");
    let (out, err) = firewall_ok(&lab, &["up", "--policy", &file, "--iface", "s0", "--json"]);
    assert!(!err.contains("warning"), "up warned: {err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("up --json");
    assert_eq!(json["names"][0]["name"], NAME, "{json}");
    assert_eq!(json["names"][0]["added"], serde_json::json!([STRANGER.to_string()]), "{json}");
    assert!(open(&lab, STRANGER), "{STRANGER}, {NAME}'s address, must be admitted");
    assert!(!open(&lab, STRANGER2), "{STRANGER2} is no address of {NAME}'s yet");
    let line = name_line(&lab);
    assert!(line.contains(&format!("(rule api): {STRANGER} for ")), "{line}");

    // Renumbered: the new address in, the old one kept for the grace period.
    set_hosts(&lab, &hosts, &[STRANGER2], Some(&dnsmasq));
    // A dry run asks the name too, says what it would hold, and records nothing; the
    // policy is as it was, so nothing would change (exit 0).
    let dry = firewall(&lab, &["reload", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "no change of the policy's: {}{}", stdout(&dry), stderr(&dry));
    assert!(stdout(&dry).contains(&format!("name {NAME}: admit {STRANGER2}")), "{}", stdout(&dry));
    assert!(!open(&lab, STRANGER2), "a dry run admits nothing");
    assert!(!name_line(&lab).contains(&STRANGER2.to_string()), "nor records: {}", name_line(&lab));
    let (out, _) = firewall_ok(&lab, &["reload", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("reload --json");
    let asked = &json["names"][0];
    assert_eq!(asked["added"], serde_json::json!([STRANGER2.to_string()]), "{json}");
    assert_eq!((asked["held"].as_u64(), asked["answered"].as_bool()), (Some(2), Some(true)), "{json}");
    assert!(open(&lab, STRANGER2), "{STRANGER2}, {NAME}'s new address, must be admitted");
    assert!(open(&lab, STRANGER), "{STRANGER} left {NAME}'s answer, and stays for the grace period");
    // The grace period counts down in whole seconds from the reload: the probes above
    // may take a second or more, so "59m5Xs" is as right as "1h".
    let line = name_line(&lab);
    let leaving = ["leaving in 1h", "leaving in 59m"].iter().any(|l| line.contains(l));
    assert!(line.contains(&format!("{STRANGER} for ")) && leaving, "{line}");

    // The DNS server gone: what the name held is kept, and said.
    let kill = Command::new("kill").arg(dnsmasq.pid.to_string()).status().expect("kill");
    assert!(kill.success());
    let (out, err) = firewall_ok(&lab, &["reload", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("reload --json");
    assert!(json["names"][0]["failure"].is_string(), "{json}");
    assert!(
        err.contains(&format!("warning: {NAME}: no answer from the resolvers"))
            && err.contains("it keeps the 2 addresses it held"),
        "{err}"
    );
    assert!(open(&lab, STRANGER2) && open(&lab, STRANGER), "DNS down: both addresses kept");
    assert!(name_line(&lab).contains("no answer for"), "{}", name_line(&lab));
    let (json, _) = firewall_ok(&lab, &["list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("list --json");
    let names = &json["names"][0];
    assert_eq!(names["name"], NAME, "{json}");
    assert_eq!(names["addresses"].as_array().map(Vec::len), Some(2), "{json}");
    assert!(names["failure"].is_string(), "{json}");
    firewall_ok(&lab, &["down"]);
}

/// `serve` follows a renumbered service: a client on the host that resolves the name
/// and connects, again and again, meets no failed connection while the name moves to a
/// new address and `serve` alone (no reload) admits it; the metrics say what the name
/// holds.
#[test]
fn serve_follows_a_renumbered_service_with_no_failed_connection() {
    require_root();
    let (lab, hosts, dnsmasq, file) =
        named_lab("names-serve", &[STRANGER, STRANGER2], &[STRANGER], "grace = \"1h\"");
    firewall_ok(&lab, &["up", "--policy", &file, "--iface", "s0"]);
    let log = start_serve(&lab, 9181);

    // The client: resolve, connect, echo; 40 times, 150 ms apart, the name moved to
    // the new address a third of the way in.
    let mut connected = std::collections::BTreeMap::<Ipv4Addr, u32>::new();
    let mut slow = 0;
    for round in 0..40 {
        if round == 12 {
            set_hosts(&lab, &hosts, &[STRANGER2], Some(&dnsmasq));
        }
        let dig = daemons::dig_name(&lab, HOST, DNS, NAME, 2);
        let addr: Ipv4Addr =
            dig.stdout.trim().parse().unwrap_or_else(|_| panic!("dig {NAME}: {}", dig.describe()));
        let started = std::time::Instant::now();
        let outcome = lab.tcp_probe(HOST, SocketAddrV4::new(addr, PORT), Duration::from_secs(5));
        assert_eq!(
            outcome,
            Outcome::Open,
            "round {round}: {addr} refused; serve's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if started.elapsed() > Duration::from_millis(500) {
            slow += 1;
        }
        *connected.entry(addr).or_default() += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        connected.get(&STRANGER2).is_some_and(|n| *n >= 10),
        "the client met the new address: {connected:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains(&format!("{NAME} on s0: added {STRANGER2}; removed none")), "serve's log:\n{text}");
    // The metrics: the name holds both (the old one for its grace), and its resolvers answer.
    let metrics = lab.run_in(&lab.server, || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect("127.0.0.1:9181").expect("serve's port");
        stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("GET");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("the metrics");
        text
    });
    assert!(metrics.contains(&format!("firewall_name_addresses{{name=\"{NAME}\"}} 2")), "{metrics}");
    assert!(metrics.contains(&format!("firewall_name_failing{{name=\"{NAME}\"}} 0")), "{metrics}");
    eprintln!(
        "names: connections by address {connected:?}; {slow} of 40 took over 500 ms (their first SYN raced the map update)"
    );
    firewall_ok(&lab, &["down"]);
}

/// How often a program's first connection races `serve`'s map update: the name moves
/// to a new address, and a client on the host resolves it and connects at once, up to 15
/// times; `up` with `up_args`, `[dns]` as `dns`. A first SYN that goes out before the maps
/// admit the new address is dropped, and TCP sends it again a second later: the
/// connection is late (over 900 ms), never failed, which is asserted. How many were late,
/// of how many, and serve's log.
fn renumbered_rounds(tag: &str, dns: &str, up_args: &[&str]) -> (usize, usize, Lab) {
    let pool: Vec<Ipv4Addr> = tests::lab::tight_peers().into_iter().filter(|a| *a != DNS).take(16).collect();
    let (lab, hosts, dnsmasq, file) = named_lab(tag, &pool, &pool[..1], dns);
    let up = [&["up", "--policy", &file, "--iface", "s0"], up_args].concat();
    firewall_ok(&lab, &up);
    let log = start_serve(&lab, 9182);
    std::thread::sleep(Duration::from_secs(1));

    let mut late = Vec::new();
    for (round, addr) in pool.iter().enumerate().skip(1) {
        // The client resolves (set_hosts returns once the server answers the new address).
        set_hosts(&lab, &hosts, &[*addr], Some(&dnsmasq));
        let started = std::time::Instant::now();
        let outcome = lab.tcp_probe(HOST, SocketAddrV4::new(*addr, PORT), Duration::from_secs(5));
        let took = started.elapsed();
        assert_eq!(
            outcome,
            Outcome::Open,
            "round {round}: {addr} not reached in 5 s; serve's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if took > Duration::from_millis(900) {
            late.push(took);
        }
        // Past the old address's grace, so that each round starts alike.
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "names race ({tag}): {} of {} first connections after a renumbering lost their first SYN and connected late ({late:.1?})",
        late.len(),
        pool.len() - 1
    );
    (late.len(), pool.len() - 1, lab)
}

/// The packets and bytes of the `dns` rule's line in `chain` (`list -nvx`).
fn dns_line(lab: &Lab, chain: &str) -> u64 {
    let (out, _) = firewall_ok(lab, &["list", "-nvx"]);
    let mut in_chain = false;
    for line in out.lines() {
        if line.starts_with("Chain ") {
            in_chain = line.starts_with(&format!("Chain {chain} "));
        } else if in_chain && line.split_whitespace().any(|t| t == "dns") {
            return line.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a count");
        }
    }
    panic!("no dns line in {chain}:\n{out}")
}

/// Whether this kernel will not let `serve` hand answers back (it refuses live-frames runs
/// of XDP programs, as some do where they allow other test runs): `[dns] learn` then holds
/// no answer, and the tests of learning check that instead, and say so.
fn hand_back_refused(test: &str) -> bool {
    match firewall_user::kernel::held::load_hand_back("lo", 1) {
        Ok(_) => false,
        Err(err) => {
            eprintln!(
                "{test}: this kernel will not let serve hand answers back ({}): learning holds no answer here, which is checked instead",
                firewall_user::one_line(&err)
            );
            true
        }
    }
}

/// On a kernel that will not let `serve` hand answers back, `[dns] learn` holds none:
/// `serve` says why, once, and every answer passes at once. (Before `serve` tried the
/// hand-back's own kind of run first, it held answers there and lost them.)
fn serve_holds_no_answer(tag: &str) {
    let (lab, _hosts, _dnsmasq, file) = named_lab(tag, &[STRANGER], &[STRANGER], "grace = \"1h\"");
    firewall_ok(&lab, &["up", "--policy", &file, "--iface", "s0"]);
    let log = start_serve(&lab, 9186);
    std::thread::sleep(Duration::from_secs(1));
    for round in 0..5 {
        let dig = daemons::dig_name(&lab, HOST, DNS, NAME, 1);
        assert!(
            dig.ok() && dig.stdout.trim() == STRANGER.to_string(),
            "round {round}: the answer passes unheld: {}",
            dig.describe()
        );
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(text.matches("the kernel refuses to hand frames back to s0").count(), 1, "said once: {text}");
    firewall_ok(&lab, &["down"]);
}

/// Without `[dns] learn`, the race as it is: the first SYN of most first connections
/// after a renumbering is lost, and the connection made a second later (the figure is
/// printed, `--nocapture`); none fails.
#[test]
fn without_learning_the_first_connection_after_a_renumbering_is_late_at_worst_never_failed() {
    require_root();
    let (_, _, lab) = renumbered_rounds("names-race", "grace = \"2s\"\nlearn = false", &[]);
    firewall_ok(&lab, &["down"]);
}

/// `[dns] learn` (the default) closes the race: the filter holds the answer the client's
/// own resolver sends until `serve` has learned the new address from it and the maps admit
/// it, so no first SYN is lost, in native XDP and in generic mode (where the answer handed
/// back meets the program again, and passes, counted once: as many answers counted in as
/// queries out).
#[test]
fn with_learning_no_first_connection_after_a_renumbering_loses_its_syn() {
    require_root();
    if hand_back_refused("with_learning_no_first_connection_after_a_renumbering_loses_its_syn") {
        return serve_holds_no_answer("names-nolive-race");
    }
    for mode in ["native", "skb"] {
        let (late, rounds, lab) =
            renumbered_rounds(&format!("names-learn-{mode}"), "grace = \"2s\"", &["--mode", mode]);
        assert_eq!(late, 0, "{mode}: {late} of {rounds} first connections lost their first SYN");
        let (queries, answers) = (dns_line(&lab, "OUTPUT"), dns_line(&lab, "INPUT"));
        assert_eq!(answers, queries, "{mode}: each answer counted once");
        firewall_ok(&lab, &["down"]);
    }
}

/// A second DNS server the tight policy's `dns` rule admits, not in /etc/resolv.conf.
const DNS2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 54);

/// dnsmasq on [`DNS2`], answering [`NAME`] with `addr` (TTL 1 s): a CDN's other face.
fn other_dns_server(lab: &Lab, addr: Ipv4Addr) -> Daemon {
    let hosts = lab.tmp().join("hosts2");
    std::fs::write(&hosts, format!("{addr} {NAME}\n")).expect("writing the hosts file");
    let addn = format!("--addn-hosts={}", hosts.display());
    let dnsmasq = daemons::dnsmasq_with(lab, DNS2, &[&addn, "--local-ttl=1"]);
    dnsmasq.wait_ready("answering over UDP", || daemons::answered(&daemons::dig(lab, HOST, DNS2, false, 1)));
    dnsmasq
}

/// A CDN answers each client its own: a program on the host asks another resolver the
/// policy allows ([`DNS2`]), which gives it an address `serve`'s own asking (of [`DNS`],
/// /etc/resolv.conf's) never does. With `[dns] learn` the address is admitted before the
/// program connects, and `list` says it was learned; with `learn = false` it never is.
#[test]
fn an_address_a_cdn_gave_a_program_on_the_host_is_learned_and_admitted_before_it_connects() {
    require_root();
    if hand_back_refused(
        "an_address_a_cdn_gave_a_program_on_the_host_is_learned_and_admitted_before_it_connects",
    ) {
        return serve_holds_no_answer("names-nolive-cdn");
    }
    for learn in [true, false] {
        let dns = if learn { "grace = \"1h\"" } else { "grace = \"1h\"\nlearn = false" };
        let (lab, _hosts, _dnsmasq, file) =
            named_lab(&format!("names-cdn-{learn}"), &[STRANGER, STRANGER2], &[STRANGER], dns);
        let _other = other_dns_server(&lab, STRANGER2);
        firewall_ok(&lab, &["up", "--policy", &file, "--iface", "s0"]);
        let log = start_serve(&lab, 9183);
        std::thread::sleep(Duration::from_secs(1));

        let dig = daemons::dig_name(&lab, HOST, DNS2, NAME, 2);
        assert_eq!(dig.stdout.trim(), STRANGER2.to_string(), "{}", dig.describe());
        let started = std::time::Instant::now();
        let outcome = lab.tcp_probe(HOST, SocketAddrV4::new(STRANGER2, PORT), Duration::from_secs(3));
        let serve_log = std::fs::read_to_string(&log).unwrap_or_default();
        if learn {
            assert_eq!(outcome, Outcome::Open, "learned: {STRANGER2} admitted; serve's log:\n{serve_log}");
            assert!(
                started.elapsed() < Duration::from_millis(900),
                "on its first SYN: {:?}",
                started.elapsed()
            );
            let line = name_line(&lab);
            assert!(line.contains(&format!("{STRANGER2} for ")) && line.contains("learned"), "{line}");
            assert!(
                serve_log.contains(&format!("{NAME} on s0: added {STRANGER2}; removed none")),
                "{serve_log}"
            );
        } else {
            assert_ne!(outcome, Outcome::Open, "learn = false: {STRANGER2} is not the name's own answer");
        }
        assert!(open(&lab, STRANGER), "{STRANGER}, the name's own answer, either way");
        firewall_ok(&lab, &["down"]);
    }
}

/// The answers are held only while `serve` listens: killed (no chance to say so), it
/// stops moving the filter's deadline on, and within 3 s answers pass as before; stopped
/// with SIGTERM, at once. A second `serve` meanwhile leaves the answers to the first, and
/// says so.
#[test]
fn with_serve_killed_answers_pass_again_within_seconds() {
    require_root();
    if hand_back_refused("with_serve_killed_answers_pass_again_within_seconds") {
        return serve_holds_no_answer("names-nolive-kill");
    }
    let (lab, _hosts, _dnsmasq, file) = named_lab("names-killed", &[STRANGER], &[STRANGER], "grace = \"1h\"");
    firewall_ok(&lab, &["up", "--policy", &file, "--iface", "s0"]);
    let dig = || daemons::dig_name(&lab, HOST, DNS, NAME, 1);
    let answered = |run: &daemons::Run| run.ok() && run.stdout.trim() == STRANGER.to_string();
    for signal in ["-KILL", "-TERM"] {
        let log = start_serve(&lab, 9184);
        std::thread::sleep(Duration::from_secs(1));
        let served = dig();
        assert!(answered(&served), "served: held, learned from, handed back: {}", served.describe());
        let serve = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(serve.contains("metrics at"), "{serve}");
        if signal == "-KILL" {
            let second = start_serve(&lab, 9185);
            std::thread::sleep(Duration::from_secs(1));
            let text = std::fs::read_to_string(&second).unwrap_or_default();
            assert!(text.contains("another process reads the DNS answers of the filter on s0"), "{text}");
            let kill =
                Command::new("pkill").args(["-f", "serve --metrics 127.0.0.1:9185"]).status().expect("pkill");
            assert!(kill.success(), "pkill the second serve");
        }
        let kill = Command::new("pkill")
            .args([signal, "-f", "serve --metrics 127.0.0.1:9184"])
            .status()
            .expect("pkill");
        assert!(kill.success(), "pkill {signal}");
        if signal == "-KILL" {
            std::thread::sleep(Duration::from_millis(3500));
        } else {
            std::thread::sleep(Duration::from_millis(300));
        }
        let after = dig();
        assert!(answered(&after), "{signal}: answers pass unheld: {}", after.describe());
    }
    firewall_ok(&lab, &["down"]);
}

/// A name's A and AAAA records both: with `address6`, its IPv6 address is admitted
/// beside its IPv4 one; without (the tight policy), the AAAA record is left out.
#[test]
fn a_name_s_addresses_of_both_families_are_admitted_with_address6_and_ipv4_alone_without() {
    require_root();
    let lab = Lab::dual_stack("names-v6");
    lab.tcp_echo(SocketAddrV4::new(STRANGER, PORT));
    lab.tcp_echo(std::net::SocketAddrV6::new(STRANGER6, PORT, 0, 0));
    let hosts = lab.tmp().join("hosts");
    std::fs::write(&hosts, format!("{STRANGER} {NAME}\n{STRANGER6} {NAME}\n")).expect("hosts");
    let _dnsmasq = dns_server(&lab, &hosts);
    let rule = format!(
        "\n[dns]\ngrace = \"1h\"\n\n[[rule]]\nname = \"api\"\ndirection = \"out\"\nprotocols = [\"tcp\"]\nport = {PORT}\npeers = [\"{NAME}\"]\n"
    );
    let text = std::fs::read_to_string(lab.dual_stack_policy_file()).expect("the dual-stack policy") + &rule;
    let dual = lab.tmp().join("names-dual.toml");
    std::fs::write(&dual, text).expect("writing the policy");
    firewall_ok(&lab, &["up", "--policy", dual.to_str().expect("utf-8"), "--iface", "s0"]);
    let six = |lab: &Lab| {
        lab.tcp_probe(HOST6, std::net::SocketAddrV6::new(STRANGER6, PORT, 0, 0), Duration::from_secs(2))
            == Outcome::Open
    };
    assert!(open(&lab, STRANGER) && six(&lab), "both of {NAME}'s addresses: {}", name_line(&lab));

    // The tight policy has no address6: IPv6 is dropped whole, and the AAAA record left out.
    let v4 = policy_with_peers(&lab, "grace = \"1h\"", &format!("\"{NAME}\""));
    firewall_ok(&lab, &["up", "--policy", v4.to_str().expect("utf-8"), "--iface", "s0"]);
    assert!(open(&lab, STRANGER), "{STRANGER}");
    let line = name_line(&lab);
    assert!(line.contains(&STRANGER.to_string()), "{line}");
    let (json, _) = firewall_ok(&lab, &["list", "--json"]);
    assert!(json.contains(&format!("\"{STRANGER6}\"")), "the name holds it, its rules cannot use it: {json}");
    firewall_ok(&lab, &["down"]);
}

/// `allow` takes a DNS name as it takes an address: asked at once, admitted, written to
/// the policy file; `revoke` takes it away.
#[test]
fn allow_and_revoke_take_a_name() {
    require_root();
    let lab = Lab::new("names-allow");
    lab.tcp_echo(SocketAddrV4::new(STRANGER, PORT));
    let hosts = lab.tmp().join("hosts");
    set_hosts(&lab, &hosts, &[STRANGER], None);
    let _dnsmasq = dns_server(&lab, &hosts);
    let file = policy_with_peers(&lab, "grace = \"1h\"", "\"192.0.2.44\"");
    firewall_ok(&lab, &["up", "--policy", file.to_str().expect("utf-8"), "--iface", "s0"]);
    assert!(!open(&lab, STRANGER), "no rule admits {STRANGER} yet");

    let (out, _) = firewall_ok(&lab, &["allow", "api", "SVC.example.lab."]);
    assert!(out.contains(&format!("allowed {NAME} in rule api, live and in")), "{out}");
    assert!(open(&lab, STRANGER), "{NAME}'s address, allowed by name");
    let text = std::fs::read_to_string(&file).expect("the policy file");
    assert!(text.contains(&format!("peers = [\"192.0.2.44\", \"{NAME}\"]")), "{text}");
    let (out, _) = firewall_ok(&lab, &["allow", "api", NAME]);
    assert!(out.contains("already allowed"), "{out}");

    let (out, _) = firewall_ok(&lab, &["revoke", "api", NAME]);
    assert!(out.contains(&format!("revoked {NAME} in rule api")), "{out}");
    assert!(!open(&lab, STRANGER), "{NAME} revoked");
    firewall_ok(&lab, &["down"]);
}

/// `check` warns when no rule lets the names' queries out to the host's resolver, and
/// not when one does.
#[test]
fn check_warns_when_no_rule_lets_a_query_out_to_the_resolver() {
    require_root();
    let lab = Lab::new("names-check");
    let file = policy(&lab, "grace = \"1h\"");
    let file = file.to_str().expect("utf-8");
    let allowed = firewall_command(&lab, &["check", file]).output().expect("check");
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(!stderr(&allowed).contains("resolver"), "{DNS} is the policy's DNS server: {}", stderr(&allowed));
    let stray = Ipv4Addr::new(192, 0, 2, 53);
    let refused = firewall_resolving_by(&lab, stray, &["check", file]).output().expect("check");
    assert!(refused.status.success(), "a warning, not an error: {}", stderr(&refused));
    assert!(
        stderr(&refused)
            .contains(&format!("no rule lets a query out to the resolver {stray} (/etc/resolv.conf)")),
        "{}",
        stderr(&refused)
    );
}

/// Past `[dns] grace`, an address that left the answer is dropped; an answer longer than
/// `max_addresses` is cut to it, with a warning.
#[test]
fn past_the_grace_an_old_address_drops_and_an_answer_past_the_cap_is_cut() {
    require_root();
    let third = Ipv4Addr::new(192, 0, 2, 45);
    let answer = [STRANGER, STRANGER2, third];
    let (lab, hosts, dnsmasq, file) =
        named_lab("names-cap", &[STRANGER, STRANGER2], &answer, "grace = \"2s\"\nmax_addresses = 2");
    let (_, err) = firewall_ok(&lab, &["up", "--policy", &file, "--iface", "s0"]);
    assert!(
        err.contains(&format!("warning: {NAME} answered 1 addresses more than [dns] max_addresses")),
        "{err}"
    );
    let line = name_line(&lab);
    let held = [STRANGER, STRANGER2, third].iter().filter(|a| line.contains(&format!("{a} for "))).count();
    assert_eq!(held, 2, "max_addresses = 2: {line}");

    set_hosts(&lab, &hosts, &[STRANGER2], Some(&dnsmasq));
    firewall_ok(&lab, &["reload"]);
    assert!(open(&lab, STRANGER2), "{STRANGER2} is in the answer");
    std::thread::sleep(Duration::from_secs(3));
    firewall_ok(&lab, &["reload"]);
    assert!(
        !open(&lab, STRANGER),
        "{STRANGER} left the answer more than the grace of 2 s ago: {}",
        name_line(&lab)
    );
    assert!(open(&lab, STRANGER2), "{STRANGER2} is still in the answer");
    let line = name_line(&lab);
    assert!(!line.contains(&STRANGER.to_string()), "{line}");
    firewall_ok(&lab, &["down"]);
}
