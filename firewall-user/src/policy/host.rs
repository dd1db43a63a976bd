//! `[host]`: the host's own addresses, which every packet in must be to and every packet
//! out from, the interface the filter attaches to, and whether its DHCP client's exchange
//! passes.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_spanned::Spanned;

use super::{Located, fail, raw::RawHost};

/// `[host]`, validated. The addresses keep their places: the anti-spoof destinations are
/// checked against them next, and an error there points at the address.
pub(super) struct Host {
    pub(super) interface: Option<String>,
    pub(super) address: Ipv4Addr,
    pub(super) address_at: usize,
    /// `address6` and where it is written.
    pub(super) address6: Option<(Ipv6Addr, usize)>,
    /// `dhcp`: the DHCP client's exchange passes (default true).
    pub(super) dhcp: bool,
}

/// Checks `address`, then `address6`, then `interface`; `host_at` is where `[host]` is
/// written, the place of a missing `address`.
pub(super) fn validate_host(raw: RawHost, host_at: usize) -> Result<Host, Located> {
    let Some(address) = raw.address else {
        return fail(host_at, "[host] needs address, the host's IPv4 address (OURIP)");
    };
    let address_at = address.span().start;
    let address = ipv4_address(address.get_ref(), address_at)?;
    let address6 = match raw.address6 {
        None => None,
        Some(text) => {
            let at = text.span().start;
            Some((ipv6_address(text.get_ref(), at)?, at))
        }
    };
    let interface = raw.interface.map(interface_name).transpose()?;
    // A boolean or nothing: TOML's parser has placed any other value's error already.
    let dhcp = raw.dhcp.unwrap_or(true);
    Ok(Host { interface, address, address_at, address6, dhcp })
}

/// `address`: a unicast IPv4 address, the seed's OURIP.
fn ipv4_address(text: &str, at: usize) -> Result<Ipv4Addr, Located> {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(addr)) if !addr.is_unspecified() && !addr.is_broadcast() && !addr.is_multicast() => {
            Ok(addr)
        }
        Ok(IpAddr::V4(_)) => fail(at, format!("address {text:?} is not a unicast address")),
        Ok(IpAddr::V6(_)) => fail(at, "address is the host's IPv4 address; put its IPv6 one in address6"),
        Err(_) => fail(at, format!("bad address {text:?}")),
    }
}

/// `address6`: a routable unicast IPv6 address, outside the IPv4-mapped range that the
/// maps give IPv4.
fn ipv6_address(text: &str, at: usize) -> Result<Ipv6Addr, Located> {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V6(addr))
            if addr.is_unspecified()
                || addr.is_loopback()
                || addr.is_multicast()
                || addr.is_unicast_link_local() =>
        {
            fail(
                at,
                format!(
                    "address6 {addr} is not a routable unicast address (link-local traffic that IPv6 needs passes anyway)"
                ),
            )
        }
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
