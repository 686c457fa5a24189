//! The model-based tests' steps run on the filesystem core, through
//! [`CoreDriver`], over an in-memory store, optionally behind the fault-injecting
//! store.

#![allow(dead_code)]

use std::sync::Arc;

use anchorfs::store::faulty::FaultyStore;
use anchorfs::store::mem::MemStore;
use anchorfs::{anchor, content, Timestamp};

use crate::core_driver::{CoreDriver, OpenHow};
use crate::model::{OpenMode, Outcome, Step, ANCHORS};
use crate::observe::Observe;

/// The fault-injecting store over the in-memory one.
pub type Faulty = FaultyStore<Arc<MemStore>>;

/// The core over a store of its own.
pub struct CoreSide {
    /// The core, as a program sees it.
    pub driver: CoreDriver,
    /// The store below any injected faults: what is really there.
    pub raw: Arc<MemStore>,
    /// The fault-injecting store the core runs on, if any.
    pub faulty: Option<Arc<Faulty>>,
}

impl CoreSide {
    /// The core over a fresh in-memory store.
    pub fn plain() -> CoreSide {
        let raw = Arc::new(MemStore::new());
        CoreSide {
            driver: CoreDriver::new(raw.clone()),
            raw,
            faulty: None,
        }
    }

    /// The core over a fresh in-memory store behind the fault-injecting store.
    pub fn faulty() -> CoreSide {
        let raw = Arc::new(MemStore::new());
        let faulty = Arc::new(FaultyStore::new(raw.clone()));
        CoreSide {
            driver: CoreDriver::new(faulty.clone()),
            raw,
            faulty: Some(faulty),
        }
    }

    /// A fresh core over the same store (a new mount of it), with no faults.
    pub fn remount(&self) -> CoreSide {
        CoreSide {
            driver: CoreDriver::new(self.raw.clone()),
            raw: self.raw.clone(),
            faulty: None,
        }
    }

    fn path(anchor: usize, name: &str) -> String {
        format!("{}/{name}", ANCHORS[anchor].1)
    }

    /// Runs a step.
    pub fn apply(&mut self, step: &Step) -> Outcome {
        let none = |r: Result<(), i32>| r.map(|()| None);
        let d = &mut self.driver;
        match step {
            Step::Mkdir(a) => none(d.mkdir(ANCHORS[*a].1)),
            Step::Rmdir(a) => none(d.rmdir(ANCHORS[*a].1)),
            Step::Open { anchor, name, mode } => {
                let how = match mode {
                    OpenMode::Create => OpenHow {
                        write: true,
                        create: true,
                        ..OpenHow::default()
                    },
                    OpenMode::CreateTrunc => OpenHow {
                        write: true,
                        create: true,
                        truncate: true,
                        ..OpenHow::default()
                    },
                    OpenMode::Append => OpenHow {
                        write: true,
                        create: true,
                        append: true,
                        ..OpenHow::default()
                    },
                    OpenMode::Edit => OpenHow {
                        write: true,
                        ..OpenHow::default()
                    },
                };
                d.open(&Self::path(*anchor, name), how).map(|_| None)
            }
            Step::Write { handle, data } => none(d.write(*handle, data)),
            Step::WriteAt {
                handle,
                offset,
                data,
            } => none(d.write_at(*handle, *offset, data)),
            Step::SetLen { handle, len } => none(d.set_len(*handle, *len)),
            Step::ReadBack(handle) => d.read_back(*handle).map(Some),
            Step::Fsync(handle) => none(d.fsync(*handle)),
            Step::Close(handle) => none(d.close(*handle)),
            Step::Rename { anchor, from, to } => {
                none(d.rename(&Self::path(*anchor, from), &Self::path(*anchor, to)))
            }
            Step::Unlink { anchor, name } => none(d.unlink(&Self::path(*anchor, name))),
            Step::ReadFile { anchor, name } => d.read_file(&Self::path(*anchor, name)).map(Some),
        }
    }
}

impl Observe for CoreSide {
    fn root_names(&self) -> Result<Vec<String>, i32> {
        self.driver.list("")
    }

    fn lstat(&self, rel: &str) -> Result<(), i32> {
        self.driver.lstat(rel)
    }

    fn names(&self, rel: &str) -> Result<Vec<String>, i32> {
        self.driver.list(rel)
    }

    fn read_link(&self, rel: &str) -> Result<String, i32> {
        self.driver.read_link(rel)
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, i32> {
        self.driver.read_file(rel)
    }

    fn history(&self, name: &[u8]) -> Vec<(Timestamp, Vec<u8>)> {
        anchor::history(&*self.raw, name)
            .expect("read a history")
            .into_iter()
            .map(|a| {
                let c = content::read_all(&*self.raw, &a.r).expect("read a version");
                (a.at, c)
            })
            .collect()
    }

    fn sizes(&self) -> Vec<Option<u64>> {
        (0..self.driver.open_count())
            .map(|h| self.driver.size(h).ok())
            .collect()
    }
}
