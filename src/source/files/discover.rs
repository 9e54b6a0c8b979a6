//! The discovery thread: finds the files to follow and opens them, and never touches the buffer.
//!
//! Owns the include/exclude globs ([`Discovery`]), inotify's structural events (creations,
//! renames, removals) plus the periodic rescan (inotify drops events), what each matched path
//! led to at the last look (to notice rotations between two looks, and rescue files renamed
//! before they were read), files whose first line is still incomplete (held open), and the
//! recovery of files rotated while the agent was down.
//!
//! What it hands on: every file it opens, identified, with the offset to read from, goes to the
//! reading thread over a bounded channel ([`Handoff`], in [`super::handoff`]); and which followed files no longer sit
//! at their path (they are read to their end there). An open file keeps a deleted file's data
//! readable, so once a file is open here, a reading thread blocked on a full buffer or a
//! stalled disk cannot lose it. What does not fit in the channel waits here, in order.
//!
//! What it guarantees: a file is in the checkpoints (so a crash cannot forget it) from the
//! moment it is opened here; checkpoint offsets themselves only move with the buffer.

use super::budget::out_of_descriptors;
use super::file::identify;
use super::globs::Discovery;
use super::handoff::{Handoff, Opened, Shared, lock};
use super::watch::Seen;
use super::{Checkpoints, FileKey, TailerState};
use crate::config::{self, ReadFrom};
use crate::metrics::Metrics;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

/// The longest the loop sleeps while files wait for their first line or for a descriptor: they
/// are tried this often (or every `rescan_interval`, if shorter). inotify, a file given back, a
/// reload and shutdown wake it at once; with nothing waiting, it sleeps until the next rescan.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// How soon files waiting for their first line, for a descriptor, or for room in the channel
/// are tried again.
const RETRY: Duration = Duration::from_millis(25);

/// The most rounds of a rescan that each found directories to watch.
const SCAN_ROUNDS: usize = 16;

pub struct Discoverer {
    pub(super) cfg: config::Input,
    /// Configs accepted by a reload: new globs are looked at once.
    pub(super) reloads: Option<super::Reloads>,
    pub(super) globs: Discovery,
    pub(super) checkpoints: Arc<Checkpoints>,
    pub(super) shared: Arc<Shared>,
    pub(super) state: Arc<TailerState>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) shutdown: Arc<AtomicBool>,
    pub(super) to_reader: SyncSender<Handoff>,
    pub(super) events: Receiver<Seen>,
    /// inotify events were dropped (queue overflow or watcher error): rescan.
    pub(super) missed_events: Arc<AtomicBool>,
    /// Handoffs the reader's channel had no room for yet, oldest first.
    pub(super) pending: VecDeque<Handoff>,
    /// Include-matched path → the file handed to the reader for it.
    pub(super) by_path: HashMap<PathBuf, FileKey>,
    /// Matched paths whose file has no identity yet (its first line is incomplete), held open
    /// from the first look so that a deletion or rename cannot take their lines away.
    pub(super) waiting: HashMap<PathBuf, Waiting>,
    /// What each matched path led to when last looked at, to notice rotations that happened
    /// between two looks.
    pub(super) looks: HashMap<PathBuf, Look>,
    /// Matched paths not opened for lack of a descriptor, with where they would start.
    pub(super) starved: BTreeMap<PathBuf, Start>,
    /// Every directory new files can appear in is watched, and inotify works: the periodic
    /// rescan is only a safety net (see [`super::dirs`]).
    pub(super) covered: bool,
    /// A directory could not be watched, and it was said.
    pub(super) warned_unwatched: bool,
    /// The last scan met a matched path that led nowhere (see [`super::globs::Found`]).
    pub(super) unresolved: bool,
    /// Paths whose open failure was already logged, so it is logged once.
    pub(super) reported: HashSet<PathBuf>,
    /// When the scan before the current one started — during the first scan, the last scan of
    /// the agent's previous run, from the checkpoint file (`None` on a node's very first start):
    /// files renamed after it cannot have been seen by any look before.
    pub(super) previous_scan: Option<SystemTime>,
    /// When the current scan started.
    pub(super) this_scan: Option<SystemTime>,
    /// Checkpoint entries were added since the last save. New files are saved at once, not on
    /// the next timer tick: a file the agent knows about survives a crash even if it is rotated
    /// away right after.
    pub(super) unsaved: bool,
    /// No checkpoints existed at start-up: the agent has never run on this node. Only then does
    /// `read_from = "end"` skip content; after that, a file without a checkpoint appeared while
    /// the agent was down, and all of it is new.
    pub(super) fresh_start: bool,
    /// Fluentd's positions, on a first start with `input.fluentd_pos_file`: used up by the
    /// first scan (see [`super::fluentd`]).
    pub(super) fluentd: Option<crate::migrate::pos_file::Positions>,
}

