//! A policy compiled into what the maps must hold, and into the listing's lines.
//!
//! This is all the per-policy work; the kernel then does lookups only.
use std::time::Duration;

use firewall_common::{
    ALLOW_KEY_SERVICE_BITS, ALLOW_LIMITED, ANTISPOOF_COUNTER_BASE, AllowKey, AllowValue, Builtin,
    CONFIG_READY, Chain, Config, Direction, ICMP_ECHO_REQUEST, Line, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
    TokenBucket, builtin_counter, rule_counter,
};
use serde::Serialize;

use crate::policy::{Limit, Policy, Prefix, Service};

/// Everything the maps must hold for a policy.
#[derive(Debug, Default)]
pub struct MapPlan {
    pub config: Config,
    /// Single peer addresses: the hash map.
    pub allow_exact: Vec<(AllowKey, AllowValue)>,
    /// Prefixes and `any`: the LPM trie, with the key's prefix length.
    pub allow_prefix: Vec<(u32, AllowKey, AllowValue)>,
    /// (prefix, counter id).
    pub antispoof_sources: Vec<(Prefix, u32)>,
    pub antispoof_destinations: Vec<(Prefix, u32)>,
    /// (rule index, bucket) for every limited rule.
    pub token_buckets: Vec<(u32, TokenBucket)>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The map contents `policy` wants.
pub fn plan(policy: &Policy) -> MapPlan {
    let c = &policy.conntrack;
    let config = Config {
        address: policy.address.octets(),
        flags: CONFIG_READY,
        tcp_established_timeout_ns: nanos(c.tcp_established_timeout),
        tcp_fin_timeout_ns: nanos(c.tcp_fin_timeout),
        tcp_rst_timeout_ns: nanos(c.tcp_rst_timeout),
        udp_timeout_ns: nanos(c.udp_timeout),
        icmp_timeout_ns: nanos(c.icmp_timeout),
    };
    let mut plan = MapPlan {
        config,
        ..MapPlan::default()
    };
    for (index, rule) in policy.rules.iter().enumerate() {
        let index = index as u32;
        let value = AllowValue {
            rule: index,
            flags: if rule.limit.is_some() { ALLOW_LIMITED } else { 0 },
        };
        for service in &rule.services {
            for peer in &rule.peers {
                let key = AllowKey {
                    direction: rule.direction as u8,
                    protocol: service.protocol(),
                    port: service.key_port(),
                    peer: peer.addr.octets(),
                };
                if peer.len == 32 {
                    plan.allow_exact.push((key, value));
                } else {
                    plan.allow_prefix
                        .push((ALLOW_KEY_SERVICE_BITS + u32::from(peer.len), key, value));
                }
            }
        }
        if let Some(Limit { interval, burst, .. }) = rule.limit {
            let interval_ns = nanos(interval);
            plan.token_buckets.push((
                index,
                TokenBucket {
                    tat: 0,
                    interval_ns,
                    burst_ns: interval_ns * u64::from(burst),
                },
            ));
        }
    }
    let mut counter = ANTISPOOF_COUNTER_BASE;
    for prefix in &policy.antispoof_sources {
        plan.antispoof_sources.push((*prefix, counter));
        counter += 1;
    }
    for prefix in &policy.antispoof_destinations {
        plan.antispoof_destinations.push((*prefix, counter));
        counter += 1;
    }
    plan
}

/// One line of the listing, before counters are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListLine {
    /// The rule's name, or a built-in's (`antispoof`, `invalid…`, `non-ip`, `ipv6`, `policy`).
    pub name: String,
    pub target: &'static str,
    #[serde(rename = "protocol")]
    pub prot: &'static str,
    pub source: String,
    pub destination: String,
    /// iptables-style match text: `tcp dpt:122 state NEW,ESTABLISHED`.
    #[serde(rename = "match")]
    pub matches: String,
    #[serde(skip)]
    pub counter: u32,
}

/// A chain of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListChain {
    pub chain: Chain,
    pub lines: Vec<ListLine>,
}

pub fn chain_name(chain: Chain) -> &'static str {
    match chain {
        Chain::Input => "INPUT",
        Chain::Output => "OUTPUT",
        Chain::Forward => "FORWARD",
    }
}

const ANYWHERE: &str = "0.0.0.0/0";

fn proto_name(protocol: u8) -> &'static str {
    match protocol {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        _ => "all",
    }
}

fn peers_text(peers: &[Prefix]) -> String {
    match peers {
        [one] if one.len == 0 => ANYWHERE.into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
        [] => "-".into(),
    }
}

fn builtin(chain: Chain, line: Builtin, name: &str, target: &'static str, matches: &str) -> ListLine {
    ListLine {
        name: name.into(),
        target,
        prot: "all",
        source: ANYWHERE.into(),
        destination: ANYWHERE.into(),
        matches: matches.into(),
        counter: builtin_counter(chain, line),
    }
}

