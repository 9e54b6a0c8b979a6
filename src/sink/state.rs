//! What the shippers tell `/health` about the cluster: whether shipping works, what failed and
//! since when, shipper restarts, and by when the next sign of life is promised.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What `/health` shows about the cluster.
#[derive(Default)]
pub struct SinkState {
    /// `None` while shipping works; otherwise the kind of failure, why, and since when.
    problem: Mutex<Option<Problem>>,
    /// By when (a `vocab::clock` reading, monotonic) a shipper has promised its next sign of life: the end of the request
    /// or of the backoff wait it is in. Shipping that is past it while records wait is stalled.
    deadline_ms: AtomicU64,
    /// Shipping works again after failing: shippers waiting out a backoff try at once, so
    /// their batches do not wait up to retry_max_interval behind ones that already flow.
    pub(super) recovered: tokio::sync::Notify,
    /// Shippers that failed and were restarted: a bug, said in `/health` as well as the log.
    restarts: Mutex<Option<Restarts>>,
}

/// How long after a shipper restart `/health` stays degraded saying so: long enough for a
/// person or a probe to see it, short enough that one old fault does not hide newer news.
const RESTART_NOTICE: Duration = Duration::from_secs(600);

impl SinkState {
    /// Shipping works again. Says so once, with how often it failed, if it did not before.
    pub(super) fn ok(&self) {
        let before = self
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(p) = before {
            tracing::info!(after_s = p.since.elapsed().as_secs(), failed_attempts = p.failures, last_problem = %p.reason, "shipping again");
            self.recovered.notify_waiters();
        }
    }

    /// Shipping fails for `reason`. True when this is news (the first failure, or another
    /// kind of failure than before), so the caller logs it once rather than at every retry.
    pub(super) fn failing(&self, kind: &'static str, reason: &str) -> bool {
        let mut p = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        let news = p.as_ref().is_none_or(|old| old.kind != kind);
        let since = p.as_ref().map_or_else(Instant::now, |old| old.since);
        let failures = p.as_ref().map_or(0, |old| old.failures) + 1;
        *p = Some(Problem {
            kind,
            reason: reason.to_owned(),
            since,
            failures,
        });
        news
    }

    /// A shipper will show a sign of life within `within`.
    pub(crate) fn promise(&self, within: Duration) {
        self.deadline_ms
            .store(crate::vocab::clock::after_ms(within), Ordering::Relaxed);
    }

    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(Ordering::Relaxed)
    }

    /// (working, detail)
    pub fn describe(&self) -> (bool, String) {
        let restarts = self.restarts_note();
        match (
            &*self.problem.lock().unwrap_or_else(PoisonError::into_inner),
            restarts,
        ) {
            (Some(p), Some((true, r))) => (false, format!("{}; {r}", p.reason)),
            (Some(p), _) => (false, p.reason.clone()),
            (None, Some((true, r))) => (false, r),
            (None, Some((false, r))) => (true, format!("shipping; earlier, {r}")),
            (None, None) => (true, "shipping".into()),
        }
    }

    /// A shipper failed with `why` and is started again. True when this is news (the first
    /// restart, or another failure than the last), so the caller logs it once.
    pub fn restarted(&self, why: &str) -> bool {
        let mut r = self.restarts.lock().unwrap_or_else(PoisonError::into_inner);
        let news = r.as_ref().is_none_or(|old| old.why != why);
        let count = r.as_ref().map_or(0, |old| old.count) + 1;
        *r = Some(Restarts {
            count,
            last: Instant::now(),
            why: why.to_owned(),
        });
        news
    }

    /// (recent, what to say) about shipper restarts, if there were any.
    fn restarts_note(&self) -> Option<(bool, String)> {
        let r = self.restarts.lock().unwrap_or_else(PoisonError::into_inner);
        r.as_ref().map(|r| {
            (
                r.last.elapsed() < RESTART_NOTICE,
                format!(
                    "a shipper failed ({}) and was restarted with its batch, {} time(s) since start",
                    r.why, r.count
                ),
            )
        })
    }
}

struct Restarts {
    count: u64,
    last: Instant,
    /// The last failure's panic message.
    why: String,
}

struct Problem {
    kind: &'static str,
    reason: String,
    since: Instant,
    /// Failed attempts since `since`, said when shipping works again.
    failures: u64,
}
