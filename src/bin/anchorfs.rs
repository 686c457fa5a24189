//! `anchorfs`: the command line for a store, and — when run as `mount.anchorfs`
//! (a link to this binary, as mount(8) calls helpers) or as `anchorfs mount` — the
//! mount program.

use std::path::Path;

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let status = if called.starts_with("mount.") {
        anchorfs::mount::main(args.split_off(1))
    } else if args.get(1).is_some_and(|a| a == "mount") {
        anchorfs::mount::main(args.split_off(2))
    } else {
        anchorfs::cli::main(args)
    };
    std::process::exit(status);
}
