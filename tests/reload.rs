//! Config reload against a real OpenSearch-compatible server: SIGHUP and `--watch-config` take a
//! new file without a restart — routes, parse, throttling, multiline, batch size, hosts and the
//! log level change while lines keep flowing, each change showing in what is shipped, every
//! line lands exactly once — and a broken file is refused with its file, line and key while the
//! running config goes on.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;

/// The batch size of the changed config: a bulk request body stays under it.
const SMALL_BATCH: usize = 16 * 1024;

/// Two configs a reload alternates between. The second routes `shop` to an index of its own
/// (the first has the route too, for a namespace nobody uses: the same templates, so no reload
/// waits for setup), keeps the original line, joins Java traces, ships batches of at most
/// [`SMALL_BATCH`] and throttles each container to 20 lines a second, except `kube-system`'s.
/// Both indices match `logs-*`, where exactly-once is checked.
fn variants(base: &str) -> (String, String) {
    let route = |namespace: &str| {
        format!(
            "[[route]]\nname = \"shop\"\nindex = \"logs-shop\"\nwhen.namespaces = [{namespace:?}]\n"
        )
    };
    let plain = format!("{base}{}", route("nobody"));
    let changed = base.replace(
        "retry_wait = \"100ms\"",
        "retry_wait = \"100ms\"\nchunk_limit_size = \"16KiB\"",
    ) + "[parse]\nkeep_original = true\n[multiline]\nrules = [\"java\"]\n\
         [throttle]\nlines_per_second = 20\nburst = 20\nexcept_namespaces = [\"kube-system\"]\n"
        + &route("shop");
    (plain, changed)
}

fn config_text(path: &Path) -> String {
    std::fs::read_to_string(path).expect("config")
}

fn health_of<'a>(health: &'a serde_json::Value, check: &str) -> (&'a str, &'a str) {
    let c = &health["checks"][check];
    (
        c["status"].as_str().unwrap_or("absent"),
        c["detail"].as_str().unwrap_or(""),
    )
}

/// One reload of the test below, and what was seen while its config ran.
struct Phase {
    changed: bool,
    /// The success timestamp moved: the reload was taken.
    taken: bool,
    /// From a moment after it was taken (the tailer takes it at its next pass, the shippers at
    /// their next attempt) until the next reload was asked for.
    from: Instant,
    until: Instant,
    /// `logferry_throttled_seconds_total{namespace="shop"}` before the reload was asked for,
    /// at `from` and at `until`.
    throttled: [f64; 3],
}

/// The lines a reload's markers write: a JSON line in `marker-1`, a Java trace in `trace-1`.
fn trace_of(n: u64) -> [String; 3] {
    [
        format!("java.lang.IllegalStateException: trace seq={n}"),
        format!("\tat com.example.Orders.take(Orders.java:{n})"),
        format!("\tat com.example.Main.main(Main.java:{n})"),
    ]
}

