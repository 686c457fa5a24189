//! `gc` and `fsck`: the store's upkeep.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use indicatif::HumanBytes;

use super::progress;
use super::store::{self, Mode, Opened};
use super::walk::{Known, Problem, Walker};
use super::GcArgs;
use crate::anchor;
use crate::blob::Ref;
use crate::store::StoreError;

/// How many times gc walks a map that moved under it before giving up. A rewalk reads
/// only the nodes new since the last one (milliseconds), so under writers that
/// commit without pause it takes many tries to find the map standing still.
const MAX_REWALKS: usize = 1000;

/// Every ref in the store, in order.
fn all_refs(opened: &Opened, what: &str) -> anyhow::Result<Vec<Ref>> {
    let bar = progress::counter(what);
    bar.set_message("blobs listed");
    let mut refs = Vec::new();
    opened
        .store()
        .list_refs(&Ref::ZERO, &mut |r| {
            refs.push(r);
            bar.inc(1);
            Ok(true)
        })
        .with_context(|| format!("listing the blobs of store {}", opened.label()))?;
    bar.finish_and_clear();
    Ok(refs)
}

/// Whether blob `r` was written within `grace` of now (or in the future). A blob
/// that is gone counts as young: there is nothing to delete.
fn is_young(opened: &Opened, r: &Ref, grace: Duration) -> anyhow::Result<bool> {
    match opened.store().written_at(r) {
        Ok(t) => Ok(match SystemTime::now().duration_since(t) {
            Ok(age) => age < grace,
            Err(_) => true,
        }),
        Err(StoreError::NotFound(_)) => Ok(true),
        Err(e) => {
            Err(e).with_context(|| format!("looking up blob {r} in store {}", opened.label()))
        }
    }
}

fn walk_failed(opened: &Opened, w: &Walker<'_>) -> anyhow::Error {
    let why = w
        .problems
        .last()
        .map_or_else(|| "the walk stopped".to_string(), ToString::to_string);
    anyhow::anyhow!(
        "gc: store {} is damaged, so what anchors reach is not known; nothing was deleted (run fsck): {why}",
        opened.label()
    )
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 if d.is_zero() => "0s".into(),
        0 => format!("{}ms", d.as_millis()),
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// `gc [--dry-run] [--grace DURATION]`.
pub(super) fn gc(spec: Option<&OsString>, a: GcArgs) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let s = opened.store();
    let label = opened.label().to_string();
    let map_ref_of = || {
        anchor::map_ref(s).with_context(|| format!("reading the anchor map ref of store {label}"))
    };

    let bar = progress::counter("gc: walking");
    bar.set_message("nodes read");
    let mut walker = Walker::new(s, true, None, bar.clone());
    let mut walked = map_ref_of()?;
    if walker.walk(walked).is_err() {
        bar.finish_and_clear();
        return Err(walk_failed(&opened, &walker));
    }
    bar.finish_and_clear();

    let refs = all_refs(&opened, "gc: listing")?;
    let total = refs.len();
    let mut young = 0usize;
    let mut reachable = 0usize;
    let mut candidates = Vec::new();
    let bar = progress::items("gc: ages", total as u64);
    for r in refs {
        bar.inc(1);
        if walker.reached.contains(&r) {
            reachable += 1;
            continue;
        }
        if is_young(&opened, &r, a.grace)? {
            young += 1;
        } else {
            candidates.push(r);
        }
    }
    bar.finish_and_clear();

    // Writers may have anchored something meanwhile: walk the new map too (only
    // its new nodes are read) until it stands still.
    for _ in 0..MAX_REWALKS {
        let now = map_ref_of()?;
        if now == walked {
            break;
        }
        if walker.walk(now).is_err() {
            return Err(walk_failed(&opened, &walker));
        }
        walked = now;
        let before = candidates.len();
        candidates.retain(|r| !walker.reached.contains(r));
        reachable += before - candidates.len();
    }
    if map_ref_of()? != walked {
        bail!("gc: the anchor map of store {label} kept changing; nothing was deleted (try again)");
    }

    let stdout = io::stdout();
    let mut out = stdout.lock();
    let (mut count, mut bytes) = (0u64, 0u64);
    let bar = progress::items(
        if a.dry_run {
            "gc: sizes"
        } else {
            "gc: deleting"
        },
        candidates.len() as u64,
    );
    for r in &candidates {
        bar.inc(1);
        // A blob rewritten since it was looked at is young again.
        if is_young(&opened, r, a.grace)? {
            young += 1;
            continue;
        }
        let size = match opened.store().blob_size(r) {
            Ok(n) => n,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("looking up blob {r} in store {label}"))
            }
        };
        if a.dry_run {
            writeln!(out, "{r}  {size}").context("writing to stdout")?;
        } else if !s
            .delete(r)
            .with_context(|| format!("deleting blob {r} from store {label}"))?
        {
            continue;
        }
        count += 1;
        bytes += size;
    }
    bar.finish_and_clear();
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    writeln!(
        out,
        "gc: {verb} {count} blobs, {bytes} bytes ({}); kept {} reachable and {young} younger than {} of {total} blobs",
        HumanBytes(bytes),
        reachable,
        human_duration(a.grace),
    )
    .context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

