//! Damage: blobs flipped, truncated and deleted, and the anchor map ref replaced by
//! garbage or by a ref to a missing blob. Reads give EIO through the mount and a
//! clear error from the command line, never wrong bytes; the mount keeps serving
//! everything else; `fsck` names each damaged ref.

mod common;
#[path = "common/reliability.rs"]
mod reliability;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anchorfs::anchor;
use anchorfs::proto::schema as pb;
use anchorfs::store::file::FileStore;
use anchorfs::store::{Getter, Store};
use anchorfs::{content, split, Ref, Timestamp};
use prost::Message;
use reliability::{
    assert_fsck_ok, cli_run, close, errno_of, fsck, history, noise, store_mounted_with_doc,
    write_file, Daemon,
};

use common::fuse_skipped;

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// Puts `data` as a split tree under `name`; returns its root.
fn put_split(s: &FileStore, name: &[u8], data: &[u8], at: &str) -> Ref {
    let root = content::store(s, data).unwrap();
    content::put_split(s, name, root, t(at)).unwrap();
    root
}

/// The leaf chunks of the split tree `root`, in stream order, with their offsets.
fn chunks_of(s: &FileStore, root: &Ref) -> Vec<(u64, Ref)> {
    let mut out = Vec::new();
    let mut stack = vec![*root];
    while let Some(r) = stack.pop() {
        let node = anchorfs::proto::split::Node::decode(&s.get(&r).unwrap()[..]).unwrap();
        for c in node.leaves {
            out.push((c.offset, Ref::from_slice(&c.r#ref).unwrap()));
        }
        for c in node.nodes.into_iter().rev() {
            stack.push(Ref::from_slice(&c.r#ref).unwrap());
        }
    }
    out.sort();
    out
}

/// Reads `path` through the mount in blocks of `block` bytes with pread: every
/// block is either the expected bytes or EIO. Returns how many blocks gave EIO.
fn blocks_are_right_or_eio(path: &Path, want: &[u8], block: usize) -> usize {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            assert_eq!(errno_of(&e), libc::EIO, "open of {}: {e}", path.display());
            return usize::MAX;
        }
    };
    let mut eio = 0;
    for (i, expect) in want.chunks(block).enumerate() {
        let mut buf = vec![0u8; expect.len()];
        match f.read_exact_at(&mut buf, (i * block) as u64) {
            Ok(()) => assert!(
                buf == expect,
                "block {i} of {} read wrong bytes",
                path.display()
            ),
            Err(e) => {
                assert_eq!(
                    errno_of(&e),
                    libc::EIO,
                    "block {i} of {}: {e}",
                    path.display()
                );
                eio += 1;
            }
        }
    }
    eio
}

/// A one-line error from the command line, naming each of `mentions`.
fn one_line(err: &str, mentions: &[&str]) {
    assert_eq!(err.lines().count(), 1, "want one line on stderr: {err:?}");
    assert!(err.starts_with("anchorfs: "), "{err:?}");
    for m in mentions {
        assert!(err.contains(m), "stderr {err:?} does not mention {m:?}");
    }
}

#[test]
fn flipped_truncated_and_deleted_blobs_give_eio_and_fsck_names_each() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let s = FileStore::create(&sp).unwrap();
    let mut want: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut roots = BTreeMap::new();
    for (i, name) in ["flipped", "truncated", "deleted", "rootflip", "healthy"]
        .into_iter()
        .enumerate()
    {
        let data = noise(700_000, 100 + i as u64);
        roots.insert(
            name,
            put_split(&s, name.as_bytes(), &data, "2026-01-01T00:00:00Z"),
        );
        want.insert(name, data);
    }
    // A second, older version of "healthy" and a raw blob.
    put_split(&s, b"healthy", b"first", "2025-06-01T00:00:00Z");
    let raw = noise(50_000, 7);
    let (raw_ref, _) = s.put(&raw).unwrap();
    anchor::put(&s, b"raw", raw_ref, t("2026-01-01T00:00:00Z")).unwrap();
    want.insert("raw", raw.clone());
    assert_fsck_ok(&sp, "before any damage");

    // One fault per anchor, each in a different blob.
    let mid_chunk = |name: &str| {
        let c = chunks_of(&s, &roots[name]);
        assert!(
            c.len() >= 4,
            "{name}: content in several chunks ({})",
            c.len()
        );
        c[c.len() / 2].1
    };
    let flipped = mid_chunk("flipped");
    let truncated = mid_chunk("truncated");
    let deleted = mid_chunk("deleted");
    let rootflip = roots["rootflip"];
    let flip = |r: &Ref| {
        let p = s.blob_path(r);
        let mut b = fs::read(&p).unwrap();
        let at = b.len() / 3;
        b[at] ^= 0x20;
        fs::write(&p, b).unwrap();
    };
    flip(&flipped);
    flip(&rootflip);
    flip(&raw_ref);
    let p = s.blob_path(&truncated);
    let len = fs::metadata(&p).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    fs::remove_file(s.blob_path(&deleted)).unwrap();
    let faults = 5;

    // Through a fresh mount: EIO, never wrong bytes; the rest reads.
    let m = Daemon::start(&sp, "");
    for name in ["flipped", "truncated", "deleted"] {
        let e = fs::read(m.path(&format!("{name}/latest"))).unwrap_err();
        assert_eq!(errno_of(&e), libc::EIO, "{name}: {e}");
        let bad =
            blocks_are_right_or_eio(&m.path(&format!("{name}/latest")), &want[name], 16 << 10);
        assert!(bad > 0, "{name}: some block must give EIO");
        let by_ref = m.path(&format!(".anchorfs/refs/{}", roots[name].to_hex()));
        let e = fs::read(by_ref).unwrap_err();
        assert_eq!(errno_of(&e), libc::EIO, "{name} by ref: {e}");
    }
    for name in ["rootflip", "raw"] {
        let e = fs::read(m.path(&format!("{name}/latest"))).unwrap_err();
        assert_eq!(errno_of(&e), libc::EIO, "{name}: {e}");
    }
    assert_eq!(fs::read(m.path("healthy/latest")).unwrap(), want["healthy"]);
    assert_eq!(
        fs::read(m.path("healthy/2025-06-01T00:00:00.000000000Z")).unwrap(),
        b"first"
    );
    // Listing the root and the damaged directories still works.
    let mut listed: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ".anchorfs",
            "deleted",
            "flipped",
            "healthy",
            "raw",
            "rootflip",
            "truncated"
        ]
    );
    for name in ["flipped", "rootflip", "deleted"] {
        assert_eq!(fs::read_dir(m.path(name)).unwrap().count(), 2, "{name}");
    }
    // The mount still takes new versions.
    write_file(&m.path("healthy/new"), b"after the damage", 4096, false).expect("a write");
    assert_eq!(
        fs::read(m.path("healthy/latest")).unwrap(),
        b"after the damage"
    );
    // The log names each damaged ref that was read.
    let log = m.log_text();
    for r in [flipped, truncated, deleted, rootflip, raw_ref] {
        assert!(
            log.contains(&r.to_hex()),
            "the mount's log names {r}: {log}"
        );
    }

    // The command line: one line naming the ref, status 1 for damage; a missing
    // blob is reported as not found (status 2, as tests/cli.rs pins it).
    for (name, bad, code) in [
        ("flipped", flipped, 1),
        ("truncated", truncated, 1),
        ("rootflip", rootflip, 1),
        ("raw", raw_ref, 1),
        ("deleted", deleted, 2),
    ] {
        let (c, out, err) = cli_run(&sp, &["get", name]);
        assert_eq!(c, code, "get {name}: {err}");
        assert!(out.is_empty(), "get {name} wrote {} bytes", out.len());
        one_line(&err, &[name, &bad.to_hex()]);
    }
    let (c, out, _) = cli_run(&sp, &["get", "healthy"]);
    assert_eq!(c, 0);
    assert_eq!(out.as_bytes(), b"after the damage");

    // fsck names every damaged ref, each with the anchor that reaches it.
    let (c, report, err) = fsck(&sp);
    assert_eq!(c, 1, "{report}{err}");
    one_line(&err, &[&format!("{faults} problem")]);
    for (name, r, word) in [
        ("flipped", flipped, "damaged"),
        ("truncated", truncated, "damaged"),
        ("rootflip", rootflip, "damaged"),
        ("raw", raw_ref, "damaged"),
        ("deleted", deleted, "missing"),
    ] {
        let line = report
            .lines()
            .find(|l| l.contains(&r.to_hex()))
            .unwrap_or_else(|| panic!("fsck does not name {name}'s {r}: {report}"));
        assert!(line.starts_with(word), "{line}");
        assert!(line.contains(name), "fsck names the anchor {name}: {line}");
    }
    eprintln!(
        "damage: {faults} faults injected, 7 anchors checked through the mount, CLI and fsck"
    );
}

