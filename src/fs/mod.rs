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

pub mod fuse;
pub mod group_commit;
pub mod inode;
pub mod modes;
pub mod names;
pub mod overlay;
pub mod sizes;
mod sync;
pub mod view;
mod write;
pub use write::{SetAttr, SMALL_MAX};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lru::LruCache;
use parking_lot::{Mutex, RwLock};

use crate::anchor::{self, AnchorError};
use crate::blob::{Blob, Ref};
use crate::content::{self, ContentError, Kind};
use crate::schema::SchemaError;
use crate::split::{SplitError, SplitReader};
use crate::store::{AnchorStore, StoreError};
use crate::timestamp::Timestamp;
use inode::{InodeTable, NodeKey, ROOT_INO};
use names::TimeNames;
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

/// Errors of filesystem operations, each with one errno (see [`FsError::errno`]).
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No such entry (or a time before an anchor's first version).
    #[error("no such file or directory")]
    NotFound,
    /// A directory was expected.
    #[error("not a directory")]
    NotDir,
    /// A file was expected.
    #[error("is a directory")]
    IsDir,
    /// Not a symbolic link.
    #[error("not a symbolic link")]
    NotLink,
    /// History is immutable: versions cannot be removed or renamed.
    #[error("history is immutable")]
    Immutable,
    /// This part of the mount cannot be written.
    #[error("read-only")]
    ReadOnly,
    /// A malformed time or ref under `.anchorfs/`.
    #[error("malformed name {0:?}")]
    BadName(String),
    /// A blob is damaged or missing, or a tree is inconsistent.
    #[error("content of {r} cannot be read: {why}")]
    Damaged {
        /// The ref being read.
        r: Ref,
        /// What went wrong.
        why: String,
    },
    /// The store failed (I/O), with its errno where known.
    #[error("store failed: {why}")]
    Store {
        /// The OS error number, if the failure had one (ENOSPC, EIO, ...).
        errno: Option<i32>,
        /// What failed.
        why: String,
    },
    /// No such open file handle.
    #[error("bad file handle")]
    BadHandle,
    /// No such extended attribute.
    #[error("no such attribute")]
    NoAttr,
    /// The name exists already.
    #[error("file exists")]
    Exists,
    /// The operation is not supported (setting extended attributes).
    #[error("operation not supported")]
    NotSupported,
    /// The directory still holds files being written.
    #[error("directory not empty")]
    NotEmpty,
    /// A name longer than a directory entry may be.
    #[error("file name too long")]
    NameTooLong,
    /// The caller lacks the permission the operation needs.
    #[error("permission denied")]
    PermissionDenied,
    /// The open of a version for writing moved to a new file of its own: the caller
    /// looks the name up again and opens what it finds (the kernel does this by
    /// itself on `ESTALE`; see `AnchorFs::open_as`).
    #[error("opened elsewhere: look the name up again")]
    LookUpAgain,
}

impl FsError {
    /// The errno this error is reported with. One exhaustive mapping.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotLink => libc::EINVAL,
            FsError::Immutable => libc::EPERM,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadName(_) => libc::EINVAL,
            FsError::Damaged { .. } => libc::EIO,
            FsError::Store { errno, .. } => errno.unwrap_or(libc::EIO),
            FsError::BadHandle => libc::EBADF,
            FsError::NoAttr => libc::ENODATA,
            FsError::Exists => libc::EEXIST,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::LookUpAgain => libc::ESTALE,
            FsError::PermissionDenied => libc::EACCES,
        }
    }

    fn from_store(e: StoreError) -> FsError {
        match e {
            StoreError::Damaged(r) | StoreError::NotFound(r) => FsError::Damaged {
                r,
                why: e.to_string(),
            },
            e => FsError::Store {
                errno: e.raw_os_error(),
                why: e.to_string(),
            },
        }
    }

    fn from_content(r: Ref, e: ContentError) -> FsError {
        match e {
            ContentError::Store(s) | ContentError::Split(SplitError::Store(s)) => match s {
                StoreError::Io { .. } => FsError::from_store(s),
                other => FsError::Damaged {
                    r,
                    why: other.to_string(),
                },
            },
            ContentError::Anchor(AnchorError::Store(s)) => FsError::from_store(s),
            other => FsError::Damaged {
                r,
                why: other.to_string(),
            },
        }
    }

    fn from_anchor(e: AnchorError) -> FsError {
        match e {
            AnchorError::Store(s) | AnchorError::Schema(SchemaError::Store(s)) => {
                FsError::from_store(s)
            }
            other => FsError::Store {
                errno: Some(other.raw_os_error().unwrap_or(libc::EIO)),
                why: other.to_string(),
            },
        }
    }
}

/// File types the mount shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// A node's attributes, as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Size in 512-byte blocks, rounded up.
    pub blocks: u64,
    /// Modification time (and change time).
    pub mtime: SystemTime,
    /// File type.
    pub kind: FileKind,
    /// Permission bits.
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A looked-up entry: its attributes and how long the kernel may cache them.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Attributes.
    pub attr: Attr,
    /// Cache lifetime of the entry and its attributes.
    pub ttl: Duration,
}

/// One directory listing entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// The offset to resume after this entry.
    pub next: u64,
    /// File type.
    pub kind: FileKind,
    /// The entry's name.
    pub name: Vec<u8>,
}

/// Filesystem-wide figures for `statfs`.
#[derive(Clone, Debug, Default)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

/// Options of a mount.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// How version files are named.
    pub time_names: TimeNames,
    /// Owner shown on every node.
    pub uid: u32,
    /// Group shown on every node.
    pub gid: u32,
    /// Where the store lives (for `statfs`), if on disk.
    pub store_path: Option<PathBuf>,
    /// Short cache lifetime for what changes (directories, `latest`).
    pub mutable_ttl: Duration,
    /// Refuse every write with EROFS.
    pub read_only: bool,
    /// Where to keep the size log ([`sizes::SizeLog`]), if anywhere: read, and
    /// appended to unless `read_only`.
    pub size_log: Option<PathBuf>,
    /// The permission bits shown ([`modes::ModePolicy`]).
    pub modes: modes::ModePolicy,
    /// Where to keep the modes files were written with ([`modes::ModeLog`]), if
    /// anywhere.
    pub mode_log: Option<PathBuf>,
    /// Check callers' permissions where the kernel's checks cannot (other users
    /// are let in).
    pub check_access: bool,
}

