//! The durable buffer between reading and shipping.
//!
//! Owns the records that have been read but not yet acknowledged by Elasticsearch, on disk under
//! `buffer.path`: append-only segment files of CRC-checked frames (see [`frame`]), one encoded
//! bulk item (action line + document line) per frame.
//!
//! - **In**: the tailer's [`Appender`] writes a [`Chunk`] of items with one `write`; the
//!   committer thread fsyncs whatever has been written since its last fsync (group commit: one
//!   fsync covers every chunk that arrived meanwhile, never one per line) and only then applies
//!   the chunk's checkpoint advances. A file's checkpoint therefore never passes a line that
//!   is not durable here.
//! - **Out**: shippers take batches of durable items in order ([`Buffer::next_batch`]) and
//!   acknowledge them in any order ([`Buffer::acknowledge`]); the ack cursor is the start of the
//!   oldest batch not yet acknowledged. A segment file is deleted once the ack cursor has passed
//!   all of it, and the cursor is saved to `cursor.json` every second, so a restart resumes where
//!   acknowledgements stopped. What was in flight at a crash is sent again: its deterministic ids
//!   make the replay 409s, not duplicates.
//! - **Limits**: `max_size` bounds the files. When it is reached, `block` makes the appender wait
//!   (reading pauses); `drop_oldest_chunk` deletes the oldest segment no shipper has started on
//!   and counts its records as dropped. A full disk makes the appender wait too, and says so.
//! - **Start-up**: every segment is checked. A torn last write is cut off; a corrupt frame is
//!   skipped; both are counted and logged once. A file that is not a segment is moved aside.

mod batch;
pub mod frame;

pub use batch::{Batch, Pieces};

use crate::config::OverflowAction;
use crate::disk;
use crate::observe::Metrics;
use crate::tail::{Checkpoints, FileKey};
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
}

