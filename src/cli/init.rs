//! `anchorfs init`: an empty store, with its chunking chosen and recorded.

use std::ffi::OsString;

use anyhow::bail;

use super::store;
use super::InitArgs;
use crate::store::{Chunking, StoreSettings};

/// What `anchorfs init --help` says after the options.
pub(super) const AFTER_HELP: &str =
    "Every writer of the store (put, a mount, sync's merges) cuts content the way \
     recorded here; it is chosen once, and init refuses a store that is already there \
     (whatever its setting). A store that put, sync or a mount creates gets the \
     default (256KiB). A store without a recorded setting, as every store Go made, keeps \
     Go's chunking. Larger chunks mean fewer blobs for large files; a small change \
     then stores a larger chunk again.";

/// The named chunkings of `--chunking`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Named {
    /// Go's defaults: 64 KiB average, 1 KiB minimum, fan-out 8
    Go,
    /// The default of new stores: 256 KiB average, 64 KiB minimum, fan-out 8
    Default,
}

/// `init [--chunk-size SIZE | --chunking NAME]`.
pub(super) fn init(spec: Option<&OsString>, a: InitArgs) -> anyhow::Result<()> {
    let Some(spec) = spec else {
        bail!("no store given: use --store STORE or set ANCHORFS_STORE");
    };
    let chunking = match (a.chunk_size, a.chunking) {
        (Some(size), _) => Chunking::for_average(size)?,
        (None, Some(Named::Go)) => Chunking::GO,
        (None, Some(Named::Default) | None) => Chunking::NEW_STORE,
    };
    let settings = StoreSettings { chunking };
    let opened = store::create(spec, &settings)?;
    // As every command that creates a store says, so a mistyped path is noticed.
    eprintln!("anchorfs: created a new store at {}", opened.label());
    println!("chunks: {chunking}");
    Ok(())
}

/// Parses a size: a number of bytes, or a number with K, KiB, M or MiB (binary
/// units, any case). Decimal units (KB, MB) are refused as ambiguous.
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!(
            "malformed size {text:?}: want a number of bytes, or one with K, KiB, M or MiB (1MiB, 256K, 65536)"
        ));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("size {text:?} is too large"))?;
    let unit = t[digits..].trim();
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "kb" | "mb" => {
            return Err(format!(
            "size {text:?}: {unit} is ambiguous; write KiB or MiB (binary units, 1024 and 1048576)"
        ))
        }
        _ => {
            return Err(format!(
                "size {text:?}: unknown unit {unit:?}; want K, KiB, M or MiB (binary units)"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("256K"), Ok(256 << 10));
        assert_eq!(parse_size("256k"), Ok(256 << 10));
        assert_eq!(parse_size("4 mib"), Ok(4 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("65536B"), Ok(65536));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "1GiB",
            "1KB",
            "1MB",
            "-1K",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("99999999999999M").is_err());
    }
}
