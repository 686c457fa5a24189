//! The mount program: `mount.anchorfs SOURCE MOUNTPOINT [-o OPTIONS] [-f] [-d]`.

use std::ffi::OsString;

/// Runs the mount program on `args` (after the program name); returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let _ = args;
    eprintln!("mount.anchorfs: not built yet");
    1
}
