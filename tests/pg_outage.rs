//! A mount of a PostgreSQL store while its server is killed and started again, at
//! random moments, under writes through the mount and the command line. Calls
//! made while the server is down may fail (EIO), never hang; the mount reconnects
//! by itself; nothing acknowledged is lost and no failed write leaves a version.
//!
//! The test runs a server of its own (stopped with `pg_ctl stop -m immediate`,
//! as a crash would), never the shared one other tests use.

mod common;
#[path = "common/pg.rs"]
mod pg_common;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anchorfs::anchor;
use anchorfs::store::{open, OpenMode};
use anchorfs::Timestamp;
use common::{eventually, fuse_skipped, is_mounted, write_and_close, Mounted};
use pg_common::OwnServer;
use rand::Rng;

/// How many times the server is killed.
const OUTAGES: usize = 20;

/// One write a writer tried: its anchor, its content, whether it was
/// acknowledged, when it ended and how long it took.
struct Attempt {
    anchor: String,
    content: Vec<u8>,
    acked: bool,
    /// Why it failed (through the mount).
    errno: Option<i32>,
    done: Instant,
    took: Duration,
}

/// Writes new versions of `anchor` through `latest` in the mount until `stop`,
/// each content unique; a write or close that fails is not acknowledged, and the
/// writer goes on.
fn mount_writer(mnt: &Path, anchor: &str, stop: &AtomicBool) -> Vec<Attempt> {
    let mut out = Vec::new();
    let path = mnt.join(anchor).join("latest");
    let mut i = 0u64;
    while !stop.load(Ordering::Acquire) {
        i += 1;
        let content = format!("{anchor} {i}\n").into_bytes();
        let start = Instant::now();
        let res = write_and_close(&path, &content);
        let done = Instant::now();
        out.push(Attempt {
            anchor: anchor.to_string(),
            content,
            acked: res.is_ok(),
            errno: res.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1)),
            done,
            took: done - start,
        });
        std::thread::sleep(Duration::from_millis(if res.is_ok() { 5 } else { 20 }));
    }
    out
}

/// Puts new versions of `anchor` with `anchorfs put` until `stop`; a put is
/// acknowledged when it exits 0.
fn cli_writer(url: &str, anchor: &str, stop: &AtomicBool) -> Vec<Attempt> {
    use std::io::Write;
    let mut out = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Acquire) {
        i += 1;
        let content = format!("{anchor} {i}\n").into_bytes();
        let start = Instant::now();
        let mut child = Command::new(common::binary())
            .env_remove("ANCHORFS_STORE")
            .args(["--store", url, "put", anchor])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anchorfs put");
        let mut stdin = child.stdin.take().expect("stdin pipe");
        let _ = stdin.write_all(&content);
        drop(stdin);
        let status = child.wait().expect("wait for anchorfs put");
        let done = Instant::now();
        out.push(Attempt {
            anchor: anchor.to_string(),
            content,
            acked: status.success(),
            errno: None,
            done,
            took: done - start,
        });
        if !status.success() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    out
}

