//! Composable index templates: `GET/HEAD/PUT/DELETE _index_template/<name>`.
//!
//! Based on Elasticsearch 8/9's `ComposableIndexTemplate` and `Template` parsers and
//! `MetadataIndexTemplateService` (name and pattern rules, `create=true`, overlapping patterns of
//! one priority), its "Create or update index template API" page (fields: `index_patterns`,
//! `template.{settings,mappings,aliases,lifecycle}`, `composed_of`, `priority` ≥ 0, `version`,
//! `_meta`, `data_stream.{hidden,allow_custom_routing}`, `allow_auto_create`,
//! `ignore_missing_component_templates`, `deprecated`; 9.x adds
//! `template.data_stream_options`), and OpenSearch 2/3's "Index templates" page (no lifecycle or
//! auto-create fields; `data_stream.timestamp_field`, `context`). Settings are normalised as both
//! store them (an `index.` prefix, string values); a setting that belongs to the other product's
//! retention plugin (`index.lifecycle.*` on OpenSearch, `index.plugins.index_state_management.*`
//! on Elasticsearch) is an unknown setting, with osmem-server's (and OpenSearch's) wording.

use super::{Flavor, Query, Refusal, Routed, State, patterns_overlap, strings, unknown_fields};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub(super) fn route(
    s: &mut State,
    method: &str,
    rest: &[&str],
    query: &Query,
    body: Option<&Value>,
) -> Routed {
    let path = format!("/_index_template/{}", rest.join("/"));
    let name = match rest {
        [] => "*",
        [name] => name,
        _ => return super::no_handler(method, &path),
    };
    let answer = match method {
        "GET" | "HEAD" => get(s, name, query, &path),
        "PUT" | "POST" if !rest.is_empty() => put(s, name, query, &path, body),
        "DELETE" if !rest.is_empty() => delete(s, name, query, &path),
        _ if rest.is_empty() => return super::wrong_method(method, &path, "GET, HEAD"),
        _ => return super::wrong_method(method, &path, "GET, HEAD, PUT, POST, DELETE"),
    };
    answer.into()
}

fn get(s: &State, name: &str, query: &Query, path: &str) -> Result<(u16, Value), Refusal> {
    query.only(
        path,
        &[
            "flat_settings",
            "local",
            "master_timeout",
            "include_defaults",
        ],
    )?;
    let flat = query.flag("flat_settings")?;
    let wanted: Vec<&str> = name.split(',').collect();
    let found: Vec<Value> = s
        .templates
        .iter()
        .filter(|(n, _)| {
            wanted
                .iter()
                .any(|w| patterns_overlap(w, n) && (w.contains('*') || w == n))
        })
        .map(|(n, t)| {
            let mut t = t.clone();
            if flat && let Some(settings) = t.pointer_mut("/template/settings") {
                *settings = Value::Object(flatten(settings));
            }
            json!({"name": n, "index_template": t})
        })
        .collect();
    if found.is_empty() && !name.contains('*') {
        // A lookup, not a fault: the agent asks before it creates.
        return Ok((404, not_found(name).body()));
    }
    Ok((200, json!({ "index_templates": found })))
}

fn not_found(name: &str) -> Refusal {
    Refusal::new(
        404,
        "resource_not_found_exception",
        format!("index template matching [{name}] not found"),
    )
}

