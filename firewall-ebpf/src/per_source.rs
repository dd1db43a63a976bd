//! A rule's `per_source` limits, on the new flows of each source (its address masked to
//! the limit's prefix, one key for both):
//!
//! - a rate: ufw's `limit`, hashlimit per source address (or prefix,
//!   `--hashlimit-srcmask`), recent's `--hitcount`, and fail2ban done in the kernel. Each
//!   source has a GCRA of its own in `PER_SOURCE_BUCKETS` (see [`token_bucket::conform`]);
//!   a new flow over it drops, and with the limit's `block` its address goes into
//!   `BLOCKLIST` until the block's deadline, as `firewall block --for` would put it, so
//!   nothing of it passes then, whatever the port. The kernel's own expiry ends it, as
//!   every block.
//! - a trap (`trap`): a rule that admits nothing, whose sources are blocked at once, as
//!   a rate's offenders are.
//! - `connections`: connlimit, how many flows a source may have open at once. Each
//!   source's last flows are in `PER_SOURCE_CONNECTIONS`, one a slot, and whether each is
//!   still open the flow tables say (see [`still_open`]), so a flow that ends, by FIN, RST
//!   or silence, frees its slot without anything here being told.
//!
//! The work is a global BPF function, [`per_source_admit`], which the verifier checks once,
//! on its own, whatever the paths that call it: in line, the admits that reach it are
//! walked from every header layout, and the masking alone cost it 7,600 instructions, the
//! walk of the slots 186,000.
use aya_ebpf::{bindings::BPF_NOEXIST, maps::lpm_trie::Key};
use firewall_common::{
    ALLOW_PER_SOURCE, ALLOW_TRAP, Addr, AllowValue, BlockEntry, Direction, FlowKey, MAX_CONNECTIONS,
    OFFENDER_SLOT, SourceKey, TCP_FIN_SEEN, TCP_RST_SEEN, allow_connections,
};

use crate::{
    maps::{
        BLOCKLIST, CONFIG, CONNTRACK, HALF_OPEN, PER_SOURCE_BUCKETS, PER_SOURCE_CONNECTIONS,
        PER_SOURCE_LIMITS, SCRATCH, Scratch,
    },
    token_bucket,
};

/// Whether the rule of `rule` (an allow-list entry with a `per_source` limit) may open the
/// flow `flow` (None: a packet no flow follows) from `source` (of IPv6 if `v6`) now: false
/// when the source has its connections open already, or is over the rule's rate, which
/// then blocks it if the limit says so.
#[inline(always)]
pub fn admit(rule: &AllowValue, source: &Addr, v6: bool, flow: Option<&FlowKey>, now: u64) -> bool {
    // The programs' stacks have no room for the keys, and a global function takes scalars
    // alone: they are written in the scratch slot (see maps::Scratch), the ingress
    // program's, the only one a limit applies in.
    let Some(scratch) = SCRATCH.get_ptr_mut(Direction::In as u32) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array, the program's own: nothing else uses it
    // meanwhile. A map value pointer is valid for the program's run.
    unsafe {
        (*scratch).source = SourceKey { source: *source, rule: rule.rule, _pad: 0 };
        // The address itself, not its prefix, is what an offender's block names.
        (*scratch).offender_key = Key::new(128, *source);
        // Written in its branch, not chosen: a key chosen between the flow's and zeros
        // was copied a byte at a time, each byte spilled to the stack.
        match flow {
            Some(flow) => (*scratch).flow = *flow,
            // Protocol 0: no flow to count (nothing else of it is read then).
            None => (*scratch).flow.protocol = 0,
        }
    }
    per_source_admit(rule.rule, rule.flags, u32::from(v6), now) != 0
}

/// [`admit`]'s work, on the source and the flow in the scratch slot: 1 admits, 0 refuses.
/// Global (its symbol exported), so that the verifier checks it once, its arguments
/// scalars it knows nothing of.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn per_source_admit(rule: u32, flags: u32, v6: u32, now: u64) -> u32 {
    let Some(limit) = PER_SOURCE_LIMITS.get(rule) else {
        return 0;
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(Direction::In as u32) else {
        return 0;
    };
    // A trap's source is its address, which `offender_key` holds.
    if flags & ALLOW_TRAP != 0 {
        // SAFETY: the scratch slot just taken.
        unsafe { block_offender(scratch, rule, limit.block_ns, now) };
        return 0;
    }
    // SAFETY: as `admit`'s.
    unsafe {
        // The source's prefix: its address masked, two words at a time, in the scratch
        // slot, by the limit's mask (both 8-aligned: a load the compiler cannot prove
        // aligned becomes sixteen of a byte).
        let mask = if v6 != 0 { &limit.mask6 } else { &limit.mask4 };
        let words = core::ptr::addr_of_mut!((*scratch).source.source).cast::<u64>();
        let mask = mask.as_ptr().cast::<u64>();
        *words &= *mask;
        *words.add(1) &= *mask.add(1);
        let cap = allow_connections(flags);
        if cap != 0 && (*scratch).flow.protocol != 0 && !connection_slot(scratch, cap, now) {
            return 0;
        }
        if flags & ALLOW_PER_SOURCE == 0 {
            return 1;
        }
        let key = &(*scratch).source;
        match PER_SOURCE_BUCKETS.get_ptr_mut(key) {
            Some(tat) => {
                if token_bucket::conform(tat, limit.interval_ns, limit.burst_ns, now) {
                    return 1;
                }
            }
            // A source not seen (or forgotten) has a full bucket, and the burst is one or
            // more: this flow takes its first token. Two CPUs inserting at once for one
            // source each take one, as the bucket would let them.
            None => {
                let tat = now + limit.interval_ns;
                let _ = PER_SOURCE_BUCKETS.insert(key, &tat, 0);
                return 1;
            }
        }
        if limit.block_ns != 0 {
            block_offender(scratch, rule, limit.block_ns, now);
        }
    }
    0
}

