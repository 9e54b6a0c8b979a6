//! Shipping to Kafka (`[kafka]`): batches from the disk buffer as messages on one topic.
//!
//! Each buffered `_bulk` item becomes one message ([`message`]): the document as Elasticsearch
//! would index it, its `_id` and `_index` as headers, its container as the key. A batch is
//! acknowledged to the [`Buffer`] only once the brokers acknowledged every message of it (the
//! delivery reports of an idempotent producer with `acks=all`); messages that failed are
//! produced again, alone, after an exponential backoff with full jitter (`buffer.retry_wait`
//! up to `buffer.retry_max_interval`), for as long as it takes: nothing becomes a dead letter,
//! nothing is dropped. A resent message carries the same `_id`, so the aggregator that
//! indexes the topic turns a second copy into a 409: duplicates in the topic are allowed, lost
//! messages are not.
//!
//! What `/health` is told goes through the same [`SinkState`] as for Elasticsearch (under the
//! check's name `kafka`); the metrics are the Elasticsearch sink's where they mean the same:
//! `logferry_documents_total{outcome="indexed"}` counts messages the brokers acknowledged,
//! `"retried"` the ones produced again, and `logferry_bulk_request_duration_seconds` times the
//! delivery of one batch (every report in).

mod message;
pub mod producer;

use super::SinkState;
use crate::buffer::{Batch, Buffer, now_ms};
use crate::config;
use crate::metrics::Metrics;
use backon::BackoffBuilder;
use producer::Producer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use producer::Error;

/// How often, while nothing is waiting to be shipped and the brokers were last found
/// unreachable, they are asked for the topic's metadata, so that `/health` does not keep an
/// old outage on a quiet node.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long librdkafka's queue may stay full before a message is tried again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

pub struct KafkaShipper {
    metrics: Arc<Metrics>,
    state: Arc<SinkState>,
    /// The producer and the settings it was built from, swapped whole at a reload; a delivery
    /// keeps the one it started with until its reports are in.
    live: RwLock<Arc<Live>>,
}

struct Live {
    producer: Arc<Producer>,
    /// What `producer` was built from: a reload that leaves it keeps the producer.
    kafka: config::Kafka,
    cfg: config::Buffer,
}

/// What one round of producing left to do.
struct Round {
    acked: u64,
    /// The items to produce again, and the first reason one failed.
    failed: Vec<usize>,
    reason: String,
    /// A report said the producer's idempotent session is over (fenced, its epoch or
    /// sequence refused): only a new producer gets a new one.
    session_lost: bool,
}

impl KafkaShipper {
    /// Builds the producer for `cfg.kafka` (which must be set).
    pub fn new(
        cfg: &config::Config,
        metrics: Arc<Metrics>,
        state: Arc<SinkState>,
    ) -> Result<KafkaShipper, Error> {
        let kafka = cfg.kafka.clone().unwrap_or_default();
        let producer = producer::producer(&kafka, state.clone())?;
        state.promise(kafka.delivery_timeout.0);
        Ok(KafkaShipper {
            metrics,
            state,
            live: RwLock::new(Arc::new(Live {
                producer: Arc::new(producer),
                kafka,
                cfg: cfg.buffer.clone(),
            })),
        })
    }

    /// Whether `cfg` can be taken by [`KafkaShipper::reconfigure`] (its secret files read).
    pub fn check(cfg: &config::Config) -> Result<(), Error> {
        match &cfg.kafka {
            Some(kafka) => producer::client_config(kafka).map(drop),
            None => Ok(()),
        }
    }

