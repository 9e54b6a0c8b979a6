//! The Kafka tier end to end, every part real: a node agent (`[kafka]`) → Tansu → an
//! aggregator agent (`[[input.kafka]]`) → osmem-server. Every line once, under the id the node
//! gave it, through SIGKILLs of the aggregator and of the node, and through the brokers
//! unreachable for longer than the consumer's session (both agents behind a proxy that is cut,
//! the aggregator killed meanwhile), the node's `/health` saying so; a record another producer
//! wrote (no headers) goes through the aggregator's own pipeline under an id of where it is and
//! what it holds; and the buffer keeps the offsets as positions, believed only where the broker
//! still has the record they end at.

mod support;

use logferry_harness::tansu::Tansu;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;
use support::kafka::{TOPIC, node_config, tansu, tansu_behind_proxy};
use support::*;

/// An aggregator: no files, the topic in, `es` out.
fn aggregator_config(dir: &std::path::Path, brokers: &str, es: &str, extra: &str) -> PathBuf {
    let text = format!(
        "data_dir = {data:?}\n\
         [input]\ninclude = []\n\
         [[input.kafka]]\nbrokers = [{brokers:?}]\ntopics = [\"{TOPIC}\"]\ngroup_id = \"aggregators\"\nsession_timeout = \"6s\"\n\
         [elasticsearch]\nhosts = [{es:?}]\nrequest_timeout = \"5s\"\n\
         [buffer]\nretry_wait = \"100ms\"\nretry_max_interval = \"500ms\"\nflush_interval = \"50ms\"\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
        data = dir.join("data").display().to_string(),
        port = free_port(),
    );
    let path = dir.join("aggregator.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn node_to_kafka_to_aggregator_is_every_line_once_under_the_nodes_ids() {
    let t = tansu();
    let es = osmem();
    let node = Node::new();
    let node_cfg = node_config(&node, &t.addr, "");
    let mut node_agent = Some(Agent::start(&node_cfg));
    let agg_dir = tempfile::tempdir().unwrap();
    let agg_config = aggregator_config(agg_dir.path(), &t.addr, &es.url, "");
    let mut aggregator = Some(Agent::start(&agg_config));
    let mut expected: HashSet<(String, u64)> = HashSet::new();
    for round in 0..4 {
        expected.extend(node.json_lines(&format!("pod-{round}"), 500));
        std::thread::sleep(Duration::from_millis(700));
        if round == 1 {
            // The aggregator dies with records consumed and maybe buffered, not yet committed:
            // its next start consumes them again, and they are 409s.
            aggregator.take().unwrap().kill();
            aggregator = Some(Agent::start(&agg_config));
        }
        if round == 2 {
            // The node dies with lines produced but not yet acknowledged to its buffer: it
            // produces them again at new offsets, under the same ids, and they are 409s.
            node_agent.take().unwrap().kill();
            node_agent = Some(Agent::start(&node_cfg));
        }
    }
    assert_exactly_once(&es, &expected);
    // The ids are the node's: what the topic holds is what the index holds.
    let messages = t.messages(TOPIC).unwrap();
    let produced: HashSet<String> = messages.iter().filter_map(|m| m.header("_id")).collect();
    let indexed: HashSet<String> = docs(&es).into_iter().map(|(id, _)| id).collect();
    let strangers: Vec<_> = indexed.difference(&produced).take(3).collect();
    assert!(
        strangers.is_empty(),
        "indexed under ids the node did not give: {strangers:?}"
    );
    assert_eq!(indexed.len(), produced.len());
    let aggregator = aggregator.unwrap();
    assert!(aggregator.metric("logferry_kafka_input_records_total") > 0);
    aggregator.stop();
    node_agent.unwrap().stop();
}

/// How long the brokers stay unreachable: past the aggregator's `session_timeout` (6s), so its
/// consumer's group session ends, and past the node's `delivery_timeout` (2s), so its
/// producer gives messages back as failed and the node produces them again.
const OUTAGE: Duration = Duration::from_secs(10);

#[test]
fn the_brokers_unreachable_for_a_while_and_an_aggregator_killed_meanwhile_still_every_line_once() {
    let (t, proxy) = tansu_behind_proxy();
    let es = osmem();
    let node = Node::new();
    let node_agent = Agent::start(&node_config(
        &node,
        &proxy.addr(),
        "delivery_timeout = \"2s\"",
    ));
    let agg_dir = tempfile::tempdir().unwrap();
    let agg_config = aggregator_config(agg_dir.path(), &proxy.addr(), &es.url, "");
    let mut aggregator = Agent::start(&agg_config);
    let show = |a: &Agent| format!("{}\n{}", a.get("/health"), a.logs());
    let mut expected = node.json_lines("before", 300);
    wait_until_showing(
        90,
        "the lines before the outage in the index",
        || es.count("logs-*").unwrap_or(0) == 300,
        || show(&aggregator),
    );

    proxy.set_down(true);
    let cut = std::time::Instant::now();
    expected.extend(node.json_lines("during", 1000));
    // What an operator sees on the node: the Kafka check failing, and messages produced again.
    wait_until_showing(
        30,
        "the node's /health to say Kafka cannot be reached",
        || node_agent.get("/health")["checks"]["kafka"]["status"] == "degraded",
        || show(&node_agent),
    );
    wait_until_showing(
        30,
        "the node to produce messages again",
        || node_agent.metric("logferry_documents_total{outcome=\"retried\"}") > 0,
        || show(&node_agent),
    );
    assert!(
        node_agent.metric("logferry_buffer_records ") > 0,
        "the node's buffer holds them"
    );
    // And on the aggregator: its consumer failing, in /health and in its log.
    wait_until_showing(
        30,
        "the aggregator's /health to say its consumer cannot consume",
        || aggregator.get("/health")["checks"]["kafka_input"]["status"] == "degraded",
        || show(&aggregator),
    );
    assert!(aggregator.logs().contains("kafka input: cannot consume"));
    // Killed with the brokers away (its last commits may not have reached them), and started
    // again while they still are: it joins the group once they are back.
    aggregator.kill();
    aggregator = Agent::start(&agg_config);
    expected.extend(node.json_lines("during-2", 500));
    while cut.elapsed() < OUTAGE {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        es.count("logs-*").unwrap(),
        300,
        "nothing got through the outage: the agents talk to Kafka only through the proxy"
    );

    proxy.set_down(false);
    expected.extend(node.json_lines("after", 300));
    assert_exactly_once(&es, &expected);
    wait_until_showing(
        60,
        "the node's /health to say shipping to Kafka works again",
        || node_agent.get("/health")["checks"]["kafka"]["status"] == "healthy",
        || show(&node_agent),
    );
    wait_until(30, "the node's buffer to drain", || {
        node_agent.metric("logferry_buffer_records ") == 0
    });
    wait_until_showing(
        60,
        "the aggregator's /health to say it consumes again",
        || aggregator.get("/health")["checks"]["kafka_input"]["status"] == "healthy",
        || show(&aggregator),
    );
    assert!(aggregator.metric("logferry_kafka_input_records_total") > 0);
    assert!(aggregator.stop().success());
    assert!(node_agent.stop().success());
    drop(t);
}

#[test]
fn a_record_without_headers_is_routed_and_redacted_by_the_aggregator_under_a_stable_id() {
    use rdkafka::producer::{BaseRecord, Producer};
    let t = tansu();
    let es = osmem();
    let producer = producer(&t);
    for (key, value) in [
        (
            "a",
            r#"{"msg":"refund for ann.lee@example.com","log_type":"audit","seq":1}"#,
        ),
        ("b", r#"{"msg":"plain","seq":2}"#),
    ] {
        producer
            .send(BaseRecord::to(TOPIC).key(key).payload(value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = "[redact]\nrules = [\"email\"]\n\
                 [[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\nwhen.field = { path = \"log_type\", equals = \"audit\" }\n";
    let config = aggregator_config(dir.path(), &t.addr, &es.url, extra);
    let agent = Agent::start(&config);
    wait_until(60, "both records", || {
        es.count("audit-*").unwrap_or(0) == 1 && es.count("logs-*").unwrap_or(0) == 1
    });
    let (id, audit) = es.all_documents("audit-*").unwrap().remove(0);
    assert!(!audit.to_string().contains("example.com"), "{audit}");
    // Killed and started with a new data directory and the offsets not committed is not
    // needed to see the id is stable: it is the topic, partition and offset's, so the same
    // record consumed by another group is the same document.
    let dir2 = tempfile::tempdir().unwrap();
    let other = aggregator_config(dir2.path(), &t.addr, &es.url, extra)
        .to_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(&other)
        .unwrap()
        .replace("group_id = \"aggregators\"", "group_id = \"replay\"");
    std::fs::write(&other, text).unwrap();
    let replay = Agent::start(std::path::Path::new(&other));
    wait_until(60, "the replay's 409s", || {
        replay.metric("logferry_documents_total{outcome=\"duplicate\"}") == 2
    });
    assert_eq!(es.count("audit-*").unwrap(), 1);
    assert_eq!(es.all_documents("audit-*").unwrap()[0].0, id);
    replay.stop();
    agent.stop();
}

/// A finished document (headers `_index` and `_id`, as a node writes them) whose payload is
/// not one JSON line: pretty-printed, it is indexed under its headers on one line; carrying a
/// second JSON line (what Elasticsearch would read as an action of its own), or no JSON at
/// all, it is indexed as the aggregator's own record, its text in `log`. Nothing else is
/// indexed, nothing is lost.
#[test]
fn a_finished_document_that_is_not_one_json_line_is_never_read_as_bulk_actions() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, Producer};
    let t = tansu();
    let es = osmem();
    let producer = producer(&t);
    let payloads = [
        "{\n  \"msg\": \"pretty\",\r\n  \"seq\": 1\n}\n",
        "{\"msg\":\"carrier\",\"seq\":2}\n{\"index\":{\"_index\":\"injected\"}}\n{\"seq\":99}",
        "plain text, seq 3",
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let id = format!("{:032x}", i + 1);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "_index",
                value: Some("finished"),
            })
            .insert(Header {
                key: "_id",
                value: Some(&id),
            });
        producer
            .send(
                BaseRecord::to(TOPIC)
                    .key("k")
                    .payload(*payload)
                    .headers(headers),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(&aggregator_config(dir.path(), &t.addr, &es.url, ""));
    wait_until(60, "all three records", || {
        agent.metric("logferry_documents_total{outcome=\"indexed\"}") == 3
    });
    let finished = es.all_documents("finished").unwrap();
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(finished[0].1["msg"], "pretty");
    let own: Vec<String> = es
        .all_documents("logs-*")
        .unwrap()
        .into_iter()
        .map(|(_, d)| d["log"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(own.len(), 2, "{own:?}");
    assert!(
        own.iter()
            .any(|l| l.contains("carrier") && l.contains("\"seq\":99")),
        "{own:?}"
    );
    assert!(own.contains(&"plain text, seq 3".to_owned()), "{own:?}");
    assert_eq!(es.count("injected").unwrap_or(0), 0);
    agent.stop();
}

/// A producer to the broker, as another application's would be.
fn producer(t: &Tansu) -> rdkafka::producer::BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &t.addr)
        .create()
        .unwrap()
}

fn produce(t: &Tansu, seqs: std::ops::Range<u64>) {
    use rdkafka::producer::{BaseRecord, Producer};
    let producer = producer(t);
    for seq in seqs {
        let value = format!(r#"{{"msg":"line {seq}","seq":{seq}}}"#);
        let key = format!("k{}", seq % 7);
        producer
            .send(BaseRecord::to(TOPIC).key(&key).payload(&value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// An aggregator in `dir` that consumed `n` records into its buffer (Elasticsearch not there
/// yet) and was killed.
fn buffered_and_killed(dir: &std::path::Path, t: &Tansu, n: u64) {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let first = Agent::start(&aggregator_config(dir, &t.addr, &nowhere, ""));
    wait_until(60, "every record durable in the buffer", || {
        first.metric("logferry_kafka_input_records_total") == n
    });
    first.kill();
}

fn indexed_seqs(es: &Osmem) -> HashSet<u64> {
    docs(es)
        .iter()
        .filter_map(|(_, d)| d["seq"].as_u64())
        .collect()
}

#[test]
fn records_the_buffer_holds_are_not_taken_again_when_the_group_resumes_before_them() {
    let t = tansu();
    const N: u64 = 300;
    produce(&t, 0..N);
    let dir = tempfile::tempdir().unwrap();
    buffered_and_killed(dir.path(), &t, N);
    // The group resumes from the start (its commits lost, or reset by an operator): the
    // buffer's positions say the records are held already.
    t.reset_offsets("aggregators", TOPIC, 0).unwrap();
    let es = osmem();
    let second = Agent::start(&aggregator_config(dir.path(), &t.addr, &es.url, ""));
    wait_until(60, "the buffer shipped", || {
        es.count("logs-*").unwrap_or(0) == N
    });
    wait_until(30, "the records consumed again", || {
        second.metric("logferry_kafka_input_skipped_total") == N
    });
    assert_eq!(second.metric("logferry_kafka_input_records_total"), 0);
    assert_eq!(
        second.metric("logferry_documents_total{outcome=\"duplicate\"}"),
        0,
        "nothing was buffered twice"
    );
    assert_eq!(indexed_seqs(&es), (0..N).collect());
    second.stop();
}

#[test]
fn a_topic_made_again_under_its_name_is_read_whole_whatever_the_buffer_held() {
    let port = free_port();
    let first_broker = Tansu::start_advertising(port, port).unwrap();
    first_broker.create_topic(TOPIC, 3).unwrap();
    produce(&first_broker, 0..300);
    let dir = tempfile::tempdir().unwrap();
    buffered_and_killed(dir.path(), &first_broker, 300);
    drop(first_broker);
    // The same address, the same topic name, another log: its offsets start at 0 again,
    // and have grown past the positions the buffer holds, but none of its records is one
    // the buffer has.
    let t = Tansu::start_advertising(port, port).unwrap();
    t.create_topic(TOPIC, 3).unwrap();
    produce(&t, 1000..1600);
    let es = osmem();
    let agent = Agent::start(&aggregator_config(dir.path(), &t.addr, &es.url, ""));
    wait_until(90, "the buffer's records and the new topic's", || {
        es.count("logs-*").unwrap_or(0) == 900
    });
    let expected: HashSet<u64> = (0..300).chain(1000..1600).collect();
    assert_eq!(indexed_seqs(&es), expected);
    assert_eq!(agent.metric("logferry_kafka_input_skipped_total"), 0);
    agent.stop();
}
