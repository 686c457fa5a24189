//! One conformance suite run against every backend: mem, file, PostgreSQL, and the
//! LRU cache and the fault injector over each.

#[path = "common/pg.rs"]
mod pg_common;

use std::sync::Arc;

use anchorfs::store::disk_cache::DiskCache;
use anchorfs::store::faulty::FaultyStore;
use anchorfs::store::file::FileStore;
use anchorfs::store::lru::LruStore;
use anchorfs::store::mem::MemStore;
use anchorfs::store::pg::PgStore;
use anchorfs::store::{AnchorGetter, AnchorStore, Getter, OpenMode, Store, StoreError};
use anchorfs::Ref;

fn blobs_and_listing(s: &dyn AnchorStore) {
    let empty = s.put(b"").unwrap();
    assert_eq!(empty, (Ref::of(b""), true));
    assert_eq!(s.get(&empty.0).unwrap().len(), 0);
    let (r, added) = s.put(b"hello").unwrap();
    assert!(added);
    assert_eq!(
        s.put(b"hello").unwrap(),
        (r, false),
        "second put is not new"
    );
    assert_eq!(s.get(&r).unwrap().as_ref(), b"hello");
    assert!(s.contains(&r).unwrap());
    let missing = Ref::of(b"never stored");
    assert!(!s.contains(&missing).unwrap());
    assert!(matches!(s.get(&missing), Err(StoreError::NotFound(m)) if m == missing));

    let mut want: Vec<Ref> = vec![empty.0, r];
    for i in 0..300u32 {
        want.push(s.put(format!("blob {i}").as_bytes()).unwrap().0);
    }
    want.sort();
    let mut got = Vec::new();
    s.list_refs(&Ref::ZERO, &mut |r| {
        got.push(r);
        Ok(true)
    })
    .unwrap();
    assert_eq!(got, want, "every ref, in order");
    let mid = want[150];
    let mut after = Vec::new();
    s.list_refs(&mid, &mut |r| {
        after.push(r);
        Ok(after.len() < 10)
    })
    .unwrap();
    assert_eq!(
        after,
        want[151..161].to_vec(),
        "strictly after, stopping when told"
    );
    // Larger than the file store's direct-write piece, not a multiple of a block,
    // and different at every offset within a piece.
    let big: Vec<u8> = (0..(3 << 20) + 123).map(|i| (i % 251) as u8).collect();
    let (br, _) = s.put(&big).unwrap();
    assert_eq!(s.get(&br).unwrap().as_ref(), big.as_slice());
}

fn compare_and_swap(s: &dyn AnchorStore) {
    assert!(matches!(s.anchor_map_ref(), Err(StoreError::NoAnchorMap)));
    let a = Ref::of(b"a");
    let b = Ref::of(b"b");
    let c = Ref::of(b"c");
    let mut seen = None;
    assert_eq!(
        s.update_anchor_map(&mut |cur| {
            seen = Some(cur);
            Ok(a)
        })
        .unwrap(),
        a
    );
    assert_eq!(
        seen,
        Some(Ref::ZERO),
        "no map: the callback sees the zero ref"
    );
    assert_eq!(s.anchor_map_ref().unwrap(), a);
    // A writer that slips in between the read and the swap makes the swap fail.
    let res = s.update_anchor_map(&mut |cur| {
        assert_eq!(cur, a);
        s.update_anchor_map(&mut |inner| {
            assert_eq!(inner, a);
            Ok(b)
        })?;
        Ok(c)
    });
    assert!(matches!(res, Err(StoreError::Conflict)), "{res:?}");
    assert_eq!(
        s.anchor_map_ref().unwrap(),
        b,
        "the interloper's update stands"
    );
    // A callback error is returned as is, without change.
    let res = s.update_anchor_map(&mut |_| Err(StoreError::NotFound(c)));
    assert!(
        matches!(res, Err(StoreError::NotFound(r)) if r == c),
        "{res:?}"
    );
    assert_eq!(s.anchor_map_ref().unwrap(), b);
    // Returning the ref it was given changes nothing.
    assert_eq!(s.update_anchor_map(&mut |cur| Ok(cur)).unwrap(), b);
    assert_eq!(s.anchor_map_ref().unwrap(), b);
}

