//! Split trees: content-defined chunking into a tree of `split.Node` blobs.
//!
//! Large content is cut into chunks where a buzhash32 rolling checksum says
//! (the same boundaries as the Go `split` package), and the chunks are arranged in
//! a tree of `split.Node` blobs whose root ref stands for the whole byte stream.
//! A small edit then stores only the chunks and nodes around it.
//!
//! - [`SplitWriter`] streams bytes in (`std::io::Write`) and returns the root ref
//!   from [`SplitWriter::finish`]. The rolling checksum runs on a second thread
//!   while the caller's thread hashes and stores the chunks and nodes, or, for a
//!   writer made by [`SplitWriter::with_storers`], hands the chunks to a set of
//!   storing threads ([`ChunkStorers`]) and goes on.
//! - [`SplitReader`] reads a tree (or, through [`SplitReader::raw`], a plain blob)
//!   with `Read + Seek` and a positioned, thread-safe [`SplitReader::read_at`].
//! - [`validate_root`] checks strictly whether a ref is the root of a split tree.
//!
//! The tree shape is Go's, with one fix: where Go's builder drops the still-open
//! nodes at the end of some inputs, ours closes them, so no data is ever lost.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use lru::LruCache;
use parking_lot::Mutex;
use prost::Message;

use crate::blob::{Blob, Ref};
use crate::proto::split::{Child, Node};
use crate::store::{Getter, Store, StoreError};

/// The buzhash32 byte table of the Go writer's rolling checksum.
const TABLE: [u32; 256] = [
    0x07fcfd52, 0x5f3f164f, 0x6695721d, 0x7b4d7c03, 0x49c6e2d1, 0x0d1d68d8, 0x7916001e, 0x22c4d294,
    0x392907a0, 0x189deb99, 0xf3875d04, 0x95e94627, 0xba517936, 0x83c471d4, 0x7cb3ad0b, 0xa42655d9,
    0x7c4e0b68, 0xd4491d1b, 0x25632186, 0xa9d78d73, 0x169c1121, 0xbb158644, 0xb68e6a3f, 0x759805f5,
    0x2cdf5b8a, 0x57d29245, 0xc5d6d268, 0x6b83d0e2, 0x7674cb74, 0xb068d9db, 0xbb9457d8, 0xa15d523b,
    0x794209ff, 0x9da1d7eb, 0x5a25e0cb, 0xf840ec4b, 0x36d4ff9b, 0xf4a5ee3b, 0x5ad145f4, 0xf6740304,
    0x3f71f8cb, 0x91018d7c, 0xfccae224, 0xb186b51f, 0x7d9e8fbc, 0x93f93f33, 0xf63a5b6f, 0x19476c36,
    0xbc897d06, 0x169873f5, 0x724c7af1, 0x581eeb39, 0x2257bb7d, 0x6f269a28, 0xbe8e9981, 0x7039374b,
    0x25416fed, 0xded7e411, 0x6678e7aa, 0x244fcd36, 0x56aa6b86, 0xde4561ad, 0x3e99b0a8, 0xbed80a3a,
    0xe58348b0, 0xaf63e58d, 0x406aec9d, 0xc233f007, 0xa5ead0bd, 0x050143a6, 0x738b6829, 0x3699caf3,
    0x967cd710, 0x06f665a6, 0x25fd3d7f, 0x0fd6e479, 0x26fbf29b, 0x16de4c35, 0x2bf3394b, 0x4af864ba,
    0x1cb9e6c6, 0x41439089, 0x69a39144, 0xc34f182d, 0x421657ff, 0xf9fc6568, 0x8b02c917, 0x6c9c64b7,
    0x83d17909, 0xea3d4ca5, 0xaf635d47, 0x7fc78769, 0xbe14186f, 0x3539b1ea, 0xe9174548, 0xc051e18a,
    0x07b73658, 0x29ec300c, 0xa250bf34, 0xa7ed5d97, 0xfe3dea79, 0xb8b352f7, 0xc9b344e9, 0x8e5f0475,
    0x1941e52a, 0x2694763d, 0x6b40eabc, 0x8485d68b, 0x336eacca, 0x4399a363, 0x67149b9c, 0xae10a901,
    0x5a5ffefb, 0x563b26de, 0x6f00f02b, 0x9f06397d, 0x545836c4, 0x31d6416b, 0x12f4128d, 0x752f33ff,
    0x4a305605, 0x0c8dc214, 0x72521a90, 0x8eb3e4a1, 0x83efc6c6, 0x090ec04f, 0xc1540864, 0xec2c8aaa,
    0x70ab53ba, 0x38d3b494, 0x878d4063, 0xa317ae3f, 0x3cb62f07, 0xf360412c, 0x4ffbf3a9, 0x22d554b4,
    0x3f190476, 0x0796a710, 0xf5c353cf, 0x04f59bb7, 0x2d230176, 0xe2d6a9ce, 0x3f1d7427, 0xafd915bb,
    0xb01aa47d, 0xcde2c269, 0x7417bf38, 0x1e094f9a, 0x55ece0ea, 0xcb94539b, 0x13d346b5, 0x54e0c0c1,
    0x6db30e37, 0xdc02b390, 0xa6e222f5, 0xe2f8c1fe, 0x2e166bdf, 0x67588a74, 0x21898f34, 0x4c330f1d,
    0x19af53ba, 0x70658b94, 0x133c9673, 0x4efeeadd, 0x0f212551, 0x070f0914, 0x6f241c57, 0xf13e41b7,
    0x3be70cb0, 0xf4b6f47f, 0x20f31127, 0x6551cb89, 0x289cbd2c, 0x8946f23d, 0x40a79c3b, 0x03c6d982,
    0x0365790c, 0x0cf52517, 0x0bb131e8, 0x3da5475c, 0x139efcca, 0xbcd44eb4, 0xa54af747, 0xb73c32ed,
    0x9f6c47ac, 0xe8ba8f22, 0x54043a66, 0x3b0a7f20, 0xb4926431, 0xe17c02d5, 0x8f0d2558, 0x014fbff2,
    0x7f803594, 0x79b76fbe, 0x33fe2656, 0x792c8ee8, 0x6b41292d, 0xfdff9c32, 0x82093298, 0x59483870,
    0xb2d5a113, 0x2dd96e5a, 0x5b8e56a9, 0xebd9dda9, 0x04f9ce92, 0xcb440950, 0xa67e52b1, 0x49f6d261,
    0x92417fc3, 0x1c3b6bd9, 0xb027b7e0, 0x1f765a41, 0x44c9ab40, 0x45d99121, 0xfd7a84af, 0x99b75788,
    0xe3abff4a, 0xa88aa67f, 0x736e41cc, 0x9cbcbe5e, 0x7b3ccebc, 0xe1b7fa93, 0x315ae6af, 0x9cced2e2,
    0x19ea0f2f, 0xa9770722, 0x84a6bfdc, 0x88f03f07, 0xa44a03a4, 0x27a6b885, 0xb580c8ba, 0x018153da,
    0xb648e604, 0x51180278, 0x893a310f, 0x728f5f4c, 0x37f5198b, 0x3cc0ea9b, 0xe39d02db, 0x13883142,
    0xca599392, 0xc12d154e, 0xc176163d, 0x5c92e2b8, 0xf9f95ede, 0xb802bdfc, 0x8a928585, 0xdca6e10b,
    0x887953e8, 0x48b9e962, 0xe533e9a3, 0x5e0ce6e5, 0x1dba77ae, 0xc8214b8a, 0x53b428d7, 0x4cf20a65,
];

