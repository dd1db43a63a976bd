//! Developer tasks: `cargo xtask setup | test | demo | bench | dist`.
//!
//! `setup` installs what building the kernel object needs on a fresh Debian machine of
//! this kind (see docs/building.md) and what the tests drive, and does nothing when
//! it is all there. `test` runs the whole suite as root; `demo` shows the filter working
//! in a lab of network namespaces. `dist` writes the Debian package.
mod man;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the eBPF toolchain and the test tools (idempotent).
    Setup,
    /// Set up, build, package, and run every test (needs root).
    Test {
        /// Extra arguments for `cargo test` (a filter, `--nocapture`, …).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run the demo lab (needs root).
    Demo,
    /// Set up, build, and print the benchmarks (needs root).
    Bench,
    /// Set up, build, and write the Debian package under target/debian/.
    Dist,
}

/// Debian packages the eBPF build needs when rustup's nightly has no rust-src.
const TOOLCHAIN_PACKAGES: &[&str] =
    &["rustc-web", "cargo-web", "rust-web-src", "llvm-22-dev", "libpolly-22-dev", "libzstd-dev"];
/// What the tests and the demo drive: the lab's plumbing, the seed's iptables for the
/// differential run, and the daemons and clients administrators run.
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "util-linux",
    "iptables",
    "openssh-server",
    "openssh-client",
    "dnsmasq-base",
    // dhclient, the DHCP client behind the filter (tests/tests/integration/daemons.rs).
    "isc-dhcp-client",
    "bind9-dnsutils",
    "chrony",
    "curl",
    "nmap",
    "hping3",
    "python3-scapy",
    // trafgen, for the flood tests.
    "netsniff-ng",
    // ethtool, for the server's GRO under the floods of `cargo xtask bench`.
    "ethtool",
    // The bulk receive of `cargo xtask bench`.
    "iperf3",
    // bpftool, to make a pinned map of another layout (tests/tests/integration/live.rs).
    "bpftool",
    // A terminal for `firewall watch` (tests/tests/integration/watch.rs).
    "tmux",
    // Prometheus and its promtool, to scrape and check `firewall serve` (tests/tests/integration/serve.rs).
    "prometheus",
    // An administrator's `sudo firewall …` over SSH, for the lock-out guard (tests/tests/integration/safety.rs).
    "sudo",
    // systemd-nspawn and udev, to boot this machine's image with the unit enabled
    // (tests/tests/integration/boot.rs).
    "systemd-container",
    "udev",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// What `dist` builds the package with.
const CARGO_DEB_VERSION: &str = "3.8.0";
/// Ansible, from PyPI, for the test of contrib/ansible's role (tests/tests/integration/ansible.rs).
const ANSIBLE_CORE_VERSION: &str = "2.17.14";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").to_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn installed(package: &str) -> bool {
    // Not "ends with installed": a removed package is "unknown ok not-installed".
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s == "install ok installed")
}

fn nightly_has_rust_src() -> bool {
    output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
        .is_some_and(|sysroot| Path::new(&sysroot).join("lib/rustlib/src/rust/library/core").is_dir())
}

fn setup() -> Result<()> {
    let use_nightly = nightly_has_rust_src();
    let mut wanted: Vec<&str> = TEST_PACKAGES.to_vec();
    if !use_nightly {
        wanted.extend_from_slice(TOOLCHAIN_PACKAGES);
    }
    let missing: Vec<&str> = wanted.into_iter().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!("needs root to install {}", missing.join(" "));
        }
        println!("setup: installing {}", missing.join(" "));
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    let linker = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if !linker.contains(BPF_LINKER_VERSION) {
        println!("setup: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
        let mut cmd = Command::new("cargo");
        cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION]);
        if !use_nightly {
            // Link the LLVM that Debian's rustc-web uses; without the prefix the build
            // finds LLVM 14 under /usr and fails with "unable to find library -lLLVM".
            let path = format!("/usr/lib/llvm-22/bin:{}", env::var("PATH").unwrap_or_default());
            cmd.args(["--no-default-features", "--features", "llvm-22"])
                .env("PATH", path)
                .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22");
        }
        run(&mut cmd)?;
    }

    let cargo_deb = output(Command::new("cargo").args(["deb", "--version"])).unwrap_or_default();
    if !cargo_deb.contains(CARGO_DEB_VERSION) {
        println!("setup: installing cargo-deb {CARGO_DEB_VERSION} (about two minutes)");
        run(Command::new("cargo").args([
            "install",
            "cargo-deb",
            "--locked",
            "--version",
            CARGO_DEB_VERSION,
        ]))?;
    }

    let ansible = || output(Command::new("ansible-playbook").arg("--version")).unwrap_or_default();
    if !ansible().contains(&format!("[core {ANSIBLE_CORE_VERSION}]")) {
        println!("setup: installing ansible-core {ANSIBLE_CORE_VERSION} from PyPI");
        run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--root-user-action=ignore",
            &format!("ansible-core=={ANSIBLE_CORE_VERSION}"),
        ]))?;
        // A python3 of pyenv's reaches new scripts through shims, made on a rehash.
        if succeeds(Command::new("pyenv").arg("--version")) {
            run(Command::new("pyenv").arg("rehash"))?;
        }
        if !ansible().contains(&format!("[core {ANSIBLE_CORE_VERSION}]")) {
            bail!(
                "ansible-core {ANSIBLE_CORE_VERSION} is installed, but `ansible-playbook` on PATH is not it"
            );
        }
    }

    if !use_nightly && !succeeds(Command::new("rustup").args(["run", "debian", "rustc", "--version"])) {
        println!("setup: linking Debian's rustc-web into rustup as the `debian` toolchain");
        run(Command::new("rustup").args(["toolchain", "link", "debian", "/usr"]))?;
    }
    println!(
        "setup: ready (eBPF toolchain: {}, bpf-linker {BPF_LINKER_VERSION})",
        if use_nightly { "rustup nightly with rust-src" } else { "Debian rustc-web as `debian`" }
    );
    Ok(())
}

