//! An LRU cache over any store, bounded in bytes; anchor calls pass through.
//!
//! Locks: `cache`, held only to look up, insert or drop an entry, never while the
//! store below is called.

use std::path::Path;

use lru::LruCache;
use parking_lot::Mutex;

use super::{
    AnchorGetter, AnchorStore, Capacity, Getter, MapWatch, Store, StoreError, StoreSettings,
};
use crate::blob::{Blob, Ref};

/// Written blobs up to this size are cached on the way in.
const SMALL_BLOB: usize = 16 << 10;

/// The largest node of a newly installed map the cache keeps.
const MAP_NODE_MAX: usize = 64 << 10;

/// Caches the blobs of an inner store, keeping at most `capacity` bytes.
pub struct LruStore<S> {
    inner: S,
    cache: Mutex<Cache>,
}

struct Cache {
    entries: LruCache<Ref, Blob>,
    bytes: usize,
    capacity: usize,
}

impl Cache {
    fn insert(&mut self, r: Ref, b: Blob) {
        if b.len() > self.capacity {
            return;
        }
        self.bytes += b.len();
        if let Some(old) = self.entries.put(r, b) {
            self.bytes -= old.len();
        }
        while self.bytes > self.capacity {
            match self.entries.pop_lru() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

impl<S> LruStore<S> {
    /// A cache of at most `capacity` bytes of blobs over `inner`.
    pub fn new(inner: S, capacity: usize) -> LruStore<S> {
        LruStore {
            inner,
            cache: Mutex::new(Cache {
                entries: LruCache::unbounded(),
                bytes: 0,
                capacity,
            }),
        }
    }

    /// The store below the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Bytes currently cached.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().bytes
    }

    /// Drops `r` from the cache (after the blob was deleted below).
    pub fn forget(&self, r: &Ref) {
        let mut c = self.cache.lock();
        if let Some(old) = c.entries.pop(r) {
            c.bytes -= old.len();
        }
    }
}

impl<S: Getter> Getter for LruStore<S> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        if let Some(b) = self.cache.lock().entries.get(r) {
            return Ok(b.clone());
        }
        let b = self.inner.get(r)?;
        self.cache.lock().insert(*r, b.clone());
        Ok(b)
    }

    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        if let Some(b) = self.cache.lock().entries.get(r) {
            return Ok(b.clone());
        }
        let b = self.inner.get_at_most(r, max)?;
        self.cache.lock().insert(*r, b.clone());
        Ok(b)
    }

    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        // Always below: a check is for what is stored, not what was cached.
        self.inner.check(r)
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        if self.cache.lock().entries.contains(r) {
            return Ok(true);
        }
        self.inner.contains(r)
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.list_refs(after, f)
    }

    /// Hits from memory; every miss from the store below in one call.
    fn get_many(&self, refs: &[Ref]) -> Vec<Result<Blob, StoreError>> {
        let mut out: Vec<Option<Result<Blob, StoreError>>> = {
            let mut c = self.cache.lock();
            refs.iter()
                .map(|r| c.entries.get(r).map(|b| Ok(b.clone())))
                .collect()
        };
        let misses: Vec<Ref> = refs
            .iter()
            .zip(&out)
            .filter(|(_, got)| got.is_none())
            .map(|(r, _)| *r)
            .collect();
        if !misses.is_empty() {
            let mut fetched = misses.iter().zip(self.inner.get_many(&misses));
            let mut c = self.cache.lock();
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                if let Some((r, res)) = fetched.next() {
                    if let Ok(b) = &res {
                        c.insert(*r, b.clone());
                    }
                    *slot = Some(res);
                }
            }
        }
        out.into_iter()
            .zip(refs)
            .map(|(got, r)| got.unwrap_or(Err(StoreError::NotFound(*r))))
            .collect()
    }

    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        if let Some(b) = self.cache.lock().entries.peek(r) {
            return Ok(b.len() as u64);
        }
        self.inner.blob_size(r)
    }

    fn prefers_batches(&self) -> bool {
        self.inner.prefers_batches()
    }

    fn identity(&self) -> Option<String> {
        self.inner.identity()
    }

    fn local_dir(&self) -> Option<&Path> {
        self.inner.local_dir()
    }

    fn capacity(&self) -> Option<Capacity> {
        self.inner.capacity()
    }

    fn recorded_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        self.inner.recorded_settings()
    }
}

impl<S: Store> Store for LruStore<S> {
    // What is written is not cached: a large write would only push out what readers
    // use, and copying every blob costs as much as storing it. Small blobs (trie
    // nodes, which the next update reads again) are the exception.
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        let (r, added) = self.inner.put(blob)?;
        if blob.len() <= SMALL_BLOB {
            self.cache.lock().insert(r, Blob::copy_from_slice(blob));
        }
        Ok((r, added))
    }

    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        let small = blob.len() <= SMALL_BLOB;
        let (r, added) = self.inner.put_blob(blob.clone())?;
        if small {
            self.cache.lock().insert(r, blob);
        }
        Ok((r, added))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        self.inner.record_settings(settings)
    }
}

impl<S: AnchorGetter> AnchorGetter for LruStore<S> {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        self.inner.anchor_map_ref()
    }

    fn watch(&self) -> Option<Box<dyn MapWatch>> {
        self.inner.watch()
    }

    fn known_map_ref(&self) -> Option<Option<Ref>> {
        self.inner.known_map_ref()
    }
}

impl<S: AnchorStore> AnchorStore for LruStore<S> {
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
        self.inner.swap_anchor_map(old, new)
    }

    fn put_and_swap(
        &self,
        blobs: &[(Ref, Blob)],
        old: Option<Ref>,
        new: Ref,
    ) -> Result<(), StoreError> {
        self.inner.put_and_swap(blobs, old, new)?;
        // The nodes of the map just installed, which the refresh after a commit
        // and the next update read, up to a size: one leaf of a long history is
        // hundreds of KiB, superseded at the next commit.
        let mut c = self.cache.lock();
        for (r, b) in blobs.iter().filter(|(_, b)| b.len() <= MAP_NODE_MAX) {
            c.insert(*r, b.clone());
        }
        Ok(())
    }
}
