//! Anchors: constant names for changing blobs, each with a timestamped history kept
//! in the store's anchor map (docs/FORMAT.md, "The anchor map" and "Anchor
//! histories").
//!
//! Every change goes through [`update`], the one optimistic-lock loop: it reads the
//! current map ref, hands an [`Update`] (a view of the map at that ref, collecting
//! changes) to the caller's closure, installs the result with the store's
//! compare-and-swap, handing it the blobs the closure made
//! ([`crate::store::AnchorStore::put_and_swap`]), and on a conflict waits a
//! jittered, growing pause and runs the closure again on fresh state.
//!
//! The modules: this one holds the types and the reads; `history` the codec of a
//! history (a `schema.List` of `anchor.Anchor` messages) and Go's put rule;
//! `update` the one write loop and the writes built on it; `made` the blobs an
//! attempt writes, held back for its swap; `sync` the merging of
//! stores; `proto` the proto-types records. Everything is re-exported here, so
//! callers name `anchor::update`, `anchor::decode_history` and so on. The one lock
//! is `made`'s (see there).

mod history;
mod made;
mod proto;
mod sync;
mod update;

pub use history::{apply_put, decode_history, encode_history, moved_by_put};
pub use proto::{descriptor_proto, put_proto, type_records, types_in, types_of};
pub use sync::{copy_blobs, sync};
pub use update::{expire, put, put_batch, update, update_with, Installed, Update};

use std::fmt;

use bytes::Bytes;
use prost::Message;

use crate::blob::Ref;
use crate::schema::{Map, SchemaError};
use crate::store::{AnchorGetter, Getter, StoreError};
use crate::timestamp::Timestamp;

/// The reserved anchor whose latest ref is the proto-types map (Go's name, so Go
/// tools read it too).
pub const PROTO_TYPES_ANCHOR: &[u8] = b"__github.com/bobg/bs/anchor__reserved__proto_types__";

/// How many times [`update`] tries before giving up.
pub const MAX_ATTEMPTS: u32 = 1000;

/// A visitor of anchor entries: `(name, entry)`.
pub type EntryVisitor<'a> = dyn FnMut(&[u8], Anchor) -> Result<(), AnchorError> + 'a;

/// Anchors with their histories: `(name, history oldest first)`.
pub type Anchors = Vec<(Vec<u8>, Vec<Anchor>)>;

/// One entry of an anchor's history: a ref and the time it became current.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Anchor {
    /// The blob (or split tree root) the name pointed at.
    pub r: Ref,
    /// When.
    pub at: Timestamp,
}

impl Anchor {
    /// The encoded `anchor.Anchor` message.
    pub fn encode(&self) -> Vec<u8> {
        crate::proto::anchor::Anchor {
            r#ref: Bytes::copy_from_slice(self.r.as_bytes()),
            at: Some(self.at.to_proto()),
        }
        .encode_to_vec()
    }

    /// Decodes and checks an `anchor.Anchor` message.
    pub fn decode(data: &[u8]) -> Result<Anchor, String> {
        let m = crate::proto::anchor::Anchor::decode(data).map_err(|e| e.to_string())?;
        let r = Ref::from_slice(&m.r#ref).map_err(|e| e.to_string())?;
        let at = match m.at {
            Some(t) => Timestamp::from_proto(&t).map_err(|e| e.to_string())?,
            None => Timestamp::new(0, 0).map_err(|e| e.to_string())?,
        };
        Ok(Anchor { r, at })
    }
}

/// An anchor name: any bytes. Displayed with non-printable bytes escaped.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(pub Vec<u8>);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Errors of the anchor layer.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// No such anchor, or none at or before the time asked for.
    #[error("anchor {0} not found")]
    NotFound(Name),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The anchor map (or another stored structure) is damaged.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// An anchor's stored history does not decode.
    #[error("history of anchor {name} is damaged: {why}")]
    BadHistory {
        /// The anchor.
        name: Name,
        /// What is wrong.
        why: String,
    },
    /// The proto-types map holds something that is not a ref.
    #[error("proto types map is damaged: {0}")]
    BadTypesMap(String),
    /// Other writers kept moving the anchor map for every attempt.
    #[error("gave up after {0} update conflicts")]
    RetriesExhausted(u32),
    /// A message type this crate has no descriptor for.
    #[error("no descriptor for message type {0}")]
    UnknownType(String),
}

impl AnchorError {
    /// The OS error number behind a store failure, however deep (ENOSPC, EIO, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            AnchorError::Store(s) | AnchorError::Schema(SchemaError::Store(s)) => s.raw_os_error(),
            _ => None,
        }
    }

    /// Whether this is "not found" (of an anchor or of a blob).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            AnchorError::NotFound(_) | AnchorError::Store(StoreError::NotFound(_))
        )
    }
}

fn bad_history(name: &[u8], why: impl Into<String>) -> AnchorError {
    AnchorError::BadHistory {
        name: Name(name.to_vec()),
        why: why.into(),
    }
}

/// The current anchor map ref, or `None` if the store has none yet.
pub fn map_ref<G: AnchorGetter + ?Sized>(g: &G) -> Result<Option<Ref>, AnchorError> {
    match g.anchor_map_ref() {
        Ok(r) => Ok(Some(r)),
        Err(StoreError::NoAnchorMap) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The full history of `name` (oldest first) in the map at `root`; empty if absent.
pub fn history_in<G: Getter + ?Sized>(
    g: &G,
    root: &Ref,
    name: &[u8],
) -> Result<Vec<Anchor>, AnchorError> {
    match Map::lookup(g, root, name)? {
        Some(p) => decode_history(name, &p),
        None => Ok(Vec::new()),
    }
}

/// The full history of `name` (oldest first); empty if absent.
pub fn history<G: AnchorGetter + ?Sized>(g: &G, name: &[u8]) -> Result<Vec<Anchor>, AnchorError> {
    match map_ref(g)? {
        Some(root) => history_in(g, &root, name),
        None => Ok(Vec::new()),
    }
}

/// The newest entry of a history not after `at`.
pub fn entry_at(hist: &[Anchor], at: Timestamp) -> Option<Anchor> {
    let n = hist.partition_point(|a| a.at <= at);
    n.checked_sub(1).map(|i| hist[i])
}

/// The ref `name` pointed at, at time `at`: its newest entry not after `at`.
pub fn get<G: AnchorGetter + ?Sized>(
    g: &G,
    name: &[u8],
    at: Timestamp,
) -> Result<Ref, AnchorError> {
    entry_at(&history(g, name)?, at)
        .map(|a| a.r)
        .ok_or_else(|| AnchorError::NotFound(Name(name.to_vec())))
}

/// Calls `f(name, anchor)` for every entry of every anchor, in no promised order
/// (the map's order, then each history oldest first).
pub fn each<G: AnchorGetter + ?Sized>(g: &G, f: &mut EntryVisitor<'_>) -> Result<(), AnchorError> {
    let Some(root) = map_ref(g)? else {
        return Ok(());
    };
    for (name, payload) in Map::entries(g, &root)? {
        for a in decode_history(&name, &payload)? {
            f(&name, a)?;
        }
    }
    Ok(())
}

/// Every anchor and its history, in the map's order.
pub fn all<G: AnchorGetter + ?Sized>(g: &G) -> Result<Anchors, AnchorError> {
    let Some(root) = map_ref(g)? else {
        return Ok(Vec::new());
    };
    Map::entries(g, &root)?
        .into_iter()
        .map(|(name, payload)| Ok((name.to_vec(), decode_history(&name, &payload)?)))
        .collect()
}
