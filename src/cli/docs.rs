//! The manual pages `anchorfs(1)` and `mount.anchorfs(8)` and the shell completions,
//! generated from the command definitions (clap_mangen, clap_complete), so they list
//! exactly the commands and options the program takes. The package ships them from
//! `dist/`; a test checks that those files are what this module generates.

use clap_complete::Shell;
use roff::{bold, italic, roman, Inline, Roff};

/// The files the package installs from `dist/`: (path under `dist/`, content).
pub fn dist_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("man/anchorfs.1", anchorfs_1().into_bytes()),
        ("man/mount.anchorfs.8", mount_anchorfs_8().into_bytes()),
        ("completions/anchorfs.bash", completion(Shell::Bash)),
        ("completions/_anchorfs", completion(Shell::Zsh)),
        ("completions/anchorfs.fish", completion(Shell::Fish)),
    ]
}

/// The completion script for `shell`, as `anchorfs completions SHELL` prints it.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "anchorfs", &mut out);
    out
}

/// A page being written: sections, paragraphs, tagged paragraphs and examples.
struct Page {
    out: String,
}

impl Page {
    fn new(title: &str, section: &str) -> Page {
        let mut r = Roff::new();
        r.control(
            "TH",
            [
                title,
                section,
                "",
                &format!("anchorfs {}", env!("CARGO_PKG_VERSION")),
                if section == "8" {
                    "System Administration"
                } else {
                    "User Commands"
                },
            ],
        );
        Page { out: r.render() }
    }

    /// Appends roff rendered elsewhere, without its preamble and without its `.SH`
    /// heading lines (when `keep_headings` is false).
    fn splice(&mut self, rendered: &str, keep_headings: bool) {
        let preamble = Roff::new().render();
        let body = rendered.strip_prefix(preamble.as_str()).unwrap_or(rendered);
        for line in body.lines() {
            if !keep_headings && line.starts_with(".SH ") {
                continue;
            }
            self.out.push_str(line);
            self.out.push('\n');
        }
    }

    fn roff(&mut self, r: &Roff) {
        let rendered = r.render();
        self.splice(&rendered, true);
    }

    fn sh(&mut self, title: &str) -> &mut Self {
        self.roff(Roff::new().control("SH", [title]));
        self
    }

    fn ss(&mut self, title: &str) -> &mut Self {
        self.roff(Roff::new().control("SS", [title]));
        self
    }

    /// A paragraph of plain text.
    fn p(&mut self, text: &str) -> &mut Self {
        self.roff(Roff::new().control("PP", []).text([roman(text)]));
        self
    }

    /// A paragraph of inlines.
    fn pi(&mut self, inlines: Vec<Inline>) -> &mut Self {
        self.roff(Roff::new().control("PP", []).text(inlines));
        self
    }

    /// A tagged paragraph: `term` in bold, then `text`.
    fn tp(&mut self, term: &str, text: &str) -> &mut Self {
        self.roff(
            Roff::new()
                .control("TP", [])
                .text([bold(term)])
                .text([roman(text)]),
        );
        self
    }

    /// Lines shown as they are, indented.
    fn example(&mut self, lines: &[&str]) -> &mut Self {
        let mut r = Roff::new();
        r.control("PP", []).control("RS", ["4"]).control("nf", []);
        for l in lines {
            r.text([roman(*l)]);
        }
        r.control("fi", []).control("RE", []);
        self.roff(&r);
        self
    }

    fn finish(self) -> String {
        self.out
    }
}

/// Renders one section of clap_mangen's page for `cmd`.
fn mangen(
    cmd: &clap::Command,
    f: fn(&clap_mangen::Man, &mut dyn std::io::Write) -> std::io::Result<()>,
) -> String {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    f(&man, &mut buf).expect("rendering to memory");
    String::from_utf8(buf).expect("utf-8 man page")
}

