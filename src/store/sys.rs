//! The file store's few Linux calls, relative to directory descriptors: every name
//! is one component opened or looked at inside a directory the store already holds
//! open, and never followed if it is a symbolic link. Nothing here knows the
//! store's layout.

use std::ffi::{CStr, CString, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A name as the calls below take it.
pub(crate) fn c_name(name: &str) -> CString {
    // Store names are hex digits and fixed ASCII words: never a NUL.
    CString::new(name).unwrap_or_default()
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Retries a call interrupted by a signal.
fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match check(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            res => return res,
        }
    }
}

/// # Safety
/// `fd` must be a descriptor that was just returned open, owned by no one else.
unsafe fn owned(fd: RawFd) -> OwnedFd {
    OwnedFd::from_raw_fd(fd)
}

/// Opens the directory at `path` (the store's root, as the user named it: links
/// in it are followed, as for any path a user gives).
pub(crate) fn open_dir_path(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: a valid C string; the descriptor returned is ours alone.
    let fd = retry(|| unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: just opened.
    Ok(unsafe { owned(fd) })
}

/// Opens the directory `name` in `dir`; a symbolic link is refused (`ELOOP`), and
/// anything else than a directory too (`ENOTDIR`).
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid descriptor and C string; the descriptor returned is ours.
    let fd = retry(|| unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    // SAFETY: just opened.
    Ok(unsafe { owned(fd) })
}

/// Opens the file `name` in `dir` for reading without following a symbolic link
/// (`ELOOP`) and without blocking (a FIFO with no writer opens at once, and never
/// becomes a controlling terminal). The caller must look at what it opened with
/// [`fstat`] before reading: it may be a FIFO or a device.
pub(crate) fn open_read(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<File> {
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: as in `open_dir`.
    let fd = retry(|| unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    // SAFETY: just opened.
    Ok(File::from(unsafe { owned(fd) }))
}

/// Creates the file `name` in `dir`, which must not exist in any form (a symbolic
/// link there is not followed: `EEXIST`), open for reading and writing.
pub(crate) fn create_new(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<File> {
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as in `open_dir`; the mode is passed as the variadic argument.
    let fd = retry(|| unsafe {
        libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint)
    })?;
    // SAFETY: just opened.
    Ok(File::from(unsafe { owned(fd) }))
}

/// Makes the directory `name` in `dir`.
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: a valid descriptor and C string.
    retry(|| unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
        .map(drop)
}

/// Renames `from` to `to`, both in `dir`; `to` is replaced if it is a file or a
/// symbolic link (the link itself, never what it points to).
pub(crate) fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    let d = dir.as_raw_fd();
    // SAFETY: a valid descriptor and C strings.
    retry(|| unsafe { libc::renameat(d, from.as_ptr(), d, to.as_ptr()) }).map(drop)
}

/// Makes `to` in `dir` a second name of `from` (not following a link `from` is).
pub(crate) fn link_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    let d = dir.as_raw_fd();
    // SAFETY: a valid descriptor and C strings.
    retry(|| unsafe { libc::linkat(d, from.as_ptr(), d, to.as_ptr(), 0) }).map(drop)
}

/// Removes the name `name` from `dir` (a link, a FIFO: the entry itself).
pub(crate) fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid descriptor and C string.
    retry(|| unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// Sets the times of `name` in `dir` to now, of a symbolic link itself if it is one.
pub(crate) fn touch_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid descriptor and C string; null times mean "now".
    retry(|| unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            std::ptr::null(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// What kind of file a status describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Unknown,
}

impl Kind {
    /// The kind, as a phrase ("a FIFO").
    pub(crate) fn phrase(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Socket => "a socket",
            Kind::Unknown => "a file of unknown type",
        }
    }
}

/// The parts of a file's status the store uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stat {
    pub(crate) kind: Kind,
    pub(crate) len: u64,
    pub(crate) mode: u32,
    pub(crate) mtime: SystemTime,
}

fn stat_of(st: &libc::stat) -> Stat {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFCHR => Kind::CharDevice,
        libc::S_IFBLK => Kind::BlockDevice,
        libc::S_IFSOCK => Kind::Socket,
        _ => Kind::Unknown,
    };
    let mtime = if st.st_mtime >= 0 {
        SystemTime::UNIX_EPOCH
            + Duration::new(
                st.st_mtime as u64,
                st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            )
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(st.st_mtime.unsigned_abs())
    };
    Stat {
        kind,
        len: u64::try_from(st.st_size).unwrap_or(0),
        mode: st.st_mode & 0o7777,
        mtime,
    }
}

/// The status of `name` in `dir`, of a symbolic link itself if it is one.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    // SAFETY: zeroed is a valid `stat`; a valid descriptor and C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    retry(|| unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(stat_of(&st))
}

/// The status of an open file.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    // SAFETY: zeroed is a valid `stat`; a valid descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    retry(|| unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(stat_of(&st))
}

/// Makes the directory `dir` itself durable (its entries).
pub(crate) fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    retry(|| unsafe { libc::fsync(fd.as_raw_fd()) }).map(drop)
}

/// Flushes the whole filesystem `fd` is on.
pub(crate) fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    retry(|| unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// The figures of the filesystem `fd` is on.
pub(crate) fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    // SAFETY: all-zero bytes are a valid `statvfs` (plain integers).
    let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a properly sized out-parameter.
    retry(|| unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut v) })?;
    Ok(v)
}

/// Asks the kernel to read all of `f` into its page cache in the background
/// (`posix_fadvise(WILLNEED)`); returns before the reading is done. Elsewhere than
/// on Linux it does nothing.
pub(crate) fn will_need(f: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: fadvise on a descriptor `f` holds open; it changes no memory of ours.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
    Ok(())
}

/// Turns `O_DIRECT` on or off for the open file `f`.
pub(crate) fn set_direct(f: &File, on: bool) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` holds open; only status flags change.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }).map(drop)
}

/// The names in the directory `dir` (not `.` and `..`), in no order.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // A descriptor of its own: `fdopendir` takes it over, and `closedir` closes it.
    let own = open_dir(dir, c".")?;
    // SAFETY: a valid descriptor we give up (closedir closes it).
    let d = unsafe { libc::fdopendir(own.as_raw_fd()) };
    if d.is_null() {
        return Err(io::Error::last_os_error()); // `own` still closes it
    }
    let _ = own.into_raw_fd();
    let mut names = Vec::new();
    let res = loop {
        // SAFETY: errno is thread-local; readdir on the stream we opened.
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break match e.raw_os_error() {
                Some(0) | None => Ok(()),
                Some(_) => Err(e),
            };
        }
        // SAFETY: readdir returned a valid entry whose name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    };
    // SAFETY: the stream from fdopendir, closed once.
    unsafe { libc::closedir(d) };
    res.map(|()| names)
}
