//! The integration tests, one module per area, in one binary (as aya's
//! test/integration-test): the crate links aya and firewall-user once, not once per area.
//! The floods are the exception, in a binary of their own (tests/tests/floods.rs): they
//! must not share the two CPUs of CI with the other areas' tests, and cargo runs the test
//! binaries one after another.
//!
//! Run as root after `cargo build --release`: `cargo test --release -p tests --test
//! integration`, or one area: `cargo test --release -p tests --test integration e2e::`.
mod ansible;
mod block_lists;
mod boot;
mod cli;
mod clock;
mod daemons;
mod differential;
mod drops;
mod dual_stack;
mod e2e;
mod fleet;
mod fragments;
mod import;
mod ipv6;
mod limits;
mod link;
mod live;
mod memory;
mod model;
mod names;
mod one_way;
mod owner;
mod package;
mod ranges;
mod safety;
mod serve;
mod spoofing;
mod verdicts;
mod verifier;
mod watch;
