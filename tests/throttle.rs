//! Throttling against a real OpenSearch-compatible server: a flood in one pod is read no faster
//! than its limit over any stretch of time — every line of it still indexed once (`slow`), or
//! the excess counted (`drop`) — while a quiet pod's lines never wait for the flood's turn.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::*;

/// `LEAST_READ` in src/source/files/throttle.rs: a throttled pass reads at least this much, and a
/// burst overshoots by at most this much ("one block").
const ONE_BLOCK_BYTES: u64 = 4096;

/// The flood: 3,000 lines written at 1,500 a second, three times the limit of the tests.
const FLOOD: u64 = 3000;
const FLOOD_PER_SECOND: u64 = 1500;

/// What `/metrics` and the index said at one moment of a flood.
struct Sample {
    /// Just before the scrape, and just after: the lines read were counted in between.
    before: Instant,
    after: Instant,
    /// `logferry_input_lines_total`: the flood's lines read so far (the only pod writing).
    read: u64,
}

/// Writes the flood into `crashloop-1` (namespace `noisy`) at [`FLOOD_PER_SECOND`] while
/// sampling the lines read every half second, until all are read (or 60 s). Returns the samples
/// (the first taken before the first line was written) and the bytes of one flood line.
fn flood(node: &Node, agent: &Agent) -> (Vec<Sample>, u64) {
    let mut noisy = node.writer("noisy", "crashloop-1", "app", Format::Cri);
    let path = noisy.path.clone();
    let sample = || {
        let before = Instant::now();
        let read = agent.metric("logferry_input_lines_total");
        Sample {
            before,
            after: Instant::now(),
            read,
        }
    };
    let mut samples = vec![sample()];
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        let per_tick = FLOOD_PER_SECOND / 50;
        for tick in 0..FLOOD / per_tick {
            for i in 0..per_tick {
                noisy.json_line(tick * per_tick + i).expect("write");
            }
            let next = started + Duration::from_millis(20 * (tick + 1));
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while samples.last().expect("a sample").read < FLOOD && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        samples.push(sample());
    }
    writer.join().expect("writer");
    let line = std::fs::metadata(&path).expect("flood file").len() / FLOOD;
    (samples, line)
}

/// Where the samples say the flood was read faster than `rate` lines a second (after a
/// `burst`): each stretch between two samples once the burst is spent (from a second in) read
/// at most the rate over its time and one block, and from the start at most the burst, the
/// rate and one block. `stall` is the most a stretch may gain from the reading thread starting
/// a pass late (tokens refilled meanwhile, read just after the stretch began).
fn faster_than(samples: &[Sample], line: u64, rate: f64, burst: f64, stall: f64) -> Vec<String> {
    // In whole lines, and one more for a line a block cuts.
    let block = ONE_BLOCK_BYTES.div_ceil(line) as f64 + 1.0;
    let start = samples[0].before;
    let mut over = Vec::new();
    // Until everything was read: after that the reading stops, and proves nothing.
    let reading = samples
        .iter()
        .position(|s| s.read >= FLOOD)
        .unwrap_or(samples.len() - 1);
    let during = &samples[..=reading];
    for s in during {
        let elapsed = (s.after - start).as_secs_f64();
        let allowed = burst + rate * elapsed + block;
        if s.read as f64 > allowed {
            over.push(format!(
                "from the start: {} lines read in {elapsed:.2} s, more than the burst, the rate \
                 and one block ({allowed:.0})",
                s.read
            ));
        }
    }
    let steady: Vec<&Sample> = during
        .iter()
        .filter(|s| s.before >= start + Duration::from_secs(1))
        .collect();
    for (i, a) in steady.iter().enumerate() {
        for b in &steady[i + 1..] {
            let span = (b.after - a.before).as_secs_f64();
            let allowed = rate * span + block + 1.0 + stall;
            let read = b.read - a.read;
            if read as f64 > allowed {
                over.push(format!(
                    "{read} lines read in {span:.2} s from {:.2} s on, more than the rate and one \
                     block ({allowed:.0})",
                    (a.before - start).as_secs_f64()
                ));
            }
        }
    }
    over
}

