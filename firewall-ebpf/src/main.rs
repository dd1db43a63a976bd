//! The kernel side of the firewall: two thin entry points around one chain engine.
//!
//! `firewall_ingress` (XDP) judges every frame the interface receives, `firewall_egress`
//! (TC egress) every frame it sends. Both hand the frame to [`chain::filter`], which
//! parses it with the one header cursor in [`parse`] and walks the seed's rules.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(
    target_arch = "bpf",
    expect(internal_features, reason = "atomic_cxchg: the BPF target has no AtomicU64::compare_exchange")
)]

#[cfg(target_arch = "bpf")]
mod chain;
#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod dns;
#[cfg(target_arch = "bpf")]
mod fragments;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod per_source;
#[cfg(target_arch = "bpf")]
mod token_bucket;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::helpers::generated::{
        bpf_get_socket_uid, bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    };
    use aya_ebpf::{
        bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use firewall_common::{DNS_ANSWER_BYTES, DROP_EVENT_BYTES, Direction, NO_SOCKET_UID};

    use crate::{
        chain::{Action, filter},
        parse::Frame,
    };

    impl Frame for XdpContext {
        #[inline(always)]
        fn data(&self) -> usize {
            XdpContext::data(self)
        }
        #[inline(always)]
        fn data_end(&self) -> usize {
            XdpContext::data_end(self)
        }
        /// The whole frame's length, its fragments' too: a multi-buffer frame (a GRO or
        /// jumbo one, see `firewall_ingress`) has only its head between `data` and
        /// `data_end`.
        #[inline(always)]
        fn len(&self) -> u32 {
            // SAFETY: the program's own context.
            unsafe { bpf_xdp_get_buff_len(self.ctx) as u32 }
        }
        #[inline(always)]
        fn copy_head(&self, head: *mut [u8; DROP_EVENT_BYTES], len: u32) -> bool {
            // SAFETY: `head` holds DROP_EVENT_BYTES ≥ `len` writable bytes (the caller's
            // ring record); the helper checks the frame's side.
            unsafe { bpf_xdp_load_bytes(self.ctx, 0, head.cast(), len) == 0 }
        }
        #[inline(always)]
        fn copy_frame(&self, to: *mut [u8; DNS_ANSWER_BYTES], len: u32) -> bool {
            // SAFETY: as `copy_head`'s: `to` holds DNS_ANSWER_BYTES ≥ `len` bytes.
            unsafe { bpf_xdp_load_bytes(self.ctx, 0, to.cast(), len) == 0 }
        }
        #[inline(always)]
        fn socket_uid(&self) -> u32 {
            // A received frame has no socket yet.
            NO_SOCKET_UID
        }
    }

    impl Frame for TcContext {
        #[inline(always)]
        fn data(&self) -> usize {
            TcContext::data(self)
        }
        #[inline(always)]
        fn data_end(&self) -> usize {
            TcContext::data_end(self)
        }
        #[inline(always)]
        fn len(&self) -> u32 {
            TcContext::len(self)
        }
        #[inline(always)]
        fn copy_head(&self, head: *mut [u8; DROP_EVENT_BYTES], len: u32) -> bool {
            // SAFETY: as for XDP.
            unsafe { bpf_skb_load_bytes(self.skb.skb.cast(), 0, head.cast(), len) == 0 }
        }
        #[inline(always)]
        fn copy_frame(&self, _to: *mut [u8; DNS_ANSWER_BYTES], _len: u32) -> bool {
            // Egress holds no answer (see crate::dns).
            false
        }
        #[inline(always)]
        fn socket_uid(&self) -> u32 {
            // SAFETY: the program's own context. The helper reports the overflow uid
            // (NO_SOCKET_UID) for a frame without a full socket.
            unsafe { bpf_get_socket_uid(self.skb.skb) }
        }
    }

    /// Multi-buffer aware (`xdp.frags`): a frame larger than a page comes whole, its
    /// headers in the head that the parser reads, so a driver keeps its large frames (a
    /// jumbo MTU, veth's GRO aggregates) under the filter.
    #[xdp(frags)]
    pub fn firewall_ingress(ctx: XdpContext) -> u32 {
        match filter(&ctx, Direction::In) {
            Action::Pass | Action::Released => xdp_action::XDP_PASS,
            // A held DNS answer is `serve`'s to hand back (see crate::dns).
            Action::Drop | Action::Held => xdp_action::XDP_DROP,
        }
    }

    /// The headers a verdict needs: Ethernet, two VLAN tags, IPv4 with options, TCP.
    const HEADROOM: u32 = 14 + 8 + 60 + 20;

    #[classifier]
    pub fn firewall_egress(ctx: TcContext) -> i32 {
        // A socket's packet normally has its headers in the linear part; make sure, since
        // direct packet access sees nothing else.
        let linear = (ctx.data_end() - ctx.data()) as u32;
        if linear < HEADROOM && ctx.len() > linear {
            let _ = ctx.pull_data(core::cmp::min(ctx.len(), HEADROOM));
        }
        match filter(&ctx, Direction::Out) {
            // Egress holds no DNS answer.
            Action::Pass | Action::Released | Action::Held => TC_ACT_OK as i32,
            Action::Drop => TC_ACT_SHOT as i32,
        }
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Built for the host only by `cargo build --workspace`; the real object is built for
    // bpfel-unknown-none by firewall-user's build script.
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
