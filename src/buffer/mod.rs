//! The durable buffer between reading and shipping.
//!
//! Owns the records that have been read but not yet acknowledged by Elasticsearch, on disk under
//! `buffer.path`: append-only segment files of CRC-checked frames (see [`frame`]), one encoded
//! bulk item (action line + document line) per frame.
//!
//! - **In**: the tailer's [`Appender`] writes a [`Chunk`] of items with one `write`; the
//!   committer thread fsyncs whatever has been written since its last fsync (group commit: one
//!   fsync covers every chunk that arrived meanwhile, never one per line) and only then reports
//!   the file positions the chunk carried as durable (the agent moves the checkpoints there). A
//!   file's checkpoint therefore never passes a line that is not durable here.
//! - **Out**: shippers take batches of durable items in order ([`Buffer::next_batch`]) and
//!   acknowledge them in any order ([`Buffer::acknowledge`]); the ack cursor is the start of the
//!   oldest batch not yet acknowledged. A segment file is deleted once the ack cursor has passed
//!   all of it, and the cursor is saved to `cursor.json` within a second of moving, so a restart
//!   resumes where acknowledgements stopped. What was in flight at a crash is sent again: its
//!   deterministic ids make the replay 409s, not duplicates.
//! - **Limits**: `max_size` bounds the files. When it is reached, `block` makes the appender wait
//!   (reading pauses); `drop_oldest_chunk` deletes the oldest segment no shipper has started on
//!   and counts its records as dropped. A full disk makes the appender wait too, and says so.
//! - **Start-up**: every segment is checked. A torn last write is cut off; a corrupt frame is
//!   skipped; a damaged segment header is rewritten and its frames kept; a segment that cannot
//!   be read, or is not a segment, is moved aside. All of it is counted and logged once: the
//!   agent never fails to start over its own files.
//! - **Files**: segments and the cursor are `0600` in a `0700` directory (see [`crate::disk`]).

mod append;
mod batch;
mod commit;
pub mod frame;
mod health;
mod lease;
mod positions;
mod read;
mod recovery;

pub use append::{Appender, GaveUp};
pub use batch::{Batch, Pieces};
pub use lease::Lease;
pub use positions::Positions;
pub use read::ReadInto;
pub use recovery::check_free_space;

