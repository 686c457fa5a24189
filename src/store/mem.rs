//! An in-memory store, for tests and for `mem:` mounts and commands: the spec
//! `mem:` opens a new, empty one.
//!
//! A store made with [`MemStore::watched`] announces every successful swap of the
//! anchor map to the watches it gives ([`AnchorGetter::watch`]), as a network
//! store tells of other hosts' commits; one made with [`MemStore::new`] (and
//! `mem:`) gives none and is polled.
//!
//! Its settings ([`super::settings`]) are kept in memory: [`MemStore::new`] has
//! none (Go's, as the tests that compare with Go expect), and `mem:` records
//! [`StoreSettings::NEW_STORE`], as any store created by an opener does.
//!
//! Locks: `blobs` (a read-write lock over the blob map), `map_ref` (the anchor
//! map ref) and `settings`, each held only for the operation itself, never together, and
//! never while a caller's closure runs. The change signal's own lock is taken
//! after `map_ref` is released.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

use super::{
    AnchorGetter, AnchorStore, ChangeSignal, DeletingStore, Getter, MapWatch, OpenMode, Opened,
    Store, StoreError, StoreSettings,
};
use crate::blob::{Blob, Ref};

/// The opener of `mem:` for [`super::open`]: a new empty store; nothing may
/// follow the colon.
pub(super) fn open_spec(rest: &OsStr, _mode: OpenMode) -> Result<Opened, StoreError> {
    if !rest.is_empty() {
        let spec = format!("mem:{}", rest.to_string_lossy());
        return Err(StoreError::BadSpec {
            why: format!("store {spec:?}: nothing may follow \"mem:\""),
            spec,
        });
    }
    Ok(Opened {
        store: Arc::new(MemStore::new()),
        created: false,
        fresh: true,
        label: "mem:".into(),
    })
}

/// A store that keeps everything in memory. Blobs sit in a hash map (puts and gets
/// are the hot path); only `list_refs`, for gc and sync, sorts. Refs are SHA-256
/// digests, so the map uses a fast non-cryptographic hasher (seeded per map).
#[derive(Default)]
pub struct MemStore {
    blobs: RwLock<HashMap<Ref, (Blob, SystemTime), foldhash::fast::RandomState>>,
    map_ref: Mutex<Option<Ref>>,
    settings: Mutex<Option<StoreSettings>>,
    /// Told of every successful swap, if the store gives watches.
    changes: Option<ChangeSignal>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// An empty store whose watches ([`AnchorGetter::watch`]) wake on every
    /// successful swap of the anchor map, made through any handle on it.
    pub fn watched() -> MemStore {
        MemStore {
            changes: Some(ChangeSignal::new()),
            ..MemStore::default()
        }
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

    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        self.blobs
            .read()
            .get(r)
            .map(|(b, _)| b.len() as u64)
            .ok_or(StoreError::NotFound(*r))
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        // The refs as of now, sorted; the lock is not held while `f` runs.
        let mut refs: Vec<Ref> = self
            .blobs
            .read()
            .keys()
            .filter(|r| *r > after)
            .copied()
            .collect();
        refs.sort_unstable();
        for r in refs {
            if !f(r)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn recorded_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        Ok(*self.settings.lock())
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

    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        Ok(*self.settings.lock().get_or_insert(*settings))
    }
}

impl MemStore {
    fn insert(&self, r: Ref, data: Blob) -> Result<(Ref, bool), StoreError> {
        let now = SystemTime::now();
        match self.blobs.write().entry(r) {
            // Written again: young again, for gc's grace period.
            Entry::Occupied(mut e) => {
                e.get_mut().1 = now;
                Ok((r, false))
            }
            Entry::Vacant(e) => {
                e.insert((data, now));
                Ok((r, true))
            }
        }
    }
}

impl AnchorGetter for MemStore {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        self.map_ref.lock().ok_or(StoreError::NoAnchorMap)
    }

    fn watch(&self) -> Option<Box<dyn MapWatch>> {
        self.changes.as_ref().map(ChangeSignal::watch)
    }
}

impl AnchorStore for MemStore {
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
        {
            let mut cur = self.map_ref.lock();
            if *cur != old {
                return Err(StoreError::Conflict);
            }
            *cur = Some(new);
        }
        if let Some(changes) = &self.changes {
            changes.notify();
        }
        Ok(())
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
