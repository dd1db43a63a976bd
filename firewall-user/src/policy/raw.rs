//! The policy file as deserialised: TOML's tables as they are written, each value with
//! its place in the text for the messages that validation gives; and the TOML parser's
//! and serde's own messages, put in TOML's words.
//!
//! The same types give the file's JSON Schema (`firewall schema`, for editors): a field's
//! doc is its description there, and its `schemars` attributes say what the validation in
//! the modules beside this one checks that a schema can say too. Validation stays the
//! judge: the schema helps an editor complete and flag, and admits some files that
//! `firewall check` refuses (a peer that is no address, say).
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
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

/// The policy file of firewall(8): one server's tight policy. The reference is
/// firewall.toml(5), or docs/policy.md.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "firewall policy")]
pub(super) struct RawPolicy {
    /// The host: its interface and addresses.
    pub(super) host: RawHost,
    /// The anti-spoof lists: sources no packet in may have, destinations none may go to.
    pub(super) antispoof: Option<RawAntispoof>,
    /// The flow tables' sizes and timeouts.
    pub(super) conntrack: Option<RawConntrack>,
    /// How the peers written as DNS names are kept.
    pub(super) dns: Option<RawDns>,
    /// The rules: each admits the packets that open a flow in its direction.
    #[serde(default)]
    #[schemars(with = "Vec<RawRule>")]
    pub(super) rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Host")]
pub(super) struct RawHost {
    /// The interface the programs attach to (`--iface` overrides it).
    #[schemars(with = "Option<String>")]
    pub(super) interface: Option<Spanned<String>>,
    /// OURIP: packets in must be to it, packets out from it; or a list of the host's IPv4
    /// addresses.
    #[schemars(with = "RawAddresses", required)]
    pub(super) address: Option<Spanned<RawAddresses>>,
    /// The host's IPv6 address, or a list: IPv6 is filtered by the same rules. Without it,
    /// all IPv6 drops.
    #[schemars(with = "Option<RawAddresses>")]
    pub(super) address6: Option<Spanned<RawAddresses>>,
    /// The host's DHCP client gets its lease (default true).
    pub(super) dhcp: Option<bool>,
    /// The interface's own addresses are the host's too, as they come and go, with
    /// `firewall follow` running (default false).
    pub(super) follow_addresses: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Antispoof")]
pub(super) struct RawAntispoof {
    /// Addresses and CIDRs no packet in may come from (default: the seed's list).
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) sources: Option<Vec<Spanned<String>>>,
    /// Addresses and CIDRs no packet may go to (default: the seed's list).
    #[schemars(with = "Option<Vec<String>>")]
    pub(super) destinations: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Conntrack")]
pub(super) struct RawConntrack {
    /// Flows heard both ways (default 65536; the idle ones go first).
    #[schemars(with = "Option<i64>", range(min = 1024, max = 16_777_216))]
    pub(super) max_entries: Option<Spanned<i64>>,
    /// Flows not yet heard both ways, where spoofed packets stay (default 16384).
    #[schemars(with = "Option<i64>", range(min = 1024, max = 16_777_216))]
    pub(super) max_half_open: Option<Spanned<i64>>,
    /// A duration, as "5d" (the default).
    #[schemars(with = "Option<String>")]
    pub(super) tcp_established_timeout: Option<Spanned<String>>,
    /// After a FIN (default "120s").
    #[schemars(with = "Option<String>")]
    pub(super) tcp_fin_timeout: Option<Spanned<String>>,
    /// After a RST (default "10s").
    #[schemars(with = "Option<String>")]
    pub(super) tcp_rst_timeout: Option<Spanned<String>>,
    /// UDP flows (default "30s").
    #[schemars(with = "Option<String>")]
    pub(super) udp_timeout: Option<Spanned<String>>,
    /// ICMP echo flows (default "30s").
    #[schemars(with = "Option<String>")]
    pub(super) icmp_timeout: Option<Spanned<String>>,
    /// After the opener's SYN (default "120s").
    #[schemars(with = "Option<String>")]
    pub(super) tcp_syn_sent_timeout: Option<Spanned<String>>,
    /// After the SYN-ACK (default "60s").
    #[schemars(with = "Option<String>")]
    pub(super) tcp_syn_recv_timeout: Option<Spanned<String>>,
    /// How long a datagram's later fragments may follow its first (default "5s").
    #[schemars(with = "Option<String>")]
    pub(super) fragment_timeout: Option<Spanned<String>>,
    /// A TCP flow may start mid-stream, as netfilter's nf_conntrack_tcp_loose (default true).
    pub(super) tcp_loose: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Dns")]
pub(super) struct RawDns {
    /// How long an address that left a name's answer stays admitted, as "10m" (default "1h").
    #[schemars(with = "Option<String>")]
    pub(super) grace: Option<Spanned<String>>,
    /// The most addresses one name may hold at once (default 64).
    #[schemars(with = "Option<i64>", range(min = 1, max = 4096))]
    pub(super) max_addresses: Option<Spanned<i64>>,
    /// Whether `firewall serve` learns the names' addresses from the answers the host's
    /// resolvers send it too (default true).
    pub(super) learn: Option<bool>,
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

/// What a [`OneOrMany`] is expected to be, in a message about a value of another type,
/// and its name in the schema.
pub(super) trait Expected {
    const WHAT: &'static str;
    const NAME: &'static str;
}

/// A rule's `peers`: `"any"`, or a list.
pub(super) struct Peers;
impl Expected for Peers {
    const WHAT: &'static str = "\"any\" or a list of addresses, CIDRs and DNS names";
    const NAME: &'static str = "Peers";
}

/// `[host] address` or `address6`: one address, as every policy wrote it before hosts
/// could have several, or a list.
pub(super) struct Addresses;
impl Expected for Addresses {
    const WHAT: &'static str = "an address or a list of addresses";
    const NAME: &'static str = "Addresses";
}

impl<W: Expected> JsonSchema for OneOrMany<W> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        W::NAME.into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": W::WHAT,
            "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }]
        })
    }
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

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).trim_start_matches("Raw").into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "description": $expected,
                    "anyOf": [{ "type": "integer", "minimum": 0 }, { "type": "string" }]
                })
            }
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rule")]
pub(super) struct RawRule {
    /// Unique: names the rule's counters. 1 to 32 of a-z, 0-9 and -.
    #[schemars(with = "String", required, pattern(r"^[a-z0-9-]{1,32}$"))]
    pub(super) name: Option<Spanned<String>>,
    /// "in": the peer opens the flow; "out": this host does.
    #[schemars(with = "Direction", required)]
    pub(super) direction: Option<Spanned<String>>,
    /// The protocols it admits: tcp, udp, icmp.
    #[schemars(with = "Vec<Protocol>", required, length(min = 1))]
    pub(super) protocols: Option<Spanned<Vec<Spanned<String>>>>,
    /// The service port (local for "in", remote for "out"), or a range as "1024-65535".
    #[schemars(with = "Option<RawPort>")]
    pub(super) port: Option<Spanned<RawPort>>,
    /// Several service ports or ranges, as [80, 443] (not with port).
    #[schemars(with = "Option<Vec<RawPort>>")]
    pub(super) ports: Option<Spanned<Vec<Spanned<RawPort>>>>,
    /// With icmp in protocols: the type it admits, a name or a number.
    #[schemars(with = "Option<RawIcmpType>")]
    pub(super) icmp_type: Option<Spanned<RawIcmpType>>,
    /// The peers: addresses and CIDRs of either family, or "any".
    #[schemars(with = "Option<RawPeers>")]
    pub(super) peers: Option<Spanned<RawPeers>>,
    /// A rate for the whole rule, as "5/s" or "6/30s".
    #[schemars(with = "Option<String>")]
    pub(super) limit: Option<Spanned<String>>,
    /// With limit: how many at once before the rate applies.
    #[schemars(with = "Option<i64>", range(min = 1, max = 10_000))]
    pub(super) burst: Option<Spanned<i64>>,
    /// An ICMP error passes only when it quotes a tracked flow, as netfilter's RELATED.
    #[schemars(with = "Option<bool>")]
    pub(super) related: Option<Spanned<bool>>,
    /// Limits for each source: a rate, a block, open connections (inbound rules).
    #[schemars(with = "Option<RawPerSource>")]
    pub(super) per_source: Option<Spanned<RawPerSource>>,
    /// Outbound rules: only these users' sockets open flows (uids, names, ranges).
    #[schemars(with = "Option<Vec<RawUid>>")]
    pub(super) uids: Option<Spanned<Vec<Spanned<RawUid>>>>,
    /// The flows it admits are told as events, as drops are.
    pub(super) log: Option<bool>,
    /// The flows it admits are tracked and their returns pass (default true).
    pub(super) returns: Option<bool>,
    /// Inbound: admits nothing, and blocks a source that sends what it matches for this
    /// long, as "1d".
    #[schemars(with = "Option<String>")]
    pub(super) trap: Option<Spanned<String>>,
    /// Free text for the listing's readers; ignored by the filter.
    #[serde(rename = "comment")]
    _comment: Option<String>,
}

