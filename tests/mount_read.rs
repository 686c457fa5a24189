//! Real mounts, read side: a store written through the library, mounted by the real
//! binary, looked at with `std::fs` and real programs.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anchorfs::store::file::FileStore;
use anchorfs::store::{Getter, Store};
use anchorfs::{anchor, content, Ref, Timestamp};
use common::{eventually, fuse_skipped, run, Mounted};

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// Puts `data` as a split tree under `name` at `at`; returns its root.
fn put(store: &FileStore, name: &[u8], data: &[u8], at: &str) -> Ref {
    let root = content::store(store, data).unwrap();
    content::put_split(store, name, root, t(at)).unwrap();
    root
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the stated length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[test]
fn browse_versions_with_real_programs() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let store = FileStore::create(&sp).unwrap();
    let v1 = b"first version\n".to_vec();
    let v2 = common::bytes(3 << 20, 7);
    let r1 = put(&store, b"notes", &v1, "2026-11-24T21:20:32.123456789Z");
    put(&store, b"notes", &v2, "2026-11-25T08:00:00Z");
    put(&store, b"a/b", b"slash", "2026-01-01T00:00:00Z");
    put(&store, b".hidden", b"dot", "2026-01-01T00:00:00Z");
    put(&store, b"", b"empty name", "2026-01-01T00:00:00Z");
    // A raw blob (as the Go library's plain Put leaves it).
    let (raw, _) = store.put(b"raw blob content").unwrap();
    anchor::put(&store, b"raw", raw, t("2026-02-02T00:00:00Z")).unwrap();

    let m = Mounted::new(&sp, "");
    let mut top: Vec<Vec<u8>> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    top.sort();
    let want: Vec<&[u8]> = vec![
        b"%2Ehidden",
        b"%empty",
        b".anchorfs",
        b"a%2Fb",
        b"notes",
        b"raw",
    ];
    assert_eq!(
        top, want,
        "anchors listed by escaped name, beside .anchorfs"
    );

    let notes = m.path("notes");
    let mut versions: Vec<String> = fs::read_dir(&notes)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        vec![
            "2026-11-24T21:20:32.123456789Z",
            "2026-11-25T08:00:00.000000000Z",
            "latest"
        ]
    );
    assert_eq!(
        fs::read_link(notes.join("latest")).unwrap().as_os_str(),
        "2026-11-25T08:00:00.000000000Z"
    );
    assert_eq!(
        fs::read(notes.join("2026-11-24T21:20:32.123456789Z")).unwrap(),
        v1
    );
    assert_eq!(
        fs::read(notes.join("latest")).unwrap(),
        v2,
        "latest follows to the newest"
    );
    // Compact names are accepted in lookups.
    assert_eq!(
        fs::read(notes.join("2026-11-24_21-20-32.123456789Z")).unwrap(),
        v1
    );

    // stat: true sizes, blocks, mtime = version time, stable inode.
    let md = fs::metadata(notes.join("2026-11-25T08:00:00.000000000Z")).unwrap();
    assert_eq!(md.len(), v2.len() as u64);
    assert_eq!(md.blocks(), (v2.len() as u64).div_ceil(512));
    assert_eq!(
        md.blksize(),
        u64::from(anchorfs::fs::fuse::IO_BLOCK),
        "tools size their buffers by st_blksize: one FUSE request's worth"
    );
    assert_eq!(md.mtime(), t("2026-11-25T08:00:00Z").secs());
    assert_eq!(md.ctime(), md.mtime());
    assert_eq!(
        md.mode() & 0o777,
        0o600,
        "writable mount: writing starts a new version; a new store is 0700, so its \
         versions show no more than 0600"
    );
    let ino = md.ino();
    assert_eq!(
        fs::metadata(notes.join("2026-11-25T08:00:00.000000000Z"))
            .unwrap()
            .ino(),
        ino
    );
    let dmd = fs::metadata(&notes).unwrap();
    assert!(dmd.is_dir());
    assert_eq!(
        dmd.mtime(),
        t("2026-11-25T08:00:00Z").secs(),
        "directory mtime = newest version"
    );

    // Real programs.
    let (code, out, err) = run("ls", &[OsStr::new("-l"), notes.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(&v2.len().to_string()),
        "ls -l shows the true size: {text}"
    );
    assert!(
        text.contains("latest -> 2026-11-25T08:00:00.000000000Z"),
        "{text}"
    );
    let (code, out, _) = run(
        "cat",
        &[notes.join("2026-11-24T21:20:32.123456789Z").as_os_str()],
    );
    assert_eq!((code, out), (0, v1.clone()));
    let (code, out, _) = run(
        "stat",
        &[
            OsStr::new("-L"),
            OsStr::new("-c"),
            OsStr::new("%s %b"),
            notes.join("latest").as_os_str(),
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        format!("{} {}", v2.len(), v2.len().div_ceil(512))
    );
    let (code, out, _) = run(
        "find",
        &[m.mnt.as_os_str(), OsStr::new("-type"), OsStr::new("f")],
    );
    assert_eq!(code, 0);
    let files = String::from_utf8_lossy(&out);
    assert_eq!(files.lines().count(), 6, "one file per version: {files}");
    let (code, out, _) = run("du", &[OsStr::new("-sb"), notes.as_os_str()]);
    assert_eq!(code, 0);
    let du: u64 = String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        du >= (v1.len() + v2.len()) as u64,
        "du counts true sizes: {du}"
    );

    // Extended attributes.
    let f1 = notes.join("2026-11-24T21:20:32.123456789Z");
    assert_eq!(
        xattr(&f1, "user.anchorfs.ref").unwrap(),
        r1.to_hex().into_bytes()
    );
    assert_eq!(
        xattr(&f1, "user.anchorfs.at").unwrap(),
        b"2026-11-24T21:20:32.123456789Z"
    );
    assert!(xattr(&f1, "user.nothing").is_none());
    // No security labels or ACLs here: EOPNOTSUPP, so `ls -l` asks once per listing.
    for name in ["security.selinux", "system.posix_acl_access"] {
        for path in [&f1, &notes] {
            assert!(xattr(path, name).is_none());
            assert_eq!(
                errno_of(&std::io::Error::last_os_error()),
                libc::EOPNOTSUPP,
                "{name} of {path:?}"
            );
        }
    }
    if which("getfattr") {
        let (code, out, err) = run(
            "getfattr",
            &[
                OsStr::new("-n"),
                OsStr::new("user.anchorfs.ref"),
                f1.as_os_str(),
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert!(String::from_utf8_lossy(&out).contains(&r1.to_hex()));
    }

    // Escaped names, the raw blob.
    assert_eq!(fs::read(m.path("a%2Fb/latest")).unwrap(), b"slash");
    assert_eq!(fs::read(m.path("%2Ehidden/latest")).unwrap(), b"dot");
    assert_eq!(fs::read(m.path("%empty/latest")).unwrap(), b"empty name");
    assert_eq!(fs::read(m.path("raw/latest")).unwrap(), b"raw blob content");

    // Time travel and refs.
    assert_eq!(
        fs::read(m.path(".anchorfs/at/2026-11-25T00:00:00+01:00/notes")).unwrap(),
        v1
    );
    assert_eq!(
        fs::read(m.path(".anchorfs/at/2030-01-01T00:00:00Z/notes")).unwrap(),
        v2
    );
    let e = fs::read(m.path(".anchorfs/at/2020-01-01T00:00:00Z/notes")).unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOENT, "before the first version");
    let e = fs::metadata(m.path(".anchorfs/at/yesterday")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EINVAL, "malformed time");
    assert_eq!(
        fs::read(m.path(&format!(".anchorfs/refs/{}", r1.to_hex()))).unwrap(),
        v1
    );
    assert_eq!(
        fs::read(m.path(&format!(".anchorfs/refs/{}", raw.to_hex()))).unwrap(),
        b"raw blob content"
    );
    let e = fs::metadata(m.path(".anchorfs/refs/not-a-ref")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EINVAL, "malformed ref");
    let e = fs::metadata(m.path(&format!(".anchorfs/refs/{}", Ref::of(b"absent").to_hex())))
        .unwrap_err();
    assert_eq!(errno_of(&e), libc::ENOENT);

    // Absent names.
    assert_eq!(
        errno_of(&fs::metadata(m.path("nope")).unwrap_err()),
        libc::ENOENT
    );
    assert_eq!(
        errno_of(&fs::metadata(notes.join("2026-01-01T00:00:00.000000000Z")).unwrap_err()),
        libc::ENOENT
    );

    // statfs answers with the backing filesystem's figures.
    let (code, out, _) = run("df", &[m.mnt.as_os_str()]);
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&out).lines().count() == 2);
}

