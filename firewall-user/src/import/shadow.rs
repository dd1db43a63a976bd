//! The lines of each built-in chain in order: what a line that is not translated may
//! take from the lines after it. An ACCEPT after a DROP the policy cannot say, that may
//! match the same packets, is not translated either (a [`Shadow`]); nor is a line whose
//! flows' returns such a DROP may take in the other chain; where the DROP is of ports
//! only, the ACCEPT is translated without them (or of an ICMP type, or one code of it:
//! without the type). A DROP that keeps nothing out is the chain's policy's own. So an
//! import is never more open than its script. A DROP of what goes over a per-source limit
//! (recent, hashlimit, connlimit) is the `per_source` of the ACCEPTs it limits whole.
use std::collections::HashMap;

use firewall_common::{
    Direction, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, MAX_ANTISPOOF, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
};

use super::{
    Finding, Findings,
    chains::FlatLine,
    classify::{
        Classified, Connections, Flow, PassedBack, Role, SourceLimit, Svc, WHY_EVERY_ICMP_TYPE,
        WHY_EVERY_PROTOCOL, WHY_HOST_DROPPED_WHOLE, WHY_LIMIT_CHECK, WHY_POLICY, WHY_PROTOCOL_RETURNS,
        WHY_REJECT, WHY_RETURNS, WHY_SYN_ONLY, WHY_TRAP_REMOVE, classify, drop_with_matches,
        why_connections_every_packet, why_connlimit, why_recent, why_trap_check,
    },
    group::WHY_CONNECTIONS_DIFFERENCE,
    log::{LogLine, logged_accepts},
    spec::{PortRange, Rate, SourceMatch, Spec, States, Target, TcpFlags, wider},
    trap::{Traps, find_traps},
};
use crate::policy::{Per, duration_text};

/// A line not translated that may take packets away from the ACCEPTs after it: a DROP or
/// REJECT with matches the policy cannot say, a target not known, a RETURN. An ACCEPT
/// after it that may match the same packets is not translated either: alone, it would
/// admit what the script drops. Nor is a line that opens flows whose returns it may take
/// before its chain admits them. So an import is never more open than its script.
#[expect(clippy::struct_excessive_bools, reason = "what became of a shadow, each said apart in its findings")]
struct Shadow {
    /// Its flat index.
    at: usize,
    line: usize,
    /// The line as its finding names it.
    text: String,
    spec: Spec,
    /// The flat index it ends at (a RETURN's chain's end); `None`: its chain's end (a
    /// DROP's).
    until: Option<usize>,
    /// It kept some line out, or some line's returns: not a DROP the policy does anyway.
    used: bool,
    /// It took ports away from some line after it.
    narrowed: bool,
    /// Its line was read whole (only the policy cannot say it): it matches what its Spec
    /// says, no more.
    exact: bool,
    /// A DROP of what goes over a rate (`-m recent --update`, `--hashlimit-above`) or over
    /// a count of open flows (`--connlimit-above`): it is the limit of the ACCEPTs after it
    /// that it limits whole, rather than their shadow.
    check: Option<Check>,
    /// It became some line's limit: what its finding then says, and whether that is a
    /// difference (a `-m recent` check's, a connlimit's that meets every packet).
    limited: Option<(String, bool)>,
    /// The DROP of a port-scan trap: translated (as a rule with `trap`), and still the
    /// shadow of what it drops, as in the script.
    trap: bool,
}

/// A DROP of what goes over a rate (or a count of open flows), read whole.
struct Check {
    rate: SourceMatch,
    /// Only the first packet of each flow meets it (see [`Classifier::new_flows_only`]):
    /// it limits flows, as `per_source` does, not packets. (A count of open flows is one
    /// either way; where every packet meets it, the difference is listed.)
    new_flows_only: bool,
}

/// A line with `-m recent --set`, met.
struct SetLine {
    at: usize,
    line: usize,
    list: String,
    spec: Spec,
    new_flows_only: bool,
}

/// The limit a [`Check`] puts on an ACCEPT.
enum Limit {
    PerSource(SourceLimit),
    /// A global `--hashlimit-above`: the rule's own `limit`.
    Rule(Rate),
}

impl Shadow {
    /// The shadow of line `flat` (matching `spec`) at flat index `at`.
    fn of(at: usize, flat: &FlatLine, spec: &Spec, until: Option<usize>) -> Shadow {
        Shadow {
            at,
            line: flat.line,
            text: flat.text.clone(),
            spec: spec.clone(),
            until,
            used: false,
            narrowed: false,
            // A --remove matches the sources on its list only, which its Spec does not say.
            exact: flat.parsed.untranslatable.is_none() && spec.recent_remove.is_none(),
            check: None,
            limited: None,
            trap: false,
        }
    }

