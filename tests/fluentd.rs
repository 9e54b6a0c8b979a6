//! A cut-over from Fluentd: on its first start the agent reads Fluentd's `pos_file` and starts
//! each file Fluentd was reading where Fluentd stopped — also a file rotated since, found by its
//! inode — while files Fluentd never saw are read from `read_from`. Exactly the lines after
//! each position are indexed, once, and the pos_file is never read again.

mod support;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use support::*;

/// The byte offset just after the first `lines` lines of the file at `path`.
fn after_lines(path: &Path, lines: usize) -> u64 {
    let text = std::fs::read(path).unwrap();
    let mut seen = 0;
    for (i, b) in text.iter().enumerate() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                return i as u64 + 1;
            }
        }
    }
    panic!("{} has fewer than {lines} lines", path.display());
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// One pos_file line, as Fluentd's in_tail writes it.
fn pos_line(path: &Path, pos: u64, ino: u64) -> String {
    format!("{}\t{pos:016x}\t{ino:016x}\n", path.display())
}

fn lines(w: &mut LogWriter, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        w.json_line(seq).unwrap();
    }
}

fn expect(pod: &str, seqs: std::ops::Range<u64>, into: &mut HashSet<(String, u64)>) {
    into.extend(seqs.map(|s| (pod.to_owned(), s)));
}

#[test]
fn the_first_start_resumes_each_file_where_fluentds_pos_file_says_and_only_that_once() {
    let es = osmem();
    let node = Node::new();
    let mut expected = HashSet::new();
    let mut pos = String::new();
    // Fluentd read 10 of 30 lines.
    let mut resumed = node.writer("shop", "resumed-1", "app", Format::Cri);
    lines(&mut resumed, 0..30);
    pos += &pos_line(
        &resumed.link,
        after_lines(&resumed.path, 10),
        inode(&resumed.path),
    );
    expect("resumed-1", 10..30, &mut expected);
    // Fluentd read 5 of 15, then the kubelet rotated the file and the pod wrote 10 more.
    let mut rotated = node.writer("shop", "rotated-1", "app", Format::Docker);
    lines(&mut rotated, 0..15);
    pos += &pos_line(
        &rotated.link,
        after_lines(&rotated.path, 5),
        inode(&rotated.path),
    );
    rotated.rotate("20261202-061500").unwrap();
    lines(&mut rotated, 15..25);
    expect("rotated-1", 5..25, &mut expected);
    // Fluentd read all of it: nothing to ship.
    let mut done = node.writer("shop", "done-1", "app", Format::Cri);
    lines(&mut done, 0..8);
    pos += &pos_line(&done.link, after_lines(&done.path, 8), inode(&done.path));
    // An older line for the same path comes first in the file: the last one counts.
    let mut appended = node.writer("shop", "appended-1", "app", Format::Cri);
    lines(&mut appended, 0..12);
    pos += &pos_line(
        &appended.link,
        after_lines(&appended.path, 2),
        inode(&appended.path),
    );
    pos += &pos_line(
        &appended.link,
        after_lines(&appended.path, 9),
        inode(&appended.path),
    );
    expect("appended-1", 9..12, &mut expected);
    // Fluentd stopped watching it (ffff…): read like a file Fluentd never saw.
    let mut unwatched = node.writer("shop", "unwatched-1", "app", Format::Cri);
    lines(&mut unwatched, 0..6);
    pos += &format!(
        "{}\tffffffffffffffff\t{:016x}\n",
        unwatched.link.display(),
        inode(&unwatched.path)
    );
    expect("unwatched-1", 0..6, &mut expected);
    // A position whose inode was reused by another file: not at a line's start there.
    let mut reused = node.writer("shop", "reused-1", "app", Format::Cri);
    lines(&mut reused, 0..7);
    pos += &pos_line(
        &reused.link,
        after_lines(&reused.path, 3) - 5,
        inode(&reused.path),
    );
    expect("reused-1", 0..7, &mut expected);
    // Fluentd never saw it.
    let mut new = node.writer("shop", "new-1", "app", Format::Cri);
    lines(&mut new, 0..4);
    expect("new-1", 0..4, &mut expected);
    let pos_file = node.dir.path().join("fluentd-containers.log.pos");
    std::fs::write(&pos_file, pos).unwrap();
    let config = node.config(
        &es.url,
        &format!("fluentd_pos_file = {:?}", pos_file.display().to_string()),
        "",
    );
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    for (outcome, n) in [("resumed", 3), ("rotated", 1), ("refused", 1), ("gone", 0)] {
        assert_eq!(
            agent.metric(&format!(
                "logferry_fluentd_positions_total{{outcome=\"{outcome}\"}}"
            )),
            n,
            "{outcome}"
        );
    }
    assert!(
        agent.logs().contains("starting where Fluentd stopped"),
        "{}",
        agent.logs()
    );
    assert!(agent.stop().success());
    // The pos_file is read on the first start only: pointing it at the start changes nothing.
    let mut again = String::new();
    again += &pos_line(&resumed.link, 0, inode(&resumed.path));
    std::fs::write(&pos_file, again).unwrap();
    lines(&mut resumed, 30..33);
    expect("resumed-1", 30..33, &mut expected);
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    assert_eq!(
        agent.metric("logferry_fluentd_positions_total{outcome=\"resumed\"}"),
        0
    );
    assert!(agent.stop().success());
}

