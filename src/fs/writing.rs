//! Writing files: creating them, opening versions for writing (in place or moved
//! to a new file), writes and `setattr`. Methods of the facade [`AnchorFs`]
//! over the staging part; see `closing` for where writes become versions.
//!
//! Takes no lock of its own. A write locks its staged file across the store or
//! spool I/O of its bytes; the handle table's `appending` is asked under it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::sync::Mutex;

use super::committer::name_time;
use super::inode::NodeKey;
use super::staging::data::Data;
use super::staging::{same_anchor, CommitState, MovedWrite, StagedFile, MOVED_WRITE_LIFE};
use super::{content, names, AnchorFs, Entry, Fh, FsError, Ino, Opened, StagedId};
use crate::timestamp::Timestamp;

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

impl AnchorFs {
    pub(super) fn write_handle(&self, id: StagedId) -> Result<Fh, FsError> {
        Ok(self.handles.open_write(id))
    }

    /// The staged file `name` of `anchor`, if any. A closed file that keeps naming
    /// the version it became is forgotten once no version of the anchor has its
    /// content any more (expired).
    pub(crate) fn staged_by_name(&self, anchor: &[u8], name: &[u8]) -> Option<StagedId> {
        let (id, f) = self.staging.find_file(anchor, name)?;
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
        self.staging.remove(id);
        None
    }

