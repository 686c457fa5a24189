//! Real mounts, write side: real programs write into anchor directories; afterwards
//! the store's history holds exactly the expected versions and the content
//! round-trips.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use anchorfs::anchor::{self, Anchor};
use anchorfs::content;
use anchorfs::store::file::FileStore;
use anchorfs::store::Getter;
use anchorfs::Timestamp;
use common::{fuse_skipped, run, Mounted};

/// The history of `name` in the store under `m`, with each version's content.
fn versions(m: &Mounted, name: &[u8]) -> Vec<(Anchor, Vec<u8>)> {
    let store = FileStore::open(&m.store).unwrap();
    anchor::history(&store, name)
        .unwrap()
        .into_iter()
        .map(|a| {
            let kind = anchorfs::content::kind_of(&store, &a.r).unwrap();
            let mut r = anchorfs::content::open(&store, a.r, kind).unwrap();
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut out).unwrap();
            (a, out)
        })
        .collect()
}

fn contents(m: &Mounted, name: &[u8]) -> Vec<Vec<u8>> {
    versions(m, name).into_iter().map(|(_, c)| c).collect()
}

fn sh(cmd: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn mounted() -> (tempfile::TempDir, Mounted) {
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    let m = Mounted::new(&sp, "");
    (dir, m)
}

/// An anchor directory with no versions, removed while a file unlinked in it is
/// still open, and made again, takes new files: the kernel keeps the removed
/// directory's inode (dead) for the open file, and the new directory is another.
#[test]
fn a_directory_removed_with_a_file_open_in_it_is_made_again_and_written() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = mounted();
    // A scratch name and a normal one.
    for (anchor, held_name) in [("again", "b~"), ("once-more", "notes.txt")] {
        let dir = m.path(anchor);
        fs::create_dir(&dir).unwrap();
        let mut held = fs::File::create(dir.join(held_name)).unwrap();
        fs::remove_file(dir.join(held_name)).unwrap();
        fs::remove_dir(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("new.txt"), anchor).unwrap_or_else(|e| panic!("{anchor}: {e}"));
        // The unlinked file still takes writes, and becomes no version.
        held.write_all(b"gone").unwrap();
        drop(held);
        assert_eq!(fs::read(dir.join("latest")).unwrap(), anchor.as_bytes());
        assert_eq!(
            contents(&m, anchor.as_bytes()),
            vec![anchor.as_bytes().to_vec()]
        );
    }
}

#[test]
fn redirects_onto_a_name_the_shell_wrote_make_one_version_each() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = mounted();
    fs::create_dir(m.path("log")).unwrap();
    let n = m.path("log");
    let n = n.display();
    // In one shell, so each `>` reopens the name while it still names the version
    // the last one made.
    let (rc, _) = sh(&format!(
        "for i in 1 2 3 4 5 6 7 8; do echo v$i > {n}/f; done"
    ));
    assert_eq!(rc, 0);
    let want: Vec<Vec<u8>> = (1..=8).map(|i| format!("v{i}\n").into_bytes()).collect();
    assert_eq!(contents(&m, b"log"), want, "no empty version between them");
    assert_eq!(fs::read(m.path("log/f")).unwrap(), b"v8\n");
}

