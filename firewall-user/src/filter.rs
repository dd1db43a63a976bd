//! Loading the kernel object, attaching it, pinning it, replacing it, removing it.
//!
//! Transitions are where firewalls break, so each is careful: a first `up` fills every
//! map before the programs are attached and undoes everything if a step fails; a second
//! `up` loads and verifies the new programs, brings the pinned maps to the new policy,
//! then swaps each program in place through its pinned link (`bpf_link_update`), so no
//! packet meets an interface without a filter and no flow or counter is lost.
use std::path::Path;

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
    },
};
use firewall_common::{MAP_CONNTRACK, MAP_HALF_OPEN, MAPS, PROG_EGRESS, PROG_INGRESS};

use crate::{
    compile::{Ids, plan},
    lockout::SessionGuard,
    maps::{Enforcement, LiveMaps, MapsError},
    pins::{
        EGRESS_LINK, INGRESS_LINK, LOCK_WAIT, LiveState, Pins, PinsError, StateLock, ensure_bpffs, io_err,
    },
    policy::{Conntrack, Policy},
};

/// What can go wrong, each naming the call that failed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo")]
    NeedsRoot,
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    #[error("interface {0:?} is gone; `firewall down --iface {0}` removes what its filter left pinned")]
    InterfaceGone(String),
    #[error("no interface to attach to: give --iface or [host] interface in the policy")]
    NoInterfaceGiven,
    #[error("loading the eBPF object")]
    Load(#[from] EbpfError),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("{call} {name}")]
    Program { call: &'static str, name: &'static str, source: ProgramError },
    // The cause printed in the message, and `source` too: the hint must follow aya's text,
    // and the one line has said so since before the convention (`one_line` skips the
    // repeated cause). Its own causes, if any, still follow the hint.
    #[error("attaching XDP to {iface} in {mode:?} mode: {source}{hint}")]
    AttachXdp { iface: String, mode: XdpMode, source: ProgramError, hint: &'static str },
    #[error("pinning {path}")]
    Pin { path: std::path::PathBuf, source: aya::pin::PinError },
    #[error("the pinned link {path}")]
    Link { path: std::path::PathBuf, source: LinkError },
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error(transparent)]
    LockOut(#[from] crate::lockout::LockOut),
}

pub type Result<T> = std::result::Result<T, FilterError>;

/// Fails with [`FilterError::NeedsRoot`] unless the process is root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(FilterError::NeedsRoot);
    }
    Ok(())
}

