//! `firewall import DUMP [-o OUT]`
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
};

use clap::Args;
use firewall_user::{import, kernel::filter::every_interface_address};

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
    /// [host] address, OURIP (default: the one the dump's -d/-s name, else a guess: the
    /// address the interface has here, stated at the top of the policy).
    #[arg(long)]
    address: Option<Ipv4Addr>,
}

impl Import {
    pub fn run(self) -> anyhow::Result<()> {
        let existing = if self.force { import::Existing::Replace } else { import::Existing::Keep };
        if let Some(out) = &self.output {
            import::check_output(out, existing)?;
        }
        let input = import::read_input(&self.file, std::io::stdin().lock())?;
        // This machine's IPv4 addresses: the host address's guess where the dump names none.
        let interface_addresses = every_interface_address()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(on, addr)| match addr {
                IpAddr::V4(v4) => Some((on, v4)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let options = import::Options { iface: self.iface, address: self.address, interface_addresses };
        let translation = import::import(&input, &options).inspect_err(|err| {
            // The error says "listed above": the lines that gave no rule come first.
            if let import::ImportError::NothingUsable { translation } = err {
                print_findings(translation);
            }
        })?;
        print_findings(&translation);
        match &self.output {
            None => super::report_text(&translation.text)?,
            Some(out) => import::write(&translation, out, existing)?,
        }
        eprintln!("firewall: {}", translation.summary(self.output.as_deref()));
        Ok(())
    }
}

/// The findings on stderr, one a line, before the policy and its summary.
fn print_findings(translation: &import::Translation) {
    for finding in translation.findings() {
        eprintln!("{finding}");
    }
}
