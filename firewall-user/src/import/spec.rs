//! One rule line's matches, parsed and typed: a [`Spec`].
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
}

/// The match modules this translation knows.
pub(super) const MODULES: [&str; 7] = ["tcp", "udp", "icmp", "state", "conntrack", "limit", "multiport"];

/// Parses the words of one `-A` line; the error says which part cannot be translated.
pub(super) fn parse_spec(words: &[String]) -> std::result::Result<Spec, String> {
    let mut spec = Spec::default();
    let mut module: Option<String> = None;
    let mut limit: Option<(u32, &'static str)> = None;
    let mut burst: Option<u32> = None;
    let mut it = words.iter().map(String::as_str);
    let arg = |it: &mut dyn Iterator<Item = &str>, option: &str| {
        it.next().map(str::to_owned).ok_or_else(|| format!("{option} without its value"))
    };
    while let Some(word) = it.next() {
        match word {
            "-A" | "--append" => spec.chain = arg(&mut it, word)?,
            "!" => {
                let next = it.next().unwrap_or("");
                return Err(format!(
                    "a negated match (! {next}) cannot be expressed: a rule admits its peers, it does not except them"
                ));
            }
            "-s" | "--source" => spec.source = ipv4_prefix(&arg(&mut it, word)?)?,
            "-d" | "--destination" => spec.destination = ipv4_prefix(&arg(&mut it, word)?)?,
            "-i" | "--in-interface" => spec.in_iface = Some(interface(&arg(&mut it, word)?)?),
            "-o" | "--out-interface" => spec.out_iface = Some(interface(&arg(&mut it, word)?)?),
            "-p" | "--protocol" => {
                let p = arg(&mut it, word)?;
                // iptables-save writes names, and numbers for protocols without one.
                let known = protocol_named(&p).or_else(|| p.parse().ok()).filter(|p| rule_protocol(*p));
                spec.protocol = match (p.as_str(), known) {
                    (_, Some(protocol)) => Some(protocol),
                    ("all" | "0", None) => None,
                    (other, None) => {
                        return Err(format!(
                            "protocol {other} is not translated: the policy knows tcp, udp and icmp"
                        ));
                    }
                };
            }
            "-f" | "--fragment" => {
                return Err("-f (later fragments) is not translated: every fragment is dropped here (invalid-fragment)".into());
            }
            "-m" | "--match" => {
                let name = arg(&mut it, word)?;
                if name == "comment" || MODULES.contains(&name.as_str()) {
                    module = Some(name);
                } else {
                    return Err(format!("match module {name:?} is not translated"));
                }
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let name = arg(&mut it, word)?;
                let goto = matches!(word, "-g" | "--goto");
                spec.target = Some(match name.as_str() {
                    "ACCEPT" if !goto => Target::Accept,
                    "DROP" if !goto => Target::Drop,
                    _ => Target::Other { name, goto },
                });
                // A target's own options (LOG's --log-prefix, …) follow; the target
                // alone decides.
                break;
            }
            "--comment" if module.as_deref() == Some("comment") => spec.comment = Some(arg(&mut it, word)?),
            "--sport" | "--source-port" | "--dport" | "--destination-port"
                if matches!(module.as_deref(), Some("tcp" | "udp")) || module.is_none() =>
            {
                let port = port(&arg(&mut it, word)?)?;
                if word.starts_with("--s") { spec.sports.push(port) } else { spec.dports.push(port) }
            }
            "--sports" | "--source-ports" | "--dports" | "--destination-ports"
                if module.as_deref() == Some("multiport") =>
            {
                let list = arg(&mut it, word)?;
                let ports = list.split(',').map(port).collect::<std::result::Result<Vec<u16>, String>>()?;
                if word.starts_with("--s") { spec.sports.extend(ports) } else { spec.dports.extend(ports) }
            }
            "--icmp-type" if matches!(module.as_deref(), Some("icmp") | None) => {
                spec.icmp_type = Some(icmp_type(&arg(&mut it, word)?)?);
            }
            "--state" | "--ctstate"
                if module.as_deref() == Some(if word == "--state" { "state" } else { "conntrack" }) =>
            {
                spec.state = Some(states(&arg(&mut it, word)?)?);
            }
            "--limit" if module.as_deref() == Some("limit") => {
                let text = arg(&mut it, word)?;
                let (count, unit, _) = policy::parse_limit(&text)
                    .ok_or_else(|| format!("--limit {text}: expected N/sec, N/min, N/hour or N/day"))?;
                limit = Some((count, unit));
            }
            "--limit-burst" if module.as_deref() == Some("limit") => {
                let text = arg(&mut it, word)?;
                burst = Some(
                    text.parse()
                        .ok()
                        .filter(|b| (1..=10_000).contains(b))
                        .ok_or_else(|| format!("--limit-burst {text}: the policy's burst is 1 to 10000"))?,
                );
            }
            option if option.starts_with('-') => {
                return Err(match &module {
                    Some(m) => format!("option {option} of -m {m} is not translated"),
                    None => format!("option {option} is not translated"),
                });
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    spec.limit = match (limit, burst) {
        (Some((count, unit)), burst) => Some(Rate { count, unit, burst: burst.unwrap_or(5) }),
        (None, Some(_)) => return Err("--limit-burst without --limit".into()),
        (None, None) => None,
    };
    if spec.target.is_none() {
        return Err("no target (-j): the line only counts, and the policy has no such rule".into());
    }
    Ok(spec)
}

/// An address or prefix of `-s`/`-d`; `0.0.0.0/0` (anyone) is no match at all.
pub(super) fn ipv4_prefix(text: &str) -> std::result::Result<Option<Prefix>, String> {
    let prefix = Prefix::parse(text).map_err(|e| format!("-s/-d {text}: {e}"))?;
    if prefix.is_v6() {
        return Err(format!("{text} is IPv6: import reads iptables-save (IPv4), not ip6tables-save"));
    }
    Ok((prefix.len > 0).then_some(prefix))
}

pub(super) fn interface(text: &str) -> std::result::Result<String, String> {
    if text.ends_with('+') {
        return Err(format!(
            "interface wildcard {text} cannot be expressed: the policy is for one interface"
        ));
    }
    Ok(text.to_owned())
}

pub(super) fn port(text: &str) -> std::result::Result<u16, String> {
    if text.contains(':') {
        return Err(format!("port range {text} cannot be expressed: the policy lists single ports"));
    }
    text.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {text} is not a port number (1-65535)"))
}

/// The ICMP types the policy names, by number (as iptables-save writes them) or name.
pub(super) fn icmp_type(text: &str) -> std::result::Result<u8, String> {
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

pub(super) fn states(text: &str) -> std::result::Result<States, String> {
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
