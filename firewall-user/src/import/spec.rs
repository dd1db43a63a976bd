//! One rule line's matches, parsed and typed: a [`Spec`].
//!
//! [`parse_spec`] reads a line's options one at a time: iptables' own (`-s`, `-p`, `-m`,
//! `-j`, …), then those of the match module last named; each value is read by a helper
//! of its own ([`ipv4_prefix`], [`port`], [`states`], …). They fail with a `String`, the
//! reason the line is not translated (see [`super::dump::words`]).
use std::fmt;

use firewall_common::{
    ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED,
    protocol_named, rule_protocol,
};

use crate::policy::{self, Prefix};

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

/// `-m limit --limit N/unit --limit-burst B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Rate {
    pub(super) count: u32,
    pub(super) unit: &'static str,
    pub(super) burst: u32,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} burst {}", self.count, self.unit, self.burst)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Accept,
    Drop,
    /// Anything else (LOG, REJECT, RETURN, a user-defined chain); `goto` for `-g`.
    Other {
        name: String,
        goto: bool,
    },
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
    pub(super) sports: Vec<u16>,
    pub(super) dports: Vec<u16>,
    pub(super) icmp_type: Option<u8>,
    pub(super) state: Option<States>,
    pub(super) limit: Option<Rate>,
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
            self.state.is_some(),
            self.limit.is_some(),
        ]
        .into_iter()
        .filter(|m| *m)
        .count()
    }

    /// The source ports for `--sport`, `--sports` and their long names; else the
    /// destination ports.
    fn ports_of(&mut self, option: &str) -> &mut Vec<u16> {
        if option.starts_with("--s") { &mut self.sports } else { &mut self.dports }
    }
}

/// The match modules this translation knows (besides `comment`, whose text goes with the rule).
const MODULES: [&str; 7] = ["tcp", "udp", "icmp", "state", "conntrack", "limit", "multiport"];

/// The words of a line still to read.
type Words<'a> = std::slice::Iter<'a, String>;

/// Parses the words of one `-A` line; the error says which part cannot be translated.
pub(super) fn parse_spec(words: &[String]) -> Result<Spec, String> {
    let mut line = LineParser::default();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        match line.core_option(word, &mut words)? {
            Read::Option => {}
            // A target's own options (LOG's --log-prefix, …) follow; the target alone
            // decides.
            Read::Target => break,
            Read::NotCore => line.module_option(word, &mut words)?,
        }
    }
    line.finish()
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
    limit: Option<(u32, &'static str)>,
    burst: Option<u32>,
}

impl LineParser {
    /// iptables' own options: the chain, the addresses and interfaces, the protocol, a
    /// match module, the target.
    fn core_option(&mut self, word: &str, words: &mut Words<'_>) -> Result<Read, String> {
        let spec = &mut self.spec;
        match word {
            "-A" | "--append" => spec.chain = value(words, word)?,
            "!" => return Err(negated(words.next())),
            "-s" | "--source" => spec.source = ipv4_prefix(&value(words, word)?)?,
            "-d" | "--destination" => spec.destination = ipv4_prefix(&value(words, word)?)?,
            "-i" | "--in-interface" => spec.in_iface = Some(interface(&value(words, word)?)?),
            "-o" | "--out-interface" => spec.out_iface = Some(interface(&value(words, word)?)?),
            "-p" | "--protocol" => spec.protocol = protocol(&value(words, word)?)?,
            "-f" | "--fragment" => {
                return Err("-f (later fragments) is not translated: a later fragment passes here only as its datagram's first fragment did, and drops otherwise (fragment-orphan)".into());
            }
            "-m" | "--match" => self.module = Some(module(value(words, word)?)?),
            "-j" | "--jump" | "-g" | "--goto" => {
                spec.target = Some(target(value(words, word)?, matches!(word, "-g" | "--goto")));
                return Ok(Read::Target);
            }
            _ => return Ok(Read::NotCore),
        }
        Ok(Read::Option)
    }

