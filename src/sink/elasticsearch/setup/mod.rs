//! Setup: the index templates and retention policies the config asks for, installed in the
//! cluster at start ([`Setup::run`], retried with backoff until done) or once by `logferry
//! setup` ([`Setup::attempt`]).
//!
//! Setup never stops shipping. The shippers wait for its first attempt (at most
//! [`FIRST_ATTEMPT_WAIT`]) so that the first index of a fresh cluster is created with its
//! template; after that a failing setup is retried with backoff in the background, counted in
//! `logferry_setup_failures_total`, logged once until it works, and shown in `/health` as the
//! `setup` check (degraded, with the reason). An index created while setup was failing has the
//! cluster's defaults: its mappings are guessed and no lifecycle deletes it.
//!
//! - `plan`: what to install, and the bodies (composable templates, ILM, ISM);
//! - `cluster`: the requests — create if absent, replace only the agent's own.

mod cluster;
mod plan;

pub use cluster::{Cluster, Outcome};
pub use plan::{Capabilities, Flavor, Plan, Policy, Template};

use crate::config;
use crate::metrics::Metrics;
use crate::observe::health::{Check, Level};
use crate::sink::elasticsearch::client::Connector;
use crate::sink::elasticsearch::hosts::Host;
use backon::BackoffBuilder;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long the shippers wait for setup's first attempt before they ship anyway.
pub const FIRST_ATTEMPT_WAIT: Duration = Duration::from_secs(15);

/// Retries back off up to this.
const LONGEST_WAIT: Duration = Duration::from_secs(300);

/// One thing installed (or left alone), for the log and `logferry setup`'s report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `index template` or `lifecycle policy` (ILM / ISM).
    pub kind: &'static str,
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing to install: setup is off, or the config asks for nothing.
    Off,
    Pending,
    Done,
    /// Installed as far as it could be, but not all as the config asks (left alone: someone
    /// else's, the agent's own but different, or covered by another template).
    Stale(String),
    Failing(String),
}

pub struct Setup {
    plan: Plan,
    overwrite: bool,
    connector: Arc<Connector>,
    hosts: Vec<Host>,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

impl Setup {
    /// For `run` at start, `for_job` for `logferry setup`: the same plan.
    pub fn new(
        cfg: &config::Config,
        connector: Arc<Connector>,
        metrics: Arc<Metrics>,
    ) -> Arc<Setup> {
        let plan = Plan::new(cfg);
        let enabled = cfg.elasticsearch.setup.enabled && !plan.is_empty();
        Setup::with_plan(cfg, plan, enabled, connector, metrics)
    }

    /// The same plan, whether or not the agents install it (`enabled = false`).
    pub fn for_job(
        cfg: &config::Config,
        connector: Arc<Connector>,
        metrics: Arc<Metrics>,
    ) -> Arc<Setup> {
        let plan = Plan::new(cfg);
        let any = !plan.is_empty();
        Setup::with_plan(cfg, plan, any, connector, metrics)
    }

    fn with_plan(
        cfg: &config::Config,
        plan: Plan,
        enabled: bool,
        connector: Arc<Connector>,
        metrics: Arc<Metrics>,
    ) -> Arc<Setup> {
        if !enabled {
            metrics.setup_complete.set(1);
        }
        Arc::new(Setup {
            plan,
            overwrite: cfg.elasticsearch.setup.overwrite,
            connector,
            hosts: cfg
                .elasticsearch
                .hosts
                .iter()
                .filter_map(|h| Host::parse(h))
                .collect(),
            metrics,
            state: Mutex::new(if enabled { State::Pending } else { State::Off }),
        })
    }

