//! One rule line's matches, parsed and typed: a [`Spec`].
//!
//! [`parse_spec`] reads a line's options one at a time: iptables' own (`-s`, `-p`, `-m`,
//! `-j`, …), then those of the match module last named; each value is read by a helper
//! of its own ([`ipv4_prefix`], [`ports`], [`states`], …). They fail with a `String`, the
//! reason the line is not translated (see [`super::dump::words`]).
//!
//! A line that cannot be translated is still read to its end: what it matches that the
//! parser knows is kept, and what it does not (a negation, an unknown module) is left
//! out. So its [`Spec`] matches at least every packet the line matches, which is what
//! `shadow` needs of a DROP it cannot translate: the ACCEPTs after it that it may
//! shadow.
use std::fmt;

use firewall_common::{
    ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED,
    MAX_CONNECTIONS, MAX_RULE_UIDS, NO_SOCKET_UID, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
    protocol_named, rule_protocol,
};

use crate::policy::{self, Per, Prefix};

/// conntrack states a `-m state --state` / `-m conntrack --ctstate` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "conntrack's states, each named or not, as iptables lists them"
)]
pub(super) struct States {
    pub(super) new: bool,
    pub(super) established: bool,
    pub(super) related: bool,
    pub(super) invalid: bool,
}

impl States {
    pub(super) fn only_invalid(self) -> bool {
        self == States { invalid: true, ..States::default() }
    }
}

/// `-m limit --limit N/unit --limit-burst B` (or hashlimit's rate and burst).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Rate {
    pub(super) count: u32,
    pub(super) unit: Per,
    pub(super) burst: u32,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} burst {}", self.count, self.unit, self.burst)
    }
}

/// A match on how often a source was seen, which the policy says as a rule's
/// `per_source` (or, for a global hashlimit, its `limit`): see `shadow`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SourceMatch {
    /// `-m recent --update|--rcheck --seconds S --hitcount H --name LIST`: the sources
    /// seen `hits` times within `seconds` (a hit is each `--set` of the list); `rcheck`
    /// for `--rcheck`, which only looks, where `--update` also renews the source's entry.
    Seen { list: String, seconds: u32, hits: u32, rcheck: bool },
    /// `-m hashlimit --hashlimit-upto R --hashlimit-mode srcip`: what each source (an
    /// address's `prefix`, `--hashlimit-srcmask`) sends within the rate.
    Upto { name: String, rate: Rate, prefix: u8 },
    /// `--hashlimit-above R`: what goes over the rate, each source's (`per_source`, mode
    /// srcip) or all of them together.
    Above { name: String, rate: Rate, per_source: bool, prefix: u8 },
    /// `-m connlimit --connlimit-above N` (`above`) or `--connlimit-upto N`: the flows
    /// each source (an address's `prefix`, `--connlimit-mask`) has open under the line
    /// beyond `count`, or up to it.
    Connections { count: u8, above: bool, prefix: u8 },
}

