//! Blob stores: the traits every backend implements, the backends, and the one
//! opener that turns a store spec into a store.
//!
//! A [`Getter`] reads blobs by ref and lists refs in order; a [`Store`] also puts.
//! [`AnchorGetter`] and [`AnchorStore`] add the one mutable cell of a store, the
//! current anchor map ref, changed only by compare-and-swap. Nothing here knows
//! what an anchor is: that is the `anchor` module's business.
//!
//! # Adding a backend
//!
//! A backend is one file in this directory and one line in the table of
//! [`open`] (`BACKENDS` in `open.rs`), which maps its scheme (`file`, `mem`, ...)
//! to a function taking the rest of the spec and an [`OpenMode`]. The backend
//! implements:
//!
//! - [`Getter`] requires `get` and `list_refs`. `get_at_most`, `check`,
//!   `contains`, `get_many` and `blob_size` have defaults built on `get`; a
//!   backend overrides them where it can do better (a size without the bytes, a
//!   batched fetch). `identity`, `local_dir` and `capacity` describe the store to
//!   the mount and the command line and default to "none".
//! - [`Store`] requires `put`; `put_blob`, `put_many` and `sync` have defaults.
//! - [`AnchorGetter`] requires `anchor_map_ref`; `watch` (a [`MapWatch`] that
//!   wakes the mount's poller when another writer moved the map) defaults to
//!   none, so the mount only polls.
//! - [`AnchorStore`] requires `swap_anchor_map`, the compare-and-swap;
//!   `update_anchor_map` is provided on top of it.
//! - [`DeletingStore`] requires `delete` and `written_at`, for gc.
//! - The store's settings ([`settings`]): [`Getter::recorded_settings`] (default:
//!   none recorded, so Go's) and [`Store::record_settings`] (default: refused). A
//!   backend that can hold a record keeps it beside Go's data, where Go does not
//!   look, and [`open`] records [`StoreSettings::NEW_STORE`] in a store it created.
//!
//! Errors are [`StoreError`]s: [`StoreError::NotFound`] for an absent blob,
//! [`StoreError::Damaged`] for bytes that do not hash to their ref (use
//! [`verified`]), [`StoreError::Conflict`] for a lost swap, and for a failure of
//! the backend itself (a lost connection, a timeout, a refused query)
//! [`StoreError::Backend`], saying whether trying again may help.
//!
//! # What the swap guarantees
//!
//! `swap_anchor_map(old, new)` installs `new` as the anchor map ref only if the
//! current one is `old` (`None`: there is no map yet), atomically with respect to
//! every other writer of the store, in this process or any other, on this host or
//! any other that shares the store. If the current ref is anything else it changes
//! nothing and fails with [`StoreError::Conflict`], and only then: a failure that
//! leaves the outcome unknown is another error. Before `new` becomes visible to
//! any reader, every blob whose put returned before the call is durable, so a map
//! never reaches a blob a crash can lose. Readers never wait for writers and see
//! either the old ref or the new one. The retrying is not the backend's business:
//! the one loop that retries a lost swap is `anchor::update`.

pub mod disk_cache;
pub mod faulty;
pub mod file;
pub mod lru;
pub mod mem;
mod open;
pub mod pg;
mod read_ahead;
pub mod settings;
mod sys;
pub mod watch;

pub use open::{create, open, OpenMode, Opened};
pub use settings::{Chunking, SettingsError, StoreSettings};
pub use watch::{ChangeSignal, MapWatch};

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::blob::{Blob, Ref};

/// The largest blob a store holds: 256 MiB. No chunk or node a writer of the format
/// makes comes near it (chunks are cut where a checksum of at most 22 bits hits, so
/// the mean is at most 4 MiB: see [`settings::MAX_CHUNK_BITS`]; nodes hold at most
/// 128 members); only a raw blob put whole can be larger,
/// and the file store refuses to write one, or to read a file larger than this
/// without reading it (a sparse file or a device in place of a blob never costs
/// more memory than this).
pub const MAX_BLOB_SIZE: u64 = 256 << 20;

