//! A condition on one field of the document: `equals` a value, `exists`, or `matches` a
//! regular expression, on what the field's dotted path reaches.
//!
//! As Elasticsearch's term and exists queries see a field: a field that is an array holds when
//! any of its elements does, and `null` (or an empty array) does not exist. `equals` compares
//! like with like (a string with a string, a number with a number: `200` equals `200.0`, never
//! `"200"`); `matches` reads strings, and numbers and booleans as their JSON text.

use crate::config::{FieldCondition, Scalar};
use crate::parse::{Found, View};
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub(super) struct FieldTest {
    path: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Scalar),
    Exists(bool),
    Matches(Regex),
}

impl FieldTest {
    pub(super) fn new(c: &FieldCondition) -> Result<FieldTest, String> {
        let test = match (&c.equals, c.exists, &c.matches) {
            (Some(v), None, None) => Test::Equals(v.clone()),
            (None, Some(e), None) => Test::Exists(e),
            (None, None, Some(m)) => Test::Matches(
                Regex::new(m).map_err(|e| format!("invalid regular expression {m:?}: {e}"))?,
            ),
            _ => {
                return Err(format!(
                    "{}: needs exactly one of equals, exists, matches",
                    c.path
                ));
            }
        };
        Ok(FieldTest {
            path: c.path.clone(),
            test,
        })
    }

    pub(super) fn holds(&self, doc: &View) -> bool {
        let found = doc.get(&self.path);
        match &self.test {
            Test::Exists(want) => found.as_ref().is_some_and(exists) == *want,
            Test::Equals(want) => found.is_some_and(|f| any_value(&f, |v| equals(v, want))),
            Test::Matches(re) => found.is_some_and(|f| any_value(&f, |v| matches(v, re))),
        }
    }
}

/// A field's value, borrowed where it can be.
enum Scalarish<'a> {
    Str(Cow<'a, str>),
    Json(&'a Value),
}

/// Whether `f` holds for the value found, or for any element when it is an array.
fn any_value(found: &Found, f: impl Fn(&Scalarish) -> bool) -> bool {
    match found {
        Found::Text(s) => f(&Scalarish::Str(Cow::Borrowed(s))),
        Found::Raw(raw) => {
            let text = raw.get();
            // The common case, a plain string without escapes, needs no parsing at all.
            if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
                && !inner.contains(['\\', '"'])
            {
                return f(&Scalarish::Str(Cow::Borrowed(inner)));
            }
            match serde_json::from_str::<Value>(text) {
                Ok(v) => any_of(&v, &f),
                Err(_) => false,
            }
        }
        Found::Value(v) => any_of(v, &f),
    }
}

fn any_of(v: &Value, f: &impl Fn(&Scalarish) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|i| any_of(i, f)),
        Value::String(s) => f(&Scalarish::Str(Cow::Borrowed(s))),
        other => f(&Scalarish::Json(other)),
    }
}

fn exists(found: &Found) -> bool {
    match found {
        Found::Text(_) => true,
        // A value that is not a scalar exists as Elasticsearch sees it: a non-null value in it.
        Found::Raw(raw) => match raw.get().trim_start().as_bytes().first() {
            Some(b'n') => false,
            Some(b'[' | b'{') => {
                serde_json::from_str::<Value>(raw.get()).is_ok_and(|v| exists(&Found::Value(v)))
            }
            _ => true,
        },
        Found::Value(v) => match v {
            Value::Null => false,
            Value::Array(items) => items.iter().any(|i| exists(&Found::Value(i.clone()))),
            Value::Object(map) => map.values().any(|i| exists(&Found::Value(i.clone()))),
            _ => true,
        },
    }
}

fn equals(v: &Scalarish, want: &Scalar) -> bool {
    match (v, want) {
        (Scalarish::Str(s), Scalar::String(w)) => s == w,
        (Scalarish::Json(j), Scalar::Integer(w)) => {
            j.as_i64() == Some(*w) || j.as_f64().is_some_and(|f| f == *w as f64)
        }
        (Scalarish::Json(j), Scalar::Float(w)) => j.as_f64() == Some(*w),
        (Scalarish::Json(j), Scalar::Bool(w)) => j.as_bool() == Some(*w),
        _ => false,
    }
}

fn matches(v: &Scalarish, re: &Regex) -> bool {
    match v {
        Scalarish::Str(s) => re.is_match(s),
        Scalarish::Json(j) => match j {
            Value::Number(_) | Value::Bool(_) => re.is_match(&j.to_string()),
            _ => false,
        },
    }
}
