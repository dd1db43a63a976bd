//! One reading of a live filter's counters, for `list`, `watch` and `serve`: every
//! listing line with its packets and bytes, and how full the conntrack table is.
use std::time::Instant;

use firewall_common::{Builtin, Chain, Counter, builtin_counter};

use crate::{
    compile::{ANYWHERE, ListChain, ListLine, listing},
    live::{LiveError, Result},
    maps::LiveMaps,
    pins::Pins,
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
        Ok(Snapshot { taken: Instant::now(), policy, chains, counters, conntrack_entries, conntrack_capacity })
    }

    fn counter(&self, id: u32) -> Counter {
        self.counters.get(id as usize).copied().unwrap_or_default()
    }

    /// Every line of every chain, in the listing's order, each chain's DROP policy last
    /// (`list` shows it in the chain's heading).
    pub fn lines(&self) -> Vec<LineStats> {
        let mut out = Vec::new();
        for chain in &self.chains {
            for line in &chain.lines {
                out.push(LineStats { chain: chain.chain, line: line.clone(), counter: self.counter(line.counter) });
            }
            let id = builtin_counter(chain.chain, Builtin::Policy);
            let policy = ListLine {
                name: "policy".into(),
                target: "DROP",
                prot: "all",
                source: ANYWHERE.into(),
                destination: ANYWHERE.into(),
                matches: "chain policy".into(),
                counter: id,
            };
            out.push(LineStats { chain: chain.chain, line: policy, counter: self.counter(id) });
        }
        out
    }
}
