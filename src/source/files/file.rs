//! One followed file: its identity, its read position, and the line splitting.

use super::{FileKey, Outlet};
use crate::decode::Decoder;
use crate::kube::PodRef;
use crate::multiline::Joiner;
use crate::vocab::{FileMeta, Record};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A carry buffer grown past this by one long line is given back after the line.
const CARRY_KEEP: usize = 64 * 1024;

/// How many leading bytes identify a file's content: its first line, or this many bytes of it.
const FINGERPRINT_BYTES: usize = 1024;

/// The identity of an open file, or `None` while it has neither a whole first line nor
/// [`FINGERPRINT_BYTES`] bytes (its fingerprint could still change). `force` takes whatever there
/// is, for a file that will not grow any more.
pub fn identify(file: &File, force: bool) -> io::Result<Option<FileKey>> {
    let meta = file.metadata()?;
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < head.len() {
        let r = file.read_at(&mut head[n..], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let end = match memchr::memchr(b'\n', &head[..n]) {
        Some(i) => i + 1,
        None if n == FINGERPRINT_BYTES || (force && n > 0) => n,
        None => return Ok(None),
    };
    let mut key = FileKey::new(
        meta.dev(),
        meta.ino(),
        xxhash_rust::xxh3::xxh3_64(&head[..end]),
    );
    key.born_ns = birth_ns(&meta);
    Ok(Some(key))
}

/// The file's birth time (statx `btime`) in Unix nanoseconds, or 0 where the filesystem does
/// not keep one (the checkpoint then stands in with when the file was first tracked).
fn birth_ns(meta: &std::fs::Metadata) -> i64 {
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

pub struct Tracked {
    pub file: File,
    pub key: FileKey,
    /// The path the include glob matched (a symlink under /var/log/containers, usually).
    pub path: PathBuf,
    /// The file's real path, which is what inotify reports.
    pub real: PathBuf,
    /// Where the next read starts.
    pub read_pos: u64,
    /// Where the line being assembled in `carry` starts.
    pub line_start: u64,
    /// The bytes of a line whose newline has not been read yet.
    pub carry: Vec<u8>,
    /// The current line was longer than the cap; its cut head was emitted and the rest is
    /// skipped up to its newline.
    pub discarding: bool,
    pub decoder: Decoder,
    /// Joins stack traces into one record, when multiline is on for this file's pod.
    pub joiner: Option<Joiner>,
    /// (first offset, end of what was read then) of a record handed on while a line before
    /// its end was still held: see [`Tracked::safe_offset`].
    floor: Option<(u64, u64)>,
    /// What the path says about the pod, for looking it up in the Kubernetes cache.
    pub pod: Option<PodRef>,
    /// The document fields for this file's pod, and what its annotations ask for.
    pub meta: FileMeta,
    /// The cache generation `meta` was looked up at; 0 when never.
    pub meta_generation: u64,
    /// When the file was opened: lines of an unknown pod wait from here, briefly.
    pub opened: Instant,
    /// Set once the file's path points elsewhere (rotated) or is gone (deleted): the file is
    /// read to its end, then let go.
    pub draining: bool,
    /// When it started draining: `rotate_wait` later it is read to its end whatever its
    /// throttle bucket holds (the kubelet compresses a rotated file; a deleted one's lines
    /// live only in the agent's descriptor).
    pub gone_since: Option<Instant>,
    /// Set when a reload's globs no longer match it: read to its end, then let go with its
    /// checkpoint kept.
    pub unmatched: bool,
    /// The last time a read returned data (or the file was opened).
    pub last_data: Instant,
    /// The last time a read reached the end of what was written.
    pub caught_up: Option<Instant>,
    /// The throttle bucket its lines draw from, when throttling applies to it.
    pub throttle_key: Option<Arc<str>>,
}

/// What one call to [`Tracked::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The budget ran out before the end of the file.
    More,
    /// At the end of what is written.
    Eof,
    /// The file is now shorter than what was read: it was truncated.
    Truncated,
}

impl Tracked {
    pub fn open(path: &Path, file: File, key: FileKey, offset: u64, max_message: usize) -> Self {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let pod = PodRef::from_path(path).or_else(|| PodRef::from_path(&real));
        let meta = pod
            .as_ref()
            .map_or_else(FileMeta::default, PodRef::file_meta);
        Tracked {
            file,
            key,
            path: path.to_owned(),
            real,
            read_pos: offset,
            line_start: offset,
            carry: Vec::new(),
            discarding: false,
            decoder: Decoder::new(max_message),
            joiner: None,
            floor: None,
            pod,
            meta,
            meta_generation: 0,
            opened: Instant::now(),
            draining: false,
            gone_since: None,
            unmatched: false,
            last_data: Instant::now(),
            caught_up: None,
            throttle_key: None,
        }
    }

    /// Everything before this offset has been handed on whole: a restart may resume here.
    /// Neither half a record (a partial line) nor a line held in a multiline record is behind
    /// it.
    pub fn safe_offset(&self) -> u64 {
        let held = self.holding();
        let floor = match (self.floor, held) {
            (Some((first, until)), Some(h)) if h < until => Some(first),
            _ => None,
        };
        [held, floor]
            .into_iter()
            .flatten()
            .fold(self.line_start, u64::min)
    }

    /// The oldest line held: half a record in the decoder, a trace in the joiner.
    fn holding(&self) -> Option<u64> {
        let joined = self.joiner.as_ref().and_then(Joiner::held_offset);
        [self.decoder.pending_offset(), joined]
            .into_iter()
            .flatten()
            .min()
    }

    /// A record just handed on from `first` that started before something still held (the two
    /// streams of a file each hold their own: a partial line on stdout while a stderr record
    /// ends, say) holds the checkpoint at `first` until what was held then is handed on too.
    /// Otherwise the checkpoint would sit inside that record, and a restart would ship its
    /// later lines again on their own; from `first`, a restart reads the record whole and
    /// makes it again, under the same id.
    fn mind_the_floor(&mut self, first: Option<u64>) {
        let (Some(first), Some(held)) = (first, self.holding()) else {
            return;
        };
        // Only what was held before the current line can lie inside the record: a line that
        // has just started a record of its own (the next part of a split trace, a new partial)
        // begins after the record's end, and must not hold the checkpoint back — a restart from
        // the middle of a trace would cut it differently.
        let until = self.line_start;
        if first < held && held < until {
            let active = self.floor.filter(|&(_, u)| held < u);
            let first = active.map_or(first, |(f, _)| f.min(first));
            self.floor = Some((first, until));
        }
    }

    /// Reads and emits whole lines until the end of the file or until about `budget` bytes.
    pub fn read(
        &mut self,
        buf: &mut [u8],
        out: &mut Outlet,
        budget: usize,
    ) -> io::Result<ReadOutcome> {
        let mut done = 0;
        loop {
            // The last block is cut to the budget: a throttled pass reads what its bucket
            // holds, not a whole block more.
            let want = buf.len().min(budget.saturating_sub(done).max(1));
            let n = self.file.read_at(&mut buf[..want], self.read_pos)?;
            if n == 0 {
                if self.file.metadata()?.len() < self.read_pos {
                    return Ok(ReadOutcome::Truncated);
                }
                out.advance(self.key, self.safe_offset());
                self.caught_up = Some(Instant::now());
                return Ok(ReadOutcome::Eof);
            }
            self.last_data = Instant::now();
            out.metrics.bytes_read.inc_by(n as u64);
            self.split(&buf[..n], out);
            self.read_pos += n as u64;
            out.block_done(self.key, self.safe_offset());
            done += n;
            if done >= budget {
                return Ok(ReadOutcome::More);
            }
        }
    }

    /// Splits a block read at `self.read_pos` into lines and emits each whole one.
    fn split(&mut self, block: &[u8], out: &mut Outlet) {
        let cap = out.max_physical_line;
        let mut i = 0;
        for nl in memchr::memchr_iter(b'\n', block) {
            let line = &block[i..nl];
            if self.discarding {
                self.discarding = false;
            } else if self.carry.is_empty() {
                if line.len() > cap {
                    self.emit_line(&line[..cap], true, out);
                } else {
                    self.emit_line(line, false, out);
                }
            } else {
                let mut carry = std::mem::take(&mut self.carry);
                let room = cap - carry.len();
                let cut = line.len() > room;
                carry.extend_from_slice(&line[..line.len().min(room)]);
                self.emit_line(&carry, cut, out);
                carry.clear();
                if carry.capacity() <= CARRY_KEEP {
                    self.carry = carry;
                }
            }
            i = nl + 1;
            self.line_start = self.read_pos + i as u64;
        }
        if self.discarding {
            return;
        }
        let rest = &block[i..];
        if self.carry.len() + rest.len() > cap {
            let mut carry = std::mem::take(&mut self.carry);
            let room = cap - carry.len();
            carry.extend_from_slice(&rest[..room]);
            self.emit_line(&carry, true, out);
            carry.clear();
            self.carry = carry;
            self.discarding = true;
        } else {
            self.carry.extend_from_slice(rest);
        }
    }

    fn emit_line(&mut self, line: &[u8], cut: bool, out: &mut Outlet) {
        out.metrics.lines_read.inc();
        if !out.admit(self.throttle_key.as_ref()) {
            return;
        }
        // Where a restart would resume if this line were not handed on.
        let before = self.safe_offset();
        let decoded = self.decoder.decode(line, self.line_start);
        if let Some(head) = self.decoder.take_cut() {
            let first = hand_on(&mut self.joiner, (&self.key, &self.meta), head, before, out);
            self.mind_the_floor(first);
        }
        if let Some(mut rec) = decoded {
            rec.flags.truncated |= cut;
            let first = hand_on(&mut self.joiner, (&self.key, &self.meta), rec, before, out);
            self.mind_the_floor(first);
        }
    }

    /// Hands on, flagged `unterminated`, the records whose next piece has not come for
    /// `timeout` (see [`Decoder::flush_expired`]), and the multiline records that stopped growing
    /// for `flush_timeout`, and lets the checkpoint move past them. Called on the tailer's tick,
    /// so it happens even when the file gets no more writes.
    ///
    /// A partial record is only given up on when its file holds nothing more: the missing piece
    /// may be among unread bytes (the tailer was busy, or waited for the buffer). A multiline
    /// record is judged against the last time the file was read to its end instead: a busy file
    /// always has a few new bytes, and every line written before that moment was seen.
    pub fn flush_expired(&mut self, now: Instant, timeout: Duration, out: &mut Outlet) {
        let partial = self.decoder.expiry(timeout);
        if self.expiry(timeout).is_none_or(|at| at > now) {
            return;
        }
        // A failed stat says nothing about the file's end: wait for a read to settle it.
        let at_end = self.file.metadata().is_ok_and(|m| m.len() <= self.read_pos);
        // Every line written before this moment has been read.
        let seen = if at_end { Some(now) } else { self.caught_up };
        let before = self.safe_offset();
        if at_end && partial.is_some_and(|at| at <= now) {
            for rec in self.decoder.flush_expired(now, timeout) {
                let first = hand_on(&mut self.joiner, (&self.key, &self.meta), rec, before, out);
                self.mind_the_floor(first);
            }
        }
        if let (Some(j), Some(seen)) = (&mut self.joiner, seen) {
            let (key, meta) = (&self.key, &self.meta);
            j.flush_expired(seen, &mut |r| out.emit(key, r, meta, before));
        }
        out.advance(self.key, self.safe_offset());
    }

    /// When the first partial record or multiline group held here times out.
    pub fn expiry(&self, timeout: Duration) -> Option<Instant> {
        let partial = self.decoder.expiry(timeout);
        let joined = self.joiner.as_ref().and_then(Joiner::expiry);
        [partial, joined].into_iter().flatten().min()
    }

    /// The file is let go: a last line without its newline and records still missing their
    /// final piece are emitted, flagged, so nothing that was read is dropped. Returns the offset
    /// the checkpoint ends at.
    pub fn finish(&mut self, out: &mut Outlet) -> u64 {
        let before = self.safe_offset();
        if !self.carry.is_empty() && !self.discarding {
            let carry = std::mem::take(&mut self.carry);
            out.metrics.lines_read.inc();
            let decoded = self.decoder.decode(&carry, self.line_start);
            if let Some(head) = self.decoder.take_cut() {
                hand_on(&mut self.joiner, (&self.key, &self.meta), head, before, out);
            }
            if let Some(mut rec) = decoded {
                rec.flags.unterminated = true;
                hand_on(&mut self.joiner, (&self.key, &self.meta), rec, before, out);
            }
        }
        for mut rec in self.decoder.finish() {
            rec.flags.unterminated = true;
            hand_on(&mut self.joiner, (&self.key, &self.meta), rec, before, out);
        }
        self.finish_joining(before, out);
        self.carry.clear();
        self.discarding = false;
        self.line_start = self.read_pos;
        out.advance(self.key, self.read_pos);
        self.read_pos
    }
}

impl Tracked {
    /// Hands on whatever the joiner holds, as complete records (the file is let go, or its
    /// pod's rules changed).
    pub fn finish_joining(&mut self, before: u64, out: &mut Outlet) {
        if let Some(j) = &mut self.joiner {
            let (key, meta) = (&self.key, &self.meta);
            j.finish(&mut |r| out.emit(key, r, meta, before));
        }
    }
}

/// Hands a decoded record on: through the joiner when multiline is on, straight out otherwise.
/// `before` is the file's safe offset before the record (see [`Outlet::emit`]).
/// Returns the first offset of the records handed on, if any.
fn hand_on(
    joiner: &mut Option<Joiner>,
    (key, meta): (&FileKey, &FileMeta),
    rec: Record<'_>,
    before: u64,
    out: &mut Outlet,
) -> Option<u64> {
    match joiner {
        None => {
            out.emit(key, &rec, meta, before);
            Some(rec.offset)
        }
        Some(j) => {
            let mut first = None;
            j.push(rec, &mut |r| {
                first = Some(first.map_or(r.offset, |f: u64| f.min(r.offset)));
                out.emit(key, r, meta, before)
            });
            first
        }
    }
}
