//! The store a mount serves: the one SOURCE names, wrapped in the disk cache of
//! blobs where one is wanted and in the blob cache in memory (outermost).
//!
//! Owns no locks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::fs::SharedStore;
use crate::store::disk_cache::{self, DiskCache, WholeCopies};
use crate::store::lru::LruStore;
use crate::store::{DeletingStore, OpenMode};

use super::daemon::{effective_ids, Status};
use super::MountOptions;

/// Opens the store named by SOURCE (any spec [`crate::store::open`] takes), with
/// the disk cache where one is wanted ([`disk_cache_dir`]) and the blob cache in
/// memory outermost; says so when it made a new store. With a disk cache come its
/// whole copies of large files.
pub(super) fn open_store(
    source: &str,
    opts: &MountOptions,
    report: &mut dyn FnMut(Status),
) -> Result<(SharedStore, Option<WholeCopies>)> {
    let opened = crate::store::open(source.as_ref(), OpenMode::Create)?;
    if opened.created {
        let at = opened
            .store
            .local_dir()
            .map_or_else(|| opened.label.clone(), |d| d.display().to_string());
        report(Status::Note(format!("created a new store at {at}")));
    }
    let mut whole = None;
    let store: Arc<dyn DeletingStore> =
        match disk_cache_dir(&*opened.store, opts, default_cache_base) {
            Some(dir) => match DiskCache::open(opened.store.clone(), &dir, opts.cache_size)
                .map(DiskCache::writing_behind)
            {
                Ok(cache) => {
                    log::info!(
                        "caching {}'s blobs in {} (at most {} bytes)",
                        opened.label,
                        dir.display(),
                        opts.cache_size
                    );
                    whole = Some(cache.whole_copies());
                    Arc::new(cache)
                }
                // Asked for: the mount fails. A default one only costs speed.
                Err(e) if opts.cache_dir.is_some() => return Err(e.into()),
                Err(e) => {
                    log::warn!("no disk cache for {}: {e}", opened.label);
                    opened.store
                }
            },
            None => opened.store,
        };
    Ok((Arc::new(LruStore::new(store, opts.cache_bytes)), whole))
}

/// Where the disk cache of blobs goes, if anywhere: `-o cache_dir=`; else, for a
/// store with no directory on this host but an identity (one across a network),
/// `BASE/anchorfs/NAME`, where BASE is `default_base()` ([`cache_base`]) and NAME is
/// [`disk_cache::dir_name`] of the identity. Never by default for a store with a
/// directory here (it is local already) or without an identity (`mem:`), and
/// never with `-o cache_size=0`.
fn disk_cache_dir(
    store: &dyn DeletingStore,
    opts: &MountOptions,
    default_base: impl FnOnce() -> Option<PathBuf>,
) -> Option<PathBuf> {
    if opts.cache_size == 0 {
        return None;
    }
    if let Some(dir) = &opts.cache_dir {
        // Relative to where the mount was started, named absolutely in messages.
        return Some(std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
    }
    if store.local_dir().is_some() {
        return None;
    }
    let name = disk_cache::dir_name(&store.identity()?);
    match default_base() {
        Some(base) => Some(base.join("anchorfs").join(name)),
        None => {
            log::warn!("no disk cache: neither XDG_CACHE_HOME nor HOME is set");
            None
        }
    }
}

/// The directory that holds users' caches: `/var/cache` for root, else
/// `$XDG_CACHE_HOME` if absolute, else `$HOME/.cache`; `None` without either.
fn cache_base(root: bool, xdg: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    if root {
        return Some(PathBuf::from("/var/cache"));
    }
    if let Some(xdg) = xdg.filter(|d| Path::new(d).is_absolute()) {
        return Some(PathBuf::from(xdg));
    }
    home.filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".cache"))
}

/// [`cache_base`] for this process.
fn default_cache_base() -> Option<PathBuf> {
    cache_base(
        effective_ids().0 == 0,
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{Blob, Ref};
    use crate::store::mem::MemStore;
    use crate::store::{AnchorGetter, AnchorStore, Getter, Store, StoreError};
    use std::time::SystemTime;

    /// A store that says it is reached over a network: an identity, no directory.
    struct Remote(MemStore);

    impl Getter for Remote {
        fn get(&self, r: &Ref) -> Result<Blob, StoreError> {
            self.0.get(r)
        }
        fn list_refs(
            &self,
            after: &Ref,
            f: &mut dyn FnMut(Ref) -> Result<bool, StoreError>,
        ) -> Result<(), StoreError> {
            self.0.list_refs(after, f)
        }
        fn identity(&self) -> Option<String> {
            Some("db:host/anchors".into())
        }
    }
    impl Store for Remote {
        fn put(&self, blob: &[u8]) -> Result<(Ref, bool), StoreError> {
            self.0.put(blob)
        }
    }
    impl AnchorGetter for Remote {
        fn anchor_map_ref(&self) -> Result<Ref, StoreError> {
            self.0.anchor_map_ref()
        }
    }
    impl AnchorStore for Remote {
        fn swap_anchor_map(&self, old: Option<Ref>, new: Ref) -> Result<(), StoreError> {
            self.0.swap_anchor_map(old, new)
        }
    }
    impl DeletingStore for Remote {
        fn delete(&self, r: &Ref) -> Result<bool, StoreError> {
            self.0.delete(r)
        }
        fn written_at(&self, r: &Ref) -> Result<SystemTime, StoreError> {
            self.0.written_at(r)
        }
    }

    #[test]
    fn where_the_disk_cache_goes() {
        let opts = |list: &str| MountOptions::from_lists(&[list]).unwrap();
        let base = || Some(PathBuf::from("/base"));
        let remote = Remote(MemStore::new());
        let name = disk_cache::dir_name("db:host/anchors");
        assert_eq!(
            disk_cache_dir(&remote, &opts(""), base),
            Some(PathBuf::from("/base/anchorfs").join(&name)),
            "a store across a network gets one by default"
        );
        assert_eq!(disk_cache_dir(&remote, &opts("cache_size=0"), base), None);
        assert_eq!(disk_cache_dir(&remote, &opts(""), || None), None);
        let dir = tempfile::tempdir().unwrap();
        let file = crate::store::file::FileStore::create(dir.path().join("s")).unwrap();
        assert_eq!(
            disk_cache_dir(&file, &opts(""), base),
            None,
            "local already"
        );
        assert_eq!(disk_cache_dir(&MemStore::new(), &opts(""), base), None);
        assert_eq!(
            disk_cache_dir(&file, &opts("cache_dir=/c"), base),
            Some(PathBuf::from("/c")),
            "asked for, over any store"
        );
        let relative = disk_cache_dir(&file, &opts("cache_dir=c"), base).unwrap();
        assert!(relative.is_absolute() && relative.ends_with("c"));
    }

    #[test]
    fn the_base_of_default_cache_directories() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            cache_base(true, os("/x"), os("/h")),
            Some(PathBuf::from("/var/cache"))
        );
        assert_eq!(
            cache_base(false, os("/x"), os("/h")),
            Some(PathBuf::from("/x"))
        );
        assert_eq!(
            cache_base(false, os("rel"), os("/h")),
            Some(PathBuf::from("/h/.cache")),
            "a relative XDG_CACHE_HOME is ignored, as the spec says"
        );
        assert_eq!(cache_base(false, None, os("")), None);
        assert_eq!(cache_base(false, None, None), None);
    }
}
