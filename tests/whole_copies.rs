//! Whole copies of large files in the disk cache (`store::disk_cache::WholeCopies`)
//! and the reads the kernel serves from them (FUSE passthrough): a copy is made
//! only once every byte was offered, in any order; it is checked when opened, and
//! a damaged one is removed; copies count against the cache's bound. Over a real
//! mount: a remounted version reads through its copy with the store's chunks gone,
//! opens of one version in both ways at once never fail, and a damaged copy reads
//! back right.

mod common;

use common::bytes;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anchorfs::store::disk_cache::{DiskCache, WholeCopies, WHOLE_MIN};
use anchorfs::store::mem::MemStore;
use anchorfs::Ref;

const MIB: usize = 1 << 20;

/// The files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn cache(dir: &Path, limit: u64) -> DiskCache<Arc<MemStore>> {
    DiskCache::open(Arc::new(MemStore::new()), dir, limit).unwrap()
}

/// Offers `data` as content `r` in pieces of `piece` bytes, in the order of
/// `order` (indexes of pieces).
fn offer(whole: &WholeCopies, r: &Ref, data: &[u8], piece: usize, order: &[usize]) {
    for &i in order {
        let start = i * piece;
        let end = (start + piece).min(data.len());
        whole.offer(r, data.len() as u64, start as u64, &data[start..end]);
    }
}

fn read_file(mut f: std::fs::File) -> Vec<u8> {
    let mut out = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_copy_is_made_once_every_byte_was_offered_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), 64 << 20);
    let whole = c.whole_copies();
    let data = bytes(5 * MIB + 123, 1);
    let r = Ref::of(b"content one");
    // Six pieces of 1 MiB, out of order, one of them twice; the last missing.
    offer(&whole, &r, &data, MIB, &[3, 1, 4, 1, 0, 2]);
    assert!(whole.open(&r, data.len() as u64).is_none(), "incomplete");
    assert!(files_in(&dir.path().join("whole")).is_empty());
    offer(&whole, &r, &data, MIB, &[5]);
    let f = whole.open(&r, data.len() as u64).expect("the copy is made");
    assert_eq!(read_file(f), data);
    let names = files_in(&dir.path().join("whole"));
    assert_eq!(names.len(), 1);
    let name = names[0].file_name().unwrap().to_string_lossy().into_owned();
    let (hex, sum) = name.split_once('.').unwrap();
    assert_eq!(hex, r.to_hex());
    assert_eq!(sum.len(), 8, "{name}");
    // The copy counts against the bound; a reopened cache counts it too.
    assert!(c.cached_bytes() >= data.len() as u64);
    drop(whole);
    drop(c);
    let c = cache(dir.path(), 64 << 20);
    assert_eq!(c.cached_bytes(), data.len() as u64);
    let f = c
        .whole_copies()
        .open(&r, data.len() as u64)
        .expect("reopened");
    assert_eq!(read_file(f), data);
    // Asked for with another size, it is no copy of that.
    assert!(c.whole_copies().open(&r, data.len() as u64 + 1).is_none());
}

#[test]
fn a_damaged_copy_is_removed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(6 * MIB, 2);
    let size = data.len() as u64;
    let r = Ref::of(b"content two");
    let damage: [&dyn Fn(&Path); 3] = [
        // One bit flipped in the middle.
        &|p| {
            let mut f = std::fs::File::options().write(true).open(p).unwrap();
            f.seek(SeekFrom::Start(3 * MIB as u64)).unwrap();
            f.write_all(&[data[3 * MIB] ^ 1]).unwrap();
        },
        // Cut short.
        &|p| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(size / 2)
                .unwrap();
        },
        // Grown.
        &|p| {
            let mut f = std::fs::File::options().append(true).open(p).unwrap();
            f.write_all(b"more").unwrap();
        },
    ];
    for (i, hurt) in damage.iter().enumerate() {
        let c = cache(dir.path(), 64 << 20);
        let whole = c.whole_copies();
        offer(&whole, &r, &data, MIB, &[0, 1, 2, 3, 4, 5]);
        let names = files_in(&dir.path().join("whole"));
        assert_eq!(names.len(), 1, "case {i}");
        // Past the file system's timestamp tick, so the change time moves.
        std::thread::sleep(std::time::Duration::from_millis(20));
        hurt(&names[0]);
        // The same process finds the change (the file's change time moved), and so
        // does a cache opened afresh.
        assert!(whole.open(&r, size).is_none(), "case {i}: served damaged");
        assert!(
            files_in(&dir.path().join("whole")).is_empty(),
            "case {i}: the damaged copy is removed"
        );
        offer(&whole, &r, &data, MIB, &[0, 1, 2, 3, 4, 5]);
        drop(whole);
        drop(c);
        hurt(&files_in(&dir.path().join("whole"))[0]);
        let c = cache(dir.path(), 64 << 20);
        assert!(
            c.whole_copies().open(&r, size).is_none(),
            "case {i}, reopened"
        );
        assert!(files_in(&dir.path().join("whole")).is_empty(), "case {i}");
    }
}

