//! Loading the kernel object, filling its maps, attaching, pinning, and finding a live
//! filter again.
//!
//! `up` pins every map and both links under [`Pins::dir`], so the filter outlives the
//! command: `/sys/fs/bpf/firewall/IFACE/` in the host's network namespace, and
//! `/sys/fs/bpf/firewall/netns-INODE/IFACE/` in any other (bpffs is one per host while
//! interface names are per namespace). A copy of the policy it enforces goes to
//! [`Pins::state`], for `list`.
use std::{
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, lpm_trie::Key},
    programs::{
        ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
    },
};
use firewall_common::{
    AllowKey, AllowValue, Config, Counter, MAP_ALLOW_EXACT, MAP_ALLOW_PREFIX, MAP_ANTISPOOF_DST,
    MAP_ANTISPOOF_SRC, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_TOKEN_BUCKETS, MAPS, PROG_EGRESS,
    PROG_INGRESS, TokenBucket,
};

use crate::{
    compile::{MapPlan, plan},
    policy::{Policy, Prefix},
};

/// What can go wrong, each naming the call that failed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("needs root (CAP_BPF and CAP_NET_ADMIN): run it with sudo")]
    NeedsRoot,
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    #[error("a filter is already up on {iface} (pinned at {dir}); run `firewall down --iface {iface}` first")]
    AlreadyUp { iface: String, dir: PathBuf },
    #[error("no filter is up on {iface} (nothing pinned at {dir})")]
    NotUp { iface: String, dir: PathBuf },
    #[error("no filter is up in this network namespace; run `firewall up --policy FILE`")]
    NoneUp,
    #[error("filters are up on {0}: say which with --iface")]
    WhichInterface(String),
    #[error("no interface to attach to: give --iface or [host] interface in the policy")]
    NoInterfaceGiven,
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("{call} {name}: {source}")]
    Program {
        call: &'static str,
        name: &'static str,
        source: ProgramError,
    },
    #[error("attaching XDP to {iface} in {mode:?} mode: {source}{hint}")]
    AttachXdp {
        iface: String,
        mode: XdpMode,
        source: ProgramError,
        hint: &'static str,
    },
    #[error("map {name}: {call}: {source}")]
    Map {
        name: &'static str,
        call: &'static str,
        source: MapError,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        source: aya::pin::PinError,
    },
    #[error("opening the pinned link {path}: {source}")]
    Link { path: PathBuf, source: LinkError },
    #[error("{call} {path}: {source}")]
    Io {
        call: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, FilterError>;

fn io_err(call: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FilterError {
    let path = path.to_owned();
    move |source| FilterError::Io { call, path, source }
}

fn map_err(name: &'static str, call: &'static str) -> impl FnOnce(MapError) -> FilterError {
    move |source| FilterError::Map { name, call, source }
}

/// Fails with [`FilterError::NeedsRoot`] unless the process is root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(FilterError::NeedsRoot);
    }
    Ok(())
}

pub const PIN_ROOT: &str = "/sys/fs/bpf/firewall";
pub const STATE_ROOT: &str = "/run/firewall";
const INGRESS_LINK: &str = "ingress_link";
const EGRESS_LINK: &str = "egress_link";
const POLICY_COPY: &str = "policy.toml";

fn netns_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// This network namespace's part of the pin path: empty in the host's namespace,
/// `netns-NAME` in one that `ip netns` named, `netns-INODE` in any other.
fn namespace_part() -> PathBuf {
    let Some(ours) = netns_inode(Path::new("/proc/self/ns/net")) else {
        return PathBuf::new();
    };
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            if netns_inode(&entry.path()) == Some(ours) {
                return PathBuf::from(format!("netns-{}", entry.file_name().to_string_lossy()));
            }
        }
    }
    // PID 1's namespace is the host's; a sandbox may hide it, and then so be it.
    match netns_inode(Path::new("/proc/1/ns/net")) {
        Some(init) if init != ours => PathBuf::from(format!("netns-{ours}")),
        _ => PathBuf::new(),
    }
}

/// Mounts bpffs on /sys/fs/bpf when nothing is mounted there, as bpftool and ip do.
fn ensure_bpffs() -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let dir = Path::new("/sys/fs/bpf");
    let path = std::ffi::CString::new("/sys/fs/bpf").expect("no NUL");
    // SAFETY: statfs into a zeroed struct with a valid path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } == 0 && stat.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let source = std::ffi::CString::new("bpffs").expect("no NUL");
    let fstype = std::ffi::CString::new("bpf").expect("no NUL");
    let data = std::ffi::CString::new("mode=0700").expect("no NUL");
    // SAFETY: valid C strings; mounting is what root may do.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(FilterError::Io {
            call: "mount bpffs on",
            path: dir.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Where a filter on one interface keeps its pins and its state.
