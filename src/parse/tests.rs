//! The document writer's tests: merging, nesting, renaming agent keys, repeated keys,
//! flags, and the limits (depth, width) that keep a line from stalling the tailer or being
//! refused by the index.

use super::fields::parse_object;
use super::keys::{KEY_PROBES, KeyIndex};
use super::*;
use crate::config;
use crate::vocab::{Flags, Record, Stream};
use serde_json::{Value, json};
use std::borrow::Cow;

/// The document `message` makes under `cfg`, as written, with the pod fields `extra`.
fn written(cfg: &config::Parse, message: &[u8], flags: Flags, extra: &[u8]) -> (Vec<u8>, Outcome) {
    let rec = Record {
        time: "2026-11-26T17:00:00.5Z".into(),
        stream: Some(Stream::Stdout),
        message: Cow::Borrowed(message),
        offset: 0,
        flags,
    };
    let mut out = Vec::new();
    let o = DocumentWriter::new(cfg).write(&mut out, &rec, extra);
    (out, o)
}

fn doc(cfg: config::Parse, message: &[u8], flags: Flags) -> (Value, Outcome) {
    let (out, o) = written(
        &cfg,
        message,
        flags,
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
    assert!(matches!(KeyIndex::new(&fields.0), KeyIndex::Scan(..)));
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
        let message = format!(r#"{{"a":1,"b":2,"a":3{pad},"stream":"x","\u0061":4,"stream":"y"}}"#);
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
fn a_joined_trace_says_how_many_lines_it_holds_and_whether_it_is_a_later_part() {
    let flags = Flags {
        multiline_lines: 12,
        multiline_split: true,
        ..Flags::default()
    };
    let (v, _) = doc(defaults(), b"Error: x\n    at f", flags);
    assert_eq!(
        v["logferry"],
        json!({"multiline_lines": 12, "multiline_split": true})
    );
    let (v, _) = doc(
        defaults(),
        b"x",
        Flags {
            multiline_lines: 1,
            ..Flags::default()
        },
    );
    assert!(v.get("logferry").is_none(), "one line is no join: {v}");
}

#[test]
fn flags_are_written() {
    let flags = Flags {
        truncated: true,
        malformed: false,
        unterminated: true,
        joined: true,
        time_inferred: false,
        ..Flags::default()
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
    let (out, o) = written(&cfg, message, Flags::default(), b"");
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

#[test]
fn dotted_keys_into_the_agents_fields_or_log_are_kept_apart() {
    let w = DocumentWriter::new(&crate::config::Parse::default());
    let rec = Record {
        time: "2026-12-02T06:00:00Z".into(),
        stream: Some(Stream::Stdout),
        message: std::borrow::Cow::Borrowed(
            br#"{"kubernetes.namespace_name":"spoofed","log.level":"warn","log":{"origin":"x"},"msg":"m"}"#,
        ),
        offset: 0,
        flags: Default::default(),
    };
    let mut out = Vec::new();
    w.write(
        &mut out,
        &rec,
        br#","kubernetes":{"namespace_name":"shop"}"#,
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    // Elasticsearch reads dots as objects: these would be the agent's fields, or clash with the
    // text `log` of the plain lines in the same index.
    assert_eq!(v["app_kubernetes.namespace_name"], "spoofed", "{v}");
    assert_eq!(v["kubernetes"]["namespace_name"], "shop");
    assert_eq!(v["app_log.level"], "warn", "{v}");
    assert_eq!(v["app_log"]["origin"], "x", "{v}");
    assert!(
        v.get("log").is_none() && v.get("log.level").is_none(),
        "{v}"
    );
    // A string `log` is the message's own, as before.
    let plain = Record {
        message: std::borrow::Cow::Borrowed(br#"{"log":"text","n":1}"#),
        ..rec
    };
    let mut out = Vec::new();
    w.write(&mut out, &plain, b"");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["log"], "text", "{v}");
}

/// Keys are copied as the message wrote them when they hold no escape, and unescaped and
/// written again when they do: either way the document has the key the application meant.
#[test]
fn keys_with_and_without_escapes_reach_the_document_as_the_application_meant_them() {
    let message = r#"{"plain":1,"caf\u00e9":2,"say \"hi\"":3,"tab\there":4,"back\\slash":5,"ünï":6,"a\/b":7}"#;
    let (v, o) = doc(defaults(), message.as_bytes(), Flags::default());
    assert!(o.json);
    for (key, want) in [
        ("plain", 1),
        ("café", 2),
        ("say \"hi\"", 3),
        ("tab\there", 4),
        ("back\\slash", 5),
        ("ünï", 6),
        ("a/b", 7),
    ] {
        assert_eq!(v[key], json!(want), "{key} in {v}");
    }
}

#[test]
fn a_pretty_printed_message_becomes_a_document_on_one_line() {
    // A JSON dump joined by a multiline rule, or a forwarded record's text: newlines (and CRs)
    // between the tokens of nested values. The bulk body holds one document per line, so one
    // raw newline would cut the document in two.
    let message =
        b"{\n  \"a\": {\n    \"b\": [1,\r\n 2],\n\t\"s\": \"x\\ny\"\n  },\n  \"c\": [\n]\n}";
    for cfg in [
        defaults(),
        config::Parse {
            target: "app".into(),
            ..defaults()
        },
    ] {
        let (out, o) = written(&cfg, message, Flags::default(), b"");
        assert!(o.json, "{cfg:?}");
        let text = String::from_utf8_lossy(&out);
        assert!(!out.contains(&b'\n') && !out.contains(&b'\r'), "{text}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        let fields = if cfg.target.is_empty() { &v } else { &v["app"] };
        assert_eq!(fields["a"], json!({"b": [1, 2], "s": "x\ny"}), "{text}");
        assert_eq!(fields["c"], json!([]), "{text}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// A compact message (whose members may be copied at once) makes the document the same
    /// message with whitespace between its tokens makes (written member by member): with
    /// repeated keys, the agent's names, escaped keys, nested values with line breaks, merged
    /// at the top or nested under a target.
    #[test]
    fn a_compact_message_is_written_as_the_same_message_spaced_out(
        members in proptest::collection::vec((
            proptest::sample::select(vec![
                "level", "msg", "kubernetes", "@timestamp", "log", "stream", "app_stream",
                "a\\u0062", "q\\\"k", "log.level", "kubernetes.pod_name",
            ]),
            proptest::sample::select(vec![
                "1", "-2.5e3", "true", "null", "\"info\"", "\"a \\\"b\\\"\\nc\"", "[1,{\"x\":2}]",
                "{\"x\":\n1}", "{\"y\": [true, \"z\"]}", "[]", "{}",
            ]),
        ), 0..8),
        target in proptest::sample::select(vec!["", "app"]),
    ) {
        let compact: Vec<String> = members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let spaced: Vec<String> = members.iter().map(|(k, v)| format!(" \"{k}\" : {v} ")).collect();
        let cfg = config::Parse { target: target.into(), ..defaults() };
        let extra = b",\"kubernetes\":{\"pod_name\":\"p\"}";
        let (fast, fo) = written(&cfg, format!("{{{}}}", compact.join(",")).as_bytes(), Flags::default(), extra);
        let (slow, so) = written(&cfg, format!("{{{}}}", spaced.join(",")).as_bytes(), Flags::default(), extra);
        proptest::prop_assert_eq!(
            String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow)
        );
        proptest::prop_assert_eq!(fo.json, so.json);
        serde_json::from_slice::<Value>(&fast).map_err(|e| {
            proptest::test_runner::TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&fast)))
        })?;
    }
}
