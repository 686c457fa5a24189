//! The difference between two tries, found by comparing child refs: a subtree whose
//! ref is the same on both sides holds the same members and is never read, so the
//! cost follows what changed (and the depth of the tries), not their size.
//!
//! The two tries may have different shapes for the same members (a leaf that split
//! on one side only, a bulk-built trie against one grown by inserts): where one side
//! is a leaf and the other an interior node, the leaf's members are dealt to the two
//! children by the bit of that depth, as an insert would, and compared below.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::{bit, Entry, Node, Trie, MAX_DEPTH};
use crate::blob::Ref;
use crate::schema::SchemaError;
use crate::store::Getter;

/// One member that differs between two tries: its key (a Set's member) and its
/// payloads before and after (empty for a Set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key is only in the newer trie.
    Added {
        /// The key.
        key: Bytes,
        /// Its payload in the newer trie.
        new: Bytes,
    },
    /// The key is only in the older trie.
    Removed {
        /// The key.
        key: Bytes,
        /// Its payload in the older trie.
        old: Bytes,
    },
    /// The key is in both, with different payloads.
    Changed {
        /// The key.
        key: Bytes,
        /// Its payload in the older trie.
        old: Bytes,
        /// Its payload in the newer trie.
        new: Bytes,
    },
}

impl Change {
    /// The key that changed.
    pub fn key(&self) -> &Bytes {
        match self {
            Change::Added { key, .. }
            | Change::Removed { key, .. }
            | Change::Changed { key, .. } => key,
        }
    }

    /// Its payload in the older trie, if it was there.
    pub fn before(&self) -> Option<&Bytes> {
        match self {
            Change::Added { .. } => None,
            Change::Removed { old, .. } | Change::Changed { old, .. } => Some(old),
        }
    }

    /// Its payload in the newer trie, if it is there.
    pub fn after(&self) -> Option<&Bytes> {
        match self {
            Change::Removed { .. } => None,
            Change::Added { new, .. } | Change::Changed { new, .. } => Some(new),
        }
    }
}

/// Members at hand at some position of a trie: a whole leaf, or the part of one
/// that falls under a child of the other side.
enum Members {
    Leaf(Arc<Node>),
    Part(Vec<Entry>),
}

impl Members {
    fn as_slice(&self) -> &[Entry] {
        match self {
            Members::Leaf(n) => &n.members,
            Members::Part(v) => v,
        }
    }
}

/// One side of the comparison at some position: a node not read yet, or members.
enum Side {
    Node(Ref),
    Members(Members),
}

/// A side once read: the refs of its children, or its members.
enum Opened {
    Kids([Ref; 2]),
    Members(Members),
}

/// The payload of a member in one piece.
fn joined(e: &Entry) -> Bytes {
    if e.tail.is_empty() {
        e.payload.clone()
    } else {
        Bytes::from([&e.payload[..], &e.tail[..]].concat())
    }
}

/// One comparison in progress.
struct Walk<'a, G: ?Sized> {
    trie: Trie,
    g: &'a G,
    f: &'a mut dyn FnMut(Change) -> Result<(), SchemaError>,
    /// Where nodes of the newer trie that cannot be read go, if they are skipped.
    damaged: Option<&'a mut Vec<(Ref, SchemaError)>>,
}

