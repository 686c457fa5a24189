//! Copying blobs between stores and merging their anchor maps.

use crate::blob::Ref;
use crate::store::{AnchorStore, Getter, Store};

use super::{all, history, type_records, update, Anchor, AnchorError, PROTO_TYPES_ANCHOR};

/// Copies every blob of `from` missing in `to`, then makes `to` durable. Returns the
/// number of blobs copied.
pub fn copy_blobs<G, S>(from: &G, to: &S, progress: &mut dyn FnMut(u64)) -> Result<u64, AnchorError>
where
    G: Getter + ?Sized,
    S: Store + ?Sized,
{
    let mut copied = 0;
    let mut seen = 0;
    from.list_refs(&Ref::ZERO, &mut |r| {
        seen += 1;
        progress(seen);
        if !to.contains(&r)? {
            to.put(&from.get(&r)?)?;
            copied += 1;
        }
        Ok(true)
    })?;
    to.sync()?;
    Ok(copied)
}

/// Go's Sync: every store ends with every blob and every anchor entry of the others.
/// Proto-types maps are merged member by member instead of by latest entry, so no
/// store loses a type record.
pub fn sync<S: AnchorStore + ?Sized>(stores: &[&S]) -> Result<(), AnchorError> {
    let n = stores.len();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                copy_blobs(stores[i], stores[j], &mut |_| {})?;
            }
        }
    }
    for delta in 1..n {
        for i in 0..n {
            let from = stores[i];
            let to = stores[(i + delta) % n];
            let entries = all(from)?;
            let from_types = history(from, PROTO_TYPES_ANCHOR)?.last().copied();
            let records = match from_types {
                Some(t) => type_records(from, &t.r)?,
                None => Vec::new(),
            };
            update(to, |u| {
                for (name, hist) in &entries {
                    if name.as_slice() == PROTO_TYPES_ANCHOR {
                        continue;
                    }
                    for a in hist {
                        u.put(name, a.r, a.at)?;
                    }
                }
                // Type records are merged member by member, at the source's time, and
                // the reserved entry's time moves to the later of the two, so stores
                // that hold the same records end with the same entry time.
                if let Some(src) = from_types {
                    for (msg, desc) in &records {
                        u.record_type(*msg, *desc, src.at)?;
                    }
                    if let Some(cur) = u.history(PROTO_TYPES_ANCHOR)?.last().copied() {
                        if cur.at < src.at {
                            u.set_history(
                                PROTO_TYPES_ANCHOR,
                                &[Anchor {
                                    r: cur.r,
                                    at: src.at,
                                }],
                            );
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}
