//! The hash trie behind Map and Set, one node per blob (docs/FORMAT.md, "The hash
//! trie").
//!
//! Nodes are decoded into [`Node`], changed, and encoded back; every algorithm here
//! follows the Go library step by step, because the bytes of every node (and so every
//! ref) must come out identical.

mod diff;

use std::ops::Range;
use std::sync::{Arc, LazyLock, OnceLock};

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;
use prost::Message;
use sha2::{Digest, Sha256};

use super::{Outcome, SchemaError};
use crate::blob::Ref;
use crate::proto::schema as pb;
use crate::store::{Getter, Store};

pub use diff::Change;

/// Members per leaf before it splits.
pub const MAX: usize = 128;

/// Deeper than any trie of 32-byte hashes can legitimately be (256 bits, plus slack
/// for the incremental split's one-level-per-insert chains).
const MAX_DEPTH: i32 = 300;

/// Which structure a trie is: they differ only in members and key hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Members are key/payload pairs; the key hash is SHA-256 of the key.
    Map,
    /// Members are refs; the key hash is the member itself.
    Set,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Map => "schema.Map",
            Kind::Set => "schema.Set",
        }
    }

    /// The key hash of a member with this key.
    pub(crate) fn hash(self, key: &[u8]) -> KeyHash<'_> {
        match self {
            Kind::Map => KeyHash::Digest(Sha256::digest(key).into()),
            Kind::Set => KeyHash::Itself(key),
        }
    }
}

/// A member's key hash: computed for a Map key, the member itself for a Set. Hashes
/// are computed only where the algorithm needs them (a binary search touches a
/// handful of members; splits and collapses touch all), never on decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KeyHash<'a> {
    /// SHA-256 of a Map key.
    Digest([u8; 32]),
    /// A Set member, which is its own hash.
    Itself(&'a [u8]),
}

impl AsRef<[u8]> for KeyHash<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            KeyHash::Digest(d) => d,
            KeyHash::Itself(b) => b,
        }
    }
}

/// One member of a leaf.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The key (Map) or the member itself (Set).
    pub key: Bytes,
    /// The payload (Map only; empty for Set) is `payload` followed by `tail`. A
    /// writer appending to a long payload hands over the old bytes and the new ones
    /// apart, and the encoder copies each once, straight into the node's blob.
    /// Members read from a store, or saved to one, have an empty tail.
    pub payload: Bytes,
    /// The rest of the payload; see `payload`.
    pub tail: Bytes,
    /// A Map member's key hash, once something has needed it: a binary search over a
    /// cached leaf then hashes no key twice.
    hash: OnceLock<[u8; 32]>,
    /// The member's whole field in the blob of a node this process saved, if it has
    /// not changed since.
    field: Option<Field>,
}

/// Where a member's encoded field (tag, length, message) lies in a blob encoded
/// here, so in the canonical bytes a new encoding would write.
#[derive(Clone, Debug)]
struct Field {
    blob: Bytes,
    span: Range<usize>,
}

impl Entry {
    /// A member with a payload in one piece.
    pub fn new(key: Bytes, payload: Bytes) -> Entry {
        Entry::in_parts(key, payload, Bytes::new())
    }

    /// A member whose payload is `payload` followed by `tail`.
    pub fn in_parts(key: Bytes, payload: Bytes, tail: Bytes) -> Entry {
        Entry {
            key,
            payload,
            tail,
            hash: OnceLock::new(),
            field: None,
        }
    }

    fn payload_len(&self) -> usize {
        self.payload.len() + self.tail.len()
    }

    /// Whether two members' payloads are the same bytes, however they are split.
    fn same_payload(&self, other: &Entry) -> bool {
        if self.payload_len() != other.payload_len() {
            return false;
        }
        if self.tail.is_empty() && other.tail.is_empty() {
            return self.payload == other.payload;
        }
        let joined = |e: &Entry| [&e.payload[..], &e.tail[..]].concat();
        joined(self) == joined(other)
    }
}

/// Payloads at least this long are re-pointed into the saved node's blob, so that a
/// cached node and its blob share one copy of them.
const SHARE_PAYLOAD_MIN: usize = 1024;

/// A pointer to a child node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sub {
    r: Ref,
    size: i32,
}

