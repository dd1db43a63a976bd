//! The safety nets no iptables script has: `block`/`unblock` (a live blocklist whose
//! expiry the kernel enforces), `--audit` (count what would drop, drop nothing), the
//! lock-out guard (refuse a policy that would cut off the SSH session it is applied
//! from), and `--confirm` (roll back unless confirmed, even with the session cut off).
//!
//! Also what keeps them safe from others on the machine: the state is root's alone, and
//! no stranger can hold up a rollback; `confirm` signals only the timer and the rollback
//! writes only to its own terminal; and the guard finds the session under `sudo` and `su`.
//! And the last good policy, kept for a boot whose policy file is broken.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration safety:: -- --nocapture`.
use std::{
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    os::{fd::FromRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use firewall_user::kernel::pins::{LOCK, PIN_ROOT, STATE_ROOT};
use serde_json::Value;
use tests::{
    daemons::{self, TestUser, said_ok},
    lab::{
        AS_NOBODY, BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, assert_fails,
        assert_fails_with, echo, firewall_bin, stderr, stdout,
    },
    require_root,
};

/// examples/tight.toml's ssh-in rule: port 122, peers 203.0.113.7 and .8.
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);
const ADMIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const OTHER_ADMIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 8);
/// examples/tight.toml's repo rule: out to port 80 of these.
const REPO: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 80), 80);

fn blocklist(lab: &Lab) -> Vec<Value> {
    let out = lab.firewall_ok(&["blocklist", "--json=1"]);
    let report = serde_json::from_str::<Value>(&out).expect("blocklist --json=1 is JSON");
    report["blocks"].as_array().expect("a list").clone()
}

