//! The maps' sizes follow the policy (`kernel::resize`): `up` sizes them from it, and a
//! change that needs more room, or leaves far too much, resizes them live by migration.
//! Across each resize a TCP session held open keeps going, its tracked flow and the
//! counters are kept, and the programs are swapped in the same links. A dry run announces
//! a resize and makes none; `list --json` reports each map's memory as the kernel
//! accounts it.
use std::{
    fs,
    net::{Ipv4Addr, SocketAddrV4},
};

use aya::maps::MapData;
use firewall_common::{
    BLOCK_COUNTER_BASE, MAP_ALLOW_EXACT, MAP_CONNTRACK, MAP_COUNTERS, MAP_HALF_OPEN, MAP_PER_SOURCE_BUCKETS,
    MAP_PER_SOURCE_CONNECTIONS, MAP_PORT_INTERVALS, MAP_RULE_UIDS,
};
use tests::{
    harness::pinned_memlock,
    lab::{
        BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, SERVER_IF, STRANGER, STRANGER2, stderr, stdout,
        still_alive,
    },
    require_root,
};

const SSH_PEER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);

/// The live map `name`'s size, as the kernel made it.
fn max_entries(lab: &Lab, name: &str) -> u32 {
    let map = MapData::from_pin(lab.pin_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    map.info().expect("map info").max_entries()
}

/// The flow from `peer` in `conntrack --json=1`, if any.
fn tracked(lab: &Lab, peer: Ipv4Addr) -> bool {
    let report: serde_json::Value =
        serde_json::from_str(&lab.firewall_ok(&["conntrack", "--json=1"])).expect("conntrack --json=1");
    report["flows"].as_array().expect("flows").iter().any(|f| f["src"] == peer.to_string())
}

/// `count` addresses of 10.1.0.0/16, one a peer.
fn peers(count: u32) -> Vec<String> {
    (0..count).map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 1)) + i).to_string()).collect()
}

#[test]
fn up_sizes_the_maps_from_the_policy() {
    require_root();
    let lab = Lab::new("mem-sized");
    lab.up();
    // The tight policy: some 40 exact entries, no per_source, no ranges, no uids.
    for (map, size) in [
        (MAP_ALLOW_EXACT, 1024),
        (MAP_RULE_UIDS, 1024),
        (MAP_CONNTRACK, 65_536),
        (MAP_HALF_OPEN, 16_384),
        (MAP_PER_SOURCE_BUCKETS, 1),
        (MAP_PER_SOURCE_CONNECTIONS, 1),
        (MAP_PORT_INTERVALS, 1),
        // Room for 64 blocks' counters, not the 4,096 the programs can count.
        (MAP_COUNTERS, BLOCK_COUNTER_BASE + 128),
    ] {
        assert_eq!(max_entries(&lab, map), size, "{map}");
    }
    // It was 46.8 MiB when every map had the size of the largest policy: 32 MiB of them
    // the exact-peer hash's buckets.
    let total: u64 = pinned_memlock(&lab.pin_dir()).iter().map(|(_, bytes)| bytes).sum();
    assert!(total < 21 << 19, "all maps together take {total} bytes, over 10.5 MiB");
}

