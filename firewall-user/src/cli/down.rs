//! `firewall down`
use clap::Args;
use firewall_user::ops::up;

#[derive(Args)]
pub struct Down {
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Down {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        up::down(&filter)?;
        println!("firewall down on {}", filter.iface());
        Ok(())
    }
}
