//! The store never leaves its directory: a FIFO, a symbolic link to a file outside,
//! a device node, a 4 GiB sparse file in place of a blob, and a blob directory that
//! is a symbolic link into another store. `get`, `cat`, `fsck`, `gc`, `sync` and
//! `put` each finish within seconds with a clear error (or, for `put`, by replacing
//! the entry), in bounded memory, and nothing outside the store changes. Files a
//! store creates are never group- or world-writable, whatever the umask; and a
//! mount keeps serving the other anchors while one has a FIFO for a blob.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anchorfs::split::{SplitOptions, Splitter};
use anchorfs::store::file::FileStore;
use anchorfs::store::{Getter, Refusal, Store, StoreError, MAX_BLOB_SIZE};
use anchorfs::{anchor, content, Ref, Timestamp};
use reliability::noise;
use sha2::{Digest, Sha256};

use common::{binary, fuse_skipped, Mounted};

/// How long any one command may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(30);

/// The most memory (peak RSS) a command that meets a 4 GiB file may use.
const RSS_LIMIT_KIB: u64 = 256 << 10;

fn at0() -> Timestamp {
    Timestamp::parse("2026-01-01T00:00:00Z").unwrap()
}

/// What a command did.
#[derive(Debug)]
struct Ran {
    code: i32,
    /// Stdout as text (lossy) and as bytes.
    out: String,
    bytes: Vec<u8>,
    err: String,
    max_rss_kib: u64,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "status {}\nstdout: {}\nstderr: {}",
            self.code, self.out, self.err
        )
    }
}

/// Runs `anchorfs --store STORE ARGS` (stdin from `stdin`, else empty) and waits at
/// most [`LIMIT`] for it; a command still running then is killed and fails the
/// test. Reports the peak resident set of the process.
// The child is reaped by `wait4` (which also reports its peak memory), not `wait`.
#[allow(clippy::zombie_processes)]
fn run(store: &Path, args: &[&OsStr], stdin: Option<&Path>) -> Ran {
    let tmp = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (tmp.path().join("out"), tmp.path().join("err"));
    let mut cmd = Command::new(binary());
    cmd.env_remove("ANCHORFS_STORE")
        .arg("--store")
        .arg(store)
        .args(args)
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    match stdin {
        Some(p) => cmd.stdin(File::open(p).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    let mut child = cmd.spawn().expect("start anchorfs");
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let (status, max_rss_kib) = loop {
        let mut status = 0;
        // SAFETY: zeroed is a valid rusage; wait4 on our own child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if rc == pid {
            break (status, ru.ru_maxrss as u64);
        }
        assert!(rc == 0, "wait4: {}", std::io::Error::last_os_error());
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "anchorfs {args:?} did not finish within {LIMIT:?}: it hangs; stderr so far: {}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    let bytes = fs::read(&out_path).unwrap();
    Ran {
        code,
        out: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
        err: fs::read_to_string(&err_path).unwrap(),
        max_rss_kib,
    }
}

fn args(a: &[&str]) -> Vec<&'static OsStr> {
    a.iter()
        .map(|s| OsStr::new(Box::leak(s.to_string().into_boxed_str())))
        .collect()
}

fn run_str(store: &Path, a: &[&str]) -> Ran {
    run(store, &args(a), None)
}

/// Every entry under `root`, links not followed: kind, size, mtime and a hash of
/// the content (a link's target): what must not change.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".to_string()
        } else if ft.is_file() {
            let mut h = Sha256::new();
            h.update(fs::read(&p).unwrap());
            format!("file {}", hex::encode(h.finalize()))
        } else {
            "other".to_string()
        };
        let desc = format!(
            "{what} len {} mode {:o} mtime {}.{:09}",
            m.len(),
            m.mode(),
            m.mtime(),
            m.mtime_nsec()
        );
        out.insert(p, desc);
    }
    out
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// A store with three anchors, and beside it (outside the store) a decoy
/// directory holding files and another store.
struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    decoy: PathBuf,
    /// The content of anchor `doc` (a split tree of several chunks), also as a file.
    doc: Vec<u8>,
    doc_file: PathBuf,
    doc_root: Ref,
    /// One chunk of `doc` and its length.
    chunk: Ref,
    chunk_len: usize,
    /// The blob anchor `raw` points at (stored whole) and a file holding it.
    raw: Ref,
    raw_file: PathBuf,
    keep: Vec<u8>,
    other_store: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = FileStore::create(&store).unwrap();
    let doc = noise(300_000, 7);
    let doc_root = content::store(&s, &doc[..]).unwrap();
    content::put_split(&s, b"doc", doc_root, at0()).unwrap();
    let keep = noise(5000, 9);
    let keep_root = content::store(&s, &keep[..]).unwrap();
    content::put_split(&s, b"keep", keep_root, at0()).unwrap();
    let raw_bytes = noise(1000, 11);
    let (raw, _) = s.put(&raw_bytes).unwrap();
    anchor::put(&s, b"raw", raw, at0()).unwrap();

    let cuts = Splitter::chunks(&SplitOptions::default(), &doc).unwrap();
    assert!(cuts.len() >= 3, "doc is several chunks");
    let (len, _) = cuts[1];
    let start = cuts[0].0 as usize;
    let chunk_len = len as usize;
    let chunk = Ref::of(&doc[start..start + chunk_len]);
    assert!(s.contains(&chunk).unwrap());

    let doc_file = dir.path().join("doc.bin");
    fs::write(&doc_file, &doc).unwrap();
    let raw_file = dir.path().join("raw.bin");
    fs::write(&raw_file, &raw_bytes).unwrap();

    let decoy = dir.path().join("decoy");
    fs::create_dir(&decoy).unwrap();
    fs::write(decoy.join("precious"), b"not the store's to touch").unwrap();
    // Of a chunk's length, so a link to it looks like the blob to a size check.
    fs::write(decoy.join("chunk-sized"), vec![0u8; chunk_len]).unwrap();
    let other_store = decoy.join("other-store");
    let other = FileStore::create(&other_store).unwrap();
    for i in 0..64u32 {
        other
            .put(format!("another store's blob {i}").as_bytes())
            .unwrap();
    }
    Fixture {
        dir,
        store,
        decoy,
        doc,
        doc_file,
        doc_root,
        chunk,
        chunk_len,
        raw,
        raw_file,
        keep,
        other_store,
    }
}

