//! The cache directory's files: where a blob's copy lives, reading one back
//! (checked against its ref), writing one atomically, and scanning what is there.
//!
//! Layout under the cache directory `DIR`:
//!
//! - `DIR/blobs/ab/abcdef…`: the blob whose ref is `abcdef…` (64 lowercase hex
//!   digits), in a directory named by the first two. Its modification time is when
//!   it was last used, by any process.
//! - `DIR/whole/abcdef….12345678`: the whole content of a file whose content ref
//!   is `abcdef…`, followed by the 8 hex digits of its [`whole`](super::whole)
//!   checksum. Its modification time is when it was last used.
//! - `DIR/tmp/`: files being written, each renamed into `blobs/` or `whole/` once
//!   whole.
//!
//! Nothing here is ever an error for the caller of the cache: a file that cannot
//! be read, written or trusted is a miss. Owns no locks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::Entry;
use crate::blob::{Blob, Ref};
use crate::store::{verified, MAX_BLOB_SIZE};

/// Files in `tmp/` older than this are left over from a process that died while
/// writing them, and are removed when a cache is opened.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// One cached file found by [`Files::scan`].
pub(super) struct Found {
    /// What it holds, from the file's name.
    pub entry: Entry,
    /// The file's size (not yet checked against the ref).
    pub size: u64,
    /// When it was last used.
    pub used: SystemTime,
}

/// What reading a cached copy gave: `T` is the blob, or its length when it was
/// read into the caller's buffer.
pub(super) enum Lookup<T = Blob> {
    /// The blob, checked against its ref.
    Hit(T),
    /// No copy: none was there, or one whose bytes did not match its ref, which
    /// has been removed.
    Absent,
    /// A copy that was not read: larger than the caller allows, not a regular
    /// file, or failing to read.
    Unusable,
}

/// The paths of one cache directory.
pub(super) struct Files {
    dir: PathBuf,
    blobs: PathBuf,
    whole: PathBuf,
    tmp: PathBuf,
    /// Numbers this process's temp files.
    next_temp: AtomicU64,
}

