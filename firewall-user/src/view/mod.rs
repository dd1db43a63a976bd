//! What a live filter shows: one reading of its counters ([`snapshot`]), laid out like
//! `iptables -nvL` ([`listing`]), its flows like `conntrack -L` ([`conntrack`]), its
//! blocked addresses ([`blocklist`]), its peers by DNS name ([`names`]), and its sampled
//! drop events ([`drops`]).
pub mod blocklist;
pub mod conntrack;
pub mod drops;
pub mod listing;
pub mod names;
pub mod snapshot;

/// The version of the layout of the JSON objects the commands print with `--json`: a
/// script reads `schema_version` first. A field added leaves it; a field that changes
/// meaning or goes away bumps it.
pub const SCHEMA_VERSION: u32 = 1;

/// `body` as one line of JSON, `schema_version` first.
pub fn versioned_json(body: &impl serde::Serialize) -> String {
    #[derive(serde::Serialize)]
    struct Versioned<'a, T> {
        schema_version: u32,
        #[serde(flatten)]
        body: &'a T,
    }
    serde_json::to_string(&Versioned { schema_version: SCHEMA_VERSION, body })
        .expect("the commands' reports serialize")
}
