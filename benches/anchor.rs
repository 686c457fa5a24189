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
use anchorfs::store::{AnchorStore, Getter};
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

/// Puts `n` distinct names and gets them back; returns the seconds the puts took.
fn bench_store<S: AnchorStore>(
    label: &str,
    s: &S,
    n: usize,
    go_puts: Option<f64>,
    go_get_us: f64,
) -> f64 {
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
    put_s
}

/// The sizes of every blob in `s`, in ref order.
fn blob_sizes(s: &MemStore) -> Vec<usize> {
    let mut sizes = Vec::new();
    s.list_refs(&Ref::ZERO, &mut |r| {
        sizes.push(s.get(&r)?.len());
        Ok(true)
    })
    .unwrap();
    sizes
}

/// The floor under in-memory puts, measured in the same run: hash and keep, in a
/// fresh map, blobs of the given sizes (those the puts stored). Whatever the code
/// does, the format makes it write, hash and keep these bytes; in fresh memory, the
/// kernel's cost of handing out the pages is part of it.
fn mem_floor(what: &str, sizes: &[usize], took_s: f64) {
    let total: usize = sizes.iter().sum();
    let src = vec![0x5au8; sizes.iter().copied().max().unwrap_or(0)];
    let start = Instant::now();
    let mut kept = std::collections::HashMap::new();
    for (i, n) in sizes.iter().enumerate() {
        let mut b = src[..*n].to_vec();
        b[..8.min(*n)].copy_from_slice(&i.to_le_bytes()[..8.min(*n)]); // distinct contents
        kept.insert(Ref::of(&b), b);
    }
    let floor_s = secs(start.elapsed());
    println!(
        "{:<22} floor: hash and keep the {} blobs ({:.1} MB) {what} stored: {floor_s:.3} s; they took {:.2}x the floor",
        "",
        sizes.len(),
        total as f64 / 1e6,
        took_s / floor_s
    );
}

/// The floor under the puts on a file store, measured in the same run on the same
/// file system: create, in a fresh directory of the same layout, one file per blob
/// the puts stored (same names, same sizes) and replace a 32-byte map ref file once
/// per put, with the fewest system calls that can do it: top directories opened
/// once and kept, each second-level directory made once, each blob
/// `openat(O_CREAT|O_EXCL)` under its top directory, one write, close (no temp file,
/// no rename, no fsync, no hashing); the map ref written to a temp file and renamed.
/// Any store of this format does at least this much.
fn file_floor(s: &FileStore, dir: &Path, puts: usize, put_s: f64) {
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let mut blobs = Vec::new();
    s.list_refs(&Ref::ZERO, &mut |r| {
        let len = fs::metadata(s.blob_path(&r)).unwrap().len() as usize;
        blobs.push((r.to_hex(), len));
        Ok(true)
    })
    .unwrap();
    // The order the puts wrote them in does not matter to the file system's cost;
    // a pseudo-random order spreads them over directories as the puts did.
    blobs.sort_by_key(|(hex, _)| Ref::of(hex.as_bytes()));
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let c = |s: &str| CString::new(s).unwrap();
    // SAFETY (all calls below): valid C strings and descriptors this function owns.
    let open_dir = |at: i32, name: &str| -> OwnedFd {
        let n = c(name);
        unsafe {
            if libc::mkdirat(at, n.as_ptr(), 0o755) != 0 {
                assert_eq!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EEXIST)
                );
            }
            let fd = libc::openat(at, n.as_ptr(), libc::O_DIRECTORY | libc::O_CLOEXEC);
            assert!(fd >= 0);
            OwnedFd::from_raw_fd(fd)
        }
    };
    let src = vec![0x5au8; blobs.iter().map(|b| b.1).max().unwrap_or(0)];
    let per_put = blobs.len().div_ceil(puts.max(1));
    let start = Instant::now();
    let root = open_dir(libc::AT_FDCWD, dir.to_str().unwrap());
    let blobs_dir = open_dir(root.as_raw_fd(), "blobs");
    // The 256 top directories stay open; the second level is made once each.
    let mut tops: HashMap<String, OwnedFd> = HashMap::new();
    let mut made = std::collections::HashSet::new();
    for (i, chunk) in blobs.chunks(per_put).enumerate() {
        for (hex, len) in chunk {
            if !tops.contains_key(&hex[..2]) {
                let d = open_dir(blobs_dir.as_raw_fd(), &hex[..2]);
                tops.insert(hex[..2].to_string(), d);
            }
            let top = tops[&hex[..2]].as_raw_fd();
            if made.insert(hex[..4].to_string()) {
                let sub = c(&hex[..4]);
                assert_eq!(unsafe { libc::mkdirat(top, sub.as_ptr(), 0o755) }, 0);
            }
            let name = c(&format!("{}/{hex}", &hex[..4]));
            unsafe {
                let fd = libc::openat(
                    top,
                    name.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    0o644,
                );
                assert!(fd >= 0);
                assert_eq!(libc::write(fd, src.as_ptr().cast(), *len), *len as isize);
                libc::close(fd);
            }
        }
        let (tmp, fin) = (c("anchormapref.tmp"), c("anchormapref"));
        unsafe {
            let fd = libc::openat(
                root.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            );
            assert!(fd >= 0);
            assert_eq!(libc::write(fd, [i as u8; 32].as_ptr().cast(), 32), 32);
            libc::close(fd);
            assert_eq!(
                libc::renameat(
                    root.as_raw_fd(),
                    tmp.as_ptr(),
                    root.as_raw_fd(),
                    fin.as_ptr()
                ),
                0
            );
        }
    }
    let floor_s = secs(start.elapsed());
    println!(
        "{:<22} floor: create the {} blob files and {puts} map ref files those puts wrote, nothing more: {floor_s:.3} s; puts take {:.2}x the floor",
        "",
        blobs.len(),
        put_s / floor_s
    );
    drop(tops);
    let _ = fs::remove_dir_all(dir);
}

