//! `[[rule]]`: one service allowed one way, to or from listed peers. Each field of a rule
//! has a function of its own; [`validate_rule`] calls them in the order that decides
//! which of a rule's errors is reported first.
use std::{collections::HashSet, time::Duration};

use firewall_common::{
    Direction, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED, MAX_CONNECTIONS, MAX_RULE_UIDS, MAX_RULES, NO_SOCKET_UID, PROTO_ICMP,
    icmpv6_equivalent, protocol_named, rule_protocol,
};
use serde_spanned::Spanned;

use crate::FastMap;

use super::{
    Limit, Located, PeerName, Per, PerSource, Prefix, Rule, Service,
    conntrack::parse_duration,
    dns::{canonical_name, is_dns_name},
    fail, needs_address6,
    ports::{merged, port_span},
    raw::{RawIcmpType, RawPeers, RawPerSource, RawPort, RawRule, RawUid},
};

/// The `[[rule]]`s: at most `MAX_RULES`, each valid, none claiming an allow-list entry
/// that an earlier one has.
pub(super) fn validate_rules(raw: Vec<Spanned<RawRule>>, ipv6: bool) -> Result<Vec<Rule>, Located> {
    if raw.len() > MAX_RULES as usize {
        return fail(raw[MAX_RULES as usize].span().start, format!("too many rules: at most {MAX_RULES}"));
    }
    let mut names = HashSet::new();
    let mut owners = Owners::default();
    let mut rules = Vec::with_capacity(raw.len());
    let mut uids = 0u64;
    for raw_rule in raw {
        let rule_at = raw_rule.span().start;
        let placed = validate_rule(raw_rule, &mut names, ipv6)?;
        claim_entries(&mut owners, &placed)?;
        // One `RULE_UIDS` entry a uid.
        uids += placed.rule.uids.iter().map(|(first, last)| u64::from(last - first) + 1).sum::<u64>();
        if uids > u64::from(MAX_RULE_UIDS) {
            return fail(
                rule_at,
                format!("too many uids: the rules' uids and ranges hold at most {MAX_RULE_UIDS} in all"),
            );
        }
        rules.push(placed.rule);
    }
    Ok(rules)
}

/// Ports `first` to `last` (ICMP: a type), claimed by the rule of index `.2` in `Owners::names`.
type Claim = (u16, u16, u32);

/// A peer's first claim, and its others (most peers have one a protocol and direction:
/// no allocation for them, and 40 bytes a peer where a `Vec` took 56).
type PeerClaims = (Claim, Option<Box<Vec<Claim>>>);

/// (direction, protocol, exact peer) → the spans of ports (ICMP: of types) rules claimed,
/// each with the index of its rule in `names`: one port, one owner. A peer's list is as
/// long as the ports rules name for it, so the check of a rule is linear in its peers.
#[derive(Default)]
struct Owners {
    claimed: FastMap<OwnerKey, PeerClaims>,
    names: Vec<String>,
}

/// An [`Owners`] key: the peer's address as two words, and its direction, protocol,
/// family and length in a third; hashed as those three words, where the tuple's derived
/// hash wrote each field, and the address's bytes with their length (a million peers are
/// hashed on every `up` and `reload`).
#[derive(Clone, Copy, PartialEq, Eq)]
struct OwnerKey {
    high: u64,
    low: u64,
    service: u32,
}

impl OwnerKey {
    fn new(direction: Direction, protocol: u8, peer: Prefix) -> OwnerKey {
        let (bits, v6) = match peer.addr {
            std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 0),
            std::net::IpAddr::V6(v6) => (u128::from(v6), 1),
        };
        let service = u32::from_be_bytes([direction as u8, protocol, v6, peer.len]);
        OwnerKey { high: (bits >> 64) as u64, low: bits as u64, service }
    }
}

impl std::hash::Hash for OwnerKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.high);
        state.write_u64(self.low);
        state.write_u32(self.service);
    }
}

impl Owners {
    /// Gives the rule of index `index` (in `names`) `peer`'s allow-list entries, for each
    /// of its services; when an earlier rule has one, gives none and says so: `peer
    /// PEER for SERVICE DIRECTION is already in rule "NAME"`, naming the ports both claim
    /// (and the earlier rule's whole range, when it has more).
    fn claim(&mut self, index: u32, rule: &Rule, peer: Prefix) -> Result<(), String> {
        for (done, service) in rule.services.iter().enumerate() {
            let (first, last) = service.span();
            let claim = (first, last, index);
            let key = OwnerKey::new(rule.direction, service.protocol(), peer);
            let claimed = match self.claimed.entry(key) {
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    vacant.insert((claim, None));
                    continue;
                }
                std::collections::hash_map::Entry::Occupied(occupied) => occupied.into_mut(),
            };
            let mut all = std::iter::once(&claimed.0).chain(claimed.1.iter().flat_map(|more| more.iter()));
            if let Some(&(f, l, owner)) = all.find(|(f, l, _)| *f <= last && first <= *l) {
                let both = match service {
                    Service::Icmp { .. } => *service,
                    _ => Service::ports(service.protocol(), first.max(f), last.min(l)),
                };
                let theirs = if both.span() == (f, l) { String::new() } else { format!(" ({f}-{l})") };
                let shown = if peer == Prefix::ANY { "\"any\"".to_string() } else { peer.to_string() };
                let direction = if rule.direction == Direction::In { "in" } else { "out" };
                let owner = &self.names[owner as usize];
                let message =
                    format!("peer {shown} for {both} {direction} is already in rule {owner:?}{theirs}");
                self.unclaim(index, rule, peer, done);
                return Err(message);
            }
            claimed.1.get_or_insert_default().push(claim);
        }
        Ok(())
    }

    /// Gives back what [`Owners::claim`] took for `peer` of the rule's first `done`
    /// services: a name's address that is refused claims nothing (see [`Claims`]).
    fn unclaim(&mut self, index: u32, rule: &Rule, peer: Prefix, done: usize) {
        for service in rule.services[..done].iter().rev() {
            let key = OwnerKey::new(rule.direction, service.protocol(), peer);
            let (first, last) = service.span();
            let Some(entry) = self.claimed.get_mut(&key) else { continue };
            if let Some(more) = &mut entry.1
                && more.last() == Some(&(first, last, index))
            {
                more.pop();
            } else if entry.0 == (first, last, index) {
                self.claimed.remove(&key);
            }
        }
    }
}