#[test]
fn allow_past_the_capacity_grows_the_map_and_revoke_shrinks_it_flows_kept() {
    require_root();
    let lab = Lab::new("mem-grow");
    lab.tcp_echo(SSH);
    lab.up();
    let mut held = lab.held_session(SSH_PEER, SSH);
    let programs = lab.program_ids();
    let counted = lab.list().packets("INPUT", "ssh-in");

    // 2,100 peers more in one `allow`: some 2,140 entries, past the 1,024 the map had.
    let mut many = peers(2100);
    many.push(STRANGER.to_string());
    let mut args = vec!["allow", "ssh-in"];
    args.extend(many.iter().map(String::as_str));
    let out = lab.firewall_ok(&args);
    assert!(out.contains("ALLOW_EXACT resized from 1024 to 8192 entries"), "{out}");
    assert_eq!(max_entries(&lab, MAP_ALLOW_EXACT), 8192);
    assert!(tracked(&lab, SSH_PEER), "the held session's flow was copied to the new programs' maps");
    still_alive(&mut held, "after the allow-list grew");
    let (xdp, tc) = lab.program_ids();
    assert!(
        xdp != programs.0 && tc.len() == 1 && tc != programs.1,
        "swapped in their links: {programs:?} {tc:?}"
    );
    assert!(lab.list().packets("INPUT", "ssh-in") > counted, "the counters are kept");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, OPEN_WITHIN), Outcome::Open, "a peer allowed by the grown map");
    assert_eq!(lab.tcp_probe(STRANGER2, SSH, BLOCKED_AFTER), Outcome::Blocked, "one not allowed");

    // An allow that fits changes no program.
    let programs = lab.program_ids();
    let out = lab.firewall_ok(&["allow", "ssh-in", "10.2.0.1"]);
    assert!(!out.contains("resized"), "{out}");
    assert_eq!(lab.program_ids(), programs);

    // Revoked again: the map is four times what the policy needs, and shrinks back.
    many.push("10.2.0.1".into());
    let mut args = vec!["revoke", "ssh-in"];
    args.extend(many.iter().map(String::as_str));
    let out = lab.firewall_ok(&args);
    assert!(out.contains("ALLOW_EXACT resized from 8192 to 1024 entries"), "{out}");
    assert_eq!(max_entries(&lab, MAP_ALLOW_EXACT), 1024);
    assert!(tracked(&lab, SSH_PEER));
    still_alive(&mut held, "after the allow-list shrank");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "revoked");
    assert_eq!(
        lab.tcp_probe(Ipv4Addr::new(203, 0, 113, 8), SSH, OPEN_WITHIN),
        Outcome::Open,
        "the policy's own peer"
    );
    // No staging pin is left behind.
    let stray: Vec<_> = fs::read_dir(lab.pin_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with("-resized"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// The packets `blocklist --json=1` counted in from `prefix`.
fn blocked_packets_in(lab: &Lab, prefix: &str) -> u64 {
    let report: serde_json::Value =
        serde_json::from_str(&lab.firewall_ok(&["blocklist", "--json=1"])).expect("blocklist --json=1");
    let blocks = report["blocks"].as_array().expect("blocks");
    let block =
        blocks.iter().find(|b| b["prefix"] == prefix).unwrap_or_else(|| panic!("no {prefix}: {report}"));
    block["packets_in"].as_u64().expect("packets_in")
}

/// `COUNTERS` is a per-CPU array, its size paid on every CPU: `up` makes room for 64
/// blocks' counters, and a block (or a named list) that takes a slot past them grows it
/// by migration, the counts kept.
#[test]
fn a_block_past_the_counters_room_grows_them_counts_and_sessions_kept() {
    require_root();
    let lab = Lab::new("mem-counters");
    lab.tcp_echo(SSH);
    lab.up();
    let mut held = lab.held_session(SSH_PEER, SSH);
    let stranger = STRANGER.to_string();
    lab.firewall_ok(&["block", &stranger]);
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);
    let counted = blocked_packets_in(&lab, &stranger);
    assert!(counted > 0, "the block counts its packets");
    let ssh_counted = lab.list().packets("INPUT", "ssh-in");

    // 64 more: the last takes slot 64, past the room for 64.
    let more: Vec<String> = (1..=64).map(|i| format!("192.0.2.{i}")).collect();
    let mut args = vec!["block"];
    args.extend(more.iter().map(String::as_str));
    let out = lab.firewall_ok(&args);
    let (from, to) = (BLOCK_COUNTER_BASE + 128, BLOCK_COUNTER_BASE + 256);
    assert!(
        out.contains(&format!("firewall: COUNTERS resized from {from} to {to} entries to fit the blocks")),
        "{out}"
    );
    assert_eq!(max_entries(&lab, MAP_COUNTERS), to);
    still_alive(&mut held, "after the counters grew");
    assert!(tracked(&lab, SSH_PEER), "the held session's flow was copied");
    assert_eq!(blocked_packets_in(&lab, &stranger), counted, "the block's count was copied");
    assert!(lab.list().packets("INPUT", "ssh-in") > ssh_counted, "the rules' counts were copied");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked);
    assert!(blocked_packets_in(&lab, &stranger) > counted, "and go on counting");
    assert_eq!(blocked_packets_in(&lab, "192.0.2.64"), 0, "the new slot's, from zero");

    // A named list past them grows them again, in one step to the room it needs.
    let file = lab.tmp().join("feed.txt");
    fs::write(&file, "198.18.0.0/24\n").unwrap();
    let more: Vec<String> = (65..=127).map(|i| format!("192.0.2.{i}")).collect();
    let mut args = vec!["block"];
    args.extend(more.iter().map(String::as_str));
    let out = lab.firewall_ok(&args);
    assert!(!out.contains("resized"), "slots 65 to 127 fit: {out}");
    let out = lab.firewall_ok(&["block", "--from", file.to_str().unwrap()]);
    assert!(out.contains(&format!("COUNTERS resized from {to} to {}", BLOCK_COUNTER_BASE + 512)), "{out}");
    still_alive(&mut held, "after the counters grew again");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "the blocks hold");
}