#[derive(Clone, Debug)]
pub struct Pins {
    pub iface: String,
    /// bpffs: the maps by name, and the two links.
    pub dir: PathBuf,
    /// tmpfs: the policy in force.
    pub state: PathBuf,
}

impl Pins {
    pub fn for_iface(iface: &str) -> Pins {
        let ns = namespace_part();
        Pins {
            iface: iface.to_owned(),
            dir: Path::new(PIN_ROOT).join(&ns).join(iface),
            state: Path::new(STATE_ROOT).join(&ns).join(iface),
        }
    }

    /// The interface given, or the only one with a filter up in this namespace.
    pub fn find(iface: Option<&str>) -> Result<Pins> {
        if let Some(iface) = iface {
            let pins = Pins::for_iface(iface);
            if !pins.is_up() {
                return Err(FilterError::NotUp {
                    iface: iface.into(),
                    dir: pins.dir,
                });
            }
            return Ok(pins);
        }
        let root = Path::new(PIN_ROOT).join(namespace_part());
        let mut up = Vec::new();
        if let Ok(entries) = fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with("netns-") && Pins::for_iface(&name).is_up() {
                    up.push(name);
                }
            }
        }
        match up.as_slice() {
            [] => Err(FilterError::NoneUp),
            [one] => Ok(Pins::for_iface(one)),
            _ => Err(FilterError::WhichInterface(up.join(", "))),
        }
    }

    pub fn is_up(&self) -> bool {
        self.dir.join(INGRESS_LINK).exists() || self.dir.join(EGRESS_LINK).exists()
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The policy the live filter enforces.
    pub fn policy(&self) -> std::result::Result<Policy, crate::policy::PolicyError> {
        crate::policy::load(&self.state.join(POLICY_COPY))
    }

    /// Opens one pinned map.
    pub fn open_map(&self, name: &'static str) -> Result<Map> {
        let data = MapData::from_pin(self.map_path(name)).map_err(map_err(name, "open pinned"))?;
        Map::from_map_data(data).map_err(map_err(name, "open pinned"))
    }
}

/// The kernel object loaded, its maps filled from a policy, its programs verified and
/// loaded but not attached.
pub struct Loaded {
    pub ebpf: Ebpf,
}

impl Loaded {
    /// Loads the object and fills its maps from `policy`; with `pins`, creates every map
    /// pinned there.
    pub fn load(policy: &Policy, pins: Option<&Pins>) -> Result<Loaded> {
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(MAP_CONNTRACK, policy.conntrack.max_entries);
        let paths: Vec<(&'static str, PathBuf)> = pins
            .map(|p| MAPS.iter().map(|name| (*name, p.map_path(name))).collect())
            .unwrap_or_default();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(crate::EBPF_OBJECT)?;
        fill(&mut ebpf, &plan(policy))?;
        let xdp: &mut Xdp = program(&mut ebpf, PROG_INGRESS)?;
        xdp.load().map_err(|source| FilterError::Program {
            call: "load",
            name: PROG_INGRESS,
            source,
        })?;
        let tc: &mut SchedClassifier = program(&mut ebpf, PROG_EGRESS)?;
        tc.load().map_err(|source| FilterError::Program {
            call: "load",
            name: PROG_EGRESS,
            source,
        })?;
        Ok(Loaded { ebpf })
    }

    pub fn ingress(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_INGRESS)
    }

    pub fn egress(&mut self) -> Result<&mut SchedClassifier> {
        program(&mut self.ebpf, PROG_EGRESS)
    }