/// `fsck`: every blob against its ref, then every ref the anchors reach present and
/// well-formed. Lists each problem and fails if there is any.
pub(super) fn fsck(spec: Option<&OsString>) -> anyhow::Result<()> {
    let opened = store::open_given(spec, Mode::Existing)?;
    let s = opened.store();
    let label = opened.label().to_string();

    let refs = all_refs(&opened, "fsck: listing")?;
    let bar = progress::items("fsck: blobs", refs.len() as u64);
    let mut known = Known::default();
    let mut failed = Vec::new();
    let mut total_bytes = 0u64;
    for r in &refs {
        bar.inc(1);
        // Hashed as it is read: no blob is held whole.
        match s.check(r) {
            Ok(n) => {
                total_bytes += n;
                known.sizes.insert(*r, n);
            }
            Err(StoreError::Damaged(_)) => {
                known
                    .sizes
                    .insert(*r, opened.store().blob_size(r).unwrap_or(0));
                known.damaged.insert(*r);
            }
            Err(e @ StoreError::Refused { .. }) => {
                known.sizes.insert(*r, 0);
                known.refused.insert(*r, e.to_string());
            }
            Err(StoreError::NotFound(_)) => {} // deleted since it was listed
            Err(e) => failed.push(Problem::Failed {
                why: e.to_string(),
                via: format!("blob {r}"),
            }),
        }
    }
    bar.finish_and_clear();

    let bar = progress::counter("fsck: walking");
    bar.set_message("nodes read");
    let mut walker = Walker::new(s, false, Some(&known), bar.clone());
    match anchor::map_ref(s) {
        Ok(root) => {
            // A lenient walk records problems instead of stopping.
            let _ = walker.walk(root);
        }
        Err(e) => failed.push(Problem::Failed {
            why: e.to_string(),
            via: "the anchor map ref".into(),
        }),
    }
    bar.finish_and_clear();

    // Each damaged or missing ref once, with what reaches it where known.
    let mut problems: Vec<Problem> = Vec::new();
    let mut seen: HashSet<(u8, Ref)> = HashSet::new();
    let mut others: HashSet<Problem> = HashSet::new();
    let via = || "no anchor reaches it".to_string();
    let mut damaged: Vec<Problem> = known
        .damaged
        .iter()
        .map(|r| Problem::Damaged { r: *r, via: via() })
        .chain(known.refused.iter().map(|(r, why)| Problem::Refused {
            r: *r,
            why: why.clone(),
            via: via(),
        }))
        .collect();
    damaged.sort_by_key(Problem::r);
    let all = walker.problems.iter().cloned().chain(damaged).chain(failed);
    for p in all {
        let key = match (&p, p.r()) {
            (Problem::Missing { .. }, Some(r)) => Some((0, r)),
            (Problem::Damaged { .. } | Problem::Refused { .. }, Some(r)) => Some((1, r)),
            _ => None,
        };
        let fresh = match key {
            Some(k) => seen.insert(k),
            None => others.insert(p.clone()),
        };
        if fresh {
            problems.push(p);
        }
    }

    let stdout = io::stdout();
    let mut out = stdout.lock();
    for p in &problems {
        writeln!(out, "{p}").context("writing to stdout")?;
    }
    let reachable = walker.reached.len();
    if problems.is_empty() {
        writeln!(
            out,
            "fsck: ok: {} blobs ({}) checked, {reachable} refs reachable",
            refs.len(),
            HumanBytes(total_bytes)
        )
        .context("writing to stdout")?;
        return out.flush().context("writing to stdout");
    }
    out.flush().context("writing to stdout")?;
    bail!(
        "fsck: store {label} has {} problem(s) ({} blobs checked, {reachable} refs reachable)",
        problems.len(),
        refs.len()
    )
}
