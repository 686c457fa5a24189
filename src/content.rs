//! What an anchored ref holds — a split tree or one raw blob — decided in one place
//! for the command line and the mount alike.
//!
//! Writing stores content as a split tree and records the root's message type
//! (`split.Node`) in the proto-types map, the Go way, in the same anchor map update as
//! the anchor put. Reading asks that record first; a ref with no record (Go's
//! `bs put -split` writes none) is a split root if it validates strictly as one
//! (decodes, offsets and sizes consistent, children present), and a raw blob
//! otherwise. Callers can force either kind.

use std::io::Read;
use std::ops::Deref;
use std::sync::LazyLock;

use crate::anchor::{self, AnchorError, Update};
use crate::blob::Ref;
use crate::split::{self, SplitError, SplitOptions, SplitReader};
use crate::store::{AnchorGetter, AnchorStore, Getter, Store, StoreError};
use crate::timestamp::Timestamp;

/// The message type of split tree nodes.
pub const SPLIT_NODE_TYPE: &str = "split.Node";

/// How to read a ref's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The root of a split tree (the zero ref is the empty tree).
    Split,
    /// One blob, its bytes the content.
    Raw,
}

/// Errors of reading or writing content.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The split tree could not be read or written.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// The anchor layer failed.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ContentError {
    /// Whether the content (or a blob of it) does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            ContentError::Split(SplitError::Store(e)) | ContentError::Store(e) => e.is_not_found(),
            ContentError::Anchor(e) => e.is_not_found(),
            _ => false,
        }
    }
}

/// The encoded descriptor of `split.Node` and its ref.
static SPLIT_DESCRIPTOR: LazyLock<Option<(Vec<u8>, Ref)>> = LazyLock::new(|| {
    let d = anchor::descriptor_proto(SPLIT_NODE_TYPE).ok()?;
    let r = Ref::of(&d);
    Some((d, r))
});

fn split_descriptor() -> Result<&'static (Vec<u8>, Ref), ContentError> {
    SPLIT_DESCRIPTOR
        .as_ref()
        .ok_or_else(|| AnchorError::UnknownType(SPLIT_NODE_TYPE.into()).into())
}

/// What `r` holds: its type record if it has one, else whether it validates as a
/// split root.
pub fn kind_of<G: AnchorGetter + ?Sized>(g: &G, r: &Ref) -> Result<Kind, ContentError> {
    let types = anchor::history(g, anchor::PROTO_TYPES_ANCHOR)?
        .last()
        .map(|a| a.r);
    kind_in(g, types.as_ref(), r)
}

/// [`kind_of`] with the proto-types map already resolved (`None`: there is none), for
/// callers that ask about many refs against one anchor map.
pub fn kind_in<G: Getter + ?Sized>(
    g: &G,
    types_map: Option<&Ref>,
    r: &Ref,
) -> Result<Kind, ContentError> {
    if r.is_zero() {
        return Ok(Kind::Split);
    }
    let types = match types_map {
        Some(t) => anchor::types_in(g, t, r)?,
        None => Vec::new(),
    };
    if types.contains(&split_descriptor()?.1) {
        return Ok(Kind::Split);
    }
    if !types.is_empty() {
        return Ok(Kind::Raw);
    }
    match split::validate_root(g, r) {
        Ok(_) => Ok(Kind::Split),
        // A blob missing or damaged (the ref itself or a child of a tree that
        // decodes), or the store failing, is an error, not a kind: reading such a
        // tree as one raw blob would return the root node's bytes as content.
        Err(SplitError::Store(e)) => Err(e.into()),
        Err(_) => Ok(Kind::Raw),
    }
}

/// A reader of `r`'s content as `kind`.
pub fn open<G>(g: G, r: Ref, kind: Kind) -> Result<SplitReader<G>, ContentError>
where
    G: Deref,
    G::Target: Getter,
{
    Ok(match kind {
        Kind::Split => SplitReader::new(g, r)?,
        Kind::Raw => SplitReader::raw(g, r)?,
    })
}

/// The whole content of `r`, read as its kind says (a split tree or one raw blob).
pub fn read_all<G: AnchorGetter + ?Sized>(g: &G, r: &Ref) -> Result<Vec<u8>, ContentError> {
    let kind = kind_of(g, r)?;
    let mut out = Vec::new();
    open(g, *r, kind)?
        .read_to_end(&mut out)
        .map_err(|e| ContentError::Split(SplitError::Io(e)))?;
    Ok(out)
}

/// The split options every writer of `s` uses: its chunking setting (Go's for a
/// store that records none; see `store::settings`).
pub fn split_options<G: Getter + ?Sized>(g: &G) -> Result<SplitOptions, ContentError> {
    Ok(g.settings()?.chunking.into())
}

