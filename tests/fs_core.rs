//! The filesystem core without a mount: lookups, attributes, listings and
//! invalidations, called directly.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anchorfs::anchor::{self, Anchor};
use anchorfs::fs::inode::ROOT_INO;
use anchorfs::fs::names::TimeNames;
use anchorfs::fs::{AnchorFs, FileKind, FsError, FsOptions, Ino, LATEST};
use anchorfs::store::mem::MemStore;
use anchorfs::store::Store;
use anchorfs::{content, Ref, Timestamp};

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn fs_over(store: Arc<MemStore>, names: TimeNames) -> AnchorFs {
    AnchorFs::new(
        store,
        FsOptions {
            time_names: names,
            ..FsOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn lookups_attributes_and_links() {
    let store = Arc::new(MemStore::new());
    let data = vec![9u8; 70_000];
    let root = content::store(&*store, &data[..]).unwrap();
    content::put_split(&*store, b"doc", root, t("2026-03-01T10:00:00.5Z")).unwrap();
    let small = content::store(&*store, &b"hi"[..]).unwrap();
    content::put_split(&*store, b"doc", small, t("2026-03-02T10:00:00Z")).unwrap();
    let fs = fs_over(store, TimeNames::Rfc3339);

    let dir = fs.lookup(ROOT_INO, b"doc").unwrap();
    assert_eq!(dir.attr.kind, FileKind::Dir);
    assert_eq!(dir.attr.mtime, t("2026-03-02T10:00:00Z").to_system_time());
    let v1 = fs
        .lookup(dir.attr.ino, b"2026-03-01T10:00:00.500000000Z")
        .unwrap();
    assert_eq!(v1.attr.kind, FileKind::File);
    assert_eq!(v1.attr.size, 70_000);
    assert_eq!(v1.attr.blocks, 137, "70,000 / 512 rounded up");
    assert_eq!(
        v1.attr
            .mtime
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
        500_000_000
    );
    assert_eq!(
        v1.attr.perm, 0o644,
        "writable: writing starts a new version"
    );
    // The compact spelling names the same file (same inode).
    let v1c = fs
        .lookup(dir.attr.ino, b"2026-03-01_10-00-00.500000000Z")
        .unwrap();
    assert_eq!(v1c.attr.ino, v1.attr.ino);
    let latest = fs.lookup(dir.attr.ino, LATEST).unwrap();
    assert_eq!(latest.attr.kind, FileKind::Symlink);
    assert_eq!(
        fs.readlink(latest.attr.ino).unwrap(),
        b"2026-03-02T10:00:00.000000000Z"
    );
    assert!(matches!(fs.readlink(v1.attr.ino), Err(FsError::NotLink)));

    let o = fs.open(v1.attr.ino, false, false).unwrap();
    assert!(o.keep_cache, "versions keep their page cache");
    assert_eq!(fs.read(o.fh, 69_990, 100).unwrap(), vec![9u8; 10]);
    assert_eq!(fs.read(o.fh, 80_000, 100).unwrap(), Vec::<u8>::new());
    fs.release(o.fh).unwrap();
    assert!(matches!(fs.read(o.fh, 0, 1), Err(FsError::BadHandle)));

    assert_eq!(
        fs.getxattr(v1.attr.ino, "user.anchorfs.ref").unwrap(),
        root.to_hex().into_bytes()
    );
    assert!(matches!(
        fs.getxattr(dir.attr.ino, "user.anchorfs.ref"),
        Err(FsError::NoAttr)
    ));
    assert!(matches!(
        fs.getxattr(v1.attr.ino, "user.other"),
        Err(FsError::NoAttr)
    ));
    // Other namespaces do not exist here, which `ls -l` is told once per listing.
    for name in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
        for ino in [v1.attr.ino, dir.attr.ino] {
            let e = fs.getxattr(ino, name).unwrap_err();
            assert_eq!(e.errno(), libc::EOPNOTSUPP, "{name}");
        }
    }
    assert!(matches!(
        fs.getxattr(Ino(9_999_999), "security.selinux"),
        Err(FsError::NotFound)
    ));

    // Errors and their errnos.
    let e = fs.lookup(ROOT_INO, b"missing").unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT);
    let e = fs
        .lookup(dir.attr.ino, b"2026-03-01T10:00:00Z")
        .unwrap_err();
    assert_eq!(
        e.errno(),
        libc::ENOENT,
        "a near miss of a version's spelling"
    );
    let meta = fs.lookup(ROOT_INO, b".anchorfs").unwrap();
    let at = fs.lookup(meta.attr.ino, b"at").unwrap();
    assert_eq!(
        fs.lookup(at.attr.ino, b"garbage").unwrap_err().errno(),
        libc::EINVAL
    );
    let when = fs
        .lookup(at.attr.ino, b"2026-03-01T12:00:00+01:00")
        .unwrap();
    let asof = fs.lookup(when.attr.ino, b"doc").unwrap();
    assert_eq!(asof.attr.size, 70_000);
    let early = fs.lookup(at.attr.ino, b"2026-01-01T00:00:00Z").unwrap();
    assert_eq!(
        fs.lookup(early.attr.ino, b"doc").unwrap_err().errno(),
        libc::ENOENT
    );
    let refs = fs.lookup(meta.attr.ino, b"refs").unwrap();
    assert_eq!(
        fs.lookup(refs.attr.ino, b"xyz").unwrap_err().errno(),
        libc::EINVAL
    );
    assert_eq!(
        fs.lookup(refs.attr.ino, small.to_hex().as_bytes())
            .unwrap()
            .attr
            .size,
        2
    );
    assert_eq!(
        fs.lookup(v1.attr.ino, b"x").unwrap_err().errno(),
        libc::ENOTDIR
    );
}

#[test]
fn readdir_pages_through_100000_versions_once() {
    let store = Arc::new(MemStore::new());
    let (a, _) = store.put(b"even").unwrap();
    let (b, _) = store.put(b"odd").unwrap();
    let hist: Vec<Anchor> = (0..100_000i64)
        .map(|i| Anchor {
            r: if i % 2 == 0 { a } else { b },
            at: Timestamp::new(1_700_000_000 + i, 0).unwrap(),
        })
        .collect();
    anchor::update(&*store, |u| {
        u.set_history(b"big", &hist);
        Ok(())
    })
    .unwrap();
    let fs = fs_over(store, TimeNames::Compact);
    let dir = fs.lookup(ROOT_INO, b"big").unwrap().attr.ino;
    let mut names = Vec::new();
    let mut offset = 0;
    let mut pages = 0;
    loop {
        let page = fs.readdir(dir, offset, 1000).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 1000);
        for (k, e) in page.iter().enumerate() {
            assert_eq!(e.next, offset + k as u64 + 1, "offsets are positions");
        }
        offset = page.last().unwrap().next;
        names.extend(page.into_iter().map(|e| e.name));
        pages += 1;
    }
    assert_eq!(pages, 101);
    assert_eq!(names.len(), 2 + 100_000 + 1, ". .. versions latest");
    assert_eq!(names[0], b".");
    assert_eq!(names[1], b"..");
    assert_eq!(names.last().unwrap(), LATEST);
    let versions = &names[2..names.len() - 1];
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "time order is name order, no repeats"
    );
    assert_eq!(
        versions[0],
        Timestamp::new(1_700_000_000, 0)
            .unwrap()
            .to_compact()
            .into_bytes()
    );
    // A page from the middle starts exactly there.
    let mid = fs.readdir(dir, 50_002, 3).unwrap();
    assert_eq!(mid[0].name, versions[50_000]);
}

