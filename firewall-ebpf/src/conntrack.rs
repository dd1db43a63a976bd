//! Conntrack-lite: returns pass only on the exact reversed 5-tuple of a flow a rule
//! admitted.
//!
//! A flow is keyed from this host's point of view (peer, peer port, local port,
//! protocol), so both directions find the same entry, and the entry remembers which
//! direction opened it. A packet travelling the other way is the return traffic
//! (the seed's `--state ESTABLISHED` line); one travelling the opening way is the flow
//! continuing (the seed's `NEW,ESTABLISHED` line).
//!
//! Two tables, as netfilter's "assured" flows: every flow starts in `HALF_OPEN`, and moves
//! to `CONNTRACK` once both ends have been heard (see firewall_common::Flow), so that
//! spoofed packets, which nobody answers, never evict a flow that was. The host's own TCP
//! segments are trusted; the peer's RST and FIN change a flow only inside the window the
//! host advertised, so a forger who guessed the tuple but not the sequence ends nothing.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    maps::LruHashMap,
};
use firewall_common::{
    Addr, Config, Direction, ECHO_REQUESTS_IN, ECHO_REQUESTS_OUT, FLOW_HEARD_IN, FLOW_HEARD_OUT,
    FLOW_HOST_ACKED, FLOW_HOST_SYN, Flow, FlowKey, FlowTable, Line, TCP_FIN_SEEN, TCP_OPEN, TCP_RST_SEEN,
    TCP_SYN_RECV, TCP_SYN_SENT, flows_inserted, flows_removed, rule_counter,
};

use crate::{
    maps::{CONNTRACK, FLOW_STATS, HALF_OPEN},
    parse::{Echo, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// Refresh a flow's `last_seen_ns` at most this often: fewer writes to a shared line.
const REFRESH_NS: u64 = 1_000_000_000;

/// The kernel's tick length in ns, and what to take off the tick count scaled by it to
/// read `CLOCK_MONOTONIC_COARSE`: set at load (firewall-user's `kernel::clock`), in
/// `.rodata`, which the verifier reads as constants. A tick length of 0: the kernel's
/// was not found, and `now` asks the coarse clock itself.
#[unsafe(no_mangle)]
static CLOCK_TICK_NS: u64 = 0;
#[unsafe(no_mangle)]
static CLOCK_BASE_NS: u64 = 0;

/// `CLOCK_MONOTONIC_COARSE`, as `firewall conntrack` reads it, or at most two ticks and a
/// quarter behind it (see firewall-user's `kernel::clock`): a few ticks' precision is
/// plenty for timeouts of seconds and rates of packets per second. Read as the tick count
/// (`bpf_jiffies64`, one load in the kernel), which the coarse clock follows tick for
/// tick: asking the coarse clock costs a sequence-locked read of the timekeeper, 12 ns
/// more a packet here (the precise clock, 30 ns more).
#[inline(always)]
pub fn now() -> u64 {
    // Volatile: the compiler must not fold the zeroes they hold in the object.
    // SAFETY: reads of plain statics.
    let (tick_ns, base_ns) =
        unsafe { (core::ptr::read_volatile(&CLOCK_TICK_NS), core::ptr::read_volatile(&CLOCK_BASE_NS)) };
    if tick_ns == 0 {
        // SAFETY: a helper without arguments.
        return unsafe { bpf_ktime_get_coarse_ns() };
    }
    // SAFETY: a helper without arguments.
    (unsafe { bpf_jiffies64() }).wrapping_mul(tick_ns).wrapping_sub(base_ns)
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
    Some(FlowKey { peer, peer_port, local_port, protocol, _pad: 0, _pad2: 0 })
}

/// An echo flow's `peer_port`: which way its requests travel.
#[inline(always)]
fn echo_origin(requests: Direction) -> u16 {
    match requests {
        Direction::In => ECHO_REQUESTS_IN,
        Direction::Out => ECHO_REQUESTS_OUT,
    }
}

/// Adds one to this CPU's `FLOW_STATS[index]`.
#[inline(always)]
fn count(index: u32) {
    if let Some(n) = FLOW_STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a per-CPU array; nothing else writes it meanwhile.
        unsafe { *n += 1 };
    }
}

#[inline(always)]
fn table(which: FlowTable) -> &'static LruHashMap<FlowKey, Flow> {
    match which {
        FlowTable::Established => &CONNTRACK,
        FlowTable::HalfOpen => &HALF_OPEN,
    }
}

