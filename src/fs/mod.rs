//! The filesystem core: anchors as directories of versions, in plain Rust that tests
//! call without a mount. The `fuser` adapter ([`fuse`]) only translates callbacks
//! into these calls and errors into errno.
//!
//! ```text
//! /NAME/TIME                 one read-only file per version
//! /NAME/latest -> TIME       the newest version
//! /.anchorfs/at/TIME/NAME    NAME's content as of TIME
//! /.anchorfs/refs/HEX        any blob or split tree by its ref
//! ```
//!
//! # Parts
//!
//! [`AnchorFs`] is a facade over parts that each own their state and locks:
//!
//! - `namespace`: the snapshot of the anchors, the inode table, directories made by
//!   `mkdir`, the cache of contents' kinds and sizes, and `refresh`.
//! - `handles`: the open files, by handle number.
//! - `staging`: files being written (staged files, in-place writers, moved opens,
//!   settled names) and their bytes (memory, split writers, spools, overlays).
//! - `committer`: group commit into the one optimistic-lock loop of
//!   [`anchor::update`](crate::anchor::update), and back-dating.
//! - [`process`]: which process a thread belongs to, which decides which closes
//!   commit.
//! - [`ids`]: the numbers of the API (inodes, handles, processes, staged files).
//! - [`errors`]: [`FsError`] and its one errno map.
//!
//! The facade's operations are spread by concern: `lookup` (names, attributes,
//! xattrs), `listing`, `open` (open, read, release), `writing` (create, write,
//! setattr), `dirops` (mkdir, unlink, rmdir, rename, symlink) and `closing` (flush,
//! release, commit points).
//!
//! # Lock order
//!
//! A lock may be taken while holding only locks above it in this list:
//!
//! 1. a staged file's commit `gate` (staging): held for one commit of that file,
//!    across storing its content, the group commit and the refresh after it.
//! 2. `refreshing` (namespace): one refresh at a time, held across its reads of
//!    the anchor map.
//! 3. `inodes` (namespace): held while a listing is made.
//! 4. `files` (staging): the table of staged files.
//! 5. a staged file (staging).
//! 6. leaves, held for one operation and never while taking another lock except
//!    as said: `snapshot`, `meta`, `pending_dirs` (namespace); `by_name`,
//!    `flushed_unwritten`, `in_place`, `written_over`, `moved`, `settled`
//!    (staging); `table`, `cached_reads`, `appending`, `openers` (handles); the
//!    committer's group-commit `queue`; the size and mode logs' own.
//!
//! No lock is held across store I/O except the commit gate and `refreshing`
//! (by design: each serializes one kind of store work) and a staged file's lock,
//! which is held while its bytes are written to or read from the store or its
//! spool file (the bytes are the state it guards).

pub mod errors;
pub mod fuse;
pub mod ids;
pub mod inode;
pub mod modes;
pub mod names;
pub mod overlay;
pub mod process;
pub mod sizes;
mod sync;
pub mod view;

mod closing;
mod committer;
mod dirops;
mod group_commit;
mod handles;
mod listing;
mod lookup;
mod namespace;
mod open;
mod staging;
mod types;
mod writing;

pub use errors::{Cause, FsError};
pub use ids::{Fh, Ino, ProcessId, StagedId};
pub use process::{FakeProcesses, ProcStatus, ProcessLookup, ThreadIsProcess};
pub use staging::data::SMALL_MAX;
#[cfg(feature = "model-check")]
pub use staging::StagedSummary;
pub use types::{
    Attr, Caller, DirEntry, Entry, FileKind, FsOptions, Invalidations, Opened, StatFs,
};
pub use writing::SetAttr;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::blob::{Blob, Ref};
use crate::content::{self, ContentError, Kind};
use crate::store::AnchorStore;
use handles::{Handle, Handles};
use inode::NodeKey;
use namespace::Namespace;
use view::{AnchorView, Snapshot};

