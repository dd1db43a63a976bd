//! `reload`: the live maps brought to a policy in place, programs attached, flows and
//! counters kept.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{
    compile::{Ids, plan},
    kernel::{
        Filter, FilterError,
        filter::{in_force_on, in_force_with},
        maps::{Applied, Enforcement, LiveMaps, dedup_flows},
        pins::{
            AppliedWith, LiveState, PROGRAMS_LEVEL, PROGRAMS_ONE_WAY, PROGRAMS_TRAP, Pins, PinsError,
            StateLock, io_err,
        },
        resize::{Resized, Sizes, shrink, swap_in},
    },
    names::{AskedReport, Asking, Names},
    ops::{
        Apply, LiveError, Result,
        confirm::{self, Armed, ConfirmError},
        lockout::SessionGuard,
    },
    policy::{self, Policy, PolicyDiff},
    view::conntrack::FlowView,
};

/// Applies `policy` to the live maps, resized first where it needs more room and after
/// where it leaves them far too large (see `kernel::resize`); on a failure part-way, puts
/// the previous policy back before reporting it. The live state to save: `state` with the
/// new ids, and this version's programs if a resize loaded them.
pub(crate) fn apply(
    pins: &Pins,
    maps: &mut LiveMaps,
    state: &LiveState,
    policy: &Policy,
    enforcement: Option<Enforcement>,
) -> Result<(LiveState, Applied)> {
    let ids = Ids::assign(policy, &state.ids);
    let wanted = plan(policy, &ids);
    let was = maps.enforcement()?;
    // Before a resize, which would load this version's programs in passing.
    maps.refuse_unknown(&wanted)?;
    let live = Sizes::of_live(pins)?;
    let grown = live.grown(&policy.conntrack, &wanted);
    let mut resized = live.changes(&grown);
    if !resized.is_empty() {
        *maps = swap_in(pins, &grown, &resized, &[], |_| Ok(()))?.0;
    }
    match maps.apply(&wanted, &ids.new_counters(&state.ids), enforcement) {
        Ok(mut applied) => {
            let shrunk = shrink(pins, &grown, &policy.conntrack, &wanted);
            if !shrunk.is_empty() {
                *maps = LiveMaps::open(pins)?;
            }
            resized.extend(shrunk);
            let programs = if resized.is_empty() { state.programs } else { PROGRAMS_LEVEL };
            applied.resized = resized;
            Ok((LiveState { ids, programs, applied_with: AppliedWith::of(policy), ..state.clone() }, applied))
        }
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
    /// The peers written as DNS names, when the reload asked them.
    pub names: Vec<crate::names::Asked>,
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
    crate::log::Event::Reload {
        iface: &done.pins.iface,
        file: &done.file,
        added: done.applied.added,
        removed: done.applied.removed,
        flows_ended: done.applied.flows_removed,
        confirm_within: armed.as_ref().map(|armed| armed.seconds),
    }
    .log();
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
    reload_text(lock, &text, &file, enforcement, session_guard, Asking::Now)
}

/// Brings the live maps to the policy `text` (read from `file`, which later commands use),
/// its peers written as DNS names asked first with [`Asking::Now`].
pub fn reload_text(
    lock: &StateLock,
    text: &str,
    file: &Path,
    enforcement: Option<Enforcement>,
    session_guard: SessionGuard,
    asking: Asking,
) -> Result<Reloaded> {
    let pins = lock.pins().clone();
    let state = pins.live_state()?;
    // A policy has names only if its text differs from the one in force, or the one in
    // force has them (the record holds them): the text in force without names is not
    // parsed here, so a reload of a million peers unchanged stays quick. Parsed here, it
    // is not parsed again below (a million peers take a second).
    let mut names = Vec::new();
    let mut parsed = None;
    let has_names =
        || pins.policy_text().ok().as_deref() != Some(text) || !Names::load(&pins).names.is_empty();
    if asking == Asking::Now && has_names() {
        let policy = policy::parse(text, file)?;
        names = crate::names::ask(lock, &policy, &policy.names(), crate::unix_now())?;
        parsed = Some(policy);
    }
    if let Some(done) = in_force_already(lock, text, file, enforcement)? {
        return Ok(Reloaded { names, ..done });
    }
    let policy = match parsed {
        Some(policy) => policy,
        None => policy::parse(text, file)?,
    };
    let policy = in_force_on(policy, &pins.iface);
    refuse_unknown_to_programs(&state, &policy)?;
    let mut maps = LiveMaps::open(&pins)?;
    guard(&maps, &policy, &pins, enforcement, session_guard)?;
    let (state, applied) = apply(&pins, &mut maps, &state, &policy, enforcement)?;
    let file = file.to_owned();
    // The file in force again: changes made `--runtime-only` are gone.
    lock.save(text, &LiveState { policy_file: file.clone(), runtime_only: false, ..state })?;
    let enforcement = maps.enforcement()?;
    Ok(Reloaded { pins, file, applied, enforcement, armed: None, names })
}

/// A reload of the policy in force, as it was applied: `text` is the state directory's
/// copy byte for byte (the text whose plan the maps hold, whatever `--runtime-only` did to
/// the file since), and what it was applied with beyond its text (this binary, and the
/// interface's addresses for `follow_addresses`) is the same now, and so is the mode. The maps hold
/// its plan already: nothing is parsed, planned or read from them (a million peers take
/// milliseconds, not seconds), and the file is the one in force again.
fn in_force_already(
    lock: &StateLock,
    text: &str,
    file: &Path,
    enforcement: Option<Enforcement>,
) -> Result<Option<Reloaded>> {
    let pins = lock.pins();
    let state = pins.live_state()?;
    if !state.applied_with.holds_now(&pins.iface) || pins.policy_text()? != text {
        return Ok(None);
    }
    let maps = LiveMaps::open(pins)?;
    let live = maps.enforcement()?;
    if enforcement.is_some_and(|wanted| wanted != live) {
        return Ok(None);
    }
    let file = file.to_owned();
    lock.save(text, &LiveState { policy_file: file.clone(), runtime_only: false, ..state })?;
    Ok(Some(Reloaded {
        pins: pins.clone(),
        file,
        applied: Applied::default(),
        enforcement: live,
        armed: None,
        names: Vec::new(),
    }))
}

/// Refuses what the live filter's programs, loaded by an older version, would get wrong.
fn refuse_unknown_to_programs(state: &LiveState, policy: &Policy) -> Result<()> {
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
    Ok(())
}

/// What a reload would change, found without changing anything: `reload --dry-run`, and
/// `check --diff` against a live filter.
#[derive(Debug, Serialize)]
pub struct Preview {
    pub iface: String,
    pub file: PathBuf,
    #[serde(flatten)]
    pub diff: PolicyDiff,
    /// The mode the filter would be put in, when that is a change.
    pub mode: Option<Enforcement>,
    /// The tracked flows whose opening packet the policy would no longer admit.
    pub flows_ending: Vec<FlowView>,
    /// The maps the reload would resize to fit the policy (see `kernel::resize`).
    pub resized: Vec<Resized>,
    /// Whether a filter is up on the interface: without one, the preview is of `up`.
    pub filter_up: bool,
    /// The peers written as DNS names, asked now: what each would hold, and how that
    /// changes what it holds (see [`Preview::name_lines`]).
    pub names: Vec<AskedReport>,
}

impl Preview {
    /// Whether applying it would change anything.
    pub fn changes(&self) -> bool {
        !self.diff.is_empty()
            || self.mode.is_some()
            || !self.flows_ending.is_empty()
            || !self.resized.is_empty()
    }

    /// One line for each change, as `reload --dry-run` prints them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = self.diff.lines();
        match self.mode {
            Some(Enforcement::Audit) => lines.push("enter audit mode (drop nothing)".into()),
            Some(Enforcement::Enforce) => lines.push("leave audit mode (drop what the policy drops)".into()),
            None => {}
        }
        lines.extend(self.flows_ending.iter().map(|f| {
            format!(
                "end flow {} {}:{} -> {}:{} (rule {})",
                f.protocol, f.src, f.sport, f.dst, f.dport, f.rule
            )
        }));
        lines.extend(self.resized.iter().map(Resized::preview_line));
        lines
    }

    /// A line for each name whose addresses would change, or whose resolvers fail: told,
    /// and no change of the policy's (`serve` follows them anyway, and a CDN's name,
    /// answered differently each time, is no drift for a configuration manager to undo).
    pub fn name_lines(&self) -> Vec<String> {
        self.names.iter().filter_map(AskedReport::preview_line).collect()
    }
}

