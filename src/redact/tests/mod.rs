//! Table tests for every built-in rule (values it must replace, look-alikes it must leave),
//! what survives the default rules, JSON values, mask and hash, the key and the metric.

use super::*;
use crate::config::{Config, CustomRedaction, Redact};

mod document;
mod prefilter;

/// The stage over `doc` read whole, as if all of it were the message.
fn whole(r: &Redactor, doc: &str) -> Option<String> {
    r.redact_document(doc, 0..doc.len())
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.sig_eHl6MTIz";

fn redactor(rules: &[&str]) -> Redactor {
    let cfg = Redact {
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        ..Redact::default()
    };
    Redactor::new(&cfg, &Metrics::new(), None)
        .ok()
        .flatten()
        .expect("rules given")
}

/// Each `(input, expected)` with only `rule` on; an expected `None` means left alone.
fn table(rule: &str, cases: &[(&str, Option<&str>)]) {
    let r = redactor(&[rule]);
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(input, want)| {
            let got = r.redact_str(input);
            (got.as_deref() != *want).then(|| format!("{input:?}: got {got:?}, want {want:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{rule}:\n{}", wrong.join("\n"));
}

/// Inputs `rule` replaces whole, written `x <value> y`.
fn replaced(rule: &str, values: &[&str]) {
    let want: Vec<(String, String)> = values
        .iter()
        .map(|v| (format!("x {v} y"), format!("x [REDACTED:{rule}] y")))
        .collect();
    let cases: Vec<(&str, Option<&str>)> = want
        .iter()
        .map(|(i, w)| (i.as_str(), Some(w.as_str())))
        .collect();
    table(rule, &cases);
}

fn untouched(rule: &str, inputs: &[&str]) {
    let cases: Vec<(&str, Option<&str>)> = inputs.iter().map(|i| (*i, None)).collect();
    table(rule, &cases);
}

#[test]
fn email_addresses_are_masked_and_package_versions_and_retina_images_are_not() {
    replaced(
        "email",
        &[
            "jane.doe@example.com",
            "JANE@EXAMPLE.ORG",
            "user+tag@sub.example.co.uk",
            "a_b-c@my-host.example.io",
            "first.last@hospital.health",
            "x@y.museum",
            "n.o.p@q-r.st",
            "o~k@mail.example.net",
        ],
    );
    table(
        "email",
        &[
            ("user=bob@example.com", Some("user=[REDACTED:email]")),
            ("<jane@example.com>", Some("<[REDACTED:email]>")),
            ("mailto:jane@example.com.", Some("mailto:[REDACTED:email].")),
        ],
    );
    untouched(
        "email",
        &[
            "lodash@4.17.21",
            "logo@2x.png",
            "image@sha256:9f86d081884c7d65",
            "@timestamp",
            "user@localhost",
            "a@b",
            "foo@bar.c",
            "name@1.2.3.4",
            "@scope/pkg@1.0.0",
        ],
    );
}

#[test]
fn card_numbers_pass_luhn_and_an_issuer_and_epoch_millis_do_not() {
    replaced(
        "card",
        &[
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "4222222222222",
            "6200000000000005",
        ],
    );
    table(
        "card",
        &[(
            "qty 12 4111 1111 1111 1111 2 items",
            Some("qty 12 [REDACTED:card] 2 items"),
        )],
    );
    untouched(
        "card",
        &[
            "4111111111111112",
            // Luhn-valid, but no issuer starts with 1, 9 or 20.
            "ts=1733123456787",
            "us=1714979289123457",
            "order 987654321015",
            "at 202401020304057",
            "10000000000008",
            "55072811-2305-4461-8230-134214124021",
            "4111-1111-1111-1111-2222",
            "41111111111111111111111",
            "3.4111111111111111",
            "4111 11 1111 1111 11",
            "req 4f1a9c2e7b3d4a5f8e6d",
        ],
    );
}

#[test]
fn ssns_outside_the_never_issued_ranges_are_masked_and_dates_are_not() {
    replaced(
        "us_ssn",
        &[
            "123-45-6789",
            "078-05-1120",
            "219-09-9999",
            "001-01-0001",
            "665-12-3456",
            "899-99-9999",
            "772-11-2305",
            "456-78-9012",
        ],
    );
    table(
        "us_ssn",
        &[
            ("(123-45-6789)", Some("([REDACTED:us_ssn])")),
            ("ssn:123-45-6789.", Some("ssn:[REDACTED:us_ssn].")),
        ],
    );
    untouched(
        "us_ssn",
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "987-65-4321",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "2024-01-02",
            "123-45-6789-0",
            "12-123-45-6789",
            "a23-45-6789",
        ],
    );
}

#[test]
fn phone_numbers_are_masked_and_epoch_seconds_are_not() {
    replaced(
        "phone",
        &[
            "+14155552671",
            "+1 415 555 2671",
            "+1-415-555-2671",
            "+44 20 7946 0958",
            "+4930123456789",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
            "1-800-555-0199",
        ],
    );
    untouched(
        "phone",
        &[
            "1733123456",
            "4155552671",
            "123-456-7890",
            "415-155-2671",
            "2024-01-02",
            "tz +0100",
            "1e+123456789",
            "id-415-555-2671",
            "415-555-2671-99",
            "+1234",
            "12:30:45.123456789",
        ],
    );
}

#[test]
fn jwts_with_a_json_header_are_masked_and_dotted_words_are_not() {
    replaced(
        "jwt",
        &[
            JWT,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwiZXhwIjoxNzE0OTc5Mjg5fQ.sig_eHl6MTIz",
            "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.sig_eHl6MTIz",
            "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwiZXhwIjoxNzE0OTc5Mjg5fQ.sig_eHl6MTIz",
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzM4NCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.sig_eHl6MTIz",
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwiZXhwIjoxNzE0OTc5Mjg5fQ.sig_eHl6MTIz",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.sig_eHl6MTIz",
            "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIiwiZXhwIjoxNzE0OTc5Mjg5fQ.sig_eHl6MTIz",
        ],
    );
    table(
        "jwt",
        &[(
            &format!("token={JWT}&next=1"),
            Some("token=[REDACTED:jwt]&next=1"),
        )],
    );
    untouched(
        "jwt",
        &[
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0",
            "eyJmb28iOjF9.eyJzdWIiOiJ1In0.abc",
            "eyJunk.eyJunk.sig",
            "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.abc",
            "abc.def.ghi",
            "1.2.3",
            "eyJ.eyJ.x",
        ],
    );
}

#[test]
fn bearer_tokens_are_masked_keeping_the_word_and_prose_about_bearers_is_not() {
    table(
        "bearer",
        &[
            (
                "Authorization: Bearer abc123def456",
                Some("Authorization: Bearer [REDACTED:bearer]"),
            ),
            ("bearer 0123456789abcdef", Some("bearer [REDACTED:bearer]")),
            ("BEARER tok-1234.5678", Some("BEARER [REDACTED:bearer]")),
            (
                "Bearer\tghp_16C7e42F292c6912E7710c838347Ae178B4a",
                Some("Bearer\t[REDACTED:bearer]"),
            ),
            (&format!("Bearer {JWT}"), Some("Bearer [REDACTED:bearer]")),
            (
                "Bearer dGhpcyBpcyBhIHRva2VuMTIz==, next",
                Some("Bearer [REDACTED:bearer], next"),
            ),
            ("{Bearer s3cr3tT0ken}", Some("{Bearer [REDACTED:bearer]}")),
            (
                "Bearer  a1b2c3d4e5 ok",
                Some("Bearer  [REDACTED:bearer] ok"),
            ),
        ],
    );
    untouched(
        "bearer",
        &[
            "Bearer authentication failed",
            "bearer token missing",
            "Bearer abc1",
            "Bearer",
            "Bearer12345678",
            "the bearer of bad news",
            "Bearer: abc12345",
            "forbearer 1234567890",
            "Bearer abcdefghijklmnop",
        ],
    );
}

#[test]
fn aws_access_key_ids_are_masked_and_longer_or_lowercase_ones_are_not() {
    replaced(
        "aws_key",
        &[
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "AKIA1234567890ABCDEF",
            "AKIAZZZZZZZZZZZZZZZZ",
            "ASIA0000000000000000",
            "AKIAQWERTYUIOPASDFGH",
            "ASIA2345234523452345",
            "AKIA7777777777777777",
        ],
    );
    table(
        "aws_key",
        &[
            ("(AKIAIOSFODNN7EXAMPLE)", Some("([REDACTED:aws_key])")),
            (
                "\"id\":\"AKIAIOSFODNN7EXAMPLE\"",
                Some("\"id\":\"[REDACTED:aws_key]\""),
            ),
        ],
    );
    untouched(
        "aws_key",
        &[
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLE1",
            "akiaiosfodnn7example",
            "XAKIAIOSFODNN7EXAMPLE",
            "AKIA-IOSFODNN7EXAMPLE",
            "AKIAiosfodnn7example",
            "ABIAIOSFODNN7EXAMPLE",
            "ASIA is a continent",
        ],
    );
}

#[test]
fn ipv4_addresses_are_masked_and_oids_and_three_part_versions_are_not() {
    replaced(
        "ipv4",
        &[
            "10.0.0.1",
            "192.168.1.254",
            "255.255.255.255",
            "0.0.0.0",
            "203.0.113.7",
            "8.8.8.8",
            // The documented casualty: a bare four-part version is an address to this rule.
            "1.2.3.4",
            "172.16.254.3",
        ],
    );
    table(
        "ipv4",
        &[
            (
                "from 172.16.254.3:8080.",
                Some("from [REDACTED:ipv4]:8080."),
            ),
            ("client=8.8.8.8,", Some("client=[REDACTED:ipv4],")),
        ],
    );
    untouched(
        "ipv4",
        &[
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "v1.2.3.4",
            "01.02.03.04",
            "1.3.6.1.4.1.311",
            "2024.01.02",
            "10.0.0.999",
            "a10.0.0.1",
        ],
    );
}

fn all_rules() -> Redactor {
    redactor(config::BUILT_IN_REDACTIONS)
}

#[test]
fn identifiers_timestamps_and_versions_survive_the_default_rules() {
    let r = all_rules();
    for line in [
        "request 123e4567-e89b-12d3-a456-426614174000 done",
        "uid 550e8400-e29b-41d4-a716-446655440000",
        "at 2024-05-06T07:08:09.123456789Z",
        "2024-05-06 07:08:09,123 INFO started",
        "ts=1714979289123 level=info",
        "epoch 1714979289",
        "order #100234567 shipped",
        "request_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "version 1.2.3 (go1.22.3)",
        "pod web-7d9f8b6c5-x2x9z ready",
        "GET /api/v1/items?page=2 HTTP/1.1 200 3456 bytes in 12ms",
        "image sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "latency_ns=123456789012 duration=0.000123456789s",
        "@timestamp missing; Bearer token required",
    ] {
        assert_eq!(r.redact_str(line), None, "{line:?}");
    }
}

#[test]
fn several_rules_in_one_line_are_each_replaced_once() {
    let r = all_rules();
    let got = r.redact_str(&format!(
        "user jane@example.com from 10.0.0.1 paid 4111 1111 1111 1111 with Authorization: Bearer {JWT}"
    ));
    assert_eq!(
        got.as_deref(),
        Some(
            "user [REDACTED:email] from [REDACTED:ipv4] paid [REDACTED:card] with Authorization: Bearer [REDACTED:jwt]"
        )
    );
}

fn key_file(dir: &std::path::Path, key: &[u8]) -> PathBuf {
    let path = dir.join("redact.key");
    std::fs::write(&path, key).expect("temp dir is writable");
    path
}

fn hashing(key_path: PathBuf) -> Result<Option<Redactor>> {
    let cfg = Redact {
        rules: vec!["card".into(), "email".into(), "phone".into()],
        action: RedactAction::Hash,
        hash_key_file: Some(key_path),
        ..Redact::default()
    };
    Redactor::new(&cfg, &Metrics::new(), None)
}

#[test]
fn hashing_gives_the_same_tag_for_the_same_value_however_written_and_never_shows_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = b"0123456789abcdef-the-key-itself\n";
    let r = hashing(key_file(dir.path(), key))
        .ok()
        .flatten()
        .expect("built");
    let a = r.redact_str("paid 4111 1111 1111 1111").expect("a card");
    let b = r.redact_str("card=4111-1111-1111-1111").expect("a card");
    let tag = a.strip_prefix("paid ").expect("prefix kept");
    assert!(
        tag.starts_with("[card:") && tag.len() == "[card:]".len() + 16,
        "{tag}"
    );
    assert_eq!(b.strip_prefix("card="), Some(tag));
    let other = r.redact_str("paid 5555555555554444").expect("a card");
    assert_ne!(other, a);
    assert_eq!(
        r.redact_str("Jane@Example.com"),
        r.redact_str("jane@example.com")
    );
    assert_eq!(
        r.redact_str("+1 415 555 2671"),
        r.redact_str("(415) 555-2671")
    );
    assert!(!format!("{r:?}").contains("the-key-itself"));
    // Another key, another tag: a tag cannot be looked up without the key.
    let dir2 = tempfile::tempdir().expect("temp dir");
    let r2 = hashing(key_file(dir2.path(), b"another-key-of-16-bytes"))
        .ok()
        .flatten()
        .expect("built");
    assert_ne!(r2.redact_str("paid 4111 1111 1111 1111"), Some(a));
}

#[test]
fn a_missing_or_short_hash_key_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let short = key_file(dir.path(), b"tiny-secret\n");
    let err = hashing(short).expect_err("too short");
    assert!(matches!(err, Error::ShortKey { len: 11, .. }), "{err}");
    assert!(!err.to_string().contains("tiny-secret"));
    let err = hashing(dir.path().join("absent")).expect_err("no file");
    assert!(matches!(err, Error::KeyFile { .. }), "{err}");
}

