//! The exact-peer hash's entries as a plan holds them: sorted by key, so that `reload`
//! compares a million of them with the live map's by merging two sorted lists, and a
//! plan of a million peers is built by one sort, where a hash of them meets a cache miss
//! an entry.
use firewall_common::{AllowKey, AllowValue};

/// The exact-peer hash's entries (`ALLOW_EXACT`), each key once, sorted by
/// [`ExactEntries::order`]. Collected from entries in any order; of two with the same
/// key, the later stands, as a map's insert would have it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExactEntries(Vec<(AllowKey, AllowValue)>);

impl ExactEntries {
    /// The entries' order: the key's service word (direction, protocol, port), then its
    /// peer, each compared as one number.
    pub fn order(key: &AllowKey) -> (u32, u128) {
        let [port_0, port_1] = key.port.to_be_bytes();
        (u32::from_be_bytes([key.direction, key.protocol, port_0, port_1]), u128::from_be_bytes(key.peer))
    }

    pub fn get(&self, key: &AllowKey) -> Option<&AllowValue> {
        let wanted = Self::order(key);
        let at = self.0.binary_search_by_key(&wanted, |(k, _)| Self::order(k)).ok()?;
        Some(&self.0[at].1)
    }

    pub fn contains_key(&self, key: &AllowKey) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in order.
    pub fn as_slice(&self) -> &[(AllowKey, AllowValue)] {
        &self.0
    }

    pub fn keys(&self) -> impl Iterator<Item = &AllowKey> {
        self.0.iter().map(|(key, _)| key)
    }

    pub fn values(&self) -> impl Iterator<Item = &AllowValue> {
        self.0.iter().map(|(_, value)| value)
    }
}

impl FromIterator<(AllowKey, AllowValue)> for ExactEntries {
    fn from_iter<I: IntoIterator<Item = (AllowKey, AllowValue)>>(entries: I) -> Self {
        let mut entries: Vec<_> = entries.into_iter().collect();
        // Stable: of equal keys, the later stays later, and is the one kept.
        entries.sort_by_key(|(key, _)| Self::order(key));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        ExactEntries(entries)
    }
}

#[cfg(test)]
mod tests {
    use firewall_common::{PROTO_TCP, PROTO_UDP, v4_mapped};

    use super::*;

    fn key(protocol: u8, port: u16, peer: [u8; 4]) -> AllowKey {
        AllowKey { direction: 0, protocol, port, peer: v4_mapped(peer) }
    }

    fn rule(rule: u32) -> AllowValue {
        AllowValue { rule, flags: 0 }
    }

    #[test]
    fn entries_are_sorted_once_each_the_later_standing_and_found_by_key() {
        let (a, b, c) = (
            key(PROTO_TCP, 22, [203, 0, 113, 7]),
            key(PROTO_TCP, 22, [10, 0, 0, 1]),
            key(PROTO_UDP, 22, [10, 0, 0, 1]),
        );
        let entries: ExactEntries =
            [(c, rule(1)), (a, rule(1)), (b, rule(2)), (a, rule(3))].into_iter().collect();
        assert_eq!(entries.as_slice(), &[(b, rule(2)), (a, rule(3)), (c, rule(1))]);
        assert_eq!(entries.get(&a), Some(&rule(3)));
        assert_eq!(entries.get(&c), Some(&rule(1)));
        assert!(!entries.contains_key(&key(PROTO_TCP, 23, [10, 0, 0, 1])));
        assert_eq!((entries.len(), entries.keys().count(), entries.values().count()), (3, 3, 3));
        assert!(ExactEntries::default().is_empty());
    }
}