/// Why a file store refused one of its own files without following, reading or
/// writing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A symbolic link (the store never follows one out of its directory).
    Symlink,
    /// Another kind of file than the store keeps there (a FIFO, a device, a
    /// directory in place of a file, a file in place of a directory).
    WrongType {
        /// What it is ("a FIFO").
        found: &'static str,
        /// What belongs there ("a regular file").
        want: &'static str,
    },
    /// A blob file larger than the blob can be.
    TooLarge {
        /// Its size in bytes.
        size: u64,
        /// The most it may have: what its reader expects, or [`MAX_BLOB_SIZE`].
        max: u64,
    },
    /// A file that changed size while it was read.
    Changed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Symlink => write!(f, "it is a symbolic link"),
            Refusal::WrongType { found, want } => write!(f, "it is {found}, not {want}"),
            Refusal::TooLarge { size, max } => {
                write!(f, "it has {size} bytes, more than the {max} it can have")
            }
            Refusal::Changed => write!(f, "it changed while it was read"),
        }
    }
}

/// Errors of the blob stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No blob has this ref.
    #[error("blob {0} not found")]
    NotFound(Ref),
    /// The stored bytes do not hash to their ref.
    #[error("blob {0} is damaged: its bytes do not match its ref")]
    Damaged(Ref),
    /// The store has no anchor map yet.
    #[error("no anchor map")]
    NoAnchorMap,
    /// A compare-and-swap of the anchor map ref lost: the current ref was not the
    /// one the caller expected. Nothing was changed.
    #[error("update conflict")]
    Conflict,
    /// The anchor map ref file holds something other than 32 bytes.
    #[error("anchor map ref in {path} is damaged: {len} bytes, want 32")]
    BadAnchorMapRef {
        /// The file holding it.
        path: PathBuf,
        /// How many bytes it has.
        len: usize,
    },
    /// A directory or database that is not a store (or cannot become one): a
    /// database without the tables, or with tables of those names that differ.
    #[error("{path} is not an anchorfs store: {why}")]
    NotAStore {
        /// The directory, or the database's URL (without a password).
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The writers' lock stayed held (by a live writer) past the wait limit.
    #[error("the store lock {path} stayed held for {secs} s")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        secs: u64,
    },
    /// A file in a file store's directory that is not what the store keeps there
    /// (a symbolic link, a FIFO, a device, a blob file larger than its blob can be)
    /// was refused: not followed, not read, not written. A blob behind it counts as
    /// damaged ([`StoreError::is_damage`]).
    #[error("refused {path}: {why}")]
    Refused {
        /// The file, under the store's directory.
        path: PathBuf,
        /// What is wrong with it.
        why: Refusal,
    },
    /// The store's settings record ([`settings`]) is there but does not decode:
    /// writers cannot know how to write, so they refuse.
    #[error("the settings of store {store} are unreadable: {source}")]
    BadSettings {
        /// The store, or the file or table holding the record.
        store: String,
        /// What is wrong with the record.
        #[source]
        source: SettingsError,
    },
    /// A store is already there where one was to be created.
    #[error("{store} is already a store (its settings were chosen when it was created)")]
    AlreadyAStore {
        /// The store as messages name it.
        store: String,
    },
    /// The store cannot do what was asked (a store that keeps no settings).
    #[error("{0}")]
    Unsupported(String),
    /// A blob larger than any blob the store holds ([`MAX_BLOB_SIZE`]).
    #[error("a blob of {size} bytes is larger than the {max} bytes a blob can have")]
    BlobTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A store spec that names no store: an unknown scheme, an empty path.
    #[error("{why}")]
    BadSpec {
        /// The spec, or the part of it after the scheme that its backend was given.
        spec: String,
        /// What is wrong with it, naming the spec where it is not empty.
        why: String,
    },
    /// The backend itself failed (a connection lost or refused, a timeout, a
    /// query the server rejected), with whether the same call may succeed if
    /// tried again.
    #[error("{op}: {source}")]
    Backend {
        /// What failed, naming the blob or the object.
        op: String,
        /// Whether trying the call again may help (a lost connection, a timeout),
        /// as opposed to a failure that will repeat (bad credentials, a missing
        /// table).
        retryable: bool,
        /// The backend's own error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// An I/O error, with what was being done.
    #[error("{op}: {source}")]
    Io {
        /// What failed, naming the path or ref.
        op: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// An I/O error with context.
    pub fn io(op: impl Into<String>, source: io::Error) -> StoreError {
        StoreError::Io {
            op: op.into(),
            source,
        }
    }

    /// A failure of the backend itself, with whether a retry may help.
    pub fn backend(
        op: impl Into<String>,
        retryable: bool,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> StoreError {
        StoreError::Backend {
            op: op.into(),
            retryable,
            source: source.into(),
        }
    }

    /// Whether the same call may succeed if tried again: a backend failure that
    /// says so, or a writers' lock that stayed held. A [`StoreError::Conflict`] is
    /// not: the caller must recompute from the new state, not repeat the call.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::LockTimeout { .. } => true,
            _ => false,
        }
    }

    /// Whether this is "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }

    /// Whether this says a blob cannot be had whole and true: its bytes do not
    /// match its ref, or its file was refused.
    pub fn is_damage(&self) -> bool {
        matches!(self, StoreError::Damaged(_) | StoreError::Refused { .. })
    }

    /// The OS error number behind an I/O error, if any (ENOSPC, EIO, ...), also
    /// when a backend's error is an I/O error.
    pub fn raw_os_error(&self) -> Option<i32> {
        let source = match self {
            StoreError::Io { source, .. } => source,
            StoreError::Backend { source, .. } => source.downcast_ref::<io::Error>()?,
            _ => return None,
        };
        source.raw_os_error().or(match source.kind() {
            io::ErrorKind::StorageFull => Some(libc::ENOSPC),
            io::ErrorKind::QuotaExceeded => Some(libc::EDQUOT),
            io::ErrorKind::ReadOnlyFilesystem => Some(libc::EROFS),
            io::ErrorKind::PermissionDenied => Some(libc::EACCES),
            _ => None,
        })
    }
}

