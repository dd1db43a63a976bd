//! `[dns] learn`, the kernel's side as `firewall serve` sees it (see firewall-ebpf's
//! `dns`): the ring of the DNS answers the filter holds, the listener's deadline that
//! keeps them held, and their hand-back to the interface.
//!
//! The deadline is moved on every second ([`HeldAnswers::listen`]); a `serve` stopped or
//! stuck lets it lapse, and the filter passes answers unheld again within
//! [`LISTEN_FOR`]. An answer is handed back by a live-frames test run of an XDP program
//! that passes it, on the interface it came in by: the frame enters that interface's stack
//! as if it had just arrived. Before, a marker in `DNS_RELEASED` waits for it, so that its
//! second pass through a generic-mode filter lets it through. One process at a time reads
//! a filter's answers (a ring has one reader): it holds [`LEARNER_LOCK`].
use std::{
    ffi::CString,
    net::IpAddr,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    time::Duration,
};

use aya::{
    EbpfLoader, TestRun,
    maps::{Array, HashMap, Map, MapData, RingBuf},
    programs::{ProgramError, TestRunAttrs, TestRunOptions, Xdp},
};
use firewall_common::{
    DNS_ANSWER_BYTES, DnsAnswer, FlowKey, MAP_DNS_ANSWERS, MAP_DNS_LISTENER, MAP_DNS_RELEASED, PROTO_UDP,
    ReleasedKey,
};

use super::{
    filter::kernel_time_ns,
    maps::{MapsError, call, open_pinned},
    pins::Pins,
};

/// The file in the state directory whose `flock` the process reading the answers holds.
pub const LEARNER_LOCK: &str = "learning.lock";

/// The program that hands a frame back, and the one that checks the kernel lets it.
const RELEASE: &str = "dns_release";
const PROBE: &str = "dns_release_probe";

/// How long the filter holds answers after the last [`HeldAnswers::listen`].
pub const LISTEN_FOR: Duration = Duration::from_secs(3);
/// How long a hand-back's marker waits for its second pass.
const MARKER_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error(transparent)]
    Maps(#[from] MapsError),
    #[error("loading the program that hands answers back")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("loading the program that hands answers back")]
    Program(#[source] ProgramError),
    #[error(
        "the kernel refuses to hand frames back to {iface} (a live-frames run of an XDP program): answers are not held, names are learned by asking"
    )]
    Refused {
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error("{0}: no such interface here")]
    NoInterface(String),
    #[error("another process reads the DNS answers of the filter on {0}")]
    AnotherReader(String),
    #[error("{call} {path}")]
    Lock {
        call: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("handing an answer back to {iface}")]
    Release {
        iface: String,
        #[source]
        source: ProgramError,
    },
}

pub type Result<T> = std::result::Result<T, HeldError>;

/// The held answers of one filter, and the means to hand them back.
pub struct HeldAnswers {
    ring: RingBuf<MapData>,
    listener: Array<MapData, u64>,
    released: HashMap<MapData, ReleasedKey, u64>,
    /// The hand-back's program, in its object's keeping.
    release: aya::Ebpf,
    iface: String,
    ifindex: u32,
    /// [`LEARNER_LOCK`], held.
    _reader: nix::fcntl::Flock<std::fs::File>,
}

impl HeldAnswers {
    /// Opens the maps of the filter `pins` names and loads the hand-back; `None` for a
    /// filter an earlier version put up, without them (its next `up` adds them).
    pub fn open(pins: &Pins) -> Result<Option<HeldAnswers>> {
        let open = |name: &'static str| -> Result<Option<Map>> {
            if !pins.map_path(name).exists() {
                return Ok(None);
            }
            Ok(Some(open_pinned(pins, name)?))
        };
        let (Some(ring), Some(listener), Some(released)) =
            (open(MAP_DNS_ANSWERS)?, open(MAP_DNS_LISTENER)?, open(MAP_DNS_RELEASED)?)
        else {
            return Ok(None);
        };
        let reader = lock_reader(pins)?;
        let name =
            CString::new(pins.iface.as_str()).map_err(|_| HeldError::NoInterface(pins.iface.clone()))?;
        // SAFETY: a NUL-terminated name; the call only reads it.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(HeldError::NoInterface(pins.iface.clone()));
        }
        let release = load_hand_back(&pins.iface, ifindex)?;
        Ok(Some(HeldAnswers {
            ring: RingBuf::try_from(ring).map_err(call(MAP_DNS_ANSWERS, "open"))?,
            listener: Array::try_from(listener).map_err(call(MAP_DNS_LISTENER, "open"))?,
            released: HashMap::try_from(released).map_err(call(MAP_DNS_RELEASED, "open"))?,
            release,
            iface: pins.iface.clone(),
            ifindex,
            _reader: reader,
        }))
    }

    /// Has the filter hold answers for [`LISTEN_FOR`] more.
    pub fn listen(&mut self) -> Result<()> {
        let until = kernel_time_ns() + LISTEN_FOR.as_nanos() as u64;
        Ok(self.listener.set(0, until, 0).map_err(call(MAP_DNS_LISTENER, "set"))?)
    }

    /// Has the filter pass answers unheld again at once.
    pub fn stop(&mut self) -> Result<()> {
        Ok(self.listener.set(0, 0, 0).map_err(call(MAP_DNS_LISTENER, "set"))?)
    }

    /// Hands every answer waiting to `each`, a frame at a time, in the order they came.
    pub fn drain(&mut self, mut each: impl FnMut(Vec<u8>)) {
        while let Some(record) = self.ring.next() {
            if record.len() >= std::mem::size_of::<DnsAnswer>() {
                // SAFETY: the record is at least a DnsAnswer's size, which the kernel
                // wrote whole; read unaligned, as the ring promises 8-byte alignment only.
                let answer = unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<DnsAnswer>()) };
                each(answer.frame().to_vec());
            }
        }
    }

    /// Hands `frame`, an answer the filter held (as [`crate::names::check_checksum`] left
    /// it), back to the interface it came in by.
    pub fn release(&mut self, frame: &[u8]) -> Result<()> {
        if let Some(key) = released_key(frame) {
            let until = kernel_time_ns() + MARKER_FOR.as_nanos() as u64;
            self.released.insert(key, until, 0).map_err(call(MAP_DNS_RELEASED, "insert"))?;
        }
        live_run(&mut self.release, RELEASE, frame, self.ifindex)
            .map_err(|source| HeldError::Release { iface: self.iface.clone(), source })?;
        Ok(())
    }
}