/// Who asks: the credentials of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Caller {
    /// Whether the caller may write into a node with attributes `attr` (root may).
    pub fn may_write(&self, attr: &Attr) -> bool {
        let bits = if self.uid == 0 {
            return true;
        } else if self.uid == attr.uid {
            0o200
        } else if self.gid == attr.gid || self.groups.contains(&attr.gid) {
            0o020
        } else {
            0o002
        };
        attr.perm & bits != 0
    }
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            time_names: TimeNames::Rfc3339,
            uid: 0,
            gid: 0,
            store_path: None,
            mutable_ttl: Duration::from_secs(1),
            read_only: false,
            size_log: None,
            modes: modes::ModePolicy::default(),
            mode_log: None,
            check_access: false,
        }
    }
}

/// What a poll or a commit found changed: the kernel's cached attributes to drop.
/// Only attributes: the names themselves keep meaning the same nodes (an anchor
/// directory, `latest`, a version), and directory listings and link targets are not
/// cached. Dropping attributes never waits on a lock a request holds, so it cannot
/// hang the daemon; dropping entries could.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalidations {
    /// Inodes whose attributes to forget.
    pub inodes: Vec<u64>,
}

/// An opened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The handle for later calls.
    pub fh: u64,
    /// Whether the kernel may keep cached pages across opens (immutable content).
    pub keep_cache: bool,
    /// Whether reads and writes must bypass the kernel's page cache: a write opened
    /// on a version, whose cached pages must keep showing the version.
    pub direct_io: bool,
}

/// An open file: a reader of immutable content, or a file being written.
enum Handle {
    /// Reading a version, a time-travel file or a ref.
    Read(ReadHandle),
    /// Writing the staged file with this id.
    Write(u64),
}

/// A reader of immutable content.
struct ReadHandle {
    reader: Box<SplitReader<SharedStore>>,
    /// The inode read, if its pages may be filled ahead of reads (content that
    /// never changes, read through the page cache).
    fill_pages_of: Option<u64>,
}

impl ReadHandle {
    fn handle(reader: SplitReader<SharedStore>, fill_pages_of: Option<u64>) -> Handle {
        Handle::Read(ReadHandle {
            reader: Box::new(reader),
            fill_pages_of,
        })
    }
}

/// Reads up to this size fill the kernel's cache with the rest of the chunks they
/// touch (see [`AnchorFs::set_page_filler`]); larger ones are the kernel's
/// read-ahead, which asks for what it wants.
pub const FILL_READS_UP_TO: usize = 128 << 10;

/// Where the core sends verified content for the kernel's page cache: (inode,
/// offset, bytes). The mount passes it on from a thread of its own.
pub type PageFiller = Box<dyn Fn(u64, u64, Blob) + Send + Sync>;

/// The `i`th own entry of a directory listing: inode, type, name.
type ListingEntry<'a> = dyn Fn(usize) -> (u64, FileKind, Vec<u8>) + 'a;

/// Content metadata cached per ref: its kind and size.
type MetaCache = LruCache<Ref, (Kind, u64)>;

/// The filesystem core.
pub struct AnchorFs {
    store: SharedStore,
    opts: FsOptions,
    snapshot: RwLock<Arc<Snapshot>>,
    inodes: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    /// Open read handles of versions that read through the page cache: handle to
    /// the version's inode.
    cached_reads: Mutex<HashMap<u64, u64>>,
    next_fh: AtomicU64,
    meta: Mutex<MetaCache>,
    sizes: Option<sizes::SizeLog>,
    mode_log: Option<modes::ModeLog>,
    mounted_at: SystemTime,
    writes: write::Writes,
    /// Store the chunks of files written in order, for every writer.
    storers: Arc<crate::split::ChunkStorers>,
    read_only: bool,
    refreshing: Mutex<()>,
    invalidator: std::sync::OnceLock<Invalidator>,
    page_filler: std::sync::OnceLock<PageFiller>,
}

/// Where the core sends kernel cache entries it made stale (the mount passes them to
/// the kernel from a thread of its own, never from inside a request).
pub type Invalidator = Box<dyn Fn(Invalidations) + Send + Sync>;

fn blocks(size: u64) -> u64 {
    size.div_ceil(512)
}

