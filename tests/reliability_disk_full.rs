//! Disk full: the store on a small filesystem made by the test, written through the
//! mount until it is full. The failing write, fsync or close says ENOSPC, nothing
//! partial becomes a version, every earlier version stays intact, `fsck` passes, and
//! once space is freed (unrelated files removed, or `gc`) the same mount writes again.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::fs;
use std::path::Path;

use anchorfs::store::file::FileStore;
use reliability::{
    assert_fsck_ok, cli_run, errno_of, history, mount_ref, noise, read_content, write_file, Daemon,
    SmallFs, Stage,
};

use common::fuse_skipped;

/// What one run saw.
#[derive(Default)]
struct Tally {
    faults: usize,
    checked: usize,
}

/// Writes versions into `dir` until one fails; asserts the failure is ENOSPC and
/// returns how many succeeded. Each success is pushed onto `acked`.
fn write_until_full(
    m: &Daemon,
    anchor: &str,
    acked: &mut Vec<Vec<u8>>,
    seed: &mut u64,
    size: usize,
) -> usize {
    let mut ok = 0;
    loop {
        *seed += 1;
        let data = noise(size, *seed);
        let path = m.path(&format!("{anchor}/v{seed}"));
        match write_file(&path, &data, 64 << 10, *seed % 2 == 0) {
            Ok(()) => {
                acked.push(data);
                ok += 1;
                assert!(ok < 10_000, "the filesystem never filled up");
            }
            Err((stage, e)) => {
                assert_eq!(
                    errno_of(&e),
                    libc::ENOSPC,
                    "a full disk is ENOSPC (failed at {stage:?}): {e}; the mount logged: {}",
                    m.log_text()
                );
                assert_ne!(stage, Stage::Open, "creating the file needs no space: {e}");
                return ok;
            }
        }
    }
}

/// The versions of `anchor` are exactly `acked`, in order, read through the mount
/// and through the library.
fn assert_versions(m: &Daemon, store: &Path, anchor: &str, acked: &[Vec<u8>]) -> usize {
    let hist = history(store, anchor.as_bytes());
    let s = FileStore::open(store).unwrap();
    let got: Vec<Vec<u8>> = hist.iter().map(|a| read_content(&s, &a.r)).collect();
    assert_eq!(
        got.len(),
        acked.len(),
        "one version per successful close, no more"
    );
    for (i, (g, w)) in got.iter().zip(acked).enumerate() {
        assert!(g == w, "version {i} of {anchor} is intact");
    }
    for (a, w) in hist.iter().zip(acked) {
        let p = m.path(&format!("{anchor}/{}", a.at.to_rfc3339()));
        assert!(
            fs::read(&p).unwrap() == *w,
            "{} through the mount",
            p.display()
        );
    }
    acked.len()
}

