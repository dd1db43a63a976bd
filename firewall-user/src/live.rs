//! Changes to a live filter, without a reload of the programs: `reload`, `allow`,
//! `revoke`, `zero`, and the `conntrack` table.
//!
//! Each change is computed whole and validated before anything is touched, applied to
//! the maps with new entries before stale ones go (so no allowed flow meets a gap), and
//! written to the policy file last, atomically; if that write fails, the maps are put
//! back. A failure leaves the filter and the file as they were. Each holds the state
//! lock ([`lock`]) from its first reading of the live state to its last write, so that
//! changes at once happen one after the other, none lost.
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use firewall_common::{
    Direction, Flow, FlowKey, FlowTable, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, TCP_FIN_SEEN, TCP_OPEN,
    TCP_SYN_RECV, TCP_SYN_SENT, protocol_name,
};
use serde::Serialize;
use toml_edit::{DocumentMut, Item, Value};

use crate::{
    compile::{Ids, plan},
    files::{self, Perms},
    filter::{FilterError, if_index, require_root},
    lockout::SessionGuard,
    maps::{Applied, Enforcement, LiveMaps, dedup_flows},
    pins::{LiveState, Pins, PinsError, StateLock, io_err},
    policy::{self, Policy, PolicyError, Prefix, from_addr},
};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Boxed: attach errors are large, and every `Result` here would carry their size.
    #[error(transparent)]
    Filter(Box<FilterError>),
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error(transparent)]
    Maps(#[from] crate::maps::MapsError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{file}: no rule named {rule:?} (rules: {known})")]
    NoRule { file: String, rule: String, known: String },
    #[error("{file}: rule {rule:?} admits any peer; edit its peers to list addresses instead")]
    AnyPeer { file: String, rule: String },
    #[error(transparent)]
    BadAddress(#[from] crate::policy::PrefixError),
    #[error(transparent)]
    Block(#[from] crate::blocklist::BlockError),
    #[error("{addr} is not a peer of rule {rule:?}")]
    NotAPeer { addr: String, rule: String },
    #[error(
        "{file} changed since it was applied; run `firewall reload` first, or `allow`/`revoke` would apply those edits too"
    )]
    FileChanged { file: String },
    /// `message` is toml_edit's one-line message, not its error: that one's `Display` is a
    /// multi-line snippet.
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    #[error(transparent)]
    LockOut(#[from] crate::lockout::LockOut),
    #[error(transparent)]
    Files(#[from] crate::files::FileError),
}

pub type Result<T> = std::result::Result<T, LiveError>;

impl From<FilterError> for LiveError {
    fn from(err: FilterError) -> Self {
        LiveError::Filter(Box::new(err))
    }
}

/// The live filter a command works on: its pins, checked to still have an interface.
pub fn live(iface: Option<&str>) -> Result<Pins> {
    require_root()?;
    let pins = Pins::find(iface)?;
    if if_index(&pins.iface).is_none() {
        return Err(FilterError::InterfaceGone(pins.iface.clone()).into());
    }
    Ok(pins)
}

/// The state lock of the live filter a change works on: the interface given, or the only
/// one up; still up, and its interface still there, once the lock is held.
pub fn lock(iface: Option<&str>) -> Result<StateLock> {
    require_root()?;
    let lock = Pins::lock_up(iface)?;
    let iface = &lock.pins().iface;
    if if_index(iface).is_none() {
        return Err(FilterError::InterfaceGone(iface.clone()).into());
    }
    Ok(lock)
}

/// Applies `policy` to the live maps; on a failure part-way, puts the previous policy
/// back before reporting it.
fn apply(
    pins: &Pins,
    maps: &mut LiveMaps,
    state: &LiveState,
    policy: &Policy,
    enforcement: Option<Enforcement>,
) -> Result<(Ids, Applied)> {
    let ids = Ids::assign(policy, &state.ids);
    let was = maps.enforcement()?;
    match maps.apply(&plan(policy, &ids), &ids.new_counters(&state.ids), enforcement) {
        Ok(applied) => Ok((ids, applied)),
        Err(err) => {
            if let Ok(previous) = pins.policy() {
                let _ = maps.apply(&plan(&previous, &state.ids), &[], Some(was));
            }
            Err(err.into())
        }
    }
}

/// What `reload` did.
pub struct Reloaded {
    pub pins: Pins,
    pub file: PathBuf,
    pub applied: Applied,
    /// The filter's mode now.
    pub enforcement: Enforcement,
}

/// Re-reads the policy (the file `up` was given, or `file`) and brings the live maps to
/// it. Programs stay attached; counters and still-admitted flows are kept. `enforcement`
/// and `session_guard` as for [`crate::filter::up`].
pub fn reload(
    lock: &StateLock,
    file: Option<&Path>,
    enforcement: Option<Enforcement>,
    session_guard: SessionGuard,
) -> Result<Reloaded> {
    lock.refuse_if_pending()?;
    let state = lock.pins().live_state()?;
    let file = match file {
        Some(f) => std::path::absolute(f).map_err(io_err("resolving", f))?,
        None => state.policy_file.clone(),
    };
    let text = std::fs::read_to_string(&file).map_err(io_err("reading", &file))?;
    reload_text(lock, &text, &file, enforcement, session_guard)
}

/// Brings the live maps to the policy `text` (read from `file`, which later commands use).
pub fn reload_text(
    lock: &StateLock,
    text: &str,
    file: &Path,
    enforcement: Option<Enforcement>,
    session_guard: SessionGuard,
) -> Result<Reloaded> {
    let pins = lock.pins().clone();
    let state = pins.live_state()?;
    let policy = policy::parse(text, file)?;
    let mut maps = LiveMaps::open(&pins)?;
    guard(&maps, &policy, &pins, enforcement, session_guard)?;
    let (ids, applied) = apply(&pins, &mut maps, &state, &policy, enforcement)?;
    let file = file.to_owned();
    lock.save(text, &LiveState { policy_file: file.clone(), ids })?;
    let enforcement = maps.enforcement()?;
    Ok(Reloaded { pins, file, applied, enforcement })
}

/// The lock-out guard for the live filter `maps` with `policy`, in the mode `enforcement`
/// sets or the one it is in.
fn guard(
    maps: &LiveMaps,
    policy: &Policy,
    pins: &Pins,
    enforcement: Option<Enforcement>,
    session_guard: SessionGuard,
) -> Result<()> {
    let mode = enforcement.map_or_else(|| maps.enforcement(), Ok)?;
    crate::lockout::guard_in(policy, &pins.iface, mode, session_guard)?;
    Ok(())
}

/// The addresses and prefixes a command was given, each checked.
pub(crate) fn parse_prefixes(addrs: &[String]) -> Result<Vec<Prefix>> {
    addrs.iter().map(|a| Ok(Prefix::parse(a)?)).collect()
}

/// What `allow` or `revoke` did.
pub struct PeersChanged {
    pub file: PathBuf,
    /// The addresses that changed (an `allow` of a peer already there changes nothing).
    pub changed: Vec<Prefix>,
}

/// Which way `allow` and `revoke` change a rule's peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    Allow,
    Revoke,
}

/// Adds (`allow`) or removes (`revoke`) peers of one rule, in the live maps at once and
/// in the policy file, comments and layout kept. A revoke that would cut off the SSH
/// session this runs from is refused unless [`SessionGuard::Skip`].
pub fn change_peers(
    iface: Option<&str>,
    rule: &str,
    addrs: &[String],
    change: PeerChange,
    session_guard: SessionGuard,
) -> Result<PeersChanged> {
    let prefixes = parse_prefixes(addrs)?;
    let lock = lock(iface)?;
    lock.refuse_if_pending()?;
    let pins = lock.pins();
    let state = pins.live_state()?;
    let file = state.policy_file.clone();
    let name = file.display().to_string();
    // Rewritten below: read through no link, its mode and owner kept.
    let (text, meta) = files::read_regular(&file)?;
    if text != pins.policy_text()? {
        return Err(LiveError::FileChanged { file: name });
    }

    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| LiveError::Toml {
        file: name.clone(),
        message: e.message().to_owned(),
    })?;
    let peers = rule_peers(&mut doc, rule, &name)?;
    let present = |peers: &toml_edit::Array, p: &Prefix| {
        peers.iter().position(|v| v.as_str().and_then(|s| Prefix::parse(s).ok()).as_ref() == Some(p))
    };
    let mut changed = Vec::new();
    for prefix in prefixes {
        match (change, present(peers, &prefix)) {
            (PeerChange::Allow, Some(_)) => {}
            (PeerChange::Allow, None) => {
                peers.push(prefix.to_string());
                changed.push(prefix);
            }
            (PeerChange::Revoke, Some(at)) => {
                peers.remove(at);
                changed.push(prefix);
            }
            (PeerChange::Revoke, None) => {
                return Err(LiveError::NotAPeer { addr: prefix.to_string(), rule: rule.into() });
            }
        }
    }
    if changed.is_empty() {
        return Ok(PeersChanged { file, changed });
    }
    let new_text = doc.to_string();
    // The whole policy is validated again: a peer another rule owns, the last peer
    // revoked, … fail here, before anything changed.
    let policy = policy::parse(&new_text, &file)?;
    let mut maps = LiveMaps::open(pins)?;
    guard(&maps, &policy, pins, None, session_guard)?;
    let (ids, _) = apply(pins, &mut maps, &state, &policy, None)?;
    if let Err(err) = files::replace(&file, new_text.as_bytes(), Perms::Like(meta)) {
        let _ =
            apply(pins, &mut maps, &LiveState { ids: ids.clone(), ..state.clone() }, &pins.policy()?, None);
        return Err(err.into());
    }
    lock.save(&new_text, &LiveState { policy_file: file.clone(), ids })?;
    Ok(PeersChanged { file, changed })
}

