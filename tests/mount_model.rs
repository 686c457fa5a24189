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
//! The bugs this test found are pinned by the regression tests at the end.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anchorfs::fs::names::parse_version_name;
use anchorfs::store::file::FileStore;
use anchorfs::Timestamp;
use anchorfs::{anchor, content};
use common::{fuse_skipped, Mounted};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The anchors a case works in: (anchor name, its directory name in the mount).
const ANCHORS: [(&[u8], &str); 3] = [
    (b"notes", "notes"),
    (b"log", "log"),
    (b".hidden", "%2Ehidden"),
];

/// File names ops use inside an anchor directory.
const NAMES: [&str; 8] = [
    "notes.txt",
    "draft",
    ".x.tmp",
    "b~",
    "latest",
    // Back-dated: the same instant in a short spelling and in the version files' own.
    "2020-01-02T03:04:05Z",
    "2020-01-02T03:04:05.000000000Z",
    // Back-dated, with an offset.
    "2021-06-07T08:09:10+02:00",
];

/// The name of the link to the newest version.
const LATEST: &str = "latest";

/// Whether a file name is scratch (never committed under that name), per the page.
fn is_scratch(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name == "4913"
        || (name.len() > 8 && name.ends_with("-journal"))
        || (name.len() > 4 && (name.ends_with("-wal") || name.ends_with("-shm")))
}

/// The time a file name gives a version: any RFC 3339 time or the compact form.
fn name_time(name: &str) -> Option<Timestamp> {
    Timestamp::parse(name).ok()
}

// ---------------------------------------------------------------------------------
// Operations

/// A file name an op uses: one of [`NAMES`], or the name of one of the anchor's
/// versions (by index, modulo their number) in either spelling.
#[derive(Clone, Copy, Debug)]
enum NameRef {
    Pool(usize),
    Version { index: usize, compact: bool },
}

/// How a file is opened (always readable too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpenMode {
    /// `O_CREAT`
    Create,
    /// `O_CREAT | O_TRUNC` (`>`)
    CreateTrunc,
    /// `O_CREAT | O_APPEND` (`>>`)
    Append,
    /// neither: edit an existing file in place
    Edit,
}

/// A generated operation; anchors by index into [`ANCHORS`], open descriptors by
/// index (modulo their number; nothing happens when none is open).
#[derive(Clone, Debug)]
enum Op {
    Mkdir(usize),
    Rmdir(usize),
    Open {
        anchor: usize,
        name: NameRef,
        mode: OpenMode,
    },
    Write {
        handle: usize,
        data: Vec<u8>,
    },
    WriteAt {
        handle: usize,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        handle: usize,
        len: u64,
    },
    ReadBack(usize),
    Fsync(usize),
    Close(usize),
    Rename {
        anchor: usize,
        from: NameRef,
        to: NameRef,
    },
    Unlink {
        anchor: usize,
        name: NameRef,
    },
    ReadVersion {
        anchor: usize,
        index: usize,
    },
}

fn name_ref() -> impl Strategy<Value = NameRef> + Clone {
    prop_oneof![
        4 => (0..NAMES.len()).prop_map(NameRef::Pool),
        1 => (0..4usize, any::<bool>())
            .prop_map(|(index, compact)| NameRef::Version { index, compact }),
    ]
}

/// What a rename moves: mostly the scratch and normal names files are written under.
fn rename_from() -> impl Strategy<Value = NameRef> + Clone {
    prop_oneof![
        3 => (0..4usize).prop_map(NameRef::Pool),
        1 => name_ref(),
    ]
}

/// Small contents from a tiny alphabet, so equal contents (which the store's put
/// rule folds together) come up often.
fn data() -> impl Strategy<Value = Vec<u8>> + Clone {
    proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 1..4)
}

fn open_mode() -> impl Strategy<Value = OpenMode> + Clone {
    prop_oneof![
        3 => Just(OpenMode::Create),
        3 => Just(OpenMode::CreateTrunc),
        3 => Just(OpenMode::Append),
        1 => Just(OpenMode::Edit),
    ]
}

/// An anchor, mostly the first, so that files meet in one directory.
fn anchor() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![3 => Just(0), 1 => Just(1), 1 => Just(2)]
}

