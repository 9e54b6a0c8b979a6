//! Setup's conversation with the cluster: which product answers (`GET /`), and each template
//! or policy created if absent — or, with `overwrite`, replaced if the agent installed it —
//! and otherwise left exactly as it is.
//!
//! Many agents start at once on a fresh cluster: every step is safe to race. Templates are
//! created with `?create=true` and ISM policies without a sequence number, so a second creator
//! gets a refusal that means "present", never a second write. ILM has no create-only flag: an
//! absent policy is written after a `GET`, and two agents writing the same body in that window
//! write the same thing. Replacing is only ever of the agent's own (`_meta.managed_by`, or an
//! ISM policy's description), and an ISM replacement names the version it read.

use super::plan::{Capabilities, Flavor, MANAGED_BY};
use crate::sink::elasticsearch::client::Connector;
use crate::sink::elasticsearch::hosts::Host;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Answers are small; a larger one is not one of these APIs.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Request {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: HTTP {status}: {reason}")]
    Refused {
        what: String,
        status: u16,
        reason: String,
    },
    #[error("{what}: the answer is not JSON: {reason}")]
    Unreadable { what: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
}

/// What became of one template or policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// The agent's own, replaced because it differed (`overwrite = true`).
    Replaced,
    /// The agent's own, as the config asks.
    Unchanged,
    /// The agent's own but different, and `overwrite` is off.
    Differs,
    /// Someone else's: never touched.
    NotOurs,
    /// Absent, but another template (an operator's, or a legacy one) already covers these
    /// indices: installing ours would take them over, so it is not installed.
    Covered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Replaced => "replaced (it was the agent's own)",
            Outcome::Unchanged => "present",
            Outcome::Differs => "present but different; left as it is (overwrite = false)",
            Outcome::NotOurs => "present and not the agent's; left alone",
            Outcome::Covered => {
                "absent, but another template covers these indices; not installed, so as not to take them over"
            }
        }
    }

    /// Whether the cluster now has what the config asks for.
    pub fn in_place(self) -> bool {
        matches!(
            self,
            Outcome::Created | Outcome::Replaced | Outcome::Unchanged
        )
    }
}

/// One host of the cluster, asked through the agent's connection (TLS, credentials).
pub struct Cluster<'a> {
    pub connector: &'a Connector,
    pub host: Host,
}