    /// What it is, as the lines it keeps out say.
    fn what(&self) -> &'static str {
        if self.trap { "a port-scan trap's DROP" } else { "which is not translated" }
    }

    /// What it does with the packets it takes: a RETURN's go back to their jump, a DROP's
    /// stop.
    fn takes(&self) -> &'static str {
        if self.until.is_some() { "returns" } else { "drops" }
    }

    /// Whether it may take some of the packets that `spec` matches at flat index `at`.
    fn covers(&self, at: usize, spec: &Spec) -> bool {
        self.spec.chain == spec.chain
            && self.at < at
            && self.until.is_none_or(|until| at < until)
            && self.spec.may_overlap(spec)
    }
}

/// A line that opens flows, translated, with what it matches, until its returns are
/// checked.
struct Opening {
    at: usize,
    spec: Spec,
    classified: Classified,
}

/// The classification of a table's lines under way.
#[derive(Default)]
struct Classifier {
    /// The lines translated but those that open flows, by flat index.
    classified: Vec<(usize, Classified)>,
    openings: Vec<Opening>,
    /// Chains dropped whole, and the line that did.
    dropped_all: HashMap<String, usize>,
    shadows: Vec<Shadow>,
    /// The anti-spoof entries so far: past `MAX_ANTISPOOF`, a DROP of a source is one not
    /// translated, which keeps the ACCEPTs after it out.
    antispoof: usize,
    /// What the lines translated so far that admit flows match.
    admitted: Vec<Spec>,
    /// Some line asks TCP flows to open with a bare SYN ([`FilterLines::syn_only`]).
    syn_only: bool,
    /// The built-in chains whose policy is ACCEPT: there a RETURN accepts.
    accepting: Vec<String>,
    /// The lines that pass returns (catch-alls and return lines: the flat index, the dump's
    /// line, what they match), and the chains whose policy ACCEPT does (line `None`).
    passing_returns: Vec<(usize, Option<usize>, Spec)>,
    /// The chains (and protocols, `None` for all) whose returns a line met so far passes:
    /// after it, only the first packet of a flow meets a line.
    returns_passed: Vec<(String, Option<u8>)>,
    /// The `-m recent --set` lines met so far.
    sets: Vec<SetLine>,
    /// How many lines of the table set each `-m recent` list (lists are the host's, not
    /// a chain's).
    set_counts: HashMap<String, usize>,
    /// The LOG lines that log an ACCEPT's flows, by the ACCEPT's flat index.
    logged: HashMap<usize, Vec<LogLine>>,
    /// The port-scan traps, read before the lines.
    traps: Traps,
}

/// Each line classified, in each built-in chain's order; a line after an unconditional
/// DROP in its chain is never reached, and an ACCEPT, or the returns of what it opens,
/// after a line that may drop some of them is not translated ([`Shadow`]). An
/// ESTABLISHED catch-all (of one protocol, or all) adds its chain to `passes_returns`, as
/// does an ACCEPT of everything (a policy ACCEPT reached, say).
pub(super) fn classify_rules(
    lines: &[FlatLine],
    accepting: &[String],
    passes_returns: &mut Vec<PassedBack>,
    findings: &mut Findings,
) -> (Vec<Classified>, bool) {
    let mut classifier = Classifier {
        accepting: accepting.to_vec(),
        logged: logged_accepts(lines),
        traps: find_traps(lines, accepting),
        ..Classifier::default()
    };
    for list in lines.iter().filter_map(|flat| flat.parsed.spec.recent_set.as_ref()) {
        *classifier.set_counts.entry(list.clone()).or_default() += 1;
    }
    for (at, flat) in lines.iter().enumerate() {
        classifier.line(at, flat, passes_returns, findings);
    }
    // A chain's policy ACCEPT passes the returns that reach its end, unless a DROP of
    // everything comes first: what the lines before may drop, `check_returns` weighs.
    for chain in accepting.iter().filter(|c| matches!(c.as_str(), "INPUT" | "OUTPUT")) {
        if classifier.dropped_all.contains_key(chain) {
            continue;
        }
        passes_returns.push(PassedBack { chain: chain.clone(), protocol: None });
        classifier.passing_returns.push((
            lines.len(),
            None,
            Spec { chain: chain.clone(), ..Spec::default() },
        ));
    }
    classifier.check_returns(findings);
    classifier.settle_dead_drops(findings);
    let mut classified = classifier.classified;
    classified.extend(classifier.openings.into_iter().map(|o| (o.at, o.classified)));
    classified.sort_by_key(|(at, _)| *at);
    (classified.into_iter().map(|(_, c)| c).collect(), classifier.syn_only)
}

