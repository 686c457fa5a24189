//! An in-memory store, for tests and for `mem:` mounts.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

use super::{AnchorGetter, AnchorStore, DeletingStore, Getter, Store, StoreError};
use crate::blob::{Blob, Ref};

/// A store that keeps everything in memory.
#[derive(Default)]
pub struct MemStore {
    blobs: RwLock<BTreeMap<Ref, (Blob, SystemTime)>>,
    map_ref: Mutex<Option<Ref>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// The number of blobs held.
    pub fn len(&self) -> usize {
        self.blobs.read().len()
    }

    /// Whether the store holds no blob.
    pub fn is_empty(&self) -> bool {
        self.blobs.read().is_empty()
    }
}

impl Getter for MemStore {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        self.blobs
            .read()
            .get(r)
            .map(|(b, _)| b.clone())
            .ok_or(StoreError::NotFound(*r))
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        Ok(self.blobs.read().contains_key(r))
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        // Walk in pages so the lock is never held while `f` runs.
        let mut cursor = *after;
        loop {
            let page: Vec<Ref> = self
                .blobs
                .read()
                .range((Bound::Excluded(cursor), Bound::Unbounded))
                .take(1024)
                .map(|(r, _)| *r)
                .collect();
            let Some(last) = page.last().copied() else {
                return Ok(());
            };
            for r in page {
                if !f(r)? {
                    return Ok(());
                }
            }
            cursor = last;
        }
    }
}

impl Store for MemStore {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        let r = Ref::of(blob);
        if let Some((_, t)) = self.blobs.write().get_mut(&r) {
            // Written again: young again, for gc's grace period.
            *t = SystemTime::now();
            return Ok((r, false));
        }
        self.insert(r, Blob::copy_from_slice(blob))
    }

    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        let r = Ref::of(&blob);
        self.insert(r, blob)
    }
}

impl MemStore {
    fn insert(&self, r: Ref, data: Blob) -> Result<(Ref, bool), StoreError> {
        let mut blobs = self.blobs.write();
        let added = !blobs.contains_key(&r);
        blobs
            .entry(r)
            .and_modify(|(_, t)| *t = SystemTime::now())
            .or_insert_with(|| (data, SystemTime::now()));
        Ok((r, added))
    }
}

impl AnchorGetter for MemStore {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        self.map_ref.lock().ok_or(StoreError::NoAnchorMap)
    }
}

impl AnchorStore for MemStore {
    fn update_anchor_map(
        &self,
        f: &mut dyn FnMut(Ref) -> Result<Ref, StoreError>,
    ) -> Result<Ref, StoreError> {
        let old = *self.map_ref.lock();
        let base = old.unwrap_or(Ref::ZERO);
        let new = f(base)?;
        if new == base {
            return Ok(new);
        }
        let mut cur = self.map_ref.lock();
        if *cur != old {
            return Err(StoreError::UpdateConflict);
        }
        *cur = Some(new);
        Ok(new)
    }
}

impl DeletingStore for MemStore {
    fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
        Ok(self.blobs.write().remove(r).is_some())
    }

    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
        self.blobs
            .read()
            .get(r)
            .map(|(_, t)| *t)
            .ok_or(StoreError::NotFound(*r))
    }
}
