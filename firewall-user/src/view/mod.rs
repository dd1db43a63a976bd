//! What a live filter shows: one reading of its counters ([`snapshot`]), laid out like
//! `iptables -nvL` ([`listing`]), its flows like `conntrack -L` ([`conntrack`]), its
//! blocked addresses ([`blocklist`]), and its sampled drop events ([`drops`]).
pub mod blocklist;
pub mod conntrack;
pub mod drops;
pub mod listing;
pub mod snapshot;
