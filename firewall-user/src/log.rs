//! The events an administrator searches the log for, one [`Event`] each: a reload, a
//! rollback, a block, a change the SSH guard refused (docs/observability.md, "The log").
//!
//! Where the host runs systemd's journal, each goes to it through tracing and
//! tracing-journald, with its fields (`journalctl FIREWALL_EVENT=rollback
//! FIREWALL_IFACE=eth0`), whether the command runs in a unit or from a shell: who changed
//! the filter, and when, is then on record. Elsewhere, the commands that run on (`serve`)
//! write it to stderr as one line, and the others say it on stdout already.
use std::{path::Path, sync::OnceLock, time::Duration};

use tracing_subscriber::layer::SubscriberExt as _;

use crate::view::blocklist::human_duration;

/// Where events go when there is no journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Otherwise {
    /// To stderr, one line each (a command that runs on: stderr is its log).
    Stderr,
    /// Nowhere: the command's own output says it.
    Quiet,
}

struct Setup {
    journal: bool,
    /// What a line starts with: `firewall`, `firewall serve`.
    prefix: &'static str,
    otherwise: Otherwise,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

/// Sends the process's events to the journal if it answers, else as `otherwise` says; each
/// line after `PREFIX: `, as the process's other lines. Called once, by `main`; until
/// then, and without it, events go nowhere.
pub fn init(prefix: &'static str, otherwise: Otherwise) {
    let journal = tracing_journald::layer().ok().and_then(|layer| {
        let layer =
            layer.with_field_prefix(Some("FIREWALL".into())).with_syslog_identifier("firewall".into());
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).ok()
    });
    let _ = SETUP.set(Setup { journal: journal.is_some(), prefix, otherwise });
}

/// Something done to a filter, or refused, that an administrator may look for later.
#[derive(Debug)]
pub enum Event<'a> {
    /// A policy file brought into the live maps (`reload`, `systemctl reload`, `serve`'s
    /// SIGHUP). `confirm_within` when `--confirm` armed a rollback.
    Reload {
        iface: &'a str,
        file: &'a Path,
        added: usize,
        removed: usize,
        flows_ended: usize,
        confirm_within: Option<u64>,
    },
    /// A change that no `firewall confirm` came for, undone (or not: `message` says).
    Rollback { iface: &'a str, change: &'a str, rolled_back: bool, message: &'a str },
    /// A prefix put on the blocklist by hand: for `duration`, or until unblocked, in place
    /// of the narrower blocks `replaced`.
    Block {
        iface: &'a str,
        prefix: String,
        duration: Option<Duration>,
        replaced: Vec<String>,
        flows_ended: usize,
    },
    /// A named blocklist loaded (`block --from`): it holds `entries` prefixes now.
    BlockList {
        iface: &'a str,
        list: String,
        entries: usize,
        added: usize,
        removed: usize,
        flows_ended: usize,
        /// `--for`: the list expires then; `None`, it lasts until loaded again or removed.
        duration: Option<Duration>,
    },
    /// A named blocklist removed (`unblock --list`), with the `entries` it held.
    UnblockList { iface: &'a str, list: String, entries: usize },
    /// A change refused: it would have cut off the SSH session it came from.
    SshGuard { command: &'a str, message: &'a str },
}

impl Event<'_> {
    /// Logs it, where [`init`] said.
    pub fn log(&self) {
        let Some(setup) = SETUP.get() else { return };
        let line = self.line(setup.prefix);
        if setup.journal {
            self.to_journal(&line);
        } else if setup.otherwise == Otherwise::Stderr {
            eprintln!("{line}");
        }
    }

    /// The event's one line, after `prefix: ` (a rollback's has its own, as its timer
    /// writes it everywhere).
    pub fn line(&self, prefix: &str) -> String {
        match self {
            Event::Reload { file, added, removed, flows_ended, .. } => format!(
                "{prefix}: reloaded {}: {added} added, {removed} removed, {flows_ended} flows ended",
                file.display()
            ),
            Event::Rollback { message, .. } => (*message).to_owned(),
            Event::SshGuard { message, .. } => format!("{prefix}: {message}"),
            Event::BlockList { iface, list, entries, added, removed, flows_ended, duration } => {
                let how_long =
                    duration.map_or_else(String::new, |d| format!(" for {}", human_duration(d.as_secs())));
                format!(
                    "{prefix}: list {list} on {iface} blocks {entries} prefixes{how_long}: {added} added, {removed} removed; {flows_ended} flows ended"
                )
            }
            Event::UnblockList { iface, list, entries } => {
                format!(
                    "{prefix}: list {list} on {iface} removed: its {entries} prefixes are no longer blocked by it"
                )
            }
            Event::Block { iface, prefix: blocked, duration, replaced, flows_ended } => {
                let how_long = duration.map_or_else(
                    || "until unblocked".to_owned(),
                    |d| format!("for {}", human_duration(d.as_secs())),
                );
                let replacing = if replaced.is_empty() {
                    String::new()
                } else {
                    format!(", replacing {}", replaced.join(" "))
                };
                format!(
                    "{prefix}: blocked {blocked} on {iface} {how_long}{replacing}; {flows_ended} flows ended"
                )
            }
        }
    }

    /// The journal's fields are these names, upper-cased after `FIREWALL_`:
    /// `FIREWALL_EVENT=reload`, `FIREWALL_IFACE=eth0`, …
    fn to_journal(&self, message: &str) {
        match self {
            Event::Reload { iface, file, added, removed, flows_ended, confirm_within } => tracing::info!(
                event = "reload",
                iface,
                file = %file.display(),
                added,
                removed,
                flows_ended,
                confirm_within_secs = confirm_within,
                "{message}"
            ),
            Event::Rollback { iface, change, rolled_back, .. } => {
                tracing::warn!(event = "rollback", iface, change, rolled_back, "{message}");
            }
            Event::Block { iface, prefix, duration, flows_ended, .. } => tracing::info!(
                event = "block",
                iface,
                prefix = prefix.as_str(),
                duration_secs = duration.map(|d| d.as_secs()),
                flows_ended,
                "{message}"
            ),
            Event::SshGuard { command, .. } => tracing::warn!(event = "ssh-guard", command, "{message}"),
            Event::BlockList { iface, list, entries, added, removed, flows_ended, duration } => {
                tracing::info!(
                    event = "block-list",
                    iface,
                    list = list.as_str(),
                    entries,
                    added,
                    removed,
                    flows_ended,
                    duration_secs = duration.map(|d| d.as_secs()),
                    "{message}"
                );
            }
            Event::UnblockList { iface, list, entries } => {
                tracing::info!(event = "unblock-list", iface, list = list.as_str(), entries, "{message}");
            }
        }
    }
}
