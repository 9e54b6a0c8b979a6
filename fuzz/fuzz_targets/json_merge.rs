//! The document written for any message — JSON or not, deep, broken, not UTF-8 — is one valid
//! JSON object (by the grammar: a number too large for an f64 is valid JSON, copied as the
//! application wrote it), and the agent's own fields are the agent's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logferry::config::Parse;
use logferry::vocab::{Flags, Record, Stream};
use logferry::parse::DocumentWriter;
use std::borrow::Cow;

fuzz_target!(|data: &[u8]| {
    let (target, message) = match data.split_first() {
        Some((b, rest)) if b % 3 == 0 => ("app", rest),
        Some((_, rest)) => ("", rest),
        None => ("", data),
    };
    let cfg = Parse {
        target: target.to_owned(),
        ..Parse::default()
    };
    let writer = DocumentWriter::new(&cfg);
    let rec = Record {
        time: Cow::Borrowed("2026-11-26T17:00:00.000000000Z"),
        stream: Some(Stream::Stdout),
        message: Cow::Borrowed(message),
        offset: 0,
        flags: Flags::default(),
    };
    let mut out = Vec::new();
    writer.write(&mut out, &rec, b"");
    if let Err(e) = serde_json::from_slice::<&serde_json::value::RawValue>(&out) {
        panic!(
            "invalid JSON document ({e}): {}",
            String::from_utf8_lossy(&out)
        );
    }
    assert!(
        out.starts_with(
            b"{\"@timestamp\":\"2026-11-26T17:00:00.000000000Z\",\"stream\":\"stdout\""
        )
    );
    // Where the values also fit serde_json's numbers, the agent's fields are unique.
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&out) {
        assert!(doc.is_object());
        assert_eq!(doc["@timestamp"], "2026-11-26T17:00:00.000000000Z");
        assert_eq!(doc["stream"], "stdout");
    }
});
