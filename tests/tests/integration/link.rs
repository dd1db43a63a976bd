//! The link layer in the lab: nothing the host's IP stack would receive passes unjudged.
//!
//! Linux strips priority tags (VLAN 0, of either TPID) at any depth and hands what is
//! inside to IP; the parser reads two tags. So a datagram in three such tags, from a
//! stranger to a port no rule opens, once reached its socket counted as `non-ip`. Now an
//! encapsulation the parser does not follow is `invalid`, and an ethertype that is
//! neither IP nor one of the link's own protocols (ARP, LLDP, …) meets the `ethertype`
//! line; ARP, and with it every exchange, still works. The frames are written whole to a
//! packet socket on the veth, from the client's end (XDP) or the server's (TC egress).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use etherparse::PacketBuilder;
use firewall_user::kernel::pins::{LAST_GOOD_ROOT, PIN_ROOT, STATE_ROOT};
use tests::{
    lab::{
        BLOCKED_AFTER, CLIENT_IF, HOST, HOST6, Lab, Listing, OPEN_WITHIN, SERVER_IF, STRANGER, STRANGER6,
        echo, firewall_bin, ping_received, sh,
    },
    require_root,
};

/// A port no rule of examples/tight.toml opens.
const PORT: u16 = 9999;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// A UDP datagram from the stranger to `PORT`, `payload` naming it.
fn datagram(from: [u8; 6], to: [u8; 6], payload: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(from, to)
        .ipv4(STRANGER.octets(), HOST.octets(), 64)
        .udp(40000, PORT)
        .write(&mut frame, payload.as_bytes())
        .expect("a UDP frame");
    frame
}

/// `frame` in priority tags (VLAN 0), outermost first.
fn priority_tagged(frame: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for tpid in tpids {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out.extend_from_slice(&frame[12..]);
    out
}

/// `frame` (an IPv4 one) with its ethertype replaced by `ethertype` and `shim` put in
/// front of the datagram: an MPLS label, a PPPoE session header.
fn encapsulated(frame: &[u8], ethertype: u16, shim: &[u8]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(shim);
    out.extend_from_slice(&frame[14..]);
    out
}

/// The payloads `socket` receives within `within`.
fn received(socket: &UdpSocket, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        socket.set_read_timeout(Some(left)).expect("a read timeout");
        match socket.recv(&mut buf) {
            Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => return got,
        }
    }
}

fn moved(before: &Listing, after: &Listing, chain: &str, line: &str) -> u64 {
    after.packets(chain, line) - before.packets(chain, line)
}

