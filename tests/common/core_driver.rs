//! Drives the filesystem core ([`AnchorFs`]) the way the kernel drives it through
//! the FUSE adapter, without a mount: path operations become lookups by parent inode
//! and name and then the request itself, with the caller's thread and process where
//! the API wants them.
//!
//! This file is the only place the model-based tests call the core. What the kernel
//! does on its own before (or instead of) a request reaching the filesystem is done
//! here too, and only here, each marked "kernel:":
//! - every path is walked one lookup per component, and a `latest` link is followed
//!   by an open or a read (`readlink`, then a lookup of the target);
//! - a name longer than 255 bytes fails with ENAMETOOLONG before any lookup;
//! - `O_CREAT` on a name that is not there sends `create`, on one that is sends
//!   `open`; opening a directory for writing fails with EISDIR;
//! - an open that answers ESTALE is tried once more from the lookup on (that is how
//!   the core moves an open of a version for writing to a new file of its own);
//! - close(2) sends `flush` (whose answer is close's) and then `release`. The kernel
//!   sends the release after close(2) has returned, so on a mount it lands a little
//!   later; here it follows at once;
//! - `rename` of a name onto one that names the same inode does nothing;
//! - `unlink` of a directory fails with EISDIR, `rmdir` of anything else ENOTDIR;
//! - `readlink` of something that is not a link fails with EINVAL.
//!
//! The kernel also caches entries and attributes for their time to live, so on a
//! mount some lookups never reach the filesystem; here every one does.

#![allow(dead_code)]

use std::sync::Arc;

use anchorfs::fs::inode::ROOT_INO;
use anchorfs::fs::{
    AnchorFs, Caller, FakeProcesses, Fh, FileKind, FsError, FsOptions, Ino, ProcessId, SetAttr,
    SharedStore,
};

/// The thread every request comes from (the kernel names the calling thread).
pub const THREAD: u32 = 4242;
/// The process that thread belongs to (its thread group).
pub const PROCESS: ProcessId = ProcessId(4240);
/// The permission bits a program's `open(O_CREAT)` asks for under umask 022.
pub const CREATE_MODE: u16 = 0o644;
/// The longest name a directory entry may have.
pub const NAME_MAX: usize = 255;
/// The size of each read a program's read loop asks for.
const READ_SIZE: usize = 4096;

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenHow {
    /// For writing too (`O_RDWR`); otherwise read-only.
    pub write: bool,
    /// `O_CREAT`
    pub create: bool,
    /// `O_TRUNC`
    pub truncate: bool,
    /// `O_APPEND`
    pub append: bool,
}

/// An open descriptor.
#[derive(Clone, Copy, Debug)]
struct OpenFile {
    fh: Fh,
    /// The inode the descriptor was opened on (what `fstat` and `ftruncate` name).
    ino: Ino,
    /// The file position.
    pos: u64,
    append: bool,
}

/// The core, and the descriptors a program holds open on it (by index, in the
/// order they were opened; closing one shifts the later ones down).
pub struct CoreDriver {
    fs: Arc<AnchorFs>,
    files: Vec<OpenFile>,
}

fn errno(e: FsError) -> i32 {
    e.errno()
}

/// The components of a path below the root.
fn components(rel: &str) -> Vec<&str> {
    rel.split('/').filter(|c| !c.is_empty()).collect()
}

impl CoreDriver {
    /// The core over `store` with the options a default mount has.
    pub fn new(store: SharedStore) -> CoreDriver {
        // Every request's thread belongs to one process: the program's.
        let processes = Arc::new(FakeProcesses::new());
        processes.assign(THREAD, PROCESS);
        let fs = AnchorFs::with_processes(store, FsOptions::default(), processes)
            .expect("the core starts");
        CoreDriver {
            fs: Arc::new(fs),
            files: Vec::new(),
        }
    }

    /// How many descriptors are open.
    pub fn open_count(&self) -> usize {
        self.files.len()
    }

    // -----------------------------------------------------------------------------
    // The path walk

    /// Looks `name` up in directory `dir`: (inode, kind).
    fn lookup(&self, dir: Ino, name: &str) -> Result<(Ino, FileKind), i32> {
        // kernel: a component longer than a name may be never reaches the filesystem.
        if name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        let e = self
            .fs
            .lookup_as(dir, name.as_bytes(), Some(THREAD))
            .map_err(errno)?;
        Ok((e.attr.ino, e.attr.kind))
    }

