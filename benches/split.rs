//! Split tree throughput, each figure beside a baseline measured in the same run.
//!
//! Writes 256 MiB of pseudo-random data into a mem store and into a file store
//! (baseline: SHA-256 of the same bytes with `sha2`), then reads it back
//! sequentially in 128 KiB reads and at random offsets in 32 KiB reads (baseline:
//! copying the same bytes out of a `Vec`).

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use anchorfs::split::{SplitOptions, SplitReader, SplitWriter, Splitter};
use anchorfs::store::file::FileStore;
use anchorfs::store::lru::LruStore;
use anchorfs::store::mem::MemStore;
use anchorfs::store::{Getter, Store};
use anchorfs::Ref;
use sha2::{Digest, Sha256};

const SIZE: usize = 256 << 20;
const WRITE_CALL: usize = 128 << 10;
const SEQ_READ: usize = 128 << 10;
const RANDOM_READ: usize = 32 << 10;

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// The best of `runs` timings of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let mut fastest = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        let d = t.elapsed();
        if d < fastest {
            fastest = d;
        }
        out = Some(v);
    }
    match out {
        Some(v) => (fastest, v),
        None => panic!("no runs"),
    }
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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

fn random_offsets(count: usize, limit: usize, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % limit as u64
        })
        .collect()
}

fn write_tree<S: Store>(store: &S, data: &[u8]) -> Ref {
    let mut w = SplitWriter::new(store);
    for piece in data.chunks(WRITE_CALL) {
        w.write_all(piece).expect("write");
    }
    w.finish().expect("finish")
}

fn read_sequential<S: Getter>(store: &S, root: Ref, want: &[u8]) -> usize {
    let r = SplitReader::new(store, root).expect("open");
    let mut buf = vec![0u8; SEQ_READ];
    let mut off = 0u64;
    let mut check = 0u64;
    loop {
        let n = r.read_at(off, &mut buf).expect("read");
        if n == 0 {
            break;
        }
        check = check.wrapping_add(buf[n - 1] as u64);
        off += n as u64;
    }
    assert_eq!(off as usize, want.len());
    black_box(check);
    off as usize
}

fn read_random<S: Getter>(store: &S, root: Ref, offsets: &[u64]) -> usize {
    let r = SplitReader::new(store, root).expect("open");
    let mut buf = vec![0u8; RANDOM_READ];
    let mut total = 0;
    for &off in offsets {
        let n = r.read_at(off, &mut buf).expect("read");
        total += n;
        black_box(&buf);
    }
    total
}

fn vec_sequential(data: &[u8]) -> usize {
    let mut buf = vec![0u8; SEQ_READ];
    let mut total = 0;
    for piece in data.chunks(SEQ_READ) {
        buf[..piece.len()].copy_from_slice(piece);
        black_box(&buf);
        total += piece.len();
    }
    total
}

fn vec_random(data: &[u8], offsets: &[u64]) -> usize {
    let mut buf = vec![0u8; RANDOM_READ];
    let mut total = 0;
    for &off in offsets {
        let off = off as usize;
        let n = RANDOM_READ.min(data.len() - off);
        buf[..n].copy_from_slice(&data[off..off + n]);
        black_box(&buf);
        total += n;
    }
    total
}