impl Classifier {
    /// One line, in its chain's order: never reached, a RETURN's shadow, or classified and
    /// recorded where it belongs.
    fn line(
        &mut self,
        at: usize,
        flat: &FlatLine,
        passes_returns: &mut Vec<PassedBack>,
        findings: &mut Findings,
    ) {
        let policy = self.as_policy(flat);
        let spec = policy.as_ref().unwrap_or(&flat.parsed.spec);
        let finding = |why: String| Finding { line: flat.line, rule: flat.text.clone(), why };
        if let Some(dropped) = self.dropped_all.get(&spec.chain) {
            findings
                .untranslated
                .push(finding(format!("never reached: line {dropped} drops everything before it")));
            return;
        }
        if let Some(until) = flat.returns_until {
            findings.built_in.push(finding(
                "RETURN is followed: the lines after it in its chain are translated only where it returns none of what they admit".into(),
            ));
            self.shadows.push(Shadow::of(at, flat, spec, Some(until)));
            return;
        }
        if self.trap_line(at, flat, spec, findings) {
            return;
        }
        if let Some(list) = &spec.recent_set {
            let new_flows_only = self.new_flows_only(spec);
            self.sets.push(SetLine {
                at,
                line: flat.line,
                list: list.clone(),
                spec: spec.clone(),
                new_flows_only,
            });
        }
        let role = match self.traps.not.get(&at) {
            Some(why) => Err(why.clone()),
            None => self.role(flat, spec),
        };
        if spec.target == Some(Target::Reject) && role.is_ok() {
            findings.differences.push(finding(WHY_REJECT.into()));
        }
        if let Ok(Role::Antispoof { .. }) = role
            && spec.matches() > 1
        {
            findings.differences.push(finding(WHY_HOST_DROPPED_WHOLE.into()));
        }
        match role {
            Ok(Role::BuiltIn(why)) => {
                self.syn_only |= why == WHY_SYN_ONLY;
                if why == WHY_POLICY {
                    self.dropped_all.insert(spec.chain.clone(), flat.line);
                } else if why == WHY_RETURNS || why == WHY_PROTOCOL_RETURNS {
                    self.returns_passed.push((spec.chain.clone(), spec.protocol));
                    passes_returns.push(PassedBack { chain: spec.chain.clone(), protocol: spec.protocol });
                    self.passing_returns.push((at, Some(flat.line), spec.clone()));
                }
                findings.built_in.push(finding(why.into()));
            }
            Ok(Role::Different(why)) => findings.differences.push(finding(why.into())),
            Ok(Role::Flow(f)) => self.flow(at, flat, spec, f, passes_returns, findings),
            Ok(role) => {
                self.classified.push((at, Classified { line: flat.line, text: flat.text.clone(), role }));
            }
            Err(why) => {
                let loopback =
                    spec.in_iface.as_deref() == Some("lo") || spec.out_iface.as_deref() == Some("lo");
                if spec.target.as_ref().is_some_and(Target::may_drop) && !loopback {
                    let mut shadow = Shadow::of(at, flat, spec, None);
                    shadow.check = self.check(flat, spec);
                    self.shadows.push(shadow);
                }
                findings.untranslated.push(finding(why));
            }
        }
    }

    /// The lines of a port-scan trap ([`super::trap`]): its check, the block of its rules,
    /// listed with its differences; a `--remove` of its list after the check, built in; a
    /// DROP that sets its list, a rule with `trap`, and still a shadow of what it drops.
    /// `false`: no such line.
    fn trap_line(&mut self, at: usize, flat: &FlatLine, spec: &Spec, findings: &mut Findings) -> bool {
        let finding = |why: String| Finding { line: flat.line, rule: flat.text.clone(), why };
        if let Some(trap) = self.traps.checked_at(at) {
            // INPUT's returns pass before it: a caught source's flows go on, as here.
            let ahead = !self.returns_passed.iter().any(|(chain, p)| chain == "INPUT" && p.is_none());
            let mut admitted: Vec<usize> =
                self.openings.iter().filter(|o| o.spec.chain == "INPUT").map(|o| o.classified.line).collect();
            admitted.dedup();
            let duration = duration_text(u64::from(trap.trap.seconds));
            findings.differences.push(finding(why_trap_check(&duration, &trap.lines, ahead, &admitted)));
            if spec.target == Some(Target::Reject) {
                findings.differences.push(finding(WHY_REJECT.into()));
            }
            return true;
        }
        if spec.recent_remove.as_ref().is_some_and(|list| self.traps.lists.contains_key(list)) {
            findings.built_in.push(finding(WHY_TRAP_REMOVE.into()));
            return true;
        }
        let Some(f) = self.traps.flow_at(at).cloned() else {
            return false;
        };
        if spec.target == Some(Target::Reject) {
            findings.differences.push(finding(WHY_REJECT.into()));
        }
        // What it drops, iptables drops there: the lines after it do not admit it.
        self.shadows.push(Shadow { trap: true, ..Shadow::of(at, flat, spec, None) });
        self.classified
            .push((at, Classified { line: flat.line, text: flat.text.clone(), role: Role::Flow(f) }));
        true
    }

    /// A RETURN in a built-in chain (or the end of a goto's chain) is that chain's policy:
    /// the line as an ACCEPT or a DROP. `None` for every other line.
    fn as_policy(&self, flat: &FlatLine) -> Option<Spec> {
        let spec = &flat.parsed.spec;
        (spec.target == Some(Target::Return) && flat.returns_until.is_none()).then(|| {
            let accepts = self.accepting.contains(&spec.chain);
            Spec { target: Some(if accepts { Target::Accept } else { Target::Drop }), ..spec.clone() }
        })
    }

