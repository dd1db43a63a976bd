//! `firewall watch [--interval SECONDS]`
use clap::Args;
use firewall_user::{Filter, watch};

#[derive(Args)]
pub struct Watch {
    /// The interface (default: the only one with a filter up).
    #[arg(long)]
    iface: Option<String>,
    /// Seconds between refreshes (0.1 to 3600).
    #[arg(long, value_name = "SECONDS", default_value = "1")]
    interval: String,
}

impl Watch {
    pub fn run(self) -> anyhow::Result<()> {
        let interval = watch::interval(&self.interval)?;
        let filter = Filter::open(self.iface.as_deref())?;
        Ok(watch::run(&filter, interval)?)
    }
}
