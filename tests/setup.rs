//! Index templates against a real OpenSearch-compatible server (osmem-server): installed once,
//! giving new indices their mappings; an operator's template never touched; the agent's own
//! replaced only when the config says `overwrite`; many agents at once harmless; and a cluster
//! that refuses setup still gets every line.
//!
//! osmem-server has no ILM or ISM API: lifecycle policies are tested against the stand-in in
//! `harness/src/lifecycle/` (see `tests/lifecycle.rs`).

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::proxy::FaultProxy;
use support::*;

const AUDIT: &str = "[[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\n\
                     when.field = { path = \"log_type\", equals = \"audit\" }\n";

fn template(es: &Osmem, name: &str) -> Option<Value> {
    let v = es.get(&format!("/_index_template/{name}")).ok()?;
    v["index_templates"][0].get("index_template").cloned()
}

/// `logferry setup -c config`: (success, stdout, stderr).
fn setup_once(config: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["setup", "--config"])
        .arg(config)
        .output()
        .expect("run logferry setup");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn audit_lines(node: &Node, n: u64) {
    let mut w = node.writer("shop", "orders-1", "app", Format::Cri);
    for seq in 0..n {
        w.line(&json!({"log_type": "audit", "seq": seq, "msg": "refund"}).to_string())
            .unwrap();
        w.line(&format!("plain text line seq={seq}")).unwrap();
    }
}

#[test]
fn templates_are_installed_at_start_and_give_new_indices_their_mappings() {
    let es = osmem();
    let node = Node::new();
    audit_lines(&node, 10);
    let config = node.config_with(&es.url, AUDIT);
    let agent = Agent::start(&config);
    wait_until(60, "20 documents", || {
        es.count("audit-*").unwrap_or(0) + es.count("logs-*").unwrap_or(0) >= 20
    });
    let audit = template(&es, "logferry-audit").expect("the audit route's template");
    assert_eq!(audit["index_patterns"], json!(["audit-*.*"]));
    assert_eq!(audit["_meta"]["managed_by"], "logferry");
    assert!(
        template(&es, "logferry-default").is_some(),
        "the default index's template"
    );
    // The first index was created after the template: it has the agent's mappings.
    let mapping = es.get("/audit-*/_mapping").unwrap();
    let (_, m) = mapping.as_object().unwrap().iter().next().unwrap();
    let props = &m["mappings"]["properties"];
    assert_eq!(props["@timestamp"]["type"], "date", "{m}");
    assert_eq!(
        props["kubernetes"]["properties"]["pod_name"]["type"], "keyword",
        "{m}"
    );
    assert_eq!(
        props["kubernetes"]["properties"]["namespace_name"]["type"],
        "keyword"
    );
    let mapping = es.get("/logs-*/_mapping").unwrap();
    let (_, m) = mapping.as_object().unwrap().iter().next().unwrap();
    assert_eq!(m["mappings"]["properties"]["log"]["type"], "text", "{m}");
    assert_eq!(
        agent.get("/health")["checks"]["setup"]["status"],
        "healthy",
        "{}",
        agent.get("/health")
    );
    assert_eq!(agent.metric("logferry_setup_complete"), 1);
    assert!(agent.stop().success());
    // A second start finds them present and writes nothing: a mark an operator added stays.
    let mut edited = audit.clone();
    edited["_meta"]["note"] = "edited by hand".into();
    http_json(
        "PUT",
        &format!("{}/_index_template/logferry-audit", es.url),
        Some(&edited),
    )
    .unwrap();
    let (ok, out, err) = setup_once(&config);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("index template logferry-audit: present\n"),
        "{out}"
    );
    assert_eq!(
        template(&es, "logferry-audit").unwrap()["_meta"]["note"],
        "edited by hand"
    );
}

#[test]
fn an_operators_template_is_never_replaced_even_with_overwrite() {
    let es = osmem();
    let operators = json!({
        "index_patterns": ["audit-*.*"],
        "priority": 900,
        "template": {"mappings": {"properties": {"log_type": {"type": "keyword"}, "msg": {"type": "keyword"}}}},
        "_meta": {"owner": "platform-team"},
    });
    http_json(
        "PUT",
        &format!("{}/_index_template/logferry-audit", es.url),
        Some(&operators),
    )
    .unwrap();
    let node = Node::new();
    audit_lines(&node, 5);
    let config = node.config_with(
        &es.url,
        &format!("{AUDIT}[elasticsearch.setup]\noverwrite = true\n"),
    );
    let (ok, out, err) = setup_once(&config);
    // Not as the config asks: the Job says so with its exit code, and leaves it.
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("index template logferry-audit: present and not the agent's; left alone\n"),
        "{out}"
    );
    assert!(err.contains("1 not as the config asks"), "{err}");
    let agent = Agent::start(&config);
    wait_until(60, "5 audit documents", || {
        es.count("audit-*").unwrap_or(0) >= 5
    });
    assert_eq!(
        template(&es, "logferry-audit").unwrap()["_meta"],
        json!({"owner": "platform-team"})
    );
    // The index has the operator's mapping, not the agent's.
    let mapping = es.get("/audit-*/_mapping").unwrap();
    let (_, m) = mapping.as_object().unwrap().iter().next().unwrap();
    assert_eq!(m["mappings"]["properties"]["msg"]["type"], "keyword", "{m}");
    assert!(agent.stop().success());
}

