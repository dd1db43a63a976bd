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
//! was lost), and what only the map holds, which cannot be read at a layout this version
//! does not know, is never dropped silently: `up` is refused, naming `down` and `up`
//! (unless the map holds nothing).
use firewall_common::{
    MAP_ALLOW_EXACT, MAP_ALLOW_PREFIX, MAP_ANTISPOOF_CELLS, MAP_ANTISPOOF_DST, MAP_ANTISPOOF_SRC,
    MAP_BLOCK_LISTS, MAP_BLOCKLIST, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_DNS_ANSWERS,
    MAP_DNS_LISTENER, MAP_DNS_RELEASED, MAP_DROP_EVENTS, MAP_FLOW_STATS, MAP_FLOWS_ENDED, MAP_FRAGMENTS,
    MAP_HALF_OPEN, MAP_HOST_ADDRESSES, MAP_LIST_DEADLINES, MAP_PER_SOURCE_BUCKETS,
    MAP_PER_SOURCE_CONNECTIONS, MAP_PER_SOURCE_LIMITS, MAP_PORT_INTERVALS, MAP_RULE_UIDS, MAP_SERVICE_SKIPS,
    MAP_TOKEN_BUCKETS,
};
use serde::Serialize;

use crate::kernel::{
    maps::{Enforcement, MapsError, call, layout, mismatches},
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

/// A map made anew with `name` though its own layout is this version's: the programs read
/// the two together. `DNS_LISTENER` says until when `serve` takes the held answers from
/// `DNS_ANSWERS`; a new ring beside the old deadline would hold answers nobody takes.
fn made_with(name: &str) -> Option<&'static str> {
    (name == MAP_DNS_ANSWERS).then_some(MAP_DNS_LISTENER)
}

/// How the error about a pinned map of another layout ends: the way out, and what it costs.
pub(crate) fn way_out(name: &str) -> String {
    match refill(name) {
        Refill::FromPlan => "`firewall up` with its policy makes it anew in place".to_string(),
        Refill::Afresh(lost) => format!("`firewall up` with its policy makes it anew in place ({lost})"),
        Refill::Never(held) => format!("`firewall down` then `firewall up` replaces it (it holds {held})"),
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
        first_key(&map, key_size).map_err(|source| MapsError::Batch { name, call: "first key", source })?;
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
    /// What started afresh; `None` when the policy wrote it again whole.
    pub lost: Option<&'static str>,
}

impl Relaid {
    /// The line `up` says of it.
    pub fn line(&self) -> String {
        let held = match (self.lost, refill(self.map)) {
            (Some(lost), _) => lost,
            (None, Refill::Never(_)) => "it held nothing",
            (None, _) => "the policy's entries written again",
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
        let lost = match refill(mismatch.name) {
            Refill::FromPlan => None,
            Refill::Afresh(lost) => Some(lost),
            Refill::Never(_) if holds_nothing(pins, mismatch.name, found.key)? => None,
            Refill::Never(_) => return Err(mismatch.into_error()),
        };
        if mismatch.name == MAP_CONFIG && enforcement.is_none() {
            return Err(MapsError::ModeUnreadable);
        }
        relaid.push(Relaid {
            map: mismatch.name,
            found: found.to_string(),
            wanted: mismatch.wanted.to_string(),
            lost,
        });
    }
    let companions: Vec<&'static str> = relaid.iter().filter_map(|r| made_with(r.map)).collect();
    for name in companions {
        if pins.map_path(name).exists() && !relaid.iter().any(|r| r.map == name) {
            let Refill::Afresh(lost) = refill(name) else {
                unreachable!("a companion holds the programs' state")
            };
            let same = layout(name).to_string();
            relaid.push(Relaid { map: name, found: same.clone(), wanted: same, lost: Some(lost) });
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
            let way_out = way_out(name);
            let expected =
                if never.contains(&name) { "`firewall down` then `firewall up`" } else { "`firewall up`" };
            assert!(way_out.starts_with(expected), "{name}: {way_out}");
            // A companion is made anew with its map, so it must be the programs' state.
            if let Some(companion) = made_with(name) {
                assert!(matches!(refill(companion), Refill::Afresh(_)), "{companion}");
            }
        }
    }
}