/// Waits up to `limit` for `probe` to say Open; when it did.
fn open_within(limit: Duration, mut probe: impl FnMut() -> Outcome) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if probe() == Outcome::Open {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn a_block_cuts_a_peer_off_both_ways_and_expires_on_its_own() {
    require_root();
    let lab = Lab::new("block");
    lab.tcp_echo(SSH);
    lab.tcp_echo(REPO);
    lab.up();
    let mut session =
        lab.tcp_connect(ADMIN, SSH, OPEN_WITHIN).unwrap_or_else(|o| panic!("the admin's session: {o:?}"));
    echo(&mut session, b"hello\n", OPEN_WITHIN).expect("the session echoes");
    assert_eq!(lab.tcp_probe(HOST, REPO, OPEN_WITHIN), Outcome::Open, "the repository, before");

    // Blocked for 8 s: the open session ends at once, no new one opens, from either end.
    let blocks = |lab: &Lab| lab.config_flags() & firewall_common::CONFIG_HAS_BLOCKS != 0;
    assert!(!blocks(&lab), "the programs skip the empty blocklist");
    let out = lab.firewall_ok(&["block", &ADMIN.to_string(), "203.0.113.80", "--for", "8s"]);
    let blocked_at = Instant::now();
    assert!(out.contains("blocked 203.0.113.7 on s0 for 8s; 1 flows ended"), "{out}");
    assert!(out.contains("blocked 203.0.113.80 on s0 for 8s"), "{out}");
    assert!(
        echo(&mut session, b"still there?\n", BLOCKED_AFTER).is_err(),
        "the blocked peer's session goes on"
    );
    assert_eq!(
        lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER),
        Outcome::Blocked,
        "a new session from the blocked peer"
    );
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked, "a connection to a blocked peer");
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "another peer of the rule");

    // Its own counters, in `blocklist` and in `list`, where the programs check it.
    let entries = blocklist(&lab);
    assert_eq!(entries.len(), 2, "{entries:?}");
    let admin = entries.iter().find(|e| e["prefix"] == "203.0.113.7").expect("the admin's entry");
    assert!(admin["packets_in"].as_u64().unwrap() > 0, "{admin}");
    assert!((1..=8).contains(&admin["expires_secs"].as_u64().unwrap()), "{admin}");
    let repo = entries.iter().find(|e| e["prefix"] == "203.0.113.80").expect("the repository's entry");
    assert!(repo["packets_out"].as_u64().unwrap() > 0, "{repo}");
    let listing = lab.list();
    assert!(listing.packets("INPUT", "blocklist") > 0);
    assert!(listing.packets("OUTPUT", "blocklist") > 0);
    let text = lab.firewall_ok(&["list", "-nv"]);
    let line = text.lines().find(|l| l.contains("blocklist") && l.contains("203.0.113.7")).expect("a line");
    assert!(line.contains("DROP") && line.contains("blocked, expires in"), "{line}\n{text}");
    let input = &text[..text.find("Chain OUTPUT").unwrap()];
    let at = |needle: &str| input.find(needle).unwrap_or_else(|| panic!("no {needle} in\n{input}"));
    assert!(at("blocklist") < at("antispoof"), "the blocklist comes before the anti-spoof lines:\n{input}");

    // A reload leaves the blocklist alone: it is not the policy's.
    lab.firewall_ok(&["reload"]);
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "after a reload");

    // The kernel lifts it at its deadline: no command runs from here on.
    let opened = open_within(Duration::from_secs(30), || lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER))
        .expect("the block never expired");
    assert!(opened >= blocked_at + Duration::from_secs(8), "the block ended before its deadline");
    assert_eq!(lab.tcp_probe(HOST, REPO, OPEN_WITHIN), Outcome::Open, "the repository, after");
    assert_eq!(blocklist(&lab), Vec::<Value>::new(), "an expired block is not listed");
    assert!(blocks(&lab), "expired entries stay in the trie until a command sweeps them");
    lab.firewall_ok(&["block", "192.0.2.1", "--for", "1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_fails(&lab.firewall(&["unblock", "192.0.2.1"]), "192.0.2.1 is not blocked");
    assert_eq!(lab.firewall_ok(&["blocklist"]), "no address is blocked\n");
}

#[test]
fn blocks_of_prefixes_nest_and_unblock_says_what_is_wrong() {
    require_root();
    let lab = Lab::new("unblock");
    lab.tcp_echo(SSH);
    lab.up();
    let out = lab.firewall_ok(&["block", "203.0.113.0/24"]);
    assert!(out.contains("blocked 203.0.113.0/24 on s0 until unblocked"), "{out}");
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked);
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked);
    // A narrower block lasting less is redundant.
    let out = lab.firewall_ok(&["block", "203.0.113.7", "--for", "10m"]);
    assert!(
        out.contains(
            "203.0.113.7 is blocked already by 203.0.113.0/24, for at least as long; nothing changed"
        ),
        "{out}"
    );
    assert_fails(
        &lab.firewall(&["unblock", "203.0.113.7"]),
        "203.0.113.7 is not an entry of the blocklist; it is blocked by 203.0.113.0/24",
    );
    assert_fails(&lab.firewall(&["unblock", "192.0.2.1"]), "192.0.2.1 is not blocked");
    assert_fails(&lab.firewall(&["block", "203.0.113.300"]), "bad address \"203.0.113.300\"");
    assert_fails(&lab.firewall(&["block", "203.0.113.7/24"]), "203.0.113.7/24");
    assert_eq!(blocklist(&lab).len(), 1, "the failures changed nothing");

    let out = lab.firewall_ok(&["unblock", "203.0.113.0/24"]);
    assert!(out.contains("unblocked 203.0.113.0/24 on s0"), "{out}");
    assert_eq!(
        lab.config_flags() & firewall_common::CONFIG_HAS_BLOCKS,
        0,
        "with the last entry gone the programs skip the trie again"
    );
    assert_eq!(lab.tcp_probe(ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "unblocked");
    assert_eq!(lab.firewall_ok(&["blocklist"]), "no address is blocked\n");
}

#[test]
fn audit_mode_counts_what_would_drop_and_drops_nothing() {
    require_root();
    let lab = Lab::new("audit");
    lab.tcp_echo(SSH);
    let policy = lab.policy_file();
    let out = lab.firewall_ok(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF, "--audit"]);
    assert!(out.contains("audit mode (nothing is dropped)"), "{out}");
    // A stranger is no peer of ssh-in: counted on INPUT's policy, and through.
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "audit mode dropped it");
    let listing = lab.list();
    assert_eq!(listing.0["audit"], true);
    assert!(listing.policy("INPUT") > 0, "the would-be drops are counted");
    let text = lab.firewall_ok(&["list", "-nv"]);
    assert!(text.starts_with("Audit mode: nothing is dropped"), "{text}");
    assert!(text.contains("Chain INPUT (policy would drop "), "{text}");
    assert!(!text.contains(" DROP "), "{text}");
    // A reload keeps the mode; --enforce ends it.
    let out = lab.firewall_ok(&["reload"]);
    assert!(out.contains("audit mode"), "{out}");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "still audit mode after a reload");
    let out = lab.firewall_ok(&["reload", "--enforce"]);
    assert!(!out.contains("audit mode"), "{out}");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "enforced");
    assert_eq!(lab.list().0["audit"], false);
    assert_eq!(lab.tcp_probe(ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "a peer, enforced");
}

