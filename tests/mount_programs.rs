//! Real programs through a real mount: fsx, fio with verification, `cp` then `cmp`,
//! `rsync -c`, `sed -i`, `perl -pi`, an atomic save, `sqlite3`, and the descriptor
//! and name rules they rely on (a writer sees its own file; a written name keeps
//! naming what it became; a back-dated version may not merge with its neighbour).
//!
//! Every scenario runs twice: through a mount (`NAME` tests), where the store's
//! history is checked as well, and on a plain directory on disk (`*_on_a_plain_directory`
//! tests), where only what any POSIX filesystem must do is checked. The plain run is
//! the proof that a failure of the mount run is the mount's, not the scenario's.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorfs::anchor::{self, Anchor};
use anchorfs::store::file::FileStore;
use anchorfs::Timestamp;
use common::{fuse_skipped, run, Mounted};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------
// Where a scenario runs.
// ---------------------------------------------------------------------------------

/// A tree of anchor directories: through a real mount of a fresh file store, or a
/// plain directory on disk standing in for it (`latest` is then a regular file).
struct Place {
    tmp: tempfile::TempDir,
    root: PathBuf,
    mount: Option<Mounted>,
}

impl Place {
    fn mounted() -> Place {
        Place::mounted_in(tempfile::tempdir().unwrap())
    }

