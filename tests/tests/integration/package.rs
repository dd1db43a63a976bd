//! The Debian package that `cargo xtask dist` writes (`cargo xtask test` writes it
//! first), installed with apt in a guest booted from an overlay of this machine
//! (tests/src/guest.rs), its units run by systemd, and purged.
//!
//! Run as root after `cargo xtask dist`:
//! `cargo test --release -p tests --test integration package:: -- --nocapture`.
use std::{
    fs,
    net::{SocketAddrV4, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use tests::{
    daemons,
    guest::{Guest, Install, stdout_of},
    lab::{Lab, Outcome, firewall_bin, xdp_lines},
    require_root,
};

use super::boot::{GUEST, WORLD, boot_report, connect, guest_listing, leased, pinged, policy, web_rule};

/// What the package installs, each checked present after the install and gone after
/// the purge.
const FILES: [&str; 12] = [
    "/usr/sbin/firewall",
    "/usr/lib/firewall/each-filter",
    "/lib/systemd/system/firewall@.service",
    "/lib/systemd/system/firewall-serve@.service",
    "/lib/systemd/system/firewall-follow@.service",
    "/usr/share/bash-completion/completions/firewall",
    "/usr/share/zsh/vendor-completions/_firewall",
    "/usr/share/fish/vendor_completions.d/firewall.fish",
    "/usr/share/doc/firewall/examples/tight.toml",
    "/usr/share/doc/firewall/docs/policy.md",
    "/etc/firewall/example.toml",
    "/usr/share/firewall/policy.schema.json",
];

/// The man pages, as `man -w` finds them.
const PAGES: [(&str, &str); 3] = [("8", "firewall"), ("8", "firewall-up"), ("5", "firewall.toml")];

/// The id of the XDP program on the guest's `iface`.
fn xdp_prog(guest: &Guest, iface: &str) -> String {
    let link = ok(guest, &["ip", "link", "show", iface]);
    link.split_whitespace()
        .skip_while(|w| *w != "prog/xdp")
        .skip_while(|w| *w != "id")
        .nth(1)
        .unwrap_or_else(|| panic!("no XDP program id on {iface}: {link}"))
        .to_owned()
}

/// `firewall-serve@host0`'s main process.
fn main_pid(guest: &Guest) -> String {
    ok(guest, &["systemctl", "show", "-p", "MainPID", "--value", "firewall-serve@host0"])
}

/// target/debian/firewall_*.deb, made after this build's binary.
fn package() -> PathBuf {
    let dir = tests::workspace().join("target/debian");
    let deb = fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("firewall_")))
        .unwrap_or_else(|| panic!("no firewall_*.deb in {}: run `cargo xtask dist` first", dir.display()));
    let made = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).expect("a file's time");
    assert!(
        made(&deb) >= made(&firewall_bin()),
        "{} is older than {}: run `cargo xtask dist` again",
        deb.display(),
        firewall_bin().display()
    );
    deb
}

/// `ARGS…` in the guest, which must succeed; its stdout.
fn ok(guest: &Guest, args: &[&str]) -> String {
    let out = guest.run(args);
    assert!(
        out.status.success(),
        "{args:?} in the guest: {}{}\n{}",
        stdout_of(&out),
        String::from_utf8_lossy(&out.stderr),
        report(guest)
    );
    stdout_of(&out)
}

/// Whether `path` exists in the guest, as its own processes see it (its /run is its own).
fn exists(guest: &Guest, path: &str) -> bool {
    guest.run(&["test", "-e", path]).status.success()
}

/// The boot's report, and the metrics unit's journal.
fn report(guest: &Guest) -> String {
    let journal = stdout_of(&guest.run(&["journalctl", "-b", "-u", "firewall-serve@host0", "--no-pager"]));
    format!("{}\nfirewall-serve@host0's journal:\n{journal}", boot_report(guest))
}

