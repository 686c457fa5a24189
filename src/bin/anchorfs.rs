//! `anchorfs`: the command line for a store (`anchorfs mount` mounts one), and —
//! when run as `mount.anchorfs` (a link to this binary, as mount(8) calls helpers) —
//! the mount helper.

use std::path::Path;

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let status = if called.starts_with("mount.") {
        anchorfs::mount::helper_main(args.split_off(1))
    } else {
        anchorfs::cli::main(args)
    };
    std::process::exit(status);
}