fn which(p: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {p} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn other_writers_show_up_within_the_poll_interval() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let store = FileStore::create(&sp).unwrap();
    put(&store, b"doc", b"one", "2026-01-01T00:00:00Z");
    let m = Mounted::new(&sp, "poll=200ms");
    assert_eq!(fs::read(m.path("doc/latest")).unwrap(), b"one");
    assert_eq!(
        errno_of(&fs::metadata(m.path("newdoc")).unwrap_err()),
        libc::ENOENT
    );

    // Another process (here: this one, through its own store value) writes.
    let other = FileStore::open(&sp).unwrap();
    put(&other, b"doc", b"two", "2026-01-02T00:00:00Z");
    put(&other, b"newdoc", b"fresh", "2026-01-02T00:00:00Z");
    assert!(
        eventually(Duration::from_secs(3), || fs::read(m.path("doc/latest"))
            .ok()
            .as_deref()
            == Some(b"two")),
        "latest moved"
    );
    assert!(
        eventually(Duration::from_secs(3), || m.path("newdoc").exists()),
        "new anchor appeared"
    );
    assert_eq!(
        fs::read_link(m.path("doc/latest")).unwrap().as_os_str(),
        "2026-01-02T00:00:00.000000000Z"
    );
    assert_eq!(
        fs::read(m.path("doc/2026-01-01T00:00:00.000000000Z")).unwrap(),
        b"one"
    );
}

