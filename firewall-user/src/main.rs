//! `firewall`: the seed's tight iptables policy, enforced by XDP and TC programs.
use std::{net::Ipv4Addr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use firewall_user::{
    blocklist, confirm, drops,
    filter::{self, Mode},
    import,
    listing::{Style, conntrack_line, json, render},
    live::{self, PeerChange},
    lockout::{self, SessionGuard},
    maps::Enforcement,
    pins::Pins,
    policy, serve,
    stats::Snapshot,
    watch,
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

/// How `up` and `reload` apply a policy.
#[derive(Args)]
struct Apply {
    /// Audit mode: count what the policy would drop, and pass it (the listing says "would drop").
    #[arg(long, conflicts_with = "enforce")]
    audit: bool,
    /// Leave audit mode: drop what the policy drops (the default for a new filter).
    #[arg(long)]
    enforce: bool,
    /// Roll the change back after SECONDS unless `firewall confirm` comes first.
    #[arg(long, value_name = "SECONDS")]
    confirm: Option<u64>,
    /// Apply even if it would cut off the SSH session this runs from.
    #[arg(long)]
    force: bool,
}

impl Apply {
    /// The mode asked for, or `None` to keep the live filter's.
    fn enforcement(&self) -> Option<Enforcement> {
        match (self.audit, self.enforce) {
            (true, _) => Some(Enforcement::Audit),
            (_, true) => Some(Enforcement::Enforce),
            _ => None,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy: exit 0, or 1 with FILE:LINE:COL: message. Under SSH, also
    /// refuse a policy that would cut this session off.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Skip the SSH session check.
        #[arg(long)]
        force: bool,
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
        #[command(flatten)]
        apply: Apply,
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
        #[command(flatten)]
        apply: Apply,
    },
    /// Keep the change an `up` or `reload --confirm` made: its rollback is called off.
    Confirm {
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
        /// Revoke even if it would cut off the SSH session this runs from.
        #[arg(long)]
        force: bool,
    },
    /// Block addresses or prefixes, live: their flows end, nothing passes to or from them.
    Block {
        #[arg(required = true, value_name = "ADDR|CIDR")]
        addrs: Vec<String>,
        /// For how long (30s, 10m, 12h, 7d); the kernel lifts it then. Default: until unblocked.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Block even the SSH session this runs from.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Lift blocks (each ADDR|CIDR as it was blocked).
    Unblock {
        #[arg(required = true, value_name = "ADDR|CIDR")]
        addrs: Vec<String>,
        #[arg(long)]
        iface: Option<String>,
    },
    /// The blocked addresses, their counters and expiry.
    Blocklist {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Started by `--confirm`: rolls the change back unless confirmed in time.
    #[command(hide = true)]
    RollbackTimer {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        after: u64,
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
    /// Stream sampled drop events, as iptables' LOG target writes them, until Ctrl-C.
    Drops {
        /// The most events a second, enforced in the kernel (bursts of as many).
        #[arg(long, default_value = "10", value_parser = firewall_user::drops::parse_rate)]
        rate: u32,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Live per-rule packet and byte rates, busiest first, and the conntrack table's fill.
    Watch {
        /// The interface (default: the only one with a filter up).
        #[arg(long)]
        iface: Option<String>,
        /// Seconds between refreshes (0.1 to 3600).
        #[arg(long, value_name = "SECONDS", default_value = "1")]
        interval: String,
    },
    /// Serve the counters for Prometheus at http://ADDR:PORT/metrics and reload on SIGHUP,
    /// until SIGTERM or SIGINT (the filter stays up).
    Serve {
        /// Where to listen, as 127.0.0.1:9100 or [::1]:9100.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: String,
        /// Also write sampled drop events to stderr, at most RATE a second (enforced in
        /// the kernel; off by default: drop logging fills disks).
        #[arg(long, value_name = "RATE", value_parser = firewall_user::drops::parse_rate)]
        log_drops: Option<u32>,
        #[arg(long)]
        iface: Option<String>,
    },
    /// Turn an iptables-save dump into a policy, and list the lines it could not translate.
    Import {
        /// The dump (`-` for stdin).
        file: PathBuf,
        /// Write the policy here (default: stdout); an existing file only with --force.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
        /// [host] interface (default: the one the dump's -i/-o name).
        #[arg(long)]
        iface: Option<String>,
        /// [host] address, OURIP (default: the one the dump's -d/-s name).
        #[arg(long)]
        address: Option<Ipv4Addr>,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { file, force } => {
            let policy = policy::load(&file)?;
            lockout::guard(&policy, None, session_guard(force))?;
            println!("{}: OK ({} rules)", file.display(), policy.rules.len());
        }
        Command::Up { policy: file, iface, mode, apply } => {
            filter::require_root()?;
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let policy = policy::parse(&text, &file)?;
            let iface =
                iface.or_else(|| policy.interface.clone()).ok_or(filter::FilterError::NoInterfaceGiven)?;
            let lock = filter::lock_for_up(&iface)?;
            let (up, armed) = confirm::around(&lock, apply.confirm, || {
                let up = filter::up(
                    &lock,
                    &policy,
                    &text,
                    &file,
                    mode,
                    apply.enforcement(),
                    session_guard(apply.force),
                )?;
                Ok((up, format!("up of {}", file.display())))
            })?;
            drop(lock);
            let how = if up.replaced { "programs replaced in place" } else { "attached" };
            println!(
                "firewall up on {iface}: {how}, {} rules{}, pinned at {}",
                policy.rules.len(),
                if up.enforcement.is_audit() { ", audit mode (nothing is dropped)" } else { "" },
                up.pins.dir.display()
            );
            report_armed(armed);
        }
        Command::Down { iface } => {
            let pins = filter::down(iface.as_deref())?;
            println!("firewall down on {}", pins.iface);
        }
        Command::Reload { policy, iface, apply } => {
            let lock = live::lock(iface.as_deref())?;
            let (done, armed) = confirm::around(&lock, apply.confirm, || {
                let done =
                    live::reload(&lock, policy.as_deref(), apply.enforcement(), session_guard(apply.force))?;
                let name = format!("reload of {}", done.file.display());
                Ok((done, name))
            })?;
            drop(lock);
            let a = done.applied;
            println!(
                "firewall reloaded {} on {}: {} entries added or changed, {} removed, {} flows ended{}",
                done.file.display(),
                done.pins.iface,
                a.added,
                a.removed,
                a.flows_removed,
                if done.enforcement.is_audit() { "; audit mode (nothing is dropped)" } else { "" },
            );
            report_armed(armed);
        }
        Command::Confirm { iface } => {
            let (pins, pending) = confirm::confirm(iface.as_deref())?;
            println!("firewall: confirmed the {} on {}: it stays", pending.change, pins.iface);
        }
        Command::RollbackTimer { iface, token, after } => {
            confirm::timer(&iface, &token, Duration::from_secs(after))?;
        }
        Command::Allow { rule, addrs, iface } => {
            let done =
                live::change_peers(iface.as_deref(), &rule, &addrs, PeerChange::Allow, SessionGuard::Check)?;
            report_peers("allowed", "already allowed", &rule, &addrs, &done);
        }
        Command::Revoke { rule, addrs, iface, force } => {
            let done = live::change_peers(
                iface.as_deref(),
                &rule,
                &addrs,
                PeerChange::Revoke,
                session_guard(force),
            )?;
            report_peers("revoked", "", &rule, &addrs, &done);
        }
        Command::Block { addrs, duration, force, iface } => {
            let (pins, done) = blocklist::block(iface.as_deref(), &addrs, duration, session_guard(force))?;
            let how_long = match duration {
                Some(d) => format!("for {}", blocklist::human_duration(d.as_secs())),
                None => "until unblocked".into(),
            };
            for blocked in done {
                match blocked {
                    blocklist::Blocked::Added { prefix, absorbed, flows_ended } => {
                        let absorbed = if absorbed.is_empty() {
                            String::new()
                        } else {
                            let list: Vec<String> = absorbed.iter().map(ToString::to_string).collect();
                            format!(", replacing {}", list.join(" "))
                        };
                        println!(
                            "firewall: blocked {prefix} on {} {how_long}{absorbed}; {flows_ended} flows ended",
                            pins.iface
                        );
                    }
                    blocklist::Blocked::Covered { prefix, by } => {
                        println!(
                            "firewall: {prefix} is blocked already by {by}, for at least as long; nothing changed"
                        );
                    }
                }
            }
        }
        Command::Unblock { addrs, iface } => {
            let pins = blocklist::unblock(iface.as_deref(), &addrs)?;
            println!("firewall: unblocked {} on {}", addrs.join(" "), pins.iface);
        }
        Command::Blocklist { json: as_json, iface } => {
            filter::require_root()?;
            let pins = Pins::find(iface.as_deref())?;
            let snapshot = Snapshot::take(&pins)?;
            if as_json {
                println!("{}", serde_json::to_string(&snapshot.blocks)?);
            } else {
                print!("{}", blocklist::render(&snapshot.blocks));
            }
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
                let tables = (&snapshot.established, &snapshot.half_open);
                println!("{}", json(&snapshot.chains, &snapshot.counters, snapshot.audit, tables));
            } else {
                let style = Style { verbose, exact, audit: snapshot.audit };
                print!("{}", render(&snapshot.chains, &snapshot.counters, style));
                println!("\n{}", conntrack_line(&snapshot.established, &snapshot.half_open));
            }
        }
        Command::Watch { iface, interval } => watch::run(iface.as_deref(), &interval)?,
        Command::Drops { rate, iface } => print_drops(iface.as_deref(), rate)?,
        Command::Serve { metrics, log_drops, iface } => serve::serve(&metrics, iface.as_deref(), log_drops)?,
        Command::Import { file, output, force, iface, address } => {
            let existing = if force { import::Existing::Replace } else { import::Existing::Keep };
            if let Some(out) = &output {
                import::check_output(out, existing)?;
            }
            let input = import::read_input(&file, std::io::stdin().lock())?;
            let translation =
                import::import(&input, &import::Options { iface, address }).inspect_err(|err| {
                    // The error says "listed above": the lines that gave no rule come first.
                    if let import::ImportError::NothingUsable { translation } = err {
                        print_findings(translation);
                    }
                })?;
            print_findings(&translation);
            match &output {
                None => print!("{}", translation.text),
                Some(out) => import::write(&translation, out, existing)?,
            }
            eprintln!("firewall: {}", translation.summary(output.as_deref()));
        }
    }
    Ok(())
}

/// `firewall import`'s findings on stderr, one a line, before the policy and its summary.
fn print_findings(translation: &import::Translation) {
    for finding in translation.findings() {
        eprintln!("{finding}");
    }
}

/// `firewall drops`: each event on a line of its own, flushed, until SIGINT or SIGTERM.
fn print_drops(iface: Option<&str>, rate: u32) -> anyhow::Result<()> {
    use std::{
        io::Write as _,
        sync::{Arc, atomic::AtomicBool},
    };
    filter::require_root()?;
    let pins = live::live(iface)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("catching SIGINT and SIGTERM")?;
    }
    let mut snapshot = Snapshot::take(&pins)?;
    let mut events = drops::Events::open(&pins)?;
    let on = drops::Listening::start(&pins, rate)?;
    eprintln!("firewall: drop events on {}, at most {rate} a second; Ctrl-C ends", pins.iface);
    let mut out = std::io::stdout().lock();
    drops::stream(&pins, &mut events, &on, &stop, |event| {
        // A line a reload added since: read the listing again.
        if !snapshot.chains.iter().any(|c| c.lines.iter().any(|l| l.counter == event.counter))
            && let Ok(fresh) = Snapshot::take(&pins)
        {
            snapshot = fresh;
        }
        let _ = writeln!(out, "{}", drops::render(&event, &pins.iface, Some(&snapshot)));
        let _ = out.flush();
    })?;
    Ok(())
}

/// `--force` skips the check that the command does not cut off its own SSH session.
fn session_guard(force: bool) -> SessionGuard {
    if force { SessionGuard::Skip } else { SessionGuard::Check }
}

/// Says how to keep a change that `--confirm` armed.
fn report_armed(armed: Option<confirm::Armed>) {
    if let Some(confirm::Armed { pid, seconds }) = armed {
        println!(
            "firewall: run `firewall confirm` within {seconds} s to keep this; else it is rolled back (timer pid {pid})"
        );
    }
}

/// A `--for` that is not a duration.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a duration: a number and s, m, h or d (10m, 12h)")]
struct BadDuration(String);

fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    policy::parse_duration(text).ok_or_else(|| BadDuration(text.to_owned()))
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // One line, as every other error: clap's first, without its "error: ".
            let text = err.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("firewall: {} (see firewall --help)", first.strip_prefix("error: ").unwrap_or(first));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes.
            eprintln!("firewall: {}", firewall_user::one_line(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
