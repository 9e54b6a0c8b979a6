//! `[[input.kafka]]`: the aggregator's consumer of the topic node agents produce to.
//!
//! A record a node agent produced (`[kafka]`) carries its document as the value and its
//! `_index` and `_id` as headers: it is buffered as it is, under that id, so a record consumed
//! twice (a rebalance, an aggregator killed before it committed) is a 409 in Elasticsearch,
//! not a copy, and node → Kafka → aggregator → Elasticsearch is exactly once. A record without
//! those headers (another producer's JSON) goes through this agent's pipeline like a
//! forwarded one, with an id from its topic, partition, offset and content: consumed again,
//! the same id.
//!
//! Offsets are kept in the buffer beside the records as their positions ([`positions`]), and
//! committed to the group once durable: a consumer that dies before then leaves them to be
//! consumed again, never skipped, and a record consumed again that the buffer holds already
//! is not buffered twice. Consuming waits while the buffer is full (`overflow_action =
//! "block"`): back-pressure, the records stay in Kafka.

mod health;
mod positions;

pub use health::Consuming;
pub use positions::{Mark, Next, Offsets};

use super::forward::entry::id as document_id;
use super::forward::{Deliver, Entry};
use crate::metrics::Metrics;
use crate::vocab::{FileMeta, Flags, Record};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Records taken into one append (and one commit) at most.
const MAX_BATCH: usize = 2000;
/// How long a batch waits for more records once it has one.
const GATHER: Duration = Duration::from_millis(20);
/// While consuming fails, how long to wait for a record before asking the brokers instead.
const PROBE: Duration = Duration::from_secs(5);

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
    /// The connection settings, for checking positions at start.
    pub client: ClientConfig,
    pub out: Arc<dyn Deliver>,
    /// Every input's positions in the buffer (shared: one snapshot heads each segment).
    pub offsets: Arc<Offsets>,
    /// Whether each input consumes, for `/health`.
    pub consuming: Arc<Consuming>,
    pub metrics: Arc<Metrics>,
}

