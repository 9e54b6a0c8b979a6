//! What the cluster can do wrong, injected by a proxy in front of a real osmem-server, and what
//! the agent must make of it: every line indexed exactly once, whatever happened on the way.

mod support;

use std::time::Duration;
use support::proxy::FaultProxy;
use support::*;

#[test]
fn items_refused_with_429_are_retried_alone_and_arrive_once() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.reject_items = 0.5);
    let node = Node::new();
    let expected = node.json_lines("busy", 600);
    let agent = Agent::start(&node.config(&proxy.url, "", "chunk_limit_size = \"16KiB\""));
    wait_until(30, "items to be refused", || {
        proxy.seen().rejected_items > 200
    });
    proxy.set(|f| f.reject_items = 0.0);
    assert_exactly_once(&es, &expected);
    let seen = proxy.seen();
    // Only refused items are sent again: every item arrived once, plus once per refusal.
    assert_eq!(seen.items, 600 + seen.rejected_items, "{seen:?}");
    // And the agent counts each of them: one retry per refused item, not per request.
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"retried\"}"),
        seen.rejected_items,
        "{seen:?}"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_request_too_large_for_the_cluster_is_split() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.max_body = Some(20 * 1024));
    let node = Node::new();
    let expected = node.json_lines("wide", 500);
    let agent = Agent::start(&node.config(&proxy.url, "", "chunk_limit_size = \"256KiB\""));
    assert_exactly_once(&es, &expected);
    assert!(
        proxy.seen().too_large > 0,
        "the proxy must have refused large bodies"
    );
    assert!(agent.stop().success());
}

#[test]
fn unavailable_and_unauthorized_clusters_pause_shipping_and_lose_nothing() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.status = Some(503));
    let node = Node::new();
    let mut expected = node.json_lines("patient-a", 100);
    let agent = Agent::start(&node.config(&proxy.url, "", ""));
    wait_until(20, "503s to be retried", || proxy.seen().requests >= 2);
    assert_eq!(es.count("logs-*").unwrap(), 0);
    // A refusal of the request as a whole (a wrong URL, a proxy): paused, not dead-lettered.
    proxy.set(|f| f.status = Some(404));
    wait_until(20, "health to name the 404", || {
        agent.get("/health")["checks"]["elasticsearch"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("404"))
    });
    // Credentials refused: shipping stops, says why, keeps everything.
    proxy.set(|f| f.status = Some(401));
    wait_until(20, "health to name the 401", || {
        agent.get("/health")["checks"]["elasticsearch"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("401"))
    });
    assert_eq!(agent.get("/health")["status"], "degraded");
    expected.extend(node.json_lines("patient-b", 100));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(es.count("logs-*").unwrap(), 0);
    proxy.set(|f| f.status = None);
    assert_exactly_once(&es, &expected);
    wait_until(10, "health to recover", || {
        agent.get("/health")["status"] == "healthy"
    });
    assert!(
        agent
            .logs()
            .contains("Elasticsearch refused the credentials")
    );
    assert!(agent.stop().success());
}

