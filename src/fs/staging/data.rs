//! A staged file's bytes, and the store and spool I/O that moves them: content
//! written in order streams into a split writer (small content stays in memory);
//! any other pattern (a write elsewhere than at the end, a truncate, reading back)
//! moves it into a temporary spool file beside the store, or, for large seeded
//! content, an overlay that spools only the blocks written. At commit the bytes
//! are stored and become [`Data::Stored`].
//!
//! Takes no lock: every function here works on a staged file its caller holds
//! locked (so that lock is held across this store and spool I/O).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use super::{StagedFile, Staging};
use crate::blob::{Blob, Ref};
use crate::content::{self, Kind};
use crate::fs::overlay::Overlay;
use crate::fs::{FsError, SharedStore};
use crate::split::SplitWriter;

/// Where a staged file's bytes are.
pub(crate) enum Data {
    /// Small content in memory (at most [`SMALL_MAX`] bytes, written in order): stored
    /// as one raw blob at commit, which needs no type record and no split node.
    Small(Vec<u8>),
    /// Streaming into the split writer; `len` bytes so far, all in order.
    Stream {
        writer: Box<SplitWriter<SharedStore>>,
        len: u64,
    },
    /// In a temporary file (random writes, truncates, reads of own writes).
    Spool { file: File, len: u64 },
    /// Stored content with the blocks written since in a temporary file (random
    /// writes into a large version: nothing is copied first).
    Overlay(Box<Overlay>),
    /// Stored (after a commit, or seeded from a version).
    Stored { root: Ref, kind: Kind, len: u64 },
}

/// A staged file's content ready for its commit: its root, kind and length,
/// and the one blob still to be stored with the commit, if any
/// ([`Staging::stage_data`]).
pub(crate) type Staged = (Ref, Kind, u64, Option<(Ref, Blob)>);

/// Content up to this size is kept in memory while written and stored as one raw
/// blob; larger content streams into a split tree.
pub const SMALL_MAX: usize = 16 << 10;

impl Data {
    /// Empty content, as a new or truncated file starts.
    pub(crate) fn empty() -> Data {
        Data::Small(Vec::new())
    }

    /// The bytes, leaving an empty placeholder: the caller puts them (or what they
    /// became) back, or breaks the file (see [`StagedFile::keep_or_break`]).
    fn taken(&mut self) -> Data {
        std::mem::replace(
            self,
            Data::Stored {
                root: Ref::ZERO,
                kind: Kind::Split,
                len: 0,
            },
        )
    }
}

impl StagedFile {
    /// After moving the file's bytes failed with `e`: puts back `kept`, the bytes as
    /// they were, or, when they are gone (`None`), breaks the file, so it never
    /// becomes a version without them.
    fn keep_or_break(&mut self, kept: Option<Data>, e: &FsError) {
        match kept {
            Some(data) => self.data = data,
            None => self.break_with(e),
        }
    }
}

impl Staging {
    pub(crate) fn spool_file(&self) -> Result<File, FsError> {
        let dir = self.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
        tempfile::tempfile_in(&dir)
            .or_else(|_| tempfile::tempfile())
            .map_err(|e| FsError::store("creating a spool file", e))
    }

