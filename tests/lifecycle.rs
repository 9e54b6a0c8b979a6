//! Retention policies against the lifecycle stand-in (`harness/src/lifecycle/`), which checks
//! every body against the documented schemas of Elasticsearch 8/9 ILM and OpenSearch 2/3 ISM:
//! osmem-server has neither API. Everything the stand-in does not own (documents, searches) goes
//! on to a real osmem-server.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::lifecycle::{Cluster, Flavor};
use support::*;

const FLAVORS: [Flavor; 4] = [
    Flavor::Elasticsearch8,
    Flavor::Elasticsearch9,
    Flavor::OpenSearch2,
    Flavor::OpenSearch3,
];

/// The platform's policy: app logs daily, kept 90 days; audit logs monthly, kept 7 years.
fn platform(node: &Node, url: &str, setup: &str) -> PathBuf {
    let path = node.config_with(
        url,
        &format!(
            "[[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\nretention = \"7y\"\n\
             when.field = {{ path = \"log_type\", equals = \"audit\" }}\n\
             [elasticsearch.setup]\n{setup}\n"
        ),
    );
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[elasticsearch]\n",
        "[elasticsearch]\nindex = \"logs-%Y.%m.%d\"\nretention = \"90d\"\n",
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn setup_once(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["setup", "--config"])
        .arg(config)
        .output()
        .expect("run logferry setup");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn puts(cluster: &Cluster) -> Vec<String> {
    cluster
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.path)
        .collect()
}

fn is_es(flavor: Flavor) -> bool {
    matches!(flavor, Flavor::Elasticsearch8 | Flavor::Elasticsearch9)
}

/// The delete age a policy gives, in either product's shape.
fn delete_age(flavor: Flavor, policy: &Value) -> String {
    let p = &policy["policy"];
    let age = if is_es(flavor) {
        &p["phases"]["delete"]["min_age"]
    } else {
        let states = p["states"].as_array().unwrap();
        let into_delete = states
            .iter()
            .flat_map(|s| s["transitions"].as_array().unwrap())
            .find(|t| t["state_name"] == "delete")
            .unwrap();
        &into_delete["conditions"]["min_index_age"]
    };
    age.as_str().unwrap().to_owned()
}

#[test]
fn each_product_gets_its_own_lifecycle_api_with_bodies_its_schema_accepts() {
    for flavor in FLAVORS {
        let cluster = Cluster::start(flavor, None);
        let node = Node::new();
        let config = platform(&node, &cluster.url, "warm_after = \"30d\"");
        let (ok, out) = setup_once(&config);
        assert!(ok, "{flavor:?}: {out}");
        assert!(
            cluster.problems().is_empty(),
            "{flavor:?}: {:#?}",
            cluster.problems()
        );
        let audit = cluster
            .policy("logferry-2557d-monthly")
            .expect("the audit policy");
        let app = cluster
            .policy("logferry-90d-daily")
            .expect("the app policy");
        // Kept to the last record of each index: a month (a day) more than the retention.
        assert_eq!(delete_age(flavor, &audit), "2588d", "{flavor:?}");
        assert_eq!(delete_age(flavor, &app), "91d", "{flavor:?}");
        let template = cluster.template("logferry-audit").expect("template");
        let other_api = if is_es(flavor) {
            "/_plugins/"
        } else {
            "/_ilm/"
        };
        assert!(
            cluster
                .requests()
                .iter()
                .all(|r| !r.path.starts_with(other_api)),
            "{flavor:?} was asked the other product's API"
        );
        if is_es(flavor) {
            // ILM is attached by the template's setting.
            assert_eq!(
                template["template"]["settings"]["index"]["lifecycle"]["name"],
                "logferry-2557d-monthly",
                "{template}"
            );
            // A daily index's age counts from the date in its name (an index created late by
            // a replay is deleted when its records' day passes the retention); a monthly
            // name cannot be parsed by ILM, so only the daily template asks for it.
            let daily = cluster.template("logferry-default").expect("template");
            let parse =
                &daily["template"]["settings"]["index"]["lifecycle"]["parse_origination_date"];
            assert!(parse == true || parse == "true", "{daily}");
            assert!(
                template["template"]["settings"]["index"]["lifecycle"]
                    .get("parse_origination_date")
                    .is_none(),
                "{template}"
            );
        } else {
            // ISM attaches by pattern, before the first index is created.
            assert_eq!(
                audit["policy"]["ism_template"][0]["index_patterns"],
                json!(["audit-*.*"]),
                "{audit}"
            );
            assert!(
                template["template"]["settings"]["index"]
                    .get("lifecycle")
                    .is_none(),
                "{template}"
            );
        }
        // A second run finds everything in place and writes nothing.
        let before = puts(&cluster).len();
        let (ok, out) = setup_once(&config);
        assert!(ok, "{out}");
        assert_eq!(
            puts(&cluster).len(),
            before,
            "{flavor:?}: {:?}",
            puts(&cluster)
        );
        assert!(out.contains("logferry-2557d-monthly: present\n"), "{out}");
        // And with overwrite, what is the same is not written again either.
        let before = puts(&cluster).len();
        let (ok, out) = setup_once(&platform(
            &node,
            &cluster.url,
            "warm_after = \"30d\"\noverwrite = true",
        ));
        assert!(ok, "{out}");
        assert_eq!(
            puts(&cluster).len(),
            before,
            "{flavor:?}: {:?}",
            puts(&cluster)
        );
    }
}

