//! The mount program: `mount.anchorfs SOURCE MOUNTPOINT [-o OPTIONS] [-f] [-d]`.
//!
//! It follows mount(8)'s helper conventions: `-o` takes a comma-separated list in
//! which mount(8)'s generic options are accepted and ignored where they mean nothing
//! here; `-n`, `-s` and `-v` (which mount(8) may pass) are accepted. Without `-f` it
//! starts the daemon and returns only once the mount is live (status 0), or prints why
//! it could not mount (status 1). SIGTERM and SIGINT unmount cleanly.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use parking_lot::Mutex;

use crate::fs::fuse::{invalidate, FuseAdapter, DEFAULT_POLL};
use crate::fs::modes::ModePolicy;
use crate::fs::names::TimeNames;
use crate::fs::{AnchorFs, FsOptions, Invalidations, SharedStore};
use crate::store::file::FileStore;
use crate::store::lru::LruStore;
use crate::store::mem::MemStore;

/// Set in the daemon's environment: report readiness on stdout, then detach.
const READY_ENV: &str = "ANCHORFS_DAEMON_READY";

/// Everything the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArgs {
    /// The store: a directory, or `mem:`.
    pub source: String,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Stay in the foreground.
    pub foreground: bool,
    /// Debug logging.
    pub debug: bool,
    /// The `-o` options, parsed.
    pub opts: MountOptions,
}

/// The `-o` options that mean something here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Mount read-only.
    pub read_only: bool,
    /// Let other users in.
    pub allow_other: bool,
    /// Let the kernel check permissions against the modes shown (always on with
    /// `allow_other`).
    pub default_permissions: bool,
    /// Permission bits of every directory (`dir_mode=`, octal).
    pub dir_mode: Option<u16>,
    /// Permission bits of every file (`file_mode=`, octal).
    pub file_mode: Option<u16>,
    /// Owner shown on files.
    pub uid: Option<u32>,
    /// Group shown on files.
    pub gid: Option<u32>,
    /// Bytes of blob cache.
    pub cache_bytes: usize,
    /// How often to look for changes made elsewhere.
    pub poll: Duration,
    /// How version files are named.
    pub names: TimeNames,
    /// Where to log when detached (default: syslog).
    pub log: Option<PathBuf>,
    /// Answer no extended attribute requests at all, so the kernel stops asking
    /// (`ls -l` asks two per file); the `user.anchorfs.*` attributes are then gone.
    pub no_xattr: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_only: false,
            allow_other: false,
            default_permissions: false,
            dir_mode: None,
            file_mode: None,
            uid: None,
            gid: None,
            cache_bytes: 16 << 20,
            poll: DEFAULT_POLL,
            no_xattr: false,
            names: TimeNames::Rfc3339,
            log: None,
        }
    }
}

/// Parses a size: `256M`, `1G`, `64MiB`, `4096`.
pub fn parse_size(s: &str) -> Result<usize> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().with_context(|| format!("bad size {s:?}"))?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => bail!("bad size {s:?}: use a number with K, M or G"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("size {s:?} too large"))
}

/// Parses permission bits in octal: `0640`, `750`.
pub fn parse_mode(s: &str) -> Result<u16> {
    let m = u16::from_str_radix(s.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| anyhow!("bad mode {s:?}: use octal permission bits, e.g. 0640"))?;
    Ok(m)
}

