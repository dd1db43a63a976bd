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
mod classify;
mod dump;
mod group;
mod spec;
#[cfg(test)]
mod tests;
mod write;

use std::{
    collections::HashMap,
    fmt, fs,
    io::{self, Read as _},
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use firewall_common::Direction;

use self::{
    classify::{Classified, Flow, Role, WHY_DROP_POLICY, WHY_POLICY, WHY_RETURNS, classify},
    dump::{parse_dump, words},
    group::group,
    spec::parse_spec,
    write::{HostOut, count, write_policy},
};
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
