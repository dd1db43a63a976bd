//! The command line: [`Cli`] parsed by clap, and one file per command, each of which
//! parses its arguments, calls one library function and prints what it did.

/// `println!` for what a command says of its work once done: a reader gone (`| head`)
/// loses the line, and the command ends as its work went, where `println!` panicked
/// (exit 101) after the change was made. (The commands that only report end by SIGPIPE
/// instead: see `Cli::only_reports`.)
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `println!` for a report, whose output is its work: a write that fails (a full disk) is
/// the command's error, one line, where `println!` panicked (exit 101). A reader gone ends
/// a report by SIGPIPE before it gets here (see `Cli::only_reports`).
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err($crate::cli::StdoutError)
    }};
}

/// A report's output that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing to stdout")]
pub struct StdoutError(#[source] pub std::io::Error);

/// `print!` of a report's text, as [`report!`] prints a line.
fn report_text(text: &str) -> Result<(), StdoutError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(StdoutError)
}

mod allow;
mod block;
mod blocklist;
mod check;
mod confirm;
mod conntrack;
mod down;
mod drops;
mod follow;
mod generate;
mod import;
mod list;
mod reload;
mod rollback_timer;
mod schema;
mod serve;
mod unblock;
mod up;
mod watch;
mod zero;

use std::io::Write as _;

use clap::{Args, Parser, Subcommand};
use firewall_user::{
    exit::ExitStatus,
    kernel::maps::Enforcement,
    log::Otherwise,
    ops::{Apply, confirm::Armed, lockout::SessionGuard, reload::Preview},
    view::versioned_json,
};

#[derive(Parser)]
#[command(
    name = "firewall",
    version,
    about = "A tight server firewall in XDP and TC, driven by one TOML policy"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy: exit 0, or 1 with FILE:LINE:COL: message. Under SSH, also
    /// refuse a policy that would cut this session off.
    Check(check::Check),
    /// Load the policy, attach XDP ingress and TC egress, pin, and exit with the filter in
    /// place; when a filter is up, replace its programs in place and apply the policy.
    Up(up::Up),
    /// Detach and unpin: the interface is as before `up`, the receive offloads the attach
    /// turned off (rx-lro, rx-gro-hw, and its lower devices' rx-lro) turned back on.
    Down(down::Down),
    /// Re-read the policy and change the live maps in place: no detach, flows and counters kept.
    Reload(reload::Reload),
    /// Keep the change an `up` or `reload --confirm` made: its rollback is called off.
    Confirm(confirm::Confirm),
    /// Add peers to a rule, live, and write them into the policy file.
    Allow(allow::Allow),
    /// Remove peers from a rule, live (their flows end), and from the policy file.
    Revoke(allow::Revoke),
    /// Block addresses or prefixes, live: their flows end, nothing passes to or from them.
    Block(block::Block),
    /// Lift blocks (each ADDR|CIDR as it was blocked).
    Unblock(unblock::Unblock),
    /// The blocked addresses, their counters and expiry.
    Blocklist(blocklist::Blocklist),
    /// Started by `--confirm`: rolls the change back unless confirmed in time.
    #[command(hide = true)]
    RollbackTimer(rollback_timer::RollbackTimer),
    /// Zero the packet and byte counters, as iptables -Z.
    Zero(zero::Zero),
    /// The tracked flows, as conntrack -L.
    Conntrack(conntrack::Conntrack),
    /// The chains with their rules and counters, like `iptables -nvL`.
    List(list::List),
    /// Stream sampled drop events, as iptables' LOG target writes them, until Ctrl-C.
    Drops(drops::Drops),
    /// Live per-rule packet and byte rates, busiest first, and the conntrack table's fill.
    Watch(watch::Watch),
    /// Serve the counters for Prometheus at http://ADDR:PORT/metrics and reload on SIGHUP,
    /// until SIGTERM or SIGINT (the filter stays up).
    Serve(serve::Serve),
    /// Turn an iptables-save dump into a policy, and list the lines it could not translate.
    Import(import::Import),
    /// With `[host] follow_addresses`, keep the filter to the interface's own addresses as
    /// they come and go (DHCP, a floating IP), until SIGTERM or SIGINT.
    Follow(follow::Follow),
    /// Write the man pages, or a shell's completions (the package ships both).
    Generate(generate::Generate),
    /// Print the policy file's JSON Schema, for editors (taplo, Even Better TOML).
    Schema(schema::Schema),
}

