//! Supervision of deliveries: a batch is delivered in a task of its own while the shipper
//! that took it from the buffer keeps holding it, so a delivery that panics ends only that
//! task. The shipper notices (the task's `JoinError`), counts it in
//! `logferry_shipper_restarts_total`, logs it once, tells `/health`, and delivers the same
//! batch again after a backoff.
//!
//! Why this never loses or doubles a record: the batch is acknowledged to the buffer only by
//! the shipper, only after a delivery of it returned; and every record goes with its own
//! deterministic id and `create`, so what the failed delivery got indexed comes back as 409s
//! the second time.
//!
//! A failure that repeats with every delivery of one batch holds the ack cursor for as long
//! as the operator allows: forever with `retry_forever` (the default; `/health` says why), or
//! until `retry_timeout`, after which the batch goes to the dead-letter file with reason
//! `shipper_failed` — kept on disk, and the records behind it move on.

use super::refused::Refusal;
use super::{Route, Shipper};
use crate::buffer::Batch;
use crate::sink::panic_message;
use std::future::Future;
use std::sync::Arc;

/// Runs `deliver(batch)` in a task until one run returns; true then. A run that panics is
/// counted, logged once, shown in `/health`, and started again after a backoff (retry_wait
/// doubling to retry_max_interval). False only when the runtime cancelled the task (it is
/// shutting down): the batch is not delivered and must not be acknowledged. Without
/// `retry_forever`, a batch whose deliveries keep failing past `retry_timeout` is
/// dead-lettered instead (and true is returned: every item found its end).
pub(super) async fn until_delivered<F, Fut>(
    shipper: &Shipper,
    batch: &Arc<Batch>,
    deliver: F,
) -> bool
where
    F: Fn(Arc<Batch>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut wait = shipper.live().cfg.retry_wait.0;
    let started = std::time::Instant::now();
    loop {
        let failure = match tokio::spawn(deliver(batch.clone())).await {
            Ok(()) => return true,
            Err(e) if e.is_cancelled() => return false,
            Err(e) => panic_message(e),
        };
        shipper.metrics.shipper_restarts.inc();
        if shipper.state.restarted(&failure) {
            tracing::error!(
                %failure,
                items = batch.len(),
                retry_in_ms = wait.as_millis() as u64,
                "a shipper failed while delivering a batch; it is restarted with the same batch (nothing is lost; what got indexed comes back as duplicates)"
            );
        }
        if !shipper.live().cfg.retry_forever
            && started.elapsed() >= shipper.live().cfg.retry_timeout.0
        {
            tracing::error!(%failure, items = batch.len(), "retry_timeout passed with every delivery of a batch failing; it goes to the dead-letter file");
            let all: Vec<usize> = (0..batch.len()).collect();
            let refused = Refusal::all(&all, 0, "shipper_failed");
            shipper.dead_letter(batch, &refused, Route::Index).await;
            return true;
        }
        shipper.promise_after(wait);
        tokio::time::sleep(wait).await;
        wait = wait
            .saturating_mul(2)
            .min(shipper.live().cfg.retry_max_interval.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::sink::SinkState;
    use crate::sink::elasticsearch::{Connector, DeadLetters};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn shipper(dir: &std::path::Path) -> Arc<Shipper> {
        shipper_with(dir, |_| {})
    }

    fn shipper_with(dir: &std::path::Path, change: impl FnOnce(&mut Config)) -> Arc<Shipper> {
        let mut cfg = Config::default();
        cfg.elasticsearch.hosts = vec!["http://127.0.0.1:9".into()];
        cfg.buffer.retry_wait.0 = Duration::from_millis(10);
        cfg.buffer.retry_max_interval.0 = Duration::from_millis(50);
        change(&mut cfg);
        Arc::new(Shipper::new(
            &cfg,
            Arc::new(Connector::new(&cfg.elasticsearch).unwrap()),
            Arc::new(Metrics::new()),
            Arc::new(SinkState::default()),
            Arc::new(DeadLetters::new(dir)),
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shipper_that_panics_is_restarted_with_its_batch_counted_and_shown_in_health() {
        let dir = tempfile::tempdir().unwrap();
        let s = shipper(dir.path());
        let batch = Arc::new(Batch::in_memory(b"{\"create\":{}}\n{}\n".to_vec(), &[0]));
        let runs = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, k) = (runs.clone(), seen.clone());
        let delivered = until_delivered(&s, &batch, move |b| {
            let (r, k) = (r.clone(), k.clone());
            async move {
                k.lock().unwrap().push(b.len());
                if r.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("overflow when adding durations");
                }
            }
        })
        .await;
        assert!(delivered);
        assert_eq!(runs.load(Ordering::SeqCst), 3, "two failures, then done");
        assert_eq!(
            *seen.lock().unwrap(),
            vec![1, 1, 1],
            "every run got the same batch"
        );
        assert_eq!(s.metrics.shipper_restarts.get(), 2);
        let (working, detail) = s.state.describe();
        assert!(!working, "{detail}");
        assert!(
            detail.contains("restarted with its batch, 2 time(s)")
                && detail.contains("overflow when adding durations"),
            "{detail}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_that_fails_every_delivery_is_dead_lettered_after_retry_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let s = shipper_with(dir.path(), |cfg| {
            cfg.buffer.retry_forever = false;
            cfg.buffer.retry_timeout.0 = Duration::from_millis(100);
        });
        let item = b"{\"create\":{\"_id\":\"a\"}}\n{\"seq\":1}\n".to_vec();
        let batch = Arc::new(Batch::in_memory(item, &[0]));
        let delivered = until_delivered(&s, &batch, |_| async { panic!("always") }).await;
        assert!(delivered, "the batch found its end: the dead-letter file");
        let text =
            std::fs::read_to_string(dir.path().join("dead-letter/dead-letter.ndjson")).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"reason\":\"shipper_failed\""), "{text}");
        assert!(s.metrics.shipper_restarts.get() >= 1);
    }
}
