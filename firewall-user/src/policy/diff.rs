//! What changes from one policy to another, as `reload --dry-run` and `check --diff` say
//! it: rules and peers added or removed, rules whose other keys changed, host addresses,
//! anti-spoof entries and tables. The policies are compared as written and validated, so
//! a rule keeps its identity by its name, and a reordering is no change (the maps hold
//! no order).
use std::collections::BTreeSet;

use serde::Serialize;

use super::{Policy, Prefix, Rule};

/// The changes from one policy to the next; empty when they mean the same.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    pub rules_added: Vec<String>,
    pub rules_removed: Vec<String>,
    pub rules_changed: Vec<RuleChange>,
    /// Host addresses (`address`, `address6`).
    pub addresses_added: Vec<String>,
    pub addresses_removed: Vec<String>,
    /// Anti-spoof entries, as `source PREFIX` or `destination PREFIX`.
    pub antispoof_added: Vec<String>,
    pub antispoof_removed: Vec<String>,
    /// Other keys whose value changed: `[host] dhcp`, `[conntrack]`, ….
    pub settings_changed: Vec<&'static str>,
}

/// A rule of both policies that changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    pub name: String,
    pub peers_added: Vec<String>,
    pub peers_removed: Vec<String>,
    /// Its other keys that changed, by their names in the file.
    pub keys_changed: Vec<&'static str>,
}

impl PolicyDiff {
    /// From `old` (`None`: no policy, as on an interface with no filter) to `new`.
    pub fn between(old: Option<&Policy>, new: &Policy) -> PolicyDiff {
        let Some(old) = old else {
            return PolicyDiff {
                rules_added: new.rules.iter().map(|r| r.name.clone()).collect(),
                addresses_added: new.host_addresses().iter().map(ToString::to_string).collect(),
                antispoof_added: antispoof(new).into_iter().collect(),
                ..PolicyDiff::default()
            };
        };
        let named = |policy: &Policy, name: &str| policy.rules.iter().find(|r| r.name == name).cloned();
        let mut diff = PolicyDiff::default();
        for rule in &new.rules {
            match named(old, &rule.name) {
                None => diff.rules_added.push(rule.name.clone()),
                Some(was) => {
                    let change = rule_change(&was, rule);
                    if !change.is_empty() {
                        diff.rules_changed.push(change);
                    }
                }
            }
        }
        diff.rules_removed =
            old.rules.iter().filter(|r| named(new, &r.name).is_none()).map(|r| r.name.clone()).collect();
        let addresses =
            |p: &Policy| p.host_addresses().iter().map(ToString::to_string).collect::<BTreeSet<_>>();
        (diff.addresses_added, diff.addresses_removed) = added_removed(&addresses(old), &addresses(new));
        (diff.antispoof_added, diff.antispoof_removed) = added_removed(&antispoof(old), &antispoof(new));
        let settings: [(&'static str, bool); 4] = [
            ("[host] interface", old.interface != new.interface),
            ("[host] dhcp", old.dhcp != new.dhcp),
            ("[host] follow_addresses", old.follow_addresses != new.follow_addresses),
            ("[conntrack]", old.conntrack != new.conntrack),
        ];
        diff.settings_changed =
            settings.into_iter().filter(|(_, changed)| *changed).map(|(key, _)| key).collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        *self == PolicyDiff::default()
    }

    /// One line each, as the commands print them: `add rule web-in`, `add peer 192.0.2.10
    /// to rule ssh-in`, `change rule ping-in: limit`, ….
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.extend(self.rules_added.iter().map(|r| format!("add rule {r}")));
        lines.extend(self.rules_removed.iter().map(|r| format!("remove rule {r}")));
        for rule in &self.rules_changed {
            lines.extend(rule.peers_added.iter().map(|p| format!("add peer {p} to rule {}", rule.name)));
            lines.extend(
                rule.peers_removed.iter().map(|p| format!("remove peer {p} from rule {}", rule.name)),
            );
            if !rule.keys_changed.is_empty() {
                lines.push(format!("change rule {}: {}", rule.name, rule.keys_changed.join(", ")));
            }
        }
        lines.extend(self.addresses_added.iter().map(|a| format!("add host address {a}")));
        lines.extend(self.addresses_removed.iter().map(|a| format!("remove host address {a}")));
        lines.extend(self.antispoof_added.iter().map(|a| format!("add anti-spoof {a}")));
        lines.extend(self.antispoof_removed.iter().map(|a| format!("remove anti-spoof {a}")));
        lines.extend(self.settings_changed.iter().map(|key| format!("change {key}")));
        lines
    }
}

