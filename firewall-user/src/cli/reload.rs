//! `firewall reload`
use std::path::PathBuf;

use clap::Args;
use firewall_user::ops::reload;

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
}

impl Reload {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let done = reload::reload(&filter, self.policy.as_deref(), self.apply.apply())?;
        let a = done.applied;
        println!(
            "firewall reloaded {} on {}: {} entries added or changed, {} removed, {} flows ended{}",
            done.file.display(),
            done.pins.iface,
            a.added,
            a.removed,
            a.flows_removed,
            audit_note(done.enforcement, ";"),
        );
        report_armed(done.armed);
        Ok(())
    }
}
