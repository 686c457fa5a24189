//! Helpers shared by the reliability suites (`tests/reliability_*.rs`): mount
//! daemons that can be killed, small filesystems made for a test, the command line,
//! and checks of a store's versions.

#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anchorfs::anchor::{self, Anchor};
use anchorfs::store::file::FileStore;
use anchorfs::store::mem::MemStore;
use anchorfs::{content, Ref};

use crate::common::{binary, is_mounted};

/// The errno of an I/O error (0 if it has none).
pub fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Runs `cmd` with `sh -c`; returns its status and stderr followed by stdout.
pub fn sh(cmd: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// Whether a program can be run (found on PATH or by path).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Lazily unmounts whatever is mounted at `path` (ignoring "not mounted").
pub fn lazy_umount(path: &Path) {
    if is_mounted(path) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The command line, run on `store`.
pub fn cli(store: &Path) -> Command {
    let mut c = Command::new(binary());
    c.env_remove("ANCHORFS_STORE").arg("--store").arg(store);
    c
}

/// Runs the command line on `store` with `args`; returns (status, stdout, stderr).
pub fn cli_run(store: &Path, args: &[&str]) -> (i32, String, String) {
    let out = cli(store).args(args).output().expect("run anchorfs");
    decode(out)
}

/// Runs the command line on `store` with `args` and `stdin`.
pub fn cli_run_in(store: &Path, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = cli(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run anchorfs");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for anchorfs");
    let _ = feeder.join();
    decode(out)
}

fn decode(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `anchorfs fsck` on `store`; returns (status, stdout, stderr).
pub fn fsck(store: &Path) -> (i32, String, String) {
    cli_run(store, &["fsck"])
}

/// Asserts that `anchorfs fsck` passes on `store`.
pub fn assert_fsck_ok(store: &Path, when: &str) {
    let (code, out, err) = fsck(store);
    assert_eq!(code, 0, "fsck {when}: {out}{err}");
    assert!(out.contains("fsck: ok"), "fsck {when}: {out}{err}");
}

/// Closes `f` and reports what close(2) returned (dropping a `File` ignores it).
pub fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken out of a `File`, so it is open and owned here.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where writing a file failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// open or create
    Open,
    /// write
    Write,
    /// fsync
    Fsync,
    /// close
    Close,
}

/// Writes `data` as a new file at `path` in pieces of `piece` bytes, fsyncs it if
/// `fsync`, and closes it, reporting close's result. Ok only if every step was.
pub fn write_file(
    path: &Path,
    data: &[u8],
    piece: usize,
    fsync: bool,
) -> Result<(), (Stage, io::Error)> {
    let mut f = File::create(path).map_err(|e| (Stage::Open, e))?;
    for part in data.chunks(piece.max(1)) {
        if let Err(e) = f.write_all(part) {
            // The close must fail too; report the write's error.
            let _ = close(f);
            return Err((Stage::Write, e));
        }
    }
    if fsync {
        if let Err(e) = f.sync_all() {
            let _ = close(f);
            return Err((Stage::Fsync, e));
        }
    }
    close(f).map_err(|e| (Stage::Close, e))
}

/// Deterministic pseudo-random bytes.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The split tree root the mount or the CLI makes of `data` (chunking is
/// deterministic, so an empty store in memory gives the same ref).
pub fn split_root(data: &[u8]) -> Ref {
    content::store(&MemStore::new(), data).expect("split in memory")
}

/// The ref the mount stores `data` under: one raw blob when it is small, else the
/// root of its split tree.
pub fn mount_ref(data: &[u8]) -> Ref {
    if !data.is_empty() && data.len() <= anchorfs::fs::SMALL_MAX {
        Ref::of(data)
    } else {
        split_root(data)
    }
}

/// The history of `name` in the store at `store`.
pub fn history(store: &Path, name: &[u8]) -> Vec<Anchor> {
    let s = FileStore::open(store).expect("open store");
    anchor::history(&s, name).expect("history")
}

/// The refs in the history of `name`.
pub fn history_refs(store: &Path, name: &[u8]) -> HashSet<Ref> {
    history(store, name).into_iter().map(|a| a.r).collect()
}

/// The content of a version, read through the library.
pub fn read_content(store: &FileStore, r: &Ref) -> Vec<u8> {
    let kind = content::kind_of(store, r).expect("kind of content");
    let mut rd = content::open(store, *r, kind).expect("open content");
    let mut out = Vec::new();
    rd.read_to_end(&mut out).expect("read content");
    out
}

/// Every ref in the store.
pub fn all_refs(s: &FileStore) -> Vec<Ref> {
    let mut out = Vec::new();
    anchorfs::store::Getter::list_refs(s, &Ref::ZERO, &mut |r| {
        out.push(r);
        Ok(true)
    })
    .expect("list refs");
    out
}

/// Sets the modification time of `path` to `age` ago.
pub fn age_file(path: &Path, age: Duration) {
    let when = std::time::SystemTime::now() - age;
    let f = File::options()
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .expect("open to age");
    f.set_modified(when).expect("set mtime");
}

/// The peak resident set (VmHWM) of process `pid`, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A new file store in a temporary directory, mounted with `opts`, with an empty
/// anchor directory `doc`: the directory (keep it), the store's path and the mount.
pub fn store_mounted_with_doc(opts: &str) -> (tempfile::TempDir, PathBuf, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    let m = Daemon::start(&sp, opts);
    fs::create_dir(m.path("doc")).unwrap();
    (dir, sp, m)
}

/// A mount daemon run in the foreground by the real binary, that a test may kill.
/// Whatever happens, the mount is gone when this is dropped.
pub struct Daemon {
    pub mnt: PathBuf,
    pub store: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Mounts `store` on a new mount point in a temp dir.
    pub fn start(store: &Path, opts: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).expect("mount point");
        let mut d = Daemon::start_at(store, &mnt, opts);
        d._dir = Some(dir);
        d
    }

    /// Mounts `store` on `mnt`.
    pub fn start_at(store: &Path, mnt: &Path, opts: &str) -> Daemon {
        Daemon::try_start_at(store, mnt, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Mounts `store` on `mnt`, or says why the daemon exited instead.
    pub fn try_start_at(store: &Path, mnt: &Path, opts: &str) -> Result<Daemon, String> {
        Daemon::try_start_with(store, mnt, opts, None)
    }

    /// Mounts `store` on `mnt`, the daemon running with `umask` if given.
    pub fn try_start_with(
        store: &Path,
        mnt: &Path,
        opts: &str,
        umask: Option<libc::mode_t>,
    ) -> Result<Daemon, String> {
        let log = mnt.with_extension(format!("log-{}", rand::random::<u32>()));
        let mut cmd = Command::new(binary());
        cmd.arg("mount").arg(store).arg(mnt).arg("-f");
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts);
        }
        if let Some(mask) = umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask is async-signal-safe and touches nothing else.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask);
                    Ok(())
                });
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("daemon log"))
            .spawn()
            .expect("start the mount");
        let mut d = Daemon {
            mnt: mnt.to_path_buf(),
            store: store.to_path_buf(),
            log,
            child: Some(child),
            _dir: None,
        };
        let start = Instant::now();
        while !is_mounted(mnt) {
            if let Some(Ok(Some(status))) = d.child.as_mut().map(|c| c.try_wait()) {
                d.child = None;
                return Err(format!(
                    "the mount exited before it was live ({status}): {}",
                    d.log_text()
                ));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "the mount did not appear in 30 s: {}",
                    d.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(d)
    }

    /// Keeps `dir` (which holds the mount point) until after the unmount.
    pub fn owning(mut self, dir: tempfile::TempDir) -> Daemon {
        self._dir = Some(dir);
        self
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The daemon's process id (0 once it is gone).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the daemon is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// What the daemon logged.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 20 s) for the daemon to exit, leaving its mount as it is;
    /// returns its exit status.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// SIGKILLs the daemon, reaps it and detaches the dead mount.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        lazy_umount(&self.mnt);
    }

    /// Unmounts cleanly and waits for the daemon; returns its exit status.
    pub fn unmount(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("umount")
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                lazy_umount(&self.mnt);
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                lazy_umount(&self.mnt);
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.unmount();
        lazy_umount(&self.mnt);
    }
}

