//! From classified lines to rules: an opening line and its return are one rule, the peers
//! of one service one list, and services with the same peers one rule. A limit of one line
//! that became several rules is shared among them (its `limit`, its connlimit's count); a
//! connlimit cannot cap a one-way rule's flows, and keeps it out.
use std::{
    collections::{HashMap, HashSet, hash_map},
    net::{IpAddr, Ipv4Addr},
};

use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED,
    PROTO_ICMP, PROTO_TCP,
};

use super::{
    Finding, Findings, Options,
    classify::{
        Classified, Connections, Flow, PassedBack, Role, SourceLimit, Svc, Trap, WHY_LOG, WHY_REJECT,
        why_connlimit,
    },
    log::{LogLine, why_logged, why_partly_logged},
    spec::{PortRange, Rate, UidRange},
    write::{AntispoofOut, HostOut, line_list},
};
use crate::policy::{self, Per, Prefix, duration_text};

/// One `[[rule]]` to write.
#[derive(Debug)]
pub(super) struct RuleOut {
    pub(super) name: String,
    pub(super) direction: Direction,
    pub(super) protocols: Vec<u8>,
    pub(super) ports: Vec<PortRange>,
    pub(super) icmp: Option<(u8, bool)>,
    pub(super) peers: Option<Vec<Prefix>>,
    pub(super) limit: Option<Rate>,
    pub(super) per_source: Option<SourceLimit>,
    /// `trap`: the rule admits nothing, and blocks the sources it meets.
    pub(super) trap: Option<Trap>,
    pub(super) uids: Uids,
    /// Every line that opens its flows is logged by a LOG line before it.
    pub(super) log: bool,
    /// The dump passes none of its flows' returns: `returns = false`.
    pub(super) one_way: bool,
    pub(super) opening: Vec<usize>,
    pub(super) returns: Vec<usize>,
    /// The lines whose ports or peers it holds, that are no rule's of their own.
    pub(super) absorbed: Vec<usize>,
    pub(super) notes: Vec<String>,
    pub(super) comments: Vec<String>,
}

/// A rule's `uids`, merged and sorted; `None`: every user's.
pub(super) type Uids = Option<Vec<UidRange>>;

/// A line that admits flows, as the grouping reads it: its number, its text, its flow.
pub(super) type FlowLine = (usize, String, Flow);

/// The host the policy is for: `--iface` and `--address`, else the interface and the
/// address that the lines name most. `None`: no address, given or named.
pub(super) fn choose_host(classified: &[Classified], options: &Options) -> Option<HostOut> {
    let named: Vec<String> = classified
        .iter()
        .filter_map(|c| match &c.role {
            Role::Flow(Flow { iface, .. }) | Role::Antispoof { iface, .. } => iface.clone(),
            Role::BuiltIn(_) | Role::Different(_) => None,
        })
        .collect();
    let (iface, iface_from) = match (&options.iface, most_common(&named)) {
        (Some(i), _) => (Some(i.clone()), "--iface".to_owned()),
        (None, Some(i)) => (Some(i.clone()), format!("the dump's -i/-o {i}")),
        (None, None) => (None, String::new()),
    };
    let hosts: Vec<Prefix> = classified
        .iter()
        .filter_map(|c| match &c.role {
            // Not a multicast or broadcast destination (an mDNS line's 224.0.0.251).
            Role::Flow(f) => f.host.filter(|h| h.len == 32 && policy::may_be_host_address(h.addr)),
            _ => None,
        })
        .collect();
    let (address, address_from, guessed) = match (options.address, most_common(&hosts).map(|p| p.addr)) {
        (Some(a), _) => (a, "--address".to_owned(), false),
        (None, Some(IpAddr::V4(a))) => (a, "the dump's -d on INPUT and -s on OUTPUT".to_owned(), false),
        (None, _) => {
            let (on, a) = guess_address(&options.interface_addresses, iface.as_deref())?;
            (a, format!("a guess: the address {on} had where the import ran"), true)
        }
    };
    Some(HostOut { iface, iface_from, address, address_from, guessed })
}

/// The host address where neither `--address` nor the dump names one: the first unicast
/// address of `iface`, or without one, of the only interface (not loopback) that has any.
fn guess_address(addresses: &[(String, Ipv4Addr)], iface: Option<&str>) -> Option<(String, Ipv4Addr)> {
    let candidates: Vec<&(String, Ipv4Addr)> = addresses
        .iter()
        .filter(|(on, a)| on != "lo" && !a.is_loopback() && policy::may_be_host_address(IpAddr::V4(*a)))
        .filter(|(on, _)| iface.is_none_or(|i| i == on))
        .collect();
    let first = candidates.first()?;
    candidates.iter().all(|(on, _)| *on == first.0).then(|| (*first).clone())
}

/// The most frequent of `values` (the first seen of equals).
fn most_common<T: Eq + std::hash::Hash + Clone>(values: &[T]) -> Option<T> {
    let mut counts: HashMap<&T, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut best: Option<(&T, usize)> = None;
    for v in values {
        let n = counts[v];
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((v, n));
        }
    }
    best.map(|(v, _)| v.clone())
}

/// Sets aside the lines for another host address or interface: they are not ours to
/// translate. The rest are the anti-spoof lists and the flows to group.
pub(super) fn host_lines(
    classified: Vec<Classified>,
    host: &HostOut,
    findings: &mut Findings,
) -> (Vec<FlowLine>, AntispoofOut) {
    let mut flows = Vec::new();
    let mut antispoof = AntispoofOut::default();
    for Classified { line, text, role } in classified {
        match role {
            Role::Antispoof { source, prefix, iface } => {
                if let Some(why) = not_our_antispoof(host, source, prefix, iface.as_ref()) {
                    findings.untranslated.push(Finding { line, rule: text, why });
                    continue;
                }
                let list = if source { &mut antispoof.sources } else { &mut antispoof.destinations };
                if list.contains(&prefix) {
                    let why = format!("{prefix} is already in the list");
                    findings.built_in.push(Finding { line, rule: text, why });
                } else {
                    list.push(prefix);
                }
                antispoof.lines.push(line);
            }
            Role::Flow(f) => match not_our_flow(host, &f) {
                Some(why) => findings.untranslated.push(Finding { line, rule: text, why }),
                None => flows.push((line, text, f)),
            },
            Role::BuiltIn(_) | Role::Different(_) => {
                unreachable!("built-ins and differences are set aside above")
            }
        }
    }
    (flows, antispoof)
}

