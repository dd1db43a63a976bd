//! Changes to a filter: put up and taken down ([`up`]), brought to a policy in place
//! ([`reload`]), its peers changed ([`peers`]), addresses blocked ([`block`], and by
//! named lists: [`block_lists`]), its counters zeroed ([`counters`]); the safety nets
//! around them: the SSH guard ([`lockout`]) and the rollback a change can arm
//! ([`confirm`]).
//!
//! Each change is computed whole and validated before anything is touched, applied to
//! the maps with new entries before stale ones go (so no allowed flow meets a gap), and
//! written to the policy file last, atomically; if that write fails, the maps are put
//! back. A failure leaves the filter and the file as they were. Each holds the state
//! lock ([`crate::Filter::lock`]) from its first reading of the live state to its last
//! write, so that changes at once happen one after the other, none lost.
pub mod block;
pub mod block_lists;
pub mod confirm;
pub mod counters;
pub mod follow;
pub mod lockout;
pub mod peers;
pub mod reload;
pub mod up;

use crate::{
    kernel::{filter::FilterError, maps::Enforcement, pins::PinsError},
    policy::PolicyError,
};
use lockout::SessionGuard;

/// How `up` and `reload` apply a policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Apply {
    /// The filter's mode, or `None` to keep a live filter's (a new one enforces).
    pub enforcement: Option<Enforcement>,
    /// Roll the change back after this many seconds unless `firewall confirm` comes first.
    pub confirm: Option<u64>,
    /// Whether to refuse a change that would cut off the SSH session this runs from.
    pub session_guard: SessionGuard,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Boxed: attach errors are large, and every `Result` here would carry their size.
    #[error(transparent)]
    Filter(Box<FilterError>),
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error(transparent)]
    Maps(#[from] crate::kernel::maps::MapsError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{file}: no rule named {rule:?} (rules: {known})")]
    NoRule { file: String, rule: String, known: String },
    #[error("{file}: rule {rule:?} admits any peer; edit its peers to list addresses instead")]
    AnyPeer { file: String, rule: String },
    #[error(transparent)]
    BadAddress(#[from] crate::policy::PrefixError),
    #[error(transparent)]
    Block(#[from] block::BlockError),
    #[error(transparent)]
    List(#[from] block_lists::ListError),
    #[error("{addr} is not a peer of rule {rule:?}")]
    NotAPeer { addr: String, rule: String },
    #[error(
        "{file} changed since it was applied; run `firewall reload` first, or `allow`/`revoke` would apply those edits too"
    )]
    FileChanged { file: String },
    #[error(
        "the live filter holds changes made --runtime-only that {file} lacks; `firewall reload` drops them (`reload --dry-run` lists them), or add --runtime-only to this change too"
    )]
    RuntimeChanges { file: String },
    /// `message` is toml_edit's one-line message, not its error: that one's `Display` is a
    /// multi-line snippet.
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    #[error(transparent)]
    LockOut(#[from] lockout::LockOut),
    #[error(transparent)]
    Files(#[from] crate::files::FileError),
    #[error(
        "the live filter's programs know no returns = false (an older version loaded them), and rule {rule:?} has it; `firewall up` with the policy replaces the programs in place (tracked flows and counters kept)"
    )]
    NoOneWayRules { rule: String },
    #[error(
        "the live filter's programs know no trap (an older version loaded them), and rule {rule:?} is one; `firewall up` with the policy replaces the programs in place (tracked flows and counters kept)"
    )]
    NoTraps { rule: String },
}

pub type Result<T> = std::result::Result<T, LiveError>;

impl From<FilterError> for LiveError {
    fn from(err: FilterError) -> Self {
        LiveError::Filter(Box::new(err))
    }
}
