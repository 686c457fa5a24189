//! The disk cache of blobs (`store::disk_cache`) over a memory store that counts
//! what reaches it: hits served from disk, after a reopen too; damaged copies
//! refetched; the bound and the LRU order; two caches sharing a directory; and a
//! real mount with `-o cache_dir=`.

mod common;

use common::bytes;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anchorfs::store::disk_cache::DiskCache;
use anchorfs::store::faulty::FaultyStore;
use anchorfs::store::lru::LruStore;
use anchorfs::store::mem::MemStore;
use anchorfs::store::{
    AnchorGetter, AnchorStore, DeletingStore, Getter, MapWatch, Store, StoreError,
};
use anchorfs::{Blob, Ref};

/// A store that counts the reads that reach it.
#[derive(Default)]
struct Counting {
    inner: Arc<MemStore>,
    gets: AtomicUsize,
    batches: AtomicUsize,
    checks: AtomicUsize,
}

impl Counting {
    fn over(inner: &Arc<MemStore>) -> Counting {
        Counting {
            inner: inner.clone(),
            ..Counting::default()
        }
    }

    /// Blobs read below so far (one per ref, batched or not).
    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }
}

impl Getter for Counting {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(r)
    }
    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner.check(r)
    }
    fn get_many(&self, refs: &[Ref]) -> Vec<Result<Blob, StoreError>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.gets.fetch_add(refs.len(), Ordering::SeqCst);
        self.inner.get_many(refs)
    }
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.list_refs(after, f)
    }
}

impl Store for Counting {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        self.inner.put(blob)
    }
}

impl AnchorGetter for Counting {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        self.inner.anchor_map_ref()
    }
    fn watch(&self) -> Option<Box<dyn MapWatch>> {
        self.inner.watch()
    }
}

impl AnchorStore for Counting {
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
        self.inner.swap_anchor_map(old, new)
    }
}

impl DeletingStore for Counting {
    fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
        self.inner.delete(r)
    }
    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
        self.inner.written_at(r)
    }
}

/// Every regular file under `dir`, with its size.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    common::files_of_at_least(dir, 0)
        .into_iter()
        .map(|p| {
            let len = std::fs::metadata(&p).unwrap().len();
            (p, len)
        })
        .collect()
}

fn bytes_on_disk(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, n)| n).sum()
}

#[test]
fn a_second_get_and_a_reopened_cache_are_served_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let data = bytes(100_000, 1);
    let (r, _) = mem.put(&data).unwrap();

    let cache = DiskCache::open(Counting::over(&mem), dir.path(), 1 << 20).unwrap();
    assert_eq!(cache.get(&r).unwrap().as_ref(), data.as_slice());
    assert_eq!(cache.inner().gets(), 1, "a miss reads the store");
    assert_eq!(std::fs::read(cache.path_of(&r)).unwrap(), data);
    assert_eq!(cache.get(&r).unwrap().as_ref(), data.as_slice());
    assert_eq!(cache.get_at_most(&r, 100_000).unwrap().len(), 100_000);
    assert_eq!(cache.blob_size(&r).unwrap(), 100_000);
    assert!(cache.contains(&r).unwrap());
    assert_eq!(cache.inner().gets(), 1, "hits never reach the store");
    drop(cache);

    let again = DiskCache::open(Counting::over(&mem), dir.path(), 1 << 20).unwrap();
    assert_eq!(again.cached_bytes(), 100_000, "the copy is counted at open");
    assert_eq!(again.get(&r).unwrap().as_ref(), data.as_slice());
    assert_eq!(again.inner().gets(), 0, "after a reopen, from disk");

    // A caller that says the blob is smaller than the copy gets the store's answer.
    let _ = again.get_at_most(&r, 10);
    assert_eq!(again.inner().gets(), 1);
    // A check is of what is stored, never of the copy.
    assert_eq!(again.check(&r).unwrap(), 100_000);
    assert_eq!(again.inner().checks.load(Ordering::SeqCst), 1);
    // Absent below and not cached: the store's NotFound.
    let missing = Ref::of(b"never stored");
    assert!(matches!(again.get(&missing), Err(StoreError::NotFound(m)) if m == missing));
}