/// Why an anti-spoof line is not the host's: another interface's, or one that would
/// drop every packet to the host.
fn not_our_antispoof(host: &HostOut, source: bool, prefix: Prefix, iface: Option<&String>) -> Option<String> {
    if let Some(why) = other_iface(host, iface) {
        return Some(why);
    }
    let address = host.address;
    (!source && prefix.contains(IpAddr::V4(address))).then(|| {
        format!(
            "it drops every packet to the host address {address} (from {}): not translated",
            host.address_from
        )
    })
}

/// Why a line that admits flows is not the host's: another host address's, or another
/// interface's.
fn not_our_flow(host: &HostOut, f: &Flow) -> Option<String> {
    let address = host.address;
    // The host side's option: -d for what comes in, -s for what goes out.
    let flag = if matches!((f.direction, f.is_return), (Direction::In, false) | (Direction::Out, true)) {
        "-d"
    } else {
        "-s"
    };
    if let Some(h) = f.host.filter(|h| h.len != 32 || h.addr != IpAddr::V4(address)) {
        return Some(format!(
            "{flag} {h} is not the host address {address} (from {}; --address chooses another)",
            host.address_from
        ));
    }
    other_iface(host, f.iface.as_ref())
}

/// Why a line on interface `theirs` is not the host's, if the policy is for another.
fn other_iface(host: &HostOut, theirs: Option<&String>) -> Option<String> {
    match (&host.iface, theirs) {
        (Some(mine), Some(theirs)) if mine != theirs => {
            Some(format!("on interface {theirs}: the policy is for {mine} (from {})", host.iface_from))
        }
        _ => None,
    }
}

/// Pairs opening lines with their returns, gathers each service's peers, and merges the
/// services with the same peers into rules, named and in the dump's order.
pub(super) fn group(
    flows: &[FlowLine],
    passes_returns: &[PassedBack],
    findings: &mut Findings,
) -> Vec<RuleOut> {
    // Indexes throughout: a dump may hold a line for each of 100,000 peers.
    let texts = LineTexts(flows.iter().map(|(l, t, _)| (*l, t.as_str())).collect());
    let mut returns = Returns::index(flows);
    let mut entries = Entries { owners: Owners::index(flows), ..Entries::default() };
    // The connlimit lines whose cap some line could not take.
    let mut uncapped: Vec<Connections> = Vec::new();
    for (line, _, f) in flows.iter().filter(|(_, _, f)| !f.is_return) {
        if let Some(c) = one_way_cap(f, passes_returns, &returns) {
            findings.untranslated.push(texts.finding(*line, format!(
                "not translated, to be no more open than the script: {}, and no line of the dump passes the returns of its flows, so its rule would have returns = false, which tracks no flow to count",
                capped_by(c, *line)
            )));
            uncapped.push(c);
            forget_cap_difference(&mut findings.differences, *line);
            continue;
        }
        entries.add_line(*line, f, passes_returns, &mut returns, &texts, &mut findings.untranslated);
    }
    returns.list_unpaired(&texts, &mut findings.untranslated);
    let mut entries = entries.all;
    for entry in &mut entries {
        entry.absorb_named_peers();
        entry.note_shared_limit();
        entry.note_recent();
        entry.note_connections();
        entry.note_trap();
    }
    let mut rules = merge(&entries);
    // In the order of the dump's first line of each (a return line comes first when
    // iptables-save lists INPUT before OUTPUT).
    rules.sort_by_key(|(r, _)| r.opening.iter().chain(&r.returns).min().copied());
    share_split_connections(&mut rules, &texts, &mut uncapped, findings);
    unsettle_caps(&uncapped, &rules, findings);
    let (mut rules, logs): (Vec<RuleOut>, Vec<RuleLogs>) = rules.into_iter().unzip();
    share_split_limits(&mut rules);
    share_split_source_rates(&mut rules);
    name_rules(&mut rules);
    note_logs(&mut rules, &logs, &mut findings.differences);
    rules
}

/// The cap of `f`'s flows (`per_source.connections`) if a service of it is one-way: a
/// rule with `returns = false` tracks no flow, so it cannot count them.
fn one_way_cap(f: &Flow, passes_returns: &[PassedBack], returns: &Returns) -> Option<Connections> {
    let cap = f.per_source.as_ref()?.connections?;
    f.services.iter().any(|svc| returned(f, *svc, passes_returns, returns) == Returned::No).then_some(cap)
}

/// `the -m connlimit of line L caps its flows at N`, or of the line itself (`line`).
fn capped_by(c: Connections, line: usize) -> String {
    if c.line == line {
        format!("its -m connlimit caps its flows at {} at once", c.count)
    } else {
        format!("the -m connlimit of line {} caps its flows at {} at once", c.line, c.count)
    }
}

/// A connlimit line whose flows became several rules (a multiport line with a limit, a
/// rule a port; lines whose peers differ by port) has one count of each source's flows in
/// iptables, where each rule has its own: each rule gets its share of the line's count, so
/// that together they hold no more open than the line. Where that is less than one each,
/// the rules are not written, and their lines are listed.
fn share_split_connections(
    rules: &mut Vec<(RuleOut, RuleLogs)>,
    texts: &LineTexts<'_>,
    uncapped: &mut Vec<Connections>,
    findings: &mut Findings,
) {
    let cap = |rule: &RuleOut| rule.per_source.as_ref().and_then(|p| p.connections);
    let mut rules_of_cap: HashMap<usize, usize> = HashMap::new();
    for c in rules.iter().filter_map(|(r, _)| cap(r)) {
        *rules_of_cap.entry(c.line).or_default() += 1;
    }
    let mut dropped: Vec<RuleOut> = Vec::new();
    let mut kept: Vec<(RuleOut, RuleLogs)> = Vec::with_capacity(rules.len());
    for (mut rule, logs) in rules.drain(..) {
        let Some(c) = cap(&rule) else {
            kept.push((rule, logs));
            continue;
        };
        let k = rules_of_cap[&c.line];
        let share = usize::from(c.count) / k;
        if k < 2 {
            kept.push((rule, logs));
        } else if share == 0 {
            dropped.push(rule);
        } else {
            rule.notes.push(format!(
                "its per_source.connections is a share of the {} at once of the -m connlimit of line {}, whose flows became {k} rules: each has {share}, so that together they hold no more open than the line",
                c.count, c.line
            ));
            if let Some(c) = rule.per_source.as_mut().and_then(|p| p.connections.as_mut()) {
                c.count = u8::try_from(share).expect("a share of a u8");
            }
            kept.push((rule, logs));
        }
    }
    // A return line of a rule not written passes nothing here, unless a rule kept pairs
    // with it too.
    let returns_kept: HashSet<usize> = kept.iter().flat_map(|(r, _)| r.returns.iter().copied()).collect();
    for rule in &dropped {
        let c = cap(rule).expect("capped");
        uncapped.push(c);
        let k = rules_of_cap[&c.line];
        let mut lines: Vec<usize> = rule.opening.iter().chain(&rule.absorbed).copied().collect();
        lines.extend(rule.returns.iter().filter(|l| !returns_kept.contains(l)));
        for line in lines {
            forget_cap_difference(&mut findings.differences, line);
            findings.untranslated.push(texts.finding(
                line,
                format!(
                    "not translated, to be no more open than the script: {}, one count for all of them, and they became {k} rules here, too many to share {} with one flow each at least",
                    capped_by(c, line),
                    c.count
                ),
            ));
        }
    }
    *rules = kept;
}