#[test]
fn a_damaged_anchor_map_ref_is_a_clear_error_and_the_mount_keeps_serving() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let s = FileStore::create(&sp).unwrap();
    put_split(&s, b"a", b"content of a", "2026-01-01T00:00:00Z");
    put_split(&s, b"b", &noise(300_000, 1), "2026-01-01T00:00:00Z");
    let m = Daemon::start(&sp, "poll=100ms");
    let a = m.path("a/latest");
    assert_eq!(fs::read(&a).unwrap(), b"content of a");
    let map_file = sp.join("anchormapref");
    let good = fs::read(&map_file).unwrap();
    let missing = Ref::of(b"no blob has these bytes");

    for (what, bytes) in [
        ("garbage", b"this is not a ref\n".to_vec()),
        ("empty", Vec::new()),
        ("a missing blob's ref", missing.as_bytes().to_vec()),
    ] {
        fs::write(&map_file, &bytes).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300)); // a few polls
                                                                   // The running mount keeps serving what it had.
        assert_eq!(fs::read(&a).unwrap(), b"content of a", "{what}");
        assert_eq!(
            fs::read(m.path("b/latest")).unwrap(),
            noise(300_000, 1),
            "{what}"
        );
        assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 3, "{what}");
        // A new version cannot be anchored: close says EIO, and nothing changes.
        let e = write_file(&m.path("a/new"), b"lost?", 4096, false).unwrap_err();
        assert_eq!(errno_of(&e.1), libc::EIO, "{what}: {e:?}");
        assert_eq!(
            fs::read(&map_file).unwrap(),
            bytes,
            "{what}: the ref file is left alone"
        );
        // The command line says what is wrong, with status 1, and changes nothing.
        for args in [
            &["ls"][..],
            &["get", "a"],
            &["log", "a"],
            &[
                "put",
                "c",
                "--ref",
                &Ref::of(b"x").to_hex(),
                "--allow-missing",
            ],
        ] {
            let (c, _, err) = cli_run(&sp, args);
            assert_eq!(c, 1, "{what}: {args:?}: {err}");
            let mention = if bytes.len() == 32 {
                missing.to_hex()
            } else {
                "anchormapref".into()
            };
            one_line(&err, &[&mention]);
        }
        assert_eq!(
            fs::read(&map_file).unwrap(),
            bytes,
            "{what}: put did not replace it"
        );
        let (c, report, err) = fsck(&sp);
        assert_eq!(c, 1, "{what}: {report}{err}");
        if bytes.len() == 32 {
            assert!(
                report.contains(&format!("missing {}", missing.to_hex())),
                "{report}"
            );
        } else {
            assert!(report.contains("anchor map ref"), "{report}");
        }
        // A new mount refuses, saying why.
        let other = dir.path().join(format!("other-{}", what.len()));
        fs::create_dir(&other).unwrap();
        let (c, _, err) = {
            let out = std::process::Command::new(common::binary())
                .arg("mount")
                .arg(&sp)
                .arg(&other)
                .output()
                .unwrap();
            reliability::lazy_umount(&other);
            (
                out.status.code().unwrap_or(-1),
                (),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(
            c, 1,
            "{what}: a mount over a store whose map is unreadable: {err}"
        );
        assert!(err.contains("anchor"), "{what}: {err}");
    }

    // Restored: the same mount writes again, and nothing was lost.
    fs::write(&map_file, &good).unwrap();
    write_file(&m.path("a/new"), b"second version", 4096, true).expect("writes work again");
    assert_eq!(fs::read(&a).unwrap(), b"second version");
    assert_fsck_ok(&sp, "after restoring the map ref");
    let hist = reliability::history(&sp, b"a");
    assert_eq!(hist.len(), 2);
}

