//! Documents refused for their mapping, sent once more in a shape any index takes: in a shared
//! daily index one application's `"status":200` and another's `"status":"OK"`, or `app` as a
//! string and `app.kubernetes.io/name` as an object, or a line with more keys than the index's
//! field limit. The second of each would otherwise be a dead letter, out of sight in Kibana.
//!
//! The salvaged document keeps the agent's own fields (time, pod, stream), carries the message
//! as one string in `log` (the raw line when the document had it, else the message's fields as
//! JSON text), and says what happened in `logferry.mapping_conflict` (the field and the
//! reason). It goes to the same index under the same id, so a replay is still a 409. Only what
//! is refused again becomes a dead letter. No peer does this: Vector drops such documents,
//! Fluent Bit retries the chunk and then drops it.

use super::refused::Refusal;
use crate::buffer::Batch;
use crate::config;
use serde_json::{Map, Value, json};

/// The error types a cluster refuses a document's mapping with. `illegal_argument_exception`
/// is also what the field limit is refused with.
const MAPPING_CONFLICTS: [&str; 3] = [
    "mapper_parsing_exception",
    "document_parsing_exception",
    "illegal_argument_exception",
];

/// The longest cluster reason kept in the document (a reason quotes a preview of the value).
const REASON_BYTES: usize = 300;

/// Whether a refusal of this type is worth a salvaged second try.
pub(super) fn is_mapping_conflict(error_type: &str) -> bool {
    MAPPING_CONFLICTS.contains(&error_type)
}

/// The salvaged items (action line and document each), in the order of `refused`.
pub(super) fn salvaged(items: &[Vec<u8>], refused: &[Refusal<'_>]) -> Batch {
    let (mut body, mut starts) = (Vec::new(), Vec::new());
    for (r, item) in refused.iter().zip(items) {
        let text = String::from_utf8_lossy(item);
        let (action, original) = text.split_once('\n').unwrap_or((&text, ""));
        starts.push(body.len() as u32);
        // The same action: the same index, the same id.
        body.extend_from_slice(action.as_bytes());
        body.push(b'\n');
        let doc = document(original.trim_end(), r);
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &doc);
        body.push(b'\n');
    }
    Batch::in_memory(body, &starts)
}

/// The document `original` refused as `r` says, salvaged.
fn document(original: &str, r: &Refusal<'_>) -> Value {
    let fields = match serde_json::from_str::<Value>(original) {
        Ok(Value::Object(fields)) => fields,
        // Not an object (never written by the agent): all of it is the message.
        _ => Map::from_iter([("log".to_owned(), Value::String(original.to_owned()))]),
    };
    let mut doc = Map::new();
    let mut message = Map::new();
    let mut flags = Map::new();
    for (k, v) in fields {
        match k.as_str() {
            "logferry" => {
                if let Value::Object(f) = v {
                    flags = f;
                }
            }
            own if config::AGENT_KEYS.contains(&own) => {
                doc.insert(k, v);
            }
            _ => {
                message.insert(k, v);
            }
        }
    }
    // The raw line when the document has it (a plain line, or `keep_original`): it holds
    // every field of the message already. Else the message's fields, as JSON text.
    let log = match message.remove("log") {
        Some(Value::String(raw)) => raw,
        Some(other) => {
            message.insert("log".to_owned(), other);
            Value::Object(message).to_string()
        }
        None => Value::Object(message).to_string(),
    };
    doc.insert("log".to_owned(), Value::String(log));
    let reason = reason_of(r);
    flags.insert(
        "mapping_conflict".to_owned(),
        json!({
            "field": field_of(&reason),
            "reason": format!("{}: {}", r.reason, cut(&reason, REASON_BYTES)),
        }),
    );
    doc.insert("logferry".to_owned(), Value::Object(flags));
    Value::Object(doc)
}

/// The cluster's reason text, with what caused it when it says.
fn reason_of(r: &Refusal<'_>) -> String {
    let Some(error) = r
        .error
        .and_then(|e| serde_json::from_str::<Value>(e.get()).ok())
    else {
        return String::new();
    };
    let reason = error["reason"].as_str().unwrap_or_default();
    match error["caused_by"]["reason"].as_str() {
        Some(cause) if !cause.is_empty() => format!("{reason} ({cause})"),
        _ => reason.to_owned(),
    }
}

