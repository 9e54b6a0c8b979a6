//! The case file: what a pipeline test says — the pod a container's lines come from, the lines
//! as the runtime wrote them, and what each document made of them must (not) hold. Read with
//! `deny_unknown_fields` everywhere, so a misspelt key is an error with its file, line and key,
//! never an expectation silently not checked.

use crate::config::{self, Problem, Retention};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One case file: any number of `[[case]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// Required: a file without cases is more likely a mistake than a test.
    case: Vec<Case>,
}

/// One test: lines of one container in, documents out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Printed with `ok` or `FAIL`.
    pub name: String,
    /// The pod that wrote the lines; without it, the lines are a file outside the kubelet's
    /// layout (no `kubernetes` fields, no namespace).
    #[serde(default)]
    pub pod: Option<CasePod>,
    /// Physical lines of one container log file, in order, as CRI or docker json-file wrote
    /// them (the first line decides which, as for a real file).
    pub lines: Vec<String>,
    /// One per outcome (a document, or a record its route or its pod drops), in order.
    #[serde(default)]
    pub expect: Vec<Expect>,
    /// Where the case was read from, for the report.
    #[serde(skip)]
    pub file: PathBuf,
}

/// The pod, as the API server would describe it (with `[kubernetes]` enabled), or as the log
/// file's path names it (without).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasePod {
    pub namespace: String,
    pub name: String,
    pub container: String,
    /// Pod labels (route conditions and documents read them; needs `[kubernetes]`, as in the
    /// agent).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Pod annotations: `logferry.io/exclude`, `logferry.io/parser`, `logferry.io/multiline`
    /// act as in the agent (needs `[kubernetes]`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The labels of the pod's namespace (needs `[kubernetes]`).
    #[serde(default)]
    pub namespace_labels: BTreeMap<String, String>,
}

/// What one outcome must be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The exact index name the document goes to.
    #[serde(default)]
    pub index: Option<String>,
    /// The name of the `[[route]]` that takes it (`"default"`: none did).
    #[serde(default)]
    pub route: Option<String>,
    /// How long its index is kept: the route's `retention` (the default route's is
    /// `elasticsearch.retention`), compared in days, so `"7y"` and `"2557d"` are equal.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// Dotted paths into the document and their exact JSON values.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Text that must appear nowhere in the document as it is sent.
    #[serde(default)]
    pub absent: Vec<String>,
    /// The record produces no document (its route drops it, or its pod is excluded).
    #[serde(default)]
    pub drop: bool,
}

/// Reads every case of the file at `path`; every problem found, located, on failure.
pub fn load(path: &Path) -> Result<Vec<Case>, config::Error> {
    let fail = |problems| config::Error {
        file: path.to_owned(),
        problems,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(vec![Problem {
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the case file: {e}"),
        }])
    })?;
    let file: CaseFile = toml::from_str(&text)
        .map_err(|e| fail(vec![config::problem_in(&text, e.span(), e.message())]))?;
    let problems = check(&text, &file.case);
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    Ok(file
        .case
        .into_iter()
        .map(|c| Case {
            file: path.to_owned(),
            ..c
        })
        .collect())
}

/// Whether a value read from TOML holds a date-time (which serde gives as a private table).
fn holds_datetime(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(o) => {
            o.contains_key("$__toml_private_datetime") || o.values().any(holds_datetime)
        }
        serde_json::Value::Array(a) => a.iter().any(holds_datetime),
        _ => false,
    }
}

/// What the types cannot refuse: a `drop` expectation that also expects a document, a case
/// without lines, a date-time where the document can only hold a string.
fn check(text: &str, cases: &[Case]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        if case.lines.is_empty() {
            let key = format!("case[{i}].lines");
            problems.push(config::problem_at_key(text, &key, "a case needs lines"));
        }
        for (j, e) in case.expect.iter().enumerate() {
            let document_keys = e.index.is_some()
                || e.retention.is_some()
                || !e.fields.is_empty()
                || !e.absent.is_empty();
            for (path, value) in &e.fields {
                if holds_datetime(value) {
                    let key = format!("case[{i}].expect[{j}].fields");
                    let message = format!(
                        "{path}: a TOML date-time never equals a document's value; write the \
                         time as the string the document holds, in quotes"
                    );
                    problems.push(config::problem_at_key(text, &key, &message));
                }
            }
            if e.drop && document_keys {
                let key = format!("case[{i}].expect[{j}].drop");
                problems.push(config::problem_at_key(
                    text,
                    &key,
                    "a dropped record has no document: index, retention, fields and absent \
                     cannot be expected with drop = true",
                ));
            }
        }
    }
    problems
}
