//! Stored nodes read back: [`DecNode`] decodes a `split.Node` blob and checks it
//! in itself and against its parent, and [`validate_root`] walks a whole tree with
//! those checks. Owns no locks.

use prost::Message;

use crate::blob::Ref;
use crate::proto::split::Node;
use crate::store::{Getter, StoreError};

use super::{SplitError, MAX_DEPTH};

/// A decoded, self-consistent node.
#[derive(Debug)]
pub(super) struct DecNode {
    pub(super) r: Ref,
    pub(super) leaves: bool,
    pub(super) offset: u64,
    pub(super) end: u64,
    pub(super) refs: Vec<Ref>,
    offs: Vec<u64>,
}

impl DecNode {
    /// Decodes `blob` (the node `r`) and checks it in itself: one kind of child,
    /// at least one, 32-byte refs, offsets strictly increasing from the node's
    /// own offset and inside its size.
    pub(super) fn decode(r: &Ref, blob: &[u8]) -> Result<DecNode, SplitError> {
        let node = Node::decode(blob).map_err(|source| SplitError::Decode { r: *r, source })?;
        let bad = |why: String| SplitError::Malformed { r: *r, why };
        let (leaves, kids) = match (node.nodes.is_empty(), node.leaves.is_empty()) {
            (true, false) => (true, &node.leaves),
            (false, true) => (false, &node.nodes),
            (true, true) => return Err(bad("no children".into())),
            (false, false) => return Err(bad("both leaves and nodes".into())),
        };
        let end = node.offset.checked_add(node.size).ok_or_else(|| {
            bad(format!(
                "offset {} + size {} overflows",
                node.offset, node.size
            ))
        })?;
        let mut refs = Vec::with_capacity(kids.len());
        let mut offs = Vec::with_capacity(kids.len());
        let mut prev: Option<u64> = None;
        for (i, c) in kids.iter().enumerate() {
            let cr = Ref::from_slice(&c.r#ref)
                .map_err(|_| bad(format!("child {i} has a {}-byte ref", c.r#ref.len())))?;
            match prev {
                None if c.offset != node.offset => {
                    return Err(bad(format!(
                        "first child at offset {}, node at {}",
                        c.offset, node.offset
                    )))
                }
                Some(p) if c.offset <= p => {
                    return Err(bad(format!(
                        "child {i} at offset {} does not follow {p}",
                        c.offset
                    )))
                }
                _ => {}
            }
            if c.offset >= end {
                return Err(bad(format!(
                    "child {i} at offset {} is past the node's end {end}",
                    c.offset
                )));
            }
            prev = Some(c.offset);
            refs.push(cr);
            offs.push(c.offset);
        }
        Ok(DecNode {
            r: *r,
            leaves,
            offset: node.offset,
            end,
            refs,
            offs,
        })
    }

    /// The child holding stream position `pos` (which must be inside the node):
    /// its index and span.
    pub(super) fn child_at(&self, pos: u64) -> (usize, u64, u64) {
        let i = self.offs.partition_point(|&o| o <= pos).saturating_sub(1);
        (i, self.offs[i], self.span_end(i))
    }

    fn span_end(&self, i: usize) -> u64 {
        self.offs.get(i + 1).copied().unwrap_or(self.end)
    }

    /// Checks that this node, reached as the child spanning `start..end` of
    /// `parent`, has exactly that span.
    pub(super) fn check_span(&self, parent: &Ref, start: u64, end: u64) -> Result<(), SplitError> {
        if self.offset != start || self.end != end {
            return Err(SplitError::Coverage {
                r: *parent,
                why: format!(
                    "child node {} covers {}..{}, its parent gives it {start}..{end}",
                    self.r, self.offset, self.end
                ),
            });
        }
        Ok(())
    }
}

/// Checks that a chunk of `len` bytes fills the span `start..end` that its parent
/// leaf node gives it.
pub(super) fn check_chunk(
    parent: &Ref,
    chunk: &Ref,
    len: usize,
    start: u64,
    end: u64,
) -> Result<(), SplitError> {
    if len as u64 != end - start {
        return Err(SplitError::Coverage {
            r: *parent,
            why: format!("chunk {chunk} has {len} bytes, its parent gives it {start}..{end}"),
        });
    }
    Ok(())
}

/// Whether the blob `blob` (whose ref is `r`) decodes as a split tree node, so
/// that [`validate_root`] may take it for a root: bytes that do not are surely
/// raw content.
pub fn decodes_as_node(r: &Ref, blob: &[u8]) -> bool {
    DecNode::decode(r, blob).is_ok()
}

/// Checks strictly that `root` is the root of a split tree in `g` and returns the
/// content size: every node decodes and is consistent with itself and its parent,
/// the root starts at offset 0, and every chunk is present (checked with
/// [`Getter::contains`], without reading it). The zero ref stands for the empty
/// stream (size 0).
pub fn validate_root<G: Getter + ?Sized>(g: &G, root: &Ref) -> Result<u64, SplitError> {
    if root.is_zero() {
        return Ok(0);
    }
    let node = DecNode::decode(root, &g.get(root)?)?;
    if node.offset != 0 {
        return Err(SplitError::Malformed {
            r: *root,
            why: format!("a root starts at offset {}, not 0", node.offset),
        });
    }
    let size = node.end;
    let mut stack = vec![(node, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        for i in 0..node.refs.len() {
            let (cr, start, end) = (node.refs[i], node.offs[i], node.span_end(i));
            if node.leaves {
                if !g.contains(&cr)? {
                    return Err(SplitError::Store(StoreError::NotFound(cr)));
                }
                continue;
            }
            if depth >= MAX_DEPTH {
                return Err(SplitError::TooDeep {
                    r: *root,
                    max: MAX_DEPTH,
                });
            }
            let child = DecNode::decode(&cr, &g.get(&cr)?)?;
            child.check_span(&node.r, start, end)?;
            stack.push((child, depth + 1));
        }
    }
    Ok(size)
}
