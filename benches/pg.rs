//! The PostgreSQL store against plain SQL on the same server, in one run: each
//! figure is printed with its ratio to a floor measured here with the `postgres`
//! crate directly (the same driver, the same server, the same data).
//!
//! Run by `scripts/bench-pg.sh`, which starts a throwaway server, builds the
//! release binary and passes:
//! - `ANCHORFS_BENCH_PG`: the server's URL (a database is made for the run and
//!   dropped after);
//! - `ANCHORFS_BIN`: the `anchorfs` binary whose mounts are measured;
//! - `BENCH_PG_SIZE_MB` (default 1024): the big file's size;
//! - `BENCH_PG_DIR`: a scratch directory on a local disk.
//!
//! Dropping the page cache between phases needs root; without it the first-read
//! figures are not cold and are marked so.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorfs::anchor;
use anchorfs::split::{SplitOptions, Splitter};
use anchorfs::store::lru::LruStore;
use anchorfs::store::pg::{ConnConfig, PgStore};
use anchorfs::store::{OpenMode, Store, StoreSettings};
use anchorfs::{Ref, Timestamp};

/// Repetitions of the small figures, whose median is taken.
const REPS: usize = 200;
/// Bytes of chunks per statement in the floors (at least one chunk).
const BATCH_BYTES: usize = 8 << 20;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let server = std::env::var("ANCHORFS_BENCH_PG").map_err(|_| "set ANCHORFS_BENCH_PG")?;
    let bin = PathBuf::from(std::env::var("ANCHORFS_BIN").map_err(|_| "set ANCHORFS_BIN")?);
    let size_mb: usize = std::env::var("BENCH_PG_SIZE_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let scratch = PathBuf::from(std::env::var("BENCH_PG_DIR").map_err(|_| "set BENCH_PG_DIR")?);
    let db = format!("anchorfs_bench_{}", std::process::id());
    let mut admin = connect(&server)?;
    admin.batch_execute(&format!("CREATE DATABASE {db}"))?;
    let url = with_db(&server, &db);
    let res = run(&url, &bin, size_mb, &scratch);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
    res
}

fn connect(url: &str) -> Res<postgres::Client> {
    Ok(ConnConfig::parse(url)?.connect()?)
}

/// `url` with its database replaced by `db`.
fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = main.split('/').next().unwrap_or_default();
    format!("{scheme}://{authority}/{db}{query}")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// One line of the table: the figure, the floor, their ratio, the target.
struct Row {
    work: &'static str,
    ours: String,
    floor_what: &'static str,
    floor: String,
    ratio: f64,
    target: &'static str,
    met: bool,
}