#[test]
fn every_replacement_is_counted_by_rule() {
    let metrics = Metrics::new();
    let cfg = Redact {
        rules: vec!["email".into(), "ipv4".into()],
        custom: vec![CustomRedaction {
            name: "mrn".into(),
            pattern: r"\bMRN[-: ]?\d{6,10}\b".into(),
        }],
        ..Redact::default()
    };
    let r = Redactor::new(&cfg, &metrics, None)
        .ok()
        .flatten()
        .expect("built");
    assert_eq!(
        r.redact_str("a@example.com b@example.com MRN-1234567")
            .as_deref(),
        Some("[REDACTED:email] [REDACTED:email] [REDACTED:mrn]")
    );
    let text = metrics.render(false);
    assert!(
        text.contains("logferry_redactions_total{rule=\"email\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("logferry_redactions_total{rule=\"mrn\"} 1"),
        "{text}"
    );
    // Known at zero from the start, so rate() sees the first one.
    assert!(
        text.contains("logferry_redactions_total{rule=\"ipv4\"} 0"),
        "{text}"
    );
}

#[test]
fn namespaces_and_an_empty_section_behave_as_configured() {
    assert!(
        Redactor::new(&Redact::default(), &Metrics::new(), None)
            .ok()
            .flatten()
            .is_none()
    );
    let cfg = Redact {
        rules: vec!["email".into()],
        except_namespaces: vec!["kube-system".into()],
        ..Redact::default()
    };
    let r = Redactor::new(&cfg, &Metrics::new(), None)
        .ok()
        .flatten()
        .expect("built");
    assert!(r.skips_namespace("kube-system") && !r.skips_namespace("default"));
}

#[test]
fn the_hash_key_is_read_again_only_when_its_file_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = key_file(dir.path(), b"0123456789abcdef-first-key");
    let first = hashing(path.clone()).ok().flatten().expect("built");
    let cfg = Redact {
        rules: vec!["card".into(), "email".into(), "phone".into()],
        action: RedactAction::Hash,
        hash_key_file: Some(path.clone()),
        ..Redact::default()
    };
    // Unchanged: kept without a read (a file made unreadable would otherwise fail).
    let same = Redactor::new(&cfg, &Metrics::new(), Some(&first))
        .ok()
        .flatten()
        .expect("kept");
    assert_eq!(same.key_tag(), first.key_tag());
    // Replaced as a Secret update does (a new file renamed over it): read again, new tags.
    let next = dir.path().join("next");
    std::fs::write(&next, b"0123456789abcdef-second-key").expect("write");
    std::fs::rename(&next, &path).expect("rename");
    let changed = Redactor::new(&cfg, &Metrics::new(), Some(&first))
        .ok()
        .flatten()
        .expect("read again");
    assert_ne!(changed.key_tag(), first.key_tag());
    assert_ne!(
        changed.redact_str("jane@example.com"),
        first.redact_str("jane@example.com")
    );
}

