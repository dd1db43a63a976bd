//! A real boot: systemd as PID 1 in a `systemd-nspawn --boot` container whose root is an
//! overlay of this machine's own, with the firewall's unit enabled on its interface.
//!
//! What the guest writes goes to the overlay's upper layer, kept across its boots (the
//! last good policy under /var/lib/firewall, say). Its interface, `host0`, is one end of
//! a veth whose other end, `ve-MACHINE`, nspawn leaves in the lab's client namespace.
//!
//! nspawn makes a container, not a machine. Four options give the guest what a machine
//! has, each for a reason the boot would otherwise fail on:
//! - `SYSTEMD_NSPAWN_API_VFS_WRITABLE=1`: a writable /sys, so that udev runs in the guest.
//!   The unit binds to its interface's device, which only udev makes known to systemd.
//! - `/run/udev` bound with a `control` file already in it: what the initrd's udev leaves
//!   on a machine. systemd watches udev's events only if udev was there when it started.
//! - `/sys/fs/bpf` bound from here: nspawn mounts no bpffs in the guest, and the pins
//!   must outlive the command that makes them.
//! - `--capability=all --system-call-filter=bpf`: nspawn withholds `bpf()` and the
//!   capabilities that loading and attaching programs take.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use crate::{
    daemons::{in_ns, need},
    lab::{Lab, firewall_bin, sh},
};

/// How long a boot may take, to `systemctl is-system-running` answering.
const BOOT_WITHIN: Duration = Duration::from_secs(90);

/// Services of this machine's image that the guest has no use for: masked, so that the
/// boot is quick and touches nothing of theirs.
const MASKED: [&str; 4] = ["postgresql.service", "prometheus.service", "chrony.service", "ssh.service"];

/// One guest at a time: every guest's filter pins at the same path here ([`guest_pins`]).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How the firewall gets into the guest.
pub enum Install<'a> {
    /// This build's binary at /usr/local/sbin/firewall, and `dist/firewall@.service` in
    /// /etc/systemd/system: the install from source.
    FromSource,
    /// The Debian package, copied to /root/firewall.deb for the guest to install.
    Package(&'a Path),
}

pub struct Guest {
    /// The machine's name; its veth's outer end is `ve-NAME`.
    pub machine: String,
    /// The overlay's layers and its mount point.
    upper: PathBuf,
    work: PathBuf,
    root: PathBuf,
    /// Bound on the guest's /run/udev.
    udev_run: PathBuf,
    /// The client namespace, where nspawn runs and `ve-NAME` is.
    ns: String,
    nspawn: Option<Child>,
    console: PathBuf,
    /// The guest's PID 1, as seen from here.
    pid: Option<u32>,
    /// Held until the guest is gone (fields drop after `Drop::drop` shut it down).
    _turn: MutexGuard<'static, ()>,
}

