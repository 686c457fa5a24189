//! The mount's logger: to stderr in the foreground, to a file with `-o log=FILE`,
//! else to syslog once detached. `fuser`'s messages that report nothing wrong are
//! shown only with debug logging.
//!
//! Locks: the logger's sink, held to write one message.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;

use anyhow::{Context, Result};
use parking_lot::Mutex;

use super::MountArgs;

/// A logger to stderr, a file, or syslog.
struct Logger {
    program: &'static str,
    level: log::LevelFilter,
    sink: Mutex<Sink>,
}

enum Sink {
    Stderr,
    File(File),
    Syslog(Option<UnixDatagram>),
}

/// Messages of `fuser` that report nothing wrong: a reply to a request the kernel
/// dropped because its caller was interrupted or killed (ENOENT), and the second
/// unmount attempt after `umount` already removed the mount (EINVAL). Shown only
/// with debug logging.
fn expected_fuser_noise(r: &log::Record) -> bool {
    if !r.target().starts_with("fuser") || r.level() > log::Level::Warn {
        return false;
    }
    let text = r.args().to_string();
    (text.starts_with("Failed to send FUSE reply") && text.contains("os error 2)"))
        || (text.starts_with("Failed to umount filesystem") && text.contains("os error 22)"))
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
            && (m.target().starts_with("anchorfs") || m.level() <= log::Level::Warn)
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata())
            || (self.level < log::LevelFilter::Debug && expected_fuser_noise(r))
        {
            return;
        }
        let mut sink = self.sink.lock();
        match &mut *sink {
            Sink::Stderr => eprintln!("{}: {}: {}", self.program, r.level(), r.args()),
            Sink::File(f) => {
                let _ = writeln!(f, "{} {} {}", crate::Timestamp::now(), r.level(), r.args());
            }
            Sink::Syslog(sock) => {
                let pri = match r.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    _ => 7,
                } + 8; // facility: user
                let msg = format!("<{pri}>anchorfs[{}]: {}", std::process::id(), r.args());
                if let Some(s) = sock {
                    let _ = s.send(msg.as_bytes());
                }
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger `args` ask for (`detached`: the daemon, with no stderr).
pub(super) fn init_logging(args: &MountArgs, detached: bool) -> Result<()> {
    let level = if args.debug {
        log::LevelFilter::Debug
    } else {
        std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(log::LevelFilter::Info)
    };
    let sink = match (&args.opts.log, detached) {
        (Some(path), _) => Sink::File(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log file {}", path.display()))?,
        ),
        (None, false) => Sink::Stderr,
        (None, true) => Sink::Syslog(
            UnixDatagram::unbound()
                .ok()
                .filter(|s| s.connect("/dev/log").is_ok()),
        ),
    };
    let logger = Logger {
        program: args.program,
        level,
        sink: Mutex::new(sink),
    };
    log::set_max_level(level);
    let _ = log::set_boxed_logger(Box::new(logger));
    Ok(())
}
