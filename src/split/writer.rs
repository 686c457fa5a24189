//! Writing split trees: [`SplitWriter`], the chunking thread that runs the rolling
//! checksum ahead of it, and the `store_*` functions built on it.
//!
//! A writer owns no locks of its own: it is used from one thread at a time, and
//! talks to its chunking thread and storing threads by channels. (The storing
//! threads' and the block pool's locks are in `storers`.)

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::ops::Deref;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::blob::{Blob, Ref};
use crate::store::Store;

use super::rolling::{Cut, Splitter};
use super::storers::{BlockPool, ChunkStorers, PutChunk, Storers};
use super::tree::TreeBuilder;
use super::{SplitError, SplitOptions, MAX_BLOCK};

/// Data handed to the writer is gathered into blocks of this size before the
/// chunking thread sees it.
const BLOCK: usize = 256 << 10;
/// Blocks the chunking thread may be behind before the writer waits for it.
const MAX_INFLIGHT: usize = 6;
/// Chunks being stored on storing threads before the writer waits for one...
const MAX_STORING: usize = 96;
/// ...or bytes of them (with large chunks the count alone would let a writer
/// hold a hundred MiB).
const MAX_STORING_BYTES: u64 = 12 << 20;

/// How long [`SplitWriter::collect`] waits for storing threads.
#[derive(Clone, Copy)]
enum Wait {
    /// Until at most [`MAX_STORING`] chunks are still being stored.
    Room,
    All,
}

/// A chunk cut and (maybe) still being stored.
struct StoringChunk {
    len: u64,
    level: usize,
    r: Option<Ref>,
}

enum Scan {
    /// No thread yet: small inputs never start one.
    Inline(Splitter),
    Thread {
        tx: Option<mpsc::Sender<Blob>>,
        rx: mpsc::Receiver<Vec<Cut>>,
        handle: Option<JoinHandle<Splitter>>,
        inflight: usize,
    },
    Done,
}

/// Streams bytes into a split tree in a store.
///
/// Chunks and nodes are stored as they are completed; memory holds the current
/// chunk, a few blocks of look-ahead and one open node per tree level. The root ref
/// comes from [`finish`](SplitWriter::finish). `W` is any handle to a store: a
/// reference, an `Arc`, a `Box`.
pub struct SplitWriter<W>
where
    W: Deref,
    W::Target: Store,
{
    store: W,
    fanout: u32,
    scan: Scan,
    staging: Vec<u8>,
    pool: Arc<BlockPool>,
    /// Bytes not yet in a stored chunk; the front block starts at `blocks_start`.
    blocks: VecDeque<Blob>,
    blocks_start: u64,
    chunk_start: u64,
    written: u64,
    tree: TreeBuilder,
    failed: bool,
    /// Set by [`with_storers`](SplitWriter::with_storers): chunks go to storing
    /// threads once the chunking thread runs.
    storers: Option<Storers>,
    /// Chunks in order whose refs are not all in the tree yet; the front one has
    /// sequence number `storing_base`.
    storing: VecDeque<StoringChunk>,
    storing_base: u64,
    /// Chunks handed to the storing threads whose refs have not come back.
    unstored: usize,
    /// The bytes of those chunks.
    unstored_bytes: u64,
    /// Chunks go to the storing threads: set with the chunking thread's start.
    handing_off: bool,
}