/// Reads blobs.
pub trait Getter: Send + Sync {
    /// The blob with this ref; [`StoreError::NotFound`] if absent,
    /// [`StoreError::Damaged`] if its bytes do not match the ref.
    fn get(&self, r: &Ref) -> Result<Blob, StoreError>;

    /// The blob with this ref, from a caller that knows it has at most `max` bytes
    /// (a split tree's chunk, whose span its node gives). A backend that reads blobs
    /// from files refuses one stored larger without reading it
    /// ([`StoreError::Refused`]); others return it as [`get`](Getter::get) does, so
    /// callers still check the length.
    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        let _ = max;
        self.get(r)
    }

    /// Reads blob `r` into the front of `out`, from a caller that knows it has at
    /// most `out.len()` bytes (a split tree's chunk, read straight into a request's
    /// buffer), checked against its ref, and returns its length; errors as
    /// [`get_at_most`](Getter::get_at_most). A longer blob that the backend does
    /// not refuse leaves `out` as it was and gives its length, so callers check
    /// it. On an error `out` may hold anything. The default gets the blob and
    /// copies it; a backend that reads files reads into `out`, so a large read
    /// allocates no buffer per chunk.
    fn get_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        let b = self.get_at_most(r, out.len() as u64)?;
        Ok(copy_blob_into(&b, out))
    }

    /// [`get_into`](Getter::get_into) for several blobs, one result each, in
    /// order. The default is one [`get_many`](Getter::get_many), so a store that
    /// [prefers batches](Getter::prefers_batches) fetches them in one call, and
    /// copies.
    fn get_many_into(&self, jobs: &mut [(Ref, &mut [u8])]) -> Vec<Result<usize, StoreError>> {
        let refs: Vec<Ref> = jobs.iter().map(|(r, _)| *r).collect();
        self.get_many(&refs)
            .into_iter()
            .zip(jobs.iter_mut())
            .map(|(got, (_, out))| got.map(|b| copy_blob_into(&b, out)))
            .collect()
    }

    /// Checks the blob against its ref without keeping it and returns its size;
    /// errors as [`get`](Getter::get). A backend that reads files hashes them as it
    /// reads, in a fixed amount of memory.
    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        self.get(r).map(|b| b.len() as u64)
    }

    /// Whether the store holds this ref (without reading it, where possible).
    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        match self.get(r) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Calls `f` with every ref greater than `after`, in ascending order, while it
    /// returns `Ok(true)`.
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// Several blobs at once; backends may fetch them in parallel.
    fn get_many(&self, refs: &[Ref]) -> Vec<Result<Blob, StoreError>> {
        refs.iter().map(|r| self.get(r)).collect()
    }

    /// A hint that these blobs will be read soon, in this order (a sequential
    /// reader's next chunks): a backend may start reading them in the background,
    /// into the kernel's page cache or a local cache, never into memory of its
    /// own. It returns at once and may drop the hint. The default does nothing.
    fn prefetch(&self, refs: &[Ref]) {
        let _ = refs;
    }

    /// Whether [`prefetch`](Getter::prefetch) does anything here, so that a
    /// reader finds the refs to hint only for a store that takes them. No by
    /// default.
    fn reads_ahead(&self) -> bool {
        false
    }

    /// Whether one [`get_many`](Getter::get_many) of many refs costs much less
    /// than as many gets: a store across a network, where each call is a round
    /// trip. Readers of many blobs then fetch them in batches. No by default.
    fn prefers_batches(&self) -> bool {
        false
    }

    /// The size of blob `r` as stored, without reading it where the backend can
    /// (the file store looks at its file); errors as [`get`](Getter::get). The
    /// default reads the blob.
    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        self.get(r).map(|b| b.len() as u64)
    }

    /// A name that every handle on this store gives and no handle on another
    /// store does (the file store's canonical directory, a server and database),
    /// so that `sync` does not take one store for two. `None` (the default): no
    /// other handle reaches this store (one in memory).
    fn identity(&self) -> Option<String> {
        None
    }

    /// A directory on this host that belongs to the store, where the mount keeps
    /// its logs of sizes and modes and its spool files, and whose permission bits
    /// bound the modes it shows. `None` (the default): the store has none, and
    /// those go to temporary files or nowhere.
    fn local_dir(&self) -> Option<&Path> {
        None
    }

    /// How much room the store has, for `statfs`. `None` (the default): not
    /// known, and `statfs` reports zeros.
    fn capacity(&self) -> Option<Capacity> {
        None
    }

    /// The settings recorded in the store ([`settings`]); `None` (the default)
    /// when it has none, as every store Go made: its writers then use Go's
    /// ([`StoreSettings::GO`]). A record that does not decode is
    /// [`StoreError::BadSettings`].
    fn recorded_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        Ok(None)
    }

    /// The settings every writer of the store uses: the recorded ones, or Go's.
    fn settings(&self) -> Result<StoreSettings, StoreError> {
        self.recorded_settings().map(StoreSettings::in_force)
    }
}

