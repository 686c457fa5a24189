//! Reads the kernel serves from a local file (FUSE passthrough): a version opened
//! for reading whose whole copy the disk cache holds
//! ([`WholeCopies`](crate::store::disk_cache::WholeCopies)) is opened with that
//! copy as its backing file, so its reads and `mmap`s never reach the daemon and
//! run at the speed of the local disk's page cache.
//!
//! The kernel's rule: while an inode is open through a backing file, every open of
//! it must name that same backing file, and while it is open through the page
//! cache, no open may name one (an open breaking this fails with EIO). So the first
//! open of a version inode uses its copy only when no other handle reads that
//! inode, and later opens share the same backing for as long as any handle uses
//! it. The kernel drops a file before the daemon hears of its release, so the
//! handles the daemon counts are never fewer than the kernel's, and each choice
//! agrees with the kernel's state.
//!
//! Registering a backing file needs `CAP_SYS_ADMIN`; the first refusal turns
//! passthrough off for the mount, whose reads then all go through the daemon.
//!
//! Locks: `backed`, held while one open decides and registers its backing (an
//! ioctl on the FUSE device, never store I/O or the copy's check) and while a
//! release forgets its handle. The core's handle table is read inside it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fuser::{BackingId, FileHandle, FopenFlags, KernelConfig, ReplyOpen};
use parking_lot::Mutex;

use super::{AnchorFs, Fh};
use crate::store::disk_cache::WholeCopies;

/// Passthrough of version reads to whole copies (see the [module docs](self)).
pub struct Passthrough {
    copies: Arc<WholeCopies>,
    backed: Mutex<HashMap<u64, Backed>>,
    on: AtomicBool,
}

/// A version inode open through a backing file, and the handles using it.
struct Backed {
    id: BackingId,
    handles: HashSet<u64>,
}

impl Passthrough {
    /// Passthrough to the copies in `copies`: on if this process may register
    /// backing files, until [`negotiate`](Self::negotiate) finds the kernel not
    /// offering it or the kernel refuses a backing.
    pub fn new(copies: Arc<WholeCopies>) -> Passthrough {
        let may = has_cap_sys_admin();
        if !may {
            log::info!("no passthrough without CAP_SYS_ADMIN: reads of cached versions go through the daemon");
        }
        Passthrough {
            copies,
            backed: Mutex::new(HashMap::new()),
            on: AtomicBool::new(may),
        }
    }

    /// Whether opens may still get a backing: whole copies are worth making.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    /// Asks the kernel for passthrough at the session's start; off if refused.
    pub fn negotiate(&self, config: &mut KernelConfig) {
        if !self.is_on() {
            return;
        }
        let granted = config
            .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
            .is_ok()
            && config.set_max_stack_depth(1).is_ok();
        if !granted {
            log::info!(
                "the kernel offers no passthrough: reads of cached versions go through the daemon"
            );
            self.on.store(false, Ordering::SeqCst);
        }
    }

    /// Replies to the open that made read handle `fh`, with `flags`: through the
    /// version's whole copy where the module docs allow, else as usual.
    pub fn reply_open(&self, core: &AnchorFs, fh: Fh, flags: FopenFlags, reply: ReplyOpen) {
        let reply_fh = FileHandle(fh.0);
        // The kernel takes no page-cache flag (FOPEN_KEEP_CACHE) with a backing.
        let backed_flags = FopenFlags::empty();
        let Some((ino, root, size, readers)) = core.cached_version_read(fh) else {
            return reply.opened(reply_fh, flags);
        };
        // An inode open through a backing keeps it, even once passthrough is off.
        if let Some(b) = self.backed.lock().get_mut(&ino.0) {
            b.handles.insert(fh.0);
            return reply.opened_passthrough(reply_fh, backed_flags, &b.id);
        }
        // Others read the inode through the page cache: so must this one.
        if !self.on.load(Ordering::SeqCst) || readers > 1 {
            return reply.opened(reply_fh, flags);
        }
        // Opened and checked outside the lock: the check reads the whole copy.
        let copy = self.copies.open(&root, size);
        let mut backed = self.backed.lock();
        if let Some(b) = backed.get_mut(&ino.0) {
            b.handles.insert(fh.0);
            return reply.opened_passthrough(reply_fh, backed_flags, &b.id);
        }
        let alone = core.cached_version_read(fh).is_some_and(|(.., n)| n == 1);
        let (Some(copy), true) = (copy, alone) else {
            return reply.opened(reply_fh, flags);
        };
        match reply.open_backing(&copy) {
            Ok(id) => {
                reply.opened_passthrough(reply_fh, backed_flags, &id);
                backed.insert(
                    ino.0,
                    Backed {
                        id,
                        handles: HashSet::from([fh.0]),
                    },
                );
            }
            Err(e) => {
                log::info!(
                    "passthrough refused ({e}): reads of cached versions go through the daemon"
                );
                self.on.store(false, Ordering::SeqCst);
                reply.opened(reply_fh, flags);
            }
        }
    }

    /// Forgets handle `fh` of inode `ino`, closed; the backing goes with the last.
    pub fn released(&self, ino: u64, fh: Fh) {
        let mut backed = self.backed.lock();
        if let Some(b) = backed.get_mut(&ino) {
            if b.handles.remove(&fh.0) && b.handles.is_empty() {
                backed.remove(&ino);
            }
        }
    }
}

/// Whether this process has `CAP_SYS_ADMIN` in effect (`/proc/self/status`; no
/// where that does not say), which registering a backing file takes.
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}
