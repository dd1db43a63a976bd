//! Sampled drop events: `firewall drops` and `firewall serve --log-drops`.
//!
//! The seed warns that logging every drop fills disks, so the kernel sends none until a
//! listener asks: [`Listening`] sets `CONFIG_LOG_DROPS` and the rate of the events' own
//! token bucket (`TOKEN_BUCKETS[LOG_BUCKET]`), and clears the flag again when it goes. A
//! drop within the rate sends, through aya-log's ring buffer, the line it was counted on
//! and the frame's first bytes; here they are decoded (etherparse) and named (the
//! listing), and told the way iptables' LOG target tells them, which log watchers such
//! as fail2ban already read:
//!
//! `DROP IN=eth0 OUT= CHAIN=INPUT RULE=policy SRC=203.0.113.99 DST=198.51.100.1 LEN=60 PROTO=TCP SPT=41234 DPT=23`
use std::{
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use aya::programs::links::{FdLink, PinnedLink};
use etherparse::{LaxNetSlice, LaxSlicedPacket};
use firewall_common::{CONFIG_LOG_DROPS, Direction, LOG_BUCKET, MAP_TOKEN_BUCKETS, TokenBucket};

use crate::{
    compile::chain_name,
    live::{LiveError, Result},
    maps::{LiveMaps, call},
    pins::{INGRESS_LINK, Pins},
    stats::Snapshot,
};

/// The most events a second a listener may ask for.
pub const MAX_RATE: u32 = 10_000;

/// One drop as the kernel told it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropEvent {
    pub direction: Direction,
    /// The counter id of the line it was counted on.
    pub counter: u32,
    /// The frame's length.
    pub len: u32,
    /// Its first bytes (at most `DROP_EVENT_BYTES`).
    pub head: Vec<u8>,
}

impl DropEvent {
    /// Reads the kernel's message: `drop dir=0 line=70 len=74 head=45…`.
    pub fn parse(message: &str) -> Option<DropEvent> {
        let mut fields = message.strip_prefix("drop ")?.split(' ');
        let mut field = |key: &str| fields.next()?.strip_prefix(key)?.strip_prefix('=').map(str::to_owned);
        let direction = match field("dir")?.as_str() {
            "0" => Direction::In,
            "1" => Direction::Out,
            _ => return None,
        };
        let counter = field("line")?.parse().ok()?;
        let len = field("len")?.parse().ok()?;
        let hex = field("head")?;
        let head = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        Some(DropEvent { direction, counter, len, head })
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
        6 | 17 if bytes.len() >= 4 => {
            out.ports =
                Some((u16::from_be_bytes([bytes[0], bytes[1]]), u16::from_be_bytes([bytes[2], bytes[3]])));
        }
        1 | 58 if bytes.len() >= 2 => out.icmp = Some((bytes[0], bytes[1])),
        _ => {}
    }
    out
}

fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        n => n.to_string(),
    }
}

/// The event as iptables' LOG target would write it, with the line that dropped it
/// (`CHAIN=`, `RULE=`, and `MATCH=` for an anti-spoof or blocklist entry).
pub fn render(event: &DropEvent, iface: &str, snapshot: Option<&Snapshot>) -> String {
    let (inbound, outbound) = match event.direction {
        Direction::In => (iface, ""),
        Direction::Out => ("", iface),
    };
    let mut out = format!("DROP IN={inbound} OUT={outbound}");
    let line = snapshot.and_then(|s| {
        s.chains
            .iter()
            .find_map(|c| c.lines.iter().find(|l| l.counter == event.counter).map(|l| (c.chain, l)))
    });
    match line {
        Some((chain, line)) => {
            out.push_str(&format!(" CHAIN={} RULE={}", chain_name(chain), line.name));
            let entry = match line.name.as_str() {
                "antispoof" | "blocklist" if line.source != crate::compile::ANYWHERE => Some(&line.source),
                "antispoof" | "blocklist" => Some(&line.destination),
                _ => None,
            };
            if let Some(entry) = entry {
                out.push_str(&format!(" MATCH={entry}"));
            }
        }
        None => out.push_str(&format!(" LINE={}", event.counter)),
    }
    let d = decode(&event.head);
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
    pins: Pins,
}

