//! The user side of the firewall: a policy file validated, compiled into map entries,
//! loaded into the kernel, changed live, shown.
//!
//! # Layout
//!
//! Each module is one concern; the `firewall` binary (`src/main.rs`, a file per command
//! under `src/cli/`) parses its arguments, calls one function here, and prints.
//!
//! - [`policy`]: the TOML policy file in, a validated [`Policy`] out, or one
//!   `FILE:LINE:COL: message` error.
//! - [`compile`]: a policy into map entries with stable ids, and the listing's lines
//!   (`LineKind`: what each line counts).
//! - [`kernel`]: the eBPF object loaded (its clock set), attached, pinned and replaced; its
//!   maps; the receive offloads generic XDP turns off and `down` turns back on
//!   (`kernel::offloads`); and [`Filter`], the handle on a live filter every command
//!   starts from (it checks root and finds the pins once).
//! - [`ops`]: changes to a filter: `up` and `down`, `reload`, `allow` and `revoke`,
//!   `block` and `unblock`, `zero`, and the safety nets around them (the SSH guard,
//!   `--confirm`'s rollback).
//! - [`view`]: what a filter shows: the counters' snapshot, the `iptables -nvL` listing,
//!   `conntrack`, the blocklist, drop events.
//! - [`watch`]: the live terminal view of per-line rates.
//! - [`names`]: peers written as DNS names, resolved and kept, their addresses given to
//!   their rules.
//! - [`serve`]: the Prometheus endpoint, reload on SIGHUP, and the names asked again as
//!   their answers expire.
//! - [`import`]: an `iptables-save` dump into a policy.
//! - [`exit`]: the exit statuses, one table, and the status of each error.
//! - [`log`]: the events an administrator searches the log for (a reload, a rollback, a
//!   block, the SSH guard's refusal), to the journal with their fields.
//!
//! The kernel side is `firewall-ebpf`; what both sides share (the maps' keys and values,
//! ids, the drop event) is `firewall-common`. docs/design.md maps each rule to the code
//! that enforces it, the map that holds it, the counter it bumps and the test that proves
//! it.
pub mod compile;
pub mod exit;
mod files;
pub mod import;
pub mod kernel;
pub mod log;
pub mod names;
pub mod ops;
pub mod policy;
pub mod serve;
pub mod view;
pub mod watch;

pub use kernel::{Filter, FilterError};
pub use policy::Policy;

/// The kernel object, built by build.rs for bpfel-unknown-none.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/firewall-ebpf"));

/// The benchmarks' baseline (tests/src/bin/bench.rs), an object of its own so that the
/// filter's holds nothing else. The `firewall` binary never names it, so the linker leaves
/// it out of it.
pub static BENCH_BASELINE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench_baseline"));

/// The XDP program `serve` hands a held DNS answer back to the interface with (see
/// `serve::learning`), an object of its own as the baseline's is.
pub static DNS_RELEASE_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns_release"));

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

/// A hash map for the maps of a million entries a policy's peers make (parsing, the
/// plan, its diff against the live maps): foldhash, several times SipHash's speed, whose
/// resistance to chosen keys buys nothing against a file only root may write.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// [`FastMap`]'s set.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The time of day as Unix seconds: what the state's records of times are in.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Field `n` (numbered from 1 as proc(5) numbers them; 3 or more) of a `/proc/PID/stat`
/// line. The command name, field 2, may hold spaces and parentheses: the fields after it
/// are counted from its last `)`.
pub(crate) fn proc_stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(n.checked_sub(3)?)
}
