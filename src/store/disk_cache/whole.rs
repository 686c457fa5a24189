//! Whole copies: the whole content of a large file (a version, a ref read as a
//! file) kept by the disk cache as one local file, so that the kernel can serve
//! reads of it from that file without asking the daemon (FUSE passthrough, see
//! `fs::passthrough`).
//!
//! A whole copy is made only from bytes a read through the mount returned, each
//! already checked against its chunk's ref: reads of a large file offer their
//! bytes ([`WholeCopies::offer`]), which are written at their offset in a temp
//! file; once every byte of the file has been offered, the temp file gets its
//! checksum and is renamed into `whole/` (see `files`). Copies are not synced: a
//! lost one is a miss, a torn one fails its check.
//!
//! A read the kernel serves from a local file cannot be checked by the daemon as
//! it happens, so a whole copy is checked when it is opened: its size, and a
//! CRC-32 of each 16 MiB segment (on as many threads as there are cores), combined
//! into the checksum its name carries. That finds a copy cut short, torn by a
//! crash or damaged at rest; one that fails is removed, and the file is read
//! through the daemon as before. A copy this process checked or wrote is not
//! checked again while its inode and change time stay the same. The blob copies'
//! SHA-256 on every read is the stronger check; the CRC is against damage, not
//! against someone able to write the cache directory, who as the daemon's user
//! could as well change what the daemon serves.
//!
//! Copies count against the cache's bound like blob copies, in one order of use:
//! a new whole copy pushes out the oldest copies, which may be the file's own blob
//! copies when the bound is tight. Files of [`WHOLE_MIN`] bytes up to half the
//! bound get one: a copy filling the bound would be pushed out by the next blob
//! read. While a copy is being made its bytes are not counted (they are the bytes
//! just read, which their blob copies count). A cache uses the copies its index
//! counts: those found when it was opened and those it made since (a copy that
//! another mount sharing the directory makes is used from this mount's next start).
//!
//! Locks, each held briefly and never across file I/O: `building` (the copies
//! being made), then a copy's `progress` (taken inside `building` only to find the
//! one offered to longest ago); `checked`; and the cache's index, taken alone.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;

use super::behind::Behind;
use super::{Copies, Entry};
use crate::blob::Ref;

/// Files smaller than this get no whole copy: the kernel's page cache and the
/// daemon serve them as fast.
pub const WHOLE_MIN: u64 = 4 << 20;

/// The bytes of one checksummed segment.
const SEGMENT: u64 = 16 << 20;

/// The most copies being made at once; a new one drops the one offered bytes
/// longest ago (a file read in part, never to be finished).
const BUILDING_MAX: usize = 4;

/// A copy being made whose bytes fall in more separate ranges than this is
/// dropped: its file is being read at random, not from start to end (a read from
/// start to end leaves only as many gaps as it has requests in flight).
const RANGES_MAX: usize = 64;

/// Only bytes this near the start begin a copy: a read from the start, whose
/// first requests may be answered in any order.
const BEGIN_WITHIN: u64 = 16 << 20;

/// The whole copies of one disk cache (see the [module docs](self)).
pub struct WholeCopies {
    copies: Arc<Copies>,
    /// The cache's thread writing blob copies, if it has one.
    behind: Option<Weak<Behind>>,
    building: Mutex<HashMap<Ref, Arc<Building>>>,
    checked: Mutex<HashMap<Ref, Seal>>,
}

/// A whole copy being made: a temp file of the content's size.
struct Building {
    file: File,
    temp: PathBuf,
    size: u64,
    progress: Mutex<Progress>,
}

/// What a copy being made has been given.
struct Progress {
    /// Byte ranges written, start to end, none touching another.
    have: BTreeMap<u64, u64>,
    /// When bytes were last offered.
    last: Instant,
    /// Set by the one offer that completed it.
    done: bool,
}

/// What identifies a copy that was checked: its file, change time, size and
/// checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seal {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    size: u64,
    sum: u32,
}

impl Seal {
    fn of(meta: &Metadata, sum: u32) -> Seal {
        Seal {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            size: meta.len(),
            sum,
        }
    }
}

impl Progress {
    /// Records bytes `start..end` as written.
    fn add(&mut self, mut start: u64, mut end: u64) {
        // Merge with every range that overlaps or touches this one.
        let touching: Vec<u64> = self
            .have
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, _)| s)
            .collect();
        for s in touching {
            if let Some(e) = self.have.remove(&s) {
                start = start.min(s);
                end = end.max(e);
            }
        }
        self.have.insert(start, end);
    }

    /// Whether every byte of `0..size` is written.
    fn covers(&self, size: u64) -> bool {
        self.have.get(&0) == Some(&size)
    }
}

impl Drop for Building {
    fn drop(&mut self) {
        // Gone already once the copy was renamed into place.
        if let Err(e) = fs::remove_file(&self.temp) {
            if e.kind() != io::ErrorKind::NotFound {
                log::debug!("disk cache: removing {}: {e}", self.temp.display());
            }
        }
    }
}

