//! Peers by DNS name: a rule's `peers` may hold names beside addresses, and the live maps
//! follow what the names resolve to.
//!
//! A name is asked of the host's resolvers (`/etc/resolv.conf`) when the policy is put in
//! force (`up`, `reload`), and again by `firewall serve` as each answer's TTL runs out.
//! What is known of each name is kept in the state directory ([`Names`], `names.json`):
//! the addresses its answers held, since when, and when each was last in an answer. A
//! name holds ([`Names::held`]) the addresses of its last answer, and for `[dns] grace`
//! those that left it, so that open flows and the answers programs cached keep working;
//! when its resolvers fail, it keeps what it held. The policy in force is then applied
//! with each name's addresses as peers of its rules ([`fold`]), as `reload` applies it:
//! new addresses go into the maps before old ones leave.
//!
//! # Layout
//!
//! - this file: the record of each name, what it holds at a time, and the rules given
//!   their names' addresses;
//! - `resolve`: the names asked, all at once, of the host's resolvers (hickory-resolver),
//!   with their answers' TTLs;
//! - `learn`: `[dns] learn`, what an answer the filter held for `serve` says of the
//!   names (the host's own resolvers answered one of its programs), and its frame made
//!   ready to hand back.
mod learn;
mod resolve;

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use self::{
    learn::{Checksum, Learned, check_checksum, names_resolver, read as read_answer},
    resolve::{Answer, ask as ask_async, resolve},
};
use crate::{
    files::{self, Perms},
    kernel::{
        Filter,
        maps::Applied,
        pins::{Pins, PinsError, StateLock},
    },
    ops::{LiveError, lockout::SessionGuard, reload},
    policy::{Claims, Dns, Policy, Prefix},
};

/// The record of the names, in the state directory.
const NAMES_FILE: &str = "names.json";

/// The soonest a name is asked again after an answer, whatever its TTL (a TTL of 0 would
/// have it asked without end), and the latest (a name from /etc/hosts never expires).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
pub const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// After its resolvers failed, a name is asked again this soon (sooner if its TTL was).
pub const RETRY: Duration = Duration::from_secs(10);

/// What is known of each name, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub names: BTreeMap<String, NameRecord>,
    /// The `[dns] grace` its deadlines were set with, in seconds (`None`: a record an
    /// earlier version wrote, or none yet).
    #[serde(default)]
    pub grace: Option<u64>,
}

/// What is known of one name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    /// The addresses it holds or held, sorted.
    pub addresses: Vec<HeldAddress>,
    /// When its last answer came (Unix seconds); `None`: it never had one.
    pub answered_at: Option<u64>,
    /// The last answer's TTL, in seconds.
    pub ttl: u32,
    /// When it is to be asked again (Unix seconds).
    pub due_at: u64,
    /// Why its resolvers failed, while they fail.
    pub failure: Option<String>,
    /// Since when they fail (Unix seconds).
    pub failing_since: Option<u64>,
    /// How many addresses its last answer had beyond `[dns] max_addresses`.
    pub over_cap: usize,
}

/// An address of a name's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAddress {
    pub addr: IpAddr,
    /// Since when the name holds it (Unix seconds): its first answer with it since it
    /// last held it.
    pub since: u64,
    /// When it was last in an answer (Unix seconds).
    pub answered_at: u64,
    /// Whether the name's last answer has it (seconds cannot tell: two answers may come
    /// in one).
    pub in_answer: bool,
    /// Out of the answers, until when it is held: the first answer without it and
    /// `[dns] grace`, as the policy said then (0 while answers have it); for one learned,
    /// its answer's TTL and the grace.
    pub until: u64,
    /// Whether it was learned from an answer the host's resolvers sent it (`[dns] learn`),
    /// and not in the name's own answer since.
    #[serde(default)]
    pub learned: bool,
}

impl NameRecord {
    /// After an answer: forgets the addresses held no longer, then, past the cap, those
    /// heard of longest ago (of two heard of at once, the one out of the name's answer);
    /// how what it holds changed from `before`.
    fn keep(&mut self, before: &[IpAddr], now: u64, dns: &Dns) -> Change {
        self.addresses.retain(|a| a.in_answer || now < a.until);
        self.addresses.sort_by_key(|a| std::cmp::Reverse((a.answered_at, a.in_answer, a.until)));
        self.addresses.truncate(dns.max_addresses);
        self.addresses.sort_by_key(|a| a.addr);
        let after: Vec<IpAddr> = self.held(now).map(|a| a.addr).collect();
        Change {
            added: after.iter().filter(|a| !before.contains(a)).copied().collect(),
            removed: before.iter().filter(|a| !after.contains(a)).copied().collect(),
        }
    }