/// Parses a duration: `1s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("bad duration {s:?}: use e.g. 500ms, 1s, 2m, 1h"),
    };
    if !secs.is_finite() || secs < 0.0 {
        bail!("bad duration {s:?}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Options of mount(8) and of the kernel that mean nothing to this filesystem.
fn is_ignored_generic(opt: &str) -> bool {
    const GENERIC: &[&str] = &[
        "rw",
        "defaults",
        "auto",
        "noauto",
        "user",
        "nouser",
        "users",
        "owner",
        "group",
        "_netdev",
        "nofail",
        "exec",
        "noexec",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "atime",
        "noatime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "lazytime",
        "nolazytime",
        "diratime",
        "nodiratime",
        "sync",
        "async",
        "dirsync",
        "mand",
        "nomand",
        "silent",
        "loud",
        "iversion",
        "noiversion",
        "auto_unmount",
    ];
    GENERIC.contains(&opt)
        || opt.starts_with("x-")
        || opt.starts_with("comment=")
        || opt.starts_with("fsname=")
        || opt.starts_with("subtype=")
        || opt.starts_with("context=")
}

/// Parses a `-o` list into `opts`.
pub fn parse_options(list: &str, opts: &mut MountOptions) -> Result<()> {
    for opt in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("ro", None) => opts.read_only = true,
            ("rw", None) => opts.read_only = false,
            ("allow_other", None) => opts.allow_other = true,
            ("default_permissions", None) => opts.default_permissions = true,
            ("noxattr", None) => opts.no_xattr = true,
            ("uid", Some(v)) => {
                opts.uid = Some(v.parse().with_context(|| format!("bad uid {v:?}"))?)
            }
            ("gid", Some(v)) => {
                opts.gid = Some(v.parse().with_context(|| format!("bad gid {v:?}"))?)
            }
            ("dir_mode", Some(v)) => opts.dir_mode = Some(parse_mode(v)?),
            ("file_mode", Some(v)) => opts.file_mode = Some(parse_mode(v)?),
            ("cache", Some(v)) => opts.cache_bytes = parse_size(v)?,
            ("poll", Some(v)) => opts.poll = parse_duration(v)?,
            ("names", Some("compact")) => opts.names = TimeNames::Compact,
            ("names", Some("rfc3339")) => opts.names = TimeNames::Rfc3339,
            ("log", Some(v)) => opts.log = Some(PathBuf::from(v)),
            _ if is_ignored_generic(opt) => {}
            _ => bail!("unknown mount option {opt:?}"),
        }
    }
    Ok(())
}

const USAGE: &str = "usage: mount.anchorfs SOURCE MOUNTPOINT [-o OPTIONS] [-f] [-d]\n\
    SOURCE: a store directory (created if missing) or mem:\n\
    -o: comma-separated options:\n    \
      ro                   every write is refused (EROFS)\n    \
      allow_other          let users other than the mounting one in; the kernel then checks\n    \
                           every access against the modes shown (default_permissions is\n    \
                           implied), and opening a version for writing needs write\n    \
                           permission on its anchor directory\n    \
      default_permissions  have the kernel check the modes shown (also without allow_other)\n    \
      uid=N, gid=N         owner and group shown on every node (default: the mounting user)\n    \
      dir_mode=OCTAL       directories' mode (default: the store directory's, at most 0755)\n    \
      file_mode=OCTAL      every file's mode (default: the mode it was written with, at most\n    \
                           what the store directory grants; 0644 masked so if unknown)\n    \
      cache=SIZE (default 16M), poll=DURATION (default 1s), names=compact, log=FILE, noxattr,\n    \
      and mount(8)'s generic options (defaults, noauto, user, _netdev, nofail, x-systemd.*, ...)\n\
    -f: stay in the foreground   -d: debug logging";

/// Parses the command line (after the program name).
pub fn parse_args(args: &[OsString]) -> Result<MountArgs> {
    let mut positional = Vec::new();
    let mut opts = MountOptions::default();
    let (mut foreground, mut debug) = (false, false);
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        match a.as_str() {
            "-h" | "--help" => bail!("{USAGE}"),
            "-f" => foreground = true,
            "-d" => {
                debug = true;
            }
            "-n" | "-s" | "-v" => {}
            "-o" => {
                i += 1;
                let list = args
                    .get(i)
                    .ok_or_else(|| anyhow!("-o needs a list of options\n{USAGE}"))?;
                parse_options(&list.to_string_lossy(), &mut opts)?;
            }
            s if s.starts_with("-o") => parse_options(&s[2..], &mut opts)?,
            s if s.starts_with('-') && s.len() > 1 => bail!("unknown flag {s}\n{USAGE}"),
            _ => positional.push(args[i].clone()),
        }
        i += 1;
    }
    let [source, mountpoint] = <[OsString; 2]>::try_from(positional)
        .map_err(|_| anyhow!("need exactly SOURCE and MOUNTPOINT\n{USAGE}"))?;
    Ok(MountArgs {
        source: source.to_string_lossy().into_owned(),
        mountpoint: PathBuf::from(mountpoint),
        foreground,
        debug,
        opts,
    })
}

