//! Nothing read twice: the buffer keeps, beside the records, where each file's reading got to
//! (docs/delivery.md), so that a restart resumes there even when the checkpoints file (saved
//! once a second) is behind or gone. Against a real osmem-server and the real agent binary.

mod support;

use std::collections::HashSet;
use support::*;

/// What a restart must show: no record was met again in the index (a 409), and no byte of a
/// file the buffer held was read a second time.
fn assert_nothing_read_twice(agent: &Agent) {
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}"),
        0,
        "records sent again (read twice, then met their own ids):\n{}",
        agent.logs()
    );
    assert_eq!(
        agent.metric("logferry_reread_bytes_total"),
        0,
        "bytes read again:\n{}",
        agent.logs()
    );
}

/// Waits until every line of `w` is durable in the buffer, then SIGKILLs the agent and loses
/// the checkpoints file (saved once a second, it could be a second behind; here it is gone).
fn kill_once_durable(node: &Node, agent: Agent, w: &LogWriter) {
    let len = std::fs::metadata(&w.path).unwrap().len();
    wait_until(30, "the lines durable in the buffer", || {
        node.checkpoint_offset() == len
    });
    agent.kill();
    std::fs::remove_file(node.data().join("checkpoints.json")).unwrap();
}

#[test]
fn killed_with_the_lines_in_the_buffer_and_the_checkpoints_file_lost_nothing_is_read_twice() {
    let port = free_port();
    let node = Node::new();
    let config = node.config(&format!("http://127.0.0.1:{port}"), "", "");
    let mut w = node.writer("shop", "kept", "app", Format::Cri);
    let expected: HashSet<(String, u64)> = (0..2000)
        .map(|seq| {
            w.json_line(seq).unwrap();
            ("kept".to_owned(), seq)
        })
        .collect();
    let agent = Agent::start(&config);
    // Elasticsearch is away: every line waits in the buffer, durable.
    kill_once_durable(&node, agent, &w);

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    assert_nothing_read_twice(&agent);
    let logs = agent.logs();
    assert!(
        logs.contains("files resume from the positions in the buffer"),
        "{logs}"
    );
    assert!(agent.stop().success());
}

#[test]
fn killed_after_everything_was_acknowledged_and_freed_the_lost_checkpoints_file_reads_nothing_twice()
 {
    let es = osmem();
    let node = Node::new();
    let config = node.config(&es.url, "", "");
    let agent = Agent::start(&config);
    let mut expected = node.json_lines("first", 500);
    assert_exactly_once(&es, &expected);
    // Acknowledged: what shipping freed is gone from the buffer, but not where the file was.
    wait_until(30, "the buffer to be empty", || {
        agent.metric("logferry_buffer_records") == 0
    });
    // The ack cursor is saved once a second: past it, nothing is shipped again either.
    std::thread::sleep(std::time::Duration::from_secs(2));
    agent.kill();
    std::fs::remove_file(node.data().join("checkpoints.json")).unwrap();

    // Started and killed again before anything new was appended: the positions must outlive
    // a start that wrote nothing.
    let agent = Agent::start(&config);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_nothing_read_twice(&agent);
    agent.kill();
    std::fs::remove_file(node.data().join("checkpoints.json")).unwrap();

    let agent = Agent::start(&config);
    expected.extend(node.json_lines("second", 100));
    assert_exactly_once(&es, &expected);
    assert_nothing_read_twice(&agent);
    assert!(agent.stop().success());
}

/// Appends one physical CRI line to the file.
fn append_cri(path: &std::path::Path, tag: &str, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    writeln!(f, "2026-11-26T17:30:00.000000001Z stdout {tag} {text}").unwrap();
}

#[test]
fn a_partial_given_up_on_and_then_a_sigkill_is_not_joined_differently_the_second_time() {
    let es = osmem();
    let node = Node::new();
    let config = node.config(&es.url, "partial_timeout = \"1s\"", "");
    let mut w = node.writer("shop", "cut", "app", Format::Cri);
    w.json_line(0).unwrap();
    append_cri(&w.path, "P", "head of a record whose end came late");
    let agent = Agent::start(&config);
    let logs_of = |text: &str| {
        docs(&es)
            .into_iter()
            .filter(|(_, d)| d["log"].as_str().is_some_and(|l| l.contains(text)))
            .map(|(_, d)| d)
            .collect::<Vec<_>>()
    };
    wait_until(60, "the head given up on and indexed", || {
        !logs_of("head of a record").is_empty()
    });
    // The ack cursor saved (once a second), so the head is not sent again from the buffer.
    std::thread::sleep(std::time::Duration::from_secs(2));
    agent.kill();
    // As if the checkpoints file had not caught up (it is saved once a second too).
    std::fs::remove_file(node.data().join("checkpoints.json")).unwrap();
    append_cri(&w.path, "F", "and its late tail");

    let agent = Agent::start(&config);
    wait_until(60, "the late tail indexed", || {
        !logs_of("and its late tail").is_empty()
    });
    // Read once, cut once: the head as it was shipped, the tail a record of its own (read
    // again from before the head, the two would be joined under the head's id, a 409, and
    // the tail lost).
    let head = logs_of("head of a record");
    assert_eq!(head.len(), 1, "{head:?}");
    assert_eq!(head[0]["log"], "head of a record whose end came late");
    assert_eq!(head[0]["logferry"]["unterminated"], true, "{}", head[0]);
    assert_eq!(logs_of("and its late tail").len(), 1);
    assert_eq!(
        docs_of(&es, "cut").len(),
        3,
        "line 0, the head and the tail, once each"
    );
    assert_nothing_read_twice(&agent);
    assert!(agent.stop().success());
}

