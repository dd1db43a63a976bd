//! `firewall schema`
use clap::Args;
use firewall_user::policy;

#[derive(Args)]
pub struct Schema {}

impl Schema {
    #[expect(clippy::unused_self, reason = "every command runs as `args.run()`; this one has no arguments")]
    pub fn run(self) -> anyhow::Result<()> {
        report!("{}", serde_json::to_string_pretty(&policy::schema())?)?;
        Ok(())
    }
}