/// examples/tight.toml on s0 with ssh-in's peers replaced.
fn with_ssh_peers(lab: &Lab, name: &str, peers: &str) -> PathBuf {
    let text = fs::read_to_string(lab.policy_file()).unwrap();
    let old = "peers = [\"203.0.113.7\", \"203.0.113.8\"]";
    assert!(text.contains(old), "examples/tight.toml's ssh-in peers changed");
    let path = lab.tmp().join(name);
    fs::write(&path, text.replacen(old, &format!("peers = [{peers}]"), 1)).unwrap();
    path
}

#[test]
fn the_guard_refuses_a_policy_that_cuts_off_the_ssh_session_it_runs_from() {
    require_root();
    let lab = Lab::new("guard");
    let sshd = daemons::sshd(&lab, SSH);
    let cut = with_ssh_peers(&lab, "cut.toml", "\"203.0.113.8\"");
    let fw = firewall_bin();
    let fw = fw.to_str().unwrap();
    let cut = cut.to_str().unwrap();
    let expected = "this SSH session (203.0.113.7 port";
    let reason = "to 198.51.100.1 port 122) would be cut off: rule ssh-in serves tcp port 122 but not its client 203.0.113.7; add 203.0.113.7 to rule ssh-in's peers, or pass --force";

    // Over real SSH: sshd says who the session is in SSH_CONNECTION.
    let run = |remote: String| {
        let mut command = sshd.command(&lab, ADMIN, 10, &[], &remote);
        daemons::run(&lab, &mut command, Duration::from_secs(30))
    };
    // Exit status 5: the change would cut off this SSH session.
    let checked = run(format!("{fw} check {cut}"));
    assert_eq!(checked.code(), Some(5), "{}", checked.describe());
    assert!(checked.stderr.starts_with(&format!("firewall: {expected}")), "{}", checked.describe());
    assert!(checked.stderr.contains(reason), "{}", checked.describe());
    let up = run(format!("{fw} up --policy {cut} --iface {SERVER_IF}"));
    assert_eq!(up.code(), Some(5), "{}", up.describe());
    assert!(up.stderr.contains(reason), "{}", up.describe());
    assert!(!lab.pin_dir().exists(), "a refused up pinned something");
    // The policy that admits it goes up; one that cuts it off is refused as a reload,
    // and the filter stays as it was.
    let policy = lab.policy_file();
    let up = run(format!("{fw} up --policy {} --iface {SERVER_IF}", policy.display()));
    assert!(up.ok(), "{}", up.describe());
    let reload = run(format!("{fw} reload --policy {cut}"));
    assert_eq!(reload.code(), Some(5), "{}", reload.describe());
    let dry = run(format!("{fw} reload --dry-run --policy {cut}"));
    assert_eq!(dry.code(), Some(5), "a dry run refuses as the reload does: {}", dry.describe());
    assert!(reload.stderr.contains(reason), "{}", reload.describe());
    let revoke = run(format!("{fw} revoke ssh-in 203.0.113.7"));
    assert!(revoke.stderr.contains(reason), "{}", revoke.describe());
    let block = run(format!("{fw} block 203.0.113.0/24"));
    assert!(
        block.stderr.contains("203.0.113.0/24 holds this SSH session's client (203.0.113.7 port"),
        "{}",
        block.describe()
    );
    // So is a named list that holds it.
    let feed = lab.tmp().join("guard-feed.txt");
    fs::write(&feed, "192.0.2.9\n203.0.113.0/24\n").unwrap();
    let listed = run(format!("{fw} block --from {}", feed.display()));
    assert_eq!(listed.code(), Some(5), "{}", listed.describe());
    assert!(
        listed.stderr.contains("203.0.113.0/24 holds this SSH session's client (203.0.113.7 port"),
        "{}",
        listed.describe()
    );
    assert!(!lab.state_dir().join("block-lists.json").exists(), "a refused list was recorded");
    assert!(said_ok(&sshd.ssh(&lab, ADMIN, 10)), "the session's client is still admitted");
    // In audit mode nothing is dropped, so nothing is refused; and --force overrides.
    let audit = run(format!("{fw} reload --policy {cut} --audit"));
    assert!(audit.ok(), "{}", audit.describe());
    let enforce = run(format!("{fw} reload --enforce"));
    assert!(enforce.stderr.contains(reason), "{}", enforce.describe());

    // Outside SSH (or from another interface's session) there is nothing to guard.
    let out = lab.firewall(&["check", cut]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut command = lab.server_command(fw);
    command.args(["check", cut]).env("SSH_CONNECTION", "192.0.2.1 50000 192.0.2.2 22");
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_confirm_that_lapses_rolls_back_while_the_client_is_cut_off() {
    require_root();
    let lab = Lab::new("confirm");
    let sshd = daemons::sshd(&lab, SSH);
    lab.up();
    let cut = with_ssh_peers(&lab, "cut.toml", "\"203.0.113.8\"");
    let fw = firewall_bin();

    // From the admin's SSH session, a reload that cuts it off; --force past the guard.
    let remote = format!("{} reload --policy {} --confirm 5 --force; sleep 60", fw.display(), cut.display());
    // The client gives up on a server silent for 3 s: a session the firewall cut.
    let alive = ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3"];
    let mut command = sshd.command(&lab, ADMIN, 10, &alive, &remote);
    let started = Instant::now();
    let session = daemons::run(&lab, &mut command, Duration::from_secs(40));
    // The session's own packets are dropped now: ssh gives up on the silent server.
    assert!(!session.ok(), "the session survived a policy without its client: {}", session.describe());
    assert!(started.elapsed() < Duration::from_secs(40), "ssh never noticed: {}", session.describe());

    // No confirm came: the old policy is back, and the admin gets in again.
    let back = open_within(Duration::from_secs(30), || {
        if said_ok(&sshd.ssh(&lab, ADMIN, 2)) { Outcome::Open } else { Outcome::Blocked }
    });
    assert!(back.is_some(), "the rollback never came");
    let log = fs::read_to_string(lab.state_root().join("rollback.log")).expect("the rollback was logged");
    assert!(
        log.contains(
            "firewall: no `firewall confirm` within 5 s on s0: put back the policy in force before, from"
        ),
        "{log}"
    );
    assert!(log.contains(&format!("(undoing the reload of {})", cut.display())), "{log}");
    let listing = lab.firewall_ok(&["list", "-n"]);
    assert!(listing.contains("203.0.113.7 +1"), "ssh-in has both peers again:\n{listing}");
    assert_fails(&lab.firewall(&["confirm"]), "nothing on s0 awaits confirmation; it was rolled back: ");
}

#[test]
fn a_confirmed_change_stays_and_a_pending_one_blocks_others() {
    require_root();
    let lab = Lab::new("confirmed");
    lab.tcp_echo(SSH);
    lab.up();
    let wider = with_ssh_peers(&lab, "wider.toml", "\"203.0.113.7\", \"203.0.113.8\", \"203.0.113.99\"");
    let out = lab.firewall_ok(&["reload", "--policy", wider.to_str().unwrap(), "--confirm", "4"]);
    assert!(
        out.contains("run `firewall confirm` within 4 s to keep this; else it is rolled back (timer pid"),
        "{out}"
    );
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "the change is in force");
    // While it is pending, another change would be undone with it: refused, exit 6.
    assert_fails_with(&lab.firewall(&["reload"]), 6, "a change on s0 awaits `firewall confirm`");
    assert_fails_with(
        &lab.firewall(&["allow", "ssh-in", "203.0.113.9"]),
        6,
        "a change on s0 awaits `firewall confirm`",
    );
    let policy = lab.policy_file();
    assert_fails_with(
        &lab.firewall(&["up", "--policy", policy.to_str().unwrap(), "--iface", SERVER_IF]),
        6,
        "a change on s0 awaits `firewall confirm`",
    );
    let out = lab.firewall_ok(&["confirm"]);
    assert!(out.contains(&format!("confirmed the reload of {} on s0: it stays", wider.display())), "{out}");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "the confirmed change stayed");
    assert_fails(&lab.firewall(&["confirm"]), "nothing on s0 awaits confirmation");
    assert_fails(&lab.firewall(&["reload", "--confirm", "0"]), "--confirm takes 1 to 3600 seconds, not 0");

    // A first `up` that is not confirmed comes down again.
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    let out = lab.firewall_ok(&[
        "up",
        "--policy",
        policy.to_str().unwrap(),
        "--iface",
        SERVER_IF,
        "--confirm",
        "2",
    ]);
    assert!(out.contains("within 2 s"), "{out}");
    assert!(lab.pin_dir().exists());
    let deadline = Instant::now() + Duration::from_secs(20);
    while lab.pin_dir().exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!lab.pin_dir().exists(), "the unconfirmed up was not taken down");
    let log = fs::read_to_string(lab.state_root().join("rollback.log")).unwrap();
    assert!(log.contains("on s0: took the filter down, as it was before (undoing the up of"), "{log}");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "no filter");
}

