//! A store's chunking setting: recorded where a store is created, absent (Go's) in a
//! store that was there, used by every writer, and trees written with the new
//! default read back through a decoder written here from docs/FORMAT.md's rules
//! alone (not the crate's reader), as Go's reader would read them.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anchorfs::content;
use anchorfs::split::{SplitOptions, Splitter};
use anchorfs::store::file::{FileStore, SETTINGS_FILE};
use anchorfs::store::mem::MemStore;
use anchorfs::store::{
    self, Chunking, Getter, OpenMode, SettingsError, Store, StoreError, StoreSettings,
};
use anchorfs::Ref;

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---- An independent reader of split trees, from the format's rules ----

/// One child of a node: its ref and stream offset.
#[derive(Debug)]
struct Child {
    r: Vec<u8>,
    offset: u64,
}

/// A `split.Node`: `nodes` = 1, `leaves` = 2 (repeated `Child { ref = 1, offset = 2 }`),
/// `offset` = 3, `size` = 4.
#[derive(Debug, Default)]
struct Node {
    nodes: Vec<Child>,
    leaves: Vec<Child>,
    offset: u64,
    size: u64,
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
    }
    panic!("varint longer than 10 bytes");
}

/// The fields of a message: (field number, wire type, varint value or bytes).
fn fields(b: &[u8]) -> Vec<(u64, u64, u64, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i);
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((field, wire, varint(b, &mut i), &b[..0])),
            2 => {
                let len = varint(b, &mut i) as usize;
                out.push((field, wire, 0, &b[i..i + len]));
                i += len;
            }
            w => panic!("wire type {w} in a split node"),
        }
    }
    out
}

fn decode_child(b: &[u8]) -> Child {
    let mut c = Child {
        r: Vec::new(),
        offset: 0,
    };
    for (field, wire, v, bytes) in fields(b) {
        match (field, wire) {
            (1, 2) => c.r = bytes.to_vec(),
            (2, 0) => c.offset = v,
            other => panic!("unexpected child field {other:?}"),
        }
    }
    assert_eq!(c.r.len(), 32, "a child's ref is 32 bytes");
    c
}

fn decode_node(b: &[u8]) -> Node {
    let mut n = Node::default();
    for (field, wire, v, bytes) in fields(b) {
        match (field, wire) {
            (1, 2) => n.nodes.push(decode_child(bytes)),
            (2, 2) => n.leaves.push(decode_child(bytes)),
            (3, 0) => n.offset = v,
            (4, 0) => n.size = v,
            other => panic!("unexpected node field {other:?}"),
        }
    }
    assert!(
        n.nodes.is_empty() != n.leaves.is_empty(),
        "a node has one kind of child"
    );
    n
}

fn blob(g: &dyn Getter, r: &[u8]) -> Vec<u8> {
    let r = Ref::from_slice(r).expect("32 bytes");
    g.get(&r).expect("present").to_vec()
}

/// The whole stream under `root`, every child checked to start where the bytes
/// before it end; also returns the chunk lengths, in order.
fn read_stream(g: &dyn Getter, root: &Ref) -> (Vec<u8>, Vec<usize>) {
    fn walk(g: &dyn Getter, n: &Node, out: &mut Vec<u8>, chunks: &mut Vec<usize>) {
        assert_eq!(
            n.offset,
            out.len() as u64,
            "a node starts where the bytes are"
        );
        let end = n.offset + n.size;
        if !n.leaves.is_empty() {
            for c in &n.leaves {
                assert_eq!(c.offset, out.len() as u64);
                let b = blob(g, &c.r);
                chunks.push(b.len());
                out.extend_from_slice(&b);
            }
        } else {
            for c in &n.nodes {
                assert_eq!(c.offset, out.len() as u64);
                let child = decode_node(&blob(g, &c.r));
                assert_eq!(child.offset, c.offset);
                walk(g, &child, out, chunks);
            }
        }
        assert_eq!(out.len() as u64, end, "a node's children cover its size");
    }
    let mut out = Vec::new();
    let mut chunks = Vec::new();
    if !root.is_zero() {
        let n = decode_node(&g.get(root).unwrap());
        assert_eq!(n.offset, 0, "a root starts at 0");
        walk(g, &n, &mut out, &mut chunks);
    }
    (out, chunks)
}

/// The byte at `p`, found the way FORMAT.md says: in each node the last child
/// whose offset is at most `p`, down to a chunk.
fn byte_at(g: &dyn Getter, root: &Ref, p: u64) -> u8 {
    let mut n = decode_node(&g.get(root).unwrap());
    loop {
        let kids = if n.leaves.is_empty() {
            &n.nodes
        } else {
            &n.leaves
        };
        let c = kids.iter().rev().find(|c| c.offset <= p).expect("a child");
        if n.leaves.is_empty() {
            n = decode_node(&blob(g, &c.r));
        } else {
            return blob(g, &c.r)[(p - c.offset) as usize];
        }
    }
}

