//! What a measurement hands on: one [`Row`] per scenario and shipper, the figures the tables
//! ([`crate::table`], [`crate::compare`]) and the targets ([`crate::targets`]) are made of, and
//! [`wait_for`], the moment that ends a row's time: the sink's answer to the last line.

use crate::agent::Agent;
use crate::sink::Sink;
use anyhow::{Context, bail};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One measured scenario.
#[derive(Default)]
pub struct Row {
    pub name: &'static str,
    pub records: u64,
    pub input_bytes: u64,
    pub seconds: f64,
    pub cpu: f64,
    pub peak_rss: u64,
    /// Resident set at the end (VmRSS), where a scenario measures it (idle).
    pub rss: u64,
    pub latency: Option<(f64, f64)>,
    pub note: String,
    pub duplicates: u64,
}

pub const MIB: f64 = 1024.0 * 1024.0;

impl Row {
    pub fn lines_per_s(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu / (self.records as f64 / 1e6)
    }
    /// What a quiet node pays for the agent: its CPU over the row's time, per minute.
    pub fn cpu_per_minute(&self) -> f64 {
        self.cpu / self.seconds * 60.0
    }
    /// A row of time with no lines in it (idle): the per-line figures do not apply.
    pub fn quiet(&self) -> bool {
        self.records == 0
    }
    pub fn summary(&self) -> String {
        if self.quiet() {
            return format!(
                "{:.3} CPU-s per minute over {:.0} s, RSS {:.1} MiB, peak RSS {:.1} MiB",
                self.cpu_per_minute(),
                self.seconds,
                self.rss as f64 / MIB,
                self.peak_rss as f64 / MIB,
            );
        }
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
/// Waits until the sink has accepted `n` distinct documents; returns when the last was answered.
pub fn wait_for(
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