impl Cli {
    /// Whether the command only reports (reads the filter or a file, and prints): one
    /// whose reader goes (`firewall list | head`) may end at once, as any filter does.
    /// Those that change the filter, stream (`drops`, which turns its events off first),
    /// or run on (`serve`, `follow`, the rollback timer) are never cut short by it.
    pub fn only_reports(&self) -> bool {
        matches!(
            self.command,
            Command::Check(_)
                | Command::List(_)
                | Command::Conntrack(_)
                | Command::Blocklist(_)
                | Command::Import(_)
                | Command::Generate(_)
                | Command::Schema(_)
        )
    }

    /// How the command's events are logged (firewall_user::log): what its lines start
    /// with, and where they go without a journal. `serve`'s stderr is its log; the other
    /// commands say what they did on their own.
    pub fn log_as(&self) -> (&'static str, Otherwise) {
        match self.command {
            Command::Serve(_) => ("firewall serve", Otherwise::Stderr),
            _ => ("firewall", Otherwise::Quiet),
        }
    }

    /// Runs the command, and says how the process exits.
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let done = match self.command {
            Command::Check(args) => return args.run(),
            Command::Reload(args) => return args.run(),
            Command::Up(args) => args.run(),
            Command::Down(args) => args.run(),
            Command::Confirm(args) => args.run(),
            Command::Allow(args) => args.run(),
            Command::Revoke(args) => args.run(),
            Command::Block(args) => args.run(),
            Command::Unblock(args) => args.run(),
            Command::Blocklist(args) => args.run(),
            Command::RollbackTimer(args) => args.run(),
            Command::Zero(args) => args.run(),
            Command::Conntrack(args) => args.run(),
            Command::List(args) => args.run(),
            Command::Drops(args) => args.run(),
            Command::Watch(args) => args.run(),
            Command::Serve(args) => args.run(),
            Command::Import(args) => args.run(),
            Command::Follow(args) => args.run(),
            Command::Generate(args) => args.run(),
            Command::Schema(args) => args.run(),
        };
        done.map(|()| ExitStatus::Done)
    }
}

/// Prints what a change would do (`reload --dry-run`, `check --diff`), and says how the
/// process exits: [`ExitStatus::WouldChange`] when it would change anything. A reader gone
/// (`| head`) ends the printing, not the command; another failed write is its error.
fn print_preview(preview: &Preview, json: bool) -> Result<ExitStatus, StdoutError> {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        changed: bool,
        /// The lines the text form prints, for a report that shows them as they are.
        lines: Vec<String>,
        #[serde(flatten)]
        preview: &'a Preview,
    }
    let changed = preview.changes();
    let written = if json {
        report!("{}", versioned_json(&Report { changed, lines: preview.lines(), preview }))
    } else {
        let (iface, file) = (&preview.iface, preview.file.display());
        let change = if preview.filter_up {
            format!("reload of {file} on {iface}")
        } else {
            format!("no filter is up on {iface}: `up` of {file}")
        };
        // Buffered: a million peers replaced are two million lines, a write each through
        // `println!`.
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        print_preview_text(&mut out, preview, &change, changed)
            .and_then(|()| out.flush())
            .map_err(StdoutError)
    };
    match written {
        Err(StdoutError(e)) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(StdoutError(e)),
        _ => Ok(if changed { ExitStatus::WouldChange } else { ExitStatus::Done }),
    }
}

