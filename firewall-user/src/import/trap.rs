//! The port-scan trap of scripts: a `-m recent` list that only DROP lines set (on ports no
//! one uses), and one check of it, `--rcheck --seconds S … -j DROP` of every packet in
//! INPUT, which drops whoever touched a trap for S seconds. Each DROP that sets the list
//! is a rule with `trap` (S as its duration); the check is their block, the blocklist's,
//! which the firewall applies before every rule, so it keeps no line after it out; a
//! `--remove` of the list after the check is built in. Read whole before the lines are
//! classified (`shadow`), since a check comes before the lines that set its list.
//!
//! Where anything does not fit, the list is no trap, and each of its lines is what it was
//! without this: the check a DROP that is not translated, which keeps the ACCEPTs after it
//! out, and says why it is no trap's block.
use std::collections::HashMap;

use firewall_common::{Direction, PROTO_TCP, PROTO_UDP};

use super::{
    chains::FlatLine,
    classify::{Flow, Role, Svc, Trap, classify},
    spec::{SourceMatch, Spec, Target},
};

/// The traps of a table, by list, and why the checks that look like a trap's block are
/// not one.
#[derive(Default)]
pub(super) struct Traps {
    pub(super) lists: HashMap<String, TrapList>,
    /// By the check's flat index: why it is no trap's block.
    pub(super) not: HashMap<usize, String>,
}

/// A list that is a trap.
pub(super) struct TrapList {
    pub(super) trap: Trap,
    /// The flat index of its check.
    pub(super) check_at: usize,
    /// The DROPs that set it, each a rule's flow with its `trap`, by flat index.
    pub(super) flows: Vec<(usize, Flow)>,
    /// The dump's lines of those DROPs.
    pub(super) lines: Vec<usize>,
}

impl Traps {
    /// The trap whose check is at flat index `at`.
    pub(super) fn checked_at(&self, at: usize) -> Option<&TrapList> {
        self.lists.values().find(|t| t.check_at == at)
    }

    /// The trap flow of the DROP at flat index `at`, which sets a trap's list.
    pub(super) fn flow_at(&self, at: usize) -> Option<&Flow> {
        self.lists.values().flat_map(|t| &t.flows).find(|(a, _)| *a == at).map(|(_, f)| f)
    }
}

/// Whether a line's target drops (DROP, REJECT).
fn drops(spec: &Spec) -> bool {
    matches!(spec.target, Some(Target::Drop | Target::Reject))
}

/// Whether a line logs and passes its packets on.
fn logs(spec: &Spec) -> bool {
    matches!(&spec.target, Some(Target::Other { name, goto: false }) if matches!(name.as_str(), "LOG" | "NFLOG" | "ULOG"))
}

/// Whether a check matches every packet of its chain: its recent match alone.
fn every_packet(spec: &Spec) -> bool {
    spec.matches() == 1 && spec.in_iface.is_none() && spec.out_iface.is_none()
}

/// Reads the table's traps.
pub(super) fn find_traps(lines: &[FlatLine], accepting: &[String]) -> Traps {
    let mut traps = Traps::default();
    let mut lists: Vec<&str> = lines
        .iter()
        .filter_map(|l| match &l.parsed.spec.source_match {
            Some(SourceMatch::Seen { list, .. }) => Some(list.as_str()),
            _ => None,
        })
        .collect();
    lists.sort_unstable();
    lists.dedup();
    for list in lists {
        let checks: Vec<usize> = (0..lines.len())
            .filter(|&at| {
                matches!(&lines[at].parsed.spec.source_match, Some(SourceMatch::Seen { list: l, .. }) if l == list)
            })
            .collect();
        let sets = set_drops(lines, list);
        for &at in &checks {
            let flat = &lines[at];
            let spec = &flat.parsed.spec;
            // A check of some packets of a list set otherwise is a per-source limit's; a
            // line not read whole, or that does not drop, says why of its own.
            if (!every_packet(spec) && !sets.as_ref().is_ok_and(|s| !s.is_empty()))
                || flat.parsed.untranslatable.is_some()
                || !drops(spec)
                || flat.returns_until.is_some()
            {
                continue;
            }
            match trap_of(lines, accepting, list, &checks, at, &sets) {
                Ok(trap) => {
                    traps.lists.insert(list.to_owned(), trap);
                }
                Err(why) => {
                    let option = spec.source_match.as_ref().expect("a check").option();
                    traps.not.insert(at, format!("{option} is no port-scan trap's block: {why}"));
                }
            }
        }
    }
    traps
}

