//! Anchors: constant names for changing blobs, each with a timestamped history kept
//! in the store's anchor map (FORMAT.md, "The anchor map").
//!
//! Every change goes through [`update`], the one optimistic-lock loop: it reads the
//! current map ref, hands an [`Update`] (a view of the map at that ref, collecting
//! changes) to the caller's closure, installs the result with the store's
//! compare-and-swap ([`AnchorStore::swap_anchor_map`]), and on a conflict waits a
//! jittered, growing pause and runs the closure again on fresh state.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use rand::Rng;

use crate::blob::Ref;
use crate::proto;
use crate::schema::{Map, SchemaError, Set};
use crate::store::{AnchorGetter, AnchorStore, Getter, Store, StoreError};
use crate::timestamp::Timestamp;

/// The reserved anchor whose latest ref is the proto-types map (Go's name, so Go
/// tools read it too).
pub const PROTO_TYPES_ANCHOR: &[u8] = b"__github.com/bobg/bs/anchor__reserved__proto_types__";

/// How many times [`update`] tries before giving up.
pub const MAX_ATTEMPTS: u32 = 1000;

/// A visitor of anchor entries: `(name, entry)`.
pub type EntryVisitor<'a> = dyn FnMut(&[u8], Anchor) -> Result<(), AnchorError> + 'a;

/// Anchors with their histories: `(name, history oldest first)`.
pub type Anchors = Vec<(Vec<u8>, Vec<Anchor>)>;

/// One entry of an anchor's history: a ref and the time it became current.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Anchor {
    /// The blob (or split tree root) the name pointed at.
    pub r: Ref,
    /// When.
    pub at: Timestamp,
}

impl Anchor {
    /// The encoded `anchor.Anchor` message.
    pub fn encode(&self) -> Vec<u8> {
        proto::anchor::Anchor {
            r#ref: Bytes::copy_from_slice(self.r.as_bytes()),
            at: Some(self.at.to_proto()),
        }
        .encode_to_vec()
    }

    /// Decodes and checks an `anchor.Anchor` message.
    pub fn decode(data: &[u8]) -> Result<Anchor, String> {
        let m = proto::anchor::Anchor::decode(data).map_err(|e| e.to_string())?;
        let r = Ref::from_slice(&m.r#ref).map_err(|e| e.to_string())?;
        let at = match m.at {
            Some(t) => Timestamp::from_proto(&t).map_err(|e| e.to_string())?,
            None => Timestamp::new(0, 0).map_err(|e| e.to_string())?,
        };
        Ok(Anchor { r, at })
    }
}

/// An anchor name: any bytes. Displayed with non-printable bytes escaped.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(pub Vec<u8>);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Errors of the anchor layer.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// No such anchor, or none at or before the time asked for.
    #[error("anchor {0} not found")]
    NotFound(Name),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The anchor map (or another stored structure) is damaged.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// An anchor's stored history does not decode.
    #[error("history of anchor {name} is damaged: {why}")]
    BadHistory {
        /// The anchor.
        name: Name,
        /// What is wrong.
        why: String,
    },
    /// The proto-types map holds something that is not a ref.
    #[error("proto types map is damaged: {0}")]
    BadTypesMap(String),
    /// Other writers kept moving the anchor map for every attempt.
    #[error("gave up after {0} update conflicts")]
    RetriesExhausted(u32),
    /// A message type this crate has no descriptor for.
    #[error("no descriptor for message type {0}")]
    UnknownType(String),
}

impl AnchorError {
    /// The OS error number behind a store failure, however deep (ENOSPC, EIO, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            AnchorError::Store(s) | AnchorError::Schema(SchemaError::Store(s)) => s.raw_os_error(),
            _ => None,
        }
    }

    /// Whether this is "not found" (of an anchor or of a blob).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            AnchorError::NotFound(_) | AnchorError::Store(StoreError::NotFound(_))
        )
    }
}

fn bad_history(name: &[u8], why: impl Into<String>) -> AnchorError {
    AnchorError::BadHistory {
        name: Name(name.to_vec()),
        why: why.into(),
    }
}

