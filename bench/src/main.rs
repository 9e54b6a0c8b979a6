//! `logferry-bench`: runs the release agent, with its default settings, on generated container
//! logs against a parsing `_bulk` sink on loopback, and prints one row per scenario.
//!
//! Throughput is end to end: from the agent's start (the files are already written) or from the
//! first line written, to the sink's answer to the last item. CPU is the agent's user + system
//! time from /proc; peak RSS is its VmHWM. Run it on an otherwise idle machine; numbers from a
//! busy one are only good as ratios.
//!
//! With `--fluent-bit`, the scenarios where the comparison is fair also run Fluent Bit
//! ([`peer`]), in the same run against the same sink, and a second table sets the two side by side.
//!
//! This file is the run: the options, each scenario [`scenario`] lists measured in a fresh work
//! directory, then the tables ([`table`], [`compare`]).

mod agent;
mod backlog;
mod compare;
mod forward;
mod kafka;
mod logs;
mod multiline;
mod peer;
mod production;
mod reload;
mod row;
mod scenario;
mod sink;
mod steady;
mod table;
mod targets;

use anyhow::{Context, bail};
use clap::Parser;
use peer::{FluentBit, Shipper};
use row::Row;
use scenario::{Comparison, Scenario, scenarios};
use sink::Sink;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Measures logferry end to end and prints a table")]
struct Cli {
    /// The agent binary (default: `logferry` next to this program, i.e. target/release).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Where logs, buffers and checkpoints go. On a real disk: the buffer fsyncs.
    #[arg(long, default_value = "target/bench-work")]
    dir: PathBuf,
    /// Only these scenarios (one-file, kafka-out, many-files, idle-files, idle, catch-up, latency,
    /// steady-1k, steady-10k, wide-lines, multiline, multiline-off, redact, production, reload,
    /// routes, forward-in).
    #[arg(long = "only", value_delimiter = ',')]
    only: Vec<String>,
    /// Multiply every scenario's line count (and the idle and steady runs' lengths) by this.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// A Fluent Bit binary to run the comparable scenarios with as well (one-file, idle,
    /// steady-1k, steady-10k, latency), with bench/fluent-bit.conf.
    #[arg(long = "fluent-bit")]
    fluent_bit: Option<PathBuf>,
    /// Fluent Bit's parsers.conf (default: `conf/parsers.conf` of the binary's build tree,
    /// `OUT/b/bin/fluent-bit` → `OUT/conf/parsers.conf`).
    #[arg(long = "fluent-bit-parsers")]
    fluent_bit_parsers: Option<PathBuf>,
    /// Before each run (each scenario, each agent), write dirty pages back and drop the
    /// kernel's page cache (root only: `/proc/sys/vm/drop_caches`). On the VMs this was
    /// measured on, a run right after a build (as `scripts/bench` does) paid several times more
    /// for the kernel's copies into the page cache (the buffer's writes: 15–19 % of production's
    /// samples instead of 5 %, 3.44–3.66 CPU-s per million lines instead of 2.96–3.14), so
    /// figures differed with what ran before rather than with the agent.
    #[arg(long = "drop-caches")]
    drop_caches: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = match &cli.agent {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory for this program")?
            .join("logferry"),
    };
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release` (scripts/bench does)",
            bin.display()
        );
    }
    let fluent_bit = match &cli.fluent_bit {
        Some(fb) => Some(FluentBit::find(fb, cli.fluent_bit_parsers.as_deref())?),
        None => None,
    };
    let sink = Sink::start()?;
    let scenarios = scenarios(&bin, &sink, cli.scale);
    for name in &cli.only {
        if !scenarios.iter().any(|s| s.name == name) {
            bail!("no scenario {name:?}");
        }
    }
    println!(
        "logferry-bench: {} on {} CPUs, sink at {}\n",
        bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sink.addr
    );
    let (mut rows, mut peers, mut unfair) = (Vec::new(), Vec::new(), Vec::new());
    for s in &scenarios {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == s.name) {
            continue;
        }
        rows.push(measure(s, &Shipper::Logferry(&bin), &sink, &cli)?);
        let Some(fb) = &fluent_bit else { continue };
        match s.fluent_bit {
            Comparison::Unfair(why) => unfair.push((s.name, why)),
            Comparison::Refresh(intervals) => {
                for &refresh_secs in intervals {
                    let fb = FluentBit {
                        refresh_secs,
                        ..fb.clone()
                    };
                    let shipper = Shipper::FluentBit(&fb);
                    peers.push((shipper.label(), measure(s, &shipper, &sink, &cli)?));
                }
            }
        }
    }
    table::print_table(&rows);
    if fluent_bit.is_some() {
        compare::print(&rows, &peers, &unfair);
    }
    Ok(())
}

/// Runs `s` with `shipper` in a fresh work directory under `--dir`.
fn measure(s: &Scenario, shipper: &Shipper, sink: &Sink, cli: &Cli) -> anyhow::Result<Row> {
    let work = cli.dir.join(s.name);
    let _ = std::fs::remove_dir_all(&work);
    if cli.drop_caches {
        drop_caches()?;
    }
    std::fs::create_dir_all(work.join("containers"))?;
    sink.state.reset();
    eprintln!("running {} with {}...", s.name, shipper.label());
    let row = (s.run)(shipper, &work)
        .with_context(|| format!("scenario {} with {}", s.name, shipper.label()))?;
    eprintln!("  {}", row.summary());
    let _ = std::fs::remove_dir_all(&work);
    Ok(row)
}

/// Writes dirty pages back and drops the clean ones (`--drop-caches`).
fn drop_caches() -> anyhow::Result<()> {
    let synced = std::process::Command::new("sync").status()?;
    if !synced.success() {
        bail!("sync failed: {synced}");
    }
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .context("--drop-caches: cannot write /proc/sys/vm/drop_caches (it needs root)")
}
