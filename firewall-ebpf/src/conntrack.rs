//! Conntrack-lite: returns pass only on the exact reversed 5-tuple of a flow a rule
//! admitted.
//!
//! A flow is keyed from this host's point of view (peer, peer port, local port,
//! protocol), so both directions find the same entry, and the entry remembers which
//! direction opened it. A packet travelling the other way is the return traffic
//! (the seed's `--state ESTABLISHED` line); one travelling the opening way is the flow
//! continuing (the seed's `NEW,ESTABLISHED` line).
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use firewall_common::{
    Addr, Config, Direction, ECHO_REQUESTS_IN, ECHO_REQUESTS_OUT, Flow, FlowKey, Line, PROTO_TCP, PROTO_UDP,
    TCP_FIN_SEEN, TCP_OPEN, TCP_RST_SEEN, rule_counter,
};

use crate::{
    maps::CONNTRACK,
    parse::{Echo, L4, TCP_FIN, TCP_RST},
};

/// Refresh a flow's `last_seen_ns` at most this often: fewer writes to a shared line.
const REFRESH_NS: u64 = 1_000_000_000;

/// The coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`, as `firewall conntrack` reads
/// it): a tick's precision is plenty for timeouts of seconds and rates of packets per
/// second, and reading it costs a fraction of the precise clocks (30 ns a packet here).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The flow a packet travelling `direction` with remote end `peer` belongs to, or `None`
/// for what conntrack does not follow (ICMP other than echo, protocols other than TCP, UDP,
/// ICMP). ICMPv6 echo flows carry its protocol number, so they never meet an IPv4 echo's.
#[inline(always)]
pub fn flow_key(direction: Direction, peer: Addr, protocol: u8, l4: &L4) -> Option<FlowKey> {
    let (peer_port, local_port) = match *l4 {
        L4::Tcp { src_port, dst_port, .. } | L4::Udp { src_port, dst_port } => match direction {
            Direction::In => (src_port, dst_port),
            Direction::Out => (dst_port, src_port),
        },
        // An echo flow is keyed on the direction of its requests too (the Cilium
        // GHSA-c66w-hq56-4q97 lesson): a reply finds the requests it answers, and an inbound
        // request never meets, nor replaces, the entry of an outbound echo with its id.
        L4::Icmp { echo: Echo::Request, echo_id, .. } => (echo_origin(direction), echo_id),
        L4::Icmp { echo: Echo::Reply, echo_id, .. } => (echo_origin(direction.reverse()), echo_id),
        L4::Icmp { .. } | L4::Other => return None,
    };
    Some(FlowKey { peer, peer_port, local_port, protocol, _pad: [0; 3] })
}

/// An echo flow's `peer_port`: which way its requests travel.
#[inline(always)]
fn echo_origin(requests: Direction) -> u16 {
    match requests {
        Direction::In => ECHO_REQUESTS_IN,
        Direction::Out => ECHO_REQUESTS_OUT,
    }
}

/// The counter of the line that admits this packet as part of a tracked flow, or `None`
/// when it belongs to no live flow and the rules must judge it.
#[inline(always)]
pub fn established(key: &FlowKey, direction: Direction, l4: &L4, now: u64, config: &Config) -> Option<u32> {
    let flow = CONNTRACK.get_ptr_mut(key)?;
    // SAFETY: a map value pointer, valid for this run; racing writers only store
    // whole words, and a stale read costs at most one refresh.
    let flow = unsafe { &mut *flow };
    if now.saturating_sub(flow.last_seen_ns) > timeout(key.protocol, flow.tcp_state, config) {
        let _ = CONNTRACK.remove(key);
        return None;
    }
    let returning = flow.origin != direction as u8;
    let mut state = flow.tcp_state;
    match *l4 {
        L4::Icmp { echo, .. } => {
            // Only a reply answers a request (the Cilium GHSA-c66w-hq56-4q97 lesson), and
            // requests always go through their rule, so its limit holds for every one.
            if !(returning && echo == Echo::Reply) {
                return None;
            }
        }
        // (A bare SYN never comes here: the caller sends it to the rules.)
        L4::Tcp { flags, .. } => state = next_tcp_state(state, flags),
        _ => {}
    }
    if state != flow.tcp_state || now - flow.last_seen_ns > REFRESH_NS {
        flow.tcp_state = state;
        flow.last_seen_ns = now;
    }
    Some(rule_counter(flow.rule, if returning { Line::Established } else { Line::New }))
}

/// Whether `key` is a live flow (for an ICMP error's quoted datagram: RELATED).
#[inline(always)]
pub fn is_tracked(key: &FlowKey, now: u64, config: &Config) -> bool {
    match CONNTRACK.get_ptr(key) {
        // SAFETY: a map value pointer, valid for this run.
        Some(flow) => unsafe {
            now.saturating_sub((*flow).last_seen_ns) <= timeout(key.protocol, (*flow).tcp_state, config)
        },
        None => false,
    }
}

/// Starts (or restarts) tracking a flow that rule `rule` just admitted.
#[inline(always)]
pub fn track(key: &FlowKey, direction: Direction, rule: u32, l4: &L4, now: u64) {
    let tcp_state = match *l4 {
        L4::Tcp { flags, .. } => next_tcp_state(TCP_OPEN, flags),
        L4::Icmp { echo, .. } if echo != Echo::Request => return,
        _ => TCP_OPEN,
    };
    let flow = Flow { last_seen_ns: now, rule, origin: direction as u8, tcp_state, _pad: [0; 2] };
    // A full LRU evicts its least recently used flow; nothing to do on failure.
    let _ = CONNTRACK.insert(key, &flow, 0);
}

/// FIN and RST shorten a TCP flow's life. (A new SYN from the opener, reusing the ports,
/// goes through its rule, which tracks the flow afresh.)
#[inline(always)]
fn next_tcp_state(state: u8, flags: u8) -> u8 {
    if flags & TCP_RST != 0 {
        TCP_RST_SEEN
    } else if flags & TCP_FIN != 0 && state == TCP_OPEN {
        TCP_FIN_SEEN
    } else {
        state
    }
}

#[inline(always)]
fn timeout(protocol: u8, tcp_state: u8, config: &Config) -> u64 {
    match (protocol, tcp_state) {
        (PROTO_TCP, TCP_OPEN) => config.tcp_established_timeout_ns,
        (PROTO_TCP, TCP_FIN_SEEN) => config.tcp_fin_timeout_ns,
        (PROTO_TCP, _) => config.tcp_rst_timeout_ns,
        (PROTO_UDP, _) => config.udp_timeout_ns,
        _ => config.icmp_timeout_ns,
    }
}
