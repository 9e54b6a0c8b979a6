//! The lifecycle stand-in (`harness/src/lifecycle/`) itself: it must accept what the products'
//! documentation shows, refuse what the products refuse — with a problem that names the fault —
//! and pass everything else on to a real osmem-server. A stand-in that accepted everything
//! would let the agent's setup tests pass against nothing.

mod support;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use support::lifecycle::{Cluster, Flavor};

const ELASTICSEARCH: [Flavor; 2] = [Flavor::Elasticsearch8, Flavor::Elasticsearch9];
const OPENSEARCH: [Flavor; 2] = [Flavor::OpenSearch2, Flavor::OpenSearch3];

fn call(cluster: &Cluster, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let payload = body.map(Value::to_string).unwrap_or_default();
    let (status, text) = logferry_harness::http(
        method,
        &format!("{}{path}", cluster.url),
        "application/json",
        payload.as_bytes(),
    )
    .expect("the stand-in answers");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn put(cluster: &Cluster, path: &str, body: &Value) -> (u16, Value) {
    call(cluster, "PUT", path, Some(body))
}

/// Asserts a 400-class refusal in the product's error shape, whose reason and recorded problem
/// both name `fault`.
fn assert_refused(cluster: &Cluster, answer: (u16, Value), status: u16, fault: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "status of the refusal: {body}");
    let reason = body["error"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(fault),
        "reason {reason:?} should name {fault:?}"
    );
    assert_eq!(
        body["error"]["root_cause"][0]["reason"], reason,
        "root_cause"
    );
    assert_eq!(body["status"], status, "status field");
    let problems = cluster.problems();
    assert!(
        problems.last().is_some_and(|p| p.contains(fault)),
        "the last problem should name {fault:?}: {problems:?}"
    );
    let last = cluster.requests().pop().expect("recorded");
    assert!(last.problem.is_some_and(|p| p.contains(fault)));
}

/// The "full policy" of Elasticsearch's ILM documentation (hot rollover, warm forcemerge +
/// shrink + allocate, cold allocate to cold nodes, delete), with `_meta` as the put-lifecycle
/// API page shows it.
fn documented_ilm_policy() -> Value {
    json!({"policy": {
        "_meta": {"description": "used for nginx log", "project": {"name": "myProject"}},
        "phases": {
            "hot": {"actions": {"rollover": {"max_age": "7d", "max_primary_shard_size": "50gb"},
                                "set_priority": {"priority": 100}}},
            "warm": {"min_age": "30d", "actions": {"forcemerge": {"max_num_segments": 1},
                                                   "shrink": {"number_of_shards": 1},
                                                   "allocate": {"number_of_replicas": 2}}},
            "cold": {"min_age": "60d", "actions": {"allocate": {"require": {"type": "cold"}}}},
            "delete": {"min_age": "90d", "actions": {"delete": {}}}
        }
    }})
}

