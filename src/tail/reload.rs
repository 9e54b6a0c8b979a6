//! A config reload, as the reading and discovery threads take it: between two read passes, so
//! that no line is read twice or skipped. Each thread compares the sections it uses with the
//! ones it runs with and rebuilds only what changed, so a reload that changes nothing (a
//! `--watch-config` check, a SIGHUP out of habit) changes nothing: throttle buckets keep their
//! tokens, joiners keep the trace they hold.

use super::discover::Discoverer;
use super::globs::Discovery;
use super::joining::Joining;
use super::throttle::Throttle;
use super::{Tailer, config};
use std::sync::Arc;
use tokio::sync::watch;

/// Where a stage learns of a new config: the agent's reloader publishes each one it accepted.
pub type Reloads = watch::Receiver<Arc<config::Config>>;

/// The newest config, if one was published since the last look.
pub(super) fn newer(reloads: &mut Option<Reloads>) -> Option<Arc<config::Config>> {
    let r = reloads.as_mut()?;
    // An error: the reloader is gone (shutdown), and nothing new will come.
    if !r.has_changed().unwrap_or(false) {
        return None;
    }
    Some(r.borrow_and_update().clone())
}

impl Tailer {
    /// Takes a new config at a pass boundary. Whatever a joiner holds when its rules change is
    /// handed on first, as complete records; records already encoded stay as they were.
    pub(super) fn reconfigure(&mut self, new: Arc<config::Config>) {
        let old = std::mem::replace(&mut self.running, new.clone());
        self.cfg = new.input.clone();
        self.out.wait_for_metadata = new.kubernetes.wait_for_metadata.0;
        self.out.max_physical_line = new.input.max_line_bytes.as_usize() * 2 + 4096;
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
                let before = t.safe_offset();
                t.finish_joining(before, &mut self.out);
                t.joiner = None;
                self.joining.apply(t, &mut self.out);
            }
        }
        self.out.reconfigure(&new);
    }
}

impl Discoverer {
    /// New globs: the next scan (at once) opens files they now match; followed files they no
    /// longer match are read to their end and let go, like rotated ones.
    pub(super) fn reconfigure(&mut self, new: &config::Config) -> bool {
        if self.cfg == new.input {
            return false;
        }
        self.globs = Discovery::new(&new.input.include, &new.input.exclude);
        self.cfg = new.input.clone();
        true
    }
}