/// Writes new versions of `anchor` through the mount until `stop`, each a
/// split file of several chunks written in four parts with pauses between, so
/// that a restart may come while a file is open with parts of it stored.
fn big_writer(mnt: &Path, anchor: &str, stop: &AtomicBool) -> Vec<Attempt> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut out = Vec::new();
    let mut i = 0u32;
    while !stop.load(Ordering::Acquire) {
        i += 1;
        let content = [
            format!("{anchor} {i}\n").as_bytes(),
            &common::bytes(1 << 20, 1000 + i),
        ]
        .concat();
        let start = Instant::now();
        let res = fs::File::create(mnt.join(anchor).join("latest")).and_then(|mut f| {
            for part in content.chunks(content.len().div_ceil(4)) {
                f.write_all(part)?;
                std::thread::sleep(Duration::from_millis(30));
            }
            let fd = f.into_raw_fd();
            // SAFETY: `fd` was just taken from the file.
            match unsafe { libc::close(fd) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
        let done = Instant::now();
        out.push(Attempt {
            anchor: anchor.to_string(),
            content,
            acked: res.is_ok(),
            errno: res.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1)),
            done,
            took: done - start,
        });
        if res.is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    out
}

/// The history of `name` read with the library: (time, content), oldest first.
fn history(url: &str, name: &str) -> Vec<(Timestamp, Vec<u8>)> {
    let opened = open(OsStr::new(url), OpenMode::Existing).expect("open the database");
    let s = &*opened.store;
    anchor::history(s, name.as_bytes())
        .unwrap_or_else(|e| panic!("the history of {name} decodes: {e}"))
        .into_iter()
        .map(|a| {
            let c = anchorfs::content::read_all(s, &a.r)
                .unwrap_or_else(|e| panic!("{name} at {}: {e}", a.at));
            (a.at, c)
        })
        .collect()
}

/// `anchorfs --store URL ARGS...`: (exit code, stdout, stderr).
fn cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::binary())
        .env_remove("ANCHORFS_STORE")
        .arg("--store")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run anchorfs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_server_killed_at_random_moments_under_writes() {
    if fuse_skipped() || pg_common::skipped() {
        return;
    }
    let server = OwnServer::start();
    let url = server.url.clone();
    let mut m = Mounted::new(&url, "poll=200ms");
    let mount_anchors = ["m0", "m1"];
    fs::create_dir(m.path("big")).unwrap();
    for a in mount_anchors {
        fs::create_dir(m.path(a)).unwrap();
    }
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut restarts: Vec<Instant> = Vec::new();
    let (attempts, restarts) = std::thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<Vec<Attempt>>();
        for a in mount_anchors {
            let (tx, stop, mnt) = (done_tx.clone(), &stop, &m.mnt);
            s.spawn(move || {
                let _ = tx.send(mount_writer(mnt, a, stop));
            });
        }
        {
            let (tx, stop, mnt) = (done_tx.clone(), &stop, &m.mnt);
            s.spawn(move || {
                let _ = tx.send(big_writer(mnt, "big", stop));
            });
        }
        {
            let (tx, stop, url) = (done_tx.clone(), &stop, url.as_str());
            s.spawn(move || {
                let _ = tx.send(cli_writer(url, "cli", stop));
            });
        }
        drop(done_tx);
        let mut rng = rand::thread_rng();
        for _ in 0..OUTAGES {
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..=500)));
            server.kill();
            std::thread::sleep(Duration::from_millis(rng.gen_range(50..=300)));
            server.restart();
            restarts.push(Instant::now());
        }
        // Writing goes on a while after the last restart.
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Release);
        // No call may hang: every writer ends soon after being told to.
        let mut attempts = Vec::new();
        for _ in 0..4 {
            match done_rx.recv_timeout(Duration::from_secs(60)) {
                Ok(a) => attempts.extend(a),
                Err(e) => {
                    panic!("a writer did not finish within 60 s of the end ({e}): a call hangs")
                }
            }
        }
        (attempts, restarts)
    });
    let outage_time = started.elapsed();

    assert!(is_mounted(&m.mnt), "the mount is still there");
    assert_eq!(
        m.wait_exit(Duration::ZERO),
        None,
        "the mount's daemon is still running"
    );

    // The same mount serves writes and reads again, with no remount.
    let last = b"the final version\n";
    assert!(
        eventually(Duration::from_secs(30), || write_and_close(
            &m.path("m0/latest"),
            last
        )
        .is_ok()),
        "a write through the mount succeeds after the outages"
    );
    assert_eq!(fs::read(m.path("m0/latest")).unwrap(), last);

    // Figures.
    let mut acked_by: Vec<(String, usize, usize)> = Vec::new();
    for a in ["m0", "m1", "big", "cli"] {
        let mine: Vec<&Attempt> = attempts.iter().filter(|t| t.anchor == a).collect();
        let ok = mine.iter().filter(|t| t.acked).count();
        acked_by.push((a.to_string(), ok, mine.len() - ok));
    }
    let slowest = |a: &str| {
        attempts
            .iter()
            .filter(|t| t.anchor.starts_with(a))
            .map(|t| t.took)
            .max()
            .unwrap_or_default()
    };
    // How long after each restart the mount acknowledged a write again.
    let mut recovery: Vec<Duration> = Vec::new();
    for r in &restarts {
        if let Some(first) = attempts
            .iter()
            .filter(|t| t.anchor.starts_with('m') && t.acked && t.done >= *r)
            .map(|t| t.done)
            .min()
        {
            recovery.push(first - *r);
        }
    }
    recovery.sort();
    eprintln!(
        "{OUTAGES} outages in {:.1} s; (anchor, acknowledged, failed): {acked_by:?}; \
         slowest small write through the mount {:?}, big {:?}, put {:?}; the mount's first \
         acknowledged small write after a restart: median {:?}, max {:?}",
        outage_time.as_secs_f64(),
        slowest("m"),
        slowest("big"),
        slowest("cli"),
        recovery.get(recovery.len() / 2),
        recovery.last()
    );
    let not_eio: Vec<i32> = attempts
        .iter()
        .filter_map(|t| t.errno)
        .filter(|&e| e != libc::EIO)
        .collect();
    assert!(
        not_eio.is_empty(),
        "a write while the server is down fails with EIO, not {not_eio:?}"
    );
    for (a, ok, _) in &acked_by {
        assert!(*ok > 0, "{a}: some writes were acknowledged");
    }
    assert!(
        acked_by.iter().map(|(_, _, failed)| failed).sum::<usize>() > 0,
        "some writes failed: the outages happened under writes"
    );

    // Every acknowledged version is there; every version there is one a writer
    // tried, whole (a failed close leaves no half version); histories decode and
    // are in time order.
    for a in ["m0", "m1", "big", "cli"] {
        let hist = history(&url, a);
        let tried: HashSet<&[u8]> = attempts
            .iter()
            .filter(|t| t.anchor == a)
            .map(|t| t.content.as_slice())
            .chain((a == "m0").then_some(&last[..]))
            .collect();
        let got: HashSet<&[u8]> = hist.iter().map(|(_, c)| c.as_slice()).collect();
        let lost: Vec<String> = attempts
            .iter()
            .filter(|t| t.anchor == a && t.acked && !got.contains(t.content.as_slice()))
            .map(|t| String::from_utf8_lossy(&t.content).into_owned())
            .collect();
        assert!(
            lost.is_empty(),
            "{a}: acknowledged but not in the history: {lost:?}"
        );
        let strange: Vec<String> = hist
            .iter()
            .filter(|(_, c)| !tried.contains(c.as_slice()))
            .map(|(t, c)| format!("{t}: {:?}", String::from_utf8_lossy(c)))
            .collect();
        assert!(
            strange.is_empty(),
            "{a}: versions no writer wrote: {strange:?}"
        );
        assert_eq!(got.len(), hist.len(), "{a}: no version twice");
        assert!(
            hist.windows(2).all(|w| w[0].0 < w[1].0),
            "{a}: the history is in time order"
        );
        let (code, out, err) = cli(&url, &["log", a]);
        assert_eq!(code, 0, "anchorfs log {a}: {err}");
        assert_eq!(
            out.lines().count(),
            hist.len() + 1,
            "anchorfs log {a}: a heading and every version"
        );
        // The mount lists the same history (its poller caught up) and reads it.
        assert!(
            eventually(Duration::from_secs(10), || fs::read_dir(m.path(a))
                .map_or(0, |d| d.count())
                == hist.len() + 1),
            "{a}/ lists every version and latest"
        );
        let (at, content) = &hist[hist.len() / 2];
        assert_eq!(
            &fs::read(m.path(a).join(at.to_string())).unwrap(),
            content,
            "{a}/{at} reads through the mount"
        );
    }
    let (code, out, err) = cli(&url, &["fsck"]);
    assert_eq!(code, 0, "anchorfs fsck after the outages: {err}{out}");
    drop(m);
    drop(server);
}

