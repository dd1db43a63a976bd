//! Floods in the lab (see tests/tests/floods.rs): netsniff-ng's `trafgen` sending from the
//! client namespace, the veth's own counters, the pinned maps read directly (the
//! conntrack table entry by entry, the counters CPU by CPU), and a live SSH session that
//! answers commands while the flood runs.
//!
//! Every frame trafgen reports as sent was handed to `c0`, which either passed it to `s0`
//! (whose XDP program then judged it) or dropped it (its `tx_dropped`: the receive ring
//! of `s0` was full). What trafgen does with a refused frame depends on how it sends
//! ([`Sender`]), and so does the sum the tests check: `sent = judged by XDP` when it
//! sends a refused frame again, `sent = judged by XDP + tx_dropped` when it does not.
use std::{
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::Ipv4Addr,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::{Duration, Instant},
};

use aya::maps::{HashMap, MapData, PerCpuArray};
use firewall_common::{Counter, Flow, FlowKey, FlowTable, MAP_CONNTRACK, MAP_COUNTERS, MAP_HALF_OPEN};
use firewall_user::{compile::Ids, kernel::pins::Pins};
use serde_json::Value;

use crate::{
    daemons::{Sshd, in_ns, need},
    lab::{CLIENT_IF, Lab, SERVER_IF, sh},
};

/// The environment variable that multiplies every flood's size: `FLOOD_SCALE=10 cargo
/// test --release -p tests --test floods -- --nocapture` floods ten times as long.
pub const SCALE_VAR: &str = "FLOOD_SCALE";

/// `base` times `$FLOOD_SCALE` (1 when unset).
pub fn scaled(base: u64) -> u64 {
    let scale = match std::env::var(SCALE_VAR) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{SCALE_VAR}={text:?} is not a whole number")),
        Err(_) => 1,
    };
    assert!(scale >= 1, "{SCALE_VAR} must be at least 1");
    base * scale
}

/// One interface's counters, as `ip -s link` gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

impl LinkStats {
    /// What moved since `before`.
    #[must_use]
    pub fn since(&self, before: &LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets - before.rx_packets,
            rx_dropped: self.rx_dropped - before.rx_dropped,
            tx_packets: self.tx_packets - before.tx_packets,
            tx_dropped: self.tx_dropped - before.tx_dropped,
        }
    }
}

fn link_json(ns: &str, dev: &str) -> Value {
    let out = sh(Command::new("ip").args(["-j", "-s", "-n", ns, "link", "show", "dev", dev]));
    let list: Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    list[0].clone()
}

/// The counters of `dev` in namespace `ns`.
pub fn link_stats(ns: &str, dev: &str) -> LinkStats {
    let link = link_json(ns, dev);
    let n = |dir: &str, field: &str| {
        link["stats64"][dir][field].as_u64().unwrap_or_else(|| panic!("no stats64.{dir}.{field} for {dev}"))
    };
    LinkStats {
        rx_packets: n("rx", "packets"),
        rx_dropped: n("rx", "dropped"),
        tx_packets: n("tx", "packets"),
        tx_dropped: n("tx", "dropped"),
    }
}

/// The MAC address of `dev` in namespace `ns`.
pub fn mac(ns: &str, dev: &str) -> String {
    link_json(ns, dev)["address"].as_str().expect("a link has an address").to_owned()
}

/// The Ethernet header every flood frame from `c0` to `s0` starts with, in trafgen's
/// syntax.
pub fn eth_header(lab: &Lab) -> String {
    format!("eth(da={}, sa={}, type=0x0800)", mac(&lab.server, SERVER_IF), mac(&lab.client, CLIENT_IF))
}

/// `struct ethtool_channels` (linux/ethtool.h).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

