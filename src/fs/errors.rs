//! The filesystem core's errors: one enum, [`FsError`], each variant with its own
//! errno, chosen in one place ([`FsError::errno`]).
//!
//! Rules:
//! - A failure from below (store, split tree, anchor layer, spool file) keeps its
//!   typed source in a [`Cause`]; its errno is computed from that source, never
//!   carried as a bare number.
//! - Errors are cheap to clone (sources are shared): a staged file keeps the error
//!   that broke it and reports it again on every later call.
//! - A lost race (other writers kept moving the anchor map) is [`FsError::LostRace`],
//!   an open that moved to a new file is [`FsError::LookUpAgain`]: neither is an
//!   I/O error.
//!
//! Holds no locks.

use std::sync::Arc;

use crate::anchor::AnchorError;
use crate::blob::Ref;
use crate::content::ContentError;
use crate::schema::SchemaError;
use crate::split::SplitError;
use crate::store::StoreError;

use super::overlay::OverlayError;

/// What failed below the filesystem, kept as it was reported.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Content (a blob or a split tree) could not be read or written.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// A split tree could not be read or written.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// The anchor layer failed.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// A spool file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An anchor's history does not decode (as the namespace reports it).
    #[error("{0}")]
    History(String),
}

impl Cause {
    /// The OS error number behind this failure, however deep, if it had one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Cause::Store(s) => s.raw_os_error(),
            Cause::Content(ContentError::Store(s))
            | Cause::Content(ContentError::Split(SplitError::Store(s))) => s.raw_os_error(),
            Cause::Content(ContentError::Split(SplitError::Io(io))) => io.raw_os_error(),
            Cause::Content(ContentError::Anchor(a)) => a.raw_os_error(),
            Cause::Content(_) => None,
            Cause::Split(SplitError::Store(s)) => s.raw_os_error(),
            Cause::Split(SplitError::Io(io)) => io.raw_os_error(),
            Cause::Split(_) => None,
            Cause::Anchor(a) => a.raw_os_error(),
            Cause::Io(io) => io.raw_os_error(),
            Cause::History(_) => None,
        }
    }
}