fn op() -> impl Strategy<Value = Op> {
    let anchor = anchor();
    let handle = 0..4usize;
    prop_oneof![
        3 => anchor.clone().prop_map(Op::Mkdir),
        1 => anchor.clone().prop_map(Op::Rmdir),
        8 => (anchor.clone(), name_ref(), open_mode())
            .prop_map(|(anchor, name, mode)| Op::Open { anchor, name, mode }),
        7 => (handle.clone(), data()).prop_map(|(handle, data)| Op::Write { handle, data }),
        2 => (handle.clone(), 0..6u64, data())
            .prop_map(|(handle, offset, data)| Op::WriteAt { handle, offset, data }),
        1 => (handle.clone(), 0..5u64).prop_map(|(handle, len)| Op::SetLen { handle, len }),
        1 => handle.clone().prop_map(Op::ReadBack),
        2 => handle.clone().prop_map(Op::Fsync),
        5 => handle.prop_map(Op::Close),
        4 => (anchor.clone(), rename_from(), name_ref())
            .prop_map(|(anchor, from, to)| Op::Rename { anchor, from, to }),
        2 => (anchor.clone(), name_ref()).prop_map(|(anchor, name)| Op::Unlink { anchor, name }),
        1 => (anchor, 0..4usize).prop_map(|(anchor, index)| Op::ReadVersion { anchor, index }),
    ]
}

/// A case: the first anchor's directory made, then up to 60 random ops.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..60).prop_map(|ops| {
        let mut all = vec![Op::Mkdir(0)];
        all.extend(ops);
        all
    })
}

/// An operation with its names and descriptor resolved, as both sides run it.
#[derive(Clone, Debug)]
enum Step {
    Mkdir(usize),
    Rmdir(usize),
    Open {
        anchor: usize,
        name: String,
        mode: OpenMode,
    },
    Write {
        handle: usize,
        data: Vec<u8>,
    },
    WriteAt {
        handle: usize,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        handle: usize,
        len: u64,
    },
    ReadBack(usize),
    Fsync(usize),
    Close(usize),
    Rename {
        anchor: usize,
        from: String,
        to: String,
    },
    Unlink {
        anchor: usize,
        name: String,
    },
    ReadFile {
        anchor: usize,
        name: String,
    },
}

/// What a step returned: bytes for reads, nothing otherwise, or an errno.
type Outcome = Result<Option<Vec<u8>>, i32>;

// ---------------------------------------------------------------------------------
// The model

/// A version's time: a back-dated one named by a file, or the commit time of the
/// `n`th "now" (every now is after every back-dated time and after the ones before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MTime {
    Back(Timestamp),
    Now(u64),
}

/// The name of a file being written.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StagedName {
    /// Created or renamed under this name.
    Named(String),
    /// Renamed onto `latest` or a version's name: named by the time of the rename.
    Now(u64),
    /// Opened over the version at this time (or `latest`): not listed under a name
    /// of its own.
    OverVersion(MTime),
}

/// A file being written.
#[derive(Clone, Debug)]
struct Staged {
    anchor: usize,
    name: StagedName,
    content: Vec<u8>,
    /// Changed since its last commit.
    dirty: bool,
    /// Written or truncated at least once (an untouched file commits only at its
    /// last close).
    written: bool,
    /// Open descriptors.
    open: u32,
    /// Unlinked (or replaced by a rename): never committed.
    unlinked: bool,
    /// Listed in its directory under its name.
    listed: bool,
    /// Forgotten by the mount (closed for good).
    gone: bool,
    /// Its last commit was refused with this errno (until it changes again).
    failed: Option<i32>,
    /// Committed and unchanged since: its name names the version it became, so it
    /// answers lookups, kept after the last close, but is not listed.
    settled: bool,
}

impl Staged {
    /// Written or truncated: something to commit, and no earlier refusal stands.
    fn changed(&mut self) {
        self.dirty = true;
        self.written = true;
        self.failed = None;
        self.settled = false;
    }
}

/// An open descriptor.
#[derive(Clone, Debug)]
struct Handle {
    /// The file it writes (index into `Model::files`).
    file: usize,
    /// Its file position.
    pos: u64,
    /// Opened with `O_APPEND`.
    append: bool,
}

