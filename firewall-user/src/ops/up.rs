//! `up` and `down`: a filter put in force on an interface, and taken away.
use std::path::{Path, PathBuf};

use crate::{
    kernel::{
        Filter, FilterError,
        attach::{Mode, attach_and_pin, remove_pins, replace},
        filter::{Result, if_index, require_root},
        maps::{Enforcement, LiveMaps},
        pins::{Pins, StateLock, io_err},
    },
    ops::{
        Apply,
        confirm::{self, Armed, ConfirmError},
        lockout::SessionGuard,
    },
    policy::{self, Policy, PolicyError},
};

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("reading {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Confirm(#[from] ConfirmError),
}

impl From<FilterError> for UpError {
    fn from(err: FilterError) -> Self {
        UpError::Confirm(err.into())
    }
}

/// What `up` did.
pub struct Up {
    pub pins: Pins,
    /// A filter was up already and its programs were replaced in place.
    pub replaced: bool,
    /// The filter's mode now.
    pub enforcement: Enforcement,
    /// How many rules the policy has.
    pub rules: usize,
    /// The rollback `--confirm` armed.
    pub armed: Option<Armed>,
}

/// `firewall up`: reads and validates the policy `file`, then puts it in force on `iface`
/// (default: the policy's `[host] interface`). With [`Apply::confirm`], a rollback is
/// armed: `down` if no filter was up, else the policy in force before.
pub fn up(file: &Path, iface: Option<&str>, mode: Mode, apply: Apply) -> std::result::Result<Up, UpError> {
    // Before the policy is read: a user who is not root is told so, not that a policy
    // file only root may read cannot be read. (`Filter::at` asks again, once it knows
    // the interface.)
    require_root()?;
    let text =
        std::fs::read_to_string(file).map_err(|source| UpError::Read { path: file.to_owned(), source })?;
    let policy = policy::parse(&text, file)?;
    let iface = iface.or(policy.interface.as_deref()).ok_or(FilterError::NoInterfaceGiven)?;
    let filter = Filter::at(iface)?;
    let lock = filter.lock_for_up()?;
    let (up, armed) = confirm::around(&lock, apply.confirm, || {
        let up = up_locked(&lock, &policy, &text, file, mode, apply.enforcement, apply.session_guard)?;
        Ok((up, format!("up of {}", file.display())))
    })?;
    Ok(Up { armed, ..up })
}

/// Puts `policy` in force on the interface `lock` is for: attaches and pins a new filter,
/// or, when one is up, replaces its programs in place and brings its maps to the policy.
/// `policy_file` is what later `allow`, `revoke` and `reload` read and write.
///
/// `enforcement`: the filter's mode, or `None` to keep a live filter's (a new one
/// enforces). Unless [`SessionGuard::Skip`], a policy that would cut off the SSH session
/// this runs from is refused when it is to be enforced.
fn up_locked(
    lock: &StateLock,
    policy: &Policy,
    policy_text: &str,
    policy_file: &Path,
    mode: Mode,
    enforcement: Option<Enforcement>,
    session_guard: SessionGuard,
) -> Result<Up> {
    let pins = lock.pins().clone();
    if if_index(&pins.iface).is_none() {
        return Err(FilterError::NoInterface(pins.iface.clone()));
    }
    // Unless told, the mode is the live filter's; a new filter enforces.
    let will_be = match enforcement {
        Some(will_be) => will_be,
        None if pins.is_up() => LiveMaps::open(&pins)?.enforcement()?,
        None => Enforcement::Enforce,
    };
    crate::ops::lockout::guard_in(policy, &pins.iface, will_be, session_guard)?;
    let policy_file = std::path::absolute(policy_file).map_err(io_err("resolving", policy_file))?;
    if pins.is_up() {
        lock.refuse_if_pending()?;
        replace(lock, policy, policy_text, &policy_file, enforcement)?;
        let enforcement = LiveMaps::open(&pins)?.enforcement()?;
        return Ok(Up { pins, replaced: true, enforcement, rules: policy.rules.len(), armed: None });
    }
    // Stale map pins from an interrupted `up` would be reused with old contents, and its
    // state files would be taken for this filter's.
    remove_pins(&pins)?;
    lock.clear_state()?;
    pins.make_pin_dir()?;
    let enforcement = enforcement.unwrap_or(Enforcement::Enforce);
    let result = attach_and_pin(lock, policy, policy_text, &policy_file, mode, enforcement);
    if result.is_err() {
        let _ = remove_pins(&pins);
    }
    result.map(|()| Up { pins, replaced: false, enforcement, rules: policy.rules.len(), armed: None })
}

/// `firewall down`: detaches both programs and removes every pin and the state: the
/// interface is as before `up`.
pub fn down(filter: &Filter) -> Result<()> {
    let lock = filter.lock_pins()?;
    take_down(&lock)
}

/// What `down` does, under the lock the caller holds (the rollback of a first `up`).
pub fn take_down(lock: &StateLock) -> Result<()> {
    remove_pins(lock.pins())?;
    Ok(lock.remove_state()?)
}
