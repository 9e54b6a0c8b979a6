//! Making appends durable and acknowledgements final.
//!
//! The committer thread fsyncs what the [`Appender`](super::Appender) wrote (group commit),
//! then makes it readable and reports the file positions that waited for it ("durable up to
//! here", through a callback: the buffer does not know what a checkpoint is). Shippers'
//! acknowledgements move the ack cursor; segments it has passed are deleted, and the cursor is
//! saved so that a restart resumes there.

use super::*;

impl Buffer {
    /// Runs the committer on this thread until [`Buffer::stop_committing`]: fsyncs what the
    /// appender wrote, then makes it readable and calls `durable` with the file positions its
    /// chunks carried (the agent moves the checkpoints there).
    pub fn commit_loop(&self, mut durable: impl FnMut(Vec<(FileKey, u64)>)) {
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
            let synced = match self.sync(&batch) {
                Ok(synced) => synced,
                Err(e) => {
                    // After a failed fsync the kernel may have dropped the dirty pages while
                    // reporting success to a retry (PostgreSQL's "fsyncgate"): nothing written since
                    // the last good fsync can be trusted. Stop moving checkpoints; the agent exits
                    // and its next start reads those lines again.
                    let msg = format!("fsync of the buffer failed: {e}");
                    tracing::error!(error = %msg, "the buffer can no longer be trusted; the agent stops and re-reads the unconfirmed lines after restart");
                    self.state().fatal = Some(msg);
                    self.data.notify_waiters();
                    self.data.notify_one();
                    self.moved.send_replace(());
                    self.failed.notify_waiters();
                    return;
                }
            };
            if !synced {
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
                durable(p.advances);
                p.waiters.call();
            }
            // After the checkpoints moved: the saver wakes to positions worth saving.
            self.moved.send_replace(());
        }
    }

    /// Fsyncs the files in `batch`, and the directory if one of them is new. `Ok(false)` when
    /// the directory could not even be opened and the committer is stopping: nothing is
    /// confirmed, and those lines are read again after the restart.
    fn sync(&self, batch: &[Pending]) -> std::io::Result<bool> {
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
            let Some(dir) = self.open_dir_patiently() else {
                return Ok(false);
            };
            dir.sync_all()?;
        }
        Ok(true)
    }

    /// Opens the buffer's directory for its fsync, waiting as long as that fails. A failed
    /// open — no descriptor left (EMFILE, ENFILE) above all — says nothing about what was
    /// written, unlike a failed fsync: it is waited out (backing off to a second, counted in
    /// `logferry_buffer_sync_open_waits_total`, logged once), never fatal. `None` only when
    /// the committer is asked to stop meanwhile.
    fn open_dir_patiently(&self) -> Option<File> {
        let dir = &self.opts.dir;
        let mut wait = Duration::from_millis(10);
        let mut failures = 0u64;
        loop {
            let e = match disk::open_dir(dir) {
                Ok(f) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "the buffer's directory opens again; commits go on"
                        );
                        self.state().problem = None;
                    }
                    return Some(f);
                }
                Err(e) => e,
            };
            if failures == 0 {
                let why = if disk::out_of_descriptors(&e) {
                    "no file descriptor is free"
                } else {
                    "the directory cannot be opened"
                };
                tracing::error!(dir = %dir.display(), error = %e, "cannot open the buffer's directory for its fsync ({why}); nothing is lost, commits wait and retry");
                self.state().problem = Some(format!(
                    "cannot open the buffer's directory for its fsync: {e}"
                ));
            }
            failures += 1;
            self.metrics.buffer_sync_open_waits.inc();
            if self
                .commits
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .stop
            {
                return None;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// The committer finishes what is pending and returns.
    pub fn stop_committing(&self) {
        self.commits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.commit_ready.notify_all();
    }

    pub(super) fn commit(&self, p: Pending) {
        self.commits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .push(p);
        self.commit_ready.notify_all();
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
        drop(st);
        self.moved.send_replace(());
    }

    /// Deletes the segments the ack cursor has passed.
    pub(super) fn release(&self, st: &mut State) {
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
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
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
}