/// A decoded trie node.
#[derive(Clone, Debug)]
struct Node {
    depth: i32,
    size: i32,
    /// `Some` for an interior node: (left, right).
    kids: Option<[Sub; 2]>,
    members: Vec<Entry>,
}

/// Decoded nodes by ref, shared by every store in the process: a ref names its bytes
/// for good, so a node decoded once (from verified bytes, or encoded here) is the
/// same wherever it is read. Bounded by the nodes' encoded size.
struct NodeCache {
    entries: LruCache<(Kind, Ref), (Arc<Node>, usize)>,
    bytes: usize,
}

/// Bytes of encoded nodes the cache keeps. Kept small: an anchor's history is the
/// payload of one leaf, rewritten at every put of it, and a larger cache filled up
/// with superseded copies of long histories (most of a busy mount's memory).
const NODE_CACHE_BYTES: usize = 8 << 20;

static NODE_CACHE: LazyLock<Mutex<NodeCache>> = LazyLock::new(|| {
    Mutex::new(NodeCache {
        entries: LruCache::unbounded(),
        bytes: 0,
    })
});

impl NodeCache {
    fn get(kind: Kind, r: &Ref) -> Option<Arc<Node>> {
        NODE_CACHE
            .lock()
            .entries
            .get(&(kind, *r))
            .map(|(n, _)| n.clone())
    }

    /// The node at `r` for a writer about to replace it. A small node is taken out
    /// of the cache, so the writer usually holds the only copy and changes it in
    /// place: cloning is what costs there (many members, a refcount each). A large
    /// one (a few members with long payloads, like a long history) stays cached and
    /// is shared: cloning it is cheap, and freeing its big buffers on every write
    /// would make the allocator hand memory back and fault it in again.
    fn take_for_change(kind: Kind, r: &Ref) -> Option<(Arc<Node>, usize)> {
        let mut c = NODE_CACHE.lock();
        let (n, size) = c.entries.get(&(kind, *r)).cloned()?;
        if size <= TAKE_MAX {
            c.entries.pop(&(kind, *r));
            c.bytes -= size;
        }
        Some((n, size))
    }

    fn insert(kind: Kind, r: Ref, node: Arc<Node>, size: usize) {
        if size > NODE_CACHE_BYTES / 4 {
            return;
        }
        let mut c = NODE_CACHE.lock();
        c.bytes += size;
        if let Some((_, old)) = c.entries.put((kind, r), (node, size)) {
            c.bytes -= old;
        }
        while c.bytes > NODE_CACHE_BYTES {
            match c.entries.pop_lru() {
                Some((_, (_, old))) => c.bytes -= old,
                None => break,
            }
        }
    }
}

/// The largest encoded node [`NodeCache::take_for_change`] takes out of the cache.
const TAKE_MAX: usize = 64 << 10;

/// Bit `d` of hash `h`: bit `d % 8` from the least significant end of byte `d / 8`.
fn bit(h: &[u8], d: i32) -> usize {
    let i = (d / 8) as usize;
    match h.get(i) {
        Some(b) => ((b >> (d % 8)) & 1) as usize,
        None => 0,
    }
}

#[cfg(test)]
fn sub_to_pb(s: &Sub) -> pb::SubNode {
    pb::SubNode {
        r#ref: Bytes::copy_from_slice(s.r.as_bytes()),
        size: s.size,
    }
}

/// The trie operations for one kind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Trie {
    pub kind: Kind,
}

impl Trie {
    /// The encoding of the empty node.
    const EMPTY: &'static [u8] = &[0x0a, 0x00];

    /// The ref of the empty (never stored) root.
    pub fn empty_ref() -> Ref {
        Ref::of(Self::EMPTY)
    }

