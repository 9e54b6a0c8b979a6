//! Pod metadata from a fake Kubernetes API server speaking the real wire format (list, watch,
//! resourceVersion, bookmarks, 410 Gone), fed with real pod JSON, into real documents.

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use support::kubeapi::{FakeApi, pod};
use support::*;

fn config(node: &Node, es: &str, api: &FakeApi) -> PathBuf {
    config_extra(node, es, api, "")
}

/// [`config`] with more `[kubernetes]` keys.
fn config_extra(node: &Node, es: &str, api: &FakeApi, extra: &str) -> PathBuf {
    node.config_with(
        es,
        &format!(
            "[kubernetes]\nenabled = true\nnode_name = \"node-a\"\napi_server = {:?}\nannotations = [\"prometheus.io/*\"]\n{extra}\n",
            api.url
        ),
    )
}

#[test]
fn documents_carry_labels_namespace_labels_and_owner_even_after_the_pod_is_deleted() {
    let es = osmem();
    let api = FakeApi::start();
    api.put_namespace("shop", json!({"team": "payments"}));
    api.put_pod(pod("shop", "orders-api-1", "node-a", json!({})));
    api.put_pod(pod(
        "shop",
        "noisy-1",
        "node-a",
        json!({"logferry.io/exclude": "true"}),
    ));
    api.put_pod(pod(
        "shop",
        "raw-1",
        "node-a",
        json!({"logferry.io/parser": "none"}),
    ));
    // Another node's pod is not this agent's business.
    api.put_pod(pod("shop", "elsewhere-1", "node-b", json!({})));
    let node = Node::new();
    let mut orders = node.writer("shop", "orders-api-1", "api", Format::Cri);
    let mut noisy = node.writer("shop", "noisy-1", "api", Format::Cri);
    let mut raw = node.writer("shop", "raw-1", "api", Format::Cri);
    for seq in 0..20 {
        orders.json_line(seq).unwrap();
        noisy.json_line(seq).unwrap();
        raw.json_line(seq).unwrap();
    }
    let agent = Agent::start(&config_extra(
        &node,
        &es.url,
        &api,
        "honour_exclude_annotation = true\nwait_for_metadata = \"10s\"",
    ));
    assert_eq!(
        wait_for_count(&es, 40, 30),
        40,
        "the excluded pod's lines are dropped"
    );
    let d = &docs_of(&es, "orders-api-1")[0];
    let k = &d["kubernetes"];
    assert_eq!(k["labels"]["app"], "orders-api", "{d}");
    assert_eq!(
        k["labels"]["app_kubernetes_io/name"], "orders-api",
        "de_dot: {d}"
    );
    assert_eq!(k["namespace_labels"]["team"], "payments", "{d}");
    assert_eq!(
        k["owner"],
        json!({"kind": "ReplicaSet", "name": "orders-api-7d9f8b6c5"})
    );
    assert_eq!(k["annotations"]["prometheus_io/scrape"], "true");
    assert_eq!(k["pod_ip"], "10.244.3.41");
    assert_eq!(k["host"], "node-a");
    assert_eq!(
        k["container_image"],
        "registry.example.com/shop/orders-api:1.42.0"
    );
    assert!(k.get("metadata").is_none(), "not partial: {d}");
    assert_eq!(d["seq"].as_u64().map(|_| ()), Some(()), "JSON parsed");
    let r = &docs_of(&es, "raw-1")[0];
    assert!(
        r.get("seq").is_none(),
        "parser none keeps the message whole: {r}"
    );
    assert!(r["log"].as_str().unwrap().contains("\"seq\""));
    assert_eq!(
        agent.metric("logferry_kubernetes_excluded_records_total"),
        20
    );
    assert_eq!(agent.metric("logferry_kubernetes_pods_cached"), 3);

    // Relabelled (MODIFIED): later lines say so.
    let mut relabelled = pod("shop", "orders-api-1", "node-a", json!({}));
    relabelled["metadata"]["labels"]["version"] = "v2".into();
    api.put_pod(relabelled);
    // The watch delivers it in milliseconds.
    std::thread::sleep(std::time::Duration::from_millis(500));
    orders.json_line(1000).unwrap();
    assert_eq!(wait_for_count(&es, 41, 30), 41);
    let v2: Vec<Value> = docs_of(&es, "orders-api-1")
        .into_iter()
        .filter(|d| d["seq"] == 1000)
        .collect();
    assert_eq!(v2[0]["kubernetes"]["labels"]["version"], "v2", "{:?}", v2);

    // The pod goes; its last lines, read after, still get its metadata.
    api.delete_pod("shop", "orders-api-1");
    // The deletion seen first: the watch delivers events in order, so once a pod put after it
    // is known (its line gets its metadata, waiting for it as long as `wait_for_metadata`
    // allows), the deletion was taken in before. That change also makes every open file look
    // its pod up again: a deletion alone does not, and the late lines would carry what their
    // file looked up before, whatever the cache did with the deleted pod.
    api.put_pod(pod("shop", "after-1", "node-a", json!({})));
    let mut after = node.writer("shop", "after-1", "api", Format::Cri);
    after.json_line(0).unwrap();
    assert_eq!(wait_for_count(&es, 42, 30), 42);
    let a = &docs_of(&es, "after-1")[0];
    assert!(
        a["kubernetes"].get("metadata").is_none()
            && a["kubernetes"]["labels"]["app"] == "orders-api",
        "the pod put after the deletion is known: {a}"
    );
    for seq in 20..30 {
        orders.json_line(seq).unwrap();
    }
    assert_eq!(wait_for_count(&es, 52, 30), 52);
    let late: Vec<Value> = docs_of(&es, "orders-api-1")
        .into_iter()
        .filter(|d| (20..30).contains(&d["seq"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(late.len(), 10);
    assert!(
        late.iter()
            .all(|d| d["kubernetes"]["labels"]["app"] == "orders-api"
                && d["kubernetes"]["labels"]["version"] == "v2"
                && d["kubernetes"].get("metadata").is_none()),
        "the deleted pod's late lines carry its last metadata: {late:?}"
    );
    assert_eq!(
        agent.metric("logferry_kubernetes_pods_cached"),
        4,
        "the deleted pod is kept for deleted_pod_ttl"
    );
    assert_eq!(
        agent.get("/health")["checks"]["kubernetes"]["status"],
        "healthy"
    );
    assert!(agent.stop().success());
}

/// Issue 12, item 13: on a platform whose logs are evidence, a pod annotated
/// `logferry.io/exclude: "true"` used to switch its own logging off.
#[test]
fn a_pod_cannot_switch_its_own_logging_off_unless_the_operator_allows_it() {
    let es = osmem();
    let api = FakeApi::start();
    api.put_namespace("shop", json!({}));
    api.put_pod(pod(
        "shop",
        "quiet-1",
        "node-a",
        json!({"logferry.io/exclude": "true"}),
    ));
    api.put_pod(pod("shop", "plain-1", "node-a", json!({})));
    let node = Node::new();
    let mut quiet = node.writer("shop", "quiet-1", "api", Format::Cri);
    let mut plain = node.writer("shop", "plain-1", "api", Format::Cri);
    for seq in 0..25 {
        quiet.json_line(seq).unwrap();
        plain.json_line(seq).unwrap();
    }
    let agent = Agent::start(&config(&node, &es.url, &api));
    assert_eq!(wait_for_count(&es, 50, 30), 50, "every line is shipped");
    let shipped = docs_of(&es, "quiet-1");
    assert_eq!(shipped.len(), 25);
    assert!(
        shipped
            .iter()
            .all(|d| d["kubernetes"].get("metadata").is_none()),
        "with its metadata: {shipped:?}"
    );
    assert_eq!(
        agent.metric("logferry_kubernetes_excluded_records_total"),
        0
    );
    assert_eq!(
        agent.metric("logferry_kubernetes_exclude_ignored_pods_total"),
        1
    );
    // An update of the pod (a relabel) is not news: said once per pod.
    let mut relabelled = pod(
        "shop",
        "quiet-1",
        "node-a",
        json!({"logferry.io/exclude": "true"}),
    );
    relabelled["metadata"]["labels"]["version"] = "v2".into();
    api.put_pod(relabelled);
    for seq in 25..30 {
        quiet.json_line(seq).unwrap();
    }
    assert_eq!(wait_for_count(&es, 55, 30), 55);
    assert_eq!(
        agent.metric("logferry_kubernetes_exclude_ignored_pods_total"),
        1
    );
    let logs = agent.logs();
    assert_eq!(
        logs.matches("honour_exclude_annotation is false").count(),
        1,
        "{logs}"
    );
    assert!(agent.stop().success());

    // The operator opts in: the same pod's new lines are dropped, and counted.
    let es = osmem();
    let node = Node::new();
    let mut quiet = node.writer("shop", "quiet-1", "api", Format::Cri);
    let mut plain = node.writer("shop", "plain-1", "api", Format::Cri);
    for seq in 0..25 {
        quiet.json_line(seq).unwrap();
        plain.json_line(seq).unwrap();
    }
    let agent = Agent::start(&config_extra(
        &node,
        &es.url,
        &api,
        "honour_exclude_annotation = true",
    ));
    assert_eq!(wait_for_count(&es, 25, 30), 25);
    assert!(docs_of(&es, "quiet-1").is_empty());
    wait_until(10, "the dropped lines to be counted", || {
        agent.metric("logferry_kubernetes_excluded_records_total") == 25
    });
    assert_eq!(
        agent.metric("logferry_kubernetes_exclude_ignored_pods_total"),
        0
    );
    assert!(agent.stop().success());
}

#[test]
fn an_unreachable_api_flags_lines_partial_and_enrichment_returns_after_a_relist() {
    let es = osmem();
    let api = FakeApi::start();
    api.put_namespace("shop", json!({"team": "payments"}));
    api.put_pod(pod("shop", "early-1", "node-a", json!({})));
    api.refuse(Some(403));
    let node = Node::new();
    let mut early = node.writer("shop", "early-1", "api", Format::Cri);
    for seq in 0..10 {
        early.json_line(seq).unwrap();
    }
    let agent = Agent::start(&config(&node, &es.url, &api));
    assert_eq!(
        wait_for_count(&es, 10, 30),
        10,
        "lines flow without the API"
    );
    let d = &docs_of(&es, "early-1")[0];
    assert_eq!(d["kubernetes"]["metadata"], "partial", "{d}");
    assert_eq!(
        d["kubernetes"]["namespace_name"], "shop",
        "what the path says"
    );
    assert!(agent.metric("logferry_kubernetes_records_without_metadata_total") >= 10);
    let seen = std::cell::RefCell::new(Value::Null);
    let ok = (0..100).any(|_| {
        *seen.borrow_mut() = agent.get("/health");
        std::thread::sleep(std::time::Duration::from_millis(200));
        seen.borrow()["checks"]["kubernetes"]["status"] == "degraded"
    });
    assert!(ok, "{}\n{}", seen.borrow(), agent.logs());
    assert!(agent.metric("logferry_kubernetes_watch_errors_total") >= 1);

    // The API comes back: the watchers recover by themselves.
    api.refuse(None);
    wait_until(30, "the cache to fill", || {
        agent.metric("logferry_kubernetes_pods_cached") == 1
    });
    for seq in 10..20 {
        early.json_line(seq).unwrap();
    }
    assert_eq!(wait_for_count(&es, 20, 30), 20);
    let again: Vec<Value> = docs_of(&es, "early-1")
        .into_iter()
        .filter(|d| d["seq"].as_u64() >= Some(10))
        .collect();
    assert!(
        again
            .iter()
            .all(|d| d["kubernetes"]["labels"]["app"] == "orders-api"
                && d["kubernetes"].get("metadata").is_none()),
        "{again:?}"
    );

    // History expires (410 Gone): the watcher lists again, and a pod added meanwhile is known.
    let lists = api.pod_lists();
    api.expire();
    api.put_pod(pod("shop", "late-1", "node-a", json!({})));
    let relisted = (0..150).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        api.pod_lists() > lists
    });
    assert!(relisted, "no re-list:\n{}", agent.logs());
    let mut late = node.writer("shop", "late-1", "api", Format::Cri);
    late.json_line(0).unwrap();
    assert_eq!(wait_for_count(&es, 21, 30), 21);
    let d = &docs_of(&es, "late-1")[0];
    assert_eq!(d["kubernetes"]["labels"]["app"], "orders-api", "{d}");
    // Each watcher recovers on its own backoff.
    wait_until(60, "health to recover", || {
        agent.get("/health")["checks"]["kubernetes"]["status"] == "healthy"
    });
    assert!(agent.stop().success());
}
