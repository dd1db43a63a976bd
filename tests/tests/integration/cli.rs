//! The command line with bad inputs and without privileges, through the real binary.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration cli::`.
use std::{
    fs,
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, Output, Stdio},
};

use tests::{
    lab::{AS_NOBODY, Lab, SERVER_IF, TempDir, firewall_bin, world_executable, xdp_lines},
    require_root,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(path: &Path) -> Output {
    Command::new(firewall_bin()).arg("check").arg(path).output().expect("running firewall check")
}

const HOST: &str = "[host]\ninterface = \"s0\"\naddress = \"198.51.100.1\"\n\n";

/// A rule of five lines after `[[rule]]`, with one line replaced when `replace` says so.
fn ssh_rule(replace: Option<(&str, &str)>) -> String {
    let mut rule = "[[rule]]\nname = \"ssh-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 122\npeers = [\"203.0.113.7\"]\n"
        .to_string();
    if let Some((from, to)) = replace {
        assert!(rule.contains(from));
        rule = rule.replacen(from, to, 1);
    }
    rule
}

/// `firewall check` of `policy` fails with exit 1 and exactly the one line
/// `firewall: FILE:LINE:COL: message…` (the message starting with `message`).
fn assert_rejected(name: &str, policy: &str, line: usize, column: usize, message: &str) {
    let dir = TempDir::new("check");
    let path = dir.write(name, policy);
    let output = check(&path);
    let err = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{name}: exit status; stderr: {err}");
    assert!(output.stdout.is_empty(), "{name}: nothing on stdout, got {:?}", text(&output.stdout));
    assert!(err.ends_with('\n') && err.lines().count() == 1, "{name}: one line on stderr, got {err:?}");
    let prefix = format!("firewall: {}:{line}:{column}: {message}", path.display());
    assert!(err.starts_with(&prefix), "{name}:\n expected {prefix:?}…\n      got {:?}", err.trim_end());
}

#[test]
fn check_rejects_an_unknown_key_with_its_place() {
    require_root();
    // Line 11, column 1: the key itself.
    let policy = format!("{HOST}{}colour = \"red\"\n", ssh_rule(None));
    assert_rejected("unknown-key.toml", &policy, 11, 1, "unknown field `colour`");
    // In [host] too: line 2.
    let policy = "[host]\nadress = \"198.51.100.1\"\n";
    assert_rejected("unknown-host-key.toml", policy, 2, 1, "unknown field `adress`");
}

#[test]
fn check_rejects_an_empty_or_repeated_list_of_host_addresses_with_its_place() {
    require_root();
    // `address = []` on line 3: column 11 is the bracket.
    let policy = HOST.replace("\"198.51.100.1\"", "[]");
    let empty = "address is an empty list: name at least one IPv4 address (OURIP)\n";
    assert_rejected("empty-address.toml", &policy, 3, 11, empty);
    // The second entry, at column 28.
    let policy = HOST.replace("\"198.51.100.1\"", "[\"198.51.100.1\", \"198.51.100.1\"]");
    assert_rejected("twice.toml", &policy, 3, 28, "198.51.100.1 is twice in address\n");
    let policy = format!("{}\naddress6 = []\n", HOST.trim_end());
    let empty6 = "address6 is an empty list: leave it out, or name an IPv6 address\n";
    assert_rejected("empty-address6.toml", &policy, 4, 12, empty6);
}

#[test]
fn check_rejects_a_bad_address_with_its_place() {
    require_root();
    // peers = ["203.0.113.300"] on line 10: column 10 is the opening quote.
    let policy = format!("{HOST}{}", ssh_rule(Some(("\"203.0.113.7\"", "\"203.0.113.300\""))));
    assert_rejected("bad-peer.toml", &policy, 10, 10, "bad address \"203.0.113.300\"\n");
    // The host's own address: line 3, column 11.
    let policy = HOST.replace("198.51.100.1", "198.51.100.256");
    assert_rejected("bad-host.toml", &policy, 3, 11, "bad address \"198.51.100.256\"\n");
    // A CIDR with host bits set is refused, not masked.
    let policy = format!("{HOST}{}", ssh_rule(Some(("\"203.0.113.7\"", "\"203.0.113.7/24\""))));
    assert_rejected(
        "host-bits.toml",
        &policy,
        10,
        10,
        "203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24?\n",
    );
}

#[test]
fn check_rejects_a_port_out_of_range_with_its_place() {
    require_root();
    // port = 70000 on line 9: column 8 is the number.
    let policy = format!("{HOST}{}", ssh_rule(Some(("port = 122", "port = 70000"))));
    assert_rejected("port-high.toml", &policy, 9, 8, "port 70000 out of range 1-65535\n");
    let policy = format!("{HOST}{}", ssh_rule(Some(("port = 122", "ports = [80, 0]"))));
    assert_rejected("port-zero.toml", &policy, 9, 14, "port 0 out of range 1-65535\n");
}

#[test]
fn check_rejects_a_duplicate_rule_name_with_its_place() {
    require_root();
    // The second rule's name is on line 12, its value at column 8.
    let second = ssh_rule(Some(("port = 122", "port = 2222")));
    let policy = format!("{HOST}{}{second}", ssh_rule(None));
    assert_rejected("duplicate.toml", &policy, 12, 8, "duplicate rule name \"ssh-in\"\n");

    // The same mistake in the shipped policy: `ntp` renamed `dns`.
    let tight = tests::lab::tight_text();
    let line = tight.lines().position(|l| l == "name = \"ntp\"").expect("tight.toml has the ntp rule") + 1;
    let policy = tight.replacen("name = \"ntp\"", "name = \"dns\"", 1);
    assert_rejected("tight-duplicate.toml", &policy, line, 8, "duplicate rule name \"dns\"\n");
}

#[test]
fn check_accepts_the_shipped_policy() {
    require_root();
    // In a network namespace of its own, where no eth0 is: this machine's own eth0, if it
    // has one, would be warned about, not having 198.51.100.1 (see the lab's test of that).
    let output = Command::new("unshare")
        .args(["--net", "--"])
        .arg(firewall_bin())
        .args(["check", "examples/tight.toml"])
        .current_dir(tests::workspace())
        .output()
        .expect("running firewall check");
    assert_eq!(output.status.code(), Some(0), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "examples/tight.toml: OK (13 rules)\n");
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn up_on_a_missing_interface_says_so_and_pins_nothing() {
    require_root();
    let lab = Lab::new("nosuchif");
    let policy = lab.policy_file();
    let output = lab.firewall(&["up", "--policy", policy.to_str().unwrap(), "--iface", "nosuchif0"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "firewall: interface \"nosuchif0\" does not exist\n");
    assert!(output.stdout.is_empty());
    assert!(!lab.pin_root().exists(), "{} was created", lab.pin_root().display());
    assert!(!lab.state_root().exists(), "{} was created", lab.state_root().display());
    assert!(xdp_lines(&lab.server_link()).is_empty(), "s0 got a program:\n{}", lab.server_link());
}

#[test]
fn up_under_ip_netns_exec_refuses_rather_than_vanish() {
    // `ip netns exec` gives its command a private /sys: pins made there die with it.
    require_root();
    let lab = Lab::new("netnsexec");
    let policy = lab.policy_file();
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.server])
        .arg(firewall_bin())
        .args(["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    let err = text(&output.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nsenter --net=/run/netns/NAME"), "{err}");
    assert!(xdp_lines(&lab.server_link()).is_empty(), "s0 got a program:\n{}", lab.server_link());
    assert!(!lab.pin_root().exists());
}

/// `firewall ARGS…` as uid/gid 65534 in the lab's server namespace.
fn firewall_as_nobody(lab: &Lab, dir: &TempDir, args: &[&str]) -> Output {
    let bin = world_executable(&firewall_bin(), dir);
    let mut command = lab.server_command(AS_NOBODY[0]);
    command.args(&AS_NOBODY[1..]).arg(bin).args(args);
    command.output().expect("running setpriv")
}

#[test]
fn unprivileged_commands_say_they_need_root() {
    require_root();
    let lab = Lab::new("nobody");
    let dir = TempDir::new("nobody-bin");
    let policy = lab.policy_file();
    let policy = policy.to_str().unwrap();
    // A policy only root may read, as /etc/firewall's are: the answer is still "needs
    // root", not that the file cannot be read.
    let private = lab.policy_file().with_file_name("private.toml");
    std::fs::copy(policy, &private).expect("copying the policy");
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let private = private.to_str().unwrap();
    for args in [
        &["up", "--policy", policy, "--iface", SERVER_IF][..],
        &["up", "--policy", private][..],
        &["list"][..],
        &["list", "--json", "--iface", SERVER_IF][..],
        &["down", "--iface", SERVER_IF][..],
        &["serve", "--metrics", "127.0.0.1:9100"][..],
        &["reload", "--confirm", "30"][..],
        &["confirm"][..],
        &["block", "192.0.2.1", "--for", "10m"][..],
        &["unblock", "192.0.2.1"][..],
        &["blocklist"][..],
        &["drops"][..],
    ] {
        let output = firewall_as_nobody(&lab, &dir, args);
        let err = text(&output.stderr);
        // Exit status 4: needs root.
        assert_eq!(output.status.code(), Some(4), "firewall {args:?} as nobody: {err}");
        assert_eq!(err.lines().count(), 1, "firewall {args:?}: one line, got {err:?}");
        assert!(err.starts_with("firewall: needs root"), "firewall {args:?} as nobody: {err:?}");
    }
    assert!(!lab.pin_root().exists(), "an unprivileged up pinned {}", lab.pin_root().display());
    assert!(xdp_lines(&lab.server_link()).is_empty(), "s0 got a program:\n{}", lab.server_link());

    // And with root, in the same lab, `up` works: the refusals above were about privilege.
    lab.up();
    assert_eq!(xdp_lines(&lab.server_link()).len(), 1);
    let output = firewall_as_nobody(&lab, &dir, &["list", "--iface", SERVER_IF]);
    assert_eq!(output.status.code(), Some(4));
    assert!(text(&output.stderr).starts_with("firewall: needs root"), "{}", text(&output.stderr));
}

/// A test that needs root, run for real by the test below without it.
#[test]
fn privileged_probe() {
    require_root();
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0);
}

