//! `firewall rollback-timer`, hidden: started by `--confirm`.
use std::time::Duration;

use clap::Args;
use firewall_user::ops::confirm;

#[derive(Args)]
pub struct RollbackTimer {
    #[arg(long)]
    iface: String,
    #[arg(long)]
    token: String,
    #[arg(long)]
    after: u64,
}

impl RollbackTimer {
    pub fn run(self) -> anyhow::Result<()> {
        Ok(confirm::timer(&self.iface, &self.token, Duration::from_secs(self.after))?)
    }
}