    /// Opens a closed, committed file for reading only: a reader of the version it
    /// became (its own handle, through the page cache for this open), or `None`
    /// if it has changed since its commit.
    pub(crate) fn open_settled(&self, id: StagedId) -> Result<Option<Opened>, FsError> {
        let Some(f) = self.staging.get(id) else {
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

    pub(super) fn anchor_dir_of(&self, parent: Ino) -> Result<Vec<u8>, FsError> {
        match self.key_of(parent)? {
            NodeKey::AnchorDir(a) => Ok(a),
            NodeKey::Root => Err(FsError::Immutable),
            _ => Err(FsError::ReadOnly),
        }
    }

    pub(super) fn check_name(name: &[u8]) -> Result<(), FsError> {
        if name.len() > names::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if name.is_empty() || name == b"." || name == b".." {
            return Err(FsError::BadName(String::from_utf8_lossy(name).into()));
        }
        Ok(())
    }

    /// Creates a new file in an anchor directory with the default mode; returns its
    /// entry and handle.
    pub fn create(&self, parent: Ino, name: &[u8]) -> Result<(Entry, Fh), FsError> {
        self.create_with_mode(parent, name, super::modes::DEFAULT_FILE_MODE)
    }

    /// Creates a new file in an anchor directory with permission bits `mode` (kept
    /// with the versions it becomes); returns its entry and handle.
    pub fn create_with_mode(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u16,
    ) -> Result<(Entry, Fh), FsError> {
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
        let (id, f) = self
            .staging
            .new_staged(&anchor, name, Data::empty(), true)?;
        f.lock().mode = mode & 0o777;
        let fh = self.write_handle(id)?;
        let entry = self.lookup(parent, name)?;
        Ok((entry, fh))
    }

    /// The staged file a write-open of `version` by `caller` moved to, if any.
    pub(crate) fn moved_write(&self, caller: u32, version: &NodeKey) -> Option<StagedId> {
        self.forget_stale_moves();
        self.staging
            .moved
            .lock()
            .iter()
            .find(|m| m.opener == caller && same_anchor(&m.version, version))
            .map(|m| m.id)
    }

    /// Drops moved opens whose opener never came back, and their files.
    pub(super) fn forget_stale_moves(&self) {
        for id in self
            .staging
            .take_moves(|m| m.since.elapsed() > MOVED_WRITE_LIFE)
        {
            if self.staging.get(id).is_some_and(|f| f.lock().open == 0) {
                self.staging.remove(id);
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
        opener: u32,
        version: &NodeKey,
        truncate: bool,
    ) -> Result<Opened, FsError> {
        self.forget_stale_moves();
        let waiting = self.staging.take_moves(|m| m.opener == opener);
        if !waiting.is_empty() {
            log::debug!("a moved open came back to a version: writing over it in place");
            for id in waiting {
                self.staging.remove(id);
            }
            let ino = self.ns.ino_of(version);
            return self.open_for_write(version, ino, truncate);
        }
        let NodeKey::Version(anchor, at) = version else {
            return Err(FsError::ReadOnly);
        };
        let (id, f) = self.stage_over(anchor, *at, truncate)?;
        // Nobody has it open until the opener comes back for it.
        f.lock().open = 0;
        self.staging.moved.lock().push(MovedWrite {
            opener,
            version: version.clone(),
            id,
            since: Instant::now(),
        });
        Err(FsError::LookUpAgain)
    }

    /// A new staged file written over the version of `anchor` at `at`, not listed
    /// under a name of its own: the version appears under its commit time when the
    /// file is closed. It keeps the version's mode and, seeded with the old content,
    /// has nothing to commit unless written, and until then is as old as the version
    /// (editors compare the times before writing).
    fn stage_over(
        &self,
        anchor: &[u8],
        at: Timestamp,
        truncate: bool,
    ) -> Result<(StagedId, Arc<Mutex<StagedFile>>), FsError> {
        let data = self.seed(anchor, at, truncate)?;
        let mode = self.opts.modes.file(self.recorded_mode(anchor, at));
        let (id, f) = self
            .staging
            .new_staged(anchor, super::LATEST, data, false)?;
        {
            let mut g = f.lock();
            g.mode = mode;
            g.dirty = truncate;
            if !truncate {
                g.mtime = at.to_system_time();
            }
        }
        Ok((id, f))
    }

    /// The content a file written over the version of `anchor` at `at` starts with.
    pub(super) fn seed(
        &self,
        anchor: &[u8],
        at: Timestamp,
        truncate: bool,
    ) -> Result<Data, FsError> {
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
        ino: Ino,
        truncate: bool,
    ) -> Result<Opened, FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        match key {
            NodeKey::Staged(id) => {
                let f = self.staging.get(*id).ok_or(FsError::NotFound)?;
                // A moved open's file, now opened by its opener.
                self.staging.take_moves(|m| m.id == *id);
                let mut g = f.lock();
                if g.open == 0 {
                    // A closed file opened again (a name that kept naming its
                    // version): a new writing begins, with no write and no writer
                    // yet, so a shell's `>` closing its duplicate before the write
                    // commits nothing here either.
                    g.written = false;
                    g.writer_owner = None;
                }
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
                let (id, f) = self.stage_over(anchor, *at, truncate)?;
                f.lock().over_version = Some(ino);
                self.staging.written_over.lock().insert(ino);
                self.staging.in_place.lock().insert(ino, id);
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
        fh: Fh,
        offset: u64,
        data: &[u8],
        owner: Option<u32>,
    ) -> Result<usize, FsError> {
        let owner = owner.map(|thread| self.processes.process_of(thread));
        let id = self.write_id(fh)?;
        let f = self.staging.get(id).ok_or(FsError::BadHandle)?;
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
        if let Err(e) = self.staging.write_data(&mut g, offset, data) {
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

    pub(super) fn write_id(&self, fh: Fh) -> Result<StagedId, FsError> {
        self.handles.write_id(fh)
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
        ino: Ino,
        fh: Option<Fh>,
        change: &SetAttr,
        owner: Option<u32>,
    ) -> Result<Entry, FsError> {
        let owner = owner.map(|thread| self.processes.process_of(thread));
        let SetAttr { size, mtime, mode } = *change;
        let key = self.key_of(ino)?;
        let id = match (&key, fh.map(|fh| self.write_id(fh))) {
            (_, Some(Ok(id))) => Some(id),
            (NodeKey::Staged(id), _) => Some(*id),
            _ => None,
        };
        match id {
            Some(id) => {
                let f = self.staging.get(id).ok_or(FsError::NotFound)?;
                let mut g = f.lock();
                if let Some(size) = size {
                    if size != g.len() {
                        if let Err(e) = self.staging.truncate_data(&mut g, size) {
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

    /// Reads from a file open for writing (its own bytes so far).
    pub(crate) fn read_staged(
        &self,
        id: StagedId,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, FsError> {
        let f = self.staging.get(id).ok_or(FsError::BadHandle)?;
        let mut g = f.lock();
        self.staging.read_data(&mut g, offset, size)
    }
}
