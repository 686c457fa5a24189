//! Properties of split trees: round trips, positioned reads, independence from the
//! write pattern, deep trees that Go's builder would truncate, and errors (never
//! hangs, never wrong bytes) on trees that are inconsistent, damaged or missing.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anchorfs::proto::split::{Child, Node};
use anchorfs::split::{
    read_to_vec, store_bytes, validate_root, ChunkStorers, SplitError, SplitOptions, SplitReader,
    SplitWriter, Splitter, PARALLEL_FETCHES,
};
use anchorfs::store::faulty::FaultyStore;
use anchorfs::store::file::FileStore;
use anchorfs::store::lru::LruStore;
use anchorfs::store::mem::MemStore;
use anchorfs::store::{Getter, Store, StoreError};
use anchorfs::{Blob, Ref};
use parking_lot::Mutex;
use proptest::prelude::*;
use prost::Message;

/// A fast deterministic generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Random data with runs of zeros and of short repeated patterns, so that chunk
/// levels (and so tree shapes) vary.
fn mixed_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed ^ 0xabcdef);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let run = (r.below(40_000) + 1) as usize;
        let run = run.min(n - out.len());
        match r.below(4) {
            0 => out.extend(std::iter::repeat_n(0u8, run)),
            1 => {
                let pat = random_bytes((r.below(16) + 1) as usize, r.next());
                out.extend(pat.iter().cycle().take(run));
            }
            _ => out.extend_from_slice(&random_bytes(run, r.next())),
        }
    }
    out
}

/// Writes `data` in calls of random sizes drawn from `seed`.
fn write_pieces<S: Store>(store: &S, data: &[u8], opts: SplitOptions, seed: u64) -> Ref {
    feed(SplitWriter::with_options(store, opts).unwrap(), data, seed)
}

/// Feeds `data` to `w` in calls of random sizes drawn from `seed`; returns the root.
fn feed<W>(mut w: SplitWriter<W>, data: &[u8], seed: u64) -> Ref
where
    W: std::ops::Deref,
    W::Target: Store,
{
    let mut r = Rng::new(seed);
    let mut i = 0;
    while i < data.len() {
        let max = match r.below(3) {
            0 => 16,
            1 => 8 << 10,
            _ => 600 << 10,
        };
        let n = ((r.below(max) + 1) as usize).min(data.len() - i);
        w.write_all(&data[i..i + n]).unwrap();
        i += n;
    }
    w.finish().unwrap()
}

