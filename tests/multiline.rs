//! Multiline end to end (issue 14): real stack traces written the way container runtimes write
//! them (CRI and docker, partial pieces, rotations, restarts and crashes) → the agent binary →
//! osmem-server. Each test reads what a user reads in the index: one document per trace, its
//! lines intact, its neighbours untouched, nothing lost and nothing twice.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use support::kubeapi::{FakeApi, pod};
use support::*;

/// The lines of a real trace in `tests/fixtures/multiline/<rule>/<name>.log`.
fn fixture(rule: &str, name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/multiline")
        .join(rule)
        .join(format!("{name}.log"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    text.lines().map(str::to_owned).collect()
}

/// A config for `node` shipping to `es` with this `[multiline]` section's keys.
fn config(node: &Node, es: &Osmem, multiline: &str) -> PathBuf {
    node.config_with(&es.url, &format!("[multiline]\n{multiline}\n"))
}

/// Writes one trace line on stderr as one record.
fn stderr(w: &mut LogWriter, line: &str) {
    w.write_pieces("stderr", &[line]).expect("write");
}

/// A JSON line on stdout carrying `seq`, remembered in `expected`.
fn json_line(w: &mut LogWriter, seq: u64, expected: &mut HashSet<(String, u64)>) {
    w.json_line(seq).expect("write");
    expected.insert((w.pod.clone(), seq));
}

/// The documents that hold joined lines (`logferry.multiline_lines` set), in file order.
fn joined(es: &Osmem) -> Vec<Value> {
    let mut out: Vec<Value> = docs(es)
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["logferry"]["multiline_lines"].is_u64())
        .collect();
    out.sort_by_key(|d| d["@timestamp"].as_str().unwrap_or("").to_owned());
    out
}

/// Waits until the index holds `n` joined documents.
fn wait_for_joined(es: &Osmem, n: usize, secs: u64) -> Vec<Value> {
    wait_until(secs, &format!("{n} joined documents"), || {
        joined(es).len() >= n
    });
    joined(es)
}

/// Every (pod, seq) in `expected` is indexed exactly once, and besides them exactly `traces`
/// documents without a seq; the ids are all distinct.
fn assert_lines_once_plus(es: &Osmem, expected: &HashSet<(String, u64)>, traces: usize) {
    let n = expected.len() + traces;
    let count = wait_for_count(es, n as u64, 60);
    let docs = docs(es);
    let counts = seq_counts(&docs);
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !counts.contains_key(*k))
        .collect();
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "missing lines: {missing:?}");
    assert!(dups.is_empty(), "duplicated lines: {dups:?}");
    assert_eq!(count, n as u64, "documents: {docs:#?}");
    let ids: HashSet<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), n, "distinct ids");
}

/// The `@timestamp` the n-th line a fresh [`LogWriter`] writes (1-based) carries.
fn nth_line_time(n: u32) -> String {
    format!("2026-11-26T17:00:00.{:03}", n)
}

#[test]
fn a_node_crash_is_one_document_and_its_neighbours_stay_lines() {
    let es = osmem();
    let node = Node::new();
    let trace = fixture("node", "uncaught_top_level");
    let mut w = node.writer("shop", "orders-api", "api", Format::Cri);
    let mut expected = HashSet::new();
    // The app logs JSON on stdout while Node prints its crash on stderr, line by line between.
    for (seq, line) in trace.iter().enumerate() {
        json_line(&mut w, seq as u64, &mut expected);
        stderr(&mut w, line);
    }
    json_line(&mut w, trace.len() as u64, &mut expected);
    let _agent = Agent::start(&config(&node, &es, "rules = [\"node\"]"));

    let joined = wait_for_joined(&es, 1, 60);
    assert_lines_once_plus(&es, &expected, 1);
    let d = &joined[0];
    assert_eq!(d["log"].as_str(), Some(trace.join("\n").as_str()), "{d}");
    assert_eq!(d["logferry"]["multiline_lines"], trace.len(), "{d}");
    assert!(d["logferry"].get("multiline_split").is_none(), "{d}");
    assert_eq!(d["stream"], "stderr");
    assert_eq!(d["kubernetes"]["pod_name"], "orders-api");
    // The trace's first line is the file's second.
    let ts = d["@timestamp"].as_str().unwrap_or("");
    assert!(ts.starts_with(&nth_line_time(2)), "{ts}");
    for (_, d) in docs(&es).iter().filter(|(_, d)| d["seq"].is_u64()) {
        assert_eq!(d["stream"], "stdout", "{d}");
        assert!(
            d.get("logferry").is_none(),
            "a JSON line is never joined: {d}"
        );
    }
}