/// An answer: status and JSON body (`Null` when empty).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Cluster<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, Error> {
        let what = format!("{method} {path}");
        let url = self
            .host
            .url(path)
            .ok_or_else(|| Error::Unsupported(format!("{what}: not a URL under {}", self.host)))?;
        let mut req = self.connector.request(method, url);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let request = |source| Error::Request {
            what: what.clone(),
            source,
        };
        let mut resp = req.send().await.map_err(request)?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request)? {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(Error::Unreadable {
                    what,
                    reason: format!("over {MAX_ANSWER} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned())
            })
        };
        Ok(Answer { status, body })
    }

    /// The product, from `GET /`: OpenSearch says so in `version.distribution`; and what its
    /// version takes.
    pub async fn flavor(&self) -> Result<(Flavor, Capabilities), Error> {
        let a = self.call(Method::GET, "", None).await?;
        if !a.status.is_success() {
            return Err(refused("GET /", &a));
        }
        let version = &a.body["version"];
        let number = version["number"].as_str().unwrap_or("");
        if version["distribution"] == "opensearch" {
            return Ok((Flavor::OpenSearch, Capabilities::BASE));
        }
        let (major, minor) = major_minor(number);
        // Composable index templates came in 7.8.
        if (major, minor) < (7, 8) {
            return Err(Error::Unsupported(format!(
                "Elasticsearch {number:?} has no composable index templates (7.8 or later has)"
            )));
        }
        Ok((Flavor::Elasticsearch, capabilities((major, minor))))
    }

    /// `PUT _index_template/<name>`, created if absent and no other template covers `sample`
    /// (an index name the template is for); replaced only if it is ours and `overwrite`.
    pub async fn template(
        &self,
        name: &str,
        want: &Value,
        sample: &str,
        overwrite: bool,
    ) -> Result<Outcome, Error> {
        let path = format!("_index_template/{name}");
        let have = self.call(Method::GET, &path, None).await?;
        let stored = match have.status {
            StatusCode::NOT_FOUND => None,
            s if s.is_success() => Some(have.body["index_templates"][0]["index_template"].clone()),
            _ => return Err(refused(&format!("GET {path}"), &have)),
        };
        let Some(stored) = stored else {
            if self.covered(sample).await? {
                return Ok(Outcome::Covered);
            }
            let put = self
                .call(Method::PUT, &format!("{path}?create=true"), Some(want))
                .await?;
            return match put.status {
                s if s.is_success() => Ok(Outcome::Created),
                // Another agent created it between our GET and PUT: present now.
                StatusCode::BAD_REQUEST if reason(&put.body).contains("already exists") => {
                    Ok(Outcome::Unchanged)
                }
                _ => Err(refused(&format!("PUT {path}"), &put)),
            };
        };
        let ours = stored["_meta"]["managed_by"] == MANAGED_BY;
        match decide(ours, contains(&stored, want), overwrite) {
            Outcome::Replaced => {
                let put = self.call(Method::PUT, &path, Some(want)).await?;
                if !put.status.is_success() {
                    return Err(refused(&format!("PUT {path}"), &put));
                }
                Ok(Outcome::Replaced)
            }
            other => Ok(other),
        }
    }

    /// The lifecycle policy `name`, for the product that answers.
    pub async fn policy(
        &self,
        flavor: Flavor,
        name: &str,
        want: &Value,
        overwrite: bool,
    ) -> Result<Outcome, Error> {
        match flavor {
            Flavor::Elasticsearch => self.ilm(name, want, overwrite).await,
            Flavor::OpenSearch => self.ism(name, want, overwrite).await,
        }
    }

    async fn ilm(&self, name: &str, want: &Value, overwrite: bool) -> Result<Outcome, Error> {
        let path = format!("_ilm/policy/{name}");
        let have = self.call(Method::GET, &path, None).await?;
        let outcome = match have.status {
            StatusCode::NOT_FOUND => Outcome::Created,
            s if s.is_success() => {
                let stored = &have.body[name]["policy"];
                let ours = stored["_meta"]["managed_by"] == MANAGED_BY;
                decide(ours, contains(stored, &want["policy"]), overwrite)
            }
            _ => return Err(refused(&format!("GET {path}"), &have)),
        };
        if matches!(outcome, Outcome::Created | Outcome::Replaced) {
            let put = self.call(Method::PUT, &path, Some(want)).await?;
            if !put.status.is_success() {
                return Err(refused(&format!("PUT {path}"), &put));
            }
        }
        Ok(outcome)
    }

    async fn ism(&self, name: &str, want: &Value, overwrite: bool) -> Result<Outcome, Error> {
        let path = format!("_plugins/_ism/policies/{name}");
        let have = self.call(Method::GET, &path, None).await?;
        if have.status == StatusCode::NOT_FOUND {
            let put = self.call(Method::PUT, &path, Some(want)).await?;
            return match put.status {
                s if s.is_success() => Ok(Outcome::Created),
                // Created by another agent meanwhile.
                StatusCode::CONFLICT => Ok(Outcome::Unchanged),
                _ => Err(refused(&format!("PUT {path}"), &put)),
            };
        }
        if !have.status.is_success() {
            return Err(refused(&format!("GET {path}"), &have));
        }
        let stored = &have.body["policy"];
        let marker = format!("managed_by: {MANAGED_BY}");
        let ours = stored["description"]
            .as_str()
            .is_some_and(|d| d.contains(&marker));
        let outcome = decide(ours, contains(stored, &want["policy"]), overwrite);
        if outcome == Outcome::Replaced {
            let versioned = format!(
                "{path}?if_seq_no={}&if_primary_term={}",
                have.body["_seq_no"], have.body["_primary_term"]
            );
            let put = self.call(Method::PUT, &versioned, Some(want)).await?;
            // Another agent replaced it since it was read: with the same body.
            if put.status == StatusCode::CONFLICT {
                return Ok(Outcome::Unchanged);
            }
            if !put.status.is_success() {
                return Err(refused(&format!("PUT {path}"), &put));
            }
        }
        Ok(outcome)
    }
}

impl Cluster<'_> {
    /// Whether a template the agent did not install — composable, or legacy (`_template`,
    /// which any composable template would silence) — matches the index name `sample`.
    /// Elasticsearch's own built-in templates (`_meta.managed: true`) do not count: the agent's
    /// are meant to outrank them.
    async fn covered(&self, sample: &str) -> Result<bool, Error> {
        let all = self.call(Method::GET, "_index_template", None).await?;
        let composable = all.body["index_templates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                let meta = &t["index_template"]["_meta"];
                meta["managed_by"] != MANAGED_BY
                    && meta["managed"] != true
                    && matches_any(&t["index_template"]["index_patterns"], sample)
            });
        if composable.count() > 0 {
            return Ok(true);
        }
        // Not every cluster still has the legacy API: an error answer means none there.
        let legacy = self.call(Method::GET, "_template", None).await?;
        let covered = legacy.status.is_success()
            && legacy.body.as_object().is_some_and(|all| {
                all.values()
                    .any(|t| matches_any(&t["index_patterns"], sample))
            });
        Ok(covered)
    }
}

