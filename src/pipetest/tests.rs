//! Unit tests of the pipeline-test runner: the case file's strictness, the stages it drives
//! (each case one a user would write), and the verdict's field paths.

use super::case::{self, Case, CasePod, Expect};
use super::pipeline::{Outcome, Pipeline};
use super::verdict::{field, judge};
use crate::config::Config;
use serde_json::json;
use std::collections::BTreeMap;

fn config(toml: &str) -> Config {
    Config::from_toml(toml, |_| None).expect("a valid test config")
}

fn case(pod: Option<CasePod>, lines: &[&str]) -> Case {
    Case {
        name: "t".into(),
        pod,
        lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        expect: Vec::new(),
        file: "t.toml".into(),
    }
}

fn pod(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> Option<CasePod> {
    let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    Some(CasePod {
        namespace: "shop".into(),
        name: "web-1".into(),
        container: "web".into(),
        labels: map(labels),
        annotations: map(annotations),
        namespace_labels: map(&[("team", "checkout")]),
    })
}

/// (index, route) of each document, `None` for a drop.
fn summary(outcomes: &[Outcome]) -> Vec<Option<(String, String)>> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Document { index, route, .. } => Some((index.clone(), route.clone())),
            Outcome::Dropped { .. } => None,
        })
        .collect()
}

fn docs(outcomes: &[Outcome]) -> Vec<serde_json::Value> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Document { doc, .. } => Some(doc.clone()),
            Outcome::Dropped { .. } => None,
        })
        .collect()
}

const KUBE: &str = "[kubernetes]\nenabled = true\nhonour_exclude_annotation = true\n\
                    [multiline]\nrules = [\"java\"]\n\
                    [[route]]\nname = \"labelled\"\nindex = \"audit-%Y.%m\"\n\
                    when.labels = { \"class\" = \"audit\" }\n";

const TRACE: [&str; 2] = [
    "2026-12-01T10:00:00Z stderr F Exception in thread \"main\" java.lang.Error: x",
    "2026-12-01T10:00:00Z stderr F \tat a.B.c(B.java:1)",
];

#[test]
fn a_pods_labels_and_annotations_act_as_the_api_server_would_give_them() {
    let cfg = config(KUBE);
    let mut p = Pipeline::new(&cfg).unwrap();
    let line = "2026-12-01T10:00:00Z stdout F {\"msg\":\"x\"}";
    let labelled = p
        .run(&case(pod(&[], &[("class", "audit")]), &[line]))
        .unwrap();
    assert_eq!(
        summary(&labelled),
        [Some(("audit-2026.12".into(), "labelled".into()))]
    );
    let doc = &docs(&labelled)[0];
    assert_eq!(doc["kubernetes"]["labels"]["class"], "audit");
    assert_eq!(doc["kubernetes"]["namespace_labels"]["team"], "checkout");
    let excluded = p
        .run(&case(pod(&[("logferry.io/exclude", "true")], &[]), &[line]))
        .unwrap();
    assert_eq!(summary(&excluded), [None]);
    // The pod's own rules: none, so a trace stays two documents.
    let unjoined = p
        .run(&case(
            pod(&[("logferry.io/multiline", "none")], &[]),
            &TRACE,
        ))
        .unwrap();
    assert_eq!(unjoined.len(), 2);
    let joined = p.run(&case(pod(&[], &[]), &TRACE)).unwrap();
    assert_eq!(docs(&joined)[0]["logferry"]["multiline_lines"], 2);
}

#[test]
fn without_kubernetes_only_the_path_is_known() {
    // Validation refuses a label route without [kubernetes]; the annotation is what is tried.
    let cfg = config(
        "[kubernetes]\nhonour_exclude_annotation = true\n\
         [[route]]\nname = \"shop\"\nindex = \"shop-%Y\"\nwhen.namespaces = [\"shop\"]\n",
    );
    let mut p = Pipeline::new(&cfg).unwrap();
    let line = "2026-12-01T10:00:00Z stdout F {\"msg\":\"x\"}";
    let out = p
        .run(&case(
            pod(&[("logferry.io/exclude", "true")], &[("class", "audit")]),
            &[line],
        ))
        .unwrap();
    // The namespace is known from the path alone: namespace routes hold.
    assert_eq!(summary(&out), [Some(("shop-2026".into(), "shop".into()))]);
    assert_eq!(
        docs(&out)[0]["kubernetes"],
        json!({"namespace_name": "shop", "pod_name": "web-1", "container_name": "web"})
    );
}

