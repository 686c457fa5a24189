//! Reachability: every ref the current anchor map reaches — its trie nodes, every
//! version of every anchor (split trees with all their nodes and chunks, or raw
//! blobs), and the proto-types maps with their sets and descriptor blobs.
//!
//! Nodes are read through the store's `get`, which checks every blob against its
//! ref, never through a cache, so damage is noticed. `gc` walks strictly: the first
//! problem that could hide a reachable ref stops it before anything is deleted.
//! `fsck` walks leniently and collects every problem.

use std::collections::{HashMap, HashSet};
use std::fmt;

use bytes::Bytes;
use indicatif::ProgressBar;
use prost::Message;

use super::naming::quoted;
use crate::anchor::{self, PROTO_TYPES_ANCHOR};
use crate::blob::{Blob, Ref};
use crate::content::SPLIT_NODE_TYPE;
use crate::proto;
use crate::schema::Map;
use crate::store::{DeletingStore, StoreError};

/// Something wrong with a reachable ref.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Problem {
    /// A reachable ref the store does not hold.
    Missing {
        /// The ref.
        r: Ref,
        /// What reaches it.
        via: String,
    },
    /// A blob whose bytes do not match its ref, or whose file the store refused.
    Damaged {
        /// The ref.
        r: Ref,
        /// What reaches it.
        via: String,
    },
    /// A blob whose file the store refused to read (a symbolic link, a FIFO, a
    /// device, a file larger than any blob).
    Refused {
        /// The ref.
        r: Ref,
        /// What the store said, naming the file.
        why: String,
        /// What reaches it.
        via: String,
    },
    /// A blob that is not the structure it should be.
    Bad {
        /// The ref.
        r: Ref,
        /// What is wrong.
        why: String,
        /// What reaches it.
        via: String,
    },
    /// The store failed.
    Failed {
        /// What the store said.
        why: String,
        /// What was being read.
        via: String,
    },
}

impl Problem {
    /// The ref at fault, if any.
    pub(crate) fn r(&self) -> Option<Ref> {
        match self {
            Problem::Missing { r, .. }
            | Problem::Damaged { r, .. }
            | Problem::Refused { r, .. }
            | Problem::Bad { r, .. } => Some(*r),
            Problem::Failed { .. } => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { r, via } => write!(f, "missing {r} (reached from {via})"),
            Problem::Damaged { r, via } => {
                write!(f, "damaged {r}: its bytes do not match its ref ({via})")
            }
            Problem::Refused { r, why, via } => write!(f, "damaged {r}: {why} ({via})"),
            Problem::Bad { r, why, via } => write!(f, "bad {r}: {why} (reached from {via})"),
            Problem::Failed { why, via } => write!(f, "error: {why} (reading {via})"),
        }
    }
}

/// A strict walk stopped at a problem (the last one recorded).
#[derive(Debug)]
pub(crate) struct Stopped;

/// Which trie a node belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Trie {
    Map,
    Set,
}

/// A decoded split node, checked in itself.
struct SplitNode {
    leaves: bool,
    offset: u64,
    end: u64,
    /// Children: ref and span.
    kids: Vec<(Ref, u64, u64)>,
}

