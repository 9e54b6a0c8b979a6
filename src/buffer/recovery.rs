//! Opening the buffer: what a previous run left is checked before anything is read.
//!
//! Segments the saved ack cursor has passed are deleted; the others are scanned frame by frame.
//! Torn last writes are cut off, corrupt frames skipped, a damaged segment header repaired,
//! and a segment that cannot even be read (an I/O error) or is not a segment at all is moved
//! aside as `<name>.corrupt` — each counted in `logferry_buffer_damage_total` and summed up in
//! one log line — and everything else is kept. Nothing about the buffer's own files fails
//! start-up except the directory itself: an agent must never crash-loop on its own files.

use super::*;
use std::os::unix::fs::PermissionsExt;

/// Below this many segments of free space on the buffer's volume, start-up (and `validate`)
/// warn: a segment is written until the disk is full, and needs room for the next one while
/// the last one is shipped.
const FREE_SEGMENTS_WARN: u64 = 3;

/// What start-up found wrong, counted and logged once.
#[derive(Default)]
struct Damage {
    torn: u64,
    corrupt: u64,
    unreadable: u64,
    headers: u64,
}

impl Damage {
    fn report(&self, metrics: &Metrics) {
        if self.torn + self.corrupt + self.unreadable + self.headers > 0 {
            tracing::error!(
                torn_writes = self.torn,
                corrupt_records = self.corrupt,
                unreadable_segments = self.unreadable,
                damaged_headers = self.headers,
                "the buffer was damaged (a crash mid-write, or the disk); the damaged parts were cut out or moved aside as .corrupt and everything else is kept"
            );
        }
        for (kind, n) in [
            ("torn_write", self.torn),
            ("corrupt_record", self.corrupt),
            ("unreadable_segment", self.unreadable),
            ("damaged_header", self.headers),
        ] {
            metrics
                .buffer_damage
                .get_or_create(&[("kind", kind)])
                .inc_by(n);
        }
    }
}

/// One segment as recovered: kept with this many records after the cursor, or gone.
enum Recovered {
    Kept { segment: Segment, unacked: u64 },
    Gone,
}

impl Buffer {
    /// Opens the buffer, recovering what a previous run left: segments before the saved ack
    /// cursor are deleted, the others checked frame by frame.
    pub fn open(opts: Options, metrics: Arc<Metrics>) -> Result<Buffer, Error> {
        let dir = &opts.dir;
        disk::create_private_dir_all(dir).map_err(|source| Error::Create {
            path: dir.clone(),
            source,
        })?;
        if let Some(warning) = check_free_space(dir, opts.segment_size) {
            tracing::warn!("{warning}");
        }
        // Nothing writes the cursor yet: temp files a crash left beside it can go.
        disk::remove_leftover_temp_files(&dir.join("cursor.json"));
        let cursor = load_cursor(&dir.join("cursor.json"));
        let ids = segment_ids(dir)?;
        let mut segments = VecDeque::new();
        let (mut bytes, mut records) = (0, 0);
        let mut damage = Damage::default();
        let mut trail = positions::Trail::default();
        for (i, id) in ids.iter().copied().enumerate() {
            let newest = i + 1 == ids.len();
            if let Recovered::Kept { segment, unacked } =
                recover_segment(dir, id, cursor, &mut damage, (&mut trail, newest))?
            {
                records += unacked;
                bytes += segment.written;
                segments.push_back(segment);
            }
        }
        damage.report(&metrics);
        // Never reuse an id at or below the cursor: start-up deletes those as acknowledged.
        let next_segment = ids
            .last()
            .map_or(0, |l| l + 1)
            .max(cursor.map_or(0, |c| c.segment + 1));
        let read = resume_at(cursor, segments.front(), next_segment);
        if !segments.is_empty() {
            tracing::info!(
                segments = segments.len(),
                records,
                bytes,
                "resuming the buffer"
            );
        }
        let state = State {
            segments,
            bytes,
            records,
            read,
            in_flight: BTreeMap::new(),
            returned: VecDeque::new(),
            next_batch: 0,
            next_segment,
            closed: false,
            last_read_ms: None,
            full: false,
            saved: cursor,
            problem: None,
            problem_since: None,
            fatal: None,
        };
        Ok(Buffer {
            state: Mutex::new(state),
            opts,
            space: Condvar::new(),
            data: tokio::sync::Notify::new(),
            moved: tokio::sync::watch::Sender::new(()),
            failed: tokio::sync::Notify::new(),
            commits: Mutex::new(Commits::default()),
            commit_ready: Condvar::new(),
            reading: Mutex::new(Reader::default()),
            read_failing: Default::default(),
            saving: Mutex::new(()),
            metrics,
            recovered: Mutex::new(trail.payloads),
        })
    }
}

