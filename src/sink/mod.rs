//! Shipping: batches from the disk buffer into Elasticsearch's `_bulk` API.
//!
//! Owns the HTTP conversation: gzip, host failover, reading every item's result, retry with
//! exponential backoff and full jitter (honouring `Retry-After`) of only the items that failed
//! with a retryable status, splitting a request the cluster found too large (413), and the
//! dead-letter file for items the cluster will never accept. A batch is acknowledged to the
//! [`Buffer`] — which may then delete its records — once every item in it is indexed, a
//! duplicate (409 on `create`: an earlier delivery of the same id), or dead-lettered.

mod body;
mod client;
mod deadletter;
mod encode;
mod hosts;

pub use client::Connector;
pub use deadletter::DeadLetters;
pub use encode::{IndexPattern, ItemEncoder, document_id};
pub use hosts::{Host, HostPool};

use crate::buffer::{Batch, Buffer, now_ms};
use crate::config;
use crate::observe::Metrics;
use backon::BackoffBuilder;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What `/health` shows about the cluster.
#[derive(Default)]
pub struct SinkState {
    /// `None` while shipping works; otherwise the kind of failure, why, and since when.
    problem: Mutex<Option<Problem>>,
    /// By when (Unix ms) a shipper has promised its next sign of life: the end of the request
    /// or of the backoff wait it is in. Shipping that is past it while records wait is stalled.
    deadline_ms: AtomicU64,
    /// Shipping works again after failing: shippers waiting out a backoff try at once, so
    /// their batches do not wait up to retry_max_interval behind ones that already flow.
    recovered: tokio::sync::Notify,
}

impl SinkState {
    /// Shipping works again. Says so once, with how often it failed, if it did not before.
    fn ok(&self) {
        let before = self
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(p) = before {
            tracing::info!(after_s = p.since.elapsed().as_secs(), failed_attempts = p.failures, last_problem = %p.reason, "shipping again");
            self.recovered.notify_waiters();
        }
    }

    /// Shipping fails for `reason`. True when this is news (the first failure, or another
    /// kind of failure than before), so the caller logs it once rather than at every retry.
    fn failing(&self, kind: &'static str, reason: &str) -> bool {
        let mut p = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        let news = p.as_ref().is_none_or(|old| old.kind != kind);
        let since = p.as_ref().map_or_else(Instant::now, |old| old.since);
        let failures = p.as_ref().map_or(0, |old| old.failures) + 1;
        *p = Some(Problem {
            kind,
            reason: reason.to_owned(),
            since,
            failures,
        });
        news
    }

    /// A shipper will show a sign of life within `within`.
    pub(crate) fn promise(&self, within: Duration) {
        self.deadline_ms
            .store(now_ms() + within.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(Ordering::Relaxed)
    }

    /// (working, detail)
    pub fn describe(&self) -> (bool, String) {
        match &*self.problem.lock().unwrap_or_else(PoisonError::into_inner) {
            None => (true, "shipping".into()),
            Some(p) => (false, p.reason.clone()),
        }
    }
}

struct Problem {
    kind: &'static str,
    reason: String,
    since: Instant,
    /// Failed attempts since `since`, said when shipping works again.
    failures: u64,
}

/// How one bulk attempt went, as far as the whole request is concerned.
enum Attempt {
    /// Per-item statuses, in request order.
    Items(Vec<ItemResult>),
    /// The request body is too large for the cluster.
    TooLarge,
    /// Try again later (connection error, timeout, 429, 5xx), after at least this long.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Credentials refused: nothing will get through until they change.
    Unauthorized(String),
    /// The request as a whole was refused (a wrong URL, a proxy in the way): a configuration
    /// problem, not a property of the records, so they wait rather than go to dead letters.
    Refused(String),
}

struct ItemResult {
    status: u16,
    error: Option<Box<RawValue>>,
    error_type: Option<String>,
}

#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<OneItem>,
}