/// The `peers` array of rule `rule`.
fn rule_peers<'d>(doc: &'d mut DocumentMut, rule: &str, file: &str) -> Result<&'d mut toml_edit::Array> {
    let mut known = Vec::new();
    let tables = doc.get_mut("rule").and_then(Item::as_array_of_tables_mut);
    let Some(tables) = tables else {
        return Err(LiveError::NoRule { file: file.into(), rule: rule.into(), known: "none".into() });
    };
    let mut found = None;
    for (i, table) in tables.iter().enumerate() {
        let name = table.get("name").and_then(Item::as_str).unwrap_or("").to_owned();
        if name == rule {
            found = Some(i);
        }
        known.push(name);
    }
    let Some(i) = found else {
        return Err(LiveError::NoRule { file: file.into(), rule: rule.into(), known: known.join(", ") });
    };
    let table = tables.get_mut(i).expect("found above");
    match table.get_mut("peers") {
        Some(Item::Value(Value::Array(peers))) => Ok(peers),
        _ => Err(LiveError::AnyPeer { file: file.into(), rule: rule.into() }),
    }
}

/// Zeroes every counter, as `iptables -Z`.
pub fn zero(iface: Option<&str>) -> Result<Pins> {
    let lock = lock(iface)?;
    LiveMaps::open(lock.pins())?.zero()?;
    Ok(lock.pins().clone())
}

