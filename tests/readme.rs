//! The README, followed as a newcomer would paste it: its `sh` blocks run in order in
//! one shell, in a scratch directory, with the mount point `/tmp/anchors` replaced by
//! a scratch one. Any command that exits non-zero fails the test, unless its line says
//! `expected to fail` (then it must fail). A block right after a
//! `<!-- readme-test: not run ... -->` line (installing, changing /etc/fstab) is not
//! run; `cargo` and `scripts/test.sh` are not run either (the test runs under them):
//! the binary cargo built stands in for `target/release/anchorfs`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, fuse_skipped, is_mounted};

const README_MNT: &str = "/tmp/anchors";

/// One command of the README: its line number, text, and whether it should fail.
struct Line {
    number: usize,
    text: String,
    expect_failure: bool,
}

/// The commands of the README's `sh` blocks that are run, in order.
fn commands(readme: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut run_block = false;
    let mut skip_next = false;
    let mut pending: Option<Line> = None;
    for (i, raw) in readme.lines().enumerate() {
        let number = i + 1;
        let trimmed = raw.trim();
        if !in_block {
            if trimmed.starts_with("<!-- readme-test: not run") {
                skip_next = true;
            } else if let Some(info) = trimmed.strip_prefix("```") {
                in_block = true;
                run_block = info.trim() == "sh" && !skip_next;
                skip_next = false;
            } else if !trimmed.is_empty() {
                skip_next = false;
            }
            continue;
        }
        if trimmed == "```" {
            in_block = false;
            continue;
        }
        if !run_block {
            continue;
        }
        // A line ending in `\` goes on on the next one.
        if let Some(p) = pending.as_mut() {
            p.text.push('\n');
            p.text.push_str(raw);
        } else {
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            pending = Some(Line {
                number,
                text: raw.to_string(),
                expect_failure: false,
            });
        }
        if !raw.trim_end().ends_with('\\') {
            let mut line = pending.take().unwrap();
            line.expect_failure = line.text.contains("# expected to fail");
            out.push(line);
        }
    }
    assert!(!in_block, "README.md has an unclosed code block");
    out
}

/// A bash script that runs `lines` and stops at the first one that does not exit as
/// the README says, naming its line number.
fn script(lines: &[Line], mnt: &Path) -> String {
    let mut s = String::from(
        "set -o pipefail\n\
         cargo() { echo \"(not run by the README test: cargo $*)\"; }\n",
    );
    // scripts/test.sh runs the whole suite, this test among it.
    s.push_str("test_sh() { echo \"(not run by the README test: scripts/test.sh $*)\"; }\n");
    for l in lines {
        let text = l.text.replace(README_MNT, mnt.to_str().unwrap());
        let text = match text.strip_prefix("scripts/test.sh") {
            Some(rest) => format!("test_sh{rest}"),
            None => text,
        };
        s.push_str(&format!("echo '+ README.md:{}'\n{text}\nrc=$?\n", l.number));
        if l.expect_failure {
            s.push_str(&format!(
                "if [ $rc -eq 0 ]; then echo 'README-TEST: line {} succeeded but should fail' >&2; exit 1; fi\n",
                l.number
            ));
        } else {
            s.push_str(&format!(
                "if [ $rc -ne 0 ]; then echo \"README-TEST: line {} exited $rc\" >&2; exit 1; fi\n",
                l.number
            ));
        }
    }
    s.push_str("echo README-TEST: done\n");
    s
}

#[test]
fn the_readme_s_commands_parse_as_expected() {
    let readme = "```sh\necho a   # x\n# comment\n\nfalse  # expected to fail: y\n```\n\
                  <!-- readme-test: not run (z) -->\n```sh\nrm -rf /\n```\n```ini\n[Unit]\n```\n\
                  ```sh\necho b \\\n  c\n```\n";
    let lines = commands(readme);
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "echo a   # x",
            "false  # expected to fail: y",
            "echo b \\\n  c"
        ]
    );
    assert_eq!(
        lines.iter().map(|l| l.expect_failure).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(lines[0].number, 2);
}

#[test]
fn the_readme_works_line_by_line() {
    if fuse_skipped() {
        return;
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let lines = commands(&readme);
    assert!(
        lines.iter().any(|l| l.text.contains("anchorfs mount")),
        "the README mounts nothing"
    );
    assert!(
        lines.iter().any(|l| l.expect_failure),
        "no expected failure"
    );

    // A scratch checkout: target/release/anchorfs is the binary cargo built.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("checkout");
    std::fs::create_dir_all(work.join("target/release")).unwrap();
    std::os::unix::fs::symlink(common::binary(), work.join("target/release/anchorfs")).unwrap();
    let mnt = dir.path().join("anchors");
    let text = script(&lines, &mnt);
    std::fs::write(dir.path().join("readme.sh"), &text).unwrap();

    let out = Command::new("timeout")
        .arg("120")
        .arg("bash")
        .arg(dir.path().join("readme.sh"))
        .current_dir(&work)
        .env_remove("ANCHORFS_STORE")
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let left_mounted = is_mounted(&mnt);
    if left_mounted {
        let _ = Command::new("umount").arg("-l").arg(&mnt).status();
    }
    let failed_line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("README-TEST: line "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| lines.iter().find(|l| l.number == n))
        .map(|l| format!("README.md:{}: {}", l.number, l.text))
        .unwrap_or_default();
    assert!(
        out.status.success() && stdout.contains("README-TEST: done"),
        "the README failed at {failed_line}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!left_mounted, "the README left {} mounted", README_MNT);
    // What the walk-through shows is there.
    assert!(stdout.contains("second draft"), "{stdout}");
    assert!(stdout.contains("first draft"), "time travel: {stdout}");
    assert!(stdout.contains("user.anchorfs.ref"), "{stdout}");
    assert!(
        stderr.contains("created a new store at"),
        "the first mount says it made the store: {stderr}"
    );
    assert!(eventually(Duration::from_secs(1), || !is_mounted(&mnt)));
    assert_eq!(
        std::fs::read_to_string(work.join("then.txt")).unwrap(),
        "a third draft\n"
    );
}
