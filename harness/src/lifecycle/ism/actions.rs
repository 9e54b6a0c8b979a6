//! ISM actions: each action object holds exactly one action (with its parser's fields, from
//! index-management's `action/*ActionParser.kt` and the `require`s of the actions themselves)
//! and optionally `timeout` and `retry` (`spi/.../ActionRetry.kt`, `ActionTimeout.kt`).

use super::super::{Flavor, Refusal, byte_size, time_value, unknown_fields};
use super::invalid;
use serde_json::{Map, Value, json};

/// An ISM action's fields, by its parser (`None`: not an action this version knows).
fn action_fields(flavor: Flavor, kind: &str) -> Option<&'static [&'static str]> {
    let three = flavor == Flavor::OpenSearch3;
    Some(match kind {
        "rollover" if three => &[
            "min_size",
            "min_doc_count",
            "min_index_age",
            "min_primary_shard_size",
            "copy_alias",
            "prevent_empty_rollover",
            "any_of",
        ],
        "rollover" => &[
            "min_size",
            "min_doc_count",
            "min_index_age",
            "min_primary_shard_size",
            "copy_alias",
            "prevent_empty_rollover",
        ],
        "delete" | "read_only" | "read_write" | "close" | "open" => &[],
        "search_only" if three => &[],
        "force_merge" => &[
            "max_num_segments",
            "wait_for_completion",
            "task_execution_timeout",
        ],
        "replica_count" => &["number_of_replicas"],
        "index_priority" => &["priority"],
        "shrink" => &[
            "num_new_shards",
            "max_shard_size",
            "percentage_of_source_shards",
            "target_index_name_template",
            "aliases",
            "switch_aliases",
            "force_unsafe",
        ],
        "snapshot" => &["repository", "snapshot"],
        "allocation" => &["require", "include", "exclude", "wait_for"],
        "alias" => &["actions"],
        "convert_index_to_remote" if three => &[
            "repository",
            "snapshot",
            "include_aliases",
            "ignore_index_settings",
            "number_of_replicas",
            "delete_original_index",
            "rename_pattern",
        ],
        // Parsed by their own plugins' objects; the stand-in only knows they exist.
        "notification" | "rollup" | "transform" | "stop_replication" => &["*"],
        _ => return None,
    })
}

/// One action object: exactly one action, optionally `timeout`, `retry`; returns its kind and
/// the action with ISM's default retry (3 times, exponential, 1m) when none is given.
pub(super) fn check(flavor: Flavor, action: &Value) -> Result<(String, Value), Refusal> {
    let object = action
        .as_object()
        .ok_or_else(|| invalid("Action is not an object"))?;
    let mut kind = None;
    for (key, value) in object {
        match key.as_str() {
            "timeout" => {
                time_value("timeout", value)?;
            }
            "retry" => check_retry(value)?,
            other => {
                let Some(fields) = action_fields(flavor, other) else {
                    return Err(invalid(format!(
                        "Invalid field: [{other}] found in Actions."
                    )));
                };
                let params = value
                    .as_object()
                    .ok_or_else(|| invalid(format!("Action [{other}] is not an object")))?;
                if fields != ["*"] {
                    if let Some(unknown) = unknown_fields(params, fields) {
                        return Err(invalid(format!(
                            "Invalid field: [{unknown}] found in {other} action."
                        )));
                    }
                    check_action_params(other, params)?;
                }
                kind = Some(other.to_owned());
            }
        }
    }
    let kind = kind.ok_or_else(|| invalid("Action inside state is null"))?;
    let mut normal = action.clone();
    if normal.get("retry").is_none() {
        normal["retry"] = json!({"count": 3, "backoff": "exponential", "delay": "1m"});
    }
    Ok((kind, normal))
}

