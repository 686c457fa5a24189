//! Looking nodes up: names to nodes, nodes to attributes, links, extended
//! attributes, filesystem figures. Methods of the facade [`AnchorFs`] that read
//! the namespace and ask the staging part about files being written.
//!
//! Takes no lock of its own. `readlink` and a lookup in an anchor directory first
//! commit files flushed unwritten (see `settle_unwritten`), with no lock held.

use std::time::{Duration, SystemTime};

use super::inode::NodeKey;
use super::{
    names, AnchorFs, Attr, Entry, FileKind, FsError, Ino, StatFs, IMMUTABLE_TTL, LATEST, META_DIR,
    XATTR_AT, XATTR_REF, XATTR_USER_PREFIX,
};
use crate::blob::Ref;
use crate::timestamp::Timestamp;

fn blocks(size: u64) -> u64 {
    size.div_ceil(512)
}

impl AnchorFs {
    pub(super) fn dir_attr(&self, ino: Ino, mtime: SystemTime, nlink: u32) -> Attr {
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

    pub(super) fn file_attr(&self, ino: Ino, size: u64, mtime: SystemTime) -> Attr {
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

    /// The attributes of the node `key` (numbered `ino`).
    pub(super) fn attr_of(&self, key: &NodeKey, ino: Ino) -> Result<(Attr, Duration), FsError> {
        let snap = self.snapshot();
        let short = self.opts.mutable_ttl;
        match key {
            NodeKey::Root => {
                let newest = snap
                    .newest()
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
                    .staging
                    .in_place_writer(ino)
                    .and_then(|id| self.staging.get(id))
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
                let f = self.staging.get(*id).ok_or(FsError::NotFound)?;
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

    /// The node `name` in directory `parent` (no lookup counted).
    pub(crate) fn lookup_key(&self, parent: Ino, name: &[u8]) -> Result<NodeKey, FsError> {
        let pkey = self.key_of(parent)?;
        self.child_key(&pkey, name)
    }

    /// The node `name` in directory `parent`, if it exists (no lookup counted).
    pub(super) fn child_key(&self, parent: &NodeKey, name: &[u8]) -> Result<NodeKey, FsError> {
        if name.len() > names::NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        // Files flushed unwritten are committed before the snapshot is taken, so
        // that this look sees the versions they become.
        if let NodeKey::AnchorDir(anchor) = parent {
            if name == LATEST || names::parse_version_name(name).is_some() {
                self.settle_unwritten(anchor);
            }
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
                    Some(names::Unescaped::Name(n)) if self.ns.pending_dirs.lock().contains(&n) => {
                        Ok(NodeKey::AnchorDir(n))
                    }
                    _ => Err(FsError::NotFound),
                }
            }
            NodeKey::AnchorDir(anchor) => {
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

    /// Looks up `name` in directory `parent` and counts one kernel reference.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Entry, FsError> {
        self.lookup_as(parent, name, None)
    }

    /// [`lookup`](Self::lookup) for the thread `caller`: a version it has just
    /// opened for writing is, for it alone and until it opens it, the new file that
    /// open moved to (see [`open_as`](Self::open_as)).
    pub fn lookup_as(
        &self,
        parent: Ino,
        name: &[u8],
        caller: Option<u32>,
    ) -> Result<Entry, FsError> {
        let pkey = self.key_of(parent)?;
        if matches!(pkey, NodeKey::Root | NodeKey::AnchorDir(_)) {
            self.refresh_if_stale();
        }
        // A staged file can go between finding its name and reading its attributes
        // (a rename over it, its expiry): the name is then looked up again, and
        // names the file that took its place, a version, or nothing.
        let mut rounds = 0;
        let (key, ino, attr, ttl) = loop {
            let mut key = self.child_key(&pkey, name)?;
            if let (Some(caller), NodeKey::Version(..)) = (caller, &key) {
                if let Some(id) = self.moved_write(caller, &key) {
                    key = NodeKey::Staged(id);
                }
            }
            let ino = self.ns.ino_of(&key);
            match self.attr_of(&key, ino) {
                Err(FsError::NotFound) if matches!(key, NodeKey::Staged(_)) && rounds < 8 => {
                    rounds += 1;
                }
                res => {
                    let (attr, ttl) = res?;
                    break (key, ino, attr, ttl);
                }
            }
        };
        let ino2 = self.ns.inodes.lock().lookup(&key);
        debug_assert_eq!(ino, ino2);
        Ok(Entry { attr, ttl })
    }

    /// The kernel drops `n` references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.ns.inodes.lock().forget(ino, n);
    }

    /// The attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> Result<Entry, FsError> {
        let key = self.key_of(ino)?;
        if matches!(
            key,
            NodeKey::Root | NodeKey::AnchorDir(_) | NodeKey::Latest(_)
        ) {
            self.refresh_if_stale();
        }
        let (attr, ttl) = self.attr_of(&key, ino)?;
        Ok(Entry { attr, ttl })
    }

    /// The target of the symlink `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        match self.key_of(ino)? {
            NodeKey::Latest(name) => {
                self.refresh_if_stale();
                self.settle_unwritten(&name);
                let snap = self.snapshot();
                let v = snap.by_name(&name).ok_or(FsError::NotFound)?;
                let a = v.latest().ok_or(FsError::NotFound)?;
                Ok(self.opts.time_names.format(a.at).into_bytes())
            }
            _ => Err(FsError::NotLink),
        }
    }

    /// The value of extended attribute `name` of `ino`. Only the `user.` namespace
    /// exists here: a name in any other (`security.selinux`, the POSIX ACLs of
    /// `system.`) is not supported (EOPNOTSUPP), which tells `ls -l` after the first
    /// file of a listing to stop asking, instead of two round trips per entry.
    pub fn getxattr(&self, ino: Ino, name: &str) -> Result<Vec<u8>, FsError> {
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
    pub fn setxattr(&self, ino: Ino) -> Result<(), FsError> {
        self.key_of(ino).map(|_| ())?;
        Err(FsError::NotSupported)
    }

    /// The names of `ino`'s extended attributes, each NUL-terminated.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        Ok(match self.version_of(ino)? {
            Some(_) => format!("{XATTR_REF}\0{XATTR_AT}\0").into_bytes(),
            None => Vec::new(),
        })
    }

    /// The ref and time behind a file, if it is a version (or time travel to one).
    pub(super) fn version_of(&self, ino: Ino) -> Result<Option<(Ref, Timestamp)>, FsError> {
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

    /// Filesystem figures: the store's [`capacity`](crate::store::Getter::capacity)
    /// (the backing filesystem's, for a store on disk).
    pub fn statfs(&self) -> StatFs {
        let space = self.store().capacity().unwrap_or(crate::store::Capacity {
            bsize: 4096,
            frsize: 4096,
            ..Default::default()
        });
        StatFs {
            space,
            namelen: names::NAME_MAX as u32,
        }
    }
}
