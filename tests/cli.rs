//! The `anchorfs` command line, run as a program: every command, every exit status,
//! the JSON shapes, both content kinds, bad input, damage, gc racing a writer, a new
//! user's round trip and sync.
//!
//! Output goes to pipes here, so every successful command must print nothing on
//! stderr (progress is for terminals only), but for the one line saying it created a
//! new store, printed exactly when it did.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anchorfs::anchor;
use anchorfs::content;
use anchorfs::fs::names;
use anchorfs::store::file::FileStore;
use anchorfs::store::{Getter, Store};
use anchorfs::{Ref, Timestamp};
use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

/// The program, with no store from the environment.
fn bare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anchorfs"));
    c.env_remove("ANCHORFS_STORE");
    c
}

/// The program on `store`.
fn cli(store: &Path) -> Command {
    let mut c = bare();
    c.arg("--store").arg(store);
    c
}

/// Runs `args` on `store`, expecting success and a quiet stderr (but for the line
/// saying a store was created, exactly when one was); returns stdout.
fn ok(store: &Path, args: &[&str]) -> Vec<u8> {
    ok_in(store, args, b"")
}

/// Whether `store` holds a file store now.
fn is_store(store: &Path) -> bool {
    FileStore::open(store).is_ok()
}

/// What a successful command on `store` may print on stderr: nothing, or the line
/// saying it created the store if there was none before.
fn quiet_stderr(store: &Path, was_store: bool) -> String {
    if !was_store && is_store(store) {
        format!("anchorfs: created a new store at {}\n", store.display())
    } else {
        String::new()
    }
}

/// [`ok`] with the content given on stdin.
fn ok_in(store: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let was_store = is_store(store);
    let out = cli(store)
        .args(args)
        .write_stdin(stdin.to_vec())
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        quiet_stderr(store, was_store),
        "stderr of {args:?}"
    );
    out.stdout
}

/// Runs `args` on `store`, expecting exit status `code`, nothing on stdout and one
/// line on stderr that contains each of `mentions`; returns that line.
fn fails(store: &Path, args: &[&str], code: i32, mentions: &[&str]) -> String {
    let out = cli(store)
        .args(args)
        .assert()
        .code(code)
        .stdout("")
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, mentions)
}

fn one_line_mentioning(stderr: &[u8], mentions: &[&str]) -> String {
    let err = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(
        err.lines().count(),
        1,
        "want one line on stderr, got {err:?}"
    );
    assert!(err.starts_with("anchorfs: "), "{err:?}");
    for m in mentions {
        assert!(err.contains(m), "stderr {err:?} does not mention {m:?}");
    }
    err
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).expect("utf-8 output")
}

/// The ref a command printed.
fn printed_ref(b: Vec<u8>) -> Ref {
    Ref::from_hex(text(b).trim()).expect("a ref")
}

fn json(b: Vec<u8>) -> Value {
    serde_json::from_slice(&b).expect("one JSON document")
}

fn new_store() -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("store");
    (dir, store)
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
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

fn is_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 30
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && s[20..29].bytes().all(|b| b.is_ascii_digit())
        && Timestamp::parse(s).is_ok_and(|t| t.to_rfc3339() == s)
}