#[test]
fn frames_the_parser_does_not_follow_never_reach_the_host() {
    require_root();
    let lab = Lab::new("link");
    let socket = lab
        .run_in(&lab.server, || UdpSocket::bind((HOST, PORT)))
        .unwrap_or_else(|e| panic!("binding udp {HOST}:{PORT}: {e}"));
    let (client, server) = (lab.mac(&lab.client, CLIENT_IF), lab.mac(&lab.server, SERVER_IF));
    let too_deep = [
        ("three 802.1Q priority tags", vec![TPID_8021Q; 3]),
        ("two 802.1ad priority tags over an 802.1Q one", vec![TPID_8021AD, TPID_8021AD, TPID_8021Q]),
        ("four 802.1ad priority tags", vec![TPID_8021AD; 4]),
    ];
    let frames: Vec<Vec<u8>> =
        too_deep.iter().map(|(what, tags)| priority_tagged(&datagram(client, server, what), tags)).collect();

    // Without the filter, Linux unwraps them all and the socket receives them: the frames
    // are what the finding describes.
    lab.send_frames(&lab.client, CLIENT_IF, &frames);
    let mut got = received(&socket, Duration::from_secs(2));
    got.sort();
    let mut wanted: Vec<String> = too_deep.iter().map(|(what, _)| what.to_string()).collect();
    wanted.sort();
    assert_eq!(got, wanted, "without the filter, the host's IP stack receives every one");

    lab.up();
    let before = lab.list();
    // The same frames, and beside them the same datagram untagged and in two tags: the
    // parser reads those, and the policy drops them (no rule opens the port).
    let judged = [
        datagram(client, server, "untagged"),
        priority_tagged(&datagram(client, server, "two tags"), &[TPID_8021AD, TPID_8021Q]),
    ];
    lab.send_frames(&lab.client, CLIENT_IF, &frames);
    lab.send_frames(&lab.client, CLIENT_IF, &judged);
    // Other ethertypes: MPLS (a label, bottom of stack, then the datagram) and a PPPoE
    // session (its header, PPP's IPv4 protocol number, then the datagram).
    let inner = datagram(client, server, "encapsulated");
    let others = [
        encapsulated(&inner, 0x8847, &[0, 0, 0x11, 64]),
        encapsulated(&inner, 0x8864, &[0x11, 0, 0, 1, 0, 30, 0, 0x21]),
    ];
    lab.send_frames(&lab.client, CLIENT_IF, &others);
    assert_eq!(received(&socket, BLOCKED_AFTER), Vec::<String>::new(), "nothing reached the socket");
    let after = lab.list();
    assert_eq!(moved(&before, &after, "INPUT", "invalid"), 3, "the frames tagged too deep are invalid");
    assert_eq!(lab.list().policy("INPUT") - before.policy("INPUT"), 2, "the ones the parser reads");
    assert_eq!(moved(&before, &after, "INPUT", "ethertype"), 2, "MPLS and PPPoE");

    // The host's own frames, the same way: one code path for both programs.
    let out_datagram = {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(server, client)
            .ipv4(HOST.octets(), STRANGER.octets(), 64)
            .udp(PORT, 40000)
            .write(&mut frame, b"out")
            .expect("a UDP frame");
        frame
    };
    lab.send_frames(
        &lab.server,
        SERVER_IF,
        &[
            priority_tagged(&out_datagram, &[TPID_8021Q; 3]),
            encapsulated(&out_datagram, 0x8847, &[0, 0, 0x11, 64]),
        ],
    );
    let out = lab.list();
    assert_eq!(moved(&after, &out, "OUTPUT", "invalid"), 1, "three tags going out");
    assert_eq!(moved(&after, &out, "OUTPUT", "ethertype"), 1, "MPLS going out");

    // The link's own protocols pass: LLDP to its group address, and ARP, without which
    // nothing works (the neighbour tables emptied first, so the ping needs it).
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e];
    lldp.extend_from_slice(&client);
    lldp.extend_from_slice(&[0x88, 0xcc, 0x02, 0x07, 0x04]);
    lldp.extend_from_slice(&client);
    lldp.resize(60, 0);
    lab.send_frames(&lab.client, CLIENT_IF, &[lldp]);
    for ns in [&lab.server, &lab.client] {
        sh(Command::new("ip").args(["-n", ns, "neigh", "flush", "all"]));
    }
    let peer = Ipv4Addr::new(203, 0, 113, 7);
    let replies = ping_received(&lab.ping(peer.into(), HOST.into(), 2, "0.2"));
    assert!(replies >= 1, "ping needs ARP through the filter: {replies} replies");
    let last = lab.list();
    assert!(moved(&out, &last, "INPUT", "non-ip") >= 2, "LLDP and ARP in");
    assert!(moved(&out, &last, "OUTPUT", "non-ip") >= 1, "ARP out");
    assert_eq!(moved(&out, &last, "INPUT", "ethertype"), 0);
}

/// A jumbo-MTU link (a storage network, a cloud's internal one) takes the filter in
/// native mode: the XDP program is multi-buffer aware (`xdp.frags`), without which the
/// kernel refuses it on a veth whose MTU passes a page. Its large frames are judged whole:
/// an SSH peer's session echoes 8,000-byte messages, each frame counted at its full
/// length, not its first buffer's, and a stranger's large datagram still drops.
#[test]
fn a_jumbo_mtu_link_takes_the_filter_and_its_large_frames_are_judged_whole() {
    require_root();
    let lab = Lab::new("jumbo");
    jumbo(&lab);
    let ssh = SocketAddr::new(IpAddr::V4(HOST), 122);
    lab.tcp_echo(ssh);
    up_native(&lab, &lab.policy_file());
    large_frames_judged_whole(&lab, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), ssh, IpAddr::V4(STRANGER));
}

/// The same over IPv6, whose header chain the parser reads from the first buffer of a
/// multi-buffer frame too.
#[test]
fn a_jumbo_mtu_link_judges_ipv6_frames_whole_too() {
    require_root();
    let lab = Lab::dual_stack("jumbo6");
    jumbo(&lab);
    let ssh = SocketAddr::new(IpAddr::V6(HOST6), 122);
    lab.tcp_echo(ssh);
    up_native(&lab, &lab.dual_stack_policy_file());
    let peer = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 7);
    large_frames_judged_whole(&lab, IpAddr::V6(peer), ssh, IpAddr::V6(STRANGER6));
}

