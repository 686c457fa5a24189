//! Opening the store a command names: a directory holding a file store, or `mem:`,
//! an empty store in memory that lasts as long as the command (for tests).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::blob::Ref;
use crate::store::file::FileStore;
use crate::store::mem::MemStore;
use crate::store::{DeletingStore, Getter, Store, StoreError};

/// The spelling of the in-memory store.
pub(crate) const MEM: &str = "mem:";

enum Backend {
    File(Arc<FileStore>),
    Mem(Arc<MemStore>),
}

/// An open store and how to name it in messages.
pub(crate) struct Opened {
    label: String,
    backend: Backend,
}

/// Whether a command may create a missing store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only an existing store; anything else is refused.
    Existing,
    /// Create the store (and its directory) if it is missing.
    Create,
}

impl Opened {
    /// The store.
    pub(crate) fn store(&self) -> &dyn DeletingStore {
        match &self.backend {
            Backend::File(s) => &**s,
            Backend::Mem(s) => &**s,
        }
    }

    /// The store, shared, for work that hands it to other threads.
    pub(crate) fn shared(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::File(s) => s.clone(),
            Backend::Mem(s) => s.clone(),
        }
    }

    /// The store as named in messages: its path, or `mem:`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The directory of a file store.
    pub(crate) fn dir(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::File(s) => Some(s.root().to_path_buf()),
            Backend::Mem(_) => None,
        }
    }

    /// The size of blob `r` in bytes, without reading it where the backend allows.
    pub(crate) fn blob_size(&self, r: &Ref) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::File(s) => s.blob_len(r),
            Backend::Mem(s) => s.get(r).map(|b| b.len() as u64),
        }
    }
}

/// The store named by `--store` or `$ANCHORFS_STORE`.
pub(crate) fn open_given(spec: Option<&OsString>, mode: Mode) -> anyhow::Result<Opened> {
    match spec {
        Some(s) => open(s, mode),
        None => bail!("no store given: use --store STORE or set ANCHORFS_STORE"),
    }
}

/// Opens the store `spec` names.
pub(crate) fn open(spec: &OsStr, mode: Mode) -> anyhow::Result<Opened> {
    if spec == MEM {
        return Ok(Opened {
            label: MEM.to_string(),
            backend: Backend::Mem(Arc::new(MemStore::new())),
        });
    }
    if spec.is_empty() {
        bail!("the store path is empty");
    }
    let path = PathBuf::from(spec);
    let label = path.display().to_string();
    let opened = match mode {
        Mode::Existing => FileStore::open(&path).map(|s| (s, false)),
        Mode::Create => FileStore::open_or_create(&path),
    };
    let store = match opened {
        Ok((s, created)) => {
            if created {
                // So that a mistyped path is noticed.
                eprintln!("anchorfs: created a new store at {label}");
            }
            s
        }
        Err(e @ StoreError::NotAStore { .. }) => return Err(e.into()),
        Err(e) => return Err(e).with_context(|| format!("opening store {label}")),
    };
    Ok(Opened {
        label,
        backend: Backend::File(Arc::new(store)),
    })
}
