//! A file being edited over stored content without copying it first: the blocks
//! written so far live in a sparse spool file, every other block is read from the
//! stored content (verified, as every read of it is) or is zero past a truncation.
//!
//! A random write into a large version costs the blocks it touches, not a copy of
//! the whole version; the commit streams the merged bytes into the split writer.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::split::{SplitError, SplitReader};

use super::SharedStore;

/// The unit of what the spool holds.
pub const BLOCK: u64 = 4096;

/// Stored content with some blocks written over.
pub struct Overlay {
    base: Box<SplitReader<SharedStore>>,
    /// Bytes of the base still shown: a truncation hides what lies past it for good.
    base_end: u64,
    spool: File,
    /// Which blocks the spool holds, one bit each.
    present: Vec<u64>,
    len: u64,
}

/// A failure reading the base or the spool.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The stored content could not be read.
    #[error(transparent)]
    Base(#[from] SplitError),
    /// The spool file failed.
    #[error(transparent)]
    Spool(#[from] std::io::Error),
}

impl Overlay {
    /// `base` (of `base.size()` bytes) with nothing written yet, spooling into
    /// `spool` (an empty temporary file).
    pub fn new(base: SplitReader<SharedStore>, spool: File) -> Overlay {
        let len = base.size();
        Overlay {
            base: Box::new(base),
            base_end: len,
            spool,
            present: Vec::new(),
            len,
        }
    }

    /// The file's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_present(&self, block: u64) -> bool {
        let (word, bit) = ((block / 64) as usize, block % 64);
        self.present.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn mark(&mut self, block: u64) {
        let (word, bit) = ((block / 64) as usize, block % 64);
        if self.present.len() <= word {
            self.present.resize(word + 1, 0);
        }
        self.present[word] |= 1 << bit;
    }

    /// Forgets the spool's blocks from `first` on.
    fn unmark_from(&mut self, first: u64) {
        let word = (first / 64) as usize;
        if word >= self.present.len() {
            return;
        }
        let bit = first % 64;
        self.present[word] &= (1u64 << bit) - 1;
        self.present.truncate(word + 1);
    }

    /// Reads what the file holds at `offset` into `buf`, up to its end; returns the
    /// bytes read.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, OverlayError> {
        if offset >= self.len {
            return Ok(0);
        }
        let want = (self.len - offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < want {
            let pos = offset + done as u64;
            let block = pos / BLOCK;
            // Consecutive blocks from the same source are read at once.
            let present = self.is_present(block);
            let mut run_end = (block + 1) * BLOCK;
            while run_end < offset + want as u64 && self.is_present(run_end / BLOCK) == present {
                run_end += BLOCK;
            }
            let n = ((run_end.min(offset + want as u64)) - pos) as usize;
            let out = &mut buf[done..done + n];
            if present {
                read_full_at(&self.spool, out, pos)?;
            } else {
                self.read_base(pos, out)?;
            }
            done += n;
        }
        Ok(want)
    }

    /// The base's bytes at `pos` (zeros past what it still shows).
    fn read_base(&self, pos: u64, out: &mut [u8]) -> Result<(), OverlayError> {
        let shown = self.base_end.saturating_sub(pos).min(out.len() as u64) as usize;
        if shown > 0 {
            self.base.read_exact_at(pos, &mut out[..shown])?;
        }
        out[shown..].fill(0);
        Ok(())
    }

    /// Writes `data` at `offset`, extending the file if it ends past it.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), OverlayError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        // A block the write covers only in part keeps the rest of its bytes.
        let first = offset / BLOCK;
        let last = (end - 1) / BLOCK;
        for block in [first, last] {
            let (start, stop) = (block * BLOCK, (block + 1) * BLOCK);
            let whole = offset <= start && end >= stop;
            if !whole && !self.is_present(block) && start < self.len {
                let mut buf = vec![0u8; (stop.min(self.len) - start) as usize];
                self.read_base(start, &mut buf)?;
                self.spool.write_all_at(&buf, start)?;
                self.mark(block);
            }
        }
        self.spool.write_all_at(data, offset)?;
        for block in first..=last {
            self.mark(block);
        }
        self.len = self.len.max(end);
        Ok(())
    }

    /// Truncates or extends the file to `size` bytes; what is past a truncation
    /// reads as zeros if the file grows again.
    pub fn set_len(&mut self, size: u64) -> Result<(), OverlayError> {
        if size < self.len {
            self.base_end = self.base_end.min(size);
            // The block holding the new end keeps its bytes before it, in the spool.
            let block = size / BLOCK;
            if size % BLOCK != 0 && !self.is_present(block) {
                let mut buf = vec![0u8; (size - block * BLOCK) as usize];
                self.read_base(block * BLOCK, &mut buf)?;
                self.spool.write_all_at(&buf, block * BLOCK)?;
                self.mark(block);
            }
            self.unmark_from(size.div_ceil(BLOCK));
            self.spool.set_len(size)?;
        }
        self.len = size;
        Ok(())
    }
}

/// `read_exact_at` that reads a hole past the spool's end as zeros.
fn read_full_at(f: &File, out: &mut [u8], pos: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < out.len() {
        let n = f.read_at(&mut out[done..], pos + done as u64)?;
        if n == 0 {
            out[done..].fill(0);
            return Ok(());
        }
        done += n;
    }
    Ok(())
}

impl std::io::Read for OverlayCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .overlay
            .read_at(self.pos, buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads an overlay from its start, in order.
pub struct OverlayCursor<'a> {
    overlay: &'a Overlay,
    pos: u64,
}

impl Overlay {
    /// A reader of the whole file from its start.
    pub fn cursor(&self) -> OverlayCursor<'_> {
        OverlayCursor {
            overlay: self,
            pos: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn base(data: &[u8]) -> SplitReader<SharedStore> {
        let store: SharedStore = Arc::new(MemStore::new());
        let root = crate::split::store_bytes(&*store, data, Default::default()).unwrap();
        SplitReader::new(store, root).unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u64, Vec<u8>),
        SetLen(u64),
        Read(u64, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..40_000u64, proptest::collection::vec(any::<u8>(), 1..9000))
                .prop_map(|(o, d)| Op::Write(o, d)),
            1 => (0..40_000u64).prop_map(Op::SetLen),
            2 => (0..40_000u64, 1..20_000usize).prop_map(|(o, n)| Op::Read(o, n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Every read matches a plain byte vector given the same writes and
        /// truncates.
        #[test]
        fn matches_a_byte_vector(
            seed in proptest::collection::vec(any::<u8>(), 0..30_000),
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let mut model = seed.clone();
            let mut o = Overlay::new(base(&seed), tempfile::tempfile().unwrap());
            for op in ops {
                match op {
                    Op::Write(off, d) => {
                        o.write_at(off, &d).unwrap();
                        let end = off as usize + d.len();
                        if model.len() < end { model.resize(end, 0); }
                        model[off as usize..end].copy_from_slice(&d);
                    }
                    Op::SetLen(n) => {
                        o.set_len(n).unwrap();
                        model.resize(n as usize, 0);
                    }
                    Op::Read(off, n) => {
                        let mut buf = vec![0xEEu8; n];
                        let got = o.read_at(off, &mut buf).unwrap();
                        let start = (off as usize).min(model.len());
                        let end = (start + n).min(model.len());
                        prop_assert_eq!(&buf[..got], &model[start..end]);
                    }
                }
                prop_assert_eq!(o.len(), model.len() as u64);
            }
            let mut all = Vec::new();
            std::io::Read::read_to_end(&mut o.cursor(), &mut all).unwrap();
            prop_assert_eq!(all, model);
        }
    }
}
