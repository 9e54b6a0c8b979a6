//! `logferry test` as a platform team uses it in CI: the shipped configs pass their own
//! pipeline tests, a case that no longer holds fails with a diff naming what differs, a broken
//! case file stops everything with its file, line and key, and lines joined by the runtime or
//! by multiline rules are tested as the one document they become.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the binary; (exit code, stdout, stderr).
fn logferry(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run logferry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `.toml` files directly in `dir`, sorted, as a shell's `dir/*.toml` lists them.
fn case_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Runs the case files of `dir` against `config`; every case must pass, and every `[[case]]`
/// written must have been run (none lost on the way).
fn passes(config: &str, dir: &str) {
    let files = case_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    assert!(!files.is_empty(), "no case files in {dir}");
    let written: usize = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .matches("[[case]]")
                .count()
        })
        .sum();
    let mut args = vec!["test", "--config", config];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let (code, out, err) = logferry(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        written
    );
    assert!(
        out.contains(&format!("{written} passed, 0 failed")),
        "{out}"
    );
}

#[test]
fn the_reference_config_passes_its_pipeline_tests() {
    passes("config/logferry.toml", "config/tests");
}

#[test]
fn the_platform_config_masks_phi_routes_audit_and_drops_probes_as_its_tests_say() {
    passes("config/platform.toml", "config/tests/platform");
}

/// The Kafka tier's node config is the platform's with another output: the same cases hold.
#[test]
fn the_kafka_tiers_node_config_passes_the_platforms_pipeline_tests() {
    passes("config/kafka-node.toml", "config/tests/platform");
}

#[test]
fn the_fluentd_equivalent_config_passes_its_pipeline_tests() {
    passes(
        "config/fluentd-equivalent.toml",
        "config/tests/fluentd-equivalent",
    );
}

/// A platform's config as the tests below exercise it: PHI masked, audit routed and kept seven
/// years, probes dropped, Node stack traces joined.
const PLATFORM: &str = r#"
[elasticsearch]
index = "logs-%Y.%m.%d"
retention = "90d"
[multiline]
rules = ["node"]
[redact]
rules = ["email", "us_ssn"]
[[redact.custom]]
name = "mrn"
# "MRN: 12345678" too: the reference config's example ('[-: ]?') misses a colon and a space.
pattern = '\bMRN[-: ]{0,2}\d{6,10}\b'
[[route]]
name = "probes"
drop = true
when.field = { path = "http.path", matches = '^/(healthz|readyz)' }
[[route]]
name = "audit"
index = "audit-%Y.%m"
retention = "7y"
when.field = { path = "log_type", equals = "audit" }
"#;