/// What is put in place of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hostile {
    Fifo,
    LinkOutside,
    Device,
    Sparse4G,
}

impl Hostile {
    /// What the store's refusal says about it.
    fn said(self) -> &'static str {
        match self {
            Hostile::Fifo => "it is a FIFO, not a regular file",
            Hostile::LinkOutside => "it is a symbolic link",
            Hostile::Device => "it is a character device, not a regular file",
            Hostile::Sparse4G => "it has 4294967296 bytes, more than the",
        }
    }
}

/// Puts `what` in place of the blob file `path`.
fn plant(f: &Fixture, path: &Path, what: Hostile) {
    fs::remove_file(path).unwrap();
    let c = c_path(path);
    match what {
        Hostile::Fifo => {
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        }
        Hostile::LinkOutside => {
            std::os::unix::fs::symlink(f.decoy.join("chunk-sized"), path).unwrap();
        }
        Hostile::Device => {
            // The null device's twin: reads give zeros forever.
            let dev = libc::makedev(1, 5);
            // SAFETY: a valid C string.
            let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, dev) };
            assert_eq!(
                rc,
                0,
                "mknod (run as root on a filesystem without nodev): {}",
                std::io::Error::last_os_error()
            );
        }
        Hostile::Sparse4G => {
            File::create(path).unwrap().set_len(4 << 30).unwrap();
        }
    }
}

fn blob_path(f: &Fixture, r: &Ref) -> PathBuf {
    FileStore::open(&f.store).unwrap().blob_path(r)
}

/// The failure of `ran` names the refused file and says what it is.
fn assert_refused(ran: &Ran, what: &str, victim: &Ref, hostile: Hostile) {
    assert_ne!(ran.code, 0, "{what} must fail: {}", ran.text());
    let all = format!("{}{}", ran.out, ran.err);
    assert!(
        all.contains("refused") && all.contains(&victim.to_hex()) && all.contains(hostile.said()),
        "{what}: the message names the refused file and what it is: {}",
        ran.text()
    );
}

