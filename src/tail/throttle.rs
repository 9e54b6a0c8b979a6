//! Throttling: at most `lines_per_second` (with a `burst`) per container, pod or namespace, so
//! that one pod in a crash loop cannot take the node's shipping capacity and buffer.
//!
//! A token bucket per container (pod, namespace), keyed by names, not by file: a container that
//! restarts (a new `1.log`) does not get a fresh burst.
//!
//! - `slow` (the default) never drops: a file whose bucket is empty is simply not read until it
//!   has refilled; its lines wait in the log file, its checkpoint stays, and the tailer reads
//!   every other file at full speed meanwhile. A pass reads at most what the bucket holds (in
//!   bytes, from the file's average line length, at least one block); what a block brings over
//!   that is owed and waited out, so the rate holds on average and a burst overshoots by at most
//!   one block. The time files spend held back is `logferry_throttled_seconds_total{namespace}`,
//!   and the largest unread backlog of a held file `logferry_throttled_lag_bytes`: once that
//!   passes the kubelet's `containerLogMaxSize`, rotation may compress lines unread (an alert).
//!   A file rotated away is read to its end `rotate_wait` after its last read, bucket or not
//!   (`Tailer::let_go_of_drained`): it cannot wait, the kubelet will compress it.
//! - `drop` reads at full speed and drops each line over the rate, counted in
//!   `logferry_throttle_dropped_total{namespace}`; never silently.
//!
//! Off (no `[throttle]`): no bucket, and no cost per line or per pass.

use super::file::Tracked;
use crate::config::{self, ThrottleAction, ThrottleScope};
use crate::kube::PodRef;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buckets untouched this long are forgotten (a deleted pod's).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// A pass of a throttled file reads at least this much (a few lines), so that it moves.
const LEAST_READ: usize = 4 * 1024;

struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Bytes per line seen in this bucket's files, for turning tokens into a read budget.
    line_bytes: f64,
    namespace: Arc<str>,
}

/// What reading a file may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Not throttled: the usual pass budget.
    Free,
    /// Read at most this many bytes.
    Read(usize),
    /// Held back until its bucket has refilled this much.
    Wait(Duration),
}

pub struct Throttle {
    rate: f64,
    burst: f64,
    scope: ThrottleScope,
    pub(super) action: ThrottleAction,
    except: Vec<String>,
    buckets: HashMap<Arc<str>, Bucket>,
    metrics: Arc<Metrics>,
    last_prune: Instant,
}

impl Throttle {
    pub fn new(cfg: &config::Throttle, metrics: Arc<Metrics>) -> Option<Throttle> {
        let rate = cfg.lines_per_second? as f64;
        Some(Throttle {
            rate,
            burst: cfg.burst() as f64,
            scope: cfg.per,
            action: cfg.action,
            except: cfg.except_namespaces.clone(),
            buckets: HashMap::new(),
            metrics,
            last_prune: Instant::now(),
        })
    }

    /// The bucket a file of `pod` draws from; `None` when it is not throttled (an excepted
    /// namespace, or a file outside the kubelet's layout).
    pub fn key_for(&self, pod: Option<&PodRef>) -> Option<Arc<str>> {
        let p = pod?;
        if self.except.contains(&p.namespace) {
            return None;
        }
        Some(Arc::from(match self.scope {
            ThrottleScope::Container => format!("{}/{}/{}", p.namespace, p.pod, p.container),
            ThrottleScope::Pod => format!("{}/{}", p.namespace, p.pod),
            ThrottleScope::Namespace => p.namespace.clone(),
        }))
    }

    fn bucket(&mut self, key: &Arc<str>, now: Instant) -> &mut Bucket {
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(key.clone()).or_insert_with(|| Bucket {
            tokens: burst,
            refilled: now,
            line_bytes: 300.0,
            namespace: Arc::from(key.split('/').next().unwrap_or("")),
        });
        let gained = now.saturating_duration_since(b.refilled).as_secs_f64() * rate;
        b.tokens = (b.tokens + gained).min(burst);
        b.refilled = now;
        b
    }