#[test]
fn copies_count_against_the_bound_and_small_ones_are_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 26 << 20;
    let c = cache(dir.path(), limit);
    let whole = c.whole_copies();
    assert!(!whole.wants(WHOLE_MIN - 1));
    assert!(whole.wants(WHOLE_MIN));
    assert!(!whole.wants(limit + 1));
    let small = bytes(WHOLE_MIN as usize - 1, 3);
    let rs = Ref::of(b"small");
    offer(&whole, &rs, &small, MIB, &[0, 1, 2, 3]);
    assert!(whole.open(&rs, small.len() as u64).is_none());
    assert!(files_in(&dir.path().join("whole")).is_empty());

    let refs: Vec<Ref> = (0..3u8).map(|i| Ref::of(&[i])).collect();
    let datas: Vec<Vec<u8>> = (0..3).map(|i| bytes(10 * MIB, 10 + i)).collect();
    for (r, d) in refs.iter().zip(&datas) {
        offer(&whole, r, d, MIB, &(0..10).collect::<Vec<_>>());
    }
    // 30 MiB made, 26 allowed: the first, least recently used, went.
    assert!(c.cached_bytes() <= limit, "{} bytes", c.cached_bytes());
    assert!(whole.open(&refs[0], 10 * MIB as u64).is_none());
    for (r, d) in refs.iter().zip(&datas).skip(1) {
        assert_eq!(read_file(whole.open(r, d.len() as u64).unwrap()), *d);
    }
    assert_eq!(files_in(&dir.path().join("whole")).len(), 2);
}

#[test]
fn offers_that_do_not_fit_the_content_make_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), 64 << 20);
    let whole = c.whole_copies();
    let data = bytes(5 * MIB, 4);
    let r = Ref::of(b"content four");
    // Past the end, and pieces told with another size for the same content.
    whole.offer(&r, data.len() as u64, data.len() as u64 - 10, &data[..20]);
    offer(&whole, &r, &data, MIB, &[0, 1, 2, 3]);
    let mut longer = data.clone();
    longer.extend_from_slice(&[0; MIB]);
    whole.offer(&r, longer.len() as u64, 4 * MIB as u64, &longer[4 * MIB..]);
    assert!(whole.open(&r, data.len() as u64).is_none());
    assert!(whole.open(&r, longer.len() as u64).is_none());
    offer(&whole, &r, &data, MIB, &[4]);
    assert_eq!(read_file(whole.open(&r, data.len() as u64).unwrap()), data);
}

#[test]
fn a_file_read_at_random_gets_no_copy_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), 64 << 20);
    let whole = c.whole_copies();
    let data = bytes(20 * MIB, 8);
    let r = Ref::of(b"content eight");
    let piece = 64 << 10;
    // Every other piece: more gaps than a read from the start leaves.
    let odd: Vec<usize> = (0..data.len() / piece).filter(|i| i % 2 == 0).collect();
    offer(&whole, &r, &data, piece, &odd);
    assert!(files_in(&dir.path().join("tmp")).is_empty(), "dropped");
    // Far from the start, nothing is begun.
    offer(&whole, &r, &data, piece, &[300, 301]);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
    // A read from the start makes it.
    let all: Vec<usize> = (0..data.len() / piece).collect();
    offer(&whole, &r, &data, piece, &all);
    assert_eq!(read_file(whole.open(&r, data.len() as u64).unwrap()), data);
    assert!(files_in(&dir.path().join("tmp")).is_empty());
}

