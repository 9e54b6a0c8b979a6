//! The stage over a finished document: what is looked at (every string, key and number of the
//! message; never the agent's own fields; `log` always), `fields` as paths in any case and
//! `skip_fields`, escapes and lone surrogates, and bare-digit numbers by their key — the
//! shapes issue 25 found indexed.

use super::*;

/// `doc` through the stage, or `doc` itself when nothing matched.
fn document(r: &Redactor, doc: &str) -> String {
    let out = whole(r, doc).unwrap_or_else(|| doc.to_owned());
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap_or_else(|e| panic!("not valid JSON ({e}): {out}"));
    out
}

#[test]
fn every_string_and_key_of_the_message_is_redacted_at_any_depth_and_the_agents_fields_are_not() {
    let r = all_rules();
    assert_eq!(
        document(&r, r#"{"user": "jane@example.com", "n": 1}"#),
        r#"{"user": "[REDACTED:email]", "n": 1}"#
    );
    // A key is a value too (a map keyed by address).
    assert_eq!(
        document(&r, r#"{"seen":{"jane@example.com": 3}}"#),
        r#"{"seen":{"[REDACTED:email]": 3}}"#
    );
    assert_eq!(
        document(&r, r#"{"a":[{"b":"call 415-555-2671"},"10.0.0.1"]}"#),
        r#"{"a":[{"b":"call [REDACTED:phone]"},"[REDACTED:ipv4]"]}"#
    );
    // The agent's own fields are not the message: never looked at.
    let agent = r#"{"@timestamp":"2026-12-01T10:00:00.000000001Z","stream":"stdout","kubernetes":{"labels":{"owner":"10.0.0.1"}},"docker":{"container_id":"4111111111111111"},"logferry":{"truncated":true}}"#;
    assert_eq!(whole(&r, agent), None);
}

/// The shapes issue 25 found indexed with the address under the default `[redact]`.
#[test]
fn serilog_names_postgres_errors_nested_users_and_lone_surrogates_are_all_redacted() {
    let r = all_rules();
    for (doc, want) in [
        (
            r#"{"Message":"appointment for ann.lee@example.com"}"#,
            r#"{"Message":"appointment for [REDACTED:email]"}"#,
        ),
        (
            r#"{"error":"duplicate key (email)=(bob.kay@example.com)"}"#,
            r#"{"error":"duplicate key (email)=([REDACTED:email])"}"#,
        ),
        (
            r#"{"user":{"email":"ann@example.com","ssn":"219-09-9999"}}"#,
            r#"{"user":{"email":"[REDACTED:email]","ssn":"[REDACTED:us_ssn]"}}"#,
        ),
    ] {
        assert_eq!(document(&r, doc), want);
    }
    // Node's JSON.stringify of a string cut inside an emoji: a lone high surrogate. The text
    // on both sides of it is still scanned.
    let out = document(&r, r#"{"msg":"\ud83d note: eve.park@example.com"}"#);
    assert!(!out.contains("eve.park"), "{out}");
    assert!(out.contains("[REDACTED:email]"), "{out}");
    let out = document(
        &r,
        r#"{"msg":"eve@example.com \udc00 and \ud83d\ude00 bob@example.org"}"#,
    );
    assert!(!out.contains("eve@") && !out.contains("bob@"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid");
    assert!(
        v["msg"].as_str().is_some_and(|m| m.contains('\u{1F600}')),
        "{out}"
    );
}

#[test]
fn the_raw_copy_and_unparsed_text_are_looked_at_even_when_fields_are_narrowed() {
    let cfg = Redact {
        rules: vec!["email".into()],
        fields: vec!["msg".into()],
        ..Redact::default()
    };
    let r = Redactor::new(&cfg, &Metrics::new(), None)
        .ok()
        .flatten()
        .expect("built");
    // keep_original's raw copy carries every field of the line.
    let doc = r#"{"@timestamp":"t","log":"{\"msg\":\"hi\",\"to\":\"ann@example.com\"}","msg":"hi","to":"ann@example.com"}"#;
    let out = document(&r, doc);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid");
    assert!(
        !v["log"].as_str().unwrap_or_default().contains("ann@"),
        "{out}"
    );
    // Outside `fields`, as asked.
    assert_eq!(v["to"], "ann@example.com");
}

#[test]
fn fields_are_paths_matched_in_any_case_and_skip_fields_exempts_exact_paths() {
    let cfg = Redact {
        rules: vec!["email".into()],
        fields: vec!["User.Email".into(), "headers.*".into()],
        skip_fields: vec!["headers.x-trace".into()],
        ..Redact::default()
    };
    let r = Redactor::new(&cfg, &Metrics::new(), None)
        .ok()
        .flatten()
        .expect("built");
    let doc = r#"{"user":{"email":"a@example.com","alias":"b@example.com"},"user.email":"c@example.com","HEADERS":{"from":"d@example.com","x-trace":"e@example.com"}}"#;
    assert_eq!(
        document(&r, doc),
        r#"{"user":{"email":"[REDACTED:email]","alias":"b@example.com"},"user.email":"[REDACTED:email]","HEADERS":{"from":"[REDACTED:email]","x-trace":"e@example.com"}}"#
    );
    // Nested under parse.target, paths start below it.
    let r = r.with_target("app");
    assert_eq!(
        document(&r, r#"{"app":{"user":{"email":"a@example.com"}}}"#),
        r#"{"app":{"user":{"email":"[REDACTED:email]"}}}"#
    );
}

#[test]
fn numbers_are_caught_by_the_rules_that_say_so_and_ids_and_timestamps_are_not() {
    let r = all_rules();
    assert_eq!(
        document(&r, r#"{"cc":4111111111111111,"ts":1714979289123}"#),
        r#"{"cc":"[REDACTED:card]","ts":1714979289123}"#
    );
    assert_eq!(whole(&r, r#"{"ts":1733123456787,"x":-1.5e3}"#), None);
    // An SSN or a phone number without separators: its key says what it is.
    assert_eq!(
        document(
            &r,
            r#"{"patientSSN":219099999,"ssn":"219099999","mobile_phone":4155552671,"home_tel":"14155552671"}"#
        ),
        r#"{"patientSSN":"[REDACTED:us_ssn]","ssn":"[REDACTED:us_ssn]","mobile_phone":"[REDACTED:phone]","home_tel":"[REDACTED:phone]"}"#
    );
    // The same digits under other keys are ids, counts and epoch seconds.
    for doc in [
        r#"{"order_id":219099999,"duration_ns":"219099999","epoch":1733123456,"hotel":4155552671}"#,
        r#"{"ssn":666099999,"phone":1155552671}"#,
    ] {
        assert_eq!(whole(&r, doc), None, "{doc}");
    }
}

#[test]
fn escaped_json_strings_are_decoded_before_matching_and_stay_valid_json() {
    let r = all_rules();
    let raw = r#"{"msg":"line1\nmail jane@example.com \"quoted\" tab\t"}"#;
    let got = document(&r, raw);
    let v: serde_json::Value = serde_json::from_str(&got).expect("valid JSON");
    assert_eq!(v["msg"], "line1\nmail [REDACTED:email] \"quoted\" tab\t");
    // An escaped `@` hides nothing.
    assert_eq!(
        document(&r, r#"{"msg":"jane\u0040example.com"}"#),
        r#"{"msg":"[REDACTED:email]"}"#
    );
    // Escapes and nothing to find: no work beyond the scan.
    assert_eq!(whole(&r, r#"{"msg":"a\nb \"c\""}"#), None);
}

#[test]
fn a_cut_off_document_does_not_panic() {
    let r = all_rules();
    for raw in [
        r#"{"a":"\"#,
        r#"""#,
        "",
        "-",
        "[1,",
        "}}]]",
        r#"{"a":"\u12"#,
        r#"{"a":"\ud83d"#,
    ] {
        let _ = whole(&r, raw);
    }
    // Never written by the agent, but if it were, the address still would not pass.
    assert_eq!(
        whole(&r, r#"{"a":"jane@example.com"#).as_deref(),
        Some(r#"{"a":"[REDACTED:email]""#)
    );
}

#[test]
fn only_the_message_the_writer_wrote_is_read() {
    let r = all_rules();
    let doc = r#"{"@timestamp":"2026-12-06T10:00:00.123456789Z","msg":"to a@example.com","zz":"b@example.com","logferry":{"truncated":true}}"#;
    let from = doc.find("\"msg\"").expect("member") - 1;
    let to = doc.find(",\"zz\"").expect("member");
    assert_eq!(
        r.redact_document(doc, from..to).as_deref(),
        Some(
            r#"{"@timestamp":"2026-12-06T10:00:00.123456789Z","msg":"to [REDACTED:email]","zz":"b@example.com","logferry":{"truncated":true}}"#
        )
    );
    // Nothing a rule could match in the message: not walked at all, whatever is around it.
    let quiet = r#"{"@timestamp":"2026-12-06T10:00:00.123456789Z","msg":"hello","docker":{"container_id":"4111111111111111"}}"#;
    let from = quiet.find(",\"msg\"").expect("member");
    let to = quiet.find(",\"docker\"").expect("member");
    assert_eq!(r.redact_document(quiet, from..to), None);
    // An escape could hide a sign: walked.
    let escaped = r#"{"msg":"jane\u0040example.com"}"#;
    assert!(r.redact_document(escaped, 1..escaped.len() - 1).is_some());
}

/// A value right after an escape whose letter is a word byte (`\n`, `\t`, `\r`, `\b`, `\f`):
/// in the JSON text the digits follow a letter, in the string they follow a control
/// character, where the card rule's `\b` holds. The prefilter reads the JSON text.
#[test]
fn a_value_right_after_an_escaped_newline_or_tab_is_redacted() {
    let r = all_rules();
    for escape in ["\\n", "\\t", "\\r", "\\b", "\\f"] {
        for value in [
            "4111 1111 1111 1111",
            "4111111111111111",
            "078-05-1120",
            "+14155552671",
        ] {
            let doc = format!(r#"{{"note":"paid{escape}{value} ok"}}"#);
            let out = document(&r, &doc);
            assert!(!out.contains(value), "{doc} -> {out}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

    /// A string with escapes (a stack trace's `\n`s, quoted names, Windows paths) has its
    /// matches replaced in the text as written: it reads back as the decoded text redacted,
    /// whatever escapes sit beside, before, after or inside a value, and every escape the
    /// redaction did not take stays as it was written.
    #[test]
    fn matches_in_an_escaped_string_are_replaced_where_they_are_written(
        parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "\\n", "\\t", "\\\"", "\\\\", "\\/", "\\r", " at ", "x", "é",
                "10.0.3.7", ":5432", "ann@example.com", "4111 1111 1111 1111", "078-05-1120",
                "an\\n@example.com", "10.0\\n.3.7",
            ]),
            0..24,
        )
    ) {
        let r = all_rules();
        let written = parts.concat();
        let doc = format!(r#"{{"stack":"{written}"}}"#);
        let decoded: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let decoded = decoded["stack"].as_str().unwrap();
        let out = document(&r, &doc);
        let read: serde_json::Value = serde_json::from_str(&out).unwrap();
        let want = r.redact_str(decoded).unwrap_or_else(|| decoded.to_owned());
        proptest::prop_assert_eq!(read["stack"].as_str(), Some(want.as_str()), "{}", out);
        // Between the replacements, the text is as it was written, escapes and all.
        let content = &out[r#"{"stack":""#.len()..out.len() - 2];
        let replaced = regex::Regex::new(r"\[REDACTED:[a-z_0-9]+\]").unwrap();
        for piece in replaced.split(content) {
            proptest::prop_assert!(written.contains(piece), "{:?} is not in {:?}", piece, written);
        }
    }
}