impl AnchorFs {
    /// A filesystem over `store`, loading the current anchors.
    pub fn new(store: SharedStore, opts: FsOptions) -> Result<AnchorFs, FsError> {
        let opts_read_only = opts.read_only;
        let size_log = opts
            .size_log
            .as_deref()
            .map(|p| sizes::SizeLog::open(p, !opts.read_only));
        let mode_log = opts
            .mode_log
            .as_deref()
            .map(|p| modes::ModeLog::open(p, !opts.read_only));
        let fs = AnchorFs {
            store,
            opts,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            inodes: Mutex::new(InodeTable::new()),
            handles: Mutex::new(HashMap::new()),
            cached_reads: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            meta: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(1 << 16).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            sizes: size_log,
            mode_log,
            mounted_at: SystemTime::now(),
            writes: write::Writes::default(),
            storers: crate::split::ChunkStorers::new(crate::split::STORING_THREADS),
            read_only: opts_read_only,
            refreshing: Mutex::new(()),
            invalidator: std::sync::OnceLock::new(),
            page_filler: std::sync::OnceLock::new(),
        };
        fs.refresh()?;
        if let Some(log) = &fs.sizes {
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
        self.snapshot.read().clone()
    }

    /// Re-reads the anchor map if its ref moved; returns the kernel cache entries
    /// that the change makes stale.
    pub fn refresh(&self) -> Result<Invalidations, FsError> {
        // One refresh at a time (a commit's and the poller's), so an older map can
        // never replace a newer one.
        let _serial = self.refreshing.lock();
        let map_ref = anchor::map_ref(&*self.store).map_err(FsError::from_anchor)?;
        let old = self.snapshot();
        if old.map_ref == map_ref && map_ref.is_some() {
            return Ok(Invalidations::default());
        }
        let entries = match &map_ref {
            Some(r) => {
                let read = crate::schema::Map::entries_skipping_damage(&*self.store, r)
                    .map_err(|e| FsError::from_anchor(e.into()))?;
                for (node, e) in &read.damaged {
                    log::error!(
                        "anchor map node {node} cannot be read, the anchors it holds are \
                         not shown: {e}"
                    );
                }
                read.entries
            }
            None => Vec::new(),
        };
        let new = Arc::new(Snapshot::rebuild(map_ref, entries, &old));
        let changed = old.changed_since(&new);
        *self.snapshot.write() = new.clone();
        let mut inv = Invalidations::default();
        if !changed.is_empty() {
            inv.inodes.push(ROOT_INO);
        }
        let inodes = self.inodes.lock();
        for dir in changed {
            let name = new
                .by_dir_name(&dir)
                .or_else(|| old.by_dir_name(&dir))
                .map(|v| v.name.clone());
            if let Some(name) = name {
                let dir_ino = inodes.ino_of(&NodeKey::AnchorDir(name.clone()));
                inv.inodes.push(dir_ino);
                inv.inodes.push(inodes.ino_of(&NodeKey::Latest(name)));
            }
        }
        Ok(inv)
    }

    fn dir_attr(&self, ino: u64, mtime: SystemTime, nlink: u32) -> Attr {
        Attr {
            ino,
            size: 0,
            blocks: 0,
            mtime,
            kind: FileKind::Dir,
            perm: if self.read_only {
                self.opts.modes.read_only_dir()
            } else {
                self.opts.modes.dir
            },
            nlink,
            uid: self.opts.uid,
            gid: self.opts.gid,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime) -> Attr {
        Attr {
            ino,
            size,
            blocks: blocks(size),
            mtime,
            kind: FileKind::File,
            perm: self.opts.modes.read_only_file(None),
            nlink: 1,
            uid: self.opts.uid,
            gid: self.opts.gid,
        }
    }

    /// The kind and size of `r`'s content, cached.
    fn content_meta(&self, r: &Ref) -> Result<(Kind, u64), FsError> {
        if let Some(m) = self.meta.lock().get(r) {
            return Ok(*m);
        }
        let types_map = self.snapshot().types_map;
        let kind = content::kind_in(&*self.store, types_map.as_ref(), r)
            .map_err(|e| self.damaged(r, e))?;
        let reader = content::open(self.store.clone(), *r, kind).map_err(|e| self.damaged(r, e))?;
        let size = reader.size();
        self.note_meta(r, kind, size);
        Ok((kind, size))
    }

    /// Remembers the kind and size of `r`'s content, worked out from the store.
    fn note_meta(&self, r: &Ref, kind: Kind, size: u64) {
        self.meta.lock().put(*r, (kind, size));
        if let Some(log) = &self.sizes {
            log.record(&[(*r, size)]);
        }
    }

    /// The size of `r`'s content: from what this mount worked out, else the size
    /// log, else the store.
    fn content_size(&self, r: &Ref) -> Result<u64, FsError> {
        match self.known_size(r) {
            Some(size) => Ok(size),
            None => Ok(self.content_meta(r)?.1),
        }
    }

    /// The size of `r`'s content if known without reading the store: what this
    /// mount worked out, else what the size log says.
    fn known_size(&self, r: &Ref) -> Option<u64> {
        let worked_out = self.meta.lock().peek(r).map(|(_, size)| *size);
        worked_out.or_else(|| self.sizes.as_ref().and_then(|l| l.get(r)))
    }

    fn damaged(&self, r: &Ref, e: ContentError) -> FsError {
        let err = FsError::from_content(*r, e);
        log::error!("reading {r}: {err}");
        err
    }

    /// The attributes of the node `key` (numbered `ino`).
    fn attr_of(&self, key: &NodeKey, ino: u64) -> Result<(Attr, Duration), FsError> {
        let snap = self.snapshot();
        let short = self.opts.mutable_ttl;
        match key {
            NodeKey::Root => {
                let newest = snap
                    .anchors()
                    .iter()
                    .filter_map(|v| v.latest())
                    .map(|a| a.at)
                    .max()
                    .map(|t| t.to_system_time())
                    .unwrap_or(self.mounted_at);
                Ok((self.dir_attr(ino, newest, 2 + 1), short))
            }
            NodeKey::Meta | NodeKey::AtDir | NodeKey::RefsDir => {
                let mut attr = self.dir_attr(ino, self.mounted_at, 2);
                attr.perm = self.opts.modes.read_only_dir();
                Ok((attr, IMMUTABLE_TTL))
            }
            NodeKey::AtTime(t) => {
                let mut attr = self.dir_attr(ino, t.to_system_time(), 2);
                attr.perm = self.opts.modes.read_only_dir();
                Ok((attr, short))
            }
            NodeKey::AnchorDir(name) => {
                let v = self.anchor_view(&snap, name).ok_or(FsError::NotFound)?;
                let mtime = v
                    .latest()
                    .map(|a| a.at.to_system_time())
                    .unwrap_or(self.mounted_at);
                Ok((self.dir_attr(ino, mtime, 2), short))
            }
            NodeKey::Version(name, at) => {
                let v = snap.by_name(name).ok_or(FsError::NotFound)?;
                let a = v.version(*at).ok_or(FsError::NotFound)?;
                let recorded = self.recorded_mode(name, *at);
                // Written over in place: the inode is the writer's file until its
                // last close (see `open_as`).
                if let Some(f) = self
                    .writes
                    .in_place_writer(ino)
                    .and_then(|id| self.writes.get(id))
                {
                    let g = f.lock();
                    let mut attr = self.file_attr(ino, g.len(), g.mtime);
                    attr.perm = self.opts.modes.file(Some(g.mode));
                    return Ok((attr, Duration::ZERO));
                }
                let size = self.content_size(&a.r)?;
                let mut attr = self.file_attr(ino, size, at.to_system_time());
                // Writable on a writable mount: writing starts a new version.
                attr.perm = if self.read_only {
                    self.opts.modes.read_only_file(recorded)
                } else {
                    self.opts.modes.file(recorded)
                };
                Ok((attr, IMMUTABLE_TTL))
            }
            NodeKey::Latest(name) => {
                let v = snap.by_name(name).ok_or(FsError::NotFound)?;
                let a = v.latest().ok_or(FsError::NotFound)?;
                let target = self.opts.time_names.format(a.at);
                let mut attr = self.file_attr(ino, target.len() as u64, a.at.to_system_time());
                attr.kind = FileKind::Symlink;
                attr.perm = 0o777;
                Ok((attr, short))
            }
            NodeKey::AtFile(t, name) => {
                let v = snap.by_name(name).ok_or(FsError::NotFound)?;
                let a = v.as_of(*t).ok_or(FsError::NotFound)?;
                let size = self.content_size(&a.r)?;
                let mut attr = self.file_attr(ino, size, a.at.to_system_time());
                attr.perm = self
                    .opts
                    .modes
                    .read_only_file(self.recorded_mode(name, a.at));
                Ok((attr, short))
            }
            NodeKey::RefFile(r) => {
                let size = self.content_size(r)?;
                Ok((self.file_attr(ino, size, self.mounted_at), IMMUTABLE_TTL))
            }
            NodeKey::Staged(id) => {
                let f = self.writes.get(*id).ok_or(FsError::NotFound)?;
                let g = f.lock();
                let mut attr = self.file_attr(ino, g.len(), g.mtime);
                attr.perm = self.opts.modes.file(Some(g.mode));
                Ok((attr, Duration::ZERO))
            }
        }
    }

    /// The mode `anchor`'s version at `at` was written with through a mount, if
    /// recorded.
    pub(crate) fn recorded_mode(&self, anchor: &[u8], at: Timestamp) -> Option<u16> {
        self.mode_log.as_ref().and_then(|l| l.get(anchor, at))
    }

    /// Records the mode a version was written with.
    pub(crate) fn record_mode(&self, anchor: &[u8], at: Timestamp, mode: u16) {
        if let Some(l) = &self.mode_log {
            if !self.read_only {
                l.record(anchor, at, mode);
            }
        }
    }

    /// The view of anchor `name`: from the snapshot, or empty for a directory made by
    /// `mkdir` that has no version yet.
    fn anchor_view(&self, snap: &Snapshot, name: &[u8]) -> Option<Arc<AnchorView>> {
        if let Some(v) = snap.by_name(name) {
            return Some(v.clone());
        }
        self.writes
            .pending_dirs
            .lock()
            .contains(name)
            .then(|| Arc::new(AnchorView::new(name.to_vec(), &[])))
    }

    /// The view of anchor `name` for looking inside it: `EIO` if its history does not
    /// decode.
    fn readable_view(&self, snap: &Snapshot, name: &[u8]) -> Result<Arc<AnchorView>, FsError> {
        let v = self.anchor_view(snap, name).ok_or(FsError::NotFound)?;
        match &v.damaged {
            Some(why) => {
                log::error!("anchor {}: {why}", names::escape(name).escape_ascii());
                Err(FsError::Damaged {
                    r: v.history_ref,
                    why: why.clone(),
                })
            }
            None => Ok(v),
        }
    }

    /// The node `name` in directory `parent` (no lookup counted).
    pub(crate) fn lookup_key(&self, parent: u64, name: &[u8]) -> Result<NodeKey, FsError> {
        let pkey = self.key_of(parent)?;
        self.child_key(&pkey, name)
    }

    /// The node `name` in directory `parent`, if it exists (no lookup counted).
    fn child_key(&self, parent: &NodeKey, name: &[u8]) -> Result<NodeKey, FsError> {
        if name.len() > names::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let snap = self.snapshot();
        match parent {
            NodeKey::Root => {
                if name == META_DIR {
                    return Ok(NodeKey::Meta);
                }
                if let Some(v) = snap.by_dir_name(name) {
                    return Ok(NodeKey::AnchorDir(v.name.clone()));
                }
                match names::unescape(name) {
                    Some(names::Unescaped::Name(n))
                        if self.writes.pending_dirs.lock().contains(&n) =>
                    {
                        Ok(NodeKey::AnchorDir(n))
                    }
                    _ => Err(FsError::NotFound),
                }
            }
            NodeKey::AnchorDir(anchor) => {
                if name == LATEST || names::parse_version_name(name).is_some() {
                    self.settle_unwritten(anchor);
                }
                // History first: a file being written under the name `latest` or a
                // version's name (committed by an fsync, or renamed there) does not
                // hide them; its descriptors keep writing to it.
                if let Some(v) = self
                    .anchor_view(&snap, anchor)
                    .filter(|v| v.damaged.is_none())
                {
                    if name == LATEST && v.latest().is_some() {
                        return Ok(NodeKey::Latest(anchor.clone()));
                    }
                    if let Some(at) = names::parse_version_name(name) {
                        if v.version(at).is_some() {
                            return Ok(NodeKey::Version(anchor.clone(), at));
                        }
                    }
                }
                if let Some(id) = self.staged_by_name(anchor, name) {
                    return Ok(NodeKey::Staged(id));
                }
                let v = self.readable_view(&snap, anchor)?;
                if name == LATEST && v.latest().is_some() {
                    return Ok(NodeKey::Latest(anchor.clone()));
                }
                let at = names::parse_version_name(name).ok_or(FsError::NotFound)?;
                v.version(at).ok_or(FsError::NotFound)?;
                Ok(NodeKey::Version(anchor.clone(), at))
            }
            NodeKey::Meta => match name {
                b"at" => Ok(NodeKey::AtDir),
                b"refs" => Ok(NodeKey::RefsDir),
                _ => Err(FsError::NotFound),
            },
            NodeKey::AtDir => {
                let text = std::str::from_utf8(name)
                    .map_err(|_| FsError::BadName(String::from_utf8_lossy(name).into()))?;
                let t = Timestamp::parse(text).map_err(|_| FsError::BadName(text.into()))?;
                Ok(NodeKey::AtTime(t))
            }
            NodeKey::AtTime(t) => {
                let v = snap.by_dir_name(name).ok_or(FsError::NotFound)?;
                let v = self.readable_view(&snap, &v.name)?;
                v.as_of(*t).ok_or(FsError::NotFound)?;
                Ok(NodeKey::AtFile(*t, v.name.clone()))
            }
            NodeKey::RefsDir => {
                let text = std::str::from_utf8(name)
                    .map_err(|_| FsError::BadName(String::from_utf8_lossy(name).into()))?;
                let r = Ref::from_hex(text).map_err(|_| FsError::BadName(text.into()))?;
                if !self.store.contains(&r).map_err(FsError::from_store)? && !r.is_zero() {
                    return Err(FsError::NotFound);
                }
                Ok(NodeKey::RefFile(r))
            }
            NodeKey::Version(..)
            | NodeKey::Latest(_)
            | NodeKey::AtFile(..)
            | NodeKey::RefFile(_)
            | NodeKey::Staged(_) => Err(FsError::NotDir),
        }
    }

    fn key_of(&self, ino: u64) -> Result<NodeKey, FsError> {
        self.inodes
            .lock()
            .get(ino)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    /// Looks up `name` in directory `parent` and counts one kernel reference.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Entry, FsError> {
        self.lookup_as(parent, name, None)
    }

    /// [`lookup`](Self::lookup) for the thread `caller`: a version it has just
    /// opened for writing is, for it alone and until it opens it, the new file that
    /// open moved to (see [`open_as`](Self::open_as)).
    pub fn lookup_as(
        &self,
        parent: u64,
        name: &[u8],
        caller: Option<u64>,
    ) -> Result<Entry, FsError> {
        let pkey = self.key_of(parent)?;
        let mut key = self.child_key(&pkey, name)?;
        if let (Some(caller), NodeKey::Version(..)) = (caller, &key) {
            if let Some(id) = self.moved_write(caller, &key) {
                key = NodeKey::Staged(id);
            }
        }
        let ino = self.inodes.lock().ino_of(&key);
        let (attr, ttl) = self.attr_of(&key, ino)?;
        let ino2 = self.inodes.lock().lookup(&key);
        debug_assert_eq!(ino, ino2);
        Ok(Entry { attr, ttl })
    }

    /// The kernel drops `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().forget(ino, n);
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Entry, FsError> {
        let key = self.key_of(ino)?;
        let (attr, ttl) = self.attr_of(&key, ino)?;
        Ok(Entry { attr, ttl })
    }

    /// The target of the symlink `ino`.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        match self.key_of(ino)? {
            NodeKey::Latest(name) => {
                self.settle_unwritten(&name);
                let snap = self.snapshot();
                let v = snap.by_name(&name).ok_or(FsError::NotFound)?;
                let a = v.latest().ok_or(FsError::NotFound)?;
                Ok(self.opts.time_names.format(a.at).into_bytes())
            }
            _ => Err(FsError::NotLink),
        }
    }