use crate::config::OverflowAction;
use crate::disk;
use crate::metrics::Metrics;
use crate::vocab::FileKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the buffer directory {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the buffer at {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the buffer segment {path} is of format {version}, written by a later version of logferry; this version reads formats 1 and 2 and stops rather than set it aside as damage (run the later version, or move the buffer away)"
    )]
    Newer { path: PathBuf, version: u8 },
    #[error("cannot write the buffer cursor {path}: {source}")]
    Cursor {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Encoded bulk items on their way into the buffer: the tailer fills one and appends it. Items
/// are written straight into their frames, so appending is one write with no copy; shippers
/// read them back as [`Batch`]es.
#[derive(Debug)]
pub struct Chunk {
    /// Frames back to back, each holding an action line and a document line.
    pub body: Vec<u8>,
    /// Where each frame starts in `body`; it ends where the next starts.
    pub items: Vec<u32>,
    /// File offsets a checkpoint may move to once the chunk is durable.
    pub advances: Vec<(FileKey, u64)>,
    /// When the first item was encoded, for the tailer's flush timing.
    pub created: Instant,
    /// The same, in Unix ms: the time written into every frame of the chunk.
    created_ms: u64,
    /// Called once the chunk's records are durable (a forwarder's ack waits for it); dropped
    /// uncalled when they never become durable (shutdown while full, a failed fsync).
    pub on_durable: Waiters,
    /// Positions a source states for this chunk itself (the Kafka input's offsets), written
    /// after its records like the tailer's (see [`Positions`]).
    pub positions: Vec<u8>,
}

/// What waits for a chunk to be durable.
#[derive(Default)]
pub struct Waiters(Vec<Box<dyn FnOnce() + Send>>);

impl Waiters {
    pub fn push(&mut self, f: impl FnOnce() + Send + 'static) {
        self.0.push(Box::new(f));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn call(self) {
        for f in self.0 {
            f();
        }
    }
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Waiters({})", self.0.len())
    }
}

impl Chunk {
    pub fn new() -> Chunk {
        Chunk {
            body: Vec::new(),
            items: Vec::new(),
            advances: Vec::new(),
            created: Instant::now(),
            created_ms: now_ms(),
            on_durable: Waiters::default(),
            positions: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.advances.is_empty() && self.on_durable.is_empty()
    }

    /// Starts an item: what is written to `body` until [`Chunk::end_item`] is its payload.
    pub fn begin_item(&mut self) {
        self.start_item();
        self.body.extend_from_slice(&[0; frame::HEADER]);
    }

    fn start_item(&mut self) {
        if self.items.is_empty() {
            self.created = Instant::now();
            self.created_ms = now_ms();
        }
        // Chunks are sealed at min(chunk_limit_size, 1 MiB), far below 4 GiB.
        self.items.push(self.body.len() as u32);
    }

    /// Takes back the item begun last, before it was ended (its route dropped it).
    pub fn cancel_item(&mut self) {
        if let Some(start) = self.items.pop() {
            self.body.truncate(start as usize);
        }
    }

    /// Adds an item already framed (by another chunk: it did not fit there).
    pub fn push_frame(&mut self, frame: &[u8]) {
        self.start_item();
        self.body.extend_from_slice(frame);
    }

    /// Ends the item begun last: fills in its frame header.
    pub fn end_item(&mut self) {
        let start = self.items.last().map_or(0, |&s| s as usize);
        frame::seal(&mut self.body[start..], self.created_ms);
    }

    /// Adds one whole item.
    pub fn push_item(&mut self, item: &[u8]) {
        self.begin_item();
        self.body.extend_from_slice(item);
        self.end_item();
    }

    /// Records that once this chunk is durable, `key`'s checkpoint may be `offset`.
    pub fn advance(&mut self, key: FileKey, offset: u64) {
        match self.advances.iter_mut().find(|(k, _)| *k == key) {
            Some((_, o)) => *o = (*o).max(offset),
            None => self.advances.push((key, offset)),
        }
    }

    /// Empties the chunk, keeping its memory for the next one.
    fn clear(&mut self) {
        self.body.clear();
        self.items.clear();
        self.advances.clear();
        self.positions.clear();
    }
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk::new()
    }
}

/// How the buffer is laid out and limited.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    /// Upper bound of all segment files together.
    pub max_size: u64,
    /// A segment is closed and a new one started past this size: the unit that is deleted once
    /// acknowledged, and dropped by `drop_oldest_chunk`.
    pub segment_size: u64,
    pub overflow: OverflowAction,
}

/// A place in the buffer: a segment and a byte offset in it, always at a frame boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

const DATA_START: u64 = frame::SEGMENT_MAGIC.len() as u64;
/// A full buffer counts as having room again below this share of `max_size` (hysteresis, so
/// that a buffer hovering at its limit is reported once, not at every append).
const ROOM_AGAIN: f64 = 0.8;
/// How long appends may fail, with nothing buffered that shipping could free, before the
/// buffer counts as stuck rather than waiting out a passing full disk.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

struct Segment {
    id: u64,
    /// Bytes readers may read: written and fsynced.
    durable: u64,
    /// Bytes written, durable or not: the end of the segment's good content.
    written: u64,
    records: u64,
    /// No more appends: once acknowledged to `written`, the file may go.
    sealed: bool,
    /// Ranges that hold no intact frame, found at start-up or while reading.
    corrupt: Vec<(u64, u64)>,
    first_ms: Option<u64>,
}

/// A batch handed to a shipper and not yet acknowledged.
struct InFlight {
    start: Position,
    records: u64,
    oldest_ms: u64,
    done: bool,
}