    /// Through a mount of a store on tmpfs, where there is one: fsx commits about a
    /// thousand versions a run, each durable (a syncfs of the store's filesystem),
    /// which on a disk makes a run take minutes; fsx checks what the descriptors see,
    /// not durability.
    fn mounted_on_tmpfs() -> Place {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            Place::mounted_in(tempfile::tempdir_in(shm).unwrap())
        } else {
            Place::mounted()
        }
    }

    fn mounted_in(tmp: tempfile::TempDir) -> Place {
        let store = tmp.path().join("store");
        FileStore::create(&store).unwrap();
        let m = Mounted::new(&store, "");
        Place {
            root: m.mnt.clone(),
            tmp,
            mount: Some(m),
        }
    }

    fn plain() -> Place {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("plain");
        fs::create_dir(&root).unwrap();
        Place {
            tmp,
            root,
            mount: None,
        }
    }

    fn is_mount(&self) -> bool {
        self.mount.is_some()
    }

    /// A scratch directory outside the tree (sources, configs, artifacts).
    fn scratch(&self, what: &str) -> PathBuf {
        let p = self.tmp.path().join(what);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// Makes the anchor directory `name` (`mkdir`).
    fn anchor(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Makes the anchor `name` with one version, `content`, written to `latest`.
    fn seeded(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.anchor(name);
        fs::write(p.join("latest"), content).unwrap();
        if self.is_mount() {
            assert_eq!(self.history(name).unwrap().len(), 1, "the seed version");
        }
        p
    }

    /// The store's history of `name`, oldest first, with each version's content
    /// (`None` on a plain directory).
    fn history(&self, name: &str) -> Option<Vec<(Anchor, Vec<u8>)>> {
        let m = self.mount.as_ref()?;
        let store = FileStore::open(&m.store).unwrap();
        let hist = match anchor::history(&store, name.as_bytes()) {
            Ok(h) => h,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => panic!("history of {name}: {e}"),
        };
        Some(
            hist.into_iter()
                .map(|a| {
                    let kind = anchorfs::content::kind_of(&store, &a.r).unwrap();
                    let mut r = anchorfs::content::open(&store, a.r, kind).unwrap();
                    let mut out = Vec::new();
                    r.read_to_end(&mut out).unwrap();
                    (a, out)
                })
                .collect(),
        )
    }

    /// The store's history of `name` without the content (`None` on a plain
    /// directory).
    fn entries(&self, name: &str) -> Option<Vec<Anchor>> {
        let m = self.mount.as_ref()?;
        let store = FileStore::open(&m.store).unwrap();
        match anchor::history(&store, name.as_bytes()) {
            Ok(h) => Some(h),
            Err(e) if e.is_not_found() => Some(Vec::new()),
            Err(e) => panic!("history of {name}: {e}"),
        }
    }

    fn contents(&self, name: &str) -> Option<Vec<Vec<u8>>> {
        self.history(name)
            .map(|h| h.into_iter().map(|(_, c)| c).collect())
    }

    /// Asserts the history of `name` is exactly `want` (through a mount).
    fn assert_contents(&self, name: &str, want: &[&[u8]], what: &str) {
        if let Some(got) = self.contents(name) {
            let shown = |v: &[Vec<u8>]| v.iter().map(|c| preview(c)).collect::<Vec<_>>();
            let want: Vec<Vec<u8>> = want.iter().map(|c| c.to_vec()).collect();
            assert_eq!(shown(&got), shown(&want), "{what}: the history of {name}");
        }
    }

    /// Through a mount, waits up to 3 s (the kernel's release follows a close by a
    /// few ms) for the history of `name` to have `n` versions, and asserts it does.
    fn assert_count_settles(&self, name: &str, n: usize, what: &str) {
        if self.is_mount() {
            common::eventually(Duration::from_secs(3), || {
                self.contents(name).unwrap().len() == n
            });
            // And stays there: a late release must not add one.
            std::thread::sleep(Duration::from_millis(300));
            let got = self.contents(name).unwrap();
            assert_eq!(
                got.len(),
                n,
                "{what}: versions of {name}: {:?}",
                got.iter().map(|c| preview(c)).collect::<Vec<_>>()
            );
        }
    }

    /// The file that holds the newest content of an anchor directory: `latest`
    /// through a mount; on a plain directory, the name last written.
    fn newest(&self, dir: &Path, written: &str) -> PathBuf {
        if self.is_mount() {
            dir.join("latest")
        } else {
            dir.join(written)
        }
    }

    /// Through a mount: `anchorfs fsck` on the store passes.
    fn fsck(&self) {
        if let Some(m) = &self.mount {
            let (code, out, err) = run(
                common::binary().to_str().unwrap(),
                &[
                    OsStr::new("--store"),
                    m.store.as_os_str(),
                    OsStr::new("fsck"),
                ],
            );
            assert_eq!(
                code,
                0,
                "anchorfs fsck: {err}{}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    /// Through a mount: the anchor directory lists only its versions and `latest`
    /// (one file per distinct version time), never a name a program wrote.
    fn assert_listing_is_history(&self, name: &str) {
        if !self.is_mount() {
            return;
        }
        let listed = listing(&self.root.join(name));
        let times: BTreeSet<Timestamp> = self
            .entries(name)
            .unwrap()
            .into_iter()
            .map(|a| a.at)
            .collect();
        let mut versions = 0;
        for n in &listed {
            if n == "latest" {
                continue;
            }
            let t = Timestamp::parse(n)
                .unwrap_or_else(|_| panic!("{name}/ lists {n:?}, not a version: {listed:?}"));
            assert!(times.contains(&t), "{name}/{n} is not in the history");
            versions += 1;
        }
        assert_eq!(versions, times.len(), "{name}/ lists every version once");
        assert_eq!(
            listed.contains("latest"),
            !times.is_empty(),
            "{name}/latest: {listed:?}"
        );
    }
}

/// Runs `scenario` through a mount and, as a second test, on a plain directory.
macro_rules! both {
    ($mounted:ident, $plain:ident, $scenario:path) => {
        both!($mounted, $plain, $scenario, Place::mounted);
    };
    ($mounted:ident, $plain:ident, $scenario:path, $mount:path) => {
        #[test]
        fn $mounted() {
            if fuse_skipped() {
                return;
            }
            $scenario(&$mount());
        }

        #[test]
        fn $plain() {
            $scenario(&Place::plain());
        }
    };
}

// ---------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------

fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn preview(c: &[u8]) -> String {
    if c.len() <= 48 {
        format!("{:?}", String::from_utf8_lossy(c))
    } else {
        format!(
            "{} bytes {:?}.. sha256 {}",
            c.len(),
            String::from_utf8_lossy(&c[..16]),
            &hex::encode(Sha256::digest(c))[..12]
        )
    }
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Runs a shell command line; returns (status, stdout, stderr).
fn sh(cmd: &str) -> (i32, String, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a program the test needs is on PATH (CI installs it: `.ci/run`).
fn need(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not on PATH: .ci/run installs it (these tests never skip for a missing program)"
    );
}

fn q(p: &Path) -> String {
    let s = p.to_str().expect("a UTF-8 test path");
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 11) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// fsx.
// ---------------------------------------------------------------------------------

/// fsx's configuration: every operation it can do on a file in this mount, with
/// close/open, mapped reads and writes, `msync(MS_INVALIDATE)`, truncates, fsyncs
/// and fdatasyncs all enabled. fsx checks the size by `fstat` and by
/// `lseek(SEEK_END)` after every size change and verifies every read.
const FSX_CONFIG: &str = "\
flen = 262144
nosizechecks = false
nomsyncafterwrite = false

[opsize]
max = 65536
min = 0
align = 1

[weights]
close_open = 2
read = 10
write = 10
mapread = 5
mapwrite = 5
invalidate = 1
truncate = 4
fsync = 2
fdatasync = 1
";

const FSX_SEEDS: [u64; 3] = [1, 20260601, 987654321];
const FSX_OPS: u64 = 10_000;

/// Runs fsx on each (file, seed), one after another or all at once; a failure
/// names the seed and shows fsx's operation log.
fn fsx_runs(p: &Place, files: &[(PathBuf, u64)], at_once: bool) {
    need("fsx");
    let work = p.scratch("fsx");
    let config = work.join("fsx.toml");
    fs::write(&config, FSX_CONFIG).unwrap();
    let failures: Vec<String> = if at_once {
        std::thread::scope(|sc| {
            let runs: Vec<_> = files
                .iter()
                .map(|(file, seed)| sc.spawn(|| fsx_run(&config, &work, file, *seed)))
                .collect();
            runs.into_iter()
                .filter_map(|r| r.join().unwrap().err())
                .collect()
        })
    } else {
        // One file: each run starts where the last one left it.
        let mut failed = Vec::new();
        for (file, seed) in files {
            if let Err(e) = fsx_run(&config, &work, file, *seed) {
                failed.push(e);
                break;
            }
        }
        failed
    };
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// One fsx run of `FSX_OPS` operations with `seed` on `file`.
fn fsx_run(config: &Path, work: &Path, file: &Path, seed: u64) -> Result<(), String> {
    let start = Instant::now();
    let out = Command::new("fsx")
        .arg("-v")
        .arg("-f")
        .arg(config)
        .arg("-N")
        .arg(FSX_OPS.to_string())
        .arg("-S")
        .arg(seed.to_string())
        .arg("-P")
        .arg(work)
        .arg(file)
        .output()
        .expect("run fsx");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "fsx -S {seed} -N {FSX_OPS} on {}: {:.1} s",
        file.display(),
        start.elapsed().as_secs_f64()
    );
    if out.status.success() && stdout.contains("All operations completed A-OK!") {
        return Ok(());
    }
    // fsx's own dump (the last 1024 operations) when it caught a mismatch; else (a
    // panic on a failed call) the operations it logged before.
    let log: Vec<&str> = stderr.lines().collect();
    let shown = match log.iter().position(|l| l.contains("LOG DUMP")) {
        Some(i) => log[i.saturating_sub(4)..].join("\n"),
        None => log[log.len().saturating_sub(120)..].join("\n"),
    };
    Err(format!(
        "fsx failed on {} with seed {seed} ({}); rerun: fsx -v -f CONFIG -N {FSX_OPS} -S {seed} FILE\n\
         config:\n{FSX_CONFIG}\nstdout: {stdout}\noperation log:\n{shown}",
        file.display(),
        out.status
    ))
}

/// fsx on `NAME/latest`: every close/open reopens the version just committed for
/// writing (in place, no `O_TRUNC`), and fsx checks the size, the content and
/// mapped pages against its model after every operation.
fn fsx_on_latest(p: &Place) {
    let dir = p.seeded("fx", b"the seed version\n");
    let files: Vec<(PathBuf, u64)> = FSX_SEEDS.iter().map(|&s| (dir.join("latest"), s)).collect();
    fsx_runs(p, &files, false);
    if let Some(h) = p.entries("fx") {
        assert!(h.len() > 1, "fsx's closes and fsyncs made versions");
    }
    p.assert_listing_is_history("fx");
    p.fsck();
}

/// fsx on new names in an anchor directory, one per seed, all at once: fsx creates
/// each, and every close/open reopens the name it wrote.
fn fsx_on_a_new_name(p: &Place) {
    let dir = p.anchor("fy");
    let files: Vec<(PathBuf, u64)> = FSX_SEEDS
        .iter()
        .map(|&s| (dir.join(format!("data-{s}")), s))
        .collect();
    fsx_runs(p, &files, true);
    // Each name still answers; the newest version is what one of them holds (the
    // run that closed last).
    let by_name: Vec<Vec<u8>> = files
        .iter()
        .map(|(f, _)| fs::read(f).expect("a written name still answers"))
        .collect();
    if p.is_mount() {
        let newest = fs::read(dir.join("latest")).unwrap();
        assert!(
            by_name.contains(&newest),
            "latest is the content of one of the names fsx wrote"
        );
    }
    p.assert_listing_is_history("fy");
    p.fsck();
}

both!(
    fsx_on_latest_with_close_open_mmap_truncate_and_fsync,
    fsx_on_latest_on_a_plain_directory,
    fsx_on_latest,
    Place::mounted_on_tmpfs
);
both!(
    fsx_on_a_new_name_in_an_anchor_directory,
    fsx_on_a_new_name_on_a_plain_directory,
    fsx_on_a_new_name,
    Place::mounted_on_tmpfs
);

// ---------------------------------------------------------------------------------
// fio with verification, and readers of latest beside the writers.
// ---------------------------------------------------------------------------------

struct FioJob {
    anchor: &'static str,
    file: &'static str,
    rw: &'static str,
}

/// What one reader of `latest` saw: (sha256, length) of each whole read.
type Reads = Vec<([u8; 32], usize)>;

/// Reads `dir/latest` whole, again and again, until `stop`.
fn reader(dir: PathBuf, stop: Arc<AtomicBool>) -> Reads {
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match fs::read(dir.join("latest")) {
            Ok(c) => seen.push((Sha256::digest(&c).into(), c.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("reading {}/latest: {e}", dir.display()),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}

const FIO_SIZE: usize = 4 << 20;

/// Runs one fio process with `jobs` at once (each on its own anchor, verified with
/// crc32c, fsync every 64 writes, so versions are committed while it runs), with a
/// reader of each anchor's `latest` beside it. Through a mount, every whole read of
/// `latest` must be one of the anchor's versions.
fn fio_with_readers(p: &Place, jobs: &[FioJob]) {
    need("fio");
    let mut cmd = Command::new("fio");
    // fio keeps its verify state in files in its working directory.
    cmd.current_dir(p.scratch("fio")).args([
        "--ioengine=psync",
        "--bs=4k",
        &format!("--size={FIO_SIZE}"),
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--fsync=64",
        "--end_fsync=1",
        "--fallocate=none",
        "--randrepeat=1",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        let dir = p.root.join(j.anchor);
        if !dir.exists() {
            p.anchor(j.anchor);
        }
        cmd.arg(format!("--name=job{i}-{}-{}-{}", j.anchor, j.file, j.rw))
            .arg(format!("--directory={}", dir.display()))
            .arg(format!("--filename={}", j.file))
            .arg(format!("--rw={}", j.rw));
        let stop = stop.clone();
        readers.push((j.anchor, std::thread::spawn(move || reader(dir, stop))));
    }
    let start = Instant::now();
    let out = cmd.output().expect("run fio");
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<(&str, Reads)> = readers
        .into_iter()
        .map(|(a, t)| (a, t.join().expect("reader")))
        .collect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "fio, {} job(s): {:.1} s, reads of latest: {:?}",
        jobs.len(),
        took.as_secs_f64(),
        seen.iter().map(|(a, r)| (*a, r.len())).collect::<Vec<_>>()
    );
    assert!(
        out.status.success() && !stderr.contains("verify:") && !stdout.contains("verify:"),
        "fio failed ({}):\nstderr:\n{stderr}\nstdout:\n{stdout}",
        out.status
    );
    for j in jobs {
        let dir = p.root.join(j.anchor);
        let newest = fs::read(p.newest(&dir, j.file)).unwrap();
        assert_eq!(newest.len(), FIO_SIZE, "{}: the file fio wrote", j.anchor);
        assert_eq!(
            fs::read(dir.join(j.file)).unwrap(),
            newest,
            "{}/{}: names the newest version",
            j.anchor,
            j.file
        );
        p.assert_listing_is_history(j.anchor);
    }
    // Readers see whole versions only: each read is the content of a version in the
    // history (one committed before, during or right after the read).
    for (a, reads) in &seen {
        let Some(h) = p.history(a) else { continue };
        let known: HashSet<[u8; 32]> = h.iter().map(|(_, c)| Sha256::digest(c).into()).collect();
        let torn: Vec<String> = reads
            .iter()
            .enumerate()
            .filter(|(_, (d, _))| !known.contains(d))
            .map(|(i, (d, n))| format!("read #{i}: {n} bytes, sha256 {}", &hex::encode(d)[..12]))
            .collect();
        assert!(
            torn.is_empty(),
            "{a}/latest: {} of {} reads match no version of the {} in the history \
             (version sizes {:?}):\n{}",
            torn.len(),
            reads.len(),
            h.len(),
            h.iter().map(|(_, c)| c.len()).collect::<Vec<_>>(),
            torn.join("\n")
        );
    }
    p.fsck();
}

fn fio_by_name(p: &Place) {
    fio_with_readers(
        p,
        &[FioJob {
            anchor: "seq",
            file: "data",
            rw: "write",
        }],
    );
    fio_with_readers(
        p,
        &[FioJob {
            anchor: "rand",
            file: "data",
            rw: "randwrite",
        }],
    );
}

fn fio_on_latest(p: &Place) {
    let seed = pattern(FIO_SIZE, 7);
    p.seeded("lseq", &seed);
    p.seeded("lrand", &seed);
    fio_with_readers(
        p,
        &[FioJob {
            anchor: "lseq",
            file: "latest",
            rw: "write",
        }],
    );
    fio_with_readers(
        p,
        &[FioJob {
            anchor: "lrand",
            file: "latest",
            rw: "randwrite",
        }],
    );
}

fn fio_four_anchors_at_once(p: &Place) {
    let seed = pattern(FIO_SIZE, 11);
    p.seeded("four-c", &seed);
    p.seeded("four-d", &seed);
    fio_with_readers(
        p,
        &[
            FioJob {
                anchor: "four-a",
                file: "data",
                rw: "write",
            },
            FioJob {
                anchor: "four-b",
                file: "data",
                rw: "randwrite",
            },
            FioJob {
                anchor: "four-c",
                file: "latest",
                rw: "write",
            },
            FioJob {
                anchor: "four-d",
                file: "latest",
                rw: "randwrite",
            },
        ],
    );
}

both!(
    fio_verify_by_name_sequential_and_random,
    fio_verify_by_name_on_a_plain_directory,
    fio_by_name
);
both!(
    fio_verify_on_latest_sequential_and_random,
    fio_verify_on_latest_on_a_plain_directory,
    fio_on_latest
);
both!(
    fio_verify_four_anchors_at_once_with_readers_of_latest,
    fio_verify_four_anchors_at_once_on_a_plain_directory,
    fio_four_anchors_at_once
);

// ---------------------------------------------------------------------------------
// cp then cmp; rsync -c twice.
// ---------------------------------------------------------------------------------

fn cp_then_cmp(p: &Place) {
    let src = p.scratch("src");
    let big = pattern(3_000_000, 3);
    fs::write(src.join("f"), &big).unwrap();
    fs::write(src.join("g"), b"a second file").unwrap();
    let dir = p.anchor("c");
    let data = dir.join("data");
    let (code, out, err) = sh(&format!(
        "cp {f} {d} && cmp {f} {d}",
        f = q(&src.join("f")),
        d = q(&data)
    ));
    assert_eq!(code, 0, "cp f MNT/c/data && cmp f MNT/c/data: {out}{err}");
    p.assert_contents("c", &[&big], "cp");
    // Again by the same name with other content: cp opens it O_TRUNC.
    let (code, out, err) = sh(&format!(
        "cp {g} {d} && cmp {g} {d}",
        g = q(&src.join("g")),
        d = q(&data)
    ));
    assert_eq!(code, 0, "cp g MNT/c/data && cmp g MNT/c/data: {out}{err}");
    p.assert_contents("c", &[&big, b"a second file"], "a second cp by the name");
    assert_eq!(fs::read(p.newest(&dir, "data")).unwrap(), b"a second file");
    p.assert_listing_is_history("c");
    p.fsck();
}

fn rsync_twice(p: &Place) {
    need("rsync");
    let src = p.scratch("tree");
    let files: [(&str, Vec<u8>); 3] = [
        ("a.bin", pattern(1 << 20, 5)),
        ("b.txt", b"bee\n".to_vec()),
        ("c.txt", b"sea\n".to_vec()),
    ];
    for (n, c) in &files {
        fs::write(src.join(n), c).unwrap();
    }
    let dir = p.anchor("r");
    let cmd = format!(
        "rsync -ac --stats --itemize-changes {}/ {}/",
        q(&src),
        q(&dir)
    );
    let (code, out, err) = sh(&cmd);
    assert_eq!(code, 0, "first rsync -ac: {err}\n{out}");
    assert!(
        out.contains("Number of regular files transferred: 3"),
        "the first run sends all three files:\n{out}"
    );
    p.assert_contents(
        "r",
        &[&files[0].1, &files[1].1, &files[2].1],
        "one version per file sent, no temp file",
    );
    for (n, c) in &files {
        assert_eq!(
            &fs::read(dir.join(n)).unwrap(),
            c,
            "r/{n} names what rsync sent"
        );
    }
    let (code, out, err) = sh(&cmd);
    assert_eq!(code, 0, "second rsync -ac: {err}\n{out}");
    assert!(
        out.contains("Number of regular files transferred: 0"),
        "the second run sends nothing (checksums match by name):\n{out}"
    );
    let sent: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('>') || l.starts_with('<') || l.starts_with('c'))
        .collect();
    assert!(
        sent.is_empty(),
        "itemized transfers on the second run: {sent:?}"
    );
    p.assert_contents(
        "r",
        &[&files[0].1, &files[1].1, &files[2].1],
        "the second run adds nothing",
    );
    p.assert_listing_is_history("r");
    p.fsck();
}

both!(
    cp_then_cmp_by_the_same_name,
    cp_then_cmp_on_a_plain_directory,
    cp_then_cmp
);
both!(
    rsync_checksum_second_run_sends_nothing,
    rsync_checksum_on_a_plain_directory,
    rsync_twice
);

// ---------------------------------------------------------------------------------
// In-place editors, atomic saves and sqlite.
// ---------------------------------------------------------------------------------

/// Through a mount: the directory lists only history. On a plain directory: only
/// the names the scenario made (no temp file left behind).
fn assert_no_leftovers(p: &Place, name: &str, plain_names: &[&str]) {
    if p.is_mount() {
        p.assert_listing_is_history(name);
    } else {
        let want: BTreeSet<String> = plain_names.iter().map(|s| s.to_string()).collect();
        assert_eq!(listing(&p.root.join(name)), want, "{name}/: no leftovers");
    }
}

fn sed_in_place(p: &Place) {
    let dir = p.seeded("s", b"alpha\nbeta\n");
    let latest = q(&dir.join("latest"));
    let (code, out, err) = sh(&format!("sed -i s/beta/gamma/ {latest}"));
    assert_eq!(code, 0, "sed -i on NAME/latest: {out}{err}");
    assert_eq!(fs::read(dir.join("latest")).unwrap(), b"alpha\ngamma\n");
    p.assert_count_settles("s", 2, "one sed -i, one new version");
    let (code, out, err) = sh(&format!("sed -i -e '$a delta' {latest}"));
    assert_eq!(code, 0, "a second sed -i: {out}{err}");
    assert_eq!(
        fs::read(dir.join("latest")).unwrap(),
        b"alpha\ngamma\ndelta\n"
    );
    p.assert_count_settles("s", 3, "two sed -i, two new versions");
    p.assert_contents(
        "s",
        &[
            b"alpha\nbeta\n",
            b"alpha\ngamma\n",
            b"alpha\ngamma\ndelta\n",
        ],
        "sed's temp file never becomes a version of its own",
    );
    assert_no_leftovers(p, "s", &["latest"]);
    p.fsck();
}

fn perl_in_place(p: &Place) {
    let dir = p.seeded("pl", b"one\ntwo\n");
    let latest = q(&dir.join("latest"));
    let (code, out, err) = sh(&format!("perl -pi -e 's/two/TWO/' {latest}"));
    assert_eq!(code, 0, "perl -pi -e on NAME/latest: {out}{err}");
    assert_eq!(fs::read(dir.join("latest")).unwrap(), b"one\nTWO\n");
    p.assert_count_settles("pl", 2, "one perl -pi, one new version");
    let (code, out, err) = sh(&format!("perl -i -ne 'print unless /one/' {latest}"));
    assert_eq!(code, 0, "perl -i -ne: {out}{err}");
    assert_eq!(fs::read(dir.join("latest")).unwrap(), b"TWO\n");
    p.assert_count_settles("pl", 3, "two perl -i, two new versions");
    p.assert_contents(
        "pl",
        &[b"one\ntwo\n", b"one\nTWO\n", b"TWO\n"],
        "perl's temp file never becomes a version of its own",
    );
    assert_no_leftovers(p, "pl", &["latest"]);
    p.fsck();
}

/// An atomic save as careful programs do it: a temp file in the same directory,
/// written, fsynced, `os.replace`d onto the name, and the directory fsynced.
const ATOMIC_SAVE: &str = r#"
import os, sys, tempfile
d, name, text = sys.argv[1], sys.argv[2], sys.argv[3]
fd, tmp = tempfile.mkstemp(dir=d)
with os.fdopen(fd, "wb") as f:
    f.write(text.encode())
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(d, name))
dfd = os.open(d, os.O_RDONLY)
try:
    os.fsync(dfd)
finally:
    os.close(dfd)
"#;

fn python_atomic_save(p: &Place) {
    let dir = p.anchor("cfg");
    let save = |name: &str, text: &str| {
        let (code, _, err) = run(
            "python3",
            &[
                OsStr::new("-c"),
                OsStr::new(ATOMIC_SAVE),
                dir.as_os_str(),
                OsStr::new(name),
                OsStr::new(text),
            ],
        );
        assert_eq!(code, 0, "atomic save of {name}: {err}");
        assert_eq!(fs::read_to_string(dir.join(name)).unwrap(), text);
    };
    save("settings.json", "{\"v\": 1}\n");
    p.assert_count_settles("cfg", 1, "one save, one version");
    save("settings.json", "{\"v\": 2}\n");
    p.assert_count_settles("cfg", 2, "a save over the written name, one more");
    if p.is_mount() {
        save("latest", "{\"v\": 3}\n");
        p.assert_count_settles("cfg", 3, "a save onto latest, one more");
    } else {
        save("settings.json", "{\"v\": 3}\n");
    }
    assert_eq!(
        fs::read(p.newest(&dir, "settings.json")).unwrap(),
        b"{\"v\": 3}\n"
    );
    p.assert_contents(
        "cfg",
        &[b"{\"v\": 1}\n", b"{\"v\": 2}\n", b"{\"v\": 3}\n"],
        "the fsynced temp file is committed once, as the version it was renamed to",
    );
    assert_no_leftovers(p, "cfg", &["settings.json"]);
    p.fsck();
}

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const SQLITE_JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

fn sqlite(p: &Place) {
    need("sqlite3");
    let dir = p.anchor("q");
    let db = dir.join("app.db");
    let sql = |path: &Path, extra: &str, script: &str| {
        let (code, out, err) = sh(&format!("sqlite3 {extra} {} \"{script}\"", q(path)));
        assert_eq!(code, 0, "sqlite3 {script}: {err}");
        assert!(err.is_empty(), "sqlite3 {script}: {err}");
        out
    };
    let out = sql(
        &db,
        "",
        "create table t(x text); insert into t values('one'),('two'); select x from t;",
    );
    assert_eq!(out, "one\ntwo\n");
    // The written name opened again for writing: a new transaction.
    let out = sql(
        &db,
        "",
        "insert into t values('three'); select count(*) from t;",
    );
    assert_eq!(out, "3\n");
    let out = sql(
        &p.newest(&dir, "app.db"),
        "-readonly",
        "select x from t order by x;",
    );
    assert_eq!(
        out, "one\nthree\ntwo\n",
        "the newest version is the database"
    );
    if let Some(h) = p.history("q") {
        assert!(!h.is_empty(), "sqlite's commits made at least one version");
        for (a, c) in &h {
            assert!(
                !c.starts_with(&SQLITE_JOURNAL_MAGIC),
                "a journal became a version at {}: {}",
                a.at,
                preview(c)
            );
            assert!(
                c.starts_with(SQLITE_MAGIC),
                "every version is a database image (no journal, no empty file); at {}: {}",
                a.at,
                preview(c)
            );
        }
        assert_eq!(
            fs::read(dir.join("latest")).unwrap(),
            fs::read(&db).unwrap(),
            "app.db names the newest version"
        );
    }
    assert_no_leftovers(p, "q", &["app.db"]);
    p.fsck();
}

both!(
    sed_in_place_on_latest,
    sed_in_place_on_a_plain_directory,
    sed_in_place
);
both!(
    perl_in_place_on_latest,
    perl_in_place_on_a_plain_directory,
    perl_in_place
);
both!(
    python_atomic_save_with_fsync_and_replace,
    python_atomic_save_on_a_plain_directory,
    python_atomic_save
);
both!(
    sqlite3_create_insert_select_in_an_anchor_directory,
    sqlite3_on_a_plain_directory,
    sqlite
);

// ---------------------------------------------------------------------------------
// A writer sees its own file; readers see the version.
// ---------------------------------------------------------------------------------

fn size_of(f: &mut fs::File) -> (u64, u64) {
    let by_stat = f.metadata().unwrap().len();
    let by_seek = f.seek(SeekFrom::End(0)).unwrap();
    (by_stat, by_seek)
}

fn read_all_at(f: &fs::File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read_at(&mut buf, out.len() as u64).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// One writer on `NAME/latest`, opened `O_RDWR` (no `O_TRUNC`): `fstat` and
/// `lseek(SEEK_END)` follow its pwrite past the end and its ftruncates, and a shared
/// mapping past the old end (after a truncate up) reads and writes its file. With
/// `early_reader`, a reader of the version is open before the writer opens; readers
/// of the version (that one, and one opened while the writer is open) keep its bytes
/// (and the early one its size) until the close commits.
fn writer_round(p: &Place, name: &str, early_reader: bool) {
    let old = pattern(10_000, 9);
    let dir = p.seeded(name, &old);
    let version = if p.is_mount() {
        dir.join(fs::read_link(dir.join("latest")).unwrap())
    } else {
        dir.join("latest")
    };
    let mut before = early_reader.then(|| {
        let r = fs::File::open(dir.join("latest")).unwrap();
        assert_eq!(read_all_at(&r), old);
        r
    });
    let mut w = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("latest"))
        .unwrap();
    let how = if early_reader {
        "O_RDWR on latest, a reader open before"
    } else {
        "O_RDWR on latest, no other descriptor open"
    };
    assert_eq!(
        size_of(&mut w),
        (10_000, 10_000),
        "{how}: the writer starts at the version"
    );

    // pwrite past the end: fstat and lseek(SEEK_END) follow the writer.
    w.write_at(&[b'T'; 100], 20_000).unwrap();
    assert_eq!(
        size_of(&mut w),
        (20_100, 20_100),
        "{how}: (fstat, lseek(SEEK_END)) after a pwrite past the end"
    );
    let mut want = old.clone();
    want.resize(20_000, 0);
    want.extend_from_slice(&[b'T'; 100]);
    assert_eq!(
        read_all_at(&w),
        want,
        "{how}: the writer reads its own bytes"
    );

    let readers_see_the_version = |before: &mut Option<fs::File>, when: &str| {
        if !p.is_mount() {
            return; // one file on a plain directory: no versions to keep apart
        }
        if let Some(before) = before {
            assert_eq!(
                size_of(before),
                (10_000, 10_000),
                "{how}, {when}: the reader opened before keeps the version's size"
            );
            assert_eq!(
                read_all_at(before),
                old,
                "{how}, {when}: the reader opened before keeps the version's bytes"
            );
        }
        let fresh = fs::File::open(&version).unwrap();
        assert_eq!(
            read_all_at(&fresh),
            old,
            "{how}, {when}: a reader of the version file opened now reads its bytes"
        );
    };
    readers_see_the_version(&mut before, "after the pwrite");

    // ftruncate down, then up; fstat follows.
    w.set_len(5_000).unwrap();
    assert_eq!(
        size_of(&mut w),
        (5_000, 5_000),
        "{how}: after ftruncate down"
    );
    assert_eq!(read_all_at(&w), old[..5_000], "{how}: after ftruncate down");
    w.set_len(50_000).unwrap();
    assert_eq!(
        size_of(&mut w),
        (50_000, 50_000),
        "{how}: after ftruncate up"
    );
    readers_see_the_version(&mut before, "after the truncates");

    // A shared mapping past the old end, read and written.
    let mut want = old[..5_000].to_vec();
    want.resize(50_000, 0);
    want[40_000..40_010].copy_from_slice(b"MAPPED-END");
    want[100..106].copy_from_slice(b"MAPPED");
    common::edit_through_mapping(&w, 50_000, |m| {
        assert_eq!(&m[..5_000], &old[..5_000], "{how}: mapped, the kept bytes");
        assert!(
            m[5_000..].iter().all(|&b| b == 0),
            "{how}: mapped, zeros past the cut"
        );
        m[40_000..40_010].copy_from_slice(b"MAPPED-END");
        m[100..106].copy_from_slice(b"MAPPED");
    });
    assert_eq!(read_all_at(&w), want, "{how}: pread sees the mapped writes");
    assert_eq!(
        size_of(&mut w),
        (50_000, 50_000),
        "{how}: after the mapped writes"
    );
    readers_see_the_version(&mut before, "after the mapped writes");

    drop(w);
    p.assert_count_settles(name, 2, "the close commits one version");
    p.assert_contents(name, &[&old, &want], "the version and the writer's file");
    assert_eq!(fs::read(dir.join("latest")).unwrap(), want);
    if p.is_mount() {
        if let Some(before) = &before {
            assert_eq!(
                read_all_at(before),
                old,
                "the early reader still has its version"
            );
        }
        assert_eq!(fs::read(&version).unwrap(), old, "history does not change");
    }
}

fn writer_sees_its_own_file(p: &Place) {
    writer_round(p, "w-alone", false);
    writer_round(p, "w-reader", true);
    p.fsck();
}

/// What fsx does first with each seed after another run: an in-place writer (a
/// process of its own) edits `latest` and exits; then `latest` is opened
/// `O_RDWR|O_CREAT|O_TRUNC`, closed without a write, and opened again at once: the
/// new descriptor sees the empty file, every time.
fn truncate_close_reopen(p: &Place) {
    let dir = p.seeded("t", b"seed");
    let latest = dir.join("latest");
    for round in 0..10 {
        let (code, _, err) = sh(&format!(
            "python3 -c 'import os,sys; f=os.open(sys.argv[1], os.O_RDWR); \
             os.pwrite(f, bytes(range(256))*400, 0); os.close(f)' {}",
            q(&latest)
        ));
        assert_eq!(code, 0, "the in-place writer: {err}");
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&latest)
            .unwrap();
        drop(f);
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&latest)
            .unwrap();
        assert_eq!(
            size_of(&mut f),
            (0, 0),
            "round {round}: reopened right after a truncating open and its close"
        );
    }
    p.fsck();
}

both!(
    a_truncating_open_of_latest_closed_unwritten_then_reopened_is_empty,
    a_truncating_open_closed_unwritten_on_a_plain_directory,
    truncate_close_reopen
);
both!(
    a_writer_on_latest_sees_its_own_file_readers_see_the_version,
    a_writer_sees_its_own_file_on_a_plain_directory,
    writer_sees_its_own_file
);

// ---------------------------------------------------------------------------------
// A written name: lookups, reopening, rename, unlink, listing.
// ---------------------------------------------------------------------------------

fn a_written_name(p: &Place) {
    let dir = p.anchor("u");
    let a = dir.join("a");
    fs::write(&a, b"first").unwrap();
    assert_eq!(
        fs::read(&a).unwrap(),
        b"first",
        "u/a answers after its close"
    );
    assert_eq!(fs::metadata(&a).unwrap().len(), 5);
    p.assert_contents("u", &[b"first"], "one version");
    p.assert_listing_is_history("u");

    // Opened for writing and closed unchanged, with and without read: no version.
    drop(fs::OpenOptions::new().write(true).open(&a).unwrap());
    drop(
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&a)
            .unwrap(),
    );
    p.assert_count_settles("u", 1, "reopening a written name adds no version");

    // Edited in place by the name: copy-on-write, one new version.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&a)
        .unwrap();
    f.write_at(b"F", 0).unwrap();
    drop(f);
    p.assert_count_settles("u", 2, "an edit by the name");
    p.assert_contents("u", &[b"first", b"First"], "the edit is a new version");
    assert_eq!(fs::read(&a).unwrap(), b"First");

    // Renamed onto another name, then onto latest: no duplicate version.
    fs::rename(&a, dir.join("b")).expect("rename of a written name");
    assert_eq!(errno_of(&fs::metadata(&a).unwrap_err()), libc::ENOENT);
    assert_eq!(fs::read(dir.join("b")).unwrap(), b"First");
    p.assert_count_settles("u", 2, "rename onto another name adds nothing");
    fs::rename(dir.join("b"), dir.join("latest")).expect("rename onto latest");
    assert_eq!(
        errno_of(&fs::metadata(dir.join("b")).unwrap_err()),
        libc::ENOENT
    );
    assert_eq!(fs::read(dir.join("latest")).unwrap(), b"First");
    p.assert_count_settles("u", 2, "rename onto latest adds nothing");
    p.assert_contents("u", &[b"first", b"First"], "history after the renames");

    // Unlinked: the name goes, the version stays.
    fs::write(dir.join("c"), b"third").unwrap();
    p.assert_count_settles("u", 3, "a write of a new name");
    fs::remove_file(dir.join("c")).expect("unlink of a written name");
    assert_eq!(
        errno_of(&fs::metadata(dir.join("c")).unwrap_err()),
        libc::ENOENT
    );
    p.assert_contents(
        "u",
        &[b"first", b"First", b"third"],
        "unlink removes a name, never a version",
    );
    if p.is_mount() {
        assert_eq!(fs::read(dir.join("latest")).unwrap(), b"third");
    }
    assert_no_leftovers(p, "u", &["latest"]);
    p.fsck();
}

both!(
    unlink_and_rename_of_a_written_name,
    unlink_and_rename_on_a_plain_directory,
    a_written_name
);

// ---------------------------------------------------------------------------------
// Back-dating onto a neighbour.
// ---------------------------------------------------------------------------------

/// `ln -s HEX MNT/NAME/TIME` where HEX is the ref of the next later version would
/// merge the two (the store keeps the earlier of equal neighbours, so the next
/// version would move): refused with EEXIST, and nothing changes.
#[test]
fn a_back_dated_link_that_would_merge_is_refused() {
    if fuse_skipped() {
        return;
    }
    let p = Place::mounted();
    let dir = p.anchor("bd");
    fs::write(dir.join("2026-07-01T00:00:00Z"), b"july").unwrap();
    fs::write(dir.join("2026-08-01T00:00:00Z"), b"august").unwrap();
    let before = p.history("bd").unwrap();
    assert_eq!(before.len(), 2);
    let (july, august) = (before[0].0.r.to_hex(), before[1].0.r.to_hex());

    let e = std::os::unix::fs::symlink(&july, dir.join("2026-06-01T00:00:00Z")).unwrap_err();
    assert_eq!(
        errno_of(&e),
        libc::EEXIST,
        "ln -s REF-OF-NEXT-VERSION NAME/EARLIER-TIME: {e}"
    );
    let after = p.history("bd").unwrap();
    assert_eq!(
        after.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        before.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        "the refused link changed nothing"
    );
    p.assert_listing_is_history("bd");

    // The same ref back-dated before a version with other content is fine.
    std::os::unix::fs::symlink(&august, dir.join("2026-06-01T00:00:00Z"))
        .expect("a back-dated link that merges with nothing");
    let c = p.contents("bd").unwrap();
    assert_eq!(
        c,
        vec![b"august".to_vec(), b"july".to_vec(), b"august".to_vec()]
    );
    p.fsck();
}

/// `anchorfs put NAME --ref HEX --at T` keeps the Go library's behaviour (the
/// earlier of two equal neighbours is kept, so the next version moves to T), and
/// says so on stderr; a put that moves nothing says nothing.
#[test]
fn put_at_says_on_stderr_when_it_moves_a_version_earlier() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let bin = common::binary();
    let afs = |args: &[&str], stdin: &[u8]| {
        use std::io::Write;
        let mut child = Command::new(&bin)
            .arg("--store")
            .arg(&store)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, july, err) = afs(&["put", "n", "--at", "2026-07-01T00:00:00Z"], b"july");
    assert_eq!(code, 0, "{err}");
    let (code, august, err) = afs(&["put", "n", "--at", "2026-08-01T00:00:00Z"], b"august");
    assert_eq!(code, 0, "{err}");

    // Moves nothing (the next version holds other content): silent.
    let (code, _, err) = afs(
        &["put", "n", "--ref", &august, "--at", "2026-05-01T00:00:00Z"],
        b"",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err, "",
        "a back-dated put that moves nothing prints nothing"
    );

    // The next version (July) holds this ref: the store keeps the earlier entry.
    let (code, out, err) = afs(
        &["put", "n", "--ref", &july, "--at", "2026-06-01T00:00:00Z"],
        b"",
    );
    assert_eq!(code, 0, "Go's behaviour: the put succeeds: {err}");
    assert_eq!(out, july);
    let s = FileStore::open(&store).unwrap();
    let hist: Vec<(String, String)> = anchor::history(&s, b"n")
        .unwrap()
        .into_iter()
        .map(|a| (a.at.to_rfc3339(), a.r.to_hex()))
        .collect();
    let t = |s: &str| Timestamp::parse(s).unwrap().to_rfc3339();
    assert_eq!(
        hist,
        vec![
            (t("2026-05-01T00:00:00Z"), august.clone()),
            (t("2026-06-01T00:00:00Z"), july.clone()),
            (t("2026-08-01T00:00:00Z"), august.clone()),
        ],
        "the July version now stands at June, as the Go library leaves it"
    );
    assert!(
        err.contains("2026-07-01") && err.contains("2026-06-01"),
        "put --at says on stderr that it moved the version of 2026-07-01 to 2026-06-01; \
         stderr: {err:?}"
    );
}
