//! What operators install next to the agent: the alert rules (checked and unit-tested with
//! `promtool`) and the Grafana dashboard (every query valid PromQL over metrics the agent
//! really exports).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/k8s/prometheus-rule.yaml"
);
const RULE_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/logferry-rules.test.yaml"
);
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/logferry-dashboard.json"
);

/// A YAML file as JSON, through PyYAML (installed with kubernetes-validate).
fn yaml(path: &str) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
            path,
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "reading {path}: {} (run scripts/install-deps)",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool must be installed: run scripts/install-deps (Debian package prometheus)");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    said
}

/// The PrometheusRule's `spec`, as a plain rule file in a temp dir.
fn rule_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec = &yaml(RULES)["spec"];
    let path = dir.path().join("rules.yaml");
    // JSON is YAML.
    std::fs::write(&path, serde_json::to_string_pretty(spec).unwrap()).unwrap();
    (dir, path)
}

/// Every metric name the agent exports, histograms with their series suffixes.
fn exported() -> BTreeSet<String> {
    let m = logferry::metrics::Metrics::new();
    // Its labels come from the cluster's answers, so it has no series until the first one.
    let _ = m
        .dead_letters
        .get_or_create(&vec![("reason", "mapper_parsing_exception".to_owned())])
        .inc();
    // So do these: the namespaces are the node's.
    let ns = vec![("namespace", "shop".to_owned())];
    m.throttle_dropped.get_or_create(&ns).inc();
    m.throttled_seconds.get_or_create(&ns).inc();
    let text = m.render(false);
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' '))
        else {
            continue;
        };
        if kind == "histogram" {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{s}"));
            }
        }
        names.insert(name.to_owned());
    }
    names
}

/// Metric names a PromQL expression uses.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if word_start && (expr[i..].starts_with("logferry_") || expr[i..].starts_with("process_")) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |e| i + e);
            out.push(expr[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_each_says_what_to_do() {
    let (dir, path) = rule_file();
    let said = promtool(&["check", "rules", path.to_str().unwrap()], dir.path());
    assert!(said.contains("SUCCESS"), "{said}");
    let spec = yaml(RULES);
    let rules: Vec<&Value> = spec["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for wanted in [
        "LogferryNotShipping",
        "LogferryLagGrowing",
        "LogferryBufferFilling",
        "LogferryDroppingRecords",
        "LogferryDeadLetters",
        "LogferryElasticsearchRejecting",
        "LogferryRestarting",
    ] {
        assert!(names.contains(wanted), "{wanted} missing: {names:?}");
    }
    let known = exported();
    for r in &rules {
        let alert = r["alert"].as_str().unwrap();
        for a in ["summary", "description", "runbook"] {
            assert!(
                r["annotations"][a].as_str().is_some_and(|s| s.len() > 10),
                "{alert} has no {a}"
            );
        }
        assert!(
            r["labels"]["severity"].is_string(),
            "{alert} has no severity"
        );
        for m in metrics_in(r["expr"].as_str().unwrap()) {
            assert!(
                known.contains(&m),
                "{alert} uses {m}, which the agent does not export"
            );
        }
    }
}

#[test]
fn alerts_fire_when_they_should_and_stay_quiet_otherwise() {
    let (dir, _) = rule_file();
    std::fs::copy(RULE_TESTS, dir.path().join("tests.yaml")).unwrap();
    let said = promtool(&["test", "rules", "tests.yaml"], dir.path());
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn every_dashboard_query_is_valid_promql_over_exported_metrics() {
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let exprs: Vec<(String, String)> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_owned()))
        })
        .collect();
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let known = exported();
    for (title, expr) in &exprs {
        let used = metrics_in(expr);
        assert!(!used.is_empty(), "{title}: {expr}");
        for m in used {
            assert!(
                known.contains(&m),
                "panel {title:?} uses {m}, which the agent does not export"
            );
        }
    }
    // Grafana's variables resolved as Grafana would, then each query as a recording rule:
    // promtool parses every expression.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*");
            serde_json::json!({"record": format!("dashboard:query{i}"), "expr": e})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let doc = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yaml"), doc.to_string()).unwrap();
    let said = promtool(&["check", "rules", "dashboard.yaml"], dir.path());
    assert!(said.contains("SUCCESS"), "{said}");
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "instance"),
        "a per-node view"
    );
}