/// The leaf chunks under `root`, in order.
fn leaf_refs<G: Getter>(g: &G, root: &Ref) -> Vec<Ref> {
    fn walk<G: Getter>(g: &G, r: &Ref, out: &mut Vec<Ref>) {
        let node = Node::decode(g.get(r).unwrap()).unwrap();
        for c in &node.leaves {
            out.push(Ref::from_slice(&c.r#ref).unwrap());
        }
        for c in &node.nodes {
            walk(g, &Ref::from_slice(&c.r#ref).unwrap(), out);
        }
    }
    let mut out = Vec::new();
    if !root.is_zero() {
        walk(g, root, &mut out);
    }
    out
}

/// The refs of the chunks the splitter cuts `data` into.
fn expected_chunks(data: &[u8], opts: &SplitOptions) -> Vec<Ref> {
    let mut at = 0usize;
    Splitter::chunks(opts, data)
        .unwrap()
        .into_iter()
        .map(|(len, _)| {
            let r = Ref::of(&data[at..at + len as usize]);
            at += len as usize;
            r
        })
        .collect()
}

/// Whether Go's builder would drop open nodes at the end of this sequence of tree
/// levels: level 0 empty at the end while a level between it and the top holds
/// children.
fn go_would_drop(tree_levels: &[usize]) -> bool {
    let mut counts: Vec<usize> = Vec::new();
    for &lv in tree_levels {
        if counts.is_empty() {
            counts.push(0);
        }
        counts[0] += 1;
        for i in 0..lv {
            if i + 1 == counts.len() {
                counts.push(0);
            }
            counts[i + 1] += 1;
            counts[i] = 0;
        }
    }
    let top = counts.len().saturating_sub(1);
    top > 1 && counts[0] == 0 && counts[1..top].iter().any(|&c| c > 0)
}

fn small_options() -> impl Strategy<Value = SplitOptions> {
    (1u32..7, 0usize..80, 1u32..4).prop_map(|(bits, min_size, fanout)| SplitOptions {
        bits,
        min_size,
        fanout,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_default_options(
        size in prop_oneof![0usize..3000, 0usize..(3 << 20)],
        mixed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let data = if mixed { mixed_bytes(size, seed) } else { random_bytes(size, seed) };
        let opts = SplitOptions::default();
        let store = MemStore::new();
        let root = write_pieces(&store, &data, opts, seed ^ 1);
        prop_assert_eq!(root.is_zero(), data.is_empty());
        prop_assert_eq!(validate_root(&store, &root).unwrap(), data.len() as u64);
        prop_assert_eq!(read_to_vec(&store, &root).unwrap(), data.clone());
        let mut back = Vec::new();
        SplitReader::new(&store, root).unwrap().read_to_end(&mut back).unwrap();
        prop_assert!(back == data);
        // The threaded writer cuts where the one-shot splitter does.
        prop_assert_eq!(leaf_refs(&store, &root), expected_chunks(&data, &opts));
        // However it is fed, the same input gives the same root.
        let other = MemStore::new();
        prop_assert_eq!(store_bytes(&other, &data, opts).unwrap(), root);
        prop_assert_eq!(write_pieces(&other, &data, opts, seed ^ 2), root);
    }

    #[test]
    fn read_at_matches_the_slice(
        opts in prop_oneof![Just(SplitOptions::default()), small_options()],
        size in 1usize..400_000,
        seed in any::<u64>(),
        reads in proptest::collection::vec((any::<u64>(), 0usize..70_000), 1..24),
    ) {
        let data = mixed_bytes(size, seed);
        let store = MemStore::new();
        let root = store_bytes(&store, &data, opts).unwrap();
        let mut reader = SplitReader::new(&store, root).unwrap();
        prop_assert_eq!(reader.size(), data.len() as u64);
        for (at, len) in reads {
            let at = at % (data.len() as u64 + 10);
            let mut buf = vec![0u8; len];
            let n = reader.read_at(at, &mut buf).unwrap();
            let start = (at as usize).min(data.len());
            let end = (start + len).min(data.len());
            prop_assert_eq!(n, end - start);
            prop_assert_eq!(&buf[..n], &data[start..end]);
            // The same through Seek + Read.
            reader.seek(SeekFrom::Start(at)).unwrap();
            let mut got = Vec::new();
            (&mut reader).take(len as u64).read_to_end(&mut got).unwrap();
            prop_assert_eq!(&got[..], &data[start..end]);
            // read_exact_at refuses to run past the end.
            let whole = reader.read_exact_at(at, &mut buf);
            if at as usize + len <= data.len() {
                prop_assert!(whole.is_ok());
                prop_assert_eq!(&buf[..], &data[start..end]);
            } else {
                let past = matches!(whole, Err(SplitError::PastEnd { .. }));
                prop_assert!(past);
            }
        }
        reader.seek(SeekFrom::End(-1)).unwrap();
        let mut last = [0u8; 4];
        prop_assert_eq!(reader.read(&mut last).unwrap(), 1);
        prop_assert_eq!(last[0], data[data.len() - 1]);
        prop_assert!(reader.seek(SeekFrom::Current(-(data.len() as i64) - 1)).is_err());
    }

}

/// A store that says it prefers batches, so readers fetch through
/// `get_many_into` in runs, as they do from a database.
struct BatchingFiles(FileStore);

impl Getter for BatchingFiles {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        self.0.get(r)
    }
    fn get_into(&self, r: &Ref, out: &mut [u8]) -> Result<usize, StoreError> {
        self.0.get_into(r, out)
    }
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.0.list_refs(after, f)
    }
    fn prefers_batches(&self) -> bool {
        true
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Large reads go straight into the caller's buffer where a chunk lies wholly
    /// inside, through each backend's own `get_into`; small ones fetch whole
    /// chunks. Both give the content's bytes, however reads and chunks overlap.
    #[test]
    fn reads_of_every_size_match_the_content_through_each_backend(
        size in 1usize..600_000,
        seed in any::<u64>(),
        reads in proptest::collection::vec((any::<u64>(), 0usize..300_000), 1..12),
    ) {
        let data = mixed_bytes(size, seed);
        let dir = tempfile::tempdir().unwrap();
        let file = FileStore::create(dir.path().join("store")).unwrap();
        let opts = SplitOptions { bits: 13, min_size: 1024, fanout: 4 };
        let root = store_bytes(&file, &data, opts).unwrap();
        let lru = LruStore::new(FileStore::open(dir.path().join("store")).unwrap(), 64 << 10);
        let cache = anchorfs::store::disk_cache::DiskCache::open(
            FileStore::open(dir.path().join("store")).unwrap(),
            &dir.path().join("cache"),
            1 << 30,
        )
        .unwrap();
        let batching = BatchingFiles(FileStore::open(dir.path().join("store")).unwrap());
        let stores: Vec<(&str, &dyn Getter)> =
            vec![("file", &file), ("lru", &lru), ("disk cache", &cache), ("batching", &batching)];
        for (name, store) in stores {
            // Twice through the disk cache: copies made, then copies read.
            for _ in 0..2 {
                let reader = SplitReader::new(store, root).unwrap();
                for &(at, len) in &reads {
                    let at = at % (data.len() as u64 + 10);
                    let start = (at as usize).min(data.len());
                    let end = (start + len).min(data.len());
                    let mut buf = vec![0xa5u8; len];
                    let n = reader.read_at(at, &mut buf).unwrap();
                    prop_assert_eq!(n, end - start, "{}", name);
                    prop_assert!(buf[..n] == data[start..end], "{} read {}+{}", name, at, len);
                    let mut got = Vec::new();
                    for (off, chunk) in reader.chunks_covering(at, len).unwrap() {
                        prop_assert!(chunk[..] == data[off as usize..off as usize + chunk.len()], "{}", name);
                        got.push((off, chunk.len()));
                    }
                    if end > start {
                        prop_assert!(got.first().is_some_and(|&(o, _)| o <= at), "{}", name);
                        prop_assert!(got.last().is_some_and(|&(o, l)| o as usize + l >= end), "{}", name);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn storing_threads_build_the_same_tree(
        opts in prop_oneof![Just(SplitOptions::default()), small_options()],
        size in prop_oneof![0usize..400_000, 0usize..(3 << 20)],
        threads in 1usize..4,
        seed in any::<u64>(),
    ) {
        let data = mixed_bytes(size, seed);
        let store = Arc::new(MemStore::new());
        let w = SplitWriter::with_storers(store.clone(), opts, &ChunkStorers::new(threads)).unwrap();
        let root = feed(w, &data, seed ^ 3);
        let alone = MemStore::new();
        prop_assert_eq!(store_bytes(&alone, &data, opts).unwrap(), root);
        // The same blobs, no more: every chunk and node was stored exactly as the
        // one-thread writer stores them.
        prop_assert_eq!(store.len(), alone.len());
        prop_assert_eq!(read_to_vec(&*store, &root).unwrap(), data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn deep_trees_lose_nothing(
        opts in small_options(),
        size in 0usize..60_000,
        write_seed in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let data = mixed_bytes(size, seed);
        let store = MemStore::new();
        let root = write_pieces(&store, &data, opts, write_seed);
        prop_assert_eq!(validate_root(&store, &root).unwrap(), data.len() as u64);
        prop_assert_eq!(read_to_vec(&store, &root).unwrap(), data.clone());
        prop_assert_eq!(leaf_refs(&store, &root), expected_chunks(&data, &opts));
        prop_assert_eq!(store_bytes(&MemStore::new(), &data, opts).unwrap(), root);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_root_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let store = MemStore::new();
        let (r, _) = store.put(&bytes).unwrap();
        let _ = validate_root(&store, &r);
        if let Ok(mut reader) = SplitReader::new(&store, r) {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out);
            let mut buf = [0u8; 100];
            let _ = reader.read_at(reader.size().saturating_sub(5), &mut buf);
        }
        // Read as what it is, a raw blob, it reads back exactly.
        let raw = SplitReader::raw(&store, r).unwrap();
        prop_assert!(raw.is_raw());
        let mut out = vec![0u8; bytes.len()];
        raw.read_exact_at(0, &mut out).unwrap();
        prop_assert_eq!(out, bytes);
    }

    #[test]
    fn hand_built_leaf_nodes_give_their_bytes_or_an_error(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 1..6),
        offsets in proptest::collection::vec(0u64..120, 6),
        exact_offsets in any::<bool>(),
        node_offset in prop_oneof![Just(0u64), 0u64..5],
        size_delta in -3i64..3,
    ) {
        let store = MemStore::new();
        let mut leaves = Vec::new();
        let mut at = 0u64;
        let mut want = Vec::new();
        let mut offsets_exact = true;
        for (i, c) in chunks.iter().enumerate() {
            let (r, _) = store.put(c).unwrap();
            let off = if exact_offsets { at } else { offsets[i] };
            offsets_exact &= off == at;
            leaves.push(Child { r#ref: Blob::copy_from_slice(r.as_bytes()), offset: off });
            at += c.len() as u64;
            want.extend_from_slice(c);
        }
        let size = (at as i64 + size_delta).max(0) as u64;
        let node = Node { nodes: vec![], leaves, offset: node_offset, size };
        let (root, _) = store.put(&node.encode_to_vec()).unwrap();
        let consistent = offsets_exact && node_offset == 0 && size == at;
        let read = read_to_vec(&store, &root);
        match read {
            Ok(got) => {
                prop_assert!(consistent, "an inconsistent node read without error");
                prop_assert_eq!(got, want);
            }
            Err(_) => prop_assert!(!consistent, "a consistent node failed to read"),
        }
        // validate_root cannot see chunk lengths, but must agree on the rest.
        if consistent {
            prop_assert_eq!(validate_root(&store, &root).unwrap(), size);
        }
    }
}

/// A node blob with the given children.
fn put_node(store: &MemStore, leaves: bool, kids: &[(Ref, u64)], offset: u64, size: u64) -> Ref {
    let kids: Vec<Child> = kids
        .iter()
        .map(|(r, o)| Child {
            r#ref: Blob::copy_from_slice(r.as_bytes()),
            offset: *o,
        })
        .collect();
    let node = if leaves {
        Node {
            nodes: vec![],
            leaves: kids,
            offset,
            size,
        }
    } else {
        Node {
            nodes: kids,
            leaves: vec![],
            offset,
            size,
        }
    };
    store.put(&node.encode_to_vec()).unwrap().0
}

#[test]
fn trees_that_do_not_cover_their_size_are_errors() {
    let store = MemStore::new();
    let a = store.put(&[1u8; 100]).unwrap().0;
    let b = store.put(&[2u8; 100]).unwrap().0;
    let c = store.put(&[3u8; 100]).unwrap().0;
    // A leaf node whose last chunk is shorter than its span.
    let short = put_node(&store, true, &[(a, 0), (b, 100)], 0, 250);
    // The shape Go's builder leaves behind: the top claims the whole size, but
    // its only children cover the first part.
    let left = put_node(&store, true, &[(a, 0), (b, 100)], 0, 200);
    let truncated = put_node(&store, false, &[(left, 0)], 0, 300);
    // A child node that starts elsewhere than its parent says.
    let right = put_node(&store, true, &[(c, 200)], 200, 100);
    let shifted = put_node(&store, false, &[(left, 0), (right, 150)], 0, 300);
    // A chunk longer than its span.
    let long = put_node(&store, true, &[(a, 0), (b, 50)], 0, 150);
    // And the consistent tree, for contrast.
    let good = put_node(&store, false, &[(left, 0), (right, 200)], 0, 300);
    let mut want = vec![1u8; 100];
    want.extend([2u8; 100]);
    want.extend([3u8; 100]);
    assert_eq!(read_to_vec(&store, &good).unwrap(), want);
    assert_eq!(validate_root(&store, &good).unwrap(), 300);

    for (name, root, size, head_ok, tail_ok) in [
        ("short chunk", short, 250, true, false),
        ("truncated top", truncated, 300, false, false),
        ("shifted child", shifted, 300, false, false),
        ("long chunk", long, 150, false, true),
    ] {
        let mut reader = SplitReader::new(&store, root).unwrap();
        assert_eq!(reader.size(), size, "{name}");
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{name}: {err}");
        let e = read_to_vec(&store, &root).unwrap_err();
        assert!(matches!(e, SplitError::Coverage { .. }), "{name}: {e}");
        // Bytes outside the bad part still read; the bad part never does.
        let mut first = [0u8; 50];
        if head_ok {
            reader.read_exact_at(0, &mut first).unwrap();
            assert_eq!(first, [1u8; 50]);
        } else {
            assert!(reader.read_exact_at(0, &mut first).is_err(), "{name}");
        }
        let mut last = [0u8; 1];
        let tail = reader.read_at(size - 1, &mut last);
        assert_eq!(tail.is_ok(), tail_ok, "{name}");
    }
    // validate_root catches what it can see without reading chunks.
    assert!(matches!(
        validate_root(&store, &truncated),
        Err(SplitError::Coverage { .. })
    ));
    assert!(matches!(
        validate_root(&store, &shifted),
        Err(SplitError::Coverage { .. })
    ));

    // Malformed nodes: offsets out of order, both kinds, no children, bad ref.
    let disorder = put_node(&store, true, &[(a, 0), (b, 100), (c, 50)], 0, 300);
    let empty = put_node(&store, true, &[], 0, 0);
    let both = store
        .put(
            &Node {
                nodes: vec![Child {
                    r#ref: Blob::copy_from_slice(left.as_bytes()),
                    offset: 0,
                }],
                leaves: vec![Child {
                    r#ref: Blob::copy_from_slice(a.as_bytes()),
                    offset: 0,
                }],
                offset: 0,
                size: 100,
            }
            .encode_to_vec(),
        )
        .unwrap()
        .0;
    let bad_ref = store
        .put(
            &Node {
                nodes: vec![],
                leaves: vec![Child {
                    r#ref: Blob::from_static(b"short"),
                    offset: 0,
                }],
                offset: 0,
                size: 5,
            }
            .encode_to_vec(),
        )
        .unwrap()
        .0;
    let not_root = put_node(&store, true, &[(a, 10)], 10, 100);
    for root in [disorder, empty, both, bad_ref, not_root] {
        assert!(matches!(
            SplitReader::new(&store, root),
            Err(SplitError::Malformed { .. })
        ));
        assert!(matches!(
            validate_root(&store, &root),
            Err(SplitError::Malformed { .. })
        ));
    }
    // A node child that is not a node.
    let chunk_as_node = put_node(&store, false, &[(a, 0)], 0, 100);
    assert!(matches!(
        read_to_vec(&store, &chunk_as_node),
        Err(SplitError::Decode { .. }) | Err(SplitError::Malformed { .. })
    ));
    assert!(validate_root(&store, &chunk_as_node).is_err());
    // A root that is not there.
    let missing = Ref::of(b"never stored");
    assert!(matches!(
        SplitReader::new(&store, missing),
        Err(SplitError::Store(StoreError::NotFound(_)))
    ));
}

#[test]
fn go_truncation_cases_keep_all_data() {
    // Sweep small options and inputs, find inputs where Go's builder would drop
    // open nodes at the end, and check that nothing is lost here.
    let mut found = 0;
    let mut tried = 0;
    'outer: for fanout in 1u32..3 {
        for bits in 2u32..5 {
            for seed in 0..40u64 {
                let opts = SplitOptions {
                    bits,
                    min_size: 8,
                    fanout,
                };
                let data = mixed_bytes(2000 + (seed as usize * 997) % 30_000, seed);
                let levels: Vec<usize> = Splitter::chunks(&opts, &data)
                    .unwrap()
                    .iter()
                    .map(|&(_, lv)| (lv / fanout) as usize)
                    .collect();
                tried += 1;
                if !go_would_drop(&levels) {
                    continue;
                }
                found += 1;
                let store = MemStore::new();
                let root = write_pieces(&store, &data, opts, seed);
                assert_eq!(validate_root(&store, &root).unwrap(), data.len() as u64);
                assert_eq!(read_to_vec(&store, &root).unwrap(), data);
                if found >= 25 {
                    break 'outer;
                }
            }
        }
    }
    assert!(
        found >= 10,
        "only {found} of {tried} inputs hit Go's truncation"
    );
}

#[test]
fn damaged_or_missing_blobs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::create(dir.path()).unwrap();
    let data = random_bytes(600_000, 42);
    let root = store_bytes(&store, &data, SplitOptions::default()).unwrap();
    let chunks = leaf_refs(&store, &root);
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    assert_eq!(read_to_vec(&store, &root).unwrap(), data);

    // Flip one byte of the third chunk's file.
    let victim = chunks[2];
    let path = store.blob_path(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let reader = SplitReader::new(&store, root).unwrap();
    let e = read_to_vec(&store, &root).unwrap_err();
    assert!(
        matches!(e, SplitError::Store(StoreError::Damaged(r)) if r == victim),
        "{e}"
    );
    // Reads that touch only good chunks still work; any read touching the bad
    // one fails.
    let mut buf = vec![0u8; 1000];
    reader.read_exact_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..], &data[..1000]);
    let starts = chunk_starts(&store, &root);
    let bad_at = starts[2] + mid as u64;
    assert!(reader.read_at(bad_at, &mut buf).is_err());
    assert!(reader
        .read_at(bad_at.saturating_sub(500), &mut buf)
        .is_err());
    // Through the LRU cache too: the damage is not cached as good bytes.
    let lru = LruStore::new(FileStore::open(dir.path()).unwrap(), 64 << 20);
    assert!(read_to_vec(&lru, &root).is_err());
    assert!(read_to_vec(&lru, &root).is_err());

    // A missing chunk.
    std::fs::remove_file(&path).unwrap();
    let e = read_to_vec(&store, &root).unwrap_err();
    assert!(matches!(e, SplitError::Store(StoreError::NotFound(r)) if r == victim));
    assert!(matches!(
        validate_root(&store, &root),
        Err(SplitError::Store(StoreError::NotFound(r))) if r == victim
    ));
    let io = SplitReader::new(&store, root)
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

    // A damaged root node.
    let root_path = store.blob_path(&root);
    let mut node = std::fs::read(&root_path).unwrap();
    node[0] ^= 1;
    std::fs::write(&root_path, &node).unwrap();
    assert!(matches!(
        SplitReader::new(&store, root),
        Err(SplitError::Store(StoreError::Damaged(_)))
    ));
    assert!(validate_root(&store, &root).is_err());
}

/// The stream offsets of the leaf chunks under `root`, in order.
fn chunk_starts<G: Getter>(g: &G, root: &Ref) -> Vec<u64> {
    fn walk<G: Getter>(g: &G, r: &Ref, out: &mut Vec<u64>) {
        let node = Node::decode(g.get(r).unwrap()).unwrap();
        out.extend(node.leaves.iter().map(|c| c.offset));
        for c in &node.nodes {
            walk(g, &Ref::from_slice(&c.r#ref).unwrap(), out);
        }
    }
    let mut out = Vec::new();
    walk(g, root, &mut out);
    out
}

#[test]
fn a_small_edit_adds_few_blobs() {
    let mut data = random_bytes(8 << 20, 7);
    let store = MemStore::new();
    let first = store_bytes(&store, &data, SplitOptions::default()).unwrap();
    let before = store.len();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 10] {
        *b = b.wrapping_add(1);
    }
    let second = store_bytes(&store, &data, SplitOptions::default()).unwrap();
    assert_ne!(first, second);
    let added = store.len() - before;
    // Go adds 3: the changed chunk, its leaf node and the root.
    assert!(added <= 5, "{added} new blobs for a 10-byte edit");
    assert!(added >= 2);
    assert_eq!(read_to_vec(&store, &second).unwrap(), data);
}

#[test]
fn concurrent_read_at_from_many_threads() {
    let data = mixed_bytes(3 << 20, 99);
    let store = MemStore::new();
    let opts = SplitOptions {
        bits: 12,
        min_size: 512,
        fanout: 2,
    };
    let root = store_bytes(&store, &data, opts).unwrap();
    let reader = SplitReader::new(&store, root).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (reader, data) = (&reader, &data);
            s.spawn(move || {
                let mut r = Rng::new(t + 1);
                let mut buf = vec![0u8; 40_000];
                for _ in 0..300 {
                    let at = r.below(data.len() as u64) as usize;
                    let len = r.below(40_000) as usize;
                    let n = reader.read_at(at as u64, &mut buf[..len]).unwrap();
                    let end = (at + len).min(data.len());
                    assert_eq!(n, end - at);
                    assert_eq!(&buf[..n], &data[at..end]);
                }
            });
        }
    });
}

/// Counts the gets of each ref.
struct Counting<'a> {
    inner: &'a MemStore,
    gets: Mutex<HashMap<Ref, usize>>,
    total: AtomicUsize,
}

impl Getter for Counting<'_> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        *self.gets.lock().entry(*r).or_default() += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        self.inner.get(r)
    }
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.list_refs(after, f)
    }
}

#[test]
fn sequential_reads_fetch_each_blob_once() {
    // Random data: no two chunks alike, so each blob has one place in the tree.
    let data = random_bytes(2 << 20, 5);
    let store = MemStore::new();
    let opts = SplitOptions {
        bits: 11,
        min_size: 256,
        fanout: 2,
    };
    let root = store_bytes(&store, &data, opts).unwrap();
    let counting = Counting {
        inner: &store,
        gets: Mutex::new(HashMap::new()),
        total: AtomicUsize::new(0),
    };
    let mut reader = SplitReader::new(&counting, root).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1000];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out, data);
    let gets = counting.gets.lock();
    let most = gets.values().max().copied().unwrap_or(0);
    assert_eq!(most, 1, "a blob was fetched {most} times");
    // Every blob of the tree was fetched: nothing bypasses the store's get.
    assert_eq!(gets.len(), store.len());
    assert_eq!(counting.total.load(Ordering::Relaxed), store.len());
}

/// A store across a network, as readers see it: it prefers batches, and counts
/// its calls; `lose` is a chunk it does not have.
struct Batching<'a> {
    inner: &'a MemStore,
    gets: AtomicUsize,
    batches: AtomicUsize,
    lose: Option<Ref>,
}

