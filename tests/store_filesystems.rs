//! The file store on the filesystems a store lives on: large blobs are written with
//! `O_DIRECT` where the filesystem takes it (ext4, tmpfs) and buffered where it does
//! not (ramfs); either way every size, aligned or not, reads back whole and exact.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::path::Path;

use anchorfs::store::file::FileStore;
use anchorfs::store::{Getter, Store};
use reliability::{noise, SmallFs};

/// Sizes around the direct-write threshold (32 KiB) and the 4 KiB alignment.
const SIZES: [usize; 8] = [
    4095,
    32 << 10,
    (32 << 10) - 1,
    (32 << 10) + 1,
    9 * 4096,
    (64 << 10) + 17,
    100_003,
    (1 << 20) + 4096 * 3,
];

fn round_trip_in(dir: &Path) {
    let store = FileStore::create(dir.join("store")).unwrap();
    for (i, &size) in SIZES.iter().enumerate() {
        let data = noise(size, i as u64 + 1);
        let (r, added) = store.put(&data).unwrap();
        assert!(added, "{size} bytes: new");
        let on_disk = std::fs::metadata(store.blob_path(&r)).unwrap().len();
        assert_eq!(on_disk, size as u64, "{size} bytes: file length");
        assert_eq!(store.get(&r).unwrap().as_ref(), &data[..], "{size} bytes");
        assert_eq!(store.put(&data).unwrap(), (r, false), "{size} bytes: again");
    }
    store.sync().unwrap();
    // No temp file is left behind.
    let mut stray = Vec::new();
    for e in walk(&dir.join("store/blobs")) {
        if e.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            stray.push(e);
        }
    }
    assert!(stray.is_empty(), "temp files left: {stray:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn blobs_round_trip_on_the_temp_directory_s_filesystem() {
    round_trip_in(tempfile::tempdir().unwrap().path());
}

#[test]
fn blobs_round_trip_on_tmpfs() {
    let fs = SmallFs::tmpfs("16m");
    round_trip_in(&fs.path);
}

#[test]
fn blobs_round_trip_on_ramfs_which_refuses_direct_io() {
    let fs = SmallFs::ramfs();
    round_trip_in(&fs.path);
}

/// On a store the process may not write (a read-only mount), putting a blob that is
/// already there still succeeds, and a new one fails with the filesystem's error.
#[test]
fn a_read_only_store_still_finds_its_blobs() {
    let fs = SmallFs::tmpfs("16m");
    let old = noise(100_000, 7);
    let r = {
        let store = FileStore::create(fs.path.join("store")).unwrap();
        let (r, _) = store.put(&old).unwrap();
        store.sync().unwrap();
        r
    };
    let out = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&fs.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = FileStore::open(fs.path.join("store")).unwrap();
    assert_eq!(store.put(&old).unwrap(), (r, false));
    assert_eq!(store.get(&r).unwrap().as_ref(), &old[..]);
    let err = store.put(b"new blob").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}
