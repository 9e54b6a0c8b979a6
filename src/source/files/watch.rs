//! inotify, read at the pace the reader reads.
//!
//! A container runtime writes each line on its own, so a pod logging a thousand lines a second
//! makes a thousand `IN_MODIFY` events. Read as they come (what a general watcher such as the
//! `notify` crate does), each wakes a thread, and through it the reader: measured at 1,000
//! lines/s (`scripts/bench --only steady-1k`, 2026-12-06), four fifths of the agent's CPU went
//! to those wakes. Here the thread that reads the events waits [`Watcher`]'s pace after a batch
//! that held writes: meanwhile the kernel merges repeated events of one file into one (it merges
//! an event with the last one queued), and the reader, who reads no faster than that anyway, is
//! woken once per batch, not per line.
//!
//! Files are watched for writes (`IN_MODIFY`), for a change of their links (`IN_ATTRIB`: deleted)
//! and for being moved (rotated); directories (the globs' roots) only for entries coming and
//! going: a write to a file in a watched directory would otherwise arrive twice, through the
//! file and through its directory, and two alternating events are never merged.

use ::inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use rustix::event::{EventfdFlags, PollFd, PollFlags};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What discovery is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Files came, went or moved: expand the globs again.
    Structure,
    /// Nothing happened; look at the loop's condition (shutdown, a file given back).
    Wake,
}

/// Where the events go.
pub struct Sinks {
    /// Structural changes, to discovery; a full channel sets `missed_structure`.
    pub discovery: SyncSender<Seen>,
    pub missed_structure: Arc<AtomicBool>,
    /// Real paths written to, and how to wake the reader, when the set stops being empty.
    pub written: Arc<Mutex<HashSet<PathBuf>>>,
    pub wake_reader: Box<dyn Fn() + Send>,
    /// The kernel's queue overflowed: events were lost, every file must be looked at.
    pub missed_writes: Arc<AtomicBool>,
    /// Counts the batches that held writes, for whoever measures what is left unread.
    pub state: Arc<super::TailerState>,
}

const FILE_MASK: WatchMask = WatchMask::MODIFY
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DELETE_SELF);
const DIR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::ONLYDIR);

/// Watched paths by descriptor and back. inotify watches inodes: a path watched again after
/// its file was replaced (rotation) gets a descriptor of its own.
#[derive(Default)]
struct Paths {
    by_wd: HashMap<WatchDescriptor, PathBuf>,
    by_path: HashMap<PathBuf, WatchDescriptor>,
    /// The watches that are directories': one moved away no longer stands for its path.
    dirs: HashSet<WatchDescriptor>,
}

impl Paths {
    fn forget(&mut self, wd: &WatchDescriptor) {
        self.dirs.remove(wd);
        if let Some(p) = self.by_wd.remove(wd)
            && self.by_path.get(&p) == Some(wd)
        {
            self.by_path.remove(&p);
        }
    }
}

/// One inotify instance and the thread that reads it; dropping it stops the thread.
pub struct Watcher {
    watches: Watches,
    paths: Arc<Mutex<Paths>>,
    /// Written to at drop: the thread waits on it beside inotify.
    stop: Arc<OwnedFd>,
    pace: Arc<AtomicU64>,
    /// The reading thread met an error and stopped: no event will come any more.
    failed: Arc<AtomicBool>,
}

impl Watcher {
    /// Starts the reading thread. `pace`: how long it waits after a batch of writes.
    pub fn start(sinks: Sinks, pace: Duration) -> io::Result<Watcher> {
        let inotify = Inotify::init()?;
        let stop = Arc::new(rustix::event::eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?);
        let watcher = Watcher {
            watches: inotify.watches(),
            paths: Arc::default(),
            stop,
            pace: Arc::new(AtomicU64::new(millis(pace))),
            failed: Arc::default(),
        };
        let reading = Reading {
            inotify,
            paths: watcher.paths.clone(),
            stop: watcher.stop.clone(),
            pace: watcher.pace.clone(),
            failed: watcher.failed.clone(),
            sinks,
        };
        std::thread::Builder::new()
            .name("inotify".into())
            .spawn(move || reading.run())?;
        Ok(watcher)
    }

    /// Watches a file for writes, deletion and rotation.
    pub fn watch_file(&mut self, path: &Path) -> io::Result<()> {
        self.add(path, FILE_MASK)
    }

    /// Watches a directory for entries coming, going and moving.
    pub fn watch_dir(&mut self, path: &Path) -> io::Result<()> {
        self.add(path, DIR_MASK)
    }

