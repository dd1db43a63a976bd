//! `firewall list [-v] [-x] [--json]`
use clap::Args;
use firewall_user::view::{
    listing::{self, Style},
    names,
    snapshot::Snapshot,
    versioned_json,
};

#[derive(Args)]
#[expect(clippy::struct_excessive_bools, reason = "iptables' own flags, -n, -v and -x, beside --json")]
pub struct List {
    /// Numeric output (always numeric; accepted for iptables' habits).
    #[arg(short = 'n', long)]
    numeric: bool,
    /// Show packet and byte counters.
    #[arg(short, long)]
    verbose: bool,
    /// Exact numbers instead of K, M, G.
    #[arg(short = 'x', long)]
    exact: bool,
    /// One JSON object, for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl List {
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let snapshot = Snapshot::take(filter.pins())?;
        let tables = (&snapshot.established, &snapshot.half_open);
        if self.json {
            let listing = listing::json(
                &snapshot.chains,
                &snapshot.counters,
                snapshot.audit,
                tables,
                &snapshot.policy,
                &snapshot.memory,
            );
            let mut listing = listing;
            listing["attached"] = serde_json::json!(snapshot.detached.is_none());
            if !snapshot.names.is_empty() {
                listing["names"] = serde_json::json!(snapshot.names);
            }
            report!("{}", versioned_json(&listing))?;
        } else {
            // First, and on stderr too: counters that stand still look like a quiet host.
            if let Some(why) = &snapshot.detached {
                eprintln!("firewall: warning: {why}");
                report!("Not filtering: {why}\n")?;
            }
            let style = Style { verbose: self.verbose, exact: self.exact, audit: snapshot.audit };
            super::report_text(&listing::render(&snapshot.chains, &snapshot.counters, style))?;
            report!("\n{}", listing::conntrack_line(tables.0, tables.1))?;
            if let Some(line) = listing::addresses_line(&snapshot.policy) {
                report!("{line}")?;
            }
            for name in &snapshot.names {
                report!("{}", names::line(name))?;
            }
        }
        Ok(())
    }
}
