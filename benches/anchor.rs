//! Anchor benchmark: puts, gets and long histories on each backend, printed beside
//! a baseline measured in the same run (one durable small-file write on the same
//! disk) and the Go library's published figures for this machine class.
//!
//! Run: `cargo bench --bench anchor` (set `ANCHOR_BENCH_N` for another count).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anchorfs::anchor;
use anchorfs::store::file::FileStore;
use anchorfs::store::lru::LruStore;
use anchorfs::store::mem::MemStore;
use anchorfs::store::AnchorStore;
use anchorfs::{Ref, Timestamp};

/// Go's figures (seconds for 10,000 puts; µs per get; seconds per 1,000 versions).
const GO_PUTS_MEM: f64 = 0.54;
const GO_PUTS_TMPFS: f64 = 2.8;
const GO_GET_MEM_US: f64 = 16.0;
const GO_GET_FILE_US: f64 = 89.0;
const GO_FIRST_1000: f64 = 0.10;
const GO_LAST_1000: f64 = 1.77;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The cost of the smallest durable commit on the disk under `dir`: write 32 bytes
/// to a temp file, fsync, rename, fsync the directory.
fn durable_write_baseline(dir: &Path, n: usize) -> f64 {
    fs::create_dir_all(dir).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        let tmp = dir.join("baseline.tmp");
        let mut f = fs::File::create(&tmp).unwrap();
        f.write_all(&[7u8; 32]).unwrap();
        f.sync_all().unwrap();
        fs::rename(&tmp, dir.join("baseline")).unwrap();
        fs::File::open(dir).unwrap().sync_all().unwrap();
    }
    secs(start.elapsed()) / n as f64
}

fn ts(i: usize) -> Timestamp {
    Timestamp::new(1_700_000_000 + i as i64, 0).unwrap()
}

fn bench_store<S: AnchorStore>(label: &str, s: &S, n: usize, go_puts: Option<f64>, go_get_us: f64) {
    let start = Instant::now();
    for i in 0..n {
        let name = format!("anchor-{i:06}");
        anchor::put(s, name.as_bytes(), Ref::of(name.as_bytes()), ts(i)).unwrap();
    }
    let put_s = secs(start.elapsed());
    let per_put_ms = put_s * 1000.0 / n as f64;
    let scale = 10_000.0 / n as f64;
    match go_puts {
        Some(go) => println!(
            "{label:<22} {n} puts of distinct names: {put_s:8.3} s ({per_put_ms:.3} ms/put)   Go {go:.2} s -> {:.1}x faster",
            go / (put_s * scale)
        ),
        None => println!("{label:<22} {n} puts of distinct names: {put_s:8.3} s ({per_put_ms:.3} ms/put)"),
    }
    let gets = n.min(10_000);
    let start = Instant::now();
    let now = Timestamp::now();
    for i in 0..gets {
        let name = format!("anchor-{:06}", (i * 7919) % n);
        anchor::get(s, name.as_bytes(), now).unwrap();
    }
    let get_us = secs(start.elapsed()) * 1e6 / gets as f64;
    println!(
        "{label:<22} get latest over that map:      {get_us:8.1} µs/get   Go {go_get_us:.0} µs -> {:.1}x faster",
        go_get_us / get_us
    );
}

fn bench_versions<S: AnchorStore>(label: &str, s: &S, n: usize) {
    let chunk = n / 10;
    let mut first = 0.0;
    let mut last = 0.0;
    let start_all = Instant::now();
    for i in 0..n {
        if i == 0 || i == n - chunk {
            let t = Instant::now();
            for j in i..i + chunk {
                anchor::put(s, b"one-name", Ref::of(&j.to_le_bytes()), ts(j)).unwrap();
            }
            let d = secs(t.elapsed());
            if i == 0 {
                first = d;
            } else {
                last = d;
            }
        }
        if (i >= chunk && i < n - chunk) || i == 0 && chunk == 0 {
            anchor::put(s, b"one-name", Ref::of(&i.to_le_bytes()), ts(i)).unwrap();
        }
    }
    let _ = start_all;
    let scale = 1000.0 / chunk as f64;
    println!(
        "{label:<22} {n} versions of one name: first {chunk}: {first:.3} s, last {chunk}: {last:.3} s \
         (Go: {GO_FIRST_1000:.2} s / {GO_LAST_1000:.2} s -> last {:.1}x faster; last/first {:.1})",
        GO_LAST_1000 / (last * scale),
        last / first
    );
}

fn main() {
    let n: usize = std::env::var("ANCHOR_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let disk_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-anchor");
    let _ = fs::remove_dir_all(&disk_root);
    let shm_root = Path::new("/dev/shm").join(format!("anchorfs-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&shm_root);
    let have_shm = Path::new("/dev/shm").is_dir();

    if std::env::var("ANCHOR_BENCH_ONLY").as_deref() == Ok("memputs") {
        bench_store("mem", &MemStore::new(), n, Some(GO_PUTS_MEM), GO_GET_MEM_US);
        return;
    }
    if std::env::var("ANCHOR_BENCH_ONLY").as_deref() == Ok("mem") {
        bench_store("mem", &MemStore::new(), n, Some(GO_PUTS_MEM), GO_GET_MEM_US);
        bench_versions("mem", &MemStore::new(), n);
        return;
    }
    if std::env::var("ANCHOR_BENCH_ONLY").as_deref() == Ok("shm") {
        let s = FileStore::create(shm_root.join("puts")).unwrap();
        bench_store(
            "file on /dev/shm",
            &s,
            n,
            Some(GO_PUTS_TMPFS),
            GO_GET_FILE_US,
        );
        let _ = fs::remove_dir_all(&shm_root);
        return;
    }
    println!("== baseline (same run) ==");
    let base_disk = durable_write_baseline(&disk_root.join("baseline"), 200);
    println!(
        "durable 32-byte file write (fsync+rename+dir fsync), repo disk: {:.3} ms",
        base_disk * 1000.0
    );

    println!("== puts and gets ==");
    bench_store("mem", &MemStore::new(), n, Some(GO_PUTS_MEM), GO_GET_MEM_US);
    if have_shm {
        let s = FileStore::create(shm_root.join("puts")).unwrap();
        bench_store(
            "file on /dev/shm",
            &s,
            n,
            Some(GO_PUTS_TMPFS),
            GO_GET_FILE_US,
        );
    }
    let s = FileStore::create(disk_root.join("puts")).unwrap();
    let t = Instant::now();
    bench_store("file on repo disk", &s, n, None, GO_GET_FILE_US);
    let _ = t;
    let s = LruStore::new(
        FileStore::create(disk_root.join("puts-lru")).unwrap(),
        64 << 20,
    );
    bench_store("lru(file) repo disk", &s, n, None, GO_GET_FILE_US);
    println!(
        "   (target on ext4: <= 1.5 ms per durable put; the baseline above is one durable write: {:.3} ms)",
        base_disk * 1000.0
    );

    println!("== long history ==");
    bench_versions("mem", &MemStore::new(), n);
    if have_shm {
        let s = LruStore::new(
            FileStore::create(shm_root.join("versions")).unwrap(),
            64 << 20,
        );
        bench_versions("lru(file) /dev/shm", &s, n);
    }
    let _ = fs::remove_dir_all(&shm_root);
    let _ = fs::remove_dir_all(&disk_root);
}
