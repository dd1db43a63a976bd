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
    #[arg(required = true, value_name = "ADDR")]
    addrs: Vec<String>,
    #[command(flatten)]
    filter: super::LiveFilter,
    #[command(flatten)]
    scope: ScopeArgs,
}

impl Allow {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = peers::parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        let scope = self.scope.scope();
        let done = peers::change_peers(
            &filter,
            &self.rule,
            &prefixes,
            PeerChange::Allow,
            scope,
            SessionGuard::Check,
        )?;
        report("allowed", "already allowed", &self.rule, &self.addrs, scope, &done);
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
}

impl Revoke {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = peers::parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        let guard = super::session_guard(self.force);
        let scope = self.scope.scope();
        let done = peers::change_peers(&filter, &self.rule, &prefixes, PeerChange::Revoke, scope, guard)?;
        report("revoked", "", &self.rule, &self.addrs, scope, &done);
        Ok(())
    }
}

fn report(done_word: &str, noop_word: &str, rule: &str, addrs: &[String], scope: Scope, done: &PeersChanged) {
    if done.changed.is_empty() {
        println!("firewall: {} {noop_word} in rule {rule}; nothing changed", addrs.join(" "));
        return;
    }
    let changed: Vec<String> = done.changed.iter().map(ToString::to_string).collect();
    match scope {
        Scope::LiveAndFile => {
            println!(
                "firewall: {done_word} {} in rule {rule}, live and in {}",
                changed.join(" "),
                done.file.display()
            );
        }
        Scope::LiveOnly => println!(
            "firewall: {done_word} {} in rule {rule}, live only: the next reload of {} undoes it",
            changed.join(" "),
            done.file.display()
        ),
    }
}