/// What a name in an anchor directory resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Staged(usize),
    Latest,
    Version(MTime),
    Missing,
}

/// What the release of a close does (the kernel sends it after close(2) returns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Release {
    /// Not the last close: nothing.
    #[default]
    None,
    /// Commits a version or takes a file out of the listing.
    Shows,
    /// Nothing that shows.
    Unseen,
}

/// Anchor histories, keyed by index into [`ANCHORS`]; an anchor is present while its
/// directory exists (an empty history: made by `mkdir`, no version yet).
type Histories = BTreeMap<usize, Vec<(MTime, Vec<u8>)>>;

#[derive(Default)]
struct Model {
    histories: Histories,
    files: Vec<Staged>,
    handles: Vec<Handle>,
    /// The last "now" handed out.
    clock: u64,
    /// The real time of each committed "now", learned from the store.
    times: HashMap<u64, Timestamp>,
    /// What the release of the last step's close does.
    release: Release,
}

impl Model {
    fn tick(&mut self) -> MTime {
        self.clock += 1;
        MTime::Now(self.clock)
    }

    fn timestamp(&self, t: MTime) -> Option<Timestamp> {
        match t {
            MTime::Back(ts) => Some(ts),
            MTime::Now(n) => self.times.get(&n).copied(),
        }
    }

    /// The file name of a version at `t` (once its real time is known).
    fn version_name(&self, t: MTime, compact: bool) -> Option<String> {
        self.timestamp(t).map(|ts| {
            if compact {
                ts.to_compact()
            } else {
                ts.to_rfc3339()
            }
        })
    }

    /// The versions an anchor directory shows: one per time, the last entry of it.
    fn versions(&self, anchor: usize) -> Vec<(MTime, Vec<u8>)> {
        let mut out: Vec<(MTime, Vec<u8>)> = Vec::new();
        for (t, c) in self.histories.get(&anchor).into_iter().flatten() {
            match out.last_mut() {
                Some(last) if last.0 == *t => last.1 = c.clone(),
                _ => out.push((*t, c.clone())),
            }
        }
        out
    }

    fn has_version_at(&self, anchor: usize, ts: Timestamp) -> bool {
        self.versions(anchor)
            .iter()
            .any(|(t, _)| self.timestamp(*t) == Some(ts))
    }

    fn staged_name(&self, f: &Staged) -> Option<String> {
        match &f.name {
            StagedName::Named(n) => Some(n.clone()),
            StagedName::Now(n) => self.version_name(MTime::Now(*n), false),
            StagedName::OverVersion(_) => None,
        }
    }

    fn staged_time(f: &Staged) -> Option<MTime> {
        match &f.name {
            StagedName::Named(n) => name_time(n).map(MTime::Back),
            StagedName::Now(n) => Some(MTime::Now(*n)),
            StagedName::OverVersion(_) => None,
        }
    }

    fn staged_scratch(f: &Staged) -> bool {
        matches!(&f.name, StagedName::Named(n) if is_scratch(n))
    }

    /// The listed file being written under `name` in `anchor`.
    fn find_staged(&self, anchor: usize, name: &str) -> Option<usize> {
        (0..self.files.len()).find(|&id| {
            let f = &self.files[id];
            f.anchor == anchor && f.listed && self.staged_name(f).as_deref() == Some(name)
        })
    }

    /// What `name` in `anchor` resolves to: `latest` and the versions' names first,
    /// then the files being written (a file written under such a name, committed by
    /// an fsync or renamed there, does not hide it).
    fn lookup(&self, anchor: usize, name: &str) -> Node {
        let versions = self.versions(anchor);
        if name == LATEST && !versions.is_empty() {
            return Node::Latest;
        }
        let version = versions.iter().find(|(t, _)| {
            self.version_name(*t, false).as_deref() == Some(name)
                || self.version_name(*t, true).as_deref() == Some(name)
        });
        if let Some((t, _)) = version {
            return Node::Version(*t);
        }
        self.find_staged(anchor, name)
            .map_or(Node::Missing, Node::Staged)
    }

