//! The record: one logical log line with where it came from and what happened to it on the way.
//!
//! A leaf of the shared vocabulary: `decode` makes records, `parse` and the encoder read them.

use std::borrow::Cow;

/// Which of the container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// For arrays with one slot per stream.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What happened to a record on its way in; each set flag is written into the document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// The message was longer than `max_line_bytes` and was cut.
    pub truncated: bool,
    /// The line did not follow the file's format; the whole raw line is the message.
    pub malformed: bool,
    /// The record never got its final piece: its file went away first, or no piece came for
    /// `input.partial_timeout`.
    pub unterminated: bool,
    /// The record was joined from more than one piece. Normal, so not written in the document;
    /// counted.
    pub joined: bool,
    /// `@timestamp` is not the line's own (it had none that parses): set by the encoder, which
    /// gives such a record a replay-stable time.
    pub time_inferred: bool,
    /// Lines joined into this record by a multiline rule (a stack trace); 0 for a record that
    /// is one line.
    pub multiline_lines: u32,
    /// A later part of a multiline record that was split at `max_lines` or `max_bytes`, or
    /// the rest of a trace whose head was in the file before a rotation.
    pub multiline_split: bool,
}

/// One logical log record: a whole message with its runtime metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// RFC 3339 time as the runtime wrote it (of the first piece, for joined records).
    pub time: Cow<'a, str>,
    /// `None` when the line was malformed and no stream could be read from it.
    pub stream: Option<Stream>,
    pub message: Cow<'a, [u8]>,
    /// Byte offset in the file where the record's first piece starts: with the file's identity
    /// it names the record, and so its document id.
    pub offset: u64,
    pub flags: Flags,
}

/// A runtime's RFC 3339 time (what a CRI or docker line carries) in Unix nanoseconds, when it
/// parses: the clock both the decoder's and the joiner's cuts are judged by, so that every
/// reading of a file cuts where the first did.
pub fn written_ns(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()?
        .timestamp_nanos_opt()
}
