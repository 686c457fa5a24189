//! The mount's poller (`mount::poller::run`) over the core, without a mount: a
//! store's watch makes another handle's commit show up at once, long before the
//! poll interval; without a wake-up it waits the interval; a stop ends it promptly.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorfs::fs::inode::ROOT_INO;
use anchorfs::fs::{AnchorFs, FsOptions};
use anchorfs::mount::poller::{self, Stop};
use anchorfs::store::mem::MemStore;
use anchorfs::store::{AnchorGetter, ChangeSignal, MapWatch};
use anchorfs::{content, Timestamp};

/// A core over `store`, its poller running with `watch` and `poll`; returns the
/// core, the count of refreshes handed on, the stopper and the thread.
fn start(
    store: &Arc<MemStore>,
    watch: Option<Box<dyn MapWatch>>,
    poll: Duration,
) -> (
    Arc<AnchorFs>,
    Arc<AtomicUsize>,
    Arc<Stop>,
    std::thread::JoinHandle<()>,
) {
    let core = Arc::new(AnchorFs::new(store.clone(), FsOptions::default()).unwrap());
    let changes = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Stop::new());
    let thread = {
        let (core, changes, stop) = (core.clone(), changes.clone(), stop.clone());
        std::thread::spawn(move || {
            poller::run(&core, watch.as_deref(), poll, &stop, &mut |_| {
                changes.fetch_add(1, Ordering::SeqCst);
            })
        })
    };
    (core, changes, stop, thread)
}

/// Commits a version of `name` through a handle other than the core's.
fn commit_elsewhere(store: &MemStore, name: &[u8]) {
    let root = content::store(store, &b"from another host"[..]).unwrap();
    let at = Timestamp::parse("2026-06-01T00:00:00Z").unwrap();
    content::put_split(store, name, root, at).unwrap();
}

/// Whether the core shows `name` within `limit` (looking never refreshes it).
fn shows_within(core: &AnchorFs, name: &[u8], limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if core.lookup(ROOT_INO, name).is_ok() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops the poller and checks it ends well before its 60 s interval.
fn stop_promptly(stop: &Stop, thread: std::thread::JoinHandle<()>) {
    let start = Instant::now();
    stop.stop();
    thread.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_watch_that_fires_refreshes_long_before_the_poll_interval() {
    let store = Arc::new(MemStore::watched());
    let (core, changes, stop, thread) = start(&store, store.watch(), Duration::from_secs(60));
    commit_elsewhere(&store, b"doc");
    assert!(
        shows_within(&core, b"doc", Duration::from_secs(1)),
        "woken by the watch, the poller refreshed within 1 s"
    );
    assert!(
        changes.load(Ordering::SeqCst) >= 1,
        "its changes were handed on"
    );
    commit_elsewhere(&store, b"doc2");
    assert!(shows_within(&core, b"doc2", Duration::from_secs(1)));
    stop_promptly(&stop, thread);
}

#[test]
fn without_a_wake_up_a_change_waits_for_the_poll_interval() {
    // No watch at all, and a watch that never fires: 1 s passes with nothing seen.
    let silent = ChangeSignal::new();
    for watch in [None, Some(silent.watch())] {
        let store = Arc::new(MemStore::new());
        let (core, changes, stop, thread) = start(&store, watch, Duration::from_secs(60));
        commit_elsewhere(&store, b"doc");
        assert!(!shows_within(&core, b"doc", Duration::from_secs(1)));
        assert_eq!(changes.load(Ordering::SeqCst), 0);
        stop_promptly(&stop, thread);
    }
    // The interval still refreshes, with or without a watch.
    for watch in [None, Some(silent.watch())] {
        let store = Arc::new(MemStore::new());
        let (core, _, stop, thread) = start(&store, watch, Duration::from_millis(300));
        commit_elsewhere(&store, b"doc");
        assert!(shows_within(&core, b"doc", Duration::from_secs(10)));
        stop_promptly(&stop, thread);
    }
}
