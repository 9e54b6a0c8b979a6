//! File identity and document ids end to end: what the agent does when its checkpoints are
//! damaged, when a file is truncated and written again with the same first line, and when lines
//! are read a second time — each against the real binary and a real OpenSearch-compatible server.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use support::*;

const NODE: [(&str, &str); 1] = [("NODE_NAME", "node-a")];

fn expect(pod: &str, seqs: std::ops::Range<u64>) -> HashSet<(String, u64)> {
    seqs.map(|s| (pod.to_owned(), s)).collect()
}

/// Sets every file's checkpoint back to 0, as if the agent had died after its lines were safe
/// in the buffer (and shipped) but before the checkpoints were saved.
fn rewind_checkpoints(node: &Node) {
    let path = node.data().join("checkpoints.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for f in doc["files"].as_array_mut().unwrap() {
        f["offset"] = 0.into();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

#[test]
fn a_corrupt_checkpoints_file_does_not_make_read_from_end_skip_lines() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "orders", "app", Format::Cri);
    for seq in 0..20 {
        w.json_line(seq).unwrap();
    }
    let config = node.config(&es.url, "read_from = \"end\"", "");
    let agent = Agent::start_env(&config, &NODE);
    wait_until(30, "agent ready", || {
        agent.get("/ready")["status"] == "healthy"
    });
    for seq in 20..30 {
        w.json_line(seq).unwrap();
    }
    // The true first start skips what was there before it.
    assert_exactly_once(&es, &expect("orders", 20..30));
    assert!(agent.stop().success());

    // A damaged checkpoints file (a disk fault, an operator's edit), and lines written while
    // the agent was down.
    std::fs::write(
        node.data().join("checkpoints.json"),
        b"{\"version\":\"2\",\"fi",
    )
    .unwrap();
    for seq in 30..50 {
        w.json_line(seq).unwrap();
    }
    let agent = Agent::start_env(&config, &NODE);
    // Not a first start: the file is read from its start, so nothing written while the agent
    // was down is skipped, and what was shipped before comes back as 409s.
    assert_exactly_once(&es, &expect("orders", 0..50));
    wait_until(30, "the re-read lines to be answered as duplicates", || {
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}") == 10
    });
    assert!(agent.stop().success());
}

#[test]
fn copytruncate_with_the_same_first_line_keeps_both_generations() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "legacy", "app", Format::Cri);
    // A constant banner, as an application writes at every start: both generations of the file
    // begin with these very bytes, so their first lines and offsets repeat.
    let banner = b"2026-11-26T16:59:59Z stdout F legacy-billing 4.2 starting\n";
    let write_banner = || {
        OpenOptions::new()
            .append(true)
            .open(&w.path)
            .unwrap()
            .write_all(banner)
            .unwrap();
    };
    write_banner();
    for seq in 0..30 {
        w.json_line(seq).unwrap();
    }
    let agent = Agent::start_env(&node.config(&es.url, "", ""), &NODE);
    assert_eq!(wait_for_count(&es, 31, 60), 31);
    OpenOptions::new()
        .write(true)
        .open(&w.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    // The truncation is seen by the size going back, so it must be seen before the new content
    // outgrows the old.
    wait_until(30, "the truncation to be noticed", || {
        agent.metric("logferry_input_truncations_total") == 1
    });
    let mut w2 = w;
    OpenOptions::new()
        .append(true)
        .open(&w2.path)
        .unwrap()
        .write_all(banner)
        .unwrap();
    for seq in 30..60 {
        w2.json_line(seq).unwrap();
    }

    // Both generations in full: before, the banner of the second (same file, same offset) got
    // the first one's id and was taken for a duplicate, and so could any line after it.
    assert_exactly_once_plus(&es, &expect("legacy", 0..60), 2);
    let banners = docs(&es)
        .iter()
        .filter(|(_, d)| d["log"] == "legacy-billing 4.2 starting")
        .count();
    assert_eq!(banners, 2, "one banner per generation");
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}"),
        0,
        "no line was mistaken for another"
    );
    assert!(agent.stop().success());
}

/// [`assert_exactly_once`] for an index that also holds `others` documents without a `seq`.
fn assert_exactly_once_plus(es: &Osmem, expected: &HashSet<(String, u64)>, others: u64) {
    let n = expected.len() as u64 + others;
    assert_eq!(wait_for_count(es, n, 60), n, "documents in the index");
    let counts = seq_counts(&docs(es));
    for key in expected {
        assert_eq!(counts.get(key), Some(&1), "{key:?}");
    }
}

