//! `logferry top` against a real agent shipping to osmem-server: the plain snapshot (`--once`,
//! or stdout not a terminal) and the live view under tmux must show the numbers the agent's own
//! `/metrics` and `/health` give, and the view must quit on `q`.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::proxy::FaultProxy;
use support::*;

/// A buffer limit the output must show as it is configured.
const MAX_SIZE: &str = "max_size = \"64MiB\"";

/// A route besides the default, so that the routes table shows.
const BILLING_ROUTE: &str = "[[route]]\nname = \"billing\"\nindex = \"billing-%Y\"\n\
                             when.namespaces = [\"billing\"]\n";

/// An agent that has shipped `shop` lines to the default index and `billing` lines through
/// the billing route, all acknowledged.
fn shipped_agent(node: &Node, es: &Osmem, shop: u64, billing: u64) -> Agent {
    let config = node.config(&es.url, "", MAX_SIZE);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(BILLING_ROUTE);
    std::fs::write(&config, text).expect("write config");
    let agent = Agent::start(&config);
    write_lines(node, "web", 0..shop);
    let mut w = node.writer("billing", "invoices", "app", Format::Cri);
    for seq in 0..billing {
        w.json_line(seq).expect("write a line");
    }
    wait_until_shipped(&agent, shop + billing);
    agent
}

/// Lines from a new pod `pod` in `shop`.
fn write_lines(node: &Node, pod: &str, seqs: std::ops::Range<u64>) {
    let mut w = node.writer("shop", pod, "app", Format::Cri);
    for seq in seqs {
        w.json_line(seq).expect("write a line");
    }
}

fn wait_until_shipped(agent: &Agent, n: u64) {
    wait_until(60, &format!("{n} documents indexed"), || {
        agent.metric("logferry_documents_total{outcome=\"indexed\"}") == n
            && agent.metric("logferry_buffer_records") == 0
    });
}

fn top(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logferry"))
        .arg("top")
        .args(args)
        .output()
        .expect("run logferry top")
}

