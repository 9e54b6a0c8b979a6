//! Multiline: the lines of a stack trace become one record.
//!
//! Sits between `decode` (which has already joined the runtime's partial lines, CRI `P` pieces
//! and docker lines without `\n`) and `parse` (so a joined trace is parsed as the text it is,
//! and a JSON line is never joined with others). One [`Joiner`] per followed file, with one
//! record in the making per stream: stdout and stderr never mix.
//!
//! Which lines belong together is decided by [`rules`]: built-in rules for Node (V8), Java,
//! Python and Go, `auto` for all of them, and custom start/continue patterns. A joined record
//! keeps its first line's time, stream and offset — so its document id is the first line's, as
//! for any record — and its lines are separated by `\n`; `logferry.multiline_lines` says how
//! many were joined.
//!
//! Limits: a record holds at most `max_lines` lines and `max_bytes` bytes; a longer trace is
//! split, never cut, and its later parts are flagged `multiline_split`. A record that has not
//! grown for `flush_timeout` is complete and handed on ([`Joiner::flush_expired`]), like any
//! other record.
//!
//! Delivery: the tailer's safe offset (where a checkpoint may move) never passes a line held
//! here ([`Joiner::held_offset`]). A crash or a SIGTERM mid-trace leaves the checkpoint at the
//! trace's first line, and the next start reads and joins it again; nothing held here was ever
//! buffered, so joining it differently then cannot duplicate it. That needs one more rule: at
//! most one record is in the making per file, because a file has one checkpoint. Were a trace
//! held on stdout while one from stderr that started before it and ended after it was handed
//! on, the checkpoint would sit inside the handed-on one, and a restart would read its later
//! lines again on their own.

pub mod rules;

pub use rules::RuleSet;

use crate::metrics::Metrics;
use crate::vocab::record::written_ns;
use crate::vocab::{Record, Stream};
use prometheus_client::metrics::counter::Counter;
use rules::{Move, Step};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How large a joined record may grow, and how long it may pause.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_lines: u32,
    pub max_bytes: usize,
    pub flush_timeout: Duration,
}

impl Limits {
    pub fn from_config(m: &crate::config::Multiline) -> Limits {
        Limits {
            max_lines: u32::try_from(m.max_lines).unwrap_or(u32::MAX).max(2),
            max_bytes: m.max_bytes.as_usize(),
            flush_timeout: m.flush_timeout.0,
        }
    }
}

/// The multiline counters, looked up once.
#[derive(Clone)]
pub struct Counters {
    records: Counter,
    lines: Counter,
    splits: Counter,
    timeouts: Counter,
}

impl Counters {
    pub fn new(m: &Metrics) -> Counters {
        Counters {
            records: m.multiline_records.clone(),
            lines: m.multiline_lines.clone(),
            splits: m.multiline_splits.clone(),
            timeouts: m.multiline_timeouts.clone(),
        }
    }
}

/// A record in the making.
struct Group {
    rule: usize,
    state: usize,
    /// The joined lines so far: the first line's record with the others appended.
    head: Option<Record<'static>>,
    /// Lines in `head`.
    lines: u32,
    /// Lines held until a joined line confirms them; out on their own otherwise.
    tentative: Vec<Record<'static>>,
    /// Message bytes of `head` and `tentative` together, with the `\n`s joining them.
    bytes: usize,
    /// When it last took a line.
    last: Instant,
    /// The runtime's time of the last line it took, in Unix nanoseconds, when it parses.
    last_written: Option<i64>,
    /// A later part of a split record.
    split: bool,
    /// For a later part: where the trace's first part began. The checkpoint stays there until
    /// the last part is handed on, because a restart can only cut a trace the same way again
    /// from its start: read from the start of a later part, its lines are no one's frames.
    origin: Option<u64>,
}

impl Group {
    fn new(m: Move, split: bool) -> Group {
        Group {
            rule: m.rule,
            state: m.next,
            head: None,
            lines: 0,
            tentative: Vec::new(),
            bytes: 0,
            last: Instant::now(),
            last_written: None,
            split,
            origin: None,
        }
    }

