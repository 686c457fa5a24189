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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Scheduler-controlled stand-ins for the `parking_lot` primitives the module uses,
/// with their API: the crate's own, which it uses with the feature `model-check`.
#[path = "../src/fs/sync/checked.rs"]
#[allow(dead_code)]
mod sync;

#[path = "common/checker.rs"]
mod checker;

#[path = "../src/fs/group_commit.rs"]
#[allow(dead_code)]
mod group_commit;

use checker::{count_run, require};
use group_commit::GroupCommit;

/// How many committers run at once, and how many commits each makes.
const COMMITTERS: usize = 3;
const COMMITS_EACH: usize = 2;

/// One run: committers commit numbered items; the apply step records each batch.
fn scenario() {
    count_run();
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

/// Every run: the scenario under the random and the PCT schedulers.
fn runs() {
    shuttle::check_random(scenario, 2000);
    shuttle::check_pct(scenario, 2000, 3);
}

#[test]
#[cfg(not(feature = "planted-bug"))]
fn group_commit_holds_in_every_interleaving_tried() {
    checker::expect_clean(runs);
}

#[test]
#[cfg(feature = "planted-bug")]
fn the_model_checker_finds_the_planted_bug() {
    checker::expect_planted(runs, "which does not hold it");
}