/// The ids of the segment files in `dir`, oldest first.
fn segment_ids(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut ids: Vec<u64> = fs::read_dir(dir)
        .map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| segment_id(&e.path()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Checks one segment left by a previous run; whatever is wrong with it is cut out, repaired or
/// moved aside, and counted in `damage`. Its positions go on the trail (`newest`: it is the
/// last segment). Refuses a segment of a later format.
fn recover_segment(
    dir: &Path,
    id: u64,
    cursor: Option<Position>,
    damage: &mut Damage,
    (trail, newest): (&mut positions::Trail, bool),
) -> Result<Recovered, Error> {
    let path = segment_path(dir, id);
    // Acknowledged: deleting it was cut short. Its positions are still read first.
    let acked = cursor.is_some_and(|c| id < c.segment);
    let content = match fs::read(&path) {
        Ok(c) => c,
        Err(_) if acked => {
            let _ = fs::remove_file(&path);
            return Ok(Recovered::Gone);
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read a buffer segment; moved aside");
            damage.unreadable += 1;
            trail.broken = true;
            move_aside(&path);
            return Ok(Recovered::Gone);
        }
    };
    if let Some(version) = frame::version(&content).filter(|v| v > frame::FORMATS.end()) {
        return Err(Error::Newer { path, version });
    }
    let scan = frame::scan(&content);
    if let Some(scan) = &scan {
        trail.take(id, &content, scan, newest);
    }
    if acked {
        let _ = fs::remove_file(&path);
        return Ok(Recovered::Gone);
    }
    let Some(scan) = scan else {
        tracing::error!(path = %path.display(), "not a buffer segment; moved aside");
        damage.corrupt += 1;
        trail.broken = true;
        move_aside(&path);
        return Ok(Recovered::Gone);
    };
    if let Err(e) = repair(&path, &scan) {
        // Readers stop at the last good frame whatever follows it: keep what is good.
        tracing::error!(path = %path.display(), error = %e, "cannot repair a damaged buffer segment; its good records are kept");
    }
    damage.torn += u64::from(scan.torn > 0);
    damage.headers += u64::from(scan.header_damaged);
    damage.corrupt += scan.corrupt.len() as u64;
    let from = match cursor {
        Some(c) if c.segment == id => c.offset.clamp(DATA_START, scan.end),
        _ => DATA_START,
    };
    let unacked = frames_from(&content[..scan.end as usize], from, &scan.corrupt);
    // Its positions are on the trail: the agent takes them in, and the first chunk it appends
    // (every file it resumes advances) starts a segment that holds them all again.
    if scan.records == 0 || unacked == 0 {
        // Empty, or acknowledged to its end: nothing in it will be read again, and on a small
        // volume the next segment needs its room.
        let _ = fs::remove_file(&path);
        return Ok(Recovered::Gone);
    }
    Ok(Recovered::Kept {
        segment: Segment {
            id,
            durable: scan.end,
            written: scan.end,
            records: scan.records,
            sealed: true,
            corrupt: scan.corrupt,
            first_ms: scan.first_ms,
        },
        unacked,
    })
}

/// Cuts off a torn last write, rewrites a damaged header, and makes a segment left by an older
/// version private.
fn repair(path: &Path, scan: &frame::Scan) -> std::io::Result<()> {
    let wide = fs::metadata(path)?.permissions().mode() & 0o077 != 0;
    if scan.torn == 0 && !scan.header_damaged && !wide {
        return Ok(());
    }
    let f = fs::OpenOptions::new().write(true).open(path)?;
    if wide {
        f.set_permissions(fs::Permissions::from_mode(disk::FILE_MODE))?;
    }
    if scan.torn > 0 {
        // A write cut short by a crash or a full disk: its chunk was never fsynced, so no
        // checkpoint moved past it, and those lines are read again.
        f.set_len(scan.end)?;
    }
    if scan.header_damaged {
        f.write_all_at(frame::SEGMENT_MAGIC, 0)?;
    }
    f.sync_all()
}

/// Renames a segment that cannot be used to `<name>.corrupt`, out of the buffer's way and kept
/// for whoever wants to look at it. If even that fails, it is left where it is: start-up skips
/// it again next time, and new segments never take its id.
fn move_aside(path: &Path) {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    if let Err(e) = fs::rename(path, &aside) {
        tracing::error!(path = %path.display(), error = %e, "cannot move a damaged buffer segment aside; it is skipped");
    }
}

/// Where shippers start: at the saved cursor if its segment is still there, else at the oldest
/// segment's first frame.
fn resume_at(cursor: Option<Position>, oldest: Option<&Segment>, next_segment: u64) -> Position {
    match (cursor, oldest) {
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
    }
}

/// A warning when the volume holding the buffer at `dir` has room for fewer than
/// [`FREE_SEGMENTS_WARN`] segments of `segment_size` bytes; `None` when it has, or when the
/// free space cannot be told. `dir` need not exist yet (for `logferry validate`): the nearest
/// existing parent is asked.
pub fn check_free_space(dir: &Path, segment_size: u64) -> Option<String> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let free = disk::free_space(existing).ok()?;
    let want = segment_size.saturating_mul(FREE_SEGMENTS_WARN);
    (free < want).then(|| {
        format!(
            "the buffer's volume at {} has {} KiB free, less than {FREE_SEGMENTS_WARN} segments of buffer.chunk_limit_size ({} KiB): segments are cut short by a full disk and shipping goes slowly; give buffer.path a larger volume or lower chunk_limit_size",
            dir.display(),
            free / 1024,
            segment_size / 1024
        )
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
            frame::Frame::Positions { len, .. } | frame::Frame::Link { len, .. } => at += len,
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