    fn take(&mut self, rec: Record<'_>, m: Move) {
        self.bytes += rec.message.len() + usize::from(self.bytes > 0);
        self.state = m.next;
        self.last = Instant::now();
        self.last_written = written_ns(&rec.time);
        match m.step {
            Step::Tentative => self.tentative.push(owned(rec)),
            Step::Join => {
                for t in std::mem::take(&mut self.tentative) {
                    self.join(t);
                }
                self.join(rec);
            }
        }
    }

    fn join(&mut self, rec: Record<'_>) {
        self.lines += 1;
        match &mut self.head {
            None => self.head = Some(owned(rec)),
            Some(head) => {
                let msg = head.message.to_mut();
                msg.push(b'\n');
                msg.extend_from_slice(&rec.message);
                head.flags.truncated |= rec.flags.truncated;
                head.flags.unterminated |= rec.flags.unterminated;
                head.flags.joined |= rec.flags.joined;
            }
        }
    }

    /// The offset of its first line.
    fn offset(&self) -> Option<u64> {
        self.head
            .as_ref()
            .or(self.tentative.first())
            .map(|r| r.offset)
    }

    /// Where a restart must read from to make this record again: its trace's first part.
    fn held_from(&self) -> Option<u64> {
        match (self.origin, self.offset()) {
            (Some(o), Some(f)) => Some(o.min(f)),
            (o, f) => o.or(f),
        }
    }

    fn full(&self, line: usize, limits: &Limits) -> bool {
        let lines = self.lines + self.tentative.len() as u32;
        lines >= limits.max_lines || self.bytes + 1 + line > limits.max_bytes
    }
}

