//! `firewall reload [--dry-run] [--json]`
use std::path::PathBuf;

use clap::Args;
use firewall_user::{exit::ExitStatus, ops::reload, view::versioned_json};
use serde::Serialize;

use super::{ApplyArgs, audit_note, report_armed};

#[derive(Args)]
pub struct Reload {
    /// Another policy file (default: the one `up` was given); later commands use it.
    #[arg(long)]
    policy: Option<PathBuf>,
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    apply: ApplyArgs,
    /// Print what the reload would change, and change nothing: exit 0 when nothing would
    /// change, 3 when something would, as a reload would fail when it would.
    #[arg(long, conflicts_with = "confirm")]
    dry_run: bool,
    /// One JSON object, for scripts.
    #[arg(long)]
    json: bool,
}

/// What `reload --json` prints.
#[derive(Serialize)]
struct Reloaded<'a> {
    iface: &'a str,
    file: &'a std::path::Path,
    added: usize,
    removed: usize,
    flows_ended: usize,
    audit: bool,
    /// The rollback `--confirm` armed: `firewall confirm` within `seconds` keeps it.
    confirm_within_secs: Option<u64>,
    /// The maps resized to fit the policy: none unless one had to grow or shrink.
    resized: &'a [firewall_user::kernel::resize::Resized],
    /// The peers written as DNS names, each as its resolvers answered now.
    names: Vec<firewall_user::names::AskedReport>,
}

impl Reload {
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let filter = self.filter.open()?;
        if self.dry_run {
            let preview = reload::preview(&filter, self.policy.as_deref(), &self.apply.apply())?;
            return Ok(super::print_preview(&preview, self.json)?);
        }
        let done = reload::reload(&filter, self.policy.as_deref(), self.apply.apply())?;
        super::report_names(&done.names);
        let a = done.applied;
        if self.json {
            say!(
                "{}",
                versioned_json(&Reloaded {
                    iface: &done.pins.iface,
                    file: &done.file,
                    added: a.added,
                    removed: a.removed,
                    flows_ended: a.flows_removed,
                    audit: done.enforcement.is_audit(),
                    confirm_within_secs: done.armed.as_ref().map(|armed| armed.seconds),
                    resized: &a.resized,
                    names: done.names.iter().map(Into::into).collect(),
                })
            );
            return Ok(ExitStatus::Done);
        }
        say!(
            "firewall reloaded {} on {}: {} entries added or changed, {} removed, {} flows ended{}",
            done.file.display(),
            done.pins.iface,
            a.added,
            a.removed,
            a.flows_removed,
            audit_note(done.enforcement, ";"),
        );
        super::report_resized(&a.resized);
        report_armed(done.armed);
        Ok(ExitStatus::Done)
    }
}