/// A line not translated after all says no difference of its own connlimit.
fn forget_cap_difference(differences: &mut Vec<Finding>, line: usize) {
    differences.retain(|f| f.line != line || !f.why.starts_with(WHY_CONNECTIONS_DIFFERENCE));
}

/// How the difference of a line's own connlimit begins (see `shadow`).
pub(super) const WHY_CONNECTIONS_DIFFERENCE: &str =
    "translated with a difference, as per_source.connections = ";

/// The connlimit lines listed as translated that no rule written carries: their ACCEPTs
/// were kept out instead (each says why), so they are not translated.
fn unsettle_caps(uncapped: &[Connections], rules: &[(RuleOut, RuleLogs)], findings: &mut Findings) {
    for c in uncapped {
        let carried = rules.iter().any(|(r, _)| {
            r.per_source.as_ref().and_then(|p| p.connections).is_some_and(|d| d.line == c.line)
        });
        if carried {
            continue;
        }
        let translated = why_connlimit(c.count, c.every_packet);
        let was = |f: &Finding| f.line == c.line && (f.why == translated || f.why == WHY_REJECT);
        let Some(rule) = findings
            .built_in
            .iter()
            .chain(&findings.differences)
            .find(|f| f.line == c.line && f.why == translated)
            .map(|f| f.rule.clone())
        else {
            continue;
        };
        findings.built_in.retain(|f| !was(f));
        findings.differences.retain(|f| !was(f));
        findings.untranslated.push(Finding {
            line: c.line,
            rule,
            why: format!(
                "not translated: the ACCEPTs after it that it caps ({} flow{} of a source at once) could not take its cap, so they are kept out instead (each says why)",
                c.count,
                if c.count == 1 { "" } else { "s" }
            ),
        });
    }
}

/// A limited line that became several rules (an ACCEPT of every ICMP type, four; a
/// limited multiport line, a rule a port) has one bucket in iptables, where each rule has
/// its own: each rule gets its share of the line's rate and burst, so that together they
/// admit no more than the line. A rule of several such lines takes the smallest share.
fn share_split_limits(rules: &mut [RuleOut]) {
    let mut rules_of_line: HashMap<usize, usize> = HashMap::new();
    for rule in rules.iter().filter(|r| r.limit.is_some()) {
        for line in &rule.opening {
            *rules_of_line.entry(*line).or_default() += 1;
        }
    }
    for rule in rules.iter_mut() {
        let Some(rate) = rule.limit else { continue };
        let shares = rule.opening.iter().map(|line| rules_of_line[line]).max().unwrap_or(1);
        let Ok(k) = u32::try_from(shares) else { continue };
        if k < 2 {
            continue;
        }
        let (shared, together) = share(rate, k, "the line");
        rule.limit = Some(shared);
        rule.notes.push(format!(
            "its limit is a share of the --limit {rate} of {}, which became {k} rules: each has {}/{} burst {}, {together}",
            if rule.opening.len() == 1 { format!("line {}", rule.opening[0]) } else { format!("lines {}", line_list(&rule.opening)) },
            shared.count,
            shared.unit,
            shared.burst
        ));
    }
}

/// A per-source rate whose buckets (one `-m recent` list, one hashlimit name: one bucket a
/// source in iptables, whatever the lines that use it) became several rules' has one
/// bucket a source for each rule here: each rule gets its share of the rate and burst, so
/// that together they admit no more of a source than the script.
fn share_split_source_rates(rules: &mut [RuleOut]) {
    let mut rules_of_bucket: HashMap<String, u32> = HashMap::new();
    for limit in rules.iter().filter_map(|r| r.per_source.as_ref()).filter(|p| p.rate.is_some()) {
        *rules_of_bucket.entry(limit.bucket.clone()).or_default() += 1;
    }
    for rule in rules.iter_mut() {
        let Some(limit) = rule.per_source.as_mut() else { continue };
        let Some(rate) = limit.rate else { continue };
        let k = rules_of_bucket[&limit.bucket];
        if k < 2 {
            continue;
        }
        let (shared, together) = share(rate, k, "the script");
        limit.rate = Some(shared);
        rule.notes.push(format!(
            "its per_source rate is a share of the {rate} of each source's bucket in {}, which {k} rules take: each has {}/{} burst {}, {together}",
            limit.bucket, shared.count, shared.unit, shared.burst
        ));
    }
}

/// `rate` shared among `k` rules: its count (or its window, when `k` does not divide it)
/// and burst divided, and what that means together, against `whole` (what had it alone). A burst smaller than `k` cannot be
/// shared: each keeps one, so at once they admit up to `k`; over time no more.
fn share(rate: Rate, k: u32, whole: &str) -> (Rate, String) {
    let unit_secs = u32::try_from(rate.unit.duration().as_secs()).unwrap_or(u32::MAX);
    let shared = if rate.count.is_multiple_of(k) {
        Rate { count: rate.count / k, ..rate }
    } else {
        Rate { unit: Per::Window(unit_secs.saturating_mul(k)), ..rate }
    };
    let shared = Rate { burst: (rate.burst / k).max(1), ..shared };
    let together = if rate.burst < k {
        format!(
            "so that together they admit no more than {whole} over time, but up to {k} at once where its burst is {}: a burst of one cannot be shared",
            rate.burst
        )
    } else {
        format!("so that together they admit no more than {whole}")
    };
    (shared, together)
}

