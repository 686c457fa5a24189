//! Recycled buffers for the chunks a read fetches whole: those that stick out at
//! the ends of a large read, and every chunk of a small one. A fresh buffer of a
//! chunk's size gets pages of its own from the system, which are mapped, faulted
//! in and unmapped under the process's memory-map lock, and every page fault of
//! the other request threads waits on that lock.
//!
//! Locks: `FREE`, held only to take a buffer or give one back.

use parking_lot::Mutex;

use crate::blob::Blob;

/// Bytes of free buffers kept at most.
const KEPT_BYTES: usize = 16 << 20;
/// Buffers smaller than this are not recycled: the allocator's heap serves them.
const SMALLEST: usize = 64 << 10;
/// Buffers larger than this are not kept.
const LARGEST: usize = 4 << 20;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

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

/// A buffer of `len` bytes (zeroed), recycled if one of its class is free.
pub(super) fn take(len: usize) -> Vec<u8> {
    if !(SMALLEST..=LARGEST).contains(&len) {
        return vec![0u8; len];
    }
    let cap = class(len);
    let found = {
        let mut free = FREE.lock();
        free.iter()
            .position(|b| b.capacity() == cap)
            .map(|i| free.swap_remove(i))
    };
    let mut b = found.unwrap_or_else(|| Vec::with_capacity(cap));
    b.clear();
    b.resize(len, 0);
    b
}

/// `buf` as a blob whose buffer comes back here when the last handle on the
/// blob is dropped.
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
        let buf = std::mem::take(&mut self.0);
        let cap = buf.capacity();
        if !(SMALLEST..=LARGEST).contains(&cap) || cap != class(cap) {
            return;
        }
        let mut free = FREE.lock();
        let kept: usize = free.iter().map(Vec::capacity).sum();
        if kept + cap <= KEPT_BYTES {
            free.push(buf);
        }
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
    fn a_dropped_blob_gives_its_buffer_to_the_next_take_of_its_class() {
        // Sizes of a class no other test's chunks fall in (2.25..3 MiB), as the
        // free list is shared.
        let mut buf = take(2_500_000);
        let ptr = buf.as_ptr();
        buf[0] = 7;
        let blob = into_blob(buf);
        assert_eq!(blob.len(), 2_500_000);
        assert_eq!(blob[0], 7);
        drop(blob);
        let again = take(2_400_000);
        assert_eq!(again.as_ptr(), ptr, "the buffer came back");
        assert_eq!(again.len(), 2_400_000);
        assert!(again.iter().all(|&b| b == 0), "a recycled buffer is zeroed");
        // Another class does not get it.
        drop(into_blob(again));
        let other = take(1_000_000);
        assert_ne!(other.as_ptr(), ptr);
    }
}
