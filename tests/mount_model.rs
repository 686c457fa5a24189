//! Model-based test of the write side of a real mount (docs/SEMANTICS.md, "Writing").
//!
//! Random sequences of operations run against a real mount and against a plain model:
//! `mkdir` and `rmdir` of anchor directories; opens that create, truncate, append to
//! or edit files (normal, scratch and time-named files, `latest`, versions by either
//! spelling), through descriptors kept open across steps; writes, `pwrite`s,
//! `ftruncate`s and read-backs through them; `fsync`; `close`; `rename` (onto normal
//! and scratch names, `latest` and version names); `unlink`; reads of versions by
//! their compact name. The model holds each anchor's committed history (ordered by
//! time, back-dated versions in their place, under the store's put rule) and the
//! files being written, with the commit rules of the semantics page.
//!
//! Each operation's result must match the model's, errno included. After every step,
//! for every anchor: the root and anchor directory listings, what `latest` links to
//! and reads, what every version file reads, and the store's history read through the
//! library (its length, times and content).
//!
//! The model commits by the store's put rule (`anchor::apply_put`, Go's rule): a
//! version equal to the one before it adds nothing, and a back-dated one goes in its
//! place. A close's release, which the kernel sends after close(2) returns, commits
//! an untouched new file; the check after such a close waits for it.
//!
//! The model, the operations and what is looked at after each step live in
//! `tests/common/model.rs` and `tests/common/observe.rs`, shared with
//! `tests/core_model.rs`, which runs the same operations on the filesystem core
//! without a mount. `mount_and_core_answer_alike` runs them here on a mount and on
//! the core side by side: every answer, and everything seen after every step, must
//! be the same on both (see [`answers_agree`] for what legitimately differs).
//!
//! The bugs this test found are pinned by the regression tests at the end.

mod common;
#[path = "common/core_driver.rs"]
mod core_driver;
#[path = "common/core_side.rs"]
mod core_side;
#[path = "common/model.rs"]
mod model;
#[path = "common/observe.rs"]
mod observe;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anchorfs::store::file::FileStore;
use anchorfs::Timestamp;
use anchorfs::{anchor, content};
use common::{fuse_skipped, Mounted};
use core_side::CoreSide;
use model::{Model, NameRef, Op, OpenMode, Outcome, Release, Step, ANCHORS, LATEST};
use observe::{check, observe, Normal, Observation, Observe};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------
// The real mount

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn outcome(r: io::Result<()>) -> Outcome {
    r.map(|()| None).map_err(|e| errno_of(&e))
}

