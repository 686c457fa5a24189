//! The `anchorfs` command line.

use std::ffi::OsString;

/// Runs the command line on `args` (the program name first); returns the exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let _ = args;
    eprintln!("anchorfs: the command line is not built yet");
    1
}
