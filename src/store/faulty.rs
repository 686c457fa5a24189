//! A store wrapper that fails on demand, so error paths are tested, not hoped for.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use super::{
    AnchorGetter, AnchorStore, Capacity, Getter, MapWatch, Store, StoreError, StoreSettings,
};
use crate::blob::{Blob, Ref};

/// Wraps a store; each kind of call can be made to fail with a chosen errno.
pub struct FaultyStore<S> {
    inner: S,
    errno: AtomicI32,
    fail_puts: AtomicBool,
    fail_gets: AtomicBool,
    fail_updates: AtomicBool,
    /// Gets start failing once the next anchor map update is done.
    fail_gets_after_update: AtomicBool,
    /// Puts still allowed before puts start failing (u64::MAX: no limit).
    puts_left: AtomicU64,
}

impl<S> FaultyStore<S> {
    /// A wrapper that does not fail until told to; failures use `EIO`.
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore {
            inner,
            errno: AtomicI32::new(libc::EIO),
            fail_puts: AtomicBool::new(false),
            fail_gets: AtomicBool::new(false),
            fail_updates: AtomicBool::new(false),
            fail_gets_after_update: AtomicBool::new(false),
            puts_left: AtomicU64::new(u64::MAX),
        }
    }

    /// The store below.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The OS error number that injected failures carry (e.g. `libc::ENOSPC`).
    pub fn set_errno(&self, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
    }

    /// Makes every put fail (or succeed again).
    pub fn fail_puts(&self, on: bool) {
        self.fail_puts.store(on, Ordering::SeqCst);
    }

    /// Lets `n` more puts succeed, then fails the rest.
    pub fn fail_puts_after(&self, n: u64) {
        self.puts_left.store(n, Ordering::SeqCst);
    }

    /// Makes every get fail (or succeed again).
    pub fn fail_gets(&self, on: bool) {
        self.fail_gets.store(on, Ordering::SeqCst);
    }

    /// Makes every get fail from the moment the next anchor map update succeeds:
    /// the update is done, and reading the anchors after it fails.
    pub fn fail_gets_after_update(&self) {
        self.fail_gets_after_update.store(true, Ordering::SeqCst);
    }

    /// Makes every anchor map update fail (or succeed again).
    pub fn fail_updates(&self, on: bool) {
        self.fail_updates.store(on, Ordering::SeqCst);
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.fail_puts(false);
        self.fail_gets(false);
        self.fail_updates(false);
        self.fail_gets_after_update.store(false, Ordering::SeqCst);
        self.puts_left.store(u64::MAX, Ordering::SeqCst);
    }

    fn fault(&self, op: &str) -> StoreError {
        StoreError::io(
            format!("{op} (injected fault)"),
            io::Error::from_raw_os_error(self.errno.load(Ordering::SeqCst)),
        )
    }

    fn put_fails(&self) -> bool {
        if self.fail_puts.load(Ordering::SeqCst) {
            return true;
        }
        let left = self
            .puts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                u64::MAX => Some(u64::MAX),
                0 => None,
                n => Some(n - 1),
            });
        left.is_err()
    }
}

impl<S: Getter> Getter for FaultyStore<S> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(self.fault(&format!("reading blob {r}")));
        }
        self.inner.get(r)
    }

    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(self.fault(&format!("reading blob {r}")));
        }
        self.inner.get_at_most(r, max)
    }

    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(self.fault(&format!("reading blob {r}")));
        }
        self.inner.check(r)
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(self.fault(&format!("looking up blob {r}")));
        }
        self.inner.contains(r)
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(self.fault("listing refs"));
        }
        self.inner.list_refs(after, f)
    }

    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(self.fault(&format!("looking up blob {r}")));
        }
        self.inner.blob_size(r)
    }

    fn prefers_batches(&self) -> bool {
        self.inner.prefers_batches()
    }

    fn reads_ahead(&self) -> bool {
        self.inner.reads_ahead()
    }

    fn prefetch(&self, refs: &[Ref]) {
        self.inner.prefetch(refs)
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

impl<S: Store> Store for FaultyStore<S> {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        if self.put_fails() {
            return Err(self.fault("writing blob"));
        }
        self.inner.put(blob)
    }

    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        if self.put_fails() {
            return Err(self.fault("writing blob"));
        }
        self.inner.put_blob(blob)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        self.inner.record_settings(settings)
    }
}

impl<S: AnchorGetter> AnchorGetter for FaultyStore<S> {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return Err(self.fault("reading the anchor map ref"));
        }
        self.inner.anchor_map_ref()
    }

    fn watch(&self) -> Option<Box<dyn MapWatch>> {
        self.inner.watch()
    }

    fn known_map_ref(&self) -> Option<Option<Ref>> {
        if self.fail_gets.load(Ordering::SeqCst) {
            return None;
        }
        self.inner.known_map_ref()
    }
}

impl<S: AnchorStore> AnchorStore for FaultyStore<S> {
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
        if self.fail_updates.load(Ordering::SeqCst) {
            return Err(self.fault("updating the anchor map"));
        }
        self.inner.swap_anchor_map(old, new)?;
        if self.fail_gets_after_update.swap(false, Ordering::SeqCst) {
            self.fail_gets(true);
        }
        Ok(())
    }
}