#[test]
fn an_operators_policy_of_the_same_name_is_never_replaced() {
    for flavor in FLAVORS {
        let cluster = Cluster::start(flavor, None);
        let theirs = if is_es(flavor) {
            json!({"policy": {"phases": {"delete": {"min_age": "30d", "actions": {"delete": {}}}}}})
        } else {
            json!({"policy": {"description": "the platform team's", "default_state": "hot",
                "states": [{"name": "hot", "actions": [], "transitions": []}]}})
        };
        cluster.put_policy("logferry-2557d-monthly", theirs);
        let stored = cluster.policy("logferry-2557d-monthly").unwrap();
        let node = Node::new();
        let (ok, out) = setup_once(&platform(&node, &cluster.url, "overwrite = true"));
        assert!(
            !ok,
            "someone else's policy is not the one the config asks for: {out}"
        );
        assert!(
            out.contains("logferry-2557d-monthly: present and not the agent's; left alone\n"),
            "{out}"
        );
        assert_eq!(
            cluster.policy("logferry-2557d-monthly").unwrap(),
            stored,
            "{flavor:?}"
        );
        assert!(
            !puts(&cluster)
                .iter()
                .any(|p| p.contains("logferry-2557d-monthly")),
            "{flavor:?}: {:?}",
            puts(&cluster)
        );
        assert!(cluster.problems().is_empty(), "{:#?}", cluster.problems());
    }
}

#[test]
fn the_agents_own_policy_is_replaced_only_with_overwrite_and_ism_names_the_version_it_read() {
    for flavor in FLAVORS {
        let cluster = Cluster::start(flavor, None);
        let node = Node::new();
        assert!(setup_once(&platform(&node, &cluster.url, "")).0);
        // The config gains a warm phase: the same policies, different bodies.
        let warm = platform(&node, &cluster.url, "warm_after = \"60d\"");
        let (ok, out) = setup_once(&warm);
        assert!(!ok, "{out}");
        assert!(
            out.contains("logferry-2557d-monthly: present but different"),
            "{out}"
        );
        let (ok, out) = setup_once(&platform(
            &node,
            &cluster.url,
            "warm_after = \"60d\"\noverwrite = true",
        ));
        assert!(ok, "{out}");
        assert!(
            out.contains("logferry-2557d-monthly: replaced"),
            "{flavor:?}: {out}"
        );
        let policy = cluster.policy("logferry-2557d-monthly").unwrap();
        if is_es(flavor) {
            // Warm 60 days after the index's last day: 60 + 31 from its creation.
            assert_eq!(
                policy["policy"]["phases"]["warm"]["min_age"], "91d",
                "{policy}"
            );
        } else {
            let states: Vec<&str> = policy["policy"]["states"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap())
                .collect();
            assert_eq!(states, ["hot", "warm", "delete"], "{policy}");
            assert!(
                puts(&cluster)
                    .iter()
                    .any(|p| p.contains("if_seq_no=") && p.contains("if_primary_term=")),
                "{:?}",
                puts(&cluster)
            );
        }
        assert!(
            cluster.problems().is_empty(),
            "{flavor:?}: {:#?}",
            cluster.problems()
        );
    }
}

#[test]
fn the_agent_installs_its_policies_at_start_and_ships_meanwhile() {
    let es = osmem();
    for flavor in [Flavor::Elasticsearch8, Flavor::OpenSearch2] {
        let cluster = Cluster::start(flavor, Some(&es.url));
        let node = Node::new();
        let pod = format!("orders-{}", is_es(flavor) as u8);
        let expected = node.json_lines(&pod, 100);
        let agent = Agent::start(&platform(&node, &cluster.url, ""));
        wait_until(60, "setup complete", || {
            agent.metric("logferry_setup_complete") == 1
        });
        assert!(cluster.policy("logferry-90d-daily").is_some());
        assert!(cluster.problems().is_empty(), "{:#?}", cluster.problems());
        wait_until(60, "100 documents", || docs_of(&es, &pod).len() >= 100);
        assert_eq!(
            seq_counts(&docs(&es))
                .keys()
                .filter(|k| expected.contains(*k))
                .count(),
            100
        );
        let health = agent.get("/health");
        assert_eq!(health["checks"]["setup"]["status"], "healthy", "{health}");
        assert!(agent.stop().success());
    }
}