fn fill_and_recover(small: &SmallFs, tally: &mut Tally) {
    let sp = small.path.join("store");
    FileStore::create(&sp).unwrap();
    // Unrelated files on the same filesystem, to free later.
    let filler = small.path.join("filler");
    fs::write(&filler, noise(1 << 20, 1)).unwrap();
    let m = Daemon::start(&sp, "");
    fs::create_dir(m.path("fill")).unwrap();
    let mut acked = Vec::new();
    let mut seed = 1000;

    // Full: big versions until one fails, then small ones until one fails too.
    let big = write_until_full(&m, "fill", &mut acked, &mut seed, 400_000);
    assert!(
        big >= 3,
        "several versions fitted before the disk filled ({big})"
    );
    tally.faults += 1;
    write_until_full(&m, "fill", &mut acked, &mut seed, 20_000);
    tally.faults += 1;
    // A random-access write (spooled beside the store) fails the same way.
    let e = {
        let path = m.path("fill/random-access");
        let f = fs::File::create(&path).unwrap();
        let data = noise(300_000, 77);
        let mut res = Ok(());
        for (i, part) in data.chunks(4096).enumerate().rev() {
            if let Err(e) = std::os::unix::fs::FileExt::write_all_at(&f, part, (i * 4096) as u64) {
                res = Err(e);
                break;
            }
        }
        let closed = reliability::close(f);
        res.err()
            .or(closed.err())
            .expect("random writes on a full disk fail")
    };
    assert_eq!(errno_of(&e), libc::ENOSPC, "{e}");
    tally.faults += 1;
    tally.checked += assert_versions(&m, &sp, "fill", &acked);
    assert_fsck_ok(&sp, "on the full disk");

    // Free space by removing unrelated files: the same mount writes again.
    fs::remove_file(&filler).unwrap();
    let data = noise(100_000, 5);
    write_file(&m.path("fill/after-rm"), &data, 64 << 10, true)
        .expect("writes work again once space is freed");
    acked.push(data);
    tally.checked += assert_versions(&m, &sp, "fill", &acked);

    // Full again; this time gc frees the blobs the failed writes left behind.
    write_until_full(&m, "fill", &mut acked, &mut seed, 400_000);
    tally.faults += 1;
    let (code, out, err) = cli_run(&sp, &["gc", "--grace", "0s"]);
    assert_eq!(code, 0, "gc on a full disk: {out}{err}");
    assert!(
        !out.contains("deleted 0 blobs"),
        "the failed writes left blobs to collect: {out}"
    );
    let data = noise(60_000, 6);
    write_file(&m.path("fill/after-gc"), &data, 64 << 10, false)
        .expect("writes work again after gc");
    acked.push(data);
    tally.checked += assert_versions(&m, &sp, "fill", &acked);
    assert_fsck_ok(&sp, "after gc");
    // No failed write left a version behind: every version is one we were told
    // about, and its root is the root of what we wrote.
    let roots: Vec<_> = acked.iter().map(|d| mount_ref(d)).collect();
    let hist: Vec<_> = history(&sp, b"fill").into_iter().map(|a| a.r).collect();
    assert_eq!(hist, roots);
    let log = m.log_text();
    assert!(
        log.contains("No space left") || log.contains("os error 28"),
        "the mount logs the cause: {log}"
    );
}

#[test]
fn a_full_tmpfs_fails_with_enospc_and_recovers_without_a_remount() {
    if fuse_skipped() {
        return;
    }
    let small = SmallFs::tmpfs("6m");
    let mut tally = Tally::default();
    fill_and_recover(&small, &mut tally);
    eprintln!(
        "disk full (tmpfs): {} faults injected, {} versions checked, 0 lost",
        tally.faults, tally.checked
    );
}

#[test]
fn a_full_ext4_image_fails_with_enospc_and_recovers_without_a_remount() {
    if fuse_skipped() {
        return;
    }
    let small = SmallFs::ext4(16);
    let mut tally = Tally::default();
    fill_and_recover(&small, &mut tally);
    eprintln!(
        "disk full (ext4): {} faults injected, {} versions checked, 0 lost",
        tally.faults, tally.checked
    );
}

#[test]
fn the_command_line_on_a_full_disk_fails_clearly_and_loses_nothing() {
    let small = SmallFs::tmpfs("3m");
    let sp = small.path.join("store");
    let mut acked = Vec::new();
    let mut faults = 0;
    for i in 0..1000u64 {
        let data = noise(200_000, 500 + i);
        let (code, out, err) = reliability::cli_run_in(&sp, &["put", "doc"], &data);
        if code == 0 {
            acked.push((data, out.trim().to_string()));
            continue;
        }
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        faults += 1;
        if faults == 3 {
            break;
        }
    }
    assert_eq!(faults, 3, "the disk filled up");
    let hist = history(&sp, b"doc");
    assert_eq!(
        hist.len(),
        acked.len(),
        "every acknowledged put and no other"
    );
    let s = FileStore::open(&sp).unwrap();
    for (a, (data, printed)) in hist.iter().zip(&acked) {
        assert_eq!(a.r.to_hex(), *printed);
        assert!(read_content(&s, &a.r) == *data);
    }
    assert_fsck_ok(&sp, "after ENOSPC from the command line");
    let (code, out, err) = cli_run(&sp, &["gc", "--grace", "0s"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = reliability::cli_run_in(&sp, &["put", "doc"], b"small");
    assert_eq!(code, 0, "a put after gc: {err}");
    eprintln!(
        "disk full (CLI): {faults} faults injected, {} versions checked, 0 lost",
        acked.len()
    );
}