    /// The options of the match modules this translation knows, each only after its own
    /// `-m` (tcp's and udp's ports and icmp's type also with none, as iptables takes them
    /// after `-p`); any other option is not translated.
    fn module_option(&mut self, word: &str, words: &mut Words<'_>) -> Result<(), String> {
        let module = self.module.as_deref();
        match word {
            "--comment" if module == Some("comment") => self.spec.comment = Some(value(words, word)?),
            "--sport" | "--source-port" | "--dport" | "--destination-port"
                if matches!(module, Some("tcp" | "udp") | None) =>
            {
                let port = port(&value(words, word)?)?;
                self.spec.ports_of(word).push(port);
            }
            "--sports" | "--source-ports" | "--dports" | "--destination-ports"
                if module == Some("multiport") =>
            {
                let list = value(words, word)?;
                let ports = list.split(',').map(port).collect::<Result<Vec<u16>, String>>()?;
                self.spec.ports_of(word).extend(ports);
            }
            "--icmp-type" if matches!(module, Some("icmp") | None) => {
                self.spec.icmp_type = Some(icmp_type(&value(words, word)?)?);
            }
            "--state" | "--ctstate"
                if module == Some(if word == "--state" { "state" } else { "conntrack" }) =>
            {
                self.spec.state = Some(states(&value(words, word)?)?);
            }
            "--limit" if module == Some("limit") => self.limit = Some(limit(&value(words, word)?)?),
            "--limit-burst" if module == Some("limit") => self.burst = Some(burst(&value(words, word)?)?),
            option if option.starts_with('-') => {
                return Err(match module {
                    Some(m) => format!("option {option} of -m {m} is not translated"),
                    None => format!("option {option} is not translated"),
                });
            }
            other => return Err(format!("unexpected {other:?}")),
        }
        Ok(())
    }

    /// The line read to its end: its limit made whole, and a target required.
    fn finish(self) -> Result<Spec, String> {
        let mut spec = self.spec;
        spec.limit = match (self.limit, self.burst) {
            (Some((count, unit)), burst) => Some(Rate { count, unit, burst: burst.unwrap_or(5) }),
            (None, Some(_)) => return Err("--limit-burst without --limit".into()),
            (None, None) => None,
        };
        if spec.target.is_none() {
            return Err("no target (-j): the line only counts, and the policy has no such rule".into());
        }
        Ok(spec)
    }
}

/// The value of `option`, the next word.
fn value(words: &mut Words<'_>, option: &str) -> Result<String, String> {
    words.next().cloned().ok_or_else(|| format!("{option} without its value"))
}

/// Why `! OPTION`, whichever, is not translated.
fn negated(option: Option<&String>) -> String {
    let option = option.map_or("", String::as_str);
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

/// `-m`: a module this translation knows.
fn module(name: String) -> Result<String, String> {
    if name == "comment" || MODULES.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(format!("match module {name:?} is not translated"))
    }
}

/// `-j NAME`, or `-g NAME` (`goto`): ACCEPT and DROP by jump are the policy's; any other
/// is kept by name, for `classify` to say why it is not translated.
fn target(name: String, goto: bool) -> Target {
    match name.as_str() {
        "ACCEPT" if !goto => Target::Accept,
        "DROP" if !goto => Target::Drop,
        _ => Target::Other { name, goto },
    }
}

/// `--limit N/unit`.
fn limit(text: &str) -> Result<(u32, &'static str), String> {
    let (count, unit, _) = policy::parse_limit(text)
        .ok_or_else(|| format!("--limit {text}: expected N/sec, N/min, N/hour or N/day"))?;
    Ok((count, unit))
}

/// `--limit-burst B`, within the policy's bounds.
fn burst(text: &str) -> Result<u32, String> {
    text.parse()
        .ok()
        .filter(|b| (1..=10_000).contains(b))
        .ok_or_else(|| format!("--limit-burst {text}: the policy's burst is 1 to 10000"))
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

fn port(text: &str) -> Result<u16, String> {
    if text.contains(':') {
        return Err(format!("port range {text} cannot be expressed: the policy lists single ports"));
    }
    text.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {text} is not a port number (1-65535)"))
}

/// The ICMP types the policy names, by number (as iptables-save writes them) or name.
fn icmp_type(text: &str) -> Result<u8, String> {
    if text.contains('/') {
        return Err(format!("ICMP code {text} cannot be expressed: the policy matches types, not codes"));
    }
    match text {
        "echo-reply" | "pong" => Ok(ICMP_ECHO_REPLY),
        "destination-unreachable" => Ok(ICMP_DEST_UNREACHABLE),
        "echo-request" | "ping" => Ok(ICMP_ECHO_REQUEST),
        "time-exceeded" | "ttl-exceeded" => Ok(ICMP_TIME_EXCEEDED),
        "parameter-problem" => Ok(ICMP_PARAMETER_PROBLEM),
        "any" => Err("--icmp-type any cannot be expressed: a rule names one ICMP type".into()),
        number => {
            number.parse().map_err(|_| format!("ICMP type {text} is not translated (give it as a number)"))
        }
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
