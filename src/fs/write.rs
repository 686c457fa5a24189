//! Writing through the mount: every write becomes a version.
//!
//! A file being written is a [`StagedFile`]: a state machine
//! `Staging → Committing → Committed | Failed(errno)`. Sequential writes stream
//! straight into the split writer; any other pattern (a write elsewhere than at the
//! end, a truncate, reading back) moves the content into a temporary spool file
//! beside the store, which is split at commit. Commit happens at close (flush) and
//! fsync: the content's root is anchored through [`Committer`], which groups the
//! commits of concurrent handles into one anchor map update of the shared
//! optimistic-lock loop. Scratch names (editors' and rsync's temp files) are staged
//! like any file but become a version only when renamed onto a normal name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use super::inode::NodeKey;
use super::names;
use super::overlay::Overlay;
use super::{AnchorFs, Cause, Entry, FsError, Opened, SharedStore};
use crate::anchor;
use crate::blob::Ref;
use crate::content::{self, Kind};
use crate::split::{SplitOptions, SplitWriter};
use crate::timestamp::Timestamp;

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

/// Where a staged file's bytes are.
enum Data {
    /// Small content in memory (at most [`SMALL_MAX`] bytes, written in order): stored
    /// as one raw blob at commit, which needs no type record and no split node.
    Small(Vec<u8>),
    /// Streaming into the split writer; `len` bytes so far, all in order.
    Stream {
        writer: Box<SplitWriter<SharedStore>>,
        len: u64,
    },
    /// In a temporary file (random writes, truncates, reads of own writes).
    Spool { file: File, len: u64 },
    /// Stored content with the blocks written since in a temporary file (random
    /// writes into a large version: nothing is copied first).
    Overlay(Box<Overlay>),
    /// Stored (after a commit, or seeded from a version).
    Stored { root: Ref, kind: Kind, len: u64 },
}

/// Content up to this size is kept in memory while written and stored as one raw
/// blob; larger content streams into a split tree.
pub const SMALL_MAX: usize = 16 << 10;

impl Data {
    /// Empty content, as a new or truncated file starts.
    fn empty() -> Data {
        Data::Small(Vec::new())
    }

    fn taken(&mut self) -> Data {
        std::mem::replace(
            self,
            Data::Stored {
                root: Ref::ZERO,
                kind: Kind::Split,
                len: 0,
            },
        )
    }
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
    pub anchor: Vec<u8>,
    /// Its name in the anchor directory.
    pub name: Vec<u8>,
    data: Data,
    /// Where the commit stands.
    pub state: CommitState,
    /// Changed since the last commit.
    dirty: bool,
    /// Written to (or truncated) at least once: an untouched new file is committed
    /// at its last close rather than at every flush, so the flush of a duplicated
    /// descriptor closed before the first write (as a shell's `>` does) does not
    /// make an empty version.
    written: bool,
    /// Open handles.
    open: u32,
    /// Shown while staged (not kept in the version: see docs/SEMANTICS.md).
    pub mtime: SystemTime,
    /// Shown while staged.
    pub mode: u16,
    /// Unlinked while open: dropped at last close, never committed.
    unlinked: bool,
    /// Serializes commits of this file.
    gate: Arc<Mutex<()>>,
    /// The process that writes: a flush from any other process (a descriptor
    /// inherited by a forked child and closed at its exec) is not this writer's
    /// close, so it does not commit; the last close still does.
    writer_owner: Option<u64>,
    /// The inode of the version this file was opened over (copy-on-write): the
    /// kernel's cached pages and size of that inode are dropped at the last close.
    over_version: Option<u64>,
    /// A write or truncate failed with this error: part of the content is lost, so
    /// the file never becomes a version; every later call reports the error.
    broken: Option<FsError>,
    /// The time of the version its last commit made.
    committed_at: Option<Timestamp>,
    /// Open handles closed by a process (flushed) while nothing was written: when
    /// every open handle is here, only their releases are still to come.
    flushed: Vec<u64>,
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

    fn scratch(&self) -> bool {
        is_scratch(&self.name)
    }

    /// Committed and unchanged since: the name names the version it became.
    fn settled(&self) -> Option<Ref> {
        match &self.state {
            CommitState::Committed(r) if !self.dirty && self.broken.is_none() => Some(*r),
            _ => None,
        }
    }

    fn break_with(&mut self, e: &FsError) {
        self.broken = Some(e.clone());
        self.state = CommitState::Failed(e.clone());
        self.dirty = false;
    }

    /// The error every call reports once a write or truncate failed.
    fn broken_err(&self) -> Option<FsError> {
        self.broken.clone().map(|e| FsError::Broken(Box::new(e)))
    }
}

/// The attributes a `setattr` changes; `None` leaves one as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// A new size (truncate or extend).
    pub size: Option<u64>,
    /// A new modification time.
    pub mtime: Option<SystemTime>,
    /// New permission bits.
    pub mode: Option<u16>,
}

/// A staged file's place: (anchor, file name).
type StagedName = (Vec<u8>, Vec<u8>);

/// The write-side state of a mount.
#[derive(Default)]
pub(crate) struct Writes {
    files: Mutex<HashMap<u64, Arc<Mutex<StagedFile>>>>,
    by_name: Mutex<HashMap<StagedName, u64>>,
    next_id: std::sync::atomic::AtomicU64,
    pub committer: Committer,
    /// Version inodes this mount has opened for writing through (copy-on-write in
    /// place): their kernel pages may hold a writer's bytes.
    written_over: Mutex<std::collections::HashSet<u64>>,
    /// Version inodes written over in place now: inode to the writer's staged file.
    in_place: Mutex<HashMap<u64, u64>>,
    /// Opens of versions for writing that moved to a new file, until the opener
    /// opens it (see `AnchorFs::open_as`).
    moved: Mutex<Vec<MovedWrite>>,
    /// Files flushed before any write whose last close may still be on its way,
    /// by anchor (see `AnchorFs::settle_unwritten`).
    flushed_unwritten: Mutex<HashMap<Vec<u8>, Vec<u64>>>,
    /// Files closed after their commit that keep their name (oldest first), so a
    /// name written reads back; at most [`SETTLED_MAX`].
    settled: Mutex<std::collections::VecDeque<u64>>,
}

/// How many closed, committed files keep their names in a mount; the oldest is
/// forgotten first.
pub const SETTLED_MAX: usize = 4096;

