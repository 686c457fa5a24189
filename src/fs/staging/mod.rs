//! Write staging: the files being written, until each becomes a version.
//!
//! A file being written is a [`StagedFile`], a state machine
//! `Staging → Committing → Committed | Failed(error)` (see [`CommitState`]); its
//! bytes are in memory, streaming into a split tree, in a spool file, or an overlay
//! over stored content (see [`data`]). This part also keeps which version inodes
//! are written over in place, the opens of versions that moved to a new file, the
//! files flushed before any write, and the names closed files keep for the
//! version they became (settled). Scratch names (editors' and rsync's temp files)
//! are staged like any file but become a version only when renamed onto a normal
//! name.
//!
//! Its locks come from [`sync`](super::sync): `parking_lot`'s, or the model
//! checker's with the feature `model-check` (tests/model_check_staging.rs runs
//! this part, the handle table and the group commit under `shuttle`).
//!
//! Locks, in order (see the [module doc of `fs`](super) for the whole order):
//! 1. a staged file's `gate`: one commit of that file at a time (held by the
//!    committing facade across the whole commit).
//! 2. `files`: held while a removed file is locked and its names dropped.
//! 3. a staged file's own lock: held while its bytes are written, read, stored or
//!    spooled (store and spool I/O), and while its name is checked in `by_name`.
//! 4. leaves, held for one operation: `by_name`, `flushed_unwritten`, `in_place`,
//!    `written_over`, `moved`, `settled`.

pub(crate) mod data;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::ids::{Fh, Ino, ProcessId, StagedId};
use super::inode::NodeKey;
use super::{FsError, SharedStore};
use crate::blob::Ref;
use crate::fs::sync::Mutex;
use crate::split::{ChunkStorers, SplitOptions};
use crate::timestamp::Timestamp;
use data::Data;

/// Whether a file name is scratch: never committed on its own. Besides dot files,
/// editors' backups, swap files and probe, SQLite's journals (`-journal`, `-wal`,
/// `-shm` after the database's name) are scratch: they are written, synced and
/// deleted around every transaction and would otherwise fill the history with
/// journal contents.
pub fn is_scratch(name: &[u8]) -> bool {
    name.starts_with(b".")
        || name.ends_with(b"~")
        || name.ends_with(b".swp")
        || name.ends_with(b".swx")
        || name == b"4913"
        || (name.len() > 8 && name.ends_with(b"-journal"))
        || (name.len() > 4 && (name.ends_with(b"-wal") || name.ends_with(b"-shm")))
}

/// The commit state of a staged file.
#[derive(Clone, Debug)]
pub enum CommitState {
    /// Being written; not yet a version.
    Staging,
    /// Its content is being stored and anchored.
    Committing,
    /// The version exists.
    Committed(Ref),
    /// The last commit failed with this error; nothing became visible.
    Failed(FsError),
}

/// A file being written in an anchor directory.
pub(crate) struct StagedFile {
    /// The anchor it will become a version of.
    pub(crate) anchor: Vec<u8>,
    /// Its name in the anchor directory.
    pub(crate) name: Vec<u8>,
    pub(crate) data: Data,
    /// Where the commit stands.
    pub(crate) state: CommitState,
    /// Changed since the last commit.
    pub(crate) dirty: bool,
    /// Written to (or truncated) at least once since it was opened (a closed file
    /// opened again starts over): an untouched file is committed at its last close
    /// rather than at every flush, so the flush of a duplicated descriptor closed
    /// before the first write (as a shell's `>` does) does not make an empty
    /// version.
    pub(crate) written: bool,
    /// Open handles.
    pub(crate) open: u32,
    /// Shown while staged (not kept in the version: see docs/SEMANTICS.md).
    pub(crate) mtime: SystemTime,
    /// Shown while staged.
    pub(crate) mode: u16,
    /// Unlinked while open: dropped at last close, never committed.
    pub(crate) unlinked: bool,
    /// Serializes commits of this file.
    pub(crate) gate: Arc<Mutex<()>>,
    /// The process that writes: a flush from any other process (a descriptor
    /// inherited by a forked child and closed at its exec) is not this writer's
    /// close, so it does not commit; the last close still does.
    pub(crate) writer_owner: Option<ProcessId>,
    /// The inode of the version this file was opened over (copy-on-write): the
    /// kernel's cached pages and size of that inode are dropped at the last close.
    pub(crate) over_version: Option<Ino>,
    /// A write or truncate failed with this error: part of the content is lost, so
    /// the file never becomes a version; every later call reports the error.
    pub(crate) broken: Option<FsError>,
    /// The time of the version its last commit made.
    pub(crate) committed_at: Option<Timestamp>,
    /// Open handles closed by a process (flushed) while nothing was written: when
    /// every open handle is here, only their releases are still to come.
    pub(crate) flushed: Vec<Fh>,
}

