//! The `fuser` adapter: each callback makes one call into [`AnchorFs`] and replies,
//! or replies with the error's errno. Nothing else of `fuser` appears outside this
//! module; [`passthrough`] is the kernel's bookkeeping for reads it serves from
//! whole local copies.

mod passthrough;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

pub use self::passthrough::Passthrough;
use super::{AnchorFs, Attr, Caller, Entry, Fh, FileKind, FsError, Ino, Invalidations, SetAttr};

/// The adapter the session runs.
pub struct FuseAdapter {
    core: Arc<AnchorFs>,
    xattrs: bool,
    on_destroy: parking_lot::Mutex<Option<EndHook>>,
    passthrough: Option<Arc<Passthrough>>,
}

/// Run once when the session's request threads have ended (see
/// [`FuseAdapter::on_destroy`]).
pub type EndHook = Box<dyn FnOnce() + Send>;

impl FuseAdapter {
    /// Serves `core`.
    pub fn new(core: Arc<AnchorFs>) -> FuseAdapter {
        FuseAdapter {
            core,
            xattrs: true,
            on_destroy: parking_lot::Mutex::new(None),
            passthrough: None,
        }
    }

    /// Serves reads of versions from their whole copies where it can (see
    /// [`Passthrough`]).
    pub fn with_passthrough(self, passthrough: Arc<Passthrough>) -> FuseAdapter {
        FuseAdapter {
            passthrough: Some(passthrough),
            ..self
        }
    }

    /// Whether to serve extended attributes. Without, every xattr request answers
    /// ENOSYS, after which the kernel sends none (and `ls -l` needs two round trips
    /// per file fewer).
    pub fn with_xattrs(self, xattrs: bool) -> FuseAdapter {
        FuseAdapter { xattrs, ..self }
    }

    /// Runs `hook` when the session's request threads have ended, before `fuser`
    /// tears the session down (and unmounts its mount point, if it thinks it must).
    pub fn on_destroy(self, hook: EndHook) -> FuseAdapter {
        *self.on_destroy.lock() = Some(hook);
        self
    }
}

/// Who sent `req`: its user, group and supplementary groups (from
/// `/proc/TID/status`; none if it does not say).
fn caller_of(req: &Request) -> Caller {
    let groups = std::fs::read_to_string(format!("/proc/{}/status", req.pid()))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default();
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        groups,
    }
}

fn errno(op: &str, e: &FsError) -> Errno {
    if e.is_routine() {
        log::debug!("{op}: {e}")
    } else {
        log::warn!("{op}: {e}")
    }
    Errno::from_i32(e.errno())
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

/// The I/O size every node reports as preferred (`st_blksize`): one FUSE request's
/// worth (`max_write`, `max_readahead`). `cat`, `cp` and `dd`-like tools size their
/// buffers by it, and each read or write system call through FUSE has a fixed cost:
/// 1 MiB calls instead of 128 KiB ones make fewer requests and fewer copies.
pub const IO_BLOCK: u32 = 1 << 20;

thread_local! {
    /// Each request thread's buffer for read replies, kept between requests (at
    /// most two [`IO_BLOCK`]s of it).
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: IO_BLOCK,
        flags: 0,
    }
}

fn reply_empty(reply: ReplyEmpty, op: &str, res: Result<(), FsError>) {
    match res {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

/// Attributes for `.` and `..` in a listing with attributes: the kernel uses only
/// their name, number and type.
fn dot_attr(ino: Ino, kind: FileKind) -> FileAttr {
    file_attr(&Attr {
        ino,
        size: 0,
        blocks: 0,
        mtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: 0,
        nlink: 1,
        uid: 0,
        gid: 0,
    })
}

fn reply_entry(reply: ReplyEntry, op: &str, res: Result<Entry, FsError>) {
    match res {
        Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0)),
        Err(e) => reply.error(errno(op, &e)),
    }
}

fn reply_attr(reply: ReplyAttr, op: &str, res: Result<Entry, FsError>) {
    match res {
        Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
        Err(e) => reply.error(errno(op, &e)),
    }
}