fn owned(rec: Record<'_>) -> Record<'static> {
    Record {
        time: Cow::Owned(rec.time.into_owned()),
        stream: rec.stream,
        message: Cow::Owned(rec.message.into_owned()),
        offset: rec.offset,
        flags: rec.flags,
    }
}

fn other(stream: Stream) -> Stream {
    match stream {
        Stream::Stdout => Stream::Stderr,
        Stream::Stderr => Stream::Stdout,
    }
}

/// One file's multiline joining: a record in the making per stream, and at most one at a time
/// (see [`Joiner::push`]).
pub struct Joiner {
    rules: Arc<RuleSet>,
    limits: Limits,
    open: [Option<Group>; 2],
    /// Per stream: nothing of it read yet, and the file is read from its start, so a first
    /// line in the middle of a trace is the rest of one cut by a rotation.
    fresh: [bool; 2],
    counters: Counters,
}

impl Joiner {
    /// `from_start`: the file is read from offset 0.
    pub fn new(rules: Arc<RuleSet>, limits: Limits, counters: Counters, from_start: bool) -> Self {
        Joiner {
            rules,
            limits,
            open: [None, None],
            fresh: [from_start; 2],
            counters,
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Takes one record; `emit` gets every record that is complete because of it (a trace it
    /// ended, lines it showed to be no trace's), then the record itself unless it is held.
    pub fn push(&mut self, rec: Record<'_>, emit: &mut dyn FnMut(&Record)) {
        let Some(stream) = rec.stream else {
            // A malformed line has no stream to be joined in.
            emit(&rec);
            return;
        };
        let s = stream.index();
        let fresh = std::mem::replace(&mut self.fresh[s], false);
        if rec.message.first() == Some(&b'{') {
            // A JSON line (most lines, on this platform) is never part of a trace: it ends the
            // one in the making without a pattern being tried.
            self.close(stream, emit);
            emit(&rec);
            return;
        }
        // Invalid UTF-8 is matched as what it shows, never as an empty line.
        let text = String::from_utf8_lossy(&rec.message);
        let text = text.as_ref();
        if let Some(g) = &self.open[s]
            && !self.paused(g, &rec.time)
            && let Some(m) = self.rules.continues(g.rule, g.state, text)
        {
            if g.full(rec.message.len(), &self.limits) {
                let origin = g.held_from();
                self.close(stream, emit);
                self.counters.splits.inc();
                let mut part = Group::new(m, true);
                part.origin = origin;
                self.open[s] = Some(part);
            }
            self.take(stream, rec, m, emit);
            return;
        }
        self.close(stream, emit);
        let opened = match self.rules.start(text) {
            Some(m) => Some((m, false)),
            None if fresh => self.rules.resume(text).map(|m| (m, true)),
            None => None,
        };
        match opened {
            Some((m, resumed)) => {
                // One record in the making per *file*: the file has one checkpoint, and a
                // record held on one stream must never pin it below the lines of a record
                // already handed on from the other (a restart would read those lines again,
                // outside their record: copies). Two streams tracing at once is rare; the
                // earlier trace is handed on as it is.
                self.close(other(stream), emit);
                // The rest of a trace cut by a rotation is a later part of it.
                self.open[s] = Some(Group::new(m, resumed));
                self.take(stream, rec, m, emit);
            }
            None => emit(&rec),
        }
    }

    /// Whether the line, written at `time`, came more than `flush_timeout` after the record's
    /// last line, by the runtime's clock. Such a line never continues it: on a first reading the
    /// record was handed on by its timeout before the line was there, and judging by the times
    /// written in the file makes a second reading (after a crash, from an older checkpoint)
    /// cut the record at the same place, so the re-read record has the id *and the lines* of
    /// the first — never one line more, which its 409 would drop.
    fn paused(&self, g: &Group, time: &str) -> bool {
        let (Some(last), Some(now)) = (g.last_written, written_ns(time)) else {
            return false;
        };
        let timeout = i64::try_from(self.limits.flush_timeout.as_nanos()).unwrap_or(i64::MAX);
        now.saturating_sub(last) > timeout
    }

    fn take(&mut self, stream: Stream, rec: Record<'_>, m: Move, emit: &mut dyn FnMut(&Record)) {
        let s = stream.index();
        if let Some(g) = &mut self.open[s] {
            g.take(rec, m);
            if self.rules.ends(g.rule, g.state) {
                self.close(stream, emit);
            }
        }
    }

    /// Hands on the record in the making on `stream`, then any tentative lines after it.
    fn close(&mut self, stream: Stream, emit: &mut dyn FnMut(&Record)) {
        let Some(g) = self.open[stream.index()].take() else {
            return;
        };
        if let Some(mut head) = g.head {
            if g.lines > 1 {
                head.flags.multiline_lines = g.lines;
                self.counters.records.inc();
                self.counters.lines.inc_by(u64::from(g.lines));
            }
            head.flags.multiline_split = g.split;
            emit(&head);
        }
        for t in &g.tentative {
            emit(t);
        }
    }

    /// The offset of the oldest line held: the file's checkpoint must not pass it.
    pub fn held_offset(&self) -> Option<u64> {
        self.open
            .iter()
            .flatten()
            .filter_map(Group::held_from)
            .min()
    }

    /// When the oldest record in the making is due by `flush_timeout`.
    pub fn expiry(&self) -> Option<Instant> {
        self.open
            .iter()
            .flatten()
            .map(|g| g.last + self.limits.flush_timeout)
            .min()
    }

    /// Hands on every record that has not grown for `flush_timeout` by `now`: the last time
    /// the file was read to its end, so lines written before then were all seen.
    pub fn flush_expired(&mut self, now: Instant, emit: &mut dyn FnMut(&Record)) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let due = self.open[stream.index()]
                .as_ref()
                .is_some_and(|g| g.last + self.limits.flush_timeout <= now);
            if due {
                self.counters.timeouts.inc();
                self.close(stream, emit);
            }
        }
    }

    /// The file is let go: everything held is handed on.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&Record)) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.close(stream, emit);
        }
    }
}

#[cfg(test)]
mod tests;
