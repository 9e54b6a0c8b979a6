//! The output, chosen at start: Elasticsearch's shippers (with setup before their first
//! batch) or Kafka's (`[kafka]` present: no setup, no Elasticsearch hosts). Either way
//! `flush_thread_count` shippers take batches from the one buffer, and a shipper that fails
//! is counted, shown in `/health` and started again.

use super::{DRAIN_TIMEOUT, SECRET_RELOAD_INTERVAL, Store};
use crate::buffer::Buffer;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sink::SinkState;
use crate::sink::elasticsearch::setup::FIRST_ATTEMPT_WAIT;
use crate::sink::elasticsearch::{DeadLetters, Shipper};
use crate::sink::kafka::KafkaShipper;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Where records go; a reload reconfigures it.
#[derive(Clone)]
pub(super) enum Sink {
    Elasticsearch(Arc<Shipper>),
    Kafka(Arc<KafkaShipper>),
}

impl Sink {
    /// One shipper's loop, until the buffer closes.
    fn run(&self, buffer: Arc<Buffer>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match self {
            Sink::Elasticsearch(s) => Box::pin(s.clone().run(buffer)),
            Sink::Kafka(k) => Box::pin(k.clone().run(buffer)),
        }
    }

    /// A reloaded config, from the next attempt on.
    pub(super) fn reconfigure(&self, cfg: &Config) {
        match self {
            Sink::Elasticsearch(s) => s.reconfigure(cfg),
            Sink::Kafka(k) => k.reconfigure(cfg),
        }
    }
}

pub(super) struct Shipping {
    pub shippers: tokio::task::JoinHandle<()>,
    /// What every shipper runs with; a reload reconfigures it.
    pub sink: Sink,
    /// Reloads rotated certificates and credentials (Elasticsearch), or probes brokers found
    /// unreachable while nothing is shipped (Kafka).
    pub watcher: tokio::task::JoinHandle<()>,
}

/// The shippers of the output `cfg` names. Elasticsearch's start once setup has made its first
/// attempt (`setup_tried`, or [`FIRST_ATTEMPT_WAIT`] has passed), so that the first index of a
/// fresh cluster is created with its template; Kafka's at once (`setup_tried` is `None`: no
/// setup runs), with a probe that tells `/health` when brokers found unreachable answer again.
pub(super) fn start_shipping(
    cfg: &Config,
    store: &Store,
    state: &Arc<SinkState>,
    setup_tried: Option<tokio::sync::oneshot::Receiver<()>>,
) -> anyhow::Result<Shipping> {
    let watcher = match &cfg.kafka {
        None => tokio::spawn(store.connector.clone().watch(SECRET_RELOAD_INTERVAL)),
        Some(_) => {
            let kafka = Arc::new(KafkaShipper::new(
                cfg,
                store.metrics.clone(),
                state.clone(),
            )?);
            let probe = tokio::spawn(kafka.clone().probe(store.buffer.clone()));
            return Ok(spawn(Sink::Kafka(kafka), probe, None, cfg, store, state));
        }
    };
    let dead = Arc::new(DeadLetters::new(&cfg.data_dir).bounded(
        cfg.elasticsearch.dead_letter_max_size.0,
        store.metrics.dead_letters_rotated_out.clone(),
    ));
    let shipper = Arc::new(Shipper::new(
        cfg,
        store.connector.clone(),
        store.metrics.clone(),
        state.clone(),
        dead,
    ));
    let sink = Sink::Elasticsearch(shipper);
    Ok(spawn(sink, watcher, setup_tried, cfg, store, state))
}

fn spawn(
    sink: Sink,
    watcher: tokio::task::JoinHandle<()>,
    setup_tried: Option<tokio::sync::oneshot::Receiver<()>>,
    cfg: &Config,
    store: &Store,
    state: &Arc<SinkState>,
) -> Shipping {
    let shipping = ship(
        sink.clone(),
        store.buffer.clone(),
        cfg.buffer.flush_thread_count,
        store.metrics.clone(),
        state.clone(),
        cfg.buffer.retry_wait.0,
    );
    let shippers = tokio::spawn(async move {
        if let Some(tried) = setup_tried {
            let _ = tokio::time::timeout(FIRST_ATTEMPT_WAIT, tried).await;
        }
        shipping.await;
    });
    Shipping {
        shippers,
        sink,
        watcher,
    }
}

/// Gives the requests in flight [`DRAIN_TIMEOUT`] to be answered.
pub(super) async fn drain(shippers: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(DRAIN_TIMEOUT, shippers).await.is_err() {
        tracing::warn!(
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "requests in flight were not answered before the drain timeout; their records stay in the buffer for the next start"
        );
    }
}

/// Runs `count` shippers until the buffer closes. A shipper that ends by failing (a panic
/// outside a delivery: a delivery's own failures are handled inside it, batch and all) is
/// counted, logged once, shown in `/health`, and started again after `pause`; one that ends
/// because the buffer closed is done.
async fn ship(
    sink: Sink,
    buffer: Arc<Buffer>,
    count: usize,
    metrics: Arc<Metrics>,
    state: Arc<SinkState>,
    pause: Duration,
) {
    let mut shippers = tokio::task::JoinSet::new();
    for _ in 0..count {
        shippers.spawn(sink.run(buffer.clone()));
    }
    while let Some(ended) = shippers.join_next().await {
        let failure = match ended {
            Err(e) if e.is_panic() => crate::sink::panic_message(e),
            // Done (the buffer closed) or cancelled (the runtime is going away).
            _ => continue,
        };
        metrics.shipper_restarts.inc();
        if state.restarted(&failure) {
            tracing::error!(%failure, "a shipper failed and is restarted");
        }
        let again = sink.run(buffer.clone());
        shippers.spawn(async move {
            // Not at once: a failure that repeats must not spin a core.
            tokio::time::sleep(pause).await;
            again.await;
        });
    }
}
