//! The namespace as a value: a snapshot of every anchor and its versions, arranged
//! as the mount shows them. Built from the anchor map in one pass; pure lookups.

use std::collections::HashMap;
use std::sync::Arc;

use super::names::{self, Unescaped};
use crate::anchor::{Anchor, PROTO_TYPES_ANCHOR};
use crate::blob::Ref;
use crate::timestamp::Timestamp;

/// One anchor as the mount shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorView {
    /// The anchor's name (any bytes).
    pub name: Vec<u8>,
    /// Its directory name in the mount.
    pub dir_name: Vec<u8>,
    /// Its versions in time order, one per distinct time: of entries with equal times
    /// the last one is shown, the one a lookup at that time returns.
    pub versions: Vec<Anchor>,
    /// The ref of the encoded history this view was built from (zero if built from
    /// a decoded history), so an unchanged history is not decoded again.
    pub history_ref: Ref,
    /// Why the stored history does not decode, if it does not: the anchor is listed
    /// (with no versions) and everything inside it answers EIO.
    pub damaged: Option<String>,
}

impl AnchorView {
    /// Builds the view of one anchor from its history (oldest first).
    pub fn new(name: Vec<u8>, history: &[Anchor]) -> AnchorView {
        let mut versions: Vec<Anchor> = Vec::with_capacity(history.len());
        for a in history {
            match versions.last_mut() {
                Some(last) if last.at == a.at => *last = *a,
                _ => versions.push(*a),
            }
        }
        AnchorView {
            dir_name: names::escape(&name),
            name,
            versions,
            history_ref: Ref::ZERO,
            damaged: None,
        }
    }

    /// The view of an anchor whose stored history does not decode.
    pub fn damaged(name: Vec<u8>, why: String) -> AnchorView {
        AnchorView {
            damaged: Some(why),
            ..AnchorView::new(name, &[])
        }
    }

    /// The newest version.
    pub fn latest(&self) -> Option<&Anchor> {
        self.versions.last()
    }

    /// The version at exactly `at`.
    pub fn version(&self, at: Timestamp) -> Option<&Anchor> {
        self.versions
            .binary_search_by(|a| a.at.cmp(&at))
            .ok()
            .map(|i| &self.versions[i])
    }

    /// The newest version not after `at` (time travel).
    pub fn as_of(&self, at: Timestamp) -> Option<&Anchor> {
        let n = self.versions.partition_point(|a| a.at <= at);
        n.checked_sub(1).map(|i| &self.versions[i])
    }
}

/// Every anchor, sorted by directory name.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The anchor map ref this was built from (`None`: no map yet).
    pub map_ref: Option<Ref>,
    /// The proto-types map of that anchor map (the reserved anchor's newest entry).
    pub types_map: Option<Ref>,
    anchors: Vec<Arc<AnchorView>>,
    long_names: HashMap<Ref, usize>,
}

impl Snapshot {
    /// Builds the snapshot from every anchor's history. The reserved proto-types
    /// anchor and anchors with no entries are not shown.
    pub fn new(map_ref: Option<Ref>, anchors: Vec<(Vec<u8>, Vec<Anchor>)>) -> Snapshot {
        let types_map = anchors
            .iter()
            .find(|(name, _)| name.as_slice() == PROTO_TYPES_ANCHOR)
            .and_then(|(_, hist)| hist.last())
            .map(|a| a.r);
        let mut views: Vec<Arc<AnchorView>> = anchors
            .into_iter()
            .filter(|(name, hist)| name.as_slice() != PROTO_TYPES_ANCHOR && !hist.is_empty())
            .map(|(name, hist)| Arc::new(AnchorView::new(name, &hist)))
            .collect();
        views.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
        Snapshot::from_views(map_ref, types_map, views)
    }

