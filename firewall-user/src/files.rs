//! Writing the files root writes, so that no one else can redirect the writes: the
//! policy file behind `allow` and `revoke`, `import -o`, the state directory's files and
//! the rollback log.
//!
//! A file is replaced through a temporary file created beside it exclusively (`O_EXCL`,
//! an unpredictable name, mode 0600: `tempfile`), written, given its final mode and owner
//! through its own descriptor (`fchmod`, `fchown`, never by path), then renamed into place
//! (or linked, where an existing file must not be replaced). A planted symbolic link at
//! the temporary name cannot be followed, and one at the target is replaced, not written
//! through; a file that is to be rewritten is read through no link either. Directories
//! are made 0700 as they are created (no window before a chmod), and tightened through a
//! descriptor when an older version left them looser.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{call} {path}")]
    Io {
        call: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is a symbolic link: it is not written through; give the file it names instead")]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} exists")]
    Exists { path: PathBuf },
}

type Result<T> = std::result::Result<T, FileError>;

fn io_err(call: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError::Io { call, path, source }
}

/// A file's mode bits and owner, as read from its descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    fn of(meta: &fs::Metadata) -> Meta {
        Meta { mode: meta.mode() & 0o777, uid: meta.uid(), gid: meta.gid() }
    }
}

/// The mode and owner a written file gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perms {
    /// 0600, ours: the state directory's files, which no one else has to read.
    Private,
    /// Those of the file it replaces (read from that file's descriptor).
    Like(Meta),
    /// A new file's: 0666 less the umask, as a shell's `>` makes one.
    New,
}

/// Opens `path` for reading, through no symbolic link, and checks that it is a regular
/// file (a FIFO planted there would block the read).
fn open_regular(path: &Path) -> Result<(File, Meta)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => FileError::Symlink { path: path.to_owned() },
            _ => FileError::Io { call: "open", path: path.to_owned(), source },
        })?;
    let meta = file.metadata().map_err(io_err("fstat", path))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile { path: path.to_owned() });
    }
    Ok((file, Meta::of(&meta)))
}

/// Reads the regular file at `path` (not through a symbolic link), with the mode and
/// owner a rewrite of it keeps.
pub fn read_regular(path: &Path) -> Result<(String, Meta)> {
    let (mut file, meta) = open_regular(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_err("read", path))?;
    Ok((text, meta))
}

/// The mode and owner of the regular file at `path`; `None` when nothing is there.
pub fn meta(path: &Path) -> Result<Option<Meta>> {
    match open_regular(path) {
        Ok((_, meta)) => Ok(Some(meta)),
        Err(FileError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// How the temporary file takes the target's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// rename(2): a reader sees the old contents or the new, never a mix.
    Replace,
    /// Never over an existing file: renameat2(RENAME_NOREPLACE), or link(2).
    NoClobber,
}

/// Writes `path` through a temporary file beside it and a rename: a reader sees the old
/// contents or the new, never a mix.
pub fn replace(path: &Path, contents: &[u8], perms: Perms) -> Result<()> {
    put(path, contents, perms, Place::Replace)
}

/// As [`replace`], but never over an existing file ([`FileError::Exists`]).
pub fn create(path: &Path, contents: &[u8], perms: Perms) -> Result<()> {
    put(path, contents, perms, Place::NoClobber)
}

/// The process's umask, read without changing it (umask(2) would, for every thread).
fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?.trim().to_owned();
            u32::from_str_radix(&line, 8).ok()
        })
        .unwrap_or(0o022)
}

fn put(path: &Path, contents: &[u8], perms: Perms, place: Place) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}.");
    // O_CREAT|O_EXCL, mode 0600, a random name: nothing planted there is opened.
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err("creating a temporary file in", dir))?;
    let tmp_path = tmp.path().to_owned();
    tmp.write_all(contents).map_err(io_err("write", &tmp_path))?;
    let file = tmp.as_file();
    let mode = match perms {
        Perms::Private => 0o600,
        Perms::Like(meta) => {
            let ours = file.metadata().map_err(io_err("fstat", &tmp_path))?;
            if (ours.uid(), ours.gid()) != (meta.uid, meta.gid) {
                // Before the chmod (a chown clears set-id bits). Not root, a user cannot
                // give a file away: the file is then theirs, as any rewrite of theirs.
                match std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid)) {
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                    other => other.map_err(io_err("fchown", &tmp_path))?,
                }
            }
            meta.mode
        }
        Perms::New => 0o666 & !umask(),
    };
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io_err("fchmod", &tmp_path))?;
    file.sync_all().map_err(io_err("fsync", &tmp_path))?;
    // On failure the temporary file is removed as `tmp` drops.
    let placed = match place {
        Place::Replace => tmp.persist(path),
        Place::NoClobber => tmp.persist_noclobber(path),
    };
    placed.map(drop).map_err(|e| match place {
        Place::NoClobber if e.error.kind() == io::ErrorKind::AlreadyExists => {
            FileError::Exists { path: path.to_owned() }
        }
        _ => FileError::Io { call: "rename into place", path: path.to_owned(), source: e.error },
    })
}

