//! OpenSearch's Index State Management policies: `GET/PUT/DELETE _plugins/_ism/policies/<id>`
//! (and the legacy `_opendistro/_ism/…`).
//!
//! Based on opensearch-project/index-management (commit 5078c9a6, `model/Policy.kt`,
//! `State.kt`, `Transition.kt`, `ISMTemplate.kt`, `ISMActionsParser.kt`, `action/*Parser.kt`,
//! `spi/…/ActionRetry.kt`, `ActionTimeout.kt`, `TransportIndexPolicyAction.kt`): `description`
//! and `default_state` required, the default state must exist, state names unique, at least one
//! state, transitions name existing states, no action after `delete` and no transitions in a
//! state that deletes; actions are the known ISM actions with their parsers' fields plus
//! `timeout`/`retry`; a transition has at most one condition, from `min_index_age`,
//! `min_doc_count` (> 0), `min_size` (> 0), `min_rollover_age`, `cron` (and, in 3.x,
//! `no_alias`, `min_state_age`) — note: `min_primary_shard_size` is a *rollover* field, not a
//! transition condition; `ism_template` is an object or an array of `{index_patterns, priority
//! ≥ 0, last_updated_time}`, and two policies' ISM templates may not overlap with one priority.
//! A PUT of an existing id without `if_seq_no`+`if_primary_term` is a create, refused with 409
//! `version_conflict_engine_exception`, as the transport action's `OpType.CREATE` makes it.
//! 3.x only: `search_only`, `convert_index_to_remote`, rollover `any_of`.
//! Errors are `illegal_argument_exception` (the parsers' `require`s) or `parse_exception`
//! (`TimeValue`/`ByteSizeValue`).

use super::{
    Flavor, Query, Refusal, Routed, State, StoredPolicy, byte_size, now_ms, patterns_overlap,
    store_policy, strings, time_value, unknown_fields,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

mod actions;

/// The index ISM keeps its policies in (named in DELETE answers).
const CONFIG_INDEX: &str = ".opendistro-ism-config";

pub(super) fn route(
    s: &mut State,
    method: &str,
    rest: &[&str],
    query: &Query,
    body: Option<&Value>,
) -> Routed {
    let path = format!("/_plugins/_ism/{}", rest.join("/"));
    let answer = match (method, rest) {
        ("GET", ["policies"]) => list(s, query, &path),
        ("GET" | "HEAD", ["policies", id]) => get(s, id, query, &path),
        ("PUT", ["policies", id]) => put(s, id, query, &path, body),
        ("DELETE", ["policies", id]) => delete(s, id, query, &path),
        (_, ["policies", _]) => {
            return super::wrong_method(method, &path, "GET, HEAD, PUT, DELETE");
        }
        (_, ["policies"]) => return super::wrong_method(method, &path, "GET"),
        (_, ["policies", ..]) => return super::no_handler(method, &path),
        _ => return super::unmodelled(method, &path),
    };
    answer.into()
}

fn not_found() -> Refusal {
    Refusal::new(404, "status_exception", "Policy not found")
}

/// GET's `policy` is the policy object itself (`GetPolicyResponse` writes it without its type).
fn document(id: &str, p: &StoredPolicy) -> Value {
    json!({"_id": id, "_version": p.version, "_seq_no": p.seq_no, "_primary_term": 1, "policy": p.body["policy"]})
}

fn list(s: &State, query: &Query, path: &str) -> Result<(u16, Value), Refusal> {
    query.only(
        path,
        &["from", "size", "sortField", "sortOrder", "queryString"],
    )?;
    let policies: Vec<Value> = s.policies.iter().map(|(id, p)| document(id, p)).collect();
    Ok((
        200,
        json!({"policies": policies, "total_policies": s.policies.len()}),
    ))
}

fn get(s: &State, id: &str, query: &Query, path: &str) -> Result<(u16, Value), Refusal> {
    query.only(path, &[])?;
    match s.policies.get(id) {
        Some(p) => Ok((200, document(id, p))),
        None => Ok((404, not_found().body())),
    }
}

fn put(
    s: &mut State,
    id: &str,
    query: &Query,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Refusal> {
    query.only(path, &["if_seq_no", "if_primary_term", "refresh"])?;
    let body =
        body.ok_or_else(|| Refusal::new(400, "parse_exception", "request body is required"))?;
    let number = |key: &str| {
        query
            .get(key)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Refusal::illegal(format!(
                        "Failed to parse long parameter [{key}] with value [{v}]"
                    ))
                })
            })
            .transpose()
    };
    let (seq_no, term) = (number("if_seq_no")?, number("if_primary_term")?);
    let conflict = |why: String| {
        Refusal::new(
            409,
            "version_conflict_engine_exception",
            format!("[{id}]: version conflict, {why}"),
        )
    };
    match (s.policies.get(id), seq_no.zip(term)) {
        (Some(p), None) => {
            return Err(conflict(format!(
                "document already exists (current version [{}])",
                p.version
            )));
        }
        (Some(p), Some((seq, term))) if seq != p.seq_no || term != 1 => {
            return Err(conflict(format!(
                "required seqNo [{seq}], primary term [{term}]. current document has seqNo [{}] and primary term [1]",
                p.seq_no
            )));
        }
        (None, Some((seq, term))) => {
            return Err(conflict(format!(
                "required seqNo [{seq}], primary term [{term}]. but no document was found"
            )));
        }
        _ => {}
    }
    let created = !s.policies.contains_key(id);
    let normal = check(s.flavor, id, body, &s.policies)?;
    let stored = store_policy(s, id, normal);
    let answer = json!({"_id": id, "_version": stored.version, "_primary_term": 1, "_seq_no": stored.seq_no,
                        "policy": stored.body});
    Ok((if created { 201 } else { 200 }, answer))
}