/// Stores `flow` under the new key `key` in `which`, and counts it. False if it could not
/// be stored: another CPU stored the key first (its entry stands), or the LRU had no
/// node to give (a full one evicts its least recently used flow instead).
#[inline(always)]
fn insert(which: FlowTable, key: &FlowKey, flow: &Flow) -> bool {
    let stored = table(which).insert(key, flow, BPF_NOEXIST as u64).is_ok();
    if stored {
        count(flows_inserted(which));
    }
    stored
}

#[inline(always)]
fn remove(which: FlowTable, key: &FlowKey) {
    if table(which).remove(key).is_ok() {
        count(flows_removed(which));
    }
}

/// The counter of the line that admits this packet as part of a tracked flow, or `None`
/// when it belongs to no live flow and the rules must judge it.
#[inline(always)]
pub fn established(key: &FlowKey, direction: Direction, l4: &L4, now: u64, config: &Config) -> Option<u32> {
    let (flow, which) = match CONNTRACK.get_ptr_mut(key) {
        Some(flow) => (flow, FlowTable::Established),
        None => (HALF_OPEN.get_ptr_mut(key)?, FlowTable::HalfOpen),
    };
    // SAFETY: a map value pointer, valid for this run; racing writers only store
    // whole words, and a stale read costs at most one refresh.
    let flow = unsafe { &mut *flow };
    if now.saturating_sub(flow.last_seen_ns) > config.timeout_ns(key.protocol, flow.tcp_state) {
        remove(which, key);
        return None;
    }
    let returning = flow.origin != direction as u8;
    let mut next = *flow;
    let heard_both_ways = match *l4 {
        L4::Icmp { echo, .. } => {
            // Only a reply answers a request (the Cilium GHSA-c66w-hq56-4q97 lesson), and
            // requests always go through their rule, so its limit holds for every one.
            if !(returning && echo == Echo::Reply) {
                return None;
            }
            true
        }
        // (A bare SYN never comes here: the caller sends it to the rules.)
        L4::Tcp { flags, seq, ack, window, .. } => {
            tcp_segment(&mut next, which, direction, flags, seq, ack, window)
        }
        _ => returning,
    };
    let line = rule_counter(u32::from(flow.rule), if returning { Line::Established } else { Line::New });
    if heard_both_ways && which == FlowTable::HalfOpen {
        next.last_seen_ns = now;
        // In the established table before it leaves this one: no packet meets a gap.
        if insert(FlowTable::Established, key, &next) {
            remove(FlowTable::HalfOpen, key);
            return Some(line);
        }
    }
    // Written only when something changed, or a second went by: the entry's cache line
    // is shared by every CPU the flow's packets come through.
    if !same(&next, flow) || now - flow.last_seen_ns > REFRESH_NS {
        next.last_seen_ns = now;
        store(flow, &next);
    }
    Some(line)
}

/// `*to = *from` in three 8-byte stores: assigning the struct, or its fields in order
/// (LLVM merges them back), costs the programs a call of LLVM's memmove, a byte loop.
/// Volatile, so that they stay stores of words; racing readers see whole words.
#[inline(always)]
fn store(to: &mut Flow, from: &Flow) {
    const WORDS: usize = core::mem::size_of::<Flow>() / 8;
    const _: () = assert!(core::mem::size_of::<Flow>() % 8 == 0 && core::mem::align_of::<Flow>() == 8);
    let (to, from) = (core::ptr::from_mut(to).cast::<u64>(), core::ptr::from_ref(from).cast::<u64>());
    for i in 0..WORDS {
        // SAFETY: both are whole `Flow`s, 8-aligned and a multiple of 8 bytes long (checked
        // above), of plain integers.
        unsafe { core::ptr::write_volatile(to.add(i), from.add(i).read()) };
    }
}

/// Whether `a` and `b` differ in nothing but their times.
#[inline(always)]
fn same(a: &Flow, b: &Flow) -> bool {
    a.tcp_state == b.tcp_state
        && a.flags == b.flags
        && a.host_ack == b.host_ack
        && a.host_window == b.host_window
        && a.host_syn_next == b.host_syn_next
}