    /// What the line is, as `classify` says, but for anti-spoof entries the lists have no
    /// room for, or that would take from a line before what it admits.
    fn role(&mut self, flat: &FlatLine, spec: &Spec) -> Result<Role, String> {
        let role = match &flat.parsed.untranslatable {
            Some(why) => Err(why.clone()),
            None => classify(spec),
        };
        match role {
            Ok(Role::Antispoof { .. }) if self.antispoof >= MAX_ANTISPOOF as usize => Err(format!(
                "the anti-spoof lists are full ({MAX_ANTISPOOF} entries): a longer list of addresses to drop is the blocklist's (firewall block)"
            )),
            // A host dropped on some ports, that a line before admits something of: dropped
            // whole it would lose what that line admits (a chain's last DROP behind its
            // ACCEPT of the host's SYNs, say). A DROP not translated instead.
            Ok(Role::Antispoof { .. })
                if spec.matches() > 1
                    && self.admitted.iter().any(|a| a.chain == spec.chain && a.may_overlap(spec)) =>
            {
                Err(drop_with_matches(spec))
            }
            Ok(Role::Antispoof { .. }) => {
                self.antispoof += 1;
                role
            }
            role => role,
        }
    }

    /// A line that admits flows: translated, its ports narrowed where a DROP before it
    /// takes some of them from it; or, where one may take packets it cannot narrow away,
    /// not translated.
    fn flow(
        &mut self,
        at: usize,
        flat: &FlatLine,
        spec: &Spec,
        mut f: Flow,
        passes_returns: &mut Vec<PassedBack>,
        findings: &mut Findings,
    ) {
        let finding = |why: String| Finding { line: flat.line, rule: flat.text.clone(), why };
        if f.per_source.is_some()
            && let Some(why) = self.no_per_source(spec, &f)
        {
            findings.untranslated.push(finding(why));
            return;
        }
        // The line's own `--connlimit-upto`: its count is this line's.
        let every_packet = !self.new_flows_only(spec);
        let own_connections = f.per_source.as_mut().and_then(|p| p.connections.as_mut()).map(|c| {
            c.line = flat.line;
            c.every_packet = every_packet;
            c.count
        });
        // The lines of the rate and the cap, to say which the script asks first.
        let mut rate_line = f.per_source.as_ref().filter(|p| p.rate.is_some()).map(|_| flat.line);
        let mut cap_line = own_connections.map(|_| flat.line);
        // A return's packets go to the client's port, which a line that does not name it
        // takes to be a client's (as `return_spec` does).
        let seen = match (f.is_return, spec.protocol) {
            (true, Some(PROTO_TCP | PROTO_UDP)) if spec.dports.is_empty() => {
                Spec { dports: vec![CLIENT_PORTS], ..spec.clone() }
            }
            _ => spec.clone(),
        };
        for i in 0..self.shadows.len() {
            if !self.shadows[i].covers(at, &seen) || self.shadows[i].check.is_none() {
                continue;
            }
            match self.limit(&self.shadows[i], spec, &f) {
                Ok(limit) => {
                    let shadow = &mut self.shadows[i];
                    let check = shadow.check.as_ref().expect("a check");
                    shadow.limited = Some(match (&check.rate, &limit) {
                        (SourceMatch::Connections { count, .. }, _) => {
                            (why_connlimit(*count, !check.new_flows_only), !check.new_flows_only)
                        }
                        (
                            SourceMatch::Seen { .. },
                            Limit::PerSource(SourceLimit { rate: Some(rate), .. }),
                        ) => (why_recent(*rate), true),
                        _ => (WHY_LIMIT_CHECK.to_owned(), false),
                    });
                    // A hashlimit charges what it lets through, whatever comes after it; a
                    // recent list counts what its --set line sees, said apart.
                    match check.rate {
                        SourceMatch::Connections { .. } => cap_line = Some(shadow.line),
                        SourceMatch::Above { .. } => rate_line = Some(shadow.line),
                        SourceMatch::Seen { .. } | SourceMatch::Upto { .. } => {}
                    }
                    match limit {
                        Limit::PerSource(limit) => f.per_source = Some(limit),
                        Limit::Rule(rate) => f.limit = Some(rate),
                    }
                }
                Err(why) => {
                    let shadow = &mut self.shadows[i];
                    shadow.used = true;
                    findings.untranslated.push(finding(format!(
                        "not translated, to be no more open than the script: line {}, which is not translated, drops some of what this line admits; as its limit it does not fit: {why}",
                        shadow.line
                    )));
                    return;
                }
            }
        }
        if let (Some(rate), Some(cap)) = (rate_line, cap_line)
            && rate < cap
            && let Some(c) = f.per_source.as_mut().and_then(|p| p.connections.as_mut())
        {
            c.rate_first = Some(rate);
        }
        for shadow in self.shadows.iter_mut().filter(|s| s.covers(at, &seen) && s.check.is_none()) {
            // A return line's services are its source ports: a DROP's ports are not theirs.
            let narrow = if f.is_return { None } else { narrowed(&f.services, &shadow.spec, spec) };
            match narrow {
                Some(services) if !services.is_empty() => {
                    f.services = services;
                    shadow.narrowed = true;
                    if !shadow.exact {
                        findings.differences.push(finding(format!(
                            "translated without the {} that line {}, which is not translated, may drop first",
                            what_it_takes(&shadow.spec),
                            shadow.line
                        )));
                    }
                }
                _ => {
                    shadow.used = true;
                    findings.untranslated.push(finding(format!(
                        "not translated, to be no more open than the script: line {}, {}, {} some of what this line admits",
                        shadow.line,
                        shadow.what(),
                        shadow.takes()
                    )));
                    return;
                }
            }
        }
        self.syn_only |= spec.tcp_flags == Some(TcpFlags::SYN);
        self.admitted.push(spec.clone());
        for why in flow_differences(spec, &f) {
            findings.differences.push(finding(why.into()));
        }
        if let Some(count) = own_connections.filter(|_| every_packet) {
            findings.differences.push(finding(format!(
                "{WHY_CONNECTIONS_DIFFERENCE}{count}: {}",
                why_connections_every_packet(count)
            )));
        }
        if let (Some(name), Some(uids)) = (&spec.owner_name, spec.owner) {
            findings.differences.push(finding(format!(
                "translated with a difference: user {name} is uid {uids} where the import ran, and the policy names the uid; check it is {name}'s where the policy runs"
            )));
        }
        if !f.is_return {
            f.logged_by = self.logged.remove(&at).unwrap_or_default();
        }
        // An ACCEPT of every protocol to any peer (and every user) that does not ask for
        // NEW only passes every return of its chain, as a catch-all does.
        let peer_side = if spec.chain == "INPUT" { spec.source } else { spec.destination };
        if spec.protocol.is_none()
            && peer_side.is_none()
            && spec.owner.is_none()
            && spec.state.is_none_or(|s| s.established)
        {
            passes_returns.push(PassedBack { chain: spec.chain.clone(), protocol: None });
            self.passing_returns.push((at, Some(flat.line), spec.clone()));
        }
        let is_return = f.is_return;
        let classified = Classified { line: flat.line, text: flat.text.clone(), role: Role::Flow(f) };
        if is_return {
            self.passing_returns.push((at, Some(flat.line), spec.clone()));
            self.classified.push((at, classified));
        } else {
            self.openings.push(Opening { at, spec: spec.clone(), classified });
        }
    }

