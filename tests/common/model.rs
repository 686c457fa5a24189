//! The plain model of the write side (docs/SEMANTICS.md, "Writing") that the
//! model-based tests run against a real mount and against the filesystem core: the
//! generated operations, the steps they resolve to, and a model of what each step
//! answers and leaves behind.
//!
//! The model holds each anchor's committed history (ordered by time, back-dated
//! versions in their place, under the store's put rule) and the files being
//! written, with the commit rules of the semantics page. Failures of the store are
//! no part of the rules: a test that injects them tells the model, step by step,
//! which commit failed and how ([`CommitFault`], [`Model::break_file`]); the model
//! then says what must follow.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};

use anchorfs::Timestamp;
use proptest::prelude::*;

/// The anchors a case works in: (anchor name, its directory name in the mount).
pub const ANCHORS: [(&[u8], &str); 3] = [
    (b"notes", "notes"),
    (b"log", "log"),
    (b".hidden", "%2Ehidden"),
];

/// File names ops use inside an anchor directory.
pub const NAMES: [&str; 8] = [
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
pub const LATEST: &str = "latest";

/// Whether a file name is scratch (never committed under that name), per the page.
pub fn is_scratch(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name == "4913"
        || (name.len() > 8 && name.ends_with("-journal"))
        || (name.len() > 4 && (name.ends_with("-wal") || name.ends_with("-shm")))
}

/// The time a file name gives a version: any RFC 3339 time or the compact form.
pub fn name_time(name: &str) -> Option<Timestamp> {
    Timestamp::parse(name).ok()
}

// ---------------------------------------------------------------------------------
// Operations

/// A file name an op uses: one of [`NAMES`], or the name of one of the anchor's
/// versions (by index, modulo their number) in either spelling.
#[derive(Clone, Copy, Debug)]
pub enum NameRef {
    Pool(usize),
    Version { index: usize, compact: bool },
}

/// How a file is opened (always readable too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
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
pub enum Op {
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

pub fn name_ref() -> impl Strategy<Value = NameRef> + Clone {
    prop_oneof![
        4 => (0..NAMES.len()).prop_map(NameRef::Pool),
        1 => (0..4usize, any::<bool>())
            .prop_map(|(index, compact)| NameRef::Version { index, compact }),
    ]
}

/// What a rename moves: mostly the scratch and normal names files are written under.
pub fn rename_from() -> impl Strategy<Value = NameRef> + Clone {
    prop_oneof![
        3 => (0..4usize).prop_map(NameRef::Pool),
        1 => name_ref(),
    ]
}

/// Small contents from a tiny alphabet, so equal contents (which the store's put
/// rule folds together) come up often.
pub fn data() -> impl Strategy<Value = Vec<u8>> + Clone {
    proptest::collection::vec(proptest::sample::select(b"ab".to_vec()), 1..4)
}

pub fn open_mode() -> impl Strategy<Value = OpenMode> + Clone {
    prop_oneof![
        3 => Just(OpenMode::Create),
        3 => Just(OpenMode::CreateTrunc),
        3 => Just(OpenMode::Append),
        1 => Just(OpenMode::Edit),
    ]
}

/// An anchor, mostly the first, so that files meet in one directory.
pub fn anchor() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![3 => Just(0), 1 => Just(1), 1 => Just(2)]
}

pub fn op() -> impl Strategy<Value = Op> {
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
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..60).prop_map(|ops| {
        let mut all = vec![Op::Mkdir(0)];
        all.extend(ops);
        all
    })
}

/// An operation with its names and descriptor resolved, as both sides run it.
#[derive(Clone, Debug)]
pub enum Step {
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
pub type Outcome = Result<Option<Vec<u8>>, i32>;

// ---------------------------------------------------------------------------------
// The model

/// A version's time: a back-dated one named by a file, or the commit time of the
/// `n`th "now" (every now is after every back-dated time and after the ones before).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MTime {
    Back(Timestamp),
    Now(u64),
}

/// The name of a file being written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StagedName {
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
pub struct Staged {
    pub anchor: usize,
    pub name: StagedName,
    pub content: Vec<u8>,
    /// Changed since its last commit.
    pub dirty: bool,
    /// Written or truncated at least once (an untouched file commits only at its
    /// last close).
    pub written: bool,
    /// Open descriptors.
    pub open: u32,
    /// Unlinked (or replaced by a rename): never committed.
    pub unlinked: bool,
    /// Listed in its directory under its name.
    pub listed: bool,
    /// Forgotten by the mount (closed for good).
    pub gone: bool,
    /// Its last commit was refused with this errno (until it changes again).
    pub failed: Option<i32>,
    /// Committed and unchanged since: its name names the version it became, so it
    /// answers lookups, kept after the last close, but is not listed.
    pub settled: bool,
    /// A write or truncate failed with this errno (the store failed under it):
    /// part of the content is lost, so the file never becomes a version and every
    /// later write and commit point answers the errno.
    pub broken: Option<i32>,
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
pub struct Handle {
    /// The file it writes (index into `Model::files`).
    pub file: usize,
    /// Its file position.
    pub pos: u64,
    /// Opened with `O_APPEND`.
    pub append: bool,
}

/// What a name in an anchor directory resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Staged(usize),
    Latest,
    Version(MTime),
    Missing,
}

