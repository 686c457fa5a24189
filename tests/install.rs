//! What a newcomer installing anchorfs meets: the man pages and completions the
//! package ships (generated from the command definitions, checked here to be up to
//! date and complete), `--help` on stdout listing every command and mount option,
//! one-line errors, and how a mount is listed.
//!
//! `ANCHORFS_REGENERATE=1 cargo test --test install` rewrites `dist/` from the
//! definitions.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anchorfs::mount::option_docs;
use common::{fuse_skipped, run};

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist")
}

/// Runs the binary under `name` (`anchorfs`, or `mount.anchorfs` through a link).
fn program(name: &str, dir: &Path) -> PathBuf {
    if name == "anchorfs" {
        return common::binary();
    }
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(common::binary(), &link).expect("link the helper");
    }
    link
}

/// Runs `prog args`; returns (status, stdout, stderr).
fn output(prog: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(prog)
        .args(args)
        .env_remove("ANCHORFS_STORE")
        .output()
        .expect("run the program");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A man page as text to search: roff's escapes of `-` and `'` undone, font changes
/// dropped, whitespace collapsed.
fn man_text(roff: &str) -> String {
    let t = roff
        .replace("\\-", "-")
        .replace("\\*(Aq", "'")
        .replace("\\(aq", "'")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
        .replace("\\e", "\\");
    squash(&t)
}

fn squash(t: &str) -> String {
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn read_dist(rel: &str) -> String {
    std::fs::read_to_string(dist().join(rel)).unwrap_or_else(|e| panic!("dist/{rel}: {e}"))
}

#[test]
fn the_shipped_man_pages_and_completions_are_generated_from_the_definitions() {
    let regenerate = std::env::var("ANCHORFS_REGENERATE").as_deref() == Ok("1");
    let mut stale = Vec::new();
    for (rel, content) in anchorfs::cli::docs::dist_files() {
        let path = dist().join(rel);
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &content).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&content[..]) {
            stale.push(rel);
        }
    }
    assert!(
        stale.is_empty(),
        "dist/ is not what the command definitions give: {stale:?}; \
         run ANCHORFS_REGENERATE=1 cargo test --test install and commit dist/"
    );
}

#[test]
fn every_command_and_option_is_in_the_man_pages_and_in_help() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = man_text(&read_dist("man/anchorfs.1"));
    let man8 = man_text(&read_dist("man/mount.anchorfs.8"));
    let anchorfs = program("anchorfs", dir.path());

    let (code, top_help, err) = output(&anchorfs, &["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "help goes to stdout: {err}");

    let cmd = anchorfs::cli::command();
    let mut seen = BTreeSet::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        seen.insert(name.to_string());
        assert!(
            top_help.contains(&format!("\n  {name} ")),
            "anchorfs --help lacks {name}"
        );
        assert!(
            man1.contains(&format!("anchorfs {name}")),
            "anchorfs(1) lacks the command {name}"
        );
        let (code, help, err) = output(&anchorfs, &[name, "--help"]);
        assert_eq!(code, 0, "{name} --help: {err}");
        assert!(err.is_empty(), "{name} --help writes to stderr: {err}");
        assert!(help.contains(&format!("Usage: anchorfs {name}")), "{help}");
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let spelled = match (arg.get_long(), arg.get_short()) {
                (Some(l), _) => format!("--{l}"),
                (None, Some(s)) => format!("-{s}"),
                (None, None) => arg
                    .get_value_names()
                    .and_then(|v| v.first())
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| arg.get_id().to_string().to_uppercase()),
            };
            assert!(
                help.contains(&spelled),
                "anchorfs {name} --help lacks {spelled}"
            );
            assert!(
                man1.contains(&spelled),
                "anchorfs(1) lacks {name}'s {spelled}"
            );
            if let Some(h) = arg.get_help() {
                let h = squash(&h.to_string());
                assert!(
                    man1.contains(&h),
                    "anchorfs(1) lacks the help of {name} {spelled}: {h}"
                );
            }
        }
    }
    for name in ["mount", "put", "get", "completions"] {
        assert!(seen.contains(name), "no {name} command");
    }

    // The mount program under both names, and both man pages: every -o option with
    // its description, -f and -d.
    let (code, help1, err1) = output(&anchorfs, &["mount", "--help"]);
    assert_eq!((code, err1.as_str()), (0, ""));
    let helper = program("mount.anchorfs", dir.path());
    let (code, help2, err2) = output(&helper, &["--help"]);
    assert_eq!((code, err2.as_str()), (0, ""));
    assert!(help2.contains("Usage: mount.anchorfs"), "{help2}");
    let docs = option_docs();
    for required in [
        "ro",
        "allow_other",
        "default_permissions",
        "uid",
        "gid",
        "dir_mode",
        "file_mode",
        "cache",
        "poll",
        "names",
        "log",
        "noxattr",
    ] {
        assert!(docs.iter().any(|d| d.name == required), "no -o {required}");
    }
    for (what, text) in [
        ("anchorfs mount --help", squash(&help1)),
        ("mount.anchorfs --help", squash(&help2)),
        ("mount.anchorfs(8)", man8.clone()),
        ("anchorfs(1)", man1.clone()),
    ] {
        for d in &docs {
            assert!(text.contains(&d.spelling), "{what} lacks -o {}", d.spelling);
            assert!(
                text.contains(&squash(&d.help)),
                "{what} lacks the description of -o {}: {}",
                d.name,
                d.help
            );
        }
        for flag in ["-o", "-f", "-d", "SOURCE", "MOUNTPOINT", "_netdev", "x-"] {
            assert!(text.contains(flag), "{what} lacks {flag}");
        }
    }
    // The man page of the mount helper says what people look up there.
    for section in [
        "SOURCES",
        "MOUNT OPTIONS",
        "FSTAB",
        "ERRORS",
        "EXIT STATUS",
        "SEE ALSO",
    ] {
        assert!(man8.contains(section), "mount.anchorfs(8) lacks {section}");
    }
    for errno in [
        "ENOENT", "EPERM", "EROFS", "EACCES", "EEXIST", "EINVAL", "EIO", "ENOSPC", "EAGAIN",
    ] {
        assert!(
            man8.contains(errno),
            "mount.anchorfs(8) does not say what {errno} means"
        );
    }
    assert!(man8.contains("anchorfs defaults 0 0"), "no fstab line");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let anchorfs = program("anchorfs", dir.path());
    for (shell, marker) in [
        ("bash", "-F _anchorfs"),
        ("zsh", "#compdef anchorfs"),
        ("fish", "complete -c anchorfs"),
    ] {
        let (code, out, err) = output(&anchorfs, &["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(marker), "{shell}: {out}");
        for word in ["mount", "put", "fsck", "completions"] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
        assert!(
            out.contains("poll="),
            "{shell} completion lacks the -o options"
        );
    }
    // As a newcomer would load it.
    let bin_dir = common::binary().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args([
            "-c",
            "source <(anchorfs completions bash); complete -p anchorfs",
        ])
        .env("PATH", path)
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("-F _anchorfs") && text.trim_end().ends_with("anchorfs"),
        "{text}"
    );
    let (code, _, err) = output(&anchorfs, &["completions", "tcsh"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("anchorfs: ") && err.lines().count() == 1,
        "{err}"
    );
}

/// One line on stderr, starting with `program: `, mentioning each of `mentions`.
fn one_line(program: &str, err: &str, mentions: &[&str]) {
    assert_eq!(err.lines().count(), 1, "want one line, got {err:?}");
    assert!(err.starts_with(&format!("{program}: ")), "{err:?}");
    for m in mentions {
        assert!(err.contains(m), "{err:?} does not mention {m:?}");
    }
}

#[test]
fn a_newcomer_s_mistakes_get_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let m = mnt.to_str().unwrap();
    let anchorfs = program("anchorfs", dir.path());
    let helper = program("mount.anchorfs", dir.path());

    for (prog, name, pre) in [
        (&anchorfs, "anchorfs", &["mount"][..]),
        (&helper, "mount.anchorfs", &[][..]),
    ] {
        let args = |extra: &[&str]| -> Vec<String> {
            pre.iter()
                .chain([s, m].iter())
                .chain(extra)
                .map(|a| a.to_string())
                .collect()
        };
        let go = |extra: &[&str]| {
            let a = args(extra);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            output(prog, &a)
        };
        let (code, out, err) = go(&["-o", "poll=fast"]);
        assert_eq!((code, out.as_str()), (1, ""));
        one_line(name, &err, &["poll=fast", "duration", "500ms", "1s"]);
        assert!(!err.contains("float"), "{err}");
        let (code, _, err) = go(&["-o", "cache=lots"]);
        assert_eq!(code, 1);
        one_line(name, &err, &["cache=lots", "size", "64M"]);
        let (code, _, err) = go(&["-o", "bogus"]);
        assert_eq!(code, 1);
        one_line(name, &err, &["bogus"]);
        let (code, _, err) = go(&["-o", "names=short"]);
        assert_eq!(code, 1);
        one_line(name, &err, &["names=short", "rfc3339", "compact"]);
        assert!(!store.exists(), "a bad command line creates nothing");
    }

    // A store path that is a regular file is named once.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let f = file.to_str().unwrap();
    for args in [&["mount", f, m][..], &["mount", f, m, "-f"]] {
        let (code, _, err) = output(&anchorfs, args);
        assert_eq!(code, 1);
        one_line("anchorfs", &err, &[f, "not a directory"]);
        assert_eq!(err.matches(f).count(), 1, "{err}");
    }
    let (code, _, err) = output(&anchorfs, &["--store", f, "put", "x", f]);
    assert_eq!(code, 1);
    one_line("anchorfs", &err, &[f]);
    assert_eq!(err.matches(f).count(), 1, "{err}");

    // A missing mount point.
    let nowhere = dir.path().join("nowhere");
    let (code, _, err) = output(&anchorfs, &["mount", s, nowhere.to_str().unwrap()]);
    assert_eq!(code, 1);
    one_line("anchorfs", &err, &["does not exist"]);

    // No arguments: the usage, status 1.
    let (code, _, err) = output(&helper, &[]);
    assert_eq!(code, 1);
    one_line("mount.anchorfs", &err, &["SOURCE"]);
}

#[test]
fn put_says_when_it_creates_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("typo-store");
    let input = dir.path().join("in");
    std::fs::write(&input, b"x").unwrap();
    let anchorfs = program("anchorfs", dir.path());
    let s = store.to_str().unwrap();
    let i = input.to_str().unwrap();
    let (code, _, err) = output(&anchorfs, &["--store", s, "put", "x", i]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, format!("anchorfs: created a new store at {s}\n"));
    let (code, _, err) = output(&anchorfs, &["--store", s, "put", "x", i]);
    assert_eq!((code, err.as_str()), (0, ""), "only when it creates one");
}

#[test]
fn a_mount_is_listed_as_fuse_anchorfs_from_its_store_and_says_when_it_creates_it() {
    if fuse_skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("new-store");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let (code, out, err) = run(
        common::binary().to_str().unwrap(),
        &[OsStr::new("mount"), store.as_os_str(), mnt.as_os_str()],
    );
    let listed = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let df = run("df", &[mnt.as_os_str()]);
    let _ = run("umount", &[mnt.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let abs = std::fs::canonicalize(&store).unwrap();
    assert_eq!(
        err,
        format!("anchorfs: created a new store at {}\n", abs.display())
    );
    let line = listed
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mnt.to_str().unwrap()))
        .unwrap_or_else(|| panic!("no mount at {} in {listed}", mnt.display()));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], abs.to_str().unwrap(), "{line}");
    assert_eq!(fields[2], "fuse.anchorfs", "{line}");
    let df = String::from_utf8_lossy(&df.1).into_owned();
    assert!(df.contains(abs.to_str().unwrap()), "{df}");

    // Mounting the store again (it exists now) says nothing.
    let (code, _, err) = run(
        common::binary().to_str().unwrap(),
        &[OsStr::new("mount"), store.as_os_str(), mnt.as_os_str()],
    );
    let _ = run("umount", &[mnt.as_os_str()]);
    assert_eq!((code, err.as_str()), (0, ""));
}