impl Guest {
    /// An overlay of this machine's root in the lab's directory, with the firewall put
    /// in as `install` says: not booted yet.
    pub fn new(lab: &Lab, machine: &str, install: Install<'_>) -> Guest {
        need("systemd-nspawn", "systemd-container");
        need("/lib/systemd/systemd-udevd", "udev");
        let dir = lab.tmp().join("guest");
        let guest = Guest {
            machine: machine.to_owned(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            root: dir.join("root"),
            udev_run: dir.join("udev-run"),
            ns: lab.client.clone(),
            nspawn: None,
            console: dir.join("console.log"),
            pid: None,
            _turn: ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner),
        };
        // The pins of a guest killed before its `firewall down` (a test run cut short).
        let _ = fs::remove_dir_all(guest_pins());
        for d in [&guest.upper, &guest.work, &guest.root] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let layers =
            format!("lowerdir=/,upperdir={},workdir={}", guest.upper.display(), guest.work.display());
        sh(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &layers]).arg(&guest.root));
        // A machine of its own: a new id (the same as this machine's would make systemd
        // refuse to share the journal, and none at all makes a first boot that asks).
        let id = fs::read_to_string("/proc/sys/kernel/random/uuid").expect("a random uuid").replace('-', "");
        guest.write("/etc/machine-id", &id);
        match install {
            Install::FromSource => {
                fs::copy(firewall_bin(), guest.path("/usr/local/sbin/firewall"))
                    .expect("installing the binary");
                let unit =
                    fs::read_to_string(crate::workspace().join("dist/firewall@.service")).expect("the unit");
                guest.write("/etc/systemd/system/firewall@.service", &unit);
            }
            Install::Package(deb) => {
                fs::create_dir_all(guest.path("/root")).expect("mkdir /root in the guest");
                fs::copy(deb, guest.path("/root/firewall.deb")).expect("copying the package");
            }
        }
        for unit in MASKED {
            guest.link(&format!("/etc/systemd/system/{unit}"), "/dev/null");
        }
        guest
    }

    /// `path` inside the guest's root, seen from here.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Writes the file `path` of the guest (mode 0644), making its directory.
    pub fn write(&self, path: &str, text: &str) {
        let path = self.path(path);
        fs::create_dir_all(path.parent().expect("a file in a directory")).expect("mkdir in the guest");
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// A symbolic link `path` to `target` in the guest, as `systemctl enable` and `mask`
    /// make them.
    pub fn link(&self, path: &str, target: &str) {
        let path = self.path(path);
        fs::create_dir_all(path.parent().expect("a link in a directory")).expect("mkdir in the guest");
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path).unwrap_or_else(|e| panic!("ln -s {}: {e}", path.display()));
    }

    /// `systemctl enable UNIT` for a unit that is `WantedBy=multi-user.target`.
    pub fn enable(&self, unit: &str, file: &str) {
        self.link(&format!("/etc/systemd/system/multi-user.target.wants/{unit}"), file);
    }

    /// Boots the guest, and returns once its veth's outer end exists (up, without an
    /// address) and the boot is under way; [`Guest::wait_booted`] waits for the rest.
    pub fn boot(&mut self) {
        assert!(self.nspawn.is_none(), "the guest is running");
        let _ = fs::remove_dir_all(&self.udev_run);
        fs::create_dir_all(&self.udev_run).expect("mkdir for /run/udev");
        fs::write(self.udev_run.join("control"), "").expect("the udev control file");
        let console = fs::File::create(&self.console).expect("the console's log");
        let mut command = in_ns(&self.ns, "systemd-nspawn");
        command
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "1")
            .arg("--directory")
            .arg(&self.root)
            .args(["--boot", "--machine", &self.machine, "--network-veth", "--register=no"])
            .args(["--link-journal=no", "--keep-unit", "--console=pipe", "--capability=all"])
            .args(["--system-call-filter=bpf", "--bind=/sys/fs/bpf"])
            .arg(format!("--bind={}:/run/udev", self.udev_run.display()))
            .stdin(Stdio::null())
            .stdout(console.try_clone().expect("dup the console's log"))
            .stderr(console);
        let child = command.spawn().unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        let nspawn = child.id();
        self.nspawn = Some(child);
        let started = Instant::now();
        self.pid = loop {
            if let Some(pid) = descendant_named(nspawn, "systemd") {
                break Some(pid);
            }
            assert!(
                started.elapsed() < BOOT_WITHIN,
                "no PID 1 in the guest; nspawn said:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let outer = self.outer_if();
        while Command::new("ip")
            .args(["-n", &self.ns, "link", "show", &outer])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            assert!(started.elapsed() < BOOT_WITHIN, "no {outer}; nspawn said:\n{}", self.console());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until systemd says the boot is over (`running`, or `degraded` when a unit
    /// failed), and returns what it says.
    pub fn wait_booted(&self) -> String {
        let started = Instant::now();
        loop {
            let state = stdout_of(&self.run(&["systemctl", "is-system-running"]));
            if !matches!(state.as_str(), "initializing" | "starting" | "") {
                return state;
            }
            assert!(
                started.elapsed() < BOOT_WITHIN,
                "the guest still {state:?}; its console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The outer end of the guest's veth, in the client namespace (nspawn's name for it,
    /// cut to an interface name's 15 characters).
    pub fn outer_if(&self) -> String {
        format!("ve-{}", self.machine).chars().take(15).collect()
    }

    /// `ARGS…` run in the guest, in all its namespaces.
    pub fn run(&self, args: &[&str]) -> Output {
        let pid = self.pid.expect("the guest is booted");
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-a"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {args:?} in the guest: {e}"))
    }

    /// `ARGS…` started in the guest, in all its namespaces, its output discarded: a server
    /// for the test to reach. The caller kills it.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let pid = self.pid.expect("the guest is booted");
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-a"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in the guest: {e}"))
    }

    /// The guest's network namespace, for a socket made from here.
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid.expect("the guest is booted")))
    }

    /// What nspawn and the guest's console printed.
    pub fn console(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Shuts the guest down as a machine shuts down (nspawn passes SIGTERM on to PID 1 as
    /// a poweroff), and waits for it; killed if it takes longer than a boot may.
    pub fn shut_down(&mut self) {
        let Some(mut nspawn) = self.nspawn.take() else { return };
        // SAFETY: a signal to our own child, not reaped yet.
        unsafe { libc::kill(nspawn.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        while nspawn.try_wait().ok().flatten().is_none() {
            if started.elapsed() > BOOT_WITHIN {
                let _ = nspawn.kill();
                let _ = nspawn.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.pid = None;
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.shut_down();
        let _ = Command::new("umount").arg(&self.root).status();
        // A guest killed before its `firewall down` left its pins in this machine's bpffs.
        let _ = fs::remove_dir_all(guest_pins());
    }
}

/// Where a guest's filter on `host0` pins, in this machine's bpffs: the guest is in
/// the network namespace of its own PID 1, so the path has no namespace part.
fn guest_pins() -> PathBuf {
    Path::new(firewall_user::kernel::pins::PIN_ROOT).join("host0")
}

/// The first process below `ancestor` whose name is `name`.
fn descendant_named(ancestor: u32, name: &str) -> Option<u32> {
    let mut parents = Vec::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid …: comm may hold spaces and parentheses.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
        parents.push((pid, ppid, comm == name));
    }
    let below = |mut pid: u32| {
        while pid > 1 {
            let Some(&(_, ppid, _)) = parents.iter().find(|(p, _, _)| *p == pid) else { return false };
            if ppid == ancestor {
                return true;
            }
            pid = ppid;
        }
        false
    };
    parents.iter().find(|&&(pid, _, named)| named && below(pid)).map(|&(pid, _, _)| pid)
}

/// A command's stdout, trimmed.
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