/// The room a store has, in the terms of `statvfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Total blocks, of `frsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks an unprivileged writer may use.
    pub bavail: u64,
    /// Total file slots (inodes).
    pub files: u64,
    /// Free file slots.
    pub ffree: u64,
    /// The preferred block size.
    pub bsize: u32,
    /// The fragment size, the unit of the block counts.
    pub frsize: u32,
}

/// Reads and writes blobs.
pub trait Store: Getter {
    /// Stores `blob`; returns its ref and whether it was newly added.
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError>;

    /// Stores a blob the caller hands over; backends that keep blobs in memory keep
    /// it without copying.
    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        self.put(&blob)
    }

    /// Several blobs at once.
    fn put_many(&self, blobs: &[&[u8]]) -> Result<Vec<(Ref, bool)>, StoreError> {
        blobs.iter().map(|b| self.put(b)).collect()
    }

    /// Makes every blob put so far durable. Stores that are not durable do nothing.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Records `settings` as the store's if it has none yet, durably, and
    /// atomically with respect to every other writer recording at once (one
    /// record wins, and all see it); a record already there is kept as it is.
    /// Returns the settings in force afterwards. The default refuses
    /// ([`StoreError::Unsupported`]): a store that cannot keep a record keeps
    /// Go's settings.
    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        let _ = settings;
        Err(StoreError::Unsupported(
            "this store cannot record settings".into(),
        ))
    }
}

/// A getter that also knows the current anchor map ref.
pub trait AnchorGetter: Getter {
    /// The current anchor map ref; [`StoreError::NoAnchorMap`] if there is none.
    fn anchor_map_ref(&self) -> Result<Ref, StoreError>;

