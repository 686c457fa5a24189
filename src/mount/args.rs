//! The mount program's command line, defined once: `anchorfs mount`, the mount
//! helper `mount.anchorfs` (mount(8)'s calling convention), their `--help`, the man
//! page and the shell completions all come from the definitions here.
//!
//! Each `-o` option is a field of [`MountOptions`], a clap argument whose long name is
//! the option's name: an `-o` list is turned into those arguments (`cache=64M` into
//! `--cache=64M`) and parsed by clap, so types, defaults, possible values and help
//! text are clap's. mount(8)'s generic options are taken out of the list first.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Args, Command, FromArgMatches, ValueHint};

use crate::fs::names::TimeNames;

/// A bad mount command line: one line saying what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `anchorfs mount` and `mount.anchorfs`: the store, the mount point, `-o`, `-f`, `-d`.
#[derive(Args, Debug, Clone)]
pub struct MountCommand {
    /// The store: a directory holding a file store, DIR or file:DIR (a new store is
    /// made if the directory is missing or empty), `mem:` (an empty store in
    /// memory, gone at unmount), or a PostgreSQL database (postgres://USER@HOST/DB);
    /// as --store takes it, so an unknown SCHEME: is an
    /// error and a directory whose name has a colon is written ./NAME or file:NAME
    #[arg(value_name = "SOURCE", value_hint = ValueHint::DirPath)]
    pub source: OsString,
    /// The directory to mount on; it must exist and not be a mount point already
    #[arg(value_name = "MOUNTPOINT", value_hint = ValueHint::DirPath)]
    pub mountpoint: PathBuf,
    /// Mount options, comma-separated, as listed below; may be given more than once
    #[arg(
        short = 'o',
        value_name = "OPTIONS",
        action = ArgAction::Append,
        value_parser = OptionListParser,
        hide_possible_values = true
    )]
    pub options: Vec<String>,
    /// Stay in the foreground and log to stderr; without it the command returns once
    /// the mount is live and the daemon logs to syslog (or -o log=FILE)
    #[arg(short = 'f')]
    pub foreground: bool,
    /// Log debug detail (the same as RUST_LOG=debug)
    #[arg(short = 'd')]
    pub debug: bool,
}

/// The `-o` options that mean something here. Each field is one option; its long name
/// is the option's name and its doc comment the option's help.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Read-only: every write is refused (EROFS)
    #[arg(long = "ro")]
    pub read_only: bool,
    /// Let users other than the mounting one in; the kernel then checks every access
    /// against the modes shown (default_permissions is implied), and opening a version
    /// for writing needs write permission on its anchor directory. A user other than
    /// root needs user_allow_other in /etc/fuse.conf
    #[arg(long = "allow_other")]
    pub allow_other: bool,
    /// Have the kernel check every access against the modes shown, also without
    /// allow_other (EACCES where they do not grant it)
    #[arg(long = "default_permissions")]
    pub default_permissions: bool,
    /// The owner shown on every node (default: the user who mounted)
    #[arg(long = "uid", value_name = "N", value_parser = parse_uid)]
    pub uid: Option<u32>,
    /// The group shown on every node (default: the group of the user who mounted)
    #[arg(long = "gid", value_name = "N", value_parser = parse_gid)]
    pub gid: Option<u32>,
    /// The mode of every directory, octal (default: the store directory's, at most 0755)
    #[arg(long = "dir_mode", value_name = "OCTAL", value_parser = parse_mode)]
    pub dir_mode: Option<u16>,
    /// The mode of every file, octal (default: the mode it was written or chmod'ed
    /// with, else 0644, never more than the store directory grants)
    #[arg(long = "file_mode", value_name = "OCTAL", value_parser = parse_mode)]
    pub file_mode: Option<u16>,
    /// The size of the blob cache in memory, in bytes, with K, M or G
    #[arg(long = "cache", value_name = "SIZE", default_value = "16M", value_parser = parse_size)]
    pub cache_bytes: usize,
    /// Keep a cache of the store's blobs in files in DIR, so what was read once is
    /// read from local disk, also after a remount (default: for a store across a
    /// network, a directory under $XDG_CACHE_HOME/anchorfs, or /var/cache/anchorfs
    /// for root; none for a store in a local directory). Mounts may share one
    #[arg(long = "cache_dir", value_name = "DIR", value_hint = ValueHint::DirPath)]
    pub cache_dir: Option<PathBuf>,
    /// The most bytes the disk cache keeps, with K, M or G (whole copies of files
    /// up to half of it are kept too); 0 turns the disk cache off
    #[arg(long = "cache_size", value_name = "SIZE", default_value = "4G", value_parser = parse_size_u64)]
    pub cache_size: u64,
    /// How soon changes made elsewhere (the command line, other mounts) appear, and
    /// how long the kernel caches directories and latest; a store that tells of
    /// other writers' commits shows them sooner
    #[arg(long = "poll", value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub poll: Duration,
    /// How version files are named: rfc3339 (2026-11-24T21:20:32.123456789Z) or
    /// compact (2026-11-24_21-20-32.123456789Z, no colons, for tools and file shares
    /// that reject them); lookups take both
    #[arg(long = "names", value_name = "FORM", default_value = "rfc3339", value_parser = names_parser())]
    pub names: TimeNames,
    /// Where the daemon logs (default: syslog when detached, stderr with -f)
    #[arg(long = "log", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub log: Option<PathBuf>,
    /// Answer no extended attribute call (ENOSYS), so the kernel stops asking: a
    /// faster ls -l, and no user.anchorfs.ref or user.anchorfs.at
    #[arg(long = "noxattr")]
    pub no_xattr: bool,
    /// Serve every read through the daemon: no whole copies of large files in the
    /// disk cache, and no reads by the kernel from them (passthrough)
    #[arg(long = "nopassthrough")]
    pub no_passthrough: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions::from_lists::<&str>(&[]).expect("the defaults parse")
    }
}