impl Getter for Batching<'_> {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(r)
    }
    fn get_many(&self, refs: &[Ref]) -> Vec<Result<Blob, StoreError>> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        refs.iter()
            .map(|r| match self.lose {
                Some(l) if l == *r => Err(StoreError::NotFound(*r)),
                _ => self.inner.get(r),
            })
            .collect()
    }
    fn prefers_batches(&self) -> bool {
        true
    }
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.list_refs(after, f)
    }
}

#[test]
fn reads_in_flight_at_once_share_their_chunks_and_all_get_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::create(dir.path()).unwrap();
    let data = mixed_bytes(3 << 20, 5);
    let opts = SplitOptions {
        bits: 15,
        min_size: 4096,
        fanout: 4,
    };
    let root = store_bytes(&store, &data, opts).unwrap();
    let reader = SplitReader::new(&store, root).unwrap();
    // Eight threads, each reading the content in 100 KiB pieces from its own
    // start, so that their reads overlap in every way at once.
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (reader, data) = (&reader, &data);
            s.spawn(move || {
                let piece = 100 << 10;
                let mut buf = vec![0u8; piece];
                let mut at = t * 37_000;
                while at < data.len() as u64 {
                    let n = reader.read_at(at, &mut buf).unwrap();
                    let a = at as usize;
                    assert!(buf[..n] == data[a..a + n], "thread {t} at {at}");
                    at += n as u64;
                }
            });
        }
    });
}

