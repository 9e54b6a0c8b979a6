//! Reading what the cluster answered to a `_bulk` request, and what it means for each item.
//!
//! Owns the reading of response bodies (always with a limit: [`BULK_BODY_LIMIT`] for a 2xx,
//! [`ERROR_BODY_LIMIT`] for anything else), the checks a 2xx must pass before any item in it
//! counts (JSON, complete, one item per item sent, a status on every item), the `Retry-After`
//! header (seconds or an HTTP date, capped), and the classification of one item's result. It
//! hands the shipper an [`Attempt`]; it never acknowledges anything itself.
//!
//! Guarantee: an answer that fails a check is an [`Attempt::Invalid`], which the shipper
//! retries as a whole; nothing in it is taken as indexed, and nothing becomes a dead letter.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::{Duration, SystemTime};

/// The most bytes of a 2xx `_bulk` body read: about 25 bytes per item with `filter_path`, so a
/// request of 5 MiB of small lines is answered in well under a MiB.
pub const BULK_BODY_LIMIT: usize = 8 << 20;
/// The most bytes of any other body read: only its start is shown, in logs and `/health`.
pub const ERROR_BODY_LIMIT: usize = 8 << 10;
/// How much of an error body is shown.
const SNIPPET: usize = 300;

/// Why a 2xx answer cannot be taken at its word.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the bulk response is over {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the bulk response was cut short: {0}")]
    Truncated(String),
    #[error("HTTP {status} with a body that is not a bulk response ({detail}): {snippet}")]
    Unreadable {
        status: u16,
        detail: String,
        snippet: String,
    },
    #[error("the bulk response has {got} items for {sent} sent")]
    ItemCount { got: usize, sent: usize },
    #[error("item {index} of the bulk response has no status")]
    NoStatus { index: usize },
}

impl Error {
    /// The `reason` label of `logferry_bulk_invalid_responses_total`: a fixed set.
    pub fn label(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::Truncated(_) => "truncated",
            Error::Unreadable { .. } => "unreadable",
            Error::ItemCount { .. } => "item_count",
            Error::NoStatus { .. } => "item_without_status",
        }
    }

    /// Every value [`Error::label`] can take, so their series exist from the start.
    pub const LABELS: [&'static str; 5] = [
        "too_large",
        "truncated",
        "unreadable",
        "item_count",
        "item_without_status",
    ];
}

/// How one bulk attempt went, as far as the whole request is concerned.
pub enum Attempt {
    /// Per-item statuses, in request order, exactly one per item sent.
    Items(Vec<ItemResult>),
    /// The request body is too large for the cluster.
    TooLarge,
    /// Try again later (connection error, timeout, 408, 429, 5xx), after at least this long.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// A 2xx that cannot be trusted: sent again as a whole, and never given up on.
    Invalid(Error),
    /// Credentials refused: nothing will get through until they change.
    Unauthorized(String),
    /// The request as a whole was refused (a wrong URL, a proxy in the way): a configuration
    /// problem, not a property of the records, so they wait rather than go to dead letters.
    Refused(String),
}

/// One item's answer.
#[derive(Debug)]
pub struct ItemResult {
    pub status: u16,
    pub error: Option<Box<RawValue>>,
    /// The error's `type`, e.g. `mapper_parsing_exception`.
    pub error_type: Option<String>,
}

/// What should happen to one item after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkItemOutcome {
    Indexed,
    Duplicate,
    /// Refused for now (a busy or blocked cluster): sent again after a backoff.
    Retry,
    /// Refused because the cluster's setup is wrong (privileges, a missing index the cluster
    /// will not create): waits like a refused request, however long, never a dead letter.
    Paused,
    DeadLetter,
}

/// The delivery contract's classification of one item's result.
pub fn classify(status: u16, error_type: Option<&str>) -> BulkItemOutcome {
    match (status, error_type) {
        (200 | 201, _) => BulkItemOutcome::Indexed,
        (409, _) => BulkItemOutcome::Duplicate,
        (429 | 500..=599, _) => BulkItemOutcome::Retry,
        // Write blocks (flood-stage watermark, read-only index) are lifted by operators; the
        // items must wait, not be thrown away. Older clusters answered them with 403.
        (_, Some("cluster_block_exception" | "index_closed_exception")) => BulkItemOutcome::Retry,
        // The agent's role lacks a privilege, or the index does not exist and the cluster does
        // not create it: an operator fixes that, and then the very same documents are fine.
        (_, Some("security_exception" | "index_not_found_exception")) => BulkItemOutcome::Paused,
        _ => BulkItemOutcome::DeadLetter,
    }
}

