//! What one line of `*filter` does, in the policy's terms: a [`Role`] (an anti-spoof
//! entry, a built-in, a line that opens flows, a return, an ICMP type), or the reason it
//! is not translated.
use std::collections::HashMap;

use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED, MAX_ANTISPOOF, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST,
    TCP_SYN, TCP_URG, protocol_name, tcp_flags_valid,
};

use super::{
    Finding, Findings,
    chains::{FlatLine, flatten},
    dump::DumpTable,
    spec::{Parsed, PortRange, Rate, Spec, States, Target, TcpFlags},
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
    /// Nothing to write, but the firewall does not do exactly what the line does: why.
    Different(&'static str),
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
    /// A TCP or UDP port, or a range of them.
    Port {
        protocol: u8,
        port: PortRange,
    },
    Icmp {
        kind: u8,
        related: bool,
    },
}

pub(super) const WHY_POLICY: &str = "an unconditional DROP is the chain's policy here: what no rule admits is dropped and counted on its policy line";
pub(super) const WHY_INVALID: &str = "the INVALID drops are built in: malformed and truncated headers, impossible TCP flag sets, fragments no sender makes and later fragments whose first did not pass are dropped on every chain (lines invalid, invalid-tcp-flags, invalid-fragment, fragment-orphan)";
pub(super) const WHY_LOOPBACK: &str =
    "loopback needs no rule: the programs sit on the public interface, so loopback traffic never meets them";
pub(super) const WHY_RETURNS: &str = "returns are built in: every rule admits the packets of the flows it opened (the exact reversed 5-tuple); for RELATED ICMP errors, write ICMP rules with related = true";
pub(super) const WHY_PROTOCOL_RETURNS: &str =
    "returns are built in: every rule admits the packets of the flows it opened (the exact reversed 5-tuple)";
pub(super) const WHY_DROP_POLICY: &str = "the chain's DROP policy is the firewall's own";

pub(super) const WHY_COUNT_ONLY: &str = "a line with no target only counts what it matches and passes it on: firewall list counts every line that decides";
pub(super) const WHY_LOG: &str = "translated with a difference: LOG writes no packet here; the firewall samples what it drops as events (firewall drops, serve --log-drops), each naming the line that dropped it, and counts every line's packets (firewall list)";
pub(super) const WHY_FRAGMENTS: &str = "translated with a difference: a later fragment passes here only after its datagram's first fragment passed, on that line, and drops otherwise (fragment-orphan); netfilter with conntrack reassembles datagrams before the filter table, where -f then matches nothing";
pub(super) const WHY_SYN_ONLY: &str = "TCP flows open with a bare SYN only: [conntrack] tcp_loose = false, written below (netfilter's nf_conntrack_tcp_loose=0)";

/// Classifies one line, its user-defined chains inlined: in a built-in chain, with a
/// target of iptables' own.
pub(super) fn classify(spec: &Spec) -> Result<Role, String> {
    let chain = spec.chain.as_str();
    if !matches!(chain, "INPUT" | "OUTPUT" | "FORWARD") {
        return Err(format!("chain {chain} is not declared in the dump: not translated"));
    }
    let Some(target) = &spec.target else {
        return Ok(Role::BuiltIn(WHY_COUNT_ONLY));
    };
    if let Target::Other { name, .. } = target
        && matches!(name.as_str(), "LOG" | "NFLOG" | "ULOG")
    {
        return Ok(Role::Different(WHY_LOG));
    }
    let accept = accepts(target)?;
    if spec.fragment {
        return match (accept, spec.matches()) {
            (false, 1) => Ok(Role::Different(WHY_FRAGMENTS)),
            (false, _) => Err("a DROP of later fragments (-f) with other matches is not translated".into()),
            (true, _) => Err("an ACCEPT of later fragments (-f) cannot be expressed: a later fragment passes only after its datagram's first fragment did".into()),
        };
    }
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

/// Whether a line with `target` accepts (else it drops: DROP, REJECT, and RETURN in a
/// built-in chain, which applies its policy); the policy has no word for any other target.
fn accepts(target: &Target) -> Result<bool, String> {
    match target {
        Target::Other { name, .. } => Err(format!("target {name} is not translated")),
        Target::Accept => Ok(true),
        Target::Drop | Target::Reject | Target::Return => Ok(false),
    }
}

/// A DROP is one of four things the firewall does itself: the chain's policy (a DROP of
/// everything), the INVALID drops (by state, or TCP flag sets no connection has), an
/// entry of INPUT's anti-spoof lists (with a stated difference, one host dropped on some
/// ports only); or, with a stated difference, a TCP flag test that the built-in one
/// nearly matches.
fn classify_drop(spec: &Spec) -> Result<Role, String> {
    let input = spec.chain == "INPUT";
    let ifaces = spec.in_iface.is_some() || spec.out_iface.is_some();
    if spec.matches() == 0 && !ifaces {
        Ok(Role::BuiltIn(WHY_POLICY))
    } else if spec.matches() == 1 && spec.state.is_some_and(States::only_invalid) {
        Ok(Role::BuiltIn(WHY_INVALID))
    } else if let Some(role) = tcp_flags_drop(spec) {
        role
    } else if let (true, 1, Some(prefix), None) = (input, spec.matches(), spec.source, spec.destination) {
        Ok(Role::Antispoof { source: true, prefix, iface: spec.in_iface.clone() })
    } else if let (true, 1, None, Some(prefix)) = (input, spec.matches(), spec.source, spec.destination) {
        Ok(Role::Antispoof { source: false, prefix, iface: spec.in_iface.clone() })
    } else if let (true, Some(host), None) = (input, spec.source.filter(|p| p.len == 32), spec.destination) {
        // One host dropped on some ports (fail2ban's bans): dropped whole, which is more
        // closed, where leaving it out would open the ACCEPTs after it to the host.
        Ok(Role::Antispoof { source: true, prefix: host, iface: spec.in_iface.clone() })
    } else {
        Err(drop_with_matches(spec))
    }
}

/// Why a DROP (or REJECT) with matches the policy cannot say is not translated.
fn drop_with_matches(spec: &Spec) -> String {
    let what = if spec.target == Some(Target::Reject) { "a REJECT" } else { "a DROP" };
    format!(
        "{what} with these matches is not translated: the policy drops by default and admits by rule (only INPUT's -s and -d DROPs are its anti-spoof lists)"
    )
}

/// A DROP of TCP flag sets (`-p tcp --tcp-flags MASK COMP`, or `! --syn`, with state NEW
/// or INVALID at most): built in if every set it matches is one the firewall drops as
/// INVALID (firewall_common::tcp_flags_valid); a difference if the valid ones it matches
/// open nothing a SYN would (state NEW without SYN: a connection met mid-stream) or are a
/// SYN or RST with PSH or URG but no ACK, which no common stack sends. `None`: not such a
/// line.
fn tcp_flags_drop(spec: &Spec) -> Option<Result<Role, String>> {
    let flags = spec.tcp_flags?;
    let state_matches = usize::from(spec.state.is_some());
    if spec.protocol != Some(PROTO_TCP) || spec.matches() != 2 + state_matches {
        return None;
    }
    let new_only = spec.state.is_some_and(|s| s.new && !s.established && !s.related);
    if spec.state.is_some() && !new_only {
        return None;
    }
    let valid: Vec<u8> = (0..=u8::MAX).filter(|f| flags.matches(*f) && tcp_flags_valid(*f)).collect();
    let opens = |f: &u8| f & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN;
    if valid.is_empty() {
        Some(Ok(Role::BuiltIn(WHY_INVALID)))
    } else if new_only && !valid.iter().any(opens) {
        Some(Ok(Role::BuiltIn(WHY_SYN_ONLY)))
    } else if valid.iter().all(|f| f & TCP_ACK == 0 && f & (TCP_PSH | TCP_URG) != 0) {
        Some(Ok(Role::Different(WHY_SYN_WITH_PSH_OR_URG)))
    } else {
        None
    }
}

pub(super) const WHY_SYN_WITH_PSH_OR_URG: &str = "translated with a difference: the INVALID flag sets are built in, but of those this line drops the firewall admits a SYN or RST with PSH or URG but no ACK, which no common stack sends";

/// An ACCEPT on INPUT or OUTPUT: the flows of one protocol that it opens or returns.
fn classify_accept(spec: &Spec) -> Result<Role, String> {
    let Some(protocol) = spec.protocol else {
        return match spec.state {
            Some(s) if spec.matches() == 1 && !s.new && !s.invalid => Ok(Role::BuiltIn(WHY_RETURNS)),
            Some(s) if !s.new || s.invalid => Err("an ACCEPT of every protocol's returns from some peers only cannot be expressed: every rule admits its own returns, from its own peers".into()),
            _ => Ok(Accept::new(spec).every_protocol()),
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
            return Ok(self.every_icmp_type());
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

    /// `-p icmp` of every type: pings opened this way, and the errors; where the line
    /// opens nothing, the returns of pings the other way.
    fn every_icmp_type(&self) -> Role {
        if !self.opens {
            // `-p icmp --state ESTABLISHED,RELATED`: the ICMP of flows, as for every protocol.
            return if self.spec.matches() == 2 {
                Role::BuiltIn(WHY_RETURNS)
            } else {
                self.flow(self.there, vec![Svc::Icmp { kind: ICMP_ECHO_REQUEST, related: false }], true)
            };
        }
        self.flow(self.here, every_icmp_service().to_vec(), false)
    }

    /// An ACCEPT of every protocol that opens flows (`-s TRUSTED -j ACCEPT`, a chain's
    /// policy ACCEPT): every TCP and UDP port, and ICMP as `-p icmp` of every type.
    fn every_protocol(&self) -> Role {
        let every_port = PortRange { first: 1, last: u16::MAX };
        let ports = [PROTO_TCP, PROTO_UDP].map(|protocol| Svc::Port { protocol, port: every_port });
        self.flow(self.here, ports.into_iter().chain(every_icmp_service()).collect(), false)
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
    /// the returns of flows the other way. A script written before conntrack names both,
    /// the other side the ephemeral ports (`--sport 1024:65535 --dport 80` opens,
    /// `--sport 80 --dport 1024:65535 ! --syn` returns). `--syn` opens, `! --syn` returns.
    fn ports(&self, protocol: u8) -> Result<Role, String> {
        let spec = self.spec;
        let (syn, not_syn) = match spec.tcp_flags {
            None => (false, false),
            Some(f) if f == TcpFlags::SYN => (true, false),
            Some(f) if f == (TcpFlags { negated: true, ..TcpFlags::SYN }) => (false, true),
            Some(_) => return Err("--tcp-flags on an ACCEPT cannot be expressed: a rule admits its flows whatever their flags, but the INVALID sets".into()),
        };
        let opens = self.opens && !not_syn;
        let returns = (!self.opens || spec.state.is_none() || not_syn) && !syn;
        match (spec.sports.as_slice(), spec.dports.as_slice()) {
            // `-p tcp -m state --state ESTABLISHED`: the returns of every flow of the protocol.
            ([], []) if spec.matches() == 2 && !self.opens => Ok(Role::BuiltIn(WHY_PROTOCOL_RETURNS)),
            ([], []) => Err(format!(
                "{} without a port cannot be expressed: a rule names its service port",
                protocol_name(protocol).expect("tcp or udp")
            )),
            // `--dport`: the line opens flows to the service port, ours on INPUT (the peer
            // opens), the peer's on OUTPUT (this host does).
            ([], service) if opens => Ok(self.flow(self.here, services(protocol, service)?, false)),
            ([], _) => Err(
                "state ESTABLISHED on the service port (--dport) is neither a line that opens flows nor a return: not translated".into(),
            ),
            (service, []) if returns => Ok(self.flow(self.there, services(protocol, service)?, true)),
            (_, []) => Err(
                "--sport with state NEW cannot be expressed: a flow opened from a given source port".into(),
            ),
            (theirs, service) if opens && ephemeral(theirs) && !ephemeral(service) => {
                Ok(self.flow(self.here, services(protocol, service)?, false))
            }
            (service, theirs) if returns && ephemeral(theirs) && !ephemeral(service) => {
                Ok(self.flow(self.there, services(protocol, service)?, true))
            }
            _ => Err("both --sport and --dport cannot be expressed: a rule matches the service port only (or the other side's ephemeral range, 1024:65535)".into()),
        }
    }
}

/// ICMP of every type, as rules name it: echo requests (their replies the returns) and the
/// errors.
fn every_icmp_service() -> [Svc; 4] {
    [ICMP_ECHO_REQUEST, ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED, ICMP_PARAMETER_PROBLEM]
        .map(|kind| Svc::Icmp { kind, related: false })
}

/// Whether `ports` are the ephemeral range a client's side of a flow uses: one range
/// holding Linux's default, 32768 to 60999 (`1024:65535` in most scripts).
fn ephemeral(ports: &[PortRange]) -> bool {
    matches!(ports, [range] if range.first <= 32768 && range.last >= 60999)
}

/// A line's service ports, one [`Svc`] each (port 0, which no packet is sent to, left
/// out of a range).
fn services(protocol: u8, ports: &[PortRange]) -> Result<Vec<Svc>, String> {
    ports
        .iter()
        .map(|range| match *range {
            PortRange { last: 0, .. } => {
                Err("port 0 cannot be expressed: the policy's ports are 1 to 65535".into())
            }
            PortRange { first, last } => {
                Ok(Svc::Port { protocol, port: PortRange { first: first.max(1), last } })
            }
        })
        .collect()
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
    /// TCP flows open with a bare SYN only (`! --syn` NEW DROPs, `--syn` ACCEPTs):
    /// `[conntrack] tcp_loose = false`.
    pub(super) syn_only: bool,
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

/// Classifies `*filter`'s chain lines, then its rule lines, user-defined chains inlined.
pub(super) fn classify_filter(filter: &DumpTable, findings: &mut Findings) -> FilterLines {
    let mut passes_returns = chain_policies(filter, findings);
    let mut lines = flatten(filter, findings);
    // INPUT's or OUTPUT's policy ACCEPT admits what reaches the chain's end: as a last
    // line that accepts everything, which the lines before it may shadow.
    for (line, chain, policy, text) in &filter.chains {
        if policy.as_deref() == Some("ACCEPT") && matches!(chain.as_str(), "INPUT" | "OUTPUT") {
            let spec = Spec { chain: chain.clone(), target: Some(Target::Accept), ..Spec::default() };
            let parsed = Parsed { spec, untranslatable: None };
            lines.push(FlatLine { line: *line, text: text.clone(), parsed, returns_until: None });
        }
    }
    let accepting: Vec<String> = filter
        .chains
        .iter()
        .filter(|(_, _, policy, _)| policy.as_deref() == Some("ACCEPT"))
        .map(|(_, chain, _, _)| chain.clone())
        .collect();
    let (classified, syn_only) = classify_rules(&lines, &accepting, &mut passes_returns, findings);
    FilterLines { classified, passes_returns, syn_only }
}

/// The chains' policies: DROP is the firewall's own, any other cannot be expressed, and
/// a user-defined chain's lines are where jumps reach them. Returns the chains whose
/// policy ACCEPT passes every return.
fn chain_policies(filter: &DumpTable, findings: &mut Findings) -> Vec<String> {
    let mut passes_returns = Vec::new();
    for (line, chain, policy, rule) in &filter.chains {
        let finding = |why: String| Finding { line: *line, rule: rule.clone(), why };
        match policy.as_deref() {
            None => findings.built_in.push(finding(format!(
                "user-defined chain {chain}: its lines are translated where the jumps to it reach them"
            ))),
            Some("DROP") => findings.built_in.push(finding(WHY_DROP_POLICY.into())),
            // Translated as a last line of the chain: see classify_filter.
            Some("ACCEPT") if chain != "FORWARD" => passes_returns.push(chain.clone()),
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

/// A line not translated that may take packets away from the ACCEPTs after it: a DROP or
/// REJECT with matches the policy cannot say, a target not known, a RETURN. An ACCEPT
/// after it that may match the same packets is not translated either: alone, it would
/// admit what the script drops. Nor is a line that opens flows whose returns it may take
/// before its chain admits them. So an import is never more open than its script.
struct Shadow {
    /// Its flat index.
    at: usize,
    line: usize,
    /// The line as its finding names it.
    text: String,
    spec: Spec,
    /// The flat index it ends at (a RETURN's chain's end); `None`: its chain's end.
    until: Option<usize>,
    why: &'static str,
    /// It kept some line out, or some line's returns: not a DROP the policy does anyway.
    used: bool,
    /// It took ports away from some line after it.
    narrowed: bool,
    /// Its line was read whole (only the policy cannot say it): it matches what its Spec
    /// says, no more.
    exact: bool,
}

impl Shadow {
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
}

/// Each line classified, in each built-in chain's order; a line after an unconditional
/// DROP in its chain is never reached, and an ACCEPT, or the returns of what it opens,
/// after a line that may drop some of them is not translated ([`Shadow`]). An
/// ESTABLISHED catch-all adds its chain to `passes_returns`.
fn classify_rules(
    lines: &[FlatLine],
    accepting: &[String],
    passes_returns: &mut Vec<String>,
    findings: &mut Findings,
) -> (Vec<Classified>, bool) {
    let mut classifier = Classifier { accepting: accepting.to_vec(), ..Classifier::default() };
    for (at, flat) in lines.iter().enumerate() {
        classifier.line(at, flat, passes_returns, findings);
    }
    // A chain whose policy ACCEPT passes returns does so past its last line.
    for chain in passes_returns.iter() {
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
    fn line(
        &mut self,
        at: usize,
        flat: &FlatLine,
        passes_returns: &mut Vec<String>,
        findings: &mut Findings,
    ) {
        // A RETURN in a built-in chain (or the end of a goto's chain) is that chain's policy.
        let policy;
        let spec = if flat.parsed.spec.target == Some(Target::Return) && flat.returns_until.is_none() {
            let accepts = self.accepting.contains(&flat.parsed.spec.chain);
            policy = Spec {
                target: Some(if accepts { Target::Accept } else { Target::Drop }),
                ..flat.parsed.spec.clone()
            };
            &policy
        } else {
            &flat.parsed.spec
        };
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
            self.shadows.push(Shadow {
                at,
                line: flat.line,
                text: flat.text.clone(),
                spec: spec.clone(),
                until: Some(until),
                why: "returns",
                used: false,
                narrowed: false,
                exact: flat.parsed.untranslatable.is_none(),
            });
            return;
        }
        let role = match &flat.parsed.untranslatable {
            Some(why) => Err(why.clone()),
            None => classify(spec),
        };
        let role = match role {
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
                    if why == WHY_RETURNS {
                        passes_returns.push(spec.chain.clone());
                    }
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
                let target = spec.target.as_ref();
                let loopback =
                    spec.in_iface.as_deref() == Some("lo") || spec.out_iface.as_deref() == Some("lo");
                if target.is_some_and(Target::may_drop) && !loopback {
                    self.shadows.push(Shadow {
                        at,
                        line: flat.line,
                        text: flat.text.clone(),
                        spec: spec.clone(),
                        until: None,
                        why: "drops",
                        used: false,
                        narrowed: false,
                        exact: flat.parsed.untranslatable.is_none(),
                    });
                }
                findings.untranslated.push(finding(why));
            }
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
        passes_returns: &mut Vec<String>,
        findings: &mut Findings,
    ) {
        let finding = |why: String| Finding { line: flat.line, rule: flat.text.clone(), why };
        for shadow in self.shadows.iter_mut().filter(|s| s.covers(at, spec)) {
            // A return line's services are its source ports: a DROP's ports are not theirs.
            let narrow = if f.is_return { None } else { narrowed(&f.services, &shadow.spec, spec) };
            match narrow {
                Some(services) if !services.is_empty() => {
                    f.services = services;
                    shadow.narrowed = true;
                    if !shadow.exact {
                        findings.differences.push(finding(format!(
                            "translated without the ports that line {}, which is not translated, may drop first",
                            shadow.line
                        )));
                    }
                }
                _ => {
                    shadow.used = true;
                    findings.untranslated.push(finding(format!(
                        "not translated, to be no more open than the script: line {}, which is not translated, {} some of what this line admits",
                        shadow.line, shadow.why
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
        // An ACCEPT of every protocol to any peer that does not ask for NEW only passes
        // every return of its chain, as a catch-all does.
        let peer_side = if spec.chain == "INPUT" { spec.source } else { spec.destination };
        if spec.protocol.is_none() && peer_side.is_none() && spec.state.is_none_or(|s| s.established) {
            passes_returns.push(spec.chain.clone());
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
                    "not translated, to be no more open than the script: line {}, which is not translated, {} some of the returns of the flows this line opens before {} passes them",
                    shadow.line,
                    shadow.why,
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
        for shadow in self.shadows.iter().filter(|s| !s.used && s.why == "drops") {
            let Some(at) =
                findings.untranslated.iter().position(|f| f.line == shadow.line && f.rule == shadow.text)
            else {
                continue;
            };
            let finding = findings.untranslated.remove(at);
            let why = match (shadow.narrowed, shadow.exact) {
                (false, _) => format!(
                    "no line after it admits what it drops, so the chain's policy drops it here too (the line itself is not expressible: {})",
                    finding.why
                ),
                (true, true) => {
                    if shadow.spec.target == Some(Target::Reject) {
                        findings.differences.push(Finding { why: WHY_REJECT.into(), ..finding.clone() });
                    }
                    "translated: the lines after it that admit some of its ports admit the others only"
                        .to_owned()
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

/// `services` without the ports a DROP before them takes: where the DROP is of TCP or UDP
/// ports (`--dport`), at least as wide as the ACCEPT (`accept`) in everything else, so
/// that on those ports it drops all the ACCEPT would admit. `None`: it is not such a DROP.
fn narrowed(services: &[Svc], drop: &Spec, accept: &Spec) -> Option<Vec<Svc>> {
    let protocol = drop.protocol.filter(|p| matches!(*p, PROTO_TCP | PROTO_UDP))?;
    let wider = |d: Option<Prefix>, a: Option<Prefix>| match (d, a) {
        (None, _) => true,
        (Some(d), Some(a)) => d.contains(a.addr) && d.len <= a.len,
        (Some(_), None) => false,
    };
    let same_or_any = |d: &Option<String>, a: &Option<String>| d.is_none() || d == a;
    let only_ports = !drop.dports.is_empty()
        && drop.sports.is_empty()
        && drop.tcp_flags.is_none()
        && !drop.fragment
        && drop.limit.is_none()
        && drop.state.is_none_or(|s| s.new)
        && wider(drop.source, accept.source)
        && wider(drop.destination, accept.destination)
        && same_or_any(&drop.in_iface, &accept.in_iface)
        && same_or_any(&drop.out_iface, &accept.out_iface);
    if !only_ports {
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
    let clients = vec![PortRange { first: 1024, last: u16::MAX }];
    Some(Spec {
        chain: chain.to_owned(),
        source: opening.destination,
        destination: opening.source,
        in_iface: opening.out_iface.clone(),
        out_iface: opening.in_iface.clone(),
        protocol: opening.protocol,
        sports: opening.dports.clone(),
        dports: if opening.sports.is_empty() { clients } else { opening.sports.clone() },
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

pub(super) const WHY_EVERY_ICMP_TYPE: &str = "ICMP of every type becomes four rules: echo-request (its replies the returns) and the errors destination-unreachable, time-exceeded and parameter-problem; the other types (redirect, timestamp, router advertisement, …) drop here";
pub(super) const WHY_EVERY_PROTOCOL: &str = "every protocol becomes a rule of every TCP and UDP port (1-65535) and the four ICMP rules of every type (echo-request, destination-unreachable, time-exceeded, parameter-problem); other protocols (ESP, GRE, …) and ICMP types drop here";
pub(super) const WHY_HOST_DROPPED_WHOLE: &str = "translated with a difference: the host it drops is an anti-spoof source, dropped whatever it sends, where this line drops only what it matches (a ban by fail2ban, say)";
pub(super) const WHY_REJECT: &str = "REJECT becomes DROP: the firewall answers nothing (no ICMP error, no TCP RST), so a client waits for its timeout where it failed at once";
