//! Decoding: from the runtime's physical lines to logical records.
//!
//! Owns the two on-disk formats the kubelet leaves behind — CRI (`<time> <stream> <P|F> <msg>`)
//! and docker's json-file (`{"log":…,"stream":…,"time":…}`) — detected once per file from its
//! first line, and the joining of split lines (CRI `P` pieces, docker pieces without a trailing
//! `\n`) into one record, per stream, with a hard cap on the joined size. Hands [`Record`]s to
//! `parse`; tells the tailer the offset of the oldest piece still waiting for its end, so a
//! checkpoint never moves past half a record.
//!
//! A record whose end never comes (a runtime killed between a `P` piece and its `F`, a writer
//! that dies mid-record) must not hold the checkpoint forever, or every restart would read what
//! follows it again: the tailer asks [`Decoder::flush_expired`] on its tick, and a record whose
//! last piece came longer than `input.partial_timeout` ago is handed on flagged `unterminated`.
//! Time here is monotonic ([`Instant`]): a wall clock step can neither flush a record early nor
//! keep it forever.

mod cri;
mod docker;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use crate::vocab::record::written_ns;
use crate::vocab::{Flags, Record, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cri,
    Docker,
}

/// A physical line as decoded by one of the format parsers.
struct Piece<'a> {
    time: &'a str,
    stream: Stream,
    message: Cow<'a, [u8]>,
    /// More of this record follows in a later line.
    partial: bool,
}

/// A record whose final piece has not arrived yet.
#[derive(Debug)]
struct Pending {
    time: String,
    offset: u64,
    message: Vec<u8>,
    truncated: bool,
    pieces: u32,
    /// When the last piece was decoded: the record is given up on `partial_timeout` after it.
    last_piece: Instant,
    /// The runtime's time of the last piece (Unix ns), when it parses.
    last_written: Option<i64>,
}