    /// Whether the directory lists file `id` under its own name (not when history
    /// shows that name).
    fn listed_as_staged(&self, id: usize) -> bool {
        let f = &self.files[id];
        f.listed
            && !f.settled
            && match self.staged_name(f) {
                Some(name) => self.lookup(f.anchor, &name) == Node::Staged(id),
                None => true,
            }
    }

    /// The name `latest` links to (empty before the first version).
    fn latest_name(&self, anchor: usize) -> String {
        self.versions(anchor)
            .last()
            .and_then(|(t, _)| self.version_name(*t, false))
            .unwrap_or_default()
    }

    /// [`Model::lookup`], following `latest` to the newest version's name.
    fn lookup_follow(&self, anchor: usize, name: &str) -> Node {
        match self.lookup(anchor, name) {
            Node::Latest => self.lookup(anchor, &self.latest_name(anchor)),
            node => node,
        }
    }

    /// The store's put rule: a version equal to the one before it in time adds
    /// nothing; a back-dated one is sorted into place (after any of the same time)
    /// and neighbours with equal content fold into the earlier one.
    fn put(&mut self, anchor: usize, t: MTime, content: Vec<u8>) {
        let hist = self.histories.entry(anchor).or_default();
        if let Some((last_t, last_c)) = hist.last() {
            if *last_t < t {
                if *last_c != content {
                    hist.push((t, content));
                }
                return;
            }
        }
        hist.push((t, content));
        hist.sort_by_key(|(t, _)| *t);
        hist.dedup_by(|later, earlier| later.1 == earlier.1);
    }

    /// Commits file `id` if it has something to commit (at close, fsync or rename);
    /// returns whether it did, or the errno of a refused commit (again at every
    /// later commit point until the file changes).
    fn commit(&mut self, id: usize, last_close: bool) -> Result<bool, i32> {
        let f = &self.files[id];
        if f.gone {
            return Ok(false);
        }
        if !f.dirty || Self::staged_scratch(f) || f.unlinked || (!f.written && !last_close) {
            return f.failed.map_or(Ok(false), Err);
        }
        // A time-named file back-dates its first commit; once a version of that
        // time exists, its later commits are new versions at their commit time.
        let versions = self.versions(f.anchor);
        let t = match Self::staged_time(f) {
            Some(t) if !versions.iter().any(|(vt, _)| *vt == t) => t,
            _ => self.tick(),
        };
        let f = &mut self.files[id];
        f.dirty = false;
        // A back-dated version with the content of the next one would move it (the
        // store keeps the earlier of equal neighbours): refused.
        if versions
            .iter()
            .find(|(vt, _)| *vt > t)
            .is_some_and(|(_, c)| *c == f.content)
        {
            f.failed = Some(libc::EEXIST);
            f.settled = false;
            return Err(libc::EEXIST);
        }
        f.failed = None;
        f.settled = true;
        let (anchor, content) = (f.anchor, f.content.clone());
        self.put(anchor, t, content);
        Ok(true)
    }

    fn forget(&mut self, id: usize) {
        self.files[id].gone = true;
        self.files[id].listed = false;
    }

    /// A new file being written, open once; returns its id.
    fn new_file(
        &mut self,
        anchor: usize,
        name: StagedName,
        content: Vec<u8>,
        dirty: bool,
    ) -> usize {
        let listed = !matches!(name, StagedName::OverVersion(_));
        self.files.push(Staged {
            anchor,
            name,
            content,
            dirty,
            written: false,
            open: 1,
            unlinked: false,
            listed,
            gone: false,
            failed: None,
            settled: false,
        });
        self.files.len() - 1
    }

