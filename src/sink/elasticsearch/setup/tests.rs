//! The plan as the platform's policy needs it: audit kept seven years to the last record of
//! each monthly index, app logs ninety days, and nothing the agent writes outranked by a
//! built-in template or tied with another of its own.

use super::plan::{Capabilities, Flavor, Plan};
use crate::config::Config;
use serde_json::json;

fn plan(text: &str) -> Plan {
    Plan::new(&Config::from_toml(text, |_| None).unwrap_or_else(|p| panic!("{p:#?}")))
}

const PLATFORM: &str = r#"
[elasticsearch]
index = "logs-%Y.%m.%d"
retention = "90d"
[[route]]
name = "audit"
index = "audit-%Y.%m"
retention = "7y"
when.namespaces = ["payments", "auth"]
[[route]]
name = "audit-events"
index = "audit-%Y.%m"
retention = "7y"
when.field = { path = "log_type", equals = "audit" }
[[route]]
name = "probes"
drop = true
when.field = { path = "path", equals = "/healthz" }
"#;

#[test]
fn one_template_per_index_pattern_and_one_policy_per_lifecycle() {
    let p = plan(PLATFORM);
    let templates: Vec<(&str, &str, u64)> = p
        .templates
        .iter()
        .map(|t| (t.name.as_str(), t.pattern.as_str(), t.priority))
        .collect();
    // The second audit route shares the first's index: one template. The drop route has none.
    assert_eq!(
        templates,
        [
            ("logferry-audit", "audit-*.*", 500 + 7 * 100 + 99),
            // Third in line (the second audit route shares the first's template).
            ("logferry-default", "logs-*.*.*", 500 + 7 * 100 + 97)
        ]
    );
    let policies: Vec<(&str, Option<u32>)> = p
        .policies
        .iter()
        .map(|p| (p.name.as_str(), p.delete_after_days))
        .collect();
    // Deleted a retention after the index's last day: a monthly index lives 31 days more.
    assert_eq!(
        policies,
        [
            ("logferry-2557d-monthly", Some(2557 + 31)),
            ("logferry-90d-daily", Some(91))
        ]
    );
    assert_eq!(
        p.templates[0].policy.as_deref(),
        Some("logferry-2557d-monthly")
    );
}