    /// A new watch that wakes when the anchor map may have changed, from this
    /// process or any other (see [`watch`]); each call gives a watch of its own.
    /// `None` (the default): the store cannot tell, and is polled.
    fn watch(&self) -> Option<Box<dyn MapWatch>> {
        None
    }

    /// The anchor map ref as this process last saw it (read, or installed by a
    /// swap of its own; `Some(None)`: no map), for a store where reading it costs
    /// a round trip. Only a guess that may be stale: the first attempt of
    /// [`crate::anchor::update`] starts from it, and the compare-and-swap catches
    /// a stale one. `None` (the default): read the ref.
    fn known_map_ref(&self) -> Option<Option<Ref>> {
        None
    }
}

/// A store whose anchor map ref can be changed, by compare-and-swap only.
pub trait AnchorStore: Store + AnchorGetter {
    /// Installs `new` as the anchor map ref if the current one is `old` (`None`:
    /// the store has no map yet); otherwise changes nothing and fails with
    /// [`StoreError::Conflict`]. Every blob put before the call is durable before
    /// `new` is visible (see the module docs for the whole contract).
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError>;

    /// Puts `blobs` (the nodes an update made for `new`, each with its ref), then
    /// swaps as
    /// [`swap_anchor_map`](AnchorStore::swap_anchor_map) does: what `put_many`
    /// followed by the swap does, which is the default. A store across a network
    /// does both in one round trip, with the blobs in the swap's transaction. The
    /// blobs may be stored whatever the swap's outcome, as puts may.
    fn put_and_swap(
        &self,
        blobs: &[(Ref, Blob)],
        old: Option<Ref>,
        new: Ref,
    ) -> Result<(), StoreError> {
        if !blobs.is_empty() {
            let slices: Vec<&[u8]> = blobs.iter().map(|(_, b)| &b[..]).collect();
            self.put_many(&slices)?;
        }
        self.swap_anchor_map(old, new)
    }

    /// Go's `UpdateAnchorMap`: calls `f` with the current anchor map ref (zero if
    /// none) and installs the ref it returns by
    /// [`swap_anchor_map`](AnchorStore::swap_anchor_map), so it fails with [`StoreError::Conflict`] if
    /// another writer moved the ref meanwhile; an error of `f` is returned as is,
    /// with nothing changed. Returns the ref now installed. One attempt: callers
    /// that retry use `anchor::update`.
    fn update_anchor_map(
        &self,
        f: &mut dyn FnMut(Ref) -> Result<Ref, StoreError>,
    ) -> Result<Ref, StoreError> {
        let old = match self.anchor_map_ref() {
            Ok(r) => Some(r),
            Err(StoreError::NoAnchorMap) => None,
            Err(e) => return Err(e),
        };
        let base = old.unwrap_or(Ref::ZERO);
        let new = f(base)?;
        if new != base {
            self.swap_anchor_map(old, new)?;
        }
        Ok(new)
    }
}

/// A store that can delete blobs (for garbage collection).
pub trait DeletingStore: AnchorStore {
    /// Deletes the blob; returns whether it was there.
    fn delete(&self, r: &Ref) -> Result<bool, StoreError>;

    /// When the blob was last written, for gc's grace period.
    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError>;
}

/// Gets a blob and checks it against its ref: the one verification path every
/// backend that reads untrusted bytes uses.
pub fn verified(r: &Ref, data: Blob) -> Result<Blob, StoreError> {
    if Ref::of(&data) == *r {
        Ok(data)
    } else {
        log::error!("blob {r} is damaged: content does not match its ref");
        Err(StoreError::Damaged(*r))
    }
}

/// Copies blob `b` into the front of `out` if it fits, as [`Getter::get_into`]
/// does, and gives its length.
pub(crate) fn copy_blob_into(b: &[u8], out: &mut [u8]) -> usize {
    if let Some(dst) = out.get_mut(..b.len()) {
        dst.copy_from_slice(b);
    }
    b.len()
}