/// A file read blob by blob through a cache that writes its blob copies behind
/// the reads, the bound just holding the file twice: when one more blob is read,
/// the whole copy made from those reads stays and a blob copy goes, and the whole
/// copy is the newest when the cache is opened again.
#[test]
fn a_whole_copy_outlives_the_blob_copies_of_its_read() {
    use anchorfs::store::{Getter, Store};
    let dir = tempfile::tempdir().unwrap();
    let mem = Arc::new(MemStore::new());
    let pieces: Vec<Vec<u8>> = (0..8).map(|i| bytes(MIB, 20 + i)).collect();
    let refs: Vec<Ref> = pieces.iter().map(|p| mem.put(p).unwrap().0).collect();
    let data = pieces.concat();
    let size = data.len() as u64;
    let limit = 2 * size;
    let one_more = mem.put(&bytes(MIB, 40)).unwrap().0;
    let root = Ref::of(b"content of eight blobs");
    {
        let c = DiskCache::open(mem.clone(), dir.path(), limit)
            .unwrap()
            .writing_behind();
        let whole = c.whole_copies();
        for (i, r) in refs.iter().enumerate() {
            let got = c.get(r).unwrap();
            whole.offer(&root, size, (i * MIB) as u64, &got);
        }
        c.settle();
        assert_eq!(c.cached_bytes(), limit, "all of it kept");
        c.get(&one_more).unwrap();
        c.settle();
        assert!(c.cached_bytes() <= limit, "{} bytes", c.cached_bytes());
        let f = whole.open(&root, size).expect("the whole copy stayed");
        assert_eq!(read_file(f), data);
    }
    // Opened with a smaller bound, the newest copies stay: the whole one.
    let c = DiskCache::open(mem, dir.path(), size + (MIB as u64) / 2).unwrap();
    assert_eq!(c.cached_bytes(), size, "the whole copy alone");
    assert!(c.whole_copies().open(&root, size).is_some());
}

/// A copy as large as half the bound is made, a larger one is not.
#[test]
fn only_files_up_to_half_the_bound_get_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path(), 16 << 20);
    let whole = c.whole_copies();
    assert!(whole.wants(8 << 20));
    assert!(!whole.wants((8 << 20) + 1));
    let data = bytes(8 * MIB + 1, 9);
    let r = Ref::of(b"content nine");
    offer(&whole, &r, &data, MIB, &(0..9).collect::<Vec<_>>());
    assert!(whole.open(&r, data.len() as u64).is_none());
}

// ---- Over a real mount ----

/// The version of `doc` that [`setup`] stores, as a path in a mount.
const NAME: &str = "doc/2026-05-01T00:00:00.000000000Z";

/// A file store holding one version of `doc`, with a cache directory beside it
/// and the mount options that name it.
struct Setup {
    _dir: tempfile::TempDir,
    store: PathBuf,
    cache: PathBuf,
    opts: String,
}

/// A file store holding `data` as [`NAME`], mounted with `cache_dir=` and
/// `extra` options; `None` when FUSE tests are switched off.
fn setup(data: &[u8], extra: &str) -> Option<Setup> {
    use anchorfs::store::file::FileStore;
    use anchorfs::{content, Timestamp};
    if common::fuse_skipped() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let fs = FileStore::create(&store).unwrap();
    let root = content::store(&fs, data).unwrap();
    let at = Timestamp::parse("2026-05-01T00:00:00Z").unwrap();
    content::put_split(&fs, b"doc", root, at).unwrap();
    let cache = dir.path().join("cache");
    let opts = format!("cache_dir={}{extra}", cache.display());
    Some(Setup {
        _dir: dir,
        store,
        cache,
        opts,
    })
}

/// Mounts `s`, reads [`NAME`] (which must be `data`) and unmounts: what a first
/// read leaves in the cache.
fn read_through_a_mount(s: &Setup, data: &[u8]) {
    let mut m = common::Mounted::new(&s.store, &s.opts);
    assert!(std::fs::read(m.path(NAME)).unwrap() == data, "first read");
    assert_eq!(m.unmount(), Some(0));
}

/// Reads `path` through a shared read-only mapping.
fn read_mapped(path: &Path) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: a fresh read-only mapping of `len` bytes of an open file, copied out
    // and unmapped within this call.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let out = std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec();
        assert_eq!(libc::munmap(p, len), 0);
        out
    }
}