    /// Walks to the parent of `rel`'s last component: (parent inode, last name).
    fn walk_parent<'a>(&self, rel: &'a str) -> Result<(Ino, &'a str), i32> {
        let parts = components(rel);
        let (last, dirs) = parts.split_last().ok_or(libc::EINVAL)?;
        let mut dir = ROOT_INO;
        for part in dirs {
            let (ino, kind) = self.lookup(dir, part)?;
            if kind != FileKind::Dir {
                return Err(libc::ENOTDIR);
            }
            dir = ino;
        }
        Ok((dir, last))
    }

    /// Walks `rel`: (parent inode, inode, kind); a link at the end is followed if
    /// `follow` (kernel: its target is a name in the same directory here).
    fn walk(&self, rel: &str, follow: bool) -> Result<(Ino, Ino, FileKind), i32> {
        let (dir, last) = self.walk_parent(rel)?;
        let (mut ino, mut kind) = self.lookup(dir, last)?;
        let mut hops = 0;
        while follow && kind == FileKind::Symlink {
            hops += 1;
            if hops > 40 {
                return Err(libc::ELOOP);
            }
            let target = self.fs.readlink(ino).map_err(errno)?;
            let target = String::from_utf8(target).map_err(|_| libc::EINVAL)?;
            (ino, kind) = self.lookup(dir, &target)?;
        }
        Ok((dir, ino, kind))
    }

    // -----------------------------------------------------------------------------
    // System calls

    /// `mkdir`.
    pub fn mkdir(&self, rel: &str) -> Result<(), i32> {
        let (dir, name) = self.walk_parent(rel)?;
        match self.lookup(dir, name) {
            Ok(_) => return Err(libc::EEXIST),
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        self.fs.mkdir(dir, name.as_bytes()).map_err(errno)?;
        Ok(())
    }

    /// `rmdir`.
    pub fn rmdir(&self, rel: &str) -> Result<(), i32> {
        let (dir, _, kind) = self.walk(rel, false)?;
        if kind != FileKind::Dir {
            return Err(libc::ENOTDIR);
        }
        let (_, name) = self.walk_parent(rel)?;
        self.fs.rmdir(dir, name.as_bytes()).map_err(errno)
    }

    /// `open`; returns the new descriptor's index.
    pub fn open(&mut self, rel: &str, how: OpenHow) -> Result<usize, i32> {
        // kernel: an open that answers ESTALE is walked and tried once more.
        match self.open_once(rel, how) {
            Err(libc::ESTALE) => self.open_once(rel, how),
            r => r,
        }
    }

    fn open_once(&mut self, rel: &str, how: OpenHow) -> Result<usize, i32> {
        let (dir, ino, kind) = match self.walk(rel, true) {
            Err(libc::ENOENT) if how.create => {
                let (dir, name) = self.walk_parent(rel)?;
                let (e, fh) = self
                    .fs
                    .create_with_mode(dir, name.as_bytes(), CREATE_MODE)
                    .map_err(errno)?;
                if how.append {
                    self.fs.set_append(fh);
                }
                self.fs.set_opener(fh, THREAD);
                return Ok(self.hold(fh, e.attr.ino, how.append));
            }
            r => r?,
        };
        let _ = dir;
        // kernel: a directory is never opened for writing.
        if kind == FileKind::Dir && how.write {
            return Err(libc::EISDIR);
        }
        let root = Caller::default();
        let o = self
            .fs
            .open_checked(
                ino,
                (how.write, how.truncate, how.append),
                Some(THREAD),
                how.write.then_some(&root),
            )
            .map_err(errno)?;
        if how.write && how.append {
            self.fs.set_append(o.fh);
        }
        self.fs.set_opener(o.fh, THREAD);
        Ok(self.hold(o.fh, ino, how.append))
    }

    fn hold(&mut self, fh: Fh, ino: Ino, append: bool) -> usize {
        self.files.push(OpenFile {
            fh,
            ino,
            pos: 0,
            append,
        });
        self.files.len() - 1
    }

    fn file(&self, h: usize) -> Result<OpenFile, i32> {
        self.files.get(h).copied().ok_or(libc::EBADF)
    }

    /// `write` at the descriptor's position (at the end, for `O_APPEND`).
    pub fn write(&mut self, h: usize, data: &[u8]) -> Result<(), i32> {
        let f = self.file(h)?;
        // kernel: an append is sent at the end the kernel knows of; the core puts it
        // at the file's own end.
        let offset = if f.append { self.size(h)? } else { f.pos };
        self.write_all(f.fh, offset, data)?;
        let pos = if f.append {
            self.size(h)?
        } else {
            offset + data.len() as u64
        };
        self.files[h].pos = pos;
        Ok(())
    }

    /// `pwrite` (Linux appends a `pwrite` on an `O_APPEND` descriptor).
    pub fn write_at(&mut self, h: usize, offset: u64, data: &[u8]) -> Result<(), i32> {
        let f = self.file(h)?;
        let offset = if f.append { self.size(h)? } else { offset };
        self.write_all(f.fh, offset, data)
    }

    fn write_all(&self, fh: Fh, mut offset: u64, mut data: &[u8]) -> Result<(), i32> {
        while !data.is_empty() {
            let n = self
                .fs
                .write(fh, offset, data, Some(THREAD))
                .map_err(errno)?;
            if n == 0 {
                return Err(libc::EIO);
            }
            offset += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// `ftruncate`.
    pub fn set_len(&self, h: usize, len: u64) -> Result<(), i32> {
        let f = self.file(h)?;
        let change = SetAttr {
            size: Some(len),
            ..SetAttr::default()
        };
        self.fs
            .setattr(f.ino, Some(f.fh), &change, Some(THREAD))
            .map_err(errno)?;
        Ok(())
    }

    /// `fstat`: the size.
    pub fn size(&self, h: usize) -> Result<u64, i32> {
        let f = self.file(h)?;
        Ok(self.fs.getattr(f.ino).map_err(errno)?.attr.size)
    }

    /// Everything the descriptor reads from offset 0 (`pread`s until one reads
    /// nothing).
    pub fn read_back(&self, h: usize) -> Result<Vec<u8>, i32> {
        self.read_all(self.file(h)?.fh)
    }

    fn read_all(&self, fh: Fh) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        loop {
            let got = self
                .fs
                .read(fh, out.len() as u64, READ_SIZE)
                .map_err(errno)?;
            if got.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&got);
        }
    }

    /// `fsync`.
    pub fn fsync(&self, h: usize) -> Result<(), i32> {
        self.fs.flush(self.file(h)?.fh, None).map_err(errno)
    }

    /// `close`: the flush's answer; the release follows (its answer reaches no one).
    pub fn close(&mut self, h: usize) -> Result<(), i32> {
        let f = self.file(h)?;
        self.files.remove(h);
        self.close_fh(f.fh)
    }

    fn close_fh(&self, fh: Fh) -> Result<(), i32> {
        let flushed = self.fs.flush(fh, Some(THREAD)).map_err(errno);
        let _ = self.fs.release(fh);
        flushed
    }

    /// `rename`.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), i32> {
        let (from_dir, from_ino, from_kind) = self.walk(from, false)?;
        let (to_dir, to_name) = self.walk_parent(to)?;
        match self.lookup(to_dir, to_name) {
            // kernel: the same inode under both names: nothing to do.
            Ok((to_ino, _)) if to_ino == from_ino => return Ok(()),
            Ok((_, FileKind::Dir)) if from_kind != FileKind::Dir => return Err(libc::EISDIR),
            Ok(_) | Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let (_, from_name) = self.walk_parent(from)?;
        if to_name.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        self.fs
            .rename(from_dir, from_name.as_bytes(), to_dir, to_name.as_bytes())
            .map_err(errno)
    }

    /// `unlink`.
    pub fn unlink(&self, rel: &str) -> Result<(), i32> {
        let (dir, _, kind) = self.walk(rel, false)?;
        if kind == FileKind::Dir {
            return Err(libc::EISDIR);
        }
        let (_, name) = self.walk_parent(rel)?;
        self.fs.unlink(dir, name.as_bytes()).map_err(errno)
    }

    /// Everything `rel` reads (`open` read-only, reads, `close`).
    pub fn read_file(&self, rel: &str) -> Result<Vec<u8>, i32> {
        let (_, ino, kind) = self.walk(rel, true)?;
        let o = self
            .fs
            .open_checked(ino, (false, false, false), Some(THREAD), None)
            .map_err(errno)?;
        // kernel: reading a directory.
        let read = if kind == FileKind::Dir {
            Err(libc::EISDIR)
        } else {
            self.read_all(o.fh)
        };
        let closed = self.close_fh(o.fh);
        let data = read?;
        closed?;
        Ok(data)
    }

    /// The names in directory `rel` (the root for ""), without `.` and `..`, sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, i32> {
        let ino = if components(rel).is_empty() {
            ROOT_INO
        } else {
            let (_, ino, kind) = self.walk(rel, true)?;
            if kind != FileKind::Dir {
                return Err(libc::ENOTDIR);
            }
            ino
        };
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.fs.readdir(ino, offset, 64).map_err(errno)?;
            let Some(last) = page.last() else {
                break;
            };
            offset = last.next;
            for d in page {
                if d.name != b"." && d.name != b".." {
                    names.push(String::from_utf8_lossy(&d.name).into_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// `lstat`: whether `rel` is there.
    pub fn lstat(&self, rel: &str) -> Result<(), i32> {
        self.walk(rel, false).map(|_| ())
    }

    /// `readlink`.
    pub fn read_link(&self, rel: &str) -> Result<String, i32> {
        let (_, ino, kind) = self.walk(rel, false)?;
        // kernel: only a link is asked for its target.
        if kind != FileKind::Symlink {
            return Err(libc::EINVAL);
        }
        let t = self.fs.readlink(ino).map_err(errno)?;
        Ok(String::from_utf8_lossy(&t).into_owned())
    }
}

impl Drop for CoreDriver {
    /// A program that exits closes what it holds.
    fn drop(&mut self) {
        for f in std::mem::take(&mut self.files) {
            let _ = self.close_fh(f.fh);
        }
    }
}
