//! The poller: how a mount sees what other processes and hosts commit to its store.
//!
//! The daemon runs [`run`] on a thread of its own (`anchorfs-poll`) until it
//! [`Stop::stop`]s it after the session ends. Each round waits, then calls the
//! core's `refresh` and hands what it made stale to `on_change`:
//!
//! - Without a watch, a round waits the poll interval (as long as the kernel
//!   caches directories and `latest`).
//! - With a store's [`MapWatch`] (a backend that is told of other writers'
//!   commits), a round ends as soon as the watch wakes, and at the latest after
//!   the poll interval, so a missed notification costs at most one interval. The
//!   watch is waited on in slices of [`STOP_SLICE`], so a stop is seen that soon.
//!
//! A refresh that fails is logged, and the next round tries again. Locks: `Stop`'s
//! flag, held only to read or set it and while waiting on its condition variable
//! (which releases it); never together with another lock.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::fs::{AnchorFs, Invalidations};
use crate::store::MapWatch;

/// The longest a round waits on a watch before it looks whether it was stopped.
pub const STOP_SLICE: Duration = Duration::from_millis(200);

/// Tells a running [`run`] to return; it does at once when waiting without a
/// watch, and within [`STOP_SLICE`] with one.
#[derive(Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    woken: Condvar,
}

impl Stop {
    /// Not stopped yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stops the poller.
    pub fn stop(&self) {
        *self.stopped.lock() = true;
        self.woken.notify_all();
    }

    /// Whether [`stop`](Stop::stop) was called.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock()
    }

    /// Waits up to `timeout` or until stopped; returns whether stopped.
    fn sleep(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut stopped = self.stopped.lock();
        while !*stopped {
            if self.woken.wait_until(&mut stopped, deadline).timed_out() {
                break;
            }
        }
        *stopped
    }
}

/// Refreshes `core` every `poll`, and sooner whenever `watch` wakes, until `stop`;
/// gives each refresh's stale entries to `on_change` (see the module docs).
pub fn run(
    core: &AnchorFs,
    watch: Option<&dyn MapWatch>,
    poll: Duration,
    stop: &Stop,
    on_change: &mut dyn FnMut(Invalidations),
) {
    loop {
        let stopped = match watch {
            None => stop.sleep(poll),
            Some(w) => wait_on(w, poll, stop),
        };
        if stopped {
            return;
        }
        match core.refresh() {
            Ok(inv) => on_change(inv),
            Err(e) => log::error!("polling the anchor map: {e}"),
        }
    }
}

/// Waits until `watch` wakes or `poll` has passed; returns whether stopped.
fn wait_on(watch: &dyn MapWatch, poll: Duration, stop: &Stop) -> bool {
    let deadline = Instant::now() + poll;
    loop {
        if stop.is_stopped() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || watch.wait(left.min(STOP_SLICE)) {
            return false;
        }
    }
}