#[test]
fn get_many_reads_every_miss_below_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let refs: Vec<Ref> = (0..6)
        .map(|i| mem.put(&bytes(3000, i)).unwrap().0)
        .collect();
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), 1 << 20).unwrap();
    cache.get(&refs[1]).unwrap();
    cache.get(&refs[4]).unwrap();
    let missing = Ref::of(b"missing");
    let mut ask = refs.clone();
    ask.insert(3, missing);
    let before = cache.inner().gets();
    let got = cache.get_many(&ask);
    assert_eq!(cache.inner().batches.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.inner().gets() - before,
        5,
        "four misses and the absent one"
    );
    for (r, res) in ask.iter().zip(&got) {
        if *r == missing {
            assert!(matches!(res, Err(StoreError::NotFound(m)) if m == r));
        } else {
            assert_eq!(Ref::of(res.as_ref().unwrap()), *r, "in the order asked");
        }
    }
    let got = cache.get_many(&refs);
    assert!(got.iter().all(Result::is_ok));
    assert_eq!(
        cache.inner().batches.load(Ordering::SeqCst),
        1,
        "all hits now"
    );
}

#[test]
fn reads_into_buffers_fetch_misses_below_in_one_call_and_keep_them() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let refs: Vec<Ref> = (0..5)
        .map(|i| mem.put(&bytes(3000 + i, i as u32)).unwrap().0)
        .collect();
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), 1 << 20).unwrap();
    let mut one = vec![0u8; 4000];
    assert_eq!(cache.get_into(&refs[0], &mut one).unwrap(), 3000);
    assert_eq!(cache.inner().gets(), 1);
    assert_eq!(cache.get_into(&refs[0], &mut one).unwrap(), 3000);
    assert_eq!(cache.inner().gets(), 1, "kept by the first read");
    let missing = Ref::of(b"missing");
    let ask = [refs[1], refs[0], missing, refs[2], refs[1]];
    let mut bufs: Vec<Vec<u8>> = ask.iter().map(|_| vec![0u8; 4000]).collect();
    let mut jobs: Vec<(Ref, &mut [u8])> = ask
        .iter()
        .zip(bufs.iter_mut())
        .map(|(r, b)| (*r, b.as_mut_slice()))
        .collect();
    let got = cache.get_many_into(&mut jobs);
    drop(jobs);
    assert_eq!(cache.inner().batches.load(Ordering::SeqCst), 1);
    for ((r, res), buf) in ask.iter().zip(&got).zip(&bufs) {
        if *r == missing {
            assert!(matches!(res, Err(StoreError::NotFound(m)) if m == r));
        } else {
            let n = *res.as_ref().unwrap();
            assert_eq!(Ref::of(&buf[..n]), *r, "in the order asked");
        }
    }
    let before = cache.inner().gets();
    let mut bufs: Vec<Vec<u8>> = refs[..3].iter().map(|_| vec![0u8; 4000]).collect();
    let mut jobs: Vec<(Ref, &mut [u8])> = refs[..3]
        .iter()
        .zip(bufs.iter_mut())
        .map(|(r, b)| (*r, b.as_mut_slice()))
        .collect();
    assert!(cache.get_many_into(&mut jobs).iter().all(Result::is_ok));
    assert_eq!(cache.inner().gets(), before, "every miss was kept");
    assert_eq!(cache.inner().batches.load(Ordering::SeqCst), 1);
}

#[test]
fn copies_written_behind_the_reads_are_all_there_when_settled_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let refs: Vec<Ref> = (0..200)
        .map(|i| mem.put(&bytes(700 + i as usize * 13, i)).unwrap().0)
        .collect();
    let limit = 64 << 10;
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), limit)
        .unwrap()
        .writing_behind();
    for r in &refs[..20] {
        assert_eq!(Ref::of(&cache.get(r).unwrap()), *r);
    }
    cache.settle();
    for r in &refs[..20] {
        assert!(cache.path_of(r).exists(), "a settled copy is written");
    }
    let before = cache.inner().gets();
    for r in &refs[..20] {
        cache.get(r).unwrap();
    }
    assert_eq!(cache.inner().gets(), before, "served from the copies");
    // Many more than the bound holds, batched and not: the bound holds once
    // settled, and the last ones read are the ones kept.
    let got = cache.get_many(&refs[20..120]);
    assert!(got.iter().all(Result::is_ok));
    for r in &refs[120..] {
        cache.get(r).unwrap();
    }
    cache.settle();
    assert!(cache.cached_bytes() <= limit);
    assert!(bytes_on_disk(dir.path()) <= limit);
    assert!(cache.path_of(&refs[199]).exists());
    // Dropped with copies waiting: they are written first.
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), 1 << 20)
        .unwrap()
        .writing_behind();
    let got = cache.get_many(&refs[..50]);
    assert!(got.iter().all(Result::is_ok));
    let paths: Vec<_> = refs[..50].iter().map(|r| cache.path_of(r)).collect();
    drop(cache);
    assert!(paths.iter().all(|p| p.exists()), "every copy was written");
}

