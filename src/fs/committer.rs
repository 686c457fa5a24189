//! The committer: every version this mount makes goes through here, into the one
//! optimistic-lock loop of [`anchor::update`] that every writer (mount, command
//! line, sync) shares. Concurrent commits are grouped: the first to arrive leads
//! and applies every commit queued so far in one anchor map update; the others wait
//! for its result. Also the rule of back-dating: which time a version gets.
//!
//! Locks: only the group commit's `queue` (see [`super::group_commit`]), released
//! while a batch's update runs, so no lock of this part is held across store I/O.

use std::sync::Arc;

use super::group_commit::GroupCommit;
use super::view::AnchorView;
use super::{Cause, SharedStore};
use crate::anchor::{self, Installed};
use crate::blob::{Blob, Ref};
use crate::content::{self, Kind};
use crate::timestamp::Timestamp;

/// One version to anchor: the anchor's name, the content's root and kind, its time,
/// and its content's blob if that is still to be stored.
type Item = (Vec<u8>, Ref, Kind, Timestamp, Option<(Ref, Blob)>);

/// What a batch's anchor map update came to, shared by every commit in it: the
/// map refs it went from and to, or what failed.
pub(crate) type Outcome = Result<Installed, Arc<Cause>>;

/// Anchors versions, grouping concurrent commits into one anchor map update
/// ([`GroupCommit`]).
pub(crate) struct Committer {
    store: SharedStore,
    group: GroupCommit<Item, Outcome>,
}

impl Committer {
    /// A committer into `store`'s anchor map.
    pub fn new(store: SharedStore) -> Committer {
        Committer {
            store,
            group: GroupCommit::default(),
        }
    }

    /// Anchors `anchor` to `root` (content of `kind`) at `at`, durably, storing
    /// `held` (the content's blob, not stored yet) with the update; returns what
    /// failed. A split root gets its type record in the same update.
    pub fn commit(
        &self,
        anchor: &[u8],
        (root, kind): (Ref, Kind),
        at: Timestamp,
        held: Option<(Ref, Blob)>,
    ) -> Outcome {
        let item = (anchor.to_vec(), root, kind, at, held);
        self.group.commit(item, |items| self.apply(&items))
    }

    /// One anchor map update holding every item of a batch.
    fn apply(&self, items: &[Item]) -> Outcome {
        let with: Vec<(Ref, Blob)> = items.iter().filter_map(|i| i.4.clone()).collect();
        let res = anchor::update_with(&*self.store, &with, |u| {
            for (name, root, kind, at, _) in items {
                if *kind == Kind::Split {
                    content::record_split(u, *root, *at)?;
                }
                u.put(name, *root, *at)?;
            }
            Ok(())
        });
        match res {
            Ok(((), installed)) => {
                log::debug!("committed {} version(s) in one update", items.len());
                Ok(installed)
            }
            Err(e) => {
                log::error!("committing {} version(s): {e}", items.len());
                Err(Arc::new(Cause::Anchor(e)))
            }
        }
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
