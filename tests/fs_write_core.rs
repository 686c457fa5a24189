//! The write path of the filesystem core, without a mount: the staged-file state
//! machine, commit rules, and failures injected into the store.

use std::sync::Arc;
use std::time::Duration;

use anchorfs::anchor;
use anchorfs::content;
use anchorfs::fs::inode::ROOT_INO;
use anchorfs::fs::{AnchorFs, FakeProcesses, FsError, FsOptions, Ino, ProcessId, SetAttr, LATEST};
use anchorfs::store::faulty::FaultyStore;
use anchorfs::store::mem::MemStore;
use anchorfs::Timestamp;

type Store = Arc<FaultyStore<MemStore>>;

fn setup() -> (Store, AnchorFs) {
    let (store, fs, _) = setup_with_processes();
    (store, fs)
}

/// A core whose threads' processes the test assigns (any other thread is its own
/// process).
fn setup_with_processes() -> (Store, AnchorFs, Arc<FakeProcesses>) {
    let store = Arc::new(FaultyStore::new(MemStore::new()));
    let processes = Arc::new(FakeProcesses::new());
    let fs =
        AnchorFs::with_processes(store.clone(), FsOptions::default(), processes.clone()).unwrap();
    (store, fs, processes)
}

fn contents(store: &Store, name: &[u8]) -> Vec<Vec<u8>> {
    anchor::history(&**store, name)
        .unwrap()
        .iter()
        .map(|a| content::read_all(&**store, &a.r).unwrap())
        .collect()
}

/// Creates `name` in anchor directory `dir`, writes `data`, closes; returns the
/// result of the close.
fn write_file(fs: &AnchorFs, dir: Ino, name: &[u8], data: &[u8]) -> Result<(), FsError> {
    let (_, fh) = fs.create(dir, name)?;
    fs.write(fh, 0, data, None)?;
    let r = fs.flush(fh, None);
    fs.release(fh)?;
    r
}

#[test]
fn create_write_close_is_a_version() {
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"notes").unwrap().attr.ino;
    assert!(matches!(fs.mkdir(ROOT_INO, b"notes"), Err(FsError::Exists)));
    write_file(&fs, dir, b"a.txt", b"hello").unwrap();
    assert_eq!(contents(&store, b"notes"), vec![b"hello".to_vec()]);
    // Listed at once, under its commit time, with latest.
    let names: Vec<Vec<u8>> = fs
        .readdir(dir, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(names[3], LATEST);
    // A time-named file back-dates its version.
    write_file(&fs, dir, b"2001-02-03T04:05:06Z", b"old").unwrap();
    let h = anchor::history(&*store, b"notes").unwrap();
    assert_eq!(h[0].at, Timestamp::parse("2001-02-03T04:05:06Z").unwrap());
}

#[test]
fn sequential_random_and_seeded_writes() {
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"d").unwrap().attr.ino;
    // Random offsets go through the spool; reading back sees own writes.
    let (_, fh) = fs.create(dir, b"r").unwrap();
    fs.write(fh, 10, b"world", None).unwrap();
    fs.write(fh, 0, b"hello", None).unwrap();
    assert_eq!(fs.read(fh, 0, 15).unwrap(), b"hello\0\0\0\0\0world");
    fs.flush(fh, None).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(
        contents(&store, b"d"),
        vec![b"hello\0\0\0\0\0world".to_vec()]
    );
    // Opening latest for writing seeds a new version; the old one stays.
    let latest = fs.lookup(dir, LATEST).unwrap().attr.ino;
    let target = fs.readlink(latest).unwrap();
    let v = fs.lookup(dir, &target).unwrap().attr.ino;
    let o = fs.open(v, true, false).unwrap();
    fs.write(o.fh, 15, b"!", None).unwrap();
    fs.flush(o.fh, None).unwrap();
    fs.release(o.fh).unwrap();
    let o = fs.open(v, true, true).unwrap();
    fs.write(o.fh, 0, b"new", None).unwrap();
    fs.flush(o.fh, None).unwrap();
    fs.release(o.fh).unwrap();
    assert_eq!(
        contents(&store, b"d"),
        vec![
            b"hello\0\0\0\0\0world".to_vec(),
            b"hello\0\0\0\0\0world!".to_vec(),
            b"new".to_vec()
        ]
    );
    // Opened for writing and closed without a write: nothing new.
    let o = fs.open(v, true, false).unwrap();
    fs.flush(o.fh, None).unwrap();
    fs.release(o.fh).unwrap();
    assert_eq!(contents(&store, b"d").len(), 3);
    // Truncation through setattr on an open file.
    let (_, fh) = fs.create(dir, b"t").unwrap();
    fs.write(fh, 0, b"0123456789", None).unwrap();
    let staged = fs.lookup(dir, b"t").unwrap().attr.ino;
    fs.setattr(
        staged,
        Some(fh),
        &SetAttr {
            size: Some(4),
            ..SetAttr::default()
        },
        None,
    )
    .unwrap();
    fs.flush(fh, None).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(contents(&store, b"d").last().unwrap(), b"0123");
}