impl<W> SplitWriter<W>
where
    W: Deref,
    W::Target: Store,
{
    /// A writer with Go's default options.
    pub fn new(store: W) -> SplitWriter<W> {
        let opts = SplitOptions::default();
        SplitWriter::from_parts(store, opts, Splitter::unchecked(&opts))
    }

    /// A writer with the given options.
    pub fn with_options(store: W, opts: SplitOptions) -> Result<SplitWriter<W>, SplitError> {
        let sp = Splitter::new(&opts)?;
        Ok(SplitWriter::from_parts(store, opts, sp))
    }

    /// A writer that hashes and stores chunks on `storers` once the input
    /// outgrows one block, so the caller's writes return while earlier chunks are
    /// still being stored; [`finish`](SplitWriter::finish) waits for them. The
    /// tree is the same as [`with_options`](SplitWriter::with_options) makes.
    pub fn with_storers(
        store: W,
        opts: SplitOptions,
        storers: &Arc<ChunkStorers>,
    ) -> Result<SplitWriter<W>, SplitError>
    where
        W: Clone + Send + Sync + 'static,
    {
        let sp = Splitter::new(&opts)?;
        let mut w = SplitWriter::from_parts(store.clone(), opts, sp);
        // `put`, not `put_blob`: a chunk is a slice of a pooled block, which a store
        // that keeps blobs must not hold on to.
        let put: PutChunk = Arc::new(move |chunk: Blob| Ok(store.put(&chunk)?.0));
        w.storers = Some(Storers::new(storers.clone(), put));
        Ok(w)
    }

    fn from_parts(store: W, opts: SplitOptions, sp: Splitter) -> SplitWriter<W> {
        SplitWriter {
            store,
            fanout: opts.fanout,
            scan: Scan::Inline(sp),
            staging: Vec::new(),
            pool: Arc::default(),
            blocks: VecDeque::new(),
            blocks_start: 0,
            chunk_start: 0,
            written: 0,
            tree: TreeBuilder::default(),
            failed: false,
            storers: None,
            storing: VecDeque::new(),
            storing_base: 0,
            unstored: 0,
            unstored_bytes: 0,
            handing_off: false,
        }
    }

    /// The number of bytes written so far.
    pub fn position(&self) -> u64 {
        self.written
    }

    /// Writes all of `data`.
    pub fn write_bytes(&mut self, mut data: &[u8]) -> Result<(), SplitError> {
        if self.failed {
            return Err(SplitError::Poisoned);
        }
        self.failed = true;
        while !data.is_empty() {
            if self.staging.is_empty() && data.len() >= BLOCK {
                let take = data.len().min(MAX_BLOCK);
                let mut buf = self.pool.take();
                buf.extend_from_slice(&data[..take]);
                self.send_block(self.pool.blob(buf))?;
                data = &data[take..];
                continue;
            }
            if self.staging.capacity() == 0 {
                self.staging = self.pool.take();
            }
            let take = (BLOCK - self.staging.len()).min(data.len());
            self.staging.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.staging.len() >= BLOCK {
                let block = self.pool.blob(std::mem::take(&mut self.staging));
                self.send_block(block)?;
            }
        }
        self.failed = false;
        Ok(())
    }

    fn send_block(&mut self, block: Blob) -> Result<(), SplitError> {
        self.written += block.len() as u64;
        self.blocks.push_back(block.clone());
        if let Scan::Inline(_) = self.scan {
            let Scan::Inline(sp) = std::mem::replace(&mut self.scan, Scan::Done) else {
                return Err(SplitError::Worker);
            };
            self.scan = spawn_scanner(sp)?;
            self.handing_off = self.storers.is_some();
        }
        let Scan::Thread { tx, inflight, .. } = &mut self.scan else {
            return Err(SplitError::Worker);
        };
        match tx {
            Some(tx) => tx.send(block).map_err(|_| SplitError::Worker)?,
            None => return Err(SplitError::Worker),
        }
        *inflight += 1;
        self.drain(false)
    }

    /// Applies the cuts the chunking thread has sent; waits for some when it is
    /// too far behind, or for all when `all`.
    fn drain(&mut self, all: bool) -> Result<(), SplitError> {
        loop {
            let Scan::Thread { rx, inflight, .. } = &mut self.scan else {
                return Err(SplitError::Worker);
            };
            let cuts = if all || *inflight > MAX_INFLIGHT {
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) if all => return Ok(()),
                    Err(_) => return Err(SplitError::Worker),
                }
            } else {
                match rx.try_recv() {
                    Ok(c) => c,
                    Err(mpsc::TryRecvError::Empty) => return Ok(()),
                    Err(mpsc::TryRecvError::Disconnected) => return Err(SplitError::Worker),
                }
            };
            *inflight = inflight.saturating_sub(1);
            for cut in &cuts {
                self.store_chunk(*cut)?;
            }
        }
    }

    /// Stores the chunk that ends at `cut.end` (or hands it to the storing threads)
    /// and adds it to the tree.
    fn store_chunk(&mut self, cut: Cut) -> Result<(), SplitError> {
        let start = self.chunk_start;
        let len = cut.end.checked_sub(start).ok_or(SplitError::Worker)?;
        let rel = start - self.blocks_start;
        let front = self.blocks.front().ok_or(SplitError::Worker)?;
        let level = (cut.level / self.fanout) as usize;
        let chunk = if rel + len <= front.len() as u64 {
            front.slice(rel as usize..(rel + len) as usize)
        } else {
            let mut joined = Vec::with_capacity(len as usize);
            self.join_chunk(rel as usize, len as usize, &mut joined)?;
            Blob::from(joined)
        };
        // Small inputs (never a chunking thread) store inline even with storers.
        match self.storers.as_ref().filter(|_| self.handing_off) {
            Some(storers) => {
                let seq = self.storing_base + self.storing.len() as u64;
                storers.submit(seq, chunk)?;
                self.storing.push_back(StoringChunk {
                    len,
                    level,
                    r: None,
                });
                self.unstored += 1;
                self.unstored_bytes += len;
                self.collect(Wait::Room)?;
            }
            None => {
                let (r, _) = self.store.put(&chunk)?;
                self.tree.add(&*self.store, r, len, level)?;
            }
        }
        self.chunk_start = cut.end;
        while let Some(b) = self.blocks.front() {
            let end = self.blocks_start + b.len() as u64;
            if end > self.chunk_start {
                break;
            }
            self.blocks_start = end;
            self.blocks.pop_front();
        }
        Ok(())
    }

    /// Appends `len` bytes of the held blocks, from `rel` bytes into the front one.
    fn join_chunk(&self, rel: usize, len: usize, out: &mut Vec<u8>) -> Result<(), SplitError> {
        let mut skip = rel;
        let mut want = len;
        for b in &self.blocks {
            if want == 0 {
                break;
            }
            let part = &b[skip.min(b.len())..];
            let part = &part[..want.min(part.len())];
            out.extend_from_slice(part);
            want -= part.len();
            skip = skip.saturating_sub(b.len());
        }
        if want != 0 {
            return Err(SplitError::Worker);
        }
        Ok(())
    }

    /// Takes the refs the storing threads have sent and adds the chunks at the
    /// front that have theirs to the tree, waiting as `wait` says.
    fn collect(&mut self, wait: Wait) -> Result<(), SplitError> {
        let Some(storers) = &self.storers else {
            return Ok(());
        };
        loop {
            while let Some(&StoringChunk {
                len,
                level,
                r: Some(r),
            }) = self.storing.front()
            {
                self.tree.add(&*self.store, r, len, level)?;
                self.storing.pop_front();
                self.storing_base += 1;
            }
            if self.storing.is_empty() {
                return Ok(());
            }
            let block = match wait {
                Wait::Room => {
                    self.unstored > MAX_STORING
                        || (self.unstored > 1 && self.unstored_bytes > MAX_STORING_BYTES)
                }
                Wait::All => true,
            };
            let (seq, r) = if block {
                storers.done.recv().map_err(|_| SplitError::Worker)?
            } else {
                match storers.done.try_recv() {
                    Ok(m) => m,
                    Err(mpsc::TryRecvError::Empty) => return Ok(()),
                    Err(mpsc::TryRecvError::Disconnected) => return Err(SplitError::Worker),
                }
            };
            self.unstored = self.unstored.saturating_sub(1);
            let i = seq
                .checked_sub(self.storing_base)
                .ok_or(SplitError::Worker)?;
            let slot = self.storing.get_mut(i as usize).ok_or(SplitError::Worker)?;
            self.unstored_bytes = self.unstored_bytes.saturating_sub(slot.len);
            slot.r = Some(r?);
        }
    }

    /// Stores what remains and returns the root ref ([`Ref::ZERO`] for empty input).
    pub fn finish(mut self) -> Result<Ref, SplitError> {
        if self.failed {
            return Err(SplitError::Poisoned);
        }
        self.failed = true;
        let staging = std::mem::take(&mut self.staging);
        let sp = match std::mem::replace(&mut self.scan, Scan::Done) {
            Scan::Inline(mut sp) => {
                if !staging.is_empty() {
                    self.written += staging.len() as u64;
                    let mut cuts = Vec::new();
                    sp.push(&staging, &mut cuts);
                    self.blocks.push_back(self.pool.blob(staging));
                    for cut in &cuts {
                        self.store_chunk(*cut)?;
                    }
                }
                sp
            }
            thread @ Scan::Thread { .. } => {
                self.scan = thread;
                if !staging.is_empty() {
                    let block = self.pool.blob(staging);
                    self.send_block(block)?;
                }
                if let Scan::Thread { tx, .. } = &mut self.scan {
                    tx.take();
                }
                self.drain(true)?;
                let Scan::Thread { handle, .. } = &mut self.scan else {
                    return Err(SplitError::Worker);
                };
                let handle = handle.take().ok_or(SplitError::Worker)?;
                let sp = handle.join().map_err(|_| SplitError::Worker)?;
                self.scan = Scan::Done;
                sp
            }
            Scan::Done => return Err(SplitError::Poisoned),
        };
        if sp.position() != self.written {
            return Err(SplitError::Worker);
        }
        if let Some(cut) = sp.finish() {
            self.store_chunk(cut)?;
        }
        self.collect(Wait::All)?;
        let root = self.tree.finish(&*self.store)?;
        self.failed = false;
        Ok(root)
    }
}