/// The leaf nodes of the anchor map's trie and the names each holds.
fn map_leaves(s: &FileStore) -> Vec<(Ref, Vec<Vec<u8>>)> {
    let root = anchor::map_ref(s).unwrap().unwrap();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(r) = stack.pop() {
        let node = pb::Map::decode(&s.get(&r).unwrap()[..]).unwrap();
        let header = node.node.unwrap_or_default();
        match (header.left, header.right) {
            (Some(l), Some(rt)) => {
                stack.push(Ref::from_slice(&l.r#ref).unwrap());
                stack.push(Ref::from_slice(&rt.r#ref).unwrap());
            }
            _ => out.push((
                r,
                node.members.into_iter().map(|p| p.key.to_vec()).collect(),
            )),
        }
    }
    out
}

/// Writes 300 anchors (so the map has several leaves). Returns one leaf, a name in
/// it and a name in another leaf.
fn store_with_a_big_map(sp: &Path) -> (Ref, Vec<u8>, Vec<u8>) {
    let s = FileStore::create(sp).unwrap();
    let (r, _) = s.put(b"shared content").unwrap();
    anchor::update(&s, |u| {
        for i in 0..300 {
            u.put(
                format!("anchor-{i:03}").as_bytes(),
                r,
                t("2026-01-01T00:00:00Z"),
            )?;
        }
        Ok(())
    })
    .unwrap();
    let leaves = map_leaves(&s);
    assert!(leaves.len() >= 3, "several leaves: {}", leaves.len());
    let (victim, names) = leaves.iter().find(|(_, n)| !n.is_empty()).cloned().unwrap();
    let elsewhere = leaves
        .iter()
        .find(|(r, n)| *r != victim && !n.is_empty())
        .map(|(_, n)| n[0].clone())
        .unwrap();
    (victim, names[0].clone(), elsewhere)
}

/// Flips a byte in the middle of blob `r`.
fn flip_blob(sp: &Path, r: &Ref) {
    let p = FileStore::open(sp).unwrap().blob_path(r);
    let mut b = fs::read(&p).unwrap();
    let at = b.len() / 2;
    b[at] ^= 1;
    fs::write(&p, b).unwrap();
}

#[test]
fn a_damaged_map_node_is_named_and_the_running_mount_keeps_serving() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let (victim, inside, elsewhere) = store_with_a_big_map(&sp);
    // The mount reads the map before the damage.
    let m = Daemon::start(&sp, "poll=100ms");
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 301);
    flip_blob(&sp, &victim);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let inside = String::from_utf8(inside).unwrap();
    let elsewhere = String::from_utf8(elsewhere).unwrap();
    assert_eq!(
        fs::read(m.path(&format!("{inside}/latest"))).unwrap(),
        b"shared content"
    );
    assert_eq!(
        fs::read(m.path(&format!("{elsewhere}/latest"))).unwrap(),
        b"shared content"
    );
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 301);

    let (c, out, err) = cli_run(&sp, &["get", &elsewhere]);
    assert_eq!((c, out.as_str()), (0, "shared content"), "{err}");
    let (c, _, err) = cli_run(&sp, &["get", &inside]);
    assert_eq!(c, 1, "{err}");
    one_line(&err, &[&victim.to_hex(), "damaged"]);
    let (c, report, _) = fsck(&sp);
    assert_eq!(c, 1);
    assert!(
        report.contains(&format!("damaged {}", victim.to_hex())),
        "{report}"
    );
}

#[test]
fn a_fresh_mount_serves_the_anchors_a_damaged_map_node_does_not_hold() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    let (victim, inside, elsewhere) = store_with_a_big_map(&sp);
    flip_blob(&sp, &victim);
    let inside = String::from_utf8(inside).unwrap();
    let elsewhere = String::from_utf8(elsewhere).unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let m = Daemon::try_start_at(&sp, &mnt, "").unwrap_or_else(|e| {
        panic!("one damaged map node ({victim}) keeps every other anchor from being served: {e}")
    });
    assert_eq!(
        fs::read(m.path(&format!("{elsewhere}/latest"))).unwrap(),
        b"shared content"
    );
    match fs::read(m.path(&format!("{inside}/latest"))) {
        Ok(b) => panic!("an anchor in the damaged node read {} bytes", b.len()),
        Err(e) => assert!(
            matches!(errno_of(&e), libc::EIO | libc::ENOENT),
            "{inside}: {e}"
        ),
    }
    assert!(m.log_text().contains(&victim.to_hex()), "{}", m.log_text());
}

