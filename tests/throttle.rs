//! Throttling against a real OpenSearch-compatible server: a flood in one pod is read no faster
//! than its limit — every line of it still indexed once (`slow`), or the excess counted
//! (`drop`) — while a quiet pod's lines keep arriving as fast as without the flood.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;

fn count_of(es: &Osmem, pod: &str) -> usize {
    docs_of(es, pod).len()
}

/// Writes `n` lines of the quiet pod one at a time, each waited for in the index: the slowest
/// one's time from the write to the index.
fn quiet_lines(es: &Osmem, w: &mut LogWriter, seqs: std::ops::Range<u64>) -> Duration {
    let mut worst = Duration::ZERO;
    for seq in seqs {
        w.json_line(seq).unwrap();
        let written = Instant::now();
        wait_until(20, "a quiet line", || count_of(es, "api-1") > seq as usize);
        worst = worst.max(written.elapsed());
    }
    worst
}

#[test]
fn a_flood_is_read_at_its_limit_while_a_quiet_pod_keeps_its_latency_and_nothing_is_lost() {
    let es = osmem();
    let node = Node::new();
    let config = node.config_with(&es.url, "[throttle]\nlines_per_second = 500\nburst = 500\n");
    let agent = Agent::start(&config);
    let mut quiet = node.writer("quiet", "api-1", "app", Format::Cri);
    let mut expected: HashSet<(String, u64)> = (0..25).map(|s| ("api-1".to_owned(), s)).collect();
    // The quiet pod's latency on its own, then while another pod floods.
    let alone = quiet_lines(&es, &mut quiet, 0..10);
    let mut noisy = node.writer("noisy", "crashloop-1", "app", Format::Cri);
    for seq in 0..3000 {
        noisy.json_line(seq).unwrap();
        expected.insert(("crashloop-1".to_owned(), seq));
    }
    let flood_started = Instant::now();
    let flooded = quiet_lines(&es, &mut quiet, 10..25);
    let flooded_meanwhile = count_of(&es, "crashloop-1");
    let elapsed = flood_started.elapsed().as_secs_f64();
    // The flood was held to its rate the whole time: the burst, 500 a second, a block's slack.
    let allowed = 500.0 + 500.0 * elapsed + 1000.0;
    assert!(
        (flooded_meanwhile as f64) < allowed && flooded_meanwhile < 3000,
        "{flooded_meanwhile} flood lines in {elapsed:.1} s"
    );
    // While it was held back, the quiet pod's lines went as fast as they go without it (the
    // slack is the machine's noise, not the flood's).
    assert!(
        flooded <= alone + Duration::from_millis(1500),
        "a quiet line took {flooded:?} during the flood, {alone:?} without"
    );
    // Nothing is lost: the rest of the flood comes, at the rate, once each.
    assert_exactly_once(&es, &expected);
    let throttled = agent.metric_f64("logferry_throttled_seconds_total{namespace=\"noisy\"}");
    assert!(throttled > 0.5, "{throttled}");
    assert_eq!(
        agent.metric_f64("logferry_throttled_seconds_total{namespace=\"quiet\"}"),
        0.0
    );
    assert!(agent.stop().success());
}

#[test]
fn drop_sheds_the_excess_and_counts_every_line_of_it() {
    let es = osmem();
    let node = Node::new();
    let mut noisy = node.writer("noisy", "crashloop-1", "app", Format::Cri);
    for seq in 0..2000 {
        noisy.json_line(seq).unwrap();
    }
    let mut exempt = node.writer("kube-system", "dns-1", "app", Format::Cri);
    for seq in 0..2000 {
        exempt.json_line(seq).unwrap();
    }
    let config = node.config_with(
        &es.url,
        "[throttle]\nlines_per_second = 100\nburst = 200\naction = \"drop\"\nexcept_namespaces = [\"kube-system\"]\n",
    );
    let agent = Agent::start(&config);
    wait_until(30, "the exempt pod's 2000 lines", || {
        count_of(&es, "dns-1") == 2000
    });
    wait_until(30, "2000 flood lines indexed or dropped", || {
        count_of(&es, "crashloop-1") as u64
            + agent.metric("logferry_throttle_dropped_total{namespace=\"noisy\"}")
            == 2000
    });
    let indexed = count_of(&es, "crashloop-1");
    assert!(
        (200..600).contains(&indexed),
        "the burst and a few seconds' rate: {indexed}"
    );
    // Never silently: what was not indexed is counted, in its namespace.
    assert_eq!(
        agent.metric("logferry_throttle_dropped_total{namespace=\"noisy\"}"),
        2000 - indexed as u64
    );
    assert_eq!(
        agent.metric("logferry_throttle_dropped_total{namespace=\"kube-system\"}"),
        0
    );
    assert!(agent.stop().success());
}
