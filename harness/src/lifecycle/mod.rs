//! A stand-in for the lifecycle APIs of a cluster, so that the agent's setup (index templates,
//! ILM or ISM retention policies) can be tested end to end while osmem-server, which has no ILM
//! or ISM API, keeps answering everything else.
//!
//! [`Cluster`] listens on `127.0.0.1:0` and answers, as one of four products ([`Flavor`]):
//! - `GET /`, like the product itself (version, distribution, tagline), which is how the agent
//!   chooses between ILM and ISM;
//! - `_index_template/<name>` (GET, HEAD, PUT, DELETE), checked in [`template`];
//! - on Elasticsearch, `_ilm/policy/<name>`, checked in [`ilm`];
//! - on OpenSearch, `_plugins/_ism/policies/<id>` (and the legacy `_opendistro` prefix), checked
//!   in [`ism`];
//! - the other product's API with the product's own "no handler found" answer.
//!
//! Everything else (`_bulk`, searches, index creation, `_count`, …) goes to the upstream
//! osmem-server with its method, query and (gunzipped) body, and its answer comes back as is.
//!
//! Every body it refuses gets the product's error shape (`{"error":{"root_cause":[…],"type":…,
//! "reason":…},"status":…}`) and is also recorded in [`Cluster::problems`], so that a test can
//! assert "the agent sent only valid bodies" in one line, whatever the agent did with the 400.
//! What the checks are based on is said in each submodule's documentation; query parameters are
//! checked against the REST specs' lists too (`?create` on an ILM PUT is a fault).
//!
//! Like the real products, it answers GETs with the stored body normalised (template settings
//! nested with string values; ILM phases with their `min_age`; ISM policies with `policy_id`,
//! `last_updated_time`, `schema_version`, default retries and `ism_template` as an array), so an
//! agent that compares what it reads with what it would write is tested against what a cluster
//! really gives back.

mod ilm;
mod ism;
mod template;
mod wire;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Which product the stand-in is: it decides `GET /`, the retention API (ILM or ISM), what an
/// index template's settings may say, and the version-specific parts of the schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch8,
    Elasticsearch9,
    OpenSearch2,
    OpenSearch3,
}

impl Flavor {
    fn is_elasticsearch(self) -> bool {
        matches!(self, Flavor::Elasticsearch8 | Flavor::Elasticsearch9)
    }
}

/// One request the stand-in answered itself (not the forwarded ones).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path with its query, e.g. `/_index_template/logferry-app?create=true`.
    pub path: String,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    pub status: u16,
    /// Why it was refused, if it was (also for [`Cluster::refuse`]d ones).
    pub problem: Option<String>,
}

/// A stored ILM or ISM policy and the bookkeeping the products keep beside it.
#[derive(Debug, Clone)]
struct StoredPolicy {
    /// `{"policy": …}`, normalised as the product returns it.
    body: Value,
    version: u64,
    /// ISM only: the policy document's sequence number in the config index.
    seq_no: u64,
    modified_ms: u64,
}

struct State {
    flavor: Flavor,
    refuse: Option<u16>,
    requests: Vec<Request>,
    problems: Vec<String>,
    templates: BTreeMap<String, Value>,
    policies: BTreeMap<String, StoredPolicy>,
    /// The next sequence number of ISM's config index: shared by all policies, as in a real index.
    next_seq_no: u64,
}

/// A refusal: the status, the product's error type and its reason.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    status: u16,
    kind: &'static str,
    reason: String,
}

impl Refusal {
    fn new(status: u16, kind: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            kind,
            reason: reason.into(),
        }
    }

    /// A 400 `illegal_argument_exception`, the commonest refusal of both products.
    fn illegal(reason: impl Into<String>) -> Refusal {
        Refusal::new(400, "illegal_argument_exception", reason)
    }

    /// Elasticsearch's answer to a body its object parser cannot read.
    fn parse(reason: impl Into<String>) -> Refusal {
        Refusal::new(400, "x_content_parse_exception", reason)
    }

    fn body(&self) -> Value {
        let cause = json!({"type": self.kind, "reason": self.reason});
        json!({"error": {"root_cause": [cause], "type": self.kind, "reason": self.reason},
               "status": self.status})
    }
}

/// What the router makes of a request: an answer, or "not mine, forward it".
enum Routed {
    Answer {
        status: u16,
        body: Value,
        problem: Option<Refusal>,
    },
    Forward,
}

