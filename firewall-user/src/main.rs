//! `firewall`: the tight iptables policy, enforced by XDP and TC programs. This file only
//! dispatches: each command is a file in `cli/`, over the `firewall_user` library.
mod cli;

use std::process::ExitCode;

use clap::Parser as _;
use firewall_user::exit::{ExitStatus, exit_status};

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // One line, as every other error: clap's first, without its "error: ".
            let text = err.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("firewall: {} (see firewall --help)", first.strip_prefix("error: ").unwrap_or(first));
            return ExitStatus::Usage.into();
        }
    };
    match cli.run() {
        Ok(status) => status.into(),
        Err(err) => {
            // One line: the error and its causes.
            eprintln!("firewall: {}", firewall_user::one_line(err.as_ref()));
            exit_status(err.as_ref()).into()
        }
    }
}