impl StagedFile {
    /// The size written so far.
    pub fn len(&self) -> u64 {
        match &self.data {
            Data::Small(b) => b.len() as u64,
            Data::Stream { len, .. } | Data::Spool { len, .. } | Data::Stored { len, .. } => *len,
            Data::Overlay(o) => o.len(),
        }
    }

    pub(crate) fn scratch(&self) -> bool {
        is_scratch(&self.name)
    }

    /// Committed and unchanged since: the name names the version it became.
    pub(crate) fn settled(&self) -> Option<Ref> {
        match &self.state {
            CommitState::Committed(r) if !self.dirty && self.broken.is_none() => Some(*r),
            _ => None,
        }
    }

    pub(crate) fn break_with(&mut self, e: &FsError) {
        self.broken = Some(e.clone());
        self.state = CommitState::Failed(e.clone());
        self.dirty = false;
    }

    /// The error every call reports once a write or truncate failed.
    pub(crate) fn broken_err(&self) -> Option<FsError> {
        self.broken.clone().map(|e| FsError::Broken(Box::new(e)))
    }
}

/// What the model-checking test (tests/model_check_staging.rs) sees of one staged
/// file, to check that none is leaked or dropped; only with the feature
/// `model-check`.
#[cfg(feature = "model-check")]
#[derive(Clone, Debug)]
pub struct StagedSummary {
    /// Its serial number.
    pub id: StagedId,
    /// The anchor it will become a version of.
    pub anchor: Vec<u8>,
    /// Its name in the anchor directory.
    pub name: Vec<u8>,
    /// Open handles.
    pub open: u32,
    /// Whether its name finds it.
    pub named: bool,
    /// Committed and unchanged since.
    pub settled: bool,
    /// Unlinked or displaced: never committed again.
    pub unlinked: bool,
    /// Whether its name is scratch.
    pub scratch: bool,
}

#[cfg(feature = "model-check")]
impl super::AnchorFs {
    /// Every staged file in the table, by id; only with the feature `model-check`.
    pub fn staged_files(&self) -> Vec<StagedSummary> {
        self.staging.summaries()
    }
}

/// A staged file's place: (anchor, file name).
type StagedName = (Vec<u8>, Vec<u8>);

/// The files being written in a mount, and where their bytes go.
pub(crate) struct Staging {
    files: Mutex<HashMap<StagedId, Arc<Mutex<StagedFile>>>>,
    pub(crate) by_name: Mutex<HashMap<StagedName, StagedId>>,
    next_id: AtomicU64,
    /// The store the bytes go to.
    store: SharedStore,
    /// Store the chunks of files written in order, for every writer.
    storers: Arc<ChunkStorers>,
    /// How every file is cut into chunks: the store's setting, read once at the
    /// mount (a store's setting never changes once recorded).
    split_opts: SplitOptions,
    /// Where spool files are made (else the system's temporary directory).
    spool_dir: Option<PathBuf>,
    /// Version inodes this mount has opened for writing through (copy-on-write in
    /// place): their kernel pages may hold a writer's bytes.
    pub(crate) written_over: Mutex<HashSet<Ino>>,
    /// Version inodes written over in place now: inode to the writer's staged file.
    pub(crate) in_place: Mutex<HashMap<Ino, StagedId>>,
    /// Opens of versions for writing that moved to a new file, until the opener
    /// opens it (see `AnchorFs::open_as`).
    pub(crate) moved: Mutex<Vec<MovedWrite>>,
    /// Files flushed before any write whose last close may still be on its way,
    /// by anchor (see `AnchorFs::settle_unwritten`).
    pub(crate) flushed_unwritten: Mutex<HashMap<Vec<u8>, Vec<StagedId>>>,
    /// Files closed after their commit that keep their name (oldest first), so a
    /// name written reads back; at most [`SETTLED_MAX`].
    pub(crate) settled: Mutex<VecDeque<StagedId>>,
}

/// How many closed, committed files keep their names in a mount; the oldest is
/// forgotten first.
pub const SETTLED_MAX: usize = 4096;

