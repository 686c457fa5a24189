//! What a model-based test looks at after every step, on a real mount or on the
//! filesystem core, and how that is held against the model ([`check`]) and against
//! the other side ([`Normal`]).
//!
//! After every step, for every anchor: the root and anchor directory listings, what
//! `latest` links to and reads, what every version file reads, and the store's
//! history read through the library (its length, times and content); on the core,
//! also the size of the file behind every open descriptor (`fstat`).

#![allow(dead_code)]

use anchorfs::fs::names::parse_version_name;
use anchorfs::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::model::{MTime, Model, ANCHORS, LATEST};

/// A file being written whose name (the time of a rename) is not known yet.
pub const UNKNOWN_TIME_NAME: &str = "<a time name>";

/// A side the steps run on, as a program sees it; every answer is a value or an
/// errno.
pub trait Observe {
    /// The names in the root directory, sorted.
    fn root_names(&self) -> Result<Vec<String>, i32>;
    /// `lstat` of `rel` (a path below the root, `/`-separated).
    fn lstat(&self, rel: &str) -> Result<(), i32>;
    /// The names in directory `rel`, sorted.
    fn names(&self, rel: &str) -> Result<Vec<String>, i32>;
    /// `readlink` of `rel`.
    fn read_link(&self, rel: &str) -> Result<String, i32>;
    /// Everything `rel` reads (following a link).
    fn read(&self, rel: &str) -> Result<Vec<u8>, i32>;
    /// The history of `anchor` in the store, with each version's content.
    fn history(&self, anchor: &[u8]) -> Vec<(Timestamp, Vec<u8>)>;
    /// The size of the file behind each open descriptor, where the side tells.
    fn sizes(&self) -> Vec<Option<u64>> {
        Vec::new()
    }
}

/// What one anchor looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorSight {
    /// `lstat` of its directory.
    pub dir: Result<(), i32>,
    /// Its directory listing, sorted (when the directory is there).
    pub listing: Result<Vec<String>, i32>,
    /// `lstat` of `latest`.
    pub latest: Result<(), i32>,
    /// `readlink` of `latest`.
    pub link: Result<String, i32>,
    /// What `latest` reads, when it is a link (reading a file being written under
    /// that name would open it for writing).
    pub latest_reads: Option<Result<Vec<u8>, i32>>,
    /// Each version file the history has a time for (by its name), and what it reads.
    pub versions: Vec<(String, Result<Vec<u8>, i32>)>,
    /// The history in the store.
    pub history: Vec<(Timestamp, Vec<u8>)>,
}

/// Everything looked at after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The root directory's listing.
    pub root: Result<Vec<String>, i32>,
    /// Each of [`ANCHORS`].
    pub anchors: Vec<AnchorSight>,
    /// The size behind each open descriptor, where known.
    pub sizes: Vec<Option<u64>>,
}

/// Looks at everything on `side`.
pub fn observe(side: &dyn Observe) -> Observation {
    let anchors = ANCHORS
        .iter()
        .map(|(name, dir)| {
            let history = side.history(name);
            let at = |n: &str| format!("{dir}/{n}");
            let present = side.lstat(dir);
            if present.is_err() {
                return AnchorSight {
                    dir: present,
                    listing: Err(0),
                    latest: Err(0),
                    link: Err(0),
                    latest_reads: None,
                    versions: Vec::new(),
                    history,
                };
            }
            let link = side.read_link(&at(LATEST));
            let latest_reads = link.is_ok().then(|| side.read(&at(LATEST)));
            let mut times: Vec<Timestamp> = history.iter().map(|(t, _)| *t).collect();
            times.dedup();
            let versions = times
                .iter()
                .map(|t| {
                    let name = t.to_rfc3339();
                    let reads = side.read(&at(&name));
                    (name, reads)
                })
                .collect();
            AnchorSight {
                dir: present,
                listing: side.names(dir),
                latest: side.lstat(&at(LATEST)),
                link,
                latest_reads,
                versions,
                history,
            }
        })
        .collect();
    Observation {
        root: side.root_names(),
        anchors,
        sizes: side.sizes(),
    }
}

