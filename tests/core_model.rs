//! Model-based tests of the write side of the filesystem core, without a mount: the
//! generated operations of `tests/mount_model.rs` run on [`AnchorFs`] (through the
//! driver in `tests/common/core_driver.rs`, which does what the kernel does around
//! each request) and on the plain model, over the in-memory store and over the
//! fault-injecting store.
//!
//! Over the in-memory store the check is the mount test's, and stricter: every
//! step's result (errno included) is the model's, and after every step the
//! listings, `latest`, every version file, the store's history and the size of the
//! file behind every open descriptor are the model's, at once (a close's release
//! follows it here, where on a mount it lands a little later).
//!
//! Over the fault-injecting store, random steps switch a store failure on (every
//! put, the puts after the next few, every anchor map update, or every get; with
//! EIO or ENOSPC; see [`fault_kind`]) and heal it again. While a failure is on, a
//! step may fail with the injected errno or EIO where the model says it succeeds,
//! or a commit the model makes may not happen. Such a step must be explained, and explained whole, by one
//! of the few ways a store failure can act, each a rule of the model:
//! - a commit point (fsync, close's flush, close's release, a rename that commits)
//!   failed: to store the content ([`CommitFault::Store`]) or to anchor it
//!   ([`CommitFault::Anchor`]); no version appears, the file answers the errno at
//!   its commit points until it changes;
//! - a write, `pwrite` or truncate failed: the file is broken, never becomes a
//!   version, and answers the errno from then on;
//! - an open or a read failed: nothing changed.
//!
//! The model, told which, must then agree with everything the step answered and
//! left behind, exactly as without faults. (Where several ways agree, say a failed
//! commit that would have added nothing, each is followed as a model of its own
//! until the core tells them apart; at least one must agree at every step.) So: so nothing acknowledged is lost (every
//! commit that answered success is in the store's history, with its content and
//! time), and nothing half-there appears (no version the model did not commit, no
//! content other than a file's whole content, no version changed). The only thing
//! let pass beyond that: reads through the core (of `latest` and the version files)
//! that fail with the injected errno or EIO while the failure is on. At the end of
//! every case the failure is healed and a fresh core over the same store must show
//! exactly the committed history, every version readable.
//!
//! Steps that needed an explanation are counted; the fault run must see some.

#[path = "common/core_driver.rs"]
mod core_driver;
#[path = "common/core_side.rs"]
mod core_side;
#[path = "common/model.rs"]
mod model;
#[path = "common/observe.rs"]
mod observe;

use std::sync::atomic::{AtomicUsize, Ordering};

use anchorfs::Timestamp;
use core_driver::OpenHow;
use core_side::CoreSide;
use model::{CommitFault, Model, Op, Step};
use observe::{check, observe, Observe};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A store failure to switch on.
#[derive(Clone, Copy, Debug)]
enum FaultKind {
    /// Every put fails.
    Puts,
    /// Puts fail after this many more.
    PutsAfter(u64),
    /// Every anchor map update fails.
    Updates,
    /// Every get fails (reads of blobs and of the anchor map ref).
    Gets,
}

/// A generated operation of the fault run.
#[derive(Clone, Debug)]
enum FaultOp {
    Op(Op),
    /// Switches a failure on (replacing any other), failing with this errno.
    Inject(FaultKind, i32),
    /// Switches every failure off.
    Heal,
}

/// The failures the fault run switches on. Failing gets fail every anchor map
/// update too (it reads the map first); a commit that succeeds while the re-read
/// after it fails cannot come of them, and is a regression test below instead (the
/// core's view is stale until the anchors read again, which no model step can
/// tell from a lost version while they cannot).
fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        Just(FaultKind::Puts),
        (0..4u64).prop_map(FaultKind::PutsAfter),
        Just(FaultKind::Updates),
        Just(FaultKind::Gets),
    ]
}

/// A case of the fault run: the first anchor's directory made, then up to 80 random
/// ops, failures switched on and off among them.
fn fault_ops() -> impl Strategy<Value = Vec<FaultOp>> {
    let one = prop_oneof![
        14 => model::op().prop_map(FaultOp::Op),
        2 => (fault_kind(), prop_oneof![Just(libc::EIO), Just(libc::ENOSPC)])
            .prop_map(|(k, e)| FaultOp::Inject(k, e)),
        1 => Just(FaultOp::Heal),
    ];
    proptest::collection::vec(one, 1..80).prop_map(|ops| {
        let mut all = vec![FaultOp::Op(Op::Mkdir(0))];
        all.extend(ops);
        all
    })
}