    /// The lines that open flows whose returns, in the other chain, a line not translated
    /// may drop before the first line there that passes them: not translated. (Where no
    /// line passes them, the grouping lists the difference.)
    fn check_returns(&mut self, findings: &mut Findings) {
        let shadows = &mut self.shadows;
        let passing = &self.passing_returns;
        self.openings.retain(|opening| {
            let Some(returns) = return_spec(&opening.spec) else {
                return true;
            };
            // The shadows are few and the lines that pass returns may be one a peer: those
            // are searched only for the returns some shadow may take.
            if !shadows.iter().any(|s| s.spec.chain == returns.chain && s.spec.may_overlap(&returns)) {
                return true;
            }
            let Some((passed_at, passed_by)) = passing
                .iter()
                .filter(|(_, _, spec)| spec.may_overlap(&returns))
                .map(|(at, line, _)| (*at, *line))
                .min()
            else {
                return true;
            };
            let Some(shadow) = shadows.iter_mut().find(|s| s.covers(passed_at, &returns)) else {
                return true;
            };
            shadow.used = true;
            findings.untranslated.push(Finding {
                line: opening.classified.line,
                rule: opening.classified.text.clone(),
                why: format!(
                    "not translated, to be no more open than the script: line {}, {}, {} some of the returns of the flows this line opens before {} passes them",
                    shadow.line,
                    shadow.what(),
                    shadow.takes(),
                    passed_by.map_or("the chain's policy ACCEPT".to_owned(), |line| format!("line {line}")),
                ),
            });
            false
        });
    }
}

impl Classifier {
    /// The DROPs not translated that kept nothing out: no line after them admits what
    /// they drop, nor passes the returns of what they drop, so the chain's policy drops it
    /// there too. Nothing to write: they move from the untranslated to the built in.
    fn settle_dead_drops(&self, findings: &mut Findings) {
        for shadow in self.shadows.iter().filter(|s| !s.used && s.until.is_none()) {
            let Some(at) =
                findings.untranslated.iter().position(|f| f.line == shadow.line && f.rule == shadow.text)
            else {
                continue;
            };
            let finding = findings.untranslated.remove(at);
            if let Some((why, difference)) = &shadow.limited {
                if shadow.spec.target == Some(Target::Reject) {
                    findings.differences.push(Finding { why: WHY_REJECT.into(), ..finding.clone() });
                }
                let list = if *difference { &mut findings.differences } else { &mut findings.built_in };
                list.push(Finding { why: why.clone(), ..finding });
                continue;
            }
            let why = match (shadow.narrowed, shadow.exact) {
                (false, _) => format!(
                    "no line after it admits what it drops, so the chain's policy drops it here too (the line itself is not expressible: {})",
                    finding.why
                ),
                (true, true) => {
                    if shadow.spec.target == Some(Target::Reject) {
                        findings.differences.push(Finding { why: WHY_REJECT.into(), ..finding.clone() });
                    }
                    if shadow.spec.protocol == Some(PROTO_ICMP) {
                        "translated: the lines after it that admit ICMP admit the other types only".to_owned()
                    } else {
                        "translated: the lines after it that admit some of its ports admit the others only"
                            .to_owned()
                    }
                }
                // Its ports left out of the lines after it, which say so.
                (true, false) => {
                    findings.untranslated.push(finding);
                    continue;
                }
            };
            findings.built_in.push(Finding { why, ..finding });
        }
    }
}