/// What a TCP segment travelling `direction` does to a tracked flow (`flow`, a copy of
/// the entry in `which`): the host's numbers recorded from its own segments, the ends
/// heard, the state moved by what is believed. True when it completes the opening: the
/// flow has been heard both ways.
#[inline(always)]
fn tcp_segment(
    flow: &mut Flow,
    which: FlowTable,
    direction: Direction,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
) -> bool {
    let from_host = direction == Direction::Out;
    if from_host {
        host_numbers(flow, flags, seq, ack, window);
    }
    // The host's TCP decides what its segments mean; the peer's RST and FIN count only
    // inside the window the host advertised (else its TCP ignores them, or answers with
    // a challenge ACK), or, before the host acknowledged anything, a RST refusing the
    // host's SYN.
    let believed = from_host || believed(flow, flags, seq, ack);
    let opening = flags & (TCP_SYN | TCP_RST | TCP_FIN) == 0 && flags & TCP_ACK != 0;
    let heard = flow.flags;
    if flags & TCP_RST == 0 {
        flow.flags |= 1 << direction as u8;
    }
    let mut completes = false;
    match flow.tcp_state {
        _ if flags & TCP_RST != 0 => {
            if believed {
                flow.tcp_state = TCP_RST_SEEN;
            }
        }
        TCP_OPEN if flags & TCP_FIN != 0 && believed => flow.tcp_state = TCP_FIN_SEEN,
        // A RST the host's TCP did not take (RFC 5961 answers one inside the window but
        // not at its edge with a challenge ACK): the host speaks on, so the flow is open.
        TCP_RST_SEEN if from_host && which == FlowTable::Established => {
            flow.tcp_state = if flags & TCP_FIN != 0 { TCP_FIN_SEEN } else { TCP_OPEN }
        }
        TCP_SYN_SENT | TCP_SYN_RECV if flags & TCP_FIN != 0 => {
            if believed {
                flow.tcp_state = TCP_FIN_SEEN;
            }
        }
        // The responder's SYN-ACK, acknowledging the opener's SYN.
        TCP_SYN_SENT
            if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
                && direction as u8 != flow.origin
                && (from_host || acknowledges_syn(flow, ack)) =>
        {
            flow.tcp_state = TCP_SYN_RECV
        }
        // An ACK from an end once the other has been heard: the handshake's third segment,
        // or the answer to a session picked up mid-stream. The host's is trusted; the
        // peer's must acknowledge the host's SYN, when there was one, which a spoofer
        // never saw.
        TCP_SYN_RECV if opening => {
            completes = if from_host {
                heard & FLOW_HEARD_IN != 0
            } else {
                heard & FLOW_HEARD_OUT != 0
                    && (flow.flags & FLOW_HOST_SYN == 0 || acknowledges_syn(flow, ack))
            };
            if completes {
                flow.tcp_state = TCP_OPEN;
            }
        }
        _ => {}
    }
    completes
}

/// Records the host's own segment: its acknowledgement and window (each time they
/// change), and its SYN's next sequence number.
#[inline(always)]
fn host_numbers(flow: &mut Flow, flags: u8, seq: u32, ack: u32, window: u16) {
    if flags & TCP_ACK != 0 {
        flow.host_ack = ack;
        flow.host_window = window;
        flow.flags |= FLOW_HOST_ACKED;
    }
    if flags & TCP_SYN != 0 {
        flow.host_syn_next = seq.wrapping_add(1);
        flow.flags |= FLOW_HOST_SYN;
    }
}

/// Whether an inbound RST or FIN is one the host's TCP would act on: its sequence number
/// in `[host_ack, host_ack + window]` (modulo 2^32); before the host acknowledged
/// anything, a RST whose acknowledgement is of the host's SYN.
#[inline(always)]
fn believed(flow: &Flow, flags: u8, seq: u32, ack: u32) -> bool {
    if flow.flags & FLOW_HOST_ACKED != 0 {
        return seq.wrapping_sub(flow.host_ack) <= u32::from(flow.host_window);
    }
    flags & TCP_RST != 0 && flags & TCP_ACK != 0 && acknowledges_syn(flow, ack)
}

#[inline(always)]
fn acknowledges_syn(flow: &Flow, ack: u32) -> bool {
    flow.flags & FLOW_HOST_SYN != 0 && ack == flow.host_syn_next
}