#[test]
fn a_store_that_prefers_batches_gets_the_chunks_of_a_read_in_a_few_calls() {
    let data = random_bytes(1 << 20, 8);
    let store = MemStore::new();
    let opts = SplitOptions {
        bits: 12,
        min_size: 256,
        fanout: 4,
    };
    let root = store_bytes(&store, &data, opts).unwrap();
    let batching = Batching {
        inner: &store,
        gets: AtomicUsize::new(0),
        batches: AtomicUsize::new(0),
        lose: None,
    };
    let reader = SplitReader::new(&batching, root).unwrap();
    let nodes_read = batching.gets.load(Ordering::Relaxed);
    // One read of 256 KiB, about 64 chunks: at most one batch per fetching lane.
    let mut buf = vec![0u8; 256 << 10];
    let n = reader.read_at(100_000, &mut buf).unwrap();
    assert_eq!(n, buf.len());
    assert_eq!(&buf[..], &data[100_000..100_000 + buf.len()]);
    let batches = batching.batches.load(Ordering::Relaxed);
    assert!(
        (1..=PARALLEL_FETCHES).contains(&batches),
        "{batches} batched calls"
    );
    // Interior nodes are still read one by one; chunks never are.
    let node_gets = batching.gets.load(Ordering::Relaxed) - nodes_read;
    let chunks = n / 4096;
    assert!(
        node_gets < chunks / 4,
        "{node_gets} single gets for ~{chunks} chunks"
    );

    // A chunk missing from a batch is an error, not wrong bytes.
    let tree_chunks: Vec<Ref> = {
        let r = SplitReader::new(&store, root).unwrap();
        r.chunks_covering(600_000, 1)
            .unwrap()
            .iter()
            .map(|(_, b)| Ref::of(b))
            .collect()
    };
    let losing = Batching {
        lose: tree_chunks.first().copied(),
        ..batching
    };
    let reader = SplitReader::new(&losing, root).unwrap();
    let mut buf = vec![0u8; 128 << 10];
    let e = reader.read_at(550_000, &mut buf).unwrap_err();
    assert!(
        matches!(e, SplitError::Store(StoreError::NotFound(_))),
        "{e:?}"
    );
}