/// Options of mount(8) and of the kernel that mean nothing to this filesystem,
/// accepted and ignored; and the prefixes of such options.
pub const GENERIC_OPTIONS: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "sync",
    "async",
    "dirsync",
    "mand",
    "nomand",
    "silent",
    "loud",
    "iversion",
    "noiversion",
    "auto_unmount",
];

/// Prefixes of options that are accepted and ignored (`x-systemd.automount`, ...).
pub const GENERIC_PREFIXES: &[&str] = &["x-", "comment=", "fsname=", "subtype=", "context="];

fn is_ignored_generic(opt: &str) -> bool {
    GENERIC_OPTIONS.contains(&opt) || GENERIC_PREFIXES.iter().any(|p| opt.starts_with(p))
}

/// The clap command that parses `-o` options, one argument per option.
fn options_command() -> Command {
    MountOptions::augment_args(
        Command::new("-o")
            .no_binary_name(true)
            .disable_help_flag(true)
            .args_override_self(true),
    )
}

/// One `-o` option as documented: its spelling (`cache=SIZE`), help, default and
/// possible values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDoc {
    /// The option's name (`cache`).
    pub name: String,
    /// How it is written (`cache=SIZE`, or `ro`).
    pub spelling: String,
    /// What it does.
    pub help: String,
    /// Its default, if it has one.
    pub default: Option<String>,
    /// The values it takes, if they are a fixed set.
    pub values: Vec<String>,
}

/// Every `-o` option, from its definition, in the order defined.
pub fn option_docs() -> Vec<OptionDoc> {
    options_command()
        .get_arguments()
        .map(|a| {
            let name = a.get_long().unwrap_or_default().to_string();
            let takes_value = a.get_action().takes_values();
            let spelling = match a.get_value_names() {
                Some([v, ..]) if takes_value => format!("{name}={v}"),
                _ => name.clone(),
            };
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let default = a
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned());
            let values = if takes_value {
                a.get_possible_values()
                    .iter()
                    .map(|p| p.get_name().to_string())
                    .collect()
            } else {
                Vec::new()
            };
            OptionDoc {
                name,
                spelling,
                help,
                default,
                values,
            }
        })
        .collect()
}

