//! Commit benchmark: what one small commit through the filesystem core costs, and
//! what re-reading the anchors after another writer's change costs, in a store of
//! 10 anchors and in one of 100,000. The two should cost about the same: a commit
//! pays for what it changed, not for the size of the store.
//!
//! Each figure is the median over repetitions (at least `MIN_REPS`, more while the
//! time budget lasts). Run: `cargo bench --bench commit` (set `COMMIT_BENCH_BIG` for
//! another large size, `COMMIT_BENCH_SECS` for another budget per figure).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorfs::anchor::{self, encode_history, Anchor};
use anchorfs::fs::inode::ROOT_INO;
use anchorfs::fs::{AnchorFs, FsOptions, SharedStore};
use anchorfs::schema::Map;
use anchorfs::store::file::FileStore;
use anchorfs::store::mem::MemStore;
use anchorfs::store::AnchorStore;
use anchorfs::{Ref, Timestamp};

/// The fewest repetitions a figure is the median of.
const MIN_REPS: usize = 15;
/// The most.
const MAX_REPS: usize = 400;
/// The anchor every commit goes to (present in every store).
const TARGET: &[u8] = b"bench-target";

fn ts(i: usize) -> Timestamp {
    Timestamp::new(1_600_000_000 + i as i64, 0).unwrap()
}

/// Fills `s` with `n` anchors of one version each, in one map built at once (the
/// shape a store of that size has after many commits is the same kind of trie).
fn fill(s: &dyn AnchorStore, n: usize) {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..n.saturating_sub(1))
        .map(|i| {
            let name = format!("anchor-{i:07}").into_bytes();
            let hist = encode_history(&[Anchor {
                r: Ref::of(&name),
                at: ts(i),
            }]);
            (name, hist)
        })
        .collect();
    pairs.push((
        TARGET.to_vec(),
        encode_history(&[Anchor {
            r: Ref::of(TARGET),
            at: ts(0),
        }]),
    ));
    let borrowed: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(k, p)| (k.as_slice(), p.as_slice()))
        .collect();
    let root = Map::from_pairs(s, &borrowed).unwrap();
    s.update_anchor_map(&mut |_| Ok(root)).unwrap();
}

/// The median of `f`'s times, repeated while `budget` lasts (within the bounds).
fn median(budget: Duration, mut f: impl FnMut(usize) -> Duration) -> Duration {
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_REPS || (times.len() < MAX_REPS && start.elapsed() < budget) {
        times.push(f(times.len()));
    }
    times.sort();
    times[times.len() / 2]
}

/// One commit of a new 1 KiB file into the target anchor: create, write, release.
fn commit_once(fs: &AnchorFs, dir: anchorfs::fs::Ino, i: usize) -> Duration {
    let mut data = vec![0x61u8; 1024];
    data[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let name = format!("file-{i}");
    let start = Instant::now();
    let (_, fh) = fs.create(dir, name.as_bytes()).unwrap();
    fs.write(fh, 0, &data, None).unwrap();
    fs.release(fh).unwrap();
    start.elapsed()
}

/// One refresh after another writer put a new version into an anchor of the store
/// (the put itself is not timed).
fn refresh_once(fs: &AnchorFs, store: &dyn AnchorStore, n: usize, i: usize) -> Duration {
    let name = format!("anchor-{:07}", (i * 7919) % n.saturating_sub(1).max(1));
    let r = Ref::of(format!("other writer {i}").as_bytes());
    anchor::put(store, name.as_bytes(), r, Timestamp::now()).unwrap();
    let start = Instant::now();
    fs.refresh().unwrap();
    start.elapsed()
}

/// The two figures for one store of `n` anchors.
struct Figures {
    commit: Duration,
    refresh: Duration,
    /// Building the core over the filled store (the first full read).
    open: Duration,
}

fn measure(store: SharedStore, opts: FsOptions, n: usize, budget: Duration) -> Figures {
    fill(&*store, n);
    let start = Instant::now();
    let fs = AnchorFs::new(store.clone(), opts).unwrap();
    let open = start.elapsed();
    let dir = fs.lookup(ROOT_INO, TARGET).unwrap().attr.ino;
    // A few commits first, so neither size's figure pays for first-time costs.
    for i in 0..3 {
        commit_once(&fs, dir, 1_000_000 + i);
    }
    let commit = median(budget, |i| commit_once(&fs, dir, i));
    let refresh = median(budget, |i| refresh_once(&fs, &*store, n, i));
    Figures {
        commit,
        refresh,
        open,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Which figure of a store's a row shows.
type Figure = fn(&Figures) -> Duration;

fn report(label: &str, sizes: &[usize], figs: &[Figures]) {
    let rows: [(&str, Figure); 3] = [
        ("one commit (create+1K+close)", |f| f.commit),
        ("refresh after another put", |f| f.refresh),
        ("open (first read of the map)", |f| f.open),
    ];
    let (first, last) = (0, figs.len() - 1);
    for (what, get) in rows {
        let mut line = format!("{label:<6} {what:<28}");
        for (n, f) in sizes.iter().zip(figs) {
            line += &format!("  {n:>7}: {:9.3} ms", ms(get(f)));
        }
        let ratio = |a: usize| get(&figs[last]).as_secs_f64() / get(&figs[a]).as_secs_f64();
        line += &format!(
            "   ratio {}/{}: {:7.2}x",
            sizes[last],
            sizes[first],
            ratio(first)
        );
        if figs.len() > 2 {
            line += &format!(
                ", {}/{}: {:5.2}x",
                sizes[last],
                sizes[last - 1],
                ratio(last - 1)
            );
        }
        println!("{line}");
    }
}

fn main() {
    let big: usize = std::env::var("COMMIT_BENCH_BIG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // 10 anchors fit one leaf of the trie; from a few thousand on the trie is
    // deep and its leaves are full, so the last ratio shows the growth with n alone.
    let sizes = [10, big / 10, big];
    let budget = Duration::from_secs_f64(
        std::env::var("COMMIT_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0),
    );
    println!("medians of each figure; a ratio is of the largest store's figure to a smaller one's (flat is 1.0x)");

    let mem = |n| {
        let store: SharedStore = Arc::new(MemStore::new());
        measure(store, FsOptions::default(), n, budget)
    };
    let figs: Vec<Figures> = sizes.iter().map(|&n| mem(n)).collect();
    report("mem", &sizes, &figs);

    let disk_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-commit");
    let _ = std::fs::remove_dir_all(&disk_root);
    std::fs::create_dir_all(&disk_root).unwrap();
    let file = |n| {
        let dir = tempfile::tempdir_in(&disk_root).unwrap();
        let path = dir.path().join("store");
        let store: SharedStore = Arc::new(FileStore::create(&path).unwrap());
        // The logs a mount of a store on disk keeps beside it.
        let opts = FsOptions {
            size_log: Some(path.join(anchorfs::fs::sizes::FILE_NAME)),
            mode_log: Some(path.join(anchorfs::fs::modes::FILE_NAME)),
            ..FsOptions::default()
        };
        measure(store, opts, n, budget)
    };
    let figs: Vec<Figures> = sizes.iter().map(|&n| file(n)).collect();
    report("file", &sizes, &figs);
    let _ = std::fs::remove_dir_all(&disk_root);
}