/// A version opened for writing by `opener`, whose open moved to staged file `id`.
pub(crate) struct MovedWrite {
    pub(crate) opener: u32,
    pub(crate) version: NodeKey,
    pub(crate) id: StagedId,
    pub(crate) since: Instant,
}

/// Whether two version keys are versions of the same anchor. The kernel's retry of
/// a moved open may reach another version than the first try (a commit moved
/// `latest` in between): it still gets the file the first try made.
pub(crate) fn same_anchor(a: &NodeKey, b: &NodeKey) -> bool {
    match (a, b) {
        (NodeKey::Version(x, _), NodeKey::Version(y, _)) => x == y,
        _ => a == b,
    }
}

/// How long a moved open waits for its opener to come back for the new file.
pub(crate) const MOVED_WRITE_LIFE: Duration = Duration::from_secs(5);

impl Staging {
    /// No files yet; bytes go to `store`, cut as `split_opts` say (the store's
    /// setting) and stored on `storers`, spooled in `spool_dir`.
    pub fn new(
        store: SharedStore,
        storers: Arc<ChunkStorers>,
        split_opts: SplitOptions,
        spool_dir: Option<PathBuf>,
    ) -> Staging {
        Staging {
            files: Mutex::new(HashMap::new()),
            by_name: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            store,
            storers,
            split_opts,
            spool_dir,
            written_over: Mutex::new(HashSet::new()),
            in_place: Mutex::new(HashMap::new()),
            moved: Mutex::new(Vec::new()),
            flushed_unwritten: Mutex::new(HashMap::new()),
            settled: Mutex::new(VecDeque::new()),
        }
    }

    /// Every staged file in the table, by id (see [`StagedSummary`]).
    #[cfg(feature = "model-check")]
    fn summaries(&self) -> Vec<StagedSummary> {
        let mut files: Vec<(StagedId, Arc<Mutex<StagedFile>>)> = self
            .files
            .lock()
            .iter()
            .map(|(id, f)| (*id, f.clone()))
            .collect();
        files.sort_by_key(|(id, _)| *id);
        files
            .into_iter()
            .map(|(id, f)| {
                let g = f.lock();
                StagedSummary {
                    id,
                    anchor: g.anchor.clone(),
                    name: g.name.clone(),
                    open: g.open,
                    named: self.is_named(id, &g.anchor, &g.name),
                    settled: g.settled().is_some(),
                    unlinked: g.unlinked,
                    scratch: g.scratch(),
                }
            })
            .collect()
    }

    /// The staged file `name` in anchor `anchor`.
    pub fn find(&self, anchor: &[u8], name: &[u8]) -> Option<StagedId> {
        self.by_name
            .lock()
            .get(&(anchor.to_vec(), name.to_vec()))
            .copied()
    }

    /// The staged file `name` in anchor `anchor`, with its id. The name and the
    /// table are two locks: a rename over a file moves the name to the new file
    /// before it drops the one it displaced, so a name whose file is gone by the
    /// time the table is read is read again, and then names the file that took
    /// its place, or nothing.
    pub fn find_file(
        &self,
        anchor: &[u8],
        name: &[u8],
    ) -> Option<(StagedId, Arc<Mutex<StagedFile>>)> {
        let mut id = self.find(anchor, name)?;
        // Each round means a concurrent rename or removal of this very name.
        for _ in 0..8 {
            if let Some(f) = self.get(id) {
                return Some((id, f));
            }
            let again = self.find(anchor, name)?;
            if again == id {
                // Removed from the table first and unnamed under the same lock
                // ([`Staging::remove`]): a name still on a missing file is going.
                return None;
            }
            id = again;
        }
        None
    }

    /// The staged file with id `id`.
    pub fn get(&self, id: StagedId) -> Option<Arc<Mutex<StagedFile>>> {
        self.files.lock().get(&id).cloned()
    }

    /// The staged file `id` lost its name to another (a create or rename over it):
    /// like an unlinked file, it is never committed, and it is dropped at its last
    /// close; descriptors open on it keep working until then.
    pub(crate) fn displace(&self, id: StagedId) {
        let Some(f) = self.get(id) else {
            return;
        };
        let mut g = f.lock();
        g.unlinked = true;
        if g.open == 0 {
            drop(g);
            self.remove(id);
        }
    }

    /// Whether this mount has written over version inode `ino` in place.
    pub fn was_written_over(&self, ino: Ino) -> bool {
        self.written_over.lock().contains(&ino)
    }

