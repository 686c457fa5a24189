//! Mounting and serving: checks before mounting, opening the store (`store`), the
//! FUSE session and its helper threads (invalidations, page filling, polling, signals),
//! and, without `-f`, starting the daemon and the readiness handshake with it (one
//! line each on the daemon's stdout: `note MSG`, `ready`, `error MSG`).
//!
//! The calls into libc (signals, the allocator, the process's ids and session) are
//! each behind a small function at the end.
//!
//! Threads: the session's request threads (fuser's), `anchorfs-inval` (kernel
//! invalidations), `anchorfs-fill` (page filling), `anchorfs-poll` (the
//! [`poller`], stopped and joined when the session ends, by [`Ending`]) and
//! `anchorfs-signals`. [`Ending`] owns its one lock (the poller's handle), taken
//! only to set and to take it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};

use crate::fs::fuse::{invalidate, FuseAdapter, Passthrough};
use crate::fs::modes::ModePolicy;
use crate::fs::{AnchorFs, FsOptions, Invalidations};

use super::mountinfo::{is_mounted, mount_device, raise_read_ahead};
use super::store::open_store;
use super::{poller, MountArgs};

/// The most bytes of chunks waiting to be stored in the kernel's page cache.
const FILL_QUEUE_BYTES: usize = 8 << 20;
/// Set in the daemon's environment: report readiness on stdout, then detach.
pub(super) const READY_ENV: &str = "ANCHORFS_DAEMON_READY";