#[test]
fn rewriting_the_same_content_repairs_a_truncated_blob() {
    // A version whose chunk is truncated on disk after the commit reads as EIO from
    // a mount that has not cached it; writing the same content again repairs the
    // blob (the store rewrites blobs of the wrong length).
    if fuse_skipped() {
        return;
    }
    let (_dir, sp, m) = store_mounted_with_doc("cache=1M");
    let data = noise(500_000, 9);
    write_file(&m.path("doc/v1"), &data, 1 << 16, true).unwrap();
    let s = FileStore::open(&sp).unwrap();
    let root = anchor::get(&s, b"doc", Timestamp::now()).unwrap();
    let chunk = chunks_of(&s, &root)[1].1;
    let p = s.blob_path(&chunk);
    let len = fs::metadata(&p).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    // Another mount (nothing cached) sees the damage.
    let fresh = Daemon::start(&sp, "");
    let e = fs::read(fresh.path("doc/latest")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EIO);
    // Writing the same content again repairs the blob.
    write_file(&fresh.path("doc/v2"), &data, 1 << 16, true).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), len);
    assert_eq!(split::read_to_vec(&s, &root).unwrap(), data);
    assert_fsck_ok(&sp, "after the rewrite");
    drop(fresh);
    let f = fs::File::open(m.path("doc/latest")).unwrap();
    let mut buf = vec![0u8; data.len()];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf == data);
    close(f).unwrap();
}

