//! Partial records whose end never comes (issue 12, item 7): a CRI `P` piece without its `F`, a
//! docker piece without its `\n`. Real files → the agent binary → osmem-server.

mod support;

use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use support::*;

/// The checkpointed offset of the file at `real` (its resolved path), once saved.
fn checkpoint_of(node: &Node, real: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(node.data().join("checkpoints.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let real = std::fs::canonicalize(real).ok()?;
    v["files"]
        .as_array()?
        .iter()
        .find_map(|f| (Path::new(f["path"].as_str()?) == real).then(|| f["offset"].as_u64())?)
}

/// Appends `line` and its newline to the file, as the runtime writes one physical line.
fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open log");
    writeln!(f, "{line}").expect("append");
}

/// A partial piece on stdout: a CRI `P` line, or a docker line whose `log` has no `\n`.
fn orphan_piece(format: Format, message: &str) -> String {
    let time = "2026-11-26T17:30:00.000000001Z";
    match format {
        Format::Cri => format!("{time} stdout P {message}"),
        Format::Docker => json!({"log": message, "stream": "stdout", "time": time}).to_string(),
    }
}

/// A JSON record on stderr carrying `seq`, which the stdout partial cannot join.
fn stderr_line(w: &mut LogWriter, seq: u64) {
    let msg = json!({"level": "warn", "msg": "still running", "seq": seq}).to_string();
    w.write_pieces("stderr", &[&msg]).expect("write");
}

/// Before the timeout, a partial record that never got its final piece held its file's
/// checkpoint at its first byte for as long as the file lived: it was never shipped while the
/// agent ran, and every restart read everything after it again.
#[test]
fn a_partial_record_that_never_ends_is_shipped_flagged_and_not_read_again_after_a_restart() {
    let es = osmem();
    let node = Node::new();
    let config = node.config(&es.url, "partial_timeout = \"1s\"", "");
    let mut expected: HashSet<(String, u64)> = HashSet::new();
    let mut writers = Vec::new();
    for (pod, format) in [
        ("cri-orphan", Format::Cri),
        ("docker-orphan", Format::Docker),
    ] {
        let mut w = node.writer("shop", pod, "app", format);
        for seq in 0..10 {
            w.json_line(seq).unwrap();
        }
        append(&w.path, &orphan_piece(format, "orphan head seq=10"));
        // The other stream goes on: these lines are whole, but the checkpoint used to stay at
        // the orphan's offset behind them.
        for seq in 11..20 {
            stderr_line(&mut w, seq);
        }
        expected.extend((0..20).map(|seq| (pod.to_owned(), seq)));
        writers.push(w);
    }

    let agent = Agent::start(&config);
    // Nothing more is written: the orphan must be shipped by the timeout alone.
    wait_until(60, "both orphans indexed", || {
        docs(&es)
            .iter()
            .filter(|(_, d)| d["log"] == "orphan head seq=10")
            .count()
            == 2
    });
    for (_, d) in docs(&es)
        .iter()
        .filter(|(_, d)| d["log"] == "orphan head seq=10")
    {
        assert_eq!(d["logferry"]["unterminated"], true, "{d}");
        assert_eq!(d["stream"], "stdout");
    }
    assert_eq!(
        agent.metric("logferry_records_total{outcome=\"unterminated\"}"),
        2
    );
    // The checkpoints move past the orphans to the end of each file.
    for w in &writers {
        let len = std::fs::metadata(&w.path).unwrap().len();
        wait_until(60, "the checkpoint at the end of the file", || {
            checkpoint_of(&node, &w.path) == Some(len)
        });
    }

    // A final piece that comes after the flush is a record of its own, not glued to nothing.
    let w = &mut writers[0];
    w.write_pieces("stdout", &["late tail seq=20"]).unwrap();
    expected.insert((w.pod.clone(), 20));
    wait_until(60, "the late piece indexed", || {
        docs(&es)
            .iter()
            .any(|(_, d)| d["log"] == "late tail seq=20")
    });
    assert!(agent.stop().success());

    // Written while the agent is down; after the restart only these are read.
    for w in &mut writers {
        for seq in 21..30 {
            w.json_line(seq).unwrap();
            expected.insert((w.pod.clone(), seq));
        }
    }
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    let late = docs(&es)
        .into_iter()
        .find(|(_, d)| d["log"] == "late tail seq=20")
        .map(|(_, d)| d)
        .unwrap();
    assert!(late.get("logferry").is_none(), "{late}");
    // Nothing from before the first stop went through the pipeline again.
    assert_eq!(
        agent.metric("logferry_records_total{outcome=\"ok\"}"),
        2 * 9,
        "records decoded after the restart"
    );
    assert!(agent.stop().success());
}

/// A record whose pieces keep coming, each within the timeout, is joined whole however long it
/// takes in all.
#[test]
fn a_slow_partial_record_that_keeps_coming_is_joined_whole() {
    let es = osmem();
    let node = Node::new();
    let config = node.config(&es.url, "partial_timeout = \"3s\"", "");
    let mut w = node.writer("shop", "slow", "app", Format::Cri);
    w.json_line(0).unwrap();
    let agent = Agent::start(&config);
    wait_for_count(&es, 1, 30);
    for piece in ["slow seq=1 a", "b", "c", "d"] {
        append(&w.path, &format!("2026-11-26T17:30:00Z stdout P {piece} "));
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    w.write_pieces("stdout", &["end"]).unwrap();
    let expected: HashSet<(String, u64)> = [("slow".to_owned(), 0), ("slow".to_owned(), 1)].into();
    assert_exactly_once(&es, &expected);
    let joined = docs(&es)
        .into_iter()
        .find(|(_, d)| d["seq"].is_null())
        .map(|(_, d)| d)
        .unwrap();
    assert_eq!(joined["log"], "slow seq=1 a b c d end");
    assert!(joined.get("logferry").is_none(), "{joined}");
    assert!(agent.stop().success());
}

/// The key is documented as "5s" by default and must be above zero: a zero timeout would ship
/// every piece of a split line as a record of its own.
#[test]
fn partial_timeout_defaults_to_five_seconds_and_zero_is_refused_by_name() {
    use logferry::config::Config;
    let c = Config::from_toml("", |_| None).unwrap();
    assert_eq!(c.input.partial_timeout.0, std::time::Duration::from_secs(5));
    let problems = Config::from_toml("[input]\npartial_timeout = \"0s\"\n", |_| None).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.key.as_deref() == Some("input.partial_timeout") && p.line == Some(2)),
        "{problems:#?}"
    );
}