fn line(what: &str, bytes: usize, d: Duration, base_name: &str, base: f64) {
    let v = mib_per_s(bytes, d);
    println!(
        "{what:<46} {v:>9.0} MiB/s   {base_name} {base:>7.0} MiB/s   ratio {:.2}",
        v / base
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a plain test run of benches passes nothing
    // useful either way, so there is nothing to parse.
    println!(
        "split tree benchmark: {} MiB of pseudo-random data, {} cores",
        SIZE >> 20,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let data = pseudo_random(SIZE, 0x5eed);

    // Baseline for writes: SHA-256 of the same bytes.
    let (d_sha, digest) = best(3, || Sha256::digest(&data));
    black_box(digest);
    let sha = mib_per_s(SIZE, d_sha);
    println!("{:<46} {sha:>9.0} MiB/s", "baseline: sha2 SHA-256");

    // The rolling checksum alone, on one thread: Go's chunking, and that of new
    // stores, whose minimum (64 KiB) is skipped rather than rolled.
    let new_store = SplitOptions::from(anchorfs::store::settings::Chunking::NEW_STORE);
    for (label, opts) in [
        (
            "chunking alone (rolling checksum, 1 thread)",
            SplitOptions::default(),
        ),
        ("chunking alone, new stores' chunking (1 thread)", new_store),
    ] {
        let (d_chunk, cuts) = best(3, || {
            let mut sp = Splitter::new(&opts).expect("options");
            let mut cuts = Vec::new();
            for piece in data.chunks(1 << 20) {
                sp.push(piece, &mut cuts);
            }
            cuts.len()
        });
        black_box(cuts);
        line(label, SIZE, d_chunk, "sha256", sha);
    }

    // Write into a mem store (fresh store each run).
    let (d_mem, (mem, root)) = best(3, || {
        let store = MemStore::new();
        let root = write_tree(&store, &data);
        (store, root)
    });
    line("write 256 MiB -> mem store", SIZE, d_mem, "sha256", sha);
    println!("  ({} blobs, root {})", mem.len(), &root.to_hex()[..16]);

    // Write into a file store in a temp dir (fresh directory each run).
    let (d_file, (dir, file_store, file_root)) = best(2, || {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::create(dir.path()).expect("file store");
        let root = write_tree(&store, &data);
        (dir, store, root)
    });
    assert_eq!(file_root, root);
    line(
        "write 256 MiB -> file store (no fsync)",
        SIZE,
        d_file,
        "sha256",
        sha,
    );
    let t = Instant::now();
    file_store.sync().expect("sync");
    println!(
        "  (then one store sync of the last run: {:.0} ms)",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(file_store);

    // Baselines for reads: copying out of a Vec.
    let count = SIZE / RANDOM_READ;
    let offsets = random_offsets(count, SIZE, 0xfeed);
    let (d_vseq, n) = best(3, || vec_sequential(&data));
    let vseq = mib_per_s(n, d_vseq);
    println!(
        "{:<46} {vseq:>9.0} MiB/s",
        "baseline: Vec copy, 128 KiB sequential"
    );
    let (d_vrand, n_rand) = best(3, || vec_random(&data, &offsets));
    let vrand = mib_per_s(n_rand, d_vrand);
    println!(
        "{:<46} {vrand:>9.0} MiB/s",
        "baseline: Vec copy, 32 KiB random"
    );

    // Reads from the mem store.
    let (d, n) = best(3, || read_sequential(&mem, root, &data));
    line("read mem store, 128 KiB sequential", n, d, "vec", vseq);
    let (d, n) = best(3, || read_random(&mem, root, &offsets));
    line("read mem store, 32 KiB random", n, d, "vec", vrand);
    drop(mem);

    // Reads from the file store through the LRU cache, warmed by one full pass
    // (which reads every blob from its file and verifies it).
    let lru = LruStore::new(
        FileStore::open(dir.path()).expect("reopen"),
        SIZE + (64 << 20),
    );
    let t = Instant::now();
    read_sequential(&lru, root, &data);
    line(
        "read file store (cold LRU, verifying), 128 KiB seq",
        SIZE,
        t.elapsed(),
        "vec",
        vseq,
    );
    let (d, n) = best(3, || read_sequential(&lru, root, &data));
    line(
        "read warm file store via LRU, 128 KiB seq",
        n,
        d,
        "vec",
        vseq,
    );
    let (d, n) = best(3, || read_random(&lru, root, &offsets));
    line(
        "read warm file store via LRU, 32 KiB random",
        n,
        d,
        "vec",
        vrand,
    );

    // The file store alone: every chunk read from its file and verified each time.
    let bare = FileStore::open(dir.path()).expect("reopen");
    let (d, n) = best(1, || read_random(&bare, root, &offsets[..count / 4]));
    line("read file store, no LRU, 32 KiB random", n, d, "vec", vrand);
}
