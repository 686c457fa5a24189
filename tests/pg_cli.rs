//! The command line on a PostgreSQL store: put, ls, log, get, fsck and gc by URL,
//! and sync from a file store into the database and back.

#[path = "common/pg.rs"]
mod pg_common;

use std::path::Path;

use assert_cmd::Command;
use pg_common::TestDb;

fn anchorfs(store: &str) -> Command {
    let mut c = Command::cargo_bin("anchorfs").unwrap();
    c.env_remove("ANCHORFS_STORE").arg("--store").arg(store);
    c
}

/// Runs `args` on `store` with `stdin`, expecting success; returns stdout.
fn ok(store: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = anchorfs(store)
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "anchorfs {args:?} on {store}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn put_ls_log_get_fsck_by_url() {
    let Some(db) = TestDb::new() else { return };
    let url = db.url.as_str();
    let big = data(300_000);
    let out = anchorfs(url)
        .args(["put", "notes"])
        .write_stdin(big.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("created a new store at postgres://"),
        "the first put says it made the store"
    );
    ok(url, &["put", "notes"], b"second version");
    ok(url, &["put", "raw", "--raw"], b"a raw blob");
    let ls = text(ok(url, &["ls"], b""));
    assert!(ls.contains("notes") && ls.contains("raw"), "{ls}");
    let log = text(ok(url, &["log", "notes"], b""));
    assert_eq!(log.lines().count(), 3, "a heading and two versions: {log}");
    assert_eq!(ok(url, &["get", "notes"], b""), b"second version");
    assert_eq!(ok(url, &["get", "raw"], b""), b"a raw blob");
    let first = log
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(ok(url, &["get", "notes", "--at", &first], b""), big);
    ok(url, &["fsck"], b"");
    // Nothing is unreachable and young: gc deletes nothing.
    let gc = text(ok(url, &["gc"], b""));
    assert!(gc.contains("deleted 0"), "{gc}");
    // A password in the URL never shows in what the program prints.
    let secret = url.replacen("postgres@", "postgres:hunter2@", 1);
    let out = anchorfs(&secret).args(["ls"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = anchorfs(&secret)
        .args(["get", "nothing-here"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn sync_a_file_store_into_postgres_and_back() {
    let Some(db) = TestDb::new() else { return };
    let url = db.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store");
    let file = file.to_str().unwrap();
    ok(file, &["put", "from-file"], &data(200_000));
    ok(url, &["put", "from-pg"], b"made in the database");
    let out = text(ok(file, &["sync", url], b""));
    assert!(out.starts_with("sync: copied"), "{out}");
    let map = ok(file, &["map-ref"], b"");
    assert_eq!(ok(url, &["map-ref"], b""), map);
    for s in [file, url] {
        assert_eq!(ok(s, &["get", "from-file"], b""), data(200_000));
        assert_eq!(ok(s, &["get", "from-pg"], b""), b"made in the database");
        ok(s, &["fsck"], b"");
    }
    assert_eq!(
        ok(file, &["ls", "--json"], b""),
        ok(url, &["ls", "--json"], b"")
    );
    // And back into a new file store.
    let back = dir.path().join("back");
    let back = back.to_str().unwrap();
    ok(url, &["sync", back], b"");
    assert_eq!(ok(back, &["map-ref"], b""), map);
    assert!(Path::new(back).join("anchormapref").exists());
    // The same database by another URL is one store, not two.
    let other = url.replacen("postgres://", "postgresql://", 1);
    let out = anchorfs(url).args(["sync", &other]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("two different stores"));
}
