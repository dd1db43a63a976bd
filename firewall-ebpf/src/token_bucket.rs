//! iptables' `-m limit --limit R --limit-burst B`, one bucket per rule shared by every CPU,
//! and the per-source buckets of a rule's `per_source` limit (see [`crate::per_source`]).
//!
//! A per-CPU bucket would let N CPUs admit N times the rate. The bucket is a GCRA (see
//! `firewall_common::TokenBucket`): its whole state is one word, the theoretical arrival
//! time, so a compare-and-swap updates it for all CPUs at once without a lock.
use core::intrinsics::{AtomicOrdering, atomic_cxchg};

use firewall_common::TokenBucket;

use crate::maps::TOKEN_BUCKETS;

/// Attempts before giving up under contention; a lost race means another CPU just took a
/// token, so refusing then errs on the side of the limit.
const CAS_ATTEMPTS: usize = 4;

/// Takes a token from rule `rule`'s bucket; false when the bucket is empty.
#[inline(always)]
pub fn take(rule: u32, now: u64) -> bool {
    let Some(bucket) = TOKEN_BUCKETS.get_ptr_mut(rule) else {
        return false;
    };
    // SAFETY: a map value pointer, valid for the program's run.
    let (interval, burst, tat) = unsafe {
        let bucket: *mut TokenBucket = bucket;
        ((*bucket).interval_ns, (*bucket).burst_ns, core::ptr::addr_of_mut!((*bucket).tat))
    };
    conform(tat, interval, burst, now)
}

/// Takes a token from the GCRA whose `tat` is at `tat` (a map value's word), one token
/// `interval` ns, `burst` ns deep; false when the bucket is empty.
#[inline(always)]
pub fn conform(tat: *mut u64, interval: u64, burst: u64, now: u64) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        // SAFETY: the caller's map value pointer, valid for the program's run; a torn read
        // is impossible for an aligned u64.
        let seen = unsafe { core::ptr::read_volatile(tat) };
        let start = if seen > now { seen } else { now };
        // Conforms while the bucket runs at most `burst` ahead of now.
        if start + interval > now + burst {
            return false;
        }
        // SAFETY: as above; BPF_CMPXCHG (ISA v3) on the map value.
        let (_, swapped) = unsafe {
            atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                tat,
                seen,
                start + interval,
            )
        };
        if swapped {
            return true;
        }
    }
    false
}
