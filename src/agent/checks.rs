//! The health checks the agent reports, one per component, each owned by its component and
//! collected here for the endpoints (see [`crate::observe::health`]).

use crate::buffer::Buffer;
use crate::kube::cache::Cache;
use crate::metrics::Metrics;
use crate::observe::health::{Check, Fixed, Level};
use crate::sink::{ShippingCheck, SinkState};
use crate::source::files::{TailerCheck, TailerState};
use std::sync::Arc;
use std::time::Duration;

/// A tailer without a sign of life for this long is stalled, and `/health` says unhealthy.
/// Generous: a pass over many busy files, or a slow disk, must not get the agent restarted.
const TAILER_STALL: Duration = Duration::from_secs(120);
/// How far past its promised next attempt shipping may be, with records waiting, before
/// `/health` calls it stalled.
const SHIPPING_GRACE: Duration = Duration::from_secs(60);

/// The components that report on themselves.
pub struct Parts {
    pub metrics: Arc<Metrics>,
    pub tailer: Arc<TailerState>,
    pub sink: Arc<SinkState>,
    pub buffer: Arc<Buffer>,
    /// Pod metadata, when `[kubernetes]` is enabled.
    pub kube: Option<Arc<Cache>>,
    /// Index templates and lifecycle policies; `None` when records go to Kafka.
    pub setup: Option<Arc<dyn Check>>,
    /// Records go to Kafka, not Elasticsearch.
    pub kafka: bool,
    /// Whether the Kafka inputs consume, when there are any.
    pub consuming: Option<Arc<dyn Check>>,
    /// The last config reload's trouble.
    pub config: Arc<super::reload::ConfigState>,
}

/// Every check, in the order `/health` lists them.
pub fn all(p: Parts) -> Vec<Arc<dyn Check>> {
    let kube: Arc<dyn Check> = match p.kube {
        Some(cache) => cache,
        None => Arc::new(Fixed {
            name: "kubernetes",
            level: Level::Healthy,
            detail: "not enabled: pod identity comes from file paths",
        }),
    };
    let mut checks: Vec<Arc<dyn Check>> = vec![
        Arc::new(TailerCheck {
            state: p.tailer,
            metrics: p.metrics,
            stall: TAILER_STALL,
        }),
        Arc::new(ShippingCheck {
            name: if p.kafka { "kafka" } else { "elasticsearch" },
            in_ready: p.kafka,
            sink: p.sink,
            buffer: p.buffer.clone(),
            grace: SHIPPING_GRACE,
        }),
        p.buffer,
        kube,
        p.setup.unwrap_or_else(|| {
            Arc::new(Fixed {
                name: "setup",
                level: Level::Healthy,
                detail: "not run: records go to Kafka (the aggregator sets Elasticsearch up)",
            })
        }),
        p.config,
    ];
    checks.extend(p.consuming);
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{Appender, Chunk, Options};
    use crate::config::OverflowAction;
    use crate::observe::Status;
    use crate::observe::health::{Level, Report};
    use crate::sink::elasticsearch::setup::Setup;
    use crate::vocab::clock;
    use std::sync::atomic::Ordering;

    /// The tailer and the sink state, for the tests to move, and the status built from them.
    struct Rig {
        tailer: Arc<TailerState>,
        sink: Arc<SinkState>,
        buffer: Arc<Buffer>,
        status: Status,
    }

    impl std::ops::Deref for Rig {
        type Target = Status;
        fn deref(&self) -> &Status {
            &self.status
        }
    }

    fn status(dir: &std::path::Path) -> Rig {
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
        let (sink, buffer) = (Arc::new(SinkState::default()), Arc::new(buffer));
        let cfg = crate::config::Config::default();
        let connector =
            Arc::new(crate::sink::elasticsearch::Connector::new(&cfg.elasticsearch).unwrap());
        let checks = all(Parts {
            metrics: metrics.clone(),
            tailer: tailer.clone(),
            sink: sink.clone(),
            buffer: buffer.clone(),
            kube: None,
            setup: Some(Setup::new(&cfg, connector, metrics.clone())),
            kafka: false,
            consuming: None,
            config: Default::default(),
        });
        Rig {
            tailer,
            sink,
            buffer,
            status: Status {
                metrics,
                checks,
                refresh: None,
            },
        }
    }

    fn check<'a>(r: &'a Report, name: &str) -> &'a (&'static str, Level, String) {
        r.find(name).unwrap()
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
