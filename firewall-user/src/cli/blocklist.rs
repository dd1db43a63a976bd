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
        match self.json {
            // The bare array of earlier versions holds the entries alone.
            Some(form @ super::JsonForm::Array) => form.print("blocklist", "blocks", &snapshot.blocks)?,
            Some(super::JsonForm::V1) => report!(
                "{}",
                firewall_user::view::versioned_json(
                    &serde_json::json!({ "blocks": snapshot.blocks, "lists": snapshot.lists })
                )
            )?,
            None => super::report_text(&blocklist::render(&snapshot.blocks, &snapshot.lists))?,
        }
        Ok(())
    }
}
