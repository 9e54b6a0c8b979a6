//! The Kafka output (`[kafka]`, the node role of a Kafka tier) against a real Kafka-protocol
//! broker, Tansu: every line becomes one message holding the document Elasticsearch would
//! have indexed, with its `_id` and `_index` as headers and its container as the key; through
//! an outage of the brokers and a SIGKILL of the agent nothing is lost, and what is produced
//! twice carries the same `_id` (the aggregator's Elasticsearch makes it a 409).

mod support;

use logferry_harness::tansu::{Message, Tansu};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::kafka::{TOPIC, node_config, tansu, tansu_behind_proxy};
use support::*;

/// The pod and `seq` of a message's document.
fn pod_seq(m: &Message) -> (String, u64) {
    let doc: Value = serde_json::from_slice(&m.value).expect("the value is a JSON document");
    let pod = doc["kubernetes"]["pod_name"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    (pod, doc["seq"].as_u64().expect("a seq"))
}

/// Waits until the topic holds every (pod, seq) of `expected`, then a little longer for what
/// would follow; returns every message.
fn wait_for_all(
    t: &Tansu,
    expected: &HashSet<(String, u64)>,
    secs: u64,
    agent: &Agent,
) -> Vec<Message> {
    let mut messages = Vec::new();
    wait_until_showing(
        secs,
        "every line in the topic",
        || {
            messages = t.messages(TOPIC).expect("read the topic");
            let seen: HashSet<_> = messages.iter().map(pod_seq).collect();
            expected.is_subset(&seen)
        },
        || format!("{}\n{}", agent.get("/health"), agent.logs()),
    );
    messages
}

/// Every (pod, seq) of `expected` is there, nothing else is, and every copy of one line
/// carries the same `_id` and no two lines share one.
fn assert_all_with_stable_ids(messages: &[Message], expected: &HashSet<(String, u64)>) {
    let mut ids: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    for m in messages {
        let id = m.header("_id").expect("an _id header");
        ids.entry(pod_seq(m)).or_default().insert(id);
    }
    let seen: HashSet<_> = ids.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "lost: {missing:?} (of {})",
        expected.len()
    );
    let extra: Vec<_> = seen.difference(expected).take(5).collect();
    assert!(extra.is_empty(), "never written: {extra:?}");
    let unstable: Vec<_> = ids.iter().filter(|(_, i)| i.len() > 1).take(5).collect();
    assert!(unstable.is_empty(), "one line, several ids: {unstable:?}");
    let distinct: BTreeSet<_> = ids.values().flatten().collect();
    assert_eq!(distinct.len(), expected.len(), "two lines share an id");
}

#[test]
fn every_line_is_one_message_with_its_id_and_index_and_the_document_elasticsearch_would_index() {
    let t = tansu();
    let node = Node::new();
    let mut expected = node.json_lines("web-1", 300);
    expected.extend(node.json_lines("worker-2", 200));
    let agent = Agent::start(&node_config(&node, &t.addr, "compression = \"zstd\""));
    let messages = wait_for_all(&t, &expected, 60, &agent);
    assert_all_with_stable_ids(&messages, &expected);
    assert_eq!(messages.len(), expected.len(), "no copies without a fault");

    // Each container's records on one partition, in the order they were written.
    let mut by_key: BTreeMap<Vec<u8>, Vec<&Message>> = BTreeMap::new();
    for m in &messages {
        by_key.entry(m.key.clone()).or_default().push(m);
    }
    let keys: BTreeSet<String> = by_key
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["shop/web-1/app".into(), "shop/worker-2/app".into()])
    );
    for (key, ms) in &by_key {
        let partitions: BTreeSet<i32> = ms.iter().map(|m| m.partition).collect();
        assert_eq!(partitions.len(), 1, "{key:?} on {partitions:?}");
        let seqs: Vec<u64> = ms.iter().map(|m| pod_seq(m).1).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{key:?} out of order");
    }

    // The same files shipped to Elasticsearch: the same ids, in the same indices, as the same
    // documents.
    let es = osmem();
    let es_node_config = {
        let path = node.config(&es.url, "", "");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            &format!("{:?}", node.data().display().to_string()),
            &format!(
                "{:?}",
                node.dir.path().join("es-data").display().to_string()
            ),
        );
        let path = node.dir.path().join("es.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let es_agent = Agent::start(&es_node_config);
    assert_eq!(
        wait_for_count(&es, expected.len() as u64, 60),
        expected.len() as u64
    );
    let indexed: BTreeMap<String, Value> = docs(&es).into_iter().collect();
    for m in &messages {
        let id = m.header("_id").unwrap();
        let doc: Value = serde_json::from_slice(&m.value).unwrap();
        assert_eq!(
            indexed.get(&id),
            Some(&doc),
            "{id}: the message is not the indexed document"
        );
        let index = m.header("_index").unwrap();
        assert!(index.starts_with("logs-20"), "{index}");
        let found = es.get(&format!("/{index}/_doc/{id}")).unwrap();
        assert_eq!(found["found"], true, "{id} is not in {index}: {found}");
    }
    assert!(es_agent.stop().success());

    let health = agent.get("/health");
    assert_eq!(health["checks"]["kafka"]["status"], "healthy", "{health}");
    assert!(
        health["checks"]["setup"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Kafka"),
        "{health}"
    );
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"indexed\"}"),
        expected.len() as u64
    );
    wait_until(10, "the buffer to drain", || {
        agent.metric("logferry_buffer_records ") == 0
    });
    // `logferry top` reads the same metrics and checks.
    let top = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["top", "--once", "--url", &format!("http://{}", agent.api)])
        .output()
        .expect("run logferry top");
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{screen}");
    let total = format!("total {}", expected.len());
    assert!(
        screen
            .lines()
            .any(|l| l.contains("documents indexed") && l.contains(&total)),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.trim_start().starts_with("kafka") && l.contains("healthy")),
        "{screen}"
    );
    assert!(agent.stop().success());
}

