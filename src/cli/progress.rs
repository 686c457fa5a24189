//! Progress on a terminal: bars and counters on stderr when it is a terminal, and
//! nothing at all when it is not, so a pipe carries only results.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is shown: stderr is a terminal.
pub(crate) fn shown() -> bool {
    std::io::stderr().is_terminal()
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A bar over `len` items, labelled `what`; hidden off a terminal.
pub(crate) fn items(what: &str, len: u64) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
        .with_style(style(
            "{prefix} [{bar:30}] {human_pos}/{human_len} {msg} ({elapsed}, eta {eta})",
        ))
        .with_prefix(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A bar over `len` bytes (a counter of bytes when the length is unknown).
pub(crate) fn bytes(what: &str, len: Option<u64>) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let pb = match len {
        Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} (eta {eta})",
            )),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            style("{prefix} {spinner} {bytes} {bytes_per_sec} ({elapsed})"),
        ),
    };
    let pb = pb.with_prefix(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A counter of items whose total is not known.
pub(crate) fn counter(what: &str) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style("{prefix} {spinner} {human_pos} {wide_msg}"))
        .with_prefix(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A spinner for work that cannot be counted.
pub(crate) fn spinner(what: &str) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style("{prefix} {spinner} ({elapsed})"))
        .with_prefix(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}
