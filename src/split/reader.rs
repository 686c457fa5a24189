//! Reading split trees: [`SplitReader`] (positioned reads from many threads, and
//! `Read + Seek`), the plan of a read's chunks, and [`read_to_vec`]; the chunks
//! are fetched by `fetch`.
//!
//! Locks: each reader's `cache` (decoded nodes and recent chunks), held only to
//! look up or add an entry, never while a node or chunk is read from the store,
//! and never with its `in_flight` registry's locks (see `in_flight`).

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::blob::{Blob, Ref};
use crate::store::{Getter, MAX_BLOB_SIZE};

use super::buffers;
use super::fetch::{fetch_into, ChunkSpot, Job};
use super::in_flight::{Claim, InFlight, Slot, Ticket};
use super::node::DecNode;
use super::{SplitError, MAX_DEPTH};

/// Reads all the content of the split tree `root`.
pub fn read_to_vec<G: Getter + ?Sized>(g: &G, root: &Ref) -> Result<Vec<u8>, SplitError> {
    let r = SplitReader::new(g, *root)?;
    let mut out = vec![
        0u8;
        usize::try_from(r.size()).map_err(|_| SplitError::PastEnd {
            offset: 0,
            len: usize::MAX,
            size: r.size(),
        })?
    ];
    r.read_exact_at(0, &mut out)?;
    Ok(out)
}

/// What a reader reads.
enum Body {
    Empty,
    Raw(Blob),
    Tree(Arc<DecNode>),
}

/// Decoded nodes kept by one reader, bounded by their total number of children.
const NODE_CACHE_CHILDREN: usize = 1 << 16;
/// Recently read chunks kept by one reader for small sequential reads.
const RECENT_CHUNKS: usize = 4;
/// How far past a sequential read its chunks are hinted to the store
/// ([`Getter::prefetch`]), so that the disk has many of them in flight.
const READ_AHEAD: u64 = 8 << 20;
/// Reads smaller than this (random ones) start no read-ahead.
const READ_AHEAD_MIN_READ: usize = 128 << 10;

struct ReadCache {
    nodes: LruCache<Ref, Arc<DecNode>>,
    children: usize,
    /// Recent chunks: stream offset of the first byte, and the bytes.
    recent: VecDeque<(u64, Blob)>,
}

impl ReadCache {
    fn chunk_at(&self, pos: u64) -> Option<(u64, Blob)> {
        self.recent
            .iter()
            .find(|(s, b)| *s <= pos && pos - *s < b.len() as u64)
            .cloned()
    }

    fn add_chunk(&mut self, start: u64, b: Blob) {
        if self.recent.len() >= RECENT_CHUNKS {
            self.recent.pop_back();
        }
        self.recent.push_front((start, b));
    }

    fn add_node(&mut self, n: Arc<DecNode>) {
        let k = n.refs.len();
        if k > NODE_CACHE_CHILDREN {
            return;
        }
        self.children += k;
        if let Some(old) = self.nodes.put(n.r, n) {
            self.children -= old.refs.len();
        }
        while self.children > NODE_CACHE_CHILDREN {
            match self.nodes.pop_lru() {
                Some((_, old)) => self.children -= old.refs.len(),
                None => break,
            }
        }
    }
}

/// Reads the content of a split tree (or of one raw blob) from a store.
///
/// The size is known from the root node without reading chunks. Positions are
/// found by descending from the root by offsets (binary search at each node).
/// Every node and chunk comes through the store's `get`, which checks it against
/// its ref; wrap the store in [`LruStore`](crate::store::lru::LruStore) to cache
/// blobs. A tree that is inconsistent, or a blob that is missing or damaged, gives
/// an error, never wrong bytes. [`read_at`](SplitReader::read_at) takes `&self`
/// and may be called from many threads at once; `Read + Seek` keep their own
/// position. `G` is any handle to a getter: a reference, an `Arc`, a `Box`.
pub struct SplitReader<G>
where
    G: Deref,
    G::Target: Getter,
{
    store: G,
    root: Ref,
    size: u64,
    body: Body,
    pos: u64,
    cache: Mutex<ReadCache>,
    in_flight: InFlight,
    /// The furthest end of a read so far, and how far read-ahead was hinted.
    read_end: AtomicU64,
    hinted_to: AtomicU64,
}

