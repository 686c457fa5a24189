//! Staging and commit under a model checker: the crate's own filesystem core, built
//! with the feature `model-check` so that the locks of staging (the table of staged
//! files, the names, each file's lock and commit gate), of the handle table and of
//! the group commit are `shuttle`'s (see src/fs/sync.rs), runs writers, second
//! openers, readers, closers, fsyncs, creators and committers of another anchor at
//! once, over thousands of interleavings the checker picks (random and PCT
//! schedules), on a memory store.
//!
//! What must hold in every interleaving:
//! - a close or fsync that returns success has made durable a version holding the
//!   bytes its handle wrote before it; no state of a file is committed twice; the
//!   newest version is the file's last content; a file whose commit failed, or
//!   that another file displaced, never becomes a version when closed;
//! - a second open of a file being written finds it by its name and reads the bytes
//!   written before; a lookup of a name that never went away finds a file;
//! - when every handle is closed, each staged file left is found by its name,
//!   committed and closed (none leaked, none dropped early), and reads back as its
//!   newest version;
//! - nobody waits for ever (the checker fails a run in which every thread is
//!   blocked).
//!
//! The other locks of the core (the namespace's, the process lookup's, the
//! store's) stay `parking_lot`'s: each is held for a step the checker cannot split,
//! which is sound as long as no scheduled lock is taken while one of them is held.
//! A listing does that (it asks staging under the namespace's `inodes`), so the
//! scenarios here list no directory.
//!
//! Built with the feature `planted-bug-staging`, staging has a known bug (a new
//! file's name is published before the file is in the table of staged files, so a
//! lookup in between finds a name without its file), and this test then asserts
//! that the checker finds it: `.ci/run` runs it both ways. Without the feature
//! `model-check` this file is empty.

#![cfg(feature = "model-check")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anchorfs::anchor;
use anchorfs::content;
use anchorfs::fs::inode::ROOT_INO;
use anchorfs::fs::{AnchorFs, Fh, FsError, FsOptions, Ino, ThreadIsProcess};
use anchorfs::store::faulty::FaultyStore;
use anchorfs::store::mem::MemStore;
use shuttle::scheduler::{PctScheduler, RandomScheduler, Scheduler};
use shuttle::{Config, Runner};

#[path = "common/checker.rs"]
mod checker;
use checker::{count_run, fail, require};

type Store = Arc<FaultyStore<MemStore>>;

/// The value of `r`, or a failed run saying what `what` met.
fn ok<T>(r: Result<T, FsError>, what: &str) -> T {
    r.unwrap_or_else(|e| fail(format!("{what} failed: {e}")))
}

/// A fresh core over a memory store, with anchor directories `a`, `b` and `c`;
/// every thread is a process of its own.
struct World {
    store: Store,
    fs: Arc<AnchorFs>,
    a: Ino,
    b: Ino,
    c: Ino,
}

/// A fresh [`World`].
fn world() -> World {
    let store = Arc::new(FaultyStore::new(MemStore::new()));
    let fs = ok(
        AnchorFs::with_processes(
            store.clone(),
            FsOptions::default(),
            Arc::new(ThreadIsProcess),
        ),
        "starting the core",
    );
    let a = ok(fs.mkdir(ROOT_INO, b"a"), "mkdir a").attr.ino;
    let b = ok(fs.mkdir(ROOT_INO, b"b"), "mkdir b").attr.ino;
    let c = ok(fs.mkdir(ROOT_INO, b"c"), "mkdir c").attr.ino;
    World {
        store,
        fs: Arc::new(fs),
        a,
        b,
        c,
    }
}

/// The contents of `anchor`'s versions in the store, oldest first.
fn contents(store: &Store, anchor: &[u8]) -> Vec<Vec<u8>> {
    let history = anchor::history(&**store, anchor)
        .unwrap_or_else(|e| fail(format!("reading the history of {anchor:?}: {e}")));
    history
        .iter()
        .map(|a| {
            content::read_all(&**store, &a.r)
                .unwrap_or_else(|e| fail(format!("reading version {}: {e}", a.r)))
        })
        .collect()
}

/// Whether some version of `anchor` holds `bytes` at `offset`.
fn durable(store: &Store, anchor: &[u8], offset: usize, bytes: &[u8]) -> bool {
    contents(store, anchor)
        .iter()
        .any(|c| c.get(offset..offset + bytes.len()) == Some(bytes))
}

/// Reads up to `len` bytes of open file `fh` from its start.
fn read_all(fs: &AnchorFs, fh: Fh, len: usize, what: &str) -> Vec<u8> {
    ok(fs.read(fh, 0, len), what)
}

