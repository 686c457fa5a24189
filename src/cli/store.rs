//! Opening the store a command names, with [`crate::store::open`]: a directory
//! holding a file store (`DIR` or `file:DIR`), or `mem:`, an empty store in memory
//! that lasts as long as the command (for tests).

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::store::{self as backends, DeletingStore, Store, StoreError, StoreSettings};

pub(crate) use crate::store::OpenMode as Mode;

/// An open store and how to name it in messages.
pub(crate) struct Opened {
    label: String,
    store: Arc<dyn DeletingStore>,
}

impl Opened {
    /// The store.
    pub(crate) fn store(&self) -> &dyn DeletingStore {
        &*self.store
    }

    /// The store, shared, for work that hands it to other threads.
    pub(crate) fn shared(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    /// The store as named in messages: its path, or `mem:`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The store's directory on this host, if it has one.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.store.local_dir()
    }
}

/// The store named by `--store` or `$ANCHORFS_STORE`.
pub(crate) fn open_given(spec: Option<&OsString>, mode: Mode) -> anyhow::Result<Opened> {
    match spec {
        Some(s) => open(s, mode),
        None => bail!("no store given: use --store STORE or set ANCHORFS_STORE"),
    }
}

/// Creates the store `spec` names, with `settings` recorded; a store already
/// there is refused.
pub(crate) fn create(spec: &OsStr, settings: &StoreSettings) -> anyhow::Result<Opened> {
    let opened = match backends::create(spec, settings) {
        Ok(o) => o,
        Err(
            e @ (StoreError::NotAStore { .. }
            | StoreError::BadSpec { .. }
            | StoreError::AlreadyAStore { .. }),
        ) => return Err(e.into()),
        Err(e) => {
            return Err(e).with_context(|| format!("creating store {}", Path::new(spec).display()))
        }
    };
    Ok(Opened {
        label: opened.label,
        store: opened.store,
    })
}

/// Opens the store `spec` names.
pub(crate) fn open(spec: &OsStr, mode: Mode) -> anyhow::Result<Opened> {
    let opened = match backends::open(spec, mode) {
        Ok(o) => o,
        Err(e @ (StoreError::NotAStore { .. } | StoreError::BadSpec { .. })) => {
            return Err(e.into())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("opening store {}", Path::new(spec).display()))
        }
    };
    if opened.created {
        // So that a mistyped path is noticed.
        eprintln!("anchorfs: created a new store at {}", opened.label);
    }
    Ok(Opened {
        label: opened.label,
        store: opened.store,
    })
}