/// Whether a file of `size` bytes gets a whole copy in a cache bounded by `limit`.
fn fits(size: u64, limit: u64) -> bool {
    size >= WHOLE_MIN && size <= limit / 2
}

impl WholeCopies {
    pub(super) fn new(copies: Arc<Copies>, behind: Option<Weak<Behind>>) -> WholeCopies {
        WholeCopies {
            copies,
            behind,
            building: Mutex::new(HashMap::new()),
            checked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a file of `size` bytes gets a whole copy.
    pub fn wants(&self, size: u64) -> bool {
        fits(size, self.copies.index.lock().limit)
    }

    /// Whether content `r` of `size` bytes gets a whole copy and has none yet.
    fn wants_more(&self, r: &Ref, size: u64) -> bool {
        let index = self.copies.index.lock();
        fits(size, index.limit) && !index.entries.contains(&Entry::Whole(*r))
    }

    /// Takes `bytes`, read (and checked) at `offset` of content `r` of `size`
    /// bytes, into `r`'s whole copy; the offer that gives its last missing bytes
    /// puts the copy in place. A copy is begun only by bytes near the start
    /// ([`BEGIN_WITHIN`]: a read from the start), and dropped when the offers show
    /// the file read at random ([`RANGES_MAX`]). Failing to write only means no
    /// copy.
    pub fn offer(&self, r: &Ref, size: u64, offset: u64, bytes: &[u8]) {
        let end = offset.saturating_add(bytes.len() as u64);
        if bytes.is_empty() || end > size || !self.wants_more(r, size) {
            return;
        }
        let Some(b) = self.builder(r, size, offset < BEGIN_WITHIN) else {
            return;
        };
        if let Err(e) = b.file.write_all_at(bytes, offset) {
            log::debug!("disk cache: writing {}: {e}", b.temp.display());
            self.drop_builder(r, &b);
            return;
        }
        let (complete, random) = {
            let mut p = b.progress.lock();
            p.last = Instant::now();
            p.add(offset, end);
            let complete = p.covers(size) && !p.done;
            p.done |= complete;
            (complete, p.have.len() > RANGES_MAX)
        };
        if random {
            self.drop_builder(r, &b);
        } else if complete {
            self.drop_builder(r, &b);
            self.seal(r, &b);
        }
    }

    /// The copy of `r` being made, or a new one if `begin`; `None` if one of
    /// another size is being made (the caller's size is wrong) or no temp file can
    /// be made.
    fn builder(&self, r: &Ref, size: u64, begin: bool) -> Option<Arc<Building>> {
        if let Some(b) = self.building.lock().get(r) {
            return (b.size == size).then(|| b.clone());
        }
        if !begin {
            return None;
        }
        let temp = self.copies.files.temp_path();
        let made = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp);
        let file = match made {
            Ok(f) => f,
            Err(e) => {
                log::debug!("disk cache: making {}: {e}", temp.display());
                return None;
            }
        };
        let new = Arc::new(Building {
            file,
            temp,
            size,
            progress: Mutex::new(Progress {
                have: BTreeMap::new(),
                last: Instant::now(),
                done: false,
            }),
        });
        if let Err(e) = new.file.set_len(size) {
            log::debug!("disk cache: sizing {}: {e}", new.temp.display());
            return None;
        }
        let mut building = self.building.lock();
        if let Some(b) = building.get(r) {
            return (b.size == size).then(|| b.clone());
        }
        if building.len() >= BUILDING_MAX {
            let oldest = building
                .iter()
                .min_by_key(|(_, b)| b.progress.lock().last)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                building.remove(&k);
            }
        }
        building.insert(*r, new.clone());
        Some(new)
    }

    /// Forgets `b` as the copy of `r` being made (its file goes with its last
    /// user).
    fn drop_builder(&self, r: &Ref, b: &Arc<Building>) {
        let mut building = self.building.lock();
        if building.get(r).is_some_and(|x| Arc::ptr_eq(x, b)) {
            building.remove(r);
        }
    }

