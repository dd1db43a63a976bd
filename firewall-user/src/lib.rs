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

/// An error and its causes on one line, joined by ": ": `reading x: No such file or
/// directory (os error 2)`. This crate's errors never print their cause in their own
/// message (it is their `source`), so the chain says each once. Some of aya's do print it
/// and return it as `source` too (`EbpfError`'s "map error: {0}", `ProgramError::LoadError`):
/// a cause whose text the error just above it already holds is skipped, so that it is not
/// said twice.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut above = message.clone();
    let mut cause = err.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !above.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        above = text;
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