/// The rolling checksum's window, in bytes.
pub const WINDOW: usize = 64;

/// How deep a tree may be before a reader gives up on it.
const MAX_DEPTH: usize = 128;

/// Errors of split trees.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The store failed (a blob missing or damaged, an I/O error, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node blob is not an encoded `split.Node`.
    #[error("split node {r} does not decode: {source}")]
    Decode {
        /// The node's ref.
        r: Ref,
        /// What the decoder said.
        #[source]
        source: prost::DecodeError,
    },
    /// A node decodes but is inconsistent in itself.
    #[error("split node {r} is malformed: {why}")]
    Malformed {
        /// The node's ref.
        r: Ref,
        /// What is wrong.
        why: String,
    },
    /// A node's children do not cover the span its parent gives it.
    #[error("split tree node {r} does not cover its claimed span: {why}")]
    Coverage {
        /// The ref of the node whose child disagrees with it.
        r: Ref,
        /// What disagrees.
        why: String,
    },
    /// The tree is deeper than any writer makes one.
    #[error("split tree under {r} is deeper than {max} levels")]
    TooDeep {
        /// The root.
        r: Ref,
        /// The limit.
        max: usize,
    },
    /// A read that must be whole runs past the end of the content.
    #[error("read of {len} bytes at offset {offset} runs past the end ({size} bytes)")]
    PastEnd {
        /// Where the read starts.
        offset: u64,
        /// How many bytes it wants.
        len: usize,
        /// The content's size.
        size: u64,
    },
    /// Options a writer cannot work with.
    #[error("invalid split options: {0}")]
    InvalidOptions(String),
    /// The chunking thread stopped before its work was done.
    #[error("the split writer's chunking thread stopped unexpectedly")]
    Worker,
    /// An earlier call failed, so the writer cannot go on.
    #[error("the split writer failed earlier and cannot continue")]
    Poisoned,
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Io(#[from] io::Error),
}