/// What the mount tells whoever started it.
pub(super) enum Status {
    /// Something worth a line on stderr (a store was created).
    Note(String),
    /// The mount is live.
    Live,
    /// It could not mount, and why.
    Failed(String),
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

/// Mounts and serves until unmounted or signalled. `ready` is told once the mount
/// is live (or why it failed).
pub(super) fn serve(args: &MountArgs, ready: &mut dyn FnMut(Status)) -> Result<()> {
    tune_malloc();
    let fail = |ready: &mut dyn FnMut(Status), e: anyhow::Error| {
        ready(Status::Failed(crate::cli::one_line(&e)));
        e
    };
    if let Err(e) = preflight(args) {
        return Err(fail(ready, e));
    }
    let (store, whole) = match open_store(&args.source, &args.opts, ready) {
        Ok(s) => s,
        Err(e) => return Err(fail(ready, e)),
    };
    let store_path = store.local_dir().map(Path::to_path_buf);
    if store_path.is_none() {
        pad_heap_for_network_reads();
    }
    let (uid, gid) = effective_ids();
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
    // Listed as `fuse.anchorfs` with the store as its source (mount, df,
    // /proc/mounts). Root mounts with mount(2), where the kernel takes the subtype as
    // an option; others through fusermount3, which takes it as `subtype=`.
    let fsname = store_path
        .as_ref()
        .map_or_else(|| args.source.clone(), |p| p.display().to_string());
    let subtype = if uid == 0 {
        fuser::MountOption::CUSTOM("subtype=anchorfs".into())
    } else {
        fuser::MountOption::Subtype("anchorfs".into())
    };
    config.mount_options = vec![
        fuser::MountOption::FSName(fsname),
        subtype,
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
    let stop = Arc::new(poller::Stop::new());
    let ending = Arc::new(Ending {
        stop: stop.clone(),
        poller: parking_lot::Mutex::new(None),
        mountpoint: args.mountpoint.clone(),
        device: OnceLock::new(),
    });
    let adapter = {
        let ending = ending.clone();
        let adapter = FuseAdapter::new(core.clone())
            .with_xattrs(!args.opts.no_xattr)
            .on_destroy(Box::new(move || ending.at_session_end()));
        // Large versions read through the disk cache get whole local copies, which
        // later opens read through the kernel alone.
        match whole.filter(|_| !args.opts.no_passthrough).map(Arc::new) {
            Some(whole) => {
                let passthrough = Arc::new(Passthrough::new(whole.clone()));
                let on = passthrough.clone();
                core.set_read_tee(Box::new(move |r, size, offset, bytes| {
                    if on.is_on() {
                        whole.offer(r, size, offset, bytes)
                    }
                }));
                adapter.with_passthrough(passthrough)
            }
            None => adapter,
        }
    };
    let mut session = match fuser::Session::new(adapter, &args.mountpoint, &config) {
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
    // in flight hold until their replies. A full queue (by count, or by bytes: a
    // chunk may be MiBs) drops what it cannot take (filling is only ahead of reads).
    {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (fill_tx, fill_rx) = std::sync::mpsc::sync_channel::<(u64, u64, crate::Blob)>(256);
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        core.set_page_filler(Box::new(move |ino, offset, data| {
            let len = data.len();
            if q.fetch_add(len, Ordering::SeqCst) + len > FILL_QUEUE_BYTES {
                q.fetch_sub(len, Ordering::SeqCst);
                return;
            }
            if fill_tx.try_send((ino, offset, data)).is_err() {
                q.fetch_sub(len, Ordering::SeqCst);
            }
        }));
        let notifier = session.notifier();
        std::thread::Builder::new()
            .name("anchorfs-fill".into())
            .spawn(move || {
                while let Ok((ino, offset, data)) = fill_rx.recv() {
                    crate::fs::fuse::fill_pages(&notifier, ino, offset, &data);
                    queued.fetch_sub(data.len(), Ordering::SeqCst);
                }
            })?;
    }

    // Poll for changes made by other processes, mounts, hosts and the CLI, and
    // sooner when the store tells of them (see `poller`).
    let poller = {
        let (core, stop, poll) = (core.clone(), stop.clone(), args.opts.poll);
        let watch = core.store().watch();
        if watch.is_some() {
            log::info!("the store tells of changes: refreshing when told, or every {poll:?}");
        }
        std::thread::Builder::new()
            .name("anchorfs-poll".into())
            .spawn(move || {
                poller::run(&core, watch.as_deref(), poll, &stop, &mut |inv| {
                    invalidate(&notifier, &inv);
                    release_free_memory();
                });
            })?
    };

    *ending.poller.lock() = Some(poller);
    let Some(device) = mount_device(&args.mountpoint) else {
        return Err(fail(
            ready,
            anyhow!("the mount did not appear at {}", args.mountpoint.display()),
        ));
    };
    let _ = ending.device.set(device);

    // SIGTERM / SIGINT: unmount, which ends the session loop. Started once the
    // mount is known to be there: a signal that came earlier (as soon as the mount
    // appeared to another process) has waited, blocked, and is taken now.
    let mountpoint = args.mountpoint.clone();
    std::thread::Builder::new()
        .name("anchorfs-signals".into())
        .spawn(move || {
            let sig = wait_for_signal(&sigset);
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            if let Err(e) = unmounter.unmount() {
                log::error!("unmounting {}: {e}", mountpoint.display());
            }
        })?;
    raise_read_ahead(&args.mountpoint);
    log::info!("mounted {} on {}", args.source, args.mountpoint.display());
    ready(Status::Live);
    let res = session.run();
    ending.finish();
    res.context("serving the mount")
}

/// How the daemon ends once the session's request threads are done.
///
/// `fuser` (0.18) then unmounts the mount point by its path even when the kernel
/// has already unmounted this mount (`umount` from outside): its check of the FUSE
/// connection reads a dead connection as a live one. If another mount has been put
/// on the same point in the meantime (a remount, a restarted service), that would
/// unmount it. So when the mount point no longer holds this mount's device, the
/// daemon finishes at the end of the session and exits before `fuser` can.
struct Ending {
    stop: Arc<poller::Stop>,
    poller: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    mountpoint: PathBuf,
    /// The device (`MAJOR:MINOR`) of this mount, once it is known to be there.
    device: OnceLock<String>,
}

impl Ending {
    /// Stops and joins the poller.
    fn finish(&self) {
        self.stop.stop();
        if let Some(poller) = self.poller.lock().take() {
            let _ = poller.join();
        }
        log::info!("unmounted {}", self.mountpoint.display());
    }

    /// From the session's teardown: exits (status 0) if this mount is gone.
    fn at_session_end(&self) {
        let Some(ours) = self.device.get() else {
            return;
        };
        if mount_device(&self.mountpoint).as_ref() != Some(ours) {
            self.finish();
            std::process::exit(0);
        }
    }
}

/// Starts the daemon and waits until it reports the mount live or failed; passes on
/// its notes.
pub(super) fn spawn_daemon(args: &MountArgs) -> Result<()> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount")
        .arg(&args.source)
        .arg(&args.mountpoint)
        .arg("-f");
    for list in &args.option_lists {
        cmd.arg("-o").arg(list);
    }
    if args.debug {
        cmd.arg("-d");
    }
    let mut child = cmd
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
    let mut out = BufReader::new(out);
    loop {
        let mut line = String::new();
        out.read_line(&mut line)
            .context("waiting for the mount daemon")?;
        let line = line.trim_end();
        match line.split_once(' ') {
            _ if line == "ready" => return Ok(()),
            Some(("note", msg)) => eprintln!("{}: {msg}", args.program),
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
}

/// Tells the process that started this daemon (waiting in [`spawn_daemon`]) what
/// `status` says, on stdout; once the mount is live or has failed, detaches.
pub(super) fn tell_starter(status: &Status) {
    let mut out = std::io::stdout();
    let _ = match status {
        Status::Note(msg) => writeln!(out, "note {msg}"),
        Status::Live => writeln!(out, "ready"),
        Status::Failed(msg) => writeln!(out, "error {msg}"),
    };
    let _ = out.flush();
    if !matches!(status, Status::Note(_)) {
        detach();
    }
}

/// Detaches: a session of our own, and stdout no longer tied to the caller.
fn detach() {
    // SAFETY: setsid and dup2 on valid descriptors.
    unsafe {
        libc::setsid();
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            use std::os::unix::io::AsRawFd;
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

/// This process's effective user and group ids.
pub(super) fn effective_ids() -> (libc::uid_t, libc::gid_t) {
    // SAFETY: geteuid/getegid cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Sets glibc's malloc up for a long-running daemon before it starts its threads.
///
/// - Arenas capped at two (one per core of a small machine). By default each thread
///   that ever allocates may get an arena of its own, and the request, fetch and
///   commit threads' freed memory then sits in a dozen of them: building a
///   4,000-version anchor through the mount peaked at 107 MiB of RSS with the
///   default and 78 MiB with one arena.
/// - The size above which a block gets pages of its own kept at 128 KiB. glibc
///   raises that size to the largest block freed so far, so once a commit frees a
///   long history's buffer (0.5 MB at 10,000 versions), every later one is carved
///   out of the heap, where the holes they leave between live blocks stay resident.
///   Building a 8,000-version anchor with four writers peaked at 56 to 65 MiB with
///   the rising size and at 49 MiB with it fixed.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Sets glibc's malloc up for a store across a network, once it is open: the top
/// of the heap keeps 16 MiB when trimmed, and grows by as much more. The database
/// client receives every row into a buffer of its own, as large as the chunk it
/// holds; without the pad each such buffer is mapped afresh (it is over the mmap
/// threshold and the heap's top is smaller), and every page of it is faulted in,
/// which on a virtual machine that hands freed memory back to its host costs
/// more than the copy. A first read of 256 MiB from PostgreSQL: 56,000–60,000
/// page faults without the pad, 16,000–18,000 with it, and a fifth less CPU in
/// the daemon. The periodic [`release_free_memory`] still hands the pad back
/// when reads stop.
fn pad_heap_for_network_reads() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}

/// Hands the allocator's free pages back to the system. Commits to a long history
/// allocate and free buffers of its size (0.5 MB at 10,000 versions) on several
/// threads; glibc keeps what they leave between live allocations, and the daemon's
/// memory grew with it. The chunk buffers kept for reads go too, once reads have
/// stopped. Called once per poll interval, it costs well under a millisecond.
fn release_free_memory() {
    crate::split::release_idle_buffers();
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

/// Waits for one of the signals in `set` (blocked with [`block_signals`]) and
/// returns its number.
fn wait_for_signal(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: sigwait with the set blocked and a valid out-parameter.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
