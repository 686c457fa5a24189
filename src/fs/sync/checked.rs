//! The `shuttle`-backed stand-ins for the `parking_lot` primitives: a lock that
//! cannot be poisoned and a wait on a borrowed guard, as `parking_lot`'s, whose every
//! acquisition and wake-up the checker's scheduler decides. They work only inside a
//! checker's run. The crate uses them with the feature `model-check`;
//! tests/model_check_commit.rs includes this file by path.

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
