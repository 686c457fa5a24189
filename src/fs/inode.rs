//! The inode table: a stable number for every node of the mount.
//!
//! Numbers are derived from what a node *is* (an anchor directory, a version of an
//! anchor at a time, ...) by hashing, so the same node gets the same number for the
//! whole life of the mount — even after the kernel forgets it and looks it up again —
//! without keeping an entry for every version ever listed. The table keeps entries
//! only for nodes the kernel holds (lookup counts; `forget` frees them), and probes
//! past a hash collision so no number ever names two different nodes at once.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::ids::{Ino, StagedId};
use crate::blob::Ref;
use crate::timestamp::Timestamp;

/// The root directory's inode number (FUSE's fixed root).
pub const ROOT_INO: Ino = Ino(1);

/// [`ROOT_INO`] as the table numbers it.
const ROOT: u64 = ROOT_INO.0;

/// What a node of the mount is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeKey {
    /// The mount's root.
    Root,
    /// `NAME/`: an anchor's directory.
    AnchorDir(Vec<u8>),
    /// `NAME/TIME`: one version.
    Version(Vec<u8>, Timestamp),
    /// `NAME/latest`.
    Latest(Vec<u8>),
    /// `.anchorfs/`.
    Meta,
    /// `.anchorfs/at/`.
    AtDir,
    /// `.anchorfs/at/TIME/`.
    AtTime(Timestamp),
    /// `.anchorfs/at/TIME/NAME`: an anchor's content as of a time.
    AtFile(Timestamp, Vec<u8>),
    /// `.anchorfs/refs/`.
    RefsDir,
    /// `.anchorfs/refs/HEX`.
    RefFile(Ref),
    /// A file being written, not yet a version: its handle's serial number.
    Staged(StagedId),
}

impl NodeKey {
    /// The number this node asks for before collisions are resolved. Fixed nodes
    /// get small numbers; every other number has its top bit set.
    fn preferred(&self) -> u64 {
        let fixed = match self {
            NodeKey::Root => Some(ROOT),
            NodeKey::Meta => Some(2),
            NodeKey::AtDir => Some(3),
            NodeKey::RefsDir => Some(4),
            _ => None,
        };
        if let Some(n) = fixed {
            return n;
        }
        let mut h = Sha256::new();
        match self {
            NodeKey::AnchorDir(n) => {
                h.update(b"d");
                h.update(n);
            }
            NodeKey::Version(n, t) => {
                h.update(b"v");
                h.update(t.secs().to_le_bytes());
                h.update(t.nanos().to_le_bytes());
                h.update(n);
            }
            NodeKey::Latest(n) => {
                h.update(b"l");
                h.update(n);
            }
            NodeKey::AtTime(t) => {
                h.update(b"t");
                h.update(t.secs().to_le_bytes());
                h.update(t.nanos().to_le_bytes());
            }
            NodeKey::AtFile(t, n) => {
                h.update(b"a");
                h.update(t.secs().to_le_bytes());
                h.update(t.nanos().to_le_bytes());
                h.update(n);
            }
            NodeKey::RefFile(r) => {
                h.update(b"r");
                h.update(r.as_bytes());
            }
            NodeKey::Staged(serial) => {
                h.update(b"s");
                h.update(serial.0.to_le_bytes());
            }
            NodeKey::Root | NodeKey::Meta | NodeKey::AtDir | NodeKey::RefsDir => {}
        }
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_le_bytes(b) | (1 << 63)
    }
}

struct Held {
    key: NodeKey,
    lookups: u64,
    /// The node was removed while the kernel held it ([`InodeTable::retire`]):
    /// the number stays the removed node's until forgotten, and a node made
    /// again under the same key gets another.
    retired: bool,
}

/// Inode numbers of the nodes the kernel holds.
#[derive(Default)]
pub struct InodeTable {
    by_ino: HashMap<u64, Held>,
    by_key: HashMap<NodeKey, u64>,
}

impl InodeTable {
    /// An empty table.
    pub fn new() -> InodeTable {
        InodeTable::default()
    }

    /// The number of `key`, held or not (what `readdir` reports).
    pub fn ino_of(&self, key: &NodeKey) -> Ino {
        Ino(self.number_of(key))
    }

    fn number_of(&self, key: &NodeKey) -> u64 {
        if let Some(&ino) = self.by_key.get(key) {
            return ino;
        }
        let mut ino = key.preferred();
        // Skip numbers held by other nodes (a hash collision: practically never),
        // or by a removed node of the same key that the kernel still holds.
        while self
            .by_ino
            .get(&ino)
            .is_some_and(|h| h.key != *key || h.retired)
        {
            ino = ino.wrapping_add(1) | (1 << 63);
        }
        ino
    }

    /// Records one more kernel lookup of `key`; returns its number.
    pub fn lookup(&mut self, key: &NodeKey) -> Ino {
        let ino = self.number_of(key);
        let held = self.by_ino.entry(ino).or_insert_with(|| Held {
            key: key.clone(),
            lookups: 0,
            retired: false,
        });
        held.lookups += 1;
        self.by_key.insert(key.clone(), ino);
        Ino(ino)
    }