/// One tracked flow, as `firewall conntrack` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowView {
    pub protocol: &'static str,
    pub state: &'static str,
    /// `established` (heard both ways) or `half_open`.
    pub table: &'static str,
    /// The opening packet's source and destination.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports, or for ICMP echo 0 and the echo id.
    pub sport: u16,
    pub dport: u16,
    /// The rule that admitted it.
    pub rule: String,
    pub age_secs: u64,
    /// Seconds left before it expires unless a packet refreshes it.
    pub expires_secs: u64,
}

/// The programs' clock (bpf_ktime_get_coarse_ns).
pub(crate) fn kernel_time_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The live flows of both tables, oldest first, as `conntrack -L` lists them.
pub fn conntrack(iface: Option<&str>) -> Result<Vec<FlowView>> {
    let pins = live(iface)?;
    let state = pins.live_state()?;
    let maps = LiveMaps::open(&pins)?;
    let config = maps.config()?;
    let ours = (from_addr(&config.address), from_addr(&config.address6));
    let mut flows = maps.flows();
    dedup_flows(&mut flows);
    let now = kernel_time_ns();
    let names: std::collections::HashMap<u32, &str> =
        state.ids.rules.iter().map(|(name, id)| (*id, name.as_str())).collect();
    let mut views: Vec<FlowView> = flows
        .into_iter()
        .filter_map(|(table, key, flow)| {
            let age = now.saturating_sub(flow.last_seen_ns);
            // The programs' own timeout, from the live configuration.
            let timeout = config.timeout_ns(key.protocol, flow.tcp_state);
            (age <= timeout).then(|| view(table, &key, &flow, ours, &names, age, timeout))
        })
        .collect();
    views.sort_by(|a, b| b.age_secs.cmp(&a.age_secs).then(a.rule.cmp(&b.rule)));
    Ok(views)
}

