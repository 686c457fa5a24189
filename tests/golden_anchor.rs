//! Golden tests: the Go library's anchor transcript (anchors.json), reproduced on
//! every backend.

#[path = "common/pg.rs"]
mod pg_common;

use anchorfs::anchor::{self, Anchor, AnchorError, PROTO_TYPES_ANCHOR};
use anchorfs::schema::{Map, Set};
use anchorfs::store::file::FileStore;
use anchorfs::store::lru::LruStore;
use anchorfs::store::mem::MemStore;
use anchorfs::store::{AnchorStore, StoreError};
use anchorfs::{Ref, Timestamp};
use serde_json::Value;

fn vectors() -> Value {
    let path = format!(
        "{}/../shared/vectors/anchors.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors readable"))
        .expect("vectors parse")
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn opt_ref(v: &Value) -> Option<Ref> {
    v.as_str().map(|s| Ref::from_hex(s).expect("valid ref"))
}

fn time(v: &Value) -> Timestamp {
    let t = Timestamp::parse(v["rfc3339nano"].as_str().unwrap()).unwrap();
    assert_eq!(t.secs(), v["seconds"].as_i64().unwrap());
    assert_eq!(i64::from(t.nanos()), v["nanos"].as_i64().unwrap());
    assert_eq!(t.to_rfc3339(), v["utc_9"].as_str().unwrap());
    t
}

fn map_ref<S: AnchorStore>(s: &S) -> Option<Ref> {
    anchor::map_ref(s).unwrap()
}

fn run_transcript<S: AnchorStore>(store: &S) -> usize {
    let v = vectors();
    let mut checked = 0;
    for rec in v["records"].as_array().unwrap() {
        let seq = &rec["seq"];
        let name = rec.get("name_hex").map(hex).unwrap_or_default();
        match rec["op"].as_str().unwrap() {
            "anchor_map_ref" => {
                assert_eq!(map_ref(store), opt_ref(&rec["map_ref"]), "seq {seq}");
                if rec["error"] == "no anchor map" {
                    assert!(matches!(
                        store.anchor_map_ref(),
                        Err(StoreError::NoAnchorMap)
                    ));
                }
            }
            "put" => {
                assert_eq!(
                    map_ref(store),
                    opt_ref(&rec["map_ref_before"]),
                    "seq {seq} before"
                );
                anchor::put(
                    store,
                    &name,
                    opt_ref(&rec["ref"]).unwrap(),
                    time(&rec["at"]),
                )
                .unwrap();
                assert_eq!(
                    map_ref(store),
                    opt_ref(&rec["map_ref"]),
                    "seq {seq} map ref after put ({})",
                    rec["note"]
                );
            }
            "get" => {
                let got = anchor::get(store, &name, time(&rec["at"]));
                if rec["found"].as_bool().unwrap() {
                    assert_eq!(got.unwrap(), opt_ref(&rec["ref"]).unwrap(), "seq {seq}");
                } else {
                    assert!(
                        matches!(got, Err(AnchorError::NotFound(_))),
                        "seq {seq}: {got:?}"
                    );
                }
            }
            "each" => {
                let mut got: Vec<(Vec<u8>, Anchor)> = Vec::new();
                anchor::each(store, &mut |n, a| {
                    got.push((n.to_vec(), a));
                    Ok(())
                })
                .unwrap();
                let sorted = rec["entries_sorted"].as_array().unwrap();
                let want: Vec<(Vec<u8>, Anchor)> = rec["go_order"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| &sorted[i.as_u64().unwrap() as usize])
                    .map(|e| {
                        (
                            hex(&e["name_hex"]),
                            Anchor {
                                r: opt_ref(&e["ref"]).unwrap(),
                                at: time(&e["at"]),
                            },
                        )
                    })
                    .collect();
                assert_eq!(got, want, "seq {seq}: each in Go's order");
            }
            "expire" => {
                assert_eq!(map_ref(store), opt_ref(&rec["map_ref_before"]));
                let dropped = anchor::expire(
                    store,
                    time(&rec["oldest"]),
                    rec["min"].as_u64().unwrap() as usize,
                )
                .unwrap();
                assert!(dropped.is_empty());
                assert_eq!(map_ref(store), opt_ref(&rec["map_ref"]), "seq {seq}");
            }
            "raw_history" => {
                let root = map_ref(store).unwrap();
                let payload = Map::lookup(store, &root, &name).unwrap();
                assert_eq!(payload.is_some(), rec["present"].as_bool().unwrap());
                let payload = payload.unwrap();
                assert_eq!(
                    payload.as_ref(),
                    hex(&rec["payload_hex"]).as_slice(),
                    "seq {seq} raw history"
                );
                let hist = anchor::history(store, &name).unwrap();
                let entries = rec["entries"].as_array().unwrap();
                assert_eq!(hist.len(), entries.len());
                for (a, e) in hist.iter().zip(entries) {
                    assert_eq!(a.encode(), hex(&e["anchor_hex"]));
                    assert_eq!(a.r, opt_ref(&e["ref"]).unwrap());
                    assert_eq!(a.at, time(&e["at"]));
                }
            }
            "map_root_node" => {
                let r = opt_ref(&rec["map_ref"]).unwrap();
                assert_eq!(map_ref(store), Some(r));
                assert_eq!(
                    store.get(&r).unwrap().as_ref(),
                    hex(&rec["node_hex"]).as_slice()
                );
            }
            other => panic!("unhandled op {other}"),
        }
        checked += 1;
    }
    checked
}

#[test]
fn transcript_on_mem() {
    assert_eq!(run_transcript(&MemStore::new()), 240);
}

