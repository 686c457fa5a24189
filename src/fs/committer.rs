//! The committer: every version this mount makes goes through here, into the one
//! optimistic-lock loop of [`anchor::update`] that every writer (mount, command
//! line, sync) shares. Concurrent commits are grouped: the first to arrive leads
//! and applies every commit queued so far in one anchor map update; the others wait
//! for its result. Also the rule of back-dating: which time a version gets.
//!
//! Locks, in order: `queue` (released while waiting on `done`, and during the
//! update itself, so no lock of this part is held across store I/O), then a
//! pending commit's own (held to read or set its result).

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::view::AnchorView;
use super::{Cause, SharedStore};
use crate::anchor;
use crate::blob::Ref;
use crate::content::{self, Kind};
use crate::timestamp::Timestamp;

/// One commit waiting for the group's anchor map update.
struct Pending {
    anchor: Vec<u8>,
    root: Ref,
    kind: Kind,
    at: Timestamp,
    result: Option<Result<(), Arc<Cause>>>,
}

/// Groups concurrent commits into one anchor map update: the first committer to
/// arrive leads, taking every commit queued so far; the others wait for its result.
pub(crate) struct Committer {
    store: SharedStore,
    queue: Mutex<CommitQueue>,
    done: Condvar,
}

#[derive(Default)]
struct CommitQueue {
    waiting: Vec<Arc<Mutex<Pending>>>,
    leading: bool,
}

impl Committer {
    /// A committer into `store`'s anchor map.
    pub fn new(store: SharedStore) -> Committer {
        Committer {
            store,
            queue: Mutex::new(CommitQueue::default()),
            done: Condvar::new(),
        }
    }

    /// Anchors `anchor` to `root` (content of `kind`) at `at`, durably; returns what
    /// failed. A split root gets its type record in the same update.
    pub fn commit(
        &self,
        anchor: &[u8],
        (root, kind): (Ref, Kind),
        at: Timestamp,
    ) -> Result<(), Arc<Cause>> {
        let me = Arc::new(Mutex::new(Pending {
            anchor: anchor.to_vec(),
            root,
            kind,
            at,
            result: None,
        }));
        let mut q = self.queue.lock();
        q.waiting.push(me.clone());
        loop {
            if let Some(r) = me.lock().result.clone() {
                return r;
            }
            if !q.leading {
                break;
            }
            self.done.wait(&mut q);
        }
        // Lead: take every waiting commit and apply them in one update.
        q.leading = true;
        let batch: Vec<Arc<Mutex<Pending>>> = std::mem::take(&mut q.waiting);
        drop(q);
        let items: Vec<(Vec<u8>, Ref, Kind, Timestamp)> = batch
            .iter()
            .map(|p| {
                let p = p.lock();
                (p.anchor.clone(), p.root, p.kind, p.at)
            })
            .collect();
        let res = anchor::update(&*self.store, |u| {
            for (name, root, kind, at) in &items {
                if *kind == Kind::Split {
                    content::record_split(u, *root, *at)?;
                }
                u.put(name, *root, *at)?;
            }
            Ok(())
        });
        let outcome = res.map_err(|e| {
            log::error!("committing {} version(s): {e}", items.len());
            Arc::new(Cause::Anchor(e))
        });
        if outcome.is_ok() {
            log::debug!("committed {} version(s) in one update", items.len());
        }
        for p in &batch {
            p.lock().result = Some(outcome.clone());
        }
        let mut q = self.queue.lock();
        q.leading = false;
        self.done.notify_all();
        drop(q);
        // The leader's own commit is in the batch it took (a commit taken by another
        // leader has its result before that leader lets go).
        outcome
    }
}

/// The time a file's name gives its version: any RFC 3339 time, or the compact form.
pub(crate) fn name_time(name: &[u8]) -> Option<Timestamp> {
    std::str::from_utf8(name)
        .ok()
        .and_then(|t| Timestamp::parse(t).ok())
}

/// The time a commit of the file `name` gives its version, `view` being its
/// anchor now: a time-named file back-dates its first commit; once a version of
/// that time exists (a commit of this file before, or another writer), it never
/// changes, and later commits are new versions at their commit time.
pub(crate) fn version_time(name: &[u8], view: Option<&AnchorView>) -> Timestamp {
    match name_time(name) {
        Some(t) if view.is_none_or(|v| v.version(t).is_none()) => t,
        _ => Timestamp::now(),
    }
}
