//! Port ranges as the kernel looks them up: each (direction, tcp or udp) port space cut
//! into intervals at every edge of every range and every single port its rules name, so
//! that every port of an interval is admitted by the same rules. An interval is known by
//! its first port: a rule's allow-list entries name the first port of each interval it
//! covers (one for a single port, as before ranges), and `PORT_INTERVALS` maps every port
//! inside a range to the first port of its interval (see
//! `firewall_common::port_interval_slot`). So the kernel's cost is one array lookup,
//! whatever the number of ranges.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use firewall_common::{Direction, port_interval_slot};

use crate::policy::{Policy, Service};

/// The intervals of every port space the policy's rules name ports in.
#[derive(Debug, Default)]
pub struct PortIntervals {
    /// (direction, protocol) → the first port of every interval (a port after the last
    /// of a range or single port starts one; 65,536 is past every port).
    starts: HashMap<(u8, u8), BTreeSet<u32>>,
    /// (direction, protocol) → the ranges (first, last) rules name there.
    ranges: HashMap<(u8, u8), BTreeSet<(u16, u16)>>,
}

impl PortIntervals {
    pub fn of(policy: &Policy) -> PortIntervals {
        let mut intervals = PortIntervals::default();
        for rule in &policy.rules {
            for service in &rule.services {
                if matches!(service, Service::Icmp { .. }) {
                    continue;
                }
                let space = (rule.direction as u8, service.protocol());
                let (first, last) = service.span();
                let starts = intervals.starts.entry(space).or_default();
                starts.extend([u32::from(first), u32::from(last) + 1]);
                if first != last {
                    intervals.ranges.entry(space).or_default().insert((first, last));
                }
            }
        }
        intervals
    }

    /// The first port of each interval of `service`'s ports, travelling `direction`: the
    /// ports its allow-list entries name.
    pub fn firsts(&self, direction: Direction, service: &Service) -> Vec<u16> {
        let (first, last) = service.span();
        let starts = match self.starts.get(&(direction as u8, service.protocol())) {
            Some(starts) if first < last => starts,
            _ => return vec![first],
        };
        std::iter::once(first)
            .chain(starts.range(u32::from(first) + 1..=u32::from(last)).map(|&port| port as u16))
            .collect()
    }

    /// The first port of the interval `port` is in: itself but inside a range.
    fn first_of(&self, space: (u8, u8), port: u16) -> u16 {
        self.starts
            .get(&space)
            .and_then(|starts| starts.range(..=u32::from(port)).next_back())
            .map_or(port, |&start| start as u16)
    }

    /// `PORT_INTERVALS`' values that are not zero: each port inside a range, its distance to
    /// the first port of its interval, in its lane (the ports outside ranges are their
    /// intervals' first, or in no rule's).
    pub fn lanes(&self) -> BTreeMap<u32, u64> {
        let mut lanes = BTreeMap::new();
        for (&space, ranges) in &self.ranges {
            for &(first, last) in ranges {
                for port in first..=last {
                    let offset = u64::from(port - self.first_of(space, port));
                    let Some((index, shift)) = port_interval_slot(space.0, space.1, port) else {
                        continue;
                    };
                    if offset != 0 {
                        *lanes.entry(index).or_insert(0) |= offset << shift;
                    }
                }
            }
        }
        lanes
    }
}

/// The port the kernel looks `port` up by, as `lanes` map it (the programs' own rule,
/// for what user space asks of a plan).
pub fn first_port(lanes: &BTreeMap<u32, u64>, direction: u8, protocol: u8, port: u16) -> u16 {
    match port_interval_slot(direction, protocol, port) {
        Some((index, shift)) => port - lanes.get(&index).map_or(0, |value| (value >> shift) as u16),
        None => port,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use firewall_common::{PROTO_TCP, PROTO_UDP};

    use super::*;
    use crate::policy::parse;

    fn policy(rules: &[(&str, &str, &str)]) -> Policy {
        let mut text = "[host]\naddress = \"198.51.100.1\"\n".to_string();
        for (i, (name, direction, ports)) in rules.iter().enumerate() {
            text += &format!(
                "[[rule]]\nname = \"{name}\"\ndirection = \"{direction}\"\nprotocols = [\"tcp\"]\n{ports}\npeers = [\"192.0.2.{i}\"]\n"
            );
        }
        parse(&text, Path::new("p.toml")).unwrap()
    }

    #[test]
    fn every_edge_of_every_range_and_port_cuts_the_port_space() {
        let p = policy(&[
            ("a", "in", "ports = [22, \"1000-2000\"]"),
            ("b", "in", "ports = [1500, \"1800-3000\"]"),
        ]);
        let intervals = PortIntervals::of(&p);
        let lanes = intervals.lanes();
        let first = |port| first_port(&lanes, Direction::In as u8, PROTO_TCP, port);
        // [1000, 1499] [1500] [1501, 1799] [1800, 2000] [2001, 3000]
        for (port, wanted) in [
            (22, 22),
            (999, 999),
            (1000, 1000),
            (1499, 1000),
            (1500, 1500),
            (1501, 1501),
            (1799, 1501),
            (1800, 1800),
            (2000, 1800),
            (2001, 2001),
            (3000, 2001),
            (3001, 3001),
            (65535, 65535),
        ] {
            assert_eq!(first(port), wanted, "{port}");
        }
        // The other direction's and protocol's spaces stay as they are.
        assert_eq!(first_port(&lanes, Direction::Out as u8, PROTO_TCP, 1499), 1499);
        assert_eq!(first_port(&lanes, Direction::In as u8, PROTO_UDP, 1499), 1499);
        // Each rule names the first port of each interval it covers.
        let services = |rule: usize| p.rules[rule].services.clone();
        let firsts: Vec<Vec<u16>> = services(0).iter().map(|s| intervals.firsts(Direction::In, s)).collect();
        assert_eq!(firsts, vec![vec![22], vec![1000, 1500, 1501, 1800]]);
        let firsts: Vec<Vec<u16>> = services(1).iter().map(|s| intervals.firsts(Direction::In, s)).collect();
        assert_eq!(firsts, vec![vec![1500], vec![1800, 2001]]);
    }

    #[test]
    fn without_ranges_every_port_is_its_own() {
        let p = policy(&[("a", "in", "ports = [22, 80]"), ("b", "out", "port = 53")]);
        let intervals = PortIntervals::of(&p);
        assert!(intervals.lanes().is_empty());
        assert_eq!(intervals.firsts(Direction::In, &p.rules[0].services[1]), vec![80]);
        // The whole port space: its last port is its interval's first, the rest one interval.
        let p = policy(&[("a", "in", "port = \"1-65535\"")]);
        let lanes = PortIntervals::of(&p).lanes();
        assert_eq!(first_port(&lanes, Direction::In as u8, PROTO_TCP, 65535), 1);
        assert_eq!(first_port(&lanes, Direction::In as u8, PROTO_TCP, 1), 1);
    }
}