#[test]
fn shell_redirects_and_mkdir() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = mounted();
    fs::create_dir(m.path("notes")).unwrap();
    assert!(
        m.path("notes").is_dir(),
        "an anchor directory before its first version"
    );
    assert!(contents(&m, b"notes").is_empty());
    let notes = m.path("notes");
    let n = notes.display();
    assert_eq!(sh(&format!("echo hi > {n}/latest")).0, 0);
    assert_eq!(
        contents(&m, b"notes"),
        vec![b"hi\n".to_vec()],
        "first version through latest"
    );
    assert_eq!(sh(&format!("echo more >> {n}/latest")).0, 0);
    assert_eq!(sh(&format!("echo replaced > {n}/latest")).0, 0);
    assert_eq!(
        contents(&m, b"notes"),
        vec![
            b"hi\n".to_vec(),
            b"hi\nmore\n".to_vec(),
            b"replaced\n".to_vec()
        ],
        "> truncates, >> seeds the old content; no empty versions from the shell's dup"
    );
    // Listed as soon as the close returns.
    assert_eq!(fs::read(notes.join("latest")).unwrap(), b"replaced\n");
    assert_eq!(fs::read_dir(&notes).unwrap().count(), 4);
    // An old version is untouched by writes through latest.
    let first = fs::read_dir(&notes)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "latest")
        .min()
        .unwrap();
    assert_eq!(fs::read(notes.join(&first)).unwrap(), b"hi\n");
    // Writing over an old version makes a new version, seeded with it.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(notes.join(&first))
        .unwrap();
    f.write_all(b"HI").unwrap();
    drop(f);
    assert_eq!(
        fs::read(notes.join(&first)).unwrap(),
        b"hi\n",
        "history does not change"
    );
    assert_eq!(contents(&m, b"notes").last().unwrap(), b"HI\n");
    // touch: an empty version for a new name, nothing for an existing one.
    assert_eq!(sh(&format!("touch {n}/empty-file")).0, 0);
    assert!(common::eventually(Duration::from_secs(3), || contents(
        &m, b"notes"
    )
    .len()
        == 5));
    assert_eq!(contents(&m, b"notes").last().unwrap(), b"");
    assert_eq!(sh(&format!("touch {n}/latest")).0, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        contents(&m, b"notes").len(),
        5,
        "touching a version adds nothing"
    );
}