/// The LOG lines of each rule's opening lines, and its lines that none logs.
#[derive(Clone, Debug, Default)]
struct RuleLogs {
    logged_by: Vec<LogLine>,
    unlogged: Vec<usize>,
}

impl RuleLogs {
    /// Every line is logged: the rule's `log = true`.
    fn all_logged(&self) -> bool {
        !self.logged_by.is_empty() && self.unlogged.is_empty()
    }
}

/// The LOG lines that log a rule's flows say so: `log = true`, or partly logged (some
/// line of the rule none logs), in place of LOG's difference.
fn note_logs(rules: &mut [RuleOut], logs: &[RuleLogs], differences: &mut Vec<Finding>) {
    let mut whys: Vec<Finding> = Vec::new();
    for (rule, logs) in rules.iter_mut().zip(logs) {
        if rule.log {
            let lines: Vec<usize> = logs.logged_by.iter().map(|l| l.line).collect();
            rule.notes.push(format!(
                "log = true for the LOG of {} {} before its ACCEPT",
                if lines.len() == 1 { "line" } else { "lines" },
                line_list(&lines)
            ));
        }
        for log in &logs.logged_by {
            let why = if rule.log {
                why_logged(&rule.name, log)
            } else {
                why_partly_logged(&rule.name, &logs.unlogged)
            };
            whys.push(Finding { line: log.line, rule: log.text.clone(), why });
        }
    }
    differences.retain(|d| d.why != WHY_LOG || !whys.iter().any(|w| w.line == d.line && w.rule == d.rule));
    differences.extend(whys);
}

/// The text of each flow line by its number, for the findings about it.
struct LineTexts<'a>(HashMap<usize, &'a str>);

impl LineTexts<'_> {
    fn finding(&self, line: usize, why: String) -> Finding {
        Finding { line, rule: self.0[&line].to_owned(), why }
    }
}

/// A return line's service, for pairing with the lines that open its flows.
#[derive(Debug)]
struct Return {
    svc: Svc,
    line: usize,
    limit: Option<Rate>,
    /// Some opening line pairs with it.
    used: bool,
}

/// The return lines, a [`Return`] for each service of each, found by the flow's
/// direction, the service and the peer (`None` for anyone).
struct Returns {
    all: Vec<Return>,
    by_flow: HashMap<(Direction, Svc, Option<Prefix>), Vec<usize>>,
}

impl Returns {
    fn index(flows: &[FlowLine]) -> Self {
        let mut returns = Returns { all: Vec::new(), by_flow: HashMap::new() };
        for (line, _, f) in flows.iter().filter(|(_, _, f)| f.is_return) {
            for svc in &f.services {
                returns.by_flow.entry((f.direction, *svc, f.peer)).or_default().push(returns.all.len());
                returns.all.push(Return { svc: *svc, line: *line, limit: f.limit, used: false });
            }
        }
        returns
    }

    /// The keys of the return lines of flows of `svc` with `peer`: those to the peer, and
    /// those to anyone.
    fn keys(direction: Direction, svc: Svc, peer: Option<Prefix>) -> Vec<(Direction, Svc, Option<Prefix>)> {
        let mut keys = vec![(direction, svc, None)];
        if peer.is_some() {
            keys.push((direction, svc, peer));
        }
        keys
    }

    /// Whether some return line passes the returns of flows of `svc` with `peer`.
    fn answer(&self, direction: Direction, svc: Svc, peer: Option<Prefix>) -> bool {
        Self::keys(direction, svc, peer).iter().any(|k| self.by_flow.contains_key(k))
    }

    /// Pairs the flows of `entry`'s newest line with their returns (see [`Self::keys`]).
    fn pair(&mut self, entry: &mut Entry, direction: Direction, svc: Svc, peer: Option<Prefix>) {
        let keys = Self::keys(direction, svc, peer);
        for r in keys.iter().filter_map(|k| self.by_flow.get(k)).flatten() {
            let r = &mut self.all[*r];
            if !r.used {
                r.used = true;
                entry.returns.push(r.line);
                if let Some(rate) = r.limit {
                    entry.notes.push(format!(
                        "the --limit {rate} of return line {} is not a bucket of its own: returns pass with their flow, so they are limited with its opening packets",
                        r.line
                    ));
                }
            } else if !entry.returns.contains(&r.line) {
                // A return to anyone, already used by another entry's lines.
                entry.returns.push(r.line);
            }
        }
    }

    /// Lists the return lines that no opening line pairs with as not translated: a
    /// multiport line once, and a line listed already not again.
    fn list_unpaired(&self, texts: &LineTexts<'_>, untranslated: &mut Vec<Finding>) {
        let mut listed: HashSet<usize> = untranslated.iter().map(|f| f.line).collect();
        for r in &self.all {
            if r.used || !listed.insert(r.line) {
                continue;
            }
            let why = match r.svc {
                Svc::Icmp { .. } => "an echo-reply with no echo-request the other way: replies pass here only as the answers of admitted requests".to_owned(),
                _ => "a return line (--sport) with no line that opens its flow the other way: nothing to translate".to_owned(),
            };
            untranslated.push(texts.finding(r.line, why));
        }
    }
}

/// A rule's limit, its per-source limit and its trap.
type Limits = (Option<Rate>, Option<SourceLimit>, Option<Trap>);

/// A flow's [`Limits`].
fn limits(f: &Flow) -> Limits {
    (f.limit, f.per_source.clone(), f.trap.clone())
}

/// Whether the dump passes the returns of a service's flows with a peer: with none, the
/// service is one-way (`returns = false`), and a rule of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Returned {
    Yes,
    No,
}

/// Only flows have returns: ICMP errors and other types are single messages.
fn has_returns(svc: Svc) -> bool {
    matches!(svc, Svc::Port { .. } | Svc::Icmp { kind: ICMP_ECHO_REQUEST, .. })
}

/// Whether the dump passes the returns of `f`'s flows of `svc`: a return line, or a line
/// that passes every return (of their protocol) in the chain they travel through.
fn returned(f: &Flow, svc: Svc, passes_returns: &[PassedBack], returns: &Returns) -> Returned {
    let back = if f.direction == Direction::In { "OUTPUT" } else { "INPUT" };
    let protocol = match svc {
        Svc::Port { protocol, .. } => protocol,
        Svc::Icmp { .. } => PROTO_ICMP,
    };
    let passed_back =
        passes_returns.iter().any(|p| p.chain == back && p.protocol.is_none_or(|p| p == protocol));
    if has_returns(svc) && !passed_back && !returns.answer(f.direction, svc, f.peer) {
        Returned::No
    } else {
        Returned::Yes
    }
}

