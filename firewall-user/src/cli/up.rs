//! `firewall up --policy FILE`
use std::path::PathBuf;

use clap::Args;
use firewall_user::{kernel::attach::Mode, ops::up};

use super::{ApplyArgs, audit_note, report_armed};

#[derive(Args)]
pub struct Up {
    #[arg(long)]
    policy: PathBuf,
    /// The interface (default: [host] interface in the policy).
    #[arg(long)]
    iface: Option<String>,
    /// How to attach XDP.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    #[command(flatten)]
    apply: ApplyArgs,
}

impl Up {
    pub fn run(self) -> anyhow::Result<()> {
        let up = up::up(&self.policy, self.iface.as_deref(), self.mode, self.apply.apply())?;
        println!(
            "firewall up on {}: {}, {} rules{}, pinned at {}",
            up.pins.iface,
            if up.replaced { "programs replaced in place" } else { "attached" },
            up.rules,
            audit_note(up.enforcement, ","),
            up.pins.dir.display()
        );
        report_armed(up.armed);
        Ok(())
    }
}