#[test]
fn cp_rsync_mv_ln_dd_and_python() {
    if fuse_skipped() {
        return;
    }
    let (d, m) = mounted();
    let src = d.path().join("src");
    fs::create_dir(&src).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(src.join("big.bin"), &big).unwrap();
    fs::write(src.join("small.txt"), b"small").unwrap();
    fs::create_dir(m.path("docs")).unwrap();
    let docs = m.path("docs");

    let (code, err) = sh(&format!("cp {}/big.bin {}/", src.display(), docs.display()));
    assert_eq!(code, 0, "{err}");
    let (code, err) = sh(&format!(
        "cp -p {}/small.txt {}/",
        src.display(),
        docs.display()
    ));
    assert_eq!(code, 0, "cp -p: {err}");
    assert_eq!(contents(&m, b"docs"), vec![big.clone(), b"small".to_vec()]);

    fs::write(src.join("small.txt"), b"small v2").unwrap();
    let (code, err) = sh(&format!(
        "rsync -a {}/small.txt {}/",
        src.display(),
        docs.display()
    ));
    assert_eq!(code, 0, "rsync -a: {err}");
    assert_eq!(
        contents(&m, b"docs").len(),
        3,
        "rsync's temp file leaves one version, no junk"
    );
    assert_eq!(contents(&m, b"docs").last().unwrap(), b"small v2");
    assert!(fs::read_dir(&docs).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.')));

    // mv from outside (copy + unlink) and a scratch file renamed onto a name.
    fs::write(src.join("moved.txt"), b"moved").unwrap();
    let (code, err) = sh(&format!(
        "mv {}/moved.txt {}/",
        src.display(),
        docs.display()
    ));
    assert_eq!(code, 0, "mv: {err}");
    fs::write(docs.join(".draft.swp"), b"swap junk").unwrap();
    fs::write(docs.join(".draft"), b"from a temp name").unwrap();
    assert_eq!(
        contents(&m, b"docs").len(),
        4,
        "scratch names are not versions"
    );
    fs::rename(docs.join(".draft"), docs.join("final.txt")).unwrap();
    fs::remove_file(docs.join(".draft.swp")).unwrap();
    let c = contents(&m, b"docs");
    assert_eq!(c.len(), 5);
    assert_eq!(c[3], b"moved");
    assert_eq!(c[4], b"from a temp name");

    // ln -s HEX anchors to an existing ref without copying.
    let store = FileStore::open(&m.store).unwrap();
    let first_ref = anchor::history(&store, b"docs").unwrap()[0].r;
    let (code, err) = sh(&format!(
        "ln -s {} {}/link",
        first_ref.to_hex(),
        docs.display()
    ));
    assert_eq!(code, 0, "ln -s: {err}");
    let hist = anchor::history(&store, b"docs").unwrap();
    assert_eq!(hist.len(), 6);
    assert_eq!(hist[5].r, first_ref);
    let e = std::os::unix::fs::symlink("not-a-ref", docs.join("bad")).unwrap_err();
    assert_eq!(errno_of(&e), libc::EINVAL);

    // dd with fsync, and python writing at random offsets.
    fs::create_dir(m.path("raw")).unwrap();
    let (code, err) = sh(&format!(
        "dd if={}/big.bin of={}/dd.out bs=64k conv=fsync status=none",
        src.display(),
        m.path("raw").display()
    ));
    assert_eq!(code, 0, "dd: {err}");
    assert_eq!(contents(&m, b"raw"), vec![big.clone()]);
    let py = format!(
        "import os\nf=os.open('{}', os.O_CREAT|os.O_WRONLY)\nos.pwrite(f, b'B'*10, 1000)\nos.pwrite(f, b'A'*100, 0)\nos.pwrite(f, b'C'*5, 5)\nos.close(f)\n",
        m.path("raw/py.bin").display()
    );
    let (code, _, err) = run("python3", &[OsStr::new("-c"), OsStr::new(&py)]);
    assert_eq!(code, 0, "{err}");
    let mut want = vec![0u8; 1010];
    want[..100].fill(b'A');
    want[5..10].fill(b'C');
    want[1000..].fill(b'B');
    assert_eq!(contents(&m, b"raw").last().unwrap(), &want);
    assert_eq!(fs::read(m.path("raw/latest")).unwrap(), want);
}

#[test]
fn editors_and_time_named_files() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = mounted();
    fs::create_dir(m.path("doc")).unwrap();
    fs::write(m.path("doc/latest"), b"line1\n").unwrap();
    // A vim-style save: probe file, write a temp, rename over the name.
    let doc = m.path("doc");
    fs::write(doc.join("4913"), b"").unwrap();
    fs::remove_file(doc.join("4913")).unwrap();
    fs::write(doc.join(".doc.tmp~"), b"line1\nline2\n").unwrap();
    fs::rename(doc.join(".doc.tmp~"), doc.join("latest")).unwrap();
    assert_eq!(
        contents(&m, b"doc"),
        vec![b"line1\n".to_vec(), b"line1\nline2\n".to_vec()]
    );
    // The real vim, where installed.
    if Command::new("vim")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let (code, err) = sh(&format!(
            "vim -u NONE -N -es -c 'normal Goline3' -c wq {}",
            doc.join("latest").display()
        ));
        assert_eq!(code, 0, "vim: {err}");
        let c = contents(&m, b"doc");
        assert_eq!(c.len(), 3, "one version per save, no swap or backup junk");
        assert_eq!(c[2], b"line1\nline2\nline3\n");
    }
    // A file named by a time back-dates its version.
    fs::write(doc.join("2020-05-05T05:05:05Z"), b"old").unwrap();
    let v = versions(&m, b"doc");
    assert_eq!(v[0].0.at, Timestamp::parse("2020-05-05T05:05:05Z").unwrap());
    assert_eq!(v[0].1, b"old");
    assert_eq!(
        fs::read(doc.join("2020-05-05T05:05:05.000000000Z")).unwrap(),
        b"old"
    );
}

#[test]
fn history_is_immutable() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = mounted();
    fs::create_dir(m.path("h")).unwrap();
    fs::write(m.path("h/a"), b"one").unwrap();
    let version = fs::read_dir(m.path("h"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name() != Some(OsStr::new("latest")))
        .unwrap();
    for (what, e) in [
        ("rm version", fs::remove_file(&version).unwrap_err()),
        (
            "rm latest",
            fs::remove_file(m.path("h/latest")).unwrap_err(),
        ),
        ("rmdir anchor", fs::remove_dir(m.path("h")).unwrap_err()),
        (
            "mv anchor",
            fs::rename(m.path("h"), m.path("h2")).unwrap_err(),
        ),
        (
            "mv version",
            fs::rename(&version, m.path("h/renamed")).unwrap_err(),
        ),
    ] {
        assert_eq!(errno_of(&e), libc::EPERM, "{what}: {e}");
    }
    assert_eq!(fs::read(&version).unwrap(), b"one");
    assert_eq!(contents(&m, b"h")[0], b"one");
    // An empty anchor directory can be removed; files at the top level cannot be made.
    fs::create_dir(m.path("empty")).unwrap();
    fs::remove_dir(m.path("empty")).unwrap();
    assert!(!m.path("empty").exists());
    let e = fs::write(m.path("top-level-file"), b"x").unwrap_err();
    assert_eq!(errno_of(&e), libc::EPERM);
}

