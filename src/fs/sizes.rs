//! The size log: a file beside the store that remembers the size of each content a
//! mount has seen, so a fresh mount answers `ls -l` without reading one blob per
//! version.
//!
//! The log is a cache, never an authority. It holds sizes only (the kind of a
//! content, which decides how its bytes are read, is always worked out from the
//! store), and opening a version compares the logged size with the content's own.
//!
//! Format: fixed records of [`RECORD_LEN`] bytes, `ref (32) | size (u64 LE) | check
//! (8)`, the check being the first 8 bytes of SHA-256 over a tag, the ref and the
//! size. Loading skips what does not check out (a torn append, damage) and goes on
//! byte by byte, so the records after it are found again. Records are appended with
//! `O_APPEND` and never synced: a lost tail costs reads, nothing else. Later records
//! win, so a correction is one more record.
//!
//! The log is read in blocks, never whole: at most [`MAX_READ`] bytes of it, and
//! the search for records gives up after [`MAX_SKIP`] bytes that are none, so a
//! huge or foreign file costs bounded time and memory (the log is then rewritten
//! by the next tidy). Like the store's own files, it is opened without following a
//! symbolic link or blocking, and only a regular file is read or appended to; it
//! is created `0600` (`0640` beside a group-readable store).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use crate::blob::Ref;

/// The log's name in a file store's directory.
pub const FILE_NAME: &str = "anchorfs-sizes";
/// Bytes per record.
pub const RECORD_LEN: usize = 48;
/// The most sizes kept in memory; a log with more distinct refs keeps the last ones.
pub const MAX_ENTRIES: usize = 1 << 20;
/// Records a log may hold beyond what it needs (sizes of refs no history holds, or
/// repeats) before [`SizeLog::tidy`] writes it again.
pub const PRUNE_SLACK: usize = 4096;
/// What the check hashes before the record's fields.
const CHECK_TAG: &[u8] = b"anchorfs size log v1\0";
/// The most of a log that is read: room for every size kept, twice over (a log
/// with more repeats than that is tidied), and the slack.
pub const MAX_READ: u64 = ((2 * MAX_ENTRIES + PRUNE_SLACK) * RECORD_LEN) as u64;
/// Bytes that are no record after which the rest of a log is not searched: a
/// torn append leaves less than a record, so this is no log, or no longer one.
pub const MAX_SKIP: usize = 1 << 20;
/// How much of the log is read at a time.
const READ_BLOCK: usize = 1 << 16;

/// Sizes of contents by ref, loaded from and appended to one file.
pub struct SizeLog {
    path: PathBuf,
    /// Where records are appended (none for a read-only log); replaced by a tidy.
    file: RwLock<Option<File>>,
    /// Whether the file held damage or many repeats when it was loaded.
    wasteful: bool,
    sizes: Mutex<HashMap<Ref, u64>>,
}

