//! `/health` and `/ready`: one check per component, each `healthy`, `degraded` (working, but
//! something needs attention) or `unhealthy` (not working); the worst one is the overall status.
//!
//! Liveness (`/health`) answers 503 only when restarting the agent would help: the tailer or
//! the shipping has stopped making progress while there is work, or the buffer can no longer be
//! trusted. A cluster that refuses is `degraded`: a restart would not fix it. Readiness
//! (`/ready`) is 200 once the config is loaded (the agent would not be running otherwise), the
//! first discovery pass is done and the buffer is writable.
//!
//! Stalls are judged on [`crate::clock`], the monotonic clock: the tailer's heartbeat and the
//! shippers' deadlines are monotonic readings, and so is "now" here. An NTP step either way
//! therefore neither restarts a working agent nor hides a stalled one. The checks themselves
//! take "now" as an argument, so they are tested by feeding times.

use crate::buffer::{Buffer, Stats};
use crate::metrics::Metrics;
use crate::sink::SinkState;
use crate::tail::TailerState;
use crate::vocab::clock;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Above this share of `max_size`, the buffer check says `degraded`.
const BUFFER_WARN: f64 = 0.8;

/// What the endpoints report on.
pub struct Status {
    pub metrics: Arc<Metrics>,
    pub tailer: Arc<TailerState>,
    pub sink: Arc<SinkState>,
    pub buffer: Arc<Buffer>,
    /// Pod metadata, when `[kubernetes]` is enabled.
    pub kube: Option<Arc<crate::kube::cache::Cache>>,
    /// The tailer showing no sign of life for this long is a stall.
    pub tailer_stall: Duration,
    /// How long past its own deadline shipping may be, while records wait, before it counts as
    /// stalled.
    pub shipping_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Degraded => "degraded",
            Level::Unhealthy => "unhealthy",
        }
    }
}

pub struct Report {
    pub status: Level,
    checks: Vec<(&'static str, Level, String)>,
}

impl Report {
    fn new(checks: Vec<(&'static str, Level, String)>) -> Report {
        let status = checks.iter().map(|c| c.1).max().unwrap_or(Level::Healthy);
        Report { status, checks }
    }

    pub fn to_json(&self) -> String {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks
            .iter()
            .map(|(name, level, detail)| {
                (
                    (*name).to_owned(),
                    serde_json::json!({"status": level.as_str(), "detail": detail}),
                )
            })
            .collect();
        serde_json::json!({"status": self.status.as_str(), "checks": checks}).to_string()
    }
}

impl Status {
    pub fn health(&self) -> Report {
        self.health_at(clock::now_ms())
    }

    /// [`Status::health`] as of `now`, a reading of [`clock::now_ms`].
    fn health_at(&self, now: u64) -> Report {
        let stats = self.buffer.stats();
        let tailer = self.tailer_check(now);
        let es = self.elasticsearch_check(now, &stats);
        let buffer = buffer_check(&stats);
        Report::new(vec![
            ("tailer", tailer.0, tailer.1),
            ("elasticsearch", es.0, es.1),
            ("buffer", buffer.0, buffer.1),
            match &self.kube {
                None => (
                    "kubernetes",
                    Level::Healthy,
                    "not enabled: pod identity comes from file paths".into(),
                ),
                Some(cache) => match cache.describe() {
                    (true, detail) => ("kubernetes", Level::Healthy, detail),
                    (false, detail) => (
                        "kubernetes",
                        Level::Degraded,
                        format!(
                            "{detail}; lines are shipped with what their file path says, flagged partial"
                        ),
                    ),
                },
            },
        ])
    }

    pub fn ready(&self) -> Report {
        let stats = self.buffer.stats();
        let discovered = self.tailer.ready.load(Ordering::Relaxed);
        let buffer = match (&stats.fatal, &stats.problem) {
            (Some(f), _) => (Level::Unhealthy, f.clone()),
            (None, Some(p)) => (Level::Unhealthy, p.clone()),
            (None, None) => (Level::Healthy, "writable".into()),
        };
        Report::new(vec![
            ("config", Level::Healthy, "loaded".into()),
            (
                "tailer",
                if discovered {
                    Level::Healthy
                } else {
                    Level::Unhealthy
                },
                if discovered {
                    "first discovery pass done".into()
                } else {
                    "discovering files".into()
                },
            ),
            ("buffer", buffer.0, buffer.1),
        ])
    }

