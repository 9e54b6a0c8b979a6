//! The standard `process_*` metrics, read from `/proc/self` at each scrape: what the agent
//! costs the node (CPU, memory, file descriptors) and when it last started.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

/// Linux reports CPU times in USER_HZ ticks, which is 100 on every architecture it runs on.
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Default)]
pub struct Process {
    cpu: Counter<f64, AtomicU64>,
    /// The CPU seconds already added to `cpu`, which can only grow by increments.
    cpu_seen: Mutex<f64>,
    rss: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

impl Process {
    /// A registry with fresh values.
    pub fn registry(&self) -> Registry {
        self.refresh();
        let mut r = Registry::default();
        r.register(
            "process_cpu_seconds",
            "User and system CPU time spent",
            self.cpu.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory",
            self.rss.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors",
            self.open_fds.clone(),
        );
        r.register(
            "process_max_fds",
            "The limit on open file descriptors",
            self.max_fds.clone(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process, Unix seconds",
            self.start_time.clone(),
        );
        r
    }

    fn refresh(&self) {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            let total = (utime + stime) / TICKS_PER_SECOND;
            let mut seen = self.cpu_seen.lock().unwrap_or_else(PoisonError::into_inner);
            if total > *seen {
                self.cpu.inc_by(total - *seen);
                *seen = total;
            }
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time()) {
            self.start_time.set(boot + start / TICKS_PER_SECOND);
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.rss.set(kb * 1024);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some(max) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<i64>().ok())
        {
            self.max_fds.set(max);
        }
    }
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}
