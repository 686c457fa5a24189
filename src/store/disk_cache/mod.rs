//! A cache of blobs in files on local disk over any store, bounded in bytes, for a
//! store across a network: what was read once is read from disk after a remount.
//!
//! Blobs are named by their SHA-256 ref and never change, so a copy never goes
//! stale; but a file on local disk can be damaged or cut short. Every read of a
//! copy is checked against its ref, and one that does not match is removed and the
//! blob read from the store below: a damaged cache costs a fetch, never an error
//! or wrong bytes. Writing a copy is a temp file renamed into place (no fsync: a
//! lost copy is a miss, a torn one fails the check). The files are laid out as
//! `files` says.
//!
//! What is cached: every blob read through the cache, and blobs written through
//! it up to [`SMALL_BLOB`] bytes (trie nodes and small files, which the next
//! update or read wants; a large write would only push out what readers use).
//! Anchor map calls, `check` (a check is for what is stored), `list_refs` and
//! `written_at` go below; `delete` removes the copy too. `local_dir`, `identity`
//! and `capacity` are the store's below, so a network store still has no local
//! directory for spool files.
//!
//! # The bound and who counts it
//!
//! Each cache keeps an index in memory of the copies it knows of, with their sizes
//! and their order of use, built at open by scanning the directory (oldest
//! modification time first: a copy's time is set each time any process uses it)
//! and kept as this process reads and writes. When the bytes it knows of pass the
//! bound, it removes the least recently used copies. There is no lock file:
//! several caches (mounts on one host) may share a directory, each counting its
//! own. Two writing one ref rename the same bytes into place; one removing a copy
//! that another is about to read gives that reader a miss, and it fetches and
//! writes the copy again. A copy one cache reads that another wrote is counted
//! from then on. So the directory holds at most the bound for one process, and
//! for several at most the bound times their number, back under the bound at the
//! next open.
//!
//! Locks: `index`, held only to look up, add, promote or drop entries (never while
//! a file is read or written, or the store below is called).

mod behind;
mod files;
mod whole;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use lru::LruCache;
use parking_lot::Mutex;

use self::behind::Behind;
use self::files::{Files, Lookup};
use super::{
    AnchorGetter, AnchorStore, Capacity, DeletingStore, Getter, MapWatch, Store, StoreError,
    StoreSettings, MAX_BLOB_SIZE,
};
use crate::blob::{Blob, Ref};

pub use self::whole::{WholeCopies, WHOLE_MIN};

/// Blobs written through the cache up to this size are kept on the way in.
pub const SMALL_BLOB: usize = 16 << 10;

/// Caches the blobs of an inner store in files under a directory, keeping at most
/// a bound of bytes (see the [module docs](self)).
pub struct DiskCache<S> {
    inner: S,
    copies: Arc<Copies>,
    /// The thread writing copies, when they are written behind the reads.
    behind: Option<Arc<Behind>>,
}

/// The files and what this process knows of them, shared with the thread that
/// writes copies behind the reads.
struct Copies {
    files: Files,
    index: Mutex<Index>,
}

/// What one file of the cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Entry {
    /// The blob with this ref.
    Blob(Ref),
    /// The whole content of the file whose content ref (split root or blob) is
    /// this (see [`whole`]).
    Whole(Ref),
}

/// The copies this process knows of, least recently used first.
struct Index {
    entries: LruCache<Entry, u64>,
    bytes: u64,
    limit: u64,
}

impl Index {
    /// Records `r`'s copy of `size` bytes as used now; returns the copies to
    /// remove to stay within the bound (`r`'s own, if it alone is larger).
    fn used(&mut self, r: Entry, size: u64) -> Vec<Entry> {
        self.bytes += size;
        if let Some(old) = self.entries.put(r, size) {
            self.bytes -= old;
        }
        let mut victims = Vec::new();
        while self.bytes > self.limit {
            match self.entries.pop_lru() {
                Some((v, size)) => {
                    self.bytes -= size;
                    victims.push(v);
                }
                None => break,
            }
        }
        victims
    }

