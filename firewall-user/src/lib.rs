//! The user side of the firewall: the policy, compiled into map entries, loaded into the
//! kernel, attached, pinned, listed.
pub mod blocklist;
pub mod compile;
pub mod confirm;
pub mod drops;
pub mod files;
pub mod filter;
pub mod import;
pub mod listing;
pub mod live;
pub mod lockout;
pub mod maps;
pub mod pins;
pub mod policy;
pub mod serve;
pub mod stats;
pub mod watch;

/// The kernel object, built by build.rs for bpfel-unknown-none.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall-ebpf"));

/// The benchmarks' baseline (tests/src/bin/bench.rs), an object of its own so that the
/// filter's holds nothing else. The `firewall` binary never names it, so the linker leaves
/// it out of it.
pub static BENCH_BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench_baseline"));

/// An error and its causes on one line, each said once: `reading x: No such file or
/// directory`.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = err.source();
    }
    message
}

/// Field `n` (numbered from 1 as proc(5) numbers them; 3 or more) of a `/proc/PID/stat`
/// line. The command name, field 2, may hold spaces and parentheses: the fields after it
/// are counted from its last `)`.
pub(crate) fn proc_stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(n.checked_sub(3)?)
}