/// The narrow compare-and-swap itself, which every backend implements.
fn swap(s: &dyn AnchorStore) {
    let a = Ref::of(b"a");
    let b = Ref::of(b"b");
    let c = Ref::of(b"c");
    // A first map: `None` says there is none yet.
    s.swap_anchor_map(None, a).unwrap();
    assert_eq!(s.anchor_map_ref().unwrap(), a);
    // `None` when a map exists is a conflict, and changes nothing.
    let res = s.swap_anchor_map(None, b);
    assert!(matches!(res, Err(StoreError::Conflict)), "{res:?}");
    assert_eq!(s.anchor_map_ref().unwrap(), a);
    // From the current ref: installed.
    s.swap_anchor_map(Some(a), b).unwrap();
    assert_eq!(s.anchor_map_ref().unwrap(), b);
    // From a stale ref: a conflict, nothing changed.
    let res = s.swap_anchor_map(Some(a), c);
    assert!(matches!(res, Err(StoreError::Conflict)), "{res:?}");
    assert!(
        !res.unwrap_err().is_retryable(),
        "a conflict asks for a recompute"
    );
    assert_eq!(s.anchor_map_ref().unwrap(), b);
    // Blobs put before a swap are there after it.
    let (r, _) = s.put(b"reached by the new map").unwrap();
    s.swap_anchor_map(Some(b), r).unwrap();
    assert_eq!(s.anchor_map_ref().unwrap(), r);
    assert_eq!(s.get(&r).unwrap().as_ref(), b"reached by the new map");
}

/// Many threads swapping from what each last saw: every success is one step of a
/// single chain, every failure a conflict.
fn racing_swaps(s: Arc<dyn AnchorStore>) {
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut won = Vec::new();
                for i in 0..25u8 {
                    let old = match s.anchor_map_ref() {
                        Ok(r) => Some(r),
                        Err(StoreError::NoAnchorMap) => None,
                        Err(e) => panic!("{e}"),
                    };
                    let new = Ref::of(&[t, i]);
                    match s.swap_anchor_map(old, new) {
                        Ok(()) => won.push((old, new)),
                        Err(StoreError::Conflict) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                won
            })
        })
        .collect();
    let won: Vec<(Option<Ref>, Ref)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(!won.is_empty());
    // Each installed ref was installed over a distinct predecessor: a chain.
    let mut olds: Vec<Option<Ref>> = won.iter().map(|w| w.0).collect();
    olds.sort();
    olds.dedup();
    assert_eq!(olds.len(), won.len(), "two swaps won from one ref");
    let last = s.anchor_map_ref().unwrap();
    assert!(won.iter().any(|w| w.1 == last));
}

fn concurrent_puts(s: Arc<dyn AnchorStore>) {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| s.put(format!("{t}-{i}").as_bytes()).unwrap().0)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for r in t.join().unwrap() {
            assert!(s.contains(&r).unwrap());
        }
    }
}

/// Reads into a caller's buffer: the bytes and length of a blob that fits, a
/// longer blob refused or sized with the buffer untouched, errors in order.
fn reads_into_buffers(s: &dyn AnchorStore) {
    let big: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i % 253) as u8).collect();
    let (br, _) = s.put(&big).unwrap();
    let (sr, _) = s.put(b"small one").unwrap();
    let mut exact = vec![0u8; big.len()];
    assert_eq!(s.get_into(&br, &mut exact).unwrap(), big.len());
    assert!(exact == big, "the blob's bytes");
    let mut roomy = vec![0xeeu8; 64];
    assert_eq!(s.get_into(&sr, &mut roomy).unwrap(), 9);
    assert_eq!(&roomy[..9], b"small one");
    assert!(
        roomy[9..].iter().all(|&b| b == 0xee),
        "nothing past the blob"
    );
    let mut short = vec![0xeeu8; 100];
    match s.get_into(&br, &mut short) {
        Ok(n) => {
            assert_eq!(n, big.len(), "a longer blob gives its length");
            assert!(short.iter().all(|&b| b == 0xee), "and leaves the buffer");
        }
        Err(e) => assert!(matches!(e, StoreError::Refused { .. }), "{e}"),
    }
    let missing = Ref::of(b"never stored");
    let mut buf = vec![0u8; 16];
    assert!(matches!(s.get_into(&missing, &mut buf), Err(StoreError::NotFound(m)) if m == missing));
    let (mut a, mut b, mut c) = (vec![0u8; big.len()], vec![0u8; 16], vec![0u8; 9]);
    let mut jobs: Vec<(Ref, &mut [u8])> = vec![(br, &mut a), (missing, &mut b), (sr, &mut c)];
    let got = s.get_many_into(&mut jobs);
    assert_eq!(got.len(), 3);
    assert_eq!(*got[0].as_ref().unwrap(), big.len());
    assert!(matches!(got[1], Err(StoreError::NotFound(m)) if m == missing));
    assert_eq!(*got[2].as_ref().unwrap(), 9);
    drop(jobs);
    assert!(a == big);
    assert_eq!(&c[..], b"small one");
}

