//! The receive offloads an XDP attach takes away and may never give back.
//!
//! The kernel's generic XDP attach (`generic_xdp_install`, net/core/dev.c) turns off
//! `rx-lro` (`dev_disable_lro`) and `rx-gro-hw` (`dev_disable_gro_hw`) when a first
//! generic program is installed, and nothing turns them on again when it is removed: a
//! virtio-net guest went on receiving MTU-sized frames after `up` and `down`.
//! `dev_disable_lro` also goes down the interface's lower devices, recursively (a VLAN's
//! real device, a bond's slaves), where `dev_disable_gro_hw` does not. A driver may leave
//! one off after a native program's detach too: vmxnet3's LRO stays "off [requested on]"
//! until the features are asked again. So a first `up`, whatever its hook, records which
//! of them were on, each with its device ([`on_before_attach`]), and `down` turns back on
//! those now off ([`restore`]).
//!
//! Both are read and set through SIOCETHTOOL, as `ethtool -k`/`-K` do: each feature's bit
//! found by its name in the `ETH_SS_FEATURES` string set (the kernel numbers them by its
//! own `NETIF_F_*` order, which is no ABI), then `ETHTOOL_GFEATURES` and
//! `ETHTOOL_SFEATURES` (linux/ethtool.h).
use std::path::Path;

use crate::kernel::filter::ethtool;

/// Where the kernel lists this network namespace's interfaces, each with a `lower_NAME`
/// link to each of its lower devices.
pub const SYS_CLASS_NET: &str = "/sys/class/net";

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// `struct ethtool_gfeatures`' block: `available`, `requested`, `active`, `never_changed`.
const GET_BLOCK_WORDS: usize = 4;
const ACTIVE: usize = 2;
/// `struct ethtool_sfeatures`' block: `valid`, `requested`.
const SET_BLOCK_WORDS: usize = 2;

/// A receive offload generic XDP turns off, by its `ethtool -k` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Offload {
    /// `rx-gro-hw`: GRO in the NIC (or, on virtio-net, the host's).
    #[serde(rename = "rx-gro-hw")]
    GroHw,
    /// `rx-lro` (`large-receive-offload`).
    #[serde(rename = "rx-lro")]
    Lro,
}

impl Offload {
    pub const ALL: [Offload; 2] = [Offload::GroHw, Offload::Lro];

    /// Its name in the kernel's feature strings (what `ethtool -K` takes).
    pub fn name(self) -> &'static str {
        match self {
            Offload::GroHw => "rx-gro-hw",
            Offload::Lro => "rx-lro",
        }
    }
}

impl std::fmt::Display for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An offload on one device: the interface's own, or one of its lower devices'.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OffloadOn {
    pub iface: String,
    pub offload: Offload,
}

impl OffloadOn {
    /// As `down` names it: `rx-lro`, or, where `with_device`, `rx-lro on eth0`.
    fn said(&self, with_device: bool) -> String {
        if with_device { format!("{} on {}", self.offload, self.iface) } else { self.offload.to_string() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OffloadsError {
    #[error("{call} on {iface}")]
    Ethtool { call: &'static str, iface: String, source: std::io::Error },
    #[error("{iface} has no feature string set")]
    NoFeatureSet { iface: String },
    /// The request was taken, and the driver left them off.
    #[error(
        "{iface}'s driver left {} off when asked to turn {} on",
        names(.offloads),
        them(.offloads, "it", "them")
    )]
    StillOff { iface: String, offloads: Vec<Offload>, turned_on: Vec<Offload> },
    /// The request was taken, and the kernel kept `rx-lro` off: a device above has it off
    /// (`netdev_sync_upper_features`), as a VLAN made on the interface while the filter
    /// was up has.
    #[error(
        "{iface} kept rx-lro off when asked to turn it on, as {} above it {} off",
        sentence(.uppers.clone()),
        them(.uppers, "has it", "have it")
    )]
    HeldOffAbove { iface: String, uppers: Vec<String>, turned_on: Vec<Offload> },
}

