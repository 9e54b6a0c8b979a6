//! Bulk encoding: each record becomes one `_bulk` item — an action line with its index and its
//! deterministic id, and the document line `parse` writes — before it is buffered, so the buffer
//! holds exactly the bytes a request sends. Sits between `parse` (and the pod fields `kube`
//! gives) and the buffer; knows neither the buffer's framing nor the tailer.
//!
//! The id is a hash of where the record came from — the file's identity and the byte offset of
//! the record's first piece — so reading the same line twice (after a crash, a restart, a
//! replay) produces the same id, and the `create` action turns the second copy into a 409
//! instead of a duplicate. What the id is computed from is settled per file when it is first
//! tracked ([`IdBasis`]) and kept in its checkpoint, so it does not move with the device number,
//! the node's name or a later version's formula.
//!
//! The index comes from the record's own timestamp for the same reason, never from the clock. A
//! record without a usable time (a malformed line, or a time that does not parse) keeps the
//! time of the line before it in its file where the decoder has one, else takes its file's time
//! anchor (the birth time of the file, else when it was first tracked, kept in its checkpoint):
//! the same on every replay. Such records say so with `logferry.time_inferred`.

use crate::parse::{DocumentWriter, Outcome};
use crate::redact::Redactor;
use crate::route::{RouteId, Router};
use crate::vocab::{FileKey, FileMeta, IdBasis, Record};
use chrono::{DateTime, SecondsFormat, Utc};
use std::borrow::Cow;
use std::io::Write as _;
use std::ops::Range;
use std::sync::Arc;

/// The document id for the record at `offset` of the file `key`: 128 bits of xxh3, in hex, of
/// the file's id basis and the offset.
pub fn document_id(key: &FileKey, offset: u64) -> [u8; 32] {
    let h = match key.ids {
        IdBasis::V1 { dev } => {
            // Exactly the first version's input, for files it first tracked.
            let mut input = [0u8; 32];
            input[..8].copy_from_slice(&dev.to_le_bytes());
            input[8..16].copy_from_slice(&key.ino.to_le_bytes());
            input[16..24].copy_from_slice(&key.fingerprint.to_le_bytes());
            input[24..].copy_from_slice(&offset.to_le_bytes());
            xxhash_rust::xxh3::xxh3_128(&input)
        }
        IdBasis::V2 { seed } => v2_id(seed, offset),
        IdBasis::Unsettled => {
            debug_assert!(false, "a record of an untracked file: {key:?}");
            v2_id(
                crate::vocab::seed("", key.ino, key.fingerprint, key.born_ns, 0),
                offset,
            )
        }
    };
    let mut out = [0u8; 32];
    // 16 bytes are exactly 32 hex digits: the slice cannot have the wrong length.
    let _ = hex::encode_to_slice(h.to_be_bytes(), &mut out);
    out
}

fn v2_id(seed: u128, offset: u64) -> u128 {
    let mut input = [0u8; 24];
    input[..16].copy_from_slice(&seed.to_le_bytes());
    input[16..].copy_from_slice(&offset.to_le_bytes());
    xxhash_rust::xxh3::xxh3_128(&input)
}

/// The file's time anchor as an RFC 3339 time, for records without a usable time of their own.
fn anchor_time(key: &FileKey) -> String {
    DateTime::<Utc>::from_timestamp_nanos(key.time_anchor_ns)
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    pub outcome: Outcome,
    /// The route that took it.
    pub route: RouteId,
    /// Its route drops it: nothing was written.
    pub dropped: bool,
}

/// Turns records into bulk items: an action line and a document line each.
pub struct ItemEncoder {
    router: Router,
    documents: DocumentWriter,
    /// `[redact]`, when it has rules: run over every finished document before it is framed.
    redactor: Option<Arc<Redactor>>,
}

impl ItemEncoder {
    pub fn new(router: Router, documents: DocumentWriter) -> Self {
        ItemEncoder {
            router,
            documents,
            redactor: None,
        }
    }

    /// Every document is redacted once it is finished (message, raw copy, text that was never
    /// parsed, pod fields merged in), before anything else sees it: neither the buffer, the
    /// index nor the dead letters ever hold what a rule replaces.
    #[must_use]
    pub fn redacting(mut self, redactor: Option<Arc<Redactor>>) -> Self {
        self.redactor = redactor;
        self
    }

