//! Reading split trees: [`SplitReader`] (positioned reads from many threads, and
//! `Read + Seek`), the parallel chunk fetches behind it, and [`read_to_vec`].
//!
//! Locks: each reader's `cache` (decoded nodes and recent chunks), held only to
//! look up or add an entry, never while a node or chunk is read from the store.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Deref;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use crate::blob::{Blob, Ref};
use crate::store::Getter;

use super::node::{check_chunk, DecNode};
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
        let chunks = self.chunks_for(root, offset, want)?;
        let mut done = 0;
        for (start, chunk) in chunks {
            let pos = offset + done as u64;
            let from = (pos - start) as usize;
            let n = (chunk.len() - from).min(want - done);
            buf[done..done + n].copy_from_slice(&chunk[from..from + n]);
            done += n;
        }
        Ok(done)
    }

    /// The verified chunks covering `len` bytes from `offset` (clamped to the
    /// content), in order, each with its offset in the content; empty for a raw
    /// blob or empty content, which have no chunks.
    pub fn chunks_covering(&self, offset: u64, len: usize) -> Result<Vec<(u64, Blob)>, SplitError> {
        let Body::Tree(root) = &self.body else {
            return Ok(Vec::new());
        };
        if offset >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let want = (self.size - offset).min(len as u64) as usize;
        self.chunks_for(root, offset, want)
    }

    /// The chunks covering `want` bytes from `offset`, in order, each with its stream
    /// offset. Chunks not cached are fetched (and verified) on up to
    /// [`PARALLEL_FETCHES`] threads at once, so a large read overlaps disk waits and
    /// hashing.
    fn chunks_for(
        &self,
        root: &Arc<DecNode>,
        offset: u64,
        want: usize,
    ) -> Result<Vec<(u64, Blob)>, SplitError> {
        let end = offset + want as u64;
        let mut plan: Vec<(u64, Option<Blob>, Option<ChunkSpot>)> = Vec::new();
        let mut pos = offset;
        while pos < end {
            if let Some((start, b)) = self.cache.lock().chunk_at(pos) {
                pos = start + b.len() as u64;
                plan.push((start, Some(b), None));
                continue;
            }
            let spot = self.locate(root, pos)?;
            pos = spot.end;
            plan.push((spot.start, None, Some(spot)));
        }
        let missing: Vec<&ChunkSpot> = plan.iter().filter_map(|(_, _, s)| s.as_ref()).collect();
        let mut fetched = fetch_chunks(&*self.store, &missing)?.into_iter();
        let mut out = Vec::with_capacity(plan.len());
        for (start, have, spot) in plan {
            let b = match (have, spot) {
                (Some(b), _) => b,
                (None, _) => match fetched.next() {
                    Some(b) => {
                        self.cache.lock().add_chunk(start, b.clone());
                        b
                    }
                    None => {
                        return Err(SplitError::Malformed {
                            r: self.root,
                            why: "a chunk went missing while reading".into(),
                        })
                    }
                },
            };
            out.push((start, b));
        }
        Ok(out)
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

/// How many chunks one read fetches at once.
pub const PARALLEL_FETCHES: usize = 4;

/// A chunk's place in a tree: its ref, its parent leaf node and its span.
struct ChunkSpot {
    parent: Ref,
    chunk: Ref,
    start: u64,
    end: u64,
}

impl ChunkSpot {
    fn fetch<S: Getter + ?Sized>(&self, store: &S) -> Result<Blob, SplitError> {
        // The span bounds the chunk: a larger file in its place is refused unread.
        let b = store.get_at_most(&self.chunk, self.end - self.start)?;
        check_chunk(&self.parent, &self.chunk, b.len(), self.start, self.end)?;
        Ok(b)
    }
}

/// Fetches `spots` in order; with more than one, on up to [`PARALLEL_FETCHES`]
/// lanes (see `lanes`), each taking every n-th chunk, or, from a store that
/// [prefers batches](Getter::prefers_batches), each taking a run of them in one
/// call.
fn fetch_chunks<S: Getter + ?Sized>(
    store: &S,
    spots: &[&ChunkSpot],
) -> Result<Vec<Blob>, SplitError> {
    let lanes = spots.len().min(PARALLEL_FETCHES);
    if lanes <= 1 {
        return spots.iter().map(|s| s.fetch(store)).collect();
    }
    if store.prefers_batches() {
        return fetch_in_batches(store, spots, lanes);
    }
    let lane_results = super::lanes::run(lanes, |lane| {
        (lane..spots.len())
            .step_by(lanes)
            .map(|i| (i, spots[i].fetch(store)))
            .collect::<Vec<_>>()
    });
    let mut got: Vec<Option<Result<Blob, SplitError>>> = (0..spots.len()).map(|_| None).collect();
    // A lane that panicked leaves its slots empty: reported below.
    for (i, r) in lane_results.into_iter().flatten().flatten() {
        got[i] = Some(r);
    }
    got.into_iter()
        .map(|g| g.unwrap_or_else(|| Err(unfinished())))
        .collect()
}

/// The error for a fetch lane that panicked.
fn unfinished() -> SplitError {
    SplitError::Malformed {
        r: Ref::ZERO,
        why: "a chunk fetch did not finish".into(),
    }
}

/// Fetches `spots` in `lanes` runs, each one [`Getter::get_many`] on a lane of
/// its own; each chunk is checked against its span as [`ChunkSpot::fetch`] does.
fn fetch_in_batches<S: Getter + ?Sized>(
    store: &S,
    spots: &[&ChunkSpot],
    lanes: usize,
) -> Result<Vec<Blob>, SplitError> {
    let per_lane = spots.len().div_ceil(lanes);
    let fetch_run = |run: &[&ChunkSpot]| -> Result<Vec<Blob>, SplitError> {
        let refs: Vec<Ref> = run.iter().map(|s| s.chunk).collect();
        run.iter()
            .zip(store.get_many(&refs))
            .map(|(spot, got)| {
                let b = got?;
                check_chunk(&spot.parent, &spot.chunk, b.len(), spot.start, spot.end)?;
                Ok(b)
            })
            .collect()
    };
    let runs: Vec<&[&ChunkSpot]> = spots.chunks(per_lane).collect();
    let mut out = Vec::with_capacity(spots.len());
    for got in super::lanes::run(runs.len(), |lane| fetch_run(runs[lane])) {
        match got {
            Some(got) => out.extend(got?),
            None => return Err(unfinished()),
        }
    }
    if out.len() != spots.len() {
        return Err(SplitError::Malformed {
            r: Ref::ZERO,
            why: "a batched fetch returned too few chunks".into(),
        });
    }
    Ok(out)
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
