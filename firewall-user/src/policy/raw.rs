//! The policy file as deserialised: TOML's tables as they are written, each value with
//! its place in the text for the messages that validation gives; and the TOML parser's
//! and serde's own messages, put in TOML's words.
use std::fmt;

use serde::Deserialize;
use serde_spanned::Spanned;

/// The TOML parser's or serde's message, in the words of TOML and of this file: one line,
/// never empty, without Rust's type names.
pub(super) fn toml_message(message: &str, text: &str, offset: usize) -> String {
    let message = message.trim().replace('\n', " ");
    if message.is_empty() {
        // The parser says nothing for some syntax errors; say what is at the place.
        return match text.get(offset..).and_then(|rest| rest.chars().next()) {
            None => "the file ends where TOML expects more (a value, a closing bracket or quote)".into(),
            Some('\r') => "a carriage return must be followed by a newline".into(),
            Some(c) if c.is_control() => {
                format!("control character U+{:04X} is not allowed, not even in a comment", u32::from(c))
            }
            Some(c) => format!("invalid TOML at {c:?}"),
        };
    }
    let mut message = message
        .replace("expected i64", "expected an integer")
        .replace("expected a borrowed string", "expected a string")
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("expected a map", "expected a table")
        .replace("invalid type: map", "invalid type: table");
    // `expected struct RawHost` and the like: every struct here is a table.
    while let Some(start) = message.find("expected struct ") {
        let name_end = message[start + 16..]
            .find(|c: char| !c.is_alphanumeric())
            .map_or(message.len(), |n| start + 16 + n);
        message.replace_range(start..name_end, "expected a table");
    }
    message
}

/// The whole file; each `[[rule]]` keeps its place, for the messages about what it lacks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) host: RawHost,
    pub(super) antispoof: Option<RawAntispoof>,
    pub(super) conntrack: Option<RawConntrack>,
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) interface: Option<Spanned<String>>,
    pub(super) address: Option<Spanned<RawAddresses>>,
    pub(super) address6: Option<Spanned<RawAddresses>>,
    pub(super) dhcp: Option<bool>,
    pub(super) follow_addresses: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAntispoof {
    pub(super) sources: Option<Vec<Spanned<String>>>,
    pub(super) destinations: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    pub(super) max_entries: Option<Spanned<i64>>,
    pub(super) max_half_open: Option<Spanned<i64>>,
    pub(super) tcp_established_timeout: Option<Spanned<String>>,
    pub(super) tcp_fin_timeout: Option<Spanned<String>>,
    pub(super) tcp_rst_timeout: Option<Spanned<String>>,
    pub(super) udp_timeout: Option<Spanned<String>>,
    pub(super) icmp_timeout: Option<Spanned<String>>,
    pub(super) tcp_syn_sent_timeout: Option<Spanned<String>>,
    pub(super) tcp_syn_recv_timeout: Option<Spanned<String>>,
    pub(super) fragment_timeout: Option<Spanned<String>>,
    pub(super) tcp_loose: Option<bool>,
}

/// One string, or a list whose entries keep their own positions for error messages (which
/// `#[serde(untagged)]` would lose). `W` names what is expected, for a value of another
/// type.
pub(super) enum OneOrMany<W> {
    One(String),
    Many(Vec<Spanned<String>>),
    /// Never made: holds `W`, which is only a name.
    #[expect(dead_code, reason = "a marker for the type parameter, never constructed")]
    Named(std::marker::PhantomData<W>, std::convert::Infallible),
}

/// What a [`OneOrMany`] is expected to be, in a message about a value of another type.
pub(super) trait Expected {
    const WHAT: &'static str;
}

/// A rule's `peers`: `"any"`, or a list.
pub(super) struct Peers;
impl Expected for Peers {
    const WHAT: &'static str = "\"any\" or a list of addresses and CIDRs";
}

/// `[host] address` or `address6`: one address, as every policy wrote it before hosts
/// could have several, or a list.
pub(super) struct Addresses;
impl Expected for Addresses {
    const WHAT: &'static str = "an address or a list of addresses";
}

pub(super) type RawPeers = OneOrMany<Peers>;
pub(super) type RawAddresses = OneOrMany<Addresses>;

impl<'de, W: Expected> Deserialize<'de> for OneOrMany<W> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<W>(std::marker::PhantomData<W>);
        impl<'de, W: Expected> serde::de::Visitor<'de> for Visitor<W> {
            type Value = OneOrMany<W>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(W::WHAT)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany<W>, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany<W>, A::Error> {
                let mut list = Vec::new();
                while let Some(entry) = seq.next_element::<Spanned<String>>()? {
                    list.push(entry);
                }
                Ok(OneOrMany::Many(list))
            }
        }
        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl RawAddresses {
    /// Each address as written, with its place: a lone string's is the value's own
    /// (`at`), a list entry's its own.
    pub(super) fn entries(self, at: usize) -> Vec<(String, usize)> {
        match self {
            OneOrMany::One(text) => vec![(text, at)],
            OneOrMany::Many(list) => list
                .into_iter()
                .map(|entry| {
                    let at = entry.span().start;
                    (entry.into_inner(), at)
                })
                .collect(),
        }
    }
}

