//! Real mounts of a PostgreSQL store: reading what the command line stored,
//! writing with real programs (checked afterwards through the command line on the
//! same database), two mounts and the command line writing at once, gc's grace
//! period for a blob another process has stored but not yet anchored, and a
//! remounted version read from its whole copy in the disk cache.

mod common;
#[path = "common/pg.rs"]
mod pg_common;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anchorfs::anchor;
use anchorfs::store::{open, OpenMode};
use anchorfs::Timestamp;
use common::{eventually, fuse_skipped, write_and_close, Mounted};
use pg_common::TestDb;

/// `anchorfs --store URL ARGS...` with `stdin`.
fn cli(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(common::binary())
        .env_remove("ANCHORFS_STORE")
        .arg("--store")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start anchorfs");
    let mut input = child.stdin.take().expect("stdin pipe");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for anchorfs")
}

/// As [`cli`], expecting success; returns stdout.
fn ok(url: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = cli(url, args, stdin);
    assert!(
        out.status.success(),
        "anchorfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `anchorfs fsck` passes on the database.
fn fsck(url: &str) {
    let out = cli(url, &["fsck"], b"");
    assert!(
        out.status.success(),
        "anchorfs fsck: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The version times `anchorfs log --json NAME` lists, oldest first.
fn log_times(url: &str, name: &str) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_slice(&ok(url, &["log", "--json", name], b"")).expect("log --json");
    doc["versions"]
        .as_array()
        .expect("a versions array")
        .iter()
        .map(|v| v["at"].as_str().expect("a version time").to_string())
        .collect()
}

/// NAME's history through the command line: each version's content, by
/// `anchorfs get --at TIME`, oldest first.
fn cli_contents(url: &str, name: &str) -> Vec<Vec<u8>> {
    log_times(url, name)
        .iter()
        .map(|at| ok(url, &["get", name, "--at", at], b""))
        .collect()
}

/// NAME's history read with the library (for many versions): (time, content).
fn lib_history(url: &str, name: &str) -> Vec<(Timestamp, Vec<u8>)> {
    let opened = open(OsStr::new(url), OpenMode::Existing).expect("open the database");
    let s = &*opened.store;
    let hist = match anchor::history(s, name.as_bytes()) {
        Ok(h) => h,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("history of {name}: {e}"),
    };
    hist.into_iter()
        .map(|a| {
            let c = anchorfs::content::read_all(s, &a.r)
                .unwrap_or_else(|e| panic!("{name} at {}: {e}", a.at));
            (a.at, c)
        })
        .collect()
}

fn sh(cmd: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// A path quoted for `sh`.
fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("ls {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Waits (generously: a loaded machine) for `name` to have `n` versions, then
/// checks that it stays there (a late release must not add one).
fn settles(url: &str, name: &str, n: usize) {
    eventually(Duration::from_secs(10), || log_times(url, name).len() == n);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(log_times(url, name).len(), n, "versions of {name}");
}

#[test]
fn read_what_the_command_line_stored() {
    if fuse_skipped() {
        return;
    }
    let Some(db) = TestDb::new() else { return };
    let url = db.url.as_str();
    let big = common::bytes(3 << 20, 1);
    ok(
        url,
        &["put", "notes", "--at", "2026-11-24T21:20:32.123456789Z"],
        b"first version\n",
    );
    ok(url, &["put", "notes", "--at", "2026-11-25T08:00:00Z"], &big);
    ok(
        url,
        &["put", "raw", "--raw", "--at", "2026-02-02T00:00:00Z"],
        b"a raw blob",
    );

    let m = Mounted::new(url, "");
    assert_eq!(
        listing(&m.mnt),
        [".anchorfs", "notes", "raw"]
            .map(String::from)
            .into_iter()
            .collect(),
        "ls of the root"
    );
    let notes = m.path("notes");
    assert_eq!(
        listing(&notes),
        [
            "2026-11-24T21:20:32.123456789Z",
            "2026-11-25T08:00:00.000000000Z",
            "latest"
        ]
        .map(String::from)
        .into_iter()
        .collect(),
        "ls of an anchor directory"
    );
    assert_eq!(
        fs::read_link(notes.join("latest")).unwrap().as_os_str(),
        "2026-11-25T08:00:00.000000000Z"
    );
    let (code, out) = sh(&format!(
        "cat {}",
        q(&notes.join("2026-11-24T21:20:32.123456789Z"))
    ));
    assert_eq!(
        (code, out.as_str()),
        (0, "first version\n"),
        "cat of a version"
    );
    let cat = Command::new("cat")
        .arg(notes.join("latest"))
        .output()
        .unwrap();
    assert!(cat.status.success());
    assert!(cat.stdout == big, "cat of latest: the 3 MiB version");
    assert_eq!(fs::read(m.path("raw/latest")).unwrap(), b"a raw blob");

    let md = fs::metadata(notes.join("2026-11-25T08:00:00.000000000Z")).unwrap();
    assert_eq!(md.len(), big.len() as u64, "stat size of a split version");
    assert_eq!(
        md.mtime(),
        Timestamp::parse("2026-11-25T08:00:00Z").unwrap().secs()
    );
    assert_eq!(
        fs::metadata(notes.join("2026-11-24T21:20:32.123456789Z"))
            .unwrap()
            .len(),
        14
    );
    assert_eq!(
        fs::metadata(m.path("raw/latest")).unwrap().len(),
        10,
        "stat size of a raw version, through latest"
    );
}

#[test]
fn programs_write_and_the_command_line_reads_back() {
    if fuse_skipped() {
        return;
    }
    let Some(db) = TestDb::new() else { return };
    let url = db.url.as_str();
    let m = Mounted::new(url, "");
    let scratch = tempfile::tempdir().unwrap();

    // cp of a multi-MiB file.
    let big = common::bytes(5 << 20, 2);
    let src = scratch.path().join("big.bin");
    fs::write(&src, &big).unwrap();
    fs::create_dir(m.path("docs")).unwrap();
    let (code, err) = sh(&format!("cp {} {}/", q(&src), q(&m.path("docs"))));
    assert_eq!(code, 0, "cp: {err}");
    settles(url, "docs", 1);
    assert!(
        ok(url, &["get", "docs"], b"") == big,
        "anchorfs get gives the 5 MiB file cp wrote"
    );

    // > and >> on latest.
    fs::create_dir(m.path("notes")).unwrap();
    let latest = q(&m.path("notes/latest"));
    assert_eq!(sh(&format!("echo hi > {latest}")).0, 0);
    assert_eq!(sh(&format!("echo more >> {latest}")).0, 0);
    assert_eq!(sh(&format!("echo replaced > {latest}")).0, 0);
    settles(url, "notes", 3);
    assert_eq!(
        cli_contents(url, "notes"),
        [&b"hi\n"[..], b"hi\nmore\n", b"replaced\n"],
        "> truncates, >> appends to the newest"
    );

    // An editor-style save: a temp file written, then renamed over the name.
    let cfg = m.path("cfg");
    fs::create_dir(&cfg).unwrap();
    for v in 1..=2 {
        let tmp = cfg.join(".settings.json.tmp");
        write_and_close(&tmp, format!("{{\"v\": {v}}}\n").as_bytes()).unwrap();
        fs::rename(&tmp, cfg.join("settings.json")).unwrap();
    }
    settles(url, "cfg", 2);
    assert_eq!(
        cli_contents(url, "cfg"),
        [&b"{\"v\": 1}\n"[..], b"{\"v\": 2}\n"],
        "each save is one version; the temp name is none"
    );
    assert!(
        listing(&cfg).iter().all(|n| !n.starts_with('.')),
        "{:?}",
        listing(&cfg)
    );

    // sed -i.
    fs::create_dir(m.path("s")).unwrap();
    write_and_close(&m.path("s/latest"), b"alpha\nbeta\n").unwrap();
    let (code, err) = sh(&format!("sed -i s/beta/gamma/ {}", q(&m.path("s/latest"))));
    assert_eq!(code, 0, "sed -i: {err}");
    settles(url, "s", 2);
    assert_eq!(
        cli_contents(url, "s"),
        [&b"alpha\nbeta\n"[..], b"alpha\ngamma\n"]
    );

    // rsync of a small tree: one version per file, no temp file.
    let tree = scratch.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let files: [(&str, Vec<u8>); 3] = [
        ("a.bin", common::bytes(1 << 20, 3)),
        ("b.txt", b"bee\n".to_vec()),
        ("c.txt", b"sea\n".to_vec()),
    ];
    for (n, c) in &files {
        fs::write(tree.join(n), c).unwrap();
    }
    fs::create_dir(m.path("r")).unwrap();
    let (code, err) = sh(&format!("rsync -a {}/ {}/", q(&tree), q(&m.path("r"))));
    assert_eq!(code, 0, "rsync -a: {err}");
    settles(url, "r", 3);
    assert_eq!(
        cli_contents(url, "r"),
        files.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()
    );
    for (n, c) in &files {
        assert_eq!(&fs::read(m.path("r").join(n)).unwrap(), c, "r/{n}");
    }

    let ls = String::from_utf8(ok(url, &["ls"], b"")).unwrap();
    for name in ["docs", "notes", "cfg", "s", "r"] {
        assert!(ls.contains(name), "anchorfs ls lists {name}: {ls}");
    }
    fsck(url);
}

/// What a writer had acknowledged: each content whose write and close returned 0
/// (or whose put exited 0), by anchor.
type Acked = Vec<(String, Vec<u8>)>;

/// Writes `n` versions of each of `anchors` through the mount at `mnt`, in turn;
/// returns those acknowledged.
fn mount_writer(mnt: &Path, tag: &str, anchors: &[&str], n: usize) -> Acked {
    let mut acked = Vec::new();
    for i in 0..n {
        for a in anchors {
            let content = format!("{tag} {a} {i}\n").into_bytes();
            match write_and_close(&mnt.join(a).join("latest"), &content) {
                Ok(()) => acked.push((a.to_string(), content)),
                Err(e) => eprintln!("{tag}: writing {a} #{i}: {e}"),
            }
        }
    }
    acked
}

#[test]
fn two_mounts_and_the_command_line_write_at_once() {
    if fuse_skipped() {
        return;
    }
    let Some(db) = TestDb::new() else { return };
    let url = db.url.as_str();
    ok(url, &["put", "shared"], b"seed\n");
    let a = Mounted::new(url, "poll=200ms");
    let b = Mounted::new(url, "poll=200ms");
    for (m, own) in [(&a, "a-own"), (&b, "b-own")] {
        fs::create_dir(m.path(own)).unwrap();
    }
    const N: usize = 15;
    const M: usize = 10;
    let (acked_a, acked_b, acked_cli) = std::thread::scope(|s| {
        let ta = s.spawn(|| mount_writer(&a.mnt, "a", &["a-own", "shared"], N));
        let tb = s.spawn(|| mount_writer(&b.mnt, "b", &["b-own", "shared"], N));
        let tc = s.spawn(|| {
            let mut acked = Vec::new();
            for i in 0..M {
                for name in ["cli", "shared"] {
                    let content = format!("cli {name} {i}\n").into_bytes();
                    if cli(url, &["put", name], &content).status.success() {
                        acked.push((name.to_string(), content));
                    }
                }
            }
            acked
        });
        (ta.join().unwrap(), tb.join().unwrap(), tc.join().unwrap())
    });
    // Nothing failed: the server stayed up.
    assert_eq!(acked_a.len(), 2 * N, "mount a's writes all acknowledged");
    assert_eq!(acked_b.len(), 2 * N, "mount b's writes all acknowledged");
    assert_eq!(acked_cli.len(), 2 * M, "every put exited 0");
    eprintln!(
        "acknowledged: mount a {}, mount b {}, the command line {}",
        acked_a.len(),
        acked_b.len(),
        acked_cli.len()
    );

    let all: Vec<&(String, Vec<u8>)> = acked_a.iter().chain(&acked_b).chain(&acked_cli).collect();
    for name in ["a-own", "b-own", "cli", "shared"] {
        let want: HashSet<&[u8]> = all
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, c)| c.as_slice())
            .collect();
        let hist = lib_history(url, name);
        let got: HashSet<&[u8]> = hist.iter().map(|(_, c)| c.as_slice()).collect();
        let missing: Vec<String> = want
            .difference(&got)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: acknowledged but lost: {missing:?}"
        );
        let extra = usize::from(name == "shared");
        assert_eq!(
            hist.len(),
            want.len() + extra,
            "{name}: one version per acknowledged write (and the seed), no other"
        );
        assert_eq!(
            log_times(url, name).len(),
            hist.len(),
            "anchorfs log lists them all"
        );
        assert!(
            hist.windows(2).all(|w| w[0].0 < w[1].0),
            "{name}: the history is in time order"
        );
    }
    fsck(url);

    // A version committed through one mount shows up in the other within the
    // poll interval (waited for generously).
    write_and_close(&a.path("shared/latest"), b"from a, for b\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || fs::read(
            b.path("shared/latest")
        )
        .ok()
        .as_deref()
            == Some(b"from a, for b\n")),
        "mount b sees mount a's newest version of shared"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            fs::read_dir(b.path("a-own")).map_or(0, |d| d.count()) == N + 1
        }),
        "mount b lists every version of a-own (and latest)"
    );
    write_and_close(&b.path("b-own/latest"), b"from b, for a\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || fs::read(a.path("b-own/latest"))
            .ok()
            .as_deref()
            == Some(b"from b, for a\n")),
        "and mount a sees mount b's"
    );
}

