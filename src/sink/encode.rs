//! Bulk encoding: the action line of each item, with its index and its deterministic id.
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

use crate::buffer::Chunk;
use crate::decode::Record;
use crate::parse::{DocumentWriter, Outcome};
use crate::tail::{FileKey, IdBasis};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};
use std::borrow::Cow;
use std::io::Write as _;

/// An index name pattern: strftime items applied to a record's timestamp in UTC.
#[derive(Debug, Clone)]
pub struct IndexPattern {
    pattern: String,
    /// Whether the pattern has any time item at all; if not the name is constant.
    dynamic: bool,
    /// The last (whole seconds, zone, index name) computed, for a time that parsed: lines
    /// arrive in time order, so almost every lookup hits.
    cache: Option<(String, String, String)>,
}

impl IndexPattern {
    /// Checks `pattern` and everything it can produce against what Elasticsearch accepts as an
    /// index name and what keeps a bulk action line one line of valid JSON: the literal text,
    /// and each strftime item, which must be on an allow-list of items that give digits only
    /// (`%b`, `%Z` or `%c` give upper case, `%n` and `%t` a newline or a tab, `%e` a space, `%s`
    /// and `%f` an index per record). The error names the item or character at fault.
    pub fn new(pattern: &str) -> Result<IndexPattern, String> {
        /// Items that give ASCII digits (and `-` for `%F`), whatever the time: a conservative
        /// list, because an index name that is refused stops shipping for good.
        const ALLOWED: &str = "YCyGgmdjVUWuwHMF";
        const SHOWN: &str = "%Y %C %y %G %g %m %d %j %V %U %W %u %w %H %M %F";
        /// Elasticsearch refuses these in index names (`:` since 7.0); `"` and `\` would also
        /// end or escape the JSON string of the action line.
        const REFUSED: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                if c.is_uppercase() || c.is_control() || c.is_whitespace() || REFUSED.contains(&c) {
                    return Err(format!(
                        "{pattern:?}: {c:?} is not allowed in an index name (no upper case, \
                         whitespace, control characters or any of \\ / * ? \" < > | , # :)"
                    ));
                }
                continue;
            }
            // chrono's padding modifiers: `-` (none) and `0` (zeros) keep digits only; `_` pads
            // with spaces.
            let mut item = String::from('%');
            let mut spec = chars.next();
            while let Some(m @ ('-' | '0')) = spec {
                item.push(m);
                spec = chars.next();
            }
            let Some(spec) = spec else {
                return Err(format!("{pattern:?} ends with an unfinished strftime item"));
            };
            item.push(spec);
            if matches!(spec, 's' | 'f' | '.' | 'S' | '3' | '6' | '9') {
                return Err(format!(
                    "{pattern:?}: {item} would create an index per second or per record"
                ));
            }
            if !ALLOWED.contains(spec) {
                return Err(format!(
                    "{pattern:?}: the strftime item {item} can give characters an index name \
                     cannot hold (upper case, spaces, newlines, tabs, punctuation) or is not \
                     supported; use only {SHOWN}"
                ));
            }
        }
        let items: Vec<Item> = StrftimeItems::new(pattern).collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return Err(format!("{pattern:?} has an invalid strftime item"));
        }
        // The widest name the pattern gives: padded items, which have their most digits anyway.
        let widest = pattern.replace("%-", "%");
        let sample = DateTime::<Utc>::from_timestamp(1_764_000_000, 0)
            .unwrap_or_default()
            .format(&widest)
            .to_string();
        if sample.is_empty() || sample.starts_with(['-', '_', '+']) || sample == ".." {
            return Err(format!(
                "{pattern:?} gives index names like {sample:?}, which Elasticsearch refuses \
                 (empty, \"..\", or starting with - _ +)"
            ));
        }
        // `.` alone is refused; a leading dot makes a hidden (system) index.
        if sample.starts_with('.') {
            return Err(format!(
                "{pattern:?} gives index names like {sample:?}: a leading dot is for hidden and \
                 system indices"
            ));
        }
        if sample.len() > 255 {
            return Err(format!(
                "{pattern:?} gives index names of {} bytes; Elasticsearch allows 255",
                sample.len()
            ));
        }
        Ok(IndexPattern {
            pattern: pattern.to_owned(),
            dynamic: items
                .iter()
                .any(|i| !matches!(i, Item::Literal(_) | Item::Space(_))),
            cache: None,
        })
    }

    /// The index for a record with this RFC 3339 time, or `None` when the time does not parse
    /// (whatever the pattern): the caller gives the record a time that does, never the clock's.
    pub fn index_for(&mut self, time: &str) -> Option<&str> {
        let (head, zone) = second_key(time)?;
        let hit = matches!(&self.cache, Some((h, z, _)) if h == head && z == zone);
        if !hit {
            let when = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
            let name = if self.dynamic {
                when.format(&self.pattern).to_string()
            } else {
                self.pattern.clone()
            };
            self.cache = Some((head.to_owned(), zone.to_owned(), name));
        }
        self.cache.as_ref().map(|(_, _, name)| name.as_str())
    }
}