/// Opens `path` to append to it: created 0600 if missing, never through a symbolic link,
/// and made 0600 if an older version left it looser.
pub fn append_private(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => FileError::Symlink { path: path.to_owned() },
            _ => FileError::Io { call: "open", path: path.to_owned(), source },
        })?;
    let meta = file.metadata().map_err(io_err("fstat", path))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile { path: path.to_owned() });
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_err("fchmod", path))?;
    }
    Ok(file)
}

/// Opens `path`, a lock file whose `flock` one process at a time holds: created 0600 if
/// missing, never through a symbolic link, never truncated.
pub fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Makes the directory `dir` and those above it up to `root` (each 0700 as it is made),
/// and tightens to 0700 those of them that exist looser (made by an older version).
/// Directories above `root` are not ours and are left alone (all but `dir` itself, when
/// it is not under `root`).
pub fn private_dir(dir: &Path, root: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err("mkdir", dir))?;
    tighten(dir)?;
    for ancestor in dir.ancestors().skip(1).filter(|a| a.starts_with(root)) {
        tighten(ancestor)?;
    }
    Ok(())
}

/// Makes the directory `dir` 0700, through a descriptor (not by a path that a link could
/// redirect).
fn tighten(dir: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(io_err("open", dir))?;
    let meta = file.metadata().map_err(io_err("fstat", dir))?;
    if meta.mode() & 0o7777 != 0o700 {
        file.set_permissions(fs::Permissions::from_mode(0o700)).map_err(io_err("fchmod", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn scratch(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new().prefix(&format!("files-{tag}-")).tempdir().unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_link_at_its_name_is_replaced_not_followed() {
        let dir = scratch("replace");
        let victim = dir.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        let target = dir.path().join("policy.toml");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
        let (text, before) = read_regular(&target).unwrap();
        assert_eq!((text.as_str(), before.mode), ("old", 0o640));
        replace(&target, b"new", Perms::Like(before)).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(mode(&target), 0o640);

        // A link at the target: refused when read for a rewrite, replaced when written.
        fs::remove_file(&target).unwrap();
        symlink(&victim, &target).unwrap();
        assert!(matches!(read_regular(&target), Err(FileError::Symlink { .. })));
        assert!(matches!(meta(&target), Err(FileError::Symlink { .. })));
        replace(&target, b"state", Perms::Private).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "victim");
        assert_eq!(mode(&target), 0o600);
        assert!(fs::symlink_metadata(&target).unwrap().is_file());
        // No temporary file is left behind.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn create_never_replaces() {
        let dir = scratch("create");
        let target = dir.path().join("out.toml");
        create(&target, b"one", Perms::New).unwrap();
        assert_eq!(mode(&target), 0o666 & !umask());
        assert!(matches!(create(&target, b"two", Perms::New), Err(FileError::Exists { .. })));
        assert_eq!(fs::read_to_string(&target).unwrap(), "one");
        assert_eq!(meta(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn directories_are_made_and_tightened_to_0700_below_their_root() {
        let dir = scratch("dirs");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("firewall");
        let leaf = root.join("netns-x").join("eth0");
        private_dir(&leaf, &root).unwrap();
        for d in [&root, &root.join("netns-x"), &leaf] {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&leaf, fs::Permissions::from_mode(0o777)).unwrap();
        private_dir(&leaf, &root).unwrap();
        assert_eq!((mode(&root), mode(&leaf)), (0o700, 0o700));
        assert_eq!(mode(dir.path()), 0o755, "above the root: not ours");
    }

    #[test]
    fn the_appended_log_is_private_and_no_link_is_followed() {
        let dir = scratch("append");
        let log = dir.path().join("rollback.log");
        fs::write(&log, "old\n").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
        writeln!(append_private(&log).unwrap(), "new").unwrap();
        assert_eq!((fs::read_to_string(&log).unwrap().as_str(), mode(&log)), ("old\nnew\n", 0o600));
        let victim = dir.path().join("victim");
        fs::write(&victim, "victim").unwrap();
        let link = dir.path().join("link.log");
        symlink(&victim, &link).unwrap();
        assert!(matches!(append_private(&link), Err(FileError::Symlink { .. })));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "victim");
    }
}
