//! The file store: the directory layout shared with the Go file store
//! (docs/FORMAT.md, "The file store").
//!
//! ```text
//! ROOT/blobs/HH/HHHH/HEX      one file per blob
//! ROOT/anchormapref           the current anchor map ref, 32 raw bytes
//! ROOT/anchormapref.lock      the writers' lock (O_CREAT|O_EXCL; stale after 60 s)
//! ROOT/anchorfs-settings      ours: the store's settings (absent: Go's)
//! ```
//!
//! The settings record ([`super::settings`]) is written once, under the writers'
//! lock and only if there is none: to a temp file, fsynced, renamed into place,
//! and the directory fsynced. Go never reads it.
//!
//! Crash safety: a blob is written to a hidden temp file in its own directory and
//! renamed into place, so no partial blob ever appears under a final name from a
//! completed rename, and a put that finds an existing file of the wrong length
//! rewrites it. An update writes the new anchor map ref to a temp file first; one
//! `syncfs` then makes it and every blob put so far durable (one flush per update
//! instead of one `fsync` per blob; an `fsync` of the temp file when no blob needs
//! one), and only then is it renamed into place and the directory fsynced. Readers,
//! which never take the lock, see either the old or the new ref.

//!
//! The store never leaves its directory. It holds its root and `blobs/` open and
//! reaches every other file one name at a time relative to those descriptors,
//! never following a symbolic link (`O_NOFOLLOW`), opening without blocking
//! (`O_NONBLOCK`), and looking at what it opened (`fstat`) before reading: a
//! symbolic link, FIFO, device or directory where a blob or a blob directory
//! belongs, and a blob file larger than [`MAX_BLOB_SIZE`] (or than its reader
//! expects), are refused with [`StoreError::Refused`] naming the path, never
//! followed, read, written or touched. A put that finds such an entry (other than a
//! directory) in place of its blob writes the blob again, and the rename replaces
//! the entry, not what a link points to.
//!
//! Files the store creates are `0600` and directories `0700`, or `0640` and `0750`
//! when the store's root directory is group-readable, whatever the umask.
//!
//! Its spec for [`super::open`] is a directory, `DIR` or `file:DIR`.
//!
//! Locks: none in memory (counters are atomics); between writers, the lock file,
//! taken only for the compare-and-swap of the map ref.

use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use super::read_ahead::ReadAhead;
use super::sys::{self, c_name, Kind};
use super::{
    settings, verified, AnchorGetter, AnchorStore, Capacity, DeletingStore, Getter, OpenMode,
    Opened, Refusal, Store, StoreError, StoreSettings, MAX_BLOB_SIZE,
};
use crate::blob::{Blob, Ref};

/// How old a lock file must be before it counts as abandoned.
pub const STALE_LOCK: Duration = Duration::from_secs(60);

/// How long a writer waits for a live lock before giving up.
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(150);

const MAP_REF_FILE: &str = "anchormapref";
const LOCK_FILE: &str = "anchormapref.lock";
/// The store's settings record: ours, beside Go's files.
pub const SETTINGS_FILE: &str = "anchorfs-settings";
const BLOBS_DIR: &str = "blobs";
const TEMP_PREFIX: &str = ".tmp-";

/// The opener of `DIR` and `file:DIR` for [`super::open`]: the store in `DIR`,
/// created there with [`OpenMode::Create`] if there is none.
pub(super) fn open_spec(dir: &std::ffi::OsStr, mode: OpenMode) -> Result<Opened, StoreError> {
    if dir.is_empty() {
        return Err(StoreError::BadSpec {
            spec: String::new(),
            why: "the store path is empty".into(),
        });
    }
    let (store, created) = match mode {
        OpenMode::Existing => (FileStore::open(dir)?, false),
        OpenMode::Create => FileStore::open_or_create(dir)?,
    };
    Ok(Opened {
        label: Path::new(dir).display().to_string(),
        store: std::sync::Arc::new(store),
        created,
        fresh: created,
    })
}

/// A store in a directory, in the Go file store's layout.
pub struct FileStore {
    root: PathBuf,
    /// `root` made absolute, links resolved, when it was opened: what
    /// [`Getter::local_dir`] and [`Getter::identity`] give.
    local: PathBuf,
    blobs: PathBuf,
    /// The root directory, held open: every store file is reached from here.
    root_fd: OwnedFd,
    /// `blobs/`, held open.
    blobs_fd: OwnedFd,
    /// The modes of the files and directories this store creates.
    modes: Modes,
    /// Puts completed so far, counted once the blob is on disk (or found there).
    puts_done: AtomicU64,
    /// How many completed puts a finished flush is known to cover: a flush that
    /// read `puts_done` as N before its `syncfs` covers the first N to complete.
    puts_flushed: AtomicU64,
    /// Whether large blobs are written with `O_DIRECT`; cleared when the
    /// filesystem refuses it.
    direct: AtomicBool,
    /// One bit per `blobs/HH/HHHH` directory this store has seen exist, so a put
    /// into a known directory does not try `mkdir` first.
    known_dirs: KnownDirs,
    /// Reads blob files into the page cache ahead of a sequential reader.
    read_ahead: ReadAhead,
}

