//! Shipping: batches from the disk buffer into Elasticsearch's `_bulk` API.
//!
//! Owns the HTTP conversation: gzip, host failover, reading every item's result, retry with
//! exponential backoff and full jitter (honouring `Retry-After`) of only the items that failed
//! with a retryable status, splitting a request the cluster found too large (413), and the
//! dead-letter file for items the cluster will never accept. A batch is acknowledged to the
//! [`Buffer`] — which may then delete its records — once every item in it is indexed, a
//! duplicate (409 on `create`: an earlier delivery of the same id), or dead-lettered.
//!
//! Reading and judging answers is [`response`]'s; what `/health` is told is [`SinkState`]'s.
//! Each batch is delivered in a task of its own while the shipper holds the batch, so a
//! shipper that fails (panics) is started again with that same batch: a batch is acknowledged
//! only after a delivery of it returned, and a second delivery of it is 409s, never copies.

mod body;
mod client;
mod deadletter;
mod hosts;
mod refused;
mod response;
mod salvage;
pub mod setup;
mod supervise;

pub use client::{Connector, Endpoint, Error as ConnectError};
pub use deadletter::DeadLetters;
pub use hosts::{Host, HostPool};
pub use response::{BulkItemOutcome, classify};

use super::{SinkState, full_jitter};
use crate::buffer::{Batch, Buffer, now_ms};
use crate::config;
use crate::metrics::Metrics;
use backon::BackoffBuilder;
use refused::Refusal;
use response::{Attempt, ItemResult};
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Where a delivery goes: the records' own index, or the dead-letter index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Index,
    /// Documents refused for their mapping, sent again salvaged ([`salvage`]).
    Salvage,
    DeadLetterIndex,
}

pub struct Shipper {
    /// The HTTP client and credentials, rebuilt when their files change.
    connector: Arc<Connector>,
    metrics: Arc<Metrics>,
    state: Arc<SinkState>,
    dead: Arc<DeadLetters>,
    /// What a config reload may change, swapped whole: each attempt reads the current one, so a
    /// batch retrying against a host that is gone moves to the new hosts at its next attempt.
    live: RwLock<Arc<Live>>,
    /// Passed before each delivery; held by a reload while a new plan of templates goes in.
    gate: tokio::sync::RwLock<()>,
}

/// The settings a shipper works with, from one config.
struct Live {
    /// Where each request goes: round robin over the hosts that answer.
    hosts: Arc<HostPool>,
    /// Sniffs for `hosts` (when `elasticsearch.sniff`); stops with the pool it feeds.
    _sniffing: Option<Arc<AbortOnDrop>>,
    /// What the pool was built from: a reload that leaves these keeps it, and its set-asides.
    pool_from: (Vec<String>, bool, Duration, hosts::SetAside),
    gzip: bool,
    cfg: config::Buffer,
    dead_letter_index: Option<String>,
    /// The longest a request may take, with some slack: what a shipper promises per attempt.
    patience: Duration,
}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Live {
    fn new(
        cfg: &config::Config,
        connector: &Arc<Connector>,
        metrics: &Arc<Metrics>,
        keep: Option<&Live>,
    ) -> Live {
        let es = &cfg.elasticsearch;
        let set_aside = hosts::SetAside {
            first: cfg.buffer.retry_wait.0,
            max: cfg.buffer.retry_max_interval.0,
            trial: es.request_timeout.0.saturating_add(Duration::from_secs(10)),
        };
        let pool_from = (es.hosts.clone(), es.sniff, es.sniff_interval.0, set_aside);
        let (hosts, sniffing) = match keep {
            Some(old) if old.pool_from == pool_from => (old.hosts.clone(), old._sniffing.clone()),
            _ => {
                let hosts = Arc::new(HostPool::new(&es.hosts, set_aside, metrics.clone()));
                let sniffing = match tokio::runtime::Handle::try_current() {
                    Ok(rt) if es.sniff => {
                        let task = hosts
                            .clone()
                            .sniff_every(connector.clone(), es.sniff_interval.0);
                        Some(Arc::new(AbortOnDrop(rt.spawn(task).abort_handle())))
                    }
                    _ => None,
                };
                (hosts, sniffing)
            }
        };
        Live {
            hosts,
            _sniffing: sniffing,
            pool_from,
            gzip: es.compression == config::Compression::Gzip,
            cfg: cfg.buffer.clone(),
            dead_letter_index: es.dead_letter_index.clone(),
            patience: es.request_timeout.0.saturating_add(Duration::from_secs(10)),
        }
    }
}

