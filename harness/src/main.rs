//! `logferry-demo`: the agent end to end on an embedded default. Starts osmem-server (installing
//! it from PyPI if missing) behind the lifecycle stand-in (osmem-server has no ISM API), writes
//! generated container logs, runs the real `logferry setup` and then the real `logferry` binary
//! on them as a child process until every record is indexed, stops it with SIGTERM as a node
//! would, and prints what got there: the platform's story of an audit event routed to its
//! 7-year index, an e-mail address masked, and the retention policies installed.
//!
//! It runs the shipped binary rather than linking the agent's library so that what the demo
//! shows is what a node runs, and so that the binary a node runs cannot install anything.

use anyhow::{Context, bail};
use clap::Parser;
use logferry_harness::lifecycle::{Cluster, Flavor};
use logferry_harness::{
    CUSTOMER_EMAIL, Generated, Osmem, PAYMENTS, crash, generate, http_json, payments,
};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::{Value, json};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long the agent gets to index every record before the demo gives up.
const INDEX_DEADLINE: Duration = Duration::from_secs(120);
/// How long the agent gets to exit after SIGTERM: its own drain allows bulk requests in flight
/// 10 s, so this is generous.
const STOP_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(
    version,
    about = "Runs the logferry binary end to end on an embedded default: a local osmem-server \
             (installed from PyPI if missing) and generated container logs; prints what got \
             indexed, an audit event in its 7-year index, an e-mail masked and the retention \
             policies installed"
)]
struct Cli {
    /// Lines written per container log file.
    #[arg(long, default_value_t = 2500)]
    lines: u64,
    /// The agent binary to run [default: `logferry` next to this binary].
    #[arg(long)]
    agent: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = agent_path(cli.agent).and_then(|agent| run(&agent, cli.lines));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logferry-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--agent`, or the `logferry` built next to this binary (cargo puts both in one directory);
/// checked before anything starts, so a missing build is named rather than a spawn failing later.
fn agent_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .context("cannot find this binary's path to look for `logferry` next to it")?
            .with_file_name("logferry"),
    };
    if !path.is_file() {
        bail!(
            "no agent binary at {}: build it (cargo build --release -p logferry) or pass --agent PATH",
            path.display()
        );
    }
    Ok(path)
}

/// The indices the demo's config writes: the default's and the audit route's.
const INDICES: &str = "logs-*,audit-*";

/// Starts osmem-server behind the lifecycle stand-in, generates logs, installs templates and
/// policies with `logferry setup`, runs the agent until every record is indexed, and prints
/// what got there.
fn run(agent_bin: &Path, lines_per_file: u64) -> anyhow::Result<()> {
    let es = Osmem::start(true)?;
    // osmem-server answers _bulk, searches and index templates but has no ISM API: the
    // stand-in the tests use answers templates and ISM as OpenSearch 3 does, checking every
    // body against its schema, and passes everything else on to osmem-server.
    let cluster = Cluster::listen(Flavor::OpenSearch3, Some(&es.url))
        .context("cannot start the lifecycle stand-in")?;
    let dir = tempfile_dir()?;
    let logs = dir.join("var-log");
    let mut generated = generate(&logs, lines_per_file)?;
    generated.records += crash(&logs)? + payments(&logs)?;
    generated.files += 2;
    let config_path = write_config(&dir, &logs, &cluster.url)?;
    println!("osmem-server (OpenSearch-compatible) at {}", es.url);
    println!(
        "the lifecycle stand-in at {} (templates and ISM policies as OpenSearch 3 answers them; \
         everything else passed on to osmem-server, which has no ISM API)",
        cluster.url
    );
    println!(
        "wrote {} records in {} container log files under {}",
        generated.records,
        generated.files,
        logs.display()
    );
    println!("config {}:", config_path.display());
    print_indented(&fs::read_to_string(&config_path)?);
    setup(agent_bin, &config_path)?;
    let mut agent = Agent::start(agent_bin, &config_path)?;
    let started = Instant::now();
    let count = wait_until_indexed(&es, &mut agent, &generated)?;
    agent.stop()?;
    let elapsed = started.elapsed();
    println!(
        "\nindexed {count} of {} records in {:.2}s",
        generated.records,
        elapsed.as_secs_f64()
    );
    print_report(&es)?;
    if count != generated.records {
        bail!("expected {} documents, found {count}", generated.records);
    }
    print_story(&es, &cluster)?;
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// The demo's config: defaults but where the files are, where the cluster is, an API port
/// nobody else holds, multiline joining for the Node services' stack traces, the platform's
/// retention and redaction (config/platform.toml), and the audit-events route of
/// docs/routing.md.
fn write_config(dir: &Path, logs: &Path, es_url: &str) -> anyhow::Result<PathBuf> {
    let config_path = dir.join("logferry.toml");
    let config_text = format!(
        r#"data_dir = {data:?}
[input]
include = [{include:?}]
[elasticsearch]
hosts = [{es_url:?}]
index = "logs-%Y.%m.%d"
retention = "90d"
[multiline]
rules = ["node"]
[api]
listen = "127.0.0.1:0"

# Audit events from any pod go to a monthly index kept 7 years (docs/routing.md).
[[route]]
name = "audit-events"
index = "audit-%Y.%m"
retention = "7y"
when.field = {{ path = "log_type", equals = "audit" }}

# Every built-in rule, as config/platform.toml masks PHI, in every field, before the buffer.
[redact]
rules = ["email", "card", "us_ssn", "phone", "jwt", "bearer", "aws_key", "ipv4"]
"#,
        data = dir.join("data").display().to_string(),
        include = logs.join("containers/*.log").display().to_string(),
    );
    fs::write(&config_path, &config_text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(config_path)
}

/// `logferry setup --config <config>`, as the Kubernetes Job runs it before the DaemonSet:
/// its report of each template and policy is printed; a failure fails the demo.
fn setup(agent_bin: &Path, config: &Path) -> anyhow::Result<()> {
    println!("\n$ logferry setup --config {}", config.display());
    let out = Command::new(agent_bin)
        .arg("setup")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} setup", agent_bin.display()))?;
    print_indented(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!(
            "logferry setup failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn print_indented(text: &str) {
    for line in text.lines() {
        println!("  {line}");
    }
}

/// Polls the document count until every generated record is there or the deadline passes;
/// an agent that exits on its own meanwhile fails the demo.
fn wait_until_indexed(es: &Osmem, agent: &mut Agent, generated: &Generated) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < INDEX_DEADLINE {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(status) = agent.exited()? {
            bail!("the agent exited ({status}) before every record was indexed");
        }
        count = es.count(INDICES)?;
        if count >= generated.records {
            break;
        }
    }
    Ok(count)
}

/// The count per index, a sample document, and a record joined from three partial lines.
fn print_report(es: &Osmem) -> anyhow::Result<()> {
    let indices = es.get("/_cat/indices?format=json")?;
    for i in indices.as_array().into_iter().flatten() {
        println!(
            "  index {}: {} documents",
            i["index"].as_str().unwrap_or("?"),
            i["docs.count"].as_str().unwrap_or("?")
        );
    }
    let sample = http_json(
        "POST",
        &format!("{}/{INDICES}/_search", es.url),
        Some(&json!({"size": 10, "query": {"term": {"seq": 42}}})),
    )?;
    // Four pods write a seq 42: the orders API's is the one docs/documents.md follows.
    let orders_api = sample["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["_source"]["kubernetes"]["pod_name"] == "orders-api-7d9f8b6c5-x2bqz");
    if let Some(hit) = orders_api {
        println!(
            "\na sample document in {} (_id {}):\n{}",
            hit["_index"].as_str().unwrap_or("?"),
            hit["_id"],
            serde_json::to_string_pretty(&hit["_source"])?
        );
    }
    let joined = http_json(
        "POST",
        &format!("{}/{INDICES}/_search", es.url),
        Some(&json!({"size": 1, "query": {"match": {"log": "Server.handle"}}})),
    )?;
    if let Some(hit) = joined["hits"]["hits"].get(0) {
        println!(
            "\na record joined from three partial lines:\n{}",
            serde_json::to_string_pretty(&hit["_source"])?
        );
    }
    let trace = http_json(
        "POST",
        &format!("{}/{INDICES}/_search", es.url),
        Some(&json!({"size": 1, "query": {"exists": {"field": "logferry.multiline_lines"}}})),
    )?;
    match trace["hits"]["hits"].get(0) {
        Some(hit) => println!(
            "\na Node crash, {} lines on stderr, as one document ([multiline] rules = [\"node\"]):\n{}",
            hit["_source"]["logferry"]["multiline_lines"],
            serde_json::to_string_pretty(&hit["_source"])?
        ),
        None => anyhow::bail!("the stack trace was not indexed as one document"),
    }
    Ok(())
}

/// The platform's story, each part read back from the cluster: an audit event in its own
/// index, a line's personal data masked (and in no document at all), the retention policies.
fn print_story(es: &Osmem, cluster: &Cluster) -> anyhow::Result<()> {
    print_audit(es)?;
    print_redacted(es)?;
    print_policies(cluster)
}

/// The audit events, which the route `audit-events` sends to the monthly audit index: all of
/// them there, one shown with its index.
fn print_audit(es: &Osmem) -> anyhow::Result<()> {
    let written = PAYMENTS
        .iter()
        .filter(|l| l.contains(r#""log_type":"audit""#))
        .count();
    let found = http_json(
        "POST",
        &format!("{}/audit-*/_search", es.url),
        Some(&json!({"size": 100, "query": {"match_all": {}}})),
    )?;
    let hits = found["hits"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if hits.len() != written || !hits.iter().all(|h| h["_source"]["log_type"] == "audit") {
        bail!(
            "expected the {written} audit events, and only them, in audit-*; found {} documents",
            hits.len()
        );
    }
    let Some(hit) = hits
        .iter()
        .find(|h| h["_source"]["event"] == "refund.approved")
    else {
        bail!("the audit event refund.approved is not in audit-*");
    };
    println!(
        "\nan audit event ({written} in all), routed by [[route]] audit-events to index {} (kept 7y):\n{}",
        hit["_index"].as_str().unwrap_or("?"),
        serde_json::to_string_pretty(&hit["_source"])?
    );
    Ok(())
}

/// The line with an e-mail address, an SSN and a card number, as written and as indexed; and
/// every indexed document read back to show none of those values reached the index.
fn print_redacted(es: &Osmem) -> anyhow::Result<()> {
    let Some(written) = PAYMENTS.iter().find(|l| l.contains(CUSTOMER_EMAIL)) else {
        bail!("the generated logs have no line with {CUSTOMER_EMAIL}");
    };
    let original: Value = serde_json::from_str(written)?;
    let secrets = [
        CUSTOMER_EMAIL,
        original["customer"]["ssn"]
            .as_str()
            .unwrap_or(CUSTOMER_EMAIL),
        original["customer"]["card"]
            .as_str()
            .unwrap_or(CUSTOMER_EMAIL),
    ];
    let docs = es.all_documents(INDICES)?;
    let Some((_, indexed)) = docs
        .iter()
        .find(|(_, d)| d["refund_id"] == "rf-20418" && d["level"] == "warn")
    else {
        bail!("the line with personal data was not indexed");
    };
    println!(
        "\na line with personal data, as written:\n  {written}\nand as indexed ([redact], every built-in rule):\n{}",
        serde_json::to_string_pretty(indexed)?
    );
    let leaked = docs
        .iter()
        .filter(|(_, d)| {
            let text = d.to_string();
            secrets.iter().any(|s| text.contains(s))
        })
        .count();
    println!(
        "{} in {leaked} of {} indexed documents",
        secrets.join(", "),
        docs.len()
    );
    if leaked > 0 {
        bail!("{leaked} indexed documents hold a value [redact] should have masked");
    }
    Ok(())
}

/// The retention policies `logferry setup` installed, as the cluster's ISM API lists them; the
/// stand-in's schema checks must have found nothing to refuse.
fn print_policies(cluster: &Cluster) -> anyhow::Result<()> {
    let listed = http_json(
        "GET",
        &format!("{}/_plugins/_ism/policies", cluster.url),
        None,
    )?;
    let policies = listed["policies"].as_array().cloned().unwrap_or_default();
    if policies.is_empty() {
        bail!("no retention policy was installed");
    }
    println!("\nretention policies installed (GET _plugins/_ism/policies):");
    for p in &policies {
        let policy = &p["policy"];
        let patterns: Vec<&str> = policy["ism_template"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["index_patterns"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let delete_at = policy["states"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|st| st["transitions"].as_array().into_iter().flatten())
            .find(|t| t["state_name"] == "delete")
            .and_then(|t| t["conditions"]["min_index_age"].as_str())
            .unwrap_or("never");
        println!(
            "  {}: indices {} deleted at min_index_age {delete_at}\n    \"{}\"",
            p["_id"].as_str().unwrap_or("?"),
            patterns.join(", "),
            policy["description"].as_str().unwrap_or("")
        );
    }
    let problems = cluster.problems();
    if !problems.is_empty() {
        bail!("the stand-in refused bodies OpenSearch would refuse: {problems:#?}");
    }
    println!(
        "  (osmem-server has no ISM API: these are the agent's policies as the lifecycle stand-in\n   \
         stored them, each checked against OpenSearch 3's schema; no real OpenSearch ran them)"
    );
    Ok(())
}

/// The agent as a child process; killed if the demo fails before stopping it.
struct Agent {
    child: Child,
    /// Set once the child has been waited for, so `Drop` does not signal a reused pid.
    reaped: bool,
}

impl Agent {
    /// Runs `logferry --config <config>`; its self logs go to this process's stderr.
    fn start(bin: &Path, config: &Path) -> anyhow::Result<Agent> {
        let mut command = Command::new(bin);
        command.arg("--config").arg(config).stdin(Stdio::null());
        // The agent goes when the demo goes, however it goes (SIGTERM from `timeout`, SIGKILL):
        // `Drop` runs only on an unwind, and an orphaned agent would tail the temp dir for ever.
        // SAFETY: the closure runs in the forked child before exec and only makes one prctl
        // call, which is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
                    .map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the agent {}", bin.display()))?;
        Ok(Agent {
            child,
            reaped: false,
        })
    }

    /// The exit status, if the agent has exited.
    fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let status = self.child.try_wait().context("cannot check on the agent")?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// SIGTERM, as the kubelet stops a pod, then waits for a clean exit: status 0 within
    /// [`STOP_DEADLINE`], or the demo fails.
    fn stop(&mut self) -> anyhow::Result<()> {
        kill_process(Pid::from_child(&self.child), Signal::TERM)
            .context("cannot send SIGTERM to the agent")?;
        let asked = Instant::now();
        while asked.elapsed() < STOP_DEADLINE {
            if let Some(status) = self.exited()? {
                if !status.success() {
                    bail!("the agent exited with {status} after SIGTERM, not 0");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the agent did not exit within {}s of SIGTERM",
            STOP_DEADLINE.as_secs()
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("logferry-demo-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