    /// Whether `held` is in the name's last answer.
    pub fn answered(&self, held: &HeldAddress) -> bool {
        held.in_answer
    }

    /// The addresses the name holds at `now`: those of its last answer, and those that
    /// left it less than `[dns] grace` ago.
    pub fn held(&self, now: u64) -> impl Iterator<Item = &HeldAddress> {
        self.addresses.iter().filter(move |a| self.answered(a) || now < a.until)
    }
}

/// How a name's addresses changed with an answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// In the answer, and held before by none.
    pub added: Vec<IpAddr>,
    /// Held no longer: out of the answers for `grace`, or over the cap.
    pub removed: Vec<IpAddr>,
}

impl Names {
    /// The record in `pins`' state directory; empty when there is none.
    pub fn load(pins: &Pins) -> Names {
        let path = Self::path(pins);
        // A record that cannot be read is asked again: it holds nothing a new answer
        // does not give.
        std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    /// Replaces the record in the state directory of the filter `lock` is for.
    pub fn save(&self, lock: &StateLock) -> Result<(), PinsError> {
        let json = serde_json::to_vec_pretty(self).expect("plain data");
        Ok(files::replace(&Self::path(lock.pins()), &json, Perms::Private)?)
    }

    fn path(pins: &Pins) -> PathBuf {
        pins.state.join(NAMES_FILE)
    }

    /// Records what `name`'s resolvers answered at `now`.
    pub fn record(&mut self, name: &str, answer: &Answer, now: u64, dns: &Dns) -> Change {
        let record = self.names.entry(name.to_owned()).or_default();
        let before: Vec<IpAddr> = record.held(now).map(|a| a.addr).collect();
        let grace = dns.grace.as_secs();
        match answer {
            Answer::Failed(why) => {
                record.failure = Some(why.clone());
                record.failing_since.get_or_insert(now);
                let retry = match record.ttl {
                    0 => RETRY,
                    ttl => RETRY.min(Duration::from_secs(u64::from(ttl))).max(MIN_REFRESH),
                };
                record.due_at = now + retry.as_secs();
                // What it held, it keeps: its last answer's addresses stay answered.
            }
            Answer::Addresses { addrs, ttl } => {
                record.failure = None;
                record.failing_since = None;
                record.answered_at = Some(now);
                record.ttl = *ttl;
                let refresh = Duration::from_secs(u64::from(*ttl)).clamp(MIN_REFRESH, MAX_REFRESH);
                record.due_at = now + refresh.as_secs();
                // The first `max_addresses` of the answer, in its order.
                let mut answered: Vec<IpAddr> = Vec::with_capacity(addrs.len());
                for addr in addrs {
                    if !answered.contains(addr) {
                        answered.push(*addr);
                    }
                }
                record.over_cap = answered.len().saturating_sub(dns.max_addresses);
                answered.truncate(dns.max_addresses);
                for held in &mut record.addresses {
                    if answered.contains(&held.addr) {
                        // Back after its grace: held anew.
                        if !held.in_answer && now >= held.until {
                            held.since = now;
                        }
                        held.answered_at = now;
                        held.in_answer = true;
                        held.learned = false;
                        held.until = 0;
                    } else if held.in_answer {
                        // It leaves now: held for the grace the policy gives now.
                        held.until = now.saturating_add(grace);
                        held.in_answer = false;
                    }
                }
                for addr in answered {
                    if !record.addresses.iter().any(|a| a.addr == addr) {
                        let held = HeldAddress {
                            addr,
                            since: now,
                            answered_at: now,
                            in_answer: true,
                            until: 0,
                            learned: false,
                        };
                        record.addresses.push(held);
                    }
                }
            }
        }
        record.keep(&before, now, dns)
    }

    /// Records what the host's own resolvers answered one of its programs for `name` at
    /// `now` (`[dns] learn`): `addrs`, valid for `ttl` seconds. Each is held until the
    /// answer expires and `[dns] grace` after, as one that left the name's answer is: a
    /// CDN answers each client its own, so `serve`'s asking may never give it. The
    /// name's own answer, and when it is asked again, stay as they were.
    pub fn learn(&mut self, name: &str, addrs: &[IpAddr], ttl: u32, now: u64, dns: &Dns) -> Change {
        let record = self.names.entry(name.to_owned()).or_default();
        let before: Vec<IpAddr> = record.held(now).map(|a| a.addr).collect();
        let until = now.saturating_add(u64::from(ttl)).saturating_add(dns.grace.as_secs());
        let mut learned: Vec<IpAddr> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if !learned.contains(addr) && learned.len() < dns.max_addresses {
                learned.push(*addr);
            }
        }
        for addr in learned {
            match record.addresses.iter_mut().find(|a| a.addr == addr) {
                Some(held) => {
                    if !held.in_answer && now >= held.until {
                        held.since = now;
                    }
                    held.answered_at = now;
                    if !held.in_answer {
                        held.until = held.until.max(until);
                        held.learned = true;
                    }
                }
                None => record.addresses.push(HeldAddress {
                    addr,
                    since: now,
                    answered_at: now,
                    in_answer: false,
                    until,
                    learned: true,
                }),
            }
        }
        record.keep(&before, now, dns)
    }

