//! Split trees: content-defined chunking into a tree of `split.Node` blobs.