/// Why items are dead-lettered, as far as the `reason` label of
/// `logferry_dead_letters_total` goes: the error types a cluster refuses documents with, the
/// agent's own reasons, then `other` — never a value from the response as such.
const DEAD_LETTER_REASONS: [&str; 12] = [
    "mapper_parsing_exception",
    "document_parsing_exception",
    "strict_dynamic_mapping_exception",
    "illegal_argument_exception",
    "x_content_parse_exception",
    "action_request_validation_exception",
    "invalid_index_name_exception",
    "version_conflict_engine_exception",
    "request_entity_too_large",
    "retry_timeout",
    "shipper_failed",
    "other",
];

/// The label for a dead letter refused with `error_type`.
pub fn dead_letter_label(error_type: &str) -> &'static str {
    DEAD_LETTER_REASONS
        .iter()
        .find(|known| **known == error_type)
        .copied()
        .unwrap_or("other")
}

/// Every value [`dead_letter_label`] can take.
pub fn dead_letter_labels() -> &'static [&'static str] {
    &DEAD_LETTER_REASONS
}

/// The wait a `Retry-After` value asks for, at most `cap`: delay-seconds, or an HTTP date
/// (RFC 9110's IMF-fixdate, which RFC 2822 parsing reads) compared with `now`. A date in the
/// past asks for no wait; anything else unreadable is ignored.
pub fn retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(cap));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(now).unwrap_or_default().min(cap))
}

/// Reads at most `limit` bytes of the body. `Ok(false)` in the second place when the body
/// went on past the limit (the rest is left unread: the connection is dropped).
pub async fn read_body(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok((body, false));
    }
    while let Some(chunk) = resp.chunk().await? {
        if body.len().saturating_add(chunk.len()) > limit {
            let room = limit - body.len();
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// The start of an error body, for a log line or `/health`.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
    let text = text.trim();
    if body.len() > SNIPPET {
        format!("{text}…")
    } else {
        text.to_owned()
    }
}

/// What an answer means for the request as a whole. `sent` items were sent to `host`;
/// `cap` bounds the wait a `Retry-After` may ask for (`retry_max_interval`).
pub async fn interpret(
    mut resp: reqwest::Response,
    host: &str,
    sent: usize,
    cap: Duration,
) -> Attempt {
    let status = resp.status().as_u16();
    let after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now(), cap));
    let success = (200..=299).contains(&status);
    let limit = if success {
        BULK_BODY_LIMIT
    } else {
        ERROR_BODY_LIMIT
    };
    let (body, complete) = match read_body(&mut resp, limit).await {
        Ok(read) => read,
        Err(e) if success => return Attempt::Invalid(Error::Truncated(error_chain(&e))),
        // Of an error only the start is shown: the status says what it means.
        Err(_) => (Vec::new(), false),
    };
    if success {
        if !complete {
            return Attempt::Invalid(Error::TooLarge { limit });
        }
        return match bulk_items(status, &body, sent) {
            Ok(items) => Attempt::Items(items),
            Err(e) => Attempt::Invalid(e),
        };
    }
    // What actually came back: the status and the start of the body, if there is one.
    let said = match snippet(&body) {
        s if s.is_empty() => format!("HTTP {status} from {host}"),
        s => format!("HTTP {status} from {host}: {s}"),
    };
    match status {
        401 | 403 => Attempt::Unauthorized(said),
        413 => Attempt::TooLarge,
        408 | 429 | 500..=599 => Attempt::Retry {
            reason: said,
            after,
        },
        _ => Attempt::Refused(said),
    }
}

/// An error with its causes, the way a person reads them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<OneItem>,
}

/// A bulk response item, `{"create": {...}}`: the action name is not needed, so the object is
/// read without building a map per item.
struct OneItem(Option<BulkItem>);