/// The number after `total ` on the first line of `screen` that shows `label`.
fn total(screen: &str, label: &str) -> Option<u64> {
    screen.lines().find_map(|line| {
        let at = line.find(label)?;
        let after = line[at..].split_once("total ")?.1;
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Whether `screen` has a line with the check's name followed by its status.
fn shows_check(screen: &str, name: &str, status: &str) -> bool {
    screen.lines().any(|line| {
        line.split_once(name)
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(status))
    })
}

/// Every check `/health` reports, with its status.
fn health_checks(agent: &Agent) -> Vec<(String, String)> {
    let health = agent.get("/health");
    let checks = health["checks"].as_object().expect("checks in /health");
    assert!(checks.len() >= 5, "{health}");
    checks
        .iter()
        .map(|(name, c)| (name.clone(), c["status"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// What a person compares: lines in, documents indexed, the buffer limit, the routes, and the
/// health of every check, as `/metrics` and `/health` say.
fn assert_shows_the_agent(screen: &str, agent: &Agent) {
    let indexed = agent.metric("logferry_documents_total{outcome=\"indexed\"}");
    assert_eq!(total(screen, "indexed"), Some(indexed), "{screen}");
    let lines = agent.metric("logferry_input_lines_total");
    assert_eq!(total(screen, "lines in"), Some(lines), "{screen}");
    assert_eq!(agent.metric("logferry_buffer_max_bytes"), 64 << 20);
    assert!(screen.contains("of 64.0 MiB"), "{screen}");
    for (name, status) in health_checks(agent) {
        assert!(
            shows_check(screen, &name, &status),
            "{name} {status}:\n{screen}"
        );
    }
}

#[test]
fn once_prints_the_numbers_metrics_and_health_give() {
    let es = osmem();
    let node = Node::new();
    let agent = shipped_agent(&node, &es, 40, 20);
    let url = format!("http://{}", agent.api);

    // `--once`, and also a pipe for stdout without it: both print one plain snapshot.
    for args in [
        vec!["--once", "--url", url.as_str()],
        vec!["--url", url.as_str()],
    ] {
        let out = top(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let interval: f64 = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix(&format!("logferry top: {url}, rates over ")))
            .and_then(|l| l.strip_suffix('s')?.parse().ok())
            .unwrap_or_else(|| panic!("the first line names the agent and the interval: {text}"));
        // One second apart, plus what a busy machine adds to a scrape.
        assert!((1.0..30.0).contains(&interval), "{text}");
        assert_shows_the_agent(&text, &agent);
        assert_eq!(total(&text, "documents duplicate"), Some(0), "{text}");
        assert_eq!(total(&text, "documents dead-lettered"), Some(0), "{text}");
        for route in ["default", "billing"] {
            let series = format!("logferry_route_records_total{{route=\"{route}\"}}");
            assert_eq!(
                total(&text, &format!("route {route}")),
                Some(agent.metric(&series)),
                "{text}"
            );
        }
        assert_eq!(total(&text, "route billing"), Some(20), "{text}");
        // Idle since everything was shipped: no requests to take a latency from.
        assert!(
            text.contains("bulk latency             p50 –  p99 –"),
            "{text}"
        );
    }
}

#[test]
fn once_shows_a_refusing_cluster_as_degraded_with_its_reason_and_the_waiting_records() {
    let es = osmem();
    let proxy = FaultProxy::start(&es.url);
    let node = Node::new();
    let agent = Agent::start(&node.config(&proxy.url, "", MAX_SIZE));
    proxy.set(|f| f.status = Some(503));
    write_lines(&node, "web", 0..30);
    wait_until(30, "the records to wait in the buffer", || {
        agent.metric("logferry_buffer_records") == 30
            && agent.metric_f64("logferry_buffer_oldest_record_age_seconds") >= 1.0
            && agent.get("/health")["checks"]["elasticsearch"]["status"] == "degraded"
    });
    let out = top(&["--once", "--url", &format!("http://{}", agent.api)]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("health degraded\n"), "{text}");
    let es_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("elasticsearch"))
        .unwrap_or_default();
    assert!(
        es_line.contains("degraded") && es_line.contains("503"),
        "{text}"
    );
    assert!(text.contains(", 30 records, oldest "), "{text}");
    assert!(!text.contains("oldest none"), "{text}");
    assert_eq!(total(&text, "documents indexed"), Some(0), "{text}");
    let retried = agent.metric("logferry_documents_total{outcome=\"retried\"}");
    let shown = total(&text, "documents retried").expect("retried shown");
    // Retries go on while top looks: what it shows lies between zero and what came after.
    assert!(
        shown > 0 && shown <= retried,
        "{shown} of {retried}:\n{text}"
    );
    assert!(!text.contains("backoff none"), "a backoff is shown: {text}");
}

#[test]
fn top_says_when_no_agent_answers_and_exits_1() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = top(&["--once", "--url", &url]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("cannot connect to 127.0.0.1:"), "{said}");
    assert!(out.stdout.is_empty());
}

/// A tmux server of the test's own, its socket in the test's directory, killed when the test
/// ends.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let out = tmux.run(&["new-session", "-d", "-x", "160", "-y", "50", command]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        match Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
        {
            Ok(out) => out,
            Err(e) => panic!(
                "tmux must be installed to test the live view of `logferry top` \
                 (scripts/install-deps installs it; Debian package tmux): {e}"
            ),
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Waits until the view shows `indexed` documents, returning the screen.
fn wait_for_screen(tmux: &Tmux, indexed: u64) -> String {
    let mut screen = String::new();
    wait_until(60, &format!("the view to show {indexed} indexed"), || {
        screen = tmux.screen();
        total(&screen, "indexed") == Some(indexed)
    });
    screen
}

fn exit_file(dir: &Path) -> PathBuf {
    dir.join("top.exit")
}

#[test]
fn the_live_view_shows_what_metrics_say_follows_shipping_and_quits_on_q() {
    let es = osmem();
    let node = Node::new();
    let agent = shipped_agent(&node, &es, 30, 10);
    let exit = exit_file(node.dir.path());
    let command = format!(
        "{bin} top --url http://{api}; echo exit=$? > {exit}",
        bin = env!("CARGO_BIN_EXE_logferry"),
        api = agent.api,
        exit = exit.display()
    );
    let tmux = Tmux::start(node.dir.path(), &command);

    let screen = wait_for_screen(&tmux, 40);
    assert_shows_the_agent(&screen, &agent);
    assert!(screen.contains("billing"), "the routes table:\n{screen}");
    assert!(screen.contains("q quits"), "{screen}");

    // More lines: the view follows, a second at a time.
    write_lines(&node, "web-2", 0..25);
    wait_until_shipped(&agent, 65);
    let screen = wait_for_screen(&tmux, 65);
    assert_eq!(
        total(&screen, "lines in"),
        Some(agent.metric("logferry_input_lines_total")),
        "{screen}"
    );

    tmux.run(&["send-keys", "q"]);
    let mut said = String::new();
    wait_until(20, "logferry top to exit after q", || {
        said = std::fs::read_to_string(&exit).unwrap_or_default();
        !said.is_empty()
    });
    assert_eq!(said.trim(), "exit=0", "{}", tmux.screen());
    let health: Value = agent.get("/health");
    assert!(
        health["status"].is_string(),
        "the agent still answers: {health}"
    );
}
