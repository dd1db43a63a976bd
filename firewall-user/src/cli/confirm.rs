//! `firewall confirm`
use clap::Args;
use firewall_user::ops::confirm;

#[derive(Args)]
pub struct Confirm {
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Confirm {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let pending = confirm::confirm(&filter)?;
        println!("firewall: confirmed the {} on {}: it stays", pending.change, filter.iface());
        Ok(())
    }
}