#[test]
fn the_memory_cache_batches_its_misses_too() {
    let mem = Arc::new(MemStore::new());
    let refs: Vec<Ref> = (0..6)
        .map(|i| mem.put(&bytes(3000, i)).unwrap().0)
        .collect();
    let lru = LruStore::new(Counting::over(&mem), 1 << 20);
    lru.get(&refs[0]).unwrap();
    lru.get(&refs[5]).unwrap();
    let missing = Ref::of(b"missing");
    let mut ask = refs.clone();
    ask.insert(2, missing);
    let before = lru.inner().gets();
    let got = lru.get_many(&ask);
    assert_eq!(lru.inner().batches.load(Ordering::SeqCst), 1);
    assert_eq!(lru.inner().gets() - before, 5, "the misses, in one call");
    for (r, res) in ask.iter().zip(&got) {
        if *r == missing {
            assert!(matches!(res, Err(StoreError::NotFound(m)) if m == r));
        } else {
            assert_eq!(Ref::of(res.as_ref().unwrap()), *r, "in the order asked");
        }
    }
    assert!(lru.get_many(&refs).iter().all(Result::is_ok));
    assert_eq!(
        lru.inner().batches.load(Ordering::SeqCst),
        1,
        "all hits now"
    );
    assert!(!lru.prefers_batches(), "as the store below");
}

/// One way of damaging a cached copy.
type Damage<'a> = Box<dyn Fn() + 'a>;

#[test]
fn damaged_copies_are_dropped_and_refetched() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let data = bytes(50_000, 2);
    let (r, _) = mem.put(&data).unwrap();
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), 1 << 20).unwrap();
    cache.get(&r).unwrap();
    let path = cache.path_of(&r);

    let mut flipped = data.clone();
    flipped[12_345] ^= 0x40;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "a flipped byte",
            Box::new(|| std::fs::write(&path, &flipped).unwrap()),
        ),
        (
            "a truncated copy",
            Box::new(|| std::fs::write(&path, &data[..20_000]).unwrap()),
        ),
        (
            "an empty copy",
            Box::new(|| std::fs::write(&path, b"").unwrap()),
        ),
        (
            "a longer copy",
            Box::new(|| {
                let mut longer = data.clone();
                longer.push(0);
                std::fs::write(&path, &longer).unwrap()
            }),
        ),
        (
            "a FIFO",
            Box::new(|| {
                std::fs::remove_file(&path).unwrap();
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid path string.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
        ),
        (
            "a link to another file",
            Box::new(|| {
                let other = dir.path().join("elsewhere");
                std::fs::write(&other, &data).unwrap();
                std::fs::remove_file(&path).unwrap();
                std::os::unix::fs::symlink(&other, &path).unwrap();
            }),
        ),
    ];
    for (what, damage) in damages {
        damage();
        let before = cache.inner().gets();
        assert_eq!(cache.get(&r).unwrap().as_ref(), data.as_slice(), "{what}");
        assert_eq!(
            cache.inner().gets(),
            before + 1,
            "{what}: read from the store"
        );
        assert!(
            std::fs::symlink_metadata(&path).unwrap().is_file(),
            "{what}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            data,
            "{what}: a good copy again"
        );
        cache.get(&r).unwrap();
        assert_eq!(cache.inner().gets(), before + 1, "{what}: then a hit");
        // The same through a read into a caller's buffer.
        damage();
        let mut buf = vec![0u8; data.len()];
        assert_eq!(cache.get_into(&r, &mut buf).unwrap(), data.len(), "{what}");
        assert!(buf == data, "{what}: into a buffer");
        assert_eq!(
            cache.inner().gets(),
            before + 2,
            "{what}: into, from the store"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            data,
            "{what}: a good copy again"
        );
        buf.fill(0);
        assert_eq!(cache.get_into(&r, &mut buf).unwrap(), data.len());
        assert!(buf == data);
        assert_eq!(cache.inner().gets(), before + 2, "{what}: into, then a hit");
    }
    // A copy removed behind the cache's back is a miss, not an error.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(cache.get(&r).unwrap().as_ref(), data.as_slice());
    // Deleting the blob drops the copy too.
    assert!(cache.delete(&r).unwrap());
    assert!(!path.exists());
    assert!(matches!(cache.get(&r), Err(StoreError::NotFound(_))));
    assert_eq!(cache.cached_bytes(), 0);
}

