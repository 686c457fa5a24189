//! The lock primitives of the core's parts that a model checker runs: the group
//! commit ([`group_commit`](super::group_commit)), staging
//! ([`staging`](super::staging)) and the handle table
//! ([`handles`](super::handles)).
//!
//! In every build they are `parking_lot`'s. Built with the feature `model-check`
//! (for tests/model_check_staging.rs, never part of a build), they are
//! scheduler-controlled stand-ins with the same API, whose every acquisition and
//! wake-up the `shuttle` model checker decides; they work only inside a checker's
//! run. tests/model_check_commit.rs includes the group commit's source alone and
//! brings stand-ins of its own.
//!
//! Owns no lock.

#[cfg(not(feature = "model-check"))]
pub use parking_lot::{Condvar, Mutex};

#[cfg(feature = "model-check")]
pub use checked::{Condvar, Mutex};

/// The `shuttle`-backed stand-ins: a lock that cannot be poisoned and a wait on a
/// borrowed guard, as `parking_lot`'s.
#[cfg(feature = "model-check")]
mod checked {
    use std::ops::{Deref, DerefMut};

    /// A mutex whose acquisitions the checker schedules.
    pub struct Mutex<T>(shuttle::sync::Mutex<T>);

    /// The guard of [`Mutex`]; empty only for the instant a wait holds the lock.
    pub struct MutexGuard<'a, T>(Option<shuttle::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        /// A mutex holding `value`.
        pub fn new(value: T) -> Self {
            Mutex(shuttle::sync::Mutex::new(value))
        }

        /// Takes the lock; a panic of an earlier holder does not poison it.
        pub fn lock(&self) -> MutexGuard<'_, T> {
            let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            MutexGuard(Some(g))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_deref().expect("guard held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_deref_mut().expect("guard held")
        }
    }

    /// A condition variable whose wake-ups the checker schedules.
    pub struct Condvar(shuttle::sync::Condvar);

    impl Condvar {
        /// A condition variable nobody waits on.
        pub fn new() -> Self {
            Condvar(shuttle::sync::Condvar::new())
        }

        /// Releases the guard's lock, waits for a notification, takes it again.
        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let g = guard.0.take().expect("guard held");
            guard.0 = Some(self.0.wait(g).unwrap_or_else(|e| e.into_inner()));
        }

        /// Wakes every waiter.
        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
