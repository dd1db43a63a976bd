//! `[dns] learn`'s hand-back: `firewall serve` runs this XDP program by BPF_PROG_TEST_RUN in
//! live-frames mode, on a DNS answer the filter held, with the interface it came in by as
//! the run's; passing it hands the frame to that interface's stack, as if it had just
//! arrived. An object of its own: `serve` loads it, and the filter's object, which `up`
//! loads, holds nothing but the filter.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

    #[xdp]
    pub fn dns_release(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    /// `serve`'s check, before it holds any answer, that the kernel lets it hand frames
    /// back: the same live-frames run on the same interface, of a frame this drops, so
    /// that nothing reaches the stack. A kernel may refuse live-frames runs where it
    /// allows others.
    #[xdp]
    pub fn dns_release_probe(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_DROP
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
