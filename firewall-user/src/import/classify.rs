//! What one line of `*filter` does, in the policy's terms: a [`Role`] (an anti-spoof
//! entry, a built-in, a line that opens flows, a return, an ICMP type), or the reason it
//! is not translated.
use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN,
    TCP_URG, protocol_name, tcp_flags_valid,
};

use super::{
    Finding, Findings,
    chains::{FlatLine, flatten},
    dump::DumpTable,
    log::LogLine,
    shadow::classify_rules,
    spec::{Parsed, PortRange, Rate, SourceMatch, Spec, States, Target, TcpFlags, UidRange},
};
use crate::policy::Prefix;

/// What one line of `*filter` does, in the policy's terms.
#[derive(Clone, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "most lines of a dump are flows: boxing them would save no memory, only add an allocation each"
)]
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
    /// The rule's `per_source`: from the line's own hashlimit or connlimit, or the limits
    /// before it (`shadow`).
    pub(super) per_source: Option<SourceLimit>,
    /// A return line (ESTABLISHED, or an echo reply): it pairs with an opening line.
    pub(super) is_return: bool,
    /// The interface it names (not loopback).
    pub(super) iface: Option<String>,
    /// The rule's `uids`: the users whose sockets it admits (`-m owner --uid-owner`);
    /// `None`: every user's.
    pub(super) uids: Option<Vec<UidRange>>,
    /// The LOG lines just before it that log every flow it opens (`log`).
    pub(super) logged_by: Vec<LogLine>,
    pub(super) comment: Option<String>,
    /// A DROP that sets a port-scan trap's list: the rule's `trap` (`shadow`).
    pub(super) trap: Option<Trap>,
}

/// A rule's `trap`: the `-m recent` list a DROP line sets, and its check, `--rcheck
/// --seconds S … -j DROP` for every packet, the block of a source caught.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Trap {
    pub(super) list: String,
    /// The check's `--seconds`: how long the block lasts.
    pub(super) seconds: u32,
    /// The dump's line of the check.
    pub(super) check: usize,
}

/// A rule's `per_source`, and the dump's buckets it stands for: a rate of new flows, a
/// cap on the flows open at once, or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct SourceLimit {
    /// The rate: `None`, connections alone.
    pub(super) rate: Option<Rate>,
    /// The `-m recent` list or the hashlimit name: lines of one name share its buckets,
    /// as one rule does.
    pub(super) bucket: String,
    /// The line of the `-m recent` check it stands for, which counts otherwise.
    pub(super) recent_line: Option<usize>,
    /// `-m connlimit`: how many flows a source may have open at once.
    pub(super) connections: Option<Connections>,
    /// How many bits of a source's address make it one (hashlimit's `--hashlimit-srcmask`,
    /// connlimit's `--connlimit-mask`; 32, the address, for recent).
    pub(super) prefix: u8,
}

impl SourceLimit {
    /// A rate alone.
    pub(super) fn rate(rate: Rate, bucket: String, recent_line: Option<usize>, prefix: u8) -> Self {
        SourceLimit { rate: Some(rate), bucket, recent_line, connections: None, prefix }
    }
}

/// `per_source.connections`, and the connlimit line it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Connections {
    /// The flows a source may have open at once: connlimit's N.
    pub(super) count: u8,
    /// The dump's line of the connlimit match: its count is one, however many rules its
    /// flows become (0 until `shadow` reads the line).
    pub(super) line: usize,
    /// The line meets every packet of a flow, not only its first (see
    /// [`why_connections_every_packet`]).
    pub(super) every_packet: bool,
    /// The line of a hashlimit (the rule's rate, or its per-source rate) that the script
    /// asks before the connlimit: it charges a flow that the connlimit then refuses, where
    /// the firewall asks the connections first.
    pub(super) rate_first: Option<usize>,
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
pub(super) const WHY_PORT_ZERO: &str = "built in: TCP from or to port 0, and UDP to port 0, are dropped on every chain (line invalid): no stack sends from or listens on port 0";
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