/// After every handle is closed: each staged file left is named, committed and
/// closed, and there is one per name in `names`.
fn check_staged_left(fs: &AnchorFs, names: &[&[u8]]) {
    let left = fs.staged_files();
    for f in &left {
        require(f.open == 0 && f.named && f.settled && !f.unlinked, || {
            format!("a staged file was leaked: {f:?} (all: {left:?})")
        });
    }
    let mut got: Vec<&[u8]> = left.iter().map(|f| &f.name[..]).collect();
    got.sort_unstable();
    let mut want = names.to_vec();
    want.sort_unstable();
    require(got == want, || {
        format!("staged files left {left:?}, not one for each of {names:?}: one lost its name")
    });
}

/// Two writers of one file (the creator, and a second open of it by name: writes
/// at either end, a close and an fsync, a read back of its own and the other's
/// bytes) and a committer of another anchor, whose commits the group commit may
/// batch with theirs.
fn two_writers_and_a_committer() {
    count_run();
    let w = world();
    let (entry, fh1) = ok(w.fs.create(w.a, b"f"), "create f");
    let f_ino = entry.attr.ino;
    let first_written = Arc::new(AtomicBool::new(false));

    let first = {
        let (fs, store, written) = (w.fs.clone(), w.store.clone(), first_written.clone());
        shuttle::thread::spawn(move || {
            ok(fs.write(fh1, 0, b"AAAA", None), "the first write");
            written.store(true, Ordering::SeqCst);
            ok(fs.flush(fh1, Some(1)), "the first writer's close");
            require(durable(&store, b"a", 0, b"AAAA"), || {
                format!(
                    "a close returned before its bytes were a version: {:?}",
                    contents(&store, b"a")
                )
            });
            ok(fs.release(fh1), "the first writer's release");
        })
    };
    let second = {
        let (fs, store, a, written) = (w.fs.clone(), w.store.clone(), w.a, first_written.clone());
        shuttle::thread::spawn(move || {
            let found = ok(fs.lookup(a, b"f"), "a second lookup of f");
            require(found.attr.ino == f_ino, || {
                format!(
                    "f found as inode {}, not the file being written",
                    found.attr.ino
                )
            });
            let fh2 = ok(fs.open(f_ino, true, false), "a second open of f").fh;
            ok(fs.write(fh2, 4, b"BBBB", None), "the second write");
            let before = written.load(Ordering::SeqCst);
            let seen = read_all(&fs, fh2, 8, "reading back");
            require(seen.get(4..8) == Some(&b"BBBB"[..]), || {
                format!("a reader of its own write saw {seen:?}")
            });
            if before {
                require(seen.get(0..4) == Some(&b"AAAA"[..]), || {
                    format!("a second open did not see the bytes written before: {seen:?}")
                });
            }
            ok(fs.flush(fh2, None), "the second writer's fsync");
            require(durable(&store, b"a", 4, b"BBBB"), || {
                format!(
                    "an fsync returned before its bytes were a version: {:?}",
                    contents(&store, b"a")
                )
            });
            ok(fs.release(fh2), "the second writer's release");
        })
    };
    let other = {
        let (fs, store, b) = (w.fs.clone(), w.store.clone(), w.b);
        shuttle::thread::spawn(move || {
            let (_, fh) = ok(fs.create(b, b"g"), "create g");
            ok(fs.write(fh, 0, b"GGGG", None), "writing g");
            ok(fs.flush(fh, Some(3)), "closing g");
            require(durable(&store, b"b", 0, b"GGGG"), || {
                "a close of another anchor returned before its version".into()
            });
            ok(fs.release(fh), "releasing g");
        })
    };
    for t in [first, second, other] {
        t.join().expect("a thread of the run failed");
    }

    let a = contents(&w.store, b"a");
    let states: [&[u8]; 3] = [b"AAAA", b"\0\0\0\0BBBB", b"AAAABBBB"];
    require(a.iter().all(|c| states.contains(&&c[..])), || {
        format!("a version of f is no state the file was in: {a:?}")
    });
    let mut distinct = a.clone();
    distinct.sort();
    distinct.dedup();
    require(distinct.len() == a.len(), || {
        format!("a state of f was committed twice: {a:?}")
    });
    require(a.last().map(|c| &c[..]) == Some(&b"AAAABBBB"[..]), || {
        format!("the newest version of f is not its last content: {a:?}")
    });
    let b = contents(&w.store, b"b");
    require(b == [b"GGGG".to_vec()], || format!("versions of g: {b:?}"));
    check_staged_left(&w.fs, &[b"f", b"g"]);
    let found = ok(w.fs.lookup(w.a, b"f"), "looking f up at the end");
    let fh = ok(
        w.fs.open(found.attr.ino, false, false),
        "opening f at the end",
    )
    .fh;
    let seen = read_all(&w.fs, fh, 16, "reading f at the end");
    require(seen == b"AAAABBBB", || format!("f reads back as {seen:?}"));
    ok(w.fs.release(fh), "releasing the reader");
}