impl SizeLog {
    /// Opens the log at `path` and loads its records; unless `writable`, it is
    /// only read (and never created). A log that cannot be read starts empty; one
    /// that cannot be written is only read; both are logged.
    pub fn open(path: &Path, writable: bool) -> SizeLog {
        let mut parser = Parser::default();
        match open_checked(path, OpenOptions::new().read(true)) {
            Ok(f) => {
                if let Err(e) = parser.read_from(f) {
                    log::warn!("reading size log {}: {e}", path.display());
                    parser = Parser::default();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("reading size log {}: {e}", path.display()),
        }
        let cut_short = parser.cut_short;
        let (sizes, records, skipped) = parser.finish();
        if skipped > 0 {
            log::warn!(
                "size log {}: skipped {skipped} bytes that are no record",
                path.display()
            );
        }
        if cut_short {
            log::warn!(
                "size log {}: read only its first records (too large or not a log)",
                path.display()
            );
        }
        let file = if writable { open_append(path) } else { None };
        SizeLog {
            path: path.to_path_buf(),
            file: RwLock::new(file),
            // Several mounts recording the same contents leave repeats.
            wasteful: skipped > 0 || cut_short || records > 2 * sizes.len() + PRUNE_SLACK,
            sizes: Mutex::new(sizes),
        }
    }

    /// The logged size of `r`'s content, if any.
    pub fn get(&self, r: &Ref) -> Option<u64> {
        self.sizes.lock().get(r).copied()
    }

    /// The number of sizes held.
    pub fn len(&self) -> usize {
        self.sizes.lock().len()
    }

    /// Whether no size is held.
    pub fn is_empty(&self) -> bool {
        self.sizes.lock().is_empty()
    }

    /// Writes the log again, compacted, when most of it is waste: sizes of refs for
    /// which `live` is false (versions expired or collected) that are at least half
    /// of it and more than [`PRUNE_SLACK`], or damage or many repeats found when it
    /// was loaded. Without this the log would grow for good. Only the live sizes
    /// are kept then. A mount appending meanwhile may lose records.
    pub fn tidy(&self, live: impl Fn(&Ref) -> bool) {
        let kept = {
            let mut sizes = self.sizes.lock();
            let dead = sizes.keys().filter(|r| !live(r)).count();
            let mostly_dead = dead > PRUNE_SLACK && dead * 2 >= sizes.len();
            if !mostly_dead && !self.wasteful {
                return;
            }
            sizes.retain(|r, _| live(r));
            sizes.clone()
        };
        let mut file = self.file.write();
        if file.is_none() {
            return;
        }
        match rewrite(&self.path, &kept) {
            Ok(()) => {
                log::debug!(
                    "size log {}: kept {} sizes",
                    self.path.display(),
                    kept.len()
                );
                *file = open_append(&self.path);
            }
            Err(e) => log::warn!("compacting size log {}: {e}", self.path.display()),
        }
    }

    /// Records the sizes of `entries`, appending those that are new or differ.
    pub fn record(&self, entries: &[(Ref, u64)]) {
        let mut out = Vec::new();
        {
            let mut sizes = self.sizes.lock();
            for (r, size) in entries {
                if sizes.get(r) == Some(size) || sizes.len() >= MAX_ENTRIES {
                    continue;
                }
                sizes.insert(*r, *size);
                out.extend_from_slice(&encode(r, *size));
            }
        }
        if out.is_empty() {
            return;
        }
        if let Some(f) = &*self.file.read() {
            // One write of whole records at the end of the file (O_APPEND).
            if let Err(e) = (&*f).write_all(&out) {
                log::debug!("appending to size log {}: {e}", self.path.display());
            }
        }
    }
}

/// Appends the sizes of `entries` to the log at `path` without loading it (for a
/// program that stores content and leaves, like the command line's `put`). The
/// directory must exist: no store is created for a log.
pub fn append(path: &Path, entries: &[(Ref, u64)]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(entries.len() * RECORD_LEN);
    for (r, size) in entries {
        out.extend_from_slice(&encode(r, *size));
    }
    open_checked(path, OpenOptions::new().append(true).create(true))?.write_all(&out)
}

/// Opens the log at `path` with `opts`, not following a symbolic link and not
/// blocking, created (if `opts` say so) with the store's file mode; anything but a
/// regular file is refused.
fn open_checked(path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let f = opts
        .mode(crate::store::file::file_mode_in(dir))
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file: refused",
        ));
    }
    Ok(f)
}

/// The log at `path` opened for appending (created if missing), or `None`, logged.
fn open_append(path: &Path) -> Option<File> {
    match open_checked(path, OpenOptions::new().append(true).create(true)) {
        Ok(f) => Some(f),
        Err(e) => {
            log::warn!("size log {} is read-only: {e}", path.display());
            None
        }
    }
}

/// The record for `r` of `size` bytes.
pub fn encode(r: &Ref, size: u64) -> [u8; RECORD_LEN] {
    let mut rec = [0u8; RECORD_LEN];
    rec[..32].copy_from_slice(r.as_bytes());
    rec[32..40].copy_from_slice(&size.to_le_bytes());
    let check = check_of(&rec[..40]);
    rec[40..].copy_from_slice(&check);
    rec
}

fn check_of(fields: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(CHECK_TAG);
    h.update(fields);
    let d = h.finalize();
    let mut c = [0u8; 8];
    c.copy_from_slice(&d[..8]);
    c
}