/// One way a store failure can have acted on a step (see the file's doc).
#[derive(Clone, Debug)]
enum Explanation {
    /// The step's commit attempts, in order, failed so (`None`: it succeeded).
    Commits(Vec<Option<CommitFault>>),
    /// A write or truncate failed with this errno: the file is broken.
    Broke(i32),
    /// The step failed with this errno and changed nothing.
    Failed(i32),
}

impl Explanation {
    /// Applies `step` to `m` as this explanation says it went; returns its outcome.
    fn apply(&self, m: &mut Model, step: &Step) -> model::Outcome {
        match self {
            Explanation::Commits(faults) => {
                m.faults = faults.iter().copied().collect();
                let out = m.apply(step);
                m.faults.clear();
                out
            }
            Explanation::Broke(errno) => {
                m.break_file(step, *errno);
                Err(*errno)
            }
            Explanation::Failed(errno) => Err(*errno),
        }
    }
}

/// The ways a failure with one of `errnos` can have acted on `step`, which answered
/// `got`.
fn explanations(step: &Step, got: &model::Outcome, errnos: &[i32]) -> Vec<Explanation> {
    let failed_with = match got {
        Err(e) if errnos.contains(e) => Some(*e),
        _ => None,
    };
    match step {
        Step::Fsync(_) | Step::Close(_) | Step::Rename { .. } => {
            let mut one: Vec<Option<CommitFault>> = vec![None];
            for &e in errnos {
                one.push(Some(CommitFault::Store(e)));
                one.push(Some(CommitFault::Anchor(e)));
            }
            let mut out = Vec::new();
            for a in &one {
                for b in &one {
                    if a.is_some() || b.is_some() {
                        out.push(Explanation::Commits(vec![*a, *b]));
                    }
                }
            }
            out
        }
        Step::Write { .. } | Step::WriteAt { .. } | Step::SetLen { .. } => {
            failed_with.map(Explanation::Broke).into_iter().collect()
        }
        Step::Open { .. } | Step::ReadBack(_) | Step::ReadFile { .. } => {
            failed_with.map(Explanation::Failed).into_iter().collect()
        }
        Step::Mkdir(_) | Step::Rmdir(_) | Step::Unlink { .. } => Vec::new(),
    }
}

/// Steps of the fault run that a store failure explained, over all cases.
static EXPLAINED: AtomicUsize = AtomicUsize::new(0);

/// At most this many models are kept, each one way the store failures so far can
/// have gone.
const HYPOTHESES: usize = 64;

/// One case on the core.
struct CoreCase {
    /// Every way the store failures so far can have acted that agrees with all the
    /// core has answered and shown: a failed commit that would have added nothing
    /// shows only later (say, in what a name opens), so each is followed until the
    /// core tells them apart. Without failures, exactly one.
    models: Vec<Model>,
    side: CoreSide,
    /// When the case started: every commit-time version is later.
    start: Timestamp,
    /// The errno of the failure switched on now, if any.
    fault: Option<i32>,
}

impl CoreCase {
    fn new(side: CoreSide) -> CoreCase {
        CoreCase {
            models: vec![Model::default()],
            start: Timestamp::now(),
            side,
            fault: None,
        }
    }

    /// The errnos a failure switched on now may answer: its own, and EIO.
    fn tolerated(&self) -> Vec<i32> {
        self.fault.map(|e| vec![e, libc::EIO]).unwrap_or_default()
    }

    fn inject(&mut self, kind: FaultKind, errno: i32) {
        let f = self.side.faulty.as_ref().expect("a fault-injecting store");
        f.heal();
        f.set_errno(errno);
        match kind {
            FaultKind::Puts => f.fail_puts(true),
            FaultKind::PutsAfter(n) => f.fail_puts_after(n),
            FaultKind::Updates => f.fail_updates(true),
            FaultKind::Gets => f.fail_gets(true),
        }
        self.fault = Some(errno);
    }

    fn heal(&mut self) {
        if let Some(f) = &self.side.faulty {
            f.heal();
        }
        self.fault = None;
    }

