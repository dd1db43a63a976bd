//! `firewall down`
use clap::Args;
use firewall_user::ops::up;

#[derive(Args)]
pub struct Down {
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Down {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        up::down(&filter)?;
        #[derive(serde::Serialize)]
        struct WentDown<'a> {
            iface: &'a str,
        }
        self.output
            .print(format_args!("firewall down on {}", filter.iface()), &WentDown { iface: filter.iface() });
        Ok(())
    }
}