    /// The redactor in use, if any.
    pub fn redactor(&self) -> Option<&Redactor> {
        self.redactor.as_deref()
    }

    /// The router, for the names its routes are counted under.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Appends `rec` from file `key` to `out` as one `create` item, to the index its route
    /// picks from the finished document; `meta` is the file's pod. Whatever frames the item
    /// (the buffer's chunk) is the caller's. A dropped record leaves `out` as it was.
    pub fn encode(
        &mut self,
        out: &mut Vec<u8>,
        key: &FileKey,
        rec: &Record,
        meta: &FileMeta,
    ) -> Encoded {
        let rec = self.settle_time(key, rec);
        self.encode_as(out, &document_id(key, rec.offset), &rec, meta)
    }

    /// Appends `rec` as one `create` item under the document id `id`: for records that are not
    /// lines of a file (a forwarded entry, whose id and time its source settles).
    pub fn encode_as(
        &mut self,
        out: &mut Vec<u8>,
        id: &[u8; 32],
        rec: &Record,
        meta: &FileMeta,
    ) -> Encoded {
        let mut route = 0;
        let mut dropped = false;
        let mut doc_start = out.len();
        let router = &mut self.router;
        let outcome = self.documents.write_after(out, rec, meta, |doc, out| {
            route = router.pick(doc, meta);
            let Some(index) = router.index_for(route, &rec.time) else {
                dropped = true;
                return false;
            };
            out.extend_from_slice(b"{\"create\":{\"_index\":\"");
            out.extend_from_slice(index.as_bytes());
            out.extend_from_slice(b"\",\"_id\":\"");
            out.extend_from_slice(id);
            out.extend_from_slice(b"\"}}\n");
            doc_start = out.len();
            true
        });
        if let Some(o) = &outcome {
            let (from, to) = o.message;
            self.redact(out, doc_start, (from - doc_start)..(to - doc_start), meta);
            let _ = out.write_all(b"\n");
        }
        Encoded {
            outcome: outcome.unwrap_or_default(),
            route,
            dropped,
        }
    }

    /// Appends a document another agent finished (a node's record, come through Kafka) as one
    /// `create` item to the index and under the id it came with, so a record consumed twice is
    /// a 409. Redaction runs over it again, with this agent's rules: what a node let through
    /// (an older config, another team's) is still caught here. `doc` is one line, as
    /// [`finished_document`] makes it.
    pub fn encode_finished(&self, out: &mut Vec<u8>, index: &str, id: &[u8], doc: &str) {
        out.extend_from_slice(b"{\"create\":{\"_index\":");
        let _ = serde_json::to_writer(&mut *out, index);
        out.extend_from_slice(b",\"_id\":");
        let _ = serde_json::to_writer(&mut *out, &*String::from_utf8_lossy(id));
        out.extend_from_slice(b"}}\n");
        let redacted = self
            .redactor
            .as_deref()
            .and_then(|r| r.redact_document(doc, 0..doc.len()));
        out.extend_from_slice(redacted.as_deref().unwrap_or(doc).as_bytes());
        out.push(b'\n');
    }

    /// The redaction stage over the document at `out[start..]`, unless its namespace is
    /// excepted; `message` (within the document) holds the message's members, and the rest
    /// the agent's own, never looked at, so not read either. The writer only ever writes UTF-8
    /// (invalid bytes are replaced first).
    fn redact(&self, out: &mut Vec<u8>, start: usize, message: Range<usize>, meta: &FileMeta) {
        let Some(r) = self.redactor.as_deref() else {
            return;
        };
        if meta
            .namespace
            .as_deref()
            .is_some_and(|ns| r.skips_namespace(ns))
        {
            return;
        }
        if !out
            .get(start + message.start..start + message.end)
            .is_some_and(|part| r.may_match(part))
        {
            return;
        }
        let redacted = match std::str::from_utf8(&out[start..]) {
            Ok(doc) => r.rewrite(doc, message),
            Err(_) => {
                let doc = String::from_utf8_lossy(&out[start..]).into_owned();
                Some(r.redact_document(&doc, 0..doc.len()).unwrap_or(doc))
            }
        };
        if let Some(doc) = redacted {
            out.truncate(start);
            out.extend_from_slice(doc.as_bytes());
        }
    }