/// Holds an observation against the model; learns the real times of commits made
/// at "now". A read through the side that fails with one of `tolerated` (the errno
/// of a store failure being injected) is let pass.
pub fn check(
    model: &mut Model,
    obs: &Observation,
    start: Timestamp,
    tolerated: &[i32],
) -> Result<(), TestCaseError> {
    let mut dirs: Vec<String> = model
        .histories
        .keys()
        .map(|a| ANCHORS[*a].1.to_string())
        .collect();
    dirs.push(".anchorfs".into());
    dirs.sort();
    prop_assert_eq!(&obs.root, &Ok(dirs), "the root directory");
    for (anchor, sight) in obs.anchors.iter().enumerate() {
        let with_anchor =
            |e: TestCaseError| TestCaseError::fail(format!("anchor {:?}: {e}", ANCHORS[anchor].1));
        check_history(model, anchor, &sight.history, start).map_err(with_anchor)?;
        check_dir(model, anchor, sight, tolerated).map_err(with_anchor)?;
    }
    for (h, (got, want)) in obs.sizes.iter().zip(model.handle_sizes()).enumerate() {
        if let (Some(got), Some(want)) = (got, want) {
            prop_assert_eq!(*got, want, "the size of the file open as descriptor {}", h);
        }
    }
    Ok(())
}

/// The store's history is the model's; learns the real times of commits made at
/// "now".
fn check_history(
    model: &mut Model,
    anchor: usize,
    got: &[(Timestamp, Vec<u8>)],
    start: Timestamp,
) -> Result<(), TestCaseError> {
    let want = model.histories.get(&anchor).cloned().unwrap_or_default();
    let got_contents: Vec<&[u8]> = got.iter().map(|(_, c)| c.as_slice()).collect();
    let want_contents: Vec<&[u8]> = want.iter().map(|(_, c)| c.as_slice()).collect();
    prop_assert_eq!(got_contents, want_contents, "history contents in the store");
    for ((at, _), (t, _)) in got.iter().zip(&want) {
        match *t {
            MTime::Back(ts) => prop_assert_eq!(*at, ts, "a back-dated version's time"),
            MTime::Now(n) => {
                prop_assert!(*at >= start, "a commit time {:?} from the past", at);
                let known = *model.times.entry(n).or_insert(*at);
                prop_assert_eq!(*at, known, "a version's time changed");
            }
        }
    }
    Ok(())
}

/// Whether `r` is a read failure let pass.
fn tolerated_failure<T>(r: &Result<T, i32>, tolerated: &[i32]) -> bool {
    matches!(r, Err(e) if tolerated.contains(e))
}

/// The anchor directory lists the versions, `latest` and the files being written;
/// `latest` and every version read as the model says.
fn check_dir(
    model: &Model,
    anchor: usize,
    sight: &AnchorSight,
    tolerated: &[i32],
) -> Result<(), TestCaseError> {
    if !model.histories.contains_key(&anchor) {
        prop_assert_eq!(&sight.dir, &Err(libc::ENOENT), "no directory");
        return Ok(());
    }
    prop_assert_eq!(&sight.dir, &Ok(()), "the directory");
    check_listing(model, anchor, sight)?;
    let versions = model.versions(anchor);
    match versions.last() {
        Some((t, content)) => {
            let target = model.version_name(*t, false).expect("a known time");
            prop_assert_eq!(&sight.link, &Ok(target), "where latest links");
            let reads = sight.latest_reads.clone().unwrap_or(Err(0));
            if !tolerated_failure(&reads, tolerated) {
                prop_assert_eq!(reads, Ok(content.clone()), "what latest reads");
            }
        }
        // A file being written may be called `latest` before the first version.
        None if model.find_staged(anchor, LATEST).is_some() => {}
        None => prop_assert_eq!(
            &sight.latest,
            &Err(libc::ENOENT),
            "no latest before the first version"
        ),
    }
    prop_assert_eq!(
        sight.versions.len(),
        versions.len(),
        "the number of version times"
    );
    for ((t, content), (name, reads)) in versions.iter().zip(&sight.versions) {
        let want = model.version_name(*t, false).expect("a known time");
        prop_assert_eq!(name, &want, "a version's name");
        if !tolerated_failure(reads, tolerated) {
            prop_assert_eq!(reads, &Ok(content.clone()), "what version {} reads", name);
        }
    }
    Ok(())
}

