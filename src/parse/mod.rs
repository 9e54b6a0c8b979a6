//! Parsing: from a decoded [`Record`] to the JSON document Elasticsearch stores.
//!
//! Owns the merge policy. A message that is a JSON object has its fields merged into the
//! document (Fluentd's `reserve_data true`) or nested under `parse.target`; any other message
//! stays a string in `log`. Field values are copied through as the application wrote them —
//! only the top-level keys are looked at — so nested JSON is never re-serialized.
//!
//! Every document has `@timestamp` (the runtime's time), `stream`, and the fields of its file's
//! pod identity. These names belong to the agent: an application field with one of them is kept
//! as `app_<name>` rather than dropped or allowed to overwrite the agent's (`app_app_<name>` if
//! the application has an `app_<name>` too, and so on). A key the message gives more than once
//! is written once, with its last value, as `JSON.parse` does: a document never has two equal
//! keys, which Elasticsearch would refuse. Finding repeats costs time linear in the number of
//! keys, so a line with thousands of them cannot stall the tailer. Anything the agent
//! did to a line is said in a `logferry` object (`truncated`, `invalid_utf8`, `malformed`,
//! `unterminated`, `time_inferred`), present only when something happened.

use crate::config;
use crate::vocab::Record;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// The keys the agent writes itself.
const RESERVED: [&str; 5] = ["@timestamp", "stream", "kubernetes", "docker", "logferry"];

/// What happened while a document was built, for the caller to count.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub json: bool,
    pub json_failed: bool,
    pub invalid_utf8: bool,
}

/// Builds documents; one per tailer, configured once.
#[derive(Debug, Clone)]
pub struct DocumentWriter {
    json: bool,
    /// The nesting key, already JSON-encoded with its quotes; empty to merge at the top.
    target: Vec<u8>,
    keep_original: bool,
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
            keep_original: cfg.keep_original,
        }
    }

    /// Appends the document for `rec` to `out` (no trailing newline). `extra` is a JSON
    /// fragment beginning with a comma (the file's pod fields), or empty.
    pub fn write(&self, out: &mut Vec<u8>, rec: &Record, extra: &[u8]) -> Outcome {
        self.write_as(out, rec, extra, true)
    }

    /// [`DocumentWriter::write`], with JSON parsing off when `json` is false (a pod annotated
    /// `logferry.io/parser: "none"`).
    pub fn write_as(&self, out: &mut Vec<u8>, rec: &Record, extra: &[u8], json: bool) -> Outcome {
        let mut outcome = Outcome::default();
        let message: Cow<str> = match std::str::from_utf8(&rec.message) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => {
                outcome.invalid_utf8 = true;
                String::from_utf8_lossy(&rec.message)
            }
        };
        out.extend_from_slice(b"{\"@timestamp\":");
        write_str(out, &rec.time);
        if let Some(s) = rec.stream {
            out.extend_from_slice(b",\"stream\":\"");
            out.extend_from_slice(s.as_str().as_bytes());
            out.push(b'"');
        }
        let fields = if self.json && json && looks_like_object(&message) {
            let parsed = parse_object(&message);
            // Too deep for the index (or for the parser): kept as a string, which is not a
            // failure to parse.
            outcome.json_failed = parsed.is_none() && depth_within(message.as_bytes(), MAX_DEPTH);
            let parsed = parsed.filter(|f| f.within_depth());
            outcome.json = parsed.is_some();
            parsed
        } else {
            None
        };
        match &fields {
            Some(fields) => {
                if self.keep_original {
                    out.extend_from_slice(b",\"log\":");
                    write_str(out, &message);
                }
                self.write_fields(out, fields);
            }
            None => {
                out.extend_from_slice(b",\"log\":");
                write_str(out, &message);
            }
        }
        out.extend_from_slice(extra);
        let f = rec.flags;
        if f.truncated || f.malformed || f.unterminated || f.time_inferred || outcome.invalid_utf8 {
            out.extend_from_slice(b",\"logferry\":{");
            let mut first = true;
            for (set, name) in [
                (f.truncated, "truncated"),
                (outcome.invalid_utf8, "invalid_utf8"),
                (f.malformed, "malformed"),
                (f.unterminated, "unterminated"),
                (f.time_inferred, "time_inferred"),
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
        out.push(b'}');
        outcome
    }

    fn write_fields(&self, out: &mut Vec<u8>, fields: &Fields) {
        let nested = !self.target.is_empty();
        if nested {
            out.push(b',');
            out.extend_from_slice(&self.target);
            out.extend_from_slice(b":{");
        }
        let mut first = nested;
        let keys = KeyIndex::new(&fields.0);
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
            let renamed = !nested
                && (RESERVED.contains(&key.as_ref()) || (self.keep_original && key == "log"));
            if renamed {
                write_str(out, &keys.free_name(key));
            } else {
                write_str(out, key);
            }
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        if nested {
            out.push(b'}');
        }
    }
}