/// The modes a store creates its files and directories with.
#[derive(Clone, Copy, Debug)]
struct Modes {
    file: u32,
    dir: u32,
}

impl Modes {
    /// Private to the owner, or group-readable when the root (of mode
    /// `root_mode`) is; never writable by anyone else.
    fn for_root(root_mode: u32) -> Modes {
        if root_mode & 0o040 != 0 {
            Modes {
                file: 0o640,
                dir: 0o750,
            }
        } else {
            Modes {
                file: 0o600,
                dir: 0o700,
            }
        }
    }
}

/// The mode of a file created in the store whose root is `root`: `0600`, or
/// `0640` when the root is group-readable (for files kept beside the store, like
/// the mount's size log).
pub fn file_mode_in(root: &Path) -> u32 {
    fs::metadata(root).map_or(0o600, |m| Modes::for_root(m.permissions().mode()).file)
}

/// Blobs at least this large (the split writer's chunks) are written with
/// `O_DIRECT`: from a reused aligned buffer straight to the disk, instead of into
/// fresh page cache pages that a bulk write fills and nobody reads back soon. The
/// last partial block goes through the page cache.
const DIRECT_MIN: usize = 32 << 10;
/// What `O_DIRECT` needs buffers, offsets and lengths aligned to (the largest
/// logical block size in common use).
const DIRECT_ALIGN: usize = 4096;

/// The most bytes copied into the aligned buffer at a time: a chunk larger than
/// this is written in pieces, so each thread's buffer stays this small.
const DIRECT_PIECE: usize = 256 << 10;

thread_local! {
    /// Each thread's buffer for direct writes (`DIRECT_PIECE` bytes, over-allocated
    /// by `DIRECT_ALIGN` so an aligned run of it can be used).
    static DIRECT_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes `blob` into the empty file `f`: the whole blocks with `O_DIRECT` from an
/// aligned copy, piece by piece, then the rest through the page cache. `EINVAL`
/// means the filesystem takes no direct I/O; nothing is written then.
fn write_direct(f: &File, blob: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let whole = blob.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    sys::set_direct(f, true)?;
    DIRECT_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let piece = whole.min(DIRECT_PIECE);
        if buf.len() < piece + DIRECT_ALIGN {
            *buf = vec![0; piece + DIRECT_ALIGN];
        }
        let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
        let mut done = 0;
        while done < whole {
            let n = (whole - done).min(DIRECT_PIECE);
            let aligned = &mut buf[at..at + n];
            aligned.copy_from_slice(&blob[done..done + n]);
            f.write_all_at(aligned, done as u64)?;
            done += n;
        }
        Ok::<(), io::Error>(())
    })?;
    sys::set_direct(f, false)?;
    f.write_all_at(&blob[whole..], whole as u64)
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

/// What an entry of a kind other than the one that belongs there is refused as.
fn refusal_for(kind: Kind, want: Kind) -> Refusal {
    if kind == Kind::Symlink {
        Refusal::Symlink
    } else {
        Refusal::WrongType {
            found: kind.phrase(),
            want: want.phrase(),
        }
    }
}

/// Why opening `name` in `dir` as a `want` failed with `e`, if the cause is what is
/// there (a link `O_NOFOLLOW` refused, a FIFO or socket, a file in place of a
/// directory) rather than the filesystem.
fn refusal_after(dir: BorrowedFd<'_>, name: &CStr, e: &io::Error, want: Kind) -> Option<Refusal> {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Some(Refusal::Symlink);
    }
    match sys::stat_at(dir, name) {
        Ok(st) if st.kind != want => Some(refusal_for(st.kind, want)),
        _ => None,
    }
}

/// The error for a failed open of `name` (at `path`) in `dir` as a `want`.
fn open_error(
    dir: BorrowedFd<'_>,
    name: &CStr,
    e: io::Error,
    want: Kind,
    path: PathBuf,
    op: &str,
) -> StoreError {
    match refusal_after(dir, name, &e, want) {
        Some(why) => StoreError::Refused { path, why },
        None => StoreError::io(format!("{op} {}", path.display()), e),
    }
}

