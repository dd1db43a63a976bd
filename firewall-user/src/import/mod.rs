//! `firewall import`: an `iptables-save` dump of a tight script (the seed's idioms) into a
//! policy file, and a list of what could not be translated.
//!
//! Three steps: the dump's lines are checked and split into tables; each rule line of
//! `*filter`, user-defined chains inlined, is parsed into a `Spec` (its matches, typed)
//! and classified into a `Role` (an anti-spoof entry, a built-in, a line that opens flows,
//! a return, an ICMP type), in its chain's order, so that no line is translated more open
//! than the lines before it let it be; then the roles are grouped into rules (an opening line and its return are one rule;
//! the peers of one service are one list; tcp and udp, or several ports, with the same
//! peers are one rule) and written with `toml_edit`, every rule with the dump's lines it
//! came from. Whatever cannot be translated is a [`Finding`], one line each, for the
//! caller to show and at the top of the policy.
//!
//! The library reads and writes no standard stream of its own: `firewall import` (main.rs)
//! hands it stdin, and prints the findings, the policy and the summary.
//!
//! # Layout
//! - `dump`: the dump read into tables (`*NAME` … `COMMIT`), and a rule line split into
//!   words as iptables-save quotes them.
//! - `spec`: one rule line's options parsed into a `Spec`.
//! - `chains`: user-defined chains inlined: each built-in chain's lines as a packet meets
//!   them, a jump's matches added to its chain's lines.
//! - `classify`: what each line of `*filter` is for (a `Role`), or why it is not
//!   translated; the other tables and the chains' policies.
//! - `log`: the LOG lines that log the flows of the ACCEPT right after them: its rule's
//!   `log = true`.
//! - `shadow`: the lines in order: an ACCEPT after a DROP that is not translated, and may
//!   take some of its packets, is not translated either (or loses those ports), so an
//!   import is never more open than its script; a DROP of what goes over a rate
//!   (`-m recent`, `-m hashlimit`) or over a count of open flows (`-m connlimit`) is
//!   instead the `per_source` of the ACCEPTs it limits whole.
//! - `trap`: the port-scan trap (`-m recent --set` DROPs, and an `--rcheck` DROP of every
//!   packet of a source on the list): the DROPs become rules with `trap`, and the check,
//!   their block, keeps nothing out.
//! - `group`: the host chosen, the lines for another host set aside, and the rest
//!   grouped into rules and named; a connlimit's one count shared among the rules its
//!   flows became, and kept out of one-way rules, which count no flows.
//! - `write`: the policy's text.
//! - `tests`: the translation end to end.
mod chains;
mod classify;
mod dump;
mod group;
mod log;
mod shadow;
mod spec;
#[cfg(test)]
mod tests;
mod trap;
mod write;

use std::{
    fmt, fs,
    io::{self, Read},
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
    /// The addresses of this machine's interfaces where the import runs, by interface:
    /// where neither `--address` nor the dump names the host address, the guess.
    pub interface_addresses: Vec<(String, Ipv4Addr)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{input}:{line}: not an iptables-save dump: {why}")]
    NotADump { input: String, line: usize, why: String },
    #[error("{input}: no *filter table (tables: {tables}): nothing to import")]
    NoFilter { input: String, tables: String },
    #[error(
        "{input}: no host address: no ACCEPT rule has -d on INPUT or -s on OUTPUT; give it with --address"
    )]
    NoAddress { input: String },
    /// No line became a rule. It carries the translation, whose findings say why: the
    /// caller lists them before this error ("listed above").
    #[error(
        "nothing to import from {}: no line of its filter table became a rule ({} not translated, listed above)",
        .translation.input,
        count(.translation.untranslated.len())
    )]
    NothingUsable { translation: Box<Translation> },
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
    /// The dump's name, as [`Input::name`].
    pub input: String,
    pub text: String,
    pub rules: usize,
    /// Lines not translated: the policy does not do what they do.
    pub untranslated: Vec<Finding>,
    /// Lines translated, but where the firewall does more or less than the line.
    pub differences: Vec<Finding>,
    /// Lines that need nothing written: the firewall does it always.
    pub built_in: Vec<Finding>,
}