#[test]
fn damaged_blobs_give_eio_and_the_rest_still_reads() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let store = FileStore::create(&sp).unwrap();
    let data = common::bytes(400_000, 3);
    let root = put(&store, b"victim", &data, "2026-01-01T00:00:00Z");
    put(&store, b"healthy", b"fine", "2026-01-01T00:00:00Z");
    // Damage one chunk of the victim's tree (not the root: its size stays known).
    let mut chunks = Vec::new();
    store
        .list_refs(&Ref::ZERO, &mut |r| {
            if store
                .get(&r)
                .map(|b| b.len() > 1000 && b.len() < 400_000)
                .unwrap_or(false)
                && r != root
            {
                chunks.push(r);
            }
            Ok(true)
        })
        .unwrap();
    let victim = *chunks.first().expect("a chunk to damage");
    let path = store.blob_path(&victim);
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let m = Mounted::new(&sp, "");
    let e = fs::read(m.path("victim/latest")).unwrap_err();
    assert_eq!(
        errno_of(&e),
        libc::EIO,
        "damaged content is an I/O error, not bytes"
    );
    assert_eq!(fs::read(m.path("healthy/latest")).unwrap(), b"fine");
    assert_eq!(
        fs::metadata(m.path("victim/latest")).unwrap().len(),
        data.len() as u64
    );
}

#[test]
fn writes_are_refused_read_only() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let store = FileStore::create(&sp).unwrap();
    put(&store, b"doc", b"one", "2026-01-01T00:00:00Z");
    let m = Mounted::new(&sp, "ro");
    let e = fs::write(m.path("doc/new"), b"x").unwrap_err();
    assert_eq!(errno_of(&e), libc::EROFS);
    let e = fs::remove_file(m.path("doc/2026-01-01T00:00:00.000000000Z")).unwrap_err();
    assert!(matches!(errno_of(&e), libc::EROFS | libc::EPERM));
    assert_eq!(fs::read(m.path("doc/latest")).unwrap(), b"one");
}

#[test]
fn noxattr_turns_extended_attributes_off_and_nothing_else() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let store = FileStore::create(&sp).unwrap();
    put(&store, b"doc", b"one", "2026-01-01T00:00:00Z");
    let m = Mounted::new(&sp, "noxattr");
    let v = m.path("doc/2026-01-01T00:00:00.000000000Z");
    assert_eq!(fs::read(&v).unwrap(), b"one");
    assert!(xattr(&v, "user.anchorfs.ref").is_none());
    let e = std::io::Error::last_os_error();
    assert_eq!(errno_of(&e), libc::EOPNOTSUPP, "{e}");
    // A normal mount of the same store shows them.
    drop(m);
    let m = Mounted::new(&sp, "");
    let v = m.path("doc/2026-01-01T00:00:00.000000000Z");
    assert_eq!(
        xattr(&v, "user.anchorfs.at").unwrap(),
        b"2026-01-01T00:00:00.000000000Z"
    );
}