    /// Builds the snapshot of the anchor map at `map_ref` from its encoded entries,
    /// reusing the views of `old` whose history did not change (a commit to one
    /// anchor does not decode every other history again). An anchor whose history
    /// does not decode is listed as damaged, with a log line; the others are served.
    pub fn rebuild(
        map_ref: Option<Ref>,
        entries: Vec<(bytes::Bytes, bytes::Bytes)>,
        old: &Snapshot,
    ) -> Snapshot {
        let mut views = Vec::with_capacity(entries.len());
        let mut types_map = None;
        for (name, payload) in entries {
            let history_ref = Ref::of(&payload);
            if let Some(v) = old.by_name(&name).filter(|v| v.history_ref == history_ref) {
                views.push(v.clone());
                continue;
            }
            let hist = match crate::anchor::decode_history(&name, &payload) {
                Ok(h) => h,
                Err(e) if name.as_ref() == PROTO_TYPES_ANCHOR => {
                    log::error!("{e}");
                    continue;
                }
                Err(e) => {
                    log::error!("{e}");
                    let mut v = AnchorView::damaged(name.to_vec(), e.to_string());
                    v.history_ref = history_ref;
                    views.push(Arc::new(v));
                    continue;
                }
            };
            if name.as_ref() == PROTO_TYPES_ANCHOR {
                types_map = hist.last().map(|a| a.r);
                continue;
            }
            if hist.is_empty() {
                continue;
            }
            let mut v = AnchorView::new(name.to_vec(), &hist);
            v.history_ref = history_ref;
            views.push(Arc::new(v));
        }
        views.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
        Snapshot::from_views(map_ref, types_map, views)
    }

    fn from_views(
        map_ref: Option<Ref>,
        types_map: Option<Ref>,
        views: Vec<Arc<AnchorView>>,
    ) -> Snapshot {
        let long_names = views
            .iter()
            .enumerate()
            .filter(|(_, v)| v.dir_name.starts_with(names::LONG_PREFIX.as_bytes()))
            .map(|(i, v)| (Ref::of(&v.name), i))
            .collect();
        Snapshot {
            map_ref,
            types_map,
            anchors: views,
            long_names,
        }
    }

    /// The anchors, sorted by directory name.
    pub fn anchors(&self) -> &[Arc<AnchorView>] {
        &self.anchors
    }

    /// The anchor whose directory is `dir_name`.
    pub fn by_dir_name(&self, dir_name: &[u8]) -> Option<&Arc<AnchorView>> {
        match names::unescape(dir_name)? {
            Unescaped::Name(_) => self
                .anchors
                .binary_search_by(|v| v.dir_name.as_slice().cmp(dir_name))
                .ok()
                .map(|i| &self.anchors[i]),
            Unescaped::LongHash(h) => self
                .long_names
                .get(&h)
                .map(|&i| &self.anchors[i])
                .filter(|v| v.dir_name == dir_name),
        }
    }

    /// The anchor named `name`.
    pub fn by_name(&self, name: &[u8]) -> Option<&Arc<AnchorView>> {
        let dir = names::escape(name);
        self.by_dir_name(&dir).filter(|v| v.name == name)
    }

