//! The Kafka tier's overlay, deploy/overlays/kafka: the agents' base and the aggregator's base,
//! with their configs replaced by config/kafka-node.toml (`[kafka]`, no Elasticsearch hosts)
//! and config/kafka-aggregator.toml (`[[input.kafka]]`, no forward listener), byte for byte.
//! The two configs agree with each other (brokers, topic) and with the platform's policy, and
//! the aggregators keep their buffer on volumes of their own as the aggregator base's do.

use super::*;

const KAFKA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/overlays/kafka");
/// The placeholder the operator replaces, in both configs.
const BROKERS: &str = "kafka-0.kafka.logging:9092";

/// The object of `kind` named `name` among `docs`.
fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// The names of a list of ports (a Service's or a container's).
fn port_names(ports: &Value) -> Vec<&str> {
    ports
        .as_array()
        .expect("ports")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect()
}

#[test]
fn the_kafka_overlay_is_both_bases_with_the_kafka_configs_and_validates_strictly() {
    let resources = listed_in_kustomization(KAFKA);
    assert_eq!(resources, ["../../k8s", "../../k8s/aggregator"]);
    let rendered = render(KAFKA);
    let docs = documents(&rendered);
    // Every object of the two bases, and nothing else: the overlay only patches.
    let mut got: Vec<String> = docs.iter().map(kind_name).collect();
    let mut want: Vec<String> = documents(&render(BASE))
        .iter()
        .chain(documents(&render(AGGREGATOR)).iter())
        .map(kind_name)
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    let kinds = validate(&rendered);
    for kind in [
        "namespace",
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "configmap",
        "daemonset",
        "service",
        "statefulset",
        "poddisruptionbudget",
    ] {
        assert!(kinds.contains(kind), "{kind} not validated: {kinds:?}");
    }
    // The ConfigMaps carry the files in config/, byte for byte.
    for (configmap, file) in [
        ("logferry", "config/kafka-node.toml"),
        ("logferry-aggregator", "config/kafka-aggregator.toml"),
    ] {
        let carried = named(&docs, "ConfigMap", configmap)["data"]["logferry.toml"]
            .as_str()
            .unwrap_or_else(|| panic!("logferry.toml in the ConfigMap {configmap}"));
        let (text, _) = read_config(file);
        assert!(
            carried == text,
            "the ConfigMap {configmap} differs from {file}"
        );
    }
    // No forward listener, so no forward port: the Service keeps metrics for Prometheus.
    let set = named(&docs, "StatefulSet", "logferry-aggregator");
    let agent = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(port_names(&agent["ports"]), ["metrics"]);
    let service = named(&docs, "Service", "logferry-aggregator");
    assert_eq!(port_names(&service["spec"]["ports"]), ["metrics"]);
    let (_, cfg) = read_config("config/kafka-aggregator.toml");
    assert_eq!(
        container_port(agent, "metrics"),
        u64::from(cfg.api.listen.port())
    );
    assert!(selects(
        &service["spec"]["selector"],
        &set["spec"]["template"]["metadata"]["labels"]
    ));
}

/// `logferry validate --config file`: the exit code and what it said.
fn validate_with_the_agent(file: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["validate", "--config", file])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run logferry validate");
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), said.into_owned())
}

/// The node produces to the topic the aggregators consume, at the same brokers; apart from
/// where it ships, the node's config is the platform's (config/platform.toml), and the
/// aggregator applies the platform's cluster, retention and redaction, with routes that name
/// every index the nodes' routes do (its setup installs their templates and policies).
#[test]
fn the_kafka_configs_are_the_platforms_policy_on_both_sides_of_one_topic() {
    for file in ["config/kafka-node.toml", "config/kafka-aggregator.toml"] {
        let (code, said) = validate_with_the_agent(file);
        assert_eq!(code, 0, "logferry validate refuses {file}: {said}");
    }
    let (_, platform) = read_config("config/platform.toml");
    let (_, mut node) = read_config("config/kafka-node.toml");
    let kafka = node
        .kafka
        .take()
        .expect("[kafka] in config/kafka-node.toml");
    assert_eq!(kafka.brokers, [BROKERS]);
    assert_eq!(kafka.topic, "logs");
    assert_eq!(kafka.compression.as_str(), "zstd");
    assert!(
        node.elasticsearch.hosts.is_empty(),
        "the node ships to Kafka only"
    );
    assert_eq!(node.elasticsearch.index, platform.elasticsearch.index);
    assert_eq!(
        node.elasticsearch.retention,
        platform.elasticsearch.retention
    );
    node.elasticsearch = platform.elasticsearch.clone();
    assert_eq!(
        format!("{node:#?}"),
        format!("{platform:#?}"),
        "apart from [kafka] and the cluster, the node's config is config/platform.toml"
    );

    let (_, agg) = read_config("config/kafka-aggregator.toml");
    assert!(agg.kafka.is_none());
    assert!(agg.input.include.is_empty(), "{:?}", agg.input.include);
    assert!(agg.input.forward.is_empty(), "{:?}", agg.input.forward);
    let [input] = agg.input.kafka.as_slice() else {
        panic!("one [[input.kafka]]: {:?}", agg.input.kafka);
    };
    assert_eq!(input.brokers, kafka.brokers);
    assert_eq!(input.topics, std::slice::from_ref(&kafka.topic));
    assert_eq!(input.group_id, "logferry-aggregator");
    assert!(!agg.kubernetes.enabled);
    assert!(agg.api.listen.ip().is_unspecified(), "{}", agg.api.listen);
    assert_eq!(agg.elasticsearch, platform.elasticsearch);
    assert_eq!(agg.redact, platform.redact);
    for route in &agg.routes {
        assert!(
            platform.routes.contains(route),
            "not the platform's: {route:?}"
        );
    }
    let indices = |cfg: &Config| -> BTreeSet<String> {
        cfg.routes
            .iter()
            .filter_map(|r| r.index.as_ref().map(|i| format!("{i} {:?}", r.retention)))
            .collect()
    };
    assert_eq!(indices(&agg), indices(&platform));
}

/// What an aggregator buffered before it committed its offsets survives its pod, as in the
/// aggregator's base: the same checks, on the rendered overlay with its own config.
#[test]
fn the_kafka_aggregators_keep_their_buffer_on_volumes_of_their_own() {
    let docs = documents(&render(KAFKA));
    let (_, cfg) = read_config("config/kafka-aggregator.toml");
    let set = named(&docs, "StatefulSet", "logferry-aggregator");
    data_dir_on_a_claim_of_its_own(set, &cfg);
    assert!(docs.iter().all(|d| d["kind"] != "Deployment"));
    let pod = &set["spec"]["template"]["spec"];
    let config = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("the config volume");
    assert_eq!(config["configMap"]["name"], "logferry-aggregator");
    let args = &pod["containers"][0]["args"];
    assert!(
        args.to_string().contains("/etc/logferry/logferry.toml"),
        "{args}"
    );
}
