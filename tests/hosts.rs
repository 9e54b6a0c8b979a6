//! More than one Elasticsearch host: requests spread over them, a host that goes away set aside
//! and taken back when it returns, a path prefix kept, and the nodes learned by sniffing —
//! each against real osmem-servers, with every line checked to arrive exactly once.

mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use support::proxy::FaultProxy;
use support::*;

/// A config shipping to `hosts`, with small chunks (many requests, so the spread shows) and a
/// request timeout long enough that a slow answer on this shared machine is not mistaken for
/// a dead host (which would send the same request to a second, separate cluster).
fn config(node: &Node, hosts: &[String], elasticsearch: &str) -> PathBuf {
    let path = node.config("http://unused", "", "chunk_limit_size = \"16KiB\"");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("hosts = [\"http://unused\"]", &format!("hosts = {hosts:?}"))
        .replace(
            "request_timeout = \"5s\"",
            &format!("request_timeout = \"30s\"\n{elasticsearch}"),
        );
    std::fs::write(&path, text).unwrap();
    path
}

/// How often each (pod, seq) is indexed over all the clusters, and the distinct ids.
fn union(clusters: &[&Osmem]) -> (HashMap<(String, u64), usize>, usize, u64) {
    let mut counts = HashMap::new();
    let mut ids = HashSet::new();
    let mut total = 0;
    for es in clusters {
        let docs = docs(es);
        total += docs.len() as u64;
        for (k, n) in seq_counts(&docs) {
            *counts.entry(k).or_insert(0) += n;
        }
        ids.extend(docs.into_iter().map(|(id, _)| id));
    }
    (counts, ids.len(), total)
}

fn count_all(clusters: &[&Osmem]) -> u64 {
    clusters
        .iter()
        .map(|es| es.count("logs-*").unwrap_or(0))
        .sum()
}

/// Every expected line indexed once over `clusters`, and nothing else.
fn assert_once_over(clusters: &[&Osmem], expected: &HashSet<(String, u64)>) {
    let n = expected.len() as u64;
    wait_until(90, "every line to be indexed", || count_all(clusters) >= n);
    // A duplicate would show up right behind.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (counts, distinct_ids, total) = union(clusters);
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !counts.contains_key(*k))
        .take(5)
        .collect();
    let doubled: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(missing.is_empty(), "lost lines, e.g. {missing:?}");
    assert!(doubled.is_empty(), "doubled lines, e.g. {doubled:?}");
    assert_eq!(total, n, "documents over all clusters");
    assert_eq!(distinct_ids as u64, n, "distinct ids over all clusters");
}

fn set_aside(agent: &Agent) -> f64 {
    agent.metric_f64("logferry_elasticsearch_hosts{state=\"set_aside\"}")
}

fn alive(agent: &Agent) -> f64 {
    agent.metric_f64("logferry_elasticsearch_hosts{state=\"alive\"}")
}

/// Two hosts, each its own osmem-server; host A is taken away mid-stream and brought back.
///
/// Each osmem-server is a separate in-memory cluster, unlike two nodes of one cluster, so
/// "exactly once" means: the union of both indices holds every line once. For that check to
/// mean something, A must not lose what it indexed before it went away (a killed osmem-server
/// forgets everything, and nothing could then tell a lost line from one that died with it),
/// and a request A has indexed must never also reach B. So A goes away as a node does to its
/// clients — connections closed with no answer — at the fault proxy in front of it: a request
/// the proxy takes while down never reaches A, and one it passes on is always answered. The
/// agent sees connection errors, sets A aside, ships everything to B meanwhile, and gives A
/// its share again once it answers. The 30 s request timeout keeps a slow answer on this
/// shared machine from being taken for a dead host, which would index the same request in
/// both clusters (one cluster would answer that replay with 409s).
#[test]
fn a_host_that_goes_away_mid_stream_is_set_aside_and_no_line_is_lost_or_doubled() {
    let (a, b) = (osmem(), osmem());
    let front_of_a = FaultProxy::start(&a.url);
    let node = Node::new();
    let agent = Agent::start(&config(&node, &[front_of_a.url.clone(), b.url.clone()], ""));
    assert_eq!((alive(&agent), set_aside(&agent)), (2.0, 0.0));

    let mut expected = node.json_lines("before", 1500);
    wait_until(60, "the first lines on both hosts", || {
        count_all(&[&a, &b]) >= 1500
    });
    let (a_before, b_before) = (a.count("logs-*").unwrap(), b.count("logs-*").unwrap());
    assert!(
        a_before > 0 && b_before > 0,
        "round robin must use both hosts: {a_before} on A, {b_before} on B"
    );

    front_of_a.set(|f| f.down = true);
    expected.extend(node.json_lines("during", 1500));
    wait_until(60, "A to be set aside", || set_aside(&agent) == 1.0);
    wait_until(60, "the lines written during the outage", || {
        count_all(&[&a, &b]) >= 3000
    });
    assert_eq!(
        a.count("logs-*").unwrap(),
        a_before,
        "nothing reaches A while it is away"
    );

    // A gets a trial request once its backoff ends, and its share again once that answers.
    front_of_a.set(|f| f.down = false);
    expected.extend(node.json_lines("after", 1500));
    assert_once_over(&[&a, &b], &expected);
    assert_eq!((alive(&agent), set_aside(&agent)), (2.0, 0.0));
    assert!(
        a.count("logs-*").unwrap() > a_before,
        "A must get its share again once it answers"
    );
    assert!(agent.stop().success());
}

