//! Handing durable records to shippers as batches, in order.
//!
//! Frames are checked (magic, length, CRC) through a small window as a batch is taken; damage
//! found here is skipped, counted and logged once. A batch holds only where its items are.

use super::*;
use std::sync::atomic::Ordering;

/// How soon a read of the buffer that failed is tried again.
const READ_RETRY: Duration = Duration::from_secs(1);

impl Buffer {
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
            self.wait_for_data(notified).await;
        }
    }

    /// Waits for `notified` (records made durable, a batch given back, the buffer closed or
    /// failed), and no longer than [`READ_RETRY`] while reading fails: a failed read is tried
    /// again then. A quiet buffer wakes nobody.
    pub(super) async fn wait_for_data(&self, notified: tokio::sync::futures::Notified<'_>) {
        // Not the reading lock: another shipper holds it for the whole read of its batch.
        if self.read_failing.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(READ_RETRY, notified).await;
        } else {
            notified.await;
        }
    }

    /// A read failed: said once per run of failures, and idle shippers retry on a timer
    /// (`read_failing`, which they read without the reading lock).
    fn read_failed(&self, reader: &mut Reader, segment: u64, e: &std::io::Error) {
        reader.failed(segment, e);
        self.read_failing.store(true, Ordering::Relaxed);
    }

    /// Takes the next batch of durable records, if there is one now.
    pub fn read_batch(&self, limit: usize) -> Option<Batch> {
        self.read_batch_into(limit, &mut ())
    }

    /// [`Buffer::read_batch`], handing `into` each item of the batch as its frame is checked.
    pub fn read_batch_into(&self, limit: usize, into: &mut dyn ReadInto) -> Option<Batch> {
        let mut reader = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let (id, from, to) = self.next_span(&mut reader)?;
            let file = match &reader.file {
                Some((open, f)) if *open == id => f.clone(),
                _ => match File::open(segment_path(&self.opts.dir, id)) {
                    Ok(f) => reader.file.insert((id, Arc::new(f))).1.clone(),
                    Err(e) => {
                        self.read_failed(&mut reader, id, &e);
                        return None;
                    }
                },
            };
            into.start();
            match read_frames(&file, (from, to), limit, &mut reader.window, into) {
                Ok(Read::Frames { items, end, .. }) if items.is_empty() => {
                    // Only positions: nothing to ship; the next read starts after them.
                    let mut st = self.state();
                    if st.read.segment == id && st.read.offset == from {
                        st.read.offset = end;
                        drop(st);
                        // The ack cursor may have moved with it.
                        self.moved.send_replace(());
                    }
                }
                Ok(Read::Frames {
                    items,
                    end,
                    oldest_ms,
                    newest_ms,
                }) => {
                    let span = (
                        Position {
                            segment: id,
                            offset: from,
                        },
                        end,
                    );
                    let batch = self.hand_out(span, file, items, (oldest_ms, newest_ms));
                    if reader.failures > 0 {
                        self.read_failing.store(false, Ordering::Relaxed);
                        tracing::info!(
                            failures = std::mem::take(&mut reader.failures),
                            "the buffer is readable again"
                        );
                    }
                    return Some(batch);
                }
                Ok(Read::Corrupt { at, next }) => self.skip_corrupt(&mut reader, id, at, next),
                Err(e) => {
                    self.read_failed(&mut reader, id, &e);
                    return None;
                }
            }
        }
    }

    /// Where the next durable frames are: a segment and a byte range in it. Moves the read
    /// position past deleted segments, known damage and sealed segments read to their end.
    fn next_span(&self, reader: &mut Reader) -> Option<(u64, u64, u64)> {
        let mut st = self.state();
        if let Some((open, _)) = &reader.file
            && st.segment(*open).is_none()
        {
            // Deleted: the space of a file is freed only once nobody holds it open, and on a
            // small volume the next segment is waiting for that space.
            reader.file = None;
        }
        loop {
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
            if read.offset < seg.durable {
                return Some((seg.id, read.offset, seg.durable));
            }
            if !(seg.sealed && seg.durable == seg.written) {
                return None;
            }
            st.read = Position {
                segment: next?,
                offset: DATA_START,
            };
        }
    }

    /// Records the frames from `span.0` to `span.1` as a batch in flight, and hands it out.
    fn hand_out(
        &self,
        span: (Position, u64),
        file: Arc<File>,
        items: Vec<(u64, u32)>,
        (oldest_ms, newest_ms): (u64, u64),
    ) -> Batch {
        let mut st = self.state();
        let seq = st.next_batch;
        st.next_batch += 1;
        st.in_flight.insert(
            seq,
            InFlight {
                start: span.0,
                records: items.len() as u64,
                oldest_ms,
                done: false,
            },
        );
        st.read.offset = span.1;
        st.last_read_ms = Some(newest_ms);
        let mut batch = Batch::in_segment(file, items);
        batch.seq = seq;
        batch.oldest_ms = oldest_ms;
        batch
    }

    /// Damage that appeared after start-up: skip it, count it, say it once.
    fn skip_corrupt(&self, reader: &mut Reader, id: u64, at: u64, next: u64) {
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
}

/// Where the items of a batch go as the buffer reads them to hand the batch out: a shipper
/// builds its first request body from these bytes instead of reading them a second time.
pub trait ReadInto: Send {
    /// A new batch is being read: forget the items of any read before.
    fn start(&mut self);
    /// The next item of the batch, its frame checked.
    fn item(&mut self, payload: &[u8]);
}

/// Nowhere: the batch alone.
impl ReadInto for () {
    fn start(&mut self) {}
    fn item(&mut self, _: &[u8]) {}
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
    (from, to): (u64, u64),
    limit: usize,
    window: &mut Vec<u8>,
    into: &mut dyn ReadInto,
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
                    into.item(payload);
                    size += payload.len();
                    oldest = oldest.min(time_ms);
                    newest = newest.max(time_ms);
                    p += frame_len;
                }
                // What the sources had written: for start-up, not for shipping.
                frame::Frame::Positions { len: frame_len, .. }
                | frame::Frame::Link { len: frame_len, .. } => p += frame_len,
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