fn suite(make: &dyn Fn() -> Arc<dyn AnchorStore>) {
    blobs_and_listing(&*make());
    reads_into_buffers(&*make());
    compare_and_swap(&*make());
    swap(&*make());
    racing_swaps(make());
    concurrent_puts(make());
    described(&*make());
}

/// What a store says of itself agrees with what it holds.
fn described(s: &dyn AnchorStore) {
    let (r, _) = s.put(b"sized").unwrap();
    assert_eq!(s.blob_size(&r).unwrap(), 5);
    let missing = Ref::of(b"never stored");
    assert!(matches!(s.blob_size(&missing), Err(StoreError::NotFound(m)) if m == missing));
    // A store with a directory has an identity and a capacity; one in memory has
    // neither; one on a server has an identity of the server's kind.
    match (s.local_dir(), s.identity()) {
        (Some(dir), id) => {
            assert!(dir.is_absolute());
            assert!(id.is_some());
            assert!(s.capacity().is_some_and(|c| c.blocks > 0));
        }
        (None, None) => {}
        (None, Some(id)) => assert!(id.starts_with("pg:"), "{id}"),
    }
}

#[test]
fn mem_store() {
    suite(&|| Arc::new(MemStore::new()));
}

#[test]
fn file_store() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    suite(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(FileStore::create(dir.path().join(i.to_string())).unwrap())
    });
}

#[test]
fn lru_over_mem_and_file() {
    suite(&|| Arc::new(LruStore::new(MemStore::new(), 1 << 20)));
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    suite(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(LruStore::new(
            FileStore::create(dir.path().join(i.to_string())).unwrap(),
            4096,
        ))
    });
}

#[test]
fn pg_store_and_lru_over_it() {
    let Some(_) = pg_common::server() else {
        return;
    };
    let dbs = parking_lot::Mutex::new(Vec::new());
    let make = || {
        let db = pg_common::TestDb::new().expect("a server");
        let url = db.url.clone();
        dbs.lock().push(db);
        PgStore::open(&url, OpenMode::Create).unwrap().0
    };
    suite(&|| Arc::new(make()));
    suite(&|| Arc::new(LruStore::new(make(), 4096)));
}

#[test]
fn faulty_when_healthy() {
    suite(&|| Arc::new(FaultyStore::new(MemStore::new())));
}

#[test]
fn disk_cache_over_mem() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    suite(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let at = dir.path().join(i.to_string());
        Arc::new(DiskCache::open(MemStore::new(), &at, 1 << 20).unwrap())
    });
}

