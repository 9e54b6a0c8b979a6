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

#[test]
fn an_agent_killed_at_random_moments_while_shipping_delivers_every_line_once() {
    use std::hash::{BuildHasher, RandomState};
    let es = osmem();
    let node = Node::new();
    let config = node.config(
        &es.url,
        "",
        "flush_thread_count = 2\nchunk_limit_size = \"64KiB\"",
    );
    let mut w = node.writer("shop", "killed", "app", Format::Cri);
    let writer = std::thread::spawn(move || {
        for seq in 0..6000u64 {
            w.json_line(seq).unwrap();
            if seq % 100 == 99 {
                std::thread::sleep(Duration::from_millis(40));
            }
        }
    });
    let random = RandomState::new();
    for round in 0..10u64 {
        let agent = Agent::start(&config);
        let wait = 100 + random.hash_one(round) % 900;
        std::thread::sleep(Duration::from_millis(wait));
        agent.kill();
    }
    writer.join().unwrap();
    let agent = Agent::start(&config);
    let expected: HashSet<(String, u64)> = (0..6000).map(|s| ("killed".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
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
    if !running_as_root() {
        eprintln!("skipped: mounting a small tmpfs to fill needs root");
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
    // No exact count while the disk is full: a failed write seals the open segment (issue 12,
    // item 18), and once that segment is acknowledged and deleted its space lets a few more
    // lines through. What must hold is below: said once, and every line once in the end.
    std::thread::sleep(Duration::from_millis(1500));
    // Once per episode of failures (a freed segment can end one), never at every retry.
    let logs = agent.logs();
    let said = logs.matches("cannot write the buffer;").count();
    let failed = agent.metric("logferry_buffer_write_errors_total");
    assert!(
        (1..=3).contains(&said),
        "said {said} times for {failed} failed writes: {logs}"
    );
    std::fs::remove_file(filler).unwrap();
    let expected: HashSet<(String, u64)> = (0..400).map(|s| ("diskfull".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    wait_until(10, "the recovery to be said", || {
        agent.logs().contains("the buffer is writable again")
    });
    assert_eq!(
        agent.get("/health")["checks"]["buffer"]["status"],
        "healthy"
    );
    assert!(agent.stop().success());
    drop(disk);
}