/// Loads the hand-back's object, and checks that the kernel lets this process hand frames
/// back to the interface `iface` (index `ifindex`): the hand-back's own kind of run, of a
/// frame the probe drops. So a process the kernel will not let run it (a unit's system
/// call filter, a kernel that refuses live-frames runs) never holds an answer it could not
/// hand back.
pub fn load_hand_back(iface: &str, ifindex: u32) -> Result<aya::Ebpf> {
    let mut release =
        EbpfLoader::new().load(crate::DNS_RELEASE_OBJECT).map_err(|e| HeldError::Load(Box::new(e)))?;
    for name in [RELEASE, PROBE] {
        program(&mut release, name).and_then(|p| p.load()).map_err(HeldError::Program)?;
    }
    live_run(&mut release, PROBE, &[0; 64], ifindex)
        .map_err(|source| HeldError::Refused { iface: iface.to_owned(), source })?;
    Ok(release)
}

/// The XDP program `name` of the hand-back's object.
fn program<'a>(object: &'a mut aya::Ebpf, name: &str) -> std::result::Result<&'a mut Xdp, ProgramError> {
    object.program_mut(name).ok_or(ProgramError::NotLoaded)?.try_into()
}

/// Runs the program `name` once in live-frames mode on `frame` (at most an answer's
/// bytes), as if it had come in by the interface `ifindex`: what it passes enters that
/// interface's stack.
fn live_run(
    object: &mut aya::Ebpf,
    name: &str,
    frame: &[u8],
    ifindex: u32,
) -> std::result::Result<(), ProgramError> {
    let program = program(object, name)?;
    // struct xdp_md: data, data_end (the frame's length), data_meta, ingress_ifindex
    // (the interface whose stack takes the frame), rx_queue_index, egress_ifindex.
    let len = u32::try_from(frame.len().min(DNS_ANSWER_BYTES)).expect("a short frame");
    let ctx: Vec<u8> = [0, len, 0, ifindex, 0, 0].iter().flat_map(|w: &u32| w.to_ne_bytes()).collect();
    program.test_run(TestRunOptions {
        data_in: Some(&frame[..len as usize]),
        ctx_in: Some(&ctx),
        repeat: 1,
        attrs: TestRunAttrs::new().xdp_live_frames(1),
        ..TestRunOptions::new()
    })?;
    Ok(())
}

/// Takes [`LEARNER_LOCK`] of the filter `pins` names, or says who has it.
fn lock_reader(pins: &Pins) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let path = pins.state.join(LEARNER_LOCK);
    let file = crate::files::open_lock(&path).map_err(|source| HeldError::Lock {
        call: "open",
        path: path.clone(),
        source,
    })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(locked),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(HeldError::AnotherReader(pins.iface.clone())),
        Err((_, errno)) => Err(HeldError::Lock { call: "flock", path, source: errno.into() }),
    }
}

/// The marker of `frame`'s hand-back, as the filter's program keys it: its flow, inbound
/// (the resolver the peer, port 53 its port), and its length.
fn released_key(frame: &[u8]) -> Option<ReleasedKey> {
    let packet = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    let Some(etherparse::TransportSlice::Udp(udp)) = &packet.transport else {
        return None;
    };
    let peer: IpAddr = match packet.net.as_ref()? {
        etherparse::NetSlice::Ipv4(ip) => ip.header().source_addr().into(),
        etherparse::NetSlice::Ipv6(ip) => ip.header().source_addr().into(),
    };
    let flow = FlowKey {
        peer: crate::policy::to_addr(peer),
        peer_port: udp.source_port(),
        local_port: udp.destination_port(),
        protocol: PROTO_UDP,
        _pad: 0,
        _pad2: 0,
    };
    Some(ReleasedKey { flow, len: u32::try_from(frame.len()).ok()?, _pad: 0 })
}

/// Readable when answers wait: for tokio's `AsyncFd`.
impl AsFd for HeldAnswers {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

impl AsRawFd for HeldAnswers {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}