impl Classifier {
    /// Whether only the first packet of each flow meets a line: it asks for state NEW
    /// only, or a SYN, or a line before it in its chain passes the returns of its protocol.
    fn new_flows_only(&self, spec: &Spec) -> bool {
        spec.state.is_some_and(|s| s.new && !s.established && !s.related)
            || spec.tcp_flags == Some(TcpFlags::SYN)
            || self.returns_passed.iter().any(|(chain, protocol)| {
                *chain == spec.chain && (protocol.is_none() || *protocol == spec.protocol)
            })
    }

    /// A DROP or REJECT of what goes over a rate (or a count of open flows), read whole: a
    /// [`Check`].
    fn check(&self, flat: &FlatLine, spec: &Spec) -> Option<Check> {
        let rate = spec.source_match.clone().filter(|m| {
            !matches!(m, SourceMatch::Upto { .. } | SourceMatch::Connections { above: false, .. })
        })?;
        let drops = matches!(spec.target, Some(Target::Drop | Target::Reject));
        (drops && flat.parsed.untranslatable.is_none())
            .then(|| Check { rate, new_flows_only: self.new_flows_only(spec) })
    }

    /// Why a line's own per-source limit (`--hashlimit-upto`, mode srcip, or
    /// `--connlimit-upto`) cannot be its rule's `per_source`, if it cannot. A cap on the
    /// flows open at once counts flows, whatever packets meet the line (the difference is
    /// listed), and ICMP messages other than pings are none.
    fn no_per_source(&self, spec: &Spec, f: &Flow) -> Option<String> {
        let per_source = f.per_source.as_ref()?;
        if f.is_return || f.direction != Direction::In {
            Some("a per-source limit is translated on inbound flows only: per_source limits the sources of new inbound flows".into())
        } else if per_source.rate.is_some() && !self.new_flows_only(spec) {
            Some(format!("{NOT_FLOWS}, where per_source limits new flows"))
        } else if per_source.connections.is_some()
            && f.services.iter().any(|s| matches!(s, Svc::Icmp { kind, .. } if *kind != ICMP_ECHO_REQUEST))
        {
            Some(NOT_FLOWS_ICMP.into())
        } else {
            None
        }
    }

    /// The limit that `shadow`'s check puts on an ACCEPT after it (`accept`, flow `f`), or
    /// why it cannot be one: then the ACCEPT is kept out.
    fn limit(&self, shadow: &Shadow, accept: &Spec, f: &Flow) -> Result<Limit, String> {
        let check = shadow.check.as_ref().expect("a check");
        if f.is_return {
            return Err("it limits returns".into());
        }
        // A cap on the flows open at once counts flows whatever packets meet it (the
        // difference is listed); a rate of packets is no rate of flows.
        if !check.new_flows_only && !matches!(check.rate, SourceMatch::Connections { .. }) {
            return Err(NOT_FLOWS.into());
        }
        if !limits_whole(&shadow.spec, accept) {
            return Err(
                "it limits only some of the packets this line admits, or more than its service and peers"
                    .into(),
            );
        }
        let rate = match &check.rate {
            SourceMatch::Above { rate, per_source: false, .. } => {
                if f.limit.is_some() {
                    return Err("this line has a limit already".into());
                }
                if accept.source != shadow.spec.source {
                    return Err("its one bucket counts other peers' flows too".into());
                }
                return Ok(Limit::Rule(*rate));
            }
            _ if f.direction != Direction::In => {
                return Err(
                    "per_source limits the sources of inbound flows, and this line's are outbound".into()
                );
            }
            SourceMatch::Above { name, rate, prefix, .. } => {
                SourceLimit::rate(*rate, name.clone(), None, *prefix)
            }
            SourceMatch::Seen { list, seconds, hits, .. } => {
                let count = self.recent_count(shadow, accept, list, *hits)?;
                // `count` at once, then one a window and a second: so no window of
                // `seconds` holds more than `count`, as with recent. A bucket refilling
                // `count` a window would let twice as many through one window.
                let rate = Rate { count: 1, unit: Per::Window(seconds.saturating_add(1)), burst: count };
                SourceLimit::rate(rate, list.clone(), Some(shadow.line), 32)
            }
            SourceMatch::Connections { count, prefix, .. } => SourceLimit {
                rate: None,
                bucket: String::new(),
                recent_line: None,
                connections: Some(Connections {
                    count: *count,
                    line: shadow.line,
                    every_packet: !check.new_flows_only,
                    rate_first: None,
                }),
                prefix: *prefix,
            },
            SourceMatch::Upto { .. } => unreachable!("not a check"),
        };
        match &f.per_source {
            None => Ok(Limit::PerSource(rate)),
            Some(theirs) => both_limits(theirs, rate).map(Limit::PerSource),
        }
    }

