//! "Slow never drops" (issue 25): a throttled file that is deleted (as the kubelet deletes a
//! pod's logs) or rotated away is read to its end whatever its bucket holds — `rotate_wait`
//! after it went, and at a graceful shutdown — so its lines are not left in a file only the
//! agent still held open. Files sharing a bucket (`per = "pod"`) take turns at it: a container
//! that floods does not starve its neighbour.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;

fn expected(pod: &str, n: u64) -> HashSet<(String, u64)> {
    (0..n).map(|s| (pod.to_owned(), s)).collect()
}

/// Deletes a pod's log file and its link, as the kubelet does when the pod is deleted.
fn delete_pod_logs(w: &LogWriter) {
    std::fs::remove_file(&w.link).unwrap();
    std::fs::remove_dir_all(w.path.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_throttled_pod_deleted_before_a_graceful_restart_loses_no_line() {
    let es = osmem();
    let node = Node::new();
    let config = node.config_with(&es.url, "[throttle]\nlines_per_second = 200\nburst = 200\n");
    // Past rotate_wait a deleted file is read to its end anyway (the next test): a long one
    // leaves the graceful shutdown as the only way the rest of it can still arrive.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("rotate_wait = \"500ms\"", "rotate_wait = \"60s\""),
    )
    .unwrap();
    let agent = Agent::start(&config);
    let mut w = node.writer("batch", "job-1", "app", Format::Cri);
    for seq in 0..3000 {
        w.json_line(seq).unwrap();
    }
    wait_until(20, "the throttle to hold the file", || {
        agent.metric_f64("logferry_throttled_seconds_total{namespace=\"batch\"}") > 0.0
    });
    delete_pod_logs(&w);
    std::thread::sleep(Duration::from_secs(1));
    let shipped = docs_of(&es, "job-1").len();
    assert!(shipped < 2000, "most lines still waited: {shipped}");
    assert!(agent.stop().success());
    // The file is gone: only what the agent read before it stopped can still arrive.
    let agent = Agent::start(&config);
    assert_exactly_once(&es, &expected("job-1", 3000));
    assert!(agent.stop().success());
}

#[test]
fn a_throttled_file_deleted_while_running_is_read_to_its_end_rotate_wait_after() {
    let es = osmem();
    let node = Node::new();
    // rotate_wait is 500 ms in the tests' configs.
    let config = node.config_with(&es.url, "[throttle]\nlines_per_second = 100\nburst = 100\n");
    let agent = Agent::start(&config);
    let mut w = node.writer("batch", "job-1", "app", Format::Cri);
    for seq in 0..3000 {
        w.json_line(seq).unwrap();
    }
    wait_until(20, "the throttle to hold the file", || {
        agent.metric_f64("logferry_throttled_seconds_total{namespace=\"batch\"}") > 0.0
    });
    let gone = Instant::now();
    delete_pod_logs(&w);
    // At 100 a second the rest would take 30 s: it is read at once, rotate_wait after.
    wait_until(15, "every line", || docs_of(&es, "job-1").len() == 3000);
    assert!(
        gone.elapsed() < Duration::from_secs(15),
        "read to its end, not at the throttle's rate"
    );
    assert_exactly_once(&es, &expected("job-1", 3000));
    assert!(agent.stop().success());
}

#[test]
fn containers_sharing_a_pods_bucket_take_turns_and_the_quiet_one_is_not_starved() {
    let es = osmem();
    let node = Node::new();
    // The flooding container's file first: the lower inode, read first in a fixed order.
    let mut flood = node.writer("shop", "api-1", "worker", Format::Cri);
    for seq in 0..5000 {
        flood.json_line(seq).unwrap();
    }
    let mut quiet = node.writer("shop", "api-1", "sidecar", Format::Cri);
    let config = node.config_with(
        &es.url,
        "[throttle]\nper = \"pod\"\nlines_per_second = 200\nburst = 200\n",
    );
    let agent = Agent::start(&config);
    wait_until(20, "the throttle to hold the pod", || {
        agent.metric_f64("logferry_throttled_seconds_total{namespace=\"shop\"}") > 0.0
    });
    // The sidecar writes a line every 100 ms, 20 in all, while the worker's backlog is held.
    let started = Instant::now();
    for seq in 0..20 {
        quiet.json_line(seq).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let sidecar = |es: &Osmem| {
        docs_of(es, "api-1")
            .iter()
            .filter(|d| d["kubernetes"]["container_name"] == "sidecar")
            .count()
    };
    wait_until(10, "the sidecar's lines", || sidecar(&es) == 20);
    let worker = docs_of(&es, "api-1").len() - 20;
    // The sidecar got its turns while the worker was still far from done (5,000 lines at 200
    // a second take 25 s): no file of a bucket waits for another's backlog to end.
    assert!(
        worker < 5000,
        "the worker's backlog was done ({worker}) after {:?}",
        started.elapsed()
    );
    assert!(agent.stop().success());
}