/// Gives `placed` its allow-list entries; one that an earlier rule has is an error, at
/// the peer that claims it again.
fn claim_entries(owners: &mut Owners, placed: &PlacedRule) -> Result<(), Located> {
    let rule = &placed.rule;
    let index = owners.names.len() as u32;
    owners.names.push(rule.name.clone());
    owners.claimed.reserve(rule.services.len() * rule.peers.len());
    for (peer, at) in rule.peers.iter().zip(&placed.peer_at) {
        owners.claim(index, rule, *peer).map_err(|message| (*at, message))?;
    }
    Ok(())
}

/// The allow-list entries a valid policy's rules claim with the peers written as
/// addresses, to which the addresses of the peers written as names are added one by one
/// (`crate::names::fold`): a name's address whose entry a rule has already (an earlier
/// rule's, or this rule's own) is refused, as a listed peer would be, but is no error:
/// DNS answers change.
pub struct Claims(Owners);

impl Claims {
    /// The claims of `rules`' written addresses (valid: none conflicts).
    pub fn of(rules: &[Rule]) -> Claims {
        let mut owners = Owners::default();
        for (index, rule) in rules.iter().enumerate() {
            owners.names.push(rule.name.clone());
            for peer in &rule.peers {
                // A valid policy's written peers conflict with none.
                let _ = owners.claim(index as u32, rule, *peer);
            }
        }
        Claims(owners)
    }

    /// Gives the rule of index `index` in the rules of [`Claims::of`] `peer`'s entries,
    /// or says which rule has them.
    pub fn claim(&mut self, index: usize, rule: &Rule, peer: Prefix) -> Result<(), String> {
        self.0.claim(index as u32, rule, peer)
    }
}

/// A validated rule, with where each of its peers is written (`peers = "any"`: where
/// `peers` is).
struct PlacedRule {
    rule: Rule,
    peer_at: Vec<usize>,
}

/// A rule's start and its name: the place and the subject of a message about a field it
/// lacks.
#[derive(Clone, Copy)]
struct RuleAt<'a> {
    at: usize,
    name: &'a str,
}

impl RuleAt<'_> {
    /// `rule "NAME" needs WHAT`, at the rule's `[[rule]]`.
    fn lacks<T>(self, what: &str) -> Result<T, Located> {
        self.lacks_at(self.at, what)
    }

    /// `rule "NAME" needs WHAT`, at `at` (a table of the rule's that lacks a field).
    fn lacks_at<T>(self, at: usize, what: &str) -> Result<T, Located> {
        fail(at, format!("rule {:?} needs {what}", self.name))
    }
}

/// One rule, field by field; `names` holds the names of the rules before it.
fn validate_rule(
    raw: Spanned<RawRule>,
    names: &mut HashSet<String>,
    ipv6: bool,
) -> Result<PlacedRule, Located> {
    let rule_at = raw.span().start;
    let raw = raw.into_inner();
    let name = validate_name(raw.name, rule_at, names)?;
    let at = RuleAt { at: rule_at, name: &name };
    let direction = validate_direction(raw.direction, at)?;
    let protocols = validate_protocols(raw.protocols, at)?;
    let ports = validate_ports(raw.port, raw.ports, &protocols, at)?;
    let icmp_kind = validate_icmp_type(raw.icmp_type, &protocols, at)?;
    let services = services(&protocols, &ports, icmp_kind);
    let (peers, peer_at, peer_names) = validate_peers(raw.peers, at, ipv6, icmp_kind)?;
    let limit = validate_limit(raw.limit, raw.burst)?;
    let related = validate_related(raw.related, &protocols, icmp_kind)?;
    // `returns = false`: no flow is tracked, so nothing comes back (see `Rule::returns`).
    let returns = raw.returns.unwrap_or(true);
    let per_source = validate_per_source(raw.per_source, direction, returns, at)?;
    let uids = validate_uids(raw.uids, direction)?;
    // `log = true`: told as events while a listener asks (see `Rule::log`).
    let log = raw.log.unwrap_or(false);
    let trap = validate_trap(raw.trap, direction, limit.is_some() || per_source.is_some() || related)?;
    Ok(PlacedRule {
        rule: Rule {
            name,
            direction,
            services,
            peers,
            names: peer_names,
            limit,
            related,
            per_source,
            uids,
            log,
            returns,
            trap,
        },
        peer_at,
    })
}

/// `name`: what the listing, the metrics and the drop events call the rule's lines, so
/// one rule's alone and none of the built-in lines'.
fn validate_name(
    raw: Option<Spanned<String>>,
    rule_at: usize,
    names: &mut HashSet<String>,
) -> Result<String, Located> {
    let Some(name) = raw else {
        return fail(rule_at, "a [[rule]] needs a name");
    };
    let name_at = name.span().start;
    let name = name.into_inner();
    if name.is_empty()
        || name.len() > 32
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return fail(name_at, format!("bad rule name {name:?}: use 1 to 32 of a-z, 0-9 and -"));
    }
    if crate::compile::LineKind::reserved(&name) {
        return fail(name_at, format!("rule name {name:?} is reserved for the built-in lines"));
    }
    if !names.insert(name.clone()) {
        return fail(name_at, format!("duplicate rule name {name:?}"));
    }
    Ok(name)
}

/// `direction`: `in` for a service of this host's, `out` for one it uses.
fn validate_direction(raw: Option<Spanned<String>>, rule: RuleAt) -> Result<Direction, Located> {
    let Some(direction) = raw else {
        return rule.lacks("direction = \"in\" or \"out\"");
    };
    match direction.get_ref().as_str() {
        "in" => Ok(Direction::In),
        "out" => Ok(Direction::Out),
        other => fail(direction.span().start, format!("direction must be \"in\" or \"out\", not {other:?}")),
    }
}