#[test]
fn scratch_names_commit_only_when_renamed() {
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"s").unwrap().attr.ino;
    for name in [&b".swapfile"[..], b"x~", b"a.swp", b"b.swx", b"4913"] {
        write_file(&fs, dir, name, b"junk").unwrap();
    }
    assert!(
        contents(&store, b"s").is_empty(),
        "no scratch file became a version"
    );
    write_file(&fs, dir, b".rsync.tmp", b"real").unwrap();
    fs.rename(dir, b".rsync.tmp", dir, b"real.txt").unwrap();
    assert_eq!(contents(&store, b"s"), vec![b"real".to_vec()]);
    fs.unlink(dir, b"x~").unwrap();
    assert!(matches!(fs.lookup(dir, b"x~"), Err(FsError::NotFound)));
}

#[test]
fn history_is_immutable() {
    let (_store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"h").unwrap().attr.ino;
    write_file(&fs, dir, b"f", b"one").unwrap();
    let latest = fs.lookup(dir, LATEST).unwrap().attr.ino;
    let v = fs.readlink(latest).unwrap();
    assert_eq!(fs.unlink(dir, &v).unwrap_err().errno(), libc::EPERM);
    assert_eq!(fs.unlink(dir, LATEST).unwrap_err().errno(), libc::EPERM);
    assert_eq!(fs.rmdir(ROOT_INO, b"h").unwrap_err().errno(), libc::EPERM);
    assert_eq!(
        fs.rename(ROOT_INO, b"h", ROOT_INO, b"h2")
            .unwrap_err()
            .errno(),
        libc::EPERM
    );
    assert_eq!(
        fs.rename(dir, &v, dir, b"other").unwrap_err().errno(),
        libc::EPERM
    );
    let vino = fs.lookup(dir, &v).unwrap().attr.ino;
    assert_eq!(
        fs.setattr(
            vino,
            None,
            &SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
            None
        )
        .unwrap_err()
        .errno(),
        libc::EPERM
    );
    assert!(
        fs.setattr(
            vino,
            None,
            &SetAttr {
                mtime: Some(std::time::SystemTime::now()),
                ..SetAttr::default()
            },
            None
        )
        .is_ok(),
        "touch is accepted"
    );
    assert_eq!(
        fs.create(ROOT_INO, b"top").unwrap_err().errno(),
        libc::EPERM
    );
    // A new anchor directory without versions can go.
    fs.mkdir(ROOT_INO, b"tmp").unwrap();
    fs.rmdir(ROOT_INO, b"tmp").unwrap();
    assert!(matches!(
        fs.lookup(ROOT_INO, b"tmp"),
        Err(FsError::NotFound)
    ));
}