    /// Says `setup_complete` 0 while this plan is still to be installed (a reload's new plan;
    /// at start the gauge begins at 0).
    pub fn metrics_incomplete(&self) {
        if *self.lock() != State::Off {
            self.metrics.setup_complete.set(0);
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Installs the plan until it is in place, backing off between attempts. `first` is
    /// told when the first attempt has ended, however it ended.
    pub async fn run(self: Arc<Self>, first: tokio::sync::oneshot::Sender<()>) {
        let mut first = Some(first);
        if *self.lock() == State::Off {
            let _ = first.take().map(|f| f.send(()));
            return;
        }
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(LONGEST_WAIT)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            let (steps, result) = self.attempt().await;
            let _ = first.take().map(|f| f.send(()));
            match result {
                Ok(()) => {
                    self.done(&steps);
                    return;
                }
                Err(e) => self.failed(&e.to_string()),
            }
            tokio::time::sleep(backoff.next().unwrap_or(LONGEST_WAIT)).await;
        }
    }

    /// One pass over the plan, on the first host that answers: policies first, so that no
    /// template names a policy that is not there; every step is tried, the first failure is
    /// the answer (with the steps that were made).
    pub async fn attempt(&self) -> (Vec<Step>, Result<(), cluster::Error>) {
        let (cluster, flavor, caps) = match self.cluster().await {
            Ok(found) => found,
            Err(e) => return (Vec::new(), Err(e)),
        };
        if !caps.lifecycle && !self.plan.policies.is_empty() {
            tracing::warn!(
                "this Elasticsearch is older than 7.14 and refuses the agent's ILM policies: index templates are installed without a lifecycle; nothing deletes the indices (upgrade, or delete them by hand)"
            );
        }
        let mut steps = Vec::new();
        let mut failure = None;
        let lifecycle = match flavor {
            Flavor::Elasticsearch => "lifecycle policy (ILM)",
            Flavor::OpenSearch => "lifecycle policy (ISM)",
        };
        let policies = self.plan.policies.iter().filter(|_| caps.lifecycle);
        for p in policies.filter(|p| p.wanted_by(flavor)) {
            match cluster
                .policy(flavor, &p.name, &p.body(flavor), self.overwrite)
                .await
            {
                Ok(outcome) => steps.push(Step {
                    kind: lifecycle,
                    name: p.name.clone(),
                    outcome,
                }),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        for t in &self.plan.templates {
            match cluster
                .template(
                    &t.name,
                    &t.body_for(flavor, caps),
                    &t.sample(),
                    self.overwrite,
                )
                .await
            {
                Ok(outcome) => steps.push(Step {
                    kind: "index template",
                    name: t.name.clone(),
                    outcome,
                }),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => (steps, Err(e)),
            None => (steps, Ok(())),
        }
    }

    /// The first host that answers `GET /`, and the product it is.
    async fn cluster(&self) -> Result<(Cluster<'_>, Flavor, Capabilities), cluster::Error> {
        let mut last = cluster::Error::Unsupported("no host configured".into());
        for host in &self.hosts {
            let cluster = Cluster {
                connector: &self.connector,
                host: host.clone(),
            };
            match cluster.flavor().await {
                Ok((flavor, caps)) => return Ok((cluster, flavor, caps)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn done(&self, steps: &[Step]) {
        for s in steps {
            if s.outcome.in_place() {
                tracing::info!(kind = s.kind, name = %s.name, outcome = s.outcome.as_str(), "setup");
            } else {
                tracing::warn!(kind = s.kind, name = %s.name, outcome = s.outcome.as_str(), "setup: not as the config asks (elasticsearch.setup.overwrite = true replaces the agent's own; someone else's is never touched)");
            }
        }
        let stale: Vec<String> = steps
            .iter()
            .filter(|s| !s.outcome.in_place())
            .map(|s| format!("{} {}: {}", s.kind, s.name, s.outcome.as_str()))
            .collect();
        let was_failing = matches!(*self.lock(), State::Failing(_));
        if stale.is_empty() {
            if was_failing {
                tracing::info!("setup works again: templates and policies are in place");
            }
            *self.lock() = State::Done;
            self.metrics.setup_complete.set(1);
        } else {
            *self.lock() = State::Stale(stale.join("; "));
        }
    }

    fn failed(&self, reason: &str) {
        self.metrics.setup_failures.inc();
        let mut state = self.lock();
        if !matches!(*state, State::Failing(_)) {
            tracing::warn!(error = %reason, "cannot install index templates or lifecycle policies; shipping goes on (new indices get the cluster's defaults until this works), retrying with backoff");
        }
        *state = State::Failing(reason.to_owned());
    }
}

/// `/health`'s `setup` check: degraded while templates or policies cannot be installed.
impl Check for Setup {
    fn name(&self) -> &'static str {
        "setup"
    }

    fn health(&self, _now: u64) -> (Level, String) {
        match &*self.lock() {
            State::Off => (
                Level::Healthy,
                "nothing to install (or elasticsearch.setup.enabled = false)".into(),
            ),
            State::Pending => (
                Level::Healthy,
                "installing index templates and lifecycle policies".into(),
            ),
            State::Done => (
                Level::Healthy,
                format!(
                    "{} index templates and {} lifecycle policies in place",
                    self.plan.templates.len(),
                    self.plan.policies.len()
                ),
            ),
            State::Stale(what) => (Level::Degraded, format!("not as the config asks: {what}")),
            State::Failing(reason) => (
                Level::Degraded,
                format!("cannot install templates or policies (retrying): {reason}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