/// Gives a veth end `queues` receive and transmit queues (ethtool -L DEV rx N tx N, by
/// its ioctl; veth makes room for one per CPU and uses one unless told). A veth runs one
/// NAPI instance per receive queue, on the CPU that sent into it: with one queue, two
/// senders take turns in one XDP loop; with two, each CPU runs the program at once.
pub fn set_queues(lab: &Lab, ns: &str, dev: &str, queues: u32) {
    lab.run_in(ns, || {
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("a socket for the ethtool ioctl");
        let ioctl = |channels: &mut EthtoolChannels| {
            // SAFETY: ifreq is plain data; all zeroes is a valid (empty) request.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (slot, byte) in req.ifr_name.iter_mut().zip(dev.bytes()) {
                *slot = byte as libc::c_char;
            }
            req.ifr_ifru.ifru_data = std::ptr::from_mut::<EthtoolChannels>(channels).cast();
            // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live
            // ethtool_channels of the size the kernel expects.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
            if rc != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
        };
        let mut channels = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
        ioctl(&mut channels).unwrap_or_else(|e| panic!("ETHTOOL_GCHANNELS on {dev}: {e}"));
        assert!(
            channels.max_rx >= queues && channels.max_tx >= queues,
            "{dev} has room for fewer than {queues} queues"
        );
        channels.cmd = ETHTOOL_SCHANNELS;
        channels.rx_count = queues;
        channels.tx_count = queues;
        channels.combined_count = 0;
        ioctl(&mut channels).unwrap_or_else(|e| panic!("ETHTOOL_SCHANNELS {queues} on {dev}: {e}"));
    });
}

/// Transmit queue `q` of `dev` in `ns` for packets sent from CPU `q` (XPS): each trafgen
/// process, pinned to its CPU, then sends into its own queue.
pub fn pin_tx_queues_to_cpus(ns: &str, dev: &str, queues: u32) {
    for q in 0..queues {
        sh(Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c"])
            .arg(format!("echo {:x} > /sys/class/net/{dev}/queues/tx-{q}/xps_cpus", 1u64 << q)));
    }
}

/// How trafgen hands its frames to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// One `sendto` a frame (`-t 0`), one process on CPU 0, at full speed. A frame the
    /// veth refuses (its receive ring full: `c0`'s `tx_dropped`) fails with ENOBUFS and
    /// trafgen sends it again, so every frame trafgen counts reached the XDP program.
    /// Needed when the flood passes XDP: the ring's frames are charged to trafgen's
    /// socket until the receiver frees them, the receiver falls behind once the server's
    /// stack takes each frame, the socket's send buffer fills, and the ring's flush fails
    /// with EAGAIN, which trafgen 0.6.8 treats as fatal ("Flushing TX_RING failed:
    /// Resource temporarily unavailable"; a network namespace may not raise
    /// `net.core.wmem_default`).
    Sendto,
    /// The TX ring (trafgen's fast path), one process pinned to each of CPUs
    /// `0..cpus`. A frame the veth refuses is lost (`c0`'s `tx_dropped`), not sent
    /// again: `sent = judged by XDP + tx_dropped`. For floods XDP drops.
    Ring { cpus: u32 },
    /// One `sendto` a frame, one process on CPU 0, `gap_us` microseconds apart (trafgen's
    /// `-t`): a trickle at a rate of the test's choosing.
    Paced { gap_us: u32 },
}

/// A trafgen run: the child, in its own process group (trafgen forks one process per
/// CPU), killed with the whole group on drop.
pub struct Trafgen {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
    pub what: String,
}

/// What a finished trafgen run reported.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Frames handed to the interface ("N packets outgoing").
    pub packets: u64,
    /// Frames each CPU's process sent ("… on CPUk (N packets)").
    pub per_cpu: Vec<(usize, u64)>,
    /// From the start to the end of the run, as this process saw it (an upper bound on
    /// how long frames were sent).
    pub elapsed: Duration,
}