/// The users each service's peers are admitted for, line by line: a rule's `uids` are
/// those of its peer's lines and of the lines for any peer wider (the firewall asks the
/// most specific peer's rule alone), so that lines for one peer that differ only in
/// their uids are one rule with all of them, and a line for every user admits every user.
#[derive(Default)]
struct Owners {
    /// By direction, service and limits, then by peer (`None`: anyone).
    by_peer: HashMap<(Direction, Svc, Limits), HashMap<Option<Prefix>, Uids>>,
}

impl Owners {
    fn index(flows: &[FlowLine]) -> Self {
        let mut owners = Owners::default();
        // Without an owner match, every peer is every user's: nothing to look up.
        if flows.iter().all(|(_, _, f)| f.uids.is_none()) {
            return owners;
        }
        for (_, _, f) in flows.iter().filter(|(_, _, f)| !f.is_return) {
            for svc in &f.services {
                let peers = owners.by_peer.entry((f.direction, *svc, limits(f))).or_default();
                let uids = peers.entry(f.peer).or_insert_with(|| Some(Vec::new()));
                *uids = union(uids.as_deref(), f.uids.as_deref());
            }
        }
        owners
    }

    /// The uids `f`'s peer is admitted for, for `svc`, and whether a line for a wider
    /// peer added to them.
    fn of(&self, f: &Flow, svc: Svc) -> (Uids, bool) {
        let Some(peers) = self.by_peer.get(&(f.direction, svc, limits(f))) else {
            return (None, false);
        };
        let mut uids = Some(Vec::new());
        let mut widened = false;
        for peer in wider_peers(f.peer) {
            if let Some(theirs) = peers.get(&peer) {
                let more = union(uids.as_deref(), theirs.as_deref());
                widened |= peer != f.peer && more != union(uids.as_deref(), f.uids.as_deref());
                uids = more;
            }
        }
        (uids, widened)
    }
}

/// The note of a rule whose uids hold those of a line for a wider peer.
const WIDER_PEERS_USERS: &str = "its uids hold the users a line for a wider peer admits: the firewall asks the rule of the most specific peer alone";

/// `peer` and every peer that holds it, anyone (`None`) first.
fn wider_peers(peer: Option<Prefix>) -> Vec<Option<Prefix>> {
    let Some(Prefix { addr: IpAddr::V4(addr), len }) = peer else {
        return vec![None, peer];
    };
    let mut peers = vec![None];
    for wider in 1..=len {
        let mask = u32::MAX << (32 - u32::from(wider));
        let network = Ipv4Addr::from(u32::from(addr) & mask);
        peers.push(Some(Prefix { addr: IpAddr::V4(network), len: wider }));
    }
    peers
}

/// The uids of both, merged (`None`, every user, takes all).
fn union(a: Option<&[UidRange]>, b: Option<&[UidRange]>) -> Uids {
    let mut all: Vec<UidRange> = a?.iter().chain(b?).copied().collect();
    all.sort_unstable();
    let mut merged: Vec<UidRange> = Vec::with_capacity(all.len());
    for range in all {
        match merged.last_mut() {
            Some(last) if range.first <= last.last.saturating_add(1) => last.last = last.last.max(range.last),
            _ => merged.push(range),
        }
    }
    Some(merged)
}

/// Whether every user of `inner` is one of `outer`'s (both merged).
fn holds(outer: Option<&[UidRange]>, inner: Option<&[UidRange]>) -> bool {
    match (outer, inner) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(outer), Some(inner)) => inner.iter().all(|i| outer.iter().any(|o| o.contains(*i))),
    }
}

/// The lines one service admits in one direction with one limit: its peers (`None`:
/// anyone), in order, each with the line that names it.
#[derive(Debug)]
struct Entry {
    direction: Direction,
    svc: Svc,
    limit: Option<Rate>,
    per_source: Option<SourceLimit>,
    trap: Option<Trap>,
    uids: Uids,
    returned: Returned,
    logs: RuleLogs,
    peers: Vec<(Option<Prefix>, usize)>,
    /// The line that named each peer first.
    peer_line: HashMap<Option<Prefix>, usize>,
    /// The line that named each peer for its own users first: a line for other users of
    /// the peer adds them (the entry's uids are all of theirs), it repeats nothing.
    peer_users_line: HashMap<(Option<Prefix>, Uids), usize>,
    /// The lines that open its flows, and those of their returns.
    lines: Vec<usize>,
    returns: Vec<usize>,
    /// The lines whose ports (or peer) it took: noted, no entry's own.
    absorbed: Vec<usize>,
    notes: Vec<String>,
    comments: Vec<String>,
}

impl Entry {
    fn new(
        direction: Direction,
        svc: Svc,
        (limit, per_source, trap): Limits,
        uids: Uids,
        returned: Returned,
    ) -> Self {
        Entry {
            direction,
            svc,
            limit,
            per_source,
            trap,
            uids,
            returned,
            logs: RuleLogs::default(),
            peers: Vec::new(),
            peer_line: HashMap::new(),
            peer_users_line: HashMap::new(),
            lines: Vec::new(),
            returns: Vec::new(),
            absorbed: Vec::new(),
            notes: Vec::new(),
            comments: Vec::new(),
        }
    }

    /// Records an opening line: its number, its comment, its peer (a peer named again is
    /// noted, not listed twice).
    fn add_line(&mut self, line: usize, f: &Flow) {
        // Lines come in order: a multiport line's second port is the same line.
        if self.lines.last() != Some(&line) {
            self.lines.push(line);
            if f.logged_by.is_empty() {
                self.logs.unlogged.push(line);
            } else {
                self.logs.logged_by.extend(f.logged_by.iter().cloned());
            }
        }
        if let Some(c) = &f.comment
            && !self.comments.contains(c)
        {
            self.comments.push(c.clone());
        }
        match self.peer_users_line.entry((f.peer, f.uids.clone())) {
            hash_map::Entry::Occupied(first) => {
                self.notes.push(format!("line {line} repeats line {}", first.get()));
            }
            hash_map::Entry::Vacant(vacant) => {
                vacant.insert(line);
            }
        }
        if let hash_map::Entry::Vacant(vacant) = self.peer_line.entry(f.peer) {
            vacant.insert(line);
            self.peers.push((f.peer, line));
        }
    }

