//! The `anchorfs` command line: a store's anchors, content and upkeep without a
//! mount.
//!
//! Exit status: 0 on success, 2 when what was asked for is not there (an anchor, a
//! version at a time, a ref, a blob), 1 for every other error, including bad
//! arguments. Every failure prints one line on stderr naming what failed. Results go
//! to stdout; progress goes to stderr, and only when it is a terminal.

mod content_cmds;
pub mod docs;
mod init;
mod listing;
mod maint;
mod naming;
mod progress;
mod store;
mod sync;
mod walk;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};

use crate::blob::Ref;
use crate::timestamp::Timestamp;

/// "Not found": the error that exits with status 2.
#[derive(Debug)]
pub(crate) struct NotFound(pub(crate) String);

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// A versioned, content-addressed store: anchors (names with timestamped histories)
/// over SHA-256 blobs and split trees.
#[derive(Parser, Debug)]
#[command(
    name = "anchorfs",
    version,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "Exit status: 0 success, 2 not found (anchor, version, ref, blob), 1 any other error.\n\
                  TIME is RFC 3339 with any offset, e.g. 2026-11-24T21:20:32.5Z or 2026-11-24T22:20:32+01:00."
)]
struct Cli {
    /// The store: a directory holding a file store (DIR or file:DIR), `mem:` (an
    /// empty store in memory that lasts for this command only), or a PostgreSQL
    /// database (postgres://USER@HOST[:PORT]/DB or postgresql://...). Text before the first
    /// colon that looks like a URI scheme (letters, digits, + - .; no /) is a scheme,
    /// and an unknown one is an error: write a directory whose name has a colon as
    /// ./NAME or file:NAME
    #[arg(
        long,
        short = 's',
        env = "ANCHORFS_STORE",
        hide_env_values = true,
        global = true,
        value_name = "STORE"
    )]
    store: Option<OsString>,

    /// Take anchor names in the mount's escaped form (%25 for %, %2F for /, %00 for
    /// NUL, %2E for a leading dot, %empty, %long-HASH-...), so a directory name
    /// copied from a mount works as is
    #[arg(long, global = true)]
    escaped: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create an empty store, choosing how its content is cut into chunks
    #[command(after_help = init::AFTER_HELP)]
    Init(InitArgs),
    /// Mount a store as a file system (also run as mount.anchorfs, by mount(8))
    #[command(
        long_about = crate::mount::LONG_ABOUT,
        after_help = crate::mount::options_help(),
        // The store is SOURCE here: the global --store and --escaped mean nothing.
        arg(clap::Arg::new("store").long("store").hide(true).num_args(1)),
        arg(clap::Arg::new("escaped").long("escaped").hide(true).action(clap::ArgAction::SetTrue)),
    )]
    Mount(crate::mount::MountCommand),
    /// Store FILE (or stdin) and anchor NAME to it; print the ref
    #[command(
        after_help = "Content is stored as a split tree (content-defined chunks, so a changed \
                      version stores only what changed) unless --raw stores it as one blob. \
                      With --ref, NAME is anchored to content already in the store."
    )]
    Put(PutArgs),
    /// Write NAME's content as of TIME (default now), or print its ref
    Get(GetArgs),
    /// Write the content of a ref
    Cat(CatArgs),
    /// List anchors: name, latest time, latest ref, size, number of versions
    Ls(LsArgs),
    /// Show NAME's history, oldest first
    Log(LogArgs),
    /// Print the current anchor map ref, or "none"
    MapRef,
    /// Drop history entries older than a time, keeping at least N per anchor
    Expire(ExpireArgs),
    /// Make every store hold every blob and every anchor entry of the others
    #[command(
        after_help = "The stores are the ones given here and the one given by --store. \
                      Missing store directories are created. Safe to run again."
    )]
    Sync(SyncArgs),
    /// Delete blobs that no anchor reaches and that are older than the grace period
    #[command(
        after_help = "Kept: every version of every anchor (split trees: all nodes and chunks; \
                      raw blobs), the proto-types records, the anchor map's current nodes, and \
                      every blob younger than the grace period, so a writer between its chunk \
                      puts and its anchor put loses nothing."
    )]
    Gc(GcArgs),
    /// Check every blob against its ref and that every reachable ref is present
    Fsck,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "bash: source <(anchorfs completions bash)   \
                            zsh: anchorfs completions zsh > \"${fpath[1]}/_anchorfs\"   \
                            fish: anchorfs completions fish | source\n\
                            The Debian package installs them for bash, zsh and fish.")]
    Completions(CompletionsArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    /// The average chunk size: a power of two from 4KiB to 4MiB, with K/KiB or
    /// M/MiB (binary units) or in bytes: 1MiB, 256K, 65536. The minimum chunk is a
    /// quarter of it. Default 256KiB
    #[arg(long, value_name = "SIZE", value_parser = init::parse_size)]
    chunk_size: Option<u64>,
    /// A named chunking: `go` for Go's defaults (64 KiB average, 1 KiB minimum:
    /// what a store without a recorded setting has, so Go and anchorfs writers of
    /// the same content share chunks), `default` for the default of new stores
    #[arg(long, value_name = "NAME", value_enum, conflicts_with = "chunk_size")]
    chunking: Option<init::Named>,
}