pub(super) const WHY_EVERY_ICMP_TYPE: &str = "ICMP of every type becomes four rules: echo-request (its replies the returns) and the errors destination-unreachable, time-exceeded and parameter-problem; the other types (redirect, timestamp, router advertisement, …) drop here";
pub(super) const WHY_EVERY_PROTOCOL: &str = "every protocol becomes a rule of every TCP and UDP port (1-65535) and the four ICMP rules of every type (echo-request, destination-unreachable, time-exceeded, parameter-problem); other protocols (ESP, GRE, …) and ICMP types drop here";
pub(super) const WHY_HOST_DROPPED_WHOLE: &str = "translated with a difference: the host it drops is an anti-spoof source, dropped whatever it sends, where this line drops only what it matches (a ban by fail2ban, say)";
pub(super) const WHY_RECENT_SET: &str = "-m recent --set only notes the source for the --update or --rcheck of its list: translated with that line, as per_source, or listed with it";
/// Why a `-m recent` check translated as `per_source = rate` is a difference.
pub(super) fn why_recent(rate: Rate) -> String {
    format!(
        "translated with a difference, as per_source {rate} on the ACCEPTs it limits: no window of the line's holds more than {} new flows of a source, as with recent, but recent counts refused attempts too, where per_source does not charge them, so a source that keeps trying gets a flow again once a window and a second have passed",
        rate.burst
    )
}
pub(super) const WHY_TRAP_REMOVE: &str = "-m recent --remove after the check of a port-scan trap's list only takes off it the sources that passed the check, whose entries are old: built in, the blocklist's entries expire by themselves";
/// Why a port-scan trap's check (`--rcheck --seconds S … -j DROP` of every packet) is
/// translated with a difference: it is the block of the trap rules of `lines`. `ahead`:
/// it comes before INPUT's ESTABLISHED line (or there is none); `admitted`: lines before
/// it admit what a source sends, caught or not.
pub(super) fn why_trap_check(duration: &str, lines: &[usize], ahead: bool, admitted: &[usize]) -> String {
    let plural = |n: &[usize]| if n.len() == 1 { "line" } else { "lines" };
    let mut why = format!(
        "translated with a difference: it is the block of the trap = \"{duration}\" of the {} of {} {}: a source that sends what {} matches is blocked through the blocklist for {duration}, before every rule, on every port and both ways; the firewall also drops what the host sends to it, where this line drops only what comes in (the host's packets to it get no answer through this line anyway)",
        if lines.len() == 1 { "rule" } else { "rules" },
        plural(lines),
        super::write::line_list(lines),
        if lines.len() == 1 { "it" } else { "they" },
    );
    if ahead {
        why.push_str("; a caught source's flows opened before go on, where this line, with no ESTABLISHED line of INPUT before it, drops their packets too");
    }
    if !admitted.is_empty() {
        why.push_str(&format!(
            "; {} {} before it {} a caught source in the script, where the block drops it there too",
            plural(admitted),
            super::write::line_list(admitted),
            if admitted.len() == 1 { "admits" } else { "admit" },
        ));
    }
    why
}
pub(super) const WHY_LIMIT_CHECK: &str =
    "translated: it is the per_source (or limit) of the ACCEPTs after it that it limits";
/// Why a `--connlimit-above N` DROP is translated: its ACCEPTs' `per_source.connections`.
pub(super) fn why_connlimit(count: u8, every_packet: bool) -> String {
    if every_packet {
        format!(
            "translated with a difference, as per_source.connections = {count} on the ACCEPTs it caps: {}",
            why_connections_every_packet(count)
        )
    } else {
        format!("translated: it is per_source.connections = {count} on the ACCEPTs after it that it caps")
    }
}
/// What a connlimit line that meets every packet of a flow does otherwise than
/// `per_source.connections`, which counts flows as they open.
pub(super) fn why_connections_every_packet(count: u8) -> String {
    format!(
        "the line meets every packet (no state NEW, no --syn, no ESTABLISHED line before it), so iptables refuses even the packets of a flow already open while its source has more than {count} (flows opened before the line was loaded, say); the firewall counts a source's flows as they open, and never cuts one open"
    )
}
pub(super) const WHY_OWNER_DROP: &str = "a DROP of some users' packets (-m owner) cannot be expressed: a rule's uids admit the users it lists, the policy has no per-user deny";
pub(super) const WHY_OWNER_RETURNS: &str = "an owner match on a line that passes returns cannot be expressed: a rule admits the returns of its flows whatever socket sends them; uids applies to the flows it opens";
pub(super) const WHY_REJECT: &str = "REJECT becomes DROP: the firewall answers nothing (no ICMP error, no TCP RST), so a client waits for its timeout where it failed at once";