impl Routed {
    fn ok(status: u16, body: Value) -> Routed {
        Routed::Answer {
            status,
            body,
            problem: None,
        }
    }

    fn refused(r: Refusal) -> Routed {
        Routed::Answer {
            status: r.status,
            body: r.body(),
            problem: Some(r),
        }
    }
}

impl From<Result<(u16, Value), Refusal>> for Routed {
    fn from(r: Result<(u16, Value), Refusal>) -> Routed {
        match r {
            Ok((status, body)) => Routed::ok(status, body),
            Err(r) => Routed::refused(r),
        }
    }
}

/// The stand-in cluster. Dropping it stops it listening.
pub struct Cluster {
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Cluster {
    /// [`Cluster::listen`] for tests: panics if it cannot listen.
    pub fn start(flavor: Flavor, upstream: Option<&str>) -> Cluster {
        Cluster::listen(flavor, upstream).expect("listen on 127.0.0.1:0 for the lifecycle stand-in")
    }

    /// Listens on 127.0.0.1:0. Requests it does not own (`_bulk`, searches, index creation,
    /// `_count`, …) are forwarded to `upstream` with their method and body and its answer passed
    /// back; 404 without upstream.
    pub fn listen(flavor: Flavor, upstream: Option<&str>) -> std::io::Result<Cluster> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            flavor,
            refuse: None,
            requests: Vec::new(),
            problems: Vec::new(),
            templates: BTreeMap::new(),
            policies: BTreeMap::new(),
            next_seq_no: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stopped, up) = (state.clone(), stop.clone(), upstream.map(str::to_owned));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, up) = (st.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = wire::serve(conn, &st, up.as_deref());
                });
            }
        });
        Ok(Cluster { url, state, stop })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Every request it answered itself, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Every schema violation seen (empty = all bodies valid); injected refusals are not in it.
    pub fn problems(&self) -> Vec<String> {
        self.lock().problems.clone()
    }

    /// The stored ILM or ISM policy (`{"policy": …}`), normalised as a GET would return it.
    pub fn policy(&self, name: &str) -> Option<Value> {
        self.lock().policies.get(name).map(|p| p.body.clone())
    }

    /// The stored index template, as `GET _index_template/<name>` returns it (settings nested,
    /// with string values, as both products store them).
    pub fn template(&self, name: &str) -> Option<Value> {
        self.lock().templates.get(name).cloned()
    }

    /// Seeds a policy as an operator would have put it; panics if the product would refuse it.
    pub fn put_policy(&self, name: &str, body: Value) {
        let mut s = self.lock();
        let checked = if s.flavor.is_elasticsearch() {
            ilm::check(s.flavor, &body)
        } else {
            ism::check(s.flavor, name, &body, &s.policies)
        };
        let normal = match checked {
            Ok(normal) => normal,
            Err(r) => panic!("seeded policy [{name}] would be refused: {}", r.reason),
        };
        store_policy(&mut s, name, normal);
    }

    /// Seeds an index template; panics if the product would refuse it.
    pub fn put_template(&self, name: &str, body: Value) {
        let mut s = self.lock();
        match template::check(s.flavor, name, &body, &s.templates) {
            Ok(normal) => {
                s.templates.insert(name.to_owned(), normal);
            }
            Err(r) => panic!("seeded template [{name}] would be refused: {}", r.reason),
        }
    }

    /// Answer every request it owns (GET / excepted) with this status (403 → a
    /// `security_exception` body like the product's); None = normal.
    pub fn refuse(&self, status: Option<u16>) {
        self.lock().refuse = status;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// Stores a checked policy, bumping its version and (ISM) the config index's sequence number.
fn store_policy(s: &mut State, name: &str, body: Value) -> StoredPolicy {
    let version = s.policies.get(name).map_or(1, |p| p.version + 1);
    let seq_no = s.next_seq_no;
    s.next_seq_no += 1;
    let stored = StoredPolicy {
        body,
        version,
        seq_no,
        modified_ms: now_ms(),
    };
    s.policies.insert(name.to_owned(), stored.clone());
    stored
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Routes one request: the stand-in's own answer, or [`Routed::Forward`].
fn route(s: &mut State, method: &str, path: &str, query: &Query, body: &[u8]) -> Routed {
    let segments: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let es = s.flavor.is_elasticsearch();
    let owned = match segments.first().copied() {
        None => true,
        Some("_index_template") => true,
        Some("_ilm") => true,
        Some("_plugins" | "_opendistro") => segments.get(1) == Some(&"_ism"),
        Some(_) => false,
    };
    if !owned {
        return Routed::Forward;
    }
    if segments.is_empty() {
        return match method {
            "GET" | "HEAD" => Routed::ok(200, wire::banner(s.flavor)),
            _ => no_handler(method, path),
        };
    }
    if let Some(status) = s.refuse {
        return Routed::Answer {
            status,
            body: wire::refusal(s.flavor, status, method, &segments),
            problem: Some(Refusal::new(
                status,
                "injected",
                format!("refused by the test with {status}"),
            )),
        };
    }
    let json = match parse_body(method, body) {
        Ok(json) => json,
        Err(r) => return Routed::refused(r),
    };
    match (segments[0], es) {
        ("_index_template", _) => template::route(s, method, &segments[1..], query, json.as_ref()),
        ("_ilm", true) => ilm::route(s, method, &segments[1..], query, json.as_ref()),
        ("_plugins" | "_opendistro", false) => {
            ism::route(s, method, &segments[2..], query, json.as_ref())
        }
        _ => no_handler(method, path),
    }
}

/// The body of a write as JSON; a PUT without one is refused as both products do.
fn parse_body(method: &str, body: &[u8]) -> Result<Option<Value>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if method == "PUT" || method == "POST" {
            Err(Refusal::new(
                400,
                "parse_exception",
                "request body is required",
            ))
        } else {
            Ok(None)
        };
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        Refusal::new(
            400,
            "x_content_parse_exception",
            format!("Failed to parse content to map: {e}"),
        )
    })
}

