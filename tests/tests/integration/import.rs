//! `firewall import`, from the seed's real `iptables-save` to a policy that filters as
//! examples/tight.toml does.
//!
//! In a lab, the seed's script (tests/seed/tight-iptables.sh) runs with the lab's
//! addresses in the server namespace, with two lines added that the import lists (a
//! `-m recent` rule it cannot translate, and a LOG rule it translates with a difference);
//! `iptables-save` is taken there, and `firewall
//! import` turns it into a policy, which `firewall check` must accept. Then the
//! differential probe matrix (tests/src/differential.rs) runs behind the firewall with
//! examples/tight.toml and behind the firewall with the imported policy: every probe must
//! get the same verdict, and so the imported policy differs from the seed's iptables
//! exactly where tests/tests/integration/differential.rs lists.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration import:: -- --nocapture`.
use std::{
    collections::BTreeSet,
    fs,
    net::Ipv4Addr,
    path::Path,
    process::{Command, Output, Stdio},
    time::Instant,
};

use tests::{
    differential::{
        Bench, Filter, Kind, Probe, Seen, iptables_down, iptables_up, matrix, table, tcp, tight, udp,
        udp_datagram,
    },
    lab::{HOST, Lab, SERVER_IF, STRANGER, STRANGER2, TempDir, firewall_bin, sh},
    require_root,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn import(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut command = Command::new(firewall_bin());
    command.arg("import").args(args);
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("running firewall import");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("writing stdin");
    drop(input);
    child.wait_with_output().expect("waiting for firewall import")
}

/// `ip netns exec SERVER iptables ARGS…`, which must succeed.
fn iptables(lab: &Lab, program: &str, args: &[&str]) -> String {
    text(&sh(Command::new("ip").args(["netns", "exec", &lab.server, program]).args(args)).stdout)
}

/// The line number (from 1) of the only line of `dump` that contains `needle`, and the line.
fn line_of<'d>(dump: &'d str, needle: &str) -> (usize, &'d str) {
    let found: Vec<(usize, &str)> =
        dump.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, l)| (i + 1, l)).collect();
    assert_eq!(found.len(), 1, "{needle:?} in the dump:\n{dump}");
    found[0]
}

