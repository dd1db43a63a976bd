//! Where a live filter lives: its pins in bpffs and its state in /run.
//!
//! `up` pins every map and both links under [`Pins::dir`], so the filter outlives the
//! command: `/sys/fs/bpf/firewall/IFACE/` in the host's network namespace, and
//! `/sys/fs/bpf/firewall/netns-NAME/IFACE/` in one `ip netns` named
//! (`netns-INODE` in any other): bpffs is one per host while interface names are per
//! namespace. Beside it, in [`Pins::state`], the policy in force and its [`LiveState`].
//!
//! Both are root's alone: every directory 0700, every state file 0600, created so (see
//! `files.rs`). Every change to a live filter holds its [`StateLock`], one
//! exclusive `flock` on a file in the state directory, taken once per command: changes
//! on one interface happen one at a time, and a command that must wait says so and gives
//! up after [`LOCK_WAIT`].
use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::{
    compile::Ids,
    files::{self, FileError, Perms},
};

pub const PIN_ROOT: &str = "/sys/fs/bpf/firewall";
pub const STATE_ROOT: &str = "/run/firewall";
/// Persistent, unlike the two above: the last policy that applied cleanly on each
/// interface, which `up --fallback last-good` applies when the policy file fails to load
/// (at boot, say, after an edit with a typo).
pub const LAST_GOOD_ROOT: &str = "/var/lib/firewall";
pub const INGRESS_LINK: &str = "ingress_link";
pub const EGRESS_LINK: &str = "egress_link";
const POLICY_COPY: &str = "policy.toml";
const LIVE_STATE: &str = "live.json";
/// The named blocklists' index ([`BlockList`]s), and the directory of their prefixes.
const BLOCK_LISTS: &str = "block-lists.json";
const BLOCK_LIST_DIR: &str = "block-lists";
/// The lock every change holds. Not `lock`, the name older versions used: they made it
/// 0644 in a 0755 directory, so a stranger may hold a descriptor of it open still, and
/// with it the lock; this one is only ever made in a directory no one else can enter.
pub const LOCK: &str = "change.lock";
const OLD_LOCK: &str = "lock";
/// How long a command waits for another change on the same interface before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// After this long waiting, a command says what it waits for.
const TELL_AFTER: Duration = Duration::from_secs(1);
/// The record of a change awaiting `firewall confirm` (written by `confirm.rs`).
pub const PENDING: &str = "pending.json";

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error("no filter is up on {iface} (nothing pinned at {dir})")]
    NotUp { iface: String, dir: PathBuf },
    #[error("no filter is up in this network namespace; run `firewall up --policy FILE`")]
    NoneUp,
    #[error("filters are up on {0}: say which with --iface")]
    WhichInterface(String),
    #[error("{call} {path}")]
    Io { call: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "/sys/fs/bpf is private to this command (as under `ip netns exec`), so the filter would vanish with it; run it with `nsenter --net=/run/netns/NAME firewall …` instead"
    )]
    PrivateMounts,
    #[error(
        "a change on {iface} awaits `firewall confirm` (rolled back in {left} s unless confirmed): confirm it, or let it roll back, first"
    )]
    Pending { iface: String, left: u64 },
    // The cause (an io or a JSON or a policy error) is text here, not a `source`: the fix
    // follows it on the same line.
    #[error(
        "the state of the filter on {iface} ({path}) is unreadable: {message}; run `firewall down --iface {iface}` and `up` again"
    )]
    BadState { iface: String, path: PathBuf, message: String },
    #[error(
        "another change on {iface} ({holder}) still holds its lock after {} s; nothing was changed: try again once it is done",
        waited.as_secs()
    )]
    Busy { iface: String, holder: String, waited: Duration },
    #[error("the policy is in force, but keeping it as the last good one at {path} failed")]
    LastGood {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    #[error(transparent)]
    Files(#[from] FileError),
}

type Result<T> = std::result::Result<T, PinsError>;

pub fn io_err(call: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PinsError {
    let path = path.to_owned();
    move |source| PinsError::Io { call, path, source }
}

fn netns_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// The pin path's part for the namespace `ip netns` names `name`, among the namespaces it
/// names, `named`: `netns-NAME`, the name as [`bpffs_name`] writes it. Versions before
/// 2026-12-07 wrote it as it was, a colon or a percent sign kept (and failed on a dot):
/// where a filter is up under that directory and none under this one, it stays there, so
/// an upgrade finds it (`each-filter` does the same) — unless that directory is another
/// namespace's now (`a:b` is `a.b`'s).
fn named_namespace_part(name: &str, named: &[String], pin_root: &Path) -> PathBuf {
    let part = |name: &str| PathBuf::from(format!("netns-{}", bpffs_name(name)));
    let dir = part(name);
    let earlier = PathBuf::from(format!("netns-{name}"));
    if earlier != dir
        && !pin_root.join(&dir).exists()
        && pin_root.join(&earlier).is_dir()
        && !named.iter().any(|other| part(other) == earlier)
    {
        return earlier;
    }
    dir
}

/// This network namespace's part of the pin path: empty in the host's namespace,
/// `netns-NAME` in one that `ip netns` named, `netns-INODE` in any other.
fn namespace_part() -> PathBuf {
    let Some(ours) = netns_inode(Path::new("/proc/self/ns/net")) else {
        return PathBuf::new();
    };
    let named: Vec<(String, Option<u64>)> = fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), netns_inode(&e.path())))
                .collect()
        })
        .unwrap_or_default();
    if let Some((name, _)) = named.iter().find(|(_, inode)| *inode == Some(ours)) {
        let names: Vec<String> = named.iter().map(|(name, _)| name.clone()).collect();
        return named_namespace_part(name, &names, Path::new(PIN_ROOT));
    }
    // PID 1's namespace is the host's; a sandbox may hide it, and then so be it.
    match netns_inode(Path::new("/proc/1/ns/net")) {
        Some(init) if init != ours => PathBuf::from(format!("netns-{ours}")),
        _ => PathBuf::new(),
    }
}

