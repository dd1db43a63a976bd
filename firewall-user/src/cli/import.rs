//! `firewall import DUMP [-o OUT]`
use std::{net::Ipv4Addr, path::PathBuf};

use clap::Args;
use firewall_user::import;

#[derive(Args)]
pub struct Import {
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
}

impl Import {
    pub fn run(self) -> anyhow::Result<()> {
        let existing = if self.force { import::Existing::Replace } else { import::Existing::Keep };
        let options = import::Options { iface: self.iface, address: self.address };
        import::run(&self.file, self.output.as_deref(), existing, &options)?;
        Ok(())
    }
}
