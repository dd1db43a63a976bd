//! Fragments, which iptables never sees: netfilter reassembles a datagram before its
//! rules run. XDP cannot hold packets back to reassemble, so each fragment is judged as it
//! comes.
//!
//! A first fragment carries the headers, and is judged by them as a whole datagram is
//! (it must hold its whole transport header: RFC 1858's tiny fragments drop). When it
//! passes, its datagram is remembered here for `[conntrack] fragment_timeout`, with the
//! line it was counted on; the later fragments of that datagram, which carry no headers,
//! pass on that line until then. A later fragment with no such first drops
//! ([`Builtin::FragmentOrphan`]): its first never came, was dropped, is too old, or comes
//! after it. Holding it for its first would take a queue XDP does not have; every stack
//! this host talks to sends a datagram's first fragment first, and reordering on the way is
//! rare (the datagram is then lost and resent, as on any lossy path). One that would
//! overwrite what the first carried (RFC 1858's overlapping fragments, RFC 5722) drops
//! ([`Builtin::InvalidFragment`]): what the filter judged must be what the host reassembles.
use firewall_common::{Builtin, Chain, Config, Direction, builtin_counter};

use crate::{
    chain::Action,
    conntrack,
    maps::{FRAGMENTS, SCRATCH, Scratch},
    parse::Ip,
};

const NS_PER_S: u64 = 1_000_000_000;

/// This CPU's scratch, its key written for `ip`'s datagram.
#[inline(always)]
fn scratch(ip: &Ip, direction: Direction) -> Option<*mut Scratch> {
    let scratch = SCRATCH.get_ptr_mut(direction as u32)?;
    // SAFETY: this CPU's slot of a per-CPU array, the program's own (one per direction):
    // nothing else uses it meanwhile. Field by field: a whole key built first would be
    // built on the stack.
    unsafe {
        let key = &mut (*scratch).fragment;
        key.src = ip.src;
        key.dst = ip.dst;
        key.id = ip.datagram.id;
        key.protocol = ip.datagram.protocol;
        key.direction = direction as u8;
        key._pad = [0; 2];
    }
    Some(scratch)
}

/// `ip`, a first fragment, passed, counted on `counter`: the later fragments of its
/// datagram may follow for a while.
#[inline(always)]
pub fn first_passed(ip: &Ip, direction: Direction, counter: u32, config: &Config) {
    let Some(scratch) = scratch(ip, direction) else {
        return;
    };
    // SAFETY: as in `scratch`.
    unsafe {
        let entry = &mut (*scratch).datagram;
        entry.deadline_ns = conntrack::now() + config.fragment_timeout_s as u64 * NS_PER_S;
        entry.counter = counter;
        entry.first_len = ip.datagram.len;
        entry._pad = 0;
        // A full table forgets its oldest datagram (LRU), whose fragments are long through.
        let _ = FRAGMENTS.insert(&(*scratch).fragment, &(*scratch).datagram, 0);
    }
}

/// A later fragment, `offset` bytes into its datagram, on `chain`: it passes on the line
/// its first did, or drops on the chain's line that says why.
#[inline(always)]
pub fn later(ip: &Ip, offset: u16, direction: Direction, chain: Chain) -> (Action, u32) {
    let orphan = (Action::Drop, builtin_counter(chain, Builtin::FragmentOrphan));
    let Some(scratch) = scratch(ip, direction) else {
        return orphan;
    };
    // SAFETY: as in `scratch`.
    let Some(first) = FRAGMENTS.get_ptr(unsafe { &(*scratch).fragment }) else {
        return orphan;
    };
    // SAFETY: a map value pointer, valid for this run (its fields read through it: a
    // copy would take stack the programs do not have).
    unsafe {
        if conntrack::now() >= (*first).deadline_ns {
            return orphan;
        }
        if offset < (*first).first_len {
            return (Action::Drop, builtin_counter(chain, Builtin::InvalidFragment));
        }
        (Action::Pass, (*first).counter)
    }
}
