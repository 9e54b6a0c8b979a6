//! A fake Kubernetes API server that speaks the real wire format for what the agent uses: list
//! and watch of pods (with a `spec.nodeName` field selector) and namespaces, resourceVersions,
//! ADDED / MODIFIED / DELETED events, bookmarks, 410 Gone for a resourceVersion that is too old,
//! and a switch to refuse every request.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    rv: u64,
    pods: BTreeMap<String, Value>,
    namespaces: BTreeMap<String, Value>,
    /// (resourceVersion, "pods" | "namespaces", event type, object)
    events: Vec<(u64, &'static str, &'static str, Value)>,
    /// Answer every request with this status.
    refuse: Option<u16>,
    /// Watches from a resourceVersion below this get 410 Gone.
    gone_below: u64,
    /// Bumped to end every open watch.
    epoch: u64,
    pod_lists: u64,
}

pub struct FakeApi {
    pub url: String,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        FakeApi { url, shared }
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        let (m, cv) = &*self.shared;
        f(&mut m.lock().unwrap());
        cv.notify_all();
    }

    /// Adds or replaces a pod (ADDED or MODIFIED).
    pub fn put_pod(&self, mut pod: Value) {
        self.change(|s| {
            s.rv += 1;
            pod["metadata"]["resourceVersion"] = Value::from(s.rv.to_string());
            let key = format!(
                "{}/{}",
                pod["metadata"]["namespace"].as_str().unwrap(),
                pod["metadata"]["name"].as_str().unwrap()
            );
            let kind = if s.pods.contains_key(&key) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.pods.insert(key, pod.clone());
            s.events.push((s.rv, "pods", kind, pod));
        });
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.change(|s| {
            if let Some(mut pod) = s.pods.remove(&format!("{namespace}/{name}")) {
                s.rv += 1;
                pod["metadata"]["resourceVersion"] = Value::from(s.rv.to_string());
                s.events.push((s.rv, "pods", "DELETED", pod));
            }
        });
    }

    pub fn put_namespace(&self, name: &str, labels: Value) {
        self.change(|s| {
            s.rv += 1;
            let ns = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": format!("ns-{name}"), "labels": labels,
                             "resourceVersion": s.rv.to_string()},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
            });
            let kind = if s.namespaces.contains_key(name) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.namespaces.insert(name.to_owned(), ns.clone());
            s.events.push((s.rv, "namespaces", kind, ns));
        });
    }

    /// From now on every request is answered with `status` (None: served again).
    pub fn refuse(&self, status: Option<u16>) {
        self.change(|s| {
            s.refuse = status;
            s.epoch += 1;
        });
    }

    /// Ends every watch and makes every resourceVersion handed out so far too old: watchers
    /// get 410 Gone and must list again.
    pub fn expire(&self) {
        self.change(|s| {
            s.gone_below = s.rv + 1;
            s.epoch += 1;
        });
    }

    pub fn pod_lists(&self) -> u64 {
        self.shared.0.lock().unwrap().pod_lists
    }
}

/// `tests/fixtures/pod-orders-api.json` as `namespace/name` on `node`, with its own uid.
pub fn pod(namespace: &str, name: &str, node: &str, annotations: Value) -> Value {
    let text = include_str!("../../tests/fixtures/pod-orders-api.json");
    let mut pod: Value = serde_json::from_str(text).unwrap();
    pod["metadata"]["name"] = name.into();
    pod["metadata"]["namespace"] = namespace.into();
    pod["metadata"]["uid"] = format!("uid-{namespace}-{name}").into();
    pod["spec"]["nodeName"] = node.into();
    if let Some(extra) = annotations.as_object() {
        for (k, v) in extra {
            pod["metadata"]["annotations"][k] = v.clone();
        }
    }
    pod
}