#[test]
fn the_template_maps_the_agents_fields_and_names_its_ilm_policy_only_on_elasticsearch() {
    let p = plan(PLATFORM);
    let es = p.templates[0].body(Flavor::Elasticsearch);
    assert_eq!(es["index_patterns"], json!(["audit-*.*"]));
    assert_eq!(
        es["template"]["settings"]["index"]["lifecycle"]["name"],
        "logferry-2557d-monthly"
    );
    let mappings = &es["template"]["mappings"];
    assert_eq!(mappings["properties"]["@timestamp"]["type"], "date");
    assert_eq!(mappings["properties"]["log"]["type"], "text");
    let dynamic = mappings["dynamic_templates"].to_string();
    assert!(
        dynamic.contains(r#""path_match":"kubernetes.*""#),
        "{dynamic}"
    );
    assert!(dynamic.contains(r#""path_match":"docker.*""#), "{dynamic}");
    assert_eq!(es["_meta"]["managed_by"], "logferry");
    // OpenSearch attaches ISM policies by pattern; the ILM setting would be refused there.
    let os = p.templates[0].body(Flavor::OpenSearch);
    assert!(
        os["template"]["settings"]["index"]
            .get("lifecycle")
            .is_none(),
        "{os}"
    );
    // One value of the wrong type keeps the rest of its document, on both.
    for t in [&es, &os] {
        assert_eq!(
            t["template"]["settings"]["index"]["mapping"]["ignore_malformed"],
            true
        );
    }
    // A monthly index cannot have its date parsed by ILM (it needs -yyyy.MM.dd): its age
    // counts from its creation; a daily one's from its name.
    assert!(
        es["template"]["settings"]["index"]["lifecycle"]
            .get("parse_origination_date")
            .is_none()
    );
    let daily = p
        .templates
        .iter()
        .find(|t| t.index.ends_with("-%Y.%m.%d") && t.policy.is_some())
        .expect("a daily template with a retention");
    let body = daily.body(Flavor::Elasticsearch);
    assert_eq!(
        body["template"]["settings"]["index"]["lifecycle"]["parse_origination_date"], true,
        "{body}"
    );
    // Fields past the limit kept unindexed only where the cluster knows the setting; an
    // Elasticsearch before 7.14 gets its templates without a lifecycle.
    let old = Capabilities {
        lifecycle: false,
        ignore_dynamic_beyond_limit: false,
    };
    let body = daily.body_for(Flavor::Elasticsearch, old);
    assert!(
        body["template"]["settings"]["index"]
            .get("lifecycle")
            .is_none()
    );
    assert!(
        body["template"]["settings"]["index"]["mapping"]
            .get("total_fields")
            .is_none()
    );
    let new = Capabilities {
        lifecycle: true,
        ignore_dynamic_beyond_limit: true,
    };
    let body = daily.body_for(Flavor::Elasticsearch, new);
    assert_eq!(
        body["template"]["settings"]["index"]["mapping"]["total_fields"]["ignore_dynamic_beyond_limit"],
        true
    );
}

#[test]
fn policies_delete_after_the_retention_and_warm_only_lowers_priority() {
    let p = plan(&format!(
        "{PLATFORM}\n[elasticsearch.setup]\nwarm_after = \"30d\"\n"
    ));
    let ilm = p.policies[0].body(Flavor::Elasticsearch);
    let phases = &ilm["policy"]["phases"];
    assert_eq!(phases["delete"]["min_age"], "2588d");
    assert_eq!(phases["delete"]["actions"], json!({"delete": {}}));
    assert_eq!(phases["warm"]["min_age"], "61d");
    // Nothing that would refuse a late record (read-only, force-merge, shrink) and no rollover.
    assert_eq!(
        phases["warm"]["actions"],
        json!({"set_priority": {"priority": 50}})
    );
    assert!(!ilm.to_string().contains("rollover"));
    assert_eq!(ilm["policy"]["_meta"]["managed_by"], "logferry");
    let ism = p.policies[0].body(Flavor::OpenSearch);
    let policy = &ism["policy"];
    assert_eq!(policy["default_state"], "hot");
    let states: Vec<&str> = policy["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["hot", "warm", "delete"]);
    assert_eq!(
        policy["states"][1]["transitions"][0]["conditions"]["min_index_age"],
        "2588d"
    );
    assert_eq!(
        policy["ism_template"],
        json!([{"index_patterns": ["audit-*.*"], "priority": 1299}])
    );
    assert!(
        policy["description"]
            .as_str()
            .unwrap()
            .contains("managed_by: logferry")
    );
    // A 90-day retention on daily indices is warm at 31 days: before its delete at 91.
    assert_eq!(p.policies[1].warm_after_days, Some(31));
}

#[test]
fn what_is_installed_follows_the_setup_switches() {
    // No retention anywhere: templates only.
    let p = plan("[[route]]\nname = \"a\"\nindex = \"a-%Y\"\nwhen.namespaces = [\"a\"]\n");
    assert_eq!((p.templates.len(), p.policies.len()), (2, 0));
    let off = plan(&format!(
        "{PLATFORM}\n[elasticsearch.setup]\nlifecycle = false\n"
    ));
    assert!(off.policies.is_empty());
    assert!(off.templates.iter().all(|t| t.policy.is_none()));
    // (`validate` asks for the lifecycle to be explicit then: on Elasticsearch nothing would
    // attach the policies.)
    let no_templates = plan(&format!(
        "{PLATFORM}\n[elasticsearch.setup]\ntemplates = false\nlifecycle = true\n"
    ));
    assert!(no_templates.templates.is_empty());
    assert_eq!(
        no_templates.policies.len(),
        2,
        "ISM policies attach without templates"
    );
}

#[test]
fn priorities_never_tie_narrower_patterns_win_and_stay_above_the_built_in_templates() {
    let p = plan(
        "[[route]]\nname = \"a\"\nindex = \"ab-%Y\"\nwhen.namespaces = [\"a\"]\n\
         [[route]]\nname = \"b\"\nindex = \"%Y-ab\"\nwhen.namespaces = [\"b\"]\n\
         [[route]]\nname = \"c\"\nindex = \"x%Yb\"\nwhen.namespaces = [\"c\"]\n",
    );
    let mut priorities: Vec<u64> = p.templates.iter().map(|t| t.priority).collect();
    assert!(priorities.iter().all(|p| *p > 200), "{priorities:?}");
    // The first route's template outranks a later one of equal specificity.
    assert!(
        priorities[0] > priorities[1] && priorities[1] > priorities[2],
        "{priorities:?}"
    );
    priorities.dedup();
    assert_eq!(priorities.len(), p.templates.len());
    // A narrower pattern later in the list still outranks a wider one before it.
    let p = plan(
        "[[route]]\nname = \"audit\"\nindex = \"audit-%Y\"\nwhen.namespaces = [\"a\"]\n\
         [[route]]\nname = \"monthly\"\nindex = \"app-%Y.%m\"\nwhen.namespaces = [\"m\"]\n\
         [[route]]\nname = \"daily\"\nindex = \"app-%Y.%m.%d\"\nwhen.namespaces = [\"d\"]\n",
    );
    let of = |name: &str| {
        p.templates
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .priority
    };
    assert!(
        of("logferry-daily") > of("logferry-monthly"),
        "{:?}",
        p.templates
    );
}

#[test]
fn on_opensearch_indices_without_retention_are_kept_by_a_policy_of_their_own() {
    // logs-legal-2026.12.02 matches the default's logs-*.*.* too: ISM would delete it at 91 days.
    let p = plan(
        "[elasticsearch]\nindex = \"logs-%Y.%m.%d\"\nretention = \"90d\"\n\
         [[route]]\nname = \"legal\"\nindex = \"logs-legal-%Y.%m.%d\"\nwhen.namespaces = [\"legal\"]\n",
    );
    let keep = p
        .policies
        .iter()
        .find(|p| p.name == "logferry-keep")
        .expect("a keep policy");
    let legal = p
        .templates
        .iter()
        .find(|t| t.name == "logferry-legal")
        .unwrap();
    let default = p
        .templates
        .iter()
        .find(|t| t.name == "logferry-default")
        .unwrap();
    assert_eq!(
        keep.patterns,
        [("logs-legal-*.*.*".to_owned(), legal.priority)]
    );
    assert!(legal.priority > default.priority);
    let ism = keep.body(Flavor::OpenSearch);
    assert_eq!(
        ism["policy"]["states"],
        json!([{"name": "hot", "actions": [], "transitions": []}])
    );
    // Elasticsearch needs none: the narrower template, without a lifecycle, wins.
    assert!(!keep.wanted_by(Flavor::Elasticsearch));
    assert!(
        legal.body(Flavor::Elasticsearch)["template"]["settings"]["index"]
            .get("lifecycle")
            .is_none()
    );
}
