//! The directories discovery watches, so that a new file is an event rather than something a
//! rescan finds: each include glob's root, every directory its wildcards match on the way to a
//! file (`/var/log/pods/*/*/*.log`: each pod's and each container's), and the directory of the
//! file each matched symlink leads to. (`/var/log/containers/*.log` are links into
//! `/var/log/pods`: at a rotation the runtime makes the container's new file there, and the
//! link does not change. Watching the file alone, the rescan its move starts can come before
//! the new file exists.)
//!
//! Where every one of them is watched, nothing new can appear unseen but through a lost event,
//! which inotify reports (its queue overflowed) and which starts a rescan at once: the periodic
//! rescan is then only a safety net, every [`COVERED_RESCAN`]. Where one cannot be watched (a
//! root that does not exist yet, the watch limit reached, no inotify), or a file could not be
//! opened, or a matched link leads nowhere, the globs are expanded every `rescan_interval`, as
//! before.

use super::discover::Discoverer;
use super::handoff::lock;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// How often the globs are expanded when inotify watches every directory they lead to. A
/// rescan of 500 files costs 5–15 ms; at `rescan_interval` (10 s), it was most of what a quiet
/// node's agent did.
pub const COVERED_RESCAN: Duration = Duration::from_secs(300);

impl Discoverer {
    /// Watches the directories the last scan leads to that are not watched yet. True when one
    /// was added: a file made in it before its watch was is found by scanning once more.
    ///
    /// None is let go here: a directory leaves when the kernel drops its watch (deleted, or
    /// moved away). A link leading nowhere for a moment, between a rotation and the runtime's
    /// new file, must not take its directory's watch with it: that watch is what sees the new
    /// file. (After a reload that drops a glob, its directories' entries start rescans that
    /// find nothing, until the directories go.)
    pub(super) fn watch_directories(&mut self) -> bool {
        let mut wanted: HashSet<PathBuf> = self.globs.directories().into_iter().collect();
        // Links' directories: a looked-at path leads to them now.
        for (path, look) in &self.looks {
            if look.real != *path
                && let Some(dir) = look.real.parent()
                && !wanted.contains(dir)
            {
                wanted.insert(dir.to_owned());
            }
        }
        let mut watcher = lock(&self.shared.watcher);
        let Some(w) = watcher.as_mut().filter(|w| w.working()) else {
            self.covered = false;
            return false;
        };
        let (mut added, mut all) = (false, self.globs.roots_exist());
        for dir in &wanted {
            if w.watching(dir) {
                continue;
            }
            match w.watch_dir(dir) {
                Ok(()) => added = true,
                Err(e) => {
                    all = false;
                    // Said once: past the watch limit, every new pod's directory would say it.
                    if !std::mem::replace(&mut self.warned_unwatched, true) {
                        tracing::warn!(path = %dir.display(), error = %e, "cannot watch directory; new files in it, and in any other directory that cannot be watched, are found by the rescan every rescan_interval");
                    }
                }
            }
        }
        drop(watcher);
        self.covered = all;
        added
    }

    /// How long until the globs are expanded again unasked. A file that could not be opened
    /// or read (its permissions, say), and a matched link that leads nowhere, are looked at
    /// again at each rescan: no event says when that changes.
    pub(super) fn rescan_every(&self) -> Duration {
        let interval = self.cfg.rescan_interval.0;
        if self.covered && self.reported.is_empty() && !self.unresolved {
            COVERED_RESCAN.max(interval)
        } else {
            interval
        }
    }
}