#[test]
fn the_imported_seed_dump_filters_as_examples_tight_toml_does() {
    require_root();
    let started = Instant::now();
    let policy = tight();
    let lab = Lab::new("import");
    let bench = Bench::new(&lab, matrix(&policy));
    let probes = &bench.probes;

    // The seed's script with the lab's addresses, two untranslatable lines, the dump.
    iptables_up(&lab, &policy);
    // A port knock: an ACCEPT of the sources a list holds, which no rule can say.
    let recent = [
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "2222",
        "-m",
        "recent",
        "--rcheck",
        "--seconds",
        "30",
        "--name",
        "knock",
    ];
    iptables(&lab, "iptables", &[&["-I", "INPUT", "1"][..], &recent, &["-j", "ACCEPT"]].concat());
    iptables(&lab, "iptables", &["-I", "OUTPUT", "1", "-j", "LOG", "--log-prefix", "out: "]);
    let dump = iptables(&lab, "iptables-save", &[]);
    iptables_down(&lab);
    let (recent_at, recent_line) = line_of(&dump, "-m recent");
    let (log_at, log_line) = line_of(&dump, "-j LOG");

    let dump_file = lab.tmp().join("seed.iptables-save");
    fs::write(&dump_file, &dump).expect("writing the dump");
    let out = lab.tmp().join("imported.toml");
    let (dump_path, out_path) = (dump_file.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let t = Instant::now();
    let output = import(&[dump_path, "-o", out_path, "--iface", SERVER_IF], None);
    let took = t.elapsed();
    let stderr = text(&output.stderr);
    eprintln!("firewall import ({:.0} ms):\n{stderr}", took.as_secs_f64() * 1000.0);
    assert_eq!(output.status.code(), Some(0), "firewall import failed:\n{stderr}");
    assert!(output.stdout.is_empty(), "the policy went to {out_path}, not stdout");
    let recent_why = format!(
        "iptables-save line {recent_at}: {recent_line}: an ACCEPT of what -m recent --seconds 30 --hitcount 1 --name knock matches cannot be expressed: per_source drops what goes over a rate, it admits nothing"
    );
    let log_why = format!(
        "iptables-save line {log_at}: {log_line}: translated with a difference: LOG writes no packet here; the firewall samples what it drops as events (firewall drops, serve --log-drops), each naming the line that dropped it, and counts every line's packets (firewall list)"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    // The untranslated lines come first, then those translated with a difference.
    let mut expected = vec![recent_why.as_str(), log_why.as_str()];
    let summary = format!(
        "firewall: imported 12 rules from {dump_path} to {out_path}; 1 line not translated, 1 line translated with a difference (listed above and at the top of the policy)"
    );
    expected.push(&summary);
    assert_eq!(lines, expected);

    // The same lines at the top of the policy, and a comment per rule naming its lines.
    let imported = fs::read_to_string(&out).expect("reading the imported policy");
    eprintln!("{out_path}:\n{imported}");
    let header: String =
        imported.lines().take_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    // MAILIN has no return line: its rule is one-way, as the seed's SMTP sessions that
    // never complete (examples/tight.toml mends it).
    assert!(
        imported.contains("port = 25\npeers = [\"203.0.113.25\"]\nreturns = false\n"),
        "MAILIN one-way:\n{imported}"
    );
    for why in [&recent_why, &log_why] {
        assert!(header.contains(&format!("# {why}\n")), "not at the top of the policy: {why}\n{header}");
    }
    let rules = imported.matches("\n[[rule]]\n").count();
    let sourced = imported.matches("# From iptables-save line").count();
    assert_eq!((rules, sourced), (12, 12), "every rule says where it came from:\n{imported}");
    let check = Command::new(firewall_bin()).arg("check").arg(&out).output().expect("running firewall check");
    assert_eq!(
        (check.status.code(), text(&check.stdout)),
        (Some(0), format!("{out_path}: OK (12 rules)\n")),
        "firewall check: {}",
        text(&check.stderr)
    );

    // The matrix behind examples/tight.toml, then behind the import.
    let mut runs: Vec<(Filter, Vec<Seen>)> = Vec::new();
    let mut times = Vec::new();
    for (filter, file) in [(Filter::Firewall, lab.policy_file()), (Filter::Imported, out.clone())] {
        let t = Instant::now();
        lab.up_with(&file);
        runs.push((filter, bench.run(filter)));
        lab.firewall_ok(&["down", "--iface", SERVER_IF]);
        times.push((filter, t.elapsed()));
    }
    let (tight_run, imported_run) = (&runs[0].1, &runs[1].1);
    let mut failures = Vec::new();
    let judgements: Vec<String> = probes
        .iter()
        .enumerate()
        .map(|(i, probe)| {
            // MAILIN, one-way, has the seed's own verdict (see `differential.rs`' listed
            // differences), which tight.toml mends.
            let mail_in = probe.name.starts_with("mail-in tcp/25 from MAILIN");
            let (tight, imported) = (tight_run[i].verdict, imported_run[i].verdict);
            let expected =
                if mail_in { tight.through() && !imported.through() } else { tight.agrees(imported) };
            if expected {
                return if mail_in {
                    "differs: MAILIN's SYN-ACK meets OUTPUT's DROP, as in the seed"
                } else {
                    "agree"
                }
                .to_owned();
            }
            failures.push(format!(
                "{}: tight.toml {} but imported {}",
                probe.name, tight_run[i], imported_run[i]
            ));
            "FAIL: the imported policy differs".to_owned()
        })
        .collect();
    println!("\n{}", table(probes, &runs, &judgements));
    println!("{} probes: {} agree, {} differ", probes.len(), probes.len() - failures.len(), failures.len());
    for (filter, took) in &times {
        println!("{filter}: {:.1} s", took.as_secs_f64());
    }
    println!("whole test: {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {} probes differ:\n  {}",
        failures.len(),
        probes.len(),
        failures.join("\n  ")
    );
}

/// A small dump of the seed's idioms (the first rule is line 5).
const DUMP: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n\
    -A INPUT -s 203.0.113.7/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 122 -m state --state NEW,ESTABLISHED -j ACCEPT\n\
    -A OUTPUT -s 198.51.100.1/32 -d 203.0.113.7/32 -p tcp -m tcp --sport 122 -m state --state ESTABLISHED -j ACCEPT\n\
    COMMIT\n";

#[test]
#[expect(
    clippy::case_sensitive_file_extension_comparisons,
    reason = "files.rs names its temporary files so, in lower case"
)]
fn import_reads_stdin_refuses_what_is_no_dump_and_never_overwrites_unasked() {
    require_root();
    let dir = TempDir::new("import");

    // `-` is stdin; the policy goes to stdout, the summary to stderr.
    let output = import(&["-"], Some(DUMP));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stderr),
        "firewall: imported 1 rule from stdin to stdout; 0 lines not translated, 0 lines translated with a difference\n"
    );
    let policy = text(&output.stdout);
    assert!(
        policy.contains(
            "# From iptables-save line 5, and 6 for the returns.\n[[rule]]\nname = \"tcp-122-in\"\n"
        ),
        "{policy}"
    );

    // Not a dump: one line, exit 1, nothing written.
    let out = dir.path.join("out.toml");
    let out_path = out.to_str().expect("utf-8");
    let not_a_dump = dir.write("policy.toml", "[host]\naddress = \"198.51.100.1\"\n");
    let output = import(&[not_a_dump.to_str().expect("utf-8"), "-o", out_path], None);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "firewall: {}:1: not an iptables-save dump: expected a *table line first, found \"[host]\"\n",
            not_a_dump.display()
        )
    );
    assert!(!out.exists(), "nothing is written for a bad dump");

    // Nothing usable: the lines are listed, then one error line.
    let useless = dir
        .write("useless", "*filter\n:INPUT DROP [0:0]\n-A INPUT -j LOG\n-A INPUT -p gre -j ACCEPT\nCOMMIT\n");
    let output = import(&[useless.to_str().expect("utf-8"), "-o", out_path], None);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "iptables-save line 4: -A INPUT -p gre -j ACCEPT: protocol gre is not translated: the policy knows tcp, udp and icmp\n\
             iptables-save line 3: -A INPUT -j LOG: translated with a difference: LOG writes no packet here; the firewall samples what it drops as events (firewall drops, serve --log-drops), each naming the line that dropped it, and counts every line's packets (firewall list)\n\
             firewall: nothing to import from {}: no line of its filter table became a rule (1 line not translated, listed above)\n",
            useless.display()
        )
    );
    assert!(!out.exists());

    // An existing file is kept, unless --force.
    let dump = dir.write("dump", DUMP);
    let dump_path = dump.to_str().expect("utf-8");
    fs::write(&out, "mine\n").expect("writing");
    let output = import(&[dump_path, "-o", out_path], None);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!("firewall: {out_path} exists: not overwritten (give --force to replace it)\n")
    );
    assert_eq!(fs::read_to_string(&out).expect("reading"), "mine\n");
    let output = import(&[dump_path, "-o", out_path, "--force"], None);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        fs::read_to_string(&out).expect("reading"),
        policy.replace("from stdin", &format!("from {dump_path}"))
    );
    // No temporary file is left beside it.
    let names: Vec<String> = fs::read_dir(&dir.path)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert!(Path::new(out_path).is_file());
}

