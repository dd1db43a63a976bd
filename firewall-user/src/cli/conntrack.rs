//! `firewall conntrack [--json]`
use clap::Args;
use firewall_user::{Filter, view::conntrack};

#[derive(Args)]
pub struct Conntrack {
    #[arg(long)]
    json: bool,
    #[arg(long)]
    iface: Option<String>,
}

impl Conntrack {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = Filter::open(self.iface.as_deref())?;
        let flows = conntrack::conntrack(&filter)?;
        if self.json {
            println!("{}", serde_json::to_string(&flows)?);
        } else {
            print!("{}", conntrack::render_flows(&flows));
        }
        Ok(())
    }
}