impl Trafgen {
    /// Starts `trafgen --dev c0 --conf CONFIG` in the client namespace, `count` frames
    /// (`None`: until [`Trafgen::stop`]). `--no-sock-mem`: leave the socket memory
    /// settings alone (a network namespace may not change them, and they are not ours).
    pub fn start(lab: &Lab, name: &str, config: &str, sender: Sender, count: Option<u64>) -> Trafgen {
        need("trafgen", "netsniff-ng");
        let conf = lab.tmp().join(format!("{name}.cfg"));
        fs::write(&conf, config).expect("writing trafgen's configuration");
        let out = lab.tmp().join(format!("{name}.out"));
        let err = lab.tmp().join(format!("{name}.err"));
        let mut command = in_ns(&lab.client, "trafgen");
        command.args(["--dev", CLIENT_IF, "--conf"]).arg(&conf).arg("--no-sock-mem");
        match sender {
            Sender::Sendto => command.args(["-t", "0", "-P", "1"]),
            Sender::Ring { cpus } => command.arg("-P").arg(cpus.to_string()),
            Sender::Paced { gap_us } => command.args(["-t", &format!("{gap_us}us"), "-P", "1"]),
        };
        command
            .arg("-n")
            .arg(count.unwrap_or(0).to_string())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("trafgen's stdout file"))
            .stderr(fs::File::create(&err).expect("trafgen's stderr file"))
            .process_group(0);
        let what = format!("{command:?}");
        let child = command.spawn().unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        Trafgen { child: Some(child), out, err, started: Instant::now(), what }
    }

    /// Still sending.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("waiting for trafgen").is_none(),
            None => false,
        }
    }

    /// Waits (at most `limit`) for trafgen to finish, and what it said it sent.
    pub fn wait(mut self, limit: Duration) -> Sent {
        let mut child = self.child.take().expect("waited once");
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for trafgen") {
                break status;
            }
            if self.started.elapsed() > limit {
                kill_group(&mut child);
                panic!("{} still running after {limit:?}:\n{}", self.what, self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        let text = self.output();
        assert!(status.success(), "{} failed ({status}):\n{text}", self.what);
        let packets = text
            .lines()
            .filter_map(|l| l.trim().strip_suffix(" packets outgoing"))
            .map(|n| n.trim().parse::<u64>().expect("a packet count"))
            .sum();
        let per_cpu = text
            .lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once(" on CPU")?;
                let (cpu, rest) = rest.split_once(" (")?;
                let n = rest.strip_suffix(" packets)")?;
                Some((cpu.parse().ok()?, n.parse().ok()?))
            })
            .collect();
        assert!(packets > 0, "{} reported no packets sent:\n{text}", self.what);
        Sent { packets, per_cpu, elapsed }
    }

    /// Interrupts trafgen (SIGINT to its group: each process stops and the first one
    /// prints the totals) and waits for what it said it sent.
    pub fn stop(self) -> Sent {
        if let Some(child) = &self.child {
            // SAFETY: a signal to the process group this child leads (see kill_group).
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGINT) };
        }
        let limit = self.started.elapsed() + Duration::from_secs(30);
        self.wait(limit)
    }

    fn output(&self) -> String {
        let read = |p: &PathBuf| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
        format!("{}{}", read(&self.out), read(&self.err))
    }
}

fn kill_group(child: &mut Child) {
    // SAFETY: a signal to the process group this child leads (it was started with
    // process_group(0), so its pid is the group's id): trafgen and the workers it forked.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
}

impl Drop for Trafgen {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// The filter's pinned maps and ids, opened from the host (bpffs is the host's).
pub struct Pinned {
    /// The established flows.
    pub conntrack: HashMap<MapData, FlowKey, Flow>,
    pub half_open: HashMap<MapData, FlowKey, Flow>,
    pub counters: PerCpuArray<MapData, Counter>,
    pub ids: Ids,
}

impl Pinned {
    pub fn open(lab: &Lab) -> Pinned {
        let pins = Pins {
            iface: SERVER_IF.into(),
            dir: lab.pin_dir(),
            state: lab.state_root().join(SERVER_IF),
            last_good: lab.last_good(),
        };
        let map = |name: &str| {
            let data = MapData::from_pin(pins.map_path(name))
                .unwrap_or_else(|e| panic!("opening pinned {name}: {e}"));
            aya::maps::Map::from_map_data(data).unwrap_or_else(|e| panic!("pinned {name}: {e}"))
        };
        Pinned {
            conntrack: map(MAP_CONNTRACK).try_into().expect("CONNTRACK is a hash map"),
            half_open: map(MAP_HALF_OPEN).try_into().expect("HALF_OPEN is a hash map"),
            counters: map(MAP_COUNTERS).try_into().expect("COUNTERS is a per-CPU array"),
            ids: pins.live_state().unwrap_or_else(|e| panic!("the live state: {e}")).ids,
        }
    }