/// Puts `n` versions of one name; returns the seconds the last tenth took.
fn bench_versions<S: AnchorStore>(label: &str, s: &S, n: usize) -> f64 {
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
    last
}

/// The long-history bench in memory, with its floor: each put of one name stores
/// one blob (the map's only leaf, holding the whole history), so the last tenth of
/// the puts stored the largest tenth of the blobs.
fn bench_versions_mem(n: usize) {
    let s = MemStore::new();
    let last = bench_versions("mem", &s, n);
    let mut sizes = blob_sizes(&s);
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.truncate(n / 10);
    // The store stays alive, so the floor too gets memory the process never had.
    mem_floor("the last tenth", &sizes, last);
    drop(s);
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
        let s = MemStore::new();
        let put_s = bench_store("mem", &s, n, Some(GO_PUTS_MEM), GO_GET_MEM_US);
        mem_floor("those puts", &blob_sizes(&s), put_s);
        return;
    }
    if std::env::var("ANCHOR_BENCH_ONLY").as_deref() == Ok("mem") {
        bench_store("mem", &MemStore::new(), n, Some(GO_PUTS_MEM), GO_GET_MEM_US);
        bench_versions_mem(n);
        return;
    }
    if std::env::var("ANCHOR_BENCH_ONLY").as_deref() == Ok("shm") {
        let s = FileStore::create(shm_root.join("puts")).unwrap();
        let put_s = bench_store(
            "file on /dev/shm",
            &s,
            n,
            Some(GO_PUTS_TMPFS),
            GO_GET_FILE_US,
        );
        file_floor(&s, &shm_root.join("floor"), n, put_s);
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
    let s = MemStore::new();
    let put_s = bench_store("mem", &s, n, Some(GO_PUTS_MEM), GO_GET_MEM_US);
    mem_floor("those puts", &blob_sizes(&s), put_s);
    drop(s);
    if have_shm {
        let s = FileStore::create(shm_root.join("puts")).unwrap();
        let put_s = bench_store(
            "file on /dev/shm",
            &s,
            n,
            Some(GO_PUTS_TMPFS),
            GO_GET_FILE_US,
        );
        file_floor(&s, &shm_root.join("floor"), n, put_s);
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
    bench_versions_mem(n);
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
