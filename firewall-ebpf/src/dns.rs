//! `[dns] learn`: a peer's name learned from the host's own DNS answers, before the program
//! that asked reads them.
//!
//! An answer from UDP port 53 on a tracked flow (the host asked an allowed resolver, from
//! that very port) is not passed at once while `firewall serve` listens: it is copied
//! whole into [`DNS_ANSWERS`] and dropped. `serve` learns the addresses it gives the
//! policy's names, puts them in the allow-lists, then hands the frame back to the
//! interface (a live-frames test run of an XDP program that passes it), so the program
//! that asked connects to an address already admitted. A second pass through this program
//! (generic XDP, in the stack the frame re-enters) finds its marker in [`DNS_RELEASED`]
//! and passes, counted once. Whatever cannot be held passes as before: a listener gone
//! quiet, a full ring, a frame too long, a fragment.
use aya_ebpf::EbpfContext;
use firewall_common::{DNS_ANSWER_BYTES, DnsAnswer, FlowKey, ReleasedKey};

use crate::{
    chain::Action,
    maps::{DNS_ANSWERS, DNS_LISTENER, DNS_RELEASED},
    parse::Frame,
};

/// What becomes of a DNS answer that belongs to `flow`, a tracked one, at `now`:
/// [`Action::Held`] (copied for `serve`), [`Action::Released`] (handed back, its second
/// pass) or [`Action::Pass`].
#[inline(always)]
pub fn hold<F: Frame + EbpfContext>(frame: &F, flow: &FlowKey, now: u64) -> Action {
    // Handed back first, whether `serve` still listens or not: counted once either way.
    let len = frame.len();
    let key = ReleasedKey { flow: *flow, len, _pad: 0 };
    // SAFETY: a map value pointer, read at once.
    if let Some(deadline) = DNS_RELEASED.get_ptr(&key).map(|d| unsafe { *d }) {
        let _ = DNS_RELEASED.remove(&key);
        if now < deadline {
            return Action::Released;
        }
    }
    match DNS_LISTENER.get(0) {
        Some(&until) if now < until => {}
        _ => return Action::Pass,
    }
    // 1 to DNS_ANSWER_BYTES, in a shape the verifier follows: LLVM makes the two tests of
    // `len` one of `len - 1`, in a register the helper's argument is not, so the test is of
    // `len - 1`, kept opaque, and the argument is that register plus one.
    let below = core::hint::black_box(len.wrapping_sub(1));
    if below as usize >= DNS_ANSWER_BYTES {
        return Action::Pass;
    }
    // A full ring (`serve` behind) lets the answer pass, unlearned.
    let Some(mut entry) = DNS_ANSWERS.reserve::<DnsAnswer>(0) else {
        return Action::Pass;
    };
    let answer = entry.as_mut_ptr();
    // SAFETY: `answer` points at the reserved record, ours alone until submitted or
    // discarded; fields are written through the pointer, no reference to the uninitialised
    // record is made. `len` is at most DNS_ANSWER_BYTES, the room of `frame`.
    let copied = unsafe {
        (*answer).len = len;
        frame.copy_frame(core::ptr::addr_of_mut!((*answer).frame), below + 1)
    };
    if !copied {
        entry.discard(0);
        return Action::Pass;
    }
    entry.submit(0);
    Action::Held
}
