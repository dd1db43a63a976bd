//! The anti-spoof lists as the kernel reads them first: for each /8 of either family (a
//! cell: IPv4's `b.0.0.0/8`, IPv6's `b00::/8`), the list's answer for every address in it,
//! where one answer holds for all of them. Most cells hold no entry (any address there is
//! not spoofed) or lie inside one entry (every address there is that entry's), so one
//! array read decides most packets in place of a walk of the trie. A cell with an entry
//! inside it asks the trie (see `firewall_common::antispoof_cell`).
use std::collections::BTreeMap;

use firewall_common::{CELL_ASK, CELL_NONE, V4_MAPPED_BITS, v4_mapped};

use crate::policy::Prefix;

/// Cells of one list: 256 of IPv4, then 256 of IPv6.
pub const CELLS_PER_LIST: usize = 512;

/// The cells of the list whose entries are `list` (prefix → counter), in the order of
/// `firewall_common::antispoof_cell` within one list.
pub fn antispoof_cells(list: &BTreeMap<Prefix, u32>) -> Vec<u32> {
    // The entries in the maps' address space, as the trie holds them.
    let entries: Vec<(u128, u32, u32)> = list
        .iter()
        .map(|(prefix, counter)| {
            let (addr, len) = prefix.to_addr();
            (u128::from_be_bytes(addr), len, *counter)
        })
        .collect();
    let v4 = (0..=255u8).map(|b| (u128::from_be_bytes(v4_mapped([b, 0, 0, 0])), V4_MAPPED_BITS + 8));
    let v6 = (0..=255u8).map(|b| (u128::from(b) << 120, 8));
    v4.chain(v6).map(|(base, len)| cell(&entries, base, len)).collect()
}

/// The answer for the cell `base/len` of a list of `entries` (address, length, counter).
fn cell(entries: &[(u128, u32, u32)], base: u128, len: u32) -> u32 {
    // An entry inside the cell, narrower than it: the trie tells its addresses from the others.
    if entries.iter().any(|&(addr, entry_len, _)| entry_len > len && addr & mask(len) == base) {
        return CELL_ASK;
    }
    // Else the longest entry that holds the whole cell answers for all of it, as the trie would.
    entries
        .iter()
        .filter(|&&(addr, entry_len, _)| entry_len <= len && base & mask(entry_len) == addr)
        .max_by_key(|&&(_, entry_len, _)| entry_len)
        .map_or(CELL_NONE, |&(_, _, counter)| counter)
}

fn mask(len: u32) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - len) }
}

#[cfg(test)]
mod tests {
    use firewall_common::{AntispoofList, antispoof_cell};

    use super::*;

    fn list(entries: &[(&str, u32)]) -> BTreeMap<Prefix, u32> {
        entries.iter().map(|(text, counter)| (Prefix::parse(text).unwrap(), *counter)).collect()
    }

    fn at(cells: &[u32], v6: bool, byte: u8) -> u32 {
        cells[antispoof_cell(AntispoofList::Sources, v6, byte) as usize]
    }

    #[test]
    fn a_cell_answers_alone_only_where_no_entry_lies_inside_it() {
        let cells = antispoof_cells(&list(&[
            ("10.0.0.0/8", 70),
            ("172.16.0.0/12", 71),
            ("224.0.0.0/4", 72),
            ("0.0.0.0/8", 73),
            ("224.0.0.1", 74),
            ("fc00::/7", 75),
            ("fe80::/10", 76),
            ("::1", 77),
        ]));
        assert_eq!(cells.len(), CELLS_PER_LIST);
        // A /8 entry, and /4 one over sixteen cells, answer for their cells.
        assert_eq!(at(&cells, false, 10), 70);
        assert_eq!(at(&cells, false, 0), 73);
        assert_eq!(at(&cells, false, 239), 72);
        // But for the cell with a narrower entry inside it.
        assert_eq!(at(&cells, false, 224), CELL_ASK);
        assert_eq!(at(&cells, false, 172), CELL_ASK);
        assert_eq!(at(&cells, false, 11), CELL_NONE);
        assert_eq!(at(&cells, false, 240), CELL_NONE);
        // IPv6: fc00::/7 holds two cells whole; fe80::/10 lies inside one.
        assert_eq!(at(&cells, true, 0xfc), 75);
        assert_eq!(at(&cells, true, 0xfd), 75);
        assert_eq!(at(&cells, true, 0xfe), CELL_ASK);
        assert_eq!(at(&cells, true, 0x20), CELL_NONE);
        assert_eq!(at(&cells, true, 0), CELL_ASK);
    }

    #[test]
    fn the_ipv4_entries_lie_inside_the_first_ipv6_cell() {
        // The mapped range is in ::/8: a mapped address the trie would match there asks it.
        let cells = antispoof_cells(&list(&[("192.0.2.0/24", 70)]));
        assert_eq!(at(&cells, true, 0), CELL_ASK);
        assert_eq!(at(&cells, false, 192), CELL_ASK);
        assert_eq!(at(&cells, false, 193), CELL_NONE);
    }

    #[test]
    fn a_list_of_everything_answers_everywhere_but_around_its_narrower_entries() {
        let cells = antispoof_cells(&list(&[("0.0.0.0/0", 70), ("10.1.0.0/16", 71)]));
        assert_eq!(at(&cells, false, 9), 70);
        assert_eq!(at(&cells, false, 10), CELL_ASK);
        assert_eq!(at(&cells, true, 0x20), CELL_NONE);
        assert_eq!(at(&cells, true, 0), CELL_ASK);
        // An empty list answers nothing anywhere.
        assert!(antispoof_cells(&BTreeMap::new()).iter().all(|&c| c == CELL_NONE));
    }
}
