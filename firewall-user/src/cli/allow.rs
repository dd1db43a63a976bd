//! `firewall allow RULE ADDR…` and `firewall revoke RULE ADDR…`
use clap::Args;
use firewall_user::ops::{
    lockout::SessionGuard,
    peers::{self, PeerChange, PeersChanged},
};

#[derive(Args)]
pub struct Allow {
    rule: String,
    #[arg(required = true, value_name = "ADDR")]
    addrs: Vec<String>,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Allow {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = peers::parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        let done =
            peers::change_peers(&filter, &self.rule, &prefixes, PeerChange::Allow, SessionGuard::Check)?;
        report("allowed", "already allowed", &self.rule, &self.addrs, &done);
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
}

impl Revoke {
    pub fn run(self) -> anyhow::Result<()> {
        let prefixes = peers::parse_prefixes(&self.addrs)?;
        let filter = self.filter.open()?;
        let guard = super::session_guard(self.force);
        let done = peers::change_peers(&filter, &self.rule, &prefixes, PeerChange::Revoke, guard)?;
        report("revoked", "", &self.rule, &self.addrs, &done);
        Ok(())
    }
}

fn report(done_word: &str, noop_word: &str, rule: &str, addrs: &[String], done: &PeersChanged) {
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
