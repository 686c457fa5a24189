//! Dedup by chunk size: how many bytes each new version of a large file adds to a
//! store, for Go's chunking (64 KiB average) and for larger chunks.
//!
//! One file of `DEDUP_SIZE_MB` MiB (default 256) of pseudo-random bytes is written
//! as a split tree, then `DEDUP_VERSIONS` (default 100) versions of it, each the
//! one before with `DEDUP_EDITS` (default 4) scattered 64-byte overwrites and one
//! 64-byte insertion at random places. Every version goes through the split writer
//! into a store that keeps only which refs it holds, so the figure per version is
//! exactly the bytes of the chunks and nodes that store did not have yet (what a
//! real store would newly write). Each chunking gets a store of its own.
//!
//! ```sh
//! cargo bench --bench dedup                        # 256 MiB x 100 versions
//! DEDUP_SIZE_MB=32 DEDUP_VERSIONS=20 cargo bench --bench dedup   # a quick try
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anchorfs::blob::{Blob, Ref};
use anchorfs::split::{SplitOptions, SplitWriter};
use anchorfs::store::{Chunking, Getter, Store, StoreError};
use parking_lot::Mutex;

/// A store that remembers refs and counts what is new, keeping no bytes.
#[derive(Default)]
struct Counting {
    refs: Mutex<HashSet<Ref>>,
    new_bytes: AtomicU64,
    new_blobs: AtomicU64,
}

impl Getter for Counting {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        Err(StoreError::NotFound(*r))
    }

    fn list_refs(
        &self,
        _after: &Ref,
        _f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Store for Counting {
    fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
        let r = Ref::of(blob);
        let added = self.refs.lock().insert(r);
        if added {
            self.new_bytes
                .fetch_add(blob.len() as u64, Ordering::Relaxed);
            self.new_blobs.fetch_add(1, Ordering::Relaxed);
        }
        Ok((r, added))
    }
}

impl Counting {
    fn take(&self) -> (u64, u64) {
        (
            self.new_bytes.swap(0, Ordering::Relaxed),
            self.new_blobs.swap(0, Ordering::Relaxed),
        )
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            c.copy_from_slice(&x[..c.len()]);
        }
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib(n: f64) -> String {
    format!("{:.2} MiB", n / (1u64 << 20) as f64)
}

fn write(store: &Counting, opts: SplitOptions, data: &[u8]) -> Ref {
    let mut w = SplitWriter::with_options(store, opts).expect("valid options");
    for piece in data.chunks(1 << 20) {
        w.write_bytes(piece).expect("a counting store never fails");
    }
    w.finish().expect("a counting store never fails")
}

/// The versions, made once and replayed for every chunking: the edits of each.
fn edit(data: &mut Vec<u8>, rng: &mut Rng, edits: usize) {
    let mut patch = [0u8; 64];
    for _ in 0..edits {
        rng.fill(&mut patch);
        let at = (rng.next() as usize) % (data.len() - patch.len());
        data[at..at + patch.len()].copy_from_slice(&patch);
    }
    rng.fill(&mut patch);
    let at = (rng.next() as usize) % data.len();
    data.splice(at..at, patch);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test harness probes
    }
    let size = env("DEDUP_SIZE_MB", 256) << 20;
    let versions = env("DEDUP_VERSIONS", 100);
    let edits = env("DEDUP_EDITS", 4);
    let chunkings: [(&str, Chunking); 4] = [
        ("Go's (64 KiB)", Chunking::GO),
        (
            "1 MiB, min 64 KiB",
            Chunking {
                bits: 20,
                min_size: 64 << 10,
                fanout: 8,
            },
        ),
        ("1 MiB, min 256 KiB (new stores)", Chunking::NEW_STORE),
        ("256 KiB, min 64 KiB", Chunking::for_bits(18)),
    ];
    println!(
        "dedup: a {} file, {versions} versions, each with {edits} scattered 64-byte \
         overwrites and one 64-byte insertion",
        mib(size as f64)
    );
    println!(
        "{:<34} {:>8} {:>11} {:>13} {:>13} {:>13} {:>9} {:>7}",
        "chunking", "chunks", "mean chunk", "per version", "min", "max", "blobs/ver", "time"
    );
    let mut base = vec![0u8; size];
    Rng(0x005e_ed0f_da7a).fill(&mut base);
    for (label, chunking) in chunkings {
        let start = Instant::now();
        let store = Counting::default();
        let opts = SplitOptions::from(chunking);
        let mut data = base.clone();
        write(&store, opts, &data);
        let (first, first_blobs) = store.take();
        let mut per = Vec::with_capacity(versions);
        let mut blobs = 0;
        let mut rng = Rng(0xed17_5eed);
        for _ in 0..versions {
            edit(&mut data, &mut rng, edits);
            write(&store, opts, &data);
            let (bytes, n) = store.take();
            per.push(bytes);
            blobs += n;
        }
        let mean = per.iter().sum::<u64>() as f64 / versions.max(1) as f64;
        println!(
            "{:<34} {:>8} {:>11} {:>13} {:>13} {:>13} {:>9.1} {:>6.0}s",
            label,
            first_blobs,
            mib(first as f64 / first_blobs.max(1) as f64),
            mib(mean),
            mib(per.iter().copied().min().unwrap_or(0) as f64),
            mib(per.iter().copied().max().unwrap_or(0) as f64),
            blobs as f64 / versions.max(1) as f64,
            start.elapsed().as_secs_f64()
        );
    }
    println!(
        "(chunks: blobs of the first version, nodes included; per version: bytes newly \
         stored by one version, mean over the versions)"
    );
}
