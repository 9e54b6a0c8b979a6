//! What the tailer shows of itself ([`TailerState`]) and its check: alive while its heartbeat
//! moves, degraded while files wait for a descriptor; ready once the first discovery pass is
//! done.

use crate::metrics::Metrics;
use crate::observe::health::{Check, Level};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Shared flags the HTTP endpoints read.
#[derive(Default)]
pub struct TailerState {
    /// The first discovery pass has completed.
    pub ready: AtomicBool,
    /// When the tailer last showed it is alive (a `vocab::clock` reading, monotonic): every turn of its loop, every file it
    /// reads, and every wait on a full buffer or disk. `/health` calls it stalled when this
    /// stops moving.
    pub heartbeat_ms: AtomicU64,
    /// New files discovery could not open for lack of a descriptor.
    pub(super) waiting_new: AtomicUsize,
    /// Closed files that grew and could not be reopened for lack of a descriptor.
    pub(super) waiting_parked: AtomicUsize,
    /// Moves whenever lines may have been written that the tailer has not read: inotify
    /// reported writes, or files it cannot see were looked at. Whoever measures what is left
    /// unread (the input lag) need not measure again while it stands still.
    writes: AtomicU64,
}

impl TailerState {
    /// Shows the tailer is alive; also called while it waits for room in the buffer.
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(crate::vocab::clock::now_ms(), Ordering::Relaxed);
    }

    /// See [`TailerState::writes`].
    pub fn saw_writes(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Stands still while no line can have been written unseen: see `writes`.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Files with lines to read that wait for a file descriptor (the budget is spent and no
    /// read-to-the-end file could be closed yet). `/health` says degraded meanwhile.
    pub fn waiting_for_descriptor(&self) -> usize {
        self.waiting_new.load(Ordering::Relaxed) + self.waiting_parked.load(Ordering::Relaxed)
    }
}

pub struct TailerCheck {
    pub state: Arc<TailerState>,
    pub metrics: Arc<Metrics>,
    /// No sign of life for this long is a stall.
    pub stall: Duration,
}

impl Check for TailerCheck {
    fn name(&self) -> &'static str {
        "tailer"
    }

    /// `now` and the heartbeat are both monotonic readings.
    fn health(&self, now: u64) -> (Level, String) {
        let idle = now.saturating_sub(self.state.heartbeat_ms.load(Ordering::Relaxed));
        if u128::from(idle) > self.stall.as_millis() {
            return (
                Level::Unhealthy,
                format!("stalled: no progress for {} s", idle / 1000),
            );
        }
        let files = self.metrics.files_watched.get();
        let lag = self.metrics.input_lag_bytes.get();
        let starved = self.state.waiting_for_descriptor();
        if starved > 0 {
            return (
                Level::Degraded,
                format!(
                    "{starved} files wait for a descriptor; following {files} files, {lag} bytes not read yet"
                ),
            );
        }
        (
            Level::Healthy,
            format!("following {files} files, {lag} bytes not read yet"),
        )
    }

    fn ready(&self) -> Option<(Level, String)> {
        Some(if self.state.ready.load(Ordering::Relaxed) {
            (Level::Healthy, "first discovery pass done".into())
        } else {
            (Level::Unhealthy, "discovering files".into())
        })
    }
}
