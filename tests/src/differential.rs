//! The differential run against the seed's iptables script (see tests/tests/differential.rs).
