//! `logferry-demo` itself: it must never report success for an agent it did not see work.

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

#[test]
fn an_agent_that_exits_early_fails_the_demo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("logferry");
    std::fs::write(&fake, "#!/bin/sh\nexit 3\n").expect("write the fake agent");
    let mut perms = std::fs::metadata(&fake).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).expect("chmod");
    let (ok, err) = demo(&["--agent", &fake.display().to_string(), "--lines", "10"]);
    assert!(!ok);
    assert!(
        err.contains("the agent exited (exit status: 3) before every record was indexed"),
        "{err}"
    );
}
