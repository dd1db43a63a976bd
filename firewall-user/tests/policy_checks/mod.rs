//! The properties every parse must have, whatever the text: shared by the property
//! tests (`tests/policy_fuzz.rs`) and the cargo-fuzz target (`fuzz/`).
//!
//! `check(text)` parses twice (the answers must be equal); an error must be one line,
//! `FILE:LINE:COL: message`, LINE and COL inside the text, the message non-empty and
//! free of Rust's and serde's internals; an accepted policy must compile (`Ids::assign`,
//! `plan`, `listing`) within the kernel's limits. Each failed property panics.
use std::{collections::HashSet, path::Path};

use firewall_common::{ANTISPOOF_COUNTER_BASE, MAX_ANTISPOOF, MAX_COUNTERS, MAX_RULES};
use firewall_user::{
    compile::{self, Ids},
    policy::{self, Policy, PolicyError},
};

/// The file name errors must start with (a path with a directory, as users give them).
pub const FILE: &str = "fuzz/policy.toml";

/// Words that only a Rust `Debug` dump, a Rust type or serde's internals put in a
/// message (looked for outside the quoted text, which is the user's).
const NOT_FOR_PEOPLE: [&str; 14] = [
    "Spanned", "Some", "None", "Error", "i64", "u64", "i32", "u32", "u16", "u8", "usize", "struct", "enum",
    "borrowed",
];

/// `message` without its quoted parts ("…" as Debug writes them, `…` as TOML's do), split
/// into words.
fn unquoted_words(message: &str) -> Vec<String> {
    let mut out = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in message.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None => out.push(c),
        }
    }
    out.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(String::from).collect()
}

/// Parses `text` twice and checks everything a parse must satisfy, whatever the text.
pub fn check(text: &str) -> Result<Policy, PolicyError> {
    let path = Path::new(FILE);
    let first = policy::parse(text, path);
    let again = policy::parse(text, path);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the same text parsed to two policies:\n{text}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "two errors for one text:\n{text}"),
        _ => panic!("accepted once and refused once:\n{text}"),
    }
    match &first {
        Ok(policy) => check_compiles(policy),
        Err(err) => check_error(text, err),
    }
    first
}

pub fn check_error(text: &str, err: &PolicyError) {
    let shown = err.to_string();
    let context = format!("error {shown:?} for the text {text:?}");
    assert!(!shown.contains(['\n', '\r']), "not one line: {context}");
    assert!(!shown.chars().any(char::is_control), "control character in the message: {context}");
    assert_eq!(err.file, FILE, "{context}");
    assert!(
        shown.starts_with(&format!("{FILE}:{}:{}: ", err.line, err.column)),
        "not FILE:LINE:COL: {context}"
    );
    // 1-based, inside the text: LINE one of its lines, COL one of that line's characters
    // or the end of the line.
    let lines: Vec<&str> = text.split('\n').collect();
    assert!((1..=lines.len()).contains(&err.line), "line outside the text: {context}");
    let width = lines[err.line - 1].chars().count();
    assert!((1..=width + 1).contains(&err.column), "column outside line {}: {context}", err.line);
    let message = &err.message;
    assert!(!message.trim().is_empty(), "empty message: {context}");
    assert_eq!(message.trim(), message, "message with leading or trailing space: {context}");
    for word in unquoted_words(message) {
        let internal = NOT_FOR_PEOPLE.contains(&word.as_str())
            || word.starts_with("Raw") && word[3..].starts_with(|c: char| c.is_ascii_uppercase());
        assert!(!internal, "the message shows internals ({word}): {context}");
    }
}

/// An accepted policy compiles, within every limit the kernel's maps have.
pub fn check_compiles(policy: &Policy) {
    let rules = policy.rules.len();
    let antispoof = policy.antispoof_sources.len() + policy.antispoof_destinations.len();
    assert!(rules <= MAX_RULES as usize, "{rules} rules accepted");
    assert!(antispoof <= MAX_ANTISPOOF as usize, "{antispoof} anti-spoof entries accepted");

    let ids = Ids::assign(policy, &Ids::default());
    assert_eq!(ids.rules.len(), rules, "two rules share a name");
    let rule_ids: HashSet<u32> = ids.rules.values().copied().collect();
    assert_eq!(rule_ids.len(), rules, "two rules share an id: {:?}", ids.rules);
    assert!(rule_ids.iter().all(|id| *id < MAX_RULES), "rule id out of range: {:?}", ids.rules);
    let antispoof_ids: HashSet<u32> = ids.antispoof.values().copied().collect();
    assert_eq!(antispoof_ids.len(), antispoof, "anti-spoof entries share an id: {:?}", ids.antispoof);
    let antispoof_range = ANTISPOOF_COUNTER_BASE..ANTISPOOF_COUNTER_BASE + MAX_ANTISPOOF;
    assert!(antispoof_ids.iter().all(|id| antispoof_range.contains(id)), "{:?}", ids.antispoof);
    // A reload of the same policy keeps every id.
    assert_eq!(Ids::assign(policy, &ids), ids, "ids moved on a reload of the same policy");

    let plan = compile::plan(policy, &ids);
    for value in plan.allow_exact.values().chain(plan.allow_prefix.values()) {
        assert!(rule_ids.contains(&value.rule), "an allow-list entry names no rule: {value:?}");
    }
    assert!(plan.token_buckets.keys().all(|id| rule_ids.contains(id)), "a token bucket names no rule");
    let limited = policy.rules.iter().filter(|r| r.limit.is_some()).count();
    assert_eq!(plan.token_buckets.len(), limited, "one token bucket per limited rule");
    let planned = plan.antispoof_sources.len() + plan.antispoof_destinations.len();
    assert_eq!(planned, antispoof, "the plan lost or added anti-spoof entries");
    for id in plan.antispoof_sources.values().chain(plan.antispoof_destinations.values()) {
        assert!(antispoof_ids.contains(id), "an anti-spoof entry's counter is not its id: {id}");
    }

    let chains = compile::listing(policy, &ids);
    let mut counters = HashSet::new();
    for line in chains.iter().flat_map(|c| &c.lines) {
        assert!(line.counter < MAX_COUNTERS, "counter {} out of range: {line:?}", line.counter);
        assert!(counters.insert(line.counter), "two listing lines share counter {}: {line:?}", line.counter);
    }
}