/// What [`reload`] with `file` and `apply` would do, or the error it would fail with
/// (a bad policy, the SSH guard, a pending confirmation, older programs or maps), changing
/// nothing: the same checks, in the same order, as [`reload_text`] and [`apply`] make
/// before they change anything. It holds the filter's lock while it reads, as a reload
/// would.
pub fn preview(filter: &Filter, file: Option<&Path>, apply: &Apply) -> Result<Preview> {
    preview_of(filter, file, None, apply)
}

/// [`preview`] of the policy `file` holds, `written` when the caller has read it already
/// (a million peers take a second to parse).
fn preview_of(
    filter: &Filter,
    file: Option<&Path>,
    written: Option<Policy>,
    apply: &Apply,
) -> Result<Preview> {
    let lock = filter.lock()?;
    lock.refuse_if_pending()?;
    let pins = lock.pins();
    let state = pins.live_state()?;
    let file = match file {
        Some(f) => std::path::absolute(f).map_err(io_err("resolving", f))?,
        None => state.policy_file.clone(),
    };
    let written = match written {
        Some(written) => written,
        None => policy::parse(&std::fs::read_to_string(&file).map_err(io_err("reading", &file))?, &file)?,
    };
    let (held, names) = crate::names::ask_for_preview(pins, &written, crate::unix_now());
    let policy = in_force_with(written.clone(), &pins.iface, &held);
    refuse_unknown_to_programs(&state, &policy)?;
    let maps = LiveMaps::open(pins)?;
    guard(&maps, &policy, pins, apply.enforcement, apply.session_guard)?;
    let ids = Ids::assign(&policy, &state.ids);
    let wanted = plan(&policy, &ids);
    maps.refuse_unknown(&wanted)?;
    let sizes = Sizes::of_live(pins)?;
    let resized = sizes.changes(&sizes.to_fit(&policy.conntrack, &wanted));
    let mut ending = maps.flows_ending(&wanted);
    dedup_flows(&mut ending);
    let flows_ending = crate::view::conntrack::views(&maps, &state, ending)?;
    let live = maps.enforcement()?;
    Ok(Preview {
        iface: pins.iface.clone(),
        diff: PolicyDiff::between(Some(&pins.policy()?), &written),
        mode: apply.enforcement.filter(|mode| *mode != live),
        flows_ending,
        resized,
        file,
        filter_up: true,
        names: names.iter().map(Into::into).collect(),
    })
}