/// The "hot warm delete workflow" sample of OpenSearch's ISM documentation.
fn documented_ism_policy() -> Value {
    json!({"policy": {
        "description": "hot warm delete workflow",
        "default_state": "hot",
        "schema_version": 1,
        "states": [
            {"name": "hot",
             "actions": [{"rollover": {"min_index_age": "1d", "min_primary_shard_size": "30gb"}}],
             "transitions": [{"state_name": "warm"}]},
            {"name": "warm",
             "actions": [{"replica_count": {"number_of_replicas": 5}}],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": "30d"}}]},
            {"name": "delete",
             "actions": [
                {"notification": {"destination": {"chime": {"url": "<URL>"}},
                                  "message_template": {"source": "The index {{ctx.index}} is being deleted"}}},
                {"delete": {}}
             ]}
        ],
        "ism_template": {"index_patterns": ["log*"], "priority": 100}
    }})
}

#[test]
fn get_root_answers_as_each_product_does() {
    for flavor in ELASTICSEARCH {
        let c = Cluster::start(flavor, None);
        let (status, root) = call(&c, "GET", "/", None);
        assert_eq!(status, 200);
        assert_eq!(root["version"]["build_flavor"], "default");
        assert_eq!(root["tagline"], "You Know, for Search");
        assert!(root["version"].get("distribution").is_none());
        let major = if flavor == Flavor::Elasticsearch8 {
            "8."
        } else {
            "9."
        };
        assert!(
            root["version"]["number"]
                .as_str()
                .unwrap()
                .starts_with(major)
        );
    }
    for flavor in OPENSEARCH {
        let c = Cluster::start(flavor, None);
        let (_, root) = call(&c, "GET", "/", None);
        assert_eq!(root["version"]["distribution"], "opensearch");
        assert!(root["version"].get("build_flavor").is_none());
        let major = if flavor == Flavor::OpenSearch2 {
            "2."
        } else {
            "3."
        };
        assert!(
            root["version"]["number"]
                .as_str()
                .unwrap()
                .starts_with(major)
        );
    }
}

#[test]
fn the_documented_ilm_policy_is_accepted_and_read_back_as_elasticsearch_does() {
    for flavor in ELASTICSEARCH {
        let c = Cluster::start(flavor, None);
        let (status, _) = call(&c, "GET", "/_ilm/policy/logs", None);
        assert_eq!(status, 404, "absent before it is put");
        let (status, answer) = put(&c, "/_ilm/policy/logs", &documented_ilm_policy());
        assert_eq!((status, answer), (200, json!({"acknowledged": true})));
        let (status, got) = call(&c, "GET", "/_ilm/policy/logs", None);
        assert_eq!(status, 200);
        assert_eq!(got["logs"]["version"], 1);
        assert!(
            got["logs"]["modified_date"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(
            got["logs"]["policy"]["phases"]["hot"]["min_age"], "0ms",
            "filled in"
        );
        assert_eq!(
            got["logs"]["policy"]["_meta"]["project"]["name"],
            "myProject"
        );
        assert_eq!(
            c.policy("logs").unwrap()["policy"]["phases"]["delete"]["min_age"],
            "90d"
        );
        put(&c, "/_ilm/policy/logs", &documented_ilm_policy());
        assert_eq!(
            call(&c, "GET", "/_ilm/policy/logs", None).1["logs"]["version"],
            2
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }
}

#[test]
fn the_documented_ism_policy_is_accepted_and_updated_only_with_its_seq_no() {
    for flavor in OPENSEARCH {
        let c = Cluster::start(flavor, None);
        let path = "/_plugins/_ism/policies/logs";
        assert_eq!(call(&c, "GET", path, None).0, 404);
        let (status, created) = put(&c, path, &documented_ism_policy());
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["_version"], 1);
        assert_eq!(created["policy"]["policy"]["policy_id"], "logs");
        let (_, got) = call(&c, "GET", path, None);
        assert_eq!(got["_id"], "logs");
        assert_eq!(got["policy"]["description"], "hot warm delete workflow");
        assert_eq!(
            got["policy"]["ism_template"][0]["index_patterns"],
            json!(["log*"])
        );
        assert!(got["policy"]["ism_template"][0]["last_updated_time"].is_u64());
        assert_eq!(
            got["policy"]["states"][0]["actions"][0]["retry"]["count"],
            3
        );
        let (seq, term) = (&got["_seq_no"], &got["_primary_term"]);
        let update = format!("{path}?if_seq_no={seq}&if_primary_term={term}");
        let (status, updated) = put(&c, &update, &documented_ism_policy());
        assert_eq!(
            (status, &updated["_version"]),
            (200, &json!(2)),
            "{updated}"
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        // The old seq_no is stale now.
        assert_refused(
            &c,
            put(&c, &update, &documented_ism_policy()),
            409,
            "version conflict",
        );
    }
}

#[test]
fn an_ism_put_over_an_existing_id_without_seq_no_is_refused_with_409() {
    let c = Cluster::start(Flavor::OpenSearch2, None);
    c.put_policy("operator", documented_ism_policy());
    let answer = put(
        &c,
        "/_plugins/_ism/policies/operator",
        &documented_ism_policy(),
    );
    assert_eq!(
        answer.1["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_refused(&c, answer, 409, "document already exists");
    assert_eq!(
        c.policy("operator").unwrap()["policy"]["description"],
        "hot warm delete workflow"
    );
}

#[test]
fn an_unknown_ilm_phase_is_refused() {
    let c = Cluster::start(Flavor::Elasticsearch8, None);
    let body = json!({"policy": {"phases": {"lukewarm": {"actions": {}}}}});
    let answer = put(&c, "/_ilm/policy/p", &body);
    assert_refused(&c, answer, 400, "does not support phase [lukewarm]");
    assert!(c.policy("p").is_none(), "a refused policy is not stored");
}

#[test]
fn an_action_its_phase_does_not_allow_is_refused() {
    let c = Cluster::start(Flavor::Elasticsearch9, None);
    let body =
        json!({"policy": {"phases": {"warm": {"actions": {"rollover": {"max_age": "1d"}}}}}});
    assert_refused(
        &c,
        put(&c, "/_ilm/policy/p", &body),
        400,
        "invalid action [rollover] defined in phase [warm]",
    );
    let body = json!({"policy": {"phases": {"hot": {"actions": {"compress": {}}}}}});
    assert_refused(
        &c,
        put(&c, "/_ilm/policy/p", &body),
        400,
        "unknown field [compress]",
    );
}

#[test]
fn a_min_age_in_years_or_weeks_is_refused() {
    let c = Cluster::start(Flavor::Elasticsearch8, None);
    for age in ["7y", "2w"] {
        let body =
            json!({"policy": {"phases": {"delete": {"min_age": age, "actions": {"delete": {}}}}}});
        assert_refused(
            &c,
            put(&c, "/_ilm/policy/p", &body),
            400,
            &format!("with value [{age}] as a time value"),
        );
    }
}

#[test]
fn a_min_age_that_decreases_across_phases_is_refused() {
    let c = Cluster::start(Flavor::Elasticsearch9, None);
    let body = json!({"policy": {"phases": {
        "warm": {"min_age": "30d", "actions": {}},
        "delete": {"min_age": "7d", "actions": {"delete": {}}}}}});
    assert_refused(
        &c,
        put(&c, "/_ilm/policy/p", &body),
        400,
        "run the delete phase (min_age: 7d) before the warm phase (min_age: 30d)",
    );
}

#[test]
fn an_ism_transition_to_a_missing_state_is_refused() {
    let c = Cluster::start(Flavor::OpenSearch3, None);
    let mut body = documented_ism_policy();
    body["policy"]["states"][1]["transitions"][0]["state_name"] = json!("archive");
    assert_refused(
        &c,
        put(&c, "/_plugins/_ism/policies/p", &body),
        400,
        "pointing to a nonexistent state=archive",
    );
}

#[test]
fn an_ilm_setting_in_a_template_is_refused_on_opensearch_and_kept_on_elasticsearch() {
    let template = json!({"index_patterns": ["logs-app-*"], "priority": 200,
                          "template": {"settings": {"index.lifecycle.name": "logs", "number_of_shards": 1}},
                          "_meta": {"managed_by": "logferry"}});
    for flavor in OPENSEARCH {
        let c = Cluster::start(flavor, None);
        let answer = put(&c, "/_index_template/logferry-app", &template);
        assert_eq!(answer.1["error"]["type"], "settings_exception");
        assert_refused(&c, answer, 400, "unknown setting [index.lifecycle.name]");
    }
    for flavor in ELASTICSEARCH {
        let c = Cluster::start(flavor, None);
        assert_eq!(put(&c, "/_index_template/logferry-app", &template).0, 200);
        let (_, got) = call(&c, "GET", "/_index_template/logferry-app", None);
        let stored = &got["index_templates"][0]["index_template"];
        assert_eq!(
            stored["template"]["settings"]["index"]["lifecycle"]["name"],
            "logs"
        );
        assert_eq!(
            stored["template"]["settings"]["index"]["number_of_shards"], "1",
            "as a string"
        );
        assert_eq!(stored["_meta"]["managed_by"], "logferry");
        assert_eq!(&c.template("logferry-app").unwrap(), stored);
        let (_, flat) = call(
            &c,
            "GET",
            "/_index_template/logferry-app?flat_settings=true",
            None,
        );
        assert_eq!(
            flat["index_templates"][0]["index_template"]["template"]["settings"]["index.lifecycle.name"],
            "logs"
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }
}

#[test]
fn create_true_twice_is_refused() {
    let c = Cluster::start(Flavor::OpenSearch2, None);
    let template =
        json!({"index_patterns": ["logs-*"], "template": {"settings": {"number_of_replicas": 1}}});
    assert_eq!(
        put(&c, "/_index_template/logs?create=true", &template).0,
        200
    );
    assert_refused(
        &c,
        put(&c, "/_index_template/logs?create=true", &template),
        400,
        "index template [logs] already exists",
    );
}

#[test]
fn overlapping_templates_of_one_priority_are_refused() {
    let c = Cluster::start(Flavor::Elasticsearch8, None);
    c.put_template(
        "operator",
        json!({"index_patterns": ["logs-*"], "priority": 100}),
    );
    let mine = json!({"index_patterns": ["logs-app-*"], "priority": 100});
    assert_refused(
        &c,
        put(&c, "/_index_template/logferry-app", &mine),
        400,
        "matching patterns from existing templates [operator]",
    );
    let higher = json!({"index_patterns": ["logs-app-*"], "priority": 101});
    assert_eq!(
        put(&c, "/_index_template/logferry-app", &higher).0,
        200,
        "another priority may overlap"
    );
    let elsewhere = json!({"index_patterns": ["metrics-*"], "priority": 100});
    assert_eq!(
        put(&c, "/_index_template/metrics", &elsewhere).0,
        200,
        "disjoint patterns may share one"
    );
}

/// Each kind of invalid body, refused with a problem that names its fault:
/// `[flavor, path, body, fault]`, where `<ilm>` and `<ism>` wrap phases and states.
#[test]
fn each_kind_of_invalid_body_is_refused_with_its_fault_named() {
    let cases = json!([
        ["es8", "/_ilm/policy/p", {"<ilm>": {"hot": {"actions": {"rollover": {"min_docs": 1}}}}}, "At least one max_* rollover condition"],
        ["es8", "/_ilm/policy/p", {"<ilm>": {"hot": {"actions": {"rollover": {"max_size": "1 lightyear"}}}}}, "as a size in bytes"],
        ["es8", "/_ilm/policy/p", {"<ilm>": {"hot": {"actions": {"forcemerge": {"max_num_segments": 1}}}}}, "without an accompanying [rollover]"],
        ["es8", "/_ilm/policy/p", {"<ilm>": {"frozen": {"actions": {}}}}, "searchable snapshot action is required"],
        ["es8", "/_ilm/policy/p", {"<ilm>": {"delete": {"actions": {"delete": {"force": true}}}}}, "unknown field [force]"],
        ["es8", "/_ilm/policy/p", {"<ilm>": {"hot": {"min_age": "1.5d", "actions": {}}}}, "fractional time values"],
        ["es9", "/_ilm/policy/p", {"policy": {"phases": {}, "_meta": "x"}}, "[_meta]"],
        ["es9", "/_ilm/policy/p", {"phases": {}}, "unknown field [phases]"],
        ["es9", "/_ilm/policy/p?create=true", {"<ilm>": {}}, "unrecognized parameter: [create]"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "warm"}]}, "valid default state"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot"}, {"name": "hot"}]}, "duplicate state names"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "actions": [{"shred": {}}]}]}, "Invalid field: [shred] found in Actions"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "actions": [{"rollover": {"max_age": "1d"}}]}]}, "[max_age]"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "actions": [{"rollover": {}, "retry": {"count": -1}}]}]}, "non-negative"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "actions": [{"search_only": {}}]}]}, "[search_only]"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "transitions": [{"state_name": "hot", "conditions": {"min_primary_shard_size": "1gb"}}]}]}, "[min_primary_shard_size] found in Conditions"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "transitions": [{"state_name": "hot", "conditions": {"min_index_age": "1y"}}]}]}, "with value [1y]"],
        ["os2", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "transitions": [{"state_name": "hot", "conditions": {"min_doc_count": 0}}]}]}, "doc count condition must be greater than 0"],
        ["os3", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "transitions": [{"state_name": "hot", "conditions": {"min_index_age": "1d", "min_size": "1gb"}}]}]}, "more than one Transition condition"],
        ["os3", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "transitions": [{"state_name": "hot", "conditions": {"cron": {"cron": {"expression": "daily", "timezone": "UTC"}}}}]}]}, "Invalid cron expression"],
        ["os3", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "actions": [{"delete": {}}], "transitions": [{"state_name": "hot"}]}]}, "cannot contain transitions if using delete"],
        ["os3", "/_plugins/_ism/policies/p", {"<ism>": [{"name": "hot", "actions": [{"delete": {}}, {"read_only": {}}]}]}, "after a delete action"],
        ["os3", "/_plugins/_ism/policies/p", {"policy": {"default_state": "hot", "states": [{"name": "hot"}]}}, "description is null"],
        ["os3", "/_plugins/_ism/policies/p", {"policy": {"description": "d", "default_state": "hot", "states": [{"name": "hot"}], "ism_template": {"index_patterns": ["logs-*"], "priority": -1}}}, "priority to be >= 0"],
        ["os3", "/_plugins/_ism/policies/p", {"policy": {"description": "d", "default_state": "hot", "states": [{"name": "hot"}], "_meta": {}}}, "Invalid field: [_meta]"],
        ["os2", "/_index_template/t", {"template": {}}, "Required [index_patterns]"],
        ["os2", "/_index_template/t", {"index_patterns": ["logs-*"], "priority": -5}, "priority must be >= 0"],
        ["os2", "/_index_template/t", {"index_patterns": ["logs-*"], "template": {"lifecycle": {}}}, "unknown field [lifecycle]"],
        ["os2", "/_index_template/t", {"index_patterns": ["logs-*"], "composed_of": ["base"]}, "component templates"],
        ["os2", "/_index_template/Upper", {"index_patterns": ["logs-*"]}, "must be lower cased"],
        ["es9", "/_index_template/t", {"index_patterns": ["logs-*"], "template": {"settings": {"index": {"plugins": {"index_state_management": {"rollover_alias": "a"}}}}}}, "unknown setting [index.plugins.index_state_management.rollover_alias]"],
        ["es9", "/_index_template/t", {"index_patterns": ["logs-*"], "template": {"settings": {"lifecycle.indexing_complete": "yes"}}}, "for setting [index.lifecycle.indexing_complete]"],
        ["es9", "/_index_template/t", {"index_patterns": ["_logs"]}, "must not start with '_'"],
        ["es8", "/_index_template/t", {"index_patterns": ["logs-*"], "template": {"data_stream_options": {}}}, "unknown field [data_stream_options]"]
    ]);
    for case in cases.as_array().unwrap() {
        let flavor = match case[0].as_str().unwrap() {
            "es8" => Flavor::Elasticsearch8,
            "es9" => Flavor::Elasticsearch9,
            "os2" => Flavor::OpenSearch2,
            _ => Flavor::OpenSearch3,
        };
        let (path, fault) = (case[1].as_str().unwrap(), case[3].as_str().unwrap());
        let body = if let Some(phases) = case[2].get("<ilm>") {
            json!({"policy": {"phases": phases}})
        } else if let Some(states) = case[2].get("<ism>") {
            json!({"policy": {"description": "d", "default_state": "hot", "states": states}})
        } else {
            case[2].clone()
        };
        let c = Cluster::start(flavor, None);
        let answer = put(&c, path, &body);
        assert!(
            answer.0 >= 400,
            "{flavor:?} {path} {body} was accepted, expected a refusal naming {fault:?}"
        );
        assert_refused(&c, answer, 400, fault);
    }
}

