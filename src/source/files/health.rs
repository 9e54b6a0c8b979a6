//! The tailer's own check: alive while its heartbeat moves, degraded while files wait for a
//! descriptor; ready once the first discovery pass is done.

use super::TailerState;
use crate::metrics::Metrics;
use crate::observe::health::{Check, Level};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