/// Whether `path` is a mount point in this process's mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    mount_device(path).is_some()
}

/// The device (`MAJOR:MINOR`) mounted at `path`, from /proc/self/mountinfo (read
/// without touching the mount itself).
fn mount_device(path: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = canon.as_os_str().as_bytes();
    info.split(|&b| b == b'\n').rev().find_map(|line| {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let mp = fields.get(4)?;
        if unescape_mountinfo(mp) != want {
            return None;
        }
        Some(String::from_utf8_lossy(fields.get(2)?).into_owned())
    })
}

/// Raises the kernel's read-ahead for the mount (FUSE can only lower it from the
/// default of 128 KiB), so sequential reads arrive as 1 MiB requests, two at a
/// time (2 MiB read 5% faster than 1 MiB, and 4 or 8 MiB slower, in one run). Best
/// effort.
fn raise_read_ahead(mountpoint: &Path) {
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&knob, b"2048") {
        log::debug!("raising read-ahead ({knob}): {e}");
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// Opens the store named by SOURCE, with the blob cache.
fn open_store(source: &str, cache: usize) -> Result<(SharedStore, Option<PathBuf>)> {
    if source == "mem:" {
        return Ok((Arc::new(LruStore::new(MemStore::new(), cache)), None));
    }
    let path = PathBuf::from(source);
    let store = FileStore::create(&path).with_context(|| format!("opening store {source}"))?;
    let abs = std::fs::canonicalize(&path).unwrap_or(path);
    Ok((Arc::new(LruStore::new(store, cache)), Some(abs)))
}

/// A logger to stderr, a file, or syslog.
struct Logger {
    level: log::LevelFilter,
    sink: Mutex<Sink>,
}

enum Sink {
    Stderr,
    File(File),
    Syslog(Option<UnixDatagram>),
}

/// Messages of `fuser` that report nothing wrong: a reply to a request the kernel
/// dropped because its caller was interrupted or killed (ENOENT), and the second
/// unmount attempt after `umount` already removed the mount (EINVAL). Shown only
/// with debug logging.
fn expected_fuser_noise(r: &log::Record) -> bool {
    if !r.target().starts_with("fuser") || r.level() > log::Level::Warn {
        return false;
    }
    let text = r.args().to_string();
    (text.starts_with("Failed to send FUSE reply") && text.contains("os error 2)"))
        || (text.starts_with("Failed to umount filesystem") && text.contains("os error 22)"))
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
            && (m.target().starts_with("anchorfs") || m.level() <= log::Level::Warn)
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata())
            || (self.level < log::LevelFilter::Debug && expected_fuser_noise(r))
        {
            return;
        }
        let mut sink = self.sink.lock();
        match &mut *sink {
            Sink::Stderr => eprintln!("mount.anchorfs: {}: {}", r.level(), r.args()),
            Sink::File(f) => {
                let _ = writeln!(f, "{} {} {}", crate::Timestamp::now(), r.level(), r.args());
            }
            Sink::Syslog(sock) => {
                let pri = match r.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    _ => 7,
                } + 8; // facility: user
                let msg = format!("<{pri}>anchorfs[{}]: {}", std::process::id(), r.args());
                if let Some(s) = sock {
                    let _ = s.send(msg.as_bytes());
                }
            }
        }
    }

    fn flush(&self) {}
}