/// A temp file in a directory the store holds open, removed unless persisted.
struct TempFile<'a> {
    dir: BorrowedFd<'a>,
    name: CString,
    file: File,
    kept: bool,
}

impl<'a> TempFile<'a> {
    /// A new temp file in `dir`, of mode `mode`.
    fn new_in(dir: BorrowedFd<'a>, mode: u32) -> io::Result<TempFile<'a>> {
        let mut tries = 0;
        loop {
            let name = c_name(&format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
            match sys::create_new(dir, &name, mode) {
                Ok(file) => {
                    return Ok(TempFile {
                        dir,
                        name,
                        file,
                        kept: false,
                    })
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists && tries < 8 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Renames the file to `to` in the same directory, replacing what is there (a
    /// symbolic link itself, not what it points to).
    fn persist(mut self, to: &CStr) -> io::Result<()> {
        sys::rename_at(self.dir, &self.name, to)?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = sys::unlink_at(self.dir, &self.name);
        }
    }
}

impl FileStore {
    /// Opens an existing store; fails with [`StoreError::NotAStore`] if `root` is
    /// not one, and with [`StoreError::Refused`] if its `blobs` is not a directory
    /// of its own (a symbolic link, say).
    pub fn open(root: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let not_store = |why: &str| StoreError::NotAStore {
            path: root.clone(),
            why: why.to_string(),
        };
        let root_fd = match sys::open_dir_path(&root) {
            Ok(fd) => fd,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(not_store("no such directory"))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(not_store("not a directory"))
            }
            Err(e) => {
                return Err(StoreError::io(
                    format!("opening store {}", root.display()),
                    e,
                ))
            }
        };
        let blobs = root.join(BLOBS_DIR);
        let blobs_name = c_name(BLOBS_DIR);
        let has_blobs = match sys::stat_at(root_fd.as_fd(), &blobs_name) {
            Ok(st) if st.kind == Kind::Dir => true,
            Ok(st) => {
                return Err(StoreError::Refused {
                    path: blobs,
                    why: refusal_for(st.kind, Kind::Dir),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io(format!("looking up {}", blobs.display()), e)),
        };
        let root_stat = sys::fstat(root_fd.as_fd())
            .map_err(|e| StoreError::io(format!("opening store {}", root.display()), e))?;
        let modes = Modes::for_root(root_stat.mode);
        if !has_blobs {
            if sys::stat_at(root_fd.as_fd(), &c_name(MAP_REF_FILE)).is_err() {
                return Err(not_store("it has no blobs/ directory and no anchormapref"));
            }
            match sys::mkdir_at(root_fd.as_fd(), &blobs_name, modes.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(format!("creating {}", blobs.display()), e)),
            }
        }
        let blobs_fd = sys::open_dir(root_fd.as_fd(), &blobs_name).map_err(|e| {
            open_error(
                root_fd.as_fd(),
                &blobs_name,
                e,
                Kind::Dir,
                blobs.clone(),
                "opening",
            )
        })?;
        let local = fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
        let read_ahead = ReadAhead::new(match blobs_fd.try_clone() {
            Ok(fd) => Arc::new(move |r: &Ref| read_ahead_blob(fd.as_fd(), r)),
            // No second descriptor: hints are dropped.
            Err(_) => Arc::new(|_: &Ref| {}),
        });
        Ok(FileStore {
            root,
            local,
            blobs,
            root_fd,
            blobs_fd,
            modes,
            puts_done: AtomicU64::new(0),
            puts_flushed: AtomicU64::new(0),
            known_dirs: KnownDirs::new(),
            direct: AtomicBool::new(true),
            read_ahead,
        })
    }

    /// Opens the store at `root`, creating it if missing (the directory, and any
    /// missing parent, of mode `0700`). An existing non-empty directory that is not
    /// a store is refused.
    pub fn create(root: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let root = root.as_ref();
        let create_err = |e| StoreError::io(format!("creating store {}", root.display()), e);
        match fs::read_dir(root) {
            Ok(mut entries) => {
                if entries.next().is_some() && !Self::looks_like_store(root) {
                    return Err(StoreError::NotAStore {
                        path: root.to_path_buf(),
                        why: "the directory is not empty and holds no store".into(),
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(create_err)?,
            Err(_) => {} // opening it says what is wrong
        }
        if !Self::looks_like_store(root) {
            let root_fd = sys::open_dir_path(root).map_err(create_err)?;
            let modes = Modes::for_root(sys::fstat(root_fd.as_fd()).map_err(create_err)?.mode);
            match sys::mkdir_at(root_fd.as_fd(), &c_name(BLOBS_DIR), modes.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(create_err(e)),
            }
        }
        FileStore::open(root)
    }

    /// Opens the store at `root`, or creates one where there is none (`root` missing,
    /// or an empty directory), as [`FileStore::create`] does; the flag says whether it
    /// was created. Anything else that is not a store (a regular file, a directory
    /// with other things in it) is [`StoreError::NotAStore`], and nothing is made.
    pub fn open_or_create(root: impl AsRef<Path>) -> Result<(FileStore, bool), StoreError> {
        let root = root.as_ref();
        match FileStore::open(root) {
            Ok(s) => Ok((s, false)),
            Err(e @ StoreError::NotAStore { .. }) => match fs::metadata(root) {
                Ok(m) if !m.is_dir() => Err(e),
                _ => FileStore::create(root).map(|s| (s, true)),
            },
            Err(e) => Err(e),
        }
    }

    /// Whether `root` has a `blobs` or an `anchormapref` entry, of any kind (what
    /// kind is checked by [`FileStore::open`]).
    fn looks_like_store(root: &Path) -> bool {
        fs::symlink_metadata(root.join(BLOBS_DIR)).is_ok()
            || fs::symlink_metadata(root.join(MAP_REF_FILE)).is_ok()
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

    /// The size of blob `r` as stored, without reading it: [`StoreError::NotFound`]
    /// if absent, [`StoreError::Refused`] if its file is not a regular file.
    pub fn blob_len(&self, r: &Ref) -> Result<u64, StoreError> {
        Ok(self.blob_stat(r)?.len)
    }

    fn blob_stat(&self, r: &Ref) -> Result<sys::Stat, StoreError> {
        let hex = r.to_hex();
        let dir = self.blob_dir(&hex)?.ok_or(StoreError::NotFound(*r))?;
        match sys::stat_at(dir.as_fd(), &c_name(&hex)) {
            Ok(st) if st.kind == Kind::File => Ok(st),
            Ok(st) => Err(StoreError::Refused {
                path: self.blob_path(r),
                why: refusal_for(st.kind, Kind::File),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NotFound(*r)),
            Err(e) => Err(StoreError::io(format!("looking up blob {r}"), e)),
        }
    }

    fn map_ref_path(&self) -> PathBuf {
        self.root.join(MAP_REF_FILE)
    }

    /// Opens the directory `name` (at `path`) in `dir`, not following a link;
    /// `None` if it does not exist.
    fn open_sub(
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: impl FnOnce() -> PathBuf,
    ) -> Result<Option<OwnedFd>, StoreError> {
        match sys::open_dir(dir, name) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(open_error(dir, name, e, Kind::Dir, path(), "opening")),
        }
    }

    /// The blob directory `blobs/HH/HHHH` of the ref whose hex form is `hex`, open;
    /// `None` if it does not exist.
    fn blob_dir(&self, hex: &str) -> Result<Option<OwnedFd>, StoreError> {
        let top_path = || self.blobs.join(&hex[..2]);
        let Some(top) = Self::open_sub(self.blobs_fd.as_fd(), &c_name(&hex[..2]), top_path)? else {
            return Ok(None);
        };
        Self::open_sub(top.as_fd(), &c_name(&hex[..4]), || {
            top_path().join(&hex[..4])
        })
    }

    /// Opens the directory `name` (at `path`) in `dir`, making it first unless it
    /// is `known` to exist; returns it and whether this call made it. A directory
    /// that cannot be made (a read-only store) is still opened if it is there.
    fn sub_dir_for_put(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        mut known: bool,
        path: impl Fn() -> PathBuf,
    ) -> Result<(OwnedFd, bool), StoreError> {
        loop {
            let mut made = false;
            let mut mkdir_err = None;
            if !known {
                match sys::mkdir_at(dir, name, self.modes.dir) {
                    Ok(()) => made = true,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        log::debug!("making {}: {e}", path().display());
                        mkdir_err = Some(e);
                    }
                }
            }
            match sys::open_dir(dir, name) {
                Ok(fd) => return Ok((fd, made)),
                // Removed by hand since we saw it: make it again.
                Err(e) if e.kind() == ErrorKind::NotFound && known => known = false,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let e = mkdir_err.unwrap_or(e);
                    return Err(StoreError::io(format!("making {}", path().display()), e));
                }
                Err(e) => return Err(open_error(dir, name, e, Kind::Dir, path(), "opening")),
            }
        }
    }

    /// The blob directory of `r` (hex form `hex`), made if missing; and whether
    /// this call made it.
    fn blob_dir_for_put(
        &self,
        r: &Ref,
        hex: &str,
        known: bool,
    ) -> Result<(OwnedFd, bool), StoreError> {
        let top_path = || self.blobs.join(&hex[..2]);
        let (top, _) =
            self.sub_dir_for_put(self.blobs_fd.as_fd(), &c_name(&hex[..2]), known, top_path)?;
        let got = self.sub_dir_for_put(top.as_fd(), &c_name(&hex[..4]), known, || {
            top_path().join(&hex[..4])
        })?;
        self.known_dirs.insert(r);
        Ok(got)
    }

    /// The blob file of `r`, open for reading, and its size: a regular file of at
    /// most `max` bytes, else refused before a byte of it is read.
    fn open_blob(&self, r: &Ref, max: u64) -> Result<(File, u64), StoreError> {
        let hex = r.to_hex();
        let dir = self.blob_dir(&hex)?.ok_or(StoreError::NotFound(*r))?;
        let name = c_name(&hex);
        let f = match sys::open_read(dir.as_fd(), &name) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::NotFound(*r)),
            Err(e) => {
                return Err(match refusal_after(dir.as_fd(), &name, &e, Kind::File) {
                    Some(why) => StoreError::Refused {
                        path: self.blob_path(r),
                        why,
                    },
                    None => StoreError::io(format!("reading blob {r}"), e),
                })
            }
        };
        let st =
            sys::fstat(f.as_fd()).map_err(|e| StoreError::io(format!("reading blob {r}"), e))?;
        let why = if st.kind != Kind::File {
            refusal_for(st.kind, Kind::File)
        } else if st.len > max {
            Refusal::TooLarge { size: st.len, max }
        } else {
            return Ok((f, st.len));
        };
        Err(StoreError::Refused {
            path: self.blob_path(r),
            why,
        })
    }

    /// Reads blob `r`, refused unread if its file has more than `max` bytes.
    fn read_blob(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        let (f, len) = self.open_blob(r, max.min(MAX_BLOB_SIZE))?;
        // `len` is at most MAX_BLOB_SIZE, which fits any usize we build for.
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        (&f).take(len + 1)
            .read_to_end(&mut data)
            .map_err(|e| StoreError::io(format!("reading blob {r}"), e))?;
        if data.len() as u64 != len {
            return Err(StoreError::Refused {
                path: self.blob_path(r),
                why: Refusal::Changed,
            });
        }
        verified(r, Blob::from(data))
    }

    /// [`read_blob`](Self::read_blob) into the front of `out`, refused unread if
    /// its file has more than `out.len()` bytes; returns its length.
    fn read_blob_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        let (f, len) = self.open_blob(r, (out.len() as u64).min(MAX_BLOB_SIZE))?;
        // At most `out.len()`, so it fits a usize.
        let n = len as usize;
        let whole = crate::store::read_file_exactly(&f, &mut out[..n])
            .map_err(|e| StoreError::io(format!("reading blob {r}"), e))?;
        if !whole {
            return Err(StoreError::Refused {
                path: self.blob_path(r),
                why: Refusal::Changed,
            });
        }
        crate::store::verified_slice(r, &out[..n])?;
        Ok(n)
    }

    /// Up to `take` bytes of the store's own file `file` (beside `blobs/`) and its
    /// size, or `None` if it is missing; anything but a regular file is refused
    /// unread, and so is one larger than `max`, if given.
    fn read_own_file(
        &self,
        file: &str,
        max: Option<u64>,
        take: u64,
    ) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let path = self.root.join(file);
        let name = c_name(file);
        let read_err = |e| StoreError::io(format!("reading {}", path.display()), e);
        let f = match sys::open_read(self.root_fd.as_fd(), &name) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                let dir = self.root_fd.as_fd();
                return Err(open_error(dir, &name, e, Kind::File, path, "reading"));
            }
        };
        let st = sys::fstat(f.as_fd()).map_err(read_err)?;
        let why = match max {
            _ if st.kind != Kind::File => Some(refusal_for(st.kind, Kind::File)),
            Some(max) if st.len > max => Some(Refusal::TooLarge { size: st.len, max }),
            _ => None,
        };
        if let Some(why) = why {
            return Err(StoreError::Refused { path, why });
        }
        let mut b = Vec::new();
        (&f).take(take).read_to_end(&mut b).map_err(read_err)?;
        Ok(Some((b, st.len)))
    }

    fn read_map_ref(&self) -> Result<Option<Ref>, StoreError> {
        // One byte more than a ref, to tell a longer file.
        let Some((b, len)) = self.read_own_file(MAP_REF_FILE, None, 33)? else {
            return Ok(None);
        };
        match Ref::from_slice(&b) {
            Ok(r) => Ok(Some(r)),
            Err(_) => Err(StoreError::BadAnchorMapRef {
                path: self.map_ref_path(),
                len: usize::try_from(len).unwrap_or(usize::MAX),
            }),
        }
    }

    fn settings_path(&self) -> PathBuf {
        self.root.join(SETTINGS_FILE)
    }

    /// The settings record, if there is one: a regular file of at most
    /// [`settings::MAX_RECORD`] bytes that decodes, else refused or an error.
    fn read_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        let max = settings::MAX_RECORD as u64;
        let Some((b, _)) = self.read_own_file(SETTINGS_FILE, Some(max), max + 1)? else {
            return Ok(None);
        };
        StoreSettings::decode(&b)
            .map(Some)
            .map_err(|source| StoreError::BadSettings {
                store: self.settings_path().display().to_string(),
                source,
            })
    }

    /// A temp file beside the map ref holding `r`, not yet flushed.
    fn stage_map_ref(&self, r: &Ref) -> Result<TempFile<'_>, StoreError> {
        let mut tmp = TempFile::new_in(self.root_fd.as_fd(), self.modes.file)
            .map_err(|e| self.map_ref_err(e))?;
        tmp.file
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
        sys::syncfs(self.root_fd.as_fd())
            .map_err(|e| StoreError::io(format!("flushing store {}", self.root.display()), e))?;
        self.puts_flushed.fetch_max(done, Ordering::AcqRel);
        Ok(true)
    }

    /// Writes `blob` to a new temp file in `dir`; with `direct`, around the page
    /// cache (see [`DIRECT_MIN`]) unless the filesystem refuses, which turns direct
    /// writes off for this store.
    fn write_temp<'a>(
        &self,
        dir: BorrowedFd<'a>,
        blob: &[u8],
        direct: bool,
    ) -> io::Result<TempFile<'a>> {
        let mut tmp = TempFile::new_in(dir, self.modes.file)?;
        if direct {
            match write_direct(&tmp.file, blob) {
                Ok(()) => return Ok(tmp),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    log::debug!("store {}: no direct I/O ({e})", self.root.display());
                    self.direct.store(false, Ordering::Relaxed);
                    sys::set_direct(&tmp.file, false)?;
                    tmp.file.set_len(0)?;
                }
                Err(e) => return Err(e),
            }
        }
        // Through the plain file, so errors keep their errno (ENOSPC, EIO, ...).
        tmp.file.write_all(blob)?;
        Ok(tmp)
    }

    /// Takes the writers' lock, waiting with backoff while a live writer holds it
    /// and taking over a lock older than [`STALE_LOCK`].
    fn lock(&self) -> Result<LockGuard<'_>, StoreError> {
        let path = self.root.join(LOCK_FILE);
        let dir = self.root_fd.as_fd();
        let name = c_name(LOCK_FILE);
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            match sys::create_new(dir, &name, self.modes.file) {
                Ok(_) => return Ok(LockGuard { dir, name, path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io(format!("taking lock {}", path.display()), e)),
            }
            if lock_is_stale(dir, &name) {
                take_over_stale_lock(dir, &path);
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
struct LockGuard<'a> {
    dir: BorrowedFd<'a>,
    name: CString,
    path: PathBuf,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = sys::unlink_at(self.dir, &self.name) {
            log::error!("releasing lock {}: {e}", self.path.display());
        }
    }
}