    pub fn map_mut(&mut self, name: &'static str) -> Result<&mut Map> {
        self.ebpf.map_mut(name).ok_or(FilterError::MissingMap(name))
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(FilterError::MissingProgram(name))?;
    program.try_into().map_err(|source| FilterError::Program {
        call: "type of",
        name,
        source,
    })
}

fn prefix_key(prefix: &Prefix) -> Key<[u8; 4]> {
    Key::new(u32::from(prefix.len), prefix.addr.octets())
}

/// Writes a plan into the maps; `CONFIG` last, since its ready bit turns the filter on.
fn fill(ebpf: &mut Ebpf, plan: &MapPlan) -> Result<()> {
    {
        let map = ebpf
            .map_mut(MAP_ALLOW_EXACT)
            .ok_or(FilterError::MissingMap(MAP_ALLOW_EXACT))?;
        let mut exact: HashMap<_, AllowKey, AllowValue> =
            HashMap::try_from(map).map_err(map_err(MAP_ALLOW_EXACT, "open"))?;
        for (key, value) in &plan.allow_exact {
            exact
                .insert(key, value, 0)
                .map_err(map_err(MAP_ALLOW_EXACT, "insert"))?;
        }
    }
    {
        let map = ebpf
            .map_mut(MAP_ALLOW_PREFIX)
            .ok_or(FilterError::MissingMap(MAP_ALLOW_PREFIX))?;
        let mut prefixes: LpmTrie<_, AllowKey, AllowValue> =
            LpmTrie::try_from(map).map_err(map_err(MAP_ALLOW_PREFIX, "open"))?;
        for (len, key, value) in &plan.allow_prefix {
            prefixes
                .insert(&Key::new(*len, *key), value, 0)
                .map_err(map_err(MAP_ALLOW_PREFIX, "insert"))?;
        }
    }
    for (name, entries) in [
        (MAP_ANTISPOOF_SRC, &plan.antispoof_sources),
        (MAP_ANTISPOOF_DST, &plan.antispoof_destinations),
    ] {
        let map = ebpf.map_mut(name).ok_or(FilterError::MissingMap(name))?;
        let mut trie: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(map).map_err(map_err(name, "open"))?;
        for (prefix, counter) in entries {
            trie.insert(&prefix_key(prefix), counter, 0)
                .map_err(map_err(name, "insert"))?;
        }
    }
    {
        let map = ebpf
            .map_mut(MAP_TOKEN_BUCKETS)
            .ok_or(FilterError::MissingMap(MAP_TOKEN_BUCKETS))?;
        let mut buckets: Array<_, TokenBucket> =
            Array::try_from(map).map_err(map_err(MAP_TOKEN_BUCKETS, "open"))?;
        for (rule, bucket) in &plan.token_buckets {
            buckets
                .set(*rule, bucket, 0)
                .map_err(map_err(MAP_TOKEN_BUCKETS, "set"))?;
        }
    }
    let map = ebpf
        .map_mut(MAP_CONFIG)
        .ok_or(FilterError::MissingMap(MAP_CONFIG))?;
    let mut config: Array<_, Config> = Array::try_from(map).map_err(map_err(MAP_CONFIG, "open"))?;
    config
        .set(0, plan.config, 0)
        .map_err(map_err(MAP_CONFIG, "set"))?;
    Ok(())
}

/// How `up` attaches XDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Native (driver) mode where the driver has it, else generic.
    #[default]
    Auto,
    /// Driver mode only.
    Native,
    /// Generic mode, in the kernel's stack: works on every interface.
    Skb,
}

impl Mode {
    fn xdp(self) -> XdpMode {
        match self {
            Mode::Auto => XdpMode::Default,
            Mode::Native => XdpMode::Driver,
            Mode::Skb => XdpMode::Skb,
        }
    }
}