/// Mounts bpffs on /sys/fs/bpf when nothing is mounted there, as bpftool and ip do.
pub fn ensure_bpffs() -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let dir = Path::new("/sys/fs/bpf");
    let path = std::ffi::CString::new("/sys/fs/bpf").expect("no NUL");
    // SAFETY: an all-zero statfs is a valid one (integers only).
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs into that struct, with a valid NUL-terminated path.
    if unsafe { libc::statfs(path.as_ptr(), &raw mut stat) } == 0 && stat.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    // `ip netns exec` runs its command in a mount namespace of its own, with a private
    // /sys: a bpffs mounted there, and every pin in it, vanishes with the command.
    let ours = fs::read_link("/proc/self/ns/mnt").ok();
    let parent = fs::read_link(format!("/proc/{}/ns/mnt", std::os::unix::process::parent_id())).ok();
    if ours.is_some() && parent.is_some() && ours != parent {
        return Err(PinsError::PrivateMounts);
    }
    let source = std::ffi::CString::new("bpffs").expect("no NUL");
    let fstype = std::ffi::CString::new("bpf").expect("no NUL");
    let data = std::ffi::CString::new("mode=0700").expect("no NUL");
    // SAFETY: valid C strings; mounting is what root may do.
    let rc = unsafe { libc::mount(source.as_ptr(), path.as_ptr(), fstype.as_ptr(), 0, data.as_ptr().cast()) };
    if rc != 0 {
        return Err(PinsError::Io {
            call: "mount bpffs on",
            path: dir.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// What a live filter remembers between commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// The policy file `allow`, `revoke` and `reload` read and write (absolute).
    pub policy_file: PathBuf,
    /// The ids the live maps use.
    pub ids: Ids,
    /// What the attached programs do that their maps cannot tell: the
    /// [`PROGRAMS_LEVEL`] of the version that loaded them (0: one before there was one).
    #[serde(default)]
    pub programs: u32,
    /// Whether `allow` or `revoke --runtime-only` changed the live filter since the policy
    /// file was last applied: the policy in force then differs from the file, until a
    /// `reload` or `up` brings the filter back to it.
    #[serde(default)]
    pub runtime_only: bool,
    /// The filter's mode when the state was last saved, as its `CONFIG` held it: what `up`
    /// keeps when another version made `CONFIG` at a layout this one cannot read
    /// (`kernel::relayout`). `None`: saved by a version before it was recorded.
    #[serde(default)]
    pub mode: Option<crate::kernel::maps::Enforcement>,
    /// What the policy in force was applied with beyond its text (the policy copy in the
    /// state directory): a reload of the same text, with this the same, has nothing to
    /// write (see `ops::reload`).
    #[serde(default)]
    pub applied_with: AppliedWith,
    /// The receive offloads that were on before the first `up` attached XDP in generic
    /// mode, each with its device (the interface, or one of its lower devices), which the
    /// kernel turns off then and never back on: `down` turns them on again (see
    /// `kernel::offloads`). Empty: none was on, the hook is native, or the state was
    /// saved by a version before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offloads_to_restore: Vec<crate::kernel::offloads::OffloadOn>,
}

/// Whether a policy `up` puts in force differs from its file by runtime-only changes
/// ([`LiveState::runtime_only`]): only when it is the policy in force put up again
/// (`up --in-force`), which keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeOnly(pub bool);

/// What a policy in force was applied with beyond its text: the binary that planned it,
/// and the interface's addresses when it follows them. Default: not known (the state of
/// an earlier version), so a reload compares the whole plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedWith {
    /// The `firewall` binary that applied it (its file's inode, size and time): another
    /// version may plan the same text otherwise, so an upgraded binary compares in full.
    /// Empty: not known.
    pub binary: String,
    /// With `follow_addresses`, the interface's addresses it was applied with (sorted).
    pub addresses: Option<Vec<std::net::IpAddr>>,
    /// With peers written as DNS names, the addresses each name held (sorted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<std::collections::BTreeMap<String, Vec<std::net::IpAddr>>>,
}

impl AppliedWith {
    /// What `policy` (as `in_force_on` made it) is applied with by this binary.
    pub fn of(policy: &crate::policy::Policy) -> AppliedWith {
        match (policy.follow_addresses, &policy.followed) {
            // Addresses followed but not read: not known.
            (true, None) => AppliedWith::default(),
            (_, addresses) => AppliedWith {
                binary: this_binary(),
                addresses: addresses.clone(),
                names: policy.resolved.clone(),
            },
        }
    }

    /// Whether a policy applied with this would be applied alike now: by this binary,
    /// with the interface `iface`'s addresses as they are, and its names holding what the
    /// filter's record says they hold now.
    pub fn holds_now(&self, iface: &str) -> bool {
        if self.binary.is_empty() || self.binary != this_binary() {
            return false;
        }
        if let Some(then) = &self.names {
            let names: Vec<&str> = then.keys().map(String::as_str).collect();
            let record = crate::names::Names::load(&Pins::for_iface(iface));
            if record.held(&names, crate::unix_now()) != *then {
                return false;
            }
        }
        match &self.addresses {
            None => true,
            Some(then) => {
                let mut now = crate::kernel::filter::interface_addresses(iface).unwrap_or_default();
                now.sort_unstable();
                now == *then
            }
        }
    }
}

/// This binary's file, as the file system knows it: an upgrade replaces it.
fn this_binary() -> String {
    use std::os::unix::fs::MetadataExt as _;
    std::env::current_exe()
        .and_then(fs::metadata)
        .map(|m| {
            format!("{}:{}:{}:{}", m.dev(), m.ino(), m.size(), m.mtime_nsec() + m.mtime() * 1_000_000_000)
        })
        .unwrap_or_default()
}

/// A named blocklist (`firewall block --from FILE --list NAME`). Its prefixes are in the
/// `BLOCK_LISTS` map, and as text in [`Pins::block_list_text`], against which the next
/// load of the list is diffed, so that only what changed touches the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    pub name: String,
    /// Its counters' slot: `block_counter(slot, …)`, taken from the pool `firewall block`'s
    /// entries take theirs from.
    pub slot: u32,
    /// How many prefixes it holds.
    pub entries: usize,
    /// When it was last loaded, in seconds since the epoch.
    pub loaded: u64,
    /// When it expires (`--for`), as `LIST_DEADLINES` has it: `CLOCK_MONOTONIC_COARSE` ns;
    /// 0: it lasts until loaded again or removed.
    #[serde(default)]
    pub deadline_ns: u64,
    /// Its entries in `BLOCK_LISTS` carry their lengths (every one written since the map
    /// `LIST_DEADLINES` came), so that when it expires the programs can look wider. A list
    /// loaded by an older version has not: its first load with `--for` writes them all.
    #[serde(default)]
    pub lengths: bool,
}