#[test]
fn the_bound_holds_and_eviction_is_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let limit = 64 << 10;
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), limit).unwrap();
    let mut refs = Vec::new();
    for i in 0..300u32 {
        let blob = bytes(500 + (i as usize * 97) % 6000, i);
        if i % 2 == 0 {
            refs.push(cache.put(&blob).unwrap().0);
        } else {
            refs.push(mem.put(&blob).unwrap().0);
        }
        let r = refs[(i as usize * 7) % refs.len()];
        assert_eq!(Ref::of(&cache.get(&r).unwrap()), r);
        assert!(cache.cached_bytes() <= limit);
        assert!(bytes_on_disk(dir.path()) <= limit, "after step {i}");
    }
    // A blob larger than the whole bound is never kept.
    let (huge, _) = mem.put(&bytes(limit as usize + 1, 9)).unwrap();
    cache.get(&huge).unwrap();
    assert!(!cache.path_of(&huge).exists());
    // Large blobs written are not kept; small ones are.
    let (big, _) = cache.put(&bytes(40_000, 10)).unwrap();
    assert!(!cache.path_of(&big).exists(), "large writes pass by");
    let (small, _) = cache.put(b"a small blob").unwrap();
    assert!(cache.path_of(&small).exists(), "small writes are kept");
    drop(cache);

    // Least recently used first, with exact sizes: a, b, c fill it; using a then
    // adding d pushes out b.
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), 3000).unwrap();
    let [a, b, c, d, e] = [1u32, 2, 3, 4, 5].map(|i| mem.put(&bytes(1000, 100 + i)).unwrap().0);
    for r in [a, b, c] {
        cache.get(&r).unwrap();
        // Use times a reopen orders by (file times are coarse).
        std::thread::sleep(Duration::from_millis(20));
    }
    cache.get(&a).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    cache.get(&d).unwrap();
    let held = |cache: &DiskCache<Counting>| [a, b, c, d, e].map(|r| cache.path_of(&r).exists());
    assert_eq!(held(&cache), [true, false, true, true, false]);
    drop(cache);
    // A reopen with a smaller bound keeps the most recently used: d, then a.
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), 2000).unwrap();
    assert_eq!(held(&cache), [true, false, false, true, false]);
    assert_eq!(cache.cached_bytes(), 2000);
    cache.get(&a).unwrap();
    assert_eq!(cache.inner().gets(), 0);
    cache.get(&e).unwrap();
    assert_eq!(held(&cache), [true, false, false, false, true]);
}