/// A file whose commit failed is closed (and so dropped) while another is created
/// under its name, written and closed: the new file keeps the name while open, the
/// failed one never becomes a version, and nothing is left but the new one.
fn close_after_a_failed_commit_and_create_again() {
    count_run();
    let w = world();
    let (_, fh0) = ok(w.fs.create(w.a, b"f"), "create f");
    ok(w.fs.write(fh0, 0, b"OLD!", None), "writing the old f");
    w.store.fail_puts(true);
    let failed = w.fs.flush(fh0, Some(1));
    w.store.heal();
    require(failed.is_err(), || {
        "a commit into a store that fails every put succeeded".into()
    });

    let closer = {
        let fs = w.fs.clone();
        shuttle::thread::spawn(move || ok(fs.release(fh0), "releasing the old f"))
    };
    let creator = {
        let (fs, store, a) = (w.fs.clone(), w.store.clone(), w.a);
        shuttle::thread::spawn(move || {
            let (entry, fh1) = ok(fs.create(a, b"f"), "creating f again");
            let found = fs.lookup(a, b"f");
            require(
                matches!(&found, Ok(e) if e.attr.ino == entry.attr.ino),
                || {
                    format!(
                        "a file created under a name lost its name while open: lookup gave {:?}",
                        found.as_ref().map(|e| e.attr.ino)
                    )
                },
            );
            ok(fs.write(fh1, 0, b"NEW!", None), "writing the new f");
            let found = fs.lookup(a, b"f");
            require(
                matches!(&found, Ok(e) if e.attr.ino == entry.attr.ino),
                || {
                    format!(
                        "a file being written lost its name: lookup gave {:?}",
                        found.as_ref().map(|e| e.attr.ino)
                    )
                },
            );
            ok(fs.flush(fh1, Some(2)), "closing the new f");
            require(durable(&store, b"a", 0, b"NEW!"), || {
                "a close returned before its bytes were a version".into()
            });
            ok(fs.release(fh1), "releasing the new f");
        })
    };
    for t in [closer, creator] {
        t.join().expect("a thread of the run failed");
    }

    let a = contents(&w.store, b"a");
    require(a == [b"NEW!".to_vec()], || {
        format!("versions of f, which should be the new one alone: {a:?}")
    });
    check_staged_left(&w.fs, &[b"f"]);
    let found = ok(w.fs.lookup(w.a, b"f"), "looking f up at the end");
    let fh = ok(
        w.fs.open(found.attr.ino, false, false),
        "opening f at the end",
    )
    .fh;
    let seen = read_all(&w.fs, fh, 16, "reading f at the end");
    require(seen == b"NEW!", || format!("f reads back as {seen:?}"));
    ok(w.fs.release(fh), "releasing the reader");
}

/// A file is created under the name of one still being written (open, not yet
/// closed) while another thread looks the name up: the lookup finds one of the two
/// files, never nothing; the displaced file, closed after, never becomes a version.
fn create_over_an_open_file_while_looked_up() {
    count_run();
    let w = world();
    let (old, fh0) = ok(w.fs.create(w.a, b"f"), "create f");
    ok(w.fs.write(fh0, 0, b"OLD!", None), "writing the old f");

    let creator = {
        let (fs, store, a) = (w.fs.clone(), w.store.clone(), w.a);
        shuttle::thread::spawn(move || {
            let (entry, fh1) = ok(fs.create(a, b"f"), "creating f again");
            ok(fs.write(fh1, 0, b"NEW!", None), "writing the new f");
            ok(fs.flush(fh1, Some(2)), "closing the new f");
            require(durable(&store, b"a", 0, b"NEW!"), || {
                "a close returned before its bytes were a version".into()
            });
            ok(fs.release(fh1), "releasing the new f");
            entry.attr.ino
        })
    };
    let looker = {
        let (fs, a) = (w.fs.clone(), w.a);
        shuttle::thread::spawn(move || {
            let found = fs.lookup(a, b"f");
            require(found.is_ok(), || {
                format!(
                    "a lookup of a name that was never gone found nothing (a name without \
                     its file): {:?}",
                    found.as_ref().err()
                )
            });
        })
    };
    let new_ino = creator.join().expect("a thread of the run failed");
    looker.join().expect("a thread of the run failed");
    ok(w.fs.release(fh0), "releasing the old f");

    let a = contents(&w.store, b"a");
    require(a == [b"NEW!".to_vec()], || {
        format!("versions of f, which should be the new one alone: {a:?}")
    });
    check_staged_left(&w.fs, &[b"f"]);
    let found = ok(w.fs.lookup(w.a, b"f"), "looking f up at the end");
    require(
        found.attr.ino == new_ino && found.attr.ino != old.attr.ino,
        || "f does not name the new file at the end".into(),
    );
    let fh = ok(
        w.fs.open(found.attr.ino, false, false),
        "opening f at the end",
    )
    .fh;
    let seen = read_all(&w.fs, fh, 16, "reading f at the end");
    require(seen == b"NEW!", || format!("f reads back as {seen:?}"));
    ok(w.fs.release(fh), "releasing the reader");
}