fn put(
    s: &mut State,
    name: &str,
    query: &Query,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Refusal> {
    query.only(path, &["create", "cause", "master_timeout"])?;
    let body =
        body.ok_or_else(|| Refusal::new(400, "parse_exception", "request body is required"))?;
    if query.flag("create")? && s.templates.contains_key(name) {
        return Err(Refusal::illegal(format!(
            "index template [{name}] already exists"
        )));
    }
    let normal = check(s.flavor, name, body, &s.templates)?;
    s.templates.insert(name.to_owned(), normal);
    Ok((200, json!({"acknowledged": true})))
}

fn delete(s: &mut State, name: &str, query: &Query, path: &str) -> Result<(u16, Value), Refusal> {
    query.only(path, &["master_timeout", "timeout"])?;
    if s.templates.remove(name).is_none() {
        return Ok((404, not_found(name).body()));
    }
    Ok((200, json!({"acknowledged": true})))
}

fn invalid(name: &str, why: &str) -> Refusal {
    Refusal::new(
        400,
        "invalid_index_template_exception",
        format!("index_template [{name}] invalid, cause [Validation Failed: 1: {why};]"),
    )
}

/// Checks a template body as the product would; returns it as the product stores it.
pub(super) fn check(
    flavor: Flavor,
    name: &str,
    body: &Value,
    existing: &BTreeMap<String, Value>,
) -> Result<Value, Refusal> {
    if name.to_lowercase() != name {
        return Err(invalid(name, "name must be lower cased"));
    }
    if let Some(why) = bad_name(name) {
        return Err(invalid(name, &format!("name {why}")));
    }
    let object = body
        .as_object()
        .ok_or_else(|| Refusal::parse("[index_template] expected an object"))?;
    let known = known_fields(flavor);
    if let Some(unknown) = unknown_fields(object, known) {
        return Err(Refusal::parse(format!(
            "[index_template] unknown field [{unknown}]"
        )));
    }
    let patterns = object
        .get("index_patterns")
        .ok_or_else(|| Refusal::parse("Required [index_patterns]"))
        .and_then(|p| {
            strings(p)
                .ok_or_else(|| Refusal::parse("[index_template] index_patterns must be strings"))
        })?;
    if patterns.is_empty() {
        return Err(invalid(name, "index patterns are missing"));
    }
    for p in &patterns {
        if let Some(why) = bad_name(p) {
            return Err(invalid(name, &format!("index_pattern [{p}] {why}")));
        }
    }
    let priority = match object.get("priority") {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_i64()
            .ok_or_else(|| Refusal::parse("[index_template] failed to parse field [priority]"))?,
    };
    if priority < 0 {
        return Err(invalid(name, "index template priority must be >= 0"));
    }
    check_scalars(object)?;
    check_composed_of(name, object)?;
    if let Some(ds) = object.get("data_stream") {
        check_data_stream(flavor, ds)?;
    }
    let mut normal = body.clone();
    if let Some(template) = object.get("template") {
        normal["template"] = check_template(flavor, template)?;
    }
    check_overlap(name, &patterns, priority, existing)?;
    Ok(normal)
}

/// The template fields each product's parser knows.
fn known_fields(flavor: Flavor) -> &'static [&'static str] {
    if flavor.is_elasticsearch() {
        &[
            "index_patterns",
            "template",
            "composed_of",
            "priority",
            "version",
            "_meta",
            "data_stream",
            "allow_auto_create",
            "ignore_missing_component_templates",
            "deprecated",
        ]
    } else {
        &[
            "index_patterns",
            "template",
            "composed_of",
            "priority",
            "version",
            "_meta",
            "data_stream",
            "context",
        ]
    }
}

/// `version`, `_meta` and the flags: each of its type, as the parser wants them.
fn check_scalars(object: &Map<String, Value>) -> Result<(), Refusal> {
    if object
        .get("version")
        .is_some_and(|v| !v.is_i64() && !v.is_null())
    {
        return Err(Refusal::parse(
            "[index_template] failed to parse field [version]",
        ));
    }
    if object.get("_meta").is_some_and(|m| !m.is_object()) {
        return Err(Refusal::parse(
            "[index_template] failed to parse field [_meta]: expected an object",
        ));
    }
    for flag in ["allow_auto_create", "deprecated"] {
        if object.get(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(Refusal::parse(format!(
                "[index_template] failed to parse field [{flag}]"
            )));
        }
    }
    Ok(())
}

/// The characters and first letters both products refuse in index names and patterns
/// (`MetadataCreateIndexService#validateIndexOrAliasName`, less `*`, which a pattern may hold).
fn bad_name(text: &str) -> Option<String> {
    if let Some(c) = text.chars().find(|c| " ,#:\\/?\"<>|".contains(*c)) {
        return Some(format!("must not contain a '{c}'"));
    }
    if text.starts_with(['_', '-', '+']) {
        return Some("must not start with '_', '-', or '+'".to_owned());
    }
    None
}

