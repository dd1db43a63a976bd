//! `firewall import`: an `iptables-save` dump of a tight script (the seed's idioms) into a
//! policy file, and a list of what could not be translated.
//!
//! Three steps: the dump's lines are checked and split into tables ([`parse_dump`]); each
//! rule line of `*filter` is parsed into a [`Spec`] (its matches, typed) and classified
//! into a [`Role`] (an anti-spoof entry, a built-in, a line that opens flows, a return,
//! an ICMP type); then the roles are grouped into rules (an opening line and its return
//! are one rule; the peers of one service are one list; tcp and udp, or several ports,
//! with the same peers are one rule) and written with `toml_edit`, every rule with the
//! dump's lines it came from. Whatever cannot be translated is a [`Finding`], one line
//! each, on stderr and at the top of the policy.
use std::{
    collections::HashMap,
    fmt, fs,
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED, PROTO_ICMP, PROTO_TCP, protocol_name, protocol_named, rule_protocol,
};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::{
    files::{self, FileError, Perms},
    policy::{self, PolicyError, Prefix},
};

/// What the command line adds to the dump.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--iface`: `[host] interface`, whatever the dump's `-i`/`-o` say.
    pub iface: Option<String>,
    /// `--address`: OURIP, whatever the dump's `-d`/`-s` say.
    pub address: Option<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{input}:{line}: not an iptables-save dump: {why}")]
    NotADump { input: String, line: usize, why: String },
    #[error("{input}: no *filter table (tables: {tables}): nothing to import")]
    NoFilter { input: String, tables: String },
    #[error(
        "{input}: no host address: no ACCEPT rule has -d on INPUT or -s on OUTPUT; give it with --address"
    )]
    NoAddress { input: String },
    #[error(
        "nothing to import from {input}: no line of its filter table became a rule ({untranslated} lines not translated, listed above)"
    )]
    NothingUsable { input: String, untranslated: usize },
    #[error("the imported policy does not validate")]
    Refused(#[source] PolicyError),
    #[error("{} exists: not overwritten (give --force to replace it)", path.display())]
    Exists { path: PathBuf },
    #[error(transparent)]
    Write(#[from] FileError),
}

type Result<T> = std::result::Result<T, ImportError>;

/// One line of the dump that the policy does not carry as written: where, what, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub line: usize,
    pub rule: String,
    pub why: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "iptables-save line {}: {}: {}", self.line, self.rule, self.why)
    }
}

/// The policy made of a dump, and the account of every line that is not a rule's.
#[derive(Clone, Debug)]
pub struct Translation {
    pub text: String,
    pub rules: usize,
    /// Lines not translated: the policy does not do what they do.
    pub untranslated: Vec<Finding>,
    /// Lines translated, but where the firewall does more or less than the line.
    pub differences: Vec<Finding>,
    /// Lines that need nothing written: the firewall does it always.
    pub built_in: Vec<Finding>,
}

/// What `import` does with an OUT that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Leave it, and fail (the default).
    Keep,
    /// Replace it (`--force`).
    Replace,
}

/// `firewall import FILE [-o OUT] [--force]`: reads the dump (`-`: stdin), translates
/// it, prints the findings on stderr, and writes the policy to OUT (atomically; an
/// existing OUT only with [`Existing::Replace`]) or stdout. Returns the translation for the summary.
pub fn run(file: &Path, output: Option<&Path>, existing: Existing, options: &Options) -> Result<Translation> {
    if let Some(out) = output
        && existing == Existing::Keep
        && fs::symlink_metadata(out).is_ok()
    {
        return Err(ImportError::Exists { path: out.to_owned() });
    }
    let (input, text) = if file == Path::new("-") {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| ImportError::Read { path: file.into(), source })?;
        ("stdin".to_owned(), text)
    } else {
        let text =
            fs::read_to_string(file).map_err(|source| ImportError::Read { path: file.into(), source })?;
        (file.display().to_string(), text)
    };
    let translation = translate(&text, &input, options)?;
    for finding in translation.untranslated.iter().chain(&translation.differences) {
        eprintln!("{finding}");
    }
    if translation.rules == 0 {
        return Err(ImportError::NothingUsable { input, untranslated: translation.untranslated.len() });
    }
    match output {
        None => print!("{}", translation.text),
        // A file replaced keeps its mode and owner; a new one is made as a shell's `>`
        // makes it. Either way through a temporary file no one else could have planted.
        Some(out) if existing == Existing::Replace => {
            let perms = files::meta(out)?.map_or(Perms::New, Perms::Like);
            files::replace(out, translation.text.as_bytes(), perms)?;
        }
        Some(out) => files::create(out, translation.text.as_bytes(), Perms::New).map_err(|e| match e {
            FileError::Exists { path } => ImportError::Exists { path },
            e => e.into(),
        })?,
    }
    let to = output.map_or("stdout".to_owned(), |o| o.display().to_string());
    eprintln!(
        "firewall: imported {} rule{} from {input} to {to}; {} not translated, {} translated with a difference{}",
        translation.rules,
        if translation.rules == 1 { "" } else { "s" },
        count(translation.untranslated.len()),
        count(translation.differences.len()),
        if translation.untranslated.len() + translation.differences.len() > 0 {
            " (listed above and at the top of the policy)"
        } else {
            ""
        }
    );
    Ok(translation)
}

// ---------------------------------------------------------------------------------------
// The dump: tables, chains, rule lines.

/// One table of the dump, between `*NAME` and `COMMIT`.
#[derive(Debug)]
struct DumpTable {
    name: String,
    line: usize,
    /// `:CHAIN POLICY [packets:bytes]`: the line, the chain, its policy (`None`: `-`, a
    /// user-defined chain), the line as written.
    chains: Vec<(usize, String, Option<String>, String)>,
    /// `-A CHAIN …`: the line number and the rule as written (counters removed).
    rules: Vec<(usize, String)>,
}

/// Checks that `text` is an iptables-save dump and splits it into tables.
fn parse_dump(text: &str, input: &str) -> Result<Vec<DumpTable>> {
    let not_a_dump = |line: usize, why: String| ImportError::NotADump { input: input.to_owned(), line, why };
    let mut tables: Vec<DumpTable> = Vec::new();
    let mut open: Option<DumpTable> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = &open {
                return Err(not_a_dump(
                    n,
                    format!("table {} (line {}) has no COMMIT before *{name}", t.name, t.line),
                ));
            }
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(not_a_dump(n, format!("bad table line {line:?}")));
            }
            open = Some(DumpTable { name: name.to_owned(), line: n, chains: Vec::new(), rules: Vec::new() });
            continue;
        }
        let Some(table) = open.as_mut() else {
            return Err(not_a_dump(n, format!("expected a *table line first, found {:?}", cut(line))));
        };
        if line == "COMMIT" {
            tables.push(open.take().expect("a table is open"));
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let (Some(chain), Some(policy)) = (words.next(), words.next()) else {
                return Err(not_a_dump(n, format!("bad chain line {line:?}")));
            };
            let policy = (policy != "-").then(|| policy.to_owned());
            table.chains.push((n, chain.to_owned(), policy, line.to_owned()));
        } else {
            // `iptables-save -c` puts the counters first: `[12:3456] -A INPUT …`.
            let rule = match line.strip_prefix('[').and_then(|l| l.split_once(']')) {
                Some((_, rest)) => rest.trim_start(),
                None => line,
            };
            if !rule.starts_with("-A ") {
                return Err(not_a_dump(
                    n,
                    format!("expected *table, :CHAIN, -A, COMMIT or a # comment, found {:?}", cut(line)),
                ));
            }
            table.rules.push((n, rule.to_owned()));
        }
    }
    if let Some(t) = open {
        return Err(not_a_dump(
            text.lines().count(),
            format!("the dump ends inside table {} (line {}), before its COMMIT: cut short?", t.name, t.line),
        ));
    }
    if tables.is_empty() {
        return Err(not_a_dump(
            1,
            "no *table line (an iptables-save dump starts its tables with *filter, *nat, …)".into(),
        ));
    }
    Ok(tables)
}

/// The start of a long line, for an error message.
fn cut(line: &str) -> String {
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(60).collect::<String>())
    } else {
        line.to_owned()
    }
}

// The parsers of one line below fail with a `String`: it is not an error that anyone
// handles but the reason a line is not translated, kept as text in a `Finding`
// (`Finding::why`) and listed in the output among the others.

/// Splits a rule line into words, as iptables-save quotes them (`--comment "a b"`,
/// `\"` inside quotes).
fn words(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '"' => quoted = !quoted,
                '\\' if quoted => word.extend(chars.next()),
                c if c.is_whitespace() && !quoted => break,
                c => word.push(c),
            }
        }
        if quoted {
            return Err("a quote is not closed".into());
        }
        out.push(word);
    }
}

// ---------------------------------------------------------------------------------------
// One rule line, typed.

/// conntrack states a `-m state --state` / `-m conntrack --ctstate` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "conntrack's states, each named or not, as iptables lists them"
)]
struct States {
    new: bool,
    established: bool,
    related: bool,
    invalid: bool,
}

impl States {
    fn only_invalid(self) -> bool {
        self == States { invalid: true, ..States::default() }
    }
}

/// `-m limit --limit N/unit --limit-burst B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Rate {
    count: u32,
    unit: &'static str,
    burst: u32,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} burst {}", self.count, self.unit, self.burst)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
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
struct Spec {
    chain: String,
    source: Option<Prefix>,
    destination: Option<Prefix>,
    in_iface: Option<String>,
    out_iface: Option<String>,
    protocol: Option<u8>,
    sports: Vec<u16>,
    dports: Vec<u16>,
    icmp_type: Option<u8>,
    state: Option<States>,
    limit: Option<Rate>,
    comment: Option<String>,
    target: Option<Target>,
}