#[test]
fn writer_errors_are_returned_not_panics() {
    let store = FaultyStore::new(MemStore::new());
    store.fail_puts_after(3);
    let data = random_bytes(1 << 20, 3);
    let mut w = SplitWriter::new(&store);
    let mut failed = w.write_all(&data).is_err();
    if !failed {
        failed = w.finish().is_err();
    } else {
        // Once failed, the writer refuses to go on.
        assert!(w.write_all(b"more").is_err());
        assert!(matches!(w.finish(), Err(SplitError::Poisoned)));
    }
    assert!(failed);
    store.heal();
    // A fresh writer over the healed store succeeds.
    let root = store_bytes(&store, &data, SplitOptions::default()).unwrap();
    assert_eq!(read_to_vec(&store, &root).unwrap(), data);
}

#[test]
fn storing_thread_errors_reach_the_writer() {
    let data = random_bytes(4 << 20, 4);
    // One set of threads for all the writers, failed ones included.
    let storers = ChunkStorers::new(2);
    for after in [0, 5, 40] {
        let store = Arc::new(FaultyStore::new(MemStore::new()));
        store.fail_puts_after(after);
        let mut w =
            SplitWriter::with_storers(store.clone(), SplitOptions::default(), &storers).unwrap();
        let mut err = None;
        for piece in data.chunks(1 << 20) {
            if let Err(e) = w.write_all(piece) {
                err = Some(e.to_string());
                break;
            }
        }
        match err {
            // Failed while writing: the writer refuses to go on.
            Some(_) => assert!(matches!(w.finish(), Err(SplitError::Poisoned))),
            None => {
                let e = w.finish().expect_err("a failed put must fail the writer");
                assert!(matches!(e, SplitError::Store(_)), "{e:?}");
            }
        }
        store.heal();
        let w =
            SplitWriter::with_storers(store.clone(), SplitOptions::default(), &storers).unwrap();
        let root = feed(w, &data, 7);
        assert_eq!(read_to_vec(&*store, &root).unwrap(), data);
    }
}