#[test]
fn many_writers_through_one_mount() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = mounted();
    fs::create_dir(m.path("shared")).unwrap();
    for t in 0..8 {
        fs::create_dir(m.path(&format!("own{t}"))).unwrap();
    }
    let mnt = m.mnt.clone();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mnt = mnt.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    for dir in ["shared".to_string(), format!("own{t}")] {
                        let p = mnt.join(&dir).join(format!("w{t}-{i}"));
                        let mut f = fs::File::create(&p).unwrap();
                        f.write_all(format!("writer {t} version {i}").as_bytes())
                            .unwrap();
                        f.sync_all().expect("fsync commits");
                        drop(f); // close: must succeed (it already committed)
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("every write and close succeeded");
    }
    let own_counts: Vec<usize> = (0..8)
        .map(|t| contents(&m, format!("own{t}").as_bytes()).len())
        .collect();
    eprintln!("own counts: {own_counts:?}");
    let shared = contents(&m, b"shared");
    let expected: std::collections::HashSet<Vec<u8>> = (0..8)
        .flat_map(|t| (0..50).map(move |i| format!("writer {t} version {i}").into_bytes()))
        .collect();
    let unexpected: Vec<String> = shared
        .iter()
        .filter(|c| !expected.contains(*c))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    assert!(
        unexpected.is_empty(),
        "versions nobody wrote: {unexpected:?}"
    );
    let vs = versions(&m, b"shared");
    let mut counts = std::collections::HashMap::new();
    for (_, c) in &vs {
        *counts.entry(c.clone()).or_insert(0) += 1;
    }
    let dups: Vec<String> = vs
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| counts[c] > 1)
        .map(|(i, (a, c))| format!("#{i} {} {}", a.at, String::from_utf8_lossy(c)))
        .collect();
    assert!(dups.is_empty(), "versions committed twice: {dups:#?}");
    assert_eq!(
        shared.len(),
        400,
        "every version written to the shared anchor is there"
    );
    let mut seen: Vec<Vec<u8>> = shared.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 400, "none twice");
    for t in 0..8 {
        let own = contents(&m, format!("own{t}").as_bytes());
        assert_eq!(own.len(), 50);
        for (i, c) in own.iter().enumerate() {
            assert_eq!(c, format!("writer {t} version {i}").as_bytes());
        }
    }
}

#[test]
fn a_version_survives_sigkill_right_after_close() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    for round in 0..20 {
        let mut m = Mounted::new(&sp, "");
        let p = m.path(&format!("dur/v{round}"));
        if round == 0 {
            fs::create_dir(m.path("dur")).unwrap();
        }
        let mut f = fs::File::create(&p).unwrap();
        f.write_all(format!("round {round}").as_bytes()).unwrap();
        drop(f); // close returned: the version is durable
                 // SAFETY: killing our own child.
        unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
        m.wait_exit(Duration::from_secs(10));
        let _ = Command::new("umount").arg("-l").arg(&m.mnt).status();
        let store = FileStore::open(&sp).unwrap();
        let hist = anchor::history(&store, b"dur").unwrap();
        assert_eq!(
            hist.len(),
            round + 1,
            "round {round}: every acknowledged version is there"
        );
        let last = content::read_all(&store, &hist[round].r).unwrap();
        assert_eq!(last, format!("round {round}").as_bytes());
    }
}

