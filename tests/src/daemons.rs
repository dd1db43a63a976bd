//! Real daemons and clients in the lab (see tests/tests/integration/daemons.rs): sshd and ssh,
//! dnsmasq and dig, dnsmasq as a DHCP server and ISC dhclient, chronyd as server and as
//! one-shot client, python3's http.server and curl, python3's smtpd and smtplib, nmap,
//! and scapy for packets no socket would send.
//!
//! Every program runs in one of the lab's network namespaces through `nsenter --net`
//! (the mount namespace stays the host's, so paths are the same everywhere). Daemons are
//! started with [`Lab::spawn`], so they die with the lab; everything they write (keys,
//! configuration, logs, pid files) goes into the lab's temporary directory. A daemon is
//! waited for by polling (its port accepting, or a query succeeding), never by a fixed
//! sleep. Clients run to completion under a deadline, their output kept in files.
//!
//! The packages are those `cargo xtask setup` installs: openssh-server, openssh-client,
//! dnsmasq-base, isc-dhcp-client, bind9-dnsutils, chrony, curl, nmap, python3-scapy (and Debian's own
//! python3, whose 3.11 still has the `smtpd` module).
use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::lab::{CLIENT_IF, Lab, Listing};

/// Debian's python3: the one python3-scapy is installed for (a `python3` earlier on
/// PATH, pyenv's say, may lack it).
pub const PYTHON: &str = "/usr/bin/python3";

/// How long a daemon may take to answer its first query or accept its first connection.
pub const READY_WITHIN: Duration = Duration::from_secs(15);

/// A command that runs `program` in the network namespace `ns` (nsenter execs it: the
/// child's pid is the program's).
pub fn in_ns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("nsenter");
    command.arg(format!("--net=/run/netns/{ns}")).arg(program);
    command
}

/// Panics, naming the package, unless `program` is on PATH (or is a path that exists):
/// a missing tool should say so, not read as the firewall blocking it.
pub fn need(program: &str, package: &str) {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    assert!(
        found,
        "{program} is not installed: the Debian package {package} provides it (`cargo xtask setup` installs it; \
         a conflicting package installed since may have removed it)"
    );
}

/// What a client did.
#[derive(Debug)]
pub struct Run {
    pub what: String,
    /// `None`: killed at its deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Everything it said, for a failure message.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "killed at its deadline".to_owned(),
        };
        format!(
            "{} ({status}, {:.1?}):\n--- stdout\n{}--- stderr\n{}",
            self.what, self.elapsed, self.stdout, self.stderr
        )
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs a client to completion, killed if still running after `limit`. Its output goes
/// to files in the lab's directory (no pipe to fill up), read back afterwards.
pub fn run(lab: &Lab, command: &mut Command, limit: Duration) -> Run {
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let out_path = lab.tmp().join(format!("run-{n}.out"));
    let err_path = lab.tmp().join(format!("run-{n}.err"));
    let what = format!("{command:?}");
    let out = fs::File::create(&out_path).expect("creating a run's stdout file");
    let err = fs::File::create(&err_path).expect("creating a run's stderr file");
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a client") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Run { what, status, stdout: read(&out_path), stderr: read(&err_path), elapsed }
}

/// A daemon started in `ns`, its stdout and stderr in `<tmp>/<name>.log`.
pub struct Daemon {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(lab: &Lab, ns: &str, name: &str, program: &str, args: &[&str]) -> Daemon {
        let log = lab.tmp().join(format!("{name}.log"));
        let file = fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let mut command = in_ns(ns, program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup a log file"))
            .stderr(file);
        let pid = lab.spawn(&mut command);
        Daemon { name: name.to_owned(), pid, log }
    }

