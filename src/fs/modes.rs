//! Permission bits the mount shows, and the modes files were written with.
//!
//! Modes never widen access: by default every node shows at most what the store's
//! own directory grants (a `0700` store shows `0700` directories and `0600` files),
//! and `-o dir_mode=`/`file_mode=` set them explicitly. A file written through the
//! mount keeps the mode it was created or `chmod`ed with (within that bound), in a
//! log of our own beside the store's files (`anchorfs-modes`, the same checked
//! record format as the size log, keyed by anchor and version time); the Go
//! library's format holds no modes and ignores the file. A version with no record
//! (put by the command line or by Go) shows the default file mode.

use std::path::Path;

use super::sizes::SizeLog;
use crate::blob::Ref;
use crate::timestamp::Timestamp;

/// The file beside the store's files that keeps the modes versions were written with.
pub const FILE_NAME: &str = "anchorfs-modes";

/// The mode of a file nobody gave one: what a version without a record shows
/// (masked by what the store's directory grants).
pub const DEFAULT_FILE_MODE: u16 = 0o644;

/// The permission bits a file may have in the mount (no set-id or sticky bits).
const PERM_BITS: u16 = 0o777;

/// How modes are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModePolicy {
    /// Directories' permission bits.
    pub dir: u16,
    /// The most a file may show; a file without a mode of its own shows
    /// `0o644 & file_mask` (so `0600` in a `0700` store).
    pub file_mask: u16,
    /// Every file shows exactly this (`-o file_mode=`): recorded modes are not used.
    pub file_fixed: Option<u16>,
}

impl Default for ModePolicy {
    fn default() -> Self {
        ModePolicy {
            dir: 0o755,
            file_mask: 0o755,
            file_fixed: None,
        }
    }
}

impl ModePolicy {
    /// The policy for a store whose root directory has mode `store_mode` (if it has
    /// one on disk), with the explicit `dir_mode=`/`file_mode=` options.
    pub fn new(store_mode: Option<u32>, dir_mode: Option<u16>, file_mode: Option<u16>) -> Self {
        // Never more than the store's directory grants; at most rwxr-xr-x.
        let bound = store_mode.map_or(0o755, |m| (m as u16) & 0o755);
        ModePolicy {
            dir: dir_mode.map_or(bound, |m| m & PERM_BITS),
            file_mask: bound,
            file_fixed: file_mode.map(|m| m & PERM_BITS),
        }
    }

    /// The mode of a file that has no mode of its own.
    pub fn default_file(&self) -> u16 {
        self.file_fixed
            .unwrap_or(DEFAULT_FILE_MODE & self.file_mask)
    }

    /// The mode shown for a file written with `recorded` (if known).
    pub fn file(&self, recorded: Option<u16>) -> u16 {
        match (self.file_fixed, recorded) {
            (Some(m), _) => m,
            (None, Some(m)) => m & self.file_mask,
            (None, None) => self.default_file(),
        }
    }

    /// The mode shown for a file nobody can write (time travel, refs, a read-only
    /// mount).
    pub fn read_only_file(&self, recorded: Option<u16>) -> u16 {
        self.file(recorded) & 0o555
    }

    /// The mode shown for a directory nobody can write into.
    pub fn read_only_dir(&self) -> u16 {
        self.dir & 0o555
    }
}

/// The key of the mode record of `anchor`'s version at `at`.
pub fn key(anchor: &[u8], at: Timestamp) -> Ref {
    let mut bytes = Vec::with_capacity(anchor.len() + 32);
    bytes.extend_from_slice(b"anchorfs mode of a version\0");
    bytes.extend_from_slice(&at.secs().to_be_bytes());
    bytes.extend_from_slice(&at.nanos().to_be_bytes());
    bytes.extend_from_slice(anchor);
    Ref::of(&bytes)
}

/// The modes versions were written with, kept beside the store.
pub struct ModeLog {
    log: SizeLog,
}

impl ModeLog {
    /// Opens (or, if `writable`, creates on first record) the log at `path`.
    pub fn open(path: &Path, writable: bool) -> ModeLog {
        ModeLog {
            log: SizeLog::open(path, writable),
        }
    }

    /// The mode `anchor`'s version at `at` was written with, if recorded.
    pub fn get(&self, anchor: &[u8], at: Timestamp) -> Option<u16> {
        let m = self.log.get(&key(anchor, at))?;
        u16::try_from(m).ok().map(|m| m & PERM_BITS)
    }

    /// Records the mode `anchor`'s version at `at` was written with.
    pub fn record(&self, anchor: &[u8], at: Timestamp, mode: u16) {
        self.log
            .record(&[(key(anchor, at), u64::from(mode & PERM_BITS))]);
    }

    /// Drops the records of versions `live` says are gone, when they are most of
    /// the log.
    pub fn tidy(&self, live: impl Fn(&Ref) -> bool) {
        self.log.tidy(live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_directory_bounds_every_mode() {
        let private = ModePolicy::new(Some(0o40700), None, None);
        assert_eq!(private.dir, 0o700);
        assert_eq!(private.default_file(), 0o600);
        assert_eq!(private.file(Some(0o666)), 0o600);
        assert_eq!(private.file(Some(0o755)), 0o700);
        let group = ModePolicy::new(Some(0o750), None, None);
        assert_eq!((group.dir, group.default_file()), (0o750, 0o640));
        // A world-writable store shows nothing writable to others.
        let open = ModePolicy::new(Some(0o777), None, None);
        assert_eq!((open.dir, open.default_file()), (0o755, 0o644));
        assert_eq!(
            open.file(Some(0o600)),
            0o600,
            "a private file stays private"
        );
        assert_eq!(open.read_only_file(Some(0o644)), 0o444);
        let mem = ModePolicy::new(None, None, None);
        assert_eq!((mem.dir, mem.default_file()), (0o755, 0o644));
    }

    #[test]
    fn explicit_modes_are_used_as_given() {
        let p = ModePolicy::new(Some(0o700), Some(0o775), Some(0o664));
        assert_eq!(p.dir, 0o775);
        assert_eq!(p.file(Some(0o600)), 0o664);
        assert_eq!(p.file(None), 0o664);
        assert_eq!(p.read_only_dir(), 0o555);
    }

    #[test]
    fn recorded_modes_read_back_by_anchor_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let t = Timestamp::new(1_700_000_000, 5).unwrap();
        let log = ModeLog::open(&path, true);
        log.record(b"notes", t, 0o600);
        assert_eq!(log.get(b"notes", t), Some(0o600));
        assert_eq!(log.get(b"other", t), None);
        assert_eq!(
            log.get(b"notes", Timestamp::new(1_700_000_000, 6).unwrap()),
            None
        );
        drop(log);
        let again = ModeLog::open(&path, false);
        assert_eq!(again.get(b"notes", t), Some(0o600));
    }
}
