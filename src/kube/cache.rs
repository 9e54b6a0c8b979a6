//! The node's pods and the cluster's namespaces, as the API server says they are: filled by two
//! kube-runtime watchers (list, then watch; a 410 Gone or a broken stream re-lists, with
//! backoff), read by the tailer for every file it opens and again whenever anything changed.
//!
//! When the API server cannot be reached or refuses (RBAC), lines keep flowing with what the
//! file path says, flagged `kubernetes.metadata: "partial"`; the failure is counted, logged once,
//! and shown in `/health`, and the watchers recover by themselves.

use super::PodRef;
use super::metadata::{FieldOptions, PodMeta};
use crate::config;
use crate::metrics::Metrics;
use crate::observe::health::{Check, Level};
use crate::vocab::FileMeta;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes.node_name is empty and NODE_NAME is not set: which node's pods to watch?")]
    NoNode,
    #[error("kubernetes.api_server {0:?} is not a URL")]
    Url(String),
    #[error("no Kubernetes API config (in-cluster or kubeconfig): {0}")]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

struct Entry {
    meta: Arc<PodMeta>,
    /// When the pod was deleted; its metadata stays for `deleted_pod_ttl`.
    deleted: Option<Instant>,
}

pub struct Cache {
    pods: RwLock<HashMap<(String, String), Entry>>,
    namespaces: RwLock<HashMap<String, BTreeMap<String, String>>>,
    /// Moves on every change, so the tailer knows to look again.
    generation: AtomicU64,
    /// The first list of pods is in.
    synced: AtomicBool,
    /// The first list of namespaces is in.
    namespaces_synced: AtomicBool,
    /// Why the API server cannot be used right now, per watcher (pods, namespaces).
    problem: Mutex<[Option<String>; 2]>,
    /// What documents get from a pod's metadata: changed by a config reload.
    view: RwLock<View>,
    metrics: Arc<Metrics>,
}

/// The `[kubernetes]` options applied when metadata is looked up (the cache keeps what the API
/// server says whole, so a reload that changes them applies to every pod at once).
struct View {
    opts: FieldOptions,
    labels: bool,
    namespace_labels: bool,
    ttl: Duration,
    /// `kubernetes.honour_exclude_annotation`: whether a pod may switch its own logs off.
    honour_exclude: bool,
}

impl View {
    fn new(cfg: &config::Kubernetes) -> View {
        View {
            opts: FieldOptions {
                annotations: cfg.annotations.clone(),
                de_dot: cfg.de_dot,
            },
            labels: cfg.labels,
            namespace_labels: cfg.namespace_labels,
            ttl: cfg.deleted_pod_ttl.0,
            honour_exclude: cfg.honour_exclude_annotation,
        }
    }
}

impl Cache {
    pub fn new(cfg: &config::Kubernetes, metrics: Arc<Metrics>) -> Cache {
        Cache {
            pods: RwLock::new(HashMap::new()),
            namespaces: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(1),
            synced: AtomicBool::new(false),
            namespaces_synced: AtomicBool::new(false),
            problem: Mutex::new([None, None]),
            view: RwLock::new(View::new(cfg)),
            metrics,
        }
    }

    /// A config reload: the field options apply from the next lookup, and every file looks
    /// its pod up again.
    pub fn reconfigure(&self, cfg: &config::Kubernetes) {
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = View::new(cfg);
        self.changed();
    }

    fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// No failure is known: the API server answers, or has not been asked yet. An unknown pod
    /// may then still appear, and is worth a short wait.
    pub fn healthy(&self) -> bool {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .all(Option::is_none)
    }

    /// Both first lists are in: what the cache says now is what the API server says.
    pub fn ready(&self) -> bool {
        self.synced.load(Ordering::Relaxed) && self.namespaces_synced.load(Ordering::Relaxed)
    }

    /// (working, detail) for `/health`.
    pub fn describe(&self) -> (bool, String) {
        if let Some(p) = self
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .flatten()
            .next()
        {
            return (false, p.clone());
        }
        let pods = self
            .pods
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if !self.synced.load(Ordering::Relaxed) {
            return (true, "listing pods".into());
        }
        (true, format!("{pods} pods cached"))
    }