#[test]
fn each_reload_under_load_is_taken_and_shows_in_what_is_shipped_and_no_line_is_lost_or_repeated() {
    const RELOADS: u64 = 20;
    let es = osmem();
    // Each bulk request recorded and held a while, so that batches grow while requests are
    // in flight (up to the batch size).
    let recorder = support::proxy::FaultProxy::start(&es.url);
    recorder.set(|f| f.delay_paths = vec![("/_bulk".into(), Duration::from_millis(150))]);
    let node = Node::new();
    // Read every 50 ms rather than once a second (the default): each phase of 250 ms must
    // see the throttle hold lines, or not.
    let path = node.config(&recorder.url, "", "flush_interval = \"50ms\"");
    let (plain, changed) = variants(&config_text(&path));
    std::fs::write(&path, &plain).expect("write config");
    // One trigger: SIGHUP (no --watch-config), so that each reload asked for is one to take.
    let agent = Agent::start(&path);
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (logs, writing) = (node.logs(), writing.clone());
        std::thread::spawn(move || {
            // Three shop pods the changed config throttles, one in kube-system it does not.
            let pods = ["cart-1", "cart-2", "cart-3", "proxy-1"];
            let mut writers: Vec<LogWriter> = pods
                .iter()
                .map(|p| {
                    let ns = if p.starts_with("cart") {
                        "shop"
                    } else {
                        "kube-system"
                    };
                    LogWriter::create(&logs, ns, p, "app", Format::Cri).expect("writer")
                })
                .collect();
            let mut expected = HashSet::new();
            let mut seq = 0u64;
            // 200 lines a second each, a few at a time, as an application writes: ten times
            // the throttle's rate (and under the 10 000 documents a search can page through).
            while writing.load(Ordering::Relaxed) && seq < 8000 {
                for (w, pod) in writers.iter_mut().zip(pods) {
                    for _ in 0..2 {
                        w.json_line(seq).expect("write");
                        expected.insert((pod.to_owned(), seq));
                        seq += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Whether it stopped before it was told to.
            (expected, seq >= 8000)
        })
    };
    let mut marker = node.writer("shop", "marker-1", "app", Format::Cri);
    let mut trace = node.writer("shop", "trace-1", "app", Format::Cri);
    let reload_time = || agent.metric_f64("logferry_config_last_reload_success_timestamp_seconds");
    let throttled = || agent.metric_f64("logferry_throttled_seconds_total{namespace=\"shop\"}");
    let mut taken_at = reload_time();
    let mut phases = Vec::new();
    for n in 0..RELOADS {
        let changes = n % 2 == 0;
        let text = if changes { &changed } else { &plain };
        std::fs::write(&path, text).expect("write config");
        let before = throttled();
        agent.signal("HUP");
        let asked = Instant::now();
        let mut taken = false;
        while !taken && asked.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
            let at = reload_time();
            taken = at > taken_at;
            taken_at = taken_at.max(at);
        }
        // Taken by the tailer at its next pass and by the shippers at their next attempt, both
        // well within this while lines flow.
        std::thread::sleep(Duration::from_millis(100));
        let (from, at_from) = (Instant::now(), throttled());
        marker.json_line(n).expect("marker");
        for line in trace_of(n) {
            trace.line(&line).expect("trace");
        }
        std::thread::sleep(Duration::from_millis(250));
        phases.push(Phase {
            changed: changes,
            taken,
            from,
            until: Instant::now(),
            throttled: [before, at_from, throttled()],
        });
    }
    writing.store(false, Ordering::Relaxed);
    let (mut expected, stopped_early) = writer.join().expect("writer");
    let written = expected.len() as u64 + RELOADS * 4;
    // Every reload was taken: the success timestamp moved after each, and the log says so as
    // many times.
    let missed: Vec<usize> = (0..phases.len()).filter(|n| !phases[*n].taken).collect();
    assert!(
        missed.is_empty(),
        "reloads not taken: {missed:?} of {RELOADS}"
    );
    let failures = agent.metric("logferry_config_reload_failures_total");
    assert_eq!(failures, 0, "reloads refused:\n{}", agent.logs());
    let reloaded = agent.logs().matches("config reloaded").count() as u64;
    assert_eq!(reloaded, RELOADS, "reloads logged as taken");
    assert!(!stopped_early, "the writer stopped before the last reload");
    // The throttle held the shop pods while the changed config ran, and only then.
    for (n, p) in phases.iter().enumerate() {
        let [before, from, until] = p.throttled;
        if p.changed {
            assert!(
                until > before,
                "reload {n}: nothing was held back: {before} -> {until}"
            );
        } else {
            assert_eq!(from, until, "reload {n}: held back without a throttle");
        }
    }
    // Nothing lost, repeated or read twice: the markers' lines too, a trace read under the
    // changed config being one document and under the other three.
    for n in 0..RELOADS {
        expected.insert(("marker-1".to_owned(), n));
        expected.insert(("trace-1".to_owned(), n));
    }
    let unjoined_frames = 2 * phases.iter().filter(|p| !p.changed).count() as u64;
    let documents = expected.len() as u64 + unjoined_frames;
    assert_eq!(wait_for_count(&es, documents, 60), documents, "documents");
    let docs = docs(&es);
    let counts = seq_counts(&docs);
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !counts.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = counts
        .iter()
        .filter(|(k, c)| **c > 1 || !expected.contains(*k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing records, e.g. {missing:?}");
    assert!(
        extra.is_empty(),
        "repeated or unknown records, e.g. {extra:?}"
    );
    let ids: HashSet<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), docs.len(), "distinct ids");
    assert_eq!(
        agent.metric("logferry_input_lines_total"),
        written,
        "lines read != lines written"
    );
    // Each reload's settings show in what was read after it: the route's index, the original
    // line kept (`log` beside the parsed fields), the trace joined.
    let routed: HashSet<String> = es
        .all_documents("logs-shop")
        .expect("search")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let of = |pod: &str, keep: &dyn Fn(&serde_json::Value) -> bool| {
        docs.iter()
            .filter(|(_, d)| d["kubernetes"]["pod_name"] == pod && keep(d))
            .map(|(id, d)| (routed.contains(id), d))
            .collect::<Vec<_>>()
    };
    for (n, p) in phases.iter().enumerate() {
        let (n, changed) = (n as u64, p.changed);
        let marker = of("marker-1", &|d| d["seq"] == n);
        let [(routed, doc)] = marker[..] else {
            panic!("reload {n}: marker {marker:?}")
        };
        assert_eq!(
            routed, changed,
            "reload {n}: the route did not follow: {doc}"
        );
        assert_eq!(
            doc.get("log").is_some(),
            changed,
            "reload {n}: keep_original did not follow: {doc}"
        );
        // Joined, the trace was handed on whole when the next reload changed the rules.
        let lines = trace_of(n);
        let traced = of("trace-1", &|d| {
            let log = d["log"].as_str().unwrap_or("");
            log.lines().any(|l| lines.iter().any(|t| t == l))
        });
        let mut logs: Vec<&str> = traced
            .iter()
            .map(|(_, d)| d["log"].as_str().unwrap_or(""))
            .collect();
        logs.sort_unstable();
        let joined = lines.join("\n");
        let mut want: Vec<&str> = if changed {
            vec![&joined]
        } else {
            lines.iter().map(String::as_str).collect()
        };
        want.sort_unstable();
        assert_eq!(logs, want, "reload {n}: multiline did not follow");
        assert!(
            traced.iter().all(|(r, _)| *r == changed),
            "reload {n}: the trace's route did not follow"
        );
    }
    // Every shop line read under the changed config kept its original, and only those: the two
    // settings changed together, whenever a line was read (held back or not).
    let carts = docs.iter().filter(|(_, d)| {
        d["kubernetes"]["pod_name"]
            .as_str()
            .is_some_and(|p| p.starts_with("cart"))
    });
    let (mut kept, mut parsed) = (0, 0);
    for (id, d) in carts {
        let is_routed = routed.contains(id);
        assert_eq!(
            d.get("log").is_some(),
            is_routed,
            "{id} (routed: {is_routed}): {d}"
        );
        if is_routed { kept += 1 } else { parsed += 1 }
    }
    assert!(
        kept > 0 && parsed > 0,
        "{kept} shop lines under the changed config, {parsed} under the other"
    );
    // The batch size followed too: no bulk request while the changed config ran was larger
    // than its batches, and some were nearly that large; under the other config they grew
    // larger.
    let bulks = recorder.seen().bulks;
    let during = |changed: bool| -> Vec<usize> {
        bulks
            .iter()
            .filter(|b| {
                phases
                    .iter()
                    .any(|p| p.changed == changed && p.from <= b.0 && b.0 < p.until)
            })
            .map(|b| b.1)
            .collect()
    };
    let (small, large) = (during(true), during(false));
    assert!(
        small.iter().all(|b| *b <= SMALL_BATCH),
        "bulk requests over {SMALL_BATCH} bytes under the changed config: {small:?}"
    );
    assert!(
        small.iter().any(|b| *b > SMALL_BATCH * 3 / 4),
        "no batch under the changed config came near its size: {small:?}"
    );
    assert!(
        large.iter().any(|b| *b > SMALL_BATCH),
        "no larger batches under the first config: {large:?}"
    );
    // The smaller batches' segment role is named while it differs from the start's, and only it.
    let health = agent.get("/health");
    let (_, detail) = health_of(&health, "config");
    assert!(
        !detail.contains("needs a restart")
            || detail.ends_with("buffer.chunk_limit_size (as the buffer's segment size)"),
        "{detail}"
    );
    std::fs::write(&path, &plain).expect("write config");
    agent.signal("HUP");
    wait_until_showing(
        20,
        "the start's config to be healthy again",
        || health_of(&agent.get("/health"), "config").0 == "healthy",
        || format!("{}\n{}", agent.get("/health"), agent.logs()),
    );
}

#[test]
fn a_refused_file_keeps_the_running_config_and_says_file_line_and_key_once() {
    let es = osmem();
    let node = Node::new();
    let path = node.config(&es.url, "", "");
    let good = config_text(&path);
    let agent = Agent::start(&path);
    let first: HashSet<_> = node.json_lines("before", 50);
    wait_for_count(&es, 50, 60);
    let taken_at = agent.metric_f64("logferry_config_last_reload_success_timestamp_seconds");
    assert!(taken_at > 1.0e9, "the start sets the timestamp: {taken_at}");
    let broken = good.replace("retry_wait = \"100ms\"", "retry_wait = \"soon\"");
    let line = broken
        .lines()
        .position(|l| l.contains("\"soon\""))
        .expect("broken line")
        + 1;
    std::fs::write(&path, &broken).expect("write");
    agent.signal("HUP");
    wait_until(20, "the refusal to be counted", || {
        agent.metric("logferry_config_reload_failures_total") == 1
    });
    agent.signal("HUP");
    wait_until(20, "the second refusal to be counted", || {
        agent.metric("logferry_config_reload_failures_total") == 2
    });
    let health = agent.get("/health");
    let (status, detail) = health_of(&health, "config");
    assert_eq!(status, "degraded", "{health}");
    let at = format!("{}:{line}", path.display());
    assert!(
        detail.contains(&at) && detail.contains("buffer.retry_wait"),
        "the check says where: {detail}"
    );
    let logs = agent.logs();
    assert_eq!(
        logs.matches("config reload refused").count(),
        1,
        "a refusal repeated is logged once:\n{logs}"
    );
    assert!(logs.contains("buffer.retry_wait"), "{logs}");
    assert_eq!(
        agent.metric_f64("logferry_config_last_reload_success_timestamp_seconds"),
        taken_at,
        "a refused reload does not move the success timestamp"
    );
    // The running config goes on: lines still ship.
    let mut expected = first;
    expected.extend(node.json_lines("during", 50));
    assert_exactly_once(&es, &expected);
    // Fixed: taken, the check is healthy again, the timestamp moves.
    std::fs::write(&path, &good).expect("write");
    agent.signal("HUP");
    wait_until(20, "the fixed file to be taken", || {
        health_of(&agent.get("/health"), "config").0 == "healthy"
    });
    assert!(agent.metric_f64("logferry_config_last_reload_success_timestamp_seconds") > taken_at);
}

#[test]
fn watch_config_takes_a_changed_file_and_names_what_needs_a_restart() {
    let es = osmem();
    let node = Node::new();
    let path = node.config(&es.url, "", "");
    let text = config_text(&path);
    let agent = Agent::start_adjusted(&path, |c| {
        c.arg("--watch-config");
    });
    let before = node.json_lines("before", 20);
    wait_for_count(&es, 20, 60);
    // No signal: only the file changes, as a ConfigMap update does. The route applies; the new
    // data_dir and api.listen cannot, and are named.
    let moved = text
        .replace(
            "data_dir = ",
            "data_dir = \"/nonexistent/elsewhere\"\n# was: data_dir = ",
        )
        .replace("listen = ", "listen = \"127.0.0.1:1\"\n# was: listen = ")
        + "[[route]]\nname = \"shop\"\nindex = \"routed-shop\"\nwhen.namespaces = [\"shop\"]\n";
    std::fs::write(&path, moved).expect("write");
    wait_until(30, "the changed file to be taken", || {
        agent.logs().contains("config reloaded")
    });
    let health = agent.get("/health");
    let (status, detail) = health_of(&health, "config");
    assert_eq!(status, "degraded", "{health}");
    assert!(
        detail.contains("needs a restart")
            && detail.contains("data_dir")
            && detail.contains("api.listen"),
        "{detail}"
    );
    let after = node.json_lines("after", 20);
    wait_until(60, "the new route's index to fill", || {
        es.count("routed-shop").unwrap_or(0) >= 20
    });
    let routed = seq_counts(&es.all_documents("routed-shop").expect("search"));
    let expected_after: std::collections::HashMap<_, _> =
        after.iter().map(|k| (k.clone(), 1)).collect();
    assert_eq!(routed, expected_after, "exactly the later lines, once each");
    assert_eq!(es.count("logs-*").unwrap_or(0), before.len() as u64);
    assert_eq!(agent.metric("logferry_config_reload_failures_total"), 0);
}

#[test]
fn a_reload_moves_shipping_to_new_hosts_and_a_new_log_level() {
    let es = osmem();
    let node = Node::new();
    // Nothing listens on the first host: records wait in the buffer, retried.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let path = node.config(&dead, "", "");
    let text = config_text(&path).replacen("[input]", "log_level = \"warn\"\n[input]", 1);
    std::fs::write(&path, &text).expect("write");
    let agent = Agent::start_adjusted(&path, |c| {
        c.env_remove("LOGFERRY_LOG");
    });
    let expected = node.json_lines("waiting", 30);
    wait_until(30, "retries against the dead host", || {
        agent.metric("logferry_bulk_retries_total") > 0
    });
    let moved = text
        .replace(&dead, &es.url)
        .replace("log_level = \"warn\"", "log_level = \"info\"");
    std::fs::write(&path, moved).expect("write");
    agent.signal("HUP");
    assert_exactly_once(&es, &expected);
    let logs = agent.logs();
    // Logged at info under the old level (warn): not shown. After it, at the new one: shown.
    assert!(!logs.contains("SIGHUP: reloading"), "{logs}");
    assert!(logs.contains("config reloaded"), "{logs}");
}

#[test]
fn a_route_added_by_a_reload_gets_its_index_template_installed() {
    let es = osmem();
    // Templates take a while to install: the new route's records must wait for them.
    let proxy = support::proxy::FaultProxy::start(&es.url);
    proxy.set(|f| {
        f.delay_paths = vec![("/_index_template".into(), Duration::from_millis(1500))];
    });
    let node = Node::new();
    let path = node.config(&proxy.url, "", "");
    let agent = Agent::start(&path);
    let template = |name: &str| {
        es.get(&format!("/_index_template/{name}"))
            .ok()
            .and_then(|v| v["index_templates"][0].get("index_template").cloned())
    };
    assert!(template("logferry-audit").is_none());
    // A new route changes the default index's template too (it yields to the route's): the
    // agent replaces its own templates only with `overwrite`, at a reload as at a start.
    let routed = config_text(&path)
        + "[elasticsearch.setup]\noverwrite = true\n"
        + "[[route]]\nname = \"audit\"\nindex = \"audit-%Y.%m\"\nwhen.namespaces = [\"shop\"]\n";
    std::fs::write(&path, routed).expect("write");
    agent.signal("HUP");
    // Lines the new route takes at once: its first index must still get its template.
    node.json_lines("audited", 10);
    wait_until(30, "the new route's template", || {
        template("logferry-audit").is_some()
    });
    let t = template("logferry-audit").expect("template");
    assert_eq!(t["index_patterns"], serde_json::json!(["audit-*.*"]));
    wait_until_showing(
        20,
        "setup to say the new plan is in place",
        || {
            let health = agent.get("/health");
            health_of(&health, "setup").1.contains("in place")
                && agent.metric("logferry_setup_complete") == 1
        },
        || {
            let complete = agent.metric("logferry_setup_complete");
            format!("{} setup_complete={complete}", agent.get("/health"))
        },
    );
    wait_until_showing(
        60,
        "the audited lines",
        || es.count("audit-*").unwrap_or(0) + es.count("logs-*").unwrap_or(0) >= 10,
        || format!("{}\n{}", agent.get("/health"), agent.logs()),
    );
    // Read once, routed by the new route when read after the reload reached the tailer (the
    // buffer holds them until the template is in)...
    let mut all = es.all_documents("audit-*").expect("search");
    all.extend(es.all_documents("logs-*").expect("search"));
    let counts = seq_counts(&all);
    assert_eq!(counts.len(), 10, "{counts:?}");
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    wait_until(60, "the route's index", || {
        es.count("audit-*").unwrap_or(0) > 0
    });
    // ...and its first index created after the template: the agent's mappings, not dynamic ones.
    let mapping = es.get("/audit-*/_mapping").expect("mapping");
    let (_, m) = mapping
        .as_object()
        .expect("indices")
        .iter()
        .next()
        .expect("an index");
    let pod = &m["mappings"]["properties"]["kubernetes"]["properties"]["pod_name"];
    assert_eq!(pod["type"], "keyword", "{m}");
}

#[test]
fn new_globs_pick_up_newly_included_files_and_let_go_of_newly_excluded_ones() {
    let es = osmem();
    let node = Node::new();
    let logs = node.logs().join("containers");
    let glob = |pod: &str| logs.join(format!("{pod}-*")).display().to_string();
    let path = node.config(&es.url, &format!("exclude = [{:?}]", glob("noisy")), "");
    let text = config_text(&path);
    let agent = Agent::start(&path);
    let mut noisy = node.writer("shop", "noisy-1", "app", Format::Cri);
    let mut quiet = node.writer("shop", "quiet-1", "app", Format::Cri);
    for seq in 0..10 {
        noisy.json_line(seq).unwrap();
        quiet.json_line(seq).unwrap();
    }
    wait_for_count(&es, 10, 60);
    assert_eq!(docs_of(&es, "noisy-1").len(), 0, "excluded at start");
    // quiet goes on being written while it is excluded, as a live container's file is.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        std::thread::spawn(move || {
            let mut seq = 10;
            while writing.load(Ordering::Relaxed) {
                quiet.json_line(seq).unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            seq
        })
    };
    // Swap the exclusion: noisy's file is read from its beginning, quiet's is let go.
    std::fs::write(&path, text.replace(&glob("noisy"), &glob("quiet"))).expect("write");
    agent.signal("HUP");
    wait_until(60, "noisy's 10 lines", || {
        docs_of(&es, "noisy-1").len() >= 10
    });
    wait_until(
        30,
        "the excluded file to be let go while it is written",
        || agent.metric("logferry_files_watched") == 1,
    );
    let shipped = docs_of(&es, "quiet-1").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        docs_of(&es, "quiet-1").len(),
        shipped,
        "nothing of quiet ships while excluded"
    );
    // Matched again: read on from its checkpoint, each line once, none read twice.
    std::fs::write(&path, text.replace(&glob("noisy"), &glob("nothing"))).expect("write");
    agent.signal("HUP");
    writing.store(false, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    let mut expected: HashSet<(String, u64)> =
        (0..written).map(|s| ("quiet-1".to_owned(), s)).collect();
    expected.extend((0..10).map(|s| ("noisy-1".to_owned(), s)));
    assert_exactly_once(&es, &expected);
    assert_eq!(agent.metric("logferry_input_lines_total"), written + 10);
}