/// A synopsis line: `prefix`, then every option and argument `cmd` takes.
fn synopsis(prefix: &str, cmd: &clap::Command) -> Vec<Inline> {
    let mut line = vec![bold(prefix)];
    let shown = || cmd.get_arguments().filter(|a| !a.is_hide_set());
    for a in shown().filter(|a| !a.is_positional()) {
        let flag = match (a.get_long(), a.get_short()) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => continue,
        };
        let (open, close) = if a.is_required_set() {
            (" ", "")
        } else {
            (" [", "]")
        };
        line.push(roman(open));
        line.push(bold(flag));
        if a.get_action().takes_values() {
            if let Some([v, ..]) = a.get_value_names() {
                line.push(roman(" "));
                line.push(italic(v.as_str()));
            }
        }
        line.push(roman(close));
    }
    for a in shown().filter(|a| a.is_positional()) {
        let name = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| a.get_id().to_string().to_uppercase());
        let many = if matches!(a.get_action(), clap::ArgAction::Append) {
            "..."
        } else {
            ""
        };
        if a.is_required_set() {
            line.push(roman(" "));
            line.push(italic(format!("{name}{many}")));
        } else {
            line.push(roman(" ["));
            line.push(italic(name));
            line.push(roman(format!("]{many}")));
        }
    }
    line
}

/// The `-o` options as tagged paragraphs, from their definitions.
fn mount_options(page: &mut Page) {
    for d in crate::mount::option_docs() {
        let mut text = d.help.clone();
        if !text.ends_with('.') {
            text.push('.');
        }
        if let Some(def) = &d.default {
            text.push_str(&format!(" Default: {def}."));
        }
        page.tp(&d.spelling, &text);
    }
    page.tp("generic options", &crate::mount::generic_help());
}

/// `anchorfs(1)`: every command and its options.
pub fn anchorfs_1() -> String {
    let cmd = super::command();
    let mut page = Page::new("anchorfs", "1");
    let top = cmd.clone().disable_help_subcommand(true);
    page.splice(&mangen(&top, clap_mangen::Man::render_name_section), true);
    page.sh("SYNOPSIS");
    let mut line = synopsis("anchorfs", &top);
    line.push(roman(" "));
    line.push(italic("COMMAND"));
    line.push(roman(" ..."));
    page.pi(line);
    page.sh("DESCRIPTION");
    page.p(
        "anchorfs keeps anchors: names whose content changes over time. Every version \
         is stored by the SHA-256 of its content (a blob, or a split tree of chunks for \
         large content, so a changed version stores only what changed), and each anchor \
         keeps the timestamped history of the refs it pointed at. Nothing is ever \
         overwritten: any past version is one lookup away, by its time.",
    )
    .p(
        "The commands below work on a store without a mount; anchorfs mount (and \
         mount.anchorfs, the same program under the name mount(8) runs) shows the \
         store as a file system, described in mount.anchorfs(8). The store format is \
         the one of the Go library github.com/bobg/bs: a store written by either is \
         read and extended by the other.",
    );
    page.splice(
        &mangen(
            &top.clone()
                .disable_help_flag(true)
                .disable_version_flag(true),
            clap_mangen::Man::render_options_section,
        ),
        true,
    );
    page.tp("-h, --help", "Print help (on every command).")
        .tp("-V, --version", "Print the version.");

    page.sh("COMMANDS");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        let sub = sub
            .clone()
            .disable_help_flag(true)
            .bin_name(format!("anchorfs {name}"));
        page.ss(&format!("anchorfs {name}"));
        page.pi(synopsis(&format!("anchorfs {name}"), &sub));
        page.roff(Roff::new().control("PP", []));
        page.splice(
            &mangen(&sub, clap_mangen::Man::render_description_section),
            false,
        );
        page.splice(
            &mangen(&sub, clap_mangen::Man::render_options_section),
            false,
        );
        if name == "mount" {
            page.p("The -o options (mount.anchorfs(8) says more):");
            mount_options(&mut page);
        } else if sub.get_after_help().is_some() {
            page.p(&sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default());
        }
    }

    page.sh("TIMES AND DURATIONS")
        .p("TIME is RFC 3339 with any offset: 2026-11-24T21:20:32Z, \
             2026-11-24T21:20:32.5Z, 2026-11-24T22:20:32+01:00. A version is named by \
             its time in UTC with nine fractional digits. get --at TIME reads the \
             version current at TIME, that is the newest not after it.")
        .p(
            "gc --grace takes one or more number-unit pairs, with units ms, s, m, h and \
             d: 30s, 10m, 1h30m, 2d. The mount's poll= takes one number (fractions \
             allowed) with ms, s, m or h.",
        );
    page.sh("NAMES").p(
        "An anchor name is any byte string; on the command line it is taken as given. \
         With --escaped it is taken in the form a mount shows it as a directory name: \
         %25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty for the empty \
         name, and %long-HASH-... for names too long for a directory entry. ls --json \
         and log --json give both forms.",
    );
    page.sh("EXIT STATUS")
        .tp("0", "Success.")
        .tp(
            "1",
            "Any error but not-found, bad arguments among them; one line on stderr says \
             what failed.",
        )
        .tp(
            "2",
            "What was asked for is not there: an anchor, a version at that time, a ref, \
             a blob.",
        );
    page.sh("ENVIRONMENT")
        .tp(
            "ANCHORFS_STORE",
            "The store when --store is not given: a directory (DIR or file:DIR), \
             mem: (an empty store in memory that lasts for one command), or a \
             PostgreSQL URL (postgres://USER@HOST[:PORT]/DB).",
        )
        .tp(
            "RUST_LOG",
            "The mount's log level (error, warn, info, debug); -d is debug.",
        );
    page.sh("FILES").p(
        "A file store is a directory: blobs/HH/HHHH/HEX holds the blobs, anchormapref \
         the ref of the anchor map, anchormapref.lock the writers' lock. A mount and put \
         keep anchorfs-sizes (a cache of content sizes) and a mount anchorfs-modes (the \
         modes files were written with) beside them; deleting either is safe. \
         anchorfs-settings records the store's chunking, chosen when it was created (by \
         init, or 256 KiB chunks when put, sync or a mount created it); a store without it, \
         as every store Go made, has Go's 64 KiB chunks. init, put, sync and mount create \
         a missing store and say so on stderr (created a new store at PATH); the other \
         commands refuse a directory that is not a store.",
    );
    page.sh("EXAMPLES").example(&[
        "export ANCHORFS_STORE=$HOME/anchorfs-store",
        "anchorfs init --chunk-size 1MiB             # an empty store, 1 MiB chunks",
        "echo 'first draft' | anchorfs put notes     # anchor notes (prints the ref)",
        "anchorfs put notes draft.txt                # a second version",
        "anchorfs log notes                          # the history, oldest first",
        "anchorfs get notes --at 2026-11-24T12:00:00Z > then.txt",
        "anchorfs ls --json",
        "anchorfs sync /backup/anchorfs-store        # both stores end with everything",
        "anchorfs gc --dry-run                       # what gc would delete",
        "anchorfs mount $ANCHORFS_STORE ~/anchors    # browse it; umount ~/anchors ends it",
    ]);
    page.sh("SEE ALSO").pi(vec![
        bold("mount.anchorfs"),
        roman("(8), "),
        bold("mount"),
        roman("(8), "),
        bold("fusermount3"),
        roman("(1)"),
    ]);
    page.finish()
}

