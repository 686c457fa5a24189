//! Commit points: a close (flush) or fsync of a file being written, the last
//! close of a handle (release), and a look at an anchor that finds files flushed
//! before any write. Each commit stores the staged file's bytes and anchors them
//! through the committer, then refreshes the namespace. Methods of the facade
//! [`AnchorFs`].
//!
//! A commit of a file holds its `gate` throughout (storing, the group commit, the
//! refresh after it: see the lock order in the [module doc](super)), and the file's
//! own lock while its bytes are stored, never during the group commit, which may
//! wait for other files.

use super::committer::version_time;
use super::staging::CommitState;
use super::{names, AnchorFs, Fh, FsError, StagedId};
use crate::anchor::{self, Installed};

impl AnchorFs {
    /// Commits the staged file `id` if it has changes and a normal name: stores the
    /// content and anchors it. Returns the errno of a failed commit.
    pub(super) fn commit(&self, id: StagedId, last_close: bool) -> Result<(), FsError> {
        let Some(f) = self.staging.get(id) else {
            return Ok(());
        };
        // One commit of a file at a time: a second one (a flush racing an fsync)
        // waits, so it returns only once the version it reports is durable.
        let gate = f.lock().gate.clone();
        let _gate = gate.lock();
        let mut g = f.lock();
        if let Some(e) = g.broken_err() {
            return Err(e);
        }
        if !g.dirty || g.scratch() || g.unlinked || (!g.written && !last_close) {
            return match &g.state {
                CommitState::Failed(e) => Err(FsError::EarlierCommit(Box::new(e.clone()))),
                _ => Ok(()),
            };
        }
        g.state = CommitState::Committing;
        let snap = self.snapshot();
        let view = snap.by_name(&g.anchor);
        let at = version_time(&g.name, view.map(|v| &**v));
        log::debug!(
            "commit: file {id} ({}/{}) at {at}{}",
            names::escape(&g.anchor).escape_ascii(),
            g.name.escape_ascii(),
            if last_close { " (last close)" } else { "" }
        );
        let anchor_name = g.anchor.clone();
        // Writes from here on make the file dirty again, for the next commit.
        g.dirty = false;
        let stored = self.staging.stage_data(&mut g);
        let (root, staged) = match stored {
            Ok(staged) => {
                let (root, kind, len, _) = staged;
                self.note_meta(&root, kind, len);
                ((root, kind), staged)
            }
            Err(e) => {
                // The content could not be stored: nothing becomes a version, not
                // even at the last close, and the error stays on the file until it
                // changes. The file keeps its bytes for the next commit (or, if they
                // are gone, `store_data` broke it).
                g.state = CommitState::Failed(e.clone());
                g.dirty = false;
                log::error!(
                    "storing {}/{}: {e}",
                    names::escape(&anchor_name).escape_ascii(),
                    g.name.escape_ascii()
                );
                return Err(e);
            }
        };
        let moved =
            view.and_then(|v| anchor::moved_by_put(&v.versions, anchor::Anchor { r: root.0, at }));
        if moved.is_some() {
            // The store keeps one entry for equal neighbours, the earlier: anchoring
            // this content before the next version, which has it too, would move that
            // version. History does not change; the content is there already.
            g.state = CommitState::Failed(FsError::Exists);
            log::warn!(
                "{}/{}: a back-dated version with the content of the version after it \
                 would replace that version; not committed",
                names::escape(&anchor_name).escape_ascii(),
                g.name.escape_ascii()
            );
            return Err(FsError::Exists);
        }
        // The group commit may wait for other handles: do not hold this file's lock.
        drop(g);
        let res = self
            .committer
            .commit(&anchor_name, root, at, staged.3.clone());
        let mut g = f.lock();
        match res {
            Ok(installed) => {
                self.staging.committed_data(&mut g, &staged);
                if matches!(g.state, CommitState::Committing) {
                    g.state = CommitState::Committed(root.0);
                }
                g.committed_at = Some(at);
                let mode = g.mode;
                drop(g);
                // A new version with the default mode needs no record (a version
                // without one shows the default), unless one is there to replace.
                if mode != super::modes::DEFAULT_FILE_MODE
                    || self.recorded_mode(&anchor_name, at).is_some()
                {
                    self.record_mode(&anchor_name, at, mode);
                }
                // A directory made by `mkdir` stays until the refresh shows its
                // anchor (which a failed refresh does not).
                self.after_commit(Some(installed));
                Ok(())
            }
            Err(cause) => {
                let e = FsError::from_update(
                    format!(
                        "committing a version of {}",
                        names::escape(&anchor_name).escape_ascii()
                    ),
                    cause,
                );
                g.state = CommitState::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// After a commit: the new version is listed at once. If the anchors cannot be
    /// read now, the namespace stays stale and the next look at them reads them
    /// again (see [`refresh_if_stale`](Self::refresh_if_stale)).
    pub(super) fn after_commit(&self, installed: Option<Installed>) {
        match self.ns.refresh_after(installed) {
            Ok(inv) => self.invalidate(inv),
            Err(e) => log::warn!("re-reading anchors after a commit: {e}"),
        }
    }

    /// Before a look at the anchors (the root, an anchor directory, `latest`): if
    /// the last re-read of them failed, reads them again, so a version committed
    /// meanwhile is shown; if that fails too, the look answers from what is known.
    pub(super) fn refresh_if_stale(&self) {
        if !self.ns.is_stale() {
            return;
        }
        match self.refresh() {
            Ok(inv) => self.invalidate(inv),
            Err(e) => log::debug!("re-reading stale anchors: {e}"),
        }
    }

    /// Close of a descriptor (`owner`: the closing process) or fsync (`None`) of an open
    /// file: commits it (see `CommitState`). A close from another process's
    /// descriptor table than the writer's does not commit.
    pub fn flush(&self, fh: Fh, owner: Option<u32>) -> Result<(), FsError> {
        let owner = owner.map(|thread| self.processes.process_of(thread));
        let Some(id) = self.handles.staged_of(fh)? else {
            return Ok(());
        };
        if let (Some(o), Some(f)) = (owner, self.staging.get(id)) {
            if f.lock().writer_owner.is_some_and(|w| w != o) {
                log::debug!("flush of file {id} from another process: not a commit point");
                return Ok(());
            }
        }
        // A close (not an fsync) of a file not written yet, by the process that
        // opened it (not a forked child's exec closing what it inherited).
        let opener = self.handles.opener_of(fh);
        if owner.is_some() && (opener.is_none() || opener == owner) {
            self.note_unwritten_flush(id, fh);
        }
        self.commit(id, false)
    }

    /// A flush of a file not written yet (a new file, or one a truncating open
    /// emptied) commits nothing: a shell's `>` closes a duplicate of the descriptor
    /// before its command writes. The file is remembered for its anchor, so that if
    /// its last close has not arrived when the anchor is looked at next (the kernel
    /// sends it after close(2) returns), that look commits it first: `: > f` then
    /// `wc -c f`, or a truncating open closed and opened again, sees the empty file.
    pub(super) fn note_unwritten_flush(&self, id: StagedId, fh: Fh) {
        let Some(f) = self.staging.get(id) else {
            return;
        };
        let mut g = f.lock();
        if !g.written && g.dirty && !g.scratch() && !g.unlinked && g.broken.is_none() {
            if !g.flushed.contains(&fh) {
                g.flushed.push(fh);
            }
            let anchor = g.anchor.clone();
            drop(g);
            let mut waiting = self.staging.flushed_unwritten.lock();
            let ids = waiting.entry(anchor).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }

    /// Commits the files of `anchor` that were flushed unwritten and whose last
    /// close is still to come (see [`note_unwritten_flush`](Self::note_unwritten_flush)).
    pub(crate) fn settle_unwritten(&self, anchor: &[u8]) {
        let ids = {
            let waiting = self.staging.flushed_unwritten.lock();
            if waiting.is_empty() {
                return;
            }
            waiting.get(anchor).cloned().unwrap_or_default()
        };
        for &id in &ids {
            let Some(f) = self.staging.get(id) else {
                continue;
            };
            // Closed by every descriptor: only the releases are still to come.
            let pending = {
                let g = f.lock();
                !g.written
                    && !g.scratch()
                    && !g.unlinked
                    && g.open > 0
                    && g.flushed.len() as u32 >= g.open
            };
            // Even when another look is committing it already: the commit waits for
            // that one (one commit of a file at a time), so this look sees it too.
            if pending {
                if let Err(e) = self.commit(id, true) {
                    log::warn!("committing an unwritten file before a look at its anchor: {e}");
                }
            }
        }
        let mut waiting = self.staging.flushed_unwritten.lock();
        if let Some(left) = waiting.get_mut(anchor) {
            left.retain(|id| !ids.contains(id));
            if left.is_empty() {
                waiting.remove(anchor);
            }
        }
    }

    /// The last close of a handle: commits what no flush committed (an untouched new
    /// file becomes an empty version here).
    pub(crate) fn release_write(&self, id: StagedId, fh: Fh) {
        let Some(f) = self.staging.get(id) else {
            return;
        };
        // The handle stays among the flushed ones until it is gone, so a look at
        // the anchor meanwhile still sees a commit to wait for.
        loop {
            let mut g = f.lock();
            if g.open > 1 {
                g.open -= 1;
                g.flushed.retain(|&x| x != fh);
                return;
            }
            // The last close. A rename may give the file a committable name at any
            // moment until `open` drops to 0 (after which the rename commits it
            // itself), so decide under the lock: commit and look again, or let go.
            let committable = g.dirty && !g.scratch() && !g.unlinked && g.broken.is_none();
            if !committable && matches!(g.state, CommitState::Committing) {
                // Another commit of this state is under way (a look at the anchor
                // committing a file flushed unwritten): whether the name is kept
                // depends on how it ends, so wait for it at the gate, then look again.
                let gate = g.gate.clone();
                drop(g);
                drop(gate.lock());
                continue;
            }
            if !committable {
                g.open = 0;
                g.flushed.clear();
                // A scratch file stays until renamed or unlinked; a committed file
                // keeps naming the version it became; anything else is done.
                let keep = !g.unlinked
                    && (g.scratch()
                        || (g.settled().is_some()
                            && self.staging.is_named(id, &g.anchor, &g.name)));
                let settled = keep && !g.scratch();
                let over = g.over_version.take();
                drop(g);
                if let Some(ino) = over {
                    let mut in_place = self.staging.in_place.lock();
                    if in_place.get(&ino) == Some(&id) {
                        in_place.remove(&ino);
                    }
                }
                if settled {
                    self.staging.settle(id);
                } else if !keep {
                    self.staging.remove(id);
                }
                if let Some(ino) = over {
                    // A truncating open and the writes set the inode's size in the
                    // kernel: have it ask again.
                    self.invalidate(super::Invalidations { inodes: vec![ino] });
                }
                return;
            }
            drop(g);
            if let Err(e) = self.commit(id, true) {
                log::error!("committing at last close: {e}");
            }
        }
    }
}
