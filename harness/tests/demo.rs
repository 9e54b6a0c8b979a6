//! `logferry-demo` itself: it must never report success for an agent it did not see work, and
//! what it shows a newcomer — an audit event in its 7-year index, an e-mail masked in every
//! document, the retention policies installed — must be what the real agent did.

use logferry_harness::CUSTOMER_EMAIL;
use std::path::Path;
use std::process::Command;

fn demo(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry-demo"))
        .args(args)
        .output()
        .expect("run logferry-demo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_agent_binary_is_named_before_anything_starts() {
    let (ok, err) = demo(&["--agent", "/nonexistent/logferry", "--lines", "10"]);
    assert!(!ok);
    assert!(
        err.contains("no agent binary at /nonexistent/logferry"),
        "{err}"
    );
}

/// A shell script standing in for the agent, in a temp dir kept while it is used.
fn fake_agent(script: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("logferry");
    std::fs::write(&fake, script).expect("write the fake agent");
    let mut perms = std::fs::metadata(&fake).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).expect("chmod");
    let path = fake.display().to_string();
    (dir, path)
}

#[test]
fn an_agent_that_exits_early_fails_the_demo() {
    // `logferry setup` succeeds; the agent itself exits at once.
    let (_dir, fake) = fake_agent("#!/bin/sh\n[ \"$1\" = setup ] && exit 0\nexit 3\n");
    let (ok, err) = demo(&["--agent", &fake, "--lines", "10"]);
    assert!(!ok);
    assert!(
        err.contains("the agent exited (exit status: 3) before every record was indexed"),
        "{err}"
    );
}

#[test]
fn a_failed_setup_fails_the_demo() {
    let (_dir, fake) = fake_agent("#!/bin/sh\necho 'no cluster' >&2\nexit 1\n");
    let (ok, err) = demo(&["--agent", &fake, "--lines", "10"]);
    assert!(!ok);
    assert!(
        err.contains("logferry setup failed (exit status: 1): no cluster"),
        "{err}"
    );
}

/// Issue 29, "the demo tells the platform's story": run end to end with the real agent, which
/// `cargo test --workspace` builds next to the demo.
#[test]
fn the_demo_shows_an_audit_event_in_its_index_an_email_masked_and_the_policies() {
    let demo = env!("CARGO_BIN_EXE_logferry-demo");
    let agent = Path::new(demo).with_file_name("logferry");
    assert!(
        agent.is_file(),
        "no agent binary at {}: run the workspace's tests (cargo test --workspace), which build it",
        agent.display()
    );
    let out = Command::new(demo)
        .args(["--lines", "20"])
        .output()
        .expect("run logferry-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = |text: &str| assert!(stdout.contains(text), "{text:?} not in:\n{stdout}");
    // Four pods of 20 lines, the crash pod's five records, the payments pod's six lines.
    shown("indexed 91 of 91 records");
    // The route: the three audit events, and only they, in the monthly audit index.
    shown("index audit-2026.11: 3 documents");
    shown("index logs-2026.11.26: 88 documents");
    shown("routed by [[route]] audit-events to index audit-2026.11 (kept 7y)");
    shown(r#""event": "refund.approved""#);
    // The redaction: the line as indexed holds the masks, and the demo read every document.
    shown(r#""email": "[REDACTED:email]""#);
    shown(r#""ssn": "[REDACTED:us_ssn]""#);
    shown(r#""card": "[REDACTED:card]""#);
    shown(r#""msg": "refund rf-20418: card declined, notifying [REDACTED:email]""#);
    shown("4111 1111 1111 1111 in 0 of 91 indexed documents");
    let indexed = stdout
        .split_once("and as indexed")
        .and_then(|(_, rest)| rest.split_once("in 0 of 91"))
        .map(|(doc, _)| doc.rsplit_once('\n').map_or(doc, |(doc, _)| doc))
        .expect("the line as indexed");
    assert!(!indexed.contains(CUSTOMER_EMAIL), "{indexed}");
    // The retention policies, as the cluster's ISM API lists them.
    shown("logferry-2557d-monthly: indices audit-*.* deleted at min_index_age 2588d");
    shown("logferry-90d-daily: indices logs-*.*.* deleted at min_index_age 91d");
    shown("lifecycle policy (ISM) logferry-2557d-monthly: created");
}