/// The last policy that applied cleanly is kept (a change awaiting `confirm` is not, until
/// confirmed), and `up --fallback last-good`, as the boot unit runs it, applies it when
/// the policy file has a typo or is gone, and fails all the same, naming the error.
#[test]
fn a_broken_policy_at_up_gives_way_to_the_last_good_one_and_says_why() {
    require_root();
    let lab = Lab::new("last-good");
    lab.tcp_echo(SSH);
    lab.up();
    let policy = lab.policy_file();
    let kept = || fs::read_to_string(lab.last_good()).unwrap_or_default();
    assert_eq!(kept(), fs::read_to_string(&policy).unwrap(), "up keeps the policy it applied");
    assert_eq!(mode(&lab.last_good()), 0o600);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);

    // A change to confirm is kept once confirmed, not before.
    let wider = with_ssh_peers(&lab, "wider.toml", "\"203.0.113.7\", \"203.0.113.8\", \"203.0.113.99\"");
    lab.firewall_ok(&["reload", "--policy", wider.to_str().unwrap(), "--confirm", "60"]);
    assert_eq!(kept(), fs::read_to_string(&policy).unwrap(), "kept before its confirm");
    lab.firewall_ok(&["confirm"]);
    let wider_text = fs::read_to_string(&wider).unwrap();
    assert_eq!(kept(), wider_text, "kept once confirmed");

    // At the next boot the file has a typo: the last good policy goes up instead.
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    let broken = lab.tmp().join("broken.toml");
    fs::write(&broken, wider_text.replacen("203.0.113.99", "203.0.113.999", 1)).unwrap();
    let up = |file: &Path, fallback: &str| {
        lab.firewall(&[
            "up",
            "--policy",
            file.to_str().unwrap(),
            "--iface",
            SERVER_IF,
            "--fallback",
            fallback,
        ])
    };
    let out = up(&broken, "last-good");
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let line = broken.display().to_string() + ":";
    assert!(
        stderr(&out).starts_with(&format!("firewall: {line}"))
            && stderr(&out).contains("bad address \"203.0.113.999\"")
            && stderr(&out).trim_end().ends_with(&format!(
                "; in force instead: the last policy that applied cleanly, {}",
                lab.last_good().display()
            ))
            && stderr(&out).lines().count() == 1,
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("firewall up on s0: attached"), "{}", stdout(&out));
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "the last good policy is in force");
    assert_eq!(kept(), wider_text, "the last good policy stays the last good one");

    // Without the fallback, the same typo changes nothing.
    let policy_out = up(&policy, "none");
    assert!(policy_out.status.success(), "{}", stderr(&policy_out));
    assert_fails(&up(&broken, "none"), "bad address \"203.0.113.999\"");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "the filter as it was");

    // A missing file, and no last good policy either: nothing goes up, and both are named.
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    fs::remove_file(lab.last_good()).unwrap();
    let missing = lab.tmp().join("missing.toml");
    assert_fails(
        &up(&missing, "last-good"),
        &format!(
            "reading {}: No such file or directory (os error 2); and the last good policy, {}, failed too: reading {}",
            missing.display(),
            lab.last_good().display(),
            lab.last_good().display()
        ),
    );
    assert!(!lab.pin_dir().exists(), "nothing pinned");
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// `PROGRAM ARGS…` as nobody (uid and gid 65534).
fn as_nobody(args: &[&str]) -> Output {
    Command::new(AS_NOBODY[0]).args(&AS_NOBODY[1..]).args(args).output().expect("running setpriv")
}