#[test]
fn a_full_disk_fails_the_close_and_loses_nothing() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    fs::create_dir(&small).unwrap();
    let (code, _, err) = run(
        "mount",
        &[
            OsStr::new("-t"),
            OsStr::new("tmpfs"),
            OsStr::new("-o"),
            OsStr::new("size=4m"),
            OsStr::new("tmpfs"),
            small.as_os_str(),
        ],
    );
    assert_eq!(code, 0, "a small tmpfs for the store: {err}");
    let sp = small.join("store");
    FileStore::create(&sp).unwrap();
    let result = std::panic::catch_unwind(|| {
        let m = Mounted::new(&sp, "");
        fs::create_dir(m.path("e")).unwrap();
        fs::write(m.path("e/ok"), b"fine").unwrap();
        let noise: Vec<u8> = (0..6_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect();
        let mut f = fs::File::create(m.path("e/too-big")).unwrap();
        let wrote = f.write_all(&noise);
        let synced = f.sync_all();
        let err = wrote
            .err()
            .or(synced.err())
            .expect("the write or the fsync fails on a full disk");
        assert_eq!(errno_of(&err), libc::ENOSPC, "{err}");
        drop(f);
        assert_eq!(
            contents(&m, b"e"),
            vec![b"fine".to_vec()],
            "nothing partial became visible"
        );
        assert_eq!(fs::read(m.path("e/latest")).unwrap(), b"fine");
        // Free space (remove blobs no anchor reaches) and write again, same mount.
        let store = FileStore::open(&sp).unwrap();
        let keep: std::collections::HashSet<_> = {
            let mut k = std::collections::HashSet::new();
            let mut stack = vec![anchor::map_ref(&store).unwrap().unwrap()];
            // Everything is small except the failed content: drop blobs over 100 KiB.
            let _ = &mut stack;
            store
                .list_refs(&anchorfs::Ref::ZERO, &mut |r| {
                    if fs::metadata(store.blob_path(&r))
                        .map(|md| md.len() < 100_000)
                        .unwrap_or(true)
                    {
                        k.insert(r);
                    }
                    Ok(true)
                })
                .unwrap();
            k
        };
        store
            .list_refs(&anchorfs::Ref::ZERO, &mut |r| {
                if !keep.contains(&r) {
                    let _ = anchorfs::store::DeletingStore::delete(&store, &r);
                }
                Ok(true)
            })
            .unwrap();
        fs::write(m.path("e/after"), b"space again").expect("writes work again without a remount");
        assert_eq!(
            contents(&m, b"e"),
            vec![b"fine".to_vec(), b"space again".to_vec()]
        );
    });
    let _ = run("umount", &[OsStr::new("-l"), small.as_os_str()]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn two_mounts_and_the_cli_at_once() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("store");
    FileStore::create(&sp).unwrap();
    let a = Mounted::new(&sp, "poll=200ms");
    let b = Mounted::new(&sp, "poll=200ms");
    fs::create_dir(a.path("both")).unwrap();
    assert!(common::eventually(Duration::from_secs(3), || b
        .path("both")
        .exists()
        || fs::create_dir(b.path("both")).is_ok()));
    let mut threads = Vec::new();
    for (side, mnt) in [("a", a.mnt.clone()), ("b", b.mnt.clone())] {
        for t in 0..3 {
            let mnt = mnt.clone();
            threads.push(std::thread::spawn(move || {
                for i in 0..30 {
                    let p = mnt.join("both").join(format!("{side}{t}-{i}"));
                    let mut f = fs::File::create(&p).unwrap();
                    f.write_all(format!("mount {side} writer {t} version {i}").as_bytes())
                        .unwrap();
                    f.sync_all().expect("every fsync succeeds");
                }
            }));
        }
    }
    let cli = std::thread::spawn({
        let sp = sp.clone();
        move || {
            for i in 0..30 {
                let out = Command::new(common::binary())
                    .arg("--store")
                    .arg(&sp)
                    .args(["put", "both", "-"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .and_then(|mut c| {
                        c.stdin
                            .take()
                            .unwrap()
                            .write_all(format!("cli version {i}").as_bytes())?;
                        c.wait()
                    })
                    .unwrap();
                assert!(out.success(), "cli put {i}");
            }
        }
    });
    for t in threads {
        t.join().expect("every write and close succeeded");
    }
    cli.join().expect("every CLI put succeeded");
    let c = contents(&a, b"both");
    let mut sorted = c.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), c.len(), "none twice");
    assert_eq!(
        c.len(),
        2 * 3 * 30 + 30,
        "every version from both mounts and the CLI"
    );
    // Both mounts see all of it within the poll interval.
    let want = c.len() + 1; // versions + latest
    assert!(common::eventually(Duration::from_secs(3), || fs::read_dir(
        b.path("both")
    )
    .unwrap()
    .count()
        == want));
    assert!(common::eventually(Duration::from_secs(3), || fs::read_dir(
        a.path("both")
    )
    .unwrap()
    .count()
        == want));
}

/// A file whose content was set by `ftruncate` alone is this process's file: a child
/// spawned meanwhile inherits the descriptor and closes it at its exec, and that
/// close must not commit the file (found by the model-based test, where concurrent
/// tests spawned processes).
#[test]
fn a_childs_close_of_an_inherited_descriptor_commits_nothing() {
    if fuse_skipped() {
        return;
    }
    let (_dir, m) = mounted();
    fs::create_dir(m.path("notes")).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("notes/draft"))
        .unwrap();
    f.set_len(2).unwrap();
    // The child's exec closes its copy of `f` (close-on-exec): a flush from it.
    assert!(Command::new("true").status().unwrap().success());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(contents(&m, b"notes"), Vec::<Vec<u8>>::new());
    drop(f);
    assert!(common::eventually(Duration::from_secs(3), || contents(
        &m, b"notes"
    ) == vec![
        vec![0u8; 2]
    ]));
}