    /// Up to `max` entries of directory `ino`, starting after offset `offset`
    /// (0: from the start). Offsets are positions in the listing, so a listing is
    /// produced once, in linear time, however many pages it takes.
    pub fn readdir(&self, ino: u64, offset: u64, max: usize) -> Result<Vec<DirEntry>, FsError> {
        let key = self.key_of(ino)?;
        if let (NodeKey::AnchorDir(anchor), 0) = (&key, offset) {
            self.settle_unwritten(anchor);
        }
        let snap = self.snapshot();
        let inodes = self.inodes.lock();
        let parent = match &key {
            NodeKey::AtDir | NodeKey::RefsDir => inodes.ino_of(&NodeKey::Meta),
            NodeKey::AtTime(_) => inodes.ino_of(&NodeKey::AtDir),
            _ => ROOT_INO,
        };
        // Every listing starts with "." and "..", then the directory's own entries.
        let own: (usize, Box<ListingEntry<'_>>) = match &key {
            NodeKey::Root => {
                let anchors = snap.anchors();
                // Directories made by mkdir that have no version yet come last.
                let extra: Vec<Vec<u8>> = self
                    .writes
                    .pending_dirs
                    .lock()
                    .iter()
                    .filter(|n| snap.by_name(n).is_none())
                    .cloned()
                    .collect();
                let inodes = &inodes;
                (
                    1 + anchors.len() + extra.len(),
                    Box::new(move |i| match i {
                        0 => (
                            inodes.ino_of(&NodeKey::Meta),
                            FileKind::Dir,
                            META_DIR.to_vec(),
                        ),
                        i if i <= anchors.len() => {
                            let v = &anchors[i - 1];
                            (
                                inodes.ino_of(&NodeKey::AnchorDir(v.name.clone())),
                                FileKind::Dir,
                                v.dir_name.clone(),
                            )
                        }
                        i => {
                            let n = &extra[i - 1 - anchors.len()];
                            (
                                inodes.ino_of(&NodeKey::AnchorDir(n.clone())),
                                FileKind::Dir,
                                names::escape(n),
                            )
                        }
                    }),
                )
            }
            NodeKey::AnchorDir(name) => {
                let v = self.readable_view(&snap, name)?;
                let names = self.opts.time_names;
                let inodes = &inodes;
                let has_latest = usize::from(v.latest().is_some());
                // Files being written under a name history already shows are listed
                // once, as history; names that closed files keep for the version they
                // became answer lookups but are not listed.
                let staged: Vec<_> = self
                    .writes
                    .in_anchor(name)
                    .into_iter()
                    .filter(|(id, _)| !self.writes.is_settled(*id))
                    .filter(|(_, n)| {
                        let shown_as_latest = n == LATEST && has_latest == 1;
                        let shown_as_version =
                            names::parse_version_name(n).is_some_and(|at| v.version(at).is_some());
                        !shown_as_latest && !shown_as_version
                    })
                    .collect();
                (
                    v.versions.len() + has_latest + staged.len(),
                    Box::new(move |i| match v.versions.get(i) {
                        Some(a) => (
                            inodes.ino_of(&NodeKey::Version(name.clone(), a.at)),
                            FileKind::File,
                            names.format(a.at).into_bytes(),
                        ),
                        None if i == v.versions.len() && has_latest == 1 => (
                            inodes.ino_of(&NodeKey::Latest(name.clone())),
                            FileKind::Symlink,
                            LATEST.to_vec(),
                        ),
                        None => {
                            let (id, n) = &staged[i - v.versions.len() - has_latest];
                            (
                                inodes.ino_of(&NodeKey::Staged(*id)),
                                FileKind::File,
                                n.clone(),
                            )
                        }
                    }),
                )
            }
            NodeKey::Meta => (
                2,
                Box::new(|i| match i {
                    0 => (
                        inodes.ino_of(&NodeKey::AtDir),
                        FileKind::Dir,
                        b"at".to_vec(),
                    ),
                    _ => (
                        inodes.ino_of(&NodeKey::RefsDir),
                        FileKind::Dir,
                        b"refs".to_vec(),
                    ),
                }),
            ),
            NodeKey::AtDir | NodeKey::RefsDir => (0, Box::new(|_| (0, FileKind::Dir, Vec::new()))),
            NodeKey::AtTime(t) => {
                let t = *t;
                let present: Vec<&Arc<AnchorView>> = snap
                    .anchors()
                    .iter()
                    .filter(|v| v.as_of(t).is_some())
                    .collect();
                let inodes = &inodes;
                (
                    present.len(),
                    Box::new(move |i| {
                        let v = present[i];
                        (
                            inodes.ino_of(&NodeKey::AtFile(t, v.name.clone())),
                            FileKind::File,
                            v.dir_name.clone(),
                        )
                    }),
                )
            }
            _ => return Err(FsError::NotDir),
        };
        let (count, entry) = own;
        let mut out = Vec::new();
        for i in (offset as usize)..(2 + count) {
            if out.len() >= max {
                break;
            }
            let (ino, kind, name) = match i {
                0 => (ino, FileKind::Dir, b".".to_vec()),
                1 => (parent, FileKind::Dir, b"..".to_vec()),
                _ => entry(i - 2),
            };
            out.push(DirEntry {
                ino,
                next: i as u64 + 1,
                kind,
                name,
            });
        }
        Ok(out)
    }

