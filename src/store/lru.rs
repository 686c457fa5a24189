//! An LRU cache over any store, bounded in bytes; anchor calls pass through.
//!
//! Two lists share the budget's lock: blobs read (and small blobs written), and the
//! nodes of the maps this store installed, in a list of their own so that the nodes
//! each update supersedes fall out of it without pushing out what readers use.
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

/// The most bytes of installed maps' nodes kept (within the capacity): the nodes of
/// the last few updates, which the refresh after a commit and the next update
/// read. Older ones are mostly superseded (each update replaces its path of nodes).
const INSTALLED_BYTES: usize = 1 << 20;

/// Caches the blobs of an inner store, keeping at most `capacity` bytes.
pub struct LruStore<S> {
    inner: S,
    cache: Mutex<Caches>,
}

/// The two lists (see the module doc).
struct Caches {
    read: Cache,
    installed: Cache,
}

impl Caches {
    /// The cached blob `r`, from either list.
    fn get(&mut self, r: &Ref) -> Option<Blob> {
        self.read
            .entries
            .get(r)
            .or_else(|| self.installed.entries.get(r))
            .cloned()
    }

    fn peek_len(&self, r: &Ref) -> Option<usize> {
        self.read
            .entries
            .peek(r)
            .or_else(|| self.installed.entries.peek(r))
            .map(|b| b.len())
    }

    fn bytes(&self) -> usize {
        self.read.bytes + self.installed.bytes
    }
}

struct Cache {
    entries: LruCache<Ref, Blob>,
    bytes: usize,
    capacity: usize,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        Cache {
            entries: LruCache::unbounded(),
            bytes: 0,
            capacity,
        }
    }

    fn remove(&mut self, r: &Ref) {
        if let Some(old) = self.entries.pop(r) {
            self.bytes -= old.len();
        }
    }

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
            cache: Mutex::new({
                let installed = INSTALLED_BYTES.min(capacity / 4);
                Caches {
                    read: Cache::new(capacity - installed),
                    installed: Cache::new(installed),
                }
            }),
        }
    }

    /// The store below the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Bytes currently cached.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().bytes()
    }

    /// Drops `r` from the cache (after the blob was deleted below).
    pub fn forget(&self, r: &Ref) {
        let mut c = self.cache.lock();
        c.read.remove(r);
        c.installed.remove(r);
    }
}

impl<S: Getter> Getter for LruStore<S> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        if let Some(b) = self.cache.lock().get(r) {
            return Ok(b);
        }
        let b = self.inner.get(r)?;
        self.cache.lock().read.insert(*r, b.clone());
        Ok(b)
    }

    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        if let Some(b) = self.cache.lock().get(r) {
            return Ok(b);
        }
        let b = self.inner.get_at_most(r, max)?;
        self.cache.lock().read.insert(*r, b.clone());
        Ok(b)
    }

    /// A hit is copied; a miss is read below into `out` and not cached: it is a
    /// large read's, whose bytes the kernel's page cache keeps.
    fn get_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        let hit = self.cache.lock().get(r);
        match hit {
            Some(b) => Ok(crate::store::copy_blob_into(&b, out)),
            None => self.inner.get_into(r, out),
        }
    }

    /// Hits copied; every miss read below, as in [`get_into`](Getter::get_into),
    /// in one call.
    fn get_many_into(&self, jobs: &mut [(Ref, &mut [u8])]) -> Vec<Result<usize, StoreError>> {
        let hits: Vec<Option<Blob>> = {
            let mut c = self.cache.lock();
            jobs.iter().map(|(r, _)| c.get(r)).collect()
        };
        let mut out: Vec<Option<Result<usize, StoreError>>> = hits
            .iter()
            .zip(jobs.iter_mut())
            .map(|(hit, (_, dst))| {
                hit.as_ref()
                    .map(|b| Ok(crate::store::copy_blob_into(b, dst)))
            })
            .collect();
        let mut misses: Vec<(Ref, &mut [u8])> = jobs
            .iter_mut()
            .zip(&out)
            .filter(|(_, got)| got.is_none())
            .map(|((r, dst), _)| (*r, &mut **dst))
            .collect();
        if !misses.is_empty() {
            let mut fetched = self.inner.get_many_into(&mut misses).into_iter();
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                *slot = fetched.next();
            }
        }
        out.into_iter()
            .zip(jobs.iter())
            .map(|(got, (r, _))| got.unwrap_or(Err(StoreError::NotFound(*r))))
            .collect()
    }

    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        // Always below: a check is for what is stored, not what was cached.
        self.inner.check(r)
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        if self.cache.lock().peek_len(r).is_some() {
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
            refs.iter().map(|r| c.get(r).map(Ok)).collect()
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
                        c.read.insert(*r, b.clone());
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
        if let Some(len) = self.cache.lock().peek_len(r) {
            return Ok(len as u64);
        }
        self.inner.blob_size(r)
    }

    fn prefers_batches(&self) -> bool {
        self.inner.prefers_batches()
    }

    fn reads_ahead(&self) -> bool {
        self.inner.reads_ahead()
    }

    /// Passed below for the blobs not held here.
    fn prefetch(&self, refs: &[Ref]) {
        let misses: Vec<Ref> = {
            let c = self.cache.lock();
            refs.iter()
                .filter(|r| c.peek_len(r).is_none())
                .copied()
                .collect()
        };
        if !misses.is_empty() {
            self.inner.prefetch(&misses);
        }
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
            self.cache
                .lock()
                .read
                .insert(r, Blob::copy_from_slice(blob));
        }
        Ok((r, added))
    }

    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        let small = blob.len() <= SMALL_BLOB;
        let (r, added) = self.inner.put_blob(blob.clone())?;
        if small {
            self.cache.lock().read.insert(r, blob);
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
            c.installed.insert(*r, b.clone());
        }
        Ok(())
    }
}