impl BlockList {
    /// Whether it has expired by `now` (`CLOCK_MONOTONIC_COARSE` ns), as the programs tell.
    pub fn expired(&self, now: u64) -> bool {
        self.deadline_ns != 0 && now >= self.deadline_ns
    }

    /// Its deadline as an order of how long lists last: one without any lasts longest.
    pub fn lasts(&self) -> u64 {
        if self.deadline_ns == 0 { u64::MAX } else { self.deadline_ns }
    }
}

/// What this version's programs do that their maps cannot tell (a map they read is
/// checked by its presence: see `kernel::maps`), written by `up`:
/// 1. rules with `returns = false` (`ALLOW_ONE_WAY`): older programs track their flows.
/// 2. traps (`ALLOW_TRAP`): older programs admit what a trap matches.
pub const PROGRAMS_LEVEL: u32 = 2;

/// The first level whose programs know `returns = false`.
pub const PROGRAMS_ONE_WAY: u32 = 1;

/// The first level whose programs know traps.
pub const PROGRAMS_TRAP: u32 = 2;

/// Where a filter on one interface keeps its pins and its state.
#[derive(Clone, Debug)]
pub struct Pins {
    pub iface: String,
    /// bpffs: the maps by name, and the two links.
    pub dir: PathBuf,
    /// tmpfs: the policy in force and the live state.
    pub state: PathBuf,
    /// The last policy that applied cleanly, kept across boots.
    pub last_good: PathBuf,
}

