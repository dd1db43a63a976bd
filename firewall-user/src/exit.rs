//! The exit statuses of `firewall`, in one table, so that a script or a configuration
//! manager can tell what happened without reading the line on stderr
//! (docs/operations.md, "Exit statuses").
//!
//! A bad policy exits 1, as it did before the statuses were told apart: scripts test
//! for it. So does any failure not named here; its line says what it was.
use std::error::Error;

use crate::{
    kernel::{FilterError, pins::PinsError},
    ops::{
        LiveError, block::BlockError, confirm::ConfirmError, follow::FollowError, lockout::LockOut,
        up::UpError,
    },
    serve::ServeError,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Done; with `reload --dry-run` or `check --diff`, nothing would change.
    Done = 0,
    /// The policy is bad (`FILE:LINE:COL: message`), or another failure.
    Failed = 1,
    /// The command line is wrong.
    Usage = 2,
    /// `reload --dry-run` or `check --diff`: the change would change something.
    WouldChange = 3,
    /// The command needs root.
    NeedsRoot = 4,
    /// The change would cut off the SSH session it runs from (`--force` overrides).
    WouldCutOff = 5,
    /// A change awaits `firewall confirm`: confirm it, or let it roll back, first.
    Pending = 6,
    /// No filter is up on the interface.
    NotUp = 7,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status as u8)
    }
}

/// The status `err` exits with.
pub fn exit_status(err: &(dyn Error + 'static)) -> ExitStatus {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(status) = status_of(err) {
            return status;
        }
        cause = err.source();
    }
    ExitStatus::Failed
}

/// The status of `err` itself. The wrappers are `#[error(transparent)]`, and a transparent
/// error's `source()` is its inner error's source: so they are looked into here.
fn status_of(err: &(dyn Error + 'static)) -> Option<ExitStatus> {
    if let Some(err) = err.downcast_ref::<UpError>() {
        return match err {
            UpError::Confirm(err) => status_of(err),
            _ => None,
        };
    }
    if let Some(err) = err.downcast_ref::<ConfirmError>() {
        return match err {
            ConfirmError::Pins(err) => status_of(err),
            ConfirmError::Live(err) => status_of(err),
            ConfirmError::Filter(err) => status_of(err.as_ref()),
            _ => None,
        };
    }
    if let Some(err) = err.downcast_ref::<FollowError>() {
        return match err {
            FollowError::Live(err) => status_of(err),
            _ => None,
        };
    }
    if let Some(ServeError::Live(err)) = err.downcast_ref::<ServeError>() {
        return status_of(err);
    }
    if let Some(err) = err.downcast_ref::<LiveError>() {
        return match err {
            LiveError::Filter(err) => status_of(err.as_ref()),
            LiveError::Pins(err) => status_of(err),
            LiveError::Block(err) => status_of(err),
            LiveError::LockOut(_) => Some(ExitStatus::WouldCutOff),
            _ => None,
        };
    }
    if let Some(err) = err.downcast_ref::<FilterError>() {
        return match err {
            FilterError::NeedsRoot => Some(ExitStatus::NeedsRoot),
            FilterError::Pins(err) => status_of(err),
            FilterError::LockOut(_) => Some(ExitStatus::WouldCutOff),
            _ => None,
        };
    }
    if let Some(err) = err.downcast_ref::<PinsError>() {
        return match err {
            PinsError::NotUp { .. } | PinsError::NoneUp => Some(ExitStatus::NotUp),
            PinsError::Pending { .. } => Some(ExitStatus::Pending),
            _ => None,
        };
    }
    if let Some(BlockError::WouldCutSession { .. }) = err.downcast_ref::<BlockError>() {
        return Some(ExitStatus::WouldCutOff);
    }
    err.downcast_ref::<LockOut>().map(|_| ExitStatus::WouldCutOff)
}