#[test]
fn refresh_sees_new_versions_and_names_what_to_invalidate() {
    let store = Arc::new(MemStore::new());
    let (r1, _) = store.put(b"one").unwrap();
    anchor::put(&*store, b"doc", r1, t("2026-01-01T00:00:00Z")).unwrap();
    let fs = fs_over(store.clone(), TimeNames::Rfc3339);
    let dir = fs.lookup(ROOT_INO, b"doc").unwrap().attr.ino;
    assert!(fs.refresh().unwrap().inodes.is_empty(), "nothing changed");
    let (r2, _) = store.put(b"two").unwrap();
    anchor::put(&*store, b"doc", r2, t("2026-01-02T00:00:00Z")).unwrap();
    anchor::put(&*store, b"new", r2, t("2026-01-02T00:00:00Z")).unwrap();
    let inv = fs.refresh().unwrap();
    assert!(inv.inodes.contains(&ROOT_INO), "{inv:?}");
    assert!(inv.inodes.contains(&dir));
    let latest = fs.lookup(dir, LATEST).unwrap().attr.ino;
    assert_eq!(
        fs.readlink(latest).unwrap(),
        b"2026-01-02T00:00:00.000000000Z"
    );
    assert!(fs.lookup(ROOT_INO, b"new").is_ok());
}