    /// Gives `peer` up to an entry of wider ports; returns the line that named it.
    fn remove_peer(&mut self, peer: Option<Prefix>) -> Option<usize> {
        self.peers.retain(|(p, _)| *p != peer);
        self.peer_line.remove(&peer)
    }

    /// "Anyone" covers every named peer of the same service: those are dropped, and noted.
    fn absorb_named_peers(&mut self) {
        let Some((_, any_line)) = self.peers.iter().find(|(p, _)| p.is_none()).copied() else {
            return;
        };
        let named: Vec<usize> = self.peers.iter().filter(|(p, _)| p.is_some()).map(|(_, l)| *l).collect();
        if !named.is_empty() {
            self.notes.push(format!(
                "line {any_line} admits anyone, so the peers of lines {} need no place of their own",
                line_list(&named)
            ));
        }
        self.peers.retain(|(p, _)| p.is_none());
    }

    /// The rule's limit is one bucket where iptables had one a line.
    fn note_shared_limit(&mut self) {
        let limited = self.lines.len();
        if self.limit.is_some() && limited > 1 {
            self.notes.push(format!(
                "one token bucket for the rule, where iptables keeps one for each of its {limited} lines"
            ));
        }
    }

    /// A per_source.connections that stands for a connlimit line that meets every packet,
    /// or after a per-source rate, says so: it counts otherwise.
    fn note_connections(&mut self) {
        let Some(c) = self.per_source.as_ref().and_then(|p| p.connections) else {
            return;
        };
        if c.every_packet {
            self.notes.push(format!(
                "per_source.connections stands for the -m connlimit of line {}, which meets every packet of a flow, not only its first (listed above)",
                c.line
            ));
        }
        if let Some(rate) = c.rate_first {
            self.notes.push(format!(
                "the firewall asks per_source.connections before the rate, so a flow refused for its source's connections takes no token; in the script the hashlimit of line {rate}, before the -m connlimit of line {}, charged it one",
                c.line
            ));
        }
    }

    /// A trap says which check is its block.
    fn note_trap(&mut self) {
        if let Some(trap) = &self.trap {
            self.notes.push(format!(
                "trap = {:?} for the -m recent list {} these lines set, whose --rcheck --seconds {} of line {} drops every packet of a source caught (the block, listed above)",
                duration_text(u64::from(trap.seconds)),
                trap.list,
                trap.seconds,
                trap.check
            ));
        }
    }

    /// A per_source that stands for a `-m recent` check says so: it counts otherwise.
    fn note_recent(&mut self) {
        if let Some(SourceLimit { recent_line: Some(line), .. }) = self.per_source {
            self.notes.push(format!(
                "per_source stands for the -m recent of line {line}, which counts refused attempts too, in a sliding window (listed above)"
            ));
        }
    }

    /// Its peers as a rule lists them: `None` for anyone.
    fn peer_list(&self) -> Option<Vec<Prefix>> {
        if self.peers.iter().any(|(p, _)| p.is_none()) {
            None
        } else {
            Some(self.peers.iter().map(|(p, _)| p.expect("named")).collect())
        }
    }
}

/// The note of a rule whose ports hold those that `lines` admit to one of its peers.
fn inside(lines: &[usize]) -> String {
    let (one, many) = ("line", "lines");
    format!(
        "{} {} {} ports inside these to the same peer",
        if lines.len() == 1 { one } else { many },
        line_list(lines),
        if lines.len() == 1 { "admits" } else { "admit" }
    )
}

/// How a line's ports meet another entry's for the same peer.
enum Overlap {
    /// Inside that entry's: nothing to add.
    Inside(usize),
    /// Around these entries' (none, or narrower ones, which give the peer up).
    Around(Vec<usize>),
    /// Partly, on this line.
    Partly(usize),
    /// Inside or around the ports this line admits to the peer for other users.
    OtherUsers(usize),
}

/// The entries, found by service and limit, and by service alone.
#[derive(Default)]
struct Entries {
    all: Vec<Entry>,
    /// The users each peer of a service is admitted for.
    owners: Owners,
    by_limit: HashMap<(Direction, Svc, Limits, Uids, Returned), usize>,
    /// The entries of one service, whatever their limits.
    by_service: HashMap<(Direction, Svc), Vec<usize>>,
}

impl Entries {
    /// Adds an opening line to the entry of each of its services, and pairs it with its
    /// returns there. A service whose flows have returns, none of which a return line or
    /// `passes_returns` in the chain they travel through passes, is one-way.
    fn add_line(
        &mut self,
        line: usize,
        f: &Flow,
        passes_returns: &[PassedBack],
        returns: &mut Returns,
        texts: &LineTexts<'_>,
        untranslated: &mut Vec<Finding>,
    ) {
        for svc in &f.services {
            if let Some(at) = self.peer_elsewhere(f, *svc) {
                untranslated.push(texts.finding(
                    line,
                    format!("its peer is already admitted for this service by line {at}, with another limit: a peer of a service belongs to one rule"),
                ));
                continue;
            }
            let (uids, widened) = self.owners.of(f, *svc);
            let wider = match self.ports_elsewhere(f, *svc, uids.as_deref()) {
                Overlap::Partly(at) => {
                    untranslated.push(texts.finding(
                        line,
                        format!("some of its ports, not all, are already admitted to its peer by line {at}: a peer's port belongs to one rule"),
                    ));
                    continue;
                }
                Overlap::OtherUsers(at) => {
                    untranslated.push(texts.finding(
                        line,
                        format!("its ports overlap those line {at} admits to its peer for other users (uids): a peer's port belongs to one rule"),
                    ));
                    continue;
                }
                Overlap::Inside(e) => {
                    self.all[e].notes.push(inside(&[line]));
                    self.all[e].absorbed.push(line);
                    continue;
                }
                Overlap::Around(narrower) => narrower,
            };
            let inside_lines: Vec<usize> =
                wider.iter().filter_map(|&e| self.all[e].remove_peer(f.peer)).collect();
            // A trap admits nothing, so it has no returns to pass.
            let returned =
                if f.trap.is_some() { Returned::Yes } else { returned(f, *svc, passes_returns, returns) };
            let entry = self.entry(f.direction, *svc, limits(f), uids, returned);
            entry.add_line(line, f);
            if widened && !entry.notes.iter().any(|n| n == WIDER_PEERS_USERS) {
                entry.notes.push(WIDER_PEERS_USERS.to_owned());
            }
            if !inside_lines.is_empty() {
                entry.notes.push(inside(&inside_lines));
                entry.absorbed.extend(&inside_lines);
            }
            if has_returns(*svc) && f.trap.is_none() {
                returns.pair(entry, f.direction, *svc, f.peer);
            }
        }
    }