#[test]
fn transcript_on_file_and_lru() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        run_transcript(&FileStore::create(dir.path().join("s")).unwrap()),
        240
    );
    let dir2 = tempfile::tempdir().unwrap();
    let lru = LruStore::new(FileStore::create(dir2.path()).unwrap(), 1 << 20);
    assert_eq!(run_transcript(&lru), 240);
}

/// Through the PostgreSQL store, so the map refs it installs are the ones Go made.
#[test]
fn transcript_on_pg() {
    let Some(db) = pg_common::TestDb::new() else {
        return;
    };
    let (store, created) =
        anchorfs::store::pg::PgStore::open(&db.url, anchorfs::store::OpenMode::Create).unwrap();
    assert!(created);
    assert_eq!(run_transcript(&store), 240);
    // A second handle on the database sees the final map.
    let (again, created) =
        anchorfs::store::pg::PgStore::open(&db.url, anchorfs::store::OpenMode::Existing).unwrap();
    assert!(!created);
    assert_eq!(map_ref(&again), map_ref(&store));
}

#[test]
fn put_proto_example() {
    let v = vectors();
    let step = &v["put_proto_example"]["steps"][0];
    let store = MemStore::new();
    let msg = anchorfs::anchor::Anchor {
        r: Ref::of(b"ref:pp1"),
        at: Timestamp::parse("2020-02-02T02:02:02.000000002Z").unwrap(),
    };
    let bytes = msg.encode();
    assert_eq!(bytes, hex(&step["message_hex"]));
    let desc = anchor::descriptor_proto("anchor.Anchor").unwrap();
    assert_eq!(
        hex::encode(&desc),
        step["descriptor_hex"].as_str().unwrap(),
        "descriptor bytes"
    );

    let (r, added) = anchor::put_proto(&store, &bytes, "anchor.Anchor").unwrap();
    assert!(added);
    assert_eq!(Some(r), opt_ref(&step["ref"]));
    let hist = anchor::history(&store, PROTO_TYPES_ANCHOR).unwrap();
    assert_eq!(
        hist.len(),
        step["reserved_anchor_history_len"].as_u64().unwrap() as usize
    );
    assert_eq!(
        Some(hist[0].r),
        opt_ref(&step["types_map_ref"]),
        "types map ref"
    );
    let set = Map::lookup(&store, &hist[0].r, r.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(
        Some(Ref::from_slice(&set).unwrap()),
        opt_ref(&step["type_set_ref"])
    );
    let members = Set::members(&store, &Ref::from_slice(&set).unwrap()).unwrap();
    assert_eq!(members, vec![opt_ref(&step["descriptor_ref"]).unwrap()]);
    assert_eq!(anchor::types_of(&store, &r).unwrap(), members);

    // Putting it again adds nothing and leaves the reserved history alone.
    let before = anchor::map_ref(&store).unwrap();
    assert_eq!(
        anchor::put_proto(&store, &bytes, "anchor.Anchor").unwrap(),
        (r, false)
    );
    assert_eq!(anchor::map_ref(&store).unwrap(), before);
    assert!(anchor::put_proto(&store, &bytes, "no.Such").is_err());
}

#[test]
fn sync_converges_histories_and_type_records() {
    use anchorfs::content;
    let a = MemStore::new();
    let b = MemStore::new();
    let ra = content::store(&a, &b"from a"[..]).unwrap();
    content::put_split(
        &a,
        b"doc",
        ra,
        Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let rb = content::store(&b, &b"from b"[..]).unwrap();
    content::put_split(
        &b,
        b"doc",
        rb,
        Timestamp::parse("2026-01-02T00:00:00Z").unwrap(),
    )
    .unwrap();
    content::put_split(
        &b,
        b"other",
        rb,
        Timestamp::parse("2026-01-03T00:00:00Z").unwrap(),
    )
    .unwrap();
    anchor::sync(&[&a, &b]).unwrap();
    assert_eq!(
        anchor::all(&a).unwrap(),
        anchor::all(&b).unwrap(),
        "same anchors and histories"
    );
    assert_eq!(
        anchor::map_ref(&a).unwrap(),
        anchor::map_ref(&b).unwrap(),
        "same map ref"
    );
    for s in [&a, &b] {
        assert_eq!(content::kind_of(s, &ra).unwrap(), content::Kind::Split);
        assert_eq!(content::kind_of(s, &rb).unwrap(), content::Kind::Split);
        assert_eq!(anchor::history(s, b"doc").unwrap().len(), 2);
    }
    // Rerunning changes nothing.
    let before = anchor::map_ref(&a).unwrap();
    anchor::sync(&[&a, &b]).unwrap();
    assert_eq!(anchor::map_ref(&a).unwrap(), before);
}

#[test]
fn expire_removes_emptied_names_and_keeps_type_records() {
    use anchorfs::content;
    let s = MemStore::new();
    let r = content::store(&s, &b"x"[..]).unwrap();
    content::put_split(
        &s,
        b"old",
        r,
        Timestamp::parse("2000-01-01T00:00:00Z").unwrap(),
    )
    .unwrap();
    let dropped = anchor::expire(&s, Timestamp::parse("2030-01-01T00:00:00Z").unwrap(), 0).unwrap();
    assert_eq!(dropped.len(), 1);
    assert!(
        anchor::all(&s)
            .unwrap()
            .iter()
            .all(|(n, _)| n.as_slice() != b"old"),
        "emptied name removed"
    );
    assert_eq!(
        anchor::history(&s, PROTO_TYPES_ANCHOR).unwrap().len(),
        1,
        "type records kept"
    );
    assert_eq!(content::kind_of(&s, &r).unwrap(), content::Kind::Split);
}
