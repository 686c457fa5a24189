//! Opening, reading and closing files. Methods of the facade [`AnchorFs`]: a
//! read opens a reader of immutable content in the handle table; a write open is
//! the staging part's (see `writing`).
//!
//! Takes no lock of its own; the handle table's locks are held for one map
//! operation each.

use super::inode::NodeKey;
use super::{
    content, AnchorFs, Caller, ContentError, Fh, FsError, Handle, Ino, Invalidations, Opened,
    SharedStore, FILL_READS_UP_TO,
};
use crate::blob::Ref;
use crate::split::SplitReader;

impl AnchorFs {
    /// [`open_as`](Self::open_as) for `caller` (`(write, truncate, append)`): with
    /// access checks on ([`FsOptions::check_access`]), opening a version or
    /// `latest` for writing adds a version to its anchor directory, so it needs
    /// write permission on that directory as shown (the kernel checks only the
    /// file's own mode). `caller` is `None` when nobody is to be checked.
    pub fn open_checked(
        &self,
        ino: Ino,
        (write, truncate, append): (bool, bool, bool),
        opener: Option<u32>,
        caller: Option<&Caller>,
    ) -> Result<Opened, FsError> {
        if let (true, true, Some(caller)) = (self.opts.check_access, write, caller) {
            let anchor = match self.key_of(ino)? {
                NodeKey::Version(anchor, _) => Some(anchor),
                NodeKey::Staged(id) => self.staging.get(id).map(|f| f.lock().anchor.clone()),
                _ => None,
            };
            if let Some(anchor) = anchor {
                let dir = self.ns.ino_of(&NodeKey::AnchorDir(anchor));
                let (attr, _) = self.attr_of(&self.key_of(dir)?, dir)?;
                if !caller.may_write(&attr) {
                    return Err(FsError::PermissionDenied);
                }
            }
        }
        self.open_as(ino, write, truncate, append, opener)
    }

    /// Opens `ino`; `write` asks for writing (a new version, seeded with the old
    /// content unless `truncate`).
    pub fn open(&self, ino: Ino, write: bool, truncate: bool) -> Result<Opened, FsError> {
        self.open_as(ino, write, truncate, false, None)
    }

    /// [`open`](Self::open) by the thread `opener`, `append` telling an appending
    /// open. A truncating or appending open of a version for writing never touches
    /// the version's inode: the open makes a new file of the writer's own and fails
    /// with [`FsError::LookUpAgain`]; the opener's next lookups of that name find
    /// the new file, which its next open gets. (The kernel retries an open that
    /// failed with `ESTALE` once, looking every name up again.) An in-place open
    /// (neither truncating nor appending: `O_RDWR`, an editor that checks the inode
    /// it opened is the one it stat'ed, as vim does) writes through the version's
    /// own inode, which then shows the writer's file (size, times) until its last
    /// close, so `fstat`, `SEEK_END`, `ftruncate` and `mmap` follow the writer;
    /// readers of the version meanwhile read around the page cache and get the
    /// version's bytes. An in-place open moves to a new file too when readers have
    /// the version open through the page cache (they would see the writer's size
    /// and could be served cached pages of it) or another writer is in place on it.
    /// Should the retry open the version again, it is written over in place.
    pub fn open_as(
        &self,
        ino: Ino,
        write: bool,
        truncate: bool,
        append: bool,
        opener: Option<u32>,
    ) -> Result<Opened, FsError> {
        let key = self.key_of(ino)?;
        if write || matches!(key, NodeKey::Staged(_)) {
            if let (Some(opener), NodeKey::Version(..)) = (opener, &key) {
                let move_off = truncate
                    || append
                    || self.handles.has_cached_readers(ino)
                    || self.staging.in_place_writer(ino).is_some();
                if write && move_off && !self.read_only {
                    return self.move_write(opener, &key, truncate);
                }
            }
            if let (false, NodeKey::Staged(id)) = (write, &key) {
                if let Some(opened) = self.open_settled(*id)? {
                    return Ok(opened);
                }
            }
            return self.open_for_write(&key, ino, truncate && write);
        }
        let snap = self.snapshot();
        let r = match &key {
            NodeKey::Version(name, at) => {
                snap.by_name(name)
                    .and_then(|v| v.version(*at))
                    .ok_or(FsError::NotFound)?
                    .r
            }
            NodeKey::AtFile(t, name) => {
                snap.by_name(name)
                    .and_then(|v| v.as_of(*t))
                    .ok_or(FsError::NotFound)?
                    .r
            }
            NodeKey::RefFile(r) => *r,
            NodeKey::Latest(_) => return Err(FsError::NotFound),
            _ => return Err(FsError::IsDir),
        };
        // The size the kernel was given may have come from the size log: check it
        // against the content's own.
        // (Working the kind out records the true size.)
        let told = self.known_size(&r);
        let (kind, size) = self.content_meta(&r)?;
        let misreported = match told {
            Some(t) if t != size => {
                log::warn!("the size log said {t} bytes for {r}, which has {size}; corrected");
                self.invalidate(Invalidations { inodes: vec![ino] });
                true
            }
            _ => false,
        };
        let reader = content::open(self.store.clone(), r, kind).map_err(|e| self.damaged(&r, e))?;
        // A version written over in place (see `open_as`) has the writer's size in
        // the kernel while the writer is open, and may have the writer's pages in
        // the kernel's cache: every read of that version opened since goes around
        // the page cache, so it gets exactly the version's bytes.
        // A read bounded by a wrong size would be cut short or padded: around the
        // page cache, it gets exactly the content.
        let direct_io = misreported
            || match &key {
                NodeKey::Version(..) => self.staging.was_written_over(ino),
                _ => false,
            };
        // Versions and refs never change: let the page cache outlive the open.
        let keep_cache = !direct_io && matches!(key, NodeKey::Version(..) | NodeKey::RefFile(_));
        let cached = (!direct_io && matches!(key, NodeKey::Version(..))).then_some(ino);
        let fill = keep_cache.then_some(ino);
        let fh = self.handles.open_read(reader, fill, cached);
        Ok(Opened {
            fh,
            keep_cache,
            direct_io,
        })
    }