    /// Turns a generated op into a step, or `None` if it has nothing to act on.
    fn resolve(&self, op: &Op) -> Option<Step> {
        let handle = |h: usize| (!self.handles.is_empty()).then(|| h % self.handles.len());
        let name = |anchor: usize, n: NameRef| match n {
            NameRef::Pool(i) => Some(NAMES[i].to_string()),
            NameRef::Version { index, compact } => {
                let versions = self.versions(anchor);
                let (t, _) = versions.get(index % versions.len().max(1))?;
                self.version_name(*t, compact)
            }
        };
        Some(match op {
            Op::Mkdir(a) => Step::Mkdir(*a),
            Op::Rmdir(a) => Step::Rmdir(*a),
            Op::Open {
                anchor,
                name: n,
                mode,
            } => Step::Open {
                anchor: *anchor,
                name: name(*anchor, *n)?,
                mode: *mode,
            },
            Op::Write { handle: h, data } => Step::Write {
                handle: handle(*h)?,
                data: data.clone(),
            },
            Op::WriteAt {
                handle: h,
                offset,
                data,
            } => Step::WriteAt {
                handle: handle(*h)?,
                offset: *offset,
                data: data.clone(),
            },
            Op::SetLen { handle: h, len } => Step::SetLen {
                handle: handle(*h)?,
                len: *len,
            },
            Op::ReadBack(h) => Step::ReadBack(handle(*h)?),
            Op::Fsync(h) => Step::Fsync(handle(*h)?),
            Op::Close(h) => Step::Close(handle(*h)?),
            Op::Rename { anchor, from, to } => Step::Rename {
                anchor: *anchor,
                from: name(*anchor, *from)?,
                to: name(*anchor, *to)?,
            },
            Op::Unlink { anchor, name: n } => Step::Unlink {
                anchor: *anchor,
                name: name(*anchor, *n)?,
            },
            Op::ReadVersion { anchor, index } => {
                let versions = self.versions(*anchor);
                let (t, _) = versions.get(index % versions.len().max(1))?;
                Step::ReadFile {
                    anchor: *anchor,
                    name: self.version_name(*t, true)?,
                }
            }
        })
    }

    /// Whether a file renamed onto `name` becomes a new version at the rename time.
    fn onto_version(&self, anchor: usize, name: &str) -> bool {
        name == LATEST || name_time(name).is_some_and(|ts| self.has_version_at(anchor, ts))
    }

    /// Applies a step to the model; returns what the mount should answer.
    fn apply(&mut self, step: &Step) -> Outcome {
        match step {
            Step::Mkdir(a) => self.mkdir(*a),
            Step::Rmdir(a) => self.rmdir(*a),
            Step::Open { anchor, name, mode } => self.open(*anchor, name, *mode),
            Step::Write { handle, data } => {
                let h = &self.handles[*handle];
                let pos = if h.append {
                    self.files[h.file].content.len() as u64
                } else {
                    h.pos
                };
                self.write_at(*handle, pos, data);
                self.handles[*handle].pos = pos + data.len() as u64;
                Ok(None)
            }
            Step::WriteAt {
                handle,
                offset,
                data,
            } => {
                let h = &self.handles[*handle];
                // Linux appends a pwrite on an O_APPEND descriptor.
                let pos = if h.append {
                    self.files[h.file].content.len() as u64
                } else {
                    *offset
                };
                self.write_at(*handle, pos, data);
                Ok(None)
            }
            Step::SetLen { handle, len } => {
                let f = &mut self.files[self.handles[*handle].file];
                if f.content.len() as u64 != *len {
                    f.content.resize(*len as usize, 0);
                    f.changed();
                }
                Ok(None)
            }
            Step::ReadBack(handle) => {
                Ok(Some(self.files[self.handles[*handle].file].content.clone()))
            }
            Step::Fsync(handle) => self.commit(self.handles[*handle].file, false).map(|_| None),
            Step::Close(handle) => {
                let id = self.handles.remove(*handle).file;
                let (flushed, release) = self.close(id);
                self.release = release;
                flushed.map(|_| None)
            }
            Step::Rename { anchor, from, to } => self.rename(*anchor, from, to),
            Step::Unlink { anchor, name } => self.unlink(*anchor, name),
            Step::ReadFile { anchor, name } => self.read_file(*anchor, name),
        }
    }

    fn mkdir(&mut self, anchor: usize) -> Outcome {
        if self.histories.contains_key(&anchor) {
            return Err(libc::EEXIST);
        }
        self.histories.insert(anchor, Vec::new());
        Ok(None)
    }

    fn rmdir(&mut self, anchor: usize) -> Outcome {
        match self.histories.get(&anchor) {
            None => Err(libc::ENOENT),
            Some(h) if !h.is_empty() => Err(libc::EPERM),
            Some(_) if self.files.iter().any(|f| f.anchor == anchor && f.listed) => {
                Err(libc::ENOTEMPTY)
            }
            Some(_) => {
                self.histories.remove(&anchor);
                Ok(None)
            }
        }
    }