/// Whether `patterns` (a string or an array of `*` globs) matches `name`.
fn matches_any(patterns: &Value, name: &str) -> bool {
    let globs: Vec<&str> = match patterns {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    globs.iter().any(|g| glob(g, name))
}

/// `*` as any run of characters; everything else literal.
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// What to do with a template or policy that is there already.
fn decide(ours: bool, same: bool, overwrite: bool) -> Outcome {
    match (ours, same, overwrite) {
        (false, ..) => Outcome::NotOurs,
        (true, true, _) => Outcome::Unchanged,
        (true, false, true) => Outcome::Replaced,
        (true, false, false) => Outcome::Differs,
    }
}

/// Whether `stored` has everything `want` says (the cluster adds fields of its own: versions,
/// times, defaults). Numbers compare by value; arrays element by element.
fn contains(stored: &Value, want: &Value) -> bool {
    match (stored, want) {
        (Value::Object(s), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| s.get(k).is_some_and(|sv| contains(sv, v))),
        (Value::Array(s), Value::Array(w)) => {
            s.len() == w.len() && s.iter().zip(w).all(|(s, w)| contains(s, w))
        }
        (Value::Number(s), Value::Number(w)) => s.as_f64() == w.as_f64(),
        // Index settings come back as strings: `"ignore_malformed": "true"`.
        (Value::String(s), Value::Bool(w)) => s.parse() == Ok(*w),
        (Value::String(s), Value::Number(w)) => s.parse::<f64>().ok() == w.as_f64(),
        _ => stored == want,
    }
}

fn reason(body: &Value) -> String {
    let e = &body["error"];
    let text = e["reason"]
        .as_str()
        .or_else(|| e.as_str())
        .or_else(|| body.as_str())
        .unwrap_or("");
    match e["type"].as_str() {
        Some(kind) => format!("{kind}: {text}"),
        None => text.to_owned(),
    }
}

fn refused(what: &str, a: &Answer) -> Error {
    Error::Refused {
        what: what.to_owned(),
        status: a.status.as_u16(),
        reason: reason(&a.body),
    }
}

/// What an Elasticsearch of this version takes: ILM policies with `_meta` (7.14), fields past
/// the field limit kept unindexed (8.13).
fn capabilities(version: (u32, u32)) -> Capabilities {
    Capabilities {
        lifecycle: version >= (7, 14),
        ignore_dynamic_beyond_limit: version >= (8, 13),
    }
}

fn major_minor(number: &str) -> (u32, u32) {
    let mut parts = number.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_the_cluster_adds_does_not_make_a_template_differ() {
        let want = json!({"index_patterns": ["a-*"], "priority": 501, "_meta": {"managed_by": "logferry"}});
        let stored = json!({"index_patterns": ["a-*"], "priority": 501.0, "composed_of": [], "_meta": {"managed_by": "logferry", "x": 1}});
        assert!(contains(&stored, &want));
        let changed = json!({"index_patterns": ["a-*"], "priority": 502, "_meta": {"managed_by": "logferry"}});
        assert!(!contains(&stored, &changed));
        assert!(!contains(
            &json!({"index_patterns": ["a-*", "b-*"]}),
            &json!({"index_patterns": ["a-*"]})
        ));
    }

    #[test]
    fn only_the_agents_own_is_ever_replaced() {
        assert_eq!(decide(false, false, true), Outcome::NotOurs);
        assert_eq!(decide(false, true, true), Outcome::NotOurs);
        assert_eq!(decide(true, true, true), Outcome::Unchanged);
        assert_eq!(decide(true, false, false), Outcome::Differs);
        assert_eq!(decide(true, false, true), Outcome::Replaced);
    }

    #[test]
    fn index_patterns_match_as_the_cluster_matches_them() {
        for (pattern, name, want) in [
            ("logs-*", "logs-2026.12.02", true),
            ("*", "audit-2026.12", true),
            ("logs-*-*", "logs-2026.12.02", false),
            ("logs-*-*", "logs-app-2026.12.02", true),
            ("audit-*.*", "audit-2026.12", true),
            ("audit", "audit-2026.12", false),
            ("*-2026.*", "logs-2026.12.02", true),
        ] {
            assert_eq!(glob(pattern, name), want, "{pattern} {name}");
        }
        assert!(matches_any(&json!(["x-*", "logs-*"]), "logs-1"));
        assert!(matches_any(&json!("logs-*"), "logs-1"));
    }

    #[test]
    fn versions_before_composable_templates_are_told_apart() {
        assert!(!capabilities(major_minor("7.10.2")).lifecycle);
        assert!(capabilities(major_minor("7.17.0")).lifecycle);
        assert!(!capabilities(major_minor("8.12.1")).ignore_dynamic_beyond_limit);
        assert!(capabilities(major_minor("8.13.0")).ignore_dynamic_beyond_limit);
        assert!(capabilities(major_minor("9.0.0")).ignore_dynamic_beyond_limit);
        assert!(major_minor("7.7.1") < (7, 8));
        assert!(major_minor("7.10.2") >= (7, 8));
        assert!(major_minor("8.15.0") >= (7, 8));
    }
}
