//! `sync STORE...`: every store ends with every blob and every anchor entry.
//!
//! Blobs are copied both ways, then `anchor::sync` merges the anchor entries (and
//! the proto-types records) into every store. Stores merged that way hold the same
//! entries but can differ in map bytes (each records types at its own time, and a
//! trie's shape depends on insertion order), so a last step moves every store whose
//! entries and type records are all held by one store's map onto that very map, by
//! compare-and-swap: nothing written meanwhile is lost, and the map refs agree.

use std::collections::BTreeSet;
use std::ffi::OsString;

use anyhow::{bail, Context};

use super::progress;
use super::store::{self, Mode, Opened};
use super::walk::Walker;
use super::SyncArgs;
use crate::anchor::{self, PROTO_TYPES_ANCHOR};
use crate::blob::Ref;
use crate::schema::Map;
use crate::store::{DeletingStore, StoreError};
use crate::timestamp::Timestamp;

/// Rounds of merging before giving up on identical map refs.
const ROUNDS: usize = 3;

/// What a store's anchor map holds, for comparing stores.
struct Summary {
    map_ref: Option<Ref>,
    entries: BTreeSet<(Vec<u8>, Ref, Timestamp)>,
    types: BTreeSet<(Ref, Ref)>,
}

impl Summary {
    fn holds(&self, other: &Summary) -> bool {
        other.entries.is_subset(&self.entries) && other.types.is_subset(&self.types)
    }
}

fn summarize(o: &Opened) -> anyhow::Result<Summary> {
    let s = o.store();
    let ctx = || format!("reading the anchors of store {}", o.label());
    let map_ref = anchor::map_ref(s).with_context(ctx)?;
    let mut out = Summary {
        map_ref,
        entries: BTreeSet::new(),
        types: BTreeSet::new(),
    };
    let Some(root) = map_ref else {
        return Ok(out);
    };
    for (name, payload) in Map::entries(s, &root).with_context(ctx)? {
        let hist = anchor::decode_history(&name, &payload).with_context(ctx)?;
        if name.as_ref() == PROTO_TYPES_ANCHOR {
            if let Some(last) = hist.last() {
                out.types
                    .extend(anchor::type_records(s, &last.r).with_context(ctx)?);
            }
            continue;
        }
        out.entries
            .extend(hist.iter().map(|e| (name.to_vec(), e.r, e.at)));
    }
    Ok(out)
}

/// Copies into `to` every blob the map `root` of `from` reaches that `to` lacks.
fn copy_reachable(from: &Opened, to: &Opened, root: Ref) -> anyhow::Result<()> {
    let mut w = Walker::new(from.store(), false, None, indicatif::ProgressBar::hidden());
    let _ = w.walk(Some(root));
    let ctx = || format!("copying blobs from {} to {}", from.label(), to.label());
    for r in &w.reached {
        if to.store().contains(r).with_context(ctx)? {
            continue;
        }
        match from.store().get(r) {
            Ok(b) => {
                to.store().put_blob(b).with_context(ctx)?;
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e).with_context(ctx),
        }
    }
    to.store().sync().with_context(ctx)
}

/// Installs `target` as the anchor map of `o` if its map is still `seen`.
fn fast_forward(o: &Opened, seen: Option<Ref>, target: Ref) -> anyhow::Result<bool> {
    match o.store().swap_anchor_map(seen, target) {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("updating the anchor map of store {}", o.label())),
    }
}

/// Moves every store onto the map of a store that holds everything the others
/// hold. Returns whether all map refs now agree.
fn converge(opened: &[Opened]) -> anyhow::Result<bool> {
    let sums = opened
        .iter()
        .map(summarize)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if sums.iter().all(|s| s.map_ref == sums[0].map_ref) {
        return Ok(true);
    }
    let Some(best) = (0..sums.len()).find(|&i| sums.iter().all(|o| sums[i].holds(o))) else {
        return Ok(false);
    };
    let Some(target) = sums[best].map_ref else {
        return Ok(false);
    };
    let mut all_moved = true;
    for (i, o) in opened.iter().enumerate() {
        if sums[i].map_ref == Some(target) {
            continue;
        }
        copy_reachable(&opened[best], o, target)?;
        all_moved &= fast_forward(o, sums[i].map_ref, target)?;
    }
    Ok(all_moved)
}

/// Copies every blob of every store into every other; returns how many were copied.
fn copy_all(opened: &[Opened]) -> anyhow::Result<u64> {
    let mut copied = 0;
    for (i, from) in opened.iter().enumerate() {
        for (j, to) in opened.iter().enumerate() {
            if i == j {
                continue;
            }
            let bar = progress::counter("sync: blobs");
            bar.set_message(format!("compared, {} -> {}", from.label(), to.label()));
            copied +=
                anchor::copy_blobs(from.store(), to.store(), &mut |seen| bar.set_position(seen))
                    .with_context(|| {
                        format!("copying blobs from {} to {}", from.label(), to.label())
                    })?;
            bar.finish_and_clear();
        }
    }
    Ok(copied)
}

/// `sync STORE...` (with the `--store` store, if given).
pub(super) fn sync(spec: Option<&OsString>, a: SyncArgs) -> anyhow::Result<()> {
    let mut opened: Vec<Opened> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for s in spec.into_iter().chain(a.stores.iter()) {
        let o = store::open(s, Mode::Create)?;
        if let Some(id) = o.store().identity() {
            if seen.contains(&id) {
                continue; // the same store named twice
            }
            seen.push(id);
        }
        opened.push(o);
    }
    if opened.len() < 2 {
        bail!("sync needs at least two different stores (give them as arguments, or one with --store)");
    }

    let mut copied = copy_all(&opened)?;
    let stores: Vec<&dyn DeletingStore> = opened.iter().map(Opened::store).collect();
    let mut agreed = false;
    for _ in 0..ROUNDS {
        let bar = progress::spinner("sync: merging anchors");
        let merged = anchor::sync(&stores).context("merging anchors");
        bar.finish_and_clear();
        merged?;
        if converge(&opened)? {
            agreed = true;
            break;
        }
    }

    // The merge wrote map nodes into each store: share them too, so every store
    // holds every blob.
    copied += copy_all(&opened)?;

    println!("sync: copied {copied} blobs");
    for o in &opened {
        let r = anchor::map_ref(o.store())
            .with_context(|| format!("reading the anchor map ref of store {}", o.label()))?;
        let shown = r.map_or_else(|| "none".to_string(), |r| r.to_hex());
        println!("{shown}  {}", o.label());
    }
    if !agreed {
        eprintln!(
            "anchorfs: sync: every store holds every entry, but their anchor maps still differ \
             (histories that hold the same versions in different redundant forms, or writes meanwhile)"
        );
    }
    Ok(())
}
