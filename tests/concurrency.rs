//! Many writers on one store — threads sharing a store value and processes each with
//! their own — and writers killed mid-put: nothing acknowledged is ever lost.
//!
//! Child processes are this test binary run again with `--ignored --exact <role>`
//! and the role's parameters in environment variables.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anchorfs::anchor;
use anchorfs::store::file::FileStore;
use anchorfs::store::{Getter, Store};
use anchorfs::{Ref, Timestamp};
use rand::Rng;

fn content(writer: &str, i: usize) -> Vec<u8> {
    format!("content of {writer} put {i}").into_bytes()
}

/// The puts one writer makes: distinct names, each anchored to a blob stored first.
fn write_puts(store: &FileStore, writer: &str, n: usize, mut acked: impl FnMut(usize)) {
    for i in 0..n {
        let (r, _) = store.put(&content(writer, i)).expect("blob put");
        let name = format!("{writer}/{i}");
        anchor::put(store, name.as_bytes(), r, Timestamp::now()).expect("anchor put");
        acked(i);
    }
}

fn child(role: &str, store: &Path, writer: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--ignored",
        "--exact",
        role,
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ANCHORFS_TEST_STORE", store)
    .env("ANCHORFS_TEST_WRITER", writer)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    c
}

/// Child role: 100 puts, printing `ack I` after each one that returned success.
#[test]
#[ignore = "run as a child process by the tests below"]
fn child_writer() {
    let store = FileStore::open(std::env::var("ANCHORFS_TEST_STORE").unwrap()).unwrap();
    let writer = std::env::var("ANCHORFS_TEST_WRITER").unwrap();
    let n: usize = std::env::var("ANCHORFS_TEST_PUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    write_puts(&store, &writer, n, |i| println!("ack {i}"));
    println!("done");
}

/// Reads a child's acknowledgements until it ends.
fn acks(out: impl std::io::Read) -> Vec<usize> {
    BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        // libtest may print its own words before the first line on the same line.
        .filter_map(|l| {
            l.rsplit_once("ack ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect()
}

fn assert_present(store: &FileStore, writer: &str, acked: &[usize]) {
    for &i in acked {
        let name = format!("{writer}/{i}");
        let r = anchor::get(store, name.as_bytes(), Timestamp::now())
            .unwrap_or_else(|e| panic!("acknowledged put {name} lost: {e}"));
        assert_eq!(
            r,
            Ref::of(&content(writer, i)),
            "{name} points at its content"
        );
    }
}

/// Every blob in the store matches its ref, and the anchor map loads.
fn assert_store_sound(store: &FileStore) {
    let mut n = 0;
    store
        .list_refs(&Ref::ZERO, &mut |r| {
            store.get(&r).unwrap_or_else(|e| panic!("blob {r}: {e}"));
            n += 1;
            Ok(true)
        })
        .unwrap();
    assert!(n > 0);
    anchor::all(store).expect("anchor map loads");
}

#[test]
fn threads_and_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::create(dir.path()).unwrap());
    let children: Vec<_> = (0..4)
        .map(|p| {
            let mut c = child("child_writer", dir.path(), &format!("proc{p}"));
            c.env("ANCHORFS_TEST_PUTS", "100").spawn().unwrap()
        })
        .collect();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || write_puts(&store, &format!("thread{t}"), 200, |_| {}))
        })
        .collect();
    for t in threads {
        t.join().expect("no thread saw an error");
    }
    for (p, mut c) in children.into_iter().enumerate() {
        let acked = acks(c.stdout.take().unwrap());
        assert!(c.wait().unwrap().success(), "child {p} saw no error");
        assert_eq!(acked.len(), 100);
        assert_present(&store, &format!("proc{p}"), &acked);
    }
    for t in 0..8 {
        assert_present(&store, &format!("thread{t}"), &(0..200).collect::<Vec<_>>());
    }
    let all = anchor::all(&*store).unwrap();
    assert_eq!(
        all.len(),
        8 * 200 + 4 * 100,
        "every one of the 2,000 entries, once"
    );
    assert!(all.iter().all(|(_, h)| h.len() == 1));
}

#[test]
fn killed_writers_lose_no_acknowledged_put() {
    let dir = tempfile::tempdir().unwrap();
    FileStore::create(dir.path()).unwrap();
    let mut rng = rand::thread_rng();
    let mut total_acked = 0;
    for round in 0..20 {
        let writer = format!("round{round}");
        let mut c = child("child_writer", dir.path(), &writer)
            .env("ANCHORFS_TEST_PUTS", "1000")
            .spawn()
            .unwrap();
        let out = c.stdout.take().unwrap();
        let reader = std::thread::spawn(move || acks(out));
        std::thread::sleep(Duration::from_millis(rng.gen_range(30..200)));
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        let acked = reader.join().unwrap();
        total_acked += acked.len();
        let store = FileStore::open(dir.path()).expect("store opens after a kill");
        assert_present(&store, &writer, &acked);
        assert_store_sound(&store);
    }
    assert!(
        total_acked > 0,
        "the writers got some puts done before being killed"
    );
}
