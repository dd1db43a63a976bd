//! `cargo xtask bench`: the control plane's figures, measured on the real binary in a
//! lab namespace (needs root).
//!
//! - `up` and `reload` with 100,000 peers in one rule's allow-list;
//! - `reload` of 100,000 changes (every peer replaced: 100,000 entries added and
//!   100,000 removed), and of none.
//!
//! Each figure is the median of three runs, printed as a Markdown table.
use std::{fmt::Write as _, net::Ipv4Addr, time::Instant};

use tests::lab::{Lab, SERVER_IF};

const PEERS: u32 = 100_000;
const RUNS: usize = 3;

/// `count` distinct addresses from 100.64.0.0/10, starting at `offset`.
fn peers(count: u32, offset: u32) -> String {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let mut out = String::with_capacity(count as usize * 18);
    for i in 0..count {
        let _ = write!(out, "\"{}\", ", Ipv4Addr::from(base + offset + i));
    }
    out
}

/// The lab's policy with `ssh-in` admitting `list` instead of its two peers.
fn policy_with(lab: &Lab, list: &str) -> String {
    let text = std::fs::read_to_string(lab.policy_file()).expect("the lab's policy");
    let wanted = r#"peers = ["203.0.113.7", "203.0.113.8"]"#;
    assert!(text.contains(wanted), "examples/tight.toml's ssh-in changed");
    text.replacen(wanted, &format!("peers = [{list}\"203.0.113.7\"]"), 1)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn timed(lab: &Lab, args: &[&str]) -> f64 {
    let started = Instant::now();
    lab.firewall_ok(args);
    started.elapsed().as_secs_f64()
}

fn main() {
    tests::require_root();
    let lab = Lab::new("bench");
    let a = lab.tmp().join("a.toml");
    let b = lab.tmp().join("b.toml");
    std::fs::write(&a, policy_with(&lab, &peers(PEERS, 0))).expect("write a.toml");
    std::fs::write(&b, policy_with(&lab, &peers(PEERS, PEERS))).expect("write b.toml");
    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));

    let mut up = Vec::new();
    let mut same = Vec::new();
    let mut changes = Vec::new();
    for _ in 0..RUNS {
        up.push(timed(&lab, &["up", "--policy", a, "--iface", SERVER_IF]));
        same.push(timed(&lab, &["reload"]));
        // a → b: every peer replaced; the policy file switches to b.
        changes.push(timed(&lab, &["reload", "--policy", b]));
        lab.firewall_ok(&["down", "--iface", SERVER_IF]);
    }
    println!("| control plane, {PEERS} peers in one rule (median of {RUNS}) | seconds |");
    println!("| --- | ---: |");
    println!("| `up` (load, verify, fill, attach, pin) | {:.3} |", median(up));
    println!("| `reload`, nothing changed | {:.3} |", median(same));
    println!("| `reload`, {PEERS} added and {PEERS} removed | {:.3} |", median(changes));
}
