//! [`Filter`], the handle every command on a live filter starts from: it checks that the
//! process is root and finds the filter's pins once.
use aya::{
    EbpfError,
    programs::{ProgramError, XdpMode, links::LinkError},
};

use std::{collections::BTreeMap, net::IpAddr};

use firewall_common::MAX_HOST_ADDRESSES;

use crate::{
    kernel::{
        maps::MapsError,
        pins::{LOCK_WAIT, Pins, PinsError, StateLock, ensure_bpffs},
    },
    policy::{Policy, may_be_host_address},
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
    #[error(
        "the filter on {0} is attached to nothing: its interface was removed, and the {0} there now is another, unfiltered; `firewall up` attaches the filter to it afresh"
    )]
    Severed(String),
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
    LockOut(#[from] crate::ops::lockout::LockOut),
}

pub type Result<T> = std::result::Result<T, FilterError>;

/// A filter on one interface, found by a process that is root.
#[derive(Clone, Debug)]
pub struct Filter {
    pins: Pins,
}

impl Filter {
    /// The filter up on `iface`, or the only one up in this network namespace.
    pub fn open(iface: Option<&str>) -> Result<Filter> {
        require_root()?;
        Ok(Filter { pins: Pins::find(iface)? })
    }

    /// Where `up` puts a filter on `iface`, one there or not: the interface exists, and
    /// bpffs is mounted where the pins will outlive the command.
    pub fn at(iface: &str) -> Result<Filter> {
        require_root()?;
        if if_index(iface).is_none() {
            return Err(FilterError::NoInterface(iface.into()));
        }
        ensure_bpffs()?;
        Ok(Filter { pins: Pins::for_iface(iface) })
    }

    pub fn iface(&self) -> &str {
        &self.pins.iface
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// The state lock every change holds, for a filter that must still be up once the
    /// lock is held (it may have gone down while this waited), its interface still there.
    pub fn lock(&self) -> Result<StateLock> {
        let lock = self.lock_pins()?;
        self.check_interface()?;
        Ok(lock)
    }

    /// The state lock of a filter that must still be up once it is held, whose interface
    /// may be gone: `down` and `confirm`, which concern only what is pinned.
    pub fn lock_pins(&self) -> Result<StateLock> {
        let lock = self.pins.lock(LOCK_WAIT)?;
        if !self.pins.is_up() {
            return Err(
                PinsError::NotUp { iface: self.pins.iface.clone(), dir: self.pins.dir.clone() }.into()
            );
        }
        Ok(lock)
    }

    /// The state lock for `up`, whether a filter is up or not.
    pub fn lock_for_up(&self) -> Result<StateLock> {
        Ok(self.pins.lock(LOCK_WAIT)?)
    }

    /// Fails if the filter's interface is gone (its pins remain until `down`), or was
    /// removed and made again: the filter's programs are on no interface then.
    pub fn check_interface(&self) -> Result<()> {
        check_interface(&self.pins)
    }
}

/// [`Filter::check_interface`] of the filter `pins` names: what `list` and `serve` tell,
/// and every change refuses.
pub fn check_interface(pins: &Pins) -> Result<()> {
    if if_index(&pins.iface).is_none() {
        return Err(FilterError::InterfaceGone(pins.iface.clone()));
    }
    if !crate::kernel::attach::links_attached(pins)? {
        return Err(FilterError::Severed(pins.iface.clone()));
    }
    Ok(())
}

/// Fails with [`FilterError::NeedsRoot`] unless the process is root.
pub(crate) fn require_root() -> Result<()> {
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

/// The name of the driver behind `iface`, as `ethtool -i` says it (`veth`, `virtio_net`,
/// `mlx5_core`…); `None` where the interface does not answer.
pub fn if_driver(iface: &str) -> Option<String> {
    const ETHTOOL_GDRVINFO: u32 = 3;
    /// `struct ethtool_drvinfo` (linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        rest: [u8; 32 * 4 + 12 + 4 * 5],
    }
    let mut info = DrvInfo { cmd: ETHTOOL_GDRVINFO, driver: [0; 32], rest: [0; 32 * 4 + 12 + 4 * 5] };
    // SAFETY: a `DrvInfo` that outlives the call, as large as the kernel writes.
    unsafe { ethtool(iface, (&raw mut info).cast()) }.ok()?;
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(info.driver.len());
    Some(String::from_utf8_lossy(&info.driver[..len]).into_owned())
}

/// One SIOCETHTOOL request on `iface`, whose command and buffer `data` holds: the ioctl's
/// value (some commands return flags in it).
///
/// # Safety
///
/// `data` points at the command's `struct ethtool_…`, valid for as many bytes as the
/// kernel reads and writes for that command (its header's count says how many), and
/// outlives the call.
pub(crate) unsafe fn ethtool(iface: &str, data: *mut libc::c_void) -> std::io::Result<libc::c_int> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    // SAFETY: an all-zero `ifreq` is a valid one.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = iface.as_bytes();
    if name.len() >= request.ifr_name.len() {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (to, from) in request.ifr_name.iter_mut().zip(name) {
        *to = *from as libc::c_char;
    }
    request.ifr_ifru.ifru_data = data.cast();
    // SAFETY: plain arguments; the kernel makes the descriptor, owned here alone.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just made for this process.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: SIOCETHTOOL with an `ifreq` whose data is as the caller promised.
    let done = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &raw mut request) };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(done)
}