    /// [`open_as`](Self::open_as) for `caller` (`(write, truncate, append)`): with
    /// access checks on ([`FsOptions::check_access`]), opening a version or
    /// `latest` for writing adds a version to its anchor directory, so it needs
    /// write permission on that directory as shown (the kernel checks only the
    /// file's own mode). `caller` is `None` when nobody is to be checked.
    pub fn open_checked(
        &self,
        ino: u64,
        (write, truncate, append): (bool, bool, bool),
        opener: Option<u64>,
        caller: Option<&Caller>,
    ) -> Result<Opened, FsError> {
        if let (true, true, Some(caller)) = (self.opts.check_access, write, caller) {
            let anchor = match self.key_of(ino)? {
                NodeKey::Version(anchor, _) => Some(anchor),
                NodeKey::Staged(id) => self.writes.get(id).map(|f| f.lock().anchor.clone()),
                _ => None,
            };
            if let Some(anchor) = anchor {
                let dir = self.inodes.lock().ino_of(&NodeKey::AnchorDir(anchor));
                let (attr, _) = self.attr_of(&self.key_of(dir)?, dir)?;
                if !caller.may_write(&attr) {
                    return Err(FsError::PermissionDenied);
                }
            }
        }
        self.open_as(ino, write, truncate, append, opener)
    }