fn delete(s: &mut State, id: &str, query: &Query, path: &str) -> Result<(u16, Value), Refusal> {
    query.only(path, &["refresh"])?;
    let (status, result, version) = match s.policies.remove(id) {
        Some(p) => (200, "deleted", p.version + 1),
        None => (404, "not_found", 1),
    };
    let seq_no = s.next_seq_no;
    s.next_seq_no += 1;
    Ok((
        status,
        json!({"_index": CONFIG_INDEX, "_id": id, "_version": version, "result": result,
                       "forced_refresh": true, "_shards": {"total": 2, "successful": 1, "failed": 0},
                       "_seq_no": seq_no, "_primary_term": 1}),
    ))
}

fn invalid(reason: impl Into<String>) -> Refusal {
    Refusal::illegal(reason)
}

/// Checks a policy body (`{"policy": …}`); returns it as ISM stores and returns it.
pub(super) fn check(
    flavor: Flavor,
    id: &str,
    body: &Value,
    existing: &BTreeMap<String, StoredPolicy>,
) -> Result<Value, Refusal> {
    let policy = policy_of(body)?;
    policy
        .get("description")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("description is null"))?;
    let default_state = policy
        .get("default_state")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("default_state is null"))?;
    let states = policy
        .get("states")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("states is null"))?;
    let mut names = Vec::new();
    let mut normal_states = Vec::new();
    for state in states {
        let (name, normal) = check_state(flavor, state)?;
        names.push(name);
        normal_states.push(normal);
    }
    check_state_names(states, &names, default_state)?;
    let templates = ism_templates(policy)?;
    if let Some(templates) = &templates {
        check_template_overlap(id, templates, existing)?;
    }
    let now = now_ms();
    let mut normal = json!({
        "policy_id": id,
        "description": policy["description"],
        "last_updated_time": policy.get("last_updated_time").cloned().unwrap_or(json!(now)),
        "schema_version": policy.get("schema_version").cloned().unwrap_or(json!(if flavor == Flavor::OpenSearch3 { 24 } else { 21 })),
        "error_notification": policy.get("error_notification").cloned().unwrap_or(Value::Null),
        "default_state": default_state,
        "states": normal_states,
        "ism_template": templates.map_or(Value::Null, |t| {
            Value::Array(t.into_iter().map(|mut t| {
                if t.get("last_updated_time").is_none() {
                    t["last_updated_time"] = json!(now);
                }
                t
            }).collect())
        }),
    });
    if normal["ism_template"].is_null() {
        normal.as_object_mut().map(|o| o.remove("ism_template"));
    }
    Ok(json!({ "policy": normal }))
}

