//! `firewall follow`: with `[host] follow_addresses`, the live filter kept to the addresses
//! the interface has, as DHCP renumbers it or a floating IP moves in and out. The kernel
//! says when an address comes or goes (rtnetlink's address groups); each time, the policy
//! in force is applied again with the interface's addresses as they are then
//! ([`crate::kernel::filter::in_force_on`]), as `reload` applies it: new addresses go into
//! the maps before old ones leave, and flows and counters are kept.
use std::{
    net::IpAddr,
    os::fd::{AsFd, OwnedFd},
    time::Duration,
};

use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
    },
};

use crate::{
    kernel::Filter,
    names::Asking,
    ops::{LiveError, lockout::SessionGuard, reload},
};

/// rtnetlink's multicast groups of IPv4 and IPv6 address changes (linux/rtnetlink.h).
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// Changes come in bursts (a lease renewed: an address removed, then added): they are
/// applied once the kernel has been quiet this long.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("the policy in force has no [host] follow_addresses = true: nothing to follow")]
    NotFollowing,
    #[error("listening to the kernel's address changes ({call})")]
    Netlink {
        call: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Live(#[from] LiveError),
}

/// The addresses in force on the filter's interface: each family's, listed first.
pub type InForce = (Vec<IpAddr>, Vec<IpAddr>);

/// Follows the interface's addresses until the process is stopped: applies the policy in
/// force once, then again after each burst of address changes, and calls `told` with the
/// addresses in force each time they differ from the last.
pub fn follow(filter: &Filter, mut told: impl FnMut(&InForce)) -> Result<(), FollowError> {
    if !filter.pins().policy().map_err(LiveError::from)?.follow_addresses {
        return Err(FollowError::NotFollowing);
    }
    let socket = changes()?;
    let mut last = None;
    loop {
        let in_force = apply(filter)?;
        if last.as_ref() != Some(&in_force) {
            told(&in_force);
            last = Some(in_force);
        }
        wait_for_changes(&socket)?;
    }
}

/// A netlink socket that hears every address change of both families.
fn changes() -> Result<OwnedFd, FollowError> {
    let netlink = |call| move |source| FollowError::Netlink { call, source };
    let socket =
        socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
            .map_err(netlink("socket"))?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &NetlinkAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR),
    )
    .map_err(netlink("bind"))?;
    Ok(socket)
}

/// Blocks until the kernel tells of a change, then reads what else it tells until it has
/// been quiet for [`SETTLE`]. What the messages say is not read: the interface's addresses
/// are read whole after them.
fn wait_for_changes(socket: &OwnedFd) -> Result<(), FollowError> {
    let netlink = |call| move |source| FollowError::Netlink { call, source };
    let mut buf = vec![0u8; 64 * 1024];
    let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
    recv(fd, &mut buf, MsgFlags::empty()).map_err(netlink("recv"))?;
    let settle = PollTimeout::try_from(SETTLE).expect("a short timeout");
    loop {
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, settle).map_err(netlink("poll"))? == 0 {
            return Ok(());
        }
        recv(fd, &mut buf, MsgFlags::MSG_DONTWAIT).map_err(netlink("recv"))?;
    }
}

/// The policy in force, applied again with the interface's addresses as they are now.
fn apply(filter: &Filter) -> Result<InForce, FollowError> {
    let lock = filter.lock().map_err(LiveError::from)?;
    let pins = lock.pins();
    let text = pins.policy_text().map_err(LiveError::from)?;
    let state = pins.live_state().map_err(LiveError::from)?;
    // No SSH session runs this: the guard is for a person at a terminal.
    reload::reload_text(&lock, &text, &state.policy_file, None, SessionGuard::Skip, Asking::Recorded)?;
    let maps = crate::kernel::maps::LiveMaps::open(pins).map_err(LiveError::from)?;
    let policy =
        maps.with_followed_addresses(pins.policy().map_err(LiveError::from)?).map_err(LiveError::from)?;
    Ok((
        policy.addresses().into_iter().map(IpAddr::V4).collect(),
        policy.addresses6().into_iter().map(IpAddr::V6).collect(),
    ))
}
