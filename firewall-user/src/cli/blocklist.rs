//! `firewall blocklist [--json[=1]]`
use clap::Args;
use firewall_user::view::{blocklist, snapshot::Snapshot};

#[derive(Args)]
pub struct Blocklist {
    /// JSON for scripts: `--json=1`, one object with `schema_version`; `--json` alone, the
    /// bare array of earlier versions (deprecated).
    #[arg(long, value_name = "FORM", num_args = 0..=1, require_equals = true, default_missing_value = "array")]
    json: Option<super::JsonForm>,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Blocklist {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let snapshot = Snapshot::take(filter.pins())?;
        if let Some(form) = self.json {
            form.print("blocklist", "blocks", &snapshot.blocks)?;
        } else {
            print!("{}", blocklist::render(&snapshot.blocks));
        }
        Ok(())
    }
}
