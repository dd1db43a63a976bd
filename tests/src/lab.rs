//! The lab: two network namespaces joined by a veth pair, the `firewall` binary attached
//! to the server's end, real sockets on both.
//!
//! ```text
//!   server namespace                         client namespace ("the world")
//!   s0 198.51.100.1/32          veth         c0 every peer of examples/tight.toml,
//!   routes 203.0.113.0/24,    <------>          plus the strangers 203.0.113.99 and
//!          198.51.100.0/24 dev s0                198.51.100.99; route 198.51.100.1 dev c0
//! ```
//!
//! [`Lab`] is its own cleanup guard: dropping it (a panic included) stops the servers
//! it started, kills the children it spawned, removes whatever the firewall pinned for
//! the server namespace and deletes both namespaces, which destroys the veth pair and
//! with it every attachment.
//!
//! Sockets belong to the network namespace of the thread that creates them, so every
//! socket here is made on a short-lived thread that first joins the namespace
//! ([`Lab::run_in`]); once made, it may be used from any thread.
use std::{
    fs,
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd as _, unix::fs::PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sched::{CloneFlags, setns},
    sys::{
        socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, connect, setsockopt, socket,
            sockopt,
        },
        time::TimeVal,
    },
};
use serde_json::Value;

/// The host's address in the policy (OURIP), on `s0` in the server namespace.
pub const HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Addresses no rule of examples/tight.toml names, on `c0` in the client namespace.
pub const STRANGER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 99);
pub const STRANGER2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// The interfaces of the veth pair.
pub const SERVER_IF: &str = "s0";
pub const CLIENT_IF: &str = "c0";

/// How long a probe waits before it calls a destination blocked.
pub const BLOCKED_AFTER: Duration = Duration::from_secs(1);
/// How long a probe that should succeed may take (it returns as soon as it does).
pub const OPEN_WITHIN: Duration = Duration::from_secs(5);

static LABS: AtomicU32 = AtomicU32::new(0);

/// The `firewall` binary: `$FIREWALL_BIN`, else `target/<profile>/firewall`: the
/// grandparent of a test binary (`target/<profile>/deps/<test>`), or the directory of a
/// binary of this crate (`target/<profile>/demo`).
pub fn firewall_bin() -> PathBuf {
    let path = match std::env::var_os("FIREWALL_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().expect("the test binary's path");
            let dir = exe.parent().expect("a binary lives in a directory");
            let beside = dir.join("firewall");
            match dir.parent() {
                Some(profile) if dir.file_name().is_some_and(|n| n == "deps") || !beside.is_file() => {
                    profile.join("firewall")
                }
                _ => beside,
            }
        }
    };
    if !path.is_file() {
        panic!("no firewall binary at {}: build it first: cargo build --release", path.display());
    }
    path
}

/// Runs a command to completion and panics, with its output, unless it succeeds.
pub fn sh(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

fn ip(args: &[&str]) -> Output {
    sh(Command::new("ip").args(args))
}

/// A temporary directory, 0755 so that an unprivileged user can read what is in it,
/// removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static DIRS: AtomicU32 = AtomicU32::new(0);
        let n = DIRS.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("fwtest-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the temp dir");
        TempDir { path }
    }

    /// Writes `name` (mode 0644) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// What a probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Connected (TCP) and the server echoed our bytes back.
    Open,
    /// No answer at all before the timeout: the packets were dropped.
    Blocked,
    /// A RST or an ICMP unreachable: nobody listening, or a REJECT (iptables answers
    /// with port, host or net unreachable, or prohibited).
    Refused,
    /// TCP connected but the echo never came back.
    Stalled,
}