#[test]
fn failed_commits_are_reported_and_change_nothing() {
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"e").unwrap().attr.ino;
    write_file(&fs, dir, b"ok", b"fine").unwrap();

    // The store is full while the content is stored.
    store.set_errno(libc::ENOSPC);
    store.fail_puts(true);
    let (_, fh) = fs.create(dir, b"big").unwrap();
    let wrote = fs.write(fh, 0, &vec![5u8; 3 << 20], None);
    let closed = fs.flush(fh, None);
    let err = wrote
        .err()
        .or(closed.err())
        .expect("the write or the close fails");
    assert_eq!(err.errno(), libc::ENOSPC);
    assert_eq!(
        fs.flush(fh, None).unwrap_err().errno(),
        libc::ENOSPC,
        "the error stays"
    );
    fs.release(fh).unwrap();
    store.heal();
    assert_eq!(
        contents(&store, b"e"),
        vec![b"fine".to_vec()],
        "history unchanged, nothing partial"
    );

    // The anchor map update fails.
    store.set_errno(libc::EIO);
    store.fail_updates(true);
    let e = write_file(&fs, dir, b"again", b"second").unwrap_err();
    assert_eq!(e.errno(), libc::EIO);
    store.heal();
    assert_eq!(contents(&store, b"e"), vec![b"fine".to_vec()]);
    // And everything works again without a remount.
    write_file(&fs, dir, b"later", b"works").unwrap();
    assert_eq!(
        contents(&store, b"e"),
        vec![b"fine".to_vec(), b"works".to_vec()]
    );
}

#[test]
fn concurrent_commits_lose_nothing() {
    let (store, fs) = setup();
    let fs = Arc::new(fs);
    let dir = fs.mkdir(ROOT_INO, b"c").unwrap().attr.ino;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    write_file(
                        &fs,
                        dir,
                        format!("f{t}-{i}").as_bytes(),
                        format!("{t}/{i}").as_bytes(),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let c = contents(&store, b"c");
    assert_eq!(c.len(), 200);
    let mut d = c.clone();
    d.sort();
    d.dedup();
    assert_eq!(d.len(), 200, "none twice");
}

#[test]
fn small_files_are_raw_blobs_and_large_ones_split_trees() {
    use anchorfs::content::{self, Kind};
    use anchorfs::fs::SMALL_MAX;
    use anchorfs::store::Getter;
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"k").unwrap().attr.ino;
    let kind_of_latest = |store: &Store| {
        let h = anchor::history(&**store, b"k").unwrap();
        let r = h.last().unwrap().r;
        (r, content::kind_of(&**store, &r).unwrap())
    };
    // Small: one raw blob, nothing recorded in the proto-types map.
    let types_before = anchor::history(&*store, anchor::PROTO_TYPES_ANCHOR).unwrap();
    write_file(&fs, dir, b"small", b"a small file").unwrap();
    let (r, kind) = kind_of_latest(&store);
    assert_eq!((r, kind), (anchorfs::Ref::of(b"a small file"), Kind::Raw));
    assert_eq!(
        anchor::history(&*store, anchor::PROTO_TYPES_ANCHOR).unwrap(),
        types_before
    );
    // Exactly SMALL_MAX bytes is still small; one more byte is a split tree.
    let edge = vec![7u8; SMALL_MAX];
    write_file(&fs, dir, b"edge", &edge).unwrap();
    assert_eq!(kind_of_latest(&store).1, Kind::Raw);
    let big = vec![8u8; SMALL_MAX + 1];
    write_file(&fs, dir, b"big", &big).unwrap();
    assert_eq!(kind_of_latest(&store).1, Kind::Split);
    // Content whose bytes read as a split tree root (here: the root node of a tree
    // already in the store) must not be stored raw, or it would read as that tree.
    let inner = content::store(&*store, &b"the tree's own content"[..]).unwrap();
    let node = store.get(&inner).unwrap().to_vec();
    assert!(node.len() <= SMALL_MAX);
    write_file(&fs, dir, b"looks-like-a-tree", &node).unwrap();
    let (r, kind) = kind_of_latest(&store);
    assert_eq!(kind, Kind::Split);
    assert_eq!(content::read_all(&*store, &r).unwrap(), node);
    // Appending to a small version past the limit streams into a split tree.
    let latest = fs.lookup(dir, LATEST).unwrap().attr.ino;
    let target = fs.readlink(latest).unwrap();
    let v = fs.lookup(dir, &target).unwrap().attr.ino;
    let o = fs.open(v, true, false).unwrap();
    fs.write(o.fh, node.len() as u64, &big, None).unwrap();
    fs.flush(o.fh, None).unwrap();
    fs.release(o.fh).unwrap();
    let all = contents(&store, b"k");
    assert_eq!(all.last().unwrap(), &[node, big].concat());
    assert_eq!(all.len(), 5);
}

