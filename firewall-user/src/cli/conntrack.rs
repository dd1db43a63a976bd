//! `firewall conntrack [--json[=1]]`
use clap::Args;
use firewall_user::view::conntrack;

#[derive(Args)]
pub struct Conntrack {
    /// JSON for scripts: `--json=1`, one object with `schema_version`; `--json` alone, the
    /// bare array of earlier versions (deprecated).
    #[arg(long, value_name = "FORM", num_args = 0..=1, require_equals = true, default_missing_value = "array")]
    json: Option<super::JsonForm>,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Conntrack {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let flows = conntrack::conntrack(&filter)?;
        if let Some(form) = self.json {
            form.print("conntrack", "flows", &flows)?;
        } else {
            super::report_text(&conntrack::render_flows(&flows))?;
        }
        Ok(())
    }
}