/// The stand-in keeps no component templates, so any named one is missing (unless listed in
/// `ignore_missing_component_templates`), as on a cluster that has none.
fn check_composed_of(name: &str, object: &Map<String, Value>) -> Result<(), Refusal> {
    let Some(composed) = object.get("composed_of") else {
        return Ok(());
    };
    let composed = strings(composed)
        .filter(|_| composed.is_array())
        .ok_or_else(|| Refusal::parse("[index_template] failed to parse field [composed_of]"))?;
    let ignored = object
        .get("ignore_missing_component_templates")
        .and_then(strings)
        .unwrap_or_default();
    let missing: Vec<String> = composed
        .into_iter()
        .filter(|c| !ignored.contains(c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(invalid(
        name,
        &format!(
            "index template [{name}] specifies component templates {missing:?} that do not exist"
        ),
    ))
}

fn check_data_stream(flavor: Flavor, ds: &Value) -> Result<(), Refusal> {
    let ds = ds
        .as_object()
        .ok_or_else(|| Refusal::parse("[index_template] failed to parse field [data_stream]"))?;
    let known: &[&str] = if flavor.is_elasticsearch() {
        &["hidden", "allow_custom_routing"]
    } else {
        &["timestamp_field"]
    };
    if let Some(unknown) = unknown_fields(ds, known) {
        return Err(Refusal::parse(format!(
            "[data_stream_template] unknown field [{unknown}]"
        )));
    }
    let typed = ds.iter().all(|(k, v)| match k.as_str() {
        "timestamp_field" => v.get("name").is_some_and(Value::is_string),
        _ => v.is_boolean(),
    });
    if !typed {
        return Err(Refusal::parse(
            "[data_stream_template] a field has the wrong type",
        ));
    }
    Ok(())
}

/// `template.{settings,mappings,aliases,…}`; returns it with its settings normalised.
fn check_template(flavor: Flavor, template: &Value) -> Result<Value, Refusal> {
    let object = template
        .as_object()
        .ok_or_else(|| Refusal::parse("[index_template] failed to parse field [template]"))?;
    let known: &[&str] = match flavor {
        Flavor::Elasticsearch8 => &["settings", "mappings", "aliases", "lifecycle"],
        Flavor::Elasticsearch9 => &[
            "settings",
            "mappings",
            "aliases",
            "lifecycle",
            "data_stream_options",
        ],
        Flavor::OpenSearch2 | Flavor::OpenSearch3 => &["settings", "mappings", "aliases"],
    };
    if let Some(unknown) = unknown_fields(object, known) {
        return Err(Refusal::parse(format!(
            "[template] unknown field [{unknown}]"
        )));
    }
    for field in ["mappings", "aliases", "lifecycle", "data_stream_options"] {
        if object.get(field).is_some_and(|v| !v.is_object()) {
            return Err(Refusal::parse(format!(
                "[template] failed to parse field [{field}]: expected an object"
            )));
        }
    }
    if let Some(aliases) = object.get("aliases").and_then(Value::as_object)
        && let Some((alias, _)) = aliases.iter().find(|(_, v)| !v.is_object())
    {
        return Err(Refusal::parse(format!(
            "[template] failed to parse field [aliases]: alias [{alias}] is not an object"
        )));
    }
    let mut normal = template.clone();
    if let Some(settings) = object.get("settings") {
        if !settings.is_object() {
            return Err(Refusal::parse(
                "[template] failed to parse field [settings]: expected an object",
            ));
        }
        let flat = flatten(settings);
        for (key, value) in &flat {
            check_setting(flavor, key, value)?;
        }
        normal["settings"] = nest(&flat);
    }
    Ok(normal)
}

/// The settings of the two retention plugins: known (and typed) on their own product, unknown
/// on the other one.
fn check_setting(flavor: Flavor, key: &str, value: &Value) -> Result<(), Refusal> {
    const ILM: &[(&str, Kind)] = &[
        ("index.lifecycle.name", Kind::Text),
        ("index.lifecycle.rollover_alias", Kind::Text),
        ("index.lifecycle.parse_origination_date", Kind::Bool),
        ("index.lifecycle.origination_date", Kind::Number),
        ("index.lifecycle.indexing_complete", Kind::Bool),
        ("index.lifecycle.step.wait_time_threshold", Kind::Text),
        ("index.lifecycle.skip", Kind::Bool),
        ("index.lifecycle.prefer_ilm", Kind::Bool),
    ];
    const ISM: &[(&str, Kind)] = &[
        (
            "index.plugins.index_state_management.rollover_alias",
            Kind::Text,
        ),
        (
            "index.plugins.index_state_management.auto_manage",
            Kind::Bool,
        ),
        (
            "index.opendistro.index_state_management.rollover_alias",
            Kind::Text,
        ),
        (
            "index.opendistro.index_state_management.auto_manage",
            Kind::Bool,
        ),
    ];
    let (own, own_prefixes, foreign_prefixes): (&[(&str, Kind)], &[&str], &[&str]) =
        if flavor.is_elasticsearch() {
            (
                ILM,
                &["index.lifecycle."],
                &["index.plugins.", "index.opendistro."],
            )
        } else {
            (
                ISM,
                &[
                    "index.plugins.index_state_management.",
                    "index.opendistro.index_state_management.",
                ],
                &["index.lifecycle."],
            )
        };
    let unknown = || {
        Refusal::new(
            400,
            "settings_exception",
            format!(
                "unknown setting [{key}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"
            ),
        )
    };
    if foreign_prefixes.iter().any(|p| key.starts_with(p)) {
        return Err(unknown());
    }
    if !own_prefixes.iter().any(|p| key.starts_with(p)) {
        return Ok(());
    }
    let Some((_, kind)) = own.iter().find(|(k, _)| *k == key) else {
        return Err(unknown());
    };
    let text = value.as_str().unwrap_or_default();
    let fits = match kind {
        Kind::Text => value.is_string(),
        Kind::Bool => text == "true" || text == "false",
        Kind::Number => text.parse::<i64>().is_ok(),
    };
    if !fits {
        return Err(Refusal::illegal(format!(
            "illegal value [{value}] for setting [{key}]"
        )));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Bool,
    Number,
}

/// Settings as both products keep them: dotted keys under `index.`, scalar values as strings.
fn flatten(settings: &Value) -> Map<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
        match value {
            Value::Object(o) => {
                for (k, v) in o {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(items) => {
                let items = items.iter().map(|v| Value::String(scalar(v))).collect();
                out.insert(prefixed(prefix), Value::Array(items));
            }
            Value::Null => {
                out.insert(prefixed(prefix), Value::Null);
            }
            v => {
                out.insert(prefixed(prefix), Value::String(scalar(v)));
            }
        }
    }
    fn prefixed(key: &str) -> String {
        if key.starts_with("index.") {
            key.to_owned()
        } else {
            format!("index.{key}")
        }
    }
    fn scalar(v: &Value) -> String {
        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
    }
    let mut out = Map::new();
    walk("", settings, &mut out);
    out
}

/// Dotted keys back into objects, as a GET without `flat_settings` answers.
fn nest(flat: &Map<String, Value>) -> Value {
    let mut root = Map::new();
    for (key, value) in flat {
        let mut node = &mut root;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_owned(), value.clone());
            } else {
                let next = node.entry(part.to_owned()).or_insert_with(|| json!({}));
                if !next.is_object() {
                    *next = json!({});
                }
                node = next.as_object_mut().expect("just made an object");
            }
        }
    }
    Value::Object(root)
}