impl<'de> Deserialize<'de> for OneItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneItem;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a bulk response item")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<OneItem, A::Error> {
                let item = m
                    .next_entry::<serde::de::IgnoredAny, BulkItem>()?
                    .map(|(_, item)| item);
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(OneItem(item))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct BulkItem {
    /// Absent only in a broken answer; checked, never assumed.
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    error: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct ErrorType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The items of a 2xx answer to a request of `sent` items, once it passed every check.
pub fn bulk_items(status: u16, body: &[u8], sent: usize) -> Result<Vec<ItemResult>, Error> {
    let parsed: BulkResponse = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            Error::Truncated(format!("{} bytes, then {e}", body.len()))
        } else {
            Error::Unreadable {
                status,
                detail: e.to_string(),
                snippet: snippet(body),
            }
        }
    })?;
    if parsed.items.len() != sent {
        return Err(Error::ItemCount {
            got: parsed.items.len(),
            sent,
        });
    }
    parsed
        .items
        .into_iter()
        .enumerate()
        .map(|(index, OneItem(item))| {
            let (status, error) = match item {
                Some(BulkItem {
                    status: Some(s @ 100..=599),
                    error,
                }) => (s, error),
                _ => return Err(Error::NoStatus { index }),
            };
            let error_type = error
                .as_deref()
                .and_then(|e| serde_json::from_str::<ErrorType>(e.get()).ok())
                .and_then(|e| e.kind);
            Ok(ItemResult {
                status,
                error,
                error_type,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_delivery_contract() {
        use BulkItemOutcome::*;
        let cases = [
            (201, None, Indexed),
            (200, None, Indexed),
            (409, Some("version_conflict_engine_exception"), Duplicate),
            (429, Some("es_rejected_execution_exception"), Retry),
            (503, None, Retry),
            (403, Some("cluster_block_exception"), Retry),
            (400, Some("mapper_parsing_exception"), DeadLetter),
            (400, None, DeadLetter),
            // The operator's setup, not the document: wait for it to be fixed.
            (403, Some("security_exception"), Paused),
            (404, Some("index_not_found_exception"), Paused),
        ];
        for (status, kind, want) in cases {
            assert_eq!(classify(status, kind), want, "{status} {kind:?}");
        }
    }

    #[test]
    fn dead_letter_reasons_are_a_bounded_set() {
        assert_eq!(
            dead_letter_label("mapper_parsing_exception"),
            "mapper_parsing_exception"
        );
        assert_eq!(dead_letter_label("retry_timeout"), "retry_timeout");
        // Whatever a cluster or a proxy puts in `type` does not become a new series.
        assert_eq!(dead_letter_label("x\"}\n{evil"), "other");
        assert_eq!(dead_letter_label(""), "other");
    }

    #[test]
    fn retry_after_in_seconds_is_capped() {
        let (now, cap) = (SystemTime::now(), Duration::from_secs(30));
        let cases = [
            ("5", Some(Duration::from_secs(5))),
            (" 0 ", Some(Duration::ZERO)),
            ("18446744073709551615", Some(cap)),
            ("99999999999999999999999", None),
            ("-1", None),
            ("soon", None),
        ];
        for (value, want) in cases {
            assert_eq!(retry_after(value, now, cap), want, "{value:?}");
        }
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_until_then_capped() {
        let now =
            SystemTime::from(chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap());
        let cap = Duration::from_secs(30);
        let cases = [
            (
                "Sun, 01 Mar 2026 12:00:10 GMT",
                Some(Duration::from_secs(10)),
            ),
            ("Sun, 01 Mar 2026 11:00:00 GMT", Some(Duration::ZERO)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(cap)),
            ("Sunday, 01-Mar-26 12:00:10 GMT", None),
        ];
        for (value, want) in cases {
            assert_eq!(retry_after(value, now, cap), want, "{value:?}");
        }
    }

    fn check(body: &str, sent: usize) -> Result<Vec<u16>, &'static str> {
        bulk_items(200, body.as_bytes(), sent)
            .map(|items| items.iter().map(|i| i.status).collect())
            .map_err(|e| e.label())
    }

    #[test]
    fn a_2xx_counts_only_when_it_answers_every_item_sent() {
        let two = r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}]}"#;
        assert_eq!(check(two, 2), Ok(vec![201, 429]));
        let cases = [
            (two, 3, "item_count"),
            (two, 1, "item_count"),
            (r#"{"items":[]}"#, 1, "item_count"),
            (
                r#"{"items":[{"create":{"_index":"x"}}]}"#,
                1,
                "item_without_status",
            ),
            (r#"{"items":[{}]}"#, 1, "item_without_status"),
            (
                r#"{"items":[{"create":{"status":0}}]}"#,
                1,
                "item_without_status",
            ),
            ("<html>Bad gateway</html>", 1, "unreadable"),
            ("", 1, "truncated"),
            (
                r#"{"errors":false,"items":[{"create":{"sta"#,
                1,
                "truncated",
            ),
            (r#"{"errors":false}"#, 1, "unreadable"),
        ];
        for (body, sent, want) in cases {
            assert_eq!(check(body, sent), Err(want), "{body} for {sent}");
        }
        let e = bulk_items(200, two.as_bytes(), 100)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "the bulk response has 2 items for 100 sent");
    }

    #[test]
    fn an_error_type_is_read_from_the_item() {
        let body = r#"{"items":[{"index":{"status":403,"error":{"type":"security_exception","reason":"no"}}}]}"#;
        let items = bulk_items(200, body.as_bytes(), 1).unwrap();
        assert_eq!(items[0].error_type.as_deref(), Some("security_exception"));
    }
}