/// Whether the entry `name` in `dir` was last written more than [`STALE_LOCK`] ago
/// (a link's own time: nothing is followed).
fn lock_is_stale(dir: BorrowedFd<'_>, name: &CStr) -> bool {
    sys::stat_at(dir, name)
        .ok()
        .and_then(|st| SystemTime::now().duration_since(st.mtime).ok())
        .is_some_and(|age| age > STALE_LOCK)
}

/// Moves an abandoned lock aside. If, between our look and the move, a live writer
/// had replaced it, the fresh lock is put back.
fn take_over_stale_lock(dir: BorrowedFd<'_>, path: &Path) {
    let lock = c_name(LOCK_FILE);
    let aside = c_name(&format!(
        "{MAP_REF_FILE}.stale-{:016x}",
        rand::random::<u64>()
    ));
    if sys::rename_at(dir, &lock, &aside).is_err() {
        return; // someone else moved or released it; just retry
    }
    if lock_is_stale(dir, &aside) {
        log::warn!("took over abandoned lock {}", path.display());
    } else {
        // Not ours to take: restore it unless a new lock already exists.
        let _ = sys::link_at(dir, &aside, &lock);
    }
    let _ = sys::unlink_at(dir, &aside);
}

/// Starts reading blob `r`'s file in `blobs` into the page cache; a blob that is
/// missing or not a plain file is left alone (its read reports it).
fn read_ahead_blob(blobs: BorrowedFd<'_>, r: &Ref) {
    let hex = r.to_hex();
    let Ok(top) = sys::open_dir(blobs, &c_name(&hex[..2])) else {
        return;
    };
    let Ok(dir) = sys::open_dir(top.as_fd(), &c_name(&hex[..4])) else {
        return;
    };
    let Ok(f) = sys::open_read(dir.as_fd(), &c_name(&hex)) else {
        return;
    };
    if matches!(sys::fstat(f.as_fd()), Ok(st) if st.kind == Kind::File && st.len <= MAX_BLOB_SIZE) {
        let _ = sys::will_need(&f);
    }
}

