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
    let file_len = std::fs::metadata(&w.path).unwrap().len();
    let agent = Agent::start(&config);
    // Elasticsearch is away: every line waits in the buffer, durable.
    wait_until(30, "every line durable in the buffer", || {
        node.checkpoint_offset() == file_len
    });
    agent.kill();
    std::fs::remove_file(node.data().join("checkpoints.json")).unwrap();

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
