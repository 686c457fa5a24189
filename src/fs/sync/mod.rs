//! The lock primitives of the core's parts that a model checker runs: the group
//! commit ([`group_commit`](super::group_commit)), staging
//! ([`staging`](super::staging)) and the handle table
//! ([`handles`](super::handles)).
//!
//! In every build they are `parking_lot`'s. Built with the feature `model-check`
//! (for tests/model_check_staging.rs, never part of a build), they are
//! scheduler-controlled stand-ins with the same API, whose every acquisition and
//! wake-up the `shuttle` model checker decides; they work only inside a checker's
//! run. tests/model_check_commit.rs includes the group commit's source alone, with
//! these stand-ins (`checked.rs`) by path.
//!
//! Owns no lock.

#[cfg(not(feature = "model-check"))]
pub use parking_lot::{Condvar, Mutex};

#[cfg(feature = "model-check")]
pub use checked::{Condvar, Mutex};

#[cfg(feature = "model-check")]
mod checked;
