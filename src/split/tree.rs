//! Go's tree builder: chunk refs in, `split.Node` blobs out, one open node per
//! tree level, each closed (encoded and stored) when a chunk of a higher level
//! ends it. Owns no locks; its caller owns it.

use prost::Message;

use crate::blob::{Blob, Ref};
use crate::proto::split::{Child, Node};
use crate::store::Store;

use super::SplitError;

/// A closed node as its parent sees it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    r: Ref,
    offset: u64,
    /// The node to use as a root in its place: itself, or, when it has exactly one
    /// node child, that child's own `collapsed`.
    collapsed: Ref,
}

#[derive(Debug, Default)]
struct OpenNode {
    children: Vec<Entry>,
    offset: u64,
    size: u64,
}

/// Go's tree builder: one open node per level, closed by chunk levels.
#[derive(Debug, Default)]
pub(super) struct TreeBuilder {
    levels: Vec<OpenNode>,
    total: u64,
}

impl TreeBuilder {
    pub(super) fn add<S: Store + ?Sized>(
        &mut self,
        store: &S,
        chunk: Ref,
        len: u64,
        level: usize,
    ) -> Result<(), SplitError> {
        if self.levels.is_empty() {
            self.levels.push(OpenNode::default());
        }
        self.levels[0].children.push(Entry {
            r: chunk,
            offset: self.total,
            collapsed: chunk,
        });
        self.total += len;
        for n in &mut self.levels {
            n.size += len;
        }
        for i in 0..level {
            if i + 1 == self.levels.len() {
                let size = self.levels[i].size;
                self.levels.push(OpenNode {
                    children: Vec::new(),
                    offset: 0,
                    size,
                });
            }
            let e = self.close(store, i)?;
            self.levels[i + 1].children.push(e);
            let fresh = &mut self.levels[i];
            fresh.children.clear();
            fresh.offset = self.total;
            fresh.size = 0;
        }
        Ok(())
    }

    /// Encodes and stores the open node at level `i`.
    fn close<S: Store + ?Sized>(&self, store: &S, i: usize) -> Result<Entry, SplitError> {
        let n = &self.levels[i];
        let kids = n
            .children
            .iter()
            .map(|c| Child {
                r#ref: Blob::copy_from_slice(c.r.as_bytes()),
                offset: c.offset,
            })
            .collect();
        let (nodes, leaves) = if i == 0 {
            (Vec::new(), kids)
        } else {
            (kids, Vec::new())
        };
        let node = Node {
            nodes,
            leaves,
            offset: n.offset,
            size: n.size,
        };
        let (r, _) = store.put(&node.encode_to_vec())?;
        let collapsed = match n.children.as_slice() {
            [only] if i > 0 => only.collapsed,
            _ => r,
        };
        Ok(Entry {
            r,
            offset: n.offset,
            collapsed,
        })
    }

    /// Closes what is still open and returns the root ref (zero if no chunk).
    pub(super) fn finish<S: Store + ?Sized>(&mut self, store: &S) -> Result<Ref, SplitError> {
        let Some(top) = self.levels.len().checked_sub(1) else {
            return Ok(Ref::ZERO);
        };
        // Go closes the open nodes only when level 0 holds chunks; we close from
        // the lowest level that holds anything, so no open node is dropped.
        if let Some(low) = (0..top).find(|&i| !self.levels[i].children.is_empty()) {
            for i in low..top {
                let e = self.close(store, i)?;
                self.levels[i + 1].children.push(e);
            }
        }
        if top == 0 || self.levels[top].children.len() > 1 {
            return Ok(self.close(store, top)?.r);
        }
        Ok(self.levels[top].children[0].collapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::{read_to_vec, validate_root};
    use crate::store::mem::MemStore;
    use crate::store::Getter;

    /// Builds a tree from chunks of the given tree levels; returns the store, root
    /// and content.
    fn build(levels: &[usize]) -> (MemStore, Ref, Vec<u8>) {
        let store = MemStore::new();
        let mut tb = TreeBuilder::default();
        let mut content = Vec::new();
        for (i, &lv) in levels.iter().enumerate() {
            let chunk = format!("chunk {i} at level {lv}; ").into_bytes();
            let (r, _) = store.put(&chunk).unwrap();
            tb.add(&store, r, chunk.len() as u64, lv).unwrap();
            content.extend_from_slice(&chunk);
        }
        let root = tb.finish(&store).unwrap();
        (store, root, content)
    }

    #[test]
    fn tree_builder_keeps_every_chunk() {
        let cases: &[&[usize]] = &[
            &[],
            &[0],
            &[3],
            &[0, 0, 1, 0],
            &[0, 2, 0, 1],
            // The last chunk closes level 0 while level 1 stays open below the
            // top: Go's builder drops level 1 here.
            &[0, 2, 0, 1, 0, 1],
            &[0, 3, 1, 0, 1],
            &[1, 1, 1],
            &[0, 0, 2, 0, 0, 1, 0, 3, 0, 1, 2, 1],
        ];
        for levels in cases {
            let (store, root, content) = build(levels);
            if levels.is_empty() {
                assert!(root.is_zero());
                continue;
            }
            assert_eq!(validate_root(&store, &root).unwrap(), content.len() as u64);
            assert_eq!(
                read_to_vec(&store, &root).unwrap(),
                content,
                "levels {levels:?}"
            );
        }
    }

    #[test]
    fn tree_builder_shape_follows_go() {
        // One chunk at level 2: every level has one child, so the root collapses
        // to the leaf node.
        let (store, root, _) = build(&[2]);
        let node = Node::decode(store.get(&root).unwrap()).unwrap();
        assert_eq!(node.leaves.len(), 1);
        assert!(node.nodes.is_empty());
        // Two level-0 nodes under a top with two children.
        let (store, root, content) = build(&[0, 1, 0]);
        let node = Node::decode(store.get(&root).unwrap()).unwrap();
        assert_eq!(node.nodes.len(), 2);
        assert_eq!(node.size, content.len() as u64);
        let second = Node::decode(
            store
                .get(&Ref::from_slice(&node.nodes[1].r#ref).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(second.leaves.len(), 1);
        assert_eq!(second.offset, node.nodes[1].offset);
    }
}
