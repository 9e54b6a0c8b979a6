//! One buffered `_bulk` item as one Kafka message: the document line is the value (the bytes
//! Elasticsearch would index, without the line's end), `_id` and `_index` from the action line
//! are headers, and the key is the container the record came from, so that one container's
//! records stay in order on one partition.
//!
//! Nothing here parses the document as a whole: the action line is the agent's own (its shape
//! is [`crate::encode`]'s), and the container is read from the `kubernetes` object the agent
//! appends as the document's last members.

use memchr::memmem;

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
    Parts {
        index: string_after(action, b"\"_index\":\""),
        id: string_after(action, b"\"_id\":\""),
        document,
    }
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
        let names = [
            member(pod, b"namespace_name"),
            member(pod, b"pod_name"),
            member(pod, b"container_name"),
        ];
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
/// `app_kubernetes`), up to its end.
fn kubernetes_object(document: &[u8]) -> Option<&[u8]> {
    const OPEN: &[u8] = b",\"kubernetes\":{";
    let start = memmem::rfind(document, OPEN)? + OPEN.len() - 1;
    let object = &document[start..];
    Some(&object[..object_end(object)?])
}

/// The length of the JSON object `text` starts with (`{` … `}`), strings and escapes
/// respected.
fn object_end(text: &[u8]) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &c) in text.iter().enumerate() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The string value of `name` among the members of `object` at its first level (not in
/// `labels` or `annotations`, whose keys are anyone's).
fn member<'a>(object: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < object.len() {
        match object[i] {
            b'"' => {
                let start = i + 1;
                let end = start + string_len(&object[start..])?;
                // A key at the first level: the string is followed by `:` and a string.
                if depth == 1
                    && &object[start..end] == name
                    && object.get(end + 1) == Some(&b':')
                    && object.get(end + 2) == Some(&b'"')
                {
                    let value = end + 3;
                    let len = string_len(&object[value..])?;
                    return Some(&object[value..value + len]);
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The length of a JSON string's content up to its closing quote (escapes skipped).
fn string_len(text: &[u8]) -> Option<usize> {
    let mut escaped = false;
    for (i, &c) in text.iter().enumerate() {
        match c {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
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
