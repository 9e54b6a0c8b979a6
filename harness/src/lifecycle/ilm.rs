//! Elasticsearch's index lifecycle policies: `GET/PUT/DELETE _ilm/policy/<name>`.
//!
//! Based on Elasticsearch 8/9's `TimeseriesLifecycleType` (phases hot/warm/cold/frozen/delete,
//! the actions allowed in each, hot actions that need a rollover, a frozen phase needs a
//! searchable snapshot, migrate+allocate conflicts, `validateMonotonicallyIncreasingPhaseTimings`
//! which `PutLifecycleRequest#validate` turns into an `action_request_validation_exception`),
//! `LifecyclePolicy`/`Phase` parsers (`phases`, `_meta`, `deprecated`; `min_age`, `actions`), each
//! action's parser (fields and types, from the "Index lifecycle actions" reference pages:
//! rollover needs a `max_*` condition, forcemerge a positive `max_num_segments`, shrink exactly
//! one of `number_of_shards`/`max_primary_shard_size`, …) and `TimeValue` for `min_age` (no `w`,
//! no `y`). `searchable_snapshot.replicate_for` is 9.x only; otherwise 8.19 and 9.1 agree.
//! GET answers `{"<name>":{"version","modified_date","policy","in_use_by"}}` with each phase's
//! `min_age` filled in (`0ms`), as Elasticsearch does.

use super::{
    Flavor, Query, Refusal, Routed, State, byte_size, store_policy, time_value, unknown_fields,
};
use serde_json::{Map, Value, json};

pub(super) fn route(
    s: &mut State,
    method: &str,
    rest: &[&str],
    query: &Query,
    body: Option<&Value>,
) -> Routed {
    let path = format!("/_ilm/{}", rest.join("/"));
    let answer = match (method, rest) {
        ("GET", ["policy"]) => get(s, "*", query, &path),
        ("GET", ["policy", name]) => get(s, name, query, &path),
        ("PUT", ["policy", name]) => put(s, name, query, &path, body),
        ("DELETE", ["policy", name]) => delete(s, name, query, &path),
        ("GET", ["status"]) => Ok((200, json!({"operation_mode": "RUNNING"}))),
        (_, ["policy", _]) => return super::wrong_method(method, &path, "GET, PUT, DELETE"),
        (_, ["policy"] | ["status"]) => return super::wrong_method(method, &path, "GET"),
        (_, ["policy", ..]) => return super::no_handler(method, &path),
        _ => return super::unmodelled(method, &path),
    };
    answer.into()
}

fn not_found(name: &str) -> Refusal {
    Refusal::new(
        404,
        "resource_not_found_exception",
        format!("Lifecycle policy not found: [{name}]"),
    )
}

fn get(s: &State, name: &str, query: &Query, path: &str) -> Result<(u16, Value), Refusal> {
    query.only(path, &["master_timeout", "timeout"])?;
    let wanted: Vec<&str> = name.split(',').collect();
    let mut answer = Map::new();
    for (n, p) in &s.policies {
        if wanted
            .iter()
            .any(|w| super::patterns_overlap(w, n) && (w.contains('*') || w == n))
        {
            let modified = chrono_like(p.modified_ms);
            answer.insert(
                n.clone(),
                json!({
                    "version": p.version,
                    "modified_date": modified,
                    "policy": p.body["policy"],
                    "in_use_by": {"indices": [], "data_streams": [], "composable_templates": []},
                }),
            );
        }
    }
    if answer.is_empty() && !name.contains('*') {
        return Ok((404, not_found(name).body()));
    }
    Ok((200, Value::Object(answer)))
}

