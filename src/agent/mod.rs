//! The agent: builds every stage from a [`Config`], runs them, and shuts them down in order.
//!
//! Threads: discovery (finds and opens files, never touches the buffer), the tailer (reads,
//! decodes, encodes, appends to the buffer), the forward listeners' connections (tokio tasks
//! appending through the same appender, from the blocking pool), the committer (fsyncs the buffer and moves
//! checkpoints), and tokio tasks for the shippers (supervised: one that panics is restarted
//! with its batch), the endpoints and the saver (checkpoints and the buffer's ack cursor, at most
//! once a second while the buffer moves). The buffer's gauges are brought up to date by each
//! scrape of `/metrics`.
//!
//! Shutdown: the tailer stops reading and appends its open chunk; the committer fsyncs it; no
//! new batches leave the buffer, and requests in flight get up to [`DRAIN_TIMEOUT`] to finish;
//! checkpoints and the ack cursor are saved last. What is buffered stays for the next start
//! (Fluentd's `flush_at_shutdown false` for file buffers): a restart does not wait for a cluster.

mod checks;
mod inputs;
mod output;
pub mod reload;
mod shipping;

pub use inputs::EntryOutput;
pub use output::{BufferOutput, GiveUp, SharedAppender, encoder};

use crate::buffer::{self, Appender, Buffer};
use crate::config::Config;
use crate::kube::cache as kube_cache;
use crate::metrics::Metrics;
use crate::observe::{self, Status};
use crate::sink::SinkState;
use crate::sink::elasticsearch::Connector;
use crate::source::files::{self, Checkpoints, Tailer, TailerState};
use crate::source::kafka::{Consuming, Offsets};
use anyhow::{Context, anyhow};
use shipping::{drain, start_shipping};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long shutdown waits for requests in flight to be answered.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the TLS and credential files are checked for a change (a rotated Secret).
const SECRET_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How often progress is written to the checkpoint and cursor files.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// The longest the input lag goes unmeasured while nothing the agent sees moves and the last
/// measure found none (while there is lag it is measured every second): lines written while
/// reading is stuck show within it. A stat per followed file, so a quiet node pays it rarely.
const LAG_RECHECK: Duration = Duration::from_secs(60);