/// `mount.anchorfs(8)`: the mount program, its sources, options, fstab lines and
/// what each errno means in the mount.
pub fn mount_anchorfs_8() -> String {
    let helper = crate::mount::helper_command();
    let mut page = Page::new("mount.anchorfs", "8");
    page.splice(
        &mangen(&helper, clap_mangen::Man::render_name_section),
        true,
    );
    page.sh("SYNOPSIS");
    page.pi(vec![
        bold("mount.anchorfs"),
        roman(" "),
        italic("SOURCE MOUNTPOINT"),
        roman(" [-o "),
        italic("OPTIONS"),
        roman("] [-f] [-d]"),
    ]);
    page.pi(vec![
        bold("anchorfs mount"),
        roman(" "),
        italic("SOURCE MOUNTPOINT"),
        roman(" [-o "),
        italic("OPTIONS"),
        roman("] [-f] [-d]"),
    ]);
    page.pi(vec![
        bold("mount -t anchorfs"),
        roman(" [-o "),
        italic("OPTIONS"),
        roman("] "),
        italic("SOURCE MOUNTPOINT"),
    ]);
    page.sh("DESCRIPTION")
        .p(
            "mount.anchorfs shows an anchorfs store as a FUSE file system: one directory \
             per anchor, and in it one read-only file per version, named by the \
             version's time, plus latest, a symbolic link to the newest. Programs read \
             and write it as any directory tree; writing never changes an old version, \
             it adds a new one. It is the same program as anchorfs mount; mount(8) runs \
             it as /sbin/mount.anchorfs for mount -t anchorfs and for fstab lines of \
             type anchorfs.",
        )
        .p(
            "Without -f it starts the daemon and returns once the mount is live, with \
             status 0, or prints one line saying why it could not mount and exits 1. \
             umount MOUNTPOINT (or fusermount3 -u MOUNTPOINT as a user), SIGTERM, \
             SIGINT or SIGHUP to the daemon finish pending writes and unmount. The \
             mount is listed as type fuse.anchorfs with the store as its source (mount, \
             df, /proc/mounts).",
        );
    page.sh("SOURCES")
        .tp(
            "DIR, file:DIR",
            "A file store. A missing or empty directory becomes a new store, and the \
             command says so on stderr (created a new store at PATH), so a mistyped \
             path is noticed. A directory holding other things, or a path that is not \
             a directory, is refused.",
        )
        .tp(
            "mem:",
            "An empty store in memory, gone when the mount ends (for trying things).",
        )
        .tp(
            "postgres://USER@HOST[:PORT]/DB, postgresql://...",
            "A store in a PostgreSQL database, in the tables of the Go library's store/pg, \
             so either implementation reads and writes it. A Unix socket's directory is \
             the host percent-encoded (postgres://USER@%2Fvar%2Frun%2Fpostgresql/DB) or \
             given as ?host=/DIR. The password comes from the URL, PGPASSWORD or \
             ~/.pgpass. A database without the tables gets them when the command may \
             create a store; one whose tables of those names differ is refused.",
        )
        .p(
            "Text before the first colon that looks like a URI scheme (a letter, then \
             letters, digits, +, - or .; no /) is a scheme, and one that is not listed \
             here (s3://bucket, sqlite:///x.db, a misspelt fiel:x) is refused, \
             naming the known ones; nothing is created. A directory whose name has a \
             colon is written ./a:b or file:a:b.",
        );
    page.splice(
        &mangen(
            &helper
                .clone()
                .disable_help_flag(true)
                .disable_version_flag(true),
            clap_mangen::Man::render_options_section,
        ),
        true,
    );
    page.tp("-h, --help", "Print help: every option below.");
    page.sh("MOUNT OPTIONS");
    page.p("Given with -o, comma-separated; later ones override earlier ones.");
    mount_options(&mut page);

    page.sh("THE FILE SYSTEM")
        .example(&[
            "MOUNTPOINT/",
            "  NAME/                              one directory per anchor",
            "    2026-11-24T21:20:32.123456789Z   one read-only file per version",
            "    latest -> 2026-11-24T21:20:32.123456789Z",
            "  .anchorfs/at/TIME/NAME             NAME as it was at TIME",
            "  .anchorfs/refs/HEX                 any blob or split tree by its ref",
        ])
        .p(
            "A version file's size is its content's, its times are the version's time, \
             and it never changes, so the kernel caches it for long. Directories and \
             latest change, and are cached for the poll interval; changes made by the \
             command line, other processes or other mounts appear within it. Every \
             read is checked against the content's SHA-256: damaged content is an \
             error, never wrong bytes. Extended attributes user.anchorfs.ref and \
             user.anchorfs.at give a version's ref and time.",
        )
        .p(
            "Anchor names are escaped into directory names: % as %25, / as %2F, NUL as \
             %00, a leading dot as %2E; the empty name is %empty and a name too long \
             for a directory entry %long- followed by its SHA-256 and a prefix.",
        )
        .p(
            "Time travel: .anchorfs/at/TIME/NAME is NAME's newest version not after \
             TIME, for any RFC 3339 time (2026-11-24T12:00:00Z, \
             2026-11-24T13:00:00+01:00) or a version's compact name.",
        );
    page.sh("WRITING")
        .p(
            "mkdir MOUNTPOINT/NAME makes a new anchor. A file created in an anchor's \
             directory becomes a version when it is closed or fsynced; its time is the \
             commit time, or the time its name gives if it is named by a time (a \
             back-dated version). Opening latest or a version for writing starts a new \
             version seeded with that content (none with O_TRUNC), committed at close: \
             so echo hi > NAME/latest, editors, cp, rsync and mv work. ln -s HEX \
             NAME/anything anchors NAME to an existing ref. Names starting with a dot, \
             ending in ~, .swp or .swx, 4913 and SQLite journals are scratch: never \
             committed unless renamed onto a normal name.",
        )
        .p(
            "A version is durable when the close or fsync that committed it returns 0; \
             a failure to store it is returned by that call. Programs that check \
             close(2) report it (cp, tee, dd, rsync, editors); a shell's redirection \
             (echo hi > FILE) does not, so in scripts whose writes must not fail \
             silently, write through one of those (echo hi | tee FILE > /dev/null).",
        )
        .p(
            "History is immutable: removing or renaming a version or an anchor with \
             versions is refused.",
        );
    page.sh("FSTAB").p(
        "A line of type anchorfs mounts at boot, or with mount MOUNTPOINT when it has \
         noauto. mount(8)'s generic options are accepted:",
    );
    page.example(&[
        "/srv/anchorfs-store  /mnt/anchors  anchorfs  defaults  0  0",
        "/srv/anchorfs-store  /mnt/anchors  anchorfs  noauto,allow_other,poll=5s  0  0",
        "/srv/anchorfs-store  /mnt/anchors  anchorfs  x-systemd.automount,names=compact  0  0",
    ]);
    page.p("The same as a systemd mount unit, /etc/systemd/system/mnt-anchors.mount:");
    page.example(&[
        "[Unit]",
        "Description=anchorfs store /srv/anchorfs-store",
        "",
        "[Mount]",
        "What=/srv/anchorfs-store",
        "Where=/mnt/anchors",
        "Type=anchorfs",
        "Options=allow_other",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]);

    page.sh("ERRORS");
    page.p("What each error means when a program gets it from the mount:");
    for (errno, text) in ERRNOS {
        page.tp(errno, text);
    }
    page.sh("EXIT STATUS").p(
        "0 once the mount is live (without -f), or when the daemon unmounted cleanly \
         (with -f); 1 when it could not mount: a mount point that is missing, not a \
         directory or already a mount point (busy); no usable /dev/fuse; a source that \
         is not a store; a bad option; the kernel refusing the mount. The message is \
         one line on stderr.",
    );
    page.sh("EXAMPLES").example(&[
        "mkdir -p ~/anchors",
        "anchorfs mount ~/anchorfs-store ~/anchors",
        "mkdir ~/anchors/notes",
        "echo 'first draft' > ~/anchors/notes/draft",
        "ls -l ~/anchors/notes/",
        "sudo mount -t anchorfs -o allow_other,ro /srv/anchorfs-store /mnt/anchors",
        "umount ~/anchors",
    ]);
    page.sh("SEE ALSO").pi(vec![
        bold("anchorfs"),
        roman("(1), "),
        bold("mount"),
        roman("(8), "),
        bold("fstab"),
        roman("(5), "),
        bold("systemd.mount"),
        roman("(5), "),
        bold("fusermount3"),
        roman("(1), "),
        bold("fuse"),
        roman("(8)"),
    ]);
    page.finish()
}