/// Splits an encoded `schema.List` into its members without copying, if it is in
/// canonical form (only field 1, length-delimited). `None` for anything else.
fn list_members(payload: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < payload.len() {
        if payload[i] != 0x0a {
            return None;
        }
        i += 1;
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *payload.get(i)?;
            i += 1;
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        let end = i.checked_add(usize::try_from(len).ok()?)?;
        if end > payload.len() {
            return None;
        }
        out.push(i..end);
        i = end;
    }
    Some(out)
}

/// Appends one member to an encoded `schema.List`.
fn append_list_member(list: &mut Vec<u8>, member: &[u8]) {
    list.push(0x0a);
    prost::encoding::encode_varint(member.len() as u64, list);
    list.extend_from_slice(member);
}

/// Decodes an anchor's history (oldest first).
pub fn decode_history(name: &[u8], payload: &[u8]) -> Result<Vec<Anchor>, AnchorError> {
    let members = match list_members(payload) {
        Some(spans) => spans
            .into_iter()
            .map(|s| &payload[s])
            .map(Bytes::copy_from_slice)
            .collect(),
        None => crate::schema::List::decode(Bytes::copy_from_slice(payload))
            .map_err(|e| bad_history(name, e.to_string()))?,
    };
    members
        .iter()
        .map(|m| Anchor::decode(m).map_err(|why| bad_history(name, why)))
        .collect()
}

/// Encodes a history as the map payload.
pub fn encode_history(hist: &[Anchor]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hist.len() * 50);
    for a in hist {
        append_list_member(&mut out, &a.encode());
    }
    out
}

/// The entry of `hist` (oldest first) that a put of `new` would move earlier: the
/// store keeps one entry for equal neighbours, the earlier, so putting a ref just
/// before an entry with the same ref (and after one without) makes that entry start
/// at `new.at`. `None` if the put moves nothing.
pub fn moved_by_put(hist: &[Anchor], new: Anchor) -> Option<Anchor> {
    let i = hist.partition_point(|a| a.at <= new.at);
    let next = hist.get(i)?;
    let prev_same = i > 0 && hist[i - 1].r == new.r;
    (next.r == new.r && !prev_same).then_some(*next)
}

/// Go's Put rule applied to a history. Returns whether it changed.
pub fn apply_put(hist: &mut Vec<Anchor>, new: Anchor) -> bool {
    if let Some(last) = hist.last() {
        if last.at < new.at {
            if last.r == new.r {
                return false;
            }
            hist.push(new);
            return true;
        }
    } else {
        hist.push(new);
        return true;
    }
    let before = hist.clone();
    hist.push(new);
    hist.sort_by_key(|a| a.at); // stable: of equal times, the new entry ends last
    let mut kept: Vec<Anchor> = Vec::with_capacity(hist.len());
    for a in hist.drain(..) {
        if kept.last().is_some_and(|k| k.r == a.r) {
            continue;
        }
        kept.push(a);
    }
    *hist = kept;
    *hist != before
}

/// The last member of an encoded `schema.List` in canonical form: `None` if the
/// list is not canonical, `Some(None)` if it is empty. Scans the tags without
/// collecting anything, however long the list.
fn last_list_member(payload: &[u8]) -> Option<Option<std::ops::Range<usize>>> {
    let mut last = None;
    let mut i = 0;
    while i < payload.len() {
        if payload[i] != 0x0a {
            return None;
        }
        let mut rest = &payload[i + 1..];
        let len = prost::encoding::decode_varint(&mut rest).ok()?;
        let start = payload.len() - rest.len();
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        if end > payload.len() {
            return None;
        }
        last = Some(start..end);
        i = end;
    }
    Some(last)
}

/// A history's new payload: `head` followed by `tail`. Appending to a long history
/// keeps the old bytes as `head` (shared, not copied) and only the new entry in
/// `tail`; the node encoder copies both once, into the new leaf.
#[derive(Clone, Debug)]
struct NewPayload {
    head: Bytes,
    tail: Bytes,
}