#[test]
fn faulty_fails_on_demand() {
    let s = FaultyStore::new(MemStore::new());
    s.set_errno(libc::ENOSPC);
    s.fail_puts_after(2);
    assert!(s.put(b"1").is_ok());
    assert!(s.put(b"2").is_ok());
    let e = s.put(b"3").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    s.heal();
    assert!(s.put(b"3").is_ok());
    s.fail_gets(true);
    assert_eq!(
        s.get(&Ref::of(b"1")).unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    s.fail_gets(false);
    s.fail_updates(true);
    assert!(s.update_anchor_map(&mut |_| Ok(Ref::of(b"x"))).is_err());
    let e = s.swap_anchor_map(None, Ref::of(b"x")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    assert!(matches!(s.anchor_map_ref(), Err(StoreError::NoAnchorMap)));
}

#[test]
fn backend_errors_say_whether_a_retry_helps() {
    let lost = StoreError::backend(
        "reading blob x",
        true,
        std::io::Error::from_raw_os_error(libc::ECONNRESET),
    );
    assert!(lost.is_retryable());
    assert_eq!(lost.raw_os_error(), Some(libc::ECONNRESET));
    assert!(
        std::error::Error::source(&lost).is_some(),
        "the source is kept"
    );
    let refused = StoreError::backend("opening", false, "no such table");
    assert!(!refused.is_retryable());
    assert_eq!(refused.raw_os_error(), None);
    assert!(!refused.is_damage());
    assert!(!StoreError::Conflict.is_retryable());
}

#[test]
fn one_store_two_handles_one_identity() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStore::create(dir.path().join("s")).unwrap();
    let b = FileStore::open(dir.path().join("s/../s")).unwrap();
    let other = FileStore::create(dir.path().join("t")).unwrap();
    assert_eq!(a.identity(), b.identity());
    assert_ne!(a.identity(), other.identity());
    assert_eq!(a.local_dir(), b.local_dir());
    assert_eq!(MemStore::new().identity(), None);
}

#[test]
fn lru_is_bounded_in_bytes() {
    let s = LruStore::new(MemStore::new(), 10_000);
    for i in 0..100u32 {
        s.put(&vec![i as u8; 1000]).unwrap();
        assert!(s.cached_bytes() <= 10_000);
    }
    // A quarter of a small budget is kept for installed maps' nodes.
    assert!(s.cached_bytes() >= 7_000, "{}", s.cached_bytes());
    // Every blob is still readable through the cache.
    for i in 0..100u32 {
        assert_eq!(s.get(&Ref::of(&vec![i as u8; 1000])).unwrap().len(), 1000);
    }
}

/// The nodes each update installs (and the next one supersedes) do not push out of
/// the cache what readers use, and the newest are served from it.
#[test]
fn lru_keeps_read_blobs_while_updates_install_maps() {
    use anchorfs::store::DeletingStore;
    let s = LruStore::new(MemStore::new(), 64 << 10);
    let read: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 4000]).collect();
    for b in &read {
        s.inner().put(b).unwrap();
        s.get(&Ref::of(b)).unwrap();
    }
    let mut old = None;
    let mut last = Vec::new();
    for i in 0..1000u32 {
        let node = format!("node {i}").repeat(200).into_bytes();
        let r = Ref::of(&node);
        s.put_and_swap(&[(r, anchorfs::Blob::from(node.clone()))], old, r)
            .unwrap();
        old = Some(r);
        last = node;
    }
    assert!(s.cached_bytes() <= 64 << 10);
    // Served from the cache: the store below no longer has them.
    for b in &read {
        assert!(s.inner().delete(&Ref::of(b)).unwrap());
        assert_eq!(s.get(&Ref::of(b)).unwrap(), &b[..]);
    }
    assert!(s.inner().delete(&Ref::of(&last)).unwrap());
    assert_eq!(s.get(&Ref::of(&last)).unwrap(), &last[..]);
}

mod file_specific {
    use super::*;
    use std::fs;
    use std::time::{Duration, SystemTime};

