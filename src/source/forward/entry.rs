//! A forwarded entry as the rest of the pipeline sees a line: a [`Record`] whose message is
//! the entry's record as a JSON object (parsed and merged like an application's JSON line,
//! redacted and routed like one), the [`FileMeta`] of its pod when the forwarder knew it, and
//! the document id it will be indexed under.
//!
//! What a forwarder's record may carry of the agent's own fields is taken as the agent would
//! have written it: a `kubernetes` object (Fluent Bit's and Fluentd's kubernetes filters write
//! the same names logferry does) becomes the document's `kubernetes`, and its namespace and
//! labels are what routes and `redact.skip_namespaces` see; a `docker` object likewise; a
//! `stream` of `stdout` or `stderr` is the record's stream. The tag is written under `tag_key`,
//! replacing a member of that name (as Fluentd's `include_tag_key` does).

use super::msgpack::{self, Head, Reader, Value};
use super::protocol::{Frame, Refused};
use crate::vocab::{FileMeta, Flags, Record, Stream};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

/// One entry, ready for the encoder.
#[derive(Debug)]
pub struct Entry {
    pub record: Record<'static>,
    pub meta: FileMeta,
    /// The document id: the same for the same entry of a chunk sent again.
    pub id: [u8; 32],
    /// Set when `record.message` is a document another agent finished for this index (a
    /// node's record, come through Kafka): it is buffered as it is, redacted again, not
    /// parsed or routed.
    pub finished: Option<String>,
}

/// Where a frame's ids come from.
#[derive(Debug, Clone, Copy)]
pub enum Ids<'a> {
    /// The frame's `chunk` option: a forwarder that resends a chunk it got no ack for sends the
    /// same chunk id (Fluentd's is a unique id per chunk, Fluent Bit's a hash of the payload),
    /// so each entry's id is the tag, the chunk id and the entry's index.
    Chunk(&'a [u8]),
    /// No chunk: nothing is resent, so the ids only need to be unique: the connection's seed
    /// (its listener, when it was accepted, its number) and the entry's number on it.
    Connection { seed: u128, entry: u64 },
}