/// Blocks the source whose address is in the scratch slot's `offender_key` for `block_ns`,
/// by rule `rule`. A full blocklist leaves the offender to its rate alone (a trap's, to the
/// trap: each of its packets there still drops).
///
/// # Safety
/// `scratch` is [`per_source_admit`]'s scratch slot, its `offender_key` written.
#[inline(always)]
unsafe fn block_offender(scratch: *mut Scratch, rule: u32, block_ns: u64, now: u64) {
    // SAFETY: as the caller's.
    unsafe {
        (*scratch).offender = BlockEntry { deadline_ns: now + block_ns, slot: OFFENDER_SLOT, rule };
        let _ = BLOCKLIST.insert(&(*scratch).offender_key, &(*scratch).offender, 0);
    }
}

/// `Scratch::free` while no slot is free, and once one holds the new flow's own key.
const NO_SLOT: u32 = MAX_CONNECTIONS as u32;
const OWN_SLOT: u32 = NO_SLOT + 1;

/// Whether the source keyed in the scratch slot has fewer than `cap` flows open under its
/// rule; if so, the scratch slot's flow takes a slot: its own if one holds its key already
/// (a SYN sent again is one connection, never two slots), else a free one. Two CPUs opening
/// flows of one source at the same instant may both take the same free slot, and one
/// connection goes uncounted until it ends.
///
/// The count and the free slot are kept in the scratch slot, not in registers: the
/// verifier knows nothing of a map value's contents, so the paths through one slot meet
/// again at the next, and it walks each slot once, not once for every count before it.
///
/// # Safety
/// `scratch` is [`per_source_admit`]'s scratch slot, its `source` and `flow` written.
#[inline(always)]
unsafe fn connection_slot(scratch: *mut Scratch, cap: u32, now: u64) -> bool {
    let Some(config) = CONFIG.get(0) else {
        return false;
    };
    // SAFETY: as the caller's; a map value pointer is valid for the program's run.
    unsafe {
        let flow = &(*scratch).flow;
        let key = &(*scratch).source;
        let Some(entry) = PER_SOURCE_CONNECTIONS.get_ptr_mut(key) else {
            // A source not seen (or forgotten): its first flow has the first slot.
            (*scratch).connections.flows[0] = *flow;
            let _ = PER_SOURCE_CONNECTIONS.insert(key, &(*scratch).connections, BPF_NOEXIST as u64);
            return true;
        };
        let open = core::ptr::addr_of_mut!((*scratch).open);
        let free = core::ptr::addr_of_mut!((*scratch).free);
        open.write_volatile(0);
        free.write_volatile(NO_SLOT);
        for slot in 0..MAX_CONNECTIONS {
            let taken = &(*entry).flows[slot];
            if same_flow(taken, flow) {
                // Its own slot already: not counted, nothing to write.
                free.write_volatile(OWN_SLOT);
            } else if taken.protocol == 0 || !still_open(taken, key.rule, now, config) {
                if free.read_volatile() != OWN_SLOT {
                    free.write_volatile(slot as u32);
                }
            } else {
                open.write_volatile(open.read_volatile() + 1);
            }
        }
        if open.read_volatile() >= cap {
            return false;
        }
        // Fewer open than `cap`, which is at most the slots: one is free, or its own.
        let slot = free.read_volatile() as usize;
        if slot < MAX_CONNECTIONS {
            (*entry).flows[slot] = *flow;
        }
        true
    }
}

/// Whether two flows' keys are the same (their padding aside), word by word: compared as
/// arrays, the address would be a call to `bcmp`.
#[inline(always)]
fn same_flow(a: &FlowKey, b: &FlowKey) -> bool {
    let (a_peer, b_peer) = (a.peer.as_ptr().cast::<u64>(), b.peer.as_ptr().cast::<u64>());
    // SAFETY: both keys are 8-aligned (map values, or the scratch slot's) and their
    // addresses 16 bytes from their start.
    let same_peer = unsafe { *a_peer == *b_peer && *a_peer.add(1) == *b_peer.add(1) };
    same_peer && a.peer_port == b.peer_port && a.local_port == b.local_port && a.protocol == b.protocol
}

/// Whether `flow` is a flow of rule `rule` still open: in either table, not expired, and
/// (TCP) neither ended by FIN nor by RST.
#[inline(always)]
fn still_open(flow: &FlowKey, rule: u32, now: u64, config: &firewall_common::Config) -> bool {
    let Some(entry) = CONNTRACK.get_ptr(flow).or_else(|| HALF_OPEN.get_ptr(flow)) else {
        return false;
    };
    // SAFETY: a map value pointer, valid for this run.
    let entry = unsafe { &*entry };
    u32::from(entry.rule) == rule
        && entry.tcp_state != TCP_FIN_SEEN
        && entry.tcp_state != TCP_RST_SEEN
        && now.saturating_sub(entry.last_seen_ns) <= config.timeout_ns(flow.protocol, entry.tcp_state)
}
