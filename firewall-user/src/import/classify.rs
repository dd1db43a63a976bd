//! What one line of `*filter` does, in the policy's terms: a [`Role`] (an anti-spoof
//! entry, a built-in, a line that opens flows, a return, an ICMP type), or the reason it
//! is not translated.
use std::collections::HashMap;

use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED, PROTO_ICMP, protocol_name,
};

use super::{
    Finding, Findings,
    dump::{DumpTable, words},
    spec::{Rate, Spec, States, Target, parse_spec},
};
use crate::policy::Prefix;

/// What one line of `*filter` does, in the policy's terms.
#[derive(Clone, Debug)]
pub(super) enum Role {
    /// `-A INPUT -s PREFIX -j DROP` (source) or `-d PREFIX` (destination), and the
    /// interface it names.
    Antispoof { source: bool, prefix: Prefix, iface: Option<String> },
    /// Nothing to write: the firewall does it always. The reason.
    BuiltIn(&'static str),
    /// A line that admits flows (or ICMP messages) in `direction`, to or from `peer`
    /// (`None`: anyone).
    Flow(Flow),
}

#[derive(Clone, Debug)]
pub(super) struct Flow {
    /// The flow's direction: for a return line, the direction of the flow it returns.
    pub(super) direction: Direction,
    pub(super) services: Vec<Svc>,
    pub(super) peer: Option<Prefix>,
    /// The host side's address (`-d` on INPUT, `-s` on OUTPUT), to check against OURIP.
    pub(super) host: Option<Prefix>,
    pub(super) limit: Option<Rate>,
    /// A return line (ESTABLISHED, or an echo reply): it pairs with an opening line.
    pub(super) is_return: bool,
    /// The interface it names (not loopback).
    pub(super) iface: Option<String>,
    pub(super) comment: Option<String>,
}

/// A service as a rule's key: a TCP or UDP port, or an ICMP type (`related` for the
/// errors a `--state RELATED` line admits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Svc {
    Port { protocol: u8, port: u16 },
    Icmp { kind: u8, related: bool },
}

pub(super) const WHY_POLICY: &str = "an unconditional DROP is the chain's policy here: what no rule admits is dropped and counted on its policy line";
pub(super) const WHY_INVALID: &str = "the INVALID drops are built in: malformed and truncated headers, impossible TCP flag sets, fragments no sender makes and later fragments whose first did not pass are dropped on every chain (lines invalid, invalid-tcp-flags, invalid-fragment, fragment-orphan)";
pub(super) const WHY_LOOPBACK: &str =
    "loopback needs no rule: the programs sit on the public interface, so loopback traffic never meets them";
pub(super) const WHY_RETURNS: &str = "returns are built in: every rule admits the packets of the flows it opened (the exact reversed 5-tuple); for RELATED ICMP errors, write ICMP rules with related = true";
pub(super) const WHY_PROTOCOL_RETURNS: &str =
    "returns are built in: every rule admits the packets of the flows it opened (the exact reversed 5-tuple)";
pub(super) const WHY_DROP_POLICY: &str = "the chain's DROP policy is the firewall's own";

/// Classifies one parsed line; `chains` are the table's user-defined chains.
pub(super) fn classify(spec: &Spec, chains: &[String]) -> Result<Role, String> {
    let chain = spec.chain.as_str();
    if !matches!(chain, "INPUT" | "OUTPUT" | "FORWARD") {
        return Err(format!("user-defined chain {chain} is not translated"));
    }
    let accept = accepts(spec.target.as_ref().expect("parse_spec checks the target"), chains)?;
    let loopback = spec.in_iface.as_deref() == Some("lo") || spec.out_iface.as_deref() == Some("lo");
    if loopback {
        return if accept {
            Ok(Role::BuiltIn(WHY_LOOPBACK))
        } else {
            Err("a DROP on loopback cannot be expressed: loopback is not filtered here".into())
        };
    }
    if !accept {
        return classify_drop(spec);
    }
    if chain == "FORWARD" {
        return Err("FORWARD is not translated: the firewall filters this host's own traffic, and drops whatever it would forward".into());
    }
    classify_accept(spec)
}

