//! Upgrades and downgrades: what this version does with the files another version of the
//! agent left on the node (docs/deploying.md, "Upgrading"). The buffer and the checkpoints live
//! on the node's disk (a hostPath), so the next pod, of whatever version, opens what the last
//! one left.
//! Against a real osmem-server and the real agent binary.

mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use support::*;

/// 200 lines of pod `pod` made durable in the buffer while Elasticsearch (at `url`) is away,
/// the agent then stopped: the node as a pod of another version would find it.
fn buffered_while_elasticsearch_is_away(node: &Node, url: &str, pod: &str) -> PathBuf {
    let mut w = node.writer("shop", pod, "app", Format::Cri);
    for seq in 0..200 {
        w.json_line(seq).unwrap();
    }
    let file_len = std::fs::metadata(&w.path).unwrap().len();
    let config = node.config(url, "", "");
    let agent = Agent::start(&config);
    wait_until(30, "the lines to be buffered", || {
        node.checkpoint_offset() == file_len
    });
    assert!(agent.stop().success());
    config
}

#[test]
fn a_checkpoints_file_of_a_newer_format_is_set_aside_and_the_buffer_says_where_files_were() {
    let es = osmem();
    let node = Node::new();
    let expected = node.json_lines("downgraded", 200);
    let config = node.config(&es.url, "", "");
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());

    // A newer version wrote its own format; this one (the older binary) starts on it.
    let path = node.data().join("checkpoints.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"version\": \"2\""), "{text}");
    std::fs::write(
        &path,
        text.replace("\"version\": \"2\"", "\"version\": \"3\""),
    )
    .unwrap();

    let agent = Agent::start(&config);
    // The positions in the buffer say where the file was: nothing is read again, and a line
    // written now is the only new document.
    let mut w = node.writer("shop", "later", "app", Format::Cri);
    w.json_line(0).unwrap();
    let mut expected = expected;
    expected.insert(("later".to_owned(), 0));
    assert_exactly_once(&es, &expected);
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}"),
        0,
        "read again: {}",
        agent.logs()
    );
    assert_eq!(agent.metric("logferry_reread_bytes_total"), 0);
    assert!(node.data().join("checkpoints.json.corrupt").exists());
    let logs = agent.logs();
    assert_eq!(
        logs.matches("checkpoint file is unreadable").count(),
        1,
        "{logs}"
    );
    assert!(
        logs.contains("unknown variant `3`"),
        "the error names the version: {logs}"
    );
    assert!(agent.stop().success());
}

/// The segment's bytes as a version that wrote format 1 (the release before positions) left
/// them: the same record frames, no positions frames, version 1 in the header.
fn as_format_1(bytes: &[u8]) -> Vec<u8> {
    assert_eq!(&bytes[..8], b"LFSEG\0\0\x02");
    let mut out = b"LFSEG\0\0\x01".to_vec();
    let mut at = 8;
    while at + 20 <= bytes.len() {
        let len = 20 + u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if &bytes[at..at + 4] == b"LFr1" {
            out.extend_from_slice(&bytes[at..at + len]);
        } else {
            assert_eq!(&bytes[at..at + 4], b"LFp1", "a positions frame");
        }
        at += len;
    }
    out
}

#[test]
fn a_buffer_written_by_the_release_before_positions_is_shipped_whole() {
    let port = free_port();
    let node = Node::new();
    let config =
        buffered_while_elasticsearch_is_away(&node, &format!("http://127.0.0.1:{port}"), "older");
    let seg = node.segments().pop().expect("a segment");
    let older = as_format_1(&std::fs::read(&seg).unwrap());
    std::fs::write(&seg, &older).unwrap();

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    let expected: HashSet<(String, u64)> = (0..200).map(|s| ("older".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    for kind in ["damaged_header", "corrupt_record", "torn_write"] {
        assert_eq!(
            agent.metric(&format!("logferry_buffer_damage_total{{kind=\"{kind}\"}}")),
            0,
            "{kind}"
        );
    }
    assert!(agent.stop().success());
}

#[test]
fn a_buffer_segment_of_a_later_format_stops_the_agent_by_name_and_is_kept() {
    let port = free_port();
    let node = Node::new();
    let config =
        buffered_while_elasticsearch_is_away(&node, &format!("http://127.0.0.1:{port}"), "newer");
    // A later version changed the format: its header says so.
    let seg = node.segments().pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    assert_eq!(&bytes[..8], b"LFSEG\0\0\x02");
    bytes[7] = 3;
    std::fs::write(&seg, &bytes).unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_logferry"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run logferry");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&seg.display().to_string()), "{stderr}");
    assert!(stderr.contains("format 3"), "{stderr}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "left as it was");

    // The later version back (here: the header as this one wrote it), nothing was lost.
    bytes[7] = 2;
    std::fs::write(&seg, &bytes).unwrap();
    let es = osmem_on(port);
    let agent = Agent::start(&config);
    let expected: HashSet<(String, u64)> = (0..200).map(|s| ("newer".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}