/// Wraps `text` to lines of at most `width` characters after `indent` spaces (the
/// first line's indent is the caller's).
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut col = indent;
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            if col + 1 + word.len() > width {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                col = indent;
            } else {
                out.push(' ');
                col += 1;
            }
        }
        out.push_str(word);
        col += word.len();
    }
    out
}

/// The MOUNT OPTIONS part of `--help`: every `-o` option with its help.
pub fn options_help() -> String {
    const COL: usize = 24;
    let mut out = String::from("Mount options (-o, comma-separated):\n");
    for d in option_docs() {
        let mut help = d.help.clone();
        if let Some(def) = &d.default {
            help.push_str(&format!(" [default: {def}]"));
        }
        let head = format!("  {}", d.spelling);
        if head.len() + 2 > COL {
            out.push_str(&head);
            out.push('\n');
            out.push_str(&" ".repeat(COL));
        } else {
            out.push_str(&format!("{head:COL$}"));
        }
        out.push_str(&wrap(&help, COL, 80));
        out.push('\n');
    }
    out.push_str(&format!(
        "  {:22}{}\n",
        "(generic)",
        wrap(&generic_help(), COL, 80)
    ));
    out
}

/// What the help says of mount(8)'s generic options.
pub fn generic_help() -> String {
    format!(
        "mount(8)'s generic options are accepted and ignored where they mean nothing \
         here: {}, and any option starting with {}",
        GENERIC_OPTIONS.join(", "),
        GENERIC_PREFIXES
            .iter()
            .map(|p| format!("{p}..."))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The completion candidates for `-o`: the option names (`cache=` for those taking
/// a value); any list is accepted here and checked by [`MountOptions::from_lists`].
#[derive(Clone)]
struct OptionListParser;

impl TypedValueParser for OptionListParser {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        Ok(value.to_string_lossy().into_owned())
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let docs = option_docs();
        Some(Box::new(docs.into_iter().map(|d| {
            let name = if d.spelling.contains('=') {
                format!("{}=", d.name)
            } else {
                d.name
            };
            PossibleValue::new(name).help(d.help)
        })))
    }
}

impl MountOptions {
    /// Parses `-o` lists (each comma-separated), later options overriding earlier
    /// ones; mount(8)'s generic options are accepted and ignored (`rw` undoes `ro`).
    pub fn from_lists<S: AsRef<str>>(lists: &[S]) -> Result<MountOptions, UsageError> {
        let cmd = options_command();
        let mut flags: Vec<String> = Vec::new();
        for opt in lists
            .iter()
            .flat_map(|l| l.as_ref().split(','))
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            if opt == "rw" {
                flags.retain(|f| f != "--ro");
                continue;
            }
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let arg = cmd.get_arguments().find(|a| a.get_long() == Some(key));
            let Some(arg) = arg else {
                if is_ignored_generic(opt) {
                    continue;
                }
                return Err(UsageError(format!("unknown mount option {opt:?}")));
            };
            let takes_value = arg.get_action().takes_values();
            match (takes_value, value) {
                (true, None) | (true, Some("")) => {
                    let v = arg
                        .get_value_names()
                        .and_then(|v| v.first())
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    return Err(UsageError(format!(
                        "mount option {key} needs a value: {key}={v}"
                    )));
                }
                (false, Some(_)) => {
                    return Err(UsageError(format!(
                        "mount option {key} takes no value: write -o {key}"
                    )))
                }
                (true, Some(v)) => {
                    // Each value through its own parser, for a message naming it.
                    let flag = format!("--{key}={v}");
                    if let Err(e) = cmd.clone().try_get_matches_from([&flag]) {
                        return Err(UsageError(value_error(key, v, arg, &e)));
                    }
                    flags.push(flag);
                }
                (false, None) => flags.push(format!("--{key}")),
            }
        }
        let matches = cmd
            .try_get_matches_from(&flags)
            .map_err(|e| UsageError(format!("bad mount options: {}", e.kind())))?;
        MountOptions::from_arg_matches(&matches)
            .map_err(|e| UsageError(format!("bad mount options: {}", e.kind())))
    }
}

/// The message for a value its option's parser refused.
fn value_error(key: &str, value: &str, arg: &clap::Arg, e: &clap::Error) -> String {
    use std::error::Error as _;
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|p| p.get_name().to_string())
        .collect();
    let why = if !possible.is_empty() {
        format!("want one of {}", possible.join(", "))
    } else if let Some(source) = e.source() {
        source.to_string()
    } else {
        e.kind().to_string()
    };
    format!("-o {key}={value}: {why}")
}

