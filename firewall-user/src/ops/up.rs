//! `up` and `down`: a filter put in force on an interface, and taken away.
use std::path::{Path, PathBuf};

use crate::{
    kernel::{
        Filter, FilterError,
        attach::{Mode, Replaced, XdpAttached, attach_and_pin, links_attached, remove_pins, replace},
        filter::{Result, if_index, in_force_on, require_root},
        maps::{Enforcement, LiveMaps, live_enforcement},
        offloads::{self, Restored},
        pins::{Pins, RuntimeOnly, StateLock, io_err},
        relayout::Relaid,
        resize::Resized,
    },
    ops::{
        Apply,
        confirm::{self, Armed, ConfirmError},
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
    /// `--fallback last-good`, and the last good policy failed too. `cause` is the policy
    /// file's error, whole on the line: the fix is to that file.
    #[error("{}; and the last good policy, {}, failed too", chain(cause), last_good.display())]
    NoFallback {
        cause: Box<UpError>,
        last_good: PathBuf,
        #[source]
        source: Box<UpError>,
    },
}

/// `err` and its causes on one line, as the command line prints an error.
fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// What `up` does when the policy file fails to load or apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Fail, changing nothing.
    #[default]
    None,
    /// Apply the last policy that applied cleanly on the interface (kept under
    /// /var/lib/firewall), and fail all the same, naming the error: a boot with a broken
    /// policy neither runs open unnoticed nor locks the server out.
    LastGood,
}

/// `up` applied the last good policy because the policy file failed.
#[derive(Debug)]
pub struct FellBack {
    /// The policy file's error.
    pub cause: UpError,
    /// The last good policy, now in force.
    pub last_good: PathBuf,
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
    /// The maps resized to fit the policy (a second `up` only: a first sizes them so).
    pub resized: Vec<Resized>,
    /// The maps another version made at another layout, made anew (a second `up` only).
    pub relaid: Vec<Relaid>,
    /// A filter was pinned for the interface, but its interface had been removed (and
    /// made again): it was replaced by a new one.
    pub severed: bool,
    /// With [`Fallback::LastGood`]: the policy file failed, and the last good policy is in
    /// force instead.
    pub fell_back: Option<FellBack>,
    /// The peers written as DNS names, asked as the policy was put in force.
    pub names: Vec<crate::names::Asked>,
    /// The XDP hook a new filter was attached to (`None`: the programs were replaced in
    /// their links, on the hook they were on).
    pub xdp: Option<XdpAttached>,
}

/// `firewall up`: reads and validates the policy `file`, then puts it in force on `iface`
/// (default: the policy's `[host] interface`). With [`Apply::confirm`], a rollback is
/// armed: `down` if no filter was up, else the policy in force before. With
/// [`Fallback::LastGood`] and `iface` given, a policy file that fails to load or apply is
/// replaced by the interface's last good policy ([`Up::fell_back`] says so).
pub fn up(
    file: &Path,
    iface: Option<&str>,
    mode: Mode,
    apply: Apply,
    fallback: Fallback,
) -> std::result::Result<Up, UpError> {
    // Before the policy is read: a user who is not root is told so, not that a policy
    // file only root may read cannot be read. (`Filter::at` asks again, once it knows
    // the interface.)
    require_root()?;
    let cause = match up_from(file, file, iface, mode, apply) {
        Ok(up) => return Ok(up),
        Err(cause) => cause,
    };
    let (Fallback::LastGood, Some(iface)) = (fallback, iface) else {
        return Err(cause);
    };
    // Later `reload`, `allow` and `revoke` still read `file`: the one to fix.
    let last_good = Pins::for_iface(iface).last_good;
    match up_from(&last_good, file, Some(iface), mode, apply) {
        Ok(up) => Ok(Up { fell_back: Some(FellBack { cause, last_good }), ..up }),
        Err(err) => Err(UpError::NoFallback { cause: Box::new(cause), last_good, source: Box::new(err) }),
    }
}

/// `firewall up --in-force`: the policy in force on `iface` put up again as it is (its
/// text, with any runtime-only change, recorded as read from the same file) with this
/// version's programs swapped in place: what a package upgrade runs for each filter up.
/// The mode is the live filter's unless [`Apply::enforcement`] says.
pub fn again(iface: &str, apply: Apply) -> std::result::Result<Up, UpError> {
    require_root()?;
    let filter = Filter::at(iface)?;
    let lock = filter.lock_pins()?;
    let pins = lock.pins();
    let state = pins.live_state().map_err(FilterError::from)?;
    let text = pins.policy_text().map_err(FilterError::from)?;
    let policy = pins.policy().map_err(FilterError::from)?;
    let putting = Putting {
        policy,
        text: &text,
        file: &state.policy_file,
        runtime_only: RuntimeOnly(state.runtime_only),
    };
    put_up(&lock, iface, putting, Mode::Auto, apply, format!("up of the policy in force on {iface}"))
}

/// A policy `up` puts in force: its text, the file later `allow`, `revoke` and `reload`
/// read and write, and whether it holds runtime-only changes the file lacks.
struct Putting<'a> {
    policy: Policy,
    text: &'a str,
    file: &'a Path,
    runtime_only: RuntimeOnly,
}

/// What [`up`] and [`again`] do once the policy is read and the lock held: its names
/// asked, the rollback armed around the change when asked (`what` names the change to it).
fn put_up(
    lock: &StateLock,
    iface: &str,
    putting: Putting<'_>,
    mode: Mode,
    apply: Apply,
    what: String,
) -> std::result::Result<Up, UpError> {
    let Putting { policy, text, file, runtime_only } = putting;
    let names =
        crate::names::ask(lock, &policy, &policy.names(), crate::unix_now()).map_err(ConfirmError::from)?;
    let putting = Putting { policy: in_force_on(policy, iface), text, file, runtime_only };
    let (up, armed) =
        confirm::around(lock, apply.confirm, || Ok((up_locked(lock, &putting, mode, apply)?, what)))?;
    Ok(Up { armed, names, ..up })
}