    /// What each of `names` holds at `now` (sorted); a name never answered holds nothing.
    pub fn held(&self, names: &[&str], now: u64) -> BTreeMap<String, Vec<IpAddr>> {
        names
            .iter()
            .map(|name| {
                let held = self.names.get(*name).map(|r| r.held(now).map(|a| a.addr).collect());
                ((*name).to_owned(), held.unwrap_or_default())
            })
            .collect()
    }

    /// `name`, just recorded with `answer` and `change`, as an [`Asked`].
    fn asked(&self, name: String, answer: Answer, change: Change, now: u64) -> Asked {
        let of = &self.names[&name];
        Asked { held: of.held(now).count(), over_cap: of.over_cap, name, answer, change }
    }

    /// Has the deadlines of the addresses out of their names' answers follow `grace`
    /// (seconds), the policy's now: a reload that changes `[dns] grace` changes it for the
    /// addresses leaving already too, not only for those that leave after.
    pub fn regrace(&mut self, grace: u64) {
        if let Some(old) = self.grace
            && old != grace
        {
            for held in self.names.values_mut().flat_map(|r| r.addresses.iter_mut()) {
                if !held.in_answer {
                    held.until = held.until.saturating_sub(old).saturating_add(grace);
                }
            }
        }
        self.grace = Some(grace);
    }

    /// Forgets the addresses held no longer at `now`: out of the answers past their grace.
    pub fn prune(&mut self, now: u64) {
        for record in self.names.values_mut() {
            record.addresses.retain(|a| a.in_answer || now < a.until);
        }
    }

    /// Forgets the names not in `names`.
    pub fn retain(&mut self, names: &[&str]) {
        self.names.retain(|name, _| names.contains(&name.as_str()));
    }

    /// The names of `names` due to be asked at `now` (never asked: due).
    pub fn due<'a>(&self, names: &[&'a str], now: u64) -> Vec<&'a str> {
        names.iter().copied().filter(|n| self.names.get(*n).is_none_or(|r| r.due_at <= now)).collect()
    }

    /// When something of `names` next changes by itself: one is due, or an address's
    /// grace ends (Unix seconds); `None` for no names.
    pub fn next_event(&self, names: &[&str]) -> Option<u64> {
        names
            .iter()
            .map(|name| match self.names.get(*name) {
                None => 0,
                Some(r) => {
                    let leaving = r.addresses.iter().filter(|a| !r.answered(a)).map(|a| a.until);
                    leaving.chain([r.due_at]).min().unwrap_or(r.due_at)
                }
            })
            .min()
    }
}