impl Listening {
    /// Turns the events on at `rate` a second (bursts of as many).
    pub fn start(pins: &Pins, rate: u32) -> Result<Listening> {
        let lock = crate::live::lock(Some(&pins.iface))?;
        let mut maps = LiveMaps::open(lock.pins())?;
        let interval_ns = 1_000_000_000 / u64::from(rate.clamp(1, MAX_RATE));
        let bucket = TokenBucket { tat: 0, interval_ns, burst_ns: u64::from(rate) * interval_ns };
        maps.token_buckets.set(LOG_BUCKET, bucket, 0).map_err(call(MAP_TOKEN_BUCKETS, "set"))?;
        maps.set_flag(CONFIG_LOG_DROPS, true)?;
        Ok(Listening { pins: pins.clone() })
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        // A filter gone meanwhile has no flag to clear.
        if !self.pins.is_up() {
            return;
        }
        let cleared = Pins::lock_up(Some(&self.pins.iface))
            .map_err(LiveError::from)
            .and_then(|lock| Ok(LiveMaps::open(lock.pins())?.set_flag(CONFIG_LOG_DROPS, false)?));
        match cleared {
            Ok(()) | Err(LiveError::Pins(crate::pins::PinsError::NotUp { .. })) => {}
            Err(err) => {
                eprintln!(
                    "firewall: turning the drop events off on {}: {}",
                    self.pins.iface,
                    crate::one_line(&err)
                );
            }
        }
    }
}

/// The ingress program's id: aya-log finds the programs' log ring through it.
fn program_id(pins: &Pins) -> Result<u32> {
    let path = pins.link_path(INGRESS_LINK);
    let link =
        |source| LiveError::Filter(Box::new(crate::filter::FilterError::Link { path: path.clone(), source }));
    let pinned = PinnedLink::from_pin(&path).map_err(link)?;
    let info = FdLink::from(pinned).info().map_err(link)?;
    Ok(info.program_id())
}

/// Hands aya-log's records, which are our events, to a channel.
struct Collector(mpsc::Sender<DropEvent>);

impl log::Log for Collector {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if let Some(event) = DropEvent::parse(&record.args().to_string()) {
            let _ = self.0.send(event);
        }
    }

    fn flush(&self) {}
}

#[derive(Debug, thiserror::Error)]
#[error("reading the drop events of program {program}: {source}")]
pub struct LoggerError {
    program: u32,
    source: aya_log::Error,
}