    fn open(&mut self, anchor: usize, name: &str, mode: OpenMode) -> Outcome {
        if !self.histories.contains_key(&anchor) {
            return Err(libc::ENOENT);
        }
        let truncate = mode == OpenMode::CreateTrunc;
        let file = match self.lookup_follow(anchor, name) {
            Node::Staged(id) => {
                let f = &mut self.files[id];
                f.open += 1;
                if truncate {
                    f.content.clear();
                    f.dirty = true;
                    f.failed = None;
                    f.settled = false;
                }
                id
            }
            Node::Version(t) => {
                // A new version, seeded with this one unless truncated.
                let seed = if truncate {
                    Vec::new()
                } else {
                    let versions = self.versions(anchor);
                    versions.into_iter().find(|(vt, _)| *vt == t).unwrap().1
                };
                self.new_file(anchor, StagedName::OverVersion(t), seed, truncate)
            }
            Node::Missing if mode == OpenMode::Edit => return Err(libc::ENOENT),
            Node::Missing => {
                // A back-dated file may not hide a version, in any spelling.
                if name_time(name).is_some_and(|ts| self.has_version_at(anchor, ts)) {
                    return Err(libc::EEXIST);
                }
                let name = StagedName::Named(name.to_string());
                self.new_file(anchor, name, Vec::new(), true)
            }
            Node::Latest => unreachable!("followed"),
        };
        self.handles.push(Handle {
            file,
            pos: 0,
            append: mode == OpenMode::Append,
        });
        Ok(None)
    }

    fn write_at(&mut self, handle: usize, pos: u64, data: &[u8]) {
        let f = &mut self.files[self.handles[handle].file];
        let end = pos as usize + data.len();
        if f.content.len() < end {
            f.content.resize(end, 0);
        }
        f.content[pos as usize..end].copy_from_slice(data);
        f.changed();
    }

    /// `close`: the flush commits what was written (its result is close's); the
    /// last close (the release, which the kernel sends after close(2) returns)
    /// commits what is left (an untouched new file as an empty version) and forgets
    /// the file unless it is a scratch file still listed.
    fn close(&mut self, id: usize) -> (Result<bool, i32>, Release) {
        let flushed = self.commit(id, false);
        let f = &mut self.files[id];
        if f.gone {
            return (flushed, Release::None);
        }
        if f.open > 1 {
            f.open -= 1;
            return (flushed, Release::None);
        }
        // What the release's commit answers reaches no one.
        let committed = self.commit(id, true) == Ok(true);
        let f = &mut self.files[id];
        f.open = 0;
        let listed = f.listed;
        // A committed file keeps its name for the version it became.
        let keeps_name = f.settled && f.listed;
        if f.unlinked || !(Self::staged_scratch(f) || keeps_name) {
            self.forget(id);
        }
        let release = if committed || listed != self.files[id].listed {
            Release::Shows
        } else {
            Release::Unseen
        };
        (flushed, release)
    }

    fn rename(&mut self, anchor: usize, from: &str, to: &str) -> Outcome {
        if !self.histories.contains_key(&anchor) {
            return Err(libc::ENOENT);
        }
        let from_node = self.lookup(anchor, from);
        if from_node == Node::Missing {
            return Err(libc::ENOENT);
        }
        if from_node == self.lookup(anchor, to) {
            // The same file under both names: rename(2) does nothing.
            return Ok(None);
        }
        let Node::Staged(id) = from_node else {
            return Err(libc::EPERM);
        };
        // Onto `latest` or a version's name (any spelling): a new version, named by
        // the time of the rename.
        let onto_version = self.onto_version(anchor, to);
        // A file whose content already is a version, unchanged since: renamed onto
        // the history when that version is the newest, its name just goes; renamed
        // onto a normal name, the name moves. Neither adds a version.
        let settled = self.files[id].settled;
        let newest = self.versions(anchor).last().map(|(_, c)| c.clone());
        if settled && onto_version && newest.as_ref() == Some(&self.files[id].content) {
            let f = &mut self.files[id];
            f.listed = false;
            if f.open == 0 {
                self.forget(id);
            }
            return Ok(None);
        }
        let target = if onto_version {
            let MTime::Now(n) = self.tick() else {
                unreachable!()
            };
            StagedName::Now(n)
        } else {
            StagedName::Named(to.to_string())
        };
        if !onto_version {
            if let Some(old) = self.find_staged(anchor, to) {
                // Replaced, as rename(2) replaces: its descriptors still work, but it
                // never becomes a version.
                self.files[old].listed = false;
                self.files[old].unlinked = true;
                if self.files[old].open == 0 {
                    self.forget(old);
                }
            }
        }
        let f = &mut self.files[id];
        f.name = target;
        if !settled || onto_version {
            f.dirty = true;
            f.settled = false;
        }
        if f.dirty && !Self::staged_scratch(f) && f.open == 0 {
            let committed = self.commit(id, true);
            if !self.files[id].settled {
                self.forget(id);
            }
            return committed.map(|_| None);
        }
        Ok(None)
    }