/// `policy` with each name of its rules given the addresses `held` has for it, as peers
/// of the rule: only those the rule can use (IPv6 only with `address6`, and not for an
/// ICMP type ICMPv6 lacks; never an unspecified address, which some resolvers answer for
/// a name they block), and only those whose allow-list entries no rule has yet. Written
/// addresses claim first, then names rule by rule: an address that an earlier rule
/// admits for the same port stays that rule's, as the first match is in iptables.
pub fn fold(mut policy: Policy, held: &BTreeMap<String, Vec<IpAddr>>) -> Policy {
    if policy.rules.iter().all(|r| r.names.is_empty()) {
        return policy;
    }
    let ipv6 = policy.address6.is_some();
    let mut claims = Claims::of(&policy.rules);
    let rules = std::mem::take(&mut policy.rules);
    policy.rules = rules
        .into_iter()
        .enumerate()
        .map(|(index, mut rule)| {
            let icmp_without_v6 = rule.services.iter().any(|s| match s {
                crate::policy::Service::Icmp { kind } => firewall_common::icmpv6_equivalent(*kind).is_none(),
                _ => false,
            });
            let mut names = std::mem::take(&mut rule.names);
            for name in &mut names {
                name.addresses.clear();
                for &addr in held.get(&name.name).map_or(&[][..], Vec::as_slice) {
                    let usable = !addr.is_unspecified() && (addr.is_ipv4() || (ipv6 && !icmp_without_v6));
                    let peer = Prefix::host(addr);
                    if usable && claims.claim(index, &rule, peer).is_ok() {
                        name.addresses.push(peer);
                    }
                }
            }
            rule.names = names;
            rule
        })
        .collect();
    policy.resolved = Some(held.clone());
    policy
}

/// Whether a change asks the names' resolvers before it applies a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asking {
    /// Every name asked now: `up`, `reload`.
    Now,
    /// The names as the filter's record has them: `follow`, a rollback, and `serve`,
    /// which asks each name as its TTL runs out and records the answer first.
    Recorded,
}

/// A name asked: what its resolvers said, and how its addresses changed.
#[derive(Clone, Debug)]
pub struct Asked {
    pub name: String,
    pub answer: Answer,
    pub change: Change,
    /// The addresses it holds now.
    pub held: usize,
    /// How many addresses its answer had beyond `[dns] max_addresses`.
    pub over_cap: usize,
}

/// A name asked, as `up --json`, `reload --json` and `reload --dry-run --json` tell it.
#[derive(Clone, Debug, Serialize)]
pub struct AskedReport {
    pub name: String,
    /// Whether its resolvers answered (an answer of no address is one).
    pub answered: bool,
    /// Why they did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The addresses it holds now.
    pub held: usize,
    /// Held now and not before, and the reverse.
    pub added: Vec<IpAddr>,
    pub removed: Vec<IpAddr>,
    /// How many addresses its answer had beyond `[dns] max_addresses`.
    pub over_cap: usize,
}

impl From<&Asked> for AskedReport {
    fn from(a: &Asked) -> AskedReport {
        AskedReport {
            name: a.name.clone(),
            answered: matches!(a.answer, Answer::Addresses { .. }),
            failure: match &a.answer {
                Answer::Failed(why) => Some(why.clone()),
                Answer::Addresses { .. } => None,
            },
            held: a.held,
            added: a.change.added.clone(),
            removed: a.change.removed.clone(),
            over_cap: a.over_cap,
        }
    }
}

impl AskedReport {
    /// `reload --dry-run`'s line for it, if what it holds would change or its resolvers fail.
    pub fn preview_line(&self) -> Option<String> {
        let list = |addrs: &[IpAddr]| addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("admit {}", list(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!("stop admitting {}", list(&self.removed)));
        }
        if let Some(why) = &self.failure {
            parts.push(format!("no answer ({why}), what it holds kept"));
        }
        (!parts.is_empty()).then(|| format!("name {}: {}", self.name, parts.join("; ")))
    }
}

/// What each name of `policy` would hold were it asked now, and how that would change
/// it, for `reload --dry-run` and `check --diff`: the names asked, their answers recorded
/// in a copy of the record of the filter `pins` names (none: nothing held yet), which is
/// left as it was.
pub fn ask_for_preview(
    pins: &Pins,
    policy: &Policy,
    now: u64,
) -> (BTreeMap<String, Vec<IpAddr>>, Vec<Asked>) {
    let names = policy.names();
    if names.is_empty() {
        return (BTreeMap::new(), Vec::new());
    }
    let mut record = Names::load(pins);
    record.retain(&names);
    record.regrace(policy.dns.grace.as_secs());
    record.prune(now);
    let asked = resolve(&names)
        .into_iter()
        .map(|(name, answer)| {
            let change = record.record(&name, &answer, now, &policy.dns);
            record.asked(name, answer, change, now)
        })
        .collect();
    (record.held(&names, now), asked)
}