struct State {
    /// Oldest first; the last one is where the appender writes.
    segments: VecDeque<Segment>,
    /// Size of all segment files.
    bytes: u64,
    /// Records buffered and not yet acknowledged or dropped.
    records: u64,
    /// The next frame a shipper will get.
    read: Position,
    /// Batches by `seq`; the first one's start is the ack cursor.
    in_flight: BTreeMap<u64, InFlight>,
    /// Batches handed out and given back unacknowledged (their shipper failed): handed out
    /// again, first, under the same `seq`.
    returned: VecDeque<Arc<Batch>>,
    next_batch: u64,
    next_segment: u64,
    /// No more batches are handed out (shutdown): what is left stays for the next start.
    closed: bool,
    /// Append time of the last frame handed out, for the age of what follows it.
    last_read_ms: Option<u64>,
    /// The ack cursor as last saved.
    saved: Option<Position>,
    /// Reached `max_size`; said once, until the buffer is below [`ROOM_AGAIN`] of it.
    full: bool,
    /// Why appending is failing right now (a full disk), for `/health`.
    problem: Option<String>,
    /// Since when appending has been failing without a break (monotonic), for telling a
    /// passing full disk from a buffer that is stuck.
    problem_since: Option<Instant>,
    /// An fsync failed: nothing written since can be trusted, and the agent must restart.
    fatal: Option<String>,
}

impl State {
    /// Everything before this is acknowledged.
    fn acked(&self) -> Position {
        self.in_flight
            .values()
            .next()
            .map_or(self.read, |b| b.start)
    }

    /// Why the buffer cannot make progress by itself any more, if it cannot.
    fn stuck(&self, dir: &Path) -> Option<String> {
        let since = self.problem_since?.elapsed();
        if since < STUCK_AFTER || self.records > 0 {
            return None;
        }
        Some(format!(
            "stuck for {} s: {}, and nothing is left to ship and free; make room on the volume of {} (or give buffer.path a larger one)",
            since.as_secs(),
            self.problem.as_deref().unwrap_or("appends fail"),
            dir.display()
        ))
    }

    fn segment(&mut self, id: u64) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.id == id)
    }
}

/// Written since the last fsync, waiting for the committer.
struct Pending {
    segment: u64,
    file: Option<Arc<File>>,
    upto: u64,
    new_file: bool,
    advances: Vec<(FileKey, u64)>,
    waiters: Waiters,
}

#[derive(Default)]
struct Commits {
    pending: Vec<Pending>,
    stop: bool,
}

/// What the metrics and `/health` show about the buffer.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub bytes: u64,
    pub records: u64,
    pub segments: usize,
    /// Age of the oldest record not yet acknowledged.
    pub oldest: Option<Duration>,
    pub max_size: u64,
    pub problem: Option<String>,
    /// Appending has failed for longer than [`STUCK_AFTER`] with nothing left to ship and
    /// free: the buffer will not move again by itself (a volume filled by something else, or
    /// too small). `/health` says unhealthy with this reason.
    pub stuck: Option<String>,
    pub fatal: Option<String>,
}

pub struct Buffer {
    opts: Options,
    state: Mutex<State>,
    /// Signalled when segments are deleted, for an appender waiting for space.
    space: Condvar,
    /// Signalled when records become durable or the buffer closes, for idle shippers.
    data: tokio::sync::Notify,
    /// Bumped when records become durable or acknowledged, and on a fatal error or close: what
    /// a quiet agent's saver sleeps on, instead of a timer.
    moved: tokio::sync::watch::Sender<()>,
    /// Signalled when an fsync failed (see [`Buffer::fatal`]).
    failed: tokio::sync::Notify,
    commits: Mutex<Commits>,
    commit_ready: Condvar,
    /// Readers take batches one at a time, so batches are contiguous and in order.
    reading: Mutex<Reader>,
    /// The last read of the buffer failed (see `Reader::failures`), for idle shippers to retry.
    read_failing: std::sync::atomic::AtomicBool,
    /// Held for a whole cursor save: the periodic save and the one at shutdown can overlap, and
    /// an older cursor renamed over a newer one would send acknowledged records again.
    saving: Mutex<()>,
    metrics: Arc<Metrics>,
    /// The sources' positions found at start-up, until the agent takes them.
    recovered: Mutex<Vec<Vec<u8>>>,
}