    /// The staged file writing over version inode `ino` in place now, if any.
    pub fn in_place_writer(&self, ino: Ino) -> Option<StagedId> {
        self.in_place.lock().get(&ino).copied()
    }

    /// The staged files of `anchor`: (id, name), by name.
    pub fn in_anchor(&self, anchor: &[u8]) -> Vec<(StagedId, Vec<u8>)> {
        let mut v: Vec<(StagedId, Vec<u8>)> = self
            .by_name
            .lock()
            .iter()
            .filter(|((a, _), _)| a == anchor)
            .map(|((_, n), id)| (*id, n.clone()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }

    /// Takes the moved opens that `which` picks out of the waiting list; returns
    /// their files' ids.
    pub(crate) fn take_moves(&self, which: impl Fn(&MovedWrite) -> bool) -> Vec<StagedId> {
        let mut taken = Vec::new();
        self.moved.lock().retain(|m| {
            let take = which(m);
            if take {
                taken.push(m.id);
            }
            !take
        });
        taken
    }

    /// Keeps the closed, committed file `id` under its name; forgets the oldest such
    /// name past [`SETTLED_MAX`].
    pub(crate) fn settle(&self, id: StagedId) {
        let evicted = {
            let mut q = self.settled.lock();
            q.retain(|&i| i != id);
            q.push_back(id);
            if q.len() > SETTLED_MAX {
                q.pop_front()
            } else {
                None
            }
        };
        if let Some(old) = evicted {
            let idle = self.get(old).is_some_and(|f| {
                let g = f.lock();
                g.open == 0 && g.settled().is_some()
            });
            if idle {
                self.remove(old);
            }
        }
    }

    /// Whether staged file `id` is committed and unchanged since: its name only
    /// names the version it became.
    pub fn is_settled(&self, id: StagedId) -> bool {
        self.get(id).is_some_and(|f| f.lock().settled().is_some())
    }

    /// Whether staged file `id` is the one its name finds.
    pub(crate) fn is_named(&self, id: StagedId, anchor: &[u8], name: &[u8]) -> bool {
        self.by_name.lock().get(&(anchor.to_vec(), name.to_vec())) == Some(&id)
    }

    pub(crate) fn remove(&self, id: StagedId) {
        self.settled.lock().retain(|&i| i != id);
        // `files` stays held until the name is gone too (see [`Staging::find_file`]).
        let mut files = self.files.lock();
        if let Some(f) = files.remove(&id) {
            let f = f.lock();
            if let Some(ids) = self.flushed_unwritten.lock().get_mut(&f.anchor) {
                ids.retain(|&i| i != id);
            }
            let mut names = self.by_name.lock();
            if names.get(&(f.anchor.clone(), f.name.clone())) == Some(&id) {
                names.remove(&(f.anchor.clone(), f.name.clone()));
            }
        }
    }

    /// A new staged file `name` of `anchor` holding `data`, open once; `listed`:
    /// found by its name (replacing an older file of that name).
    pub(crate) fn new_staged(
        &self,
        anchor: &[u8],
        name: &[u8],
        data: Data,
        listed: bool,
    ) -> Result<(StagedId, Arc<Mutex<StagedFile>>), FsError> {
        let id = StagedId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let f = Arc::new(Mutex::new(StagedFile {
            anchor: anchor.to_vec(),
            name: name.to_vec(),
            data,
            state: CommitState::Staging,
            dirty: true,
            written: false,
            open: 1,
            mtime: SystemTime::now(),
            mode: super::modes::DEFAULT_FILE_MODE,
            unlinked: false,
            gate: Arc::new(Mutex::new(())),
            writer_owner: None,
            over_version: None,
            broken: None,
            committed_at: None,
            flushed: Vec::new(),
        }));
        let planted = cfg!(feature = "planted-bug-staging") && listed;
        if !planted {
            self.files.lock().insert(id, f.clone());
        }
        if !listed {
            return Ok((id, f));
        }
        let old = self
            .by_name
            .lock()
            .insert((anchor.to_vec(), name.to_vec()), id);
        if planted {
            // The bug tests/model_check_staging.rs plants to show that it finds one
            // (feature `planted-bug-staging`, never part of a build): the name is
            // published before the file is in the table, so a lookup in between
            // finds a name whose file is not there.
            self.files.lock().insert(id, f.clone());
        }
        if let Some(old) = old {
            // A new file of the same name replaces an older staged one.
            self.displace(old);
        }
        Ok((id, f))
    }
}
