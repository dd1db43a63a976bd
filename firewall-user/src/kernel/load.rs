//! The kernel object loaded: both programs verified, its maps created or opened from
//! their pins.
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, SchedClassifier, Xdp},
};
use firewall_common::{MAP_CONNTRACK, MAP_HALF_OPEN, MAPS, PROG_EGRESS, PROG_INGRESS};

use crate::{
    compile::{Ids, plan},
    kernel::{
        filter::{FilterError, Result},
        maps::{Enforcement, LiveMaps},
        pins::Pins,
    },
    policy::{Conntrack, Policy},
};

/// The kernel object loaded: both programs verified and loaded (not attached), and its
/// maps, which hold whatever they held (nothing when just created).
pub struct Loaded {
    pub ebpf: Ebpf,
    pub maps: LiveMaps,
}

impl Loaded {
    /// Loads the object; with `pins`, its maps are the ones pinned there (created and
    /// pinned when missing).
    pub fn load(conntrack: &Conntrack, pins: Option<&Pins>) -> Result<Loaded> {
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(MAP_CONNTRACK, conntrack.max_entries);
        loader.map_max_entries(MAP_HALF_OPEN, conntrack.max_half_open);
        let paths: Vec<(&'static str, std::path::PathBuf)> =
            pins.map(|p| MAPS.iter().map(|name| (*name, p.map_path(name))).collect()).unwrap_or_default();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(crate::EBPF_OBJECT)?;
        let xdp: &mut Xdp = program(&mut ebpf, PROG_INGRESS)?;
        xdp.load().map_err(|source| FilterError::Program { call: "load", name: PROG_INGRESS, source })?;
        let tc: &mut SchedClassifier = program(&mut ebpf, PROG_EGRESS)?;
        tc.load().map_err(|source| FilterError::Program { call: "load", name: PROG_EGRESS, source })?;
        // The programs hold the maps now; the maps are ours to fill.
        let maps = LiveMaps::take(&mut ebpf)?;
        Ok(Loaded { ebpf, maps })
    }

    /// Loads the object with its maps filled from `policy` (not pinned): the harness of
    /// the verdict tests and the benchmarks.
    pub fn with_policy(policy: &Policy) -> Result<(Loaded, Ids)> {
        let mut loaded = Loaded::load(&policy.conntrack, None)?;
        let ids = Ids::assign(policy, &Ids::default());
        loaded.maps.apply(&plan(policy, &ids), &[], Some(Enforcement::Enforce))?;
        Ok((loaded, ids))
    }

    pub fn ingress(&mut self) -> Result<&mut Xdp> {
        program(&mut self.ebpf, PROG_INGRESS)
    }

    pub fn egress(&mut self) -> Result<&mut SchedClassifier> {
        program(&mut self.ebpf, PROG_EGRESS)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(FilterError::MissingProgram(name))?;
    program.try_into().map_err(|source| FilterError::Program { call: "type of", name, source })
}
