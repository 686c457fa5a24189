//! Open files: the handle table, handing out file handle numbers, and what the
//! mount remembers per handle (reads through the page cache, appending, the
//! process that opened it).
//!
//! Locks, each held only for one map operation and never across store I/O or
//! another lock: `table`, `cached_reads`, `appending`, `openers`. They come last in
//! the core's lock order (see the [module doc of `fs`](super)): `appending` is
//! taken while a staged file is locked.
//!
//! The locks come from [`sync`](super::sync): `parking_lot`'s, or the model
//! checker's with the feature `model-check`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::sync::Mutex;

use super::ids::{Fh, Ino, ProcessId, StagedId};
use super::{FsError, SharedStore};
use crate::split::SplitReader;

/// An open file: a reader of immutable content, or a file being written.
pub(crate) enum Handle {
    /// Reading a version, a time-travel file or a ref.
    Read(ReadHandle),
    /// Writing the staged file with this id.
    Write(StagedId),
}

/// A reader of immutable content.
pub(crate) struct ReadHandle {
    /// The content read.
    pub reader: Box<SplitReader<SharedStore>>,
    /// The inode read, if its pages may be filled ahead of reads (content that
    /// never changes, read through the page cache).
    pub fill_pages_of: Option<Ino>,
    /// The version inode read through the page cache, if it is one.
    pub cached_version: Option<Ino>,
}

/// The open files of a mount.
pub(crate) struct Handles {
    table: Mutex<HashMap<Fh, Arc<Handle>>>,
    /// Open read handles of versions that read through the page cache: handle to
    /// the version's inode.
    cached_reads: Mutex<HashMap<Fh, Ino>>,
    next_fh: AtomicU64,
    /// Handles opened with `O_APPEND`: each write lands at the file's end.
    appending: Mutex<HashSet<Fh>>,
    /// The process that opened each write handle, where known.
    openers: Mutex<HashMap<Fh, ProcessId>>,
}

impl Default for Handles {
    fn default() -> Self {
        Handles {
            table: Mutex::new(HashMap::new()),
            cached_reads: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            appending: Mutex::new(HashSet::new()),
            openers: Mutex::new(HashMap::new()),
        }
    }
}

impl Handles {
    /// A new handle reading `reader`; `fill_pages_of` as in [`ReadHandle`];
    /// `cached_version`, the version inode it reads through the page cache, if so.
    pub fn open_read(
        &self,
        reader: SplitReader<SharedStore>,
        fill_pages_of: Option<Ino>,
        cached_version: Option<Ino>,
    ) -> Fh {
        let fh = Fh(self.next_fh.fetch_add(1, Ordering::Relaxed));
        if let Some(ino) = cached_version {
            self.cached_reads.lock().insert(fh, ino);
        }
        let h = Handle::Read(ReadHandle {
            reader: Box::new(reader),
            fill_pages_of,
            cached_version,
        });
        self.table.lock().insert(fh, Arc::new(h));
        fh
    }

    /// A new handle writing staged file `id`.
    pub fn open_write(&self, id: StagedId) -> Fh {
        let fh = Fh(self.next_fh.fetch_add(1, Ordering::Relaxed));
        self.table.lock().insert(fh, Arc::new(Handle::Write(id)));
        fh
    }

    /// Open handle `fh`.
    pub fn get(&self, fh: Fh) -> Result<Arc<Handle>, FsError> {
        self.table
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// The staged file written through handle `fh`: `Ok(None)` for a reading
    /// handle.
    pub fn staged_of(&self, fh: Fh) -> Result<Option<StagedId>, FsError> {
        match self.table.lock().get(&fh).map(|h| &**h) {
            Some(Handle::Write(id)) => Ok(Some(*id)),
            Some(Handle::Read(_)) => Ok(None),
            None => Err(FsError::BadHandle),
        }
    }

    /// The staged file written through handle `fh`; a reading handle is a bad one.
    pub fn write_id(&self, fh: Fh) -> Result<StagedId, FsError> {
        self.staged_of(fh)?.ok_or(FsError::BadHandle)
    }

    /// Closes handle `fh`, forgetting all that was remembered of it.
    pub fn remove(&self, fh: Fh) -> Result<Arc<Handle>, FsError> {
        let h = self.table.lock().remove(&fh).ok_or(FsError::BadHandle)?;
        self.cached_reads.lock().remove(&fh);
        self.appending.lock().remove(&fh);
        self.openers.lock().remove(&fh);
        Ok(h)
    }

    /// Whether version inode `ino` has readers open through the page cache.
    pub fn has_cached_readers(&self, ino: Ino) -> bool {
        self.cached_reads.lock().values().any(|&i| i == ino)
    }

    /// How many handles read version inode `ino` through the page cache.
    pub fn cached_readers_of(&self, ino: Ino) -> usize {
        self.cached_reads
            .lock()
            .values()
            .filter(|&&i| i == ino)
            .count()
    }

    /// Marks handle `fh` as appending (if it writes).
    pub fn set_append(&self, fh: Fh) {
        if let Ok(Some(_)) = self.staged_of(fh) {
            self.appending.lock().insert(fh);
        }
    }

    /// Whether handle `fh` appends.
    pub fn is_appending(&self, fh: Fh) -> bool {
        self.appending.lock().contains(&fh)
    }

    /// Records the process that opened handle `fh` (if it writes).
    pub fn set_opener(&self, fh: Fh, process: ProcessId) {
        if let Ok(Some(_)) = self.staged_of(fh) {
            self.openers.lock().insert(fh, process);
        }
    }

    /// The process that opened handle `fh`, if known.
    pub fn opener_of(&self, fh: Fh) -> Option<ProcessId> {
        self.openers.lock().get(&fh).copied()
    }
}
