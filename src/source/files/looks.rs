//! What tells the reader which files to read, besides a read that stopped short: the files
//! inotify saw written (taken once per pass), and the look at every file inotify does not watch
//! (every `rescan_interval`) or at every file (events were lost); and whether anything is due
//! at a time at all, so that a quiet node's tailer sleeps instead of looking.

use super::file::identify;
use super::handoff::lock;
use super::{FileKey, Tailer};

impl Tailer {
    /// Something besides the files' own records is due at a time rather than at an event
    /// (see [`super::MAX_IDLE`]); the files' are looked at once a pass, by [`Tailer::note_quiet`].
    pub(super) fn waits_on_the_clock(&self) -> bool {
        !self.waiting_meta.is_empty()
            || !self.parked_wanting.is_empty()
            || self.state.waiting_for_descriptor() > 0
    }

    /// After a pass: whether no file holds anything due at a time (a partial record or a
    /// multiline group to time out, `rotate_wait` to run out), so the next turn of the loop
    /// needs no pass unless something is written, handed on or reconfigured.
    pub(super) fn note_quiet(&mut self) {
        let timeout = self.cfg.partial_timeout.0;
        self.quiet = !self
            .files
            .values()
            .any(|t| t.draining || t.expiry(timeout).is_some());
    }

    /// Marks the files inotify saw written since the last look.
    pub(super) fn take_written(&mut self) {
        let paths = std::mem::take(&mut *lock(&self.shared.written));
        for p in &paths {
            // Other paths: a write to a file still waiting for its first line, which discovery
            // tries again on its own.
            match self.by_real.get(p) {
                Some(k) if self.files.contains_key(k) => {
                    self.dirty.insert(*k);
                    self.written.insert(*k);
                }
                Some(k) => {
                    let k = *k;
                    self.unpark_if_grown(k);
                }
                None => {}
            }
        }
    }

    /// The look at every file (`all`: write events were lost; or inotify stopped) or at the
    /// files inotify does not watch (the periodic one): catches their writes, files truncated
    /// and written again too fast for the size check, and closed files that grew. A watched
    /// file needs none of it: inotify reports its every write and truncation. On a quiet node
    /// of 500 watched files, looking at each every rescan was most of what the agent did.
    pub(super) fn full_pass(&mut self, all: bool) {
        let all = all || !self.shared.inotify_works();
        let unwatched = lock(&self.shared.unwatched).clone();
        if !all && unwatched.is_empty() {
            return;
        }
        self.state.saw_writes();
        let looked_at = |real: &std::path::Path| all || unwatched.contains(real);
        let keys: Vec<FileKey> = self
            .files
            .values()
            .filter(|t| looked_at(&t.real))
            .map(|t| t.key)
            .collect();
        self.dirty.extend(keys.iter().copied());
        self.find_rewritten(&keys);
        let parked: Vec<FileKey> = self
            .parked
            .iter()
            .filter(|(_, p)| looked_at(&p.real))
            .map(|(k, _)| *k)
            .collect();
        for key in parked {
            self.unpark_if_grown(key);
        }
    }

    /// Files truncated and written again past their old size before they were read (the size
    /// check cannot see it): same inode, another first line. Asked of every file inotify said
    /// was written, once per read pass, before it is read: a read of its first line.
    pub(super) fn find_rewritten(&mut self, keys: &[FileKey]) {
        let rewritten: Vec<FileKey> = keys
            .iter()
            .filter_map(|k| self.files.get(k))
            .filter(|t| !t.draining)
            .filter(|t| matches!(identify(&t.file, false), Ok(Some(now)) if now != t.key))
            .map(|t| t.key)
            .collect();
        for key in rewritten {
            self.truncated(key);
        }
    }
}
