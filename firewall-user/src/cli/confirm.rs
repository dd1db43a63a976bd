//! `firewall confirm`
use clap::Args;
use firewall_user::ops::confirm;

#[derive(Args)]
pub struct Confirm {
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Confirm {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let pending = confirm::confirm(&filter)?;
        #[derive(serde::Serialize)]
        struct Confirmed<'a> {
            iface: &'a str,
            /// What was kept: `reload of FILE`, `up of FILE`.
            confirmed: &'a str,
        }
        let line = format_args!("firewall: confirmed the {} on {}: it stays", pending.change, filter.iface());
        self.output.print(line, &Confirmed { iface: filter.iface(), confirmed: &pending.change });
        Ok(())
    }
}