    /// The record with a time that names an index: its own, else (a malformed line, or a time
    /// that does not parse) its neighbour's or its file's anchor, flagged `time_inferred`.
    fn settle_time<'r>(&mut self, key: &FileKey, rec: &'r Record<'r>) -> Cow<'r, Record<'r>> {
        let mut rec = Cow::Borrowed(rec);
        let parsed = self.router.default_index().index_for(&rec.time).is_some();
        // The line's own time: the one lookup on the common path.
        if parsed && !rec.flags.malformed {
            return rec;
        }
        // A malformed line's time is its neighbour's (or empty), never the line's own.
        let owned = rec.to_mut();
        owned.flags.time_inferred = true;
        if !parsed {
            owned.time = Cow::Owned(anchor_time(key));
        }
        rec
    }
}

/// A finished document's payload as it can go into a bulk body: one JSON object on one line.
/// A pretty-printed one has its newlines (whitespace between tokens: a string cannot hold a
/// raw one) made spaces. Anything else is `None`, for the caller to index as a record of its
/// own: written as it came, a payload with a newline and a second JSON line would be read by
/// Elasticsearch as an action of its own (`{"delete":…}`), and one that is not JSON would be
/// refused.
pub fn finished_document(payload: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(payload);
    if !text.trim_ascii_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&text).ok()?;
    if text.contains(['\n', '\r']) {
        return Some(text.replace(['\n', '\r'], " "));
    }
    Some(text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{Flags, Stream};
    use serde_json::Value;
    #[test]
    fn ids_depend_on_origin_only() {
        let k = FileKey {
            ids: IdBasis::V1 { dev: 1 },
            ..FileKey::new(1, 2, 3)
        };
        assert_eq!(document_id(&k, 10), document_id(&k, 10));
        assert_ne!(document_id(&k, 10), document_id(&k, 11));
        let other = FileKey { ino: 9, ..k };
        assert_ne!(document_id(&k, 10), document_id(&other, 10));
        // Pinned: if this changes (layout, hash, or the xxhash crate), every replay after an
        // upgrade would index duplicates instead of getting 409s.
        assert_eq!(&document_id(&k, 10), b"a0df0c9515009817e58584af5d988b1c");
        // A version 1 file keeps its ids on a renumbered device: the basis holds the old one.
        let rebooted = FileKey { dev: 64768, ..k };
        assert_eq!(document_id(&rebooted, 10), document_id(&k, 10));
    }

    #[test]
    fn version_2_ids_depend_on_the_seed_and_offset_only() {
        let k = FileKey {
            ids: IdBasis::V2 { seed: 42 },
            ..FileKey::new(1, 2, 3)
        };
        let moved = FileKey {
            dev: 7,
            born_ns: 5,
            time_anchor_ns: 6,
            ..k
        };
        assert_eq!(document_id(&k, 10), document_id(&moved, 10));
        assert_ne!(document_id(&k, 10), document_id(&k, 11));
        let other = FileKey {
            ids: IdBasis::V2 { seed: 43 },
            ..k
        };
        assert_ne!(document_id(&k, 10), document_id(&other, 10));
        // Pinned, like version 1: the ids of records already buffered must not change.
        assert_eq!(&document_id(&k, 10), b"dc230e0e8139e558fdc74f75709e97a4");
    }

    fn encode(key: &FileKey, time: &str, flags: Flags) -> (String, Value) {
        let cfg = crate::config::Config::default();
        let mut enc = ItemEncoder::new(Router::new(&cfg).unwrap(), DocumentWriter::new(&cfg.parse));
        let rec = Record {
            time: time.into(),
            stream: Some(Stream::Stdout),
            message: std::borrow::Cow::Borrowed(b"no time here"),
            offset: 0,
            flags,
        };
        let mut item = Vec::new();
        enc.encode(&mut item, key, &rec, &FileMeta::default());
        let text = String::from_utf8(item).unwrap();
        let mut lines = text.lines();
        let action: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        let doc: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        (action["create"]["_index"].as_str().unwrap().to_owned(), doc)
    }

    #[test]
    fn a_record_without_a_time_gets_its_files_anchor_never_the_clock() {
        let key = FileKey {
            // 2026-01-02T03:04:05.000000006Z, long before today.
            time_anchor_ns: 1_767_323_045_000_000_006,
            ids: IdBasis::V2 { seed: 1 },
            ..FileKey::new(1, 2, 3)
        };
        let malformed = Flags {
            malformed: true,
            ..Flags::default()
        };
        for (case, time, flags) in [
            ("a malformed first line", "", malformed),
            (
                "a time that does not parse",
                "2026-11-26T25:00:00Z",
                Flags::default(),
            ),
        ] {
            let (index, doc) = encode(&key, time, flags);
            assert_eq!(index, "logs-2026.01.02", "{case}");
            assert_eq!(
                doc["@timestamp"], "2026-01-02T03:04:05.000000006Z",
                "{case}"
            );
            assert_eq!(doc["logferry"]["time_inferred"], true, "{case}");
            assert_eq!(
                encode(&key, time, flags),
                (index, doc),
                "{case}: same on replay"
            );
        }
        // A malformed line after a good one keeps its neighbour's time, and says it is not its own.
        let (index, doc) = encode(&key, "2026-11-26T17:00:00Z", malformed);
        assert_eq!(index, "logs-2026.11.26");
        assert_eq!(doc["@timestamp"], "2026-11-26T17:00:00Z");
        assert_eq!(doc["logferry"]["time_inferred"], true);
        // A line with its own time is not flagged.
        let (_, doc) = encode(&key, "2026-11-26T17:00:00Z", Flags::default());
        assert!(doc.get("logferry").is_none(), "{doc}");
    }

    #[test]
    fn a_routed_record_names_its_routes_index_and_a_dropped_one_writes_nothing() {
        let cfg = crate::config::Config::from_toml(
            "[[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\n\
             when.field = { path = \"kind\", equals = \"audit\" }\n\
             [[route]]\nname = \"probe\"\ndrop = true\n\
             when.field = { path = \"kind\", equals = \"probe\" }\n",
            |_| None,
        )
        .unwrap();
        let mut enc = ItemEncoder::new(Router::new(&cfg).unwrap(), DocumentWriter::new(&cfg.parse));
        let key = FileKey {
            ids: IdBasis::V2 { seed: 1 },
            ..FileKey::new(1, 2, 3)
        };
        let mut item = |message: &'static str| {
            let rec = Record {
                time: "2026-11-26T17:00:00Z".into(),
                stream: Some(Stream::Stdout),
                message: Cow::Borrowed(message.as_bytes()),
                offset: 40,
                flags: Flags::default(),
            };
            let mut out = b"before".to_vec();
            let e = enc.encode(&mut out, &key, &rec, &FileMeta::default());
            (e, String::from_utf8(out[6..].to_vec()).unwrap())
        };
        let (e, text) = item(r#"{"kind":"audit"}"#);
        assert_eq!((e.route, e.dropped), (0, false));
        let action: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(action["create"]["_index"], "audit-2026.11");
        // The id does not depend on the route: a replay routed anywhere has the same one.
        assert_eq!(
            action["create"]["_id"],
            String::from_utf8(document_id(&key, 40).to_vec()).unwrap()
        );
        assert_eq!(text.lines().count(), 2);
        let (e, text) = item(r#"{"kind":"probe"}"#);
        assert_eq!((e.route, e.dropped, text.as_str()), (1, true, ""));
        let (e, text) = item(r#"{"kind":"app"}"#);
        assert_eq!((e.route, e.dropped), (2, false));
        assert!(
            text.starts_with(r#"{"create":{"_index":"logs-2026.11.26""#),
            "{text}"
        );
    }

    #[test]
    fn a_finished_document_is_one_json_object_on_one_line_or_none() {
        let pretty = b"{\n  \"msg\": \"a\\nb\",\r\n  \"n\": [1,\n 2]\n}\n";
        let one = finished_document(pretty).unwrap();
        assert!(!one.contains(['\n', '\r']), "{one}");
        let v: Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v, serde_json::json!({"msg": "a\nb", "n": [1, 2]}));
        for refused in [
            &b"{\"a\":1}\n{\"delete\":{\"_index\":\"audit\",\"_id\":\"x\"}}"[..],
            b"{\"a\":1}{\"b\":2}",
            b"plain text",
            b"[1,2]",
            b"\"a string\"",
            b"{\"a\":\"raw\nnewline\"}",
            b"{\"a\":",
            b"",
        ] {
            assert_eq!(
                finished_document(refused),
                None,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }
}