#[test]
fn writing_through_latest_never_changes_what_an_old_version_reads() {
    // `> latest`, `>> latest` and editing an old version in place all open the
    // old version's file for writing, which starts a new version. The old file must
    // read as it always did afterwards (and meanwhile): same size, same bytes.
    if fuse_skipped() {
        return;
    }
    let (_dir, sp, m) = store_mounted_with_doc("");
    let old = vec![b'A'; 10_000];
    write_file(&m.path("doc/v1"), &old, 4096, false).unwrap();
    let mut problems = Vec::new();
    // Each attempt opens the version `latest` names (or, for the in-place edit, the
    // first version) for writing; that version must not change.
    type Attempt<'a> = Box<dyn Fn(&Path) -> std::io::Result<()> + 'a>;
    let attempts: Vec<(&str, bool, Attempt)> = vec![
        (
            "> latest",
            false,
            Box::new(|_| fs::write(m.path("doc/latest"), vec![b'B'; 8192])),
        ),
        (
            "> latest, with an fstat first as stdio and Python do",
            false,
            Box::new(|_| {
                use std::io::Write;
                let mut f = fs::File::create(m.path("doc/latest"))?;
                f.metadata()?;
                f.write_all(&[b'F'; 8192])?;
                close(f)
            }),
        ),
        (
            ">> latest",
            false,
            Box::new(|_| {
                use std::io::Write;
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(m.path("doc/latest"))?;
                f.metadata()?;
                f.write_all(&[b'C'; 5000])?;
                close(f)
            }),
        ),
        (
            "an in-place edit of an old version",
            true,
            Box::new(|v: &Path| {
                let f = fs::OpenOptions::new().read(true).write(true).open(v)?;
                f.metadata()?;
                f.write_all_at(&[b'D'; 6000], 100)?;
                close(f)
            }),
        ),
        (
            "> latest, read while still open",
            false,
            Box::new(|v: &Path| {
                use std::io::Write;
                let before = fs::read(v)?;
                let mut f = fs::File::create(m.path("doc/latest"))?;
                f.metadata()?;
                f.write_all(&[b'E'; 9000])?;
                let during = fs::read(v)?;
                close(f)?;
                if during == before {
                    Ok(())
                } else {
                    Err(std::io::Error::other(format!(
                        "while the new file was open it read {} bytes, {} of them as before",
                        during.len(),
                        during.iter().zip(&before).filter(|(a, b)| a == b).count()
                    )))
                }
            }),
        ),
    ];
    let first = m
        .path("doc")
        .join(fs::read_link(m.path("doc/latest")).unwrap());
    for (what, on_first, attempt) in attempts {
        let v = if on_first {
            first.clone()
        } else {
            m.path("doc")
                .join(fs::read_link(m.path("doc/latest")).unwrap())
        };
        let before = fs::read(&v).unwrap(); // read, so its pages are cached
        let size = fs::metadata(&v).unwrap().len();
        if let Err(e) = attempt(&v) {
            problems.push(format!("{what}: {e}"));
        }
        let after = fs::read(&v).unwrap();
        let size_after = fs::metadata(&v).unwrap().len();
        if after != before || size_after != size {
            problems.push(format!(
                "after {what}: {} read {} bytes ({} of them unchanged) and stats {size_after}, \
                 was {} bytes",
                v.file_name().unwrap().to_string_lossy(),
                after.len(),
                after.iter().zip(&before).filter(|(a, b)| a == b).count(),
                before.len()
            ));
        }
    }
    // The store itself is right: the new versions are there and the old one is intact.
    let s = FileStore::open(&sp).unwrap();
    let hist = anchor::history(&s, b"doc").unwrap();
    assert_eq!(hist.len(), 6);
    assert_eq!(content::read_all(&s, &hist[0].r).unwrap(), old);
    assert!(
        problems.is_empty(),
        "the old version's file changed: {problems:#?}"
    );
}