fn names_parser() -> impl TypedValueParser<Value = TimeNames> {
    PossibleValuesParser::new(["rfc3339", "compact"]).map(|s| match s.as_str() {
        "compact" => TimeNames::Compact,
        _ => TimeNames::Rfc3339,
    })
}

/// Parses a size: `256M`, `1G`, `64MiB`, `4096`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let bad = || {
        format!("{s:?} is not a size: want a number of bytes, with K, M or G for KiB, MiB or GiB (4096, 512K, 64M, 1G)")
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| bad())?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn parse_size_u64(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

/// Parses permission bits in octal: `0640`, `750`.
pub fn parse_mode(s: &str) -> Result<u16, String> {
    u16::from_str_radix(s.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not a mode: want octal permission bits (0640, 750)"))
}

/// Parses a duration: `1s`, `500ms`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("{s:?} is not a duration: want a number and a unit, ms, s, m or h (500ms, 1s, 1.5s, 2m, 1h)")
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(0.0..=1e9).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_uid(s: &str) -> Result<u32, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a user id: want a number (id -u shows yours)"))
}

fn parse_gid(s: &str) -> Result<u32, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a group id: want a number (id -g shows yours)"))
}

/// What the mount program's help says before and after the options.
pub const ABOUT: &str =
    "Mount a store as a file system: one directory per anchor, one read-only file per version";

/// The long description of the mount program.
pub const LONG_ABOUT: &str =
    "Mount a store as a file system: one directory per anchor, one read-only \
file per version named by its time, and latest, a link to the newest. Writing a file in an \
anchor's directory makes a new version when it is closed; nothing ever changes or removes an \
old one. Without -f the command returns once the mount is live; umount MOUNTPOINT (or \
fusermount3 -u MOUNTPOINT) ends it.";

/// Builds the helper's command, `mount.anchorfs SOURCE MOUNTPOINT [-o OPTIONS] [-f] [-d]`,
/// with mount(8)'s `-n`, `-s` and `-v` accepted and ignored.
pub fn helper_command() -> Command {
    let cmd = Command::new("mount.anchorfs")
        .version(env!("CARGO_PKG_VERSION"))
        .arg(
            clap::Arg::new("mtab")
                .short('n')
                .action(ArgAction::SetTrue)
                .hide(true),
        )
        .arg(
            clap::Arg::new("sloppy")
                .short('s')
                .action(ArgAction::SetTrue)
                .hide(true),
        )
        .arg(
            clap::Arg::new("verbose")
                .short('v')
                .action(ArgAction::SetTrue)
                .hide(true),
        );
    MountCommand::augment_args(cmd)
        .about(ABOUT)
        .long_about(LONG_ABOUT)
        .after_help(options_help())
}

/// Everything the mount command line says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountArgs {
    /// The store spec: a directory, `file:DIR`, or `mem:`.
    pub source: String,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Stay in the foreground.
    pub foreground: bool,
    /// Debug logging.
    pub debug: bool,
    /// The `-o` options, parsed.
    pub opts: MountOptions,
    /// The `-o` lists as given, for the daemon's command line.
    pub option_lists: Vec<String>,
    /// The program's name in messages: `anchorfs` or `mount.anchorfs`.
    pub program: &'static str,
}

impl MountCommand {
    /// Checks the `-o` lists; `program` names the program in messages.
    pub fn into_args(self, program: &'static str) -> Result<MountArgs, UsageError> {
        let opts = MountOptions::from_lists(&self.options)?;
        Ok(MountArgs {
            source: self.source.to_string_lossy().into_owned(),
            mountpoint: self.mountpoint,
            foreground: self.foreground,
            debug: self.debug,
            opts,
            option_lists: self.options,
            program,
        })
    }
}