fn init_logging(args: &MountArgs, detached: bool) -> Result<()> {
    let level = if args.debug {
        log::LevelFilter::Debug
    } else {
        std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(log::LevelFilter::Info)
    };
    let sink = match (&args.opts.log, detached) {
        (Some(path), _) => Sink::File(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?,
        ),
        (None, false) => Sink::Stderr,
        (None, true) => Sink::Syslog(
            UnixDatagram::unbound()
                .ok()
                .filter(|s| s.connect("/dev/log").is_ok()),
        ),
    };
    let logger = Logger {
        level,
        sink: Mutex::new(sink),
    };
    log::set_max_level(level);
    let _ = log::set_boxed_logger(Box::new(logger));
    Ok(())
}

/// Checks what can be checked before mounting, for clear messages.
fn preflight(args: &MountArgs) -> Result<()> {
    let mp = &args.mountpoint;
    let meta = match std::fs::metadata(mp) {
        Ok(m) => m,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            bail!(
                "mount point {} is busy: a filesystem whose daemon died is still mounted \
                 there (transport endpoint not connected); unmount it first \
                 (`fusermount3 -u {}` or `umount -l {}`)",
                mp.display(),
                mp.display(),
                mp.display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("mount point {} does not exist", mp.display())
        }
        Err(e) => bail!("mount point {} cannot be used: {e}", mp.display()),
    };
    if !meta.is_dir() {
        bail!("mount point {} is not a directory", mp.display());
    }
    if is_mounted(mp) {
        bail!(
            "mount point {} is busy: something is already mounted there",
            mp.display()
        );
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        bail!("cannot open /dev/fuse ({e}): is the fuse module loaded and the device permitted?");
    }
    Ok(())
}