/// Stores everything `input` yields as a split tree, cut as the store's setting
/// says ([`split_options`]); returns the root (zero ref for empty input). Nothing
/// is anchored yet.
pub fn store<S: Store + ?Sized, R: Read>(s: &S, input: R) -> Result<Ref, ContentError> {
    let opts = split_options(s)?;
    Ok(split::store_from(s, input, opts)?)
}

/// Like [`store`], with the options given (the store's, read once by a caller
/// that writes much) and the chunks hashed and stored on `storers` while the
/// input is read.
pub fn store_with<R: Read>(
    s: std::sync::Arc<dyn Store>,
    input: R,
    opts: SplitOptions,
    storers: &std::sync::Arc<split::ChunkStorers>,
) -> Result<Ref, ContentError> {
    Ok(split::store_from_with(s, input, opts, storers)?)
}

/// Within an anchor map update: records that `root` is a split tree root (the Go way,
/// in the proto-types map). The zero ref needs no record.
pub fn record_split<S: Store + ?Sized>(
    u: &mut Update<'_, S>,
    root: Ref,
    at: Timestamp,
) -> Result<(), AnchorError> {
    if root.is_zero() {
        return Ok(());
    }
    let (desc, desc_ref) = SPLIT_DESCRIPTOR
        .as_ref()
        .ok_or_else(|| AnchorError::UnknownType(SPLIT_NODE_TYPE.into()))?;
    if !u.store().contains(desc_ref)? {
        u.store().put(desc)?;
    }
    u.record_type(root, *desc_ref, at)?;
    Ok(())
}

/// Anchors `name` to the split tree `root` at `at`, recording its type in the same
/// anchor map update.
pub fn put_split<S: AnchorStore + ?Sized>(
    s: &S,
    name: &[u8],
    root: Ref,
    at: Timestamp,
) -> Result<(), ContentError> {
    anchor::update(s, |u| {
        record_split(u, root, at)?;
        u.put(name, root, at)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use crate::store::Getter;

    #[test]
    fn recorded_recognised_and_raw() {
        let s = MemStore::new();
        let data = vec![42u8; 300_000];
        let root = store(&s, &data[..]).unwrap();
        put_split(&s, b"file", root, Timestamp::now()).unwrap();
        assert_eq!(kind_of(&s, &root).unwrap(), Kind::Split);
        assert!(anchor::types_of(&s, &root).unwrap().len() == 1);

        // A tree with no record (as Go's `bs put -split` leaves it) is recognised.
        let other = store(&s, &b"unrecorded content"[..]).unwrap();
        assert!(anchor::types_of(&s, &other).unwrap().is_empty());
        assert_eq!(kind_of(&s, &other).unwrap(), Kind::Split);

        // A plain blob is raw, even one that happens to decode as a node.
        let (raw, _) = s.put(b"just bytes").unwrap();
        assert_eq!(kind_of(&s, &raw).unwrap(), Kind::Raw);
        let (empty_msg, _) = s.put(b"").unwrap();
        assert_eq!(kind_of(&s, &empty_msg).unwrap(), Kind::Raw);

        // An unrecorded tree that decodes but lacks a chunk is damage, not a raw
        // blob: reading it as raw would return the node's bytes as content.
        let big = store(&s, &vec![7u8; 300_000][..]).unwrap();
        let mut chunk = None;
        s.list_refs(&Ref::ZERO, &mut |r| {
            if s.get(&r)
                .map(|b| b.iter().all(|&x| x == 7) && b.len() > 1000)
                .unwrap_or(false)
            {
                chunk = Some(r);
            }
            Ok(true)
        })
        .unwrap();
        crate::store::DeletingStore::delete(&s, &chunk.unwrap()).unwrap();
        assert!(kind_of(&s, &big).is_err());

        let mut out = Vec::new();
        let mut r = open(&s, root, Kind::Split).unwrap();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(kind_of(&s, &Ref::of(b"absent")).unwrap_err().is_not_found());
    }

    #[test]
    fn reserved_history_stays_one_entry_and_writes_do_not_slow_down() {
        let s = MemStore::new();
        let mut added = Vec::new();
        for i in 0..300u32 {
            let before = s.len();
            let root = store(&s, format!("version {i}").as_bytes()).unwrap();
            put_split(
                &s,
                b"doc",
                root,
                Timestamp::new(1_700_000_000 + i64::from(i), 0).unwrap(),
            )
            .unwrap();
            added.push(s.len() - before);
        }
        assert_eq!(
            anchor::history(&s, anchor::PROTO_TYPES_ANCHOR)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(anchor::history(&s, b"doc").unwrap().len(), 300);
        // Blobs written per version: bounded by the tries' depths, not by history.
        let early = added[10..20].iter().max().unwrap();
        let late = added[290..300].iter().max().unwrap();
        assert!(late <= &(early + 4), "early {early}, late {late}");
    }
}