impl Translation {
    /// The findings to show as the import runs, one a line: the lines not translated,
    /// then those translated with a difference. (The built-in ones are only in the
    /// policy's header.)
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.untranslated.iter().chain(&self.differences)
    }

    /// The summary that ends `firewall import`: how many rules, from where to where
    /// (`None`: stdout), and how many findings.
    pub fn summary(&self, output: Option<&Path>) -> String {
        let to = output.map_or("stdout".to_owned(), |o| o.display().to_string());
        format!(
            "imported {} rule{} from {} to {to}; {} not translated, {} translated with a difference{}",
            self.rules,
            if self.rules == 1 { "" } else { "s" },
            self.input,
            count(self.untranslated.len()),
            count(self.differences.len()),
            if self.findings().next().is_some() {
                " (listed above and at the top of the policy)"
            } else {
                ""
            }
        )
    }
}

/// What `import` does with an OUT that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Leave it, and fail (the default).
    Keep,
    /// Replace it (`--force`).
    Replace,
}

/// A dump, read whole, and the name that messages and the policy's comments give it.
#[derive(Clone, Debug)]
pub struct Input {
    /// The path as given, or `stdin`.
    pub name: String,
    pub text: String,
}

/// Reads the dump at `path`; `-` reads `stdin` (the caller's, passed in, so that the
/// library opens no standard stream).
pub fn read_input(path: &Path, mut stdin: impl Read) -> Result<Input> {
    let failed = |source| ImportError::Read { path: path.to_owned(), source };
    if path == Path::new("-") {
        let mut text = String::new();
        stdin.read_to_string(&mut text).map_err(failed)?;
        Ok(Input { name: "stdin".to_owned(), text })
    } else {
        let text = fs::read_to_string(path).map_err(failed)?;
        Ok(Input { name: path.display().to_string(), text })
    }
}

/// Refuses an OUT that exists, unless told to replace it. Checked before the dump is
/// read, so that a run which may not write its policy reads and prints nothing.
pub fn check_output(output: &Path, existing: Existing) -> Result<()> {
    if existing == Existing::Keep && fs::symlink_metadata(output).is_ok() {
        return Err(ImportError::Exists { path: output.to_owned() });
    }
    Ok(())
}

/// Translates `input` ([`translate`]), and refuses a dump of which no line became a rule
/// ([`ImportError::NothingUsable`]).
pub fn import(input: &Input, options: &Options) -> Result<Translation> {
    let translation = translate(&input.text, &input.name, options)?;
    if translation.rules == 0 {
        return Err(ImportError::NothingUsable { translation: Box::new(translation) });
    }
    Ok(translation)
}

/// Writes the policy to `output`: a new file only, unless [`Existing::Replace`].
pub fn write(translation: &Translation, output: &Path, existing: Existing) -> Result<()> {
    // A file replaced keeps its mode and owner; a new one is made as a shell's `>` makes
    // it. Either way through a temporary file no one else could have planted.
    match existing {
        Existing::Replace => {
            let perms = files::meta(output)?.map_or(Perms::New, Perms::Like);
            files::replace(output, translation.text.as_bytes(), perms)?;
        }
        Existing::Keep => {
            files::create(output, translation.text.as_bytes(), Perms::New).map_err(|e| match e {
                FileError::Exists { path } => ImportError::Exists { path },
                e => e.into(),
            })?;
        }
    }
    Ok(())
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
    /// A line inlined from a chain that several jumps reach is found as often: listed once.
    fn sort(&mut self) {
        for list in [&mut self.untranslated, &mut self.differences, &mut self.built_in] {
            list.sort_by_key(|f| f.line);
            let mut seen = std::collections::HashSet::new();
            list.retain(|f| seen.insert((f.line, f.why.clone())));
        }
    }

    fn translation(self, input: &str, text: String, rules: usize) -> Translation {
        let Findings { untranslated, differences, built_in } = self;
        Translation { input: input.to_owned(), text, rules, untranslated, differences, built_in }
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
    let FilterLines { classified, passes_returns, syn_only } = classify_filter(filter, &mut findings);
    let Some(host) = choose_host(&classified, options) else {
        if classified.iter().any(|c| matches!(c.role, Role::Flow(_))) {
            return Err(ImportError::NoAddress { input: input.to_owned() });
        }
        // No line for a rule either: nothing to import, and the findings say why.
        findings.sort();
        return Ok(findings.translation(input, String::new(), 0));
    };
    let (flows, antispoof) = host_lines(classified, &host, &mut findings);
    let rules = group(&flows, &passes_returns, &mut findings);
    findings.sort();
    let text = write_policy(input, &host, &antispoof, &rules, syn_only, &findings);
    policy::parse(&text, Path::new("the imported policy")).map_err(ImportError::Refused)?;
    Ok(findings.translation(input, text, rules.len()))
}