#[test]
fn privileged_tests_fail_loudly_without_root() {
    require_root();
    let dir = TempDir::new("nobody-test");
    let exe = world_executable(&std::env::current_exe().expect("the test binary"), &dir);
    let output = Command::new(AS_NOBODY[0])
        .args(&AS_NOBODY[1..])
        .arg(&exe)
        .args(["--exact", "cli::privileged_probe", "--nocapture", "--test-threads=1"])
        .env("RUST_BACKTRACE", "0")
        .current_dir(&dir.path)
        .output()
        .expect("running the test binary as nobody");
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "privileged_probe passed without root:\n{all}");
    assert!(all.contains("running 1 test"), "exactly the probe ran:\n{all}");
    assert!(all.contains("needs root"), "the failure says why:\n{all}");
    assert!(all.contains("test cli::privileged_probe ... FAILED"), "the probe failed, not skipped:\n{all}");
}

#[test]
fn a_bad_command_line_is_one_line_and_exit_2() {
    // Before a lab, root or a filter matter: clap's own errors, cut to their first line
    // and the indented lines under it (what is missing, what is possible).
    for (args, expected) in [
        (
            &["up"][..],
            "firewall: the following required arguments were not provided: --policy <FILE> (see firewall --help)",
        ),
        (
            &["up", "--in-force"][..],
            "firewall: the following required arguments were not provided: --iface <IFACE> (see firewall --help)",
        ),
        (
            &["up", "--in-force", "--iface", "eth0", "--policy", "p.toml"][..],
            "firewall: the argument '--in-force' cannot be used with '--policy <FILE>' (see firewall --help)",
        ),
        (
            &["up", "--policy", "p.toml", "--mode", "x"][..],
            "firewall: invalid value 'x' for '--mode <MODE>' [possible values: auto, native, skb] (see firewall --help)",
        ),
        (
            &["block", "192.0.2.1", "--for", "5x"][..],
            "firewall: invalid value '5x' for '--for <DURATION>': \"5x\" is not a duration: a number and s, m, h or d (10m, 12h) (see firewall --help)",
        ),
        (
            &["drops", "--rate", "0"][..],
            "firewall: invalid value '0' for '--rate <RATE>': the rate of drop events is 1 to 10000 a second, not \"0\" (see firewall --help)",
        ),
        (&["blok"][..], "firewall: unrecognized subcommand 'blok' (see firewall --help)"),
        (
            &["up", "--policy", "p.toml", "--audit", "--enforce"][..],
            "firewall: the argument '--audit' cannot be used with '--enforce' (see firewall --help)",
        ),
    ] {
        let output = Command::new(firewall_bin()).args(args).output().expect("running firewall");
        assert_eq!(output.status.code(), Some(2), "firewall {args:?}");
        assert_eq!(text(&output.stderr), format!("{expected}\n"), "firewall {args:?}");
        assert!(output.stdout.is_empty());
    }
    let help = Command::new(firewall_bin()).arg("--help").output().expect("running firewall --help");
    assert!(help.status.success() && text(&help.stdout).contains("block"), "--help still prints the usage");
}

