//! anchorfs: a content-addressed blob store with anchors — constant names for
//! changing blobs, each with a timestamped history kept in a hash trie inside the
//! store — compatible byte for byte with the Go module `github.com/bobg/bs`.
//!
//! Layers, each looking only down: [`blob`] and [`store`] (blobs by SHA-256),
//! [`schema`] (Map, Set, List in the store), [`anchor`] (names and histories).

#![warn(missing_docs)]

pub mod anchor;
pub mod blob;
pub mod cli;
pub mod content;
pub mod fs;
pub mod mount;
pub mod proto;
pub mod schema;
pub mod split;
pub mod store;
pub mod timestamp;

pub use blob::{Blob, Ref};
pub use timestamp::Timestamp;
