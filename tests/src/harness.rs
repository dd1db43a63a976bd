//! The real programs, loaded with a real policy, judging frames through
//! BPF_PROG_TEST_RUN: no interface, no traffic, the kernel's verdict.
use aya::{
    maps::{HashMap, MapData},
    programs::{TestRun, TestRunOptions},
};
use firewall_common::{
    Builtin, Chain, Counter, FragmentKey, FragmentedDatagram, Line, MAP_FRAGMENTS, builtin_counter,
    rule_counter,
};
use firewall_user::{
    compile::Ids,
    kernel::{clock::Clock, load::Loaded},
    policy::Policy,
};

use crate::require_root;

/// The kernel's accounting of a map's memory (`memlock` in its fdinfo), in bytes: what
/// `firewall list --json` and `serve` report (`firewall_user::kernel::maps::memlock`).
pub fn memlock(map: &MapData) -> u64 {
    firewall_user::kernel::maps::memlock(map).expect("memlock in fdinfo")
}

/// The memory of each map a live filter pinned under `pin_dir`, as the kernel accounts it.
pub fn pinned_memlock(pin_dir: &std::path::Path) -> Vec<(&'static str, u64)> {
    let memory = firewall_user::kernel::maps::pinned_memory(pin_dir)
        .unwrap_or_else(|e| panic!("the maps pinned in {}: {e}", pin_dir.display()));
    assert_eq!(memory.0.len(), firewall_common::MAPS.len(), "every map is pinned: {memory:?}");
    memory.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

pub struct TestFilter {
    pub loaded: Loaded,
    pub policy: Policy,
    pub ids: Ids,
}

impl TestFilter {
    /// Loads the programs with a policy given as TOML text (maps not pinned).
    pub fn new(policy_toml: &str) -> TestFilter {
        TestFilter::reading(Clock::of_this_kernel(), policy_toml)
    }

    /// As [`TestFilter::new`], the programs reading the time as `clock` says.
    pub fn reading(clock: Clock, policy_toml: &str) -> TestFilter {
        require_root();
        let policy = firewall_user::policy::parse(policy_toml, std::path::Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("test policy: {e}"));
        let (loaded, ids) = Loaded::with_policy_reading(clock, &policy)
            .unwrap_or_else(|e| panic!("loading the programs, {clock:?}: {e}"));
        TestFilter { loaded, policy, ids }
    }

    /// Applies `policy` to the loaded maps as `reload` does: the rules' and entries' ids
    /// kept where they stay, new counters zeroed.
    pub fn reload(&mut self, policy: Policy) {
        let ids = Ids::assign(&policy, &self.ids);
        let fresh = ids.new_counters(&self.ids);
        let plan = firewall_user::compile::plan(&policy, &ids);
        self.loaded.maps.apply(&plan, &fresh, None).expect("reloading");
        (self.ids, self.policy) = (ids, policy);
    }

    /// Loads the programs with a policy given as TOML text whose peers written as DNS
    /// names hold `held`, as `firewall_user::names::fold` gives them to their rules.
    pub fn with_names(
        policy_toml: &str,
        held: &std::collections::BTreeMap<String, Vec<std::net::IpAddr>>,
    ) -> TestFilter {
        require_root();
        let policy = firewall_user::policy::parse(policy_toml, std::path::Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("test policy: {e}"));
        let policy = firewall_user::names::fold(policy, held);
        let (loaded, ids) =
            Loaded::with_policy(&policy).unwrap_or_else(|e| panic!("loading the programs: {e}"));
        TestFilter { loaded, policy, ids }
    }

    /// `examples/tight.toml`, the seed's policy.
    pub fn tight() -> TestFilter {
        let text = std::fs::read_to_string(crate::workspace().join("examples/tight.toml"))
            .expect("examples/tight.toml");
        TestFilter::new(&text)
    }

    /// The XDP program's verdict on a received frame.
    pub fn ingress(&mut self, frame: &[u8]) -> Verdict {
        let xdp = self.loaded.ingress().expect("ingress program");
        let result = xdp
            .test_run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (XDP) of a {}-byte frame: {e:?}", frame.len()));
        match result.return_value {
            2 => Verdict::Pass, // XDP_PASS
            1 => Verdict::Drop, // XDP_DROP
            other => panic!("unexpected XDP verdict {other}"),
        }
    }

    /// The TC egress program's verdict on a sent frame.
    pub fn egress(&mut self, frame: &[u8]) -> Verdict {
        let tc = self.loaded.egress().expect("egress program");
        let result = tc
            .test_run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (TC) of a {}-byte frame: {e:?}", frame.len()));
        match result.return_value {
            0 => Verdict::Pass, // TC_ACT_OK
            2 => Verdict::Drop, // TC_ACT_SHOT
            other => panic!("unexpected TC verdict {other}"),
        }
    }

    /// A counter summed over the CPUs.
    pub fn counter(&mut self, id: u32) -> Counter {
        let counters = self.loaded.maps.counters().expect("reading the counters");
        counters[id as usize]
    }

    pub fn packets(&mut self, id: u32) -> u64 {
        self.counter(id).packets
    }

    /// The index of the rule called `name`.
    pub fn rule(&self, name: &str) -> u32 {
        self.policy.rules.iter().position(|r| r.name == name).unwrap_or_else(|| panic!("no rule {name}"))
            as u32
    }

    /// Packets counted on a rule's line.
    pub fn rule_packets(&mut self, name: &str, line: Line) -> u64 {
        let id = rule_counter(self.rule(name), line);
        self.packets(id)
    }

    /// Packets counted on a chain's built-in line.
    pub fn builtin_packets(&mut self, chain: Chain, line: Builtin) -> u64 {
        self.packets(builtin_counter(chain, line))
    }
}

impl TestFilter {
    /// The XDP verdict, or the test runner's refusal (it refuses frames shorter than an
    /// Ethernet header).
    pub fn try_ingress(&mut self, frame: &[u8]) -> Result<Verdict, aya::programs::ProgramError> {
        let xdp = self.loaded.ingress().expect("ingress program");
        let result = xdp.test_run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() })?;
        Ok(if result.return_value == 2 { Verdict::Pass } else { Verdict::Drop })
    }
}

