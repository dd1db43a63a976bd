//! `reload`: the live maps brought to a policy in place, programs attached, flows and
//! counters kept.
use std::path::{Path, PathBuf};

use crate::{
    compile::{Ids, plan},
    kernel::{
        Filter,
        filter::in_force_on,
        maps::{Applied, Enforcement, LiveMaps},
        pins::{LiveState, PROGRAMS_ONE_WAY, PROGRAMS_TRAP, Pins, StateLock, io_err},
    },
    ops::{
        Apply, LiveError, Result,
        confirm::{self, Armed, ConfirmError},
        lockout::SessionGuard,
    },
    policy::{self, Policy},
};

/// Applies `policy` to the live maps; on a failure part-way, puts the previous policy
/// back before reporting it.
pub(crate) fn apply(
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
    /// The rollback `--confirm` armed.
    pub armed: Option<Armed>,
}

/// `firewall reload`: re-reads the policy (the file `up` was given, or `file`) and brings
/// the live maps to it. Programs stay attached; counters and still-admitted flows are
/// kept. With [`Apply::confirm`], what was in force is recorded first and a rollback
/// armed after.
pub fn reload(
    filter: &Filter,
    file: Option<&Path>,
    apply: Apply,
) -> std::result::Result<Reloaded, ConfirmError> {
    let lock = filter.lock()?;
    let (done, armed) = confirm::around(&lock, apply.confirm, || {
        let done = reload_locked(&lock, file, apply.enforcement, apply.session_guard)?;
        let name = format!("reload of {}", done.file.display());
        Ok((done, name))
    })?;
    Ok(Reloaded { armed, ..done })
}

/// [`reload`] under the lock the caller holds. `enforcement` and `session_guard` as for
/// [`crate::ops::up::up`].
fn reload_locked(
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
    let policy = in_force_on(policy::parse(text, file)?, &pins.iface);
    // Older programs would track a one-way rule's flows, and pass their returns.
    if state.programs < PROGRAMS_ONE_WAY
        && let Some(rule) = policy.rules.iter().find(|r| !r.returns)
    {
        return Err(LiveError::NoOneWayRules { rule: rule.name.clone() });
    }
    // Older programs would admit what a trap matches.
    if state.programs < PROGRAMS_TRAP
        && let Some(rule) = policy.rules.iter().find(|r| r.trap.is_some())
    {
        return Err(LiveError::NoTraps { rule: rule.name.clone() });
    }
    let mut maps = LiveMaps::open(&pins)?;
    guard(&maps, &policy, &pins, enforcement, session_guard)?;
    let (ids, applied) = apply(&pins, &mut maps, &state, &policy, enforcement)?;
    let file = file.to_owned();
    lock.save(text, &LiveState { policy_file: file.clone(), ids, ..state })?;
    let enforcement = maps.enforcement()?;
    Ok(Reloaded { pins, file, applied, enforcement, armed: None })
}

/// The lock-out guard for the live filter `maps` with `policy`, in the mode `enforcement`
/// sets or the one it is in.
pub(crate) fn guard(
    maps: &LiveMaps,
    policy: &Policy,
    pins: &Pins,
    enforcement: Option<Enforcement>,
    session_guard: SessionGuard,
) -> Result<()> {
    let mode = enforcement.map_or_else(|| maps.enforcement(), Ok)?;
    crate::ops::lockout::guard_in(policy, &pins.iface, mode, session_guard)?;
    Ok(())
}
