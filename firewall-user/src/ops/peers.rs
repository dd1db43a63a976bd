//! `allow` and `revoke`: one rule's peers changed live and in the policy file, its
//! comments and layout kept.
use std::path::PathBuf;

use toml_edit::{DocumentMut, Item, Value};

use crate::{
    files::{self, Perms},
    kernel::{Filter, maps::LiveMaps, pins::LiveState, resize::Resized},
    ops::{
        LiveError, Result,
        lockout::SessionGuard,
        reload::{apply, guard},
    },
    policy::{self, Peer, Prefix},
};

/// The addresses and prefixes a command was given, each checked.
pub fn parse_prefixes(addrs: &[String]) -> Result<Vec<Prefix>> {
    addrs.iter().map(|a| Ok(Prefix::parse(a)?)).collect()
}

/// The peers `allow` and `revoke` were given: addresses, prefixes and DNS names.
pub fn parse_peers(peers: &[String]) -> Result<Vec<Peer>> {
    peers.iter().map(|p| Ok(Peer::parse(p)?)).collect()
}

/// What `allow` or `revoke` did.
pub struct PeersChanged {
    pub file: PathBuf,
    /// The peers that changed (an `allow` of a peer already there changes nothing).
    pub changed: Vec<Peer>,
    /// The maps resized to hold them (see `kernel::resize`).
    pub resized: Vec<Resized>,
    /// The DNS names allowed, asked as they were.
    pub names: Vec<crate::names::Asked>,
}

/// Where `allow` and `revoke` make their change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The live filter and the policy file: the change stays.
    LiveAndFile,
    /// The live filter alone (`--runtime-only`): the policy file, which a configuration
    /// manager may own, is left alone, and the next `reload` or `up` undoes the change.
    LiveOnly,
}

/// Which way `allow` and `revoke` change a rule's peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    Allow,
    Revoke,
}

/// Adds (`allow`) or removes (`revoke`) peers of one rule, in the live maps at once and,
/// with [`Scope::LiveAndFile`], in the policy file, comments and layout kept. A revoke
/// that would cut off the SSH session this runs from is refused unless
/// [`SessionGuard::Skip`].
pub fn change_peers(
    filter: &Filter,
    rule: &str,
    wanted: &[Peer],
    change: PeerChange,
    scope: Scope,
    session_guard: SessionGuard,
) -> Result<PeersChanged> {
    let lock = filter.lock()?;
    lock.refuse_if_pending()?;
    let pins = lock.pins();
    let state = pins.live_state()?;
    let file = state.policy_file.clone();
    let name = file.display().to_string();
    let in_force = pins.policy_text()?;
    // Runtime-only, the change is to the policy in force, whatever the file says now.
    let (text, meta) = match scope {
        Scope::LiveOnly => (in_force, None),
        Scope::LiveAndFile => {
            if state.runtime_only {
                return Err(LiveError::RuntimeChanges { file: name });
            }
            // Rewritten below: read through no link, its mode and owner kept.
            let (text, meta) = files::read_regular(&file)?;
            if text != in_force {
                return Err(LiveError::FileChanged { file: name });
            }
            (text, Some(meta))
        }
    };

    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| LiveError::Toml {
        file: name.clone(),
        message: e.message().to_owned(),
    })?;
    let peers = rule_peers(&mut doc, rule, &name)?;
    let present = |peers: &toml_edit::Array, p: &Peer| {
        peers.iter().position(|v| v.as_str().and_then(|s| Peer::parse(s).ok()).as_ref() == Some(p))
    };
    let mut changed = Vec::new();
    for peer in wanted {
        match (change, present(peers, peer)) {
            (PeerChange::Allow, Some(_)) => {}
            (PeerChange::Allow, None) => {
                peers.push(peer.to_string());
                changed.push(peer.clone());
            }
            (PeerChange::Revoke, Some(at)) => {
                peers.remove(at);
                changed.push(peer.clone());
            }
            (PeerChange::Revoke, None) => {
                return Err(LiveError::NotAPeer { addr: peer.to_string(), rule: rule.into() });
            }
        }
    }
    if changed.is_empty() {
        return Ok(PeersChanged { file, changed, resized: Vec::new(), names: Vec::new() });
    }
    let new_text = doc.to_string();
    // The whole policy is validated again: a peer another rule owns, the last peer
    // revoked, … fail here, before anything changed.
    let policy = policy::parse(&new_text, &file)?;
    // A name allowed is asked now (one revoked leaves the record at its next answer).
    let added: Vec<&str> = changed
        .iter()
        .filter_map(|p| match (change, p) {
            (PeerChange::Allow, Peer::Name(name)) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let asked = if added.is_empty() {
        Vec::new()
    } else {
        crate::names::ask(&lock, &policy, &added, crate::unix_now())?
    };
    let policy = crate::kernel::filter::in_force_on(policy, &pins.iface);
    let mut maps = LiveMaps::open(pins)?;
    guard(&maps, &policy, pins, None, session_guard)?;
    let (state, applied) = apply(pins, &mut maps, &state, &policy, None)?;
    let Some(meta) = meta else {
        // Not the last good policy either: a boot on it would keep what was meant to go.
        lock.save(&new_text, &LiveState { runtime_only: true, ..state })?;
        return Ok(PeersChanged { file, changed, resized: applied.resized, names: asked });
    };
    if let Err(err) = files::replace(&file, new_text.as_bytes(), Perms::Like(meta)) {
        let _ = apply(
            pins,
            &mut maps,
            &state,
            &crate::kernel::filter::in_force_on(pins.policy()?, &pins.iface),
            None,
        );
        return Err(err.into());
    }
    lock.save(&new_text, &state)?;
    lock.keep_last_good()?;
    Ok(PeersChanged { file, changed, resized: applied.resized, names: asked })
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