fn spawn_scanner(mut sp: Splitter) -> Result<Scan, SplitError> {
    let (tx, blocks) = mpsc::channel::<Blob>();
    let (cuts_tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("split-chunker".into())
        .spawn(move || {
            for block in blocks {
                let mut cuts = Vec::new();
                sp.push(&block, &mut cuts);
                if cuts_tx.send(cuts).is_err() {
                    break;
                }
            }
            sp
        })
        .map_err(SplitError::Io)?;
    Ok(Scan::Thread {
        tx: Some(tx),
        rx,
        handle: Some(handle),
        inflight: 0,
    })
}

impl<W> Drop for SplitWriter<W>
where
    W: Deref,
    W::Target: Store,
{
    fn drop(&mut self) {
        if let Scan::Thread { tx, handle, .. } = &mut self.scan {
            tx.take();
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

impl<W> Write for SplitWriter<W>
where
    W: Deref,
    W::Target: Store,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Ok(self.write_bytes(buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stores `data` as a split tree; returns the root ref.
pub fn store_bytes<S: Store + ?Sized>(
    store: &S,
    data: &[u8],
    opts: SplitOptions,
) -> Result<Ref, SplitError> {
    let mut w = SplitWriter::with_options(store, opts)?;
    w.write_bytes(data)?;
    w.finish()
}

/// Stores everything `input` yields as a split tree; returns the root ref.
pub fn store_from<S: Store + ?Sized, R: Read>(
    store: &S,
    input: R,
    opts: SplitOptions,
) -> Result<Ref, SplitError> {
    feed(SplitWriter::with_options(store, opts)?, input)
}

/// Like [`store_from`], with the chunks hashed and stored on `storers` while the
/// input is read.
pub fn store_from_with<W, R: Read>(
    store: W,
    input: R,
    opts: SplitOptions,
    storers: &Arc<ChunkStorers>,
) -> Result<Ref, SplitError>
where
    W: Deref + Clone + Send + Sync + 'static,
    W::Target: Store,
{
    feed(SplitWriter::with_storers(store, opts, storers)?, input)
}

/// Writes everything `input` yields to `w` and finishes it.
fn feed<W, R: Read>(mut w: SplitWriter<W>, mut input: R) -> Result<Ref, SplitError>
where
    W: Deref,
    W::Target: Store,
{
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SplitError::Io(e)),
        };
        w.write_bytes(&buf[..n])?;
    }
    w.finish()
}