/// Two handles of one file written once: a close through one, an fsync through
/// the other and both releases race. The one state is committed exactly once, and
/// a reader opened meanwhile reads it.
fn close_fsync_and_last_close_of_one_state() {
    count_run();
    let w = world();
    let (entry, fh1) = ok(w.fs.create(w.a, b"f"), "create f");
    let f_ino = entry.attr.ino;
    let fh2 = ok(w.fs.open(f_ino, true, false), "a second open of f").fh;
    ok(w.fs.write(fh1, 0, b"DATA", None), "writing f");

    let closer = {
        let (fs, store) = (w.fs.clone(), w.store.clone());
        shuttle::thread::spawn(move || {
            ok(fs.flush(fh1, Some(1)), "closing f");
            require(durable(&store, b"a", 0, b"DATA"), || {
                "a close returned before its bytes were a version".into()
            });
            ok(fs.release(fh1), "releasing the first handle");
        })
    };
    let syncer = {
        let (fs, store) = (w.fs.clone(), w.store.clone());
        shuttle::thread::spawn(move || {
            ok(fs.flush(fh2, None), "an fsync of f");
            require(durable(&store, b"a", 0, b"DATA"), || {
                "an fsync returned before its bytes were a version".into()
            });
            ok(fs.release(fh2), "releasing the second handle");
        })
    };
    let reader = {
        let (fs, a) = (w.fs.clone(), w.a);
        shuttle::thread::spawn(move || {
            let found = ok(fs.lookup(a, b"f"), "looking f up");
            require(found.attr.ino == f_ino, || {
                format!("f found as inode {}, not the file written", found.attr.ino)
            });
            let fh = ok(fs.open(f_ino, false, false), "opening f to read").fh;
            let seen = read_all(&fs, fh, 16, "reading f");
            require(seen == b"DATA", || format!("a reader of f saw {seen:?}"));
            ok(fs.release(fh), "releasing the reader");
        })
    };
    for t in [closer, syncer, reader] {
        t.join().expect("a thread of the run failed");
    }
    let a = contents(&w.store, b"a");
    require(a == [b"DATA".to_vec()], || {
        format!("the one state of f was not committed exactly once: {a:?}")
    });
    check_staged_left(&w.fs, &[b"f"]);
}

