//! contrib/ansible's role, run by a real `ansible-playbook` (ansible-core from PyPI, which
//! `cargo xtask setup` installs): with a local connection in the server's namespace, it
//! reports a change in check mode and makes none, applies and confirms it, reports
//! `changed=0` on a second run, takes back a live `--runtime-only` change, and refuses a
//! bad policy with firewall's own line. Over SSH from the lab's client, a run the SSH guard
//! would refuse fails with the guard's line, and one forced past it, which cuts the
//! controller off, is rolled back by itself.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration ansible::`.
use std::{
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tests::{
    daemons::{self, Run, said_ok},
    lab::{BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, firewall_bin, stdout},
    require_root, workspace,
};

/// The port of the rule the role writes, where sshd listens in the SSH test.
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);
const ADMIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const OTHER_ADMIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 8);
/// How long a change waits for its confirm: the role waits half of it for a new connection.
const CONFIRM_SECONDS: u64 = 15;

/// The role's variables for a policy whose one rule lets `peers` SSH in.
fn role_vars(lab: &Lab, peers: &[&str]) -> Value {
    json!({
        "firewall_interface": SERVER_IF,
        "firewall_address": HOST.to_string(),
        "firewall_policy_dir": policy_dir(lab),
        "firewall_bin": firewall_bin(),
        "firewall_confirm_seconds": CONFIRM_SECONDS,
        "firewall_rules": [
            { "name": "ssh-in", "direction": "in", "protocols": ["tcp"], "port": SSH.port(), "peers": peers },
            { "name": "ping-in", "direction": "in", "protocols": ["icmp"], "icmp_type": "echo-request",
              "peers": "any", "limit": "1/sec", "burst": 5 },
        ],
    })
}

fn policy_dir(lab: &Lab) -> PathBuf {
    lab.tmp().join("etc-firewall")
}

/// The file the role writes.
fn policy_file(lab: &Lab) -> PathBuf {
    policy_dir(lab).join(format!("{SERVER_IF}.toml"))
}

/// `ansible-playbook`, which must be on PATH: a missing tool should say so.
fn ansible_playbook() -> &'static str {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("ansible-playbook").is_file()));
    assert!(found, "ansible-playbook is not on PATH: `cargo xtask setup` installs ansible-core from PyPI");
    "ansible-playbook"
}

/// `ansible-playbook` of a play that applies the role to `host` (an inventory entry), in
/// network namespace `ns`, with `vars` as extra variables and `flags` after.
fn playbook(lab: &Lab, ns: &str, host: &Value, vars: &Value, flags: &[&str]) -> Run {
    let dir = lab.tmp();
    let role = workspace().join("contrib/ansible/roles/firewall");
    let play = format!("- hosts: server\n  gather_facts: false\n  roles:\n    - role: {}\n", role.display());
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    };
    let play = write("play.yml", play);
    let inventory = write("inventory.json", json!({ "all": { "hosts": { "server": host } } }).to_string());
    let vars = write("vars.json", vars.to_string());
    fs::create_dir_all(dir.join("ansible")).expect("mkdir for ansible's files");
    let mut command = daemons::in_ns(ns, ansible_playbook());
    command
        .current_dir(dir)
        .arg("-i")
        .arg(&inventory)
        .arg("-e")
        .arg(format!("@{}", vars.display()))
        .args(flags)
        .arg(&play)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_LOCAL_TEMP", dir.join("ansible/local"))
        .env("ANSIBLE_REMOTE_TEMP", dir.join("ansible/remote"))
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.join("ansible/cp"));
    daemons::run(lab, &mut command, Duration::from_secs(120))
}

