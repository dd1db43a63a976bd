//! `firewall watch [--interval SECONDS]`
use clap::Args;
use firewall_user::watch;

#[derive(Args)]
pub struct Watch {
    #[command(flatten)]
    filter: super::LiveFilter,
    /// Seconds between refreshes (0.1 to 3600).
    #[arg(long, value_name = "SECONDS", default_value = "1")]
    interval: String,
}

impl Watch {
    pub fn run(self) -> anyhow::Result<()> {
        let interval = watch::interval(&self.interval)?;
        let filter = self.filter.open()?;
        Ok(watch::run(&filter, interval)?)
    }
}