/// Host A's osmem-server really dies (SIGKILL: connections refused from then on) while lines
/// flow. What A had indexed dies with its memory, so the check is on what cannot be in A:
/// every line written after A died is in B exactly once, and B holds no line twice. The
/// lines written before then are in A or B; those B has must be there once.
#[test]
fn a_host_killed_mid_stream_leaves_every_later_line_on_the_other_host_once() {
    let (a, b) = (osmem(), osmem());
    let node = Node::new();
    let agent = Agent::start(&config(&node, &[a.url.clone(), b.url.clone()], ""));
    node.json_lines("before", 1000);
    wait_until(60, "the first lines on both hosts", || {
        count_all(&[&a, &b]) >= 1000
    });
    drop(a);
    let later = node.json_lines("later", 2000);
    wait_until(60, "the dead host to be set aside", || {
        set_aside(&agent) == 1.0
    });
    wait_until(90, "every later line on B", || {
        seq_counts(&docs(&b))
            .keys()
            .filter(|(pod, _)| pod == "later")
            .count()
            >= 2000
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    let docs = docs(&b);
    let counts = seq_counts(&docs);
    let doubled: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(doubled.is_empty(), "doubled lines on B, e.g. {doubled:?}");
    assert!(later.iter().all(|k| counts.get(k) == Some(&1)));
    let ids: HashSet<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), docs.len(), "distinct ids on B");
    assert!(agent.stop().success());
}

/// A tiny HTTP/1.1 server for the stand-ins below: `answer(method, path, body)` gives the
/// status and the JSON body of each request.
struct Front {
    url: String,
}

type Answer = dyn Fn(&str, &str, &[u8], bool) -> (u16, String) + Send + Sync;

impl Front {
    fn start(answer: Arc<Answer>) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &*answer);
                });
            }
        });
        Front { url }
    }
}

fn serve(conn: TcpStream, answer: &Answer) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("/").to_owned();
        let (mut length, mut gzip) = (0usize, false);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if h.starts_with("content-encoding:") && h.contains("gzip") {
                gzip = true;
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let (status, text) = answer(&method, &path, &body, gzip);
        write!(
            conn,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )?;
        conn.flush()?;
    }
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut plain)
        .expect("gzip body");
    plain
}

/// Before the fix, `Url::join("_bulk")` turned `http://gw/es` into `http://gw/_bulk`, which a
/// gateway routing `/es/` to the cluster answers 404: nothing was shipped. Here a front strips
/// `/es` and passes the request on to osmem-server, and answers 404 to anything else.
#[test]
fn a_host_path_prefix_without_a_trailing_slash_is_kept() {
    let es = osmem();
    let upstream = es.url.clone();
    let paths = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = paths.clone();
    let gateway = Front::start(Arc::new(move |method, path, body, gzip| {
        seen.lock().unwrap().push(path.to_owned());
        let Some(rest) = path.strip_prefix("/es/") else {
            return (404, json!({"error": "no route"}).to_string());
        };
        let body = if gzip { gunzip(body) } else { body.to_vec() };
        logferry_harness::http(
            method,
            &format!("{upstream}/{rest}"),
            "application/x-ndjson",
            &body,
        )
        .unwrap_or((502, String::new()))
    }));
    let node = Node::new();
    let expected = node.json_lines("prefixed", 500);
    let agent = Agent::start(&config(&node, &[format!("{}/es", gateway.url)], ""));
    assert_exactly_once(&es, &expected);
    let paths = paths.lock().unwrap().clone();
    // Bulk requests and setup's (templates) alike.
    assert!(
        paths.iter().all(|p| p.starts_with("/es/")),
        "every request under the prefix: {paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("/es/_bulk?")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("/es/_index_template")),
        "{paths:?}"
    );
    assert!(agent.stop().success());
}

