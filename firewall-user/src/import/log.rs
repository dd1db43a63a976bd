//! LOG before ACCEPT: a rule's `log = true`.
//!
//! A script logs the flows it admits with a LOG line just before the ACCEPT, matching the
//! same packets (`-j LOG --log-prefix "SSH: "`, then the same line with `-j ACCEPT`). A
//! rule with `log = true` tells the flows it admits as events, its name where the
//! prefix was. So a LOG line that covers what an ACCEPT right after it opens, with
//! nothing between them that decides a packet's fate, is that ACCEPT's `log`. Any other
//! LOG (before a DROP, or the chain's end) stays a difference: the firewall samples its
//! drops as events anyway.
use std::collections::HashMap;

use super::{
    chains::FlatLine,
    spec::{Spec, States, Target},
    write::line_list,
};

/// The targets that only note a packet and pass it on, as LOG does.
const LOG_TARGETS: [&str; 3] = ["LOG", "NFLOG", "ULOG"];

/// A LOG line that logs an ACCEPT's flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LogLine {
    pub(super) line: usize,
    /// The line as its finding names it.
    pub(super) text: String,
    /// It has `-m limit`: it logs a sample, as the events are.
    pub(super) limited: bool,
}

/// Whether a line logs and passes its packets on.
fn logs(spec: &Spec) -> bool {
    matches!(&spec.target, Some(Target::Other { name, goto: false }) if LOG_TARGETS.contains(&name.as_str()))
}

/// The LOG lines that log the flows of the ACCEPT after them, by the ACCEPT's flat index.
/// Between the two, only lines that decide nothing (other LOGs, lines with no target).
/// The LOG must be read whole and cover the packets the rule tells: the first of each
/// flow the ACCEPT opens (state NEW, whatever the ACCEPT's state says of the rest). Its
/// `-m limit` does not matter: the events are a sample too.
pub(super) fn logged_accepts(lines: &[FlatLine]) -> HashMap<usize, Vec<LogLine>> {
    let mut logged: HashMap<usize, Vec<LogLine>> = HashMap::new();
    for (at, log) in lines.iter().enumerate() {
        let spec = &log.parsed.spec;
        if !logs(spec) || log.parsed.untranslatable.is_some() {
            continue;
        }
        let Some((accept_at, accept)) = lines[at + 1..]
            .iter()
            .enumerate()
            .find(|(_, next)| !(logs(&next.parsed.spec) || next.parsed.spec.target.is_none()))
            .map(|(i, next)| (at + 1 + i, next))
        else {
            continue;
        };
        let theirs = &accept.parsed.spec;
        let told = Spec { state: Some(States { new: true, ..States::default() }), ..theirs.clone() };
        let unlimited = Spec { limit: None, ..spec.clone() };
        if theirs.target == Some(Target::Accept)
            && accept.parsed.untranslatable.is_none()
            && accept.returns_until.is_none()
            && unlimited.covers(&told)
        {
            logged.entry(accept_at).or_default().push(LogLine {
                line: log.line,
                text: log.text.clone(),
                limited: spec.limit.is_some(),
            });
        }
    }
    logged
}

/// Why a LOG line whose ACCEPT became rule `rule`, with `log = true`, is a difference.
pub(super) fn why_logged(rule: &str, log: &LogLine) -> String {
    format!(
        "translated with a difference: rule {rule} gets log = true: the flows it admits are told as events (firewall drops, serve --log-drops), named by the rule where the line's prefix was; --log-level is not kept{}",
        if log.limited {
            "; the events are sampled at their own rate, not at this line's -m limit"
        } else {
            ""
        }
    )
}

/// Why a LOG line whose ACCEPT became part of rule `rule`, whose other lines (`unlogged`)
/// no LOG logs, gives no `log`.
pub(super) fn why_partly_logged(rule: &str, unlogged: &[usize]) -> String {
    format!(
        "translated with a difference: rule {rule} is partly logged: it also admits the flows of {} {}, which no LOG line logs, so it has no log = true; LOG writes no packet here",
        if unlogged.len() == 1 { "line" } else { "lines" },
        line_list(unlogged)
    )
}
