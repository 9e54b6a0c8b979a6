//! Config reload without a restart: on SIGHUP, and with `--watch-config` whenever the file's
//! content changes (looked at every [`WATCH_INTERVAL`], which is how a ConfigMap update reaches
//! a running pod: the kubelet swaps the mounted file, nobody sends a signal).
//!
//! A new file is taken whole or not at all. It is validated as at start, and what could still
//! fail is built before anything changes: the encoder (routes, parse, redaction) and, when
//! `[elasticsearch]` connection settings changed, the HTTP client with its certificates and
//! credentials. A refused file keeps the running config, says why once in the log (file:line:
//! key), is counted in `logferry_config_reload_failures_total` and makes `/health`'s `config`
//! check degraded until a file is taken.
//!
//! An accepted file reaches each stage where the stage can take it without losing or repeating
//! a line: the tailer and discovery between two read passes (see `source::files::reload`), the shippers at
//! their next attempt, the metadata cache at its next lookup. Settings held from the start
//! ([`Config::keep_restart_only`]) keep their running values, are named in the log and in the
//! `config` check ("needs a restart"), and everything else still applies.

use super::output;
use crate::config::Config;
use crate::kube::cache::Cache;
use crate::metrics::Metrics;
use crate::observe::health::{Check, Level};
use crate::sink::elasticsearch::Connector;
use crate::sink::elasticsearch::setup::{FIRST_ATTEMPT_WAIT, Plan, Setup};
use crate::sink::kafka::KafkaShipper;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::signal::unix::Signal;
use tokio::sync::{oneshot, watch};

/// How often `--watch-config` reads the file. A ConfigMap change arrives after the kubelet's
/// sync (about a minute): a few seconds more is noise, and reading a small file is free.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(3);

/// How the agent's own log level is changed (main owns the subscriber); `Err` says why not.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Catches SIGHUP from now on (its default ends the process), for [`Reloader::start`]: called
/// first thing, so that a reload asked for during the start is not the agent's end.
pub(super) fn catch_hangup() -> Option<Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the config is reloaded only with --watch-config");
            None
        }
    }
}

/// What `main` hands the agent for reloading.
pub struct Options {
    /// The config file the agent was started with, read again at each reload.
    pub path: PathBuf,
    /// `--watch-config`: also reload when the file's content changes.
    pub watch: bool,
    pub set_log_level: Option<SetLogLevel>,
}

/// The running stages a reload reaches.
pub(super) struct Stages {
    pub connector: Arc<Connector>,
    /// Setup, when records go to Elasticsearch.
    pub installing: Option<Arc<Installing>>,
    pub sink: super::shipping::Sink,
    pub kube: Option<Arc<Cache>>,
    pub metrics: Arc<Metrics>,
    /// The tailer and discovery take what is sent here at their next pass, which `wake_tail`
    /// starts at once (a quiet node's tailer may otherwise sleep until its next rescan).
    pub tail: watch::Sender<Arc<Config>>,
    pub wake_tail: crate::source::files::Waker,
}

/// What `/health` says about the config: the last reload's trouble, if any.
#[derive(Default)]
pub struct ConfigState {
    trouble: Mutex<Option<String>>,
}

impl ConfigState {
    fn set(&self, trouble: Option<String>) {
        *self.trouble.lock().unwrap_or_else(PoisonError::into_inner) = trouble;
    }
}

impl Check for ConfigState {
    fn name(&self) -> &'static str {
        "config"
    }

    fn health(&self, _now: u64) -> (Level, String) {
        match &*self.trouble.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(t) => (Level::Degraded, t.clone()),
            None => (Level::Healthy, "running the config file as it is".into()),
        }
    }
}

/// Reloads as `options` say, until the task is aborted; never without options.
pub(super) fn start(
    options: Option<Options>,
    running: &Config,
    stages: Stages,
    state: &Arc<ConfigState>,
    hangup: Option<Signal>,
) -> tokio::task::JoinHandle<()> {
    match options {
        Some(o) => Reloader::new(o, running.clone(), stages, state.clone()).start(hangup),
        None => tokio::spawn(async {}),
    }
}

pub(super) struct Reloader {
    options: Options,
    /// The config the agent started with: what needs a restart is compared with it.
    started: Config,
    running: Config,
    stages: Stages,
    state: Arc<ConfigState>,
    /// The file's content when last read, so `--watch-config` acts on changes only.
    seen: Option<Vec<u8>>,
    /// The last refusal logged, so a file refused again is not logged again.
    refused: Option<String>,
}

impl Reloader {
    pub(super) fn new(
        options: Options,
        running: Config,
        stages: Stages,
        state: Arc<ConfigState>,
    ) -> Reloader {
        stages.metrics.config_last_reload_success.set(unix_now());
        let seen = std::fs::read(&options.path).ok();
        Reloader {
            options,
            started: running.clone(),
            running,
            stages,
            state,
            seen,
            refused: None,
        }
    }

