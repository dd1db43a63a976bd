//! `[antispoof]`: the sources and destinations dropped before any rule; the seed's lists
//! when the policy writes none.
use std::{collections::HashSet, net::IpAddr};

use firewall_common::MAX_ANTISPOOF;
use serde_spanned::Spanned;

use super::{Located, Prefix, fail, host::Host, needs_address6, raw::RawAntispoof};

/// The seed's anti-spoof source list (RFC 1918, link-local, multicast, class E, zero net, 1.1.1.1).
pub const DEFAULT_ANTISPOOF_SOURCES: [&str; 8] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/5",
    "0.0.0.0/8",
    "1.1.1.1",
];
/// The seed's anti-spoof destination list.
pub const DEFAULT_ANTISPOOF_DESTINATIONS: [&str; 6] =
    ["224.0.0.0/4", "240.0.0.0/5", "0.0.0.0/8", "1.1.1.1", "239.255.255.0/24", "255.255.255.255"];
/// The same ideas for IPv6, added to the defaults when the policy has an `address6`: the
/// unspecified and loopback addresses, unique-local (IPv6's RFC 1918), link-local and
/// multicast sources. Neighbour discovery, which comes from link-local and unspecified
/// addresses, passes before these lists.
pub const DEFAULT_ANTISPOOF_SOURCES6: [&str; 5] = ["::", "::1", "fc00::/7", "fe80::/10", "ff00::/8"];
/// Multicast destinations (neighbour and listener discovery pass before the list).
pub const DEFAULT_ANTISPOOF_DESTINATIONS6: [&str; 1] = ["ff00::/8"];

/// The two lists, validated.
pub(super) struct AntispoofLists {
    pub(super) sources: Vec<Prefix>,
    pub(super) destinations: Vec<Prefix>,
}

/// Checks the sources' entries, then the destinations', then that neither of the host's
/// addresses is a destination, then the two lists' size together.
pub(super) fn validate_antispoof(raw: Option<RawAntispoof>, host: &Host) -> Result<AntispoofLists, Located> {
    let (sources, destinations) = match raw {
        Some(a) => (a.sources, a.destinations),
        None => (None, None),
    };
    let ipv6 = !host.addresses6.is_empty();
    // Where each list's entries are written, to place an error about their number.
    let entry_places = |list: &Option<Vec<Spanned<String>>>| -> Vec<usize> {
        list.as_ref().map(|l| l.iter().map(|e| e.span().start).collect()).unwrap_or_default()
    };
    let (source_places, destination_places) = (entry_places(&sources), entry_places(&destinations));
    let lists = AntispoofLists {
        sources: prefix_list(
            sources,
            &DEFAULT_ANTISPOOF_SOURCES,
            &DEFAULT_ANTISPOOF_SOURCES6,
            ipv6,
            "sources",
        )?,
        destinations: prefix_list(
            destinations,
            &DEFAULT_ANTISPOOF_DESTINATIONS,
            &DEFAULT_ANTISPOOF_DESTINATIONS6,
            ipv6,
            "destinations",
        )?,
    };
    host_outside_destinations(host, &lists.destinations)?;
    within_the_limit(&lists, &source_places, &destination_places)?;
    Ok(lists)
}

/// One list as written, or the defaults (with IPv6's when the policy has `address6`).
fn prefix_list(
    list: Option<Vec<Spanned<String>>>,
    default: &[&str],
    default6: &[&str],
    ipv6: bool,
    what: &str,
) -> Result<Vec<Prefix>, Located> {
    let Some(list) = list else {
        let defaults = default.iter().chain(if ipv6 { default6 } else { &[] });
        return Ok(defaults.map(|p| Prefix::parse(p).expect("built-in list")).collect());
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let prefix = Prefix::parse(entry.get_ref()).map_err(|e| (entry.span().start, e.to_string()))?;
        if prefix.is_v6() && !ipv6 {
            return fail(entry.span().start, needs_address6(&prefix));
        }
        if !seen.insert(prefix) {
            return fail(entry.span().start, format!("{prefix} is twice in antispoof {what}"));
        }
        out.push(prefix);
    }
    Ok(out)
}

/// A destination that holds one of the host's addresses would drop everything sent to it.
fn host_outside_destinations(host: &Host, destinations: &[Prefix]) -> Result<(), Located> {
    let v4 = host.addresses.iter().map(|&(address, at)| ("address", IpAddr::V4(address), at));
    let v6 = host.addresses6.iter().map(|&(address, at)| ("address6", IpAddr::V6(address), at));
    for (key, address, at) in v4.chain(v6) {
        if let Some(p) = destinations.iter().find(|p| p.contains(address)) {
            return fail(
                at,
                format!(
                    "{key} {address} is in antispoof destination {p}: every packet to it would be dropped"
                ),
            );
        }
    }
    Ok(())
}

/// The kernel's anti-spoof maps hold `MAX_ANTISPOOF` entries, both lists together.
fn within_the_limit(
    lists: &AntispoofLists,
    source_places: &[usize],
    destination_places: &[usize],
) -> Result<(), Located> {
    if lists.sources.len() + lists.destinations.len() <= MAX_ANTISPOOF as usize {
        return Ok(());
    }
    // The first entry over the limit, counting the sources first; a default list has no
    // place of its own, so the other list's entry is named.
    let over = MAX_ANTISPOOF as usize;
    let at = source_places
        .get(over)
        .or_else(|| destination_places.get(over.saturating_sub(lists.sources.len())))
        .or(destination_places.last())
        .or(source_places.last())
        .copied()
        .unwrap_or(0);
    fail(
        at,
        format!("too many anti-spoof entries: at most {MAX_ANTISPOOF}, sources and destinations together"),
    )
}