impl Files {
    /// The cache in `dir`, made (mode 0700) if missing, with its two directories.
    pub fn open(dir: &Path) -> io::Result<Files> {
        let files = Files {
            dir: dir.to_path_buf(),
            blobs: dir.join("blobs"),
            whole: dir.join("whole"),
            tmp: dir.join("tmp"),
            next_temp: AtomicU64::new(0),
        };
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for d in [&files.dir, &files.blobs, &files.whole, &files.tmp] {
            b.create(d)?;
        }
        Ok(files)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `r`'s copy.
    pub fn path_of(&self, r: &Ref) -> PathBuf {
        let hex = r.to_hex();
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// Reads `r`'s copy if it has at most `max` bytes, and checks it; a damaged
    /// copy is removed. A good one is marked used now.
    pub fn read(&self, r: &Ref, max: u64) -> Lookup {
        let (mut file, size) = match self.open_copy(r, max) {
            Ok(f) => f,
            Err(miss) => return miss,
        };
        let mut data = Vec::with_capacity(size as usize);
        // One byte more than it should have shows a file that grew.
        if let Err(e) = (&mut file).take(size + 1).read_to_end(&mut data) {
            log::debug!("disk cache: reading {}: {e}", self.path_of(r).display());
            return Lookup::Unusable;
        }
        match verified(r, Blob::from(data)) {
            Ok(blob) => {
                self.mark_used(r, &file);
                Lookup::Hit(blob)
            }
            Err(_) => self.damaged(r),
        }
    }

    /// [`read`](Files::read) into the front of `out`, for a copy of at most
    /// `out.len()` bytes; the hit is the copy's length. No buffer is allocated.
    pub fn read_into(&self, r: &Ref, out: &mut [u8]) -> Lookup<usize> {
        let (file, size) = match self.open_copy(r, out.len() as u64) {
            Ok(f) => f,
            Err(miss) => return miss,
        };
        let n = size as usize;
        match crate::store::read_file_exactly(&file, &mut out[..n]) {
            Ok(true) => {}
            Ok(false) => return Lookup::Unusable,
            Err(e) => {
                log::debug!("disk cache: reading {}: {e}", self.path_of(r).display());
                return Lookup::Unusable;
            }
        }
        if Ref::of(&out[..n]) != *r {
            return self.damaged(r);
        }
        self.mark_used(r, &file);
        Lookup::Hit(n)
    }

    /// Opens `r`'s copy and gives its size, if it is a regular file of at most
    /// `max` bytes.
    fn open_copy<T>(&self, r: &Ref, max: u64) -> Result<(File, u64), Lookup<T>> {
        let path = self.path_of(r);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Lookup::Absent),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(self.not_a_copy(r)),
            Err(e) => {
                log::debug!("disk cache: opening {}: {e}", path.display());
                return Err(Lookup::Unusable);
            }
        };
        let size = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => return Err(self.not_a_copy(r)),
            Err(e) => {
                log::debug!("disk cache: looking at {}: {e}", path.display());
                return Err(Lookup::Unusable);
            }
        };
        if size > MAX_BLOB_SIZE {
            return Err(Lookup::Unusable);
        }
        if size > max {
            // Longer than the caller's blob can be: a damaged copy, unless it is
            // the blob after all (and the caller wrong), which only its hash says.
            return Err(match crate::store::hash_file(&file, size) {
                Ok((got, seen)) if got == *r && seen == size => Lookup::Unusable,
                Ok(_) => self.damaged(r),
                Err(e) => {
                    log::debug!("disk cache: reading {}: {e}", path.display());
                    Lookup::Unusable
                }
            });
        }
        Ok((file, size))
    }

    /// Marks a good copy used now: the use order other processes (and the next
    /// open) see; a copy written by another user may refuse it, which costs only
    /// order.
    fn mark_used(&self, r: &Ref, file: &File) {
        if let Err(e) = file.set_modified(SystemTime::now()) {
            log::debug!(
                "disk cache: marking {} used: {e}",
                self.path_of(r).display()
            );
        }
    }

    /// Removes `r`'s copy, whose bytes do not match its ref.
    fn damaged<T>(&self, r: &Ref) -> Lookup<T> {
        log::warn!(
            "disk cache: {} does not match its ref; removed, reading the store",
            self.path_of(r).display()
        );
        self.remove(r);
        Lookup::Absent
    }

    /// Removes what is at `r`'s path that is not a regular file (a link, a FIFO),
    /// so a copy can take its place; one that cannot be removed stays unusable.
    fn not_a_copy<T>(&self, r: &Ref) -> Lookup<T> {
        let path = self.path_of(r);
        log::warn!(
            "disk cache: {} is not a regular file; removing it",
            path.display()
        );
        match fs::remove_file(&path) {
            Ok(()) => Lookup::Absent,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Lookup::Absent,
            Err(e) => {
                log::debug!("disk cache: removing {}: {e}", path.display());
                Lookup::Unusable
            }
        }
    }

    /// A new path in `tmp/` for this process to write.
    pub fn temp_path(&self) -> PathBuf {
        let n = self.next_temp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}.{n}", std::process::id()))
    }

    /// The file that holds the whole copy of content `r` with checksum `sum`.
    pub fn whole_path(&self, r: &Ref, sum: u32) -> PathBuf {
        self.whole.join(format!("{}.{sum:08x}", r.to_hex()))
    }

    /// The path and checksum of content `r`'s whole copy, if one is there (by
    /// name: its bytes are not looked at).
    pub fn find_whole(&self, r: &Ref) -> Option<(PathBuf, u32)> {
        let prefix = format!("{}.", r.to_hex());
        let entries = match fs::read_dir(&self.whole) {
            Ok(e) => e,
            Err(e) => {
                log::debug!("disk cache: listing {}: {e}", self.whole.display());
                return None;
            }
        };
        entries.flatten().find_map(|entry| {
            let name = entry.file_name();
            let sum = name.to_str()?.strip_prefix(&prefix)?;
            let sum = u32::from_str_radix(sum, 16)
                .ok()
                .filter(|_| is_hex(sum, 8))?;
            Some((entry.path(), sum))
        })
    }

    /// Removes content `r`'s whole copies, if there are any.
    pub fn remove_whole(&self, r: &Ref) {
        while let Some((path, _)) = self.find_whole(r) {
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::debug!("disk cache: removing {}: {e}", path.display());
                    return;
                }
            }
        }
    }

    /// Writes `data` as `r`'s copy: a temp file renamed into place, so a reader
    /// sees the whole file or none. Returns whether the copy is there.
    pub fn write(&self, r: &Ref, data: &[u8]) -> bool {
        let temp = self.temp_path();
        let path = self.path_of(r);
        let res = write_new(&temp, data).and_then(|()| match fs::rename(&temp, &path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The blob's directory is made on first use (or was removed).
                if let Some(parent) = path.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)?;
                }
                fs::rename(&temp, &path)
            }
            res => res,
        });
        match res {
            Ok(()) => true,
            Err(e) => {
                log::debug!("disk cache: writing {}: {e}", path.display());
                let _ = fs::remove_file(&temp);
                false
            }
        }
    }

    /// Removes `r`'s copy, if there is one.
    pub fn remove(&self, r: &Ref) {
        let path = self.path_of(r);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                log::debug!("disk cache: removing {}: {e}", path.display());
            }
        }
    }

    /// Every copy in the cache, in no order; removes temp files left by processes
    /// that died while writing. Files whose names are not refs are not counted.
    pub fn scan(&self) -> io::Result<Vec<Found>> {
        let now = SystemTime::now();
        for entry in fs::read_dir(&self.tmp)?.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TEMP);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
        let mut found = Vec::new();
        for sub in fs::read_dir(&self.blobs)?.flatten() {
            let prefix = sub.file_name();
            let Some(prefix) = prefix.to_str().filter(|p| is_hex(p, 2)) else {
                continue;
            };
            let Ok(entries) = fs::read_dir(sub.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if !is_hex(name, 64) || !name.starts_with(prefix) {
                    continue;
                }
                let Ok(r) = Ref::from_hex(name) else { continue };
                // Not followed: a link or anything else than a file is not a copy.
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                found.push(Found {
                    entry: Entry::Blob(r),
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        for entry in fs::read_dir(&self.whole)?.flatten() {
            let name = entry.file_name();
            let Some((hex, sum)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            if !is_hex(hex, 64) || !is_hex(sum, 8) {
                continue;
            }
            let Ok(r) = Ref::from_hex(hex) else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                found.push(Found {
                    entry: Entry::Whole(r),
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(found)
    }
}

/// Whether `s` is `len` lowercase hex digits (the spelling of [`Ref::to_hex`]).
fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Writes `data` to a new file at `path`.
fn write_new(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(data)
}
