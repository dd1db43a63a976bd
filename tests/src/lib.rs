//! Shared pieces of the integration tests: the root check, frame builders, a harness
//! that runs frames through the loaded programs with BPF_PROG_TEST_RUN, and the lab of
//! network namespaces.
pub mod daemons;
pub mod differential;
pub mod flood;
pub mod frames;
pub mod guest;
pub mod harness;
pub mod lab;
pub mod model;

/// Every test here loads eBPF programs or creates network namespaces. Without root they
/// fail, loudly: a skipped test would read as a pass.
pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "needs root: these tests load eBPF programs into the kernel and create network namespaces; run `sudo cargo xtask test`"
        );
    }
}

/// The workspace's root directory.
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_owned()
}
