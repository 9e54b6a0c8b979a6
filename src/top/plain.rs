//! The plain snapshot (`logferry top --once`, or stdout not a terminal): the same figures as
//! the terminal view, as text a script can grep and a bug report can quote. Also the number
//! formats both share.

use super::figures::{Figures, OUTCOMES};
use std::fmt::Write;

/// Bytes with binary units: `0 B`, `512 B`, `1.5 KiB`, `256.0 MiB`.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if !n.is_finite() || n < 1024.0 {
        return format!("{} B", n.max(0.0) as u64);
    }
    let mut v = n;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// A rate: `0/s`, `0.4/s`, `12.5/s`, `1.2k/s`, `3.4M/s`.
pub fn rate(per_second: f64) -> String {
    let r = per_second.max(0.0);
    if r == 0.0 {
        "0/s".into()
    } else if r < 1000.0 {
        format!("{r:.1}/s")
    } else if r < 1e6 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{:.1}M/s", r / 1e6)
    }
}

/// A duration in seconds: `850µs`, `12.3ms`, `1.20s`, `4m 05s`, `2h 10m`, `3d 4h`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 0.001 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else if s < 60.0 {
        format!("{s:.2}s")
    } else {
        let whole = s as u64;
        let (m, h, d) = (whole / 60, whole / 3600, whole / 86400);
        if h == 0 {
            format!("{m}m {:02}s", whole % 60)
        } else if d == 0 {
            format!("{h}h {:02}m", m % 60)
        } else {
            format!("{d}d {}h", h % 24)
        }
    }
}

/// A latency quantile, or `–` when no request was made in the interval.
pub fn latency(q: Option<f64>) -> String {
    q.map_or_else(|| "–".into(), duration)
}

/// The oldest buffered record's age, or `none` when nothing waits.
pub fn oldest(f: &Figures) -> String {
    if f.buffer_records > 0.0 {
        duration(f.oldest_age_seconds)
    } else {
        "none".into()
    }
}

/// The wait before the next retry, or `none` while requests succeed.
pub fn backoff(f: &Figures) -> String {
    if f.backoff_seconds > 0.0 {
        duration(f.backoff_seconds)
    } else {
        "none".into()
    }
}

/// How an outcome of `logferry_documents_total` reads.
pub fn outcome_name(outcome: &str) -> &str {
    match outcome {
        "dead_lettered" => "dead-lettered",
        o => o,
    }
}

/// The buffer's fill as a fraction of its limit (0 when there is no limit to speak of).
pub fn fill(f: &Figures) -> f64 {
    if f.buffer_max_bytes > 0.0 {
        (f.buffer_bytes / f.buffer_max_bytes).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The whole snapshot as text: one fact per line, `name  value` columns.
pub fn snapshot(url: &str, f: &Figures) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "logferry top: {url}, rates over {:.1}s", f.interval);
    match &f.health {
        Ok(h) => {
            let _ = writeln!(out, "health {}", h.status);
            for (name, status, detail) in &h.checks {
                let _ = writeln!(out, "  {name:<16} {status:<10} {detail}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "health unknown: {e}");
        }
    }
    let flow_line = |out: &mut String, name: &str, flow: &super::figures::Flow| {
        let _ = writeln!(
            out,
            "{name:<24} {:>10}   total {}",
            rate(flow.per_second),
            flow.total as u64
        );
    };
    flow_line(&mut out, "lines in", &f.lines_in);
    for (o, flow) in OUTCOMES.iter().zip(&f.documents) {
        flow_line(&mut out, &format!("documents {}", outcome_name(o)), flow);
    }
    let _ = writeln!(out, "lag                      {}", bytes(f.lag_bytes));
    let _ = writeln!(
        out,
        "buffer                   {} of {} ({:.1}%), {} records, oldest {}",
        bytes(f.buffer_bytes),
        bytes(f.buffer_max_bytes),
        fill(f) * 100.0,
        f.buffer_records as u64,
        oldest(f)
    );
    let _ = writeln!(
        out,
        "bulk latency             p50 {}  p99 {}  (requests {}, backoff {})",
        latency(f.bulk_p50),
        latency(f.bulk_p99),
        rate(f.bulk_per_second),
        backoff(f)
    );
    let _ = writeln!(
        out,
        "process                  cpu {:.1}%  rss {}",
        f.cpu_cores * 100.0,
        bytes(f.rss_bytes)
    );
    for (route, flow) in &f.routes {
        flow_line(&mut out, &format!("route {route}"), flow);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_durations_read_like_an_operator_writes_them() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(256.0 * 1024.0 * 1024.0), "256.0 MiB");
        assert_eq!(rate(0.0), "0/s");
        assert_eq!(rate(0.4), "0.4/s");
        assert_eq!(rate(12345.0), "12.3k/s");
        assert_eq!(duration(0.0004), "400µs");
        assert_eq!(duration(0.0123), "12.3ms");
        assert_eq!(duration(1.2), "1.20s");
        assert_eq!(duration(245.0), "4m 05s");
        assert_eq!(duration(7800.0), "2h 10m");
        assert_eq!(duration(100_000.0), "1d 3h");
        assert_eq!(latency(None), "–");
    }
}
