//! The storing threads: a [`ChunkStorers`] set that hashes and stores chunks for
//! any number of writers, each writer's link to it ([`Storers`]), and the block
//! buffers a writer reuses ([`BlockPool`]).
//!
//! Locks: `ChunkStorers::jobs`, then `ChunkStorers::handles` (taken while `jobs` is
//! held only when the threads start); the job queue's receiver, held by one idle
//! storing thread at a time while it waits for a job, never while it stores; and
//! `BlockPool::free`, held to take or give back one buffer. None is held across
//! store I/O.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::blob::{Blob, Ref};
use crate::store::StoreError;

use super::{SplitError, MAX_BLOCK};

/// Storing threads that keep a file store's direct writes busy on two cores: most
/// of a chunk's time is the wait for its write to reach the disk, so there are more
/// of them than cores.
pub const STORING_THREADS: usize = 8;

/// Stores one chunk and returns its ref; called on a storing thread.
pub(super) type PutChunk = Arc<dyn Fn(Blob) -> Result<Ref, StoreError> + Send + Sync>;

/// A storing thread's answer: the chunk's sequence number and its ref.
type Stored = (u64, Result<Ref, StoreError>);

/// One chunk to store, with where its answer goes.
struct StoreJob {
    seq: u64,
    chunk: Blob,
    put: PutChunk,
    done: mpsc::Sender<Stored>,
    /// Set when the writer is dropped or failed: its queued chunks are skipped.
    cancel: Arc<AtomicBool>,
}

/// Threads that hash and store chunks for split writers made by
/// [`SplitWriter::with_storers`](super::SplitWriter::with_storers), so a writer's
/// caller goes on while its chunks are stored. One set serves any number of writers
/// (a mount keeps one); the threads start with the first chunk and stop when the set
/// is dropped.
pub struct ChunkStorers {
    threads: usize,
    jobs: Mutex<Option<mpsc::Sender<StoreJob>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl ChunkStorers {
    /// A set of `threads` storing threads (at least one).
    pub fn new(threads: usize) -> Arc<ChunkStorers> {
        Arc::new(ChunkStorers {
            threads: threads.max(1),
            jobs: Mutex::new(None),
            handles: Mutex::new(Vec::new()),
        })
    }

    fn submit(&self, job: StoreJob) -> Result<(), SplitError> {
        let mut jobs = self.jobs.lock();
        let tx = match &mut *jobs {
            Some(tx) => tx,
            None => jobs.insert(self.spawn()?),
        };
        tx.send(job).map_err(|_| SplitError::Worker)
    }

    fn spawn(&self) -> Result<mpsc::Sender<StoreJob>, SplitError> {
        let (tx, rx) = mpsc::channel::<StoreJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = self.handles.lock();
        for _ in 0..self.threads {
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name("split-storer".into())
                .spawn(move || loop {
                    let job = rx.lock().recv();
                    let Ok(job) = job else { break };
                    if job.cancel.load(Ordering::Relaxed) {
                        continue;
                    }
                    // A writer gone meanwhile no longer listens; that is fine.
                    let _ = job.done.send((job.seq, (job.put)(job.chunk)));
                })
                .map_err(SplitError::Io)?;
            handles.push(handle);
        }
        Ok(tx)
    }
}

impl Drop for ChunkStorers {
    fn drop(&mut self) {
        self.jobs.lock().take();
        for h in self.handles.lock().drain(..) {
            let _ = h.join();
        }
    }
}

/// A writer's link to its storing threads.
pub(super) struct Storers {
    pool: Arc<ChunkStorers>,
    put: PutChunk,
    done_tx: mpsc::Sender<Stored>,
    pub(super) done: mpsc::Receiver<Stored>,
    cancel: Arc<AtomicBool>,
}

impl Storers {
    pub(super) fn new(pool: Arc<ChunkStorers>, put: PutChunk) -> Storers {
        let (done_tx, done) = mpsc::channel();
        Storers {
            pool,
            put,
            done_tx,
            done,
            cancel: Arc::default(),
        }
    }

    pub(super) fn submit(&self, seq: u64, chunk: Blob) -> Result<(), SplitError> {
        self.pool.submit(StoreJob {
            seq,
            chunk,
            put: self.put.clone(),
            done: self.done_tx.clone(),
            cancel: self.cancel.clone(),
        })
    }
}

impl Drop for Storers {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// Block buffers a writer keeps for reuse. Each fresh buffer costs a page fault per
/// page; reusing them keeps a long write from faulting in every byte it passes on.
const POOLED_BLOCKS: usize = 8;

/// Freed block buffers of one writer, ready for its next blocks.
#[derive(Default)]
pub(super) struct BlockPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BlockPool {
    /// An empty buffer with room for a block of up to `MAX_BLOCK` bytes.
    pub(super) fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MAX_BLOCK))
    }

    /// `buf` as a blob whose buffer comes back to the pool when the last slice of it
    /// is dropped.
    pub(super) fn blob(self: &Arc<Self>, buf: Vec<u8>) -> Blob {
        Blob::from_owner(PooledBlock {
            buf,
            pool: self.clone(),
        })
    }
}

/// A block's buffer, on loan from a [`BlockPool`].
struct PooledBlock {
    buf: Vec<u8>,
    pool: Arc<BlockPool>,
}

impl AsRef<[u8]> for PooledBlock {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBlock {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut free = self.pool.free.lock();
        if free.len() < POOLED_BLOCKS && buf.capacity() >= MAX_BLOCK {
            free.push(buf);
        }
    }
}
