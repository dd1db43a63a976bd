//! `firewall check FILE`
use std::path::PathBuf;

use clap::Args;
use firewall_user::{ops::lockout, policy};

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
        lockout::guard(&policy, None, super::session_guard(self.force))?;
        println!("{}: OK ({} rules)", self.file.display(), policy.rules.len());
        Ok(())
    }
}