/// `protocols`: tcp, udp or icmp, each at most once.
fn validate_protocols(raw: Option<Spanned<Vec<Spanned<String>>>>, rule: RuleAt) -> Result<Vec<u8>, Located> {
    let Some(protocols) = raw else {
        return rule.lacks("protocols, as [\"tcp\"]");
    };
    if protocols.get_ref().is_empty() {
        return fail(protocols.span().start, "protocols is empty");
    }
    let mut protos = Vec::new();
    for p in protocols.get_ref() {
        let Some(proto) = protocol_named(p.get_ref()).filter(|p| rule_protocol(*p)) else {
            return fail(
                p.span().start,
                format!("unknown protocol {:?}: expected tcp, udp or icmp", p.get_ref()),
            );
        };
        if protos.contains(&proto) {
            return fail(p.span().start, format!("protocol {:?} is listed twice", p.get_ref()));
        }
        protos.push(proto);
    }
    Ok(protos)
}

/// `port` or `ports` (not both): what tcp and udp need and icmp has none of; each a
/// number or a range. Ports written twice, or in two entries that overlap, are admitted once.
fn validate_ports(
    port: Option<Spanned<RawPort>>,
    ports: Option<Spanned<Vec<Spanned<RawPort>>>>,
    protocols: &[u8],
    rule: RuleAt,
) -> Result<Vec<(u16, u16)>, Located> {
    let port_list: Vec<Spanned<RawPort>> = match (port, ports) {
        (Some(_), Some(ports)) => return fail(ports.span().start, "use port or ports, not both"),
        (Some(port), None) => vec![port],
        (None, Some(ports)) if ports.get_ref().is_empty() => {
            return fail(ports.span().start, "ports is empty");
        }
        (None, Some(ports)) => ports.into_inner(),
        (None, None) => vec![],
    };
    let port_at = port_list.first().map(|p| p.span().start);
    let spans = port_list.into_iter().map(port_span).collect::<Result<Vec<_>, _>>()?;
    let wants_ports = protocols.iter().any(|p| *p != PROTO_ICMP);
    if wants_ports && spans.is_empty() {
        return rule.lacks("port or ports for tcp/udp");
    }
    if !wants_ports && let Some(at) = port_at {
        return fail(at, "port applies to tcp and udp, not icmp");
    }
    Ok(merged(&spans))
}

/// `icmp_type`: what icmp needs and tcp and udp have none of.
fn validate_icmp_type(
    raw: Option<Spanned<RawIcmpType>>,
    protocols: &[u8],
    rule: RuleAt,
) -> Result<Option<u8>, Located> {
    let icmp = protocols.contains(&PROTO_ICMP);
    match raw {
        None if icmp => rule.lacks(
            "icmp_type (echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem or a number)",
        ),
        None => Ok(None),
        Some(t) if !icmp => fail(t.span().start, "icmp_type needs \"icmp\" in protocols"),
        Some(t) => {
            let at = t.span().start;
            icmp_type(t.into_inner(), at).map(Some)
        }
    }
}

/// An ICMP type by its name or its number.
fn icmp_type(raw: RawIcmpType, at: usize) -> Result<u8, Located> {
    match raw {
        RawIcmpType::Text(n) => match n.as_str() {
            "echo-request" => Ok(ICMP_ECHO_REQUEST),
            "echo-reply" => Ok(ICMP_ECHO_REPLY),
            "destination-unreachable" => Ok(ICMP_DEST_UNREACHABLE),
            "time-exceeded" => Ok(ICMP_TIME_EXCEEDED),
            "parameter-problem" => Ok(ICMP_PARAMETER_PROBLEM),
            other => fail(
                at,
                format!(
                    "unknown icmp_type {other:?}: expected echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem or a number"
                ),
            ),
        },
        RawIcmpType::Number(n) if (0..=255).contains(&n) => Ok(n as u8),
        RawIcmpType::Number(n) => fail(at, format!("icmp_type {n} out of range 0-255")),
    }
}

/// What the rule admits, protocol by protocol: each port or range of tcp and udp, icmp's type.
fn services(protocols: &[u8], ports: &[(u16, u16)], icmp_kind: Option<u8>) -> Vec<Service> {
    let mut services = Vec::new();
    for proto in protocols {
        match *proto {
            PROTO_ICMP => services.push(Service::Icmp { kind: icmp_kind.expect("checked above") }),
            protocol => {
                services.extend(ports.iter().map(|&(first, last)| Service::ports(protocol, first, last)));
            }
        }
    }
    services
}

/// A rule's peers: those written as addresses and prefixes, where each is written, and
/// those written as DNS names.
type Peers = (Vec<Prefix>, Vec<usize>, Vec<PeerName>);

/// `peers`: `"any"`, or a list of addresses, prefixes and DNS names; each address and
/// prefix with where it is written.
fn validate_peers(
    raw: Option<Spanned<RawPeers>>,
    rule: RuleAt,
    ipv6: bool,
    icmp_kind: Option<u8>,
) -> Result<Peers, Located> {
    let Some(peers) = raw else {
        return rule.lacks("peers: addresses, CIDRs, DNS names, or \"any\"");
    };
    let peers_at = peers.span().start;
    match peers.into_inner() {
        RawPeers::One(any) if any == "any" => Ok((vec![Prefix::ANY], vec![peers_at], Vec::new())),
        RawPeers::One(other) => {
            fail(peers_at, format!("peers must be a list of addresses or \"any\", not {other:?}"))
        }
        RawPeers::Many(list) if list.is_empty() => {
            fail(peers_at, "peers is empty: the rule would admit nothing (write peers = \"any\" for anyone)")
        }
        RawPeers::Many(list) => peer_list(list, ipv6, icmp_kind),
    }
}

/// A list of peers: each a prefix or a DNS name, once. The first fault in the list's
/// order is the one reported.
fn peer_list(list: Vec<Spanned<String>>, ipv6: bool, icmp_kind: Option<u8>) -> Result<Peers, Located> {
    let mut out: Vec<Prefix> = Vec::with_capacity(list.len());
    let mut places = Vec::with_capacity(list.len());
    let mut names: Vec<PeerName> = Vec::new();
    let mut fault = Ok(());
    for entry in list {
        let at = entry.span().start;
        let text = entry.get_ref();
        let prefix = match Prefix::parse(text) {
            Ok(prefix) => prefix,
            Err(_) if is_dns_name(text) => {
                let name = canonical_name(text);
                if names.iter().any(|n| n.name == name) {
                    fault = fail(at, format!("peer {name} is listed twice"));
                    break;
                }
                names.push(PeerName { name, addresses: Vec::new() });
                continue;
            }
            Err(e) => {
                fault = fail(at, e.to_string());
                break;
            }
        };
        if let Err(e) = usable_peer(prefix, at, ipv6, icmp_kind) {
            fault = Err(e);
            break;
        }
        out.push(prefix);
        places.push(at);
    }
    // A prefix listed twice before the fault (if any) comes first.
    if let Some(second) = first_repeat(&out) {
        return fail(places[second], format!("peer {} is listed twice", out[second]));
    }
    fault.map(|()| (out, places, names))
}