    /// The line that admits `f`'s peer for `svc` in an entry with another limit: one peer
    /// of a service belongs to one rule.
    fn peer_elsewhere(&self, f: &Flow, svc: Svc) -> Option<usize> {
        let siblings = self.by_service.get(&(f.direction, svc)).map_or(&[][..], Vec::as_slice);
        siblings
            .iter()
            .filter(|&&e| {
                self.all[e].limit != f.limit
                    || self.all[e].per_source != f.per_source
                    || self.all[e].trap != f.trap
            })
            .find_map(|&e| self.all[e].peer_line.get(&f.peer))
            .copied()
    }

    /// How `svc`'s ports meet those of the entries of other ports that admit `f`'s peer
    /// (two ranges, or a range and a port inside it): one port of a peer belongs to one
    /// rule, so the wider takes the peer, and a part overlap is not translated.
    fn ports_elsewhere(&self, f: &Flow, svc: Svc, uids: Option<&[UidRange]>) -> Overlap {
        let Svc::Port { protocol, port } = svc else {
            return Overlap::Around(Vec::new());
        };
        let mut narrower = Vec::new();
        for (i, e) in self.all.iter().enumerate().filter(|(_, e)| e.direction == f.direction) {
            let Svc::Port { protocol: p, port: other } = e.svc else {
                continue;
            };
            let Some(&at) =
                e.peer_line.get(&f.peer).filter(|_| p == protocol && other != port && other.overlaps(port))
            else {
                continue;
            };
            if other.first <= port.first && port.last <= other.last {
                return if holds(e.uids.as_deref(), uids) {
                    Overlap::Inside(i)
                } else {
                    Overlap::OtherUsers(at)
                };
            } else if port.first <= other.first && other.last <= port.last {
                if !holds(uids, e.uids.as_deref()) {
                    return Overlap::OtherUsers(at);
                }
                narrower.push(i);
            } else {
                return Overlap::Partly(at);
            }
        }
        Overlap::Around(narrower)
    }

    /// The entry of a service with a limit, new if it is the first line of the pair.
    fn entry(
        &mut self,
        direction: Direction,
        svc: Svc,
        limits: Limits,
        uids: Uids,
        returned: Returned,
    ) -> &mut Entry {
        let key = (direction, svc, limits.clone(), uids.clone(), returned);
        let at = *self.by_limit.entry(key).or_insert_with(|| {
            self.by_service.entry((direction, svc)).or_default().push(self.all.len());
            self.all.push(Entry::new(direction, svc, limits, uids, returned));
            self.all.len() - 1
        });
        &mut self.all[at]
    }
}

/// Rules: TCP and UDP services with the same direction and peers, unlimited or with the
/// same per-source buckets, merge (a rule is protocols × ports, so ports group by their
/// set of protocols); ICMP types and services with a limit are rules of their own.
fn merge(entries: &[Entry]) -> Vec<(RuleOut, RuleLogs)> {
    let mut rules: Vec<(RuleOut, RuleLogs)> = Vec::new();
    let mut taken = vec![false; entries.len()];
    for (i, lead) in entries.iter().enumerate() {
        // An entry whose peers all went to wider ports is no rule.
        if taken[i] || lead.peers.is_empty() {
            continue;
        }
        match lead.svc {
            Svc::Icmp { kind, related } => {
                taken[i] = true;
                rules.push(rule_of(entries, lead, &[i], vec![PROTO_ICMP], Vec::new(), Some((kind, related))));
            }
            Svc::Port { .. } => {
                let members = port_members(entries, i, &taken);
                for (protocols, ports) in port_groups(entries, &members) {
                    let mine: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&m| matches!(entries[m].svc, Svc::Port { protocol, port } if protocols.contains(&protocol) && ports.contains(&port)))
                        .collect();
                    for &m in &mine {
                        taken[m] = true;
                    }
                    rules.push(rule_of(entries, lead, &mine, protocols, ports, None));
                }
            }
        }
    }
    rules
}

/// The port entries that merge with entry `lead` (itself first): none but it if it has a
/// limit, else those after it, not taken yet, unlimited, with its per_source (one rule's
/// buckets, as the dump's list or hashlimit name is one), uids, returns, log, direction
/// and peers.
fn port_members(entries: &[Entry], lead: usize, taken: &[bool]) -> Vec<usize> {
    let e = &entries[lead];
    let mut members = vec![lead];
    if e.limit.is_some() {
        return members;
    }
    let peers = e.peer_list();
    for (j, other) in entries.iter().enumerate().skip(lead + 1) {
        if !taken[j]
            && !other.peers.is_empty()
            && matches!(other.svc, Svc::Port { .. })
            && other.limit.is_none()
            && other.per_source == e.per_source
            && other.trap == e.trap
            && other.uids == e.uids
            && other.returned == e.returned
            && other.logs.all_logged() == e.logs.all_logged()
            && other.direction == e.direction
            && same_peers(other.peer_list().as_deref(), peers.as_deref())
        {
            members.push(j);
        }
    }
    members
}

/// Two peer lists with the same peers, in whatever order.
fn same_peers(a: Option<&[Prefix]>, b: Option<&[Prefix]>) -> bool {
    let sorted = |p: Option<&[Prefix]>| {
        p.map(|p| {
            let mut v = p.to_vec();
            v.sort();
            v
        })
    };
    sorted(a) == sorted(b)
}

/// The `members`' ports grouped by their set of protocols, each a rule's protocols and
/// ports: ports in the order met, each port's protocols in the order of the members.
fn port_groups(entries: &[Entry], members: &[usize]) -> Vec<(Vec<u8>, Vec<PortRange>)> {
    // port → its protocols, in the order met.
    let mut by_port: Vec<(PortRange, Vec<u8>)> = Vec::new();
    for &m in members {
        if let Svc::Port { protocol, port } = entries[m].svc {
            match by_port.iter_mut().find(|(p, _)| *p == port) {
                Some((_, protos)) => protos.push(protocol),
                None => by_port.push((port, vec![protocol])),
            }
        }
    }
    let mut groups: Vec<(Vec<u8>, Vec<PortRange>)> = Vec::new();
    for (port, mut protos) in by_port {
        protos.sort_by_key(|p| {
            members
                .iter()
                .position(|&m| matches!(entries[m].svc, Svc::Port { protocol, .. } if protocol == *p))
        });
        match groups.iter_mut().find(|(p, _)| *p == protos) {
            Some((_, ports)) => ports.push(port),
            None => groups.push((protos, vec![port])),
        }
    }
    groups
}