/// `firewall up --policy POLICY --iface s0 --mode native`, which must attach natively.
fn up_native(lab: &Lab, policy: &std::path::Path) {
    let policy = policy.to_str().unwrap();
    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF, "--mode", "native"]);
    assert!(out.starts_with("firewall up on s0: attached, native XDP,"), "{out}");
}

/// The default mode suits the driver. On a veth it is generic: native XDP there turns the
/// peer's segmentation offload off (the kernel's veth driver does), so the sender would
/// cut every segment to the MTU. `up` says so, `ip link` shows `xdpgeneric`, and the
/// client's end keeps TSO. `--mode native` still gets native XDP, and the client's end
/// loses TSO while it is on. After `down`, in either mode, every offload of both ends is
/// as it was before `up` (the kernel turns some off for a program and leaves them so).
/// Loopback, whose driver has no native XDP, gets generic and says why.
#[test]
fn the_default_mode_suits_the_driver_generic_on_a_veth_native_when_asked() {
    require_root();
    let lab = Lab::new("xdpmode");
    let policy = lab.policy_file();
    let policy = policy.to_str().unwrap();
    // `ethtool -k` of both ends of the link.
    let offloads = || {
        [(&lab.server, SERVER_IF), (&lab.client, CLIENT_IF)].map(|(ns, dev)| {
            let out = sh(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-k", dev]));
            assert!(out.status.success(), "ethtool -k {dev}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let client_tso = || {
        let [_, text] = offloads();
        let line = text.lines().find(|l| l.trim_start().starts_with("tcp-segmentation-offload:"));
        line.unwrap_or_else(|| panic!("ethtool -k {CLIENT_IF} says no tcp-segmentation-offload:\n{text}"))
            .contains(": on")
    };
    let before = offloads();
    assert!(client_tso(), "the client's end has TSO before any filter");

    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF]);
    assert!(
        out.starts_with("firewall up on s0: attached, generic XDP (a veth, where native XDP turns its peer's segmentation offload off; --mode native chooses it), "),
        "{out}"
    );
    assert!(lab.server_link().contains("xdpgeneric"), "{}", lab.server_link());
    assert!(client_tso(), "the client's end keeps TSO under generic XDP");
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    assert_eq!(offloads(), before, "both ends' offloads after down from generic XDP");

    let out =
        lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF, "--mode", "native", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("up --json");
    assert_eq!(json["xdp"], serde_json::json!({"hook": "native", "why": null}), "{json}");
    let link = lab.server_link();
    assert!(!link.contains("xdpgeneric") && tests::lab::xdp_lines(&link).len() == 1, "{link}");
    assert!(!client_tso(), "the veth driver turns the peer's TSO off under native XDP");
    // A second `up` replaces the programs in their links, on the hook they are on.
    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", SERVER_IF, "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("up --json");
    assert_eq!((json["replaced"].as_bool(), &json["xdp"]), (Some(true), &serde_json::Value::Null), "{json}");
    assert!(!lab.server_link().contains("xdpgeneric"), "{}", lab.server_link());
    lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    assert_eq!(offloads(), before, "both ends' offloads after down from native XDP");

    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", "lo"]);
    assert!(
        out.starts_with("firewall up on lo: attached, generic XDP (its driver has no native XDP), "),
        "{out}"
    );
    lab.firewall_ok(&["down", "--iface", "lo"]);
}

/// An interface named with a dot, as a VLAN is (`eth0.100`), though bpffs refuses a dot
/// in a name: its pins are under `s0:7`, and every command finds them by the interface's
/// name. (A veth so named: these kernels have no VLANs.) `up`, `list` without `--iface`
/// (the only filter in the namespace), `reload` and `down`.
#[test]
fn a_filter_goes_up_and_down_on_an_interface_named_with_a_dot() {
    require_root();
    let lab = Lab::new("dotted");
    let ip = |args: &[&str]| {
        let out = sh(Command::new("ip").arg("-n").arg(&lab.server).args(args));
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ip(&["link", "add", "s0.7", "type", "veth", "peer", "name", "s7peer"]);
    ip(&["link", "set", "s0.7", "up"]);
    ip(&["link", "set", "s7peer", "up"]);
    let text = std::fs::read_to_string(lab.policy_file()).expect("the lab's policy");
    let policy = lab.tmp().join("dotted.toml");
    std::fs::write(
        &policy,
        text.replacen(&format!("interface = \"{SERVER_IF}\""), "interface = \"s0.7\"", 1),
    )
    .expect("writing the policy");
    let policy = policy.to_str().unwrap();

    let out = lab.firewall_ok(&["up", "--policy", policy, "--iface", "s0.7"]);
    assert!(out.starts_with("firewall up on s0.7: attached, generic XDP"), "{out}");
    let pins = lab.pin_dir().with_file_name("s0:7");
    assert!(pins.join(firewall_common::MAP_CONFIG).exists(), "{} holds no CONFIG: {out}", pins.display());
    let listing = lab.firewall_ok(&["list"]);
    assert!(listing.contains("Chain INPUT") && listing.contains("ssh-in"), "{listing}");
    let out = lab.firewall_ok(&["reload", "--policy", policy, "--iface", "s0.7"]);
    assert!(out.starts_with("firewall reloaded ") && out.contains(" on s0.7: "), "{out}");
    let out = lab.firewall_ok(&["down"]);
    assert_eq!(out.trim(), "firewall down on s0.7");
    assert!(!pins.exists(), "{} left behind", pins.display());
}

/// Two network namespaces whose names differ only by a dot and a colon (`…-n.x` and
/// `…-n:x`), each with a filter on its own `v0`: bpffs refuses the dot, and a dot written
/// as a colon put both filters in one directory, the second `up` taking over the first's
/// maps. Now their pins are apart (`netns-…-n:x` and `netns-…-n%3Ax`); the package's
/// `each-filter` finds each by its namespace's name, and a third's pins where an earlier
/// version left them (`netns-…-n:y`); `down` in one leaves the other up, and the
/// dotted one's directory is not taken for the other's earlier pins.
#[test]
fn namespaces_named_with_a_dot_and_with_a_colon_keep_their_filters_apart() {
    require_root();
    let lab = Lab::new("ns-names");
    let names = [format!("{}-n.x", lab.server), format!("{}-n:x", lab.server)];
    let _gone = Namespaces(names.to_vec());
    let text = std::fs::read_to_string(lab.policy_file()).expect("the lab's policy");
    let policy = lab.tmp().join("v0.toml");
    std::fs::write(&policy, text.replacen(&format!("interface = \"{SERVER_IF}\""), "interface = \"v0\"", 1))
        .expect("writing the policy");
    let policy = policy.to_str().unwrap();
    let firewall = |ns: &str, args: &[&str]| {
        let out =
            sh(Command::new("nsenter").arg(format!("--net=/run/netns/{ns}")).arg(firewall_bin()).args(args));
        String::from_utf8(out.stdout).expect("utf-8 output")
    };
    for ns in &names {
        sh(Command::new("ip").args(["netns", "add", ns]));
        sh(Command::new("ip").args(["-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]));
        sh(Command::new("ip").args(["-n", ns, "link", "set", "v0", "up"]));
        let out = firewall(ns, &["up", "--policy", policy, "--iface", "v0"]);
        assert!(out.starts_with("firewall up on v0: attached, generic XDP"), "up in {ns}: {out}");
    }
    let root = std::path::Path::new(PIN_ROOT);
    let dirs = [
        root.join(format!("netns-{}-n:x", lab.server)).join("v0"),
        root.join(format!("netns-{}-n%3Ax", lab.server)).join("v0"),
    ];
    for dir in &dirs {
        assert!(dir.join(firewall_common::MAP_CONFIG).exists(), "{} holds no CONFIG", dir.display());
    }

    // A third namespace, with a filter an earlier version left under its name as it was.
    let earlier = format!("{}-n:y", lab.server);
    let _gone_too = Namespaces(vec![earlier.clone()]);
    sh(Command::new("ip").args(["netns", "add", &earlier]));
    std::fs::create_dir_all(root.join(format!("netns-{earlier}")).join("v0")).expect("the earlier pins");

    // each-filter, with a `firewall` that says where it ran and what it was asked.
    let said = lab.tmp().join("firewall-says");
    std::fs::write(&said, "#!/bin/sh\necho \"$(ip netns identify) $*\"\n").expect("writing firewall-says");
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/each-filter"))
        .expect("dist/each-filter");
    let walk = lab.tmp().join("each-filter");
    std::fs::write(&walk, script.replace("/usr/sbin/firewall", &format!("sh {}", said.display())))
        .expect("writing each-filter");
    // Other tests' filters come and go meanwhile: only these namespaces' lines are asserted.
    let each_filter = || {
        let out = Command::new("sh").arg(&walk).arg("list").output().expect("running each-filter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = each_filter();
    for ns in names.iter().chain([&earlier]) {
        let walked = out.lines().filter(|line| *line == format!("{ns} list --iface v0")).count();
        assert_eq!(walked, 1, "each-filter walked {ns} {walked} times:\n{out}");
    }

    // `…-n:x` down: its name as it was, `netns-…-n:x`, is `…-n.x`'s directory, not an
    // earlier version's pins of its own, so neither `firewall` nor each-filter finds a
    // filter in `…-n:x` there.
    let out = firewall(&names[1], &["down", "--iface", "v0"]);
    assert_eq!(out.trim(), "firewall down on v0");
    assert!(!dirs[1].exists(), "{} left behind", dirs[1].display());
    assert!(dirs[0].join(firewall_common::MAP_CONFIG).exists(), "the other namespace's filter went too");
    let list = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", names[1]))
        .arg(firewall_bin())
        .arg("list")
        .output()
        .expect("running firewall list");
    let err = String::from_utf8_lossy(&list.stderr);
    assert!(!list.status.success() && err.contains("no filter is up"), "list in {}: {err}", names[1]);
    let out = each_filter();
    assert!(!out.lines().any(|line| line.starts_with(&format!("{} ", names[1]))), "{out}");
    assert!(out.lines().any(|line| line == format!("{} list --iface v0", names[0])), "{out}");

    let listing = firewall(&names[0], &["list"]);
    assert!(listing.contains("Chain INPUT") && listing.contains("ssh-in"), "{listing}");
    let out = firewall(&names[0], &["down", "--iface", "v0"]);
    assert_eq!(out.trim(), "firewall down on v0");
    assert!(!dirs[0].exists(), "{} left behind", dirs[0].display());
}

/// Network namespaces a test made, deleted with their pins when it ends, passed or not.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["-n", ns, "link", "del", "v0"]).stderr(Stdio::null()).status();
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
            // Under its name as this version writes it, and as earlier ones did.
            for dir in [firewall_user::kernel::pins::bpffs_name(ns), ns.clone()] {
                for root in [PIN_ROOT, STATE_ROOT, LAST_GOOD_ROOT] {
                    let _ = std::fs::remove_dir_all(std::path::Path::new(root).join(format!("netns-{dir}")));
                }
            }
        }
    }
}

/// Both ends of the lab's link at an MTU of 9,000.
fn jumbo(lab: &Lab) {
    for (ns, dev) in [(&lab.server, SERVER_IF), (&lab.client, CLIENT_IF)] {
        let set = sh(Command::new("ip").args(["-n", ns, "link", "set", dev, "mtu", "9000"]));
        assert!(set.status.success(), "mtu 9000 on {dev}: {}", String::from_utf8_lossy(&set.stderr));
    }
}

/// Over a jumbo link with the filter up: `peer`'s session to `ssh` (an echo server on
/// port 122, `ssh-in`'s) echoes three 8,000-byte messages, counted at their whole length
/// on INPUT's `ssh-in`, and `stranger`'s 8,000-byte datagram to the same host drops on
/// INPUT's policy.
fn large_frames_judged_whole(lab: &Lab, peer: IpAddr, ssh: SocketAddr, stranger: IpAddr) {
    let mut session = lab.tcp_connect(peer, ssh, OPEN_WITHIN).expect("a session over the jumbo link");
    let message = vec![b'j'; 8000];
    for n in 0..3 {
        echo(&mut session, &message, OPEN_WITHIN).unwrap_or_else(|e| panic!("echo {n} of 8,000 bytes: {e}"));
    }
    let listing = lab.list();
    let (bytes, packets) = (listing.bytes("INPUT", "ssh-in"), listing.packets("INPUT", "ssh-in"));
    assert!(
        bytes >= 3 * 8000,
        "INPUT ssh-in counted {bytes} bytes in {packets} packets: not the frames' whole length"
    );

    let before = lab.list().policy("INPUT");
    let sock = lab.run_in(&lab.client, || UdpSocket::bind((stranger, 0))).expect("bind");
    sock.send_to(&vec![0u8; 8000], (ssh.ip(), PORT)).expect("send");
    let deadline = Instant::now() + BLOCKED_AFTER;
    while lab.list().policy("INPUT") == before {
        assert!(Instant::now() < deadline, "the stranger's large datagram was not dropped on INPUT's policy");
        std::thread::sleep(Duration::from_millis(50));
    }
}