/// Polls `connect` until it gives `outcome`, for up to 5 s: a SIGHUP's reload is
/// asynchronous.
fn eventually(lab: &Lab, port: u16, outcome: Outcome) -> Outcome {
    let started = Instant::now();
    loop {
        let got = connect(lab, port);
        if got == outcome || started.elapsed() > Duration::from_secs(5) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The entries of the guest's journal for `FIREWALL_EVENT=event`, as `journalctl -o json`
/// gives them.
fn journal_events(guest: &Guest, event: &str) -> Vec<Value> {
    let filter = format!("FIREWALL_EVENT={event}");
    let text = ok(guest, &["journalctl", "-b", "--no-pager", "-o", "json", &filter]);
    text.lines().map(|line| serde_json::from_str(line).expect("journalctl's JSON")).collect()
}

/// The one entry for `event` whose field `key` is `value`, waiting up to 10 s for it.
fn journal_event(guest: &Guest, event: &str, key: &str, value: &str) -> Value {
    let started = Instant::now();
    loop {
        let found = journal_events(guest, event).into_iter().find(|entry| entry[key] == value);
        if let Some(entry) = found {
            return entry;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {event} event with {key}={value} in the journal: {:?}\n{}",
            journal_events(guest, event),
            report(guest)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Under systemd, the events an administrator looks for are in the journal with their
/// fields: `serve`'s reload (the unit's), a block by hand, a rollback, and a change the
/// SSH guard refused.
fn the_journal_has_each_event_with_its_fields(lab: &Lab, guest: &Guest) {
    let reload = journal_event(guest, "reload", "FIREWALL_FILE", "/etc/firewall/host0.toml");
    assert_eq!(reload["FIREWALL_IFACE"], "host0", "{reload}");
    assert_eq!(reload["_SYSTEMD_UNIT"], "firewall-serve@host0.service", "{reload}");
    assert_eq!(reload["SYSLOG_IDENTIFIER"], "firewall", "{reload}");
    let message = reload["MESSAGE"].as_str().unwrap_or_default();
    // The line `serve` wrote to stderr before the journal had fields, as it still does without one.
    assert!(message.starts_with("firewall serve: reloaded /etc/firewall/host0.toml: "), "{reload}");

    ok(guest, &["firewall", "block", "192.0.2.1", "--for", "1h", "--iface", "host0"]);
    let block = journal_event(guest, "block", "FIREWALL_PREFIX", "192.0.2.1");
    assert_eq!(block["MESSAGE"], "firewall: blocked 192.0.2.1 on host0 for 1h; 0 flows ended", "{block}");
    assert_eq!(
        (block["FIREWALL_DURATION_SECS"].as_str(), block["FIREWALL_IFACE"].as_str()),
        (Some("3600"), Some("host0"))
    );
    ok(guest, &["firewall", "unblock", "192.0.2.1", "--iface", "host0"]);

    // A reload no one confirms: rolled back a second later, and said so at warning priority.
    ok(guest, &["firewall", "reload", "--iface", "host0", "--confirm", "1"]);
    let rollback = journal_event(guest, "rollback", "FIREWALL_IFACE", "host0");
    assert_eq!(rollback["FIREWALL_ROLLED_BACK"], "true", "{rollback}");
    assert_eq!(rollback["FIREWALL_CHANGE"], "reload of /etc/firewall/host0.toml", "{rollback}");
    assert_eq!(rollback["PRIORITY"], "4", "{rollback}");
    let confirmed = journal_event(guest, "reload", "FIREWALL_CONFIRM_WITHIN_SECS", "1");
    assert_eq!(confirmed["FIREWALL_FILE"], "/etc/firewall/host0.toml", "{confirmed}");

    // A session the guard takes for SSH (sshd's SSH_CONNECTION, on an established
    // connection to port 80, which web-in admits) and a policy without web-in: refused.
    let mut server = guest.spawn(&["python3", "-m", "http.server", "80", "--bind", &GUEST.to_string()]);
    let started = Instant::now();
    let session = loop {
        let to = SocketAddrV4::new(GUEST, 80).into();
        match lab.run_in(&lab.client, || TcpStream::connect_timeout(&to, Duration::from_secs(2))) {
            Ok(session) => break session,
            Err(err) => assert!(started.elapsed() < Duration::from_secs(10), "port 80 in the guest: {err}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let client = session.local_addr().unwrap();
    guest.write("/etc/firewall/cut.toml", &policy(""));
    let ssh = format!("SSH_CONNECTION={} {} {GUEST} 80", client.ip(), client.port());
    let refused = guest.run(&[
        "env",
        &ssh,
        "firewall",
        "reload",
        "--iface",
        "host0",
        "--policy",
        "/etc/firewall/cut.toml",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(refused.status.code(), Some(5), "{}", String::from_utf8_lossy(&refused.stderr));
    let guard = journal_event(guest, "ssh-guard", "FIREWALL_COMMAND", "reload");
    let message = guard["MESSAGE"].as_str().unwrap_or_default();
    assert!(message.contains("would be cut off"), "{guard}");
    drop(session);
}

#[test]
fn the_package_installs_enabling_nothing_its_units_filter_serve_and_reload_and_purge_leaves_nothing() {
    require_root();
    let deb = package();
    let lab = Lab::new("package");
    let mut guest = Guest::new(&lab, "fwpkg", Install::Package(&deb));
    guest.write("/etc/systemd/network/80-host0.network", "[Match]\nName=host0\n\n[Network]\nDHCP=ipv4\n");
    guest.link(
        "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
        "/lib/systemd/system/systemd-networkd.service",
    );
    guest.boot();
    let range = format!("{GUEST},{GUEST}");
    let _dhcp = daemons::dhcp_server_on(&lab, &guest.outer_if(), WORLD, &range);
    guest.wait_booted();
    assert!(leased(&guest), "no lease for host0; {}", report(&guest));

    // apt installs it, as the README says, and starts nothing.
    ok(&guest, &["apt-get", "install", "-y", "-qq", "/root/firewall.deb"]);
    for file in FILES {
        assert!(exists(&guest, file), "the package installed no {file}");
    }
    for (section, page) in PAGES {
        ok(&guest, &["man", "-w", section, page]);
    }
    let conffiles = ok(&guest, &["dpkg-query", "-W", "-f=${Conffiles}", "firewall"]);
    assert!(conffiles.contains("/etc/firewall/example.toml"), "conffiles: {conffiles}");
    let active = stdout_of(&guest.run(&["systemctl", "is-active", "firewall@host0"]));
    assert_eq!(active, "inactive", "the install started a filter");
    assert!(
        xdp_lines(&ok(&guest, &["ip", "link", "show", "host0"])).is_empty(),
        "XDP attached by the install"
    );
    assert_eq!(connect(&lab, 80), Outcome::Refused, "no filter yet: port 80 reaches the guest's TCP");

    // The template unit runs the package's binary on a policy of /etc/firewall.
    guest.write("/etc/firewall/host0.toml", &policy(""));
    ok(&guest, &["systemctl", "start", "firewall@host0"]);
    // The unit names it bare; systemd finds it in /usr/local/sbin, else /usr/sbin.
    assert!(!exists(&guest, "/usr/local/sbin/firewall"), "a firewall from source in the guest");
    assert_eq!(ok(&guest, &["sh", "-c", "command -v firewall"]), "/usr/sbin/firewall");
    assert!(pinged(&lab), "ping-in under the package's unit");
    assert_eq!(connect(&lab, 80), Outcome::Blocked, "port 80 under the package's unit");

    // The metrics unit is ready once it serves (Type=notify: `start` returns then), and a
    // reload through it applies an edit.
    ok(&guest, &["systemctl", "start", "firewall-serve@host0"]);
    let metrics = ok(&guest, &["curl", "-sf", "http://127.0.0.1:9100/metrics"]);
    assert!(metrics.contains("firewall_conntrack_capacity"), "{metrics}");
    guest.write("/etc/firewall/host0.toml", &policy(&web_rule()));
    ok(&guest, &["systemctl", "reload", "firewall-serve@host0"]);
    assert_eq!(
        eventually(&lab, 80, Outcome::Refused),
        Outcome::Refused,
        "port 80 after the reload; {}",
        report(&guest)
    );
    assert_eq!(connect(&lab, 81), Outcome::Blocked, "port 81 stays closed");
    assert_eq!(ok(&guest, &["systemctl", "is-active", "firewall-serve@host0"]), "active");
    assert!(guest_listing(&guest).packets("INPUT", "web-in") > 0, "web-in counted the probes");
    the_journal_has_each_event_with_its_fields(&lab, &guest);

    // A filter brought up by hand, on an interface of its own, goes down on removal too.
    // (Its pins are in this machine's bpffs: those of a run cut short go first.)
    let _ = fs::remove_dir_all(Path::new(firewall_user::kernel::pins::PIN_ROOT).join("hand0"));
    ok(&guest, &["ip", "link", "add", "hand0", "type", "veth", "peer", "name", "hand1"]);
    ok(&guest, &["ip", "link", "set", "hand0", "up"]);
    ok(
        &guest,
        &["firewall", "up", "--policy", "/etc/firewall/host0.toml", "--iface", "hand0", "--mode", "skb"],
    );
    assert!(!xdp_lines(&ok(&guest, &["ip", "link", "show", "hand0"])).is_empty(), "no XDP on hand0");

    // An upgrade (the same package at a later version) swaps the new programs into every
    // filter, the unit's and the one by hand, with the policy in force, and restarts
    // the daemon that ran the old binary. The filter never lapses: the edit reloaded
    // above stays in force, and port 81 stays closed.
    let before = (xdp_prog(&guest, "host0"), xdp_prog(&guest, "hand0"), main_pid(&guest));
    let web = connect(&lab, 80);
    assert_ne!(web, Outcome::Blocked, "port 80, opened by the edit");
    ok(&guest, &["dpkg-deb", "-R", "/root/firewall.deb", "/root/upgrade"]);
    ok(&guest, &["sed", "-i", "s/^Version: .*/&+upgrade1/", "/root/upgrade/DEBIAN/control"]);
    ok(&guest, &["dpkg-deb", "-b", "/root/upgrade", "/root/firewall-upgrade.deb"]);
    let upgrade = ok(&guest, &["apt-get", "install", "-y", "/root/firewall-upgrade.deb"]);
    assert!(upgrade.contains("firewall up on host0: programs replaced in place"), "{upgrade}");
    assert!(upgrade.contains("firewall up on hand0: programs replaced in place"), "{upgrade}");
    assert_ne!(xdp_prog(&guest, "host0"), before.0, "host0's programs swapped");
    assert_ne!(xdp_prog(&guest, "hand0"), before.1, "hand0's programs swapped");
    assert_ne!(main_pid(&guest), before.2, "serve restarted on the new binary");
    assert_eq!(ok(&guest, &["systemctl", "is-active", "firewall-serve@host0"]), "active");
    assert!(pinged(&lab), "ping-in after the upgrade");
    assert_eq!(connect(&lab, 80), web, "port 80, opened by the edit, after the upgrade");
    assert_eq!(connect(&lab, 81), Outcome::Blocked, "port 81 after the upgrade");

    // Purge leaves nothing: no filter, no pins, no state, no file of the package's. The
    // policy the administrator wrote stays.
    const STATE: [&str; 2] = ["/var/lib/firewall/host0.toml", "/run/firewall/host0"];
    for state in STATE {
        assert!(exists(&guest, state), "no {state} before the purge");
    }
    ok(&guest, &["apt-get", "purge", "-y", "-qq", "firewall"]);
    for unit in ["firewall@host0", "firewall-serve@host0"] {
        let active = stdout_of(&guest.run(&["systemctl", "is-active", unit]));
        assert_eq!(active, "inactive", "{unit} after the purge");
    }
    for iface in ["host0", "hand0"] {
        let link = ok(&guest, &["ip", "link", "show", iface]);
        assert!(xdp_lines(&link).is_empty(), "XDP still on {iface} after the purge: {link}");
        let pins = Path::new(firewall_user::kernel::pins::PIN_ROOT).join(iface);
        assert!(!pins.exists(), "{} left after the purge", pins.display());
    }
    assert_eq!(connect(&lab, 81), Outcome::Refused, "no filter: port 81 reaches the guest's TCP");
    for left in FILES.iter().chain(&["/var/lib/firewall", "/run/firewall"]) {
        assert!(!exists(&guest, left), "{left} left after the purge");
    }
    assert!(exists(&guest, "/etc/firewall/host0.toml"), "the purge took the administrator's policy");
    let status = guest.run(&["dpkg-query", "-W", "-f=${Status}", "firewall"]);
    assert!(!stdout_of(&status).contains("installed"), "dpkg: {}", stdout_of(&status));
    guest.shut_down();
}