/// A bulk response item, `{"create": {...}}`: the action name is not needed, so the object is
/// read without building a map per item.
struct OneItem(Option<BulkItem>);

impl<'de> Deserialize<'de> for OneItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneItem;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a bulk response item")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<OneItem, A::Error> {
                let item = m
                    .next_entry::<serde::de::IgnoredAny, BulkItem>()?
                    .map(|(_, item)| item);
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(OneItem(item))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ErrorType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Where a delivery goes: the records' own index, or the dead-letter index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Index,
    DeadLetterIndex,
}

/// Fields the agent writes itself, with types it controls: kept as they are in a dead letter,
/// so it can be found by pod and time. Everything else is the application's, and one of those
/// fields is what the cluster refused.
const OWN_FIELDS: [&str; 5] = ["@timestamp", "kubernetes", "docker", "stream", "logferry"];

/// Dead letters as documents for `index`, each under its original id (so a replay is a 409):
/// the agent's own fields, the whole original document as one string, and why it was refused.
fn wrap_dead_letters(items: &[Vec<u8>], refused: &[Refusal<'_>], index: &str) -> Batch {
    let (mut body, mut starts) = (Vec::new(), Vec::new());
    for (r, item) in refused.iter().zip(items) {
        let (status, reason, error) = (r.status, r.reason, r.error);
        let text = String::from_utf8_lossy(item);
        let mut lines = text.splitn(2, '\n');
        let action: serde_json::Value =
            serde_json::from_str(lines.next().unwrap_or("")).unwrap_or_default();
        let original = lines.next().unwrap_or("").trim_end();
        let (target, id) = action
            .as_object()
            .and_then(|a| a.values().next())
            .map(|m| (m["_index"].clone(), m["_id"].clone()))
            .unwrap_or_default();
        let mut doc = serde_json::Map::new();
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(original) {
            for (k, v) in fields {
                if OWN_FIELDS.contains(&k.as_str()) {
                    doc.insert(k, v);
                }
            }
        }
        doc.insert(
            "dead_letter".into(),
            serde_json::json!({
                "reason": reason,
                "status": status,
                "index": target,
                "error": error.map(|e| e.get().to_owned()),
                "document": original,
            }),
        );
        let mut action = serde_json::json!({"create": {"_index": index}});
        if !id.is_null() {
            action["create"]["_id"] = id;
        }
        starts.push(body.len() as u32);
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &action);
        body.push(b'\n');
        let _ = serde_json::to_writer(&mut body, &doc);
        body.push(b'\n');
    }
    Batch::in_memory(body, &starts)
}

/// An item the cluster will never accept, and why.
struct Refusal<'a> {
    item: usize,
    status: u16,
    reason: &'a str,
    error: Option<&'a RawValue>,
}

impl Refusal<'static> {
    fn all(items: &[usize], status: u16, reason: &'static str) -> Vec<Refusal<'static>> {
        items
            .iter()
            .map(|&item| Refusal {
                item,
                status,
                reason,
                error: None,
            })
            .collect()
    }
}

/// What should happen to one item after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkItemOutcome {
    Indexed,
    Duplicate,
    Retry,
    DeadLetter,
}

/// The delivery contract's classification of one item's result.
pub fn classify(status: u16, error_type: Option<&str>) -> BulkItemOutcome {
    match status {
        200 | 201 => BulkItemOutcome::Indexed,
        409 => BulkItemOutcome::Duplicate,
        429 | 500..=599 => BulkItemOutcome::Retry,
        // Write blocks (flood-stage watermark, read-only index) are lifted by operators; the
        // items must wait, not be thrown away. Older clusters answered them with 403.
        _ if matches!(
            error_type,
            Some("cluster_block_exception") | Some("index_closed_exception")
        ) =>
        {
            BulkItemOutcome::Retry
        }
        _ => BulkItemOutcome::DeadLetter,
    }
}

