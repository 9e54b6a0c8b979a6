//! The tailer's way out, as the agent wires it: each record the tailer hands on is encoded
//! ([`crate::encode`]) straight into the open [`Chunk`], which is appended to the disk buffer
//! when it is full, when it has waited `flush_interval`, and at the end of every read pass. A
//! full buffer (or disk) blocks the append, and with it the reading thread: that is the
//! backpressure. Discovery runs on a thread of its own and never comes here, so a blocked append
//! cannot keep a new file from being opened.
//!
//! Here rather than in `source::files` or `buffer`: it is the one place that knows both the encoder and
//! the buffer, and neither of those knows the other or the tailer.

use crate::buffer::{Appender, Chunk};
use crate::config;
use crate::encode::ItemEncoder;
use crate::metrics::Metrics;
use crate::parse::DocumentWriter;
use crate::route::Router;
use crate::source::files::Output;
use crate::vocab::FileMeta;
use crate::vocab::{FileKey, Record};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The buffer's one appender, shared by the tailer and the forward listeners.
pub type SharedAppender = Arc<Mutex<Appender>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Asked while an append waits for room in the buffer (or on the disk): shows the waiting
/// thread is alive, and says whether to give up (shutdown).
pub type GiveUp = Box<dyn Fn() -> bool + Send>;

/// The open chunk, the encoder that fills it, and the buffer it goes to.
pub struct BufferOutput {
    chunk: Chunk,
    encoder: ItemEncoder,
    /// Shared with the forward listeners: one writer of the buffer at a time.
    appender: SharedAppender,
    /// Chunks are sealed at this size (a write to the buffer; batches span chunks).
    chunk_limit: usize,
    /// An item on its way from a full chunk to the next one.
    carry: Vec<u8>,
    metrics: Arc<Metrics>,
    /// Per-record counters, looked up once rather than per line.
    counters: RecordCounters,
    /// Called while an append waits; true gives up (shutdown).
    give_up: GiveUp,
    /// A chunk was dropped at shutdown; nothing more may be handed on.
    abandoned: bool,
    flush_interval: Duration,
}

impl BufferOutput {
    pub fn new(
        encoder: ItemEncoder,
        appender: SharedAppender,
        metrics: Arc<Metrics>,
        give_up: GiveUp,
        cfg: &config::Config,
    ) -> BufferOutput {
        BufferOutput {
            chunk: Chunk::new(),
            counters: RecordCounters::new(&encoder, &metrics),
            encoder,
            // Smaller than a batch: the chunk is the tailer's memory, and it is reused.
            chunk_limit: cfg.buffer.write_chunk_max(),
            carry: Vec::new(),
            appender,
            metrics,
            give_up,
            abandoned: false,
            flush_interval: cfg.buffer.flush_interval.0,
        }
    }

    /// Appends the open chunk to the buffer.
    fn seal(&mut self) {
        if self.abandoned {
            return;
        }
        let written = lock(&self.appender).append(&mut self.chunk, &self.give_up);
        if written.is_err() {
            // Shutting down while the buffer (or disk) is full: these lines are not buffered,
            // so their checkpoints did not move and the next start reads them again. Every later
            // chunk must be dropped too: committing one would move checkpoints past these lines.
            self.abandoned = true;
            tracing::info!(
                records = self.chunk.items.len(),
                "shutdown while the buffer was full; unbuffered lines will be read again on restart"
            );
        }
    }
}

impl Output for BufferOutput {
    /// Encodes one record into the open chunk. If the item overflows the chunk, the full chunk
    /// is sealed with `before` as the file's offset and the item starts the next one.
    fn emit(&mut self, key: &FileKey, rec: &Record, meta: &FileMeta, before: u64) {
        if meta.excluded {
            self.metrics.kubernetes_excluded.inc();
            return;
        }
        if meta.partial {
            self.metrics.kubernetes_partial.inc();
        }
        self.chunk.begin_item();
        let encoded = self.encoder.encode(&mut self.chunk.body, key, rec, meta);
        if !self.counters.count(encoded, rec.flags) {
            self.chunk.cancel_item();
            return;
        }
        self.chunk.end_item();
        if self.chunk.body.len() > self.chunk_limit && self.chunk.items.len() > 1 {
            // The item starts the next chunk: its frame moves out and back in after the append.
            let last = self.chunk.items.pop().map_or(0, |s| s as usize);
            self.carry.clear();
            self.carry.extend_from_slice(&self.chunk.body[last..]);
            self.chunk.body.truncate(last);
            self.chunk.advance(*key, before);
            self.seal();
            if !self.abandoned {
                self.chunk.push_frame(&self.carry);
            }
        } else if self.chunk.body.len() >= self.chunk_limit {
            self.chunk.advance(*key, before);
            self.seal();
        }
    }