/// After a read fills the cache, a remount reads the version with every chunk of
/// the store and of the cache removed: the kernel reads its whole copy, the
/// daemon is not asked (it could not answer). `read`, `mmap` and a second open at
/// once all see the same bytes.
#[test]
fn a_remounted_version_is_read_from_its_whole_copy() {
    use common::Mounted;
    let data = bytes(6 * MIB + 4321, 5);
    let Some(s) = setup(&data, "") else {
        return;
    };
    common::require_root();
    read_through_a_mount(&s, &data);
    assert_eq!(
        files_in(&s.cache.join("whole")).len(),
        1,
        "a whole copy was made"
    );

    let chunks = common::files_of_at_least(&s.store.join("blobs"), 200 << 10);
    assert!(chunks.len() >= 3, "the store's chunks: {chunks:?}");
    for p in chunks.iter().chain(&common::files_of_at_least(
        &s.cache.join("blobs"),
        200 << 10,
    )) {
        std::fs::remove_file(p).unwrap();
    }
    let mut m = Mounted::new(&s.store, &s.opts);
    let path = m.path(NAME);
    let mut held = std::fs::File::open(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data, "a second open at once");
    assert_eq!(read_mapped(&path), data);
    let mut got = Vec::new();
    held.read_to_end(&mut got).unwrap();
    assert_eq!(got, data);
    drop(held);
    assert_eq!(m.unmount(), Some(0));
}

/// Opens of one version while it is open the other way: a handle open through
/// the page cache when the copy is made keeps later opens on the page cache until
/// it closes, then opens use the copy; a writer opening the version in place
/// while it is read through the copy gets a file of its own. No open fails and
/// every read sees the version's bytes.
#[test]
fn opens_of_one_version_both_ways_at_once_never_fail() {
    use common::Mounted;
    let data = bytes(5 * MIB, 6);
    let Some(s) = setup(&data, "") else {
        return;
    };
    common::require_root();

    let m = Mounted::new(&s.store, &s.opts);
    let path = m.path(NAME);
    // The first reader makes the copy and stays open.
    let mut first = std::fs::File::open(&path).unwrap();
    let mut got = Vec::new();
    first.read_to_end(&mut got).unwrap();
    assert_eq!(got, data);
    assert_eq!(files_in(&s.cache.join("whole")).len(), 1);
    let second = std::fs::File::open(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    drop(first);
    assert_eq!(std::fs::read(&path).unwrap(), data, "the second still open");
    drop(second);
    // Now through the copy; a writer opening the version in place meanwhile.
    let reader = std::fs::File::open(&path).unwrap();
    {
        let mut w = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        w.seek(SeekFrom::Start(10)).unwrap();
        w.write_all(b"edited").unwrap();
    }
    let mut back = Vec::new();
    (&reader).read_to_end(&mut back).unwrap();
    assert_eq!(back, data, "the reader still reads the version it opened");
    drop(reader);
    let versions = std::fs::read_dir(m.path("doc")).unwrap().count();
    assert!(versions >= 3, "the edit made a new version beside `latest`");
    let mut edited = data.clone();
    edited[10..16].copy_from_slice(b"edited");
    assert_eq!(std::fs::read(m.path("doc/latest")).unwrap(), edited);
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

/// A whole copy damaged between mounts is found when opened: the read goes
/// through the daemon and gets the version's bytes, and the copy made again is
/// right.
#[test]
fn a_damaged_whole_copy_reads_back_right_after_a_remount() {
    use common::Mounted;
    let data = bytes(5 * MIB, 7);
    let Some(s) = setup(&data, "") else {
        return;
    };
    common::require_root();
    read_through_a_mount(&s, &data);
    let copy = files_in(&s.cache.join("whole")).remove(0);
    let mut f = std::fs::File::options().write(true).open(&copy).unwrap();
    f.seek(SeekFrom::Start(2 * MIB as u64)).unwrap();
    f.write_all(&[data[2 * MIB] ^ 0x80]).unwrap();
    drop(f);

    let mut m = Mounted::new(&s.store, &s.opts);
    assert_eq!(std::fs::read(m.path(NAME)).unwrap(), data);
    assert_eq!(m.unmount(), Some(0));
    let copies = files_in(&s.cache.join("whole"));
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        data,
        "made again, right"
    );
}

/// With `-o nopassthrough` no whole copy is made: reads go through the daemon.
#[test]
fn nopassthrough_makes_no_whole_copies() {
    use common::Mounted;
    let data = bytes(5 * MIB, 10);
    let Some(s) = setup(&data, ",nopassthrough") else {
        return;
    };
    let mut m = Mounted::new(&s.store, &s.opts);
    assert_eq!(std::fs::read(m.path(NAME)).unwrap(), data);
    assert_eq!(std::fs::read(m.path(NAME)).unwrap(), data);
    assert_eq!(m.unmount(), Some(0));
    assert!(files_in(&s.cache.join("whole")).is_empty());
    assert!(
        !files_in(&s.cache.join("blobs")).is_empty(),
        "blob copies as before"
    );
}
