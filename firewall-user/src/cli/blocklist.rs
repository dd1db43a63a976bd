//! `firewall blocklist [--json]`
use clap::Args;
use firewall_user::{
    Filter,
    view::{blocklist, snapshot::Snapshot},
};

#[derive(Args)]
pub struct Blocklist {
    #[arg(long)]
    json: bool,
    #[arg(long)]
    iface: Option<String>,
}

impl Blocklist {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = Filter::open(self.iface.as_deref())?;
        let snapshot = Snapshot::take(filter.pins())?;
        if self.json {
            println!("{}", serde_json::to_string(&snapshot.blocks)?);
        } else {
            print!("{}", blocklist::render(&snapshot.blocks));
        }
        Ok(())
    }
}
