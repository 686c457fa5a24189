//! The one optimistic-lock loop, [`update`], and the writes built on it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use crate::blob::{Blob, Ref};
use crate::schema::{Map, Set};
use crate::store::{AnchorStore, Store, StoreError};
use crate::timestamp::Timestamp;

use super::history::{decode_history, encode_history, put_into_payload, NewPayload};
use super::made::Made;
use super::{map_ref, Anchor, AnchorError, MAX_ATTEMPTS, PROTO_TYPES_ANCHOR};

/// One attempt at changing the anchor map: a view of the map at one ref that
/// collects changes; [`update`] installs them.
pub struct Update<'a, S: ?Sized> {
    store: &'a S,
    /// What this attempt writes to the map (nodes, history parts), held back for
    /// the swap.
    made: Made<'a, S>,
    base: Ref,
    /// Changed histories, by name: the new payloads (`None`: the name goes).
    pending: BTreeMap<Vec<u8>, Option<NewPayload>>,
}

impl<'a, S: Store + ?Sized> Update<'a, S> {
    fn new(store: &'a S, map_ref: Ref) -> Self {
        Update {
            store,
            made: Made::new(store),
            base: map_ref,
            pending: BTreeMap::new(),
        }
    }

    /// The store being updated.
    pub fn store(&self) -> &'a S {
        self.store
    }

    /// The map ref this attempt started from (zero if there was no map).
    pub fn base(&self) -> Ref {
        self.base
    }

    fn root(&self) -> Ref {
        if self.base.is_zero() {
            Map::empty_ref()
        } else {
            self.base
        }
    }

    fn payload(&self, name: &[u8]) -> Result<Option<Bytes>, AnchorError> {
        if let Some(p) = self.pending.get(name) {
            return Ok(p.as_ref().map(NewPayload::joined));
        }
        if self.base.is_zero() {
            return Ok(None);
        }
        Ok(Map::lookup(&self.made, &self.base, name)?)
    }

    /// The history of `name` as this update sees it.
    pub fn history(&self, name: &[u8]) -> Result<Vec<Anchor>, AnchorError> {
        match self.payload(name)? {
            Some(p) => decode_history(name, &p),
            None => Ok(Vec::new()),
        }
    }

    /// Go's Put: adds (`r`, `at`) to `name`'s history. Returns whether it changed.
    pub fn put(&mut self, name: &[u8], r: Ref, at: Timestamp) -> Result<bool, AnchorError> {
        let old = self.payload(name)?;
        match put_into_payload(name, old, Anchor { r, at })? {
            Some(p) => {
                self.pending.insert(name.to_vec(), Some(p));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Replaces `name`'s whole history.
    pub fn set_history(&mut self, name: &[u8], hist: &[Anchor]) {
        self.pending
            .insert(name.to_vec(), Some(NewPayload::whole(encode_history(hist))));
    }

    /// Removes `name` and its whole history from the map.
    pub fn remove(&mut self, name: &[u8]) {
        self.pending.insert(name.to_vec(), None);
    }

    /// The proto-types map ref (the reserved anchor's newest entry), if any.
    pub fn types_map(&self) -> Result<Option<Ref>, AnchorError> {
        Ok(self.history(PROTO_TYPES_ANCHOR)?.last().map(|a| a.r))
    }

    /// Records that the blob `msg` is a message whose type has the descriptor blob
    /// `descriptor`, in the proto-types map, as Go's PutProto does. The reserved
    /// anchor's history is kept to its newest entry (each types map holds every
    /// earlier record), so recording does not grow slower with every write.
    pub fn record_type(
        &mut self,
        msg: Ref,
        descriptor: Ref,
        at: Timestamp,
    ) -> Result<bool, AnchorError> {
        let types = self.types_map()?.unwrap_or_else(Map::empty_ref);
        let set = match Map::lookup(&self.made, &types, msg.as_bytes())? {
            Some(p) => Ref::from_slice(&p).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?,
            None => Set::empty_ref(),
        };
        let (new_set, added) = Set::add(&self.made, &set, &descriptor)?;
        if !added {
            return Ok(false);
        }
        let (new_types, _) = Map::set(&self.made, &types, msg.as_bytes(), new_set.as_bytes())?;
        let prev = self.history(PROTO_TYPES_ANCHOR)?.last().map(|a| a.at);
        // Keep the reserved history's time moving forward even if the clock does not.
        let at = match prev {
            Some(p) if p >= at => p,
            _ => at,
        };
        self.set_history(PROTO_TYPES_ANCHOR, &[Anchor { r: new_types, at }]);
        Ok(true)
    }

    /// Writes the changed histories into the map; returns the new map ref (the old
    /// one if nothing changed) and the blobs it needs that are not stored yet.
    fn finish(self) -> Result<(Ref, Vec<(Ref, Blob)>), AnchorError> {
        if self.pending.is_empty() {
            return Ok((self.base, self.made.into_blobs()));
        }
        let mut root = self.root();
        for (name, payload) in self.pending {
            root = match payload {
                Some(p) => Map::set_in_parts(&self.made, &root, name.into(), p.head, p.tail)?.0,
                None => Map::remove(&self.made, &root, &name)?.0,
            };
        }
        Ok((root, self.made.into_blobs()))
    }
}

/// Jittered exponential backoff for update conflicts.
struct Backoff {
    pause: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            pause: Duration::from_micros(100),
        }
    }

    fn wait(&mut self) {
        let max = self.pause.as_micros() as u64;
        std::thread::sleep(Duration::from_micros(
            rand::thread_rng().gen_range(max / 2..=max),
        ));
        self.pause = (self.pause * 2).min(Duration::from_millis(20));
    }
}

