//! The peers written as DNS names, as `list`, `list --json`, `watch` and the metrics show
//! them: what each holds now, since when, and how its resolvers answer.
use std::net::IpAddr;

use serde::Serialize;

use super::blocklist::human_duration;
use crate::{
    names::{NameRecord, Names},
    policy::Policy,
};

/// One name of the policy in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameView {
    pub name: String,
    /// The rules that list it.
    pub rules: Vec<String>,
    /// The addresses it holds now.
    pub addresses: Vec<NameAddress>,
    /// Seconds since its last answer; `None`: it never had one.
    pub answered_secs_ago: Option<u64>,
    /// That answer's TTL.
    pub ttl_secs: u32,
    /// Seconds until it is asked again (0: due).
    pub next_secs: u64,
    /// Why its resolvers fail, while they do: it keeps what it held.
    pub failure: Option<String>,
    /// For how long they have failed.
    pub failing_secs: Option<u64>,
    /// How many addresses its last answer had beyond `[dns] max_addresses`.
    pub over_cap: usize,
}

/// An address a name holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameAddress {
    pub addr: IpAddr,
    /// Seconds the name has held it.
    pub age_secs: u64,
    /// Whether its last answer has it; if not, it stays for `[dns] grace` (one learned, for
    /// its answer's TTL and the grace):
    pub answered: bool,
    /// Whether it was learned from an answer the host's resolvers sent it (`[dns] learn`).
    pub learned: bool,
    /// seconds more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaves_in_secs: Option<u64>,
}

/// The names of `policy`, each as `record` knows it at `now` (Unix seconds).
pub fn views(policy: &Policy, record: &Names, now: u64) -> Vec<NameView> {
    let empty = NameRecord::default();
    policy
        .names()
        .into_iter()
        .map(|name| {
            let r = record.names.get(name).unwrap_or(&empty);
            let rules = policy
                .rules
                .iter()
                .filter(|rule| rule.names.iter().any(|n| n.name == name))
                .map(|rule| rule.name.clone())
                .collect();
            let addresses = r
                .held(now)
                .map(|a| {
                    let answered = r.answered(a);
                    NameAddress {
                        addr: a.addr,
                        age_secs: now.saturating_sub(a.since),
                        answered,
                        learned: a.learned,
                        leaves_in_secs: (!answered).then(|| a.until.saturating_sub(now)),
                    }
                })
                .collect();
            NameView {
                name: name.to_owned(),
                rules,
                addresses,
                answered_secs_ago: r.answered_at.map(|at| now.saturating_sub(at)),
                ttl_secs: r.ttl,
                next_secs: r.due_at.saturating_sub(now),
                failure: r.failure.clone(),
                failing_secs: r.failing_since.map(|since| now.saturating_sub(since)),
                over_cap: r.over_cap,
            }
        })
        .collect()
}

/// `list`'s line for a name: `name svc.example.org (rule web): 203.0.113.7 for 2m,
/// 203.0.113.8 for 40s leaving in 59m, 203.0.113.9 for 5s learned leaving in 1h; TTL 60s,
/// answered 3s ago`.
pub fn line(view: &NameView) -> String {
    let rules = match view.rules.as_slice() {
        [one] => format!("rule {one}"),
        many => format!("rules {}", many.join(", ")),
    };
    let addresses = if view.addresses.is_empty() {
        "no address".to_string()
    } else {
        let each = view.addresses.iter().map(|a| {
            let mut text = format!("{} for {}", a.addr, human_duration(a.age_secs));
            if a.learned {
                text.push_str(" learned");
            }
            if let Some(left) = a.leaves_in_secs {
                text.push_str(&format!(" leaving in {}", human_duration(left)));
            }
            text
        });
        each.collect::<Vec<_>>().join(", ")
    };
    let mut text = format!("name {} ({rules}): {addresses}", view.name);
    match view.answered_secs_ago {
        Some(ago) => {
            text.push_str(&format!("; TTL {}s, answered {} ago", view.ttl_secs, human_duration(ago)));
        }
        None => text.push_str("; never answered"),
    }
    if let (Some(why), Some(secs)) = (&view.failure, view.failing_secs) {
        text.push_str(&format!("; no answer for {} ({why}), what it held kept", human_duration(secs)));
    }
    if view.over_cap > 0 {
        text.push_str(&format!("; {} more over [dns] max_addresses", view.over_cap));
    }
    text
}
