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

/// What an update did to the anchor map ref: the ref it started from and the one
/// it left (the same when nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Installed {
    /// The map ref the successful attempt started from (`None`: no map).
    pub old: Option<Ref>,
    /// The map ref the update left.
    pub new: Option<Ref>,
}

/// The optimistic-lock loop every writer uses: runs `f` on the current map, installs
/// its changes by compare-and-swap, and retries on "update conflict" with jittered
/// backoff, up to [`MAX_ATTEMPTS`] times. `f` may run several times; only the last
/// run's changes and result count.
pub fn update<S, T>(
    s: &S,
    f: impl FnMut(&mut Update<'_, S>) -> Result<T, AnchorError>,
) -> Result<T, AnchorError>
where
    S: AnchorStore + ?Sized,
{
    update_with(s, &[], f).map(|(out, _)| out)
}

/// One attempt of [`update_with`], from the map ref `old`.
enum Attempt<T> {
    Done(T, Installed),
    Conflict,
    /// Reading the map or making the changes failed, before any swap.
    NotMade(AnchorError),
    /// The swap failed otherwise than by a conflict.
    Failed(AnchorError),
}

/// [`update`], with `with`: blobs the changes refer to (a new version's
/// content), stored with the attempt's own nodes, so that a store across a
/// network puts them in the swap's round trip ([`AnchorStore::put_and_swap`]).
/// They are stored even if the update changes nothing. Also returns the map refs
/// the successful attempt went from and to.
///
/// The first attempt starts from the map ref the store already knows
/// ([`AnchorGetter::known_map_ref`](crate::store::AnchorGetter::known_map_ref)),
/// if it keeps one: a stale one fails the swap (or the reading of its map), and
/// the update reads the ref and starts again at once, without counting that
/// attempt or backing off.
pub fn update_with<S, T>(
    s: &S,
    with: &[(Ref, Blob)],
    mut f: impl FnMut(&mut Update<'_, S>) -> Result<T, AnchorError>,
) -> Result<(T, Installed), AnchorError>
where
    S: AnchorStore + ?Sized,
{
    let mut backoff = Backoff::new();
    let mut guess = s.known_map_ref();
    let mut conflicts = 0;
    loop {
        let guessed = guess.is_some();
        let old = match guess.take() {
            Some(known) => known,
            None => map_ref(s)?,
        };
        match attempt(s, old, with, &mut f) {
            Attempt::Done(out, installed) => return Ok((out, installed)),
            Attempt::Conflict | Attempt::NotMade(_) if guessed => {
                log::debug!("anchor map update from the known ref was stale; reading the ref");
            }
            Attempt::Conflict => {
                conflicts += 1;
                if conflicts >= MAX_ATTEMPTS {
                    return Err(AnchorError::RetriesExhausted(MAX_ATTEMPTS));
                }
                log::debug!("anchor map update conflict (attempt {conflicts}); retrying");
                backoff.wait();
            }
            Attempt::NotMade(e) | Attempt::Failed(e) => return Err(e),
        }
    }
}

fn attempt<S, T>(
    s: &S,
    old: Option<Ref>,
    with: &[(Ref, Blob)],
    f: &mut impl FnMut(&mut Update<'_, S>) -> Result<T, AnchorError>,
) -> Attempt<T>
where
    S: AnchorStore + ?Sized,
{
    let base = old.unwrap_or(Ref::ZERO);
    let made = (|| {
        let mut u = Update::new(s, base);
        let out = f(&mut u)?;
        let (new, made) = u.finish()?;
        Ok((out, new, made))
    })();
    let (out, new, mut blobs) = match made {
        Ok(v) => v,
        Err(e) => return Attempt::NotMade(e),
    };
    if new == base {
        if !with.is_empty() {
            let slices: Vec<&[u8]> = with.iter().map(|(_, b)| &b[..]).collect();
            if let Err(e) = s.put_many(&slices) {
                return Attempt::Failed(e.into());
            }
        }
        return Attempt::Done(out, Installed { old, new: old });
    }
    blobs.extend_from_slice(with);
    match s.put_and_swap(&blobs, old, new) {
        Ok(()) => Attempt::Done(
            out,
            Installed {
                old,
                new: Some(new),
            },
        ),
        Err(StoreError::Conflict) => Attempt::Conflict,
        Err(e) => Attempt::Failed(e.into()),
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;

    use super::*;
    use crate::store::mem::MemStore;
    use crate::store::{AnchorGetter, Getter};

    /// A memory store that claims to know the map ref `guess` and counts the
    /// reads of the real one.
    struct Guessing {
        inner: MemStore,
        guess: Mutex<Option<Option<Ref>>>,
        reads: AtomicUsize,
    }

    impl Getter for Guessing {
        fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
            self.inner.get(r)
        }
        fn list_refs(
            &self,
            after: &Ref,
            f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
        ) -> Result<(), StoreError> {
            self.inner.list_refs(after, f)
        }
    }
    impl Store for Guessing {
        fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
            self.inner.put(blob)
        }
    }
    impl AnchorGetter for Guessing {
        fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.anchor_map_ref()
        }
        fn known_map_ref(&self) -> Option<Option<Ref>> {
            *self.guess.lock()
        }
    }
    impl AnchorStore for Guessing {
        fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
            self.inner.swap_anchor_map(old, new)
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::new(secs, 0).unwrap()
    }

    fn guessing() -> Guessing {
        Guessing {
            inner: MemStore::new(),
            guess: Mutex::new(None),
            reads: AtomicUsize::new(0),
        }
    }

    fn names(s: &Guessing) -> Vec<Vec<u8>> {
        let root = s.inner.anchor_map_ref().unwrap();
        Map::entries(&s.inner, &root)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn an_update_starts_from_the_known_ref_without_reading_it() {
        let s = guessing();
        let (_, first) = update_with(&s, &[], |u| u.put(b"a", Ref::of(b"1"), t(1))).unwrap();
        assert_eq!(s.reads.load(Ordering::SeqCst), 1, "nothing known: read");
        *s.guess.lock() = Some(first.new);
        let (_, second) = update_with(&s, &[], |u| u.put(b"b", Ref::of(b"2"), t(2))).unwrap();
        assert_eq!(s.reads.load(Ordering::SeqCst), 1, "known: not read again");
        assert_eq!(second.old, first.new);
        assert_eq!(names(&s), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn a_stale_known_ref_costs_one_attempt_and_loses_nothing() {
        let s = guessing();
        let (_, first) = update_with(&s, &[], |u| u.put(b"a", Ref::of(b"1"), t(1))).unwrap();
        update(&s, |u| u.put(b"b", Ref::of(b"2"), t(2))).unwrap();
        // Known: the map before b was added (a conflict).
        *s.guess.lock() = Some(first.new);
        let (_, third) = update_with(&s, &[], |u| u.put(b"c", Ref::of(b"3"), t(3))).unwrap();
        assert_ne!(third.old, first.new, "started again from the real ref");
        assert_eq!(names(&s), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        // Known: a map none of whose nodes is in the store (reading it fails).
        *s.guess.lock() = Some(Some(Ref::of(b"no such map")));
        update(&s, |u| u.put(b"d", Ref::of(b"4"), t(4))).unwrap();
        assert_eq!(names(&s).len(), 4);
    }

    #[test]
    fn blobs_given_with_an_update_are_stored_even_if_nothing_changes() {
        let s = guessing();
        let content = Blob::from_static(b"a version's content");
        let r = Ref::of(&content);
        let (_, installed) =
            update_with(&s, &[(r, content.clone())], |u| u.put(b"a", r, t(1))).unwrap();
        assert!(installed.new.is_some() && installed.new != installed.old);
        assert_eq!(s.inner.get(&r).unwrap(), content);
        let other = Blob::from_static(b"more content");
        let o = Ref::of(&other);
        // The same put again changes nothing, and still stores what it was given.
        let (changed, same) =
            update_with(&s, &[(o, other.clone())], |u| u.put(b"a", r, t(1))).unwrap();
        assert!(!changed);
        assert_eq!(same.old, same.new);
        assert_eq!(s.inner.get(&o).unwrap(), other);
    }
}
