//! Named blocklists: `firewall block --from FILE [--list NAME] [--for DURATION]` loads a
//! feed's prefixes as one list, counted on one line each way, replaced in place by the
//! next load (only what changed touches the map), expired by the kernel at its deadline,
//! and lifted whole by `unblock --list NAME`.
//!
//! Run as root after `cargo build --release`:
//! `cargo test --release -p tests --test integration block_lists:: -- --nocapture`.
use std::{
    fs,
    io::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    process::{Output, Stdio},
};

use aya::maps::{LpmTrie, Map, MapData};

use serde_json::Value;
use tests::{
    lab::{
        BLOCKED_AFTER, HOST, Lab, OPEN_WITHIN, Outcome, STRANGER, assert_fails, assert_fails_with, echo,
        firewall_bin, stderr, stdout,
    },
    require_root,
};

/// examples/tight.toml's ssh-in rule: port 122, peers 203.0.113.7 and .8.
const SSH: SocketAddrV4 = SocketAddrV4::new(HOST, 122);
const ADMIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const OTHER_ADMIN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 8);
/// examples/tight.toml's repo rule: out to port 80 of these.
const REPO: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 80), 80);

fn write(lab: &Lab, name: &str, text: &str) -> PathBuf {
    let path = lab.tmp().join(name);
    fs::write(&path, text).unwrap();
    path
}

/// `blocklist --json=1`'s lists, by name.
fn lists(lab: &Lab) -> Vec<Value> {
    let out = lab.firewall_ok(&["blocklist", "--json=1"]);
    let report = serde_json::from_str::<Value>(&out).expect("blocklist --json=1 is JSON");
    report["lists"].as_array().expect("lists").clone()
}

/// `firewall ARGS…` in the server namespace, given `input` on its standard input.
fn with_stdin(lab: &Lab, args: &[&str], input: &str) -> Output {
    let mut command = lab.server_command(firewall_bin());
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    child.stdin.take().expect("piped").write_all(input.as_bytes()).expect("writing its input");
    child.wait_with_output().expect("its output")
}

/// How many entries the live filter's trie `name` holds, counted from its pin.
fn trie_entries(lab: &Lab, name: &str) -> usize {
    let data = MapData::from_pin(lab.pin_dir().join(name)).expect("the pinned trie");
    let trie: LpmTrie<MapData, firewall_common::Addr, u32> =
        LpmTrie::try_from(Map::LpmTrie(data)).expect("an LPM trie");
    trie.keys().count()
}

fn list<'a>(lists: &'a [Value], name: &str) -> &'a Value {
    lists.iter().find(|l| l["name"] == name).unwrap_or_else(|| panic!("no list {name} in {lists:?}"))
}

