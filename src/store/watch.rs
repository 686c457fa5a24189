//! Being told that the anchor map may have changed, instead of only looking every
//! poll interval.
//!
//! A store whose backend can say at once that another writer moved the anchor map
//! (a database's notifications, say) returns a [`MapWatch`] from
//! [`AnchorGetter::watch`](super::AnchorGetter::watch); others return `None` and
//! are polled. A watch only hints: a wake-up means "look again", never what
//! changed, and a caller still reads the map ref to find out.
//!
//! [`ChangeSignal`] is a ready-made watch source for a backend: whoever learns of
//! a change (a swap in this process, a listening thread) calls
//! [`notify`](ChangeSignal::notify), and every watch made from it wakes.
//!
//! Locks: a signal's `generation`, held only to read or bump the count and while
//! a waiter sleeps on its condition variable (which releases it); a watch's
//! `seen`, held only to read or write the count it last reported. Never together
//! with any other lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Wakes a waiting thread when the anchor map may have changed.
///
/// A change that happens while no thread waits is not lost: the next
/// [`wait`](MapWatch::wait) returns `true` at once. Spurious wake-ups are allowed
/// (the caller reads the map ref and finds nothing new).
pub trait MapWatch: Send + Sync {
    /// Blocks until the map may have changed since the last `wait` that returned
    /// `true` (or since the watch was made): then `true`. `false` once `timeout`
    /// has passed with no change seen. Callers that must stop promptly pass a
    /// short timeout and call again.
    fn wait(&self, timeout: Duration) -> bool;
}

/// A count of changes that watches wait on; cheap to share.
#[derive(Clone, Default)]
pub struct ChangeSignal {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl ChangeSignal {
    /// A signal no one has notified.
    pub fn new() -> ChangeSignal {
        ChangeSignal::default()
    }

    /// Says the map may have changed: every watch made from this signal wakes.
    pub fn notify(&self) {
        *self.shared.generation.lock() += 1;
        self.shared.changed.notify_all();
    }

    /// A watch that reports the notifications made after this call.
    pub fn watch(&self) -> Box<dyn MapWatch> {
        Box::new(SignalWatch {
            seen: Mutex::new(*self.shared.generation.lock()),
            shared: self.shared.clone(),
        })
    }
}

/// A [`MapWatch`] over a [`ChangeSignal`]: remembers the count it last reported.
struct SignalWatch {
    shared: Arc<Shared>,
    seen: Mutex<u64>,
}

impl MapWatch for SignalWatch {
    fn wait(&self, timeout: Duration) -> bool {
        let seen = *self.seen.lock();
        let deadline = Instant::now() + timeout;
        let now = {
            let mut generation = self.shared.generation.lock();
            while *generation == seen {
                if self
                    .shared
                    .changed
                    .wait_until(&mut generation, deadline)
                    .timed_out()
                {
                    break;
                }
            }
            *generation
        };
        if now == seen {
            return false;
        }
        *self.seen.lock() = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_wakes_a_waiter_and_is_not_lost_between_waits() {
        let signal = ChangeSignal::new();
        let watch = signal.watch();
        assert!(
            !watch.wait(Duration::from_millis(10)),
            "nothing happened yet"
        );
        signal.notify();
        signal.notify();
        assert!(watch.wait(Duration::ZERO), "a change made before the wait");
        assert!(!watch.wait(Duration::from_millis(10)), "reported once");

        let waker = {
            let signal = signal.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                signal.notify();
            })
        };
        let start = Instant::now();
        assert!(watch.wait(Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(10));
        waker.join().unwrap();

        let late = signal.watch();
        assert!(!late.wait(Duration::ZERO), "a new watch starts from now");
    }
}