    /// The established flow stored under `key`, if any. A lookup from user space does not
    /// mark the entry as used (the kernel's LRU hash has a lookup of its own for system
    /// calls), so looking does not keep a flow alive.
    pub fn flow(&self, key: &FlowKey) -> Option<Flow> {
        match self.conntrack.get(key, 0) {
            Ok(flow) => Some(flow),
            Err(aya::maps::MapError::KeyNotFound) => None,
            Err(e) => panic!("looking up {key:?} in CONNTRACK: {e}"),
        }
    }

    /// Entries in a flow table now, counted by walking it.
    pub fn flow_count(&self, table: FlowTable) -> usize {
        let map = match table {
            FlowTable::Established => &self.conntrack,
            FlowTable::HalfOpen => &self.half_open,
        };
        map.keys().flatten().count()
    }

    /// The packets counter `id` counted on each CPU.
    pub fn per_cpu_packets(&self, id: u32) -> Vec<u64> {
        let values = self.counters.get(&id, 0).unwrap_or_else(|e| panic!("counter {id}: {e}"));
        values.iter().map(|c| c.packets).collect()
    }

    /// The counter id of a rule's line.
    pub fn rule_counter(&self, rule: &str, line: firewall_common::Line) -> u32 {
        let id = *self.ids.rules.get(rule).unwrap_or_else(|| panic!("no rule {rule} in the live ids"));
        firewall_common::rule_counter(id, line)
    }
}

/// The conntrack key of a flow with `peer` (the map's layout, in one place).
pub fn flow_key(peer: Ipv4Addr, peer_port: u16, local_port: u16, protocol: u8) -> FlowKey {
    FlowKey {
        peer: firewall_common::v4_mapped(peer.octets()),
        peer_port,
        local_port,
        protocol,
        _pad: 0,
        _pad2: 0,
    }
}

/// `firewall conntrack --json=1`'s flows.
pub fn conntrack_json(lab: &Lab) -> Vec<Value> {
    let out = lab.firewall_ok(&["conntrack", "--json=1", "--iface", SERVER_IF]);
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("conntrack --json=1 is not JSON ({e})"));
    report["flows"].as_array().expect("conntrack --json=1 has its flows").clone()
}

/// A shell on the server over one SSH connection that stays open: each
/// [`SshSession::ask`] writes a command into it and waits for its answer.
pub struct SshSession {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    asked: u32,
}

