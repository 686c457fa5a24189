//! Recycled buffers for the chunks a large read fetches whole: those that stick
//! out at its ends. A fresh buffer of a chunk's size gets pages of its own from
//! the system, which are mapped, faulted in and unmapped under the process's
//! memory-map lock, and every page fault of the other request threads waits on
//! that lock. (Small reads, random ones, allocate as before: the pool would fill
//! with buffers of every class for them, and keep them.)
//!
//! Locks: each pool's free list, held only to take a buffer, give one back or
//! drop them all (the buffers themselves are freed after it is let go).

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::blob::Blob;

/// Bytes of free buffers kept at most.
const KEPT_BYTES: usize = 16 << 20;
/// Buffers smaller than this are not recycled: the allocator's heap serves them.
const SMALLEST: usize = 64 << 10;
/// Buffers larger than this are not kept.
const LARGEST: usize = 4 << 20;

/// The process's pool.
static POOL: Pool = Pool::new();

/// Free buffers, and whether one was taken since the last [`Pool::release_idle`].
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    taken: AtomicBool,
}

/// The capacity of a buffer for `len` bytes: the next power of two or one and a
/// half times one, so that any buffer of a class serves any length of that class
/// and holds at most half again its length.
fn class(len: usize) -> usize {
    let pow = len.next_power_of_two();
    let mid = pow / 4 * 3;
    if len <= mid {
        mid
    } else {
        pow
    }
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
            taken: AtomicBool::new(false),
        }
    }

    fn take(&self, len: usize) -> Vec<u8> {
        if !(SMALLEST..=LARGEST).contains(&len) {
            return vec![0u8; len];
        }
        let cap = class(len);
        self.taken.store(true, Ordering::Relaxed);
        let found = {
            let mut free = self.free.lock();
            free.iter()
                .position(|b| b.capacity() == cap)
                .map(|i| free.swap_remove(i))
        };
        let mut b = found.unwrap_or_else(|| Vec::with_capacity(cap));
        b.clear();
        b.resize(len, 0);
        b
    }

    fn give_back(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if !(SMALLEST..=LARGEST).contains(&cap) || cap != class(cap) {
            return;
        }
        let mut free = self.free.lock();
        let kept: usize = free.iter().map(Vec::capacity).sum();
        if kept + cap <= KEPT_BYTES {
            free.push(buf);
        }
    }

    fn release_idle(&self) {
        if !self.taken.swap(false, Ordering::Relaxed) {
            let kept = std::mem::take(&mut *self.free.lock());
            drop(kept);
        }
    }

    #[cfg(test)]
    fn kept_of_class(&self, len: usize) -> usize {
        let cap = class(len);
        self.free
            .lock()
            .iter()
            .filter(|b| b.capacity() == cap)
            .count()
    }
}

/// A buffer of `len` bytes (zeroed), recycled if one of its class is free.
pub(super) fn take(len: usize) -> Vec<u8> {
    POOL.take(len)
}

/// Frees the kept buffers if none was taken since the last call, so that memory
/// kept for reads goes back to the system once reads stop. Called now and then
/// (the mount calls it once per poll interval).
pub fn release_idle() {
    POOL.release_idle();
}

/// `buf` as a blob whose buffer comes back to the pool when the last handle on
/// the blob is dropped.
pub(super) fn into_blob(buf: Vec<u8>) -> Blob {
    Blob::from_owner(Recycled(buf))
}

struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        POOL.give_back(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_hold_their_lengths_with_at_most_half_again() {
        for len in [SMALLEST, 65_537, 98_304, 98_305, 131_072, 200_000, LARGEST] {
            let c = class(len);
            assert!(c >= len && c <= len + len / 2, "{len} -> {c}");
            assert_eq!(class(c), c, "a class's capacity is its own class");
        }
    }

    #[test]
    fn a_buffer_given_back_serves_the_next_take_of_its_class_only() {
        let pool = Pool::new();
        let mut buf = pool.take(200_000);
        let ptr = buf.as_ptr();
        buf[0] = 7;
        pool.give_back(buf);
        let other = pool.take(100_000);
        assert_ne!(other.as_ptr(), ptr, "another class does not get it");
        let again = pool.take(250_000);
        assert_eq!(again.as_ptr(), ptr, "the buffer came back");
        assert_eq!(again.len(), 250_000);
        assert!(again.iter().all(|&b| b == 0), "a recycled buffer is zeroed");
        // Past the bound in bytes, buffers are not kept.
        for _ in 0..(KEPT_BYTES / LARGEST + 2) {
            pool.give_back(Vec::with_capacity(LARGEST));
        }
        assert_eq!(pool.kept_of_class(LARGEST), KEPT_BYTES / LARGEST);
    }

    #[test]
    fn idle_buffers_are_released_and_busy_ones_kept() {
        let pool = Pool::new();
        pool.give_back(pool.take(300_000));
        pool.release_idle(); // a take since the last call: kept
        assert_eq!(pool.kept_of_class(300_000), 1);
        pool.give_back(pool.take(300_000));
        pool.release_idle();
        assert_eq!(pool.kept_of_class(300_000), 1, "still in use");
        pool.release_idle(); // nothing taken since: released
        assert_eq!(pool.kept_of_class(300_000), 0);
    }

    #[test]
    fn a_blob_gives_its_buffer_back_when_its_last_handle_drops() {
        // A class no other test's chunks fall in (3 MiB), as the pool is shared.
        let blob = into_blob(take(2_500_000));
        let copy = blob.clone();
        drop(blob);
        let before = POOL.kept_of_class(2_500_000);
        drop(copy);
        assert_eq!(POOL.kept_of_class(2_500_000), before + 1);
    }
}