/// Whether a line with `target` accepts (else it drops): the policy has no word for any
/// other target.
fn accepts(target: &Target, chains: &[String]) -> Result<bool, String> {
    match target {
        Target::Other { name, .. } if name == "LOG" || name == "NFLOG" || name == "ULOG" => Err(format!(
            "target {name} is not translated: the firewall counts what it drops (firewall list) but logs nothing"
        )),
        Target::Other { name, .. } if name == "REJECT" => {
            Err("target REJECT is not translated: the firewall drops, it sends no ICMP error or RST back"
                .into())
        }
        Target::Other { name, goto } if chains.contains(name) => {
            let how = if *goto { "a goto (-g)" } else { "a jump" };
            Err(format!("{how} to user-defined chain {name} is not translated"))
        }
        Target::Other { name, .. } => Err(format!("target {name} is not translated")),
        Target::Accept => Ok(true),
        Target::Drop => Ok(false),
    }
}

/// A DROP is one of three things the firewall does itself: the chain's policy (a DROP of
/// everything), the INVALID drops, or an entry of INPUT's anti-spoof lists.
fn classify_drop(spec: &Spec) -> Result<Role, String> {
    let input = spec.chain == "INPUT";
    if spec.matches() == 0 && spec.in_iface.is_none() && spec.out_iface.is_none() {
        Ok(Role::BuiltIn(WHY_POLICY))
    } else if spec.matches() == 1 && spec.state.is_some_and(States::only_invalid) {
        Ok(Role::BuiltIn(WHY_INVALID))
    } else if let (true, 1, Some(prefix), None) = (input, spec.matches(), spec.source, spec.destination) {
        Ok(Role::Antispoof { source: true, prefix, iface: spec.in_iface.clone() })
    } else if let (true, 1, None, Some(prefix)) = (input, spec.matches(), spec.source, spec.destination) {
        Ok(Role::Antispoof { source: false, prefix, iface: spec.in_iface.clone() })
    } else {
        Err("a DROP with these matches is not translated: the policy drops by default and admits by rule (only INPUT's -s and -d DROPs are its anti-spoof lists)".into())
    }
}

/// An ACCEPT on INPUT or OUTPUT: the flows of one protocol that it opens or returns.
fn classify_accept(spec: &Spec) -> Result<Role, String> {
    let Some(protocol) = spec.protocol else {
        return match spec.state {
            Some(s) if spec.matches() == 1 && !s.new && !s.invalid => Ok(Role::BuiltIn(WHY_RETURNS)),
            _ => Err("an ACCEPT of every protocol cannot be expressed: a rule names tcp, udp or icmp".into()),
        };
    };
    if spec.state.is_some_and(|s| s.invalid) {
        return Err("accepting INVALID packets cannot be expressed: they are always dropped here".into());
    }
    let accept = Accept::new(spec);
    if protocol == PROTO_ICMP { accept.icmp() } else { accept.ports(protocol) }
}

/// An ACCEPT line of one protocol, seen from the host: which way the flows it opens go,
/// and which way those whose returns it passes.
struct Accept<'a> {
    spec: &'a Spec,
    /// The direction of the flows it opens: in on INPUT, out on OUTPUT.
    here: Direction,
    /// The direction of the flows it returns, the other.
    there: Direction,
    /// Its state admits new flows (NEW, or no state match).
    opens: bool,
}

impl<'a> Accept<'a> {
    fn new(spec: &'a Spec) -> Self {
        let (here, there) = if spec.chain == "INPUT" {
            (Direction::In, Direction::Out)
        } else {
            (Direction::Out, Direction::In)
        };
        Accept { spec, here, there, opens: spec.state.is_none_or(|s| s.new) }
    }

    /// The line as a flow: `direction` is the flow's, for a return line the direction of
    /// the flow it returns.
    fn flow(&self, direction: Direction, services: Vec<Svc>, is_return: bool) -> Role {
        let spec = self.spec;
        // Which side is the host's and which the peer's.
        let inbound = spec.chain == "INPUT";
        let (peer, host) =
            if inbound { (spec.source, spec.destination) } else { (spec.destination, spec.source) };
        let iface = if inbound { spec.in_iface.clone() } else { spec.out_iface.clone() };
        Role::Flow(Flow {
            direction,
            services,
            peer,
            host,
            limit: spec.limit,
            is_return,
            iface,
            comment: spec.comment.clone(),
        })
    }

