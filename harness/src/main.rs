//! `logferry-demo`: the agent end to end on an embedded default. Starts osmem-server (installing
//! it from PyPI if missing), writes generated container logs, runs the real `logferry` binary on
//! them as a child process until every record is indexed, stops it with SIGTERM as a node would,
//! and prints what got there.
//!
//! It runs the shipped binary rather than linking the agent's library so that what the demo
//! shows is what a node runs, and so that the binary a node runs cannot install anything.

use anyhow::{Context, bail};
use clap::Parser;
use logferry_harness::{Generated, Osmem, crash, generate, http_json};
use rustix::process::{Pid, Signal, kill_process};
use serde_json::json;
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
             (installed from PyPI if missing) and generated container logs; prints what got indexed"
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

/// Starts osmem-server, generates logs, runs the agent until every record is indexed, and
/// prints what got there.
fn run(agent_bin: &Path, lines_per_file: u64) -> anyhow::Result<()> {
    let es = Osmem::start(true)?;
    let dir = tempfile_dir()?;
    let logs = dir.join("var-log");
    let mut generated = generate(&logs, lines_per_file)?;
    generated.records += crash(&logs)?;
    generated.files += 1;
    let config_path = write_config(&dir, &logs, &es.url)?;
    println!("osmem-server (OpenSearch-compatible) at {}", es.url);
    println!(
        "wrote {} records in {} container log files under {}",
        generated.records,
        generated.files,
        logs.display()
    );
    println!("config: {}\n", config_path.display());
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
    let _ = fs::remove_dir_all(&dir);
    Ok(())
}

/// The demo's config: everything default but where the files are, where the server is, an API
/// port nobody else holds, and multiline joining for the Node services' stack traces.
fn write_config(dir: &Path, logs: &Path, es_url: &str) -> anyhow::Result<PathBuf> {
    let config_path = dir.join("logferry.toml");
    let config_text = format!(
        "data_dir = {:?}\n[input]\ninclude = [{:?}]\n[elasticsearch]\nhosts = [{:?}]\n[multiline]\nrules = [\"node\"]\n[api]\nlisten = \"127.0.0.1:0\"\n",
        dir.join("data").display().to_string(),
        logs.join("containers/*.log").display().to_string(),
        es_url,
    );
    fs::write(&config_path, &config_text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(config_path)
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
        count = es.count("logs-*")?;
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
        &format!("{}/logs-*/_search", es.url),
        Some(&json!({"size": 1, "query": {"term": {"seq": 42}}})),
    )?;
    if let Some(hit) = sample["hits"]["hits"].get(0) {
        println!(
            "\na sample document (_id {}):\n{}",
            hit["_id"],
            serde_json::to_string_pretty(&hit["_source"])?
        );
    }
    let joined = http_json(
        "POST",
        &format!("{}/logs-*/_search", es.url),
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
        &format!("{}/logs-*/_search", es.url),
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