impl NewPayload {
    fn whole(bytes: Vec<u8>) -> NewPayload {
        NewPayload {
            head: Bytes::from(bytes),
            tail: Bytes::new(),
        }
    }

    fn joined(&self) -> Bytes {
        if self.tail.is_empty() {
            self.head.clone()
        } else {
            Bytes::from([&self.head[..], &self.tail[..]].concat())
        }
    }
}

/// The new payload after putting `new` into the history in `payload`, or `None` if
/// the history does not change. Appending to a history (the common case) decodes
/// only the last entry and copies nothing of the old ones.
fn put_into_payload(
    name: &[u8],
    payload: Option<Bytes>,
    new: Anchor,
) -> Result<Option<NewPayload>, AnchorError> {
    let Some(payload) = payload else {
        return Ok(Some(NewPayload::whole(encode_history(&[new]))));
    };
    if let Some(Some(last)) = last_list_member(&payload) {
        let last = Anchor::decode(&payload[last]).map_err(|why| bad_history(name, why))?;
        if last.at < new.at {
            if last.r == new.r {
                return Ok(None);
            }
            let mut tail = Vec::with_capacity(64);
            append_list_member(&mut tail, &new.encode());
            return Ok(Some(NewPayload {
                head: payload,
                tail: Bytes::from(tail),
            }));
        }
    }
    let mut hist = decode_history(name, &payload)?;
    if apply_put(&mut hist, new) {
        Ok(Some(NewPayload::whole(encode_history(&hist))))
    } else {
        Ok(None)
    }
}