impl TestFilter {
    /// The TC verdict, or the test runner's refusal (the skb runner refuses frames too
    /// short for the headers their ethertype announces).
    pub fn try_egress(&mut self, frame: &[u8]) -> Result<Verdict, aya::programs::ProgramError> {
        let tc = self.loaded.egress().expect("egress program");
        let result = tc.test_run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() })?;
        Ok(if result.return_value == 0 { Verdict::Pass } else { Verdict::Drop })
    }

    /// One counter summed over the CPUs: one map lookup, where [`TestFilter::counter`]
    /// reads the whole array.
    pub fn counter_of(&self, id: u32) -> Counter {
        let values = self.loaded.maps.counters.get(&id, 0).expect("reading a counter");
        values.iter().fold(Counter::default(), |sum, c| Counter {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
        })
    }

    /// The datagrams whose first fragment passed (`FRAGMENTS`: no command reads it, so it
    /// is not among the live maps).
    pub fn fragments(&mut self) -> HashMap<&mut MapData, FragmentKey, FragmentedDatagram> {
        let map = self.loaded.ebpf.map_mut(MAP_FRAGMENTS).expect("the fragments map");
        HashMap::try_from(map).expect("the fragments map's types")
    }

    /// Back to the state of a freshly loaded filter, without reloading it: no tracked
    /// flow in either table, every token bucket full, every source's too, no source's
    /// connections remembered. Counters are kept, and so are the tables' counts (user
    /// space's removals counted as such, so evictions stay 0). The blocklist is the
    /// caller's.
    pub fn reset_state(&mut self) {
        let mut fragments = self.fragments();
        let keys: Vec<FragmentKey> = fragments.keys().filter_map(Result::ok).collect();
        for key in keys {
            fragments.remove(&key).expect("forgetting a fragmented datagram");
        }
        let maps = &mut self.loaded.maps;
        maps.end_flows(|_| true).expect("removing the flows");
        let limited = self.policy.rules.iter().filter(|r| r.limit.is_some()).map(|r| self.ids.rule(&r.name));
        for rule in limited {
            let bucket = maps.token_buckets.get(&rule, 0).expect("reading a token bucket");
            if bucket.tat != 0 {
                let full = firewall_common::TokenBucket { tat: 0, ..bucket };
                maps.token_buckets.set(rule, full, 0).expect("refilling a token bucket");
            }
        }
        // Every source's bucket full again: forgotten.
        let buckets = maps.per_source_buckets.as_mut().expect("this version's maps");
        let sources: Vec<firewall_common::SourceKey> = buckets.keys().filter_map(Result::ok).collect();
        for source in sources {
            let _ = buckets.remove(&source);
        }
        // And no source's connections remembered.
        let connections = maps.per_source_connections.as_mut().expect("this version's maps");
        let sources: Vec<firewall_common::SourceKey> = connections.keys().filter_map(Result::ok).collect();
        for source in sources {
            let _ = connections.remove(&source);
        }
    }
}