    /// Moves a staged file's bytes into a spool file (for random access). If that
    /// fails the file keeps its bytes where they were, unless they were streaming
    /// into a split writer that could not store them: they are gone, and the file is
    /// broken (see [`StagedFile::broken`]).
    pub(crate) fn to_spool(&self, f: &mut StagedFile) -> Result<(), FsError> {
        let (spooled, kept) = match f.data.taken() {
            Data::Spool { file, len } => (Ok((file, len)), None),
            Data::Small(buf) => {
                let spooled = self.spool_file().and_then(|mut file| {
                    file.write_all(&buf).map_err(FsError::from_io)?;
                    Ok((file, buf.len() as u64))
                });
                (spooled, Some(Data::Small(buf)))
            }
            Data::Stream { writer, len } => match writer.finish() {
                Ok(root) => (
                    self.copy_to_spool(root, Kind::Split, len).map(|f| (f, len)),
                    Some(Data::Stored {
                        root,
                        kind: Kind::Split,
                        len,
                    }),
                ),
                Err(e) => (Err(FsError::from_split(e)), None),
            },
            Data::Stored { root, kind, len } => (
                self.copy_to_spool(root, kind, len).map(|f| (f, len)),
                Some(Data::Stored { root, kind, len }),
            ),
            Data::Overlay(o) => {
                let spooled = self.spool_file().and_then(|mut file| {
                    std::io::copy(&mut o.cursor(), &mut file).map_err(FsError::from_io)?;
                    Ok((file, o.len()))
                });
                (spooled, Some(Data::Overlay(o)))
            }
        };
        match spooled {
            Ok((file, len)) => {
                f.data = Data::Spool { file, len };
                Ok(())
            }
            Err(e) => {
                f.keep_or_break(kept, &e);
                Err(e)
            }
        }
    }

    /// A new spool file holding the `len` bytes of stored content `root`.
    pub(crate) fn copy_to_spool(&self, root: Ref, kind: Kind, len: u64) -> Result<File, FsError> {
        let mut file = self.spool_file()?;
        if len > 0 {
            let mut reader = content::open(self.store.clone(), root, kind)
                .map_err(|e| FsError::from_content(root, e))?;
            std::io::copy(&mut reader, &mut file).map_err(FsError::from_io)?;
        }
        Ok(file)
    }

    /// Stores a staged file's bytes; returns the ref and its kind. Content of at most
    /// [`SMALL_MAX`] bytes becomes one raw blob, larger content a split tree; also
    /// returns its length. If the store fails the file keeps its bytes, so a later
    /// commit stores them again, unless they were streaming into a split writer
    /// that could not store them: they are gone, and the file is broken (see
    /// [`StagedFile::broken`]), so it never becomes a version with part of them.
    pub(crate) fn store_data(&self, f: &mut StagedFile) -> Result<(Ref, Kind, u64), FsError> {
        let (stored, kept) = match f.data.taken() {
            Data::Stored { root, kind, len } => (Ok((root, kind, len)), None),
            Data::Small(buf) => {
                let stored = self
                    .store_small(&buf)
                    .map(|(root, kind)| (root, kind, buf.len() as u64));
                (stored, Some(Data::Small(buf)))
            }
            Data::Stream { writer, len } => {
                let stored = writer
                    .finish()
                    .map(|root| (root, Kind::Split, len))
                    .map_err(FsError::from_split);
                (stored, None)
            }
            Data::Spool { mut file, len } => {
                let stored = self.store_spool(&mut file, len);
                (stored, Some(Data::Spool { file, len }))
            }
            Data::Overlay(o) => {
                let stored = self.store_overlay(&o);
                (stored, Some(Data::Overlay(o)))
            }
        };
        match stored {
            Ok((root, kind, len)) => {
                f.data = Data::Stored { root, kind, len };
                Ok((root, kind, len))
            }
            Err(e) => {
                f.keep_or_break(kept, &e);
                Err(e)
            }
        }
    }

    /// What [`store_data`](Self::store_data) does, except for small content in
    /// memory that becomes one raw blob: that blob is not stored here but
    /// returned, for the commit to store with its anchor map update (in the same
    /// round trip, on a store across a network), and the file keeps its bytes;
    /// [`committed_data`](Self::committed_data) ends that once the version is in.
    pub(crate) fn stage_data(&self, f: &mut StagedFile) -> Result<Staged, FsError> {
        if let Data::Small(buf) = &f.data {
            let r = Ref::of(buf);
            if !buf.is_empty() && !crate::split::decodes_as_node(&r, buf) {
                let len = buf.len() as u64;
                return Ok((r, Kind::Raw, len, Some((r, Blob::copy_from_slice(buf)))));
            }
        }
        self.store_data(f)
            .map(|(r, kind, len)| (r, kind, len, None))
    }