#[test]
fn a_named_list_blocks_its_prefixes_both_ways_and_a_new_load_replaces_it_in_place() {
    require_root();
    let lab = Lab::new("lists");
    lab.tcp_echo(SSH);
    lab.tcp_echo(REPO);
    lab.up();
    let mut session =
        lab.tcp_connect(ADMIN, SSH, OPEN_WITHIN).unwrap_or_else(|o| panic!("the admin's session: {o:?}"));
    echo(&mut session, b"hello\n", OPEN_WITHIN).expect("the session echoes");

    // A feed as FireHOL and Spamhaus write them: comments of both kinds, blank lines.
    let feed = write(
        &lab,
        "feed.txt",
        "# a feed\n203.0.113.7\n\n203.0.113.80 ; SBL1\n10.0.0.0/16\n2001:db8:bad::/48   # v6\n",
    );
    let out = lab.firewall_ok(&["block", "--from", feed.to_str().unwrap()]);
    assert_eq!(out, "firewall: list feed on s0 blocks 4 prefixes: 4 added, 0 removed; 1 flows ended\n");
    assert!(
        echo(&mut session, b"still there?\n", BLOCKED_AFTER).is_err(),
        "the listed peer's session goes on"
    );
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "from a listed peer");
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked, "to a listed peer");
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "a peer not listed");
    assert_ne!(lab.config_flags() & firewall_common::CONFIG_HAS_BLOCKS, 0, "the programs look in the tries");

    // One line each way for the list, as iptables shows an ipset's, with its counters.
    let found = lists(&lab);
    let feed_list = list(&found, "feed");
    assert_eq!(feed_list["entries"], 4, "{feed_list}");
    let (in_before, out_before) =
        (feed_list["packets_in"].as_u64().unwrap(), feed_list["packets_out"].as_u64().unwrap());
    assert!(in_before > 0 && out_before > 0, "{feed_list}");
    let text = lab.firewall_ok(&["list", "-nv"]);
    let input = &text[..text.find("Chain OUTPUT").unwrap()];
    let line = input.lines().find(|l| l.contains("match-set feed src (4 prefixes)")).expect("INPUT's line");
    assert!(line.contains("DROP") && line.contains("blocklist"), "{line}\n{text}");
    assert!(text.contains("match-set feed dst (4 prefixes)"), "{text}");
    assert!(lab.list().packets("INPUT", "blocklist") >= in_before);
    let blocklist = lab.firewall_ok(&["blocklist"]);
    assert!(blocklist.lines().any(|l| l.starts_with("feed ") && l.contains(" 4 ")), "{blocklist}");

    // A listed address is no entry of its own to unblock; the error says what to do.
    assert_fails(
        &lab.firewall(&["unblock", "203.0.113.7"]),
        "203.0.113.7 is blocked by the list feed: load the list again without it",
    );
    // A reload leaves the lists alone: they are not the policy's.
    lab.firewall_ok(&["reload"]);
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "after a reload");

    // Loaded again under its name, from standard input: the admin leaves it, a stranger
    // joins; the repository stays blocked throughout, and the list's counters go on.
    let refreshed = with_stdin(
        &lab,
        &["block", "--from", "-", "--list", "feed"],
        &format!("203.0.113.80\n10.0.0.0/16\n2001:db8:bad::/48\n{STRANGER}\n"),
    );
    assert!(refreshed.status.success(), "{}", stderr(&refreshed));
    assert_eq!(
        stdout(&refreshed),
        "firewall: list feed on s0 blocks 4 prefixes: 1 added, 1 removed; 0 flows ended\n"
    );
    assert_eq!(lab.tcp_probe(ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "the admin left the list");
    assert_eq!(lab.tcp_probe(STRANGER, SSH, BLOCKED_AFTER), Outcome::Blocked, "the stranger joined it");
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked, "the repository stayed");
    let found = lists(&lab);
    assert!(list(&found, "feed")["packets_out"].as_u64().unwrap() > out_before, "its counters went on");
    let same = lab.firewall_ok(&["block", "--from", feed.to_str().unwrap(), "--list", "feed", "--json"]);
    let same: Value = serde_json::from_str(&same).unwrap();
    assert_eq!((same["added"].as_u64(), same["removed"].as_u64()), (Some(1), Some(1)), "{same}");

    // One prefix in two lists is blocked while either holds it.
    let extra = write(&lab, "extra.list", "203.0.113.80\n");
    lab.firewall_ok(&["block", "--from", extra.to_str().unwrap()]);
    let out = lab.firewall_ok(&["unblock", "--list", "feed"]);
    assert_eq!(out, "firewall: list feed on s0 removed: its 4 prefixes are no longer blocked by it\n");
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked, "the other list holds it");
    assert_eq!(lab.tcp_probe(ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "no list holds the admin");
    let before = list(&lists(&lab), "extra")["packets_out"].as_u64().unwrap();
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked);
    assert!(
        list(&lists(&lab), "extra")["packets_out"].as_u64().unwrap() > before,
        "counted on the list left"
    );
    lab.firewall_ok(&["unblock", "--list", "extra"]);
    assert_eq!(lab.tcp_probe(HOST, REPO, OPEN_WITHIN), Outcome::Open, "no list holds it now");
    assert_eq!(
        lab.config_flags() & firewall_common::CONFIG_HAS_BLOCKS,
        0,
        "the programs skip the tries again"
    );
    assert_eq!(lab.firewall_ok(&["blocklist"]), "no address is blocked\n");
}

