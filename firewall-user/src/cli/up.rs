//! `firewall up --policy FILE`
use std::path::PathBuf;

use clap::Args;
use firewall_user::{
    kernel::attach::{Mode, XdpAttached, XdpHook},
    ops::up::{self, Fallback},
    view::versioned_json,
};

use super::{ApplyArgs, audit_note, report_armed};

#[derive(Args)]
pub struct Up {
    /// The policy file.
    #[arg(long, value_name = "FILE", required_unless_present = "in_force")]
    policy: Option<PathBuf>,
    /// Put the policy in force on --iface up again as it is (runtime-only changes, file
    /// and mode kept), with this version's programs swapped in place: what a package
    /// upgrade runs for each filter up.
    #[arg(long, requires = "iface", conflicts_with_all = ["policy", "fallback", "mode"])]
    in_force: bool,
    /// The interface (default: [host] interface in the policy).
    #[arg(long)]
    iface: Option<String>,
    /// How to attach XDP.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// If the policy fails to load or apply: change nothing, or put the last policy that
    /// applied cleanly on --iface in force (and fail all the same, naming the error).
    #[arg(long, value_enum, default_value_t = Fallback::None)]
    fallback: Fallback,
    #[command(flatten)]
    apply: ApplyArgs,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Up {
    pub fn run(self) -> anyhow::Result<()> {
        let up = match (&self.policy, self.iface.as_deref()) {
            (Some(policy), iface) => up::up(policy, iface, self.mode, self.apply.apply(), self.fallback)?,
            (None, Some(iface)) => up::again(iface, self.apply.apply())?,
            (None, None) => unreachable!("clap requires --policy, or --iface with --in-force"),
        };
        super::report_names(&up.names);
        // What a map made anew lost is a warning, whatever the output's form.
        for relaid in up.relaid.iter().filter(|r| r.lost.is_some()) {
            eprintln!("firewall: warning: {}", relaid.line());
        }
        if self.output.json {
            #[derive(serde::Serialize)]
            struct Upped<'a> {
                iface: &'a str,
                /// The policy file in force: the last good one when `up` fell back to it.
                file: std::path::PathBuf,
                /// A filter was up already, and its programs were replaced in place.
                replaced: bool,
                rules: usize,
                audit: bool,
                pinned_at: &'a std::path::Path,
                confirm_within_secs: Option<u64>,
                /// The maps resized to fit the policy (a filter up already).
                resized: &'a [firewall_user::kernel::resize::Resized],
                /// The maps another version made at another layout, made anew at this
                /// one's (a filter up already), and what each lost (null: nothing).
                relaid: &'a [firewall_user::kernel::relayout::Relaid],
                /// The filter pinned for the interface was on one since removed, and was
                /// put up afresh.
                severed: bool,
                /// The peers written as DNS names, each as its resolvers answered now.
                names: Vec<firewall_user::names::AskedReport>,
                /// The XDP hook a new filter is on, and why `--mode auto` chose generic
                /// where it did; null when the programs were replaced in place.
                xdp: Option<&'a XdpAttached>,
            }
            let file = match (&up.fell_back, &self.policy) {
                (Some(fell_back), _) => fell_back.last_good.clone(),
                (None, Some(policy)) => policy.clone(),
                (None, None) => up.pins.live_state()?.policy_file,
            };
            let upped = Upped {
                iface: &up.pins.iface,
                file,
                replaced: up.replaced,
                rules: up.rules,
                audit: up.enforcement.is_audit(),
                pinned_at: &up.pins.dir,
                confirm_within_secs: up.armed.as_ref().map(|armed| armed.seconds),
                resized: &up.resized,
                relaid: &up.relaid,
                severed: up.severed,
                names: up.names.iter().map(Into::into).collect(),
                xdp: up.xdp.as_ref(),
            };
            say!("{}", versioned_json(&upped));
        } else {
            say!(
                "firewall up on {}: {}, {} rules{}, pinned at {}",
                up.pins.iface,
                match &up.xdp {
                    None => "programs replaced in place".to_owned(),
                    Some(xdp) => attached_note(xdp),
                },
                up.rules,
                audit_note(up.enforcement, ","),
                up.pins.dir.display()
            );
            if up.severed {
                say!(
                    "firewall: the filter pinned for {} was on an interface since removed; it is on the new one now, its counters and tracked flows started anew",
                    up.pins.iface
                );
            }
            super::report_resized(&up.resized);
            for relaid in up.relaid.iter().filter(|r| r.lost.is_none()) {
                say!("firewall: {}", relaid.line());
            }
            report_armed(up.armed);
        }
        if let Some(fell_back) = up.fell_back {
            let cause = anyhow::Error::from(fell_back.cause);
            anyhow::bail!(
                "{cause:#}; in force instead: the last policy that applied cleanly, {}",
                fell_back.last_good.display()
            );
        }
        Ok(())
    }
}

/// `attached, native XDP` or `attached, generic XDP (why auto chose it)`.
fn attached_note(xdp: &XdpAttached) -> String {
    let hook = match xdp.hook {
        XdpHook::Native => "native",
        XdpHook::Generic => "generic",
    };
    match &xdp.why {
        Some(why) => format!("attached, {hook} XDP ({why})"),
        None => format!("attached, {hook} XDP"),
    }
}