/// What Fluentd writes that logferry does not, and why (docs/fluentd.md, "Coming from Fluentd", says
/// the same).
const NOT_WRITTEN: &[(&str, &str)] = &[
    (
        "logtag",
        "the CRI tag (P or F): partial lines are joined before there is a document",
    ),
    (
        "log",
        "parse.keep_original = false: a JSON message's fields are the message (true keeps it)",
    ),
    (
        "kubernetes.master_url",
        "the API server's address: the same on every line of a cluster",
    ),
    (
        "kubernetes.namespace_id",
        "the namespace's UID: its name identifies it within a cluster",
    ),
];

/// Every leaf of `v` (objects descended), by dotted path.
fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match v.as_object() {
        Some(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        None => out.push((prefix.to_owned(), v.clone())),
    }
}

fn at<'v>(v: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[test]
fn every_field_fluentd_indexes_is_in_logferrys_document_with_its_type() {
    use serde_json::json;
    use support::kubeapi::{FakeApi, pod};
    let fluentd: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/fluentd/documents/orders-api.json")).unwrap();
    let es = osmem();
    let api = FakeApi::start();
    api.put_namespace(
        "shop",
        json!({"team": "payments", "kubernetes.io/metadata.name": "shop"}),
    );
    api.put_pod(pod(
        "shop",
        "orders-api-7d9f8b6c5-x2bqz",
        "node-a",
        json!({}),
    ));
    let node = Node::new();
    let mut w = node.writer("shop", "orders-api-7d9f8b6c5-x2bqz", "api", Format::Cri);
    w.line(fluentd["log"].as_str().unwrap()).unwrap();
    let config = node.config_with(
        &es.url,
        &format!(
            "[kubernetes]\nenabled = true\nnode_name = \"node-a\"\napi_server = {:?}\n",
            api.url
        ),
    );
    let agent = Agent::start(&config);
    assert_eq!(wait_for_count(&es, 1, 30), 1);
    let ours = &docs(&es)[0].1;
    let mut fields = Vec::new();
    leaves("", &fluentd, &mut fields);
    for (path, theirs) in fields {
        if path == "_comment" {
            continue;
        }
        if let Some((_, why)) = NOT_WRITTEN.iter().find(|(p, _)| *p == path) {
            assert!(
                at(ours, &path).is_none(),
                "{path} is listed as not written ({why}): {ours}"
            );
            continue;
        }
        let Some(mine) = at(ours, &path) else {
            panic!("Fluentd writes {path}; logferry's document has no such field: {ours}");
        };
        assert_eq!(
            kind(mine),
            kind(&theirs),
            "{path}: {mine} vs Fluentd's {theirs}"
        );
    }
    // The pod's identity is the same, value for value.
    for path in [
        "stream",
        "kubernetes.namespace_name",
        "kubernetes.pod_name",
        "kubernetes.container_name",
        "kubernetes.container_image",
        "kubernetes.container_image_id",
        "kubernetes.host",
        "kubernetes.pod_ip",
        "kubernetes.labels.app_kubernetes_io/name",
        "kubernetes.namespace_labels.team",
        "docker.container_id",
        "seq",
    ] {
        assert_eq!(at(ours, path), at(&fluentd, path), "{path}: {ours}");
    }
    assert!(agent.stop().success());
}