/// The names in the directory `dir` (at `path`) that pass `keep`, sorted.
fn sorted_names(
    dir: BorrowedFd<'_>,
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, StoreError> {
    let all =
        sys::list_dir(dir).map_err(|e| StoreError::io(format!("listing {}", path.display()), e))?;
    let mut names: Vec<String> = all
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| keep(n))
        .collect();
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
        self.read_blob(r, MAX_BLOB_SIZE)
    }

    fn get_at_most(&self, r: &Ref, max: u64) -> Result<Blob, StoreError> {
        self.read_blob(r, max)
    }

    fn get_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        self.read_blob_into(r, out)
    }

    fn check(&self, r: &Ref) -> Result<u64, StoreError> {
        let (f, len) = self.open_blob(r, MAX_BLOB_SIZE)?;
        let (got, seen) = crate::store::hash_file(&f, len)
            .map_err(|e| StoreError::io(format!("reading blob {r}"), e))?;
        if seen != len {
            return Err(StoreError::Refused {
                path: self.blob_path(r),
                why: Refusal::Changed,
            });
        }
        if got != *r {
            log::error!("blob {r} is damaged: content does not match its ref");
            return Err(StoreError::Damaged(*r));
        }
        Ok(len)
    }

    fn contains(&self, r: &Ref) -> Result<bool, StoreError> {
        match self.blob_stat(r) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        self.blob_len(r)
    }

    fn prefetch(&self, refs: &[Ref]) {
        self.read_ahead.hint(refs);
    }

    fn reads_ahead(&self) -> bool {
        true
    }

    fn identity(&self) -> Option<String> {
        Some(format!("file:{}", self.local.display()))
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.local)
    }

    fn recorded_settings(&self) -> Result<Option<StoreSettings>, StoreError> {
        self.read_settings()
    }

    fn capacity(&self) -> Option<Capacity> {
        let v = sys::fstatvfs(self.root_fd.as_fd())
            .inspect_err(|e| log::debug!("statvfs of store {}: {e}", self.root.display()))
            .ok()?;
        Some(Capacity {
            blocks: v.f_blocks,
            bfree: v.f_bfree,
            bavail: v.f_bavail,
            files: v.f_files,
            ffree: v.f_ffree,
            bsize: u32::try_from(v.f_bsize).unwrap_or(u32::MAX),
            frsize: u32::try_from(v.f_frsize).unwrap_or(u32::MAX),
        })
    }

    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let after_hex = after.to_hex();
        let blobs = self.blobs_fd.as_fd();
        for top in sorted_names(blobs, &self.blobs, |n| is_lower_hex(n, 2))? {
            if top.as_str() < &after_hex[..2] {
                continue;
            }
            let top_path = self.blobs.join(&top);
            let Some(top_dir) = Self::open_sub(blobs, &c_name(&top), || top_path.clone())? else {
                continue; // removed since it was listed
            };
            let mids = sorted_names(top_dir.as_fd(), &top_path, |n| {
                is_lower_hex(n, 4) && n.starts_with(&top)
            })?;
            for mid in mids {
                if mid.as_str() < &after_hex[..4] {
                    continue;
                }
                let mid_path = top_path.join(&mid);
                let Some(mid_dir) =
                    Self::open_sub(top_dir.as_fd(), &c_name(&mid), || mid_path.clone())?
                else {
                    continue;
                };
                let names = sorted_names(mid_dir.as_fd(), &mid_path, |n| {
                    is_lower_hex(n, 64) && n.starts_with(&mid)
                })?;
                for name in names {
                    if name <= after_hex {
                        continue;
                    }
                    let r = Ref::from_hex(&name).map_err(|_| {
                        StoreError::io(
                            format!("listing {}", mid_path.display()),
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
        if blob.len() as u64 > MAX_BLOB_SIZE {
            return Err(StoreError::BlobTooLarge {
                size: blob.len() as u64,
                max: MAX_BLOB_SIZE,
            });
        }
        let r = Ref::of(blob);
        let hex = r.to_hex();
        let name = c_name(&hex);
        let ctx = |e| StoreError::io(format!("writing blob {r}"), e);
        // A directory this put has just made holds no blob yet: no need to look.
        let (dir, made_dir) = self.blob_dir_for_put(&r, &hex, self.known_dirs.contains(&r))?;
        if !made_dir {
            match sys::stat_at(dir.as_fd(), &name) {
                Ok(st) if st.kind == Kind::File && st.len == blob.len() as u64 => {
                    // Marks it as written now, so a writer that puts content
                    // matching an old unreachable blob is covered by gc's grace
                    // period. Best effort: a store whose files this process may
                    // not touch (read-only, another owner) is left alone.
                    if let Err(e) = sys::touch_at(dir.as_fd(), &name) {
                        log::debug!("touching {}: {e}", self.blob_path(&r).display());
                    }
                    // Counted even so: another writer may have put it without
                    // flushing yet, and the next update must not reach it unflushed.
                    self.puts_done.fetch_add(1, Ordering::Release);
                    return Ok((r, false));
                }
                Ok(st) if st.kind == Kind::File => log::warn!(
                    "blob {r} on disk has {} bytes, want {}: rewriting it",
                    st.len,
                    blob.len()
                ),
                Ok(st) if st.kind == Kind::Dir => {
                    return Err(StoreError::Refused {
                        path: self.blob_path(&r),
                        why: refusal_for(st.kind, Kind::File),
                    })
                }
                Ok(st) => log::warn!(
                    "blob {r}: {} is {}, not a regular file: replacing it",
                    self.blob_path(&r).display(),
                    st.kind.phrase()
                ),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("looking up blob {r}"), e)),
            }
        }
        let direct = blob.len() >= DIRECT_MIN && self.direct.load(Ordering::Relaxed);
        match self.write_temp(dir.as_fd(), blob, direct) {
            Ok(tmp) => tmp.persist(&name).map_err(ctx)?,
            // The directory went away since we opened it (removed by hand).
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let (dir, _) = self.blob_dir_for_put(&r, &hex, false)?;
                let tmp = self.write_temp(dir.as_fd(), blob, direct).map_err(ctx)?;
                tmp.persist(&name).map_err(ctx)?;
            }
            Err(e) => return Err(ctx(e)),
        }
        self.puts_done.fetch_add(1, Ordering::Release);
        Ok((r, true))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.flush_blobs().map(|_| ())
    }

    fn record_settings(&self, settings: &StoreSettings) -> Result<StoreSettings, StoreError> {
        if let Some(found) = self.read_settings()? {
            return Ok(found);
        }
        let path = self.settings_path();
        let write_err = |e| StoreError::io(format!("writing {}", path.display()), e);
        let mut tmp = TempFile::new_in(self.root_fd.as_fd(), self.modes.file).map_err(write_err)?;
        tmp.file
            .write_all(settings.encode().as_bytes())
            .map_err(write_err)?;
        tmp.file.sync_all().map_err(write_err)?;
        // Under the writers' lock, so two first writers agree on one record.
        let _lock = self.lock()?;
        if let Some(found) = self.read_settings()? {
            return Ok(found);
        }
        tmp.persist(&c_name(SETTINGS_FILE)).map_err(write_err)?;
        sys::fsync(self.root_fd.as_fd()).map_err(write_err)?;
        Ok(*settings)
    }
}

impl AnchorGetter for FileStore {
    fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
        self.read_map_ref()?.ok_or(StoreError::NoAnchorMap)
    }
}

impl AnchorStore for FileStore {
    fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
        // The new ref waits in a temp file; one flush makes it and the blobs it
        // reaches durable before the rename installs it. The flush is done before
        // the lock is taken, so writers do not wait on each other's flushes.
        let staged = self.stage_map_ref(&new)?;
        if !self.flush_blobs()? {
            staged.file.sync_all().map_err(|e| self.map_ref_err(e))?;
        }
        let _lock = self.lock()?;
        if self.read_map_ref()? != old {
            return Err(StoreError::Conflict);
        }
        staged
            .persist(&c_name(MAP_REF_FILE))
            .map_err(|e| self.map_ref_err(e))?;
        sys::fsync(self.root_fd.as_fd()).map_err(|e| self.map_ref_err(e))?;
        Ok(())
    }
}

impl DeletingStore for FileStore {
    fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
        let hex = r.to_hex();
        let Some(dir) = self.blob_dir(&hex)? else {
            return Ok(false);
        };
        match sys::unlink_at(dir.as_fd(), &c_name(&hex)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(format!("deleting blob {r}"), e)),
        }
    }

    fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
        Ok(self.blob_stat(r)?.mtime)
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
