//! Sampled drop events: `firewall drops` and `firewall serve --log-drops`; with them, the
//! flows the rules with `log = true` admit, told as `ACCEPT`.
//!
//! The seed warns that logging every drop fills disks, so the kernel sends none until a
//! listener asks: [`Listening`] sets `CONFIG_LOG_DROPS` and the rate of the events' own
//! token bucket (`TOKEN_BUCKETS[LOG_BUCKET]`), and clears the flag again when it goes. A
//! drop within the rate sends a [`DropEvent`], the line it was counted on and the frame's
//! first bytes, through the filter's ring buffer (`DROP_EVENTS`, pinned with its other maps,
//! read through [`Events`]); here they are decoded (etherparse) and named (the
//! listing), and told the way iptables' LOG target tells them, which log watchers such
//! as fail2ban already read:
//!
//! `DROP IN=eth0 OUT= CHAIN=INPUT RULE=policy SRC=203.0.113.99 DST=198.51.100.1 LEN=60 PROTO=TCP SPT=41234 DPT=23`
use std::{
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use etherparse::{LaxNetSlice, LaxSlicedPacket};
pub use firewall_common::DropEvent;
use firewall_common::{
    CONFIG_LOG_DROPS, DROP_EVENT_BYTES, Direction, LOG_BUCKET, Line, MAP_DROP_EVENTS, MAP_TOKEN_BUCKETS,
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TokenBucket,
};

use crate::{
    compile::{LineKind, chain_name},
    kernel::{
        Filter,
        maps::{LiveMaps, call, check_pinned, open_pinned},
        pins::{Pins, PinsError},
    },
    ops::{LiveError, Result},
    view::snapshot::Snapshot,
};

/// The most events a second a listener may ask for.
pub const MAX_RATE: u32 = 10_000;

/// The event a ring record holds, as the kernel wrote it; `None` for a record of another
/// size, or with fields no event has (the ring is the kernel's: checked, not trusted blindly).
pub fn event_of(record: &[u8]) -> Option<DropEvent> {
    if record.len() != size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: `record` holds size_of::<DropEvent>() bytes, and a DropEvent is plain
    // integers and bytes (`#[repr(C)]`, no padding), so any bytes are one; unaligned, as
    // the ring promises only 8-byte alignment and this assumes none.
    let event = unsafe { record.as_ptr().cast::<DropEvent>().read_unaligned() };
    (event.direction().is_some() && usize::from(event.head_len) <= DROP_EVENT_BYTES).then_some(event)
}

/// The drop events' ring of a live filter, opened from its pin: events wait there until
/// read, whichever process loaded the filter.
pub struct Events {
    ring: RingBuf<MapData>,
}

impl Events {
    /// Opens the ring of the filter `pins` names; a filter an older version loaded has
    /// none, and is refused as the other commands refuse it (`MapsError::MissingPinned`).
    pub fn open(pins: &Pins) -> Result<Events> {
        check_pinned(pins)?;
        let map = open_pinned(pins, MAP_DROP_EVENTS)?;
        let ring = RingBuf::try_from(map).map_err(call(MAP_DROP_EVENTS, "open"))?;
        Ok(Events { ring })
    }

    /// Hands every event waiting to `each`, in the order the kernel sent them.
    pub fn drain(&mut self, mut each: impl FnMut(DropEvent)) {
        while let Some(record) = self.ring.next() {
            if let Some(event) = event_of(&record) {
                each(event);
            }
        }
    }
}

/// Readable when events wait: for poll(2), and tokio's `AsyncFd`.
impl AsFd for Events {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl AsRawFd for Events {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// What the frame's head shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub protocol: Option<u8>,
    /// TCP and UDP ports.
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// The Ethernet header's ethertype, when no IP header follows it: what the `ethertype`
    /// and `invalid` lines drop at the link layer.
    pub ethertype: Option<u16>,
}

/// Decodes a frame's head, as much of it as there is.
pub fn decode(head: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let Ok(packet) = LaxSlicedPacket::from_ethernet(head) else {
        return out;
    };
    let Some(net) = packet.net else {
        out.ethertype = head.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
        return out;
    };
    let payload = match &net {
        LaxNetSlice::Ipv4(v4) => {
            out.src = Some(IpAddr::V4(v4.header().source_addr()));
            out.dst = Some(IpAddr::V4(v4.header().destination_addr()));
            v4.payload()
        }
        LaxNetSlice::Ipv6(v6) => {
            out.src = Some(IpAddr::V6(v6.header().source_addr()));
            out.dst = Some(IpAddr::V6(v6.header().destination_addr()));
            v6.payload()
        }
    };
    let protocol = payload.ip_number.0;
    out.protocol = Some(protocol);
    let bytes = payload.payload;
    match protocol {
        PROTO_TCP | PROTO_UDP if bytes.len() >= 4 => {
            out.ports =
                Some((u16::from_be_bytes([bytes[0], bytes[1]]), u16::from_be_bytes([bytes[2], bytes[3]])));
        }
        PROTO_ICMP | PROTO_ICMPV6 if bytes.len() >= 2 => out.icmp = Some((bytes[0], bytes[1])),
        _ => {}
    }
    out
}

fn protocol_name(protocol: u8) -> String {
    // netfilter's LOG spelling of the one table's names: upper case, but for `ICMPv6`.
    match firewall_common::protocol_name(protocol) {
        Some(_) if protocol == PROTO_ICMPV6 => "ICMPv6".into(),
        Some(name) => name.to_ascii_uppercase(),
        None => protocol.to_string(),
    }
}

/// The event as iptables' LOG target would write it, with the line that dropped it
/// (`CHAIN=`, `RULE=`, and `MATCH=` for an anti-spoof or blocklist entry).
pub fn render(event: &DropEvent, iface: &str, snapshot: Option<&Snapshot>) -> String {
    // `event_of` let no other direction through.
    let (inbound, outbound) = match event.direction() {
        Some(Direction::Out) => ("", iface),
        _ => (iface, ""),
    };
    let line = snapshot.and_then(|s| {
        s.chains
            .iter()
            .find_map(|c| c.lines.iter().find(|l| l.counter == event.counter).map(|l| (c.chain, l)))
    });
    // A flow a rule with `log` admitted is told on its NEW line, which accepts.
    let verdict = match line {
        Some((_, l)) if matches!(l.kind, LineKind::Rule { line: Line::New, .. }) => "ACCEPT",
        _ => "DROP",
    };
    let mut out = format!("{verdict} IN={inbound} OUT={outbound}");
    match line {
        Some((chain, line)) => {
            out.push_str(&format!(" CHAIN={} RULE={}", chain_name(chain), line.kind.name()));
            if let Some(entry) = line.kind.entry() {
                out.push_str(&format!(" MATCH={entry}"));
            }
        }
        None => out.push_str(&format!(" LINE={}", event.counter)),
    }
    let d = decode(event.head());
    // As netfilter's log writes a frame's ethertype (MACPROTO), for a frame without IP.
    if let Some(ethertype) = d.ethertype {
        out.push_str(&format!(" MACPROTO={ethertype:04x}"));
    }
    if let (Some(src), Some(dst)) = (d.src, d.dst) {
        out.push_str(&format!(" SRC={src} DST={dst}"));
    }
    out.push_str(&format!(" LEN={}", event.len));
    if let Some(protocol) = d.protocol {
        out.push_str(&format!(" PROTO={}", protocol_name(protocol)));
    }
    if let Some((sport, dport)) = d.ports {
        out.push_str(&format!(" SPT={sport} DPT={dport}"));
    }
    if let Some((kind, code)) = d.icmp {
        out.push_str(&format!(" TYPE={kind} CODE={code}"));
    }
    out
}

/// The drop events are on while this lives: the flag and the rate are set, and cleared
/// on drop. Each holds the state lock for as long as it writes `CONFIG`, which changes
/// read, modify and write too.
pub struct Listening {
    filter: Filter,
}

impl Listening {
    /// Turns the events on at `rate` a second (bursts of as many).
    pub fn start(filter: &Filter, rate: u32) -> Result<Listening> {
        let lock = filter.lock()?;
        let mut maps = LiveMaps::open(lock.pins())?;
        let interval_ns = 1_000_000_000 / u64::from(rate.clamp(1, MAX_RATE));
        let bucket = TokenBucket { tat: 0, interval_ns, burst_ns: u64::from(rate) * interval_ns };
        maps.token_buckets.set(LOG_BUCKET, bucket, 0).map_err(call(MAP_TOKEN_BUCKETS, "set"))?;
        maps.set_flag(CONFIG_LOG_DROPS, true)?;
        Ok(Listening { filter: filter.clone() })
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        // A filter gone meanwhile has no flag to clear.
        if !self.filter.pins().is_up() {
            return;
        }
        let cleared = self
            .filter
            .lock_pins()
            .map_err(LiveError::from)
            .and_then(|lock| Ok(LiveMaps::open(lock.pins())?.set_flag(CONFIG_LOG_DROPS, false)?));
        match cleared {
            Ok(()) | Err(LiveError::Pins(crate::kernel::pins::PinsError::NotUp { .. })) => {}
            Err(err) => {
                eprintln!(
                    "firewall: turning the drop events off on {}: {}",
                    self.filter.iface(),
                    crate::one_line(&err)
                );
            }
        }
    }
}

/// Whether `snapshot` names the line `event` was counted on; if not, a reload added the
/// line since, and the listing must be read again.
pub fn names(snapshot: &Snapshot, event: &DropEvent) -> bool {
    snapshot.chains.iter().any(|c| c.lines.iter().any(|l| l.counter == event.counter))
}

/// `firewall drops`: the events turned on, read and told as lines until stopped.
pub struct Follow {
    filter: Filter,
    snapshot: Snapshot,
    events: Events,
    on: Listening,
}

impl Follow {
    /// Turns the events on at `rate` a second, on a filter whose interface is still there.
    pub fn start(filter: &Filter, rate: u32) -> Result<Follow> {
        filter.check_interface()?;
        let snapshot = Snapshot::take(filter.pins())?;
        let events = Events::open(filter.pins())?;
        let on = Listening::start(filter, rate)?;
        Ok(Follow { filter: filter.clone(), snapshot, events, on })
    }

    /// Tells each event to `each`, as a LOG line, until `stop` is set or the filter is down.
    pub fn run(mut self, stop: &AtomicBool, mut each: impl FnMut(&str)) -> Result<()> {
        let pins = self.filter.pins().clone();
        let snapshot = &mut self.snapshot;
        stream(&pins, &mut self.events, &self.on, stop, |event| {
            if !names(snapshot, &event)
                && let Ok(fresh) = Snapshot::take(&pins)
            {
                *snapshot = fresh;
            }
            each(&render(&event, &pins.iface, Some(snapshot)));
        })
    }
}

/// Streams the drop events of `events`, the filter `pins` names, to `each`, until `stop`
/// is set, while `_on` keeps them on; fails once the filter is down. An `up` or `reload`
/// meanwhile keeps the ring (it is pinned, and the new programs use the pinned maps).
pub fn stream(
    pins: &Pins,
    events: &mut Events,
    _on: &Listening,
    stop: &AtomicBool,
    mut each: impl FnMut(DropEvent),
) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        if !pins.is_up() {
            return Err(PinsError::NotUp { iface: pins.iface.clone(), dir: pins.dir.clone() }.into());
        }
        // Woken by the kernel as events arrive; the timeout only to look at `stop`.
        wait_readable(events, Duration::from_millis(200));
        events.drain(&mut each);
    }
    Ok(())
}

