//! The verdict on one case: each expectation against the outcome at its place, every
//! difference said as "expected …, got …" with the key it concerns, and the documents
//! themselves, pretty-printed, for a reader to see what the config really did.

use super::case::Expect;
use super::pipeline::Outcome;
use crate::config::Retention;
use serde_json::Value;
use std::fmt::Write as _;

/// Every way the outcomes differ from the expectations; empty when the case passes.
pub fn judge(expect: &[Expect], outcomes: &[Outcome]) -> Vec<String> {
    let mut problems = Vec::new();
    if expect.len() != outcomes.len() {
        problems.push(format!(
            "expected {} (documents or drops), the lines made {}",
            count(expect.len(), "outcome"),
            outcomes.len()
        ));
    }
    for (i, (e, o)) in expect.iter().zip(outcomes).enumerate() {
        for p in differences(e, o) {
            problems.push(format!("outcome {}: {p}", i + 1));
        }
    }
    problems
}

pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn differences(e: &Expect, o: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    let (index, route, retention, text, doc) = match o {
        Outcome::Dropped { route, why } => {
            if !e.drop {
                out.push(format!(
                    "expected a document, got none: {why} (route {route})"
                ));
            }
            if let Some(want) = e.route.as_ref().filter(|w| *w != route) {
                out.push(format!("route: expected {want:?}, got {route:?}"));
            }
            return out;
        }
        Outcome::Document {
            index,
            route,
            retention,
            text,
            doc,
        } => (index, route, retention, text, doc),
    };
    if e.drop {
        out.push(format!(
            "drop: expected no document, got one (index {index:?}, route {route:?})"
        ));
    }
    if let Some(want) = e.index.as_ref().filter(|w| *w != index) {
        out.push(format!("index: expected {want:?}, got {index:?}"));
    }
    if let Some(want) = e.route.as_ref().filter(|w| *w != route) {
        out.push(format!("route: expected {want:?}, got {route:?}"));
    }
    if let Some(want) = e.retention.filter(|w| Some(*w) != *retention) {
        out.push(format!(
            "retention: expected {}, got {}",
            days(Some(want)),
            days(*retention)
        ));
    }
    for (path, want) in &e.fields {
        match field(doc, path) {
            Some(got) if got == want => {}
            Some(got) => out.push(format!("fields.{path}: expected {want}, got {got}")),
            None => out.push(format!("fields.{path}: expected {want}, got no such field")),
        }
    }
    for text_absent in &e.absent {
        if text.contains(text_absent.as_str()) {
            out.push(format!("absent: {text_absent:?} appears in the document"));
        }
    }
    out
}

/// A retention as a reader compares it.
pub fn days(r: Option<Retention>) -> String {
    match r {
        Some(r) => format!("{} days", r.days),
        None => "kept until deleted (no retention)".into(),
    }
}

/// The value at a dotted `path`: `a.b.c` reaches into objects, and a key written with dots
/// whole (`"a.b"`) is found too, as Elasticsearch (and routing's `field.path`) treat both alike.
pub fn field<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let obj = doc.as_object()?;
    if let Some(v) = obj.get(path) {
        return Some(v);
    }
    path.match_indices('.').find_map(|(at, _)| {
        let inner = obj.get(&path[..at])?;
        field(inner, &path[at + 1..])
    })
}

/// Every outcome, for a failing case: what each document is, whole.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for (i, o) in outcomes.iter().enumerate() {
        let _ = match o {
            Outcome::Dropped { route, why } => {
                writeln!(s, "outcome {}: no document: {why} (route {route})", i + 1)
            }
            Outcome::Document {
                index,
                route,
                retention,
                doc,
                ..
            } => {
                let pretty = serde_json::to_string_pretty(doc).unwrap_or_default();
                writeln!(
                    s,
                    "outcome {}: the document, to index {index:?} (route {route:?}, {}):\n{}",
                    i + 1,
                    days(*retention),
                    indent(&pretty, "  ")
                )
            }
        };
    }
    s
}

pub fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
