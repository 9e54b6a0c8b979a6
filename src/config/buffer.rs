//! The `[buffer]` section: the durable disk buffer between the tailer and the shippers, and
//! the shippers' pace (batch size, requests in flight, retries).

use super::{ByteSize, Span};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Buffer {
    /// Upper bound on how long a record waits before its batch is sent. When the shipper is
    /// idle a batch goes out at once; batches only grow while requests are in flight.
    pub flush_interval: Span,
    /// Upper bound of one bulk request body (before compression).
    pub chunk_limit_size: ByteSize,
    /// Where the buffer's segment files live; `${data_dir}` stands for `data_dir`. Default
    /// `${data_dir}/buffer`.
    pub path: Option<String>,
    /// Upper bound of the buffer's files on disk (Fluentd's `total_limit_size`).
    pub max_size: ByteSize,
    /// What a full buffer does: `block` pauses reading (nothing is lost), `drop_oldest_chunk`
    /// deletes the oldest chunk no request has started on, and counts its records.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowAction {
    Block,
    DropOldestChunk,
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
