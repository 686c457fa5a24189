//! The namespace: what the mount shows and the numbers the kernel knows it by.
//!
//! Owns the current [`Snapshot`] of the anchors, the [`InodeTable`], the directories
//! made by `mkdir` that have no version yet, the cache of contents' kinds and sizes
//! (and the size log behind it), and [`refresh`](Namespace::refresh), which
//! replaces the snapshot when the anchor map moved and says which kernel cache
//! entries that made stale. A refresh that fails leaves the namespace stale
//! ([`is_stale`](Namespace::is_stale)), so the next look at the anchors tries
//! again; a directory made by `mkdir` is kept until a refresh shows its anchor.
//!
//! Locks, in order:
//! 1. `refreshing`: one refresh at a time. Held across the refresh's reads of the
//!    anchor map from the store (by design: an older map must never replace a
//!    newer one), and taken under a staged file's commit gate.
//! 2. `inodes`: held while a listing is made (which asks the staging part for the
//!    anchor's files being written) and, in a refresh, while stale inodes are
//!    numbered.
//!
//! Leaves, held for one operation and never across store I/O: `snapshot` (read to
//! clone the `Arc`, written once per refresh), `meta`, `pending_dirs`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Mutex, RwLock};

use super::inode::{InodeTable, NodeKey, ROOT_INO};
use super::view::{AnchorView, Snapshot};
use super::{names, sizes, Cause, FsError, Ino, Invalidations, SharedStore};
use crate::anchor::{self, Installed};
use crate::blob::Ref;
use crate::content::{self, ContentError, Kind};

/// Content metadata cached per ref: its kind and size.
type MetaCache = LruCache<Ref, (Kind, u64)>;

/// How many contents' kinds and sizes are remembered.
const META_CACHED: usize = 1 << 16;

/// The namespace of a mount: snapshot, inodes, directories made by `mkdir`,
/// content metadata.
pub(crate) struct Namespace {
    store: SharedStore,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The inode table.
    pub inodes: Mutex<InodeTable>,
    meta: Mutex<MetaCache>,
    sizes: Option<sizes::SizeLog>,
    refreshing: Mutex<()>,
    /// The last refresh failed: the snapshot may miss versions already committed
    /// (written under `refreshing`).
    stale: AtomicBool,
    /// Anchor directories made by `mkdir` that the snapshot does not show yet
    /// (dropped by the first refresh that shows them).
    pub pending_dirs: Mutex<BTreeSet<Vec<u8>>>,
}

impl Namespace {
    /// An empty namespace over `store` (nothing loaded until the first
    /// [`refresh`](Self::refresh)), with the size log `sizes`, if any.
    pub fn new(store: SharedStore, sizes: Option<sizes::SizeLog>) -> Namespace {
        Namespace {
            store,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            inodes: Mutex::new(InodeTable::new()),
            meta: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(META_CACHED).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            sizes,
            refreshing: Mutex::new(()),
            stale: AtomicBool::new(false),
            pending_dirs: Mutex::new(BTreeSet::new()),
        }
    }

    /// The size log, if any.
    pub fn size_log(&self) -> Option<&sizes::SizeLog> {
        self.sizes.as_ref()
    }

    /// The inode number of `key` (no lookup counted).
    pub fn ino_of(&self, key: &NodeKey) -> Ino {
        self.inodes.lock().ino_of(key)
    }

    /// The current snapshot of the anchors.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }

    /// Whether the last refresh failed, so the snapshot may miss what is in the
    /// store (a version this mount committed among it).
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Re-reads the anchor map if its ref moved; returns the kernel cache entries
    /// that the change makes stale. If it fails the namespace is
    /// [stale](Self::is_stale) until a refresh succeeds; one that succeeds drops the
    /// directories made by `mkdir` whose anchors it shows.
    pub fn refresh(&self) -> Result<Invalidations, FsError> {
        self.refresh_after(None)
    }

    /// [`refresh`](Self::refresh) after an update of this mount's that moved the
    /// map ref from `installed.old` to `installed.new`: if the snapshot is of
    /// `old`, `new` is newer and is read without asking the store for its ref (a
    /// round trip on a store across a network); otherwise the ref is read.
    pub fn refresh_after(&self, installed: Option<Installed>) -> Result<Invalidations, FsError> {
        // One refresh at a time (a commit's and the poller's), so an older map can
        // never replace a newer one.
        let _serial = self.refreshing.lock();
        let known = installed
            .filter(|i| i.new.is_some() && !self.is_stale() && self.snapshot().map_ref == i.old)
            .map(|i| i.new);
        let res = self.reread(known);
        self.stale.store(res.is_err(), Ordering::Release);
        if res.is_ok() {
            let snap = self.snapshot();
            self.pending_dirs
                .lock()
                .retain(|name| snap.by_name(name).is_none());
        }
        res
    }

