//! Observability: the agent's HTTP endpoints.
//!
//! Serves `/metrics` (the [`Metrics`](crate::metrics::Metrics) every stage updates in place), `/health` and `/ready` (the
//! checks each component reports on itself, collected in [`health`]). Nothing here reads log
//! files or talks to Elasticsearch, and nothing here knows the stages: they report upwards.

pub mod health;

pub use health::Status;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a client has to send a request's head whenever the server waits for one: on a new
/// connection and between the requests of a kept-alive one (hyper starts the timer as soon as
/// it waits for a head), so it is the idle timeout too. A scraper sends its few hundred bytes
/// at once; a client that dribbles its headers (slowloris) or only holds the socket gives the
/// descriptor back after this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest one connection is served, however busy. A client that keeps sending requests
/// slowly, or reads its responses slowly, still gives its descriptor back; the response in
/// flight is finished first (within [`SHUTDOWN_GRACE`]). Prometheus just connects again.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// How long a connection past its lifetime may take to finish the response in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Connections served at once. The descriptors belong to the tailer first (every followed file
/// holds one), so the API's share is small and fixed: a scraper, a probe or two, and a person
/// with curl need a handful. Connections over the cap are accepted and closed at once with a
/// 503, rather than left unaccepted: those would wait in the kernel's backlog behind a flood,
/// so that the next probe hangs until its own timeout instead of hearing "busy" at once, and
/// the flood's sockets would be served, one cap-full at a time, long after they were opened.
const MAX_CONNECTIONS: usize = 64;

/// What a connection over [`MAX_CONNECTIONS`] hears before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 10\r\n\r\n";

/// Serves the endpoints until the process ends, at most [`MAX_CONNECTIONS`] at a time, each
/// bounded by [`HEADER_READ_TIMEOUT`] and [`CONNECTION_LIFETIME`]: however many sockets a
/// client on the node opens and holds, the agent keeps at most that many descriptors for them.
pub async fn serve(listener: tokio::net::TcpListener, status: Arc<Status>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Said once per episode of refusals, not per refused connection.
    let mut refusing = false;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: wait instead of spinning.
                tracing::warn!(error = %e, "api: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            status.metrics.api_connections_refused.inc();
            if !refusing {
                refusing = true;
                tracing::warn!(
                    max_connections = MAX_CONNECTIONS,
                    "api: too many connections at once; further ones are closed with a 503 until some end (counted in logferry_api_connections_refused_total)"
                );
            }
            // Best effort, never waiting: the socket is closed either way.
            let _ = stream.try_write(BUSY);
            continue;
        };
        if refusing && slots.available_permits() > MAX_CONNECTIONS / 2 {
            refusing = false;
        }
        let status = status.clone();
        tokio::spawn(async move {
            // Held for as long as the connection is served.
            let _slot = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req| {
                let status = status.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&req, &status)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(io, svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

fn route(req: &Request<hyper::body::Incoming>, status: &Status) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let content_type = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            if let Some(refresh) = &status.refresh {
                refresh();
            }
            response(
                StatusCode::OK,
                content_type,
                status.metrics.render(openmetrics),
            )
        }
        "/health" => {
            let report = status.health();
            let code = if report.status == health::Level::Unhealthy {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            response(code, "application/json", report.to_json())
        }
        "/ready" => {
            let report = status.ready();
            let code = if report.status == health::Level::Healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            response(code, "application/json", report.to_json())
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
