//! Changing directories: `mkdir` of an anchor, `unlink` and `rename` of files
//! being written (a rename onto a normal name commits), `rmdir` of an empty
//! anchor directory, and `symlink`, which anchors an existing ref. Methods of the
//! facade [`AnchorFs`].
//!
//! Takes no lock of its own; see `staging` for the locks of staged files.

use super::committer::name_time;
use super::inode::NodeKey;
use super::{names, AnchorFs, Entry, FsError, Ino, StagedId};
use crate::anchor;
use crate::blob::Ref;
use crate::timestamp::Timestamp;

impl AnchorFs {
    /// `mkdir NAME` at the root: an anchor directory that exists until its first
    /// version.
    pub fn mkdir(&self, parent: Ino, name: &[u8]) -> Result<Entry, FsError> {
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

    /// Removes a staged (scratch or uncommitted) file; versions cannot be removed.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        let anchor = self.anchor_dir_of(parent)?;
        // A name history shows (a version, `latest`) is history, even while a file of
        // that name is being written.
        if let NodeKey::Staged(id) = self.lookup_key(parent, name)? {
            let f = self.staging.get(id).ok_or(FsError::NotFound)?;
            let mut g = f.lock();
            g.unlinked = true;
            let open = g.open;
            drop(g);
            self.staging.by_name.lock().remove(&(anchor, name.to_vec()));
            if open == 0 {
                self.staging.remove(id);
            }
            return Ok(());
        }
        Err(FsError::Immutable)
    }

    /// Removes an anchor directory made by `mkdir` that has no version yet.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<(), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        match self.lookup_key(parent, name)? {
            NodeKey::AnchorDir(anchor) => {
                if self.snapshot().by_name(&anchor).is_some() {
                    return Err(FsError::Immutable);
                }
                if !self.staging.in_anchor(&anchor).is_empty() {
                    return Err(FsError::NotEmpty);
                }
                self.ns.pending_dirs.lock().remove(&anchor);
                self.ns.inodes.lock().retire(&NodeKey::AnchorDir(anchor));
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
        parent: Ino,
        name: &[u8],
        newparent: Ino,
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
        let f = self.staging.get(id).ok_or(FsError::NotFound)?;
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
                    let mut names_map = self.staging.by_name.lock();
                    let key = (anchor.clone(), name.to_vec());
                    if names_map.get(&key) == Some(&id) {
                        names_map.remove(&key);
                    }
                }
                if f.lock().open == 0 {
                    self.staging.remove(id);
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
            let mut names_map = self.staging.by_name.lock();
            names_map.remove(&(anchor.clone(), name.to_vec()));
            names_map.insert((new_anchor.clone(), target.clone()), id)
        };
        if let Some(old) = displaced.filter(|&old| old != id) {
            self.staging.displace(old);
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
    pub(super) fn release_write_if_closed(&self, id: StagedId) {
        if let Some(f) = self.staging.get(id) {
            let g = f.lock();
            let done = g.open == 0 && !g.dirty;
            let keep =
                done && g.settled().is_some() && self.staging.is_named(id, &g.anchor, &g.name);
            drop(g);
            if keep {
                self.staging.settle(id);
            } else if done {
                self.staging.remove(id);
            }
        }
    }

    /// `ln -s HEX NAME/anything`: anchors NAME to an existing ref without copying.
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8]) -> Result<Entry, FsError> {
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
        let res = self.committer.commit(&anchor, (r, kind), at, None);
        let installed = res.map_err(|cause| FsError::from_update("anchoring a ref", cause))?;
        self.after_commit(Some(installed));
        // The kernel wants a symlink back: the anchor's `latest`, which now points at
        // the new version (or a newer one).
        let dir = self.lookup_key(super::inode::ROOT_INO, &names::escape(&anchor))?;
        let dir_ino = self.ns.ino_of(&dir);
        let mut e = self.lookup(dir_ino, super::LATEST)?;
        e.ttl = std::time::Duration::ZERO;
        Ok(e)
    }
}
