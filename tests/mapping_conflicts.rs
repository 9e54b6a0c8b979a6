//! A document Elasticsearch refuses for its mapping still lands where engineers look (issue
//! 25): in a shared daily index, one app's `"status":200` and another's `"status":"OK"` (kept
//! by the template's `ignore_malformed`), `app` as a string and then as an object or through a
//! dotted key, a line with more keys than the field limit — each is indexed, the refused ones
//! salvaged with the message as a string in `log` and `logferry.mapping_conflict` saying
//! which field and why, under the same id. Nothing reaches the dead letters.

mod support;

use serde_json::{Value, json};
use support::*;

fn doc_with(docs: &[Value], seq: u64) -> Value {
    let needle = format!("\"seq\":{seq}");
    docs.iter()
        .find(|d| d["seq"] == seq || d["log"].as_str().is_some_and(|l| l.contains(&needle)))
        .cloned()
        .unwrap_or_else(|| panic!("no document {seq}: {docs:?}"))
}

fn wide_line(seq: u64) -> String {
    let mut wide = serde_json::Map::new();
    for k in 0..1100 {
        wide.insert(format!("k{k}"), json!(k));
    }
    wide.insert("seq".into(), json!(seq));
    Value::Object(wide).to_string()
}

/// An index without the agent's template (setup off, or an operator's own index): every
/// conflict is refused by the cluster, and salvaged.
#[test]
fn documents_refused_for_their_mapping_are_indexed_salvaged_and_none_is_a_dead_letter() {
    let es = osmem();
    let node = Node::new();
    // One pod's lines, so they share one day's index (each writer's clock starts elsewhere);
    // on a node these are many apps writing to the same daily index.
    let mut web = node.writer("shop", "web-1", "app", Format::Cri);
    let agent =
        Agent::start(&node.config_with(&es.url, "[elasticsearch.setup]\nenabled = false\n"));
    // The first document of the day's index sets `status` as a number and `app` as text.
    web.line(&json!({"status": 200, "app": "billing", "seq": 0}).to_string())
        .unwrap();
    wait_until(30, "the first document", || docs(&es).len() == 1);
    web.line(&json!({"status": "OK", "seq": 1}).to_string())
        .unwrap();
    web.line(&json!({"app": {"kubernetes.io/name": "web"}, "seq": 2}).to_string())
        .unwrap();
    web.line(&json!({"app.kubernetes.io/name": "web", "seq": 3}).to_string())
        .unwrap();
    web.line(&wide_line(4)).unwrap();
    wait_until(30, "every document", || docs(&es).len() == 5);
    let docs: Vec<Value> = docs(&es).into_iter().map(|(_, d)| d).collect();
    for (seq, field) in [
        (1, json!("status")),
        (2, json!("app")),
        (3, json!("app.kubernetes.io/name")),
        (4, Value::Null),
    ] {
        let d = doc_with(&docs, seq);
        let conflict = &d["logferry"]["mapping_conflict"];
        assert_eq!(conflict["field"], field, "{d}");
        assert!(
            conflict["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("mapper_parsing_exception")
                    || r.starts_with("illegal_argument_exception")),
            "{d}"
        );
        // The message whole, as a string; the pod's fields as they were.
        let message: Value = serde_json::from_str(d["log"].as_str().expect("log")).expect("JSON");
        assert_eq!(message["seq"], seq, "{d}");
        assert_eq!(d["kubernetes"]["pod_name"], "web-1");
        assert!(
            d.get("app").is_none() && d.get("k0").is_none() && d.get("status").is_none(),
            "{d}"
        );
    }
    assert_eq!(
        agent.metric("logferry_mapping_conflicts_total{outcome=\"salvaged\"}"),
        4
    );
    assert_eq!(
        agent.metric("logferry_mapping_conflicts_total{outcome=\"dead_lettered\"}"),
        0
    );
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"dead_lettered\"}"),
        0
    );
    // Under the id it was first sent with: a replay is a 409, not a second copy.
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"indexed\"}"),
        5
    );
    assert!(agent.stop().success());
}

/// With the agent's template, a value of the wrong type is only left out of that field's
/// index (`ignore_malformed`): the document is indexed as it is, nothing to salvage.
#[test]
fn with_the_agents_template_one_value_of_the_wrong_type_keeps_its_document_whole() {
    let es = osmem();
    let node = Node::new();
    let mut web = node.writer("shop", "web-1", "app", Format::Cri);
    let agent = Agent::start(&node.config(&es.url, "", ""));
    wait_until(30, "the template", || {
        agent.metric("logferry_setup_complete") == 1
    });
    web.line(&json!({"status": 200, "seq": 0}).to_string())
        .unwrap();
    wait_until(30, "the first document", || docs(&es).len() == 1);
    web.line(&json!({"status": "OK", "seq": 1}).to_string())
        .unwrap();
    web.line(&wide_line(2)).unwrap();
    wait_until(30, "every document", || docs(&es).len() == 3);
    let docs: Vec<Value> = docs(&es).into_iter().map(|(_, d)| d).collect();
    let ok = doc_with(&docs, 1);
    assert_eq!(ok["status"], "OK", "{ok}");
    assert!(ok.get("logferry").is_none(), "{ok}");
    // Past the field limit: salvaged (this cluster knows no ignore_dynamic_beyond_limit).
    let wide = doc_with(&docs, 2);
    assert!(wide["logferry"]["mapping_conflict"].is_object(), "{wide}");
    assert_eq!(
        agent.metric("logferry_mapping_conflicts_total{outcome=\"salvaged\"}"),
        1
    );
    assert!(agent.stop().success());
}
