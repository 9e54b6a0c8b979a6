//! The standard `process_*` metrics, read from `/proc/self` at each scrape (with `procfs`):
//! what the agent costs the node (CPU, memory, file descriptors) and when it last started.

use procfs::process::LimitValue;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

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

    /// Reads the values anew. One that cannot be read keeps its last value: a scrape never
    /// fails for it.
    fn refresh(&self) {
        let Ok(me) = procfs::process::Process::myself() else {
            return;
        };
        let ticks_per_second = procfs::ticks_per_second() as f64;
        if let Ok(stat) = me.stat() {
            let total = (stat.utime + stat.stime) as f64 / ticks_per_second;
            let mut seen = self.cpu_seen.lock().unwrap_or_else(PoisonError::into_inner);
            if total > *seen {
                self.cpu.inc_by(total - *seen);
                *seen = total;
            }
            if let Ok(boot) = procfs::boot_time_secs() {
                self.start_time
                    .set(boot as f64 + stat.starttime as f64 / ticks_per_second);
            }
        }
        // From `status` (`VmRSS`), not `stat`: the kernel sums its per-CPU counters exactly
        // there, while `stat`'s figure can lag by tens of KiB.
        if let Some(kb) = me.status().ok().and_then(|s| s.vmrss) {
            self.rss
                .set(i64::try_from(kb.saturating_mul(1024)).unwrap_or(i64::MAX));
        }
        // Counts in one `stat` of `/proc/self/fd` where the kernel allows it (Linux 6.2 and
        // later), not one entry per descriptor: the agent holds hundreds.
        if let Ok(n) = me.fd_count() {
            self.open_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Ok(limits) = me.limits()
            && let LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            self.max_fds.set(i64::try_from(max).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(p: &Process) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &p.registry()).unwrap();
        text
    }

    fn value(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    #[test]
    fn process_metrics_count_held_descriptors_and_say_when_the_agent_started() {
        let p = Process::default();
        let before = value(&scrape(&p), "process_open_fds");
        let held: Vec<std::fs::File> = (0..50)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let text = scrape(&p);
        // Other tests open and close files meanwhile: a bound, not an exact count.
        assert!(value(&text, "process_open_fds") >= before + 40.0, "{text}");
        drop(held);
        // The shell inherits the agent's limits.
        let ulimit = std::process::Command::new("sh")
            .args(["-c", "ulimit -n"])
            .output()
            .unwrap();
        let limit: f64 = String::from_utf8(ulimit.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(value(&text, "process_max_fds"), limit);
        assert!(value(&text, "process_resident_memory_bytes") > 1_000_000.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value(&text, "process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} {now}"
        );
    }
}