impl Shipper {
    pub fn new(
        cfg: &config::Config,
        connector: Arc<Connector>,
        metrics: Arc<Metrics>,
        state: Arc<SinkState>,
        dead: Arc<DeadLetters>,
    ) -> Shipper {
        let live = Live::new(cfg, &connector, &metrics, None);
        // Nothing has been tried yet: the first batch is due within one request's time.
        state.promise(live.patience);
        // Every label value exists from the start, at 0, so the first event is not missed by
        // rate() and alerts.
        for reason in response::dead_letter_labels() {
            let _ = metrics
                .dead_letters
                .get_or_create(&vec![("reason", (*reason).to_owned())]);
        }
        for reason in response::Error::LABELS {
            let _ = metrics
                .bulk_invalid_responses
                .get_or_create(&[("reason", reason)]);
        }
        Shipper {
            connector,
            metrics,
            state,
            dead,
            live: RwLock::new(Arc::new(live)),
            gate: tokio::sync::RwLock::new(()),
        }
    }

    /// A config reload: batch size, retries, hosts, compression and the dead-letter index apply
    /// from the next attempt. The host pool (with what it has set aside) stays unless its
    /// hosts or timings changed.
    pub fn reconfigure(&self, cfg: &config::Config) {
        let old = self.live();
        let live = Live::new(cfg, &self.connector, &self.metrics, Some(&old));
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
        // A batch waiting out a backoff tries the new settings now.
        self.connector.changed.notify_waiters();
    }