    /// Reloads on each SIGHUP caught by `hangup`, and on each change of the file's content
    /// with `--watch-config`, until the task is aborted (at shutdown).
    pub(super) fn start(self, hangup: Option<Signal>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(hangup))
    }

    async fn run(mut self, mut hangup: Option<Signal>) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let asked = tokio::select! {
                Some(()) = async { hangup.as_mut()?.recv().await } => true,
                _ = tick.tick(), if self.options.watch => false,
                // No signal to wait for and no file to watch: nothing will ever ask.
                else => return,
            };
            if asked {
                tracing::info!(path = %self.options.path.display(), "SIGHUP: reloading the config");
                self.reload().await;
            } else if self.content_changed() {
                tracing::info!(path = %self.options.path.display(), "the config file changed: reloading it");
                self.reload().await;
            }
        }
    }

    fn content_changed(&mut self) -> bool {
        // An unreadable file is the reload's to report (once), not the watch's.
        let now = std::fs::read(&self.options.path).ok();
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }

    /// Reads, checks and applies the file; the running config stays if anything is refused.
    pub(super) async fn reload(&mut self) {
        // What a SIGHUP read is not a change for the next look of --watch-config.
        self.seen = std::fs::read(&self.options.path).ok();
        match self.prepare() {
            Ok(ready) => self.apply(ready).await,
            Err(why) => {
                let why = why.to_string();
                self.stages.metrics.config_reload_failures.inc();
                if self.refused.as_ref() != Some(&why) {
                    tracing::error!(error = %why, "config reload refused; the running config stays");
                }
                self.state.set(Some(format!(
                    "reload refused, running the previous config: {why}"
                )));
                self.refused = Some(why);
            }
        }
    }

    /// Everything that can fail, done before anything changes.
    fn prepare(&self) -> Result<Ready, Refused> {
        let mut cfg = Config::load(&self.options.path)?;
        let restart = cfg.keep_restart_only(&self.started);
        let file = self.options.path.display().to_string();
        if restart.contains(&crate::config::KAFKA_OUTPUT) {
            cfg.kafka.clone_from(&self.running.kafka);
            // A file that adds [kafka] was not asked for hosts; the running output needs them.
            if cfg.kafka.is_none() && cfg.elasticsearch.hosts.is_empty() {
                return Err(Refused::Stages {
                    file,
                    why: "elasticsearch.hosts: needs at least one URL while the agent ships to Elasticsearch (adding [kafka] takes a restart)".into(),
                });
            }
        }
        output::encoder(&cfg, &self.stages.metrics, None).map_err(|e| Refused::Stages {
            file: file.clone(),
            why: format!("{e:#}"),
        })?;
        KafkaShipper::check(&cfg).map_err(|e| Refused::Stages {
            file: file.clone(),
            why: e.to_string(),
        })?;
        let endpoint = self
            .stages
            .connector
            .prepare(&cfg.elasticsearch)
            .map_err(|source| Refused::Connection { file, source })?;
        Ok(Ready {
            cfg,
            restart,
            endpoint,
        })
    }

    async fn apply(&mut self, ready: Ready) {
        let Ready {
            cfg,
            restart,
            endpoint,
        } = ready;
        let s = &self.stages;
        s.connector.install(&cfg.elasticsearch, endpoint);
        s.sink.reconfigure(&cfg);
        if let Some(cache) = &s.kube
            && cfg.kubernetes != self.running.kubernetes
        {
            cache.reconfigure(&cfg.kubernetes);
        }
        if cfg.log_level != self.running.log_level
            && let Some(set) = &self.options.set_log_level
            && let Err(e) = set(&cfg.log_level)
        {
            tracing::warn!(error = %e, "the log level stays as it was");
        }
        let new_plan = Plan::new(&cfg) != Plan::new(&self.running)
            || cfg.elasticsearch.setup != self.running.elasticsearch.setup;
        let changed = changed_sections(&self.running, &cfg);
        let cfg = Arc::new(cfg);
        let shipper = match (&s.sink, &s.installing) {
            (super::shipping::Sink::Elasticsearch(shipper), Some(installing)) if new_plan => {
                Some((shipper.clone(), installing.clone()))
            }
            _ => None,
        };
        if let Some((shipper, installing)) = shipper {
            // As at a start: records are read and buffered under the new routes, but shipped
            // only once the new plan's first attempt has ended (or FIRST_ATTEMPT_WAIT has
            // passed), so that a new route's first index is created with its template.
            let held = shipper.hold().await;
            let setup = Setup::new(&cfg, s.connector.clone(), s.metrics.clone());
            let tried = installing.replace(setup);
            let _ = s.tail.send(cfg.clone());
            s.wake_tail.wake();
            let _ = tokio::time::timeout(FIRST_ATTEMPT_WAIT, tried).await;
            drop(held);
        } else {
            // Fails only once the tailer has stopped: nothing left to reconfigure then.
            let _ = s.tail.send(cfg.clone());
            s.wake_tail.wake();
        }
        self.running = (*cfg).clone();
        s.metrics.config_last_reload_success.set(unix_now());
        self.refused = None;
        if restart.is_empty() {
            self.state.set(None);
            tracing::info!(changed = ?changed, "config reloaded");
        } else {
            let keys = restart.join(", ");
            tracing::warn!(changed = ?changed, needs_restart = %keys, "config reloaded; these settings keep their running values until the agent restarts");
            self.state.set(Some(format!(
                "changed in the file, still running the old value (needs a restart): {keys}"
            )));
        }
    }
}