    /// Also where a long pass (a big backlog) hands its chunk on once it has waited
    /// `flush_interval`: checking per block, not per line, keeps the clock off the hot path.
    fn block_done(&mut self, key: FileKey, offset: u64) {
        self.chunk.advance(key, offset);
        if !self.chunk.items.is_empty() && self.chunk.created.elapsed() >= self.flush_interval {
            self.seal();
        }
    }

    fn advance(&mut self, key: FileKey, offset: u64) {
        self.chunk.advance(key, offset);
    }

    fn flush(&mut self) {
        self.seal();
    }

    /// Routes, parse and redaction are rebuilt from `cfg`: records already in the chunk were
    /// encoded under the old ones and go as they are.
    fn reconfigure(&mut self, cfg: &config::Config) {
        match encoder(cfg, &self.metrics, Some(&self.encoder)) {
            Ok(encoder) => {
                let key = |e: &ItemEncoder| e.redactor().and_then(crate::redact::Redactor::key_tag);
                if let (Some(old), Some(new)) = (key(&self.encoder), key(&encoder))
                    && old != new
                {
                    tracing::warn!(
                        "redact.hash_key_file changed: hash tags from now on differ from earlier ones for the same values"
                    );
                }
                self.counters = RecordCounters::new(&encoder, &self.metrics);
                self.encoder = encoder;
            }
            // The reloader built the same encoder before accepting the config.
            Err(e) => {
                tracing::error!(error = %e, "cannot apply the reloaded routes, parse or redaction; keeping the previous ones")
            }
        }
        self.chunk_limit = cfg.buffer.write_chunk_max();
        self.flush_interval = cfg.buffer.flush_interval.0;
    }
}

/// What turns a record into a bulk item, as `cfg` asks: its route, its fields, its redactions.
/// `previous` is the encoder this one replaces at a reload: its hash key is kept when the key
/// file has not changed.
pub fn encoder(
    cfg: &config::Config,
    metrics: &Metrics,
    previous: Option<&ItemEncoder>,
) -> anyhow::Result<ItemEncoder> {
    let router = Router::new(cfg).map_err(|e| anyhow::anyhow!(e))?;
    let previous = previous.and_then(ItemEncoder::redactor);
    let redactor = crate::redact::Redactor::new(&cfg.redact, metrics, previous)?
        .map(|r| Arc::new(r.with_target(&cfg.parse.target)));
    let documents = DocumentWriter::new(&cfg.parse);
    Ok(ItemEncoder::new(router, documents).redacting(redactor))
}

pub(super) struct RecordCounters {
    ok: Counter,
    invalid_utf8: Counter,
    truncated: Counter,
    malformed: Counter,
    unterminated: Counter,
    joined: Counter,
    json_failed: Counter,
    /// Per route, by [`crate::route::RouteId`].
    routed: Vec<Counter>,
    dropped: Vec<Counter>,
}

impl RecordCounters {
    /// Looked up once per encoder: the routes are its.
    pub(super) fn new(encoder: &ItemEncoder, metrics: &Metrics) -> RecordCounters {
        let outcome = |name| metrics.records.get_or_create(&[("outcome", name)]).clone();
        let per_route = |family: &Family<Vec<(&'static str, String)>, Counter>| {
            encoder
                .router()
                .names()
                .map(|name| {
                    family
                        .get_or_create(&vec![("route", name.to_owned())])
                        .clone()
                })
                .collect()
        };
        RecordCounters {
            ok: outcome("ok"),
            invalid_utf8: outcome("invalid_utf8"),
            truncated: outcome("truncated"),
            malformed: outcome("malformed"),
            unterminated: outcome("unterminated"),
            joined: outcome("partial_joined"),
            json_failed: metrics.json_failures.clone(),
            routed: per_route(&metrics.route_records),
            dropped: per_route(&metrics.route_dropped),
        }
    }
}

impl RecordCounters {
    /// Counts what became of one record; false when its route dropped it (nothing to keep).
    pub(super) fn count(
        &self,
        encoded: crate::encode::Encoded,
        flags: crate::vocab::Flags,
    ) -> bool {
        self.routed[encoded.route].inc();
        if encoded.dropped {
            self.dropped[encoded.route].inc();
            return false;
        }
        let outcome = encoded.outcome;
        self.ok.inc();
        for (set, counter) in [
            (outcome.invalid_utf8, &self.invalid_utf8),
            (outcome.json_failed, &self.json_failed),
            (flags.truncated, &self.truncated),
            (flags.malformed, &self.malformed),
            (flags.unterminated, &self.unterminated),
            (flags.joined, &self.joined),
        ] {
            if set {
                counter.inc();
            }
        }
        true
    }
}