    #[test]
    fn damaged_blobs_are_never_returned() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::create(dir.path()).unwrap();
        let (r, _) = s.put(b"precious content").unwrap();
        let path = s.blob_path(&r);
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(s.get(&r), Err(StoreError::Damaged(d)) if d == r));
        let mut buf = vec![0u8; 16];
        assert!(matches!(s.get_into(&r, &mut buf), Err(StoreError::Damaged(d)) if d == r));
        fs::write(&path, b"precious").unwrap();
        assert!(matches!(
            s.get_into(&r, &mut buf),
            Err(StoreError::Damaged(_))
        ));
        assert!(matches!(s.get(&r), Err(StoreError::Damaged(_))));
        // A put of the same content repairs a blob whose length is wrong.
        assert_eq!(s.put(b"precious content").unwrap(), (r, true));
        assert_eq!(s.get(&r).unwrap().as_ref(), b"precious content");
        fs::remove_file(&path).unwrap();
        assert!(matches!(s.get(&r), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn putting_an_existing_blob_makes_it_young_again() {
        use anchorfs::store::DeletingStore;
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::create(dir.path()).unwrap();
        let (r, _) = s.put(b"old content").unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(s.blob_path(&r))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(s.written_at(&r).unwrap() < SystemTime::now() - Duration::from_secs(3600));
        assert_eq!(s.put(b"old content").unwrap(), (r, false));
        assert!(
            s.written_at(&r).unwrap() > SystemTime::now() - Duration::from_secs(60),
            "gc's grace covers it again"
        );
    }

    #[test]
    fn leftover_temp_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::create(dir.path()).unwrap();
        let (r, _) = s.put(b"x").unwrap();
        let leaf_dir = s.blob_path(&r).parent().unwrap().to_path_buf();
        fs::write(leaf_dir.join(".tmp-abandoned"), b"half a blob").unwrap();
        fs::write(dir.path().join(".tmp-mapref"), b"junk").unwrap();
        let mut got = Vec::new();
        s.list_refs(&Ref::ZERO, &mut |r| {
            got.push(r);
            Ok(true)
        })
        .unwrap();
        assert_eq!(got, vec![r]);
    }

    #[test]
    fn not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FileStore::open(dir.path().join("missing")),
            Err(StoreError::NotAStore { .. })
        ));
        fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(matches!(
            FileStore::open(dir.path().join("file")),
            Err(StoreError::NotAStore { .. })
        ));
        assert!(matches!(
            FileStore::open(dir.path()),
            Err(StoreError::NotAStore { .. })
        ));
        assert!(
            matches!(
                FileStore::create(dir.path()),
                Err(StoreError::NotAStore { .. })
            ),
            "a non-empty directory that is not a store is refused"
        );
        let s = FileStore::create(dir.path().join("new/store")).unwrap();
        s.put(b"x").unwrap();
        assert!(FileStore::open(dir.path().join("new/store")).is_ok());
    }

    #[test]
    fn garbage_map_ref_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::create(dir.path()).unwrap();
        fs::write(dir.path().join("anchormapref"), b"not 32 bytes").unwrap();
        assert!(matches!(
            s.anchor_map_ref(),
            Err(StoreError::BadAnchorMapRef { len: 12, .. })
        ));
        let res = s.update_anchor_map(&mut |_| Ok(Ref::of(b"x")));
        assert!(res.is_err(), "no update over a damaged ref");
        assert_eq!(
            fs::read(dir.path().join("anchormapref")).unwrap(),
            b"not 32 bytes"
        );
    }

    #[test]
    fn waits_for_a_live_lock_and_takes_over_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::create(dir.path()).unwrap();
        let lock = dir.path().join("anchormapref.lock");
        fs::write(&lock, b"").unwrap();
        let lock2 = lock.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            fs::remove_file(lock2).unwrap();
        });
        let start = std::time::Instant::now();
        s.update_anchor_map(&mut |_| Ok(Ref::of(b"1"))).unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "waited for the holder"
        );
        releaser.join().unwrap();
        assert!(!lock.exists(), "lock released");

        // An abandoned lock (older than 60 s) is taken over.
        fs::write(&lock, b"").unwrap();
        let old = SystemTime::now() - Duration::from_secs(120);
        fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let start = std::time::Instant::now();
        s.update_anchor_map(&mut |_| Ok(Ref::of(b"2"))).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(s.anchor_map_ref().unwrap(), Ref::of(b"2"));
        assert!(!lock.exists());
    }

    #[test]
    fn layout_matches_the_go_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::create(dir.path()).unwrap();
        let (r, _) = s.put(b"layout").unwrap();
        let h = r.to_hex();
        let p = dir
            .path()
            .join("blobs")
            .join(&h[..2])
            .join(&h[..4])
            .join(&h);
        assert_eq!(fs::read(p).unwrap(), b"layout");
        s.update_anchor_map(&mut |_| Ok(r)).unwrap();
        assert_eq!(
            fs::read(dir.path().join("anchormapref")).unwrap(),
            r.as_bytes()
        );
        // A store laid out by hand (as Go writes it) opens and reads.
        let go = dir.path().join("go");
        let body = b"written by go";
        let gr = Ref::of(body);
        let gh = gr.to_hex();
        let gp = go.join("blobs").join(&gh[..2]).join(&gh[..4]);
        fs::create_dir_all(&gp).unwrap();
        fs::write(gp.join(&gh), body).unwrap();
        fs::write(go.join("anchormapref"), gr.as_bytes()).unwrap();
        let gs = FileStore::open(&go).unwrap();
        assert_eq!(gs.get(&gr).unwrap().as_ref(), body);
        assert_eq!(gs.anchor_map_ref().unwrap(), gr);
    }
}