/// The index of the first prefix in `list` that an earlier one repeats. Sorted, not
/// hashed: a million peers hash at a cache miss each, and sort in a tenth of the time.
fn first_repeat(list: &[Prefix]) -> Option<usize> {
    let mut sorted: Vec<(Prefix, usize)> = list.iter().copied().zip(0..).collect();
    sorted.sort_unstable();
    // Each pair of equal neighbours: the later of the two in the list (the earliest
    // repeat of their prefix, as its indices are sorted too).
    sorted.windows(2).filter(|pair| pair[0].0 == pair[1].0).map(|pair| pair[1].1).min()
}

/// A listed peer that the filter can tell apart: not everyone (that is `"any"`), not
/// IPv6 when IPv6 is dropped whole, and not IPv6 for an ICMP type ICMPv6 lacks.
fn usable_peer(prefix: Prefix, at: usize, ipv6: bool, icmp_kind: Option<u8>) -> Result<(), Located> {
    if prefix.len == 0 || prefix.addr.is_unspecified() {
        return fail(at, format!("{prefix} is no peer; write peers = \"any\" for anyone"));
    }
    if prefix.is_v6() && !ipv6 {
        return fail(at, needs_address6(&prefix));
    }
    if prefix.is_v6()
        && let Some(kind) = icmp_kind.filter(|k| icmpv6_equivalent(*k).is_none())
    {
        return fail(
            at,
            format!(
                "{prefix} is IPv6, and ICMP type {kind} has no ICMPv6 equivalent: name a type both have (echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem)"
            ),
        );
    }
    Ok(())
}

/// `limit` and `burst`, as iptables' `--limit` and `--limit-burst`: a burst alone is an
/// error, a limit alone bursts to 5.
fn validate_limit(
    limit: Option<Spanned<String>>,
    burst: Option<Spanned<i64>>,
) -> Result<Option<Limit>, Located> {
    let limit = match (limit, burst.as_ref()) {
        (None, None) => return Ok(None),
        (None, Some(burst)) => return fail(burst.span().start, "burst needs a limit"),
        (Some(limit), _) => limit,
    };
    let Some((count, unit, interval)) = parse_limit(limit.get_ref()) else {
        return fail(limit.span().start, format!("bad limit {:?}: {LIMIT_FORMS}", limit.get_ref()));
    };
    let burst = match burst {
        None => 5, // iptables' default --limit-burst
        Some(b) if (1..=10_000).contains(b.get_ref()) => *b.get_ref() as u32,
        Some(b) => return fail(b.span().start, "burst must be between 1 and 10000"),
    };
    Ok(Some(Limit { interval, burst, count, unit }))
}

/// `uids = [0, "debian-tor", "1000-1999"]`: iptables' `-m owner --uid-owner`, for outbound
/// rules (only this host's packets have a sending socket). Names are looked up on this
/// host. The ranges come merged and sorted.
fn validate_uids(
    raw: Option<Spanned<Vec<Spanned<RawUid>>>>,
    direction: Direction,
) -> Result<Vec<(u32, u32)>, Located> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let list_at = raw.span().start;
    only_for(Direction::Out, direction, list_at, "uids", "only this host's packets have a sending socket")?;
    let raw = raw.into_inner();
    if raw.is_empty() {
        return fail(list_at, "uids is empty: leave it out to admit every user's packets");
    }
    let mut ranges = Vec::with_capacity(raw.len());
    for entry in raw {
        let at = entry.span().start;
        let (first, last) = match entry.into_inner() {
            RawUid::Number(n) => {
                let uid = one_uid(n).ok_or_else(|| (at, format!("bad uid {n}: a uid is 0 to 4294967294")))?;
                (uid, uid)
            }
            // A range is digits on both sides of its dash: names have dashes too
            // (`debian-tor`, `systemd-network`).
            RawUid::Text(text) => {
                match text.split_once('-').filter(|(a, _)| a.bytes().all(|b| b.is_ascii_digit())) {
                    Some((a, b)) => {
                        let bounds = a.parse().ok().and_then(one_uid).zip(b.parse().ok().and_then(one_uid));
                        match bounds {
                            Some((first, last)) if first <= last => (first, last),
                            _ => {
                                return fail(
                                    at,
                                    format!("bad uid range {text:?}: write FIRST-LAST, as \"1000-1999\""),
                                );
                            }
                        }
                    }
                    None => match nix::unistd::User::from_name(&text) {
                        Ok(Some(user)) => (user.uid.as_raw(), user.uid.as_raw()),
                        _ => {
                            return fail(
                                at,
                                format!("no user {text:?} on this host: name one it has, or write its uid"),
                            );
                        }
                    },
                }
            }
        };
        if (first..=last).contains(&NO_SOCKET_UID) {
            return fail(
                at,
                format!(
                    "uid {NO_SOCKET_UID} (nobody) is what the kernel reports for packets of no socket: the filter cannot tell them apart; run the service as another user"
                ),
            );
        }
        ranges.push((first, last));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(previous) if first <= previous.1.saturating_add(1) => previous.1 = previous.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    Ok(merged)
}

/// A field (`field`, written at `at`) that only rules of direction `wanted` may have, and
/// `why`.
fn only_for(
    wanted: Direction,
    direction: Direction,
    at: usize,
    field: &str,
    why: &str,
) -> Result<(), Located> {
    if direction == wanted {
        return Ok(());
    }
    let name = if wanted == Direction::In { "in" } else { "out" };
    fail(at, format!("{field} applies to rules with direction = \"{name}\": {why}"))
}