/// The addresses `iface` has now, of both families (none for an interface that does not
/// exist); `None` when the kernel cannot be asked.
pub fn interface_addresses(iface: &str) -> Option<Vec<std::net::IpAddr>> {
    let all = every_interface_address()?;
    Some(all.into_iter().filter(|(on, _)| on == iface).map(|(_, addr)| addr).collect())
}

/// Every address of every interface now, of both families, with its interface's name;
/// `None` when the kernel cannot be asked.
pub fn every_interface_address() -> Option<Vec<(String, std::net::IpAddr)>> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    Some(
        addrs
            .filter_map(|a| {
                let sock = a.address?;
                let addr = sock
                    .as_sockaddr_in()
                    .map(|s| std::net::IpAddr::V4(s.ip()))
                    .or_else(|| sock.as_sockaddr_in6().map(|s| std::net::IpAddr::V6(s.ip())))?;
                Some((a.interface_name, addr))
            })
            .collect(),
    )
}

/// The policy as it applies on `iface` now: with `[host] follow_addresses`, the addresses
/// the interface has join the listed ones, each family's after its own (IPv6 only with
/// `address6`: without it IPv6 is dropped whole), as a listed address would be: unicast,
/// IPv6 routable (not link-local, whose traffic passes anyway where IPv6 needs it), outside
/// the range IPv4 owns in the maps, the lists together at most `MAX_HOST_ADDRESSES`. An
/// interface that cannot be read adds nothing. Then the peers written as DNS names
/// are given the addresses they hold in the filter's record ([`crate::names::fold`]).
pub fn in_force_on(policy: Policy, iface: &str) -> Policy {
    let names = policy.names();
    if names.is_empty() {
        return with_interface_addresses(policy, iface);
    }
    let held = crate::names::Names::load(&Pins::for_iface(iface)).held(&names, crate::unix_now());
    in_force_with(policy, iface, &held)
}

/// [`in_force_on`], the names given the addresses `held` has for them (a preview's, asked
/// now and recorded nowhere).
pub fn in_force_with(policy: Policy, iface: &str, held: &BTreeMap<String, Vec<IpAddr>>) -> Policy {
    crate::names::fold(with_interface_addresses(policy, iface), held)
}

/// [`in_force_on`]'s first part: the interface's addresses, with `follow_addresses`.
fn with_interface_addresses(mut policy: Policy, iface: &str) -> Policy {
    if !policy.follow_addresses {
        return policy;
    }
    let mut found = interface_addresses(iface).unwrap_or_default();
    found.sort_unstable();
    policy.followed = Some(found.clone());
    for addr in found {
        // 127.0.0.0/8 on a filtered interface is no address anyone reaches the host by.
        let wanted = may_be_host_address(addr)
            && !addr.is_loopback()
            && (addr.is_ipv4() || policy.address6.is_some())
            && !policy.is_host_address(addr);
        if !wanted || policy.addresses().len() + policy.addresses6().len() >= MAX_HOST_ADDRESSES as usize {
            continue;
        }
        match addr {
            IpAddr::V4(v4) => policy.more_addresses.push(v4),
            IpAddr::V6(v6) => policy.more_addresses6.push(v6),
        }
    }
    policy
}

/// The programs' clock, `CLOCK_MONOTONIC_COARSE` (theirs is at most two ticks behind: see
/// [`Clock`](super::clock::Clock)).
pub fn kernel_time_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
