//! The file store: FORMAT.md's on-disk layout, shared with the Go file store.
//!
//! ```text
//! ROOT/blobs/HH/HHHH/HEX      one file per blob
//! ROOT/anchormapref           the current anchor map ref, 32 raw bytes
//! ROOT/anchormapref.lock      the writers' lock (O_CREAT|O_EXCL; stale after 60 s)
//! ```
//!
//! Crash safety: a blob is written to a hidden temp file in its own directory and
//! renamed into place, so no partial blob ever appears under a final name from a
//! completed rename, and a put that finds an existing file of the wrong length
//! rewrites it. An update writes the new anchor map ref to a temp file first; one
//! `syncfs` then makes it and every blob put so far durable (one flush per update
//! instead of one `fsync` per blob; an `fsync` of the temp file when no blob needs
//! one), and only then is it renamed into place and the directory fsynced. Readers,
//! which never take the lock, see either the old or the new ref.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use super::{verified, AnchorGetter, AnchorStore, DeletingStore, Getter, Store, StoreError};
use crate::blob::{Blob, Ref};

/// How old a lock file must be before it counts as abandoned.
pub const STALE_LOCK: Duration = Duration::from_secs(60);

/// How long a writer waits for a live lock before giving up.
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(150);

const MAP_REF_FILE: &str = "anchormapref";
const LOCK_FILE: &str = "anchormapref.lock";
const BLOBS_DIR: &str = "blobs";
const TEMP_PREFIX: &str = ".tmp-";

/// A store in a directory, in the Go file store's layout.
pub struct FileStore {
    root: PathBuf,
    blobs: PathBuf,
    /// Puts completed so far, counted once the blob is on disk (or found there).
    puts_done: AtomicU64,
    /// How many completed puts a finished flush is known to cover: a flush that
    /// read `puts_done` as N before its `syncfs` covers the first N to complete.
    puts_flushed: AtomicU64,
    /// Whether large blobs are written with `O_DIRECT`; cleared when the
    /// filesystem refuses it.
    direct: AtomicBool,
    /// One bit per `blobs/HH/HHHH` directory this store has seen exist, so a put
    /// into a known directory neither tries `mkdir` nor fails an `open` first.
    known_dirs: KnownDirs,
}

/// Blobs at least this large (the split writer's chunks) are written with
/// `O_DIRECT`: from a reused aligned buffer straight to the disk, instead of into
/// fresh page cache pages that a bulk write fills and nobody reads back soon. The
/// last partial block goes through the page cache.
const DIRECT_MIN: usize = 32 << 10;
/// What `O_DIRECT` needs buffers, offsets and lengths aligned to (the largest
/// logical block size in common use).
const DIRECT_ALIGN: usize = 4096;

thread_local! {
    /// Each thread's buffer for direct writes, over-allocated by `DIRECT_ALIGN` so
    /// an aligned run of it can be used.
    static DIRECT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes `blob` into the empty file `f`: the whole blocks with `O_DIRECT` from an
/// aligned copy, then the rest through the page cache. `EINVAL` means the
/// filesystem takes no direct I/O; nothing is written then.
fn write_direct(f: &File, blob: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let whole = blob.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    set_direct(f, true)?;
    DIRECT_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < whole + DIRECT_ALIGN {
            *buf = vec![0; whole + DIRECT_ALIGN];
        }
        let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
        let aligned = &mut buf[at..at + whole];
        aligned.copy_from_slice(&blob[..whole]);
        f.write_all_at(aligned, 0)
    })?;
    set_direct(f, false)?;
    f.write_all_at(&blob[whole..], whole as u64)
}