/// An enum of a value written as a number or as a string, deserialized by a visitor of its
/// own (`#[serde(untagged)]` would answer anything else with its own internals), whose
/// type errors say what was expected in the policy's words.
macro_rules! number_or_text {
    ($(#[$doc:meta])* $name:ident, $expected:literal) => {
        $(#[$doc])*
        pub(super) enum $name {
            Number(i64),
            Text(String),
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expected)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::Text(v.to_owned()))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        Ok($name::Number(v))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        Ok($name::Number(i64::try_from(v).unwrap_or(i64::MAX)))
                    }
                }
                deserializer.deserialize_any(Visitor)
            }
        }
    };
}

number_or_text!(
    /// An ICMP type: a name or a number.
    RawIcmpType,
    "an ICMP type: echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem or a number 0-255"
);

number_or_text!(
    /// A port as written: a number, or a string that is a range (`"1024-65535"`,
    /// `"1024:65535"`) or a number.
    RawPort,
    "a port number or a range as \"1024-65535\""
);

number_or_text!(
    /// A uid as written: a number, a user name, or a range (`"1000-1999"`).
    RawUid,
    "a uid, a user name, or a range of uids as \"1000-1999\""
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Option<Spanned<String>>,
    pub(super) direction: Option<Spanned<String>>,
    pub(super) protocols: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) port: Option<Spanned<RawPort>>,
    pub(super) ports: Option<Spanned<Vec<Spanned<RawPort>>>>,
    pub(super) icmp_type: Option<Spanned<RawIcmpType>>,
    pub(super) peers: Option<Spanned<RawPeers>>,
    pub(super) limit: Option<Spanned<String>>,
    pub(super) burst: Option<Spanned<i64>>,
    pub(super) related: Option<Spanned<bool>>,
    pub(super) per_source: Option<Spanned<RawPerSource>>,
    pub(super) uids: Option<Spanned<Vec<Spanned<RawUid>>>>,
    pub(super) log: Option<bool>,
    pub(super) returns: Option<bool>,
    pub(super) trap: Option<Spanned<String>>,
    /// Free text for the listing's readers; ignored by the filter.
    #[serde(rename = "comment")]
    _comment: Option<String>,
}

/// `per_source = { limit = "6/30s", burst = 6, block = "10m", connections = 4, prefix = 32,
/// prefix6 = 64 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerSource {
    pub(super) limit: Option<Spanned<String>>,
    pub(super) connections: Option<Spanned<i64>>,
    pub(super) burst: Option<Spanned<i64>>,
    pub(super) block: Option<Spanned<String>>,
    pub(super) prefix: Option<Spanned<i64>>,
    pub(super) prefix6: Option<Spanned<i64>>,
}

#[cfg(test)]
mod tests {
    use crate::policy::tests::{HOST, check};

    #[test]
    fn toml_and_type_errors_are_in_toml_words() {
        // Syntax errors the TOML parser gives no words for.
        assert_eq!(check("\r").unwrap_err(), "p.toml:1:1: a carriage return must be followed by a newline");
        assert!(
            check("#\0")
                .unwrap_err()
                .ends_with("control character U+0000 is not allowed, not even in a comment")
        );
        assert!(check("[host]\ninterface =").unwrap_err().contains("the file ends where TOML expects more"));
        // Types, named as TOML names them.
        let rule = |body: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"icmp\"]\n{body}\npeers = \"any\"\n"
            )
        };
        let err = check(&rule("icmp_type = true")).unwrap_err();
        assert!(err.ends_with("invalid type: boolean `true`, expected an ICMP type: echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem or a number 0-255"), "{err}");
        let err = check(&format!("{HOST}[[rule]]\nname = \"x\"\nport = 80.5\n")).unwrap_err();
        assert_eq!(
            err,
            "p.toml:6:8: invalid type: floating point `80.5`, expected a port number or a range as \"1024-65535\""
        );
        let err = check("host = 5\n").unwrap_err();
        assert!(err.ends_with("invalid type: integer `5`, expected a table"), "{err}");
        let err = check(&format!("{HOST}[[rule]]\nname = \"x\"\nprotocols = \"tcp\"\n")).unwrap_err();
        assert!(err.ends_with("expected an array"), "{err}");
        // Dotted keys are TOML too.
        assert!(check("host.address = \"198.51.100.1\"\n").is_ok());
    }
}
