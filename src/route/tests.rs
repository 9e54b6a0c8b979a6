//! Routing as an operator's config meets it: first match wins, the default takes the rest, and
//! field conditions see the document as it will be indexed.

use super::*;
use crate::vocab::{Record, Stream};
use std::collections::BTreeMap;
use std::sync::Arc;

fn config(routes: &str, parse: &str) -> config::Config {
    let text = format!("[kubernetes]\nenabled = true\n[parse]\n{parse}\n{routes}");
    config::Config::from_toml(&text, |_| None).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn pod(namespace: &str, labels: &[(&str, &str)]) -> FileMeta {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    FileMeta {
        fields: format!(
            ",\"kubernetes\":{{\"namespace_name\":\"{namespace}\",\"labels\":{}}}",
            serde_json::to_string(&labels).unwrap()
        )
        .into_bytes(),
        namespace: Some(Arc::from(namespace)),
        labels: Arc::new(labels),
        ..FileMeta::default()
    }
}

/// The index the record with `message` from `pod`'s file goes to, or `None` when dropped.
fn routed(cfg: &config::Config, message: &str, pod: &FileMeta) -> Option<String> {
    let mut router = Router::new(cfg).unwrap();
    let documents = crate::parse::DocumentWriter::new(&cfg.parse);
    let rec = Record {
        time: "2026-12-02T06:00:00Z".into(),
        stream: Some(Stream::Stdout),
        message: std::borrow::Cow::Borrowed(message.as_bytes()),
        offset: 0,
        flags: Default::default(),
    };
    let mut index = None;
    documents.write_after(&mut Vec::new(), &rec, pod, |doc, _| {
        let route = router.pick(doc, pod);
        index = router.index_for(route, &rec.time).map(str::to_owned);
        index.is_some()
    });
    index
}

const ROUTES: &str = r#"
[elasticsearch]
index = "logs-%Y.%m.%d"
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
name = "health"
drop = true
when.field = { path = "http.path", matches = '^/healthz$' }
[[route]]
name = "payments"
index = "payments-%Y"
when.namespaces = ["payments"]
"#;

#[test]
fn the_first_route_that_takes_a_record_decides_and_the_default_takes_the_rest() {
    let cfg = config(ROUTES, "");
    let audit = pod("payments", &[("logging.klear.io/class", "audit")]);
    let plain = pod("payments", &[]);
    let auth = pod("auth-east", &[("logging.klear.io/class", "audit")]);
    let other = pod("web", &[("logging.klear.io/class", "audit")]);
    let line = r#"{"msg":"paid"}"#;
    assert_eq!(routed(&cfg, line, &audit).as_deref(), Some("audit-2026.12"));
    assert_eq!(routed(&cfg, line, &auth).as_deref(), Some("audit-2026.12"));
    // Namespace and label must both hold: the label alone, or the namespace alone, is not audit.
    assert_eq!(
        routed(&cfg, line, &other).as_deref(),
        Some("logs-2026.12.02")
    );
    assert_eq!(routed(&cfg, line, &plain).as_deref(), Some("payments-2026"));
    // A field condition: an audit event from any pod.
    let event = r#"{"log_type":"audit","user":"u1"}"#;
    assert_eq!(
        routed(&cfg, event, &other).as_deref(),
        Some("audit-2026.12")
    );
    // Earlier routes first: an audit event in payments goes to audit, not payments.
    assert_eq!(
        routed(&cfg, event, &plain).as_deref(),
        Some("audit-2026.12")
    );
    // Dropped: nothing written.
    let probe = r#"{"http":{"path":"/healthz","status":200}}"#;
    assert_eq!(routed(&cfg, probe, &plain), None);
    let not_probe = r#"{"http":{"path":"/healthz/deep"}}"#;
    assert_eq!(
        routed(&cfg, not_probe, &plain).as_deref(),
        Some("payments-2026")
    );
    // A file outside the kubelet's layout has no namespace: only field routes can take it.
    let unknown = FileMeta::default();
    assert_eq!(
        routed(&cfg, line, &unknown).as_deref(),
        Some("logs-2026.12.02")
    );
    assert_eq!(
        routed(&cfg, event, &unknown).as_deref(),
        Some("audit-2026.12")
    );
}

/// A route on one field, in a config with `parse` as given.
fn field_route(condition: &str, parse: &str) -> config::Config {
    config(
        &format!("[[route]]\nname = \"r\"\nindex = \"r\"\nwhen.field = {condition}\n"),
        parse,
    )
}

fn takes(cfg: &config::Config, message: &str) -> bool {
    routed(cfg, message, &pod("ns", &[("app", "web")])).as_deref() == Some("r")
}

#[test]
fn field_conditions_see_the_document_as_it_will_be_indexed() {
    // The agent's own `stream` is the runtime's; an application's is indexed as app_stream.
    let cfg = field_route(r#"{ path = "stream", equals = "audit" }"#, "");
    assert!(!takes(&cfg, r#"{"stream":"audit"}"#));
    let cfg = field_route(r#"{ path = "app_stream", equals = "audit" }"#, "");
    assert!(takes(&cfg, r#"{"stream":"audit"}"#));
    let cfg = field_route(r#"{ path = "stream", equals = "stdout" }"#, "");
    assert!(takes(&cfg, "plain text"));
    // Nested under parse.target, the field is where the index has it.
    let cfg = field_route(
        r#"{ path = "app.level", equals = "audit" }"#,
        "target = \"app\"",
    );
    assert!(takes(&cfg, r#"{"level":"audit"}"#));
    // (A path outside the target is refused by validation: it is never in a document.)
    // A message that is not JSON is `log`.
    let cfg = field_route(r#"{ path = "log", matches = "AUDIT" }"#, "");
    assert!(takes(&cfg, "2026-12-02 AUDIT user u1 logged in"));
    assert!(
        !takes(&cfg, r#"{"msg":"AUDIT"}"#),
        "a JSON message has no log field"
    );
    // A key repeated keeps its last value, as the document does.
    let cfg = field_route(r#"{ path = "class", equals = "audit" }"#, "");
    assert!(takes(&cfg, r#"{"class":"app","class":"audit"}"#));
    assert!(!takes(&cfg, r#"{"class":"audit","class":"app"}"#));
    // The pod's fields are in the document too.
    let cfg = field_route(r#"{ path = "kubernetes.labels.app", equals = "web" }"#, "");
    assert!(takes(&cfg, "text"));
}

#[test]
fn dotted_paths_reach_into_objects_arrays_and_dotted_keys() {
    let cfg = field_route(r#"{ path = "event.kind", equals = "audit" }"#, "");
    assert!(takes(&cfg, r#"{"event":{"kind":"audit"}}"#));
    assert!(
        takes(&cfg, r#"{"event.kind":"audit"}"#),
        "a dotted key whole"
    );
    assert!(takes(&cfg, r#"{"event":{"x":1,"kind":"audit"}}"#));
    assert!(takes(
        &cfg,
        r#"{"event":[{"kind":"app"},{"kind":"audit"}]}"#
    ));
    assert!(!takes(&cfg, r#"{"event":{"kind":"app"}}"#));
    assert!(!takes(&cfg, r#"{"event":"audit"}"#));
    // A key written whole is found even when an object of the path's first part is there too.
    assert!(takes(
        &cfg,
        r#"{"event.kind":"audit","event":{"action":"x"}}"#
    ));
    // ECS-style dotted log keys are indexed as app_log.*, away from the text `log`.
    let cfg = field_route(r#"{ path = "app_log.level", equals = "warn" }"#, "");
    assert!(takes(&cfg, r#"{"log.level":"warn","message":"m"}"#));
    let cfg = field_route(r#"{ path = "tags", equals = "phi" }"#, "");
    assert!(
        takes(&cfg, r#"{"tags":["x","phi"]}"#),
        "any element of an array"
    );
    let cfg = field_route(r#"{ path = "note", equals = "say \"hi\"" }"#, "");
    assert!(takes(&cfg, r#"{"note":"say \"hi\""}"#), "escapes are read");
}

#[test]
fn equals_compares_like_with_like_and_exists_ignores_null() {
    let cfg = field_route(r#"{ path = "status", equals = 500 }"#, "");
    assert!(takes(&cfg, r#"{"status":500}"#));
    assert!(takes(&cfg, r#"{"status":500.0}"#));
    assert!(
        !takes(&cfg, r#"{"status":"500"}"#),
        "a string is not a number"
    );
    assert!(!takes(&cfg, r#"{"status":501}"#));
    let cfg = field_route(r#"{ path = "audit", equals = true }"#, "");
    assert!(takes(&cfg, r#"{"audit":true}"#));
    assert!(!takes(&cfg, r#"{"audit":"true"}"#));
    let cfg = field_route(r#"{ path = "user.id", exists = true }"#, "");
    assert!(takes(&cfg, r#"{"user":{"id":0}}"#));
    assert!(!takes(&cfg, r#"{"user":{"id":null}}"#));
    assert!(!takes(&cfg, r#"{"user":{"id":[]}}"#));
    assert!(!takes(&cfg, r#"{"user":{"id":[null]}}"#));
    assert!(!takes(&cfg, r#"{"user":{"id":{}}}"#));
    assert!(takes(&cfg, r#"{"user":{"id":{"n":1}}}"#));
    assert!(!takes(&cfg, r#"{"user":{}}"#));
    let cfg = field_route(r#"{ path = "user.id", exists = false }"#, "");
    assert!(takes(&cfg, r#"{"user":{}}"#));
    assert!(!takes(&cfg, r#"{"user":{"id":"u1"}}"#));
    let cfg = field_route(r#"{ path = "status", matches = '^5\d\d$' }"#, "");
    assert!(
        takes(&cfg, r#"{"status":503}"#),
        "numbers by their JSON text"
    );
    assert!(takes(&cfg, r#"{"status":"503"}"#));
    assert!(!takes(&cfg, r#"{"status":200}"#));
}

#[test]
fn routes_keep_their_names_in_order_for_metrics_with_the_default_last() {
    let router = Router::new(&config(ROUTES, "")).unwrap();
    let names: Vec<&str> = router.names().collect();
    assert_eq!(
        names,
        ["audit", "audit-events", "health", "payments", "default"]
    );
}