    /// `now` and the heartbeat are both monotonic readings ([`clock::now_ms`]).
    fn tailer_check(&self, now: u64) -> (Level, String) {
        let idle = now.saturating_sub(self.tailer.heartbeat_ms.load(Ordering::Relaxed));
        if u128::from(idle) > self.tailer_stall.as_millis() {
            return (
                Level::Unhealthy,
                format!("stalled: no progress for {} s", idle / 1000),
            );
        }
        let files = self.metrics.files_watched.get();
        let lag = self.metrics.input_lag_bytes.get();
        let starved = self.tailer.waiting_for_descriptor();
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

    /// `now` and the shippers' deadline are both monotonic readings ([`clock::now_ms`]).
    fn elasticsearch_check(&self, now: u64, stats: &Stats) -> (Level, String) {
        let late = now.saturating_sub(self.sink.deadline_ms());
        if stats.records > 0 && u128::from(late) > self.shipping_grace.as_millis() {
            return (
                Level::Unhealthy,
                format!(
                    "shipping stalled: {} records wait and no request has been made for {} s past its time",
                    stats.records,
                    late / 1000
                ),
            );
        }
        match self.sink.describe() {
            (true, detail) => (Level::Healthy, detail),
            (false, detail) => (Level::Degraded, detail),
        }
    }
}

/// Unhealthy once the buffer cannot be trusted; degraded while it cannot be written or is
/// nearly full.
fn buffer_check(s: &Stats) -> (Level, String) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{Appender, Chunk, Options};
    use crate::config::OverflowAction;

    fn status(dir: &std::path::Path) -> Status {
        let metrics = Arc::new(Metrics::new());
        let buffer = Buffer::open(
            Options {
                dir: dir.to_owned(),
                max_size: 1 << 20,
                segment_size: 64 << 10,
                overflow: OverflowAction::Block,
            },
            metrics.clone(),
        )
        .unwrap();
        let tailer = Arc::new(TailerState::default());
        tailer
            .heartbeat_ms
            .store(clock::now_ms(), Ordering::Relaxed);
        Status {
            metrics,
            tailer,
            sink: Arc::new(SinkState::default()),
            buffer: Arc::new(buffer),
            kube: None,
            tailer_stall: Duration::from_secs(120),
            shipping_grace: Duration::from_secs(60),
        }
    }

    fn check<'a>(r: &'a Report, name: &str) -> &'a (&'static str, Level, String) {
        r.checks.iter().find(|c| c.0 == name).unwrap()
    }

    #[test]
    fn a_silent_tailer_is_unhealthy_and_a_busy_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = status(dir.path());
        assert_eq!(s.health().status, Level::Healthy);
        let now = clock::now_ms() + 121_000;
        let r = s.health_at(now);
        assert_eq!(r.status, Level::Unhealthy);
        assert!(check(&r, "tailer").2.contains("stalled"), "{}", r.to_json());
    }

    #[test]
    fn shipping_is_stalled_only_when_records_wait_past_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let s = status(dir.path());
        // Nothing waits: an old deadline means an idle shipper, not a stalled one.
        assert_eq!(check(&s.health(), "elasticsearch").1, Level::Healthy);
        let mut c = Chunk::new();
        c.push_item(b"{\"create\":{}}\n{}\n");
        Appender::new(s.buffer.clone())
            .append(&mut c, || false)
            .unwrap();
        // No promise was ever made (deadline 0, the clock's start): a minute past the grace.
        let r = s.health_at(clock::now_ms() + 61_000);
        assert_eq!(
            check(&r, "elasticsearch").1,
            Level::Unhealthy,
            "{}",
            r.to_json()
        );
        assert_eq!(r.status, Level::Unhealthy);
        // A shipper in a backoff wait has promised to come back: not stalled.
        s.sink.promise(Duration::from_secs(30));
        assert_eq!(check(&s.health(), "elasticsearch").1, Level::Healthy);
    }

    /// The checks see monotonic readings only, so what the wall clock does between two of them
    /// cannot matter: these times are what the tailer and the shippers would have stored, and
    /// the wall clock is never consulted.
    #[test]
    fn an_ntp_step_neither_restarts_the_agent_nor_hides_a_stall() {
        let dir = tempfile::tempdir().unwrap();
        let s = status(dir.path());
        let beat = 5_000;
        s.tailer.heartbeat_ms.store(beat, Ordering::Relaxed);
        // The wall clock stepped an hour forward after the beat; one monotonic second passed.
        let r = s.health_at(beat + 1_000);
        assert_eq!(check(&r, "tailer").1, Level::Healthy, "{}", r.to_json());
        // The wall clock stepped an hour back while the tailer sat still for 121 s.
        let r = s.health_at(beat + 121_000);
        assert_eq!(check(&r, "tailer").1, Level::Unhealthy, "{}", r.to_json());
        assert!(check(&r, "tailer").2.contains("121 s"), "{}", r.to_json());
        // The same for shipping: records wait and no promise is kept for 61 s past the grace.
        let mut c = Chunk::new();
        c.push_item(b"{\"create\":{}}\n{}\n");
        Appender::new(s.buffer.clone())
            .append(&mut c, || false)
            .unwrap();
        s.tailer.heartbeat_ms.store(200_000, Ordering::Relaxed);
        let r = s.health_at(200_000);
        assert_eq!(
            check(&r, "elasticsearch").1,
            Level::Unhealthy,
            "{}",
            r.to_json()
        );
        assert_eq!(check(&r, "tailer").1, Level::Healthy, "{}", r.to_json());
        // A heartbeat "from the future" (stored just before the reading was taken) is not idle.
        s.tailer.heartbeat_ms.store(300_001, Ordering::Relaxed);
        assert_eq!(check(&s.health_at(300_000), "tailer").1, Level::Healthy);
    }
}