/// The body's `policy` object, its fields checked against the ones `Policy.parse` knows.
fn policy_of(body: &Value) -> Result<&serde_json::Map<String, Value>, Refusal> {
    let top = body
        .as_object()
        .ok_or_else(|| invalid("Invalid policy: expected an object"))?;
    if let Some(unknown) = unknown_fields(top, &["policy"]) {
        return Err(invalid(format!(
            "Invalid field: [{unknown}] found in Policy."
        )));
    }
    let policy = top
        .get("policy")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("policy is null"))?;
    let known = [
        "policy_id",
        "description",
        "last_updated_time",
        "schema_version",
        "error_notification",
        "default_state",
        "states",
        "ism_template",
        "user",
    ];
    if let Some(unknown) = unknown_fields(policy, &known) {
        return Err(invalid(format!(
            "Invalid field: [{unknown}] found in Policy."
        )));
    }
    Ok(policy)
}

/// The states' names: each transition names one, none twice, at least one, the default among them.
fn check_state_names(
    states: &[Value],
    names: &[String],
    default_state: &str,
) -> Result<(), Refusal> {
    for state in states {
        for t in state["transitions"].as_array().into_iter().flatten() {
            let target = t["state_name"].as_str().unwrap_or_default();
            if !names.iter().any(|n| n == target) {
                return Err(invalid(format!(
                    "Policy contains a transition in state={} pointing to a nonexistent state={target}",
                    state["name"].as_str().unwrap_or_default()
                )));
            }
        }
    }
    let mut distinct = names.to_vec();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != names.len() {
        return Err(invalid("Policy cannot have duplicate state names"));
    }
    if names.is_empty() {
        return Err(invalid("Policy must contain at least one State"));
    }
    if !names.iter().any(|n| n == default_state) {
        return Err(invalid("Policy must have a valid default state"));
    }
    Ok(())
}

/// `ism_template`: absent, one object or an array of them, each checked.
fn ism_templates(policy: &serde_json::Map<String, Value>) -> Result<Option<Vec<Value>>, Refusal> {
    Ok(match policy.get("ism_template") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(check_ism_template)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(one @ Value::Object(_)) => Some(vec![check_ism_template(one)?]),
        Some(_) => {
            return Err(invalid(
                "Failed to parse object: expecting token of type [START_ARRAY]",
            ));
        }
    })
}

/// One state: its name, and the state with each action's default retry filled in.
fn check_state(flavor: Flavor, state: &Value) -> Result<(String, Value), Refusal> {
    let object = state
        .as_object()
        .ok_or_else(|| invalid("State is not an object"))?;
    if let Some(unknown) = unknown_fields(object, &["name", "actions", "transitions"]) {
        return Err(invalid(format!(
            "Invalid field: [{unknown}] found in State."
        )));
    }
    let name = object
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("State name is null"))?;
    if name.trim().is_empty() {
        return Err(invalid("State must contain a valid name"));
    }
    let actions = match object.get("actions") {
        None => Vec::new(),
        Some(a) => a
            .as_array()
            .cloned()
            .ok_or_else(|| invalid(format!("State={name} actions must be an array")))?,
    };
    let mut normal_actions = Vec::new();
    let mut deletes = false;
    for action in &actions {
        if deletes {
            return Err(invalid(format!(
                "State={name} must not contain an action after a delete action"
            )));
        }
        let (kind, normal) = actions::check(flavor, action)?;
        deletes = kind == "delete";
        normal_actions.push(normal);
    }
    let transitions = match object.get("transitions") {
        None => Vec::new(),
        Some(t) => t
            .as_array()
            .cloned()
            .ok_or_else(|| invalid(format!("State={name} transitions must be an array")))?,
    };
    if deletes && !transitions.is_empty() {
        return Err(invalid(format!(
            "State={name} cannot contain transitions if using delete action"
        )));
    }
    for t in &transitions {
        check_transition(flavor, t)?;
    }
    Ok((
        name.to_owned(),
        json!({"name": name, "actions": normal_actions, "transitions": transitions}),
    ))
}