/// Per-file decoding state.
#[derive(Debug)]
pub struct Decoder {
    format: Option<Format>,
    /// One pending record per stream: stdout and stderr pieces interleave in one file.
    pending: [Option<Pending>; 2],
    max_message: usize,
    /// The last well-formed time seen, given to malformed lines so they land in the same index
    /// as their neighbours on every replay.
    last_time: String,
    /// `input.partial_timeout` in ns, when pieces are cut by the runtime's times too.
    cut_after: Option<i64>,
    /// A record cut by the runtime's times, waiting to be handed on before the one decoded
    /// with it (see [`Decoder::take_cut`]).
    cut: Option<Record<'static>>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder {
            format: None,
            pending: [None, None],
            max_message,
            last_time: String::new(),
            cut_after: None,
            cut: None,
        }
    }

    /// Also cuts a pending record where the runtime's times say its next piece came more than
    /// `timeout` after the last one, as [`Decoder::flush_expired`] would have on a first
    /// reading by the clock: a second reading (after a crash, from an older checkpoint) then
    /// cuts it in the same place, so the re-read record is the one that was shipped.
    pub fn cut_by_the_runtimes_time(&mut self, timeout: Duration) {
        self.cut_after = Some(i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX));
    }

    /// The record the last [`Decoder::decode`] cut off before the piece it decoded, if any:
    /// it comes first.
    pub fn take_cut(&mut self) -> Option<Record<'static>> {
        self.cut.take()
    }

    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Offset of the oldest piece still waiting for the rest of its record.
    pub fn pending_offset(&self) -> Option<u64> {
        self.pending.iter().flatten().map(|p| p.offset).min()
    }

    /// Forgets all state: the file was truncated and starts over.
    pub fn reset(&mut self) {
        *self = Decoder {
            cut_after: self.cut_after,
            ..Decoder::new(self.max_message)
        };
    }

    /// When the oldest pending record's wait for its next piece runs out, given the timeout;
    /// `None` when nothing is pending.
    pub fn expiry(&self, timeout: Duration) -> Option<Instant> {
        self.pending
            .iter()
            .flatten()
            .map(|p| p.last_piece.checked_add(timeout).unwrap_or(p.last_piece))
            .min()
    }

    /// Emits, flagged `unterminated`, the pending records whose last piece came `timeout` or
    /// more before `now`, oldest first. A piece of the same stream that comes later starts a
    /// record of its own (a final piece alone is a whole record), with its own offset, so
    /// nothing is shipped twice; its document simply lacks the flushed head.
    pub fn flush_expired(&mut self, now: Instant, timeout: Duration) -> Vec<Record<'static>> {
        let mut out: Vec<Record<'static>> = Vec::new();
        for s in [Stream::Stdout, Stream::Stderr] {
            let slot = &mut self.pending[s.index()];
            if slot
                .as_ref()
                .is_some_and(|p| now.saturating_duration_since(p.last_piece) >= timeout)
                && let Some(p) = slot.take()
            {
                out.push(finish(p, s, true));
            }
        }
        out.sort_by_key(|r| r.offset);
        out
    }

    /// Decodes one physical line (without its `\n`) that starts at `offset`. Returns a record
    /// when the line completes one.
    pub fn decode<'a>(&mut self, line: &'a [u8], offset: u64) -> Option<Record<'a>> {
        self.decode_at(line, offset, Instant::now)
    }

    /// [`Decoder::decode`] with the clock a partial piece is stamped with; read only for
    /// partial records, so a whole line costs no clock read.
    fn decode_at<'a>(
        &mut self,
        line: &'a [u8],
        offset: u64,
        now: impl FnOnce() -> Instant,
    ) -> Option<Record<'a>> {
        let format = *self.format.get_or_insert_with(|| detect(line));
        let piece = match format {
            Format::Cri => cri::parse(line),
            Format::Docker => docker::parse(line),
        };
        let Some(piece) = piece else {
            return Some(self.malformed(line, offset));
        };
        if self.last_time.as_str() != piece.time {
            self.last_time.clear();
            self.last_time.push_str(piece.time);
        }
        let slot = &mut self.pending[piece.stream.index()];
        // Only pieces of a partial record need the runtime's time: not parsed for whole lines.
        let written = if piece.partial || slot.is_some() {
            written_ns(piece.time)
        } else {
            None
        };
        let paused = |p: &Pending| match (self.cut_after, p.last_written, written) {
            (Some(limit), Some(last), Some(now)) => now.saturating_sub(last) > limit,
            _ => false,
        };
        if slot.as_ref().is_some_and(paused)
            && let Some(p) = slot.take()
        {
            self.cut = Some(finish(p, piece.stream, true));
        }
        match (slot.take(), piece.partial) {
            (None, false) => {
                let (message, truncated) = cap(piece.message, self.max_message);
                Some(Record {
                    time: Cow::Borrowed(piece.time),
                    stream: Some(piece.stream),
                    message,
                    offset,
                    flags: Flags {
                        truncated,
                        ..Flags::default()
                    },
                })
            }
            (None, true) => {
                let mut p = Pending {
                    time: piece.time.to_owned(),
                    offset,
                    message: Vec::new(),
                    truncated: false,
                    pieces: 0,
                    last_piece: now(),
                    last_written: written,
                };
                append_capped(&mut p, &piece.message, self.max_message);
                *slot = Some(p);
                None
            }
            (Some(mut p), partial) => {
                append_capped(&mut p, &piece.message, self.max_message);
                if partial {
                    p.last_piece = now();
                    p.last_written = written;
                    *slot = Some(p);
                    return None;
                }
                Some(finish(p, piece.stream, false))
            }
        }
    }

    /// Emits the records still waiting for a final piece, flagged. Called when the file is let
    /// go, so nothing that was read is dropped.
    pub fn finish(&mut self) -> Vec<Record<'static>> {
        let mut out: Vec<Record<'static>> = [Stream::Stdout, Stream::Stderr]
            .into_iter()
            .filter_map(|s| self.pending[s.index()].take().map(|p| finish(p, s, true)))
            .collect();
        out.sort_by_key(|r| r.offset);
        out
    }

    fn malformed<'a>(&self, line: &'a [u8], offset: u64) -> Record<'a> {
        let (message, truncated) = cap(Cow::Borrowed(line), self.max_message);
        Record {
            time: Cow::Owned(self.last_time.clone()),
            stream: None,
            message,
            offset,
            flags: Flags {
                truncated,
                malformed: true,
                ..Flags::default()
            },
        }
    }
}

fn detect(first_line: &[u8]) -> Format {
    match first_line.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Format::Docker,
        _ => Format::Cri,
    }
}

fn finish(p: Pending, stream: Stream, unterminated: bool) -> Record<'static> {
    Record {
        time: Cow::Owned(p.time),
        stream: Some(stream),
        message: Cow::Owned(p.message),
        offset: p.offset,
        flags: Flags {
            truncated: p.truncated,
            malformed: false,
            unterminated,
            joined: p.pieces > 1,
            ..Flags::default()
        },
    }
}

fn append_capped(p: &mut Pending, piece: &[u8], max: usize) {
    p.pieces += 1;
    let room = max.saturating_sub(p.message.len());
    if piece.len() > room {
        let cut = utf8_floor(piece, room);
        p.message.extend_from_slice(&piece[..cut]);
        p.truncated = true;
    } else {
        p.message.extend_from_slice(piece);
    }
}