#[test]
fn brokers_unreachable_for_a_while_then_back_lose_nothing_and_keep_every_id() {
    let (t, proxy) = tansu_behind_proxy();
    let node = Node::new();
    // Shorter than the outage: messages given back as failed are produced again by the agent.
    let agent = Agent::start(&node_config(
        &node,
        &proxy.addr(),
        "delivery_timeout = \"2s\"",
    ));
    let mut expected = node.json_lines("before", 200);
    wait_for_all(&t, &expected, 60, &agent);

    proxy.set_down(true);
    expected.extend(node.json_lines("during", 1500));
    wait_until_showing(
        30,
        "/health and /ready to say the brokers cannot be reached",
        || {
            let health = agent.get("/health");
            let ready = agent.get("/ready");
            health["checks"]["kafka"]["status"] == "degraded"
                && ready["checks"]["kafka"]["status"] == "degraded"
        },
        || format!("{}\n{}", agent.get("/health"), agent.logs()),
    );
    wait_until(30, "messages to be produced again", || {
        agent.metric("logferry_documents_total{outcome=\"retried\"}") > 0
    });
    assert!(
        agent.metric("logferry_buffer_records ") > 0,
        "the buffer holds them meanwhile"
    );

    proxy.set_down(false);
    expected.extend(node.json_lines("after", 200));
    let messages = wait_for_all(&t, &expected, 90, &agent);
    assert_all_with_stable_ids(&messages, &expected);
    wait_until(30, "the buffer to drain", || {
        agent.metric("logferry_buffer_records ") == 0
    });
    wait_until(30, "/health to say shipping works again", || {
        agent.get("/health")["checks"]["kafka"]["status"] == "healthy"
    });
    assert!(agent.stop().success());
}

