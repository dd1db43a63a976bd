//! `[host]`: the host's own addresses, which every packet in must be to and every packet
//! out from, the interface the filter attaches to, and whether its DHCP client's exchange
//! passes.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use firewall_common::MAX_HOST_ADDRESSES;
use serde_spanned::Spanned;

use super::{
    Located, fail,
    raw::{RawAddresses, RawHost},
};

/// `[host]`, validated. The addresses keep their places: the anti-spoof destinations are
/// checked against them next, and an error there points at the address.
pub(super) struct Host {
    pub(super) interface: Option<String>,
    /// Every `address`, in the order written (one at least), each with where it is written.
    pub(super) addresses: Vec<(Ipv4Addr, usize)>,
    /// Every `address6` (none without it), likewise.
    pub(super) addresses6: Vec<(Ipv6Addr, usize)>,
    /// `dhcp`: the DHCP client's exchange passes (default true).
    pub(super) dhcp: bool,
    /// `follow_addresses`: the interface's own addresses are the host's too (default false).
    pub(super) follow_addresses: bool,
}

/// Checks `address`, then `address6`, then `interface`; `host_at` is where `[host]` is
/// written, the place of a missing `address`.
pub(super) fn validate_host(raw: RawHost, host_at: usize) -> Result<Host, Located> {
    let Some(address) = raw.address else {
        return fail(host_at, "[host] needs address, the host's IPv4 address (OURIP)");
    };
    let addresses = address_list(address, "address", "name at least one IPv4 address (OURIP)", ipv4_address)?;
    let addresses6 = match raw.address6 {
        None => Vec::new(),
        Some(list) => address_list(list, "address6", "leave it out, or name an IPv6 address", ipv6_address)?,
    };
    within_the_limit(&addresses, &addresses6)?;
    let interface = raw.interface.map(interface_name).transpose()?;
    // A boolean or nothing: TOML's parser has placed any other value's error already.
    let dhcp = raw.dhcp.unwrap_or(true);
    let follow_addresses = raw.follow_addresses.unwrap_or(false);
    Ok(Host { interface, addresses, addresses6, dhcp, follow_addresses })
}

/// `address` or `address6` (`key`): one address or a non-empty list of them, each checked
/// by `one` as a lone address always was, none twice.
fn address_list<A: Copy + Eq + std::hash::Hash + std::fmt::Display>(
    raw: Spanned<RawAddresses>,
    key: &str,
    need: &str,
    one: fn(&str, usize) -> Result<A, Located>,
) -> Result<Vec<(A, usize)>, Located> {
    let at = raw.span().start;
    let entries = raw.into_inner().entries(at);
    if entries.is_empty() {
        return fail(at, format!("{key} is an empty list: {need}"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (text, at) in entries {
        let addr = one(&text, at)?;
        if !seen.insert(addr) {
            return fail(at, format!("{addr} is twice in {key}"));
        }
        out.push((addr, at));
    }
    Ok(out)
}

/// The kernel's map of the host's addresses holds `MAX_HOST_ADDRESSES`, both families
/// together; the error points at the first over.
fn within_the_limit(
    addresses: &[(Ipv4Addr, usize)],
    addresses6: &[(Ipv6Addr, usize)],
) -> Result<(), Located> {
    let mut places = addresses.iter().map(|(_, at)| *at).chain(addresses6.iter().map(|(_, at)| *at));
    match places.nth(MAX_HOST_ADDRESSES as usize) {
        None => Ok(()),
        Some(at) => fail(
            at,
            format!("too many host addresses: at most {MAX_HOST_ADDRESSES}, address and address6 together"),
        ),
    }
}

/// Whether `addr` is of a kind `address` or `address6` accepts: IPv4 unicast; IPv6
/// routable unicast outside the range the maps give IPv4. The addresses a policy that
/// follows its interface takes from it are held to the same.
pub fn may_be_host_address(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => unicast(v4),
        IpAddr::V6(v6) => routable(v6) && v6.to_ipv4_mapped().is_none(),
    }
}

fn unicast(addr: Ipv4Addr) -> bool {
    !addr.is_unspecified() && !addr.is_broadcast() && !addr.is_multicast()
}

fn routable(addr: Ipv6Addr) -> bool {
    !(addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() || addr.is_unicast_link_local())
}

/// `address`: a unicast IPv4 address, the seed's OURIP.
fn ipv4_address(text: &str, at: usize) -> Result<Ipv4Addr, Located> {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(addr)) if unicast(addr) => Ok(addr),
        Ok(IpAddr::V4(_)) => fail(at, format!("address {text:?} is not a unicast address")),
        Ok(IpAddr::V6(_)) => fail(at, "address is the host's IPv4 address; put its IPv6 one in address6"),
        Err(_) => fail(at, format!("bad address {text:?}")),
    }
}

