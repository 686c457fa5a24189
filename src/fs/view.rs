//! The namespace as a value: a snapshot of every anchor and its versions, arranged
//! as the mount shows them. Built from the anchor map in one pass, or from the one
//! before and a diff of the map; pure lookups. It owns no locks.

use std::sync::Arc;

use super::names::{self, Unescaped};
use crate::anchor::{Anchor, PROTO_TYPES_ANCHOR};
use crate::blob::Ref;
use crate::schema::MapChange;
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

/// Every anchor, sorted by directory name, in persistent structures: a snapshot
/// clones in O(1) and [`Snapshot::apply`] makes the next one from a diff of the
/// anchor map in O(changes · log n), sharing everything that did not change.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// The anchor map ref this was built from (`None`: no map yet).
    pub map_ref: Option<Ref>,
    /// The proto-types map of that anchor map (the reserved anchor's newest entry).
    pub types_map: Option<Ref>,
    /// Whether nodes of that map could not be read when this was built (the
    /// anchors under them are missing): the next refresh reads the whole map again.
    pub partial: bool,
    /// Sorted by directory name; indexed in O(log n), so a listing can resume at
    /// any offset.
    anchors: imbl::Vector<Arc<AnchorView>>,
    /// The anchors whose directory names are hashes of their long names, by hash.
    long_names: imbl::HashMap<Ref, Arc<AnchorView>>,
    /// How many anchors have their newest version at each time, so the newest of
    /// all (the root directory's time) is O(log n) after any change.
    latest_times: imbl::OrdMap<Timestamp, u32>,
}

/// Counts one more (or one fewer) anchor whose newest version is at `at`.
fn count_latest(times: &mut imbl::OrdMap<Timestamp, u32>, at: Option<Timestamp>, more: bool) {
    let Some(at) = at else {
        return;
    };
    let n = times.get(&at).copied().unwrap_or(0);
    match (more, n) {
        (true, n) => {
            times.insert(at, n + 1);
        }
        (false, 0 | 1) => {
            times.remove(&at);
        }
        (false, n) => {
            times.insert(at, n - 1);
        }
    }
}

/// The view of anchor `name` from its encoded history, or `None` if it has no
/// entries. A history that does not decode gives a damaged view, with a log line.
fn view_of(name: &[u8], payload: &[u8], history_ref: Ref) -> Option<Arc<AnchorView>> {
    let mut v = match crate::anchor::decode_history(name, payload) {
        Ok(hist) if hist.is_empty() => return None,
        Ok(hist) => AnchorView::new(name.to_vec(), &hist),
        Err(e) => {
            log::error!("{e}");
            AnchorView::damaged(name.to_vec(), e.to_string())
        }
    };
    v.history_ref = history_ref;
    Some(Arc::new(v))
}

/// The proto-types map that the reserved anchor's encoded history names.
fn types_map_of(payload: &[u8]) -> Option<Ref> {
    match crate::anchor::decode_history(PROTO_TYPES_ANCHOR, payload) {
        Ok(hist) => hist.last().map(|a| a.r),
        Err(e) => {
            log::error!("{e}");
            None
        }
    }
}