    fn run(&mut self, ops: &[FaultOp]) -> Result<(), TestCaseError> {
        for (i, op) in ops.iter().enumerate() {
            match op {
                FaultOp::Inject(kind, errno) => self.inject(*kind, *errno),
                FaultOp::Heal => self.heal(),
                FaultOp::Op(op) => {
                    // Every model agrees on what the names and descriptors are: the
                    // descriptors opened and the versions' times are all seen.
                    let Some(step) = self.models[0].resolve(op) else {
                        continue;
                    };
                    self.step(&step).map_err(|e| {
                        TestCaseError::fail(format!(
                            "op {i}: {step:?} (store failure on: {:?}): {e}",
                            self.fault
                        ))
                    })?;
                }
            }
        }
        // Healed, a fresh core over the same store shows what was committed.
        self.heal();
        let fresh = observe(&self.side.remount());
        let mut last = None;
        for m in &self.models {
            match check(&mut m.remounted(), &fresh, self.start, &[]) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(TestCaseError::fail(format!(
            "a fresh core over the store: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Runs a step on the core, and on every model as each way it can have gone
    /// (see the file's doc); keeps the models that agree with the core.
    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let got = self.side.apply(step);
        let obs = observe(&self.side);
        let tolerated = self.tolerated();
        let mut next: Vec<Model> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut first_err = None;
        for before in &self.models {
            let mut m = before.clone();
            let want = m.apply(step);
            let res = if got == want || !before.read_back_known(step) {
                check(&mut m, &obs, self.start, &tolerated)
            } else {
                Err(TestCaseError::fail(format!(
                    "answered {got:?}, the model says {want:?}"
                )))
            };
            let mut keep = |m: Model| {
                if next.len() < HYPOTHESES && seen.insert(format!("{m:?}")) {
                    next.push(m);
                }
            };
            match res {
                Ok(()) => keep(m),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            if self.fault.is_none() {
                continue;
            }
            for why in explanations(step, &got, &tolerated) {
                let mut m = before.clone();
                let w = why.apply(&mut m, step);
                if w == got && check(&mut m, &obs, self.start, &tolerated).is_ok() {
                    EXPLAINED.fetch_add(1, Ordering::Relaxed);
                    keep(m);
                }
            }
        }
        if next.is_empty() {
            let e = first_err.map(|e| e.to_string()).unwrap_or_default();
            return Err(TestCaseError::fail(if self.fault.is_some() {
                format!("{e}; and no way a store failure acts explains it")
            } else {
                e
            }));
        }
        self.models = next;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        // Shrunk failures become named tests below, not a seed file.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    })]

    #[test]
    fn core_writes_match_the_model(ops in model::ops()) {
        let ops: Vec<FaultOp> = ops.into_iter().map(FaultOp::Op).collect();
        CoreCase::new(CoreSide::plain()).run(&ops)?;
    }

    #[test]
    fn core_writes_match_the_model_when_the_store_fails(ops in fault_ops()) {
        CoreCase::new(CoreSide::faulty()).run(&ops)?;
    }
}

/// The fault run's cases are not all vacuous: across them, store failures made
/// steps fail that the model had to be told about.
#[test]
fn store_failures_are_seen_by_the_fault_run() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let before = EXPLAINED.load(Ordering::Relaxed);
    runner
        .run(&fault_ops(), |ops| {
            CoreCase::new(CoreSide::faulty()).run(&ops)
        })
        .expect("the fault run passes");
    assert!(
        EXPLAINED.load(Ordering::Relaxed) > before,
        "no step of 64 cases failed for a store failure"
    );
}

// ---------------------------------------------------------------------------------
// Regressions: bugs the core runs found, each as a minimal test.

fn creating() -> OpenHow {
    OpenHow {
        write: true,
        create: true,
        ..OpenHow::default()
    }
}

/// A commit whose content cannot be stored (a put fails: disk full, I/O error)
/// keeps the bytes of the file being written: it reads them back, and once the
/// store works again the next commit stores them all with what was written since.
/// (It used to empty the file without breaking it, so bytes written after it
/// committed with zeros where the lost ones were, a content nobody wrote.)
#[test]
fn a_commit_that_cannot_store_the_content_loses_nothing_written() {
    let mut side = CoreSide::faulty();
    let faulty = side.faulty.clone().expect("a fault-injecting store");
    let d = &mut side.driver;
    d.mkdir("notes").expect("mkdir");
    let h = d.open("notes/notes.txt", creating()).expect("create");
    d.write(h, b"abc").expect("write");
    faulty.fail_puts(true);
    assert_eq!(d.fsync(h), Err(libc::EIO), "fsync while puts fail");
    faulty.heal();
    assert_eq!(
        d.read_back(h),
        Ok(b"abc".to_vec()),
        "after the failed fsync the file reads back its bytes"
    );
    assert_eq!(d.write(h, b"de"), Ok(()), "write after the failed fsync");
    assert_eq!(d.close(h), Ok(()), "close commits");
    let history: Vec<Vec<u8>> = side.history(b"notes").into_iter().map(|(_, c)| c).collect();
    assert_eq!(history, [b"abcde".to_vec()], "the whole content");
}

/// A commit that succeeds while the core's re-read of the anchors after it fails
/// (the store's reads fail from the moment the update is done) is shown once the
/// anchors read again: the next look at them re-reads them. An anchor directory made
/// by `mkdir` whose first version that was stays meanwhile. (It used to be
/// forgotten on the commit's success, before its version was seen, so it vanished,
/// and the version stayed unlisted until something else re-read the anchors.)
#[test]
fn a_directory_stays_when_the_reread_after_its_first_commit_fails() {
    let mut side = CoreSide::faulty();
    let faulty = side.faulty.clone().expect("a fault-injecting store");
    let d = &mut side.driver;
    d.mkdir("notes").expect("mkdir");
    let h = d.open("notes/notes.txt", creating()).expect("create");
    d.write(h, b"abc").expect("write");
    faulty.fail_gets_after_update();
    assert_eq!(d.close(h), Ok(()), "close commits");
    assert_eq!(
        side.history(b"notes").len(),
        1,
        "the version is in the store"
    );
    assert_eq!(
        side.driver.lstat("notes"),
        Ok(()),
        "the directory is still there while the anchors cannot be read"
    );
    faulty.heal();
    let listed = side.driver.list("notes").expect("list the directory");
    assert!(
        listed.iter().any(|n| n == "latest") && listed.len() == 2,
        "the version and latest are listed: {listed:?}"
    );
    assert_eq!(
        side.driver.read_file("notes/latest"),
        Ok(b"abc".to_vec()),
        "latest reads the version"
    );
}

/// Bytes past [`anchorfs::fs::SMALL_MAX`], `n` of them, in a pattern.
fn large(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A large file written out of order (its bytes in a spool file) whose store fails
/// at a commit keeps them all: the next commit stores the whole content.
#[test]
fn a_spooled_file_whose_store_fails_keeps_its_bytes() {
    let mut side = CoreSide::faulty();
    let faulty = side.faulty.clone().expect("a fault-injecting store");
    let d = &mut side.driver;
    d.mkdir("notes").expect("mkdir");
    let h = d.open("notes/big.bin", creating()).expect("create");
    let mut want = large(3 * anchorfs::fs::SMALL_MAX);
    d.write(h, &want).expect("write");
    d.write_at(h, 1, b"xy").expect("write at 1");
    want[1..3].copy_from_slice(b"xy");
    faulty.fail_puts(true);
    assert!(d.fsync(h).is_err(), "fsync while puts fail");
    faulty.heal();
    assert_eq!(d.read_back(h).as_deref(), Ok(&want[..]), "reads back");
    d.write_at(h, 0, b"z").expect("write at 0");
    want[0] = b'z';
    assert_eq!(d.close(h), Ok(()), "close commits");
    let history: Vec<Vec<u8>> = side.history(b"notes").into_iter().map(|(_, c)| c).collect();
    assert_eq!(history, [want], "the whole content");
}

/// A large file written in order streams into a split writer, which has taken the
/// bytes when its store fails at a commit: they cannot be kept, so the file is
/// broken (every later write and commit fails) and never becomes a version with
/// part of them.
#[test]
fn a_streamed_file_whose_store_fails_is_broken() {
    let mut side = CoreSide::faulty();
    let faulty = side.faulty.clone().expect("a fault-injecting store");
    let d = &mut side.driver;
    d.mkdir("notes").expect("mkdir");
    let h = d.open("notes/big.bin", creating()).expect("create");
    d.write(h, &large(3 * anchorfs::fs::SMALL_MAX))
        .expect("write");
    faulty.fail_puts(true);
    assert!(d.fsync(h).is_err(), "fsync while puts fail");
    faulty.heal();
    assert!(d.write(h, b"more").is_err(), "a write to the broken file");
    assert!(d.fsync(h).is_err(), "an fsync of the broken file");
    assert!(d.close(h).is_err(), "the close of the broken file");
    assert!(side.history(b"notes").is_empty(), "no version");
}