/// The optimistic-lock loop every writer uses: runs `f` on the current map, installs
/// its changes by compare-and-swap, and retries on "update conflict" with jittered
/// backoff, up to [`MAX_ATTEMPTS`] times. `f` may run several times; only the last
/// run's changes and result count.
pub fn update<S, T>(
    s: &S,
    mut f: impl FnMut(&mut Update<'_, S>) -> Result<T, AnchorError>,
) -> Result<T, AnchorError>
where
    S: AnchorStore + ?Sized,
{
    let mut backoff = Backoff::new();
    for attempt in 1..=MAX_ATTEMPTS {
        let old = map_ref(s)?;
        let base = old.unwrap_or(Ref::ZERO);
        let mut u = Update::new(s, base);
        let out = f(&mut u)?;
        let (new, made) = u.finish()?;
        if new == base {
            return Ok(out);
        }
        match s.put_and_swap(&made, old, new) {
            Ok(()) => return Ok(out),
            Err(StoreError::Conflict) => {
                log::debug!("anchor map update conflict (attempt {attempt}); retrying");
                backoff.wait();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AnchorError::RetriesExhausted(MAX_ATTEMPTS))
}

/// Go's Put: anchors `name` to `r` at time `at`.
pub fn put<S: AnchorStore + ?Sized>(
    s: &S,
    name: &[u8],
    r: Ref,
    at: Timestamp,
) -> Result<(), AnchorError> {
    update(s, |u| u.put(name, r, at)).map(|_| ())
}

/// Several puts applied in order in one anchor map update.
pub fn put_batch<S: AnchorStore + ?Sized>(
    s: &S,
    puts: &[(Vec<u8>, Ref, Timestamp)],
) -> Result<(), AnchorError> {
    update(s, |u| {
        for (name, r, at) in puts {
            u.put(name, *r, *at)?;
        }
        Ok(())
    })
}

/// Go's Expire: drops entries older than `oldest` from every anchor's history,
/// never leaving fewer than `min`. Returns what was dropped. Two differences from
/// Go: a name whose history becomes empty is removed from the map (rather than kept
/// with an empty list), and the reserved proto-types anchor is never expired (it
/// holds one entry, and losing it would lose every type record).
pub fn expire<S: AnchorStore + ?Sized>(
    s: &S,
    oldest: Timestamp,
    min: usize,
) -> Result<Vec<(Vec<u8>, Anchor)>, AnchorError> {
    update(s, |u| {
        let mut dropped = Vec::new();
        if u.base().is_zero() {
            return Ok(dropped);
        }
        for (name, payload) in Map::entries(u.store(), &u.base())? {
            if name.as_ref() == PROTO_TYPES_ANCHOR {
                continue;
            }
            let hist = decode_history(&name, &payload)?;
            let mut n = 0;
            while hist.len() - n > min && hist[n].at < oldest {
                n += 1;
            }
            if n > 0 {
                dropped.extend(hist[..n].iter().map(|a| (name.to_vec(), *a)));
                if n == hist.len() {
                    u.remove(&name);
                } else {
                    u.set_history(&name, &hist[n..]);
                }
            }
        }
        Ok(dropped)
    })
}
