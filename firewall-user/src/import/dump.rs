//! Reading an iptables-save dump: its tables, their chains and rule lines, and the words
//! of one line.
use super::{ImportError, Result};

/// One table of the dump, between `*NAME` and `COMMIT`.
#[derive(Debug)]
pub(super) struct DumpTable {
    pub(super) name: String,
    pub(super) line: usize,
    /// `:CHAIN POLICY [packets:bytes]`: the line, the chain, its policy (`None`: `-`, a
    /// user-defined chain), the line as written.
    pub(super) chains: Vec<(usize, String, Option<String>, String)>,
    /// `-A CHAIN …`: the line number and the rule as written (counters removed).
    pub(super) rules: Vec<(usize, String)>,
}

/// Checks that `text` is an iptables-save dump and splits it into tables.
pub(super) fn parse_dump(text: &str, input: &str) -> Result<Vec<DumpTable>> {
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

// `words`, and the parsers of one line after it (spec.rs, classify.rs), fail with a
// `String`: it is not an error that anyone handles but the reason a line is not
// translated, kept as text in a `Finding` (`Finding::why`) and listed in the output among
// the others.

/// Splits a rule line into words, as iptables-save quotes them (`--comment "a b"`,
/// `\"` inside quotes).
pub(super) fn words(line: &str) -> std::result::Result<Vec<String>, String> {
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