type Result<T> = std::result::Result<T, OffloadsError>;

/// `offloads`' names joined as a sentence says them: `rx-gro-hw and rx-lro`.
pub fn names(offloads: &[Offload]) -> String {
    sentence(offloads.iter().map(|o| o.name().to_owned()).collect())
}

/// `items` joined as a sentence says them: `a`, `a and b`, `a, b and c`.
fn sentence(items: Vec<String>) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The offloads of [`Offload::ALL`] that are on on `iface` now (none that it lacks).
pub fn active(iface: &str) -> Result<Vec<Offload>> {
    let features = Features::of(iface)?;
    Ok(features.active_in(&features.get(iface)?))
}

/// What a first attach on `iface` may turn off that is on now: the interface's
/// `rx-lro` and `rx-gro-hw`, and the `rx-lro` of each of its lower devices in
/// [`SYS_CLASS_NET`], the interface's first. A device whose features cannot be read
/// records none: no reason to refuse the filter.
pub fn on_before_attach(iface: &str) -> Vec<OffloadOn> {
    let mut on = on_now(iface, &Offload::ALL);
    for lower in lower_devices(Path::new(SYS_CLASS_NET), iface) {
        on.extend(on_now(&lower, &[Offload::Lro]));
    }
    on
}

/// Those of `taken` on on `dev` now.
fn on_now(dev: &str, taken: &[Offload]) -> Vec<OffloadOn> {
    let active = active(dev).unwrap_or_default();
    taken
        .iter()
        .filter(|o| active.contains(o))
        .map(|&offload| OffloadOn { iface: dev.into(), offload })
        .collect()
}

/// The lower devices of `iface` under `root` (a `/sys/class/net`), and theirs in turn,
/// each once, in the order `dev_disable_lro` goes down them: a VLAN's real device, a
/// bond's slaves, a VLAN on a bond's bond and then its slaves. One with no entry under
/// `root` is in another network namespace (the link is there, its device is not seen
/// here), and is left out: it cannot be read or set from here.
pub fn lower_devices(root: &Path, iface: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut below = vec![iface.to_owned()];
    while let Some(dev) = below.pop() {
        let direct: Vec<String> = links(&root.join(&dev), "lower_")
            .into_iter()
            .filter(|lower| lower != iface && !found.contains(lower) && root.join(lower).exists())
            .collect();
        found.extend(direct.iter().cloned());
        // Depth first, in name order: reversed onto the stack.
        below.extend(direct.into_iter().rev());
    }
    found
}

/// The devices named by the `PREFIXNAME` entries in `dir`, one interface's directory
/// (`lower_` or `upper_`), in name order; none when it cannot be read (an interface gone
/// meanwhile has no device below or above to restore).
fn links(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_prefix(prefix).map(str::to_owned))
        .collect();
    names.sort_unstable();
    names
}

/// The devices directly above `iface` under `root` (its `upper_NAME` entries: a VLAN on
/// it, its bond) whose offloads, as `active` reads them, lack `rx-lro`: the kernel keeps
/// a lower device's `rx-lro` off while any device above has it off.
fn holding_lro_off(root: &Path, iface: &str, active: impl Fn(&str) -> Vec<Offload>) -> Vec<String> {
    links(&root.join(iface), "upper_")
        .into_iter()
        .filter(|upper| root.join(upper).exists() && !active(upper).contains(&Offload::Lro))
        .collect()
}

/// What `down` turns back on: the offloads `recorded` on before the attach that are
/// not among those on `now`.
pub fn to_restore(recorded: &[Offload], now: &[Offload]) -> Vec<Offload> {
    recorded.iter().copied().filter(|o| !now.contains(o)).collect()
}

/// What `down` turned back on of what XDP had turned off, and what it could not,
/// one refusal per device.
#[derive(Debug, Default)]
pub struct Restored {
    pub turned_on: Vec<OffloadOn>,
    pub failed: Vec<NotRestored>,
}

