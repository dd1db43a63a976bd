//! The kernel object loaded: both programs verified, its maps created or opened from
//! their pins.
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, SchedClassifier, Xdp},
};
use firewall_common::{MAP_COUNTERS, MAPS, PROG_EGRESS, PROG_INGRESS};

use crate::{
    compile::{Ids, plan},
    kernel::{
        clock::Clock,
        filter::{FilterError, Result},
        maps::{Enforcement, LiveMaps, MapsError},
        pins::Pins,
        resize::Sizes,
    },
    policy::Policy,
};

/// The kernel object loaded: both programs verified and loaded (not attached), and its
/// maps, which hold whatever they held (nothing when just created).
pub struct Loaded {
    pub ebpf: Ebpf,
    pub maps: LiveMaps,
}

impl Loaded {
    /// Loads the object, the maps `sizes` names made at those sizes; with `pins`, its maps
    /// but those named in `fresh` are the ones pinned there (created and pinned when
    /// missing), and those in `fresh` are new and not pinned (see `kernel::resize`).
    pub fn load(sizes: &Sizes, pins: Option<&Pins>, fresh: &[&str]) -> Result<Loaded> {
        Loaded::load_reading(Clock::of_this_kernel(), sizes, pins, fresh)
    }

    /// As [`Loaded::load`], the programs reading the time as `clock` says.
    fn load_reading(clock: Clock, sizes: &Sizes, pins: Option<&Pins>, fresh: &[&str]) -> Result<Loaded> {
        let mut loader = EbpfLoader::new();
        sizes.set_on(&mut loader);
        clock.set_on(&mut loader);
        let paths: Vec<(&'static str, std::path::PathBuf)> = pins
            .map(|p| {
                MAPS.iter()
                    .filter(|name| !fresh.contains(name))
                    .map(|name| (*name, p.map_path(name)))
                    .collect()
            })
            .unwrap_or_default();
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
        Loaded::with_policy_reading(Clock::of_this_kernel(), policy)
    }

    /// As [`Loaded::with_policy`], the programs reading the time as `clock` says.
    pub fn with_policy_reading(clock: Clock, policy: &Policy) -> Result<(Loaded, Ids)> {
        let ids = Ids::assign(policy, &Ids::default());
        let plan = plan(policy, &ids);
        // `COUNTERS` at the object's size: no migration grows it here, as `block` grows a
        // live filter's.
        let sizes = Sizes::for_plan(&policy.conntrack, &plan).without(&[MAP_COUNTERS]);
        let mut loaded = Loaded::load_reading(clock, &sizes, None, &[])?;
        loaded.maps.apply(&plan, &[], Some(Enforcement::Enforce))?;
        Ok((loaded, ids))
    }

    /// Pins the map named `name` at `path`, whether [`LiveMaps`] holds it or the object.
    pub(crate) fn pin_map(&self, name: &'static str, path: &std::path::Path) -> Result<()> {
        let pinned = match self.maps.map_data(name) {
            Some(map) => map.pin(path),
            None => self.ebpf.map(name).ok_or(MapsError::Missing(name))?.pin(path),
        };
        pinned.map_err(|source| FilterError::Pin { path: path.to_owned(), source })
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
