//! Map, Set and List: the data structures that live in the store, with node bytes
//! identical to the Go library's (docs/FORMAT.md, "The hash trie" and "Lists").

mod trie;

use bytes::Bytes;
use prost::Message;

use crate::blob::Ref;
use crate::proto::schema as pb;
use crate::store::{Getter, Store, StoreError};
use trie::{Entry, Kind, Trie};

pub use trie::Change as MapChange;
pub use trie::MAX as MAX_LEAF_MEMBERS;

/// What a walk of a map that skips damage found.
#[derive(Debug, Default)]
pub struct EntriesRead {
    /// The (key, payload) pairs read.
    pub entries: Vec<(Bytes, Bytes)>,
    /// The nodes that could not be read, with why; their members are missing above.
    pub damaged: Vec<(Ref, SchemaError)>,
}

/// What a diff of two maps that skips damage in the newer one found.
#[derive(Debug, Default)]
pub struct DiffRead {
    /// The keys that differ.
    pub changes: Vec<MapChange>,
    /// The nodes of the newer map that could not be read, with why; their members
    /// count as absent from it.
    pub damaged: Vec<(Ref, SchemaError)>,
}

/// Errors reading or changing a stored structure.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node's bytes are not the message they should be.
    #[error("node {r} does not decode as {what}: {source}")]
    Decode {
        /// The node's ref.
        r: Ref,
        /// The expected message type.
        what: &'static str,
        /// What the decoder said.
        source: prost::DecodeError,
    },
    /// A node decodes but breaks the trie's rules.
    #[error("node {r} is not a valid {what}: {why}")]
    Malformed {
        /// The node's ref.
        r: Ref,
        /// The expected structure.
        what: &'static str,
        /// The rule it breaks.
        why: String,
    },
    /// A bulk build would nest deeper than any hash allows (duplicate hashes).
    #[error("trie too deep: members cannot be told apart by their hashes")]
    TooDeep,
    /// A list's bytes do not decode.
    #[error("list does not decode: {0}")]
    List(prost::DecodeError),
}

impl SchemaError {
    /// Whether this says a node is missing, damaged or malformed (as opposed to the
    /// store failing to answer).
    pub fn is_damage(&self) -> bool {
        match self {
            SchemaError::Store(s) => s.is_damage() || s.is_not_found(),
            SchemaError::Decode { .. } | SchemaError::Malformed { .. } | SchemaError::List(_) => {
                true
            }
            SchemaError::TooDeep => false,
        }
    }
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing changed; the ref is the old one.
    None,
    /// A new member was added.
    Added,
    /// An existing member's payload was replaced.
    Updated,
}

const MAP: Trie = Trie { kind: Kind::Map };
const SET: Trie = Trie { kind: Kind::Set };

/// A hash-trie map from byte-string keys to byte-string payloads, addressed by its
/// root ref. All operations are functions from a root ref to a new root ref.
pub struct Map;

impl Map {
    /// The ref of the empty map (SHA-256 of `0a 00`); it need not be stored.
    pub fn empty_ref() -> Ref {
        Trie::empty_ref()
    }

    /// Sets `key` to `payload`.
    pub fn set<S: Store + ?Sized>(
        s: &S,
        root: &Ref,
        key: &[u8],
        payload: &[u8],
    ) -> Result<(Ref, Outcome), SchemaError> {
        Map::set_owned(
            s,
            root,
            Bytes::copy_from_slice(key),
            Bytes::copy_from_slice(payload),
        )
    }

    /// [`Map::set`] with key and payload handed over (no copy of a large payload).
    pub fn set_owned<S: Store + ?Sized>(
        s: &S,
        root: &Ref,
        key: Bytes,
        payload: Bytes,
    ) -> Result<(Ref, Outcome), SchemaError> {
        MAP.set(s, root, Entry::new(key, payload))
    }

    /// [`Map::set_owned`] with the payload given as `head` followed by `tail`, as a
    /// writer appending to a long payload has it: the two are copied once, straight
    /// into the node's blob, never joined first.
    pub fn set_in_parts<S: Store + ?Sized>(
        s: &S,
        root: &Ref,
        key: Bytes,
        head: Bytes,
        tail: Bytes,
    ) -> Result<(Ref, Outcome), SchemaError> {
        MAP.set(s, root, Entry::in_parts(key, head, tail))
    }

    /// The payload of `key`, if present.
    pub fn lookup<G: Getter + ?Sized>(
        g: &G,
        root: &Ref,
        key: &[u8],
    ) -> Result<Option<Bytes>, SchemaError> {
        Ok(MAP
            .lookup(g, root, Kind::Map.hash(key).as_ref())?
            .map(|e| e.payload))
    }

    /// Removes `key`; returns the new root and whether it was present.
    pub fn remove<S: Store + ?Sized>(
        s: &S,
        root: &Ref,
        key: &[u8],
    ) -> Result<(Ref, bool), SchemaError> {
        MAP.remove(s, root, Kind::Map.hash(key).as_ref())
    }

    /// Calls `f(key, payload)` for every member, in the trie's order.
    pub fn each<G: Getter + ?Sized>(
        g: &G,
        root: &Ref,
        f: &mut dyn FnMut(Bytes, Bytes) -> Result<(), SchemaError>,
    ) -> Result<(), SchemaError> {
        MAP.each(g, root, &mut |e| f(e.key, e.payload))
    }

