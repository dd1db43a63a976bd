//! Maps another version made at another layout: what `up` does with each.
//!
//! aya reuses a pinned map whatever its layout, so every command that reads a live
//! filter's maps refuses one whose key, value or fixed size is not this version's
//! (`maps::check_pinned`). `up` over such a filter migrates instead, as a resize does
//! (`resize::swap_in`): the map is made anew at this version's layout beside the pinned
//! others, the new programs are swapped into the pinned links (no packet meets an
//! interface without a filter), and the new map is pinned in the old one's place. A map
//! the live filter lacks altogether is made by the load itself.
//!
//! What the new map holds depends on whose entries the old one held ([`refill`]): the
//! policy's are written again, the programs' own state starts afresh (and `up` says what
//! was lost) unless it is at a layout an earlier version made, which this one reads and
//! carries over (`carries`: the flows of the versions before the half-open table), and
//! what only the map holds, which cannot be read at a layout this version does not know,
//! is never dropped silently: `up` is refused, naming `down` and `up` (unless the map
//! holds nothing).
use firewall_common::{
    Direction, Flow, FlowKey, MAP_ALLOW_EXACT, MAP_ALLOW_PREFIX, MAP_ANTISPOOF_CELLS, MAP_ANTISPOOF_DST,
    MAP_ANTISPOOF_SRC, MAP_BLOCK_LISTS, MAP_BLOCKLIST, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS,
    MAP_DNS_ANSWERS, MAP_DNS_LISTENER, MAP_DNS_RELEASED, MAP_DROP_EVENTS, MAP_FLOW_STATS, MAP_FLOWS_ENDED,
    MAP_FRAGMENTS, MAP_HALF_OPEN, MAP_HOST_ADDRESSES, MAP_LIST_DEADLINES, MAP_PER_SOURCE_BUCKETS,
    MAP_PER_SOURCE_CONNECTIONS, MAP_PER_SOURCE_LIMITS, MAP_PORT_INTERVALS, MAP_RULE_UIDS, MAP_SERVICE_SKIPS,
    MAP_TOKEN_BUCKETS,
};
use serde::Serialize;

use crate::kernel::{
    maps::{Enforcement, Layout, MapsError, call, layout, live_enforcement, mismatches},
    pins::Pins,
};

/// What a map made anew at this version's layout holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refill {
    /// The policy's entries, written again as any `up` writes them: nothing is lost.
    FromPlan,
    /// Nothing: the programs' own state, which starts afresh; the text says what is lost.
    Afresh(&'static str),
    /// What only this map holds; the text names it. Made anew, it would be lost, so `up`
    /// refuses and names `down` and `up`, after which it is gone all the same; unless it
    /// holds nothing, when it is made anew.
    Never(&'static str),
}

/// Each map's [`Refill`]: the one table of what a migration does with it.
pub fn refill(name: &str) -> Refill {
    match name {
        // `LiveMaps::apply` writes each of these whole from the plan into an empty map.
        // CONFIG's live bits are the exception: the mode comes from the command line
        // ([`relaid`] refuses `up` without it), the blocks' bit from the blocklist, and
        // the drop events' bit is off until a `firewall drops` starts again.
        MAP_CONFIG
        | MAP_ALLOW_EXACT
        | MAP_ALLOW_PREFIX
        | MAP_ANTISPOOF_SRC
        | MAP_ANTISPOOF_DST
        | MAP_ANTISPOOF_CELLS
        | MAP_SERVICE_SKIPS
        | MAP_HOST_ADDRESSES
        | MAP_PORT_INTERVALS
        | MAP_PER_SOURCE_LIMITS
        | MAP_RULE_UIDS
        | MAP_TOKEN_BUCKETS => Refill::FromPlan,
        MAP_CONNTRACK | MAP_HALF_OPEN => Refill::Afresh(
            "its tracked flows start afresh: a session is picked up again mid-stream at its next packet the policy admits, as by a first `up`",
        ),
        MAP_COUNTERS => Refill::Afresh("the counters start from zero"),
        MAP_FLOW_STATS | MAP_FLOWS_ENDED => Refill::Afresh("the flow tables' statistics start from zero"),
        MAP_FRAGMENTS => Refill::Afresh("the later fragments of datagrams in flight drop"),
        MAP_PER_SOURCE_BUCKETS | MAP_PER_SOURCE_CONNECTIONS => {
            Refill::Afresh("the per_source limits count every source afresh")
        }
        MAP_DROP_EVENTS => Refill::Afresh("a `firewall drops` running reads nothing more: start it again"),
        MAP_DNS_ANSWERS | MAP_DNS_LISTENER | MAP_DNS_RELEASED => {
            Refill::Afresh("a `firewall serve` running learns no more names from DNS answers: start it again")
        }
        MAP_BLOCKLIST => Refill::Never("the blocks `firewall block` made, which are lost"),
        MAP_BLOCK_LISTS | MAP_LIST_DEADLINES => {
            Refill::Never("the named blocklists, which `firewall block --from` loads again")
        }
        _ => unreachable!("every map is listed in firewall_common::MAPS"),
    }
}

/// A flow as the versions of 2026-11-24 and 2026-12-01 kept it in `CONNTRACK`, their one
/// flow table (16 bytes; the key was as this version's): no half-open table, so no ends
/// heard, and no sequence numbers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EarlierFlow {
    pub last_seen_ns: u64,
    pub rule: u32,
    pub origin: u8,
    /// `TCP_OPEN`, `TCP_FIN_SEEN` or `TCP_RST_SEEN`, as this version numbers them.
    pub tcp_state: u8,
    pub _pad: [u8; 2],
}