    /// Holds every shipper before its next delivery until the guard is dropped; deliveries
    /// under way go on.
    pub async fn hold(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ships batches from the buffer until it closes, acknowledging each once every item in it
    /// has found its end. Each batch is delivered under [`supervise::until_delivered`], so a
    /// delivery that panics is started again with the same batch rather than losing it; and it
    /// is held as a [`Lease`](crate::buffer::Lease), so a shipper that fails anywhere else gives it back to the buffer
    /// for the next one instead of pinning the ack cursor.
    pub async fn run(self: Arc<Self>, buffer: Arc<Buffer>) {
        let mut read = body::GzipOnRead::default();
        loop {
            let (limit, gzip) = (self.live().cfg.batch_max_bytes(), self.live().gzip);
            let into: &mut dyn crate::buffer::ReadInto = if gzip { &mut read } else { &mut () };
            let Some(lease) = buffer.lease_into(limit, into).await else {
                return;
            };
            // The first body, compressed as the lease read the items; retries read them again.
            let first = (gzip && lease.read_into())
                .then(|| read.finish().ok())
                .flatten();
            drop(self.gate.read().await);
            self.state.promise(self.live().patience);
            let batch = lease.batch().clone();
            let me = self.clone();
            let first = Arc::new(std::sync::Mutex::new(first));
            let delivered = supervise::until_delivered(&self, &batch, move |batch| {
                let me = me.clone();
                let first = first.lock().unwrap_or_else(PoisonError::into_inner).take();
                async move {
                    let all: Vec<usize> = (0..batch.len()).collect();
                    me.deliver_with(&batch, all, Route::Index, first).await;
                }
            })
            .await;
            if !delivered {
                // The runtime is shutting down: the batch stays in the buffer for the next start.
                return;
            }
            lease.acknowledge();
            let latency = now_ms().saturating_sub(batch.oldest_ms);
            self.metrics
                .delivery_latency
                .observe(latency as f64 / 1000.0);
        }
    }

    /// Promises a sign of life after `wait` and one more request. Saturating, and bounded so
    /// that no configured wait can overflow the deadline.
    fn promise_after(&self, wait: Duration) {
        const LONGEST: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
        self.state
            .promise(wait.saturating_add(self.live().patience).min(LONGEST));
    }

    /// Delivers the given items of a batch: returns once each is indexed, a duplicate, or
    /// dead-lettered.
    async fn deliver(&self, batch: &Batch, items: Vec<usize>, route: Route) {
        self.deliver_with(batch, items, route, None).await;
    }

    /// [`Shipper::deliver`], the first request's body already `built`, if it is.
    async fn deliver_with(
        &self,
        batch: &Batch,
        items: Vec<usize>,
        route: Route,
        mut built: Option<Vec<u8>>,
    ) {
        let mut pending = items;
        // Not held across the delivery: a reload's old hosts must not outlive a long retry.
        let (first, max) = {
            let live = self.live();
            (live.cfg.retry_wait.0, live.cfg.retry_max_interval.0)
        };
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(max)
            .without_max_times()
            .build();
        let started = Instant::now();
        loop {
            let live = self.live();
            self.state.promise(live.patience);
            let attempt = self.send(batch, &pending, built.take()).await;
            let Again {
                reason,
                after,
                gives_up,
            } = match attempt {
                Attempt::Items(results) => {
                    let settled = self.settle(batch, &pending, results, route).await;
                    pending = settled.pending;
                    if pending.is_empty() {
                        self.state.ok();
                        self.metrics.backoff_seconds.set(0.0);
                        return;
                    }
                    self.items_again(settled.reason, settled.paused)
                }
                // An answer over the read limit (long errors for many items) would come back the
                // same every time: smaller requests get smaller answers. Items indexed by the
                // first attempt come back as 409s.
                Attempt::Invalid(e @ response::Error::TooLarge { .. }) if pending.len() > 1 => {
                    self.metrics
                        .bulk_invalid_responses
                        .get_or_create(&[("reason", e.label())])
                        .inc();
                    let half = pending.len() / 2;
                    let second = pending.split_off(half);
                    Box::pin(self.deliver(batch, pending, route)).await;
                    Box::pin(self.deliver(batch, second, route)).await;
                    return;
                }
                Attempt::TooLarge if pending.len() > 1 => {
                    // Each half is delivered on its own, and split again if need be.
                    let half = pending.len() / 2;
                    let second = pending.split_off(half);
                    Box::pin(self.deliver(batch, pending, route)).await;
                    Box::pin(self.deliver(batch, second, route)).await;
                    return;
                }
                Attempt::TooLarge => {
                    let refused = Refusal::all(&pending, 413, "request_entity_too_large");
                    self.dead_letter(batch, &refused, route).await;
                    return;
                }
                whole => self.request_again(whole, pending.len()),
            };
            if gives_up && !live.cfg.retry_forever && started.elapsed() >= live.cfg.retry_timeout.0
            {
                tracing::error!(%reason, items = pending.len(), "retry_timeout passed; items go to the dead-letter file");
                let refused = Refusal::all(&pending, 0, "retry_timeout");
                self.dead_letter(batch, &refused, route).await;
                return;
            }
            self.back_off(&reason, pending.len(), backoff.next(), after)
                .await;
        }
    }

    /// Some items are to be sent again, for `reason`; `paused` when some wait for the
    /// operator. Told to `/health`, and logged when it is news.
    fn items_again(&self, reason: String, paused: bool) -> Again {
        if paused {
            // Like a refused request: the operator's setup, however long it takes.
            if self.state.failing("items_paused", &reason) {
                tracing::error!(%reason, "the cluster refuses items for its own setup (privileges, a missing index); they wait and are never dead letters");
            }
        } else if self.state.failing("items", &reason) {
            tracing::warn!(%reason, "retrying the refused items alone");
        }
        Again {
            reason,
            after: None,
            gives_up: !paused,
        }
    }

    /// The request as a whole is to be sent again (`attempt` is neither items nor a 413).
    /// Told to `/health`, counted, and logged when it is news.
    fn request_again(&self, attempt: Attempt, items: usize) -> Again {
        let (reason, after, gives_up) = match attempt {
            // An answer that cannot be trusted says nothing about the records: sent again
            // whole, never given up on. Items indexed meanwhile come back as 409s.
            Attempt::Invalid(e) => {
                self.metrics
                    .bulk_invalid_responses
                    .get_or_create(&[("reason", e.label())])
                    .inc();
                let reason = format!("{e}; the request is sent again");
                if self.state.failing(e.label(), &reason) {
                    tracing::error!(%reason, items, "a bulk answer cannot be trusted; nothing in it is counted");
                }
                (reason, None, false)
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
                    tracing::warn!(%reason, items, "bulk request failed; retrying with backoff until it succeeds");
                }
                (reason, after, true)
            }
            // Handled by the caller; here only so that the match is complete.
            Attempt::Items(_) | Attempt::TooLarge => ("unexpected".into(), None, false),
        };
        Again {
            reason,
            after,
            gives_up,
        }
    }