/// Closes `f` and reports what close(2) returned (dropping a `File` ignores it).
fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken out of a `File`, so it is open and owned here.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Everything `f` reads from offset 0.
fn read_all_at(f: &File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read_at(&mut buf, out.len() as u64)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// How long a step may take before the mount counts as hung.
const HANG_LIMIT: Duration = Duration::from_secs(10);

/// A fresh store, mounted, and the thread that runs the steps on it.
struct Real {
    /// Declared first: its files are closed before the mount goes away.
    worker: Worker,
    mount: Mounted,
    _store_dir: tempfile::TempDir,
}

impl Real {
    fn new() -> Real {
        let store_dir = tempfile::tempdir().expect("temp dir");
        let store = store_dir.path().join("store");
        FileStore::create(&store).expect("a new store");
        // A short poll interval: the daemon notices the unmount at once.
        let mount = Mounted::new(&store, "poll=50ms");
        Real {
            worker: Worker::new(mount.mnt.clone()),
            mount,
            _store_dir: store_dir,
        }
    }

    fn dir(&self, anchor: usize) -> PathBuf {
        self.mount.path(ANCHORS[anchor].1)
    }

    /// Runs a step; `Err` if the mount does not answer it in time (the daemon is
    /// then killed, so that the blocked call returns and the case can end).
    fn apply(&mut self, step: &Step) -> Result<Outcome, String> {
        self.worker.apply(step).ok_or_else(|| {
            // SAFETY: signalling our own child, the mount daemon.
            unsafe { libc::kill(self.mount.pid() as i32, libc::SIGKILL) };
            format!("the mount did not answer in {HANG_LIMIT:?}")
        })
    }
}

/// Runs the steps on a thread of its own, so that a mount that hangs fails the case
/// instead of the whole test. One thread for every step: the mount tells the writer
/// of a file by its thread (a close from another one is not a commit point).
struct Worker {
    steps: Option<mpsc::Sender<Step>>,
    outcomes: mpsc::Receiver<Outcome>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn new(mnt: PathBuf) -> Worker {
        let (steps, step_rx) = mpsc::channel::<Step>();
        let (outcome_tx, outcomes) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut stepper = Stepper {
                mnt,
                files: Vec::new(),
            };
            for step in step_rx {
                if outcome_tx.send(stepper.apply(&step)).is_err() {
                    break;
                }
            }
        });
        Worker {
            steps: Some(steps),
            outcomes,
            thread: Some(thread),
        }
    }

    /// The step's outcome, or `None` if it takes longer than [`HANG_LIMIT`].
    fn apply(&self, step: &Step) -> Option<Outcome> {
        self.steps.as_ref()?.send(step.clone()).ok()?;
        self.outcomes.recv_timeout(HANG_LIMIT).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Ends the thread's loop; it closes the files it holds.
        self.steps.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Applies steps to the mount with std::fs, holding the files they open.
struct Stepper {
    mnt: PathBuf,
    files: Vec<File>,
}

impl Stepper {
    fn dir(&self, anchor: usize) -> PathBuf {
        self.mnt.join(ANCHORS[anchor].1)
    }

    fn file(&self, anchor: usize, name: &str) -> PathBuf {
        self.dir(anchor).join(name)
    }

    fn apply(&mut self, step: &Step) -> Outcome {
        match step {
            Step::Mkdir(a) => outcome(fs::create_dir(self.dir(*a))),
            Step::Rmdir(a) => outcome(fs::remove_dir(self.dir(*a))),
            Step::Open { anchor, name, mode } => {
                let mut o = OpenOptions::new();
                o.read(true);
                match mode {
                    OpenMode::Create => o.write(true).create(true),
                    OpenMode::CreateTrunc => o.write(true).create(true).truncate(true),
                    OpenMode::Append => o.append(true).create(true),
                    OpenMode::Edit => o.write(true),
                };
                let f = o.open(self.file(*anchor, name)).map_err(|e| errno_of(&e))?;
                self.files.push(f);
                Ok(None)
            }
            Step::Write { handle, data } => outcome(self.files[*handle].write_all(data)),
            Step::WriteAt {
                handle,
                offset,
                data,
            } => outcome(self.files[*handle].write_all_at(data, *offset)),
            Step::SetLen { handle, len } => outcome(self.files[*handle].set_len(*len)),
            Step::ReadBack(handle) => read_all_at(&self.files[*handle])
                .map(Some)
                .map_err(|e| errno_of(&e)),
            Step::Fsync(handle) => outcome(self.files[*handle].sync_all()),
            Step::Close(handle) => outcome(close(self.files.remove(*handle))),
            Step::Rename { anchor, from, to } => {
                outcome(fs::rename(self.file(*anchor, from), self.file(*anchor, to)))
            }
            Step::Unlink { anchor, name } => outcome(fs::remove_file(self.file(*anchor, name))),
            Step::ReadFile { anchor, name } => fs::read(self.file(*anchor, name))
                .map(Some)
                .map_err(|e| errno_of(&e)),
        }
    }
}

/// The history of `anchor` in the store at `store`, with each version's content.
fn store_history(store: &Path, anchor: &[u8]) -> Vec<(Timestamp, Vec<u8>)> {
    let store = FileStore::open(store).expect("open the store");
    anchor::history(&store, anchor)
        .expect("read a history")
        .into_iter()
        .map(|a| {
            (
                a.at,
                content::read_all(&store, &a.r).expect("read a version"),
            )
        })
        .collect()
}

fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------------
// One case

struct Case {
    model: Model,
    real: Real,
    /// When the case started: every commit-time version is later.
    start: Timestamp,
}

impl Case {
    fn new() -> Case {
        Case {
            start: Timestamp::now(),
            model: Model::default(),
            real: Real::new(),
        }
    }

    fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for (i, op) in ops.iter().enumerate() {
            self.step(i, op)?;
        }
        Ok(())
    }

    /// Runs op `i` on the mount and the model and compares: the step it resolved to,
    /// what it answered and what was seen after it (`None`: nothing to act on).
    fn step(
        &mut self,
        i: usize,
        op: &Op,
    ) -> Result<Option<(Step, Outcome, Observation)>, TestCaseError> {
        {
            let Some(step) = self.model.resolve(op) else {
                return Ok(None);
            };
            self.model.release = Release::None;
            let want = self.model.apply(&step);
            let got = self
                .real
                .apply(&step)
                .map_err(|why| TestCaseError::fail(format!("op {i}: {step:?}: {why}")))?;
            prop_assert_eq!(&got, &want, "op {}: {:?}", i, step);
            // Every check may wait for releases still on their way: the kernel sends
            // a release after close(2) returns, and under load one from an earlier
            // step may land after this one (it forgets a closed file, or keeps its
            // name for the version it became). What a step's own release commits
            // shows within the same wait.
            if self.model.release == Release::Unseen {
                // Nothing shows when it lands: give it a moment before the next
                // step, which may depend on it (a rename of a closed scratch file
                // commits it at once).
                std::thread::sleep(Duration::from_millis(20));
            }
            let seen = self.check_soon(i, &step)?;
            Ok(Some((step, got, seen)))
        }
    }

    /// [`Case::check`], given a few seconds to come true.
    fn check_soon(&mut self, i: usize, step: &Step) -> Result<Observation, TestCaseError> {
        let start = Instant::now();
        loop {
            match self.check(i, step) {
                Err(_) if start.elapsed() < Duration::from_secs(3) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                res => return res,
            }
        }
    }

    /// Compares the mount and the store with the model; returns what was seen.
    fn check(&mut self, i: usize, step: &Step) -> Result<Observation, TestCaseError> {
        let obs = observe(&self.real);
        check(&mut self.model, &obs, self.start, &[])
            .map_err(|e| TestCaseError::fail(format!("after op {i}: {step:?}: {e}")))?;
        Ok(obs)
    }
}

