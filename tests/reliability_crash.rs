//! Crashes: the mount daemon SIGKILLed at random moments while several threads
//! write through it, 50 times; CLI writers SIGKILLed mid-put, 50 times; a lock file
//! left by a killed writer. After each kill every version whose close (or put)
//! succeeded is there, nothing anyone did not write appears, and `fsck` passes.
//! Also races that lose or hide acknowledged versions without any crash: gc between
//! a writer's blob puts and its anchor put, overlapping snapshot refreshes, and a
//! rename racing the release of the file it renames.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anchorfs::anchor;
use anchorfs::store::file::FileStore;
use anchorfs::{content, Ref, Timestamp};
use rand::Rng;
use reliability::{
    age_file, assert_fsck_ok, cli, cli_run, cli_run_in, history, mount_ref, noise, split_root,
    write_file, Daemon,
};

use common::fuse_skipped;

const LOCK: &str = "anchormapref.lock";

/// If a killed writer left the lock behind, makes it look abandoned (older than the
/// 60 s after which writers take it over). Returns whether there was one.
fn age_abandoned_lock(store: &Path) -> bool {
    let lock = store.join(LOCK);
    if lock.exists() {
        age_file(&lock, Duration::from_secs(120));
        true
    } else {
        false
    }
}

/// One writer thread's record: what it tried and what it was told succeeded.
#[derive(Default)]
struct Written {
    tried: Vec<(String, Ref)>,
    acked: Vec<(String, Ref)>,
}

/// Writes small versions through the mount at `mnt` until something fails (the
/// daemon was killed) or `stop` is set.
fn writer(mnt: PathBuf, t: usize, round: usize, stop: Arc<AtomicBool>) -> Written {
    let mut w = Written::default();
    let mut rng = rand::thread_rng();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let anchor = if rng.gen_bool(0.5) {
            "shared".to_string()
        } else {
            format!("own{t}")
        };
        let size = rng.gen_range(0..6000);
        let mut data = format!("round {round} writer {t} version {i}\n").into_bytes();
        data.extend(noise(size, (round * 1000 + t * 100_000 + i) as u64));
        let r = mount_ref(&data);
        w.tried.push((anchor.clone(), r));
        let path = mnt.join(&anchor).join(format!("r{round}-w{t}-{i}"));
        match write_file(&path, &data, 1500, rng.gen_bool(0.3)) {
            Ok(()) => w.acked.push((anchor, r)),
            Err(_) => break,
        }
    }
    w
}