/// `address6`: a routable unicast IPv6 address, outside the IPv4-mapped range that the
/// maps give IPv4.
fn ipv6_address(text: &str, at: usize) -> Result<Ipv6Addr, Located> {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V6(addr)) if !routable(addr) => fail(
            at,
            format!(
                "address6 {addr} is not a routable unicast address (link-local traffic that IPv6 needs passes anyway)"
            ),
        ),
        Ok(IpAddr::V6(addr)) if addr.to_ipv4_mapped().is_some() => {
            fail(at, format!("address6 {addr} is an IPv4-mapped address: write it as address"))
        }
        Ok(IpAddr::V6(addr)) => Ok(addr),
        Ok(IpAddr::V4(_)) => fail(at, "address6 is the host's IPv6 address; its IPv4 one goes in address"),
        Err(_) => fail(at, format!("bad address6 {text:?}")),
    }
}

/// `interface`: a name the kernel would take.
fn interface_name(iface: Spanned<String>) -> Result<String, Located> {
    let name = iface.get_ref();
    // What the kernel's dev_valid_name refuses: `up` would only fail later.
    if name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return fail(
            iface.span().start,
            format!("bad interface name {name:?}: 1 to 15 bytes, not . or .., no /, : or spaces"),
        );
    }
    Ok(iface.into_inner())
}

#[cfg(test)]
mod tests {
    use crate::policy::tests::check;

    #[test]
    fn address6_is_a_routable_unicast_address() {
        let host = |a: &str| format!("[host]\naddress = \"198.51.100.1\"\naddress6 = \"{a}\"\n");
        for bad in ["fe80::1", "::", "::1", "ff02::1"] {
            let err = check(&host(bad)).unwrap_err();
            assert!(err.contains("is not a routable unicast address"), "{bad}: {err}");
        }
        assert!(check(&host("198.51.100.2")).unwrap_err().contains("its IPv4 one goes in address"));
        assert!(check(&host("::ffff:198.51.100.2")).unwrap_err().contains("IPv4-mapped"));
        assert!(check(&host("2001:db8::zz")).unwrap_err().ends_with("bad address6 \"2001:db8::zz\""));
    }