impl From<SplitError> for io::Error {
    fn from(e: SplitError) -> io::Error {
        use io::ErrorKind as K;
        let kind = match &e {
            SplitError::Store(StoreError::NotFound(_)) => K::NotFound,
            SplitError::Store(StoreError::Io { source, .. }) => source.kind(),
            SplitError::Store(_)
            | SplitError::Decode { .. }
            | SplitError::Malformed { .. }
            | SplitError::Coverage { .. }
            | SplitError::TooDeep { .. } => K::InvalidData,
            SplitError::PastEnd { .. } => K::UnexpectedEof,
            SplitError::InvalidOptions(_) => K::InvalidInput,
            SplitError::Io(inner) => inner.kind(),
            SplitError::Worker | SplitError::Poisoned => K::Other,
        };
        io::Error::new(kind, e)
    }
}

/// How content is cut and how the tree is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitOptions {
    /// A chunk ends where the checksum has at least this many trailing zero bits
    /// (1..=32).
    pub bits: u32,
    /// No chunk ends before it has this many bytes (the last one may be shorter);
    /// 0 and 1 both mean no minimum.
    pub min_size: usize,
    /// The chunk level (extra trailing zeros) is divided by this to give the tree
    /// level; at least 1.
    pub fanout: u32,
}

impl Default for SplitOptions {
    /// Go's defaults: 16 bits, 1024 bytes, fan-out 8.
    fn default() -> SplitOptions {
        SplitOptions {
            bits: 16,
            min_size: 1024,
            fanout: 8,
        }
    }
}