/// `up` over a live filter applies the new policy to the new maps before the swap, then
/// copies the flows the old programs hold once more, which brings back one the policy
/// ended: the flows are judged again after it (before, a revoked peer's session went on,
/// tracked as if allowed).
#[test]
fn an_up_that_resizes_the_flow_tables_keeps_ended_the_flows_its_policy_ends() {
    require_root();
    let lab = Lab::new("mem-up-ends");
    lab.tcp_echo(SSH);
    lab.up();
    let held = lab.held_session(SSH_PEER, SSH);
    assert!(tracked(&lab, SSH_PEER));
    let text = fs::read_to_string(lab.policy_file()).unwrap();
    let revoked = text
        .replacen("peers = [\"203.0.113.7\", \"203.0.113.8\"]", "peers = [\"203.0.113.8\"]", 1)
        .replacen("max_entries = 65536", "max_entries = 131072", 1)
        .replacen("max_half_open = 16384", "max_half_open = 32768", 1);
    assert!(
        !revoked.contains("203.0.113.7") && revoked.contains("max_half_open = 32768"),
        "the tight policy's ssh-in and [conntrack]"
    );
    let file = lab.tmp().join("revoked.toml");
    fs::write(&file, revoked).unwrap();
    let out = lab.firewall_ok(&["up", "--policy", file.to_str().unwrap(), "--iface", SERVER_IF]);
    // Both flow tables, wherever the session's flow is.
    assert!(out.contains("CONNTRACK resized from 65536 to 131072 entries"), "{out}");
    assert!(out.contains("HALF_OPEN resized from 16384 to 32768 entries"), "{out}");
    assert!(!tracked(&lab, SSH_PEER), "the revoked peer's flow stays ended");
    drop(held);
    assert_eq!(
        lab.tcp_probe(SSH_PEER, SSH, BLOCKED_AFTER),
        Outcome::Blocked,
        "and its new sessions are refused"
    );
}

