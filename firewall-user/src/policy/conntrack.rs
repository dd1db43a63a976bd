//! `[conntrack]`: the sizes of the flow tables and how long each kind of flow is kept.
use std::time::Duration;

use serde_spanned::Spanned;

use super::{Conntrack, Located, raw::RawConntrack};

/// Each key written replaces its default; they are checked in the order of [`Conntrack`]'s
/// fields.
pub(super) fn validate_conntrack(raw: Option<RawConntrack>) -> Result<Conntrack, Located> {
    let d = Conntrack::default();
    let Some(c) = raw else {
        return Ok(d);
    };
    Ok(Conntrack {
        max_entries: table_size(c.max_entries, "max_entries", d.max_entries)?,
        max_half_open: table_size(c.max_half_open, "max_half_open", d.max_half_open)?,
        tcp_established_timeout: duration_or(c.tcp_established_timeout, d.tcp_established_timeout)?,
        tcp_fin_timeout: duration_or(c.tcp_fin_timeout, d.tcp_fin_timeout)?,
        tcp_rst_timeout: duration_or(c.tcp_rst_timeout, d.tcp_rst_timeout)?,
        udp_timeout: duration_or(c.udp_timeout, d.udp_timeout)?,
        icmp_timeout: duration_or(c.icmp_timeout, d.icmp_timeout)?,
        tcp_syn_sent_timeout: duration_or(c.tcp_syn_sent_timeout, d.tcp_syn_sent_timeout)?,
        tcp_syn_recv_timeout: duration_or(c.tcp_syn_recv_timeout, d.tcp_syn_recv_timeout)?,
        fragment_timeout: fragment_timeout(c.fragment_timeout, d.fragment_timeout)?,
        tcp_loose: c.tcp_loose.unwrap_or(d.tcp_loose),
    })
}

/// The most `fragment_timeout` may be: Linux's own wait for a datagram's fragments is 30 s
/// (IPv6's 60 s), and a later fragment admitted past it meets no datagram to join.
const MAX_FRAGMENT_TIMEOUT: Duration = Duration::from_secs(60);

fn fragment_timeout(value: Option<Spanned<String>>, default: Duration) -> Result<Duration, Located> {
    let at = value.as_ref().map_or(0, |v| v.span().start);
    let timeout = duration_or(value, default)?;
    if timeout > MAX_FRAGMENT_TIMEOUT {
        return Err((at, "fragment_timeout must be at most 60s".into()));
    }
    Ok(timeout)
}

/// A table's number of entries, `key` as the policy names it.
fn table_size(value: Option<Spanned<i64>>, key: &str, default: u32) -> Result<u32, Located> {
    match value {
        None => Ok(default),
        Some(n) if (1024..=16_777_216).contains(n.get_ref()) => Ok(*n.get_ref() as u32),
        Some(n) => Err((n.span().start, format!("{key} must be between 1024 and 16777216"))),
    }
}

pub(super) fn duration_or(value: Option<Spanned<String>>, default: Duration) -> Result<Duration, Located> {
    match value {
        None => Ok(default),
        Some(v) => parse_duration(v.get_ref()).ok_or_else(|| {
            (
                v.span().start,
                format!("bad duration {:?}: expected a number and s, m, h or d, as \"30s\"", v.get_ref()),
            )
        }),
    }
}

/// `"30s"`, `"2m"`, `"12h"`, `"5d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    (number > 0).then(|| number.checked_mul(seconds).map(Duration::from_secs)).flatten()
}

/// A whole number of seconds as [`parse_duration`] reads it back, in the largest unit that
/// divides it: `"30s"`, `"10m"`, `"36h"`.
pub fn duration_text(secs: u64) -> String {
    match [(86_400, "d"), (3600, "h"), (60, "m")]
        .into_iter()
        .find(|(size, _)| secs > 0 && secs.is_multiple_of(*size))
    {
        Some((size, unit)) => format!("{}{unit}", secs / size),
        None => format!("{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::policy::tests::{HOST, check};

    #[test]
    fn half_open_flows_have_their_own_table_and_timeouts() {
        let p = check(HOST).unwrap();
        assert_eq!(p.conntrack.max_half_open, 16_384);
        assert_eq!(p.conntrack.tcp_syn_sent_timeout, Duration::from_secs(120));
        assert_eq!(p.conntrack.tcp_syn_recv_timeout, Duration::from_secs(60));
        let p = check(&format!(
            "{HOST}[conntrack]\nmax_half_open = 2048\ntcp_syn_sent_timeout = \"30s\"\ntcp_syn_recv_timeout = \"1m\"\n"
        ))
        .unwrap();
        assert_eq!(p.conntrack.max_half_open, 2048);
        assert_eq!(p.conntrack.max_entries, 65_536, "the other keys keep their defaults");
        assert_eq!(p.conntrack.tcp_syn_sent_timeout, Duration::from_secs(30));
        assert_eq!(p.conntrack.tcp_syn_recv_timeout, Duration::from_secs(60));
        assert_eq!(
            check(&format!("{HOST}[conntrack]\nmax_half_open = 1000\n")).unwrap_err(),
            "p.toml:5:17: max_half_open must be between 1024 and 16777216"
        );
        assert_eq!(p.conntrack.fragment_timeout, Duration::from_secs(5));
        assert_eq!(
            check(&format!("{HOST}[conntrack]\nfragment_timeout = \"2m\"\n")).unwrap_err(),
            "p.toml:5:20: fragment_timeout must be at most 60s"
        );
        assert_eq!(
            check(&format!("{HOST}[conntrack]\nfragment_timeout = \"30s\"\n"))
                .unwrap()
                .conntrack
                .fragment_timeout,
            Duration::from_secs(30)
        );
        assert!(p.conntrack.tcp_loose, "netfilter's default");
        assert!(!check(&format!("{HOST}[conntrack]\ntcp_loose = false\n")).unwrap().conntrack.tcp_loose);
        assert_eq!(
            check(&format!("{HOST}[conntrack]\ntcp_loose = \"no\"\n")).unwrap_err(),
            "p.toml:5:13: invalid type: string \"no\", expected a boolean"
        );
        assert_eq!(
            check(&format!("{HOST}[conntrack]\ntcp_syn_recv_timeout = \"0s\"\n")).unwrap_err(),
            "p.toml:5:24: bad duration \"0s\": expected a number and s, m, h or d, as \"30s\""
        );
    }
}
