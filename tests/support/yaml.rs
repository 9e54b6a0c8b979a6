//! YAML read the way Kubernetes' own tools read it: PyYAML (kubernetes-validate's dependency,
//! installed by scripts/install-deps), so there is no YAML parser of ours to get wrong. Shared by
//! the manifests' and the chart's tests (`#[path]`-included: they need nothing else of
//! `support`).

use serde_json::Value;
use std::process::{Command, Stdio};

/// `python3 args`, with `input` on its stdin.
pub fn python_on(args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input.as_bytes())
        .expect("python3's stdin");
    drop(child.stdin.take());
    child.wait_with_output().expect("python3")
}

/// The YAML documents in `yaml` as JSON values, read by PyYAML (kubernetes-validate's own
/// dependency: no YAML parser of our own to get wrong).
pub fn documents(yaml: &str) -> Vec<Value> {
    let out = python_on(
        &[
            "-c",
            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ],
        yaml,
    );
    assert!(
        out.status.success(),
        "PyYAML (installed with kubernetes-validate by scripts/install-deps):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

/// What kubernetes-validate says of `yaml`, checked strictly against Kubernetes 1.37's
/// schemas (it must be installed, and every object must pass).
pub fn kubernetes_validate(yaml: &str) -> String {
    let out = python_on(
        &["-m", "kubernetes_validate", "--strict", "-k", "1.37.0", "-"],
        yaml,
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("No module named"),
        "kubernetes-validate is not installed: run scripts/install-deps\n{text}"
    );
    assert!(out.status.success(), "{text}");
    text
}

/// `Kind/name` of an object.
pub fn kind_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The one object of `kind` among `docs`; fails if there is none or more than one.
pub fn the_only<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}: {found:?}");
    found[0]
}