/// What the release of a close does (the kernel sends it after close(2) returns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Release {
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
pub type Histories = BTreeMap<usize, Vec<(MTime, Vec<u8>)>>;

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub histories: Histories,
    pub files: Vec<Staged>,
    pub handles: Vec<Handle>,
    /// The last "now" handed out.
    pub clock: u64,
    /// The real time of each committed "now", learned from the store.
    pub times: BTreeMap<u64, Timestamp>,
    /// What the release of the last step's close does.
    pub release: Release,
    /// How the next commits fail, in order (`None`: it succeeds), as a test that
    /// injects store failures found out; empty: every commit succeeds.
    pub faults: VecDeque<Option<CommitFault>>,
}

/// How a commit failed when the store failed under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitFault {
    /// Storing the content failed with this errno: the file keeps its content (a
    /// later commit, once it changes, stores it all), and answers the errno at its
    /// commit points until it changes.
    Store(i32),
    /// Anchoring the stored content failed with this errno: the file keeps its
    /// content, and answers the errno at its commit points until it changes.
    Anchor(i32),
}

impl Model {
    pub fn tick(&mut self) -> MTime {
        self.clock += 1;
        MTime::Now(self.clock)
    }

    pub fn timestamp(&self, t: MTime) -> Option<Timestamp> {
        match t {
            MTime::Back(ts) => Some(ts),
            MTime::Now(n) => self.times.get(&n).copied(),
        }
    }

    /// The file name of a version at `t` (once its real time is known).
    pub fn version_name(&self, t: MTime, compact: bool) -> Option<String> {
        self.timestamp(t).map(|ts| {
            if compact {
                ts.to_compact()
            } else {
                ts.to_rfc3339()
            }
        })
    }

    /// The versions an anchor directory shows: one per time, the last entry of it.
    pub fn versions(&self, anchor: usize) -> Vec<(MTime, Vec<u8>)> {
        let mut out: Vec<(MTime, Vec<u8>)> = Vec::new();
        for (t, c) in self.histories.get(&anchor).into_iter().flatten() {
            match out.last_mut() {
                Some(last) if last.0 == *t => last.1 = c.clone(),
                _ => out.push((*t, c.clone())),
            }
        }
        out
    }

    pub fn has_version_at(&self, anchor: usize, ts: Timestamp) -> bool {
        self.versions(anchor)
            .iter()
            .any(|(t, _)| self.timestamp(*t) == Some(ts))
    }

    pub fn staged_name(&self, f: &Staged) -> Option<String> {
        match &f.name {
            StagedName::Named(n) => Some(n.clone()),
            StagedName::Now(n) => self.version_name(MTime::Now(*n), false),
            StagedName::OverVersion(_) => None,
        }
    }

    pub fn staged_time(f: &Staged) -> Option<MTime> {
        match &f.name {
            StagedName::Named(n) => name_time(n).map(MTime::Back),
            StagedName::Now(n) => Some(MTime::Now(*n)),
            StagedName::OverVersion(_) => None,
        }
    }

    pub fn staged_scratch(f: &Staged) -> bool {
        matches!(&f.name, StagedName::Named(n) if is_scratch(n))
    }

    /// The listed file being written under `name` in `anchor`.
    pub fn find_staged(&self, anchor: usize, name: &str) -> Option<usize> {
        (0..self.files.len()).find(|&id| {
            let f = &self.files[id];
            f.anchor == anchor && f.listed && self.staged_name(f).as_deref() == Some(name)
        })
    }

