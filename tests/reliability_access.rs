//! Access: without `allow_other` other users get EACCES; with `allow_other` and
//! `default_permissions` the kernel enforces the modes the mount shows; files the
//! store creates are private to their owner (0600, 0700) whatever the umask.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anchorfs::store::file::FileStore;
use anchorfs::{content, Timestamp};
use reliability::{as_nobody, history, Daemon};

use common::fuse_skipped;

/// A store with one anchor, its directory opened to others for reading (0755: a new
/// store is 0700, and the mount shows no more than its directory grants), and a
/// mount of it whose mount point other users can reach (its parent directory is
/// 0755), so only the mount decides.
fn mounted(opts: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let sp = dir.path().join("store");
    let s = FileStore::create(&sp).unwrap();
    let root = content::store(&s, &b"doc content\n"[..]).unwrap();
    content::put_split(
        &s,
        b"doc",
        root,
        Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    fs::set_permissions(&sp, fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    Daemon::start_at(&sp, &mnt, opts).owning(dir)
}

fn os(p: &Path) -> &OsStr {
    p.as_os_str()
}

#[test]
fn other_users_get_eacces_without_allow_other() {
    if fuse_skipped() {
        return;
    }
    let m = mounted("");
    let latest = m.path("doc/latest");
    for (prog, args) in [
        ("stat", vec![os(&m.mnt)]),
        ("ls", vec![os(&m.mnt)]),
        ("cat", vec![os(&latest)]),
        ("stat", vec![os(&latest)]),
    ] {
        let (code, out, err) = as_nobody(prog, &args);
        assert_ne!(code, 0, "nobody ran {prog} {args:?}: {out}");
        assert!(err.contains("Permission denied"), "{prog} {args:?}: {err}");
    }
    let (code, _, err) = as_nobody(
        "sh",
        &[
            OsStr::new("-c"),
            OsStr::new(&format!("echo x > {}", m.path("doc/new").display())),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(history(&m.store, b"doc").len(), 1);
    // The owner is let in, and so is everyone once the mount allows others.
    assert_eq!(fs::read(&latest).unwrap(), b"doc content\n");
    let open = mounted("allow_other");
    let (code, out, err) = as_nobody("cat", &[os(&open.path("doc/latest"))]);
    assert_eq!(
        (code, out.as_str()),
        (0, "doc content\n"),
        "with allow_other: {err}"
    );
}

#[test]
fn default_permissions_enforces_the_modes_shown() {
    if fuse_skipped() {
        return;
    }
    let m = mounted("allow_other,default_permissions");
    let doc = m.path("doc");
    let md = fs::metadata(&doc).unwrap();
    assert_eq!(
        (md.uid(), md.mode() & 0o777),
        (0, 0o755),
        "anchor directories: root's, 0755"
    );
    let version = fs::read_dir(&doc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name() != Some(OsStr::new("latest")))
        .unwrap();
    let vm = fs::metadata(&version).unwrap();
    assert_eq!(
        (vm.uid(), vm.mode() & 0o777),
        (0, 0o644),
        "versions: root's, 0644"
    );
    // Others may read (r for others) but not write into root's 0755 directories.
    let (code, out, err) = as_nobody("cat", &[os(&m.path("doc/latest"))]);
    assert_eq!((code, out.as_str()), (0, "doc content\n"), "{err}");
    for cmd in [
        format!("echo x > {}/new", doc.display()),
        format!("echo x > {}", version.display()),
        format!("echo x >> {}/latest", doc.display()),
        format!("mkdir {}/newanchor", m.mnt.display()),
        format!("ln -s 0000 {}/link", doc.display()),
    ] {
        let (code, _, err) = as_nobody("sh", &[OsStr::new("-c"), OsStr::new(&cmd)]);
        assert_ne!(code, 0, "nobody could: {cmd}");
        assert!(err.contains("Permission denied"), "{cmd}: {err}");
    }
    assert_eq!(
        history(&m.store, b"doc").len(),
        1,
        "nobody's writes changed nothing"
    );
    assert!(!m.path("newanchor").exists());
    // Root may.
    reliability::write_file(&m.path("doc/by-root"), b"root's version", 4096, false).unwrap();
    assert_eq!(history(&m.store, b"doc").len(), 2);

    // Shown as nobody's (uid=, gid=), the same files are nobody's to write.
    let mine = mounted("allow_other,default_permissions,uid=65534,gid=65534");
    let md = fs::metadata(mine.path("doc")).unwrap();
    assert_eq!((md.uid(), md.gid()), (65534, 65534));
    for cmd in [
        format!("echo nobody > {}/new", mine.path("doc").display()),
        format!("mkdir {}/nobodys", mine.mnt.display()),
        format!("echo first > {}/nobodys/v", mine.mnt.display()),
    ] {
        let (code, _, err) = as_nobody("sh", &[OsStr::new("-c"), OsStr::new(&cmd)]);
        assert_eq!(code, 0, "{cmd}: {err}");
    }
    assert_eq!(history(&mine.store, b"doc").len(), 2);
    assert_eq!(history(&mine.store, b"nobodys").len(), 1);
    let (code, out, _) = as_nobody("cat", &[os(&mine.path("doc/latest"))]);
    assert_eq!((code, out.as_str()), (0, "nobody\n"));
}

/// The files and directories under `root`.
fn tree(root: &Path) -> HashSet<PathBuf> {
    let mut out = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// Modes of what appeared under `store` since `before`: (files, directories).
fn new_modes(store: &Path, before: &HashSet<PathBuf>) -> (HashSet<u32>, HashSet<u32>) {
    let (mut files, mut dirs) = (HashSet::new(), HashSet::new());
    for p in tree(store).difference(before) {
        let md = fs::metadata(p).unwrap();
        let mode = md.mode() & 0o7777;
        if md.is_dir() {
            dirs.insert(mode);
        } else {
            files.insert(mode);
        }
    }
    (files, dirs)
}

/// The store's files are `0600` and its directories `0700` (its directory is made
/// `0700`, so not group-readable), the umask only taking bits away; `umask 000`
/// makes nothing writable by others.
#[test]
fn files_the_store_creates_are_private_whatever_the_umask() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    for (round, mask) in [0o077u32, 0o022, 0o027, 0o002, 0o000]
        .into_iter()
        .enumerate()
    {
        // The command line.
        let before = if sp.exists() {
            tree(&sp)
        } else {
            HashSet::new()
        };
        let (code, err) = reliability::sh(&format!(
            "umask {mask:03o} && head -c 200000 /dev/urandom | {} --store {} put cli-{round}",
            common::binary().display(),
            sp.display()
        ));
        assert_eq!(code, 0, "{err}");
        let (files, dirs) = new_modes(&sp, &before);
        assert!(
            !files.is_empty() && !dirs.is_empty() || round > 0,
            "the put made files and directories"
        );
        assert_eq!(
            files,
            HashSet::from([0o600 & !mask]),
            "CLI blob files with umask {mask:03o}"
        );
        if !dirs.is_empty() {
            assert_eq!(
                dirs,
                HashSet::from([0o700 & !mask]),
                "CLI directories with umask {mask:03o}"
            );
        }
        let map_mode = fs::metadata(sp.join("anchormapref")).unwrap().mode() & 0o7777;
        assert_eq!(
            map_mode,
            0o600 & !mask,
            "anchormapref with umask {mask:03o}"
        );

        // The mount.
        let mnt = dir.path().join(format!("mnt-{round}"));
        fs::create_dir(&mnt).unwrap();
        let m = Daemon::try_start_with(&sp, &mnt, "", Some(mask)).unwrap();
        let before = tree(&sp);
        let data = reliability::noise(200_000, round as u64 + 1);
        fs::create_dir(m.path(&format!("mnt-{round}"))).unwrap();
        reliability::write_file(&m.path(&format!("mnt-{round}/v")), &data, 65536, true).unwrap();
        let (files, dirs) = new_modes(&sp, &before);
        assert!(!files.is_empty());
        assert_eq!(
            files,
            HashSet::from([0o600 & !mask]),
            "mount blob files with umask {mask:03o}"
        );
        if !dirs.is_empty() {
            assert_eq!(
                dirs,
                HashSet::from([0o700 & !mask]),
                "mount directories with umask {mask:03o}"
            );
        }
        drop(m);
        let lock_free = !sp.join("anchormapref.lock").exists();
        assert!(lock_free, "no lock left behind");
    }
}
