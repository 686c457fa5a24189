//! Read-ahead of blobs a reader will want soon ([`Getter::prefetch`]): the hint goes
//! to a few background threads, which start the reading (for a file store, they
//! open each blob's file and ask the kernel to read it into its page cache). A
//! read then finds the bytes in memory, or on their way, instead of waiting for
//! the disk one file after another: a disk gives many small files at once much
//! faster than in turn.
//!
//! Nothing waits for a hint: one that finds the queue full is dropped, and the
//! threads start with the first hint and end when the owner drops its
//! [`ReadAhead`].
//!
//! One lock, the queue's receiving end: a thread holds it only while it waits for
//! the next hint, and never with any other lock.
//!
//! [`Getter::prefetch`]: crate::store::Getter::prefetch

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::blob::Ref;

/// Hints queued and not yet taken, at most.
const QUEUED: usize = 512;
/// Threads taking hints: each may block on the disk (opening a file whose inode
/// is not in memory), so more than one keeps several reads in flight.
const THREADS: usize = 2;

/// What a read-ahead thread does with one hint.
pub(crate) type Action = Arc<dyn Fn(&Ref) + Send + Sync>;

/// A store's read-ahead threads and their queue.
pub(crate) struct ReadAhead {
    action: Action,
    queue: OnceLock<Option<SyncSender<Ref>>>,
}

impl ReadAhead {
    /// Read-ahead that runs `action` for each hinted ref, on threads started by
    /// the first hint.
    pub(crate) fn new(action: Action) -> ReadAhead {
        ReadAhead {
            action,
            queue: OnceLock::new(),
        }
    }

    /// Queues `refs`, in order; drops those that find the queue full (or the
    /// threads not started, if they could not be).
    pub(crate) fn hint(&self, refs: &[Ref]) {
        let Some(tx) = self.queue.get_or_init(|| self.start()) else {
            return;
        };
        for r in refs {
            match tx.try_send(*r) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn start(&self) -> Option<SyncSender<Ref>> {
        let (tx, rx) = mpsc::sync_channel::<Ref>(QUEUED);
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..THREADS {
            let (rx, action) = (Arc::clone(&rx), Arc::clone(&self.action));
            let spawned = std::thread::Builder::new()
                .name(format!("read-ahead-{i}"))
                .spawn(move || run(&rx, &*action));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => log::debug!("starting a read-ahead thread: {e}"),
            }
        }
        (started > 0).then_some(tx)
    }
}

/// One thread: takes hints until the queue's owner is gone.
fn run(rx: &Mutex<Receiver<Ref>>, action: &(dyn Fn(&Ref) + Send + Sync)) {
    loop {
        // The lock is held only while this thread waits for the next hint.
        let next = rx.lock().recv();
        match next {
            Ok(r) => action(&r),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn every_hint_reaches_the_action_until_the_owner_drops() {
        let (tx, rx) = channel::<Ref>();
        let tx = Mutex::new(tx);
        let ra = ReadAhead::new(Arc::new(move |r: &Ref| {
            let _ = tx.lock().send(*r);
        }));
        let refs: Vec<Ref> = (0u8..10).map(|i| Ref::of(&[i])).collect();
        ra.hint(&refs);
        let mut got: Vec<Ref> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)))
            .collect::<Result<_, _>>()
            .expect("every hint is acted on");
        got.sort();
        let mut want = refs.clone();
        want.sort();
        assert_eq!(got, want);
        drop(ra);
        // The threads end, and with them the action and its sender.
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_err());
    }
}