/// Decodes a split node and checks it in itself: one kind of child, at least one,
/// 32-byte refs, offsets strictly increasing from the node's own and inside it.
fn decode_split(blob: &[u8]) -> Result<SplitNode, String> {
    let node = proto::split::Node::decode(blob).map_err(|e| e.to_string())?;
    let (leaves, kids) = match (node.nodes.is_empty(), node.leaves.is_empty()) {
        (true, false) => (true, node.leaves),
        (false, true) => (false, node.nodes),
        (true, true) => return Err("no children".into()),
        (false, false) => return Err("both leaves and nodes".into()),
    };
    let end = node
        .offset
        .checked_add(node.size)
        .ok_or("offset + size overflows")?;
    let mut out: Vec<(Ref, u64, u64)> = Vec::with_capacity(kids.len());
    for (i, c) in kids.iter().enumerate() {
        let r = Ref::from_slice(&c.r#ref).map_err(|_| format!("child {i} has a bad ref"))?;
        let expected_first = out.is_empty() && c.offset != node.offset;
        let out_of_order = out.last().is_some_and(|p| c.offset <= p.1);
        if expected_first || out_of_order || c.offset >= end {
            return Err(format!("child {i} at offset {} is out of place", c.offset));
        }
        if let Some(prev) = out.last_mut() {
            prev.2 = c.offset;
        }
        out.push((r, c.offset, end));
    }
    Ok(SplitNode {
        leaves,
        offset: node.offset,
        end,
        kids: out,
    })
}

/// Every blob of a store, as a full check found it.
#[derive(Default)]
pub(crate) struct Known {
    /// Every blob present and its size.
    pub(crate) sizes: HashMap<Ref, u64>,
    /// The blobs whose bytes do not match their refs.
    pub(crate) damaged: HashSet<Ref>,
    /// The blobs whose files the store refused, with what it said.
    pub(crate) refused: HashMap<Ref, String>,
}

/// Walks what a store's anchor map reaches.
pub(crate) struct Walker<'a> {
    g: &'a dyn DeletingStore,
    strict: bool,
    /// Every blob in the store, when known (fsck): then chunks and descriptors are
    /// checked too, for presence, damage and chunk sizes against their spans.
    known: Option<&'a Known>,
    /// Every ref reached, present or not.
    pub(crate) reached: HashSet<Ref>,
    /// Problems found.
    pub(crate) problems: Vec<Problem>,
    walked_trie: HashSet<Ref>,
    walked_split: HashSet<Ref>,
    walked_raw: HashSet<Ref>,
    set_members: HashMap<Ref, Vec<Ref>>,
    split_roots: HashSet<Ref>,
    split_desc: Option<Ref>,
    bar: ProgressBar,
}