/// `check --diff FILE`: what the policy `written`, read from `file`, would change on the
/// filter up on `iface` (by default its `[host] interface`), as [`preview`] says; with no
/// filter up there, what `up` would put in place: all of it.
pub fn preview_file(file: &Path, written: Policy, iface: Option<&str>, apply: &Apply) -> Result<Preview> {
    let iface = iface.or(written.interface.as_deref()).ok_or(FilterError::NoInterfaceGiven)?.to_owned();
    let iface = iface.as_str();
    match Filter::open(Some(iface)) {
        Ok(filter) => preview_of(&filter, Some(file), Some(written), apply),
        Err(FilterError::Pins(PinsError::NotUp { .. })) => Ok(Preview {
            // What `up` would ask, with nothing held before.
            names: crate::names::ask_for_preview(&Pins::for_iface(iface), &written, crate::unix_now())
                .1
                .iter()
                .map(Into::into)
                .collect(),
            iface: iface.to_owned(),
            file: std::path::absolute(file).map_err(io_err("resolving", file))?,
            diff: PolicyDiff::between(None, &written),
            mode: apply.enforcement.filter(|mode| *mode == Enforcement::Audit),
            flows_ending: Vec::new(),
            // `up` makes the maps at the policy's sizes: no resize.
            resized: Vec::new(),
            filter_up: false,
        }),
        Err(err) => Err(err.into()),
    }
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
