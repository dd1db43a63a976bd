//! `up|reload --confirm SECONDS` and `firewall confirm`: the lock-out insurance of
//! `iptables-apply`, kept by a process that outlives the session.
//!
//! Before the change, what is in force is recorded in the filter's state directory
//! (`pending.json`: the policy text, its file, the audit mode; or that no filter was up).
//! After it, a timer process is started in a session of its own (`setsid`: the hang-up
//! of a cut-off SSH connection does not reach it), holding nothing of the terminal. When
//! the time is up and `pending.json` is still its own, it puts the recorded state back
//! (`reload` of the old text; `down` after a first `up`) and says so on the kernel log
//! (`dmesg`, the journal), in `/run/firewall/rollback.log` (`…/netns-NAME/rollback.log` in
//! a named network namespace), and on the terminal the change
//! was made from, if it is still there. `firewall confirm` removes the record and stops
//! the timer. Both hold the state directory's lock, so a confirm and a rollback never
//! cross; and the command that records and arms holds it from before the change to after
//! the arming, so nothing comes between.
//!
//! Nothing recorded is trusted to be what it was: `confirm` signals the timer only
//! through a pidfd of a process whose start time and command line are the recorded
//! timer's (a pid may be another process's by then), and the rollback writes to the
//! terminal only if it is still a terminal of the same device and owner (a `/dev/pts/N`
//! may be another user's by then).
use std::{
    fs,
    io::Write as _,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{
            fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
            process::CommandExt as _,
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::{
    files::{self, Perms},
    kernel::{
        Filter, FilterError,
        maps::{Enforcement, LiveMaps},
        pins::{PENDING, Pins, PinsError, STATE_ROOT, StateLock, io_err},
    },
    log::Event,
    ops::{LiveError, lockout::SessionGuard},
    unix_now,
};

/// Where every rollback is told, whatever else is gone.
pub const ROLLBACK_LOG: &str = "rollback.log";
/// How long the rollback waits for a change in progress to end. Longer than a command's
/// wait: only root's own commands can hold the lock, and the rollback must not give up
/// lightly.
const ROLLBACK_LOCK_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("nothing on {iface} awaits confirmation{last}")]
    NothingPending { iface: String, last: String },
    #[error("--confirm takes 1 to 3600 seconds, not {0}")]
    BadSeconds(u64),
    #[error("starting the rollback timer ({exe}); the change is in force with no rollback armed")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Filter(Box<FilterError>),
    #[error(transparent)]
    Files(#[from] files::FileError),
}

impl From<FilterError> for ConfirmError {
    fn from(err: FilterError) -> Self {
        ConfirmError::Filter(Box::new(err))
    }
}

type Result<T> = std::result::Result<T, ConfirmError>;

/// What was in force before the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub policy_text: String,
    pub policy_file: PathBuf,
    pub audit: bool,
}

/// A terminal as it was when the change was made: who owned it, which device it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtyIdentity {
    pub uid: u32,
    pub rdev: u64,
}

/// `pending.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Names this change: a timer rolls back only its own.
    pub token: String,
    /// Unix seconds after which the timer rolls back.
    pub deadline: u64,
    /// `None`: no filter was up; rolling back is `down`.
    pub previous: Option<Previous>,
    /// What was done, for the messages: "reload of /etc/firewall/eth0.toml".
    pub change: String,
    /// The terminal the change was made from (`/dev/pts/N`), if any.
    pub tty: Option<PathBuf>,
    /// Its owner and device then; without them (an older version's record) the
    /// terminal is not written to.
    #[serde(default)]
    pub tty_identity: Option<TtyIdentity>,
    pub timer_pid: Option<u32>,
    /// The timer's start time (`/proc/PID/stat` field 22): with the pid, it names one
    /// process. Without it the timer is not signalled (it finds nothing to do anyway).
    #[serde(default)]
    pub timer_start: Option<u64>,
}