    fn unlink(&mut self, anchor: usize, name: &str) -> Outcome {
        if !self.histories.contains_key(&anchor) {
            return Err(libc::ENOENT);
        }
        match self.lookup(anchor, name) {
            Node::Missing => Err(libc::ENOENT),
            Node::Staged(id) => {
                let f = &mut self.files[id];
                f.unlinked = true;
                f.listed = false;
                if f.open == 0 {
                    self.forget(id);
                }
                Ok(None)
            }
            Node::Latest | Node::Version(_) => Err(libc::EPERM),
        }
    }

    /// Reading a version file: the version's content, whatever is being written.
    fn read_file(&self, anchor: usize, name: &str) -> Outcome {
        let Some(t) = name_time(name) else {
            return Err(libc::ENOENT);
        };
        self.versions(anchor)
            .into_iter()
            .find(|(vt, _)| self.timestamp(*vt) == Some(t))
            .map(|(_, c)| Some(c))
            .ok_or(libc::ENOENT)
    }
}

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

/// A file being written whose name (the time of a rename) is not known yet.
const UNKNOWN_TIME_NAME: &str = "<a time name>";

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
            let Some(step) = self.model.resolve(op) else {
                continue;
            };
            self.model.release = Release::None;
            let want = self.model.apply(&step);
            let got = self
                .real
                .apply(&step)
                .map_err(|why| TestCaseError::fail(format!("op {i}: {step:?}: {why}")))?;
            prop_assert_eq!(got, want, "op {}: {:?}", i, step);
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
            self.check_soon(i, &step)?;
        }
        Ok(())
    }

    /// [`Case::check`], given a few seconds to come true.
    fn check_soon(&mut self, i: usize, step: &Step) -> Result<(), TestCaseError> {
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

    /// Compares the mount and the store with the model.
    fn check(&mut self, i: usize, step: &Step) -> Result<(), TestCaseError> {
        let mut dirs: Vec<String> = self
            .model
            .histories
            .keys()
            .map(|a| ANCHORS[*a].1.to_string())
            .collect();
        dirs.push(".anchorfs".into());
        dirs.sort();
        prop_assert_eq!(
            sorted_names(&self.real.mount.mnt).map_err(|e| errno_of(&e)),
            Ok(dirs),
            "after op {}: {:?}: the root directory",
            i,
            step
        );
        for anchor in 0..ANCHORS.len() {
            self.check_history(anchor)
                .map_err(|e| with_context(e, i, step, anchor))?;
            self.check_dir(anchor)
                .map_err(|e| with_context(e, i, step, anchor))?;
        }
        Ok(())
    }

    /// The store's history (through the library) is the model's; learns the real
    /// times of commits made at "now".
    fn check_history(&mut self, anchor: usize) -> Result<(), TestCaseError> {
        let got = store_history(&self.real.mount.store, ANCHORS[anchor].0);
        let want = self
            .model
            .histories
            .get(&anchor)
            .cloned()
            .unwrap_or_default();
        let got_contents: Vec<&[u8]> = got.iter().map(|(_, c)| c.as_slice()).collect();
        let want_contents: Vec<&[u8]> = want.iter().map(|(_, c)| c.as_slice()).collect();
        prop_assert_eq!(got_contents, want_contents, "history contents in the store");
        for ((at, _), (t, _)) in got.iter().zip(&want) {
            match *t {
                MTime::Back(ts) => prop_assert_eq!(*at, ts, "a back-dated version's time"),
                MTime::Now(n) => {
                    prop_assert!(*at >= self.start, "a commit time {:?} from the past", at);
                    let known = *self.model.times.entry(n).or_insert(*at);
                    prop_assert_eq!(*at, known, "a version's time changed");
                }
            }
        }
        Ok(())
    }

    /// The anchor directory lists the versions, `latest` and the files being
    /// written; `latest` and every version read as the model says.
    fn check_dir(&self, anchor: usize) -> Result<(), TestCaseError> {
        let dir = self.real.dir(anchor);
        if !self.model.histories.contains_key(&anchor) {
            let e = fs::symlink_metadata(&dir).map_err(|e| errno_of(&e));
            prop_assert_eq!(e.err(), Some(libc::ENOENT), "no directory");
            return Ok(());
        }
        self.check_listing(anchor, &dir)?;
        let versions = self.model.versions(anchor);
        let latest = dir.join(LATEST);
        match versions.last() {
            Some((t, content)) => {
                let target = self.model.version_name(*t, false).expect("a known time");
                prop_assert_eq!(
                    fs::read_link(&latest).map_err(|e| errno_of(&e)),
                    Ok(PathBuf::from(&target)),
                    "where latest links"
                );
                prop_assert_eq!(
                    fs::read(&latest).map_err(|e| errno_of(&e)),
                    Ok(content.clone()),
                    "what latest reads"
                );
            }
            // A file being written may be called `latest` before the first version;
            // reading it would open it for writing.
            None if self.model.find_staged(anchor, LATEST).is_some() => {}
            None => prop_assert_eq!(
                fs::symlink_metadata(&latest)
                    .map(|_| ())
                    .map_err(|e| errno_of(&e)),
                Err(libc::ENOENT),
                "no latest before the first version"
            ),
        }
        for (t, content) in &versions {
            let name = self.model.version_name(*t, false).expect("a known time");
            prop_assert_eq!(
                fs::read(dir.join(&name)).map_err(|e| errno_of(&e)),
                Ok(content.clone()),
                "what version {} reads",
                name
            );
        }
        Ok(())
    }

    /// The directory lists one file per version time, `latest` once there is a
    /// version, and the files being written (once each: not those under a name that
    /// history shows).
    fn check_listing(&self, anchor: usize, dir: &Path) -> Result<(), TestCaseError> {
        let versions = self.model.versions(anchor);
        let mut want: Vec<String> = versions
            .iter()
            .map(|(t, _)| self.model.version_name(*t, false).expect("a known time"))
            .collect();
        if !versions.is_empty() {
            want.push(LATEST.into());
        }
        for (id, f) in self.model.files.iter().enumerate() {
            if f.anchor == anchor && self.model.listed_as_staged(id) {
                want.push(
                    self.model
                        .staged_name(f)
                        .unwrap_or_else(|| UNKNOWN_TIME_NAME.into()),
                );
            }
        }
        want.sort();
        let mut got: Vec<String> = sorted_names(dir)
            .map_err(|e| TestCaseError::fail(format!("listing: {e}")))?
            .into_iter()
            .map(|n| {
                // A file being written under the time of a rename: its exact name is
                // known only once it is committed.
                if !want.contains(&n) && parse_version_name(n.as_bytes()).is_some() {
                    UNKNOWN_TIME_NAME.into()
                } else {
                    n
                }
            })
            .collect();
        got.sort();
        prop_assert_eq!(got, want, "the listing");
        Ok(())
    }
}

fn with_context(e: TestCaseError, i: usize, step: &Step, anchor: usize) -> TestCaseError {
    TestCaseError::fail(format!(
        "after op {i}: {step:?}: anchor {:?}: {e}",
        ANCHORS[anchor].1
    ))
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
    fn mount_writes_match_the_model(ops in ops()) {
        if fuse_skipped() {
            return Ok(());
        }
        Case::new().run(&ops)?;
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