/// A file seen at a matched path whose first line is not complete yet.
pub struct Waiting {
    file: File,
    real: PathBuf,
    dev: u64,
    ino: u64,
}

/// What a matched path led to at one moment.
pub struct Look {
    pub(super) real: PathBuf,
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) at: SystemTime,
}

/// Where a newly seen file starts when it has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// `read_from = "end"` for files present at start-up.
    AtEnd,
    /// `read_from = "end"`, at the size the file had when first seen: a file that waited for a
    /// descriptor is not skipped past what was written meanwhile.
    At(u64),
    /// The file was truncated: from 0, whatever the checkpoint says.
    Over,
}

impl Discoverer {
    /// Finds and opens files until shutdown; returns what the reader's channel had no room for.
    pub fn run(mut self) -> VecDeque<Handoff> {
        self.rescan(true);
        self.recover_rotated_while_down();
        self.resume_rotated_fluentd_files();
        self.hand_on();
        self.save_if_new();
        self.state.ready.store(true, Ordering::Relaxed);
        let mut next_rescan = Instant::now() + self.rescan_every();
        let mut rescan = false;
        while !self.shutdown.load(Ordering::Relaxed) {
            rescan |= self.drain_events();
            if let Some(new) = super::reloads::newer(&mut self.reloads) {
                rescan |= self.reconfigure(&new);
            }
            if self.missed_events.swap(false, Ordering::Relaxed) {
                rescan = true;
                self.pending.push_back(Handoff::ReadAll);
            }
            if std::mem::take(&mut rescan) || Instant::now() >= next_rescan {
                self.rescan(false);
                next_rescan = Instant::now() + self.rescan_every();
            }
            self.follow_returned();
            self.retry_waiting();
            self.retry_starved();
            self.hand_on();
            self.save_if_new();
            self.publish();
            // Files waiting for their first line are held open: trying them every MAX_IDLE
            // costs nothing in lines, and retrying faster would cost a read each.
            let busy = !self.pending.is_empty()
                || (!self.starved.is_empty() && self.shared.descriptors.room() > 0);
            let until_rescan = next_rescan.saturating_duration_since(Instant::now());
            let wait = if busy {
                RETRY
            } else if !self.waiting.is_empty() || !self.starved.is_empty() {
                // No event says when a first line is whole: they are tried as often as a
                // rescan would, when rescans were periodic.
                MAX_IDLE.min(self.cfg.rescan_interval.0)
            } else {
                until_rescan
            }
            .min(until_rescan);
            match self.events.recv_timeout(wait) {
                Ok(ev) => rescan |= ev == Seen::Structure,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
        // A file deleted while it waited for its first line would be gone by the next start:
        // whatever it holds is handed on now, for the reader's last pass.
        self.retry_waiting();
        self.hand_on();
        if let Some(at) = self.this_scan {
            self.checkpoints.note_scan(at, true);
        }
        std::mem::take(&mut self.pending)
    }

    fn publish(&self) {
        self.state
            .waiting_new
            .store(self.starved.len(), Ordering::Relaxed);
        self.metrics
            .files_open
            .set(self.shared.descriptors.in_use() as i64);
    }

    /// Handles all queued events; true when the set of files may have changed.
    fn drain_events(&mut self) -> bool {
        let mut rescan = false;
        while let Ok(ev) = self.events.try_recv() {
            rescan |= ev == Seen::Structure;
        }
        rescan
    }

    /// Sends what waits for the reader, in order, as far as its channel has room.
    fn hand_on(&mut self) {
        while let Some(h) = self.pending.pop_front() {
            match self.to_reader.try_send(h) {
                Ok(()) => {}
                Err(TrySendError::Full(h)) => {
                    self.pending.push_front(h);
                    return;
                }
                // The reader is gone (shutting down): nothing more to hand on.
                Err(TrySendError::Disconnected(_)) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    fn save_if_new(&mut self) {
        if std::mem::take(&mut self.unsaved)
            && let Err(e) = self.checkpoints.save()
        {
            self.metrics.checkpoint_errors.inc();
            tracing::error!(error = %e, "checkpoint write failed; will retry");
        }
    }

    /// Expands the globs: opens new files, notices rotated and deleted ones.
    fn rescan(&mut self, first: bool) {
        let now = SystemTime::now();
        if let Some(before) = self.this_scan.replace(now) {
            self.previous_scan = Some(before);
        }
        // Until no directory is watched for the first time: a file made in one before its
        // watch was added is found by the next round. A round adds a level of wildcards at
        // least; directories made and removed without end stop at the bound, and their events
        // start the next rescan.
        self.scan(first);
        for _ in 0..SCAN_ROUNDS {
            if !self.watch_directories() {
                break;
            }
            self.scan(first);
        }
        self.checkpoints.note_scan(now, false);
    }

    fn scan(&mut self, first: bool) {
        let scanned = self.globs.scan_looked();
        self.unresolved = scanned.unresolved;
        let found = scanned.paths;
        let found_set: HashSet<&PathBuf> = found.iter().map(|(p, _)| p).collect();
        let gone: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| !found_set.contains(p))
            .cloned()
            .collect();
        for path in gone {
            if let Some(key) = self.by_path.remove(&path) {
                self.pending.push_back(Handoff::Drain(key));
            }
        }
        let vanished: Vec<(PathBuf, Look)> = self
            .looks
            .extract_if(|p, _| !found_set.contains(p))
            .collect();
        for (path, _) in vanished {
            self.starved.remove(&path);
            self.reported.remove(&path);
            if let Some(w) = self.waiting.remove(&path) {
                if self.globs.selects(&path) {
                    // Deleted or renamed: what it holds is read as it is.
                    self.abandon_waiting(w);
                } else {
                    // Excluded now (a reload): never read.
                    self.checkpoints.forget(&FileKey::placeholder(w.dev, w.ino));
                    self.close(w.file);
                }
            }
        }
        let start = if first && self.cfg.read_from == ReadFrom::End && self.fresh_start {
            Start::AtEnd
        } else {
            Start::Beginning
        };
        for (path, meta) in found {
            self.consider(&path, start, Some(meta));
        }
    }

    /// Looks at one matched path (`seen`: what the scan just found there): a file there that
    /// is not followed yet is opened.
    fn consider(&mut self, path: &Path, start: Start, seen: Option<std::fs::Metadata>) {
        let Some(meta) = self.look_at(path, seen) else {
            return;
        };
        let start = match start {
            Start::AtEnd => Start::At(meta.len()),
            other => other,
        };
        if let Some(&key) = self.by_path.get(path) {
            if key.dev == meta.dev() && key.ino == meta.ino() {
                // Still the same file. (One truncated and written again is the reader's to
                // notice: it holds the file.)
                return;
            }
            // The path now names another file: the old one was rotated away.
            self.by_path.remove(path);
            self.pending.push_back(Handoff::Drain(key));
        }
        self.open(path, start);
    }

    /// Paths that found no descriptor: try again while the budget has room.
    fn retry_starved(&mut self) {
        while self.shared.descriptors.room() > 0 {
            let Some((path, start)) = self.starved.pop_first() else {
                return;
            };
            if self.by_path.contains_key(&path) || self.waiting.contains_key(&path) {
                continue;
            }
            self.consider(&path, start, None);
        }
    }

    /// Opens a file for discovery, within the descriptor budget. `None` when the budget is
    /// spent (the path is remembered in `starved` when it is a matched path) or the open failed.
    pub(super) fn open_counted(&mut self, path: &Path, starve: Option<Start>) -> Option<File> {
        if !self.shared.descriptors.take() {
            if let Some(start) = starve {
                self.starve(path, start);
            }
            return None;
        }
        match File::open(path) {
            Ok(f) => Some(f),
            Err(e) => {
                self.shared.descriptors.put_back();
                if out_of_descriptors(&e) {
                    // The budget's reserve was not enough (another part of the agent, or the
                    // whole node, holds more than expected): wait like for the budget.
                    if let Some(start) = starve {
                        self.starve(path, start);
                    }
                } else if starve.is_some() {
                    self.metrics.read_errors.inc();
                    if self.reported.insert(path.to_owned()) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot open file; will retry");
                    }
                }
                None
            }
        }
    }

    fn starve(&mut self, path: &Path, start: Start) {
        if self.starved.is_empty() {
            tracing::warn!(
                budget = self.shared.descriptors.budget(),
                "log files wait for a file descriptor; the longest-idle read files are closed to make room"
            );
        }
        self.starved.insert(path.to_owned(), start);
    }

    /// Drops a file discovery opened and will not hand on.
    pub(super) fn close(&self, file: File) {
        drop(file);
        self.shared.descriptors.put_back();
    }

    /// Starts following the file at `path`.
    fn open(&mut self, path: &Path, start: Start) {
        let held = match self.waiting.remove(path) {
            Some(w)
                if self
                    .looks
                    .get(path)
                    .is_some_and(|l| (l.dev, l.ino) == (w.dev, w.ino)) =>
            {
                Some(w.file)
            }
            Some(w) => {
                self.abandon_waiting(w);
                None
            }
            None => None,
        };
        let file = match held {
            Some(f) => f,
            None => match self.open_counted(path, Some(start)) {
                Some(f) => f,
                None => return,
            },
        };
        self.adopt(path, file, start);
    }

    /// Identifies a file opened at `path` and hands it to the reader (or holds it until its
    /// first line is whole).
    fn adopt(&mut self, path: &Path, file: File, start: Start) {
        let key = match identify(&file, false) {
            Ok(Some(k)) => k,
            Ok(None) => {
                self.wait_for_first_line(path, file);
                return;
            }
            Err(e) => {
                self.metrics.read_errors.inc();
                if self.reported.insert(path.to_owned()) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read file; will retry");
                }
                self.close(file);
                return;
            }
        };
        self.reported.remove(path);
        self.checkpoints
            .forget(&FileKey::placeholder(key.dev, key.ino));
        self.by_path.insert(path.to_owned(), key);
        if self.shared.is_followed(&key) {
            // Already followed (matched again, or through a second path): the reader keeps its
            // own and only learns that a path leads to it again.
            // Settled like any other: should the reader have let it go meanwhile, this key is
            // the one it follows, and its records need the ids the checkpoint holds. (A new
            // file that only looks like the followed one, a reused inode, gets an entry of its
            // own from `track`, starting at 0.)
            let mut key = key;
            let real = self.real_path(path);
            self.unsaved |= self.checkpoints.track(&mut key, &real, 0);
            let offset = self.checkpoints.get(&key).map_or(0, |e| e.offset);
            self.hand(path, file, key, offset, false);
            return;
        }
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let real = self.real_path(path);
        let checkpoint = match self.checkpoints.get(&key).map(|e| e.offset) {
            None if self.fluentd.is_some() => self.fluentd_offset(&file, &key, path, &real),
            known => known,
        };
        let offset = match (start, checkpoint) {
            (Start::Over, _) => 0,
            // A checkpoint past the end means the content was replaced: start over.
            (_, Some(c)) if c <= size => c,
            (Start::AtEnd, _) => size,
            (Start::At(seen), _) => seen.min(size),
            _ => 0,
        };
        if checkpoint.is_some_and(|c| c > size) && start != Start::Over {
            // Cut back and written again while nobody watched (copytruncate while the agent
            // was down): the new content is a new generation, with ids of its own, or its
            // records would meet the old ones' ids and be taken for duplicates.
            self.checkpoints.start_over(&key, true);
        }
        let mut key = key;
        self.unsaved |= self.checkpoints.track(&mut key, &real, offset);
        self.checkpoints.note_matched(&key, path);
        self.shared.watch(&real);
        self.hand(path, file, key, offset, false);
    }

    fn real_path(&self, path: &Path) -> PathBuf {
        match self.looks.get(path) {
            Some(l) => l.real.clone(),
            None => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
        }
    }

    fn hand(&mut self, path: &Path, file: File, key: FileKey, offset: u64, draining: bool) {
        tracing::debug!(path = %path.display(), offset, draining, "following file");
        let again = self.checkpoints.reread(&key, offset);
        if again > 0 {
            // Every path that starts a file asks its checkpoint, which start-up moved to what
            // the buffer holds: reading it again means one of them did not.
            tracing::warn!(path = %path.display(), offset, bytes = again, "reading again what the buffer already holds (its records go out as 409s, not duplicates)");
            self.metrics.reread_bytes.inc_by(again);
        }
        lock(&self.shared.followed).insert(key);
        self.pending.push_back(Handoff::Follow(Opened {
            path: path.to_owned(),
            file,
            key,
            offset,
            draining,
        }));
    }

    /// Follows a file no include glob leads to any more, to its end.
    pub(super) fn follow_draining(&mut self, path: &Path, file: File, key: FileKey, offset: u64) {
        let mut key = key;
        self.unsaved |= self.checkpoints.track(&mut key, path, offset);
        self.shared.watch(path);
        self.hand(path, file, key, offset, true);
    }

    /// Holds a file without an identity yet, and makes sure a crash cannot forget it.
    fn wait_for_first_line(&mut self, path: &Path, file: File) {
        let Ok(meta) = file.metadata() else {
            self.close(file);
            return;
        };
        let real = self.real_path(path);
        let mut placeholder = FileKey::placeholder(meta.dev(), meta.ino());
        self.unsaved |= self.checkpoints.track(&mut placeholder, &real, 0);
        self.checkpoints.note_matched(&placeholder, path);
        let w = Waiting {
            file,
            real,
            dev: meta.dev(),
            ino: meta.ino(),
        };
        self.waiting.insert(path.to_owned(), w);
    }

    /// A waiting file's path went away or leads elsewhere now: whatever it holds will not grow
    /// into a whole first line, so it is read to its end as it is.
    fn abandon_waiting(&mut self, w: Waiting) {
        self.checkpoints.forget(&FileKey::placeholder(w.dev, w.ino));
        match identify(&w.file, true) {
            Ok(Some(key)) if !self.shared.is_followed(&key) => {
                let path = w.real.clone();
                self.follow_draining(&path, w.file, key, 0);
            }
            _ => self.close(w.file),
        }
    }

    /// Paths whose first line was incomplete: try to identify them again.
    fn retry_waiting(&mut self) {
        let paths: Vec<PathBuf> = self.waiting.keys().cloned().collect();
        for p in paths {
            if self.look(&p).is_none() {
                if let Some(w) = self.waiting.remove(&p) {
                    self.abandon_waiting(w);
                }
                continue;
            }
            self.open(&p, Start::Beginning);
        }
    }

    /// Files the reader found truncated: followed again from 0 if their path still leads to
    /// them (a rotated one is done with).
    fn follow_returned(&mut self) {
        let returned = std::mem::take(&mut *lock(&self.shared.returned));
        for r in returned {
            let inode = r.file.metadata().map(|m| (m.dev(), m.ino())).ok();
            self.by_path
                .retain(|p, k| p != &r.path || Some((k.dev, k.ino)) != inode);
            let here = self
                .look(&r.path)
                .map(|m| (m.dev(), m.ino()))
                .filter(|i| Some(*i) == inode);
            if here.is_some() {
                self.adopt(&r.path, r.file, Start::Over);
            } else {
                self.close(r.file);
            }
        }
    }
}