/// Runs the agent until `stop` resolves, reloading its config as `reload` says (never when
/// `None`).
pub async fn run(
    cfg: Config,
    reload: Option<reload::Options>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let hangup = reload.as_ref().and_then(|_| reload::catch_hangup());
    let store = Store::open(&cfg)?;
    let listener = bind_api(&cfg).await?;
    let kube = start_kubernetes(&cfg, &store.metrics).await?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let tailer_state = Arc::new(TailerState::default());
    let (to_tail, reloads) = tokio::sync::watch::channel(Arc::new(cfg.clone()));
    let forward_configs = reload.is_some().then(|| to_tail.subscribe());
    let reloads = reload.is_some().then_some(reloads);
    let (tailer, wake_tailer) = start_tailer(
        &cfg,
        &store,
        kube.clone(),
        &shutdown,
        &tailer_state,
        reloads,
    )?;
    let waiting = (shutdown.clone(), tailer_state.clone());
    let listeners = inputs::start(&cfg, &store, waiting, forward_configs).await?;
    let sink_state = Arc::new(SinkState::default());
    let (installing, setup_tried) =
        reload::Installing::start_for(&cfg, &store.connector, &store.metrics);
    let shipping = start_shipping(&cfg, &store, &sink_state, setup_tried)?;
    let config_state = Arc::new(reload::ConfigState::default());
    let stages = reload::Stages {
        connector: store.connector.clone(),
        installing: installing.clone(),
        sink: shipping.sink.clone(),
        kube: kube.clone(),
        metrics: store.metrics.clone(),
        tail: to_tail,
        wake_tail: wake_tailer.clone(),
    };
    let reloader = reload::start(reload, &cfg, stages, &config_state, hangup);
    let saver = tokio::spawn(store.saver(tailer_state.clone()));
    let status = Arc::new(Status {
        refresh: Some(store.gauges()),
        metrics: store.metrics.clone(),
        checks: checks::all(checks::Parts {
            metrics: store.metrics.clone(),
            tailer: tailer_state,
            sink: sink_state,
            buffer: store.buffer.clone(),
            kube,
            setup: installing.clone().map(|i| i as _),
            kafka: cfg.kafka.is_some(),
            consuming: (!cfg.input.kafka.is_empty()).then(|| store.consuming.clone() as _),
            config: config_state,
        }),
    });
    let api = tokio::spawn(observe::serve(listener, status));
    announce(&cfg);
    let fatal = tokio::select! {
        () = stop => None,
        e = store.buffer.failure() => Some(e),
    };
    tracing::info!("shutting down: stop reading, finish requests in flight, save checkpoints");
    reloader.abort();
    shutdown.store(true, Ordering::Relaxed);
    // Frames not yet durable get no ack: their forwarders send them again to the next start.
    listeners.iter().for_each(tokio::task::JoinHandle::abort);
    wake_tailer.wake();
    join("tailer", tailer).await?;
    store.buffer.stop_committing();
    join("committer", store.committer).await?;
    store.buffer.close();
    drain(shipping.shippers).await;
    saver.abort();
    api.abort();
    shipping.watcher.abort();
    if let Some(installing) = &installing {
        installing.stop();
    }
    save(&store.checkpoints, &store.buffer, &store.metrics, true).await;
    if let Some(e) = fatal {
        return Err(anyhow!(e));
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind_api(cfg: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = observe::bind(cfg.api.listen)
        .await
        .with_context(|| format!("cannot listen on api.listen {}", cfg.api.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /health and /ready");
    Ok(listener)
}

fn announce(cfg: &Config) {
    let listen: Vec<_> = cfg.input.forward.iter().map(|f| f.listen).collect();
    tracing::info!(
        include = ?cfg.input.include,
        forward = ?listen,
        to = ?cfg.kafka.as_ref().map_or(&cfg.elasticsearch.hosts, |k| &k.brokers),
        "logferry started"
    );
}

/// What keeps the agent's progress: checkpoints, the buffer and its committer thread, and the
/// connection settings (opened first: unreadable certificates or secret files stop the start
/// before anything is read).
struct Store {
    connector: Arc<Connector>,
    checkpoints: Arc<Checkpoints>,
    metrics: Arc<Metrics>,
    buffer: Arc<Buffer>,
    /// The buffer's one writer, shared by the tailer and the forward listeners.
    appender: SharedAppender,
    /// The Kafka inputs' positions in the buffer.
    offsets: Arc<Offsets>,
    /// Whether the Kafka inputs consume.
    consuming: Arc<Consuming>,
    committer: std::thread::JoinHandle<()>,
}

impl Store {
    /// The task that saves the checkpoints and the ack cursor as the buffer moves.
    fn saver(&self, tailer: Arc<TailerState>) -> impl Future<Output = ()> + use<> {
        save_as_it_moves(
            self.checkpoints.clone(),
            self.buffer.clone(),
            self.metrics.clone(),
            tailer,
        )
    }

    /// Brings the buffer's gauges up to date, for each scrape.
    fn gauges(&self) -> Box<dyn Fn() + Send + Sync> {
        let (buffer, metrics) = (self.buffer.clone(), self.metrics.clone());
        Box::new(move || update_gauges(&buffer, &metrics))
    }

    fn open(cfg: &Config) -> anyhow::Result<Store> {
        crate::disk::create_private_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
        let connector = Arc::new(Connector::new(&cfg.elasticsearch)?);
        // The node's name goes into the document ids of files first tracked from now on.
        let id_node = crate::vocab::node_name(&cfg.kubernetes.node_name);
        let checkpoints = Arc::new(Checkpoints::open_on(&cfg.data_dir, &id_node)?);
        let metrics = Arc::new(Metrics::new());
        let buffer = Arc::new(Buffer::open(
            buffer::Options {
                dir: cfg.buffer_dir(),
                max_size: cfg.buffer.max_size.0,
                segment_size: cfg.buffer.segment_size(),
                overflow: cfg.buffer.overflow_action,
            },
            metrics.clone(),
        )?);
        // Positions the buffer holds are further than the checkpoints file where it was not
        // saved since (once a second), or lost: files resume there, reading nothing twice.
        // A Kafka input's are further than its group's commit where the agent stopped between
        // the two.
        let (kafka, files): (Vec<_>, Vec<_>) = buffer
            .take_recovered_positions()
            .into_iter()
            .partition(|p| Offsets::is_ours(p));
        checkpoints.restore(files);
        let offsets = Arc::new(Offsets::restore(&kafka));
        metrics.buffer_max_bytes.set(cfg.buffer.max_size.0 as i64);
        let committer = {
            let (buffer, checkpoints) = (buffer.clone(), checkpoints.clone());
            std::thread::Builder::new()
                .name("committer".into())
                .spawn(move || buffer.commit_loop(|durable| checkpoints.advance(durable)))
                .context("cannot start the committer thread")?
        };
        let appender = Arc::new(std::sync::Mutex::new(
            Appender::new(buffer.clone())
                .with_positions(Arc::new(FilePositions(checkpoints.clone())))
                .with_positions(Arc::new(KafkaPositions(offsets.clone()))),
        ));
        Ok(Store {
            connector,
            checkpoints,
            metrics,
            buffer,
            appender,
            offsets,
            consuming: Arc::default(),
            committer,
        })
    }
}

/// The files' checkpoints as the positions the buffer keeps beside their records (the Kafka
/// inputs' offsets are the other source that resumes).
struct FilePositions(Arc<Checkpoints>);

impl buffer::Positions for FilePositions {
    fn after(&self, advances: &[(crate::vocab::FileKey, u64)]) -> Vec<u8> {
        self.0.positions_after(advances)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0.positions_snapshot()
    }
}

/// The Kafka inputs' offsets, which each batch states on its chunk; the buffer asks only for
/// a snapshot at each segment's head.
struct KafkaPositions(Arc<Offsets>);

impl buffer::Positions for KafkaPositions {
    fn snapshot(&self) -> Vec<u8> {
        self.0.snapshot()
    }
}

/// The pod metadata cache and its watches, when `[kubernetes]` is enabled.
async fn start_kubernetes(
    cfg: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<kube_cache::Cache>>> {
    if !cfg.kubernetes.enabled {
        return Ok(None);
    }
    let node = kube_cache::node_name(&cfg.kubernetes)?;
    let client = kube_cache::client(&cfg.kubernetes).await?;
    let cache = Arc::new(kube_cache::Cache::new(&cfg.kubernetes, metrics.clone()));
    tokio::spawn(kube_cache::watch_pods(
        cache.clone(),
        client.clone(),
        node.clone(),
    ));
    tokio::spawn(kube_cache::watch_namespaces(cache.clone(), client));
    tracing::info!(%node, "watching this node's pods and all namespaces for metadata");
    Ok(Some(cache))
}

/// The tailer thread, handing what it reads to a [`BufferOutput`]: encoded into the buffer.
fn start_tailer(
    cfg: &Config,
    store: &Store,
    kube: Option<Arc<kube_cache::Cache>>,
    shutdown: &Arc<AtomicBool>,
    state: &Arc<TailerState>,
    reloads: Option<files::Reloads>,
) -> anyhow::Result<(std::thread::JoinHandle<()>, files::Waker)> {
    let encoder = output::encoder(cfg, &store.metrics, None)?;
    // While an append waits for room, the tailer is alive, and shutdown ends the wait.
    let give_up: GiveUp = {
        let (state, shutdown) = (state.clone(), shutdown.clone());
        Box::new(move || {
            state.beat();
            shutdown.load(Ordering::Relaxed)
        })
    };
    let out = BufferOutput::new(
        encoder,
        store.appender.clone(),
        store.metrics.clone(),
        give_up,
        cfg,
    );
    let ctx = files::Context {
        metrics: store.metrics.clone(),
        shutdown: shutdown.clone(),
        state: state.clone(),
        kube,
        reloads,
    };
    let tailer = Tailer::new(cfg, store.checkpoints.clone(), Box::new(out), ctx);
    let waker = tailer.waker();
    let thread = std::thread::Builder::new()
        .name("tailer".into())
        .spawn(move || tailer.run())
        .context("cannot start the tailer thread")?;
    Ok((thread, waker))
}

/// Waits for a thread on the blocking pool, so the runtime keeps serving meanwhile.
async fn join(name: &str, thread: std::thread::JoinHandle<()>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| anyhow!("the {name} thread panicked"))
}

/// The checkpoint and cursor files, at most once a [`CHECKPOINT_INTERVAL`] while the buffer
/// moves (records made durable or acknowledged), and the input lag.
///
/// The lag costs a stat per followed file, so it is measured again only when it can have
/// changed for a reason the agent sees (a checkpoint moved, or there was lag to watch), and
/// otherwise every [`LAG_RECHECK`] if lines may have been written since that the tailer has
/// not read (reading is stuck: [`TailerState::writes`] moved): on a quiet node of 500 files,
/// 500 stats a second were most of what the agent did. A quiet agent sleeps on the buffer's
/// progress, waking only for that recheck; one that ticked every second anyway paid a wake-up
/// of the runtime and one of the blocking pool each second for nothing.
async fn save_as_it_moves(
    checkpoints: Arc<Checkpoints>,
    buffer: Arc<Buffer>,
    metrics: Arc<Metrics>,
    tailer: Arc<TailerState>,
) {
    let mut moved = buffer.moved();
    let mut failing = false;
    // At the last measure: the checkpoints' fingerprint, the tailer's writes, when, the lag.
    let mut measured: Option<(u64, u64, Instant, u64)> = None;
    loop {
        moved.mark_unchanged();
        let (seen, writes) = (checkpoints.fingerprint(), tailer.writes());
        let due = measured.is_none_or(|(fingerprint, written, at, lag)| {
            fingerprint != seen || lag > 0 || (written != writes && at.elapsed() >= LAG_RECHECK)
        });
        let c = checkpoints.clone();
        if due && let Ok(lag) = tokio::task::spawn_blocking(move || c.lag()).await {
            metrics.input_lag_bytes.set(lag as i64);
            measured = Some((seen, writes, Instant::now(), lag));
        } else if let Some((_, _, at, _)) = measured.as_mut()
            && at.elapsed() >= LAG_RECHECK
        {
            // Nothing written since: the measure stands until the next recheck.
            *at = Instant::now();
        }
        if failing || checkpoints.unsaved() || buffer.cursor_unsaved() {
            let ok = save(&checkpoints, &buffer, &metrics, !failing).await;
            if ok && failing {
                tracing::info!("checkpoints are written again");
            }
            failing = !ok;
        }
        tokio::time::sleep(CHECKPOINT_INTERVAL).await;
        let lag = measured.map_or(0, |(_, _, _, lag)| lag);
        if failing || lag > 0 || moved.has_changed().unwrap_or(true) {
            continue;
        }
        // Quiet. Changes the buffer does not signal (a file forgotten, the read position
        // moved past an empty segment) wait for the recheck.
        let recheck = measured.map_or(Duration::ZERO, |(_, _, at, _)| {
            (at + LAG_RECHECK).saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = moved.changed() => {}
            () = tokio::time::sleep(recheck) => {}
        }
    }
}

/// The buffer's gauges, brought up to date for a scrape of `/metrics`.
fn update_gauges(buffer: &Buffer, metrics: &Metrics) {
    let s = buffer.stats();
    metrics.buffer_bytes.set(s.bytes as i64);
    metrics.buffer_records.set(s.records as i64);
    metrics
        .buffer_oldest_age
        .set(s.oldest.map_or(0.0, |d| d.as_secs_f64()));
}

/// Writes the checkpoints and the buffer's ack cursor; true on success. A failure is always
/// counted, and logged when `log` (the first of a run of failures), so a full disk gives one
/// line, not one a second.
async fn save(
    checkpoints: &Arc<Checkpoints>,
    buffer: &Arc<Buffer>,
    metrics: &Metrics,
    log: bool,
) -> bool {
    let (c, b) = (checkpoints.clone(), buffer.clone());
    let saved = tokio::task::spawn_blocking(move || {
        // Independent files: one failing must not keep the other from being written.
        let checkpoints = c.save().map_err(|e| e.to_string());
        let cursor = b.save_cursor().map_err(|e| e.to_string());
        checkpoints.and(cursor)
    });
    let error = match saved.await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    metrics.checkpoint_errors.inc();
    if log {
        tracing::error!(%error, "checkpoint or buffer cursor write failed; retrying every second (progress is kept in memory meanwhile)");
    }
    false
}
