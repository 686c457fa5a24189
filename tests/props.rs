//! Property tests: Map, Set and anchors against plain in-memory models, and decoders
//! fed arbitrary bytes.

use std::collections::{BTreeMap, BTreeSet};

use anchorfs::anchor::{self, Anchor, AnchorError};
use anchorfs::schema::{List, Map, Set};
use anchorfs::store::mem::MemStore;
use anchorfs::store::Store;
use anchorfs::{Ref, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum MapOp {
    Set(u16, Vec<u8>),
    Remove(u16),
}

fn map_op() -> impl Strategy<Value = MapOp> {
    // A small key space so sets, updates and removes collide often; enough keys to
    // split and collapse leaves (MAX = 128).
    prop_oneof![
        3 => (0u16..400, proptest::collection::vec(any::<u8>(), 0..6)).prop_map(|(k, p)| MapOp::Set(k, p)),
        1 => (0u16..400).prop_map(MapOp::Remove),
    ]
}

fn key(k: u16) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn map_matches_btreemap(ops in proptest::collection::vec(map_op(), 1..600)) {
        let store = MemStore::new();
        let mut root = Map::empty_ref();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in &ops {
            match op {
                MapOp::Set(k, p) => {
                    let (r, _) = Map::set(&store, &root, &key(*k), p).unwrap();
                    root = r;
                    model.insert(key(*k), p.clone());
                }
                MapOp::Remove(k) => {
                    let (r, removed) = Map::remove(&store, &root, &key(*k)).unwrap();
                    prop_assert_eq!(removed, model.remove(&key(*k)).is_some());
                    root = r;
                }
            }
        }
        prop_assert_eq!(Map::len(&store, &root).unwrap(), model.len());
        let mut got: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (k, p) in Map::entries(&store, &root).unwrap() {
            prop_assert!(got.insert(k.to_vec(), p.to_vec()).is_none(), "no key twice");
        }
        prop_assert_eq!(&got, &model);
        for k in 0..400u16 {
            let v = Map::lookup(&store, &root, &key(k)).unwrap().map(|b| b.to_vec());
            prop_assert_eq!(v.as_ref(), model.get(&key(k)));
        }
        // The shape is canonical whenever no leaf needed a second split: compare with
        // a bulk build when the map is small enough to be one leaf.
        if model.len() <= 128 {
            let pairs: Vec<(&[u8], &[u8])> = model.iter().map(|(k, p)| (k.as_slice(), p.as_slice())).collect();
            prop_assert_eq!(Map::from_pairs(&store, &pairs).unwrap(), root);
        }
    }

    #[test]
    fn set_matches_btreeset(ops in proptest::collection::vec((any::<bool>(), 0u16..500), 1..700)) {
        let store = MemStore::new();
        let mut root = Set::empty_ref();
        let mut model = BTreeSet::new();
        for (add, m) in &ops {
            let member = Ref::of(&m.to_be_bytes());
            if *add {
                let (r, added) = Set::add(&store, &root, &member).unwrap();
                prop_assert_eq!(added, model.insert(member));
                root = r;
            } else {
                let (r, removed) = Set::remove(&store, &root, &member).unwrap();
                prop_assert_eq!(removed, model.remove(&member));
                root = r;
            }
        }
        let got: BTreeSet<Ref> = Set::members(&store, &root).unwrap().into_iter().collect();
        prop_assert_eq!(&got, &model);
        for m in 0..500u16 {
            let member = Ref::of(&m.to_be_bytes());
            prop_assert_eq!(Set::check(&store, &root, &member).unwrap(), model.contains(&member));
        }
    }
}

/// The model of one anchor: Go's rule on a sorted Vec, written independently of the
/// library's own (insert in time order after equal times, then drop adjacent repeats).
fn model_put(hist: &mut Vec<Anchor>, new: Anchor) {
    if let Some(last) = hist.last() {
        if last.at < new.at {
            if last.r != new.r {
                hist.push(new);
            }
            return;
        }
    }
    let pos = hist
        .iter()
        .position(|a| a.at > new.at)
        .unwrap_or(hist.len());
    hist.insert(pos, new);
    let mut out: Vec<Anchor> = Vec::new();
    for a in hist.drain(..) {
        if out.last().map(|l| l.r) != Some(a.r) {
            out.push(a);
        }
    }
    *hist = out;
}

#[derive(Debug, Clone)]
enum AnchorOp {
    Put(u8, u8, i64),
    Expire(i64, usize),
}

fn anchor_op() -> impl Strategy<Value = AnchorOp> {
    prop_oneof![
        8 => (0u8..5, 0u8..4, 0i64..40).prop_map(|(n, r, t)| AnchorOp::Put(n, r, t)),
        1 => (0i64..40, 0usize..4).prop_map(|(t, m)| AnchorOp::Expire(t, m)),
    ]
}

