//! What the model-checking tests share: the count of runs, the record of failed
//! checks, and the two verdicts (every interleaving tried holds; the planted bug
//! is found). Included by path by tests/model_check_*.rs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many runs (interleavings) the checker has made in this process.
pub static RUNS: AtomicUsize = AtomicUsize::new(0);

/// What the failed checks said, for the planted-bug test to tell its bug from others
/// (the checker's own panic only says which task failed).
static FAILED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Counts one run; called first in every scenario.
pub fn count_run() {
    RUNS.fetch_add(1, Ordering::SeqCst);
}

/// Fails the run, recording why.
pub fn fail(why: String) -> ! {
    FAILED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(why.clone());
    panic!("{why}");
}

/// Fails the run if `ok` is false, recording why.
pub fn require(ok: bool, why: impl FnOnce() -> String) {
    if !ok {
        fail(why());
    }
}

/// Runs `runs` (the checker's runs of every scenario); `Err` with the checker's
/// message and the failed checks' words if some interleaving failed.
pub fn check(runs: impl FnOnce()) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(runs)).map_err(|e| {
        let said = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a run failed".into());
        let why = FAILED.lock().unwrap_or_else(|e| e.into_inner()).join("; ");
        format!("{said}; {why}")
    })
}

/// Asserts that every interleaving `runs` tried held.
#[allow(dead_code)]
pub fn expect_clean(runs: impl FnOnce()) {
    if let Err(e) = check(runs) {
        panic!("the model checker found a failing interleaving: {e}");
    }
    eprintln!(
        "{} interleavings, none failing",
        RUNS.load(Ordering::SeqCst)
    );
}

/// Asserts that `runs` met a failing interleaving, and that what failed says
/// `marker` (the planted bug's own symptom, not another failure).
#[allow(dead_code)]
pub fn expect_planted(runs: impl FnOnce(), marker: &str) {
    let e = check(runs).expect_err("the checker missed the planted bug");
    eprintln!("found in interleaving {}: {e}", RUNS.load(Ordering::SeqCst));
    assert!(
        e.contains(marker),
        "failed, but not by the planted bug: {e}"
    );
}