    /// Waits before the next attempt: full jitter under the backoff's `cap`, at least what the
    /// cluster asked for (`after`, already capped at retry_max_interval).
    async fn back_off(
        &self,
        reason: &str,
        items: usize,
        cap: Option<Duration>,
        after: Option<Duration>,
    ) {
        let cap = cap.unwrap_or(self.live().cfg.retry_max_interval.0);
        let wait = full_jitter(cap).max(after.unwrap_or_default());
        self.metrics
            .documents
            .get_or_create(&[("outcome", "retried")])
            .inc_by(items as u64);
        self.metrics.bulk_retries.inc();
        self.metrics.backoff_seconds.set(wait.as_secs_f64());
        self.promise_after(wait);
        tracing::debug!(%reason, items, wait_ms = wait.as_millis() as u64, "retrying");
        // New credentials or certificates are worth trying at once, and so is a cluster
        // that has just taken another shipper's request.
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.connector.changed.notified() => {}
            () = self.state.recovered.notified() => {}
        }
    }

    /// Sorts item results: returns the items to send again and why, dead-letters the refused
    /// ones. `results` holds exactly one result per item sent (checked when it was read).
    async fn settle(
        &self,
        batch: &Batch,
        sent: &[usize],
        results: Vec<ItemResult>,
        route: Route,
    ) -> Settled {
        let mut pending = Vec::new();
        let mut refused = Vec::new();
        // What came back for the items sent again, by status and error type: for the log.
        let mut again: BTreeMap<(u16, &str), usize> = BTreeMap::new();
        let mut paused = false;
        let (mut indexed, mut duplicate) = (0u64, 0u64);
        for (&item, r) in sent.iter().zip(&results) {
            let kind = r.error_type.as_deref();
            match classify(r.status, kind) {
                BulkItemOutcome::Indexed => indexed += 1,
                BulkItemOutcome::Duplicate => duplicate += 1,
                outcome @ (BulkItemOutcome::Retry | BulkItemOutcome::Paused) => {
                    paused |= outcome == BulkItemOutcome::Paused;
                    *again.entry((r.status, kind.unwrap_or(""))).or_default() += 1;
                    pending.push(item);
                }
                BulkItemOutcome::DeadLetter => refused.push(Refusal {
                    item,
                    status: r.status,
                    reason: kind.unwrap_or("unknown"),
                    error: r.error.as_deref(),
                }),
            }
        }
        let conflicts = &self.metrics.mapping_conflicts;
        if route == Route::Salvage {
            conflicts
                .get_or_create(&[("outcome", "salvaged")])
                .inc_by(indexed + duplicate);
            conflicts
                .get_or_create(&[("outcome", "dead_lettered")])
                .inc_by(refused.len() as u64);
        }
        if route == Route::Index {
            let (mapping, others): (Vec<_>, Vec<_>) = refused
                .into_iter()
                .partition(|r| salvage::is_mapping_conflict(r.reason));
            refused = others;
            self.salvage(batch, &mapping).await;
        }
        self.dead_letter(batch, &refused, route).await;
        let docs = &self.metrics.documents;
        if route != Route::DeadLetterIndex {
            docs.get_or_create(&[("outcome", "indexed")])
                .inc_by(indexed);
            docs.get_or_create(&[("outcome", "duplicate")])
                .inc_by(duplicate);
        } else {
            docs.get_or_create(&[("outcome", "dead_letter_indexed")])
                .inc_by(indexed + duplicate);
        }
        let reason = refused_for_now(pending.len(), sent.len(), &again);
        Settled {
            pending,
            paused,
            reason,
        }
    }

    /// Sends documents refused for their mapping once more, salvaged, to the same index under
    /// the same ids; what is refused again becomes a dead letter there.
    async fn salvage(&self, batch: &Batch, refused: &[Refusal<'_>]) {
        if refused.is_empty() {
            return;
        }
        let items = self.read_items(batch, refused).await;
        let salvaged = salvage::salvaged(&items, refused);
        tracing::warn!(
            items = refused.len(),
            reason = refused[0].reason,
            "documents refused for their mapping are sent again with the message as a string in log (logferry.mapping_conflict says why)"
        );
        let all = (0..salvaged.len()).collect();
        Box::pin(self.deliver(&salvaged, all, Route::Salvage)).await;
    }

    async fn send(&self, batch: &Batch, items: &[usize], built: Option<Vec<u8>>) -> Attempt {
        let len = batch.body_len(items);
        let pieces = batch.pieces(items.to_vec());
        let live = self.live();
        let body = if let (true, Some(built)) = (live.gzip, built) {
            reqwest::Body::from(built)
        } else if live.gzip {
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
        let Some(host) = live.hosts.next() else {
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
        if live.gzip {
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
                let reason = format!("{}: {}", host.name(), response::error_chain(&e));
                live.hosts.failed(&host, &reason);
                return Attempt::Retry {
                    reason,
                    after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        // A 5xx for the whole request: the host (or the gateway in front of it) is unwell.
        if (500..=599).contains(&status) {
            live.hosts.failed(&host, &format!("HTTP {status}"));
        } else {
            live.hosts.succeeded(&host);
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
        response::interpret(
            resp,
            &host.name(),
            items.len(),
            live.cfg.retry_max_interval.0,
        )
        .await
    }
}

/// Another attempt is due.
struct Again {
    /// Why: what came back, for the log and `/health`.
    reason: String,
    /// At least this long first (`Retry-After`, capped).
    after: Option<Duration>,
    /// Whether `retry_timeout` applies (without `retry_forever`): only to what the cluster
    /// refused for now, never to setup problems or untrustworthy answers.
    gives_up: bool,
}

/// What [`Shipper::settle`] leaves to do.
struct Settled {
    /// The items to send again.
    pending: Vec<usize>,
    /// Some of them wait for the operator (privileges, a missing index): never given up on.
    paused: bool,
    /// What came back for them, for the log and `/health`.
    reason: String,
}

/// "3 of 100 items refused for now: 2 × 429 es_rejected_execution_exception, 1 × 503": what
/// actually came back, the most frequent answers first, at most four of them.
fn refused_for_now(pending: usize, sent: usize, again: &BTreeMap<(u16, &str), usize>) -> String {
    let mut answers: Vec<_> = again.iter().collect();
    answers.sort_by(|a, b| b.1.cmp(a.1));
    let said: Vec<String> = answers
        .iter()
        .take(4)
        .map(|((status, kind), n)| format!("{n} × {status} {kind}").trim_end().to_owned())
        .collect();
    let more = if answers.len() > 4 { ", …" } else { "" };
    format!(
        "{pending} of {sent} items refused for now: {}{more}",
        said.join(", ")
    )
}

#[cfg(test)]
mod tests;
