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
    /// Bulk requests by HTTP status class, or `error` when no response came.
    pub bulk_requests: Family<Labels, Counter>,
    pub bulk_duration: Histogram,
    pub queue_chunks: Gauge,
    pub queue_bytes: Gauge,
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
            bulk_requests: Family::default(),
            bulk_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            queue_chunks: Gauge::default(),
            queue_bytes: Gauge::default(),
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
            "queue_chunks",
            "Chunks waiting to be shipped",
            m.queue_chunks.clone(),
        );
        r.register(
            "queue_bytes",
            "Bytes waiting to be shipped",
            m.queue_bytes.clone(),
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
            let overall = if es.0 { "healthy" } else { "degraded" };
            let body = serde_json::json!({
                "status": overall,
                "checks": {"elasticsearch": {"status": if es.0 {"healthy"} else {"degraded"}, "detail": es.1}},
            });
            response(StatusCode::OK, "application/json", body.to_string())
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
