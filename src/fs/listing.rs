//! Directory listings, with or without each entry's attributes. Methods of the
//! facade [`AnchorFs`].
//!
//! A listing is made under the namespace's `inodes` lock (every entry is
//! numbered), which asks the staging part for the anchor's files being written
//! (`files`, `by_name`, a staged file, in that order). The contents' sizes of a
//! listing with attributes are fetched afterwards, with no lock held.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::inode::{NodeKey, ROOT_INO};
use super::view::AnchorView;
use super::{
    names, AnchorFs, Attr, DirEntry, Entry, FileKind, FsError, Ino, LATEST, META_DIR, META_FETCHES,
};
use crate::blob::Ref;

/// The `i`th own entry of a directory listing: inode, type, name.
type ListingEntry<'a> = dyn Fn(usize) -> (Ino, FileKind, Vec<u8>) + 'a;

impl AnchorFs {
    /// Up to `max` entries of directory `ino`, starting after offset `offset`
    /// (0: from the start). Offsets are positions in the listing, so a listing is
    /// produced once, in linear time, however many pages it takes.
    pub fn readdir(&self, ino: Ino, offset: u64, max: usize) -> Result<Vec<DirEntry>, FsError> {
        let key = self.key_of(ino)?;
        if matches!(key, NodeKey::Root | NodeKey::AnchorDir(_)) && offset == 0 {
            self.refresh_if_stale();
        }
        if let (NodeKey::AnchorDir(anchor), 0) = (&key, offset) {
            self.settle_unwritten(anchor);
        }
        let snap = self.snapshot();
        let inodes = self.ns.inodes.lock();
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
                    .ns
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
                    .staging
                    .in_anchor(name)
                    .into_iter()
                    .filter(|(id, _)| !self.staging.is_settled(*id))
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
            NodeKey::AtDir | NodeKey::RefsDir => {
                (0, Box::new(|_| (Ino(0), FileKind::Dir, Vec::new())))
            }
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
        ino: Ino,
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
            self.ns.inodes.lock().lookup(&key);
        }
        Ok(())
    }

    /// Loads the kind and size of the content behind each version key that is not
    /// cached yet, on up to [`META_FETCHES`] threads.
    pub(super) fn prefetch_metas(&self, keys: &[Option<NodeKey>]) {
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
}
