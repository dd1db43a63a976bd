//! `firewall up --policy FILE`
use std::path::PathBuf;

use clap::Args;
use firewall_user::{
    kernel::attach::Mode,
    ops::up::{self, Fallback},
};

use super::{ApplyArgs, audit_note, report_armed};

#[derive(Args)]
pub struct Up {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The interface (default: [host] interface in the policy).
    #[arg(long)]
    iface: Option<String>,
    /// How to attach XDP.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// If the policy fails to load or apply: change nothing, or put the last policy that
    /// applied cleanly on --iface in force (and fail all the same, naming the error).
    #[arg(long, value_enum, default_value_t = Fallback::None)]
    fallback: Fallback,
    #[command(flatten)]
    apply: ApplyArgs,
}

impl Up {
    pub fn run(self) -> anyhow::Result<()> {
        let up = up::up(&self.policy, self.iface.as_deref(), self.mode, self.apply.apply(), self.fallback)?;
        println!(
            "firewall up on {}: {}, {} rules{}, pinned at {}",
            up.pins.iface,
            if up.replaced { "programs replaced in place" } else { "attached" },
            up.rules,
            audit_note(up.enforcement, ","),
            up.pins.dir.display()
        );
        report_armed(up.armed);
        if let Some(fell_back) = up.fell_back {
            let cause = anyhow::Error::from(fell_back.cause);
            anyhow::bail!(
                "{cause:#}; in force instead: the last policy that applied cleanly, {}",
                fell_back.last_good.display()
            );
        }
        Ok(())
    }
}
