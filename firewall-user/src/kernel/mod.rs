//! What touches the kernel: the object loaded ([`load`]), its clock set ([`clock`]), and
//! attached, swapped in place and removed ([`attach`]); where a live filter is pinned, and
//! its state lock ([`pins`]); its maps ([`maps`]), sized to the policy and resized live
//! ([`resize`]), and made anew where another version made them at another layout
//! ([`relayout`]); the receive offloads generic XDP turns off, turned back on by `down`
//! ([`offloads`]); the DNS answers held for `serve` ([`held`]); and [`Filter`], the handle
//! every command on a live filter starts from ([`filter`]).
pub mod attach;
pub mod clock;
pub mod filter;
pub mod held;
pub mod load;
pub mod maps;
pub mod offloads;
pub mod pins;
pub mod relayout;
pub mod resize;

pub use filter::{Filter, FilterError};
