//! What an operator asks first, worked out from two snapshots of `/metrics`: the rates of the
//! counters over the interval between them, the bulk latency quantiles of the requests made in
//! that interval, and the gauges as of the later one.
//!
//! An agent that restarted between the two looks (its `process_start_time_seconds` changed, or
//! a counter went down: a counter only grows in one process) has its rates taken from zero, as
//! Prometheus' `rate()` does, never as a negative or a too-small rate.

use super::scrape::{Exposition, Health, Snapshot};

/// The agent's series `top` reads (classic text format names).
pub mod series {
    pub const LINES: &str = "logferry_input_lines_total";
    pub const DOCUMENTS: &str = "logferry_documents_total";
    pub const LAG: &str = "logferry_input_lag_bytes";
    pub const BUFFER_BYTES: &str = "logferry_buffer_bytes";
    pub const BUFFER_MAX: &str = "logferry_buffer_max_bytes";
    pub const BUFFER_RECORDS: &str = "logferry_buffer_records";
    pub const OLDEST: &str = "logferry_buffer_oldest_record_age_seconds";
    pub const BULK: &str = "logferry_bulk_request_duration_seconds";
    pub const BACKOFF: &str = "logferry_backoff_seconds";
    pub const ROUTES: &str = "logferry_route_records_total";
    pub const CPU: &str = "process_cpu_seconds_total";
    pub const RSS: &str = "process_resident_memory_bytes";
    pub const STARTED: &str = "process_start_time_seconds";
}

/// The outcomes of `logferry_documents_total`, in the order they are shown.
pub const OUTCOMES: [&str; 4] = ["indexed", "duplicate", "retried", "dead_lettered"];

/// A counter: its value now and its rate over the interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flow {
    pub total: f64,
    pub per_second: f64,
}

/// Everything a view shows, from one pair of snapshots.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Seconds between the two snapshots.
    pub interval: f64,
    pub health: Result<Health, String>,
    pub lines_in: Flow,
    /// By outcome, in [`OUTCOMES`] order.
    pub documents: [Flow; 4],
    pub lag_bytes: f64,
    pub buffer_bytes: f64,
    pub buffer_max_bytes: f64,
    pub buffer_records: f64,
    pub oldest_age_seconds: f64,
    pub backoff_seconds: f64,
    /// Bulk requests made in the interval, per second.
    pub bulk_per_second: f64,
    /// Of the requests made in the interval; `None` when there were none.
    pub bulk_p50: Option<f64>,
    pub bulk_p99: Option<f64>,
    /// Records per route, by name; empty unless a configured route exists (`default` alone is
    /// not worth a table).
    pub routes: Vec<(String, Flow)>,
    /// CPU used in the interval, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub rss_bytes: f64,
}

impl Figures {
    /// The figures between `before` and `now` (taken later).
    pub fn between(before: &Snapshot, now: &Snapshot) -> Figures {
        let secs = now.at.duration_since(before.at).as_secs_f64();
        let empty = Exposition::default();
        let (a, b) = if restarted(&before.metrics, &now.metrics) {
            (&empty, &now.metrics)
        } else {
            (&before.metrics, &now.metrics)
        };
        let flow = |name: &str, labels: &[(&str, &str)]| {
            let now = b.value(name, labels).unwrap_or(0.0);
            Flow {
                total: now,
                per_second: rate(a.value(name, labels).unwrap_or(0.0), now, secs),
            }
        };
        let gauge = |name: &str| b.value(name, &[]).unwrap_or(0.0);
        let bulk = bucket_increases(a, b, series::BULK);
        let requests = bulk.last().map_or(0.0, |(_, n)| *n);
        Figures {
            interval: secs,
            health: now.health.clone(),
            lines_in: flow(series::LINES, &[]),
            documents: OUTCOMES.map(|o| flow(series::DOCUMENTS, &[("outcome", o)])),
            lag_bytes: gauge(series::LAG),
            buffer_bytes: gauge(series::BUFFER_BYTES),
            buffer_max_bytes: gauge(series::BUFFER_MAX),
            buffer_records: gauge(series::BUFFER_RECORDS),
            oldest_age_seconds: gauge(series::OLDEST),
            backoff_seconds: gauge(series::BACKOFF),
            bulk_per_second: if secs > 0.0 { requests / secs } else { 0.0 },
            bulk_p50: quantile(0.5, &bulk),
            bulk_p99: quantile(0.99, &bulk),
            routes: routes(b)
                .into_iter()
                .map(|r| {
                    let f = flow(series::ROUTES, &[("route", &r)]);
                    (r, f)
                })
                .collect(),
            cpu_cores: flow(series::CPU, &[]).per_second,
            rss_bytes: gauge(series::RSS),
        }
    }
}

