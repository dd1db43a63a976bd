//! `zero`: the packet and byte counters back to zero, as `iptables -Z`.
use crate::{
    kernel::{Filter, maps::LiveMaps},
    ops::Result,
};

/// Zeroes every counter, as `iptables -Z`.
pub fn zero(filter: &Filter) -> Result<()> {
    let lock = filter.lock()?;
    LiveMaps::open(lock.pins())?.zero()?;
    Ok(())
}
