//! The chain engine: the seed's rules in the seed's order, for both directions.
//!
//! | step | seed | counted on |
//! | --- | --- | --- |
//! | non-IP passes (ARP) | iptables never sees it | `non-ip` |
//! | IPv6 drops | (ip6tables left open) | `ipv6` |
//! | malformed headers drop | `--state INVALID` | `invalid` |
//! | anti-spoof sources, destinations (ingress) | `-s`/`-d … -j DROP` | the entry's own line |
//! | not our address (ingress) → FORWARD; not our source (egress) | `-d $OURIP`, `-s $OURIP` | FORWARD / `antispoof-source` |
//! | fragments, bad TCP flags drop | `--state INVALID` | `invalid-fragment`, `invalid-tcp-flags` |
//! | a tracked flow passes (checked first: the fast path) | `--state ESTABLISHED` | the rule's lines |
//! | our service answering a session older than the filter (egress) | conntrack's pickup | the rule's `Established` line |
//! | an allow-list entry admits, within its limit (an ICMP error, if the rule says `related`, only about a tracked flow) | `NEW,ESTABLISHED -j ACCEPT`, `-m limit`, `RELATED` | the rule's `New` line |
//! | everything else drops | `-P DROP` | `policy` |
use aya_ebpf::maps::lpm_trie::Key;
use firewall_common::{
    ALLOW_KEY_SERVICE_BITS, ALLOW_LIMITED, ALLOW_RELATED, ANY_PEER, AllowKey, AllowValue, Builtin,
    CONFIG_HAS_PREFIXES, CONFIG_READY, Chain, Config, Direction, FlowKey, Line, MAX_COUNTERS, PROTO_ICMP,
    PROTO_TCP, PROTO_UDP, builtin_counter, rule_counter,
};

use crate::{
    conntrack,
    maps::{ALLOW_EXACT, ALLOW_PREFIX, ANTISPOOF_DST, ANTISPOOF_SRC, CONFIG, COUNTERS},
    parse::{Frame, Ipv4, L3, L4, TCP_ACK, TCP_SYN, parse_l3, parse_l4, parse_quoted, tcp_flags_valid},
    token_bucket,
};

pub enum Action {
    Pass,
    Drop,
}

/// Judges one frame travelling `direction` and counts it on the line that decided.
#[inline(always)]
pub fn filter(frame: &impl Frame, direction: Direction) -> Action {
    let (action, counter) = judge(frame, direction);
    if let Some(line) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: this CPU's slot of a per-CPU array; nothing else writes it meanwhile.
        unsafe {
            (*line).packets += 1;
            (*line).bytes += frame.len() as u64;
        }
    }
    action
}

#[inline(always)]
fn drop(chain: Chain, line: Builtin) -> (Action, u32) {
    (Action::Drop, builtin_counter(chain, line))
}

#[inline(always)]
fn judge(frame: &impl Frame, direction: Direction) -> (Action, u32) {
    let chain = Chain::of(direction);
    // Until `up` has filled every map, pass everything and count nothing: a filter
    // half-loaded must not cut the host off.
    // A copy on the stack: a map pointer kept live across the program invites LLVM to
    // do arithmetic on it that the verifier refuses.
    let Some(&config) = CONFIG.get(0) else {
        return (Action::Pass, MAX_COUNTERS);
    };
    let config = &config;
    if config.flags & CONFIG_READY == 0 {
        return (Action::Pass, MAX_COUNTERS);
    }

    let ip = match parse_l3(frame) {
        Ok(L3::Ipv4(ip)) => ip,
        Ok(L3::NonIp) => return (Action::Pass, builtin_counter(chain, Builtin::NonIp)),
        Ok(L3::Ipv6) => return drop(chain, Builtin::Ipv6),
        Err(_) => return drop(chain, Builtin::Invalid),
    };
    let (ours, peer) = match direction {
        Direction::In => (ip.dst == config.address, ip.src),
        Direction::Out => (ip.src == config.address, ip.dst),
    };
    let now = conntrack::now();

    // The fast path: most packets belong to a flow a rule already admitted, and skip the
    // lists. A flow exists only with a peer the anti-spoof lists let through, and a
    // reload ends the flows of peers they come to list, so no verdict changes; what is
    // malformed or fragmented still goes the long way, to be counted where it belongs.
    if ours
        && !ip.fragment
        && let Some(counter) = established(frame, &ip, direction, now, config)
    {
        return (Action::Pass, counter);
    }

    // The long way, in the seed's order.
    let chain = match direction {
        Direction::In => {
            if let Some(counter) = ANTISPOOF_SRC.get(Key::new(32, ip.src)) {
                return (Action::Drop, *counter);
            }
            // Our own address is in no destination list (the policy is refused if it is).
            if !ours && let Some(counter) = ANTISPOOF_DST.get(Key::new(32, ip.dst)) {
                return (Action::Drop, *counter);
            }
            if ours { Chain::Input } else { Chain::Forward }
        }
        Direction::Out => {
            if !ours {
                return drop(Chain::Output, Builtin::SpoofedSource);
            }
            Chain::Output
        }
    };

    if ip.fragment {
        return drop(chain, Builtin::InvalidFragment);
    }
    let l4 = match parse_l4(frame, &ip) {
        Ok(l4) => l4,
        Err(_) => return drop(chain, Builtin::Invalid),
    };
    if let L4::Tcp { flags, .. } = l4
        && !tcp_flags_valid(flags)
    {
        return drop(chain, Builtin::InvalidTcpFlags);
    }
    if chain == Chain::Forward {
        return drop(chain, Builtin::Policy);
    }
    let flow = conntrack::flow_key(direction, &ip, &l4);

    // Then the allow-lists: may this packet open a flow?
    let (protocol, port) = match l4 {
        L4::Tcp { dst_port, .. } => (PROTO_TCP, dst_port),
        L4::Udp { dst_port, .. } => (PROTO_UDP, dst_port),
        L4::Icmp { kind, .. } => (PROTO_ICMP, kind as u16),
        L4::Other => return drop(chain, Builtin::Policy),
    };
    let key = AllowKey { direction: direction as u8, protocol, port, peer };
    let Some(rule) = allowed(&key, config) else {
        if let Some(counter) = picked_up(direction, &l4, peer, flow.as_ref(), now, config) {
            return (Action::Pass, counter);
        }
        return drop(chain, Builtin::Policy);
    };
    // An ICMP error for a rule that asks: only about a flow we track (RELATED).
    if rule.flags & ALLOW_RELATED != 0 && !related(frame, &ip, direction, now, config) {
        return drop(chain, Builtin::Policy);
    }
    // Over its limit, a packet falls through to the policy, as with iptables' `-m limit`.
    if rule.flags & ALLOW_LIMITED != 0 && !token_bucket::take(rule.rule, now) {
        return drop(chain, Builtin::Policy);
    }
    if let Some(key) = &flow {
        conntrack::track(key, direction, rule.rule, &l4, now);
    }
    (Action::Pass, rule_counter(rule.rule, Line::New))
}

