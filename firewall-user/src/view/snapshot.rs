//! One reading of a live filter's counters, for `list`, `watch` and `serve`: every
//! listing line with its packets and bytes, and how full the flow tables are.
use std::time::Instant;

use firewall_common::{Chain, Counter, FlowTable};

use crate::{
    compile::{ListChain, ListLine, listing},
    kernel::{
        maps::{LiveMaps, MapMemory, TableStats, pinned_memory},
        pins::{LiveState, Pins},
    },
    ops::{LiveError, Result},
    policy::Policy,
    view::blocklist::{self, BlockView, ListView},
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
    /// The established flow table (`CONNTRACK`): its entries (expired ones the kernel has
    /// not reused yet included), size and evictions.
    pub established: TableStats,
    /// The half-open flow table (`HALF_OPEN`), likewise.
    pub half_open: TableStats,
    /// The blocklist's live entries (their lines are in `chains` too).
    pub blocks: Vec<BlockView>,
    /// The named lists (their lines are in `chains` too).
    pub lists: Vec<ListView>,
    /// Audit mode: what the DROP lines count passed.
    pub audit: bool,
    /// Each map's memory, as the kernel accounts it.
    pub memory: MapMemory,
    /// The peers written as DNS names, and what each holds.
    pub names: Vec<super::names::NameView>,
    /// Why the programs judge nothing, if they do not: the interface is gone, or was
    /// removed and made again (the counters stand still then, and say nothing of it).
    pub detached: Option<String>,
}

impl Snapshot {
    /// Reads the live filter `pins` names.
    pub fn take(pins: &Pins) -> Result<Snapshot> {
        let (policy, state) = Self::policy_and_state(pins)?;
        let maps = LiveMaps::open(pins)?;
        let policy = maps.with_followed_addresses(policy).map_err(LiveError::from)?;
        let counters = maps.counters().map_err(LiveError::from)?;
        let established = maps.table_stats(FlowTable::Established)?;
        let half_open = maps.table_stats(FlowTable::HalfOpen)?;
        let mut chains = listing(&policy, &state.ids);
        let blocks = blocklist::views(&maps, &counters, &state.ids)?;
        let lists = blocklist::list_views(&maps, &counters);
        blocklist::insert_lines(&mut chains, &blocks, &lists);
        let audit = maps.enforcement().map_err(LiveError::from)?.is_audit();
        let memory = pinned_memory(&pins.dir)?;
        let detached = crate::kernel::filter::check_interface(pins).err().map(|e| e.to_string());
        let names = super::names::views(&policy, &crate::names::Names::load(pins), crate::unix_now());
        Ok(Snapshot {
            taken: Instant::now(),
            policy,
            state,
            chains,
            counters,
            established,
            half_open,
            blocks,
            lists,
            audit,
            memory,
            names,
            detached,
        })
    }

    /// The policy in force and the ids that number it. They are two files, and a command
    /// changing the filter meanwhile (`reload` in another process) writes the policy
    /// first: a policy read with the ids of the one before is read again.
    fn policy_and_state(pins: &Pins) -> Result<(Policy, LiveState)> {
        let mut attempts = 0;
        loop {
            let policy = pins.policy()?;
            let state = pins.live_state()?;
            attempts += 1;
            if state.ids.number(&policy) {
                return Ok((policy, state));
            }
            if attempts == 10 {
                return Err(LiveError::Pins(crate::kernel::pins::PinsError::BadState {
                    iface: pins.iface.clone(),
                    path: pins.state.clone(),
                    message: "the policy in force and its ids disagree".into(),
                }));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// A snapshot made of its parts, not read from a live filter (no flows, no blocks,
    /// enforcing, no memory read, attached): for tests of what reads snapshots.
    pub fn from_parts(policy: Policy, state: LiveState, counters: Vec<Counter>, taken: Instant) -> Snapshot {
        let chains = listing(&policy, &state.ids);
        let established =
            TableStats { capacity: u64::from(policy.conntrack.max_entries), ..TableStats::default() };
        let half_open =
            TableStats { capacity: u64::from(policy.conntrack.max_half_open), ..TableStats::default() };
        Snapshot {
            taken,
            policy,
            state,
            chains,
            counters,
            established,
            half_open,
            blocks: Vec::new(),
            lists: Vec::new(),
            audit: false,
            memory: MapMemory::default(),
            names: Vec::new(),
            detached: None,
        }
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

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Instant};

    use firewall_common::{Builtin, builtin_counter};

    use super::*;
    use crate::compile::Ids;

    #[test]
    fn every_line_comes_once_with_its_counter() {
        let text = "[host]\naddress = \"198.51.100.1\"\n[[rule]]\nname = \"web-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 80\npeers = \"any\"\n";
        let policy = crate::policy::parse(text, Path::new("p.toml")).unwrap();
        let ids = Ids::assign(&policy, &Ids::default());
        let mut counters = vec![Counter::default(); 1024];
        let policy_id = builtin_counter(Chain::Input, Builtin::Policy);
        counters[policy_id as usize] = Counter { packets: 7, bytes: 700 };
        let state = LiveState {
            policy_file: "p.toml".into(),
            ids,
            programs: 0,
            runtime_only: false,
            mode: None,
            applied_with: Default::default(),
            offloads_to_restore: Vec::new(),
        };
        let snapshot = Snapshot::from_parts(policy, state, counters, Instant::now());
        let chains = snapshot.chains.clone();
        let lines = snapshot.lines();
        assert_eq!(lines.len(), chains.iter().map(|c| c.lines.len()).sum::<usize>());
        let mut ids: Vec<u32> = lines.iter().map(|l| l.line.counter).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), lines.len(), "a counter listed twice");
        let policy_lines: Vec<&LineStats> = lines.iter().filter(|l| l.line.counter == policy_id).collect();
        assert_eq!(policy_lines.len(), 1);
        assert_eq!((policy_lines[0].line.kind.name(), policy_lines[0].counter.packets), ("policy", 7));
    }
}
