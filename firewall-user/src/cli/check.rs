//! `firewall check FILE [--diff] [--json]`
use std::path::PathBuf;

use clap::Args;
use firewall_user::{
    exit::ExitStatus,
    kernel::filter::{if_index, interface_addresses},
    ops::{Apply, lockout, reload},
    policy::{self, Policy},
    view::versioned_json,
};

#[derive(Args)]
pub struct Check {
    /// The policy file.
    file: PathBuf,
    /// Skip the SSH session check.
    #[arg(long)]
    force: bool,
    /// Also print what the policy would change on the live filter (all of it when none is
    /// up): exit 0 when nothing would change, 3 when something would. Needs root.
    #[arg(long)]
    diff: bool,
    /// With --diff: the filter's interface (default: [host] interface in the policy).
    #[arg(long, value_name = "IFACE", requires = "diff")]
    iface: Option<String>,
    /// One JSON object, for scripts.
    #[arg(long)]
    json: bool,
}

/// What `check --json` prints without `--diff`.
#[derive(serde::Serialize)]
struct Checked<'a> {
    file: &'a std::path::Path,
    rules: usize,
    warnings: &'a [String],
}

impl Check {
    pub fn run(self) -> anyhow::Result<ExitStatus> {
        let policy = policy::load(&self.file)?;
        let mut warnings = absent_addresses(&policy);
        warnings.extend(firewall_user::names::resolver_warnings(&policy));
        for warning in &warnings {
            eprintln!("warning: {}: {warning}", self.file.display());
        }
        let session_guard = super::session_guard(self.force);
        lockout::guard(&policy, None, session_guard)?;
        if self.diff {
            let apply = Apply { session_guard, ..Apply::default() };
            let preview = reload::preview_file(&self.file, policy, self.iface.as_deref(), &apply)?;
            return Ok(super::print_preview(&preview, self.json)?);
        }
        if self.json {
            let checked = Checked { file: &self.file, rules: policy.rules.len(), warnings: &warnings };
            report!("{}", versioned_json(&checked))?;
        } else {
            report!("{}: OK ({} rules)", self.file.display(), policy.rules.len())?;
        }
        Ok(ExitStatus::Done)
    }
}

/// What to warn of: each of the policy's addresses that its `[host] interface` does not
/// have now (packets to it would meet FORWARD's policy, and none could leave from it).
/// Nothing without an interface, nor for one this machine lacks: the policy may be
/// checked before it goes to the server it names.
fn absent_addresses(policy: &Policy) -> Vec<String> {
    let Some(iface) = policy.interface.as_deref().filter(|iface| if_index(iface).is_some()) else {
        return Vec::new();
    };
    let Some(present) = interface_addresses(iface) else {
        return Vec::new();
    };
    policy
        .host_addresses()
        .into_iter()
        .filter(|addr| !present.contains(addr))
        .map(|addr| {
            let key = if addr.is_ipv4() { "address" } else { "address6" };
            format!("[host] {key} {addr} is not on interface {iface} now")
        })
        .collect()
}
