//! A rule's `port` or `ports`: numbers and ranges, as written, into the spans the rule
//! admits (each port once, in the order written).
use serde_spanned::Spanned;

use super::{Located, fail, raw::RawPort};

/// How a range is written, for the messages about a bad one.
const RANGE_HINT: &str = "use a number or a range as \"1024-65535\"";

/// One entry of `port` or `ports`: its first and last port (the same for a single port).
/// A port is a number; a range a string, FIRST-LAST or, as iptables and ufw write it,
/// FIRST:LAST (a number in a string is refused, as it always was: TOML tells them apart).
pub(super) fn port_span(raw: Spanned<RawPort>) -> Result<(u16, u16), Located> {
    let at = raw.span().start;
    let text = match raw.into_inner() {
        RawPort::Number(value) => return one_port(value, at).map(|port| (port, port)),
        RawPort::Text(text) => text,
    };
    let Some((first, last)) = text.split_once(['-', ':']) else {
        return fail(at, format!("bad port {text:?}: {RANGE_HINT}"));
    };
    let (first, last) = (one_port(number(first, &text, at)?, at)?, one_port(number(last, &text, at)?, at)?);
    if first > last {
        return fail(at, format!("bad port range {text:?}: the first port is after the last"));
    }
    Ok((first, last))
}

/// A port's digits (no sign, no spaces) as a number; `text` is the whole entry.
fn number(digits: &str, text: &str, at: usize) -> Result<i64, Located> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return fail(at, format!("bad port {text:?}: {RANGE_HINT}"));
    }
    // More digits than a port has are out of range as a number too big for i64 is.
    Ok(digits.parse().unwrap_or(i64::MAX))
}

fn one_port(value: i64, at: usize) -> Result<u16, Located> {
    match u16::try_from(value) {
        Ok(port) if port >= 1 => Ok(port),
        _ => fail(at, format!("port {value} out of range 1-65535")),
    }
}

/// The spans a rule's entries admit together: entries that overlap are one (a port written
/// twice is one port, a port inside a range is the range's), each in the place of the first
/// of its entries written. Without ranges, the ports as written, each once.
pub(super) fn merged(spans: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans[i]);
    // (first written, span), in the order of the ports.
    let mut groups: Vec<(usize, (u16, u16))> = Vec::new();
    for i in order {
        let (first, last) = spans[i];
        match groups.last_mut() {
            Some((written, span)) if first <= span.1 => {
                span.1 = span.1.max(last);
                *written = (*written).min(i);
            }
            _ => groups.push((i, (first, last))),
        }
    }
    groups.sort_by_key(|(written, _)| *written);
    groups.into_iter().map(|(_, span)| span).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::{HOST, check};

    fn rule(ports: &str) -> String {
        format!(
            "{HOST}[[rule]]\nname = \"x\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\n{ports}\npeers = \"any\"\n"
        )
    }

    #[test]
    fn ranges_are_written_with_a_dash_or_a_colon_and_checked() {
        use crate::policy::Service;
        let services = |ports: &str| check(&rule(ports)).unwrap().rules[0].services.clone();
        let err = |ports: &str| check(&rule(ports)).unwrap_err();
        let err_of = err;
        let range = Service::Range { protocol: firewall_common::PROTO_TCP, first: 1024, last: 65535 };
        assert_eq!(services("port = \"1024-65535\""), vec![range]);
        assert_eq!(services("port = \"1024:65535\""), vec![range]);
        assert_eq!(
            err_of("port = \"22\""),
            "p.toml:8:8: bad port \"22\": use a number or a range as \"1024-65535\""
        );
        assert_eq!(services("port = \"22-22\""), services("port = 22"));
        assert_eq!(
            err("port = \"2000-1000\""),
            "p.toml:8:8: bad port range \"2000-1000\": the first port is after the last"
        );
        assert_eq!(
            err("port = \"http\""),
            "p.toml:8:8: bad port \"http\": use a number or a range as \"1024-65535\""
        );
        assert_eq!(err("ports = [80, \"0-10\"]"), "p.toml:8:14: port 0 out of range 1-65535");
        assert_eq!(err("ports = [80, \"10-70000\"]"), "p.toml:8:14: port 70000 out of range 1-65535");
        for bad in ["-5", "1-", "1--5", " 1-5", "1-5-7", "+1-5", "1:5:7"] {
            assert!(err(&format!("port = {bad:?}")).contains("bad port"), "{bad}");
        }
    }

    #[test]
    fn overlapping_entries_merge_in_the_place_first_written() {
        assert_eq!(merged(&[(443, 443), (80, 80), (443, 443)]), vec![(443, 443), (80, 80)]);
        assert_eq!(
            merged(&[(80, 80), (6000, 6010), (6005, 6005), (443, 443)]),
            vec![(80, 80), (6000, 6010), (443, 443)]
        );
        assert_eq!(merged(&[(7000, 7000), (6000, 7000), (6500, 8000)]), vec![(6000, 8000)]);
        // Touching is not overlapping: written apart, listed apart.
        assert_eq!(merged(&[(1, 9), (10, 20)]), vec![(1, 9), (10, 20)]);
    }
}