/// The directory lists one file per version time, `latest` once there is a version,
/// and the files being written (once each: not those under a name that history
/// shows).
fn check_listing(model: &Model, anchor: usize, sight: &AnchorSight) -> Result<(), TestCaseError> {
    let versions = model.versions(anchor);
    let mut want: Vec<String> = versions
        .iter()
        .map(|(t, _)| model.version_name(*t, false).expect("a known time"))
        .collect();
    if !versions.is_empty() {
        want.push(LATEST.into());
    }
    for (id, f) in model.files.iter().enumerate() {
        if f.anchor == anchor && model.listed_as_staged(id) {
            want.push(
                model
                    .staged_name(f)
                    .unwrap_or_else(|| UNKNOWN_TIME_NAME.into()),
            );
        }
    }
    want.sort();
    let got = sight
        .listing
        .as_ref()
        .map_err(|e| TestCaseError::fail(format!("listing: errno {e}")))?;
    let mut got: Vec<String> = got
        .iter()
        .map(|n| {
            // A file being written under the time of a rename: its exact name is
            // known only once it is committed.
            if !want.contains(n) && parse_version_name(n.as_bytes()).is_some() {
                UNKNOWN_TIME_NAME.into()
            } else {
                n.clone()
            }
        })
        .collect();
    got.sort();
    prop_assert_eq!(got, want, "the listing");
    Ok(())
}

/// An observation with every commit time replaced by the model's name for it (the
/// `n`th "now"), so that two sides, which commit at different real times, compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normal(Observation);

impl Normal {
    /// `obs` in the terms of `model`, which has learned that side's commit times
    /// (a time since `start` that is no commit's yet is a file's, named by the time
    /// of a rename). What only one side tells (descriptor sizes) is left out.
    pub fn new(obs: &Observation, model: &Model, start: Timestamp) -> Normal {
        let name = |n: &str| -> String {
            let Some(ts) = parse_version_name(n.as_bytes()) else {
                return n.to_string();
            };
            match model.times.iter().find(|(_, t)| **t == ts) {
                Some((k, _)) => format!("<now {k}>"),
                None if ts >= start => UNKNOWN_TIME_NAME.to_string(),
                None => n.to_string(),
            }
        };
        // Commit times become the epoch plus the model's number for them.
        let time = |ts: Timestamp| -> Timestamp {
            match model.times.iter().find(|(_, t)| **t == ts) {
                Some((k, _)) => Timestamp::new(*k as i64, 0).unwrap_or(ts),
                None => ts,
            }
        };
        let names = |l: &Result<Vec<String>, i32>| {
            l.as_ref()
                .map(|v| {
                    let mut v: Vec<String> = v.iter().map(|n| name(n)).collect();
                    v.sort();
                    v
                })
                .map_err(|e| *e)
        };
        let anchors = obs
            .anchors
            .iter()
            .map(|a| AnchorSight {
                dir: a.dir,
                listing: names(&a.listing),
                latest: a.latest,
                link: a.link.as_ref().map(|l| name(l)).map_err(|e| *e),
                latest_reads: a.latest_reads.clone(),
                versions: a
                    .versions
                    .iter()
                    .map(|(n, r)| (name(n), r.clone()))
                    .collect(),
                history: a
                    .history
                    .iter()
                    .map(|(t, c)| (time(*t), c.clone()))
                    .collect(),
            })
            .collect();
        Normal(Observation {
            root: obs.root.clone(),
            anchors,
            sizes: Vec::new(),
        })
    }
}