    /// Opens `ino`; `write` asks for writing (a new version, seeded with the old
    /// content unless `truncate`).
    pub fn open(&self, ino: u64, write: bool, truncate: bool) -> Result<Opened, FsError> {
        self.open_as(ino, write, truncate, false, None)
    }

    /// [`open`](Self::open) by the thread `opener`, `append` telling an appending
    /// open. A truncating or appending open of a version for writing never touches
    /// the version's inode: the open makes a new file of the writer's own and fails
    /// with [`FsError::LookUpAgain`]; the opener's next lookups of that name find
    /// the new file, which its next open gets. (The kernel retries an open that
    /// failed with `ESTALE` once, looking every name up again.) An in-place open
    /// (neither truncating nor appending: `O_RDWR`, an editor that checks the inode
    /// it opened is the one it stat'ed, as vim does) writes through the version's
    /// own inode, which then shows the writer's file (size, times) until its last
    /// close, so `fstat`, `SEEK_END`, `ftruncate` and `mmap` follow the writer;
    /// readers of the version meanwhile read around the page cache and get the
    /// version's bytes. An in-place open moves to a new file too when readers have
    /// the version open through the page cache (they would see the writer's size
    /// and could be served cached pages of it) or another writer is in place on it.
    /// Should the retry open the version again, it is written over in place.
    pub fn open_as(
        &self,
        ino: u64,
        write: bool,
        truncate: bool,
        append: bool,
        opener: Option<u64>,
    ) -> Result<Opened, FsError> {
        let key = self.key_of(ino)?;
        if write || matches!(key, NodeKey::Staged(_)) {
            if let (Some(opener), NodeKey::Version(..)) = (opener, &key) {
                let move_off = truncate
                    || append
                    || self.has_cached_readers(ino)
                    || self.writes.in_place_writer(ino).is_some();
                if write && move_off && !self.read_only {
                    return self.move_write(opener, &key, truncate);
                }
            }
            if let (false, NodeKey::Staged(id)) = (write, &key) {
                if let Some(opened) = self.open_settled(*id)? {
                    return Ok(opened);
                }
            }
            return self.open_for_write(&key, ino, truncate && write);
        }
        let snap = self.snapshot();
        let r = match &key {
            NodeKey::Version(name, at) => {
                snap.by_name(name)
                    .and_then(|v| v.version(*at))
                    .ok_or(FsError::NotFound)?
                    .r
            }
            NodeKey::AtFile(t, name) => {
                snap.by_name(name)
                    .and_then(|v| v.as_of(*t))
                    .ok_or(FsError::NotFound)?
                    .r
            }
            NodeKey::RefFile(r) => *r,
            NodeKey::Latest(_) => return Err(FsError::NotFound),
            _ => return Err(FsError::IsDir),
        };
        // The size the kernel was given may have come from the size log: check it
        // against the content's own.
        // (Working the kind out records the true size.)
        let told = self.known_size(&r);
        let (kind, size) = self.content_meta(&r)?;
        let misreported = match told {
            Some(t) if t != size => {
                log::warn!("the size log said {t} bytes for {r}, which has {size}; corrected");
                self.invalidate(Invalidations { inodes: vec![ino] });
                true
            }
            _ => false,
        };
        let reader = content::open(self.store.clone(), r, kind).map_err(|e| self.damaged(&r, e))?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        // A version written over in place (see `open_as`) has the writer's size in
        // the kernel while the writer is open, and may have the writer's pages in
        // the kernel's cache: every read of that version opened since goes around
        // the page cache, so it gets exactly the version's bytes.
        // A read bounded by a wrong size would be cut short or padded: around the
        // page cache, it gets exactly the content.
        let direct_io = misreported
            || match &key {
                NodeKey::Version(..) => self.writes.was_written_over(ino),
                _ => false,
            };
        // Versions and refs never change: let the page cache outlive the open.
        let keep_cache = !direct_io && matches!(key, NodeKey::Version(..) | NodeKey::RefFile(_));
        if !direct_io && matches!(key, NodeKey::Version(..)) {
            self.cached_reads.lock().insert(fh, ino);
        }
        let fill = keep_cache.then_some(ino);
        self.handles
            .lock()
            .insert(fh, Arc::new(ReadHandle::handle(reader, fill)));
        Ok(Opened {
            fh,
            keep_cache,
            direct_io,
        })
    }

