//! File descriptors as a budget: the tailer may hold at most the process's open-files limit
//! minus a reserve, so that the buffer's segments and directory fsyncs, the checkpoint file,
//! the shippers' sockets and the API always find a descriptor, however many log files appear.
//!
//! The discovery thread takes a descriptor from the budget before it opens a file and hands it
//! on with the file; the reading thread publishes how many it holds. When the budget is spent,
//! new files wait (and `/health` says so) while the reading thread closes the longest-idle
//! files it has read to their end, which are reopened by identity when they grow.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors the rest of the agent may need at any moment: stdio, the runtime's epoll and
/// wakers, inotify, the API listener and a few of its clients, the buffer's open segments, the
/// directory opened for an fsync, the checkpoint and cursor temp files, the dead-letter file,
/// a glob walking a directory, and the Kubernetes watches. Counted generously: running out here
/// fails a buffer fsync, which stops the agent; running out in the tailer only delays a file.
pub const RESERVE: usize = 64;
/// Each shipper may hold a connection per host and open one more while the other is closing.
pub const RESERVE_PER_SHIPPER: usize = 4;
/// The tailer gets at least this many even under a tiny limit: with fewer it could not make
/// progress through a node's files at all.
const LEAST: usize = 16;
/// When the limit cannot be read, the common default soft limit.
const ASSUMED_LIMIT: usize = 1024;

/// How many descriptors the tailer holds, and how many it may.
#[derive(Debug)]
pub struct Descriptors {
    budget: usize,
    /// Held by the reading thread (followed files), published by it as an absolute count.
    reader: AtomicUsize,
    /// Held by the discovery thread: files waiting for their first line, files on their way to
    /// the reader, and a file being looked at.
    discovery: AtomicUsize,
}

impl Descriptors {
    /// The budget for this process's current soft limit and `shippers` shippers.
    pub fn for_this_process(shippers: usize) -> Descriptors {
        let limit = open_files_limit().unwrap_or(ASSUMED_LIMIT);
        let budget = limit
            .saturating_sub(RESERVE + RESERVE_PER_SHIPPER * shippers)
            .max(LEAST);
        tracing::info!(
            limit,
            budget,
            "log files held open at most (the open-files limit less a reserve)"
        );
        Descriptors::with_budget(budget)
    }

    pub fn with_budget(budget: usize) -> Descriptors {
        Descriptors {
            budget,
            reader: AtomicUsize::new(0),
            discovery: AtomicUsize::new(0),
        }
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn in_use(&self) -> usize {
        self.reader.load(Ordering::Relaxed) + self.discovery.load(Ordering::Relaxed)
    }

    /// Descriptors still free in the budget.
    pub fn room(&self) -> usize {
        self.budget.saturating_sub(self.in_use())
    }

    /// Taken before opening a file (by discovery, and by the reader reopening a closed one, which
    /// puts it back once it has published its count); false when the budget is spent.
    ///
    /// Sound across the two threads: the reader's own count only grows for a descriptor
    /// already counted here (a handover, or one it took here itself), so a compare-and-swap on
    /// this counter is the only place the total can grow.
    pub fn take(&self) -> bool {
        self.discovery
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                (self.reader.load(Ordering::Acquire) + d < self.budget).then_some(d + 1)
            })
            .is_ok()
    }

    /// Discovery opens a rotated file that was not read to its end: it gets its descriptor even
    /// over the budget (the reserve absorbs the few there are), because waiting could let the
    /// kubelet compress or delete it unread.
    pub fn take_anyway(&self) {
        self.discovery.fetch_add(1, Ordering::Relaxed);
    }

    /// Discovery closed a file it had taken a descriptor for.
    pub fn put_back(&self) {
        let _ = self
            .discovery
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The reading thread received a file from discovery and has published its new count: the
    /// descriptor is its own now. (Published first, so it is never counted nowhere.)
    pub fn handed_over(&self) {
        self.put_back();
    }

    /// The reading thread gave a file back to discovery (truncated, to be followed again).
    pub fn given_back(&self) {
        self.discovery.fetch_add(1, Ordering::Relaxed);
    }

    /// The reading thread holds `n` files open.
    pub fn set_reader(&self, n: usize) {
        self.reader.store(n, Ordering::Relaxed);
    }
}

/// The process is out of descriptors (EMFILE), or the system is (ENFILE): the open is retried
/// later, it is not a fault of the file.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The soft `RLIMIT_NOFILE` of this process; `None` where it has none ("unlimited" counts as
/// `usize::MAX`).
pub fn open_files_limit() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    Some(
        limit
            .current
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_the_one_the_kernel_reports() {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let soft = line.split_whitespace().nth(3).unwrap();
        let want = if soft == "unlimited" {
            usize::MAX
        } else {
            soft.parse().unwrap()
        };
        assert_eq!(open_files_limit(), Some(want));
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn a_spent_budget_refuses_until_a_descriptor_comes_back() {
        let d = Descriptors::with_budget(2);
        d.set_reader(1);
        assert!(d.take());
        assert!(!d.take(), "the budget is two");
        d.handed_over();
        d.set_reader(2);
        assert!(!d.take(), "the reader holds both now");
        d.set_reader(1);
        assert!(d.take());
        d.put_back();
        d.put_back();
        assert_eq!(d.in_use(), 1, "putting back never goes below zero");
    }
}