/// Consumes until the agent stops (the task is dropped, or the output is closed).
pub async fn run(consumer: StreamConsumer, input: Input) {
    let (client, group) = (input.client.clone(), input.group.clone());
    let marks = input.offsets.of_group(&group);
    let mut resume = if marks.is_empty() {
        HashMap::new()
    } else {
        tokio::task::spawn_blocking(move || verify(&client, &group, marks))
            .await
            .unwrap_or_default()
    };
    let consumer = Arc::new(consumer);
    loop {
        let Some(first) = next(&consumer, &input).await else {
            continue;
        };
        let mut batch = Batch::default();
        batch.take(&first, &mut resume);
        drop(first);
        while batch.entries.len() < MAX_BATCH {
            match tokio::time::timeout(GATHER, consumer.recv()).await {
                Ok(Ok(m)) => batch.take(&m, &mut resume),
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
        for ((topic, partition), mark) in &next {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(mark.next));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            // The partition moved to another member meanwhile: it consumes from the last
            // commit, and what this one buffered twice is a 409.
            tracing::debug!(error = %e, "kafka input: commit failed");
        }
    }
}

/// The next record, or `None` after a failure (reported in `/health`, retried after a pause).
async fn next<'c>(consumer: &'c Arc<StreamConsumer>, input: &Input) -> Option<BorrowedMessage<'c>> {
    let received = if input.consuming.is_failing(&input.group) {
        // A quiet topic would never say the brokers are back: they are asked.
        match tokio::time::timeout(PROBE, consumer.recv()).await {
            Ok(received) => received,
            Err(_) => {
                let c = consumer.clone();
                let answered = tokio::task::spawn_blocking(move || c.fetch_metadata(None, PROBE));
                if matches!(answered.await, Ok(Ok(_))) {
                    input.consuming.works(&input.group);
                }
                return None;
            }
        }
    } else {
        consumer.recv().await
    };
    match received {
        Ok(m) => {
            input.consuming.works(&input.group);
            Some(m)
        }
        Err(e) => {
            if input.consuming.failed(&input.group, &e.to_string()) {
                tracing::warn!(error = %e, "kafka input: cannot consume; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

/// The records of one append, and each partition's mark after them.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    next: Next,
    /// Consumed again, but in the buffer already (below its verified position there).
    skipped: u64,
}

/// Where partitions resume past the group's offsets: their positions in the buffer, checked.
type Resume = HashMap<(String, i32), i64>;

impl Batch {
    fn take(&mut self, m: &BorrowedMessage<'_>, resume: &mut Resume) {
        let at = (m.topic().to_owned(), m.partition());
        let mark = Mark {
            next: m.offset() + 1,
            last: fingerprint(m),
        };
        let held = resume.get(&at).copied();
        match self.next.get_mut(&at) {
            Some(m) if m.next >= mark.next => {}
            Some(m) => *m = mark,
            None => {
                self.next.insert(at.clone(), mark);
            }
        }
        match held {
            Some(next) if m.offset() < next => {
                if self.skipped == 0 {
                    tracing::info!(
                        topic = m.topic(),
                        partition = m.partition(),
                        offset = m.offset(),
                        buffered_to = next,
                        "kafka input: the group resumes before what the buffer holds; skipping to the buffer's position"
                    );
                }
                self.skipped += 1;
                return;
            }
            // Past the position: never needed again.
            Some(_) => {
                resume.remove(&at);
            }
            None => {}
        }
        if let Some(e) = entry(m, mark.last) {
            self.entries.push(e);
        }
    }
}

/// What a record is, to tell a partition's log from another one under the same name.
fn fingerprint(m: &BorrowedMessage<'_>) -> u64 {
    let key = m.key().unwrap_or_default();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(&m.timestamp().to_millis().unwrap_or(-1).to_le_bytes());
    h.update(m.payload().unwrap_or_default());
    h.digest()
}

/// The marks whose record is still where the buffer saw it: the broker is asked for the
/// record before each position, and a mark is believed only if it is there with the same
/// fingerprint (within 10 s; unreachable brokers believe none, and the group's offsets rule).
fn verify(client: &ClientConfig, group: &str, marks: Next) -> Resume {
    let mut believed = Resume::new();
    let consumer: BaseConsumer = match client
        .clone()
        // librdkafka wants a group even to assign; this one never joins or commits.
        .set("group.id", format!("{group}.positions"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "kafka input: cannot check the buffer's positions; the group's offsets rule");
            return believed;
        }
    };
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), mark) in &marks {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(mark.next - 1));
    }
    if consumer.assign(&tpl).is_err() {
        return believed;
    }
    // A partition shorter than its position (the topic is another one now) answers nothing,
    // or out of range: doubted once the time is up.
    let mut open: std::collections::HashSet<_> = marks.keys().cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !open.is_empty() && std::time::Instant::now() < deadline {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let at = (m.topic().to_owned(), m.partition());
        if open.remove(&at) {
            let mark = marks[&at];
            if (m.offset(), fingerprint(&m)) == (mark.next - 1, mark.last) {
                believed.insert(at, mark.next);
            }
        }
    }
    let doubted = marks.len() - believed.len();
    tracing::info!(
        believed = believed.len(),
        doubted,
        "kafka input: positions in the buffer checked against the broker (a doubted one: its record is gone or another; the group's offsets rule there)"
    );
    believed
}

/// `m` as an entry; `print` is its [`fingerprint`].
fn entry(m: &BorrowedMessage<'_>, print: u64) -> Option<Entry> {
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
        // Another shape of id, or none: one derived from it, or from where the record is and
        // what it is (a topic made again under its name has other records at the same
        // offsets: they must not be taken for the old ones).
        Some(other) => document_id(&[b"id".as_slice(), &other], 0),
        None => document_id(
            &[
                b"kafka",
                m.topic().as_bytes(),
                &m.partition().to_le_bytes(),
                &print.to_le_bytes(),
            ],
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