/// Each trace line in pieces of at most 9 bytes, the way the runtime writes a long line.
fn trace_in_pieces(format: Format) {
    let es = osmem();
    let node = Node::new();
    let trace = fixture("java", "caused_by_chain");
    let mut w = node.writer("shop", "pieces", "api", format);
    let mut expected = HashSet::new();
    for (seq, line) in trace.iter().enumerate() {
        let pieces: Vec<&str> = line
            .as_bytes()
            .chunks(9)
            .map(|c| std::str::from_utf8(c).expect("ASCII trace"))
            .collect();
        let pieces = if pieces.is_empty() { vec![""] } else { pieces };
        w.write_pieces("stderr", &pieces).expect("write");
        json_line(&mut w, seq as u64, &mut expected);
    }
    let agent = Agent::start(&config(&node, &es, "rules = [\"java\"]"));

    let joined = wait_for_joined(&es, 1, 60);
    assert_lines_once_plus(&es, &expected, 1);
    let d = &joined[0];
    assert_eq!(d["log"].as_str(), Some(trace.join("\n").as_str()), "{d}");
    assert_eq!(d["logferry"]["multiline_lines"], trace.len(), "{d}");
    assert_eq!(d["stream"], "stderr");
    assert_eq!(agent.metric("logferry_multiline_records_total"), 1);
    assert_eq!(
        agent.metric("logferry_multiline_lines_total"),
        trace.len() as u64
    );
}

#[test]
fn a_trace_written_in_cri_partial_pieces_is_joined_after_the_pieces() {
    trace_in_pieces(Format::Cri);
}

#[test]
fn a_trace_written_in_docker_lines_without_newlines_is_joined_after_the_pieces() {
    trace_in_pieces(Format::Docker);
}

/// Header and half the frames, the agent reads them and holds them (flush_timeout 30s), is
/// stopped by `stop`, the rest is written and the agent started again.
fn trace_cut_by(stop: impl FnOnce(Agent)) {
    let es = osmem();
    let node = Node::new();
    let trace = fixture("node", "uncaught_top_level");
    let (head, rest) = trace.split_at(8);
    let config = config(&node, &es, "rules = [\"node\"]\nflush_timeout = \"30s\"");
    let mut w = node.writer("shop", "crashing", "api", Format::Cri);
    let mut expected = HashSet::new();
    for seq in 0..5 {
        json_line(&mut w, seq, &mut expected);
    }
    for line in head {
        stderr(&mut w, line);
    }
    for seq in 5..10 {
        json_line(&mut w, seq, &mut expected);
    }
    let agent = Agent::start(&config);
    wait_until(60, "every line written so far read", || {
        agent.metric("logferry_input_lines_total") >= 18
    });
    // The stdout lines are shipped; the trace is held, waiting for its end.
    assert_eq!(wait_for_count(&es, 10, 60), 10);
    assert!(
        joined(&es).is_empty(),
        "nothing of the trace is shipped yet"
    );
    stop(agent);

    for line in rest {
        stderr(&mut w, line);
    }
    for seq in 10..15 {
        json_line(&mut w, seq, &mut expected);
    }
    let agent = Agent::start(&config);
    let joined = wait_for_joined(&es, 1, 60);
    assert_lines_once_plus(&es, &expected, 1);
    let d = &joined[0];
    assert_eq!(d["log"].as_str(), Some(trace.join("\n").as_str()), "{d}");
    assert_eq!(d["logferry"]["multiline_lines"], trace.len(), "{d}");
    assert!(d["logferry"].get("multiline_split").is_none(), "{d}");
    assert_eq!(agent.metric("logferry_multiline_records_total"), 1);
    assert!(agent.stop().success());
}

#[test]
fn a_trace_cut_by_sigkill_is_joined_once_after_the_restart() {
    trace_cut_by(Agent::kill);
}

#[test]
fn a_trace_cut_by_sigterm_is_joined_once_after_the_restart() {
    trace_cut_by(|agent| assert!(agent.stop().success()));
}

#[test]
fn a_trace_that_pauses_is_shipped_by_its_flush_timeout() {
    let es = osmem();
    let node = Node::new();
    // A Java trace has no last line of its own: only what follows, or the pause, ends it.
    // A log line, then the trace.
    let lines = fixture("java", "uncaught_simple");
    let (prelude, trace) = lines.split_at(1);
    let mut w = node.writer("shop", "paused", "api", Format::Cri);
    let agent = Agent::start(&config(
        &node,
        &es,
        "rules = [\"java\"]\nflush_timeout = \"1s\"",
    ));
    for line in &lines {
        stderr(&mut w, line);
    }
    // Nothing more is written.
    let joined = wait_for_joined(&es, 1, 30);
    assert_eq!(wait_for_count(&es, 2, 30), 2, "{:#?}", docs(&es));
    assert!(
        docs(&es)
            .iter()
            .any(|(_, d)| d["log"].as_str() == Some(&prelude[0]) && d.get("logferry").is_none()),
        "the log line before the trace is a document of its own"
    );
    let d = &joined[0];
    assert_eq!(d["log"].as_str(), Some(trace.join("\n").as_str()), "{d}");
    assert_eq!(d["logferry"]["multiline_lines"], trace.len(), "{d}");
    assert!(agent.metric("logferry_multiline_timeouts_total") >= 1);
}