fn is_ref(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every file under `dir` with its bytes, to show a command left a store as it was.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let b = fs::read(&p).unwrap();
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

/// Sets the modification time of blob `r`'s file to `age` ago.
fn age_blob(fs_store: &FileStore, r: &Ref, age: Duration) {
    let f = fs::File::options()
        .write(true)
        .open(fs_store.blob_path(r))
        .unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

fn all_refs(s: &FileStore) -> Vec<Ref> {
    let mut refs = Vec::new();
    s.list_refs(&Ref::ZERO, &mut |r| {
        refs.push(r);
        Ok(true)
    })
    .unwrap();
    refs
}

#[test]
fn help_everywhere_and_bad_command_lines() {
    for sub in [
        &[][..],
        &["init"],
        &["put"],
        &["get"],
        &["cat"],
        &["ls"],
        &["log"],
        &["map-ref"],
        &["expire"],
        &["sync"],
        &["gc"],
        &["fsck"],
    ] {
        bare()
            .args(sub)
            .arg("--help")
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: anchorfs"))
            .stderr("");
    }
    bare()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("anchorfs "));
    // A bad command line is status 1 (2 means "not found"), with one line.
    let out = bare()
        .arg("frobnicate")
        .assert()
        .code(1)
        .stdout("")
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &["frobnicate"]);
    let out = bare()
        .args(["--store", "mem:", "put"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &["NAME"]);
    let out = bare()
        .args([
            "--store",
            "mem:",
            "put",
            "x",
            "--ref",
            &"ab".repeat(32),
            "--raw",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &["--raw"]);
    let out = bare()
        .arg("ls")
        .assert()
        .code(1)
        .stdout("")
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &["--store", "ANCHORFS_STORE"]);
}

#[test]
fn store_from_the_environment_and_mem() {
    let (_d, store) = new_store();
    let r = printed_ref(
        bare()
            .env("ANCHORFS_STORE", &store)
            .args(["put", "env"])
            .write_stdin("from the environment")
            .assert()
            .success()
            .stderr(format!(
                "anchorfs: created a new store at {}\n",
                store.display()
            ))
            .get_output()
            .stdout
            .clone(),
    );
    assert!(FileStore::open(&store).is_ok(), "put creates the store");
    let got = bare()
        .env("ANCHORFS_STORE", &store)
        .args(["get", "env"])
        .assert()
        .success();
    assert_eq!(got.get_output().stdout, b"from the environment");
    assert_eq!(printed_ref(ok(&store, &["get", "env", "--ref-only"])), r);

    // `mem:` lives for one command: empty every time.
    let mem = Path::new("mem:");
    assert_eq!(text(ok(mem, &["map-ref"])), "none\n");
    printed_ref(ok_in(mem, &["put", "x"], b"gone after this command"));
    fails(mem, &["get", "x"], 2, &["\"x\"", "not found", "mem:"]);
    assert_eq!(text(ok(mem, &["ls"])).lines().count(), 1, "header only");
    ok(mem, &["fsck"]);
    ok(mem, &["gc"]);
}

#[test]
fn put_and_get_both_kinds() {
    let (dir, store) = new_store();
    let data = pseudo_random(300_000, 1);
    let file = dir.path().join("data");
    fs::write(&file, &data).unwrap();

    // Split (default): a tree, recorded as one.
    let split = printed_ref(ok(&store, &["put", "tree", file.to_str().unwrap()]));
    assert_eq!(ok(&store, &["get", "tree"]), data);
    assert_eq!(ok(&store, &["cat", &split.to_hex()]), data);
    let fst = FileStore::open(&store).unwrap();
    assert_eq!(
        content::kind_of(&fst, &split).unwrap(),
        content::Kind::Split
    );
    // Forced raw: the root node's own bytes.
    let node = ok(&store, &["get", "tree", "--raw"]);
    assert_eq!(Ref::of(&node), split);
    assert_eq!(ok(&store, &["cat", &split.to_hex(), "--raw"]), node);

    // The size of what was put is in the size log, for mounts; raw puts are not.
    let sizes_path = store.join(anchorfs::fs::sizes::FILE_NAME);
    let logged = anchorfs::fs::sizes::SizeLog::open(&sizes_path, false);
    assert_eq!(logged.get(&split), Some(data.len() as u64));

    // Raw: one blob, from stdin (`-` and no FILE alike).
    let raw = printed_ref(ok_in(&store, &["put", "blob", "--raw", "-"], &data));
    let logged = anchorfs::fs::sizes::SizeLog::open(&sizes_path, false);
    assert_eq!((logged.len(), logged.get(&raw)), (1, None));
    assert_eq!(raw, Ref::of(&data));
    assert_eq!(fst.get(&raw).unwrap(), data);
    assert_eq!(ok(&store, &["get", "blob"]), data);
    assert_eq!(ok(&store, &["cat", &raw.to_hex()]), data);
    printed_ref(ok_in(&store, &["put", "small", "--raw"], b"just bytes"));
    assert_eq!(ok(&store, &["get", "small"]), b"just bytes");
    // Forcing a raw blob to be read as a tree fails (status 1), writing nothing.
    fails(
        &store,
        &["get", "blob", "--split"],
        1,
        &["\"blob\"", &raw.to_hex()],
    );

    // Empty content, both ways.
    let empty = printed_ref(ok_in(&store, &["put", "empty"], b""));
    assert!(empty.is_zero());
    assert_eq!(ok(&store, &["get", "empty"]), b"");
    printed_ref(ok_in(&store, &["put", "empty-raw", "--raw"], b""));
    assert_eq!(ok(&store, &["get", "empty-raw"]), b"");

    let ls = json(ok(&store, &["ls", "--json"]));
    let kinds: Vec<(&str, &str, u64)> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("blob", "raw", 300_000),
            ("empty", "split", 0),
            ("empty-raw", "raw", 0),
            ("small", "raw", 10),
            ("tree", "split", 300_000),
        ]
    );
    ok(&store, &["fsck"]);
}

#[test]
fn put_ref_and_allow_missing() {
    let (_d, store) = new_store();
    let r = printed_ref(ok_in(&store, &["put", "a"], b"content of a"));
    let hex = r.to_hex();
    assert_eq!(printed_ref(ok(&store, &["put", "b", "--ref", &hex])), r);
    assert_eq!(ok(&store, &["get", "b"]), b"content of a");
    // Uppercase hex is the same ref.
    assert_eq!(
        printed_ref(ok(&store, &["put", "c", "--ref", &hex.to_uppercase()])),
        r
    );

    let before = snapshot(&store);
    let absent = Ref::of(b"never stored").to_hex();
    fails(
        &store,
        &["put", "d", "--ref", &absent],
        2,
        &[&absent, "--allow-missing"],
    );
    assert_eq!(snapshot(&store), before, "a refused put changes nothing");
    printed_ref(ok(
        &store,
        &["put", "d", "--ref", &absent, "--allow-missing"],
    ));
    assert_eq!(text(ok(&store, &["get", "d", "--ref-only"])).trim(), absent);
    // Its content is not there: not found.
    fails(&store, &["get", "d"], 2, &[&absent, "\"d\""]);
    fails(&store, &["cat", &absent], 2, &[&absent]);
    // `fsck` notices the missing ref.
    let out = cli(&store)
        .arg("fsck")
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(text(out.stdout).contains(&format!("missing {absent}")));
}

#[test]
fn get_versions_by_time_and_not_found() {
    let (_d, store) = new_store();
    ok_in(
        &store,
        &["put", "doc", "--at", "2021-03-04T11:36:07.5+05:30"],
        b"first",
    );
    ok_in(
        &store,
        &["put", "doc", "--at", "2022-01-01T00:00:00Z"],
        b"second",
    );
    assert_eq!(ok(&store, &["get", "doc"]), b"second");
    assert_eq!(
        ok(&store, &["get", "doc", "--at", "2021-12-31T23:59:59Z"]),
        b"first"
    );
    // The offset counts: 11:36:07.5+05:30 is 06:06:07.5Z.
    assert_eq!(
        ok(&store, &["get", "doc", "--at", "2021-03-04T06:06:07.5Z"]),
        b"first"
    );
    let store_name = store.to_str().unwrap();
    fails(
        &store,
        &["get", "doc", "--at", "2021-03-04T06:06:07.4Z"],
        2,
        &["\"doc\"", "no version", store_name],
    );
    fails(
        &store,
        &["get", "nope"],
        2,
        &["\"nope\"", "not found", store_name],
    );
    fails(&store, &["get", "nope", "--ref-only"], 2, &["\"nope\""]);
    fails(&store, &["log", "nope"], 2, &["\"nope\"", store_name]);
    fails(&store, &["log", "nope", "--json"], 2, &["\"nope\""]);
    fails(
        &store,
        &["get", "doc", "--at", "yesterday"],
        1,
        &["yesterday", "RFC 3339"],
    );
    fails(
        &store,
        &["put", "doc", "--at", "2021-13-01T00:00:00Z"],
        1,
        &["2021-13-01"],
    );
}

