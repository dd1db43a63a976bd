//! One reading of a live filter's counters, for `list`, `watch` and `serve`: every
//! listing line with its packets and bytes, and how full the conntrack table is.
use std::time::Instant;

use firewall_common::{Chain, Counter};

use crate::{
    compile::{ListChain, ListLine, listing},
    live::{LiveError, Result},
    maps::LiveMaps,
    pins::{LiveState, Pins},
    policy::Policy,
};

/// A listing line and its counter at the time of the snapshot.
#[derive(Clone, Debug)]
pub struct LineStats {
    pub chain: Chain,
    pub line: ListLine,
    pub counter: Counter,
}

/// What one reading of the maps shows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken: Instant,
    pub policy: Policy,
    /// The policy file and the ids the maps use: what names each counter.
    pub state: LiveState,
    /// The chains as `list` shows them.
    pub chains: Vec<ListChain>,
    /// Counters by id, summed over the CPUs.
    pub counters: Vec<Counter>,
    /// Flows in the conntrack table (expired ones the kernel has not reused yet included).
    pub conntrack_entries: u64,
    /// The table's size (`[conntrack] max_entries`).
    pub conntrack_capacity: u64,
}

impl Snapshot {
    /// Reads the live filter `pins` names.
    pub fn take(pins: &Pins) -> Result<Snapshot> {
        let policy = pins.policy()?;
        let state = pins.live_state()?;
        let maps = LiveMaps::open(pins)?;
        let counters = maps.counters().map_err(LiveError::from)?;
        let conntrack_entries = maps.conntrack_entries();
        let chains = listing(&policy, &state.ids);
        let conntrack_capacity = u64::from(policy.conntrack.max_entries);
        Ok(Snapshot {
            taken: Instant::now(),
            policy,
            state,
            chains,
            counters,
            conntrack_entries,
            conntrack_capacity,
        })
    }

    fn counter(&self, id: u32) -> Counter {
        self.counters.get(id as usize).copied().unwrap_or_default()
    }

    /// Every line of every chain, in the listing's order; each chain's DROP policy is its
    /// last line (`list` shows it in the chain's heading too).
    pub fn lines(&self) -> Vec<LineStats> {
        self.chains
            .iter()
            .flat_map(|chain| {
                chain.lines.iter().map(|line| LineStats {
                    chain: chain.chain,
                    line: line.clone(),
                    counter: self.counter(line.counter),
                })
            })
            .collect()
    }
}