impl SourceMatch {
    /// The option that names it, for the findings.
    pub(super) fn option(&self) -> String {
        match self {
            SourceMatch::Seen { list, seconds, hits, .. } => {
                format!("-m recent --seconds {seconds} --hitcount {hits} --name {list}")
            }
            SourceMatch::Upto { name, rate, .. } => format!("--hashlimit-upto {rate} (name {name})"),
            SourceMatch::Above { name, rate, .. } => format!("--hashlimit-above {rate} (name {name})"),
            SourceMatch::Connections { count, above, prefix } => format!(
                "-m connlimit --connlimit-{} {count} --connlimit-mask {prefix}",
                if *above { "above" } else { "upto" }
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Accept,
    Drop,
    /// REJECT: a DROP that answers; the firewall drops.
    Reject,
    /// RETURN: back to the chain that jumped here (in a built-in chain, its policy).
    Return,
    /// Anything else (LOG, a user-defined chain, …); `goto` for `-g`.
    Other {
        name: String,
        goto: bool,
    },
}

impl Target {
    /// Whether a packet it matches may stop here other than by ACCEPT: a DROP, a
    /// REJECT, or a target the translation does not know. (LOG and the other targets
    /// that only note or mark a packet let it go on; RETURN and jumps are the chains'.)
    pub(super) fn may_drop(&self) -> bool {
        match self {
            Target::Accept | Target::Return => false,
            Target::Drop | Target::Reject => true,
            Target::Other { name, .. } => !NON_TERMINATING.contains(&name.as_str()),
        }
    }
}

/// Targets after which a packet goes on to the next line.
const NON_TERMINATING: [&str; 17] = [
    "LOG",
    "NFLOG",
    "ULOG",
    "MARK",
    "CONNMARK",
    "SET",
    "TRACE",
    "AUDIT",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TCPMSS",
    "CHECKSUM",
    "TTL",
    "SECMARK",
    "CONNSECMARK",
    "CT",
];

/// An inclusive range of ports, as `--dport 1024:65535` writes it; one port is a range of
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct PortRange {
    pub(super) first: u16,
    pub(super) last: u16,
}

impl PortRange {
    pub(super) fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    fn intersection(self, other: PortRange) -> Option<PortRange> {
        self.overlaps(other)
            .then(|| PortRange { first: self.first.max(other.first), last: self.last.min(other.last) })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// An inclusive range of uids, as `-m owner --uid-owner 1000-1999` writes it; one uid is a
/// range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct UidRange {
    pub(super) first: u32,
    pub(super) last: u32,
}

impl UidRange {
    /// Whether every uid of `other` is one of these.
    pub(super) fn contains(self, other: UidRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    fn intersection(self, other: UidRange) -> Option<UidRange> {
        (self.first <= other.last && other.first <= self.last)
            .then(|| UidRange { first: self.first.max(other.first), last: self.last.min(other.last) })
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// `--tcp-flags MASK COMP` (`--syn` is `SYN,RST,ACK,FIN SYN`): the flags in `mask` are
/// those in `comp`; `negated` for `!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TcpFlags {
    pub(super) mask: u8,
    pub(super) comp: u8,
    pub(super) negated: bool,
}

impl TcpFlags {
    /// `--syn`.
    pub(super) const SYN: TcpFlags =
        TcpFlags { mask: TCP_SYN | TCP_RST | TCP_ACK | TCP_FIN, comp: TCP_SYN, negated: false };

    pub(super) fn matches(self, flags: u8) -> bool {
        (flags & self.mask == self.comp) != self.negated
    }

    /// Whether some flag set matches both.
    fn overlaps(self, other: TcpFlags) -> bool {
        (0..=u8::MAX).any(|f| self.matches(f) && other.matches(f))
    }
}

/// What one `-A` line matches, and its target.
#[derive(Clone, Debug, Default)]
pub(super) struct Spec {
    pub(super) chain: String,
    pub(super) source: Option<Prefix>,
    pub(super) destination: Option<Prefix>,
    pub(super) in_iface: Option<String>,
    pub(super) out_iface: Option<String>,
    pub(super) protocol: Option<u8>,
    pub(super) sports: Vec<PortRange>,
    pub(super) dports: Vec<PortRange>,
    pub(super) icmp_type: Option<u8>,
    /// `--icmp-type 3/4` (or `fragmentation-needed`): one code of `icmp_type` alone, which
    /// the policy cannot say (the line is not translated; as a DROP, it takes from the
    /// lines after it that type alone).
    pub(super) icmp_code: Option<u8>,
    pub(super) tcp_flags: Option<TcpFlags>,
    /// `-f`: later fragments only.
    pub(super) fragment: bool,
    pub(super) state: Option<States>,
    pub(super) limit: Option<Rate>,
    /// `-m recent` checks and `-m hashlimit --hashlimit-mode srcip` (or `-above`).
    pub(super) source_match: Option<SourceMatch>,
    /// `-m recent --set --name LIST`: the line notes its sources in LIST. It matches
    /// whatever it is given, so it is no match.
    pub(super) recent_set: Option<String>,
    /// `-m recent --remove --name LIST`: the line takes its sources off LIST (and matches
    /// those that were on it). Not translated, but where it follows the check of a
    /// port-scan trap's list (`shadow`).
    pub(super) recent_remove: Option<String>,
    /// `-m owner --uid-owner U`: the sending socket's owner (OUTPUT only).
    pub(super) owner: Option<UidRange>,
    /// The user name the dump gave for `owner`, looked up where the import runs
    /// (iptables-save writes numbers; a dump written by hand may not).
    pub(super) owner_name: Option<String>,
    pub(super) comment: Option<String>,
    pub(super) target: Option<Target>,
}

impl Spec {
    /// How many matches it has besides the interfaces (and a comment).
    pub(super) fn matches(&self) -> usize {
        [
            self.source.is_some(),
            self.destination.is_some(),
            self.protocol.is_some(),
            !self.sports.is_empty(),
            !self.dports.is_empty(),
            self.icmp_type.is_some(),
            self.tcp_flags.is_some(),
            self.fragment,
            self.state.is_some(),
            self.limit.is_some(),
            self.source_match.is_some(),
            self.owner.is_some(),
        ]
        .into_iter()
        .filter(|m| *m)
        .count()
    }

    /// The source ports for `--sport`, `--sports` and their long names; else the
    /// destination ports.
    fn ports_of(&mut self, option: &str) -> &mut Vec<PortRange> {
        if option.starts_with("--s") { &mut self.sports } else { &mut self.dports }
    }

    /// The packets both match, as one line's: `None` if no packet can match both (a jump
    /// for tcp to a line for udp). Exact where both are; where a line could not be
    /// translated its Spec matches more, and so does their conjunction. A limit or a flag
    /// test in both cannot be one line's, so the second is left out: `Err`, with the
    /// conjunction that matches more.
    pub(super) fn and(&self, other: &Spec) -> Option<Result<Spec, (Spec, String)>> {
        let mut both = Spec {
            chain: self.chain.clone(),
            source: narrower(self.source, other.source)?,
            destination: narrower(self.destination, other.destination)?,
            in_iface: same(self.in_iface.as_ref(), other.in_iface.as_ref())?,
            out_iface: same(self.out_iface.as_ref(), other.out_iface.as_ref())?,
            protocol: same(self.protocol.as_ref(), other.protocol.as_ref())?,
            sports: port_intersection(&self.sports, &other.sports)?,
            dports: port_intersection(&self.dports, &other.dports)?,
            icmp_type: same(self.icmp_type.as_ref(), other.icmp_type.as_ref())?,
            icmp_code: same(self.icmp_code.as_ref(), other.icmp_code.as_ref())?,
            tcp_flags: self.tcp_flags.or(other.tcp_flags),
            fragment: self.fragment || other.fragment,
            state: state_intersection(self.state, other.state)?,
            limit: self.limit.or(other.limit),
            source_match: self.source_match.clone().or_else(|| other.source_match.clone()),
            recent_set: self.recent_set.clone().or_else(|| other.recent_set.clone()),
            recent_remove: self.recent_remove.clone().or_else(|| other.recent_remove.clone()),
            owner: match (self.owner, other.owner) {
                (Some(a), Some(b)) => Some(a.intersection(b)?),
                (a, b) => a.or(b),
            },
            owner_name: other.owner_name.clone().or_else(|| self.owner_name.clone()),
            comment: other.comment.clone().or_else(|| self.comment.clone()),
            target: other.target.clone(),
        };
        if let (Some(a), Some(b)) = (self.tcp_flags, other.tcp_flags) {
            if !a.overlaps(b) {
                return None;
            }
            if a != b {
                return Some(Err((
                    both,
                    "two --tcp-flags tests, the jump's and the line's, cannot be one rule's".into(),
                )));
            }
        }
        if self.limit.is_some() && other.limit.is_some() {
            both.limit = self.limit;
            return Some(Err((
                both,
                "two -m limit rates, the jump's and the line's, cannot be one rule's".into(),
            )));
        }
        if let (Some(a), Some(b)) = (&self.source_match, &other.source_match) {
            let connlimit = [a, b].iter().any(|m| matches!(m, SourceMatch::Connections { .. }));
            return Some(Err((
                both,
                if connlimit {
                    "two per-source limits (-m recent, -m hashlimit, -m connlimit), the jump's and the line's, cannot be one rule's"
                } else {
                    "two per-source limits (-m recent, -m hashlimit), the jump's and the line's, cannot be one rule's"
                }
                .into(),
            )));
        }
        if (self.recent_set.is_some() || self.recent_remove.is_some())
            && (other.recent_set.is_some() || other.recent_remove.is_some())
        {
            return Some(Err((
                both,
                "two -m recent --set (or --remove), the jump's and the line's, are not translated".into(),
            )));
        }
        Some(Ok(both))
    }

    /// Whether some packet may match both (each matching at least what its line does).
    pub(super) fn may_overlap(&self, other: &Spec) -> bool {
        self.and(other).is_some()
    }

    /// Whether it matches every packet `other` matches (both read whole). Where it
    /// cannot tell (a rate, a flag test other than `other`'s), it says no.
    pub(super) fn covers(&self, other: &Spec) -> bool {
        fn same_or_any<T: PartialEq>(a: Option<&T>, b: Option<&T>) -> bool {
            a.is_none() || a == b
        }
        fn ports_inside(a: &[PortRange], b: &[PortRange]) -> bool {
            a.is_empty()
                || (!b.is_empty()
                    && b.iter().all(|r| a.iter().any(|s| s.first <= r.first && r.last <= s.last)))
        }
        let states = match (self.state, other.state) {
            (None, _) => true,
            (Some(a), Some(b)) => {
                (a.new || !b.new)
                    && (a.established || !b.established)
                    && (a.related || !b.related)
                    && (a.invalid || !b.invalid)
            }
            (Some(_), None) => false,
        };
        self.chain == other.chain
            && wider(self.source, other.source)
            && wider(self.destination, other.destination)
            && same_or_any(self.in_iface.as_ref(), other.in_iface.as_ref())
            && same_or_any(self.out_iface.as_ref(), other.out_iface.as_ref())
            && same_or_any(self.protocol.as_ref(), other.protocol.as_ref())
            && ports_inside(&self.sports, &other.sports)
            && ports_inside(&self.dports, &other.dports)
            && same_or_any(self.icmp_type.as_ref(), other.icmp_type.as_ref())
            && same_or_any(self.icmp_code.as_ref(), other.icmp_code.as_ref())
            && same_or_any(self.tcp_flags.as_ref(), other.tcp_flags.as_ref())
            && (!self.fragment || other.fragment)
            && states
            && self.limit.is_none()
            && self.source_match.is_none()
            && self.owner.is_none_or(|a| other.owner.is_some_and(|b| a.contains(b)))
    }
}

/// Whether every address of `b` is one of `a`'s (`None`: every address).
pub(super) fn wider(a: Option<Prefix>, b: Option<Prefix>) -> bool {
    match (a, b) {
        (None, _) => true,
        (Some(a), Some(b)) => a.contains(b.addr) && a.len <= b.len,
        (Some(_), None) => false,
    }
}

/// Both prefixes' addresses: the narrower if one holds the other, `None` if they are
/// apart (`Some(None)`: neither names one).
#[expect(clippy::option_option, reason = "no match, or no packet matches both")]
fn narrower(a: Option<Prefix>, b: Option<Prefix>) -> Option<Option<Prefix>> {
    match (a, b) {
        (Some(a), Some(b)) if a.contains(b.addr) && a.len <= b.len => Some(Some(b)),
        (Some(a), Some(b)) if b.contains(a.addr) && b.len <= a.len => Some(Some(a)),
        (Some(_), Some(_)) => None,
        (a, b) => Some(a.or(b)),
    }
}

/// The one value both ask for, or `None` if they ask for two.
#[expect(clippy::option_option, reason = "no match, or no packet matches both")]
fn same<T: Clone + PartialEq>(a: Option<&T>, b: Option<&T>) -> Option<Option<T>> {
    match (a, b) {
        (Some(a), Some(b)) if a != b => None,
        (a, b) => Some(a.or(b).cloned()),
    }
}

/// The ports in both lists (an empty list: any port), `None` if none.
fn port_intersection(a: &[PortRange], b: &[PortRange]) -> Option<Vec<PortRange>> {
    if a.is_empty() || b.is_empty() {
        return Some(if a.is_empty() { b.to_vec() } else { a.to_vec() });
    }
    let both: Vec<PortRange> = a.iter().flat_map(|x| b.iter().filter_map(|y| x.intersection(*y))).collect();
    (!both.is_empty()).then_some(both)
}

/// The states both name, `None` if none.
#[expect(clippy::option_option, reason = "no match, or no packet matches both")]
fn state_intersection(a: Option<States>, b: Option<States>) -> Option<Option<States>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let both = States {
                new: a.new && b.new,
                established: a.established && b.established,
                related: a.related && b.related,
                invalid: a.invalid && b.invalid,
            };
            (both != States::default()).then_some(Some(both))
        }
        (a, b) => Some(a.or(b)),
    }
}

/// The match modules this translation knows (besides `comment`, whose text goes with the rule).
const MODULES: [&str; 11] = [
    "tcp",
    "udp",
    "icmp",
    "state",
    "conntrack",
    "limit",
    "multiport",
    "recent",
    "hashlimit",
    "connlimit",
    "owner",
];

/// The words of a line still to read.
type Words<'a> = std::iter::Peekable<std::slice::Iter<'a, String>>;

/// A line read: what it matches, and why it cannot be translated, if it cannot (then
/// `spec` matches at least what the line does: see the module's doc).
#[derive(Clone, Debug)]
pub(super) struct Parsed {
    pub(super) spec: Spec,
    pub(super) untranslatable: Option<String>,
}

/// Parses the words of one `-A` line to its end; the first part that cannot be translated
/// is the line's reason.
pub(super) fn parse_spec(words: &[String]) -> Parsed {
    let mut line = LineParser::default();
    let mut words = words.iter().peekable();
    while let Some(word) = words.next() {
        let negated = word == "!";
        let word = if negated {
            match words.next() {
                Some(option) => option,
                None => break,
            }
        } else {
            word
        };
        let read = line.core_option(word, negated, &mut words);
        match read {
            Ok(Read::Option) => {}
            // A target's own options (LOG's --log-prefix, …) follow; the target alone
            // decides.
            Ok(Read::Target) => break,
            Ok(Read::NotCore) => {
                if let Err(why) = line.module_option(word, negated, &mut words) {
                    line.cannot(why);
                    skip_values(&mut words);
                }
            }
            Err(why) => line.cannot(why),
        }
    }
    line.finish()
}

/// Skips the values of an option not understood: the words up to the next option.
fn skip_values(words: &mut Words<'_>) {
    while words.next_if(|w| !w.starts_with('-') && *w != "!").is_some() {}
}

/// What an option of iptables' own was to the line.
enum Read {
    /// A match or the chain, read: the next option follows.
    Option,
    /// The target, read: the line's matches end there.
    Target,
    /// None of iptables' own: a match module's, if any.
    NotCore,
}

/// One line's parse under way: what it matched so far, and what its later options depend on.
#[derive(Default)]
struct LineParser {
    spec: Spec,
    /// The last `-m`: the options after it are that module's.
    module: Option<String>,
    /// `--limit` and `--limit-burst`, in either order: one [`Rate`] once the line is read.
    limit: Option<(u32, Per)>,
    burst: Option<u32>,
    recent: RecentOptions,
    hashlimit: HashlimitOptions,
    connlimit: ConnlimitOptions,
    /// The first reason the line cannot be translated.
    untranslatable: Option<String>,
}

impl LineParser {
    /// Notes why the line cannot be translated, if it is the first reason.
    fn cannot(&mut self, why: String) {
        self.untranslatable.get_or_insert(why);
    }

    /// iptables' own options: the chain, the addresses and interfaces, the protocol, a
    /// match module, the target. A negated one is read and left out (the line then
    /// matches less than its Spec says).
    fn core_option(&mut self, word: &str, negated: bool, words: &mut Words<'_>) -> Result<Read, String> {
        let spec = &mut self.spec;
        if negated
            && matches!(
                word,
                "-s" | "--source"
                    | "-d"
                    | "--destination"
                    | "-i"
                    | "--in-interface"
                    | "-o"
                    | "--out-interface"
                    | "-p"
                    | "--protocol"
            )
        {
            // Not loopback is the interface the programs are on: no match at all here.
            if value(words, word)? == "lo"
                && matches!(word, "-i" | "--in-interface" | "-o" | "--out-interface")
            {
                return Ok(Read::Option);
            }
            return Err(negated_match(word));
        }
        match word {
            "-A" | "--append" => spec.chain = value(words, word)?,
            "-s" | "--source" => spec.source = ipv4_prefix(&value(words, word)?)?,
            "-d" | "--destination" => spec.destination = ipv4_prefix(&value(words, word)?)?,
            "-i" | "--in-interface" => spec.in_iface = Some(interface(&value(words, word)?)?),
            "-o" | "--out-interface" => spec.out_iface = Some(interface(&value(words, word)?)?),
            "-p" | "--protocol" => spec.protocol = protocol(&value(words, word)?)?,
            "-f" | "--fragment" => spec.fragment = true,
            "-m" | "--match" => {
                let name = value(words, word)?;
                self.module = Some(name.clone());
                module(&name)?;
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                spec.target = Some(target(value(words, word)?, matches!(word, "-g" | "--goto")));
                return Ok(Read::Target);
            }
            _ => return Ok(Read::NotCore),
        }
        Ok(Read::Option)
    }

    /// The options of the match modules this translation knows, each only after its own
    /// `-m` (tcp's and udp's ports and flags and icmp's type also with none, as iptables
    /// takes them after `-p`); any other option is not translated. Of the negated ones,
    /// only the TCP flags' are read (`! --syn`).
    fn module_option(&mut self, word: &str, negated: bool, words: &mut Words<'_>) -> Result<(), String> {
        let module = self.module.as_deref();
        let tcp = matches!(module, Some("tcp") | None);
        match word {
            "--syn" if tcp => self.spec.tcp_flags = Some(TcpFlags { negated, ..TcpFlags::SYN }),
            "--tcp-flags" if tcp => {
                let mask = tcp_flag_names(&value(words, word)?)?;
                let comp = tcp_flag_names(&value(words, word)?)?;
                self.spec.tcp_flags = Some(TcpFlags { mask, comp, negated });
            }
            // connlimit's own negations: `! --connlimit-above N` is `--connlimit-upto N`.
            option if module == Some("connlimit") => self.connlimit.option(option, negated, words)?,
            option if negated && module == Some("owner") => {
                return Err(format!(
                    "a negated owner match (! {option}) cannot be expressed: uids lists the users a rule admits, it does not except them"
                ));
            }
            option if negated && option.starts_with('-') => {
                // Its value, if it has one, is skipped by the caller.
                return Err(negated_match(option));
            }
            "--comment" if module == Some("comment") => self.spec.comment = Some(value(words, word)?),
            "--sport" | "--source-port" | "--dport" | "--destination-port"
                if matches!(module, Some("tcp" | "udp") | None) =>
            {
                let range = ports(&value(words, word)?)?;
                self.spec.ports_of(word).push(range);
            }
            "--sports" | "--source-ports" | "--dports" | "--destination-ports"
                if module == Some("multiport") =>
            {
                let list = value(words, word)?;
                let ranges = list.split(',').map(ports).collect::<Result<Vec<PortRange>, String>>()?;
                self.spec.ports_of(word).extend(ranges);
            }
            // `any` is every type: no match at all. A code is its type's, which the line's
            // Spec keeps: so it matches at least what the line does, and no other type.
            "--icmp-type" if matches!(module, Some("icmp") | None) => match value(words, word)?.as_str() {
                "any" => {}
                kind => {
                    let (icmp_type, code) = icmp_type(kind)?;
                    self.spec.icmp_type = Some(icmp_type);
                    if let Some(code) = code {
                        self.spec.icmp_code = Some(code);
                        let named = if kind.contains('/') {
                            kind.to_owned()
                        } else {
                            format!("{kind} ({icmp_type}/{code})")
                        };
                        return Err(format!(
                            "ICMP code {named} cannot be expressed: the policy matches types, not codes"
                        ));
                    }
                }
            },
            "--state" | "--ctstate"
                if module == Some(if word == "--state" { "state" } else { "conntrack" }) =>
            {
                self.spec.state = Some(states(&value(words, word)?)?);
            }
            "--limit" if module == Some("limit") => self.limit = Some(limit(word, &value(words, word)?)?),
            "--limit-burst" if module == Some("limit") => {
                self.burst = Some(burst(word, &value(words, word)?)?);
            }
            "--uid-owner" if module == Some("owner") => {
                let (uids, name) = uid_owner(&value(words, word)?)?;
                self.spec.owner = Some(uids);
                self.spec.owner_name = name;
            }
            "--gid-owner" | "--suppl-groups" if module == Some("owner") => {
                return Err(format!(
                    "{word} cannot be expressed: the filter sees a socket's owner, not its group"
                ));
            }
            "--socket-exists" if module == Some("owner") => {
                return Err("--socket-exists cannot be expressed: a rule asks a socket's owner, not whether there is a socket".into());
            }
            option if module == Some("recent") => self.recent.option(option, words)?,
            option if module == Some("hashlimit") => self.hashlimit.option(option, words)?,
            option if option.starts_with('-') => {
                return Err(match module {
                    Some(m) if !is_known(m) => format!("match module {m:?} is not translated"),
                    Some(m) => format!("option {option} of -m {m} is not translated"),
                    None => format!("option {option} is not translated"),
                });
            }
            other => return Err(format!("unexpected {other:?}")),
        }
        Ok(())
    }

    /// The line read to its end: its limit made whole, and a target required.
    fn finish(mut self) -> Parsed {
        self.spec.limit = match (self.limit, self.burst) {
            (Some((count, unit)), burst) => Some(Rate { count, unit, burst: burst.unwrap_or(5) }),
            (None, Some(_)) => {
                self.cannot("--limit-burst without --limit".into());
                None
            }
            (None, None) => None,
        };
        if self.recent.used {
            match self.recent.finish() {
                Ok(Recent::Set(list)) => self.spec.recent_set = Some(list),
                Ok(Recent::Seen(seen)) => self.spec.source_match = Some(seen),
                Ok(Recent::Remove(list)) => self.spec.recent_remove = Some(list),
                Err(why) => self.cannot(why),
            }
        }
        if self.hashlimit.used {
            match self.hashlimit.finish() {
                // A global hashlimit is a token bucket, as -m limit.
                Ok(Hashlimit::Global(rate)) if self.spec.limit.is_none() => self.spec.limit = Some(rate),
                Ok(Hashlimit::Global(_)) => {
                    self.cannot("-m limit and -m hashlimit on one line are not translated".into());
                }
                Ok(Hashlimit::Source(m)) => self.spec.source_match = Some(m),
                Err(why) => self.cannot(why),
            }
        }
        if self.recent.used && self.hashlimit.used {
            self.cannot("-m recent and -m hashlimit on one line are not translated".into());
        }
        // An ACCEPT of one code: the whole type would admit the others too.
        if let (Some(Target::Accept), Some(icmp_type), Some(why)) =
            (&self.spec.target, self.spec.icmp_type, self.untranslatable.as_mut())
            && self.spec.icmp_code.is_some()
            && why.starts_with("ICMP code ")
        {
            why.push_str(&format!(", and a rule of ICMP type {icmp_type} would admit its other codes too"));
        }
        if self.connlimit.used {
            match self.connlimit.finish() {
                Ok(m) if self.spec.source_match.is_none() => self.spec.source_match = Some(m),
                Ok(_) => self.cannot(
                    "-m connlimit with -m recent or -m hashlimit on one line is not translated".into(),
                ),
                Err(why) => self.cannot(why),
            }
        }
        Parsed { spec: self.spec, untranslatable: self.untranslatable }
    }
}

/// The value of `option`, the next word.
fn value(words: &mut Words<'_>, option: &str) -> Result<String, String> {
    words.next().cloned().ok_or_else(|| format!("{option} without its value"))
}

/// Why `! OPTION`, whichever, is not translated.
fn negated_match(option: &str) -> String {
    format!(
        "a negated match (! {option}) cannot be expressed: a rule admits its peers, it does not except them"
    )
}

/// `-p`: a protocol a rule can name, or `None` for all.
fn protocol(text: &str) -> Result<Option<u8>, String> {
    // iptables-save writes names, and numbers for protocols without one.
    let known = protocol_named(text).or_else(|| text.parse().ok()).filter(|p| rule_protocol(*p));
    match (text, known) {
        (_, Some(protocol)) => Ok(Some(protocol)),
        ("all" | "0", None) => Ok(None),
        (other, None) => {
            Err(format!("protocol {other} is not translated: the policy knows tcp, udp and icmp"))
        }
    }
}

/// Whether this translation knows match module `name`.
fn is_known(name: &str) -> bool {
    name == "comment" || MODULES.contains(&name)
}

/// `-m`: a module this translation knows.
fn module(name: &str) -> Result<(), String> {
    if is_known(name) { Ok(()) } else { Err(format!("match module {name:?} is not translated")) }
}

/// `-j NAME`, or `-g NAME` (`goto`): ACCEPT, DROP, REJECT and RETURN by jump are
/// iptables' own; any other is kept by name, a chain's for `chains` to follow and the
/// rest for `classify` to say why it is not translated.
fn target(name: String, goto: bool) -> Target {
    match name.as_str() {
        "ACCEPT" if !goto => Target::Accept,
        "DROP" if !goto => Target::Drop,
        "REJECT" if !goto => Target::Reject,
        "RETURN" if !goto => Target::Return,
        _ => Target::Other { name, goto },
    }
}

/// `--limit N/unit` (`option`: or hashlimit's `--hashlimit-upto`, …).
fn limit(option: &str, text: &str) -> Result<(u32, Per), String> {
    let (count, unit, _) = policy::parse_limit(text)
        .ok_or_else(|| format!("{option} {text}: expected N/sec, N/min, N/hour or N/day"))?;
    Ok((count, unit))
}

/// `--limit-burst B` (`option`: or `--hashlimit-burst`), within the policy's bounds.
fn burst(option: &str, text: &str) -> Result<u32, String> {
    text.parse()
        .ok()
        .filter(|b| (1..=10_000).contains(b))
        .ok_or_else(|| format!("{option} {text}: the policy's burst is 1 to 10000"))
}

/// The netmask that keeps a source address whole, as `--mask` writes it.
const FULL_MASK: &str = "255.255.255.255";

/// `-m recent`'s options, as read.
#[derive(Default)]
struct RecentOptions {
    used: bool,
    /// `--set`, `--update`, `--rcheck`, `--remove`: the last one wins, as in iptables.
    command: Option<String>,
    seconds: Option<u32>,
    hits: Option<u32>,
    list: Option<String>,
}

/// A `-m recent` match the policy can say.
enum Recent {
    /// `--set` of a list.
    Set(String),
    /// `--update` or `--rcheck` in a window.
    Seen(SourceMatch),
    /// `--remove` from a list.
    Remove(String),
}

impl RecentOptions {
    fn option(&mut self, option: &str, words: &mut Words<'_>) -> Result<(), String> {
        self.used = true;
        match option {
            "--set" | "--update" | "--rcheck" | "--remove" => self.command = Some(option.to_owned()),
            "--seconds" => self.seconds = Some(number(option, &value(words, option)?)?),
            "--hitcount" => self.hits = Some(number(option, &value(words, option)?)?),
            "--name" => self.list = Some(value(words, option)?),
            // The default; --reap only frees the list's memory.
            "--rsource" | "--reap" => {}
            "--mask" => match value(words, option)?.as_str() {
                FULL_MASK => {}
                mask => {
                    return Err(format!(
                        "-m recent --mask {mask} counts a network's sources together: per_source counts each address"
                    ));
                }
            },
            "--rdest" => {
                return Err("-m recent --rdest counts by destination: per_source counts by source".into());
            }
            other => return Err(format!("option {other} of -m recent is not translated")),
        }
        Ok(())
    }

    fn finish(&self) -> Result<Recent, String> {
        // iptables' default list.
        let list = self.list.clone().unwrap_or_else(|| "DEFAULT".to_owned());
        match self.command.as_deref() {
            Some("--set") => Ok(Recent::Set(list)),
            Some("--remove") => Ok(Recent::Remove(list)),
            Some(command) => {
                let Some(seconds) = self.seconds else {
                    return Err("-m recent --update/--rcheck without --seconds counts hits for ever: not a rate, not translated".into());
                };
                // No --hitcount: any hit within the window, as one.
                let hits = self.hits.unwrap_or(1);
                Ok(Recent::Seen(SourceMatch::Seen { list, seconds, hits, rcheck: command == "--rcheck" }))
            }
            None => Err("-m recent without --set, --update, --rcheck or --remove is not translated".into()),
        }
    }
}

/// `-m hashlimit`'s options, as read.
#[derive(Default)]
struct HashlimitOptions {
    used: bool,
    /// The rate, and whether it is `--hashlimit-above`.
    rate: Option<((u32, Per), bool)>,
    burst: Option<u32>,
    mode: Option<String>,
    srcmask: Option<u32>,
    name: Option<String>,
}

/// A `-m hashlimit` match the policy can say.
enum Hashlimit {
    /// No mode: one bucket for all, as `-m limit`.
    Global(Rate),
    /// Mode srcip, or `--hashlimit-above`.
    Source(SourceMatch),
}

impl HashlimitOptions {
    fn option(&mut self, option: &str, words: &mut Words<'_>) -> Result<(), String> {
        self.used = true;
        match option {
            "--hashlimit-upto" | "--hashlimit" | "--hashlimit-above" => {
                let rate = limit(option, &value(words, option)?)?;
                self.rate = Some((rate, option == "--hashlimit-above"));
            }
            "--hashlimit-burst" => self.burst = Some(burst(option, &value(words, option)?)?),
            "--hashlimit-mode" => self.mode = Some(value(words, option)?),
            "--hashlimit-srcmask" => self.srcmask = Some(number(option, &value(words, option)?)?),
            "--hashlimit-name" => self.name = Some(value(words, option)?),
            // The table's size and lifetimes: how it keeps its buckets, not what it matches.
            "--hashlimit-htable-size"
            | "--hashlimit-htable-max"
            | "--hashlimit-htable-expire"
            | "--hashlimit-htable-gcinterval" => {
                value(words, option)?;
            }
            // Its mask of destinations, where the mode has none.
            "--hashlimit-dstmask" => {
                value(words, option)?;
            }
            other => return Err(format!("option {other} of -m hashlimit is not translated")),
        }
        Ok(())
    }

    fn finish(&self) -> Result<Hashlimit, String> {
        let Some(((count, unit), above)) = self.rate else {
            return Err("-m hashlimit without --hashlimit-upto or --hashlimit-above is not translated".into());
        };
        // hashlimit's default burst, as -m limit's.
        let rate = Rate { count, unit, burst: self.burst.unwrap_or(5) };
        let name = self.name.clone().unwrap_or_default();
        match self.mode.as_deref() {
            None if above => {
                Ok(Hashlimit::Source(SourceMatch::Above { name, rate, per_source: false, prefix: 32 }))
            }
            None => Ok(Hashlimit::Global(rate)),
            // A network's sources counted together: per_source's `prefix`.
            Some("srcip") => match u8::try_from(self.srcmask.unwrap_or(32)).ok().filter(|mask| *mask <= 32) {
                Some(prefix) if above => {
                    Ok(Hashlimit::Source(SourceMatch::Above { name, rate, per_source: true, prefix }))
                }
                Some(prefix) => Ok(Hashlimit::Source(SourceMatch::Upto { name, rate, prefix })),
                None => Err(format!(
                    "--hashlimit-srcmask {}: an IPv4 prefix is 0 to 32 bits",
                    self.srcmask.unwrap_or_default()
                )),
            },
            Some(mode) => Err(format!(
                "--hashlimit-mode {mode} keeps a bucket per destination or port: per_source keeps one per source address"
            )),
        }
    }
}

/// `-m connlimit`'s options, as read.
#[derive(Default)]
struct ConnlimitOptions {
    used: bool,
    /// The count, and whether it is `--connlimit-above` (else `--connlimit-upto`).
    limit: Option<(u32, bool)>,
    /// `--connlimit-mask`: how many bits of a source's address make it one (32 unless
    /// written).
    mask: Option<u32>,
}

impl ConnlimitOptions {
    fn option(&mut self, option: &str, negated: bool, words: &mut Words<'_>) -> Result<(), String> {
        self.used = true;
        match option {
            // `! --connlimit-above N` is `--connlimit-upto N`, and the other way round.
            "--connlimit-above" | "--connlimit-upto" => {
                let count = number(option, &value(words, option)?)?;
                self.limit = Some((count, (option == "--connlimit-above") != negated));
            }
            _ if negated => return Err(negated_match(option)),
            "--connlimit-mask" => self.mask = Some(number(option, &value(words, option)?)?),
            // The default, as iptables-save writes it.
            "--connlimit-saddr" => {}
            "--connlimit-daddr" => {
                return Err("-m connlimit --connlimit-daddr counts the flows to each destination: per_source.connections counts those of each source".into());
            }
            other => return Err(format!("option {other} of -m connlimit is not translated")),
        }
        Ok(())
    }

    fn finish(&self) -> Result<SourceMatch, String> {
        let Some((count, above)) = self.limit else {
            return Err("-m connlimit without --connlimit-above or --connlimit-upto is not translated".into());
        };
        let option = if above { "--connlimit-above" } else { "--connlimit-upto" };
        let count = u8::try_from(count).ok().filter(|n| (1..=MAX_CONNECTIONS).contains(&usize::from(*n))).ok_or_else(|| {
            if count == 0 {
                format!("{option} 0 cannot be expressed: per_source.connections allows 1 to {MAX_CONNECTIONS} flows of a source at once")
            } else {
                format!("{option} {count} is more than per_source.connections allows: at most {MAX_CONNECTIONS} flows of a source at once")
            }
        })?;
        let prefix = match self.mask.unwrap_or(32) {
            mask @ 0..=32 => u8::try_from(mask).expect("at most 32"),
            mask => return Err(format!("--connlimit-mask {mask}: an IPv4 prefix is 0 to 32 bits")),
        };
        Ok(SourceMatch::Connections { count, above, prefix })
    }
}

/// A count of an option's (`--seconds 60`).
fn number(option: &str, text: &str) -> Result<u32, String> {
    text.parse().map_err(|_| format!("{option} {text}: not a number"))
}

/// `--uid-owner`: a uid or a range as iptables-save writes them (`0`, `1000-1999`), or a
/// user name, looked up where the import runs (its uid and name). 65534 is what the
/// kernel reports for a packet of no socket: a rule cannot name it.
fn uid_owner(text: &str) -> Result<(UidRange, Option<String>), String> {
    let uid = |t: &str| t.parse::<u32>().ok().filter(|uid| *uid != u32::MAX);
    // A range is digits on both sides of its dash: names have dashes too (`debian-tor`).
    let (range, name) = match text.split_once('-').filter(|(a, _)| a.bytes().all(|b| b.is_ascii_digit())) {
        Some((a, b)) => match (uid(a), uid(b)) {
            (Some(first), Some(last)) if first <= last => (UidRange { first, last }, None),
            _ => return Err(format!("--uid-owner {text} is not a uid range (0-4294967294)")),
        },
        None if text.bytes().all(|b| b.is_ascii_digit()) => match uid(text) {
            Some(uid) => (UidRange { first: uid, last: uid }, None),
            None => return Err(format!("--uid-owner {text} is not a uid (0-4294967294)")),
        },
        None => match nix::unistd::User::from_name(text) {
            Ok(Some(user)) => {
                let uid = user.uid.as_raw();
                (UidRange { first: uid, last: uid }, Some(text.to_owned()))
            }
            _ => {
                return Err(format!(
                    "--uid-owner {text}: no such user where the import runs, to write its uid (iptables-save writes uids)"
                ));
            }
        },
    };
    if (range.first..=range.last).contains(&NO_SOCKET_UID) {
        return Err(format!(
            "--uid-owner {text} cannot be expressed: uid {NO_SOCKET_UID} is what the kernel reports for packets of no socket, which the filter cannot tell apart"
        ));
    }
    if u64::from(range.last - range.first) >= u64::from(MAX_RULE_UIDS) {
        return Err(format!("--uid-owner {text} holds more uids than the policy's {MAX_RULE_UIDS} in all"));
    }
    Ok((range, name))
}

/// An address or prefix of `-s`/`-d`; `0.0.0.0/0` (anyone) is no match at all.
fn ipv4_prefix(text: &str) -> Result<Option<Prefix>, String> {
    let prefix = Prefix::parse(text).map_err(|e| format!("-s/-d {text}: {e}"))?;
    if prefix.is_v6() {
        return Err(format!("{text} is IPv6: import reads iptables-save (IPv4), not ip6tables-save"));
    }
    Ok((prefix.len > 0).then_some(prefix))
}

fn interface(text: &str) -> Result<String, String> {
    if text.ends_with('+') {
        return Err(format!(
            "interface wildcard {text} cannot be expressed: the policy is for one interface"
        ));
    }
    Ok(text.to_owned())
}

/// A port or a range, as iptables-save writes them: `22`, `1024:65535` (`:1023` and
/// `1024:` leave out 0 and 65535).
fn ports(text: &str) -> Result<PortRange, String> {
    let number = |t: &str, missing: u16| {
        if t.is_empty() {
            return Ok(missing);
        }
        t.parse::<u16>().map_err(|_| format!("port {text} is not a port number or range (0-65535)"))
    };
    let (first, last) = match text.split_once(':') {
        Some((first, last)) => (number(first, 0)?, number(last, u16::MAX)?),
        None => {
            let port = number(text, 0)?;
            (port, port)
        }
    };
    if first > last {
        return Err(format!("port range {text} is empty: its first port is after its last"));
    }
    Ok(PortRange { first, last })
}

/// `--tcp-flags`' lists: `SYN,ACK`, `ALL`, `NONE`.
fn tcp_flag_names(text: &str) -> Result<u8, String> {
    let mut flags = 0;
    for name in text.split(',') {
        flags |= match name {
            "FIN" => TCP_FIN,
            "SYN" => TCP_SYN,
            "RST" => TCP_RST,
            "PSH" => TCP_PSH,
            "ACK" => TCP_ACK,
            "URG" => TCP_URG,
            "ECE" => 0x40,
            "CWR" => 0x80,
            "ALL" => TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH | TCP_ACK | TCP_URG,
            "NONE" => 0,
            other => return Err(format!("TCP flag {other} is not known")),
        };
    }
    Ok(flags)
}

/// The names iptables gives ICMP types, and codes of them (`iptables -p icmp -h`): a
/// name without a code is the whole type.
const ICMP_NAMES: [(&str, u8, Option<u8>); 39] = [
    ("echo-reply", ICMP_ECHO_REPLY, None),
    ("pong", ICMP_ECHO_REPLY, None),
    ("destination-unreachable", ICMP_DEST_UNREACHABLE, None),
    ("network-unreachable", ICMP_DEST_UNREACHABLE, Some(0)),
    ("host-unreachable", ICMP_DEST_UNREACHABLE, Some(1)),
    ("protocol-unreachable", ICMP_DEST_UNREACHABLE, Some(2)),
    ("port-unreachable", ICMP_DEST_UNREACHABLE, Some(3)),
    ("fragmentation-needed", ICMP_DEST_UNREACHABLE, Some(4)),
    ("source-route-failed", ICMP_DEST_UNREACHABLE, Some(5)),
    ("network-unknown", ICMP_DEST_UNREACHABLE, Some(6)),
    ("host-unknown", ICMP_DEST_UNREACHABLE, Some(7)),
    ("network-prohibited", ICMP_DEST_UNREACHABLE, Some(9)),
    ("host-prohibited", ICMP_DEST_UNREACHABLE, Some(10)),
    ("TOS-network-unreachable", ICMP_DEST_UNREACHABLE, Some(11)),
    ("TOS-host-unreachable", ICMP_DEST_UNREACHABLE, Some(12)),
    ("communication-prohibited", ICMP_DEST_UNREACHABLE, Some(13)),
    ("host-precedence-violation", ICMP_DEST_UNREACHABLE, Some(14)),
    ("precedence-cutoff", ICMP_DEST_UNREACHABLE, Some(15)),
    ("source-quench", 4, None),
    ("redirect", 5, None),
    ("network-redirect", 5, Some(0)),
    ("host-redirect", 5, Some(1)),
    ("TOS-network-redirect", 5, Some(2)),
    ("TOS-host-redirect", 5, Some(3)),
    ("echo-request", ICMP_ECHO_REQUEST, None),
    ("ping", ICMP_ECHO_REQUEST, None),
    ("router-advertisement", 9, None),
    ("router-solicitation", 10, None),
    ("time-exceeded", ICMP_TIME_EXCEEDED, None),
    ("ttl-exceeded", ICMP_TIME_EXCEEDED, None),
    ("ttl-zero-during-transit", ICMP_TIME_EXCEEDED, Some(0)),
    ("ttl-zero-during-reassembly", ICMP_TIME_EXCEEDED, Some(1)),
    ("parameter-problem", ICMP_PARAMETER_PROBLEM, None),
    ("ip-header-bad", ICMP_PARAMETER_PROBLEM, Some(0)),
    ("required-option-missing", ICMP_PARAMETER_PROBLEM, Some(1)),
    ("timestamp-request", 13, None),
    ("timestamp-reply", 14, None),
    ("address-mask-request", 17, None),
    ("address-mask-reply", 18, None),
];

/// An ICMP type, and the one code of it a line may name: by number (as iptables-save
/// writes them, `8`, `3/4`) or by iptables' name (`echo-request`, `fragmentation-needed`),
/// whatever its case.
fn icmp_type(text: &str) -> Result<(u8, Option<u8>), String> {
    let unknown = || format!("ICMP type {text} is not translated (give it as a number)");
    if let Some(&(_, kind, code)) = ICMP_NAMES.iter().find(|(name, _, _)| name.eq_ignore_ascii_case(text)) {
        return Ok((kind, code));
    }
    match text.split_once('/') {
        Some((kind, code)) => {
            Ok((kind.parse().map_err(|_| unknown())?, Some(code.parse().map_err(|_| unknown())?)))
        }
        None => Ok((text.parse().map_err(|_| unknown())?, None)),
    }
}

fn states(text: &str) -> Result<States, String> {
    let mut s = States::default();
    for state in text.split(',') {
        match state {
            "NEW" => s.new = true,
            "ESTABLISHED" => s.established = true,
            "RELATED" => s.related = true,
            "INVALID" => s.invalid = true,
            other => return Err(format!("conntrack state {other} is not translated")),
        }
    }
    Ok(s)
}