/// The play's recap for the host: how many tasks changed something.
fn changed_count(run: &Run) -> u32 {
    run.stdout
        .lines()
        .find(|line| line.starts_with("server ") && line.contains(" ok="))
        .and_then(|line| line.split_whitespace().find_map(|field| field.strip_prefix("changed=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no changed= in the host's recap: {}", run.describe()))
}

/// The play succeeded, and changed something or nothing.
fn assert_run(run: &Run, changed: bool) {
    assert!(run.ok(), "the play failed: {}", run.describe());
    let n = changed_count(run);
    assert_eq!(
        n > 0,
        changed,
        "changed={n}, expected {}: {}",
        if changed { "some" } else { "0" },
        run.describe()
    );
}

/// Whether `from` gets a connection to [`SSH`] (the echo server behind it).
fn ssh_opens(lab: &Lab, from: Ipv4Addr) -> bool {
    lab.tcp_probe(from, SSH, OPEN_WITHIN) == Outcome::Open
}

/// Whether `from`'s connection to [`SSH`] is dropped.
fn ssh_blocked(lab: &Lab, from: Ipv4Addr) -> bool {
    lab.tcp_probe(from, SSH, BLOCKED_AFTER) == Outcome::Blocked
}

#[test]
fn the_role_checks_applies_confirms_and_then_has_nothing_to_change() {
    require_root();
    let lab = Lab::new("ansible");
    lab.tcp_echo(SSH);
    let server = lab.server.clone();
    let local = json!({ "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}" });
    let file = policy_file(&lab);
    fs::create_dir_all(policy_dir(&lab)).unwrap();

    // Check mode with a diff: all of it would change, and nothing does.
    let vars = role_vars(&lab, &[&ADMIN.to_string()]);
    let run = playbook(&lab, &server, &local, &vars, &["--check", "--diff"]);
    assert_run(&run, true);
    for line in ["add rule ssh-in", "add rule ping-in", "add host address 198.51.100.1", "+[[rule]]"] {
        assert!(run.stdout.contains(line), "no {line:?} in the check: {}", run.describe());
    }
    assert_eq!(lab.firewall(&["list", "--iface", SERVER_IF]).status.code(), Some(7), "a filter is up");
    assert!(!file.exists(), "check mode wrote {}", file.display());

    // Applied: up, confirmed (it outlasts its confirm time), the file written and named.
    let run = playbook(&lab, &server, &local, &vars, &[]);
    assert_run(&run, true);
    assert!(ssh_opens(&lab, ADMIN));
    assert!(ssh_blocked(&lab, STRANGER));
    std::thread::sleep(Duration::from_secs(CONFIRM_SECONDS + 2));
    assert!(ssh_opens(&lab, ADMIN), "the change was rolled back: no confirm came");
    let written = fs::read_to_string(&file).expect("the role wrote the policy file");
    assert!(written.contains("peers = [\"203.0.113.7\"]"), "{written}");
    let dry = lab.firewall(&["reload", "--dry-run", "--json", "--iface", SERVER_IF]);
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&dry)));
    assert_eq!(dry["file"], json!(file), "the live filter names the policy file: {dry}");
    assert_eq!(dry["changed"], false, "{dry}");

    // Again: nothing to do.
    assert_run(&playbook(&lab, &server, &local, &vars, &[]), false);

    // A peer added: check mode says so and changes nothing; then it is applied.
    let vars = role_vars(&lab, &[&ADMIN.to_string(), &OTHER_ADMIN.to_string()]);
    let run = playbook(&lab, &server, &local, &vars, &["--check", "--diff"]);
    assert_run(&run, true);
    assert!(run.stdout.contains("add peer 203.0.113.8 to rule ssh-in"), "{}", run.describe());
    assert!(ssh_blocked(&lab, OTHER_ADMIN), "check mode let the peer in");
    assert_eq!(fs::read_to_string(&file).unwrap(), written, "check mode wrote the file");
    assert_run(&playbook(&lab, &server, &local, &vars, &[]), true);
    assert!(ssh_opens(&lab, OTHER_ADMIN));
    assert_run(&playbook(&lab, &server, &local, &vars, &[]), false);

    // A live change made --runtime-only is drift: the next run takes it back.
    lab.firewall_ok(&["allow", "ssh-in", &STRANGER.to_string(), "--runtime-only", "--iface", SERVER_IF]);
    assert!(ssh_opens(&lab, STRANGER));
    let run = playbook(&lab, &server, &local, &vars, &[]);
    assert_run(&run, true);
    assert!(run.stdout.contains("remove peer 203.0.113.99 from rule ssh-in"), "{}", run.describe());
    assert!(ssh_blocked(&lab, STRANGER));

    // A bad policy fails the play with firewall's line, and changes nothing.
    let before = fs::read_to_string(&file).unwrap();
    let mut bad = vars.clone();
    bad["firewall_rules"][0]["port"] = json!(70000);
    let run = playbook(&lab, &server, &local, &bad, &[]);
    assert!(!run.ok(), "a bad policy passed: {}", run.describe());
    assert!(run.stdout.contains("port 70000 out of range"), "{}", run.describe());
    assert_eq!(fs::read_to_string(&file).unwrap(), before, "the file changed");
    assert!(ssh_opens(&lab, OTHER_ADMIN), "the live filter changed");
}