#[test]
fn a_trace_straddling_a_rotation_loses_nothing() {
    let es = osmem();
    let node = Node::new();
    let trace = fixture("java", "caused_by_chain");
    // The rotation falls after the first frame: the new file starts with `\tat …`.
    let (head, rest) = trace.split_at(2);
    let mut w = node.writer("shop", "rotating", "api", Format::Cri);
    let mut expected = HashSet::new();
    let agent = Agent::start(&config(&node, &es, "rules = [\"java\"]"));
    for seq in 0..5 {
        json_line(&mut w, seq, &mut expected);
    }
    for line in head {
        stderr(&mut w, line);
    }
    wait_until(60, "the trace's head read", || {
        agent.metric("logferry_input_lines_total") >= 7
    });
    w.rotate("20261126-170000").expect("rotate");
    for line in rest {
        stderr(&mut w, line);
    }
    for seq in 5..10 {
        json_line(&mut w, seq, &mut expected);
    }

    let joined = wait_for_joined(&es, 2, 60);
    assert_lines_once_plus(&es, &expected, 2);
    let (first, second) = (&joined[0], &joined[1]);
    assert_eq!(first["log"].as_str(), Some(head.join("\n").as_str()));
    assert!(
        first["logferry"].get("multiline_split").is_none(),
        "{first}"
    );
    assert_eq!(second["log"].as_str(), Some(rest.join("\n").as_str()));
    assert_eq!(second["logferry"]["multiline_lines"], rest.len());
    assert_eq!(
        second["logferry"]["multiline_split"], true,
        "the rest of a trace at a new file's start: {second}"
    );
}

#[test]
fn max_lines_splits_a_long_trace_and_flags_its_later_parts() {
    let es = osmem();
    let node = Node::new();
    let mut trace = vec!["Exception in thread \"main\" java.lang.StackOverflowError".to_owned()];
    trace.extend((0..120).map(|n| {
        format!(
            "\tat com.acme.orders.Tree.descend(Tree.java:{})",
            10 + n % 7
        )
    }));
    let mut w = node.writer("shop", "deep", "api", Format::Cri);
    for line in &trace {
        stderr(&mut w, line);
    }
    let agent = Agent::start(&config(&node, &es, "rules = [\"java\"]\nmax_lines = 50"));

    let parts = wait_for_joined(&es, 3, 60);
    assert_eq!(wait_for_count(&es, 3, 30), 3, "{parts:#?}");
    let lines: Vec<&Value> = parts
        .iter()
        .map(|d| &d["logferry"]["multiline_lines"])
        .collect();
    assert_eq!(lines, [50, 50, 21]);
    let split: Vec<bool> = parts
        .iter()
        .map(|d| d["logferry"]["multiline_split"] == true)
        .collect();
    assert_eq!(split, [false, true, true]);
    let whole: Vec<&str> = parts.iter().filter_map(|d| d["log"].as_str()).collect();
    assert_eq!(whole.join("\n"), trace.join("\n"), "split, never cut");
    assert_eq!(agent.metric("logferry_multiline_splits_total"), 2);
}

/// Runs an agent with `[multiline] rules` against the fake API until every line of every pod
/// (each writing the Python trace) is shipped, joined or not.
fn python_pods(rules: &str, pods: &[(&str, Value)], wanted: u64) -> Osmem {
    let es = osmem();
    let api = FakeApi::start();
    let node = Node::new();
    let trace = fixture("python", "raise_from");
    for (name, annotations) in pods {
        api.put_pod(pod("shop", name, "node-a", annotations.clone()));
        let mut w = node.writer("shop", name, "worker", Format::Cri);
        for line in &trace {
            stderr(&mut w, line);
        }
    }
    let config = node.config_with(
        &es.url,
        &format!(
            "[kubernetes]\nenabled = true\nnode_name = \"node-a\"\napi_server = {:?}\n\
             [multiline]\nrules = {rules}\n",
            api.url
        ),
    );
    let agent = Agent::start(&config);
    assert_eq!(wait_for_count(&es, wanted, 60), wanted, "{}", agent.logs());
    es
}

