//! [`Made`]: the blobs one attempt of an update writes (trie nodes, history
//! parts), held back and handed to the store with the swap that needs them, so a
//! store across a network takes both in one round trip
//! ([`AnchorStore::put_and_swap`](crate::store::AnchorStore::put_and_swap)).
//!
//! Locks: `blobs`, held only to add or look up a blob, by the thread running the
//! attempt; never while the store below is called.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::blob::{Blob, Ref};
use crate::store::{Getter, Store, StoreError};

/// A store seen through one update attempt: puts are kept here, in order, and
/// gets find them here first; everything else is the store's.
pub(super) struct Made<'a, S: ?Sized> {
    store: &'a S,
    blobs: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    order: Vec<(Ref, Blob)>,
    index: HashMap<Ref, usize>,
}

impl<'a, S: Store + ?Sized> Made<'a, S> {
    pub(super) fn new(store: &'a S) -> Made<'a, S> {
        Made {
            store,
            blobs: Mutex::new(Kept::default()),
        }
    }

    /// The blobs put, each once, in the order first put.
    pub(super) fn into_blobs(self) -> Vec<(Ref, Blob)> {
        self.blobs.into_inner().order
    }

    fn keep(&self, blob: Blob) -> (Ref, bool) {
        let r = Ref::of(&blob);
        let mut k = self.blobs.lock();
        if k.index.contains_key(&r) {
            return (r, false);
        }
        let i = k.order.len();
        k.order.push((r, blob));
        k.index.insert(r, i);
        (r, true)
    }

    fn kept(&self, r: &Ref) -> Option<Blob> {
        let k = self.blobs.lock();
        k.index.get(r).map(|&i| k.order[i].1.clone())
    }
}

impl<S: Store + ?Sized> Getter for Made<'_, S> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        match self.kept(r) {
            Some(b) => Ok(b),
            None => self.store.get(r),
        }
    }

    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        match self.kept(r) {
            Some(b) => Ok(b),
            None => self.store.get_at_most(r, max),
        }
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.store.list_refs(after, f)
    }
}

impl<S: Store + ?Sized> Store for Made<'_, S> {
    /// Kept until the swap; "added" means new to this attempt.
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        Ok(self.keep(Blob::copy_from_slice(blob)))
    }

    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        Ok(self.keep(blob))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;

    #[test]
    fn puts_stay_here_and_are_read_back_before_the_store() {
        let mem = MemStore::new();
        let (below, _) = mem.put(b"already stored").unwrap();
        let made = Made::new(&mem);
        let (a, added) = made.put(b"a node").unwrap();
        assert!(added);
        assert_eq!(made.put(b"a node").unwrap(), (a, false));
        let (b, _) = made.put_blob(Blob::from_static(b"another")).unwrap();
        assert_eq!(&made.get(&a).unwrap()[..], b"a node");
        assert_eq!(&made.get(&below).unwrap()[..], b"already stored");
        assert!(matches!(mem.get(&a), Err(StoreError::NotFound(_))));
        let blobs = made.into_blobs();
        assert_eq!(
            blobs.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            vec![a, b]
        );
    }
}
