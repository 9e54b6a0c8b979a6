//! The document about to be written, as routing sees it: what a dotted path reaches in the
//! document *as it will be indexed* — the agent's own fields, the message merged (with an
//! application's `stream` under its `app_stream` name) or nested under `parse.target`, or kept
//! as a string in `log`, and the pod's `kubernetes` and `docker` objects.
//!
//! Nothing is parsed for a record no route asks about. A path that ends at a top-level field
//! costs a scan of the top-level keys; only a path into a nested value parses that value (or the
//! pod's fields), and only for the record that asks.

use super::fields::Fields;
use super::keys::{KeyIndex, is_reserved};
use crate::vocab::Record;
use serde_json::Value;
use serde_json::value::RawValue;

/// What a path reaches.
#[derive(Debug)]
pub enum Found<'a> {
    /// A string the agent writes: `@timestamp`, `stream`, the message as `log`.
    Text(&'a str),
    /// A value of the message, as the application wrote it.
    Raw(&'a RawValue),
    /// A value inside one (or inside the pod's fields); several for a path through an array,
    /// as Elasticsearch indexes `a.b` of `a: [{b: 1}, {b: 2}]` as both values.
    Value(Value),
}

/// The document of one record, before it is written.
pub struct View<'a> {
    /// `parse.target`: the key the message is nested under, if it is.
    pub(super) target: Option<&'a str>,
    /// `parse.keep_original`: `log` holds the raw line beside the parsed fields.
    pub(super) keep_original: bool,
    pub(super) rec: &'a Record<'a>,
    pub(super) message: &'a str,
    pub(super) fields: Option<&'a Fields<'a>>,
    /// The pod's fields: `,"kubernetes":{…},"docker":{…}`.
    pub(super) extra: &'a [u8],
}

impl View<'_> {
    /// The value at dotted `path`: `http.status` reaches into the object `http`, and also
    /// finds a key written `"http.status"` whole (Elasticsearch maps both the same way).
    pub fn get(&self, path: &str) -> Option<Found<'_>> {
        match path {
            "@timestamp" => return Some(Found::Text(&self.rec.time)),
            "stream" => return self.rec.stream.map(|s| Found::Text(s.as_str())),
            "log" if self.fields.is_none() || self.keep_original => {
                return Some(Found::Text(self.message));
            }
            _ => {}
        }
        let pod = ["kubernetes", "docker"];
        if pod.iter().any(|k| path == *k || under(path, k).is_some()) {
            return self.pod_field(path);
        }
        let fields = self.fields?;
        let path = match self.target {
            Some(target) => under(path, target)?,
            None => path,
        };
        let nested = self.target.is_some();
        let keep_original = self.keep_original;
        if nested || !path.starts_with("app_") {
            // No renamed key can be meant: the member written under a key is its last one, so
            // the first found from the end is it. One pass, no bookkeeping: this runs per
            // record for every field condition.
            for (key, value) in fields.0.iter().rev() {
                let on_path = path == key || under(path, key).is_some();
                if !on_path || (!nested && is_reserved(key, value, keep_original)) {
                    continue;
                }
                // On the path but not there (`event.kind` in an `event` object that has no
                // `kind`): a key written whole (`"event.kind"`) may still have it.
                if let Some(Some(found)) = at(key, value, path) {
                    return Some(found);
                }
            }
            return None;
        }
        // `app_…`: the names the writer gives, renames included.
        let keys = KeyIndex::new(&fields.0);
        for (i, (key, value)) in fields.0.iter().enumerate() {
            if !keys.is_last(i, key) {
                continue;
            }
            let renamed;
            let name = if is_reserved(key, value, keep_original) {
                renamed = keys.free_name(key);
                renamed.as_str()
            } else {
                key.as_ref()
            };
            if let Some(Some(found)) = at(name, value, path) {
                return Some(found);
            }
        }
        None
    }

    fn pod_field(&self, path: &str) -> Option<Found<'_>> {
        let inner = self.extra.strip_prefix(b",")?;
        let mut object = Vec::with_capacity(inner.len() + 2);
        object.push(b'{');
        object.extend_from_slice(inner);
        object.push(b'}');
        let value: Value = serde_json::from_slice(&object).ok()?;
        descend(&value, path).map(Found::Value)
    }
}

/// What `path` reaches through the member `name: value`: `Some(None)` when the member is on
/// the path but the rest of it is not in its value; `None` when the member is not on it.
fn at<'v>(name: &str, value: &'v RawValue, path: &str) -> Option<Option<Found<'v>>> {
    if name == path {
        return Some(Some(Found::Raw(value)));
    }
    let rest = under(path, name)?;
    let value: Value = serde_json::from_str(value.get()).ok()?;
    Some(descend(&value, rest).map(Found::Value))
}

/// `a.b.c` under `a` is `b.c`.
fn under<'p>(path: &'p str, key: &str) -> Option<&'p str> {
    path.strip_prefix(key)?.strip_prefix('.')
}

/// The value at dotted `path` inside `value`, trying whole keys with dots as well as objects.
fn descend(value: &Value, path: &str) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if let Some(v) = map.get(path) {
                return Some(v.clone());
            }
            map.iter()
                .find_map(|(k, v)| under(path, k).and_then(|rest| descend(v, rest)))
        }
        Value::Array(items) => {
            let found: Vec<Value> = items.iter().filter_map(|v| descend(v, path)).collect();
            (!found.is_empty()).then_some(Value::Array(found))
        }
        _ => None,
    }
}