#[test]
fn a_list_loaded_for_a_while_expires_in_the_kernel_and_the_lists_that_outlast_it_still_block() {
    require_root();
    let lab = Lab::new("listexpiry");
    lab.tcp_echo(SSH);
    lab.tcp_echo(REPO);
    lab.up();
    // Lists that last: a network around the admin, and the repository.
    let network = write(&lab, "network.txt", "203.0.113.0/29\n");
    lab.firewall_ok(&["block", "--from", network.to_str().unwrap()]);
    let repo = write(&lab, "repo.txt", "203.0.113.80\n");
    lab.firewall_ok(&["block", "--from", repo.to_str().unwrap()]);
    // A feed for a few seconds: the admin inside the network, the other admin alone, and
    // the repository, which the list that lasts counts.
    let feed = write(&lab, "feed.txt", "203.0.113.7\n203.0.113.8\n203.0.113.80\n");
    let out = lab.firewall_ok(&["block", "--from", feed.to_str().unwrap(), "--for", "4s"]);
    assert_eq!(
        out,
        "firewall: list feed on s0 blocks 3 prefixes for 4s: 3 added, 0 removed; 0 flows ended\n"
    );
    let found = lists(&lab);
    assert_eq!(list(&found, "feed")["expired"], false, "{found:?}");
    assert!(list(&found, "feed")["expires_secs"].as_u64().is_some_and(|s| (1..=4).contains(&s)), "{found:?}");
    assert_eq!(list(&found, "network")["expires_secs"], Value::Null, "{found:?}");
    let text = lab.firewall_ok(&["list", "-nv"]);
    assert!(text.contains("match-set feed src (3 prefixes, expires in "), "{text}");
    assert!(text.contains("match-set network src (1 prefixes)"), "{text}");

    let counted = |name: &str| list(&lists(&lab), name)["packets_in"].as_u64().unwrap();
    let (feed_before, network_before) = (counted("feed"), counted("network"));
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "the admin, while the feed lasts");
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "the other admin likewise");
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked, "the repository");
    assert!(counted("feed") > feed_before, "the feed's own prefixes count on it");
    assert_eq!(counted("network"), network_before, "the network's wider prefix is not asked");
    let repo_before = list(&lists(&lab), "repo")["packets_out"].as_u64().unwrap();
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked);
    assert!(
        list(&lists(&lab), "repo")["packets_out"].as_u64().unwrap() > repo_before,
        "a prefix of two lists counts on the one that lasts longer"
    );

    // Expired: the kernel's clock, with no command run.
    std::thread::sleep(std::time::Duration::from_millis(4500));
    let feed_before = counted("feed");
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "only the feed held him");
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "the network holds the admin");
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked, "the repo list holds it");
    assert_eq!(counted("feed"), feed_before, "an expired list counts nothing");
    assert!(counted("network") > network_before, "the admin's packets count on the network now");
    let found = lists(&lab);
    assert_eq!(
        (&list(&found, "feed")["expired"], &list(&found, "feed")["expires_secs"]),
        (&Value::Bool(true), &Value::from(0))
    );
    let text = lab.firewall_ok(&["list", "-nv"]);
    assert!(text.contains("match-set feed src (3 prefixes, expired)"), "{text}");
    let table = lab.firewall_ok(&["blocklist"]);
    assert!(
        table.lines().any(|l| l.starts_with("feed ") && l.contains("expired: blocks nothing")),
        "{table}"
    );

    // Loaded again: it blocks anew, the session opened meanwhile ends with it.
    let mut session = lab
        .tcp_connect(OTHER_ADMIN, SSH, OPEN_WITHIN)
        .unwrap_or_else(|o| panic!("the other admin's session: {o:?}"));
    echo(&mut session, b"hello\n", OPEN_WITHIN).expect("the session echoes");
    let out = lab.firewall_ok(&["block", "--from", feed.to_str().unwrap(), "--for", "1h"]);
    // (The other admin's flows: the session, and what is left of the probe before it.)
    assert!(
        out.starts_with("firewall: list feed on s0 blocks 3 prefixes for 1h: 0 added, 0 removed; ")
            && !out.ends_with("; 0 flows ended\n"),
        "{out}"
    );
    assert!(
        echo(&mut session, b"still there?\n", BLOCKED_AFTER).is_err(),
        "the session opened meanwhile ended"
    );
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "the feed blocks again");
    // Without --for, it lasts: and takes the repository's count from the list it now
    // outlasts no more than equals (the one loaded last).
    lab.firewall_ok(&["block", "--from", feed.to_str().unwrap()]);
    assert_eq!(list(&lists(&lab), "feed")["expires_secs"], Value::Null);
    lab.firewall_ok(&["unblock", "--list", "feed"]);
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "the feed removed");
    assert_eq!(lab.tcp_probe(HOST, REPO, BLOCKED_AFTER), Outcome::Blocked, "the repo list still holds it");
}

#[test]
fn a_filter_from_before_lists_expired_refuses_for_until_up_and_its_older_lists_then_expire_as_new_ones() {
    require_root();
    let lab = Lab::new("listolder");
    lab.tcp_echo(SSH);
    lab.up();
    // As an earlier version left it: no deadlines, and lists whose entries are their slot
    // alone.
    let pinned = lab.pin_dir().join(firewall_common::MAP_LIST_DEADLINES);
    fs::remove_file(&pinned).unwrap();
    let network = write(&lab, "network.txt", "203.0.113.0/29\n");
    lab.firewall_ok(&["block", "--from", network.to_str().unwrap()]);
    let feed = write(&lab, "feed.txt", "203.0.113.7\n203.0.113.8\n");
    lab.firewall_ok(&["block", "--from", feed.to_str().unwrap()]);
    assert_fails(
        &lab.firewall(&["block", "--from", feed.to_str().unwrap(), "--for", "1h"]),
        "the live filter's programs know no list that expires (an older version loaded them: its maps have no LIST_DEADLINES); `firewall up` with its policy replaces the programs in place (tracked flows and counters kept)",
    );
    assert_eq!(list(&lists(&lab), "feed")["expires_secs"], Value::Null, "nothing changed");
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked);

    lab.up();
    assert!(pinned.exists(), "up created and pinned LIST_DEADLINES");
    // The feed's older entries get their lengths with its first deadline, so that once it
    // expires the network's wider prefix is found behind them.
    lab.firewall_ok(&["block", "--from", feed.to_str().unwrap(), "--for", "3s"]);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "the feed expired");
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "the network holds the admin");
}

