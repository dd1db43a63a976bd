//! `firewall check FILE`
use std::path::PathBuf;

use clap::Args;
use firewall_user::{
    kernel::filter::{if_index, interface_addresses},
    ops::lockout,
    policy::{self, Policy},
};

#[derive(Args)]
pub struct Check {
    /// The policy file.
    file: PathBuf,
    /// Skip the SSH session check.
    #[arg(long)]
    force: bool,
}

impl Check {
    pub fn run(self) -> anyhow::Result<()> {
        let policy = policy::load(&self.file)?;
        for warning in absent_addresses(&policy) {
            eprintln!("warning: {}: {warning}", self.file.display());
        }
        lockout::guard(&policy, None, super::session_guard(self.force))?;
        println!("{}: OK ({} rules)", self.file.display(), policy.rules.len());
        Ok(())
    }
}

/// What to warn of: each of the policy's addresses that its `[host] interface` does not
/// have now (packets to it would meet FORWARD's policy, and none could leave from it).
/// Nothing without an interface, nor for one this machine lacks: the policy may be
/// checked before it goes to the server it names.
fn absent_addresses(policy: &Policy) -> Vec<String> {
    let Some(iface) = policy.interface.as_deref().filter(|iface| if_index(iface).is_some()) else {
        return Vec::new();
    };
    let Some(present) = interface_addresses(iface) else {
        return Vec::new();
    };
    policy
        .host_addresses()
        .into_iter()
        .filter(|addr| !present.contains(addr))
        .map(|addr| {
            let key = if addr.is_ipv4() { "address" } else { "address6" };
            format!("[host] {key} {addr} is not on interface {iface} now")
        })
        .collect()
}
