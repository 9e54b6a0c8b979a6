//! File descriptors as a budget: under a low open-files limit, with many more log files than
//! descriptors, every line is shipped exactly once, the agent never exits, and `/health` says
//! degraded while files wait for a descriptor.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use support::{Agent, Format, Node, assert_exactly_once, osmem, wait_until};

/// Soft and hard limit alike, so that raising the soft limit at start cannot help.
const LIMIT: u64 = 256;
/// More pods than the limit, as when a node is filled after a drain of another one.
const PODS: usize = 600;
/// What the tailer may hold under `LIMIT`: the default two shippers.
const BUDGET: u64 = LIMIT
    - (logferry::source::files::RESERVE + 2 * logferry::source::files::RESERVE_PER_SHIPPER) as u64;

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open log file");
    f.write_all(text.as_bytes()).expect("append");
}

/// Found by hand: with a soft limit of 1,024 and 3,000 new log files, opening the buffer's
/// directory for its fsync failed with EMFILE, the agent called its buffer untrustworthy and
/// exited with a third of the lines shipped.
#[test]
fn more_log_files_than_descriptors_are_all_shipped_and_the_agent_stays_up() {
    let es = osmem();
    let node = Node::new();
    let agent = Agent::start_with_open_files_limit(&node.config(&es.url, "", ""), LIMIT);
    let mut expected = HashSet::new();
    let mut paths = Vec::new();
    for i in 0..PODS {
        let pod = format!("pod-{i}");
        let mut w = node.writer("crowd", &pod, "app", Format::Cri);
        for seq in 0..3 {
            w.json_line(seq).expect("write");
            expected.insert((pod.clone(), seq));
        }
        // Each file's last line is still being written: no file the tailer opens can be closed
        // to make room, so the others wait for a descriptor until the lines are finished.
        append(
            &w.path,
            "2026-11-26T18:00:00.000000000Z stdout F {\"seq\":3}",
        );
        expected.insert((pod, 3));
        paths.push(w.path.clone());
    }
    wait_until(60, "/health to say files wait for a descriptor", || {
        agent.get("/health")["checks"]["tailer"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("wait for a descriptor"))
    });
    assert_eq!(
        agent.get("/health")["checks"]["tailer"]["status"],
        "degraded",
        "{}",
        agent.get("/health")
    );
    let open = agent.metric("logferry_files_open ");
    assert!(
        open > 0 && open <= BUDGET,
        "the tailer holds {open} descriptors, budget {BUDGET}"
    );
    for p in &paths {
        append(p, "\n");
    }
    assert_exactly_once(&es, &expected);
    wait_until(60, "every file followed and no file waiting", || {
        agent.metric("logferry_files_watched ") == PODS as u64
            && agent.get("/health")["checks"]["tailer"]["status"] == "healthy"
    });
    let open = agent.metric("logferry_files_open ");
    assert!(open <= BUDGET, "{open} descriptors held, budget {BUDGET}");
    // Most files were closed to make room; each one grows again and is reopened where it was.
    for (i, p) in paths.iter().enumerate() {
        append(p, "2026-11-26T18:00:01.000000000Z stdout F {\"seq\":4}\n");
        expected.insert((format!("pod-{i}"), 4));
    }
    assert_exactly_once(&es, &expected);
    let open = agent.metric("logferry_files_open ");
    assert!(open <= BUDGET, "{open} descriptors held, budget {BUDGET}");
    // The kubelet rotates every file right after a last write, closed or not: each rotated
    // file is found again by its identity and read to its end, the new ones from their start.
    for (i, p) in paths.iter().enumerate() {
        append(p, "2026-11-26T18:00:02.000000000Z stdout F {\"seq\":5}\n");
        std::fs::rename(p, p.with_file_name("0.log.20261126-180002")).expect("rotate");
        std::fs::write(p, "2026-11-26T18:00:03.000000000Z stdout F {\"seq\":6}\n")
            .expect("new file");
        expected.insert((format!("pod-{i}"), 5));
        expected.insert((format!("pod-{i}"), 6));
    }
    assert_exactly_once(&es, &expected);
    let open = agent.metric("logferry_files_open ");
    assert!(
        open <= BUDGET + 64,
        "{open} descriptors held, budget {BUDGET}"
    );
    let logs = agent.logs();
    assert!(
        !logs.contains("can no longer be trusted"),
        "the buffer was never given up:\n{logs}"
    );
    assert!(agent.stop().success(), "the agent ran until it was stopped");
}
