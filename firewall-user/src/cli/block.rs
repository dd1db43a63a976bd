//! `firewall block ADDR|CIDR… [--for DURATION]`
use std::time::Duration;

use clap::Args;
use firewall_user::{
    ops::{
        block::{self, Blocked},
        peers::parse_prefixes,
    },
    policy,
    view::blocklist::human_duration,
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
}

impl Block {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        let done = block::block(&filter, &prefixes, self.duration, super::session_guard(self.force))?;
        let how_long = match self.duration {
            Some(d) => format!("for {}", human_duration(d.as_secs())),
            None => "until unblocked".into(),
        };
        for blocked in done {
            match blocked {
                Blocked::Added { prefix, absorbed, flows_ended } => {
                    let absorbed = if absorbed.is_empty() {
                        String::new()
                    } else {
                        let list: Vec<String> = absorbed.iter().map(ToString::to_string).collect();
                        format!(", replacing {}", list.join(" "))
                    };
                    println!(
                        "firewall: blocked {prefix} on {} {how_long}{absorbed}; {flows_ended} flows ended",
                        filter.iface()
                    );
                }
                Blocked::Covered { prefix, by } => {
                    println!(
                        "firewall: {prefix} is blocked already by {by}, for at least as long; nothing changed"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A `--for` that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a duration: a number and s, m, h or d (10m, 12h)")]
struct BadDuration(String);

fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    policy::parse_duration(text).ok_or_else(|| BadDuration(text.to_owned()))
}