#[test]
fn a_pod_annotation_turns_multiline_on_or_off() {
    let trace = fixture("python", "raise_from");
    let n = trace.len() as u64;
    let whole = trace.join("\n");
    let annotated = |v: &str| json!({"logferry.io/multiline": v});

    // Off for the node; one pod asks for Python traces to be joined.
    let es = python_pods(
        "[]",
        &[("py-on", annotated("python")), ("py-plain", json!({}))],
        1 + n,
    );
    let on = docs_of(&es, "py-on");
    assert_eq!(on.len(), 1, "{on:#?}");
    assert_eq!(on[0]["log"].as_str(), Some(whole.as_str()));
    assert_eq!(on[0]["logferry"]["multiline_lines"], n);
    let plain = docs_of(&es, "py-plain");
    assert_eq!(plain.len() as u64, n, "not annotated: one document a line");
    assert!(plain.iter().all(|d| d.get("logferry").is_none()));

    // On for the node; one pod turns it off.
    let es = python_pods(
        "[\"auto\"]",
        &[("py-none", annotated("none")), ("py-auto", json!({}))],
        n + 1,
    );
    let none = docs_of(&es, "py-none");
    assert_eq!(none.len() as u64, n, "annotated none: lines stay separate");
    let mut logs: Vec<&str> = none.iter().filter_map(|d| d["log"].as_str()).collect();
    let mut lines: Vec<&str> = trace.iter().map(String::as_str).collect();
    logs.sort_unstable();
    lines.sort_unstable();
    assert_eq!(logs, lines);
    let auto = docs_of(&es, "py-auto");
    assert_eq!(auto.len(), 1, "{auto:#?}");
    assert_eq!(auto[0]["log"].as_str(), Some(whole.as_str()));
}

#[test]
fn validate_names_a_bad_custom_multiline_regex_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logferry.toml");
    std::fs::write(
        &path,
        "[elasticsearch]\nhosts = [\"http://es:9200\"]\n\
         [multiline]\nrules = [\"stamped\"]\n\
         [[multiline.custom]]\nname = \"stamped\"\nstart_pattern = '^(\\d{4}-'\n",
    )
    .expect("write config");
    let p = path.display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logferry"))
        .args(["validate", "--config", &p])
        .output()
        .expect("run logferry");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{p}:7:17: multiline.custom[0].start_pattern: invalid regular expression"
        )),
        "{err}"
    );
}

/// Every fixture trace (`NAME.log`, its records' sizes in `NAME.groups`) as one pod's stderr.
fn fixtures_with_groups() -> Vec<(String, Vec<String>, Vec<u64>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multiline");
    let mut out = Vec::new();
    for rule in ["node", "java", "python", "go", "mixed"] {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(root.join(rule))
            .expect("fixtures")
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let name = log.file_stem().expect("name").to_string_lossy();
            let groups = std::fs::read_to_string(log.with_extension("groups")).expect("groups");
            let sizes = groups
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| l.trim().parse().expect("a size"))
                .collect();
            // A pod's name has no `_` (the file name's separator).
            let pod = format!("{rule}-{}", name.replace('_', "-"));
            out.push((pod, fixture(rule, &name), sizes));
        }
    }
    out
}

#[test]
fn every_fixture_trace_reaches_the_index_as_its_records() {
    let es = osmem();
    let node = Node::new();
    let cases = fixtures_with_groups();
    for (pod, lines, _) in &cases {
        let mut w = node.writer("shop", pod, "app", Format::Cri);
        for line in lines {
            stderr(&mut w, line);
        }
    }
    let total: u64 = cases.iter().map(|(_, _, g)| g.len() as u64).sum();
    // Unparsed, every line keeps its text in `log` and its runtime time (the fixtures' JSON
    // lines, all in one index, would conflict in their mappings); a JSON line still ends a trace.
    let config = node.config_with(
        &es.url,
        "[multiline]\nrules = [\"auto\"]\n[parse]\njson = false\n",
    );
    let agent = Agent::start(&config);
    let count = wait_for_count(&es, total, 120);
    let mut wrong = Vec::new();
    for (pod, lines, groups) in &cases {
        let mut got = docs_of(&es, pod);
        got.sort_by_key(|d| d["@timestamp"].as_str().unwrap_or("").to_owned());
        let sizes: Vec<u64> = got
            .iter()
            .map(|d| d["logferry"]["multiline_lines"].as_u64().unwrap_or(1))
            .collect();
        let text: Vec<&str> = got.iter().filter_map(|d| d["log"].as_str()).collect();
        if &sizes != groups || text.join("\n") != lines.join("\n") {
            wrong.push(format!("{pod}: got {sizes:?}, expected {groups:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(count, total, "{}", agent.logs());
    assert!(cases.len() >= 50, "{} fixtures", cases.len());
}
