//! The allow-lists' lookups each service may skip, as the kernel reads them first
//! (`SERVICE_SKIPS`, see `firewall_common::service_skip_slot`): a service no rule lists a
//! peer or prefix for skips the peer's lookups, one no rule admits `any` to skips
//! anyone's, and one no rule serves at all, the most of them, skips both. So a policy drop
//! is one array read where it was two hash lookups that missed.
use firewall_common::{
    ANY_PEER, AllowKey, SERVICE_SKIPS_ENTRIES, SKIP_ANYONE, SKIP_PEERS, service_skip_slot,
};

use super::MapPlan;

/// `SERVICE_SKIPS`' values for `plan`, index by index.
pub fn service_skips(plan: &MapPlan) -> Vec<u64> {
    let every = (0..32).fold(0u64, |bits, lane| bits | (SKIP_PEERS | SKIP_ANYONE) << (2 * lane));
    let mut skips = vec![every; SERVICE_SKIPS_ENTRIES as usize];
    let mut served = |key: &AllowKey, bit: u64| {
        if let Some((index, shift)) = service_skip_slot(key.direction, key.protocol, key.port) {
            skips[index as usize] &= !(bit << shift);
        }
    };
    for key in plan.allow_exact.keys() {
        served(key, if key.peer == ANY_PEER { SKIP_ANYONE } else { SKIP_PEERS });
    }
    for (_, key) in plan.allow_prefix.keys() {
        served(key, SKIP_PEERS);
    }
    skips
}

#[cfg(test)]
mod tests {
    use firewall_common::{AllowValue, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

    use super::*;

    fn bits(skips: &[u64], direction: u8, protocol: u8, port: u16) -> u64 {
        let (index, shift) = service_skip_slot(direction, protocol, port).expect("a service");
        (skips[index as usize] >> shift) & (SKIP_PEERS | SKIP_ANYONE)
    }

    fn key(direction: u8, protocol: u8, port: u16, peer: [u8; 16]) -> AllowKey {
        AllowKey { direction, protocol, port, peer }
    }

    #[test]
    fn a_service_skips_what_no_rule_lists_for_it_and_nothing_else() {
        let mut plan = MapPlan::default();
        let peer = firewall_common::v4_mapped([203, 0, 113, 7]);
        plan.allow_exact = [
            key(0, PROTO_TCP, 22, peer),
            key(0, PROTO_TCP, 80, ANY_PEER),
            key(0, PROTO_ICMP, 8, ANY_PEER),
            key(0, PROTO_TCP, 443, ANY_PEER),
            key(0, PROTO_TCP, 443, peer),
        ]
        .into_iter()
        .map(|key| (key, AllowValue::default()))
        .collect();
        plan.allow_prefix.insert((0, key(1, PROTO_UDP, 53, peer)), AllowValue::default());
        let skips = service_skips(&plan);
        assert_eq!(bits(&skips, 0, PROTO_TCP, 22), SKIP_ANYONE, "peers, no any");
        assert_eq!(bits(&skips, 0, PROTO_TCP, 80), SKIP_PEERS, "any, no peers");
        assert_eq!(bits(&skips, 0, PROTO_ICMP, 8), SKIP_PEERS, "an ICMP type");
        assert_eq!(bits(&skips, 0, PROTO_TCP, 443), 0, "both");
        assert_eq!(bits(&skips, 1, PROTO_UDP, 53), SKIP_ANYONE, "a prefix is a peer");
        // The same port the other way, or of the other protocol, is another service.
        assert_eq!(bits(&skips, 1, PROTO_TCP, 22), SKIP_PEERS | SKIP_ANYONE);
        assert_eq!(bits(&skips, 0, PROTO_UDP, 22), SKIP_PEERS | SKIP_ANYONE);
        assert_eq!(bits(&skips, 0, PROTO_TCP, 23), SKIP_PEERS | SKIP_ANYONE);
        let served = skips.iter().filter(|&&lanes| lanes != u64::MAX).count();
        assert_eq!(served, 5, "only the five served services' values differ from all-skip");
    }
}
