//! `/health` and `/ready`: one check per component, each `healthy`, `degraded` (working, but
//! something needs attention) or `unhealthy` (not working); the worst one is the overall status.
//!
//! Each component owns its check (it implements [`Check`] next to the state it judges); this
//! module only collects them, so it knows none of the stages.
//!
//! Liveness (`/health`) answers 503 only when restarting the agent would help: the tailer or
//! the shipping has stopped making progress while there is work, or the buffer can no longer be
//! trusted. A cluster that refuses is `degraded`: a restart would not fix it. Readiness
//! (`/ready`) is 200 once the config is loaded (the agent would not be running otherwise) and
//! every check that takes part in readiness says healthy (the first discovery pass is done, the
//! buffer is writable).
//!
//! Stalls are judged on the monotonic clock ([`crate::vocab::clock`]): the tailer's heartbeat
//! and the shippers' deadlines are monotonic readings, and so is "now" here. An NTP step either
//! way therefore neither restarts a working agent nor hides a stalled one. Checks take "now" as
//! an argument, so they are tested by feeding times.

use crate::metrics::Metrics;
use crate::vocab::clock;
use std::sync::Arc;

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

/// A component's report on itself.
pub trait Check: Send + Sync {
    /// Its name under `checks` in `/health` and `/ready`.
    fn name(&self) -> &'static str;
    /// Liveness as of `now`, a reading of [`clock::now_ms`].
    fn health(&self, now: u64) -> (Level, String);
    /// Readiness, for the components `/ready` waits for.
    fn ready(&self) -> Option<(Level, String)> {
        None
    }
}

/// A check whose answer does not change: a component that is not enabled, say.
pub struct Fixed {
    pub name: &'static str,
    pub level: Level,
    pub detail: &'static str,
}

impl Check for Fixed {
    fn name(&self) -> &'static str {
        self.name
    }

    fn health(&self, _now: u64) -> (Level, String) {
        (self.level, self.detail.into())
    }
}

/// What the endpoints report on.
pub struct Status {
    pub metrics: Arc<Metrics>,
    pub checks: Vec<Arc<dyn Check>>,
    /// Brings the gauges nothing updates by itself (the buffer's) up to date before a scrape.
    pub refresh: Option<Box<dyn Fn() + Send + Sync>>,
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

    /// The check called `name`: (name, level, detail).
    pub fn find(&self, name: &str) -> Option<&(&'static str, Level, String)> {
        self.checks.iter().find(|c| c.0 == name)
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
    pub fn health_at(&self, now: u64) -> Report {
        Report::new(
            self.checks
                .iter()
                .map(|c| {
                    let (level, detail) = c.health(now);
                    (c.name(), level, detail)
                })
                .collect(),
        )
    }

    pub fn ready(&self) -> Report {
        let mut checks = vec![("config", Level::Healthy, "loaded".to_owned())];
        checks.extend(self.checks.iter().filter_map(|c| {
            let (level, detail) = c.ready()?;
            Some((c.name(), level, detail))
        }));
        Report::new(checks)
    }
}
