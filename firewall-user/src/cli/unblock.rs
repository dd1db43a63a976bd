//! `firewall unblock ADDR|CIDR…`
use clap::Args;
use firewall_user::ops::{block, peers::parse_prefixes};

#[derive(Args)]
pub struct Unblock {
    #[arg(required = true, value_name = "ADDR|CIDR")]
    addrs: Vec<String>,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Unblock {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        block::unblock(&filter, &prefixes)?;
        println!("firewall: unblocked {} on {}", self.addrs.join(" "), filter.iface());
        Ok(())
    }
}