    /// What documents of this file carry; `partial` when the pod is not known.
    pub fn lookup(&self, r: &PodRef) -> FileMeta {
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        let found = pods
            .get(&(r.namespace.clone(), r.pod.clone()))
            // A pod re-created under the same name is another pod.
            .filter(|e| r.pod_id.as_ref().is_none_or(|uid| *uid == e.meta.uid));
        let Some(e) = found else {
            return FileMeta {
                fields: r.json_fields_partial(),
                excluded: false,
                parse_json: true,
                multiline: None,
                partial: true,
                namespace: Some(Arc::from(r.namespace.as_str())),
                labels: Arc::default(),
            };
        };
        let view = self.view();
        let ns = view.namespace_labels.then(|| {
            self.namespaces
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&r.namespace)
                .cloned()
        });
        let labels = Arc::new(e.meta.labels.clone());
        let meta = if view.labels {
            e.meta.clone()
        } else {
            let mut m = (*e.meta).clone();
            m.labels.clear();
            Arc::new(m)
        };
        FileMeta {
            fields: meta.json_fields(&r.container, ns.flatten().as_ref(), &view.opts),
            excluded: view.honour_exclude && meta.excluded(),
            parse_json: meta.parse_json(),
            multiline: meta.multiline().map(Arc::from),
            partial: false,
            namespace: Some(Arc::from(r.namespace.as_str())),
            labels,
        }
    }

    /// A pod known without a watch (`logferry test` fills the cache from a case's pod): kept
    /// as a watch event would keep it, so [`Cache::lookup`] answers for it as in the agent.
    pub fn know_pod(&self, pod: &Pod) {
        self.apply_pod(pod);
        self.changed();
    }

    /// A namespace's labels known without a watch; see [`Cache::know_pod`].
    pub fn know_namespace(&self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), labels);
        self.changed();
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn apply_pod(&self, pod: &Pod) -> Option<(String, String)> {
        let meta = PodMeta::from_pod(pod)?;
        let key = (meta.namespace.clone(), meta.name.clone());
        let ignored = !self.view().honour_exclude && meta.excluded();
        let mut pods = self.pods.write().unwrap_or_else(PoisonError::into_inner);
        let before = pods.insert(
            key.clone(),
            Entry {
                meta: Arc::new(meta),
                deleted: None,
            },
        );
        self.metrics.kubernetes_pods.set(pods.len() as i64);
        // Once per pod, not per update or re-list: the same pod asked before.
        let asked_before = before.is_some_and(|b| {
            pods.get(&key)
                .is_some_and(|now| now.meta.uid == b.meta.uid && b.meta.excluded())
        });
        if ignored && !asked_before {
            self.metrics.kubernetes_exclude_ignored.inc();
            tracing::warn!(namespace = %key.0, pod = %key.1, annotation = super::metadata::EXCLUDE, "a pod asks for its logs to be dropped; they are shipped, because kubernetes.honour_exclude_annotation is false");
        }
        Some(key)
    }

    fn delete_pod(&self, pod: &Pod) {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        let mut pods = self.pods.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = pods.get_mut(&(ns.clone(), name.clone())) {
            e.deleted.get_or_insert_with(Instant::now);
        }
    }

    /// After a (re-)list: pods not in it are gone, and kept for the TTL like deleted ones.
    fn relisted(&self, seen: &HashSet<(String, String)>) {
        let mut pods = self.pods.write().unwrap_or_else(PoisonError::into_inner);
        for (key, e) in pods.iter_mut() {
            if !seen.contains(key) {
                e.deleted.get_or_insert_with(Instant::now);
            }
        }
    }

    fn prune(&self) {
        let mut pods = self.pods.write().unwrap_or_else(PoisonError::into_inner);
        let ttl = self.view().ttl;
        pods.retain(|_, e| e.deleted.is_none_or(|at| at.elapsed() < ttl));
        self.metrics.kubernetes_pods.set(pods.len() as i64);
    }

    /// A watcher failed; `which` is 0 for pods, 1 for namespaces. A 410 Gone (history
    /// expired) is routine: the watcher lists again, and that is only counted.
    fn failing(&self, which: usize, e: &watcher::Error) {
        self.metrics.kubernetes_watch_errors.inc();
        if matches!(e, watcher::Error::WatchError(s) if s.code == 410) {
            return;
        }
        let mut p = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        if p.iter().all(Option::is_none) {
            tracing::warn!(error = %e, "Kubernetes API: watch failed; lines get the metadata their file path gives, flagged partial, until it recovers (retrying with backoff)");
        }
        p[which] = Some(format!("Kubernetes API: {e}"));
    }

    fn working(&self, which: usize) {
        let mut p = self.problem.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = p[which].take()
            && p.iter().all(Option::is_none)
        {
            tracing::info!(last_problem = %old, "Kubernetes API: watching again");
        }
    }
}

/// Builds the client: the explicit URL when configured, else in-cluster or the kubeconfig.
pub async fn client(cfg: &config::Kubernetes) -> Result<kube::Client, Error> {
    let mut config = match &cfg.api_server {
        Some(url) => kube::Config::new(url.parse().map_err(|_| Error::Url(url.clone()))?),
        None => kube::Config::infer().await.map_err(Error::Config)?,
    };
    // The watchers back off and retry on their own; retries inside the client would only hide
    // a failing API server from /health for longer.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(Error::Client)
}