/// Turns `O_DIRECT` on or off for the open file `f`.
fn set_direct(f: &File, on: bool) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` holds open; only status flags change.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A bit per blob directory (`HHHH`: the first two bytes of a ref).
struct KnownDirs(Box<[AtomicU64]>);

impl KnownDirs {
    fn new() -> KnownDirs {
        KnownDirs((0..(1 << 16) / 64).map(|_| AtomicU64::new(0)).collect())
    }

    fn slot(r: &Ref) -> (usize, u64) {
        let n = usize::from(u16::from_be_bytes([r.0[0], r.0[1]]));
        (n / 64, 1 << (n % 64))
    }

    fn contains(&self, r: &Ref) -> bool {
        let (i, bit) = Self::slot(r);
        self.0[i].load(Ordering::Relaxed) & bit != 0
    }

    fn insert(&self, r: &Ref) {
        let (i, bit) = Self::slot(r);
        self.0[i].fetch_or(bit, Ordering::Relaxed);
    }
}

impl FileStore {
    /// Opens an existing store; fails with [`StoreError::NotAStore`] if `root` is
    /// not one.
    pub fn open(root: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let not_store = |why: &str| StoreError::NotAStore {
            path: root.clone(),
            why: why.to_string(),
        };
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(not_store("not a directory")),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(not_store("no such directory"))
            }
            Err(e) => {
                return Err(StoreError::io(
                    format!("opening store {}", root.display()),
                    e,
                ))
            }
        }
        if !Self::looks_like_store(&root) {
            return Err(not_store("it has no blobs/ directory and no anchormapref"));
        }
        let blobs = root.join(BLOBS_DIR);
        fs::create_dir_all(&blobs)
            .map_err(|e| StoreError::io(format!("creating {}", blobs.display()), e))?;
        Ok(FileStore {
            root,
            blobs,
            puts_done: AtomicU64::new(0),
            puts_flushed: AtomicU64::new(0),
            known_dirs: KnownDirs::new(),
            direct: AtomicBool::new(true),
        })
    }

    /// Opens the store at `root`, creating it (and the directory) if missing. An
    /// existing non-empty directory that is not a store is refused.
    pub fn create(root: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let root = root.as_ref();
        if let Ok(mut entries) = fs::read_dir(root) {
            if entries.next().is_some() && !Self::looks_like_store(root) {
                return Err(StoreError::NotAStore {
                    path: root.to_path_buf(),
                    why: "the directory is not empty and holds no store".into(),
                });
            }
        }
        let blobs = root.join(BLOBS_DIR);
        fs::create_dir_all(&blobs)
            .map_err(|e| StoreError::io(format!("creating store {}", root.display()), e))?;
        FileStore::open(root)
    }

    fn looks_like_store(root: &Path) -> bool {
        root.join(BLOBS_DIR).is_dir() || root.join(MAP_REF_FILE).is_file()
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds (or would hold) the blob `r`.
    pub fn blob_path(&self, r: &Ref) -> PathBuf {
        let h = r.to_hex();
        self.blobs.join(&h[..2]).join(&h[..4]).join(h)
    }

    fn map_ref_path(&self) -> PathBuf {
        self.root.join(MAP_REF_FILE)
    }

    fn read_map_ref(&self) -> Result<Option<Ref>, StoreError> {
        let path = self.map_ref_path();
        match fs::read(&path) {
            Ok(b) => match Ref::from_slice(&b) {
                Ok(r) => Ok(Some(r)),
                Err(_) => Err(StoreError::BadAnchorMapRef { path, len: b.len() }),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// A temp file beside the map ref holding `r`, not yet flushed.
    fn stage_map_ref(&self, r: &Ref) -> Result<tempfile::NamedTempFile, StoreError> {
        let mut tmp = temp_file_in(&self.root).map_err(|e| self.map_ref_err(e))?;
        tmp.as_file_mut()
            .write_all(r.as_bytes())
            .map_err(|e| self.map_ref_err(e))?;
        Ok(tmp)
    }

    fn map_ref_err(&self, e: io::Error) -> StoreError {
        StoreError::io(format!("writing {}", self.map_ref_path().display()), e)
    }

    /// Makes every blob whose put has returned durable; returns whether it flushed
    /// the filesystem (not when an earlier flush already covered them all). Correct
    /// with puts and flushes on many threads: a put counts only once its blob is
    /// written, and a flush counts only the puts it saw before its `syncfs` began.
    fn flush_blobs(&self) -> Result<bool, StoreError> {
        let done = self.puts_done.load(Ordering::Acquire);
        if self.puts_flushed.load(Ordering::Acquire) >= done {
            return Ok(false);
        }
        syncfs(&self.root)
            .map_err(|e| StoreError::io(format!("flushing store {}", self.root.display()), e))?;
        self.puts_flushed.fetch_max(done, Ordering::AcqRel);
        Ok(true)
    }

    /// Writes `blob` to a new temp file in `dir`; with `direct`, around the page
    /// cache (see [`DIRECT_MIN`]) unless the filesystem refuses, which turns direct
    /// writes off for this store.
    fn write_temp(
        &self,
        dir: &Path,
        blob: &[u8],
        direct: bool,
    ) -> io::Result<tempfile::NamedTempFile> {
        let mut tmp = temp_file_in(dir)?;
        if direct {
            match write_direct(tmp.as_file(), blob) {
                Ok(()) => return Ok(tmp),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    log::debug!("store {}: no direct I/O ({e})", self.root.display());
                    self.direct.store(false, Ordering::Relaxed);
                    set_direct(tmp.as_file(), false)?;
                    tmp.as_file().set_len(0)?;
                }
                Err(e) => return Err(e),
            }
        }
        // Through the plain file, so errors keep their errno (ENOSPC, EIO, ...).
        tmp.as_file_mut().write_all(blob)?;
        Ok(tmp)
    }

    /// Takes the writers' lock, waiting with backoff while a live writer holds it
    /// and taking over a lock older than [`STALE_LOCK`].
    fn lock(&self) -> Result<LockGuard, StoreError> {
        let path = self.root.join(LOCK_FILE);
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path)
            {
                Ok(_) => return Ok(LockGuard { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(format!("taking lock {}", path.display()), e)),
            }
            if lock_is_stale(&path) {
                take_over_stale_lock(&path);
                continue;
            }
            if start.elapsed() > LOCK_WAIT_LIMIT {
                return Err(StoreError::LockTimeout {
                    path,
                    secs: LOCK_WAIT_LIMIT.as_secs(),
                });
            }
            let jitter = rand::thread_rng().gen_range(0..=pause.as_micros() as u64);
            std::thread::sleep(pause + Duration::from_micros(jitter));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

/// The held writers' lock; released (deleted) on drop.
struct LockGuard {
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            log::error!("releasing lock {}: {e}", self.path.display());
        }
    }
}

fn lock_is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_LOCK)
}

/// Moves an abandoned lock aside. If, between our look and the move, a live writer
/// had replaced it, the fresh lock is put back.
fn take_over_stale_lock(path: &Path) {
    let aside = path.with_extension(format!("stale-{:016x}", rand::random::<u64>()));
    if fs::rename(path, &aside).is_err() {
        return; // someone else moved or released it; just retry
    }
    if lock_is_stale(&aside) {
        log::warn!("took over abandoned lock {}", path.display());
    } else {
        // Not ours to take: restore it unless a new lock already exists.
        let _ = fs::hard_link(&aside, path);
    }
    let _ = fs::remove_file(&aside);
}

fn temp_file_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
}

/// Marks an existing blob as written now, so a writer that puts content matching an
/// old unreachable blob is covered by gc's grace period. Best effort: a store whose
/// files this process may not touch (read-only, another owner) is left alone.
fn touch(path: &Path) {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: a valid C string; null times mean "now".
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0) };
    if rc != 0 {
        log::debug!(
            "touching {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }
}

/// Makes the blob directory `dir` (`blobs/HH/HHHH`) and its parent if missing;
/// returns whether `dir` was made by this call.
fn make_blob_dir(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent)?;
            }
            match fs::create_dir(dir) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn syncfs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: syncfs takes a valid open file descriptor, which `f` holds.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The names in `dir` that pass `keep`, sorted; an absent directory is empty.
fn sorted_names(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<String>, StoreError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(format!("listing {}", dir.display()), e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
        if let Ok(name) = entry.file_name().into_string() {
            if keep(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Getter for FileStore {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        let path = self.blob_path(r);
        match fs::read(&path) {
            Ok(data) => verified(r, Blob::from(data)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NotFound(*r)),
            Err(e) => Err(StoreError::io(format!("reading blob {r}"), e)),
        }
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        match fs::metadata(self.blob_path(r)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(format!("looking up blob {r}"), e)),
        }
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let after_hex = after.to_hex();
        for top in sorted_names(&self.blobs, |n| is_lower_hex(n, 2))? {
            if top.as_str() < &after_hex[..2] {
                continue;
            }
            let top_dir = self.blobs.join(&top);
            for mid in sorted_names(&top_dir, |n| is_lower_hex(n, 4) && n.starts_with(&top))? {
                if mid.as_str() < &after_hex[..4] {
                    continue;
                }
                let mid_dir = top_dir.join(&mid);
                for name in sorted_names(&mid_dir, |n| is_lower_hex(n, 64) && n.starts_with(&mid))?
                {
                    if name <= after_hex {
                        continue;
                    }
                    let r = Ref::from_hex(&name).map_err(|_| {
                        StoreError::io(
                            format!("listing {}", mid_dir.display()),
                            io::Error::new(ErrorKind::InvalidData, "bad blob name"),
                        )
                    })?;
                    if !f(r)? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

impl Store for FileStore {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        let r = Ref::of(blob);
        let path = self.blob_path(&r);
        let ctx = |e| StoreError::io(format!("writing blob {r}"), e);
        let dir = path.parent().unwrap_or(&self.blobs);
        // A directory this put has just made holds no blob yet: no need to look.
        let made_dir = !self.known_dirs.contains(&r)
            && match make_blob_dir(dir) {
                Ok(made) => {
                    self.known_dirs.insert(&r);
                    made
                }
                // Not ours to make (a read-only store, say): a blob already there
                // is still found below, and writing one fails with the cause.
                Err(e) => {
                    log::debug!("making {}: {e}", dir.display());
                    false
                }
            };
        if !made_dir {
            match fs::metadata(&path) {
                Ok(m) if m.len() == blob.len() as u64 => {
                    touch(&path);
                    // Counted even so: another writer may have put it without
                    // flushing yet, and the next update must not reach it unflushed.
                    self.puts_done.fetch_add(1, Ordering::Release);
                    return Ok((r, false));
                }
                Ok(m) => log::warn!(
                    "blob {r} on disk has {} bytes, want {}: rewriting it",
                    m.len(),
                    blob.len()
                ),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("looking up blob {r}"), e)),
            }
        }
        let direct = blob.len() >= DIRECT_MIN && self.direct.load(Ordering::Relaxed);
        let tmp = match self.write_temp(dir, blob, direct) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // The directory went away since we saw it (removed by hand).
                make_blob_dir(dir).map_err(ctx)?;
                self.write_temp(dir, blob, direct)
            }
            res => res,
        }
        .map_err(ctx)?;
        tmp.persist(&path).map_err(|e| ctx(e.error))?;
        self.puts_done.fetch_add(1, Ordering::Release);
        Ok((r, true))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.flush_blobs().map(|_| ())
    }
}

impl AnchorGetter for FileStore {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        self.read_map_ref()?.ok_or(StoreError::NoAnchorMap)
    }
}

impl AnchorStore for FileStore {
    fn update_anchor_map(
        &self,
        f: &mut dyn FnMut(Ref) -> Result<Ref, StoreError>,
    ) -> Result<Ref, StoreError> {
        let old = self.read_map_ref()?;
        let base = old.unwrap_or(Ref::ZERO);
        let new = f(base)?;
        if new == base {
            return Ok(new);
        }
        // The new ref waits in a temp file; one flush makes it and the blobs it
        // reaches durable before the rename installs it.
        let staged = self.stage_map_ref(&new)?;
        if !self.flush_blobs()? {
            staged
                .as_file()
                .sync_all()
                .map_err(|e| self.map_ref_err(e))?;
        }
        let _lock = self.lock()?;
        if self.read_map_ref()? != old {
            return Err(StoreError::UpdateConflict);
        }
        staged
            .persist(self.map_ref_path())
            .map_err(|e| self.map_ref_err(e.error))?;
        sync_dir(&self.root).map_err(|e| self.map_ref_err(e))?;
        Ok(new)
    }
}

impl DeletingStore for FileStore {
    fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
        match fs::remove_file(self.blob_path(r)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(format!("deleting blob {r}"), e)),
        }
    }

    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
        match fs::metadata(self.blob_path(r)).and_then(|m| m.modified()) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NotFound(*r)),
            Err(e) => Err(StoreError::io(format!("looking up blob {r}"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flush contract the commits rely on: every returned put (a blob written
    /// or found) is covered by the next flush, and a flush with nothing new to
    /// cover does not flush the filesystem again.
    #[test]
    fn a_flush_covers_every_returned_put_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::create(dir.path().join("s")).unwrap();
        assert!(!store.flush_blobs().unwrap(), "nothing put yet");
        store.put(b"one").unwrap();
        assert!(store.flush_blobs().unwrap());
        assert!(!store.flush_blobs().unwrap(), "already covered");
        // A blob found already there counts too: its writer may not have flushed.
        assert!(!store.put(b"one").unwrap().1, "found, not new");
        assert!(store.flush_blobs().unwrap());
        let big = vec![5u8; 100_000];
        store.put(&big).unwrap();
        store.put(b"two").unwrap();
        assert!(store.flush_blobs().unwrap());
        assert!(!store.flush_blobs().unwrap());
    }
}