    /// A listing with each entry's attributes (the kernel's READDIRPLUS), so listing
    /// and `stat`ing a directory needs no lookup per entry. Calls `add` for each
    /// entry in order with its attributes (`None` for `.` and `..`); `add` returns
    /// true when its buffer is full and the entry was not taken. Every other entry
    /// taken counts as one kernel lookup. An entry whose attributes cannot be had (a
    /// damaged version) gets placeholder attributes valid for no time, so the kernel
    /// asks again and gets the error. The contents' sizes are fetched on several
    /// threads at once.
    pub fn readdir_plus(
        &self,
        ino: u64,
        offset: u64,
        max: usize,
        add: &mut dyn FnMut(&DirEntry, Option<&Entry>) -> bool,
    ) -> Result<(), FsError> {
        let pkey = self.key_of(ino)?;
        let listed = self.readdir(ino, offset, max)?;
        let keys: Vec<Option<NodeKey>> = listed
            .iter()
            .map(|d| {
                if d.name == b"." || d.name == b".." {
                    None
                } else {
                    self.child_key(&pkey, &d.name).ok()
                }
            })
            .collect();
        self.prefetch_metas(&keys);
        for (i, (d, key)) in listed.iter().zip(keys).enumerate() {
            let Some(key) = key else {
                let dots = i < 2 && offset < 2;
                if dots && add(d, None) {
                    break;
                }
                // Otherwise gone since the listing was made: left out.
                continue;
            };
            let entry = match self.attr_of(&key, d.ino) {
                Ok((attr, ttl)) if attr.ino == d.ino => Entry { attr, ttl },
                _ => Entry {
                    attr: Attr {
                        ino: d.ino,
                        size: 0,
                        blocks: 0,
                        mtime: SystemTime::UNIX_EPOCH,
                        kind: d.kind,
                        perm: 0,
                        nlink: 1,
                        uid: self.opts.uid,
                        gid: self.opts.gid,
                    },
                    ttl: Duration::ZERO,
                },
            };
            if add(d, Some(&entry)) {
                break;
            }
            self.inodes.lock().lookup(&key);
        }
        Ok(())
    }

    /// Loads the kind and size of the content behind each version key that is not
    /// cached yet, on up to [`META_FETCHES`] threads.
    fn prefetch_metas(&self, keys: &[Option<NodeKey>]) {
        let snap = self.snapshot();
        let refs: Vec<Ref> = keys
            .iter()
            .flatten()
            .filter_map(|k| match k {
                NodeKey::Version(name, at) => snap.by_name(name).and_then(|v| v.version(*at)),
                NodeKey::AtFile(t, name) => snap.by_name(name).and_then(|v| v.as_of(*t)),
                _ => None,
            })
            .map(|a| a.r)
            .filter(|r| self.known_size(r).is_none())
            .collect();
        if refs.len() < 2 {
            return;
        }
        let lanes = refs.len().min(META_FETCHES);
        std::thread::scope(|scope| {
            for lane in 0..lanes {
                let refs = &refs;
                scope.spawn(move || {
                    for r in refs.iter().skip(lane).step_by(lanes) {
                        // Errors are reported when the entry itself is asked for.
                        let _ = self.content_meta(r);
                    }
                });
            }
        });
    }

