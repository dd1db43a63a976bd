//! `firewall generate man --out DIR` and `firewall generate completions SHELL`: what the
//! package ships (`cargo xtask dist`), made from this command line so that it cannot
//! drift from it.
use std::{fs, path::PathBuf};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Subcommand};
use clap_complete::Shell;

#[derive(Args)]
pub struct Generate {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The man pages: firewall(8), and firewall-COMMAND(8) for each command.
    Man {
        /// The directory to write them in (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// A shell's completion script, on stdout.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// Admin commands: section 8, as iptables(8) and nft(8).
const SECTION: &str = "8";

impl Generate {
    pub fn run(self) -> anyhow::Result<()> {
        let mut command = super::Cli::command();
        command.build();
        match self.what {
            What::Man { out } => {
                fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;
                // Once built, a command's display name is `firewall-up`, the page's title.
                let subcommands =
                    command.get_subcommands().filter(|sub| !sub.is_hide_set() && sub.get_name() != "help");
                for page in std::iter::once(&command).chain(subcommands) {
                    let man = clap_mangen::Man::new(page.clone()).section(SECTION);
                    let path = out.join(man.get_filename());
                    let mut text = Vec::new();
                    man.render(&mut text)?;
                    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                    report!("{}", path.display())?;
                }
            }
            What::Completions { shell } => {
                // Into memory first: clap_complete panics on a write that fails.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut command, "firewall", &mut script);
                super::report_text(&String::from_utf8_lossy(&script))?;
            }
        }
        Ok(())
    }
}
