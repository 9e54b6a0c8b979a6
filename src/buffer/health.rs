//! The buffer's own check: unhealthy once it cannot be trusted (a failed fsync) or appends have
//! failed for long with nothing to free; degraded while it cannot be written or is nearly full.
//! Ready while writable.

use super::{Buffer, Stats};
use crate::observe::health::{Check, Level};

/// Above this share of `max_size`, the buffer check says `degraded`.
const BUFFER_WARN: f64 = 0.8;

impl Check for Buffer {
    fn name(&self) -> &'static str {
        "buffer"
    }

    fn health(&self, _now: u64) -> (Level, String) {
        judge(&self.stats())
    }

    fn ready(&self) -> Option<(Level, String)> {
        let stats = self.stats();
        Some(match (&stats.fatal, &stats.problem) {
            (Some(f), _) => (Level::Unhealthy, f.clone()),
            (None, Some(p)) => (Level::Unhealthy, p.clone()),
            (None, None) => (Level::Healthy, "writable".into()),
        })
    }
}

fn judge(s: &Stats) -> (Level, String) {
    if let Some(f) = &s.fatal {
        return (Level::Unhealthy, f.clone());
    }
    if let Some(stuck) = &s.stuck {
        return (Level::Unhealthy, stuck.clone());
    }
    if let Some(p) = &s.problem {
        return (Level::Degraded, p.clone());
    }
    let used = s.bytes as f64 / s.max_size.max(1) as f64;
    let detail = format!("{} records, {} of {} bytes", s.records, s.bytes, s.max_size);
    if used > BUFFER_WARN {
        (
            Level::Degraded,
            format!("over {:.0}% full: {detail}", BUFFER_WARN * 100.0),
        )
    } else {
        (Level::Healthy, detail)
    }
}
