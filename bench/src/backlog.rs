//! The scenarios that ship a backlog: lines already there when the measurement starts, shipped
//! as fast as the agent can. `one-file`, `many-files` (and `redact`, `routes` and `production`,
//! which add stages to the same kind of start) read files written before the agent starts;
//! `idle-files` writes ten busy files beside a thousand idle ones; `catch-up` drains the disk
//! buffer after an outage; `wide-lines` reads lines of 20,000 keys. Throughput is the backlog
//! over the time to the sink's answer to its last line.

use crate::agent::{self, Agent};
use crate::logs::{self, Files};
use crate::peer::{Setup, Shipper};
use crate::row::{MIB, Row, wait_for};
use crate::sink::Sink;
use anyhow::bail;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Files written before the agent starts, read from their beginning; `setup` is what is set
/// beyond the defaults, `note` what the table says of it.
pub fn files_at_start(
    shipper: &Shipper,
    sink: &Sink,
    work: &Path,
    name: &'static str,
    Files {
        count: files,
        per_file,
        mixed,
    }: Files,
    setup: Setup,
    note: &str,
) -> anyhow::Result<Row> {
    let input_bytes = logs::write_files(&work.join("containers"), 0, files, per_file, mixed)?;
    let records = files as u64 * per_file;
    let mut agent = shipper.start(work, sink.addr, setup)?;
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
        duplicates: sink.state.surplus(records),
        ..Row::default()
    })
}

/// 1,000 files that were written once and stay idle, then 10 busy ones. Memory per watched file
/// is the growth of the agent's resident set between 10 idle files and 1,000, each set shipped
/// and settled, so both points include the same shipping buffers.
pub fn idle_files(bin: &Path, sink: &Sink, work: &Path, per_busy: u64) -> anyhow::Result<Row> {
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
pub fn catch_up(bin: &Path, sink: &Sink, work: &Path, records: u64) -> anyhow::Result<Row> {
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

/// Lines in the wide-lines scenario at scale 1 (~430 MB), and the top-level keys of each.
pub const WIDE_LINES: u64 = 2_000;
const WIDE_KEYS: usize = 20_000;

/// One file of JSON lines with 20,000 top-level keys each (~215 KiB a line, so 14 CRI parts):
/// the cost of a line must grow with its size, not with the square of its keys, or one such
/// pod stalls the tailer that reads every file on the node.
pub fn wide_lines(bin: &Path, sink: &Sink, work: &Path, records: u64) -> anyhow::Result<Row> {
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