/// Index templates and lifecycle policies, as the running config asks: a reload whose routes or
/// `[elasticsearch.setup]` change them starts installing the new plan in place of the old one.
pub struct Installing {
    current: Mutex<(Arc<Setup>, tokio::task::AbortHandle)>,
}

impl Installing {
    /// Setup as `cfg` asks, started, and a receiver told when its first attempt has ended;
    /// neither when records go to Kafka (nothing is installed in Elasticsearch from a node
    /// then).
    #[allow(clippy::type_complexity)]
    pub(super) fn start_for(
        cfg: &Config,
        connector: &Arc<Connector>,
        metrics: &Arc<Metrics>,
    ) -> (Option<Arc<Installing>>, Option<oneshot::Receiver<()>>) {
        if cfg.kafka.is_some() {
            return (None, None);
        }
        let setup = Setup::new(cfg, connector.clone(), metrics.clone());
        let (first_attempt, setup_tried) = oneshot::channel();
        (
            Some(Installing::start(setup, first_attempt)),
            Some(setup_tried),
        )
    }

    /// Starts installing; `first` is told when the first attempt has ended.
    pub(super) fn start(setup: Arc<Setup>, first: oneshot::Sender<()>) -> Arc<Installing> {
        let task = tokio::spawn(setup.clone().run(first)).abort_handle();
        Arc::new(Installing {
            current: Mutex::new((setup, task)),
        })
    }

    /// Installs `setup`'s plan instead; the receiver is told when its first attempt has ended.
    fn replace(&self, setup: Arc<Setup>) -> oneshot::Receiver<()> {
        let (first, tried) = oneshot::channel();
        let mut current = self.lock();
        current.1.abort();
        // Not complete until the new plan is in place (or there is nothing to install).
        setup.metrics_incomplete();
        let task = tokio::spawn(setup.clone().run(first)).abort_handle();
        *current = (setup, task);
        tried
    }

    pub(super) fn stop(&self) {
        self.lock().1.abort();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Arc<Setup>, tokio::task::AbortHandle)> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Check for Installing {
    fn name(&self) -> &'static str {
        "setup"
    }

    fn health(&self, now: u64) -> (Level, String) {
        let setup = self.lock().0.clone();
        setup.health(now)
    }

    fn ready(&self) -> Option<(Level, String)> {
        let setup = self.lock().0.clone();
        setup.ready()
    }
}

/// Why a reloaded file was refused.
#[derive(Debug, thiserror::Error)]
enum Refused {
    /// It does not validate (every problem, with file, line and key).
    #[error("{0}")]
    Invalid(#[from] crate::config::Error),
    /// Routes, parse or redaction cannot be built (a hash key file that cannot be read).
    #[error("{file}: {why}")]
    Stages { file: String, why: String },
    /// The TLS or credential files cannot be used.
    #[error("{file}: elasticsearch: {source}")]
    Connection {
        file: String,
        #[source]
        source: crate::sink::elasticsearch::ConnectError,
    },
}

/// A config that passed every check, with what it still needs.
struct Ready {
    cfg: Config,
    /// Keys that differ from the running config and need a restart.
    restart: Vec<&'static str>,
    /// The HTTP client for changed connection settings, built and checked.
    endpoint: Option<crate::sink::elasticsearch::Endpoint>,
}

/// The top-level sections that differ, for the log.
fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let pairs: [(&'static str, bool); 12] = [
        ("log_level", old.log_level != new.log_level),
        ("input", old.input != new.input),
        ("parse", old.parse != new.parse),
        ("elasticsearch", old.elasticsearch != new.elasticsearch),
        ("kafka", old.kafka != new.kafka),
        ("buffer", old.buffer != new.buffer),
        ("kubernetes", old.kubernetes != new.kubernetes),
        ("multiline", old.multiline != new.multiline),
        ("redact", old.redact != new.redact),
        ("route", old.routes != new.routes),
        ("throttle", old.throttle != new.throttle),
        ("api", old.api != new.api),
    ];
    pairs.into_iter().filter(|p| p.1).map(|p| p.0).collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