// SAFETY: plain integers, `repr(C)`, no padding (16 bytes, checked below).
unsafe impl aya::Pod for EarlierFlow {}
const _: () = assert!(size_of::<EarlierFlow>() == 16);

impl From<EarlierFlow> for Flow {
    /// The flow as this version's established table holds it, as it was to the earlier
    /// version: its age, state and origin kept, its rule's index the old policy's (which
    /// `up`'s `apply` then points at the rule that admits it now, or ends the flow with
    /// none). Only the opening end is known to have been heard, and the host's numbers
    /// are not known: a peer's RST or FIN is believed once the host's next segment told
    /// them, as on a session picked up mid-stream.
    fn from(earlier: EarlierFlow) -> Flow {
        let origin = if earlier.origin == Direction::In as u8 { Direction::In } else { Direction::Out };
        Flow {
            last_seen_ns: earlier.last_seen_ns,
            // Above 16 bits, an index no rule has: `apply` moves it to the rule that
            // admits it, or ends it.
            rule: u16::try_from(earlier.rule).unwrap_or(u16::MAX),
            origin: origin as u8,
            tcp_state: earlier.tcp_state,
            flags: 1 << origin as u8,
            ..Flow::default()
        }
    }
}

/// What is carried over into the map `name` made anew from the live one of layout `found`:
/// `Some` for a layout an earlier version made whose entries this version reads (the text
/// says what `up` carried), `None` for one it cannot (the map is refilled as [`refill`]
/// says).
pub(crate) fn carries(name: &str, found: &Layout) -> Option<&'static str> {
    let earlier_flows = (size_of::<FlowKey>() as u32, size_of::<EarlierFlow>() as u32);
    (name == MAP_CONNTRACK && (found.key, found.value) == earlier_flows).then_some(
        "its tracked flows carried over, each as established with its age, and its rule as the policy admits it now",
    )
}

/// A map made anew with `name` though its own layout is this version's: the programs read
/// the two together. `DNS_LISTENER` says until when `serve` takes the held answers from
/// `DNS_ANSWERS`; a new ring beside the old deadline would hold answers nobody takes.
fn made_with(name: &str) -> Option<&'static str> {
    (name == MAP_DNS_ANSWERS).then_some(MAP_DNS_LISTENER)
}