#[test]
fn the_other_products_retention_api_is_not_there() {
    let c = Cluster::start(Flavor::Elasticsearch8, None);
    let (status, body) = put(&c, "/_plugins/_ism/policies/p", &documented_ism_policy());
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "no handler found for uri [/_plugins/_ism/policies/p] and method [PUT]"
    );
    assert_eq!(
        c.problems().len(),
        1,
        "the agent picked the wrong API: a fault"
    );
    let c = Cluster::start(Flavor::OpenSearch3, None);
    let (status, body) = call(&c, "GET", "/_ilm/policy/p", None);
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "no handler found for uri [/_ilm/policy/p] and method [GET]"
    );
}

#[test]
fn a_refusing_cluster_answers_as_its_security_layer_does_and_that_is_no_problem() {
    let c = Cluster::start(Flavor::Elasticsearch8, None);
    c.refuse(Some(403));
    let (status, body) = put(&c, "/_ilm/policy/logs", &documented_ilm_policy());
    assert_eq!(status, 403);
    assert_eq!(body["error"]["type"], "security_exception");
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("action [cluster:admin/ilm/put] is unauthorized for user ["),
        "{reason}"
    );
    assert_eq!(call(&c, "GET", "/", None).0, 200, "GET / is never refused");
    assert!(c.policy("logs").is_none());
    assert!(
        c.problems().is_empty(),
        "an injected refusal is not the agent's fault"
    );
    assert_eq!(c.requests()[0].status, 403);
    c.refuse(None);
    assert_eq!(
        put(&c, "/_ilm/policy/logs", &documented_ilm_policy()).0,
        200
    );

    let c = Cluster::start(Flavor::OpenSearch2, None);
    c.refuse(Some(403));
    let (status, body) = put(&c, "/_plugins/_ism/policies/logs", &documented_ism_policy());
    assert_eq!(status, 403);
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no permissions for [cluster:admin/opendistro/ism/policy/write]")
    );
}

