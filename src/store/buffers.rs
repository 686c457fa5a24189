//! Recycled buffers for the blobs the file store reads. A chunk is hundreds of KiB,
//! which the allocator maps fresh for every read and unmaps when it is freed: each
//! map and unmap takes the process's memory-map lock, and each page of a fresh map
//! faults once, under the same lock, so the threads of a large read wait on one
//! another. A blob read into a recycled buffer goes back to the pool when its last
//! clone is dropped.
//!
//! Locks: each pool's `free`, held only to take or return one buffer.

use std::sync::LazyLock;

use parking_lot::Mutex;

use crate::blob::Blob;

/// Buffers smaller than this come from the allocator as usual (it keeps them in
/// its heap, without a map of their own).
const MIN: usize = 64 << 10;
/// Nor are buffers larger than this kept.
const MAX: usize = 4 << 20;
/// The most bytes of free buffers kept.
const KEPT_BYTES: usize = 4 << 20;

struct Free {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

/// Free buffers, bounded in bytes.
pub struct Pool {
    free: Mutex<Free>,
}

/// The pool of the file store's reads.
pub static READS: LazyLock<Pool> = LazyLock::new(Pool::new);

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool {
            free: Mutex::new(Free {
                buffers: Vec::new(),
                bytes: 0,
            }),
        }
    }

    /// A zeroed buffer of `len` bytes, recycled if one large enough is free.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if (MIN..=MAX).contains(&len) {
            let mut free = self.free.lock();
            // The smallest free buffer that fits, if it is not more than twice
            // the size (a blob keeps its whole buffer, and the caches count only
            // its length).
            let best = free
                .buffers
                .iter()
                .enumerate()
                .filter(|(_, b)| (len..=2 * len).contains(&b.capacity()))
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let mut b = free.buffers.swap_remove(i);
                free.bytes -= b.capacity();
                drop(free);
                b.clear();
                b.resize(len, 0);
                return b;
            }
        }
        vec![0; len]
    }

    /// A blob holding `buf`, which returns to this pool when the blob's last clone
    /// is dropped.
    pub fn blob(&'static self, buf: Vec<u8>) -> Blob {
        if (MIN..=MAX).contains(&buf.capacity()) {
            Blob::from_owner(Recycled { buf, pool: self })
        } else {
            Blob::from(buf)
        }
    }

    /// The bytes of free buffers kept now.
    pub fn kept_bytes(&self) -> usize {
        self.free.lock().bytes
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut free = self.free.lock();
        if free.bytes + buf.capacity() <= KEPT_BYTES {
            free.bytes += buf.capacity();
            free.buffers.push(buf);
        }
    }
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

/// A buffer owned by blobs, returned to its pool on drop.
struct Recycled {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_blob_s_buffer_is_reused_and_the_pool_stays_bounded() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
        let mut b = pool.take(100_000);
        assert_eq!(b.len(), 100_000);
        assert!(b.iter().all(|&x| x == 0));
        b[5] = 9;
        let ptr = b.as_ptr();
        let blob = pool.blob(b);
        let slice = blob.slice(1..10);
        drop(blob);
        assert_eq!(pool.kept_bytes(), 0);
        assert_eq!(slice[4], 9, "a slice keeps the buffer alive");
        drop(slice);
        assert!(pool.kept_bytes() >= 100_000);
        let small = pool.take(40_000);
        assert_ne!(small.as_ptr(), ptr, "not for less than half its size");
        drop(small);
        let again = pool.take(90_000);
        assert_eq!(again.as_ptr(), ptr, "the freed buffer is taken again");
        assert_eq!(again.len(), 90_000);
        assert!(again.iter().all(|&x| x == 0), "and comes back zeroed");
        drop(again);
        let many: Vec<Blob> = (0..40).map(|_| pool.blob(pool.take(1 << 20))).collect();
        drop(many);
        assert!(pool.kept_bytes() <= KEPT_BYTES);
        assert!(pool.kept_bytes() >= KEPT_BYTES / 2);
        // Small and huge buffers are not pooled.
        assert_eq!(pool.take(10).len(), 10);
        let before = pool.kept_bytes();
        drop(pool.blob(vec![1; 10]));
        drop(pool.blob(vec![1; MAX + 1]));
        assert_eq!(pool.kept_bytes(), before);
    }
}