/// A stand-in for a cluster's `_nodes/http`: osmem-server answers it with only itself, so the
/// stand-in names two real osmem-servers, in a body shaped like Elasticsearch's (one node in
/// the `host/ip:port` form, plus a dedicated master that must not get requests). It is the
/// only configured host and takes no bulk requests itself (503).
#[test]
fn sniffing_ships_to_the_learned_nodes_and_follows_the_cluster_as_it_shrinks() {
    let (a, b) = (osmem(), osmem());
    let port = |es: &Osmem| es.url.rsplit(':').next().unwrap().to_owned();
    let node_a = json!({"name": "a", "roles": ["data", "ingest"], "http": {
        "bound_address": [format!("127.0.0.1:{}", port(&a))],
        "publish_address": format!("127.0.0.1:{}", port(&a))}});
    let node_b = json!({"name": "b", "roles": ["data"], "http": {
        "bound_address": [format!("127.0.0.1:{}", port(&b))],
        "publish_address": format!("localhost/127.0.0.1:{}", port(&b))}});
    let master = json!({"name": "m", "roles": ["master"], "http": {
        "publish_address": "127.0.0.1:1"}});
    let nodes = Arc::new(Mutex::new(
        json!({"node-a": node_a, "node-b": node_b.clone(), "node-m": master}),
    ));
    let sniffs = Arc::new(Mutex::new(0u64));
    let (answering, counting) = (nodes.clone(), sniffs.clone());
    let standin = Front::start(Arc::new(move |method, path, _, _| {
        if method == "GET" && path == "/_nodes/http" {
            *counting.lock().unwrap() += 1;
            let nodes: Value = answering.lock().unwrap().clone();
            let body = json!({"_nodes": {"total": 3, "successful": 3, "failed": 0},
                "cluster_name": "standin", "nodes": nodes});
            return (200, body.to_string());
        }
        (503, json!({"error": "not a data node"}).to_string())
    }));
    let node = Node::new();
    let agent = Agent::start(&config(
        &node,
        std::slice::from_ref(&standin.url),
        "sniff = true\nsniff_interval = \"1s\"",
    ));
    wait_until(30, "the learned nodes", || alive(&agent) == 2.0);
    let mut expected = node.json_lines("grown", 1500);
    wait_until(60, "the first lines", || count_all(&[&a, &b]) >= 1500);
    let a_before = a.count("logs-*").unwrap();
    assert!(
        a_before > 0 && b.count("logs-*").unwrap() > 0,
        "both learned nodes must take requests"
    );

    // Node a leaves the cluster: after the next sniff, nothing more goes to it.
    *nodes.lock().unwrap() = json!({"node-b": node_b});
    let asked = *sniffs.lock().unwrap();
    wait_until(30, "two more sniffs", || {
        *sniffs.lock().unwrap() >= asked + 2
    });
    assert_eq!(alive(&agent) + set_aside(&agent), 1.0, "one learned node");
    expected.extend(node.json_lines("shrunk", 1500));
    assert_once_over(&[&a, &b], &expected);
    assert_eq!(
        a.count("logs-*").unwrap(),
        a_before,
        "a node that left the cluster gets no requests"
    );
    assert!(agent.stop().success());
}

/// A cluster whose `_nodes/http` fails (here: a gateway that forwards bulk requests but
/// answers 500 to everything else) keeps the hosts known so far: shipping goes on, each failed
/// sniff is counted, and the failure is logged once, not at every interval.
#[test]
fn a_failing_sniff_keeps_the_known_hosts_and_is_logged_once() {
    let es = osmem();
    let upstream = es.url.clone();
    let gateway = Front::start(Arc::new(move |method, path, body, gzip| {
        if !path.starts_with("/_bulk") {
            return (500, json!({"error": "injected"}).to_string());
        }
        let body = if gzip { gunzip(body) } else { body.to_vec() };
        logferry_harness::http(
            method,
            &format!("{upstream}{path}"),
            "application/x-ndjson",
            &body,
        )
        .unwrap_or((502, String::new()))
    }));
    let node = Node::new();
    let agent = Agent::start(&config(
        &node,
        std::slice::from_ref(&gateway.url),
        "sniff = true\nsniff_interval = \"1s\"",
    ));
    wait_until(30, "three failed sniffs", || {
        agent.metric("logferry_elasticsearch_sniff_failures_total") >= 3
    });
    let expected = node.json_lines("unsniffed", 500);
    assert_exactly_once(&es, &expected);
    assert_eq!(alive(&agent), 1.0, "the configured host is kept");
    let logs = agent.logs();
    assert_eq!(
        logs.matches("sniffing the cluster's nodes failed").count(),
        1,
        "{logs}"
    );
    assert!(logs.contains("HTTP 500"), "the log says why: {logs}");
    assert!(agent.stop().success());
}