#[test]
fn a_file_written_across_a_restart_is_whole_or_refused() {
    use std::io::Write;
    if fuse_skipped() || pg_common::skipped() {
        return;
    }
    let server = OwnServer::start();
    let url = server.url.clone();
    let m = Mounted::new(&url, "poll=200ms");
    fs::create_dir(m.path("big")).unwrap();
    let mut outcomes = Vec::new();
    for round in 0..3u32 {
        let first = common::bytes(4 << 20, 10 + round);
        let second = common::bytes(4 << 20, 20 + round);
        let path = m.path("big").join(format!("f{round}"));
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(&first).unwrap();
        // Killed while the file is open, its first part stored (and perhaps
        // not yet on the server's disk).
        server.kill();
        std::thread::sleep(Duration::from_millis(100));
        server.restart();
        let wrote = f.write_all(&second);
        use std::os::fd::IntoRawFd;
        let fd = f.into_raw_fd();
        // SAFETY: `fd` was just taken from the file.
        let closed = unsafe { libc::close(fd) } == 0;
        let acked = wrote.is_ok() && closed;
        outcomes.push(acked);
        let hist = history(&url, "big");
        let whole = [first, second].concat();
        if acked {
            assert!(
                hist.last().is_some_and(|(_, c)| *c == whole),
                "round {round}: an acknowledged file reads back whole"
            );
        }
    }
    eprintln!("a file written across a restart: acknowledged {outcomes:?}");
    let (code, out, err) = cli(&url, &["fsck"]);
    assert_eq!(code, 0, "anchorfs fsck: {err}{out}");
}

#[test]
fn blobs_put_before_a_restart_are_there_once_a_later_swap_or_sync_returns() {
    use anchorfs::store::pg::PgStore;
    use anchorfs::store::{AnchorStore, Getter, Store};
    if pg_common::skipped() {
        return;
    }
    let server = OwnServer::start();
    let (s, _) = PgStore::open(&server.url, OpenMode::Create).unwrap();
    let mut map = None;
    for round in 0..3u32 {
        // Put, then killed before any flushed commit: the rows may be only in
        // the log the crash threw away.
        let blobs: Vec<Vec<u8>> = (0..50)
            .map(|i| common::bytes(20_000, round * 100 + i))
            .collect();
        let views: Vec<&[u8]> = blobs.iter().map(|b| b.as_slice()).collect();
        let refs: Vec<anchorfs::Ref> = s
            .put_many(&views)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        server.kill();
        server.restart();
        // The first call after the restart may find its pooled connection gone.
        let first = s.contains(&refs[0]);
        if round % 2 == 0 {
            let new = refs[refs.len() - 1];
            let swapped = s
                .swap_anchor_map(map, new)
                .or_else(|_| s.swap_anchor_map(map, new));
            swapped.unwrap_or_else(|e| {
                panic!("round {round}: the swap after a restart: {e} ({first:?})")
            });
            map = Some(new);
        } else {
            s.sync().or_else(|_| s.sync()).unwrap();
        }
        let missing = refs.iter().filter(|r| !s.contains(r).unwrap()).count();
        assert_eq!(
            missing, 0,
            "round {round}: blobs put before the restart and lost by it, though a {} returned after",
            if round % 2 == 0 { "swap" } else { "sync" }
        );
    }
}
