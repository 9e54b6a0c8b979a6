//! What an operator sees: `/metrics`, `/health` and `/ready` from a running agent, as lines are
//! shipped, as the cluster fails and recovers, and as the buffer fills. The metrics output is
//! checked with Prometheus' own `promtool`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::proxy::FaultProxy;
use support::*;

/// Runs `promtool check metrics` on `text`; returns what it said, failing on any complaint.
fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed: run scripts/test (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

fn openmetrics(agent: &Agent) -> String {
    let url = format!("http://{}/metrics", agent.api);
    let out = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
            &url,
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            // Without curl, speak HTTP by hand.
            use std::io::Read;
            let mut s = std::net::TcpStream::connect(&agent.api).unwrap();
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        }
    }
}

#[test]
fn metrics_and_health_follow_shipping_a_failing_cluster_and_its_recovery() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    let node = Node::new();
    let mut w = node.writer("shop", "observed", "app", Format::Cri);
    let agent = Agent::start(&node.config(&proxy.url, "", ""));

    // Ready once the first discovery pass is done (not ready before: that is the point of it).
    wait_until(10, "agent ready", || {
        agent.get("/ready")["status"] == "healthy"
    });
    let ready = agent.get("/ready");
    assert_eq!(ready["checks"]["tailer"]["status"], "healthy", "{ready}");
    assert_eq!(ready["checks"]["buffer"]["status"], "healthy", "{ready}");

    for seq in 0..100 {
        w.json_line(seq).unwrap();
    }
    assert_eq!(wait_for_count(&es, 100, 30), 100);
    wait_until(10, "the buffer gauge to empty", || {
        agent.metric("logferry_buffer_records") == 0
            && agent.metric("logferry_documents_total{outcome=\"indexed\"}") == 100
    });
    assert_eq!(agent.metric("logferry_input_lines_total"), 100);
    assert_eq!(agent.metric("logferry_records_total{outcome=\"ok\"}"), 100);
    assert_eq!(agent.metric("logferry_files_watched"), 1);
    assert!(agent.metric("logferry_bulk_requests_total{status=\"2xx\"}") >= 1);
    assert!(agent.metric("logferry_delivery_latency_seconds_count") >= 1);
    assert!(agent.metric("process_resident_memory_bytes") > 1_000_000);
    assert!(agent.metric("process_open_fds") > 3);
    assert!(agent.metric_f64("process_cpu_seconds_total") > 0.0);
    assert_eq!(agent.metric("logferry_build_info{version=\"0.1.0\"}"), 1);
    promtool_check_metrics(&agent.metrics());
    let om = openmetrics(&agent);
    assert!(
        om.trim_end().ends_with("# EOF"),
        "OpenMetrics when asked for: {om}"
    );
    assert!(om.contains("# TYPE logferry_input_lines counter"), "{om}");

    // The cluster answers 503: degraded (a restart would not help), retries with backoff.
    proxy.set(|f| f.status = Some(503));
    for seq in 100..150 {
        w.json_line(seq).unwrap();
    }
    wait_until(20, "the failure to show", || {
        agent.metric("logferry_bulk_requests_total{status=\"5xx\"}") >= 2
            && agent.metric_f64("logferry_backoff_seconds") > 0.0
            && agent.metric("logferry_buffer_records") == 50
    });
    assert!(agent.metric("logferry_bulk_retries_total") >= 1);
    wait_until(10, "the oldest record to age", || {
        agent.metric_f64("logferry_buffer_oldest_record_age_seconds") >= 1.0
    });
    let health = agent.get("/health");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["elasticsearch"]["status"], "degraded");
    assert!(
        health["checks"]["elasticsearch"]["detail"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{health}"
    );
    assert_eq!(health["checks"]["tailer"]["status"], "healthy", "{health}");
    assert_eq!(health["checks"]["buffer"]["status"], "healthy", "{health}");
    promtool_check_metrics(&agent.metrics());

    // Back: everything arrives, the numbers settle, health recovers.
    proxy.set(|f| f.status = None);
    assert_eq!(wait_for_count(&es, 150, 30), 150);
    wait_until(10, "health to recover", || {
        agent.get("/health")["status"] == "healthy"
            && agent.metric_f64("logferry_backoff_seconds") == 0.0
            && agent.metric("logferry_buffer_records") == 0
    });
    assert_eq!(
        agent.metric("logferry_documents_total{outcome=\"indexed\"}"),
        150
    );
    assert_eq!(agent.metric("logferry_buffer_oldest_record_age_seconds"), 0);
    let logs = agent.logs();
    assert_eq!(
        logs.matches("bulk request failed").count(),
        1,
        "once, not per retry: {logs}"
    );
    assert!(
        logs.contains("failed_attempts"),
        "the recovery says how often it failed: {logs}"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_filling_buffer_and_paused_reading_show_in_health_and_metrics() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    proxy.set(|f| f.down = true);
    let node = Node::new();
    let mut w = node.writer("shop", "filling", "app", Format::Cri);
    for seq in 0..300 {
        w.json_line(seq).unwrap();
    }
    let agent = Agent::start(&node.config(
        &proxy.url,
        "",
        "chunk_limit_size = \"1KiB\"\nflush_thread_count = 1\nmax_size = \"8KiB\"",
    ));
    wait_until(20, "the buffer check to warn", || {
        agent.get("/health")["checks"]["buffer"]["status"] == "degraded"
    });
    let health = agent.get("/health");
    let detail = health["checks"]["buffer"]["detail"].as_str().unwrap();
    assert!(detail.contains("over 80% full"), "{health}");
    wait_until(10, "the lag to be measured", || {
        agent.metric("logferry_input_lag_bytes") > 50_000
    });
    wait_until(10, "the buffer gauge to show it full", || {
        agent.metric("logferry_buffer_bytes") > 6 * 1024
    });
    assert_eq!(agent.metric("logferry_buffer_max_bytes"), 8 * 1024);
    // Full is not broken: still ready, still alive.
    assert_eq!(agent.get("/ready")["status"], "healthy");
    assert_eq!(health["checks"]["tailer"]["status"], "healthy", "{health}");

    proxy.set(|f| f.down = false);
    assert_eq!(wait_for_count(&es, 300, 60), 300);
    wait_until(10, "the lag and the buffer to drain", || {
        agent.metric("logferry_input_lag_bytes") == 0 && agent.get("/health")["status"] == "healthy"
    });
    assert!(agent.stop().success());
}