    /// `-p icmp`: an echo request opens a flow, an echo reply returns one the other way;
    /// any other type is a message of its own.
    fn icmp(&self) -> Result<Role, String> {
        let Some(kind) = self.spec.icmp_type else {
            return Err("-p icmp without --icmp-type cannot be expressed: a rule names one ICMP type".into());
        };
        let state = self.spec.state;
        match kind {
            ICMP_ECHO_REQUEST if self.opens => {
                Ok(self.flow(self.here, vec![Svc::Icmp { kind, related: false }], false))
            }
            ICMP_ECHO_REQUEST => Err("an echo-request without state NEW opens nothing: not translated".into()),
            // An echo reply is the return of a request the other way.
            ICMP_ECHO_REPLY if state.is_none_or(|s| !s.new) => {
                Ok(self.flow(self.there, vec![Svc::Icmp { kind: ICMP_ECHO_REQUEST, related: false }], true))
            }
            ICMP_ECHO_REPLY => Err(
                "an echo-reply with state NEW cannot be expressed: replies pass only as the answers of admitted requests".into(),
            ),
            _ => {
                let related = self.icmp_related(kind)?;
                Ok(self.flow(self.here, vec![Svc::Icmp { kind, related }], false))
            }
        }
    }

    /// Whether an ICMP type other than echo is admitted as RELATED (the errors of a flow):
    /// only an error can be; a state that admits neither new messages nor related ones
    /// cannot be expressed.
    fn icmp_related(&self, kind: u8) -> Result<bool, String> {
        match self.spec.state {
            None => Ok(false),
            Some(s) if s.new => Ok(false),
            Some(s) if s.related => {
                if !matches!(kind, ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM) {
                    return Err(format!(
                        "state RELATED on ICMP type {kind}, which is no error, cannot be expressed"
                    ));
                }
                Ok(true)
            }
            Some(_) => Err(format!("ICMP type {kind} with state ESTABLISHED only cannot be expressed")),
        }
    }

    /// `-p tcp` or `-p udp`: `--dport` opens flows to the service port, `--sport` passes
    /// the returns of flows the other way.
    fn ports(&self, protocol: u8) -> Result<Role, String> {
        let spec = self.spec;
        let services =
            |ports: &[u16]| ports.iter().map(|&port| Svc::Port { protocol, port }).collect::<Vec<_>>();
        match (spec.sports.is_empty(), spec.dports.is_empty()) {
            (false, false) => {
                Err("both --sport and --dport cannot be expressed: a rule matches the service port only".into())
            }
            // `-p tcp -m state --state ESTABLISHED`: the returns of every flow of the protocol.
            (true, true) if spec.matches() == 2 && !self.opens => Ok(Role::BuiltIn(WHY_PROTOCOL_RETURNS)),
            (true, true) => Err(format!(
                "{} without a port cannot be expressed: a rule names its service port",
                protocol_name(protocol).expect("tcp or udp")
            )),
            // `--dport`: the line opens flows to the service port, ours on INPUT (the peer
            // opens), the peer's on OUTPUT (this host does).
            (true, false) if self.opens => Ok(self.flow(self.here, services(&spec.dports), false)),
            (true, false) => Err(
                "state ESTABLISHED on the service port (--dport) is neither a line that opens flows nor a return: not translated".into(),
            ),
            (false, true) if !self.opens || spec.state.is_none() => {
                Ok(self.flow(self.there, services(&spec.sports), true))
            }
            (false, true) => Err(
                "--sport with state NEW cannot be expressed: a flow opened from a given source port".into(),
            ),
        }
    }
}

/// A classified line of `*filter`.
pub(super) struct Classified {
    pub(super) line: usize,
    pub(super) text: String,
    pub(super) role: Role,
}

