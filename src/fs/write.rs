//! Writing through the mount. The read-side mount refuses every change with EROFS;
//! each call here is where the write path will plug in.

use super::{AnchorFs, Entry, FsError};
use std::time::SystemTime;

impl AnchorFs {
    /// `mkdir NAME`: refused (read-only mount).
    pub fn mkdir(&self, _parent: u64, _name: &[u8]) -> Result<Entry, FsError> {
        Err(FsError::ReadOnly)
    }

    /// Creates a file: refused (read-only mount).
    pub fn create(&self, _parent: u64, _name: &[u8]) -> Result<(Entry, u64), FsError> {
        Err(FsError::ReadOnly)
    }

    /// Writes to an open file: refused (read-only mount).
    pub fn write(&self, _fh: u64, _offset: u64, _data: &[u8]) -> Result<usize, FsError> {
        Err(FsError::ReadOnly)
    }

    /// Close or fsync of an open file: nothing to commit on a read-only mount.
    pub fn flush(&self, _fh: u64) -> Result<(), FsError> {
        Ok(())
    }

    /// Changes attributes: refused (read-only mount).
    pub fn setattr(
        &self,
        _ino: u64,
        _fh: Option<u64>,
        _size: Option<u64>,
        _mtime: Option<SystemTime>,
    ) -> Result<Entry, FsError> {
        Err(FsError::ReadOnly)
    }

    /// Removes a file: refused (read-only mount).
    pub fn unlink(&self, _parent: u64, _name: &[u8]) -> Result<(), FsError> {
        Err(FsError::ReadOnly)
    }

    /// Removes a directory: refused (read-only mount).
    pub fn rmdir(&self, _parent: u64, _name: &[u8]) -> Result<(), FsError> {
        Err(FsError::ReadOnly)
    }

    /// Renames: refused (read-only mount).
    pub fn rename(
        &self,
        _parent: u64,
        _name: &[u8],
        _newparent: u64,
        _newname: &[u8],
    ) -> Result<(), FsError> {
        Err(FsError::ReadOnly)
    }

    /// Creates a symlink: refused (read-only mount).
    pub fn symlink(&self, _parent: u64, _name: &[u8], _target: &[u8]) -> Result<Entry, FsError> {
        Err(FsError::ReadOnly)
    }
}