/// How the error about a pinned map of another layout ends: the way out, and what it costs.
/// The pinned map is at layout `found`.
pub(crate) fn way_out(name: &str, found: &Layout) -> String {
    match (refill(name), carries(name, found)) {
        (Refill::FromPlan, _) => "`firewall up` with its policy makes it anew in place".to_string(),
        (Refill::Afresh(lost), carried) => {
            format!("`firewall up` with its policy makes it anew in place ({})", carried.unwrap_or(lost))
        }
        (Refill::Never(held), _) => {
            format!("`firewall down` then `firewall up` replaces it (it holds {held})")
        }
    }
}

/// Whether the map `name` of the live filter `pins`, whose keys are `key_size` bytes,
/// holds nothing a [`Refill::Never`] map would lose: no block in the tries, no named list
/// for `LIST_DEADLINES` (an array, never empty, whose slots only the lists give meaning).
fn holds_nothing(pins: &Pins, name: &'static str, key_size: u32) -> Result<bool, MapsError> {
    if name == MAP_LIST_DEADLINES {
        return Ok(pins.block_lists().map_err(|e| MapsError::State(Box::new(e)))?.is_empty());
    }
    let map = aya::maps::MapData::from_pin(pins.map_path(name)).map_err(call(name, "open pinned"))?;
    let first =
        first_key(&map, key_size).map_err(|source| MapsError::Syscall { name, call: "first key", source })?;
    Ok(first.is_none())
}

/// The first key of `map`, whatever its layout (`BPF_MAP_GET_NEXT_KEY` asked with no
/// key, which a hash and a trie answer): aya's maps want the key's type.
fn first_key(map: &aya::maps::MapData, key_size: u32) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    #[repr(C)]
    struct GetNextKeyAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        next_key: u64,
    }
    let mut next = vec![0u8; key_size as usize];
    let fd = map.fd().as_fd().as_raw_fd();
    let attr =
        GetNextKeyAttr { map_fd: fd.cast_unsigned(), _pad: 0, key: 0, next_key: next.as_mut_ptr() as u64 };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for the command, `next` has room for a
    // key of the map's size, and both outlive the call.
    let done = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_GET_NEXT_KEY, &raw const attr, size_of::<GetNextKeyAttr>())
    };
    if done == 0 {
        return Ok(Some(next));
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        e => Err(e),
    }
}

/// One map `up` made anew at this version's layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Relaid {
    pub map: &'static str,
    /// The live map's layout, as `firewall_common` sizes read it ("24-byte keys, …").
    pub found: String,
    pub wanted: String,
    /// What started afresh; `None` when the policy wrote it again whole, or its entries
    /// were carried over.
    pub lost: Option<&'static str>,
    /// What was carried over from the map of an earlier layout (`carries`); `None` when
    /// nothing was read from it.
    pub carried: Option<&'static str>,
}

impl Relaid {
    /// The line `up` says of it.
    pub fn line(&self) -> String {
        let held = match (self.lost, self.carried, refill(self.map)) {
            (Some(lost), _, _) => lost,
            (None, Some(carried), _) => carried,
            (None, None, Refill::Never(_)) => "it held nothing",
            (None, None, _) => "the policy's entries written again",
        };
        format!(
            "{} made anew at this version's layout ({} where it had {}): {held}",
            self.map, self.wanted, self.found
        )
    }
}