    /// Before a pass over `t` (slow): how much it may read.
    pub fn allowance(&mut self, t: &Tracked, now: Instant) -> Allowance {
        let Some(key) = &t.throttle_key else {
            return Allowance::Free;
        };
        if self.action == ThrottleAction::Drop {
            return Allowance::Free;
        }
        let rate = self.rate;
        let b = self.bucket(key, now);
        if b.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - b.tokens) / rate);
            let ns = b.namespace.clone();
            self.metrics
                .throttled_seconds
                .get_or_create(&vec![("namespace", ns.to_string())])
                .inc_by(wait.as_secs_f64());
            return Allowance::Wait(wait.max(Duration::from_millis(10)));
        }
        Allowance::Read(((b.tokens * b.line_bytes) as usize).max(LEAST_READ))
    }

    /// After a pass over `t` that read `lines` lines in `bytes` bytes: they are paid for.
    pub fn charge(&mut self, t: &Tracked, lines: u64, bytes: u64, now: Instant) {
        let (Some(key), true) = (&t.throttle_key, lines > 0) else {
            return;
        };
        if self.action == ThrottleAction::Drop {
            return;
        }
        let b = self.bucket(key, now);
        b.tokens -= lines as f64;
        b.line_bytes = 0.8 * b.line_bytes + 0.2 * (bytes as f64 / lines as f64);
    }

    /// Drop mode, per line of a file drawing from `key`: whether it may go on.
    pub fn admit(&mut self, key: &Arc<str>, now: Instant) -> bool {
        let b = self.bucket(key, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return true;
        }
        let ns = b.namespace.to_string();
        self.metrics
            .throttle_dropped
            .get_or_create(&vec![("namespace", ns)])
            .inc();
        false
    }

    /// Once per pass: the largest backlog of the files held back now, and forgetting buckets
    /// nobody drew from for a while.
    pub fn publish<'t>(&mut self, held: impl Iterator<Item = &'t Tracked>, now: Instant) {
        let lag = held
            .map(|t| {
                t.file
                    .metadata()
                    .map_or(0, |m| m.len().saturating_sub(t.read_pos))
            })
            .max()
            .unwrap_or(0);
        self.metrics
            .throttled_lag_bytes
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        if now.saturating_duration_since(self.last_prune) >= FORGET_AFTER {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.refilled) < FORGET_AFTER);
            self.last_prune = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(text: &str) -> Throttle {
        let cfg = config::Config::from_toml(text, |_| None).unwrap();
        Throttle::new(&cfg.throttle, Arc::new(Metrics::new())).unwrap()
    }

    fn pod(ns: &str, name: &str, container: &str) -> PodRef {
        PodRef {
            namespace: ns.into(),
            pod: name.into(),
            container: container.into(),
            container_id: None,
            pod_id: None,
        }
    }

    #[test]
    fn one_bucket_per_container_pod_or_namespace_and_none_for_exceptions() {
        let t =
            throttle("[throttle]\nlines_per_second = 10\nexcept_namespaces = [\"kube-system\"]\n");
        let a = t.key_for(Some(&pod("shop", "api-1", "app")));
        assert_eq!(a.as_deref(), Some("shop/api-1/app"));
        assert_eq!(t.key_for(Some(&pod("kube-system", "dns", "coredns"))), None);
        assert_eq!(t.key_for(None), None, "a file outside the kubelet's layout");
        let t = throttle("[throttle]\nlines_per_second = 10\nper = \"namespace\"\n");
        assert_eq!(
            t.key_for(Some(&pod("shop", "api-1", "app"))).as_deref(),
            Some("shop")
        );
    }

    #[test]
    fn drop_admits_the_burst_then_the_rate_and_counts_the_rest() {
        let mut t =
            throttle("[throttle]\nlines_per_second = 100\nburst = 200\naction = \"drop\"\n");
        let key: Arc<str> = Arc::from("shop/api-1/app");
        let start = Instant::now();
        let admitted = (0..1000).filter(|_| t.admit(&key, start)).count();
        assert_eq!(admitted, 200, "the burst");
        // Half a second later: 50 more.
        let later = start + Duration::from_millis(500);
        let admitted = (0..1000).filter(|_| t.admit(&key, later)).count();
        assert!((49..=51).contains(&admitted), "{admitted}");
        let dropped = t
            .metrics
            .throttle_dropped
            .get_or_create(&vec![("namespace", "shop".to_owned())])
            .get();
        assert_eq!(dropped, 2000 - 200 - admitted as u64);
    }
}