#[test]
fn generate_writes_a_man_page_per_command_and_completions_from_the_command_line() {
    // No root: a packager's build runs it.
    let dir = TempDir::new("man");
    let out =
        Command::new(firewall_bin()).args(["generate", "man", "--out"]).arg(&dir.path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let up = std::fs::read_to_string(dir.path.join("firewall-up.8")).expect("firewall-up.8");
    assert!(up.contains(".TH firewall-up 8") && up.contains("\\-\\-policy"), "{up}");
    let main = std::fs::read_to_string(dir.path.join("firewall.8")).expect("firewall.8");
    assert!(main.contains("firewall\\-reload(8)"), "firewall(8) names each command's page: {main}");
    // The hidden timer and clap's `help` have none.
    assert!(
        !dir.path.join("firewall-rollback-timer.8").exists() && !dir.path.join("firewall-help.8").exists()
    );
    for (shell, says) in
        [("bash", "complete -F _firewall"), ("zsh", "#compdef firewall"), ("fish", "complete -c firewall")]
    {
        let out = Command::new(firewall_bin()).args(["generate", "completions", shell]).output().unwrap();
        assert!(out.status.success() && text(&out.stdout).contains(says), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("reload"), "{shell} completes the commands");
    }
    let out = Command::new(firewall_bin()).args(["generate", "completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("firewall: invalid value 'tcsh'"), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn the_schema_admits_the_examples_and_the_import_and_flags_what_check_refuses() {
    // No root: an editor's schema.
    let out = Command::new(firewall_bin()).arg("schema").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let as_json = |toml_text: &str| -> serde_json::Value { toml::from_str(toml_text).expect("TOML") };
    let errors = |toml_text: &str| -> Vec<String> {
        validator.iter_errors(&as_json(toml_text)).map(|e| format!("{} at {}", e, e.instance_path)).collect()
    };
    // Every example, and every script of tests/scripts as `import` writes it.
    let dir = TempDir::new("schema");
    let mut policies = Vec::new();
    for entry in std::fs::read_dir(tests::workspace().join("examples")).unwrap().flatten() {
        policies.push(entry.path());
    }
    for entry in std::fs::read_dir(tests::workspace().join("tests/scripts")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "rules") {
            let imported = dir.path.join(entry.file_name()).with_extension("toml");
            let out = Command::new(firewall_bin())
                .arg("import")
                .arg(entry.path())
                .arg("-o")
                .arg(&imported)
                .output();
            assert!(out.unwrap().status.success(), "import {}", entry.path().display());
            policies.push(imported);
        }
    }
    assert!(policies.len() >= 10, "{policies:?}");
    for policy in policies {
        let text = std::fs::read_to_string(&policy).unwrap();
        assert_eq!(errors(&text), Vec::<String>::new(), "{}:\n{text}", policy.display());
    }
    // What `check` refuses for its shape, the schema flags too.
    let host = "[host]\naddress = \"198.51.100.1\"\n";
    for (bad, why) in [
        ("[host]\ninterface = \"eth0\"\n", "address is required"),
        (&format!("{host}colour = 1\n")[..], "an unknown key"),
        (
            &format!("{host}[[rule]]\nname = \"SSH\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\n"),
            "a bad name",
        ),
        (
            &format!("{host}[[rule]]\nname = \"s\"\ndirection = \"up\"\nprotocols = [\"tcp\"]\n"),
            "a bad direction",
        ),
        (
            &format!("{host}[[rule]]\nname = \"s\"\ndirection = \"in\"\nprotocols = [\"sctp\"]\n"),
            "a bad protocol",
        ),
        (
            &format!(
                "{host}[[rule]]\nname = \"s\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = true\n"
            ),
            "a bad port",
        ),
        (
            &format!(
                "{host}[[rule]]\nname = \"s\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nper_source = {{ connections = 17 }}\n"
            ),
            "connections over 16",
        ),
        (&format!("{host}[conntrack]\nmax_entries = 10\n"), "a table too small"),
    ] {
        assert!(!errors(bad).is_empty(), "the schema admits {why}:\n{bad}");
        let path = dir.write("bad.toml", bad);
        assert!(!check(&path).status.success(), "check admits {why}");
    }
}

/// `firewall ARGS…` in the lab's server namespace, its stdout `stdout`, its stderr read.
fn firewall_writing_to(lab: &Lab, args: &[&str], stdout: Stdio) -> Output {
    let mut command = lab.server_command(firewall_bin());
    command.args(args).stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
    command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

/// `firewall list | head`: a report whose reader has gone ends by SIGPIPE, quietly, as any
/// Unix filter does, where `println!` panicked at its next line; `reload --dry-run` stops
/// printing and still tells by its exit code; a change is made whole and ends as it went,
/// where it panicked (exit 101) at its line after the change.
#[test]
fn a_report_whose_reader_has_gone_ends_quietly_and_a_change_as_it_went() {
    require_root();
    let lab = Lab::new("gone");
    lab.up();
    let policy = lab.policy_file();
    let policy = policy.to_str().expect("utf-8");
    let to_nobody = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        firewall_writing_to(&lab, args, writer.into())
    };
    for args in [
        &["list", "--iface", SERVER_IF][..],
        &["conntrack", "--iface", SERVER_IF],
        &["blocklist", "--iface", SERVER_IF],
        &["check", "--diff", policy],
    ] {
        let output = to_nobody(args);
        assert_eq!(
            output.status.signal(),
            Some(libc::SIGPIPE),
            "firewall {args:?}: {}",
            text(&output.stderr)
        );
        assert!(!text(&output.stderr).contains("panicked"), "firewall {args:?}: {}", text(&output.stderr));
    }
    for args in [
        &["reload", "--dry-run", "--iface", SERVER_IF][..],
        &["reload", "--iface", SERVER_IF],
        &["block", "192.0.2.9", "--for", "1h", "--iface", SERVER_IF],
        &["up", "--policy", policy, "--iface", SERVER_IF, "--json"],
    ] {
        let output = to_nobody(args);
        assert_eq!(output.status.code(), Some(0), "firewall {args:?}: {}", text(&output.stderr));
        assert_eq!(text(&output.stderr), "", "firewall {args:?}");
    }
    let blocked = lab.firewall_ok(&["blocklist", "--json=1", "--iface", SERVER_IF]);
    assert!(blocked.contains(r#""prefix":"192.0.2.9""#), "the block is in place: {blocked}");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}

/// `firewall list > /dev/full`: a report that cannot be written fails, one line naming the
/// cause, where `println!` panicked with a backtrace (exit 101); a change is made whole and
/// loses its line only.
#[test]
fn a_report_that_cannot_be_written_fails_in_one_line_and_a_change_loses_its_line_only() {
    require_root();
    let lab = Lab::new("full");
    lab.up();
    let policy = lab.policy_file();
    let policy = policy.to_str().expect("utf-8");
    let to_full = |args: &[&str]| {
        let full = fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        firewall_writing_to(&lab, args, full.into())
    };
    for args in [
        &["list", "--iface", SERVER_IF][..],
        &["list", "--json", "--iface", SERVER_IF],
        &["conntrack", "--iface", SERVER_IF],
        &["conntrack", "--json", "--iface", SERVER_IF],
        &["blocklist", "--iface", SERVER_IF],
        &["check", policy],
        &["check", "--diff", policy],
        &["reload", "--dry-run", "--iface", SERVER_IF],
        &["schema"],
        // clap_complete writes straight to its writer, and panicked when a write failed.
        &["generate", "completions", "bash"],
    ] {
        let output = to_full(args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "firewall {args:?}: {stderr}");
        assert!(
            stderr.ends_with("firewall: writing to stdout: No space left on device (os error 28)\n"),
            "firewall {args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "firewall {args:?}: {stderr}");
    }
    for args in
        [&["reload", "--iface", SERVER_IF][..], &["block", "192.0.2.9", "--for", "1h", "--iface", SERVER_IF]]
    {
        let output = to_full(args);
        assert_eq!(output.status.code(), Some(0), "firewall {args:?}: {}", text(&output.stderr));
        assert_eq!(text(&output.stderr), "", "firewall {args:?}");
    }
    let blocked = lab.firewall_ok(&["blocklist", "--json=1", "--iface", SERVER_IF]);
    assert!(blocked.contains(r#""prefix":"192.0.2.9""#), "the block is in place: {blocked}");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
}
