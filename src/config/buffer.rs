//! The `[buffer]` section: the durable disk buffer between the tailer and the shippers, and
//! the shippers' pace (batch size, requests in flight, retries).
//!
//! `chunk_limit_size` (Fluentd's name, kept for its users) plays three roles; read it through
//! [`Buffer::segment_size`], [`Buffer::batch_max_bytes`] and [`Buffer::write_chunk_max`], which
//! say which one a caller means.

use super::{ByteSize, Span};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buffer {
    /// Upper bound on how long a record waits before its batch is sent. When the shipper is
    /// idle a batch goes out at once; batches only grow while requests are in flight.
    pub flush_interval: Span,
    /// Upper bound of one bulk request body (before compression), which is also the size of
    /// a buffer segment and bounds the tailer's chunk: see the accessors below.
    pub chunk_limit_size: ByteSize,
    /// Where the buffer's segment files live; `${data_dir}` stands for `data_dir`. Default
    /// `${data_dir}/buffer`.
    pub path: Option<String>,
    /// Upper bound of the buffer's files on disk (Fluentd's `total_limit_size`).
    pub max_size: ByteSize,
    /// What a full buffer does: `block` pauses reading (nothing is lost), `drop_oldest_chunk`
    /// deletes the oldest segment no request has started on, and counts its records.
    pub overflow_action: OverflowAction,
    /// Bulk requests in flight at once.
    pub flush_thread_count: usize,
    /// The first retry waits about this long; each further retry doubles it, with full jitter.
    pub retry_wait: Span,
    /// The longest wait between two retries.
    pub retry_max_interval: Span,
    /// Retry for as long as it takes (the default). When false, records still failing after
    /// `retry_timeout` go to the dead-letter store.
    pub retry_forever: bool,
    pub retry_timeout: Span,
}

/// What a full buffer does (`buffer.overflow_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowAction {
    /// `block`: reading pauses until acknowledgements free room; nothing is lost.
    Block,
    /// `drop_oldest_chunk`: the oldest sealed segment no shipper has started on is deleted
    /// whole, its records counted as dropped. The TOML value keeps Fluentd's name (its buffer
    /// unit is a chunk) so that a Fluentd user's config reads the same; here it is a segment.
    #[serde(rename = "drop_oldest_chunk")]
    DropOldestSegment,
}

/// The most bytes the tailer gathers in memory before handing them to the buffer in one write,
/// whatever `chunk_limit_size` is: the chunk is reused, so this is the tailer's memory.
const WRITE_CHUNK_MAX: usize = 1024 * 1024;

impl Buffer {
    /// Role 1, the buffer's segment size: a segment file is sealed once the next write would
    /// take it past this many bytes, and is deleted whole once acknowledged
    /// (`buffer::Options::segment_size`). Also the unit of the free-space warning: the
    /// buffer's volume should hold several segments (`buffer::check_free_space`).
    #[must_use]
    pub fn segment_size(&self) -> u64 {
        self.chunk_limit_size.0
    }

    /// Role 2, the cap of a shipped batch: a shipper leases at most this many bytes of bulk
    /// items, so one `_bulk` request body (before compression) stays under it. A batch is
    /// never split to fit, so one item larger than this still goes alone.
    #[must_use]
    pub fn batch_max_bytes(&self) -> usize {
        self.chunk_limit_size.as_usize()
    }

    /// Role 3, the cap of the tailer's in-memory chunk: encoded items are gathered up to this
    /// size and then written to the buffer at once. Smaller than a batch (at most 1 MiB),
    /// because the chunk is the tailer's memory; batches span chunks.
    #[must_use]
    pub fn write_chunk_max(&self) -> usize {
        self.batch_max_bytes().min(WRITE_CHUNK_MAX)
    }
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer {
            flush_interval: Span(Duration::from_secs(1)),
            chunk_limit_size: ByteSize(5 * 1024 * 1024),
            path: None,
            max_size: ByteSize(1 << 30),
            overflow_action: OverflowAction::Block,
            flush_thread_count: 2,
            retry_wait: Span(Duration::from_secs(1)),
            retry_max_interval: Span(Duration::from_secs(30)),
            retry_forever: true,
            retry_timeout: Span(Duration::from_secs(72 * 3600)),
        }
    }
}