/// [`up`] of the policy read from `source`, recorded as read from `policy_file`.
fn up_from(
    source: &Path,
    policy_file: &Path,
    iface: Option<&str>,
    mode: Mode,
    apply: Apply,
) -> std::result::Result<Up, UpError> {
    let text = std::fs::read_to_string(source)
        .map_err(|err| UpError::Read { path: source.to_owned(), source: err })?;
    let policy = policy::parse(&text, source)?;
    let iface = iface.or(policy.interface.as_deref()).ok_or(FilterError::NoInterfaceGiven)?.to_owned();
    let filter = Filter::at(&iface)?;
    let lock = filter.lock_for_up()?;
    let putting = Putting { policy, text: &text, file: policy_file, runtime_only: RuntimeOnly(false) };
    put_up(&lock, &iface, putting, mode, apply, format!("up of {}", policy_file.display()))
}

/// Puts `putting` in force on the interface `lock` is for: attaches and pins a new filter,
/// or, when one is up, replaces its programs in place and brings its maps to the policy.
///
/// `apply.enforcement`: the filter's mode, or `None` to keep a live filter's (a new one
/// enforces). Unless [`SessionGuard::Skip`], a policy that would cut off the SSH session
/// this runs from is refused when it is to be enforced. (`apply.confirm` is the caller's.)
///
/// [`SessionGuard::Skip`]: crate::ops::lockout::SessionGuard::Skip
fn up_locked(lock: &StateLock, putting: &Putting<'_>, mode: Mode, apply: Apply) -> Result<Up> {
    let Apply { enforcement, session_guard, .. } = apply;
    let &Putting { ref policy, text: policy_text, file: policy_file, runtime_only } = putting;
    let pins = lock.pins().clone();
    if if_index(&pins.iface).is_none() {
        return Err(FilterError::NoInterface(pins.iface.clone()));
    }
    // Unless told, the mode is the live filter's; a new filter enforces.
    let will_be = match enforcement {
        Some(will_be) => will_be,
        None if pins.is_up() => live_enforcement(&pins)?,
        None => Enforcement::Enforce,
    };
    crate::ops::lockout::guard_in(policy, &pins.iface, will_be, session_guard)?;
    let policy_file = std::path::absolute(policy_file).map_err(io_err("resolving", policy_file))?;
    // A filter whose interface was removed (and made again) is on nothing: its flows and
    // counters were another interface's. It is put up afresh.
    let severed = pins.is_up() && !links_attached(&pins)?;
    if pins.is_up() && !severed {
        lock.refuse_if_pending()?;
        let Replaced { resized, relaid } =
            replace(lock, policy, policy_text, &policy_file, enforcement, runtime_only)?;
        let enforcement = LiveMaps::open(&pins)?.enforcement()?;
        return Ok(Up {
            pins,
            replaced: true,
            enforcement,
            rules: policy.rules.len(),
            armed: None,
            resized,
            relaid,
            severed: false,
            fell_back: None,
            names: Vec::new(),
            xdp: None,
        });
    }
    // Stale map pins from an interrupted `up` would be reused with old contents, and its
    // state files would be taken for this filter's.
    remove_pins(&pins)?;
    lock.clear_state()?;
    pins.make_pin_dir()?;
    // The mode the guard was asked about: a severed filter's own, unless told.
    let enforcement = will_be;
    // Read before the attach, which turns them off if it is generic.
    let offloads_on = offloads::on_before_attach(&pins.iface);
    let result = attach_and_pin(lock, policy, policy_text, &policy_file, mode, enforcement, &offloads_on);
    if result.is_err() {
        // Undone as `down` would, the offloads turned back on once XDP is off; what fails
        // here is the attach's error's shadow, and the error is the one to tell.
        let _ = remove_pins(&pins);
        let _ = offloads::restore(&offloads_on);
    }
    result.map(|xdp| Up {
        pins,
        replaced: false,
        enforcement,
        rules: policy.rules.len(),
        armed: None,
        resized: Vec::new(),
        relaid: Vec::new(),
        severed,
        fell_back: None,
        names: Vec::new(),
        xdp: Some(xdp),
    })
}

/// `firewall down`: detaches both programs and removes every pin and the state, and
/// turns back on the receive offloads the attach turned off: the interface is as
/// before `up`. What it turned back on, and what it could not (`down` succeeds all the
/// same: the filter is gone).
pub fn down(filter: &Filter) -> Result<Restored> {
    let lock = filter.lock_pins()?;
    take_down(&lock)
}

/// What `down` does, under the lock the caller holds (the rollback of a first `up`).
pub fn take_down(lock: &StateLock) -> Result<Restored> {
    let pins = lock.pins();
    let recorded = offloads_recorded(pins);
    remove_pins(pins)?;
    lock.remove_state()?;
    // After the detach: the attach turned them off, and it is gone.
    Ok(offloads::restore(&recorded))
}

/// The offloads the filter's state says were on before its attach, if its links are
/// on the interface of that name now: one removed and made again since is another, its
/// offloads none of the filter's doing. A state that cannot be read records none (`down`
/// still removes the filter).
fn offloads_recorded(pins: &Pins) -> Vec<offloads::OffloadOn> {
    match (pins.live_state(), links_attached(pins)) {
        (Ok(state), Ok(true)) => state.offloads_to_restore,
        _ => Vec::new(),
    }
}
