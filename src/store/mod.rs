//! Blob stores: the traits every backend implements, and the backends.
//!
//! A [`Getter`] reads blobs by ref and lists refs in order; a [`Store`] also puts.
//! [`AnchorGetter`] and [`AnchorStore`] add the one mutable cell of a store, the
//! current anchor map ref, updated by compare-and-swap. Nothing here knows what an
//! anchor is: that is the `anchor` module's business.

pub mod faulty;
pub mod file;
pub mod lru;
pub mod mem;
mod sys;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::blob::{Blob, Ref};

/// The largest blob a store holds: 256 MiB. No chunk or node a writer of the format
/// makes comes near it (chunks are cut where a 16-bit checksum hits, so the mean is
/// 64 KiB; nodes hold at most 128 members); only a raw blob put whole can be larger,
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
    /// The anchor map ref moved while an update was being computed.
    #[error("update conflict")]
    UpdateConflict,
    /// The store cannot keep anchors.
    #[error("not anchor store")]
    NotAnchorStore,
    /// The anchor map ref file holds something other than 32 bytes.
    #[error("anchor map ref in {path} is damaged: {len} bytes, want 32")]
    BadAnchorMapRef {
        /// The file holding it.
        path: PathBuf,
        /// How many bytes it has.
        len: usize,
    },
    /// A directory that is not a store (or cannot become one).
    #[error("{path} is not an anchorfs store: {why}")]
    NotAStore {
        /// The directory.
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
    /// A blob larger than any blob the store holds ([`MAX_BLOB_SIZE`]).
    #[error("a blob of {size} bytes is larger than the {max} bytes a blob can have")]
    BlobTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// An update callback stopped on an error of its own (kept by the caller).
    #[error("update aborted by its callback")]
    Aborted,
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

    /// Whether this is "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }

    /// Whether this says a blob cannot be had whole and true: its bytes do not
    /// match its ref, or its file was refused.
    pub fn is_damage(&self) -> bool {
        matches!(self, StoreError::Damaged(_) | StoreError::Refused { .. })
    }

    /// The OS error number behind an I/O error, if any (ENOSPC, EIO, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        let StoreError::Io { source, .. } = self else {
            return None;
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
}

/// A getter that also knows the current anchor map ref.
pub trait AnchorGetter: Getter {
    /// The current anchor map ref; [`StoreError::NoAnchorMap`] if there is none.
    fn anchor_map_ref(&self) -> Result<Ref, StoreError>;
}

/// A store whose anchor map ref can be updated by compare-and-swap.
pub trait AnchorStore: Store + AnchorGetter {
    /// Calls `f` with the current anchor map ref (zero if none) and installs the ref
    /// it returns, only if the current ref is still the one handed to `f`; otherwise
    /// fails with [`StoreError::UpdateConflict`]. Every blob put before the new ref
    /// is installed is made durable first. Returns the installed ref.
    fn update_anchor_map(
        &self,
        f: &mut dyn FnMut(Ref) -> Result<Ref, StoreError>,
    ) -> Result<Ref, StoreError>;
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

impl<T: Getter + ?Sized> Getter for std::sync::Arc<T> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        (**self).get(r)
    }
    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        (**self).get_at_most(r, max)
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
}

impl<T: AnchorGetter + ?Sized> AnchorGetter for std::sync::Arc<T> {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        (**self).anchor_map_ref()
    }
}

impl<T: AnchorStore + ?Sized> AnchorStore for std::sync::Arc<T> {
    fn update_anchor_map(
        &self,
        f: &mut dyn FnMut(Ref) -> Result<Ref, StoreError>,
    ) -> Result<Ref, StoreError> {
        (**self).update_anchor_map(f)
    }
}