/// The dumps of tests/scripts/, each loaded into iptables and imported, probed alike: the
/// firewall with the import admits nothing that iptables with the dump drops, and differs
/// from it only on the probes the dump names on its `# differs:` lines.
#[test]
fn imported_scripts_admit_nothing_their_iptables_drops() {
    require_root();
    let mut dumps: Vec<_> = fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"))
        .expect("reading tests/scripts")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    dumps.sort();
    assert!(dumps.len() >= 3, "{dumps:?}");
    let mut failures = Vec::new();
    for dump in &dumps {
        failures.extend(script_differential(dump));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One dump's run: its probes behind iptables, then behind the firewall with its import.
/// Returns what went wrong.
fn script_differential(dump: &Path) -> Vec<String> {
    let name = dump.file_stem().expect("a name").to_string_lossy().into_owned();
    let script = fs::read_to_string(dump).expect("reading the dump");
    let lab = Lab::new(&format!("script-{name}"));
    let bench = Bench::new(&lab, script_probes(&script, &lab.client_addrs));
    let probes = &bench.probes;

    let restore = Command::new("ip")
        .args(["netns", "exec", &lab.server, "iptables-restore"])
        .stdin(fs::File::open(dump).expect("opening the dump"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running iptables-restore");
    assert!(restore.status.success(), "iptables-restore {name}: {}", text(&restore.stderr));
    let behind_iptables = bench.run(Filter::Iptables);
    iptables_down(&lab);

    let out = lab.tmp().join(format!("{name}.toml"));
    let dump_path = dump.to_str().expect("utf-8");
    let imported = import(&[dump_path, "-o", out.to_str().expect("utf-8"), "--iface", SERVER_IF], None);
    assert_eq!(imported.status.code(), Some(0), "import {name}: {}", text(&imported.stderr));
    lab.up_with(&out);
    let behind_firewall = bench.run(Filter::Imported);
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);

    let expected: BTreeSet<&str> = script
        .lines()
        .filter_map(|l| l.strip_prefix("# differs: "))
        .map(|l| l.split_once(": ").map_or(l, |(probe, _)| probe))
        .collect();
    let mut failures = Vec::new();
    let mut differ = BTreeSet::new();
    let judgements: Vec<String> = probes
        .iter()
        .enumerate()
        .map(|(i, probe)| {
            let (theirs, ours) = (behind_iptables[i].verdict.through(), behind_firewall[i].verdict.through());
            if ours && !theirs {
                failures.push(format!("{name}: {}: iptables drops it, the import admits it", probe.name));
                "FAIL: more open than the script".to_owned()
            } else if ours != theirs {
                differ.insert(probe.name.as_str());
                if expected.contains(probe.name.as_str()) {
                    "differs, as the dump says"
                } else {
                    "FAIL: differs"
                }
                .to_owned()
            } else {
                "agree".to_owned()
            }
        })
        .collect();
    let runs = [(Filter::Iptables, behind_iptables), (Filter::Imported, behind_firewall)];
    println!("\n{name} ({} probes):\n{}", probes.len(), table(probes, &runs, &judgements));
    if differ != expected {
        failures.push(format!(
            "{name}: the probes that differ are {differ:?}; the dump's # differs: lines name {expected:?}"
        ));
    }
    let through = runs[0].1.iter().filter(|s| s.verdict.through()).count();
    if through == 0 || through == probes.len() {
        failures.push(format!(
            "{name}: iptables admits {through} of {} probes: the probes prove nothing",
            probes.len()
        ));
    }
    failures
}

/// A dump's probes: for each TCP or UDP port its lines name (a range's ends, and one past
/// each), a connection to the host (for UDP, a lone datagram too) from each source the
/// dump names that the lab owns and from a stranger, and from the host to each destination it names and to a stranger.
fn script_probes(dump: &str, lab_owned: &[Ipv4Addr]) -> Vec<Probe> {
    let mut ports: BTreeSet<(&str, u16)> = BTreeSet::new();
    let mut sources: BTreeSet<Ipv4Addr> = BTreeSet::from([STRANGER]);
    let mut destinations: BTreeSet<Ipv4Addr> = BTreeSet::from([STRANGER2]);
    for line in dump.lines().filter(|l| l.starts_with("-A ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let value = |option: &str| words.iter().position(|w| *w == option).map(|i| words[i + 1]);
        let address = |option: &str| {
            value(option)
                .and_then(|a| a.trim_end_matches("/32").parse::<Ipv4Addr>().ok())
                .filter(|a| lab_owned.contains(a))
        };
        sources.extend(address("-s"));
        destinations.extend(address("-d"));
        let Some(protocol @ ("tcp" | "udp")) = value("-p") else {
            continue;
        };
        for list in [value("--dport"), value("--dports")].into_iter().flatten() {
            for item in list.split(',') {
                let (first, last) = item.split_once(':').unwrap_or((item, item));
                let (first, last): (u16, u16) =
                    (first.parse().unwrap_or(1), last.parse().unwrap_or(u16::MAX));
                ports.extend([first, last].map(|p| (protocol, p)));
                if first != last {
                    ports.extend(
                        [first.checked_sub(1), last.checked_add(1)]
                            .into_iter()
                            .flatten()
                            .filter(|p| *p > 0)
                            .map(|p| (protocol, p)),
                    );
                }
            }
        }
    }
    let mut probes = Vec::new();
    for &(protocol, port) in &ports {
        let probe = if protocol == "tcp" { tcp } else { udp };
        for &from in &sources {
            probes.push(probe(format!("{protocol}/{port} from {from}"), from, HOST, port));
            // A datagram arrives whether or not it is answered: a one-way rule's.
            if protocol == "udp" {
                probes.push(udp_datagram(format!("udp/{port} datagram from {from}"), from, port));
            }
        }
        for &to in &destinations {
            probes.push(probe(format!("{protocol}/{port} to {to}"), HOST, to, port));
        }
    }
    probes
        .push(Probe { name: format!("ping from {STRANGER}"), kind: Kind::Ping { from: STRANGER, to: HOST } });
    probes
}

/// A workstation's port-scan trap, as dotfiles firewalls write it: whoever touches NetBIOS
/// (139) is dropped on every port for a day; SSH and the web stay open to the rest.
const TRAP_DUMP: &str = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m recent --rcheck --seconds 86400 --name portscan --mask 255.255.255.255 --rsource -j DROP
-A INPUT -m recent --remove --name portscan --mask 255.255.255.255 --rsource
-A INPUT -p tcp -m tcp --dport 139 -m recent --set --name portscan --mask 255.255.255.255 --rsource -j LOG --log-prefix \"portscan: \"
-A INPUT -p tcp -m tcp --dport 139 -m recent --set --name portscan --mask 255.255.255.255 --rsource -j DROP
-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 22 -m state --state NEW -j ACCEPT
-A INPUT -d 198.51.100.1/32 -p tcp -m multiport --dports 80,443 -m state --state NEW -j ACCEPT
COMMIT
";

/// The port-scan trap imported, against the script in iptables, probe after probe in one
/// order (the dumps' differential runs its probes at once, where a trap's verdicts hang on
/// which comes first): the stranger reaches the web, touches the trap, and from then on
/// reaches nothing, while another source still does; alike behind both.
#[test]
fn an_imported_port_scan_trap_catches_as_the_script_does() {
    use tests::lab::{BLOCKED_AFTER, OPEN_WITHIN, Outcome};
    require_root();
    let lab = Lab::new("import-trap");
    for port in [22, 80, 139] {
        lab.tcp_echo(std::net::SocketAddrV4::new(HOST, port));
    }
    let steps: [(&str, Ipv4Addr, u16, Outcome); 5] = [
        ("the web, before", STRANGER, 80, Outcome::Open),
        ("the trap", STRANGER, 139, Outcome::Blocked),
        ("the web, caught", STRANGER, 80, Outcome::Blocked),
        ("ssh, caught", STRANGER, 22, Outcome::Blocked),
        ("the web, another source", STRANGER2, 80, Outcome::Open),
    ];
    let run = |behind: &str| {
        for (what, from, port, expected) in &steps {
            let within = if *expected == Outcome::Open { OPEN_WITHIN } else { BLOCKED_AFTER };
            let seen = lab.tcp_probe(*from, std::net::SocketAddrV4::new(HOST, *port), within);
            assert_eq!(seen, *expected, "behind {behind}: {what} (tcp/{port} from {from})");
        }
    };
    let dump = lab.tmp().join("trap.rules");
    fs::write(&dump, TRAP_DUMP).unwrap();
    let restore = Command::new("ip")
        .args(["netns", "exec", &lab.server, "iptables-restore"])
        .stdin(fs::File::open(&dump).unwrap())
        .output()
        .expect("running iptables-restore");
    assert!(restore.status.success(), "iptables-restore: {}", text(&restore.stderr));
    run("iptables");
    iptables_down(&lab);

    let out = lab.tmp().join("trap.toml");
    let imported = import(&[dump.to_str().unwrap(), "-o", out.to_str().unwrap(), "--iface", SERVER_IF], None);
    assert_eq!(imported.status.code(), Some(0), "import: {}", text(&imported.stderr));
    let policy = fs::read_to_string(&out).unwrap();
    assert!(policy.contains("port = 139\npeers = \"any\"\ntrap = \"1d\"\n"), "{policy}");
    lab.up_with(&out);
    run("the import");
    let blocked = lab.firewall_ok(&["blocklist"]);
    assert!(blocked.contains("203.0.113.99") && blocked.contains("trap"), "{blocked}");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}
