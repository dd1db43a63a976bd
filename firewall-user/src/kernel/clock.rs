//! The programs' clock: `CLOCK_MONOTONIC_COARSE` (the clock of every timestamp and
//! deadline the maps hold, and of [`kernel_time_ns`]), which the programs read as the
//! kernel's tick count scaled to nanoseconds.
//!
//! The coarse clock and the tick count each move once a tick, so the one is the other
//! times the tick's length, less a constant, to within a tick; the constant is taken so
//! that the programs' clock is never ahead of user space's, and at most two ticks and a
//! quarter behind it (see [`Clock::from_ticks`]). The tick's length and the constant are
//! found here, at each load, from the tick count in `/proc/timer_list` read beside the
//! coarse clock, and set in the object's read-only data. Reading the count is one load in
//! the kernel; asking the coarse clock is a sequence-locked read of the timekeeper, 12 ns
//! more a packet on the benchmarks' machine. A kernel whose tick length cannot be told
//! (below) gets programs that ask the coarse clock itself, with the same verdicts.
use aya::EbpfLoader;

use super::filter::kernel_time_ns;

const TIMER_LIST: &str = "/proc/timer_list";

/// The tick rates (`CONFIG_HZ`) Linux offers on any architecture.
const HZ_CHOICES: [u64; 14] = [24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 500, 1000, 1024, 1200];

/// How far the tick count may be from where the rate puts it, in seconds of ticks: it
/// does not start counting the moment the monotonic clock does (a quarter of a second
/// later here).
const BOOT_SLACK_S: u64 = 2;

/// How the programs read the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The tick count times `tick_ns`, less `base_ns`.
    Ticks { tick_ns: u64, base_ns: u64 },
    /// `bpf_ktime_get_coarse_ns`, the coarse clock asked.
    Coarse,
}

impl Clock {
    /// This kernel's: the tick count where its length can be told, else the coarse clock.
    pub fn of_this_kernel() -> Clock {
        // The count and the coarse clock read between two readings of the clock that agree:
        // no tick came between, to move the count past the clock's reading.
        for _ in 0..8 {
            let coarse_ns = kernel_time_ns();
            let text = match std::fs::read_to_string(TIMER_LIST) {
                Ok(text) => text,
                Err(e) => {
                    tracing::debug!("{TIMER_LIST}: {e}; the programs ask the coarse clock");
                    return Clock::Coarse;
                }
            };
            if kernel_time_ns() == coarse_ns {
                return tick_count(&text)
                    .and_then(|jiffies| Clock::from_ticks(jiffies, coarse_ns))
                    .unwrap_or_else(|| {
                        tracing::debug!(
                            "no one tick rate fits {TIMER_LIST}; the programs ask the coarse clock"
                        );
                        Clock::Coarse
                    });
            }
        }
        Clock::Coarse
    }

    /// The clock of a tick count `jiffies` read when the coarse clock read `coarse_ns`, or
    /// `None` where no tick rate fits, or more than one.
    ///
    /// The count starts at 2^32 − 300 HZ (the kernel's `INITIAL_JIFFIES`, set to wrap a
    /// 32-bit count five minutes after boot) and goes up HZ times a second of the
    /// monotonic clock, which starts at boot too: one rate fits, but in the minute around
    /// five minutes after boot, where every rate puts the count near 2^32.
    pub fn from_ticks(jiffies: u64, coarse_ns: u64) -> Option<Clock> {
        let fits = |hz: &&u64| {
            let elapsed = (u128::from(**hz) * u128::from(coarse_ns) / 1_000_000_000) as u64;
            let expected = (1u64 << 32) - 300 * **hz + elapsed;
            jiffies.abs_diff(expected) <= BOOT_SLACK_S * **hz
        };
        let mut rates = HZ_CHOICES.iter().filter(fits);
        let hz = *rates.next()?;
        if rates.next().is_some() {
            return None;
        }
        // The kernel's own rounding (TICK_NSEC), which its count keeps in step with.
        let tick_ns = (1_000_000_000 + hz / 2) / hz;
        // The count and the coarse clock each move once a tick, but not at the same moment
        // (and the clock's steps are the tick give or take some nanoseconds): between the
        // two, the count times the tick leads the clock by up to a tick more than at
        // others. A tick and an eighth taken off keep the programs' clock behind the coarse
        // one, by at most two ticks and a quarter, whenever it was read: no timestamp of
        // theirs is ahead of user space's, and no deadline of user space's ends early.
        let base_ns = (jiffies * tick_ns + tick_ns + tick_ns / 8).checked_sub(coarse_ns)?;
        Some(Clock::Ticks { tick_ns, base_ns })
    }

