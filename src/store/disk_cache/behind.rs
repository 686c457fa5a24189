//! Writing copies behind the reads: one thread takes the blobs a cache was handed
//! and writes their copies, so a read from the store below returns as soon as it
//! has its bytes. What waits is bounded in bytes; past the bound the reader
//! writes its copy itself, as a cache without this thread does.
//!
//! Locks: none of its own. The queue is a channel; the copies' index is the
//! cache's, taken by [`Copies::keep`](super::Copies) as for any copy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::Copies;
use crate::blob::{Blob, Ref};

/// The most bytes of copies waiting for the thread.
pub const QUEUED_MAX: usize = 32 << 20;

enum Job {
    Write(Ref, Blob),
    /// Answered once every job before it is done.
    Settle(Sender<()>),
}

/// The thread writing copies, and its queue.
pub(super) struct Behind {
    jobs: Mutex<Option<Sender<Job>>>,
    queued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Behind {
    /// Starts the thread; `None` (copies are then written by readers) if the
    /// system refuses a thread.
    pub(super) fn start(copies: Arc<Copies>) -> Option<Behind> {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        let thread = std::thread::Builder::new()
            .name("anchorfs-cache-writer".into())
            .spawn(move || write_copies(&copies, &rx, &q));
        match thread {
            Ok(t) => Some(Behind {
                jobs: Mutex::new(Some(tx)),
                queued,
                thread: Some(t),
            }),
            Err(e) => {
                log::warn!("disk cache: no thread to write copies ({e}); readers write them");
                None
            }
        }
    }

    /// Hands `blob`'s copy to the thread; false if too much is waiting already
    /// (or the thread is gone), and the caller writes it.
    pub(super) fn hand_over(&self, r: Ref, blob: Blob) -> bool {
        let size = blob.len();
        if self.queued.fetch_add(size, Ordering::SeqCst) + size > QUEUED_MAX {
            self.queued.fetch_sub(size, Ordering::SeqCst);
            return false;
        }
        let sent = match &*self.jobs.lock() {
            Some(tx) => tx.send(Job::Write(r, blob)).is_ok(),
            None => false,
        };
        if !sent {
            self.queued.fetch_sub(size, Ordering::SeqCst);
        }
        sent
    }

    /// Waits until every copy handed over before is written.
    pub(super) fn settle(&self) {
        let (tx, rx) = mpsc::channel();
        let sent = match &*self.jobs.lock() {
            Some(jobs) => jobs.send(Job::Settle(tx)).is_ok(),
            None => false,
        };
        if sent {
            let _ = rx.recv();
        }
    }
}

impl Drop for Behind {
    /// Writes what waits, then ends the thread.
    fn drop(&mut self) {
        self.jobs.lock().take();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::warn!("disk cache: the thread writing copies panicked");
            }
        }
    }
}

fn write_copies(copies: &Copies, jobs: &Receiver<Job>, queued: &AtomicUsize) {
    for job in jobs {
        match job {
            Job::Write(r, blob) => {
                copies.keep(&r, &blob);
                queued.fetch_sub(blob.len(), Ordering::SeqCst);
            }
            Job::Settle(done) => {
                let _ = done.send(());
            }
        }
    }
}
