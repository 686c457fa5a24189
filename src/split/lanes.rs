//! A fixed set of threads for running the lanes of a parallel chunk fetch, so a
//! read does not start and end threads of its own: thread stacks are mapped and
//! unmapped under the process's memory-map lock, which every page fault of the
//! other request threads also takes. Owns no locks of its own but one slot lock per
//! lane, held only to store that lane's result.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

use parking_lot::Mutex;

/// Threads kept for lanes (a read runs its first lane itself).
const THREADS: usize = 4;

static POOL: LazyLock<Option<rayon_core::ThreadPool>> = LazyLock::new(|| {
    rayon_core::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .thread_name(|i| format!("split-fetch-{i}"))
        .build()
        .map_err(|e| log::warn!("no threads for parallel fetches: {e}"))
        .ok()
});

/// Runs `f(0)`, …, `f(n - 1)`, lane 0 on the calling thread and the others on the
/// kept threads, and returns their results in order; `None` for a lane that
/// panicked. Without the threads (they could not be started), runs every lane
/// here, one after the other.
pub(super) fn run<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<Option<T>> {
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let lane = |i: usize| catch_unwind(AssertUnwindSafe(|| f(i))).ok();
    match &*POOL {
        Some(pool) if n > 1 => pool.in_place_scope(|scope| {
            for (i, slot) in slots.iter().enumerate().skip(1) {
                let lane = &lane;
                scope.spawn(move |_| *slot.lock() = lane(i));
            }
            *slots[0].lock() = lane(0);
        }),
        _ => {
            for (i, slot) in slots.iter().enumerate() {
                *slot.lock() = lane(i);
            }
        }
    }
    slots.into_iter().map(Mutex::into_inner).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_runs_once_and_results_keep_their_order() {
        let got = run(7, |i| i * 10);
        assert_eq!(got, (0..7).map(|i| Some(i * 10)).collect::<Vec<_>>());
        assert_eq!(run(1, |i| i + 1), vec![Some(1)]);
        assert!(run(0, |i| i).is_empty());
    }

    #[test]
    fn a_lane_that_panics_gives_none_and_the_others_their_results() {
        let got = run(4, |i| {
            if i == 2 {
                panic!("lane {i} fails");
            }
            i
        });
        assert_eq!(got, vec![Some(0), Some(1), None, Some(3)]);
    }
}