    /// Every (key, payload), in the trie's order.
    pub fn entries<G: Getter + ?Sized>(
        g: &G,
        root: &Ref,
    ) -> Result<Vec<(Bytes, Bytes)>, SchemaError> {
        let mut out = Vec::new();
        Map::each(g, root, &mut |k, p| {
            out.push((k, p));
            Ok(())
        })?;
        Ok(out)
    }

    /// Every (key, payload) that can be read, and the nodes below the root that could
    /// not (missing, damaged or malformed: the members under them are left out).
    pub fn entries_skipping_damage<G: Getter + ?Sized>(
        g: &G,
        root: &Ref,
    ) -> Result<EntriesRead, SchemaError> {
        let mut out = EntriesRead::default();
        MAP.each_skipping_damage(
            g,
            root,
            &mut |e| out.entries.push((e.key, e.payload)),
            &mut out.damaged,
        )?;
        Ok(out)
    }

    /// The number of members.
    pub fn len<G: Getter + ?Sized>(g: &G, root: &Ref) -> Result<usize, SchemaError> {
        MAP.len(g, root)
    }

    /// Every key whose payload differs between the maps at `old` and `new` (added,
    /// removed or changed), in no promised order. Reads only the nodes whose refs
    /// differ: the cost follows the change, not the size of the maps.
    pub fn diff<G: Getter + ?Sized>(
        g: &G,
        old: &Ref,
        new: &Ref,
    ) -> Result<Vec<MapChange>, SchemaError> {
        let mut out = Vec::new();
        MAP.diff(
            g,
            old,
            new,
            &mut |c| {
                out.push(c);
                Ok(())
            },
            None,
        )?;
        Ok(out)
    }

    /// [`Map::diff`], but a node below the root of `new` that is missing, damaged or
    /// malformed is recorded and its members count as absent from `new` (as
    /// [`Map::entries_skipping_damage`] leaves them out). A failure to read `old`, or
    /// the root of `new`, still ends it.
    pub fn diff_skipping_damage<G: Getter + ?Sized>(
        g: &G,
        old: &Ref,
        new: &Ref,
    ) -> Result<DiffRead, SchemaError> {
        let mut changes = Vec::new();
        let mut damaged = Vec::new();
        MAP.diff(
            g,
            old,
            new,
            &mut |c| {
                changes.push(c);
                Ok(())
            },
            Some(&mut damaged),
        )?;
        Ok(DiffRead { changes, damaged })
    }

    /// Builds a map from pairs at once (Go's `MapFromGo`); a later pair with the same
    /// key wins.
    pub fn from_pairs<S: Store + ?Sized>(
        s: &S,
        pairs: &[(&[u8], &[u8])],
    ) -> Result<Ref, SchemaError> {
        let members = pairs
            .iter()
            .map(|(k, p)| Entry::new(Bytes::copy_from_slice(k), Bytes::copy_from_slice(p)))
            .collect();
        MAP.build(s, members)
    }
}

/// A hash-trie set of refs, addressed by its root ref.
pub struct Set;

impl Set {
    /// The ref of the empty set (the same bytes as the empty map).
    pub fn empty_ref() -> Ref {
        Trie::empty_ref()
    }

    fn entry(member: &Ref) -> Entry {
        Entry::new(Bytes::copy_from_slice(member.as_bytes()), Bytes::new())
    }

    /// Adds `member`; returns the new root and whether it was added.
    pub fn add<S: Store + ?Sized>(
        s: &S,
        root: &Ref,
        member: &Ref,
    ) -> Result<(Ref, bool), SchemaError> {
        let (r, o) = SET.set(s, root, Set::entry(member))?;
        Ok((r, o == Outcome::Added))
    }

    /// Whether `member` is present.
    pub fn check<G: Getter + ?Sized>(g: &G, root: &Ref, member: &Ref) -> Result<bool, SchemaError> {
        Ok(SET.lookup(g, root, member.as_bytes())?.is_some())
    }

    /// Removes `member`; returns the new root and whether it was present.
    pub fn remove<S: Store + ?Sized>(
        s: &S,
        root: &Ref,
        member: &Ref,
    ) -> Result<(Ref, bool), SchemaError> {
        SET.remove(s, root, member.as_bytes())
    }

    /// Every member, in the trie's order. Members that are not 32 bytes are errors.
    pub fn members<G: Getter + ?Sized>(g: &G, root: &Ref) -> Result<Vec<Ref>, SchemaError> {
        let mut out = Vec::new();
        SET.each(g, root, &mut |e| {
            let r = Ref::from_slice(&e.key).map_err(|_| SchemaError::Malformed {
                r: *root,
                what: "schema.Set",
                why: format!("member of {} bytes", e.key.len()),
            })?;
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Builds a set at once (Go's `SetFromRefs`).
    pub fn from_refs<S: Store + ?Sized>(s: &S, refs: &[Ref]) -> Result<Ref, SchemaError> {
        SET.build(s, refs.iter().map(Set::entry).collect())
    }
}

/// A flat list of byte strings, encoded inline (anchor histories are Lists).
pub struct List;

impl List {
    /// Encodes `members` as a `schema.List`.
    pub fn encode<B: AsRef<[u8]>>(members: &[B]) -> Vec<u8> {
        pb::List {
            members: members
                .iter()
                .map(|m| Bytes::copy_from_slice(m.as_ref()))
                .collect(),
        }
        .encode_to_vec()
    }

    /// Decodes a `schema.List`.
    pub fn decode(data: Bytes) -> Result<Vec<Bytes>, SchemaError> {
        Ok(pb::List::decode(data).map_err(SchemaError::List)?.members)
    }
}