/// The same for a file not written yet: the child's flush is not its opener
/// closing it, so looking at the anchor meanwhile (which commits a file closed
/// unwritten whose release is still to come) commits nothing; the opener's own
/// writes and close make the one version.
#[test]
fn a_childs_close_of_an_unwritten_inherited_descriptor_commits_nothing() {
    if fuse_skipped() {
        return;
    }
    let (_dir, m) = mounted();
    fs::create_dir(m.path("notes")).unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("notes/draft"))
        .unwrap();
    assert!(Command::new("true").status().unwrap().success());
    // Looks at the anchor: a listing and `latest`.
    let _ = fs::read_dir(m.path("notes")).unwrap().count();
    let _ = fs::read_link(m.path("notes/latest"));
    assert_eq!(contents(&m, b"notes"), Vec::<Vec<u8>>::new());
    f.write_all(b"text").unwrap();
    drop(f);
    assert!(common::eventually(Duration::from_secs(3), || contents(
        &m, b"notes"
    ) == vec![
        b"text".to_vec()
    ]));
}

/// A program may write on one thread and close on another: that close is still
/// the writer's, so it commits, and the version is there when it returns.
#[test]
fn a_close_on_another_thread_of_the_writer_commits() {
    if fuse_skipped() {
        return;
    }
    let (_dir, m) = mounted();
    fs::create_dir(m.path("notes")).unwrap();
    let mut f = fs::File::create(m.path("notes/draft")).unwrap();
    f.write_all(b"written on one thread").unwrap();
    // A second descriptor keeps the file open, so only the close's flush (not the
    // release after the last close) can commit it.
    let keep = f.try_clone().unwrap();
    std::thread::spawn(move || drop(f)).join().unwrap();
    assert_eq!(
        contents(&m, b"notes"),
        vec![b"written on one thread".to_vec()]
    );
    drop(keep);
}

/// A new file written through a shared memory mapping (as linkers write their
/// output) becomes a version with the mapped bytes, though new files are written
/// around the page cache.
#[test]
fn a_new_file_written_through_mmap_commits_its_bytes() {
    if fuse_skipped() {
        return;
    }
    let (_dir, m) = mounted();
    fs::create_dir(m.path("out")).unwrap();
    let want: Vec<u8> = (0..100_000usize).map(|i| (i * 7 % 251) as u8).collect();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.path("out/a.bin"))
        .unwrap();
    f.set_len(want.len() as u64).unwrap();
    common::edit_through_mapping(&f, want.len(), |bytes| bytes.copy_from_slice(&want));
    drop(f);
    assert!(common::eventually(Duration::from_secs(3), || contents(
        &m, b"out"
    ) == vec![
        want.clone()
    ]));
    assert_eq!(fs::read(m.path("out/latest")).unwrap(), want);
}