/// `firewall ARGS…` in the lab, killed if it runs past `limit`.
fn firewall_within(lab: &Lab, limit: Duration, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["--signal=KILL", &limit.as_secs().to_string()])
        .args(["nsenter", &format!("--net=/run/netns/{}", lab.server)])
        .arg(firewall_bin())
        .args(args)
        .output()
        .expect("running firewall")
}

/// Waits for `path` to hold at least `lines` lines; its text.
fn wait_lines(path: &Path, lines: usize, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, not {lines}:\n{text}",
            path.display(),
            text.lines().count()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_state_is_root_s_alone_and_no_stranger_holds_up_a_rollback() {
    require_root();
    let lab = Lab::new("private");
    lab.tcp_echo(SSH);
    lab.up();
    let state = lab.state_dir();
    for dir in [
        Path::new(STATE_ROOT),
        &lab.state_root(),
        &state,
        Path::new(PIN_ROOT),
        &lab.pin_root(),
        &lab.pin_dir(),
    ] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    for name in ["policy.toml", "live.json", LOCK] {
        assert_eq!(mode(&state.join(name)), 0o600, "{name}");
    }
    let read = as_nobody(&["cat", state.join("live.json").to_str().unwrap()]);
    assert!(!read.status.success(), "nobody read the live state:\n{}", stdout(&read));
    let lock = state.join(LOCK);
    let held = as_nobody(&["flock", "--nonblock", lock.to_str().unwrap(), "true"]);
    assert!(!held.status.success(), "nobody took the state lock");

    // A state directory as an older version left it: 0755, its files 0644, its lock (the
    // file it used, `lock`) held by a stranger through a read-only descriptor.
    for dir in [Path::new(STATE_ROOT), &lab.state_root(), &state] {
        chmod(dir, 0o755);
    }
    for entry in fs::read_dir(&state).unwrap() {
        chmod(&entry.unwrap().path(), 0o644);
    }
    let old_lock = state.join("lock");
    fs::write(&old_lock, "").unwrap();
    chmod(&old_lock, 0o644);
    // The stranger's descriptor is handed to it as its stdin, opened read-only: the one it
    // could have opened while the directories were loose. (Opening it itself, it would race
    // the other tests' commands, which tighten /run/firewall as they take their locks.)
    let hold = "import fcntl, sys, time; fcntl.flock(sys.stdin, fcntl.LOCK_EX); time.sleep(120)";
    let mut stranger = Command::new(AS_NOBODY[0]);
    stranger.args(&AS_NOBODY[1..]).args([daemons::PYTHON, "-c", hold]);
    stranger.stdin(fs::File::open(&old_lock).expect("opening the old lock read-only"));
    lab.spawn(&mut stranger);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("flock").arg("--nonblock").arg(&old_lock).arg("true").status().unwrap().success() {
        assert!(Instant::now() < deadline, "the stranger never took the old lock");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A change with --confirm is made, and rolled back, as if no one held anything.
    let wider = with_ssh_peers(&lab, "wider.toml", "\"203.0.113.7\", \"203.0.113.8\", \"203.0.113.99\"");
    let started = Instant::now();
    let out = firewall_within(
        &lab,
        Duration::from_secs(20),
        &["reload", "--policy", wider.to_str().unwrap(), "--confirm", "3"],
    );
    assert!(
        out.status.success(),
        "reload --confirm with the old lock held ({}): {}",
        out.status,
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(10), "it waited {:?}", started.elapsed());
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "the change is in force");
    for dir in [Path::new(STATE_ROOT), &lab.state_root(), &state] {
        assert_eq!(mode(dir), 0o700, "{} was not tightened", dir.display());
    }
    assert!(!old_lock.exists(), "the old lock is left");
    let log = lab.state_root().join("rollback.log");
    let text = wait_lines(&log, 1, Duration::from_secs(20));
    assert!(
        text.contains("no `firewall confirm` within 3 s on s0: put back the policy in force before"),
        "{text}"
    );
    assert_eq!(mode(&log), 0o600);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "rolled back");
    for name in ["policy.toml", "live.json"] {
        assert_eq!(mode(&state.join(name)), 0o600, "{name} rewritten");
    }
}

