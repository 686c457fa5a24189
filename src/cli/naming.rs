//! Anchor names on the command line: as given, or in the mount's escaped form; and
//! names shown to people and in JSON.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use serde::Serialize;

use super::NotFound;
use crate::anchor::{self, Name};
use crate::blob::Ref;
use crate::fs::names::{self, Unescaped};
use crate::schema::Map;
use crate::store::AnchorGetter;

/// The anchor `given` names: its bytes as they are, or, with `escaped`, the name the
/// mount's directory name `given` stands for. An over-long name's `%long-` form is
/// resolved by its hash against the anchors in `store`.
pub(crate) fn resolve<G: AnchorGetter + ?Sized>(
    store: &G,
    given: &OsStr,
    escaped: bool,
) -> anyhow::Result<Vec<u8>> {
    let bytes = given.as_bytes();
    if !escaped {
        return Ok(bytes.to_vec());
    }
    match names::unescape(bytes) {
        Some(Unescaped::Name(n)) => Ok(n),
        Some(Unescaped::LongHash(h)) => find_by_hash(store, &h)?.ok_or_else(|| {
            NotFound(format!(
                "no anchor has the long name {} (a %long- form names only an existing anchor)",
                Name(bytes.to_vec())
            ))
            .into()
        }),
        None => anyhow::bail!(
            "{} is not an escaped anchor name (%25 for %, %2F for /, %00 for NUL, %2E for a leading dot, %empty, %long-HASH-...)",
            Name(bytes.to_vec())
        ),
    }
}

/// The anchor whose name hashes to `h`, if any.
fn find_by_hash<G: AnchorGetter + ?Sized>(store: &G, h: &Ref) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(root) = anchor::map_ref(store)? else {
        return Ok(None);
    };
    let mut found = None;
    Map::each(store, &root, &mut |k, _| {
        if found.is_none() && Ref::of(&k) == *h {
            found = Some(k.to_vec());
        }
        Ok(())
    })?;
    Ok(found)
}

/// A name for people: the text itself when it is printable UTF-8, else quoted with
/// escapes.
pub(crate) fn display(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) if !s.is_empty() && !s.chars().any(char::is_control) && !s.starts_with('"') => {
            s.to_string()
        }
        _ => Name(name.to_vec()).to_string(),
    }
}

/// A name for messages: quoted, with control characters (and bytes that are not
/// UTF-8) escaped.
pub(crate) fn quoted(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) => format!("{s:?}"),
        Err(_) => Name(name.to_vec()).to_string(),
    }
}

/// A name in JSON, in every form: `name` (UTF-8, lossy for other bytes), `name_hex`
/// (the exact bytes) and `escaped` (the mount's directory name).
#[derive(Serialize)]
pub(crate) struct NameJson {
    name: String,
    name_hex: String,
    escaped: String,
}

impl NameJson {
    /// The forms of `name`.
    pub(crate) fn new(name: &[u8]) -> NameJson {
        NameJson {
            name: String::from_utf8_lossy(name).into_owned(),
            name_hex: hex::encode(name),
            escaped: String::from_utf8_lossy(&names::escape(name)).into_owned(),
        }
    }
}