#[test]
fn the_agents_own_template_is_replaced_only_when_the_config_says_overwrite() {
    let es = osmem();
    let node = Node::new();
    let config = node.config_with(&es.url, AUDIT);
    assert!(setup_once(&config).0);
    // An older version of the agent's template: another priority.
    let mut old = template(&es, "logferry-audit").unwrap();
    old["priority"] = 600.into();
    http_json(
        "PUT",
        &format!("{}/_index_template/logferry-audit", es.url),
        Some(&old),
    )
    .unwrap();
    let (ok, out, _) = setup_once(&config);
    assert!(!ok, "a template that differs is not in place: {out}");
    assert!(
        out.contains("index template logferry-audit: present but different; left as it is (overwrite = false)\n"),
        "{out}"
    );
    assert_eq!(template(&es, "logferry-audit").unwrap()["priority"], 600);
    let overwrite = node.config_with(
        &es.url,
        &format!("{AUDIT}[elasticsearch.setup]\noverwrite = true\n"),
    );
    let (ok, out, _) = setup_once(&overwrite);
    assert!(ok);
    assert!(out.contains("logferry-audit: replaced"), "{out}");
    // The audit route's priority: 500 + 100 × 7 literal characters + 99 (first in line).
    assert_eq!(template(&es, "logferry-audit").unwrap()["priority"], 1299);
}

#[test]
fn many_agents_setting_up_at_once_are_harmless() {
    let es = osmem();
    let node = Node::new();
    let config: PathBuf = node.config_with(&es.url, AUDIT);
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let c = config.clone();
            std::thread::spawn(move || setup_once(&c))
        })
        .collect();
    let mut created = 0;
    for run in runs {
        let (ok, out, err) = run.join().unwrap();
        assert!(ok, "every concurrent setup succeeds: {out}{err}");
        if out.contains("index template logferry-audit: created\n") {
            created += 1;
        } else {
            assert!(
                out.contains("index template logferry-audit: present\n"),
                "{out}"
            );
        }
    }
    // One wrote it; the others found it there (or were refused a second create).
    assert_eq!(created, 1);
    assert!(template(&es, "logferry-audit").is_some());
}

#[test]
fn an_operators_template_for_the_same_indices_is_not_taken_over() {
    let es = osmem();
    let theirs = json!({
        "index_patterns": ["audit-*"],
        "priority": 50,
        "template": {"settings": {"number_of_replicas": 2}},
    });
    http_json(
        "PUT",
        &format!("{}/_index_template/platform-audit", es.url),
        Some(&theirs),
    )
    .unwrap();
    let node = Node::new();
    audit_lines(&node, 5);
    let agent = Agent::start(&node.config_with(&es.url, AUDIT));
    wait_until(60, "5 audit documents", || {
        es.count("audit-*").unwrap_or(0) >= 5
    });
    wait_until(30, "setup to finish", || {
        agent.get("/health")["checks"]["setup"]["status"] != "healthy"
    });
    assert!(
        template(&es, "logferry-audit").is_none(),
        "ours would outrank theirs"
    );
    assert!(
        template(&es, "logferry-default").is_some(),
        "the default's indices are no one's"
    );
    let detail = agent.get("/health")["checks"]["setup"]["detail"].to_string();
    assert!(
        detail.contains("logferry-audit: absent, but another template covers"),
        "{detail}"
    );
    assert_eq!(agent.metric("logferry_setup_complete"), 0);
    assert!(agent.stop().success());
}

#[test]
fn a_cluster_that_refuses_setup_keeps_getting_every_line_and_health_says_why() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.refuse_paths = vec![("/_index_template".into(), 403)]);
    let node = Node::new();
    let expected = node.json_lines("orders-1", 200);
    let config = node.config_with(&proxy.url, AUDIT);
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    wait_until(30, "two failed setup attempts", || {
        agent.metric("logferry_setup_failures_total") >= 2
    });
    let health = agent.get("/health");
    let setup = &health["checks"]["setup"];
    assert_eq!(setup["status"], "degraded", "{health}");
    let detail = setup["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("403") && detail.contains("security_exception"),
        "{detail}"
    );
    assert_eq!(agent.metric("logferry_setup_complete"), 0);
    let logs = agent.logs();
    assert_eq!(
        logs.matches("cannot install index templates").count(),
        1,
        "logged once: {logs}"
    );
    // Once allowed, the retry installs them, and health is back.
    proxy.set(|f| f.refuse_paths.clear());
    wait_until(30, "setup to succeed on a retry", || {
        agent.metric("logferry_setup_complete") == 1
    });
    assert!(template(&es, "logferry-audit").is_some());
    assert_eq!(agent.get("/health")["checks"]["setup"]["status"], "healthy");
    assert!(agent.stop().success());
}