/// Three writers of three anchors, each committing twice (an fsync, then a
/// close), so that the group commit batches their commits in every way: each
/// commit is durable when it returns, and each anchor gets its two versions.
fn three_anchors_committing_twice() {
    count_run();
    let w = world();
    let threads: Vec<_> = [(w.a, &b"a"[..]), (w.b, b"b"), (w.c, b"c")]
        .into_iter()
        .zip(1u32..)
        .map(|((dir, anchor), process)| {
            let (fs, store) = (w.fs.clone(), w.store.clone());
            shuttle::thread::spawn(move || {
                let (_, fh) = ok(fs.create(dir, b"f"), "create f");
                ok(fs.write(fh, 0, b"1", None), "the first write");
                ok(fs.flush(fh, None), "an fsync");
                require(durable(&store, anchor, 0, b"1"), || {
                    "an fsync returned before its bytes were a version".into()
                });
                ok(fs.write(fh, 1, b"2", None), "the second write");
                ok(fs.flush(fh, Some(process)), "the close");
                require(durable(&store, anchor, 0, b"12"), || {
                    "a close returned before its bytes were a version".into()
                });
                ok(fs.release(fh), "the release");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a thread of the run failed");
    }
    for anchor in [&b"a"[..], b"b", b"c"] {
        let got = contents(&w.store, anchor);
        require(got == [b"1".to_vec(), b"12".to_vec()], || {
            format!("versions of {anchor:?}: {got:?}")
        });
    }
    check_staged_left(&w.fs, &[b"f", b"f", b"f"]);
}

/// A lookup of a name while `rename` replaces the closed file it named: the name
/// exists throughout, so the lookup should find the old file or the new.
fn lookup_during_a_rename_over_a_closed_file() {
    count_run();
    let w = world();
    for (name, data) in [(&b"f"[..], &b"ONE"[..]), (b"g", b"TWO")] {
        let (_, fh) = ok(w.fs.create(w.a, name), "create");
        ok(w.fs.write(fh, 0, data, None), "write");
        ok(w.fs.flush(fh, Some(1)), "close");
        ok(w.fs.release(fh), "release");
    }
    let renamer = {
        let (fs, a) = (w.fs.clone(), w.a);
        shuttle::thread::spawn(move || ok(fs.rename(a, b"g", a, b"f"), "rename g f"))
    };
    let looker = {
        let (fs, a) = (w.fs.clone(), w.a);
        shuttle::thread::spawn(move || {
            let found = fs.lookup(a, b"f");
            require(found.is_ok(), || {
                format!(
                    "a lookup during a rename onto its name found nothing: {:?}",
                    found.as_ref().err()
                )
            });
        })
    };
    renamer.join().expect("a thread of the run failed");
    looker.join().expect("a thread of the run failed");
}

/// A new file closed before any write (`: > f`): the look at its anchor that
/// commits it (an empty version) races the last close, which the kernel sends after
/// close(2) returns. However they interleave, `f` keeps naming the version it
/// became, and there is exactly one.
fn last_close_during_a_look_that_commits_an_unwritten_file() {
    count_run();
    let w = world();
    let (_, fh) = ok(w.fs.create(w.a, b"f"), "create f");
    ok(w.fs.flush(fh, Some(1)), "closing f");
    let releaser = {
        let fs = w.fs.clone();
        shuttle::thread::spawn(move || ok(fs.release(fh), "releasing f"))
    };
    let looker = {
        let (fs, a) = (w.fs.clone(), w.a);
        shuttle::thread::spawn(move || {
            // A look at `latest` commits the file flushed unwritten first.
            let found = fs.lookup(a, b"latest");
            require(found.is_ok(), || {
                format!("`latest` after a close of f: {:?}", found.as_ref().err())
            });
        })
    };
    releaser.join().expect("a thread of the run failed");
    looker.join().expect("a thread of the run failed");
    let a = contents(&w.store, b"a");
    require(a == [Vec::<u8>::new()], || {
        format!("an unwritten f was not committed exactly once, empty: {a:?}")
    });
    let found = w.fs.lookup(w.a, b"f");
    require(found.is_ok(), || {
        format!("f lost its name once closed: {:?}", found.as_ref().err())
    });
    check_staged_left(&w.fs, &[b"f"]);
}

/// How many runs each scheduler makes of each scenario.
const RANDOM_RUNS: usize = 1000;
const PCT_RUNS: usize = 1000;
/// The PCT scheduler's depth: how many priority changes a run may have.
const PCT_DEPTH: usize = 3;

/// Runs `scenario` under `scheduler`. The core's calls go deeper than the
/// checker's default stack for its threads allows.
fn run(scheduler: impl Scheduler + 'static, scenario: fn()) {
    let mut config = Config::new();
    config.stack_size = 1 << 20;
    Runner::new(scheduler, config).run(scenario);
}

/// Every run: each scenario under the random and the PCT schedulers.
fn runs() {
    for scenario in [
        create_over_an_open_file_while_looked_up as fn(),
        close_after_a_failed_commit_and_create_again,
        close_fsync_and_last_close_of_one_state,
        two_writers_and_a_committer,
        three_anchors_committing_twice,
        lookup_during_a_rename_over_a_closed_file,
        last_close_during_a_look_that_commits_an_unwritten_file,
    ] {
        run(RandomScheduler::new(RANDOM_RUNS), scenario);
        run(PctScheduler::new(PCT_DEPTH, PCT_RUNS), scenario);
    }
}

#[test]
#[cfg(not(feature = "planted-bug-staging"))]
fn staging_and_commit_hold_in_every_interleaving_tried() {
    checker::expect_clean(runs);
}

#[test]
#[cfg(feature = "planted-bug-staging")]
fn the_model_checker_finds_the_planted_staging_bug() {
    checker::expect_planted(runs, "a name without its file");
}