/// How many times each seq is in the indices `pattern` names.
fn seqs_in(es: &Osmem, pattern: &str) -> std::collections::HashMap<(String, u64), usize> {
    seq_counts(&es.all_documents(pattern).expect("search"))
}

#[test]
fn a_pod_relabelled_between_a_sigkill_and_the_restart_puts_each_line_in_one_index_once() {
    use support::kubeapi::{FakeApi, pod};
    // Elasticsearch away while the first life reads, so every line is only in the buffer.
    let port = free_port();
    let api = FakeApi::start();
    let mut audited = pod("shop", "orders-1", "node-a", serde_json::json!({}));
    audited["metadata"]["labels"]["logging.klear.io/class"] = "audit".into();
    api.put_pod(audited.clone());
    let node = Node::new();
    let config = node.config_with(
        &format!("http://127.0.0.1:{port}"),
        &format!(
            "[kubernetes]\nenabled = true\nnode_name = \"node-a\"\napi_server = {:?}\n\
             [[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\n\
             when.labels = {{ \"logging.klear.io/class\" = \"audit\" }}\n",
            api.url
        ),
    );
    let mut w = node.writer("shop", "orders-1", "api", Format::Cri);
    let agent = Agent::start(&config);
    for seq in 0..300 {
        w.json_line(seq).unwrap();
    }
    kill_once_durable(&node, agent, &w);
    // Relabelled while the agent is down: its lines from now on are no audit.
    audited["metadata"]["labels"]["logging.klear.io/class"] = "app".into();
    api.put_pod(audited);

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    for seq in 300..350 {
        w.json_line(seq).unwrap();
    }
    wait_until(60, "every line indexed", || {
        es.count("audit-*").unwrap_or(0) + es.count("logs-*").unwrap_or(0) >= 350
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (audit, app) = (seqs_in(&es, "audit-*"), seqs_in(&es, "logs-*"));
    // Read once, routed once: by the labels the pod had when the line was read.
    assert_eq!(audit.len(), 300, "audit: {}", audit.len());
    assert_eq!(app.len(), 50, "app: {}", app.len());
    for ((_, seq), n) in audit.iter().chain(app.iter()) {
        assert_eq!(*n, 1, "seq {seq} {n} times");
    }
    assert!(audit.keys().all(|(_, s)| *s < 300) && app.keys().all(|(_, s)| *s >= 300));
    assert_nothing_read_twice(&agent);
    assert!(agent.stop().success());
}

#[test]
fn a_route_reloaded_just_before_a_sigkill_routes_no_line_twice() {
    let port = free_port();
    let node = Node::new();
    let route = |index: &str| {
        format!(
            "[[route]]\nname = \"audit\"\nindex = \"{index}-%Y.%m\"\n\
             when.field = {{ path = \"service\", equals = \"orders-api\" }}\n"
        )
    };
    let config = node.config_with(&format!("http://127.0.0.1:{port}"), &route("audit"));
    let mut w = node.writer("shop", "orders-1", "api", Format::Cri);
    let agent = Agent::start(&config);
    for seq in 0..300 {
        w.json_line(seq).unwrap();
    }
    let len = std::fs::metadata(&w.path).unwrap().len();
    wait_until(30, "the lines durable in the buffer", || {
        node.checkpoint_offset() == len
    });
    // The route now names another index; the reload is taken, and the agent killed at once.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"audit-%Y.%m\"", "\"compliance-%Y.%m\""),
    )
    .unwrap();
    agent.signal("HUP");
    wait_until(10, "the reload taken", || {
        agent.logs().contains("config reloaded")
    });
    kill_once_durable(&node, agent, &w);

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    for seq in 300..350 {
        w.json_line(seq).unwrap();
    }
    wait_until(60, "every line indexed", || {
        es.count("audit-*").unwrap_or(0) + es.count("compliance-*").unwrap_or(0) >= 350
    });
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (before, after) = (seqs_in(&es, "audit-*"), seqs_in(&es, "compliance-*"));
    assert_eq!((before.len(), after.len()), (300, 50));
    for ((_, seq), n) in before.iter().chain(after.iter()) {
        assert_eq!(*n, 1, "seq {seq} {n} times");
    }
    assert!(before.keys().all(|(_, s)| *s < 300) && after.keys().all(|(_, s)| *s >= 300));
    assert_nothing_read_twice(&agent);
    assert!(agent.stop().success());
}

#[test]
fn a_file_rotated_while_the_agent_was_down_and_the_checkpoints_file_lost_is_read_on_from_its_position()
 {
    let port = free_port();
    let node = Node::new();
    let config = node.config(&format!("http://127.0.0.1:{port}"), "", "");
    let mut w = node.writer("shop", "rotated", "app", Format::Cri);
    for seq in 0..200 {
        w.json_line(seq).unwrap();
    }
    let agent = Agent::start(&config);
    kill_once_durable(&node, agent, &w);
    // While the agent is down: more lines, then the kubelet's rotation, then the new file's.
    for seq in 200..230 {
        w.json_line(seq).unwrap();
    }
    w.rotate("20261206-120000").unwrap();
    for seq in 230..280 {
        w.json_line(seq).unwrap();
    }

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    // The rotated file is found again from the position the buffer kept (its path among it):
    // its last 30 lines are read, its first 200 not again.
    let expected: HashSet<(String, u64)> = (0..280).map(|s| ("rotated".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    assert_nothing_read_twice(&agent);
    assert!(agent.stop().success());
}