    /// Puts the complete copy `b` of `r` in place under its checksum.
    fn seal(&self, r: &Ref, b: &Building) {
        let sum = match checksum(&b.file, b.size) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("disk cache: reading {}: {e}", b.temp.display());
                return;
            }
        };
        let path = self.copies.files.whole_path(r, sum);
        if let Err(e) = fs::rename(&b.temp, &path) {
            log::debug!("disk cache: putting {} in place: {e}", path.display());
            return;
        }
        // The blob copies of the same reads are written first, so the whole copy
        // is the newest in the order of use: when the bound cannot hold both, the
        // blob copies go, not it (here, and by modification time at the next open).
        if let Some(behind) = self.behind.as_ref().and_then(Weak::upgrade) {
            behind.settle();
        }
        if let Err(e) = b.file.set_modified(SystemTime::now()) {
            log::debug!("disk cache: marking {} used: {e}", path.display());
        }
        if let Ok(meta) = b.file.metadata() {
            self.checked.lock().insert(*r, Seal::of(&meta, sum));
        }
        let victims = self.copies.index.lock().used(Entry::Whole(*r), b.size);
        self.copies.remove_copies(&victims);
    }

    /// Opens content `r`'s whole copy of `size` bytes, checked as the module docs
    /// say; `None` if there is none or it fails (then it is removed). Only copies
    /// the cache's index counts are looked for (those found when it was opened and
    /// those made since), so an open of a file with none reads no directory.
    pub fn open(&self, r: &Ref, size: u64) -> Option<File> {
        let indexed = self.copies.index.lock().entries.contains(&Entry::Whole(*r));
        if size < WHOLE_MIN || !indexed {
            return None;
        }
        let (path, sum, file) = self.open_file(r)?;
        let meta = file.metadata().ok()?;
        let fits = meta.is_file() && meta.len() == size;
        let known = fits && self.checked.lock().get(r) == Some(&Seal::of(&meta, sum));
        if !known {
            let good = fits
                && match checksum(&file, size) {
                    Ok(got) => got == sum,
                    Err(e) => {
                        log::debug!("disk cache: reading {}: {e}", path.display());
                        return None;
                    }
                };
            if !good {
                log::warn!(
                    "disk cache: {} does not match its checksum; removed",
                    path.display()
                );
                self.checked.lock().remove(r);
                self.copies.index.lock().forget(&Entry::Whole(*r));
                if let Err(e) = fs::remove_file(&path) {
                    log::debug!("disk cache: removing {}: {e}", path.display());
                }
                return None;
            }
        }
        // Marked used (the order other processes and the next open see), then
        // sealed as it now is: marking it changed its change time.
        if let Err(e) = file.set_modified(SystemTime::now()) {
            log::debug!("disk cache: marking {} used: {e}", path.display());
        }
        if let Ok(meta) = file.metadata() {
            self.checked.lock().insert(*r, Seal::of(&meta, sum));
        }
        let victims = self.copies.index.lock().used(Entry::Whole(*r), size);
        self.copies.remove_copies(&victims);
        Some(file)
    }
}

impl WholeCopies {
    /// Opens content `r`'s whole copy, unchecked: at the name this process last
    /// knew it by, else at the one the directory holds.
    fn open_file(&self, r: &Ref) -> Option<(PathBuf, u32, File)> {
        let open = |path: &PathBuf| {
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
        };
        let known = self.checked.lock().get(r).map(|s| s.sum);
        if let Some(sum) = known {
            let path = self.copies.files.whole_path(r, sum);
            match open(&path) {
                Ok(f) => return Some((path, sum, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    log::debug!("disk cache: opening {}: {e}", path.display());
                    return None;
                }
            }
        }
        let (path, sum) = self.copies.files.find_whole(r)?;
        match open(&path) {
            Ok(f) => Some((path, sum, f)),
            Err(e) => {
                log::debug!("disk cache: opening {}: {e}", path.display());
                None
            }
        }
    }
}

/// The checksum of the first `size` bytes of `file`: the CRC-32 of its size and
/// of the CRC-32 of each [`SEGMENT`], the segments read on up to one thread per
/// core.
pub(super) fn checksum(file: &File, size: u64) -> io::Result<u32> {
    let segments = size.div_ceil(SEGMENT).max(1);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get() as u64)
        .clamp(1, 8)
        .min(segments);
    let mut sums = vec![0u32; segments as usize];
    std::thread::scope(|s| -> io::Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> io::Result<Vec<(u64, u32)>> {
                    // Small enough to stay in the core's cache between the copy
                    // and the CRC.
                    let mut buf = vec![0u8; 256 << 10];
                    let mut out = Vec::new();
                    let mut seg = t;
                    while seg < segments {
                        let (start, end) = (seg * SEGMENT, ((seg + 1) * SEGMENT).min(size));
                        let mut h = crc32fast::Hasher::new();
                        let mut at = start;
                        while at < end {
                            let n = (end - at).min(buf.len() as u64) as usize;
                            file.read_exact_at(&mut buf[..n], at)?;
                            h.update(&buf[..n]);
                            at += n as u64;
                        }
                        out.push((seg, h.finalize()));
                        seg += threads;
                    }
                    Ok(out)
                })
            })
            .collect();
        for w in workers {
            let done = w
                .join()
                .map_err(|_| io::Error::other("a checksum thread panicked"))??;
            for (seg, sum) in done {
                sums[seg as usize] = sum;
            }
        }
        Ok(())
    })?;
    let mut h = crc32fast::Hasher::new();
    h.update(&size.to_le_bytes());
    for sum in sums {
        h.update(&sum.to_le_bytes());
    }
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_merges_ranges_in_any_order() {
        let mut p = Progress {
            have: BTreeMap::new(),
            last: Instant::now(),
            done: false,
        };
        p.add(10, 20);
        p.add(30, 40);
        assert!(!p.covers(40));
        p.add(0, 5);
        p.add(5, 10);
        assert!(!p.covers(40), "20..30 missing");
        p.add(15, 35);
        assert!(p.covers(40));
        assert_eq!(p.have.len(), 1);
        p.add(0, 40);
        assert!(p.covers(40));
        assert!(!p.covers(41));
    }
}
