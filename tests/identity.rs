//! File identity and document ids end to end: what the agent does when its checkpoints are
//! damaged, when a file is truncated and written again with the same first line, and when lines
//! are read a second time — each against the real binary and a real OpenSearch-compatible server.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const NODE: [(&str, &str); 1] = [("NODE_NAME", "node-a")];

fn expect(pod: &str, seqs: std::ops::Range<u64>) -> HashSet<(String, u64)> {
    seqs.map(|s| (pod.to_owned(), s)).collect()
}

/// Sets every file's checkpoint back to 0 and removes the buffer (everything in it shipped),
/// as if both had been lost: the positions the buffer keeps would otherwise say where each
/// file was, and nothing would be read again. What a second reading gets is what this file's
/// tests are about.
fn rewind_checkpoints(node: &Node) {
    std::fs::remove_dir_all(node.data().join("buffer")).unwrap();
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
    // Not a first start: nothing written while the agent was down is skipped. The buffer's
    // positions say where the file was, so it resumes there: what was shipped is not read
    // again, and what the first start skipped (read_from = "end") stays skipped.
    assert_exactly_once(&es, &expect("orders", 20..50));
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}"),
        0
    );
    assert!(agent.stop().success());

    // With the buffer lost as well, the file is read from its start: what was shipped before
    // comes back as 409s, and nothing is indexed twice.
    std::fs::write(node.data().join("checkpoints.json"), b"{").unwrap();
    std::fs::remove_dir_all(node.data().join("buffer")).unwrap();
    let agent = Agent::start_env(&config, &NODE);
    assert_exactly_once(&es, &expect("orders", 0..50));
    wait_until(30, "the re-read lines to be answered as duplicates", || {
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}") == 30
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

/// A fresh ext4 filesystem in an image file, loop-mounted at a directory for as long as the
/// value lives. Nothing else allocates inodes on it, so an inode that is freed is the next one
/// handed out in its directory: inode reuse happens at once and every time, where on a shared
/// filesystem it may take thousands of files, or never happen while the test runs.
struct LoopExt4(PathBuf);

impl LoopExt4 {
    fn mount(image: &Path, at: &Path) -> LoopExt4 {
        std::fs::File::create(image)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(image)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mkfs.ext4 {} (e2fsprogs)", image.display());
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -o loop {} {}", image.display(), at.display());
        LoopExt4(at.to_owned())
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        // The loop device goes with the last use of the filesystem (mount sets autoclear).
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn append(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// A file's birth time (statx), Unix nanoseconds, as the agent reads it; `None` where the
/// filesystem keeps none.
fn birth_ns(meta: &std::fs::Metadata) -> Option<i64> {
    let t = meta.created().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// A deleted file's inode handed to a new file at the same path, with the same first line,
/// while the agent runs: the new file is born later, so its lines get ids of their own. The
/// logs are on an ext4 of their own, so the reuse happens on every run (checked, not hoped for).
#[test]
fn a_reused_inode_with_the_same_first_line_is_indexed_as_a_new_file() {
    use std::os::unix::fs::MetadataExt;
    if !needs_root("loop-mounting an ext4 filesystem for the logs") {
        return;
    }
    let es = osmem();
    let node = Node::new();
    // The node's logs on a filesystem of their own, where the freed inode is handed out again.
    let _logs_fs = LoopExt4::mount(&node.dir.path().join("logs.ext4"), &node.logs());
    let banner = b"2026-11-26T16:59:59Z stdout F batch-job 1.0 starting\n";
    let mut w = node.writer("shop", "batch", "app", Format::Cri);
    append(&w.path, banner);
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
    // The inode is free once the agent has closed its last descriptor of it; until then a new
    // file gets another inode, which is given back to try again.
    wait_until(
        30,
        "a new file at the old path to get the old inode",
        || {
            std::fs::write(&path, b"").unwrap();
            let reused = std::fs::metadata(&path).unwrap().ino() == old_inode;
            if !reused {
                std::fs::remove_file(&path).unwrap();
            }
            reused
        },
    );
    let mut w = node.writer("shop", "batch", "app", Format::Cri);
    assert_eq!(
        std::fs::metadata(&w.path).unwrap().ino(),
        old_inode,
        "the scenario: the new file holds the deleted file's inode"
    );
    append(&path, banner);
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

/// The same while the agent is down: at its start, the checkpoint entry it finds under the new
/// file's inode and first line was made for the deleted file. Resumed at that entry's offset,
/// the new file's first lines would be skipped; with its ids, taken for the old lines.
///
/// The entry is written into the checkpoints file (the deleted file's own, moved to the new
/// file's inode), so the reuse happens on any filesystem that keeps birth times, and the agent
/// must say that it recognised it.
#[test]
fn a_checkpoint_left_by_a_deleted_file_on_a_reused_inode_is_not_resumed() {
    use std::os::unix::fs::MetadataExt;
    let es = osmem();
    let node = Node::new();
    let banner = b"2026-11-26T16:59:59Z stdout F batch-job 1.0 starting\n";
    let mut w = node.writer("shop", "batch", "app", Format::Cri);
    append(&w.path, banner);
    for seq in 0..20 {
        w.json_line(seq).unwrap();
    }
    let config = node.config(&es.url, "", "");
    let agent = Agent::start_env(&config, &NODE);
    assert_eq!(wait_for_count(&es, 21, 60), 21);
    assert!(agent.stop().success());
    let old = std::fs::metadata(&w.path).unwrap();
    let (path, link) = (w.path.clone(), w.link.clone());
    drop(w);
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&path).unwrap();
    // The new file at the same path: the same first line, and longer than the old one, so the
    // old entry's offset lies inside it (past its end it would be taken for a truncation).
    let mut w = node.writer("shop", "batch", "app", Format::Cri);
    append(&path, banner);
    for seq in 20..40 {
        w.json_line(seq).unwrap();
    }
    let new = std::fs::metadata(&path).unwrap();
    assert!(new.len() > old.len());
    let (old_born, new_born) = (birth_ns(&old), birth_ns(&new));
    assert!(
        old_born.is_some_and(|b| b != 0) && old_born != new_born,
        "this needs a filesystem with birth times (ext4, xfs, btrfs): born {old_born:?} and {new_born:?}"
    );

    // What a node whose filesystem handed the freed inode to the new file would hold.
    let saved = node.data().join("checkpoints.json");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let files = doc["files"].as_array_mut().unwrap();
    assert_eq!(files.len(), 1, "one entry, the deleted file's");
    let entry = &mut files[0];
    assert_eq!(entry["ino"], old.ino(), "{entry}");
    assert_eq!(entry["offset"], old.len(), "{entry}");
    assert_eq!(entry["born_ns"], old_born.unwrap(), "{entry}");
    entry["ino"] = new.ino().into();
    entry["dev"] = new.dev().into();
    std::fs::write(&saved, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();

    let agent = Agent::start_env(&config, &NODE);
    assert_exactly_once_plus(&es, &expect("batch", 0..40), 2);
    let banners = docs(&es)
        .iter()
        .filter(|(_, d)| d["log"] == "batch-job 1.0 starting")
        .count();
    assert_eq!(banners, 2, "one banner per file");
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"duplicate\"}"),
        0,
        "no line was mistaken for the deleted file's"
    );
    let logs = agent.logs();
    assert_eq!(
        logs.matches("a new file has the inode and first line of one that was deleted")
            .count(),
        1,
        "the reuse was recognised: {logs}"
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