/// `*filter` read line by line: the lines that may become rules or anti-spoof entries,
/// and where the dump passes returns (each other line is a finding).
pub(super) struct FilterLines {
    pub(super) classified: Vec<Classified>,
    /// The chains that pass every return in the dump (an ESTABLISHED catch-all, or a
    /// policy ACCEPT): there, a line that opens flows needs no return line of its own.
    pub(super) passes_returns: Vec<String>,
}

/// The tables besides `*filter`, listed as not translated. A table that only declares
/// ACCEPT chains (iptables-save prints every table the kernel has loaded) changes
/// nothing: only one with rules, or with a chain that does not accept, is listed.
pub(super) fn other_tables(tables: &[DumpTable]) -> Vec<Finding> {
    tables
        .iter()
        .filter(|t| t.name != "filter")
        .filter(|t| {
            !t.rules.is_empty()
                || t.chains.iter().any(|(_, _, p, _)| p.as_deref().is_some_and(|p| p != "ACCEPT"))
        })
        .map(|t| Finding {
            line: t.line,
            rule: format!("*{}", t.name),
            why: format!(
                "table {} ({} rule{}) is not translated: the firewall filters, it does not rewrite or mark",
                t.name,
                t.rules.len(),
                if t.rules.len() == 1 { "" } else { "s" }
            ),
        })
        .collect()
}

/// Classifies `*filter`'s chain lines, then its rule lines.
pub(super) fn classify_filter(filter: &DumpTable, findings: &mut Findings) -> FilterLines {
    let user_chains: Vec<String> =
        filter.chains.iter().filter(|(_, _, p, _)| p.is_none()).map(|(_, c, _, _)| c.clone()).collect();
    let mut passes_returns = chain_policies(filter, findings);
    let classified = classify_rules(filter, &user_chains, &mut passes_returns, findings);
    FilterLines { classified, passes_returns }
}

/// The chains' policies: DROP is the firewall's own, any other cannot be expressed, and
/// a user-defined chain is not translated. Returns the chains whose policy ACCEPT passes
/// every return.
fn chain_policies(filter: &DumpTable, findings: &mut Findings) -> Vec<String> {
    let mut passes_returns = Vec::new();
    for (line, chain, policy, rule) in &filter.chains {
        let finding = |why: String| Finding { line: *line, rule: rule.clone(), why };
        match policy.as_deref() {
            None => findings.untranslated.push(finding(format!(
                "user-defined chain {chain} is not translated (nor the rules in it, nor the jumps to it)"
            ))),
            Some("DROP") => findings.built_in.push(finding(WHY_DROP_POLICY.into())),
            Some(p) => {
                if p == "ACCEPT" {
                    passes_returns.push(chain.clone());
                }
                findings.untranslated.push(finding(format!(
                    "chain policy {p} cannot be expressed: every chain drops what no rule admits"
                )));
            }
        }
    }
    passes_returns
}

/// Each rule line parsed and classified, in order; a line after an unconditional DROP in
/// its chain is never reached. An ESTABLISHED catch-all adds its chain to
/// `passes_returns`.
fn classify_rules(
    filter: &DumpTable,
    user_chains: &[String],
    passes_returns: &mut Vec<String>,
    findings: &mut Findings,
) -> Vec<Classified> {
    let mut classified = Vec::new();
    let mut dropped_all: HashMap<String, usize> = HashMap::new();
    for (line, text) in &filter.rules {
        let finding = |why: String| Finding { line: *line, rule: text.clone(), why };
        let words = words(text);
        let chain = words.as_ref().ok().and_then(|w| w.get(1)).cloned().unwrap_or_default();
        let parsed = words.and_then(|w| parse_spec(&w));
        if let Some(at) = dropped_all.get(&chain) {
            findings
                .untranslated
                .push(finding(format!("never reached: line {at} drops everything before it")));
            continue;
        }
        match parsed.and_then(|spec| classify(&spec, user_chains)) {
            Ok(Role::BuiltIn(why)) => {
                if why == WHY_POLICY {
                    dropped_all.insert(chain, *line);
                } else if why == WHY_RETURNS {
                    passes_returns.push(chain);
                }
                findings.built_in.push(finding(why.into()));
            }
            Ok(role) => classified.push(Classified { line: *line, text: text.clone(), role }),
            Err(why) => findings.untranslated.push(finding(why)),
        }
    }
    classified
}
