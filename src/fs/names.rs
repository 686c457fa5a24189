//! Names in the mount: anchor names as directory names and back, and version times
//! as file names and back. Pure functions; every rule here is in docs/SEMANTICS.md.
//!
//! An anchor name is any byte string. Its directory name escapes `%` as `%25`, `/` as
//! `%2F`, NUL as `%00` and a leading `.` as `%2E`; everything else stays as it is.
//! Two names get forms of their own, which no escaped name can take because an
//! escaped name only ever has `%` before two hex digits:
//! - the empty name is `%empty`;
//! - a name whose escaped form is longer than 255 bytes is
//!   `%long-<64 hex digits of the name's SHA-256>-<start of the escaped name>`,
//!   resolved back by its hash.

use sha2::{Digest, Sha256};

use crate::blob::Ref;
use crate::timestamp::Timestamp;

/// The longest directory entry name the kernel accepts.
pub const NAME_MAX: usize = 255;

/// The directory name of the empty anchor name.
pub const EMPTY_NAME: &str = "%empty";

/// The prefix of the directory names of over-long anchor names.
pub const LONG_PREFIX: &str = "%long-";

/// How an anchor's directory name maps back to the anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unescaped {
    /// The anchor name itself.
    Name(Vec<u8>),
    /// An over-long name, known by the SHA-256 of its bytes.
    LongHash(Ref),
}

fn escape_plain(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 8);
    for (i, &b) in name.iter().enumerate() {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'/' => out.extend_from_slice(b"%2F"),
            0 => out.extend_from_slice(b"%00"),
            b'.' if i == 0 => out.extend_from_slice(b"%2E"),
            _ => out.push(b),
        }
    }
    out
}

/// The directory name of anchor `name` (at most [`NAME_MAX`] bytes, never `.` or
/// `..`, no `/` or NUL).
pub fn escape(name: &[u8]) -> Vec<u8> {
    if name.is_empty() {
        return EMPTY_NAME.as_bytes().to_vec();
    }
    let plain = escape_plain(name);
    if plain.len() <= NAME_MAX {
        return plain;
    }
    let mut out = LONG_PREFIX.as_bytes().to_vec();
    out.extend_from_slice(hex::encode(Sha256::digest(name)).as_bytes());
    out.push(b'-');
    // Keep a readable start without cutting an escape or a UTF-8 sequence in two.
    let room = NAME_MAX - out.len();
    let mut cut = room.min(plain.len());
    while cut > 0 && !is_boundary(&plain, cut) {
        cut -= 1;
    }
    out.extend_from_slice(&plain[..cut]);
    out
}

