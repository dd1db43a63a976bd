//! User-defined chains, inlined: each built-in chain's lines as a packet meets them, a
//! jump replaced by the lines of the chain it jumps to, each with the jump's matches
//! added to its own.
//!
//! A jump (`-j CHAIN`) sends what it matches through CHAIN's lines in order, and what
//! none of them decides comes back after the jump: so the jump's lines are the chain's,
//! each matching what both it and the jump match. A line no packet of the jump can
//! match (a jump for tcp, a line for udp) is never reached. A RETURN sends back what it
//! matches: an unconditional one ends the chain, the lines after it never reached; a
//! conditional one is a [`FlatLine`] of its own, which `shadow` treats as a line that
//! may take packets away from the ACCEPTs after it in the same chain (it cannot tell what
//! the caller then does with them). A goto (`-g CHAIN`) is a jump whose packets do not
//! come back: as if a RETURN of what it matched followed it; in a built-in chain, a
//! RETURN is the chain's policy. A loop of jumps, or a chain deeper than
//! [`MAX_DEPTH`], is not followed, and its jump may drop anything it matches.
use std::collections::{HashMap, HashSet};

use super::{
    Finding, Findings,
    dump::{DumpTable, words},
    spec::{Parsed, Spec, Target, parse_spec},
};

/// The deepest chain of jumps followed (iptables allows more; no script needs it).
const MAX_DEPTH: usize = 16;

/// One line of a built-in chain as a packet meets it, its user-defined chains inlined.
#[derive(Clone, Debug)]
pub(super) struct FlatLine {
    /// The dump's line the rule is on (in its own chain, for an inlined one).
    pub(super) line: usize,
    /// The rule as the dump has it; an inlined one says which jump brought it.
    pub(super) text: String,
    /// What it matches, with the matches of the jumps that brought it, in the built-in
    /// chain's name.
    pub(super) parsed: Parsed,
    /// A RETURN from a user-defined chain: the index just past that chain's last inlined
    /// line, up to which it takes packets away from the lines after it. `None` for every
    /// other line, and for a RETURN of a built-in chain (which is that chain's policy).
    pub(super) returns_until: Option<usize>,
}

/// The rule lines of `*filter` in each built-in chain's order, user-defined chains
/// inlined. What the inlining itself decides (a jump followed, a line never reached) is
/// a finding.
pub(super) fn flatten(filter: &DumpTable, findings: &mut Findings) -> Vec<FlatLine> {
    let user: HashSet<&str> = filter
        .chains
        .iter()
        .filter(|(_, _, policy, _)| policy.is_none())
        .map(|(_, c, _, _)| c.as_str())
        .collect();
    // Every declared chain, its lines or none: a jump to an empty chain comes straight back.
    let lines = user.iter().map(|chain| ((*chain).to_owned(), Vec::new())).collect();
    let mut chains = Chains { lines, reached: HashSet::new(), out: Vec::new(), findings };
    let mut top = Vec::new();
    for (line, text) in &filter.rules {
        let read = read(text);
        if user.contains(read.spec.chain.as_str()) {
            chains.lines.get_mut(&read.spec.chain).expect("declared").push((*line, text.clone(), read));
        } else {
            top.push((*line, text.clone(), read));
        }
    }
    for (line, text, parsed) in top {
        chains.expand(Meeting { line, text, parsed }, None, &mut Vec::new());
    }
    chains.list_unreached(&user);
    chains.out
}

/// A line's words parsed; a line whose words cannot be split is untranslatable, in the
/// chain its second word names.
fn read(text: &str) -> Parsed {
    match words(text) {
        Ok(words) => parse_spec(&words),
        Err(why) => {
            let chain = text.split_whitespace().nth(1).unwrap_or_default().to_owned();
            Parsed { spec: Spec { chain, ..Spec::default() }, untranslatable: Some(why) }
        }
    }
}

/// A line met on the way: its number, text and parse, before the jumps' matches.
struct Meeting {
    line: usize,
    text: String,
    parsed: Parsed,
}

/// The inlining under way.
struct Chains<'f> {
    /// Each user-defined chain's lines, parsed.
    lines: HashMap<String, Vec<(usize, String, Parsed)>>,
    /// The user-defined chains some jump reached.
    reached: HashSet<String>,
    out: Vec<FlatLine>,
    findings: &'f mut Findings,
}

/// What the rest of a chain's lines do after one of them.
enum Next {
    Go,
    /// An unconditional RETURN: nothing after it in its chain is reached.
    Returned,
}