impl Spec {
    /// How many matches it has besides the interfaces (and a comment).
    fn matches(&self) -> usize {
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
const MODULES: [&str; 7] = ["tcp", "udp", "icmp", "state", "conntrack", "limit", "multiport"];

/// Parses the words of one `-A` line; the error says which part cannot be translated.
fn parse_spec(words: &[String]) -> std::result::Result<Spec, String> {
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
fn ipv4_prefix(text: &str) -> std::result::Result<Option<Prefix>, String> {
    let prefix = Prefix::parse(text).map_err(|e| format!("-s/-d {text}: {e}"))?;
    if prefix.is_v6() {
        return Err(format!("{text} is IPv6: import reads iptables-save (IPv4), not ip6tables-save"));
    }
    Ok((prefix.len > 0).then_some(prefix))
}

fn interface(text: &str) -> std::result::Result<String, String> {
    if text.ends_with('+') {
        return Err(format!(
            "interface wildcard {text} cannot be expressed: the policy is for one interface"
        ));
    }
    Ok(text.to_owned())
}

fn port(text: &str) -> std::result::Result<u16, String> {
    if text.contains(':') {
        return Err(format!("port range {text} cannot be expressed: the policy lists single ports"));
    }
    text.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {text} is not a port number (1-65535)"))
}

/// The ICMP types the policy names, by number (as iptables-save writes them) or name.
fn icmp_type(text: &str) -> std::result::Result<u8, String> {
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

fn states(text: &str) -> std::result::Result<States, String> {
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

// ---------------------------------------------------------------------------------------
// What a line is for.

/// What one line of `*filter` does, in the policy's terms.
#[derive(Clone, Debug)]
enum Role {
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
struct Flow {
    /// The flow's direction: for a return line, the direction of the flow it returns.
    direction: Direction,
    services: Vec<Svc>,
    peer: Option<Prefix>,
    /// The host side's address (`-d` on INPUT, `-s` on OUTPUT), to check against OURIP.
    host: Option<Prefix>,
    limit: Option<Rate>,
    /// A return line (ESTABLISHED, or an echo reply): it pairs with an opening line.
    is_return: bool,
    /// The interface it names (not loopback).
    iface: Option<String>,
    comment: Option<String>,
}

/// A service as a rule's key: a TCP or UDP port, or an ICMP type (`related` for the
/// errors a `--state RELATED` line admits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Svc {
    Port { protocol: u8, port: u16 },
    Icmp { kind: u8, related: bool },
}

const WHY_POLICY: &str = "an unconditional DROP is the chain's policy here: what no rule admits is dropped and counted on its policy line";
const WHY_INVALID: &str = "the INVALID drops are built in: malformed and truncated headers, impossible TCP flag sets and fragments are dropped on every chain (lines invalid, invalid-tcp-flags, invalid-fragment)";
const WHY_LOOPBACK: &str =
    "loopback needs no rule: the programs sit on the public interface, so loopback traffic never meets them";
const WHY_RETURNS: &str = "returns are built in: every rule admits the packets of the flows it opened (the exact reversed 5-tuple); for RELATED ICMP errors, write ICMP rules with related = true";
const WHY_PROTOCOL_RETURNS: &str =
    "returns are built in: every rule admits the packets of the flows it opened (the exact reversed 5-tuple)";
const WHY_DROP_POLICY: &str = "the chain's DROP policy is the firewall's own";

/// Classifies one parsed line; `chains` are the table's user-defined chains.
fn classify(spec: &Spec, chains: &[String]) -> std::result::Result<Role, String> {
    let chain = spec.chain.as_str();
    if !matches!(chain, "INPUT" | "OUTPUT" | "FORWARD") {
        return Err(format!("user-defined chain {chain} is not translated"));
    }
    let target = spec.target.as_ref().expect("parse_spec checks the target");
    match target {
        Target::Other { name, .. } if name == "LOG" || name == "NFLOG" || name == "ULOG" => {
            return Err(format!(
                "target {name} is not translated: the firewall counts what it drops (firewall list) but logs nothing"
            ));
        }
        Target::Other { name, .. } if name == "REJECT" => {
            return Err(
                "target REJECT is not translated: the firewall drops, it sends no ICMP error or RST back"
                    .into(),
            );
        }
        Target::Other { name, goto } if chains.contains(name) => {
            let how = if *goto { "a goto (-g)" } else { "a jump" };
            return Err(format!("{how} to user-defined chain {name} is not translated"));
        }
        Target::Other { name, .. } => return Err(format!("target {name} is not translated")),
        Target::Accept | Target::Drop => {}
    }
    let accept = *target == Target::Accept;
    let loopback = spec.in_iface.as_deref() == Some("lo") || spec.out_iface.as_deref() == Some("lo");
    if loopback {
        return if accept {
            Ok(Role::BuiltIn(WHY_LOOPBACK))
        } else {
            Err("a DROP on loopback cannot be expressed: loopback is not filtered here".into())
        };
    }
    if !accept {
        return if spec.matches() == 0 && spec.in_iface.is_none() && spec.out_iface.is_none() {
            Ok(Role::BuiltIn(WHY_POLICY))
        } else if spec.matches() == 1 && spec.state.is_some_and(States::only_invalid) {
            Ok(Role::BuiltIn(WHY_INVALID))
        } else if let (true, 1, Some(prefix), None) =
            (chain == "INPUT", spec.matches(), spec.source, spec.destination)
        {
            Ok(Role::Antispoof { source: true, prefix, iface: spec.in_iface.clone() })
        } else if let (true, 1, None, Some(prefix)) =
            (chain == "INPUT", spec.matches(), spec.source, spec.destination)
        {
            Ok(Role::Antispoof { source: false, prefix, iface: spec.in_iface.clone() })
        } else {
            Err("a DROP with these matches is not translated: the policy drops by default and admits by rule (only INPUT's -s and -d DROPs are its anti-spoof lists)".into())
        };
    }
    if chain == "FORWARD" {
        return Err("FORWARD is not translated: the firewall filters this host's own traffic, and drops whatever it would forward".into());
    }
    let inbound = chain == "INPUT";
    let state = spec.state;
    let Some(protocol) = spec.protocol else {
        return match state {
            Some(s) if spec.matches() == 1 && !s.new && !s.invalid => Ok(Role::BuiltIn(WHY_RETURNS)),
            _ => Err("an ACCEPT of every protocol cannot be expressed: a rule names tcp, udp or icmp".into()),
        };
    };
    if state.is_some_and(|s| s.invalid) {
        return Err("accepting INVALID packets cannot be expressed: they are always dropped here".into());
    }
    // Which side is the host's and which the peer's.
    let (peer, host) =
        if inbound { (spec.source, spec.destination) } else { (spec.destination, spec.source) };
    let iface = if inbound { spec.in_iface.clone() } else { spec.out_iface.clone() };
    let opens = state.is_none_or(|s| s.new);
    let flow = |direction, services, is_return| Flow {
        direction,
        services,
        peer,
        host,
        limit: spec.limit,
        is_return,
        iface: iface.clone(),
        comment: spec.comment.clone(),
    };
    let (here, there) =
        if inbound { (Direction::In, Direction::Out) } else { (Direction::Out, Direction::In) };
    if protocol == PROTO_ICMP {
        let Some(kind) = spec.icmp_type else {
            return Err("-p icmp without --icmp-type cannot be expressed: a rule names one ICMP type".into());
        };
        return match kind {
            ICMP_ECHO_REQUEST if opens => {
                Ok(Role::Flow(flow(here, vec![Svc::Icmp { kind, related: false }], false)))
            }
            ICMP_ECHO_REQUEST => Err("an echo-request without state NEW opens nothing: not translated".into()),
            // An echo reply is the return of a request the other way.
            ICMP_ECHO_REPLY if state.is_none_or(|s| !s.new) => {
                Ok(Role::Flow(flow(there, vec![Svc::Icmp { kind: ICMP_ECHO_REQUEST, related: false }], true)))
            }
            ICMP_ECHO_REPLY => Err(
                "an echo-reply with state NEW cannot be expressed: replies pass only as the answers of admitted requests".into(),
            ),
            _ => {
                let related = match state {
                    None => false,
                    Some(s) if s.new => false,
                    Some(s) if s.related => {
                        if !matches!(kind, ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM) {
                            return Err(format!("state RELATED on ICMP type {kind}, which is no error, cannot be expressed"));
                        }
                        true
                    }
                    Some(_) => {
                        return Err(format!("ICMP type {kind} with state ESTABLISHED only cannot be expressed"));
                    }
                };
                Ok(Role::Flow(flow(here, vec![Svc::Icmp { kind, related }], false)))
            }
        };
    }
    let services = |ports: &[u16]| ports.iter().map(|&port| Svc::Port { protocol, port }).collect::<Vec<_>>();
    match (spec.sports.is_empty(), spec.dports.is_empty()) {
        (false, false) => {
            Err("both --sport and --dport cannot be expressed: a rule matches the service port only".into())
        }
        // `-p tcp -m state --state ESTABLISHED`: the returns of every flow of the protocol.
        (true, true) if spec.matches() == 2 && !opens => Ok(Role::BuiltIn(WHY_PROTOCOL_RETURNS)),
        (true, true) => Err(format!(
            "{} without a port cannot be expressed: a rule names its service port",
            protocol_name(protocol).expect("tcp or udp")
        )),
        // `--dport`: the line opens flows to the service port, ours on INPUT (the peer
        // opens), the peer's on OUTPUT (this host does).
        (true, false) if opens => Ok(Role::Flow(flow(here, services(&spec.dports), false))),
        (true, false) => Err(
            "state ESTABLISHED on the service port (--dport) is neither a line that opens flows nor a return: not translated".into(),
        ),
        (false, true) if !opens || state.is_none() => {
            Ok(Role::Flow(flow(there, services(&spec.sports), true)))
        }
        (false, true) => Err(
            "--sport with state NEW cannot be expressed: a flow opened from a given source port".into(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// From lines to rules.

/// A classified line of `*filter`.
struct Classified {
    line: usize,
    text: String,
    role: Role,
}

/// The lines one service admits in one direction with one limit: its peers (`None`:
/// anyone), in order, each with the line that names it.
#[derive(Debug)]
struct Entry {
    direction: Direction,
    svc: Svc,
    limit: Option<Rate>,
    peers: Vec<(Option<Prefix>, usize)>,
    /// The line that named each peer first.
    peer_line: HashMap<Option<Prefix>, usize>,
    /// The lines that open its flows, and those of their returns.
    lines: Vec<usize>,
    returns: Vec<usize>,
    notes: Vec<String>,
    comments: Vec<String>,
}

/// A return line's service, for pairing with the lines that open its flows (found by
/// the flow's direction, the service and the peer, `None` for anyone).
#[derive(Debug)]
struct Return {
    svc: Svc,
    line: usize,
    limit: Option<Rate>,
    /// Some opening line pairs with it.
    used: bool,
}

/// One `[[rule]]` to write.
#[derive(Debug)]
struct RuleOut {
    name: String,
    direction: Direction,
    protocols: Vec<u8>,
    ports: Vec<u16>,
    icmp: Option<(u8, bool)>,
    peers: Option<Vec<Prefix>>,
    limit: Option<Rate>,
    opening: Vec<usize>,
    returns: Vec<usize>,
    notes: Vec<String>,
    comments: Vec<String>,
}

/// The most frequent of `values` (the first seen of equals).
fn most_common<T: Eq + std::hash::Hash + Clone>(values: &[T]) -> Option<T> {
    let mut counts: HashMap<&T, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut best: Option<(&T, usize)> = None;
    for v in values {
        let n = counts[v];
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((v, n));
        }
    }
    best.map(|(v, _)| v.clone())
}

/// Translates an iptables-save dump; `input` names it in messages and comments.
pub fn translate(text: &str, input: &str, options: &Options) -> Result<Translation> {
    let tables = parse_dump(text, input)?;
    let mut untranslated = Vec::new();
    let mut differences = Vec::new();
    let mut built_in = Vec::new();
    let finding = |line: usize, rule: &str, why: String| Finding { line, rule: rule.to_owned(), why };

    let Some(filter) = tables.iter().find(|t| t.name == "filter") else {
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        return Err(ImportError::NoFilter { input: input.to_owned(), tables: names.join(", ") });
    };
    for t in &tables {
        if t.name == "filter" {
            continue;
        }
        // A table that only declares ACCEPT chains (iptables-save prints every table
        // the kernel has loaded) changes nothing: only one with rules is reported.
        if !t.rules.is_empty()
            || t.chains.iter().any(|(_, _, p, _)| p.as_deref().is_some_and(|p| p != "ACCEPT"))
        {
            untranslated.push(finding(
                t.line,
                &format!("*{}", t.name),
                format!(
                    "table {} ({} rule{}) is not translated: the firewall filters, it does not rewrite or mark",
                    t.name,
                    t.rules.len(),
                    if t.rules.len() == 1 { "" } else { "s" }
                ),
            ));
        }
    }

    let user_chains: Vec<String> =
        filter.chains.iter().filter(|(_, _, p, _)| p.is_none()).map(|(_, c, _, _)| c.clone()).collect();
    // The chains that pass every return in the dump (an ESTABLISHED catch-all, or a
    // policy ACCEPT): there, a line that opens flows needs no return line of its own.
    let mut passes_returns: Vec<String> = Vec::new();
    for (line, chain, policy, rule) in &filter.chains {
        match policy.as_deref() {
            None => untranslated.push(finding(
                *line,
                rule,
                format!(
                    "user-defined chain {chain} is not translated (nor the rules in it, nor the jumps to it)"
                ),
            )),
            Some("DROP") => built_in.push(finding(*line, rule, WHY_DROP_POLICY.into())),
            Some(p) => {
                if p == "ACCEPT" {
                    passes_returns.push(chain.clone());
                }
                untranslated.push(finding(
                    *line,
                    rule,
                    format!("chain policy {p} cannot be expressed: every chain drops what no rule admits"),
                ));
            }
        }
    }

    // Each line classified; a line after an unconditional DROP is never reached.
    let mut classified = Vec::new();
    let mut dropped_all: HashMap<String, usize> = HashMap::new();
    for (line, text) in &filter.rules {
        let words = words(text);
        let chain = words.as_ref().ok().and_then(|w| w.get(1)).cloned().unwrap_or_default();
        let parsed = words.and_then(|w| parse_spec(&w));
        if let Some(at) = dropped_all.get(&chain) {
            untranslated.push(finding(
                *line,
                text,
                format!("never reached: line {at} drops everything before it"),
            ));
            continue;
        }
        match parsed.and_then(|spec| classify(&spec, &user_chains)) {
            Ok(Role::BuiltIn(why)) => {
                if why == WHY_POLICY {
                    dropped_all.insert(chain, *line);
                } else if why == WHY_RETURNS {
                    passes_returns.push(chain);
                }
                built_in.push(finding(*line, text, why.into()));
            }
            Ok(role) => classified.push(Classified { line: *line, text: text.clone(), role }),
            Err(why) => untranslated.push(finding(*line, text, why)),
        }
    }

    // The interface: --iface, else the one the lines name most.
    let named: Vec<String> = classified
        .iter()
        .filter_map(|c| match &c.role {
            Role::Flow(Flow { iface, .. }) | Role::Antispoof { iface, .. } => iface.clone(),
            Role::BuiltIn(_) => None,
        })
        .collect();
    let (iface, iface_from) = match (&options.iface, most_common(&named)) {
        (Some(i), _) => (Some(i.clone()), "--iface".to_owned()),
        (None, Some(i)) => (Some(i.clone()), format!("the dump's -i/-o {i}")),
        (None, None) => (None, String::new()),
    };
    // The host address: --address, else the one the lines name most.
    let hosts: Vec<Prefix> = classified
        .iter()
        .filter_map(|c| match &c.role {
            Role::Flow(f) => f.host.filter(|h| h.len == 32),
            _ => None,
        })
        .collect();
    let address = match options.address {
        Some(a) => a,
        None => match most_common(&hosts).map(|p| p.addr) {
            Some(IpAddr::V4(a)) => a,
            // No line for a rule either: nothing to import, and the findings say why.
            _ if !classified.iter().any(|c| matches!(c.role, Role::Flow(_))) => {
                untranslated.sort_by_key(|f| f.line);
                built_in.sort_by_key(|f| f.line);
                return Ok(Translation {
                    text: String::new(),
                    rules: 0,
                    untranslated,
                    differences,
                    built_in,
                });
            }
            _ => return Err(ImportError::NoAddress { input: input.to_owned() }),
        },
    };
    let address_from = if options.address.is_some() {
        "--address".to_owned()
    } else {
        "the dump's -d on INPUT and -s on OUTPUT".to_owned()
    };

    // Lines for another host address or interface are not ours to translate.
    let mut flows: Vec<(usize, String, Flow)> = Vec::new();
    let mut sources = Vec::new();
    let mut destinations = Vec::new();
    let mut antispoof_lines = Vec::new();
    for c in classified {
        match c.role {
            Role::Antispoof { source, prefix, iface: theirs } => {
                let list: &mut Vec<Prefix> = if source { &mut sources } else { &mut destinations };
                if let (Some(mine), Some(theirs)) = (&iface, &theirs)
                    && mine != theirs
                {
                    let why = format!("on interface {theirs}: the policy is for {mine} (from {iface_from})");
                    untranslated.push(finding(c.line, &c.text, why));
                    continue;
                }
                if !source && prefix.contains(IpAddr::V4(address)) {
                    let why = format!(
                        "it drops every packet to the host address {address} (from {address_from}): not translated"
                    );
                    untranslated.push(finding(c.line, &c.text, why));
                    continue;
                }
                if list.contains(&prefix) {
                    built_in.push(finding(c.line, &c.text, format!("{prefix} is already in the list")));
                } else {
                    list.push(prefix);
                }
                antispoof_lines.push(c.line);
            }
            Role::Flow(f) => {
                let flag = if matches!(
                    (f.direction, f.is_return),
                    (Direction::In, false) | (Direction::Out, true)
                ) {
                    "-d"
                } else {
                    "-s"
                };
                if let Some(h) = f.host.filter(|h| h.len != 32 || h.addr != IpAddr::V4(address)) {
                    let why = format!(
                        "{flag} {h} is not the host address {address} (from {address_from}; --address chooses another)"
                    );
                    untranslated.push(finding(c.line, &c.text, why));
                } else if let (Some(mine), Some(theirs)) = (&iface, &f.iface)
                    && mine != theirs
                {
                    let why = format!("on interface {theirs}: the policy is for {mine} (from {iface_from})");
                    untranslated.push(finding(c.line, &c.text, why));
                } else {
                    flows.push((c.line, c.text, f));
                }
            }
            Role::BuiltIn(_) => unreachable!("built-ins are set aside above"),
        }
    }

    let rules = group(&flows, &passes_returns, &mut untranslated, &mut differences);
    untranslated.sort_by_key(|f| f.line);
    differences.sort_by_key(|f| f.line);
    built_in.sort_by_key(|f| f.line);

    let host = HostOut { iface, iface_from, address, address_from };
    let antispoof = (sources, destinations, antispoof_lines);
    let text = write_policy(input, &host, &antispoof, &rules, &untranslated, &differences, &built_in);
    policy::parse(&text, Path::new("the imported policy")).map_err(ImportError::Refused)?;
    Ok(Translation { text, rules: rules.len(), untranslated, differences, built_in })
}

/// Pairs opening lines with their returns, gathers each service's peers, and merges the
/// services with the same peers into rules.
fn group(
    flows: &[(usize, String, Flow)],
    passes_returns: &[String],
    untranslated: &mut Vec<Finding>,
    differences: &mut Vec<Finding>,
) -> Vec<RuleOut> {
    // Indexes throughout: a dump may hold a line for each of 100,000 peers.
    let texts: HashMap<usize, &str> = flows.iter().map(|(l, t, _)| (*l, t.as_str())).collect();
    let finding = |line: usize, why: String| Finding { line, rule: texts[&line].to_owned(), why };
    let mut returns: Vec<Return> = Vec::new();
    let mut returns_by: HashMap<(Direction, Svc, Option<Prefix>), Vec<usize>> = HashMap::new();
    for (line, _, f) in flows.iter().filter(|(_, _, f)| f.is_return) {
        for svc in &f.services {
            returns_by.entry((f.direction, *svc, f.peer)).or_default().push(returns.len());
            returns.push(Return { svc: *svc, line: *line, limit: f.limit, used: false });
        }
    }
    let mut entries: Vec<Entry> = Vec::new();
    let mut entry_of: HashMap<(Direction, Svc, Option<Rate>), usize> = HashMap::new();
    // The entries of one service, whatever their limits.
    let mut entries_of: HashMap<(Direction, Svc), Vec<usize>> = HashMap::new();
    for (line, _, f) in flows.iter().filter(|(_, _, f)| !f.is_return) {
        let mut unanswered = false;
        for svc in &f.services {
            // Another entry of this service (with another limit) already has the peer:
            // one peer of a service belongs to one rule.
            let siblings = entries_of.get(&(f.direction, *svc)).map_or(&[][..], Vec::as_slice);
            if let Some(at) = siblings
                .iter()
                .filter(|&&e| entries[e].limit != f.limit)
                .find_map(|&e| entries[e].peer_line.get(&f.peer))
            {
                untranslated.push(finding(
                    *line,
                    format!("its peer is already admitted for this service by line {at}, with another limit: a peer of a service belongs to one rule"),
                ));
                continue;
            }
            let at = *entry_of.entry((f.direction, *svc, f.limit)).or_insert_with(|| {
                entries_of.entry((f.direction, *svc)).or_default().push(entries.len());
                entries.push(Entry {
                    direction: f.direction,
                    svc: *svc,
                    limit: f.limit,
                    peers: Vec::new(),
                    peer_line: HashMap::new(),
                    lines: Vec::new(),
                    returns: Vec::new(),
                    notes: Vec::new(),
                    comments: Vec::new(),
                });
                entries.len() - 1
            });
            let entry = &mut entries[at];
            // Lines come in order: a multiport line's second port is the same line.
            if entry.lines.last() != Some(line) {
                entry.lines.push(*line);
            }
            if let Some(c) = &f.comment
                && !entry.comments.contains(c)
            {
                entry.comments.push(c.clone());
            }
            match entry.peer_line.get(&f.peer) {
                Some(first) => entry.notes.push(format!("line {line} repeats line {first}")),
                None => {
                    entry.peer_line.insert(f.peer, *line);
                    entry.peers.push((f.peer, *line));
                }
            }
            // Only flows have returns: ICMP errors and other types are single messages.
            let needs_return = matches!(svc, Svc::Port { .. } | Svc::Icmp { kind: ICMP_ECHO_REQUEST, .. });
            if !needs_return {
                continue;
            }
            // Its return: one to this peer, or one to anyone.
            let mut keys = vec![(f.direction, *svc, None)];
            if f.peer.is_some() {
                keys.push((f.direction, *svc, f.peer));
            }
            let mut answered = false;
            for r in keys.iter().filter_map(|k| returns_by.get(k)).flatten() {
                let r = &mut returns[*r];
                answered = true;
                if !r.used {
                    r.used = true;
                    entry.returns.push(r.line);
                    if let Some(rate) = r.limit {
                        entry.notes.push(format!(
                            "the --limit {rate} of return line {} is not a bucket of its own: returns pass with their flow, so they are limited with its opening packets",
                            r.line
                        ));
                    }
                } else if !entry.returns.contains(&r.line) {
                    // A return to anyone, already used by another entry's lines.
                    entry.returns.push(r.line);
                }
            }
            unanswered |= !answered;
        }
        // The chain its returns travel through.
        let back = if f.direction == Direction::In { "OUTPUT" } else { "INPUT" };
        if unanswered && !passes_returns.iter().any(|c| c == back) {
            differences.push(finding(
                *line,
                "translated, but it has no return line: the firewall admits the returns of the flows it opens, which this dump drops".into(),
            ));
        }
    }
    let mut listed: std::collections::HashSet<usize> = untranslated.iter().map(|f| f.line).collect();
    for r in &returns {
        // A multiport line is listed once.
        if r.used || !listed.insert(r.line) {
            continue;
        }
        let why = match r.svc {
            Svc::Icmp { .. } => "an echo-reply with no echo-request the other way: replies pass here only as the answers of admitted requests".to_owned(),
            _ => "a return line (--sport) with no line that opens its flow the other way: nothing to translate".to_owned(),
        };
        untranslated.push(finding(r.line, why));
    }

    // "Anyone" covers every named peer of the same service.
    for entry in &mut entries {
        if let Some((_, any_line)) = entry.peers.iter().find(|(p, _)| p.is_none()).copied() {
            let named: Vec<usize> =
                entry.peers.iter().filter(|(p, _)| p.is_some()).map(|(_, l)| *l).collect();
            if !named.is_empty() {
                entry.notes.push(format!(
                    "line {any_line} admits anyone, so the peers of lines {} need no place of their own",
                    line_list(&named)
                ));
            }
            entry.peers.retain(|(p, _)| p.is_none());
        }
        let limited = entry.lines.len();
        if entry.limit.is_some() && limited > 1 {
            entry.notes.push(format!(
                "one token bucket for the rule, where iptables keeps one for each of its {limited} lines"
            ));
        }
    }

    // Rules: TCP and UDP services with the same direction and peers, unlimited, merge
    // (a rule is protocols × ports, so ports group by their set of protocols); ICMP
    // types and limited services are rules of their own.
    let peers_of = |e: &Entry| -> Option<Vec<Prefix>> {
        if e.peers.iter().any(|(p, _)| p.is_none()) {
            None
        } else {
            Some(e.peers.iter().map(|(p, _)| p.expect("named")).collect())
        }
    };
    let same_peers = |a: &Option<Vec<Prefix>>, b: &Option<Vec<Prefix>>| {
        let sorted = |p: &Option<Vec<Prefix>>| {
            p.clone().map(|mut v| {
                v.sort();
                v
            })
        };
        sorted(a) == sorted(b)
    };
    let mut rules: Vec<RuleOut> = Vec::new();
    let mut taken = vec![false; entries.len()];
    for i in 0..entries.len() {
        if taken[i] {
            continue;
        }
        let e = &entries[i];
        let peers = peers_of(e);
        let mut members = vec![i];
        if let (Svc::Port { .. }, None) = (e.svc, e.limit) {
            for (j, other) in entries.iter().enumerate().skip(i + 1) {
                if !taken[j]
                    && matches!(other.svc, Svc::Port { .. })
                    && other.limit.is_none()
                    && other.direction == e.direction
                    && same_peers(&peers_of(other), &peers)
                {
                    members.push(j);
                }
            }
        }
        // port → its protocols, in the order met.
        let mut by_port: Vec<(u16, Vec<u8>)> = Vec::new();
        for &m in &members {
            if let Svc::Port { protocol, port } = entries[m].svc {
                match by_port.iter_mut().find(|(p, _)| *p == port) {
                    Some((_, protos)) => protos.push(protocol),
                    None => by_port.push((port, vec![protocol])),
                }
            }
        }
        let mut groups: Vec<(Vec<u8>, Vec<u16>)> = Vec::new();
        for (port, mut protos) in by_port {
            protos.sort_by_key(|p| {
                members
                    .iter()
                    .position(|&m| matches!(entries[m].svc, Svc::Port { protocol, .. } if protocol == *p))
            });
            match groups.iter_mut().find(|(p, _)| *p == protos) {
                Some((_, ports)) => ports.push(port),
                None => groups.push((protos, vec![port])),
            }
        }
        let rule_of = |members: &[usize], protocols: Vec<u8>, ports: Vec<u16>, icmp| {
            let mut opening: Vec<usize> = members.iter().flat_map(|&m| entries[m].lines.clone()).collect();
            let mut back: Vec<usize> = members.iter().flat_map(|&m| entries[m].returns.clone()).collect();
            let mut notes: Vec<String> = members.iter().flat_map(|&m| entries[m].notes.clone()).collect();
            let mut comments: Vec<String> =
                members.iter().flat_map(|&m| entries[m].comments.clone()).collect();
            for v in [&mut opening, &mut back] {
                v.sort_unstable();
                v.dedup();
            }
            notes.dedup();
            comments.dedup();
            RuleOut {
                name: String::new(),
                direction: e.direction,
                protocols,
                ports,
                icmp,
                peers: peers.clone(),
                limit: e.limit,
                opening,
                returns: back,
                notes,
                comments,
            }
        };
        match e.svc {
            Svc::Icmp { kind, related } => {
                taken[i] = true;
                rules.push(rule_of(&[i], vec![PROTO_ICMP], Vec::new(), Some((kind, related))));
            }
            Svc::Port { .. } => {
                for (protocols, ports) in groups {
                    let mine: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&m| matches!(entries[m].svc, Svc::Port { protocol, port } if protocols.contains(&protocol) && ports.contains(&port)))
                        .collect();
                    for &m in &mine {
                        taken[m] = true;
                    }
                    rules.push(rule_of(&mine, protocols, ports, None));
                }
            }
        }
    }
    // In the order of the dump's first line of each (a return line comes first when
    // iptables-save lists INPUT before OUTPUT).
    rules.sort_by_key(|r| r.opening.iter().chain(&r.returns).min().copied());
    let mut names: Vec<String> = Vec::new();
    for rule in &mut rules {
        rule.name = unique_name(&base_name(rule), &names);
        names.push(rule.name.clone());
    }
    rules
}

/// Well-known services, for rule names.
fn service_name(port: u16) -> Option<&'static str> {
    Some(match port {
        20 | 21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "dns",
        80 => "http",
        110 => "pop3",
        123 => "ntp",
        143 => "imap",
        161 => "snmp",
        389 => "ldap",
        443 => "https",
        465 => "smtps",
        514 => "syslog",
        587 => "submission",
        636 => "ldaps",
        873 => "rsync",
        993 => "imaps",
        995 => "pop3s",
        3306 => "mysql",
        5432 => "postgresql",
        _ => return None,
    })
}

/// `dns-out`, `ssh-in`, `web-in` (80 and 443), `tcp-8080-in`, `ping-in`, `unreachable-out`.
fn base_name(rule: &RuleOut) -> String {
    let stem = match rule.icmp {
        Some((ICMP_ECHO_REQUEST, _)) => "ping".to_owned(),
        Some((ICMP_DEST_UNREACHABLE, _)) => "unreachable".to_owned(),
        Some((ICMP_TIME_EXCEEDED, _)) => "time-exceeded".to_owned(),
        Some((ICMP_PARAMETER_PROBLEM, _)) => "parameter-problem".to_owned(),
        Some((kind, _)) => format!("icmp-{kind}"),
        None => {
            let mut ports = rule.ports.clone();
            ports.sort_unstable();
            let names: Option<Vec<&str>> = ports.iter().map(|p| service_name(*p)).collect();
            match names {
                _ if ports == [80, 443] => "web".to_owned(),
                Some(mut names) => {
                    names.dedup();
                    names.join("-")
                }
                None => {
                    let protocols: Vec<&str> =
                        rule.protocols.iter().map(|p| if *p == PROTO_TCP { "tcp" } else { "udp" }).collect();
                    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                    format!("{}-{}", protocols.join("-"), ports.join("-"))
                }
            }
        }
    };
    let direction = if rule.direction == Direction::In { "in" } else { "out" };
    // The policy's names are at most 32 characters; room for "-2" and the direction.
    let room = 32 - 3 - direction.len();
    let stem = if stem.len() > room { stem[..room].trim_end_matches('-').to_owned() } else { stem };
    format!("{stem}-{direction}")
}

#[expect(clippy::maybe_infinite_iter, reason = "`taken` is finite: a free name comes")]
fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}-{n}")).find(|name| !taken.contains(name)).expect("a free name")
}

/// `line 5`, `lines 5, 7-9`.
fn lines_named(lines: &[usize]) -> String {
    format!("{} {}", if lines.len() == 1 { "line" } else { "lines" }, line_list(lines))
}

/// `5, 7-9, 12`.
fn line_list(lines: &[usize]) -> String {
    let mut lines = lines.to_vec();
    lines.sort_unstable();
    lines.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j + 1 < lines.len() && lines[j + 1] == lines[j] + 1 {
            j += 1;
        }
        parts.push(match j.cmp(&(i + 1)) {
            std::cmp::Ordering::Greater => format!("{}-{}", lines[i], lines[j]),
            std::cmp::Ordering::Equal => format!("{}, {}", lines[i], lines[j]),
            std::cmp::Ordering::Less => lines[i].to_string(),
        });
        i = j + 1;
    }
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------
// The policy file.

struct HostOut {
    iface: Option<String>,
    iface_from: String,
    address: Ipv4Addr,
    address_from: String,
}

/// `1 line`, `3 lines`.
fn count(n: usize) -> String {
    format!("{n} line{}", if n == 1 { "" } else { "s" })
}

fn comment_block(lines: &[String]) -> String {
    lines.iter().map(|l| if l.is_empty() { "#\n".to_owned() } else { format!("# {l}\n") }).collect()
}

fn write_policy(
    input: &str,
    host: &HostOut,
    antispoof: &(Vec<Prefix>, Vec<Prefix>, Vec<usize>),
    rules: &[RuleOut],
    untranslated: &[Finding],
    differences: &[Finding],
    built_in: &[Finding],
) -> String {
    let mut header = vec![
        format!("Imported by `firewall import` from {input} (iptables-save, table filter)."),
        "Read the lists below, then: firewall check FILE; firewall up --policy FILE".to_owned(),
    ];
    let section = |header: &mut Vec<String>, title: String, findings: &[Finding]| {
        if findings.is_empty() {
            return;
        }
        header.push(String::new());
        header.push(title);
        header.extend(findings.iter().map(Finding::to_string));
    };
    section(
        &mut header,
        format!("Not translated ({}): this policy does not do what they do.", count(untranslated.len())),
        untranslated,
    );
    section(
        &mut header,
        format!("Translated with a difference ({}):", count(differences.len())),
        differences,
    );
    section(
        &mut header,
        format!("Nothing to write ({}): the firewall does this always.", count(built_in.len())),
        built_in,
    );
    header.push(String::new());

    let mut doc = DocumentMut::new();
    let mut table = Table::new();
    table.decor_mut().set_prefix(comment_block(&header));
    if let Some(iface) = &host.iface {
        table["interface"] = value(iface.as_str());
        if let Some(v) = table["interface"].as_value_mut() {
            v.decor_mut().set_suffix(format!("  # from {}", host.iface_from));
        }
    }
    table["address"] = value(host.address.to_string());
    if let Some(v) = table["address"].as_value_mut() {
        v.decor_mut().set_suffix(format!("  # OURIP, from {}", host.address_from));
    }
    if host.iface.is_none()
        && let Some(mut key) = table.key_mut("address")
    {
        key.leaf_decor_mut().set_prefix(
            "# interface = \"eth0\"  # the dump names none (no -i/-o): set it here, or give `firewall up --iface IF`\n",
        );
    }
    doc["host"] = Item::Table(table);

    let (sources, destinations, lines) = antispoof;
    let mut table = Table::new();
    let comment = if lines.is_empty() {
        "\n# The dump has no anti-spoof DROPs: the lists are empty (left out, they would be the seed's).\n"
            .to_owned()
    } else {
        format!(
            "\n# Anti-spoof: INPUT's -s and -d DROPs, iptables-save lines {}. The firewall checks\n# them before any rule, wherever the dump has them.\n",
            line_list(lines)
        )
    };
    table.decor_mut().set_prefix(comment);
    let list = |prefixes: &[Prefix]| value(prefixes.iter().map(ToString::to_string).collect::<Array>());
    table["sources"] = list(sources);
    table["destinations"] = list(destinations);
    doc["antispoof"] = Item::Table(table);

    let mut tables = ArrayOfTables::new();
    for rule in rules {
        let mut comment = vec![if rule.returns.is_empty() {
            format!("From iptables-save {}.", lines_named(&rule.opening))
        } else {
            format!(
                "From iptables-save {}, and {} for the returns.",
                lines_named(&rule.opening),
                line_list(&rule.returns)
            )
        }];
        comment.extend(rule.comments.iter().map(|c| format!("iptables comment: {c:?}")));
        comment.extend(rule.notes.iter().map(|n| format!("Note: {n}.")));
        let mut table = Table::new();
        table.decor_mut().set_prefix(format!("\n{}", comment_block(&comment)));
        table["name"] = value(rule.name.as_str());
        table["direction"] = value(if rule.direction == Direction::In { "in" } else { "out" });
        let protocols: Array =
            rule.protocols.iter().map(|p| protocol_name(*p).expect("a rule's protocols are named")).collect();
        table["protocols"] = value(protocols);
        match rule.ports.as_slice() {
            [] => {}
            [port] => table["port"] = value(i64::from(*port)),
            ports => table["ports"] = value(ports.iter().map(|p| i64::from(*p)).collect::<Array>()),
        }
        if let Some((kind, related)) = rule.icmp {
            table["icmp_type"] = match kind {
                ICMP_ECHO_REQUEST => value("echo-request"),
                ICMP_DEST_UNREACHABLE => value("destination-unreachable"),
                ICMP_TIME_EXCEEDED => value("time-exceeded"),
                ICMP_PARAMETER_PROBLEM => value("parameter-problem"),
                n => value(i64::from(n)),
            };
            if related {
                table["related"] = value(true);
            }
        }
        table["peers"] = match &rule.peers {
            None => value("any"),
            Some(peers) => value(peers.iter().map(ToString::to_string).collect::<Array>()),
        };
        if let Some(rate) = rule.limit {
            table["limit"] = value(format!("{}/{}", rate.count, rate.unit));
            table["burst"] = value(i64::from(rate.burst));
        }
        tables.push(table);
    }
    if !tables.is_empty() {
        doc["rule"] = Item::ArrayOfTables(tables);
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `iptables-save` (iptables-nft 1.8.9) after tests/seed/tight-iptables.sh ran with the
    /// addresses of examples/tight.toml.
    const SEED_DUMP: &str = r"# Generated by iptables-save v1.8.9 (nf_tables) on Tue Dec  1 09:34:05 2026
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT DROP [0:0]
-A INPUT -s 10.0.0.0/8 -j DROP
-A INPUT -s 172.16.0.0/12 -j DROP
-A INPUT -s 192.168.0.0/16 -j DROP
-A INPUT -s 169.254.0.0/16 -j DROP
-A INPUT -s 224.0.0.0/4 -j DROP
-A INPUT -d 224.0.0.0/4 -j DROP
-A INPUT -s 240.0.0.0/5 -j DROP
-A INPUT -d 240.0.0.0/5 -j DROP
-A INPUT -s 0.0.0.0/8 -j DROP
-A INPUT -d 0.0.0.0/8 -j DROP
-A INPUT -s 1.1.1.1/32 -j DROP
-A INPUT -d 1.1.1.1/32 -j DROP
-A INPUT -d 239.255.255.0/24 -j DROP
-A INPUT -d 255.255.255.255/32 -j DROP
-A INPUT -m state --state INVALID -j DROP
-A INPUT -i lo -j ACCEPT
-A INPUT -s 198.51.100.53/32 -d 198.51.100.1/32 -p udp -m udp --sport 53 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 198.51.100.53/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 53 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 198.51.100.54/32 -d 198.51.100.1/32 -p udp -m udp --sport 53 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 198.51.100.54/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 53 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 198.51.100.123/32 -d 198.51.100.1/32 -p udp -m udp --sport 123 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 198.51.100.124/32 -d 198.51.100.1/32 -p udp -m udp --sport 123 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 198.51.100.125/32 -d 198.51.100.1/32 -p udp -m udp --sport 123 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.80/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 80 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.81/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 80 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.90/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 80 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.91/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 80 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.7/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 122 -m state --state NEW,ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.8/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 122 -m state --state NEW,ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.22/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 22 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -s 203.0.113.25/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 25 -j ACCEPT
-A INPUT -s 198.51.100.25/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 25 -m state --state ESTABLISHED -j ACCEPT
-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT
-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 443 -m state --state NEW,ESTABLISHED -j ACCEPT
-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 8 -m limit --limit 1/sec -j ACCEPT
-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 0 -m limit --limit 1/sec -j ACCEPT
-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 3 -j ACCEPT
-A INPUT -j DROP
-A FORWARD -m state --state INVALID -j DROP
-A FORWARD -j DROP
-A OUTPUT -m state --state INVALID -j DROP
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.53/32 -p udp -m udp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.53/32 -p tcp -m tcp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.54/32 -p udp -m udp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.54/32 -p tcp -m tcp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.123/32 -p udp -m udp --dport 123 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.124/32 -p udp -m udp --dport 123 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.125/32 -p udp -m udp --dport 123 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.80/32 -p tcp -m tcp --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.81/32 -p tcp -m tcp --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.90/32 -p tcp -m tcp --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.91/32 -p tcp -m tcp --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.7/32 -p tcp -m tcp --sport 122 -m state --state ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.8/32 -p tcp -m tcp --sport 122 -m state --state ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.22/32 -p tcp -m tcp --dport 22 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -d 198.51.100.25/32 -p tcp -m tcp --dport 25 -m state --state NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -p tcp -m tcp --sport 80 -m state --state ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -p tcp -m tcp --sport 443 -m state --state ESTABLISHED -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -p icmp -m icmp --icmp-type 0 -m limit --limit 1/sec -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -p icmp -m icmp --icmp-type 8 -m limit --limit 1/sec -j ACCEPT
-A OUTPUT -s 198.51.100.1/32 -p icmp -m icmp --icmp-type 3 -j ACCEPT
-A OUTPUT -j DROP
COMMIT
";

    /// A filter table with DROP policies: its first rule is line 5.
    fn dump(rules: &[&str]) -> String {
        let mut text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n".to_owned();
        for rule in rules {
            text.push_str(rule);
            text.push('\n');
        }
        text.push_str("COMMIT\n");
        text
    }

    fn import(text: &str) -> Translation {
        translate(text, "dump", &Options::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn import_err(text: &str) -> String {
        match translate(text, "dump", &Options::default()) {
            Ok(t) => panic!("imported:\n{}", t.text),
            Err(e) => e.to_string(),
        }
    }

    /// The `[[rule]]` named `name`, with its comment, as written.
    fn block(t: &Translation, name: &str) -> String {
        let wanted = format!("name = {name:?}\n");
        t.text
            .split("\n\n")
            .find(|b| b.contains(&wanted))
            .unwrap_or_else(|| panic!("no rule {name}:\n{}", t.text))
            .trim_end()
            .to_owned()
    }

    /// The reason given for line `line`, wherever it is listed.
    fn why(t: &Translation, line: usize) -> String {
        let all = t.untranslated.iter().chain(&t.differences).chain(&t.built_in);
        let found: Vec<&Finding> = all.filter(|f| f.line == line).collect();
        assert_eq!(found.len(), 1, "line {line} is listed {} times:\n{}", found.len(), t.text);
        found[0].why.clone()
    }

    fn untranslated(t: &Translation) -> Vec<String> {
        t.untranslated.iter().map(ToString::to_string).collect()
    }

    /// What a policy admits: (direction, service, peer) with the limit, and the lists.
    type Admits = (Ipv4Addr, Vec<Prefix>, Vec<Prefix>, Vec<(u8, String, String, Option<String>)>);

    fn admits(policy: &policy::Policy) -> Admits {
        let mut admitted = Vec::new();
        for rule in &policy.rules {
            for service in &rule.services {
                for peer in &rule.peers {
                    let limit = rule.limit.map(|l| format!("{}/{} {}", l.count, l.unit, l.burst));
                    admitted.push((rule.direction as u8, service.to_string(), peer.to_string(), limit));
                }
            }
        }
        admitted.sort();
        (policy.address, policy.antispoof_sources.clone(), policy.antispoof_destinations.clone(), admitted)
    }

    #[test]
    fn the_seeds_dump_admits_what_examples_tight_toml_admits() {
        let t = import(SEED_DUMP);
        let imported = policy::parse(&t.text, Path::new("imported")).expect("valid");
        let tight =
            policy::parse(include_str!("../../../examples/tight.toml"), Path::new("tight.toml")).expect("valid");
        assert_eq!(admits(&imported), admits(&tight));
        assert_eq!(imported.conntrack, tight.conntrack);
        assert_eq!(imported.interface, None);
        assert!(t.untranslated.is_empty(), "{:?}", t.untranslated);
        assert_eq!(
            t.differences.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "iptables-save line 36: -A INPUT -s 203.0.113.25/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 25 -j ACCEPT: translated, but it has no return line: the firewall admits the returns of the flows it opens, which this dump drops"
            ]
        );
        let built_in: Vec<usize> = t.built_in.iter().map(|f| f.line).collect();
        assert_eq!(built_in, [3, 4, 5, 20, 21, 43, 44, 45, 46, 47, 68]);
        let names: Vec<&str> = imported.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dns-out",
                "ntp-out",
                "http-out",
                "tcp-122-in",
                "ssh-out",
                "smtp-in",
                "smtp-out",
                "web-in",
                "ping-in",
                "ping-out",
                "unreachable-in",
                "unreachable-out"
            ]
        );
        // Every -A and :CHAIN line of the dump is accounted for: a rule's, the anti-spoof
        // lists', or listed.
        let mut accounted: Vec<usize> = t.built_in.iter().chain(&t.differences).map(|f| f.line).collect();
        accounted.extend(6..=19);
        for paragraph in t.text.split("\n\n").filter(|p| p.contains("[[rule]]")) {
            let first = paragraph.lines().next().expect("a comment");
            let numbers = first
                .trim_start_matches("# From iptables-save lines ")
                .trim_start_matches("# From iptables-save line ");
            for part in numbers
                .replace(", and", ",")
                .replace(" for the returns.", "")
                .trim_end_matches('.')
                .split(", ")
            {
                match part.split_once('-') {
                    Some((a, b)) => accounted.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
                    None => accounted.push(part.parse().unwrap_or_else(|_| panic!("{part:?} in {first:?}"))),
                }
            }
        }
        accounted.sort_unstable();
        accounted.dedup();
        let lines: Vec<usize> = SEED_DUMP
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("-A") || l.starts_with(':'))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(accounted, lines);
    }

    #[test]
    fn the_seeds_rules_are_written_with_their_lines() {
        let t = import(SEED_DUMP);
        assert_eq!(
            block(&t, "dns-out"),
            r#"# From iptables-save lines 48-51, and 22-25 for the returns.
[[rule]]
name = "dns-out"
direction = "out"
protocols = ["udp", "tcp"]
port = 53
peers = ["198.51.100.53", "198.51.100.54"]"#
        );
        assert_eq!(
            block(&t, "smtp-in"),
            r#"# From iptables-save line 36.
[[rule]]
name = "smtp-in"
direction = "in"
protocols = ["tcp"]
port = 25
peers = ["203.0.113.25"]"#
        );
        assert_eq!(
            block(&t, "ping-in"),
            r#"# From iptables-save line 40, and 65 for the returns.
# Note: the --limit 1/sec burst 5 of return line 65 is not a bucket of its own: returns pass with their flow, so they are limited with its opening packets.
[[rule]]
name = "ping-in"
direction = "in"
protocols = ["icmp"]
icmp_type = "echo-request"
peers = "any"
limit = "1/sec"
burst = 5"#
        );
        assert!(t.text.starts_with(
            "# Imported by `firewall import` from dump (iptables-save, table filter).\n# Read the lists below, then: firewall check FILE; firewall up --policy FILE\n#\n# Translated with a difference (1 line):\n# iptables-save line 36: "
        ));
        assert!(t.text.contains(
            "[host]\n# interface = \"eth0\"  # the dump names none (no -i/-o): set it here, or give `firewall up --iface IF`\naddress = \"198.51.100.1\"  # OURIP, from the dump's -d on INPUT and -s on OUTPUT\n"
        ));
        assert!(t.text.contains("# Anti-spoof: INPUT's -s and -d DROPs, iptables-save lines 6-19."));
    }

    #[test]
    fn anti_spoof_drops_become_the_lists_in_order() {
        let t = import(&dump(&[
            "-A INPUT -s 10.0.0.0/8 -j DROP",
            "-A INPUT -d 224.0.0.0/4 -j DROP",
            "-A INPUT -s 1.1.1.1/32 -j DROP",
            "-A INPUT -s 10.0.0.0/8 -j DROP",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -j ACCEPT",
        ]));
        assert!(t.text.contains(
            "[antispoof]\nsources = [\"10.0.0.0/8\", \"1.1.1.1\"]\ndestinations = [\"224.0.0.0/4\"]\n"
        ));
        assert_eq!(why(&t, 8), "10.0.0.0/8 is already in the list");
        // A destination that is the host itself would drop everything.
        let t = import(&dump(&[
            "-A INPUT -d 198.51.100.0/24 -j DROP",
            "-A INPUT -s 0.0.0.0/0 -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -j ACCEPT",
        ]));
        assert_eq!(
            why(&t, 5),
            "it drops every packet to the host address 198.51.100.1 (from the dump's -d on INPUT and -s on OUTPUT): not translated"
        );
        assert!(t.text.contains("destinations = []\n"));
        // -s 0.0.0.0/0 is anyone.
        assert!(block(&t, "http-in").ends_with("peers = \"any\""));
        // None in the dump: empty lists, not the defaults.
        let t = import(&dump(&["-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -j ACCEPT"]));
        assert!(t.text.contains("[antispoof]\nsources = []\ndestinations = []\n"), "{}", t.text);
        let p = policy::parse(&t.text, Path::new("x")).unwrap();
        assert!(p.antispoof_sources.is_empty() && p.antispoof_destinations.is_empty());
    }

    #[test]
    fn invalid_loopback_returns_and_final_drops_are_built_in() {
        let t = import(&dump(&[
            "-A INPUT -m state --state INVALID -j DROP",
            "-A OUTPUT -m conntrack --ctstate INVALID -j DROP",
            "-A INPUT -i lo -j ACCEPT",
            "-A OUTPUT -o lo -j ACCEPT",
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT",
            "-A INPUT -j DROP",
            "-A OUTPUT -p udp -m state --state ESTABLISHED -j ACCEPT",
        ]));
        assert_eq!(why(&t, 5), WHY_INVALID);
        assert_eq!(why(&t, 6), WHY_INVALID);
        assert_eq!(why(&t, 7), WHY_LOOPBACK);
        assert_eq!(why(&t, 8), WHY_LOOPBACK);
        assert_eq!(why(&t, 9), WHY_RETURNS);
        assert_eq!(why(&t, 11), WHY_POLICY);
        assert_eq!(why(&t, 12), WHY_PROTOCOL_RETURNS);
        assert_eq!(why(&t, 2), WHY_DROP_POLICY);
        // The NEW line without a return of its own: the catch-all above was its return.
        assert_eq!(
            why(&t, 10),
            "translated, but it has no return line: the firewall admits the returns of the flows it opens, which this dump drops"
        );
        assert_eq!(
            block(&t, "ssh-in"),
            "# From iptables-save line 10.\n[[rule]]\nname = \"ssh-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = \"any\""
        );
        // With the catch-all in the chain its returns travel, a line needs no return.
        let t = import(&dump(&[
            "-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -p udp -m udp --dport 53 -j ACCEPT",
        ]));
        assert_eq!(why(&t, 5), WHY_RETURNS);
        assert_eq!(t.differences.iter().map(|f| f.line).collect::<Vec<_>>(), [7]);
        assert_eq!(t.rules, 2);
    }

    #[test]
    fn pairs_for_one_port_become_one_rule_with_every_peer_and_both_protocols() {
        let t = import(&dump(&[
            "-A INPUT -s 192.0.2.53/32 -d 198.51.100.1/32 -p udp -m udp --sport 53 -m state --state ESTABLISHED -j ACCEPT",
            "-A INPUT -s 192.0.2.53/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 53 -m state --state ESTABLISHED -j ACCEPT",
            "-A INPUT -s 192.0.2.54/32 -d 198.51.100.1/32 -p udp -m udp --sport 53 -m state --state ESTABLISHED -j ACCEPT",
            "-A INPUT -s 192.0.2.54/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 53 -m state --state ESTABLISHED -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -d 192.0.2.53/32 -p udp -m udp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -d 192.0.2.53/32 -p tcp -m tcp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -d 192.0.2.54/32 -p udp -m udp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -d 192.0.2.54/32 -p tcp -m tcp --dport 53 -m state --state NEW,ESTABLISHED -j ACCEPT",
        ]));
        assert_eq!(t.rules, 1);
        assert!(t.untranslated.is_empty() && t.differences.is_empty(), "{}", t.text);
        assert_eq!(
            block(&t, "dns-out"),
            r#"# From iptables-save lines 9-12, and 5-8 for the returns.
[[rule]]
name = "dns-out"
direction = "out"
protocols = ["udp", "tcp"]
port = 53
peers = ["192.0.2.53", "192.0.2.54"]"#
        );
    }

    #[test]
    fn an_in_pair_without_a_source_is_open_to_anyone_and_ports_with_the_same_peers_merge() {
        let t = import(&dump(&[
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 8080 -m state --state NEW,ESTABLISHED -j ACCEPT",
            "-A INPUT -s 203.0.113.7/32 -d 198.51.100.1/32 -p tcp -m multiport --dports 8443,9000 -m state --state NEW,ESTABLISHED -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -p tcp -m tcp --sport 80 -m state --state ESTABLISHED -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -p tcp -m tcp --sport 8080 -m state --state ESTABLISHED -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.7/32 -p tcp -m multiport --sports 8443,9000 -m state --state ESTABLISHED -j ACCEPT",
        ]));
        assert!(t.untranslated.is_empty() && t.differences.is_empty(), "{}", t.text);
        assert_eq!(
            block(&t, "tcp-80-8080-in"),
            r#"# From iptables-save lines 5, 6, and 8, 9 for the returns.
[[rule]]
name = "tcp-80-8080-in"
direction = "in"
protocols = ["tcp"]
ports = [80, 8080]
peers = "any""#
        );
        assert!(block(&t, "tcp-8443-9000-in").ends_with("ports = [8443, 9000]\npeers = [\"203.0.113.7\"]"));
        // A return for anyone answers a peer's flow; one for a peer does not answer anyone's.
        let t = import(&dump(&[
            "-A INPUT -s 203.0.113.7/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 8080 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 8081 -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -p tcp -m tcp --sport 8080 -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -d 203.0.113.7/32 -p tcp -m tcp --sport 8081 -j ACCEPT",
        ]));
        assert_eq!(t.differences.iter().map(|f| f.line).collect::<Vec<_>>(), [6]);
        assert_eq!(
            t.untranslated.iter().map(|f| (f.line, f.why.as_str())).collect::<Vec<_>>(),
            [(
                8,
                "a return line (--sport) with no line that opens its flow the other way: nothing to translate"
            )]
        );
        assert!(block(&t, "tcp-8080-in").starts_with("# From iptables-save line 5, and 7 for the returns."));
    }

    #[test]
    fn icmp_types_with_limits_become_rules_with_limit_and_burst() {
        let t = import(&dump(&[
            "-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 8 -m limit --limit 2/min --limit-burst 7 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 11 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 3 -m state --state RELATED -j ACCEPT",
            "-A INPUT -s 203.0.113.9/32 -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 13 -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -p icmp -m icmp --icmp-type 0 -j ACCEPT",
        ]));
        assert!(t.untranslated.is_empty() && t.differences.is_empty(), "{}", t.text);
        assert!(
            block(&t, "ping-in")
                .ends_with("icmp_type = \"echo-request\"\npeers = \"any\"\nlimit = \"2/min\"\nburst = 7")
        );
        assert!(block(&t, "ping-in").starts_with("# From iptables-save line 5, and 9 for the returns.\n"));
        assert!(block(&t, "time-exceeded-in").ends_with("icmp_type = \"time-exceeded\"\npeers = \"any\""));
        assert!(
            block(&t, "unreachable-in")
                .ends_with("icmp_type = \"destination-unreachable\"\nrelated = true\npeers = \"any\"")
        );
        assert!(block(&t, "icmp-13-in").ends_with("icmp_type = 13\npeers = [\"203.0.113.9\"]"));
    }

    #[test]
    fn the_host_address_is_the_one_the_lines_name() {
        let t = import(&dump(&[
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 443 -j ACCEPT",
            "-A INPUT -d 198.51.100.2/32 -p tcp -m tcp --dport 22 -j ACCEPT",
            "-A OUTPUT -s 198.51.100.0/24 -p tcp -m tcp --sport 80 -j ACCEPT",
        ]));
        assert!(t.text.contains("address = \"198.51.100.1\""));
        assert_eq!(
            untranslated(&t),
            [
                "iptables-save line 7: -A INPUT -d 198.51.100.2/32 -p tcp -m tcp --dport 22 -j ACCEPT: -d 198.51.100.2 is not the host address 198.51.100.1 (from the dump's -d on INPUT and -s on OUTPUT; --address chooses another)",
                "iptables-save line 8: -A OUTPUT -s 198.51.100.0/24 -p tcp -m tcp --sport 80 -j ACCEPT: -s 198.51.100.0/24 is not the host address 198.51.100.1 (from the dump's -d on INPUT and -s on OUTPUT; --address chooses another)",
            ]
        );
        let options = Options { address: Some(Ipv4Addr::new(198, 51, 100, 2)), ..Options::default() };
        let t = translate(
            &dump(&["-A INPUT -d 198.51.100.2/32 -p tcp -m tcp --dport 22 -j ACCEPT"]),
            "dump",
            &options,
        )
        .unwrap();
        assert!(t.text.contains("address = \"198.51.100.2\"  # OURIP, from --address\n"));
        assert_eq!(
            import_err(&dump(&["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"])),
            "dump: no host address: no ACCEPT rule has -d on INPUT or -s on OUTPUT; give it with --address"
        );
    }

    #[test]
    fn the_interface_is_given_or_the_one_the_lines_name() {
        let rules = [
            "-A INPUT -s 10.0.0.0/8 -i eth0 -j DROP",
            "-A INPUT -d 198.51.100.1/32 -i eth0 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -i eth1 -p tcp -m tcp --dport 22 -j ACCEPT",
        ];
        let t = import(&dump(&rules));
        assert!(
            t.text.contains("[host]\ninterface = \"eth0\"  # from the dump's -i/-o eth0\n"),
            "{}",
            t.text
        );
        assert_eq!(why(&t, 7), "on interface eth1: the policy is for eth0 (from the dump's -i/-o eth0)");
        let options = Options { iface: Some("s0".into()), ..Options::default() };
        let t = translate(&dump(&rules), "dump", &options).unwrap();
        assert!(t.text.contains("interface = \"s0\"  # from --iface\n"));
        assert_eq!(why(&t, 5), "on interface eth0: the policy is for s0 (from --iface)");
        assert_eq!(why(&t, 6), "on interface eth0: the policy is for s0 (from --iface)");
    }

    #[test]
    fn rule_names_come_from_the_service_and_stay_unique() {
        let t = import(&dump(&[
            "-A INPUT -s 203.0.113.7/32 -d 198.51.100.1/32 -p tcp -m tcp --dport 22 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 22 -m limit --limit 3/min -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 8080 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p udp -m udp --dport 5000 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 5000 -j ACCEPT",
            "-A OUTPUT -s 198.51.100.1/32 -p tcp -m tcp --dport 80 -j ACCEPT",
        ]));
        let p = policy::parse(&t.text, Path::new("x")).unwrap();
        let names: Vec<&str> = p.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["ssh-in", "ssh-in-2", "tcp-8080-in", "tcp-udp-5000-in", "http-out"]);
        assert!(block(&t, "ssh-in-2").ends_with("peers = \"any\"\nlimit = \"3/min\"\nburst = 5"));
    }

    #[test]
    fn what_cannot_be_translated_is_listed_with_its_reason() {
        let t = import(&dump(&[
            "-A INPUT -p tcp -m tcp --dport 22 -m recent --set --name ssh --mask 255.255.255.255 --rsource -j ACCEPT",
            "-A OUTPUT -m owner --uid-owner 0 -j ACCEPT",
            "-A INPUT -m string --string \"GET /\" --algo bm --to 65535 -j DROP",
            "-A INPUT -p tcp -m tcp --dport 23 -j LOG --log-prefix \"telnet: \"",
            "-A INPUT -p tcp -m tcp --dport 113 -j REJECT --reject-with tcp-reset",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 1024:65535 -j ACCEPT",
            "-A INPUT ! -s 192.0.2.0/24 -j DROP",
            "-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 3/4 -j ACCEPT",
            "-A INPUT -s 203.0.113.5/32 -d 198.51.100.1/32 -p tcp -m tcp --sport 443 -m state --state ESTABLISHED -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p icmp -m icmp --icmp-type 0 -j ACCEPT",
            "-A INPUT -p tcp -m tcp --dport 25 -j DROP",
            "-A FORWARD -i eth0 -o eth1 -j ACCEPT",
            "-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK SYN -j DROP",
            "-A INPUT -d 198.51.100.1/32 -j ACCEPT",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -j ACCEPT",
            "-A INPUT -j DROP",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 443 -j ACCEPT",
        ]));
        assert_eq!(
            t.untranslated.iter().map(|f| f.why.as_str()).collect::<Vec<_>>(),
            [
                "match module \"recent\" is not translated",
                "match module \"owner\" is not translated",
                "match module \"string\" is not translated",
                "target LOG is not translated: the firewall counts what it drops (firewall list) but logs nothing",
                "target REJECT is not translated: the firewall drops, it sends no ICMP error or RST back",
                "port range 1024:65535 cannot be expressed: the policy lists single ports",
                "a negated match (! -s) cannot be expressed: a rule admits its peers, it does not except them",
                "ICMP code 3/4 cannot be expressed: the policy matches types, not codes",
                "a return line (--sport) with no line that opens its flow the other way: nothing to translate",
                "an echo-reply with no echo-request the other way: replies pass here only as the answers of admitted requests",
                "a DROP with these matches is not translated: the policy drops by default and admits by rule (only INPUT's -s and -d DROPs are its anti-spoof lists)",
                "FORWARD is not translated: the firewall filters this host's own traffic, and drops whatever it would forward",
                "option --tcp-flags of -m tcp is not translated",
                "an ACCEPT of every protocol cannot be expressed: a rule names tcp, udp or icmp",
                "never reached: line 20 drops everything before it",
            ]
        );
        assert_eq!(
            t.untranslated.iter().map(|f| f.line).collect::<Vec<_>>(),
            [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 21]
        );
        assert_eq!(
            t.untranslated[3].to_string(),
            "iptables-save line 8: -A INPUT -p tcp -m tcp --dport 23 -j LOG --log-prefix \"telnet: \": target LOG is not translated: the firewall counts what it drops (firewall list) but logs nothing"
        );
        // Each listed at the top of the policy too, as a comment.
        for f in &t.untranslated {
            assert!(t.text.contains(&format!("\n# {f}\n")), "{f} is not in the policy:\n{}", t.text);
        }
        assert!(t.text.contains("# Not translated (15 lines): this policy does not do what they do.\n"));
        assert_eq!(t.rules, 1);
    }

    #[test]
    fn chains_policies_and_other_tables_are_listed() {
        let text = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n\
            *nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n\
            *filter\n:INPUT ACCEPT [10:1000]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n:SSH - [0:0]\n\
            -A INPUT -p tcp -m tcp --dport 22 -j SSH\n\
            -A INPUT -p tcp -m tcp --dport 2222 -g SSH\n\
            -A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -j ACCEPT\n\
            -A SSH -s 203.0.113.7/32 -j ACCEPT\nCOMMIT\n";
        let t = import(text);
        assert_eq!(
            untranslated(&t),
            [
                "iptables-save line 5: *nat: table nat (1 rule) is not translated: the firewall filters, it does not rewrite or mark",
                "iptables-save line 10: :INPUT ACCEPT [10:1000]: chain policy ACCEPT cannot be expressed: every chain drops what no rule admits",
                "iptables-save line 13: :SSH - [0:0]: user-defined chain SSH is not translated (nor the rules in it, nor the jumps to it)",
                "iptables-save line 14: -A INPUT -p tcp -m tcp --dport 22 -j SSH: a jump to user-defined chain SSH is not translated",
                "iptables-save line 15: -A INPUT -p tcp -m tcp --dport 2222 -g SSH: a goto (-g) to user-defined chain SSH is not translated",
                "iptables-save line 17: -A SSH -s 203.0.113.7/32 -j ACCEPT: user-defined chain SSH is not translated",
            ]
        );
    }

    #[test]
    fn what_is_no_dump_or_gives_nothing_is_an_error() {
        assert_eq!(
            import_err(""),
            "dump:1: not an iptables-save dump: no *table line (an iptables-save dump starts its tables with *filter, *nat, …)"
        );
        assert_eq!(
            import_err("[host]\naddress = \"198.51.100.1\"\n"),
            "dump:1: not an iptables-save dump: expected a *table line first, found \"[host]\""
        );
        assert_eq!(
            import_err("*filter\n:INPUT DROP [0:0]\niptables -A INPUT -j DROP\nCOMMIT\n"),
            "dump:3: not an iptables-save dump: expected *table, :CHAIN, -A, COMMIT or a # comment, found \"iptables -A INPUT -j DROP\""
        );
        assert_eq!(
            import_err("*filter\n:INPUT DROP [0:0]\n-A INPUT -j DROP\n"),
            "dump:3: not an iptables-save dump: the dump ends inside table filter (line 1), before its COMMIT: cut short?"
        );
        assert_eq!(
            import_err("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"),
            "dump: no *filter table (tables: nat): nothing to import"
        );
        // No rule comes out: run() makes that an error; translate says so with none.
        let t = import(&dump(&[
            "-A INPUT -s 10.0.0.0/8 -j DROP",
            "-A INPUT -d 198.51.100.1/32 -p tcp -m tcp --sport 80 -m state --state ESTABLISHED -j ACCEPT",
        ]));
        assert_eq!((t.rules, t.untranslated.len()), (0, 1));
    }

    #[test]
    fn counters_and_quotes_are_read_as_iptables_save_writes_them() {
        let t = import(
            "*filter\n:INPUT DROP [5:300]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n\
             [12:720] -A INPUT -d 198.51.100.1/32 -p tcp -m tcp --dport 80 -m comment --comment \"the \\\"web\\\" site\" -j ACCEPT\nCOMMIT\n",
        );
        assert_eq!(
            block(&t, "http-in"),
            "# From iptables-save line 5.\n# iptables comment: \"the \\\"web\\\" site\"\n[[rule]]\nname = \"http-in\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 80\npeers = \"any\""
        );
        assert_eq!(words("-A X --comment \"a b\" -j Y").unwrap(), ["-A", "X", "--comment", "a b", "-j", "Y"]);
        assert_eq!(line_list(&[3, 1, 2, 5, 7, 8]), "1-3, 5, 7, 8");
    }
}