impl SplitOptions {
    /// Checks that a writer can work with these options.
    pub fn check(&self) -> Result<(), SplitError> {
        if !(1..=32).contains(&self.bits) {
            return Err(SplitError::InvalidOptions(format!(
                "bits must be 1..=32, not {}",
                self.bits
            )));
        }
        if self.fanout == 0 {
            return Err(SplitError::InvalidOptions(
                "fanout must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A chunk boundary found by a [`Splitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The stream offset just past the chunk's last byte.
    pub end: u64,
    /// The chunk's level: trailing zero bits of the checksum beyond `bits`.
    pub level: u32,
}

#[inline(always)]
fn roll(sum: u32, out: u8, inb: u8) -> u32 {
    // The outgoing byte's term is rotated by WINDOW % 32 == 0.
    sum.rotate_left(1) ^ TABLE[out as usize] ^ TABLE[inb as usize]
}

/// The checksum of a window of exactly [`WINDOW`] bytes (oldest first), computed
/// from scratch; equal to the rolled checksum after those bytes.
pub fn window_checksum(window: &[u8; WINDOW]) -> u32 {
    window
        .iter()
        .fold(0u32, |s, &b| s.rotate_left(1) ^ TABLE[b as usize])
}

/// Rolls `sum` over `outs[j]` leaving / `ins[j]` entering until the checksum has
/// all `mask` bits clear; returns the index of that byte.
#[inline(always)]
fn find_cut(sum: &mut u32, outs: &[u8], ins: &[u8], mask: u32) -> Option<usize> {
    const STEP: usize = 4;
    let n = outs.len().min(ins.len());
    let (outs, ins) = (&outs[..n], &ins[..n]);
    let mut s = *sum;
    // Four bytes at a time: the four sums hang off rotations of the sum before
    // them, so the loop-carried chain is one rotate and one xor per group.
    let groups = outs.chunks_exact(STEP).zip(ins.chunks_exact(STEP));
    for (g, (o, c)) in groups.enumerate() {
        let x0 = TABLE[o[0] as usize] ^ TABLE[c[0] as usize];
        let x1 = TABLE[o[1] as usize] ^ TABLE[c[1] as usize];
        let x2 = TABLE[o[2] as usize] ^ TABLE[c[2] as usize];
        let x3 = TABLE[o[3] as usize] ^ TABLE[c[3] as usize];
        let y1 = x0.rotate_left(1) ^ x1;
        let y2 = y1.rotate_left(1) ^ x2;
        let y3 = y2.rotate_left(1) ^ x3;
        let sums = [
            s.rotate_left(1) ^ x0,
            s.rotate_left(2) ^ y1,
            s.rotate_left(3) ^ y2,
            s.rotate_left(4) ^ y3,
        ];
        // (v & mask) - 1 has its top bit set when v & mask == 0 (and, when mask
        // has the top bit itself, sometimes otherwise: the exact test follows).
        let maybe = sums
            .iter()
            .fold(0u32, |a, &v| a | (v & mask).wrapping_sub(1));
        if maybe >> 31 != 0 {
            for (k, &sk) in sums.iter().enumerate() {
                if sk & mask == 0 {
                    *sum = sk;
                    return Some(g * STEP + k);
                }
            }
        }
        s = sums[STEP - 1];
    }
    let tail = n - n % STEP;
    for j in tail..n {
        s = roll(s, outs[j], ins[j]);
        if s & mask == 0 {
            *sum = s;
            return Some(j);
        }
    }
    *sum = s;
    None
}

/// The content-defined chunker: Go's buzhash32 rule, fed any number of pieces.
///
/// The checksum starts from a window of 64 zero bytes and rolls over the whole
/// stream (not restarted per chunk). After each byte, if the current chunk has at
/// least `min_size` bytes and the checksum at least `bits` trailing zeros, the
/// chunk ends there. Boundaries do not depend on how the input is divided.
#[derive(Debug, Clone)]
pub struct Splitter {
    sum: u32,
    /// The last WINDOW bytes of the stream, oldest first.
    hist: [u8; WINDOW],
    pos: u64,
    chunk_len: u64,
    bits: u32,
    mask: u32,
    min_size: u64,
}

impl Splitter {
    /// A splitter with `opts`' bits and minimum size.
    pub fn new(opts: &SplitOptions) -> Result<Splitter, SplitError> {
        opts.check()?;
        Ok(Splitter::unchecked(opts))
    }

    /// A splitter from options already checked.
    fn unchecked(opts: &SplitOptions) -> Splitter {
        let mask = if opts.bits >= 32 {
            u32::MAX
        } else {
            (1u32 << opts.bits) - 1
        };
        Splitter {
            sum: window_checksum(&[0; WINDOW]),
            hist: [0; WINDOW],
            pos: 0,
            chunk_len: 0,
            bits: opts.bits,
            mask,
            min_size: opts.min_size as u64,
        }
    }

    /// The number of bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The current checksum.
    pub fn checksum(&self) -> u32 {
        self.sum
    }

    /// Feeds `data`; appends a [`Cut`] to `cuts` for every chunk that ends in it.
    pub fn push(&mut self, data: &[u8], cuts: &mut Vec<Cut>) {
        let n = data.len();
        let head = n.min(WINDOW);
        let mut buf = [0u8; 2 * WINDOW];
        buf[..WINDOW].copy_from_slice(&self.hist);
        buf[WINDOW..WINDOW + head].copy_from_slice(&data[..head]);
        self.run(&buf[..head], &buf[WINDOW..WINDOW + head], cuts);
        if n > WINDOW {
            self.run(&data[..n - WINDOW], &data[WINDOW..], cuts);
        }
        if n >= WINDOW {
            self.hist.copy_from_slice(&data[n - WINDOW..]);
        } else {
            self.hist.copy_within(n.., 0);
            self.hist[WINDOW - n..].copy_from_slice(data);
        }
    }

    fn run(&mut self, outs: &[u8], ins: &[u8], cuts: &mut Vec<Cut>) {
        let n = ins.len();
        let mut sum = self.sum;
        let mut i = 0;
        while i < n {
            // Bytes that leave the chunk shorter than the minimum are not checked.
            let unchecked = self
                .min_size
                .saturating_sub(1)
                .saturating_sub(self.chunk_len);
            if unchecked > 0 {
                let k = unchecked.min((n - i) as u64) as usize;
                for j in i..i + k {
                    sum = roll(sum, outs[j], ins[j]);
                }
                i += k;
                self.chunk_len += k as u64;
                if i == n {
                    break;
                }
            }
            match find_cut(&mut sum, &outs[i..], &ins[i..], self.mask) {
                Some(j) => {
                    i += j + 1;
                    cuts.push(Cut {
                        end: self.pos + i as u64,
                        level: sum.trailing_zeros() - self.bits,
                    });
                    self.chunk_len = 0;
                }
                None => {
                    self.chunk_len += (n - i) as u64;
                    i = n;
                }
            }
        }
        self.sum = sum;
        self.pos += n as u64;
    }

    /// The cut for the final, unfinished chunk, if any bytes remain in it: its
    /// level is computed the same way (0 when the checksum has fewer than `bits`
    /// trailing zeros).
    pub fn finish(&self) -> Option<Cut> {
        (self.chunk_len > 0).then(|| Cut {
            end: self.pos,
            level: level_of(self.sum, self.bits),
        })
    }

    /// The chunk lengths and levels of `data` as a whole stream.
    pub fn chunks(opts: &SplitOptions, data: &[u8]) -> Result<Vec<(u64, u32)>, SplitError> {
        let mut sp = Splitter::new(opts)?;
        let mut cuts = Vec::new();
        sp.push(data, &mut cuts);
        cuts.extend(sp.finish());
        let mut start = 0;
        Ok(cuts
            .into_iter()
            .map(|c| {
                let len = c.end - start;
                start = c.end;
                (len, c.level)
            })
            .collect())
    }
}

/// The chunk level of a checksum: its trailing zero bits beyond `bits`, or 0.
pub fn level_of(sum: u32, bits: u32) -> u32 {
    sum.trailing_zeros().saturating_sub(bits)
}

/// A closed node as its parent sees it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    r: Ref,
    offset: u64,
    /// The node to use as a root in its place: itself, or, when it has exactly one
    /// node child, that child's own `collapsed`.
    collapsed: Ref,
}

#[derive(Debug, Default)]
struct OpenNode {
    children: Vec<Entry>,
    offset: u64,
    size: u64,
}

/// Go's tree builder: one open node per level, closed by chunk levels.
#[derive(Debug, Default)]
struct TreeBuilder {
    levels: Vec<OpenNode>,
    total: u64,
}

impl TreeBuilder {
    fn add<S: Store + ?Sized>(
        &mut self,
        store: &S,
        chunk: Ref,
        len: u64,
        level: usize,
    ) -> Result<(), SplitError> {
        if self.levels.is_empty() {
            self.levels.push(OpenNode::default());
        }
        self.levels[0].children.push(Entry {
            r: chunk,
            offset: self.total,
            collapsed: chunk,
        });
        self.total += len;
        for n in &mut self.levels {
            n.size += len;
        }
        for i in 0..level {
            if i + 1 == self.levels.len() {
                let size = self.levels[i].size;
                self.levels.push(OpenNode {
                    children: Vec::new(),
                    offset: 0,
                    size,
                });
            }
            let e = self.close(store, i)?;
            self.levels[i + 1].children.push(e);
            let fresh = &mut self.levels[i];
            fresh.children.clear();
            fresh.offset = self.total;
            fresh.size = 0;
        }
        Ok(())
    }

    /// Encodes and stores the open node at level `i`.
    fn close<S: Store + ?Sized>(&self, store: &S, i: usize) -> Result<Entry, SplitError> {
        let n = &self.levels[i];
        let kids = n
            .children
            .iter()
            .map(|c| Child {
                r#ref: Blob::copy_from_slice(c.r.as_bytes()),
                offset: c.offset,
            })
            .collect();
        let (nodes, leaves) = if i == 0 {
            (Vec::new(), kids)
        } else {
            (kids, Vec::new())
        };
        let node = Node {
            nodes,
            leaves,
            offset: n.offset,
            size: n.size,
        };
        let (r, _) = store.put(&node.encode_to_vec())?;
        let collapsed = match n.children.as_slice() {
            [only] if i > 0 => only.collapsed,
            _ => r,
        };
        Ok(Entry {
            r,
            offset: n.offset,
            collapsed,
        })
    }

    /// Closes what is still open and returns the root ref (zero if no chunk).
    fn finish<S: Store + ?Sized>(&mut self, store: &S) -> Result<Ref, SplitError> {
        let Some(top) = self.levels.len().checked_sub(1) else {
            return Ok(Ref::ZERO);
        };
        // Go closes the open nodes only when level 0 holds chunks; we close from
        // the lowest level that holds anything, so no open node is dropped.
        if let Some(low) = (0..top).find(|&i| !self.levels[i].children.is_empty()) {
            for i in low..top {
                let e = self.close(store, i)?;
                self.levels[i + 1].children.push(e);
            }
        }
        if top == 0 || self.levels[top].children.len() > 1 {
            return Ok(self.close(store, top)?.r);
        }
        Ok(self.levels[top].children[0].collapsed)
    }
}

/// Data handed to the writer is gathered into blocks of this size before the
/// chunking thread sees it.
const BLOCK: usize = 256 << 10;
/// The largest block cut from one big write.
const MAX_BLOCK: usize = 1 << 20;
/// Blocks the chunking thread may be behind before the writer waits for it.
const MAX_INFLIGHT: usize = 6;
/// Chunks being stored on storing threads before the writer waits for one.
const MAX_STORING: usize = 96;

/// Storing threads that keep a file store's direct writes busy on two cores: most
/// of a chunk's time is the wait for its write to reach the disk, so there are more
/// of them than cores.
pub const STORING_THREADS: usize = 8;

/// Stores one chunk and returns its ref; called on a storing thread.
type PutChunk = Arc<dyn Fn(Blob) -> Result<Ref, StoreError> + Send + Sync>;

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
/// [`SplitWriter::with_storers`], so a writer's caller goes on while its chunks are
/// stored. One set serves any number of writers (a mount keeps one); the threads
/// start with the first chunk and stop when the set is dropped.
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
struct Storers {
    pool: Arc<ChunkStorers>,
    put: PutChunk,
    done_tx: mpsc::Sender<Stored>,
    done: mpsc::Receiver<Stored>,
    cancel: Arc<AtomicBool>,
}

impl Storers {
    fn new(pool: Arc<ChunkStorers>, put: PutChunk) -> Storers {
        let (done_tx, done) = mpsc::channel();
        Storers {
            pool,
            put,
            done_tx,
            done,
            cancel: Arc::default(),
        }
    }

    fn submit(&self, seq: u64, chunk: Blob) -> Result<(), SplitError> {
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
struct BlockPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BlockPool {
    /// An empty buffer with room for a block of up to `MAX_BLOCK` bytes.
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MAX_BLOCK))
    }

    /// `buf` as a blob whose buffer comes back to the pool when the last slice of it
    /// is dropped.
    fn blob(self: &Arc<Self>, buf: Vec<u8>) -> Blob {
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
                Wait::Room => self.unstored > MAX_STORING,
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

/// A decoded, self-consistent node.
#[derive(Debug)]
struct DecNode {
    r: Ref,
    leaves: bool,
    offset: u64,
    end: u64,
    refs: Vec<Ref>,
    offs: Vec<u64>,
}

impl DecNode {
    /// Decodes `blob` (the node `r`) and checks it in itself: one kind of child,
    /// at least one, 32-byte refs, offsets strictly increasing from the node's
    /// own offset and inside its size.
    fn decode(r: &Ref, blob: &[u8]) -> Result<DecNode, SplitError> {
        let node = Node::decode(blob).map_err(|source| SplitError::Decode { r: *r, source })?;
        let bad = |why: String| SplitError::Malformed { r: *r, why };
        let (leaves, kids) = match (node.nodes.is_empty(), node.leaves.is_empty()) {
            (true, false) => (true, &node.leaves),
            (false, true) => (false, &node.nodes),
            (true, true) => return Err(bad("no children".into())),
            (false, false) => return Err(bad("both leaves and nodes".into())),
        };
        let end = node.offset.checked_add(node.size).ok_or_else(|| {
            bad(format!(
                "offset {} + size {} overflows",
                node.offset, node.size
            ))
        })?;
        let mut refs = Vec::with_capacity(kids.len());
        let mut offs = Vec::with_capacity(kids.len());
        let mut prev: Option<u64> = None;
        for (i, c) in kids.iter().enumerate() {
            let cr = Ref::from_slice(&c.r#ref)
                .map_err(|_| bad(format!("child {i} has a {}-byte ref", c.r#ref.len())))?;
            match prev {
                None if c.offset != node.offset => {
                    return Err(bad(format!(
                        "first child at offset {}, node at {}",
                        c.offset, node.offset
                    )))
                }
                Some(p) if c.offset <= p => {
                    return Err(bad(format!(
                        "child {i} at offset {} does not follow {p}",
                        c.offset
                    )))
                }
                _ => {}
            }
            if c.offset >= end {
                return Err(bad(format!(
                    "child {i} at offset {} is past the node's end {end}",
                    c.offset
                )));
            }
            prev = Some(c.offset);
            refs.push(cr);
            offs.push(c.offset);
        }
        Ok(DecNode {
            r: *r,
            leaves,
            offset: node.offset,
            end,
            refs,
            offs,
        })
    }

    /// The child holding stream position `pos` (which must be inside the node):
    /// its index and span.
    fn child_at(&self, pos: u64) -> (usize, u64, u64) {
        let i = self.offs.partition_point(|&o| o <= pos).saturating_sub(1);
        (i, self.offs[i], self.span_end(i))
    }

    fn span_end(&self, i: usize) -> u64 {
        self.offs.get(i + 1).copied().unwrap_or(self.end)
    }

    /// Checks that this node, reached as the child spanning `start..end` of
    /// `parent`, has exactly that span.
    fn check_span(&self, parent: &Ref, start: u64, end: u64) -> Result<(), SplitError> {
        if self.offset != start || self.end != end {
            return Err(SplitError::Coverage {
                r: *parent,
                why: format!(
                    "child node {} covers {}..{}, its parent gives it {start}..{end}",
                    self.r, self.offset, self.end
                ),
            });
        }
        Ok(())
    }
}

fn check_chunk(
    parent: &Ref,
    chunk: &Ref,
    len: usize,
    start: u64,
    end: u64,
) -> Result<(), SplitError> {
    if len as u64 != end - start {
        return Err(SplitError::Coverage {
            r: *parent,
            why: format!("chunk {chunk} has {len} bytes, its parent gives it {start}..{end}"),
        });
    }
    Ok(())
}

/// Checks strictly that `root` is the root of a split tree in `g` and returns the
/// content size: every node decodes and is consistent with itself and its parent,
/// the root starts at offset 0, and every chunk is present (checked with
/// [`Getter::contains`], without reading it). The zero ref stands for the empty
/// stream (size 0).
pub fn validate_root<G: Getter + ?Sized>(g: &G, root: &Ref) -> Result<u64, SplitError> {
    if root.is_zero() {
        return Ok(0);
    }
    let node = DecNode::decode(root, &g.get(root)?)?;
    if node.offset != 0 {
        return Err(SplitError::Malformed {
            r: *root,
            why: format!("a root starts at offset {}, not 0", node.offset),
        });
    }
    let size = node.end;
    let mut stack = vec![(node, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        for i in 0..node.refs.len() {
            let (cr, start, end) = (node.refs[i], node.offs[i], node.span_end(i));
            if node.leaves {
                if !g.contains(&cr)? {
                    return Err(SplitError::Store(StoreError::NotFound(cr)));
                }
                continue;
            }
            if depth >= MAX_DEPTH {
                return Err(SplitError::TooDeep {
                    r: *root,
                    max: MAX_DEPTH,
                });
            }
            let child = DecNode::decode(&cr, &g.get(&cr)?)?;
            child.check_span(&node.r, start, end)?;
            stack.push((child, depth + 1));
        }
    }
    Ok(size)
}

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
/// threads, each taking every n-th chunk.
fn fetch_chunks<S: Getter + ?Sized>(
    store: &S,
    spots: &[&ChunkSpot],
) -> Result<Vec<Blob>, SplitError> {
    let lanes = spots.len().min(PARALLEL_FETCHES);
    if lanes <= 1 {
        return spots.iter().map(|s| s.fetch(store)).collect();
    }
    let mut got: Vec<Option<Result<Blob, SplitError>>> = (0..spots.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..lanes)
            .map(|lane| {
                scope.spawn(move || {
                    (lane..spots.len())
                        .step_by(lanes)
                        .map(|i| (i, spots[i].fetch(store)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for i in (0..spots.len()).step_by(lanes) {
            got[i] = Some(spots[i].fetch(store));
        }
        for h in handles {
            // A fetch that panicked leaves its slots empty: reported below.
            if let Ok(results) = h.join() {
                for (i, r) in results {
                    got[i] = Some(r);
                }
            }
        }
    });
    got.into_iter()
        .map(|g| {
            g.unwrap_or_else(|| {
                Err(SplitError::Malformed {
                    r: Ref::ZERO,
                    why: "a chunk fetch did not finish".into(),
                })
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn readers_and_writers_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<SplitReader<&MemStore>>();
        send_sync::<SplitReader<Arc<MemStore>>>();
        send::<SplitWriter<Arc<MemStore>>>();
        send::<SplitWriter<&MemStore>>();
    }

    #[test]
    fn primed_window_sums_to_zero() {
        // 64 rotations of T[0] cancel in pairs (rotation by k and k + 32 agree).
        assert_eq!(window_checksum(&[0; WINDOW]), 0);
        assert_eq!(TABLE[0], 0x07fc_fd52);
        assert_eq!(TABLE[255], 0x4cf2_0a65);
    }

    #[test]
    fn rolled_sum_is_the_window_sum() {
        let data = pseudo_random(5000, 7);
        let mut sp = Splitter::new(&SplitOptions::default()).unwrap();
        let mut cuts = Vec::new();
        for (i, piece) in data.chunks(37).enumerate() {
            sp.push(piece, &mut cuts);
            let end = ((i + 1) * 37).min(data.len());
            let mut w = [0u8; WINDOW];
            let from = end.saturating_sub(WINDOW);
            w[WINDOW - (end - from)..].copy_from_slice(&data[from..end]);
            assert_eq!(sp.checksum(), window_checksum(&w), "after {end} bytes");
        }
    }

    #[test]
    fn unrolled_search_matches_byte_by_byte() {
        let data = pseudo_random(20000, 3);
        for mask in [0u32, 1, 0x7, 0xff, 0xfff] {
            for start in [0usize, 1, 2, 3, 5] {
                let (outs, ins) = (&data[start..10000], &data[start + WINDOW..10000 + WINDOW]);
                let mut fast = 0x1234_5678u32;
                let got = find_cut(&mut fast, outs, ins, mask);
                let mut slow = 0x1234_5678u32;
                let mut want = None;
                for j in 0..outs.len() {
                    slow = roll(slow, outs[j], ins[j]);
                    if slow & mask == 0 {
                        want = Some(j);
                        break;
                    }
                }
                assert_eq!(got, want, "mask {mask:#x} start {start}");
                assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn levels_count_trailing_zeros_beyond_bits() {
        assert_eq!(level_of(0b1_0000_0000_0000_0000, 16), 0);
        assert_eq!(level_of(0b100_0000_0000_0000_0000, 16), 2);
        assert_eq!(level_of(0b1000, 16), 0);
        assert_eq!(level_of(0, 16), 16);
        assert_eq!(level_of(0, 32), 0);
    }

    #[test]
    fn cuts_do_not_depend_on_how_input_is_fed() {
        let opts = SplitOptions {
            bits: 8,
            min_size: 100,
            fanout: 2,
        };
        let data = pseudo_random(100_000, 11);
        let whole = Splitter::chunks(&opts, &data).unwrap();
        assert!(whole.len() > 50);
        assert!(whole[..whole.len() - 1].iter().all(|&(len, _)| len >= 100));
        let mut sp = Splitter::new(&opts).unwrap();
        let mut cuts = Vec::new();
        let mut i = 0;
        let mut step = 1;
        while i < data.len() {
            let j = (i + step).min(data.len());
            sp.push(&data[i..j], &mut cuts);
            i = j;
            step = step * 7 % 1000 + 1;
        }
        cuts.extend(sp.finish());
        let mut start = 0;
        let pieces: Vec<(u64, u32)> = cuts
            .iter()
            .map(|c| {
                let l = c.end - start;
                start = c.end;
                (l, c.level)
            })
            .collect();
        assert_eq!(pieces, whole);
    }

    #[test]
    fn zero_bytes_cut_at_every_minimum() {
        // A window of zeros sums to 0: 32 trailing zeros, so every chunk is as
        // short as allowed, with level 32 - bits.
        let opts = SplitOptions::default();
        let got = Splitter::chunks(&opts, &[0u8; 5000]).unwrap();
        assert_eq!(
            got,
            vec![(1024, 16), (1024, 16), (1024, 16), (1024, 16), (904, 16)]
        );
    }

    /// Builds a tree from chunks of the given tree levels; returns the store, root
    /// and content.
    fn build(levels: &[usize]) -> (MemStore, Ref, Vec<u8>) {
        let store = MemStore::new();
        let mut tb = TreeBuilder::default();
        let mut content = Vec::new();
        for (i, &lv) in levels.iter().enumerate() {
            let chunk = format!("chunk {i} at level {lv}; ").into_bytes();
            let (r, _) = store.put(&chunk).unwrap();
            tb.add(&store, r, chunk.len() as u64, lv).unwrap();
            content.extend_from_slice(&chunk);
        }
        let root = tb.finish(&store).unwrap();
        (store, root, content)
    }

    #[test]
    fn tree_builder_keeps_every_chunk() {
        let cases: &[&[usize]] = &[
            &[],
            &[0],
            &[3],
            &[0, 0, 1, 0],
            &[0, 2, 0, 1],
            // The last chunk closes level 0 while level 1 stays open below the
            // top: Go's builder drops level 1 here.
            &[0, 2, 0, 1, 0, 1],
            &[0, 3, 1, 0, 1],
            &[1, 1, 1],
            &[0, 0, 2, 0, 0, 1, 0, 3, 0, 1, 2, 1],
        ];
        for levels in cases {
            let (store, root, content) = build(levels);
            if levels.is_empty() {
                assert!(root.is_zero());
                continue;
            }
            assert_eq!(validate_root(&store, &root).unwrap(), content.len() as u64);
            assert_eq!(
                read_to_vec(&store, &root).unwrap(),
                content,
                "levels {levels:?}"
            );
        }
    }

    #[test]
    fn tree_builder_shape_follows_go() {
        // One chunk at level 2: every level has one child, so the root collapses
        // to the leaf node.
        let (store, root, _) = build(&[2]);
        let node = Node::decode(store.get(&root).unwrap()).unwrap();
        assert_eq!(node.leaves.len(), 1);
        assert!(node.nodes.is_empty());
        // Two level-0 nodes under a top with two children.
        let (store, root, content) = build(&[0, 1, 0]);
        let node = Node::decode(store.get(&root).unwrap()).unwrap();
        assert_eq!(node.nodes.len(), 2);
        assert_eq!(node.size, content.len() as u64);
        let second = Node::decode(
            store
                .get(&Ref::from_slice(&node.nodes[1].r#ref).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(second.leaves.len(), 1);
        assert_eq!(second.offset, node.nodes[1].offset);
    }
}