    /// Forgets `r`'s copy (gone, or about to be).
    fn forget(&mut self, r: &Entry) {
        if let Some(size) = self.entries.pop(r) {
            self.bytes -= size;
        }
    }
}

impl<S> DiskCache<S> {
    /// A cache of at most `limit` bytes in `dir` over `inner`. The directory is
    /// made (mode 0700) if missing, and what it holds is counted; copies past the
    /// bound, least recently used first, are removed.
    pub fn open(inner: S, dir: &Path, limit: u64) -> Result<DiskCache<S>, StoreError> {
        let opening = |e| StoreError::io(format!("opening the disk cache {}", dir.display()), e);
        let files = Files::open(dir).map_err(opening)?;
        let mut found = files.scan().map_err(opening)?;
        found.sort_by_key(|f| f.used);
        let mut index = Index {
            entries: LruCache::unbounded(),
            bytes: 0,
            limit,
        };
        let mut victims = Vec::new();
        for f in found {
            victims.extend(index.used(f.entry, f.size));
        }
        let copies = Copies {
            files,
            index: Mutex::new(index),
        };
        copies.remove_copies(&victims);
        Ok(DiskCache {
            inner,
            copies: Arc::new(copies),
            behind: None,
        })
    }

    /// The same cache, writing the copies of the blobs it reads on a thread of its
    /// own, so a read returns without waiting for its copy to be written (up to
    /// [`behind::QUEUED_MAX`] bytes waiting; past that a reader writes its copy
    /// itself). Copies still waiting are written before the cache is dropped,
    /// and [`settle`](DiskCache::settle) waits for them. Reads into a caller's
    /// buffer (`get_into`, `get_many_into`) write their copies themselves, from
    /// that buffer: handing them over would take a copy of the bytes in memory,
    /// which costs more than the write into the page cache.
    pub fn writing_behind(mut self) -> DiskCache<S> {
        if self.behind.is_none() {
            self.behind = Behind::start(self.copies.clone()).map(Arc::new);
        }
        self
    }

    /// Waits until every copy handed to the writing thread is written.
    pub fn settle(&self) {
        if let Some(b) = &self.behind {
            b.settle();
        }
    }

    /// The store below the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.copies.files.dir()
    }

    /// The file that holds `r`'s copy when it is cached.
    pub fn path_of(&self, r: &Ref) -> PathBuf {
        self.copies.files.path_of(r)
    }

    /// Whole copies of large files in this cache, for reads served from one local
    /// file (see [`WholeCopies`]).
    pub fn whole_copies(&self) -> WholeCopies {
        WholeCopies::new(
            self.copies.clone(),
            self.behind.as_ref().map(Arc::downgrade),
        )
    }

    /// The bytes of the copies this cache counts.
    pub fn cached_bytes(&self) -> u64 {
        self.copies.index.lock().bytes
    }

    fn cached(&self, r: &Ref, max: u64) -> Option<Blob> {
        self.copies.cached(r, max)
    }

    /// Keeps a copy of `blob` (see [`Copies::keep`]), behind the caller when a
    /// thread writes copies.
    fn keep(&self, r: &Ref, blob: &Blob) {
        if !self.copies.wanted(r, blob.len()) {
            return;
        }
        match &self.behind {
            Some(b) if b.hand_over(*r, blob.clone()) => {}
            _ => self.copies.keep(r, blob),
        }
    }
}

impl Copies {
    /// `r`'s copy, checked, if it has at most `max` bytes.
    fn cached(&self, r: &Ref, max: u64) -> Option<Blob> {
        match self.files.read(r, max) {
            Lookup::Hit(blob) => {
                let victims = self.index.lock().used(Entry::Blob(*r), blob.len() as u64);
                self.remove_copies(&victims);
                Some(blob)
            }
            Lookup::Absent => {
                self.index.lock().forget(&Entry::Blob(*r));
                None
            }
            Lookup::Unusable => None,
        }
    }

