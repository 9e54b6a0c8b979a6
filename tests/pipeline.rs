//! End to end: real log files → the real agent binary → a real OpenSearch-compatible server.

mod support;

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;
use support::*;

#[test]
fn lines_across_files_rotations_partials_and_a_restart_arrive_exactly_once() {
    let es = osmem();
    let node = Node::new();
    let mut expected = HashSet::new();
    let mut writers: Vec<LogWriter> = (0..6)
        .map(|i| {
            let format = if i % 2 == 0 {
                Format::Cri
            } else {
                Format::Docker
            };
            node.writer("shop", &format!("api-{i}"), "app", format)
        })
        .collect();
    let mut write_round = |writers: &mut Vec<LogWriter>, from: u64, to: u64| {
        for w in writers.iter_mut() {
            for seq in from..to {
                if seq % 9 == 4 {
                    // Split into pieces the way the runtime splits long lines.
                    let a = format!("partial head seq={seq} ");
                    w.write_pieces("stderr", &[&a, &"x".repeat(3000), " tail"])
                        .unwrap();
                } else {
                    w.json_line(seq).unwrap();
                }
                expected.insert((w.pod.clone(), seq));
            }
        }
    };
    write_round(&mut writers, 0, 300);
    let config = node.config(&es.url, "", "");
    let agent = Agent::start(&config);
    write_round(&mut writers, 300, 600);
    // Kubelet rotation in the middle of writing: rename, new file at the same path.
    for (i, w) in writers.iter_mut().enumerate() {
        if i % 3 == 0 {
            w.rotate("20261126-170000").unwrap();
        }
    }
    write_round(&mut writers, 600, 900);
    wait_until(60, "some lines indexed", || {
        es.count("logs-*").unwrap_or(0) > 1000
    });
    let status = agent.stop();
    assert!(status.success(), "clean exit on SIGTERM, got {status:?}");
    // Written while the agent is down; read after the restart.
    write_round(&mut writers, 900, 1000);
    for (i, w) in writers.iter_mut().enumerate() {
        if i % 3 == 1 {
            w.rotate("20261126-180000").unwrap();
        }
    }
    write_round(&mut writers, 1000, 1100);
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);

    // The fields a Kibana dashboard built on Fluentd relies on.
    let docs = docs(&es);
    let json_doc = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["seq"] == 10)
        .expect("seq 10");
    assert_eq!(json_doc["kubernetes"]["namespace_name"], "shop");
    assert_eq!(json_doc["kubernetes"]["container_name"], "app");
    assert!(
        json_doc["kubernetes"]["pod_name"]
            .as_str()
            .unwrap()
            .starts_with("api-")
    );
    assert_eq!(
        json_doc["docker"]["container_id"].as_str().map(str::len),
        Some(64)
    );
    assert_eq!(json_doc["stream"], "stdout");
    assert_eq!(json_doc["service"], "orders-api");
    assert!(
        json_doc["@timestamp"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-26T17:00:")
    );
    let joined = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| {
            d["log"]
                .as_str()
                .is_some_and(|l| l.starts_with("partial head seq=4 "))
        })
        .expect("joined partial record");
    assert_eq!(
        joined["log"].as_str().unwrap().len(),
        "partial head seq=4 ".len() + 3000 + 5
    );
    assert_eq!(joined["stream"], "stderr");
    assert!(agent.stop().success());
}

