//! The command line as an operator meets it.

mod support;

use std::process::Command;

fn logferry(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(args)
        .output()
        .expect("run logferry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_prints_every_problem_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "data_dir = \"/tmp/x\"\n[input]\nread_from = \"middle\"\n[buffer]\nchunk_limit_size = \"5 megs\"\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let (code, _, err) = logferry(&["validate", "--config", &p]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{p}:3:13: input.read_from: unknown variant `middle`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:5:20: buffer.chunk_limit_size: invalid size \"5 megs\""
        )),
        "{err}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[elasticsearch]\nhosts = [\"http://es:9200\"]\n").unwrap();
    let (code, out, _) = logferry(&["validate", "--config", &good.display().to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("ok"));

    let (code, _, err) = logferry(&["validate", "--config", "/nonexistent/logferry.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/logferry.toml: cannot read the config file"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_broken_config_before_doing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[elasticsearch]\nhosts = [\"http://${LOGFERRY_TEST_UNSET_VAR}\"]\n",
    )
    .unwrap();
    let (code, _, err) = logferry(&["--config", &path.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(":2:") && err.contains("LOGFERRY_TEST_UNSET_VAR is not set"),
        "{err}"
    );
}

/// Issue 12, item 12: the variable's value used to be pasted into the TOML text, where a `"`
/// ended the string and the file no longer parsed.
#[test]
fn a_password_from_the_environment_holding_quotes_and_backslashes_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[elasticsearch]\nhosts = [\"https://es:9200\"]\n[elasticsearch.auth]\nuser = \"elastic\"\npassword = \"${LOGFERRY_TEST_PASSWORD}\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["validate", "--config", &path.display().to_string()])
        .env("LOGFERRY_TEST_PASSWORD", "s3\"cr\\et\t${HOME}\"\n")
        .output()
        .expect("run logferry");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("s3"), "the secret is never shown: {err}");
}

#[test]
fn help_and_version() {
    let (code, out, _) = logferry(&["--help"]);
    assert_eq!(code, 0);
    for word in ["run", "validate", "demo", "--config"] {
        assert!(out.contains(word), "{out}");
    }
    let (code, out, _) = logferry(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("logferry {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn validate_warns_about_a_redaction_path_that_can_never_match_and_still_accepts_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redact.toml");
    std::fs::write(
        &path,
        "[redact]\nrules = [\"email\"]\nfields = [\"msg\", \"Kubernetes.labels\"]\nskip_fields = [\"log\"]\n",
    )
    .unwrap();
    let p = path.display().to_string();
    let (code, out, err) = logferry(&["validate", "--config", &p]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
    assert!(
        err.contains(&format!(
            "{p}: warning: redact: \"Kubernetes.labels\" names the agent's own field"
        )),
        "{err}"
    );
    assert!(err.contains("redact.skip_fields: \"log\""), "{err}");
    assert!(!err.contains("\"msg\""), "{err}");
}
