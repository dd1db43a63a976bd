//! `firewall serve --metrics ADDR:PORT [--log-drops RATE]`
use clap::Args;
use firewall_user::{serve, view::drops};

#[derive(Args)]
pub struct Serve {
    /// Where to listen, as 127.0.0.1:9100 or [::1]:9100.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: String,
    /// Also write sampled drop events to stderr, at most RATE a second (enforced in
    /// the kernel; off by default: drop logging fills disks).
    #[arg(long, value_name = "RATE", value_parser = drops::parse_rate)]
    log_drops: Option<u32>,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Serve {
    pub fn run(self) -> anyhow::Result<()> {
        let addr = serve::address(&self.metrics)?;
        let filter = self.filter.open()?;
        Ok(serve::serve(&filter, addr, self.log_drops)?)
    }
}