/// Classifies one line, its user-defined chains inlined: in a built-in chain, with a
/// target of iptables' own.
pub(super) fn classify(spec: &Spec) -> Result<Role, String> {
    let chain = spec.chain.as_str();
    if !matches!(chain, "INPUT" | "OUTPUT" | "FORWARD") {
        return Err(format!("chain {chain} is not declared in the dump: not translated"));
    }
    if let Some(list) = &spec.recent_remove {
        return Err(format!(
            "-m recent --remove takes a source off list {list}: not translated (it is built in only after the check of a port-scan trap's list)"
        ));
    }
    let Some(target) = &spec.target else {
        return Ok(Role::BuiltIn(if spec.recent_set.is_some() { WHY_RECENT_SET } else { WHY_COUNT_ONLY }));
    };
    if let Target::Other { name, .. } = target
        && matches!(name.as_str(), "LOG" | "NFLOG" | "ULOG")
    {
        return Ok(Role::Different(WHY_LOG));
    }
    let accept = accepts(target)?;
    if let Some(check) = &spec.source_match {
        return match check {
            SourceMatch::Upto { .. } | SourceMatch::Connections { above: false, .. } if accept => {
                owned(spec, classify_accept(spec)?)
            }
            SourceMatch::Upto { .. } | SourceMatch::Connections { above: false, .. } => {
                Err(drop_with_matches(spec))
            }
            SourceMatch::Connections { above: true, .. } if accept => Err(format!(
                "an ACCEPT of what {} matches cannot be expressed: per_source.connections refuses the flows over its count, it admits nothing",
                check.option()
            )),
            SourceMatch::Connections { above: true, .. } => Err(format!(
                "{} is a cap on each source's open flows: it becomes the per_source.connections of the ACCEPTs after it that it limits whole; each line it keeps out says why not",
                check.option()
            )),
            _ if accept => Err(format!(
                "an ACCEPT of what {} matches cannot be expressed: per_source drops what goes over a rate, it admits nothing",
                check.option()
            )),
            _ => Err(format!(
                "{} is a rate limit: it becomes the per_source (or limit) of the ACCEPTs after it that it limits whole; each line it keeps out says why not",
                check.option()
            )),
        };
    }
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
    if !accept && spec.owner.is_some() {
        return Err(WHY_OWNER_DROP.into());
    }
    if !accept {
        return classify_drop(spec);
    }
    if chain == "FORWARD" {
        return Err("FORWARD is not translated: the firewall filters this host's own traffic, and drops whatever it would forward".into());
    }
    if spec.owner.is_some() && spec.state.is_some_and(|s| !s.new) {
        return Err(WHY_OWNER_RETURNS.into());
    }
    owned(spec, classify_accept(spec)?)
}

/// An ACCEPT's `--uid-owner`: the uids of the outbound flows it opens. (iptables takes
/// `-m owner` on OUTPUT only; a return passes whatever socket sends it.)
fn owned(spec: &Spec, role: Role) -> Result<Role, String> {
    let Some(uids) = spec.owner else {
        return Ok(role);
    };
    match role {
        Role::Flow(mut f) if f.direction == Direction::Out && !f.is_return => {
            f.uids = Some(vec![uids]);
            Ok(Role::Flow(f))
        }
        _ => Err(WHY_OWNER_RETURNS.into()),
    }
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
    } else if port_zero(spec) {
        Ok(Role::BuiltIn(WHY_PORT_ZERO))
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

/// Whether a DROP takes only packets the firewall drops as INVALID for their port 0: TCP
/// from or to it, UDP to it. Its other matches only narrow what it takes; a list it
/// would set (`-m recent --set`) is another matter.
fn port_zero(spec: &Spec) -> bool {
    let zero = |ports: &[PortRange]| ports == [PortRange { first: 0, last: 0 }];
    spec.recent_set.is_none()
        && match spec.protocol {
            Some(PROTO_TCP) => zero(&spec.sports) || zero(&spec.dports),
            Some(PROTO_UDP) => zero(&spec.dports),
            _ => false,
        }
}

/// Why a DROP (or REJECT) with matches the policy cannot say is not translated.
pub(super) fn drop_with_matches(spec: &Spec) -> String {
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
            per_source: match &spec.source_match {
                Some(SourceMatch::Upto { name, rate, prefix }) => {
                    Some(SourceLimit::rate(*rate, name.clone(), None, *prefix))
                }
                // Its line and how it meets packets, `shadow` fills in.
                Some(SourceMatch::Connections { count, above: false, prefix }) => Some(SourceLimit {
                    rate: None,
                    bucket: String::new(),
                    recent_line: None,
                    connections: Some(Connections {
                        count: *count,
                        line: 0,
                        every_packet: false,
                        rate_first: None,
                    }),
                    prefix: *prefix,
                }),
                _ => None,
            },
            is_return,
            iface,
            uids: None,
            logged_by: Vec::new(),
            comment: spec.comment.clone(),
            trap: None,
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
    /// policy ACCEPT), or every return of a protocol: there, a line that opens flows needs
    /// no return line of its own.
    pub(super) passes_returns: Vec<PassedBack>,
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

/// A chain that passes every return (of `protocol`, or of all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PassedBack {
    pub(super) chain: String,
    pub(super) protocol: Option<u8>,
}

/// Classifies `*filter`'s chain lines, then its rule lines, user-defined chains inlined.
pub(super) fn classify_filter(filter: &DumpTable, findings: &mut Findings) -> FilterLines {
    chain_policies(filter, findings);
    let mut passes_returns = Vec::new();
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
/// a user-defined chain's lines are where jumps reach them.
fn chain_policies(filter: &DumpTable, findings: &mut Findings) {
    for (line, chain, policy, rule) in &filter.chains {
        let finding = |why: String| Finding { line: *line, rule: rule.clone(), why };
        match policy.as_deref() {
            None => findings.built_in.push(finding(format!(
                "user-defined chain {chain}: its lines are translated where the jumps to it reach them"
            ))),
            Some("DROP") => findings.built_in.push(finding(WHY_DROP_POLICY.into())),
            // Translated as a last line of the chain: see classify_filter.
            Some("ACCEPT") if chain != "FORWARD" => {}
            Some(p) => findings.untranslated.push(finding(format!(
                "chain policy {p} cannot be expressed: every chain drops what no rule admits"
            ))),
        }
    }
}
