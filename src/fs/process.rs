//! Which process a thread belongs to: commit policy. A request names the calling
//! *thread*; a program may write on one thread and close on another, and both are
//! the same writer, while a forked child closing an inherited descriptor (at its
//! exec) is not, and its close must not commit the parent's file. So closes are
//! told apart by process, which a [`ProcessLookup`] works out.
//!
//! [`ProcStatus`] reads `/proc/TID/status` on Linux (elsewhere a thread is its own
//! process); [`FakeProcesses`] is told the answers, for tests.
//!
//! Locks: `ProcStatus::recent` and `FakeProcesses::map`, each a leaf held for one
//! map operation (never while reading `/proc`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ids::ProcessId;

/// Works out the process of a thread.
pub trait ProcessLookup: Send + Sync {
    /// The process that thread `thread` belongs to (the thread itself as a process
    /// if that cannot be known).
    fn process_of(&self, thread: u32) -> ProcessId;
}

/// Every thread is a process of its own.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadIsProcess;

impl ProcessLookup for ThreadIsProcess {
    fn process_of(&self, thread: u32) -> ProcessId {
        ProcessId(thread)
    }
}

/// The thread group from `/proc/TID/status`, read once per thread and remembered
/// briefly (a thread id is reused only after the kernel has gone through every
/// other one). A thread `/proc` does not show (of another pid namespace, or gone)
/// is its own process; so is every thread where there is no `/proc` to read.
#[derive(Debug, Default)]
pub struct ProcStatus {
    recent: Mutex<HashMap<u32, (u32, Instant)>>,
}

/// How long a thread's process is remembered.
const PROCESS_MEMORY: Duration = Duration::from_secs(1);

/// How many threads are remembered before the expired ones are dropped.
const PROCESSES_REMEMBERED: usize = 256;

impl ProcessLookup for ProcStatus {
    fn process_of(&self, thread: u32) -> ProcessId {
        if let Some(&(tgid, at)) = self.recent.lock().get(&thread) {
            if at.elapsed() < PROCESS_MEMORY {
                return ProcessId(tgid);
            }
        }
        let tgid = thread_group(thread).unwrap_or(thread);
        let mut recent = self.recent.lock();
        if recent.len() >= PROCESSES_REMEMBERED {
            recent.retain(|_, (_, at)| at.elapsed() < PROCESS_MEMORY);
        }
        recent.insert(thread, (tgid, Instant::now()));
        ProcessId(tgid)
    }
}

/// The `Tgid` line of `/proc/TID/status`.
#[cfg(target_os = "linux")]
fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// No `/proc` to read: the thread is its own process.
#[cfg(not(target_os = "linux"))]
fn thread_group(_tid: u32) -> Option<u32> {
    None
}

/// A lookup that is told which thread belongs to which process (for tests); any
/// other thread is its own process.
#[derive(Debug, Default)]
pub struct FakeProcesses {
    map: Mutex<HashMap<u32, ProcessId>>,
}

impl FakeProcesses {
    /// No thread assigned yet.
    pub fn new() -> FakeProcesses {
        FakeProcesses::default()
    }

    /// From now on, thread `thread` belongs to `process`.
    pub fn assign(&self, thread: u32, process: ProcessId) {
        self.map.lock().insert(thread, process);
    }
}

impl ProcessLookup for FakeProcesses {
    fn process_of(&self, thread: u32) -> ProcessId {
        self.map
            .lock()
            .get(&thread)
            .copied()
            .unwrap_or(ProcessId(thread))
    }
}
