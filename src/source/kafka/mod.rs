//! `[[input.kafka]]`: the aggregator's consumer of the topic node agents produce to.
//!
//! A record a node agent produced (`[kafka]`) carries its document as the value and its
//! `_index` and `_id` as headers: it is buffered as it is, under that id, so a record consumed
//! twice (a rebalance, an aggregator killed before it committed) is a 409 in Elasticsearch,
//! not a copy, and node → Kafka → aggregator → Elasticsearch is exactly once. A record without
//! those headers (another producer's JSON) goes through this agent's pipeline like a
//! forwarded one, with an id from its topic, partition and offset: consumed again, the same id.
//!
//! Offsets are kept in the buffer beside the records as their positions ([`positions`]), and
//! committed to the group once durable: a consumer that dies before then leaves them to be
//! consumed again, never skipped, and a record consumed again that the buffer holds already
//! is not buffered twice. Consuming waits while the buffer is full (`overflow_action =
//! "block"`): back-pressure, the records stay in Kafka.

mod positions;

pub use positions::Offsets;

use super::forward::entry::id as document_id;
use super::forward::{Deliver, Entry};
use crate::metrics::Metrics;
use crate::vocab::{FileMeta, Flags, Record};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Records taken into one append (and one commit) at most.
const MAX_BATCH: usize = 2000;
/// How long a batch waits for more records once it has one.
const GATHER: Duration = Duration::from_millis(20);

/// A consumer in `group_id` subscribed to `topics`; `client` holds the connection settings.
pub fn consumer(
    mut client: ClientConfig,
    cfg: &crate::config::KafkaInput,
) -> Result<StreamConsumer, rdkafka::error::KafkaError> {
    let session = cfg.session_timeout.0.as_millis();
    client
        .set("group.id", &cfg.group_id)
        .set("client.id", "logferry")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 3).max(100).to_string())
        .set("log_level", "4");
    let consumer: StreamConsumer = client.create()?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// Where a consumer's records go, and what it keeps.
pub struct Input {
    pub group: String,
    pub out: Arc<dyn Deliver>,
    /// Every input's positions in the buffer (shared: one snapshot heads each segment).
    pub offsets: Arc<Offsets>,
    pub metrics: Arc<Metrics>,
}

/// Consumes until the agent stops (the task is dropped, or the output is closed).
pub async fn run(consumer: StreamConsumer, input: Input) {
    let mut failing = false;
    loop {
        let first = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "kafka input: cannot consume; retrying");
                }
                failing = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failing = false;
        let mut batch = Batch::default();
        batch.take(&first, &input);
        drop(first);
        while batch.entries.len() < MAX_BATCH {
            match tokio::time::timeout(GATHER, consumer.recv()).await {
                Ok(Ok(m)) => batch.take(&m, &input),
                _ => break,
            }
        }
        let Batch {
            entries,
            next,
            skipped,
        } = batch;
        let count = entries.len() as u64;
        let out = input.out.clone();
        let positions = Offsets::payload(&input.group, &next);
        let delivered = tokio::task::spawn_blocking(move || out.deliver(entries, positions))
            .await
            .ok()
            .and_then(Result::ok);
        // Stopping, or never durable: nothing is committed, and the next start (or the
        // partition's next owner) consumes these records again.
        let Some(durable) = delivered else { return };
        if durable.await.is_err() {
            return;
        }
        input.offsets.durable(&input.group, &next);
        input.metrics.kafka_input_records.inc_by(count);
        input.metrics.kafka_input_skipped.inc_by(skipped);
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            // The partition moved to another member meanwhile: it consumes from the last
            // commit, and what this one buffered twice is a 409.
            tracing::debug!(error = %e, "kafka input: commit failed");
        }
    }
}

/// The records of one append, and each partition's next offset after them.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    next: BTreeMap<(String, i32), i64>,
    /// Consumed again, but in the buffer already (below its position there).
    skipped: u64,
}

impl Batch {
    fn take(&mut self, m: &BorrowedMessage<'_>, input: &Input) {
        let at = self
            .next
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(m.offset() + 1);
        *at = (*at).max(m.offset() + 1);
        let held = input
            .offsets
            .resume_at(&input.group, m.topic(), m.partition());
        if held.is_some_and(|next| m.offset() < next) {
            if self.skipped == 0 {
                tracing::info!(
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    buffered_to = held,
                    "kafka input: the group resumes before what the buffer holds; skipping to the buffer's position"
                );
            }
            self.skipped += 1;
            return;
        }
        if let Some(e) = entry(m) {
            self.entries.push(e);
        }
    }
}

fn entry(m: &BorrowedMessage<'_>) -> Option<Entry> {
    let value = m.payload()?;
    let (mut index, mut id) = (None, None);
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            match (h.key, h.value) {
                ("_index", Some(v)) => index = Some(String::from_utf8_lossy(v).into_owned()),
                ("_id", Some(v)) => id = Some(v.to_vec()),
                _ => {}
            }
        }
    }
    let id = match id {
        Some(id) if id.len() == 32 => id.try_into().ok()?,
        // Another shape of id, or none: one derived from it, or from where the record is.
        Some(other) => document_id(&[b"id".as_slice(), &other], 0),
        None => document_id(
            &[b"kafka", m.topic().as_bytes(), &m.partition().to_le_bytes()],
            m.offset() as u64,
        ),
    };
    let ms = m
        .timestamp()
        .to_millis()
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Some(Entry {
        record: Record {
            time: Cow::Owned(time),
            stream: None,
            message: Cow::Owned(value.to_vec()),
            offset: 0,
            flags: Flags::default(),
        },
        meta: FileMeta::default(),
        id,
        finished: index,
    })
}