/// `examples/tight.toml`, as written.
pub fn tight_text() -> String {
    let path = crate::workspace().join("examples/tight.toml");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every single address (no prefix) a policy names as a peer, sorted, once each.
pub fn single_peers(policy: &firewall_user::policy::Policy) -> Vec<IpAddr> {
    let mut peers: Vec<IpAddr> = policy
        .rules
        .iter()
        .flat_map(|rule| rule.peers.iter())
        .filter(|p| p.len == if p.addr.is_ipv4() { 32 } else { 128 })
        .map(|p| p.addr)
        .collect();
    peers.sort();
    peers.dedup();
    peers
}

/// Every single address examples/tight.toml names as a peer, except the host's own.
pub fn tight_peers() -> Vec<Ipv4Addr> {
    let policy = firewall_user::policy::parse(&tight_text(), Path::new("examples/tight.toml"))
        .unwrap_or_else(|e| panic!("examples/tight.toml: {e}"));
    single_peers(&policy)
        .into_iter()
        .filter_map(|p| match p {
            IpAddr::V4(addr) if addr != policy.address => Some(addr),
            _ => None,
        })
        .collect()
}

/// Two namespaces, a veth pair, and everything started in them; all of it goes on drop.
pub struct Lab {
    /// The server namespace: `s0` with [`HOST`], where the firewall runs.
    pub server: String,
    /// The client namespace: `c0` with every peer and the strangers.
    pub client: String,
    /// The addresses on `c0`.
    pub client_addrs: Vec<Ipv4Addr>,
    /// Its IPv6 addresses, in a dual-stack lab ([`Lab::dual_stack`]).
    pub client_addrs6: Vec<Ipv6Addr>,
    /// The addresses on `s0` beside [`HOST`] and [`HOST6`] ([`Lab::add_server_address`]).
    server_addrs: Mutex<Vec<IpAddr>>,
    tmp: TempDir,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    children: Mutex<Vec<Child>>,
}

impl Lab {
    /// Builds the lab; `tag` names its temporary directory, for whoever finds it.
    pub fn new(tag: &str) -> Lab {
        crate::require_root();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let server = format!("fw{pid}-{n}s");
        let client = format!("fw{pid}-{n}c");
        let mut client_addrs = tight_peers();
        client_addrs.extend([STRANGER, STRANGER2]);
        // A namespace by this name can only be left over by a dead process with our pid.
        for ns in [&server, &client] {
            if Path::new("/run/netns").join(ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
        // The guard exists before the first namespace does: a failure below cleans up.
        let lab = Lab {
            server,
            client,
            client_addrs,
            client_addrs6: Vec::new(),
            server_addrs: Mutex::new(Vec::new()),
            tmp: TempDir::new(tag),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        };
        let (s, c) = (lab.server.as_str(), lab.client.as_str());
        ip(&["netns", "add", s]);
        ip(&["netns", "add", c]);
        ip(&["link", "add", SERVER_IF, "netns", s, "type", "veth", "peer", "name", CLIENT_IF, "netns", c]);
        ip(&["-n", s, "link", "set", "lo", "up"]);
        ip(&["-n", c, "link", "set", "lo", "up"]);
        ip(&["-n", s, "addr", "add", &format!("{HOST}/32"), "dev", SERVER_IF]);
        ip(&["-n", s, "link", "set", SERVER_IF, "up"]);
        ip(&["-n", s, "route", "add", "203.0.113.0/24", "dev", SERVER_IF]);
        ip(&["-n", s, "route", "add", "198.51.100.0/24", "dev", SERVER_IF]);
        let mut batch = String::new();
        for addr in &lab.client_addrs {
            batch.push_str(&format!("addr add {addr}/32 dev {CLIENT_IF}\n"));
        }
        batch.push_str(&format!("link set {CLIENT_IF} up\nroute add {HOST}/32 dev {CLIENT_IF}\n"));
        let batch_file = lab.tmp.write("client.ip", &batch);
        ip(&["-n", c, "-batch", batch_file.to_str().expect("utf-8 path")]);
        // Until the kernel's linkwatch has run (it batches, up to a second apart when
        // many links change at once, as parallel labs do), a new veth drops what it is
        // given: wait for both ends to be operationally up.
        lab.wait_up(s, SERVER_IF);
        lab.wait_up(c, CLIENT_IF);
        lab
    }

    #[expect(clippy::unused_self, reason = "a step of the lab's setup, a method as the others are")]
    fn wait_up(&self, ns: &str, iface: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = ip(&["-n", ns, "-o", "link", "show", "dev", iface]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains(" state UP ") {
                return;
            }
            if Instant::now() > deadline {
                panic!("{iface} in {ns} is not up after 10 s: {text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The namespace that owns `addr`.
    pub fn ns_of(&self, addr: impl Into<IpAddr>) -> &str {
        match addr.into() {
            IpAddr::V4(HOST) | IpAddr::V6(HOST6) => &self.server,
            addr if self.server_addrs.lock().unwrap_or_else(|e| e.into_inner()).contains(&addr) => {
                &self.server
            }
            IpAddr::V4(addr) if self.client_addrs.contains(&addr) => &self.client,
            IpAddr::V6(addr) if self.client_addrs6.contains(&addr) => &self.client,
            addr => panic!("{addr} is not a lab address"),
        }
    }

    /// Adds `addr` to `s0` beside [`HOST`] (a secondary address, a floating IP), and a
    /// route to it on `c0`.
    pub fn add_server_address(&self, addr: impl Into<IpAddr>) {
        let addr = addr.into();
        let (len, nodad) = if addr.is_ipv4() { (32, None) } else { (128, Some("nodad")) };
        let with_len = format!("{addr}/{len}");
        let mut args = vec!["-n", self.server.as_str(), "addr", "add", with_len.as_str(), "dev", SERVER_IF];
        args.extend(nodad);
        ip(&args);
        ip(&["-n", &self.client, "route", "add", &with_len, "dev", CLIENT_IF]);
        self.server_addrs.lock().unwrap_or_else(|e| e.into_inner()).push(addr);
    }

    /// Runs `f` on a thread that has joined network namespace `ns`, and returns its
    /// result (a panic in `f` is this caller's panic).
    pub fn run_in<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        run_in(ns, f)
    }

    /// The temporary directory of this lab.
    pub fn tmp(&self) -> &Path {
        &self.tmp.path
    }

    /// examples/tight.toml with `interface = "s0"`, written to a file of this lab.
    pub fn policy_file(&self) -> PathBuf {
        let text = tight_text();
        let wanted = "interface = \"eth0\"";
        assert!(text.contains(wanted), "examples/tight.toml no longer says {wanted}");
        self.tmp.write("tight.toml", &text.replacen(wanted, &format!("interface = \"{SERVER_IF}\""), 1))
    }

    /// The lab's tight policy with `extra` (more rules, say) after it, written to `name` in
    /// the lab's directory.
    pub fn tight_with(&self, name: &str, extra: &str) -> PathBuf {
        let text = fs::read_to_string(self.policy_file()).expect("the lab's policy") + extra;
        self.tmp.write(name, &text)
    }

    /// A command that runs `program` in the server's network namespace (and only that:
    /// the mount namespace, and so bpffs, stays the host's).
    pub fn server_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{}", self.server)).arg(program);
        command
    }

    /// `firewall ARGS…` in the server namespace.
    pub fn firewall(&self, args: &[&str]) -> Output {
        let mut command = self.server_command(firewall_bin());
        command.args(args);
        command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"))
    }

    /// `firewall ARGS…`, which must succeed; its stdout.
    pub fn firewall_ok(&self, args: &[&str]) -> String {
        let output = self.firewall(args);
        assert!(
            output.status.success(),
            "firewall {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    /// `firewall up --policy <tight, on s0> --iface s0`, which must succeed.
    pub fn up(&self) -> String {
        self.up_with(&self.policy_file())
    }

    /// `firewall up --policy POLICY --iface s0`, which must succeed.
    pub fn up_with(&self, policy: &Path) -> String {
        self.firewall_ok(&["up", "--policy", policy.to_str().expect("utf-8"), "--iface", SERVER_IF])
    }

    /// `firewall list --json`.
    pub fn list(&self) -> Listing {
        let out = self.firewall_ok(&["list", "--json", "--iface", SERVER_IF]);
        Listing(
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("list --json is not JSON ({e}):\n{out}")),
        )
    }

    /// Where the firewall pins for this lab's server namespace, and keeps its state.
    pub fn pin_root(&self) -> PathBuf {
        Path::new(firewall_user::kernel::pins::PIN_ROOT).join(format!("netns-{}", self.server))
    }

    pub fn state_root(&self) -> PathBuf {
        Path::new(firewall_user::kernel::pins::STATE_ROOT).join(format!("netns-{}", self.server))
    }

    /// Where the last good policies of this lab's server namespace are kept.
    pub fn last_good_root(&self) -> PathBuf {
        Path::new(firewall_user::kernel::pins::LAST_GOOD_ROOT).join(format!("netns-{}", self.server))
    }

    /// The last good policy of the filter on `s0`.
    pub fn last_good(&self) -> PathBuf {
        self.last_good_root().join(format!("{SERVER_IF}.toml"))
    }

    /// The state directory of the filter on `s0`.
    pub fn state_dir(&self) -> PathBuf {
        self.state_root().join(SERVER_IF)
    }

    /// The pin directory of the filter on `s0`.
    pub fn pin_dir(&self) -> PathBuf {
        self.pin_root().join(SERVER_IF)
    }

    /// The live filter's `Config::flags`, read from the pinned CONFIG map with bpftool
    /// (after the two 16-byte addresses).
    pub fn config_flags(&self) -> u32 {
        let path = self.pin_dir().join(firewall_common::MAP_CONFIG);
        let out = sh(Command::new("bpftool")
            .args(["-j", "map", "lookup", "pinned"])
            .arg(&path)
            .args(["key", "0", "0", "0", "0"]));
        let json: Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
        let byte = |i: usize| {
            let text = json["value"][i].as_str().expect("a hex byte");
            u8::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex")
        };
        u32::from_le_bytes([byte(32), byte(33), byte(34), byte(35)])
    }

    /// Spawns `command` as a child that dies with the lab at the latest.
    pub fn spawn(&self, command: &mut Command) -> u32 {
        let child = command.spawn().unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        let pid = child.id();
        self.children.lock().unwrap_or_else(|e| e.into_inner()).push(child);
        pid
    }

    /// Waits for a child started by [`Lab::spawn`] and returns its output.
    pub fn wait(&self, pid: u32) -> Output {
        let child = {
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            let at = children.iter().position(|c| c.id() == pid).expect("a child of this lab");
            children.remove(at)
        };
        child.wait_with_output().expect("waiting for a child")
    }

    fn serve(&self, name: String, body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || body(stop))
            .expect("spawning a server thread");
        self.threads.lock().unwrap_or_else(|e| e.into_inner()).push(handle);
    }

    /// A TCP echo server on `addr` (in the namespace that owns it), serving until the lab
    /// is dropped.
    pub fn tcp_echo(&self, addr: impl Into<SocketAddr>) {
        let addr = addr.into();
        let listener = self
            .run_in(self.ns_of(addr.ip()), || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("listening on tcp {addr}: {e}"));
        listener.set_nonblocking(true).expect("nonblocking listener");
        self.serve(format!("tcp-echo {addr}"), move |stop| {
            let mut sessions = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stop = stop.clone();
                        sessions.push(std::thread::spawn(move || echo_session(stream, &stop)));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept on {addr}: {e}"),
                }
            }
            for session in sessions {
                let _ = session.join();
            }
        });
    }

    /// A UDP echo server on `addr`, serving until the lab is dropped.
    pub fn udp_echo(&self, addr: impl Into<SocketAddr>) {
        let addr = addr.into();
        let socket = self
            .run_in(self.ns_of(addr.ip()), || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("binding udp {addr}: {e}"));
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
        self.serve(format!("udp-echo {addr}"), move |stop| {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let _ = socket.send_to(&buf[..n], from);
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    // An ICMP error for an earlier answer; keep serving.
                    Err(_) => {}
                }
            }
        });
    }

    /// A session from `from` to the echo server at `to`, opened and checked, for a test to
    /// hold across a change (see [`still_alive`]).
    pub fn held_session(&self, from: Ipv4Addr, to: SocketAddrV4) -> TcpStream {
        let mut stream = self
            .tcp_connect(from, to, OPEN_WITHIN)
            .unwrap_or_else(|o| panic!("connect {from} -> {to}: {o:?}"));
        echo(&mut stream, b"hello\n", OPEN_WITHIN).expect("the session echoes");
        stream
    }

    /// A TCP connection from `from` (bound to it, in its namespace) to `to`, or the
    /// outcome that prevented it.
    pub fn tcp_connect(
        &self,
        from: impl Into<IpAddr>,
        to: impl Into<SocketAddr>,
        timeout: Duration,
    ) -> Result<TcpStream, Outcome> {
        let (from, to) = (from.into(), to.into());
        self.run_in(self.ns_of(from), || tcp_connect(from, to, timeout))
    }

    /// Connects from `from` to the echo server at `to`, sends a line and waits for it to
    /// come back, all within `timeout`.
    pub fn tcp_probe(
        &self,
        from: impl Into<IpAddr>,
        to: impl Into<SocketAddr>,
        timeout: Duration,
    ) -> Outcome {
        let (from, to) = (from.into(), to.into());
        let started = Instant::now();
        let mut stream = match self.tcp_connect(from, to, timeout) {
            Ok(stream) => stream,
            Err(outcome) => return outcome,
        };
        let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        let token = format!("hello {from} -> {to}\n");
        if echo(&mut stream, token.as_bytes(), left).is_ok() { Outcome::Open } else { Outcome::Stalled }
    }

    /// Sends a datagram from `from` to the echo server at `to` and waits for it to come
    /// back.
    pub fn udp_probe(
        &self,
        from: impl Into<IpAddr>,
        to: impl Into<SocketAddr>,
        timeout: Duration,
    ) -> Outcome {
        let (from, to) = (from.into(), to.into());
        match self.udp_exchange(from, to, timeout) {
            Ok(outcome) => outcome,
            // What a netfilter OUTPUT drop tells the sender.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Outcome::Blocked,
            Err(e) => panic!("udp send {from} -> {to}: {e}"),
        }
    }

    /// [`Lab::udp_probe`], with the send's own error, if it failed, for the caller.
    pub fn udp_exchange(
        &self,
        from: impl Into<IpAddr>,
        to: impl Into<SocketAddr>,
        timeout: Duration,
    ) -> io::Result<Outcome> {
        let (from, to) = (from.into(), to.into());
        let socket = self
            .run_in(self.ns_of(from), || UdpSocket::bind(SocketAddr::new(from, 0)))
            .unwrap_or_else(|e| panic!("binding udp {from}: {e}"));
        socket.connect(to).unwrap_or_else(|e| panic!("udp connect {from} -> {to}: {e}"));
        let token = format!("hello {from} -> {to}");
        socket.send(token.as_bytes())?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Outcome::Blocked);
            }
            socket.set_read_timeout(Some(left)).expect("read timeout");
            match socket.recv(&mut buf) {
                Ok(n) if &buf[..n] == token.as_bytes() => return Ok(Outcome::Open),
                Ok(_) => {}
                Err(e) if rejected(&e) => return Ok(Outcome::Refused),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(Outcome::Blocked);
                }
                Err(e) => panic!("udp recv {from} -> {to}: {e}"),
            }
        }
    }

    /// The MAC address of `iface` in namespace `ns`.
    pub fn mac(&self, ns: &str, iface: &str) -> [u8; 6] {
        let out = ip(&["-n", ns, "-j", "link", "show", "dev", iface]);
        let json: Value = serde_json::from_slice(&out.stdout).expect("ip -j link's JSON");
        let text = json[0]["address"].as_str().unwrap_or_else(|| panic!("no address for {iface} in {ns}"));
        let bytes: Vec<u8> =
            text.split(':').map(|b| u8::from_str_radix(b, 16).expect("a MAC address in hex")).collect();
        bytes.try_into().unwrap_or_else(|_| panic!("{text} is not a MAC address"))
    }

    /// Sends whole frames (Ethernet header and all) out of `iface` in namespace `ns`
    /// through a packet socket: frames no socket of the IP stack would send, seen by the
    /// other end's XDP program (from `c0`) or by the TC one on the way out (from `s0`; a
    /// frame it drops is sent all the same, as far as the caller is concerned).
    pub fn send_frames(&self, ns: &str, iface: &str, frames: &[Vec<u8>]) {
        let index = self
            .run_in(ns, || nix::net::if_::if_nametoindex(iface))
            .unwrap_or_else(|e| panic!("no interface {iface} in {ns}: {e}"));
        self.run_in(ns, || {
            // SAFETY: plain socket calls on a descriptor this closure owns and closes; the
            // address is a zeroed sockaddr_ll with the fields a send needs.
            unsafe {
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
                assert!(fd >= 0, "a packet socket: {}", io::Error::last_os_error());
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_ifindex = index as i32;
                addr.sll_halen = 6;
                for frame in frames {
                    let sent = libc::sendto(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&raw const addr).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    // ENOBUFS: the TC program dropped it, which a packet socket hears of.
                    let error = io::Error::last_os_error();
                    assert!(
                        sent == frame.len() as isize || error.raw_os_error() == Some(libc::ENOBUFS),
                        "sending a frame: {error}"
                    );
                }
                libc::close(fd);
            }
        });
    }

    /// `ip -d link show s0` in the server namespace.
    pub fn server_link(&self) -> String {
        let out = ip(&["-n", &self.server, "-d", "link", "show", SERVER_IF]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The names of the programs on s0's TCX egress hook.
    /// The ids of the programs on s0: XDP (from `ip -d link show`) and TCX egress.
    pub fn program_ids(&self) -> (u32, Vec<u32>) {
        let link = self.server_link();
        let xdp = link
            .split_whitespace()
            .skip_while(|w| !w.starts_with("prog/xdp"))
            .nth(2)
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no XDP program id on {SERVER_IF}:\n{link}"));
        let tc = self.run_in(&self.server, || {
            let (_, programs) =
                aya::programs::SchedClassifier::query_tcx(SERVER_IF, aya::programs::TcAttachType::Egress)
                    .unwrap_or_else(|e| panic!("querying TCX egress of {SERVER_IF}: {e}"));
            programs.iter().map(|p| p.id()).collect()
        });
        (xdp, tc)
    }

    pub fn tcx_egress(&self) -> Vec<String> {
        self.run_in(&self.server, || {
            let (_, programs) =
                aya::programs::SchedClassifier::query_tcx(SERVER_IF, aya::programs::TcAttachType::Egress)
                    .unwrap_or_else(|e| panic!("querying TCX egress of {SERVER_IF}: {e}"));
            programs.iter().map(|p| p.name_as_str().unwrap_or("?").to_owned()).collect()
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        let children = std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Pins outlive namespaces: bpffs is the host's.
        let _ = fs::remove_dir_all(self.pin_root());
        let _ = fs::remove_dir_all(self.state_root());
        let _ = fs::remove_dir_all(self.last_good_root());
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

/// See [`Lab::run_in`].
pub fn run_in<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            let file = fs::File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
            setns(&file, CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            f()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A TCP connect from `from` to `to` in the calling thread's namespace: the stream, or
/// [`Outcome::Blocked`] when nothing answered within `timeout`, [`Outcome::Refused`] on
/// a RST.
pub fn tcp_connect(
    from: impl Into<IpAddr>,
    to: impl Into<SocketAddr>,
    timeout: Duration,
) -> Result<TcpStream, Outcome> {
    let (from, to) = (from.into(), to.into());
    let family = if from.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
    // A blocking connect gives up after SO_SNDTIMEO with EINPROGRESS.
    let tv = TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros().into());
    setsockopt(&fd, sockopt::SendTimeout, &tv).expect("SO_SNDTIMEO");
    let bound = match (from, to) {
        (IpAddr::V4(from), SocketAddr::V4(to)) => {
            bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(from, 0)))
                .and_then(|()| connect(fd.as_raw_fd(), &SockaddrIn::from(to)))
        }
        (IpAddr::V6(from), SocketAddr::V6(to)) => {
            bind(fd.as_raw_fd(), &SockaddrIn6::from(std::net::SocketAddrV6::new(from, 0, 0, 0)))
                .and_then(|()| connect(fd.as_raw_fd(), &SockaddrIn6::from(to)))
        }
        _ => panic!("tcp connect {from} -> {to}: the families differ"),
    };
    match bound {
        Ok(()) => {
            let stream = TcpStream::from(fd);
            stream.set_write_timeout(None).expect("clear the write timeout");
            Ok(stream)
        }
        Err(Errno::EINPROGRESS | Errno::ETIMEDOUT | Errno::EAGAIN) => Err(Outcome::Blocked),
        Err(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EACCES) => {
            Err(Outcome::Refused)
        }
        Err(e) => panic!("tcp connect {from} -> {to}: {e}"),
    }
}

/// Whether a socket error is the answer of a REJECT or a closed port: ICMP port, host or
/// net unreachable, or administratively prohibited.
pub fn rejected(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EACCES)
    )
}

/// Panics unless a session held by the test still echoes, `when` saying after what.
pub fn still_alive(stream: &mut TcpStream, when: &str) {
    echo(stream, format!("still here {when}\n").as_bytes(), OPEN_WITHIN)
        .unwrap_or_else(|e| panic!("the held session died {when}: {e}"));
}

/// Writes `token` and reads it back within `timeout`.
pub fn echo(stream: &mut TcpStream, token: &[u8], timeout: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(token)?;
    let mut back = vec![0u8; token.len()];
    stream.read_exact(&mut back)?;
    if back != token {
        return Err(io::Error::other(format!(
            "echoed {:?}, sent {:?}",
            String::from_utf8_lossy(&back),
            String::from_utf8_lossy(token)
        )));
    }
    Ok(())
}

fn echo_session(mut stream: TcpStream, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// `firewall list --json`, with lookups.
#[derive(Clone, Debug)]
pub struct Listing(pub Value);

impl Listing {
    /// Packets on every line of every chain, policies included.
    pub fn total_packets(&self) -> u64 {
        self.0["chains"]
            .as_array()
            .expect("chains")
            .iter()
            .flat_map(|c| c["rules"].as_array().expect("rules").iter())
            .map(|line| line["packets"].as_u64().expect("packets"))
            .sum()
    }

    pub fn chain(&self, chain: &str) -> &Value {
        self.0["chains"]
            .as_array()
            .and_then(|chains| chains.iter().find(|c| c["name"] == chain))
            .unwrap_or_else(|| panic!("no chain {chain} in the listing:\n{:#}", self.0))
    }

    /// Packets on the lines of `chain` named `rule` (summed: a rule may have several).
    pub fn packets(&self, chain: &str, rule: &str) -> u64 {
        self.sum(chain, rule, "packets")
    }

    /// Bytes on the lines of `chain` named `rule`, as [`Listing::packets`].
    pub fn bytes(&self, chain: &str, rule: &str) -> u64 {
        self.sum(chain, rule, "bytes")
    }

    fn sum(&self, chain: &str, rule: &str, field: &str) -> u64 {
        let lines: Vec<&Value> = self.chain(chain)["rules"]
            .as_array()
            .expect("rules is a list")
            .iter()
            .filter(|line| line["name"] == rule)
            .collect();
        assert!(!lines.is_empty(), "no line {rule:?} in chain {chain}:\n{:#}", self.chain(chain));
        lines.iter().map(|line| line[field].as_u64().unwrap_or_else(|| panic!("{field} is a number"))).sum()
    }

    /// The chain's policy drops, which the chain's header and its last line both give.
    pub fn policy(&self, chain: &str) -> u64 {
        let header = self.chain(chain)["packets"].as_u64().expect("chain packets");
        let rules = self.chain(chain)["rules"].as_array().expect("rules");
        let last = rules.last().expect("a chain has lines");
        assert_eq!(last["name"], "policy", "the last line of {chain} is its policy");
        assert_eq!(last["packets"].as_u64(), Some(header), "{chain}: header and policy line disagree");
        header
    }
}

/// A command's stdout, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A command's stderr, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A failed `firewall` command: exit 1, one line on stderr that contains `needle`,
/// nothing on stdout.
pub fn assert_fails(output: &Output, needle: &str) {
    assert_fails_with(output, 1, needle);
}

/// As [`assert_fails`], with the exit status `status` (docs/operations.md, "Exit statuses").
pub fn assert_fails_with(output: &Output, status: i32, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(status), "should fail: {err}{}", stdout(output));
    assert_eq!(err.lines().count(), 1, "one line of error: {err:?}");
    assert!(err.starts_with("firewall: ") && err.contains(needle), "{err:?} should say {needle:?}");
    assert!(output.stdout.is_empty(), "a failure printed {:?}", stdout(output));
}

/// The lines of `text` that mention an XDP attachment (`xdp`, `xdpgeneric`, `xdpdrv`…).
pub fn xdp_lines(link_show: &str) -> Vec<&str> {
    link_show.lines().filter(|l| l.split_whitespace().any(|w| w.starts_with("xdp"))).collect()
}

/// An executable copy of `path` that uid 65534 can run: the file itself when every
/// directory above it is traversable and it is world-executable, else a copy in `dir`.
pub fn world_executable(path: &Path, dir: &TempDir) -> PathBuf {
    let reachable =
        path.ancestors().skip(1).all(|d| fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
            && fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005);
    if reachable {
        return path.to_owned();
    }
    let copy = dir.path.join(path.file_name().expect("a file name"));
    fs::copy(path, &copy).unwrap_or_else(|e| panic!("copying {} to {}: {e}", path.display(), copy.display()));
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    copy
}

/// `setpriv` arguments that run a program as nobody (uid and gid 65534, no groups, no
/// capabilities).
pub const AS_NOBODY: [&str; 4] = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/// `N packets transmitted, M received` (ping's summary) → M.
pub fn ping_received(stdout: &str) -> u32 {
    stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(',').find(|part| part.contains("received")))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no \"N received\" in ping's output:\n{stdout}"))
}