/// Errors of filesystem operations, each with one errno (see [`FsError::errno`]).
#[derive(Clone, Debug, thiserror::Error)]
pub enum FsError {
    /// No such entry (or a time before an anchor's first version).
    #[error("no such file or directory")]
    NotFound,
    /// A directory was expected.
    #[error("not a directory")]
    NotDir,
    /// A file was expected.
    #[error("is a directory")]
    IsDir,
    /// Not a symbolic link.
    #[error("not a symbolic link")]
    NotLink,
    /// History is immutable: versions cannot be removed or renamed.
    #[error("history is immutable")]
    Immutable,
    /// This part of the mount cannot be written.
    #[error("read-only")]
    ReadOnly,
    /// A malformed time or ref under `.anchorfs/`.
    #[error("malformed name {0:?}")]
    BadName(String),
    /// A blob is damaged or missing, or a tree is inconsistent.
    #[error("content of {r} cannot be read: {source}")]
    Damaged {
        /// The ref being read.
        r: Ref,
        /// What went wrong.
        #[source]
        source: Arc<Cause>,
    },
    /// The store (or a spool file) failed; the errno is the failure's own where it
    /// has one (ENOSPC, EDQUOT, ...), else EIO.
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// What failed.
        #[source]
        source: Arc<Cause>,
    },
    /// Other writers kept moving the anchor map for every attempt of the
    /// optimistic-lock loop: nothing was committed, and trying again may work.
    #[error("{what}: {source}")]
    LostRace {
        /// What was being done.
        what: String,
        /// The anchor layer's report.
        #[source]
        source: Arc<Cause>,
    },
    /// An earlier write or truncate of this file failed: part of its content is
    /// lost, so it never becomes a version.
    #[error("an earlier write to this file failed; it will not become a version")]
    Broken(#[source] Box<FsError>),
    /// The last commit of this file failed and nothing was written since.
    #[error("an earlier commit of this file failed")]
    EarlierCommit(#[source] Box<FsError>),
    /// No such open file handle.
    #[error("bad file handle")]
    BadHandle,
    /// No such extended attribute.
    #[error("no such attribute")]
    NoAttr,
    /// The name exists already.
    #[error("file exists")]
    Exists,
    /// The operation is not supported (setting extended attributes).
    #[error("operation not supported")]
    NotSupported,
    /// The operation is not implemented at all (extended attributes turned off).
    #[error("not implemented")]
    NotImplemented,
    /// The caller's buffer is too small for the answer.
    #[error("result too large for the buffer")]
    TooLarge,
    /// No such device control (every `ioctl`).
    #[error("inappropriate ioctl")]
    NoIoctl,
    /// The directory still holds files being written.
    #[error("directory not empty")]
    NotEmpty,
    /// A name longer than a directory entry may be.
    #[error("file name too long")]
    NameTooLong,
    /// The caller lacks the permission the operation needs.
    #[error("permission denied")]
    PermissionDenied,
    /// The open of a version for writing moved to a new file of its own: the caller
    /// looks the name up again and opens what it finds (the kernel does this by
    /// itself on `ESTALE`; see `AnchorFs::open_as`).
    #[error("opened elsewhere: look the name up again")]
    LookUpAgain,
}

impl FsError {
    /// The errno this error is reported with. One exhaustive mapping, and the only
    /// place in the filesystem where errno numbers are chosen.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotLink => libc::EINVAL,
            FsError::Immutable => libc::EPERM,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadName(_) => libc::EINVAL,
            FsError::Damaged { .. } => libc::EIO,
            FsError::Store { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::LostRace { .. } => libc::EAGAIN,
            FsError::Broken(e) | FsError::EarlierCommit(e) => e.errno(),
            FsError::BadHandle => libc::EBADF,
            FsError::NoAttr => libc::ENODATA,
            FsError::Exists => libc::EEXIST,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::NotImplemented => libc::ENOSYS,
            FsError::TooLarge => libc::ERANGE,
            FsError::NoIoctl => libc::ENOTTY,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::LookUpAgain => libc::ESTALE,
            FsError::PermissionDenied => libc::EACCES,
        }
    }

    /// Whether this is an everyday answer (a missing name, an unsupported request,
    /// a retry asked for) rather than a failure worth a warning.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::NoAttr
                | FsError::NotLink
                | FsError::NotSupported
                | FsError::NotImplemented
                | FsError::NoIoctl
                | FsError::LookUpAgain
        )
    }

    /// A failure of `what` with its cause.
    pub(crate) fn store(what: impl Into<String>, cause: impl Into<Cause>) -> FsError {
        FsError::Store {
            what: what.into(),
            source: Arc::new(cause.into()),
        }
    }

    /// A failure of the store itself: a missing or damaged blob is damage, anything
    /// else a store failure.
    pub(crate) fn from_store(e: StoreError) -> FsError {
        match e {
            StoreError::Damaged(r) | StoreError::NotFound(r) => FsError::Damaged {
                r,
                source: Arc::new(Cause::Store(e)),
            },
            e => FsError::store("store failed", e),
        }
    }

    /// A failure reading content `r`: an I/O failure of the store is a store
    /// failure, anything else damage of `r`.
    pub(crate) fn from_content(r: Ref, e: ContentError) -> FsError {
        match e {
            ContentError::Store(s) | ContentError::Split(SplitError::Store(s)) => match s {
                StoreError::Io { .. } => FsError::from_store(s),
                other => FsError::Damaged {
                    r,
                    source: Arc::new(Cause::Store(other)),
                },
            },
            ContentError::Anchor(AnchorError::Store(s)) => FsError::from_store(s),
            other => FsError::Damaged {
                r,
                source: Arc::new(Cause::Content(other)),
            },
        }
    }

    /// A failure of the anchor layer.
    pub(crate) fn from_anchor(e: AnchorError) -> FsError {
        match e {
            AnchorError::Store(s) | AnchorError::Schema(SchemaError::Store(s)) => {
                FsError::from_store(s)
            }
            other => FsError::store("store failed", other),
        }
    }

    /// A failed anchor map update while `what`: a lost race when the
    /// optimistic-lock loop ran out of retries, else a store failure.
    pub(crate) fn from_update(what: impl Into<String>, e: Arc<Cause>) -> FsError {
        let what = what.into();
        match &*e {
            Cause::Anchor(AnchorError::RetriesExhausted(_)) => {
                FsError::LostRace { what, source: e }
            }
            _ => FsError::Store { what, source: e },
        }
    }

    /// A failure of a spool file.
    pub(crate) fn from_io(e: std::io::Error) -> FsError {
        FsError::store("spool file failed", e)
    }

    /// A failure of a split writer or reader of a staged file.
    pub(crate) fn from_split(e: SplitError) -> FsError {
        FsError::store("storing or reading a file being written", e)
    }

    /// A failure of an overlay over stored content.
    pub(crate) fn from_overlay(e: OverlayError) -> FsError {
        match e {
            OverlayError::Base(s) => FsError::from_split(s),
            OverlayError::Spool(io) => FsError::from_io(io),
        }
    }
}
