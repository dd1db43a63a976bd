//! Builds the kernel object (`firewall-ebpf` for bpfel-unknown-none) and embeds it.
//!
//! Which compiler builds it: `FIREWALL_EBPF_TOOLCHAIN` if set; else rustup's nightly
//! when it has the `rust-src` component; else the Debian `rustc-web` toolchain that
//! `cargo xtask setup` links into rustup as `debian` (its `rust-web-src` provides the
//! library sources `-Z build-std=core` needs). See docs/building.md.
use std::{env, path::Path, process::Command};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn rustup_sysroot(toolchain: &str) -> Option<String> {
    let out = Command::new("rustup").args(["run", toolchain, "rustc", "--print", "sysroot"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn has_library_source(sysroot: &str) -> bool {
    Path::new(sysroot).join("lib/rustlib/src/rust/library/core").is_dir()
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=FIREWALL_EBPF_TOOLCHAIN");
    let toolchain = match env::var("FIREWALL_EBPF_TOOLCHAIN") {
        Ok(name) => name,
        Err(_) if rustup_sysroot("nightly").is_some_and(|s| has_library_source(&s)) => "nightly".into(),
        Err(_) if rustup_sysroot("debian").is_some_and(|s| has_library_source(&s)) => "debian".into(),
        Err(_) => {
            return Err(anyhow!(
                "no toolchain can build the eBPF object: run `cargo xtask setup` \
                 (installs Debian's rustc-web and rust-web-src and links them as rustup's `debian`), \
                 or `rustup component add rust-src --toolchain nightly`"
            ));
        }
    };
    if toolchain != "nightly" {
        // A stable-channel compiler needs this for `-Z build-std=core`; aya-build reads it
        // from our environment and passes it on.
        // SAFETY: the build script is single-threaded here.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }
    // aya-build relays every line the eBPF crate's cargo prints as a `cargo:warning`: its
    // "Compiling …" and "Finished …" lines would read as warnings of ours. Quiet, that cargo
    // prints only what the compiler says (its warnings and errors), which aya-build relays
    // from the messages it reads.
    // SAFETY: the build script is single-threaded here.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    let manifest = env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = Path::new(&manifest).join("../firewall-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [Package { name: "firewall-ebpf", root_dir: ebpf_dir, ..Default::default() }],
        Toolchain::Custom(&toolchain),
    )
}