/// Streams the drop events of the filter `pins` names to `each`, until `stop` is set,
/// while `_on` keeps them on. Follows the programs when `up` replaces them (their log ring
/// is new then).
pub fn stream(
    pins: &Pins,
    _on: &Listening,
    stop: &AtomicBool,
    mut each: impl FnMut(DropEvent),
) -> anyhow::Result<()> {
    let (sender, events) = mpsc::channel();
    let mut program = 0;
    let mut logger = None;
    while !stop.load(Ordering::Relaxed) {
        let now = program_id(pins)?;
        if now != program {
            program = now;
            let attached = aya_log::EbpfLogger::init_from_id_with_logger(program, Collector(sender.clone()))
                .map_err(|source| LoggerError { program, source })?;
            logger = Some(attached);
        }
        if let Some(logger) = logger.as_mut() {
            wait_readable(logger, Duration::from_millis(200));
            logger.flush();
        }
        while let Ok(event) = events.try_recv() {
            each(event);
        }
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

/// `--rate`: events a second, 1 to MAX_RATE.
pub fn parse_rate(text: &str) -> std::result::Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|r| (1..=MAX_RATE).contains(r))
        .ok_or_else(|| format!("the rate of drop events is 1 to {MAX_RATE} a second, not {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn reads_the_kernel_s_message() {
        let hex: String = syn().iter().map(|b| format!("{b:02x}")).collect();
        let event = DropEvent::parse(&format!("drop dir=0 line=6 len=54 head={hex}")).unwrap();
        assert_eq!((event.direction, event.counter, event.len), (Direction::In, 6, 54));
        assert_eq!(event.head, syn());
        assert_eq!(DropEvent::parse("drop dir=2 line=6 len=54 head=00"), None);
        assert_eq!(DropEvent::parse("something else"), None);
    }

    #[test]
    fn tells_it_as_iptables_log_does() {
        let event = DropEvent { direction: Direction::In, counter: 9999, len: 54, head: syn() };
        assert_eq!(
            render(&event, "eth0", None),
            "DROP IN=eth0 OUT= LINE=9999 SRC=203.0.113.99 DST=198.51.100.1 LEN=54 PROTO=TCP SPT=41234 DPT=23"
        );
        // A head cut short still says what it has.
        let event = DropEvent { head: syn()[..34].to_vec(), direction: Direction::Out, ..event };
        assert_eq!(
            render(&event, "eth0", None),
            "DROP IN= OUT=eth0 LINE=9999 SRC=203.0.113.99 DST=198.51.100.1 LEN=54 PROTO=TCP"
        );
    }

    #[test]
    fn names_the_line() {
        let text = "[host]\naddress = \"198.51.100.1\"\n[[rule]]\nname = \"ssh\"\ndirection = \"in\"\nprotocols = [\"tcp\"]\nport = 22\npeers = [\"192.0.2.7\"]\n";
        let policy = crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let ids = crate::compile::Ids::assign(&policy, &Default::default());
        let state = crate::pins::LiveState { policy_file: "p.toml".into(), ids };
        let snapshot = Snapshot::from_parts(policy, state, Vec::new(), std::time::Instant::now());
        let policy_line =
            firewall_common::builtin_counter(firewall_common::Chain::Input, firewall_common::Builtin::Policy);
        let event = DropEvent { direction: Direction::In, counter: policy_line, len: 54, head: syn() };
        assert!(
            render(&event, "eth0", Some(&snapshot))
                .starts_with("DROP IN=eth0 OUT= CHAIN=INPUT RULE=policy SRC=")
        );
        let spoof = snapshot.chains[0].lines.iter().find(|l| l.name == "antispoof").unwrap();
        let event = DropEvent { counter: spoof.counter, ..event };
        assert!(
            render(&event, "eth0", Some(&snapshot))
                .contains(&format!("CHAIN=INPUT RULE=antispoof MATCH={} ", spoof.source)),
            "{}",
            render(&event, "eth0", Some(&snapshot))
        );
    }

    #[test]
    fn names_a_frame_dropped_at_the_link_layer_by_its_ethertype() {
        let text = "[host]\naddress = \"198.51.100.1\"\n";
        let policy = crate::policy::parse(text, std::path::Path::new("p.toml")).unwrap();
        let ids = crate::compile::Ids::assign(&policy, &Default::default());
        let state = crate::pins::LiveState { policy_file: "p.toml".into(), ids };
        let snapshot = Snapshot::from_parts(policy, state, Vec::new(), std::time::Instant::now());
        let line = firewall_common::builtin_counter(
            firewall_common::Chain::Output,
            firewall_common::Builtin::OtherEthertype,
        );
        // An MPLS label, then an IPv4 header: not read.
        let mut mpls = syn();
        mpls.splice(12..14, [0x88, 0x47, 0, 0, 0x11, 64]);
        let event = DropEvent { direction: Direction::Out, counter: line, len: 58, head: mpls };
        assert_eq!(
            render(&event, "eth0", Some(&snapshot)),
            "DROP IN= OUT=eth0 CHAIN=OUTPUT RULE=ethertype MACPROTO=8847 LEN=58"
        );
    }

    #[test]
    fn rates_are_bounded() {
        assert_eq!(parse_rate("10"), Ok(10));
        assert_eq!(parse_rate("0"), Err("the rate of drop events is 1 to 10000 a second, not \"0\"".into()));
        assert!(parse_rate("fast").is_err());
    }
}
