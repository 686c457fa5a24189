//! Shared helpers for tests that mount a store for real.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built `anchorfs` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_anchorfs"))
}

/// Whether FUSE tests are switched off (only ever by `ANCHORFS_SKIP_FUSE=1`).
pub fn fuse_skipped() -> bool {
    if std::env::var("ANCHORFS_SKIP_FUSE").as_deref() == Ok("1") {
        eprintln!("ANCHORFS_SKIP_FUSE=1: skipping a real-mount test");
        return true;
    }
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: FUSE tests cannot run (set ANCHORFS_SKIP_FUSE=1 to skip them on purpose)"
    );
    false
}

/// Whether `path` is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    anchorfs::mount::is_mounted(path)
}

/// A store mounted in a temp dir by the real binary in the foreground; unmounted
/// (and the daemon reaped) on drop.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub mnt: PathBuf,
    child: Option<Child>,
}

impl Mounted {
    /// Mounts `store` (any source the mount takes: a path, `mem:`, a
    /// `postgres://` URL) with extra `-o` options.
    pub fn new(store: impl AsRef<std::ffi::OsStr>, opts: &str) -> Mounted {
        let store = store.as_ref();
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        let mut cmd = Command::new(binary());
        cmd.arg("mount").arg(store).arg(&mnt).arg("-f");
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the mount");
        let start = Instant::now();
        while !is_mounted(&mnt) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the mount exited before it was live: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the mount did not appear in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mounted {
            dir,
            store: PathBuf::from(store),
            mnt,
            child: Some(child),
        }
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmounts and waits for the daemon; returns its exit status code.
    ///
    /// An unmount refused as busy is tried again: a child that another test
    /// thread of this process is starting holds copies of this process's
    /// descriptors, a file of the mount among them, until its `exec` closes them.
    pub fn unmount(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let umount = |mnt: &Path| {
            Command::new("umount")
                .arg(mnt)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut unmounted = umount(&self.mnt);
        let start = Instant::now();
        let mut tried = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if !unmounted && tried.elapsed() > Duration::from_millis(100) {
                unmounted = umount(&self.mnt);
                tried = Instant::now();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits for the daemon to exit by itself; returns its exit status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if start.elapsed() > limit {
                self.child = Some(child);
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Runs a program; returns (status code, stdout, stderr).
pub fn run(program: &str, args: &[&std::ffi::OsStr]) -> (i32, Vec<u8>, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Maps the first `len` bytes of `f` shared and writable, lets `edit` change them,
/// and writes them back (`msync`) before unmapping.
pub fn edit_through_mapping(f: &std::fs::File, len: usize, edit: impl FnOnce(&mut [u8])) {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of `len` bytes of an open file, used only as a
    // slice within this call and unmapped before it returns.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        edit(std::slice::from_raw_parts_mut(p.cast::<u8>(), len));
        assert_eq!(libc::msync(p, len, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(p, len), 0);
    }
}

/// Writes `data` to `path` (created or truncated) and closes it, checking the
/// close too: through a mount the close is where a version is committed, and
/// dropping a `File` ignores what its close returns. `Ok` only when every call
/// returned 0.
pub fn write_and_close(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken from the file, which no longer owns it.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every regular file under `dir`, at any depth, of at least `min` bytes.
pub fn files_of_at_least(dir: &Path, min: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            } else if meta.len() >= min {
                out.push(e.path());
            }
        }
    }
    out
}

/// `n` bytes of a xorshift sequence from `seed`: content that does not repeat or
/// compress, the same for the same seed.
pub fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Fails unless this runs as root: passthrough (reads the kernel serves from a
/// mount's whole copies) needs `CAP_SYS_ADMIN`.
pub fn require_root() {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "passthrough needs CAP_SYS_ADMIN: run the real-mount tests as root"
    );
}