// ---------------------------------------------------------------------------------------
// IPv6: the dual-stack lab

/// The host's IPv6 address in examples/dual-stack.toml (`address6`), on `s0`.
pub const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// An IPv6 address no rule names, on `c0`.
pub const STRANGER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 0x99);

/// examples/dual-stack.toml's text.
pub fn dual_stack_text() -> String {
    let path = crate::workspace().join("examples/dual-stack.toml");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

impl Lab {
    /// The lab with IPv6 too: [`HOST6`] on `s0`, every IPv6 peer of examples/dual-stack.toml
    /// and [`STRANGER6`] on `c0`. Addresses skip duplicate address detection (so the lab
    /// is usable at once); neighbour discovery itself runs as on any link, through the
    /// filter.
    pub fn dual_stack(tag: &str) -> Lab {
        let mut lab = Lab::new(tag);
        let policy = firewall_user::policy::parse(&dual_stack_text(), Path::new("examples/dual-stack.toml"))
            .unwrap_or_else(|e| panic!("examples/dual-stack.toml: {e}"));
        assert_eq!(policy.address6, Some(HOST6), "examples/dual-stack.toml's address6");
        let mut peers: Vec<Ipv6Addr> = single_peers(&policy)
            .into_iter()
            .filter_map(|p| match p {
                IpAddr::V6(addr) => Some(addr),
                IpAddr::V4(_) => None,
            })
            .collect();
        peers.push(STRANGER6);
        peers.sort();
        peers.dedup();
        let (s, c) = (lab.server.clone(), lab.client.clone());
        ip(&["-n", &s, "addr", "add", &format!("{HOST6}/128"), "dev", SERVER_IF, "nodad"]);
        ip(&["-n", &s, "-6", "route", "add", "2001:db8::/32", "dev", SERVER_IF]);
        let mut batch = String::new();
        for addr in &peers {
            batch.push_str(&format!("addr add {addr}/128 dev {CLIENT_IF} nodad\n"));
        }
        batch.push_str(&format!("route add {HOST6}/128 dev {CLIENT_IF}\n"));
        let batch_file = lab.tmp.write("client6.ip", &batch);
        ip(&["-n", &c, "-batch", batch_file.to_str().expect("utf-8 path")]);
        lab.client_addrs6 = peers;
        lab
    }

    /// examples/dual-stack.toml with `interface = "s0"`, written to a file of this lab.
    pub fn dual_stack_policy_file(&self) -> PathBuf {
        let text = dual_stack_text();
        let wanted = "interface = \"eth0\"";
        assert!(text.contains(wanted), "examples/dual-stack.toml no longer says {wanted}");
        self.tmp.write("dual-stack.toml", &text.replacen(wanted, &format!("interface = \"{SERVER_IF}\""), 1))
    }

    /// `ping -c COUNT -i INTERVAL` from `from` to `to` in the client namespace; its stdout.
    pub fn ping(&self, from: IpAddr, to: IpAddr, count: u32, interval: &str) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns_of(from)))
            .args(["ping", "-n", "-c", &count.to_string(), "-i", interval, "-W", "1", "-I"])
            .arg(from.to_string())
            .arg(to.to_string())
            .output()
            .unwrap_or_else(|e| panic!("running ping: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