/// The store a mount serves: any anchor store, shared by every thread.
pub type SharedStore = Arc<dyn AnchorStore>;

/// How many contents' sizes a listing with attributes fetches at once.
pub const META_FETCHES: usize = 16;

/// The name of the directory of special views.
pub const META_DIR: &[u8] = b".anchorfs";
/// The name of the link to the newest version.
pub const LATEST: &[u8] = b"latest";

/// How long the kernel may cache what never changes (versions, refs, time travel).
pub const IMMUTABLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Extended attribute: a version's ref in hex.
pub const XATTR_REF: &str = "user.anchorfs.ref";
/// Extended attribute: a version's time.
pub const XATTR_AT: &str = "user.anchorfs.at";
/// The only namespace of extended attributes the mount has.
const XATTR_USER_PREFIX: &str = "user.";

/// The filesystem core: a facade over its parts (see the [module doc](self)).
pub struct AnchorFs {
    store: SharedStore,
    opts: FsOptions,
    ns: Namespace,
    handles: Handles,
    mode_log: Option<modes::ModeLog>,
    mounted_at: SystemTime,
    staging: staging::Staging,
    committer: committer::Committer,
    read_only: bool,
    invalidator: std::sync::OnceLock<Invalidator>,
    page_filler: std::sync::OnceLock<PageFiller>,
    read_tee: std::sync::OnceLock<ReadTee>,
    /// Which process each calling thread belongs to (commit policy).
    processes: Arc<dyn ProcessLookup>,
}

/// Reads up to this size fill the kernel's cache with the rest of the chunks they
/// touch (see [`AnchorFs::set_page_filler`]); larger ones are the kernel's
/// read-ahead, which asks for what it wants.
pub const FILL_READS_UP_TO: usize = 128 << 10;

/// Where the core sends verified content for the kernel's page cache: (inode,
/// offset, bytes). The mount passes it on from a thread of its own.
pub type PageFiller = Box<dyn Fn(u64, u64, Blob) + Send + Sync>;

/// Where the core also sends what reads of versions through the page cache
/// return, checked: (content ref, content size, offset, bytes). The mount makes
/// whole local copies of large files from it.
pub type ReadTee = Box<dyn Fn(&crate::blob::Ref, u64, u64, &[u8]) + Send + Sync>;

/// Where the core sends kernel cache entries it made stale (the mount passes them to
/// the kernel from a thread of its own, never from inside a request).
pub type Invalidator = Box<dyn Fn(Invalidations) + Send + Sync>;

impl AnchorFs {
    /// A filesystem over `store`, loading the current anchors; threads' processes
    /// are read from the system ([`ProcStatus`]).
    pub fn new(store: SharedStore, opts: FsOptions) -> Result<AnchorFs, FsError> {
        AnchorFs::with_processes(store, opts, Arc::new(ProcStatus::default()))
    }

