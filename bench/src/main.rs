//! `logferry-bench`: runs the release agent, with its default settings, on generated container
//! logs against a parsing `_bulk` sink on loopback, and prints one row per scenario.
//!
//! Throughput is end to end: from the agent's start (the files are already written) or from the
//! first line written, to the sink's answer to the last item. CPU is the agent's user + system
//! time from /proc; peak RSS is its VmHWM. Run it on an otherwise idle machine; numbers from a
//! busy one are only good as ratios.

mod agent;
mod logs;
mod multiline;
mod production;
mod reload;
mod sink;

use agent::Agent;
use anyhow::{Context, bail};
use clap::Parser;
pub(crate) use logs::Files;
use sink::Sink;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Measures logferry end to end and prints a table")]
struct Cli {
    /// The agent binary (default: `logferry` next to this program, i.e. target/release).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Where logs, buffers and checkpoints go. On a real disk: the buffer fsyncs.
    #[arg(long, default_value = "target/bench-work")]
    dir: PathBuf,
    /// Only these scenarios (one-file, many-files, idle-files, catch-up, latency, wide-lines,
    /// multiline, multiline-off, routes, redact, production, reload).
    #[arg(long = "only", value_delimiter = ',')]
    only: Vec<String>,
    /// Multiply every scenario's line count (and the latency run's length) by this.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

/// One measured scenario.
#[derive(Default)]
struct Row {
    name: &'static str,
    records: u64,
    input_bytes: u64,
    seconds: f64,
    cpu: f64,
    peak_rss: u64,
    latency: Option<(f64, f64)>,
    note: String,
    duplicates: u64,
}

const MIB: f64 = 1024.0 * 1024.0;

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
    let sink = Sink::start()?;
    let scenarios = scenarios(&bin, &sink, cli.scale);
    for name in &cli.only {
        if !scenarios.iter().any(|(s, _)| s == name) {
            bail!("no scenario {name:?}");
        }
    }
    println!(
        "logferry-bench: {} on {} CPUs, sink at {}\n",
        bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sink.addr
    );
    let mut rows = Vec::new();
    for (name, run) in &scenarios {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == name) {
            continue;
        }
        let work = cli.dir.join(name);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("containers"))?;
        sink.state.reset();
        eprintln!("running {name}...");
        let row = run(&work).with_context(|| format!("scenario {name}"))?;
        eprintln!("  {}", row.summary());
        rows.push(row);
        let _ = std::fs::remove_dir_all(&work);
    }
    print_table(&rows);
    Ok(())
}

/// A scenario: its name, and the run that measures it in a work directory.
type Scenario<'a> = (&'static str, Box<dyn Fn(&Path) -> anyhow::Result<Row> + 'a>);

/// Every scenario, in the order they run, with their line counts multiplied by `scale`.
fn scenarios<'a>(bin: &'a Path, sink: &'a Sink, scale: f64) -> Vec<Scenario<'a>> {
    let n = move |lines: u64| ((lines as f64 * scale).round() as u64).max(10);
    // A million lines in one CRI file, with `extra` config.
    let one_file = move |name: &'static str, extra: &'static str, note: &'static str| {
        Box::new(move |w: &Path| {
            files_at_start(bin, sink, w, name, Files::cri(1, n(1_000_000)), extra, note)
        }) as Box<dyn Fn(&Path) -> anyhow::Result<Row> + 'a>
    };
    vec![
        ("one-file", one_file("one-file", "", "")),
        (
            "many-files",
            Box::new(move |w| {
                files_at_start(
                    bin,
                    sink,
                    w,
                    "many-files",
                    Files::mixed(100, n(10_000)),
                    "",
                    "",
                )
            }),
        ),
        (
            "idle-files",
            Box::new(move |w| idle_files(bin, sink, w, n(100_000))),
        ),
        (
            "catch-up",
            Box::new(move |w| catch_up(bin, sink, w, n(1_000_000))),
        ),
        (
            "latency",
            Box::new(move |w| latency(bin, sink, w, ((30.0 * scale).round() as u64).max(5))),
        ),
        (
            "wide-lines",
            Box::new(move |w| wide_lines(bin, sink, w, n(WIDE_LINES))),
        ),
        (
            "multiline",
            Box::new(move |w| multiline::run(bin, sink, w, n(1_000_000), true)),
        ),
        (
            "multiline-off",
            Box::new(move |w| multiline::run(bin, sink, w, n(1_000_000), false)),
        ),
        (
            "redact",
            one_file("redact", REDACT, "; the default redaction rules"),
        ),
        (
            "production",
            Box::new(move |w| production::run(bin, sink, w, n(10_000))),
        ),
        (
            "reload",
            Box::new(move |w| reload::run(bin, sink, w, n(1_000_000))),
        ),
        (
            "routes",
            one_file("routes", ROUTES, "; 5 routes, 3 on a field"),
        ),
    ]
}