#[test]
fn over_ssh_the_guard_refuses_a_cut_and_a_forced_one_is_rolled_back_by_itself() {
    require_root();
    let lab = Lab::new("ansible-ssh");
    let sshd = daemons::sshd(&lab, SSH);
    fs::create_dir_all(policy_dir(&lab)).unwrap();
    let client = lab.client.clone();
    // The controller is the admin's address; its SSH gives up on a server silent for 3 s.
    let over_ssh = json!({
        "ansible_host": HOST.to_string(),
        "ansible_port": SSH.port(),
        "ansible_user": "root",
        "ansible_ssh_private_key_file": sshd.client_key,
        "ansible_ssh_common_args": format!(
            "-b {ADMIN} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o ServerAliveInterval=1 -o ServerAliveCountMax=3"
        ),
        "ansible_ssh_timeout": 3,
        // Files go through the SSH session itself: sftp and scp would read `-b` above as
        // an option of their own.
        "ansible_ssh_transfer_method": "piped",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
    });
    let admin_in = |lab: &Lab| said_ok(&sshd.ssh(lab, ADMIN, 3));

    // Up over SSH, confirmed over a new connection.
    let run = playbook(&lab, &client, &over_ssh, &role_vars(&lab, &[&ADMIN.to_string()]), &[]);
    assert_run(&run, true);
    let confirmed = fs::read_to_string(policy_file(&lab)).expect("the role wrote the policy file");
    assert!(admin_in(&lab));

    // The controller's own address dropped: the guard refuses it before anything changes.
    let cut = role_vars(&lab, &[&OTHER_ADMIN.to_string()]);
    let run = playbook(&lab, &client, &over_ssh, &cut, &[]);
    assert!(!run.ok(), "the guard let a cut through: {}", run.describe());
    assert!(run.stdout.contains("would be cut off"), "{}", run.describe());
    assert!(admin_in(&lab), "the refused change cut the admin off");

    // Forced past the guard, it cuts the controller off: no confirm comes, and it is rolled
    // back. The file keeps the policy last confirmed.
    let mut forced = cut.clone();
    forced["firewall_force"] = json!(true);
    let started = Instant::now();
    let run = playbook(&lab, &client, &over_ssh, &forced, &[]);
    // Where the cut is met (the apply's own connection, or the wait for a new one) words
    // the failure differently; what matters is that no confirm was tried.
    assert!(!run.ok(), "the controller was not cut off: {}", run.describe());
    assert!(!run.stdout.contains("Keep the change"), "a confirm was tried: {}", run.describe());
    let deadline = started + Duration::from_secs(CONFIRM_SECONDS + 30);
    while !admin_in(&lab) {
        assert!(Instant::now() < deadline, "no rollback {} s after the run started", CONFIRM_SECONDS + 30);
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = fs::read_to_string(lab.state_root().join("rollback.log")).expect("the rollback was logged");
    assert!(log.contains(&format!("no `firewall confirm` within {CONFIRM_SECONDS} s on s0")), "{log}");
    assert_eq!(
        fs::read_to_string(policy_file(&lab)).unwrap(),
        confirmed,
        "the file is not the confirmed policy"
    );
    let listing = lab.firewall_ok(&["list", "-n", "--iface", SERVER_IF]);
    assert!(listing.contains("203.0.113.7"), "ssh-in has the admin again:\n{listing}");
}