fn read_pending(pins: &Pins) -> Option<Pending> {
    let text = fs::read_to_string(pins.state.join(PENDING)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_pending(pins: &Pins, pending: &Pending) -> Result<()> {
    let json = serde_json::to_vec_pretty(pending).expect("plain data");
    Ok(files::replace(&pins.state.join(PENDING), &json, Perms::Private)?)
}

/// Checks `--confirm`'s seconds.
fn check_seconds(seconds: u64) -> Result<()> {
    if !(1..=3600).contains(&seconds) {
        return Err(ConfirmError::BadSeconds(seconds));
    }
    Ok(())
}

/// What is in force on the filter `lock` is for, to roll back to (`None` when no filter
/// is up).
fn record(lock: &StateLock) -> Result<Option<Previous>> {
    let pins = lock.pins();
    if !pins.is_up() {
        return Ok(None);
    }
    let state = pins.live_state()?;
    let audit =
        LiveMaps::open(pins).map_err(LiveError::from)?.enforcement().map_err(LiveError::from)?.is_audit();
    Ok(Some(Previous { policy_text: pins.policy_text()?, policy_file: state.policy_file, audit }))
}

/// The rollback timer armed by `--confirm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Armed {
    pub pid: u32,
    pub seconds: u64,
}

/// Makes a change (`change` returns what it did and how to name it: "reload of FILE") under
/// the lock the command holds; with `--confirm SECONDS`, what was in force is recorded
/// before and the rollback armed after, under the same lock.
pub fn around<T>(
    lock: &StateLock,
    seconds: Option<u64>,
    change: impl FnOnce() -> Result<(T, String)>,
) -> Result<(T, Option<Armed>)> {
    let Some(seconds) = seconds else {
        let (done, _) = change()?;
        lock.keep_last_good()?;
        return Ok((done, None));
    };
    check_seconds(seconds)?;
    let previous = record(lock)?;
    let (done, name) = change()?;
    let pid = arm(lock, previous, seconds, name)?;
    Ok((done, Some(Armed { pid, seconds })))
}

/// The terminal on stderr (or stdout, or stdin), to tell of a rollback there, with its
/// owner and device now.
fn our_tty() -> Option<(PathBuf, TtyIdentity)> {
    ["/proc/self/fd/2", "/proc/self/fd/1", "/proc/self/fd/0"].iter().find_map(|fd| {
        let path = fs::read_link(fd).ok()?;
        if !(path.starts_with("/dev/pts") || path.starts_with("/dev/tty")) {
            return None;
        }
        // The open file itself, not whatever has its name.
        let meta = fs::metadata(fd).ok()?;
        meta.file_type().is_char_device().then(|| (path, TtyIdentity { uid: meta.uid(), rdev: meta.rdev() }))
    })
}

/// After the change: records it as pending and starts the timer that rolls it back in
/// `seconds` unless confirmed. Returns the timer's pid.
fn arm(lock: &StateLock, previous: Option<Previous>, seconds: u64, change: String) -> Result<u32> {
    let pins = lock.pins();
    let token = format!("{}-{}", std::process::id(), unix_now());
    let (tty, tty_identity) = our_tty().map_or((None, None), |(path, id)| (Some(path), Some(id)));
    let mut pending = Pending {
        token: token.clone(),
        deadline: unix_now() + seconds,
        previous,
        change,
        tty,
        tty_identity,
        timer_pid: None,
        timer_start: None,
    };
    write_pending(pins, &pending)?;
    let path = pins.state.join(PENDING);
    // Unarmed, the record would hold every later change back: it goes with the failure.
    let unarm = |source| {
        let _ = fs::remove_file(&path);
        source
    };
    let exe = std::env::current_exe()
        .map_err(|source| ConfirmError::Spawn { exe: "firewall".into(), source: unarm(source) })?;
    let mut command = Command::new(&exe);
    command
        .args(["rollback-timer", "--iface", &pins.iface, "--token", &token, "--after"])
        .arg(seconds.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: setsid is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let child = command.spawn().map_err(|source| ConfirmError::Spawn { exe, source: unarm(source) })?;
    pending.timer_pid = Some(child.id());
    // Our own child, not reaped: its pid is its own until we wait for it.
    pending.timer_start = start_time(child.id());
    write_pending(pins, &pending)?;
    Ok(child.id())
}

/// `firewall confirm`: the change stays. Returns what was confirmed.
pub fn confirm(filter: &Filter) -> Result<Pending> {
    let lock = filter.lock_pins()?;
    let pins = lock.pins().clone();
    let Some(pending) = read_pending(&pins) else {
        return Err(ConfirmError::NothingPending { iface: pins.iface.clone(), last: last_rollback(&pins) });
    };
    let path = pins.state.join(PENDING);
    fs::remove_file(&path).map_err(io_err("remove", &path))?;
    if let (Some(pid), Some(start)) = (pending.timer_pid, pending.timer_start) {
        // It would find nothing to do; stopping it spares it the wait. Not signalled
        // unless it is still the timer: its pid may be another process's by now.
        let _ = stop_timer(pid, start, &pins.iface, &pending.token);
    }
    lock.keep_last_good()?;
    Ok(pending)
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    stat_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/PID/stat` line.
fn stat_start_time(stat: &str) -> Option<u64> {
    crate::proc_stat_field(stat, 22)?.parse().ok()
}

/// Whether a `/proc/PID/cmdline` is the rollback timer's of this interface and change:
/// `firewall rollback-timer --iface IFACE --token TOKEN …`.
fn is_timer_cmdline(cmdline: &[u8], iface: &str, token: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let wanted: [&[u8]; 5] = [b"rollback-timer", b"--iface", iface.as_bytes(), b"--token", token.as_bytes()];
    args.len() > wanted.len() && args[1..=wanted.len()] == wanted
}

/// What came of stopping the timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    Signalled,
    /// Gone, or another process has its pid now: nothing is signalled.
    NotTheTimer,
}

/// Sends SIGTERM to the timer `pid`, if it is still the timer that started at `start` for
/// this change. Through a pidfd taken before the checks, so that the process checked is
/// the one signalled: should the pid be reused after the pidfd is taken, the pidfd still
/// names the process it was taken for (and the checks, reading the new one, fail).
fn stop_timer(pid: u32, start: u64, iface: &str, token: &str) -> std::io::Result<Stopped> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(Stopped::NotTheTimer),
            _ => Err(err),
        };
    }
    // SAFETY: a descriptor pidfd_open just returned, ours alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if start_time(pid) != Some(start) || !is_timer_cmdline(&cmdline, iface, token) {
        return Ok(Stopped::NotTheTimer);
    }
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGTERM,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return match err.raw_os_error() {
            // It ended between the checks and the signal.
            Some(libc::ESRCH) => Ok(Stopped::NotTheTimer),
            _ => Err(err),
        };
    }
    Ok(Stopped::Signalled)
}

/// Where rollbacks in this network namespace are told: beside its filters' state.
fn rollback_log(pins: &Pins) -> PathBuf {
    pins.state.parent().unwrap_or(Path::new(STATE_ROOT)).join(ROLLBACK_LOG)
}

/// The last rollback told for `pins`' interface, for a `confirm` that came too late.
fn last_rollback(pins: &Pins) -> String {
    let iface = &pins.iface;
    let Ok(text) = fs::read_to_string(rollback_log(pins)) else {
        return String::new();
    };
    let needle = format!(" on {iface}:");
    text.lines()
        .rev()
        .find(|line| line.contains(&needle))
        .map(|line| format!("; it was rolled back: {line}"))
        .unwrap_or_default()
}

/// The hidden `rollback-timer` command: waits, then rolls back unless confirmed.
pub fn timer(iface: &str, token: &str, after: Duration) -> Result<()> {
    std::thread::sleep(after);
    let pins = Pins::for_iface(iface);
    if !pins.state.exists() {
        // Taken down meanwhile: nothing to roll back.
        return Ok(());
    }
    let lock = match pins.lock(ROLLBACK_LOCK_WAIT) {
        Ok(lock) => lock,
        Err(err) => {
            let message = format!(
                "firewall: no `firewall confirm` within {} s on {iface}, and the rollback could not start: {}",
                after.as_secs(),
                crate::one_line(&err)
            );
            let event = Event::Rollback { iface, change: "change", rolled_back: false, message: &message };
            tell(&event, &rollback_log(&pins), None);
            return Err(err.into());
        }
    };
    let Some(pending) = read_pending(&pins).filter(|p| p.token == token) else {
        // Confirmed, or the filter went down and up again meanwhile.
        return Ok(());
    };
    let outcome = roll_back(&lock, &pending);
    let _ = fs::remove_file(pins.state.join(PENDING));
    let seconds = after.as_secs();
    let message = match &outcome {
        Ok(what) => format!(
            "firewall: no `firewall confirm` within {seconds} s on {iface}: {what} (undoing the {})",
            pending.change
        ),
        Err(err) => format!(
            "firewall: no `firewall confirm` within {seconds} s on {iface}: rolling back the {} failed: {}",
            pending.change,
            crate::one_line(err)
        ),
    };
    let tty = pending.tty.as_deref().zip(pending.tty_identity);
    let event =
        Event::Rollback { iface, change: &pending.change, rolled_back: outcome.is_ok(), message: &message };
    tell(&event, &rollback_log(&pins), tty);
    outcome.map(|_| ())
}

fn roll_back(lock: &StateLock, pending: &Pending) -> Result<String> {
    match &pending.previous {
        None => {
            let restored = crate::ops::up::take_down(lock)?;
            let mut what = "took the filter down, as it was before".to_owned();
            if let Some(line) = restored.turned_on_line(&lock.pins().iface) {
                what = format!("{what}; {line}");
            }
            for failed in &restored.failed {
                what = format!("{what}; but {}", crate::one_line(failed));
            }
            Ok(what)
        }
        Some(previous) => {
            crate::ops::reload::reload_text(
                lock,
                &previous.policy_text,
                &previous.policy_file,
                Some(if previous.audit { Enforcement::Audit } else { Enforcement::Enforce }),
                SessionGuard::Skip,
                // Its names are asked again: the record keeps only the names of the
                // policy rolled back.
                crate::names::Asking::Now,
            )?;
            Ok(format!(
                "put back the policy in force before, from {} (the file itself was left as it is)",
                previous.policy_file.display()
            ))
        }
    }
}

/// Opens the terminal `path` to write to it, if it is still the terminal recorded: a
/// character device with the same device number and owner. Through no link, without
/// becoming our controlling terminal, without waiting.
fn open_terminal(path: &Path, recorded: TtyIdentity) -> Option<fs::File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    is_same_terminal(
        meta.file_type().is_char_device(),
        TtyIdentity { uid: meta.uid(), rdev: meta.rdev() },
        recorded,
    )
    .then_some(file)
}

fn is_same_terminal(char_device: bool, now: TtyIdentity, recorded: TtyIdentity) -> bool {
    char_device && now == recorded
}

/// Tells of a rollback everywhere an administrator may look: the kernel's log, the
/// rollback log, the terminal the change came from, and the journal with its fields.
fn tell(event: &Event, log: &Path, tty: Option<(&Path, TtyIdentity)>) {
    event.log();
    let message = event.line("firewall");
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now());
    if let Ok(mut kmsg) = fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        // Priority 4 (warning).
        let _ = kmsg.write_all(format!("<4>{message}\n").as_bytes());
    }
    if let Some(dir) = log.parent() {
        let _ = files::private_dir(dir, Path::new(STATE_ROOT));
    }
    if let Ok(mut file) = files::append_private(log) {
        let _ = writeln!(file, "{stamp} {message}");
    }
    if let Some(mut terminal) = tty.and_then(|(path, recorded)| open_terminal(path, recorded)) {
        let _ = write!(terminal, "\r\n{message}\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_whatever_the_command_name_holds() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 91 0 0 0 0 0 0 0 20 0 1 0 987654 2215936 212 18446744073709551615";
        assert_eq!(stat_start_time(stat), Some(987_654));
        assert_eq!(stat_start_time("4242 (cut"), None);
        // Our own: a number, the same read twice.
        let ours = start_time(std::process::id()).expect("our own start time");
        assert_eq!(start_time(std::process::id()), Some(ours));
    }

    #[test]
    fn only_this_change_s_timer_has_the_timer_s_command_line() {
        let args = [
            "/usr/local/sbin/firewall",
            "rollback-timer",
            "--iface",
            "eth0",
            "--token",
            "123-456",
            "--after",
            "60",
        ];
        let cmdline = args.join("\0") + "\0";
        let timer = cmdline.as_bytes();
        assert!(is_timer_cmdline(timer, "eth0", "123-456"));
        assert!(!is_timer_cmdline(timer, "eth1", "123-456"), "another interface's");
        assert!(!is_timer_cmdline(timer, "eth0", "123-457"), "another change's");
        assert!(!is_timer_cmdline(b"sleep\x00100\x00", "eth0", "123-456"));
        assert!(!is_timer_cmdline(b"", "eth0", "123-456"));
    }

    #[test]
    fn a_process_that_is_not_the_timer_is_not_signalled() {
        let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = sleeper.id();
        let start = start_time(pid).expect("its start time");
        // Its start time, but not the timer's command line; the timer's command line
        // would not have another start time.
        assert_eq!(stop_timer(pid, start, "eth0", "t").unwrap(), Stopped::NotTheTimer);
        assert_eq!(stop_timer(pid, start + 1, "eth0", "t").unwrap(), Stopped::NotTheTimer);
        assert!(sleeper.try_wait().unwrap().is_none(), "sleep was signalled");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }

    #[test]
    fn the_timer_itself_is_signalled() {
        // A stand-in with the timer's command line: yes(1) takes its arguments as the
        // line it repeats (to /dev/null) until signalled (all of them, past the first
        // that is no option, under POSIXLY_CORRECT).
        let mut timer = Command::new("yes")
            .args(["rollback-timer", "--iface", "eth0", "--token", "t", "--after", "30"])
            .env("POSIXLY_CORRECT", "1")
            .stdout(Stdio::null())
            .spawn()
            .expect("yes");
        let pid = timer.id();
        let start = start_time(pid).expect("its start time");
        // Until the child has exec'd, its command line is still this test's.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"yes\0")) {
            assert!(std::time::Instant::now() < deadline, "yes(1) never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(stop_timer(pid, start, "eth0", "t").unwrap(), Stopped::Signalled);
        let status = timer.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
    }

    #[test]
    fn a_terminal_is_written_only_while_it_is_the_one_recorded() {
        let recorded = TtyIdentity { uid: 1000, rdev: 0x8803 };
        assert!(is_same_terminal(true, recorded, recorded));
        assert!(!is_same_terminal(true, TtyIdentity { uid: 1001, ..recorded }, recorded), "another owner");
        assert!(
            !is_same_terminal(true, TtyIdentity { rdev: 0x8804, ..recorded }, recorded),
            "another device"
        );
        assert!(!is_same_terminal(false, recorded, recorded), "not a character device");
        // A regular file where the terminal was is not written.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pts");
        fs::write(&file, "").unwrap();
        let meta = fs::metadata(&file).unwrap();
        assert!(open_terminal(&file, TtyIdentity { uid: meta.uid(), rdev: meta.rdev() }).is_none());
    }
}