    /// What `name` in `anchor` resolves to: `latest` and the versions' names first,
    /// then the files being written (a file written under such a name, committed by
    /// an fsync or renamed there, does not hide it).
    pub fn lookup(&self, anchor: usize, name: &str) -> Node {
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
    pub fn listed_as_staged(&self, id: usize) -> bool {
        let f = &self.files[id];
        f.listed
            && !f.settled
            && match self.staged_name(f) {
                Some(name) => self.lookup(f.anchor, &name) == Node::Staged(id),
                None => true,
            }
    }

    /// The name `latest` links to (empty before the first version).
    pub fn latest_name(&self, anchor: usize) -> String {
        self.versions(anchor)
            .last()
            .and_then(|(t, _)| self.version_name(*t, false))
            .unwrap_or_default()
    }

    /// [`Model::lookup`], following `latest` to the newest version's name.
    pub fn lookup_follow(&self, anchor: usize, name: &str) -> Node {
        match self.lookup(anchor, name) {
            Node::Latest => self.lookup(anchor, &self.latest_name(anchor)),
            node => node,
        }
    }

    /// The store's put rule: a version equal to the one before it in time adds
    /// nothing; a back-dated one is sorted into place (after any of the same time)
    /// and neighbours with equal content fold into the earlier one.
    pub fn put(&mut self, anchor: usize, t: MTime, content: Vec<u8>) {
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
    pub fn commit(&mut self, id: usize, last_close: bool) -> Result<bool, i32> {
        let f = &self.files[id];
        if f.gone {
            return Ok(false);
        }
        if let Some(errno) = f.broken {
            return Err(errno);
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
        let fault = self.faults.pop_front().flatten();
        let f = &mut self.files[id];
        f.dirty = false;
        if let Some(CommitFault::Store(errno)) = fault {
            f.failed = Some(errno);
            f.settled = false;
            return Err(errno);
        }
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
        if let Some(CommitFault::Anchor(errno)) = fault {
            f.failed = Some(errno);
            f.settled = false;
            return Err(errno);
        }
        f.failed = None;
        f.settled = true;
        let (anchor, content) = (f.anchor, f.content.clone());
        self.put(anchor, t, content);
        Ok(true)
    }

    pub fn forget(&mut self, id: usize) {
        self.files[id].gone = true;
        self.files[id].listed = false;
    }

    /// A new file being written, open once; returns its id.
    pub fn new_file(
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
            broken: None,
        });
        self.files.len() - 1
    }

    /// Turns a generated op into a step, or `None` if it has nothing to act on.
    pub fn resolve(&self, op: &Op) -> Option<Step> {
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
    pub fn onto_version(&self, anchor: usize, name: &str) -> bool {
        name == LATEST || name_time(name).is_some_and(|ts| self.has_version_at(anchor, ts))
    }

    /// Applies a step to the model; returns what the mount should answer.
    pub fn apply(&mut self, step: &Step) -> Outcome {
        match step {
            Step::Mkdir(a) => self.mkdir(*a),
            Step::Rmdir(a) => self.rmdir(*a),
            Step::Open { anchor, name, mode } => self.open(*anchor, name, *mode),
            Step::Write { .. } | Step::WriteAt { .. } if self.broken(step).is_some() => {
                Err(self.broken(step).unwrap_or(0))
            }
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

    pub fn mkdir(&mut self, anchor: usize) -> Outcome {
        if self.histories.contains_key(&anchor) {
            return Err(libc::EEXIST);
        }
        self.histories.insert(anchor, Vec::new());
        Ok(None)
    }

    pub fn rmdir(&mut self, anchor: usize) -> Outcome {
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

    pub fn open(&mut self, anchor: usize, name: &str, mode: OpenMode) -> Outcome {
        if !self.histories.contains_key(&anchor) {
            return Err(libc::ENOENT);
        }
        let truncate = mode == OpenMode::CreateTrunc;
        let file = match self.lookup_follow(anchor, name) {
            Node::Staged(id) => {
                let f = &mut self.files[id];
                // A closed file opened again: a new writing, nothing written yet
                // (a truncating open alone then commits at the last close).
                if f.open == 0 {
                    f.written = false;
                }
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

    pub fn write_at(&mut self, handle: usize, pos: u64, data: &[u8]) {
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
    pub fn close(&mut self, id: usize) -> (Result<bool, i32>, Release) {
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

    pub fn rename(&mut self, anchor: usize, from: &str, to: &str) -> Outcome {
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

    pub fn unlink(&mut self, anchor: usize, name: &str) -> Outcome {
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

    /// The errno a write through the step's descriptor answers, if its file is
    /// broken.
    pub fn broken(&self, step: &Step) -> Option<i32> {
        match step {
            Step::Write { handle, .. }
            | Step::WriteAt { handle, .. }
            | Step::SetLen { handle, .. } => self.files[self.handles[*handle].file].broken,
            _ => None,
        }
    }

    /// Whether what the step reads back is known: not for a broken file, whose
    /// content is partly lost.
    pub fn read_back_known(&self, step: &Step) -> bool {
        match step {
            Step::ReadBack(handle) => self.files[self.handles[*handle].file].broken.is_none(),
            _ => true,
        }
    }

    /// A write, `pwrite` or truncate through the step's descriptor failed with
    /// `errno`: the file is broken.
    pub fn break_file(&mut self, step: &Step, errno: i32) {
        if let Step::Write { handle, .. }
        | Step::WriteAt { handle, .. }
        | Step::SetLen { handle, .. } = step
        {
            let id = self.handles[*handle].file;
            let f = &mut self.files[id];
            f.broken = Some(errno);
            f.dirty = false;
            f.settled = false;
        }
    }

    /// The size of the file each open descriptor writes, where known (not for a
    /// broken file).
    pub fn handle_sizes(&self) -> Vec<Option<u64>> {
        self.handles
            .iter()
            .map(|h| {
                let f = &self.files[h.file];
                f.broken.is_none().then_some(f.content.len() as u64)
            })
            .collect()
    }

    /// What a fresh mount of the same store shows: the histories with a version,
    /// nothing being written.
    pub fn remounted(&self) -> Model {
        let mut m = self.clone();
        m.histories.retain(|_, h| !h.is_empty());
        m.files.clear();
        m.handles.clear();
        m.faults.clear();
        m
    }

    /// Reading a version file: the version's content, whatever is being written.
    pub fn read_file(&self, anchor: usize, name: &str) -> Outcome {
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