/// Every command on a store with `hostile` in place of `victim` (a blob `doc`
/// reaches: its root node, or a chunk): each finishes with a clear error (gc,
/// which reads no chunk, may also succeed and keep it), `put` of the same content
/// replaces the entry, and nothing outside the store changes.
fn hostile_blob(hostile: Hostile, victim_is_chunk: bool) {
    let f = fixture();
    let victim = if victim_is_chunk { f.chunk } else { f.doc_root };
    let path = blob_path(&f, &victim);
    plant(&f, &path, hostile);
    let before = snapshot(&f.decoy);
    let target_before = fs::symlink_metadata(f.decoy.join("chunk-sized")).unwrap();

    let get = run_str(&f.store, &["get", "doc"]);
    assert_refused(&get, "get doc", &victim, hostile);
    assert!(get.bytes.is_empty(), "get wrote no bytes: {}", get.text());
    let cat = run_str(&f.store, &["cat", &victim.to_hex(), "--raw"]);
    assert_refused(&cat, "cat --raw", &victim, hostile);
    assert!(cat.bytes.is_empty(), "cat wrote no bytes");

    let fsck = run_str(&f.store, &["fsck"]);
    assert_refused(&fsck, "fsck", &victim, hostile);
    assert!(
        fsck.out.contains(&format!("damaged {victim}")),
        "fsck lists it as damaged: {}",
        fsck.text()
    );

    let gc = run_str(&f.store, &["gc", "--grace", "0s"]);
    if victim_is_chunk {
        // gc reads no chunk: a reachable one is kept, whatever it is.
        assert_eq!(gc.code, 0, "gc: {}", gc.text());
        assert!(
            fs::symlink_metadata(&path).is_ok(),
            "gc kept the reachable entry"
        );
    } else {
        assert_refused(&gc, "gc", &victim, hostile);
        assert!(gc.err.contains("nothing was deleted"), "{}", gc.text());
    }

    let copy = f.dir.path().join("copy");
    let sync = run(&f.store, &[OsStr::new("sync"), copy.as_os_str()], None);
    assert_refused(&sync, "sync", &victim, hostile);

    for ran in [&get, &cat, &fsck, &gc, &sync] {
        assert!(
            ran.max_rss_kib < RSS_LIMIT_KIB,
            "bounded memory: {} KiB peak\n{}",
            ran.max_rss_kib,
            ran.text()
        );
    }

    // Putting the same content again writes the blob anew: the entry is replaced
    // (a link itself, not what it points to) and the store is whole again.
    let put = run(
        &f.store,
        &args(&["put", "doc-again", &f.doc_file.to_string_lossy()]),
        None,
    );
    assert_eq!(put.code, 0, "put: {}", put.text());
    assert_eq!(put.out.trim(), f.doc_root.to_hex());
    let m = fs::symlink_metadata(&path).unwrap();
    assert!(m.file_type().is_file(), "the entry is a regular file again");
    assert_eq!(m.len(), fs::read(&path).unwrap().len() as u64);
    let again = run_str(&f.store, &["get", "doc"]);
    assert_eq!(again.code, 0, "get after the put: {}", again.text());
    assert!(again.bytes == f.doc, "get after the put");
    let fsck = run_str(&f.store, &["fsck"]);
    assert_eq!(fsck.code, 0, "fsck after the put: {}", fsck.text());

    assert_eq!(
        snapshot(&f.decoy),
        before,
        "nothing outside the store changed"
    );
    let target_after = fs::symlink_metadata(f.decoy.join("chunk-sized")).unwrap();
    assert_eq!(
        (target_before.mtime(), target_before.mtime_nsec()),
        (target_after.mtime(), target_after.mtime_nsec()),
        "the link's target was not touched"
    );
}

#[test]
fn a_fifo_for_a_node_or_a_chunk_is_refused_without_blocking() {
    hostile_blob(Hostile::Fifo, false);
    hostile_blob(Hostile::Fifo, true);
}

#[test]
fn a_link_to_a_file_outside_is_never_followed() {
    hostile_blob(Hostile::LinkOutside, false);
    hostile_blob(Hostile::LinkOutside, true);
}

#[test]
fn a_device_node_is_refused_without_reading_it() {
    hostile_blob(Hostile::Device, false);
    hostile_blob(Hostile::Device, true);
}