#[test]
fn damaged_and_missing_content_is_eio() {
    let store = Arc::new(anchorfs::store::faulty::FaultyStore::new(MemStore::new()));
    let root = content::store(&*store, &vec![1u8; 5000][..]).unwrap();
    content::put_split(&*store, b"doc", root, t("2026-01-01T00:00:00Z")).unwrap();
    let dangling = Ref::of(b"never stored");
    anchor::put(&*store, b"dangling", dangling, t("2026-01-01T00:00:00Z")).unwrap();
    let fs = AnchorFs::new(store.clone(), FsOptions::default()).unwrap();
    let d = fs.lookup(ROOT_INO, b"dangling").unwrap().attr.ino;
    let e = fs.lookup(d, b"2026-01-01T00:00:00.000000000Z").unwrap_err();
    assert_eq!(e.errno(), libc::EIO, "a version whose blob is missing: {e}");
    let doc = fs.lookup(ROOT_INO, b"doc").unwrap().attr.ino;
    let v = fs
        .lookup(doc, b"2026-01-01T00:00:00.000000000Z")
        .unwrap()
        .attr
        .ino;
    let o = fs.open(v, false, false).unwrap();
    store.set_errno(libc::EIO);
    store.fail_gets(true);
    let e = fs.read(o.fh, 0, 10).unwrap_err();
    assert_eq!(e.errno(), libc::EIO);
    store.fail_gets(false);
    assert_eq!(fs.read(o.fh, 0, 3).unwrap(), vec![1, 1, 1]);
}

#[test]
fn listings_with_attributes_match_lookups_and_count_each_entry_once() {
    let store = Arc::new(MemStore::new());
    for i in 0..40u32 {
        let data = vec![i as u8; 100 + 5000 * i as usize];
        let r = content::store(&*store, &data[..]).unwrap();
        let at = Timestamp::new(1_700_000_000 + i64::from(i), 0).unwrap();
        content::put_split(&*store, b"doc", r, at).unwrap();
    }
    let fs = fs_over(store, TimeNames::Rfc3339);
    let dir = fs.lookup(ROOT_INO, b"doc").unwrap().attr.ino;
    let plain = fs.readdir(dir, 0, 1000).unwrap();
    // Taken in pages of 7 entries, as a kernel buffer would.
    let (mut offset, mut seen) = (0, Vec::new());
    loop {
        let mut page = Vec::new();
        fs.readdir_plus(dir, offset, 1000, &mut |d, e| {
            if page.len() == 7 {
                return true;
            }
            page.push((d.clone(), e.cloned()));
            false
        })
        .unwrap();
        let Some((last, _)) = page.last() else { break };
        offset = last.next;
        seen.extend(page);
    }
    let names: Vec<_> = seen.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(names, plain, "the same entries as a plain listing");
    for (d, e) in &seen {
        if d.name == b"." || d.name == b".." {
            assert!(e.is_none());
            continue;
        }
        let e = e.as_ref().expect("attributes for every entry");
        // What a lookup says (this lookup counts once more).
        let looked = fs.lookup(dir, &d.name).unwrap();
        assert_eq!(e.attr, looked.attr, "{}", String::from_utf8_lossy(&d.name));
        assert_eq!(e.attr.ino, d.ino);
        // Each listed entry was counted once: two forgets free it, after which
        // its number is no longer known.
        fs.forget(d.ino, 1);
        assert!(fs.getattr(d.ino).is_ok(), "still held after one forget");
        fs.forget(d.ino, 1);
        assert!(
            matches!(fs.getattr(d.ino), Err(FsError::NotFound)),
            "freed after as many forgets as lookups"
        );
    }
    let sizes: Vec<u64> = seen
        .iter()
        .filter_map(|(_, e)| e.as_ref())
        .filter(|e| e.attr.kind == FileKind::File)
        .map(|e| e.attr.size)
        .collect();
    assert_eq!(sizes, (0..40).map(|i| 100 + 5000 * i).collect::<Vec<u64>>());
}