fn problems(toml: &str) -> Vec<String> {
    match Config::from_toml(toml, |_| None) {
        Ok(_) => Vec::new(),
        Err(ps) => ps
            .into_iter()
            .map(|p| format!("{:?}: {}", p.key, p.message))
            .collect(),
    }
}

#[test]
fn validate_names_each_redact_mistake_and_accepts_the_issue_example() {
    let base = "[input]\ninclude = [\"/var/log/containers/*.log\"]\n";
    let example = format!(
        "{base}[redact]\nrules = [\"email\", \"card\", \"us_ssn\", \"phone\", \"jwt\", \"bearer\", \"aws_key\", \"ipv4\"]\n\
         fields = [\"log\", \"msg\", \"message\", \"body\", \"query\", \"url\", \"headers.*\"]\n\
         action = \"hash\"\nhash_key_file = \"/etc/logferry-secrets/redact.key\"\n\
         [[redact.custom]]\nname = \"mrn\"\npattern = \"\\\\bMRN[-: ]?\\\\d{{6,10}}\\\\b\"\n"
    );
    assert_eq!(problems(&example), Vec::<String>::new());
    let bad = format!(
        "{base}[redact]\nrules = [\"emails\"]\nfields = [\"a*b\"]\nskip_fields = [\"*\"]\naction = \"hash\"\n\
         [[redact.custom]]\nname = \"Card\"\npattern = \"(\"\n"
    );
    let found = problems(&bad).join("\n");
    for needle in [
        "redact.rules",
        "\"emails\"",
        "redact.fields",
        "redact.skip_fields",
        "needs hash_key_file",
        "redact.custom[0].name",
        "redact.custom[0].pattern",
    ] {
        assert!(found.contains(needle), "{needle} missing from:\n{found}");
    }
    let unknown = problems(&format!("{base}[redact]\nrule = [\"email\"]\n")).join("\n");
    assert!(unknown.contains("unknown field"), "{unknown}");
}