/// The current anchor map ref, or `None` if the store has none yet.
pub fn map_ref<G: AnchorGetter + ?Sized>(g: &G) -> Result<Option<Ref>, AnchorError> {
    match g.anchor_map_ref() {
        Ok(r) => Ok(Some(r)),
        Err(StoreError::NoAnchorMap) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The full history of `name` (oldest first) in the map at `root`; empty if absent.
pub fn history_in<G: Getter + ?Sized>(
    g: &G,
    root: &Ref,
    name: &[u8],
) -> Result<Vec<Anchor>, AnchorError> {
    match Map::lookup(g, root, name)? {
        Some(p) => decode_history(name, &p),
        None => Ok(Vec::new()),
    }
}

/// The full history of `name` (oldest first); empty if absent.
pub fn history<G: AnchorGetter + ?Sized>(g: &G, name: &[u8]) -> Result<Vec<Anchor>, AnchorError> {
    match map_ref(g)? {
        Some(root) => history_in(g, &root, name),
        None => Ok(Vec::new()),
    }
}

/// The newest entry of a history not after `at`.
pub fn entry_at(hist: &[Anchor], at: Timestamp) -> Option<Anchor> {
    let n = hist.partition_point(|a| a.at <= at);
    n.checked_sub(1).map(|i| hist[i])
}

/// The ref `name` pointed at, at time `at`: its newest entry not after `at`.
pub fn get<G: AnchorGetter + ?Sized>(
    g: &G,
    name: &[u8],
    at: Timestamp,
) -> Result<Ref, AnchorError> {
    entry_at(&history(g, name)?, at)
        .map(|a| a.r)
        .ok_or_else(|| AnchorError::NotFound(Name(name.to_vec())))
}

/// Calls `f(name, anchor)` for every entry of every anchor, in no promised order
/// (the map's order, then each history oldest first).
pub fn each<G: AnchorGetter + ?Sized>(g: &G, f: &mut EntryVisitor<'_>) -> Result<(), AnchorError> {
    let Some(root) = map_ref(g)? else {
        return Ok(());
    };
    for (name, payload) in Map::entries(g, &root)? {
        for a in decode_history(&name, &payload)? {
            f(&name, a)?;
        }
    }
    Ok(())
}

/// Every anchor and its history, in the map's order.
pub fn all<G: AnchorGetter + ?Sized>(g: &G) -> Result<Anchors, AnchorError> {
    let Some(root) = map_ref(g)? else {
        return Ok(Vec::new());
    };
    Map::entries(g, &root)?
        .into_iter()
        .map(|(name, payload)| Ok((name.to_vec(), decode_history(&name, &payload)?)))
        .collect()
}

/// One attempt at changing the anchor map: a view of the map at one ref that
/// collects changes; [`update`] installs them.
pub struct Update<'a, S: ?Sized> {
    store: &'a S,
    base: Ref,
    /// Changed histories, by name: the new payloads (`None`: the name goes).
    pending: BTreeMap<Vec<u8>, Option<NewPayload>>,
}

impl<'a, S: Store + ?Sized> Update<'a, S> {
    fn new(store: &'a S, map_ref: Ref) -> Self {
        Update {
            store,
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
        Ok(Map::lookup(self.store, &self.base, name)?)
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
        let set = match Map::lookup(self.store, &types, msg.as_bytes())? {
            Some(p) => Ref::from_slice(&p).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?,
            None => Set::empty_ref(),
        };
        let (new_set, added) = Set::add(self.store, &set, &descriptor)?;
        if !added {
            return Ok(false);
        }
        let (new_types, _) = Map::set(self.store, &types, msg.as_bytes(), new_set.as_bytes())?;
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
    /// one if nothing changed).
    fn finish(self) -> Result<Ref, AnchorError> {
        if self.pending.is_empty() {
            return Ok(self.base);
        }
        let mut root = self.root();
        for (name, payload) in self.pending {
            root = match payload {
                Some(p) => Map::set_in_parts(self.store, &root, name.into(), p.head, p.tail)?.0,
                None => Map::remove(self.store, &root, &name)?.0,
            };
        }
        Ok(root)
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
        let new = u.finish()?;
        if new == base {
            return Ok(out);
        }
        match s.swap_anchor_map(old, new) {
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

/// Every (message ref, descriptor ref) pair in a proto-types map.
pub fn type_records<G: Getter + ?Sized>(
    g: &G,
    types_map: &Ref,
) -> Result<Vec<(Ref, Ref)>, AnchorError> {
    let mut out = Vec::new();
    for (k, p) in Map::entries(g, types_map)? {
        let msg = Ref::from_slice(&k).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?;
        let set = Ref::from_slice(&p).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?;
        for d in Set::members(g, &set)? {
            out.push((msg, d));
        }
    }
    Ok(out)
}

/// The descriptor refs recorded for blob `msg` in the proto-types map, if any.
pub fn types_of<G: AnchorGetter + ?Sized>(g: &G, msg: &Ref) -> Result<Vec<Ref>, AnchorError> {
    match history(g, PROTO_TYPES_ANCHOR)?.last() {
        Some(types) => types_in(g, &types.r, msg),
        None => Ok(Vec::new()),
    }
}

/// The descriptor refs recorded for blob `msg` in the proto-types map `types`.
pub fn types_in<G: Getter + ?Sized>(
    g: &G,
    types: &Ref,
    msg: &Ref,
) -> Result<Vec<Ref>, AnchorError> {
    match Map::lookup(g, types, msg.as_bytes())? {
        Some(p) => {
            let set = Ref::from_slice(&p).map_err(|e| AnchorError::BadTypesMap(e.to_string()))?;
            Ok(Set::members(g, &set)?)
        }
        None => Ok(Vec::new()),
    }
}

/// The encoded `google.protobuf.DescriptorProto` of one of this crate's message
/// types (e.g. `"anchor.Anchor"`, `"split.Node"`), as protobuf-go's
/// `protodesc.ToDescriptorProto` writes it (with `json_name` filled in).
pub fn descriptor_proto(full_name: &str) -> Result<Vec<u8>, AnchorError> {
    let unknown = || AnchorError::UnknownType(full_name.to_string());
    let (package, message) = full_name.rsplit_once('.').ok_or_else(unknown)?;
    let set =
        prost_types::FileDescriptorSet::decode(proto::DESCRIPTOR_SET).map_err(|_| unknown())?;
    let file = set
        .file
        .iter()
        .find(|f| f.package() == package && f.message_type.iter().any(|m| m.name() == message))
        .ok_or_else(unknown)?;
    let mut desc = file
        .message_type
        .iter()
        .find(|m| m.name() == message)
        .cloned()
        .ok_or_else(unknown)?;
    for field in &mut desc.field {
        if field.json_name.is_none() {
            field.json_name = Some(json_name(field.name()));
        }
    }
    Ok(desc.encode_to_vec())
}

/// protobuf's default JSON name: snake_case to lowerCamelCase.
fn json_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's PutProto: stores the encoded message `msg` and, if it was new, its type's
/// descriptor, recording the pair in the proto-types map. Returns the message's ref
/// and whether it was new.
pub fn put_proto<S: AnchorStore + ?Sized>(
    s: &S,
    msg: &[u8],
    type_name: &str,
) -> Result<(Ref, bool), AnchorError> {
    let descriptor = descriptor_proto(type_name)?;
    let (r, added) = s.put(msg)?;
    if !added {
        return Ok((r, false));
    }
    let (d, _) = s.put(&descriptor)?;
    update(s, |u| u.record_type(r, d, Timestamp::now()))?;
    Ok((r, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn a(r: u8, at: &str) -> Anchor {
        Anchor {
            r: Ref([r; 32]),
            at: t(at),
        }
    }

    #[test]
    fn put_rule() {
        let mut h = Vec::new();
        assert!(apply_put(&mut h, a(1, "2020-01-01T00:00:00Z")));
        assert!(
            !apply_put(&mut h, a(1, "2021-01-01T00:00:00Z")),
            "same ref later: no-op"
        );
        assert!(apply_put(&mut h, a(2, "2021-01-01T00:00:00Z")));
        assert!(
            apply_put(&mut h, a(3, "2020-06-01T00:00:00Z")),
            "older: sorted in"
        );
        assert_eq!(
            h.iter().map(|x| x.r.0[0]).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        assert!(
            apply_put(&mut h, a(1, "2019-01-01T00:00:00Z")),
            "older copy of first: earlier wins"
        );
        assert_eq!(h[0].at, t("2019-01-01T00:00:00Z"));
        assert_eq!(h.len(), 3);
        assert!(
            !apply_put(&mut h, a(3, "2020-07-01T00:00:00Z")),
            "adjacent duplicate dropped"
        );
    }

    #[test]
    fn fast_append_equals_full_encoding() {
        let mut hist = Vec::new();
        let mut payload: Option<Bytes> = None;
        for i in 0..50u8 {
            let new = a(i % 7, &format!("2020-01-01T00:00:{:02}Z", i));
            apply_put(&mut hist, new);
            if let Some(p) = put_into_payload(b"x", payload.clone(), new).unwrap() {
                payload = Some(p.joined());
            }
            assert_eq!(&payload.as_deref().unwrap(), &encode_history(&hist));
        }
    }

    #[test]
    fn list_scanner_rejects_garbage() {
        assert_eq!(list_members(&[]), Some(vec![]));
        assert_eq!(list_members(&[0x0a, 0x05, 1]), None);
        assert_eq!(list_members(&[0x12, 0x00]), None);
        assert_eq!(
            list_members(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(
            list_members(&[0x0a, 0x01, 7, 0x0a, 0x00]),
            Some(vec![2..3, 5..5])
        );
        assert_eq!(last_list_member(&[]), Some(None));
        assert_eq!(last_list_member(&[0x0a, 0x05, 1]), None);
        assert_eq!(last_list_member(&[0x0a, 0x00, 0x12, 0x00]), None);
        assert_eq!(
            last_list_member(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(
            last_list_member(&[0x0a, 0x01, 7, 0x0a, 0x02, 8, 9]),
            Some(Some(5..7))
        );
    }

    #[test]
    fn json_names() {
        assert_eq!(json_name("ref"), "ref");
        assert_eq!(json_name("type_name"), "typeName");
    }
}