#[test]
fn daemon_mode_sigterm_and_umount() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();

    // Without -f: returns once the mount is live.
    let (code, _, err) = run(
        common::binary().to_str().unwrap(),
        &[OsStr::new("mount"), sp.as_os_str(), mnt.as_os_str()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(common::is_mounted(&mnt), "live when the command returns");
    assert!(sp.join("blobs").is_dir(), "the store was created");
    // A second mount on the same point is refused clearly.
    let (code, _, err) = run(
        common::binary().to_str().unwrap(),
        &[OsStr::new("mount"), sp.as_os_str(), mnt.as_os_str()],
    );
    assert_eq!(code, 1);
    assert!(err.contains("busy"), "{err}");
    let (code, _, _) = run("umount", &[mnt.as_os_str()]);
    assert_eq!(code, 0);
    assert!(eventually(Duration::from_secs(5), || !common::is_mounted(
        &mnt
    )));

    // Bad input: a missing mount point.
    let (code, _, err) = run(
        common::binary().to_str().unwrap(),
        &[
            OsStr::new("mount"),
            sp.as_os_str(),
            dir.path().join("nowhere").as_os_str(),
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");

    // SIGTERM unmounts and exits 0.
    let mut m = Mounted::new(&sp, "");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(m.pid() as i32, libc::SIGTERM) };
    assert_eq!(m.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!common::is_mounted(&m.mnt), "no mount left behind");
}

/// A daemon whose mount was unmounted from outside ends without touching whatever
/// has been mounted on its mount point since (a remount, a restarted service).
#[test]
fn a_daemon_ending_late_leaves_a_newer_mount_on_its_mount_point_alone() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let store = FileStore::create(&sp).unwrap();
    put(&store, b"doc", b"still here", "2026-01-01T00:00:00Z");
    let mut old = Mounted::new(&sp, "");
    // An open directory keeps the lazily unmounted mount's connection, and so the
    // old daemon, alive while the new mount goes on the same point.
    let held = fs::File::open(old.path("doc")).unwrap();
    let (code, _, err) = run("umount", &[OsStr::new("-l"), old.mnt.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(!common::is_mounted(&old.mnt));
    let (code, _, err) = run(
        common::binary().to_str().unwrap(),
        &[OsStr::new("mount"), sp.as_os_str(), old.mnt.as_os_str()],
    );
    assert_eq!(code, 0, "{err}");
    drop(held);
    let status = old.wait_exit(Duration::from_secs(10));
    let listed = common::is_mounted(&old.mnt);
    let read = fs::read(old.path("doc/latest"));
    let _ = run("umount", &[old.mnt.as_os_str()]);
    assert_eq!(status, Some(0), "the old daemon ends when its mount goes");
    assert!(
        listed,
        "the new mount is still there after the old daemon ended"
    );
    assert_eq!(read.unwrap(), b"still here");
}

#[test]
fn mount_t_anchorfs_through_the_installed_helper() {
    if fuse_skipped() {
        return;
    }
    // mount(8) runs /sbin/mount.TYPE; install the helper as the README says, for
    // this test, unless one is installed already.
    let helper = Path::new("/sbin/mount.anchorfs");
    let installed_here = if helper.exists() {
        false
    } else {
        std::os::unix::fs::symlink(common::binary(), helper)
            .expect("installing /sbin/mount.anchorfs (needs root)");
        true
    };
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let store = FileStore::create(&sp).unwrap();
    put(&store, b"doc", b"via mount(8)", "2026-01-01T00:00:00Z");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let (code, _, err) = run(
        "mount",
        &[
            OsStr::new("-t"),
            OsStr::new("anchorfs"),
            OsStr::new("-o"),
            OsStr::new("defaults,noauto,_netdev"),
            sp.as_os_str(),
            mnt.as_os_str(),
        ],
    );
    let read = fs::read(mnt.join("doc/latest"));
    let _ = run("umount", &[mnt.as_os_str()]);
    if installed_here {
        let _ = fs::remove_file(helper);
    }
    assert_eq!(code, 0, "mount -t anchorfs: {err}");
    assert_eq!(read.unwrap(), b"via mount(8)");
}
