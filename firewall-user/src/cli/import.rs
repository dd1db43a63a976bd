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
        if let Some(out) = &self.output {
            import::check_output(out, existing)?;
        }
        let input = import::read_input(&self.file, std::io::stdin().lock())?;
        let options = import::Options { iface: self.iface, address: self.address };
        let translation = import::import(&input, &options).inspect_err(|err| {
            // The error says "listed above": the lines that gave no rule come first.
            if let import::ImportError::NothingUsable { translation } = err {
                print_findings(translation);
            }
        })?;
        print_findings(&translation);
        match &self.output {
            None => print!("{}", translation.text),
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