impl Chunk {
    pub fn new() -> Chunk {
        Chunk {
            body: Vec::new(),
            items: Vec::new(),
            advances: Vec::new(),
            created: Instant::now(),
            created_ms: now_ms(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.advances.is_empty()
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
        // Chunks are sealed at chunk_limit_size, far below 4 GiB.
        self.items.push(self.body.len() as u32);
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
    pub fatal: Option<String>,
}

pub struct Buffer {
    opts: Options,
    state: Mutex<State>,
    /// Signalled when segments are deleted, for an appender waiting for space.
    space: Condvar,
    /// Signalled when records become durable or the buffer closes, for idle shippers.
    data: tokio::sync::Notify,
    commits: Mutex<Commits>,
    commit_ready: Condvar,
    /// Readers take batches one at a time, so batches are contiguous and in order.
    reading: Mutex<Reader>,
    metrics: Arc<Metrics>,
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
    /// Opens the buffer, recovering what a previous run left: segments before the saved ack
    /// cursor are deleted, the others checked frame by frame.
    pub fn open(opts: Options, metrics: Arc<Metrics>) -> Result<Buffer, Error> {
        let dir = &opts.dir;
        fs::create_dir_all(dir).map_err(|source| Error::Create {
            path: dir.clone(),
            source,
        })?;
        let read_err = |source| Error::Read {
            path: dir.clone(),
            source,
        };
        let cursor = load_cursor(&dir.join("cursor.json"));
        let mut ids: Vec<u64> = fs::read_dir(dir)
            .map_err(read_err)?
            .filter_map(|e| e.ok())
            .filter_map(|e| segment_id(&e.path()))
            .collect();
        ids.sort_unstable();

        let mut segments = VecDeque::new();
        let (mut bytes, mut records) = (0, 0);
        let (mut torn, mut corrupt) = (0u64, 0u64);
        for id in ids.iter().copied() {
            let path = segment_path(dir, id);
            if cursor.is_some_and(|c| id < c.segment) {
                // Acknowledged; deleting it was cut short.
                let _ = fs::remove_file(&path);
                continue;
            }
            let content = fs::read(&path).map_err(read_err)?;
            let Some(scan) = frame::scan(&content) else {
                let mut aside = path.clone().into_os_string();
                aside.push(".corrupt");
                tracing::error!(path = %path.display(), "not a buffer segment; moved aside");
                fs::rename(&path, &aside).map_err(read_err)?;
                corrupt += 1;
                continue;
            };
            if scan.torn > 0 {
                // A write cut short by a crash or a full disk: its chunk was never fsynced, so
                // no checkpoint moved past it, and those lines are read again.
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(read_err)?;
                f.set_len(scan.end).map_err(read_err)?;
                f.sync_all().map_err(read_err)?;
                torn += 1;
            }
            corrupt += scan.corrupt.len() as u64;
            if scan.records == 0 {
                let _ = fs::remove_file(&path);
                continue;
            }
            let from = match cursor {
                Some(c) if c.segment == id => c.offset.min(scan.end),
                _ => DATA_START,
            };
            records += frames_from(&content[..scan.end as usize], from, &scan.corrupt);
            bytes += scan.end;
            segments.push_back(Segment {
                id,
                durable: scan.end,
                written: scan.end,
                records: scan.records,
                sealed: true,
                corrupt: scan.corrupt,
                first_ms: scan.first_ms,
            });
        }
        if torn > 0 || corrupt > 0 {
            tracing::error!(
                torn_writes = torn,
                corrupt_records = corrupt,
                "the buffer was damaged (a crash mid-write, or the disk); the damaged parts were cut out and everything else is kept"
            );
        }
        metrics
            .buffer_damage
            .get_or_create(&[("kind", "torn_write")])
            .inc_by(torn);
        metrics
            .buffer_damage
            .get_or_create(&[("kind", "corrupt_record")])
            .inc_by(corrupt);
        // Never reuse an id at or below the cursor: start-up deletes those as acknowledged.
        let next_segment = ids
            .last()
            .map_or(0, |l| l + 1)
            .max(cursor.map_or(0, |c| c.segment + 1));
        let read = match (cursor, segments.front()) {
            (Some(c), Some(s)) if c.segment == s.id => Position {
                segment: s.id,
                offset: c.offset.clamp(DATA_START, s.written),
            },
            (_, Some(s)) => Position {
                segment: s.id,
                offset: DATA_START,
            },
            (_, None) => Position {
                segment: next_segment,
                offset: DATA_START,
            },
        };
        if !segments.is_empty() {
            tracing::info!(
                segments = segments.len(),
                records,
                bytes,
                "resuming the buffer"
            );
        }
        Ok(Buffer {
            state: Mutex::new(State {
                segments,
                bytes,
                records,
                read,
                in_flight: BTreeMap::new(),
                next_batch: 0,
                next_segment,
                closed: false,
                last_read_ms: None,
                full: false,
                saved: cursor,
                problem: None,
                fatal: None,
            }),
            opts,
            space: Condvar::new(),
            data: tokio::sync::Notify::new(),
            commits: Mutex::new(Commits::default()),
            commit_ready: Condvar::new(),
            reading: Mutex::new(Reader::default()),
            metrics,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; the state stays consistent if one did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The largest body a batch may have.
    pub fn chunk_limit(&self) -> usize {
        self.opts.segment_size as usize
    }

    /// Runs the committer on this thread until [`Buffer::stop_committing`]: fsyncs what the
    /// appender wrote, then makes it readable and moves the checkpoints.
    pub fn commit_loop(&self, checkpoints: &Checkpoints) {
        loop {
            let batch = {
                let mut c = self.commits.lock().unwrap_or_else(PoisonError::into_inner);
                while c.pending.is_empty() && !c.stop {
                    c = self
                        .commit_ready
                        .wait(c)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if c.pending.is_empty() {
                    return;
                }
                std::mem::take(&mut c.pending)
            };
            if let Err(e) = self.sync(&batch) {
                // After a failed fsync the kernel may have dropped the dirty pages while
                // reporting success to a retry (PostgreSQL's "fsyncgate"): nothing written since
                // the last good fsync can be trusted. Stop moving checkpoints; the agent exits
                // and its next start reads those lines again.
                let msg = format!("fsync of the buffer failed: {e}");
                tracing::error!(error = %msg, "the buffer can no longer be trusted; the agent stops and re-reads the unconfirmed lines after restart");
                self.state().fatal = Some(msg);
                self.data.notify_waiters();
                self.data.notify_one();
                return;
            }
            {
                let mut st = self.state();
                for p in &batch {
                    if let Some(seg) = st.segment(p.segment) {
                        seg.durable = seg.durable.max(p.upto);
                    }
                }
            }
            self.data.notify_one();
            for p in batch {
                checkpoints.advance(p.advances);
            }
        }
    }

    fn sync(&self, batch: &[Pending]) -> std::io::Result<()> {
        let mut synced: Vec<u64> = Vec::new();
        // Later entries for a segment cover earlier ones: fsync each file once.
        for p in batch.iter().rev() {
            if let Some(f) = &p.file
                && !synced.contains(&p.segment)
            {
                f.sync_data()?;
                synced.push(p.segment);
            }
        }
        if batch.iter().any(|p| p.new_file) {
            disk::sync_dir(&self.opts.dir)?;
        }
        Ok(())
    }

    /// The committer finishes what is pending and returns.
    pub fn stop_committing(&self) {
        self.commits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.commit_ready.notify_all();
    }

    fn commit(&self, p: Pending) {
        self.commits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .push(p);
        self.commit_ready.notify_all();
    }

    /// No more batches are handed out; what is buffered stays for the next start.
    pub fn close(&self) {
        self.state().closed = true;
        self.data.notify_waiters();
        self.data.notify_one();
    }

    /// Set when an fsync failed: the agent must stop.
    pub fn fatal(&self) -> Option<String> {
        self.state().fatal.clone()
    }

    /// The next batch of at most `limit` bytes (one larger item goes alone), waiting for one;
    /// `None` once the buffer is closed.
    pub async fn next_batch(&self, limit: usize) -> Option<Batch> {
        loop {
            let notified = self.data.notified();
            {
                let st = self.state();
                if st.closed || st.fatal.is_some() {
                    return None;
                }
            }
            if let Some(batch) = self.read_batch(limit) {
                // Another shipper may be idle, and there may be more.
                self.data.notify_one();
                return Some(batch);
            }
            // Woken by new data, or after a while anyway: a read that failed is tried again.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Takes the next batch of durable records, if there is one now.
    pub fn read_batch(&self, limit: usize) -> Option<Batch> {
        let mut reader = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let (id, from, to) = {
                let mut st = self.state();
                let read = st.read;
                let next = st
                    .segments
                    .iter()
                    .find(|s| s.id > read.segment)
                    .map(|s| s.id);
                let Some(seg) = st.segment(read.segment) else {
                    // Deleted (acknowledged) or dropped: move on to the next one.
                    st.read = Position {
                        segment: next?,
                        offset: DATA_START,
                    };
                    continue;
                };
                if let Some(&(_, end)) = seg.corrupt.iter().find(|c| c.0 == read.offset) {
                    st.read.offset = end;
                    continue;
                }
                if read.offset >= seg.durable {
                    if seg.sealed && seg.durable == seg.written {
                        st.read = Position {
                            segment: next?,
                            offset: DATA_START,
                        };
                        continue;
                    }
                    return None;
                }
                (seg.id, read.offset, seg.durable)
            };
            let file = match &reader.file {
                Some((open, f)) if *open == id => f.clone(),
                _ => match File::open(segment_path(&self.opts.dir, id)) {
                    Ok(f) => reader.file.insert((id, Arc::new(f))).1.clone(),
                    Err(e) => {
                        reader.failed(id, &e);
                        return None;
                    }
                },
            };
            match read_frames(&file, from, to, limit, &mut reader.window) {
                Ok(Read::Frames {
                    items,
                    end,
                    oldest_ms,
                    newest_ms,
                }) => {
                    let mut st = self.state();
                    let seq = st.next_batch;
                    st.next_batch += 1;
                    st.in_flight.insert(
                        seq,
                        InFlight {
                            start: Position {
                                segment: id,
                                offset: from,
                            },
                            records: items.len() as u64,
                            oldest_ms,
                            done: false,
                        },
                    );
                    st.read.offset = end;
                    st.last_read_ms = Some(newest_ms);
                    if reader.failures > 0 {
                        tracing::info!(
                            failures = std::mem::take(&mut reader.failures),
                            "the buffer is readable again"
                        );
                    }
                    let mut batch = Batch::in_segment(file, items);
                    batch.seq = seq;
                    batch.oldest_ms = oldest_ms;
                    return Some(batch);
                }
                Ok(Read::Corrupt { at, next }) => {
                    // Damage that appeared after start-up: skip it, count it, say it once.
                    self.metrics
                        .buffer_damage
                        .get_or_create(&[("kind", "corrupt_record")])
                        .inc();
                    if !reader.logged_corrupt {
                        reader.logged_corrupt = true;
                        tracing::error!(
                            segment = id,
                            offset = at,
                            "a corrupt record in the buffer was skipped (counted in logferry_buffer_damage_total)"
                        );
                    }
                    let mut st = self.state();
                    if let Some(seg) = st.segment(id) {
                        seg.corrupt.push((at, next));
                    }
                    // At least one record is gone; it will never be acknowledged.
                    st.records = st.records.saturating_sub(1);
                    if st.read.segment == id && st.read.offset == at {
                        st.read.offset = next;
                    }
                }
                Err(e) => {
                    reader.failed(id, &e);
                    return None;
                }
            }
        }
    }

    /// Batch `seq` is done: every record in it is indexed, a duplicate, or dead-lettered.
    pub fn acknowledge(&self, seq: u64) {
        let mut st = self.state();
        if let Some(b) = st.in_flight.get_mut(&seq) {
            b.done = true;
        }
        while let Some(e) = st.in_flight.first_entry() {
            if !e.get().done {
                break;
            }
            let b = e.remove();
            st.records = st.records.saturating_sub(b.records);
        }
        self.release(&mut st);
    }

    /// Deletes the segments the ack cursor has passed.
    fn release(&self, st: &mut State) {
        let acked = st.acked();
        let mut freed = false;
        while let Some(front) = st.segments.front() {
            let done = front.sealed
                && (front.id < acked.segment
                    || (front.id == acked.segment && acked.offset >= front.written));
            if !done {
                break;
            }
            let id = front.id;
            let written = front.written;
            st.segments.pop_front();
            st.bytes = st.bytes.saturating_sub(written);
            let _ = fs::remove_file(segment_path(&self.opts.dir, id));
            freed = true;
        }
        if freed {
            self.space.notify_all();
        }
    }

    /// Saves the ack cursor if it moved.
    pub fn save_cursor(&self) -> Result<(), Error> {
        let acked = {
            let st = self.state();
            let acked = st.acked();
            if st.saved == Some(acked) {
                return Ok(());
            }
            acked
        };
        let path = self.opts.dir.join("cursor.json");
        let doc = StoredCursor::V1 { acked };
        serde_json::to_vec(&doc)
            .map_err(std::io::Error::from)
            .and_then(|bytes| disk::write_atomically(&path, &bytes))
            .map_err(|source| Error::Cursor { path, source })?;
        self.state().saved = Some(acked);
        Ok(())
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
            fatal: st.fatal.clone(),
        }
    }

    /// Makes room for `len` more bytes under the overflow policy; false if `give_up` said stop.
    /// `seal` closes the appender's segment, so that it can be deleted once acknowledged.
    fn reserve(&self, len: u64, give_up: &dyn Fn() -> bool, seal: &mut dyn FnMut()) -> bool {
        let mut st = self.state();
        loop {
            // A record larger than the whole limit still goes in once the buffer is empty,
            // rather than blocking reading for ever.
            if st.bytes + len <= self.opts.max_size || st.records == 0 {
                if st.full && (st.bytes as f64) < self.opts.max_size as f64 * ROOM_AGAIN {
                    st.full = false;
                    tracing::info!("the buffer has room again");
                }
                return true;
            }
            if !st.full {
                st.full = true;
                match self.opts.overflow {
                    OverflowAction::Block => tracing::warn!(
                        max_size = self.opts.max_size,
                        "the buffer is full: reading pauses until Elasticsearch catches up"
                    ),
                    OverflowAction::DropOldestChunk => tracing::warn!(
                        max_size = self.opts.max_size,
                        "the buffer is full: its oldest unsent chunks are dropped (counted in logferry_buffer_dropped_records_total)"
                    ),
                }
            }
            if self.opts.overflow == OverflowAction::DropOldestChunk && self.drop_oldest(&mut st) {
                continue;
            }
            if give_up() {
                return false;
            }
            if !st.segments.iter().any(|s| s.sealed) {
                // Everything is in the segment being written, which is never deleted or
                // dropped while open: close it, so that it can go once acknowledged.
                drop(st);
                seal();
                st = self.state();
                self.release(&mut st);
                if st.segments.iter().any(|s| s.sealed) {
                    continue;
                }
            }
            st = self
                .space
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Deletes the oldest segment no shipper has started reading. True if one went.
    fn drop_oldest(&self, st: &mut State) -> bool {
        let read = st.read.segment;
        let Some(i) = st.segments.iter().position(|s| s.sealed && s.id > read) else {
            return false;
        };
        let Some(seg) = st.segments.remove(i) else {
            return false;
        };
        st.bytes = st.bytes.saturating_sub(seg.written);
        st.records = st.records.saturating_sub(seg.records);
        let _ = fs::remove_file(segment_path(&self.opts.dir, seg.id));
        self.metrics.buffer_dropped.inc_by(seg.records);
        tracing::debug!(records = seg.records, "dropped the oldest unsent chunk");
        true
    }
}

enum Read {
    Frames {
        /// Where each item's payload is in the segment: offset and length.
        items: Vec<(u64, u32)>,
        end: u64,
        oldest_ms: u64,
        newest_ms: u64,
    },
    /// No intact frame at `at`; the next one starts at `next`.
    Corrupt { at: u64, next: u64 },
}

/// How much of a segment is checked at once while a batch is read.
const READ_WINDOW: usize = 256 * 1024;

/// Checks the frames in `[from, to)` of a segment, up to about `limit` payload bytes, and says
/// where their payloads are. Reads through a small window: the payloads stay on disk until
/// the batch's request body is built.
fn read_frames(
    file: &File,
    from: u64,
    to: u64,
    limit: usize,
    window: &mut Vec<u8>,
) -> std::io::Result<Read> {
    // A record larger than the window may have grown it last time: read a window at a time again.
    window.resize(READ_WINDOW, 0);
    let mut items = Vec::new();
    let (mut at, mut size, mut oldest, mut newest) = (from, 0usize, u64::MAX, 0u64);
    'windows: while at < to {
        let len = (to - at).min(window.len() as u64) as usize;
        file.read_exact_at(&mut window[..len], at)?;
        let mut p = 0;
        while p < len {
            match frame::decode(&window[p..len]) {
                frame::Frame::Record {
                    time_ms,
                    payload,
                    len: frame_len,
                } => {
                    if !items.is_empty() && size + payload.len() > limit {
                        at += p as u64;
                        break 'windows;
                    }
                    items.push(((at + (p + frame::HEADER) as u64), payload.len() as u32));
                    size += payload.len();
                    oldest = oldest.min(time_ms);
                    newest = newest.max(time_ms);
                    p += frame_len;
                }
                frame::Frame::Incomplete { len: need } if at + (p + need) as u64 <= to => {
                    // The frame goes on past the window: the next window starts with it, and
                    // one record larger than the window gets a window of its own size.
                    if p == 0 {
                        window.resize(need, 0);
                    }
                    break;
                }
                // Damage: the next call reports it, from its start.
                _ if !items.is_empty() => {
                    at += p as u64;
                    break 'windows;
                }
                _ => {
                    let mut rest = vec![0u8; (to - at) as usize];
                    file.read_exact_at(&mut rest, at)?;
                    let next = frame::next_valid(&rest, 1).map_or(to, |n| at + n as u64);
                    return Ok(Read::Corrupt { at, next });
                }
            }
        }
        at += p as u64;
    }
    Ok(Read::Frames {
        items,
        end: at,
        oldest_ms: oldest,
        newest_ms: newest,
    })
}

/// Intact records in `content` at or after `from`.
fn frames_from(content: &[u8], from: u64, corrupt: &[(u64, u64)]) -> u64 {
    let mut at = from as usize;
    let mut n = 0;
    while at < content.len() {
        if let Some(&(_, end)) = corrupt.iter().find(|c| c.0 as usize == at) {
            at = end as usize;
            continue;
        }
        match frame::decode(&content[at..]) {
            frame::Frame::Record { len, .. } => {
                n += 1;
                at += len;
            }
            _ => break,
        }
    }
    n
}

/// The appender stopped waiting for room (shutdown): the chunk was not written.
#[derive(Debug, thiserror::Error)]
#[error("gave up waiting for room in the buffer")]
pub struct GaveUp;

/// The tailer's handle for writing into the buffer.
pub struct Appender {
    buffer: Arc<Buffer>,
    /// The segment being written, and its id and length.
    active: Option<(u64, Arc<File>)>,
    written: u64,
    /// The active segment's file was created since the last commit.
    new_file: bool,
}

impl Appender {
    pub fn new(buffer: Arc<Buffer>) -> Appender {
        Appender {
            buffer,
            active: None,
            written: 0,
            new_file: false,
        }
    }

    pub fn buffer(&self) -> &Arc<Buffer> {
        &self.buffer
    }

    /// Writes the chunk's items to the active segment; once the committer has fsynced them,
    /// the chunk's checkpoint advances apply. The chunk is left empty for reuse. Waits while the
    /// buffer or the disk is full; returns `Err` with the chunk untouched if `give_up` says to
    /// stop waiting (shutdown).
    pub fn append(&mut self, chunk: &mut Chunk, give_up: impl Fn() -> bool) -> Result<(), GaveUp> {
        if chunk.items.is_empty() {
            // Advances without records (blank lines, a block that ended mid-line) must still
            // wait for the records appended before them.
            if !chunk.advances.is_empty() {
                self.buffer.commit(Pending {
                    segment: self.active.as_ref().map_or(0, |a| a.0),
                    file: None,
                    upto: 0,
                    new_file: false,
                    advances: std::mem::take(&mut chunk.advances),
                });
            }
            chunk.clear();
            return Ok(());
        }
        let now = chunk.created_ms;
        let len = chunk.body.len() as u64;
        let mut logged_disk = false;
        let buffer = self.buffer.clone();
        loop {
            if !buffer.reserve(len, &give_up, &mut || self.seal()) {
                return Err(GaveUp);
            }
            match self.write(&chunk.body) {
                Ok(()) => break,
                Err(e) => {
                    let problem = format!("cannot write the buffer: {e}");
                    self.buffer.metrics.buffer_write_errors.inc();
                    if !logged_disk {
                        logged_disk = true;
                        tracing::error!(dir = %self.buffer.opts.dir.display(), error = %e, "cannot write the buffer; reading pauses and the write is retried every second (nothing is lost)");
                    }
                    self.buffer.state().problem = Some(problem);
                    let until = Instant::now() + Duration::from_secs(1);
                    while Instant::now() < until {
                        if give_up() {
                            return Err(GaveUp);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        if logged_disk {
            tracing::info!("the buffer is writable again");
        }
        let Some((id, file)) = &self.active else {
            return Ok(());
        };
        {
            let mut st = self.buffer.state();
            st.problem = None;
            st.bytes += len;
            st.records += chunk.items.len() as u64;
            if let Some(seg) = st.segment(*id) {
                seg.written = self.written;
                seg.records += chunk.items.len() as u64;
                seg.first_ms.get_or_insert(now);
            }
        }
        self.buffer.commit(Pending {
            segment: *id,
            file: Some(file.clone()),
            upto: self.written,
            new_file: std::mem::take(&mut self.new_file),
            advances: std::mem::take(&mut chunk.advances),
        });
        chunk.clear();
        Ok(())
    }

    /// Writes `frames` at the end of the active segment, starting a new one when it is full.
    /// A failed write is cut back off, so the segment never holds a torn frame behind good ones.
    fn write(&mut self, frames: &[u8]) -> std::io::Result<()> {
        let len = frames.len() as u64;
        let full = self.written > DATA_START && self.written + len > self.buffer.opts.segment_size;
        if full {
            self.seal();
        }
        if self.active.is_none() {
            self.start_segment()?;
        }
        let Some((_, file)) = &self.active else {
            return Ok(());
        };
        if let Err(e) = file.write_all_at(frames, self.written) {
            if file.set_len(self.written).is_err() {
                // The tail cannot be cut: leave this segment behind (readers stop at its last
                // good frame, start-up cuts the rest) and write the next attempt elsewhere.
                self.seal();
            }
            return Err(e);
        }
        self.written += len;
        Ok(())
    }

    fn start_segment(&mut self) -> std::io::Result<()> {
        let id = {
            let mut st = self.buffer.state();
            let id = st.next_segment;
            st.next_segment += 1;
            id
        };
        let path = segment_path(&self.buffer.opts.dir, id);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        if let Err(e) = file.write_all_at(frame::SEGMENT_MAGIC, 0) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let mut st = self.buffer.state();
        st.bytes += DATA_START;
        st.segments.push_back(Segment {
            id,
            durable: DATA_START,
            written: DATA_START,
            records: 0,
            sealed: false,
            corrupt: Vec::new(),
            first_ms: None,
        });
        drop(st);
        self.active = Some((id, Arc::new(file)));
        self.written = DATA_START;
        self.new_file = true;
        Ok(())
    }

    /// Closes the active segment: the next append starts a new one.
    fn seal(&mut self) {
        let Some((id, _)) = self.active.take() else {
            return;
        };
        let mut st = self.buffer.state();
        if let Some(seg) = st.segment(id) {
            seg.sealed = true;
            seg.written = self.written;
        }
        self.buffer.release(&mut st);
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

fn load_cursor(path: &Path) -> Option<Position> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice::<StoredCursor>(&bytes) {
        Ok(StoredCursor::V1 { acked }) => Some(acked),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "the buffer cursor is unreadable; shipping resumes from the oldest segment (replays are deduplicated by id)");
            None
        }
    }
}

/// Wall-clock Unix milliseconds, as frames record them.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
