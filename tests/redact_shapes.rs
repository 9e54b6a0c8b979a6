//! Redaction as a stage over the finished document (issue 25): the shapes real applications
//! write — a .NET/Serilog `Message`, a Postgres error quoting the row, a nested user, a lone
//! surrogate from a string cut inside an emoji, an SSN and a phone number as bare digits, an
//! address as a map key — reach neither the disk buffer nor the index with the default
//! `fields` (every string of the message). With `fields` narrowed and `keep_original`, the raw
//! copy in `log` is redacted too, and so is a line that is not JSON.

mod support;

use support::*;

const RULES: &str = "rules = [\"email\", \"card\", \"us_ssn\", \"phone\", \"jwt\", \"bearer\", \"aws_key\", \"ipv4\"]\n";

/// Each line with the personal values it holds (each must be gone, on disk and in the index).
const SHAPES: &[(&str, &[&str])] = &[
    (
        r#"{"Message":"appointment for ann.lee@example.com","seq":0}"#,
        &["ann.lee@example.com"],
    ),
    (
        r#"{"error":"duplicate key (email)=(bob.kay@example.com)","seq":1}"#,
        &["bob.kay@example.com"],
    ),
    (
        r#"{"user":{"email":"cy.ng@example.com","ssn":"219-09-9999"},"seq":2}"#,
        &["cy.ng@example.com", "219-09-9999"],
    ),
    (
        r#"{"msg":"\ud83d note: eve.park@example.com","seq":3}"#,
        &["eve.park@example.com"],
    ),
    (
        r#"{"patient":{"SSN":219099999,"mobilePhone":"4155552671"},"seq":4}"#,
        &["219099999", "4155552671"],
    ),
    (
        r#"{"recipients":{"dee.ok@example.com":"sent"},"seq":5}"#,
        &["dee.ok@example.com"],
    ),
    (
        r#"{"msg":"escaped fay\u0040example.com","seq":6}"#,
        &["fay@example.com", "fay\\u0040example.com"],
    ),
];

fn everything_on_disk(dir: &std::path::Path) -> String {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn health_information_in_every_shape_reaches_neither_the_buffer_nor_the_index() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("clinic", "api-1", "api", Format::Cri);
    for (line, _) in SHAPES {
        w.line(line).unwrap();
    }
    // Held in the buffer first, where it is searched.
    let proxy = support::proxy::FaultProxy::start(&es.url);
    proxy.set(|f| f.down = true);
    let config = node.config_with(&proxy.url, &format!("[redact]\n{RULES}"));
    let agent = Agent::start(&config);
    wait_until(30, "the lines in the buffer", || {
        agent.metric("logferry_buffer_records") >= SHAPES.len() as u64
    });
    let on_disk = everything_on_disk(&node.data());
    assert!(
        on_disk.contains("[REDACTED:email]"),
        "the buffer was searched"
    );
    for (line, values) in SHAPES {
        for v in *values {
            assert!(!on_disk.contains(v), "{v} of {line} is on disk");
        }
    }
    proxy.set(|f| f.down = false);
    wait_until(30, "every line indexed", || {
        docs_of(&es, "api-1").len() == SHAPES.len()
    });
    let docs = docs_of(&es, "api-1");
    let text = serde_json::to_string(&docs).unwrap();
    for (line, values) in SHAPES {
        for v in *values {
            assert!(!text.contains(v), "{v} of {line} is indexed: {text}");
        }
    }
    let by_seq = |n: u64| {
        docs.iter()
            .find(|d| d["seq"] == n)
            .unwrap_or_else(|| panic!("no document {n}: {text}"))
    };
    assert_eq!(by_seq(0)["Message"], "appointment for [REDACTED:email]");
    assert_eq!(by_seq(2)["user"]["ssn"], "[REDACTED:us_ssn]");
    assert_eq!(by_seq(4)["patient"]["SSN"], "[REDACTED:us_ssn]");
    assert_eq!(by_seq(4)["patient"]["mobilePhone"], "[REDACTED:phone]");
    assert_eq!(by_seq(5)["recipients"]["[REDACTED:email]"], "sent");
    // The pod's own fields are the agent's, left as they are.
    assert_eq!(by_seq(0)["kubernetes"]["namespace_name"], "clinic");
    assert!(agent.stop().success());
}

#[test]
fn with_fields_narrowed_the_raw_copy_and_plain_text_are_still_redacted() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("clinic", "api-2", "api", Format::Cri);
    w.line(r#"{"msg":"hello","to":"ann.lee@example.com","seq":0}"#)
        .unwrap();
    w.line("plain text for bob.kay@example.com seq=1").unwrap();
    let config = node.config_with(
        &es.url,
        &format!("[parse]\nkeep_original = true\n[redact]\n{RULES}fields = [\"msg\"]\n"),
    );
    let agent = Agent::start(&config);
    wait_until(30, "both lines indexed", || {
        docs_of(&es, "api-2").len() == 2
    });
    let docs = docs_of(&es, "api-2");
    let parsed = docs.iter().find(|d| d["seq"] == 0).expect("the JSON line");
    let raw = parsed["log"].as_str().expect("the raw copy");
    assert!(
        raw.contains("[REDACTED:email]") && !raw.contains("ann.lee"),
        "{raw}"
    );
    // Outside `fields`, as the operator asked.
    assert_eq!(parsed["to"], "ann.lee@example.com");
    let plain = docs.iter().find(|d| d["seq"].is_null()).expect("the text");
    assert_eq!(plain["log"], "plain text for [REDACTED:email] seq=1");
    assert!(agent.stop().success());
}
