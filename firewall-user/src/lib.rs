//! The user side of the firewall: the policy, compiled into map entries, loaded into the
//! kernel, attached, pinned, listed.
pub mod blocklist;
pub mod compile;
pub mod confirm;
pub mod drops;
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