/// A truncating or appending open of a version by a thread moves to a new file:
/// the open asks for a new lookup (ESTALE), that thread alone then finds the new
/// file under the version's name, and opening it writes a new version; the
/// version's own inode is never opened for writing. A retry that reaches a version
/// all the same (here: `latest` moved on in between) writes over it in place.
#[test]
fn a_truncating_open_of_a_version_moves_to_a_new_file_for_its_thread() {
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"d").unwrap().attr.ino;
    write_file(&fs, dir, b"a", b"first").unwrap();
    let name = fs
        .readlink(fs.lookup(dir, LATEST).unwrap().attr.ino)
        .unwrap();
    let v = fs.lookup(dir, &name).unwrap().attr.ino;
    let (writer, other) = (Some(7), Some(8));
    let e = fs.open_as(v, true, true, false, writer).unwrap_err();
    assert_eq!(e.errno(), libc::ESTALE);
    // Other threads still find the version; the writer finds its new file.
    assert_eq!(fs.lookup_as(dir, &name, other).unwrap().attr.ino, v);
    let moved = fs.lookup_as(dir, &name, writer).unwrap().attr.ino;
    assert_ne!(moved, v);
    assert_eq!(fs.getattr(moved).unwrap().attr.size, 0, "truncated");
    let o = fs.open_as(moved, true, true, false, writer).unwrap();
    assert!(!o.direct_io, "the new file is the writer's own");
    // Once opened, the writer's lookups find the version again.
    assert_eq!(fs.lookup_as(dir, &name, writer).unwrap().attr.ino, v);
    fs.write(o.fh, 0, b"second", writer).unwrap();
    fs.flush(o.fh, writer).unwrap();
    fs.release(o.fh).unwrap();
    assert_eq!(
        contents(&store, b"d"),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
    // An in-place open moves as well while a reader has the version open
    // through the page cache.
    let r = fs.open(v, false, false).unwrap();
    assert!(r.keep_cache);
    let e = fs.open_as(v, true, false, false, writer).unwrap_err();
    assert_eq!(e.errno(), libc::ESTALE);
    fs.release(r.fh).unwrap();
    let moved = fs.lookup_as(dir, &name, writer).unwrap().attr.ino;
    assert_ne!(moved, v);
    let o = fs.open_as(moved, true, false, false, writer).unwrap();
    fs.flush(o.fh, writer).unwrap();
    fs.release(o.fh).unwrap();
    // An appending open moves, seeded with the version's content.
    let e = fs.open_as(v, true, false, true, other).unwrap_err();
    assert_eq!(e.errno(), libc::ESTALE);
    let moved = fs.lookup_as(dir, &name, other).unwrap().attr.ino;
    assert_eq!(fs.getattr(moved).unwrap().attr.size, 5, "seeded");
    // The retry reaches another version (as when `latest` moved on meanwhile):
    // asking again would fail the open, so it writes over that one in place.
    let name2 = fs
        .readlink(fs.lookup(dir, LATEST).unwrap().attr.ino)
        .unwrap();
    let v2 = fs.lookup(dir, &name2).unwrap().attr.ino;
    let o = fs.open_as(v2, true, false, true, other).unwrap();
    assert!(o.direct_io, "in place, through the version's inode");
    fs.release(o.fh).unwrap();
    // In-place opens without readers write over the version's inode, which shows
    // the writer's file until the last close: its size follows the writes and
    // truncates (what `fstat`, `SEEK_END` and `mmap` need).
    let o = fs.open_as(v, true, false, false, writer).unwrap();
    assert!(o.direct_io);
    assert_eq!(fs.getattr(v).unwrap().attr.size, 5);
    fs.write(o.fh, 10, b"past the end", writer).unwrap();
    let e = fs.getattr(v).unwrap();
    assert_eq!(
        (e.attr.size, e.ttl),
        (22, Duration::ZERO),
        "the writer's size"
    );
    fs.setattr(
        v,
        Some(o.fh),
        &SetAttr {
            size: Some(40),
            ..SetAttr::default()
        },
        writer,
    )
    .unwrap();
    assert_eq!(fs.getattr(v).unwrap().attr.size, 40, "truncated up");
    // Meanwhile a reader of the version reads its bytes, around the page cache.
    let r = fs.open(v, false, false).unwrap();
    assert!(r.direct_io && !r.keep_cache);
    assert_eq!(fs.read(r.fh, 0, 100).unwrap(), b"first");
    // A second in-place writer moves to a file of its own.
    let e = fs.open_as(v, true, false, false, other).unwrap_err();
    assert_eq!(e.errno(), libc::ESTALE);
    let moved = fs.lookup_as(dir, &name, other).unwrap().attr.ino;
    let o2 = fs.open_as(moved, true, false, false, other).unwrap();
    fs.release(o2.fh).unwrap();
    fs.release(r.fh).unwrap();
    fs.setattr(
        v,
        Some(o.fh),
        &SetAttr {
            size: Some(5),
            ..SetAttr::default()
        },
        writer,
    )
    .unwrap();
    fs.release(o.fh).unwrap();
    // Closed: the inode is the version again.
    let e = fs.getattr(v).unwrap();
    assert_eq!(e.attr.size, 5);
    assert_ne!(e.ttl, Duration::ZERO);
    let c = contents(&store, b"d");
    assert_eq!(c.len(), 3, "the in-place edit is one new version");
    assert_eq!(c[2], b"first");
}

