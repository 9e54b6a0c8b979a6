//! Bulk encoding: the action line of each item, with its index and its deterministic id.
//!
//! The id is a hash of where the record came from — the file's identity and the byte offset of
//! the record's first piece — so reading the same line twice (after a crash, a restart, a
//! replay) produces the same id, and the `create` action turns the second copy into a 409
//! instead of a duplicate. The index comes from the record's own timestamp for the same reason.

use crate::buffer::Chunk;
use crate::decode::Record;
use crate::parse::{DocumentWriter, Outcome};
use crate::tail::FileKey;
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use std::io::Write as _;

/// An index name pattern: strftime items applied to a record's timestamp in UTC.
#[derive(Debug, Clone)]
pub struct IndexPattern {
    pattern: String,
    /// Whether the pattern has any time item at all; if not the name is constant.
    dynamic: bool,
    /// The last (whole seconds, zone, index name) computed: lines arrive in time order, so
    /// almost every lookup hits.
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

    /// The index for a record with this RFC 3339 time. A time that does not parse (a malformed
    /// line at the very start of a file) falls back to the current time.
    pub fn index_for(&mut self, time: &str) -> &str {
        if !self.dynamic {
            return &self.pattern;
        }
        let (head, zone) = second_key(time);
        let hit = matches!(&self.cache, Some((h, z, _)) if h == head && z == zone);
        if !hit {
            let when = DateTime::parse_from_rfc3339(time)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|_| Utc::now());
            let name = when.format(&self.pattern).to_string();
            self.cache = Some((head.to_owned(), zone.to_owned(), name));
        }
        self.cache
            .as_ref()
            .map_or(&self.pattern, |(_, _, name)| name)
    }
}

/// Splits an RFC 3339 time into the part up to whole seconds and its zone, leaving out the
/// fraction: all times with the same two parts fall into the same index.
fn second_key(time: &str) -> (&str, &str) {
    if time.len() < 19 || !time.is_char_boundary(19) {
        return (time, "");
    }
    let (head, rest) = time.split_at(19);
    let zone = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    (head, zone)
}

/// The document id for the record at `offset` of the file `key`: 128 bits of xxh3, in hex.
pub fn document_id(key: &FileKey, offset: u64) -> [u8; 32] {
    let mut input = [0u8; 32];
    input[..8].copy_from_slice(&key.dev.to_le_bytes());
    input[8..16].copy_from_slice(&key.ino.to_le_bytes());
    input[16..24].copy_from_slice(&key.fingerprint.to_le_bytes());
    input[24..].copy_from_slice(&offset.to_le_bytes());
    let h = xxhash_rust::xxh3::xxh3_128(&input);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((h >> (124 - 4 * i)) & 0xf) as usize];
    }
    out
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
        out.extend_from_slice(self.index.index_for(&rec.time).as_bytes());
        out.extend_from_slice(b"\",\"_id\":\"");
        out.extend_from_slice(&document_id(key, rec.offset));
        out.extend_from_slice(b"\"}}\n");
        let outcome = self.documents.write_as(out, rec, extra, json);
        let _ = out.write_all(b"\n");
        chunk.end_item();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(p.index_for(time), want, "{time}");
        }
        let mut fixed = IndexPattern::new("klear-karma-logs").unwrap();
        assert_eq!(fixed.index_for("garbage"), "klear-karma-logs");
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
            dev: 1,
            ino: 2,
            fingerprint: 3,
        };
        assert_eq!(document_id(&k, 10), document_id(&k, 10));
        assert_ne!(document_id(&k, 10), document_id(&k, 11));
        let other = FileKey { ino: 9, ..k };
        assert_ne!(document_id(&k, 10), document_id(&other, 10));
        // Pinned: if this changes (layout, hash, or the xxhash crate), every replay after an
        // upgrade would index duplicates instead of getting 409s.
        assert_eq!(&document_id(&k, 10), b"a0df0c9515009817e58584af5d988b1c");
    }
}
