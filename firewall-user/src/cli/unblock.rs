//! `firewall unblock ADDR|CIDR…`, `firewall unblock --list NAME`
use clap::Args;
use firewall_user::ops::{block, block_lists, peers::parse_prefixes};

#[derive(Args)]
pub struct Unblock {
    #[arg(required_unless_present = "list", conflicts_with = "list", value_name = "ADDR|CIDR")]
    addrs: Vec<String>,
    /// Remove the named list (`block --from`): its prefixes pass again.
    #[arg(long, value_name = "NAME")]
    list: Option<String>,
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Unblock {
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(name) = &self.list {
            let filter = self.filter.open()?;
            let entries = block_lists::remove(&filter, name)?;
            #[derive(serde::Serialize)]
            struct Removed<'a> {
                iface: &'a str,
                list: &'a str,
                entries: usize,
            }
            let event =
                firewall_user::log::Event::UnblockList { iface: filter.iface(), list: name.clone(), entries };
            self.output
                .print(event.line("firewall"), &Removed { iface: filter.iface(), list: name, entries });
            return Ok(());
        }
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
