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
fn a_checkpoints_file_of_a_newer_format_is_set_aside_and_its_lines_are_not_duplicated() {
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
    wait_until(30, "the file to be read again from its start", || {
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}") >= 200
    });
    // Read again from the start, every line meets its own id (409): nothing twice in the index.
    assert_exactly_once(&es, &expected);
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

#[test]
fn a_buffer_segment_of_a_newer_frame_format_is_moved_aside_and_its_lines_are_not_shipped() {
    let port = free_port();
    let node = Node::new();
    let config =
        buffered_while_elasticsearch_is_away(&node, &format!("http://127.0.0.1:{port}"), "newer");

    // A newer version that changed the frames would change their magic: this binary knows no
    // frame in the file, and takes it for damage.
    let seg = node.segments().pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[7] = 2;
    let mut at = 0;
    while let Some(i) = memchr_find(&bytes[at..], b"LFr1") {
        bytes[at + i + 3] = b'2';
        at += i + 4;
    }
    std::fs::write(&seg, &bytes).unwrap();

    let es = osmem_on(port);
    // Started: its API answers (Agent::start waits for /ready).
    let agent = Agent::start(&config);
    let mut aside = seg.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = PathBuf::from(aside);
    wait_until(30, "the segment to be moved aside", || aside.exists());
    assert_eq!(
        agent.metric("logferry_buffer_damage_total{kind=\"corrupt_record\"}"),
        1,
        "counted as one damaged segment"
    );
    let logs = agent.logs();
    assert!(logs.contains("not a buffer segment; moved aside"), "{logs}");
    // Its lines are past the checkpoint: this version never reads them again, and they reach
    // the index only if the newer version is brought back and the file renamed to `.seg`.
    let mut w = node.writer("shop", "after", "app", Format::Cri);
    w.json_line(0).unwrap();
    assert_eq!(
        wait_for_count(&es, 1, 30),
        1,
        "only the line written after the downgrade"
    );
    assert!(docs_of(&es, "newer").is_empty());
    assert!(agent.stop().success());
}

#[test]
fn a_buffer_segment_whose_header_says_a_newer_version_is_taken_for_damage_and_shipped() {
    let port = free_port();
    let node = Node::new();
    let config =
        buffered_while_elasticsearch_is_away(&node, &format!("http://127.0.0.1:{port}"), "header");
    // Only the header's version byte is newer; the frames are this version's.
    let seg = node.segments().pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    assert_eq!(&bytes[..8], b"LFSEG\0\0\x01");
    bytes[7] = 2;
    std::fs::write(&seg, &bytes).unwrap();

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    let expected: HashSet<(String, u64)> = (0..200).map(|s| ("header".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    assert_eq!(
        agent.metric("logferry_buffer_damage_total{kind=\"damaged_header\"}"),
        1,
        "a newer header is taken for a damaged one"
    );
    assert!(agent.stop().success());
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