#[test]
fn a_bad_list_or_name_is_refused_in_one_line_and_changes_nothing() {
    require_root();
    let lab = Lab::new("badlist");
    lab.tcp_echo(SSH);
    lab.up();
    let feed = write(&lab, "feed.txt", "203.0.113.7\n");
    lab.firewall_ok(&["block", "--from", feed.to_str().unwrap()]);

    let bad = write(&lab, "bad.txt", "# ok so far\n192.0.2.1\n192.0.2.300\n");
    assert_fails(
        &lab.firewall(&["block", "--from", bad.to_str().unwrap(), "--list", "feed"]),
        &format!("{}:3: bad address \"192.0.2.300\"", bad.display()),
    );
    let host_bits = write(&lab, "bits.txt", "10.0.0.1/8\n");
    assert_fails(
        &lab.firewall(&["block", "--from", host_bits.to_str().unwrap()]),
        "bits.txt:1: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
    );
    assert_fails(
        &lab.firewall(&["block", "--from", feed.to_str().unwrap(), "--list", "../etc"]),
        "\"../etc\" is not a list name",
    );
    assert_fails(&lab.firewall(&["block", "--from", "-"]), "give it with --list NAME");
    assert_fails(&lab.firewall(&["block", "--from", "/nonexistent/feed.txt"]), "/nonexistent/feed.txt");
    assert_fails(&lab.firewall(&["unblock", "--list", "nosuch"]), "no list named nosuch (lists: feed)");
    assert_fails_with(
        &lab.firewall(&["block", "--from", feed.to_str().unwrap(), "--for", "1y"]),
        2,
        "\"1y\" is not a duration",
    );

    // Nothing changed: the list holds its one prefix, and it blocks.
    let found = lists(&lab);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(list(&found, "feed")["entries"], 1);
    assert_eq!(lab.tcp_probe(ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked);
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, OPEN_WITHIN), Outcome::Open);
}

#[test]
fn a_list_of_a_hundred_thousand_prefixes_loads_and_a_refresh_touches_only_what_changed() {
    require_root();
    let lab = Lab::new("biglist");
    lab.tcp_echo(SSH);
    lab.up();
    // 100,000 single addresses of 10/8, with a peer of ssh-in among them.
    let mut text: String =
        (0..100_000u32).map(|i| format!("{}\n", Ipv4Addr::from(0x0a00_0000 + i))).collect();
    text.push_str(&format!("{OTHER_ADMIN}\n"));
    let feed = write(&lab, "big.txt", &text);
    let out = lab.firewall_ok(&["block", "--from", feed.to_str().unwrap()]);
    assert!(out.contains("blocks 100001 prefixes: 100001 added, 0 removed"), "{out}");
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, BLOCKED_AFTER), Outcome::Blocked, "a listed peer");
    assert_eq!(lab.tcp_probe(ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "a peer not listed");
    let entries = trie_entries(&lab, firewall_common::MAP_BLOCK_LISTS);
    assert_eq!(entries, 100_001, "one trie entry per prefix");

    // The same feed again changes nothing; one line changed changes two entries.
    let out = lab.firewall_ok(&["block", "--from", feed.to_str().unwrap()]);
    assert!(out.contains("100001 prefixes: 0 added, 0 removed"), "{out}");
    let text = text.replace(&format!("{OTHER_ADMIN}\n"), "192.0.2.77\n");
    fs::write(&feed, text).unwrap();
    let out = lab.firewall_ok(&["block", "--from", feed.to_str().unwrap()]);
    assert!(out.contains("100001 prefixes: 1 added, 1 removed"), "{out}");
    assert_eq!(trie_entries(&lab, firewall_common::MAP_BLOCK_LISTS), 100_001);
    // The peer left the list: it connects again, and the list counts it no more.
    let listed = |lab: &Lab| list(&lists(lab), "big")["packets_in"].as_u64().unwrap();
    let on_list = listed(&lab);
    assert_eq!(lab.tcp_probe(OTHER_ADMIN, SSH, OPEN_WITHIN), Outcome::Open, "a peer let go");
    assert_eq!(listed(&lab), on_list, "counted on the list no more");
}
