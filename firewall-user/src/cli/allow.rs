//! `firewall allow RULE ADDR…` and `firewall revoke RULE ADDR…`
use clap::Args;
use firewall_user::ops::{
    lockout::SessionGuard,
    peers::{self, PeerChange, PeersChanged, Scope},
};

/// Where the change goes.
#[derive(Args)]
struct ScopeArgs {
    /// Change the live filter only, not the policy file (which a configuration manager may
    /// own): the next `reload` or `up` undoes it, and `reload --dry-run` shows it until then.
    #[arg(long)]
    runtime_only: bool,
}

impl ScopeArgs {
    fn scope(&self) -> Scope {
        if self.runtime_only { Scope::LiveOnly } else { Scope::LiveAndFile }
    }
}

#[derive(Args)]
pub struct Allow {
    rule: String,
    /// Addresses, CIDRs and DNS names (asked at once, then followed as the policy's are).
    #[arg(required = true, value_name = "ADDR")]
    addrs: Vec<String>,
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    scope: ScopeArgs,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Allow {
    pub fn run(self) -> anyhow::Result<()> {
        let wanted = peers::parse_peers(&self.addrs)?;
        let filter = self.filter.open()?;
        let scope = self.scope.scope();
        let done =
            peers::change_peers(&filter, &self.rule, &wanted, PeerChange::Allow, scope, SessionGuard::Check)?;
        super::report_names(&done.names);
        let words = ("allowed", "already allowed");
        report(&self.output, words, filter.iface(), &self.rule, &self.addrs, scope, &done);
        Ok(())
    }
}

#[derive(Args)]
pub struct Revoke {
    rule: String,
    #[arg(required = true, value_name = "ADDR")]
    addrs: Vec<String>,
    #[command(flatten)]
    filter: super::LiveFilter,
    /// Revoke even if it would cut off the SSH session this runs from.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    scope: ScopeArgs,
    #[command(flatten)]
    output: super::JsonFlag,
}

impl Revoke {
    pub fn run(self) -> anyhow::Result<()> {
        let wanted = peers::parse_peers(&self.addrs)?;
        let filter = self.filter.open()?;
        let guard = super::session_guard(self.force);
        let scope = self.scope.scope();
        let done = peers::change_peers(&filter, &self.rule, &wanted, PeerChange::Revoke, scope, guard)?;
        report(&self.output, ("revoked", ""), filter.iface(), &self.rule, &self.addrs, scope, &done);
        Ok(())
    }
}

/// What `allow` and `revoke --json` print.
#[derive(serde::Serialize)]
struct PeersReport<'a> {
    iface: &'a str,
    rule: &'a str,
    /// The addresses that changed: none when each was already as asked.
    changed: Vec<String>,
    /// The policy file, changed too unless `live_only`.
    file: &'a std::path::Path,
    live_only: bool,
    /// The maps resized to hold the change: none unless one had to grow or shrink.
    resized: &'a [firewall_user::kernel::resize::Resized],
}

fn report(
    output: &super::JsonFlag,
    words: (&str, &str),
    iface: &str,
    rule: &str,
    addrs: &[String],
    scope: Scope,
    done: &PeersChanged,
) {
    let (done_word, noop_word) = words;
    let changed: Vec<String> = done.changed.iter().map(ToString::to_string).collect();
    let line = if changed.is_empty() {
        format!("firewall: {} {noop_word} in rule {rule}; nothing changed", addrs.join(" "))
    } else {
        match scope {
            Scope::LiveAndFile => format!(
                "firewall: {done_word} {} in rule {rule}, live and in {}",
                changed.join(" "),
                done.file.display()
            ),
            Scope::LiveOnly => format!(
                "firewall: {done_word} {} in rule {rule}, live only: the next reload of {} undoes it",
                changed.join(" "),
                done.file.display()
            ),
        }
    };
    let live_only = scope == Scope::LiveOnly;
    output.print(
        line,
        &PeersReport { iface, rule, changed, file: &done.file, live_only, resized: &done.resized },
    );
    if !output.json {
        super::report_resized(&done.resized);
    }
}