impl Restored {
    /// What `down` on `iface` says it did of them: `rx-gro-hw and rx-lro turned back on
    /// (XDP had turned them off)`, a lower device's named (`rx-lro on eth0 turned
    /// back on …`); `None` when it turned none on.
    pub fn turned_on_line(&self, iface: &str) -> Option<String> {
        let on = &self.turned_on;
        (!on.is_empty()).then(|| {
            // Devices named as soon as one is not the interface: `rx-lro on bond0 and rx-lro
            // on eth0`, not `rx-lro and rx-lro on eth0`.
            let with_devices = on.iter().any(|o| o.iface != iface);
            let what = sentence(on.iter().map(|o| o.said(with_devices)).collect());
            format!("{what} turned back on (XDP had turned {} off)", them(on, "it", "them"))
        })
    }
}

/// Offloads XDP had turned off that could not be turned back on.
#[derive(Debug, thiserror::Error)]
#[error(
    "XDP had turned {} off on {iface}, and {} not be turned back on",
    names(.offloads),
    them(.offloads, "it could", "they could")
)]
pub struct NotRestored {
    pub iface: String,
    pub offloads: Vec<Offload>,
    #[source]
    pub source: OffloadsError,
}

/// `one` or `more`, as `items` are one or more.
pub fn them<T>(items: &[T], one: &'static str, more: &'static str) -> &'static str {
    if items.len() == 1 { one } else { more }
}

/// Turns back on the offloads of `recorded` that are off on their devices now, device by
/// device in the order recorded (the interface before its lower devices: the kernel
/// leaves `rx-lro` off on a device whose upper device does not want it,
/// `netdev_sync_upper_features`): those turned on (none when none was off), and those
/// that could not be, with why.
pub fn restore(recorded: &[OffloadOn]) -> Restored {
    let mut restored = Restored::default();
    for (dev, offloads) in by_device(recorded) {
        let (turned_on, failed) = restore_on(&dev, &offloads);
        restored
            .turned_on
            .extend(turned_on.into_iter().map(|offload| OffloadOn { iface: dev.clone(), offload }));
        restored.failed.extend(failed);
    }
    restored
}

/// `recorded` grouped by device, each device where it first appears.
fn by_device(recorded: &[OffloadOn]) -> Vec<(String, Vec<Offload>)> {
    let mut devices: Vec<(String, Vec<Offload>)> = Vec::new();
    for on in recorded {
        match devices.iter_mut().find(|(dev, _)| *dev == on.iface) {
            Some((_, offloads)) => offloads.push(on.offload),
            None => devices.push((on.iface.clone(), vec![on.offload])),
        }
    }
    devices
}

/// [`restore`] on one device.
fn restore_on(iface: &str, recorded: &[Offload]) -> (Vec<Offload>, Option<NotRestored>) {
    match turn_back_on(iface, recorded) {
        Ok(turned_on) => (turned_on, None),
        Err(source) => {
            let (turned_on, offloads) = match &source {
                OffloadsError::StillOff { turned_on, offloads, .. } => (turned_on.clone(), offloads.clone()),
                OffloadsError::HeldOffAbove { turned_on, .. } => (turned_on.clone(), vec![Offload::Lro]),
                _ => (Vec::new(), recorded.to_vec()),
            };
            (turned_on, Some(NotRestored { iface: iface.into(), offloads, source }))
        }
    }
}

fn turn_back_on(iface: &str, recorded: &[Offload]) -> Result<Vec<Offload>> {
    let features = Features::of(iface)?;
    let wanted = to_restore(recorded, &features.active_in(&features.get(iface)?));
    if wanted.is_empty() {
        return Ok(wanted);
    }
    features.turn_on(iface, &wanted)?;
    // The kernel may take the request and leave a feature off (`ETHTOOL_F_WISH`: the
    // driver's constraints): only what is on now was turned back on.
    let now = features.active_in(&features.get(iface)?);
    let still_off = to_restore(&wanted, &now);
    if !still_off.is_empty() {
        let turned_on = wanted.into_iter().filter(|o| now.contains(o)).collect();
        if still_off == [Offload::Lro] {
            let uppers =
                holding_lro_off(Path::new(SYS_CLASS_NET), iface, |up| active(up).unwrap_or_default());
            if !uppers.is_empty() {
                return Err(OffloadsError::HeldOffAbove { iface: iface.into(), uppers, turned_on });
            }
        }
        return Err(OffloadsError::StillOff { iface: iface.into(), offloads: still_off, turned_on });
    }
    Ok(wanted)
}