/// Both products' answer to a path no handler owns: 400 with a bare string `error` (osmem and
/// the products' `RestController` say the same).
fn no_handler(method: &str, path: &str) -> Routed {
    let reason = format!("no handler found for uri [{path}] and method [{method}]");
    Routed::Answer {
        status: 400,
        body: json!({ "error": reason }),
        problem: Some(Refusal::new(400, "no_handler", reason)),
    }
}

/// Both products' answer to a known path with a method it does not take: 405 with the
/// allowed ones (`RestController#handleUnsupportedHttpMethod`).
fn wrong_method(method: &str, path: &str, allowed: &str) -> Routed {
    let reason = format!(
        "Incorrect HTTP method for uri [{path}] and method [{method}], allowed: [{allowed}]"
    );
    Routed::Answer {
        status: 405,
        body: json!({ "error": reason, "status": 405 }),
        problem: Some(Refusal::new(405, "wrong_method", reason)),
    }
}

/// An endpoint the stand-in does not model (e.g. ILM explain): 501, and a problem, so a test
/// learns the agent now needs more of the stand-in instead of passing by accident.
fn unmodelled(method: &str, what: &str) -> Routed {
    Routed::refused(Refusal::new(
        501,
        "not_modelled",
        format!("the lifecycle stand-in does not model [{method} {what}]"),
    ))
}

/// A request's query parameters.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Query {
        Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, "true"));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter: absent is false; only `true`/`false` (or a bare key) are allowed.
    fn flag(&self, key: &str) -> Result<bool, Refusal> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("true" | "") => Ok(true),
            Some(v) => Err(Refusal::illegal(format!(
                "Failed to parse value [{v}] as only [true] or [false] are allowed."
            ))),
        }
    }

    /// Refuses a parameter the endpoint does not take, as both products' REST layers do.
    fn only(&self, path: &str, allowed: &[&str]) -> Result<(), Refusal> {
        const GLOBAL: &[&str] = &["pretty", "human", "error_trace", "filter_path", "format"];
        let unknown: Vec<&str> = self
            .0
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !allowed.contains(k) && !GLOBAL.contains(k))
            .collect();
        match unknown.as_slice() {
            [] => Ok(()),
            [one] => Err(Refusal::illegal(format!(
                "request [{path}] contains unrecognized parameter: [{one}]"
            ))),
            many => Err(Refusal::illegal(format!(
                "request [{path}] contains unrecognized parameters: [{}]",
                many.join("], [")
            ))),
        }
    }
}