impl<G: Getter + ?Sized> Walk<'_, G> {
    fn open(&mut self, side: Side, depth: i32, newer: bool) -> Result<Opened, SchemaError> {
        let r = match side {
            Side::Members(m) => return Ok(Opened::Members(m)),
            Side::Node(r) => r,
        };
        match self.trie.load(self.g, &r, depth) {
            Ok(n) => Ok(match n.kids {
                Some([left, right]) => Opened::Kids([left.r, right.r]),
                None => Opened::Members(Members::Leaf(n)),
            }),
            Err(e) if newer && depth > 0 && e.is_damage() && self.damaged.is_some() => {
                if let Some(d) = self.damaged.as_deref_mut() {
                    d.push((r, e));
                }
                Ok(Opened::Members(Members::Part(Vec::new())))
            }
            Err(e) => Err(e),
        }
    }

    /// Deals members to the two children of a node at `depth`.
    fn split(&self, m: Members, depth: i32) -> [Side; 2] {
        let mut halves: [Vec<Entry>; 2] = [Vec::new(), Vec::new()];
        for e in m.as_slice() {
            halves[bit(self.trie.member_hash(e), depth)].push(e.clone());
        }
        halves.map(|h| Side::Members(Members::Part(h)))
    }

    fn diff(&mut self, old: Side, new: Side, depth: i32) -> Result<(), SchemaError> {
        if let (Side::Node(a), Side::Node(b)) = (&old, &new) {
            if a == b {
                return Ok(());
            }
        }
        if depth > MAX_DEPTH {
            return Err(SchemaError::TooDeep);
        }
        let old = self.open(old, depth, false)?;
        let new = self.open(new, depth, true)?;
        let pairs: [(Side, Side); 2] = match (old, new) {
            (Opened::Members(a), Opened::Members(b)) => {
                return self.merge(a.as_slice(), b.as_slice());
            }
            (Opened::Kids([a0, a1]), Opened::Kids([b0, b1])) => [
                (Side::Node(a0), Side::Node(b0)),
                (Side::Node(a1), Side::Node(b1)),
            ],
            (Opened::Kids([a0, a1]), Opened::Members(m)) => {
                let [m0, m1] = self.split(m, depth);
                [(Side::Node(a0), m0), (Side::Node(a1), m1)]
            }
            (Opened::Members(m), Opened::Kids([b0, b1])) => {
                let [m0, m1] = self.split(m, depth);
                [(m0, Side::Node(b0)), (m1, Side::Node(b1))]
            }
        };
        for (a, b) in pairs {
            self.diff(a, b, depth + 1)?;
        }
        Ok(())
    }

    /// Compares two runs of members, each sorted by key hash.
    fn merge(&mut self, a: &[Entry], b: &[Entry]) -> Result<(), SchemaError> {
        let (mut i, mut j) = (0, 0);
        loop {
            let order = match (a.get(i), b.get(j)) {
                (None, None) => return Ok(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                // The same key has the same hash: two leaves that differ in a member
                // or two are mostly in step, and need no hashing there.
                (Some(x), Some(y)) if x.key == y.key => Ordering::Equal,
                (Some(x), Some(y)) => self.trie.member_hash(x).cmp(self.trie.member_hash(y)),
            };
            match order {
                Ordering::Less => {
                    (self.f)(Change::Removed {
                        key: a[i].key.clone(),
                        old: joined(&a[i]),
                    })?;
                    i += 1;
                }
                Ordering::Greater => {
                    (self.f)(Change::Added {
                        key: b[j].key.clone(),
                        new: joined(&b[j]),
                    })?;
                    j += 1;
                }
                Ordering::Equal => {
                    if !a[i].same_payload(&b[j]) {
                        (self.f)(Change::Changed {
                            key: b[j].key.clone(),
                            old: joined(&a[i]),
                            new: joined(&b[j]),
                        })?;
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
    }
}

impl Trie {
    /// Calls `f` on every member that differs between the tries at `old` and `new`
    /// (in no promised order), reading only the nodes whose refs differ. With
    /// `damaged`, a node below the root of `new` that is missing, damaged or
    /// malformed is recorded there and its members count as absent from `new`;
    /// without it, that ends the walk like any other error. Every failure to read
    /// `old` ends the walk: what it held cannot be known.
    pub fn diff<G: Getter + ?Sized>(
        &self,
        g: &G,
        old: &Ref,
        new: &Ref,
        f: &mut dyn FnMut(Change) -> Result<(), SchemaError>,
        damaged: Option<&mut Vec<(Ref, SchemaError)>>,
    ) -> Result<(), SchemaError> {
        Walk {
            trie: *self,
            g,
            f,
            damaged,
        }
        .diff(Side::Node(*old), Side::Node(*new), 0)
    }
}
