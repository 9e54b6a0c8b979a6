//! The delivery contract under the failures a node sees: long outages, crashes at any moment, a
//! full buffer, a damaged buffer and a full disk. Against a real osmem-server, through the
//! fault proxy where the cluster must misbehave.

mod support;

use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::proxy::FaultProxy;
use support::*;

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A 2 KiB line: fills the buffer quickly without needing many documents.
fn big_line(w: &mut LogWriter, seq: u64) {
    let line = json!({"seq": seq, "level": "info", "pad": "x".repeat(2000)});
    w.line(&line.to_string()).unwrap();
}

#[test]
fn a_long_outage_with_lines_coming_delivers_everything_once_and_memory_stays_flat() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.down = true);
    let node = Node::new();
    let mut w = node.writer("shop", "outage", "app", Format::Cri);
    let agent = Agent::start(&node.config(&proxy.url, "", "chunk_limit_size = \"256KiB\""));
    let pid = agent.child.id();
    let mut expected = HashSet::new();
    let mut write = |from: u64, to: u64| {
        for seq in from..to {
            big_line(&mut w, seq);
            expected.insert(("outage".to_owned(), seq));
            if seq % 200 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    write(0, 1000);
    wait_until(30, "the first lines to be buffered", || {
        agent.metric("logferry_buffer_bytes ") > 2_000_000
    });
    let (early_rss, early_buffer) = (rss_bytes(pid), agent.metric("logferry_buffer_bytes "));
    write(1000, 8000);
    wait_until(60, "every line to be buffered", || {
        agent.metric("logferry_buffer_records ") >= 8000
    });
    let (late_rss, late_buffer) = (rss_bytes(pid), agent.metric("logferry_buffer_bytes "));
    assert!(
        late_buffer > early_buffer + 12_000_000,
        "the buffer grows on disk: {early_buffer} → {late_buffer}"
    );
    assert!(
        late_rss < early_rss + 8 * 1024 * 1024,
        "memory stays flat while the buffer grows: RSS {early_rss} → {late_rss}"
    );
    let health = agent.get("/health");
    assert_eq!(
        health["checks"]["elasticsearch"]["status"], "degraded",
        "{health}"
    );
    proxy.set(|f| f.down = false);
    assert_exactly_once(&es, &expected);
    wait_until(10, "the buffer to empty", || {
        agent.metric("logferry_buffer_records ") == 0
    });
    assert!(agent.stop().success());
    eprintln!(
        "outage: buffer {early_buffer} → {late_buffer} bytes, RSS {early_rss} → {late_rss} bytes"
    );
}

/// The `seq` of every record a restart resumes: the frames in the buffer's segments past the
/// saved ack cursor (`cursor.json`), read from the files as docs/operating.md's file formats describe
/// them (a segment header of 8 bytes; frames of a 20-byte header and a bulk item: action line,
/// document line). A torn last frame is not counted.
fn seqs_past_the_saved_cursor(node: &Node) -> Vec<u64> {
    const SEGMENT_HEADER: usize = 8;
    const FRAME_HEADER: usize = 20;
    let cursor = std::fs::read_to_string(node.data().join("buffer/cursor.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let acked = |key: &str| cursor.as_ref().and_then(|c| c["acked"][key].as_u64());
    let (acked_segment, acked_offset) = (acked("segment").unwrap_or(0), acked("offset"));
    let mut seqs = Vec::new();
    for seg in node.segments() {
        let id: u64 = seg
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a segment named by its number: {}", seg.display()));
        if id < acked_segment {
            continue;
        }
        let bytes = std::fs::read(&seg).unwrap_or_default();
        let mut at = match acked_offset {
            Some(offset) if id == acked_segment => offset as usize,
            _ => SEGMENT_HEADER,
        };
        // Record frames, and the positions frames (`LFp1`) between them, which hold no record.
        while at + FRAME_HEADER <= bytes.len() && matches!(&bytes[at..at + 4], b"LFr1" | b"LFp1") {
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            let Some(payload) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
                break;
            };
            if &bytes[at..at + 4] == b"LFp1" {
                at += FRAME_HEADER + len;
                continue;
            }
            let document = payload.split(|b| *b == b'\n').nth(1).unwrap_or_default();
            let seq = serde_json::from_slice::<serde_json::Value>(document)
                .ok()
                .and_then(|d| d["seq"].as_u64())
                .unwrap_or_else(|| {
                    panic!(
                        "a buffered record with a seq: {}",
                        String::from_utf8_lossy(payload)
                    )
                });
            seqs.push(seq);
            at += FRAME_HEADER + len;
        }
    }
    seqs
}

/// The number of whole lines in the first `offset` bytes of `path`.
fn lines_before(path: &Path, offset: u64) -> u64 {
    use std::io::Read;
    let mut head = Vec::new();
    let file = std::fs::File::open(path).unwrap();
    file.take(offset).read_to_end(&mut head).unwrap();
    head.iter().filter(|b| **b == b'\n').count() as u64
}

/// What one SIGKILL left behind.
#[derive(Debug)]
struct AtKill {
    /// Lines the writer had written to the log file when the kill was sent.
    written: u64,
    /// Lines behind the saved checkpoint: the restart does not read them again.
    checkpointed: u64,
    /// Lines in the index after the kill.
    indexed: usize,
    /// Records in the buffer past the saved ack cursor: what the restart resumes.
    resumed: usize,
    /// Lines among those the index did not have: durable, not yet delivered.
    owed: usize,
    /// Lines among those owed that are behind the checkpoint: only the buffer has them now.
    only_in_buffer: usize,
}

#[test]
fn an_agent_killed_at_random_moments_while_shipping_delivers_every_line_once() {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let es = osmem();
    // A cluster that takes 0.8 s to answer a bulk request, as a busy one does: what the agent
    // has sent is in flight for a while. Behind a proxy that drops what a killed agent had in
    // flight (nginx does, when a client aborts): only the agent's buffer can deliver it again.
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| {
        f.delay_paths = vec![("/_bulk".into(), Duration::from_millis(800))];
        f.drop_abandoned = true;
    });
    let node = Node::new();
    // Lines are read and buffered every 50 ms rather than once a second (the default): a
    // life of 0.1 to 2.5 s then holds many reads, and a kill often lands between one's
    // buffering and its acknowledgement, which is what this test is about.
    let config = node.config(
        &proxy.url,
        "",
        "flush_thread_count = 2\nchunk_limit_size = \"64KiB\"\nflush_interval = \"50ms\"",
    );
    let mut w = node.writer("shop", "killed", "app", Format::Cri);
    let log = w.path.clone();
    // Lines keep coming, about 200 a second, until the last kill: every kill lands while lines
    // are being read, buffered and shipped. (osmem-server searches 10,000 documents deep.)
    let (written, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let writer = {
        let (written, done) = (written.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seq = 0u64;
            while !done.load(Ordering::Relaxed) && seq < 9_000 {
                w.json_line(seq).unwrap();
                seq += 1;
                written.store(seq, Ordering::Relaxed);
                if seq.is_multiple_of(5) {
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
            seq
        })
    };
    let random = RandomState::new();
    let mut kills = Vec::new();
    for round in 0..10u64 {
        let agent = Agent::start(&config);
        // Every other life ends before the first save of checkpoints and cursor (1 s after the
        // start): the restart reads those lines again. The others outlast one or two saves: the
        // kill then finds lines behind the checkpoint that only the buffer has.
        let wait = if round % 2 == 0 {
            1200 + random.hash_one(round) % 1300
        } else {
            100 + random.hash_one(round) % 900
        };
        std::thread::sleep(Duration::from_millis(wait));
        let written = written.load(Ordering::Relaxed);
        // The start read nothing again that the last life had made durable in the buffer.
        assert_eq!(
            agent.metric("logferry_reread_bytes_total"),
            0,
            "life {round}: {}",
            agent.logs()
        );
        agent.kill();
        // Let the proxy drop what was in flight before the index is read.
        wait_until(10, "the requests in flight to be dropped", || {
            proxy.seen().in_flight == 0
        });
        let indexed: HashSet<u64> = seq_counts(&docs(&es))
            .into_keys()
            .map(|(_, seq)| seq)
            .collect();
        let checkpointed = lines_before(&log, node.checkpoint_offset());
        let resumed = seqs_past_the_saved_cursor(&node);
        let owed: HashSet<u64> = resumed
            .iter()
            .copied()
            .filter(|s| !indexed.contains(s))
            .collect();
        kills.push(AtKill {
            written,
            checkpointed,
            indexed: indexed.len(),
            resumed: resumed.len(),
            owed: owed.len(),
            // Line `seq` is the file's line number `seq`.
            only_in_buffer: owed.iter().filter(|s| **s < checkpointed).count(),
        });
    }
    done.store(true, Ordering::Relaxed);
    let total = writer.join().unwrap();
    let agent = Agent::start(&config);
    let expected: HashSet<(String, u64)> = (0..total).map(|s| ("killed".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());

    // The kills hit something: lines were still being written at the last one; most left
    // lines in the buffer that the index did not have, for the restart to deliver; and some
    // left lines that only the buffer had, the checkpoint having moved past them.
    let table: String = kills
        .iter()
        .map(|k| {
            format!(
                "\n  written {:5}  checkpointed {:5}  indexed {:5}  resumed {:6}  owed {:5}  only in the buffer {:5}",
                k.written, k.checkpointed, k.indexed, k.resumed, k.owed, k.only_in_buffer
            )
        })
        .collect();
    let last = kills.last().map_or(0, |k| k.written);
    assert!(
        last < total,
        "lines were still being written at the last kill ({last} of {total}):{table}"
    );
    let owed = kills.iter().filter(|k| k.owed > 0).count();
    assert!(
        owed >= 8,
        "only {owed} of 10 kills left buffered lines not yet indexed:{table}"
    );
    let only_in_buffer = kills.iter().filter(|k| k.only_in_buffer > 0).count();
    assert!(
        only_in_buffer >= 3,
        "only {only_in_buffer} of 10 kills (5 after a save) left lines that only the buffer had:{table}"
    );
    eprintln!("killed 10 times while {total} lines were written:{table}");
}

#[test]
fn a_full_buffer_with_block_pauses_reading_and_loses_nothing() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.down = true);
    let node = Node::new();
    let mut w = node.writer("shop", "blocked", "app", Format::Cri);
    let expected: HashSet<(String, u64)> = (0..300)
        .map(|seq| {
            w.json_line(seq).unwrap();
            ("blocked".to_owned(), seq)
        })
        .collect();
    let agent = Agent::start(&node.config(
        &proxy.url,
        "",
        "chunk_limit_size = \"1KiB\"\nflush_thread_count = 1\nmax_size = \"8KiB\"",
    ));
    wait_until(20, "the buffer to fill", || {
        agent.logs().contains("the buffer is full")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let file_len = std::fs::metadata(&w.path).unwrap().len();
    assert!(
        node.checkpoint_offset() < file_len / 2,
        "reading pauses: checkpoint {} of {file_len}",
        node.checkpoint_offset()
    );
    let bytes = agent.metric("logferry_buffer_bytes ");
    assert!(
        bytes <= 8 * 1024 + 1024,
        "the buffer keeps its bound: {bytes}"
    );
    proxy.set(|f| f.down = false);
    assert_exactly_once(&es, &expected);
    assert_eq!(agent.metric("logferry_buffer_dropped_records_total"), 0);
    assert!(agent.stop().success());
}

#[test]
fn a_full_buffer_with_drop_oldest_chunk_counts_exactly_what_it_dropped() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.down = true);
    let node = Node::new();
    let mut w = node.writer("shop", "dropping", "app", Format::Cri);
    for seq in 0..300 {
        w.json_line(seq).unwrap();
    }
    let file_len = std::fs::metadata(&w.path).unwrap().len();
    let agent = Agent::start(&node.config(
        &proxy.url,
        "",
        "chunk_limit_size = \"1KiB\"\nflush_thread_count = 1\nmax_size = \"8KiB\"\noverflow_action = \"drop_oldest_chunk\"",
    ));
    wait_until(20, "every line to be read", || {
        node.checkpoint_offset() == file_len
    });
    let dropped = agent.metric("logferry_buffer_dropped_records_total");
    assert!(
        dropped > 200,
        "most of 300 lines cannot fit in 8 KiB: {dropped}"
    );
    proxy.set(|f| f.down = false);
    let indexed = wait_for_count(&es, 300 - dropped, 30);
    assert_eq!(
        indexed + dropped,
        300,
        "every line is indexed or counted as dropped"
    );
    let docs = docs(&es);
    let counts = seq_counts(&docs);
    assert_eq!(counts.len() as u64, indexed, "no duplicates");
    assert!(
        counts.contains_key(&("dropping".to_owned(), 299)),
        "the newest lines are kept"
    );
    assert_eq!(
        agent.metric("logferry_buffer_dropped_records_total"),
        dropped,
        "nothing dropped once the cluster is back"
    );
    assert!(agent.stop().success());
    eprintln!("drop_oldest_chunk: {indexed} indexed + {dropped} dropped = 300");
}

#[test]
fn a_damaged_buffer_is_recovered_counted_and_the_agent_runs_on() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let node = Node::new();
    let mut w = node.writer("shop", "damaged", "app", Format::Cri);
    for seq in 0..200 {
        w.json_line(seq).unwrap();
    }
    let file_len = std::fs::metadata(&w.path).unwrap().len();
    let config = node.config(&url, "", "");
    let agent = Agent::start(&config);
    wait_until(20, "the lines to be buffered", || {
        node.checkpoint_offset() == file_len
    });
    assert!(agent.stop().success());

    // One flipped byte in the middle of the segment, half a record after its end.
    let seg = node.segments().pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    bytes.extend_from_slice(b"LFr1\x10\x00\x00\x00half a frame");
    std::fs::write(&seg, &bytes).unwrap();

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    let indexed = wait_for_count(&es, 199, 30);
    assert_eq!(indexed, 199, "exactly the corrupt record is lost");
    assert_eq!(
        agent.metric("logferry_buffer_damage_total{kind=\"corrupt_record\"}"),
        1
    );
    assert_eq!(
        agent.metric("logferry_buffer_damage_total{kind=\"torn_write\"}"),
        1
    );
    let logs = agent.logs();
    assert_eq!(logs.matches("the buffer was damaged").count(), 1, "{logs}");
    assert_eq!(seq_counts(&docs(&es)).len(), 199, "no duplicates");
    for seq in 200..210 {
        w.json_line(seq).unwrap();
    }
    assert_eq!(wait_for_count(&es, 209, 30), 209, "the agent runs on");
    assert!(agent.stop().success());
}

#[test]
fn a_segment_that_cannot_be_read_or_has_a_damaged_header_does_not_stop_the_start() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let node = Node::new();
    let mut w = node.writer("shop", "unreadable", "app", Format::Cri);
    for seq in 0..200 {
        w.json_line(seq).unwrap();
    }
    let file_len = std::fs::metadata(&w.path).unwrap().len();
    let config = node.config(&url, "", "");
    let agent = Agent::start(&config);
    wait_until(20, "the lines to be buffered", || {
        node.checkpoint_offset() == file_len
    });
    assert!(agent.stop().success());

    // The segment's own header is overwritten, and a directory sits where a later segment
    // would be: reading it fails (EISDIR), as an I/O error on a bad block would.
    let seg = node.segments().pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[..8].copy_from_slice(b"garbage!");
    std::fs::write(&seg, &bytes).unwrap();
    let unreadable = node.data().join("buffer/00000000000000000999.seg");
    std::fs::create_dir(&unreadable).unwrap();

    let es = osmem_on(port);
    let agent = Agent::start(&config);
    let expected: HashSet<(String, u64)> = (0..200).map(|s| ("unreadable".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    assert_eq!(
        agent.metric("logferry_buffer_damage_total{kind=\"unreadable_segment\"}"),
        1
    );
    assert_eq!(
        agent.metric("logferry_buffer_damage_total{kind=\"damaged_header\"}"),
        1
    );
    assert!(
        node.data()
            .join("buffer/00000000000000000999.seg.corrupt")
            .is_dir()
    );
    let logs = agent.logs();
    assert_eq!(logs.matches("the buffer was damaged").count(), 1, "{logs}");
    for seq in 200..210 {
        w.json_line(seq).unwrap();
    }
    assert_eq!(wait_for_count(&es, 210, 30), 210, "the agent runs on");
    assert!(agent.stop().success());
}

/// The episodes of failed buffer writes the agent's log tells of: how many began ("cannot
/// write the buffer"), and the number of failed writes of each that ended ("the buffer is
/// writable again").
fn write_failure_episodes(logs: &str) -> (usize, Vec<u64>) {
    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |e: &serde_json::Value| e["message"].as_str().unwrap_or("").to_owned();
    let began = events
        .iter()
        .filter(|e| message(e).starts_with("cannot write the buffer;"))
        .count();
    let ended = events
        .iter()
        .filter(|e| message(e) == "the buffer is writable again")
        .map(|e| e["failures"].as_u64().unwrap_or(0))
        .collect();
    (began, ended)
}

/// A small tmpfs mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount a tmpfs at {}", at.display());
        Tmpfs(at.to_owned())
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        // The last partial block.
        while f.write_all(&block[..512]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_pauses_reading_says_so_and_resumes_when_space_returns() {
    if !needs_root("mounting a small tmpfs to fill") {
        return;
    }
    let es = osmem();
    let node = Node::new();
    let disk = Tmpfs::mount(&node.data(), "4m");
    let mut w = node.writer("shop", "diskfull", "app", Format::Cri);
    let agent = Agent::start(&node.config(&es.url, "", "chunk_limit_size = \"64KiB\""));
    for seq in 0..10 {
        w.json_line(seq).unwrap();
    }
    wait_for_count(&es, 10, 20);
    let filler = disk.fill();
    for seq in 10..400 {
        w.json_line(seq).unwrap();
    }
    wait_until(20, "the write failure to be reported", || {
        agent.metric("logferry_buffer_write_errors_total") > 0
    });
    let health = agent.get("/health");
    assert_eq!(health["checks"]["buffer"]["status"], "degraded", "{health}");
    let detail = health["checks"]["buffer"]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("No space left on device"), "{health}");
    // A failed write seals the open segment (issue 12, item 18): once that segment is
    // acknowledged and deleted, its space lets a chunk through, which ends the episode of
    // failures; the next chunk may start another. Each episode is said once when it begins and
    // once when it ends, with its number of failed writes; the retries in between are not.
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::remove_file(filler).unwrap();
    let expected: HashSet<(String, u64)> = (0..400).map(|s| ("diskfull".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    // Every line is indexed, so every write has succeeded: the log is complete.
    let logs = agent.logs();
    let (began, ended) = write_failure_episodes(&logs);
    let failed = agent.metric("logferry_buffer_write_errors_total");
    assert!(!ended.is_empty(), "the recovery is said: {logs}");
    assert_eq!(
        began,
        ended.len(),
        "each episode of failed writes is said once as it begins: {began} said for episodes of \
         {ended:?} failed writes\n{logs}"
    );
    assert_eq!(
        ended.iter().sum::<u64>(),
        failed,
        "every failed write is in an episode said once: {began} episodes of {ended:?} failures"
    );
    assert!(
        ended.iter().any(|n| *n >= 2),
        "a write was retried within an episode, unsaid: {began} episodes of {ended:?} failures"
    );
    eprintln!("disk full: {began} episodes said, of {ended:?} failed writes");
    assert_eq!(
        agent.get("/health")["checks"]["buffer"]["status"],
        "healthy"
    );
    assert!(agent.stop().success());
    drop(disk);
}