/// A document refused for its mapping is sent again salvaged (`tests/mapping_conflicts.rs`);
/// here the index maps `log` as a number too, so the salvaged copy is refused again: that one
/// goes to the dead letters, and nothing else does.
#[test]
fn a_mapping_conflict_refused_again_when_salvaged_goes_to_the_dead_letter_file_and_index_and_the_rest_is_indexed()
 {
    let es = osmem();
    let node = Node::new();
    // An operator's template, and no setup of the agent's: `amount` and `log` are numbers.
    let template = serde_json::json!({
        "index_patterns": ["logs-*"],
        "template": {"mappings": {"properties": {
            "amount": {"type": "long"}, "log": {"type": "long"}
        }}}
    });
    http_json(
        "PUT",
        &format!("{}/_index_template/strict-amounts", es.url),
        Some(&template),
    )
    .unwrap();
    let mut w = node.writer("shop", "typed", "app", Format::Cri);
    w.line(r#"{"amount":5,"seq":0}"#).unwrap();
    let config = node.config(&es.url, "", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[elasticsearch]\n",
        "[elasticsearch]\ndead_letter_index = \"logferry-dead-letters\"\n",
    ) + "[elasticsearch.setup]\nenabled = false\n";
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&config);
    wait_for_count(&es, 1, 20);
    // Same field, now an object: the index's mapping says long.
    w.line(r#"{"amount":{"value":5,"currency":"EUR"},"seq":1}"#)
        .unwrap();
    for seq in 2..12 {
        w.json_line(seq).unwrap();
    }
    let count = wait_for_count(&es, 11, 30);
    assert_eq!(count, 11, "everything but the conflicting line");
    let dead = node.data().join("dead-letter/dead-letter.ndjson");
    wait_until(10, "the dead-letter file", || dead.exists());
    let text = std::fs::read_to_string(&dead).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{text}");
    assert_eq!(entries[0]["status"], 400);
    assert_eq!(entries[0]["reason"], "mapper_parsing_exception");
    // What was refused the second time: the salvaged copy, the message whole in `log`, and
    // why the first was refused.
    let salvaged = &entries[0]["document"];
    let message: serde_json::Value =
        serde_json::from_str(salvaged["log"].as_str().expect("log")).expect("the message");
    assert_eq!(message["seq"], 1);
    assert_eq!(message["amount"]["currency"], "EUR");
    assert_eq!(salvaged["logferry"]["mapping_conflict"]["field"], "amount");
    assert!(entries[0]["action"]["create"]["_id"].is_string());
    assert_eq!(
        agent.metric("logferry_dead_letters_total{reason=\"mapper_parsing_exception\"}"),
        1
    );
    assert_eq!(
        agent.metric("logferry_mapping_conflicts_total{outcome=\"dead_lettered\"}"),
        1
    );
    // The searchable copy: the agent's own fields as they were, the application's as a string.
    wait_until(20, "the dead-letter index", || {
        es.count("logferry-dead-letters").unwrap_or(0) == 1
    });
    let copies = es.all_documents("logferry-dead-letters").unwrap();
    let (id, copy) = &copies[0];
    assert_eq!(id, entries[0]["action"]["create"]["_id"].as_str().unwrap());
    assert_eq!(copy["kubernetes"]["pod_name"], "typed");
    assert_eq!(copy["dead_letter"]["reason"], "mapper_parsing_exception");
    assert_eq!(copy["dead_letter"]["status"], 400);
    let original = copy["dead_letter"]["document"].as_str().unwrap();
    assert!(original.contains("EUR"), "{copy}");
    assert!(
        copy.get("amount").is_none(),
        "the conflicting field is not indexed again"
    );
    assert!(agent.stop().success());
}

#[test]
fn retry_timeout_dead_letters_what_the_cluster_kept_refusing_but_never_what_credentials_hold() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    let node = Node::new();
    let config = node.config(
        &proxy.url,
        "",
        "retry_forever = false\nretry_timeout = \"1s\"",
    );
    // Credentials refused for longer than retry_timeout: everything waits.
    proxy.set(|f| f.status = Some(401));
    let expected = node.json_lines("held", 50);
    let agent = Agent::start(&config);
    wait_until(20, "the 401 to be seen", || proxy.seen().requests >= 2);
    std::thread::sleep(Duration::from_millis(2500));
    let dead = node.data().join("dead-letter/dead-letter.ndjson");
    assert!(!dead.exists(), "a 401 never makes dead letters");
    proxy.set(|f| f.status = None);
    assert_exactly_once(&es, &expected);

    // A cluster that keeps answering 503: after retry_timeout the items are dead-lettered.
    proxy.set(|f| f.status = Some(503));
    node.json_lines("refused", 5);
    wait_until(30, "the dead letters", || dead.exists());
    let text = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("\"reason\":\"retry_timeout\""))
    );
    assert_eq!(
        agent.metric("logferry_dead_letters_total{reason=\"retry_timeout\"}"),
        5
    );
    assert!(agent.stop().success());
}