/// `routes`: `one-file`'s file with five routes, three of them on a field of the document
/// (one a regular expression over every line's `path`), none taking the shop's lines but the
/// 2 % that are errors: every record is tried against all of them, the worst case of a route
/// list, and every record is shipped, so the CPU per line compares with `one-file`'s.
const ROUTES: &str = r#"
[[route]]
name = "audit"
index = "audit-%Y.%m"
when.namespaces = ["payments", "auth-*"]
[[route]]
name = "audit-events"
index = "audit-%Y.%m"
when.field = { path = "log_type", equals = "audit" }
[[route]]
name = "probes"
drop = true
when.field = { path = "path", matches = '^/(livez|readyz)' }
[[route]]
name = "errors"
index = "errors-%Y.%m.%d"
when.field = { path = "status", equals = 500 }
[[route]]
name = "billing"
index = "billing-%Y.%m.%d"
when.namespaces = ["billing"]
"#;

/// `redact`: `one-file`'s file with the default redaction rules on the default fields.
const REDACT: &str = "\n[redact]\nrules = [\"email\", \"card\", \"us_ssn\", \"phone\", \"jwt\", \"bearer\", \"aws_key\", \"ipv4\"]\n";

/// Files written before the agent starts, read from their beginning; `extra` is config added
/// to the defaults, `note` what the table says of it.
pub(crate) fn files_at_start(
    bin: &Path,
    sink: &Sink,
    work: &Path,
    name: &'static str,
    Files {
        count: files,
        per_file,
        mixed,
    }: Files,
    extra: &str,
    note: &str,
) -> anyhow::Result<Row> {
    let input_bytes = logs::write_files(&work.join("containers"), 0, files, per_file, mixed)?;
    let records = files as u64 * per_file;
    let mut agent = Agent::start_with(bin, work, sink.addr, extra)?;
    let done = wait_for(sink, &mut agent, records, Duration::from_secs(900))?;
    let usage = agent.usage()?;
    let started = agent.started;
    agent.stop()?;
    Ok(Row {
        name,
        records,
        input_bytes,
        seconds: (done - started).as_secs_f64(),
        cpu: usage.cpu,
        peak_rss: usage.peak_rss,
        note: format!(
            "{files} file(s){}{}",
            if mixed { ", CRI and docker" } else { ", CRI" },
            note
        ),
        duplicates: sink.state.duplicates.load(Ordering::SeqCst),
        ..Row::default()
    })
}

