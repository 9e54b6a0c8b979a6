//! What the discovery thread and the reading thread pass each other, and the little they share.
//!
//! Discovery → reader: [`Handoff`]s over one bounded channel, so that a rotation is never seen
//! before the file it rotates. Reader → discovery: truncated files given back ([`Returned`]).
//! Both: which files are followed, the descriptor budget, and the inotify watcher. Every lock is
//! held for a few map operations, never across I/O on the buffer.

use super::FileKey;
use super::budget::Descriptors;
use super::watch::{Seen, Sinks, Watcher};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the discovery thread tells the reading thread, in the order it happened.
pub enum Handoff {
    /// A file opened and identified: read it from `offset`.
    Follow(Opened),
    /// The followed file's path no longer leads to it (rotated or deleted): read it to its end.
    Drain(FileKey),
    /// A reload's globs no longer match the followed file's path: read it to where it ends now,
    /// then stop, keeping its checkpoint (matched again, it is read on from there).
    Unmatched(FileKey),
    /// inotify saw a write after the reader last took [`Shared::written`]: look at it.
    Written,
    /// Write events were lost: look at every file.
    ReadAll,
}

pub struct Opened {
    /// The path the include glob matched, or the real path of a rotated file.
    pub path: PathBuf,
    pub file: File,
    pub key: FileKey,
    pub offset: u64,
    /// No include glob leads to it any more (rotated or deleted before it was read to its end).
    pub draining: bool,
}

/// A file the reading thread gives back: truncated and written again, to be followed again
/// from its new beginning.
pub struct Returned {
    pub path: PathBuf,
    pub file: File,
}

/// What both threads share. Each lock is held for a few map operations, never across I/O on
/// the buffer.
pub struct Shared {
    /// Files the reading thread follows (open or closed for the budget): discovery neither
    /// rescues them again nor takes them for new.
    pub followed: Mutex<HashSet<FileKey>>,
    pub returned: Mutex<Vec<Returned>>,
    pub descriptors: Descriptors,
    pub watcher: Mutex<Option<Watcher>>,
    /// Real paths inotify saw written since the reader last took them. A set, not a queue: a
    /// file written a thousand times between two read passes is one entry, and only the first
    /// write after the reader looked wakes it ([`Handoff::Written`]), so a steady writer costs
    /// a wake per pass, not per line. (Its own `Arc`: the watcher's handler holds it.)
    pub written: Arc<Mutex<HashSet<PathBuf>>>,
    /// Real paths whose inotify watch could not be added (a filesystem without inotify, the
    /// watch limit reached): the only files the periodic look reads without being told.
    pub unwatched: Mutex<HashSet<PathBuf>>,
    /// Write events did not fit the reading thread's channel: it looks at every file. (Its own
    /// `Arc`: the watcher's handler holds it, and the watcher lives here.)
    pub missed_writes: Arc<AtomicBool>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn watch(&self, real: &Path) {
        let watched = match lock(&self.watcher).as_mut() {
            Some(w) => match w.watch_file(real) {
                Ok(()) => true,
                Err(e) => {
                    // Reading still works through the periodic pass; only latency suffers.
                    tracing::debug!(path = %real.display(), error = %e, "cannot watch file");
                    false
                }
            },
            None => false,
        };
        let mut unwatched = lock(&self.unwatched);
        if watched {
            unwatched.remove(real);
        } else {
            unwatched.insert(real.to_owned());
        }
    }

    /// Whether inotify reports what happens: it started and its thread has not given up.
    pub fn inotify_works(&self) -> bool {
        lock(&self.watcher).as_ref().is_some_and(Watcher::working)
    }

    /// inotify works and watches every followed file: the periodic look has nothing to do.
    pub fn sees_every_file(&self) -> bool {
        self.inotify_works() && lock(&self.unwatched).is_empty()
    }

    pub fn unwatch(&self, real: &Path) {
        if let Some(w) = lock(&self.watcher).as_mut() {
            w.unwatch(real);
        }
        lock(&self.unwatched).remove(real);
    }

    pub(super) fn is_followed(&self, key: &FileKey) -> bool {
        lock(&self.followed).contains(key)
    }

    pub(super) fn follows_inode(&self, dev: u64, ino: u64) -> bool {
        lock(&self.followed)
            .iter()
            .any(|k| (k.dev, k.ino) == (dev, ino))
    }
}

/// Wakes the reading and discovery threads now (at shutdown) rather than at their next look,
/// which a quiet node makes rare.
#[derive(Clone)]
pub struct Waker {
    pub(super) reader: SyncSender<Handoff>,
    pub(super) discovery: SyncSender<Seen>,
}

impl Waker {
    pub fn wake(&self) {
        // A full channel wakes its thread anyway.
        let _ = self.reader.try_send(Handoff::Written);
        self.wake_discovery();
    }

    pub(super) fn wake_discovery(&self) {
        let _ = self.discovery.try_send(Seen::Wake);
    }
}

/// Structural inotify events waiting for discovery; past this they are dropped and a rescan
/// covers them.
const EVENT_QUEUE: usize = 4096;
/// Handoffs (opened files, rotations, wakes) waiting for the reader. What does not fit waits in
/// discovery, in order.
const HANDOFF_QUEUE: usize = 1024;

/// The two threads' ends of what they share, and the inotify watcher feeding both.
pub struct Connected {
    pub shared: Arc<Shared>,
    pub waker: Waker,
    /// Discovery's: structural events, and whether some were dropped.
    pub events: Receiver<Seen>,
    pub missed_events: Arc<AtomicBool>,
    /// The reader's, and discovery's way to it.
    pub handoffs: Receiver<Handoff>,
    pub to_reader: SyncSender<Handoff>,
}

/// Makes the channels and starts the inotify watcher (none, said once, where inotify is
/// unavailable: files are then found and read by the periodic look). `pace`: see
/// [`Watcher::start`].
pub fn connect(
    descriptors: Descriptors,
    pace: std::time::Duration,
    state: Arc<super::TailerState>,
) -> Connected {
    let (events_tx, events) = sync_channel(EVENT_QUEUE);
    let (to_reader, handoffs) = sync_channel(HANDOFF_QUEUE);
    let missed_writes = Arc::new(AtomicBool::new(false));
    let missed_events = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(HashSet::new()));
    let waker = Waker {
        reader: to_reader.clone(),
        discovery: events_tx.clone(),
    };
    let reader = to_reader.clone();
    let sinks = Sinks {
        discovery: events_tx,
        missed_structure: missed_events.clone(),
        written: written.clone(),
        // A full channel means a reader with work queued: it takes the set at its next pass
        // anyway.
        wake_reader: Box::new(move || {
            let _ = reader.try_send(Handoff::Written);
        }),
        missed_writes: missed_writes.clone(),
        state,
    };
    let watcher = match Watcher::start(sinks, pace) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "inotify is unavailable; new lines are found by the periodic rescan only");
            None
        }
    };
    let shared = Arc::new(Shared {
        followed: Default::default(),
        returned: Default::default(),
        descriptors,
        watcher: Mutex::new(watcher),
        written,
        unwatched: Default::default(),
        missed_writes,
    });
    Connected {
        shared,
        waker,
        events,
        missed_events,
        handoffs,
        to_reader,
    }
}