#[test]
fn docker_pieces_join_and_a_piece_left_open_is_shipped_flagged() {
    let cfg = config("");
    let mut p = Pipeline::new(&cfg).unwrap();
    let out = p
        .run(&case(
            None,
            &[
                r#"{"log":"{\"msg\":\"he","stream":"stdout","time":"2026-12-01T10:00:00Z"}"#,
                r#"{"log":"llo\"}\n","stream":"stdout","time":"2026-12-01T10:00:00Z"}"#,
                r#"{"log":"never ends","stream":"stderr","time":"2026-12-01T10:00:01Z"}"#,
            ],
        ))
        .unwrap();
    let docs = docs(&out);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["msg"], "hello");
    assert_eq!(docs[1]["log"], "never ends");
    assert_eq!(docs[1]["logferry"]["unterminated"], true);
}

#[test]
fn lines_the_agent_would_not_read_as_written_fail_the_case_with_the_reason() {
    let cfg = config("");
    let mut p = Pipeline::new(&cfg).unwrap();
    for (lines, says) in [
        (
            &["2026-12-01T10:00:00Z stdout F a", "{\"log\":\"b\"}"][..],
            "line 2 is not a CRI line",
        ),
        (
            &[
                r#"{"log":"a\n","stream":"stdout","time":"2026-12-01T10:00:00Z"}"#,
                "x",
            ][..],
            "line 2 is not a docker json-file line",
        ),
        (&["2026-12-01T10:00:00Z stdout F a\nb"][..], "newline"),
        (&["2026-13-45T10:00:00Z stdout F a"][..], "time of line 1"),
    ] {
        let err = p.run(&case(None, lines)).unwrap_err();
        assert!(err.contains(says), "{lines:?}: {err}");
    }
}

#[test]
fn the_verdict_names_each_difference_and_counts_outcomes() {
    let cfg = config("");
    let mut p = Pipeline::new(&cfg).unwrap();
    let out = p
        .run(&case(None, &["2026-12-01T10:00:00Z stdout F {\"n\":1}"]))
        .unwrap();
    let expect = |fields: serde_json::Value| Expect {
        fields: serde_json::from_value(fields).unwrap(),
        ..Expect::default()
    };
    assert!(judge(&[expect(json!({"n": 1, "stream": "stdout"}))], &out).is_empty());
    let wrong = judge(&[expect(json!({"n": 1.0, "stream": "stderr"}))], &out);
    assert_eq!(
        wrong,
        [
            "outcome 1: fields.n: expected 1.0, got 1",
            "outcome 1: fields.stream: expected \"stderr\", got \"stdout\"",
        ]
    );
    let two = judge(&[Expect::default(), Expect::default()], &out);
    assert_eq!(
        two,
        ["expected 2 outcomes (documents or drops), the lines made 1"]
    );
}

#[test]
fn field_paths_reach_into_objects_and_find_dotted_keys_whole() {
    let doc = json!({"a": {"b": {"c": 1}}, "x.y": 2, "k": {"l.m": 3}});
    assert_eq!(field(&doc, "a.b.c"), Some(&json!(1)));
    assert_eq!(field(&doc, "x.y"), Some(&json!(2)));
    assert_eq!(field(&doc, "k.l.m"), Some(&json!(3)));
    assert_eq!(field(&doc, "a.b.d"), None);
    assert_eq!(field(&doc, "a"), Some(&json!({"b": {"c": 1}})));
}

#[test]
fn a_case_file_is_read_strictly_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for (text, says) in [
        (
            "[[case]]\nname = \"a\"\nlines = [\"x\"]\n[[case.expect]]\nfeilds = {}\n",
            ":5:1: case[0].expect[0].feilds: unknown field `feilds`",
        ),
        (
            "[[case]]\nname = \"a\"\nlines = [\"x\"]\npod = { namespace = \"n\", name = \"p\" }\n",
            ":4:7: case[0].pod: missing field `container`",
        ),
        (
            "[[case]]\nname = \"a\"\nlines = [\"x\"]\n[[case.expect]]\ndrop = true\nindex = \"i\"\n",
            ":5:8: case[0].expect[0].drop: a dropped record has no document",
        ),
        (
            "[[case]]\nname = \"a\"\nlines = []\n",
            ":3:9: case[0].lines: a case needs lines",
        ),
        (
            "[[case]]\nname = \"a\"\nlines = [\"x\"]\n[[case.expect]]\n\
             fields = { \"@timestamp\" = 2026-12-01T10:00:00Z }\n",
            ":5:10: case[0].expect[0].fields: @timestamp: a TOML date-time never equals",
        ),
        ("", "missing field `case`"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = case::load(&path).unwrap_err().to_string();
        assert!(err.contains(says), "{text:?}: {err}");
    }
}
