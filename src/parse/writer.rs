//! The [`DocumentWriter`]: writes one record as the JSON document Elasticsearch stores — the
//! agent's fields (`@timestamp`, `stream`, the pod's), the message merged, nested or kept as
//! a string in `log`, and the `logferry` object saying what the agent did to the line.
//!
//! Reading the message is left to [`super::fields`] and the naming of its keys to
//! [`super::keys`]; this file only decides what goes where, and never fails: a message that is
//! not a JSON object the index can take is written as a string.

use super::fields::{Fields, MAX_DEPTH, depth_within, parse_object};
use super::keys::{KeyIndex, is_reserved};
use super::view::View;
use crate::config;
use crate::vocab::{FileMeta, Flags, Record};
use std::borrow::Cow;

/// What happened while a document was built, for the caller to count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub json: bool,
    pub json_failed: bool,
    pub invalid_utf8: bool,
    /// Where in `out` the message's members were written (`log`, the message's fields, or
    /// its nesting key): the document's other members (`@timestamp`, `stream`, the pod's
    /// `kubernetes` and `docker`, the `logferry` flags) are the agent's own, which redaction
    /// passes over without reading.
    pub message: (usize, usize),
}

/// Builds documents; one per tailer, configured once.
#[derive(Debug, Clone)]
pub struct DocumentWriter {
    json: bool,
    /// The nesting key, already JSON-encoded with its quotes; empty to merge at the top.
    target: Vec<u8>,
    /// The same, as configured.
    target_name: String,
    pub(super) keep_original: bool,
}

impl DocumentWriter {
    pub fn new(cfg: &config::Parse) -> Self {
        let target = if cfg.target.is_empty() {
            Vec::new()
        } else {
            // Serializing a str cannot fail.
            serde_json::to_vec(&cfg.target).unwrap_or_default()
        };
        DocumentWriter {
            json: cfg.json,
            target,
            target_name: cfg.target.clone(),
            keep_original: cfg.keep_original,
        }
    }

    /// The key the message's fields are nested under, if they are.
    pub(super) fn target_key(&self) -> Option<&str> {
        (!self.target_name.is_empty()).then_some(self.target_name.as_str())
    }

    /// Appends the document for `rec` to `out` (no trailing newline). `extra` is a JSON
    /// fragment beginning with a comma (the file's pod fields), or empty.
    pub fn write(&self, out: &mut Vec<u8>, rec: &Record, extra: &[u8]) -> Outcome {
        self.write_as(out, rec, extra, true)
    }

    /// [`DocumentWriter::write`], with JSON parsing off when `json` is false (a pod annotated
    /// `logferry.io/parser: "none"`).
    pub fn write_as(&self, out: &mut Vec<u8>, rec: &Record, extra: &[u8], json: bool) -> Outcome {
        self.write_doc(out, rec, (extra, json), |_, _| true)
            .unwrap_or_default()
    }

    /// The document of a record of the file `meta` describes, with `head` shown it first: it
    /// writes what goes before the document (the bulk action line, whose index routing picks
    /// from the document) and says whether the document is written at all. `None` when it is
    /// not. The document is written as the application gave it: redaction is a stage of its
    /// own over the finished document (`crate::redact`).
    pub fn write_after(
        &self,
        out: &mut Vec<u8>,
        rec: &Record,
        meta: &FileMeta,
        head: impl FnOnce(&View, &mut Vec<u8>) -> bool,
    ) -> Option<Outcome> {
        self.write_doc(out, rec, (&meta.fields, meta.parse_json), head)
    }