/// A filesystem mounted for one test (a size-limited tmpfs or a loop-mounted ext4
/// image); lazily unmounted on drop, so a failing test leaves nothing behind.
pub struct SmallFs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    /// A tmpfs of `size` (as tmpfs's size= option takes it: "8m").
    pub fn tmpfs(size: &str) -> SmallFs {
        SmallFs::memory("tmpfs", &format!("size={size},mode=0755"))
    }

    /// A ramfs: memory without a size limit, and a filesystem that refuses
    /// `O_DIRECT`.
    pub fn ramfs() -> SmallFs {
        SmallFs::memory("ramfs", "mode=0755")
    }

    fn memory(fstype: &str, opts: &str) -> SmallFs {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fs");
        fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", fstype, "-o", opts, fstype])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a {fstype} ({opts}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { path, _dir: dir }
    }

    /// An ext4 filesystem of `mib` MiB in an image file, loop-mounted. Needs
    /// mkfs.ext4 (e2fsprogs) and loop devices: fails loudly without them.
    pub fn ext4(mib: u64) -> SmallFs {
        assert!(
            have("mkfs.ext4"),
            "mkfs.ext4 is missing: install e2fsprogs to run the ext4 disk-full test"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let img = dir.path().join("fs.img");
        let f = File::create(&img).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-E", "nodiscard"])
            .arg(&img)
            .output()
            .expect("run mkfs.ext4");
        assert!(
            out.status.success(),
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join("fs");
        fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "loop-mounting an ext4 image (needs loop devices): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { path, _dir: dir }
    }

    /// Bytes available on the filesystem.
    pub fn free_bytes(&self) -> u64 {
        let c = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string and a zeroed out-parameter of the right type.
        unsafe {
            let mut v: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(c.as_ptr(), &mut v), 0);
            v.f_bavail * v.f_frsize
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `program args` as the user `nobody` (uid and gid 65534, no groups);
/// returns (status, stdout, stderr).
pub fn as_nobody(program: &str, args: &[&OsStr]) -> (i32, String, String) {
    assert!(
        have("setpriv"),
        "setpriv (util-linux) is needed to run as another user"
    );
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program)
        .args(args)
        .current_dir("/")
        .output()
        .expect("run setpriv");
    decode(out)
}
