//! Group commit: concurrent committers share one anchor map update.
//!
//! The first committer to arrive leads: it takes every commit queued so far (its own
//! among them), applies them in one update outside the lock, publishes the one result
//! to every member of that batch and wakes the others. A committer that arrives while
//! a leader is at work queues and waits; when woken it returns the result published
//! for it, or, if its commit missed the leader's batch, leads the next one itself.
//!
//! The algorithm is plain data and two primitives, so a model checker can run it
//! under every interleaving it explores: the locks come from `super::sync`, which is
//! `parking_lot` in the crate and a checker's scheduler-controlled lock in the test
//! that includes this file (tests/model_check_commit.rs).
//!
//! Locks: `GroupCommit::queue` only, a leaf: held to queue, to take a batch and to
//! publish results, never while the batch is applied (the store is written then).

use std::collections::HashMap;

use super::sync::{Condvar, Mutex};

/// Commits of type `T` grouped into batches, each applied once with result `R`.
pub struct GroupCommit<T, R> {
    queue: Mutex<Queue<T, R>>,
    done: Condvar,
}

/// What the queue lock guards.
struct Queue<T, R> {
    /// Commits waiting for a leader, with their tickets.
    waiting: Vec<(u64, T)>,
    /// Results published for committers that have not collected them yet.
    results: HashMap<u64, R>,
    /// Whether a leader is applying a batch now.
    leading: bool,
    /// The next ticket.
    next: u64,
}

impl<T, R: Clone> Default for GroupCommit<T, R> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                results: HashMap::new(),
                leading: false,
                next: 0,
            }),
            done: Condvar::new(),
        }
    }
}

impl<T, R: Clone> GroupCommit<T, R> {
    /// Commits `item`: either in a batch another committer leads, or by leading one
    /// and calling `apply` on it (outside the lock). Returns the result of the batch
    /// that held `item`.
    pub fn commit(&self, item: T, apply: impl FnOnce(Vec<T>) -> R) -> R {
        let mut q = self.queue.lock();
        let me = q.next;
        q.next += 1;
        q.waiting.push((me, item));
        loop {
            if let Some(r) = q.results.remove(&me) {
                return r;
            }
            if !q.leading {
                break;
            }
            self.done.wait(&mut q);
        }
        // Lead: take every waiting commit (this one among them) and apply them.
        q.leading = true;
        let (tickets, batch): (Vec<u64>, Vec<T>) =
            std::mem::take(&mut q.waiting).into_iter().unzip();
        drop(q);
        let r = apply(batch);
        let mut q = self.queue.lock();
        let published = tickets
            .into_iter()
            .filter(|&t| t != me)
            .map(|t| (t, r.clone()));
        if cfg!(feature = "planted-bug") {
            // The bug the model-checking test plants to show that it finds one
            // (feature `planted-bug`, never part of a build): the leader replaces the
            // results table instead of adding to it, so a committer of the batch
            // before, woken but not yet run, loses its result, leads a batch that
            // does not hold its commit and returns that batch's result.
            q.results = published.collect();
        } else {
            q.results.extend(published);
        }
        q.leading = false;
        self.done.notify_all();
        r
    }
}