#[test]
fn a_changed_conntrack_size_and_a_new_per_source_limit_apply_by_reload() {
    require_root();
    let lab = Lab::new("mem-conntrack");
    lab.tcp_echo(SSH);
    lab.up();
    let mut held = lab.held_session(SSH_PEER, SSH);
    let text = fs::read_to_string(lab.policy_file()).unwrap();
    let sized = "max_entries = 65536";
    assert!(text.contains(sized), "the tight policy's [conntrack]");

    // Larger: the flow table grows, the session and its flow stay.
    let larger = lab.tmp().join("larger.toml");
    fs::write(&larger, text.replacen(sized, "max_entries = 131072", 1)).unwrap();
    let out = lab.firewall_ok(&["reload", "--policy", larger.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("reload --json");
    assert_eq!(
        report["resized"],
        serde_json::json!([{ "map": "CONNTRACK", "from": 65536, "to": 131_072 }]),
        "{report:#}"
    );
    assert_eq!(max_entries(&lab, MAP_CONNTRACK), 131_072);
    assert!(tracked(&lab, SSH_PEER));
    still_alive(&mut held, "after the flow table grew");
    let listing = lab.firewall_ok(&["list"]);
    assert!(listing.contains(" of 131,072 established"), "list shows the new size: {listing}");

    // Smaller, with a per_source limit on ssh-in: the flow table shrinks to it, the
    // sources' buckets grow from one entry to theirs.
    let smaller = lab.tmp().join("smaller.toml");
    let limited = text.replacen(sized, "max_entries = 4096", 1).replacen(
        "name = \"ssh-in\"",
        "name = \"ssh-in\"\nper_source = { limit = \"3/min\" }",
        1,
    );
    assert_ne!(limited, text.replacen(sized, "max_entries = 4096", 1), "the ssh-in rule");
    fs::write(&smaller, limited).unwrap();
    let out = lab.firewall_ok(&["reload", "--policy", smaller.to_str().unwrap()]);
    assert!(out.contains("CONNTRACK resized from 131072 to 4096 entries"), "{out}");
    assert!(out.contains("PER_SOURCE_BUCKETS resized from 1 to 16384 entries"), "{out}");
    assert_eq!(max_entries(&lab, MAP_CONNTRACK), 4096);
    assert!(tracked(&lab, SSH_PEER));
    still_alive(&mut held, "after the flow table shrank");
    // The limit is in force on the grown map: a source's fourth new flow in a minute is
    // refused (the other peer's, the held session's being the first of its own).
    let other = Ipv4Addr::new(203, 0, 113, 8);
    for n in 1..=3 {
        assert_eq!(lab.tcp_probe(other, SSH, OPEN_WITHIN), Outcome::Open, "connection {n}");
    }
    assert_eq!(lab.tcp_probe(other, SSH, BLOCKED_AFTER), Outcome::Blocked, "the fourth within a minute");
    still_alive(&mut held, "at the end");
}

#[test]
fn a_dry_run_announces_a_resize_makes_none_and_the_reload_makes_it() {
    require_root();
    let lab = Lab::new("mem-dry-run");
    lab.tcp_echo(SSH);
    lab.up();
    let mut held = lab.held_session(SSH_PEER, SSH);
    let text = fs::read_to_string(lab.policy_file()).unwrap();
    let listed = r#"peers = ["203.0.113.7", "203.0.113.8"]"#;
    assert!(text.contains(listed), "the lab policy's ssh-in");
    // 1,500 peers more: some 1,540 exact entries, past the 512 that half of 1,024 holds.
    let quoted: Vec<String> = peers(1500).iter().map(|p| format!("\"{p}\"")).collect();
    let many = lab.tmp().join("many.toml");
    fs::write(
        &many,
        text.replacen(
            listed,
            &format!(r#"peers = ["203.0.113.7", "203.0.113.8", {}]"#, quoted.join(", ")),
            1,
        ),
    )
    .unwrap();
    let path = many.to_str().unwrap();
    let programs = lab.program_ids();

    let dry = lab.firewall(&["reload", "--dry-run", "--policy", path]);
    assert_eq!(dry.status.code(), Some(3), "{}{}", stdout(&dry), stderr(&dry));
    let said = stdout(&dry);
    assert!(
        said.contains(
            "\n  resize ALLOW_EXACT from 1024 to 4096 entries (programs swapped in place, flows kept)\n"
        ),
        "{said}"
    );
    assert_eq!(said.matches("resize ").count(), 1, "only the exact-peer hash: {said}");
    // `check --diff` says it from the same code.
    let diff = lab.firewall(&["check", path, "--diff", "--iface", SERVER_IF]);
    assert_eq!((diff.status.code(), stdout(&diff)), (Some(3), said.clone()), "{}", stderr(&diff));
    let dry = lab.firewall(&["reload", "--dry-run", "--policy", path, "--json"]);
    assert_eq!(dry.status.code(), Some(3), "{}", stderr(&dry));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("reload --dry-run --json");
    assert_eq!(report["changed"], true, "{report:#}");
    assert_eq!(
        report["resized"],
        serde_json::json!([{ "map": "ALLOW_EXACT", "from": 1024, "to": 4096 }]),
        "{report:#}"
    );

    // Nothing changed: the map's size, the programs, the policy in force.
    assert_eq!(max_entries(&lab, MAP_ALLOW_EXACT), 1024);
    assert_eq!(lab.program_ids(), programs, "no program swapped");
    let nothing = lab.firewall(&["reload", "--dry-run"]);
    assert_eq!(nothing.status.code(), Some(0), "the file in force is unchanged: {}", stdout(&nothing));

    // The reload resizes to the size announced.
    let out = lab.firewall_ok(&["reload", "--policy", path, "--json"]);
    let done: serde_json::Value = serde_json::from_str(&out).expect("reload --json");
    assert_eq!(done["resized"], report["resized"], "{done:#}");
    assert_eq!(max_entries(&lab, MAP_ALLOW_EXACT), 4096);
    assert!(tracked(&lab, SSH_PEER));
    still_alive(&mut held, "after the resize the dry run announced");
    let again = lab.firewall(&["reload", "--dry-run"]);
    assert_eq!(again.status.code(), Some(0), "nothing more to do: {}", stdout(&again));
}

#[test]
fn list_json_reports_each_maps_memory_as_the_kernel_accounts_it() {
    require_root();
    let lab = Lab::new("mem-list");
    lab.up();
    let listing = lab.list().0;
    let memory = listing["memory"].as_object().unwrap_or_else(|| panic!("no memory in {listing:#}"));
    let kernel = pinned_memlock(&lab.pin_dir());
    let read = |name: &str| memory.get(name).and_then(serde_json::Value::as_u64);
    let conntrack = kernel.iter().find(|(name, _)| *name == MAP_CONNTRACK).expect("CONNTRACK pinned").1;
    assert!(conntrack > 0);
    assert_eq!(read(MAP_CONNTRACK), Some(conntrack), "{memory:?}");
    // Every map, and the total their sum.
    for (name, bytes) in &kernel {
        assert_eq!(read(name), Some(*bytes), "{name}");
    }
    assert_eq!(memory.len(), kernel.len() + 1, "each map and the total: {memory:?}");
    let sum: u64 = memory.iter().filter(|(name, _)| *name != "total").filter_map(|(_, b)| b.as_u64()).sum();
    assert_eq!(read("total"), Some(sum), "{memory:?}");
}