    /// The anchors whose view differs between `self` and `newer` (added, removed or
    /// changed), by directory name.
    pub fn changed_since(&self, newer: &Snapshot) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (a, b) = (&self.anchors, &newer.anchors);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.dir_name == y.dir_name => {
                    if x.versions != y.versions {
                        out.push(y.dir_name.clone());
                    }
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.dir_name < y.dir_name => {
                    out.push(x.dir_name.clone());
                    i += 1;
                }
                (Some(_), Some(y)) => {
                    out.push(y.dir_name.clone());
                    j += 1;
                }
                (Some(x), None) => {
                    out.push(x.dir_name.clone());
                    i += 1;
                }
                (None, Some(y)) => {
                    out.push(y.dir_name.clone());
                    j += 1;
                }
                (None, None) => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(r: u8, secs: i64) -> Anchor {
        Anchor {
            r: Ref([r; 32]),
            at: Timestamp::new(secs, 0).unwrap(),
        }
    }

    #[test]
    fn snapshot_hides_reserved_and_sorts() {
        let s = Snapshot::new(
            None,
            vec![
                (b"zeta".to_vec(), vec![a(1, 10)]),
                (PROTO_TYPES_ANCHOR.to_vec(), vec![a(2, 10)]),
                (b".dot".to_vec(), vec![a(3, 10), a(4, 20)]),
                (b"".to_vec(), vec![a(5, 1)]),
                (b"gone".to_vec(), vec![]),
            ],
        );
        let dirs: Vec<&[u8]> = s.anchors().iter().map(|v| v.dir_name.as_slice()).collect();
        assert_eq!(dirs, vec![&b"%2Edot"[..], b"%empty", b"zeta"]);
        assert_eq!(s.by_dir_name(b"%2Edot").unwrap().name, b".dot");
        assert!(s.by_dir_name(b".dot").is_none());
        assert!(s.by_name(PROTO_TYPES_ANCHOR).is_none());
        assert_eq!(s.by_name(b"").unwrap().dir_name, b"%empty");
        assert_eq!(s.by_name(b".dot").unwrap().latest(), Some(&a(4, 20)));
    }

    #[test]
    fn equal_times_show_the_last_entry() {
        let v = AnchorView::new(b"n".to_vec(), &[a(1, 5), a(2, 5), a(3, 7)]);
        assert_eq!(v.versions, vec![a(2, 5), a(3, 7)]);
        assert_eq!(v.as_of(Timestamp::new(6, 0).unwrap()), Some(&a(2, 5)));
        assert_eq!(v.as_of(Timestamp::new(4, 0).unwrap()), None);
        assert_eq!(v.version(Timestamp::new(7, 0).unwrap()), Some(&a(3, 7)));
        assert_eq!(v.version(Timestamp::new(6, 0).unwrap()), None);
    }

    #[test]
    fn long_names_resolve_by_hash() {
        let long = vec![b'x'; 400];
        let s = Snapshot::new(None, vec![(long.clone(), vec![a(1, 1)])]);
        let dir = names::escape(&long);
        assert_eq!(s.by_dir_name(&dir).unwrap().name, long);
        assert_eq!(s.by_name(&long).unwrap().dir_name, dir);
    }

    #[test]
    fn changes_between_snapshots() {
        let old = Snapshot::new(
            None,
            vec![
                (b"a".to_vec(), vec![a(1, 1)]),
                (b"b".to_vec(), vec![a(1, 1)]),
            ],
        );
        let new = Snapshot::new(
            None,
            vec![
                (b"b".to_vec(), vec![a(1, 1), a(2, 2)]),
                (b"c".to_vec(), vec![a(1, 1)]),
            ],
        );
        assert_eq!(
            old.changed_since(&new),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(new.changed_since(&new).is_empty());
    }

    #[test]
    fn rebuild_reuses_unchanged_histories_and_marks_damaged_ones() {
        use crate::anchor::encode_history;
        let e = |n: &[u8], h: &[Anchor]| {
            (
                bytes::Bytes::copy_from_slice(n),
                bytes::Bytes::from(encode_history(h)),
            )
        };
        let first = Snapshot::rebuild(
            None,
            vec![e(b"a", &[a(1, 1)]), e(b"b", &[a(1, 1)])],
            &Snapshot::default(),
        );
        let second = Snapshot::rebuild(
            Some(Ref([9; 32])),
            vec![
                e(b"a", &[a(1, 1)]),
                e(b"b", &[a(1, 1), a(2, 2)]),
                (
                    bytes::Bytes::from_static(b"bad"),
                    bytes::Bytes::from_static(b"\x0a\x05xx"),
                ),
            ],
            &first,
        );
        assert!(
            Arc::ptr_eq(&first.anchors()[0], &second.anchors()[0]),
            "unchanged: reused"
        );
        assert_eq!(
            second.by_name(b"b").unwrap().versions.len(),
            2,
            "changed: decoded"
        );
        let bad = second.by_name(b"bad").expect("a damaged history is listed");
        assert!(bad.damaged.is_some() && bad.versions.is_empty());
        assert_eq!(second.anchors().len(), 3);
    }
}
