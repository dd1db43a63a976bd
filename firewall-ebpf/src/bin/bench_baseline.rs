//! The benchmarks' baseline, in an object of its own so that the filter's, which `firewall
//! up` loads, holds nothing but the filter: one XDP program doing one hash lookup of the
//! IPv4 source, the least any allow-list costs, to measure the firewall against
//! (tests/src/bin/bench.rs; with its map empty, the drop-all ceiling of the floods).
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::{BPF_F_NO_PREALLOC, xdp_action},
        macros::{map, xdp},
        maps::HashMap,
        programs::XdpContext,
    };

    /// Source addresses, one lookup (resized when the benchmark loads it).
    #[map]
    static BENCH_PEERS: HashMap<[u8; 4], u32> = HashMap::with_max_entries(1, BPF_F_NO_PREALLOC as u32);

    #[xdp]
    pub fn bench_baseline(ctx: XdpContext) -> u32 {
        try_bench_baseline(&ctx).unwrap_or(xdp_action::XDP_DROP)
    }

    /// The floods' generator: run by BPF_PROG_TEST_RUN in live-frames mode on the
    /// sender's end of the veth, it sends its frame on (XDP_TX leaves by the interface it
    /// came in by), so that a flood costs the sending CPU a few tens of nanoseconds a
    /// frame, not a socket's system call and stack.
    #[xdp]
    pub fn bench_transmit(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_TX
    }

    #[inline(always)]
    fn try_bench_baseline(ctx: &XdpContext) -> Option<u32> {
        const SOURCE: usize = 14 + 12;
        if ctx.data() + SOURCE + 4 > ctx.data_end() {
            return None;
        }
        // SAFETY: bounds-checked just above.
        let source = unsafe { *((ctx.data() + SOURCE) as *const [u8; 4]) };
        BENCH_PEERS.get_ptr(&source).map(|_| xdp_action::XDP_PASS)
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