    /// [`cached`](Copies::cached) into the front of `out`: the copy's length.
    fn cached_into(&self, r: &Ref, out: &mut [u8]) -> Option<usize> {
        match self.files.read_into(r, out) {
            Lookup::Hit(n) => {
                let victims = self.index.lock().used(Entry::Blob(*r), n as u64);
                self.remove_copies(&victims);
                Some(n)
            }
            Lookup::Absent => {
                self.index.lock().forget(&Entry::Blob(*r));
                None
            }
            Lookup::Unusable => None,
        }
    }

    /// Whether a copy of `r` (of `size` bytes) is worth writing: not larger than
    /// the whole bound, not already counted.
    fn wanted(&self, r: &Ref, size: usize) -> bool {
        let index = self.index.lock();
        size as u64 <= index.limit && !index.entries.contains(&Entry::Blob(*r))
    }

    /// Keeps a copy of `blob`, unless it is not [`wanted`](Copies::wanted).
    fn keep(&self, r: &Ref, blob: &[u8]) {
        let size = blob.len() as u64;
        if !self.wanted(r, blob.len()) {
            return;
        }
        if self.files.write(r, blob) {
            let victims = self.index.lock().used(Entry::Blob(*r), size);
            self.remove_copies(&victims);
        }
    }

    fn remove_copies(&self, victims: &[Entry]) {
        for v in victims {
            match v {
                Entry::Blob(r) => self.files.remove(r),
                Entry::Whole(r) => self.files.remove_whole(r),
            }
        }
    }
}

impl<S: Getter> Getter for DiskCache<S> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        if let Some(b) = self.cached(r, MAX_BLOB_SIZE) {
            return Ok(b);
        }
        let b = self.inner.get(r)?;
        self.keep(r, &b);
        Ok(b)
    }

    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        if let Some(b) = self.cached(r, max) {
            return Ok(b);
        }
        let b = self.inner.get_at_most(r, max)?;
        self.keep(r, &b);
        Ok(b)
    }

    /// A hit is read from its file into `out`; a miss is read from the store
    /// below into `out` and kept from there.
    fn get_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        if let Some(n) = self.copies.cached_into(r, out) {
            return Ok(n);
        }
        let n = self.inner.get_into(r, out)?;
        if let Some(b) = out.get(..n) {
            self.copies.keep(r, b);
        }
        Ok(n)
    }

    /// Hits from disk into their buffers; every miss from the store below in one
    /// call, straight into its buffer, and kept from there.
    fn get_many_into(&self, jobs: &mut [(Ref, &mut [u8])]) -> Vec<Result<usize, StoreError>> {
        let mut out: Vec<Option<Result<usize, StoreError>>> = jobs
            .iter_mut()
            .map(|(r, dst)| self.copies.cached_into(r, dst).map(Ok))
            .collect();
        let mut misses: Vec<(Ref, &mut [u8])> = jobs
            .iter_mut()
            .zip(&out)
            .filter(|(_, got)| got.is_none())
            .map(|((r, dst), _)| (*r, &mut **dst))
            .collect();
        if !misses.is_empty() {
            let mut fetched = self.inner.get_many_into(&mut misses).into_iter();
            let mut misses = misses.iter();
            for slot in out.iter_mut().filter(|slot| slot.is_none()) {
                let (Some(res), Some((r, dst))) = (fetched.next(), misses.next()) else {
                    break;
                };
                if let Some(b) = res.as_ref().ok().and_then(|&n| dst.get(..n)) {
                    self.copies.keep(r, b);
                }
                *slot = Some(res);
            }
        }
        out.into_iter()
            .zip(jobs.iter())
            .map(|(got, (r, _))| got.unwrap_or(Err(StoreError::NotFound(*r))))
            .collect()
    }

    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        self.inner.check(r)
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        if self.copies.index.lock().entries.contains(&Entry::Blob(*r)) {
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

    /// Hits from disk; every miss from the store below in one call.
    fn get_many(&self, refs: &[Ref]) -> Vec<Result<Blob, StoreError>> {
        let mut out = Vec::with_capacity(refs.len());
        let mut misses = Vec::new();
        for r in refs {
            match self.cached(r, MAX_BLOB_SIZE) {
                Some(b) => out.push(Ok(b)),
                None => {
                    misses.push(*r);
                    // Replaced below by what the store gives.
                    out.push(Err(StoreError::NotFound(*r)));
                }
            }
        }
        if misses.is_empty() {
            return out;
        }
        let mut fetched = self.inner.get_many(&misses).into_iter();
        for (slot, r) in out.iter_mut().zip(refs) {
            if slot.is_ok() {
                continue;
            }
            let Some(res) = fetched.next() else { break };
            if let Ok(b) = &res {
                self.keep(r, b);
            }
            *slot = res;
        }
        out
    }

    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        // A size from a copy only once the copy checks out.
        let known = self.copies.index.lock().entries.contains(&Entry::Blob(*r));
        if known {
            if let Some(b) = self.cached(r, MAX_BLOB_SIZE) {
                return Ok(b.len() as u64);
            }
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

impl<S: Store> Store for DiskCache<S> {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        let (r, added) = self.inner.put(blob)?;
        if blob.len() <= SMALL_BLOB {
            self.keep(&r, &Blob::copy_from_slice(blob));
        }
        Ok((r, added))
    }

    fn put_blob(&self, blob: Blob) -> Result<(Ref, bool), StoreError> {
        let small = (blob.len() <= SMALL_BLOB).then(|| blob.clone());
        let (r, added) = self.inner.put_blob(blob)?;
        if let Some(b) = small {
            self.keep(&r, &b);
        }
        Ok((r, added))
    }

    fn put_many(&self, blobs: &[&[u8]]) -> Result<Vec<(Ref, bool)>, StoreError> {
        let put = self.inner.put_many(blobs)?;
        for (blob, (r, _)) in blobs.iter().zip(&put) {
            if blob.len() <= SMALL_BLOB {
                self.keep(r, &Blob::copy_from_slice(blob));
            }
        }
        Ok(put)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        self.inner.record_settings(settings)
    }
}

impl<S: AnchorGetter> AnchorGetter for DiskCache<S> {
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

impl<S: AnchorStore> AnchorStore for DiskCache<S> {
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
        // The map's nodes, which a remount reads first, whatever their size.
        for (r, b) in blobs {
            self.keep(r, b);
        }
        Ok(())
    }

    fn update_anchor_map(
        &self,
        f: &mut dyn FnMut(Ref) -> Result<Ref, StoreError>,
    ) -> Result<Ref, StoreError> {
        self.inner.update_anchor_map(f)
    }
}

impl<S: DeletingStore> DeletingStore for DiskCache<S> {
    fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
        self.copies.index.lock().forget(&Entry::Blob(*r));
        self.copies.files.remove(r);
        self.inner.delete(r)
    }

    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
        self.inner.written_at(r)
    }
}