#[test]
fn lines_read_again_after_a_restart_keep_their_ids() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "replayed", "app", Format::Cri);
    for seq in 0..40 {
        w.json_line(seq).unwrap();
    }
    let config = node.config(&es.url, "", "");
    let agent = Agent::start_env(&config, &NODE);
    assert_exactly_once(&es, &expect("replayed", 0..40));
    assert!(agent.stop().success());

    rewind_checkpoints(&node);
    for seq in 40..50 {
        w.json_line(seq).unwrap();
    }
    let agent = Agent::start_env(&config, &NODE);
    assert_exactly_once(&es, &expect("replayed", 0..50));
    wait_until(
        30,
        "every re-read line to be answered as a duplicate",
        || agent.metric("logferry_documents_total{outcome=\"duplicate\"}") == 40,
    );
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"indexed\"}"),
        10,
        "only the new lines are new documents"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_reused_inode_with_the_same_first_line_is_indexed_as_a_new_file() {
    use std::os::unix::fs::MetadataExt;
    let es = osmem();
    let node = Node::new();
    let banner = b"2026-11-26T16:59:59Z stdout F batch-job 1.0 starting\n";
    let mut w = node.writer("shop", "batch", "app", Format::Cri);
    OpenOptions::new()
        .append(true)
        .open(&w.path)
        .unwrap()
        .write_all(banner)
        .unwrap();
    for seq in 0..20 {
        w.json_line(seq).unwrap();
    }
    let agent = Agent::start_env(&node.config(&es.url, "", ""), &NODE);
    assert_eq!(wait_for_count(&es, 21, 60), 21);
    let old_inode = std::fs::metadata(&w.path).unwrap().ino();
    let (path, link) = (w.path.clone(), w.link.clone());
    // The writer's handle would keep the inode from being freed.
    drop(w);
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&path).unwrap();
    wait_until(30, "the deleted file to be let go", || {
        agent.metric("logferry_files_watched") == 0
    });
    // The filesystem hands out the freed inode again sooner or later: hold on to other new
    // (empty) files until the one at the old path gets it.
    let mut fillers = Vec::new();
    let mut reused = false;
    for i in 0..200 {
        std::fs::write(&path, b"").unwrap();
        if std::fs::metadata(&path).unwrap().ino() == old_inode {
            reused = true;
            break;
        }
        let filler = path.with_file_name(format!("filler-{i}"));
        std::fs::rename(&path, &filler).unwrap();
        fillers.push(filler);
    }
    for f in fillers {
        std::fs::remove_file(f).unwrap();
    }
    if !reused {
        eprintln!("the filesystem did not reuse the inode: only no-loss is checked");
    }
    let mut w = node.writer("shop", "batch", "app", Format::Cri);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(banner)
        .unwrap();
    for seq in 20..40 {
        w.json_line(seq).unwrap();
    }
    // Same inode, same first line, same offsets: before, the new file's banner and first line
    // got the deleted file's ids and were dropped as duplicates.
    assert_exactly_once_plus(&es, &expect("batch", 0..40), 2);
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}"),
        0
    );
    assert!(agent.stop().success());
}

/// Regression (review of issue 12): a file cut back and written again with the same first line
/// while the agent was down was resumed as the same generation, so its new lines met the old
/// lines' ids at the same offsets and were answered 409: lost.
#[test]
fn copytruncate_while_the_agent_is_down_keeps_both_generations() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "legacy", "app", Format::Cri);
    let banner = b"2026-11-26T16:59:59Z stdout F legacy-billing 4.2 starting\n";
    let append = |path: &std::path::Path, bytes: &[u8]| {
        OpenOptions::new()
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    };
    append(&w.path, banner);
    for seq in 0..30 {
        w.json_line(seq).unwrap();
    }
    let agent = Agent::start_env(&node.config(&es.url, "", ""), &NODE);
    assert_eq!(wait_for_count(&es, 31, 60), 31);
    assert!(agent.stop().success());
    // Shorter than before, so the checkpoint lies past its end; same banner, same line lengths,
    // so the new lines start at the offsets the old ones had.
    OpenOptions::new()
        .write(true)
        .open(&w.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&w.path, banner);
    for seq in 100..110 {
        w.json_line(seq).unwrap();
    }
    let _agent = Agent::start_env(&node.config(&es.url, "", ""), &NODE);
    let mut want = expect("legacy", 0..30);
    want.extend(expect("legacy", 100..110));
    assert_exactly_once_plus(&es, &want, 2);
}