/// `trap = "1d"`: how long a source that sends what the rule matches is blocked; inbound
/// rules only, and none that admits (`admits`: it has a `limit`, a `per_source` or
/// `related`), since a trap admits nothing.
fn validate_trap(
    raw: Option<Spanned<String>>,
    direction: Direction,
    admits: bool,
) -> Result<Option<Duration>, Located> {
    let Some(text) = raw else {
        return Ok(None);
    };
    let at = text.span().start;
    only_for(Direction::In, direction, at, "trap", "it blocks the sources of what comes in")?;
    if admits {
        return fail(at, "a trap admits nothing: it takes no limit, per_source or related");
    }
    let block = parse_duration(text.get_ref()).filter(|d| !d.is_zero()).ok_or_else(|| {
        (at, format!("bad trap {:?}: expected a number and s, m, h or d, as \"1d\"", text.get_ref()))
    })?;
    Ok(Some(block))
}

/// A uid as a number: 0 to 4294967294 (4294967295 is "no uid" to the kernel).
fn one_uid(n: i64) -> Option<u32> {
    u32::try_from(n).ok().filter(|uid| *uid != u32::MAX)
}

/// What a limit may be, for the error that finds none.
const LIMIT_FORMS: &str = "expected N/sec, N/min, N/hour, N/day, or N in a window, as \"6/30s\"";

/// `per_source = { limit = "6/30s", burst = 6, block = "10m", connections = 4, prefix = 32,
/// prefix6 = 64 }`: for each source, a rate of new flows, whose burst is the limit's count
/// unless written, and how many of its flows may be open at once, one or both, a source
/// being its address's prefix (/32 and /64 unless written); inbound rules only (the source
/// of an outbound rule's flows is this host), and `connections` only on a rule that tracks
/// its flows (`returns`).
fn validate_per_source(
    raw: Option<Spanned<RawPerSource>>,
    direction: Direction,
    returns: bool,
    at: RuleAt,
) -> Result<Option<PerSource>, Located> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let table_at = raw.span().start;
    only_for(
        Direction::In,
        direction,
        table_at,
        "per_source",
        "the source of an outbound rule's flows is this host",
    )?;
    let raw = raw.into_inner();
    let connections = match raw.connections {
        None => None,
        Some(n) if !returns => {
            return fail(
                n.span().start,
                "per_source.connections counts the flows a rule tracks, and a rule with returns = false tracks none",
            );
        }
        Some(n) => Some(
            u8::try_from(*n.get_ref())
                .ok()
                .filter(|n| (1..=MAX_CONNECTIONS).contains(&usize::from(*n)))
                .ok_or_else(|| {
                    (n.span().start, format!("bad connections {}: 1 to {MAX_CONNECTIONS}", n.get_ref()))
                })?,
        ),
    };
    let limit = match raw.limit {
        Some(text) => {
            let Some((count, unit, interval)) = parse_limit(text.get_ref()) else {
                return fail(text.span().start, format!("bad limit {:?}: {LIMIT_FORMS}", text.get_ref()));
            };
            let burst = match raw.burst {
                None => count.min(10_000),
                Some(b) if (1..=10_000).contains(b.get_ref()) => *b.get_ref() as u32,
                Some(b) => return fail(b.span().start, "burst must be between 1 and 10000"),
            };
            Some(Limit { interval, burst, count, unit })
        }
        None if connections.is_none() => {
            return at
                .lacks_at(table_at, "per_source.limit, as limit = \"6/30s\", or per_source.connections");
        }
        None => {
            // A burst or a block is the rate's.
            if let Some(field) = raw
                .burst
                .as_ref()
                .map(|b| (b.span().start, "burst"))
                .or(raw.block.as_ref().map(|b| (b.span().start, "block")))
            {
                return fail(
                    field.0,
                    format!("per_source.{} is the rate's: it needs per_source.limit", field.1),
                );
            }
            None
        }
    };
    let block = match raw.block {
        None => None,
        Some(text) => Some(parse_duration(text.get_ref()).ok_or_else(|| {
            (
                text.span().start,
                format!("bad block {:?}: expected a number and s, m, h or d, as \"10m\"", text.get_ref()),
            )
        })?),
    };
    let prefix_of = |raw: Option<Spanned<i64>>, default: u8, most: u8| match raw {
        None => Ok(default),
        Some(len) => u8::try_from(*len.get_ref())
            .ok()
            .filter(|len| *len <= most)
            .ok_or_else(|| (len.span().start, format!("bad prefix length {}: 0 to {most}", len.get_ref()))),
    };
    let prefix = prefix_of(raw.prefix, 32, 32)?;
    let prefix6 = prefix_of(raw.prefix6, 64, 128)?;
    Ok(Some(PerSource { limit, connections, block, prefix, prefix6 }))
}

/// `"1/sec"`, `"10/minute"`, as iptables' `--limit`, or a count in a window of any
/// length, `"6/30s"`, `"10/5m"` (ufw's `limit` is 6 in 30 s).
pub fn parse_limit(text: &str) -> Option<(u32, Per, Duration)> {
    let (count, unit) = text.split_once('/')?;
    let count: u32 = count.parse().ok().filter(|c| *c > 0)?;
    let per = match unit {
        "s" | "sec" | "second" => Per::Sec,
        "m" | "min" | "minute" => Per::Min,
        "h" | "hour" => Per::Hour,
        "d" | "day" => Per::Day,
        window => Per::Window(u32::try_from(parse_duration(window)?.as_secs()).ok()?),
    };
    let interval = per.duration() / count;
    (interval >= Duration::from_micros(1)).then_some((count, per, interval))
}