/// Root, the toolchain and tools set up, everything built: what `demo` and `bench`
/// start from.
fn ready(why_root: &str) -> Result<()> {
    root_and_setup(why_root)?;
    run(&mut cargo(&["build", "--release"]))
}

fn root_and_setup(why_root: &str) -> Result<()> {
    if !is_root() {
        bail!("needs root: {why_root}");
    }
    setup()
}

/// The package: the man pages and completions the binary writes of its own command line,
/// firewall.toml(5) from docs/policy.md, all under target/dist; then cargo-deb, which
/// takes them and the rest from firewall-user's `[package.metadata.deb]`.
fn dist() -> Result<()> {
    let root = root();
    let staging = root.join("target/dist");
    let man = staging.join("man");
    let completions = staging.join("completions");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&completions).context("mkdir target/dist/completions")?;
    let firewall = root.join("target/release/firewall");
    let quiet = |cmd: &mut Command| run(cmd.stdout(Stdio::null()));
    quiet(Command::new(&firewall).args(["generate", "man", "--out"]).arg(&man))?;
    let reference = std::fs::read_to_string(root.join("docs/policy.md")).context("reading docs/policy.md")?;
    let page = man::policy_page(&reference, env!("CARGO_PKG_VERSION"));
    std::fs::write(man.join("firewall.toml.5"), page).context("writing firewall.toml.5")?;
    // gzip -n: no name or time in the header, so that the same pages make the same package.
    let pages = std::fs::read_dir(&man).context("reading target/dist/man")?;
    for page in pages {
        run(Command::new("gzip")
            .args(["-9", "-n", "-f"])
            .arg(page.context("reading target/dist/man")?.path()))?;
    }
    let written = |args: &[&str], path: PathBuf| -> Result<()> {
        let out = Command::new(&firewall)
            .args(args)
            .output()
            .with_context(|| format!("running firewall {args:?}"))?;
        if !out.status.success() {
            bail!("firewall {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::write(&path, out.stdout).with_context(|| format!("writing {}", path.display()))
    };
    for (shell, file) in [("bash", "firewall"), ("zsh", "_firewall"), ("fish", "firewall.fish")] {
        written(&["generate", "completions", shell], completions.join(file))?;
    }
    written(&["schema"], staging.join("policy.schema.json"))?;
    // One package at a time under target/debian, the one the package test installs.
    if let Ok(debs) = std::fs::read_dir(root.join("target/debian")) {
        for deb in debs.flatten().filter(|d| d.file_name().to_string_lossy().starts_with("firewall_")) {
            std::fs::remove_file(deb.path()).with_context(|| format!("removing {}", deb.path().display()))?;
        }
    }
    // It prints the package's path.
    run(&mut cargo(&["deb", "--quiet", "--no-build", "-p", "firewall-user"]))
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root()).args(args);
    cmd
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup(),
        Task::Test { args } => {
            // The package first, as a test installs it (tests/tests/integration/package.rs),
            // and from the binary the tests run: `cargo test` unifies the tests' dev-dependency
            // features into firewall-user's, so its binary differs from `cargo build`'s.
            root_and_setup("the tests load eBPF programs and create network namespaces")
                .and_then(|()| run(&mut cargo(&["test", "--release", "--no-run"])))
                .and_then(|()| dist())
                .and_then(|()| {
                    let mut cmd = cargo(&["test", "--release"]);
                    cmd.args(&args);
                    run(&mut cmd)
                })
        }
        Task::Demo => ready("the demo creates network namespaces and attaches XDP")
            .and_then(|()| run(&mut cargo(&["run", "--quiet", "--release", "-p", "tests", "--bin", "demo"]))),
        Task::Bench => {
            ready("the benchmarks load eBPF programs and create network namespaces").and_then(|()| {
                run(&mut cargo(&["run", "--quiet", "--release", "-p", "tests", "--bin", "bench"]))
            })
        }
        Task::Dist => setup().and_then(|()| run(&mut cargo(&["build", "--release"]))).and_then(|()| dist()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
