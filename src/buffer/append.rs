//! The tailer's side: writing chunks into the open segment, within the size limit.
//!
//! [`Appender::append`] reserves room under the overflow policy, writes the chunk with one
//! write and hands it to the committer. A failed write is cut back off and retried; a full
//! disk makes it wait, visibly.

use super::*;

impl Buffer {
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
                    OverflowAction::DropOldestSegment => tracing::warn!(
                        max_size = self.opts.max_size,
                        "the buffer is full: its oldest unsent chunks are dropped (counted in logferry_buffer_dropped_records_total)"
                    ),
                }
            }
            if self.opts.overflow == OverflowAction::DropOldestSegment && self.drop_oldest(&mut st)
            {
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
    /// Where the active segment's head (its magic and positions snapshot) ends.
    head: u64,
    /// The active segment's file was created since the last commit.
    new_file: bool,
    /// The sources' positions, written after each chunk's records and at the head of each
    /// segment; none for a buffer without a source that resumes (tests, checks).
    positions: Vec<Arc<dyn Positions>>,
    /// The segment this appender sealed last, and its length: the next one links to it.
    sealed: Option<(u64, u64)>,
}

impl Appender {
    pub fn new(buffer: Arc<Buffer>) -> Appender {
        Appender {
            buffer,
            active: None,
            written: 0,
            head: 0,
            new_file: false,
            positions: Vec::new(),
            sealed: None,
        }
    }

    /// Keeps `positions`' positions in the buffer beside the records (see [`Positions`]), as
    /// well as those of the sources added before.
    #[must_use]
    pub fn with_positions(mut self, positions: Arc<dyn Positions>) -> Appender {
        self.positions.push(positions);
        self
    }

    pub fn buffer(&self) -> &Arc<Buffer> {
        &self.buffer
    }

    /// Writes the chunk's items to the active segment; once the committer has fsynced them,
    /// the chunk's checkpoint advances apply. The chunk is left empty for reuse. Waits while the
    /// buffer or the disk is full; returns `Err` with the chunk untouched if `give_up` says to
    /// stop waiting (shutdown).
    pub fn append(&mut self, chunk: &mut Chunk, give_up: impl Fn() -> bool) -> Result<(), GaveUp> {
        let records_end = chunk.body.len();
        if !chunk.advances.is_empty() {
            for p in &self.positions {
                let payload = p.after(&chunk.advances);
                // Empty when none of the files is known to the source (yet): nothing to keep.
                if !payload.is_empty() {
                    frame::encode_positions(&mut chunk.body, chunk.created_ms, &payload);
                }
            }
        }
        if !chunk.positions.is_empty() {
            frame::encode_positions(&mut chunk.body, chunk.created_ms, &chunk.positions);
        }
        let written = self.append_frames(chunk, &give_up);
        if written.is_err() {
            // Untouched for the caller: the positions frame is written with the next attempt.
            chunk.body.truncate(records_end);
        }
        written
    }

    fn append_frames(
        &mut self,
        chunk: &mut Chunk,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(), GaveUp> {
        if chunk.body.is_empty() {
            // Advances without records (blank lines, a block that ended mid-line) must still
            // wait for the records appended before them.
            if !chunk.advances.is_empty() || !chunk.on_durable.is_empty() {
                self.buffer.commit(Pending {
                    segment: self.active.as_ref().map_or(0, |a| a.0),
                    file: None,
                    upto: 0,
                    new_file: false,
                    advances: std::mem::take(&mut chunk.advances),
                    waiters: std::mem::take(&mut chunk.on_durable),
                });
            }
            chunk.clear();
            return Ok(());
        }
        if !self.write_waiting(&chunk.body, give_up) {
            return Err(GaveUp);
        }
        let Some((id, file)) = &self.active else {
            return Ok(());
        };
        {
            let mut st = self.buffer.state();
            st.bytes += chunk.body.len() as u64;
            st.records += chunk.items.len() as u64;
            if let Some(seg) = st.segment(*id) {
                seg.written = self.written;
                seg.records += chunk.items.len() as u64;
                if !chunk.items.is_empty() {
                    seg.first_ms.get_or_insert(chunk.created_ms);
                }
            }
        }
        self.buffer.commit(Pending {
            segment: *id,
            file: Some(file.clone()),
            upto: self.written,
            new_file: std::mem::take(&mut self.new_file),
            advances: std::mem::take(&mut chunk.advances),
            waiters: std::mem::take(&mut chunk.on_durable),
        });
        chunk.clear();
        Ok(())
    }

    /// Writes `frames` once there is room for them, in the buffer and on the disk; false if
    /// `give_up` said to stop waiting.
    fn write_waiting(&mut self, frames: &[u8], give_up: &dyn Fn() -> bool) -> bool {
        let buffer = self.buffer.clone();
        let mut failures = 0u64;
        loop {
            if !buffer.reserve(frames.len() as u64, give_up, &mut || self.seal()) {
                return false;
            }
            let e = match self.write(frames) {
                Ok(()) => break,
                Err(e) => e,
            };
            if failures == 0 {
                tracing::error!(dir = %buffer.opts.dir.display(), error = %e, "cannot write the buffer; reading pauses and the write is retried every second (nothing is lost)");
            }
            failures += 1;
            buffer.metrics.buffer_write_errors.inc();
            {
                let mut st = buffer.state();
                st.problem = Some(format!("cannot write the buffer: {e}"));
                st.problem_since.get_or_insert_with(Instant::now);
            }
            // The segment being written is left to be shipped and deleted (on a volume
            // smaller than a segment, the disk fills before the segment does, and an open
            // segment is never deleted): the next attempt starts a new one, and writes as
            // soon as the old one's space is free.
            if self.written > self.head {
                self.seal();
            }
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                if give_up() {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if failures > 0 {
            tracing::info!(failures, "the buffer is writable again");
            let mut st = buffer.state();
            st.problem = None;
            st.problem_since = None;
        }
        true
    }

    /// Writes `frames` at the end of the active segment, starting a new one when it is full.
    /// A failed write is cut back off, so the segment never holds a torn frame behind good ones.
    fn write(&mut self, frames: &[u8]) -> std::io::Result<()> {
        let len = frames.len() as u64;
        let full = self.written > self.head && self.written + len > self.buffer.opts.segment_size;
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
        let file = disk::private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut head = frame::SEGMENT_MAGIC.to_vec();
        if let Some((previous, length)) = self.sealed.filter(|_| !self.positions.is_empty()) {
            frame::encode_link(&mut head, now_ms(), previous, length);
        }
        for p in &self.positions {
            let snapshot = p.snapshot();
            if !snapshot.is_empty() {
                frame::encode_positions(&mut head, now_ms(), &snapshot);
            }
        }
        if let Err(e) = file.write_all_at(&head, 0) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let written = head.len() as u64;
        let mut st = self.buffer.state();
        st.bytes += written;
        st.segments.push_back(Segment {
            id,
            durable: DATA_START,
            written,
            records: 0,
            sealed: false,
            corrupt: Vec::new(),
            first_ms: None,
        });
        drop(st);
        self.active = Some((id, Arc::new(file)));
        self.written = written;
        self.head = written;
        self.new_file = true;
        Ok(())
    }

    /// Closes the active segment: the next append starts a new one.
    fn seal(&mut self) {
        let Some((id, _)) = self.active.take() else {
            return;
        };
        self.sealed = Some((id, self.written));
        let mut st = self.buffer.state();
        if let Some(seg) = st.segment(id) {
            seg.sealed = true;
            seg.written = self.written;
        }
        self.buffer.release(&mut st);
    }
}