fn show(samples: &[Sample]) -> String {
    let start = samples[0].before;
    samples
        .iter()
        .map(|s| format!("{:.2}s:{}", (s.before - start).as_secs_f64(), s.read))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A config throttling every pod to `rate` lines a second (burst as much), read every 50 ms
/// rather than once a second (the default `flush_interval`): these tests time the throttle over
/// half-second stretches from a second in, when the burst must already have been read.
fn throttled(node: &Node, es_url: &str, rate: u32) -> std::path::PathBuf {
    let config = node.config_with(
        es_url,
        &format!("[throttle]\nlines_per_second = {rate}\nburst = {rate}\n"),
    );
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace("[buffer]\n", "[buffer]\nflush_interval = \"50ms\"\n");
    std::fs::write(&config, text).expect("config");
    config
}

/// The reading thread may start a pass this late (scheduling on a busy machine, a buffer
/// write): at 500 lines a second, 10 lines refilled meanwhile.
const STALL: Duration = Duration::from_millis(20);

#[test]
fn a_flood_is_read_at_its_limit_over_every_stretch_of_time_and_nothing_is_lost() {
    let es = osmem();
    let node = Node::new();
    let config = throttled(&node, &es.url, 500);
    let agent = Agent::start(&config);
    let (samples, line) = flood(&node, &agent);
    let over = faster_than(&samples, line, 500.0, 500.0, 500.0 * STALL.as_secs_f64());
    assert!(
        over.is_empty(),
        "the flood was read faster than its limit:\n{}\nsamples: {}",
        over.join("\n"),
        show(&samples)
    );
    // Held only for what it owed: the 2,500 lines past the burst took their 5 s, not much more.
    let start = samples[0].before;
    let all_read = samples
        .iter()
        .find(|s| s.read >= FLOOD)
        .map(|s| s.after - start);
    assert!(
        all_read.is_some_and(|t| t < Duration::from_secs(8)),
        "the flood was read slower than its limit: {all_read:?}; samples: {}",
        show(&samples)
    );
    let throttled = agent.metric_f64("logferry_throttled_seconds_total{namespace=\"noisy\"}");
    assert!(throttled > 1.0, "{throttled}");
    // Nothing is lost: every line of the flood, once.
    let expected: HashSet<_> = (0..FLOOD).map(|s| ("crashloop-1".to_owned(), s)).collect();
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}

/// The positive control of the bounds above: the same flood, not throttled, breaks them.
#[test]
fn without_a_throttle_the_same_flood_breaks_the_bounds_of_the_limit() {
    let es = osmem();
    let node = Node::new();
    let agent = Agent::start(&node.config(&es.url, "", ""));
    let (samples, line) = flood(&node, &agent);
    let over = faster_than(&samples, line, 500.0, 500.0, 500.0 * STALL.as_secs_f64());
    let from_start = over
        .iter()
        .filter(|o| o.starts_with("from the start"))
        .count();
    assert!(
        from_start > 0 && over.len() > from_start,
        "both bounds should fail without a throttle: {over:?}\nsamples: {}",
        show(&samples)
    );
    assert!(agent.stop().success());
}

/// Documents of `pod`, counted by the index (cheaper than fetching them while polling).
fn indexed(es: &Osmem, pod: &str) -> u64 {
    let _ = http_json("POST", &format!("{}/logs-*/_refresh", es.url), None);
    let query = serde_json::json!({"query": {"term": {"kubernetes.pod_name": pod}}});
    http_json("POST", &format!("{}/logs-*/_count", es.url), Some(&query))
        .ok()
        .and_then(|v| v["count"].as_u64())
        .unwrap_or(0)
}

/// Writes the quiet pod's lines `seqs` one at a time, each waited for in the index: each
/// one's time from the write to the index.
fn quiet_lines(es: &Osmem, w: &mut LogWriter, seqs: std::ops::Range<u64>) -> Vec<Duration> {
    seqs.map(|seq| {
        w.json_line(seq).unwrap();
        let written = Instant::now();
        while indexed(es, "api-1") <= seq {
            assert!(
                written.elapsed() < Duration::from_secs(20),
                "quiet line {seq}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        written.elapsed()
    })
    .collect()
}

#[test]
fn a_quiet_pod_is_read_at_once_while_a_flooding_pod_is_held_back() {
    let es = osmem();
    let node = Node::new();
    // 20 lines a second: the flood is read a block (about 19 of its lines) at a time, then held
    // for about a second, so a quiet line that waited for the flood's turn would wait that long.
    // The quiet pod's lines are each waited for in turn: at a second each (the default pace)
    // the flood would be over before they are.
    let config = throttled(&node, &es.url, 20);
    let agent = Agent::start(&config);
    let mut quiet = node.writer("quiet", "api-1", "app", Format::Cri);
    let mut expected: HashSet<(String, u64)> = (0..25).map(|s| ("api-1".to_owned(), s)).collect();
    // The quiet pod's latency on its own, then while another pod floods. (Not its first line's,
    // which waits for its new file to be found and for the first bulk request's setup.)
    let alone = quiet_lines(&es, &mut quiet, 0..10).split_off(1);
    let mut noisy = node.writer("noisy", "crashloop-1", "app", Format::Cri);
    for seq in 0..150 {
        noisy.json_line(seq).unwrap();
        expected.insert(("crashloop-1".to_owned(), seq));
    }
    wait_until(20, "the flood to be held back", || {
        agent.metric_f64("logferry_throttled_seconds_total{namespace=\"noisy\"}") > 0.0
    });
    let flooded = quiet_lines(&es, &mut quiet, 10..25);
    let flood_indexed = indexed(&es, "crashloop-1");
    // No quiet line waited for the flood: each went as fast as the slowest went without it,
    // give or take the machine's noise, far less than the second the flood is held at a time...
    let (worst_alone, worst) = (alone.iter().max(), flooded.iter().max());
    let bound = *worst_alone.expect("lines") + Duration::from_millis(250);
    assert!(
        worst.is_some_and(|w| *w <= bound),
        "a quiet line took {worst:?} during the flood, at most {worst_alone:?} without: \
         {flooded:?} vs {alone:?}"
    );
    // ...while the flood was held the whole time (it takes about 6 s at its rate).
    assert!(
        flood_indexed < 150,
        "the flood was not held: {flood_indexed}"
    );
    assert_eq!(
        agent.metric_f64("logferry_throttled_seconds_total{namespace=\"quiet\"}"),
        0.0
    );
    // Nothing is lost: the rest of the flood comes, at the rate, once each.
    assert_exactly_once(&es, &expected);
    assert!(agent.stop().success());
}

fn count_of(es: &Osmem, pod: &str) -> usize {
    docs_of(es, pod).len()
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