    /// How many new flows in its window a `-m recent` check (`shadow`, of `list`, at
    /// `hits`) leaves each source of `accept`: one line sets the list, on the same new
    /// flows; before the check, the attempt that hits is counted (`hits` - 1 pass); on the
    /// ACCEPT after it, only the flows admitted are (`hits` pass).
    fn recent_count(&self, shadow: &Shadow, accept: &Spec, list: &str, hits: u32) -> Result<u32, String> {
        let sets = self.set_counts.get(list).copied().unwrap_or(0);
        if sets != 1 {
            return Err(format!(
                "{sets} lines set its list {list} (--set): it is a per-source limit when one line does, on the packets it checks"
            ));
        }
        let count = if accept.recent_set.as_deref() == Some(list) {
            hits
        } else {
            let Some(set) = self.sets.iter().find(|s| s.list == list && s.at < shadow.at) else {
                return Err(format!(
                    "the line that sets its list {list} (--set) is not before it, nor this line"
                ));
            };
            if !same_packets(&set.spec, &shadow.spec) {
                return Err(format!(
                    "line {} sets its list {list} (--set) on other packets than it checks",
                    set.line
                ));
            }
            if !set.new_flows_only {
                return Err(format!("line {}, which sets its list {list}, {NOT_FLOWS}", set.line));
            }
            hits - 1
        };
        if count == 0 {
            return Err("--hitcount 1 after the --set drops every new flow".into());
        }
        Ok(count)
    }
}

/// Why a rate of packets is not one of flows.
const NOT_FLOWS: &str = "it limits every packet (no state NEW, no --syn, no ESTABLISHED line before it), not only the first of each flow";

/// Why a connlimit on ICMP other than pings is not translated.
const NOT_FLOWS_ICMP: &str = "per_source.connections counts the flows a rule opens, and ICMP messages other than echo requests (ICMP of every type, every protocol) are no flows: their cap would not be kept";

/// A line's per-source limit (`theirs`: its own, or a check's before) and a check's
/// after it (`ours`), as one `per_source`: a rate and a cap on the flows open at once, of
/// one source prefix. Two rates, two caps, or two prefixes are not.
fn both_limits(theirs: &SourceLimit, ours: SourceLimit) -> Result<SourceLimit, String> {
    if theirs.rate.is_some() && ours.rate.is_some() {
        return Err("this line has a per-source limit already".into());
    }
    if let Some(c) = theirs.connections.filter(|_| ours.connections.is_some()) {
        return Err(format!(
            "this line's flows are capped already, by the -m connlimit of line {}: two caps on a source's open flows are not translated",
            c.line
        ));
    }
    if theirs.prefix != ours.prefix {
        return Err(format!(
            "it counts a source by its /{} prefix, and this line's other per-source limit by its /{}: per_source has one prefix for its rate and its connections",
            ours.prefix, theirs.prefix
        ));
    }
    let (rated, capped) = if theirs.rate.is_some() { (theirs.clone(), ours) } else { (ours, theirs.clone()) };
    Ok(SourceLimit { connections: capped.connections, ..rated })
}

/// Whether a check (`drop`) limits all an ACCEPT after it admits, and nothing of
/// another service: the same protocol and service ports, its addresses and interfaces
/// as wide; new flows whatever their flags but the SYN.
fn limits_whole(drop: &Spec, accept: &Spec) -> bool {
    let mut theirs = drop.dports.clone();
    let mut ours = accept.dports.clone();
    theirs.sort_unstable();
    ours.sort_unstable();
    drop.protocol.is_some()
        && drop.protocol == accept.protocol
        && !theirs.is_empty()
        && theirs == ours
        && drop.sports.is_empty()
        && drop.tcp_flags.is_none_or(|f| f == TcpFlags::SYN)
        && !drop.fragment
        && drop.limit.is_none()
        && as_wide(drop, accept)
}

/// Whether two lines match the same packets but for their state, flags and targets.
fn same_packets(a: &Spec, b: &Spec) -> bool {
    let ports = |p: &[PortRange]| {
        let mut p = p.to_vec();
        p.sort_unstable();
        p
    };
    a.protocol == b.protocol
        && ports(&a.dports) == ports(&b.dports)
        && ports(&a.sports) == ports(&b.sports)
        && a.source == b.source
        && a.destination == b.destination
        && a.in_iface == b.in_iface
        && a.out_iface == b.out_iface
}