#[test]
fn invalid_options_are_refused() {
    let store = MemStore::new();
    for opts in [
        SplitOptions {
            bits: 0,
            ..SplitOptions::default()
        },
        SplitOptions {
            bits: 33,
            ..SplitOptions::default()
        },
        SplitOptions {
            fanout: 0,
            ..SplitOptions::default()
        },
    ] {
        assert!(matches!(
            SplitWriter::with_options(&store, opts),
            Err(SplitError::InvalidOptions(_))
        ));
    }
}

#[test]
fn empty_input_and_zero_ref() {
    let store = MemStore::new();
    let w = SplitWriter::new(&store);
    assert_eq!(w.finish().unwrap(), Ref::ZERO);
    assert!(store.is_empty());
    let mut r = SplitReader::new(&store, Ref::ZERO).unwrap();
    assert_eq!(r.size(), 0);
    let mut out = Vec::new();
    assert_eq!(r.read_to_end(&mut out).unwrap(), 0);
    assert_eq!(validate_root(&store, &Ref::ZERO).unwrap(), 0);
    // A writer dropped unfinished stops its thread and leaves no root.
    let mut w = SplitWriter::new(&store);
    w.write_all(&random_bytes(2 << 20, 1)).unwrap();
    drop(w);
}

#[test]
fn raw_blobs_are_read_only_when_asked() {
    let store = MemStore::new();
    let data = random_bytes(5000, 8);
    let (r, _) = store.put(&data).unwrap();
    assert!(SplitReader::new(&store, r).is_err());
    assert!(validate_root(&store, &r).is_err());
    let mut raw = SplitReader::raw(&store, r).unwrap();
    assert_eq!(raw.size(), 5000);
    raw.seek(SeekFrom::Start(1000)).unwrap();
    let mut out = Vec::new();
    raw.read_to_end(&mut out).unwrap();
    assert_eq!(out, &data[1000..]);
    // A split root read raw gives its node bytes, not the content.
    let root = store_bytes(&store, &random_bytes(300_000, 9), SplitOptions::default()).unwrap();
    let node = SplitReader::raw(&store, root).unwrap();
    assert_eq!(node.size(), store.get(&root).unwrap().len() as u64);
    assert!(matches!(
        SplitReader::raw(&store, Ref::of(b"absent")),
        Err(SplitError::Store(StoreError::NotFound(_)))
    ));
}

