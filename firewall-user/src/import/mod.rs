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
    fmt, fs,
    io::{self, Read as _},
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use self::{
    classify::{FilterLines, Role, classify_filter, other_tables},
    dump::parse_dump,
    group::{choose_host, group, host_lines},
    write::{count, write_policy},
};
use crate::{
    files::{self, FileError, Perms},
    policy::{self, PolicyError},
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

/// The account of the dump's lines that are no rule's as written, gathered stage by stage.
#[derive(Debug, Default)]
struct Findings {
    untranslated: Vec<Finding>,
    differences: Vec<Finding>,
    built_in: Vec<Finding>,
}

impl Findings {
    /// In the dump's order; a line's findings stay in the order they were found.
    fn sort(&mut self) {
        for list in [&mut self.untranslated, &mut self.differences, &mut self.built_in] {
            list.sort_by_key(|f| f.line);
        }
    }

    fn translation(self, text: String, rules: usize) -> Translation {
        let Findings { untranslated, differences, built_in } = self;
        Translation { text, rules, untranslated, differences, built_in }
    }
}

/// Translates an iptables-save dump; `input` names it in messages and comments.
pub fn translate(text: &str, input: &str, options: &Options) -> Result<Translation> {
    let tables = parse_dump(text, input)?;
    let Some(filter) = tables.iter().find(|t| t.name == "filter") else {
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        return Err(ImportError::NoFilter { input: input.to_owned(), tables: names.join(", ") });
    };
    let mut findings = Findings { untranslated: other_tables(&tables), ..Findings::default() };
    let FilterLines { classified, passes_returns } = classify_filter(filter, &mut findings);
    let Some(host) = choose_host(&classified, options) else {
        if classified.iter().any(|c| matches!(c.role, Role::Flow(_))) {
            return Err(ImportError::NoAddress { input: input.to_owned() });
        }
        // No line for a rule either: nothing to import, and the findings say why.
        findings.sort();
        return Ok(findings.translation(String::new(), 0));
    };
    let (flows, antispoof) = host_lines(classified, &host, &mut findings);
    let rules = group(&flows, &passes_returns, &mut findings);
    findings.sort();
    let text = write_policy(input, &host, &antispoof, &rules, &findings);
    policy::parse(&text, Path::new("the imported policy")).map_err(ImportError::Refused)?;
    Ok(findings.translation(text, rules.len()))
}
