//! Addresses and prefixes: as the policy writes them, and as the maps hold them (IPv4
//! mapped into IPv6's space, see firewall_common::Addr).
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use firewall_common::{Addr, V4_MAPPED_BITS, v4_mapped};

/// An address as the maps hold it: IPv6 as it is, IPv4 mapped (see firewall_common::Addr).
pub fn to_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address a map holds, as the policy writes it.
pub fn from_addr(addr: &Addr) -> IpAddr {
    let v6 = Ipv6Addr::from(*addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// IPv4's range inside the maps' IPv6 address space: no IPv6 prefix may touch it.
const V4_MAPPED_RANGE: (u128, u8) = (0xffff_0000_0000, 96);

fn mask(bits: u32, len: u8) -> u128 {
    let len = u32::from(len);
    if len == 0 { 0 } else { u128::MAX << (128 - len) >> (128 - bits) }
}

/// An IPv4 or IPv6 prefix: the address with its host bits clear, and the prefix length
/// (up to 32 for IPv4, 128 for IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// Why a text is not a [`Prefix`]; each names the text as it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("bad address {0:?}")]
    BadAddress(String),
    #[error("bad prefix length in {text:?}: expected 0 to {bits}")]
    BadLength { text: String, bits: u8 },
    #[error("{text} has host bits set; did you mean {network}/{len}?")]
    HostBits { text: String, network: IpAddr, len: u8 },
    #[error("{text} is an IPv4-mapped address: write it as {v4}")]
    V4Mapped { text: String, v4: Ipv4Addr },
    #[error(
        "{0} overlaps the IPv4-mapped range ::ffff:0:0/96, which is IPv4's: write IPv4 addresses as IPv4"
    )]
    OverlapsV4Mapped(String),
}

impl Prefix {
    /// `peers = "any"`: anyone, of either family.
    pub const ANY: Prefix = Prefix { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), len: 0 };

    /// One address: a /32, or a /128.
    pub fn host(addr: IpAddr) -> Prefix {
        Prefix { addr, len: if addr.is_ipv4() { 32 } else { 128 } }
    }

    /// `198.51.100.7`, `198.51.100.0/24`, `2001:db8::/32`; host bits set is an error, not
    /// silently masked.
    pub fn parse(text: &str) -> Result<Prefix, PrefixError> {
        let (addr_text, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| PrefixError::BadAddress(text.to_owned()))?;
        let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => bits,
            // Digits only: Rust's parse would take "+8".
            Some(len) => Some(len)
                .filter(|len| !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|len| len.parse::<u8>().ok())
                .filter(|len| *len <= bits)
                .ok_or_else(|| PrefixError::BadLength { text: text.to_owned(), bits })?,
        };
        let value = Self::bits_of(addr);
        let mask = mask(u32::from(bits), len);
        if value & !mask != 0 {
            let network = Prefix::from_bits(addr.is_ipv6(), value & mask, len);
            return Err(PrefixError::HostBits { text: text.to_owned(), network: network.addr, len });
        }
        let prefix = Prefix { addr, len };
        if let IpAddr::V6(v6) = addr
            && prefix.overlaps_v4_mapped()
        {
            return Err(match v6.to_ipv4_mapped() {
                Some(v4) if len == 128 => PrefixError::V4Mapped { text: text.to_owned(), v4 },
                _ => PrefixError::OverlapsV4Mapped(text.to_owned()),
            });
        }
        Ok(prefix)
    }

    fn bits_of(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn from_bits(v6: bool, value: u128, len: u8) -> Prefix {
        let addr =
            if v6 { IpAddr::V6(Ipv6Addr::from(value)) } else { IpAddr::V4(Ipv4Addr::from(value as u32)) };
        Prefix { addr, len }
    }

    fn overlaps_v4_mapped(&self) -> bool {
        let (range, range_len) = V4_MAPPED_RANGE;
        let shorter = self.len.min(range_len);
        let m = mask(128, shorter);
        Self::bits_of(self.addr) & m == range & m
    }

    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        if addr.is_ipv6() != self.is_v6() {
            return false;
        }
        let bits = if self.is_v6() { 128 } else { 32 };
        Self::bits_of(addr) & mask(bits, self.len) == Self::bits_of(self.addr)
    }

    /// The prefix in the maps' address space: the mapped address and its length there.
    pub fn to_addr(&self) -> (Addr, u32) {
        let len = u32::from(self.len) + if self.is_v6() { 0 } else { V4_MAPPED_BITS };
        (to_addr(self.addr), len)
    }

    /// The prefix a map key of length `len` (in the maps' address space) stands for.
    pub fn from_addr(addr: &Addr, len: u32) -> Prefix {
        match from_addr(addr) {
            IpAddr::V4(v4) => Prefix { addr: IpAddr::V4(v4), len: len.saturating_sub(V4_MAPPED_BITS) as u8 },
            v6 => Prefix { addr: v6, len: len as u8 },
        }
    }

    fn is_single(&self) -> bool {
        self.len == if self.is_v6() { 128 } else { 32 }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() { write!(f, "{}", self.addr) } else { write!(f, "{}/{}", self.addr, self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::{HOST6, check, ssh_rule};

    #[test]
    fn the_ipv4_mapped_range_stays_ipv4s() {
        let err = check(&format!("{HOST6}{}", ssh_rule(r#"["::ffff:192.0.2.1"]"#))).unwrap_err();
        assert!(err.ends_with("::ffff:192.0.2.1 is an IPv4-mapped address: write it as 192.0.2.1"), "{err}");
        // A prefix that covers it would cover every IPv4 address in the maps.
        let err = check(&format!("{HOST6}[antispoof]\nsources = [\"::/8\"]\n")).unwrap_err();
        assert!(err.ends_with("::/8 overlaps the IPv4-mapped range ::ffff:0:0/96, which is IPv4's: write IPv4 addresses as IPv4"), "{err}");
        let err = check(&format!("{HOST6}{}", ssh_rule(r#"["::ffff:0:0/100"]"#))).unwrap_err();
        assert!(err.contains("overlaps the IPv4-mapped range"), "{err}");
        assert!(Prefix::parse("::/128").is_ok() && Prefix::parse("::1").is_ok());
        let err = Prefix::parse("2001:db8::1/32").unwrap_err().to_string();
        assert_eq!(err, "2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?");
        assert!(Prefix::parse("2001:db8::/129").unwrap_err().to_string().contains("expected 0 to 128"));
    }
}