/// Whether another process answers now: a counter that went down says so only when it did not
/// catch up, the start time always.
fn restarted(before: &Exposition, now: &Exposition) -> bool {
    match (
        before.value(series::STARTED, &[]),
        now.value(series::STARTED, &[]),
    ) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// The names of the routes, when one besides `default` exists.
fn routes(e: &Exposition) -> Vec<String> {
    let names: Vec<String> = e
        .series(series::ROUTES)
        .filter_map(|s| s.label("route").map(str::to_owned))
        .collect();
    if names.iter().all(|n| n == "default") {
        Vec::new()
    } else {
        names
    }
}

/// Per second, from `before` to `now` over `secs`; a counter that went down restarted from 0.
pub fn rate(before: f64, now: f64, secs: f64) -> f64 {
    if secs <= 0.0 || !now.is_finite() {
        return 0.0;
    }
    let increase = if now < before { now } else { now - before };
    increase / secs
}

/// A histogram's cumulative buckets as (upper bound, observations in the interval), sorted by
/// bound, `+Inf` last. After a restart (any bucket went down) the later counts are the
/// interval's.
pub fn bucket_increases(before: &Exposition, now: &Exposition, name: &str) -> Vec<(f64, f64)> {
    let buckets = |e: &Exposition| -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut v: Vec<(f64, f64)> = e
            .series(&bucket)
            .filter_map(|s| Some((s.label("le")?.parse::<f64>().ok()?, s.value)))
            .collect();
        v.sort_by(|x, y| x.0.total_cmp(&y.0));
        v
    };
    let (a, b) = (buckets(before), buckets(now));
    let same = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0);
    if !same || a.iter().zip(&b).any(|(x, y)| y.1 < x.1) {
        return b;
    }
    a.iter().zip(&b).map(|(x, y)| (y.0, y.1 - x.1)).collect()
}