fn new_default_store() -> MemStore {
    let s = MemStore::new();
    s.record_settings(&StoreSettings::NEW_STORE).unwrap();
    s
}

#[test]
fn trees_of_the_new_default_read_back_by_the_format_s_rules() {
    let s = new_default_store();
    let data = pseudo_random(24 << 20, 1);
    let root = content::store(&s, &data[..]).unwrap();
    let (back, chunks) = read_stream(&s, &root);
    assert!(back == data, "the stream reads back");
    let min = Chunking::NEW_STORE.min_size as usize;
    assert!(chunks.len() >= 6, "{chunks:?}");
    assert!(
        chunks[..chunks.len() - 1].iter().all(|&l| l >= min),
        "every chunk but the last has at least {min} bytes: {chunks:?}"
    );
    let mean = data.len() / chunks.len();
    assert!(
        (150 << 10..1 << 20).contains(&mean),
        "mean chunk {mean} is about 256 KiB plus the minimum"
    );
    // The chunks are exactly the splitter's, for the store's options.
    let want: Vec<usize> = Splitter::chunks(&Chunking::NEW_STORE.into(), &data)
        .unwrap()
        .into_iter()
        .map(|(l, _)| l as usize)
        .collect();
    assert_eq!(chunks, want);
    for p in [0u64, 1, 262_143, 262_144, 5 << 20, (24 << 20) - 1] {
        assert_eq!(byte_at(&s, &root, p), data[p as usize], "byte {p}");
    }
}

#[test]
fn a_tree_deep_enough_for_interior_nodes_reads_back() {
    // Small chunks and fan-out 1, so that levels close nodes often: interior
    // nodes at several levels, each read by the rules above.
    let s = MemStore::new();
    let opts = SplitOptions {
        bits: 12,
        min_size: 1024,
        fanout: 1,
    };
    let data = pseudo_random(2 << 20, 2);
    let root = anchorfs::split::store_bytes(&s, &data, opts).unwrap();
    let top = decode_node(&s.get(&root).unwrap());
    assert!(!top.nodes.is_empty(), "the root is an interior node");
    let (back, _) = read_stream(&s, &root);
    assert!(back == data);
}

#[test]
fn small_files_are_one_chunk_in_a_new_store() {
    let s = new_default_store();
    let data = pseudo_random(200 << 10, 3);
    let root = content::store(&s, &data[..]).unwrap();
    let (back, chunks) = read_stream(&s, &root);
    assert!(back == data);
    assert_eq!(chunks, vec![data.len()], "one chunk under one node");
    // Under Go's setting the same file is several chunks.
    let go = MemStore::new();
    let root = content::store(&go, &data[..]).unwrap();
    assert!(read_stream(&go, &root).1.len() > 1);
}

/// The Go vector's root for all of `commonsense.txt`, written with Go's defaults.
fn go_vector() -> (Vec<u8>, Ref) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    let text = std::fs::read(dir.join("commonsense.txt")).expect("the vectors");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("split.json")).unwrap()).unwrap();
    let case = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["input"] == "commonsense_full")
        .unwrap();
    let root = Ref::from_hex(case["root_ref"].as_str().unwrap()).unwrap();
    (text, root)
}

#[test]
fn a_store_without_a_record_writes_go_s_trees() {
    let (text, go_root) = go_vector();
    let dir = tempfile::tempdir().unwrap();
    // A store as Go or an older anchorfs made it: no record.
    let s = FileStore::create(dir.path().join("s")).unwrap();
    assert_eq!(s.recorded_settings().unwrap(), None);
    assert_eq!(s.settings().unwrap(), StoreSettings::GO);
    assert_eq!(content::store(&s, &text[..]).unwrap(), go_root);
    // Opened again by the opener, with Create: it was there, so still none.
    let o = store::open(dir.path().join("s").as_os_str(), OpenMode::Create).unwrap();
    assert!(!o.created && !o.fresh);
    assert_eq!(o.store.recorded_settings().unwrap(), None);
    // A store recording Go's setting explicitly writes the same.
    let m = MemStore::new();
    m.record_settings(&StoreSettings::GO).unwrap();
    assert_eq!(content::store(&m, &text[..]).unwrap(), go_root);
    // And the new default does not.
    assert_ne!(
        content::store(&new_default_store(), &text[..]).unwrap(),
        go_root
    );
}