#[test]
fn hostile_input_is_kept_flagged_and_does_not_stop_the_file() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "hostile", "app", Format::Cri);
    w.line("before seq=1").unwrap();
    let path = w.path.clone();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    // Invalid UTF-8, a NUL byte, broken JSON, a line that is not CRI at all.
    f.write_all(b"2026-11-26T17:00:01Z stdout F bad \xff\xfe bytes seq=2\n")
        .unwrap();
    f.write_all(b"2026-11-26T17:00:02Z stdout F nul \0 byte seq=3\n")
        .unwrap();
    f.write_all(b"2026-11-26T17:00:03Z stdout F {\"broken\": json seq=4\n")
        .unwrap();
    f.write_all(b"this line is not CRI seq=5\n").unwrap();
    // A 50 MiB line: cut to max_line_bytes, flagged, and the file goes on.
    let mut giant = b"2026-11-26T17:00:04Z stdout F giant seq=6 ".to_vec();
    giant.resize(50 << 20, b'g');
    giant.push(b'\n');
    f.write_all(&giant).unwrap();
    drop(giant);
    drop(f);
    w.line("after seq=7").unwrap();
    let agent = Agent::start(&node.config(&es.url, "max_line_bytes = \"64KiB\"", ""));
    let expected: HashSet<(String, u64)> = (1..=7).map(|s| ("hostile".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    let docs = docs(&es);
    let by_seq = |n: u64| {
        docs.iter()
            .map(|(_, d)| d)
            .find(|d| {
                d["log"]
                    .as_str()
                    .is_some_and(|l| l.contains(&format!("seq={n}")))
            })
            .unwrap_or_else(|| panic!("seq {n}"))
            .clone()
    };
    assert_eq!(by_seq(2)["log"], "bad \u{FFFD}\u{FFFD} bytes seq=2");
    assert_eq!(by_seq(2)["logferry"]["invalid_utf8"], true);
    assert_eq!(by_seq(3)["log"], "nul \0 byte seq=3");
    assert_eq!(by_seq(4)["log"], "{\"broken\": json seq=4");
    assert_eq!(by_seq(5)["logferry"]["malformed"], true);
    assert_eq!(by_seq(5)["log"], "this line is not CRI seq=5");
    let giant = by_seq(6);
    assert_eq!(giant["logferry"]["truncated"], true);
    assert_eq!(giant["log"].as_str().map(str::len), Some(64 * 1024));
    assert_eq!(by_seq(7)["log"], "after seq=7");
    let metrics = agent.metrics();
    assert!(
        metrics.contains("logferry_records_total{outcome=\"invalid_utf8\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("logferry_records_total{outcome=\"truncated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("logferry_records_total{outcome=\"malformed\"} 1"),
        "{metrics}"
    );
    assert!(agent.stop().success());
}

#[test]
fn an_unreachable_cluster_loses_nothing_and_says_why() {
    let node = Node::new();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut w = node.writer("shop", "patient", "app", Format::Docker);
    let mut expected = HashSet::new();
    for seq in 0..200 {
        w.json_line(seq).unwrap();
        expected.insert(("patient".to_owned(), seq));
    }
    let agent = Agent::start(&node.config(&url, "", ""));
    wait_until(20, "health to report the outage", || {
        agent.get("/health")["checks"]["elasticsearch"]["status"] == "degraded"
    });
    let health = agent.get("/health");
    assert!(
        health["checks"]["elasticsearch"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{health}"
    );
    for seq in 200..400 {
        w.json_line(seq).unwrap();
        expected.insert(("patient".to_owned(), seq));
    }
    std::thread::sleep(Duration::from_secs(1));
    let es = osmem_on(port);
    assert_exactly_once(&es, &expected);
    wait_until(10, "health to recover", || {
        agent.get("/health")["status"] == "healthy"
    });
    let logs = agent.logs();
    // Said once when it started and once when it ended, not at every retry.
    assert_eq!(
        logs.matches("bulk request failed; retrying").count(),
        1,
        "{logs}"
    );
    assert_eq!(logs.matches("shipping again").count(), 1, "{logs}");
    assert!(agent.stop().success());
}

#[test]
fn a_shutdown_during_an_outage_exits_cleanly_and_the_restart_delivers() {
    let node = Node::new();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut w = node.writer("shop", "stranded", "app", Format::Cri);
    let expected: HashSet<(String, u64)> = (0..100)
        .map(|seq| {
            w.json_line(seq).unwrap();
            ("stranded".to_owned(), seq)
        })
        .collect();
    let config = node.config(&url, "", "");
    let agent = Agent::start(&config);
    wait_until(20, "the outage to be noticed", || {
        agent.get("/health")["status"] == "degraded"
    });
    let started = std::time::Instant::now();
    let status = agent.stop();
    assert!(
        status.success(),
        "exit 0 even with records unshipped, got {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded by the drain timeout"
    );
    // The lines are safe in the buffer, so the file's checkpoint is past them all; the buffer
    // delivers them after the restart.
    let checkpoints = std::fs::read_to_string(node.data().join("checkpoints.json")).unwrap();
    let end = std::fs::metadata(&w.path).unwrap().len();
    assert!(
        checkpoints.contains(&format!("\"offset\": {end}")),
        "read and buffered: {checkpoints}"
    );
    let segments = std::fs::read_dir(node.data().join("buffer"))
        .unwrap()
        .count();
    assert!(segments > 0, "the records wait in the buffer");
    let es = osmem_on(port);
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}

#[test]
fn truncated_deleted_and_unterminated_files_lose_nothing() {
    let es = osmem();
    let node = Node::new();
    let mut trunc = node.writer("shop", "trunc", "app", Format::Cri);
    let mut gone = node.writer("shop", "gone", "app", Format::Cri);
    let mut rot = node.writer("shop", "rot", "app", Format::Cri);
    for seq in 0..50 {
        trunc.json_line(seq).unwrap();
        gone.json_line(seq).unwrap();
        rot.json_line(seq).unwrap();
    }
    let agent = Agent::start(&node.config(&es.url, "", ""));
    wait_for_count(&es, 150, 30);
    // copytruncate: the file is emptied in place and written again from the start.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&trunc.path)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for seq in 50..80 {
        trunc.json_line(seq).unwrap();
    }
    // Deleted while open: what was written before the unlink is still read.
    for seq in 50..60 {
        gone.json_line(seq).unwrap();
    }
    std::fs::remove_file(&gone.link).unwrap();
    std::fs::remove_file(&gone.path).unwrap();
    // Rotated with a last line that never gets its newline: shipped after rotate_wait.
    let mut f = OpenOptions::new().append(true).open(&rot.path).unwrap();
    f.write_all(b"2026-11-26T17:01:00Z stdout F last words seq=50")
        .unwrap();
    drop(f);
    rot.rotate("20261126-170100").unwrap();

    let mut expected: HashSet<(String, u64)> = HashSet::new();
    for s in 0..80 {
        expected.insert(("trunc".into(), s));
    }
    for s in 0..60 {
        expected.insert(("gone".into(), s));
    }
    for s in 0..51 {
        expected.insert(("rot".into(), s));
    }
    assert_exactly_once(&es, &expected);
    let docs = docs(&es);
    let last = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["log"] == "last words seq=50")
        .expect("unterminated last line");
    assert_eq!(last["logferry"]["unterminated"], true);
    assert!(
        agent
            .metrics()
            .contains("logferry_input_truncations_total 1")
    );
    assert!(agent.stop().success());
}

#[test]
fn a_killed_agent_resumes_without_duplicates() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "crashy", "app", Format::Cri);
    let mut expected = HashSet::new();
    // Two requests in flight and small chunks: acknowledgements arrive out of order, and
    // checkpoints must still only move over what every earlier chunk delivered.
    let config = node.config(
        &es.url,
        "",
        "flush_thread_count = 2\nchunk_limit_size = \"32KiB\"",
    );
    let mut seq = 0;
    for round in 0..4 {
        let agent = Agent::start(&config);
        for _ in 0..2000 {
            w.json_line(seq).unwrap();
            expected.insert(("crashy".to_owned(), seq));
            seq += 1;
        }
        std::thread::sleep(Duration::from_millis(150 + 100 * round));
        agent.kill();
    }
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}