/// Tells the kernel to drop the attributes a poll or commit found stale. A negative
/// offset drops attributes only: no page of the inode is touched, so the call never
/// waits for a page lock held by a read in flight (which, were the daemon killed,
/// would never be answered and would keep the connection from being aborted).
pub fn invalidate(notifier: &fuser::Notifier, inv: &Invalidations) {
    for ino in &inv.inodes {
        if let Err(e) = notifier.inval_inode(INodeNo(ino.0), -1, 0) {
            log::debug!("invalidating inode {ino}: {e}");
        }
    }
}

/// Puts `data`, verified content of `ino` at `offset`, in the kernel's page cache
/// (FUSE's store notification), so reads of it need no request. An inode the
/// kernel no longer has is skipped.
pub fn fill_pages(notifier: &fuser::Notifier, ino: u64, offset: u64, data: &[u8]) {
    if let Err(e) = notifier.store(INodeNo(ino), offset, data) {
        log::debug!("filling pages of inode {ino} at {offset}: {e}");
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(IO_BLOCK);
        let _ = config.set_max_write(IO_BLOCK);
        // O_TRUNC arrives with open instead of as a separate truncate of a version.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Nothing here is setuid or has file capabilities: without this the kernel
        // asks for `security.capability` before every write.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        // Listings carry attributes (READDIRPLUS) when the kernel sees them used, so
        // `ls -l` and `find` need no lookup per entry.
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        // New files are written without the page cache (FOPEN_DIRECT_IO on create,
        // see `create`); this keeps `mmap` of them working all the same.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        let _ = config.set_max_background(64);
        if let Some(p) = &self.passthrough {
            p.negotiate(config);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if let Some(hook) = self.on_destroy.get_mut().take() {
            hook();
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // By thread: an open of a version for writing that moved to a new file sends
        // its thread to look the name up again (see `AnchorFs::open_as`).
        reply_entry(
            reply,
            "lookup",
            self.core
                .lookup_as(Ino(parent.0), name.as_bytes(), Some(req.pid())),
        )
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(Ino(ino.0), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, "getattr", self.core.getattr(Ino(ino.0)))
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(Ino(ino.0)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno("readlink", &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        let append = flags.0 & libc::O_APPEND != 0;
        let caller = write.then(|| caller_of(req));
        match self.core.open_checked(
            Ino(ino.0),
            (write, truncate, append),
            Some(req.pid()),
            caller.as_ref(),
        ) {
            Ok(o) => {
                if write && append {
                    self.core.set_append(o.fh);
                }
                self.core.set_opener(o.fh, req.pid());
                let mut f = FopenFlags::empty();
                if o.keep_cache {
                    f |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                if o.direct_io {
                    f |= FopenFlags::FOPEN_DIRECT_IO;
                }
                match &self.passthrough {
                    Some(p) if !write && !o.direct_io => p.reply_open(&self.core, o.fh, f, reply),
                    _ => reply.opened(FileHandle(o.fh.0), f),
                }
            }
            Err(e) => reply.error(errno("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match self
                .core
                .read_into(Fh(fh.0), offset, size as usize, &mut buf)
            {
                Ok(()) => reply.data(&buf),
                Err(e) => reply.error(errno("read", &e)),
            }
            if buf.capacity() > 2 * IO_BLOCK as usize {
                *buf = Vec::new();
            }
        })
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(p) = &self.passthrough {
            p.released(ino.0, Fh(fh.0));
        }
        reply_empty(reply, "release", self.core.release(Fh(fh.0)))
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        // The kernel's buffer takes 20 to 180 entries; what does not fit is cached
        // for the next call.
        let res = self
            .core
            .readdir_plus(Ino(ino.0), offset, 256, &mut |d, e| {
                let name = OsStr::from_bytes(&d.name);
                match e {
                    Some(e) => reply.add(
                        INodeNo(d.ino.0),
                        d.next,
                        name,
                        &e.ttl,
                        &file_attr(&e.attr),
                        Generation(0),
                    ),
                    // `.` and `..`: the kernel takes only the name and type.
                    None => reply.add(
                        INodeNo(d.ino.0),
                        d.next,
                        name,
                        &Duration::ZERO,
                        &dot_attr(d.ino, d.kind),
                        Generation(0),
                    ),
                }
            });
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("readdirplus", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.core.readdir(Ino(ino.0), offset, 256) {
            Ok(entries) => {
                for d in entries {
                    if reply.add(
                        INodeNo(d.ino.0),
                        d.next,
                        file_type(d.kind),
                        OsStr::from_bytes(&d.name),
                    ) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(errno("readdir", &e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.core.statfs();
        let c = &s.space;
        reply.statfs(
            c.blocks, c.bfree, c.bavail, c.files, c.ffree, c.bsize, s.namelen, c.frsize,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(Errno::from_i32(FsError::NotImplemented.errno()));
        }
        match self.core.getxattr(Ino(ino.0), &name.to_string_lossy()) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => {
                reply.error(Errno::from_i32(FsError::TooLarge.errno()))
            }
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(Errno::from_i32(FsError::NotImplemented.errno()));
        }
        match self.core.listxattr(Ino(ino.0)) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => {
                reply.error(Errno::from_i32(FsError::TooLarge.errno()))
            }
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(errno("listxattr", &e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        match self.core.getattr(Ino(ino.0)) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno("access", &e)),
        }
    }

    /// No ioctls: every file answers ENOTTY (what `isatty` and friends expect),
    /// quietly, since programs probe every file they open.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::from_i32(FsError::NoIoctl.errno()));
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, "setxattr", self.core.setxattr(Ino(ino.0)))
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, "removexattr", self.core.setxattr(Ino(ino.0)))
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            "mkdir",
            self.core.mkdir(Ino(parent.0), name.as_bytes()),
        )
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = (mode & !umask & 0o777) as u16;
        match self
            .core
            .create_with_mode(Ino(parent.0), name.as_bytes(), mode)
        {
            Ok((e, fh)) => {
                if flags & libc::O_APPEND != 0 {
                    self.core.set_append(fh);
                }
                self.core.set_opener(fh, req.pid());
                // Written around the page cache: a new file's bytes go to the daemon
                // from the writer's own pages in requests of up to `max_write`,
                // without first being copied into cache pages nobody reads.
                reply.created(
                    &e.ttl,
                    &file_attr(&e.attr),
                    Generation(0),
                    FileHandle(fh.0),
                    FopenFlags::FOPEN_DIRECT_IO,
                )
            }
            Err(e) => reply.error(errno("create", &e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The writing process: a close by another (an inherited descriptor) is
        // not this writer's commit point.
        let _ = lock_owner;
        match self.core.write(Fh(fh.0), offset, data, Some(req.pid())) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        log::debug!("flush fh {}", fh.0);
        let _ = lock_owner;
        reply_empty(reply, "flush", self.core.flush(Fh(fh.0), Some(req.pid())))
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        log::debug!("fsync fh {}", fh.0);
        reply_empty(reply, "fsync", self.core.flush(Fh(fh.0), None))
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mtime = mtime.map(|t| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        });
        reply_attr(
            reply,
            "setattr",
            self.core.setattr(
                Ino(ino.0),
                fh.map(|f| Fh(f.0)),
                &SetAttr {
                    size,
                    mtime,
                    mode: mode.map(|m| (m & 0o7777) as u16),
                },
                size.map(|_| req.pid()),
            ),
        )
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            reply,
            "unlink",
            self.core.unlink(Ino(parent.0), name.as_bytes()),
        )
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(
            reply,
            "rmdir",
            self.core.rmdir(Ino(parent.0), name.as_bytes()),
        )
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.core.rename(
            Ino(parent.0),
            name.as_bytes(),
            Ino(newparent.0),
            newname.as_bytes(),
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("rename", &e)),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            "symlink",
            self.core.symlink(
                Ino(parent.0),
                link_name.as_bytes(),
                target.as_os_str().as_bytes(),
            ),
        )
    }
}

/// How long the poll thread sleeps between looks at the anchor map ref.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