    /// Still running (not exited, not a zombie).
    pub fn alive(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // pid (comm) STATE …: comm may hold spaces and parentheses, the state follows
            // the last ')'.
            Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Polls `ready` until it is true, or panics with the daemon's log (at once if the
    /// daemon died).
    pub fn wait_ready(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        loop {
            if ready() {
                return;
            }
            if !self.alive() {
                panic!("{} exited before {what}; its log:\n{}", self.name, self.log_text());
            }
            if started.elapsed() > READY_WITHIN {
                panic!("{}: not {what} after {READY_WITHIN:?}; its log:\n{}", self.name, self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for its TCP port to accept a connection (made inside its own namespace, so
    /// over loopback: call it before `up` or after, the filter is not in the way).
    pub fn wait_tcp(&self, lab: &Lab, addr: SocketAddrV4) {
        self.wait_ready(&format!("accepting on tcp {addr}"), || {
            lab.tcp_connect(*addr.ip(), addr, Duration::from_millis(500)).is_ok()
        });
    }
}

/// The address's dotted form, with '.' and ':' made file-name friendly.
fn tag(addr: impl std::fmt::Display) -> String {
    addr.to_string().replace(['.', ':'], "-")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a utf-8 path")
}

// ---------------------------------------------------------------------------------------
// SSH

/// sshd, and the client key it accepts for root.
pub struct Sshd {
    pub daemon: Daemon,
    pub addr: SocketAddrV4,
    pub client_key: PathBuf,
}

/// Starts `sshd -D -e` on `addr` in the namespace that owns it: a host key and a client
/// key made here, root allowed with that key only, no PAM, no pid file.
pub fn sshd(lab: &Lab, addr: SocketAddrV4) -> Sshd {
    let dir = lab.tmp().join(format!("sshd-{}", tag(addr)));
    need("/usr/sbin/sshd", "openssh-server");
    need("ssh", "openssh-client");
    fs::create_dir_all(&dir).expect("mkdir for sshd");
    let host_key = dir.join("host_key");
    let client_key = dir.join("client_key");
    for key in [&host_key, &client_key] {
        let made = run(
            lab,
            Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "fwtest", "-f"]).arg(key),
            Duration::from_secs(20),
        );
        assert!(made.ok(), "ssh-keygen: {}", made.describe());
    }
    let public = fs::read_to_string(client_key.with_extension("pub")).expect("the client's public key");
    let authorized = dir.join("authorized_keys");
    fs::write(&authorized, public).expect("writing authorized_keys");
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "ListenAddress {addr}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized}\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PrintMotd no\n\
             PrintLastLog no\n",
            host_key = host_key.display(),
            authorized = authorized.display(),
        ),
    )
    .expect("writing sshd_config");
    // Privilege separation needs its empty directory (the package's tmpfiles.d makes it
    // at boot, which a test machine may not have had since the install).
    fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
    let daemon = Daemon::start(
        lab,
        lab.ns_of(*addr.ip()),
        &format!("sshd-{}", tag(addr)),
        "/usr/sbin/sshd",
        &["-D", "-e", "-f", path_str(&config)],
    );
    daemon.wait_tcp(lab, addr);
    Sshd { daemon, addr, client_key }
}

impl Sshd {
    /// `ssh … -b FROM -p PORT root@ADDR echo ok` from the namespace of `from`.
    pub fn ssh(&self, lab: &Lab, from: Ipv4Addr, connect_timeout: u32) -> Run {
        let mut command = self.command(lab, from, connect_timeout, &[], "echo ok");
        run(lab, &mut command, Duration::from_secs(u64::from(connect_timeout) + 15))
    }

    /// `ssh … OPTIONS… root@ADDR REMOTE` from the namespace of `from`, not started.
    pub fn command(
        &self,
        lab: &Lab,
        from: Ipv4Addr,
        connect_timeout: u32,
        options: &[&str],
        remote: &str,
    ) -> Command {
        self.command_as("root", lab, from, connect_timeout, options, remote)
    }

    /// `ssh … OPTIONS… USER@ADDR REMOTE` from the namespace of `from`, not started (the
    /// user logs in with the same key: sshd's AuthorizedKeysFile is one file for all).
    pub fn command_as(
        &self,
        user: &str,
        lab: &Lab,
        from: Ipv4Addr,
        connect_timeout: u32,
        options: &[&str],
        remote: &str,
    ) -> Command {
        let mut command = in_ns(lab.ns_of(from), "ssh");
        command
            .args(["-F", "none", "-i"])
            .arg(&self.client_key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(options)
            .arg("-o")
            .arg(format!("ConnectTimeout={connect_timeout}"))
            .arg("-b")
            .arg(from.to_string())
            .arg("-p")
            .arg(self.addr.port().to_string())
            .arg(format!("{user}@{}", self.addr.ip()))
            .arg(remote);
        command
    }
}

/// An unprivileged login made for a test, allowed every command with `sudo` and no
/// password; it and its sudoers file are removed on drop, a failed test included.
pub struct TestUser {
    pub name: String,
    sudoers: PathBuf,
}

impl TestUser {
    pub fn new(tag: &str) -> TestUser {
        need("sudo", "sudo");
        need("useradd", "passwd");
        // At most 32 characters, unique to this process.
        let name = format!("fw{tag}{}", std::process::id());
        let sudoers = Path::new("/etc/sudoers.d").join(format!("fwtest-{name}"));
        // The guard exists before the user does: a failure below removes what was made.
        let user = TestUser { name, sudoers };
        let made = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/bash", &user.name])
            .output()
            .expect("running useradd");
        assert!(made.status.success(), "useradd: {}", String::from_utf8_lossy(&made.stderr));
        // No password, but not locked: sshd without PAM refuses a locked account ("!").
        let unlocked = Command::new("usermod").args(["-p", "*", &user.name]).output().expect("usermod");
        assert!(unlocked.status.success(), "usermod: {}", String::from_utf8_lossy(&unlocked.stderr));
        fs::write(&user.sudoers, format!("{} ALL=(ALL:ALL) NOPASSWD: ALL\n", user.name)).expect("sudoers");
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&user.sudoers, fs::Permissions::from_mode(0o440)).expect("chmod sudoers");
        user
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
        // Its processes first (its login's, if one outlived the test), else userdel
        // refuses: each found by its uid, killed by its pid.
        if let Some(uid) = nix::unistd::User::from_name(&self.name).ok().flatten().map(|u| u.uid.as_raw()) {
            for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                let real_uid = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next().and_then(|u| u.parse::<u32>().ok()));
                if real_uid == Some(uid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("userdel").args(["--remove", &self.name]).stderr(Stdio::null()).status();
    }
}

/// The remote command printed `ok` on a line of its own.
pub fn said_ok(run: &Run) -> bool {
    run.ok() && run.stdout.lines().any(|l| l.trim() == "ok")
}

// ---------------------------------------------------------------------------------------
// DNS

/// The name every dnsmasq here answers, and its answer.
pub const DNS_NAME: &str = "example.lab";
pub const DNS_ANSWER: &str = "192.0.2.80";

/// A name whose answer is too large for one frame: [`BIG_TXT_STRINGS`] TXT strings of
/// [`BIG_TXT_LEN`] bytes each (about 5 KB over UDP, as DNSSEC and large TXT answers are
/// with EDNS0), so it comes in fragments.
pub const BIG_TXT_NAME: &str = "big.example.lab";
pub const BIG_TXT_STRINGS: usize = 20;
pub const BIG_TXT_LEN: usize = 250;

/// The `i`th string of [`BIG_TXT_NAME`]'s answer.
pub fn big_txt_string(i: usize) -> String {
    let letter = char::from(b'a' + (i % 26) as u8);
    std::iter::repeat_n(letter, BIG_TXT_LEN).collect()
}

/// dnsmasq on `addr`:53 (UDP and TCP), in the namespace that owns it, answering
/// [`DNS_NAME`] with [`DNS_ANSWER`] and [`BIG_TXT_NAME`] with its TXT strings, and nothing
/// else (no upstream, no hosts file); answers over UDP up to 8 KB (EDNS0).
pub fn dnsmasq(lab: &Lab, addr: Ipv4Addr) -> Daemon {
    dnsmasq_with(lab, addr, &[])
}

/// [`dnsmasq`] with `more` arguments: `--addn-hosts=FILE` (read again on SIGHUP) and
/// `--local-ttl=1` for names whose records change.
pub fn dnsmasq_with(lab: &Lab, addr: Ipv4Addr, more: &[&str]) -> Daemon {
    need("dnsmasq", "dnsmasq-base");
    need("dig", "bind9-dnsutils");
    let pid_file = lab.tmp().join(format!("dnsmasq-{}.pid", tag(addr)));
    let big = (0..BIG_TXT_STRINGS).map(big_txt_string).collect::<Vec<_>>().join(",");
    let mut args: Vec<String> = more.iter().map(ToString::to_string).collect();
    args.extend([
        "--keep-in-foreground".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--conf-file=/dev/null".into(),
        format!("--listen-address={addr}"),
        "--bind-interfaces".into(),
        "--port=53".into(),
        format!("--address=/{DNS_NAME}/{DNS_ANSWER}"),
        format!("--txt-record={BIG_TXT_NAME},{big}"),
        "--edns-packet-max=8192".into(),
        format!("--pid-file={}", pid_file.display()),
        "--user=root".into(),
        "--group=root".into(),
        "--log-facility=-".into(),
        "--log-queries".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(lab, lab.ns_of(addr), &format!("dnsmasq-{}", tag(addr)), "dnsmasq", &args)
}

/// `dig @SERVER -b FROM example.lab +short` (over TCP with `tcp`), from the namespace of
/// `from`, waiting `wait` seconds for the one try.
pub fn dig(lab: &Lab, from: Ipv4Addr, server: Ipv4Addr, tcp: bool, wait: u32) -> Run {
    let mut command = dig_command(lab, from, server, (DNS_NAME, "A"), wait);
    command.arg(if tcp { "+tcp" } else { "+notcp" });
    run(lab, &mut command, Duration::from_secs(u64::from(wait) + 10))
}

/// `dig @SERVER -b FROM NAME A +short`, one try of `wait` seconds, from the namespace of
/// `from`.
pub fn dig_name(lab: &Lab, from: Ipv4Addr, server: Ipv4Addr, name: &str, wait: u32) -> Run {
    let mut command = dig_command(lab, from, server, (name, "A"), wait);
    run(lab, &mut command, Duration::from_secs(u64::from(wait) + 10))
}

/// `dig @SERVER -b FROM NAME TYPE +short`, one try of `wait` seconds, from the namespace of
/// `from`.
fn dig_command(
    lab: &Lab,
    from: Ipv4Addr,
    server: Ipv4Addr,
    (name, kind): (&str, &str),
    wait: u32,
) -> Command {
    let mut command = in_ns(lab.ns_of(from), "dig");
    command
        .arg(format!("@{server}"))
        .args(["-4", "-b"])
        .arg(from.to_string())
        .args([name, kind, "+short", "+tries=1"])
        .arg(format!("+time={wait}"));
    command
}

/// `dig @SERVER -b FROM big.example.lab TXT +short +notcp +ignore +bufsize=8192`: the
/// large answer over UDP alone (`+ignore`: no retry over TCP were it cut short), from the
/// namespace of `from`, waiting `wait` seconds for the one try.
pub fn dig_big_txt(lab: &Lab, from: Ipv4Addr, server: Ipv4Addr, wait: u32) -> Run {
    let mut command = dig_command(lab, from, server, (BIG_TXT_NAME, "TXT"), wait);
    command.args(["+notcp", "+ignore", "+bufsize=8192"]);
    run(lab, &mut command, Duration::from_secs(u64::from(wait) + 10))
}

/// dig printed every string of the large answer.
pub fn answered_big(run: &Run) -> bool {
    run.ok() && (0..BIG_TXT_STRINGS).all(|i| run.stdout.contains(&big_txt_string(i)))
}

/// dig printed the answer.
pub fn answered(run: &Run) -> bool {
    run.ok() && run.stdout.lines().any(|l| l.trim() == DNS_ANSWER)
}

// ---------------------------------------------------------------------------------------
// NTP

/// chronyd serving NTP on `addr`:123 in the namespace that owns it: `local stratum 8`
/// (it serves without a source of its own), `-x` (it never touches the clock), `-d`
/// (foreground, log on stderr), no command sockets, its files in the lab's directory.
pub fn chronyd_server(lab: &Lab, addr: Ipv4Addr) -> Daemon {
    need("chronyd", "chrony");
    let name = format!("chronyd-{}", tag(addr));
    let conf = lab.tmp().join(format!("{name}.conf"));
    fs::write(
        &conf,
        format!(
            "allow\n\
             local stratum 8\n\
             bindaddress {addr}\n\
             port 123\n\
             cmdport 0\n\
             bindcmdaddress /\n\
             driftfile {tmp}/{name}.drift\n\
             pidfile {tmp}/{name}.pid\n",
            tmp = lab.tmp().display(),
        ),
    )
    .expect("writing chronyd's configuration");
    Daemon::start(
        lab,
        lab.ns_of(addr),
        &name,
        "chronyd",
        &["-4", "-d", "-x", "-u", "root", "-f", path_str(&conf)],
    )
}

static NTP_QUERIES: AtomicU32 = AtomicU32::new(0);

/// One NTP query from `from` to `server`: `chronyd -Q` (print the offset, set nothing)
/// with `server SERVER iburst maxsamples 1`, giving up after `timeout` seconds. It exits
/// 0 once it has its sample and says "System clock wrong by …".
pub fn ntp_query(lab: &Lab, from: Ipv4Addr, server: Ipv4Addr, timeout: u32) -> Run {
    let n = NTP_QUERIES.fetch_add(1, Ordering::Relaxed);
    let name = format!("ntp-query-{n}");
    let conf = lab.tmp().join(format!("{name}.conf"));
    fs::write(
        &conf,
        format!(
            "server {server} iburst maxsamples 1\n\
             bindacqaddress {from}\n\
             port 0\n\
             cmdport 0\n\
             bindcmdaddress /\n\
             pidfile {tmp}/{name}.pid\n",
            tmp = lab.tmp().display(),
        ),
    )
    .expect("writing the query's configuration");
    let mut command = in_ns(lab.ns_of(from), "chronyd");
    command.args(["-4", "-Q", "-u", "root", "-f", path_str(&conf), "-t"]).arg(timeout.to_string());
    run(lab, &mut command, Duration::from_secs(u64::from(timeout) + 10))
}

/// chronyd -Q got its sample.
pub fn synced(run: &Run) -> bool {
    run.ok() && format!("{}{}", run.stdout, run.stderr).contains("System clock wrong by")
}

// ---------------------------------------------------------------------------------------
// HTTP

/// `python3 -m http.server` on `addr` in the namespace that owns it, serving an
/// index.html that names it; returns the daemon and that page's text. Waits until it
/// accepts.
pub fn http_server(lab: &Lab, addr: SocketAddrV4) -> (Daemon, String) {
    need(PYTHON, "python3");
    need("curl", "curl");
    let name = format!("http-{}", tag(addr));
    let root = lab.tmp().join(format!("{name}-www"));
    fs::create_dir_all(&root).expect("mkdir the web root");
    let page = format!("served by {addr}");
    fs::write(root.join("index.html"), format!("{page}\n")).expect("writing index.html");
    let daemon = Daemon::start(
        lab,
        lab.ns_of(*addr.ip()),
        &name,
        PYTHON,
        &[
            "-m",
            "http.server",
            "--bind",
            &addr.ip().to_string(),
            "--directory",
            path_str(&root),
            &addr.port().to_string(),
        ],
    );
    daemon.wait_tcp(lab, addr);
    (daemon, page)
}

/// `curl -sSf -m MAX --interface FROM http://ADDR:PORT/` from the namespace of `from`.
pub fn curl(lab: &Lab, from: Ipv4Addr, to: SocketAddrV4, max_seconds: u32) -> Run {
    let mut command = in_ns(lab.ns_of(from), "curl");
    command
        .args(["-sS", "-f", "--noproxy", "*", "-m"])
        .arg(max_seconds.to_string())
        .arg("--interface")
        .arg(from.to_string())
        .arg(format!("http://{to}/"));
    run(lab, &mut command, Duration::from_secs(u64::from(max_seconds) + 10))
}

/// curl's exit code for "operation timed out".
pub const CURL_TIMED_OUT: i32 = 28;

// ---------------------------------------------------------------------------------------
// SMTP

/// python3's `smtpd` DebuggingServer on `addr` (in the namespace that owns it): it
/// accepts every message and prints it, with an `X-Peer:` header naming the client, to
/// its log. Waits until it accepts.
pub fn smtp_server(lab: &Lab, addr: SocketAddrV4) -> Daemon {
    need(PYTHON, "python3");
    let daemon = Daemon::start(
        lab,
        lab.ns_of(*addr.ip()),
        &format!("smtpd-{}", tag(addr)),
        PYTHON,
        &[
            "-u",
            "-W",
            "ignore::DeprecationWarning",
            "-m",
            "smtpd",
            "-n",
            "-c",
            "DebuggingServer",
            &addr.to_string(),
        ],
    );
    daemon.wait_tcp(lab, addr);
    daemon
}

const SEND_MAIL: &str = r#"
import smtplib, sys
source, host, port, subject, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
with smtplib.SMTP(host, port, timeout=timeout, source_address=(source, 0)) as smtp:
    smtp.ehlo("client.example.lab")
    refused = smtp.sendmail("alerts@example.lab", ["root@example.lab"],
                            f"From: alerts@example.lab\r\nTo: root@example.lab\r\nSubject: {subject}\r\n\r\nfrom {source}\r\n")
    assert not refused, refused
print("sent")
"#;

/// Delivers a message with `subject` from `from` (the client socket bound to it) to the
/// SMTP server at `to`, with python3's smtplib; every step waits at most `timeout` s.
pub fn send_mail(lab: &Lab, from: Ipv4Addr, to: SocketAddrV4, subject: &str, timeout: u32) -> Run {
    let mut command = in_ns(lab.ns_of(from), PYTHON);
    command
        .args(["-c", SEND_MAIL])
        .arg(from.to_string())
        .arg(to.ip().to_string())
        .arg(to.port().to_string())
        .arg(subject)
        .arg(timeout.to_string());
    run(lab, &mut command, Duration::from_secs(u64::from(timeout) * 3 + 10))
}

/// The SMTP server printed a message with `subject` from `peer`.
pub fn delivered(server: &Daemon, peer: Ipv4Addr, subject: &str) -> bool {
    let log = server.log_text();
    // DebuggingServer prints each message between these lines, one header a line.
    log.split("---------- MESSAGE FOLLOWS ----------").skip(1).any(|message| {
        message.contains(&format!("Subject: {subject}'")) && message.contains(&format!("X-Peer: {peer}'"))
    })
}

// ---------------------------------------------------------------------------------------
// nmap

/// `nmap -e c0 -S FROM -Pn -n --max-retries 1 -p PORTS -sX TARGET -oG -` from the client
/// namespace (`scan` is the letter after -s: S, N, F, X…), and each port's state as nmap
/// put it in its greppable output: "open", "closed", "filtered", "open|filtered".
pub fn nmap(lab: &Lab, from: Ipv4Addr, target: Ipv4Addr, ports: &[u16], scan: char) -> BTreeMap<u16, String> {
    need("nmap", "nmap");
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mut command = in_ns(lab.ns_of(from), "nmap");
    command
        .args(["-e", CLIENT_IF, "-S"])
        .arg(from.to_string())
        .args(["-Pn", "-n", "--max-retries", "1", "-p"])
        .arg(list.join(","))
        .arg(format!("-s{scan}"))
        .args(["-oG", "-"])
        .arg(target.to_string());
    let done = run(lab, &mut command, Duration::from_secs(60));
    assert!(done.ok(), "nmap: {}", done.describe());
    let states = parse_grepable(&done.stdout);
    assert_eq!(
        states.keys().copied().collect::<Vec<_>>(),
        {
            let mut sorted = ports.to_vec();
            sorted.sort_unstable();
            sorted
        },
        "nmap reported other ports than asked: {}",
        done.describe()
    );
    states
}

/// The `Ports:` field of nmap's `-oG` output: `22/filtered/tcp//ssh///, 80/open/…`.
pub fn parse_grepable(text: &str) -> BTreeMap<u16, String> {
    let mut states = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("Host:")) {
        let Some((_, ports)) = line.split_once("Ports: ") else { continue };
        // Further fields follow a tab ("Ignored State: …").
        let ports = ports.split('\t').next().unwrap_or("");
        for entry in ports.split(", ") {
            let mut fields = entry.trim().split('/');
            let (Some(port), Some(state)) = (fields.next(), fields.next()) else { continue };
            if let Ok(port) = port.parse() {
                states.insert(port, state.to_owned());
            }
        }
    }
    states
}

// ---------------------------------------------------------------------------------------
// Packets no socket sends: scapy

const PROBE_SCRIPT: &str = r#"
import json, logging, sys
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import IP, TCP, conf, sr
conf.verb = 0
iface, dst, port, count, sport, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
probes = []
for spec in sys.argv[7:]:
    src, flags = spec.split(":")
    for _ in range(count):
        probes.append(IP(src=src, dst=dst) / TCP(sport=sport + len(probes), dport=port, flags=flags, seq=1000 + len(probes)))
answered, _ = sr(probes, timeout=wait, iface=iface)
answers = {}
for sent, got in answered:
    answers.setdefault(f"{sent[IP].src}:{sent[TCP].flags}", []).append(str(got[TCP].flags) if TCP in got else got.summary())
print(json.dumps({"sent": len(probes), "answers": answers}))
"#;

/// Sends, from the client namespace on its veth, `count` TCP segments to `dst:port` for
/// each `(source, flags)` (scapy's flag letters: "S", "SF"…), source ports from
/// `sport` up, and waits `wait` for answers. Returns, for each `"source:flags"` that got
/// any, the flags of what came back (a SYN-ACK is "SA").
pub fn tcp_probes(
    lab: &Lab,
    dst: Ipv4Addr,
    port: u16,
    count: u32,
    sport: u16,
    wait: Duration,
    probes: &[(Ipv4Addr, &str)],
) -> BTreeMap<String, Vec<String>> {
    need("/usr/lib/python3/dist-packages/scapy/__init__.py", "python3-scapy");
    let mut command = in_ns(&lab.client, PYTHON);
    command
        .args(["-c", PROBE_SCRIPT, CLIENT_IF])
        .arg(dst.to_string())
        .arg(port.to_string())
        .arg(count.to_string())
        .arg(sport.to_string())
        .arg(wait.as_secs_f64().to_string())
        .args(probes.iter().map(|(src, flags)| format!("{src}:{flags}")));
    let done = run(lab, &mut command, wait + Duration::from_secs(40));
    assert!(done.ok(), "scapy: {}", done.describe());
    let line = done.stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("scapy's report is not JSON ({e}): {}", done.describe()));
    assert_eq!(report["sent"].as_u64(), Some(u64::from(count) * probes.len() as u64), "{}", done.describe());
    report["answers"]
        .as_object()
        .expect("answers is an object")
        .iter()
        .map(|(k, v)| {
            let flags = v.as_array().expect("a list").iter().map(|f| f.as_str().unwrap_or("?").to_owned());
            (k.clone(), flags.collect())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Counters

/// Packets on the line of `chain` named `name` whose source is `source` (the anti-spoof
/// lines share a name and differ by their prefix).
pub fn line_packets(listing: &Listing, chain: &str, name: &str, source: &str) -> u64 {
    let rules = listing.chain(chain)["rules"].as_array().expect("rules is a list");
    let line =
        rules.iter().find(|line| line["name"] == name && line["source"] == source).unwrap_or_else(|| {
            panic!("no line {name:?} with source {source} in {chain}:\n{:#}", listing.chain(chain))
        });
    line["packets"].as_u64().expect("packets is a number")
}

/// How many packets a rule's lines in `chain` counted between two listings.
pub fn moved(before: &Listing, after: &Listing, chain: &str, rule: &str) -> u64 {
    after.packets(chain, rule) - before.packets(chain, rule)
}

/// How many packets a chain's policy dropped between two listings.
pub fn dropped(before: &Listing, after: &Listing, chain: &str) -> u64 {
    after.policy(chain) - before.policy(chain)
}

// ---------------------------------------------------------------------------------------
// DHCP

/// The DHCP server's address on `c0`: a private one, as a cloud's often is, which the
/// anti-spoof sources name.
pub const DHCP_SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The renewal time (T1, DHCP option 58) the server gives, in seconds: dnsmasq's shortest
/// lease is two minutes, but a client renews at T1.
pub const DHCP_RENEWAL_SECS: u32 = 3;

/// dnsmasq as a DHCP server alone (no DNS) on `c0` in the client namespace, at
/// [`DHCP_SERVER`]/24 (added here), leasing 10.99.0.100 to .150 for two minutes, to be
/// renewed after [`DHCP_RENEWAL_SECS`]; returned once it serves.
pub fn dhcp_server(lab: &Lab) -> Daemon {
    dhcp_server_on(lab, CLIENT_IF, DHCP_SERVER, "10.99.0.100,10.99.0.150")
}

/// dnsmasq as a DHCP server alone on `iface` in the client namespace, at `server`/24
/// (added here), leasing `range` (`FIRST,LAST`) for two minutes, to be renewed after
/// [`DHCP_RENEWAL_SECS`]; returned once it serves.
pub fn dhcp_server_on(lab: &Lab, iface: &str, server: Ipv4Addr, range: &str) -> Daemon {
    need("dnsmasq", "dnsmasq-base");
    let cidr = format!("{server}/24");
    crate::lab::sh(Command::new("ip").args(["-n", &lab.client, "addr", "add", &cidr, "dev", iface]));
    crate::lab::sh(Command::new("ip").args(["-n", &lab.client, "link", "set", iface, "up"]));
    let leases = lab.tmp().join(format!("dnsmasq-dhcp-{iface}.leases"));
    let pid_file = lab.tmp().join(format!("dnsmasq-dhcp-{iface}.pid"));
    let daemon = Daemon::start(
        lab,
        &lab.client,
        &format!("dnsmasq-dhcp-{iface}"),
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--port=0",
            &format!("--interface={iface}"),
            "--bind-interfaces",
            &format!("--dhcp-range={range},255.255.255.0,2m"),
            &format!("--dhcp-option=option:T1,{DHCP_RENEWAL_SECS}"),
            "--dhcp-option=option:T2,100",
            "--dhcp-authoritative",
            &format!("--dhcp-leasefile={}", path_str(&leases)),
            &format!("--pid-file={}", path_str(&pid_file)),
            "--user=root",
            "--group=root",
            "--log-facility=-",
            "--log-dhcp",
        ],
    );
    daemon.wait_ready("serving DHCP", || daemon.log_text().contains("DHCP, IP range"));
    daemon
}

/// ISC dhclient on `s0` in the server namespace: the command, and the file where its
/// script writes one line per event (`BOUND 10.99.0.120`, `RENEW 10.99.0.120`, `FAIL`).
/// The script only sets the address: Debian's would rewrite the host's resolv.conf. It
/// gives up after `timeout` seconds without a lease.
fn dhclient_command(lab: &Lab, tag: &str, timeout: u32, once: bool) -> (Command, PathBuf) {
    need("dhclient", "isc-dhcp-client");
    let dir = lab.tmp();
    let events = dir.join(format!("dhclient-{tag}.events"));
    let script = dir.join(format!("dhclient-{tag}.sh"));
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason $new_ip_address\" >> {}\ncase \"$reason\" in\n  \
             BOUND|RENEW|REBIND|REBOOT) ip addr replace \"$new_ip_address/$new_subnet_mask\" dev \"$interface\" ;;\n\
             esac\nexit 0\n",
            path_str(&events)
        ),
    )
    .expect("writing dhclient's script");
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let conf = dir.join(format!("dhclient-{tag}.conf"));
    fs::write(
        &conf,
        format!(
            "timeout {timeout};\nretry 1;\ninitial-interval 1;\n\
             request subnet-mask, dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time;\n"
        ),
    )
    .expect("writing dhclient.conf");
    let mut command = in_ns(&lab.server, "dhclient");
    command.args(["-4", "-d", "-v"]);
    if once {
        command.arg("-1");
    }
    for (flag, path) in [
        ("-cf", conf),
        ("-sf", script),
        ("-lf", dir.join(format!("dhclient-{tag}.leases"))),
        ("-pf", dir.join(format!("dhclient-{tag}.pid"))),
    ] {
        command.arg(flag).arg(path);
    }
    command.arg(crate::lab::SERVER_IF);
    (command, events)
}

/// A dhclient that keeps its lease and renews it, until the lab ends or [`Dhclient::stop`].
pub struct Dhclient {
    pub pid: u32,
    pub events: PathBuf,
    pub log: PathBuf,
}

/// Starts [`Dhclient`] (its output in `<tmp>/dhclient-TAG.log`).
pub fn dhclient(lab: &Lab, tag: &str) -> Dhclient {
    let (mut command, events) = dhclient_command(lab, tag, 30, false);
    let log = lab.tmp().join(format!("dhclient-{tag}.log"));
    let file = fs::File::create(&log).expect("creating dhclient's log");
    command.stdin(Stdio::null()).stdout(file.try_clone().expect("dup a log file")).stderr(file);
    Dhclient { pid: lab.spawn(&mut command), events, log }
}

/// dhclient trying once for a lease, for `timeout` seconds: its run, and its events.
pub fn dhclient_once(lab: &Lab, tag: &str, timeout: u32) -> (Run, Vec<String>) {
    let (mut command, events) = dhclient_command(lab, tag, timeout, true);
    let run = run(lab, &mut command, Duration::from_secs(u64::from(timeout) + 10));
    (run, dhcp_events(&events))
}

fn dhcp_events(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

impl Dhclient {
    pub fn events(&self) -> Vec<String> {
        dhcp_events(&self.events)
    }

    /// Waits for an event that starts with `reason` (`BOUND`, `RENEW`), and returns it;
    /// panics with the client's log after `within`.
    pub fn wait_for(&self, reason: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(event) = self.events().into_iter().find(|e| e.split(' ').next() == Some(reason)) {
                return event;
            }
            if started.elapsed() > within {
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                panic!("dhclient: no {reason} after {within:?}; events {:?}; its log:\n{log}", self.events());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends it (SIGTERM: no release is sent) and waits for it.
    pub fn stop(self, lab: &Lab) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid).expect("a pid")),
            nix::sys::signal::Signal::SIGTERM,
        );
        lab.wait(self.pid);
    }
}