#[derive(Args, Debug)]
struct CompletionsArgs {
    /// The shell
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
struct PutArgs {
    /// The anchor name
    name: OsString,
    /// The file to store; `-` or none for stdin
    #[arg(conflicts_with = "ref")]
    file: Option<PathBuf>,
    /// The version's time (default now)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<Timestamp>,
    /// Store the content as one blob instead of a split tree
    #[arg(long, conflicts_with = "ref")]
    raw: bool,
    /// Anchor NAME to this existing ref instead of storing content
    #[arg(long = "ref", id = "ref", value_name = "HEX", value_parser = parse_ref)]
    ref_hex: Option<Ref>,
    /// With --ref: anchor even if the store does not hold the ref
    #[arg(long, requires = "ref")]
    allow_missing: bool,
}

#[derive(Args, Debug)]
struct GetArgs {
    /// The anchor name
    name: OsString,
    /// Read the version current at this time (default now)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<Timestamp>,
    /// Print the ref instead of the content
    #[arg(long, conflicts_with_all = ["raw", "split"])]
    ref_only: bool,
    /// Read the ref as one raw blob, whatever its recorded kind
    #[arg(long, conflicts_with = "split")]
    raw: bool,
    /// Read the ref as a split tree, whatever its recorded kind
    #[arg(long)]
    split: bool,
}

#[derive(Args, Debug)]
struct CatArgs {
    /// The ref: 64 hex digits
    #[arg(value_name = "HEX", value_parser = parse_ref)]
    r: Ref,
    /// Read the ref as one raw blob, whatever its recorded kind
    #[arg(long, conflicts_with = "split")]
    raw: bool,
    /// Read the ref as a split tree, whatever its recorded kind
    #[arg(long)]
    split: bool,
}

#[derive(Args, Debug)]
struct LsArgs {
    /// One JSON document instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct LogArgs {
    /// The anchor name
    name: OsString,
    /// One JSON document instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ExpireArgs {
    /// Drop entries older than this time
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    before: Timestamp,
    /// Keep at least this many entries of every anchor; with 0, an anchor whose
    /// every entry is older than TIME is removed
    #[arg(long, value_name = "N")]
    keep: u64,
    /// Print what would be dropped without changing the store
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
struct SyncArgs {
    /// The other stores (DIR, file:DIR, `mem:` or postgres://..., as --store takes them)
    #[arg(required = true, value_name = "STORE")]
    stores: Vec<OsString>,
}

#[derive(Args, Debug)]
struct GcArgs {
    /// Report what would be deleted without deleting it
    #[arg(long)]
    dry_run: bool,
    /// Keep unreachable blobs younger than this (e.g. 30s, 10m, 1h, 2d, 1h30m, 0s)
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    grace: Duration,
}

fn parse_time(s: &str) -> Result<Timestamp, crate::timestamp::TimeError> {
    Timestamp::parse(s)
}

fn parse_ref(s: &str) -> Result<Ref, crate::blob::RefError> {
    Ref::from_hex(s)
}

/// Parses a duration: one or more `<number><unit>` with units `ms`, `s`, `m`, `h`,
/// `d` (`90s`, `10m`, `1h30m`, `0s`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("malformed duration {text:?}: want e.g. 30s, 10m, 1h, 2d, 1h30m");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_secs = |secs: u64| n.checked_mul(secs).map(Duration::from_secs);
        let d = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(n)),
            "s" => unit_secs(1),
            "m" => unit_secs(60),
            "h" => unit_secs(3600),
            "d" => unit_secs(86_400),
            _ => None,
        };
        total = d.and_then(|d| total.checked_add(d)).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The `anchorfs` command, every subcommand and option, as clap builds it (for the
/// man page, the completions and tests).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

/// Runs the command line on `args` (the program name first); returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let (store, escaped) = (cli.store, cli.escaped);
    let result = match cli.command {
        Command::Mount(m) => {
            return match m.into_args("anchorfs") {
                Ok(a) => crate::mount::run(a),
                Err(e) => {
                    eprintln!("anchorfs: {e} (see anchorfs mount --help)");
                    1
                }
            }
        }
        Command::Completions(a) => {
            let mut out = std::io::stdout().lock();
            clap_complete::generate(a.shell, &mut command(), "anchorfs", &mut out);
            return 0;
        }
        command => run(store.as_ref(), escaped, command),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let code = if e.chain().any(|c| c.is::<NotFound>()) {
                2
            } else {
                1
            };
            eprintln!("anchorfs: {}", one_line(&e));
            code
        }
    }
}

/// The error and its causes on one line.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for (i, cause) in e.chain().enumerate() {
        let text = cause.to_string();
        // A cause that only repeats the message above it adds nothing.
        if i > 0 && out.ends_with(&text) {
            continue;
        }
        if i > 0 {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace(['\n', '\r'], " ")
}

/// Help and version go to stdout with status 0; a bad command line gets one line on
/// stderr and status 1.
fn usage_error(e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            1
        }
        _ => {
            // clap's message, without its usage block, on one line.
            let first = crate::mount::clap_one_line(&e);
            eprintln!("anchorfs: {first} (see anchorfs --help)");
            1
        }
    }
}

fn run(store: Option<&OsString>, escaped: bool, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init(a) => init::init(store, a),
        Command::Put(a) => content_cmds::put(store, escaped, a),
        Command::Get(a) => content_cmds::get(store, escaped, a),
        Command::Cat(a) => content_cmds::cat(store, a),
        Command::Ls(a) => listing::ls(store, a),
        Command::Log(a) => listing::log(store, escaped, a),
        Command::MapRef => listing::map_ref(store),
        Command::Expire(a) => listing::expire(store, a),
        Command::Sync(a) => sync::sync(store, a),
        Command::Gc(a) => maint::gc(store, a),
        Command::Fsck => maint::fsck(store),
        Command::Mount(_) | Command::Completions(_) => {
            anyhow::bail!("mount and completions are run by main")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "1", "h", "1x", "-1s", "1.5h", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
