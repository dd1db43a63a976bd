//! `firewall down`
use clap::Args;
use firewall_user::{
    kernel::offloads::{OffloadOn, them},
    ops::up,
};

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
        let iface = filter.iface();
        let restored = up::down(&filter)?;
        // The filter is gone whatever became of the offloads: a warning for each device
        // that refused, and `down` succeeds.
        for failed in &restored.failed {
            let names = failed.offloads.iter().map(|o| format!(" {o} on")).collect::<String>();
            eprintln!(
                "firewall: warning: {}; `ethtool -K {}{names}` turns {} on",
                firewall_user::one_line(failed),
                failed.iface,
                them(&failed.offloads, "it", "them")
            );
        }
        #[derive(serde::Serialize)]
        struct WentDown<'a> {
            iface: &'a str,
            /// The receive offloads XDP had turned off, turned back on, each with
            /// its device (the interface, or one of its lower devices).
            offloads_restored: &'a [OffloadOn],
        }
        let line = match restored.turned_on_line(iface) {
            Some(what) => format!("firewall down on {iface}: {what}"),
            None => format!("firewall down on {iface}"),
        };
        self.output.print(line, &WentDown { iface, offloads_restored: &restored.turned_on });
        Ok(())
    }
}