fn if_index(iface: &str) -> Option<u32> {
    let name = std::ffi::CString::new(iface).ok()?;
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Loads, fills, attaches XDP ingress and TC egress to `iface`, pins everything, and
/// returns with the filter in place. On any failure, undoes what it did.
pub fn up(policy: &Policy, policy_text: &str, iface: &str, mode: Mode) -> Result<Pins> {
    require_root()?;
    if if_index(iface).is_none() {
        return Err(FilterError::NoInterface(iface.into()));
    }
    ensure_bpffs()?;
    let pins = Pins::for_iface(iface);
    if pins.is_up() {
        return Err(FilterError::AlreadyUp {
            iface: iface.into(),
            dir: pins.dir,
        });
    }
    // Stale map pins from an interrupted `up` would be reused with old contents.
    remove_pins(&pins)?;
    fs::create_dir_all(&pins.dir).map_err(io_err("mkdir", &pins.dir))?;
    let result = attach_and_pin(policy, policy_text, &pins, mode);
    if result.is_err() {
        let _ = remove_pins(&pins);
    }
    result.map(|()| pins)
}

fn attach_and_pin(policy: &Policy, policy_text: &str, pins: &Pins, mode: Mode) -> Result<()> {
    let mut loaded = Loaded::load(policy, Some(pins))?;
    let iface = pins.iface.as_str();

    let xdp = loaded.ingress()?;
    let id = xdp
        .attach(iface, mode.xdp())
        .map_err(|source| FilterError::AttachXdp {
            iface: iface.into(),
            mode: mode.xdp(),
            hint: if mode == Mode::Native {
                "; driver mode unsupported? try --mode skb"
            } else {
                ""
            },
            source,
        })?;
    let link = xdp.take_link(id).map_err(|source| FilterError::Program {
        call: "take_link",
        name: PROG_INGRESS,
        source,
    })?;
    let link = FdLink::try_from(link).map_err(|source| FilterError::Link {
        path: pins.dir.join(INGRESS_LINK),
        source,
    })?;
    let path = pins.dir.join(INGRESS_LINK);
    link.pin(&path)
        .map_err(|source| FilterError::Pin { path, source })?;

    let tc = loaded.egress()?;
    let id = tc
        .attach(iface, TcAttachType::Egress)
        .map_err(|source| FilterError::Program {
            call: "attach TC egress",
            name: PROG_EGRESS,
            source,
        })?;
    let link = tc.take_link(id).map_err(|source| FilterError::Program {
        call: "take_link",
        name: PROG_EGRESS,
        source,
    })?;
    let link = FdLink::try_from(link).map_err(|source| FilterError::Link {
        path: pins.dir.join(EGRESS_LINK),
        source,
    })?;
    let path = pins.dir.join(EGRESS_LINK);
    link.pin(&path)
        .map_err(|source| FilterError::Pin { path, source })?;

    fs::create_dir_all(&pins.state).map_err(io_err("mkdir", &pins.state))?;
    let copy = pins.state.join(POLICY_COPY);
    fs::write(&copy, policy_text).map_err(io_err("write", &copy))?;
    Ok(())
}

/// Detaches both programs and removes every pin: the interface is as before `up`.
pub fn down(iface: Option<&str>) -> Result<Pins> {
    require_root()?;
    let pins = Pins::find(iface)?;
    remove_pins(&pins)?;
    Ok(pins)
}

/// Unpins the links (the last reference: the kernel detaches the programs), then the
/// maps, then the directories.
fn remove_pins(pins: &Pins) -> Result<()> {
    for name in [INGRESS_LINK, EGRESS_LINK] {
        let path = pins.dir.join(name);
        if path.exists() {
            let link = PinnedLink::from_pin(&path).map_err(|source| FilterError::Link {
                path: path.clone(),
                source,
            })?;
            let link: FdLink = link.unpin().map_err(io_err("unpin", &path))?;
            drop(link);
        }
    }
    for name in MAPS {
        let path = pins.map_path(name);
        if path.exists() {
            fs::remove_file(&path).map_err(io_err("unlink", &path))?;
        }
    }
    for dir in [&pins.dir, &pins.state] {
        if dir.exists() {
            let _ = fs::remove_file(dir.join(POLICY_COPY));
            fs::remove_dir(dir).map_err(io_err("rmdir", dir))?;
        }
        // A namespace's own directory goes with its last filter (fails while not empty).
        if let Some(parent) = dir.parent()
            && parent
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("netns-"))
        {
            let _ = fs::remove_dir(parent);
        }
    }
    Ok(())
}

/// Every line's counters, summed over the CPUs, indexed by counter id.
pub fn read_counters(map: Map) -> Result<Vec<Counter>> {
    let counters: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(map).map_err(map_err(MAP_COUNTERS, "open"))?;
    let mut out = Vec::with_capacity(counters.len() as usize);
    for values in counters.iter() {
        let values = values.map_err(map_err(MAP_COUNTERS, "lookup"))?;
        out.push(values.iter().fold(Counter::default(), |sum, c| Counter {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
        }));
    }
    Ok(out)
}

/// The host address the live filter enforces, read back from the kernel.
pub fn live_address(pins: &Pins) -> Result<Ipv4Addr> {
    let config: Array<_, Config> =
        Array::try_from(pins.open_map(MAP_CONFIG)?).map_err(map_err(MAP_CONFIG, "open"))?;
    let config = config.get(&0, 0).map_err(map_err(MAP_CONFIG, "get"))?;
    Ok(Ipv4Addr::from(config.address))
}
