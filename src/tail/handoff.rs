//! What the discovery thread and the reading thread pass each other, and the little they share.
//!
//! Discovery → reader: [`Handoff`]s over one bounded channel, so that a rotation is never seen
//! before the file it rotates. Reader → discovery: truncated files given back ([`Returned`]).
//! Both: which files are followed, the descriptor budget, and the inotify watcher. Every lock is
//! held for a few map operations, never across I/O on the buffer.

use super::FileKey;
use super::budget::Descriptors;
use notify::RecursiveMode;
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
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
    /// inotify says these real paths were written to.
    Wrote(Vec<PathBuf>),
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
    pub watcher: Mutex<Option<notify::RecommendedWatcher>>,
    /// Write events did not fit the reading thread's channel: it looks at every file. (Its own
    /// `Arc`: the watcher's handler holds it, and the watcher lives here.)
    pub missed_writes: Arc<AtomicBool>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn watch(&self, real: &Path) {
        if let Some(w) = lock(&self.watcher).as_mut()
            && let Err(e) = notify::Watcher::watch(w, real, RecursiveMode::NonRecursive)
        {
            // Reading still works through the periodic pass; only latency suffers.
            tracing::debug!(path = %real.display(), error = %e, "cannot watch file");
        }
    }

    pub fn unwatch(&self, real: &Path) {
        if let Some(w) = lock(&self.watcher).as_mut() {
            let _ = notify::Watcher::unwatch(w, real);
        }
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

/// Builds the inotify watcher: structural events go to discovery, writes to the reader.
pub fn make_watcher(
    discovery: SyncSender<notify::Event>,
    missed_structure: Arc<AtomicBool>,
    reader: SyncSender<Handoff>,
    missed_writes: Arc<AtomicBool>,
) -> Option<notify::RecommendedWatcher> {
    use notify::EventKind;
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            let structural = matches!(
                ev.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(notify::event::ModifyKind::Name(_))
            );
            if structural {
                if let Err(TrySendError::Full(_)) = discovery.try_send(ev) {
                    missed_structure.store(true, Ordering::Relaxed);
                }
            } else if let Err(TrySendError::Full(_)) = reader.try_send(Handoff::Wrote(ev.paths)) {
                missed_writes.store(true, Ordering::Relaxed);
            }
        }
        Err(_) => {
            missed_structure.store(true, Ordering::Relaxed);
            missed_writes.store(true, Ordering::Relaxed);
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "inotify is unavailable; new lines are found by the periodic rescan only");
            None
        }
    }
}