/// A rule's direction, for the schema.
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[expect(dead_code, reason = "only its schema is used: validation reads the string")]
enum Direction {
    In,
    Out,
}

/// A rule's protocol, for the schema.
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[expect(dead_code, reason = "only its schema is used: validation reads the string")]
enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

/// `per_source = { limit = "6/30s", burst = 6, block = "10m", connections = 4, prefix = 32,
/// prefix6 = 64 }`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PerSource")]
pub(super) struct RawPerSource {
    /// Each source's rate of new flows, as "6/30s".
    #[schemars(with = "Option<String>")]
    pub(super) limit: Option<Spanned<String>>,
    /// At most this many of the rule's flows open at once per source.
    #[schemars(with = "Option<i64>", range(min = 1, max = 16))]
    pub(super) connections: Option<Spanned<i64>>,
    /// With limit: how many at once before the rate applies.
    #[schemars(with = "Option<i64>", range(min = 1, max = 10_000))]
    pub(super) burst: Option<Spanned<i64>>,
    /// With limit: a source over its rate is blocked this long, as "10m".
    #[schemars(with = "Option<String>")]
    pub(super) block: Option<Spanned<String>>,
    /// A source is its address's /prefix (default 32).
    #[schemars(with = "Option<i64>", range(min = 0, max = 32))]
    pub(super) prefix: Option<Spanned<i64>>,
    /// An IPv6 source is its address's /prefix6 (default 64).
    #[schemars(with = "Option<i64>", range(min = 0, max = 128))]
    pub(super) prefix6: Option<Spanned<i64>>,
}

/// The policy file's JSON Schema (draft 2020-12), as `firewall schema` prints it.
pub fn schema() -> Schema {
    schemars::schema_for!(RawPolicy)
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
