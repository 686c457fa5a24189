//! The group commit (src/fs/group_commit.rs) under a model checker: `shuttle` runs
//! the very source of the crate's module, with its locks replaced by ones whose every
//! acquisition and wake-up the checker's scheduler decides, over thousands of
//! interleavings of a few committers.
//!
//! What must hold in every interleaving: each commit is applied exactly once; no two
//! batches are applied at the same time; every committer returns the result of the
//! batch that held its commit; and nobody waits for ever (the checker fails a run in
//! which every thread is blocked).
//!
//! Built with the feature `planted-bug`, the module has a known bug (a leader that
//! replaces the table of published results instead of adding to it, so a committer of
//! the batch before, woken but not yet run, loses its result), and this test then
//! asserts that the checker finds it: `.ci/run` runs it both ways.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Scheduler-controlled stand-ins for the `parking_lot` primitives the module uses,
/// with their API (a lock that cannot be poisoned, a wait on a borrowed guard).
mod sync {
    use std::ops::{Deref, DerefMut};

    /// A mutex whose acquisitions the checker schedules.
    pub struct Mutex<T>(shuttle::sync::Mutex<T>);

    /// The guard of [`Mutex`]; empty only for the instant a wait holds the lock.
    pub struct MutexGuard<'a, T>(Option<shuttle::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(shuttle::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
            MutexGuard(Some(g))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_deref().expect("guard held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_deref_mut().expect("guard held")
        }
    }

    /// A condition variable whose wake-ups the checker schedules.
    pub struct Condvar(shuttle::sync::Condvar);

    impl Condvar {
        pub fn new() -> Self {
            Condvar(shuttle::sync::Condvar::new())
        }

        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let g = guard.0.take().expect("guard held");
            guard.0 = Some(self.0.wait(g).unwrap_or_else(|e| e.into_inner()));
        }

        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[path = "../src/fs/group_commit.rs"]
#[allow(dead_code)]
mod group_commit;

use group_commit::GroupCommit;

/// How many committers run at once, and how many commits each makes.
const COMMITTERS: usize = 3;
const COMMITS_EACH: usize = 2;

/// How many runs (interleavings) the checker has made in this process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// What the failed checks said, for the planted-bug test to tell its bug from others
/// (the checker's own panic only says which task failed).
static FAILED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Fails the run if `ok` is false, recording why.
fn require(ok: bool, why: impl FnOnce() -> String) {
    if !ok {
        let why = why();
        FAILED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(why.clone());
        panic!("{why}");
    }
}

/// One run: committers commit numbered items; the apply step records each batch.
fn scenario() {
    RUNS.fetch_add(1, Ordering::SeqCst);
    let group: Arc<GroupCommit<usize, usize>> = Arc::new(GroupCommit::default());
    // Every batch applied, in order; a batch's number is its index here.
    let batches = Arc::new(shuttle::sync::Mutex::new(Vec::<Vec<usize>>::new()));
    let applying = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..COMMITTERS)
        .map(|c| {
            let (group, batches, applying) = (group.clone(), batches.clone(), applying.clone());
            shuttle::thread::spawn(move || {
                for k in 0..COMMITS_EACH {
                    let item = c * COMMITS_EACH + k;
                    let batch_no = group.commit(item, |batch| {
                        require(!applying.swap(true, Ordering::SeqCst), || {
                            "two batches applied at once".into()
                        });
                        // A point where the checker may switch to another committer
                        // while this batch is being applied.
                        shuttle::thread::yield_now();
                        let mut all = batches.lock().unwrap_or_else(|e| e.into_inner());
                        all.push(batch);
                        applying.store(false, Ordering::SeqCst);
                        all.len() - 1
                    });
                    let all = batches.lock().unwrap_or_else(|e| e.into_inner());
                    require(all.get(batch_no).is_some_and(|b| b.contains(&item)), || {
                        format!("commit {item} got the result of batch {batch_no}, which does not hold it: {all:?}")
                    });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a committer failed");
    }
    let all = batches.lock().unwrap_or_else(|e| e.into_inner());
    let mut applied: Vec<usize> = all.iter().flatten().copied().collect();
    applied.sort_unstable();
    let want: Vec<usize> = (0..COMMITTERS * COMMITS_EACH).collect();
    require(applied == want, || {
        format!("not each commit applied exactly once: {all:?}")
    });
}

/// Runs the scenario under the random and the PCT schedulers; `Err` with the
/// checker's message if some interleaving failed.
fn check() -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        shuttle::check_random(scenario, 2000);
        shuttle::check_pct(scenario, 2000, 3);
    }))
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a run failed".into())
    })
}

#[test]
#[cfg(not(feature = "planted-bug"))]
fn group_commit_holds_in_every_interleaving_tried() {
    if let Err(e) = check() {
        panic!("the model checker found a failing interleaving: {e}");
    }
    eprintln!(
        "{} interleavings, none failing",
        RUNS.load(Ordering::SeqCst)
    );
}

#[test]
#[cfg(feature = "planted-bug")]
fn the_model_checker_finds_the_planted_bug() {
    let e = check().expect_err("the checker missed the planted bug");
    let why = FAILED.lock().unwrap_or_else(|e| e.into_inner()).join("; ");
    eprintln!(
        "found in interleaving {}: {why}",
        RUNS.load(Ordering::SeqCst)
    );
    assert!(
        why.contains("which does not hold it"),
        "failed, but not by the planted bug: {e}; {why}"
    );
}