/// `related = true`: only an ICMP error can be related to a flow, and only a rule of
/// protocol icmp alone says which.
fn validate_related(
    raw: Option<Spanned<bool>>,
    protocols: &[u8],
    icmp_kind: Option<u8>,
) -> Result<bool, Located> {
    match raw {
        None => Ok(false),
        Some(r) if !*r.get_ref() => Ok(false),
        Some(r) => match icmp_kind {
            Some(ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM)
                if protocols == [PROTO_ICMP] =>
            {
                Ok(true)
            }
            _ => fail(
                r.span().start,
                "related applies to ICMP error rules (destination-unreachable, time-exceeded, parameter-problem) of protocol icmp alone",
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use firewall_common::{PROTO_ICMPV6, PROTO_TCP};

    use super::*;
    use crate::policy::{
        parse_duration,
        tests::{HOST, HOST6, check},
    };

    #[test]
    fn rejects_host_bits_and_overlapping_owners() {
        let err = check(&format!(
            "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = [\"10.1.2.3/8\"]\n"
        ))
        .unwrap_err();
        assert!(err.ends_with("10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"), "{err}");
        let rule = |n: &str| {
            format!(
                "[[rule]]\nname = \"{n}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = [\"192.0.2.1\"]\n"
            )
        };
        let err = check(&format!("{HOST}{}{}", rule("a"), rule("b"))).unwrap_err();
        assert!(err.ends_with("peer 192.0.2.1 for tcp port 1 in is already in rule \"a\""), "{err}");
    }

    /// Owners' keys differ in each part: direction, protocol, family, length, address.
    #[test]
    fn owner_keys_tell_every_part_apart() {
        let v4 = Prefix::parse("192.0.2.1").unwrap();
        let peers = [
            v4,
            Prefix { len: 24, ..v4 },
            Prefix { addr: "::c000:201".parse().unwrap(), len: 32 },
            Prefix::parse("192.0.2.2").unwrap(),
            Prefix::ANY,
        ];
        let mut keys = Vec::new();
        for direction in [Direction::In, Direction::Out] {
            for protocol in [6, 17] {
                keys.extend(peers.iter().map(|peer| OwnerKey::new(direction, protocol, *peer)));
            }
        }
        for (i, a) in keys.iter().enumerate() {
            assert!(keys[i + 1..].iter().all(|b| a != b), "key {i} repeated");
        }
    }

    /// A peer listed twice is named where it is written again, and of a list's faults the
    /// first in its order is reported, of whichever kind.
    #[test]
    fn a_peer_list_reports_its_first_fault_a_repeat_where_it_is_written_again() {
        let rule = |peers: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 1\npeers = [{peers}]\n"
            )
        };
        let err = check(&rule(r#""192.0.2.1", "192.0.2.2", "192.0.2.2", "192.0.2.1""#)).unwrap_err();
        assert!(err.ends_with(":36: peer 192.0.2.2 is listed twice"), "{err}");
        let err = check(&rule(r#""192.0.2.1", "192.0.2.1", "2001:db8::1""#)).unwrap_err();
        assert!(err.ends_with(":23: peer 192.0.2.1 is listed twice"), "{err}");
        let err = check(&rule(r#""192.0.2.1", "2001:db8::1", "192.0.2.1""#)).unwrap_err();
        assert!(err.contains(":23: 2001:db8::1 is IPv6"), "{err}");
        let err = check(&rule(r#""192.0.2.1", "a.example", "a.example.", "192.0.2.1""#)).unwrap_err();
        assert!(err.ends_with(":36: peer a.example is listed twice"), "{err}");
        let err = check(&rule(r#""192.0.2.1", "a.example", "192.0.2.1", "a.example""#)).unwrap_err();
        assert!(err.ends_with(":36: peer 192.0.2.1 is listed twice"), "{err}");
        let peers = (0..1000).map(|i| format!("\"10.0.{}.{}\"", i / 250, i % 250 + 1)).collect::<Vec<_>>();
        assert_eq!(check(&rule(&peers.join(", "))).map(|p| p.rules[0].peers.len()), Ok(1000));
    }

    #[test]
    fn related_is_for_icmp_errors_only() {
        let rule = |proto: &str, kind: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"{proto}\"]\n{kind}\npeers = \"any\"\nrelated = true\n"
            )
        };
        assert!(check(&rule("icmp", "icmp_type = \"destination-unreachable\"")).unwrap().rules[0].related);
        assert!(check(&rule("icmp", "icmp_type = 11")).unwrap().rules[0].related);
        let err = check(&rule("icmp", "icmp_type = \"echo-request\"")).unwrap_err();
        assert!(err.ends_with("related applies to ICMP error rules (destination-unreachable, time-exceeded, parameter-problem) of protocol icmp alone"), "{err}");
        assert!(check(&rule("tcp", "port = 1")).unwrap_err().contains("related applies to ICMP error rules"));
    }

    #[test]
    fn an_ipv6_peer_needs_an_icmp_type_icmpv6_has() {
        let rule = |kind: &str| {
            format!(
                "{HOST6}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"icmp\"]\nicmp_type = {kind}\npeers = [\"2001:db8:1::7\"]\n"
            )
        };
        assert!(check(&rule("\"time-exceeded\"")).is_ok());
        let err = check(&rule("5")).unwrap_err();
        assert!(err.contains("2001:db8:1::7 is IPv6, and ICMP type 5 has no ICMPv6 equivalent"), "{err}");
        assert_eq!(Service::Icmp { kind: 8 }.key_for(true), Some((PROTO_ICMPV6, 128)));
        assert_eq!(Service::Icmp { kind: 5 }.key_for(false), Some((PROTO_ICMP, 5)));
        assert_eq!(Service::Port { protocol: PROTO_TCP, port: 22 }.key_for(true), Some((PROTO_TCP, 22)));
    }

    #[test]
    fn a_trap_is_an_inbound_rule_that_admits_nothing() {
        let rule = |direction: &str, more: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"scan-trap\"\ndirection = \"{direction}\"\nprotocols = [\"tcp\"]\nport = 139\npeers = \"any\"\n{more}trap = \"1d\"\n"
            )
        };
        assert_eq!(check(&rule("in", "")).unwrap().rules[0].trap, Some(Duration::from_secs(86_400)));
        assert_eq!(
            check(&rule("in", "log = true\n")).unwrap().rules[0].trap,
            Some(Duration::from_secs(86_400))
        );
        // Misuses, each where it is written.
        assert_eq!(
            check(&rule("out", "")).unwrap_err(),
            "p.toml:10:8: trap applies to rules with direction = \"in\": it blocks the sources of what comes in"
        );
        for more in ["limit = \"1/sec\"\n", "per_source = { connections = 1 }\n"] {
            assert_eq!(
                check(&rule("in", more)).unwrap_err(),
                "p.toml:11:8: a trap admits nothing: it takes no limit, per_source or related"
            );
        }
        assert_eq!(
            check(&rule("in", "").replace("\"1d\"", "\"0s\"")).unwrap_err(),
            "p.toml:10:8: bad trap \"0s\": expected a number and s, m, h or d, as \"1d\""
        );
    }

    #[test]
    fn per_source_connections_read_as_connlimit_writes_them() {
        let rule = |per_source: &str, more: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"db\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 3306\npeers = \"any\"\n{more}per_source = {per_source}\n"
            )
        };
        // `--connlimit-above 4`: four at once, alone or beside a rate.
        let alone = check(&rule("{ connections = 4 }", "")).unwrap().rules[0].per_source.unwrap();
        assert_eq!((alone.connections, alone.limit, alone.block), (Some(4), None, None));
        let both = check(&rule(r#"{ connections = 2, limit = "6/30s", prefix = 24 }"#, "")).unwrap();
        let both = both.rules[0].per_source.unwrap();
        assert_eq!((both.connections, both.limit.map(|l| l.count), both.prefix), (Some(2), Some(6), 24));
        assert_eq!(
            check(&rule("{ connections = 16 }", "")).unwrap().rules[0].per_source.unwrap().connections,
            Some(16)
        );
        // Misuses, each where it is written.
        for (bad, col) in [("0", 30), ("17", 30), ("-1", 30)] {
            assert_eq!(
                check(&rule(&format!("{{ connections = {bad} }}"), "")).unwrap_err(),
                format!("p.toml:10:{col}: bad connections {bad}: 1 to 16")
            );
        }
        assert_eq!(
            check(&rule(r#"{ connections = 4, block = "10m" }"#, "")).unwrap_err(),
            "p.toml:10:41: per_source.block is the rate's: it needs per_source.limit"
        );
        assert_eq!(
            check(&rule("{ connections = 4, burst = 3 }", "")).unwrap_err(),
            "p.toml:10:41: per_source.burst is the rate's: it needs per_source.limit"
        );
        assert_eq!(
            check(&rule("{ connections = 4 }", "returns = false\n")).unwrap_err(),
            "p.toml:11:30: per_source.connections counts the flows a rule tracks, and a rule with returns = false tracks none"
        );
    }

    #[test]
    fn per_source_limits_read_as_ufw_and_hashlimit_write_them() {
        let rule = |direction: &str, per_source: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"ssh\"\ndirection = \"{direction}\"\nprotocols = [\"tcp\"]\nport = 22\npeers = \"any\"\nper_source = {per_source}\n"
            )
        };
        let p = check(&rule("in", r#"{ limit = "6/30s", block = "10m" }"#)).unwrap();
        let per_source = p.rules[0].per_source.unwrap();
        let limit = per_source.limit.unwrap();
        assert_eq!((limit.interval, limit.burst), (Duration::from_secs(5), 6));
        assert_eq!(limit.unit.to_string(), "30s");
        assert_eq!(per_source.block, Some(Duration::from_secs(600)));
        assert_eq!(per_source.connections, None);
        let p = check(&rule("in", r#"{ limit = "3/min", burst = 5 }"#)).unwrap();
        assert_eq!(p.rules[0].per_source.unwrap().limit.unwrap().burst, 5);
        assert_eq!(p.rules[0].per_source.unwrap().block, None);
        // As a table of its own, too.
        let table = rule("in", "{}").replace("per_source = {}\n", "[rule.per_source]\nlimit = \"6/30s\"\n");
        assert_eq!(check(&table).unwrap().rules[0].per_source.unwrap().limit.unwrap().count, 6);
        assert_eq!(parse_limit("6/30s").map(|(c, per, _)| (c, per)), Some((6, Per::Window(30))));
        assert_eq!(parse_limit("10/5m").unwrap().2, Duration::from_secs(30));
        assert!(parse_limit("6/30x").is_none());
        // Misuses, each where it is written.
        assert_eq!(
            check(&rule("out", r#"{ limit = "6/30s" }"#)).unwrap_err(),
            "p.toml:10:14: per_source applies to rules with direction = \"in\": the source of an outbound rule's flows is this host"
        );
        assert_eq!(
            check(&rule("in", r#"{ block = "10m" }"#)).unwrap_err(),
            "p.toml:10:14: rule \"ssh\" needs per_source.limit, as limit = \"6/30s\", or per_source.connections"
        );
        assert_eq!(
            check(&rule("in", r#"{ limit = "6 per 30s" }"#)).unwrap_err(),
            "p.toml:10:24: bad limit \"6 per 30s\": expected N/sec, N/min, N/hour, N/day, or N in a window, as \"6/30s\""
        );
        assert_eq!(
            check(&rule("in", r#"{ limit = "6/30s", block = "ten" }"#)).unwrap_err(),
            "p.toml:10:41: bad block \"ten\": expected a number and s, m, h or d, as \"10m\""
        );
        assert!(
            check(&rule("in", r#"{ limit = "6/30s", burst = 0 }"#))
                .unwrap_err()
                .ends_with("burst must be between 1 and 10000")
        );
        assert!(
            check(&rule("in", r#"{ limit = "6/30s", rate = 1 }"#))
                .unwrap_err()
                .contains("unknown field `rate`")
        );
        // A source is an address's prefix: /32 and /64 unless written, as hashlimit's srcmask.
        let p = check(&rule("in", r#"{ limit = "6/30s" }"#)).unwrap();
        assert_eq!(p.rules[0].per_source.map(|s| (s.prefix, s.prefix6)), Some((32, 64)));
        let p = check(&rule("in", r#"{ limit = "6/30s", prefix = 24, prefix6 = 128 }"#)).unwrap();
        assert_eq!(p.rules[0].per_source.map(|s| (s.prefix, s.prefix6)), Some((24, 128)));
        assert_eq!(
            check(&rule("in", r#"{ limit = "6/30s", prefix = 33 }"#)).unwrap_err(),
            "p.toml:10:42: bad prefix length 33: 0 to 32"
        );
        assert!(
            check(&rule("in", r#"{ limit = "6/30s", prefix6 = 129 }"#))
                .unwrap_err()
                .ends_with("bad prefix length 129: 0 to 128")
        );
    }

    #[test]
    fn log_and_returns_are_booleans_off_and_on_by_default() {
        let rule = |log: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = \"any\"\n{log}"
            )
        };
        assert!(!check(&rule("")).unwrap().rules[0].log);
        assert!(check(&rule("log = true\n")).unwrap().rules[0].log);
        assert!(check(&rule("")).unwrap().rules[0].returns);
        assert!(!check(&rule("returns = false\n")).unwrap().rules[0].returns);
        assert_eq!(
            check(&rule("returns = \"no\"\n")).unwrap_err(),
            "p.toml:10:11: invalid type: string \"no\", expected a boolean"
        );
        assert_eq!(
            check(&rule("log = \"SSH: \"\n")).unwrap_err(),
            "p.toml:10:7: invalid type: string \"SSH: \", expected a boolean"
        );
    }

    #[test]
    fn uids_read_as_iptables_owner_writes_them() {
        let rule = |direction: &str, uids: &str| {
            format!(
                "{HOST}[[rule]]\nname = \"backup\"\ndirection = \"{direction}\"\nprotocols = [\"tcp\"]\nport = 873\npeers = \"any\"\nuids = {uids}\n"
            )
        };
        let p = check(&rule("out", r#"[1000, "root", "2000-2999", 1001, "2500-3000"]"#)).unwrap();
        assert_eq!(p.rules[0].uids, vec![(0, 0), (1000, 1001), (2000, 3000)]);
        // A name with a dash is a name (Debian's `systemd-network` and the like).
        let dashed = std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .filter_map(|line| line.split(':').next().map(str::to_owned))
            .find(|name| name.contains('-'));
        if let Some(name) = dashed {
            assert!(check(&rule("out", &format!("[{name:?}]"))).is_ok(), "{name}");
        }
        assert!(check(&rule("out", "[]").replace("uids = []\n", "")).unwrap().rules[0].uids.is_empty());
        // Misuses, each where it is written.
        assert_eq!(
            check(&rule("in", "[1000]")).unwrap_err(),
            "p.toml:10:8: uids applies to rules with direction = \"out\": only this host's packets have a sending socket"
        );
        assert_eq!(
            check(&rule("out", "[]")).unwrap_err(),
            "p.toml:10:8: uids is empty: leave it out to admit every user's packets"
        );
        assert_eq!(
            check(&rule("out", r#"[1000, "no-such-user-here"]"#)).unwrap_err(),
            "p.toml:10:15: no user \"no-such-user-here\" on this host: name one it has, or write its uid"
        );
        assert_eq!(
            check(&rule("out", r#"["2000-1000"]"#)).unwrap_err(),
            "p.toml:10:9: bad uid range \"2000-1000\": write FIRST-LAST, as \"1000-1999\""
        );
        assert_eq!(
            check(&rule("out", "[-1]")).unwrap_err(),
            "p.toml:10:9: bad uid -1: a uid is 0 to 4294967294"
        );
        assert!(
            check(&rule("out", r#"["60000-70000"]"#))
                .unwrap_err()
                .ends_with("uid 65534 (nobody) is what the kernel reports for packets of no socket: the filter cannot tell them apart; run the service as another user")
        );
        assert!(check(&rule("out", r#"["0-70000"]"#)).unwrap_err().contains("uid 65534 (nobody)"),);
        let wide = rule("out", r#"["100000-200000"]"#);
        assert_eq!(
            check(&wide).unwrap_err(),
            "p.toml:4:1: too many uids: the rules' uids and ranges hold at most 65536 in all"
        );
        assert!(check(&rule("out", "1000")).unwrap_err().ends_with("expected an array"));
        assert!(
            check(&rule("out", "[1.5]"))
                .unwrap_err()
                .ends_with("expected a uid, a user name, or a range of uids as \"1000-1999\"")
        );
    }

    #[test]
    fn two_rules_may_not_claim_one_port_of_a_peer_whether_single_or_in_a_range() {
        let rule = |n: &str, ports: &str, peers: &str| {
            format!(
                "[[rule]]\nname = \"{n}\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\n{ports}\npeers = {peers}\n"
            )
        };
        let high = rule("high-ports", "port = \"1024-65535\"", "[\"192.0.2.1\"]");
        let err = check(&format!("{HOST}{high}{}", rule("web", "ports = [80, 8080]", "[\"192.0.2.1\"]")))
            .unwrap_err();
        assert!(
            err.ends_with(
                "peer 192.0.2.1 for tcp port 8080 in is already in rule \"high-ports\" (1024-65535)"
            ),
            "{err}"
        );
        let err = check(&format!("{HOST}{}{high}", rule("web", "ports = [80, 8080]", "[\"192.0.2.1\"]")))
            .unwrap_err();
        assert!(err.ends_with("peer 192.0.2.1 for tcp port 8080 in is already in rule \"web\""), "{err}");
        let err = check(&format!("{HOST}{high}{}", rule("x", "port = \"1000:2000\"", "[\"192.0.2.1\"]")))
            .unwrap_err();
        assert!(
            err.ends_with("for tcp ports 1024-2000 in is already in rule \"high-ports\" (1024-65535)"),
            "{err}"
        );
        // Other peers, other protocols, other directions, ports beside the range: no conflict.
        assert!(
            check(&format!("{HOST}{high}{}", rule("x", "ports = [1023, 8080]", "[\"192.0.2.2\"]"))).is_ok()
        );
        assert!(check(&format!("{HOST}{high}{}", rule("x", "port = 1023", "[\"192.0.2.1\"]"))).is_ok());
        let udp = rule("x", "port = 8080", "[\"192.0.2.1\"]").replace("tcp", "udp");
        assert!(check(&format!("{HOST}{high}{udp}")).is_ok());
        // Within one rule, overlaps merge.
        let p =
            check(&format!("{HOST}{}", rule("x", "ports = [8080, \"8000-9000\", \"8500:9500\"]", "\"any\"")))
                .unwrap();
        assert_eq!(
            p.rules[0].services,
            vec![Service::Range { protocol: PROTO_TCP, first: 8000, last: 9500 }]
        );
    }

    #[test]
    fn limits_follow_iptables() {
        let p = check(&format!(
            "{HOST}[[rule]]\nname = \"ping\"\ndirection = \"in\"\nprotocols = [\"icmp\"]\nicmp_type = \"echo-request\"\npeers = \"any\"\nlimit = \"1/sec\"\n"
        ))
        .unwrap();
        let limit = p.rules[0].limit.unwrap();
        assert_eq!((limit.interval, limit.burst), (Duration::from_secs(1), 5));
        assert_eq!(parse_limit("3/min").unwrap().2, Duration::from_secs(20));
        assert!(parse_limit("0/sec").is_none());
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(432_000)));
        assert_eq!(parse_duration("5"), None);
    }
}