#[test]
fn cat_refs() {
    let (_d, store) = new_store();
    let r = printed_ref(ok_in(&store, &["put", "x"], b"catted"));
    assert_eq!(ok(&store, &["cat", &r.to_hex()]), b"catted");
    let absent = Ref::of(b"absent").to_hex();
    fails(&store, &["cat", &absent], 2, &[&absent, "not found"]);
    fails(&store, &["cat", "xyz"], 1, &["xyz", "64 hex digits"]);
    fails(&store, &["cat", &"g".repeat(64)], 1, &["malformed ref"]);
}

#[test]
fn bad_store_paths() {
    let (dir, _) = new_store();
    let missing = dir.path().join("missing");
    let m = missing.to_str().unwrap();
    for args in [
        &["ls"][..],
        &["get", "x"],
        &["log", "x"],
        &["map-ref"],
        &["fsck"],
        &["gc"],
    ] {
        fails(&missing, args, 1, &[m, "not an anchorfs store"]);
    }
    assert!(!missing.exists(), "read-only commands create nothing");

    // A directory that is not a store: refused by everything, left as it was.
    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), b"not a store").unwrap();
    let before = snapshot(&other);
    let o = other.to_str().unwrap();
    fails(&other, &["ls"], 1, &[o, "not an anchorfs store"]);
    fails(&other, &["fsck"], 1, &[o]);
    fails(&other, &["gc"], 1, &[o]);
    let out = cli(&other)
        .args(["put", "x"])
        .write_stdin("data")
        .assert()
        .code(1)
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &[o, "not an anchorfs store"]);
    assert_eq!(snapshot(&other), before);

    // An empty directory is not a store for reading, but `put` makes it one.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fails(&empty, &["ls"], 1, &["not an anchorfs store"]);
    ok_in(&empty, &["put", "x"], b"now a store");

    // A file where the store should be.
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    fails(&file, &["ls"], 1, &[file.to_str().unwrap()]);
    let out = cli(&file)
        .args(["put", "x"])
        .write_stdin("d")
        .assert()
        .code(1)
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &[file.to_str().unwrap()]);

    // A missing input file creates no store.
    let fresh = dir.path().join("fresh");
    let out = cli(&fresh)
        .args([
            "put",
            "x",
            dir.path().join("no-such-file").to_str().unwrap(),
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &["no-such-file"]);
    assert!(!fresh.exists());
}

#[test]
fn unknown_store_schemes_are_refused_and_create_nothing() {
    let dir = TempDir::new().unwrap();
    for spec in ["s3://bucket", "sqlite:///x.db", "fiel:x"] {
        for (args, stdin) in [(&["put", "x"][..], "data"), (&["ls"][..], "")] {
            let out = bare()
                .current_dir(dir.path())
                .arg("--store")
                .arg(spec)
                .args(args)
                .write_stdin(stdin)
                .assert()
                .code(1)
                .stdout("")
                .get_output()
                .clone();
            one_line_mentioning(
                &out.stderr,
                &[
                    spec,
                    "unknown store scheme",
                    "file:, mem:, postgres:, postgresql:",
                    "./NAME",
                ],
            );
        }
        // Neither in `sync` nor as a mount's SOURCE.
        let good = dir.path().join("good");
        let out = bare()
            .current_dir(dir.path())
            .args(["sync", spec])
            .arg(&good)
            .assert()
            .code(1)
            .get_output()
            .clone();
        one_line_mentioning(&out.stderr, &[spec, "unknown store scheme"]);
        // And the mount, which opens its SOURCE only once the mount point and
        // /dev/fuse pass.
        let mp = dir.path().join("mp");
        fs::create_dir_all(&mp).unwrap();
        if fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .is_ok()
        {
            let out = bare()
                .current_dir(dir.path())
                .args(["mount", spec])
                .arg(&mp)
                .arg("-f")
                .timeout(Duration::from_secs(60))
                .assert()
                .code(1)
                .get_output()
                .clone();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("unknown store scheme"), "{err}");
        }
    }
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "good" && n != "mp")
        .collect();
    assert!(left.is_empty(), "created {left:?}");
}