/// A mounted store whose anchor "doc" has one version of `len` noise bytes from
/// `seed`: (its directory, the store's path, the mount, the bytes, the version's
/// file in the mount).
fn doc_with_one_version(
    len: usize,
    seed: u64,
) -> (tempfile::TempDir, PathBuf, Daemon, Vec<u8>, PathBuf) {
    let (dir, sp, m) = store_mounted_with_doc("");
    let old = noise(len, seed);
    write_file(&m.path("doc/v1"), &old, 4096, false).unwrap();
    let v = m
        .path("doc")
        .join(fs::read_link(m.path("doc/latest")).unwrap());
    (dir, sp, m, old, v)
}

#[test]
fn readers_opening_a_version_while_this_mount_writes_over_it_get_its_bytes() {
    // Writers over a version (here truncating ones, which move to a new file; an
    // in-place one writes through the version's own inode, whose size the kernel
    // then moves with the writer's offsets). Once an anchor has been written over,
    // a reader that opens one of its versions must get exactly its bytes, however
    // writes and reads interleave; and once the writer has closed, every reader
    // gets them.
    if fuse_skipped() {
        return;
    }
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (_dir, sp, m, old, v) = doc_with_one_version(2_500, 11);
    fs::write(m.path("doc/latest"), b"the anchor is written over once").unwrap();
    // `generation` counts the writer's opens and closes: odd while it is open.
    let (stop, generation) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (mut during, mut reads, mut wrong, mut writes) = (0usize, 0usize, Vec::new(), 0usize);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&v)
                    .unwrap();
                generation.fetch_add(1, Ordering::SeqCst);
                for piece in noise(64 << 10, n as u64).chunks(4096) {
                    f.write_all(piece).unwrap();
                }
                generation.fetch_add(1, Ordering::SeqCst);
                close(f).unwrap();
                n += 1;
            }
            n
        });
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(3) {
            let before = generation.load(Ordering::SeqCst);
            let got = fs::read(&v).unwrap();
            let after = generation.load(Ordering::SeqCst);
            reads += 1;
            // Reads opened and finished within one open of the writer.
            if before % 2 == 1 && before == after {
                during += 1;
            }
            if got != old && wrong.len() < 5 {
                wrong.push(format!("{} bytes instead of {}", got.len(), old.len()));
            }
        }
        stop.store(true, Ordering::Relaxed);
        writes = writer.join().unwrap();
    });
    assert!(
        writes >= 3 && during >= 20,
        "{writes} writes, {during} reads during them"
    );
    assert!(
        wrong.is_empty(),
        "wrong reads of {reads} ({during} entirely while a writer was open): {wrong:?}"
    );
    // After the last close, the version reads as it was.
    assert_eq!(fs::read(&v).unwrap(), old);
    assert_eq!(history(&sp, b"doc").len(), writes + 2);
}