/// A store that records the refs hinted to it.
struct Hinted {
    inner: MemStore,
    hints: Mutex<Vec<Ref>>,
}

impl Getter for Hinted {
    fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
        self.inner.get(r)
    }
    fn list_refs(
        &self,
        after: &Ref,
        f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.list_refs(after, f)
    }
    fn prefetch(&self, refs: &[Ref]) {
        self.hints.lock().extend_from_slice(refs);
    }
    fn reads_ahead(&self) -> bool {
        true
    }
}

#[test]
fn sequential_reads_hint_the_chunks_ahead_and_random_small_reads_do_not() {
    let store = Hinted {
        inner: MemStore::new(),
        hints: Mutex::new(Vec::new()),
    };
    let opts = SplitOptions {
        bits: 14,
        min_size: 4096,
        ..SplitOptions::default()
    };
    let data = random_bytes(24 << 20, 21);
    let root = store_bytes(&store.inner, &data, opts).unwrap();
    let chunks = leaf_refs(&store.inner, &root);
    assert!(chunks.len() > 500, "{} chunks", chunks.len());

    // Small reads at scattered places hint nothing.
    let r = SplitReader::new(&store, root).unwrap();
    let mut buf = vec![0u8; 4096];
    for off in [5u64 << 20, 1 << 20, 17 << 20, 9 << 20] {
        r.read_exact_at(off, &mut buf).unwrap();
        assert_eq!(buf, &data[off as usize..off as usize + 4096]);
    }
    assert!(store.hints.lock().is_empty());

    // A sequential reader in 1 MiB reads: after its first read, the chunks of
    // the next 8 MiB are hinted, in order; over the whole read each chunk of the
    // content at most once, and every chunk past the first read's.
    let r = SplitReader::new(&store, root).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    r.read_exact_at(0, &mut buf).unwrap();
    {
        let hints = store.hints.lock();
        assert!(!hints.is_empty());
        let first = chunks.iter().position(|c| *c == hints[0]).unwrap();
        let ahead: Vec<Ref> = chunks[first..first + hints.len()].to_vec();
        assert_eq!(*hints, ahead, "hints are the next chunks, in order");
        let bytes: usize = hints
            .iter()
            .map(|h| store.inner.get(h).unwrap().len())
            .sum();
        assert!((7 << 20..=9 << 20).contains(&bytes), "{bytes} bytes hinted");
    }
    // The rest in pairs of reads that arrive out of order, as the kernel's
    // read-ahead may send them.
    let mut off = 1 << 20;
    while off < data.len() {
        let second = (off + buf.len()).min(data.len());
        for at in [second, off] {
            if at < data.len() {
                let n = r.read_at(at as u64, &mut buf).unwrap();
                assert_eq!(&buf[..n], &data[at..at + n]);
            }
        }
        off = (second + buf.len()).min(data.len());
    }
    let hints = store.hints.lock();
    let mut start = 0usize;
    for (i, c) in chunks.iter().enumerate() {
        let times = hints.iter().filter(|h| *h == c).count();
        assert!(times <= 1, "chunk {i} hinted {times} times");
        if start >= 1 << 20 {
            assert!(times >= 1, "chunk {i} at {start} never hinted");
        }
        start += store.inner.get(c).unwrap().len();
    }
    assert_eq!(start, data.len());
}
