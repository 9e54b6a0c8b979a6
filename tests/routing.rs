//! Routing against a real OpenSearch-compatible server: records reach the index of the first
//! route that takes them — by namespace, pod label or a field of the document — the rest reach
//! the default index, a drop route's are counted and never sent, and a replay after SIGKILL
//! lands each record once, in the index it was routed to the first time.

mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;
use support::kubeapi::{FakeApi, pod};
use support::*;

const ROUTES: &str = r#"
[[route]]
name = "audit"
index = "audit-%Y.%m"
[route.when]
namespaces = ["payments", "auth-*"]
labels = { "logging.klear.io/class" = "audit" }
[[route]]
name = "audit-events"
index = "audit-%Y.%m"
when.field = { path = "log_type", equals = "audit" }
[[route]]
name = "probes"
drop = true
when.field = { path = "http.path", matches = '^/healthz' }
[[route]]
name = "payments"
index = "payments-%Y"
when.namespaces = ["payments"]
"#;

/// (pod, seq) of every document in indices matching `pattern`, with how often each is there.
fn seqs_in(es: &Osmem, pattern: &str) -> HashMap<(String, u64), usize> {
    seq_counts(&es.all_documents(pattern).expect("search"))
}

fn wait_for(es: &Osmem, pattern: &str, n: u64) -> u64 {
    wait_until(60, &format!("{n} documents in {pattern}"), || {
        es.count(pattern).unwrap_or(0) >= n
    });
    std::thread::sleep(Duration::from_millis(700));
    es.count(pattern).unwrap_or(0)
}

fn audit_pod(namespace: &str, name: &str) -> Value {
    let mut p = pod(namespace, name, "node-a", json!({}));
    p["metadata"]["labels"]["logging.klear.io/class"] = "audit".into();
    p
}

#[test]
fn records_reach_the_first_route_that_takes_them_by_namespace_label_and_field() {
    let es = osmem();
    let api = FakeApi::start();
    api.put_pod(audit_pod("payments", "ledger-1"));
    api.put_pod(pod("payments", "checkout-1", "node-a", json!({})));
    // The audit label in another namespace is not the audit route's (both conditions must hold).
    api.put_pod(audit_pod("web", "frontend-1"));
    let node = Node::new();
    let mut ledger = node.writer("payments", "ledger-1", "app", Format::Cri);
    let mut checkout = node.writer("payments", "checkout-1", "app", Format::Cri);
    let mut frontend = node.writer("web", "frontend-1", "app", Format::Cri);
    for seq in 0..20 {
        ledger.json_line(seq).unwrap();
        checkout.json_line(seq).unwrap();
        frontend.json_line(seq).unwrap();
    }
    for seq in 100..105 {
        // An audit event from a payments pod: audit-events comes before payments.
        checkout
            .line(&json!({"log_type": "audit", "action": "refund", "seq": seq}).to_string())
            .unwrap();
        frontend
            .line(&json!({"http": {"path": "/healthz", "status": 200}, "seq": seq}).to_string())
            .unwrap();
    }
    let config = node.config_with(
        &es.url,
        &format!(
            "[kubernetes]\nenabled = true\nnode_name = \"node-a\"\napi_server = {:?}\n{ROUTES}",
            api.url
        ),
    );
    let agent = Agent::start(&config);
    assert_eq!(wait_for(&es, "audit-*", 25), 25);
    assert_eq!(wait_for(&es, "payments-*", 20), 20);
    assert_eq!(wait_for(&es, "logs-*", 20), 20);
    let audit = seqs_in(&es, "audit-*");
    let want: HashSet<(String, u64)> = (0..20)
        .map(|s| ("ledger-1".to_owned(), s))
        .chain((100..105).map(|s| ("checkout-1".to_owned(), s)))
        .collect();
    assert_eq!(audit.keys().cloned().collect::<HashSet<_>>(), want);
    assert!(audit.values().all(|n| *n == 1), "{audit:?}");
    assert!(
        seqs_in(&es, "payments-*")
            .keys()
            .all(|(p, s)| p == "checkout-1" && *s < 20)
    );
    let default = seqs_in(&es, "logs-*");
    assert!(
        default.keys().all(|(p, s)| p == "frontend-1" && *s < 20),
        "{default:?}"
    );
    // Named from the records' own time.
    let docs = es.all_documents("audit-*").unwrap();
    let time = docs[0].1["@timestamp"].as_str().unwrap();
    let month = time[..7].replace('-', ".");
    assert_eq!(es.count(&format!("audit-{month}")).unwrap(), 25, "{time}");
    for (route, n) in [
        ("audit", 20),
        ("audit-events", 5),
        ("probes", 5),
        ("payments", 20),
        ("default", 20),
    ] {
        assert_eq!(
            agent.metric(&format!(
                "logferry_route_records_total{{route=\"{route}\"}}"
            )),
            n,
            "{route}"
        );
    }
    assert_eq!(
        agent.metric("logferry_route_dropped_total{route=\"probes\"}"),
        5
    );
    assert_eq!(
        agent.metric("logferry_route_dropped_total{route=\"audit\"}"),
        0
    );
    assert!(agent.stop().success());
}

