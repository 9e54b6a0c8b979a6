//! The network inputs' way out, as the agent wires it: the entries a forward listener's frame
//! or a Kafka consumer's batch brings are encoded (parsed, redacted, routed, with the ids their
//! source settled) into chunks and appended to the disk buffer through the appender the tailer
//! uses too, with the source's positions after them; the source is told once they are
//! durable, so a forward ack or a Kafka commit never promises what a crash could lose.

use super::output::{GiveUp, RecordCounters, SharedAppender, encoder, lock};
use crate::buffer::Chunk;
use crate::config::Config;
use crate::encode::{ItemEncoder, finished_document};
use crate::metrics::Metrics;
use crate::source::files::TailerState;
use crate::source::forward::{self, Closed, Deliver, Durable, Entry};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Encodes and appends what the forward listeners and the Kafka consumers receive.
pub struct EntryOutput {
    encoding: Mutex<Encoding>,
    appender: SharedAppender,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    /// While a frame's append waits for room, the tailer waits for the appender behind it:
    /// the wait beats for the tailer, so `/health` says the buffer is full, not the tailer
    /// stalled.
    tailer: Arc<TailerState>,
}

struct Encoding {
    encoder: ItemEncoder,
    counters: RecordCounters,
    /// Reloaded configs: routes, parse and redaction follow them as the tailer's do.
    configs: Option<watch::Receiver<Arc<Config>>>,
    /// A frame's entries are appended in chunks of at most this size.
    chunk_limit: usize,
}

impl EntryOutput {
    pub fn new(
        cfg: &Config,
        appender: SharedAppender,
        metrics: Arc<Metrics>,
        (shutdown, tailer): (Arc<AtomicBool>, Arc<TailerState>),
        configs: Option<watch::Receiver<Arc<Config>>>,
    ) -> anyhow::Result<EntryOutput> {
        let encoder = encoder(cfg, &metrics, None)?;
        Ok(EntryOutput {
            encoding: Mutex::new(Encoding {
                counters: RecordCounters::new(&encoder, &metrics),
                encoder,
                configs,
                chunk_limit: cfg.buffer.write_chunk_max(),
            }),
            appender,
            metrics,
            shutdown,
            tailer,
        })
    }
}

impl Encoding {
    /// Takes a reloaded config's routes, parse and redaction.
    fn follow(&mut self, metrics: &Metrics) {
        let Some(configs) = &mut self.configs else {
            return;
        };
        if !configs.has_changed().unwrap_or(false) {
            return;
        }
        let cfg = configs.borrow_and_update().clone();
        match encoder(&cfg, metrics, Some(&self.encoder)) {
            Ok(encoder) => {
                self.counters = RecordCounters::new(&encoder, metrics);
                self.encoder = encoder;
                self.chunk_limit = cfg.buffer.write_chunk_max();
            }
            Err(e) => {
                tracing::error!(error = %e, "forward: cannot apply the reloaded routes, parse or redaction; keeping the previous ones")
            }
        }
    }

    /// The entries as chunks of bulk items, the last one empty of items if need be.
    fn chunks(&mut self, entries: &[Entry]) -> Vec<Chunk> {
        let mut chunks = vec![Chunk::new()];
        for e in entries {
            let chunk = chunks.last_mut().expect("one chunk at least");
            chunk.begin_item();
            // A finished document that is not one JSON object is indexed as a record of this
            // agent's: its text in `log`, routed by this agent's routes.
            let finished = e
                .finished
                .as_ref()
                .and_then(|index| finished_document(&e.record.message).map(|doc| (index, doc)));
            if let Some((index, doc)) = finished {
                self.encoder
                    .encode_finished(&mut chunk.body, index, &e.id, &doc);
            } else {
                let encoded = self
                    .encoder
                    .encode_as(&mut chunk.body, &e.id, &e.record, &e.meta);
                if !self.counters.count(encoded, e.record.flags) {
                    chunk.cancel_item();
                    continue;
                }
            }
            chunk.end_item();
            if chunk.body.len() >= self.chunk_limit {
                chunks.push(Chunk::new());
            }
        }
        chunks
    }
}

impl Deliver for EntryOutput {
    fn deliver(&self, entries: Vec<Entry>, positions: Vec<u8>) -> Result<Durable, Closed> {
        if self.shutdown.load(Ordering::Relaxed) {
            return Err(Closed);
        }
        let mut chunks = {
            let mut enc = lock(&self.encoding);
            enc.follow(&self.metrics);
            enc.chunks(&entries)
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Chunks become durable in the order they are appended: the last one's waiter says
        // the whole frame is, and the source's positions are after its last record.
        if let Some(last) = chunks.last_mut() {
            last.on_durable.push(move || {
                let _ = tx.send(());
            });
            last.positions = positions;
        }
        let (shutdown, tailer) = (self.shutdown.clone(), self.tailer.clone());
        let give_up: GiveUp = Box::new(move || {
            tailer.beat();
            shutdown.load(Ordering::Relaxed)
        });
        let mut appender = lock(&self.appender);
        for chunk in &mut chunks {
            appender.append(chunk, &give_up).map_err(|_| Closed)?;
        }
        Ok(rx)
    }
}

/// Starts every `[[input.kafka]]` consumer and binds every `[[input.forward]]` listener (an
/// address in use stops the start); the tasks end when aborted. Both append through the same
/// output.
pub(super) async fn start(
    cfg: &Config,
    store: &super::Store,
    waiting: (Arc<AtomicBool>, Arc<TailerState>),
    configs: Option<watch::Receiver<Arc<Config>>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let metrics = &store.metrics;
    let out = Arc::new(EntryOutput::new(
        cfg,
        store.appender.clone(),
        metrics.clone(),
        waiting,
        configs,
    )?);
    let mut tasks = Vec::new();
    for (i, k) in cfg.input.kafka.iter().enumerate() {
        let mut client = rdkafka::ClientConfig::new();
        client.set("bootstrap.servers", k.brokers.join(","));
        crate::sink::kafka::producer::secure(&mut client, k.tls.as_ref(), k.sasl.as_ref())
            .map_err(|e| anyhow::anyhow!("input.kafka[{i}]: {e}"))?;
        let consumer = crate::source::kafka::consumer(client.clone(), k)
            .map_err(|e| anyhow::anyhow!("input.kafka[{i}]: cannot create the consumer: {e}"))?;
        tracing::info!(topics = ?k.topics, group = %k.group_id, "kafka input: consuming");
        tasks.push(tokio::spawn(crate::source::kafka::run(
            consumer,
            crate::source::kafka::Input {
                group: k.group_id.clone(),
                client,
                out: out.clone(),
                offsets: store.offsets.clone(),
                consuming: store.consuming.clone(),
                metrics: metrics.clone(),
            },
        )));
    }
    for (i, f) in cfg.input.forward.iter().enumerate() {
        let listener = forward::bind(f)
            .await
            .map_err(|e| anyhow::anyhow!("input.forward[{i}]: {e}"))?;
        let (tls, client_certificates) = match &f.tls {
            Some(t) => (true, t.ca_file.is_some()),
            None => (false, false),
        };
        tracing::info!(addr = %listener.local_addr()?, tls, client_certificates, "forward: listening");
        let out: Arc<dyn Deliver> = out.clone();
        tasks.push(tokio::spawn(listener.serve(out, metrics.clone())));
    }
    Ok(tasks)
}