/// [`verified`] for bytes read into a caller's buffer: `Ok(())` if they are the
/// blob `r`.
pub fn verified_slice(r: &Ref, data: &[u8]) -> Result<(), StoreError> {
    if Ref::of(data) == *r {
        Ok(())
    } else {
        log::error!("blob {r} is damaged: content does not match its ref");
        Err(StoreError::Damaged(*r))
    }
}

/// Hashes `file` from where it stands, a piece at a time, reading at most one
/// byte past `len`, its expected size: the ref of what was read, and how many
/// bytes were (more than `len` for a file that grew).
pub(crate) fn hash_file(mut file: &std::fs::File, len: u64) -> io::Result<(Ref, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    const PIECE: usize = 1 << 20;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; usize::try_from(len).map_or(PIECE, |n| n.clamp(1, PIECE))];
    let mut seen = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        seen += n as u64;
        if seen > len {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok((Ref(h.finalize().into()), seen))
}

/// Fills `out` from the start of `file` and says whether that was all of it:
/// `Ok(false)` for a file shorter or longer than `out` (one that changed since
/// its size was read).
pub(crate) fn read_file_exactly(file: &std::fs::File, out: &mut [u8]) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < out.len() {
        match file.read_at(&mut out[done..], done as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut more = [0u8; 1];
    loop {
        match file.read_at(&mut more, done as u64) {
            Ok(n) => return Ok(n == 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl<T: Getter + ?Sized> Getter for std::sync::Arc<T> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        (**self).get(r)
    }
    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        (**self).get_at_most(r, max)
    }
    fn get_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        (**self).get_into(r, out)
    }
    fn get_many_into(&self, jobs: &mut [(Ref, &mut [u8])]) -> Vec<Result<usize, StoreError>> {
        (**self).get_many_into(jobs)
    }
    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        (**self).check(r)
    }
    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        (**self).contains(r)
    }
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        (**self).list_refs(after, f)
    }
    fn get_many(&self, refs: &[Ref]) -> Vec<Result<Blob, StoreError>> {
        (**self).get_many(refs)
    }
    fn prefers_batches(&self) -> bool {
        (**self).prefers_batches()
    }
    fn prefetch(&self, refs: &[Ref]) {
        (**self).prefetch(refs)
    }
    fn reads_ahead(&self) -> bool {
        (**self).reads_ahead()
    }
    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        (**self).blob_size(r)
    }
    fn identity(&self) -> Option<String> {
        (**self).identity()
    }
    fn local_dir(&self) -> Option<&Path> {
        (**self).local_dir()
    }
    fn capacity(&self) -> Option<Capacity> {
        (**self).capacity()
    }
    fn recorded_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        (**self).recorded_settings()
    }
    fn settings(&self) -> Result<StoreSettings, StoreError> {
        (**self).settings()
    }
}

impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        (**self).put(blob)
    }
    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        (**self).put_blob(blob)
    }
    fn put_many(&self, blobs: &[&[u8]]) -> Result<Vec<(Ref, bool)>, StoreError> {
        (**self).put_many(blobs)
    }
    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        (**self).record_settings(settings)
    }
}

impl<T: AnchorGetter + ?Sized> AnchorGetter for std::sync::Arc<T> {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        (**self).anchor_map_ref()
    }
    fn watch(&self) -> Option<Box<dyn MapWatch>> {
        (**self).watch()
    }
    fn known_map_ref(&self) -> Option<Option<Ref>> {
        (**self).known_map_ref()
    }
}

impl<T: AnchorStore + ?Sized> AnchorStore for std::sync::Arc<T> {
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
        (**self).swap_anchor_map(old, new)
    }
    fn put_and_swap(
        &self,
        blobs: &[(Ref, Blob)],
        old: Option<Ref>,
        new: Ref,
    ) -> Result<(), StoreError> {
        (**self).put_and_swap(blobs, old, new)
    }
    fn update_anchor_map(
        &self,
        f: &mut dyn FnMut(Ref) -> Result<Ref, StoreError>,
    ) -> Result<Ref, StoreError> {
        (**self).update_anchor_map(f)
    }
}

impl<T: DeletingStore + ?Sized> DeletingStore for std::sync::Arc<T> {
    fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
        (**self).delete(r)
    }
    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
        (**self).written_at(r)
    }
}
