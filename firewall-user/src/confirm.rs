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
//! cross.
use std::{
    fs,
    io::Write as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    filter,
    live::{self, LiveError},
    maps::LiveMaps,
    pins::{PENDING, Pins, PinsError, STATE_ROOT, io_err, write_atomically},
};

/// Where every rollback is told, whatever else is gone.
pub const ROLLBACK_LOG: &str = "rollback.log";

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("nothing on {iface} awaits confirmation{last}")]
    NothingPending { iface: String, last: String },
    #[error("--confirm takes 1 to 3600 seconds, not {0}")]
    BadSeconds(u64),
    #[error("starting the rollback timer ({exe}): {source}; the change is in force with no rollback armed")]
    Spawn { exe: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Filter(Box<filter::FilterError>),
}

impl From<filter::FilterError> for ConfirmError {
    fn from(err: filter::FilterError) -> Self {
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
    pub timer_pid: Option<u32>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read_pending(pins: &Pins) -> Option<Pending> {
    let text = fs::read_to_string(pins.state.join(PENDING)).ok()?;
    serde_json::from_str(&text).ok()
}

/// What is in force on `pins` now, to roll back to (`None` when no filter is up).
pub fn record(pins: &Pins, seconds: u64) -> Result<Option<Previous>> {
    if !(1..=3600).contains(&seconds) {
        return Err(ConfirmError::BadSeconds(seconds));
    }
    if !pins.is_up() {
        return Ok(None);
    }
    let state = pins.live_state()?;
    let audit = LiveMaps::open(pins).map_err(LiveError::from)?.audit().map_err(LiveError::from)?;
    Ok(Some(Previous { policy_text: pins.policy_text()?, policy_file: state.policy_file, audit }))
}

/// The terminal on stderr (or stdout), to tell of a rollback there.
fn our_tty() -> Option<PathBuf> {
    ["/proc/self/fd/2", "/proc/self/fd/1", "/proc/self/fd/0"]
        .iter()
        .filter_map(|fd| fs::read_link(fd).ok())
        .find(|path| path.starts_with("/dev/pts") || path.starts_with("/dev/tty"))
}

/// After the change: records it as pending and starts the timer that rolls it back in
/// `seconds` unless confirmed. Returns the timer's pid.
pub fn arm(pins: &Pins, previous: Option<Previous>, seconds: u64, change: String) -> Result<u32> {
    let _lock = pins.lock()?;
    let token = format!("{}-{}", std::process::id(), unix_now());
    let mut pending = Pending {
        token: token.clone(),
        deadline: unix_now() + seconds,
        previous,
        change,
        tty: our_tty(),
        timer_pid: None,
    };
    let path = pins.state.join(PENDING);
    write_atomically(&path, &serde_json::to_vec_pretty(&pending).expect("plain data"))?;
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
    write_atomically(&path, &serde_json::to_vec_pretty(&pending).expect("plain data"))?;
    Ok(child.id())
}

/// `firewall confirm`: the change stays. Returns what was confirmed.
pub fn confirm(iface: Option<&str>) -> Result<(Pins, Pending)> {
    filter::require_root()?;
    let pins = Pins::find(iface)?;
    let _lock = pins.lock()?;
    let Some(pending) = read_pending(&pins) else {
        return Err(ConfirmError::NothingPending { iface: pins.iface.clone(), last: last_rollback(&pins) });
    };
    let path = pins.state.join(PENDING);
    fs::remove_file(&path).map_err(io_err("remove", &path))?;
    if let Some(pid) = pending.timer_pid {
        // It would find nothing to do; stopping it spares it the wait.
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
    }
    Ok((pins, pending))
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
    let _lock = pins.lock()?;
    let Some(pending) = read_pending(&pins).filter(|p| p.token == token) else {
        // Confirmed, or the filter went down and up again meanwhile.
        return Ok(());
    };
    let outcome = roll_back(&pins, &pending);
    let _ = fs::remove_file(pins.state.join(PENDING));
    let seconds = after.as_secs();
    let message = match &outcome {
        Ok(what) => format!(
            "firewall: no `firewall confirm` within {seconds} s on {iface}: {what} (undoing the {})",
            pending.change
        ),
        Err(err) => format!(
            "firewall: no `firewall confirm` within {seconds} s on {iface}: rolling back the {} failed: {err}",
            pending.change
        ),
    };
    tell(&message, &rollback_log(&pins), pending.tty.as_deref());
    outcome.map(|_| ())
}

fn roll_back(pins: &Pins, pending: &Pending) -> Result<String> {
    match &pending.previous {
        None => {
            filter::down(Some(&pins.iface))?;
            Ok("took the filter down, as it was before".into())
        }
        Some(previous) => {
            live::reload_text(
                pins.clone(),
                &previous.policy_text,
                &previous.policy_file,
                Some(previous.audit),
                true,
            )?;
            Ok(format!(
                "put back the policy in force before, from {} (the file itself was left as it is)",
                previous.policy_file.display()
            ))
        }
    }
}

/// Tells of a rollback everywhere an administrator may look.
fn tell(message: &str, log: &Path, tty: Option<&Path>) {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now());
    if let Ok(mut kmsg) = fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        // Priority 4 (warning).
        let _ = kmsg.write_all(format!("<4>{message}\n").as_bytes());
    }
    if let Some(dir) = log.parent() {
        let _ = fs::create_dir_all(dir);
    }
    if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(file, "{stamp} {message}");
    }
    if let Some(tty) = tty
        && let Ok(mut terminal) = fs::OpenOptions::new().write(true).open(tty)
    {
        let _ = write!(terminal, "\r\n{message}\r\n");
    }
}