/// The interface's feature bits: how many words its masks take, and the bit of each of
/// [`Offload::ALL`] it names.
struct Features {
    blocks: usize,
    bits: Vec<(Offload, u32)>,
}

impl Features {
    fn of(iface: &str) -> Result<Features> {
        let count = feature_count(iface)?;
        let names = feature_names(iface, count)?;
        Ok(Features { blocks: count.div_ceil(32) as usize, bits: feature_bits(&names, &Offload::ALL) })
    }

    /// Those of [`Offload::ALL`] on in `words`, what [`Features::get`] read.
    fn active_in(&self, words: &[u32]) -> Vec<Offload> {
        self.bits.iter().filter(|&&(_, bit)| is_active(words, bit)).map(|&(o, _)| o).collect()
    }

    fn bit(&self, offload: Offload) -> Option<u32> {
        self.bits.iter().find(|&&(o, _)| o == offload).map(|&(_, bit)| bit)
    }

    /// `ETHTOOL_GFEATURES`: the `struct ethtool_gfeatures` the kernel filled, as words.
    fn get(&self, iface: &str) -> Result<Vec<u32>> {
        let mut buf = vec![0u32; 2 + GET_BLOCK_WORDS * self.blocks];
        buf[0] = ETHTOOL_GFEATURES;
        buf[1] = self.blocks as u32;
        // SAFETY: a header and the `size` blocks it announces, the most the kernel writes.
        unsafe { ethtool(iface, buf.as_mut_ptr().cast()) }.map_err(failed("ETHTOOL_GFEATURES", iface))?;
        Ok(buf)
    }

    /// `ETHTOOL_SFEATURES`: `offloads` requested on.
    fn turn_on(&self, iface: &str, offloads: &[Offload]) -> Result<()> {
        let bits: Vec<u32> = offloads.iter().filter_map(|&o| self.bit(o)).collect();
        let mut buf = set_request(self.blocks, &bits);
        // SAFETY: a header and the `size` blocks it announces, which the kernel reads.
        unsafe { ethtool(iface, buf.as_mut_ptr().cast()) }.map_err(failed("ETHTOOL_SFEATURES", iface))?;
        Ok(())
    }
}

fn failed(call: &'static str, iface: &str) -> impl FnOnce(std::io::Error) -> OffloadsError {
    move |source| OffloadsError::Ethtool { call, iface: iface.into(), source }
}

/// `ETHTOOL_GSSET_INFO` for `ETH_SS_FEATURES`: how many features the kernel names.
fn feature_count(iface: &str) -> Result<u32> {
    /// `struct ethtool_sset_info` with room for one set's count.
    #[repr(C)]
    struct SsetInfo {
        cmd: u32,
        reserved: u32,
        sset_mask: u64,
        data: [u32; 1],
    }
    let mut info =
        SsetInfo { cmd: ETHTOOL_GSSET_INFO, reserved: 0, sset_mask: 1 << ETH_SS_FEATURES, data: [0] };
    // SAFETY: one set asked, so one count written: `data` holds it.
    unsafe { ethtool(iface, (&raw mut info).cast()) }.map_err(failed("ETHTOOL_GSSET_INFO", iface))?;
    if info.sset_mask & (1 << ETH_SS_FEATURES) == 0 {
        return Err(OffloadsError::NoFeatureSet { iface: iface.into() });
    }
    Ok(info.data[0])
}