/// The name of the cache directory for the store whose
/// [`identity`](Getter::identity) is `identity`: 32 hex digits of its SHA-256, so
/// every handle on one store finds the same directory and no other store does.
pub fn dir_name(identity: &str) -> String {
    Ref::of(identity.as_bytes()).to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_drops_least_recently_used_first() {
        let r = |i: u8| Entry::Blob(Ref::of(&[i]));
        let mut index = Index {
            entries: LruCache::unbounded(),
            bytes: 0,
            limit: 10,
        };
        assert!(index.used(r(1), 4).is_empty());
        assert!(index.used(r(2), 4).is_empty());
        assert!(index.used(r(1), 4).is_empty(), "used again: newest");
        assert_eq!(index.used(r(3), 4), vec![r(2)]);
        assert_eq!(index.bytes, 8);
        assert_eq!(
            index.used(r(4), 11),
            vec![r(1), r(3), r(4)],
            "too big for all"
        );
        assert_eq!(index.bytes, 0);
        index.forget(&r(9));
        assert_eq!(index.bytes, 0);
    }

    #[test]
    fn directory_names_follow_the_identity() {
        assert_eq!(dir_name("file:/a"), dir_name("file:/a"));
        assert_ne!(dir_name("file:/a"), dir_name("file:/b"));
        assert_eq!(dir_name("x").len(), 32);
    }
}