#[test]
fn read_from_end_skips_old_content_but_not_new_files() {
    let es = osmem();
    let node = Node::new();
    let mut old = node.writer("shop", "old", "app", Format::Cri);
    for seq in 0..20 {
        old.json_line(seq).unwrap();
    }
    let agent = Agent::start(&node.config(&es.url, "read_from = \"end\"", ""));
    wait_until(10, "agent ready", || {
        agent.get("/ready")["status"] == "healthy"
    });
    for seq in 20..30 {
        old.json_line(seq).unwrap();
    }
    let mut new = node.writer("shop", "new", "app", Format::Cri);
    for seq in 0..10 {
        new.json_line(seq).unwrap();
    }
    let mut expected: HashSet<(String, u64)> = (20..30).map(|s| ("old".to_owned(), s)).collect();
    expected.extend((0..10).map(|s| ("new".to_owned(), s)));
    assert_exactly_once(&es, &expected);
    // Ctrl-C is a clean shutdown too.
    let status = agent.stop_with("INT");
    assert!(status.success(), "clean exit on SIGINT, got {status:?}");
}

#[test]
fn an_unreadable_file_is_reported_once_and_read_once_it_can_be() {
    let es = osmem();
    let node = Node::new();
    let mut open = node.writer("shop", "open", "app", Format::Cri);
    let mut locked = node.writer("shop", "locked", "app", Format::Cri);
    for seq in 0..20 {
        open.json_line(seq).unwrap();
        locked.json_line(seq).unwrap();
    }
    node.share_with_other_users();
    set_mode(&locked.path, 0o000);
    let agent = Agent::start_unprivileged(&node.config(&es.url, "", ""));
    let readable: HashSet<(String, u64)> = (0..20).map(|s| ("open".to_owned(), s)).collect();
    assert_exactly_once(&es, &readable);
    wait_until(10, "the read error to be counted", || {
        !agent
            .metrics()
            .contains("logferry_input_read_errors_total 0")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let logs = agent.logs();
    assert_eq!(
        logs.matches("cannot open file; will retry").count(),
        1,
        "one log line per unreadable file, not one per retry:\n{logs}"
    );
    assert!(
        logs.contains("locked_shop_app-"),
        "the log names the file:\n{logs}"
    );
    set_mode(&locked.path, 0o644);
    let mut all = readable;
    all.extend((0..20).map(|s| ("locked".to_owned(), s)));
    assert_exactly_once(&es, &all);
    assert!(agent.stop().success());
}

#[test]
fn a_line_without_its_newline_waits_for_it() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "slow", "app", Format::Cri);
    w.line("first seq=0").unwrap();
    let agent = Agent::start(&node.config(&es.url, "", ""));
    wait_for_count(&es, 1, 20);
    let mut f = OpenOptions::new().append(true).open(&w.path).unwrap();
    f.write_all(b"2026-11-26T17:00:05Z stdout F half a li")
        .unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        es.count("logs-*").unwrap(),
        1,
        "half a line must not be shipped"
    );
    f.write_all(b"ne seq=1\n").unwrap();
    let expected: HashSet<(String, u64)> = (0..2).map(|s| ("slow".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    let doc = docs(&es)
        .into_iter()
        .find(|(_, d)| d["log"] == "half a line seq=1");
    assert!(
        doc.is_some_and(|(_, d)| d.get("logferry").is_none()),
        "joined whole, unflagged"
    );
    assert!(agent.stop().success());
}

#[test]
fn an_unwritable_data_dir_is_reported_once_and_shipping_goes_on() {
    let es = osmem();
    let node = Node::new();
    node.share_with_other_users();
    let mut w = node.writer("shop", "diskfull", "app", Format::Cri);
    w.json_line(0).unwrap();
    let agent = Agent::start_unprivileged(&node.config(&es.url, "", ""));
    wait_for_count(&es, 1, 20);
    // As good as a full disk for the checkpoint file: its directory refuses writes.
    set_mode(&node.data(), 0o555);
    for seq in 1..50 {
        w.json_line(seq).unwrap();
    }
    wait_until(20, "the write failures to be counted", || {
        !agent
            .metrics()
            .contains("logferry_checkpoint_write_errors_total 0")
    });
    std::thread::sleep(Duration::from_millis(2500));
    let logs = agent.logs();
    assert_eq!(
        logs.matches("checkpoint or buffer cursor write failed")
            .count(),
        1,
        "{logs}"
    );
    set_mode(&node.data(), 0o777);
    let expected: HashSet<(String, u64)> = (0..50).map(|s| ("diskfull".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    wait_until(10, "the recovery to be said", || {
        agent.logs().contains("checkpoints are written again")
    });
    assert!(agent.stop().success());
    let saved = std::fs::read_to_string(node.data().join("checkpoints.json")).unwrap();
    assert!(
        saved.contains(&format!(
            "\"offset\": {}",
            std::fs::metadata(&w.path).unwrap().len()
        )),
        "{saved}"
    );
}

#[test]
fn uncompressed_requests_carry_every_line_once_even_lines_larger_than_a_read() {
    // compression = "none" streams each body from the buffer with its length known up front;
    // a small chunk_limit_size makes many requests, and 300 KiB lines are larger than one read
    // of the buffer.
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "api-0", "app", Format::Cri);
    let mut expected = HashSet::new();
    for seq in 0..600 {
        if seq % 150 == 7 {
            let pad = "y".repeat(300 * 1024);
            w.line(&format!(r#"{{"seq":{seq},"pad":"{pad}"}}"#))
                .unwrap();
        } else {
            w.json_line(seq).unwrap();
        }
        expected.insert((w.pod.clone(), seq));
    }
    let config = node.config(
        &es.url,
        "max_line_bytes = \"1MiB\"",
        "chunk_limit_size = \"64KiB\"\nmax_size = \"64MiB\"",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "[elasticsearch]\n",
        "[elasticsearch]\ncompression = \"none\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected);
    let docs = docs(&es);
    let big = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["seq"] == 157)
        .expect("the 300 KiB line");
    assert_eq!(big["pad"].as_str().map(str::len), Some(300 * 1024));
    assert!(agent.stop().success());
}