/// The names of anchor directory `dir`'s listing, without `.` and `..`.
fn listing(fs: &AnchorFs, dir: Ino) -> Vec<Vec<u8>> {
    fs.readdir(dir, 2, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

/// A name written and closed keeps naming the version it became: it reads back,
/// reopening it adds nothing, writing it again makes a new version under that name,
/// renaming it onto `latest` or another name adds no version, unlinking it removes
/// the name and never the version; it is never listed.
#[test]
fn a_name_written_keeps_naming_the_version_it_became() {
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"a").unwrap().attr.ino;
    write_file(&fs, dir, b"data", b"one").unwrap();
    let e = fs.lookup(dir, b"data").unwrap();
    assert_eq!(e.attr.size, 3);
    assert_eq!(listing(&fs, dir).len(), 2, "the version and latest only");
    // Read back by a reader of its own.
    let o = fs.open(e.attr.ino, false, false).unwrap();
    assert_eq!(fs.read(o.fh, 0, 10).unwrap(), b"one");
    fs.flush(o.fh, None).unwrap();
    fs.release(o.fh).unwrap();
    // Reopened for writing and closed untouched: nothing new, not even empty.
    let o = fs.open(e.attr.ino, true, false).unwrap();
    fs.flush(o.fh, None).unwrap();
    fs.release(o.fh).unwrap();
    assert_eq!(contents(&store, b"a"), vec![b"one".to_vec()]);
    // Written again (truncating): a new version, still named `data`.
    let o = fs.open(e.attr.ino, true, true).unwrap();
    fs.write(o.fh, 0, b"two", None).unwrap();
    fs.flush(o.fh, None).unwrap();
    fs.release(o.fh).unwrap();
    assert_eq!(
        contents(&store, b"a"),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    let o = fs
        .open(fs.lookup(dir, b"data").unwrap().attr.ino, false, false)
        .unwrap();
    assert_eq!(fs.read(o.fh, 0, 10).unwrap(), b"two");
    fs.release(o.fh).unwrap();
    // Renamed onto another name: the name moves, no version is added.
    fs.rename(dir, b"data", dir, b"renamed").unwrap();
    assert!(matches!(fs.lookup(dir, b"data"), Err(FsError::NotFound)));
    assert_eq!(fs.lookup(dir, b"renamed").unwrap().attr.size, 3);
    // Renamed onto latest, whose version it is: the name goes, nothing is added.
    fs.rename(dir, b"renamed", dir, LATEST).unwrap();
    assert!(matches!(fs.lookup(dir, b"renamed"), Err(FsError::NotFound)));
    assert_eq!(contents(&store, b"a").len(), 2);
    // A temp file renamed over a kept name (an atomic save): one version.
    write_file(&fs, dir, b"config", b"v1").unwrap();
    write_file(&fs, dir, b"config.tmp", b"v2").unwrap();
    fs.rename(dir, b"config.tmp", dir, b"config").unwrap();
    assert_eq!(
        contents(&store, b"a"),
        vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"v1".to_vec(),
            b"v2".to_vec()
        ]
    );
    let o = fs
        .open(fs.lookup(dir, b"config").unwrap().attr.ino, false, false)
        .unwrap();
    assert_eq!(fs.read(o.fh, 0, 10).unwrap(), b"v2");
    fs.release(o.fh).unwrap();
    // Renamed onto latest when a newer version came meanwhile: committed again,
    // as the newest.
    write_file(&fs, dir, b"old", b"older").unwrap();
    write_file(&fs, dir, b"other", b"newer").unwrap();
    fs.rename(dir, b"old", dir, LATEST).unwrap();
    assert_eq!(contents(&store, b"a").last().unwrap(), b"older");
    // Unlinked: the name goes, the version stays.
    let before = contents(&store, b"a");
    fs.unlink(dir, b"config").unwrap();
    assert!(matches!(fs.lookup(dir, b"config"), Err(FsError::NotFound)));
    assert_eq!(contents(&store, b"a"), before);
    assert_eq!(listing(&fs, dir).len(), before.len() + 1);
}

/// A back-dated link whose ref is the next version's would move that version
/// earlier (the store keeps the earlier of equal neighbours): refused.
#[test]
fn a_back_dated_link_that_would_move_a_version_is_refused() {
    let (store, fs) = setup();
    let dir = fs.mkdir(ROOT_INO, b"l").unwrap().attr.ino;
    write_file(&fs, dir, b"2026-06-02T00:00:00Z", b"june").unwrap();
    let june = anchor::history(&*store, b"l").unwrap()[0];
    let hex = june.r.to_hex();
    let e = fs
        .symlink(dir, b"2026-06-01T00:00:00Z", hex.as_bytes())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    assert_eq!(anchor::history(&*store, b"l").unwrap(), vec![june]);
    // Onto an existing version's time: refused too.
    let e = fs
        .symlink(dir, b"2026-06-02T00:00:00Z", hex.as_bytes())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    // After it with the same ref: the store's rule adds nothing, and nothing moves.
    write_file(&fs, dir, b"2026-05-01T00:00:00Z", b"may").unwrap();
    let before = anchor::history(&*store, b"l").unwrap();
    fs.symlink(dir, b"2026-07-01T00:00:00Z", hex.as_bytes())
        .unwrap();
    assert_eq!(anchor::history(&*store, b"l").unwrap(), before);
    // Between May and June with June's ref: refused; with May's: nothing moves.
    let e = fs
        .symlink(dir, b"2026-05-15T00:00:00Z", hex.as_bytes())
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    fs.symlink(
        dir,
        b"2026-05-15T00:00:00Z",
        before[0].r.to_hex().as_bytes(),
    )
    .unwrap();
    assert_eq!(anchor::history(&*store, b"l").unwrap(), before);
}

#[test]
fn an_inherited_descriptors_close_commits_nothing_the_openers_does() {
    // A file created and closed before any write (`: > f`), whose descriptor a
    // forked child inherited: the child's close (at its exec) is not the writer's,
    // so a look at the anchor commits nothing; the opener's own close, from another
    // thread of the opening process, makes the next look commit the empty file.
    let (store, fs, processes) = setup_with_processes();
    let (opener, opener_other_thread, child) = (100, 101, 200);
    processes.assign(opener, ProcessId(100));
    processes.assign(opener_other_thread, ProcessId(100));
    processes.assign(child, ProcessId(200));
    let dir = fs.mkdir(ROOT_INO, b"inherit").unwrap().attr.ino;
    let (_, fh) = fs.create(dir, b"f").unwrap();
    fs.set_opener(fh, opener);

    // A listing of the anchor is a look at it.
    let listed = |fs: &AnchorFs| -> Vec<Vec<u8>> {
        let entries = fs.readdir(dir, 0, 100).unwrap();
        entries.into_iter().skip(2).map(|e| e.name).collect()
    };
    fs.flush(fh, Some(child)).unwrap();
    assert_eq!(listed(&fs), vec![b"f".to_vec()]);
    assert!(contents_or_none(&store, b"inherit").is_empty());

    fs.flush(fh, Some(opener_other_thread)).unwrap();
    assert_eq!(listed(&fs).len(), 2, "a version and latest");
    assert!(fs.lookup(dir, LATEST).is_ok());
    assert_eq!(contents(&store, b"inherit"), vec![Vec::<u8>::new()]);

    // The release commits nothing more.
    fs.release(fh).unwrap();
    assert_eq!(contents(&store, b"inherit"), vec![Vec::<u8>::new()]);
}

#[test]
fn a_shells_redirect_onto_a_kept_name_makes_one_version() {
    // `echo b > f` where `f` still names the version `echo a > f` made: the shell
    // opens `f` truncating, closes that descriptor after duplicating it (a flush
    // before any write), then writes and closes the duplicate. That first flush
    // must not commit the truncated file as an empty version, as it does not for a
    // new file.
    let (store, fs, processes) = setup_with_processes();
    let shell = 300;
    processes.assign(shell, ProcessId(300));
    let dir = fs.mkdir(ROOT_INO, b"redirect").unwrap().attr.ino;
    let (_, fh) = fs.create(dir, b"f").unwrap();
    fs.set_opener(fh, shell);
    fs.flush(fh, Some(shell)).unwrap();
    fs.write(fh, 0, b"a\n", Some(shell)).unwrap();
    fs.flush(fh, Some(shell)).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(contents(&store, b"redirect"), vec![b"a\n".to_vec()]);
    for (i, next) in [b"b\n", b"c\n"].into_iter().enumerate() {
        let ino = fs.lookup(dir, b"f").unwrap().attr.ino;
        let o = fs.open(ino, true, true).unwrap();
        fs.set_opener(o.fh, shell);
        fs.flush(o.fh, Some(shell)).unwrap();
        fs.write(o.fh, 0, next, Some(shell)).unwrap();
        fs.flush(o.fh, Some(shell)).unwrap();
        fs.release(o.fh).unwrap();
        assert_eq!(
            contents(&store, b"redirect").len(),
            i + 2,
            "one version each"
        );
        assert_eq!(contents(&store, b"redirect").last().unwrap(), next);
    }
    // Truncated and closed with nothing written (`: > f`): one empty version.
    let ino = fs.lookup(dir, b"f").unwrap().attr.ino;
    let o = fs.open(ino, true, true).unwrap();
    fs.set_opener(o.fh, shell);
    fs.flush(o.fh, Some(shell)).unwrap();
    fs.release(o.fh).unwrap();
    assert_eq!(
        contents(&store, b"redirect"),
        vec![
            b"a\n".to_vec(),
            b"b\n".to_vec(),
            b"c\n".to_vec(),
            Vec::new()
        ]
    );
}

/// The contents of `name`'s versions, none if it has no history.
fn contents_or_none(store: &Store, name: &[u8]) -> Vec<Vec<u8>> {
    match anchor::history(&**store, name) {
        Ok(h) => h
            .iter()
            .map(|a| content::read_all(&**store, &a.r).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}
