//! `firewall`: the tight iptables policy, enforced by XDP and TC programs. This file only
//! dispatches: each command is a file in `cli/`, over the `firewall_user` library.
mod cli;

use std::process::ExitCode;

use clap::Parser as _;
use firewall_user::{
    exit::{ExitStatus, exit_status},
    log::Event,
};

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // One line, as every other error: clap's first, without its "error: ", and the
            // indented lines right under it (the arguments missing, the values possible).
            let text = err.render().to_string();
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default();
            let mut line = first.strip_prefix("error: ").unwrap_or(first).to_owned();
            let details: Vec<&str> =
                lines.take_while(|l| l.starts_with("  ")).map(str::trim).filter(|l| !l.is_empty()).collect();
            if !details.is_empty() {
                line = format!("{} {}", line, details.join(", "));
            }
            eprintln!("firewall: {line} (see firewall --help)");
            return ExitStatus::Usage.into();
        }
    };
    // A report whose reader has gone ends by SIGPIPE, quietly, as `ls | head` does, not
    // with a panic at its next line (Rust ignores the signal, and `println!` panics on
    // the error the write gets instead).
    if cli.only_reports() {
        // SAFETY: restores the signal's default disposition, before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let (prefix, otherwise) = cli.log_as();
    firewall_user::log::init(prefix, otherwise);
    // The command as typed (`reload`, `block`, …), for the log.
    let command = std::env::args().nth(1).unwrap_or_default();
    match cli.run() {
        Ok(status) => status.into(),
        Err(err) => {
            // One line: the error and its causes.
            let message = firewall_user::one_line(err.as_ref());
            eprintln!("firewall: {message}");
            let status = exit_status(err.as_ref());
            if status == ExitStatus::WouldCutOff {
                Event::SshGuard { command: &command, message: &message }.log();
            }
            status.into()
        }
    }
}