#[test]
fn size_log_answers_sizes_and_opening_checks_them() {
    use anchorfs::fs::sizes::{self, SizeLog};
    use anchorfs::store::faulty::FaultyStore;
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join(sizes::FILE_NAME);
    let store = Arc::new(FaultyStore::new(MemStore::new()));
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let root = content::store(&*store, &data[..]).unwrap();
    content::put_split(&*store, b"doc", root, t("2026-03-01T10:00:00Z")).unwrap();
    let with_log = || {
        let opts = FsOptions {
            size_log: Some(log_path.clone()),
            ..FsOptions::default()
        };
        AnchorFs::new(store.clone(), opts).unwrap()
    };
    let version = |fs: &AnchorFs| {
        let d = fs.lookup(ROOT_INO, b"doc").unwrap();
        fs.lookup(d.attr.ino, b"2026-03-01T10:00:00.000000000Z")
            .unwrap()
    };

    // A first mount works the size out from the store and logs it.
    let fs = with_log();
    assert_eq!(version(&fs).attr.size, 70_000);
    drop(fs);
    assert_eq!(SizeLog::open(&log_path, false).get(&root), Some(70_000));

    // The next one answers from the log: no blob read, even with the store failing.
    let fs = with_log();
    store.fail_gets(true);
    let v = version(&fs);
    assert_eq!(v.attr.size, 70_000);
    assert_eq!(
        fs.open(v.attr.ino, false, false).unwrap_err().errno(),
        libc::EIO
    );
    store.heal();
    drop(fs);

    // A wrong size in the log is shown until the version is opened; the open finds
    // it out, reads around the page cache, and corrects the log.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    f.write_all(&sizes::encode(&root, 5)).unwrap();
    drop(f);
    let fs = with_log();
    let v = version(&fs);
    assert_eq!(v.attr.size, 5, "the log's (wrong) size");
    let o = fs.open(v.attr.ino, false, false).unwrap();
    assert!(o.direct_io && !o.keep_cache);
    assert_eq!(fs.read(o.fh, 0, 100_000).unwrap(), data);
    assert_eq!(fs.getattr(v.attr.ino).unwrap().attr.size, 70_000);
    fs.release(o.fh).unwrap();
    drop(fs);
    assert_eq!(SizeLog::open(&log_path, false).get(&root), Some(70_000));

    // Sizes of refs no history holds any more are pruned by the next mount.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    for i in 0..(2 * sizes::PRUNE_SLACK as u64) {
        f.write_all(&sizes::encode(&Ref::of(&i.to_le_bytes()), i))
            .unwrap();
    }
    drop(f);
    drop(with_log());
    assert_eq!(
        std::fs::metadata(&log_path).unwrap().len(),
        sizes::RECORD_LEN as u64,
        "only the live version's size is kept"
    );
    assert_eq!(SizeLog::open(&log_path, false).get(&root), Some(70_000));

    // A read-only mount neither creates nor appends to a log.
    let other = dir.path().join("other");
    let fs = AnchorFs::new(
        store.clone(),
        FsOptions {
            size_log: Some(other.clone()),
            read_only: true,
            ..FsOptions::default()
        },
    )
    .unwrap();
    assert_eq!(version(&fs).attr.size, 70_000);
    assert!(!other.exists());
}