/// What each errno means in the mount.
const ERRNOS: &[(&str, &str)] = &[
    (
        "ENOENT",
        "No such anchor, version, time-travel entry or ref; or a time before the \
         anchor's first version.",
    ),
    (
        "EPERM",
        "History is immutable: removing or renaming a version or latest, removing an \
         anchor that has versions, renaming an anchor; or creating a file outside an \
         anchor's directory.",
    ),
    (
        "EROFS",
        "A write on a read-only mount (-o ro), or anywhere under .anchorfs/.",
    ),
    (
        "EACCES",
        "The modes shown do not grant what the caller asks (with allow_other or \
         default_permissions).",
    ),
    (
        "EEXIST",
        "mkdir of an anchor that exists; creating a file named by the time of an \
         existing version; a back-dated write or link whose content equals the next \
         version's (it would move that version).",
    ),
    (
        "EINVAL",
        "A malformed time under .anchorfs/at/, a malformed ref under .anchorfs/refs/ \
         or as a link's target.",
    ),
    (
        "EIO",
        "Damaged or missing content: a blob that fails its SHA-256, a split tree that \
         does not add up, a blob file the store refuses (a link, a FIFO, a device, one \
         too large); or a store that fails without a more precise error. The log names \
         the ref; everything else is still served.",
    ),
    (
        "ENOSPC",
        "The store's disk is full: returned by the close or fsync that would have \
         committed the version, which is not stored. Other errors of the store's file \
         system are passed on the same way.",
    ),
    (
        "EAGAIN",
        "A commit kept conflicting with other writers past the retry limit; nothing was \
         stored.",
    ),
    ("ENAMETOOLONG", "A name longer than 255 bytes."),
    (
        "ENOTEMPTY",
        "rmdir of a new anchor directory that still holds files being written.",
    ),
    (
        "EOPNOTSUPP",
        "Setting or removing extended attributes, or reading one outside the user. \
         namespace.",
    ),
    ("ENOSYS", "Any extended attribute call with -o noxattr."),
    (
        "ENOTCONN",
        "The daemon is gone (killed) while the mount is still there: unmount it with \
         fusermount3 -u or umount -l before mounting again.",
    ),
];
