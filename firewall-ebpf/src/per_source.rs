//! A rule's `per_source` limit: ufw's `limit`, hashlimit per source address (or prefix,
//! `--hashlimit-srcmask`), recent's `--hitcount`, and fail2ban done in the kernel. Each
//! source of a rule's new flows (its address masked to the limit's prefix) has a GCRA of
//! its own in `PER_SOURCE_BUCKETS` (see [`token_bucket::conform`]); a new flow over it
//! drops, and with the limit's `block` its address goes into `BLOCKLIST` until the
//! block's deadline, as `firewall block --for` would put it, so nothing of it passes
//! then, whatever the port. The kernel's own expiry ends it, as every block.
use aya_ebpf::maps::lpm_trie::Key;
use firewall_common::{Addr, BlockEntry, Direction, OFFENDER_SLOT, SourceKey};

use crate::{
    maps::{BLOCKLIST, PER_SOURCE_BUCKETS, PER_SOURCE_LIMITS, SCRATCH},
    token_bucket,
};

/// Whether rule `rule` may open one more flow from `source` (of IPv6 if `v6`) now; false
/// when the source is over the rule's rate, which then blocks it if the limit says so.
#[inline(always)]
pub fn take(rule: u32, source: &Addr, v6: bool, now: u64) -> bool {
    let Some(limit) = PER_SOURCE_LIMITS.get(rule) else {
        return false;
    };
    // The programs' stacks have no room for the keys: they are written in the scratch
    // slot (see maps::Scratch), the ingress program's, the only one a limit applies in.
    let Some(scratch) = SCRATCH.get_ptr_mut(Direction::In as u32) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array, the program's own: nothing else uses it
    // meanwhile. A map value pointer is valid for the program's run.
    unsafe {
        // The source's prefix: its address masked, two words at a time, in the scratch
        // slot, by the limit's mask (both 8-aligned: a load the compiler cannot prove
        // aligned becomes sixteen of a byte). The family is the parse's, which the
        // verifier knows on each of its paths.
        (*scratch).source = SourceKey { source: *source, rule, _pad: 0 };
        let mask = if v6 { &limit.mask6 } else { &limit.mask4 };
        let words = core::ptr::addr_of_mut!((*scratch).source.source).cast::<u64>();
        let mask = mask.as_ptr().cast::<u64>();
        *words &= *mask;
        *words.add(1) &= *mask.add(1);
        let key = &(*scratch).source;
        match PER_SOURCE_BUCKETS.get_ptr_mut(key) {
            Some(tat) => {
                if token_bucket::conform(tat, limit.interval_ns, limit.burst_ns, now) {
                    return true;
                }
            }
            // A source not seen (or forgotten) has a full bucket, and the burst is one or
            // more: this flow takes its first token. Two CPUs inserting at once for one
            // source each take one, as the bucket would let them.
            None => {
                let tat = now + limit.interval_ns;
                let _ = PER_SOURCE_BUCKETS.insert(key, &tat, 0);
                return true;
            }
        }
        if limit.block_ns != 0 {
            (*scratch).offender_key = Key::new(128, *source);
            (*scratch).offender = BlockEntry { deadline_ns: now + limit.block_ns, slot: OFFENDER_SLOT, rule };
            // A full blocklist leaves the offender to its rate alone.
            let _ = BLOCKLIST.insert(&(*scratch).offender_key, &(*scratch).offender, 0);
        }
    }
    false
}