/// 1,000 files that were written once and stay idle, then 10 busy ones. Memory per watched file
/// is the growth of the agent's resident set between 10 idle files and 1,000, each set shipped
/// and settled, so both points include the same shipping buffers.
fn idle_files(bin: &Path, sink: &Sink, work: &Path, per_busy: u64) -> anyhow::Result<Row> {
    const IDLE: usize = 1000;
    const FIRST: usize = 10;
    let dir = work.join("containers");
    let mut agent = Agent::start(bin, work, sink.addr)?;
    agent.wait_ready(Duration::from_secs(30))?;
    let settled = |files: usize, agent: &mut Agent| -> anyhow::Result<agent::Usage> {
        wait_for(sink, agent, files as u64 * 10, Duration::from_secs(300))?;
        std::thread::sleep(Duration::from_secs(3));
        agent.usage()
    };
    logs::write_files(&dir, 0, FIRST, 10, true)?;
    let few = settled(FIRST, &mut agent)?;
    logs::write_files(&dir, FIRST, IDLE - FIRST, 10, true)?;
    let idle = settled(IDLE, &mut agent)?;
    let per_file = idle.rss.saturating_sub(few.rss) as f64 / (IDLE - FIRST) as f64;
    let accepted = sink.state.accepted.load(Ordering::SeqCst);
    let start = Instant::now();
    let input_bytes = logs::write_files(&dir, IDLE, 10, per_busy, true)?;
    let done = wait_for(
        sink,
        &mut agent,
        accepted + 10 * per_busy,
        Duration::from_secs(900),
    )?;
    let usage = agent.usage()?;
    agent.stop()?;
    Ok(Row {
        name: "idle-files",
        records: 10 * per_busy,
        input_bytes,
        seconds: (done - start).as_secs_f64(),
        cpu: usage.cpu - idle.cpu,
        peak_rss: usage.peak_rss,
        note: format!(
            "1,000 idle + 10 busy files; RSS {:.1} MiB with 10 idle files, {:.1} MiB with 1,000 = {:.1} KiB per watched file",
            few.rss as f64 / MIB,
            idle.rss as f64 / MIB,
            per_file / 1024.0
        ),
        duplicates: sink.state.duplicates.load(Ordering::SeqCst),
        ..Row::default()
    })
}

