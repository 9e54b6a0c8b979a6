//! Answers a cluster, or something in front of it, should not give: a `Retry-After` of 584
//! billion years, a 2xx that is not a bulk response, one cut short, too large, with too few or
//! too many items or an item without a status, and item-level refusals that say the cluster's
//! setup is wrong. Each through the fault proxy in front of a real osmem-server; each must end
//! with every line indexed exactly once, nothing dead-lettered that the cluster did not refuse,
//! and `/health` and the metrics saying what came back meanwhile.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::proxy::{BulkAnswer, FaultProxy};
use support::*;

/// `retry_forever = false` with a 1 s `retry_timeout`: whatever is dead-lettered here is so
/// because the agent gave up on it, which none of these answers may cause.
const GIVE_UP_FAST: &str = "retry_forever = false\nretry_timeout = \"1s\"";

fn es_detail(agent: &Agent) -> String {
    agent.get("/health")["checks"]["elasticsearch"]["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Waits until the agent has been answered wrongly for longer than `retry_timeout`, and
/// `/health` names what came back.
fn wait_out_the_fault(agent: &Agent, proxy: &FaultProxy, says: &str) {
    let since = Instant::now();
    let requests = proxy.seen().requests;
    wait_until(60, &format!("/health to say {says:?}"), || {
        es_detail(agent).contains(says)
    });
    wait_until(60, "retries past retry_timeout", || {
        proxy.seen().requests >= requests + 3 && since.elapsed() > Duration::from_millis(1500)
    });
    let health = agent.get("/health");
    assert_eq!(health["status"], "degraded", "{health}");
}

#[test]
fn a_huge_retry_after_does_not_stop_shipping() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| {
        f.status = Some(429);
        f.headers = vec![("Retry-After".into(), "18446744073709551615".into())];
    });
    let node = Node::new();
    let expected = node.json_lines("patient-a", 50);
    let agent = Agent::start(&node.config(&proxy.url, "", ""));
    // Three such answers stopped every shipper for good; the cap (retry_max_interval, 500 ms
    // here) keeps the agent asking.
    wait_until(60, "the agent to keep retrying", || {
        proxy.seen().requests >= 10
    });
    // The HTTP-date form, as far away as it can be written: capped the same way.
    proxy.set(|f| f.headers = vec![("Retry-After".into(), "Fri, 31 Dec 9999 23:59:59 GMT".into())]);
    let before = proxy.seen().requests;
    wait_until(60, "the agent to keep retrying after a date", || {
        proxy.seen().requests >= before + 5
    });
    assert!(
        es_detail(&agent).contains("HTTP 429"),
        "{}",
        es_detail(&agent)
    );
    proxy.set(|f| {
        f.status = None;
        f.headers.clear();
    });
    assert_exactly_once(&es, &expected);
    let logs = agent.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert_eq!(agent.metric("logferry_shipper_restarts_total"), 0);
    assert!(agent.stop().success());
}

#[test]
fn a_bulk_answer_claiming_more_items_than_were_sent_is_not_believed() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    // Passes half of each request on and answers "created" for all of them and one more:
    // believed, half of the lines would be counted and never reach the index.
    proxy.set(|f| f.bulk_answer = Some(BulkAnswer::More));
    let node = Node::new();
    let expected = node.json_lines("patient-a", 400);
    let config = node.config(
        &proxy.url,
        "",
        &format!("{GIVE_UP_FAST}\nchunk_limit_size = \"16KiB\""),
    );
    let agent = Agent::start(&config);
    wait_out_the_fault(&agent, &proxy, "items for");
    assert!(agent.metric("logferry_bulk_invalid_responses_total{reason=\"item_count\"}") >= 1);
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"indexed\"}"),
        0,
        "nothing in an answer that does not add up counts"
    );
    assert!(
        es.count("logs-*").unwrap_or(0) > 0,
        "the proxy passed some on"
    );
    proxy.set(|f| f.bulk_answer = None);
    assert_exactly_once(&es, &expected);
    // What reached the index before is a duplicate now: every line counted once, as what it is.
    let indexed = agent.metric("logferry_documents_total{outcome=\"indexed\"}");
    let duplicate = agent.metric("logferry_documents_total{outcome=\"duplicate\"}");
    assert_eq!(
        indexed + duplicate,
        400,
        "indexed {indexed} + duplicate {duplicate}"
    );
    assert!(duplicate > 0);
    assert!(!node.data().join("dead-letter/dead-letter.ndjson").exists());
    assert!(agent.stop().success());
}

