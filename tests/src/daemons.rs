//! Real daemons and clients in the lab (see tests/tests/daemons.rs).