    /// After the commit of what [`stage_data`](Self::stage_data) returned, with the
    /// blob it held back now stored: a file not written since reads it from the
    /// store.
    pub(crate) fn committed_data(&self, f: &mut StagedFile, (root, kind, len, held): &Staged) {
        if held.is_some() && !f.dirty && matches!(f.data, Data::Small(_)) {
            f.data = Data::Stored {
                root: *root,
                kind: *kind,
                len: *len,
            };
        }
    }

    /// Stores the `len` bytes of a spool file.
    fn store_spool(&self, file: &mut File, len: u64) -> Result<(Ref, Kind, u64), FsError> {
        if len as usize <= SMALL_MAX {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, 0).map_err(FsError::from_io)?;
            let (root, kind) = self.store_small(&buf)?;
            return Ok((root, kind, len));
        }
        file.seek(SeekFrom::Start(0)).map_err(FsError::from_io)?;
        let root = crate::split::store_from_with(
            self.store.clone(),
            file.take(len),
            self.split_opts,
            &self.storers,
        )
        .map_err(FsError::from_split)?;
        Ok((root, Kind::Split, len))
    }

    /// Stores the content an overlay shows.
    fn store_overlay(&self, o: &Overlay) -> Result<(Ref, Kind, u64), FsError> {
        let len = o.len();
        if len as usize <= SMALL_MAX {
            let mut buf = vec![0u8; len as usize];
            o.read_at(0, &mut buf).map_err(FsError::from_overlay)?;
            let (root, kind) = self.store_small(&buf)?;
            return Ok((root, kind, len));
        }
        let root = crate::split::store_from_with(
            self.store.clone(),
            o.cursor(),
            self.split_opts,
            &self.storers,
        )
        .map_err(FsError::from_split)?;
        Ok((root, Kind::Split, len))
    }

    /// Stores small content as one raw blob, unless its bytes happen to read as a
    /// split tree root (a raw blob without a type record must not), in which case it
    /// becomes a split tree. Empty content is the zero ref.
    pub(crate) fn store_small(&self, buf: &[u8]) -> Result<(Ref, Kind), FsError> {
        if buf.is_empty() {
            return Ok((Ref::ZERO, Kind::Split));
        }
        let (r, _) = self.store.put(buf).map_err(FsError::from_store)?;
        match crate::split::validate_root(&*self.store, &r) {
            Err(crate::split::SplitError::Store(e)) => Err(FsError::from_store(e)),
            Err(_) => Ok((r, Kind::Raw)),
            Ok(_) => {
                let root = crate::split::store_bytes(&*self.store, buf, self.split_opts)
                    .map_err(|e| FsError::from_content(r, e.into()))?;
                Ok((root, Kind::Split))
            }
        }
    }

    /// A split writer for content written in order: its chunks are stored on
    /// threads of their own, so a write returns while earlier chunks are stored.
    pub(crate) fn stream_writer(&self) -> Result<SplitWriter<SharedStore>, FsError> {
        SplitWriter::with_storers(self.store.clone(), self.split_opts, &self.storers)
            .map_err(FsError::from_split)
    }

    pub(crate) fn write_data(
        &self,
        g: &mut StagedFile,
        offset: u64,
        data: &[u8],
    ) -> Result<(), FsError> {
        // A write into seeded content elsewhere than at its end.
        if matches!(&g.data, Data::Stored { len, .. } if offset != *len) {
            self.overlay_over(g)?;
        }
        match &mut g.data {
            Data::Small(buf) if offset == buf.len() as u64 => {
                if buf.len() + data.len() <= SMALL_MAX {
                    buf.extend_from_slice(data);
                } else {
                    // Grown past small: from here on it streams into a split tree.
                    let mut writer = self.stream_writer()?;
                    writer.write_bytes(buf).map_err(FsError::from_split)?;
                    writer.write_bytes(data).map_err(FsError::from_split)?;
                    let len = (buf.len() + data.len()) as u64;
                    g.data = Data::Stream {
                        writer: Box::new(writer),
                        len,
                    };
                }
            }
            Data::Stream { writer, len: l } if offset == *l => {
                writer.write_bytes(data).map_err(FsError::from_split)?;
                *l += data.len() as u64;
            }
            Data::Stored { root, kind, len: l } if offset == *l => {
                // Appending to seeded content: the old bytes, then the new.
                let (root, kind, len) = (*root, *kind, *l);
                let reader = content::open(self.store.clone(), root, kind)
                    .map_err(|e| FsError::from_content(root, e))?;
                let mut old = std::io::BufReader::with_capacity(1 << 20, reader);
                let new_len = len + data.len() as u64;
                if new_len as usize <= SMALL_MAX {
                    let mut buf = Vec::with_capacity(new_len as usize);
                    old.read_to_end(&mut buf).map_err(FsError::from_io)?;
                    buf.extend_from_slice(data);
                    g.data = Data::Small(buf);
                } else {
                    let mut writer = self.stream_writer()?;
                    std::io::copy(&mut old, &mut writer).map_err(FsError::from_io)?;
                    writer.write_bytes(data).map_err(FsError::from_split)?;
                    g.data = Data::Stream {
                        writer: Box::new(writer),
                        len: new_len,
                    };
                }
            }
            Data::Overlay(o) => o.write_at(offset, data).map_err(FsError::from_overlay)?,
            _ => {
                self.to_spool(g)?;
                if let Data::Spool { file, len: l } = &mut g.data {
                    file.write_all_at(data, offset).map_err(FsError::from_io)?;
                    *l = (*l).max(offset + data.len() as u64);
                }
            }
        }
        Ok(())
    }

    /// Turns seeded content larger than [`SMALL_MAX`] into an overlay, so a
    /// write elsewhere than at its end copies nothing first; false (nothing done)
    /// for small content, which the spool takes whole.
    pub(crate) fn overlay_over(&self, g: &mut StagedFile) -> Result<bool, FsError> {
        let Data::Stored { root, kind, len } = &g.data else {
            return Ok(false);
        };
        if *len as usize <= SMALL_MAX {
            return Ok(false);
        }
        let (root, kind) = (*root, *kind);
        let base = content::open(self.store.clone(), root, kind)
            .map_err(|e| FsError::from_content(root, e))?;
        g.data = Data::Overlay(Box::new(Overlay::new(base, self.spool_file()?)));
        Ok(true)
    }

    pub(crate) fn truncate_data(&self, g: &mut StagedFile, size: u64) -> Result<(), FsError> {
        self.overlay_over(g)?;
        if let Data::Overlay(o) = &mut g.data {
            return o.set_len(size).map_err(FsError::from_overlay);
        }
        self.to_spool(g)?;
        if let Data::Spool { file, len } = &mut g.data {
            file.set_len(size).map_err(FsError::from_io)?;
            *len = size;
        }
        Ok(())
    }

    /// Reads up to `size` bytes at `offset` of a staged file's own bytes so far.
    pub(crate) fn read_data(
        &self,
        g: &mut StagedFile,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, FsError> {
        match &g.data {
            Data::Stored { root, kind, len } => {
                let reader = content::open(self.store.clone(), *root, *kind)
                    .map_err(|e| FsError::from_content(*root, e))?;
                let n = len.saturating_sub(offset).min(size as u64) as usize;
                let mut buf = vec![0u8; n];
                reader
                    .read_exact_at(offset, &mut buf)
                    .map_err(FsError::from_split)?;
                return Ok(buf);
            }
            Data::Small(b) => {
                let start = (offset as usize).min(b.len());
                let end = start.saturating_add(size).min(b.len());
                return Ok(b[start..end].to_vec());
            }
            Data::Overlay(o) => {
                let n = o.len().saturating_sub(offset).min(size as u64) as usize;
                let mut buf = vec![0u8; n];
                let got = o.read_at(offset, &mut buf).map_err(FsError::from_overlay)?;
                buf.truncate(got);
                return Ok(buf);
            }
            _ => {}
        }
        self.to_spool(g)?;
        let Data::Spool { file, len } = &g.data else {
            return Err(FsError::BadHandle);
        };
        let n = len.saturating_sub(offset).min(size as u64) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, offset)
            .map_err(FsError::from_io)?;
        Ok(buf)
    }
}
