//! `firewall unblock ADDR|CIDR…`
use clap::Args;
use firewall_user::ops::{block, peers::parse_prefixes};

#[derive(Args)]
pub struct Unblock {
    #[arg(required = true, value_name = "ADDR|CIDR")]
    addrs: Vec<String>,
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Unblock {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        block::unblock(&filter, &prefixes)?;
        #[derive(serde::Serialize)]
        struct Unblocked<'a> {
            iface: &'a str,
            unblocked: &'a [String],
        }
        let line = format_args!("firewall: unblocked {} on {}", self.addrs.join(" "), filter.iface());
        self.output.print(line, &Unblocked { iface: filter.iface(), unblocked: &self.addrs });
        Ok(())
    }
}