fn check_retry(retry: &Value) -> Result<(), Refusal> {
    let object = retry
        .as_object()
        .ok_or_else(|| invalid("retry is not an object"))?;
    if let Some(unknown) = unknown_fields(object, &["count", "backoff", "delay"]) {
        return Err(invalid(format!(
            "Invalid field: [{unknown}] found in ActionRetry."
        )));
    }
    match object.get("count").and_then(Value::as_i64) {
        Some(c) if c >= 0 => {}
        Some(_) => {
            return Err(invalid(
                "Count for ActionRetry must be a non-negative number",
            ));
        }
        None => return Err(invalid("ActionRetry count is null")),
    }
    if let Some(b) = object.get("backoff") {
        let b = b.as_str().unwrap_or_default().to_ascii_lowercase();
        if !["exponential", "constant", "linear"].contains(&b.as_str()) {
            return Err(invalid(format!(
                "No enum constant Backoff.{}",
                b.to_uppercase()
            )));
        }
    }
    if let Some(d) = object.get("delay") {
        time_value("delay", d)?;
    }
    Ok(())
}

fn check_action_params(kind: &str, p: &Map<String, Value>) -> Result<(), Refusal> {
    let positive = |key: &str, what: &str| match p.get(key) {
        Some(v) if v.as_i64().is_none_or(|n| n <= 0) => {
            Err(invalid(format!("{what} must be greater than 0")))
        }
        _ => Ok(()),
    };
    let size = |key: &str| p.get(key).map(|v| byte_size(key, v)).transpose();
    match kind {
        "rollover" => {
            if size("min_size")?.is_some_and(|b| b <= 0.0) {
                return Err(invalid(
                    "RolloverAction minSize value must be greater than 0",
                ));
            }
            if size("min_primary_shard_size")?.is_some_and(|b| b <= 0.0) {
                return Err(invalid(
                    "RolloverAction minPrimaryShardSize value must be greater than 0",
                ));
            }
            positive("min_doc_count", "RolloverAction minDocs value")?;
            if let Some(age) = p.get("min_index_age") {
                time_value("min_index_age", age)?;
            }
            for flag in ["copy_alias", "prevent_empty_rollover"] {
                if p.get(flag).is_some_and(|v| !v.is_boolean()) {
                    return Err(invalid(format!("[{flag}] must be a boolean")));
                }
            }
        }
        "force_merge" => {
            p.get("max_num_segments")
                .ok_or_else(|| invalid("ForceMergeActionConfig maxNumSegments is null"))?;
            positive("max_num_segments", "Force merge max num segments")?;
        }
        "replica_count" => match p.get("number_of_replicas").map(Value::as_i64) {
            Some(Some(n)) if n >= 0 => {}
            Some(_) => {
                return Err(invalid(
                    "ReplicaCountAction number_of_replicas value must be a non-negative number",
                ));
            }
            None => {
                return Err(invalid(
                    "ReplicaCountAction.NUMBER_OF_REPLICAS_FIELD is null",
                ));
            }
        },
        "index_priority" => match p.get("priority").map(Value::as_i64) {
            Some(Some(n)) if n >= 0 => {}
            Some(_) => {
                return Err(invalid(
                    "IndexPriorityAction index_priority value must be a non-negative number",
                ));
            }
            None => return Err(invalid("priority is null")),
        },
        "shrink" => {
            let set = [
                "max_shard_size",
                "percentage_of_source_shards",
                "num_new_shards",
            ]
            .iter()
            .filter(|k| p.contains_key(**k))
            .count();
            if set != 1 {
                return Err(invalid(
                    "Exactly one option specifying the number of shards to shrink to must be used.",
                ));
            }
            positive("num_new_shards", "Shrink action numNewShards")?;
            size("max_shard_size")?;
        }
        "snapshot" => {
            for key in ["repository", "snapshot"] {
                if !p.get(key).is_some_and(Value::is_string) {
                    return Err(invalid(format!("SnapshotAction {key} must be specified")));
                }
            }
        }
        _ => {}
    }
    Ok(())
}
