//! `firewall confirm`
use clap::Args;
use firewall_user::{Filter, ops::confirm};

#[derive(Args)]
pub struct Confirm {
    #[arg(long)]
    iface: Option<String>,
}

impl Confirm {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = Filter::open(self.iface.as_deref())?;
        let pending = confirm::confirm(&filter)?;
        println!("firewall: confirmed the {} on {}: it stays", pending.change, filter.iface());
        Ok(())
    }
}
