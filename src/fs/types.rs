//! The plain values the filesystem core answers with and is configured by:
//! attributes, entries, listings, options, callers, invalidations, opened files.
//!
//! Holds no state and no locks.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::ids::{Fh, Ino};
use super::modes;
use super::names::TimeNames;

/// File types the mount shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// A node's attributes, as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Size in bytes.
    pub size: u64,
    /// Size in 512-byte blocks, rounded up.
    pub blocks: u64,
    /// Modification time (and change time).
    pub mtime: SystemTime,
    /// File type.
    pub kind: FileKind,
    /// Permission bits.
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A looked-up entry: its attributes and how long the kernel may cache them.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Attributes.
    pub attr: Attr,
    /// Cache lifetime of the entry and its attributes.
    pub ttl: Duration,
}

/// One directory listing entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: Ino,
    /// The offset to resume after this entry.
    pub next: u64,
    /// File type.
    pub kind: FileKind,
    /// The entry's name.
    pub name: Vec<u8>,
}

/// Filesystem-wide figures for `statfs`: the store's space and files, and the
/// longest name.
#[derive(Clone, Debug, Default)]
pub struct StatFs {
    /// Space and file slots.
    pub space: crate::store::Capacity,
    /// Longest name.
    pub namelen: u32,
}

/// Options of a mount.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// How version files are named.
    pub time_names: TimeNames,
    /// Owner shown on every node.
    pub uid: u32,
    /// Group shown on every node.
    pub gid: u32,
    /// Short cache lifetime for what changes (directories, `latest`).
    pub mutable_ttl: Duration,
    /// Refuse every write with EROFS.
    pub read_only: bool,
    /// Where to keep the size log ([`sizes::SizeLog`]), if anywhere: read, and
    /// appended to unless `read_only`.
    pub size_log: Option<PathBuf>,
    /// The permission bits shown ([`modes::ModePolicy`]).
    pub modes: modes::ModePolicy,
    /// Where to keep the modes files were written with ([`modes::ModeLog`]), if
    /// anywhere.
    pub mode_log: Option<PathBuf>,
    /// Check callers' permissions where the kernel's checks cannot (other users
    /// are let in).
    pub check_access: bool,
}

/// Who asks: the credentials of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Caller {
    /// Whether the caller may write into a node with attributes `attr` (root may).
    pub fn may_write(&self, attr: &Attr) -> bool {
        let bits = if self.uid == 0 {
            return true;
        } else if self.uid == attr.uid {
            0o200
        } else if self.gid == attr.gid || self.groups.contains(&attr.gid) {
            0o020
        } else {
            0o002
        };
        attr.perm & bits != 0
    }
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            time_names: TimeNames::Rfc3339,
            uid: 0,
            gid: 0,
            mutable_ttl: Duration::from_secs(1),
            read_only: false,
            size_log: None,
            modes: modes::ModePolicy::default(),
            mode_log: None,
            check_access: false,
        }
    }
}

/// What a poll or a commit found changed: the kernel's cached attributes to drop.
/// Only attributes: the names themselves keep meaning the same nodes (an anchor
/// directory, `latest`, a version), and directory listings and link targets are not
/// cached. Dropping attributes never waits on a lock a request holds, so it cannot
/// hang the daemon; dropping entries could.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalidations {
    /// Inodes whose attributes to forget.
    pub inodes: Vec<Ino>,
}

/// An opened file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The handle for later calls.
    pub fh: Fh,
    /// Whether the kernel may keep cached pages across opens (immutable content).
    pub keep_cache: bool,
    /// Whether reads and writes must bypass the kernel's page cache: a write opened
    /// on a version, whose cached pages must keep showing the version.
    pub direct_io: bool,
}