fn cap(message: Cow<'_, [u8]>, max: usize) -> (Cow<'_, [u8]>, bool) {
    if message.len() <= max {
        return (message, false);
    }
    let cut = utf8_floor(&message, max);
    let cut_message = match message {
        Cow::Borrowed(m) => Cow::Borrowed(&m[..cut]),
        Cow::Owned(mut m) => {
            m.truncate(cut);
            Cow::Owned(m)
        }
    };
    (cut_message, true)
}

/// The largest cut point `<= at` that does not split a UTF-8 sequence, so a cut message does not
/// end in a replacement character.
pub fn utf8_floor(bytes: &[u8], at: usize) -> usize {
    if at >= bytes.len() {
        return bytes.len();
    }
    let mut cut = at;
    // Step back over at most three continuation bytes (10xxxxxx).
    while cut > 0 && at - cut < 3 && (bytes[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    if (bytes[cut] & 0xC0) == 0x80 { at } else { cut }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a format parser should make of a line: (stream, partial, message), or malformed.
    pub(super) type Want = Option<(Stream, bool, &'static str)>;

    /// Runs a format parser over a table of lines.
    pub(super) fn check_table(parse: fn(&[u8]) -> Option<Piece<'_>>, cases: &[(&str, Want)]) {
        for (line, want) in cases {
            let got = parse(line.as_bytes()).map(|p| {
                let message = String::from_utf8(p.message.into_owned()).unwrap();
                (p.stream, p.partial, message)
            });
            let want = want.map(|(s, p, m)| (s, p, m.to_owned()));
            assert_eq!(got, want, "{line:?}");
        }
    }

    fn msg(r: &Record) -> String {
        String::from_utf8_lossy(&r.message).into_owned()
    }

    #[test]
    fn cri_full_lines() {
        let mut d = Decoder::new(1024);
        let r = d
            .decode(b"2026-11-26T17:00:00.123456789Z stdout F hello world", 0)
            .unwrap();
        assert_eq!(r.time, "2026-11-26T17:00:00.123456789Z");
        assert_eq!(r.stream, Some(Stream::Stdout));
        assert_eq!(msg(&r), "hello world");
        assert_eq!(d.format(), Some(Format::Cri));
        let r = d
            .decode(b"2026-11-26T17:00:01+01:00 stderr F:x ", 52)
            .unwrap();
        assert_eq!((r.stream, msg(&r).as_str()), (Some(Stream::Stderr), ""));
    }

    /// The cut a timeout made on a first reading (by the clock, the file quiet meanwhile) is
    /// made again on a second one by the times the runtime wrote: the head is not joined to a
    /// piece that came later, which would give the shipped head's id to more text (its 409
    /// dropping the tail).
    #[test]
    fn a_piece_written_after_the_timeout_by_the_runtimes_clock_starts_a_record_of_its_own() {
        let mut d = Decoder::new(1024);
        d.cut_by_the_runtimes_time(Duration::from_secs(1));
        assert!(
            d.decode(b"2026-11-26T17:00:00Z stdout P head ", 0)
                .is_none()
        );
        assert!(d.take_cut().is_none());
        let tail = d.decode(b"2026-11-26T17:00:02Z stdout F tail", 36).unwrap();
        let head = d.take_cut().expect("the head, cut off");
        assert_eq!((msg(&head).as_str(), head.offset), ("head ", 0));
        assert!(head.flags.unterminated);
        assert_eq!((msg(&tail).as_str(), tail.offset), ("tail", 36));
        assert!(!tail.flags.unterminated);
        // Pieces within the timeout of each other are one record, however late they are read.
        assert!(d.decode(b"2026-11-26T17:00:03Z stdout P a", 70).is_none());
        assert!(
            d.decode(b"2026-11-26T17:00:03.9Z stdout P b", 100)
                .is_none()
        );
        let whole = d.decode(b"2026-11-26T17:00:04.8Z stdout F c", 135).unwrap();
        assert!(d.take_cut().is_none());
        assert_eq!((msg(&whole).as_str(), whole.offset), ("abc", 70));
        // A partial after the pause starts the next record; its head is handed on first.
        assert!(d.decode(b"2026-11-26T17:00:05Z stdout P x", 170).is_none());
        assert!(d.decode(b"2026-11-26T17:00:09Z stdout P y", 200).is_none());
        let x = d.take_cut().expect("x, cut off");
        assert_eq!((msg(&x).as_str(), x.offset), ("x", 170));
        assert_eq!(d.pending_offset(), Some(200));
    }

    #[test]
    fn cri_partials_join_per_stream_and_keep_first_offset() {
        let mut d = Decoder::new(1024);
        assert!(d.decode(b"2026-11-26T17:00:00Z stdout P hel", 0).is_none());
        assert_eq!(d.pending_offset(), Some(0));
        // An interleaved stderr line completes on its own.
        let e = d.decode(b"2026-11-26T17:00:00Z stderr F oops", 40).unwrap();
        assert_eq!((msg(&e).as_str(), e.offset), ("oops", 40));
        assert_eq!(d.pending_offset(), Some(0));
        assert!(d.decode(b"2026-11-26T17:00:01Z stdout P lo ", 80).is_none());
        let r = d
            .decode(b"2026-11-26T17:00:02Z stdout F world", 120)
            .unwrap();
        assert_eq!(msg(&r), "hello world");
        assert_eq!(r.offset, 0);
        assert_eq!(r.time, "2026-11-26T17:00:00Z");
        assert!(r.flags.joined);
        assert!(!e.flags.joined, "a whole line is not joined");
        assert_eq!(d.pending_offset(), None);
    }

    #[test]
    fn joined_size_is_capped_and_flagged() {
        let mut d = Decoder::new(1024);
        let piece = format!("2026-11-26T17:00:00Z stdout P {}", "x".repeat(700));
        assert!(d.decode(piece.as_bytes(), 0).is_none());
        assert!(d.decode(piece.as_bytes(), 800).is_none());
        let r = d
            .decode(b"2026-11-26T17:00:00Z stdout F end", 1600)
            .unwrap();
        assert_eq!(r.message.len(), 1024);
        assert!(r.flags.truncated);
    }

    #[test]
    fn docker_lines_and_16k_splits() {
        let mut d = Decoder::new(1 << 20);
        let r = d
            .decode(
                br#"{"log":"{\"level\":\"info\"}\n","stream":"stdout","time":"2026-11-26T17:00:00.1Z"}"#,
                0,
            )
            .unwrap();
        assert_eq!(msg(&r), r#"{"level":"info"}"#);
        assert_eq!(d.format(), Some(Format::Docker));
        assert!(
            d.decode(
                br#"{"log":"first half ","stream":"stderr","time":"2026-11-26T17:00:01Z"}"#,
                90
            )
            .is_none()
        );
        let r = d
            .decode(
                br#"{"log":"second half\n","stream":"stderr","time":"2026-11-26T17:00:02Z"}"#,
                160,
            )
            .unwrap();
        assert_eq!(msg(&r), "first half second half");
        assert_eq!((r.offset, r.stream), (90, Some(Stream::Stderr)));
    }

    #[test]
    fn malformed_lines_are_kept_whole_with_the_last_good_time() {
        let table: [(&[u8], &[u8]); 4] = [
            (b"garbage without a prefix", b"garbage without a prefix"),
            (
                b"2026-11-26T17:00:00Z stdout",
                b"2026-11-26T17:00:00Z stdout",
            ),
            (
                b"2026-11-26T17:00:00Z stdin F x",
                b"2026-11-26T17:00:00Z stdin F x",
            ),
            (b"notatime stdout F x", b"notatime stdout F x"),
        ];
        for (line, want) in table {
            let mut d = Decoder::new(1024);
            d.decode(b"2026-11-26T16:00:00Z stdout F first", 0).unwrap();
            let r = d.decode(line, 100).unwrap();
            assert!(r.flags.malformed, "{:?}", String::from_utf8_lossy(line));
            assert_eq!(&*r.message, want);
            assert_eq!(r.time, "2026-11-26T16:00:00Z");
        }
    }

    #[test]
    fn finish_flushes_unterminated_partials() {
        let mut d = Decoder::new(1024);
        assert!(
            d.decode(b"2026-11-26T17:00:00Z stderr P tail", 10)
                .is_none()
        );
        let out = d.finish();
        assert_eq!(out.len(), 1);
        assert!(out[0].flags.unterminated);
        assert_eq!(msg(&out[0]), "tail");
        assert_eq!(d.pending_offset(), None);
    }

    /// One step of a partial-timeout case, at a time in seconds from the case's start.
    enum Step {
        /// Decode `line` at `offset`; the record it completes, if any, with its offset.
        Line(u64, &'static str, u64, Option<(&'static str, u64)>),
        /// Flush what has expired: the records given up on, and the pending offset after.
        Flush(u64, &'static [(&'static str, u64)], Option<u64>),
    }

    /// How long a partial record waits for its end in [`PARTIAL_TIMEOUT_CASES`].
    const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);

    /// Each case: what it shows, and its steps.
    const PARTIAL_TIMEOUT_CASES: [(&str, &[Step]); 6] = {
        use Step::{Flush, Line};
        [
            (
                "a P piece with no F is given up on after the timeout, not before",
                &[
                    Line(0, "2026-11-26T17:00:00Z stdout P hel", 0, None),
                    Flush(4, &[], Some(0)),
                    Flush(5, &[("hel", 0)], None),
                ],
            ),
            (
                "each piece starts the wait again",
                &[
                    Line(0, "2026-11-26T17:00:00Z stdout P a", 0, None),
                    Line(3, "2026-11-26T17:00:03Z stdout P b", 40, None),
                    Flush(6, &[], Some(0)),
                    Flush(8, &[("ab", 0)], None),
                ],
            ),
            (
                "each stream waits on its own",
                &[
                    Line(0, "2026-11-26T17:00:00Z stdout P o", 0, None),
                    Line(4, "2026-11-26T17:00:04Z stderr P e", 40, None),
                    Flush(5, &[("o", 0)], Some(40)),
                    Flush(9, &[("e", 40)], None),
                ],
            ),
            (
                "a final piece after the flush is a record of its own",
                &[
                    Line(0, "2026-11-26T17:00:00Z stdout P head", 0, None),
                    Flush(5, &[("head", 0)], None),
                    Line(
                        6,
                        "2026-11-26T17:00:06Z stdout F tail",
                        40,
                        Some(("tail", 40)),
                    ),
                    Flush(60, &[], None),
                ],
            ),
            (
                "a docker piece without its newline",
                &[
                    Line(
                        0,
                        r#"{"log":"half","stream":"stdout","time":"2026-11-26T17:00:00Z"}"#,
                        0,
                        None,
                    ),
                    Flush(5, &[("half", 0)], None),
                ],
            ),
            (
                "whole lines never wait",
                &[
                    Line(0, "2026-11-26T17:00:00Z stdout F x", 0, Some(("x", 0))),
                    Flush(60, &[], None),
                ],
            ),
        ]
    };

    /// Runs one case's steps on a fresh decoder, asserting each step's records.
    fn run_partial_timeout_case(name: &str, steps: &[Step]) {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut d = Decoder::new(1024);
        for step in steps {
            match *step {
                Step::Line(t, line, offset, want) => {
                    let got = d.decode_at(line.as_bytes(), offset, || at(t));
                    let got = got.map(|r| {
                        assert!(!r.flags.unterminated && !r.flags.joined, "{name}");
                        (msg(&r), r.offset)
                    });
                    assert_eq!(got, want.map(|(m, o)| (m.to_owned(), o)), "{name}");
                }
                Step::Flush(t, want, pending) => {
                    let flushed = d.flush_expired(at(t), PARTIAL_TIMEOUT);
                    assert!(flushed.iter().all(|r| r.flags.unterminated), "{name}");
                    let got: Vec<(String, u64)> =
                        flushed.iter().map(|r| (msg(r), r.offset)).collect();
                    let want: Vec<(String, u64)> =
                        want.iter().map(|&(m, o)| (m.to_owned(), o)).collect();
                    assert_eq!(got, want, "{name} at {t} s");
                    assert_eq!(d.pending_offset(), pending, "{name} at {t} s");
                }
            }
        }
    }

    #[test]
    fn partial_records_that_never_end_are_flushed_after_the_timeout() {
        for (name, steps) in PARTIAL_TIMEOUT_CASES {
            run_partial_timeout_case(name, steps);
        }
    }

    #[test]
    fn expiry_is_the_oldest_pending_piece_plus_the_timeout() {
        let start = Instant::now();
        let mut d = Decoder::new(1024);
        let timeout = Duration::from_secs(5);
        assert_eq!(d.expiry(timeout), None);
        d.decode_at(b"2026-11-26T17:00:00Z stderr P e", 0, || start);
        d.decode_at(b"2026-11-26T17:00:00Z stdout P o", 40, || {
            start + Duration::from_secs(2)
        });
        assert_eq!(d.expiry(timeout), Some(start + timeout));
        // An absurd timeout saturates instead of panicking.
        assert!(d.expiry(Duration::MAX).is_some());
    }

    #[test]
    fn utf8_floor_never_splits_a_character() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        let cuts: Vec<usize> = (0..=s.len()).map(|i| utf8_floor(s, i)).collect();
        assert_eq!(cuts, vec![0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10]);
    }
}