/// What parsing the helper's command line gave.
#[derive(Debug)]
pub enum Parsed {
    /// Mount.
    Mount(MountArgs),
    /// Print this (help, version) on stdout and exit 0.
    Print(String),
}

/// Parses the helper's command line (after the program name).
pub fn parse_args(args: &[OsString]) -> Result<Parsed, UsageError> {
    let argv = std::iter::once(OsString::from("mount.anchorfs")).chain(args.iter().cloned());
    let matches = match helper_command().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    Ok(Parsed::Print(e.render().to_string()))
                }
                _ => Err(UsageError(clap_one_line(&e))),
            };
        }
    };
    let cmd =
        MountCommand::from_arg_matches(&matches).map_err(|e| UsageError(clap_one_line(&e)))?;
    cmd.into_args("mount.anchorfs").map(Parsed::Mount)
}

/// A clap error on one line, without its usage block.
pub fn clap_one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let message = message.join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn mount_args(s: &[&str]) -> Result<MountArgs, UsageError> {
        match parse_args(&args(s))? {
            Parsed::Mount(a) => Ok(a),
            Parsed::Print(p) => panic!("printed {p}"),
        }
    }

    #[test]
    fn helper_conventions() {
        let a = mount_args(&[
            "/srv/store",
            "/mnt/a",
            "-o",
            "rw,defaults,noauto,user,_netdev,nofail,x-systemd.automount,allow_other,uid=1000,cache=64M,poll=500ms,names=compact",
            "-n",
        ])
        .unwrap();
        assert_eq!(a.source, "/srv/store");
        assert_eq!(a.mountpoint, PathBuf::from("/mnt/a"));
        assert!(!a.foreground);
        assert!(a.opts.allow_other);
        assert_eq!(a.opts.uid, Some(1000));
        assert_eq!(a.opts.cache_bytes, 64 << 20);
        assert_eq!(a.opts.poll, Duration::from_millis(500));
        assert_eq!(a.opts.names, TimeNames::Compact);
        let b = mount_args(&["mem:", "/m", "-f", "-d", "-oro"]).unwrap();
        assert!(b.foreground && b.debug && b.opts.read_only);
        // mount(8) puts -o after the positionals and may pass -s and -v.
        let c = mount_args(&["/s", "/m", "-s", "-v", "-o", "ro", "-o", "rw,poll=2s"]).unwrap();
        assert!(!c.opts.read_only, "a later rw undoes ro");
        assert_eq!(c.opts.poll, Duration::from_secs(2));
        assert_eq!(c.option_lists, ["ro", "rw,poll=2s"]);
        // A later value overrides an earlier one.
        let d = mount_args(&["/s", "/m", "-o", "cache=1M,cache=2M"]).unwrap();
        assert_eq!(d.opts.cache_bytes, 2 << 20);
    }

    #[test]
    fn defaults() {
        let o = MountOptions::default();
        assert_eq!(o.cache_bytes, 16 << 20);
        assert_eq!(o.poll, crate::fs::fuse::DEFAULT_POLL);
        assert_eq!(o.names, TimeNames::Rfc3339);
        assert!(!o.read_only && !o.allow_other && !o.default_permissions && !o.no_xattr);
        assert!(!o.no_passthrough);
        assert_eq!(
            (o.uid, o.gid, o.dir_mode, o.file_mode),
            (None, None, None, None)
        );
        assert_eq!(o.log, None);
        assert_eq!((o.cache_dir, o.cache_size), (None, 4 << 30));
    }

    #[test]
    fn disk_cache_options() {
        let a = mount_args(&[
            "/s",
            "/m",
            "-o",
            "cache_dir=/var/tmp/c,cache_size=256M,cache=1M",
        ])
        .unwrap();
        assert_eq!(a.opts.cache_dir, Some(PathBuf::from("/var/tmp/c")));
        assert_eq!(a.opts.cache_size, 256 << 20);
        assert_eq!(a.opts.cache_bytes, 1 << 20, "the memory cache is its own");
        let off = MountOptions::from_lists(&["cache_size=0"]).unwrap();
        assert_eq!(off.cache_size, 0);
        let err = |s: &[&str]| mount_args(s).unwrap_err().to_string();
        let e = err(&["/s", "/m", "-o", "cache_size=huge"]);
        assert!(e.contains("cache_size=huge") && e.contains("64M"), "{e}");
        assert!(err(&["/s", "/m", "-o", "cache_dir="]).contains("cache_dir=DIR"));
        assert!(options_help().contains("cache_dir=DIR"));
    }

    #[test]
    fn every_option_parses() {
        let o = MountOptions::from_lists(&[
            "ro,allow_other,default_permissions,uid=1,gid=2,dir_mode=0750,file_mode=640,\
             cache=1G,poll=1.5s,names=rfc3339,log=/dev/null,noxattr,nopassthrough",
        ])
        .unwrap();
        assert!(o.read_only && o.allow_other && o.default_permissions && o.no_xattr);
        assert!(o.no_passthrough);
        assert_eq!((o.uid, o.gid), (Some(1), Some(2)));
        assert_eq!((o.dir_mode, o.file_mode), (Some(0o750), Some(0o640)));
        assert_eq!(o.cache_bytes, 1 << 30);
        assert_eq!(o.poll, Duration::from_millis(1500));
        assert_eq!(o.log, Some(PathBuf::from("/dev/null")));
        // Every documented option is one this parser knows.
        for d in option_docs() {
            let example = match d.name.as_str() {
                "uid" | "gid" => "7",
                "dir_mode" | "file_mode" => "0700",
                "cache" | "cache_size" => "1M",
                "cache_dir" => "/tmp/c",
                "poll" => "2s",
                "names" => "compact",
                "log" => "/dev/null",
                _ => "",
            };
            let opt = if d.spelling.contains('=') {
                format!("{}={example}", d.name)
            } else {
                d.name.clone()
            };
            MountOptions::from_lists(&[opt.as_str()]).unwrap_or_else(|e| panic!("{opt}: {e}"));
        }
    }

    #[test]
    fn bad_input_is_refused_in_one_clear_line() {
        let err = |s: &[&str]| mount_args(s).unwrap_err().to_string();
        assert!(err(&["/s"]).contains("MOUNTPOINT"));
        assert!(err(&["/s", "/m", "-o", "bogus"]).contains("unknown mount option \"bogus\""));
        let e = err(&["/s", "/m", "-o", "cache=lots"]);
        assert!(e.contains("cache=lots") && e.contains("64M"), "{e}");
        let e = err(&["/s", "/m", "-o", "poll=fast"]);
        assert!(e.contains("poll=fast") && e.contains("500ms"), "{e}");
        assert!(!e.contains("float"), "{e}");
        assert!(err(&["/s", "/m", "-o", "poll=-1s"]).contains("not a duration"));
        assert!(err(&["/s", "/m", "-o", "poll="]).contains("poll=DURATION"));
        assert!(err(&["/s", "/m", "-o", "ro=1"]).contains("takes no value"));
        assert!(err(&["/s", "/m", "-o", "names=short"]).contains("rfc3339, compact"));
        assert!(err(&["/s", "/m", "-o", "uid=me"]).contains("not a user id"));
        assert!(err(&["/s", "/m", "-o", "file_mode=999"]).contains("octal"));
        assert!(err(&["/s", "/m", "-x"]).contains("-x"));
        assert!(!err(&["/s", "/m", "-o"]).is_empty());
        for e in [
            err(&["/s", "/m", "-x"]),
            err(&["/s", "/m", "-o", "poll=fast"]),
        ] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn help_is_printed_not_an_error() {
        let Parsed::Print(help) = parse_args(&args(&["--help"])).unwrap() else {
            panic!("no help")
        };
        assert!(help.contains("Usage: mount.anchorfs"), "{help}");
        for d in option_docs() {
            assert!(
                help.contains(&d.spelling),
                "{} missing from {help}",
                d.spelling
            );
        }
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("3MiB").unwrap(), 3 << 20);
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("1 fortnight").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn the_helper_command_is_consistent() {
        helper_command().debug_assert();
    }
}