    /// [`new`](Self::new) with `processes` telling which process a calling thread
    /// belongs to (only the writer's own closes commit a file).
    pub fn with_processes(
        store: SharedStore,
        opts: FsOptions,
        processes: Arc<dyn ProcessLookup>,
    ) -> Result<AnchorFs, FsError> {
        let opts_read_only = opts.read_only;
        let size_log = opts
            .size_log
            .as_deref()
            .map(|p| sizes::SizeLog::open(p, !opts.read_only));
        let mode_log = opts
            .mode_log
            .as_deref()
            .map(|p| modes::ModeLog::open(p, !opts.read_only));
        // Every file this mount writes is cut as the store's setting says. A
        // read-only mount writes none, so a record it cannot read stops nothing.
        let split_opts = match store.settings() {
            Ok(s) => s.chunking.into(),
            Err(e) if opts_read_only => {
                log::warn!("mount: {e}; the mount is read-only, so it writes nothing");
                crate::split::SplitOptions::default()
            }
            Err(e) => return Err(FsError::from_store(e)),
        };
        let fs = AnchorFs {
            ns: Namespace::new(store.clone(), size_log),
            handles: Handles::default(),
            mode_log,
            mounted_at: SystemTime::now(),
            staging: staging::Staging::new(
                store.clone(),
                crate::split::ChunkStorers::new(crate::split::STORING_THREADS),
                split_opts,
                store.local_dir().map(std::path::Path::to_path_buf),
            ),
            committer: committer::Committer::new(store.clone()),
            read_only: opts_read_only,
            invalidator: std::sync::OnceLock::new(),
            page_filler: std::sync::OnceLock::new(),
            read_tee: std::sync::OnceLock::new(),
            processes,
            store,
            opts,
        };
        fs.refresh()?;
        if let Some(log) = fs.ns.size_log() {
            let snap = fs.snapshot();
            let live: std::collections::HashSet<Ref> = snap
                .anchors()
                .iter()
                .flat_map(|v| v.versions.iter().map(|a| a.r))
                .collect();
            log.tidy(|r| live.contains(r));
        }
        if let Some(log) = &fs.mode_log {
            let snap = fs.snapshot();
            let live: std::collections::HashSet<Ref> = snap
                .anchors()
                .iter()
                .flat_map(|v| v.versions.iter().map(|a| modes::key(&v.name, a.at)))
                .collect();
            log.tidy(|k| live.contains(k));
        }
        Ok(fs)
    }

    /// The store served.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The options in force.
    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// Sets where stale kernel cache entries are reported (once; later calls are
    /// ignored). Without one, the kernel's caches expire by their timeouts alone.
    pub fn set_invalidator(&self, f: Invalidator) {
        let _ = self.invalidator.set(f);
    }

    /// Sets where verified chunks go to fill the kernel's page cache (once). A small
    /// read of a version or ref (random access: the kernel's read-ahead asks for
    /// more) then hands on the whole chunks it touched, so the next reads of their
    /// other pages need no request. Only content that never changes and is read
    /// through the page cache is filled; the bytes are the verified chunks'.
    pub fn set_page_filler(&self, f: PageFiller) {
        let _ = self.page_filler.set(f);
    }

    /// Sends what reads of versions through the page cache return to `tee` as well
    /// (once; later calls are ignored).
    pub fn set_read_tee(&self, tee: ReadTee) {
        let _ = self.read_tee.set(tee);
    }

    /// Reports stale kernel cache entries, if anyone listens.
    fn invalidate(&self, inv: Invalidations) {
        if inv.inodes.is_empty() {
            return;
        }
        if let Some(f) = self.invalidator.get() {
            f(inv);
        }
    }

    /// The current snapshot of the anchors.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.ns.snapshot()
    }

    /// Re-reads the anchor map if its ref moved; returns the kernel cache entries
    /// that the change makes stale (see `Namespace::refresh`).
    pub fn refresh(&self) -> Result<Invalidations, FsError> {
        self.ns.refresh()
    }

    fn key_of(&self, ino: Ino) -> Result<NodeKey, FsError> {
        self.ns.key_of(ino)
    }

    fn content_meta(&self, r: &Ref) -> Result<(Kind, u64), FsError> {
        self.ns.content_meta(r)
    }

    fn note_meta(&self, r: &Ref, kind: Kind, size: u64) {
        self.ns.note_meta(r, kind, size)
    }

    fn content_size(&self, r: &Ref) -> Result<u64, FsError> {
        self.ns.content_size(r)
    }

    fn known_size(&self, r: &Ref) -> Option<u64> {
        self.ns.known_size(r)
    }

    fn damaged(&self, r: &Ref, e: ContentError) -> FsError {
        self.ns.damaged(r, e)
    }

    fn anchor_view(&self, snap: &Snapshot, name: &[u8]) -> Option<Arc<AnchorView>> {
        self.ns.anchor_view(snap, name)
    }

    fn readable_view(&self, snap: &Snapshot, name: &[u8]) -> Result<Arc<AnchorView>, FsError> {
        self.ns.readable_view(snap, name)
    }
}