/// The listing's lines, in the order the programs apply them.
pub fn listing(policy: &Policy) -> Vec<ListChain> {
    let plan = plan(policy);
    let ours = policy.address.to_string();
    let mut input = vec![
        builtin(Chain::Input, Builtin::NonIp, "non-ip", "ACCEPT", "not IP (ARP…)"),
        builtin(Chain::Input, Builtin::Ipv6, "ipv6", "DROP", "IPv6 (no address6)"),
        builtin(
            Chain::Input,
            Builtin::Invalid,
            "invalid",
            "DROP",
            "state INVALID (malformed)",
        ),
    ];
    for (prefix, counter) in &plan.antispoof_sources {
        input.push(ListLine {
            name: "antispoof".into(),
            target: "DROP",
            prot: "all",
            source: prefix.to_string(),
            destination: ANYWHERE.into(),
            matches: String::new(),
            counter: *counter,
        });
    }
    for (prefix, counter) in &plan.antispoof_destinations {
        input.push(ListLine {
            name: "antispoof".into(),
            target: "DROP",
            prot: "all",
            source: ANYWHERE.into(),
            destination: prefix.to_string(),
            matches: String::new(),
            counter: *counter,
        });
    }
    let mut output = vec![
        builtin(Chain::Output, Builtin::NonIp, "non-ip", "ACCEPT", "not IP (ARP…)"),
        builtin(Chain::Output, Builtin::Ipv6, "ipv6", "DROP", "IPv6 (no address6)"),
        builtin(
            Chain::Output,
            Builtin::Invalid,
            "invalid",
            "DROP",
            "state INVALID (malformed)",
        ),
    ];
    output.push(ListLine {
        name: "antispoof-source".into(),
        target: "DROP",
        prot: "all",
        source: format!("!{ours}"),
        destination: ANYWHERE.into(),
        matches: "outbound spoofing".into(),
        counter: builtin_counter(Chain::Output, Builtin::SpoofedSource),
    });
    let mut forward = vec![builtin(
        Chain::Forward,
        Builtin::Invalid,
        "invalid",
        "DROP",
        "state INVALID (malformed)",
    )];
    for (chain, lines) in [
        (Chain::Input, &mut input),
        (Chain::Output, &mut output),
        (Chain::Forward, &mut forward),
    ] {
        lines.push(builtin(
            chain,
            Builtin::InvalidFragment,
            "invalid-fragment",
            "DROP",
            "fragment",
        ));
        lines.push(ListLine {
            prot: "tcp",
            ..builtin(
                chain,
                Builtin::InvalidTcpFlags,
                "invalid-tcp-flags",
                "DROP",
                "state INVALID (TCP flags)",
            )
        });
    }

    for (index, rule) in policy.rules.iter().enumerate() {
        let index = index as u32;
        let peers = peers_text(&rule.peers);
        let protocols: Vec<u8> = rule
            .services
            .iter()
            .map(Service::protocol)
            .fold(Vec::new(), |mut v, p| {
                if !v.contains(&p) {
                    v.push(p);
                }
                v
            });
        let prot = if protocols.len() == 1 {
            proto_name(protocols[0])
        } else {
            "all"
        };
        let service_text = |established: bool| -> String {
            let mut parts: Vec<String> = Vec::new();
            for p in &protocols {
                let ports: Vec<String> = rule
                    .services
                    .iter()
                    .filter(|s| s.protocol() == *p)
                    .map(|s| s.key_port().to_string())
                    .collect();
                // A returning packet carries the service port as its source port when the
                // flow was opened towards the service.
                let (one, many) = if established {
                    ("spt:", "sports")
                } else {
                    ("dpt:", "dports")
                };
                if *p == PROTO_ICMP {
                    // Only echo flows have returns: the replies.
                    let kind = if established {
                        "0".to_string()
                    } else {
                        ports.join(",")
                    };
                    parts.push(format!("icmptype {kind}"));
                } else if ports.len() == 1 {
                    parts.push(format!("{} {one}{}", proto_name(*p), ports[0]));
                } else {
                    parts.push(format!("{} multiport {many} {}", proto_name(*p), ports.join(",")));
                }
            }
            parts.join(" ")
        };
        let limit = rule
            .limit
            .map(|l| format!(" limit: avg {}/{} burst {}", l.count, l.unit, l.burst))
            .unwrap_or_default();
        let (new_src, new_dst) = match rule.direction {
            Direction::In => (peers.clone(), ours.clone()),
            Direction::Out => (ours.clone(), peers.clone()),
        };
        let new_line = ListLine {
            name: rule.name.clone(),
            target: "ACCEPT",
            prot,
            source: new_src.clone(),
            destination: new_dst.clone(),
            matches: format!("{} state NEW,ESTABLISHED{limit}", service_text(false)),
            counter: rule_counter(index, Line::New),
        };
        let established_line = ListLine {
            name: rule.name.clone(),
            target: "ACCEPT",
            prot,
            source: new_dst,
            destination: new_src,
            matches: format!("{} state ESTABLISHED", service_text(true)),
            counter: rule_counter(index, Line::Established),
        };
        // ICMP other than echo is stateless: such a rule has no returns to list.
        let has_returns = rule
            .services
            .iter()
            .any(|s| !matches!(s, Service::Icmp { kind } if *kind != ICMP_ECHO_REQUEST));
        let (own, other) = match rule.direction {
            Direction::In => (&mut input, &mut output),
            Direction::Out => (&mut output, &mut input),
        };
        own.push(new_line);
        if has_returns {
            other.push(established_line);
        }
    }
    let mut chains = Vec::new();
    for (chain, mut lines) in [
        (Chain::Input, input),
        (Chain::Output, output),
        (Chain::Forward, forward),
    ] {
        lines.push(builtin(chain, Builtin::Policy, "policy", "DROP", ""));
        chains.push(ListChain { chain, lines });
    }
    chains
}