/// Caps glibc's malloc arenas at two (one per core of a small machine) before the
/// daemon starts its threads. By default each thread that ever allocates may get an
/// arena of its own, and the request, fetch and commit threads' freed memory then
/// sits in a dozen of them: building a 4,000-version anchor through the mount peaked
/// at 107 MiB of RSS with the default and 78 MiB with one arena.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the allocator's free pages back to the system. Commits to a long history
/// allocate and free buffers of its size (0.5 MB at 10,000 versions) on several
/// threads; glibc keeps what they leave between live allocations, and the daemon's
/// memory grew with it. Called once per poll interval, it costs well under a
/// millisecond.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread (and the threads it starts), so
/// one thread can wait for them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a properly initialised sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Mounts and serves until unmounted or signalled. `ready` is told once the mount
/// is live (or why it failed).
fn serve(args: &MountArgs, ready: &mut dyn FnMut(Result<(), String>)) -> Result<()> {
    limit_malloc_arenas();
    let fail = |ready: &mut dyn FnMut(Result<(), String>), e: anyhow::Error| {
        ready(Err(format!("{e:#}")));
        e
    };
    if let Err(e) = preflight(args) {
        return Err(fail(ready, e));
    }
    let (store, store_path) = match open_store(&args.source, args.opts.cache_bytes) {
        Ok(s) => s,
        Err(e) => return Err(fail(ready, e)),
    };
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // Modes never show more than the store's own directory grants.
    let store_mode = store_path.as_ref().and_then(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).ok().map(|m| m.permissions().mode())
    });
    let fs_opts = FsOptions {
        modes: ModePolicy::new(store_mode, args.opts.dir_mode, args.opts.file_mode),
        check_access: args.opts.allow_other || args.opts.default_permissions,
        mode_log: store_path
            .as_ref()
            .map(|p| p.join(crate::fs::modes::FILE_NAME)),
        time_names: args.opts.names,
        uid: args.opts.uid.unwrap_or(uid),
        gid: args.opts.gid.unwrap_or(gid),
        size_log: store_path
            .as_ref()
            .map(|p| p.join(crate::fs::sizes::FILE_NAME)),
        store_path,
        mutable_ttl: args.opts.poll,
        read_only: args.opts.read_only,
    };
    let core = match AnchorFs::new(store, fs_opts) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            return Err(fail(
                ready,
                anyhow!("loading anchors from {}: {e}", args.source),
            ))
        }
    };
    let sigset = block_signals();

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(args.source.clone()),
        fuser::MountOption::Subtype("anchorfs".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    if args.opts.read_only {
        config.mount_options.push(fuser::MountOption::RO);
    }
    // With other users in, the kernel checks every access against the modes shown;
    // the one check it cannot make (opening a version for writing adds a version to
    // its anchor directory) is the filesystem's own.
    if args.opts.default_permissions || args.opts.allow_other {
        config
            .mount_options
            .push(fuser::MountOption::DefaultPermissions);
    }
    if args.opts.allow_other {
        config.acl = fuser::SessionACL::All;
    }
    config.n_threads = Some(4);
    config.clone_fd = true;
    let mut session = match fuser::Session::new(
        FuseAdapter::new(core.clone()).with_xattrs(!args.opts.no_xattr),
        &args.mountpoint,
        &config,
    ) {
        Ok(s) => s,
        Err(e) => {
            return Err(fail(
                ready,
                anyhow!(
                    "cannot mount {} on {}: {e}",
                    args.source,
                    args.mountpoint.display()
                ),
            ))
        }
    };
    let mut unmounter = session.unmount_callable();
    let notifier = session.notifier();
    let stop = Arc::new(AtomicBool::new(false));

    // Kernel cache entries made stale by this mount's own commits and writes, passed
    // on from a thread of their own (never from inside a request).
    let (inval_tx, inval_rx) = std::sync::mpsc::channel::<Invalidations>();
    {
        core.set_invalidator(Box::new(move |inv| {
            let _ = inval_tx.send(inv);
        }));
        let notifier = session.notifier();
        std::thread::Builder::new()
            .name("anchorfs-inval".into())
            .spawn(move || {
                while let Ok(inv) = inval_rx.recv() {
                    invalidate(&notifier, &inv);
                }
            })?;
    }

    // Verified chunks for the kernel's page cache (random reads of versions), stored
    // from a thread of their own: storing waits for the pages' locks, which reads
    // in flight hold until their replies. A full queue drops what it cannot take
    // (filling is only ahead of reads).
    {
        let (fill_tx, fill_rx) = std::sync::mpsc::sync_channel::<(u64, u64, crate::Blob)>(256);
        core.set_page_filler(Box::new(move |ino, offset, data| {
            let _ = fill_tx.try_send((ino, offset, data));
        }));
        let notifier = session.notifier();
        std::thread::Builder::new()
            .name("anchorfs-fill".into())
            .spawn(move || {
                while let Ok((ino, offset, data)) = fill_rx.recv() {
                    crate::fs::fuse::fill_pages(&notifier, ino, offset, &data);
                }
            })?;
    }

    // Poll for changes made by other processes, mounts and the CLI.
    let poller = {
        let (core, stop, poll) = (core.clone(), stop.clone(), args.opts.poll);
        std::thread::Builder::new()
            .name("anchorfs-poll".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(poll);
                    match core.refresh() {
                        Ok(inv) => invalidate(&notifier, &inv),
                        Err(e) => log::error!("polling the anchor map: {e}"),
                    }
                    release_free_memory();
                }
            })?
    };

    if !is_mounted(&args.mountpoint) {
        return Err(fail(
            ready,
            anyhow!("the mount did not appear at {}", args.mountpoint.display()),
        ));
    }

    // SIGTERM / SIGINT: unmount, which ends the session loop. Started once the
    // mount is known to be there: a signal that came earlier (as soon as the mount
    // appeared to another process) has waited, blocked, and is taken now.
    let mountpoint = args.mountpoint.clone();
    std::thread::Builder::new()
        .name("anchorfs-signals".into())
        .spawn(move || {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait with the set blocked above and a valid out-parameter.
            unsafe { libc::sigwait(&sigset, &mut sig) };
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            if let Err(e) = unmounter.unmount() {
                log::error!("unmounting {}: {e}", mountpoint.display());
            }
        })?;
    raise_read_ahead(&args.mountpoint);
    log::info!("mounted {} on {}", args.source, args.mountpoint.display());
    ready(Ok(()));
    let res = session.run();
    stop.store(true, Ordering::Release);
    let _ = poller.join();
    log::info!("unmounted {}", args.mountpoint.display());
    res.context("serving the mount")
}