pub fn if_index(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The kernel object loaded: both programs verified and loaded (not attached), and its
/// maps, which hold whatever they held (nothing when just created).
pub struct Loaded {
    pub ebpf: Ebpf,
    pub maps: LiveMaps,
}

impl Loaded {
    /// Loads the object; with `pins`, its maps are the ones pinned there (created and
    /// pinned when missing).
    pub fn load(conntrack: &Conntrack, pins: Option<&Pins>) -> Result<Loaded> {
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(MAP_CONNTRACK, conntrack.max_entries);
        loader.map_max_entries(MAP_HALF_OPEN, conntrack.max_half_open);
        let paths: Vec<(&'static str, std::path::PathBuf)> =
            pins.map(|p| MAPS.iter().map(|name| (*name, p.map_path(name))).collect()).unwrap_or_default();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(crate::EBPF_OBJECT)?;
        let xdp: &mut Xdp = program(&mut ebpf, PROG_INGRESS)?;
        xdp.load().map_err(|source| FilterError::Program { call: "load", name: PROG_INGRESS, source })?;
        let tc: &mut SchedClassifier = program(&mut ebpf, PROG_EGRESS)?;
        tc.load().map_err(|source| FilterError::Program { call: "load", name: PROG_EGRESS, source })?;
        // The programs hold the maps now; the maps are ours to fill.
        let maps = LiveMaps::take(&mut ebpf)?;
        Ok(Loaded { ebpf, maps })
    }

    /// Loads the object with its maps filled from `policy` (not pinned): the harness of
    /// the verdict tests and the benchmarks.
    pub fn with_policy(policy: &Policy) -> Result<(Loaded, Ids)> {
        let mut loaded = Loaded::load(&policy.conntrack, None)?;
        let ids = Ids::assign(policy, &Ids::default());
        loaded.maps.apply(&plan(policy, &ids), &[], Some(Enforcement::Enforce))?;
        Ok((loaded, ids))
    }

    pub fn ingress(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_INGRESS)
    }

    pub fn egress(&mut self) -> Result<&mut SchedClassifier> {
        program(&mut self.ebpf, PROG_EGRESS)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(FilterError::MissingProgram(name))?;
    program.try_into().map_err(|source| FilterError::Program { call: "type of", name, source })
}

/// How `up` attaches XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Native (driver) mode where the driver has it, else generic.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic mode, in the kernel's stack: works on every interface.
    Skb,
}

impl Mode {
    fn xdp(self) -> XdpMode {
        match self {
            Mode::Auto => XdpMode::Default,
            Mode::Native => XdpMode::Driver,
            Mode::Skb => XdpMode::Skb,
        }
    }
}

/// What `up` did.
pub struct Up {
    pub pins: Pins,
    /// A filter was up already and its programs were replaced in place.
    pub replaced: bool,
    /// The filter's mode now.
    pub enforcement: Enforcement,
}

/// The state lock of `iface`, for an `up` (a filter there or not), once the interface is
/// known to exist and bpffs to be mounted where the pins will outlive the command.
pub fn lock_for_up(iface: &str) -> Result<StateLock> {
    require_root()?;
    if if_index(iface).is_none() {
        return Err(FilterError::NoInterface(iface.into()));
    }
    ensure_bpffs()?;
    Ok(Pins::for_iface(iface).lock(LOCK_WAIT)?)
}

/// Puts `policy` in force on the interface `lock` is for: attaches and pins a new filter,
/// or, when one is up, replaces its programs in place and brings its maps to the policy.
/// `policy_file` is what later `allow`, `revoke` and `reload` read and write.
///
/// `enforcement`: the filter's mode, or `None` to keep a live filter's (a new one
/// enforces). Unless
/// [`SessionGuard::Skip`], a policy that would cut off the SSH session this runs from is refused when it
/// is to be enforced.
pub fn up(
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
    crate::lockout::guard_in(policy, &pins.iface, will_be, session_guard)?;
    let policy_file = std::path::absolute(policy_file).map_err(io_err("resolving", policy_file))?;
    if pins.is_up() {
        lock.refuse_if_pending()?;
        replace(lock, policy, policy_text, &policy_file, enforcement)?;
        let enforcement = LiveMaps::open(&pins)?.enforcement()?;
        return Ok(Up { pins, replaced: true, enforcement });
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
    result.map(|()| Up { pins, replaced: false, enforcement })
}

fn attach_and_pin(
    lock: &StateLock,
    policy: &Policy,
    policy_text: &str,
    policy_file: &Path,
    mode: Mode,
    enforcement: Enforcement,
) -> Result<()> {
    let pins = lock.pins();
    let mut loaded = Loaded::load(&policy.conntrack, Some(pins))?;
    let ids = Ids::assign(policy, &Ids::default());
    loaded.maps.apply(&plan(policy, &ids), &[], Some(enforcement))?;
    let iface = pins.iface.as_str();

    let xdp = loaded.ingress()?;
    let id = xdp.attach(iface, mode.xdp()).map_err(|source| FilterError::AttachXdp {
        iface: iface.into(),
        mode: mode.xdp(),
        hint: if mode == Mode::Native { "; driver mode unsupported? try --mode skb" } else { "" },
        source,
    })?;
    let link = xdp.take_link(id).map_err(|source| FilterError::Program {
        call: "take_link",
        name: PROG_INGRESS,
        source,
    })?;
    pin_link(FdLink::try_from(link), &pins.link_path(INGRESS_LINK))?;

    let tc = loaded.egress()?;
    let id = tc.attach(iface, TcAttachType::Egress).map_err(|source| FilterError::Program {
        call: "attach TC egress to",
        name: PROG_EGRESS,
        source,
    })?;
    let link = tc.take_link(id).map_err(|source| FilterError::Program {
        call: "take_link",
        name: PROG_EGRESS,
        source,
    })?;
    pin_link(FdLink::try_from(link), &pins.link_path(EGRESS_LINK))?;

    lock.save(policy_text, &LiveState { policy_file: policy_file.to_owned(), ids })?;
    Ok(())
}

fn pin_link(link: std::result::Result<FdLink, LinkError>, path: &Path) -> Result<()> {
    let link = link.map_err(|source| FilterError::Link { path: path.to_owned(), source })?;
    link.pin(path).map_err(|source| FilterError::Pin { path: path.to_owned(), source })?;
    Ok(())
}

fn pinned_link(path: &Path) -> Result<FdLink> {
    let link =
        PinnedLink::from_pin(path).map_err(|source| FilterError::Link { path: path.to_owned(), source })?;
    Ok(FdLink::from(link))
}

/// A second `up`: new programs into the old links, the maps brought to the policy.
fn replace(
    lock: &StateLock,
    policy: &Policy,
    policy_text: &str,
    policy_file: &Path,
    enforcement: Option<Enforcement>,
) -> Result<()> {
    let pins = lock.pins();
    let previous = pins.live_state()?;
    // Verified and loaded before anything changes: a program the kernel refuses, or maps
    // of another layout, leave the filter as it was.
    crate::maps::check_pinned(pins)?;
    let mut loaded = Loaded::load(&policy.conntrack, Some(pins))?;
    let ingress = XdpLink::try_from(pinned_link(&pins.link_path(INGRESS_LINK))?)
        .map_err(|source| FilterError::Link { path: pins.link_path(INGRESS_LINK), source })?;
    let egress = SchedClassifierLink::try_from(pinned_link(&pins.link_path(EGRESS_LINK))?)
        .map_err(|source| FilterError::Link { path: pins.link_path(EGRESS_LINK), source })?;

    let ids = Ids::assign(policy, &previous.ids);
    loaded.maps.apply(&plan(policy, &ids), &ids.new_counters(&previous.ids), enforcement)?;
    let iface = pins.iface.clone();
    loaded
        .ingress()?
        .attach_to_link(ingress)
        .map_err(|source| link_update_error(source, &iface, PROG_INGRESS))?;
    loaded
        .egress()?
        .attach_to_link(egress)
        .map_err(|source| link_update_error(source, &iface, PROG_EGRESS))?;
    lock.save(policy_text, &LiveState { policy_file: policy_file.to_owned(), ids })?;
    Ok(())
}

fn link_update_error(source: ProgramError, iface: &str, name: &'static str) -> FilterError {
    if if_index(iface).is_none() {
        return FilterError::InterfaceGone(iface.into());
    }
    FilterError::Program { call: "replacing in its link", name, source }
}

/// `firewall down`: detaches both programs and removes every pin and the state: the
/// interface is as before `up`.
pub fn down(iface: Option<&str>) -> Result<Pins> {
    require_root()?;
    let lock = Pins::lock_up(iface)?;
    take_down(&lock)?;
    Ok(lock.pins().clone())
}

/// What `down` does, under the lock the caller holds (the rollback of a first `up`).
pub fn take_down(lock: &StateLock) -> Result<()> {
    remove_pins(lock.pins())?;
    Ok(lock.remove_state()?)
}

/// Unpins the links (the last reference: the kernel detaches the programs), then the
/// maps, then the pin directory.
fn remove_pins(pins: &Pins) -> Result<()> {
    for name in [INGRESS_LINK, EGRESS_LINK] {
        let path = pins.link_path(name);
        if path.exists() {
            let link = PinnedLink::from_pin(&path)
                .map_err(|source| FilterError::Link { path: path.clone(), source })?;
            let link: FdLink = link.unpin().map_err(io_err("unpin", &path))?;
            drop(link);
        }
    }
    for name in MAPS {
        let path = pins.map_path(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io_err("unlink", &path))?;
        }
    }
    pins.remove_pin_dir()?;
    Ok(())
}
