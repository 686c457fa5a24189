//! The mount program: `anchorfs mount SOURCE MOUNTPOINT [-o OPTIONS] [-f] [-d]`, and
//! the same as the mount helper `mount.anchorfs` (a link to the binary).
//!
//! It follows mount(8)'s helper conventions: `-o` takes a comma-separated list in
//! which mount(8)'s generic options are accepted and ignored where they mean nothing
//! here; `-n`, `-s` and `-v` (which mount(8) may pass) are accepted. Without `-f` it
//! starts the daemon and returns only once the mount is live (status 0), or prints why
//! it could not mount (status 1). SIGTERM and SIGINT unmount cleanly. The command
//! line is defined in [`args`].
//!
//! The parts: `args` (the command line), `daemon` (mounting and serving, starting
//! the daemon and its readiness handshake, signals, the allocator's settings),
//! `logging` (the daemon's logger) and `mountinfo` (what the kernel says is mounted,
//! and the mount's read-ahead), `poller` (refreshing on a store's wake-ups or
//! every poll interval) and `store` (the store served, with its caches). This module holds the entry points.
//!
//! Locks: only the logger's sink (in `logging`), held to write one message.

mod args;
mod daemon;
mod logging;
mod mountinfo;
pub mod poller;
mod store;

pub use args::{
    clap_one_line, generic_help, helper_command, option_docs, options_help, parse_args,
    parse_duration, parse_mode, parse_size, MountArgs, MountCommand, MountOptions, OptionDoc,
    Parsed, UsageError, ABOUT, GENERIC_OPTIONS, GENERIC_PREFIXES, LONG_ABOUT,
};
pub use mountinfo::is_mounted;

use std::ffi::OsString;

use daemon::{serve, spawn_daemon, tell_starter, Status, READY_ENV};
use logging::init_logging;

/// Runs the mount helper on `args` (after the program name, mount(8)'s calling
/// convention); returns the exit status.
pub fn helper_main(args: Vec<OsString>) -> i32 {
    match parse_args(&args) {
        Ok(Parsed::Mount(a)) => run(a),
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("mount.anchorfs: {e} (see mount.anchorfs --help)");
            1
        }
    }
}

/// Mounts as `args` say; returns the exit status.
pub fn run(args: MountArgs) -> i32 {
    let program = args.program;
    let daemon = std::env::var_os(READY_ENV).is_some();
    if !args.foreground {
        return match spawn_daemon(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{program}: {}", crate::cli::one_line(&e));
                1
            }
        };
    }
    if let Err(e) = init_logging(&args, daemon) {
        eprintln!("{program}: {}", crate::cli::one_line(&e));
        return 1;
    }
    let told = std::cell::Cell::new(false);
    let mut report = |r: Status| {
        if daemon {
            tell_starter(&r);
        } else {
            match &r {
                Status::Note(msg) | Status::Failed(msg) => eprintln!("{program}: {msg}"),
                Status::Live => {}
            }
        }
        if matches!(r, Status::Failed(_)) {
            told.set(true);
        }
    };
    match serve(&args, &mut report) {
        Ok(()) => 0,
        Err(e) => {
            // Told once: an error the caller already heard is not logged again.
            if !told.get() {
                log::error!("{}", crate::cli::one_line(&e));
            }
            1
        }
    }
}