/// A version opened in place for writing and changed through a shared mapping (as
/// a program that edits a file by `mmap` does) gives a new version with the
/// change; the old version keeps its bytes.
#[test]
fn an_in_place_edit_through_mmap_makes_a_new_version() {
    if fuse_skipped() {
        return;
    }
    let (_dir, m) = mounted();
    fs::create_dir(m.path("db")).unwrap();
    let old: Vec<u8> = (0..50_000usize).map(|i| (i % 253) as u8).collect();
    fs::write(m.path("db/file"), &old).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("db/latest"))
        .unwrap();
    let mut want = old.clone();
    want[100..104].copy_from_slice(b"EDIT");
    common::edit_through_mapping(&f, old.len(), |bytes| {
        assert_eq!(&bytes[..], &old[..], "the mapping shows the version");
        bytes[100..104].copy_from_slice(b"EDIT");
    });
    drop(f);
    assert!(common::eventually(Duration::from_secs(3), || contents(
        &m, b"db"
    ) == vec![
        old.clone(),
        want.clone()
    ]));
    assert_eq!(fs::read(m.path("db/latest")).unwrap(), want);
}

/// The chunk lengths of the split tree `root`, in stream order.
fn chunk_lengths(s: &FileStore, root: &anchorfs::Ref) -> Vec<usize> {
    use prost::Message;
    let node = anchorfs::proto::split::Node::decode(&s.get(root).unwrap()[..]).unwrap();
    let mut out = Vec::new();
    for c in &node.nodes {
        out.extend(chunk_lengths(
            s,
            &anchorfs::Ref::from_slice(&c.r#ref).unwrap(),
        ));
    }
    for c in &node.leaves {
        let r = anchorfs::Ref::from_slice(&c.r#ref).unwrap();
        out.push(s.blob_len(&r).unwrap() as usize);
    }
    out
}

#[test]
fn writes_and_in_place_edits_are_cut_as_the_store_records() {
    use anchorfs::split::Splitter;
    use anchorfs::store::{Chunking, StoreSettings};
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    FileStore::create(&go).unwrap(); // no record: Go's
    let made = dir.path().join("made"); // the mount creates it: the new default
    let small = dir.path().join("small");
    let settings = StoreSettings {
        chunking: Chunking::for_average(64 << 10).unwrap(),
    };
    anchorfs::store::create(small.as_os_str(), &settings).unwrap();
    let old: Vec<u8> = {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..3 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    };
    for (store, chunking) in [
        (&go, Chunking::GO),
        (&made, Chunking::NEW_STORE),
        (&small, settings.chunking),
    ] {
        let m = Mounted::new(store, "");
        fs::create_dir(m.path("big")).unwrap();
        fs::write(m.path("big/file"), &old).unwrap();
        // A write into the middle of the version, in place.
        let mut want = old.clone();
        want[1_500_000..1_500_016].copy_from_slice(b"sixteen bytes!!!");
        {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new()
                .write(true)
                .open(m.path("big/latest"))
                .unwrap();
            f.write_all_at(b"sixteen bytes!!!", 1_500_000).unwrap();
        }
        assert!(
            common::eventually(Duration::from_secs(5), || contents(&m, b"big")
                == vec![old.clone(), want.clone()]),
            "{}: two versions",
            store.display()
        );
        let s = FileStore::open(store).unwrap();
        assert_eq!(s.settings().unwrap().chunking, chunking);
        let history = anchor::history(&s, b"big").unwrap();
        for (a, data) in history.iter().zip([&old, &want]) {
            let expect: Vec<usize> = Splitter::chunks(&chunking.into(), data)
                .unwrap()
                .iter()
                .map(|&(l, _)| l as usize)
                .collect();
            assert_eq!(chunk_lengths(&s, &a.r), expect, "{}", store.display());
        }
        if chunking == Chunking::GO {
            // Exactly the tree any writer with Go's options makes.
            let root = anchorfs::split::store_bytes(
                &anchorfs::store::mem::MemStore::new(),
                &want,
                Default::default(),
            )
            .unwrap();
            assert_eq!(history[1].r, root);
        }
    }
}
