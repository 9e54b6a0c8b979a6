//! Observability: the agent's own metrics and its HTTP endpoints.
//!
//! Owns the Prometheus registry (every metric the other stages update), and the server for
//! `/metrics` (Prometheus text format), `/health` (liveness) and `/ready` (readiness). Metrics
//! are updated in place by the stages; nothing here reads files or talks to Elasticsearch.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub type Labels = [(&'static str, &'static str); 1];

/// Every metric the agent exports. Labels are low-cardinality by design: never a pod or a file.
pub struct Metrics {
    registry: Registry,
    pub lines_read: Counter,
    pub bytes_read: Counter,
    pub files_watched: Gauge,
    pub read_errors: Counter,
    pub truncations: Counter,
    /// Records by decode outcome (`ok` counts every record; the others are flags on some).
    pub records: Family<Labels, Counter>,
    pub json_failures: Counter,
    /// Documents by what Elasticsearch made of them.
    pub documents: Family<Labels, Counter>,
    /// Dead-lettered documents by the cluster's reason (its error type: a bounded set).
    pub dead_letters: Family<Vec<(&'static str, String)>, Counter>,
    /// Bulk requests by HTTP status class, or `error` when no response came.
    pub bulk_requests: Family<Labels, Counter>,
    pub bulk_duration: Histogram,
    /// From a record entering the buffer to its batch being acknowledged.
    pub delivery_latency: Histogram,
    pub buffer_bytes: Gauge,
    pub buffer_records: Gauge,
    pub buffer_max_bytes: Gauge,
    pub buffer_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Records deleted unsent by `overflow_action = "drop_oldest_chunk"`.
    pub buffer_dropped: Counter,
    /// Damage found in the buffer: `torn_write` (cut off at start-up), `corrupt_record` (skipped).
    pub buffer_damage: Family<Labels, Counter>,
    pub buffer_write_errors: Counter,
    pub checkpoint_errors: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("logferry");
        let m = Metrics {
            lines_read: Counter::default(),
            bytes_read: Counter::default(),
            files_watched: Gauge::default(),
            read_errors: Counter::default(),
            truncations: Counter::default(),
            records: Family::default(),
            json_failures: Counter::default(),
            documents: Family::default(),
            dead_letters: Family::default(),
            bulk_requests: Family::default(),
            bulk_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            delivery_latency: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            buffer_bytes: Gauge::default(),
            buffer_records: Gauge::default(),
            buffer_max_bytes: Gauge::default(),
            buffer_oldest_age: Gauge::default(),
            buffer_dropped: Counter::default(),
            buffer_damage: Family::default(),
            buffer_write_errors: Counter::default(),
            checkpoint_errors: Counter::default(),
            registry: Registry::default(),
        };
        r.register(
            "input_lines",
            "Physical lines read from log files",
            m.lines_read.clone(),
        );
        r.register(
            "input_bytes",
            "Bytes read from log files",
            m.bytes_read.clone(),
        );
        r.register(
            "files_watched",
            "Log files currently followed",
            m.files_watched.clone(),
        );
        r.register(
            "input_read_errors",
            "Failed opens and reads of log files",
            m.read_errors.clone(),
        );
        r.register(
            "input_truncations",
            "Log files found truncated (copytruncate)",
            m.truncations.clone(),
        );
        r.register("records", "Records decoded, by outcome", m.records.clone());
        r.register(
            "json_parse_failures",
            "Messages that looked like JSON objects but did not parse",
            m.json_failures.clone(),
        );
        r.register(
            "documents",
            "Documents by Elasticsearch outcome",
            m.documents.clone(),
        );
        r.register(
            "dead_letters",
            "Documents written to the dead-letter store, by reason",
            m.dead_letters.clone(),
        );
        r.register(
            "bulk_requests",
            "Bulk requests by HTTP status class",
            m.bulk_requests.clone(),
        );
        r.register(
            "bulk_request_duration_seconds",
            "Bulk request latency",
            m.bulk_duration.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "From a record entering the buffer to Elasticsearch acknowledging it",
            m.delivery_latency.clone(),
        );
        r.register(
            "buffer_bytes",
            "Size of the buffer's segment files",
            m.buffer_bytes.clone(),
        );
        r.register(
            "buffer_max_bytes",
            "The buffer's size limit (buffer.max_size)",
            m.buffer_max_bytes.clone(),
        );
        r.register(
            "buffer_records",
            "Records buffered and not yet acknowledged",
            m.buffer_records.clone(),
        );
        r.register(
            "buffer_oldest_record_age_seconds",
            "Age of the oldest record not yet acknowledged",
            m.buffer_oldest_age.clone(),
        );
        r.register(
            "buffer_dropped_records",
            "Records deleted unsent because the buffer was full (drop_oldest_chunk)",
            m.buffer_dropped.clone(),
        );
        r.register(
            "buffer_damage",
            "Damage found in buffer segments, by kind (torn_write, corrupt_record)",
            m.buffer_damage.clone(),
        );
        r.register(
            "buffer_write_errors",
            "Failed writes to the buffer (a full disk, usually)",
            m.buffer_write_errors.clone(),
        );
        r.register(
            "checkpoint_write_errors",
            "Failed checkpoint writes",
            m.checkpoint_errors.clone(),
        );
        r.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics { registry: r, ..m }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Formatting into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What `/health` and `/ready` report on.
pub struct Status {
    pub metrics: Arc<Metrics>,
    pub tailer: Arc<crate::tail::TailerState>,
    pub sink: Arc<crate::sink::SinkState>,
    pub buffer: Arc<crate::buffer::Buffer>,
}

/// Above this share of `max_size`, the buffer check says `degraded`.
const BUFFER_WARN: f64 = 0.8;

/// (status, detail) of the buffer: unhealthy once it cannot be trusted, degraded while it
/// cannot be written or is nearly full.
fn buffer_check(s: &crate::buffer::Stats) -> (&'static str, String) {
    if let Some(f) = &s.fatal {
        return ("unhealthy", f.clone());
    }
    if let Some(p) = &s.problem {
        return ("degraded", p.clone());
    }
    let used = s.bytes as f64 / s.max_size.max(1) as f64;
    let detail = format!("{} records, {} of {} bytes", s.records, s.bytes, s.max_size);
    if used > BUFFER_WARN {
        (
            "degraded",
            format!("over {:.0}% full: {detail}", BUFFER_WARN * 100.0),
        )
    } else {
        ("healthy", detail)
    }
}

/// Serves the endpoints until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, status: Arc<Status>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: wait instead of spinning.
                tracing::warn!(error = %e, "api: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = status.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let status = status.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&req, &status)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

fn route(req: &Request<hyper::body::Incoming>, status: &Status) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => response(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            status.metrics.render(),
        ),
        "/health" => {
            let es = status.sink.describe();
            let es = (if es.0 { "healthy" } else { "degraded" }, es.1);
            let buffer = buffer_check(&status.buffer.stats());
            let overall = [es.0, buffer.0]
                .into_iter()
                .max_by_key(|s| match *s {
                    "unhealthy" => 2,
                    "degraded" => 1,
                    _ => 0,
                })
                .unwrap_or("healthy");
            let body = serde_json::json!({
                "status": overall,
                "checks": {
                    "elasticsearch": {"status": es.0, "detail": es.1},
                    "buffer": {"status": buffer.0, "detail": buffer.1},
                },
            });
            let code = if overall == "unhealthy" {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            response(code, "application/json", body.to_string())
        }
        "/ready" => {
            let ready = status.tailer.ready.load(Ordering::Relaxed);
            let body = serde_json::json!({
                "status": if ready {"healthy"} else {"unhealthy"},
                "checks": {"tailer": {"status": if ready {"healthy"} else {"unhealthy"},
                           "detail": if ready {"first discovery pass done"} else {"discovering files"}}},
            });
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            response(code, "application/json", body.to_string())
        }
        _ => response(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn response(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
