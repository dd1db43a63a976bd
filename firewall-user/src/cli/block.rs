//! `firewall block ADDR|CIDR… [--for DURATION]`
use std::time::Duration;

use clap::Args;
use firewall_user::{
    ops::{
        block::{self, Blocked},
        peers::parse_prefixes,
    },
    policy,
};

#[derive(Args)]
pub struct Block {
    #[arg(required = true, value_name = "ADDR|CIDR")]
    addrs: Vec<String>,
    /// For how long (30s, 10m, 12h, 7d); the kernel lifts it then. Default: until unblocked.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Block even the SSH session this runs from.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Block {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        let done = block::block(&filter, &prefixes, self.duration, super::session_guard(self.force))?;
        let mut lines = Vec::new();
        let mut report = BlockReport {
            iface: filter.iface(),
            duration_secs: self.duration.map(|d| d.as_secs()),
            blocked: Vec::new(),
            covered: Vec::new(),
        };
        for blocked in done {
            lines.push(blocked.line(filter.iface(), self.duration));
            match blocked {
                Blocked::Added { prefix, absorbed, flows_ended } => {
                    let replaced = absorbed.iter().map(ToString::to_string).collect();
                    report.blocked.push(Added { prefix: prefix.to_string(), replaced, flows_ended });
                }
                Blocked::Covered { prefix, by } => {
                    report.covered.push(Covered { prefix: prefix.to_string(), by: by.to_string() });
                }
            }
        }
        self.output.print(lines.join("\n"), &report);
        Ok(())
    }
}

/// What `block --json` prints.
#[derive(serde::Serialize)]
struct BlockReport<'a> {
    iface: &'a str,
    /// None: until unblocked.
    duration_secs: Option<u64>,
    blocked: Vec<Added>,
    /// Those a wider block holds already, for at least as long: nothing changed for them.
    covered: Vec<Covered>,
}

#[derive(serde::Serialize)]
struct Added {
    prefix: String,
    /// Narrower blocks the new one took the place of.
    replaced: Vec<String>,
    flows_ended: usize,
}

#[derive(serde::Serialize)]
struct Covered {
    prefix: String,
    by: String,
}

/// A `--for` that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a duration: a number and s, m, h or d (10m, 12h)")]
struct BadDuration(String);

fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    policy::parse_duration(text).ok_or_else(|| BadDuration(text.to_owned()))
}