/// The sizes in `bytes` (later records win, at most [`MAX_ENTRIES`]), the number of
/// records found and the number of bytes skipped as no record.
pub fn parse(bytes: &[u8]) -> (HashMap<Ref, u64>, usize, usize) {
    let mut p = Parser {
        skip_limit: usize::MAX,
        ..Parser::default()
    };
    p.feed(bytes);
    p.finish()
}

/// Finds the records of a log fed to it piece by piece.
struct Parser {
    sizes: HashMap<Ref, u64>,
    records: usize,
    skipped: usize,
    /// Bytes fed but not yet parsed: less than a record, between pieces.
    pending: Vec<u8>,
    /// How many bytes that are no record end the search.
    skip_limit: usize,
    /// Whether the search ended before the end of the log.
    cut_short: bool,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser {
            sizes: HashMap::new(),
            records: 0,
            skipped: 0,
            pending: Vec::new(),
            skip_limit: MAX_SKIP,
            cut_short: false,
        }
    }
}

impl Parser {
    /// Reads and parses `f` a block at a time, at most [`MAX_READ`] bytes.
    fn read_from(&mut self, f: File) -> io::Result<()> {
        let mut f = f.take(MAX_READ);
        let mut block = vec![0u8; READ_BLOCK];
        let mut total = 0u64;
        loop {
            let n = match f.read(&mut block) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            self.feed(&block[..n]);
            if self.cut_short {
                return Ok(());
            }
        }
        if total >= MAX_READ {
            self.cut_short = true;
        }
        Ok(())
    }

    /// Parses what `bytes` complete, keeping an incomplete record for later.
    fn feed(&mut self, bytes: &[u8]) {
        if self.cut_short {
            return;
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(bytes);
        let mut at = 0usize;
        while at + RECORD_LEN <= buf.len() {
            if self.skipped >= self.skip_limit {
                self.cut_short = true;
                return;
            }
            let rec = &buf[at..at + RECORD_LEN];
            if check_of(&rec[..40])[..] != rec[40..] {
                at += 1;
                self.skipped += 1;
                continue;
            }
            let mut r = [0u8; 32];
            r.copy_from_slice(&rec[..32]);
            let r = Ref(r);
            let mut size = [0u8; 8];
            size.copy_from_slice(&rec[32..40]);
            if self.sizes.len() < MAX_ENTRIES || self.sizes.contains_key(&r) {
                self.sizes.insert(r, u64::from_le_bytes(size));
            }
            self.records += 1;
            at += RECORD_LEN;
        }
        buf.drain(..at);
        self.pending = buf;
    }

    /// The sizes, the number of records and the number of bytes skipped (an
    /// incomplete record at the end among them).
    fn finish(self) -> (HashMap<Ref, u64>, usize, usize) {
        (self.sizes, self.records, self.skipped + self.pending.len())
    }
}

/// Writes `sizes` as a fresh log at `path` (a temporary file renamed over it).
fn rewrite(path: &Path, sizes: &HashMap<Ref, u64>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(
            crate::store::file::file_mode_in(dir),
        ))
        .tempfile_in(dir)?;
    let mut out = Vec::with_capacity(sizes.len() * RECORD_LEN);
    for (r, size) in sizes {
        out.extend_from_slice(&encode(r, *size));
    }
    tmp.write_all(&out)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(b: u8) -> Ref {
        Ref([b; 32])
    }