/// The field a reason names: `failed to parse field [status] of type [long]`, `mapper [app]
/// cannot be changed`, `Could not dynamically add mapping for field [app.kubernetes.io/name]`;
/// none for the field limit, which names no field.
fn field_of(reason: &str) -> Option<&str> {
    ["field [", "mapper ["].iter().find_map(|marker| {
        let start = reason.find(marker)? + marker.len();
        let len = reason[start..].find(']')?;
        Some(&reason[start..start + len])
    })
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn refusal<'a>(error: &'a RawValue, kind: &'a str) -> Refusal<'a> {
        Refusal {
            item: 0,
            status: 400,
            reason: kind,
            error: Some(error),
        }
    }

    #[test]
    fn the_message_becomes_a_string_the_agents_fields_stay_and_the_conflict_is_said() {
        let error = RawValue::from_string(
            r#"{"type":"document_parsing_exception","reason":"[1:40] failed to parse field [status] of type [long] in document with id 'x'. Preview of field's value: 'OK'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"OK\""}}"#.to_owned(),
        )
        .unwrap();
        let r = refusal(&error, "document_parsing_exception");
        let item = br#"{"create":{"_index":"logs-2026.12.06","_id":"abc"}}
{"@timestamp":"2026-12-06T10:00:00Z","stream":"stdout","status":"OK","msg":"hi","kubernetes":{"pod_name":"p"},"logferry":{"truncated":true}}
"#;
        let batch = salvaged(&[item.to_vec()], &[r]);
        let got = String::from_utf8(batch.item(0).unwrap()).unwrap();
        let (action, doc) = got.split_once('\n').unwrap();
        assert_eq!(
            action,
            r#"{"create":{"_index":"logs-2026.12.06","_id":"abc"}}"#
        );
        let doc: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(doc["@timestamp"], "2026-12-06T10:00:00Z");
        assert_eq!(doc["kubernetes"]["pod_name"], "p");
        assert!(
            doc.get("status").is_none() && doc.get("msg").is_none(),
            "{doc}"
        );
        let log: Value = serde_json::from_str(doc["log"].as_str().unwrap()).unwrap();
        assert_eq!(log, json!({"status": "OK", "msg": "hi"}));
        assert_eq!(doc["logferry"]["truncated"], true);
        assert_eq!(doc["logferry"]["mapping_conflict"]["field"], "status");
        let reason = doc["logferry"]["mapping_conflict"]["reason"]
            .as_str()
            .unwrap();
        assert!(
            reason.starts_with("document_parsing_exception: [1:40] failed to parse field [status]"),
            "{reason}"
        );
    }

    #[test]
    fn a_raw_copy_is_the_message_and_the_field_limit_names_no_field() {
        let error = RawValue::from_string(
            r#"{"type":"illegal_argument_exception","reason":"Limit of total fields [1000] has been exceeded while adding new fields [3]"}"#.to_owned(),
        )
        .unwrap();
        let r = refusal(&error, "illegal_argument_exception");
        let item = br#"{"create":{"_index":"i","_id":"a"}}
{"@timestamp":"t","log":"{\"k1\":1}","k1":1}"#;
        let batch = salvaged(&[item.to_vec()], &[r]);
        let got = String::from_utf8(batch.item(0).unwrap()).unwrap();
        let doc: Value = serde_json::from_str(got.split_once('\n').unwrap().1).unwrap();
        assert_eq!(doc["log"], "{\"k1\":1}");
        assert!(doc.get("k1").is_none());
        assert!(doc["logferry"]["mapping_conflict"]["field"].is_null());
        assert!(is_mapping_conflict("mapper_parsing_exception"));
        assert!(!is_mapping_conflict("version_conflict_engine_exception"));
    }

    #[test]
    fn fields_are_read_from_every_reason_the_clusters_give() {
        for (reason, field) in [
            (
                "failed to parse field [status] of type [long] in document",
                Some("status"),
            ),
            (
                "mapper [app] cannot be changed from type [keyword] to [ObjectMapper]",
                Some("app"),
            ),
            (
                "Could not dynamically add mapping for field [app.kubernetes.io/name]. Existing mapping for [app] must be of type object but found [keyword].",
                Some("app.kubernetes.io/name"),
            ),
            (
                "object mapping for [app] tried to parse field [app] as object, but found a concrete value",
                Some("app"),
            ),
            ("Limit of total fields [1000] has been exceeded", None),
        ] {
            assert_eq!(field_of(reason), field, "{reason}");
        }
    }
}