    /// `extra` the pod's fields, `json` whether to parse.
    fn write_doc(
        &self,
        out: &mut Vec<u8>,
        rec: &Record,
        (extra, json): (&[u8], bool),
        head: impl FnOnce(&View, &mut Vec<u8>) -> bool,
    ) -> Option<Outcome> {
        let mut outcome = Outcome::default();
        let message: Cow<str> = match std::str::from_utf8(&rec.message) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => {
                outcome.invalid_utf8 = true;
                String::from_utf8_lossy(&rec.message)
            }
        };
        let fields = if self.json && json {
            self.object_of(&message, &mut outcome)
        } else {
            None
        };
        let view = View {
            target: self.target_key(),
            keep_original: self.keep_original,
            rec,
            message: &message,
            fields: fields.as_ref(),
            extra,
        };
        if !head(&view, out) {
            return None;
        }
        out.extend_from_slice(b"{\"@timestamp\":");
        write_str(out, &rec.time);
        if let Some(s) = rec.stream {
            out.extend_from_slice(b",\"stream\":\"");
            out.extend_from_slice(s.as_str().as_bytes());
            out.push(b'"');
        }
        let message_start = out.len();
        match &fields {
            Some(fields) => {
                if self.keep_original {
                    out.extend_from_slice(b",\"log\":");
                    write_str(out, &message);
                }
                self.write_fields(out, &message, fields);
            }
            None => {
                out.extend_from_slice(b",\"log\":");
                write_str(out, &message);
            }
        }
        outcome.message = (message_start, out.len());
        out.extend_from_slice(extra);
        write_flags(out, rec.flags, outcome);
        out.push(b'}');
        Some(outcome)
    }

    /// The members of `message` when it is a JSON object within [`MAX_DEPTH`], noting in
    /// `outcome` whether it was parsed or failed to be.
    fn object_of<'m>(&self, message: &'m str, outcome: &mut Outcome) -> Option<Fields<'m>> {
        if !looks_like_object(message) {
            return None;
        }
        let parsed = parse_object(message);
        // Too deep for the index (or for the parser): kept as a string, which is not a
        // failure to parse.
        outcome.json_failed = parsed.is_none() && depth_within(message.as_bytes(), MAX_DEPTH);
        let parsed = parsed.filter(|f| f.within_depth());
        outcome.json = parsed.is_some();
        parsed
    }

    /// The members of `message` (read into `fields`), each after a comma, or nested under
    /// the target.
    fn write_fields(&self, out: &mut Vec<u8>, message: &str, fields: &Fields) {
        let nested = !self.target.is_empty();
        if nested {
            out.push(b',');
            out.extend_from_slice(&self.target);
            out.extend_from_slice(b":{");
        } else if !fields.0.is_empty() {
            out.push(b',');
        }
        let keys = KeyIndex::new(&fields.0);
        match self.verbatim(message, fields, &keys) {
            Some(members) => out.extend_from_slice(members.as_bytes()),
            None => self.write_members(out, fields, &keys),
        }
        if nested {
            out.push(b'}');
        }
    }

    /// The members as `message` holds them, from the first key's quote to the last value's
    /// end, when that is what [`DocumentWriter::write_members`] would write: the usual compact
    /// line, copied at once instead of a dozen pieces. So: no key given twice, none renamed
    /// (an agent's name, at the top), every key read as written (no escape), no raw line break
    /// in a nested value, and no whitespace between tokens — the members' lengths and a comma
    /// between each two add up to the span's.
    fn verbatim<'m>(&self, message: &'m str, fields: &Fields, keys: &KeyIndex) -> Option<&'m str> {
        if !keys.unique() {
            return None;
        }
        let merged = self.target.is_empty();
        // Where a slice borrowed from `message` starts in it.
        let at = |part: &str| (part.as_ptr() as usize).checked_sub(message.as_ptr() as usize);
        let mut written = fields.0.len().checked_sub(1)?;
        for (key, value) in &fields.0 {
            let Cow::Borrowed(raw_key) = key else {
                return None;
            };
            if merged && is_reserved(raw_key, value, self.keep_original) {
                return None;
            }
            let value = value.get().as_bytes();
            if matches!(value.first(), Some(b'{' | b'['))
                && memchr::memchr2(b'\n', b'\r', value).is_some()
            {
                return None;
            }
            written += raw_key.len() + 3 + value.len();
        }
        let (first, last) = (fields.0.first()?, fields.0.last()?);
        let start = at(first.0.as_ref())?.checked_sub(1)?;
        let end = at(last.1.get())? + last.1.get().len();
        message.get(start..end).filter(|span| span.len() == written)
    }

    /// The members one by one: a repeated key's last value, an agent's name renamed, every
    /// value on one line.
    fn write_members(&self, out: &mut Vec<u8>, fields: &Fields, keys: &KeyIndex) {
        let nested = !self.target.is_empty();
        let mut first = true;
        for (i, (key, value)) in fields.0.iter().enumerate() {
            // A key given twice keeps its last value, as JSON.parse does; Elasticsearch would
            // reject the document otherwise ("Duplicate field").
            if !keys.is_last(i, key) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            if !nested && is_reserved(key, value, self.keep_original) {
                write_str(out, &keys.free_name(key));
            } else if let Cow::Borrowed(raw) = key {
                // As the message has it: a key read without unescaping has no quote, backslash
                // or control character, so these are the bytes serializing it would write.
                out.push(b'"');
                out.extend_from_slice(raw.as_bytes());
                out.push(b'"');
            } else {
                write_str(out, key);
            }
            out.push(b':');
            write_value(out, value.get());
        }
    }
}

/// The `logferry` object: what the agent did to the line, only when it did something.
fn write_flags(out: &mut Vec<u8>, f: Flags, outcome: Outcome) {
    let joined = f.multiline_lines > 1;
    if !(f.truncated
        || f.malformed
        || f.unterminated
        || f.time_inferred
        || outcome.invalid_utf8
        || joined
        || f.multiline_split)
    {
        return;
    }
    out.extend_from_slice(b",\"logferry\":{");
    let mut first = true;
    if joined {
        out.extend_from_slice(b"\"multiline_lines\":");
        out.extend_from_slice(f.multiline_lines.to_string().as_bytes());
        first = false;
    }
    for (set, name) in [
        (f.truncated, "truncated"),
        (outcome.invalid_utf8, "invalid_utf8"),
        (f.malformed, "malformed"),
        (f.unterminated, "unterminated"),
        (f.time_inferred, "time_inferred"),
        (f.multiline_split, "multiline_split"),
    ] {
        if set {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":true");
        }
    }
    out.push(b'}');
}

/// Writes a value as the application wrote it, on one line. JSON allows newlines between the
/// tokens of an object or array (a pretty-printed dump, joined by a multiline rule), the bulk
/// body does not: it holds one document per line, and a raw newline would cut this one in
/// two. A newline inside a string is always escaped, so every raw one is whitespace, and a
/// space means the same.
fn write_value(out: &mut Vec<u8>, value: &str) {
    let start = out.len();
    out.extend_from_slice(value.as_bytes());
    if matches!(value.as_bytes().first(), Some(b'{' | b'[')) {
        for b in &mut out[start..] {
            if matches!(*b, b'\n' | b'\r') {
                *b = b' ';
            }
        }
    }
}

fn looks_like_object(s: &str) -> bool {
    let t = s.trim_ascii();
    t.starts_with('{') && t.ends_with('}')
}

/// Writes `s` as a JSON string.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