#[test]
fn the_daemon_killed_during_concurrent_writes_loses_no_acknowledged_version() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    let anchors: Vec<String> = std::iter::once("shared".to_string())
        .chain((0..4).map(|t| format!("own{t}")))
        .collect();
    let mut rng = rand::thread_rng();
    let mut acked: HashMap<String, HashSet<Ref>> = HashMap::new();
    let mut tried: HashMap<String, HashSet<Ref>> = HashMap::new();
    let mut last_round: Vec<(String, Ref)> = Vec::new();
    let (mut kills, mut abandoned_locks, mut checked) = (0, 0, 0usize);
    for round in 0..50 {
        let mut m = Daemon::start(&sp, "");
        // After the remount, the previous round's acknowledged versions read back.
        if !last_round.is_empty() {
            let s = FileStore::open(&sp).unwrap();
            for (a, r) in &last_round {
                let at = anchor::history(&s, a.as_bytes())
                    .unwrap()
                    .into_iter()
                    .find(|e| e.r == *r)
                    .unwrap()
                    .at;
                let p = m.path(&format!("{a}/{}", at.to_rfc3339()));
                let got = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!(mount_ref(&got), *r, "{} after the remount", p.display());
            }
        }
        for a in &anchors {
            // Until its first version, an anchor directory lives in the mount only.
            if let Err(e) = fs::create_dir(m.path(a)) {
                assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists,
                    "mkdir {a}: {e}"
                );
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (mnt, stop) = (m.mnt.clone(), stop.clone());
                std::thread::spawn(move || writer(mnt, t, round, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..150)));
        m.kill9();
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        last_round.clear();
        for th in threads {
            let w = th.join().expect("a writer thread panicked");
            for (a, r) in w.tried {
                tried.entry(a).or_default().insert(r);
            }
            for (a, r) in w.acked {
                acked.entry(a.clone()).or_default().insert(r);
                last_round.push((a, r));
            }
        }
        if age_abandoned_lock(&sp) {
            abandoned_locks += 1;
        }
        // Every acknowledged version of every round so far is there, and every
        // version there is one somebody wrote.
        for a in &anchors {
            let have = reliability::history_refs(&sp, a.as_bytes());
            let want = acked.get(a).cloned().unwrap_or_default();
            let lost: Vec<_> = want.difference(&have).collect();
            assert!(
                lost.is_empty(),
                "round {round}: {a} lost {} acknowledged versions",
                lost.len()
            );
            let tried = tried.get(a).cloned().unwrap_or_default();
            assert!(
                have.is_subset(&tried),
                "round {round}: {a} has versions nobody wrote"
            );
            checked += want.len();
        }
        assert_fsck_ok(&sp, &format!("after kill {round}"));
    }
    let total: usize = acked.values().map(HashSet::len).sum();
    assert!(
        total > 50,
        "the writers got versions done between kills ({total})"
    );
    eprintln!(
        "crash (daemon): {kills} SIGKILLs injected, {abandoned_locks} abandoned locks taken over, \
         {total} acknowledged versions, {checked} version checks, 0 lost"
    );
}

/// A running `anchorfs put`, fed its content on stdin.
struct Put {
    name: String,
    data: Vec<u8>,
    child: Child,
}

fn start_put(store: &Path, name: &str, data: Vec<u8>) -> Put {
    let mut child = cli(store)
        .args(["put", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.clone();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&feed);
    });
    Put {
        name: name.to_string(),
        data,
        child,
    }
}