fn ts(t: i64) -> Timestamp {
    Timestamp::new(1_600_000_000 + t, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn anchors_match_model(ops in proptest::collection::vec(anchor_op(), 1..80)) {
        let store = MemStore::new();
        let mut model: BTreeMap<Vec<u8>, Vec<Anchor>> = BTreeMap::new();
        for op in &ops {
            match op {
                AnchorOp::Put(n, r, t) => {
                    let name = vec![b'n', *n];
                    let a = Anchor { r: Ref([*r; 32]), at: ts(*t) };
                    anchor::put(&store, &name, a.r, a.at).unwrap();
                    model_put(model.entry(name).or_default(), a);
                }
                AnchorOp::Expire(t, min) => {
                    anchor::expire(&store, ts(*t), *min).unwrap();
                    for hist in model.values_mut() {
                        while hist.len() > *min && hist[0].at < ts(*t) {
                            hist.remove(0);
                        }
                    }
                    // A name whose whole history expired is gone.
                    model.retain(|_, h| !h.is_empty());
                }
            }
            // Compare after every step.
            let got: BTreeMap<Vec<u8>, Vec<Anchor>> = anchor::all(&store).unwrap().into_iter().collect();
            prop_assert_eq!(&got, &model);
        }
        for (name, hist) in &model {
            for t in -1..42 {
                let want = hist.iter().rev().find(|a| a.at <= ts(t)).map(|a| a.r);
                match anchor::get(&store, name, ts(t)) {
                    Ok(r) => prop_assert_eq!(Some(r), want),
                    Err(AnchorError::NotFound(_)) => prop_assert_eq!(None, want),
                    Err(e) => prop_assert!(false, "unexpected error {}", e),
                }
            }
        }
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let store = MemStore::new();
        let (r, _) = store.put(&bytes).unwrap();
        let _ = Map::lookup(&store, &r, b"k");
        let _ = Map::entries(&store, &r);
        let _ = Map::set(&store, &r, b"k", b"v");
        let _ = Map::remove(&store, &r, b"k");
        let _ = Set::members(&store, &r);
        let _ = Set::add(&store, &r, &Ref::ZERO);
        let _ = Set::remove(&store, &r, &Ref::ZERO);
        let _ = List::decode(bytes.clone().into());
        let _ = Anchor::decode(&bytes);
        let _ = anchor::decode_history(b"n", &bytes);
    }

    #[test]
    fn damaged_map_nodes_are_errors(flip in 0usize..2000, bit in 0u8..8) {
        // A real map whose root node is replaced by a one-bit variant: every call
        // returns a result (usually an error), never panics, and never claims a
        // member that was not put.
        let store = MemStore::new();
        let mut root = Map::empty_ref();
        for i in 0..200u32 {
            root = Map::set(&store, &root, format!("k{i}").as_bytes(), b"v").unwrap().0;
        }
        let mut node = anchorfs::store::Getter::get(&store, &root).unwrap().to_vec();
        let i = flip % node.len();
        node[i] ^= 1 << bit;
        let (bad, _) = store.put(&node).unwrap();
        if let Ok(entries) = Map::entries(&store, &bad) {
            for (k, _) in entries {
                prop_assert!(k.starts_with(b"k"));
            }
        }
        let _ = Map::set(&store, &bad, b"new", b"v");
    }
}

/// The difference of two maps found by reading both whole: (key, old, new).
type FullDiff = Vec<(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>)>;

fn full_walk_diff(old: &BTreeMap<Vec<u8>, Vec<u8>>, new: &BTreeMap<Vec<u8>, Vec<u8>>) -> FullDiff {
    let keys: BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| ((*k).clone(), old.get(k).cloned(), new.get(k).cloned()))
        .collect()
}

fn read_map(store: &MemStore, root: &Ref) -> BTreeMap<Vec<u8>, Vec<u8>> {
    Map::entries(store, root)
        .unwrap()
        .into_iter()
        .map(|(k, p)| (k.to_vec(), p.to_vec()))
        .collect()
}

fn sorted_diff(changes: Vec<anchorfs::schema::MapChange>) -> FullDiff {
    let mut out: FullDiff = changes
        .iter()
        .map(|c| {
            (
                c.key().to_vec(),
                c.before().map(|b| b.to_vec()),
                c.after().map(|b| b.to_vec()),
            )
        })
        .collect();
    out.sort();
    out
}

