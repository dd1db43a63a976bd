//! `firewall zero`
use clap::Args;
use firewall_user::ops::counters;

#[derive(Args)]
pub struct Zero {
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Zero {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        counters::zero(&filter)?;
        println!("firewall: counters zeroed on {}", filter.iface());
        Ok(())
    }
}