impl<G> SplitReader<G>
where
    G: Deref,
    G::Target: Getter,
{
    fn with_body(store: G, root: Ref, size: u64, body: Body) -> SplitReader<G> {
        SplitReader {
            store,
            root,
            size,
            body,
            pos: 0,
            cache: Mutex::new(ReadCache {
                nodes: LruCache::unbounded(),
                children: 0,
                recent: VecDeque::with_capacity(RECENT_CHUNKS),
            }),
            in_flight: InFlight::default(),
            read_end: AtomicU64::new(0),
            hinted_to: AtomicU64::new(0),
        }
    }

    /// A reader of the split tree whose root is `root` ([`Ref::ZERO`]: empty).
    /// Reads and checks the root node only.
    pub fn new(store: G, root: Ref) -> Result<SplitReader<G>, SplitError> {
        if root.is_zero() {
            return Ok(SplitReader::with_body(store, root, 0, Body::Empty));
        }
        let node = DecNode::decode(&root, &store.get(&root)?)?;
        if node.offset != 0 {
            return Err(SplitError::Malformed {
                r: root,
                why: format!("a root starts at offset {}, not 0", node.offset),
            });
        }
        let size = node.end;
        Ok(SplitReader::with_body(
            store,
            root,
            size,
            Body::Tree(Arc::new(node)),
        ))
    }

    /// A reader of the single raw blob `r` (not a tree), through the same
    /// interface.
    pub fn raw(store: G, r: Ref) -> Result<SplitReader<G>, SplitError> {
        let blob = store.get(&r)?;
        let size = blob.len() as u64;
        Ok(SplitReader::with_body(store, r, size, Body::Raw(blob)))
    }

    /// The content's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The ref this reader reads (a tree root or a raw blob).
    pub fn root(&self) -> Ref {
        self.root
    }

    /// Whether this reads a raw blob rather than a tree.
    pub fn is_raw(&self) -> bool {
        matches!(self.body, Body::Raw(_))
    }

    /// The position of `Read` and `Seek`.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads into `buf` from `offset`; fills `buf` unless the content ends first.
    /// Returns the number of bytes read (0 at or past the end).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SplitError> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (self.size - offset).min(buf.len() as u64) as usize;
        let root = match &self.body {
            Body::Empty => return Ok(0),
            Body::Raw(b) => {
                let start = offset as usize;
                buf[..want].copy_from_slice(&b[start..start + want]);
                return Ok(want);
            }
            Body::Tree(root) => root,
        };
        if want >= READ_AHEAD_MIN_READ && self.store.reads_ahead() {
            self.read_ahead(root, offset, offset + want as u64);
        }
        self.read_tree_into(root, offset, &mut buf[..want])?;
        Ok(want)
    }

    /// Fills `out` with the content from `offset` (all of it inside the content).
    /// A chunk that lies wholly inside is read straight into `out`, with no buffer
    /// of its own; one that sticks out at either end is fetched whole and kept
    /// among the recent chunks, for a sequential reader's next read.
    fn read_tree_into(
        &self,
        root: &Arc<DecNode>,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), SplitError> {
        let end = offset + out.len() as u64;
        let plan = self.plan(root, offset, end)?;
        let sticks_out = |s: &ChunkSpot| s.start < offset || s.end > end;
        // The chunks that stick out: fetched whole here, or by a read in flight.
        let mut mine: Vec<(&ChunkSpot, Ticket<'_>, Vec<u8>)> = Vec::new();
        let mut theirs: Vec<(&ChunkSpot, Arc<Slot>)> = Vec::new();
        for spot in plan.iter().filter_map(Planned::missing) {
            if sticks_out(spot) {
                match self.in_flight.claim(spot.start) {
                    Claim::Mine(t) => mine.push((spot, t, buffers::take(spot.len()))),
                    Claim::Theirs(slot) => theirs.push((spot, slot)),
                }
            }
        }
        // Chunks wholly inside go straight into their part of `out`.
        let mut jobs: Vec<Job<'_>> = Vec::new();
        let mut rest = &mut *out;
        for p in &plan {
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(p.overlap(offset, end));
            rest = tail;
            match p {
                Planned::Missing(spot) if !sticks_out(spot) => jobs.push((spot, dst)),
                _ => {}
            }
        }
        jobs.extend(
            mine.iter_mut()
                .map(|(spot, _, buf)| (*spot, buf.as_mut_slice())),
        );
        // On an error the tickets drop, and the reads waiting fetch for themselves.
        fetch_into(&*self.store, jobs)?;
        // The rest are whole chunks: the recent ones, those fetched here (settled
        // before waiting for anyone else's), and those another read fetched.
        let mut whole: Vec<(u64, Blob)> = plan
            .iter()
            .filter_map(|p| match p {
                Planned::Cached { start, blob } => Some((*start, blob.clone())),
                Planned::Missing(_) => None,
            })
            .collect();
        for (spot, ticket, buf) in mine {
            let b = buffers::into_blob(buf);
            self.cache.lock().add_chunk(spot.start, b.clone());
            ticket.settle(b.clone());
            whole.push((spot.start, b));
        }
        for (spot, slot) in theirs {
            let b = match slot.wait() {
                Some(b) => b,
                None => {
                    let mut buf = buffers::take(spot.len());
                    fetch_into(&*self.store, vec![(spot, buf.as_mut_slice())])?;
                    buffers::into_blob(buf)
                }
            };
            whole.push((spot.start, b));
        }
        for (start, b) in whole {
            let (from, to) = (offset.max(start), end.min(start + b.len() as u64));
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&b[(from - start) as usize..(to - start) as usize]);
        }
        Ok(())
    }

    /// Hints the chunks of the next [`READ_AHEAD`] bytes past `offset..end` to the
    /// store, if this read continues the reads before (starts near the furthest
    /// end so far) and they were not hinted yet. An error finding them is left
    /// for the read that wants them.
    fn read_ahead(&self, root: &Arc<DecNode>, offset: u64, end: u64) {
        let reached = self.read_end.fetch_max(end, Ordering::Relaxed);
        if offset > reached.saturating_add(READ_AHEAD) || end.saturating_add(READ_AHEAD) < reached {
            return;
        }
        // Reads in flight at once may arrive out of order: one behind the hints
        // already sent starts where they end.
        let hinted = self.hinted_to.load(Ordering::Relaxed);
        let from = hinted.max(end);
        let to = (end + READ_AHEAD).min(self.size);
        // Hints go out in steps of a quarter of the window, claimed by one read.
        if to <= from || (to - from < READ_AHEAD / 4 && to < self.size) {
            return;
        }
        if self
            .hinted_to
            .compare_exchange(hinted, to, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut refs = Vec::new();
        let mut pos = from;
        while pos < to {
            match self.locate(root, pos) {
                Ok(spot) => {
                    // The chunk across the last hints' end went out with them.
                    if !(spot.start < from && from == hinted) {
                        refs.push(spot.chunk);
                    }
                    pos = spot.end;
                }
                Err(_) => break,
            }
        }
        if !refs.is_empty() {
            self.store.prefetch(&refs);
        }
    }

    /// The verified chunks covering `len` bytes from `offset` (clamped to the
    /// content), in order, each with its offset in the content; empty for a raw
    /// blob or empty content, which have no chunks. Each fetched chunk has a
    /// fresh buffer (see `buffers` for why the recycled ones are not used here).
    pub fn chunks_covering(&self, offset: u64, len: usize) -> Result<Vec<(u64, Blob)>, SplitError> {
        let Body::Tree(root) = &self.body else {
            return Ok(Vec::new());
        };
        if offset >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let want = (self.size - offset).min(len as u64) as usize;
        let plan = self.plan(root, offset, offset + want as u64)?;
        let mut bufs: Vec<Vec<u8>> = plan
            .iter()
            .filter_map(Planned::missing)
            .map(|s| vec![0u8; s.len()])
            .collect();
        let jobs = plan
            .iter()
            .filter_map(Planned::missing)
            .zip(bufs.iter_mut())
            .map(|(s, b)| (s, b.as_mut_slice()))
            .collect();
        fetch_into(&*self.store, jobs)?;
        let mut bufs = bufs.into_iter();
        let mut out = Vec::with_capacity(plan.len());
        for p in plan {
            match p {
                Planned::Cached { start, blob } => out.push((start, blob)),
                Planned::Missing(spot) => {
                    let b = Blob::from(bufs.next().ok_or_else(|| self.lost_chunk())?);
                    self.cache.lock().add_chunk(spot.start, b.clone());
                    out.push((spot.start, b));
                }
            }
        }
        Ok(out)
    }

    /// The chunks covering `offset..end` (inside the content), in order: those
    /// among the recent chunks, and where the others are.
    fn plan(&self, root: &Arc<DecNode>, offset: u64, end: u64) -> Result<Vec<Planned>, SplitError> {
        let mut plan = Vec::new();
        let mut pos = offset;
        while pos < end {
            let cached = self.cache.lock().chunk_at(pos);
            let p = match cached {
                Some((start, blob)) => Planned::Cached { start, blob },
                None => Planned::Missing(self.locate(root, pos)?),
            };
            pos = p.end();
            plan.push(p);
        }
        Ok(plan)
    }

    /// The error for a fetched chunk that the read lost track of.
    fn lost_chunk(&self) -> SplitError {
        SplitError::Malformed {
            r: self.root,
            why: "a chunk went missing while reading".into(),
        }
    }

    /// Reads exactly `buf.len()` bytes from `offset`, or fails with
    /// [`SplitError::PastEnd`].
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SplitError> {
        let past = SplitError::PastEnd {
            offset,
            len: buf.len(),
            size: self.size,
        };
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.size => {}
            _ => return Err(past),
        }
        if self.read_at(offset, buf)? != buf.len() {
            return Err(past);
        }
        Ok(())
    }

    /// Where the chunk holding `pos` (inside the content) is: descends from the root,
    /// reading and checking interior nodes (cached), but not the chunk itself.
    fn locate(&self, root: &Arc<DecNode>, pos: u64) -> Result<ChunkSpot, SplitError> {
        let mut node = Arc::clone(root);
        for _ in 0..MAX_DEPTH {
            let (i, start, end) = node.child_at(pos);
            let cr = node.refs[i];
            if node.leaves {
                if end <= pos {
                    return Err(SplitError::Coverage {
                        r: node.r,
                        why: format!("no chunk covers offset {pos}"),
                    });
                }
                // A read allocates a chunk's span before the chunk is read.
                if end - start > MAX_BLOB_SIZE {
                    return Err(SplitError::Coverage {
                        r: node.r,
                        why: format!("chunk {cr} spans {} bytes, more than any blob", end - start),
                    });
                }
                return Ok(ChunkSpot {
                    parent: node.r,
                    chunk: cr,
                    start,
                    end,
                });
            }
            let cached = self.cache.lock().nodes.get(&cr).cloned();
            let child = match cached {
                Some(c) => c,
                None => {
                    let c = Arc::new(DecNode::decode(&cr, &self.store.get(&cr)?)?);
                    self.cache.lock().add_node(Arc::clone(&c));
                    c
                }
            };
            child.check_span(&node.r, start, end)?;
            node = child;
        }
        Err(SplitError::TooDeep {
            r: self.root,
            max: MAX_DEPTH,
        })
    }
}

/// One chunk of a read's plan.
enum Planned {
    /// Among the reader's recent chunks.
    Cached { start: u64, blob: Blob },
    /// To be fetched.
    Missing(ChunkSpot),
}

impl Planned {
    fn end(&self) -> u64 {
        match self {
            Planned::Cached { start, blob } => start + blob.len() as u64,
            Planned::Missing(s) => s.end,
        }
    }

    fn start(&self) -> u64 {
        match self {
            Planned::Cached { start, .. } => *start,
            Planned::Missing(s) => s.start,
        }
    }

    fn missing(&self) -> Option<&ChunkSpot> {
        match self {
            Planned::Missing(s) => Some(s),
            Planned::Cached { .. } => None,
        }
    }

    /// How many bytes of `offset..end` this chunk holds.
    fn overlap(&self, offset: u64, end: u64) -> usize {
        (self.end().min(end) - self.start().max(offset)) as usize
    }
}

impl<G> Read for SplitReader<G>
where
    G: Deref,
    G::Target: Getter,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<G> Seek for SplitReader<G>
where
    G: Deref,
    G::Target: Getter,
{
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }
}
