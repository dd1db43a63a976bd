//! Attaching the loaded programs, pinning them, replacing them, removing them.
//!
//! Transitions are where firewalls break, so each is careful: a first `up` fills every
//! map before the programs are attached and undoes everything if a step fails; a second
//! `up` loads and verifies the new programs, brings the pinned maps to the new policy,
//! then swaps each program in place through its pinned link (`bpf_link_update`), so no
//! packet meets an interface without a filter and no flow or counter is lost (but those
//! of a map another version made at another layout: `kernel::relayout`).
use std::path::Path;

use aya::programs::{
    ProgramError, TcAttachType, Xdp, XdpMode,
    links::{FdLink, LinkError, PinnedLink},
    xdp::XdpLinkId,
};
use firewall_common::{MAP_CONFIG, MAPS, PROG_EGRESS, PROG_INGRESS};

use crate::{
    compile::{Ids, plan},
    kernel::{
        filter::{FilterError, Result, if_driver, if_index},
        load::Loaded,
        maps::{Enforcement, live_enforcement},
        offloads::OffloadOn,
        pins::{
            AppliedWith, EGRESS_LINK, INGRESS_LINK, LiveState, PROGRAMS_LEVEL, Pins, RuntimeOnly, StateLock,
            io_err,
        },
        relayout::{Relaid, relaid},
        resize::{Resized, Sizes, shrink, swap_in},
    },
    policy::Policy,
};

/// How `up` attaches XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The mode that suits the driver: generic on a veth (native XDP there turns off the
    /// peer's segmentation offload bulk receive depends on), else native where the driver
    /// has it, else generic.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic mode, in the kernel's stack: works on every interface.
    Skb,
}

/// Which of the kernel's two XDP hooks a filter is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpHook {
    /// In the driver, before the kernel makes an skb (`ip link` says `xdp`).
    Native,
    /// In the kernel's stack, on the skb, after GRO (`ip link` says `xdpgeneric`).
    Generic,
}

/// The hook a first `up` attached XDP to, and, where `--mode auto` chose it for the
/// driver, why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct XdpAttached {
    pub hook: XdpHook,
    pub why: Option<String>,
}

/// Why `--mode auto` attaches generic XDP to an interface whose driver is `driver`
/// (`ethtool -i`), though the driver has native XDP; `None`: native suits it.
///
/// A veth clears its peer's segmentation offload while a native program is on
/// (`veth_fix_features`), so the sender cuts every segment to the MTU and each is judged
/// and received alone; generic XDP judges after GRO, one verdict for a 64 KB aggregate.
///
/// Not virtio-net: a native program clears the guest's receive offloads there
/// (`virtnet_clear_guest_offloads`), but a generic one does too, since the kernel turns
/// LRO and hardware GRO off on every interface it installs a generic program on
/// (`generic_xdp_install`), which virtio-net reads as the same offloads. Both modes
/// receive MTU-sized frames (measured in a guest); only native puts the offloads back
/// when it is detached, and drops a flood before the kernel makes an skb of it.
pub fn auto_generic_because(driver: &str) -> Option<&'static str> {
    match driver {
        "veth" => Some("a veth, where native XDP turns its peer's segmentation offload off"),
        _ => None,
    }
}

/// Attaches `xdp` to `iface` as `mode` says: the link's id and the hook it is on.
fn attach_xdp(xdp: &mut Xdp, iface: &str, mode: Mode) -> Result<(XdpLinkId, XdpAttached)> {
    let attach = |xdp: &mut Xdp, flags: XdpMode, hint: &'static str| {
        xdp.attach(iface, flags).map_err(|source| FilterError::AttachXdp {
            iface: iface.into(),
            mode: flags,
            hint,
            source,
        })
    };
    let generic = |why: Option<String>| XdpAttached { hook: XdpHook::Generic, why };
    let native = XdpAttached { hook: XdpHook::Native, why: None };
    match mode {
        Mode::Native => {
            Ok((attach(xdp, XdpMode::Driver, "; driver mode unsupported? try --mode skb")?, native))
        }
        Mode::Skb => Ok((attach(xdp, XdpMode::Skb, "")?, generic(None))),
        Mode::Auto => {
            if let Some(why) = if_driver(iface).as_deref().and_then(auto_generic_because) {
                let why = format!("{why}; --mode native chooses it");
                return Ok((attach(xdp, XdpMode::Skb, "")?, generic(Some(why))));
            }
            match attach(xdp, XdpMode::Driver, "") {
                Ok(id) => Ok((id, native)),
                // A driver without native XDP, or one that refuses this interface (an MTU
                // past what it takes natively): generic XDP judges the same.
                Err(FilterError::AttachXdp { source, .. }) => {
                    let why = match &source {
                        ProgramError::SyscallError(err)
                            if err.io_error.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                        {
                            "its driver has no native XDP".to_owned()
                        }
                        ProgramError::SyscallError(err) => {
                            format!("its driver refused native XDP: {}", err.io_error)
                        }
                        other => format!("its driver refused native XDP: {other}"),
                    };
                    Ok((attach(xdp, XdpMode::Skb, "")?, generic(Some(why))))
                }
                Err(err) => Err(err),
            }
        }
    }
}