/// Whether `plain[..cut]` ends between two whole characters and outside an escape.
fn is_boundary(plain: &[u8], cut: usize) -> bool {
    if cut >= plain.len() {
        return true;
    }
    let in_escape = (cut >= 1 && plain[cut - 1] == b'%') || (cut >= 2 && plain[cut - 2] == b'%');
    let continuation = plain[cut] & 0xC0 == 0x80;
    !in_escape && !continuation
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The anchor a directory name stands for; `None` if no anchor has this name as its
/// one directory name (bad escapes, or an escape where none is needed).
pub fn unescape(dir: &[u8]) -> Option<Unescaped> {
    if dir == EMPTY_NAME.as_bytes() {
        return Some(Unescaped::Name(Vec::new()));
    }
    if let Some(rest) = dir.strip_prefix(LONG_PREFIX.as_bytes()) {
        let hash = std::str::from_utf8(rest.get(..64)?).ok()?;
        if rest.get(64) != Some(&b'-') || hash.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        return Ref::from_hex(hash).ok().map(Unescaped::LongHash);
    }
    let mut out = Vec::with_capacity(dir.len());
    let mut i = 0;
    while i < dir.len() {
        if dir[i] == b'%' {
            let hi = hex_val(*dir.get(i + 1)?)?;
            let lo = hex_val(*dir.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(dir[i]);
            i += 1;
        }
    }
    // Only the canonical spelling names the anchor.
    (escape(&out) == dir).then_some(Unescaped::Name(out))
}

/// How version files are named in a mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeNames {
    /// `2026-11-24T21:20:32.123456789Z`
    #[default]
    Rfc3339,
    /// `2026-11-24_21-20-32.123456789Z`, for tools and shares that reject `:`.
    Compact,
}

impl TimeNames {
    /// The file name of a version at `at`.
    pub fn format(self, at: Timestamp) -> String {
        match self {
            TimeNames::Rfc3339 => at.to_rfc3339(),
            TimeNames::Compact => at.to_compact(),
        }
    }
}

/// The time a version file name stands for, in either form; `None` for anything
/// else (so only the two exact spellings of a version name it).
pub fn parse_version_name(name: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(name).ok()?;
    let t = Timestamp::parse(text).ok()?;
    (t.to_rfc3339() == text || t.to_compact() == text).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(name: &[u8]) {
        let dir = escape(name);
        assert!(dir.len() <= NAME_MAX, "{:?}", dir);
        assert!(!dir.contains(&b'/') && !dir.contains(&0));
        assert!(dir != b"." && dir != b".." && !dir.starts_with(b"."));
        match unescape(&dir).expect("escaped names unescape") {
            Unescaped::Name(n) => assert_eq!(n, name),
            Unescaped::LongHash(h) => {
                assert!(escape_plain(name).len() > NAME_MAX);
                assert_eq!(h, Ref::of(name));
            }
        }
    }

    #[test]
    fn every_byte_round_trips() {
        for b in 0..=255u8 {
            round_trip(&[b]);
            round_trip(&[b'x', b, b'y']);
            round_trip(&[b, b]);
        }
    }

    #[test]
    fn the_rules() {
        assert_eq!(escape(b"a%b/c\0d"), b"a%25b%2Fc%00d");
        assert_eq!(escape(b".hidden"), b"%2Ehidden");
        assert_eq!(escape(b"a.b."), b"a.b.");
        assert_eq!(escape(b".."), b"%2E.");
        assert_eq!(escape(b""), EMPTY_NAME.as_bytes());
        assert_eq!(escape(b"caf\xc3\xa9"), "café".as_bytes());
        assert_eq!(
            escape(b"%empty"),
            b"%25empty",
            "no collision with the empty form"
        );
        assert_eq!(escape(b"%long-x"), b"%25long-x");
    }

    #[test]
    fn only_canonical_spellings_resolve() {
        assert_eq!(unescape(b"%41"), None, "A needs no escape");
        assert_eq!(
            unescape(b"%2e"),
            None,
            "lowercase escape is not the canonical one"
        );
        assert_eq!(unescape(b"a.%2E"), None, "only a leading dot is escaped");
        assert_eq!(unescape(b"%2"), None);
        assert_eq!(unescape(b"%zz"), None);
        assert_eq!(unescape(b"%2Ex"), Some(Unescaped::Name(b".x".to_vec())));
        assert_eq!(unescape(b"%long-abc"), None);
    }

    #[test]
    fn long_names() {
        let long = vec![b'n'; 300];
        round_trip(&long);
        let d = escape(&long);
        assert_eq!(d.len(), NAME_MAX);
        assert!(d.starts_with(LONG_PREFIX.as_bytes()));
        // Two long names with the same start get different directories.
        let mut other = long.clone();
        other[299] = b'm';
        assert_ne!(escape(&other), d);
        // Exactly 255 escaped bytes stays plain; 256 does not.
        assert_eq!(escape(&[b'a'; 255]), vec![b'a'; 255]);
        assert!(escape(&[b'a'; 256]).starts_with(LONG_PREFIX.as_bytes()));
        // A name of escapes and multibyte characters is cut cleanly.
        let mixed: Vec<u8> = "é/%".repeat(100).into_bytes();
        let d = escape(&mixed);
        assert!(d.len() <= NAME_MAX);
        round_trip(&mixed);
        let tail = &d[LONG_PREFIX.len() + 65..];
        assert!(std::str::from_utf8(tail).is_ok());
    }

    #[test]
    fn version_names() {
        let t = Timestamp::parse("2026-11-24T21:20:32.123456789Z").unwrap();
        assert_eq!(
            TimeNames::Rfc3339.format(t),
            "2026-11-24T21:20:32.123456789Z"
        );
        assert_eq!(
            TimeNames::Compact.format(t),
            "2026-11-24_21-20-32.123456789Z"
        );
        assert_eq!(
            parse_version_name(b"2026-11-24T21:20:32.123456789Z"),
            Some(t)
        );
        assert_eq!(
            parse_version_name(b"2026-11-24_21-20-32.123456789Z"),
            Some(t)
        );
        assert_eq!(
            parse_version_name(b"2026-11-24T21:20:32.123456789+00:00"),
            None
        );
        assert_eq!(parse_version_name(b"2026-11-24T21:20:32Z"), None);
        assert_eq!(parse_version_name(b"latest"), None);
        assert_eq!(parse_version_name(b"\xff"), None);
    }
}
