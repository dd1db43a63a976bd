//! `firewall drops [--rate N]`
use std::{
    io::Write as _,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Context as _;
use clap::Args;
use firewall_user::view::drops;

#[derive(Args)]
pub struct Drops {
    /// The most events a second, enforced in the kernel (bursts of as many).
    #[arg(long, default_value = "10", value_parser = drops::parse_rate)]
    rate: u32,
    #[command(flatten)]
    filter: super::LiveFilter,
}

impl Drops {
    /// Each event on a line of its own, flushed, until SIGINT or SIGTERM, or until its
    /// reader goes.
    pub fn run(self) -> anyhow::Result<()> {
        let filter = self.filter.open()?;
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.clone()).context("catching SIGINT and SIGTERM")?;
        }
        let follow = drops::Follow::start(&filter, self.rate)?;
        eprintln!("firewall: drop events on {}, at most {} a second; Ctrl-C ends", filter.iface(), self.rate);
        let mut out = std::io::stdout().lock();
        // A reader gone (`| head`) ends the stream as Ctrl-C does: the events turned off.
        follow.run(&stop, |line| {
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })?;
        Ok(())
    }
}