    /// A config reload: retries and batch sizes apply from the next batch; a changed `[kafka]`
    /// gets a new producer for the next batch (deliveries under way finish with the old one).
    /// If the new producer cannot be built, the old one stays and the error is logged.
    pub fn reconfigure(&self, cfg: &config::Config) {
        let Some(kafka) = cfg.kafka.clone() else {
            return;
        };
        let old = self.live();
        let producer = if kafka == old.kafka {
            old.producer.clone()
        } else {
            match producer::producer(&kafka, self.state.clone()) {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    tracing::error!(error = %e, "the reloaded [kafka] cannot be used; the running producer stays");
                    return;
                }
            }
        };
        let live = Live {
            producer,
            kafka,
            cfg: cfg.buffer.clone(),
        };
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
        drop_off_runtime(old);
    }

    fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ships batches from the buffer until it closes, acknowledging each once the brokers
    /// acknowledged every message of it.
    pub async fn run(self: Arc<Self>, buffer: Arc<Buffer>) {
        while let Some(lease) = buffer.lease(self.live().cfg.batch_max_bytes()).await {
            let batch = lease.batch().clone();
            self.deliver(&batch).await;
            lease.acknowledge();
            let latency = now_ms().saturating_sub(batch.oldest_ms);
            self.metrics
                .delivery_latency
                .observe(latency as f64 / 1000.0);
        }
    }

    /// Produces every item of `batch` until the brokers have acknowledged each.
    async fn deliver(&self, batch: &Batch) {
        let mut pending: Vec<usize> = (0..batch.len()).collect();
        let (first, max) = {
            let live = self.live();
            (live.cfg.retry_wait.0, live.cfg.retry_max_interval.0)
        };
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(max)
            .without_max_times()
            .build();
        loop {
            let live = self.live();
            let patience = live.kafka.delivery_timeout.0 + Duration::from_secs(10);
            self.state.promise(patience);
            let started = Instant::now();
            let round = self.produce(&live, batch, &pending).await;
            self.metrics
                .bulk_duration
                .observe(started.elapsed().as_secs_f64());
            self.metrics
                .documents
                .get_or_create(&[("outcome", "indexed")])
                .inc_by(round.acked);
            if round.failed.is_empty() {
                self.state.ok();
                self.metrics.backoff_seconds.set(0.0);
                return;
            }
            pending = round.failed;
            self.failed(&live, &round.reason, pending.len(), round.session_lost);
            let cap = backoff.next().unwrap_or(max);
            let wait = super::full_jitter(cap);
            self.metrics
                .documents
                .get_or_create(&[("outcome", "retried")])
                .inc_by(pending.len() as u64);
            self.metrics.bulk_retries.inc();
            self.metrics.backoff_seconds.set(wait.as_secs_f64());
            self.state.promise(wait + patience);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.state.recovered.notified() => {}
            }
        }
    }

    /// Some messages failed for `reason`: told to `/health` and logged when it is news. A
    /// producer whose idempotent session is over (`session_lost`, or librdkafka's fatal
    /// error) is replaced.
    fn failed(&self, live: &Arc<Live>, reason: &str, items: usize, session_lost: bool) {
        if self.state.failing("delivery", reason) {
            tracing::warn!(%reason, items, "Kafka did not acknowledge every message; producing those again with backoff until it does");
        }
        let fatal = live.producer.client().fatal_error();
        // Another shipper (or a reload) may have replaced it already.
        let current = Arc::ptr_eq(&self.live().producer, &live.producer);
        if current && (session_lost || fatal.is_some()) {
            let why = fatal.map_or_else(|| reason.to_owned(), |(_, why)| why);
            tracing::warn!(%why, "the Kafka producer's idempotent session is over; starting a new producer");
            match producer::producer(&live.kafka, self.state.clone()) {
                Ok(p) => {
                    let fresh = Live {
                        producer: Arc::new(p),
                        kafka: live.kafka.clone(),
                        cfg: live.cfg.clone(),
                    };
                    let old = std::mem::replace(
                        &mut *self.live.write().unwrap_or_else(PoisonError::into_inner),
                        Arc::new(fresh),
                    );
                    drop_off_runtime(old);
                }
                Err(e) => tracing::error!(error = %e, "cannot start a new Kafka producer"),
            }
        }
    }

    /// Produces the `items` of `batch` and waits for every delivery report.
    async fn produce(&self, live: &Live, batch: &Batch, items: &[usize]) -> Round {
        let mut sent: Vec<(usize, DeliveryFuture)> = Vec::with_capacity(items.len());
        let mut round = Round {
            acked: 0,
            failed: Vec::new(),
            reason: String::new(),
            session_lost: false,
        };
        let mut key = Vec::new();
        let mut next = 0;
        for piece in batch.pieces(items.to_vec()) {
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    // The rest of the round is not sent: produced again after the backoff.
                    round.reason = format!("reading the buffer: {e}");
                    round.failed.extend_from_slice(&items[next..]);
                    break;
                }
            };
            let mut at = 0;
            while at < piece.len() && next < items.len() {
                let item = items[next];
                let len = batch.body_len(&[item]) as usize;
                let bytes = &piece[at..(at + len).min(piece.len())];
                at += len;
                next += 1;
                match self.send(live, bytes, &mut key).await {
                    Ok(report) => sent.push((item, report)),
                    Err(e) => round.fail(item, &e),
                }
            }
        }
        for (item, report) in sent {
            match report.await {
                Ok(Ok(_)) => round.acked += 1,
                Ok(Err((e, _))) => {
                    round.session_lost |= session_lost(&e);
                    round.fail(item, &e);
                }
                Err(_) => round.fail(item, &"the producer was closed before it reported"),
            }
        }
        round
    }

    /// Hands one item to the producer, waiting while its queue is full.
    async fn send(
        &self,
        live: &Live,
        item: &[u8],
        key: &mut Vec<u8>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let parts = message::split(item);
        message::key(parts.document, parts.index, key);
        let mut headers = OwnedHeaders::new_with_capacity(2);
        if let Some(id) = parts.id {
            headers = headers.insert(Header {
                key: "_id",
                value: Some(id),
            });
        }
        if let Some(index) = parts.index {
            headers = headers.insert(Header {
                key: "_index",
                value: Some(index),
            });
        }
        let mut record = FutureRecord::to(&live.kafka.topic)
            .payload(parts.document)
            .key(key.as_slice())
            .headers(headers);
        loop {
            match live.producer.send_result(record) {
                Ok(report) => return Ok(report),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(QUEUE_FULL_WAIT).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// While the buffer is empty and the brokers were last found unreachable, asks them for
    /// the topic every [`PROBE_INTERVAL`]: an answer clears `/health`. With records waiting,
    /// their deliveries say how the brokers are.
    pub async fn probe(self: Arc<Self>, buffer: Arc<Buffer>) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tick.tick().await;
            if self.state.describe().0 || buffer.stats().records > 0 {
                continue;
            }
            let live = self.live();
            let asked = tokio::task::spawn_blocking(move || {
                live.producer
                    .client()
                    .fetch_metadata(Some(&live.kafka.topic), PROBE_INTERVAL)
            })
            .await;
            if let Ok(Ok(_)) = asked
                && buffer.stats().records == 0
            {
                self.state.ok();
            }
        }
    }
}

impl Round {
    fn fail(&mut self, item: usize, why: &dyn std::fmt::Display) {
        if self.failed.is_empty() {
            self.reason = format!("Kafka: {why}");
        }
        self.failed.push(item);
    }
}

/// Whether a delivery error means the producer's idempotent session cannot go on: the broker
/// fenced it or no longer knows its id, epoch or sequence.
fn session_lost(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::ProducerFenced
                | C::InvalidProducerEpoch
                | C::InvalidProducerIdMapping
                | C::UnknownProducerId
                | C::OutOfOrderSequenceNumber
                | C::Fatal
        )
    )
}

/// Drops a replaced producer on a blocking thread: librdkafka's teardown joins its threads
/// and waits for its last reports.
fn drop_off_runtime(old: Arc<Live>) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => drop(rt.spawn_blocking(move || drop(old))),
        Err(_) => drop(old),
    }
}
