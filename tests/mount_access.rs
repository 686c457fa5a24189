//! Who may do what through a mount (docs/SEMANTICS.md, "Who may do what"): with
//! `allow_other`, a second user (`nobody`, run with `setpriv`) gets only what the
//! modes shown grant, and the modes never show more than the store's directory
//! grants or a file was written with.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anchorfs::anchor;
use anchorfs::store::file::FileStore;
use common::{fuse_skipped, Mounted};

/// The unprivileged user the tests act as.
const NOBODY: &str = "65534";

/// Runs `script` with `sh -c` as `nobody`; returns (status, stderr).
fn as_nobody(script: &str) -> (i32, String) {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("run setpriv (util-linux)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Versions of `name` in the store, unmounted or not.
fn history_len(store: &Path, name: &[u8]) -> usize {
    anchor::history(&FileStore::open(store).unwrap(), name)
        .unwrap()
        .len()
}

/// A store whose directory has mode `dir_mode`, with one anchor `notes`, mounted
/// with `opts` in a directory every user can reach.
fn setup(dir_mode: u32, opts: &str) -> (tempfile::TempDir, Mounted) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = FileStore::create(&store).unwrap();
    let (r, _) = anchorfs::store::Store::put(&s, b"hello\n").unwrap();
    anchor::put(&s, b"notes", r, anchorfs::Timestamp::now()).unwrap();
    drop(s);
    fs::set_permissions(&store, fs::Permissions::from_mode(dir_mode)).unwrap();
    let m = Mounted::new(&store, opts);
    fs::set_permissions(m.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    (dir, m)
}

#[test]
fn another_user_gets_only_what_the_modes_grant() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = setup(0o755, "allow_other");
    let mnt = m.mnt.display().to_string();
    assert_eq!(mode(&m.path("notes")), 0o755);
    // Reading what the modes allow works.
    let (code, err) = as_nobody(&format!(
        "cat {mnt}/notes/latest >/dev/null && ls {mnt}/notes"
    ));
    assert_eq!(code, 0, "nobody reads a 0644 version: {err}");
    // Every kind of write into root's anchor is refused, and nothing is added.
    let before = history_len(&m.store, b"notes");
    for script in [
        format!("echo pwned > {mnt}/notes/latest"),
        format!("echo pwned >> {mnt}/notes/latest"),
        format!("echo new > {mnt}/notes/newfile"),
        format!("mkdir {mnt}/newanchor"),
        format!("ln -s {} {mnt}/notes/link", "0".repeat(64)),
        format!("mv {mnt}/notes/latest {mnt}/notes/moved"),
        format!("dd if=/dev/zero of={mnt}/notes/latest bs=1 count=1 conv=notrunc"),
    ] {
        let (code, err) = as_nobody(&script);
        assert_ne!(code, 0, "{script} succeeded as nobody");
        assert!(
            err.contains("Permission denied"),
            "{script}: EACCES expected, got {err:?}"
        );
    }
    assert_eq!(history_len(&m.store, b"notes"), before, "nothing was added");
    assert!(!m.path("newanchor").exists());
    // A file root writes with mode 0600 stays root's.
    Command::new("install")
        .args(["-m", "600", "/etc/hostname"])
        .arg(m.path("notes/private"))
        .status()
        .unwrap();
    assert_eq!(mode(&m.path("notes/private")), 0o600);
    let latest = fs::read_link(m.path("notes/latest")).unwrap();
    assert_eq!(
        mode(&m.path("notes").join(&latest)),
        0o600,
        "the version too"
    );
    let (code, err) = as_nobody(&format!("cat {mnt}/notes/latest"));
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    // The mode stays with the version across a remount.
    let store = m.store.clone();
    drop(m);
    let m = Mounted::new(&store, "allow_other");
    assert_eq!(mode(&m.path("notes").join(&latest)), 0o600);
}

#[test]
fn modes_show_at_most_what_the_store_directory_grants() {
    if fuse_skipped() {
        return;
    }
    let (_d, m) = setup(0o700, "allow_other");
    assert_eq!(mode(&m.mnt), 0o700);
    assert_eq!(mode(&m.path("notes")), 0o700);
    let latest = fs::read_link(m.path("notes/latest")).unwrap();
    assert_eq!(mode(&m.path("notes").join(latest)), 0o600);
    // Even a file created 0666 shows no more than the store grants.
    fs::write(m.path("notes/wide"), b"x").unwrap();
    fs::set_permissions(m.path("notes/wide"), fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(mode(&m.path("notes/wide")), 0o600);
    let mnt = m.mnt.display().to_string();
    let (code, err) = as_nobody(&format!("ls {mnt}/notes"));
    assert_ne!(code, 0, "nobody lists a 0700 store");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn explicit_modes_and_the_anchor_directory_rule() {
    if fuse_skipped() {
        return;
    }
    // Files writable by everyone, directories not: opening a version for writing
    // adds a version to its anchor directory, which the modes do not grant.
    let (_d, m) = setup(0o755, "allow_other,file_mode=0666,dir_mode=0755");
    assert_eq!(mode(&m.path("notes")), 0o755);
    let latest = fs::read_link(m.path("notes/latest")).unwrap();
    assert_eq!(mode(&m.path("notes").join(latest)), 0o666);
    let mnt = m.mnt.display().to_string();
    let before = history_len(&m.store, b"notes");
    let (code, err) = as_nobody(&format!(
        "dd if=/dev/zero of={mnt}/notes/latest bs=1 count=1 conv=notrunc"
    ));
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(history_len(&m.store, b"notes"), before);
    drop(m);
    // With a writable anchor directory the same write makes a version.
    let (_d, m) = setup(0o755, "allow_other,file_mode=0666,dir_mode=0777");
    let mnt = m.mnt.display().to_string();
    let (code, err) = as_nobody(&format!("echo mine > {mnt}/notes/latest"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(m.path("notes/latest")).unwrap(), b"mine\n");
    assert_eq!(history_len(&m.store, b"notes"), 2);
}
