//! `[redact]` as an operator meets it through the command line: `logferry validate` accepts
//! the issue's example and names each mistake with file, line and key, and the HMAC key is
//! never read or shown by it.

use std::process::Command;

const KEY: &str = "do-not-print-this-redaction-key";

fn validate(config: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["validate", "--config", &config.display().to_string()])
        .output()
        .expect("run logferry");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn validate_accepts_the_issue_example_and_never_shows_the_hash_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("redact.key");
    std::fs::write(&key, KEY).unwrap();
    let example = include_str!("fixtures/redact/issue17.toml")
        .replace("KEY_FILE", &key.display().to_string());
    let path = dir.path().join("logferry.toml");
    std::fs::write(&path, &example).unwrap();
    let (code, text) = validate(&path);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains(KEY), "{text}");

    // The same file broken in two places: each named, the key still unseen.
    let broken = example
        .replace("\"ipv4\"]", "\"ipv6\"]")
        .replace("name = \"mrn\"", "name = \"MRN number\"");
    std::fs::write(&path, broken).unwrap();
    let (code, text) = validate(&path);
    let p = path.display().to_string();
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{p}:6:")) && text.contains("redact.rules: unknown rule \"ipv6\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("{p}:13:")) && text.contains("redact.custom[0].name"),
        "{text}"
    );
    assert!(!text.contains(KEY), "{text}");
}