/// The cluster is down (every bulk request gets 503) while the agent buffers `records` lines on
/// disk; then it comes back. Measured: the drain, from the first accepted request to the last.
fn catch_up(bin: &Path, sink: &Sink, work: &Path, records: u64) -> anyhow::Result<Row> {
    sink.state.down.store(true, Ordering::SeqCst);
    let input_bytes = logs::write_files(&work.join("containers"), 0, 1, records, false)?;
    let mut agent = Agent::start(bin, work, sink.addr)?;
    let until = Instant::now() + Duration::from_secs(900);
    loop {
        let buffered = agent.metric("logferry_buffer_records").unwrap_or(0.0);
        if buffered as u64 >= records {
            break;
        }
        if Instant::now() > until {
            bail!("only {buffered} of {records} records were buffered");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let buffer_bytes = agent.metric("logferry_buffer_bytes")?;
    let before = agent.usage()?;
    let back = Instant::now();
    sink.state.down.store(false, Ordering::SeqCst);
    let done = wait_for(sink, &mut agent, records, Duration::from_secs(900))?;
    let usage = agent.usage()?;
    agent.stop()?;
    let first = sink
        .state
        .first_ok
        .lock()
        .ok()
        .and_then(|f| *f)
        .unwrap_or(back);
    Ok(Row {
        name: "catch-up",
        records,
        input_bytes,
        seconds: (done - first).as_secs_f64(),
        cpu: usage.cpu - before.cpu,
        peak_rss: usage.peak_rss,
        note: format!(
            "{:.0} MiB buffered; first retry {:.1} s after the cluster came back (backoff)",
            buffer_bytes / MIB,
            (first - back).as_secs_f64()
        ),
        duplicates: sink.state.duplicates.load(Ordering::SeqCst),
        ..Row::default()
    })
}

/// A steady 10,000 lines/s into one file for `seconds`; each line's age when acknowledged.
fn latency(bin: &Path, sink: &Sink, work: &Path, seconds: u64) -> anyhow::Result<Row> {
    const RATE: u64 = 10_000;
    let mut agent = Agent::start(bin, work, sink.addr)?;
    agent.wait_ready(Duration::from_secs(30))?;
    sink.state.record_latency.store(true, Ordering::SeqCst);
    let (mut w, _) = logs::Writer::create(&work.join("containers"), 0, logs::Format::Cri)?;
    let before = agent.usage()?;
    let start = Instant::now();
    let records = RATE * seconds;
    while w.records < records {
        let due = (start.elapsed().as_secs_f64() * RATE as f64) as u64;
        while w.records < due.min(records) {
            w.record(chrono::Utc::now())?;
        }
        w.flush()?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let done = wait_for(sink, &mut agent, records, Duration::from_secs(300))?;
    let usage = agent.usage()?;
    agent.stop()?;
    let mut ages = std::mem::take(
        &mut *sink
            .state
            .latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    ages.sort_unstable();
    let pct = |p: f64| {
        ages.get(((ages.len() as f64 * p) as usize).min(ages.len().saturating_sub(1)))
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    Ok(Row {
        name: "latency",
        records,
        input_bytes: w.bytes,
        seconds: (done - start).as_secs_f64(),
        cpu: usage.cpu - before.cpu,
        peak_rss: usage.peak_rss,
        latency: Some((pct(0.50), pct(0.99))),
        note: format!(
            "steady {RATE} lines/s for {seconds} s; max {:.0} ms",
            pct(1.0)
        ),
        duplicates: sink.state.duplicates.load(Ordering::SeqCst),
    })
}

/// Lines in the wide-lines scenario at scale 1 (~430 MB), and the top-level keys of each.
const WIDE_LINES: u64 = 2_000;
const WIDE_KEYS: usize = 20_000;
/// The target for wide lines, per MB read: a few times what ordinary lines cost per byte.
const WIDE_CPU_PER_MB: f64 = 0.05;

/// One file of JSON lines with 20,000 top-level keys each (~215 KiB a line, so 14 CRI parts):
/// the cost of a line must grow with its size, not with the square of its keys, or one such
/// pod stalls the tailer that reads every file on the node.
fn wide_lines(bin: &Path, sink: &Sink, work: &Path, records: u64) -> anyhow::Result<Row> {
    let input_bytes = logs::write_wide_file(&work.join("containers"), records, WIDE_KEYS)?;
    let mut agent = Agent::start(bin, work, sink.addr)?;
    let done = wait_for(sink, &mut agent, records, Duration::from_secs(1800))?;
    let usage = agent.usage()?;
    let started = agent.started;
    agent.stop()?;
    Ok(Row {
        name: "wide-lines",
        records,
        input_bytes,
        seconds: (done - started).as_secs_f64(),
        cpu: usage.cpu,
        peak_rss: usage.peak_rss,
        note: format!(
            "1 file, CRI, {WIDE_KEYS} keys a line; {:.4} CPU-s per MB",
            usage.cpu / (input_bytes as f64 / 1e6)
        ),
        duplicates: sink.state.duplicates.load(Ordering::SeqCst),
        ..Row::default()
    })
}

/// Waits until the sink has accepted `n` distinct documents; returns when the last was answered.
pub(crate) fn wait_for(
    sink: &Sink,
    agent: &mut Agent,
    n: u64,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let until = Instant::now() + timeout;
    loop {
        let got = sink.state.accepted.load(Ordering::SeqCst);
        if got >= n {
            break;
        }
        if Instant::now() > until {
            bail!("the sink has {got} of {n} documents after {timeout:?}");
        }
        if let Ok(Some(status)) = agent.exited() {
            bail!("the agent exited ({status}) with {got} of {n} documents shipped");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let malformed = sink.state.malformed.load(Ordering::SeqCst);
    if malformed > 0 {
        bail!("the sink found {malformed} malformed documents");
    }
    sink.state
        .last_ack
        .lock()
        .ok()
        .and_then(|l| *l)
        .context("no acknowledgement recorded")
}

impl Row {
    fn lines_per_s(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    fn cpu_per_million(&self) -> f64 {
        self.cpu / (self.records as f64 / 1e6)
    }
    fn summary(&self) -> String {
        format!(
            "{} lines in {:.2} s = {:.0} lines/s, {:.2} CPU-s per 1M lines, peak RSS {:.1} MiB{}",
            self.records,
            self.seconds,
            self.lines_per_s(),
            self.cpu_per_million(),
            self.peak_rss as f64 / MIB,
            self.latency
                .map(|(p50, p99)| format!(", p50 {p50:.1} ms, p99 {p99:.1} ms"))
                .unwrap_or_default()
        )
    }
}

/// The results as a Markdown table, then each target the README sets, met or missed.
fn print_table(rows: &[Row]) {
    print_rows(rows);
    println!();
    for (what, ok, value) in targets(rows) {
        println!("{} {what}: {value}", if ok { "met   " } else { "MISSED" });
    }
}

fn print_rows(rows: &[Row]) {
    println!(
        "| scenario | lines | input MB | seconds | lines/s | MB/s | CPU-s per 1M lines | peak RSS MiB | p50 / p99 ms | duplicates | notes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.0} | {:.1} | {:.2} | {:.1} | {} | {} | {} |",
            r.name,
            r.records,
            r.input_bytes as f64 / 1e6,
            r.seconds,
            r.lines_per_s(),
            r.input_bytes as f64 / 1e6 / r.seconds,
            r.cpu_per_million(),
            r.peak_rss as f64 / MIB,
            r.latency
                .map(|(a, b)| format!("{a:.1} / {b:.1}"))
                .unwrap_or_else(|| "–".into()),
            r.duplicates,
            r.note
        );
    }
}

/// Each target as (what it asks, whether it is met, the measured value).
fn targets(rows: &[Row]) -> Vec<(String, bool, String)> {
    let get = |n: &str| rows.iter().find(|r| r.name == n);
    let mut checks = Vec::new();
    // Wide lines are ~700 times the bytes of a usual line: they are held to a cost per byte.
    for r in rows
        .iter()
        .filter(|r| !["latency", "wide-lines", "production"].contains(&r.name))
    {
        checks.push((
            format!("{}: ≤ 4 CPU-s per 1M lines", r.name),
            r.cpu_per_million() <= 4.0,
            format!("{:.2}", r.cpu_per_million()),
        ));
    }
    // Every stage on: the production node's budget.
    if let Some(r) = get("production") {
        checks.push((
            "production: ≤ 5 CPU-s per 1M lines".into(),
            r.cpu_per_million() <= 5.0,
            format!("{:.2}", r.cpu_per_million()),
        ));
    }
    if let Some(r) = get("one-file") {
        checks.push((
            "one-file: ≥ 250k lines/s".into(),
            r.lines_per_s() >= 250_000.0,
            format!("{:.0}", r.lines_per_s()),
        ));
    }
    for (n, limit) in [
        ("one-file", 32.0),
        ("many-files", 32.0),
        ("idle-files", 64.0),
        ("production", 40.0),
    ] {
        if let Some(r) = get(n) {
            let mib = r.peak_rss as f64 / MIB;
            checks.push((
                format!("{n}: peak RSS ≤ {limit} MiB"),
                mib <= limit,
                format!("{mib:.1} MiB"),
            ));
        }
    }
    if let Some(r) = get("wide-lines") {
        let per_mb = r.cpu / (r.input_bytes as f64 / 1e6);
        checks.push((
            format!("wide-lines: ≤ {WIDE_CPU_PER_MB} CPU-s per MB"),
            per_mb <= WIDE_CPU_PER_MB,
            format!("{per_mb:.4}"),
        ));
    }
    ratios(&get, &mut checks);
    if let Some((_, p99)) = get("latency").and_then(|r| r.latency) {
        checks.push((
            "latency: p99 ≤ 100 ms at 10k lines/s".into(),
            p99 <= 100.0,
            format!("{p99:.1} ms"),
        ));
    }
    for r in rows.iter().filter(|r| r.duplicates > 0) {
        checks.push((
            format!("{}: no duplicates", r.name),
            false,
            r.duplicates.to_string(),
        ));
    }
    checks
}

/// Stages held to a ratio of the same file's cost without them.
fn ratios<'r>(get: &impl Fn(&str) -> Option<&'r Row>, checks: &mut Vec<(String, bool, String)>) {
    for (stage, without, limit) in [
        ("multiline", "multiline-off", 1.15),
        ("routes", "one-file", 1.10),
        ("reload", "one-file", 1.10),
        ("redact", "one-file", 1.25),
    ] {
        if let (Some(on), Some(off)) = (get(stage), get(without)) {
            let ratio = on.cpu_per_million() / off.cpu_per_million();
            checks.push((
                format!("{stage}: CPU-s per 1M lines ≤ {limit:.2} × {without}"),
                ratio <= limit,
                format!(
                    "{:.2} vs {:.2} = {ratio:.2} ×",
                    on.cpu_per_million(),
                    off.cpu_per_million()
                ),
            ));
        }
    }
}