    /// Marks write handle `fh` as opened with `O_APPEND`: its writes go to the end of
    /// the file, whatever offset the kernel gives.
    pub fn set_append(&self, fh: Fh) {
        self.handles.set_append(fh);
    }

    /// Records the process that opened write handle `fh`: only its own closes of
    /// that handle count as the writer closing it (a forked child's exec closes
    /// inherited descriptors too).
    pub fn set_opener(&self, fh: Fh, thread: u32) {
        self.handles
            .set_opener(fh, self.processes.process_of(thread));
    }

    /// Reads up to `size` bytes at `offset` from open file `fh`.
    pub fn read(&self, fh: Fh, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::new();
        self.read_into(fh, offset, size, &mut out)?;
        Ok(out)
    }

    /// [`read`](Self::read) into `out`, whose bytes are replaced: a caller that
    /// reads often keeps one buffer, instead of the allocator handing out (and
    /// the kernel faulting in) a new one of up to a megabyte for every request.
    pub fn read_into(
        &self,
        fh: Fh,
        offset: u64,
        size: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), FsError> {
        let h = self.handles.get(fh)?;
        let (reader, fill, version) = match &*h {
            Handle::Read(r) => (&r.reader, r.fill_pages_of, r.cached_version),
            Handle::Write(id) => {
                out.clear();
                out.extend_from_slice(&self.read_staged(*id, offset, size)?);
                return Ok(());
            }
        };
        if let (Some(ino), Some(filler), true) =
            (fill, self.page_filler.get(), size <= FILL_READS_UP_TO)
        {
            let chunks = reader
                .chunks_covering(offset, size)
                .map_err(|e| self.damaged(&reader.root(), ContentError::Split(e)))?;
            if !chunks.is_empty() {
                out.clear();
                let end = (offset + size as u64).min(reader.size());
                out.reserve((end - offset) as usize);
                for (start, chunk) in &chunks {
                    let from = offset.max(*start) - start;
                    let to = end.min(start + chunk.len() as u64) - start;
                    out.extend_from_slice(&chunk[from as usize..to as usize]);
                }
                for (start, chunk) in chunks {
                    filler(ino.0, start, chunk);
                }
                self.tee_read(version, reader, offset, out);
                return Ok(());
            }
        }
        let avail = reader.size().saturating_sub(offset).min(size as u64) as usize;
        // Only bytes past what `out` already holds are zeroed: every byte up to
        // `done` is overwritten below, and the rest is cut off.
        out.resize(avail, 0);
        let mut done = 0;
        while done < avail {
            let n = reader
                .read_at(offset + done as u64, &mut out[done..])
                .map_err(|e| self.damaged(&reader.root(), ContentError::Split(e)))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        out.truncate(done);
        self.tee_read(version, reader, offset, out);
        Ok(())
    }

    /// Sends `bytes`, read at `offset` of `reader`, to the read tee if the handle
    /// reads a version through the page cache (`version`).
    fn tee_read(
        &self,
        version: Option<Ino>,
        reader: &SplitReader<SharedStore>,
        offset: u64,
        bytes: &[u8],
    ) {
        if let (Some(tee), Some(_)) = (self.read_tee.get(), version) {
            tee(&reader.root(), reader.size(), offset, bytes);
        }
    }

    /// For a handle reading a version through the page cache: its inode, content
    /// ref and size, and how many handles (this one included) read that inode so.
    /// The mount serves such a handle's reads from a whole local copy when one is
    /// there and nothing else reads the inode otherwise (see `fs::passthrough`).
    pub fn cached_version_read(&self, fh: Fh) -> Option<(Ino, Ref, u64, usize)> {
        let h = self.handles.get(fh).ok()?;
        match &*h {
            Handle::Read(r) => {
                let ino = r.cached_version?;
                let readers = self.handles.cached_readers_of(ino);
                Some((ino, r.reader.root(), r.reader.size(), readers))
            }
            Handle::Write(_) => None,
        }
    }

    /// Closes open file `fh` (after its last flush).
    pub fn release(&self, fh: Fh) -> Result<(), FsError> {
        let h = self.handles.remove(fh)?;
        if let Handle::Write(id) = &*h {
            self.release_write(*id, fh);
        }
        Ok(())
    }
}