#[test]
fn created_stores_record_the_new_default_and_keep_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new");
    let o = store::open(path.as_os_str(), OpenMode::Create).unwrap();
    assert!(o.created && o.fresh);
    assert_eq!(
        o.store.recorded_settings().unwrap(),
        Some(StoreSettings::NEW_STORE)
    );
    let file = path.join(SETTINGS_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("anchorfs-settings 1\n"), "{text}");
    assert!(text.contains("chunk-bits 18\n"), "{text}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let names: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".tmp")),
        "no temp file is left: {names:?}"
    );
    // A second record keeps the first.
    let s = FileStore::open(&path).unwrap();
    assert_eq!(
        s.record_settings(&StoreSettings::GO).unwrap(),
        StoreSettings::NEW_STORE
    );
    assert_eq!(s.settings().unwrap(), StoreSettings::NEW_STORE);
    // An empty directory is a new store too.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = store::open(empty.as_os_str(), OpenMode::Create).unwrap();
    assert!(o.fresh);
    assert_eq!(o.store.settings().unwrap(), StoreSettings::NEW_STORE);
    // `mem:` is new every time.
    let o = store::open(OsStr::new("mem:"), OpenMode::Existing).unwrap();
    assert_eq!(o.store.settings().unwrap(), StoreSettings::NEW_STORE);
}

#[test]
fn create_records_what_it_is_given_and_refuses_a_store_that_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let chosen = StoreSettings {
        chunking: Chunking::for_average(64 << 10).unwrap(),
    };
    let o = store::create(path.as_os_str(), &chosen).unwrap();
    assert_eq!(o.store.settings().unwrap(), chosen);
    for again in [chosen, StoreSettings::NEW_STORE] {
        let e = store::create(path.as_os_str(), &again).err().unwrap();
        assert!(matches!(e, StoreError::AlreadyAStore { .. }), "{e}");
    }
    // A Go store (no record) is there too, and stays without one.
    let go = dir.path().join("go");
    FileStore::create(&go).unwrap();
    let e = store::create(go.as_os_str(), &chosen).err().unwrap();
    assert!(matches!(e, StoreError::AlreadyAStore { .. }), "{e}");
    assert!(!go.join(SETTINGS_FILE).exists());
    // Writers of the store use the record.
    let s = FileStore::open(&path).unwrap();
    let data = pseudo_random(4 << 20, 4);
    let root = content::store(&s, &data[..]).unwrap();
    let (back, chunks) = read_stream(&s, &root);
    assert!(back == data);
    let min = chosen.chunking.min_size as usize;
    assert_eq!(min, 16 << 10);
    assert!(chunks[..chunks.len() - 1].iter().all(|&l| l >= min));
    assert!(chunks.len() > 20, "{} chunks", chunks.len());
}

#[test]
fn a_bad_record_stops_writers_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    store::open(path.as_os_str(), OpenMode::Create).unwrap();
    let file = path.join(SETTINGS_FILE);
    let s = FileStore::open(&path).unwrap();
    for (bytes, want) in [
        (
            &b"anchorfs-settings 7\nchunk-bits 20\n"[..],
            SettingsError::Version { found: "7".into() },
        ),
        (&[0xff, 0x00, 0x80][..], SettingsError::NotText),
    ] {
        std::fs::write(&file, bytes).unwrap();
        match s.settings() {
            Err(StoreError::BadSettings { source, .. }) => assert_eq!(source, want),
            other => panic!("{other:?}"),
        }
        let e = content::store(&s, &b"data"[..]).unwrap_err();
        assert!(e.to_string().contains("settings"), "{e}");
        // Reading needs no settings.
        assert!(s.get(&Ref::of(b"absent")).unwrap_err().is_not_found());
    }
    // A record too large is refused unread, as is a link in its place.
    std::fs::write(&file, vec![b'#'; 100_000]).unwrap();
    assert!(matches!(s.settings(), Err(StoreError::Refused { .. })));
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &file).unwrap();
    assert!(matches!(s.settings(), Err(StoreError::Refused { .. })));
    assert!(matches!(
        s.record_settings(&StoreSettings::GO),
        Err(StoreError::Refused { .. })
    ));
}

#[test]
fn wrappers_pass_the_setting_through() {
    let inner = Arc::new(new_default_store());
    let lru = anchorfs::store::lru::LruStore::new(inner.clone(), 1 << 20);
    assert_eq!(lru.settings().unwrap(), StoreSettings::NEW_STORE);
    let faulty = anchorfs::store::faulty::FaultyStore::new(MemStore::new());
    assert_eq!(
        faulty.record_settings(&StoreSettings::NEW_STORE).unwrap(),
        StoreSettings::NEW_STORE
    );
    assert_eq!(
        faulty.inner().recorded_settings().unwrap(),
        Some(StoreSettings::NEW_STORE)
    );
    let shared: Arc<dyn Store> = inner;
    assert_eq!(shared.settings().unwrap(), StoreSettings::NEW_STORE);
    assert_eq!(
        shared.record_settings(&StoreSettings::GO).unwrap(),
        StoreSettings::NEW_STORE
    );
}
