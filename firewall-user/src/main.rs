//! `firewall`: the seed's tight iptables policy, enforced by XDP and TC programs.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use firewall_user::{
    filter::{self, Mode},
    listing::{Style, json, render},
    live,
    pins::Pins,
    policy, serve,
    stats::Snapshot,
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
    /// Load the policy, attach XDP ingress and TC egress, pin, and exit with the filter in
    /// place; when a filter is up, replace its programs in place and apply the policy.
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
    /// Re-read the policy and change the live maps in place: no detach, flows and counters kept.
    Reload {
        /// Another policy file (default: the one `up` was given); later commands use it.
        #[arg(long)]
        policy: Option<PathBuf>,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Add peers to a rule, live, and write them into the policy file.
    Allow {
        rule: String,
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<String>,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Remove peers from a rule, live (their flows end), and from the policy file.
    Revoke {
        rule: String,
        #[arg(required = true, value_name = "ADDR")]
        addrs: Vec<String>,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Zero the packet and byte counters, as iptables -Z.
    Zero {
        #[arg(long)]
        iface: Option<String>,
    },
    /// The tracked flows, as conntrack -L.
    Conntrack {
        #[arg(long)]
        json: bool,
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
    /// Serve the counters for Prometheus at http://ADDR:PORT/metrics and reload on SIGHUP,
    /// until SIGTERM or SIGINT (the filter stays up).
    Serve {
        /// Where to listen, as 127.0.0.1:9100 or [::1]:9100.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: String,
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
        Command::Up { policy: file, iface, mode } => {
            filter::require_root()?;
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let policy = policy::parse(&text, &file)?;
            let iface =
                iface.or_else(|| policy.interface.clone()).ok_or(filter::FilterError::NoInterfaceGiven)?;
            let up = filter::up(&policy, &text, &file, &iface, mode)?;
            let how = if up.replaced { "programs replaced in place" } else { "attached" };
            println!(
                "firewall up on {iface}: {how}, {} rules, pinned at {}",
                policy.rules.len(),
                up.pins.dir.display()
            );
        }
        Command::Down { iface } => {
            let pins = filter::down(iface.as_deref())?;
            println!("firewall down on {}", pins.iface);
        }
        Command::Reload { policy, iface } => {
            let done = live::reload(iface.as_deref(), policy.as_deref())?;
            let a = done.applied;
            println!(
                "firewall reloaded {} on {}: {} entries added or changed, {} removed, {} flows ended",
                done.file.display(),
                done.pins.iface,
                a.added,
                a.removed,
                a.flows_removed
            );
        }
        Command::Allow { rule, addrs, iface } => {
            let done = live::change_peers(iface.as_deref(), &rule, &addrs, true)?;
            report_peers("allowed", "already allowed", &rule, &addrs, &done);
        }
        Command::Revoke { rule, addrs, iface } => {
            let done = live::change_peers(iface.as_deref(), &rule, &addrs, false)?;
            report_peers("revoked", "", &rule, &addrs, &done);
        }
        Command::Zero { iface } => {
            let pins = live::zero(iface.as_deref())?;
            println!("firewall: counters zeroed on {}", pins.iface);
        }
        Command::Conntrack { json: as_json, iface } => {
            let flows = live::conntrack(iface.as_deref())?;
            if as_json {
                println!("{}", serde_json::to_string(&flows)?);
            } else {
                print!("{}", live::render_flows(&flows));
            }
        }
        Command::List { numeric: _, verbose, exact, json: as_json, iface } => {
            filter::require_root()?;
            let pins = Pins::find(iface.as_deref())?;
            let snapshot = Snapshot::take(&pins)?;
            if as_json {
                println!("{}", json(&snapshot.chains, &snapshot.counters));
            } else {
                print!("{}", render(&snapshot.chains, &snapshot.counters, Style { verbose, exact }));
            }
        }
        Command::Serve { metrics, iface } => serve::serve(&metrics, iface.as_deref())?,
    }
    Ok(())
}

fn report_peers(done_word: &str, noop_word: &str, rule: &str, addrs: &[String], done: &live::PeersChanged) {
    if done.changed.is_empty() {
        println!("firewall: {} {noop_word} in rule {rule}; nothing changed", addrs.join(" "));
        return;
    }
    let changed: Vec<String> = done.changed.iter().map(ToString::to_string).collect();
    println!(
        "firewall: {done_word} {} in rule {rule}, live and in {}",
        changed.join(" "),
        done.file.display()
    );
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