/// The node to watch: the config's, else `NODE_NAME`.
pub fn node_name(cfg: &config::Kubernetes) -> Result<String, Error> {
    if !cfg.node_name.is_empty() {
        return Ok(cfg.node_name.clone());
    }
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .ok_or(Error::NoNode)
}

/// Keeps the cache in step with this node's pods until the process ends.
pub async fn watch_pods(cache: Arc<Cache>, client: kube::Client, node: String) {
    let api = kube::Api::<Pod>::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut listing: HashSet<(String, String)> = HashSet::new();
    let mut last_prune = Instant::now();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                if let Some(key) = cache.apply_pod(&pod) {
                    listing.insert(key);
                }
            }
            Ok(watcher::Event::InitDone) => {
                cache.relisted(&listing);
                cache.synced.store(true, Ordering::Relaxed);
                cache.working(0);
                cache.changed();
            }
            Ok(watcher::Event::Apply(pod)) => {
                cache.apply_pod(&pod);
                cache.working(0);
                cache.changed();
            }
            Ok(watcher::Event::Delete(pod)) => {
                cache.delete_pod(&pod);
                cache.working(0);
            }
            Err(e) => {
                cache.failing(0, &e);
                cache.changed();
            }
        }
        if last_prune.elapsed() > Duration::from_secs(10) {
            last_prune = Instant::now();
            cache.prune();
        }
    }
}

/// Keeps the namespaces' labels in the cache until the process ends.
pub async fn watch_namespaces(cache: Arc<Cache>, client: kube::Client) {
    let api = kube::Api::<Namespace>::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let mut ns = cache
            .namespaces
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                if let Some(name) = n.metadata.name {
                    ns.insert(name, n.metadata.labels.unwrap_or_default());
                }
            }
            Ok(watcher::Event::Delete(n)) => {
                if let Some(name) = n.metadata.name {
                    ns.remove(&name);
                }
            }
            Ok(watcher::Event::InitDone) => cache.namespaces_synced.store(true, Ordering::Relaxed),
            Ok(watcher::Event::Init) => {}
            Err(e) => {
                drop(ns);
                cache.failing(1, &e);
                continue;
            }
        }
        drop(ns);
        cache.working(1);
        cache.changed();
    }
}

impl Check for Cache {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// Degraded, never unhealthy, while the API server cannot be read: lines keep flowing with
    /// what their path says, and a restart would not bring the API server back.
    fn health(&self, _now: u64) -> (Level, String) {
        match self.describe() {
            (true, detail) => (Level::Healthy, detail),
            (false, detail) => (
                Level::Degraded,
                format!(
                    "{detail}; lines are shipped with what their file path says, flagged partial"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated_pod(uid: &str) -> Pod {
        let mut pod: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/pod-orders-api.json")).unwrap();
        pod["metadata"]["uid"] = uid.into();
        pod["metadata"]["annotations"][super::super::metadata::EXCLUDE] = "true".into();
        serde_json::from_value(pod).unwrap()
    }

    fn file_of(pod: &Pod) -> PodRef {
        PodRef {
            namespace: pod.metadata.namespace.clone().unwrap(),
            pod: pod.metadata.name.clone().unwrap(),
            container: "api".into(),
            container_id: None,
            pod_id: None,
        }
    }

    #[test]
    fn a_pod_cannot_switch_its_own_logs_off_unless_the_operator_allows_it() {
        let pod = annotated_pod("uid-1");
        let metrics = Arc::new(Metrics::new());
        let cache = Cache::new(&config::Kubernetes::default(), metrics.clone());
        cache.apply_pod(&pod);
        assert!(!cache.lookup(&file_of(&pod)).excluded, "shipped by default");
        // Counted (and logged) once per pod, not at every update or re-list.
        cache.apply_pod(&pod);
        cache.apply_pod(&pod);
        assert_eq!(metrics.kubernetes_exclude_ignored.get(), 1);
        // The same name, another pod: it asks again.
        cache.apply_pod(&annotated_pod("uid-2"));
        assert_eq!(metrics.kubernetes_exclude_ignored.get(), 2);

        let honour = config::Kubernetes {
            honour_exclude_annotation: true,
            ..config::Kubernetes::default()
        };
        let metrics = Arc::new(Metrics::new());
        let cache = Cache::new(&honour, metrics.clone());
        cache.apply_pod(&pod);
        assert!(
            cache.lookup(&file_of(&pod)).excluded,
            "dropped when allowed"
        );
        assert_eq!(metrics.kubernetes_exclude_ignored.get(), 0);
    }
}
