//! The lock primitives of the core's parts that a model checker runs
//! ([`group_commit`](super::group_commit)): `parking_lot`'s here; the test that
//! includes those parts brings scheduler-controlled ones with the same API.

pub use parking_lot::{Condvar, Mutex};