/// The `q` quantile of cumulative `buckets`, interpolated within its bucket as Prometheus'
/// `histogram_quantile` does; the largest finite bound when it falls in `+Inf`; `None` without
/// observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let share = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::scrape::parse_metrics;
    use std::time::{Duration, Instant};

    fn snapshot(at: Instant, text: &str) -> Snapshot {
        Snapshot {
            at,
            metrics: parse_metrics(text).unwrap(),
            health: Err("not asked".into()),
        }
    }

    #[test]
    fn a_restarted_agent_shows_its_rate_since_the_restart_not_a_negative_one() {
        assert_eq!(rate(100.0, 150.0, 2.0), 25.0);
        // 1000 before the restart, 30 since: 30 in the interval.
        assert_eq!(rate(1000.0, 30.0, 1.0), 30.0);
        assert_eq!(rate(5.0, 6.0, 0.0), 0.0);
    }

    #[test]
    fn a_restart_is_seen_from_the_start_time_even_when_counters_grew_past_their_old_values() {
        let t = Instant::now();
        let before = snapshot(
            t,
            "process_start_time_seconds 1000\nlogferry_input_lines_total 50\n",
        );
        // Restarted, and already read 80 lines (a backlog): 80 in the interval, not 30.
        let now = snapshot(
            t + Duration::from_secs(1),
            "process_start_time_seconds 1100\nlogferry_input_lines_total 80\n",
        );
        assert_eq!(Figures::between(&before, &now).lines_in.per_second, 80.0);
    }

    #[test]
    fn latency_quantiles_come_from_the_requests_of_the_interval_only() {
        let t = Instant::now();
        let h = |a: u32, b: u32, inf: u32| {
            format!(
                "logferry_bulk_request_duration_seconds_bucket{{le=\"0.001\"}} {a}\n\
                 logferry_bulk_request_duration_seconds_bucket{{le=\"0.002\"}} {b}\n\
                 logferry_bulk_request_duration_seconds_bucket{{le=\"+Inf\"}} {inf}\n"
            )
        };
        // Before: 100 fast requests. In the interval: 10 more, all between 1 and 2 ms.
        let before = snapshot(t, &h(100, 100, 100));
        let now = snapshot(t + Duration::from_secs(2), &h(100, 110, 110));
        let f = Figures::between(&before, &now);
        assert_eq!(f.bulk_p50, Some(0.0015));
        assert!((f.bulk_p99.unwrap() - 0.00199).abs() < 1e-9);
        assert_eq!(f.bulk_per_second, 5.0);
        // No requests in the interval: nothing to say, not a stale figure.
        let idle = Figures::between(
            &now,
            &snapshot(t + Duration::from_secs(3), &h(100, 110, 110)),
        );
        assert_eq!(idle.bulk_p50, None);
        // Slower than every bound: the largest finite one.
        assert_eq!(
            quantile(0.99, &[(0.001, 0.0), (0.002, 0.0), (f64::INFINITY, 4.0)]),
            Some(0.002)
        );
        // A restart: the new process' counts are the interval's.
        let restarted = snapshot(t + Duration::from_secs(4), &h(0, 2, 2));
        assert_eq!(Figures::between(&now, &restarted).bulk_p50, Some(0.0015));
    }

    #[test]
    fn routes_show_only_when_one_is_configured() {
        let t = Instant::now();
        let default_only = "logferry_route_records_total{route=\"default\"} 5\n";
        let f = Figures::between(&snapshot(t, default_only), &snapshot(t, default_only));
        assert!(f.routes.is_empty());
        let two = "logferry_route_records_total{route=\"default\"} 5\n\
                   logferry_route_records_total{route=\"audit\"} 9\n";
        let before = snapshot(t, "logferry_route_records_total{route=\"default\"} 5\n");
        let f = Figures::between(&before, &snapshot(t + Duration::from_secs(1), two));
        let names: Vec<&str> = f.routes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["default", "audit"]);
        assert_eq!(
            f.routes[1].1,
            Flow {
                total: 9.0,
                per_second: 9.0
            }
        );
    }

    #[test]
    fn documents_are_read_by_outcome_and_gauges_as_of_the_later_look() {
        let t = Instant::now();
        let before = snapshot(
            t,
            "logferry_documents_total{outcome=\"indexed\"} 10\nprocess_cpu_seconds_total 1.0\n",
        );
        let now = snapshot(
            t + Duration::from_secs(2),
            "logferry_documents_total{outcome=\"indexed\"} 30\n\
             logferry_documents_total{outcome=\"dead_lettered\"} 2\n\
             logferry_buffer_max_bytes 1048576\nprocess_cpu_seconds_total 1.5\n",
        );
        let f = Figures::between(&before, &now);
        assert_eq!(
            f.documents[0],
            Flow {
                total: 30.0,
                per_second: 10.0
            }
        );
        assert_eq!(
            f.documents[3],
            Flow {
                total: 2.0,
                per_second: 1.0
            }
        );
        assert_eq!(f.buffer_max_bytes, 1048576.0);
        assert_eq!(f.cpu_cores, 0.25);
    }
}