    /// A member's key hash: the member itself for a Set; for a Map, SHA-256 of the
    /// key, computed the first time it is asked for and kept with the member.
    fn member_hash<'a>(&self, e: &'a Entry) -> &'a [u8] {
        match self.kind {
            Kind::Set => &e.key,
            Kind::Map => e.hash.get_or_init(|| Sha256::digest(&e.key).into()),
        }
    }

    /// Binary search of a leaf's members by key hash.
    fn find(&self, members: &[Entry], h: &[u8]) -> Result<usize, usize> {
        members.binary_search_by(|m| self.member_hash(m).cmp(h))
    }

    /// Sorts members by key hash (stable).
    fn sort(&self, members: &mut [Entry]) {
        members.sort_by(|a, b| self.member_hash(a).cmp(self.member_hash(b)));
    }

    /// The node's blob: a `Map` or `Set` message, written field by field straight
    /// from the node (no message structs to build and drop), in exactly the bytes
    /// prost gives for the same message (`encode_by_message`, kept for the tests).
    #[cfg(test)]
    fn encode(&self, n: &Node) -> Vec<u8> {
        self.encode_laid_out(n).0
    }

    /// [`encode`](Self::encode), also returning where in the blob each member's
    /// field went. A run of members that still hold their fields from one earlier
    /// blob, side by side there, is copied in one piece: a leaf that gained or
    /// changed one member is mostly two copies.
    fn encode_laid_out(&self, n: &Node) -> (Vec<u8>, Vec<Range<usize>>) {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, int32, WireType};
        let sub_len = |s: &Sub| {
            let r = 1 + encoded_len_varint(32) + 32;
            r + if s.size != 0 {
                int32::encoded_len(2, &s.size)
            } else {
                0
            }
        };
        let field_len = |len: usize| 1 + encoded_len_varint(len as u64) + len;
        let mut node_len = 0;
        if n.depth != 0 {
            node_len += int32::encoded_len(1, &n.depth);
        }
        if n.size != 0 {
            node_len += int32::encoded_len(2, &n.size);
        }
        if let Some(kids) = &n.kids {
            node_len += kids.iter().map(|k| field_len(sub_len(k))).sum::<usize>();
        }
        let pair_len = |e: &Entry| {
            let mut l = 0;
            if !e.key.is_empty() {
                l += field_len(e.key.len());
            }
            if e.payload_len() != 0 {
                l += field_len(e.payload_len());
            }
            l
        };
        let member_len = |e: &Entry| match (&e.field, self.kind) {
            (Some(f), _) => f.span.len(),
            (None, Kind::Map) => field_len(pair_len(e)),
            (None, Kind::Set) => field_len(e.key.len()),
        };
        let members_len: usize = n.members.iter().map(member_len).sum();
        let mut buf = Vec::with_capacity(field_len(node_len) + members_len);
        // The node field is always present, even when all its fields are defaults.
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(node_len as u64, &mut buf);
        if n.depth != 0 {
            int32::encode(1, &n.depth, &mut buf);
        }
        if n.size != 0 {
            int32::encode(2, &n.size, &mut buf);
        }
        if let Some(kids) = &n.kids {
            for (tag, k) in [(3, &kids[0]), (4, &kids[1])] {
                encode_key(tag, WireType::LengthDelimited, &mut buf);
                encode_varint(sub_len(k) as u64, &mut buf);
                encode_key(1, WireType::LengthDelimited, &mut buf);
                encode_varint(32, &mut buf);
                buf.extend_from_slice(k.r.as_bytes());
                if k.size != 0 {
                    int32::encode(2, &k.size, &mut buf);
                }
            }
        }
        let bytes_field = |tag: u32, b: &[u8], buf: &mut Vec<u8>| {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(b.len() as u64, buf);
            buf.extend_from_slice(b);
        };
        let mut fields = Vec::with_capacity(n.members.len());
        // Members already encoded, waiting to be copied as one run of their blob.
        let mut run: Option<(&Bytes, Range<usize>)> = None;
        let flush = |run: &mut Option<(&Bytes, Range<usize>)>, buf: &mut Vec<u8>| {
            if let Some((blob, span)) = run.take() {
                buf.extend_from_slice(&blob[span]);
            }
        };
        let mut at = buf.len();
        for e in &n.members {
            let len = member_len(e);
            fields.push(at..at + len);
            at += len;
            if let Some(f) = &e.field {
                match &mut run {
                    Some((blob, span))
                        if blob.as_ptr() == f.blob.as_ptr() && span.end == f.span.start =>
                    {
                        span.end = f.span.end;
                    }
                    _ => {
                        flush(&mut run, &mut buf);
                        run = Some((&f.blob, f.span.clone()));
                    }
                }
                continue;
            }
            flush(&mut run, &mut buf);
            match self.kind {
                Kind::Map => {
                    encode_key(2, WireType::LengthDelimited, &mut buf);
                    encode_varint(pair_len(e) as u64, &mut buf);
                    if !e.key.is_empty() {
                        bytes_field(1, &e.key, &mut buf);
                    }
                    let len = e.payload_len();
                    if len != 0 {
                        encode_key(2, WireType::LengthDelimited, &mut buf);
                        encode_varint(len as u64, &mut buf);
                        buf.extend_from_slice(&e.payload);
                        buf.extend_from_slice(&e.tail);
                    }
                }
                Kind::Set => bytes_field(2, &e.key, &mut buf),
            }
        }
        flush(&mut run, &mut buf);
        debug_assert_eq!(at, buf.len());
        (buf, fields)
    }

    /// Points a node's members at their fields in `data`, the node's new blob (laid
    /// out as `fields` says), and long or two-part payloads at their bytes there: a
    /// cached node then shares its blob's memory, and its next encoding copies
    /// unchanged members in runs.
    fn adopt(&self, n: &mut Node, data: &Bytes, fields: Vec<Range<usize>>) {
        for (m, span) in n.members.iter_mut().zip(fields) {
            let len = m.payload_len();
            if self.kind == Kind::Map && (len >= SHARE_PAYLOAD_MIN || !m.tail.is_empty()) {
                // A pair's payload, when present, is the last thing in its field.
                m.payload = data.slice(span.end - len..span.end);
                m.tail = Bytes::new();
            }
            m.field = Some(Field {
                blob: data.clone(),
                span,
            });
        }
    }

    /// The node's blob through prost's message types: the reference `encode` must
    /// match byte for byte.
    #[cfg(test)]
    fn encode_by_message(&self, n: &Node) -> Vec<u8> {
        let (left, right) = match &n.kids {
            Some([l, r]) => (Some(sub_to_pb(l)), Some(sub_to_pb(r))),
            None => (None, None),
        };
        let node = Some(pb::TreeNode {
            depth: n.depth,
            size: n.size,
            left,
            right,
        });
        match self.kind {
            Kind::Map => pb::Map {
                node,
                members: n
                    .members
                    .iter()
                    .map(|e| pb::MapPair {
                        key: e.key.clone(),
                        payload: [&e.payload[..], &e.tail[..]].concat().into(),
                    })
                    .collect(),
            }
            .encode_to_vec(),
            Kind::Set => pb::Set {
                node,
                members: n.members.iter().map(|e| e.key.clone()).collect(),
            }
            .encode_to_vec(),
        }
    }

    fn decode(&self, r: &Ref, data: Bytes) -> Result<Node, SchemaError> {
        let what = self.kind.name();
        let bad = |why: &str| SchemaError::Malformed {
            r: *r,
            what,
            why: why.to_string(),
        };
        let decode_err = |source| SchemaError::Decode {
            r: *r,
            what,
            source,
        };
        let (node, members) = match self.kind {
            Kind::Map => {
                let m = pb::Map::decode(data).map_err(decode_err)?;
                let members = m
                    .members
                    .into_iter()
                    .map(|p| Entry::new(p.key, p.payload))
                    .collect();
                (m.node.unwrap_or_default(), members)
            }
            Kind::Set => {
                let s = pb::Set::decode(data).map_err(decode_err)?;
                let members = s
                    .members
                    .into_iter()
                    .map(|k| Entry::new(k, Bytes::new()))
                    .collect();
                (s.node.unwrap_or_default(), members)
            }
        };
        if !(0..=MAX_DEPTH).contains(&node.depth) {
            return Err(bad("depth out of range"));
        }
        if node.size < 0 {
            return Err(bad("negative size"));
        }
        let kids = match (node.left, node.right) {
            (None, None) => None,
            (Some(l), Some(rt)) => {
                if !Vec::<Entry>::is_empty(&members) {
                    return Err(bad("interior node with members"));
                }
                let sub = |s: pb::SubNode| -> Result<Sub, SchemaError> {
                    let r =
                        Ref::from_slice(&s.r#ref).map_err(|_| bad("child ref is not 32 bytes"))?;
                    if s.size < 0 {
                        return Err(bad("negative child size"));
                    }
                    Ok(Sub { r, size: s.size })
                };
                Some([sub(l)?, sub(rt)?])
            }
            _ => return Err(bad("interior node with one child")),
        };
        Ok(Node {
            depth: node.depth,
            size: node.size,
            kids,
            members,
        })
    }

    fn load<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        depth: i32,
    ) -> Result<Arc<Node>, SchemaError> {
        let n = match NodeCache::get(self.kind, r) {
            Some(n) => n,
            None => {
                let (n, size) = self.fetch(g, r)?;
                let n = Arc::new(n);
                NodeCache::insert(self.kind, *r, n.clone(), size);
                n
            }
        };
        self.check_depth(r, &n, depth)?;
        Ok(n)
    }

    /// Reads and decodes the node at `r` (no cache); also its encoded size.
    fn fetch<G: Getter + ?Sized>(&self, g: &G, r: &Ref) -> Result<(Node, usize), SchemaError> {
        let data = if *r == Self::empty_ref() {
            Bytes::from_static(Self::EMPTY)
        } else {
            g.get(r)?
        };
        let size = data.len();
        Ok((self.decode(r, data)?, size))
    }

    fn check_depth(&self, r: &Ref, n: &Node, depth: i32) -> Result<(), SchemaError> {
        if n.depth != depth {
            return Err(SchemaError::Malformed {
                r: *r,
                what: self.kind.name(),
                why: format!("depth {} where {} was expected", n.depth, depth),
            });
        }
        Ok(())
    }

    /// Loads the node at `r` to change it (see [`NodeCache::take_for_change`]). A
    /// change that turns out to be none puts it back.
    fn load_to_change<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        depth: i32,
    ) -> Result<(Node, usize), SchemaError> {
        let (n, size) = match NodeCache::take_for_change(self.kind, r) {
            Some((n, size)) => (Arc::unwrap_or_clone(n), size),
            None => self.fetch(g, r)?,
        };
        if let Err(e) = self.check_depth(r, &n, depth) {
            NodeCache::insert(self.kind, *r, Arc::new(n), size);
            return Err(e);
        }
        Ok((n, size))
    }

    fn save<S: Store + ?Sized>(&self, s: &S, mut n: Node) -> Result<Ref, SchemaError> {
        let (data, fields) = self.encode_laid_out(&n);
        let data = Bytes::from(data);
        self.adopt(&mut n, &data, fields);
        let size = data.len();
        let r = s.put_blob(data)?.0;
        NodeCache::insert(self.kind, r, Arc::new(n), size);
        Ok(r)
    }

    /// Inserts or updates `e` under the node at `r`.
    pub fn set<S: Store + ?Sized>(
        &self,
        s: &S,
        r: &Ref,
        e: Entry,
    ) -> Result<(Ref, Outcome), SchemaError> {
        let h = Bytes::copy_from_slice(self.member_hash(&e));
        self.set_at(s, r, e, &h, 0)
    }

    fn set_at<S: Store + ?Sized>(
        &self,
        s: &S,
        r: &Ref,
        e: Entry,
        h: &[u8],
        depth: i32,
    ) -> Result<(Ref, Outcome), SchemaError> {
        let (mut n, size) = self.load_to_change(s, r, depth)?;
        let unchanged = |n: Node| {
            NodeCache::insert(self.kind, *r, Arc::new(n), size);
            Ok((*r, Outcome::None))
        };
        if let Some(kids) = &mut n.kids {
            let k = bit(h, n.depth);
            let (child, outcome) = self.set_at(s, &kids[k].r, e, h, depth + 1)?;
            if outcome == Outcome::None {
                return unchanged(n);
            }
            kids[k].r = child;
            if outcome == Outcome::Added {
                kids[k].size += 1;
                n.size += 1;
            }
            return Ok((self.save(s, n)?, outcome));
        }
        match self.find(&n.members, h) {
            Ok(i) => {
                if self.kind == Kind::Set || n.members[i].same_payload(&e) {
                    return unchanged(n);
                }
                let m = &mut n.members[i];
                m.payload = e.payload;
                m.tail = e.tail;
                m.field = None;
                Ok((self.save(s, n)?, Outcome::Updated))
            }
            Err(i) => {
                n.members.insert(i, e);
                if n.members.len() > MAX {
                    let mut halves: [Vec<Entry>; 2] = [Vec::new(), Vec::new()];
                    for m in std::mem::take(&mut n.members) {
                        halves[bit(self.member_hash(&m), n.depth)].push(m);
                    }
                    let mut kids = [Sub {
                        r: Ref::ZERO,
                        size: 0,
                    }; 2];
                    for (k, members) in halves.into_iter().enumerate() {
                        let size = members.len() as i32;
                        let child = self.leaf(n.depth + 1, members);
                        kids[k] = Sub {
                            r: self.save(s, child)?,
                            size,
                        };
                    }
                    n.kids = Some(kids);
                }
                n.size += 1;
                Ok((self.save(s, n)?, Outcome::Added))
            }
        }
    }

    /// Removes the member with key hash `h`; returns the new ref and whether it was there.
    pub fn remove<S: Store + ?Sized>(
        &self,
        s: &S,
        r: &Ref,
        h: &[u8],
    ) -> Result<(Ref, bool), SchemaError> {
        self.remove_at(s, r, h, 0)
    }

    fn remove_at<S: Store + ?Sized>(
        &self,
        s: &S,
        r: &Ref,
        h: &[u8],
        depth: i32,
    ) -> Result<(Ref, bool), SchemaError> {
        let (mut n, size) = self.load_to_change(s, r, depth)?;
        let unchanged = |n: Node| {
            NodeCache::insert(self.kind, *r, Arc::new(n), size);
            Ok((*r, false))
        };
        if let Some(kids) = &mut n.kids {
            let k = bit(h, n.depth);
            let (child, removed) = self.remove_at(s, &kids[k].r, h, depth + 1)?;
            if !removed {
                return unchanged(n);
            }
            kids[k].r = child;
            kids[k].size -= 1;
            n.size -= 1;
            if n.size as usize <= MAX {
                let kids = *kids;
                let mut members = Vec::with_capacity(n.size.max(0) as usize);
                for sub in &kids {
                    self.collect(s, &sub.r, depth + 1, &mut members)?;
                }
                self.sort(&mut members);
                n.kids = None;
                n.size = members.len() as i32;
                n.members = members;
            }
            return Ok((self.save(s, n)?, true));
        }
        match self.find(&n.members, h) {
            Ok(i) => {
                n.members.remove(i);
                n.size -= 1;
                Ok((self.save(s, n)?, true))
            }
            Err(_) => unchanged(n),
        }
    }

    fn collect<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        depth: i32,
        out: &mut Vec<Entry>,
    ) -> Result<(), SchemaError> {
        let n = self.load(g, r, depth)?;
        match n.kids {
            Some(kids) => {
                for sub in &kids {
                    self.collect(g, &sub.r, depth + 1, out)?;
                }
            }
            None => out.extend(n.members.iter().cloned()),
        }
        Ok(())
    }

    /// The member with key hash `h`, if present.
    pub fn lookup<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        h: &[u8],
    ) -> Result<Option<Entry>, SchemaError> {
        let mut r = *r;
        let mut depth = 0;
        loop {
            let n = self.load(g, &r, depth)?;
            match n.kids {
                Some(kids) => {
                    r = kids[bit(h, n.depth)].r;
                    depth += 1;
                }
                None => return Ok(self.find(&n.members, h).ok().map(|i| n.members[i].clone())),
            }
        }
    }

    /// Calls `f` on every member: left subtree, right subtree, leaf members in order.
    pub fn each<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        f: &mut dyn FnMut(Entry) -> Result<(), SchemaError>,
    ) -> Result<(), SchemaError> {
        self.each_at(g, r, 0, f)
    }

    fn each_at<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        depth: i32,
        f: &mut dyn FnMut(Entry) -> Result<(), SchemaError>,
    ) -> Result<(), SchemaError> {
        let n = self.load(g, r, depth)?;
        match n.kids {
            Some(kids) => {
                for sub in &kids {
                    self.each_at(g, &sub.r, depth + 1, f)?;
                }
            }
            None => {
                for m in &n.members {
                    f(m.clone())?;
                }
            }
        }
        Ok(())
    }

    /// Like [`each`](Self::each), but a subtree below the root whose node is missing,
    /// damaged or malformed is recorded in `damaged` and skipped instead of ending the
    /// walk. Store I/O errors and a bad root still end it.
    pub fn each_skipping_damage<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        f: &mut dyn FnMut(Entry),
        damaged: &mut Vec<(Ref, SchemaError)>,
    ) -> Result<(), SchemaError> {
        self.each_skipping_at(g, r, 0, f, damaged)
    }

    fn each_skipping_at<G: Getter + ?Sized>(
        &self,
        g: &G,
        r: &Ref,
        depth: i32,
        f: &mut dyn FnMut(Entry),
        damaged: &mut Vec<(Ref, SchemaError)>,
    ) -> Result<(), SchemaError> {
        let n = match self.load(g, r, depth) {
            Ok(n) => n,
            Err(e) if depth > 0 && e.is_damage() => {
                damaged.push((*r, e));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match n.kids {
            Some(kids) => {
                for sub in &kids {
                    self.each_skipping_at(g, &sub.r, depth + 1, f, damaged)?;
                }
            }
            None => n.members.iter().for_each(|m| f(m.clone())),
        }
        Ok(())
    }

    /// The number of members, from the root alone.
    pub fn len<G: Getter + ?Sized>(&self, g: &G, r: &Ref) -> Result<usize, SchemaError> {
        Ok(self.load(g, r, 0)?.size as usize)
    }

    /// Builds a trie from members at once (Go's `MapFromGo` / `SetFromRefs`).
    /// Later duplicates of a key replace earlier ones.
    pub fn build<S: Store + ?Sized>(
        &self,
        s: &S,
        mut members: Vec<Entry>,
    ) -> Result<Ref, SchemaError> {
        members.reverse();
        self.sort(&mut members); // stable: of equal keys, the last given comes first
        members.dedup_by(|later, first| later.key == first.key);
        if members.is_empty() {
            return self.save(s, self.leaf(0, Vec::new()));
        }
        self.build_at(s, members, 0).map(|(r, _)| r)
    }

    fn leaf(&self, depth: i32, members: Vec<Entry>) -> Node {
        Node {
            depth,
            size: members.len() as i32,
            kids: None,
            members,
        }
    }

    fn build_at<S: Store + ?Sized>(
        &self,
        s: &S,
        members: Vec<Entry>,
        depth: i32,
    ) -> Result<(Ref, i32), SchemaError> {
        if members.len() <= MAX {
            let size = members.len() as i32;
            return Ok((self.save(s, self.leaf(depth, members))?, size));
        }
        if depth >= MAX_DEPTH {
            return Err(SchemaError::TooDeep);
        }
        let mut halves: [Vec<Entry>; 2] = [Vec::new(), Vec::new()];
        for m in members {
            halves[bit(self.member_hash(&m), depth)].push(m);
        }
        let [left, right] = halves;
        let (lr, ls) = self.build_at(s, left, depth + 1)?;
        let (rr, rs) = self.build_at(s, right, depth + 1)?;
        let n = Node {
            depth,
            size: ls + rs,
            kids: Some([Sub { r: lr, size: ls }, Sub { r: rr, size: rs }]),
            members: Vec::new(),
        };
        Ok((self.save(s, n)?, ls + rs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(k, p)| {
                // Sometimes in two parts, as an appending writer hands it over.
                let mut payload = Bytes::from(p);
                let tail = match payload.len() {
                    n if n % 3 == 1 => payload.split_off(n / 2),
                    _ => Bytes::new(),
                };
                Entry::in_parts(Bytes::from(k), payload, tail)
            })
    }

    fn sub() -> impl Strategy<Value = Sub> {
        (
            any::<[u8; 32]>(),
            prop_oneof![Just(0), 0..i32::MAX, Just(-1)],
        )
            .prop_map(|(r, size)| Sub { r: Ref(r), size })
    }

    fn node() -> impl Strategy<Value = Node> {
        (
            prop_oneof![Just(0), 0..300i32, Just(-5)],
            prop_oneof![Just(0), 0..100_000i32, Just(-1)],
            proptest::option::of((sub(), sub())),
            proptest::collection::vec(entry(), 0..6),
        )
            .prop_map(|(depth, size, kids, members)| Node {
                depth,
                size,
                kids: kids.map(|(l, r)| [l, r]),
                members,
            })
    }

    proptest! {
        /// The direct encoder writes exactly prost's bytes, for both kinds, including
        /// defaults left out, empty keys and payloads, and negative numbers.
        #[test]
        fn direct_encoding_is_prosts(n in node()) {
            for kind in [Kind::Map, Kind::Set] {
                let t = Trie { kind };
                let mut n = n.clone();
                if kind == Kind::Set {
                    for m in &mut n.members {
                        m.payload = Bytes::new();
                        m.tail = Bytes::new();
                    }
                }
                prop_assert_eq!(t.encode(&n), t.encode_by_message(&n));
            }
        }
    }
}