#[derive(Default)]
struct Reader {
    /// The segment being read, kept open between batches.
    file: Option<(u64, Arc<File>)>,
    /// A corrupt frame found while reading was already logged.
    logged_corrupt: bool,
    /// Reads failing in a row: logged when it starts, and with the count when it ends.
    failures: u64,
    /// Where frames are checked while a batch is read; kept between batches.
    window: Vec<u8>,
}

impl Reader {
    fn failed(&mut self, segment: u64, e: &std::io::Error) {
        if self.failures == 0 {
            tracing::error!(segment, error = %e, "cannot read the buffer; retrying every second");
        }
        self.failures += 1;
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum StoredCursor {
    #[serde(rename = "1")]
    V1 { acked: Position },
}

impl Buffer {
    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; the state stays consistent if one did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// No more batches are handed out; what is buffered stays for the next start.
    pub fn close(&self) {
        self.state().closed = true;
        self.data.notify_waiters();
        self.data.notify_one();
        self.moved.send_replace(());
    }

    /// Set when an fsync failed: the agent must stop.
    pub fn fatal(&self) -> Option<String> {
        self.state().fatal.clone()
    }

    /// Resolves with the fatal error (see [`Buffer::fatal`]) once there is one. (Not on
    /// `moved`: that changes with every commit, and the state lock is the hot path's.)
    pub async fn failure(&self) -> String {
        loop {
            let failed = self.failed.notified();
            if let Some(e) = self.fatal() {
                return e;
            }
            failed.await;
        }
    }

    /// Changes each time records become durable or acknowledged, and when the buffer fails or
    /// closes (see `moved`).
    pub fn moved(&self) -> tokio::sync::watch::Receiver<()> {
        self.moved.subscribe()
    }

    /// The ack cursor moved since it was last saved.
    pub fn cursor_unsaved(&self) -> bool {
        let st = self.state();
        st.saved != Some(st.acked())
    }

    pub fn stats(&self) -> Stats {
        let st = self.state();
        let oldest_ms = match st.in_flight.values().next() {
            Some(b) => Some(b.oldest_ms),
            None => st
                .segments
                .iter()
                .find(|s| s.id == st.read.segment)
                .filter(|s| st.read.offset < s.written)
                .and_then(|s| {
                    if st.read.offset == DATA_START {
                        s.first_ms
                    } else {
                        st.last_read_ms
                    }
                })
                .or_else(|| {
                    st.segments
                        .iter()
                        .find(|s| s.id > st.read.segment)
                        .and_then(|s| s.first_ms)
                }),
        };
        Stats {
            bytes: st.bytes,
            records: st.records,
            segments: st.segments.len(),
            oldest: oldest_ms.map(|ms| Duration::from_millis(now_ms().saturating_sub(ms))),
            max_size: self.opts.max_size,
            problem: st.problem.clone(),
            stuck: st.stuck(&self.opts.dir),
            fatal: st.fatal.clone(),
        }
    }
}

impl Buffer {
    /// Each segment file with how many of its bytes are durable (fsynced): for the crash tests,
    /// which cut a segment anywhere past this, as a power loss may, and never before it. Not
    /// part of the agent's API.
    #[doc(hidden)]
    pub fn durable_lengths(&self) -> Vec<(PathBuf, u64)> {
        self.state()
            .segments
            .iter()
            .map(|s| (segment_path(&self.opts.dir, s.id), s.durable))
            .collect()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn segment_id(path: &Path) -> Option<u64> {
    if path.extension()? != "seg" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// Wall-clock Unix milliseconds, as frames record them.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