/// Sends raw HTTP/1.1 requests on one keep-alive connection; returns each (status, body).
fn keep_alive(url: &str, requests: &[(&str, &str, &str, Vec<u8>, bool)]) -> Vec<(u16, String)> {
    let mut conn =
        std::net::TcpStream::connect(url.trim_start_matches("http://")).expect("connect");
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut answers = Vec::new();
    for (method, path, content_type, body, gzip) in requests {
        let encoding = if *gzip {
            "Content-Encoding: gzip\r\n"
        } else {
            ""
        };
        write!(conn, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{encoding}Content-Length: {}\r\n\r\n", body.len()).unwrap();
        conn.write_all(body).unwrap();
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        answers.push((status, String::from_utf8_lossy(&body).into_owned()));
    }
    answers
}

#[test]
fn what_it_does_not_own_reaches_osmem_with_its_method_and_body() {
    let es = support::osmem();
    let c = Cluster::start(Flavor::OpenSearch2, Some(&es.url));
    let bulk: String = (0..3)
        .map(|i| {
            format!(
                "{{\"create\":{{\"_index\":\"logs-standin\",\"_id\":\"d{i}\"}}}}\n{{\"seq\":{i}}}\n"
            )
        })
        .collect();
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bulk.as_bytes()).unwrap();
    let template = json!({"index_patterns": ["logs-*"]})
        .to_string()
        .into_bytes();
    let answers = keep_alive(
        &c.url,
        &[
            (
                "POST",
                "/_bulk?refresh=true",
                "application/x-ndjson",
                gz.finish().unwrap(),
                true,
            ),
            (
                "PUT",
                "/_index_template/logs",
                "application/json",
                template,
                false,
            ),
            (
                "GET",
                "/logs-standin/_count",
                "application/json",
                Vec::new(),
                false,
            ),
        ],
    );
    let bulk_answer: Value = serde_json::from_str(&answers[0].1).unwrap();
    assert_eq!(answers[0].0, 200, "{bulk_answer}");
    assert_eq!(bulk_answer["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(bulk_answer["items"][0]["create"]["status"], 201);
    assert_eq!(
        answers[1].0, 200,
        "the stand-in's own answer, on the same connection"
    );
    let count: Value = serde_json::from_str(&answers[2].1).unwrap();
    assert_eq!(count["count"], 3, "{count}");
    assert_eq!(es.count("logs-standin").unwrap(), 3, "in osmem itself");
    let own: Vec<String> = c.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        own,
        ["/_index_template/logs"],
        "forwarded requests are not its own"
    );
    assert!(c.problems().is_empty(), "{:?}", c.problems());

    let alone = Cluster::start(Flavor::Elasticsearch8, None);
    assert_eq!(
        call(&alone, "GET", "/logs-*/_count", None).0,
        404,
        "no upstream"
    );
}
