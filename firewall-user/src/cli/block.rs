//! `firewall block ADDR|CIDR… [--for DURATION]`, `firewall block --from FILE [--list NAME] [--for DURATION]`
use std::{io::Read as _, path::PathBuf, time::Duration};

use clap::Args;
use firewall_user::{
    kernel::resize::Resized,
    ops::{
        block::{self, Blocked},
        block_lists::{self, ListError},
        peers::parse_prefixes,
    },
    policy,
};

#[derive(Args)]
pub struct Block {
    #[arg(required_unless_present = "from", conflicts_with = "from", value_name = "ADDR|CIDR")]
    addrs: Vec<String>,
    /// For how long (30s, 10m, 12h, 7d); the kernel lifts it then. Default: until unblocked.
    /// With --from, the list's: it blocks nothing after, unless loaded again (with --for
    /// again, to go on expiring).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Load a named list from FILE (`-`: standard input): one address or prefix a line, `#`
    /// or `;` starts a comment. The list comes to hold exactly the file's prefixes, in
    /// place of what it held; they stay blocked until the list is loaded without them, or
    /// removed with `unblock --list`.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// The list's name. Default: the file's name, without its extension.
    #[arg(long, value_name = "NAME", requires = "from")]
    list: Option<String>,
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
        if let Some(file) = &self.from {
            return self.load_list(file);
        }
        let prefixes = parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        let done = block::block(&filter, &prefixes, self.duration, super::session_guard(self.force))?;
        let mut lines = Vec::new();
        let mut report = BlockReport {
            iface: filter.iface(),
            duration_secs: self.duration.map(|d| d.as_secs()),
            blocked: Vec::new(),
            covered: Vec::new(),
            resized: &done.resized,
        };
        for blocked in &done.each {
            lines.push(blocked.line(filter.iface(), self.duration));
            match blocked {
                Blocked::Added { prefix, absorbed, flows_ended } => {
                    let replaced = absorbed.iter().map(ToString::to_string).collect();
                    report.blocked.push(Added {
                        prefix: prefix.to_string(),
                        replaced,
                        flows_ended: *flows_ended,
                    });
                }
                Blocked::Covered { prefix, by } => {
                    report.covered.push(Covered { prefix: prefix.to_string(), by: by.to_string() });
                }
            }
        }
        self.output.print(lines.join("\n"), &report);
        if !self.output.json {
            super::report_resized(&done.resized);
        }
        Ok(())
    }
}

impl Block {
    /// `block --from FILE`: the list named after the file (or `--list`) becomes the file's.
    fn load_list(&self, file: &std::path::Path) -> anyhow::Result<()> {
        let stdin = file.as_os_str() == "-";
        let name = match (&self.list, stdin) {
            (Some(name), _) => name.clone(),
            (None, true) => return Err(ListError::NoName.into()),
            (None, false) => file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        block_lists::check_name(&name)?;
        let mut text = String::new();
        let source_name = if stdin {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| anyhow::anyhow!("reading standard input: {e}"))?;
            "standard input".to_owned()
        } else {
            text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            file.display().to_string()
        };
        let prefixes = block_lists::parse_list(&text, &source_name)?;
        let filter = self.filter.open()?;
        let loaded =
            block_lists::load(&filter, &name, &prefixes, self.duration, super::session_guard(self.force))?;
        let report = ListReport {
            iface: filter.iface(),
            duration_secs: self.duration.map(|d| d.as_secs()),
            list: &loaded.name,
            entries: loaded.entries,
            added: loaded.added,
            removed: loaded.removed,
            flows_ended: loaded.flows_ended,
            created: loaded.created,
            resized: &loaded.resized,
        };
        self.output.print(loaded.event(filter.iface()).line("firewall"), &report);
        if !self.output.json {
            super::report_resized(&loaded.resized);
        }
        Ok(())
    }
}

/// What `block --from --json` prints.
#[derive(serde::Serialize)]
struct ListReport<'a> {
    iface: &'a str,
    list: &'a str,
    /// `--for`; None: until loaded again or removed.
    duration_secs: Option<u64>,
    /// The prefixes it holds now.
    entries: usize,
    added: usize,
    removed: usize,
    flows_ended: usize,
    /// No list had the name before.
    created: bool,
    /// `COUNTERS`, grown to count the new list's slot (each `map`, `from`, `to`).
    resized: &'a [Resized],
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
    /// `COUNTERS`, grown to count the new entries' slots (each `map`, `from`, `to`).
    resized: &'a [Resized],
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