/// `ETHTOOL_GSTRINGS` for `ETH_SS_FEATURES`: the `count` names, 32 bytes each.
fn feature_names(iface: &str, count: u32) -> Result<Vec<u8>> {
    // Words, for the header's alignment: `cmd`, `string_set`, `len`, then the strings.
    let mut buf = vec![0u32; 3 + count as usize * ETH_GSTRING_LEN / 4];
    buf[0] = ETHTOOL_GSTRINGS;
    buf[1] = ETH_SS_FEATURES;
    buf[2] = count;
    // SAFETY: a header and room for `count` strings: the kernel writes as many as the set
    // has (whatever `len` says), and the set's count is what it just said, fixed at build.
    unsafe { ethtool(iface, buf.as_mut_ptr().cast()) }.map_err(failed("ETHTOOL_GSTRINGS", iface))?;
    Ok(buf[3..].iter().flat_map(|w| w.to_ne_bytes()).collect())
}

/// The bit of each of `wanted` in the feature strings `names` (32 bytes each, NUL-padded;
/// the first is bit 0); those it lacks are left out.
fn feature_bits(names: &[u8], wanted: &[Offload]) -> Vec<(Offload, u32)> {
    let mut bits = Vec::new();
    for (bit, name) in names.chunks_exact(ETH_GSTRING_LEN).enumerate() {
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if let Some(&offload) = wanted.iter().find(|o| o.name().as_bytes() == &name[..len]) {
            bits.push((offload, bit as u32));
        }
    }
    bits.sort_unstable();
    bits
}

/// Whether `bit` is active in a `struct ethtool_gfeatures` read as `words`.
fn is_active(words: &[u32], bit: u32) -> bool {
    let at = 2 + GET_BLOCK_WORDS * (bit / 32) as usize + ACTIVE;
    words.get(at).is_some_and(|w| w & (1 << (bit % 32)) != 0)
}