#[test]
fn cli_writers_killed_mid_put_lose_no_acknowledged_put() {
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    let mut rng = rand::thread_rng();
    let mut acked: Vec<(String, Ref, Vec<u8>)> = Vec::new();
    let mut tried: HashMap<String, HashSet<Ref>> = HashMap::new();
    let (mut kills, mut killed_mid_put, mut abandoned_locks) = (0, 0, 0);
    let mut round = 0;
    while killed_mid_put < 50 {
        round += 1;
        assert!(
            round < 500,
            "puts kept finishing before their kill ({killed_mid_put} of 50 killed)"
        );
        let puts: Vec<Put> = (0..4)
            .map(|p| {
                let name = if p % 2 == 0 {
                    "shared".to_string()
                } else {
                    format!("own{p}")
                };
                let size = rng.gen_range(0..150_000);
                let data = noise(size, (round * 10 + p) as u64);
                tried
                    .entry(name.clone())
                    .or_default()
                    .insert(split_root(&data));
                start_put(&sp, &name, data)
            })
            .collect();
        // Each writer is killed at a moment of its own: some finish first, the
        // others die somewhere in their put. None is left running, so a lock file
        // left now is certainly abandoned.
        let mut deadlines: Vec<u64> = (0..puts.len()).map(|_| rng.gen_range(0..25)).collect();
        deadlines.sort_unstable();
        let start = std::time::Instant::now();
        let mut puts = puts;
        for (i, d) in deadlines.iter().enumerate() {
            let wait = Duration::from_millis(*d).saturating_sub(start.elapsed());
            std::thread::sleep(wait);
            if puts[i].child.try_wait().unwrap().is_none() {
                puts[i].child.kill().unwrap();
                kills += 1;
            }
        }
        for p in puts {
            let out = p.child.wait_with_output().unwrap();
            if out.status.success() {
                let r = Ref::from_hex(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
                acked.push((p.name, r, p.data));
            } else {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    out.status.signal(),
                    Some(libc::SIGKILL),
                    "a put failed by itself: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                killed_mid_put += 1;
            }
        }
        if age_abandoned_lock(&sp) {
            abandoned_locks += 1;
        }
        let s = FileStore::open(&sp).unwrap();
        for (name, r, data) in &acked {
            let hist = anchor::history(&s, name.as_bytes()).unwrap();
            assert!(
                hist.iter().any(|a| a.r == *r),
                "round {round}: acknowledged put of {name} lost"
            );
            assert_eq!(*r, split_root(data));
        }
        for (name, refs) in &tried {
            for a in anchor::history(&s, name.as_bytes()).unwrap() {
                assert!(
                    refs.contains(&a.r),
                    "round {round}: {name} has a version nobody put"
                );
            }
        }
        assert_fsck_ok(&sp, &format!("after CLI kill {round}"));
    }
    // Every acknowledged content reads back whole.
    let s = FileStore::open(&sp).unwrap();
    for (name, r, data) in &acked {
        let got = anchorfs::split::read_to_vec(&s, r).unwrap();
        assert!(got == *data, "{name}: {r} reads back");
    }
    eprintln!(
        "crash (CLI): {kills} SIGKILLs sent ({killed_mid_put} writers killed before they finished), {abandoned_locks} \
         abandoned locks taken over, {} acknowledged puts checked, 0 lost",
        acked.len()
    );
}

#[test]
fn a_stale_lock_left_by_a_killed_writer_is_taken_over() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    let (code, _, err) = cli_run_in(&sp, &["put", "doc"], b"one");
    assert_eq!(code, 0, "{err}");
    let m = Daemon::start(&sp, "");
    let lock = sp.join(LOCK);

    // As a killed writer leaves it: an empty file, created O_EXCL, never removed.
    fs::write(&lock, b"").unwrap();
    age_file(&lock, Duration::from_secs(61));
    let (code, _, err) = cli_run_in(&sp, &["put", "doc"], b"two");
    assert_eq!(code, 0, "a CLI put takes over a stale lock: {err}");
    assert!(!lock.exists(), "and releases it");

    fs::write(&lock, b"").unwrap();
    age_file(&lock, Duration::from_secs(3600));
    write_file(&m.path("doc/three"), b"three", 4096, false)
        .expect("a write through the mount takes over a stale lock");
    assert!(!lock.exists());

    // A fresh lock is a live writer's: nobody takes it, everyone waits for it.
    fs::write(&lock, b"").unwrap();
    let waiting = start_put(&sp, "doc", b"four".to_vec());
    let mnt_writer = {
        let p = m.path("doc/five");
        std::thread::spawn(move || write_file(&p, b"five", 4096, false))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let mut waiting = waiting;
    assert!(
        waiting.child.try_wait().unwrap().is_none(),
        "a put went ahead while a live writer held the lock"
    );
    assert!(
        !mnt_writer.is_finished(),
        "a mount commit went ahead while the lock was held"
    );
    assert_eq!(history(&sp, b"doc").len(), 3);
    fs::remove_file(&lock).unwrap();
    let out = waiting.child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mnt_writer
        .join()
        .unwrap()
        .expect("the mount's commit went ahead once the lock was released");
    let contents: Vec<Vec<u8>> = {
        let s = FileStore::open(&sp).unwrap();
        history(&sp, b"doc")
            .iter()
            .map(|a| reliability::read_content(&s, &a.r))
            .collect()
    };
    assert_eq!(contents.len(), 5);
    assert_eq!(
        &contents[..3],
        &[b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    assert_fsck_ok(&sp, "after the lock tests");
}

#[test]
fn gc_between_a_writers_blob_puts_and_its_anchor_put_loses_nothing() {
    // gc keeps unreachable blobs younger than the grace period "so a writer between
    // its chunk puts and its anchor put loses nothing". A writer whose content is
    // already in the store as old unreachable blobs (an expired version written
    // again) must be protected the same way.
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let s = FileStore::create(&sp).unwrap();
    let data = noise(300_000, 42);
    let root = content::store(&s, &data[..]).unwrap();
    content::put_split(
        &s,
        b"doc",
        root,
        Timestamp::parse("2020-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    let other = content::store(&s, &b"newer"[..]).unwrap();
    content::put_split(
        &s,
        b"doc",
        other,
        Timestamp::parse("2021-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    let (code, _, err) = cli_run(
        &sp,
        &["expire", "--before", "2020-06-01T00:00:00Z", "--keep", "1"],
    );
    assert_eq!(code, 0, "{err}");
    // The expired version's blobs are old.
    let old: Vec<Ref> = reliability::all_refs(&s);
    for r in &old {
        age_file(&s.blob_path(r), Duration::from_secs(7200));
    }
    // A writer stores the same content again (its blobs are all there already)...
    let again = content::store(&s, &data[..]).unwrap();
    assert_eq!(again, root);
    // ...gc runs before the writer anchors it...
    let (code, out, err) = cli_run(&sp, &["gc", "--grace", "1h"]);
    assert_eq!(code, 0, "{out}{err}");
    // ...and the writer anchors it.
    content::put_split(&s, b"doc", again, Timestamp::now()).unwrap();
    let (code, report, err) = reliability::fsck(&sp);
    assert_eq!(
        code, 0,
        "gc deleted the blobs of a version being written (gc said: {out}): {report}{err}"
    );
    assert_eq!(anchorfs::split::read_to_vec(&s, &root).unwrap(), data);
}

#[test]
fn a_committed_version_is_listed_at_once_and_never_vanishes_under_concurrent_commits() {
    if fuse_skipped() {
        return;
    }
    // Each writer owns an anchor: once its close returns, its directory lists
    // every version it made and `latest` is its last one, whatever the other
    // writers commit meanwhile; readers of `latest` never see ENOENT.
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    // Many anchors: each snapshot refresh takes a while, so refreshes overlap.
    let s = FileStore::open(&sp).unwrap();
    let (r, _) = anchorfs::store::Store::put(&s, b"filler").unwrap();
    let history = anchor::encode_history(&[anchor::Anchor {
        r,
        at: Timestamp::now(),
    }]);
    let names: Vec<Vec<u8>> = (0..4000)
        .map(|i| format!("filler-{i}").into_bytes())
        .collect();
    let pairs: Vec<(&[u8], &[u8])> = names.iter().map(|n| (&n[..], &history[..])).collect();
    let map = anchorfs::schema::Map::from_pairs(&s, &pairs).unwrap();
    anchorfs::store::AnchorStore::update_anchor_map(&s, &mut |_| Ok(map)).unwrap();
    let m = Daemon::start(&sp, "");
    for t in 0..4 {
        fs::create_dir(m.path(&format!("own{t}"))).unwrap();
        write_file(&m.path(&format!("own{t}/v0")), b"v0", 4096, false).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (d, stop) = (m.path(&format!("own{t}")), stop.clone());
            std::thread::spawn(move || {
                let (mut problems, mut lingering) = (Vec::new(), 0);
                let mut made = 1;
                while !stop.load(Ordering::Relaxed) && problems.len() < 5 {
                    let data = format!("writer {t} version {made}");
                    write_file(&d.join(format!("v{made}")), data.as_bytes(), 4096, false)
                        .expect("a write");
                    made += 1;
                    // Versions are named by their times; a file's own name may show
                    // until the kernel's release of it arrives, after close returned.
                    let names: Vec<String> = fs::read_dir(&d)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect();
                    let listed = names.iter().filter(|n| n.starts_with("20")).count();
                    lingering += names.iter().filter(|n| n.starts_with('v')).count();
                    if listed != made {
                        problems.push(format!(
                            "{}: {listed} versions listed after {made} closes",
                            d.display()
                        ));
                    }
                    match fs::read(d.join("latest")) {
                        Ok(b) if b == data.as_bytes() => {}
                        Ok(b) => problems.push(format!(
                            "{}/latest is {:?} right after {data:?} was closed",
                            d.display(),
                            String::from_utf8_lossy(&b)
                        )),
                        Err(e) => problems.push(format!("{}/latest: {e}", d.display())),
                    }
                }
                (made, problems, lingering)
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|k| {
            let (mnt, stop) = (m.mnt.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut reads, mut problems) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    for t in 0..4 {
                        let p = mnt.join(format!("own{t}/latest"));
                        match fs::read(&p) {
                            Ok(_) => reads += 1,
                            Err(e) => problems.push(format!("reader {k}: {}: {e}", p.display())),
                        }
                    }
                }
                (reads, problems)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut problems = Vec::new();
    let (mut versions, mut lingering) = (0, 0);
    for w in writers {
        let (made, p, l) = w.join().unwrap();
        versions += made;
        lingering += l;
        problems.extend(p);
    }
    let mut reads = 0;
    for r in readers {
        let (n, p) = r.join().unwrap();
        reads += n;
        problems.extend(p);
    }
    eprintln!(
        "{versions} versions committed, {reads} reads of latest, {} problems; a written \
         name still listed after its close {lingering} times",
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems, e.g.: {:#?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
}

/// A store that holds one thread (named "held") right after its first read of the
/// anchor map ref, as if it were preempted there, and from then on shows that
/// thread the map ref it read then.
struct HoldingStore {
    inner: anchorfs::store::mem::MemStore,
    seen: std::sync::Mutex<Option<Result<Ref, String>>>,
    released: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
    held: std::sync::mpsc::SyncSender<()>,
}

impl anchorfs::store::Getter for HoldingStore {
    fn get(&self, r: &Ref) -> Result<anchorfs::Blob, anchorfs::store::StoreError> {
        self.inner.get(r)
    }
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, anchorfs::store::StoreError>,
    ) -> Result<(), anchorfs::store::StoreError> {
        self.inner.list_refs(after, f)
    }
}

impl anchorfs::store::Store for HoldingStore {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), anchorfs::store::StoreError> {
        self.inner.put(blob)
    }
}

impl anchorfs::store::AnchorGetter for HoldingStore {
    fn anchor_map_ref(&self) -> Result<Ref, anchorfs::store::StoreError> {
        if std::thread::current().name() != Some("held") {
            return self.inner.anchor_map_ref();
        }
        let first = {
            let mut seen = self.seen.lock().unwrap();
            let first = seen.is_none();
            if first {
                *seen = Some(self.inner.anchor_map_ref().map_err(|e| e.to_string()));
            }
            first
        };
        if first {
            let _ = self.held.send(());
            let mut released = self.released.lock().unwrap();
            while !*released {
                released = self.wake.wait(released).unwrap();
            }
        }
        let seen = self.seen.lock().unwrap().clone().unwrap();
        seen.map_err(|e| anchorfs::store::StoreError::io(e, std::io::Error::other("held")))
    }
}

impl anchorfs::store::AnchorStore for HoldingStore {
    fn swap_anchor_map(
        &self,
        old: Option<Ref>,
        new: Ref,
    ) -> Result<(), anchorfs::store::StoreError> {
        self.inner.swap_anchor_map(old, new)
    }
}

#[test]
fn a_slow_snapshot_refresh_never_replaces_a_newer_one() {
    // Two refreshes overlap: the first reads the anchor map, is preempted, and
    // finishes after a second one has installed a newer map. A version committed
    // (and listed) in between must stay listed.
    use anchorfs::fs::inode::ROOT_INO;
    use anchorfs::fs::{AnchorFs, FsOptions};
    use anchorfs::store::Store;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let store = Arc::new(HoldingStore {
        inner: anchorfs::store::mem::MemStore::new(),
        seen: std::sync::Mutex::new(None),
        released: std::sync::Mutex::new(false),
        wake: std::sync::Condvar::new(),
        held: tx,
    });
    let (r1, _) = store.put(b"one").unwrap();
    anchor::put(
        &*store,
        b"doc",
        r1,
        Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    let fs = Arc::new(AnchorFs::new(store.clone(), FsOptions::default()).unwrap());
    let (r2, _) = store.put(b"two").unwrap();
    anchor::put(
        &*store,
        b"doc",
        r2,
        Timestamp::parse("2026-01-02T00:00:00Z").unwrap(),
    )
    .unwrap();
    // The slow refresh reads the map with version two and is held.
    let slow = {
        let fs = fs.clone();
        std::thread::Builder::new()
            .name("held".into())
            .spawn(move || fs.refresh().map(|_| ()))
            .unwrap()
    };
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the slow refresh reads the anchor map ref");
    // Version three is committed and a refresh (another commit's) lists it.
    let (r3, _) = store.put(b"three").unwrap();
    anchor::put(
        &*store,
        b"doc",
        r3,
        Timestamp::parse("2026-01-03T00:00:00Z").unwrap(),
    )
    .unwrap();
    let fast = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.refresh().map(|_| ()))
    };
    // Let the fast one finish (or wait on the slow one, if refreshes are serialized).
    let start = std::time::Instant::now();
    while !fast.is_finished() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    *store.released.lock().unwrap() = true;
    store.wake.notify_all();
    slow.join().unwrap().unwrap();
    fast.join().unwrap().unwrap();
    let dir = fs.lookup(ROOT_INO, b"doc").unwrap().attr.ino;
    let names: Vec<Vec<u8>> = fs
        .readdir(dir, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(
        names.contains(&b"2026-01-03T00:00:00.000000000Z".to_vec()),
        "version three was listed and then vanished: {:?}",
        names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_rename_racing_the_release_of_its_file_always_commits() {
    // A program writes a scratch file, closes it and renames it onto a normal name
    // at once (rsync, editors, the soak): the kernel's release of the closed file
    // may reach the filesystem while the rename is being handled. Whatever the
    // order, the rename's success means a version. Through the core, many rounds
    // starting the release and the rename together at varying offsets; the window
    // is narrow, so a run may miss it, but it never reports a loss that did not
    // happen.
    use anchorfs::fs::inode::ROOT_INO;
    use anchorfs::fs::{AnchorFs, FsOptions};
    let mut rng = rand::thread_rng();
    let (mut rounds, mut lost) = (0, 0);
    for _batch in 0..60 {
        let store = Arc::new(anchorfs::store::mem::MemStore::new());
        let processes = Arc::new(anchorfs::fs::FakeProcesses::new());
        let fs = Arc::new(
            AnchorFs::with_processes(store.clone(), FsOptions::default(), processes).unwrap(),
        );
        let dir = fs.mkdir(ROOT_INO, b"doc").unwrap().attr.ino;
        let mut made = 0;
        for i in 0..200 {
            rounds += 1;
            let (entry, fh) = fs.create(dir, b".scratch").unwrap();
            fs.write(fh, 0, format!("version {i}").as_bytes(), Some(7))
                .unwrap();
            fs.flush(fh, Some(7)).unwrap();
            // Someone stats the file meanwhile (as `ls -l` would), which makes the
            // release wait for the file's lock now and then.
            let prober = {
                let (fs, ino) = (fs.clone(), entry.attr.ino);
                std::thread::spawn(move || {
                    for _ in 0..30 {
                        let _ = fs.getattr(ino);
                    }
                })
            };
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let (mine, theirs) = (rng.gen_range(0..200u32), rng.gen_range(0..200u32));
            let releaser = {
                let (fs, barrier) = (fs.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..theirs {
                        std::hint::spin_loop();
                    }
                    fs.release(fh).unwrap();
                })
            };
            barrier.wait();
            for _ in 0..mine {
                std::hint::spin_loop();
            }
            fs.rename(dir, b".scratch", dir, format!("v{i}").as_bytes())
                .expect("the rename succeeds");
            releaser.join().unwrap();
            prober.join().unwrap();
            made += 1;
            let have = anchor::history(&*store, b"doc").unwrap().len();
            if have != made {
                lost += made - have;
                made = have;
            }
        }
    }
    assert_eq!(
        lost, 0,
        "{lost} of {rounds} renames succeeded without making a version"
    );
}
