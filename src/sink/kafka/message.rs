//! One buffered `_bulk` item as one Kafka message: the document line is the value (the bytes
//! Elasticsearch would index, without the line's end), `_id` and `_index` from the action line
//! are headers, and the key is the container the record came from, so that one container's
//! records stay in order on one partition.
//!
//! Nothing here parses the document as a whole: the action line is the agent's own (its shape
//! is [`crate::encode`]'s), and the container is read from the `kubernetes` object the agent
//! appends as the document's last members.

use memchr::memmem;
use std::sync::LazyLock;

/// The parts of one item a message is made of, borrowed from the item.
#[derive(Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    pub index: Option<&'a [u8]>,
    pub id: Option<&'a [u8]>,
    pub document: &'a [u8],
}

/// Splits an item (`{"create":{"_index":"…","_id":"…"}}\n{…}\n`) into its parts. An item that
/// is not of that shape (it cannot be, short of a bug) still goes whole as the value: a
/// message without headers is noticed downstream, a lost one is not.
pub fn split(item: &[u8]) -> Parts<'_> {
    let Some(nl) = memchr::memchr(b'\n', item) else {
        return Parts {
            index: None,
            id: None,
            document: item,
        };
    };
    let action = &item[..nl];
    let mut document = &item[nl + 1..];
    if let [rest @ .., b'\n'] = document {
        document = rest;
    }
    let (index, id) = match agents_action(action) {
        Some((index, id)) => (Some(index), Some(id)),
        None => (
            string_after(action, b"\"_index\":\""),
            string_after(action, b"\"_id\":\""),
        ),
    };
    Parts {
        index,
        id,
        document,
    }
}

/// The index and id of an action line as [`crate::encode`] writes it, read in place (no
/// search: this runs for every record).
fn agents_action(action: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = action.strip_prefix(b"{\"create\":{\"_index\":\"")?;
    let end = memchr::memchr(b'"', rest)?;
    let (index, rest) = (&rest[..end], &rest[end..]);
    let rest = rest.strip_prefix(b"\",\"_id\":\"")?;
    let id = &rest[..memchr::memchr(b'"', rest)?];
    Some((index, id))
}

/// The JSON string value that follows `prefix` (which ends with its opening quote), without
/// unescaping: index names and ids never hold a quote or a backslash.
fn string_after<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let start = memmem::find(text, prefix)? + prefix.len();
    let len = memchr::memchr(b'"', &text[start..])?;
    Some(&text[start..start + len])
}

/// Writes the message key for `document` into `out` (cleared first):
/// `namespace/pod/container` from its `kubernetes` object, or `index` when the document has
/// none (a file outside the kubelet's layout), so that records of one container keep their
/// order on one partition.
pub fn key(document: &[u8], index: Option<&[u8]>, out: &mut Vec<u8>) {
    out.clear();
    if let Some(pod) = kubernetes_object(document) {
        let names = members(pod, [b"namespace_name", b"pod_name", b"container_name"]);
        if names.iter().any(Option::is_some) {
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    out.push(b'/');
                }
                out.extend_from_slice(name.unwrap_or_default());
            }
            return;
        }
    }
    out.extend_from_slice(index.unwrap_or_default());
}

/// The agent's `kubernetes` object: the last one, as the agent writes it after the
/// application's fields (an application's own top-level `kubernetes` is renamed
/// `app_kubernetes`), and what follows it.
fn kubernetes_object(document: &[u8]) -> Option<&[u8]> {
    const OPEN: &[u8] = b",\"kubernetes\":{";
    // Built once: a searcher's set-up costs more than a search of one document. Forward
    // searches (vectorised, unlike reverse ones) until the last: there is one, mostly.
    static FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(OPEN));
    let mut start = FINDER.find(document)? + OPEN.len() - 1;
    while let Some(next) = FINDER.find(&document[start..]) {
        start += next + OPEN.len() - 1;
    }
    Some(&document[start..])
}

/// The string values of `names` among the members of the object `object` starts with, at its
/// first level (not in `labels` or `annotations`, whose keys are anyone's), in one pass that
/// ends once all are found or the object ends. Strings and their escapes are respected.
fn members<'a, const N: usize>(object: &'a [u8], names: [&[u8]; N]) -> [Option<&'a [u8]>; N] {
    let mut found = [None; N];
    let mut depth = 0usize;
    let mut i = 0;
    // The first-level key just read, while its value is next.
    let mut key: Option<&[u8]> = None;
    // A plain loop over the bytes: measured faster than jumping with memchr over the short
    // strings of this object.
    while i < object.len() {
        let c = object[i];
        if c == b'"' {
            let start = i + 1;
            let Some(len) = string_len(&object[start..]) else {
                break;
            };
            let end = start + len;
            if let Some(k) = key.take() {
                if let Some(slot) = names.iter().position(|n| *n == k) {
                    found[slot] = Some(&object[start..end]);
                    if found.iter().all(Option::is_some) {
                        break;
                    }
                }
            } else if depth == 1 && object.get(end + 1) == Some(&b':') {
                key = Some(&object[start..end]);
                i = end + 2;
                continue;
            }
            i = end + 1;
            continue;
        }
        key = None;
        match c {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The length of a JSON string's content up to its closing quote (escapes skipped).
fn string_len(text: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => return Some(i),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(document: &str, index: &str) -> String {
        let mut out = Vec::new();
        key(document.as_bytes(), Some(index.as_bytes()), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_item_splits_into_its_document_and_headers() {
        let item =
            b"{\"create\":{\"_index\":\"logs-2026.12.06\",\"_id\":\"ab12\"}}\n{\"log\":\"x\\ny\"}\n";
        assert_eq!(
            split(item),
            Parts {
                index: Some(&b"logs-2026.12.06"[..]),
                id: Some(&b"ab12"[..]),
                document: br#"{"log":"x\ny"}"#,
            }
        );
        let odd = split(b"not an item");
        assert_eq!(
            (odd.index, odd.id, odd.document),
            (None, None, &b"not an item"[..])
        );
    }

    #[test]
    fn the_key_is_the_container_as_the_agent_wrote_it() {
        // (document, the key)
        let cases = [
            (
                r#"{"@timestamp":"t","log":"m","kubernetes":{"container_name":"api","namespace_name":"shop","pod_name":"web-1"}}"#,
                "shop/web-1/api",
            ),
            (
                r#"{"@timestamp":"t","log":"m","kubernetes":{"container_name":"api","labels":{"namespace_name":"spoof","pod_name":"x"},"namespace_name":"shop","pod_name":"web-1"},"docker":{"container_id":"c"}}"#,
                "shop/web-1/api",
            ),
            // The application's own objects come first; the agent's is the last.
            (
                r#"{"@timestamp":"t","meta":{"kubernetes":{"pod_name":"spoof"}},"app_kubernetes":{"pod_name":"spoof2"},"kubernetes":{"container_name":"api","namespace_name":"shop","pod_name":"web-1"}}"#,
                "shop/web-1/api",
            ),
            // A string holding braces and quotes in a label does not end the object early.
            (
                r#"{"@timestamp":"t","kubernetes":{"container_name":"api","labels":{"a":"}\"{"},"namespace_name":"shop","pod_name":"web-1"}}"#,
                "shop/web-1/api",
            ),
            // No pod fields at all: the index keeps such records together.
            (r#"{"@timestamp":"t","log":"m"}"#, "logs"),
        ];
        for (document, want) in cases {
            assert_eq!(key_of(document, "logs"), want, "{document}");
        }
    }
}
