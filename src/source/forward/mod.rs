//! `[[input.forward]]`: Fluentd's forward protocol, for an aggregator that Fluent Bit and Fluentd
//! forwarders and fluent-logger clients send to.
//!
//! Each connection reads frames ([`protocol`]: Message, Forward, PackedForward and
//! CompressedPackedForward), turns their entries into records ([`entry`]) and hands them to a
//! [`Deliver`] it is given (the agent: encode, redact, route, append to the disk buffer). A
//! frame that asked for an ack (`option.chunk`) gets `{"ack": chunk}` only once its entries
//! are durable in the buffer: a forwarder that gets none sends the chunk again, and since each
//! entry's id comes from the chunk id and its index, the copy is a 409 in Elasticsearch, not a
//! duplicate.
//!
//! One connection reads one frame at a time and hands it on before it reads the next, so a
//! full buffer (`overflow_action = "block"`) stops it reading: the forwarder sees TCP
//! back-pressure, and nothing is dropped. What a peer can cost is bounded: `max_connections`,
//! `chunk_size_limit` per frame (and per unpacked gzip frame), `max_bytes_in_flight` across
//! connections, and `stall_timeout` for a peer that stops half-way. Garbage, a length that
//! claims a gigabyte, or a stall closes that one connection, counted in
//! `logferry_forward_refused_total`.
//!
//! With `[input.forward.tls]`, every connection starts with a TLS handshake ([`tls`]), in its
//! own task and within `stall_timeout`; a plaintext peer fails it (`tls`). With
//! `shared_key_file`, every connection (inside TLS, when there is TLS) then makes Fluentd's
//! secure-forward handshake ([`handshake`]). Not built: user authentication in the handshake,
//! and UDP heartbeats; Fluentd's `heartbeat_type transport` (its default) needs none.

mod connection;
pub mod entry;
pub mod handshake;
pub mod msgpack;
pub mod protocol;
mod tls;

pub use entry::{Entry, Ids};

use crate::config;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Resolves once the entries handed on are durable; dropped unresolved if they never are.
pub type Durable = tokio::sync::oneshot::Receiver<()>;

/// Where a listener's entries go.
pub trait Deliver: Send + Sync + 'static {
    /// Takes `entries` (blocking while the buffer is full), with the `positions` their source
    /// reached (see `buffer::Positions`; empty for a source that does not resume); the answer
    /// resolves once they are durable. `Err` when they were not taken (the agent is stopping).
    fn deliver(&self, entries: Vec<Entry>, positions: Vec<u8>) -> Result<Durable, Closed>;
}

/// The agent is stopping: the entries were not taken.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the agent is stopping")]
pub struct Closed;

/// A bound forward listener.
pub struct Listener {
    listener: TcpListener,
    cfg: config::Forward,
    key: Option<handshake::Key>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Reads the shared key and the TLS files (if any) and binds `cfg.listen`: an unreadable file
/// or an address in use is an error at start, not a listener open to anyone or a silent
/// second agent.
pub async fn bind(cfg: &config::Forward) -> anyhow::Result<Listener> {
    let tls = match &cfg.tls {
        None => None,
        Some(t) => {
            let server = t
                .server_config()
                .map_err(|e| anyhow::anyhow!("tls.{}: {e}", e.key()))?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
        }
    };
    let key = match &cfg.shared_key_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read shared_key_file {}: {e}", path.display())
            })?;
            let shared = text.trim().as_bytes().to_vec();
            if shared.is_empty() {
                anyhow::bail!("shared_key_file {} is empty", path.display());
            }
            let hostname = cfg.self_hostname.clone().unwrap_or_else(|| {
                std::env::var("HOSTNAME")
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "logferry".into())
            });
            Some(handshake::Key { shared, hostname })
        }
    };
    Ok(Listener {
        listener: TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?,
        cfg: cfg.clone(),
        key,
        tls,
    })
}

/// What every connection of one listener shares.
struct Shared {
    cfg: config::Forward,
    /// The secure-forward handshake's key, when `shared_key_file` is set.
    key: Option<handshake::Key>,
    /// The TLS handshake's config, when `[input.forward.tls]` is set.
    tls: Option<tokio_rustls::TlsAcceptor>,
    out: Arc<dyn Deliver>,
    metrics: Arc<Metrics>,
    /// `max_bytes_in_flight`, in KiB.
    budget: Semaphore,
    /// Tells connections apart for the ids of frames without a chunk id.
    seed: u128,
    accepted: AtomicU64,
    /// When a refusal was last logged (ms on the monotonic clock): one line a minute, not one
    /// per connection of a peer that sends garbage in a loop.
    last_warning: AtomicU64,
}

impl Listener {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts and serves connections until the task is dropped (which drops them all).
    pub async fn serve(self, out: Arc<dyn Deliver>, metrics: Arc<Metrics>) {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let port = self.cfg.listen.port();
        let shared = Arc::new(Shared {
            budget: Semaphore::new(self.cfg.max_bytes_in_flight.as_usize() / 1024),
            seed: xxhash_rust::xxh3::xxh3_128(
                format!("{started}/{}/{port}", std::process::id()).as_bytes(),
            ),
            cfg: self.cfg,
            key: self.key,
            tls: self.tls,
            out,
            metrics,
            accepted: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
        });
        let slots = Arc::new(Semaphore::new(shared.cfg.max_connections));
        let mut connections = tokio::task::JoinSet::new();
        loop {
            // Reap finished connections so the set does not grow with every one ever served.
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, usually: wait rather than spin.
                    tracing::warn!(error = %e, "forward: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                shared.refused(peer, "too_many_connections", "max_connections are open");
                continue;
            };
            let shared = shared.clone();
            connections.spawn(async move {
                shared.metrics.forward_connections.inc();
                connection::serve(stream, peer, &shared).await;
                shared.metrics.forward_connections.dec();
                drop(slot);
            });
        }
    }
}

impl Shared {
    fn refused(&self, peer: SocketAddr, reason: &'static str, why: &str) {
        self.metrics
            .forward_refused
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
        let now = crate::vocab::clock::now_ms();
        let last = self.last_warning.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= 60_000 {
            self.last_warning.store(now.max(1), Ordering::Relaxed);
            tracing::warn!(%peer, reason, why, "forward: closed a connection (logged once a minute; all are counted in logferry_forward_refused_total)");
        } else {
            tracing::debug!(%peer, reason, why, "forward: closed a connection");
        }
    }
}

#[cfg(test)]
mod tests;