/// Splits an RFC 3339 time into the part up to whole seconds and its zone, leaving out the
/// fraction: all times with the same two parts fall into the same index.
/// `None` when the time cannot be RFC 3339 (too short, or a fraction without digits), so that a
/// cache hit is only ever a time that parses.
fn second_key(time: &str) -> Option<(&str, &str)> {
    if time.len() < 20 || !time.is_char_boundary(19) {
        return None;
    }
    let (head, rest) = time.split_at(19);
    let zone = match rest.strip_prefix('.') {
        Some(fraction) => {
            let zone = fraction.trim_start_matches(|c: char| c.is_ascii_digit());
            if zone.len() == fraction.len() {
                return None;
            }
            zone
        }
        None => rest,
    };
    Some((head, zone))
}

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
                crate::tail::seed("", key.ino, key.fingerprint, key.born_ns, 0),
                offset,
            )
        }
    };
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((h >> (124 - 4 * i)) & 0xf) as usize];
    }
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

/// Turns records into bulk items appended to a chunk.
pub struct ItemEncoder {
    index: IndexPattern,
    documents: DocumentWriter,
}

impl ItemEncoder {
    pub fn new(index: IndexPattern, documents: DocumentWriter) -> Self {
        ItemEncoder { index, documents }
    }

    /// Appends `rec` from file `key` as one `create` item. `extra` is the file's pod fields.
    pub fn encode(
        &mut self,
        chunk: &mut Chunk,
        key: &FileKey,
        rec: &Record,
        extra: &[u8],
        json: bool,
    ) -> Outcome {
        chunk.begin_item();
        let out = &mut chunk.body;
        out.extend_from_slice(b"{\"create\":{\"_index\":\"");
        let mut rec = Cow::Borrowed(rec);
        let index = self.index.index_for(&rec.time);
        match index {
            // The line's own time: the one lookup on the common path.
            Some(name) if !rec.flags.malformed => out.extend_from_slice(name.as_bytes()),
            // A malformed line's time is its neighbour's (or empty), never the line's own.
            _ => {
                let parsed = index.is_some();
                let rec = rec.to_mut();
                rec.flags.time_inferred = true;
                if !parsed {
                    rec.time = Cow::Owned(anchor_time(key));
                }
                match self.index.index_for(&rec.time) {
                    Some(name) => out.extend_from_slice(name.as_bytes()),
                    // Not reached (the anchor always parses): the pattern as it is, never
                    // the clock.
                    None => out.extend_from_slice(self.index.pattern.as_bytes()),
                }
            }
        }
        out.extend_from_slice(b"\",\"_id\":\"");
        out.extend_from_slice(&document_id(key, rec.offset));
        out.extend_from_slice(b"\"}}\n");
        let outcome = self.documents.write_as(out, &rec, extra, json);
        let _ = out.write_all(b"\n");
        chunk.end_item();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Flags, Stream};
    use serde_json::Value;

    #[test]
    fn index_names_follow_the_record_time_in_utc() {
        let mut p = IndexPattern::new("logs-%Y.%m.%d").unwrap();
        let cases = [
            ("2026-11-26T17:00:00.123456789Z", "logs-2026.11.26"),
            ("2026-11-26T23:59:59.999Z", "logs-2026.11.26"),
            ("2026-11-27T00:30:00+02:00", "logs-2026.11.26"),
            ("2026-12-31T23:00:00-05:00", "logs-2027.01.01"),
            ("2026-12-31T23:00:00.1-05:00", "logs-2027.01.01"),
        ];
        for (time, want) in cases {
            assert_eq!(p.index_for(time), Some(want), "{time}");
        }
        let mut fixed = IndexPattern::new("klear-karma-logs").unwrap();
        assert_eq!(
            fixed.index_for("2026-11-26T17:00:00Z"),
            Some("klear-karma-logs")
        );
    }

    #[test]
    fn a_time_that_does_not_parse_gets_no_index_rather_than_todays() {
        for pattern in ["logs-%Y.%m.%d", "klear-karma-logs"] {
            let mut p = IndexPattern::new(pattern).unwrap();
            // A good time first, so the cache is warm: none of these may hit it.
            assert!(p.index_for("2026-11-26T17:00:00.5Z").is_some());
            for bad in [
                "",
                "garbage",
                "2026-11-26T17:00:00",
                "2026-11-26T17:00:00.Z",
                "2026-11-26T17:00:00.5",
                "2026-11-26T17:00:00.5Zjunk",
                "2026-13-26T17:00:00Z",
            ] {
                assert_eq!(p.index_for(bad), None, "{pattern} {bad:?}");
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in [
            "Logs-%Y", "logs/%Y", "_logs", "logs-%Q", "logs-%s", "logs %Y",
        ] {
            assert!(IndexPattern::new(p).is_err(), "{p}");
        }
    }

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
        let mut enc = ItemEncoder::new(
            IndexPattern::new("logs-%Y.%m.%d").unwrap(),
            DocumentWriter::new(&crate::config::Parse::default()),
        );
        let rec = Record {
            time: time.into(),
            stream: Some(Stream::Stdout),
            message: std::borrow::Cow::Borrowed(b"no time here"),
            offset: 0,
            flags,
        };
        let mut chunk = Chunk::new();
        enc.encode(&mut chunk, key, &rec, b"", true);
        // The item follows its frame header in the chunk. (Not the first `{`: the header holds
        // the time in binary, which can contain that byte.)
        let start = crate::buffer::frame::HEADER;
        let text = String::from_utf8(chunk.body[start..].to_vec()).unwrap();
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
}