fn wait_readable(fd: &impl std::os::fd::AsFd, timeout: Duration) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(timeout.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    // Interrupted or not, the caller reads what there is.
    let _ = poll(&mut fds, timeout);
}

/// A `--rate` that is not a number from 1 to [`MAX_RATE`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the rate of drop events is 1 to {MAX_RATE} a second, not {0:?}")]
pub struct BadRate(pub String);

/// `--rate`: events a second, 1 to MAX_RATE.
pub fn parse_rate(text: &str) -> std::result::Result<u32, BadRate> {
    text.parse::<u32>().ok().filter(|r| (1..=MAX_RATE).contains(r)).ok_or_else(|| BadRate(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::LineKind;

    /// An IPv4 TCP SYN from 203.0.113.99:41234 to 198.51.100.1:23, as its first 54 bytes.
    fn syn() -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([203, 0, 113, 99], [198, 51, 100, 1], 64)
            .tcp(41234, 23, 1, 64240)
            .syn();
        let mut frame = Vec::new();
        builder.write(&mut frame, &[]).unwrap();
        frame
    }

    /// An event as the kernel fills it: the head's first bytes, the rest left as the ring
    /// had them (here, bytes no frame has).
    fn event(direction: Direction, counter: u32, len: u32, head: &[u8]) -> DropEvent {
        let mut event = DropEvent {
            counter,
            len,
            head_len: head.len() as u16,
            direction: direction as u8,
            _pad: 0,
            head: [0xee; DROP_EVENT_BYTES],
        };
        event.head[..head.len()].copy_from_slice(head);
        event
    }

    /// The record the ring holds for `event`: its bytes, as the kernel wrote them.
    fn record(event: &DropEvent) -> Vec<u8> {
        // SAFETY: a DropEvent is plain integers and bytes with no padding: all of it is
        // initialised.
        unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref::<DropEvent>(event).cast::<u8>(),
                size_of::<DropEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn reads_the_kernel_s_record() {
        let sent = event(Direction::Out, 6, 54, &syn());
        let event = event_of(&record(&sent)).unwrap();
        assert_eq!((event.direction(), event.counter, event.len), (Some(Direction::Out), 6, 54));
        assert_eq!(event.head(), syn());
        assert_eq!(
            render(&event, "eth0", None),
            "DROP IN= OUT=eth0 LINE=6 SRC=203.0.113.99 DST=198.51.100.1 LEN=54 PROTO=TCP SPT=41234 DPT=23"
        );
        // What no event holds is no event.
        let mut bytes = record(&sent);
        assert_eq!(event_of(&bytes[1..]), None);
        bytes[10] = 2; // the direction
        assert_eq!(event_of(&bytes), None);
        let head_len = (DROP_EVENT_BYTES as u16 + 1).to_ne_bytes();
        let mut bytes = record(&sent);
        bytes[8..10].copy_from_slice(&head_len);
        assert_eq!(event_of(&bytes), None);
    }

    #[test]
    fn tells_it_as_iptables_log_does() {
        let sent = event(Direction::In, 9999, 54, &syn());
        assert_eq!(
            render(&sent, "eth0", None),
            "DROP IN=eth0 OUT= LINE=9999 SRC=203.0.113.99 DST=198.51.100.1 LEN=54 PROTO=TCP SPT=41234 DPT=23"
        );
        // A head cut short still says what it has.
        let sent = event(Direction::Out, 9999, 54, &syn()[..34]);
        assert_eq!(
            render(&sent, "eth0", None),
            "DROP IN= OUT=eth0 LINE=9999 SRC=203.0.113.99 DST=198.51.100.1 LEN=54 PROTO=TCP"
        );
    }

    #[test]
    fn names_the_line() {
        let text = "[host]\naddress = \"198.51.100.1\"\n[[rule]]\nname = \"ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = [\"192.0.2.7\"]\n";
        let policy = crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let ids = crate::compile::Ids::assign(&policy, &Default::default());
        let state = crate::kernel::pins::LiveState {
            policy_file: "p.toml".into(),
            ids,
            programs: 0,
            runtime_only: false,
            mode: None,
            applied_with: Default::default(),
            offloads_to_restore: Vec::new(),
        };
        let snapshot = Snapshot::from_parts(policy, state, Vec::new(), std::time::Instant::now());
        let policy_line =
            firewall_common::builtin_counter(firewall_common::Chain::Input, firewall_common::Builtin::Policy);
        let event = event(Direction::In, policy_line, 54, &syn());
        assert!(
            render(&event, "eth0", Some(&snapshot))
                .starts_with("DROP IN=eth0 OUT= CHAIN=INPUT RULE=policy SRC=")
        );
        let spoof =
            snapshot.chains[0].lines.iter().find(|l| matches!(l.kind, LineKind::Antispoof(_))).unwrap();
        let event = DropEvent { counter: spoof.counter, ..event };
        assert!(
            render(&event, "eth0", Some(&snapshot))
                .contains(&format!("CHAIN=INPUT RULE=antispoof MATCH={} ", spoof.source)),
            "{}",
            render(&event, "eth0", Some(&snapshot))
        );
    }

    #[test]
    fn a_rule_named_as_an_entry_is_told_as_a_rule() {
        // `blocklist` is no reserved name: a rule may have it, and its lines are a rule's
        // (an event on its NEW line is an admit it tells, with `log`).
        let text = "[host]\naddress = \"198.51.100.1\"\n[[rule]]\nname = \"blocklist\"\ndirection = \"out\"\nprotocols = [\"tcp\"]\nport = 23\npeers = [\"203.0.113.99\"]\n";
        let policy = crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let ids = crate::compile::Ids::assign(&policy, &Default::default());
        let line = firewall_common::rule_counter(ids.rule("blocklist"), firewall_common::Line::New);
        let state = crate::kernel::pins::LiveState {
            policy_file: "p.toml".into(),
            ids,
            programs: 0,
            runtime_only: false,
            mode: None,
            applied_with: Default::default(),
            offloads_to_restore: Vec::new(),
        };
        let snapshot = Snapshot::from_parts(policy, state, Vec::new(), std::time::Instant::now());
        let event = event(Direction::Out, line, 54, &syn());
        assert_eq!(
            render(&event, "eth0", Some(&snapshot)),
            "ACCEPT IN= OUT=eth0 CHAIN=OUTPUT RULE=blocklist SRC=203.0.113.99 DST=198.51.100.1 LEN=54 PROTO=TCP SPT=41234 DPT=23"
        );
    }

    #[test]
    fn names_a_frame_dropped_at_the_link_layer_by_its_ethertype() {
        let text = "[host]\naddress = \"198.51.100.1\"\n";
        let policy = crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let ids = crate::compile::Ids::assign(&policy, &Default::default());
        let state = crate::kernel::pins::LiveState {
            policy_file: "p.toml".into(),
            ids,
            programs: 0,
            runtime_only: false,
            mode: None,
            applied_with: Default::default(),
            offloads_to_restore: Vec::new(),
        };
        let snapshot = Snapshot::from_parts(policy, state, Vec::new(), std::time::Instant::now());
        let line = firewall_common::builtin_counter(
            firewall_common::Chain::Output,
            firewall_common::Builtin::OtherEthertype,
        );
        // An MPLS label, then an IPv4 header: not read.
        let mut mpls = syn();
        mpls.splice(12..14, [0x88, 0x47, 0, 0, 0x11, 64]);
        let event = event(Direction::Out, line, 58, &mpls);
        assert_eq!(
            render(&event, "eth0", Some(&snapshot)),
            "DROP IN= OUT=eth0 CHAIN=OUTPUT RULE=ethertype MACPROTO=8847 LEN=58"
        );
    }

    #[test]
    fn rates_are_bounded() {
        assert_eq!(parse_rate("10"), Ok(10));
        assert_eq!(
            parse_rate("0").unwrap_err().to_string(),
            "the rate of drop events is 1 to 10000 a second, not \"0\""
        );
        assert!(parse_rate("fast").is_err());
    }
}