/// The maps of the live filter `pins` that `up` makes anew, at this version's layout.
/// Refused, before anything changes: a map of another layout that holds what only it
/// holds ([`Refill::Never`]; one that holds nothing is made anew), and a `CONFIG` of another layout when `enforcement` does not
/// say the mode, which that map held where this version cannot read it.
pub(crate) fn relaid(pins: &Pins, enforcement: Option<Enforcement>) -> Result<Vec<Relaid>, MapsError> {
    let mut relaid = Vec::new();
    for mismatch in mismatches(pins)? {
        // A map the live filter lacks is made and pinned by the load: nothing to migrate.
        let Some(found) = mismatch.found else { continue };
        let carried = carries(mismatch.name, &found);
        let lost = match refill(mismatch.name) {
            Refill::FromPlan => None,
            Refill::Afresh(_) if carried.is_some() => None,
            Refill::Afresh(lost) => Some(lost),
            Refill::Never(_) if holds_nothing(pins, mismatch.name, found.key)? => None,
            Refill::Never(_) => return Err(mismatch.into_error()),
        };
        if mismatch.name == MAP_CONFIG && enforcement.is_none() && live_enforcement(pins).is_err() {
            return Err(MapsError::ModeUnreadable);
        }
        relaid.push(Relaid {
            map: mismatch.name,
            found: found.to_string(),
            wanted: mismatch.wanted.to_string(),
            lost,
            carried,
        });
    }
    let companions: Vec<&'static str> = relaid.iter().filter_map(|r| made_with(r.map)).collect();
    for name in companions {
        if pins.map_path(name).exists() && !relaid.iter().any(|r| r.map == name) {
            let Refill::Afresh(lost) = refill(name) else {
                unreachable!("a companion holds the programs' state")
            };
            let same = layout(name).to_string();
            relaid.push(Relaid {
                map: name,
                found: same.clone(),
                wanted: same,
                lost: Some(lost),
                carried: None,
            });
        }
    }
    Ok(relaid)
}

#[cfg(test)]
mod tests {
    use firewall_common::MAPS;

    use super::*;

    #[test]
    fn every_map_has_a_rule_and_only_the_blocklists_are_never_made_anew() {
        let never: Vec<&str> =
            MAPS.into_iter().filter(|name| matches!(refill(name), Refill::Never(_))).collect();
        assert_eq!(never, [MAP_BLOCKLIST, MAP_BLOCK_LISTS, MAP_LIST_DEADLINES]);
        for name in MAPS {
            let way_out = way_out(name, &layout(name));
            let expected =
                if never.contains(&name) { "`firewall down` then `firewall up`" } else { "`firewall up`" };
            assert!(way_out.starts_with(expected), "{name}: {way_out}");
            // A companion is made anew with its map, so it must be the programs' state.
            if let Some(companion) = made_with(name) {
                assert!(matches!(refill(companion), Refill::Afresh(_)), "{companion}");
            }
        }
    }

    #[test]
    fn the_flows_of_the_versions_before_the_half_open_table_are_carried_over_as_established() {
        use firewall_common::{TCP_FIN_SEEN, TCP_OPEN};
        let earlier = Layout { key: 24, value: 16, max_entries: None };
        assert!(carries(MAP_CONNTRACK, &earlier).is_some());
        assert!(way_out(MAP_CONNTRACK, &earlier).contains("carried over"));
        // Any other layout of it, or another map, starts afresh.
        assert_eq!(carries(MAP_CONNTRACK, &Layout { key: 24, value: 32, max_entries: None }), None);
        assert_eq!(carries(MAP_HALF_OPEN, &earlier), None);
        assert!(way_out(MAP_CONNTRACK, &layout(MAP_CONNTRACK)).contains("start afresh"));

        let inbound = EarlierFlow {
            last_seen_ns: 7,
            rule: 3,
            origin: Direction::In as u8,
            tcp_state: TCP_OPEN,
            _pad: [0; 2],
        };
        let flow = Flow::from(inbound);
        assert_eq!(
            (flow.last_seen_ns, flow.rule, flow.origin, flow.tcp_state),
            (7, 3, Direction::In as u8, TCP_OPEN)
        );
        // Only the opener heard; no host numbers, so a peer's RST waits for the host's.
        assert_eq!(flow.flags, firewall_common::FLOW_HEARD_IN);
        assert_eq!((flow.host_ack, flow.host_window, flow.host_syn_next), (0, 0, 0));
        let outbound =
            EarlierFlow { origin: Direction::Out as u8, tcp_state: TCP_FIN_SEEN, rule: 70_000, ..inbound };
        let flow = Flow::from(outbound);
        assert_eq!((flow.flags, flow.tcp_state), (firewall_common::FLOW_HEARD_OUT, TCP_FIN_SEEN));
        assert_eq!(flow.rule, u16::MAX, "an index no rule has, which the apply moves or ends");
    }
}