    /// The node with number `ino`, if the kernel holds it (the root always).
    pub fn get(&self, ino: Ino) -> Option<&NodeKey> {
        if ino == ROOT_INO {
            return Some(&NodeKey::Root);
        }
        self.by_ino.get(&ino.0).map(|h| &h.key)
    }

    /// The kernel forgets `n` lookups of `ino`; at zero the entry is freed.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        let Ino(ino) = ino;
        let Some(held) = self.by_ino.get_mut(&ino) else {
            return;
        };
        held.lookups = held.lookups.saturating_sub(n);
        if held.lookups == 0 {
            if let Some(h) = self.by_ino.remove(&ino) {
                // A retired number no longer names its key's current node.
                if self.by_key.get(&h.key) == Some(&ino) {
                    self.by_key.remove(&h.key);
                }
            }
        }
    }

    /// `key`'s node was removed (an `rmdir`). The kernel may still hold its
    /// inode, pinned by a descriptor open inside the directory, and it has marked
    /// that inode dead. A node made again under `key` therefore gets a number of
    /// its own, so that the kernel never gives the dead inode to it: creating a
    /// file in a dead directory fails with `ENOENT`. The old number keeps naming
    /// `key` for the kernel's calls on the old inode until it is forgotten.
    pub fn retire(&mut self, key: &NodeKey) {
        if let Some(ino) = self.by_key.remove(key) {
            if let Some(h) = self.by_ino.get_mut(&ino) {
                h.retired = true;
            }
        }
    }

    /// How many nodes are held.
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    /// Whether no node is held.
    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn numbers_are_stable_and_distinct() {
        let mut tab = InodeTable::new();
        let v1 = NodeKey::Version(b"a".to_vec(), t("2020-01-01T00:00:00Z"));
        let v2 = NodeKey::Version(b"a".to_vec(), t("2020-01-01T00:00:01Z"));
        let d = NodeKey::AnchorDir(b"a".to_vec());
        let i1 = tab.lookup(&v1);
        let i2 = tab.lookup(&v2);
        let id = tab.lookup(&d);
        assert_ne!(i1, i2);
        assert_ne!(i1, id);
        assert_eq!(tab.ino_of(&v1), i1, "readdir reports the held number");
        assert_eq!(tab.get(i1), Some(&v1));
        assert_eq!(tab.lookup(&NodeKey::Root), ROOT_INO);
        // Forget frees; a new lookup gets the same number back.
        tab.forget(i1, 1);
        assert_eq!(tab.get(i1), None);
        assert_eq!(tab.lookup(&v1), i1);
        assert_eq!(tab.ino_of(&v1), i1);
    }

    #[test]
    fn lookup_counts() {
        let mut tab = InodeTable::new();
        let k = NodeKey::Latest(b"x".to_vec());
        let i = tab.lookup(&k);
        tab.lookup(&k);
        tab.lookup(&k);
        tab.forget(i, 2);
        assert_eq!(tab.get(i), Some(&k), "one lookup left");
        tab.forget(i, 1);
        assert!(tab.is_empty());
        tab.forget(i, 5); // forgetting the unknown is harmless
    }

    #[test]
    fn fixed_numbers() {
        let tab = InodeTable::new();
        assert_eq!(tab.ino_of(&NodeKey::Root).0, 1);
        assert_eq!(tab.ino_of(&NodeKey::Meta).0, 2);
        assert!(tab.ino_of(&NodeKey::AnchorDir(Vec::new())).0 >= 1 << 63);
    }

    #[test]
    fn many_versions_never_share_a_number() {
        let mut tab = InodeTable::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000i64 {
            let k = NodeKey::Version(b"n".to_vec(), Timestamp::new(i, 0).unwrap());
            assert!(seen.insert(tab.ino_of(&k)));
        }
        // A number held by another node (a collision) is skipped, not shared.
        let a = NodeKey::AnchorDir(b"a".to_vec());
        let other = NodeKey::AnchorDir(b"other".to_vec());
        let pref = a.preferred();
        tab.by_ino.insert(
            pref,
            Held {
                key: other.clone(),
                lookups: 1,
                retired: false,
            },
        );
        let ia = tab.lookup(&a);
        assert_ne!(ia.0, pref);
        assert_eq!(tab.get(ia), Some(&a));
        assert_eq!(tab.get(Ino(pref)), Some(&other));
        assert_eq!(tab.lookup(&a), ia, "and stays put");
    }

    #[test]
    fn a_removed_node_made_again_gets_a_new_number_while_the_old_is_held() {
        let mut tab = InodeTable::new();
        let a = NodeKey::AnchorDir(b"a".to_vec());
        let old = tab.lookup(&a);
        tab.retire(&a);
        // The kernel still holds the removed directory's inode.
        assert_eq!(tab.get(old), Some(&a));
        let new = tab.lookup(&a);
        assert_ne!(new, old, "never the dead inode's number");
        assert_eq!(tab.ino_of(&a), new, "what readdir reports");
        // Forgetting the old one leaves the new one in place.
        tab.forget(old, 1);
        assert_eq!(tab.get(old), None);
        assert_eq!(tab.lookup(&a), new);
        tab.forget(new, 2);
        assert!(tab.is_empty());
        // Retiring a node the kernel does not hold changes nothing.
        tab.retire(&a);
        assert_eq!(tab.lookup(&a), old, "the preferred number again");
    }
}