/// Asks for `names` (of `policy`) now, and records the answers in the record of the
/// filter `lock` is for; the names `policy` has no longer are forgotten.
pub fn ask(lock: &StateLock, policy: &Policy, names: &[&str], now: u64) -> Result<Vec<Asked>, PinsError> {
    let answers = if names.is_empty() { Vec::new() } else { resolve(names) };
    record_heard(lock, policy, Heard::Asked(answers), now)
}

/// What was heard of the names.
#[derive(Clone, Debug)]
pub enum Heard {
    /// The answers to asking them (see [`resolve`]): those due, in `serve`.
    Asked(Vec<(String, Answer)>),
    /// The answers the host's resolvers sent its programs, held by the filter for
    /// `serve` (`[dns] learn`); each from a resolver the policy names teaches the names
    /// of the policy's it answers.
    Learned(Vec<Learned>),
}

/// Records what was `heard` in the record of the filter `lock` is for, with `policy`'s
/// `[dns]`; the names `policy` has no longer are forgotten. A learned answer is told as
/// an [`Asked`] for each of the policy's names it answers.
pub fn record_heard(
    lock: &StateLock,
    policy: &Policy,
    heard: Heard,
    now: u64,
) -> Result<Vec<Asked>, PinsError> {
    let names = policy.names();
    let mut record = Names::load(lock.pins());
    let before = record.clone();
    record.retain(&names);
    record.regrace(policy.dns.grace.as_secs());
    record.prune(now);
    let answers: Vec<(String, Answer, Change)> = match heard {
        Heard::Asked(answers) => answers
            .into_iter()
            .map(|(name, answer)| {
                let change = record.record(&name, &answer, now, &policy.dns);
                (name, answer, change)
            })
            .collect(),
        Heard::Learned(learned) => learned
            .into_iter()
            .filter(|l| names_resolver(policy, l.server))
            .flat_map(|l| {
                let watched: Vec<String> =
                    l.names.into_iter().filter(|n| names.contains(&n.as_str())).collect();
                watched.into_iter().map(move |name| (name, l.addrs.clone(), l.ttl))
            })
            .map(|(name, addrs, ttl)| {
                let change = record.learn(&name, &addrs, ttl, now, &policy.dns);
                (name, Answer::Addresses { addrs, ttl }, change)
            })
            .collect(),
    };
    let asked =
        answers.into_iter().map(|(name, answer, change)| record.asked(name, answer, change, now)).collect();
    if record != before {
        record.save(lock)?;
    }
    Ok(asked)
}

/// Records what was `heard` (the answers of the names that were due, none when only an
/// address's grace ended; or what the filter held) for the filter on `filter`, then, if
/// what the policy in force's names hold now differs from what the maps hold, applies that
/// policy again as `reload` applies it: new addresses in before old ones out, flows and
/// counters kept. What `serve` does each time a name's TTL runs out, and with each answer
/// the filter holds for it. The maps' changes, if they changed.
pub fn settle(filter: &Filter, heard: Heard, now: u64) -> Result<(Vec<Asked>, Option<Applied>), LiveError> {
    let lock = filter.lock()?;
    let pins = lock.pins();
    let policy = pins.policy()?;
    let asked = record_heard(&lock, &policy, heard, now)?;
    let state = pins.live_state()?;
    let held = Names::load(pins).held(&policy.names(), now);
    if state.applied_with.names.as_ref() == Some(&held) {
        return Ok((asked, None));
    }
    let text = pins.policy_text()?;
    let done =
        reload::reload_text(&lock, &text, &state.policy_file, None, SessionGuard::Skip, Asking::Recorded)?;
    Ok((asked, Some(done.applied)))
}