/// `name` as bpffs takes it, one name to one directory. bpffs refuses every name with a
/// dot (`bpf_lookup`), and a VLAN is `eth0.100`: a dot becomes a colon. An interface's
/// name holds no colon nor percent sign (`dev_valid_name`, and the kernel expands `%d`),
/// but a network namespace's may hold both: a colon becomes `%3A` and a percent sign
/// `%25`, so namespaces `a.b` and `a:b` are `a:b` and `a%3Ab`, not one directory.
pub fn bpffs_name(name: &str) -> String {
    let mut dir = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '.' => dir.push(':'),
            ':' => dir.push_str("%3A"),
            '%' => dir.push_str("%25"),
            c => dir.push(c),
        }
    }
    dir
}

/// The name whose pins are in the directory `dir`: [`bpffs_name`] undone.
pub fn name_of_bpffs_dir(dir: &str) -> String {
    let mut name = String::with_capacity(dir.len());
    let mut rest = dir;
    while let Some(c) = rest.chars().next() {
        let (decoded, len) = match c {
            ':' => ('.', 1),
            '%' if rest.starts_with("%3A") => (':', 3),
            '%' if rest.starts_with("%25") => ('%', 3),
            c => (c, c.len_utf8()),
        };
        name.push(decoded);
        rest = &rest[len..];
    }
    name
}

impl Pins {
    pub fn for_iface(iface: &str) -> Pins {
        let ns = namespace_part();
        Pins {
            iface: iface.to_owned(),
            dir: Path::new(PIN_ROOT).join(&ns).join(bpffs_name(iface)),
            state: Path::new(STATE_ROOT).join(&ns).join(iface),
            last_good: Path::new(LAST_GOOD_ROOT).join(&ns).join(format!("{iface}.toml")),
        }
    }

