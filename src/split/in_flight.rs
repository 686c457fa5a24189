//! Chunks that one reader's reads are fetching, so that reads in flight at once
//! fetch a chunk they share once: the kernel's read-ahead sends two large reads
//! at a time, and the chunk across their boundary (the larger chunks are the
//! likelier to straddle one) is wanted by both.
//!
//! Locks: the registry's map, held only to claim, look up or settle an entry;
//! each entry's result, held only to fill or read it. Neither is held while a
//! chunk is fetched, and a read settles its own claims before it waits for
//! anyone else's, so no two reads wait on each other.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::blob::Blob;

/// The chunks being fetched, by their offset in the content.
#[derive(Default)]
pub(super) struct InFlight {
    map: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// One chunk's result, once its fetch ends: the chunk, or `None` if the fetch
/// failed (the waiter then fetches it itself).
#[derive(Default)]
pub(super) struct Slot {
    result: Mutex<Option<Option<Blob>>>,
    settled: Condvar,
}

/// What a claim on a chunk gave.
pub(super) enum Claim<'a> {
    /// This read fetches it, and settles the ticket.
    Mine(Ticket<'a>),
    /// Another read is fetching it.
    Theirs(Arc<Slot>),
}

/// The duty to settle a claimed chunk; dropped unsettled, it settles as failed.
pub(super) struct Ticket<'a> {
    owner: &'a InFlight,
    start: u64,
    slot: Arc<Slot>,
}

impl InFlight {
    /// Claims the chunk at `start`, unless another read has.
    pub(super) fn claim(&self, start: u64) -> Claim<'_> {
        let mut map = self.map.lock();
        if let Some(slot) = map.get(&start) {
            return Claim::Theirs(Arc::clone(slot));
        }
        let slot = Arc::new(Slot::default());
        map.insert(start, Arc::clone(&slot));
        Claim::Mine(Ticket {
            owner: self,
            start,
            slot,
        })
    }
}

impl Ticket<'_> {
    /// Hands the fetched chunk to the reads waiting for it.
    pub(super) fn settle(self, chunk: Blob) {
        self.finish(Some(chunk));
    }

    fn finish(&self, chunk: Option<Blob>) {
        self.owner.map.lock().remove(&self.start);
        let mut result = self.slot.result.lock();
        if result.is_none() {
            *result = Some(chunk);
        }
        self.slot.settled.notify_all();
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

impl Slot {
    /// Waits for the fetch to end: the chunk, or `None` if it failed.
    pub(super) fn wait(&self) -> Option<Blob> {
        let mut result = self.result.lock();
        loop {
            if let Some(r) = &*result {
                return r.clone();
            }
            self.settled.wait(&mut result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_waits_for_the_first_and_a_dropped_ticket_fails_it() {
        let f = InFlight::default();
        let Claim::Mine(ticket) = f.claim(10) else {
            panic!("the first claim is the claimer's")
        };
        let Claim::Theirs(slot) = f.claim(10) else {
            panic!("a second claim waits")
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slot.wait());
            ticket.settle(Blob::from_static(b"chunk"));
            assert_eq!(waiter.join().unwrap().as_deref(), Some(&b"chunk"[..]));
        });
        // Settled: the next claim is a new fetch, and one dropped fails its waiters.
        let Claim::Mine(ticket) = f.claim(10) else {
            panic!("settled claims are gone")
        };
        let Claim::Theirs(slot) = f.claim(10) else {
            panic!("a second claim waits")
        };
        drop(ticket);
        assert_eq!(slot.wait(), None);
        assert!(matches!(f.claim(10), Claim::Mine(_)));
    }
}