/// The trap of `list`, checked at flat index `at` (one of `checks`), set by the DROPs
/// `sets`; or why it is none.
fn trap_of(
    lines: &[FlatLine],
    accepting: &[String],
    list: &str,
    checks: &[usize],
    at: usize,
    sets: &Result<Vec<usize>, String>,
) -> Result<TrapList, String> {
    let spec = &lines[at].parsed.spec;
    let Some(SourceMatch::Seen { seconds, hits, rcheck, .. }) = spec.source_match.clone() else {
        unreachable!("a check of a list");
    };
    if checks.len() != 1 {
        return Err(format!("{} lines check its list {list}, where a trap's has one check", checks.len()));
    }
    if !every_packet(spec) {
        return Err("it drops only some of what a source on its list sends (it has matches of its own: a protocol, ports, addresses, a state or an interface), where a trap's block drops all of it".into());
    }
    if spec.chain != "INPUT" {
        return Err(format!(
            "it is in {}: a trap blocks the sources of what comes in, where INPUT checks them",
            spec.chain
        ));
    }
    if !rcheck {
        return Err(format!(
            "--update renews a source's entry with every packet it sends while on the list, so it stays dropped until it keeps quiet for {seconds} s, where a trap's block ends {seconds} s after it was caught: only --rcheck is translated as a trap"
        ));
    }
    if hits > 1 {
        return Err(format!(
            "--hitcount {hits} catches a source once it touched a trap {hits} times within {seconds} s, where a trap catches it the first time"
        ));
    }
    if seconds == 0 {
        return Err("--seconds 0 drops no source: no trap's block".into());
    }
    let sets = sets.as_ref().map_err(Clone::clone)?;
    if sets.is_empty() {
        return Err(format!("no DROP sets its list {list}"));
    }
    if let Some(&before) = sets.iter().find(|&&s| s < at) {
        return Err(format!(
            "line {} sets its list {list} before this line checks it: each touch of the trap would renew the block, where the blocklist's entry ends {seconds} s after the first",
            lines[before].line
        ));
    }
    for (i, flat) in lines.iter().enumerate() {
        let theirs = &flat.parsed.spec;
        if theirs.recent_remove.as_deref() != Some(list) {
            continue;
        }
        if i < at || theirs.target.is_some() || flat.parsed.untranslatable.is_some() {
            return Err(format!(
                "line {} takes sources off its list {list} (--remove) before this line checks it, or decides their packets, or is not read whole: only a --remove after the check, that only forgets, is built in",
                flat.line
            ));
        }
    }
    let trap = Trap { list: list.to_owned(), seconds, check: lines[at].line };
    let mut flows = Vec::new();
    for &set in sets {
        let mut f = trap_flow(lines, accepting, list, set)?;
        f.trap = Some(trap.clone());
        flows.push((set, f));
    }
    let lines = sets.iter().map(|&set| lines[set].line).collect();
    Ok(TrapList { trap, check_at: at, flows, lines })
}

/// The flat indexes of the DROPs (or REJECTs) that set `list`, each maybe after a LOG of
/// the same packets that sets it too; or why a line that sets it is no such DROP (then
/// the list is no trap).
fn set_drops(lines: &[FlatLine], list: &str) -> Result<Vec<usize>, String> {
    let mut sets = Vec::new();
    for (at, flat) in lines.iter().enumerate() {
        let spec = &flat.parsed.spec;
        if spec.recent_set.as_deref() != Some(list) {
            continue;
        }
        let line = flat.line;
        if let Some(why) = &flat.parsed.untranslatable {
            return Err(format!("line {line}, which sets its list {list}, is not read whole: {why}"));
        }
        if spec.chain != "INPUT" {
            return Err(format!(
                "line {line} sets its list {list} in {}, where a trap's list is set in INPUT",
                spec.chain
            ));
        }
        if drops(spec) {
            sets.push(at);
            continue;
        }
        if logs(spec) {
            // The next line that decides: a DROP of the same packets that sets the list
            // (which says of its own why it is none, if it is not read whole).
            let next =
                lines[at + 1..].iter().find(|n| !(logs(&n.parsed.spec) || n.parsed.spec.target.is_none()));
            if next.is_some_and(|n| {
                let theirs = &n.parsed.spec;
                drops(theirs) && theirs.recent_set.as_deref() == Some(list) && same_matches(spec, theirs)
            }) {
                continue;
            }
            return Err(format!(
                "line {line} sets its list {list} and logs, and no DROP of the same packets that sets the list comes right after it"
            ));
        }
        let what = match &spec.target {
            Some(Target::Accept) => "admits what it matches (ACCEPT)".to_owned(),
            None => "decides nothing (no target)".to_owned(),
            Some(Target::Return) => "returns (RETURN)".to_owned(),
            Some(Target::Other { name, .. }) => format!("jumps to {name}"),
            Some(Target::Drop | Target::Reject) => unreachable!("a DROP"),
        };
        return Err(format!(
            "line {line} sets its list {list} and {what}, where a trap's list is set by DROP (or REJECT) lines only"
        ));
    }
    Ok(sets)
}