/// Audit lines (every third) and app lines from two pods, written while the agent is killed.
fn config_without_kubernetes(node: &Node, es: &str) -> PathBuf {
    node.config_with(
        es,
        "[[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\n\
         when.field = { path = \"log_type\", equals = \"audit\" }\n\
         [[route]]\nname = \"billing\"\nindex = \"billing-%Y\"\nwhen.namespaces = [\"billing\"]\n",
    )
}

#[test]
fn a_replay_after_sigkill_lands_each_record_once_in_the_index_it_was_routed_to() {
    use std::hash::{BuildHasher, RandomState};
    let es = osmem();
    let node = Node::new();
    let config = config_without_kubernetes(&node, &es.url);
    let mut shop = node.writer("shop", "orders-1", "app", Format::Cri);
    let mut billing = node.writer("billing", "invoices-1", "app", Format::Cri);
    let writer = std::thread::spawn(move || {
        for seq in 0..3000u64 {
            let w = if seq % 2 == 0 {
                &mut shop
            } else {
                &mut billing
            };
            let kind = if seq % 3 == 0 { "audit" } else { "app" };
            w.line(&json!({"log_type": kind, "seq": seq}).to_string())
                .unwrap();
            if seq % 100 == 99 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let random = RandomState::new();
    for round in 0..6u64 {
        let agent = Agent::start(&config);
        std::thread::sleep(Duration::from_millis(150 + random.hash_one(round) % 700));
        // Nothing the buffer held is read again (and routed a second time) at a restart.
        assert_eq!(
            agent.metric("logferry_reread_bytes_total"),
            0,
            "life {round}"
        );
        agent.kill();
    }
    writer.join().unwrap();
    let agent = Agent::start(&config);
    let (audit, billing_n) = (1000, 3000 / 2 - 1500 / 3);
    assert_eq!(wait_for(&es, "audit-*", audit), audit, "audit");
    assert_eq!(wait_for(&es, "billing-*", billing_n), billing_n, "billing");
    assert_eq!(
        wait_for(&es, "logs-*", 3000 - audit - billing_n),
        3000 - audit - billing_n
    );
    // Every third line is audit; of the rest, odd ones are billing's, even ones the shop's.
    let index_of = |seq: u64| match (seq % 3, seq % 2) {
        (0, _) => "audit-*",
        (_, 1) => "billing-*",
        _ => "logs-*",
    };
    for pattern in ["audit-*", "billing-*", "logs-*"] {
        for ((pod, seq), n) in seqs_in(&es, pattern) {
            assert_eq!(n, 1, "{pod} {seq} in {pattern} {n} times");
            assert_eq!(index_of(seq), pattern, "{pod} {seq}");
        }
    }
    assert_eq!(agent.metric("logferry_reread_bytes_total"), 0);
    assert!(agent.stop().success());
}