impl SshSession {
    /// `ssh -T … root@SERVER sh` from `from` (in its namespace), ready once a first
    /// command has answered; `cpu`: the client pinned to it (see [`pin_to_cpu`]). Neither
    /// end sends anything of its own accord (no keepalives: the lab's sshd sets no
    /// `ClientAliveInterval`, and TCP's keepalive waits two hours), so between commands
    /// the session is idle.
    pub fn open(lab: &Lab, sshd: &Sshd, from: Ipv4Addr, cpu: Option<usize>) -> SshSession {
        let mut command = in_ns(lab.ns_of(from), "ssh");
        command
            .args(["-T", "-F", "none", "-i"])
            .arg(&sshd.client_key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=0", "-b"])
            .arg(from.to_string())
            .arg("-p")
            .arg(sshd.addr.port().to_string())
            .arg(format!("root@{}", sshd.addr.ip()))
            .arg("sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        if let Some(cpu) = cpu {
            // nsenter execs ssh: the pid is the client's, and an affinity survives exec.
            pin_to_cpu(child.id(), cpu);
        }
        let stdin = child.stdin.take().expect("ssh's stdin");
        let stdout = child.stdout.take().expect("ssh's stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut session = SshSession { child, stdin, lines, asked: 0 };
        session
            .ask("echo ready", "ready", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("the SSH session: {e}"));
        session
    }

    /// Writes `command` and waits up to `timeout` for a line `answer`; how long it took.
    pub fn ask(&mut self, command: &str, answer: &str, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        self.ask_later(command).map_err(|e| format!("writing {command:?}: {e}"))?;
        self.wait_for(answer, timeout).map(|_| started.elapsed())
    }

    /// Writes `command` without waiting for anything.
    pub fn ask_later(&mut self, command: &str) -> std::io::Result<()> {
        self.asked += 1;
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()
    }

    /// Waits up to `timeout` for a line `answer`.
    pub fn wait_for(&mut self, answer: &str, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            match self.lines.recv_timeout(timeout.saturating_sub(started.elapsed())) {
                Ok(line) if line.trim() == answer => return Ok(started.elapsed()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Err(format!("no {answer:?} within {timeout:?}")),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("the session ended before {answer:?}"));
                }
            }
        }
    }

    /// `echo probe-N`, answered within `timeout`.
    pub fn probe(&mut self, timeout: Duration) -> Result<Duration, String> {
        let token = format!("probe-{}", self.asked + 1);
        self.ask(&format!("echo {token}"), &token, timeout)
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins process `pid` (and whatever it forks afterwards) to CPU `cpu`.
pub fn pin_to_cpu(pid: u32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity
    // take it by pointer for the call only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &raw const set,
        );
        assert_eq!(rc, 0, "pinning {pid} to CPU {cpu}: {}", std::io::Error::last_os_error());
    }
}

/// The CPUs the kernel keeps per-CPU map slots for.
pub fn possible_cpus() -> usize {
    aya::util::nr_cpus().expect("the possible CPUs")
}

/// Counts, on a thread, the datagrams or packets a socket receives until stopped.
pub struct Counting {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Counting {
    fn start(mut receive: impl FnMut() -> Option<bool> + Send + 'static) -> Counting {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                // Some(true): one that counts; Some(false): one that does not; None: the
                // read timed out.
                if receive() == Some(true) {
                    seen += 1;
                }
            }
            seen
        });
        Counting { stop, thread: Some(thread) }
    }

    /// Stops counting (within the socket's 50 ms read timeout) and returns the count.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().expect("stopped once").join().expect("the counting thread")
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts the ICMP echo replies from `from` that reach namespace `ns`: a raw ICMP socket
/// there sees a copy of every ICMP packet the namespace receives.
pub fn count_echo_replies(lab: &Lab, ns: &str, from: Ipv4Addr) -> Counting {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, setsockopt, socket, sockopt};
    let fd = lab
        .run_in(ns, || socket(AddressFamily::Inet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::Icmp))
        .expect("a raw ICMP socket");
    setsockopt(&fd, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(0, 50_000)).expect("SO_RCVTIMEO");
    Counting::start(move || {
        let mut buf = [0u8; 2048];
        let n = nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty()).ok()?;
        // The IPv4 header, then ICMP: type 0 is an echo reply.
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        Some(n > ihl && buf[12..16] == from.octets() && buf[ihl] == 0)
    })
}

/// Counts the datagrams a UDP socket bound to `addr` (in the namespace that owns it)
/// receives.
pub fn count_datagrams(lab: &Lab, addr: std::net::SocketAddrV4) -> Counting {
    let socket = lab
        .run_in(lab.ns_of(*addr.ip()), || std::net::UdpSocket::bind(addr))
        .unwrap_or_else(|e| panic!("binding udp {addr}: {e}"));
    socket.set_read_timeout(Some(Duration::from_millis(50))).expect("read timeout");
    Counting::start(move || {
        let mut buf = [0u8; 2048];
        socket.recv_from(&mut buf).ok().map(|_| true)
    })
}