fn put(
    s: &mut State,
    name: &str,
    query: &Query,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Refusal> {
    query.only(path, &["master_timeout", "timeout"])?;
    let body =
        body.ok_or_else(|| Refusal::new(400, "parse_exception", "request body is required"))?;
    let normal = check(s.flavor, body)?;
    store_policy(s, name, normal);
    Ok((200, json!({"acknowledged": true})))
}

fn delete(s: &mut State, name: &str, query: &Query, path: &str) -> Result<(u16, Value), Refusal> {
    query.only(path, &["master_timeout", "timeout"])?;
    match s.policies.remove(name) {
        Some(_) => Ok((200, json!({"acknowledged": true}))),
        None => Ok((404, not_found(name).body())),
    }
}

/// An ISO-8601 UTC time from epoch milliseconds, as `modified_date` reads.
fn chrono_like(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

const PHASES: &[&str] = &["hot", "warm", "cold", "frozen", "delete"];

/// The actions each phase allows (`TimeseriesLifecycleType.ORDERED_VALID_*_ACTIONS`).
fn allowed(phase: &str) -> &'static [&'static str] {
    match phase {
        "hot" => &[
            "set_priority",
            "unfollow",
            "rollover",
            "readonly",
            "downsample",
            "shrink",
            "forcemerge",
            "searchable_snapshot",
        ],
        "warm" => &[
            "set_priority",
            "unfollow",
            "readonly",
            "downsample",
            "allocate",
            "migrate",
            "shrink",
            "forcemerge",
        ],
        "cold" => &[
            "set_priority",
            "unfollow",
            "readonly",
            "downsample",
            "searchable_snapshot",
            "allocate",
            "migrate",
            "freeze",
        ],
        "frozen" => &["unfollow", "searchable_snapshot"],
        "delete" => &["wait_for_snapshot", "delete"],
        _ => &[],
    }
}

/// A field's type in an action's parser.
#[derive(Clone, Copy)]
enum Field {
    Time,
    Bytes,
    /// An integer ≥ this.
    Int(i64),
    Bool,
    Text,
    /// An object of string values (allocation rules).
    Rules,
}

/// Each action's fields (the action parsers, as the "Index lifecycle actions" pages list them).
fn fields(flavor: Flavor, action: &str) -> Option<Vec<(&'static str, Field)>> {
    use Field::*;
    Some(match action {
        "rollover" => vec![
            ("max_age", Time),
            ("max_docs", Int(1)),
            ("max_size", Bytes),
            ("max_primary_shard_size", Bytes),
            ("max_primary_shard_docs", Int(1)),
            ("min_age", Time),
            ("min_docs", Int(0)),
            ("min_size", Bytes),
            ("min_primary_shard_size", Bytes),
            ("min_primary_shard_docs", Int(0)),
        ],
        "set_priority" => vec![("priority", Int(0))],
        "delete" => vec![("delete_searchable_snapshot", Bool)],
        "forcemerge" => vec![("max_num_segments", Int(1)), ("index_codec", Text)],
        "shrink" => vec![
            ("number_of_shards", Int(1)),
            ("max_primary_shard_size", Bytes),
            ("allow_write_after_shrink", Bool),
        ],
        "readonly" | "unfollow" | "freeze" => vec![],
        "allocate" => vec![
            ("number_of_replicas", Int(0)),
            ("total_shards_per_node", Int(-1)),
            ("include", Rules),
            ("exclude", Rules),
            ("require", Rules),
        ],
        "migrate" => vec![("enabled", Bool)],
        "searchable_snapshot" => {
            let mut f = vec![
                ("snapshot_repository", Text),
                ("force_merge_index", Bool),
                ("total_shards_per_node", Int(1)),
            ];
            if flavor == Flavor::Elasticsearch9 {
                f.push(("replicate_for", Time));
            }
            f
        }
        "wait_for_snapshot" => vec![("policy", Text)],
        "downsample" => vec![("fixed_interval", Text), ("wait_timeout", Time)],
        _ => return None,
    })
}

/// Checks a `PUT _ilm/policy/<name>` body; returns it as stored (each phase with its `min_age`).
pub(super) fn check(flavor: Flavor, body: &Value) -> Result<Value, Refusal> {
    let phases = phases_of(body)?;
    let mut normal = body.clone();
    let mut ages = Vec::new();
    for (phase, definition) in phases {
        let age = check_phase(flavor, phase, definition)?;
        normal["policy"]["phases"][phase]["min_age"] =
            definition.get("min_age").cloned().unwrap_or(json!("0ms"));
        ages.push((phase.as_str(), age));
    }
    check_actions(phases, &ages)?;
    check_timing(&ages).map_err(validation)?;
    Ok(normal)
}

/// ILM's validation refusal (`PutLifecycleRequest#validate`, `TimeseriesLifecycleType`).
fn validation(why: String) -> Refusal {
    Refusal::new(
        400,
        "action_request_validation_exception",
        format!("Validation Failed: 1: {why};"),
    )
}

/// The body's `policy.phases`, after the fields around them are checked as the parser does.
fn phases_of(body: &Value) -> Result<&Map<String, Value>, Refusal> {
    let top = body
        .as_object()
        .ok_or_else(|| Refusal::parse("[put_lifecycle_request] expected an object"))?;
    if let Some(unknown) = unknown_fields(top, &["policy"]) {
        return Err(Refusal::parse(format!(
            "[put_lifecycle_request] unknown field [{unknown}]"
        )));
    }
    let policy = top
        .get("policy")
        .and_then(Value::as_object)
        .ok_or_else(|| Refusal::parse("[put_lifecycle_request] Required [policy]"))?;
    if let Some(unknown) = unknown_fields(policy, &["phases", "_meta", "deprecated"]) {
        return Err(Refusal::parse(format!(
            "[lifecycle_policy] unknown field [{unknown}]"
        )));
    }
    if policy.get("_meta").is_some_and(|m| !m.is_object()) {
        return Err(Refusal::parse(
            "[lifecycle_policy] failed to parse field [_meta]: expected an object",
        ));
    }
    if policy.get("deprecated").is_some_and(|d| !d.is_boolean()) {
        return Err(Refusal::parse(
            "[lifecycle_policy] failed to parse field [deprecated]",
        ));
    }
    policy
        .get("phases")
        .and_then(Value::as_object)
        .ok_or_else(|| Refusal::parse("[lifecycle_policy] Required [phases]"))
}

/// The phases' names and the actions each may hold, alone and together.
fn check_actions(phases: &Map<String, Value>, ages: &[(&str, i128)]) -> Result<(), Refusal> {
    let invalid = validation;
    for (phase, _) in ages {
        if !PHASES.contains(phase) {
            return Err(invalid(format!(
                "Timeseries lifecycle does not support phase [{phase}]"
            )));
        }
        for action in phases[*phase]["actions"]
            .as_object()
            .into_iter()
            .flat_map(|a| a.keys())
        {
            if !allowed(phase).contains(&action.as_str()) {
                return Err(invalid(format!(
                    "invalid action [{action}] defined in phase [{phase}]"
                )));
            }
        }
    }
    let actions = |phase: &str| {
        phases
            .get(phase)
            .and_then(|p| p["actions"].as_object())
            .cloned()
            .unwrap_or_default()
    };
    let hot = actions("hot");
    if phases.contains_key("hot") && !hot.contains_key("rollover") {
        let needing: Vec<&str> = [
            "readonly",
            "shrink",
            "forcemerge",
            "downsample",
            "searchable_snapshot",
        ]
        .into_iter()
        .filter(|a| hot.contains_key(*a))
        .collect();
        if !needing.is_empty() {
            return Err(invalid(format!(
                "the [{}] action(s) may not be used in the [hot] phase without an accompanying [rollover] action",
                needing.join(", ")
            )));
        }
    }
    if phases.contains_key("frozen") && !actions("frozen").contains_key("searchable_snapshot") {
        return Err(invalid(
            "policy specifies the [frozen] phase without a corresponding [searchable_snapshot] action, but a searchable snapshot action is required in the frozen phase".to_owned(),
        ));
    }
    for phase in ["warm", "cold"] {
        let a = actions(phase);
        let migrates = a
            .get("migrate")
            .is_some_and(|m| m["enabled"].as_bool().unwrap_or(true));
        let rules = a.get("allocate").is_some_and(|al| {
            ["include", "exclude", "require"]
                .iter()
                .any(|r| al[*r].as_object().is_some_and(|o| !o.is_empty()))
        });
        if migrates && rules {
            return Err(invalid(format!(
                "phases [{phase}] specify an enabled migrate action and an allocate action with allocation rules. specify only a single data migration in each phase"
            )));
        }
    }
    Ok(())
}

/// A phase's fields and actions; its `min_age` in nanoseconds (0 when absent).
fn check_phase(flavor: Flavor, phase: &str, definition: &Value) -> Result<i128, Refusal> {
    let object = definition
        .as_object()
        .ok_or_else(|| Refusal::parse(format!("[phases] failed to parse field [{phase}]")))?;
    if let Some(unknown) = unknown_fields(object, &["min_age", "actions"]) {
        return Err(Refusal::parse(format!(
            "[phase] unknown field [{unknown}] in phase [{phase}]"
        )));
    }
    let age = match object.get("min_age") {
        Some(age) => time_value("min_age", age).map_err(|r| {
            Refusal::parse(format!(
                "[phase] failed to parse field [min_age] of phase [{phase}]: {}",
                r.reason
            ))
        })?,
        None => 0,
    };
    let actions = object
        .get("actions")
        .and_then(Value::as_object)
        .ok_or_else(|| Refusal::parse(format!("[phase] Required [actions] in phase [{phase}]")))?;
    for (action, params) in actions {
        let Some(known) = fields(flavor, action) else {
            return Err(Refusal::parse(format!(
                "[phase] failed to parse field [actions] of phase [{phase}]: unknown field [{action}]"
            )));
        };
        check_action(action, params, &known)
            .map_err(|why| Refusal::parse(format!("[{action}] in phase [{phase}]: {why}")))?;
    }
    Ok(age)
}

fn check_action(
    action: &str,
    params: &Value,
    known: &[(&'static str, Field)],
) -> Result<(), String> {
    let params = params.as_object().ok_or("expected an object")?;
    for (key, value) in params {
        let Some((_, field)) = known.iter().find(|(k, _)| k == key) else {
            return Err(format!("unknown field [{key}]"));
        };
        let fits = match field {
            Field::Time => time_value(key, value).map(|_| ()).map_err(|r| r.reason),
            Field::Bytes => byte_size(key, value).map(|_| ()).map_err(|r| r.reason),
            Field::Int(min) => match value.as_i64() {
                Some(n) if n >= *min => Ok(()),
                Some(_) => Err(format!("[{key}] must be {min} or greater")),
                None if value.is_null() && *key == *"priority" => Ok(()),
                None => Err(format!("[{key}] must be an integer")),
            },
            Field::Bool => value
                .is_boolean()
                .then_some(())
                .ok_or_else(|| format!("[{key}] must be a boolean")),
            Field::Text => value
                .is_string()
                .then_some(())
                .ok_or_else(|| format!("[{key}] must be a string")),
            Field::Rules => value
                .as_object()
                .filter(|o| o.values().all(Value::is_string))
                .map(|_| ())
                .ok_or_else(|| format!("[{key}] must be an object of strings")),
        };
        fits.map_err(|why| format!("failed to parse field [{key}]: {why}"))?;
    }
    let has = |k: &str| params.contains_key(k);
    match action {
        "rollover" if !params.keys().any(|k| k.starts_with("max_")) => Err("At least one max_* rollover condition must be set.".to_owned()),
        "forcemerge" if !has("max_num_segments") => Err("Required [max_num_segments]".to_owned()),
        "forcemerge" if params.get("index_codec").is_some_and(|c| c != "best_compression") => {
            Err(format!("unknown index codec: [{}]", params["index_codec"]))
        }
        "shrink" if has("number_of_shards") == has("max_primary_shard_size") => {
            Err("exactly one of [number_of_shards] and [max_primary_shard_size] must be set".to_owned())
        }
        "allocate" if params.is_empty() => Err(
            "At least one of [include, exclude, require, number_of_replicas, total_shards_per_node] must be set for action allocate".to_owned(),
        ),
        "searchable_snapshot" if !has("snapshot_repository") => Err("Required [snapshot_repository]".to_owned()),
        "wait_for_snapshot" if !has("policy") => Err("Required [policy]".to_owned()),
        "downsample" if !has("fixed_interval") => Err("Required [fixed_interval]".to_owned()),
        _ => Ok(()),
    }
}

/// `validateMonotonicallyIncreasingPhaseTimings`: a configured (non-zero) `min_age` of a later
/// phase may not be below a configured one of an earlier phase.
fn check_timing(ages: &[(&str, i128)]) -> Result<(), String> {
    let age_of = |p: &str| {
        ages.iter()
            .find(|(n, _)| *n == p)
            .map(|(_, a)| *a)
            .filter(|a| *a != 0)
    };
    for (i, earlier) in PHASES.iter().enumerate() {
        let Some(before) = age_of(earlier) else {
            continue;
        };
        for later in &PHASES[i + 1..] {
            if let Some(after) = age_of(later).filter(|a| *a < before) {
                return Err(format!(
                    "Your policy is configured to run the {later} phase (min_age: {}) before the {earlier} phase (min_age: {}). You should change the phase timing so that the phases will execute in the order of hot, warm, then cold.",
                    human(after),
                    human(before)
                ));
            }
        }
    }
    Ok(())
}

/// A duration the way `TimeValue#toString` prints it (largest whole unit).
fn human(nanos: i128) -> String {
    const UNITS: &[(&str, i128)] = &[
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("micros", 1_000),
    ];
    UNITS
        .iter()
        .find(|(_, scale)| nanos >= *scale && nanos % scale == 0)
        .map_or_else(
            || format!("{nanos}nanos"),
            |(unit, scale)| format!("{}{unit}", nanos / scale),
        )
}