pub struct Shipper {
    /// The HTTP client and credentials, rebuilt when their files change.
    connector: Arc<Connector>,
    /// Where each request goes: round robin over the hosts that answer.
    hosts: Arc<HostPool>,
    gzip: bool,
    cfg: config::Buffer,
    metrics: Arc<Metrics>,
    state: Arc<SinkState>,
    dead: Arc<DeadLetters>,
    dead_letter_index: Option<String>,
    /// The longest a request may take, with some slack: what a shipper promises per attempt.
    patience: Duration,
}

impl Shipper {
    pub fn new(
        cfg: &config::Config,
        connector: Arc<Connector>,
        metrics: Arc<Metrics>,
        state: Arc<SinkState>,
        dead: Arc<DeadLetters>,
    ) -> Shipper {
        let set_aside = hosts::SetAside {
            first: cfg.buffer.retry_wait.0,
            max: cfg.buffer.retry_max_interval.0,
            trial: cfg.elasticsearch.request_timeout.0 + Duration::from_secs(10),
        };
        let hosts = Arc::new(HostPool::new(
            &cfg.elasticsearch.hosts,
            set_aside,
            metrics.clone(),
        ));
        if cfg.elasticsearch.sniff
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let every = cfg.elasticsearch.sniff_interval.0;
            rt.spawn(hosts.clone().sniff_every(connector.clone(), every));
        }
        let patience = cfg.elasticsearch.request_timeout.0 + Duration::from_secs(10);
        // Nothing has been tried yet: the first batch is due within one request's time.
        state.promise(patience);
        Shipper {
            connector,
            hosts,
            gzip: cfg.elasticsearch.compression == config::Compression::Gzip,
            cfg: cfg.buffer.clone(),
            metrics,
            state,
            dead,
            dead_letter_index: cfg.elasticsearch.dead_letter_index.clone(),
            patience,
        }
    }

    /// Ships batches from the buffer until it closes, acknowledging each once every item in it
    /// has found its end.
    pub async fn run(self: Arc<Self>, buffer: Arc<Buffer>) {
        while let Some(batch) = buffer.next_batch(buffer.chunk_limit()).await {
            self.state.promise(self.patience);
            let all: Vec<usize> = (0..batch.len()).collect();
            self.deliver(&batch, all, Route::Index).await;
            buffer.acknowledge(batch.seq);
            let latency = now_ms().saturating_sub(batch.oldest_ms);
            self.metrics
                .delivery_latency
                .observe(latency as f64 / 1000.0);
        }
    }

    /// Delivers the given items of a chunk: returns once each is indexed, a duplicate, or
    /// dead-lettered.
    async fn deliver(&self, chunk: &Batch, items: Vec<usize>, route: Route) {
        let mut pending = items;
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(self.cfg.retry_wait.0)
            .with_max_delay(self.cfg.retry_max_interval.0)
            .without_max_times()
            .build();
        let started = Instant::now();
        loop {
            self.state.promise(self.patience);
            let attempt = self.send(chunk, &pending).await;
            let (reason, after, gives_up) = match attempt {
                Attempt::Items(results) => {
                    pending = self.settle(chunk, &pending, results, route).await;
                    if pending.is_empty() {
                        self.state.ok();
                        self.metrics.backoff_seconds.set(0.0);
                        return;
                    }
                    let reason = format!("{} items were refused for now (429/5xx)", pending.len());
                    if self.state.failing("items", &reason) {
                        tracing::warn!(%reason, "retrying the refused items alone");
                    }
                    (reason, None, true)
                }
                Attempt::TooLarge if pending.len() > 1 => {
                    // Each half is delivered on its own, and split again if need be.
                    let half = pending.len() / 2;
                    let second = pending.split_off(half);
                    Box::pin(self.deliver(chunk, pending, route)).await;
                    Box::pin(self.deliver(chunk, second, route)).await;
                    return;
                }
                Attempt::TooLarge => {
                    let refused = Refusal::all(&pending, 413, "request_entity_too_large");
                    self.dead_letter(chunk, &refused, route).await;
                    return;
                }
                // Configuration problems, not properties of the records: they wait however long
                // it takes, even without retry_forever, and never become dead letters.
                Attempt::Refused(reason) => {
                    if self.state.failing("refused", &reason) {
                        tracing::error!(%reason, "the cluster refuses bulk requests as a whole; shipping is paused and nothing is dropped");
                    }
                    (reason, None, false)
                }
                Attempt::Unauthorized(reason) => {
                    if self.state.failing("unauthorized", &reason) {
                        tracing::error!(%reason, "Elasticsearch refused the credentials; shipping is paused and nothing is dropped");
                    }
                    (reason, None, false)
                }
                Attempt::Retry { reason, after } => {
                    if self.state.failing("retry", &reason) {
                        tracing::warn!(%reason, items = pending.len(), "bulk request failed; retrying with backoff until it succeeds");
                    }
                    (reason, after, true)
                }
            };
            if gives_up && !self.cfg.retry_forever && started.elapsed() >= self.cfg.retry_timeout.0
            {
                tracing::error!(%reason, items = pending.len(), "retry_timeout passed; items go to the dead-letter file");
                let refused = Refusal::all(&pending, 0, "retry_timeout");
                self.dead_letter(chunk, &refused, route).await;
                return;
            }
            let cap = backoff.next().unwrap_or(self.cfg.retry_max_interval.0);
            let wait = full_jitter(cap).max(after.unwrap_or_default());
            self.metrics
                .documents
                .get_or_create(&[("outcome", "retried")])
                .inc_by(pending.len() as u64);
            self.metrics.bulk_retries.inc();
            self.metrics.backoff_seconds.set(wait.as_secs_f64());
            self.state.promise(wait + self.patience);
            tracing::debug!(%reason, items = pending.len(), wait_ms = wait.as_millis() as u64, "retrying");
            // New credentials or certificates are worth trying at once, and so is a cluster
            // that has just taken another shipper's request.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.connector.changed.notified() => {}
                () = self.state.recovered.notified() => {}
            }
        }
    }

    /// Sorts item results: returns the items to retry, dead-letters the refused ones.
    async fn settle(
        &self,
        chunk: &Batch,
        sent: &[usize],
        results: Vec<ItemResult>,
        route: Route,
    ) -> Vec<usize> {
        let mut retry = Vec::new();
        let mut refused = Vec::new();
        let (mut indexed, mut duplicate) = (0u64, 0u64);
        for (i, &item) in sent.iter().enumerate() {
            let Some(r) = results.get(i) else {
                // Fewer results than items: never count an item as done without a status.
                retry.push(item);
                continue;
            };
            match classify(r.status, r.error_type.as_deref()) {
                BulkItemOutcome::Indexed => indexed += 1,
                BulkItemOutcome::Duplicate => duplicate += 1,
                BulkItemOutcome::Retry => retry.push(item),
                BulkItemOutcome::DeadLetter => refused.push(Refusal {
                    item,
                    status: r.status,
                    reason: r.error_type.as_deref().unwrap_or("unknown"),
                    error: r.error.as_deref(),
                }),
            }
        }
        self.dead_letter(chunk, &refused, route).await;
        let docs = &self.metrics.documents;
        if route == Route::Index {
            docs.get_or_create(&[("outcome", "indexed")])
                .inc_by(indexed);
            docs.get_or_create(&[("outcome", "duplicate")])
                .inc_by(duplicate);
        } else {
            docs.get_or_create(&[("outcome", "dead_letter_indexed")])
                .inc_by(indexed + duplicate);
        }
        retry
    }

    /// Writes refused items to the dead-letter file, all in one write; retries that write
    /// until it succeeds, because an item that is neither indexed nor dead-lettered must not be
    /// acknowledged. Then, if `dead_letter_index` is set, indexes them there too, in one request
    /// (a dead letter of that index only goes to the file).
    async fn dead_letter(&self, chunk: &Batch, refused: &[Refusal<'_>], route: Route) {
        if refused.is_empty() {
            return;
        }
        if route == Route::DeadLetterIndex {
            // Already in the dead-letter file; the fallback index refused its copy too.
            tracing::warn!(
                items = refused.len(),
                reason = refused[0].reason,
                "the dead_letter_index refused dead letters; they are in the dead-letter file"
            );
            return;
        }
        let items = self.read_items(chunk, refused).await;
        let entries: Vec<deadletter::Entry> = refused
            .iter()
            .zip(&items)
            .map(|(r, item)| deadletter::Entry {
                item: item.clone(),
                status: r.status,
                reason: r.reason.to_owned(),
                error: r.error.map(|e| e.get().to_owned()),
            })
            .collect();
        self.dead_letter_file(Arc::new(entries)).await;
        for r in refused {
            self.metrics
                .dead_letters
                .get_or_create(&vec![("reason", r.reason.to_owned())])
                .inc();
        }
        if let Some(index) = &self.dead_letter_index {
            let wrapped = wrap_dead_letters(&items, refused, index);
            let all = (0..wrapped.len()).collect();
            Box::pin(self.deliver(&wrapped, all, Route::DeadLetterIndex)).await;
        }
    }

    /// The refused items' bytes, read back from the buffer. Retried until the read works: an
    /// item must be neither dropped nor acknowledged unread.
    async fn read_items(&self, chunk: &Batch, refused: &[Refusal<'_>]) -> Vec<Vec<u8>> {
        let mut failures = 0u64;
        loop {
            match refused.iter().map(|r| chunk.item(r.item)).collect() {
                Ok(items) => return items,
                Err(e) if failures == 0 => {
                    tracing::error!(error = %e, "cannot read refused items back from the buffer; retrying");
                }
                Err(_) => {}
            }
            failures += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn dead_letter_file(&self, entries: Arc<Vec<deadletter::Entry>>) {
        let mut wait = Duration::from_secs(1);
        let mut failures = 0u64;
        loop {
            let (dead, batch) = (self.dead.clone(), entries.clone());
            let res = tokio::task::spawn_blocking(move || dead.write(&batch)).await;
            match res {
                Ok(Ok(())) => {
                    self.metrics
                        .documents
                        .get_or_create(&[("outcome", "dead_lettered")])
                        .inc_by(entries.len() as u64);
                    if failures > 0 {
                        tracing::info!(failures, "the dead-letter file is writable again");
                    }
                    return;
                }
                Ok(Err(e)) if failures == 0 => {
                    tracing::error!(error = %e, "cannot write the dead-letter file; shipping waits for it and retries")
                }
                Err(e) if failures == 0 => tracing::error!(error = %e, "dead-letter writer failed"),
                _ => {}
            }
            failures += 1;
            self.state.promise(wait + self.patience);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    async fn send(&self, chunk: &Batch, items: &[usize]) -> Attempt {
        let len = chunk.body_len(items);
        let pieces = chunk.pieces(items.to_vec());
        let body = if self.gzip {
            // Compressing megabytes takes milliseconds: keep it off the async workers' queue.
            match tokio::task::block_in_place(|| body::gzip(pieces, len)) {
                Ok(b) => reqwest::Body::from(b),
                Err(e) => {
                    return Attempt::Retry {
                        reason: format!("building the request body: {e}"),
                        after: None,
                    };
                }
            }
        } else {
            reqwest::Body::wrap(body::Streamed::new(pieces, len))
        };
        let Some(host) = self.hosts.next() else {
            return Attempt::Refused("no usable Elasticsearch host".into());
        };
        let url = host.bulk_url();
        let endpoint = self.connector.current();
        let mut req = endpoint
            .client
            .post(url.clone())
            .header("content-type", "application/x-ndjson");
        if let Some(auth) = &endpoint.auth {
            req = req.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        if self.gzip {
            req = req.header("content-encoding", "gzip");
        }
        let started = Instant::now();
        let result = req.body(body).send().await;
        self.metrics
            .bulk_duration
            .observe(started.elapsed().as_secs_f64());
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .bulk_requests
                    .get_or_create(&[("status", "error")])
                    .inc();
                let reason = format!("{}: {}", host.name(), error_chain(&e));
                self.hosts.failed(&host, &reason);
                return Attempt::Retry {
                    reason,
                    after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        // A 5xx for the whole request: the host (or the gateway in front of it) is unwell.
        if (500..=599).contains(&status) {
            self.hosts.failed(&host, &format!("HTTP {status}"));
        } else {
            self.hosts.succeeded(&host);
        }
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.metrics
            .bulk_requests
            .get_or_create(&[("status", class)])
            .inc();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("reading the response: {}", error_chain(&e)),
                    after: None,
                };
            }
        };
        match status {
            200..=299 => match serde_json::from_slice::<BulkResponse>(&bytes) {
                Ok(r) => Attempt::Items(
                    r.items
                        .into_iter()
                        .map(|m| {
                            let item = m.0;
                            let (status, error) = item.map_or((0, None), |i| (i.status, i.error));
                            let error_type = error
                                .as_deref()
                                .and_then(|e| serde_json::from_str::<ErrorType>(e.get()).ok())
                                .and_then(|e| e.kind);
                            ItemResult {
                                status,
                                error,
                                error_type,
                            }
                        })
                        .collect(),
                ),
                Err(e) => Attempt::Retry {
                    reason: format!("unreadable bulk response: {e}"),
                    after: None,
                },
            },
            401 | 403 => Attempt::Unauthorized(format!(
                "HTTP {status} from {}: {}",
                url.host_str().unwrap_or("?"),
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )),
            413 => Attempt::TooLarge,
            408 | 429 | 500..=599 => Attempt::Retry {
                reason: format!("HTTP {status}"),
                after: retry_after,
            },
            _ => Attempt::Refused(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )),
        }
    }
}

/// A uniformly random wait in `[0, cap]` (AWS's "full jitter"), at least 10 ms.
fn full_jitter(cap: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded per process and per instance: enough to spread agents apart.
    let r = RandomState::new().hash_one(Instant::now());
    let fraction = (r >> 11) as f64 / (1u64 << 53) as f64;
    cap.mul_f64(fraction).max(Duration::from_millis(10))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_delivery_contract() {
        let cases = [
            (201, None, BulkItemOutcome::Indexed),
            (200, None, BulkItemOutcome::Indexed),
            (
                409,
                Some("version_conflict_engine_exception"),
                BulkItemOutcome::Duplicate,
            ),
            (
                429,
                Some("es_rejected_execution_exception"),
                BulkItemOutcome::Retry,
            ),
            (503, None, BulkItemOutcome::Retry),
            (403, Some("cluster_block_exception"), BulkItemOutcome::Retry),
            (
                400,
                Some("mapper_parsing_exception"),
                BulkItemOutcome::DeadLetter,
            ),
            (
                404,
                Some("index_not_found_exception"),
                BulkItemOutcome::DeadLetter,
            ),
        ];
        for (status, kind, want) in cases {
            assert_eq!(classify(status, kind), want, "{status} {kind:?}");
        }
    }

    #[test]
    fn jitter_stays_within_the_cap() {
        let cap = Duration::from_secs(2);
        let waits: Vec<Duration> = (0..200).map(|_| full_jitter(cap)).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w <= cap && *w >= Duration::from_millis(10))
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(
            distinct.len() > 100,
            "waits must be spread, got {}",
            distinct.len()
        );
    }
}