#[test]
fn file_scheme_names_a_directory_even_with_a_colon() {
    let dir = TempDir::new().unwrap();
    let run = |spec: &str, args: &[&str], stdin: &str| {
        bare()
            .current_dir(dir.path())
            .arg("--store")
            .arg(spec)
            .args(args)
            .write_stdin(stdin.to_string())
            .assert()
            .success()
            .get_output()
            .clone()
    };
    let out = run("file:a:b", &["put", "x"], "through file:");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "anchorfs: created a new store at a:b\n"
    );
    assert!(is_store(&dir.path().join("a:b")));
    // The same store, named as a path.
    let out = run("./a:b", &["get", "x"], "");
    assert_eq!(out.stdout, b"through file:");
    assert!(out.stderr.is_empty());
    let abs = dir.path().join("a:b");
    let out = run(&format!("file:{}", abs.display()), &["get", "x"], "");
    assert_eq!(out.stdout, b"through file:");
    // `sync` takes one store named two ways for one store.
    let out = bare()
        .current_dir(dir.path())
        .args(["sync", "file:a:b", "./a:b"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    one_line_mentioning(&out.stderr, &["at least two different stores"]);
}

#[test]
fn ls_and_log_json_shapes() {
    let (_d, store) = new_store();
    ok_in(
        &store,
        &["put", "notes", "--at", "2026-11-24T21:20:32.123456789Z"],
        b"v1",
    );
    ok_in(
        &store,
        &["put", "notes", "--at", "2026-11-25T09:00:00+01:00"],
        b"version 2",
    );
    ok_in(&store, &["put", "café/menu", "--raw"], b"soup");

    let ls = json(ok(&store, &["ls", "--json"]));
    let ls = ls.as_array().expect("ls --json is an array");
    assert_eq!(
        ls.len(),
        2,
        "the reserved proto-types anchor is hidden: {ls:?}"
    );
    for e in ls {
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        let mut keys = keys.clone();
        keys.sort();
        assert_eq!(
            keys,
            [
                "escaped",
                "kind",
                "latest_at",
                "latest_ref",
                "name",
                "name_hex",
                "size",
                "versions"
            ]
        );
        assert!(is_time(&e["latest_at"]), "{e}");
        assert!(is_ref(&e["latest_ref"]), "{e}");
    }
    assert_eq!(ls[0]["name"], "café/menu");
    assert_eq!(ls[0]["name_hex"], hex::encode("café/menu"));
    assert_eq!(ls[0]["escaped"], "café%2Fmenu");
    assert_eq!(ls[0]["kind"], "raw");
    assert_eq!(ls[0]["size"], 4);
    assert_eq!(ls[0]["versions"], 1);
    assert_eq!(ls[1]["name"], "notes");
    assert_eq!(ls[1]["latest_at"], "2026-11-25T08:00:00.000000000Z");
    assert_eq!(ls[1]["size"], 9);
    assert_eq!(ls[1]["versions"], 2);
    assert_eq!(ls[1]["kind"], "split");

    let log = json(ok(&store, &["log", "notes", "--json"]));
    assert_eq!(log["name"], "notes");
    assert_eq!(log["name_hex"], hex::encode("notes"));
    assert_eq!(log["escaped"], "notes");
    let versions = log["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["at"], "2026-11-24T21:20:32.123456789Z");
    assert_eq!(versions[1]["at"], "2026-11-25T08:00:00.000000000Z");
    for v in versions {
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert!(is_ref(&v["ref"]) && is_time(&v["at"]));
    }
    assert_eq!(versions[1]["ref"], ls[1]["latest_ref"]);

    // The tables: a header, then one line per anchor or version.
    let table = text(ok(&store, &["ls"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("LATEST") && lines[0].ends_with("NAME"));
    assert!(lines[2].starts_with("2026-11-25T08:00:00.000000000Z") && lines[2].ends_with(" notes"));
    let table = text(ok(&store, &["log", "notes"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[1].starts_with("2026-11-24T21:20:32.123456789Z"));
    assert!(lines[2].ends_with(versions[1]["ref"].as_str().unwrap()));
}

#[test]
fn map_ref_none_then_the_store_s() {
    let (_d, store) = new_store();
    ok_in(&store, &["put", "x"], b"x");
    let fst = FileStore::open(&store).unwrap();
    let want = anchor::map_ref(&fst).unwrap().unwrap();
    assert_eq!(printed_ref(ok(&store, &["map-ref"])), want);
    let empty = TempDir::new().unwrap();
    fs::create_dir(empty.path().join("blobs")).unwrap();
    assert_eq!(text(ok(empty.path(), &["map-ref"])), "none\n");
}

#[test]
fn escaped_names() {
    let (_d, store) = new_store();
    // NUL and a leading dot, from a shell-safe spelling.
    ok_in(&store, &["--escaped", "put", "%2Ehid%00den"], b"hidden");
    ok_in(&store, &["put", "a/b%c"], b"slash");
    ok_in(&store, &["put", "--escaped", "%empty"], b"empty name");
    let ls = json(ok(&store, &["ls", "--json"]));
    let by_hex = |h: &str| {
        ls.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name_hex"] == h)
            .cloned()
    };
    let hidden = by_hex(&hex::encode(b".hid\0den")).expect("the NUL name");
    assert_eq!(hidden["escaped"], "%2Ehid%00den");
    assert_eq!(hidden["name"], ".hid\u{0}den");
    let slash = by_hex(&hex::encode(b"a/b%c")).unwrap();
    assert_eq!(slash["escaped"], "a%2Fb%25c");
    let empty = by_hex("").expect("the empty name");
    assert_eq!(empty["escaped"], "%empty");

    assert_eq!(ok(&store, &["get", "--escaped", "%2Ehid%00den"]), b"hidden");
    assert_eq!(ok(&store, &["get", "--escaped", "a%2Fb%25c"]), b"slash");
    assert_eq!(ok(&store, &["get", "a/b%c"]), b"slash");
    assert_eq!(ok(&store, &["get", "--escaped", "%empty"]), b"empty name");
    fails(&store, &["get", "a%2Fb%25c"], 2, &["a%2Fb%25c"]);
    assert_eq!(
        json(ok(&store, &["log", "--escaped", "%empty", "--json"]))["escaped"],
        "%empty"
    );

    // Bytes that are not UTF-8, straight from the shell: lossy `name`, exact
    // `name_hex`.
    use std::os::unix::ffi::OsStrExt;
    let odd = std::ffi::OsStr::from_bytes(b"\xffodd");
    let was_store = is_store(&store);
    cli(&store)
        .arg("put")
        .arg(odd)
        .write_stdin("odd")
        .assert()
        .success()
        .stderr(quiet_stderr(&store, was_store));
    let ls = json(ok(&store, &["ls", "--json"]));
    let e = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name_hex"] == "ff6f6464")
        .unwrap()
        .clone();
    assert_eq!(e["name"], "\u{fffd}odd");
    let got = cli(&store)
        .arg("get")
        .arg(odd)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(got, b"odd");

    // Only canonical escaped names are accepted.
    fails(&store, &["get", "--escaped", "%41"], 1, &["%41", "escaped"]);
    fails(&store, &["get", "--escaped", "a%2"], 1, &["escaped"]);

    // An over-long name: its directory form names it through its hash.
    let long = "n".repeat(300);
    ok_in(&store, &["put", &long], b"long");
    let dir = String::from_utf8(names::escape(long.as_bytes())).unwrap();
    assert!(dir.starts_with(names::LONG_PREFIX));
    assert_eq!(ok(&store, &["get", "--escaped", &dir]), b"long");
    let ls = json(ok(&store, &["ls", "--json"]));
    assert!(ls
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["escaped"] == dir.as_str()));
    let unknown = String::from_utf8(names::escape("m".repeat(300).as_bytes())).unwrap();
    fails(&store, &["get", "--escaped", &unknown], 2, &["long"]);
    fails(
        &store,
        &["put", "--escaped", &unknown, "--ref", &Ref::ZERO.to_hex()],
        2,
        &["long"],
    );
}

#[test]
fn expire_prints_what_it_drops() {
    let (_d, store) = new_store();
    for (i, at) in [
        "2020-01-01T00:00:00Z",
        "2021-01-01T00:00:00Z",
        "2022-01-01T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        ok_in(
            &store,
            &["put", "a", "--at", at],
            format!("a{i}").as_bytes(),
        );
    }
    ok_in(&store, &["put", "b", "--at", "2020-06-01T00:00:00Z"], b"b0");
    let log_before = ok(&store, &["log", "a", "--json"]);
    let map_before = ok(&store, &["map-ref"]);

    let args = ["expire", "--before", "2021-06-01T00:00:00Z", "--keep", "1"];
    let plan = text(ok(&store, &[&args[..], &["--dry-run"]].concat()));
    assert_eq!(
        ok(&store, &["map-ref"]),
        map_before,
        "a dry run writes nothing"
    );
    let lines: Vec<&str> = plan.lines().collect();
    assert_eq!(lines.len(), 2, "{plan}");
    assert!(lines[0].starts_with("2020-01-01T00:00:00.000000000Z") && lines[0].ends_with(" a"));
    assert!(lines[1].starts_with("2021-01-01T00:00:00.000000000Z") && lines[1].ends_with(" a"));

    assert_eq!(text(ok(&store, &args)), plan);
    let log = json(ok(&store, &["log", "a", "--json"]));
    assert_eq!(log["versions"].as_array().unwrap().len(), 1);
    assert_ne!(ok(&store, &["log", "a", "--json"]), log_before);
    assert_eq!(ok(&store, &["get", "b"]), b"b0", "b keeps its only version");
    assert_eq!(text(ok(&store, &args)), "", "nothing more to drop");
    // The split kind records survive, so content still reads as split.
    assert_eq!(json(ok(&store, &["ls", "--json"]))[0]["kind"], "split");

    // --keep 0, as Go allows: every entry older than the time goes, and with it
    // every anchor whose entries all do.
    ok_in(&store, &["put", "c", "--at", "2035-01-01T00:00:00Z"], b"c0");
    let dropped = text(ok(
        &store,
        &["expire", "--before", "2030-01-01T00:00:00Z", "--keep", "0"],
    ));
    assert_eq!(dropped.lines().count(), 2, "{dropped}");
    assert!(dropped.lines().any(|l| l.ends_with(" a")), "{dropped}");
    assert!(dropped.lines().any(|l| l.ends_with(" b")), "{dropped}");
    fails(&store, &["get", "a"], 2, &["a"]);
    fails(&store, &["get", "b"], 2, &["b"]);
    assert_eq!(
        ok(&store, &["get", "c", "--at", "2036-01-01T00:00:00Z"]),
        b"c0",
        "a newer entry stays"
    );
    let ls = json(ok(&store, &["ls", "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    ok(&store, &["fsck"]);
    fails(
        &store,
        &["expire", "--before", "2030-01-01T00:00:00Z", "--keep", "-1"],
        1,
        &["-1"],
    );
    fails(
        &store,
        &["expire", "--before", "soon", "--keep", "1"],
        1,
        &["soon"],
    );
}

#[test]
fn gc_keeps_what_anchors_reach_and_what_is_young() {
    let (_d, store) = new_store();
    let big = pseudo_random(600_000, 2);
    let big2 = [&big[..300_000], b"an edit", &big[300_000..]].concat();
    ok_in(
        &store,
        &["put", "doc", "--at", "2020-01-01T00:00:00Z"],
        &big,
    );
    ok_in(
        &store,
        &["put", "doc", "--at", "2021-01-01T00:00:00Z"],
        &big2,
    );
    ok_in(&store, &["put", "raw", "--raw"], b"a raw version");
    let fst = FileStore::open(&store).unwrap();

    // Another writer, mid-way: its chunks and nodes are stored, its anchor put not
    // yet made. gc with the default grace period must leave them alone.
    let pending = pseudo_random(500_000, 3);
    let root = content::store(&fst, &pending[..]).unwrap();
    let before = all_refs(&fst);
    let out = text(ok(&store, &["gc", "--grace", "1h"]));
    assert!(out.starts_with("gc: deleted 0 blobs, 0 bytes"), "{out}");
    assert_eq!(all_refs(&fst), before);
    content::put_split(&fst, b"pending", root, Timestamp::now()).unwrap();
    assert_eq!(ok(&store, &["get", "pending"]), pending);

    // Blobs nobody reaches, older than the grace period, go; a dry run only says so.
    let (orphan, _) = fst.put(b"an orphan blob").unwrap();
    let orphan_tree = content::store(&fst, &pseudo_random(200_000, 4)[..]).unwrap();
    let reached_now = all_refs(&fst);
    for r in &reached_now {
        age_blob(&fst, r, Duration::from_secs(7200));
    }
    let dry = text(ok(&store, &["gc", "--dry-run"]));
    assert!(
        dry.contains(&orphan.to_hex()) && dry.contains(&orphan_tree.to_hex()),
        "{dry}"
    );
    let summary = dry.lines().last().unwrap();
    assert!(summary.starts_with("gc: would delete "), "{summary}");
    assert_eq!(all_refs(&fst), reached_now, "a dry run deletes nothing");
    let n: usize = summary["gc: would delete ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(dry.lines().count(), n + 1);

    let out = text(ok(&store, &["gc"]));
    assert!(
        out.starts_with(&format!("gc: deleted {n} blobs, ")),
        "{out}"
    );
    assert!(!fst.contains(&orphan).unwrap());
    assert!(!fst.contains(&orphan_tree).unwrap());
    // Everything anchored is whole: every version, both kinds, the kind records.
    ok(&store, &["fsck"]);
    assert_eq!(
        ok(&store, &["get", "doc", "--at", "2020-06-01T00:00:00Z"]),
        big
    );
    assert_eq!(ok(&store, &["get", "doc"]), big2);
    assert_eq!(ok(&store, &["get", "raw"]), b"a raw version");
    assert_eq!(ok(&store, &["get", "pending"]), pending);
    let kinds: Vec<Value> = json(ok(&store, &["ls", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, ["split", "split", "raw"]);
    // Nothing is left to collect.
    assert!(text(ok(&store, &["gc", "--grace", "0s"])).starts_with("gc: deleted 0 blobs"));

    fails(&store, &["gc", "--grace", "soon"], 1, &["soon", "duration"]);
    fails(&store, &["gc", "--grace", "5"], 1, &["duration"]);
}

#[test]
fn gc_refuses_a_damaged_store() {
    let (_d, store) = new_store();
    ok_in(&store, &["put", "a"], b"something");
    let fst = FileStore::open(&store).unwrap();
    let (orphan, _) = fst.put(b"old garbage").unwrap();
    age_blob(&fst, &orphan, Duration::from_secs(7200));
    // Damage the anchor map's root node: what it reaches is no longer known.
    let map = anchor::map_ref(&fst).unwrap().unwrap();
    let path = fst.blob_path(&map);
    let mut b = fs::read(&path).unwrap();
    b[0] ^= 1;
    fs::write(&path, b).unwrap();
    let before = all_refs(&fst);
    fails(&store, &["gc"], 1, &["nothing was deleted", &map.to_hex()]);
    assert_eq!(all_refs(&fst), before);
    assert!(fst.contains(&orphan).unwrap());
}

#[test]
fn damaged_and_missing_blobs() {
    let (_d, store) = new_store();
    // Go's chunking, so that 1 MiB is several chunks.
    ok(&store, &["init", "--chunking", "go"]);
    let data = pseudo_random(1 << 20, 5);
    let root = printed_ref(ok_in(&store, &["put", "data"], &data));
    ok_in(&store, &["put", "other"], b"other content");
    let fst = FileStore::open(&store).unwrap();
    ok(&store, &["fsck"]);

    // Flip one byte of a chunk in the middle of the content.
    let reader = content::open(&fst, root, content::Kind::Split).unwrap();
    assert_eq!(reader.size(), data.len() as u64);
    let chunks: Vec<Ref> = all_refs(&fst)
        .into_iter()
        .filter(|r| fst.get(r).unwrap().len() > 2000 && *r != root)
        .collect();
    assert!(chunks.len() > 3, "the content is in several chunks");
    let victim = chunks[chunks.len() / 2];
    let path = fst.blob_path(&victim);
    let mut b = fs::read(&path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    fs::write(&path, b).unwrap();

    let out = cli(&store)
        .arg("fsck")
        .assert()
        .code(1)
        .get_output()
        .clone();
    let report = text(out.stdout);
    assert!(report.contains(&format!("damaged {victim}")), "{report}");
    assert!(report.contains("\"data\""), "names the anchor: {report}");
    one_line_mentioning(&out.stderr, &["fsck", "1 problem", store.to_str().unwrap()]);
    // get fails with status 1 and writes nothing; so does cat.
    fails(
        &store,
        &["get", "data"],
        1,
        &["\"data\"", &victim.to_hex(), "damaged"],
    );
    fails(&store, &["cat", &root.to_hex()], 1, &[&victim.to_hex()]);
    fails(&store, &["cat", &victim.to_hex()], 1, &["damaged"]);
    // Other content is unaffected.
    assert_eq!(ok(&store, &["get", "other"]), b"other content");
    assert_eq!(
        printed_ref(ok(&store, &["get", "data", "--ref-only"])),
        root
    );

    // A missing chunk: "not found" for get, listed by fsck.
    fs::remove_file(&path).unwrap();
    fails(&store, &["get", "data"], 2, &["\"data\"", &victim.to_hex()]);
    let out = cli(&store)
        .arg("fsck")
        .assert()
        .code(1)
        .get_output()
        .clone();
    assert!(text(out.stdout).contains(&format!("missing {victim}")));
}

#[test]
fn a_new_user_s_round_trip_of_100_mib() {
    let (dir, store) = new_store();
    let v1 = pseudo_random(100 << 20, 6);
    let file = dir.path().join("big.bin");
    fs::write(&file, &v1).unwrap();
    let f = file.to_str().unwrap();
    let r1 = printed_ref(ok(&store, &["put", "big", f]));
    let got = ok(&store, &["get", "big"]);
    assert!(got == v1, "get gives back what put stored");
    drop(got);

    let mut v2 = v1.clone();
    v2[50 << 20..(50 << 20) + 11].copy_from_slice(b"hello there");
    fs::write(&file, &v2).unwrap();
    let r2 = printed_ref(ok(&store, &["put", "big", f]));
    assert_ne!(r1, r2);

    let log = json(ok(&store, &["log", "big", "--json"]));
    let versions = log["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["ref"], r1.to_hex().as_str());
    let first = versions[0]["at"].as_str().unwrap();
    assert!(
        ok(&store, &["get", "big", "--at", first]) == v1,
        "the first version"
    );
    assert!(ok(&store, &["get", "big"]) == v2, "the second version");
    let table = text(ok(&store, &["log", "big"]));
    assert_eq!(table.lines().count(), 3);
    let ls = json(ok(&store, &["ls", "--json"]));
    assert_eq!(ls[0]["size"], 100u64 << 20);
    assert_eq!(ls[0]["versions"], 2);
    // The edit stored only a little: the two versions share nearly every chunk.
    let used: u64 = all_refs(&FileStore::open(&store).unwrap())
        .iter()
        .map(|r| {
            fs::metadata(FileStore::open(&store).unwrap().blob_path(r))
                .unwrap()
                .len()
        })
        .sum();
    assert!(used < (100 << 20) + (4 << 20), "{used} bytes stored");
    ok(&store, &["fsck"]);
}

#[test]
fn sync_two_stores_each_with_what_the_other_lacks() {
    let dir = TempDir::new().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    ok_in(&a, &["put", "only-a"], &pseudo_random(200_000, 7));
    ok_in(
        &a,
        &["put", "shared", "--at", "2020-01-01T00:00:00Z"],
        b"shared, from a",
    );
    ok_in(&a, &["put", "raw-a", "--raw"], b"raw in a");
    ok_in(&b, &["put", "only-b"], &pseudo_random(150_000, 8));
    ok_in(
        &b,
        &["put", "shared", "--at", "2021-01-01T00:00:00Z"],
        b"shared, from b",
    );
    let (loose, _) = FileStore::open(&b)
        .unwrap()
        .put(b"a loose blob in b")
        .unwrap();

    let out = text(ok(&a, &["sync", b.to_str().unwrap()]));
    let refs: Vec<&str> = out.lines().skip(1).map(|l| &l[..64]).collect();
    assert_eq!(refs.len(), 2, "{out}");
    assert_eq!(refs[0], refs[1], "{out}");
    let map_a = ok(&a, &["map-ref"]);
    assert_eq!(map_a, ok(&b, &["map-ref"]));
    assert_eq!(text(map_a.clone()).trim(), refs[0]);
    ok(&a, &["fsck"]);
    ok(&b, &["fsck"]);
    assert_eq!(ok(&a, &["ls", "--json"]), ok(&b, &["ls", "--json"]));
    for s in [&a, &b] {
        assert_eq!(ok(s, &["get", "only-a"]), pseudo_random(200_000, 7));
        assert_eq!(ok(s, &["get", "only-b"]), pseudo_random(150_000, 8));
        assert_eq!(ok(s, &["get", "raw-a"]), b"raw in a");
        assert_eq!(ok(s, &["get", "shared"]), b"shared, from b");
        assert_eq!(
            ok(s, &["get", "shared", "--at", "2020-06-01T00:00:00Z"]),
            b"shared, from a"
        );
        assert_eq!(
            json(ok(s, &["log", "shared", "--json"]))["versions"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    let fa = FileStore::open(&a).unwrap();
    let fb = FileStore::open(&b).unwrap();
    assert!(fa.contains(&loose).unwrap());
    assert_eq!(all_refs(&fa), all_refs(&fb), "every store holds every blob");

    // Again, naming the stores the other way round: nothing to do.
    let again = text(ok(&b, &["sync", a.to_str().unwrap()]));
    assert!(again.starts_with("sync: copied 0 blobs"), "{again}");
    assert_eq!(ok(&a, &["map-ref"]), map_a);
    assert_eq!(ok(&b, &["map-ref"]), map_a);

    // A new store as a target is created and filled; one store alone is refused.
    let c = dir.path().join("c");
    cli(&a)
        .args(["sync", c.to_str().unwrap()])
        .assert()
        .success()
        .stderr(format!(
            "anchorfs: created a new store at {}\n",
            c.display()
        ));
    assert_eq!(ok(&c, &["map-ref"]), map_a);
    ok(&c, &["fsck"]);
    fails(&a, &["sync", a.to_str().unwrap()], 1, &["two"]);
}

/// A back-dated put just before a version with the same ref keeps Go's rule (that
/// version now starts at the earlier time) and says so on stderr.
#[test]
fn a_back_dated_put_that_moves_a_version_says_so() {
    let (_d, store) = new_store();
    let june = printed_ref(ok_in(
        &store,
        &["put", "n", "--at", "2026-06-02T00:00:00Z"],
        b"june",
    ));
    let out = cli(&store)
        .args([
            "put",
            "n",
            "--ref",
            &june.to_hex(),
            "--at",
            "2026-06-01T00:00:00Z",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let said = one_line_mentioning(&out.stderr, &["2026-06-02T00:00:00", "2026-06-01T00:00:00"]);
    assert!(said.contains("now starts"), "{said}");
    let h = anchor::history(&FileStore::open(&store).unwrap(), b"n").unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].at, Timestamp::parse("2026-06-01T00:00:00Z").unwrap());
    // A back-dated put that moves nothing says nothing.
    ok_in(
        &store,
        &["put", "n", "--at", "2026-05-01T00:00:00Z"],
        b"may",
    );
}

/// The chunk lengths of the split tree `root` in a file store, in stream order.
fn chunk_lengths(s: &FileStore, root: &Ref) -> Vec<usize> {
    use prost::Message;
    let node = anchorfs::proto::split::Node::decode(&s.get(root).unwrap()[..]).unwrap();
    let mut out = Vec::new();
    for c in &node.nodes {
        out.extend(chunk_lengths(s, &Ref::from_slice(&c.r#ref).unwrap()));
    }
    for c in &node.leaves {
        out.push(s.blob_len(&Ref::from_slice(&c.r#ref).unwrap()).unwrap() as usize);
    }
    out
}

/// The store's recorded settings, as the library reads them.
fn recorded(store: &Path) -> Option<anchorfs::store::StoreSettings> {
    FileStore::open(store).unwrap().recorded_settings().unwrap()
}

#[test]
fn init_records_the_chunking_asked_for() {
    use anchorfs::store::{Chunking, StoreSettings};
    let dir = TempDir::new().unwrap();
    let cases: [(&[&str], Chunking, &str); 6] = [
        (
            &[],
            Chunking::NEW_STORE,
            "256 KiB average (bits 18, minimum 64 KiB, fan-out 8)",
        ),
        (
            &["--chunking", "default"],
            Chunking::NEW_STORE,
            "256 KiB average",
        ),
        (
            &["--chunking", "go"],
            Chunking::GO,
            "64 KiB average (bits 16, minimum 1 KiB, fan-out 8)",
        ),
        (
            &["--chunk-size", "64KiB"],
            Chunking::for_bits(16),
            "64 KiB average (bits 16, minimum 16 KiB",
        ),
        (
            &["--chunk-size", "1M"],
            Chunking::for_bits(20),
            "1 MiB average (bits 20, minimum 256 KiB",
        ),
        (
            &["--chunk-size", "4194304"],
            Chunking::for_bits(22),
            "4 MiB average (bits 22, minimum 1 MiB",
        ),
    ];
    for (i, (opts, want, says)) in cases.into_iter().enumerate() {
        let store = dir.path().join(format!("s{i}"));
        let out = text(ok(&store, &[&["init"][..], opts].concat()));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.starts_with("chunks: "), "{out}");
        assert!(out.contains(says), "{opts:?}: {out}");
        assert_eq!(
            recorded(&store),
            Some(StoreSettings { chunking: want }),
            "{opts:?}"
        );
        // A second init refuses, whatever it asks for, and changes nothing.
        for again in [&["init"][..], &["init", "--chunking", "go"]] {
            fails(&store, again, 1, &["already a store"]);
        }
        assert_eq!(recorded(&store), Some(StoreSettings { chunking: want }));
        ok(&store, &["fsck"]);
        assert_eq!(text(ok(&store, &["map-ref"])), "none\n");
    }
    // A store without a record (as Go makes one) is there too, and keeps none.
    let go = dir.path().join("go");
    FileStore::create(&go).unwrap();
    fails(&go, &["init"], 1, &["already a store"]);
    assert_eq!(recorded(&go), None);
    // A directory that holds something else is not made a store.
    let other = dir.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), b"mine").unwrap();
    fails(&other, &["init"], 1, &["not an anchorfs store"]);
    assert!(!other.join("blobs").exists());
}

#[test]
fn init_refuses_sizes_it_cannot_take_and_creates_nothing() {
    let dir = TempDir::new().unwrap();
    let store = dir.path().join("s");
    for (opts, mentions) in [
        (&["--chunk-size", "3000"][..], &["3000", "power of two"][..]),
        (&["--chunk-size", "8MiB"], &["8388608", "4 MiB"]),
        (&["--chunk-size", "2KiB"], &["2048", "4 KiB"]),
        (&["--chunk-size", "1KB"], &["ambiguous"]),
        (&["--chunk-size", "1.5M"], &["1.5M"]),
        (&["--chunk-size", "lots"], &["lots"]),
        (
            &["--chunk-size", "1MiB", "--chunking", "go"],
            &["--chunking"],
        ),
        (&["--chunking", "big"], &["big"]),
    ] {
        fails(&store, &[&["init"][..], opts].concat(), 1, mentions);
        assert!(!store.exists(), "{opts:?} created {}", store.display());
    }
    let out = bare().arg("init").assert().code(1).get_output().clone();
    one_line_mentioning(&out.stderr, &["--store", "ANCHORFS_STORE"]);
}

#[test]
fn put_cuts_content_as_the_store_records() {
    use anchorfs::split::Splitter;
    use anchorfs::store::Chunking;
    let dir = TempDir::new().unwrap();
    let data = pseudo_random(6 << 20, 8);
    let file = dir.path().join("big.bin");
    fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();
    let splitter = |c: Chunking| -> Vec<usize> {
        Splitter::chunks(&c.into(), &data)
            .unwrap()
            .iter()
            .map(|&(l, _)| l as usize)
            .collect()
    };

    // A store put creates gets the new default: about 256 KiB chunks.
    let fresh = dir.path().join("fresh");
    let r = printed_ref(ok(&fresh, &["put", "big", f]));
    let chunks = chunk_lengths(&FileStore::open(&fresh).unwrap(), &r);
    assert_eq!(chunks, splitter(Chunking::NEW_STORE));
    assert!(
        chunks[..chunks.len() - 1].iter().all(|&l| l >= 64 << 10),
        "{chunks:?}"
    );
    assert!((6..=48).contains(&chunks.len()), "{chunks:?}");
    assert!(ok(&fresh, &["get", "big"]) == data);

    // One initialised with 64KiB chunks.
    let small = dir.path().join("small");
    ok(&small, &["init", "--chunk-size", "64KiB"]);
    let r = printed_ref(ok(&small, &["put", "big", f]));
    let chunks = chunk_lengths(&FileStore::open(&small).unwrap(), &r);
    assert_eq!(chunks, splitter(Chunking::for_bits(16)));
    assert!(chunks.len() > 40, "{}", chunks.len());
    assert!(ok(&small, &["get", "big"]) == data);

    // A store without a record (Go's, or an older one) keeps Go's chunking, and
    // so does one initialised with --chunking go: the same tree, blob for blob.
    let go = dir.path().join("go");
    FileStore::create(&go).unwrap();
    let r_go = printed_ref(ok(&go, &["put", "big", f]));
    assert_eq!(
        recorded(&go),
        None,
        "put records nothing in a store that was there"
    );
    assert_eq!(
        chunk_lengths(&FileStore::open(&go).unwrap(), &r_go),
        splitter(Chunking::GO)
    );
    let explicit = dir.path().join("explicit");
    ok(&explicit, &["init", "--chunking", "go"]);
    assert_eq!(printed_ref(ok(&explicit, &["put", "big", f])), r_go);

    // A small file is one chunk in a new store.
    let little = pseudo_random(200 << 10, 9);
    let r = printed_ref(ok_in(&fresh, &["put", "little"], &little));
    assert_eq!(
        chunk_lengths(&FileStore::open(&fresh).unwrap(), &r),
        vec![little.len()]
    );
}

#[test]
fn sync_into_a_new_store_copies_blobs_as_they_are_and_records_the_default() {
    use anchorfs::store::StoreSettings;
    let dir = TempDir::new().unwrap();
    let src = dir.path().join("src");
    ok(&src, &["init", "--chunk-size", "64KiB"]);
    let data = pseudo_random(3 << 20, 10);
    let r = printed_ref(ok_in(&src, &["put", "big"], &data));
    let dst = dir.path().join("dst");
    let out = cli(&src)
        .arg("sync")
        .arg(&dst)
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("anchorfs: created a new store at {}\n", dst.display())
    );
    assert_eq!(recorded(&dst), Some(StoreSettings::NEW_STORE));
    // The tree came over verbatim: the same root, the same 64 KiB-style chunks.
    assert_eq!(printed_ref(ok(&dst, &["get", "big", "--ref-only"])), r);
    assert_eq!(
        chunk_lengths(&FileStore::open(&dst).unwrap(), &r),
        chunk_lengths(&FileStore::open(&src).unwrap(), &r)
    );
    // What is written there afterwards is cut as the destination records.
    let r2 = printed_ref(ok_in(&dst, &["put", "big2"], &data));
    assert_ne!(r2, r);
    let go_cut = chunk_lengths(&FileStore::open(&src).unwrap(), &r).len();
    let new_cut = chunk_lengths(&FileStore::open(&dst).unwrap(), &r2).len();
    assert!(
        new_cut * 2 < go_cut,
        "{new_cut} chunks against Go's {go_cut}"
    );
}