    /// Sets it in the object's read-only data (see firewall-ebpf's `conntrack::now`).
    pub(crate) fn set_on<'a>(&'a self, loader: &mut EbpfLoader<'a>) {
        const NONE: &u64 = &0;
        let (tick_ns, base_ns) = match self {
            Clock::Ticks { tick_ns, base_ns } => (tick_ns, base_ns),
            Clock::Coarse => (NONE, NONE),
        };
        loader.override_global("CLOCK_TICK_NS", tick_ns, true);
        loader.override_global("CLOCK_BASE_NS", base_ns, true);
    }
}

/// The tick count in `/proc/timer_list`'s text: its first `jiffies: N`.
fn tick_count(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("jiffies:")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_tick_rate_is_the_one_that_fits_the_count() {
        // This machine's: HZ 250, 4.9 hours up, the count 66 ticks behind the clock.
        let coarse_ns = 17_634_295_141_840;
        let jiffies = (1 << 32) - 300 * 250 + 17_634 * 250 + 73 - 66;
        let Some(Clock::Ticks { tick_ns, base_ns }) = Clock::from_ticks(jiffies, coarse_ns) else {
            panic!("HZ 250 fits");
        };
        assert_eq!(tick_ns, 4_000_000);
        // A tick and an eighth behind the clock it was set by.
        assert_eq!(jiffies * tick_ns - base_ns, coarse_ns - tick_ns - tick_ns / 8);
        // Seconds after boot, at 1000 and 100 ticks a second.
        assert_eq!(
            Clock::from_ticks((1 << 32) - 300_000 + 5_000, 5 * S),
            Some(Clock::Ticks {
                tick_ns: 1_000_000,
                base_ns: ((1 << 32) - 300_000 + 5_000 + 1) * 1_000_000 + 125_000 - 5 * S
            })
        );
        assert!(matches!(
            Clock::from_ticks((1 << 32) - 30_000 + 12 * 100, 12 * S),
            Some(Clock::Ticks { tick_ns: 10_000_000, .. })
        ));
        // 300's tick is a third of ten milliseconds, rounded as the kernel rounds it.
        assert!(matches!(
            Clock::from_ticks((1 << 32) - 90_000 + 3_600 * 300, 3_600 * S),
            Some(Clock::Ticks { tick_ns: 3_333_333, .. })
        ));
    }

    #[test]
    fn a_count_that_fits_no_rate_or_several_tells_nothing() {
        // Five minutes after boot every rate puts the count at 2^32.
        assert_eq!(Clock::from_ticks(1 << 32, 300 * S), None);
        // A count from nowhere near boot: no rate fits.
        assert_eq!(Clock::from_ticks(12_345, 3_600 * S), None);
    }

    #[test]
    fn the_tick_count_is_read_from_the_timer_list() {
        let text = "Timer List Version: v0.10\nnow at 17634295141840 nsecs\n\ncpu: 0\n  .last_jiffies   : 4299300800\njiffies: 4299300803\n";
        assert_eq!(tick_count(text), Some(4_299_300_803));
        assert_eq!(tick_count("now at 5 nsecs\n"), None);
    }
}
