//! Where a live filter lives: its pins in bpffs and its state in /run.
//!
//! `up` pins every map and both links under [`Pins::dir`], so the filter outlives the
//! command: `/sys/fs/bpf/firewall/IFACE/` in the host's network namespace, and
//! `/sys/fs/bpf/firewall/netns-NAME/IFACE/` in one `ip netns` named
//! (`netns-INODE` in any other): bpffs is one per host while interface names are per
//! namespace. Beside it, in [`Pins::state`], the policy in force and its [`LiveState`].
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::compile::Ids;

pub const PIN_ROOT: &str = "/sys/fs/bpf/firewall";
pub const STATE_ROOT: &str = "/run/firewall";
pub const INGRESS_LINK: &str = "ingress_link";
pub const EGRESS_LINK: &str = "egress_link";
const POLICY_COPY: &str = "policy.toml";
const LIVE_STATE: &str = "live.json";
const LOCK: &str = "lock";
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
    #[error("{call} {path}: {source}")]
    Io { call: &'static str, path: PathBuf, source: io::Error },
    #[error(
        "/sys/fs/bpf is private to this command (as under `ip netns exec`), so the filter would vanish with it; run it with `nsenter --net=/run/netns/NAME firewall …` instead"
    )]
    PrivateMounts,
    #[error(
        "a change on {iface} awaits `firewall confirm` (rolled back in {left} s unless confirmed): confirm it, or let it roll back, first"
    )]
    Pending { iface: String, left: u64 },
    #[error(
        "the state of the filter on {iface} ({path}) is unreadable: {message}; run `firewall down --iface {iface}` and `up` again"
    )]
    BadState { iface: String, path: PathBuf, message: String },
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
pub fn ensure_bpffs() -> Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let dir = Path::new("/sys/fs/bpf");
    let path = std::ffi::CString::new("/sys/fs/bpf").expect("no NUL");
    // SAFETY: statfs into a zeroed struct with a valid path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } == 0 && stat.f_type as i64 == BPF_FS_MAGIC {
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
}

/// See [`Pins::lock`].
pub struct StateLock(
    #[expect(dead_code, reason = "held for its drop, which unlocks")] nix::fcntl::Flock<fs::File>,
);

/// Where a filter on one interface keeps its pins and its state.
#[derive(Clone, Debug)]
pub struct Pins {
    pub iface: String,
    /// bpffs: the maps by name, and the two links.
    pub dir: PathBuf,
    /// tmpfs: the policy in force and the live state.
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
                return Err(PinsError::NotUp { iface: iface.into(), dir: pins.dir });
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

    /// The policy in force (validated when it was applied).
    pub fn policy(&self) -> Result<crate::policy::Policy> {
        let path = self.state.join(POLICY_COPY);
        crate::policy::parse(&self.policy_text()?, &path).map_err(|e| self.bad_state(&path, e))
    }

    pub fn live_state(&self) -> Result<LiveState> {
        let path = self.state.join(LIVE_STATE);
        let text = fs::read_to_string(&path).map_err(|e| self.bad_state(&path, e))?;
        serde_json::from_str(&text).map_err(|e| self.bad_state(&path, e))
    }

    /// Records the policy in force and its state, each file replaced atomically.
    pub fn save(&self, policy_text: &str, state: &LiveState) -> Result<()> {
        fs::create_dir_all(&self.state).map_err(io_err("mkdir", &self.state))?;
        write_atomically(&self.state.join(POLICY_COPY), policy_text.as_bytes())?;
        let json = serde_json::to_vec_pretty(state).expect("plain data");
        write_atomically(&self.state.join(LIVE_STATE), &json)
    }

    /// Refuses a change to the policy while another awaits `firewall confirm`: its
    /// rollback would undo this one too, unseen. `reload`, `allow`, `revoke` and `up` over
    /// a live filter ask; the rollback itself does not.
    pub fn refuse_if_pending(&self) -> Result<()> {
        #[derive(Deserialize)]
        struct Deadline {
            deadline: u64,
        }
        let Ok(text) = fs::read_to_string(self.state.join(PENDING)) else {
            return Ok(());
        };
        let deadline = serde_json::from_str::<Deadline>(&text).map_or(0, |d| d.deadline);
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Err(PinsError::Pending { iface: self.iface.clone(), left: deadline.saturating_sub(now) })
    }

    /// An exclusive lock on the filter's state, held while the value lives: a confirm
    /// and its rollback, or two blocklist changes, never cross.
    pub fn lock(&self) -> Result<StateLock> {
        let path = self.state.join(LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| io_err("flock", &path)(errno.into()))?;
        Ok(StateLock(locked))
    }

    /// Removes the state directory with everything in it (a pending `--confirm`
    /// included), the pin directory, and a namespace's own directories with its last
    /// filter (but for the rollback log, if one was written there).
    pub fn remove_dirs(&self) -> Result<()> {
        if self.state.exists() {
            fs::remove_dir_all(&self.state).map_err(io_err("rm -r", &self.state))?;
        }
        for dir in [&self.dir, &self.state] {
            if dir.exists() {
                fs::remove_dir(dir).map_err(io_err("rmdir", dir))?;
            }
            if let Some(parent) = dir.parent()
                && parent.file_name().is_some_and(|n| n.to_string_lossy().starts_with("netns-"))
            {
                let _ = fs::remove_dir(parent);
            }
        }
        Ok(())
    }
}

/// Writes `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old contents or the new, never a mix; the mode of an existing file is
/// kept.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    put_in_place(path, contents, |tmp, path| fs::rename(tmp, path).map_err(io_err("rename to", path)))
}

/// As [`write_atomically`], but never replaces a file: the temporary file is linked to
/// `path`, which fails (`AlreadyExists`) if something took the name meanwhile.
pub fn create_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    put_in_place(path, contents, |tmp, path| fs::hard_link(tmp, path).map_err(io_err("link to", path)))
}

/// Writes `contents` to a temporary file beside `path` and moves it there with `place`.
fn put_in_place(path: &Path, contents: &[u8], place: impl FnOnce(&Path, &Path) -> Result<()>) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(contents).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(&tmp, meta.permissions()).map_err(io_err("chmod", &tmp))?;
        }
        place(&tmp, path)
    })();
    // Gone after a rename; the second name after a link; after a failure, litter.
    let _ = fs::remove_file(&tmp);
    result
}