impl<'a> Walker<'a> {
    /// A walker over `g`; `strict` stops at the first problem that could hide a
    /// reachable ref; `known`, if given, lists every blob present.
    pub(crate) fn new(
        g: &'a dyn DeletingStore,
        strict: bool,
        known: Option<&'a Known>,
        bar: ProgressBar,
    ) -> Walker<'a> {
        let split_desc = anchor::descriptor_proto(SPLIT_NODE_TYPE)
            .ok()
            .map(|d| Ref::of(&d));
        Walker {
            g,
            strict,
            known,
            reached: HashSet::new(),
            problems: Vec::new(),
            walked_trie: HashSet::new(),
            walked_split: HashSet::new(),
            walked_raw: HashSet::new(),
            set_members: HashMap::new(),
            split_roots: HashSet::new(),
            split_desc,
            bar,
        }
    }

    /// Records a problem; stops a strict walk if it is `fatal` (could hide refs).
    fn problem(&mut self, p: Problem, fatal: bool) -> Result<(), Stopped> {
        self.problems.push(p);
        if self.strict && fatal {
            Err(Stopped)
        } else {
            Ok(())
        }
    }

    /// Reads `r`; a missing blob is fatal to a strict walk if `needed`.
    fn fetch(&mut self, r: &Ref, via: &str, needed: bool) -> Result<Option<Blob>, Stopped> {
        self.bar.inc(1);
        match self.g.get(r) {
            Ok(b) => Ok(Some(b)),
            Err(StoreError::NotFound(_)) => {
                let via = via.to_string();
                self.problem(Problem::Missing { r: *r, via }, needed)?;
                Ok(None)
            }
            Err(StoreError::Damaged(_)) => {
                let via = via.to_string();
                self.problem(Problem::Damaged { r: *r, via }, true)?;
                Ok(None)
            }
            Err(e @ StoreError::Refused { .. }) => {
                let (why, via) = (e.to_string(), via.to_string());
                self.problem(Problem::Refused { r: *r, why, via }, true)?;
                Ok(None)
            }
            Err(e) => {
                let p = Problem::Failed {
                    why: e.to_string(),
                    via: format!("{r}, reached from {via}"),
                };
                self.problem(p, true)?;
                Ok(None)
            }
        }
    }

    /// Checks (when every blob is known) that a leaf is present and whole, and a
    /// chunk's size.
    fn check_leaf(&mut self, r: &Ref, len: Option<u64>, via: &str) -> Result<(), Stopped> {
        let Some(known) = self.known else {
            return Ok(());
        };
        if known.damaged.contains(r) {
            let via = via.to_string();
            return self.problem(Problem::Damaged { r: *r, via }, false);
        }
        if let Some(why) = known.refused.get(r) {
            let (why, via) = (why.clone(), via.to_string());
            return self.problem(Problem::Refused { r: *r, why, via }, false);
        }
        match (known.sizes.get(r), len) {
            (None, _) => self.problem(
                Problem::Missing {
                    r: *r,
                    via: via.to_string(),
                },
                false,
            ),
            (Some(&n), Some(want)) if n != want => self.problem(
                Problem::Bad {
                    r: *r,
                    why: format!("chunk has {n} bytes, its split node gives it {want}"),
                    via: via.to_string(),
                },
                false,
            ),
            _ => Ok(()),
        }
    }

    /// Walks everything the anchor map `root` reaches.
    pub(crate) fn walk(&mut self, root: Option<Ref>) -> Result<(), Stopped> {
        let Some(root) = root else {
            return Ok(());
        };
        let members = self.walk_trie(root, Trie::Map, true, "the anchor map")?;
        let mut types = Vec::new();
        let mut content = Vec::new();
        for (name, payload) in members {
            match anchor::decode_history(&name, &payload) {
                Ok(h) if name.as_ref() == PROTO_TYPES_ANCHOR => types.extend(h),
                Ok(h) => content.push((name, h)),
                Err(e) => {
                    let p = Problem::Bad {
                        r: root,
                        why: e.to_string(),
                        via: "the anchor map".into(),
                    };
                    self.problem(p, true)?;
                }
            }
        }
        // Type records first: they say which refs are split roots.
        for e in types {
            self.walk_types(e.r, &format!("the proto types map of {}", e.at))?;
        }
        for (name, hist) in content {
            let shown = quoted(&name);
            for e in hist {
                self.walk_content(e.r, &format!("anchor {shown} version {}", e.at))?;
            }
        }
        Ok(())
    }

    /// Walks a trie from `root`; returns the members of the nodes it visited. With
    /// `dedupe`, nodes visited before (in any trie) are skipped with their members.
    fn walk_trie(
        &mut self,
        root: Ref,
        kind: Trie,
        dedupe: bool,
        via: &str,
    ) -> Result<Vec<(Bytes, Bytes)>, Stopped> {
        let what = match kind {
            Trie::Map => "schema.Map",
            Trie::Set => "schema.Set",
        };
        let mut out = Vec::new();
        let mut stack = vec![(root, 0i32)];
        while let Some((r, depth)) = stack.pop() {
            self.reached.insert(r);
            if r == Map::empty_ref() {
                continue; // the empty node need not be stored
            }
            if dedupe && !self.walked_trie.insert(r) {
                continue;
            }
            let Some(blob) = self.fetch(&r, via, true)? else {
                continue;
            };
            let bad = |why: String| Problem::Bad {
                r,
                why,
                via: via.to_string(),
            };
            let decoded = match kind {
                Trie::Map => proto::schema::Map::decode(blob).map(|m| {
                    let members = m.members.into_iter().map(|p| (p.key, p.payload));
                    (m.node.unwrap_or_default(), members.collect::<Vec<_>>())
                }),
                Trie::Set => proto::schema::Set::decode(blob).map(|s| {
                    let members = s.members.into_iter().map(|k| (k, Bytes::new()));
                    (s.node.unwrap_or_default(), members.collect::<Vec<_>>())
                }),
            };
            let (node, members) = match decoded {
                Ok(d) => d,
                Err(e) => {
                    self.problem(bad(format!("does not decode as {what}: {e}")), true)?;
                    continue;
                }
            };
            if node.depth != depth {
                let why = format!("{what} node at depth {depth} says {}", node.depth);
                self.problem(bad(why), false)?;
            }
            let kids: Vec<_> = [node.left, node.right].into_iter().flatten().collect();
            if kids.len() == 1 || (!kids.is_empty() && !members.is_empty()) {
                let why = format!(
                    "{what} node has {} children and {} members",
                    kids.len(),
                    members.len()
                );
                self.problem(bad(why), false)?;
            }
            for sub in kids {
                match Ref::from_slice(&sub.r#ref) {
                    Ok(c) => stack.push((c, depth + 1)),
                    Err(_) => {
                        self.problem(bad(format!("{what} node has a malformed child ref")), true)?;
                    }
                }
            }
            out.extend(members);
        }
        Ok(out)
    }

    /// The members of the set `r`, walked once per set.
    fn walk_set(&mut self, r: Ref, via: &str) -> Result<Vec<Ref>, Stopped> {
        if let Some(m) = self.set_members.get(&r) {
            return Ok(m.clone());
        }
        let mut refs = Vec::new();
        for (k, _) in self.walk_trie(r, Trie::Set, false, via)? {
            match Ref::from_slice(&k) {
                Ok(d) => refs.push(d),
                Err(_) => {
                    let why = format!("set member of {} bytes", k.len());
                    let via = via.to_string();
                    self.problem(Problem::Bad { r, why, via }, false)?;
                }
            }
        }
        self.set_members.insert(r, refs.clone());
        Ok(refs)
    }

    /// A proto types map: its nodes, its sets and their descriptor blobs. The
    /// messages it describes are kept only if an anchor reaches them.
    fn walk_types(&mut self, root: Ref, via: &str) -> Result<(), Stopped> {
        for (k, p) in self.walk_trie(root, Trie::Map, true, via)? {
            let Ok(set) = Ref::from_slice(&p) else {
                let why = format!("types map payload of {} bytes, want a 32-byte ref", p.len());
                let via = via.to_string();
                self.problem(Problem::Bad { r: root, why, via }, false)?;
                continue;
            };
            let msg = Ref::from_slice(&k).ok();
            for d in self.walk_set(set, via)? {
                self.reached.insert(d);
                self.check_leaf(&d, None, via)?;
                if Some(d) == self.split_desc {
                    if let Some(m) = msg {
                        self.split_roots.insert(m);
                    }
                }
            }
        }
        Ok(())
    }

    /// One version's ref: a split tree root (recorded as one, or decoding as one) is
    /// walked as a tree; anything else is a raw blob.
    fn walk_content(&mut self, r: Ref, via: &str) -> Result<(), Stopped> {
        if r.is_zero() {
            return Ok(()); // the empty stream
        }
        self.reached.insert(r);
        if self.walked_split.contains(&r) || self.walked_raw.contains(&r) {
            return Ok(());
        }
        let recorded = self.split_roots.contains(&r);
        let Some(blob) = self.fetch(&r, via, false)? else {
            return Ok(());
        };
        match decode_split(&blob) {
            Ok(node) if node.offset == 0 => self.walk_tree(r, node, via),
            other => {
                if recorded {
                    let why = match other {
                        Ok(_) => "recorded as a split root, but starts past offset 0".into(),
                        Err(e) => format!("recorded as a split root, but {e}"),
                    };
                    let via = via.to_string();
                    self.problem(Problem::Bad { r, why, via }, false)?;
                }
                self.walked_raw.insert(r);
                Ok(())
            }
        }
    }

    /// Every node and chunk of the split tree under `root`.
    fn walk_tree(&mut self, root: Ref, node: SplitNode, via: &str) -> Result<(), Stopped> {
        self.walked_split.insert(root);
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            for &(c, start, end) in &n.kids {
                self.reached.insert(c);
                if n.leaves {
                    self.check_leaf(&c, Some(end - start), via)?;
                    continue;
                }
                if !self.walked_split.insert(c) {
                    continue;
                }
                let Some(blob) = self.fetch(&c, via, true)? else {
                    continue;
                };
                match decode_split(&blob) {
                    Ok(child) => {
                        if child.offset != start || child.end != end {
                            let why = format!(
                                "split node covers {}..{}, its parent gives it {start}..{end}",
                                child.offset, child.end
                            );
                            let via = via.to_string();
                            self.problem(Problem::Bad { r: c, why, via }, false)?;
                        }
                        stack.push(child);
                    }
                    Err(why) => {
                        let why = format!("split node does not decode: {why}");
                        let via = via.to_string();
                        self.problem(Problem::Bad { r: c, why, via }, true)?;
                    }
                }
            }
        }
        Ok(())
    }
}
