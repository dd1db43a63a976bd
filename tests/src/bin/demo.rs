//! `cargo xtask demo`: the seed's tight policy on a lab of two network namespaces.
//!
//! Builds the lab, starts servers on both sides, attaches the firewall with
//! examples/tight.toml (its interface set to the lab's), sends traffic the policy allows
//! and traffic it refuses, blocks a peer for 3 s (which the kernel lifts by itself),
//! prints what happened and `firewall list -nv`, and cleans up.
//! Exits 1 if any probe saw something the policy does not say.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::ExitCode,
    time::Duration,
};

use tests::lab::{BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, STRANGER, STRANGER2, ping_received};

const SSH_PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
const MIRROR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);

enum Proto {
    Tcp,
    Udp,
}

struct Probe {
    what: &'static str,
    proto: Proto,
    from: Ipv4Addr,
    to: SocketAddrV4,
    allowed: bool,
}

fn main() -> ExitCode {
    tests::require_root();
    let lab = Lab::new("demo");
    println!("The lab: namespace {} is the server (198.51.100.1 on s0),", lab.server);
    println!("namespace {} is the world: every peer of examples/tight.toml, and strangers.\n", lab.client);

    let at = |ip, port| SocketAddrV4::new(ip, port);
    for port in [122, 80, 443, 25, 8080] {
        lab.tcp_echo(at(HOST, port));
    }
    lab.tcp_echo(at(DNS, 53));
    lab.udp_echo(at(DNS, 53));
    lab.udp_echo(at(STRANGER2, 53));
    lab.tcp_echo(at(MIRROR, 80));
    lab.tcp_echo(at(STRANGER, 80));

    println!(
        "Before the firewall, a stranger reaches the SSH port: {:?}",
        lab.tcp_probe(STRANGER, at(HOST, 122), OPEN_WITHIN)
    );
    print!("\n$ firewall up --policy tight.toml --iface s0\n{}", lab.up());

    let probes = [
        Probe {
            what: "ssh in from a listed peer",
            proto: Proto::Tcp,
            from: SSH_PEER,
            to: at(HOST, 122),
            allowed: true,
        },
        Probe {
            what: "ssh in from a stranger",
            proto: Proto::Tcp,
            from: STRANGER,
            to: at(HOST, 122),
            allowed: false,
        },
        Probe {
            what: "https in from anyone",
            proto: Proto::Tcp,
            from: STRANGER,
            to: at(HOST, 443),
            allowed: true,
        },
        Probe {
            what: "port 8080 in (not a service)",
            proto: Proto::Tcp,
            from: STRANGER,
            to: at(HOST, 8080),
            allowed: false,
        },
        Probe {
            what: "smtp in from a stranger",
            proto: Proto::Tcp,
            from: STRANGER,
            to: at(HOST, 25),
            allowed: false,
        },
        Probe {
            what: "dns out to our resolver (udp)",
            proto: Proto::Udp,
            from: HOST,
            to: at(DNS, 53),
            allowed: true,
        },
        Probe {
            what: "dns out to our resolver (tcp)",
            proto: Proto::Tcp,
            from: HOST,
            to: at(DNS, 53),
            allowed: true,
        },
        Probe {
            what: "dns out to another resolver",
            proto: Proto::Udp,
            from: HOST,
            to: at(STRANGER2, 53),
            allowed: false,
        },
        Probe {
            what: "http out to the mirror",
            proto: Proto::Tcp,
            from: HOST,
            to: at(MIRROR, 80),
            allowed: true,
        },
        Probe {
            what: "http out to another server",
            proto: Proto::Tcp,
            from: HOST,
            to: at(STRANGER, 80),
            allowed: false,
        },
    ];
    println!("\n{:<34} {:<38} {:<8} seen", "probe", "from -> to", "policy");
    let mut wrong = 0;
    for p in &probes {
        let outcome = match p.proto {
            // An allowed probe returns as soon as it is answered; a refused one waits out
            // its timeout.
            Proto::Tcp => lab.tcp_probe(p.from, p.to, if p.allowed { OPEN_WITHIN } else { BLOCKED_AFTER }),
            Proto::Udp => lab.udp_probe(p.from, p.to, if p.allowed { OPEN_WITHIN } else { BLOCKED_AFTER }),
        };
        let ok = (outcome == Outcome::Open) == p.allowed;
        wrong += usize::from(!ok);
        println!(
            "{:<34} {:<38} {:<8} {:?}{}",
            p.what,
            format!("{} -> {}", p.from, p.to),
            if p.allowed { "allow" } else { "drop" },
            outcome,
            if ok { "" } else { "   <-- not what the policy says" }
        );
    }

    // Ping: the burst of 5, then one a second.
    let ping = lab.spawn(
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.client,
                "ping",
                "-q",
                "-c",
                "20",
                "-i",
                "0.1",
                "-W",
                "1",
                &HOST.to_string(),
            ])
            .stdout(std::process::Stdio::piped()),
    );
    let out = lab.wait(ping);
    let summary = String::from_utf8_lossy(&out.stdout);
    let line = summary.lines().find(|l| l.contains("received")).unwrap_or("no summary").to_owned();
    let received = ping_received(&summary);
    let ping_ok = (5..=8).contains(&received);
    wrong += usize::from(!ping_ok);
    println!(
        "{:<34} {:<38} {:<8} {line}",
        "20 pings in 2 s (1/sec, burst 5)",
        format!("{STRANGER2} -> {HOST}"),
        "limit"
    );

    // A block for 3 s, which the kernel lifts by itself: no command runs after it.
    let ssh = at(HOST, 122);
    print!(
        "\n$ firewall block {SSH_PEER} --for 3s\n{}",
        lab.firewall_ok(&["block", &SSH_PEER.to_string(), "--for", "3s"])
    );
    let blocked = lab.tcp_probe(SSH_PEER, ssh, BLOCKED_AFTER);
    std::thread::sleep(Duration::from_millis(3200));
    let after = lab.tcp_probe(SSH_PEER, ssh, OPEN_WITHIN);
    let block_ok = blocked == Outcome::Blocked && after == Outcome::Open;
    wrong += usize::from(!block_ok);
    println!(
        "{:<34} {:<38} {:<8} {blocked:?}, then after 3 s {after:?}{}",
        "ssh in from the blocked peer",
        format!("{SSH_PEER} -> {ssh}"),
        "block",
        if block_ok { "" } else { "   <-- not what the block says" }
    );

    std::thread::sleep(Duration::from_millis(100));
    // The listing, cut to the lines that counted something: what the traffic above did.
    let listing = lab.firewall_ok(&["list", "-nv"]);
    println!(
        "\n$ firewall list -nv   (only the lines that counted packets; the full listing has every rule)"
    );
    for line in listing.lines() {
        let counted = line
            .split_whitespace()
            .next()
            .is_some_and(|n| n != "0" && n.chars().all(|c| c.is_ascii_digit() || c == 'K' || c == 'M'));
        if line.starts_with("Chain ") || line.trim_start().starts_with("pkts") || counted || line.is_empty() {
            println!("{line}");
        }
    }
    print!("\n$ firewall down\n{}", lab.firewall_ok(&["down"]));
    drop(lab);
    if wrong == 0 {
        println!("\nEvery probe matched the policy. The lab is gone.");
        ExitCode::SUCCESS
    } else {
        println!("\n{wrong} probe(s) did not match the policy.");
        ExitCode::FAILURE
    }
}