/// With peers written as DNS names, a warning for each resolver of /etc/resolv.conf
/// that `policy` lets no query out to (UDP port 53: every name would fail), or one when
/// the file names none. A resolver on loopback (systemd-resolved's 127.0.0.53) is not
/// the filter's to judge: its own upstream servers are, and the file does not name them.
pub fn resolver_warnings(policy: &Policy) -> Vec<String> {
    if policy.names().is_empty() {
        return Vec::new();
    }
    let servers = match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => config.name_servers().iter().map(|s| s.ip).collect::<Vec<IpAddr>>(),
        Err(err) => {
            return vec![format!(
                "the rules name peers by DNS name, and /etc/resolv.conf cannot be read ({}): every name would fail",
                crate::one_line(&err)
            )];
        }
    };
    let plan =
        crate::compile::plan(policy, &crate::compile::Ids::assign(policy, &crate::compile::Ids::default()));
    let mut servers: Vec<IpAddr> = servers.into_iter().filter(|s| !s.is_loopback()).collect();
    servers.dedup();
    servers
        .into_iter()
        .filter(|server| {
            let key = firewall_common::AllowKey {
                direction: firewall_common::Direction::Out as u8,
                protocol: firewall_common::PROTO_UDP,
                port: 53,
                peer: crate::policy::to_addr(*server),
            };
            plan.admits(&key).is_none() || (server.is_ipv6() && policy.address6.is_none())
        })
        .map(|server| {
            format!(
                "the rules name peers by DNS name, and no rule lets a query out to the resolver {server} (/etc/resolv.conf): add it to an outbound rule for udp and tcp port 53, or its names fail"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: fn(u8) -> IpAddr = |n| IpAddr::from([192, 0, 2, n]);

    fn answer(addrs: &[u8], ttl: u32) -> Answer {
        Answer::Addresses { addrs: addrs.iter().map(|n| V4(*n)).collect(), ttl }
    }

    fn held(names: &Names, now: u64) -> Vec<IpAddr> {
        names.held(&["a.example"], now)["a.example"].clone()
    }

    #[test]
    fn an_address_out_of_the_answer_is_held_for_the_grace_then_dropped() {
        let dns = Dns { grace: Duration::from_secs(60), max_addresses: 8, learn: true };
        let mut names = Names::default();
        let change = names.record("a.example", &answer(&[1, 2], 30), 1000, &dns);
        assert_eq!(change.added, vec![V4(1), V4(2)]);
        assert_eq!(names.names["a.example"].due_at, 1030, "asked again as the TTL runs out");
        let change = names.record("a.example", &answer(&[2, 3], 30), 1030, &dns);
        assert_eq!((change.added, change.removed), (vec![V4(3)], vec![]));
        assert_eq!(held(&names, 1089), vec![V4(1), V4(2), V4(3)], "1 left at 1030: held until 1090");
        let record = &names.names["a.example"];
        assert_eq!(
            record.addresses.iter().find(|a| a.addr == V4(2)).map(|a| a.since),
            Some(1000),
            "held since"
        );
        assert_eq!(held(&names, 1090), vec![V4(2), V4(3)]);
        assert_eq!(names.next_event(&["a.example"]), Some(1060), "due again before 1 leaves");
        // Asked again at 1060, without 1 still: its grace runs from when it left.
        names.record("a.example", &answer(&[2, 3], 30), 1060, &dns);
        assert_eq!(held(&names, 1089), vec![V4(1), V4(2), V4(3)]);
        let change = names.record("a.example", &answer(&[2, 3], 30), 1095, &dns);
        assert_eq!(change.removed, Vec::<IpAddr>::new(), "1 was no longer held before this answer");
        assert!(names.names["a.example"].addresses.iter().all(|a| a.addr != V4(1)), "and is forgotten");
    }

    #[test]
    fn two_answers_in_one_second_are_told_apart() {
        let dns = Dns { grace: Duration::from_secs(60), max_addresses: 8, learn: true };
        let mut names = Names::default();
        names.record("a.example", &answer(&[1, 2], 30), 1000, &dns);
        names.record("a.example", &answer(&[2], 30), 1000, &dns);
        names.record("a.example", &answer(&[2], 30), 1003, &dns);
        assert_eq!(held(&names, 1059), vec![V4(1), V4(2)], "1 left at 1000, not at 1003");
        assert_eq!(held(&names, 1060), vec![V4(2)]);
    }

    #[test]
    fn a_failure_keeps_what_the_name_held_and_is_retried_soon() {
        let dns = Dns { grace: Duration::from_secs(60), max_addresses: 8, learn: true };
        let mut names = Names::default();
        names.record("a.example", &answer(&[1], 300), 1000, &dns);
        let change = names.record("a.example", &Answer::Failed("request timed out".into()), 1300, &dns);
        assert_eq!(change, Change::default());
        assert_eq!(held(&names, 100_000), vec![V4(1)], "kept for as long as the resolvers fail");
        let record = &names.names["a.example"];
        assert_eq!((record.failing_since, record.due_at), (Some(1300), 1310));
        // An answer of no address is an answer: the address leaves after its grace.
        names.record("a.example", &answer(&[], 30), 1400, &dns);
        assert_eq!(held(&names, 1459), vec![V4(1)]);
        assert_eq!(held(&names, 1460), Vec::<IpAddr>::new());
        assert_eq!(names.names["a.example"].failure, None);
    }

    #[test]
    fn an_address_learned_is_held_for_its_ttl_and_the_grace_whatever_the_names_own_answer() {
        let dns = Dns { grace: Duration::from_secs(60), max_addresses: 3, learn: true };
        let mut names = Names::default();
        names.record("a.example", &answer(&[1], 300), 1000, &dns);
        // The host's resolver gave one of its programs 9: a CDN's answer of its own.
        let change = names.learn("a.example", &[V4(9), V4(1)], 20, 1010, &dns);
        assert_eq!((change.added, change.removed), (vec![V4(9)], vec![]));
        let record = &names.names["a.example"];
        let nine = record.addresses.iter().find(|a| a.addr == V4(9)).unwrap();
        assert!(nine.learned && !nine.in_answer && nine.until == 1010 + 20 + 60, "{nine:?}");
        assert_eq!(record.due_at, 1300, "the name's own asking is as it was");
        // Its own answer, without 9, leaves it as it was; with it, it is answered.
        names.record("a.example", &answer(&[1], 300), 1020, &dns);
        assert_eq!(held(&names, 1089), vec![V4(1), V4(9)]);
        assert_eq!(held(&names, 1090), vec![V4(1)]);
        names.learn("a.example", &[V4(9)], 20, 1100, &dns);
        names.record("a.example", &answer(&[1, 9], 300), 1101, &dns);
        let nine = names.names["a.example"].addresses.iter().find(|a| a.addr == V4(9)).unwrap();
        assert!(nine.in_answer && !nine.learned, "{nine:?}");
        // Past the cap, the addresses heard of last stay: learned ones too.
        names.learn("a.example", &[V4(7), V4(8)], 20, 1200, &dns);
        assert_eq!(held(&names, 1200), vec![V4(1), V4(7), V4(8)]);
    }

    #[test]
    fn a_changed_grace_applies_to_the_addresses_leaving_already() {
        let mut names = Names::default();
        let dns = Dns { grace: Duration::from_secs(3600), max_addresses: 8, learn: true };
        names.regrace(3600);
        names.record("a.example", &answer(&[1], 30), 1000, &dns);
        names.record("a.example", &answer(&[2], 30), 1030, &dns);
        names.learn("a.example", &[V4(3)], 20, 1040, &dns);
        assert_eq!(held(&names, 4000), vec![V4(1), V4(2), V4(3)], "an hour's grace");
        // The policy's grace cut to a minute: 1 left at 1030, 3 was learned at 1040 for 20 s.
        names.regrace(60);
        assert_eq!(held(&names, 1089), vec![V4(1), V4(2), V4(3)]);
        assert_eq!(held(&names, 1090), vec![V4(2), V4(3)]);
        assert_eq!(held(&names, 1120), vec![V4(2)]);
        // And back up: from when each left, not from now.
        names.regrace(600);
        assert_eq!(held(&names, 1629), vec![V4(1), V4(2), V4(3)]);
        assert_eq!(held(&names, 1630), vec![V4(2), V4(3)]);
        assert_eq!(held(&names, 1660), vec![V4(2)]);
    }

    #[test]
    fn a_name_holds_at_most_max_addresses_the_longest_gone_first() {
        let dns = Dns { grace: Duration::from_secs(600), max_addresses: 3, learn: true };
        let mut names = Names::default();
        names.record("a.example", &answer(&[1, 2, 3, 4, 5], 30), 1000, &dns);
        assert_eq!(held(&names, 1000), vec![V4(1), V4(2), V4(3)], "the answer's first three");
        assert_eq!(names.names["a.example"].over_cap, 2);
        names.record("a.example", &answer(&[6], 30), 1030, &dns);
        names.record("a.example", &answer(&[7], 30), 1060, &dns);
        let now = held(&names, 1060);
        assert_eq!(now.len(), 3, "{now:?}");
        assert!(now.contains(&V4(6)) && now.contains(&V4(7)), "the newest stay: {now:?}");
    }
}