fn built(store: &MemStore, m: &BTreeMap<Vec<u8>, Vec<u8>>) -> Ref {
    let pairs: Vec<(&[u8], &[u8])> = m.iter().map(|(k, p)| (&k[..], &p[..])).collect();
    Map::from_pairs(store, &pairs).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Comparing child refs finds exactly what comparing every member finds, both
    /// ways round, between tries of different shapes too (one grown by inserts and
    /// removes, one built at once), and nothing between equal contents.
    #[test]
    fn map_diff_matches_a_full_walk(
        first in proptest::collection::vec(map_op(), 0..500),
        edits in proptest::collection::vec(map_op(), 0..60),
        bulk_old in any::<bool>(),
    ) {
        let store = MemStore::new();
        let apply = |mut root: Ref, ops: &[MapOp]| {
            for op in ops {
                root = match op {
                    MapOp::Set(k, p) => Map::set(&store, &root, &key(*k), p).unwrap().0,
                    MapOp::Remove(k) => Map::remove(&store, &root, &key(*k)).unwrap().0,
                };
            }
            root
        };
        let mut old = apply(Map::empty_ref(), &first);
        if bulk_old {
            old = built(&store, &read_map(&store, &old));
        }
        let new = apply(old, &edits);
        let (old_m, new_m) = (read_map(&store, &old), read_map(&store, &new));
        let want = full_walk_diff(&old_m, &new_m);
        prop_assert_eq!(sorted_diff(Map::diff(&store, &old, &new).unwrap()), want.clone());
        prop_assert_eq!(
            sorted_diff(Map::diff(&store, &new, &old).unwrap()),
            full_walk_diff(&new_m, &old_m)
        );
        // The same contents in another shape: the same differences, and none to itself.
        let new_built = built(&store, &new_m);
        prop_assert_eq!(sorted_diff(Map::diff(&store, &old, &new_built).unwrap()), want);
        prop_assert!(Map::diff(&store, &new, &new_built).unwrap().is_empty());
        prop_assert!(Map::diff(&store, &new, &new).unwrap().is_empty());
    }

    /// With a child of the newer map's root missing, the diff that skips damage
    /// reports the node a full walk skipping damage reports, and treats its members
    /// as absent, as that walk does; the strict diff fails.
    #[test]
    fn map_diff_skipping_damage_matches_a_full_walk(
        first in proptest::collection::vec(map_op(), 300..600),
        edits in proptest::collection::vec(map_op(), 0..40),
        side in 0usize..2,
    ) {
        use prost::Message;
        let store = MemStore::new();
        let apply = |mut root: Ref, ops: &[MapOp]| {
            for op in ops {
                root = match op {
                    MapOp::Set(k, p) => Map::set(&store, &root, &key(*k), p).unwrap().0,
                    MapOp::Remove(k) => Map::remove(&store, &root, &key(*k)).unwrap().0,
                };
            }
            root
        };
        let old = apply(Map::empty_ref(), &first);
        let edited = apply(old, &edits);
        // The edited root with one child pointing at a blob no store has (a node
        // never read, so in no cache either).
        let mut node = anchorfs::proto::schema::Map::decode(
            &anchorfs::store::Getter::get(&store, &edited).unwrap()[..],
        )
        .unwrap();
        let missing = Ref::of(format!("missing {side} {edited}").as_bytes());
        let header = node.node.as_mut().unwrap();
        prop_assume!(header.left.is_some());
        let child = if side == 0 { header.left.as_mut() } else { header.right.as_mut() };
        child.unwrap().r#ref = missing.as_bytes().to_vec().into();
        let (new, _) = store.put(&node.encode_to_vec()).unwrap();

        let old_m = read_map(&store, &old);
        let read = Map::entries_skipping_damage(&store, &new).unwrap();
        let new_m: BTreeMap<Vec<u8>, Vec<u8>> = read
            .entries
            .into_iter()
            .map(|(k, p)| (k.to_vec(), p.to_vec()))
            .collect();
        let got = Map::diff_skipping_damage(&store, &old, &new).unwrap();
        let damaged = |d: &[(Ref, anchorfs::schema::SchemaError)]| {
            d.iter().map(|(r, _)| *r).collect::<Vec<Ref>>()
        };
        prop_assert_eq!(damaged(&got.damaged), vec![missing]);
        prop_assert_eq!(damaged(&read.damaged), vec![missing]);
        prop_assert_eq!(sorted_diff(got.changes), full_walk_diff(&old_m, &new_m));
        prop_assert!(Map::diff(&store, &old, &new).is_err(), "the strict diff fails");
        // Damage on the older side is never skipped: what it held is unknown.
        prop_assert!(Map::diff_skipping_damage(&store, &new, &old).is_err());
    }
}