/// Two templates whose patterns can match one index, with one priority, are refused: which one
/// applied at index creation would be a coin toss (the words are Elasticsearch's and osmem's).
fn check_overlap(
    name: &str,
    patterns: &[String],
    priority: i64,
    existing: &BTreeMap<String, Value>,
) -> Result<(), Refusal> {
    let clashing: Vec<(&String, Vec<String>)> = existing
        .iter()
        .filter(|(other, _)| *other != name)
        .filter(|(_, t)| t["priority"].as_i64().unwrap_or(0) == priority)
        .filter_map(|(other, t)| {
            let theirs = strings(&t["index_patterns"]).unwrap_or_default();
            let overlaps = theirs
                .iter()
                .any(|a| patterns.iter().any(|b| patterns_overlap(a, b)));
            overlaps.then_some((other, theirs))
        })
        .collect();
    if clashing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = clashing.iter().map(|(n, _)| n.as_str()).collect();
    let with: Vec<String> = clashing
        .iter()
        .map(|(n, p)| format!("{n} => [{}]", p.join(", ")))
        .collect();
    Err(Refusal::illegal(format!(
        "index template [{name}] has index patterns [{}] matching patterns from existing templates [{}] with patterns ({}) that have the same priority [{priority}], multiple index templates may not match during index creation, please use a different priority",
        patterns.join(", "),
        names.join(", "),
        with.join(","),
    )))
}