#[test]
fn readers_opened_before_writes_over_a_version_keep_its_bytes() {
    // Readers that opened a version through the page cache before its anchor was
    // ever written over, rereading it while writers (`> latest`, `>> latest`, and
    // in place) write over it again and again: such an open moves to a new file of
    // its own and never reaches the version's inode, so the readers' size and bytes
    // stay the version's however writes and reads interleave.
    if fuse_skipped() {
        return;
    }
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_dir, sp, m, old, v) = doc_with_one_version(40_000, 5);
    // Opened before any write-over, and read once, so its pages are cached.
    let mut readers: Vec<fs::File> = (0..2).map(|_| fs::File::open(&v).unwrap()).collect();
    for r in &mut readers {
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert!(all == old);
    }
    let stop = AtomicBool::new(false);
    let (mut writes, mut reads, mut wrong) = (0usize, 0usize, Vec::new());
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                // Truncating through the version's name and through `latest`,
                // appending, and writing in place.
                let mut f = match n % 4 {
                    0 => fs::OpenOptions::new().write(true).truncate(true).open(&v),
                    1 => fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(m.path("doc/latest")),
                    2 => fs::OpenOptions::new()
                        .append(true)
                        .open(m.path("doc/latest")),
                    _ => fs::OpenOptions::new().write(true).open(&v),
                }
                .unwrap();
                // Short of the version's size at first, then past it.
                for piece in noise(60_000, n as u64 + 100).chunks(3000) {
                    f.write_all(piece).unwrap();
                }
                close(f).unwrap();
                n += 1;
            }
            n
        });
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(3) {
            for r in &mut readers {
                r.seek(SeekFrom::Start(0)).unwrap();
                let mut got = Vec::new();
                r.read_to_end(&mut got).unwrap();
                reads += 1;
                if got != old && wrong.len() < 5 {
                    wrong.push(format!("{} bytes instead of {}", got.len(), old.len()));
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        writes = writer.join().unwrap();
    });
    assert!(writes >= 3, "{writes} writes");
    assert!(wrong.is_empty(), "wrong reads of {reads}: {wrong:?}");
    assert!(fs::read(&v).unwrap() == old);
    assert_eq!(history(&sp, b"doc").len(), writes + 1);
}