#[test]
fn a_4_gib_sparse_file_is_refused_before_it_is_read() {
    hostile_blob(Hostile::Sparse4G, false);
    hostile_blob(Hostile::Sparse4G, true);
}

/// A raw blob (stored whole, so bounded only by the store-wide limit) as a 4 GiB
/// sparse file: refused unread.
#[test]
fn a_4_gib_sparse_file_for_a_raw_blob_is_refused_in_bounded_memory() {
    let f = fixture();
    let path = blob_path(&f, &f.raw);
    plant(&f, &path, Hostile::Sparse4G);
    for a in [
        &["get", "raw"][..],
        &["cat", &f.raw.to_hex(), "--raw"],
        &["fsck"],
    ] {
        let ran = run_str(&f.store, a);
        assert_refused(&ran, &format!("{a:?}"), &f.raw, Hostile::Sparse4G);
        assert!(
            ran.err.contains(&MAX_BLOB_SIZE.to_string())
                || ran.out.contains(&MAX_BLOB_SIZE.to_string()),
            "{a:?} names the limit: {}",
            ran.text()
        );
        assert!(
            ran.max_rss_kib < RSS_LIMIT_KIB,
            "{a:?}: {} KiB",
            ran.max_rss_kib
        );
    }
    // A put of the same bytes writes it again.
    let put = run(
        &f.store,
        &args(&["put", "raw-again", "--raw", &f.raw_file.to_string_lossy()]),
        None,
    );
    assert_eq!(put.code, 0, "{}", put.text());
    assert_eq!(fs::metadata(&path).unwrap().len(), 1000);
    assert_eq!(run_str(&f.store, &["fsck"]).code, 0);
}

/// A blob directory `blobs/XX` that is a link into another store: gc deletes
/// nothing there, put writes nothing there, get and cat read nothing from there.
#[test]
fn a_blob_directory_linked_into_another_store_is_never_entered() {
    let f = fixture();
    let other = FileStore::open(&f.other_store).unwrap();
    // Our directory for the chunk's prefix becomes a link to the other store's
    // directory of the same prefix (holding a blob of the other store's there).
    let hex = f.chunk.to_hex();
    let prefix = &hex[..2];
    let mut theirs = None;
    for i in 0..100_000u32 {
        let blob = format!("another store's blob {prefix} {i}");
        if Ref::of(blob.as_bytes()).to_hex().starts_with(prefix) {
            theirs = Some(other.put(blob.as_bytes()).unwrap().0);
            break;
        }
    }
    let theirs = theirs.expect("a blob of the other store under the prefix");
    let ours = f.store.join("blobs").join(prefix);
    fs::rename(&ours, f.dir.path().join("moved-aside")).unwrap();
    std::os::unix::fs::symlink(f.other_store.join("blobs").join(prefix), &ours).unwrap();
    let before = snapshot(&f.decoy);
    let said = "it is a symbolic link";
    let refused = |ran: &Ran, what: &str| {
        assert_ne!(ran.code, 0, "{what} must fail: {}", ran.text());
        let all = format!("{}{}", ran.out, ran.err);
        assert!(
            all.contains("refused")
                && all.contains(&ours.display().to_string())
                && all.contains(said),
            "{what} names the linked directory: {}",
            ran.text()
        );
    };

    let gc = run_str(&f.store, &["gc", "--grace", "0s"]);
    refused(&gc, "gc");
    let dry = run_str(&f.store, &["gc", "--grace", "0s", "--dry-run"]);
    refused(&dry, "gc --dry-run");
    refused(&run_str(&f.store, &["get", "doc"]), "get");
    let cat = run_str(&f.store, &["cat", &theirs.to_hex(), "--raw"]);
    refused(&cat, "cat of the other store's blob");
    assert!(cat.bytes.is_empty(), "no byte of the other store was read");
    refused(&run_str(&f.store, &["fsck"]), "fsck");
    let copy = f.dir.path().join("copy");
    refused(
        &run(&f.store, &[OsStr::new("sync"), copy.as_os_str()], None),
        "sync",
    );
    // A blob whose directory is the link is not written through it.
    let mut probe = None;
    for i in 0..100_000u32 {
        let blob = format!("probe {i}");
        if Ref::of(blob.as_bytes()).to_hex().starts_with(prefix) {
            probe = Some(blob);
            break;
        }
    }
    let probe_file = f.dir.path().join("probe");
    fs::write(&probe_file, probe.unwrap()).unwrap();
    let put = run(
        &f.store,
        &args(&["put", "probe", "--raw", &probe_file.to_string_lossy()]),
        None,
    );
    refused(&put, "put --raw");

    assert_eq!(snapshot(&f.decoy), before, "the other store is untouched");
    assert!(other.contains(&theirs).unwrap());
    // The library says the same, typed.
    let s = FileStore::open(&f.store).unwrap();
    match s.get(&theirs) {
        Err(StoreError::Refused {
            path,
            why: Refusal::Symlink,
        }) => assert_eq!(path, ours),
        other => panic!("get through the link: {other:?}"),
    }
}

