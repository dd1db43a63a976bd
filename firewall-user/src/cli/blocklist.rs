//! `firewall blocklist [--json]`
use clap::Args;
use firewall_user::view::{blocklist, snapshot::Snapshot};

#[derive(Args)]
pub struct Blocklist {
    /// One JSON object, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Blocklist {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let snapshot = Snapshot::take(filter.pins())?;
        if self.json {
            println!("{}", serde_json::to_string(&snapshot.blocks)?);
        } else {
            print!("{}", blocklist::render(&snapshot.blocks));
        }
        Ok(())
    }
}
