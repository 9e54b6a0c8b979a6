//! The tailer's way out: each line read is decoded, parsed and encoded straight into the open
//! [`Chunk`], which is appended to the disk buffer when it is full, when it has waited
//! `flush_interval`, and at the end of every read pass. A full buffer (or disk) blocks the
//! append, and with it the reading thread: that is the backpressure. Discovery runs on a thread
//! of its own and never comes here, so a blocked append cannot keep a new file from being opened.

use super::{FileKey, TailerState};
use crate::buffer::{Appender, Chunk};
use crate::config;
use crate::kube::cache::{Cache, FileMeta};
use crate::metrics::Metrics;
use crate::sink::ItemEncoder;
use crate::vocab::Record;
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The tailer hands its chunk to the buffer at this size at most (less with a smaller
/// chunk_limit_size).
const CHUNK_WRITE: usize = 1024 * 1024;

/// The tailer's way out: the open chunk, the encoder that fills it, and the buffer it goes to.
pub struct Output {
    chunk: Chunk,
    encoder: ItemEncoder,
    appender: Appender,
    /// Chunks are sealed at this size (a write to the buffer; batches span chunks).
    chunk_limit: usize,
    /// An item on its way from a full chunk to the next one.
    carry: Vec<u8>,
    pub(super) metrics: Arc<Metrics>,
    /// Per-record counters, looked up once rather than per line.
    counters: RecordCounters,
    pub(super) shutdown: Arc<AtomicBool>,
    /// A chunk was dropped at shutdown; nothing more may be handed on.
    abandoned: bool,
    /// Beaten while waiting for the buffer, so a long wait is not taken for a stall.
    pub(super) state: Arc<TailerState>,
    /// Pod metadata from the API server, when `[kubernetes]` is enabled.
    pub(super) kube: Option<Arc<Cache>>,
    /// How long lines of a pod the cache does not know wait for it.
    pub(super) wait_for_metadata: Duration,
    /// A physical line longer than this is cut before decoding: twice the message cap leaves
    /// room for the runtime's prefix and docker's JSON escaping.
    pub(super) max_physical_line: usize,
    flush_interval: Duration,
}

impl Output {
    /// Documents get their pod's metadata from `cache`.
    #[must_use]
    pub fn with_kubernetes(mut self, cache: Arc<Cache>) -> Output {
        self.kube = Some(cache);
        self
    }

    pub fn new(
        encoder: ItemEncoder,
        appender: Appender,
        metrics: Arc<Metrics>,
        shutdown: Arc<AtomicBool>,
        cfg: &config::Config,
    ) -> Output {
        let outcome = |name| metrics.records.get_or_create(&[("outcome", name)]).clone();
        let counters = RecordCounters {
            ok: outcome("ok"),
            invalid_utf8: outcome("invalid_utf8"),
            truncated: outcome("truncated"),
            malformed: outcome("malformed"),
            unterminated: outcome("unterminated"),
            joined: outcome("partial_joined"),
            json_failed: metrics.json_failures.clone(),
        };
        Output {
            chunk: Chunk::new(),
            encoder,
            // Smaller than a batch: the chunk is the tailer's memory, and it is reused.
            chunk_limit: appender.buffer().chunk_limit().min(CHUNK_WRITE),
            carry: Vec::new(),
            appender,
            counters,
            metrics,
            shutdown,
            abandoned: false,
            state: Arc::new(TailerState::default()),
            kube: None,
            wait_for_metadata: cfg.kubernetes.wait_for_metadata.0,
            max_physical_line: cfg.input.max_line_bytes.as_usize() * 2 + 4096,
            flush_interval: cfg.buffer.flush_interval.0,
        }
    }

    /// Encodes one record. `before` is the file's safe offset before this record: if the item
    /// overflows the chunk, the full chunk is sealed with that offset and the item starts the
    /// next one.
    pub(super) fn emit(&mut self, key: &FileKey, rec: &Record, meta: &FileMeta, before: u64) {
        if meta.excluded {
            self.metrics.kubernetes_excluded.inc();
            return;
        }
        if meta.partial {
            self.metrics.kubernetes_partial.inc();
        }
        let outcome = self
            .encoder
            .encode(&mut self.chunk, key, rec, &meta.fields, meta.parse_json);
        let c = &self.counters;
        c.ok.inc();
        for (set, counter) in [
            (outcome.invalid_utf8, &c.invalid_utf8),
            (outcome.json_failed, &c.json_failed),
            (rec.flags.truncated, &c.truncated),
            (rec.flags.malformed, &c.malformed),
            (rec.flags.unterminated, &c.unterminated),
            (rec.flags.joined, &c.joined),
        ] {
            if set {
                counter.inc();
            }
        }
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

    /// A block of `key` was handled up to `offset`. Also where a long pass (a big backlog)
    /// hands its chunk on once it has waited `flush_interval`: checking per block, not per
    /// line, keeps the clock off the hot path.
    pub(super) fn block_done(&mut self, key: FileKey, offset: u64) {
        self.chunk.advance(key, offset);
        if !self.chunk.items.is_empty() && self.chunk.created.elapsed() >= self.flush_interval {
            self.seal();
        }
    }

    pub(super) fn advance(&mut self, key: FileKey, offset: u64) {
        self.chunk.advance(key, offset);
    }

    /// Appends the open chunk to the buffer.
    pub(super) fn seal(&mut self) {
        if self.abandoned {
            return;
        }
        let (shutdown, state) = (&self.shutdown, &self.state);
        if self
            .appender
            .append(&mut self.chunk, || {
                state.beat();
                shutdown.load(Ordering::Relaxed)
            })
            .is_err()
        {
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

struct RecordCounters {
    ok: Counter,
    invalid_utf8: Counter,
    truncated: Counter,
    malformed: Counter,
    unterminated: Counter,
    joined: Counter,
    json_failed: Counter,
}