/// `pending.json` of the filter on s0.
fn pending(lab: &Lab) -> Value {
    let text = fs::read_to_string(lab.state_dir().join("pending.json")).expect("a pending change");
    serde_json::from_str(&text).expect("pending.json is JSON")
}

fn set_pending(lab: &Lab, pending: &Value) {
    fs::write(lab.state_dir().join("pending.json"), pending.to_string()).expect("rewriting pending.json");
}

/// Field 22 of /proc/PID/stat: when it started.
fn start_time(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("a live process");
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Running: not gone, not a zombie.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// A pseudo-terminal: the master's descriptor, the slave's path and device number.
fn pty() -> (fs::File, fs::File, PathBuf, u64) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: two ints to fill, no name, default settings.
    let rc = unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: descriptors openpty just made, ours alone.
    let (master, slave) = unsafe { (fs::File::from_raw_fd(master), fs::File::from_raw_fd(slave)) };
    // SAFETY: the master's descriptor, made non-blocking.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&master), libc::F_SETFL, libc::O_NONBLOCK) };
    let path = fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&slave))).unwrap();
    let rdev = slave.metadata().unwrap().rdev();
    (master, slave, path, rdev)
}

/// What the terminal has been sent, as its master reads it now.
fn terminal_output(master: &mut fs::File) -> String {
    use std::io::Read as _;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn confirm_signals_only_its_timer_and_the_rollback_writes_only_to_its_terminal() {
    require_root();
    let lab = Lab::new("identity");
    lab.tcp_echo(SSH);
    lab.up();
    let wider = with_ssh_peers(&lab, "wider.toml", "\"203.0.113.7\", \"203.0.113.8\", \"203.0.113.99\"");
    let wider = wider.to_str().unwrap();
    let reload = |seconds: &str| lab.firewall_ok(&["reload", "--policy", wider, "--confirm", seconds]);

    // The recorded pid is another process's by now: not signalled.
    let other = lab.spawn(Command::new("sleep").arg("300"));
    reload("60");
    let mut record = pending(&lab);
    record["timer_pid"] = other.into();
    record["timer_start"] = start_time(other).into();
    set_pending(&lab, &record);
    lab.firewall_ok(&["confirm"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(other), "confirm signalled a process that is not the timer");

    // Another process with the timer's very command line, started since: not signalled.
    reload("60");
    let mut record = pending(&lab);
    let token = record["token"].as_str().unwrap().to_owned();
    // Start times count clock ticks (10 ms): a process started in the timer's own tick
    // would be the same to them, as no reused pid can be.
    std::thread::sleep(Duration::from_millis(50));
    let mut twin = lab.server_command(firewall_bin());
    twin.args(["rollback-timer", "--iface", SERVER_IF, "--token", &token, "--after", "600"]);
    let twin = lab.spawn(&mut twin);
    assert_ne!(record["timer_start"].as_u64(), Some(start_time(twin)), "started in the timer's tick");
    record["timer_pid"] = twin.into();
    set_pending(&lab, &record);
    lab.firewall_ok(&["confirm"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(twin), "confirm signalled a process started after the timer");

    // The timer itself is stopped.
    reload("60");
    let timer = pending(&lab)["timer_pid"].as_u64().unwrap() as u32;
    assert!(alive(timer));
    lab.firewall_ok(&["confirm"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(timer) {
        assert!(Instant::now() < deadline, "confirm did not stop the timer");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The rollback tells the terminal the change came from only while it is that one.
    let log = lab.state_root().join("rollback.log");
    let mut told = 0;
    let mut roll_back_to = |tty: &Path, uid: u32, rdev: u64| {
        reload("2");
        let mut record = pending(&lab);
        record["tty"] = tty.to_str().unwrap().into();
        record["tty_identity"] = serde_json::json!({ "uid": uid, "rdev": rdev });
        set_pending(&lab, &record);
        told += 1;
        wait_lines(&log, told, Duration::from_secs(20));
        // The terminal is written after the log.
        std::thread::sleep(Duration::from_millis(500));
    };
    // A regular file where the terminal was.
    let victim = lab.tmp().join("victim");
    fs::write(&victim, "victim\n").unwrap();
    roll_back_to(&victim, 0, 0);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "victim\n", "the rollback wrote into a regular file");
    // The terminal, another user's by now.
    let (mut master, _slave, slave, rdev) = pty();
    std::os::unix::fs::chown(&slave, Some(65534), None).unwrap();
    roll_back_to(&slave, 0, rdev);
    let seen = terminal_output(&mut master);
    assert!(seen.is_empty(), "the rollback wrote to another user's terminal: {seen:?}");
    // The terminal as it was: told.
    std::os::unix::fs::chown(&slave, Some(0), None).unwrap();
    roll_back_to(&slave, 0, rdev);
    let seen = terminal_output(&mut master);
    assert!(seen.contains("firewall: no `firewall confirm` within 2 s on s0: put back"), "{seen:?}");
}

#[test]
fn the_guard_finds_the_session_under_sudo_and_su() {
    require_root();
    let lab = Lab::new("sudo");
    let sshd = daemons::sshd(&lab, SSH);
    let user = TestUser::new("adm");
    let cut = with_ssh_peers(&lab, "cut.toml", "\"203.0.113.8\"");
    let cut = cut.to_str().unwrap();
    let policy = lab.policy_file();
    let policy = policy.to_str().unwrap();
    let fw = firewall_bin();
    let fw = fw.to_str().unwrap();
    let reason = "to 198.51.100.1 port 122) would be cut off: rule ssh-in serves tcp port 122 but not its client 203.0.113.7; add 203.0.113.7 to rule ssh-in's peers, or pass --force";

    // An administrator logged in as themselves, over SSH.
    let run = |remote: String| {
        let mut command = sshd.command_as(&user.name, &lab, ADMIN, 10, &[], &remote);
        daemons::run(&lab, &mut command, Duration::from_secs(30))
    };
    let who = run("id -un; sudo -n id -un".into());
    assert_eq!(who.stdout, format!("{}\nroot\n", user.name), "{}", who.describe());

    // sudo resets the environment, sudo -i and su -l start a login's, su -c keeps what
    // sudo left: SSH_CONNECTION is gone from the command's own, and the guard finds the
    // session all the same. A command as each way runs it as root.
    type Wrap = fn(&str) -> String;
    let ways: [(&str, Wrap); 4] = [
        ("sudo", |command| format!("sudo {command}")),
        ("sudo -i", |command| format!("sudo -i {command}")),
        ("su -l", |command| format!("sudo su -l -c '{command}'")),
        ("su -c", |command| format!("sudo su -c '{command}'")),
    ];
    for (how, wrap) in ways {
        let refused = run(wrap(&format!("{fw} check {cut}")));
        assert_eq!(refused.code(), Some(5), "{how}: {}", refused.describe());
        assert!(
            refused.stderr.contains("firewall: this SSH session (203.0.113.7 port"),
            "{how}: {}",
            refused.describe()
        );
        assert!(refused.stderr.contains(reason), "{how}: {}", refused.describe());
        let forced = run(wrap(&format!("{fw} check {cut} --force")));
        assert!(forced.ok(), "{how} --force: {}", forced.describe());
        let admitted = run(wrap(&format!("{fw} check {policy}")));
        assert!(admitted.ok(), "{how}, a policy that admits the session: {}", admitted.describe());
    }
    drop(user);
}

#[test]
fn a_session_long_gone_guards_nothing() {
    require_root();
    let lab = Lab::new("gone");
    let cut = with_ssh_peers(&lab, "cut.toml", "\"203.0.113.8\"");
    // SSH_CONNECTION as a shell in a tmux server started from an old login keeps it: a
    // session to this host that no connection carries any more.
    let mut command = lab.server_command(firewall_bin());
    command.arg("check").arg(&cut).env("SSH_CONNECTION", "203.0.113.7 50000 198.51.100.1 122");
    let out = command.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