#[test]
fn every_untrustworthy_bulk_answer_is_retried_whole_and_named() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    let node = Node::new();
    let agent = Agent::start(&node.config(&proxy.url, "", GIVE_UP_FAST));
    let huge = format!("{{\"items\":[{}]}}", "\"x\",".repeat(3 << 20));
    let cases = [
        (
            BulkAnswer::Verbatim(200, "<html>the gateway says hello</html>".into()),
            "unreadable",
            "<html>the gateway says hello</html>",
        ),
        (BulkAnswer::Fewer, "item_count", "has 1 items for"),
        (
            BulkAnswer::WithoutStatus,
            "item_without_status",
            "has no status",
        ),
        (BulkAnswer::CutShort, "truncated", "cut short"),
        (
            BulkAnswer::Verbatim(200, huge),
            "too_large",
            "over 8388608 bytes",
        ),
    ];
    let mut expected = HashSet::new();
    for (answer, reason, says) in cases {
        proxy.set(|f| f.bulk_answer = Some(answer));
        // Pod names have no `_`: it separates the parts of a log file's name.
        let pod = format!("patient-{}", reason.replace('_', "-"));
        expected.extend(node.json_lines(&pod, 20));
        wait_out_the_fault(&agent, &proxy, says);
        let series = format!("logferry_bulk_invalid_responses_total{{reason=\"{reason}\"}}");
        assert!(agent.metric(&series) >= 1, "{series}");
        proxy.set(|f| f.bulk_answer = None);
        assert_exactly_once(&es, &expected);
        wait_until(20, "health to recover", || {
            agent.get("/health")["status"] == "healthy"
        });
    }
    assert!(!node.data().join("dead-letter/dead-letter.ndjson").exists());
    assert!(agent.stop().success());
}

#[test]
fn item_level_security_and_missing_index_errors_pause_and_are_never_dead_letters() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| {
        f.reject_items = 1.0;
        f.reject_with = Some((403, "security_exception".into()));
    });
    let node = Node::new();
    let mut expected = node.json_lines("patient-a", 30);
    let agent = Agent::start(&node.config(&proxy.url, "", GIVE_UP_FAST));
    wait_out_the_fault(&agent, &proxy, "403 security_exception");
    proxy.set(|f| f.reject_with = Some((404, "index_not_found_exception".into())));
    expected.extend(node.json_lines("patient-b", 30));
    wait_out_the_fault(&agent, &proxy, "404 index_not_found_exception");
    let dead = node.data().join("dead-letter/dead-letter.ndjson");
    assert!(
        !dead.exists(),
        "the operator's setup never makes dead letters"
    );
    assert!(
        agent
            .logs()
            .contains("30 of 30 items refused for now: 30 × 403 security_exception"),
        "the log names what came back:\n{}",
        agent.logs()
    );
    proxy.set(|f| f.reject_items = 0.0);
    assert_exactly_once(&es, &expected);
    assert!(!dead.exists());
    assert!(agent.stop().success());
}

#[test]
fn a_dead_letter_with_an_unknown_error_type_is_counted_as_other() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| {
        f.reject_items = 1.0;
        f.reject_with = Some((400, "some_plugin_exception\"}".into()));
    });
    let node = Node::new();
    node.json_lines("patient-a", 5);
    let agent = Agent::start(&node.config(&proxy.url, "", ""));
    let dead = node.data().join("dead-letter/dead-letter.ndjson");
    wait_until(30, "the dead letters", || {
        std::fs::read_to_string(&dead).is_ok_and(|t| t.lines().count() == 5)
    });
    // The file keeps what the cluster said; the metric's label stays one of a known few (it
    // is counted once the letters are written: wait for that, not only for the file).
    let text = std::fs::read_to_string(&dead).unwrap();
    assert!(text.contains("some_plugin_exception"), "{text}");
    wait_until(10, "the dead letters counted as other", || {
        agent.metric("logferry_dead_letters_total{reason=\"other\"}") == 5
    });
    let metrics = agent.metrics();
    assert!(!metrics.contains("some_plugin_exception"), "{metrics}");
    assert!(metrics.contains("logferry_dead_letters_total{reason=\"mapper_parsing_exception\"} 0"));
    assert!(agent.stop().success());
}