/// A version opened for writing by `opener`, whose open moved to staged file `id`.
struct MovedWrite {
    opener: u64,
    version: NodeKey,
    id: u64,
    since: Instant,
}

/// Whether two version keys are versions of the same anchor. The kernel's retry of
/// a moved open may reach another version than the first try (a commit moved
/// `latest` in between): it still gets the file the first try made.
fn same_anchor(a: &NodeKey, b: &NodeKey) -> bool {
    match (a, b) {
        (NodeKey::Version(x, _), NodeKey::Version(y, _)) => x == y,
        _ => a == b,
    }
}

/// How long a moved open waits for its opener to come back for the new file.
const MOVED_WRITE_LIFE: Duration = Duration::from_secs(5);

impl Writes {
    /// The staged file `name` in anchor `anchor`.
    pub fn find(&self, anchor: &[u8], name: &[u8]) -> Option<u64> {
        self.by_name
            .lock()
            .get(&(anchor.to_vec(), name.to_vec()))
            .copied()
    }

    /// The staged file with id `id`.
    pub fn get(&self, id: u64) -> Option<Arc<Mutex<StagedFile>>> {
        self.files.lock().get(&id).cloned()
    }

    /// The staged file `id` lost its name to another (a create or rename over it):
    /// like an unlinked file, it is never committed, and it is dropped at its last
    /// close; descriptors open on it keep working until then.
    fn displace(&self, id: u64) {
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
    pub fn was_written_over(&self, ino: u64) -> bool {
        self.written_over.lock().contains(&ino)
    }

    /// The staged file writing over version inode `ino` in place now, if any.
    pub fn in_place_writer(&self, ino: u64) -> Option<u64> {
        self.in_place.lock().get(&ino).copied()
    }

    /// The staged files of `anchor`: (id, name), by name.
    pub fn in_anchor(&self, anchor: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut v: Vec<(u64, Vec<u8>)> = self
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
    fn take_moves(&self, which: impl Fn(&MovedWrite) -> bool) -> Vec<u64> {
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
    fn settle(&self, id: u64) {
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
    pub fn is_settled(&self, id: u64) -> bool {
        self.get(id).is_some_and(|f| f.lock().settled().is_some())
    }

    /// Whether staged file `id` is the one its name finds.
    fn is_named(&self, id: u64, anchor: &[u8], name: &[u8]) -> bool {
        self.by_name.lock().get(&(anchor.to_vec(), name.to_vec())) == Some(&id)
    }

    fn remove(&self, id: u64) {
        self.settled.lock().retain(|&i| i != id);
        if let Some(f) = self.files.lock().remove(&id) {
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
}

/// One commit waiting for the group's anchor map update.
struct Pending {
    anchor: Vec<u8>,
    root: Ref,
    kind: Kind,
    at: Timestamp,
    result: Option<Result<(), Arc<Cause>>>,
}

/// Groups concurrent commits into one anchor map update: the first committer to
/// arrive leads, taking every commit queued so far; the others wait for its result.
#[derive(Default)]
pub(crate) struct Committer {
    queue: Mutex<CommitQueue>,
    done: Condvar,
}

#[derive(Default)]
struct CommitQueue {
    waiting: Vec<Arc<Mutex<Pending>>>,
    leading: bool,
}

impl Committer {
    /// Anchors `anchor` to `root` (content of `kind`) at `at`, durably; returns what
    /// failed. A split root gets its type record in the same update.
    fn commit(
        &self,
        store: &SharedStore,
        anchor: &[u8],
        (root, kind): (Ref, Kind),
        at: Timestamp,
    ) -> Result<(), Arc<Cause>> {
        let me = Arc::new(Mutex::new(Pending {
            anchor: anchor.to_vec(),
            root,
            kind,
            at,
            result: None,
        }));
        let mut q = self.queue.lock();
        q.waiting.push(me.clone());
        loop {
            if let Some(r) = me.lock().result.clone() {
                return r;
            }
            if !q.leading {
                break;
            }
            self.done.wait(&mut q);
        }
        // Lead: take every waiting commit and apply them in one update.
        q.leading = true;
        let batch: Vec<Arc<Mutex<Pending>>> = std::mem::take(&mut q.waiting);
        drop(q);
        let items: Vec<(Vec<u8>, Ref, Kind, Timestamp)> = batch
            .iter()
            .map(|p| {
                let p = p.lock();
                (p.anchor.clone(), p.root, p.kind, p.at)
            })
            .collect();
        let res = anchor::update(&**store, |u| {
            for (name, root, kind, at) in &items {
                if *kind == Kind::Split {
                    content::record_split(u, *root, *at)?;
                }
                u.put(name, *root, *at)?;
            }
            Ok(())
        });
        let outcome = res.map_err(|e| {
            log::error!("committing {} version(s): {e}", items.len());
            Arc::new(Cause::Anchor(e))
        });
        if outcome.is_ok() {
            log::debug!("committed {} version(s) in one update", items.len());
        }
        for p in &batch {
            p.lock().result = Some(outcome.clone());
        }
        let mut q = self.queue.lock();
        q.leading = false;
        self.done.notify_all();
        drop(q);
        // The leader's own commit is in the batch it took (a commit taken by another
        // leader has its result before that leader lets go).
        outcome
    }
}

/// The time a file's name gives its version: any RFC 3339 time, or the compact form.
fn name_time(name: &[u8]) -> Option<Timestamp> {
    std::str::from_utf8(name)
        .ok()
        .and_then(|t| Timestamp::parse(t).ok())
}

impl AnchorFs {
    fn spool_file(&self) -> Result<File, FsError> {
        let dir = self
            .opts
            .store_path
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        tempfile::tempfile_in(&dir)
            .or_else(|_| tempfile::tempfile())
            .map_err(|e| FsError::store("creating a spool file", e))
    }

    /// Moves a staged file's bytes into a spool file (for random access).
    fn to_spool(&self, f: &mut StagedFile) -> Result<(), FsError> {
        let (file, len) = match f.data.taken() {
            Data::Spool { file, len } => (file, len),
            Data::Small(buf) => {
                let mut file = self.spool_file()?;
                file.write_all(&buf).map_err(FsError::from_io)?;
                (file, buf.len() as u64)
            }
            Data::Stream { writer, len } => {
                let root = writer.finish().map_err(FsError::from_split)?;
                (self.copy_to_spool(root, Kind::Split, len)?, len)
            }
            Data::Stored { root, kind, len } => (self.copy_to_spool(root, kind, len)?, len),
            Data::Overlay(o) => {
                let mut file = self.spool_file()?;
                std::io::copy(&mut o.cursor(), &mut file).map_err(FsError::from_io)?;
                (file, o.len())
            }
        };
        f.data = Data::Spool { file, len };
        Ok(())
    }

    /// A new spool file holding the `len` bytes of stored content `root`.
    fn copy_to_spool(&self, root: Ref, kind: Kind, len: u64) -> Result<File, FsError> {
        let mut file = self.spool_file()?;
        if len > 0 {
            let mut reader = content::open(self.store.clone(), root, kind)
                .map_err(|e| FsError::from_content(root, e))?;
            std::io::copy(&mut reader, &mut file).map_err(FsError::from_io)?;
        }
        Ok(file)
    }

    /// Stores a staged file's bytes; returns the ref and its kind. Content of at most
    /// [`SMALL_MAX`] bytes becomes one raw blob, larger content a split tree.
    fn store_data(&self, f: &mut StagedFile) -> Result<(Ref, Kind), FsError> {
        let (root, kind, len) = match f.data.taken() {
            Data::Stored { root, kind, len } => (root, kind, len),
            Data::Small(buf) => {
                let (root, kind) = self.store_small(&buf)?;
                (root, kind, buf.len() as u64)
            }
            Data::Stream { writer, len } => (
                writer.finish().map_err(FsError::from_split)?,
                Kind::Split,
                len,
            ),
            Data::Spool { file, len } if len as usize <= SMALL_MAX => {
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, 0).map_err(FsError::from_io)?;
                let (root, kind) = self.store_small(&buf)?;
                (root, kind, len)
            }
            Data::Overlay(o) if o.len() as usize <= SMALL_MAX => {
                let mut buf = vec![0u8; o.len() as usize];
                o.read_at(0, &mut buf).map_err(FsError::from_overlay)?;
                let (root, kind) = self.store_small(&buf)?;
                (root, kind, o.len())
            }
            Data::Overlay(o) => {
                let len = o.len();
                let root = crate::split::store_from_with(
                    self.store.clone(),
                    o.cursor(),
                    SplitOptions::default(),
                    &self.storers,
                )
                .map_err(FsError::from_split)?;
                (root, Kind::Split, len)
            }
            Data::Spool { mut file, len } => {
                file.seek(SeekFrom::Start(0)).map_err(FsError::from_io)?;
                let root = crate::split::store_from_with(
                    self.store.clone(),
                    (&mut file).take(len),
                    SplitOptions::default(),
                    &self.storers,
                )
                .map_err(FsError::from_split)?;
                (root, Kind::Split, len)
            }
        };
        f.data = Data::Stored { root, kind, len };
        self.note_meta(&root, kind, len);
        Ok((root, kind))
    }

    /// Stores small content as one raw blob, unless its bytes happen to read as a
    /// split tree root (a raw blob without a type record must not), in which case it
    /// becomes a split tree. Empty content is the zero ref.
    fn store_small(&self, buf: &[u8]) -> Result<(Ref, Kind), FsError> {
        if buf.is_empty() {
            return Ok((Ref::ZERO, Kind::Split));
        }
        let (r, _) = self.store.put(buf).map_err(FsError::from_store)?;
        match crate::split::validate_root(&*self.store, &r) {
            Err(crate::split::SplitError::Store(e)) => Err(FsError::from_store(e)),
            Err(_) => Ok((r, Kind::Raw)),
            Ok(_) => {
                let root =
                    content::store(&*self.store, buf).map_err(|e| FsError::from_content(r, e))?;
                Ok((root, Kind::Split))
            }
        }
    }

    fn new_staged(
        &self,
        anchor: &[u8],
        name: &[u8],
        data: Data,
        listed: bool,
    ) -> Result<(u64, Arc<Mutex<StagedFile>>), FsError> {
        let id = self.writes.next_id.fetch_add(1, Ordering::Relaxed);
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
        self.writes.files.lock().insert(id, f.clone());
        if !listed {
            return Ok((id, f));
        }
        let old = self
            .writes
            .by_name
            .lock()
            .insert((anchor.to_vec(), name.to_vec()), id);
        if let Some(old) = old {
            // A new file of the same name replaces an older staged one.
            self.writes.displace(old);
        }
        Ok((id, f))
    }

    fn write_handle(&self, id: u64) -> Result<u64, FsError> {
        Ok(self.handles.open_write(id))
    }

    /// The staged file `name` of `anchor`, if any. A closed file that keeps naming
    /// the version it became is forgotten once no version of the anchor has its
    /// content any more (expired).
    pub(crate) fn staged_by_name(&self, anchor: &[u8], name: &[u8]) -> Option<u64> {
        let id = self.writes.find(anchor, name)?;
        let f = self.writes.get(id)?;
        let g = f.lock();
        let Some(r) = g.settled().filter(|_| g.open == 0) else {
            return Some(id);
        };
        drop(g);
        let snap = self.snapshot();
        let held = snap
            .by_name(anchor)
            .is_some_and(|v| v.versions.iter().any(|a| a.r == r));
        if held {
            return Some(id);
        }
        self.writes.remove(id);
        None
    }

    /// Opens a closed, committed file for reading only: a reader of the version it
    /// became (its own handle, through the page cache for this open), or `None`
    /// if it has changed since its commit.
    pub(crate) fn open_settled(&self, id: u64) -> Result<Option<Opened>, FsError> {
        let Some(f) = self.writes.get(id) else {
            return Err(FsError::NotFound);
        };
        let (root, kind) = {
            let g = f.lock();
            match (&g.data, g.settled()) {
                (Data::Stored { root, kind, .. }, Some(_)) => (*root, *kind),
                _ => return Ok(None),
            }
        };
        let reader = content::open(self.store.clone(), root, kind)
            .map_err(|e| FsError::from_content(root, e))?;
        let fh = self.handles.open_read(reader, None, None);
        Ok(Some(Opened {
            fh,
            keep_cache: false,
            direct_io: false,
        }))
    }

    fn anchor_dir_of(&self, parent: u64) -> Result<Vec<u8>, FsError> {
        match self.key_of(parent)? {
            NodeKey::AnchorDir(a) => Ok(a),
            NodeKey::Root => Err(FsError::Immutable),
            _ => Err(FsError::ReadOnly),
        }
    }

    fn check_name(name: &[u8]) -> Result<(), FsError> {
        if name.len() > names::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if name.is_empty() || name == b"." || name == b".." {
            return Err(FsError::BadName(String::from_utf8_lossy(name).into()));
        }
        Ok(())
    }

    /// `mkdir NAME` at the root: an anchor directory that exists until its first
    /// version.
    pub fn mkdir(&self, parent: u64, name: &[u8]) -> Result<Entry, FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        if self.key_of(parent)? != NodeKey::Root {
            return Err(FsError::Immutable);
        }
        Self::check_name(name)?;
        let anchor = match names::unescape(name) {
            Some(names::Unescaped::Name(n)) => n,
            _ => return Err(FsError::BadName(String::from_utf8_lossy(name).into())),
        };
        if name == super::META_DIR || anchor.as_slice() == anchor::PROTO_TYPES_ANCHOR {
            return Err(FsError::Exists);
        }
        if self.snapshot().by_name(&anchor).is_some()
            || !self.ns.pending_dirs.lock().insert(anchor.clone())
        {
            return Err(FsError::Exists);
        }
        self.lookup(parent, name)
    }

    /// Creates a new file in an anchor directory with the default mode; returns its
    /// entry and handle.
    pub fn create(&self, parent: u64, name: &[u8]) -> Result<(Entry, u64), FsError> {
        self.create_with_mode(parent, name, super::modes::DEFAULT_FILE_MODE)
    }

    /// Creates a new file in an anchor directory with permission bits `mode` (kept
    /// with the versions it becomes); returns its entry and handle.
    pub fn create_with_mode(
        &self,
        parent: u64,
        name: &[u8],
        mode: u16,
    ) -> Result<(Entry, u64), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        let anchor = self.anchor_dir_of(parent)?;
        Self::check_name(name)?;
        let view = self.snapshot().by_name(&anchor).cloned();
        let has_versions = view.as_ref().is_some_and(|v| v.latest().is_some());
        if name == super::LATEST && has_versions {
            return Err(FsError::Exists);
        }
        // A back-dated file named by the time of an existing version, in any
        // spelling, would hide that version: history does not change.
        if let (Some(t), Some(v)) = (name_time(name), &view) {
            if v.version(t).is_some() {
                return Err(FsError::Exists);
            }
        }
        let (id, f) = self.new_staged(&anchor, name, Data::empty(), true)?;
        f.lock().mode = mode & 0o777;
        let fh = self.write_handle(id)?;
        let entry = self.lookup(parent, name)?;
        Ok((entry, fh))
    }

    /// The staged file a write-open of `version` by `caller` moved to, if any.
    pub(crate) fn moved_write(&self, caller: u64, version: &NodeKey) -> Option<u64> {
        self.forget_stale_moves();
        self.writes
            .moved
            .lock()
            .iter()
            .find(|m| m.opener == caller && same_anchor(&m.version, version))
            .map(|m| m.id)
    }

    /// Drops moved opens whose opener never came back, and their files.
    fn forget_stale_moves(&self) {
        for id in self
            .writes
            .take_moves(|m| m.since.elapsed() > MOVED_WRITE_LIFE)
        {
            if self.writes.get(id).is_some_and(|f| f.lock().open == 0) {
                self.writes.remove(id);
            }
        }
    }

    /// Opening `version` for writing by thread `opener` (see `AnchorFs::open_as`):
    /// the first time, makes the new file and asks for a new lookup. If the opener
    /// has a moved open waiting, this is the kernel's one retry, and it reached a
    /// version all the same (this one, or the new one `latest` names if a commit
    /// came in between): asking again would fail the open, so it writes over that
    /// version in place.
    pub(crate) fn move_write(
        &self,
        opener: u64,
        version: &NodeKey,
        truncate: bool,
    ) -> Result<Opened, FsError> {
        self.forget_stale_moves();
        let waiting = self.writes.take_moves(|m| m.opener == opener);
        if !waiting.is_empty() {
            log::debug!("a moved open came back to a version: writing over it in place");
            for id in waiting {
                self.writes.remove(id);
            }
            let ino = self.ns.ino_of(version);
            return self.open_for_write(version, ino, truncate);
        }
        let NodeKey::Version(anchor, at) = version else {
            return Err(FsError::ReadOnly);
        };
        let data = self.seed(anchor, *at, truncate)?;
        let mode = self.opts.modes.file(self.recorded_mode(anchor, *at));
        let (id, f) = self.new_staged(anchor, super::LATEST, data, false)?;
        {
            let mut g = f.lock();
            // A new version of a file keeps the file's mode.
            g.mode = mode;
            // Nobody has it open until the opener comes back for it.
            g.open = 0;
            // Seeded with the old content: nothing to commit unless written, and
            // until then as old as it (editors compare the times before writing).
            g.dirty = truncate;
            if !truncate {
                g.mtime = at.to_system_time();
            }
        }
        self.writes.moved.lock().push(MovedWrite {
            opener,
            version: version.clone(),
            id,
            since: Instant::now(),
        });
        Err(FsError::LookUpAgain)
    }

    /// The content a file written over the version of `anchor` at `at` starts with.
    fn seed(&self, anchor: &[u8], at: Timestamp, truncate: bool) -> Result<Data, FsError> {
        if truncate {
            return Ok(Data::empty());
        }
        let snap = self.snapshot();
        let a = snap
            .by_name(anchor)
            .and_then(|v| v.version(at))
            .ok_or(FsError::NotFound)?;
        let (kind, len) = self.content_meta(&a.r)?;
        Ok(Data::Stored {
            root: a.r,
            kind,
            len,
        })
    }

    /// Opens an existing version (or `latest`, or a staged file) for writing: a new
    /// staged file seeded with the old content unless `truncate`.
    pub(crate) fn open_for_write(
        &self,
        key: &NodeKey,
        ino: u64,
        truncate: bool,
    ) -> Result<Opened, FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        match key {
            NodeKey::Staged(id) => {
                let f = self.writes.get(*id).ok_or(FsError::NotFound)?;
                // A moved open's file, now opened by its opener.
                self.writes.take_moves(|m| m.id == *id);
                let mut g = f.lock();
                g.open += 1;
                if truncate {
                    g.data = Data::empty();
                    g.dirty = true;
                    g.state = CommitState::Staging;
                }
                drop(g);
                Ok(Opened {
                    fh: self.write_handle(*id)?,
                    keep_cache: false,
                    direct_io: false,
                })
            }
            NodeKey::Version(anchor, at) => {
                let data = self.seed(anchor, *at, truncate)?;
                // Not listed under a name of its own: the version appears under its
                // commit time when the file is closed.
                let mode = self.opts.modes.file(self.recorded_mode(anchor, *at));
                let (id, f) = self.new_staged(anchor, super::LATEST, data, false)?;
                {
                    let mut g = f.lock();
                    g.mode = mode;
                    // Seeded with the old content: nothing to commit unless written,
                    // and until then as old as it.
                    g.dirty = truncate;
                    if !truncate {
                        g.mtime = at.to_system_time();
                    }
                    g.over_version = Some(ino);
                }
                self.writes.written_over.lock().insert(ino);
                self.writes.in_place.lock().insert(ino, id);
                // The kernel writes through the version's own inode: keep the new
                // bytes out of its page cache, which must go on showing the version.
                Ok(Opened {
                    fh: self.write_handle(id)?,
                    keep_cache: false,
                    direct_io: true,
                })
            }
            _ => Err(FsError::ReadOnly),
        }
    }

    /// Writes `data` at `offset` into open file `fh`. `owner`, the writing process,
    /// becomes the file's writer: only its closes are commit points (see
    /// [`flush`](Self::flush)).
    pub fn write(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        owner: Option<u64>,
    ) -> Result<usize, FsError> {
        let id = self.write_id(fh)?;
        let f = self.writes.get(id).ok_or(FsError::BadHandle)?;
        let mut g = f.lock();
        if owner.is_some() {
            g.writer_owner = owner;
        }
        // The kernel places an append at the end it last heard of, which for a file
        // opened over a version is the version's size after any stat of it.
        let offset = if self.handles.is_appending(fh) {
            g.len()
        } else {
            offset
        };
        if let Some(e) = g.broken_err() {
            return Err(e);
        }
        if let Err(e) = self.write_data(&mut g, offset, data) {
            // Part of the content is lost: this file can never become a version.
            g.break_with(&e);
            return Err(e);
        }
        g.dirty = true;
        g.written = true;
        g.state = CommitState::Staging;
        g.mtime = SystemTime::now();
        Ok(data.len())
    }

    /// A split writer for content written in order: its chunks are stored on
    /// threads of their own, so a write returns while earlier chunks are stored.
    fn stream_writer(&self) -> Result<SplitWriter<SharedStore>, FsError> {
        SplitWriter::with_storers(self.store.clone(), SplitOptions::default(), &self.storers)
            .map_err(FsError::from_split)
    }

    fn write_data(&self, g: &mut StagedFile, offset: u64, data: &[u8]) -> Result<(), FsError> {
        // A write into seeded content elsewhere than at its end.
        if matches!(&g.data, Data::Stored { len, .. } if offset != *len) {
            self.overlay_over(g)?;
        }
        match &mut g.data {
            Data::Small(buf) if offset == buf.len() as u64 => {
                if buf.len() + data.len() <= SMALL_MAX {
                    buf.extend_from_slice(data);
                } else {
                    // Grown past small: from here on it streams into a split tree.
                    let mut writer = self.stream_writer()?;
                    writer.write_bytes(buf).map_err(FsError::from_split)?;
                    writer.write_bytes(data).map_err(FsError::from_split)?;
                    let len = (buf.len() + data.len()) as u64;
                    g.data = Data::Stream {
                        writer: Box::new(writer),
                        len,
                    };
                }
            }
            Data::Stream { writer, len: l } if offset == *l => {
                writer.write_bytes(data).map_err(FsError::from_split)?;
                *l += data.len() as u64;
            }
            Data::Stored { root, kind, len: l } if offset == *l => {
                // Appending to seeded content: the old bytes, then the new.
                let (root, kind, len) = (*root, *kind, *l);
                let reader = content::open(self.store.clone(), root, kind)
                    .map_err(|e| FsError::from_content(root, e))?;
                let mut old = std::io::BufReader::with_capacity(1 << 20, reader);
                let new_len = len + data.len() as u64;
                if new_len as usize <= SMALL_MAX {
                    let mut buf = Vec::with_capacity(new_len as usize);
                    old.read_to_end(&mut buf).map_err(FsError::from_io)?;
                    buf.extend_from_slice(data);
                    g.data = Data::Small(buf);
                } else {
                    let mut writer = self.stream_writer()?;
                    std::io::copy(&mut old, &mut writer).map_err(FsError::from_io)?;
                    writer.write_bytes(data).map_err(FsError::from_split)?;
                    g.data = Data::Stream {
                        writer: Box::new(writer),
                        len: new_len,
                    };
                }
            }
            Data::Overlay(o) => o.write_at(offset, data).map_err(FsError::from_overlay)?,
            _ => {
                self.to_spool(g)?;
                if let Data::Spool { file, len: l } = &mut g.data {
                    file.write_all_at(data, offset).map_err(FsError::from_io)?;
                    *l = (*l).max(offset + data.len() as u64);
                }
            }
        }
        Ok(())
    }

    /// Turns seeded content larger than [`SMALL_MAX`] into an overlay, so a
    /// write elsewhere than at its end copies nothing first; false (nothing done)
    /// for small content, which the spool takes whole.
    fn overlay_over(&self, g: &mut StagedFile) -> Result<bool, FsError> {
        let Data::Stored { root, kind, len } = &g.data else {
            return Ok(false);
        };
        if *len as usize <= SMALL_MAX {
            return Ok(false);
        }
        let (root, kind) = (*root, *kind);
        let base = content::open(self.store.clone(), root, kind)
            .map_err(|e| FsError::from_content(root, e))?;
        g.data = Data::Overlay(Box::new(Overlay::new(base, self.spool_file()?)));
        Ok(true)
    }

    /// Reads from a file open for writing (its own bytes so far).
    pub(crate) fn read_staged(
        &self,
        id: u64,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, FsError> {
        let f = self.writes.get(id).ok_or(FsError::BadHandle)?;
        let mut g = f.lock();
        match &g.data {
            Data::Stored { root, kind, len } => {
                let reader = content::open(self.store.clone(), *root, *kind)
                    .map_err(|e| FsError::from_content(*root, e))?;
                let n = len.saturating_sub(offset).min(size as u64) as usize;
                let mut buf = vec![0u8; n];
                reader
                    .read_exact_at(offset, &mut buf)
                    .map_err(FsError::from_split)?;
                return Ok(buf);
            }
            Data::Small(b) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(size).min(b.len());
                return Ok(b[start..end].to_vec());
            }
            Data::Overlay(o) => {
                let n = o.len().saturating_sub(offset).min(size as u64) as usize;
                let mut buf = vec![0u8; n];
                let got = o.read_at(offset, &mut buf).map_err(FsError::from_overlay)?;
                buf.truncate(got);
                return Ok(buf);
            }
            _ => {}
        }
        self.to_spool(&mut g)?;
        let Data::Spool { file, len } = &g.data else {
            return Err(FsError::BadHandle);
        };
        let n = len.saturating_sub(offset).min(size as u64) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, offset)
            .map_err(FsError::from_io)?;
        Ok(buf)
    }

    fn write_id(&self, fh: u64) -> Result<u64, FsError> {
        self.handles.write_id(fh)
    }

    /// Commits the staged file `id` if it has changes and a normal name: stores the
    /// content and anchors it. Returns the errno of a failed commit.
    fn commit(&self, id: u64, last_close: bool) -> Result<(), FsError> {
        let Some(f) = self.writes.get(id) else {
            return Ok(());
        };
        // One commit of a file at a time: a second one (a flush racing an fsync)
        // waits, so it returns only once the version it reports is durable.
        let gate = f.lock().gate.clone();
        let _gate = gate.lock();
        let mut g = f.lock();
        if let Some(e) = g.broken_err() {
            return Err(e);
        }
        if !g.dirty || g.scratch() || g.unlinked || (!g.written && !last_close) {
            return match &g.state {
                CommitState::Failed(e) => Err(FsError::EarlierCommit(Box::new(e.clone()))),
                _ => Ok(()),
            };
        }
        g.state = CommitState::Committing;
        // A time-named file back-dates its first commit; once a version of that time
        // exists (a commit of this file before, or another writer), it never changes:
        // later commits are new versions at their commit time.
        let snap = self.snapshot();
        let view = snap.by_name(&g.anchor);
        let at = match name_time(&g.name) {
            Some(t) if view.is_none_or(|v| v.version(t).is_none()) => t,
            _ => Timestamp::now(),
        };
        log::debug!(
            "commit: file {id} ({}/{}) at {at}{}",
            names::escape(&g.anchor).escape_ascii(),
            g.name.escape_ascii(),
            if last_close { " (last close)" } else { "" }
        );
        let anchor_name = g.anchor.clone();
        // Writes from here on make the file dirty again, for the next commit.
        g.dirty = false;
        let stored = self.store_data(&mut g);
        let root = match stored {
            Ok(r) => r,
            Err(e) => {
                // The content could not be stored (and is gone): nothing becomes a
                // version, not even at the last close; the error stays on the file.
                g.state = CommitState::Failed(e.clone());
                g.dirty = false;
                log::error!(
                    "storing {}/{}: {e}",
                    names::escape(&anchor_name).escape_ascii(),
                    g.name.escape_ascii()
                );
                return Err(e);
            }
        };
        let moved =
            view.and_then(|v| anchor::moved_by_put(&v.versions, anchor::Anchor { r: root.0, at }));
        if moved.is_some() {
            // The store keeps one entry for equal neighbours, the earlier: anchoring
            // this content before the next version, which has it too, would move that
            // version. History does not change; the content is there already.
            g.state = CommitState::Failed(FsError::Exists);
            log::warn!(
                "{}/{}: a back-dated version with the content of the version after it \
                 would replace that version; not committed",
                names::escape(&anchor_name).escape_ascii(),
                g.name.escape_ascii()
            );
            return Err(FsError::Exists);
        }
        // The group commit may wait for other handles: do not hold this file's lock.
        drop(g);
        let res = self
            .writes
            .committer
            .commit(&self.store, &anchor_name, root, at);
        let mut g = f.lock();
        match res {
            Ok(()) => {
                if matches!(g.state, CommitState::Committing) {
                    g.state = CommitState::Committed(root.0);
                }
                g.committed_at = Some(at);
                let mode = g.mode;
                drop(g);
                // A new version with the default mode needs no record (a version
                // without one shows the default), unless one is there to replace.
                if mode != super::modes::DEFAULT_FILE_MODE
                    || self.recorded_mode(&anchor_name, at).is_some()
                {
                    self.record_mode(&anchor_name, at, mode);
                }
                self.ns.pending_dirs.lock().remove(&anchor_name);
                self.after_commit();
                Ok(())
            }
            Err(cause) => {
                let e = FsError::from_update(
                    format!(
                        "committing a version of {}",
                        names::escape(&anchor_name).escape_ascii()
                    ),
                    cause,
                );
                g.state = CommitState::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// After a commit: the new version is listed at once.
    fn after_commit(&self) {
        match self.refresh() {
            Ok(inv) => self.invalidate(inv),
            Err(e) => log::warn!("re-reading anchors after a commit: {e}"),
        }
    }

    /// Close of a descriptor (`owner`: the closing process) or fsync (`None`) of an open
    /// file: commits it (see `CommitState`). A close from another process's
    /// descriptor table than the writer's does not commit.
    pub fn flush(&self, fh: u64, owner: Option<u64>) -> Result<(), FsError> {
        let Some(id) = self.handles.staged_of(fh)? else {
            return Ok(());
        };
        if let (Some(o), Some(f)) = (owner, self.writes.get(id)) {
            if f.lock().writer_owner.is_some_and(|w| w != o) {
                log::debug!("flush of file {id} from another process: not a commit point");
                return Ok(());
            }
        }
        // A close (not an fsync) of a file not written yet, by the process that
        // opened it (not a forked child's exec closing what it inherited).
        let opener = self.handles.opener_of(fh);
        if owner.is_some() && (opener.is_none() || opener == owner) {
            self.note_unwritten_flush(id, fh);
        }
        self.commit(id, false)
    }

    /// A flush of a file not written yet (a new file, or one a truncating open
    /// emptied) commits nothing: a shell's `>` closes a duplicate of the descriptor
    /// before its command writes. The file is remembered for its anchor, so that if
    /// its last close has not arrived when the anchor is looked at next (the kernel
    /// sends it after close(2) returns), that look commits it first: `: > f` then
    /// `wc -c f`, or a truncating open closed and opened again, sees the empty file.
    fn note_unwritten_flush(&self, id: u64, fh: u64) {
        let Some(f) = self.writes.get(id) else {
            return;
        };
        let mut g = f.lock();
        if !g.written && g.dirty && !g.scratch() && !g.unlinked && g.broken.is_none() {
            if !g.flushed.contains(&fh) {
                g.flushed.push(fh);
            }
            let anchor = g.anchor.clone();
            drop(g);
            let mut waiting = self.writes.flushed_unwritten.lock();
            let ids = waiting.entry(anchor).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }

    /// Commits the files of `anchor` that were flushed unwritten and whose last
    /// close is still to come (see [`note_unwritten_flush`](Self::note_unwritten_flush)).
    pub(crate) fn settle_unwritten(&self, anchor: &[u8]) {
        let ids = {
            let waiting = self.writes.flushed_unwritten.lock();
            if waiting.is_empty() {
                return;
            }
            waiting.get(anchor).cloned().unwrap_or_default()
        };
        for &id in &ids {
            let Some(f) = self.writes.get(id) else {
                continue;
            };
            // Closed by every descriptor: only the releases are still to come.
            let pending = {
                let g = f.lock();
                !g.written
                    && !g.scratch()
                    && !g.unlinked
                    && g.open > 0
                    && g.flushed.len() as u32 >= g.open
            };
            // Even when another look is committing it already: the commit waits for
            // that one (one commit of a file at a time), so this look sees it too.
            if pending {
                if let Err(e) = self.commit(id, true) {
                    log::warn!("committing an unwritten file before a look at its anchor: {e}");
                }
            }
        }
        let mut waiting = self.writes.flushed_unwritten.lock();
        if let Some(left) = waiting.get_mut(anchor) {
            left.retain(|id| !ids.contains(id));
            if left.is_empty() {
                waiting.remove(anchor);
            }
        }
    }

    /// The last close of a handle: commits what no flush committed (an untouched new
    /// file becomes an empty version here).
    pub(crate) fn release_write(&self, id: u64, fh: u64) {
        let Some(f) = self.writes.get(id) else {
            return;
        };
        // The handle stays among the flushed ones until it is gone, so a look at
        // the anchor meanwhile still sees a commit to wait for.
        loop {
            let mut g = f.lock();
            if g.open > 1 {
                g.open -= 1;
                g.flushed.retain(|&x| x != fh);
                return;
            }
            // The last close. A rename may give the file a committable name at any
            // moment until `open` drops to 0 (after which the rename commits it
            // itself), so decide under the lock: commit and look again, or let go.
            let committable = g.dirty && !g.scratch() && !g.unlinked && g.broken.is_none();
            if !committable {
                g.open = 0;
                g.flushed.clear();
                // A scratch file stays until renamed or unlinked; a committed file
                // keeps naming the version it became; anything else is done.
                let keep = !g.unlinked
                    && (g.scratch()
                        || (g.settled().is_some() && self.writes.is_named(id, &g.anchor, &g.name)));
                let settled = keep && !g.scratch();
                let over = g.over_version.take();
                drop(g);
                if let Some(ino) = over {
                    let mut in_place = self.writes.in_place.lock();
                    if in_place.get(&ino) == Some(&id) {
                        in_place.remove(&ino);
                    }
                }
                if settled {
                    self.writes.settle(id);
                } else if !keep {
                    self.writes.remove(id);
                }
                if let Some(ino) = over {
                    // A truncating open and the writes set the inode's size in the
                    // kernel: have it ask again.
                    self.invalidate(super::Invalidations { inodes: vec![ino] });
                }
                return;
            }
            drop(g);
            if let Err(e) = self.commit(id, true) {
                log::error!("committing at last close: {e}");
            }
        }
    }

    /// Changes attributes. On a staged file: truncate, mode and times apply to the
    /// staged file, and its mode is kept with the version it becomes (see
    /// [`modes`](super::modes)); its times are not (a version's time is its own).
    /// On a version: a mode change is kept for that version; times are accepted and
    /// ignored (history does not change); truncating a version is refused. `owner`,
    /// the truncating process, becomes the file's writer, as with
    /// [`write`](Self::write).
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        change: &SetAttr,
        owner: Option<u64>,
    ) -> Result<Entry, FsError> {
        let SetAttr { size, mtime, mode } = *change;
        let key = self.key_of(ino)?;
        let id = match (&key, fh.map(|fh| self.write_id(fh))) {
            (_, Some(Ok(id))) => Some(id),
            (NodeKey::Staged(id), _) => Some(*id),
            _ => None,
        };
        match id {
            Some(id) => {
                let f = self.writes.get(id).ok_or(FsError::NotFound)?;
                let mut g = f.lock();
                if let Some(size) = size {
                    if size != g.len() {
                        if let Err(e) = self.truncate_data(&mut g, size) {
                            g.break_with(&e);
                            return Err(e);
                        }
                        g.dirty = true;
                        g.written = true;
                        g.state = CommitState::Staging;
                    }
                    if owner.is_some() {
                        g.writer_owner = owner;
                    }
                }
                if let Some(t) = mtime {
                    g.mtime = t;
                }
                if let Some(m) = mode {
                    g.mode = m & 0o777;
                    // Already the version it became: the mode goes with it.
                    if let (Some(_), Some(at)) = (g.settled(), g.committed_at) {
                        let anchor = g.anchor.clone();
                        drop(g);
                        self.record_mode(&anchor, at, m);
                    }
                }
            }
            None => {
                if self.read_only {
                    return Err(FsError::ReadOnly);
                }
                if size.is_some() {
                    return Err(FsError::Immutable);
                }
                if let (Some(m), NodeKey::Version(anchor, at)) = (mode, &key) {
                    self.record_mode(anchor, *at, m);
                }
            }
        }
        self.getattr(ino)
    }

    fn truncate_data(&self, g: &mut StagedFile, size: u64) -> Result<(), FsError> {
        self.overlay_over(g)?;
        if let Data::Overlay(o) = &mut g.data {
            return o.set_len(size).map_err(FsError::from_overlay);
        }
        self.to_spool(g)?;
        if let Data::Spool { file, len } = &mut g.data {
            file.set_len(size).map_err(FsError::from_io)?;
            *len = size;
        }
        Ok(())
    }

    /// Removes a staged (scratch or uncommitted) file; versions cannot be removed.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> Result<(), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        let anchor = self.anchor_dir_of(parent)?;
        // A name history shows (a version, `latest`) is history, even while a file of
        // that name is being written.
        if let NodeKey::Staged(id) = self.lookup_key(parent, name)? {
            let f = self.writes.get(id).ok_or(FsError::NotFound)?;
            let mut g = f.lock();
            g.unlinked = true;
            let open = g.open;
            drop(g);
            self.writes.by_name.lock().remove(&(anchor, name.to_vec()));
            if open == 0 {
                self.writes.remove(id);
            }
            return Ok(());
        }
        Err(FsError::Immutable)
    }

    /// Removes an anchor directory made by `mkdir` that has no version yet.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> Result<(), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        match self.lookup_key(parent, name)? {
            NodeKey::AnchorDir(anchor) => {
                if self.snapshot().by_name(&anchor).is_some() {
                    return Err(FsError::Immutable);
                }
                if !self.writes.in_anchor(&anchor).is_empty() {
                    return Err(FsError::NotEmpty);
                }
                self.ns.pending_dirs.lock().remove(&anchor);
                Ok(())
            }
            _ => Err(FsError::Immutable),
        }
    }

    /// Renames a staged file within its anchor directory. Onto a normal name (or
    /// `latest`, or a version's name) it becomes a version; anchors and versions
    /// themselves cannot be renamed.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
    ) -> Result<(), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        let anchor = self.anchor_dir_of(parent)?;
        let NodeKey::Staged(id) = self.lookup_key(parent, name)? else {
            return Err(FsError::Immutable);
        };
        let new_anchor = self.anchor_dir_of(newparent)?;
        Self::check_name(newname)?;
        let f = self.writes.get(id).ok_or(FsError::NotFound)?;
        // Onto `latest` or an existing version's name (in any spelling): a new
        // version at commit time.
        let onto_version = name_time(newname).is_some_and(|t| {
            self.snapshot()
                .by_name(&new_anchor)
                .is_some_and(|v| v.version(t).is_some())
        });
        let onto_history = newname == super::LATEST || onto_version;
        // A file whose content already is a version, unchanged since (a temp file
        // written and closed, then renamed over the name it replaces, as `sed -i`
        // and atomic saves do): within its anchor the rename adds no version.
        // Onto the history, if that version is the newest, the name simply goes;
        // onto a normal name, the name moves.
        let settled = f.lock().settled();
        let unchanged = settled.is_some() && new_anchor == anchor;
        if unchanged && onto_history {
            let newest = self
                .snapshot()
                .by_name(&anchor)
                .and_then(|v| v.latest())
                .map(|a| a.r);
            if newest.is_some() && newest == settled {
                {
                    let mut names_map = self.writes.by_name.lock();
                    let key = (anchor.clone(), name.to_vec());
                    if names_map.get(&key) == Some(&id) {
                        names_map.remove(&key);
                    }
                }
                if f.lock().open == 0 {
                    self.writes.remove(id);
                }
                return Ok(());
            }
        }
        let target = if onto_history {
            self.opts.time_names.format(Timestamp::now()).into_bytes()
        } else {
            newname.to_vec()
        };
        let displaced = {
            let mut names_map = self.writes.by_name.lock();
            names_map.remove(&(anchor.clone(), name.to_vec()));
            names_map.insert((new_anchor.clone(), target.clone()), id)
        };
        if let Some(old) = displaced.filter(|&old| old != id) {
            self.writes.displace(old);
        }
        let commit_now = {
            let mut g = f.lock();
            g.anchor = new_anchor;
            g.name = target;
            if !unchanged || onto_history {
                g.dirty = true;
            }
            g.dirty && !g.scratch() && g.open == 0
        };
        if commit_now {
            let res = self.commit(id, true);
            self.release_write_if_closed(id);
            return res;
        }
        Ok(())
    }

    /// After a rename committed a closed file: it keeps its name if that is one
    /// of its own, else it is done.
    fn release_write_if_closed(&self, id: u64) {
        if let Some(f) = self.writes.get(id) {
            let g = f.lock();
            let done = g.open == 0 && !g.dirty;
            let keep =
                done && g.settled().is_some() && self.writes.is_named(id, &g.anchor, &g.name);
            drop(g);
            if keep {
                self.writes.settle(id);
            } else if done {
                self.writes.remove(id);
            }
        }
    }

    /// `ln -s HEX NAME/anything`: anchors NAME to an existing ref without copying.
    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8]) -> Result<Entry, FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        let anchor = self.anchor_dir_of(parent)?;
        let text = std::str::from_utf8(target)
            .map_err(|_| FsError::BadName(String::from_utf8_lossy(target).into()))?;
        let r = Ref::from_hex(text.trim()).map_err(|_| FsError::BadName(text.into()))?;
        if !self.store.contains(&r).map_err(FsError::from_store)? {
            return Err(FsError::NotFound);
        }
        let at = name_time(name).unwrap_or_else(Timestamp::now);
        // Back-dated onto an existing version's time, or just before a version
        // with this very ref (the store would move that version earlier): history
        // does not change.
        if let Some(v) = self.snapshot().by_name(&anchor) {
            if v.version(at).is_some()
                || anchor::moved_by_put(&v.versions, anchor::Anchor { r, at }).is_some()
            {
                return Err(FsError::Exists);
            }
        }
        let (kind, _) = self.content_meta(&r)?;
        let res = self
            .writes
            .committer
            .commit(&self.store, &anchor, (r, kind), at);
        res.map_err(|cause| FsError::from_update("anchoring a ref", cause))?;
        self.ns.pending_dirs.lock().remove(&anchor);
        self.after_commit();
        // The kernel wants a symlink back: the anchor's `latest`, which now points at
        // the new version (or a newer one).
        let dir = self.lookup_key(super::inode::ROOT_INO, &names::escape(&anchor))?;
        let dir_ino = self.ns.ino_of(&dir);
        let mut e = self.lookup(dir_ino, super::LATEST)?;
        e.ttl = std::time::Duration::ZERO;
        Ok(e)
    }
}