/// Whether `key` is a live flow in either table (for an ICMP error's quoted datagram:
/// RELATED).
#[inline(always)]
pub fn is_tracked(key: &FlowKey, now: u64, config: &Config) -> bool {
    let Some(flow) = CONNTRACK.get_ptr(key).or_else(|| HALF_OPEN.get_ptr(key)) else {
        return false;
    };
    // SAFETY: a map value pointer, valid for this run.
    let flow = unsafe { &*flow };
    now.saturating_sub(flow.last_seen_ns) <= config.timeout_ns(key.protocol, flow.tcp_state)
}

/// Starts (or restarts) tracking a flow that rule `rule` just admitted, opened in
/// `origin` by this packet travelling `direction` (the other way for an egress pickup),
/// in the half-open table.
#[inline(always)]
pub fn track(
    key: &FlowKey,
    origin: Direction,
    direction: Direction,
    rule: u32,
    l4: &L4,
    now: u64,
    config: &Config,
) {
    // Zeroed a word at a time, volatile: the struct's zero fields written one by one (or
    // `..Flow::default()`) LLVM merged into a call of its memset, a byte loop, on every
    // flow's first packet. `Flow` is three 8-aligned words of plain integers (see `store`).
    let mut words = [0u64; 3];
    for word in &mut words {
        // SAFETY: a valid, aligned word of `words`.
        unsafe { core::ptr::write_volatile(word, 0) };
    }
    // SAFETY: `words` is a `Flow`'s size and alignment, and all zeroes is a `Flow`.
    let flow = unsafe { &mut *words.as_mut_ptr().cast::<Flow>() };
    flow.last_seen_ns = now;
    // The rule's index fits (firewall_common::MAX_RULES).
    flow.rule = rule as u16;
    flow.origin = origin as u8;
    flow.tcp_state = TCP_OPEN;
    match *l4 {
        L4::Tcp { flags, seq, ack, window, .. } => {
            flow.tcp_state = if flags & TCP_RST != 0 {
                TCP_RST_SEEN
            } else if flags & TCP_FIN != 0 {
                TCP_FIN_SEEN
            } else if flags & TCP_ACK == 0 {
                TCP_SYN_SENT
            } else {
                // A session older than the filter, met mid-stream.
                TCP_SYN_RECV
            };
            if flags & TCP_RST == 0 {
                flow.flags = 1 << direction as u8;
            }
            if direction == Direction::Out {
                host_numbers(flow, flags, seq, ack, window);
            }
        }
        L4::Icmp { echo, .. } if echo != Echo::Request => return,
        _ => {}
    }
    // Only a bare SYN or an echo request can come here while the established table holds
    // the key (any other packet of a live flow took the fast path, which forgets expired
    // ones): only they look.
    let may_be_established = match *l4 {
        L4::Tcp { flags, .. } => flags & TCP_ACK == 0,
        L4::Icmp { .. } => true,
        _ => false,
    };
    if may_be_established && let Some(existing) = CONNTRACK.get_ptr_mut(key) {
        // SAFETY: a map value pointer, valid for this run.
        let existing = unsafe { &mut *existing };
        let live =
            now.saturating_sub(existing.last_seen_ns) <= config.timeout_ns(key.protocol, existing.tcp_state);
        match *l4 {
            // The next request of an echo answered before: the flow goes on.
            L4::Icmp { .. } if live => {
                existing.rule = rule as u16;
                existing.last_seen_ns = now;
                return;
            }
            // A SYN on the tuple of an open connection opens nothing (netfilter ignores
            // it too): a forger's would otherwise demote the flow, and a real new
            // connection on it rides the entry.
            L4::Tcp { .. } if live && existing.tcp_state == TCP_OPEN => return,
            // A port reused after the connection ended: tracked afresh.
            _ => remove(FlowTable::Established, key),
        }
    }
    match HALF_OPEN.get_ptr_mut(key) {
        // A SYN sent again, a port reused: the entry is replaced where it is, which costs
        // the LRU nothing (an update would take a node and give one back) and leaves the
        // table's size as it was.
        // SAFETY: a map value pointer, valid for this run; racing readers see whole fields.
        Some(existing) => store(unsafe { &mut *existing }, flow),
        None => {
            insert(FlowTable::HalfOpen, key, flow);
        }
    }
}