impl Chains<'_> {
    /// One line, met by the packets that `jump` (the jumps that led here, combined; `None`
    /// in a built-in chain) sends: pushed as it is, or its chain inlined if it jumps.
    /// `stack` holds the chains being inlined, to find a loop.
    fn expand(&mut self, met: Meeting, jump: Option<&FlatLine>, stack: &mut Vec<String>) -> Next {
        let Some(mut flat) = self.combine(&met, jump) else {
            return Next::Go;
        };
        let target = met.parsed.spec.target.clone();
        match target {
            Some(Target::Other { name, goto }) if self.lines.contains_key(&name) => {
                if stack.contains(&name) || stack.len() >= MAX_DEPTH {
                    flat.parsed.untranslatable = Some(format!(
                        "the jump to {name} is not followed: {}, so it may drop whatever it matches",
                        if stack.contains(&name) { "a loop of chains" } else { "too many chains deep" }
                    ));
                    self.out.push(flat);
                    return Next::Go;
                }
                self.inline(&name, &met, &flat, stack);
                if goto {
                    // What the chain did not decide goes back past the jump's chain: in a
                    // built-in chain, to its policy (see `classify`).
                    flat.parsed.spec.target = Some(Target::Return);
                    flat.text = format!("{} (what chain {name} does not decide)", flat.text);
                    self.out.push(flat);
                }
                Next::Go
            }
            Some(Target::Return) => {
                let unconditional = met.parsed.untranslatable.is_none()
                    && met.parsed.spec.matches() == 0
                    && met.parsed.spec.in_iface.is_none()
                    && met.parsed.spec.out_iface.is_none();
                // In a built-in chain, an unconditional RETURN is its policy, which
                // `classify` reads as such.
                if unconditional && jump.is_some() {
                    return Next::Returned;
                }
                self.out.push(flat);
                Next::Go
            }
            _ => {
                self.out.push(flat);
                Next::Go
            }
        }
    }

    /// Chain `name`'s lines, for the packets of `jump` (line `met`); then its RETURNs
    /// take packets away up to here.
    fn inline(&mut self, name: &str, met: &Meeting, jump: &FlatLine, stack: &mut Vec<String>) {
        self.reached.insert(name.to_owned());
        self.findings.built_in.push(Finding {
            line: met.line,
            rule: met.text.clone(),
            why: format!("the jump to chain {name} is followed: its lines are translated here, each with this line's matches"),
        });
        let start = self.out.len();
        stack.push(name.to_owned());
        let lines = self.lines[name].clone();
        let mut returned_at = None;
        for (line, text, parsed) in lines {
            if let Some(at) = returned_at {
                self.findings.untranslated.push(Finding {
                    line,
                    rule: text,
                    why: format!("never reached: line {at} returns from chain {name} before it"),
                });
                continue;
            }
            if let Next::Returned = self.expand(Meeting { line, text, parsed }, Some(jump), stack) {
                returned_at = Some(line);
            }
        }
        stack.pop();
        let end = self.out.len();
        for flat in &mut self.out[start..] {
            if flat.parsed.spec.target == Some(Target::Return) && flat.returns_until.is_none() {
                flat.returns_until = Some(end);
            }
        }
    }

    /// `met` as the packets of `jump` meet it: both lines' matches; `None`, and a
    /// finding, if no packet the jump sends can match it.
    fn combine(&mut self, met: &Meeting, jump: Option<&FlatLine>) -> Option<FlatLine> {
        let Some(jump) = jump else {
            return Some(FlatLine {
                line: met.line,
                text: met.text.clone(),
                parsed: met.parsed.clone(),
                returns_until: None,
            });
        };
        let text = format!("{} (jumped to from line {})", met.text, jump.line);
        let Some(both) = jump.parsed.spec.and(&met.parsed.spec) else {
            self.findings.built_in.push(Finding {
                line: met.line,
                rule: text,
                why: format!("never matches what line {} sends to its chain: nothing to write", jump.line),
            });
            return None;
        };
        let (spec, why) = match both {
            Ok(spec) => (spec, None),
            Err((spec, why)) => (spec, Some(why)),
        };
        // The line's own reason first, then the jump's, then the pair's.
        let untranslatable =
            met.parsed.untranslatable.clone().or_else(|| jump.parsed.untranslatable.clone()).or(why);
        Some(FlatLine { line: met.line, text, parsed: Parsed { spec, untranslatable }, returns_until: None })
    }

    /// The lines of user-defined chains that no jump from a built-in chain reaches.
    fn list_unreached(&mut self, user: &HashSet<&str>) {
        for (chain, lines) in &self.lines {
            if self.reached.contains(chain) || !user.contains(chain.as_str()) {
                continue;
            }
            for (line, text, _) in lines {
                self.findings.built_in.push(Finding {
                    line: *line,
                    rule: text.clone(),
                    why: format!(
                        "chain {chain} is never jumped to from INPUT, OUTPUT or FORWARD: it decides nothing"
                    ),
                });
            }
        }
    }
}
