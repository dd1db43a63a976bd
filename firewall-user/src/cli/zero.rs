//! `firewall zero`
use clap::Args;
use firewall_user::ops::counters;

#[derive(Args)]
pub struct Zero {
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Zero {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        counters::zero(&filter)?;
        #[derive(serde::Serialize)]
        struct Zeroed<'a> {
            iface: &'a str,
        }
        let line = format_args!("firewall: counters zeroed on {}", filter.iface());
        self.output.print(line, &Zeroed { iface: filter.iface() });
        Ok(())
    }
}