fn view(
    table: FlowTable,
    key: &FlowKey,
    flow: &Flow,
    ours: (IpAddr, IpAddr),
    names: &std::collections::HashMap<u32, &str>,
    age: u64,
    timeout: u64,
) -> FlowView {
    let peer = from_addr(&key.peer);
    let ours = if peer.is_ipv6() { ours.1 } else { ours.0 };
    let opened_in = flow.origin == Direction::In as u8;
    let (src, dst, sport, dport) = match (opened_in, key.protocol) {
        // An echo flow: no ports, its identifier (its peer_port says which way it goes).
        (true, PROTO_ICMP | PROTO_ICMPV6) => (peer, ours, 0, key.local_port),
        (false, PROTO_ICMP | PROTO_ICMPV6) => (ours, peer, 0, key.local_port),
        (true, _) => (peer, ours, key.peer_port, key.local_port),
        (false, _) => (ours, peer, key.local_port, key.peer_port),
    };
    let half_open = table == FlowTable::HalfOpen;
    let protocol = protocol_name(key.protocol).unwrap_or("?");
    // conntrack -L's names; a flow answered by neither end yet is UNREPLIED.
    let state = match (key.protocol, flow.tcp_state) {
        (PROTO_TCP, TCP_OPEN) => "ESTABLISHED",
        (PROTO_TCP, TCP_SYN_SENT) => "SYN_SENT",
        (PROTO_TCP, TCP_SYN_RECV) => "SYN_RECV",
        (PROTO_TCP, TCP_FIN_SEEN) => "FIN_WAIT",
        (PROTO_TCP, _) => "CLOSE",
        _ if half_open => "UNREPLIED",
        _ => "ESTABLISHED",
    };
    FlowView {
        protocol,
        state,
        table: if half_open { "half_open" } else { "established" },
        src,
        dst,
        sport,
        dport,
        rule: names.get(&u32::from(flow.rule)).map_or_else(|| format!("#{}", flow.rule), |n| (*n).to_owned()),
        age_secs: age / 1_000_000_000,
        expires_secs: (timeout - age) / 1_000_000_000,
    }
}

/// `conntrack -L`'s layout.
pub fn render_flows(flows: &[FlowView]) -> String {
    let mut out = String::new();
    for f in flows {
        let ports = if f.protocol == "icmp" {
            format!("type=8 id={}", f.dport)
        } else if f.protocol == "icmpv6" {
            format!("type=128 id={}", f.dport)
        } else {
            format!("sport={} dport={}", f.sport, f.dport)
        };
        // conntrack -L marks the flows it will not evict before others: heard both ways.
        let assured = if f.table == "established" { " [ASSURED]" } else { "" };
        out.push_str(&format!(
            "{:<4} {:<11} src={} dst={} {ports} rule={} age={}s expires={}s{assured}\n",
            f.protocol, f.state, f.src, f.dst, f.rule, f.age_secs, f.expires_secs
        ));
    }
    out.push_str(&format!("firewall conntrack: {} flow entries have been shown.\n", flows.len()));
    out
}