/// Deeper JSON is kept as a string: Elasticsearch refuses objects nested more than 20 deep
/// (`index.mapping.depth.limit`), and a record it refuses is a record nobody can search.
pub const MAX_DEPTH: usize = 20;

fn looks_like_object(s: &str) -> bool {
    let t = s.trim_ascii();
    t.starts_with('{') && t.ends_with('}')
}

/// Whether brackets outside strings nest at most `max` deep.
fn depth_within(s: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in s {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Writes `s` as a JSON string.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The top-level members of a JSON object; values stay as the application wrote them.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl Fields<'_> {
    /// Whether the object nests at most [`MAX_DEPTH`] deep. Only values that are objects or
    /// arrays are scanned: most log fields are strings and numbers, and this runs per line.
    fn within_depth(&self) -> bool {
        self.0.iter().all(|(_, v)| {
            let v = v.get().as_bytes();
            !matches!(v.first(), Some(b'{' | b'[')) || depth_within(v, MAX_DEPTH - 1)
        })
    }
}

/// Up to this many members, a key is looked for by scanning the others: a usual log line has
/// about a dozen, and comparing a dozen short strings is cheaper than building a hash map per
/// line. Above it, a map keeps the work linear in the number of keys.
const SCAN_MAX_KEYS: usize = 32;

/// The keys of one object, to find which member of a repeated key is written and which name a
/// renamed key can take.
enum KeyIndex<'f, 'a> {
    Scan(&'f [(Cow<'a, str>, &'a RawValue)]),
    /// Each key and the position of its last member.
    Hashed(HashMap<&'f str, usize>),
}

impl<'f, 'a> KeyIndex<'f, 'a> {
    fn new(fields: &'f [(Cow<'a, str>, &'a RawValue)]) -> Self {
        if fields.len() <= SCAN_MAX_KEYS {
            return KeyIndex::Scan(fields);
        }
        let mut last = HashMap::with_capacity(fields.len());
        for (i, (k, _)) in fields.iter().enumerate() {
            probed();
            last.insert(k.as_ref(), i);
        }
        KeyIndex::Hashed(last)
    }

    /// Whether member `i` (named `key`) is the last with its key, the one that is written.
    fn is_last(&self, i: usize, key: &str) -> bool {
        match self {
            KeyIndex::Scan(fields) => !fields[i + 1..].iter().any(|(k, _)| {
                probed();
                k == key
            }),
            KeyIndex::Hashed(last) => {
                probed();
                last.get(key) == Some(&i)
            }
        }
    }

    /// Whether the object has a member named `name`.
    fn contains(&self, name: &str) -> bool {
        match self {
            KeyIndex::Scan(fields) => fields.iter().any(|(k, _)| {
                probed();
                k == name
            }),
            KeyIndex::Hashed(last) => {
                probed();
                last.contains_key(name)
            }
        }
    }

    /// The name an application key that belongs to the agent is written under: `app_<key>`,
    /// or, when the application has that key too, `app_app_<key>`, and so on until the object
    /// has no such key. No two keys of a document can then be equal: reserved names never
    /// start with `app_`, each reserved key is written once (repeats keep the last), and two
    /// different reserved keys cannot end in the same name. The search is bounded by the
    /// message size: every `app_` more needs a longer key in the line.
    fn free_name(&self, key: &str) -> String {
        let mut name = format!("app_{key}");
        while self.contains(&name) {
            name.insert_str(0, "app_");
        }
        name
    }
}

// Counts key comparisons and hash probes in tests, so that the cost of a wide object can be
// asserted without a clock.
#[cfg(test)]
thread_local! {
    static KEY_PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn probed() {
    #[cfg(test)]
    KEY_PROBES.with(|c| c.set(c.get() + 1));
}

fn parse_object(s: &str) -> Option<Fields<'_>> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Fields<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
            let mut v = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                v.push(entry);
            }
            Ok(Fields(v))
        }
    }
    let mut de = serde_json::Deserializer::from_str(s);
    let fields = (&mut de).deserialize_map(V).ok()?;
    de.end().ok()?;
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{Flags, Stream};
    use serde_json::{Value, json};

    fn doc(cfg: config::Parse, message: &[u8], flags: Flags) -> (Value, Outcome) {
        let rec = Record {
            time: "2026-11-26T17:00:00.5Z".into(),
            stream: Some(Stream::Stdout),
            message: Cow::Borrowed(message),
            offset: 0,
            flags,
        };
        let mut out = Vec::new();
        let o = DocumentWriter::new(&cfg).write(
            &mut out,
            &rec,
            b",\"kubernetes\":{\"pod_name\":\"p\"}",
        );
        let v = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        (v, o)
    }

    fn defaults() -> config::Parse {
        config::Parse::default()
    }

    #[test]
    fn json_fields_merge_at_the_top_and_keep_their_values_verbatim() {
        let (v, o) = doc(
            defaults(),
            br#"{"level":"info","msg":"done","duration":1.50,"ctx":{"a":[1,{"b":null}]}}"#,
            Flags::default(),
        );
        assert!(o.json);
        assert_eq!(
            v,
            json!({"@timestamp":"2026-11-26T17:00:00.5Z","stream":"stdout","level":"info",
                   "msg":"done","duration":1.5,"ctx":{"a":[1,{"b":null}]},
                   "kubernetes":{"pod_name":"p"}})
        );
    }

    #[test]
    fn table_of_messages() {
        // (message, expected "log" field or None when parsed, json_failed)
        let cases: [(&[u8], Option<&str>, bool); 7] = [
            (b"plain text", Some("plain text"), false),
            (b"{broken json", Some("{broken json"), false),
            (b"{\"a\":1} trailing}", Some("{\"a\":1} trailing}"), true),
            (b"[1,2]", Some("[1,2]"), false),
            (b"", Some(""), false),
            (b"nul\0byte \"quoted\"", Some("nul\0byte \"quoted\""), false),
            (b" {\"a\":1} ", None, false),
        ];
        for (message, want_log, failed) in cases {
            let (v, o) = doc(defaults(), message, Flags::default());
            assert_eq!(
                v.get("log").and_then(Value::as_str),
                want_log,
                "{message:?}"
            );
            assert_eq!(o.json_failed, failed, "{message:?}");
        }
    }

    #[test]
    fn agent_fields_win_and_application_values_are_renamed_not_lost() {
        let (v, _) = doc(
            defaults(),
            br#"{"@timestamp":"app-time","stream":"x","kubernetes":1,"a":1,"a":2}"#,
            Flags::default(),
        );
        assert_eq!(v["@timestamp"], "2026-11-26T17:00:00.5Z");
        assert_eq!(v["app_@timestamp"], "app-time");
        assert_eq!(v["stream"], "stdout");
        assert_eq!(v["app_stream"], "x");
        assert_eq!(v["kubernetes"]["pod_name"], "p");
        assert_eq!(v["app_kubernetes"], 1);
        assert_eq!(v["a"], 2);
    }

    /// The top-level keys of a written document in order, repeats included (a `Value` would
    /// hide them).
    fn written_keys(cfg: &config::Parse, message: &[u8]) -> Vec<String> {
        let rec = Record {
            time: "2026-11-26T17:00:00.5Z".into(),
            stream: Some(Stream::Stdout),
            message: Cow::Borrowed(message),
            offset: 0,
            flags: Flags::default(),
        };
        let mut out = Vec::new();
        DocumentWriter::new(cfg).write(&mut out, &rec, b",\"kubernetes\":{}");
        let out = String::from_utf8(out).unwrap();
        let fields = parse_object(&out).unwrap_or_else(|| panic!("not an object: {out}"));
        fields.0.into_iter().map(|(k, _)| k.into_owned()).collect()
    }

    fn assert_unique(keys: &[String]) {
        let mut sorted = keys.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len(), "repeated keys in {keys:?}");
    }

    /// Issue 12: the repeat check compared every key with all the keys after it, so 20 lines of
    /// 20,000 keys cost 13.6 CPU-s and the tailer read no other file meanwhile. The work is
    /// counted, not timed: key comparisons and hash probes.
    #[test]
    fn a_line_with_twenty_thousand_keys_is_parsed_in_linear_time() {
        let wide = |n: usize| {
            let mut m = String::from("{\"stream\":\"mine\"");
            for k in 0..n {
                m.push_str(&format!(",\"k{k:05}\":{}", k % 10));
            }
            m.push('}');
            m
        };
        let probes = |message: &str| {
            KEY_PROBES.with(|c| c.set(0));
            let keys = written_keys(&defaults(), message.as_bytes());
            (KEY_PROBES.with(|c| c.get()), keys)
        };
        let (p20, keys) = probes(&wide(20_000));
        // @timestamp, stream, the 20,001 application keys (stream renamed), kubernetes.
        assert_eq!(keys.len(), 20_004);
        assert!(keys.contains(&"app_stream".to_owned()));
        assert_unique(&keys);
        assert!(p20 <= 4 * 20_000, "{p20} probes for 20,000 keys");
        let (p40, _) = probes(&wide(40_000));
        assert!(
            p40 <= p20 * 5 / 2,
            "{p40} probes for 40,000 keys, {p20} for 20,000"
        );
    }

    /// A usual line stays on the scan: a handful of comparisons, no map built.
    #[test]
    fn a_usual_line_is_checked_without_a_hash_map() {
        let line = br#"{"level":"info","msg":"done","status":200,"path":"/x","ms":1.5}"#;
        let fields = parse_object(std::str::from_utf8(line).unwrap()).unwrap();
        assert!(matches!(KeyIndex::new(&fields.0), KeyIndex::Scan(_)));
    }

    /// Renaming `stream` to `app_stream` must not produce a second `app_stream` when the
    /// application wrote one itself; checked on the scan (few keys) and the map (many).
    #[test]
    fn a_renamed_key_never_collides_with_an_application_key() {
        let padding: String = (0..40).map(|i| format!(",\"pad{i}\":0")).collect();
        let keep = config::Parse {
            keep_original: true,
            ..defaults()
        };
        /// The config, the message, and key → value expected in the document.
        type Case<'a> = (&'a config::Parse, &'a str, &'a [(&'a str, Value)]);
        let cases: [Case; 4] = [
            (
                &defaults(),
                r#"{"stream":1,"app_stream":2"#,
                &[
                    ("stream", json!("stdout")),
                    ("app_stream", json!(2)),
                    ("app_app_stream", json!(1)),
                ],
            ),
            (
                &defaults(),
                r#"{"app_app_stream":3,"stream":1,"app_stream":2"#,
                &[
                    ("app_app_stream", json!(3)),
                    ("app_stream", json!(2)),
                    ("app_app_app_stream", json!(1)),
                ],
            ),
            (
                &defaults(),
                r#"{"@timestamp":"t","app_@timestamp":"u","kubernetes":"k","app_kubernetes":"l"}"#,
                &[
                    ("app_@timestamp", json!("u")),
                    ("app_app_@timestamp", json!("t")),
                    ("app_kubernetes", json!("l")),
                    ("app_app_kubernetes", json!("k")),
                ],
            ),
            (
                &keep,
                r#"{"log":"a","app_log":"b""#,
                &[("app_log", json!("b")), ("app_app_log", json!("a"))],
            ),
        ];
        for (cfg, head, want) in cases {
            let head = head.strip_suffix('}').unwrap_or(head);
            for message in [format!("{head}}}"), format!("{head}{padding}}}")] {
                let keys = written_keys(cfg, message.as_bytes());
                assert_unique(&keys);
                let (v, _) = doc(cfg.clone(), message.as_bytes(), Flags::default());
                for (k, value) in want {
                    assert_eq!(&v[k], value, "{k} in {message}");
                }
            }
        }
    }

    /// A message that repeats a key (valid JSON, refused by Elasticsearch) is written with the
    /// key once, holding its last value, wherever the repeats are.
    #[test]
    fn a_repeated_key_is_written_once_with_its_last_value() {
        let padding: String = (0..40).map(|i| format!(",\"pad{i}\":0")).collect();
        for pad in ["", padding.as_str()] {
            let message =
                format!(r#"{{"a":1,"b":2,"a":3{pad},"stream":"x","\u0061":4,"stream":"y"}}"#);
            let keys = written_keys(&defaults(), message.as_bytes());
            assert_unique(&keys);
            let (v, _) = doc(defaults(), message.as_bytes(), Flags::default());
            assert_eq!((&v["a"], &v["b"]), (&json!(4), &json!(2)), "{message}");
            assert_eq!(v["app_stream"], "y");
            // Nested under a target, the same.
            let nested = config::Parse {
                target: "app".into(),
                ..defaults()
            };
            let (v, _) = doc(nested, message.as_bytes(), Flags::default());
            assert_eq!(
                (&v["app"]["a"], &v["app"]["stream"]),
                (&json!(4), &json!("y"))
            );
        }
    }

    #[test]
    fn nested_target_and_keep_original() {
        let cfg = config::Parse {
            json: true,
            target: "app".into(),
            keep_original: true,
        };
        let (v, _) = doc(cfg, br#"{"stream":"mine","n":1}"#, Flags::default());
        assert_eq!(v["app"], json!({"stream":"mine","n":1}));
        assert_eq!(v["log"], r#"{"stream":"mine","n":1}"#);
        assert_eq!(v["stream"], "stdout");
    }

    #[test]
    fn json_off_keeps_the_string() {
        let cfg = config::Parse {
            json: false,
            ..defaults()
        };
        let (v, o) = doc(cfg, br#"{"a":1}"#, Flags::default());
        assert_eq!(v["log"], r#"{"a":1}"#);
        assert!(!o.json);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_flagged() {
        let (v, o) = doc(defaults(), b"bad \xff\xfe bytes", Flags::default());
        assert!(o.invalid_utf8);
        assert_eq!(v["log"], "bad \u{FFFD}\u{FFFD} bytes");
        assert_eq!(v["logferry"], json!({"invalid_utf8": true}));
    }

    #[test]
    fn flags_are_written() {
        let flags = Flags {
            truncated: true,
            malformed: false,
            unterminated: true,
            joined: true,
            time_inferred: false,
        };
        let (v, _) = doc(defaults(), b"x", flags);
        assert_eq!(
            v["logferry"],
            json!({"truncated": true, "unterminated": true})
        );
    }

    /// Found by the `json_merge` fuzz target: a number beyond f64's range is valid JSON and is
    /// copied as written (Elasticsearch then refuses the document and it is dead-lettered, not
    /// lost); the document around it must stay well-formed.
    #[test]
    fn a_number_too_large_for_a_double_is_copied_verbatim_into_a_well_formed_document() {
        let message = b"{\"dee\xf0\":[55555E5555555555555555555555555    ]}";
        let cfg = config::Parse {
            target: "app".into(),
            ..defaults()
        };
        let rec = Record {
            time: "2026-11-26T17:00:00.5Z".into(),
            stream: Some(Stream::Stdout),
            message: Cow::Borrowed(message),
            offset: 0,
            flags: Flags::default(),
        };
        let mut out = Vec::new();
        let o = DocumentWriter::new(&cfg).write(&mut out, &rec, b"");
        assert!(o.json && o.invalid_utf8);
        let raw: &serde_json::value::RawValue = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        assert!(raw.get().contains("55555E5555555555555555555555555"));
        assert!(raw.get().starts_with("{\"@timestamp\":"));
    }

    #[test]
    fn deep_nesting_is_kept_as_a_string_not_a_crash() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let (v, o) = doc(defaults(), deep.as_bytes(), Flags::default());
        assert!(!o.json);
        assert_eq!(v["log"].as_str().map(str::len), Some(deep.len()));
        // Within the limit, and brackets inside strings do not count.
        let ok = format!(
            "{{\"s\":\"{}\",\"a\":{}1{}}}",
            "[[[\\\"",
            "[".repeat(18),
            "]".repeat(18)
        );
        let (v, o) = doc(defaults(), ok.as_bytes(), Flags::default());
        assert!(o.json, "{v}");
        // The object itself is the first level: 19 more fit, 20 do not (and that is not a
        // parse failure).
        let nest = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        let (_, o) = doc(defaults(), nest(19).as_bytes(), Flags::default());
        assert!(o.json);
        let (_, o) = doc(defaults(), nest(20).as_bytes(), Flags::default());
        assert!(!o.json && !o.json_failed);
    }
}