/// Whether a DROP's addresses, interfaces and users are at least an ACCEPT's.
fn as_wide(drop: &Spec, accept: &Spec) -> bool {
    let same_or_any = |d: &Option<String>, a: &Option<String>| d.is_none() || d == a;
    wider(drop.source, accept.source)
        && wider(drop.destination, accept.destination)
        && same_or_any(&drop.in_iface, &accept.in_iface)
        && same_or_any(&drop.out_iface, &accept.out_iface)
        && drop.owner.is_none_or(|d| accept.owner.is_some_and(|a| d.contains(a)))
}

/// The ports a client's end of a flow is taken to have where a line does not name them.
const CLIENT_PORTS: PortRange = PortRange { first: 1024, last: u16::MAX };

/// What a DROP that narrows the lines after it takes from them: ports, or an ICMP type.
fn what_it_takes(drop: &Spec) -> &'static str {
    if drop.protocol == Some(PROTO_ICMP) { "ICMP type" } else { "ports" }
}

/// `services` without the ports a DROP before them takes: where the DROP is of TCP or UDP
/// ports (`--dport`), or of an ICMP type (`--icmp-type 13`, a timestamp request, before
/// an ACCEPT of ICMP), at least as wide as the ACCEPT (`accept`) in everything else, so
/// that there it drops all the ACCEPT would admit. `None`: it is not such a DROP.
fn narrowed(services: &[Svc], drop: &Spec, accept: &Spec) -> Option<Vec<Svc>> {
    let only_that = drop.sports.is_empty()
        && drop.tcp_flags.is_none()
        && !drop.fragment
        && drop.limit.is_none()
        && drop.source_match.is_none()
        && drop.state.is_none_or(|s| s.new)
        && as_wide(drop, accept);
    if drop.protocol == Some(PROTO_ICMP) {
        let kind = drop.icmp_type.filter(|_| only_that && drop.dports.is_empty())?;
        return Some(
            services
                .iter()
                .copied()
                .filter(|s| !matches!(s, Svc::Icmp { kind: k, .. } if *k == kind))
                .collect(),
        );
    }
    let protocol = drop.protocol.filter(|p| matches!(*p, PROTO_TCP | PROTO_UDP))?;
    if !only_that || drop.dports.is_empty() {
        return None;
    }
    let mut left = Vec::new();
    for svc in services {
        match *svc {
            Svc::Port { protocol: p, port } if p == protocol => {
                left.extend(
                    subtract(port, &drop.dports).into_iter().map(|port| Svc::Port { protocol: p, port }),
                );
            }
            other => left.push(other),
        }
    }
    Some(left)
}

/// The parts of `range` outside every one of `taken`.
fn subtract(range: PortRange, taken: &[PortRange]) -> Vec<PortRange> {
    let mut parts = vec![range];
    for t in taken {
        parts = parts
            .into_iter()
            .flat_map(|p| {
                if !p.overlaps(*t) {
                    return vec![p];
                }
                let mut kept = Vec::new();
                if p.first < t.first {
                    kept.push(PortRange { first: p.first, last: t.first - 1 });
                }
                if t.last < p.last {
                    kept.push(PortRange { first: t.last + 1, last: p.last });
                }
                kept
            })
            .collect();
    }
    parts
}

/// What the returns of the flows an opening line admits match, in the other chain: the
/// addresses, interfaces and ports the other way round, state ESTABLISHED; the peer's
/// port, where the line does not name it, a client's (1024 to 65535). `None`: a message
/// with no returns (an ICMP error).
fn return_spec(opening: &Spec) -> Option<Spec> {
    let icmp_type = match (opening.protocol, opening.icmp_type) {
        (Some(PROTO_ICMP), Some(ICMP_ECHO_REQUEST)) => Some(ICMP_ECHO_REPLY),
        (Some(PROTO_ICMP), _) => return None,
        _ => None,
    };
    let chain = if opening.chain == "INPUT" { "OUTPUT" } else { "INPUT" };
    Some(Spec {
        chain: chain.to_owned(),
        source: opening.destination,
        destination: opening.source,
        in_iface: opening.out_iface.clone(),
        out_iface: opening.in_iface.clone(),
        protocol: opening.protocol,
        sports: opening.dports.clone(),
        dports: if opening.sports.is_empty() { vec![CLIENT_PORTS] } else { opening.sports.clone() },
        icmp_type,
        state: Some(States { established: true, ..States::default() }),
        ..Spec::default()
    })
}

/// What a line that admits flows does otherwise than the firewall, though translated.
fn flow_differences(spec: &Spec, f: &Flow) -> Vec<&'static str> {
    let mut whys = Vec::new();
    if spec.protocol == Some(PROTO_ICMP) && spec.icmp_type.is_none() && !f.is_return {
        whys.push(WHY_EVERY_ICMP_TYPE);
    }
    if spec.protocol.is_none() {
        whys.push(WHY_EVERY_PROTOCOL);
    }
    whys
}