fn run(url: &str, bin: &Path, size_mb: usize, scratch: &Path) -> Res<()> {
    std::fs::create_dir_all(scratch)?;
    let cold = can_drop_caches();
    let mut rows = Vec::new();

    // One uncontended anchor update, against one conditional UPDATE commit.
    let (store, _) = PgStore::open(url, OpenMode::Create)?;
    // A new store's chunking, as `anchorfs init` records it.
    let settings = store.record_settings(&StoreSettings::NEW_STORE)?;
    println!("chunking: {}", settings.chunking);
    let opts = SplitOptions::from(settings.chunking);
    // As a mount holds it: behind a memory cache, which keeps the nodes of the
    // map it just installed, so an update reads no node back.
    let store = Arc::new(LruStore::new(store, 64 << 20));
    let mut floor = connect(url)?;
    floor.batch_execute(
        "CREATE TABLE bench_floor_ref (ref BYTEA NOT NULL);
         INSERT INTO bench_floor_ref VALUES ('\\x00'::bytea);
         CREATE TABLE bench_floor_blobs (ref BYTEA PRIMARY KEY NOT NULL, data BYTEA NOT NULL);",
    )?;
    // Prepared once, so each update is one round trip and one log flush.
    let update_st = floor.prepare("UPDATE bench_floor_ref SET ref = $1 WHERE ref = $2")?;
    let update_floor = median(
        (0..REPS)
            .map(|i| {
                let (old, new) = (update_value(i), update_value(i + 1));
                let t = Instant::now();
                floor
                    .execute(&update_st, &[&new, &if i == 0 { vec![0u8] } else { old }])
                    .map(|_| t.elapsed())
            })
            .collect::<Result<Vec<_>, _>>()?,
    );
    let update = median(
        (0..REPS)
            .map(|i| {
                let r = Ref::of(format!("version {i}").as_bytes());
                let t = Instant::now();
                anchor::put(&*store, b"bench", r, Timestamp::now()).map(|_| t.elapsed())
            })
            .collect::<Result<Vec<_>, _>>()?,
    );
    rows.push(Row {
        work: "one uncontended anchor update",
        ours: format!("{:.3} ms", ms(update)),
        floor_what: "one `UPDATE ... WHERE ref=$old` commit",
        floor: format!("{:.3} ms", ms(update_floor)),
        ratio: ms(update) / ms(update_floor),
        target: "≤ 1.5×",
        met: ms(update) <= 1.5 * ms(update_floor),
    });

    // The mount.
    let mnt = scratch.join("mnt");
    let cache = scratch.join("cache");
    std::fs::create_dir_all(&mnt)?;
    let mut m = Mount::start(bin, url, &mnt, &cache)?;

    // A 1 KiB new version through the mount, durable at close.
    std::fs::create_dir(mnt.join("small"))?;
    let mut small = Vec::new();
    for i in 0..REPS {
        // Content of its own each time: the same bytes again make no new version.
        let mut kib = format!("version {i} ").into_bytes();
        kib.resize(1024, b'x');
        let t = Instant::now();
        let mut f = File::create(mnt.join("small").join(format!("f{i}")))?;
        f.write_all(&kib)?;
        drop(f);
        small.push(t.elapsed());
    }
    let small = median(small);
    let versions = anchor::history(&*store, b"small")?.len();
    if versions != REPS {
        return Err(format!("{versions} versions of small, not {REPS}").into());
    }
    rows.push(Row {
        work: "1 KiB new version through the mount, durable",
        ours: format!("{:.3} ms", ms(small)),
        floor_what: "one `UPDATE ... WHERE ref=$old` commit",
        floor: format!("{:.3} ms", ms(update_floor)),
        ratio: ms(small) / ms(update_floor),
        target: "≤ 3×",
        met: ms(small) <= 3.0 * ms(update_floor),
    });

    // The big file: written once to local disk, then copied in.
    let bytes = size_mb << 20;
    let src = scratch.join("big.src");
    write_random(&src, bytes)?;
    let _ = read_all(&src)?; // in the page cache for the copy and the warm floor
    std::fs::create_dir(mnt.join("big"))?;
    let t = Instant::now();
    {
        let mut from = File::open(&src)?;
        let mut to = File::create(mnt.join("big").join("file"))?;
        std::io::copy(&mut from, &mut to)?;
    }
    let cp = t.elapsed();
    // The floor's chunks are the store's: the source cut with the same options.
    let lengths: Vec<usize> = Splitter::chunks(&opts, &std::fs::read(&src)?)?
        .into_iter()
        .map(|(len, _)| len as usize)
        .collect();
    let t = Instant::now();
    insert_chunks(&mut floor, &src, &lengths)?;
    let insert = t.elapsed();
    rows.push(Row {
        work: "big `cp` into the mount (MB/s)",
        ours: format!("{:.0}", mbps(bytes, cp)),
        floor_what: "inserting the same chunks as `bytea`",
        floor: format!("{:.0}", mbps(bytes, insert)),
        ratio: insert.as_secs_f64() / cp.as_secs_f64(),
        target: "≥ 0.7×",
        met: insert.as_secs_f64() / cp.as_secs_f64() >= 0.7,
    });

    // First read after a remount, the local cache empty. The floor is measured
    // first, so that what the read leaves in the page cache (the local cache's
    // files, as on a host that read the file a moment ago) is still there for the
    // read again below, as the source is for its floor.
    m.stop()?;
    drop_caches(cold);
    let t = Instant::now();
    let selected = select_chunks(&mut floor)?;
    let select = t.elapsed();
    if selected != bytes {
        return Err(format!("selected {selected} bytes of {bytes}").into());
    }
    let _ = std::fs::remove_dir_all(&cache);
    drop_caches(cold);
    let mut m = Mount::start(bin, url, &mnt, &cache)?;
    let t = Instant::now();
    let got = read_all(&mnt.join("big").join("latest"))?;
    let first = t.elapsed();
    if got != bytes {
        return Err(format!("read {got} bytes of {bytes}").into());
    }
    rows.push(Row {
        work: "first read after a remount (MB/s)",
        ours: format!("{:.0}", mbps(bytes, first)),
        floor_what: "selecting those chunks",
        floor: format!("{:.0}", mbps(bytes, select)),
        ratio: select.as_secs_f64() / first.as_secs_f64(),
        target: "≥ 0.6×",
        met: select.as_secs_f64() / first.as_secs_f64() >= 0.6,
    });

    // Read again after a remount, the local cache warm.
    m.stop()?;
    let mut m = Mount::start(bin, url, &mnt, &cache)?;
    let t = Instant::now();
    read_all(&mnt.join("big").join("latest"))?;
    let again = t.elapsed();
    // The source was dropped from the page cache before the first read: read it
    // once into the page cache, then time the read from there.
    read_all(&src)?;
    let t = Instant::now();
    read_all(&src)?;
    let page = t.elapsed();
    rows.push(Row {
        work: "read again after a remount, local cache warm (MB/s)",
        ours: format!("{:.0}", mbps(bytes, again)),
        floor_what: "page-cache read of the source",
        floor: format!("{:.0}", mbps(bytes, page)),
        ratio: page.as_secs_f64() / again.as_secs_f64(),
        target: "≥ 0.5×",
        met: page.as_secs_f64() / again.as_secs_f64() >= 0.5,
    });
    m.stop()?;
    std::fs::remove_file(&src)?;

    // Four mounts, 100 commits each to one anchor, at once.
    let mut mounts = Vec::new();
    for k in 0..4 {
        let dir = scratch.join(format!("mnt{k}"));
        std::fs::create_dir_all(&dir)?;
        mounts.push((
            Mount::start(bin, url, &dir, &scratch.join(format!("cache{k}")))?,
            dir,
        ));
    }
    // The anchor's first version, from one mount; how soon the others see it.
    std::fs::create_dir_all(mounts[0].1.join("shared"))?;
    std::fs::write(mounts[0].1.join("shared").join("seed"), "seed\n")?;
    let written = Instant::now();
    let mut seen = Vec::new();
    for (_, dir) in &mounts[1..] {
        let latest = dir.join("shared").join("latest");
        while std::fs::symlink_metadata(&latest).is_err() {
            if written.elapsed() > Duration::from_secs(10) {
                return Err(format!("{} did not appear", latest.display()).into());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        seen.push(written.elapsed());
    }
    let slowest = seen.iter().max().copied().unwrap_or_default();
    rows.push(Row {
        work: "a new anchor from one mount seen in 3 others",
        ours: format!("{:.1} ms", ms(slowest)),
        floor_what: "—",
        floor: "—".into(),
        ratio: f64::NAN,
        target: "≤ 100 ms",
        met: slowest <= Duration::from_millis(100),
    });
    let t = Instant::now();
    let failures: usize = std::thread::scope(|s| {
        let writers: Vec<_> = mounts
            .iter()
            .enumerate()
            .map(|(k, (_, dir))| {
                let dir = dir.clone();
                s.spawn(move || {
                    let mut failed = 0;
                    for i in 0..100 {
                        let path = dir.join("shared").join(format!("w{k}-{i}"));
                        if std::fs::write(&path, format!("writer {k} commit {i}\n")).is_err() {
                            failed += 1;
                        }
                    }
                    failed
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap_or(100)).sum()
    });
    let took = t.elapsed();
    for (mut m, _) in mounts {
        m.stop()?;
    }
    // The seed and the 400.
    let present = anchor::history(&*store, b"shared")?.len().saturating_sub(1);
    rows.push(Row {
        work: "4 mounts × 100 commits to one anchor at once",
        ours: format!(
            "{present} present, {failures} failed writes, {:.1} s",
            took.as_secs_f64()
        ),
        floor_what: "—",
        floor: "—".into(),
        ratio: f64::NAN,
        target: "400 present, no conflict reaches a program",
        met: present == 400 && failures == 0,
    });

    println!("| work | anchorfs | floor in the same run | floor | ratio | target | verdict |");
    println!("|---|---:|---|---:|---:|---|---|");
    for r in &rows {
        let ratio = if r.ratio.is_nan() {
            "—".to_string()
        } else {
            format!("{:.2}×", r.ratio)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.work,
            r.ours,
            r.floor_what,
            r.floor,
            ratio,
            r.target,
            if r.met { "met" } else { "**MISSED**" }
        );
    }
    if !cold {
        println!("(not root: the page cache was not dropped, so first reads were not cold)");
    }
    println!(
        "ratios: for times, ours ÷ floor (lower is better); for throughputs, ours ÷ floor \
         (higher is better)"
    );
    Ok(())
}

/// The floor's stand-in for a ref: 32 bytes that differ from one update to the next.
fn update_value(i: usize) -> Vec<u8> {
    Ref::of(format!("floor {i}").as_bytes()).as_bytes().to_vec()
}

/// Pseudo-random bytes (incompressible, no repeats) written to `path`.
fn write_random(path: &Path, bytes: usize) -> Res<()> {
    let mut f = File::create(path)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n])?;
        left -= n;
    }
    f.sync_all()?;
    Ok(())
}

/// Reads `path` to its end; the bytes read.
fn read_all(path: &Path) -> Res<usize> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// The floor of a big write: `src` cut into chunks of `lengths`, inserted as
/// `bytea` rows about [`BATCH_BYTES`] at a time with asynchronous commits, then
/// one synchronous commit (as the store's puts and its swap do).
fn insert_chunks(c: &mut postgres::Client, src: &Path, lengths: &[usize]) -> Res<()> {
    c.batch_execute("SET synchronous_commit = off")?;
    let stmt = c.prepare(
        "INSERT INTO bench_floor_blobs (ref, data) \
         SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT DO NOTHING",
    )?;
    let mut f = File::open(src)?;
    let mut lengths = lengths.iter().peekable();
    while lengths.peek().is_some() {
        let mut refs: Vec<Vec<u8>> = Vec::new();
        let mut datas: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0;
        while let Some(&len) = lengths.next_if(|_| bytes < BATCH_BYTES) {
            let mut chunk = vec![0u8; len];
            if read_full(&mut f, &mut chunk)? != len {
                return Err("the source is shorter than its chunks".into());
            }
            bytes += len;
            refs.push(Ref::of(&chunk).as_bytes().to_vec());
            datas.push(chunk);
        }
        c.execute(&stmt, &[&refs, &datas])?;
    }
    c.batch_execute("SET synchronous_commit = on; UPDATE bench_floor_ref SET ref = ref")?;
    Ok(())
}

/// The floor of a first read: every chunk inserted by [`insert_chunks`], selected
/// by ref about [`BATCH_BYTES`] at a time; the bytes read.
fn select_chunks(c: &mut postgres::Client) -> Res<usize> {
    let rows: Vec<(Vec<u8>, i64)> = c
        .query(
            "SELECT ref, octet_length(data)::int8 FROM bench_floor_blobs",
            &[],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let stmt = c.prepare("SELECT data FROM bench_floor_blobs WHERE ref = ANY($1)")?;
    let mut batches: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    let mut bytes = 0;
    for (r, len) in rows {
        if bytes >= BATCH_BYTES {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += len as usize;
        if let Some(b) = batches.last_mut() {
            b.push(r);
        }
    }
    let mut total = 0;
    for batch in &batches {
        for row in c.query(&stmt, &[&batch])? {
            let data: &[u8] = row.get(0);
            total += data.len();
        }
    }
    Ok(total)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> Res<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn can_drop_caches() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_ok()
}

fn drop_caches(can: bool) {
    if can {
        let _ = Command::new("sync").status();
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3\n");
    }
}

/// A mount of the database by the real binary, in the foreground.
struct Mount {
    child: Option<Child>,
    mnt: PathBuf,
}

impl Mount {
    fn start(bin: &Path, url: &str, mnt: &Path, cache: &Path) -> Res<Mount> {
        let child = Command::new(bin)
            .arg("mount")
            .arg(url)
            .arg(mnt)
            .arg("-f")
            .arg("-o")
            .arg(format!("cache_dir={}", cache.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let m = Mount {
            child: Some(child),
            mnt: mnt.to_path_buf(),
        };
        let start = Instant::now();
        while !is_mounted(mnt) {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!("{} did not mount", mnt.display()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(m)
    }

    fn stop(&mut self) -> Res<()> {
        let status = Command::new("umount").arg(&self.mnt).status()?;
        if !status.success() {
            return Err(format!("umount {} failed", self.mnt.display()).into());
        }
        if let Some(mut c) = self.child.take() {
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    text.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|p| p == want))
}
