//! The scenarios of a node as most nodes are: `idle` (files written once and then nothing
//! happening) and the steady rates (`steady-1k`, `steady-10k`, and `latency` with a short flush
//! interval), where an application writes a few lines every few milliseconds. What they measure
//! is the cost of being there rather than of a burst: CPU per minute of quiet, CPU per line at a
//! rate the agent could take many times over, and how old a line is when it is acknowledged.
//! Each takes a [`Shipper`], so Fluent Bit runs them the same way.

use crate::logs::{self, Writer};
use crate::peer::{Setup, Shipper};
use crate::row::{MIB, Row, wait_for};
use crate::sink::Sink;
use anyhow::bail;
use chrono::Utc;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Files in `idle`, and the lines each was written with.
const IDLE_FILES: usize = 500;
const IDLE_LINES: u64 = 10;

/// How long the agent is left after its last acknowledgement before the quiet is measured: its
/// checkpoints and position DB are written within a few seconds of the last batch.
const SETTLE: Duration = Duration::from_secs(5);

/// How often the steady writer writes: an application serving requests writes a few lines at a
/// time, not one line a second nor one write a line.
const BURST_EVERY: Duration = Duration::from_millis(5);

/// [`IDLE_FILES`] files written before the agent starts (so Fluent Bit finds them whatever its
/// `Refresh_Interval`), shipped and settled; then `seconds` of nothing written: the agent's CPU
/// over that time and the memory it holds at its end.
pub fn idle(shipper: &Shipper, sink: &Sink, work: &Path, seconds: u64) -> anyhow::Result<Row> {
    let input_bytes =
        logs::write_files(&work.join("containers"), 0, IDLE_FILES, IDLE_LINES, false)?;
    let records = IDLE_FILES as u64 * IDLE_LINES;
    let mut agent = shipper.start(work, sink.addr, Setup::default())?;
    wait_for(sink, &mut agent, records, Duration::from_secs(300))?;
    std::thread::sleep(SETTLE);
    let threads_before = agent.thread_cpu()?;
    let start = Instant::now();
    // Each thread's time, read every second: a thread that ends in the window (the runtime's
    // blocking pool lets an idle one go after 10 s) is counted up to its last reading.
    let mut last = threads_before.clone();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(
            Duration::from_secs(1).min(Duration::from_secs(seconds) - start.elapsed()),
        );
        last.extend(agent.thread_cpu()?);
    }
    let usage = agent.usage()?;
    let quiet = start.elapsed().as_secs_f64();
    if let Ok(Some(status)) = agent.exited() {
        bail!("the agent exited ({status}) while idle");
    }
    agent.stop()?;
    let ns: u64 = last
        .iter()
        .map(|(t, now)| now.saturating_sub(*threads_before.get(t).unwrap_or(&0)))
        .sum();
    let cpu = ns as f64 / 1e9;
    Ok(Row {
        name: "idle",
        input_bytes,
        seconds: quiet,
        cpu,
        peak_rss: usage.peak_rss,
        rss: usage.rss,
        note: format!(
            "{IDLE_FILES} CRI files of {IDLE_LINES} lines, shipped, then {quiet:.0} s of nothing: \
             {:.3} CPU-s per minute (each thread's schedstat), RSS {:.1} MiB",
            cpu / quiet * 60.0,
            usage.rss as f64 / MIB
        ),
        duplicates: sink.state.surplus(records),
        ..Row::default()
    })
}

/// How a steady scenario writes.
#[derive(Clone, Copy)]
pub struct Rate {
    pub lines_per_s: u64,
    pub seconds: u64,
}

/// One CRI file written at a steady `rate` in bursts every [`BURST_EVERY`]: the agent's CPU per
/// line and each line's age (its runtime timestamp to the sink's answer) when acknowledged.
/// A first line is written before the agent starts and the measurement waits for it, so it
/// starts with the file followed (Fluent Bit finds new files only every `Refresh_Interval`).
pub fn steady(
    shipper: &Shipper,
    sink: &Sink,
    work: &Path,
    name: &'static str,
    rate: Rate,
    setup: Setup,
) -> anyhow::Result<Row> {
    let (mut w, _) = Writer::create(&work.join("containers"), 0, logs::Format::Cri)?;
    w.record(Utc::now())?;
    w.flush()?;
    let mut agent = shipper.start(work, sink.addr, setup)?;
    wait_for(sink, &mut agent, 1, Duration::from_secs(120))?;
    sink.state.record_latency.store(true, Ordering::SeqCst);
    let (first, first_bytes) = (w.records, w.bytes);
    let before = agent.usage()?;
    let start = Instant::now();
    write_steady(&mut w, rate)?;
    let done = wait_for(sink, &mut agent, w.records, Duration::from_secs(300))?;
    let usage = agent.usage()?;
    agent.stop()?;
    let (p50, p99, max) = percentiles(sink);
    let records = w.records - first;
    Ok(Row {
        name,
        records,
        input_bytes: w.bytes - first_bytes,
        seconds: (done - start).as_secs_f64(),
        cpu: usage.cpu - before.cpu,
        peak_rss: usage.peak_rss,
        latency: Some((p50, p99)),
        note: format!(
            "steady {} lines/s for {} s, a burst every {} ms{}; max {max:.0} ms",
            rate.lines_per_s,
            rate.seconds,
            BURST_EVERY.as_millis(),
            setup
                .flush
                .map(|f| format!(", flush every {} ms", f.as_millis()))
                .unwrap_or_default(),
        ),
        duplicates: sink.state.surplus(w.records),
        ..Row::default()
    })
}

/// Writes `rate.lines_per_s` lines a second into `w` for `rate.seconds`, each stamped when it
/// is written; the lines due are written and flushed every [`BURST_EVERY`], so the rate holds
/// however long a sleep really takes.
pub fn write_steady(w: &mut Writer, rate: Rate) -> std::io::Result<()> {
    let total = rate.lines_per_s * rate.seconds;
    let first = w.records;
    let start = Instant::now();
    while w.records - first < total {
        let due = ((start.elapsed().as_secs_f64() * rate.lines_per_s as f64) as u64).min(total);
        while w.records - first < due {
            w.record(Utc::now())?;
        }
        w.flush()?;
        std::thread::sleep(BURST_EVERY);
    }
    Ok(())
}

/// p50, p99 and the largest of the ages the sink recorded, in milliseconds; the sink's record
/// is emptied.
fn percentiles(sink: &Sink) -> (f64, f64, f64) {
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
    (pct(0.50), pct(0.99), pct(1.0))
}