fn is_long(v: &AnchorView) -> bool {
    v.dir_name.starts_with(names::LONG_PREFIX.as_bytes())
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
            if name.as_ref() == PROTO_TYPES_ANCHOR {
                types_map = types_map_of(&payload);
                continue;
            }
            let history_ref = Ref::of(&payload);
            if let Some(v) = old.by_name(&name).filter(|v| v.history_ref == history_ref) {
                views.push(v.clone());
                continue;
            }
            views.extend(view_of(&name, &payload, history_ref));
        }
        views.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
        Snapshot::from_views(map_ref, types_map, views)
    }

    /// The snapshot of the anchor map at `map_ref`, made from this one (the map it
    /// was built from) and the `changes` between the two maps, in O(changes · log n).
    /// Also returns the directory names whose view changed (added, removed, or with
    /// other versions), sorted: what [`changed_since`](Self::changed_since) would
    /// find, without comparing every anchor. Damaged histories and the reserved
    /// anchor are handled as [`rebuild`](Self::rebuild) handles them.
    pub fn apply(&self, map_ref: Option<Ref>, changes: &[MapChange]) -> (Snapshot, Vec<Vec<u8>>) {
        let mut next = Snapshot {
            map_ref,
            partial: false,
            ..self.clone()
        };
        let mut changed = Vec::new();
        for c in changes {
            let name = c.key();
            if name.as_ref() == PROTO_TYPES_ANCHOR {
                next.types_map = c.after().and_then(|p| types_map_of(p));
                continue;
            }
            let view = c.after().and_then(|p| view_of(name, p, Ref::of(p)));
            changed.extend(next.replace(name, view));
        }
        changed.sort();
        changed.dedup();
        (next, changed)
    }

    /// Puts `view` in the place of anchor `name` (`None`: takes it out); returns its
    /// directory name if what is shown changed.
    fn replace(&mut self, name: &[u8], view: Option<Arc<AnchorView>>) -> Option<Vec<u8>> {
        let dir = names::escape(name);
        let at = self
            .anchors
            .binary_search_by(|v| v.dir_name.as_slice().cmp(&dir));
        let long = dir.starts_with(names::LONG_PREFIX.as_bytes());
        match (&view, at) {
            (Some(v), _) if long => {
                self.long_names.insert(Ref::of(name), v.clone());
            }
            (None, Ok(_)) if long => {
                self.long_names.remove(&Ref::of(name));
            }
            _ => {}
        }
        if let Ok(i) = at {
            let old = self.anchors[i].latest().map(|a| a.at);
            count_latest(&mut self.latest_times, old, false);
        }
        count_latest(
            &mut self.latest_times,
            view.as_ref().and_then(|v| v.latest()).map(|a| a.at),
            true,
        );
        match (view, at) {
            (Some(v), Ok(i)) => {
                let shown = v.versions != self.anchors[i].versions;
                self.anchors.set(i, v);
                shown.then_some(dir)
            }
            (Some(v), Err(i)) => {
                self.anchors.insert(i, v);
                Some(dir)
            }
            (None, Ok(i)) => {
                self.anchors.remove(i);
                Some(dir)
            }
            (None, Err(_)) => None,
        }
    }

    fn from_views(
        map_ref: Option<Ref>,
        types_map: Option<Ref>,
        views: Vec<Arc<AnchorView>>,
    ) -> Snapshot {
        let long_names = views
            .iter()
            .filter(|v| is_long(v))
            .map(|v| (Ref::of(&v.name), v.clone()))
            .collect();
        let mut latest_times = imbl::OrdMap::new();
        for v in &views {
            count_latest(&mut latest_times, v.latest().map(|a| a.at), true);
        }
        Snapshot {
            map_ref,
            types_map,
            partial: false,
            anchors: views.into_iter().collect(),
            long_names,
            latest_times,
        }
    }

    /// The time of the newest version of any anchor (`None`: no versions).
    pub fn newest(&self) -> Option<Timestamp> {
        self.latest_times.get_max().map(|(at, _)| *at)
    }

    /// The anchors, sorted by directory name (`anchors()[i]` is O(log n)).
    pub fn anchors(&self) -> &imbl::Vector<Arc<AnchorView>> {
        &self.anchors
    }

    /// The anchor whose directory is `dir_name`.
    pub fn by_dir_name(&self, dir_name: &[u8]) -> Option<&Arc<AnchorView>> {
        match names::unescape(dir_name)? {
            Unescaped::Name(_) => self
                .anchors
                .binary_search_by(|v| v.dir_name.as_slice().cmp(dir_name))
                .ok()
                .and_then(|i| self.anchors.get(i)),
            Unescaped::LongHash(h) => self.long_names.get(&h).filter(|v| v.dir_name == dir_name),
        }
    }

    /// The anchor named `name`.
    pub fn by_name(&self, name: &[u8]) -> Option<&Arc<AnchorView>> {
        let dir = names::escape(name);
        self.by_dir_name(&dir).filter(|v| v.name == name)
    }

    /// The anchors whose view differs between `self` and `newer` (added, removed or
    /// changed), by directory name, found by comparing every anchor (for snapshots
    /// not made one from the other by [`apply`](Self::apply)).
    pub fn changed_since(&self, newer: &Snapshot) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut a = self.anchors.iter().peekable();
        let mut b = newer.anchors.iter().peekable();
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.dir_name == y.dir_name => {
                    if x.versions != y.versions {
                        out.push(y.dir_name.clone());
                    }
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.dir_name < y.dir_name => {
                    out.push(x.dir_name.clone());
                    a.next();
                }
                (Some(_), Some(y)) | (None, Some(y)) => {
                    out.push(y.dir_name.clone());
                    b.next();
                }
                (Some(x), None) => {
                    out.push(x.dir_name.clone());
                    a.next();
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

    #[test]
    fn apply_matches_a_rebuild() {
        use crate::anchor::encode_history;
        use bytes::Bytes;
        let enc = |h: &[Anchor]| Bytes::from(encode_history(h));
        let long = vec![b'y'; 300];
        let bad = Bytes::from_static(b"\x0a\x05xx");
        let before: Vec<(Bytes, Bytes)> = vec![
            (Bytes::from_static(b"a"), enc(&[a(1, 1)])),
            (Bytes::from_static(b"b"), enc(&[a(1, 1)])),
            (Bytes::from_static(b"gone"), enc(&[a(1, 1)])),
            (Bytes::from(long.clone()), enc(&[a(1, 1)])),
            (Bytes::from_static(b"broken"), bad.clone()),
        ];
        let first = Snapshot::rebuild(Some(Ref([1; 32])), before.clone(), &Snapshot::default());
        let changes = vec![
            MapChange::Changed {
                key: Bytes::from_static(b"b"),
                old: enc(&[a(1, 1)]),
                new: enc(&[a(1, 1), a(2, 2)]),
            },
            MapChange::Removed {
                key: Bytes::from_static(b"gone"),
                old: enc(&[a(1, 1)]),
            },
            MapChange::Changed {
                key: Bytes::from(long.clone()),
                old: enc(&[a(1, 1)]),
                new: enc(&[a(3, 3)]),
            },
            MapChange::Added {
                key: Bytes::from_static(b"new-bad"),
                new: bad.clone(),
            },
            MapChange::Added {
                key: Bytes::from_static(b"c"),
                new: enc(&[a(4, 4)]),
            },
            MapChange::Added {
                key: Bytes::from_static(b"empty"),
                new: enc(&[]),
            },
            MapChange::Added {
                key: Bytes::copy_from_slice(PROTO_TYPES_ANCHOR),
                new: enc(&[a(7, 7)]),
            },
        ];
        let (applied, changed) = first.apply(Some(Ref([2; 32])), &changes);
        let mut after: std::collections::BTreeMap<Bytes, Bytes> = before.into_iter().collect();
        for c in &changes {
            match c.after() {
                Some(p) => after.insert(c.key().clone(), p.clone()),
                None => after.remove(c.key()),
            };
        }
        let rebuilt = Snapshot::rebuild(Some(Ref([2; 32])), after.into_iter().collect(), &first);
        let shown = |s: &Snapshot| -> Vec<AnchorView> {
            s.anchors().iter().map(|v| (**v).clone()).collect()
        };
        assert_eq!(shown(&applied), shown(&rebuilt));
        assert_eq!(changed, first.changed_since(&rebuilt));
        assert_eq!(applied.types_map, Some(Ref([7; 32])));
        assert_eq!(applied.types_map, rebuilt.types_map);
        // The newest version of any anchor, kept up to date by every change.
        assert_eq!(first.newest(), Some(a(1, 1).at));
        assert_eq!(applied.newest(), Some(a(4, 4).at));
        assert_eq!(applied.newest(), rebuilt.newest());
        let c_gone = [MapChange::Removed {
            key: Bytes::from_static(b"c"),
            old: enc(&[a(4, 4)]),
        }];
        assert_eq!(applied.apply(None, &c_gone).0.newest(), Some(a(3, 3).at));
        assert!(applied.by_name(b"gone").is_none());
        assert_eq!(applied.by_name(&long).unwrap().versions, vec![a(3, 3)]);
        assert!(applied.by_name(b"new-bad").unwrap().damaged.is_some());
        assert!(
            Arc::ptr_eq(first.by_name(b"a").unwrap(), applied.by_name(b"a").unwrap()),
            "untouched views are shared"
        );
        // The older snapshot is unchanged.
        assert!(first.by_name(b"gone").is_some() && first.by_name(b"c").is_none());
    }
}