/// The library, typed: each kind of entry in each place is its own refusal, and a
/// store whose `blobs` or `anchormapref` is a link is refused too.
#[test]
fn refusals_are_typed_and_name_the_path() {
    let f = fixture();
    let s = FileStore::open(&f.store).unwrap();
    let path = s.blob_path(&f.chunk);
    plant(&f, &path, Hostile::Fifo);
    let wrong = |e: StoreError| matches!(e, StoreError::Refused { ref path, why: Refusal::WrongType { found: "a FIFO", want: "a regular file" } } if path == &s.blob_path(&f.chunk));
    assert!(wrong(s.get(&f.chunk).unwrap_err()));
    assert!(wrong(s.check(&f.chunk).unwrap_err()));
    assert!(wrong(s.contains(&f.chunk).unwrap_err()));
    assert!(wrong(s.blob_len(&f.chunk).unwrap_err()));
    assert!(s.get(&f.chunk).unwrap_err().is_damage());

    // A chunk larger than its reader expects is refused unread.
    fs::remove_file(&path).unwrap();
    fs::write(&path, vec![1u8; f.chunk_len + 1]).unwrap();
    match s.get_at_most(&f.chunk, f.chunk_len as u64) {
        Err(StoreError::Refused {
            why: Refusal::TooLarge { size, max },
            ..
        }) => assert_eq!((size, max), (f.chunk_len as u64 + 1, f.chunk_len as u64)),
        other => panic!("{other:?}"),
    }
    // Read whole, it is damaged as any wrong bytes are.
    assert!(matches!(s.get(&f.chunk), Err(StoreError::Damaged(r)) if r == f.chunk));

    // A blob larger than the store holds is not written.
    let huge = vec![0u8; MAX_BLOB_SIZE as usize + 1];
    assert!(matches!(s.put(&huge), Err(StoreError::BlobTooLarge { .. })));
    drop(huge);

    // The map ref as a link or a FIFO.
    let map_ref = f.store.join("anchormapref");
    fs::rename(&map_ref, f.dir.path().join("map-ref-aside")).unwrap();
    std::os::unix::fs::symlink(f.decoy.join("precious"), &map_ref).unwrap();
    assert!(matches!(
        anchorfs::store::AnchorGetter::anchor_map_ref(&s),
        Err(StoreError::Refused {
            why: Refusal::Symlink,
            ..
        })
    ));
    fs::remove_file(&map_ref).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c_path(&map_ref).as_ptr(), 0o600) }, 0);
    assert!(matches!(
        anchorfs::store::AnchorGetter::anchor_map_ref(&s),
        Err(StoreError::Refused {
            why: Refusal::WrongType {
                found: "a FIFO",
                ..
            },
            ..
        })
    ));

    // A mid-level blob directory as a link.
    let hex = f.raw.to_hex();
    let mid = f.store.join("blobs").join(&hex[..2]).join(&hex[..4]);
    fs::rename(&mid, f.dir.path().join("mid-aside")).unwrap();
    std::os::unix::fs::symlink(f.dir.path().join("mid-aside"), &mid).unwrap();
    assert!(
        matches!(s.get(&f.raw), Err(StoreError::Refused { ref path, why: Refusal::Symlink }) if path == &mid)
    );
    assert!(
        matches!(s.put(&noise(1000, 11)), Err(StoreError::Refused { ref path, .. }) if path == &mid)
    );
    assert!(s.list_refs(&Ref::ZERO, &mut |_| Ok(true)).is_err());

    // `blobs` itself as a link.
    let blobs = f.store.join("blobs");
    fs::rename(&blobs, f.dir.path().join("blobs-aside")).unwrap();
    std::os::unix::fs::symlink(f.dir.path().join("blobs-aside"), &blobs).unwrap();
    assert!(matches!(
        FileStore::open(&f.store),
        Err(StoreError::Refused { ref path, why: Refusal::Symlink }) if path == &blobs
    ));
}

