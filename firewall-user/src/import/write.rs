//! The policy file: the host, the anti-spoof lists and the rules, each with the dump's
//! lines it came from, under a header that lists what was not translated.
use std::net::Ipv4Addr;

use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED,
    protocol_name,
};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, value};

use super::{
    Finding, Findings,
    group::RuleOut,
    spec::{PortRange, UidRange},
};
use crate::policy::{Prefix, duration_text};

/// `[host]`: the interface and address, each with where it came from.
pub(super) struct HostOut {
    pub(super) iface: Option<String>,
    pub(super) iface_from: String,
    pub(super) address: Ipv4Addr,
    pub(super) address_from: String,
    /// The address is the interface's where the import ran, not the dump's.
    pub(super) guessed: bool,
}

/// `[antispoof]`: INPUT's `-s` and `-d` DROPs, in the dump's order, and their lines.
#[derive(Default)]
pub(super) struct AntispoofOut {
    pub(super) sources: Vec<Prefix>,
    pub(super) destinations: Vec<Prefix>,
    pub(super) lines: Vec<usize>,
}

/// The policy, as TOML with its comments: the findings at the top, then `[host]`,
/// `[antispoof]` and the rules.
pub(super) fn write_policy(
    input: &str,
    host: &HostOut,
    antispoof: &AntispoofOut,
    rules: &[RuleOut],
    syn_only: bool,
    findings: &Findings,
) -> String {
    let mut doc = DocumentMut::new();
    doc["host"] = Item::Table(host_table(host, &header(input, host, findings)));
    doc["antispoof"] = Item::Table(antispoof_table(antispoof));
    if syn_only {
        let mut conntrack = Table::new();
        conntrack.decor_mut().set_prefix(
            "\n# The dump drops new TCP flows without SYN (`! --syn`), or opens them with --syn only.\n",
        );
        conntrack["tcp_loose"] = value(false);
        doc["conntrack"] = Item::Table(conntrack);
    }
    let tables: ArrayOfTables = rules.iter().map(rule_table).collect();
    if !tables.is_empty() {
        doc["rule"] = Item::ArrayOfTables(tables);
    }
    doc.to_string()
}

/// The policy's first comment: where it came from, what to do next, and every finding,
/// a section a kind.
fn header(input: &str, host: &HostOut, findings: &Findings) -> Vec<String> {
    let mut header = vec![
        format!("Imported by `firewall import` from {input} (iptables-save, table filter)."),
        "Read the lists below, then: firewall check FILE; firewall up --policy FILE".to_owned(),
    ];
    if host.guessed {
        header.push(String::new());
        header.push(format!(
            "The host address {} is a guess: no rule of the dump names it, so it is {}. Check it (or import again with --address).",
            host.address,
            host.address_from.trim_start_matches("a guess: ")
        ));
    }
    let Findings { untranslated, differences, built_in } = findings;
    let sections = [
        (
            format!("Not translated ({}): this policy does not do what they do.", count(untranslated.len())),
            untranslated,
        ),
        (format!("Translated with a difference ({}):", count(differences.len())), differences),
        (format!("Nothing to write ({}): the firewall does this always.", count(built_in.len())), built_in),
    ];
    for (title, findings) in sections {
        if findings.is_empty() {
            continue;
        }
        header.push(String::new());
        header.push(title);
        header.extend(findings.iter().map(Finding::to_string));
    }
    header.push(String::new());
    header
}

/// `[host]`, under the policy's `header`; where the dump names no interface, a commented
/// line says where to give one.
fn host_table(host: &HostOut, header: &[String]) -> Table {
    let mut table = Table::new();
    table.decor_mut().set_prefix(comment_block(header));
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
    table
}

/// `[antispoof]`, written even when the dump has none: left out, the lists would be the
/// seed's, which the dump did not drop.
fn antispoof_table(antispoof: &AntispoofOut) -> Table {
    let mut table = Table::new();
    let comment = if antispoof.lines.is_empty() {
        "\n# The dump has no anti-spoof DROPs: the lists are empty (left out, they would be the seed's).\n"
            .to_owned()
    } else {
        format!(
            "\n# Anti-spoof: INPUT's -s and -d DROPs, iptables-save lines {}. The firewall checks\n# them before any rule, wherever the dump has them.\n",
            line_list(&antispoof.lines)
        )
    };
    table.decor_mut().set_prefix(comment);
    let list = |prefixes: &[Prefix]| value(prefixes.iter().map(ToString::to_string).collect::<Array>());
    table["sources"] = list(&antispoof.sources);
    table["destinations"] = list(&antispoof.destinations);
    table
}

/// One `[[rule]]`, under a comment that names the dump's lines it came from, their
/// iptables comments, and the notes on what it does otherwise than they did.
fn rule_table(rule: &RuleOut) -> Table {
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
    // A port is a number, a range a string, as the policy writes them.
    let port = |p: &PortRange| -> toml_edit::Value {
        if p.first == p.last { i64::from(p.first).into() } else { format!("{}-{}", p.first, p.last).into() }
    };
    match rule.ports.as_slice() {
        [] => {}
        [one] => table["port"] = value(port(one)),
        ports => table["ports"] = value(ports.iter().map(port).collect::<Array>()),
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
    if let Some(per_source) = &rule.per_source {
        let mut limits = InlineTable::new();
        if let Some(rate) = per_source.rate {
            limits.insert("limit", format!("{}/{}", rate.count, rate.unit).into());
            limits.insert("burst", i64::from(rate.burst).into());
        }
        if let Some(connections) = per_source.connections {
            limits.insert("connections", i64::from(connections.count).into());
        }
        if per_source.prefix != 32 {
            limits.insert("prefix", i64::from(per_source.prefix).into());
        }
        table["per_source"] = value(limits);
    }
    // A uid is a number, a range a string, as iptables-save writes them: the host that
    // runs the import may not have the users' names.
    if let Some(uids) = &rule.uids {
        let uid = |u: &UidRange| -> toml_edit::Value {
            if u.first == u.last { i64::from(u.first).into() } else { u.to_string().into() }
        };
        table["uids"] = value(uids.iter().map(uid).collect::<Array>());
    }
    if rule.log {
        table["log"] = value(true);
    }
    if let Some(trap) = &rule.trap {
        table["trap"] = value(duration_text(u64::from(trap.seconds)));
    }
    if rule.one_way {
        table["returns"] = value(false);
    }
    table
}

/// `1 line`, `3 lines`.
pub(super) fn count(n: usize) -> String {
    format!("{n} line{}", if n == 1 { "" } else { "s" })
}

/// `lines` as a TOML comment, `#` alone for an empty one.
fn comment_block(lines: &[String]) -> String {
    lines.iter().map(|l| if l.is_empty() { "#\n".to_owned() } else { format!("# {l}\n") }).collect()
}

/// `line 5`, `lines 5, 7-9`.
fn lines_named(lines: &[usize]) -> String {
    format!("{} {}", if lines.len() == 1 { "line" } else { "lines" }, line_list(lines))
}

/// `5, 7-9, 12`.
pub(super) fn line_list(lines: &[usize]) -> String {
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
