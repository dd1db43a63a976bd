//! `firewall zero`
use clap::Args;
use firewall_user::{Filter, ops::counters};

#[derive(Args)]
pub struct Zero {
    #[arg(long)]
    iface: Option<String>,
}

impl Zero {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = Filter::open(self.iface.as_deref())?;
        counters::zero(&filter)?;
        println!("firewall: counters zeroed on {}", filter.iface());
        Ok(())
    }
}