    /// The interface given, or the only one with a filter up in this namespace.
    pub fn find(iface: Option<&str>) -> Result<Pins> {
        if let Some(iface) = iface {
            let pins = Pins::for_iface(iface);
            if !pins.is_up() {
                return Err(PinsError::NotUp { iface: iface.into(), dir: pins.dir });
            }
            return Ok(pins);
        }
        let root = Path::new(PIN_ROOT).join(namespace_part());
        let mut up = Vec::new();
        if let Ok(entries) = fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("netns-") {
                    continue;
                }
                let iface = name_of_bpffs_dir(&name);
                if Pins::for_iface(&iface).is_up() {
                    up.push(iface);
                }
            }
        }
        up.sort();
        match up.as_slice() {
            [] => Err(PinsError::NoneUp),
            [one] => Ok(Pins::for_iface(one)),
            _ => Err(PinsError::WhichInterface(up.join(", "))),
        }
    }

    pub fn is_up(&self) -> bool {
        self.dir.join(INGRESS_LINK).exists() || self.dir.join(EGRESS_LINK).exists()
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where a resized map is pinned before it is renamed over [`Pins::map_path`] (see
    /// `kernel::resize`); one left by an interrupted resize is removed with the others.
    /// (bpffs refuses a name with a dot.)
    pub fn staging_map_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-resized"))
    }

    pub fn link_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn bad_state(&self, path: &Path, message: impl ToString) -> PinsError {
        PinsError::BadState { iface: self.iface.clone(), path: path.to_owned(), message: message.to_string() }
    }

    /// The policy text in force.
    pub fn policy_text(&self) -> Result<String> {
        let path = self.state.join(POLICY_COPY);
        fs::read_to_string(&path).map_err(|e| self.bad_state(&path, e))
    }

    /// The policy in force (validated when it was applied), as written: with `[host]
    /// follow_addresses`, the addresses followed are the maps' (see
    /// [`crate::kernel::maps::LiveMaps::with_followed_addresses`]).
    pub fn policy(&self) -> Result<crate::policy::Policy> {
        let path = self.state.join(POLICY_COPY);
        crate::policy::parse(&self.policy_text()?, &path).map_err(|e| self.bad_state(&path, e))
    }

    pub fn live_state(&self) -> Result<LiveState> {
        let path = self.state.join(LIVE_STATE);
        let text = fs::read_to_string(&path).map_err(|e| self.bad_state(&path, e))?;
        serde_json::from_str(&text).map_err(|e| self.bad_state(&path, e))
    }

    /// The named blocklists, by name; none when there is no index.
    pub fn block_lists(&self) -> Result<Vec<BlockList>> {
        let path = self.state.join(BLOCK_LISTS);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| self.bad_state(&path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.bad_state(&path, e)),
        }
    }

    /// The prefixes of the named list `name` as last written, one a line; empty when
    /// it has none.
    pub fn block_list_text(&self, name: &str) -> Result<String> {
        let path = self.state.join(BLOCK_LIST_DIR).join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(self.bad_state(&path, e)),
        }
    }

    /// Whether another process holds the state lock now (a change under way). A look, not
    /// a promise: the lock may be taken the moment after.
    pub fn is_locked(&self) -> bool {
        use nix::fcntl::{Flock, FlockArg};
        let Ok(file) = files::open_lock(&self.state.join(LOCK)) else {
            return false;
        };
        matches!(Flock::lock(file, FlockArg::LockExclusiveNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK)))
    }

    /// The state directory's lock, which every change holds: waits for another change on
    /// this interface to end, saying so on stderr after a second, for at most `wait`. Makes
    /// the state directory (0700) if there is none, and tightens one an older version left
    /// looser.
    ///
    /// A waiter may be handed the lock of a file that `down` (or a command that found no
    /// filter) removed meanwhile, with its directory: such a lock guards nothing, so the
    /// lock is taken again on the file the path names now.
    pub fn lock(&self, wait: Duration) -> Result<StateLock> {
        let path = self.state.join(LOCK);
        let started = Instant::now();
        let mut told = false;
        loop {
            match self.try_lock(&path)? {
                Some(lock) => return Ok(lock),
                None => {
                    let waited = started.elapsed();
                    if waited >= wait {
                        return Err(PinsError::Busy {
                            iface: self.iface.clone(),
                            holder: holder(&path),
                            waited,
                        });
                    }
                    if waited >= TELL_AFTER && !told {
                        eprintln!(
                            "firewall: waiting for another change on {} ({}) …",
                            self.iface,
                            holder(&path)
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// One attempt at the lock: `None` while another holds it.
    fn try_lock(&self, path: &Path) -> Result<Option<StateLock>> {
        use nix::fcntl::{Flock, FlockArg};
        files::private_dir(&self.state, Path::new(STATE_ROOT))?;
        // An older version's lock, which a stranger may hold: unused from now on.
        let _ = fs::remove_file(self.state.join(OLD_LOCK));
        let file = match files::open_lock(path) {
            Ok(file) => file,
            // The directory went (`down`) between its making and the open: again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, errno)) => return Err(io_err("flock", path)(errno.into())),
        };
        let lock = StateLock { pins: self.clone(), lock: locked };
        if !lock.is_current() {
            // Removed (or replaced) while we waited: this lock guards nothing. (Its drop
            // leaves the directory alone: it is not its own.)
            return Ok(None);
        }
        // A live filter's pins, left looser by an older version, are tightened too.
        if self.is_up() {
            self.make_pin_dir()?;
        }
        // Who holds it, for those who wait.
        let record =
            format!("pid {}, firewall {}\n", std::process::id(), std::env::args().nth(1).unwrap_or_default());
        let written = lock.lock.set_len(0).and_then(|()| {
            use std::os::unix::fs::FileExt as _;
            lock.lock.write_all_at(record.as_bytes(), 0)
        });
        written.map_err(io_err("write", path))?;
        Ok(Some(lock))
    }

    /// Makes the pin directory (and those above it, in bpffs), 0700.
    pub fn make_pin_dir(&self) -> Result<()> {
        Ok(files::private_dir(&self.dir, Path::new(PIN_ROOT))?)
    }

    /// Removes the pin directory, and a namespace's own with its last filter.
    pub fn remove_pin_dir(&self) -> Result<()> {
        remove_dir_and_namespace(&self.dir)
    }
}

/// Removes `dir` if it is there, then its `netns-…` parent if that is empty now.
fn remove_dir_and_namespace(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir(dir).map_err(io_err("rmdir", dir))?;
    }
    if let Some(parent) = dir.parent()
        && parent.file_name().is_some_and(|n| n.to_string_lossy().starts_with("netns-"))
    {
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}

/// Who holds the lock at `path`, as its holder wrote it: `pid 1234, firewall allow`.
fn holder(path: &Path) -> String {
    fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "holder unknown".into())
}

/// The state directory's lock, held: proof, for the functions that change a live filter,
/// that no other change runs. One per command, taken once: a second `flock` on a new
/// descriptor in the same process would wait for the first forever.
pub struct StateLock {
    pins: Pins,
    /// Unlocked on drop.
    lock: nix::fcntl::Flock<fs::File>,
}

impl StateLock {
    /// The filter this lock is for.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// Records the policy in force and its state, each file replaced atomically.
    /// The mode is recorded as the live `CONFIG` holds it now, whatever `state` says.
    pub fn save(&self, policy_text: &str, state: &LiveState) -> Result<()> {
        let dir = &self.pins.state;
        files::replace(&dir.join(POLICY_COPY), policy_text.as_bytes(), Perms::Private)?;
        let mode = crate::kernel::maps::live_enforcement(&self.pins).ok().or(state.mode);
        let json = serde_json::to_vec_pretty(&LiveState { mode, ..state.clone() }).expect("plain data");
        Ok(files::replace(&dir.join(LIVE_STATE), &json, Perms::Private)?)
    }

    /// Records the named lists' index, replaced atomically.
    pub fn save_block_lists(&self, lists: &[BlockList]) -> Result<()> {
        let json = serde_json::to_vec_pretty(lists).expect("plain data");
        Ok(files::replace(&self.pins.state.join(BLOCK_LISTS), &json, Perms::Private)?)
    }

    /// Records the prefixes of the named list `name` (one a line), replaced atomically;
    /// `None` removes them.
    pub fn save_block_list_text(&self, name: &str, text: Option<&str>) -> Result<()> {
        let path = self.block_list_path(name)?;
        match text {
            Some(text) => Ok(files::replace(&path, text.as_bytes(), Perms::Private)?),
            None => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
                _ => Ok(()),
            },
        }
    }

    /// Adds lines to the record of the named list `name`.
    pub fn append_block_list_text(&self, name: &str, text: &str) -> Result<()> {
        use std::io::Write as _;
        let path = self.block_list_path(name)?;
        let mut file = files::append_private(&path)?;
        file.write_all(text.as_bytes()).map_err(io_err("append to", &path))
    }

    /// Where the record of the named list `name` is, its directory made.
    fn block_list_path(&self, name: &str) -> Result<PathBuf> {
        let dir = self.pins.state.join(BLOCK_LIST_DIR);
        files::private_dir(&dir, Path::new(STATE_ROOT))?;
        Ok(dir.join(name))
    }

    /// Keeps the policy in force as the last one that applied cleanly, for `up --fallback
    /// last-good`. Called once a change is settled: applied without `--confirm`, or
    /// confirmed.
    pub fn keep_last_good(&self) -> Result<()> {
        let text = self.pins.policy_text()?;
        let keep = || -> std::result::Result<(), FileError> {
            let dir = self.pins.last_good.parent().unwrap_or(Path::new(LAST_GOOD_ROOT));
            files::private_dir(dir, Path::new(LAST_GOOD_ROOT))?;
            files::replace(&self.pins.last_good, text.as_bytes(), Perms::Private)
        };
        keep().map_err(|source| PinsError::LastGood { path: self.pins.last_good.clone(), source })
    }

    /// Refuses a change to the policy while another awaits `firewall confirm`: its
    /// rollback would undo this one too, unseen. `reload`, `allow`, `revoke` and `up` over
    /// a live filter ask; the rollback itself does not. Decided under the lock, so that a
    /// `--confirm` armed meanwhile is seen.
    pub fn refuse_if_pending(&self) -> Result<()> {
        #[derive(Deserialize)]
        struct Deadline {
            deadline: u64,
        }
        let Ok(text) = fs::read_to_string(self.pins.state.join(PENDING)) else {
            return Ok(());
        };
        let deadline = serde_json::from_str::<Deadline>(&text).map_or(0, |d| d.deadline);
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Err(PinsError::Pending { iface: self.pins.iface.clone(), left: deadline.saturating_sub(now) })
    }

    /// Whether the lock's file is still the one its path names.
    fn is_current(&self) -> bool {
        let (Ok(ours), Ok(now)) = (self.lock.metadata(), fs::symlink_metadata(self.pins.state.join(LOCK)))
        else {
            return false;
        };
        (ours.dev(), ours.ino()) == (now.dev(), now.ino())
    }

    /// Removes the state files of a filter that is no longer (the lock's file stays, so
    /// that the lock goes on guarding while it is held).
    pub fn clear_state(&self) -> Result<()> {
        for name in [POLICY_COPY, LIVE_STATE, PENDING, BLOCK_LISTS] {
            let path = self.pins.state.join(name);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("remove", &path)(e)),
                _ => {}
            }
        }
        let lists = self.pins.state.join(BLOCK_LIST_DIR);
        match fs::remove_dir_all(&lists) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("rm -r", &lists)(e)),
            _ => Ok(()),
        }
    }

    /// Removes the state directory with everything in it (a pending `--confirm`
    /// included), and a namespace's own with its last filter (but for the rollback log,
    /// if one was written there). Those who wait for the lock notice and take it anew.
    pub fn remove_state(&self) -> Result<()> {
        let dir = &self.pins.state;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err("rm -r", dir))?;
        }
        remove_dir_and_namespace(dir)
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // A state directory with no filter is of no use: it goes as the lock is let go,
        // as `down` leaves it (a refused first `up`, a command that found the filter
        // gone). Unless it is another's by now: after a `down`, a waiter may have made
        // the directory again, and its lock with it.
        if !self.pins.is_up() && self.is_current() {
            let _ = self.remove_state();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_vlan_s_pins_have_no_dot_in_their_directory_and_its_name_comes_back_whole() {
        for (iface, dir) in [("eth0", "eth0"), ("eth0.100", "eth0:100"), ("bond0.7.3", "bond0:7:3")] {
            assert_eq!(bpffs_name(iface), dir);
            assert_eq!(name_of_bpffs_dir(dir), iface);
            assert!(Pins::for_iface(iface).dir.ends_with(dir), "{iface}");
        }
    }

    #[test]
    fn no_two_namespace_names_share_a_directory_and_each_comes_back_whole() {
        let names = ["a.b", "a:b", "a%3Ab", "a%b", "a%25b", "a:.%", "a%3A.b", "%", "%%3A", "ns-é.1"];
        let dirs: Vec<String> = names.iter().map(|name| bpffs_name(name)).collect();
        for (name, dir) in names.iter().zip(&dirs) {
            assert!(!dir.contains('.'), "{name} as {dir}");
            assert_eq!(name_of_bpffs_dir(dir), *name, "{dir}");
        }
        let unique: std::collections::BTreeSet<&String> = dirs.iter().collect();
        assert_eq!(unique.len(), names.len(), "{dirs:?}");
        assert_eq!((dirs[0].as_str(), dirs[1].as_str(), dirs[3].as_str()), ("a:b", "a%3Ab", "a%25b"));
    }

    #[test]
    fn a_namespace_s_filter_up_under_its_name_as_it_was_stays_there() {
        let root = tempfile::tempdir().unwrap();
        let mut named = vec!["vrf:blue".to_owned(), "plain".to_owned()];
        let part = |name: &str, named: &[String]| {
            named_namespace_part(name, named, root.path()).display().to_string()
        };
        assert_eq!(part("vrf:blue", &named), "netns-vrf%3Ablue", "nothing up yet");
        fs::create_dir(root.path().join("netns-vrf:blue")).unwrap();
        assert_eq!(part("vrf:blue", &named), "netns-vrf:blue", "up under the name as it was");
        assert_eq!(part("plain", &named), "netns-plain");
        // `vrf.blue`'s directory now: not an earlier version's filter of `vrf:blue`.
        named.push("vrf.blue".into());
        assert_eq!(part("vrf:blue", &named), "netns-vrf%3Ablue");
        named.pop();
        fs::create_dir(root.path().join("netns-vrf%3Ablue")).unwrap();
        assert_eq!(part("vrf:blue", &named), "netns-vrf%3Ablue", "up under this version's");
    }

    fn scratch_pins(tag: &str) -> (tempfile::TempDir, Pins) {
        let dir = tempfile::Builder::new().prefix(&format!("pins-{tag}-")).tempdir().unwrap();
        let pins = Pins {
            iface: "eth9".into(),
            dir: dir.path().join("pins").join("eth9"),
            state: dir.path().join("state").join("eth9"),
            last_good: dir.path().join("last-good").join("eth9.toml"),
        };
        (dir, pins)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_lock_is_exclusive_says_who_holds_it_and_gives_up_in_time() {
        let (_dir, pins) = scratch_pins("lock");
        let held = pins.lock(LOCK_WAIT).unwrap();
        assert_eq!(mode(&pins.state), 0o700);
        assert_eq!(mode(&pins.state.join(LOCK)), 0o600);
        let holder = fs::read_to_string(pins.state.join(LOCK)).unwrap();
        assert!(holder.starts_with(&format!("pid {}, firewall", std::process::id())), "{holder:?}");
        // flock locks belong to open files: a second open in this process is another taker.
        let started = Instant::now();
        let Err(err) = pins.lock(Duration::from_millis(300)) else { panic!("the lock was taken twice") };
        assert!(started.elapsed() >= Duration::from_millis(300));
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("another change on eth9 (pid {}, firewall", std::process::id()))
                && text.ends_with(
                    "still holds its lock after 0 s; nothing was changed: try again once it is done"
                ),
            "{text}"
        );
        drop(held);
        // Nothing is up here: the state directory went with the lock.
        assert!(!pins.state.exists());
        let again = pins.lock(Duration::from_millis(300)).unwrap();
        drop(again);
    }

    #[test]
    fn a_waiter_given_the_lock_of_a_removed_directory_takes_it_anew() {
        let (_dir, pins) = scratch_pins("removed");
        let held = pins.lock(LOCK_WAIT).unwrap();
        let waiter = {
            let pins = pins.clone();
            std::thread::spawn(move || {
                let lock = pins.lock(LOCK_WAIT).unwrap();
                // The file it locked is the one the path names, not the removed one.
                let there = pins.state.join(LOCK).exists();
                drop(lock);
                there
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        // As `down` does, with the lock held; then the lock is let go.
        held.remove_state().unwrap();
        drop(held);
        assert!(waiter.join().unwrap(), "the waiter kept the lock of the removed file");
    }

    #[test]
    fn an_older_version_s_loose_directory_is_tightened_and_its_lock_unused() {
        let (_dir, pins) = scratch_pins("old");
        fs::create_dir_all(&pins.state).unwrap();
        fs::set_permissions(&pins.state, fs::Permissions::from_mode(0o755)).unwrap();
        let old = pins.state.join(OLD_LOCK);
        fs::write(&old, "").unwrap();
        // A stranger's hold on the old lock, through a read-only descriptor.
        let stranger =
            nix::fcntl::Flock::lock(fs::File::open(&old).unwrap(), nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .unwrap();
        let lock = pins.lock(Duration::from_millis(500)).expect("the old lock holds up nothing");
        assert_eq!(mode(&pins.state), 0o700);
        assert!(!old.exists());
        drop((lock, stranger));
    }

    #[test]
    fn a_state_saved_before_the_offloads_were_recorded_has_none_to_restore() {
        use crate::kernel::offloads::{Offload, OffloadOn};
        let on = |iface: &str, offload| OffloadOn { iface: iface.into(), offload };
        let state = LiveState {
            policy_file: "/etc/firewall/eth9.toml".into(),
            ids: Ids::default(),
            programs: PROGRAMS_LEVEL,
            runtime_only: false,
            mode: None,
            applied_with: AppliedWith::default(),
            offloads_to_restore: vec![on("eth9.100", Offload::GroHw), on("eth9", Offload::Lro)],
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json["offloads_to_restore"],
            serde_json::json!([
                { "iface": "eth9.100", "offload": "rx-gro-hw" },
                { "iface": "eth9", "offload": "rx-lro" },
            ])
        );
        assert_eq!(serde_json::from_value::<LiveState>(json.clone()).unwrap(), state);
        let mut earlier = json;
        earlier.as_object_mut().unwrap().remove("offloads_to_restore");
        let read = serde_json::from_value::<LiveState>(earlier).unwrap();
        assert_eq!(read, LiveState { offloads_to_restore: Vec::new(), ..state.clone() });
        // None to restore is not written: a state as an earlier version wrote it.
        let none = LiveState { offloads_to_restore: Vec::new(), ..state };
        assert!(serde_json::to_value(&none).unwrap().get("offloads_to_restore").is_none());
    }
}