/// A first `up`: the maps filled, both programs attached and their links pinned, the
/// state saved. `offloads_on`: the receive offloads on before the attach, on the interface
/// and its lower devices, which the state records for `down` to turn back on.
pub(crate) fn attach_and_pin(
    lock: &StateLock,
    policy: &Policy,
    policy_text: &str,
    policy_file: &Path,
    mode: Mode,
    enforcement: Enforcement,
    offloads_on: &[OffloadOn],
) -> Result<XdpAttached> {
    let pins = lock.pins();
    let ids = Ids::assign(policy, &Ids::default());
    let plan = plan(policy, &ids);
    let mut loaded = Loaded::load(&Sizes::for_plan(&policy.conntrack, &plan), Some(pins), &[])?;
    loaded.maps.apply(&plan, &[], Some(enforcement))?;
    let iface = pins.iface.as_str();

    let xdp = loaded.ingress()?;
    let (id, attached) = attach_xdp(xdp, iface, mode)?;
    // Recorded whatever the hook: generic XDP turns them off for good, and a driver may
    // leave one off after a native program's detach too (vmxnet3's LRO stays "off
    // [requested on]" until the features are asked again). `down` turns on only what is
    // off then.
    let offloads_to_restore = offloads_on.to_vec();
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

    lock.save(
        policy_text,
        &LiveState {
            policy_file: policy_file.to_owned(),
            ids,
            programs: PROGRAMS_LEVEL,
            runtime_only: false,
            applied_with: AppliedWith::of(policy),
            // Recorded from the live CONFIG by `save`.
            mode: None,
            offloads_to_restore,
        },
    )?;
    Ok(attached)
}