    #[test]
    fn later_records_win_and_damage_is_stepped_over() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&encode(&r(1), 10));
        bytes.extend_from_slice(&encode(&r(2), 20));
        // A torn append, then records again.
        bytes.extend_from_slice(&encode(&r(3), 30)[..17]);
        bytes.extend_from_slice(&encode(&r(1), 11));
        // A record with one flipped bit is no record.
        let mut bad = encode(&r(4), 40);
        bad[33] ^= 1;
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&encode(&r(5), 50));
        bytes.extend_from_slice(&encode(&r(6), 60)[..40]);

        let (sizes, records, skipped) = parse(&bytes);
        assert_eq!(records, 4);
        assert_eq!(skipped, 17 + RECORD_LEN + 40);
        assert_eq!(sizes.get(&r(1)), Some(&11));
        assert_eq!(sizes.get(&r(2)), Some(&20));
        assert_eq!(sizes.get(&r(5)), Some(&50));
        assert_eq!(sizes.len(), 3);
    }

    #[test]
    fn tidy_compacts_a_damaged_log_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = b"not a record at all".to_vec();
        bytes.extend_from_slice(&encode(&r(1), 10));
        std::fs::write(&path, &bytes).unwrap();

        let log = SizeLog::open(&path, true);
        assert_eq!(log.get(&r(1)), Some(10));
        log.tidy(|_| true);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD_LEN as u64);
        log.record(&[(r(2), 20), (r(1), 10)]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            2 * RECORD_LEN as u64,
            "only what is new is appended"
        );
        drop(log);
        let log = SizeLog::open(&path, true);
        assert_eq!((log.get(&r(1)), log.get(&r(2))), (Some(10), Some(20)));
    }

    #[test]
    fn tidy_drops_the_dead_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let log = SizeLog::open(&path, true);
        let n = 2 * PRUNE_SLACK as u64;
        let many: Vec<(Ref, u64)> = (0..n).map(|i| (Ref::of(&i.to_le_bytes()), i)).collect();
        log.record(&many);
        let live = |r: &Ref| many[..10].iter().any(|(l, _)| l == r);

        // Few dead: nothing happens.
        log.tidy(|r| r != &many[0].0);
        assert_eq!(log.len(), n as usize);

        log.tidy(live);
        assert_eq!(log.len(), 10);
        let file_len = || std::fs::metadata(&path).unwrap().len();
        assert_eq!(file_len(), 10 * RECORD_LEN as u64);
        // Appends go to the new file.
        log.record(&[(r(9), 99)]);
        assert_eq!(file_len(), 11 * RECORD_LEN as u64);
        drop(log);
        let log = SizeLog::open(&path, false);
        assert_eq!((log.len(), log.get(&r(9))), (11, Some(99)));
        assert_eq!(log.get(&many[3].0), Some(3));
    }

    #[test]
    fn a_log_fed_in_pieces_parses_as_a_whole() {
        use proptest::prelude::*;
        let mut bytes = Vec::new();
        for i in 0..20u8 {
            bytes.extend_from_slice(&encode(&r(i), u64::from(i) * 7));
            if i % 3 == 0 {
                bytes.extend_from_slice(&[i; 5]);
            }
        }
        let whole = parse(&bytes);
        proptest!(|(cuts in proptest::collection::vec(0..bytes.len(), 0..6))| {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut p = Parser::default();
            let mut from = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                p.feed(&bytes[from..c]);
                from = c;
            }
            prop_assert_eq!(p.finish(), whole.clone());
        });
    }

    #[test]
    fn a_file_of_no_records_is_given_up_on_in_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = vec![0u8; 3 * MAX_SKIP];
        bytes.extend_from_slice(&encode(&r(1), 10));
        std::fs::write(&path, &bytes).unwrap();
        let log = SizeLog::open(&path, true);
        assert!(log.is_empty(), "the search stopped before the record");
        // The next tidy writes it again from what was found.
        log.tidy(|_| true);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_log_that_is_a_link_or_a_fifo_is_neither_followed_nor_blocked_on() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, encode(&r(1), 10)).unwrap();
        let path = dir.path().join(FILE_NAME);
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let log = SizeLog::open(&path, true);
        assert!(log.is_empty(), "the link was followed");
        log.record(&[(r(2), 20)]);
        append(&path, &[(r(3), 30)]).unwrap_err();
        assert_eq!(std::fs::read(&outside).unwrap(), encode(&r(1), 10));

        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let log = SizeLog::open(&fifo, true);
        assert!(log.is_empty());
        append(&fifo, &[(r(3), 30)]).unwrap_err();
    }

    #[test]
    fn parsing_any_bytes_never_panics() {
        use proptest::prelude::*;
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..400))| {
            let (sizes, records, skipped) = parse(&bytes);
            prop_assert!(sizes.len() <= records);
            prop_assert_eq!(records * RECORD_LEN + skipped, bytes.len());
        });
    }
}
