//! The programs' clock: `CLOCK_MONOTONIC_COARSE`, read as the kernel's tick count scaled
//! by its tick length where that can be told, else asked of the kernel. Either way the
//! time they stamp a flow with is user space's, which every deadline `block --for`, named
//! lists and `firewall conntrack` compute from.
use firewall_common::{Flow, FlowKey};
use firewall_user::kernel::{clock::Clock, filter::kernel_time_ns as coarse_now};
use tests::{
    frames::{OURS, SYN, tcp},
    harness::{TestFilter, Verdict::Pass},
};

const SSH_PEER: [u8; 4] = [203, 0, 113, 7];

/// How far ahead of the coarse clock a skewed base puts the programs' clock.
const SKEW_NS: u64 = 10_000_000_000;

#[test]
fn a_flow_is_stamped_with_user_spaces_coarse_clock_whichever_way_the_programs_read_it() {
    let ticks = Clock::of_this_kernel();
    // On the kernels this is tested on, the tick's length is told: the fast way is the
    // one under test everywhere else too.
    let Clock::Ticks { tick_ns, base_ns } = ticks else {
        panic!("this kernel's tick length is told from /proc/timer_list: {ticks:?}");
    };
    // The tick count's base taken ten seconds lower: the stamps must follow it, or the
    // programs do not read the clock the constants give them.
    let skewed = Clock::Ticks { tick_ns, base_ns: base_ns - SKEW_NS };
    let policy = std::fs::read_to_string(tests::workspace().join("examples/tight.toml")).expect("tight.toml");
    for (clock, ahead_by, behind_by_at_most) in
        [(ticks, 0, 9 * tick_ns / 4), (skewed, SKEW_NS, 9 * tick_ns / 4), (Clock::Coarse, 0, 0)]
    {
        let mut f = TestFilter::reading(clock, &policy);
        // Spread over a few ticks, so that a wrong tick length or base shows as drift.
        for sport in 40_000..40_005 {
            let before = coarse_now() + ahead_by;
            assert_eq!(f.ingress(&tcp(SSH_PEER, OURS, sport, 122, SYN)), Pass, "{clock:?}");
            let after = coarse_now() + ahead_by;
            let flows: Vec<(FlowKey, Flow)> = f.loaded.maps.half_open.iter().filter_map(Result::ok).collect();
            let stamped = flows
                .iter()
                .find(|(key, _)| key.peer_port == sport)
                .unwrap_or_else(|| panic!("the flow from port {sport} is tracked, {clock:?}: {flows:?}"))
                .1
                .last_seen_ns;
            assert!(
                before.saturating_sub(behind_by_at_most) <= stamped && stamped <= after,
                "{clock:?}: stamped {stamped}, user space's coarse clock (+{ahead_by}) {before} to {after}"
            );
            std::thread::sleep(std::time::Duration::from_millis(9));
        }
    }
}