    /// Marks write handle `fh` as opened with `O_APPEND`: its writes go to the end of
    /// the file, whatever offset the kernel gives.
    pub fn set_append(&self, fh: u64) {
        if matches!(
            self.handles.lock().get(&fh).map(|h| &**h),
            Some(Handle::Write(_))
        ) {
            self.writes.set_appending(fh, true);
        }
    }

    /// Records the process that opened write handle `fh`: only its own closes of
    /// that handle count as the writer closing it (a forked child's exec closes
    /// inherited descriptors too).
    pub fn set_opener(&self, fh: u64, process: u64) {
        if matches!(
            self.handles.lock().get(&fh).map(|h| &**h),
            Some(Handle::Write(_))
        ) {
            self.writes.set_opener(fh, Some(process));
        }
    }

    /// Reads up to `size` bytes at `offset` from open file `fh`.
    pub fn read(&self, fh: u64, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
        let h = self
            .handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)?;
        let (reader, fill) = match &*h {
            Handle::Read(r) => (&r.reader, r.fill_pages_of),
            Handle::Write(id) => return self.read_staged(*id, offset, size),
        };
        if let (Some(ino), Some(filler), true) =
            (fill, self.page_filler.get(), size <= FILL_READS_UP_TO)
        {
            let chunks = reader
                .chunks_covering(offset, size)
                .map_err(|e| self.damaged(&reader.root(), ContentError::Split(e)))?;
            if !chunks.is_empty() {
                let end = (offset + size as u64).min(reader.size());
                let mut out = Vec::with_capacity((end - offset) as usize);
                for (start, chunk) in &chunks {
                    let from = offset.max(*start) - start;
                    let to = end.min(start + chunk.len() as u64) - start;
                    out.extend_from_slice(&chunk[from as usize..to as usize]);
                }
                for (start, chunk) in chunks {
                    filler(ino, start, chunk);
                }
                return Ok(out);
            }
        }
        let avail = reader.size().saturating_sub(offset).min(size as u64) as usize;
        let mut buf = vec![0u8; avail];
        let mut done = 0;
        while done < avail {
            let n = reader
                .read_at(offset + done as u64, &mut buf[done..])
                .map_err(|e| self.damaged(&reader.root(), ContentError::Split(e)))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Whether version inode `ino` has readers open through the page cache.
    fn has_cached_readers(&self, ino: u64) -> bool {
        self.cached_reads.lock().values().any(|&i| i == ino)
    }

    /// Closes open file `fh` (after its last flush).
    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        let h = self.handles.lock().remove(&fh).ok_or(FsError::BadHandle)?;
        self.cached_reads.lock().remove(&fh);
        self.writes.set_appending(fh, false);
        self.writes.set_opener(fh, None);
        if let Handle::Write(id) = &*h {
            self.release_write(*id, fh);
        }
        Ok(())
    }

    /// The value of extended attribute `name` of `ino`. Only the `user.` namespace
    /// exists here: a name in any other (`security.selinux`, the POSIX ACLs of
    /// `system.`) is not supported (EOPNOTSUPP), which tells `ls -l` after the first
    /// file of a listing to stop asking, instead of two round trips per entry.
    pub fn getxattr(&self, ino: u64, name: &str) -> Result<Vec<u8>, FsError> {
        let version = self.version_of(ino)?;
        if !name.starts_with(XATTR_USER_PREFIX) {
            return Err(FsError::NotSupported);
        }
        let (r, at) = version.ok_or(FsError::NoAttr)?;
        match name {
            XATTR_REF => Ok(r.to_hex().into_bytes()),
            XATTR_AT => Ok(at.to_rfc3339().into_bytes()),
            _ => Err(FsError::NoAttr),
        }
    }

    /// Setting or removing extended attributes is not supported: the two shown are
    /// derived from the version.
    pub fn setxattr(&self, ino: u64) -> Result<(), FsError> {
        self.key_of(ino).map(|_| ())?;
        Err(FsError::NotSupported)
    }

    /// The names of `ino`'s extended attributes, each NUL-terminated.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        Ok(match self.version_of(ino)? {
            Some(_) => format!("{XATTR_REF}\0{XATTR_AT}\0").into_bytes(),
            None => Vec::new(),
        })
    }

    /// The ref and time behind a file, if it is a version (or time travel to one).
    fn version_of(&self, ino: u64) -> Result<Option<(Ref, Timestamp)>, FsError> {
        let snap = self.snapshot();
        Ok(match self.key_of(ino)? {
            NodeKey::Version(name, at) => snap
                .by_name(&name)
                .and_then(|v| v.version(at))
                .map(|a| (a.r, a.at)),
            NodeKey::AtFile(t, name) => snap
                .by_name(&name)
                .and_then(|v| v.as_of(t))
                .map(|a| (a.r, a.at)),
            _ => None,
        })
    }

    /// Filesystem figures: the backing filesystem's, for a store on disk.
    pub fn statfs(&self) -> StatFs {
        let mut s = StatFs {
            bsize: 4096,
            frsize: 4096,
            namelen: names::NAME_MAX as u32,
            ..StatFs::default()
        };
        if let Some(path) = &self.opts.store_path {
            if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
                let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
                // SAFETY: `c` is a valid C string and `v` a properly sized out-parameter.
                if unsafe { libc::statvfs(c.as_ptr(), &mut v) } == 0 {
                    s.blocks = v.f_blocks;
                    s.bfree = v.f_bfree;
                    s.bavail = v.f_bavail;
                    s.files = v.f_files;
                    s.ffree = v.f_ffree;
                    s.bsize = v.f_bsize as u32;
                    s.frsize = v.f_frsize as u32;
                }
            }
        }
        s
    }
}