#[test]
fn gc_spares_a_young_unanchored_blob_stored_by_another_process() {
    let Some(db) = TestDb::new() else { return };
    let url = db.url.as_str();
    ok(url, &["put", "kept"], b"anchored\n");
    // This process stores content as a writer does before its anchor put: the
    // blobs are there, nothing reaches them yet.
    let opened = open(OsStr::new(url), OpenMode::Existing).unwrap();
    let s = &*opened.store;
    let pending = common::bytes(600_000, 4);
    let root = anchorfs::content::store(s, &pending[..]).unwrap();
    let (orphan, _) = s.put(b"a blob nobody anchors").unwrap();
    let count = || {
        let mut n = 0usize;
        s.list_refs(&anchorfs::Ref::ZERO, &mut |_| {
            n += 1;
            Ok(true)
        })
        .unwrap();
        n
    };
    let before = count();

    // gc from another process, within the grace period: nothing goes.
    for args in [&["gc"][..], &["gc", "--grace", "1h"]] {
        let out = String::from_utf8(ok(url, args, b"")).unwrap();
        assert!(out.starts_with("gc: deleted 0 blobs"), "{args:?}: {out}");
    }
    assert_eq!(count(), before, "gc deleted nothing young");
    assert!(s.contains(&orphan).unwrap());
    anchorfs::content::put_split(s, b"pending", root, Timestamp::now()).unwrap();
    assert!(ok(url, &["get", "pending"], b"") == pending);

    // Past the grace period (the write times made two hours old), what nothing
    // reaches goes (the orphan, and the maps the puts replaced), and only that.
    let mut c = db.client();
    c.execute(
        "UPDATE anchorfs_written SET at = now() - interval '2 hours'",
        &[],
    )
    .unwrap();
    let before = count();
    let out = String::from_utf8(ok(url, &["gc"], b"")).unwrap();
    let deleted: usize = out
        .strip_prefix("gc: deleted ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("gc's summary: {out}"));
    assert!(deleted >= 1, "{out}");
    assert_eq!(count(), before - deleted, "{out}");
    assert!(!s.contains(&orphan).unwrap(), "the old orphan is gone");
    assert!(ok(url, &["get", "pending"], b"") == pending);
    assert_eq!(ok(url, &["get", "kept"], b""), b"anchored\n");
    fsck(url);
}

/// A large version read once from the database is read again after a remount from
/// its whole copy in the disk cache, by the kernel (passthrough): with its chunks
/// deleted from the database and from the cache's blob copies, every byte still
/// reads back.
#[test]
fn a_remounted_version_reads_from_its_whole_copy_without_its_chunks() {
    if fuse_skipped() {
        return;
    }
    common::require_root();
    let Some(db) = TestDb::new() else { return };
    let url = db.url.as_str();
    let big = common::bytes(6 << 20, 7);
    ok(url, &["put", "big", "--at", "2026-11-25T08:00:00Z"], &big);
    let cache = tempfile::tempdir().unwrap();
    let opts = format!("cache_dir={}", cache.path().display());
    let mut m = Mounted::new(url, &opts);
    assert!(fs::read(m.path("big/latest")).unwrap() == big, "first read");
    assert_eq!(m.unmount(), Some(0));

    // The chunks are the blobs of 32 KiB or more; nodes are smaller.
    let gone = db
        .client()
        .execute("DELETE FROM blobs WHERE octet_length(data) >= 32768", &[])
        .unwrap();
    assert!(gone >= 3, "{gone} chunks deleted");
    for copy in common::files_of_at_least(&cache.path().join("blobs"), 32768) {
        fs::remove_file(copy).unwrap();
    }
    let mut m = Mounted::new(url, &opts);
    assert!(fs::read(m.path("big/latest")).unwrap() == big, "read again");
    assert_eq!(m.unmount(), Some(0));
}
