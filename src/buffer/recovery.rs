//! Opening the buffer: what a previous run left is checked before anything is read.
//!
//! Segments the saved ack cursor has passed are deleted; the others are scanned frame by frame.
//! Torn last writes are cut off, corrupt frames skipped, files that are not segments moved
//! aside — each counted and logged once — and everything else is kept.

use super::*;

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