impl Observe for Real {
    fn root_names(&self) -> Result<Vec<String>, i32> {
        sorted_names(&self.mount.mnt).map_err(|e| errno_of(&e))
    }

    fn lstat(&self, rel: &str) -> Result<(), i32> {
        fs::symlink_metadata(self.mount.path(rel))
            .map(|_| ())
            .map_err(|e| errno_of(&e))
    }

    fn names(&self, rel: &str) -> Result<Vec<String>, i32> {
        sorted_names(&self.mount.path(rel)).map_err(|e| errno_of(&e))
    }

    fn read_link(&self, rel: &str) -> Result<String, i32> {
        fs::read_link(self.mount.path(rel))
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| errno_of(&e))
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, i32> {
        fs::read(self.mount.path(rel)).map_err(|e| errno_of(&e))
    }

    fn history(&self, anchor: &[u8]) -> Vec<(Timestamp, Vec<u8>)> {
        store_history(&self.mount.store, anchor)
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        // Shrunk failures become named tests below, not a seed file.
        failure_persistence: None,
        max_shrink_iters: 1024,
        max_shrink_time: 90_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mount_writes_match_the_model(ops in model::ops()) {
        if fuse_skipped() {
            return Ok(());
        }
        Case::new().run(&ops)?;
    }
}

// ---------------------------------------------------------------------------------
// The mount and the core, side by side

/// Whether the mount's and the core's answers to a step agree. They must be equal,
/// errno included: what the kernel does by itself before or instead of a request
/// (ENAMETOOLONG for a long name, EISDIR for a directory opened for writing, the
/// walk of a path and of `latest`, the retry of an open that answers ESTALE, a
/// rename onto the same inode) the driver does too (`tests/common/core_driver.rs`),
/// so it shows on both sides alike. What legitimately differs is not an answer:
/// the kernel sends a close's release after close(2) has returned, so on the mount
/// it lands a little later (the mount case waits for it before looking, see
/// [`Case::step`]), where the driver releases at once; and the kernel caches names
/// and attributes, so some of the mount's lookups never reach it. Both show only
/// in when things are seen, which the mount case allows for, not in what.
fn answers_agree(mount: &Outcome, core: &Outcome) -> bool {
    mount == core
}

/// Runs `ops` on a real mount and on the core over an in-memory store, each against
/// its own model (the same rules; each learns its own side's commit times), and
/// holds every step's answer and everything seen after it on one side against the
/// other, commit times named by the model's count of them.
fn mount_and_core_agree(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut mount = Case::new();
    let start = mount.start;
    let mut core = CoreSide::plain();
    let mut core_model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        let core_step = core_model.resolve(op);
        let Some((step, got, seen)) = mount.step(i, op)? else {
            prop_assert!(
                core_step.is_none(),
                "op {}: only the core has something to act on",
                i
            );
            continue;
        };
        let core_step = core_step
            .ok_or_else(|| TestCaseError::fail(format!("op {i}: only the mount acts on it")))?;
        let want = core_model.apply(&core_step);
        let core_got = core.apply(&core_step);
        prop_assert_eq!(&core_got, &want, "op {}: {:?} on the core", i, core_step);
        let core_seen = observe(&core);
        check(&mut core_model, &core_seen, start, &[]).map_err(|e| {
            TestCaseError::fail(format!("after op {i}: {core_step:?} on the core: {e}"))
        })?;
        prop_assert!(
            answers_agree(&got, &core_got),
            "op {}: {:?}: the mount answered {:?}, the core {:?}",
            i,
            step,
            got,
            core_got
        );
        prop_assert_eq!(
            Normal::new(&seen, &mount.model, start),
            Normal::new(&core_seen, &core_model, start),
            "after op {}: {:?}: what the mount shows (left) and the core (right)",
            i,
            step
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 1024,
        max_shrink_time: 90_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mount_and_core_answer_alike(ops in model::ops()) {
        if fuse_skipped() {
            return Ok(());
        }
        mount_and_core_agree(&ops)?;
    }
}

// ---------------------------------------------------------------------------------
// Regressions: bugs the model found, each as a minimal test; each failed until the
// write side was fixed after the model found it.

/// A fresh store, mounted, with one anchor directory made: (mount, the directory).
fn mounted_with_dir() -> (Real, PathBuf) {
    let real = Real::new();
    let dir = real.dir(0);
    fs::create_dir(&dir).expect("mkdir");
    (real, dir)
}

/// The contents of `anchor`'s versions in the store, oldest first, as text.
fn stored(real: &Real, anchor: usize) -> Vec<String> {
    store_history(&real.mount.store, ANCHORS[anchor].0)
        .into_iter()
        .map(|(_, c)| String::from_utf8_lossy(&c).into_owned())
        .collect()
}

/// Was a bug: an anchor directory with no versions, removed while a file unlinked
/// in it was still open, then made again, refused new files (ENOENT). The new
/// directory got the removed one's inode number, and the kernel, which still held
/// the removed directory's inode for the open file and had marked it dead, gave it
/// that inode (the model's shrunk case).
#[test]
fn a_directory_made_again_after_rmdir_with_a_file_open_in_it_takes_files() {
    if fuse_skipped() {
        return;
    }
    let ops = [
        Op::Mkdir(0),
        Op::Open {
            anchor: 0,
            name: NameRef::Pool(3),
            mode: OpenMode::Create,
        },
        Op::Mkdir(0),
        Op::Unlink {
            anchor: 0,
            name: NameRef::Pool(3),
        },
        Op::Rmdir(0),
        Op::Mkdir(0),
        Op::Open {
            anchor: 0,
            name: NameRef::Pool(0),
            mode: OpenMode::Create,
        },
    ];
    if let Err(e) = Case::new().run(&ops) {
        panic!("the mount and the model differ: {e}");
    }
}

/// `rm` (or `mv`) of `latest` or of a version's name, while a file being written has
/// that name (created as `latest` and fsynced, or renamed onto `latest`), removed (or
/// moved) that file and succeeded, although lookups and listings show history under
/// that name: removing or renaming history is `EPERM`.
#[test]
fn removing_a_version_name_is_refused_while_a_file_of_that_name_is_open() {
    if fuse_skipped() {
        return;
    }
    let (real, dir) = mounted_with_dir();
    let mut f = File::create(dir.join(LATEST)).expect("create latest");
    f.write_all(b"one").expect("write");
    f.sync_all().expect("fsync commits the first version");
    let rm = fs::remove_file(dir.join(LATEST)).map_err(|e| errno_of(&e));
    assert_eq!(rm, Err(libc::EPERM), "rm latest");
    f.write_all(b" two").expect("write");
    close(f).expect("close");
    assert_eq!(
        stored(&real, 0),
        ["one", "one two"],
        "the file still commits"
    );
}

/// Renaming a scratch file onto another that is closed (both being written, like an
/// editor's swap file moved over an older one) never answered: the mount's rename
/// held its table of names while it dropped the displaced file, which took that
/// table again (`Writes::displace` → `Writes::remove`).
#[test]
fn renaming_onto_a_closed_scratch_file_answers() {
    if fuse_skipped() {
        return;
    }
    let (mut real, dir) = mounted_with_dir();
    fs::write(dir.join(".a.tmp"), b"a").expect("scratch file");
    fs::write(dir.join(".b.tmp"), b"b").expect("scratch file");
    let rename = Step::Rename {
        anchor: 0,
        from: ".a.tmp".into(),
        to: ".b.tmp".into(),
    };
    assert_eq!(real.apply(&rename), Ok(Ok(None)), "the rename answers");
    assert_eq!(fs::read(dir.join(".b.tmp")).expect("read"), b"a");
}

/// Was a bug: a file created as `latest` in a new anchor directory, fsynced and
/// written on, hid the `latest` link until it was closed (`readlink` answered EINVAL
/// and `latest` read the bytes written since, which are no version).
#[test]
fn latest_stays_a_link_while_the_file_written_as_latest_is_open() {
    if fuse_skipped() {
        return;
    }
    let (real, dir) = mounted_with_dir();
    let mut f = File::create(dir.join(LATEST)).expect("create latest");
    f.write_all(b"one").expect("write");
    f.sync_all().expect("fsync commits the first version");
    assert_eq!(stored(&real, 0), ["one"]);
    f.write_all(b" and more").expect("write");
    let version = store_history(&real.mount.store, ANCHORS[0].0)[0]
        .0
        .to_rfc3339();
    let link = fs::read_link(dir.join(LATEST)).map_err(|e| errno_of(&e));
    assert_eq!(
        link,
        Ok(PathBuf::from(version)),
        "latest links to the version"
    );
    assert_eq!(
        fs::read(dir.join(LATEST)).expect("read latest"),
        b"one",
        "latest reads the committed version"
    );
}

/// Was a bug: a descriptor opened with `O_APPEND` on `latest` wrote where the kernel
/// last heard the version ends; after an `fstat` (or a `stat` or `ls -l` of the
/// version, a lookup of it, an `ftruncate`, or a write through another descriptor
/// over the same version) the next append landed at the old end and overwrote.
#[test]
fn appends_over_latest_land_at_the_end_after_a_stat() {
    if fuse_skipped() {
        return;
    }
    let (real, dir) = mounted_with_dir();
    fs::write(dir.join("base"), b"base").expect("first version");
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join(LATEST))
        .expect("open latest for appending");
    f.write_all(b"+1").expect("append");
    let _ = f.metadata().expect("fstat");
    f.write_all(b"+2").expect("append");
    close(f).expect("close");
    assert_eq!(
        stored(&real, 0),
        ["base", "base+1+2"],
        "both appends, in order"
    );
}

/// Was a bug: a back-dated file committed twice (fsync, more writes, close) added a
/// second history entry at the same time, so the version file of that time changed
/// content (and the kernel, which caches version files as immutable, could keep
/// serving the first).
#[test]
fn a_back_dated_version_keeps_its_content_when_its_file_is_committed_again() {
    if fuse_skipped() {
        return;
    }
    let (real, dir) = mounted_with_dir();
    let mut f = File::create(dir.join("2020-01-02T03:04:05Z")).expect("create");
    f.write_all(b"one").expect("write");
    f.sync_all().expect("fsync commits the back-dated version");
    let version = dir.join("2020-01-02T03:04:05.000000000Z");
    assert_eq!(fs::read(&version).expect("read the version"), b"one");
    f.write_all(b" two").expect("write");
    close(f).expect("close commits again");
    let as_of = real
        .mount
        .path(".anchorfs/at/2020-01-02T03:04:05Z")
        .join(ANCHORS[0].1);
    let by_name = fs::read_to_string(&version).expect("read the version again");
    let by_time = fs::read_to_string(&as_of).expect("read the version by time travel");
    assert_eq!(by_name, by_time, "one version, one content, by any path");
    assert_eq!(by_name, "one", "the version does not change");
    assert_eq!(stored(&real, 0), ["one", "one two"]);
}

/// Was a bug: renaming a file onto the name of a file that another descriptor has
/// open for writing left that descriptor answering EBADF; rename(2) only unlinks the
/// displaced file, which keeps working through its descriptors (and, unlinked,
/// never becomes a version).
#[test]
fn a_file_replaced_by_a_rename_keeps_its_descriptor() {
    if fuse_skipped() {
        return;
    }
    let (real, dir) = mounted_with_dir();
    let mut open = File::create(dir.join("notes.txt")).expect("create");
    open.write_all(b"old").expect("write");
    fs::write(dir.join(".x.tmp"), b"new").expect("scratch file");
    fs::rename(dir.join(".x.tmp"), dir.join("notes.txt")).expect("rename");
    let write = open.write_all(b" more").map_err(|e| errno_of(&e));
    assert_eq!(
        write,
        Ok(()),
        "writing through the displaced file's descriptor"
    );
    assert_eq!(close(open).map_err(|e| errno_of(&e)), Ok(()));
    assert_eq!(stored(&real, 0), ["new"]);
}

/// Was a bug: a back-dated write whose content equals the next version's removed
/// that version (the store keeps the earlier of two equal neighbours), against
/// "nothing ever changes or removes an existing version". It is refused with
/// `EEXIST` at close; history does not change.
#[test]
fn a_back_dated_write_never_removes_a_version() {
    if fuse_skipped() {
        return;
    }
    let (real, dir) = mounted_with_dir();
    fs::write(dir.join("notes.txt"), b"same").expect("a version now");
    let history = || store_history(&real.mount.store, ANCHORS[0].0);
    let (before, names_before) = (history(), sorted_names(&dir).expect("listing"));
    let mut f = File::create(dir.join("2020-01-02T03:04:05Z")).expect("create");
    f.write_all(b"same").expect("write");
    assert_eq!(
        close(f).map_err(|e| errno_of(&e)),
        Err(libc::EEXIST),
        "close"
    );
    assert_eq!(history(), before, "history does not change");
    assert_eq!(sorted_names(&dir).expect("listing"), names_before);
}
