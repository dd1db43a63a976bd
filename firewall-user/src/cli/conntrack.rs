//! `firewall conntrack [--json]`
use clap::Args;
use firewall_user::view::conntrack;

#[derive(Args)]
pub struct Conntrack {
    /// One JSON object, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Conntrack {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let flows = conntrack::conntrack(&filter)?;
        if self.json {
            println!("{}", serde_json::to_string(&flows)?);
        } else {
            print!("{}", conntrack::render_flows(&flows));
        }
        Ok(())
    }
}