impl RuleChange {
    fn is_empty(&self) -> bool {
        self.peers_added.is_empty() && self.peers_removed.is_empty() && self.keys_changed.is_empty()
    }
}

fn rule_change(old: &Rule, new: &Rule) -> RuleChange {
    // A name's addresses are peers as the maps hold them, the name itself one as written.
    let peers = |rule: &Rule| {
        let names = rule.names.iter().map(|n| n.name.clone());
        rule.all_peers().map(Prefix::to_string).chain(names).collect::<BTreeSet<_>>()
    };
    let (peers_added, peers_removed) = added_removed(&peers(old), &peers(new));
    let keys: [(&'static str, bool); 9] = [
        ("direction", old.direction != new.direction),
        ("protocols or ports", old.services != new.services),
        ("limit", old.limit != new.limit),
        ("related", old.related != new.related),
        ("per_source", old.per_source != new.per_source),
        ("uids", old.uids != new.uids),
        ("log", old.log != new.log),
        ("returns", old.returns != new.returns),
        ("trap", old.trap != new.trap),
    ];
    let keys_changed = keys.into_iter().filter(|(_, changed)| *changed).map(|(key, _)| key).collect();
    RuleChange { name: new.name.clone(), peers_added, peers_removed, keys_changed }
}

fn antispoof(policy: &Policy) -> BTreeSet<String> {
    let sources = policy.antispoof_sources.iter().map(|p| format!("source {p}"));
    sources.chain(policy.antispoof_destinations.iter().map(|p| format!("destination {p}"))).collect()
}

/// What `new` has that `old` lacks, and what `old` has that `new` lacks, sorted.
fn added_removed(old: &BTreeSet<String>, new: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (new.difference(old).cloned().collect(), old.difference(new).cloned().collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::parse;

    const HOST: &str = "[host]\naddress = \"198.51.100.1\"\n";

    fn policy(rules: &str) -> Policy {
        parse(&format!("{HOST}{rules}"), Path::new("p.toml")).expect("a valid policy")
    }

    fn rule(name: &str, port: u16, peers: &str) -> String {
        format!(
            "\n[[rule]]\nname = \"{name}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = {port}\npeers = {peers}\n"
        )
    }

    #[test]
    fn the_same_policy_reordered_is_no_change() {
        let a = policy(&(rule("ssh-in", 22, "[\"192.0.2.1\"]") + &rule("web-in", 80, "\"any\"")));
        let b = policy(&(rule("web-in", 80, "\"any\"") + &rule("ssh-in", 22, "[\"192.0.2.1\"]")));
        let diff = PolicyDiff::between(Some(&a), &b);
        assert!(diff.is_empty(), "{diff:?}");
        assert!(diff.lines().is_empty());
    }

    #[test]
    fn rules_peers_keys_addresses_and_tables_each_say_what_changed() {
        let old =
            policy(&(rule("ssh-in", 22, "[\"192.0.2.1\", \"192.0.2.2\"]") + &rule("old-in", 25, "\"any\"")));
        let new_text =
            rule("ssh-in", 2222, "[\"192.0.2.2\", \"192.0.2.3\"]") + &rule("web-in", 80, "\"any\"");
        let new = parse(
            &format!("[host]\naddress = [\"198.51.100.1\", \"198.51.100.2\"]\ndhcp = false\n{new_text}"),
            Path::new("p.toml"),
        )
        .unwrap();
        let diff = PolicyDiff::between(Some(&old), &new);
        assert_eq!(
            diff.lines(),
            [
                "add rule web-in",
                "remove rule old-in",
                "add peer 192.0.2.3 to rule ssh-in",
                "remove peer 192.0.2.1 from rule ssh-in",
                "change rule ssh-in: protocols or ports",
                "add host address 198.51.100.2",
                "change [host] dhcp",
            ]
        );
        // No policy before: everything is new.
        let fresh = PolicyDiff::between(None, &old);
        assert_eq!(fresh.rules_added, ["ssh-in", "old-in"]);
        assert_eq!(fresh.addresses_added, ["198.51.100.1"]);
        assert!(fresh.antispoof_added.contains(&"source 10.0.0.0/8".to_string()), "{fresh:?}");
    }
}