fn print_preview_text(
    out: &mut impl std::io::Write,
    preview: &Preview,
    change: &str,
    changed: bool,
) -> std::io::Result<()> {
    if changed {
        writeln!(out, "firewall: {change} would:")?;
        for line in preview.lines() {
            writeln!(out, "  {line}")?;
        }
    } else {
        writeln!(out, "firewall: {change} would change nothing")?;
    }
    let names = preview.name_lines();
    if !names.is_empty() {
        writeln!(out, "firewall: the names, asked now (`serve` follows them; no change of the policy's):")?;
        for line in names {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

/// `--json` on a command that changes something: one object with `schema_version` instead
/// of its line.
#[derive(Args)]
struct JsonFlag {
    /// One JSON object, with `schema_version`, for scripts.
    #[arg(long)]
    json: bool,
}

impl JsonFlag {
    /// Prints `line`, or with `--json` the `report`.
    fn print(&self, line: impl std::fmt::Display, report: &impl serde::Serialize) {
        if self.json {
            say!("{}", versioned_json(report));
        } else {
            say!("{line}");
        }
    }
}

/// `--json` on `conntrack` and `blocklist`, which printed a bare array before
/// `schema_version`: `--json=1` is one object with `schema_version` 1, and `--json` alone
/// still the array, for the scripts written for it, with a warning.
#[derive(Clone, Copy, clap::ValueEnum)]
enum JsonForm {
    /// The bare array of earlier versions (deprecated).
    #[value(name = "array")]
    Array,
    /// One object: `schema_version` 1, and the list under its name.
    #[value(name = "1")]
    V1,
}

impl JsonForm {
    /// Prints `items` in this form; `command` and `key` name them in the object and the warning.
    fn print(self, command: &str, key: &str, items: &impl serde::Serialize) -> anyhow::Result<()> {
        match self {
            JsonForm::Array => {
                eprintln!(
                    "firewall: warning: `{command} --json` prints a bare array, without schema_version; \
                     `--json=1` prints {{\"schema_version\": 1, \"{key}\": [...]}}, which `--json` will print in a later version"
                );
                report!("{}", serde_json::to_string(items)?)?;
            }
            JsonForm::V1 => report!("{}", versioned_json(&serde_json::json!({ key: items })))?,
        }
        Ok(())
    }
}

/// Which live filter a command acts on.
#[derive(Args)]
struct LiveFilter {
    /// The interface whose filter to act on (default: the only one up in this network
    /// namespace).
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
}

impl LiveFilter {
    fn open(&self) -> anyhow::Result<firewall_user::Filter> {
        Ok(firewall_user::Filter::open(self.iface.as_deref())?)
    }
}

/// How `up` and `reload` apply a policy.
#[derive(Args)]
struct ApplyArgs {
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

impl ApplyArgs {
    fn apply(&self) -> Apply {
        // The mode asked for, or `None` to keep the live filter's.
        let enforcement = match (self.audit, self.enforce) {
            (true, _) => Some(Enforcement::Audit),
            (_, true) => Some(Enforcement::Enforce),
            _ => None,
        };
        Apply { enforcement, confirm: self.confirm, session_guard: session_guard(self.force) }
    }
}

/// `--force` skips the check that the command does not cut off its own SSH session.
fn session_guard(force: bool) -> SessionGuard {
    if force { SessionGuard::Skip } else { SessionGuard::Check }
}

/// A line for each map a change resized to fit the policy (see `kernel::resize`).
fn report_resized(resized: &[firewall_user::kernel::resize::Resized]) {
    for r in resized {
        // The counters follow the blocks' slots; the other maps, the policy.
        let to_fit = if r.map == firewall_common::MAP_COUNTERS { "the blocks" } else { "the policy" };
        say!(
            "firewall: {} resized from {} to {} entries to fit {to_fit}; programs swapped in place, flows and counters kept",
            r.map,
            r.from,
            r.to
        );
    }
}

/// A warning on stderr for each name asked whose answer the administrator should know
/// of: none came, none has an address, or one has more than `[dns] max_addresses`.
fn report_names(names: &[firewall_user::names::Asked]) {
    use firewall_user::names::Answer;
    for asked in names {
        let name = &asked.name;
        let keeps = match asked.held {
            0 => "its rules admit no address by it".to_string(),
            1 => "it keeps the address it held".to_string(),
            n => format!("it keeps the {n} addresses it held"),
        };
        match &asked.answer {
            Answer::Failed(why) => {
                eprintln!("firewall: warning: {name}: no answer from the resolvers ({why}); {keeps}");
            }
            Answer::Addresses { addrs, .. } if addrs.is_empty() => {
                eprintln!("firewall: warning: {name} has no address, its resolvers say; {keeps}");
            }
            Answer::Addresses { .. } if asked.over_cap > 0 => eprintln!(
                "firewall: warning: {name} answered {} addresses more than [dns] max_addresses allows; it holds the first ones",
                asked.over_cap
            ),
            Answer::Addresses { .. } => {}
        }
    }
}

/// Says how to keep a change that `--confirm` armed.
fn report_armed(armed: Option<Armed>) {
    if let Some(Armed { pid, seconds }) = armed {
        say!(
            "firewall: run `firewall confirm` within {seconds} s to keep this; else it is rolled back (timer pid {pid})"
        );
    }
}

/// The filter's mode, as `up` and `reload` end their line with it.
fn audit_note(enforcement: Enforcement, separator: &str) -> String {
    if enforcement.is_audit() {
        format!("{separator} audit mode (nothing is dropped)")
    } else {
        String::new()
    }
}
