//! `[dns]`, and what a peer written as a DNS name may look like.
use super::{Dns, Located, conntrack::duration_or, raw::RawDns};

/// The most addresses `max_addresses` may allow one name.
const MAX_ADDRESSES: i64 = 4096;

/// Each key written replaces its default.
pub(super) fn validate_dns(raw: Option<RawDns>) -> Result<Dns, Located> {
    let d = Dns::default();
    let Some(raw) = raw else {
        return Ok(d);
    };
    let max_addresses = match raw.max_addresses {
        None => d.max_addresses,
        Some(n) if (1..=MAX_ADDRESSES).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            return Err((n.span().start, format!("max_addresses must be between 1 and {MAX_ADDRESSES}")));
        }
    };
    Ok(Dns { grace: duration_or(raw.grace, d.grace)?, max_addresses, learn: raw.learn.unwrap_or(d.learn) })
}

/// Whether `text` is a DNS name a peer may be written as: a fully qualified host name,
/// with at least one dot (a name without, such as `mirror`, is more likely a mistake, and
/// would depend on the resolver's search list), labels of letters, digits and hyphens
/// (neither first nor last) of 1 to 63 characters, 253 in all, a final dot allowed, and a
/// last label that is not all digits (`10.0.0.300` is a bad address, not a name).
pub fn is_dns_name(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && !labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// `text` as a peer name is kept: lower case, without its final dot.
pub fn canonical_name(text: &str) -> String {
    text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::is_dns_name;

    #[test]
    fn names_are_told_from_addresses_and_typos() {
        for name in ["api.example.com", "mirror.example.org.", "a-b.c0.net", "xn--bcher-kva.example"] {
            assert!(is_dns_name(name), "{name}");
        }
        for not in [
            "10.0.0.300",
            "mirror",
            "-a.example.com",
            "a-.example.com",
            "a..example.com",
            "a_b.example.com",
            "2001:db8::1",
            "10.0.0.0/8",
            "any",
            "",
            ".",
        ] {
            assert!(!is_dns_name(not), "{not}");
        }
        assert!(!is_dns_name(&format!("{}.com", "a".repeat(64))));
    }
}