fn serve(conn: TcpStream, shared: &(Mutex<State>, Condvar)) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        // Headers, up to the blank line; GETs have no body.
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
        }
        let target = request.split(' ').nth(1).unwrap_or("/").to_owned();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let params: BTreeMap<String, String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        let refuse = shared.0.lock().unwrap().refuse;
        if let Some(code) = refuse {
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "refused by the test", "reason": "Forbidden", "code": code})
            .to_string();
            respond(&mut conn, code, &body)?;
            continue;
        }
        let kind: &'static str = match path {
            "/api/v1/pods" => "pods",
            "/api/v1/namespaces" => "namespaces",
            _ => {
                respond(&mut conn, 404, r#"{"kind":"Status","code":404}"#)?;
                continue;
            }
        };
        let node = params
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("spec.nodeName="))
            .map(str::to_owned);
        let selects = |obj: &Value| {
            kind != "pods"
                || node
                    .as_ref()
                    .is_none_or(|n| obj["spec"]["nodeName"] == *n.as_str())
        };
        if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
            return watch(&mut conn, shared, kind, &params, &selects);
        }
        let body = {
            let mut s = shared.0.lock().unwrap();
            if kind == "pods" {
                s.pod_lists += 1;
            }
            let objects = if kind == "pods" {
                &s.pods
            } else {
                &s.namespaces
            };
            let items: Vec<Value> = objects
                .values()
                .filter(|o| selects(o))
                .map(|o| {
                    // Items in a list carry no kind or apiVersion on the wire.
                    let mut o = o.clone();
                    if let Some(m) = o.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    o
                })
                .collect();
            let list_kind = if kind == "pods" {
                "PodList"
            } else {
                "NamespaceList"
            };
            json!({"kind": list_kind, "apiVersion": "v1",
                   "metadata": {"resourceVersion": s.rv.to_string()}, "items": items})
            .to_string()
        };
        respond(&mut conn, 200, &body)?;
    }
}

fn watch(
    conn: &mut TcpStream,
    shared: &(Mutex<State>, Condvar),
    kind: &'static str,
    params: &BTreeMap<String, String>,
    selects: &dyn Fn(&Value) -> bool,
) -> std::io::Result<()> {
    let from: u64 = params
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30u64)
        .min(20);
    conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    let (m, cv) = shared;
    let mut s = m.lock().unwrap();
    if from < s.gone_below {
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "message": "too old resource version",
            "reason": "Expired", "code": 410}});
        drop(s);
        chunk(conn, &gone)?;
        return conn.write_all(b"0\r\n\r\n");
    }
    let epoch = s.epoch;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut sent = from;
    let mut last_bookmark = Instant::now();
    loop {
        // A watch ended by a change of epoch sends nothing more: its client resumes from the
        // last resourceVersion it saw, which the change may have made too old.
        if s.epoch != epoch || Instant::now() >= deadline {
            drop(s);
            return conn.write_all(b"0\r\n\r\n");
        }
        let fresh: Vec<Value> = s
            .events
            .iter()
            .filter(|(rv, k, _, obj)| *rv > sent && *k == kind && selects(obj))
            .map(|(_, _, t, obj)| json!({"type": t, "object": obj}))
            .collect();
        let rv = s.rv;
        drop(s);
        for ev in &fresh {
            chunk(conn, ev)?;
        }
        sent = rv;
        if last_bookmark.elapsed() > Duration::from_secs(1) {
            last_bookmark = Instant::now();
            let object_kind = if kind == "pods" { "Pod" } else { "Namespace" };
            chunk(
                conn,
                &json!({"type": "BOOKMARK", "object": {"kind": object_kind, "apiVersion": "v1",
                    "metadata": {"resourceVersion": rv.to_string()}}}),
            )?;
        }
        s = m.lock().unwrap();
        s = cv.wait_timeout(s, Duration::from_millis(200)).unwrap().0;
    }
}

fn chunk(conn: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let data = format!("{v}\n");
    write!(conn, "{:x}\r\n{data}\r\n", data.len())?;
    conn.flush()
}

fn respond(conn: &mut TcpStream, code: u16, body: &str) -> std::io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

fn decode(v: &str) -> String {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