#[test]
fn two_caches_share_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let refs: Arc<Vec<(Ref, Vec<u8>)>> = Arc::new(
        (0..80)
            .map(|i| {
                let b = bytes(1000 + i * 37, i as u32);
                (mem.put(&b).unwrap().0, b)
            })
            .collect(),
    );
    // Small enough that both evict all the time, under each other's feet.
    let limit = 20_000;
    let caches: Vec<Arc<DiskCache<Counting>>> = (0..2)
        .map(|_| Arc::new(DiskCache::open(Counting::over(&mem), dir.path(), limit).unwrap()))
        .collect();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let cache = caches[t % 2].clone();
            let refs = refs.clone();
            std::thread::spawn(move || {
                for i in 0..400usize {
                    let (r, want) = &refs[(i * (t + 3) + t * 11) % refs.len()];
                    if i % 5 == 0 {
                        let got = cache.get_many(&[*r, refs[i % refs.len()].0]);
                        assert_eq!(got[0].as_ref().unwrap().as_ref(), want.as_slice());
                        assert!(got[1].is_ok());
                    } else {
                        let got = cache.get(r).expect("a shared cache never fails a read");
                        assert_eq!(got.as_ref(), want.as_slice());
                    }
                    if i % 7 == 0 {
                        cache.put(want).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for cache in &caches {
        assert!(cache.cached_bytes() <= limit);
    }
    assert!(
        bytes_on_disk(dir.path()) <= 2 * limit,
        "each cache bounds what it counts"
    );
    // Both agree with the store on every blob afterwards.
    for (r, want) in refs.iter() {
        for cache in &caches {
            assert_eq!(cache.get(r).unwrap().as_ref(), want.as_slice());
        }
    }
    // A reopen brings the directory back under one bound.
    drop(caches);
    let cache = DiskCache::open(Counting::over(&mem), dir.path(), limit).unwrap();
    assert!(bytes_on_disk(dir.path()) <= limit);
    assert!(cache.cached_bytes() <= limit);
}

#[test]
fn anchor_calls_and_watches_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::watched());
    let stack = DiskCache::open(
        LruStore::new(FaultyStore::new(mem.clone()), 1 << 20),
        dir.path(),
        1 << 20,
    )
    .unwrap();
    let watch = stack
        .watch()
        .expect("a watched store's watch reaches through");
    assert!(!watch.wait(Duration::from_millis(10)));
    let a = Ref::of(b"a");
    mem.swap_anchor_map(None, a).unwrap();
    assert!(
        watch.wait(Duration::from_secs(10)),
        "another handle's swap wakes it"
    );
    assert_eq!(stack.anchor_map_ref().unwrap(), a);
    let b = Ref::of(b"b");
    stack.swap_anchor_map(Some(a), b).unwrap();
    assert!(watch.wait(Duration::from_secs(10)));
    assert_eq!(mem.anchor_map_ref().unwrap(), b);
    assert!(matches!(
        stack.swap_anchor_map(Some(a), b),
        Err(StoreError::Conflict)
    ));
    assert!(
        !watch.wait(Duration::from_millis(10)),
        "a lost swap changes nothing"
    );
    // A store that cannot tell gives no watch, through every wrapper.
    let plain = DiskCache::open(Arc::new(MemStore::new()), &dir.path().join("p"), 1000).unwrap();
    assert!(plain.watch().is_none());
    assert_eq!(plain.local_dir(), None);
    assert_eq!(plain.identity(), None);
}

/// A file store mounted with `-o cache_dir=`: what was read fills the cache
/// directory, and after a remount a damaged copy still reads back right.
#[test]
fn a_mount_with_cache_dir_reads_through_damaged_copies() {
    use anchorfs::store::file::FileStore;
    use anchorfs::{content, Timestamp};
    use common::{fuse_skipped, Mounted};

    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let cd = dir.path().join("cache");
    let store = FileStore::create(&sp).unwrap();
    let data = bytes(600_000, 42);
    let root = content::store(&store, &data[..]).unwrap();
    let at = Timestamp::parse("2026-05-01T00:00:00Z").unwrap();
    content::put_split(&store, b"doc", root, at).unwrap();
    let name = "doc/2026-05-01T00:00:00.000000000Z";
    let opts = format!("cache_dir={}", cd.display());

    let mut m = Mounted::new(&sp, &opts);
    assert_eq!(std::fs::read(m.path(name)).unwrap(), data);
    assert_eq!(m.unmount(), Some(0));
    let copies = files_under(&cd.join("blobs"));
    let cached: u64 = copies.iter().map(|(_, n)| n).sum();
    assert!(
        copies.len() > 2,
        "the chunks and nodes read are kept: {copies:?}"
    );
    assert!(cached >= data.len() as u64, "{cached} bytes cached");

    // Damage every copy: each read finds out and reads the store.
    for (i, (path, len)) in copies.iter().enumerate() {
        match i % 3 {
            0 => std::fs::write(path, b"junk").unwrap(),
            1 => {
                let mut b = std::fs::read(path).unwrap();
                let mid = b.len() / 2;
                if let Some(x) = b.get_mut(mid) {
                    *x ^= 1;
                } else {
                    b.push(1);
                }
                std::fs::write(path, b).unwrap();
            }
            _ => std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(len / 2)
                .unwrap(),
        }
    }
    let mut m = Mounted::new(&sp, &opts);
    assert_eq!(std::fs::read(m.path(name)).unwrap(), data);
    assert_eq!(m.unmount(), Some(0));
    for (path, _) in &copies {
        let b = std::fs::read(path).unwrap();
        let r = Ref::from_hex(&path.file_name().unwrap().to_string_lossy()).unwrap();
        assert_eq!(Ref::of(&b), r, "{} is whole again", path.display());
    }
}

/// A cache directory that was asked for and cannot be made stops the mount, with
/// a message naming it.
#[test]
fn a_cache_dir_that_cannot_be_made_stops_the_mount() {
    use common::{binary, fuse_skipped, is_mounted, run};

    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    anchorfs::store::file::FileStore::create(&sp).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let opt = format!("cache_dir={}", blocker.join("cache").display());
    let (code, _, err) = run(
        binary().to_str().unwrap(),
        &[
            "mount".as_ref(),
            sp.as_os_str(),
            mnt.as_os_str(),
            "-o".as_ref(),
            opt.as_ref(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("disk cache") && err.contains("a-file"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
}