/// Nanoseconds of an Elasticsearch/OpenSearch `TimeValue` (`org.elasticsearch.core.TimeValue
/// #parseTimeValue`, the same in OpenSearch): an integer with one of `nanos micros ms s m h d`,
/// case-insensitive; `0` and `-1` need no unit; no fractions, no other negatives, no `w` or `y`.
pub(crate) fn time_value(setting: &str, value: &Value) -> Result<i128, Refusal> {
    let text = match value {
        Value::String(s) => s.trim().to_ascii_lowercase(),
        other => other.to_string(),
    };
    let bad = |why: &str| {
        Refusal::new(
            400,
            "parse_exception",
            format!(
                "failed to parse setting [{setting}] with value [{text}] as a time value: {why}"
            ),
        )
    };
    if text == "0" || text == "-1" {
        return Ok(text.parse::<i128>().unwrap_or(0));
    }
    const UNITS: &[(&str, i128)] = &[
        ("nanos", 1),
        ("micros", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];
    let Some((number, scale)) = UNITS
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))
    else {
        return Err(bad("unit is missing or unrecognized"));
    };
    match number.trim().parse::<i128>() {
        Ok(n) if n < 0 => Err(bad("negative durations are not supported")),
        Ok(n) => Ok(n * scale),
        Err(_) if number.trim().parse::<f64>().is_ok() => Err(Refusal::new(
            400,
            "parse_exception",
            format!("failed to parse [{text}], fractional time values are not supported"),
        )),
        Err(_) => Err(bad("unit is missing or unrecognized")),
    }
}

/// Bytes of a `ByteSizeValue` (`ByteSizeValue#parseBytesSizeValue`): a number with one of
/// `b k kb m mb g gb t tb p pb`, case-insensitive; `0` and `-1` need no unit.
pub(crate) fn byte_size(setting: &str, value: &Value) -> Result<f64, Refusal> {
    let text = match value {
        Value::String(s) => s.trim().to_ascii_lowercase(),
        other => other.to_string(),
    };
    if text == "0" || text == "-1" {
        return Ok(text.parse::<f64>().unwrap_or(0.0));
    }
    const UNITS: &[(&str, f64)] = &[
        ("kb", 1024.0),
        ("mb", 1048576.0),
        ("gb", 1073741824.0),
        ("tb", 1099511627776.0),
        ("pb", 1125899906842624.0),
        ("k", 1024.0),
        ("m", 1048576.0),
        ("g", 1073741824.0),
        ("t", 1099511627776.0),
        ("p", 1125899906842624.0),
        ("b", 1.0),
    ];
    UNITS
        .iter()
        .find_map(|(unit, scale)| text.strip_suffix(unit).map(|n| (n, *scale)))
        .and_then(|(n, scale)| Some(n.trim().parse::<f64>().ok()? * scale))
        .filter(|b| *b >= 0.0)
        .ok_or_else(|| {
            Refusal::new(
                400,
                "parse_exception",
                format!(
                    "failed to parse setting [{setting}] with value [{text}] as a size in bytes: unit is missing or unrecognized"
                ),
            )
        })
}

/// Whether two index patterns (`*` the only wildcard) can match one same name: the test both
/// products make before they let two templates (or ISM templates) of one priority coexist
/// (Elasticsearch `MetadataIndexTemplateService#findConflictingV2Templates` intersects the
/// patterns' automatons; this is the same question for `*`-only globs).
pub(crate) fn patterns_overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
    fn go(a: &[u8], b: &[u8], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(known) = memo[i][j] {
            return known;
        }
        let answer = if i == a.len() && j == b.len() {
            true
        } else if i < a.len() && a[i] == b'*' {
            go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo))
        } else if j < b.len() && b[j] == b'*' {
            go(a, b, i, j + 1, memo) || (i < a.len() && go(a, b, i + 1, j, memo))
        } else {
            i < a.len() && j < b.len() && a[i] == b[j] && go(a, b, i + 1, j + 1, memo)
        };
        memo[i][j] = Some(answer);
        answer
    }
    go(a, b, 0, 0, &mut memo)
}

/// The strings of a JSON value that is a string or an array of strings (as both products'
/// parsers take `index_patterns`).
pub(crate) fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// The fields of `object` that are not in `known`, as "[a], [b]" for a message.
pub(crate) fn unknown_fields(
    object: &serde_json::Map<String, Value>,
    known: &[&str],
) -> Option<String> {
    let unknown: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    (!unknown.is_empty()).then(|| unknown.join("], ["))
}