/// A `struct ethtool_sfeatures` of `blocks` blocks, as words, that turns `bits` on (each
/// in `valid` and `requested`) and leaves every other feature as it is.
fn set_request(blocks: usize, bits: &[u32]) -> Vec<u32> {
    let mut buf = vec![0u32; 2 + SET_BLOCK_WORDS * blocks];
    buf[0] = ETHTOOL_SFEATURES;
    buf[1] = blocks as u32;
    for &bit in bits {
        let at = 2 + SET_BLOCK_WORDS * (bit / 32) as usize;
        buf[at] |= 1 << (bit % 32);
        buf[at + 1] |= 1 << (bit % 32);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<u8> {
        let mut buf = vec![0u8; names.len() * ETH_GSTRING_LEN];
        for (i, name) in names.iter().enumerate() {
            buf[i * ETH_GSTRING_LEN..][..name.len()].copy_from_slice(name.as_bytes());
        }
        buf
    }

    #[test]
    fn each_offload_is_found_by_its_name_at_its_index() {
        // As a 6.12 kernel names them around these bits, with an empty (undefined) one.
        let mut names = vec!["tx-scatter-gather"; 40];
        names[15] = "";
        names[15 + 1] = "rx-lro";
        names[36] = "rx-gro-hw";
        names[37] = "rx-gro-hw-x";
        let bits = feature_bits(&strings(&names), &Offload::ALL);
        assert_eq!(bits, [(Offload::GroHw, 36), (Offload::Lro, 16)]);
    }

    #[test]
    fn a_name_filling_its_32_bytes_and_a_short_buffer_are_read_without_panic() {
        let mut buf = strings(&["rx-lro"]);
        buf.extend([b'x'; ETH_GSTRING_LEN]);
        buf.extend([0; 5]);
        assert_eq!(feature_bits(&buf, &Offload::ALL), [(Offload::Lro, 0)]);
        assert!(feature_bits(&strings(&["rx-gro", "lro"]), &Offload::ALL).is_empty());
    }

    #[test]
    fn active_bits_are_read_from_each_block_s_third_word() {
        // Two blocks: {available, requested, active, never_changed} each.
        let words = [ETHTOOL_GFEATURES, 2, !0, !0, 1 << 16, 0, !0, 0, 1 << 4, !0];
        assert!(is_active(&words, 16));
        assert!(!is_active(&words, 15));
        assert!(is_active(&words, 36));
        assert!(!is_active(&words, 35));
        assert!(!is_active(&words, 64), "past the blocks read: off");
    }

    #[test]
    fn a_request_sets_valid_and_requested_for_its_bits_alone() {
        let words = set_request(2, &[16, 36]);
        assert_eq!(words, [ETHTOOL_SFEATURES, 2, 1 << 16, 1 << 16, 1 << 4, 1 << 4]);
        assert_eq!(set_request(1, &[]), [ETHTOOL_SFEATURES, 1, 0, 0]);
    }

    #[test]
    fn down_restores_what_was_on_and_is_off_now() {
        use Offload::{GroHw, Lro};
        assert_eq!(to_restore(&[GroHw, Lro], &[]), [GroHw, Lro]);
        assert_eq!(to_restore(&[GroHw, Lro], &[Lro]), [GroHw]);
        assert_eq!(to_restore(&[GroHw], &[GroHw, Lro]), []);
        // Off before `up`: left off, whatever it is now.
        assert_eq!(to_restore(&[], &[]), []);
        assert_eq!(to_restore(&[Lro], &[GroHw]), [Lro]);
    }

    fn on(iface: &str, offload: Offload) -> OffloadOn {
        OffloadOn { iface: iface.into(), offload }
    }

    fn turned_on(turned_on: Vec<OffloadOn>) -> Restored {
        Restored { turned_on, failed: Vec::new() }
    }

    #[test]
    fn down_says_what_it_turned_back_on_and_nothing_when_none() {
        assert_eq!(turned_on(Vec::new()).turned_on_line("eth0"), None);
        assert_eq!(
            turned_on(vec![on("eth0", Offload::GroHw)]).turned_on_line("eth0").unwrap(),
            "rx-gro-hw turned back on (XDP had turned it off)"
        );
        assert_eq!(
            turned_on(vec![on("eth0", Offload::GroHw), on("eth0", Offload::Lro)])
                .turned_on_line("eth0")
                .unwrap(),
            "rx-gro-hw and rx-lro turned back on (XDP had turned them off)"
        );
        let failed = NotRestored {
            iface: "eth0".into(),
            offloads: vec![Offload::Lro],
            source: OffloadsError::StillOff {
                iface: "eth0".into(),
                offloads: vec![Offload::Lro],
                turned_on: vec![],
            },
        };
        assert_eq!(
            crate::one_line(&failed),
            "XDP had turned rx-lro off on eth0, and it could not be turned back on: \
             eth0's driver left rx-lro off when asked to turn it on"
        );
    }

    #[test]
    fn an_lro_a_device_above_holds_off_is_said_so_not_blamed_on_the_driver() {
        let root = tempfile::tempdir().unwrap();
        for dev in ["eth0", "eth0.100", "eth0.200", "bond0"] {
            std::fs::create_dir(root.path().join(dev)).unwrap();
        }
        for upper in ["eth0.100", "eth0.200", "gone0"] {
            std::os::unix::fs::symlink(
                root.path().join(upper),
                root.path().join("eth0").join(format!("upper_{upper}")),
            )
            .unwrap();
        }
        // eth0.200 has rx-lro on; gone0 is in another namespace (no entry here).
        let lro_on = |dev: &str| if dev == "eth0.200" { vec![Offload::Lro] } else { vec![] };
        assert_eq!(holding_lro_off(root.path(), "eth0", lro_on), ["eth0.100"]);
        assert!(holding_lro_off(root.path(), "bond0", lro_on).is_empty());
        let failed = NotRestored {
            iface: "eth0".into(),
            offloads: vec![Offload::Lro],
            source: OffloadsError::HeldOffAbove {
                iface: "eth0".into(),
                uppers: vec!["eth0.100".into(), "eth0.200".into()],
                turned_on: vec![],
            },
        };
        assert_eq!(
            crate::one_line(&failed),
            "XDP had turned rx-lro off on eth0, and it could not be turned back on: \
             eth0 kept rx-lro off when asked to turn it on, as eth0.100 and eth0.200 above it have it off"
        );
    }

    #[test]
    fn down_names_the_lower_devices_it_turned_an_offload_back_on_on() {
        assert_eq!(
            turned_on(vec![on("eth0", Offload::Lro)]).turned_on_line("eth0.100").unwrap(),
            "rx-lro on eth0 turned back on (XDP had turned it off)"
        );
        let bond = vec![on("bond0", Offload::GroHw), on("eth1", Offload::Lro), on("eth2", Offload::Lro)];
        assert_eq!(
            turned_on(bond).turned_on_line("bond0").unwrap(),
            "rx-gro-hw on bond0, rx-lro on eth1 and rx-lro on eth2 turned back on (XDP had turned them off)"
        );
    }

    #[test]
    fn restore_goes_device_by_device_in_the_order_recorded() {
        let recorded = [on("bond0", Offload::GroHw), on("eth1", Offload::Lro), on("bond0", Offload::Lro)];
        assert_eq!(
            by_device(&recorded),
            [
                ("bond0".to_owned(), vec![Offload::GroHw, Offload::Lro]),
                ("eth1".to_owned(), vec![Offload::Lro])
            ]
        );
        assert!(by_device(&[]).is_empty());
        // No device named, none asked: nothing to turn on, nothing failed.
        let none = restore(&[]);
        assert!(none.turned_on.is_empty() && none.failed.is_empty());
    }

    /// A `/sys/class/net` of `devices`, each with a `lower_NAME` link per lower device to
    /// its directory, as the kernel makes them.
    fn sys_class_net(devices: &[(&str, &[&str])]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (dev, lower) in devices {
            std::fs::create_dir_all(root.path().join(dev)).unwrap();
            std::fs::write(root.path().join(dev).join("mtu"), "1500\n").unwrap();
            for l in *lower {
                std::os::unix::fs::symlink(
                    format!("../{l}"),
                    root.path().join(dev).join(format!("lower_{l}")),
                )
                .unwrap();
            }
        }
        root
    }

    #[test]
    fn lower_devices_are_found_from_the_lower_links_recursively() {
        let root = sys_class_net(&[
            ("eth0", &[]),
            ("eth1", &[]),
            ("eth2", &[]),
            ("eth0.100", &["eth0"]),
            ("bond0", &["eth2", "eth1"]),
            ("bond0.7", &["bond0"]),
            ("lo", &[]),
        ]);
        let lower = |iface| lower_devices(root.path(), iface);
        assert_eq!(lower("eth0.100"), ["eth0"]);
        assert_eq!(lower("bond0"), ["eth1", "eth2"]);
        assert_eq!(lower("bond0.7"), ["bond0", "eth1", "eth2"]);
        assert!(lower("eth0").is_empty());
        assert!(lower("gone").is_empty(), "an interface not there has none");
    }

    #[test]
    fn a_lower_device_in_another_namespace_is_left_out_and_each_is_found_once() {
        // `veth9`'s link is there, its directory is not: it is not seen from here.
        let root = sys_class_net(&[("eth0", &[]), ("br0", &["eth0", "veth9"]), ("br0.5", &["br0", "eth0"])]);
        assert_eq!(lower_devices(root.path(), "br0"), ["eth0"]);
        assert_eq!(lower_devices(root.path(), "br0.5"), ["br0", "eth0"]);
    }

    #[test]
    fn names_read_as_a_sentence_and_serialize_as_ethtool_says_them() {
        assert_eq!(names(&[Offload::GroHw, Offload::Lro]), "rx-gro-hw and rx-lro");
        assert_eq!(names(&[Offload::Lro]), "rx-lro");
        assert_eq!(names(&[]), "");
        assert_eq!(serde_json::to_string(&Offload::ALL).unwrap(), r#"["rx-gro-hw","rx-lro"]"#);
        assert_eq!(
            serde_json::to_string(&on("eth0", Offload::Lro)).unwrap(),
            r#"{"iface":"eth0","offload":"rx-lro"}"#
        );
    }
}