/// The counter of the flow `ip` belongs to, if it is well formed and tracked.
#[inline(always)]
fn established(
    frame: &impl Frame,
    ip: &Ipv4,
    direction: Direction,
    now: u64,
    config: &Config,
) -> Option<u32> {
    let l4 = parse_l4(frame, ip).ok()?;
    // A bare SYN opens a connection: from the far end it is never a return, from our end
    // its rule tracks it afresh. Skipping the lookup also spares SYN floods one.
    if let L4::Tcp { flags, .. } = l4
        && (!tcp_flags_valid(flags) || flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
    {
        return None;
    }
    let key = conntrack::flow_key(direction, ip, &l4)?;
    conntrack::established(&key, direction, &l4, now, config)
}

/// Whether the datagram an ICMP error quotes belongs to a tracked flow: it travelled the
/// other way (the error answers it), so it is looked up as a packet of that direction.
///
/// Inlined, like everything here: as a BPF subprogram LLVM passes it the packet pointer
/// in a shape the verifier refuses (`pointer arithmetic with <<=`). The second header
/// walk triples the verifier's work (see tests/tests/verifier.rs), not a packet's.
#[inline(always)]
fn related(frame: &impl Frame, ip: &Ipv4, direction: Direction, now: u64, config: &Config) -> bool {
    let Ok((quoted, l4)) = parse_quoted(frame, ip) else {
        return false;
    };
    match conntrack::flow_key(direction.reverse(), &quoted, &l4) {
        Some(key) => conntrack::is_tracked(&key, now, config),
        None => false,
    }
}

/// The lock-out trap, from our side: a session to one of our services that began before
/// the filter, where the server speaks first (an SSH session printing `firewall up`'s
/// own output). An egress TCP segment with ACK and no SYN from a port an inbound rule serves, to
/// a peer that rule admits, is that session's return traffic: track it as opened from
/// outside. Only egress, the host's own packets: ingress keeps to the exact tuple.
#[inline(always)]
fn picked_up(
    direction: Direction,
    l4: &L4,
    peer: [u8; 4],
    flow: Option<&FlowKey>,
    now: u64,
    config: &Config,
) -> Option<u32> {
    let (Direction::Out, L4::Tcp { src_port, flags, .. }, Some(flow)) = (direction, l4, flow) else {
        return None;
    };
    // Established segments only: a handshake is still under way, and its SYN, when the
    // peer repeats it, goes through the rule.
    if flags & (TCP_SYN | TCP_ACK) != TCP_ACK {
        return None;
    }
    let key = AllowKey { direction: Direction::In as u8, protocol: PROTO_TCP, port: *src_port, peer };
    let rule = allowed(&key, config)?;
    conntrack::track(flow, Direction::In, rule.rule, l4, now);
    Some(rule_counter(rule.rule, Line::Established))
}

/// The most specific entry for `key`: the peer itself (a hash: constant time at any
/// list size), then its prefixes (a trie, skipped while it is empty), then anyone.
#[inline(always)]
fn allowed(key: &AllowKey, config: &Config) -> Option<AllowValue> {
    if let Some(value) = ALLOW_EXACT.get_ptr(key) {
        // SAFETY: a map value pointer, valid for this run.
        return Some(unsafe { *value });
    }
    if config.flags & CONFIG_HAS_PREFIXES != 0
        && let Some(value) = ALLOW_PREFIX.get(Key::new(ALLOW_KEY_SERVICE_BITS + 32, *key))
    {
        return Some(*value);
    }
    let anyone = AllowKey { peer: ANY_PEER, ..*key };
    // SAFETY: as above.
    ALLOW_EXACT.get_ptr(&anyone).map(|value| unsafe { *value })
}