/// Starts the daemon and waits until it reports the mount live or failed.
fn spawn_daemon(raw_args: &[OsString]) -> Result<()> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = Command::new(exe)
        .arg("mount")
        .args(raw_args)
        .arg("-f")
        .env(READY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the mount daemon")?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no pipe to the mount daemon"))?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .context("waiting for the mount daemon")?;
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "ready" => Ok(()),
        Some(("error", msg)) => {
            let _ = child.wait();
            bail!("{msg}")
        }
        _ => {
            let status = child.wait().ok();
            bail!("the mount daemon exited before the mount was live ({status:?})")
        }
    }
}

/// Runs the mount program on `args` (after the program name); returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let parsed = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mount.anchorfs: {e:#}");
            return if args.iter().any(|a| a == "-h" || a == "--help") {
                0
            } else {
                1
            };
        }
    };
    let daemon = std::env::var_os(READY_ENV).is_some();
    if !parsed.foreground {
        return match spawn_daemon(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("mount.anchorfs: {e:#}");
                1
            }
        };
    }
    if let Err(e) = init_logging(&parsed, daemon) {
        eprintln!("mount.anchorfs: {e:#}");
        return 1;
    }
    let mut ready = |r: Result<(), String>| {
        if daemon {
            let mut out = std::io::stdout();
            let _ = match &r {
                Ok(()) => writeln!(out, "ready"),
                Err(msg) => writeln!(out, "error {msg}"),
            };
            let _ = out.flush();
            // Detach: a session of our own, and stdout no longer tied to the caller.
            // SAFETY: setsid and dup2 on valid descriptors.
            unsafe {
                libc::setsid();
                if let Ok(null) = File::options().write(true).open("/dev/null") {
                    use std::os::unix::io::AsRawFd;
                    libc::dup2(null.as_raw_fd(), 1);
                }
            }
        } else if let Err(msg) = &r {
            eprintln!("mount.anchorfs: {msg}");
        }
    };
    match serve(&parsed, &mut ready) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn helper_conventions() {
        let a = parse_args(&args(&[
            "/srv/store",
            "/mnt/a",
            "-o",
            "rw,defaults,noauto,user,_netdev,nofail,x-systemd.automount,allow_other,uid=1000,cache=64M,poll=500ms,names=compact",
            "-n",
        ]))
        .unwrap();
        assert_eq!(a.source, "/srv/store");
        assert_eq!(a.mountpoint, PathBuf::from("/mnt/a"));
        assert!(!a.foreground);
        assert!(a.opts.allow_other);
        assert_eq!(a.opts.uid, Some(1000));
        assert_eq!(a.opts.cache_bytes, 64 << 20);
        assert_eq!(a.opts.poll, Duration::from_millis(500));
        assert_eq!(a.opts.names, TimeNames::Compact);
        let b = parse_args(&args(&["mem:", "/m", "-f", "-d", "-oro"])).unwrap();
        assert!(b.foreground && b.debug && b.opts.read_only);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(parse_args(&args(&["/s"])).is_err());
        assert!(parse_args(&args(&["/s", "/m", "-o", "bogus"])).is_err());
        assert!(parse_args(&args(&["/s", "/m", "-o", "cache=lots"])).is_err());
        assert!(parse_args(&args(&["/s", "/m", "-o", "poll=-1s"])).is_err());
        assert!(parse_args(&args(&["/s", "/m", "-x"])).is_err());
        assert!(parse_args(&args(&["/s", "/m", "-o"])).is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("3MiB").unwrap(), 3 << 20);
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("1 fortnight").is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(br"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape_mountinfo(br"/x\134"), b"/x\\");
        assert_eq!(unescape_mountinfo(br"/tail\04"), br"/tail\04");
    }
}