/// Writes the platform config and the case files into a temp dir and runs them all.
fn run(cases: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("logferry.toml");
    std::fs::write(&config, PLATFORM).unwrap();
    let mut args = vec![
        "test".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    for (name, text) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        args.push(path.display().to_string());
    }
    logferry(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

const AUDIT: &str = r#"
[[case]]
name = "payments lines are audit, kept seven years, e-mails masked"
pod = { namespace = "payments", name = "api-1", container = "api", labels = { app = "api" } }
lines = ['2026-12-01T10:00:00.000Z stdout F {"msg":"refund for ann@example.com","log_type":"audit"}']
[[case.expect]]
index = "audit-2026.12"
retention = "7y"
fields = { msg = "refund for [REDACTED:email]", "kubernetes.namespace_name" = "payments" }
absent = ["ann@example.com"]
"#;

#[test]
fn the_issues_example_passes_and_a_wrong_expectation_fails_naming_the_field() {
    let (code, out, err) = run(&[("audit.toml", AUDIT)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok   "), "{out}");
    let wrong = AUDIT
        .replace("refund for [REDACTED:email]", "refund for [REDACTED:mail]")
        .replace(
            r#"absent = ["ann@example.com"]"#,
            r#"absent = ["REDACTED"]"#,
        );
    let (code, out, err) = run(&[("audit.toml", &wrong)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL "), "{out}");
    assert!(
        out.contains(
            r#"fields.msg: expected "refund for [REDACTED:mail]", got "refund for [REDACTED:email]""#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"absent: "REDACTED" appears in the document"#),
        "{out}"
    );
    // The whole document, pretty-printed, to see what the config really did.
    assert!(out.contains(r#"  "log_type": "audit","#), "{out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
}

#[test]
fn phi_is_masked_in_every_shape_a_service_writes_it() {
    let cases = r#"
[[case]]
name = "nested, in a key's value, in plain text, split by the runtime, inside a stack trace"
pod = { namespace = "clinic", name = "records-0", container = "api" }
lines = [
  '2026-12-01T10:00:00Z stdout F {"patient":{"contact":{"Email":"ANN@Example.COM"}},"note":"MRN: 12345678, SSN 123-45-6789"}',
  '2026-12-01T10:00:01Z stdout F lookup for bob@example.org failed',
  '2026-12-01T10:00:02Z stdout P {"msg":"mail to carol@exam',
  '2026-12-01T10:00:02Z stdout F ple.net"}',
  '2026-12-01T10:00:03Z stderr F Error: no patient dave@example.com',
  '2026-12-01T10:00:03Z stderr F     at lookup (/app/records.js:10:5)',
]
[[case.expect]]
fields = { "patient.contact.Email" = "[REDACTED:email]", note = "[REDACTED:mrn], SSN [REDACTED:us_ssn]" }
absent = ["12345678", "123-45-6789", "ANN@"]
[[case.expect]]
fields = { log = "lookup for [REDACTED:email] failed" }
[[case.expect]]
fields = { msg = "mail to [REDACTED:email]" }
absent = ["carol"]
[[case.expect]]
fields = { "logferry.multiline_lines" = 2 }
absent = ["dave@example.com"]
"#;
    let (code, out, err) = run(&[("phi.toml", cases)]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn drops_multiline_and_partial_joins_are_expected_as_what_they_become() {
    let cases = r#"
[[case]]
name = "a probe is dropped by its route"
pod = { namespace = "shop", name = "web-1", container = "web" }
lines = ['2026-12-01T10:00:00Z stdout F {"http":{"path":"/healthz"}}']
[[case.expect]]
drop = true
route = "probes"

[[case]]
name = "a Node stack trace is one document"
pod = { namespace = "shop", name = "web-1", container = "web" }
lines = [
  '2026-12-01T10:00:00Z stderr F TypeError: x is undefined',
  '2026-12-01T10:00:00Z stderr F     at handler (/app/server.js:12:7)',
  '2026-12-01T10:00:00Z stderr F     at process (node:internal/process:1:1)',
]
[[case.expect]]
fields = { log = "TypeError: x is undefined\n    at handler (/app/server.js:12:7)\n    at process (node:internal/process:1:1)", "logferry.multiline_lines" = 3 }

[[case]]
name = "CRI partials are one document"
pod = { namespace = "shop", name = "web-1", container = "web" }
lines = [
  '2026-12-01T10:00:00Z stdout P {"msg":"one ',
  '2026-12-01T10:00:00Z stdout P long ',
  '2026-12-01T10:00:00Z stdout F line"}',
]
[[case.expect]]
fields = { msg = "one long line" }
"#;
    let (code, out, err) = run(&[("joins.toml", cases)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
    // The same lines with expectations that no longer hold: each says how.
    let wrong = cases
        .replace(
            "drop = true\nroute = \"probes\"",
            "index = \"logs-2026.12.01\"",
        )
        .replace(
            "\"logferry.multiline_lines\" = 3",
            "\"logferry.multiline_lines\" = 2",
        )
        .replace("msg = \"one long line\"", "msg = \"one long\"");
    let (code, out, _) = run(&[("joins.toml", &wrong)]);
    assert_eq!(code, 1, "{out}");
    for says in [
        "outcome 1: expected a document, got none: its route drops it (route probes)",
        "outcome 1: fields.logferry.multiline_lines: expected 2, got 3",
        "outcome 1: fields.msg: expected \"one long\", got \"one long line\"",
        "0 passed, 3 failed",
    ] {
        assert!(out.contains(says), "{says}: {out}");
    }
}

#[test]
fn a_count_that_differs_and_a_line_that_is_not_cri_fail_the_case_without_a_panic() {
    let cases = r#"
[[case]]
name = "two lines, one expectation"
lines = ['2026-12-01T10:00:00Z stdout F a', '2026-12-01T10:00:00Z stdout F b']
[[case.expect]]
fields = { log = "a" }

[[case]]
name = "not a runtime's line"
lines = ['2026-12-01T10:00:00Z stdout F a', 'hello world']
"#;
    let (code, out, err) = run(&[("bad.toml", cases)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("expected 1 outcome (documents or drops), the lines made 2"),
        "{out}"
    );
    assert!(
        out.contains("cannot run: line 2 is not a CRI line"),
        "{out}"
    );
}

#[test]
fn a_broken_case_file_stops_the_run_with_its_file_line_and_key() {
    let broken = "[[case]]\nname = \"a\"\nlines = ['2026-12-01T10:00:00Z stdout F a']\n\
                  [[case.expect]]\nfeilds = { log = \"a\" }\n";
    let (code, out, err) = run(&[("audit.toml", AUDIT), ("broken.toml", broken)]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("broken.toml:5:1: case[0].expect[0].feilds: unknown field `feilds`"),
        "{err}"
    );
    // Nothing ran: a suite read in part is no evidence.
    assert!(!out.contains("ok "), "{out}");
}