/// Whether two lines match the same packets (their targets aside).
fn same_matches(a: &Spec, b: &Spec) -> bool {
    let strip =
        |s: &Spec| Spec { target: None, comment: None, recent_set: None, chain: String::new(), ..s.clone() };
    let (a, b) = (strip(a), strip(b));
    a.covers(&b) && b.covers(&a)
}

/// The rule's flow of the DROP at flat index `at`, which sets the trap's `list`: a TCP or
/// UDP service port, inbound, that no line before it admits to the same peer (a peer of a
/// service belongs to one rule, and what that line admits never reaches the trap), nor
/// sets another trap's list for.
fn trap_flow(lines: &[FlatLine], accepting: &[String], list: &str, at: usize) -> Result<Flow, String> {
    let flat = &lines[at];
    let spec = &flat.parsed.spec;
    let line = flat.line;
    if spec.destination.is_some() || spec.in_iface.is_some() || spec.out_iface.is_some() {
        return Err(format!(
            "line {line}, which sets its list, names a host address or an interface (-d, -i): a trap is written of lines that name neither"
        ));
    }
    if !matches!(spec.protocol, Some(PROTO_TCP | PROTO_UDP)) || spec.dports.is_empty() {
        return Err(format!(
            "line {line}, which sets its list, is of no TCP or UDP service port (--dport), which a trap rule names"
        ));
    }
    let Some(f) = admitted(spec) else {
        return Err(format!("line {line}, which sets its list, is no new inbound flow a trap rule can name"));
    };
    if f.limit.is_some() || f.per_source.is_some() {
        return Err(format!(
            "line {line}, which sets its list, drops at a rate: past it, what it matches goes on"
        ));
    }
    for before in &lines[..at] {
        let theirs = &before.parsed.spec;
        let admits = before.parsed.untranslatable.is_none()
            && before.returns_until.is_none()
            && theirs.chain == "INPUT"
            && (theirs.target == Some(Target::Accept)
                || (theirs.target == Some(Target::Return) && accepting.iter().any(|c| c == "INPUT"))
                || (drops(theirs) && theirs.recent_set.as_deref().is_some_and(|l| l != list)));
        if !admits {
            continue;
        }
        if let Some(g) = admitted(theirs)
            && g.peer == f.peer
            && overlap(&g.services, &f.services)
        {
            return Err(format!(
                "line {} before line {line}, which sets its list, is a rule for the same peer and service already (a peer of a service belongs to one rule): the trap is never reached by what it admits",
                before.line
            ));
        }
    }
    Ok(f)
}

/// What a line would admit as an ACCEPT: an inbound flow it opens.
fn admitted(spec: &Spec) -> Option<Flow> {
    let accept = Spec { target: Some(Target::Accept), recent_set: None, ..spec.clone() };
    match classify(&accept) {
        Ok(Role::Flow(f)) if f.direction == Direction::In && !f.is_return => Some(f),
        _ => None,
    }
}

/// Whether some service is in both.
fn overlap(ours: &[Svc], theirs: &[Svc]) -> bool {
    ours.iter().any(|one| {
        theirs.iter().any(|other| match (one, other) {
            (Svc::Port { protocol, port }, Svc::Port { protocol: their_protocol, port: their_port }) => {
                protocol == their_protocol && port.overlaps(*their_port)
            }
            (Svc::Icmp { kind, .. }, Svc::Icmp { kind: their_kind, .. }) => kind == their_kind,
            _ => false,
        })
    })
}