#[test]
fn a_sigkill_mid_stream_then_a_restart_loses_nothing_and_reproduces_under_the_same_ids() {
    let (t, proxy) = tansu_behind_proxy();
    let node = Node::new();
    let config = node_config(&node, &proxy.addr(), "");
    let agent = Agent::start(&config);
    let mut w = node.writer("shop", "crashy", "app", Format::Cri);
    let mut expected = HashSet::new();
    let mut write = |from: u64, to: u64| {
        for seq in from..to {
            w.json_line(seq).unwrap();
            expected.insert(("crashy".to_owned(), seq));
            if seq % 100 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    write(0, 1500);
    wait_until(30, "some lines to be in the topic", || {
        t.messages(TOPIC).map_or(0, |m| m.len()) > 100
    });
    // Lines handed to the producer and not yet acknowledged when the agent dies: the broker
    // is cut off (so they wait in the producer), the buffer's cursor is saved meanwhile.
    proxy.set_down(true);
    write(1500, 2500);
    wait_until(30, "the lines to be buffered", || {
        agent.metric("logferry_input_lines_total ") >= 2500
    });
    std::thread::sleep(Duration::from_millis(2500));
    agent.signal("KILL");
    drop(agent);
    proxy.set_down(false);
    write(2500, 3000);
    let agent = Agent::start(&config);
    let messages = wait_for_all(&t, &expected, 90, &agent);
    assert_all_with_stable_ids(&messages, &expected);
    assert!(agent.stop().success());
}

#[test]
fn a_reload_takes_a_changed_kafka_section_for_the_next_batch_and_loses_nothing() {
    let t = tansu();
    t.create_topic("logs-b", 2)
        .expect("create the second topic");
    let node = Node::new();
    let config = node_config(&node, &t.addr, "compression = \"zstd\"");
    let agent = Agent::start(&config);
    let first = node.json_lines("first", 200);
    wait_for_all(&t, &first, 60, &agent);

    // Another topic and codec: taken by the next batch, under the same ids.
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text
        .replace(&format!("topic = \"{TOPIC}\""), "topic = \"logs-b\"")
        .replace("compression = \"zstd\"", "compression = \"lz4\"");
    std::fs::write(&config, &changed).unwrap();
    agent.signal("HUP");
    wait_until_showing(
        30,
        "the reload to be taken",
        || agent.logs().contains("config reloaded"),
        || agent.logs(),
    );
    let second = node.json_lines("second", 200);
    let mut in_b = HashSet::new();
    wait_until(60, "the new lines in the new topic", || {
        in_b = t.messages("logs-b").unwrap().iter().map(pod_seq).collect();
        second.is_subset(&in_b)
    });
    let in_first: HashSet<_> = t.messages(TOPIC).unwrap().iter().map(pod_seq).collect();
    assert!(
        first.is_subset(&in_first),
        "the first lines stay where they went"
    );
    assert!(
        in_first.is_disjoint(&second),
        "nothing of the second went to the old topic"
    );

    // Removing [kafka] is not taken: the output is chosen at start, and the check says so.
    let without = changed[..changed.find("[kafka]").unwrap()].to_owned()
        + &changed[changed.find("[buffer]").unwrap()..];
    std::fs::write(
        &config,
        without.replace("hosts = []", "hosts = [\"http://127.0.0.1:9\"]"),
    )
    .unwrap();
    agent.signal("HUP");
    wait_until(30, "the config check to name what needs a restart", || {
        agent.get("/health")["checks"]["config"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("kafka (adding or removing the section)"))
    });
    let third = node.json_lines("third", 50);
    wait_until(60, "the lines after it still in the new topic", || {
        let seen: HashSet<_> = t.messages("logs-b").unwrap().iter().map(pod_seq).collect();
        third.is_subset(&seen)
    });
    assert!(agent.stop().success());
}

#[test]
fn a_reload_that_adds_kafka_to_an_elasticsearch_agent_without_hosts_is_refused() {
    let node = Node::new();
    let config = node.config("http://127.0.0.1:9", "", "");
    let agent = Agent::start(&config);
    let text = std::fs::read_to_string(&config).unwrap();
    let start = text.find("hosts = [").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let with_kafka = format!(
        "{}hosts = []{}[kafka]\nbrokers = [\"127.0.0.1:9\"]\n",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&config, with_kafka).unwrap();
    agent.signal("HUP");
    wait_until_showing(
        30,
        "the reload to be refused, naming elasticsearch.hosts",
        || {
            agent.get("/health")["checks"]["config"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("elasticsearch.hosts") && d.contains("restart"))
        },
        || format!("{}\n{}", agent.get("/health"), agent.logs()),
    );
    // Still the output it started with.
    let health = agent.get("/health");
    assert!(
        health["checks"]["elasticsearch"].is_object() && health["checks"]["kafka"].is_null(),
        "{health}"
    );
    assert!(agent.stop().success());
}

fn validate(path: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["validate", "--config"])
        .arg(path)
        .output()
        .expect("run logferry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_kafka_section_is_refused_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let p = path.display().to_string();
    // (the section, what the error must say)
    let cases = [
        (
            "[kafka]\nbrokers = [\"k:9092\"]\ncompression = \"brotli\"\n",
            format!("{p}:4:15: kafka.compression: unknown variant `brotli`"),
        ),
        (
            "[kafka]\nbrokers = []\n",
            format!("{p}:3:11: kafka.brokers: needs at least one broker"),
        ),
        (
            "[kafka]\nbrokers = [\"tcp://k:9092\"]\n",
            format!(
                "{p}:3:11: kafka.brokers: \"tcp://k:9092\": a broker is host:port, without a scheme"
            ),
        ),
        (
            "[kafka]\nbrokers = [\"k:9092\"]\ntopic = \"logs/all\"\n",
            format!("{p}:4:9: kafka.topic:"),
        ),
        (
            "[kafka]\nbrokers = [\"k:9092\"]\n[kafka.sasl]\nmechanism = \"GSSAPI\"\n",
            format!("{p}:5:13: kafka.sasl.mechanism: unknown variant `GSSAPI`"),
        ),
    ];
    for (section, want) in cases {
        std::fs::write(&path, format!("data_dir = \"/tmp/x\"\n{section}")).unwrap();
        let (code, err) = validate(&path);
        assert_eq!(code, 1, "{section}");
        assert!(err.contains(&want), "{section}\nwanted: {want}\ngot: {err}");
    }
    // With [kafka], Elasticsearch needs no hosts.
    std::fs::write(
        &path,
        "[elasticsearch]\nhosts = []\n[kafka]\nbrokers = [\"k:9092\"]\n",
    )
    .unwrap();
    assert_eq!(validate(&path), (0, String::new()));
}