/// One rule of the entries `members`: the direction, peers, limit and uids of `lead`,
/// the entries they merged with, and the lines, notes, comments and LOG lines of them all.
fn rule_of(
    entries: &[Entry],
    lead: &Entry,
    members: &[usize],
    protocols: Vec<u8>,
    ports: Vec<PortRange>,
    icmp: Option<(u8, bool)>,
) -> (RuleOut, RuleLogs) {
    let mut opening: Vec<usize> = members.iter().flat_map(|&m| entries[m].lines.clone()).collect();
    let mut returns: Vec<usize> = members.iter().flat_map(|&m| entries[m].returns.clone()).collect();
    let absorbed: Vec<usize> = members.iter().flat_map(|&m| entries[m].absorbed.clone()).collect();
    let mut notes: Vec<String> = members.iter().flat_map(|&m| entries[m].notes.clone()).collect();
    let mut comments: Vec<String> = members.iter().flat_map(|&m| entries[m].comments.clone()).collect();
    for v in [&mut opening, &mut returns] {
        v.sort_unstable();
        v.dedup();
    }
    if lead.returned == Returned::No {
        notes.push(ONE_WAY.to_owned());
    }
    notes.dedup();
    comments.dedup();
    let mut logs = RuleLogs::default();
    for &m in members {
        let theirs = &entries[m].logs;
        for log in &theirs.logged_by {
            if !logs.logged_by.contains(log) {
                logs.logged_by.push(log.clone());
            }
        }
        logs.unlogged.extend(&theirs.unlogged);
    }
    logs.unlogged.sort_unstable();
    logs.unlogged.dedup();
    let rule = RuleOut {
        name: String::new(),
        direction: lead.direction,
        protocols,
        ports,
        icmp,
        peers: lead.peer_list(),
        limit: lead.limit,
        per_source: lead.per_source.clone(),
        trap: lead.trap.clone(),
        uids: lead.uids.clone(),
        log: logs.all_logged(),
        one_way: lead.returned == Returned::No,
        opening,
        returns,
        absorbed,
        notes,
        comments,
    };
    (rule, logs)
}

/// The note of a rule with `returns = false`.
const ONE_WAY: &str = "returns = false: no line of the dump passes the returns of its flows (no return line, no ESTABLISHED one in the other chain), so they get none here either";

/// Names each rule after its service and direction, `-2`, `-3`, … for a name taken.
fn name_rules(rules: &mut [RuleOut]) {
    let mut names: Vec<String> = Vec::new();
    for rule in rules {
        rule.name = unique_name(&base_name(rule), &names);
        names.push(rule.name.clone());
    }
}

/// Well-known services, for rule names.
fn service_name(port: u16) -> Option<&'static str> {
    Some(match port {
        20 | 21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "dns",
        80 => "http",
        110 => "pop3",
        123 => "ntp",
        143 => "imap",
        161 => "snmp",
        389 => "ldap",
        443 => "https",
        465 => "smtps",
        514 => "syslog",
        587 => "submission",
        636 => "ldaps",
        873 => "rsync",
        993 => "imaps",
        995 => "pop3s",
        3306 => "mysql",
        5432 => "postgresql",
        _ => return None,
    })
}

/// `dns-out`, `ssh-in`, `web-in` (80 and 443), `tcp-8080-in`, `ping-in`, `unreachable-out`;
/// a trap after its list: `portscan-trap`.
fn base_name(rule: &RuleOut) -> String {
    let list = rule.trap.as_ref().map(|t| {
        let name: String = t
            .list
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' })
            .collect();
        name.trim_matches('-').to_owned()
    });
    let stem = match rule.icmp {
        _ if list.as_ref().is_some_and(|l| !l.is_empty()) => list.expect("a list's name"),
        Some((ICMP_ECHO_REQUEST, _)) => "ping".to_owned(),
        Some((ICMP_DEST_UNREACHABLE, _)) => "unreachable".to_owned(),
        Some((ICMP_TIME_EXCEEDED, _)) => "time-exceeded".to_owned(),
        Some((ICMP_PARAMETER_PROBLEM, _)) => "parameter-problem".to_owned(),
        Some((kind, _)) => format!("icmp-{kind}"),
        None => {
            let mut ports = rule.ports.clone();
            ports.sort_unstable();
            let singles: Option<Vec<u16>> =
                ports.iter().map(|p| (p.first == p.last).then_some(p.first)).collect();
            let names: Option<Vec<&str>> =
                singles.as_ref().and_then(|ports| ports.iter().map(|p| service_name(*p)).collect());
            let every_port = [PortRange { first: 1, last: u16::MAX }];
            match names {
                _ if singles.as_deref() == Some(&[80, 443]) => "web".to_owned(),
                _ if ports == every_port && rule.protocols.len() == 2 => "all".to_owned(),
                Some(mut names) => {
                    names.dedup();
                    names.join("-")
                }
                None => {
                    let protocols: Vec<&str> =
                        rule.protocols.iter().map(|p| if *p == PROTO_TCP { "tcp" } else { "udp" }).collect();
                    // A range as 1024-65535, as the policy writes it.
                    let ports: Vec<String> = ports.iter().map(|p| p.to_string().replace(':', "-")).collect();
                    format!("{}-{}", protocols.join("-"), ports.join("-"))
                }
            }
        }
    };
    // A trap admits nothing: named for what it is, not for a way in.
    let direction = match rule.direction {
        _ if rule.trap.is_some() => "trap",
        Direction::In => "in",
        Direction::Out => "out",
    };
    // The policy's names are at most 32 characters; room for "-2" and the direction.
    let room = 32 - 3 - direction.len();
    let stem = if stem.len() > room { stem[..room].trim_end_matches('-').to_owned() } else { stem };
    format!("{stem}-{direction}")
}

#[expect(clippy::maybe_infinite_iter, reason = "`taken` is finite: a free name comes")]
fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}-{n}")).find(|name| !taken.contains(name)).expect("a free name")
}