/// Every entry under `root` and its mode.
fn modes_under(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
        out.push((p, m.permissions().mode() & 0o7777, m.is_dir()));
    }
    out
}

/// Runs the command line under `umask 000`.
fn under_umask_000(store: &Path, a: &[&str]) -> Ran {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("run.sh");
    let quoted: Vec<String> = a.iter().map(|s| format!("'{s}'")).collect();
    fs::write(
        &script,
        format!(
            "umask 000\nexec '{}' --store '{}' {}\n",
            binary().display(),
            store.display(),
            quoted.join(" ")
        ),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg(&script)
        .env_remove("ANCHORFS_STORE")
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        bytes: out.stdout.clone(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        max_rss_kib: 0,
    }
}

#[test]
fn under_umask_000_no_store_file_or_directory_is_writable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::write(&data, noise(400_000, 3)).unwrap();
    let data = data.to_string_lossy().into_owned();
    // A store the command line creates (its directory and a missing parent too),
    // written by put, put --raw, sync (which creates the second store), and gc.
    let store = dir.path().join("new/store");
    let copy = dir.path().join("copy");
    for a in [
        vec!["put", "doc", data.as_str()],
        vec!["put", "blob", "--raw", data.as_str()],
        vec!["put", "doc", data.as_str(), "--at", "2030-01-01T00:00:00Z"],
        vec!["sync", &copy.to_string_lossy()],
        vec!["gc", "--grace", "0s"],
    ] {
        let ran = under_umask_000(&store, &a);
        assert_eq!(ran.code, 0, "{a:?}: {}", ran.text());
    }
    assert!(store.join("anchorfs-sizes").exists(), "the size log too");
    for root in [&store, &copy, &dir.path().join("new")] {
        for (p, mode, is_dir) in modes_under(root) {
            assert_eq!(mode & 0o022, 0, "{} is {mode:o}", p.display());
            let want = if is_dir { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{} is {mode:o}", p.display());
        }
    }

    // Beside a group-readable root, group-readable, still not writable.
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o750)).unwrap();
    let ran = under_umask_000(&shared, &["put", "doc", data.as_str()]);
    assert_eq!(ran.code, 0, "{}", ran.text());
    for (p, mode, is_dir) in modes_under(&shared) {
        if p == shared {
            continue;
        }
        let want = if is_dir { 0o750 } else { 0o640 };
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
    }
}

/// Reads `path` on a thread; the result, or a panic if it takes past [`LIMIT`].
fn read_bounded(path: PathBuf) -> std::io::Result<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    let shown = path.display().to_string();
    std::thread::spawn(move || {
        let res = File::open(&path).and_then(|mut f| {
            let mut out = Vec::new();
            f.read_to_end(&mut out).map(|_| out)
        });
        let _ = tx.send(res);
    });
    rx.recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("reading {shown} through the mount hangs"))
}

#[test]
fn a_mount_keeps_serving_other_anchors_while_one_has_a_fifo_for_a_blob() {
    if fuse_skipped() {
        return;
    }
    let f = fixture();
    let chunk_path = blob_path(&f, &f.chunk);
    plant(&f, &chunk_path, Hostile::Fifo);
    let raw_path = blob_path(&f, &f.raw);
    plant(&f, &raw_path, Hostile::Fifo);
    let m = Mounted::new(&f.store, "");
    for _ in 0..2 {
        assert_eq!(read_bounded(m.path("keep/latest")).unwrap(), f.keep);
        let e = read_bounded(m.path("doc/latest")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "doc: {e}");
        // Opening or reading the raw version: EIO either way, and no hang.
        let e = read_bounded(m.path("raw/latest")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "raw: {e}");
        let names: Vec<_> = fs::read_dir(m.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.iter().any(|n| n == "keep") && names.iter().any(|n| n == "doc"));
    }
}
