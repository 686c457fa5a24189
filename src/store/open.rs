//! The one opener: a store spec, as the command line and the mount take it, turned
//! into a store.
//!
//! A spec is `SCHEME:REST` when the text before its first colon is a URI scheme
//! (a letter, then letters, digits, `+`, `-` or `.`; so no `/`); anything else is a
//! directory, opened as `file:` would open it. Schemes are matched ignoring ASCII
//! case. A scheme that no backend has is an error naming the ones there are, never
//! a directory: a directory whose name has a colon before any slash is written
//! `./a:b` or `file:a:b`.
//!
//! | spec | store |
//! |---|---|
//! | `DIR`, `file:DIR` | the file store in `DIR` ([`super::file`]) |
//! | `mem:` | a new, empty store in memory ([`super::mem`]) |
//! | `postgres://USER@HOST[:PORT]/DB`, `postgresql://...` | the store in a PostgreSQL database ([`super::pg`]) |
//!
//! A store an open makes (and every `mem:` store) gets its settings recorded
//! here, in one place for every backend: [`StoreSettings::NEW_STORE`] from
//! [`open`], the caller's from [`create`]. A store that was there keeps what it
//! has, a record or none (Go's settings).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::{file, mem, pg, DeletingStore, StoreError, StoreSettings};

/// Whether an opener may create a missing store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Only an existing store; anything else is refused.
    Existing,
    /// Create the store (and, for a file store, its directory) if it is missing.
    Create,
}

/// A store [`open`] opened.
pub struct Opened {
    /// The store.
    pub store: Arc<dyn DeletingStore>,
    /// Whether this open created it (a caller says so, so a mistyped path is
    /// noticed).
    pub created: bool,
    /// Whether the store is new: created by this open, or a `mem:` store (new
    /// every time, and not worth a message). Its settings are recorded then.
    pub fresh: bool,
    /// How messages name it: a file store's directory as given, `mem:`.
    pub label: String,
}

/// A backend's opener: the spec after `SCHEME:` (the whole spec for a bare
/// directory), and the mode.
type Opener = fn(&OsStr, OpenMode) -> Result<Opened, StoreError>;

/// Every backend, by scheme. A new backend is one file and one line here.
const BACKENDS: &[(&str, Opener)] = &[
    ("file", file::open_spec),
    ("mem", mem::open_spec),
    ("postgres", pg::open_postgres),
    ("postgresql", pg::open_postgresql),
];

/// The scheme of a spec that names none: a directory.
const DEFAULT_SCHEME: &str = "file";

/// Opens the store `spec` names (see the module docs for the forms), creating it
/// if missing with [`OpenMode::Create`], with [`StoreSettings::NEW_STORE`]
/// recorded. An unknown scheme or an empty path is [`StoreError::BadSpec`];
/// nothing is created then.
pub fn open(spec: &OsStr, mode: OpenMode) -> Result<Opened, StoreError> {
    let opened = open_backend(spec, mode)?;
    if opened.fresh {
        opened.store.record_settings(&StoreSettings::NEW_STORE)?;
    }
    Ok(opened)
}

/// Creates the store `spec` names with `settings` recorded, as `anchorfs init`
/// does. A store already there is refused ([`StoreError::AlreadyAStore`]) and
/// left as it is, whatever settings it has: a store's settings are chosen once.
pub fn create(spec: &OsStr, settings: &StoreSettings) -> Result<Opened, StoreError> {
    let opened = open_backend(spec, OpenMode::Create)?;
    if !opened.fresh {
        return Err(StoreError::AlreadyAStore {
            store: opened.label,
        });
    }
    let got = opened.store.record_settings(settings)?;
    if got != *settings {
        // Another writer created it in the same moment, with other settings.
        return Err(StoreError::AlreadyAStore {
            store: opened.label,
        });
    }
    Ok(opened)
}

fn open_backend(spec: &OsStr, mode: OpenMode) -> Result<Opened, StoreError> {
    let (scheme, rest) = match split_scheme(spec.as_bytes()) {
        Some((scheme, rest)) => (scheme, OsStr::from_bytes(rest)),
        None => (DEFAULT_SCHEME.as_bytes(), spec),
    };
    match BACKENDS
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(scheme))
    {
        Some((_, opener)) => opener(rest, mode),
        None => Err(unknown_scheme(spec, scheme)),
    }
}

/// `(scheme, rest)` if `spec` starts with a URI scheme and a colon.
fn split_scheme(spec: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = spec.iter().position(|&b| b == b':')?;
    let scheme = &spec[..colon];
    let first = *scheme.first()?;
    let is_scheme = first.is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    is_scheme.then(|| (scheme, &spec[colon + 1..]))
}

fn unknown_scheme(spec: &OsStr, scheme: &[u8]) -> StoreError {
    let known: Vec<String> = BACKENDS.iter().map(|(s, _)| format!("{s}:")).collect();
    let spec = spec.to_string_lossy().into_owned();
    StoreError::BadSpec {
        why: format!(
            "store {spec:?}: unknown store scheme \"{}:\" (known schemes: {}; a directory \
             whose name has a colon is written ./NAME or file:NAME)",
            String::from_utf8_lossy(scheme),
            known.join(", ")
        ),
        spec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_a_scheme() {
        let split = |s: &str| split_scheme(s.as_bytes()).map(|(a, b)| (a.to_vec(), b.to_vec()));
        let some = |a: &str, b: &str| Some((a.as_bytes().to_vec(), b.as_bytes().to_vec()));
        assert_eq!(split("mem:"), some("mem", ""));
        assert_eq!(split("file:a:b"), some("file", "a:b"));
        assert_eq!(
            split("postgresql://host/db"),
            some("postgresql", "//host/db")
        );
        assert_eq!(split("s3+x.y-z:b"), some("s3+x.y-z", "b"));
        for path in [
            "dir", "./a:b", "/abs/a:b", "a/b:c", ":x", "1a:b", "a b:c", "",
        ] {
            assert_eq!(split(path), None, "{path:?} is a directory");
        }
    }

    #[test]
    fn unknown_schemes_name_the_known_ones_and_create_nothing() {
        for spec in ["s3://bucket", "sqlite:///x.db", "fiel:x"] {
            let e = open(OsStr::new(spec), OpenMode::Create).err().unwrap();
            let msg = e.to_string();
            assert!(matches!(e, StoreError::BadSpec { .. }), "{msg}");
            assert!(msg.contains("file:, mem:, postgres:, postgresql:"), "{msg}");
            assert!(msg.contains(spec), "{msg}");
            let made = spec.split('/').next().unwrap();
            assert!(!std::path::Path::new(made).exists(), "{made} was created");
        }
    }

    #[test]
    fn known_schemes_and_bare_directories() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a:b");
        let spec = format!("file:{}", a.display());
        let o = open(OsStr::new(&spec), OpenMode::Create).unwrap();
        assert!(o.created);
        assert_eq!(o.label, a.display().to_string());
        let o = open(a.as_os_str(), OpenMode::Existing).unwrap();
        assert!(!o.created, "an absolute path is a directory, colon or not");
        assert_eq!(o.store.local_dir(), Some(&*a.canonicalize().unwrap()));
        assert!(open(OsStr::new("MEM:"), OpenMode::Existing).is_ok());
        assert!(matches!(
            open(OsStr::new("mem:x"), OpenMode::Create),
            Err(StoreError::BadSpec { .. })
        ));
        for empty in ["", "file:"] {
            let e = open(OsStr::new(empty), OpenMode::Create).err().unwrap();
            assert_eq!(e.to_string(), "the store path is empty");
        }
    }
}
