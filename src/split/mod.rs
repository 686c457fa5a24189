//! Split trees: content-defined chunking into a tree of `split.Node` blobs
//! (docs/FORMAT.md, "Split trees").
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
//!
//! One module per part, all reached through the paths here:
//!
//! - `rolling`: the buzhash32 checksum and the chunk boundaries ([`Splitter`]);
//! - `tree`: the tree builder, which stores the nodes as chunks come;
//! - `node`: decoding and checking stored nodes, and [`validate_root`];
//! - `storers`: the storing threads ([`ChunkStorers`]) and reused block buffers;
//! - `writer`: [`SplitWriter`], its chunking thread and the `store_*` functions;
//! - `reader`: [`SplitReader`] and [`read_to_vec`].
//!
//! The locks are each module's own (named in its doc); no code holds two of
//! different modules at once, and none is held across store I/O.

use std::io;

use crate::blob::Ref;
use crate::store::{Chunking, StoreError};

mod buffers;
mod fetch;
mod in_flight;
mod lanes;
mod node;
mod reader;
mod rolling;
mod storers;
mod tree;
mod writer;

pub use buffers::release_idle as release_idle_buffers;
pub use fetch::PARALLEL_FETCHES;
pub use node::{decodes_as_node, validate_root};
pub use reader::{read_to_vec, SplitReader};
pub use rolling::{level_of, window_checksum, Cut, Splitter, WINDOW};
pub use storers::{ChunkStorers, STORING_THREADS};
pub use writer::{store_bytes, store_from, store_from_with, SplitWriter};

/// The largest block cut from one big write (and the size of a reused block
/// buffer).
const MAX_BLOCK: usize = 1 << 20;

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

impl From<Chunking> for SplitOptions {
    /// The options of a store's chunking setting (`store::settings`).
    fn from(c: Chunking) -> SplitOptions {
        SplitOptions {
            bits: c.bits,
            min_size: c.min_size as usize,
            fanout: c.fanout,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::mem::MemStore;

    #[test]
    fn readers_and_writers_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<SplitReader<&MemStore>>();
        send_sync::<SplitReader<Arc<MemStore>>>();
        send::<SplitWriter<Arc<MemStore>>>();
        send::<SplitWriter<&MemStore>>();
    }
}