/// The frame's entries; `tag_key` names the field the tag goes in.
pub fn entries(frame: Frame<'_>, ids: Ids<'_>, tag_key: &str) -> Result<Vec<Entry>, Refused> {
    let tag = String::from_utf8_lossy(frame.tag);
    // A frame's entries mostly share their time (a forwarder's flush of one second): it is
    // written once per distinct time, not once per entry.
    let mut time: Option<(i64, String)> = None;
    frame
        .entries
        .into_iter()
        .enumerate()
        .map(|(i, (ns, record))| {
            let id = match ids {
                Ids::Chunk(chunk) => id(&[b"chunk", frame.tag, chunk], i as u64),
                Ids::Connection { seed, entry } => {
                    id(&[b"conn", &seed.to_le_bytes()], entry + i as u64)
                }
            };
            let at = match &time {
                Some((t, text)) if *t == ns => text.clone(),
                _ => {
                    let text = rfc3339(ns);
                    time = Some((ns, text.clone()));
                    text
                }
            };
            convert(at, record, &tag, tag_key, id)
        })
        .collect()
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Labels of a record whose forwarder sent none: shared, not allocated per entry.
static NO_LABELS: LazyLock<Arc<BTreeMap<String, String>>> = LazyLock::new(Arc::default);

/// A document id for a record that is not a line of a file: 128 bits of xxh3, in hex, of
/// length-prefixed `parts` and `index`. Shared by the sources (the Kafka input's too).
pub(in crate::source) fn id(parts: &[&[u8]], index: u64) -> [u8; 32] {
    let mut input = Vec::with_capacity(64);
    for p in parts {
        // Length-prefixed, so no two different lists of parts hash the same bytes.
        input.extend_from_slice(&(p.len() as u64).to_le_bytes());
        input.extend_from_slice(p);
    }
    input.extend_from_slice(&index.to_le_bytes());
    let h = xxhash_rust::xxh3::xxh3_128(&input);
    let mut out = [0u8; 32];
    let _ = hex::encode_to_slice(h.to_be_bytes(), &mut out);
    out
}

/// The record's members are written as JSON straight from the frame's bytes; only the
/// agent's own members (`kubernetes`, `docker`, `stream`) are read into values.
fn convert(
    time: String,
    record: &[u8],
    tag: &str,
    tag_key: &str,
    id: [u8; 32],
) -> Result<Entry, Refused> {
    let mut meta = FileMeta::with_labels(NO_LABELS.clone());
    let mut stream = None;
    let mut message = Vec::with_capacity(record.len() + record.len() / 4 + 32);
    message.push(b'{');
    let mut r = Reader::new(record);
    match r.head()? {
        Head::Map(n) => {
            for _ in 0..n {
                let key = r.read()?;
                let name = key.as_bytes().unwrap_or_default();
                if name == tag_key.as_bytes() {
                    r.skip()?;
                    continue;
                }
                let own = matches!(name, b"kubernetes" | b"docker" | b"stream");
                let value = if own { Some(r.read()?) } else { None };
                if let Some(v) = &value
                    && take_own(name, v, &mut meta, &mut stream)
                {
                    continue;
                }
                if message.len() > 1 {
                    message.push(b',');
                }
                msgpack::write_key(&key, &mut message);
                message.push(b':');
                match &value {
                    Some(v) => msgpack::write_json(v, &mut message),
                    None => r.transcode(&mut message)?,
                }
            }
        }
        // Not a map (the protocol wants one): kept whole as the message's text.
        _ => {
            message.extend_from_slice(b"\"log\":");
            Reader::new(record).transcode(&mut message)?;
        }
    }
    if message.len() > 1 {
        message.push(b',');
    }
    msgpack::write_str(tag_key.as_bytes(), &mut message);
    message.push(b':');
    msgpack::write_str(tag.as_bytes(), &mut message);
    message.push(b'}');
    Ok(Entry {
        record: Record {
            time: Cow::Owned(time),
            stream,
            message: Cow::Owned(message),
            offset: 0,
            flags: Flags::default(),
        },
        meta,
        id,
        finished: None,
    })
}

/// Takes a member that is the agent's own field into `meta` or `stream`; true if taken.
fn take_own(key: &[u8], v: &Value<'_>, meta: &mut FileMeta, stream: &mut Option<Stream>) -> bool {
    match (key, v) {
        (b"kubernetes", Value::Map(pairs)) => {
            meta.namespace = member_str(pairs, "namespace_name").map(Arc::from);
            if let Some(Value::Map(labels)) = member(pairs, "labels") {
                let labels: BTreeMap<String, String> = labels
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect();
                meta.labels = Arc::new(labels);
            }
            meta.fields.extend_from_slice(b",\"kubernetes\":");
            msgpack::write_json(v, &mut meta.fields);
            true
        }
        (b"docker", Value::Map(_)) => {
            meta.fields.extend_from_slice(b",\"docker\":");
            msgpack::write_json(v, &mut meta.fields);
            true
        }
        (b"stream", Value::Str(s)) if *s == b"stdout" || *s == b"stderr" => {
            *stream = Some(if *s == b"stdout" {
                Stream::Stdout
            } else {
                Stream::Stderr
            });
            true
        }
        _ => false,
    }
}

fn member<'v, 'a>(pairs: &'v [(Value<'a>, Value<'a>)], name: &str) -> Option<&'v Value<'a>> {
    pairs
        .iter()
        .find(|(k, _)| k.as_bytes() == Some(name.as_bytes()))
        .map(|(_, v)| v)
}

fn member_str(pairs: &[(Value<'_>, Value<'_>)], name: &str) -> Option<String> {
    member(pairs, name).and_then(text)
}

fn text(v: &Value<'_>) -> Option<String> {
    v.as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}