    fn add(&mut self, path: &Path, mask: WatchMask) -> io::Result<()> {
        let wd = self.watches.add(path, mask)?;
        let mut paths = lock(&self.paths);
        // The path's previous inode (rotated away) stays watched until it is let go, its
        // events still under this path, which the reader maps to whichever file is there.
        if mask == DIR_MASK {
            paths.dirs.insert(wd.clone());
        }
        paths.by_path.insert(path.to_owned(), wd.clone());
        paths.by_wd.insert(wd, path.to_owned());
        Ok(())
    }

    /// Whether events still come: the reading thread has not stopped on an error.
    pub fn working(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
    }

    /// Whether `path` is watched now. A directory deleted (and so unwatched by the kernel) is
    /// not, even if one was made again at its path.
    pub fn watching(&self, path: &Path) -> bool {
        lock(&self.paths).by_path.contains_key(path)
    }

    pub fn unwatch(&mut self, path: &Path) {
        let wd = {
            let mut paths = lock(&self.paths);
            let Some(wd) = paths.by_path.remove(path) else {
                return;
            };
            paths.by_wd.remove(&wd);
            paths.dirs.remove(&wd);
            wd
        };
        // Already gone with its file: nothing to remove.
        let _ = self.watches.remove(wd);
    }

    /// A new pace (a reload changed `buffer.flush_interval`).
    pub fn set_pace(&self, pace: Duration) {
        self.pace.store(millis(pace), Ordering::Relaxed);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // An eventfd counter of 1: the thread's poll returns.
        let _ = rustix::io::write(&*self.stop, &1u64.to_ne_bytes());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The thread's half.
struct Reading {
    inotify: Inotify,
    paths: Arc<Mutex<Paths>>,
    stop: Arc<OwnedFd>,
    pace: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    sinks: Sinks,
}

impl Reading {
    fn run(mut self) {
        // Room for a few thousand events of files (16 bytes each) in one read.
        let mut buf = vec![0u8; 64 * 1024];
        while self.wait_readable() {
            let wrote = match self.inotify.read_events(&mut buf) {
                Ok(events) => {
                    let events: Vec<(WatchDescriptor, EventMask, Option<PathBuf>)> = events
                        .map(|e| (e.wd, e.mask, e.name.map(PathBuf::from)))
                        .collect();
                    self.take(events)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) => {
                    self.give_up(&e);
                    return;
                }
            };
            if wrote {
                let pace = self.pace.load(Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(pace));
            }
        }
    }

    /// Stops for good: without events, every file and directory is looked at every
    /// `rescan_interval`, as where inotify is unavailable.
    fn give_up(&self, e: &io::Error) {
        tracing::warn!(error = %e, "cannot read inotify events; files are looked at every rescan_interval");
        self.failed.store(true, Ordering::Relaxed);
        self.sinks.missed_structure.store(true, Ordering::Relaxed);
        self.sinks.missed_writes.store(true, Ordering::Relaxed);
        let _ = self.sinks.discovery.try_send(Seen::Wake);
        (self.sinks.wake_reader)();
    }

    /// Waits until inotify has events (true) or the watcher was dropped (false).
    fn wait_readable(&self) -> bool {
        loop {
            let mut fds = [
                PollFd::new(&self.inotify, PollFlags::IN),
                PollFd::new(&*self.stop, PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => return fds[1].revents().is_empty(),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    self.give_up(&e.into());
                    return false;
                }
            }
        }
    }

    /// Hands one batch of events on; true if any was a write.
    fn take(&mut self, events: Vec<(WatchDescriptor, EventMask, Option<PathBuf>)>) -> bool {
        let (mut wrote, mut structure, mut lost) = (Vec::new(), false, false);
        {
            let mut paths = lock(&self.paths);
            for (wd, mask, name) in events {
                if mask.contains(EventMask::Q_OVERFLOW) {
                    lost = true;
                    continue;
                }
                if mask.contains(EventMask::IGNORED) {
                    // The watch is gone (its file deleted and closed, or unwatched).
                    paths.forget(&wd);
                    continue;
                }
                if mask.contains(EventMask::MOVE_SELF) && paths.dirs.contains(&wd) {
                    // A directory moved away: whatever is made at its path is watched anew by
                    // the rescan this starts. (A moved file is still read to its end.)
                    paths.forget(&wd);
                    let _ = self.inotify.watches().remove(wd);
                    structure = true;
                    continue;
                }
                let Some(base) = paths.by_wd.get(&wd) else {
                    continue;
                };
                let path = match name {
                    Some(n) => base.join(n),
                    None => base.clone(),
                };
                if mask.intersects(
                    EventMask::CREATE
                        | EventMask::DELETE
                        | EventMask::DELETE_SELF
                        | EventMask::MOVED_FROM
                        | EventMask::MOVED_TO
                        | EventMask::MOVE_SELF
                        | EventMask::ATTRIB,
                ) {
                    structure = true;
                }
                if mask.intersects(EventMask::MODIFY | EventMask::ATTRIB) {
                    wrote.push(path);
                }
            }
        }
        let s = &self.sinks;
        if lost {
            s.missed_structure.store(true, Ordering::Relaxed);
            s.missed_writes.store(true, Ordering::Relaxed);
        }
        if (structure || lost)
            && let Err(TrySendError::Full(_)) = s.discovery.try_send(Seen::Structure)
        {
            s.missed_structure.store(true, Ordering::Relaxed);
        }
        let any = !wrote.is_empty();
        if any || lost {
            s.state.saw_writes();
        }
        if any {
            let mut set = lock(&s.written);
            let first = set.is_empty();
            set.extend(wrote);
            drop(set);
            if first {
                (s.wake_reader)();
            }
        } else if lost {
            // Every file is to be looked at, now rather than at the reader's next look.
            (s.wake_reader)();
        }
        any || lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
    use std::time::Instant;

    /// A started watcher, discovery's end, the written set and the reader's wakes so far.
    type Test = (
        Watcher,
        Receiver<Seen>,
        Arc<Mutex<HashSet<PathBuf>>>,
        Arc<AtomicUsize>,
    );

    fn watcher() -> Test {
        let (discovery, events) = sync_channel(64);
        let written = Arc::new(Mutex::new(HashSet::new()));
        let wakes = Arc::new(AtomicUsize::new(0));
        let counted = wakes.clone();
        let sinks = Sinks {
            discovery,
            missed_structure: Arc::default(),
            written: written.clone(),
            wake_reader: Box::new(move || {
                counted.fetch_add(1, Ordering::Relaxed);
            }),
            missed_writes: Arc::default(),
            state: Arc::default(),
        };
        let w = Watcher::start(sinks, Duration::from_millis(20)).expect("inotify");
        (w, events, written, wakes)
    }

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_file_written_many_times_wakes_the_reader_once_until_it_looks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut file = std::fs::File::create(&path).unwrap();
        let (mut w, _events, written, wakes) = watcher();
        w.watch_file(&path).unwrap();
        for i in 0..300 {
            writeln!(file, "line {i}").unwrap();
        }
        until("the writes to be seen", || lock(&written).contains(&path));
        // Let any late batch arrive: it must not wake the reader again.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(wakes.load(Ordering::Relaxed), 1, "300 writes, one wake");
        // The reader takes the set; the next write wakes it again.
        lock(&written).clear();
        writeln!(file, "one more").unwrap();
        until("the next write to wake the reader", || {
            wakes.load(Ordering::Relaxed) == 2
        });
        assert!(lock(&written).contains(&path));
    }

    #[test]
    fn entries_coming_and_going_reach_discovery_and_writes_come_through_the_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, events, written, _) = watcher();
        w.watch_dir(dir.path()).unwrap();
        let path = dir.path().join("new.log");
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok(Seen::Structure)
        );
        // Written inside the watched directory, but not watched itself: a directory's watch
        // does not report writes (they would come twice, through the file and its directory).
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"second\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(lock(&written).is_empty());
        std::fs::remove_file(&path).unwrap();
        until("the removal to reach discovery", || {
            events.try_recv() == Ok(Seen::Structure)
        });
    }

    #[test]
    fn a_directory_moved_away_no_longer_stands_for_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pod");
        std::fs::create_dir(&pod).unwrap();
        let (mut w, events, _, _) = watcher();
        w.watch_dir(&pod).unwrap();
        assert!(w.watching(&pod));
        std::fs::rename(&pod, dir.path().join("pod.old")).unwrap();
        until("the move to reach discovery", || {
            events.try_recv() == Ok(Seen::Structure)
        });
        until("the path to be let go", || !w.watching(&pod));
        // What is made at the path now is watched anew, and its entries are reported.
        std::fs::create_dir(&pod).unwrap();
        w.watch_dir(&pod).unwrap();
        while events.try_recv().is_ok() {}
        std::fs::write(pod.join("0.log"), "x\n").unwrap();
        assert_eq!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok(Seen::Structure)
        );
        // The moved directory's own entries no longer come under the path.
        std::fs::write(dir.path().join("pod.old/1.log"), "x\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            events.try_recv().is_err(),
            "an event of the moved directory"
        );
    }

    #[test]
    fn dropping_the_watcher_stops_its_thread() {
        let (w, events, _, _) = watcher();
        drop(w);
        // The thread held discovery's sender: it is gone once the thread has ended.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match events.recv_timeout(Duration::from_millis(100)) {
                Err(RecvTimeoutError::Disconnected) => break,
                _ => assert!(
                    Instant::now() < deadline,
                    "the inotify thread is still running"
                ),
            }
        }
    }
}
