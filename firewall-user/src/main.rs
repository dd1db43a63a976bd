//! `firewall`: the seed's tight iptables policy, enforced by XDP and TC programs.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use firewall_common::MAP_COUNTERS;
use firewall_user::{
    compile::listing,
    filter::{self, Mode, Pins},
    listing::{Style, json, render},
    policy,
};

#[derive(Parser)]
#[command(
    name = "firewall",
    version,
    about = "A tight server firewall in XDP and TC, driven by one TOML policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy: exit 0, or 1 with FILE:LINE:COL: message.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Load the policy, attach XDP ingress and TC egress, pin, and exit with the filter in place.
    Up {
        #[arg(long)]
        policy: PathBuf,
        /// The interface (default: [host] interface in the policy).
        #[arg(long)]
        iface: Option<String>,
        /// How to attach XDP.
        #[arg(long, value_enum, default_value_t = Mode::Auto)]
        mode: Mode,
    },
    /// Detach and unpin: the interface is as before `up`.
    Down {
        #[arg(long)]
        iface: Option<String>,
    },
    /// The chains with their rules and counters, like `iptables -nvL`.
    List {
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
        #[arg(long)]
        iface: Option<String>,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { file } => {
            let policy = policy::load(&file)?;
            println!("{}: OK ({} rules)", file.display(), policy.rules.len());
        }
        Command::Up {
            policy: file,
            iface,
            mode,
        } => {
            let policy = policy::load(&file)?;
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let iface = iface
                .or_else(|| policy.interface.clone())
                .ok_or(filter::FilterError::NoInterfaceGiven)?;
            let pins = filter::up(&policy, &text, &iface, mode)?;
            println!(
                "firewall up on {iface}: {} rules, pinned at {}",
                policy.rules.len(),
                pins.dir.display()
            );
        }
        Command::Down { iface } => {
            let pins = filter::down(iface.as_deref())?;
            println!("firewall down on {}", pins.iface);
        }
        Command::List {
            numeric: _,
            verbose,
            exact,
            json: as_json,
            iface,
        } => {
            filter::require_root()?;
            let pins = Pins::find(iface.as_deref())?;
            let policy = pins.policy()?;
            let counters = filter::read_counters(pins.open_map(MAP_COUNTERS)?)?;
            let chains = listing(&policy);
            if as_json {
                println!("{}", json(&chains, &counters));
            } else {
                print!("{}", render(&chains, &counters, Style { verbose, exact }));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes.
            let mut message = err.to_string();
            for cause in err.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message.push_str(": ");
                    message.push_str(&cause);
                }
            }
            eprintln!("firewall: {message}");
            ExitCode::FAILURE
        }
    }
}