/// Whether the filter's pinned links are attached to `iface` as it is now. Removing an
/// interface severs the links on it (the kernel detaches them, and they say interface 0);
/// an interface made since under the same name is another, with no filter on it.
pub(crate) fn links_attached(pins: &Pins) -> Result<bool> {
    let Some(now) = if_index(&pins.iface) else { return Ok(false) };
    for name in [INGRESS_LINK, EGRESS_LINK] {
        let path = pins.link_path(name);
        let ifindex = pinned_link_ifindex(&path).map_err(io_err("reading the link", &path))?;
        if ifindex != now {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The index of the interface the link pinned at `path` is on, as the kernel says: 0 once
/// the interface was removed. aya reads `bpf_link_info` but does not say which interface.
fn pinned_link_ifindex(path: &Path) -> std::io::Result<u32> {
    use std::os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    };
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    #[repr(C)]
    struct ObjGet {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    #[repr(C)]
    struct InfoByFd {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let get = ObjGet { pathname: path.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: a `bpf_attr` for BPF_OBJ_GET of the size given, whose path outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &raw const get, size_of::<ObjGet>()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just made for this process, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // `bpf_link_info`, 8-byte aligned: `type`, `id`, `prog_id`, padding, then the union,
    // whose XDP and TCX members both start with `ifindex` (zeros past what the kernel fills).
    let mut info = [0u64; 32];
    let by_fd = InfoByFd {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: a `bpf_attr` for BPF_OBJ_GET_INFO_BY_FD of the size given; `info` holds the
    // `info_len` bytes the kernel may write.
    let done = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &raw const by_fd, size_of::<InfoByFd>())
    };
    if done < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let union = info[2].to_ne_bytes();
    Ok(u32::from_ne_bytes([union[0], union[1], union[2], union[3]]))
}

fn pin_link(link: std::result::Result<FdLink, LinkError>, path: &Path) -> Result<()> {
    let link = link.map_err(|source| FilterError::Link { path: path.to_owned(), source })?;
    link.pin(path).map_err(|source| FilterError::Pin { path: path.to_owned(), source })?;
    Ok(())
}

pub(crate) fn pinned_link(path: &Path) -> Result<FdLink> {
    let link =
        PinnedLink::from_pin(path).map_err(|source| FilterError::Link { path: path.to_owned(), source })?;
    Ok(FdLink::from(link))
}

/// A second `up`: new programs into the old links, the maps brought to the policy, and
/// resized to it where they must be (see `kernel::resize`): grown with the new programs,
/// before the policy is in them; shrunk after, by one more swap. Maps another version made
/// at another layout are made anew with the new programs (see `kernel::relayout`). What
/// was resized and what was made anew.
pub(crate) fn replace(
    lock: &StateLock,
    policy: &Policy,
    policy_text: &str,
    policy_file: &Path,
    enforcement: Option<Enforcement>,
    runtime_only: RuntimeOnly,
) -> Result<Replaced> {
    let pins = lock.pins();
    let previous = pins.live_state()?;
    // Verified and loaded before anything changes: a program the kernel refuses, or a map
    // of another layout that cannot be made anew, leave the filter as it was.
    let relaid = relaid(pins, enforcement)?;
    let new_maps: Vec<&'static str> = relaid.iter().map(|r| r.map).collect();
    // A CONFIG made anew holds no mode: the one asked for, else the one the state recorded.
    let enforcement = match enforcement {
        None if new_maps.contains(&MAP_CONFIG) => Some(live_enforcement(pins)?),
        given => given,
    };
    let ids = Ids::assign(policy, &previous.ids);
    let plan = plan(policy, &ids);
    let live = Sizes::of_live(pins)?.without(&new_maps);
    let grown = live.grown(&policy.conntrack, &plan);
    let mut resized = live.changes(&grown);
    let (mut maps, ()) = swap_in(pins, &grown, &resized, &relaid, |maps| {
        maps.apply(&plan, &ids.new_counters(&previous.ids), enforcement)?;
        if new_maps.contains(&MAP_CONFIG) {
            // The blocks' bit was the old CONFIG's, which `apply` kept: told again here.
            maps.settle_blocks_flag()?;
        }
        Ok(())
    })?;
    // The flows of the maps made anew were copied twice: before the policy was applied
    // (which ended those it no longer admits) and after the swap, with those the old
    // programs began meanwhile by the old policy (a copy that brings an ended one back):
    // those the new policy does not admit end here, again.
    if !resized.is_empty() || !relaid.is_empty() {
        maps.forget_flows(&plan)?;
    }
    lock.save(
        policy_text,
        &LiveState {
            policy_file: policy_file.to_owned(),
            ids,
            programs: PROGRAMS_LEVEL,
            runtime_only: runtime_only.0,
            applied_with: AppliedWith::of(policy),
            // Recorded from the live CONFIG by `save`.
            mode: None,
            // The programs stay on the hook the first `up` chose, and its record with them.
            offloads_to_restore: previous.offloads_to_restore,
        },
    )?;
    resized.extend(shrink(pins, &grown, &policy.conntrack, &plan));
    Ok(Replaced { resized, relaid })
}

/// What a second `up` changed besides the policy.
#[derive(Debug, Default)]
pub struct Replaced {
    /// The maps resized to fit the policy.
    pub resized: Vec<Resized>,
    /// The maps made anew at this version's layout.
    pub relaid: Vec<Relaid>,
}

pub(crate) fn link_update_error(source: ProgramError, iface: &str, name: &'static str) -> FilterError {
    if if_index(iface).is_none() {
        return FilterError::InterfaceGone(iface.into());
    }
    FilterError::Program { call: "replacing in its link", name, source }
}

/// Unpins the links (the last reference: the kernel detaches the programs), then the
/// maps, then the pin directory.
pub(crate) fn remove_pins(pins: &Pins) -> Result<()> {
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
        for path in [pins.map_path(name), pins.staging_map_path(name)] {
            if path.exists() {
                std::fs::remove_file(&path).map_err(io_err("unlink", &path))?;
            }
        }
    }
    pins.remove_pin_dir()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::auto_generic_because;

    #[test]
    fn auto_is_generic_on_a_veth_and_native_elsewhere() {
        assert!(auto_generic_because("veth").is_some());
        for driver in ["virtio_net", "mlx5_core", "i40e", "ice", "ixgbe", "ena", "bnxt_en", "bonding", ""] {
            assert_eq!(auto_generic_because(driver), None, "{driver}");
        }
    }
}
