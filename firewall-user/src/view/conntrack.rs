//! `conntrack`: the tracked flows of both tables, as `conntrack -L` lists them.
use std::{collections::HashMap, net::IpAddr};

use firewall_common::{
    Direction, Flow, FlowKey, FlowTable, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, TCP_FIN_SEEN, TCP_OPEN,
    TCP_SYN_RECV, TCP_SYN_SENT, protocol_name,
};
use serde::Serialize;

use crate::{
    kernel::{
        Filter,
        filter::kernel_time_ns,
        maps::{LiveMaps, dedup_flows},
        pins::LiveState,
    },
    ops::Result,
    policy::from_addr,
};

/// One tracked flow, as `firewall conntrack` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowView {
    pub protocol: &'static str,
    pub state: &'static str,
    /// `established` (heard both ways) or `half_open`.
    pub table: &'static str,
    /// The opening packet's source and destination.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports, or for ICMP echo 0 and the echo id.
    pub sport: u16,
    pub dport: u16,
    /// The rule that admitted it.
    pub rule: String,
    pub age_secs: u64,
    /// Seconds left before it expires unless a packet refreshes it.
    pub expires_secs: u64,
}

/// The live flows of both tables, oldest first, as `conntrack -L` lists them.
pub fn conntrack(filter: &Filter) -> Result<Vec<FlowView>> {
    filter.check_interface()?;
    let pins = filter.pins();
    let maps = LiveMaps::open(pins)?;
    let mut flows = maps.flows();
    dedup_flows(&mut flows);
    views(&maps, &pins.live_state()?, flows)
}

/// `flows` as `conntrack` shows them, those expired left out, oldest first.
pub(crate) fn views(
    maps: &LiveMaps,
    state: &LiveState,
    flows: Vec<(FlowTable, FlowKey, Flow)>,
) -> Result<Vec<FlowView>> {
    let config = maps.config()?;
    let ours = (from_addr(&config.address), from_addr(&config.address6));
    let now = kernel_time_ns();
    let names: HashMap<u32, &str> = state.ids.rules.iter().map(|(name, id)| (*id, name.as_str())).collect();
    let mut views: Vec<FlowView> = flows
        .into_iter()
        .filter_map(|(table, key, flow)| {
            let age = now.saturating_sub(flow.last_seen_ns);
            // The programs' own timeout, from the live configuration.
            let timeout = config.timeout_ns(key.protocol, flow.tcp_state);
            (age <= timeout).then(|| view(table, &key, &flow, ours, &names, age, timeout))
        })
        .collect();
    views.sort_by(|a, b| b.age_secs.cmp(&a.age_secs).then(a.rule.cmp(&b.rule)));
    Ok(views)
}

fn view(
    table: FlowTable,
    key: &FlowKey,
    flow: &Flow,
    ours: (IpAddr, IpAddr),
    names: &HashMap<u32, &str>,
    age: u64,
    timeout: u64,
) -> FlowView {
    let peer = from_addr(&key.peer);
    let ours = if peer.is_ipv6() { ours.1 } else { ours.0 };
    let opened_in = flow.origin == Direction::In as u8;
    let (src, dst, sport, dport) = match (opened_in, key.protocol) {
        // An echo flow: no ports, its identifier (its peer_port says which way it goes).
        (true, PROTO_ICMP | PROTO_ICMPV6) => (peer, ours, 0, key.local_port),
        (false, PROTO_ICMP | PROTO_ICMPV6) => (ours, peer, 0, key.local_port),
        (true, _) => (peer, ours, key.peer_port, key.local_port),
        (false, _) => (ours, peer, key.local_port, key.peer_port),
    };
    let half_open = table == FlowTable::HalfOpen;
    let protocol = protocol_name(key.protocol).unwrap_or("?");
    // conntrack -L's names; a flow answered by neither end yet is UNREPLIED.
    let state = match (key.protocol, flow.tcp_state) {
        (PROTO_TCP, TCP_OPEN) => "ESTABLISHED",
        (PROTO_TCP, TCP_SYN_SENT) => "SYN_SENT",
        (PROTO_TCP, TCP_SYN_RECV) => "SYN_RECV",
        (PROTO_TCP, TCP_FIN_SEEN) => "FIN_WAIT",
        (PROTO_TCP, _) => "CLOSE",
        _ if half_open => "UNREPLIED",
        _ => "ESTABLISHED",
    };
    FlowView {
        protocol,
        state,
        table: if half_open { "half_open" } else { "established" },
        src,
        dst,
        sport,
        dport,
        rule: names.get(&u32::from(flow.rule)).map_or_else(|| format!("#{}", flow.rule), |n| (*n).to_owned()),
        age_secs: age / 1_000_000_000,
        expires_secs: (timeout - age) / 1_000_000_000,
    }
}

/// `conntrack -L`'s layout.
pub fn render_flows(flows: &[FlowView]) -> String {
    let mut out = String::new();
    for f in flows {
        let ports = if f.protocol == "icmp" {
            format!("type=8 id={}", f.dport)
        } else if f.protocol == "icmpv6" {
            format!("type=128 id={}", f.dport)
        } else {
            format!("sport={} dport={}", f.sport, f.dport)
        };
        // conntrack -L marks the flows it will not evict before others: heard both ways.
        let assured = if f.table == "established" { " [ASSURED]" } else { "" };
        out.push_str(&format!(
            "{:<4} {:<11} src={} dst={} {ports} rule={} age={}s expires={}s{assured}\n",
            f.protocol, f.state, f.src, f.dst, f.rule, f.age_secs, f.expires_secs
        ));
    }
    out.push_str(&format!("firewall conntrack: {} flow entries have been shown.\n", flows.len()));
    out
}