    #[test]
    fn addresses_are_one_or_a_list_of_each_family() {
        let p = check("[host]\naddress = \"198.51.100.1\"\n").unwrap();
        assert_eq!((p.addresses().len(), p.addresses6().len()), (1, 0));
        let p = check(
            "[host]\naddress = [\"198.51.100.1\", \"198.51.100.2\"]\naddress6 = [\"2001:db8::1\", \"2001:db8::2\", \"2001:db8:1::1\"]\n",
        )
        .unwrap();
        assert_eq!(p.address, "198.51.100.1".parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(p.more_addresses, ["198.51.100.2".parse::<std::net::Ipv4Addr>().unwrap()]);
        assert_eq!(p.address6, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(p.addresses6().len(), 3);
        assert!(p.is_host_address("198.51.100.2".parse().unwrap()));
        assert!(p.is_host_address("2001:db8:1::1".parse().unwrap()));
        assert!(!p.is_host_address("198.51.100.3".parse().unwrap()));
        // A list of one is the string.
        assert_eq!(
            check("[host]\naddress = [\"198.51.100.1\"]\n").unwrap(),
            check("[host]\naddress = \"198.51.100.1\"\n").unwrap()
        );
    }

    #[test]
    fn following_the_interface_s_addresses_is_asked_for() {
        let host = "[host]\naddress = \"198.51.100.1\"\n";
        assert!(!check(host).unwrap().follow_addresses, "off by default");
        assert!(check(&format!("{host}follow_addresses = true\n")).unwrap().follow_addresses);
        let err = check(&format!("{host}follow_addresses = \"yes\"\n")).unwrap_err();
        assert!(err.starts_with("p.toml:3:20: "), "{err}");
        // The policy's own addresses are the host's whatever the interface has: the
        // loopback interface's, which no policy may name, add nothing.
        let policy = check(&format!("{host}follow_addresses = true\n")).unwrap();
        let on_lo = crate::kernel::filter::in_force_on(policy.clone(), "lo");
        assert_eq!((on_lo.addresses(), on_lo.addresses6()), (policy.addresses(), policy.addresses6()));
    }

    #[test]
    fn each_listed_address_is_checked_where_it_is_written() {
        let host = |v4: &str, v6: &str| format!("[host]\naddress = {v4}\naddress6 = {v6}\n");
        let six = "\"2001:db8::1\"";
        assert_eq!(
            check(&host("[]", six)).unwrap_err(),
            "p.toml:2:11: address is an empty list: name at least one IPv4 address (OURIP)"
        );
        assert_eq!(
            check(&host("\"198.51.100.1\"", "[]")).unwrap_err(),
            "p.toml:3:12: address6 is an empty list: leave it out, or name an IPv6 address"
        );
        assert_eq!(
            check(&host("[\"198.51.100.1\", \"198.51.100.1\"]", six)).unwrap_err(),
            "p.toml:2:28: 198.51.100.1 is twice in address"
        );
        assert_eq!(
            check(&host("\"198.51.100.1\"", "[\"2001:db8::1\", \"2001:db8:0::1\"]")).unwrap_err(),
            "p.toml:3:28: 2001:db8::1 is twice in address6"
        );
        // The faults a lone address has, with the same words, at the entry.
        assert_eq!(
            check(&host("[\"198.51.100.1\", \"198.51.100.256\"]", six)).unwrap_err(),
            "p.toml:2:28: bad address \"198.51.100.256\""
        );
        assert_eq!(
            check(&host("[\"198.51.100.1\", \"2001:db8::2\"]", six)).unwrap_err(),
            "p.toml:2:28: address is the host's IPv4 address; put its IPv6 one in address6"
        );
        assert_eq!(
            check(&host("\"198.51.100.1\"", "[\"2001:db8::1\", \"fe80::1\"]")).unwrap_err(),
            "p.toml:3:28: address6 fe80::1 is not a routable unicast address (link-local traffic that IPv6 needs passes anyway)"
        );
        // Every address is kept out of the anti-spoof destinations.
        assert_eq!(
            check(&host("[\"198.51.100.1\", \"1.1.1.1\"]", six)).unwrap_err(),
            "p.toml:2:28: address 1.1.1.1 is in antispoof destination 1.1.1.1: every packet to it would be dropped"
        );
        let err = check(&format!(
            "{}[antispoof]\ndestinations = [\"2001:db8:1::/48\"]\n",
            host("\"198.51.100.1\"", "[\"2001:db8::1\", \"2001:db8:1::1\"]")
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "p.toml:3:28: address6 2001:db8:1::1 is in antispoof destination 2001:db8:1::/48: every packet to it would be dropped"
        );
        // A wrong type.
        let err = check(&host("5", six)).unwrap_err();
        assert_eq!(err, "p.toml:2:11: invalid type: integer `5`, expected an address or a list of addresses");
    }

    #[test]
    fn at_most_so_many_host_addresses() {
        let many: Vec<String> =
            (0..=256).map(|i| format!("\"198.51.{}.{}\"", 100 + i / 250, 1 + i % 250)).collect();
        let err = check(&format!("[host]\naddress = [\n{}\n]\n", many.join(",\n"))).unwrap_err();
        assert_eq!(err, "p.toml:259:1: too many host addresses: at most 256, address and address6 together");
    }

    #[test]
    fn dhcp_is_on_unless_turned_off_and_a_boolean() {
        let host = |line: &str| format!("[host]\naddress = \"198.51.100.1\"\n{line}");
        assert!(check(&host("")).unwrap().dhcp);
        assert!(check(&host("dhcp = true\n")).unwrap().dhcp);
        assert!(!check(&host("dhcp = false\n")).unwrap().dhcp);
        let err = check(&host("dhcp = \"no\"\n")).unwrap_err();
        assert_eq!(err, "p.toml:3:8: invalid type: string \"no\", expected a boolean");
        let err = check(&host("dhcp = 0\n")).unwrap_err();
        assert!(err.starts_with("p.toml:3:8: invalid type: integer `0`, expected a boolean"), "{err}");
    }
}