/// A transition: `state_name`, and `conditions` with at most one condition.
fn check_transition(flavor: Flavor, t: &Value) -> Result<(), Refusal> {
    let object = t
        .as_object()
        .ok_or_else(|| invalid("Transition is not an object"))?;
    if let Some(unknown) = unknown_fields(object, &["state_name", "conditions"]) {
        return Err(invalid(format!(
            "Invalid field: [{unknown}] found in Transition."
        )));
    }
    object
        .get("state_name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Transition state name is null"))?;
    let Some(conditions) = object.get("conditions") else {
        return Ok(());
    };
    let conditions = conditions
        .as_object()
        .ok_or_else(|| invalid("conditions is not an object"))?;
    let known: &[&str] = if flavor == Flavor::OpenSearch3 {
        &[
            "min_index_age",
            "min_doc_count",
            "min_size",
            "cron",
            "min_rollover_age",
            "no_alias",
            "min_state_age",
        ]
    } else {
        &[
            "min_index_age",
            "min_doc_count",
            "min_size",
            "cron",
            "min_rollover_age",
        ]
    };
    if let Some(unknown) = unknown_fields(conditions, known) {
        return Err(invalid(format!(
            "Invalid field: [{unknown}] found in Conditions."
        )));
    }
    if conditions.len() > 1 {
        return Err(invalid("Cannot provide more than one Transition condition"));
    }
    for (key, value) in conditions {
        match key.as_str() {
            "min_index_age" | "min_rollover_age" | "min_state_age" => {
                time_value(key, value)?;
            }
            "min_doc_count" if value.as_i64().is_none_or(|n| n <= 0) => {
                return Err(invalid(
                    "Transition doc count condition must be greater than 0",
                ));
            }
            "min_size" if byte_size(key, value)? <= 0.0 => {
                return Err(invalid("Transition size condition must be greater than 0"));
            }
            "no_alias" if !value.is_boolean() => {
                return Err(invalid("[no_alias] must be a boolean"));
            }
            "cron" => check_cron(value)?,
            _ => {}
        }
    }
    Ok(())
}

/// `{"cron": {"expression": "<5 fields>", "timezone": "<zone>"}}` (job-scheduler's
/// `CronSchedule`).
fn check_cron(value: &Value) -> Result<(), Refusal> {
    let cron = value
        .get("cron")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("cron condition must hold a [cron] object"))?;
    let expression = cron
        .get("expression")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if expression.split_whitespace().count() != 5 {
        return Err(invalid(format!("Invalid cron expression [{expression}]")));
    }
    if cron
        .get("timezone")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(invalid("cron timezone is required"));
    }
    Ok(())
}

fn check_ism_template(t: &Value) -> Result<Value, Refusal> {
    let object = t
        .as_object()
        .ok_or_else(|| invalid("ism_template is not an object"))?;
    if let Some(unknown) =
        unknown_fields(object, &["index_patterns", "priority", "last_updated_time"])
    {
        return Err(invalid(format!(
            "Invalid field: [{unknown}] found in ISMTemplate."
        )));
    }
    let patterns = object
        .get("index_patterns")
        .filter(|p| p.is_array())
        .and_then(strings)
        .unwrap_or_default();
    if patterns.is_empty() {
        return Err(invalid("Requires at least one index pattern"));
    }
    for p in &patterns {
        if p.contains(['#', ':', ' ', ',']) || p.starts_with('_') {
            return Err(invalid(format!(
                "index_pattern [{p}] must not contain '#', ':', ' ' or ',' nor start with '_'"
            )));
        }
    }
    let priority = match object.get("priority") {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_i64()
            .ok_or_else(|| invalid("ism_template priority must be an integer"))?,
    };
    if priority < 0 {
        return Err(invalid("Requires priority to be >= 0"));
    }
    if object.get("last_updated_time").is_some_and(|t| !t.is_i64()) {
        return Err(invalid(
            "ism_template last_updated_time must be epoch milliseconds",
        ));
    }
    let mut normal = t.clone();
    normal["priority"] = json!(priority);
    Ok(normal)
}

/// `TransportIndexPolicyAction` refuses ISM templates that overlap another policy's with the
/// same priority, since which policy an index gets would be undefined.
fn check_template_overlap(
    id: &str,
    templates: &[Value],
    existing: &BTreeMap<String, StoredPolicy>,
) -> Result<(), Refusal> {
    for t in templates {
        let mine = strings(&t["index_patterns"]).unwrap_or_default();
        let priority = t["priority"].as_i64().unwrap_or(0);
        for (other, p) in existing.iter().filter(|(other, _)| other.as_str() != id) {
            let theirs = p.body["policy"]["ism_template"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let clash = theirs.iter().any(|o| {
                o["priority"].as_i64().unwrap_or(0) == priority
                    && strings(&o["index_patterns"])
                        .unwrap_or_default()
                        .iter()
                        .any(|a| mine.iter().any(|b| patterns_overlap(a, b)))
            });
            if clash {
                return Err(invalid(format!(
                    "New policy {id} has an ISM template with index pattern {mine:?} matching existing policy templates, please use a different priority than {priority} (conflicts with policy [{other}])"
                )));
            }
        }
    }
    Ok(())
}
