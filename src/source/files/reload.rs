//! A config reload, as the reading and discovery threads take it: between two read passes, so
//! that no line is read twice or skipped. Each thread compares the sections it uses with the
//! ones it runs with and rebuilds only what changed, so a reload that changes nothing (a
//! `--watch-config` check, a SIGHUP out of habit) changes nothing: throttle buckets keep their
//! tokens, joiners keep the trace they hold.

use super::discover::Discoverer;
use super::globs::Discovery;
use super::handoff::{Handoff, lock};
use super::joining::Joining;
use super::throttle::Throttle;
use super::{FileKey, Tailer, config};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

impl Tailer {
    /// Takes a new config at a pass boundary. Whatever a joiner holds when its rules change is
    /// handed on first, as complete records; records already encoded stay as they were.
    pub(super) fn reconfigure(&mut self, new: Arc<config::Config>) {
        self.quiet = false;
        let old = std::mem::replace(&mut self.running, new.clone());
        // `max_line_bytes` needs a restart: a line held under the old cap may be past a new one.
        self.cfg = new.input.clone();
        self.out.wait_for_metadata = new.kubernetes.wait_for_metadata.0;
        if old.throttle != new.throttle {
            self.out.throttle = Throttle::new(&new.throttle, self.out.metrics.clone());
            for t in self.files.values_mut() {
                t.throttle_key = self.out.throttle_key(t.pod.as_ref());
            }
            // Held back under the old limits: the new ones decide at the next pass.
            self.dirty.extend(self.throttled.drain().map(|(k, _)| k));
        }
        if old.multiline != new.multiline {
            self.joining = Joining::new(
                &new.multiline,
                crate::multiline::Counters::new(&self.out.metrics),
            );
            for t in self.files.values_mut() {
                // `apply` hands on what a joiner whose rules change holds, and leaves the others
                // as they are; the checkpoint may then move past what was handed on.
                self.joining.apply_reloaded(t, &mut self.out);
                self.out.advance(t.key, t.safe_offset());
            }
        }
        if let Some(w) = lock(&self.shared.watcher).as_ref() {
            w.set_pace(super::inotify_pace(&new.buffer));
        }
        self.out.reconfigure(&new);
    }
}

impl Tailer {
    /// A followed file the new globs do not match: read to where it ends, then let go.
    pub(super) fn unmatched(&mut self, key: FileKey) {
        if let Some(p) = self.parked.remove(&key) {
            // Closed at its end: nothing more to read, and its checkpoint is where it ends.
            self.parked_wanting.remove(&key);
            self.stop_following(key, &p.real);
        } else if let Some(t) = self.files.get_mut(&key) {
            t.unmatched = true;
            self.dirty.insert(key);
        }
    }

    /// Lets go of a file no longer matched once a read has found its end. What it holds (half
    /// a line, a trace) stays unread behind its checkpoint, as at a shutdown: matched again,
    /// or after a restart, it is read on from there.
    pub(super) fn let_go_of_unmatched(&mut self, key: FileKey) {
        let Some(mut t) = self.files.remove(&key) else {
            return;
        };
        self.out.advance(key, t.safe_offset());
        t.joiner = None;
        self.stop_following(key, &t.real);
        self.shared.descriptors.set_reader(self.files.len());
        tracing::info!(path = %t.path.display(), at = t.safe_offset(), "no longer matched by input.include/exclude: stopped following it");
    }

    fn stop_following(&mut self, key: FileKey, real: &std::path::Path) {
        lock(&self.shared.followed).remove(&key);
        if self.by_real.get(real) == Some(&key) {
            self.by_real.remove(real);
            self.shared.unwatch(real);
        }
    }
}

impl Discoverer {
    /// New globs: the next scan (at once) opens files they now match. Followed files they no
    /// longer match, still at their path, are read to where they end and let go with their
    /// checkpoint kept; one gone meanwhile is left to the scan, as a rotation.
    pub(super) fn reconfigure(&mut self, new: &config::Config) -> bool {
        if self.cfg == new.input {
            return false;
        }
        self.globs = Discovery::new(&new.input.include, &new.input.exclude);
        self.cfg = new.input.clone();
        let matched: HashSet<PathBuf> = self.globs.scan().into_iter().collect();
        let unmatched: Vec<PathBuf> = self
            .by_path
            .keys()
            .filter(|p| !matched.contains(*p) && p.exists())
            .cloned()
            .collect();
        for path in unmatched {
            if let Some(key) = self.by_path.remove(&path) {
                self.pending.push_back(Handoff::Unmatched(key));
            }
        }
        true
    }
}
