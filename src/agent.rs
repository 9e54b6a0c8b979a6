//! The agent: builds every stage from a [`Config`], runs them, and shuts them down in order.
//!
//! Shutdown: the tailer stops reading and hands on its open chunk; shippers drain the queue for
//! up to [`DRAIN_TIMEOUT`]; checkpoints are saved last, so they hold exactly what was
//! acknowledged. Whatever was not acknowledged by then is read again on the next start.

use crate::buffer::Queue;
use crate::config::Config;
use crate::observe::{self, Metrics, Status};
use crate::parse::DocumentWriter;
use crate::sink::{DeadLetters, IndexPattern, ItemEncoder, Shipper, SinkState};
use crate::tail::{Checkpoints, Output, Tailer, TailerState};
use anyhow::{Context, anyhow};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long shutdown waits for in-flight and queued chunks to be acknowledged.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often acknowledged progress is written to the checkpoint file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the agent until `stop` resolves.
pub async fn run(cfg: Config, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let checkpoints = Arc::new(Checkpoints::open(&cfg.data_dir)?);
    let metrics = Arc::new(Metrics::new());
    let queue = Arc::new(Queue::new(
        cfg.buffer.queue_limit_length,
        cfg.buffer.chunk_limit_size.as_usize(),
    ));
    let shutdown = Arc::new(AtomicBool::new(false));

    let listener = observe::bind(cfg.api.listen)
        .await
        .with_context(|| format!("cannot listen on api.listen {}", cfg.api.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /health and /ready");

    let index = IndexPattern::new(&cfg.elasticsearch.index).map_err(|e| anyhow!(e))?;
    let encoder = ItemEncoder::new(index, DocumentWriter::new(&cfg.parse));
    let out = Output::new(
        encoder,
        queue.clone(),
        metrics.clone(),
        shutdown.clone(),
        &cfg,
    );
    let tailer_state = Arc::new(TailerState::default());
    let tailer = Tailer::new(&cfg, checkpoints.clone(), out, tailer_state.clone());
    let tailer = std::thread::Builder::new()
        .name("tailer".into())
        .spawn(move || tailer.run())
        .context("cannot start the tailer thread")?;

    let sink_state = Arc::new(SinkState::default());
    let dead = Arc::new(DeadLetters::new(&cfg.data_dir));
    let shipper = Arc::new(Shipper::new(
        &cfg,
        metrics.clone(),
        sink_state.clone(),
        dead,
    )?);
    let workers: Vec<_> = (0..cfg.buffer.flush_thread_count)
        .map(|_| tokio::spawn(shipper.clone().run(queue.clone(), checkpoints.clone())))
        .collect();

    let saver = {
        let checkpoints = checkpoints.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
            let mut failing = false;
            loop {
                tick.tick().await;
                let ok = save(&checkpoints, &metrics, !failing).await;
                if ok && failing {
                    tracing::info!("checkpoints are written again");
                }
                failing = !ok;
            }
        })
    };
    let status = Arc::new(Status {
        metrics: metrics.clone(),
        tailer: tailer_state,
        sink: sink_state,
    });
    let api = tokio::spawn(observe::serve(listener, status));
    tracing::info!(
        include = ?cfg.input.include,
        hosts = ?cfg.elasticsearch.hosts,
        "logferry started"
    );

    stop.await;
    tracing::info!("shutting down: stop reading, drain the queue, save checkpoints");
    shutdown.store(true, Ordering::Relaxed);
    tokio::task::spawn_blocking(move || tailer.join())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| anyhow!("the tailer thread panicked"))?;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        for w in workers {
            let _ = w.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "Elasticsearch did not acknowledge everything before the drain timeout; the rest is read again on the next start"
        );
    }
    saver.abort();
    api.abort();
    save(&checkpoints, &metrics, true).await;
    tracing::info!("stopped");
    Ok(())
}

/// Writes the checkpoints; true on success. A failure is always counted, and logged when `log`
/// (the first of a run of failures), so a full disk gives one line, not one a second.
async fn save(checkpoints: &Arc<Checkpoints>, metrics: &Metrics, log: bool) -> bool {
    let c = checkpoints.clone();
    let error = match tokio::task::spawn_blocking(move || c.save()).await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    metrics.checkpoint_errors.inc();
    if log {
        tracing::error!(%error, "checkpoint write failed; retrying every second (progress is kept in memory meanwhile)");
    }
    false
}
