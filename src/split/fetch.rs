//! Fetching a read's chunks: where a chunk sits in its tree ([`ChunkSpot`]), and
//! reading many of them into their buffers at once, on the kept fetch threads
//! (see `lanes`), one by one or in batches for a store that prefers them.
//!
//! Locks: one slot lock per lane, held only to take that lane's jobs.

use parking_lot::Mutex;

use crate::blob::Ref;
use crate::store::Getter;

use super::node::check_chunk;
use super::SplitError;

/// How many chunks one read fetches at once.
pub const PARALLEL_FETCHES: usize = 4;

/// A chunk's place in a tree: its ref, its parent leaf node and its span.
pub(super) struct ChunkSpot {
    pub(super) parent: Ref,
    pub(super) chunk: Ref,
    pub(super) start: u64,
    pub(super) end: u64,
}

impl ChunkSpot {
    /// The chunk's length, from its span.
    pub(super) fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Reads the chunk into `dst`, of its span's length, and checks it.
    pub(super) fn fetch_into<S: Getter + ?Sized>(
        &self,
        store: &S,
        dst: &mut [u8],
    ) -> Result<(), SplitError> {
        // The span bounds the chunk: a larger file in its place is refused unread.
        let n = store.get_into(&self.chunk, dst)?;
        check_chunk(&self.parent, &self.chunk, n, self.start, self.end)
    }
}

/// A chunk to fetch and where its bytes go.
pub(super) type Job<'a> = (&'a ChunkSpot, &'a mut [u8]);

/// Fetches every job's chunk into its buffer; with more than one, on up to
/// [`PARALLEL_FETCHES`] lanes (see `lanes`), each taking every n-th chunk, or,
/// from a store that [prefers batches](Getter::prefers_batches), each taking a
/// run of them in one call.
pub(super) fn fetch_into<S: Getter + ?Sized>(
    store: &S,
    jobs: Vec<Job<'_>>,
) -> Result<(), SplitError> {
    let lanes = jobs.len().min(PARALLEL_FETCHES);
    if lanes <= 1 {
        return fetch_lane(store, false, jobs);
    }
    let batched = store.prefers_batches();
    let per_lane = jobs.len().div_ceil(lanes);
    let mut work: Vec<Vec<Job<'_>>> = (0..lanes).map(|_| Vec::new()).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        work[if batched { i / per_lane } else { i % lanes }].push(job);
    }
    let work: Vec<Mutex<Vec<Job<'_>>>> = work.into_iter().map(Mutex::new).collect();
    let done = super::lanes::run(work.len(), |lane| {
        fetch_lane(store, batched, std::mem::take(&mut *work[lane].lock()))
    });
    for lane in done {
        // A lane that panicked gives `None`.
        lane.ok_or_else(unfinished)??;
    }
    Ok(())
}

/// One lane's fetches: one call of [`Getter::get_many_into`] if `batched`, else
/// one [`Getter::get_into`] per chunk; each chunk is checked against its span.
fn fetch_lane<S: Getter + ?Sized>(
    store: &S,
    batched: bool,
    mut jobs: Vec<Job<'_>>,
) -> Result<(), SplitError> {
    if !batched || jobs.len() <= 1 {
        return jobs
            .into_iter()
            .try_for_each(|(spot, dst)| spot.fetch_into(store, dst));
    }
    let got = {
        let mut pairs: Vec<(Ref, &mut [u8])> = jobs
            .iter_mut()
            .map(|(s, dst)| (s.chunk, &mut **dst))
            .collect();
        store.get_many_into(&mut pairs)
    };
    if got.len() != jobs.len() {
        return Err(SplitError::Malformed {
            r: Ref::ZERO,
            why: "a batched fetch returned too few chunks".into(),
        });
    }
    for ((spot, _), n) in jobs.iter().zip(got) {
        check_chunk(&spot.parent, &spot.chunk, n?, spot.start, spot.end)?;
    }
    Ok(())
}

/// The error for a fetch lane that panicked.
fn unfinished() -> SplitError {
    SplitError::Malformed {
        r: Ref::ZERO,
        why: "a chunk fetch did not finish".into(),
    }
}
