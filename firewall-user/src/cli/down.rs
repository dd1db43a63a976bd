//! `firewall down`
use clap::Args;
use firewall_user::{Filter, ops::up};

#[derive(Args)]
pub struct Down {
    #[arg(long)]
    iface: Option<String>,
}

impl Down {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = Filter::open(self.iface.as_deref())?;
        up::down(&filter)?;
        println!("firewall down on {}", filter.iface());
        Ok(())
    }
}