    /// The work of [`refresh`](Self::refresh), under `refreshing`.
    fn reread(&self, known: Option<Option<Ref>>) -> Result<Invalidations, FsError> {
        let map_ref = match known {
            Some(r) => r,
            None => anchor::map_ref(&*self.store).map_err(FsError::from_anchor)?,
        };
        let old = self.snapshot();
        if old.map_ref == map_ref && map_ref.is_some() {
            return Ok(Invalidations::default());
        }
        // Compare the map's trie with the one the snapshot was built from, reading
        // only the nodes that differ: the cost of a refresh follows the change, not
        // the number of anchors. A snapshot that is empty or that missed damaged
        // nodes (which may read again now), or a diff that cannot read the older
        // map, is followed by a reading of the whole map.
        let log_damage = |damaged: &[(Ref, crate::schema::SchemaError)]| {
            for (node, e) in damaged {
                log::error!(
                    "anchor map node {node} cannot be read, the anchors it holds are \
                     not shown: {e}"
                );
            }
        };
        let empty = crate::schema::Map::empty_ref();
        let new_root = map_ref.unwrap_or(empty);
        let incremental = match old.map_ref {
            Some(old_root) if !old.partial => {
                match crate::schema::Map::diff_skipping_damage(&*self.store, &old_root, &new_root) {
                    Ok(read) => Some(read),
                    Err(e) => {
                        log::debug!("comparing anchor map {old_root} with {new_root}: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        let (new, changed) = match incremental {
            Some(read) => {
                log_damage(&read.damaged);
                let (mut new, changed) = old.apply(map_ref, &read.changes);
                new.partial = !read.damaged.is_empty();
                (Arc::new(new), changed)
            }
            None => {
                let read = crate::schema::Map::entries_skipping_damage(&*self.store, &new_root)
                    .map_err(|e| FsError::from_anchor(e.into()))?;
                log_damage(&read.damaged);
                let entries = read.entries;
                let mut new = Snapshot::rebuild(map_ref, entries, &old);
                new.partial = !read.damaged.is_empty();
                let changed = old.changed_since(&new);
                (Arc::new(new), changed)
            }
        };
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

    /// The node numbered `ino`, if the kernel may know it.
    pub fn key_of(&self, ino: Ino) -> Result<NodeKey, FsError> {
        self.inodes
            .lock()
            .get(ino)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    /// The kind and size of `r`'s content, cached.
    pub fn content_meta(&self, r: &Ref) -> Result<(Kind, u64), FsError> {
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
    pub fn note_meta(&self, r: &Ref, kind: Kind, size: u64) {
        self.meta.lock().put(*r, (kind, size));
        if let Some(log) = &self.sizes {
            log.record(&[(*r, size)]);
        }
    }

    /// The size of `r`'s content: from what this mount worked out, else the size
    /// log, else the store.
    pub fn content_size(&self, r: &Ref) -> Result<u64, FsError> {
        match self.known_size(r) {
            Some(size) => Ok(size),
            None => Ok(self.content_meta(r)?.1),
        }
    }

    /// The size of `r`'s content if known without reading the store: what this
    /// mount worked out, else what the size log says.
    pub fn known_size(&self, r: &Ref) -> Option<u64> {
        let worked_out = self.meta.lock().peek(r).map(|(_, size)| *size);
        worked_out.or_else(|| self.sizes.as_ref().and_then(|l| l.get(r)))
    }

    pub fn damaged(&self, r: &Ref, e: ContentError) -> FsError {
        let err = FsError::from_content(*r, e);
        log::error!("reading {r}: {err}");
        err
    }

    /// The view of anchor `name`: from the snapshot, or empty for a directory made by
    /// `mkdir` that has no version yet.
    pub fn anchor_view(&self, snap: &Snapshot, name: &[u8]) -> Option<Arc<AnchorView>> {
        if let Some(v) = snap.by_name(name) {
            return Some(v.clone());
        }
        self.pending_dirs
            .lock()
            .contains(name)
            .then(|| Arc::new(AnchorView::new(name.to_vec(), &[])))
    }

    /// The view of anchor `name` for looking inside it: `EIO` if its history does not
    /// decode.
    pub fn readable_view(&self, snap: &Snapshot, name: &[u8]) -> Result<Arc<AnchorView>, FsError> {
        let v = self.anchor_view(snap, name).ok_or(FsError::NotFound)?;
        match &v.damaged {
            Some(why) => {
                log::error!("anchor {}: {why}", names::escape(name).escape_ascii());
                Err(FsError::Damaged {
                    r: v.history_ref,
                    source: Arc::new(Cause::History(why.clone())),
                })
            }
            None => Ok(v),
        }
    }
}
