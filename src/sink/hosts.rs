//! The Elasticsearch hosts a shipper sends to: the [`HostPool`].
//!
//! Owns which host the next request goes to. Requests are spread over the live hosts round
//! robin; a host that fails (no connection, a timeout, a 5xx for the whole request) is set
//! aside with its own exponential backoff and handed out again, to one request at a time, when
//! that backoff ends — as the official clients' connection pools do. When every host is set
//! aside the pool still hands one out, the one whose backoff ends first: records wait in the
//! buffer and the shipper's own retry backoff paces the attempts, so "no host" is never an
//! answer.
//!
//! Each host keeps its URL's path prefix (`https://gw.example/elasticsearch` sends to
//! `/elasticsearch/_bulk`): the pool builds the full request URLs.
//!
//! With `elasticsearch.sniff = true` the pool learns the cluster's HTTP nodes from
//! `GET _nodes/http` ([`HostPool::sniff_every`]) and ships to those instead of the configured
//! hosts, refreshing them every `sniff_interval` for clusters that grow and shrink. A learned
//! host keeps the configured host's scheme and path prefix; the configured hosts stay the
//! seeds sniffing asks first (the learned nodes only when no seed answers). A failed sniff
//! keeps the current set.
//!
//! The pool never decides whether a record is delivered; it only says where to try.

use super::client::Connector;
use crate::metrics::Metrics;
use reqwest::Url;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Only what the agent reads of a bulk response: ~25 bytes per item instead of ~200
/// (Elasticsearch and OpenSearch both support `filter_path`).
const BULK_QUERY: &str = "filter_path=errors,items.*.status,items.*.error";
/// A `_nodes/http` answer is a few hundred bytes per node: more than this is not one.
const MAX_NODES_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{host}: {source}")]
    Request {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{host}: HTTP {status}")]
    Status { host: String, status: u16 },
    #[error("{host}: the _nodes/http answer is over {MAX_NODES_BODY} bytes")]
    TooLarge { host: String },
    #[error("{host}: unreadable _nodes/http answer: {source}")]
    Body {
        host: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{host}: the _nodes/http answer names no HTTP node that takes writes")]
    NoNodes { host: String },
    #[error("no host answered _nodes/http")]
    NoHosts,
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// One Elasticsearch host: its base URL (the path prefix kept, always ending in `/`) and the
/// `_bulk` URL built from it. Cheap to clone: one per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    base: Arc<Url>,
    bulk: Arc<Url>,
}

impl Host {
    /// `url` as a host: the query and fragment dropped, the path kept as a prefix. `None` when
    /// it is not an absolute http(s) URL (validation refuses those before the pool sees them).
    pub fn parse(url: &str) -> Option<Host> {
        let base = Url::parse(url).ok()?;
        Host::from_base(base)
    }

    fn from_base(mut base: Url) -> Option<Host> {
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return None;
        }
        base.set_query(None);
        base.set_fragment(None);
        // `Url::join` replaces the last path segment unless the path ends in `/`: without this,
        // `https://gw.example/elasticsearch` would send to `/_bulk` and miss the gateway's route.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut bulk = base.join("_bulk").ok()?;
        bulk.set_query(Some(BULK_QUERY));
        Some(Host {
            base: Arc::new(base),
            bulk: Arc::new(bulk),
        })
    }

    /// Where bulk requests go.
    pub fn bulk_url(&self) -> &Url {
        &self.bulk
    }

    /// `path` (relative, no leading `/`) under this host's prefix.
    fn url(&self, path: &str) -> Option<Url> {
        self.base.join(path).ok()
    }

    /// The host and port, for logs and reasons: never the path or anything after it.
    pub fn name(&self) -> String {
        match (self.base.host_str(), self.base.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => "?".to_owned(),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.base.as_str())
    }
}

/// How long a failing host is set aside: `first`, doubling with each failure in a row, at
/// most `max`, each wait drawn from its upper half so hosts failed together come back apart
/// and none comes back early.
#[derive(Debug, Clone, Copy)]
pub struct SetAside {
    pub first: Duration,
    pub max: Duration,
    /// The longest a trial request can take (the request timeout, with slack): a trial that
    /// never said how it went — its task ended — does not keep the host out for good.
    pub trial: Duration,
}

impl SetAside {
    fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let full = self
            .first
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .max(self.first.min(self.max));
        full / 2 + (full / 2).mul_f64(random_fraction())
    }
}

/// A number in `[0, 1)`, different at each call.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    // RandomState is seeded per process and per instance: enough to spread hosts apart.
    let r = RandomState::new().hash_one(Instant::now());
    (r >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Takes requests.
    Alive,
    /// Failed; not handed out before `until` unless every host is set aside.
    SetAside { until: Instant },
    /// Its backoff ended and one request is trying it: no other request goes there until that
    /// one says how it went, so a host that is still down costs one request, not one per
    /// shipper. `until` is when that request must have ended; then another may try.
    OnTrial { until: Instant },
}

#[derive(Debug)]
struct Member {
    host: Host,
    state: State,
    /// Failures in a row; 0 once a request succeeds.
    failures: u32,
}

impl Member {
    fn new(host: Host) -> Member {
        Member {
            host,
            state: State::Alive,
            failures: 0,
        }
    }
}

struct Members {
    list: Vec<Member>,
    /// Where the round robin goes on from.
    next: usize,
    /// `list` was learned by sniffing, not taken from the config.
    learned: bool,
}

/// The hosts requests go to, round robin over the live ones, each failing host set aside
/// with its own backoff. Shared by every shipper task.
pub struct HostPool {
    /// From the config: the members until sniffing learns others, and the seeds sniffing asks
    /// first.
    configured: Vec<Host>,
    members: Mutex<Members>,
    set_aside: SetAside,
    metrics: Arc<Metrics>,
}

impl HostPool {
    /// A pool of the hosts in `urls` that parse (validation has refused the others).
    pub fn new(urls: &[String], set_aside: SetAside, metrics: Arc<Metrics>) -> HostPool {
        let configured: Vec<Host> = urls.iter().filter_map(|u| Host::parse(u)).collect();
        let pool = HostPool {
            members: Mutex::new(Members {
                list: configured.iter().cloned().map(Member::new).collect(),
                next: 0,
                learned: false,
            }),
            configured,
            set_aside,
            metrics,
        };
        pool.publish(&pool.lock());
        pool
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The host for the next request. `None` only for a pool without any host.
    pub fn next(&self) -> Option<Host> {
        self.next_at(Instant::now())
    }

    fn next_at(&self, now: Instant) -> Option<Host> {
        let mut m = self.lock();
        let n = m.list.len();
        let start = m.next;
        let mut chosen = None;
        for k in 0..n {
            let i = (start + k) % n;
            let member = &mut m.list[i];
            match member.state {
                State::Alive => {}
                State::SetAside { until } | State::OnTrial { until } if until <= now => {
                    member.state = State::OnTrial {
                        until: now.checked_add(self.set_aside.trial).unwrap_or(now),
                    };
                }
                State::SetAside { .. } | State::OnTrial { .. } => continue,
            }
            chosen = Some(i);
            break;
        }
        // Every host is set aside: the one that is due first, rather than none.
        let i = chosen.or_else(|| {
            (0..n).min_by_key(|&i| match m.list[i].state {
                State::SetAside { until } | State::OnTrial { until } => until,
                State::Alive => now,
            })
        })?;
        m.next = (i + 1) % n;
        Some(m.list[i].host.clone())
    }

    /// A request to `host` failed in a way that says the host is unwell (no connection, a
    /// timeout, a 5xx for the whole request): set it aside, longer for each failure in a row.
    /// `reason` is logged when the host is first set aside, not at every failure after.
    pub fn failed(&self, host: &Host, reason: &str) {
        self.failed_at(host, reason, Instant::now());
    }

    fn failed_at(&self, host: &Host, reason: &str, now: Instant) {
        let mut m = self.lock();
        // A host that sniffing has just dropped is no longer the pool's concern.
        let Some(member) = m.list.iter_mut().find(|x| x.host == *host) else {
            return;
        };
        member.failures = member.failures.saturating_add(1);
        let wait = self.set_aside.after(member.failures);
        let was_alive = member.state == State::Alive;
        member.state = State::SetAside {
            until: now.checked_add(wait).unwrap_or(now),
        };
        if was_alive {
            tracing::warn!(host = %host.name(), %reason, retry_in_ms = wait.as_millis() as u64, "Elasticsearch host set aside; requests go to the other hosts");
        }
        self.publish(&m);
    }

    /// A request to `host` got an answer from it: it takes requests again.
    pub fn succeeded(&self, host: &Host) {
        let mut m = self.lock();
        let Some(member) = m.list.iter_mut().find(|x| x.host == *host) else {
            return;
        };
        if member.state == State::Alive {
            return;
        }
        tracing::info!(host = %host.name(), failures = member.failures, "Elasticsearch host answers again; back in the pool");
        member.state = State::Alive;
        member.failures = 0;
        self.publish(&m);
    }

    /// The hosts set aside now, for `/health`: `"es-1:9200 (3 failures in a row)"` each.
    pub fn set_aside_hosts(&self) -> Vec<String> {
        self.lock()
            .list
            .iter()
            .filter(|x| x.state != State::Alive)
            .map(|x| format!("{} ({} failures in a row)", x.host.name(), x.failures))
            .collect()
    }

    /// Every host requests may go to now, in round-robin order.
    pub fn hosts(&self) -> Vec<Host> {
        self.lock().list.iter().map(|x| x.host.clone()).collect()
    }

    fn publish(&self, m: &Members) {
        let alive = m.list.iter().filter(|x| x.state == State::Alive).count();
        let gauge = &self.metrics.elasticsearch_hosts;
        gauge.get_or_create(&[("state", "alive")]).set(alive as i64);
        gauge
            .get_or_create(&[("state", "set_aside")])
            .set((m.list.len() - alive) as i64);
    }

    /// Makes `learned` the members. Hosts that stay keep their state (a host set aside stays
    /// set aside); an empty set changes nothing.
    fn replace(&self, learned: Vec<Host>) {
        if learned.is_empty() {
            return;
        }
        let mut m = self.lock();
        let mut old: HashMap<Host, Member> =
            m.list.drain(..).map(|x| (x.host.clone(), x)).collect();
        let before = old.len();
        let list: Vec<Member> = learned
            .into_iter()
            .map(|h| old.remove(&h).unwrap_or_else(|| Member::new(h)))
            .collect();
        let (added, removed) = (list.len() + old.len() - before, old.len());
        if added > 0 || removed > 0 || !m.learned {
            tracing::info!(hosts = ?list.iter().map(|x| x.host.name()).collect::<Vec<_>>(), added, removed, "sniffing: the cluster's HTTP nodes");
        }
        m.next %= list.len().max(1);
        m.list = list;
        m.learned = true;
        self.publish(&m);
    }

    /// Learns the cluster's HTTP nodes now and every `every` after, until the process ends. A
    /// failure keeps the current set, is counted, and is logged once until sniffing works again.
    pub async fn sniff_every(self: Arc<Self>, connector: Arc<Connector>, every: Duration) {
        let mut failing = false;
        loop {
            match self.sniff(&connector).await {
                Ok(hosts) => {
                    if failing {
                        tracing::info!("sniffing works again");
                        failing = false;
                    }
                    self.replace(hosts);
                }
                Err(e) => {
                    self.metrics.elasticsearch_sniff_failures.inc();
                    if !failing {
                        tracing::warn!(error = %e, "sniffing the cluster's nodes failed; shipping goes on to the hosts known so far");
                        failing = true;
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The cluster's HTTP nodes, asked of the configured hosts first — the addresses the
    /// operator named, usually a stable service name, where learned nodes come and go — then
    /// of the live members, then of those set aside; the first answer counts.
    async fn sniff(&self, connector: &Connector) -> Result<Vec<Host>> {
        let mut ask: Vec<Host> = self.configured.clone();
        {
            let m = self.lock();
            let (alive, aside): (Vec<&Member>, Vec<&Member>) =
                m.list.iter().partition(|x| x.state == State::Alive);
            for x in alive.into_iter().chain(aside) {
                if !ask.contains(&x.host) {
                    ask.push(x.host.clone());
                }
            }
        }
        let mut last = Error::NoHosts;
        for host in ask {
            match nodes_of(connector, &host).await {
                Ok(found) => return Ok(found),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// `GET <host>/_nodes/http`, read into hosts with `host`'s scheme and path prefix.
async fn nodes_of(connector: &Connector, host: &Host) -> Result<Vec<Host>> {
    let name = host.name();
    let url = host.url("_nodes/http").ok_or(Error::NoHosts)?;
    let request = |source| Error::Request {
        host: name.clone(),
        source,
    };
    let mut resp = connector.get(url).send().await.map_err(request)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(Error::Status { host: name, status });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(request)? {
        if body.len() + chunk.len() > MAX_NODES_BODY {
            return Err(Error::TooLarge { host: name });
        }
        body.extend_from_slice(&chunk);
    }
    let found = learned_hosts(&body, host).map_err(|source| Error::Body {
        host: name.clone(),
        source,
    })?;
    if found.is_empty() {
        return Err(Error::NoNodes { host: name });
    }
    Ok(found)
}

#[derive(Deserialize)]
struct NodesInfo {
    nodes: HashMap<String, NodeInfo>,
}

#[derive(Deserialize)]
struct NodeInfo {
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    http: Option<NodeHttp>,
}

#[derive(Deserialize)]
struct NodeHttp {
    publish_address: String,
}

/// The hosts a `_nodes/http` answer names, in `like`'s scheme and path prefix, sorted (the
/// answer is a map: its order means nothing) and without dedicated master nodes, which do not
/// take bulk requests well (the official clients skip them too).
fn learned_hosts(body: &[u8], like: &Host) -> Result<Vec<Host>, serde_json::Error> {
    let info: NodesInfo = serde_json::from_slice(body)?;
    let mut out: Vec<Host> = info
        .nodes
        .into_values()
        .filter(|n| {
            !n.roles.as_ref().is_some_and(|r| {
                !r.is_empty()
                    && r.iter()
                        .all(|r| matches!(r.as_str(), "master" | "cluster_manager" | "voting_only"))
            })
        })
        .filter_map(|n| n.http)
        .filter_map(|h| with_address(like, &h.publish_address))
        .collect();
    out.sort_by(|a, b| a.base.as_str().cmp(b.base.as_str()));
    out.dedup();
    Ok(out)
}

/// `like` with the host and port of a `publish_address`: `10.0.0.5:9200`, `[::1]:9200`, or
/// `es-1.example/10.0.0.5:9200` — Elasticsearch's `host/ip:port` form when the node was given
/// a name, whose name is used so an https certificate for it still matches.
fn with_address(like: &Host, publish_address: &str) -> Option<Host> {
    let (name, address) = match publish_address.split_once('/') {
        Some((name, address)) => (Some(name).filter(|n| !n.is_empty()), address),
        None => (None, publish_address),
    };
    let (ip, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let mut url = (*like.base).clone();
    url.set_host(Some(name.unwrap_or(ip))).ok()?;
    url.set_port(Some(port)).ok()?;
    Host::from_base(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: SetAside = SetAside {
        first: Duration::from_secs(1),
        max: Duration::from_secs(8),
        trial: Duration::from_secs(40),
    };

    fn pool(urls: &[&str]) -> HostPool {
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        HostPool::new(&urls, QUICK, Arc::new(Metrics::new()))
    }

    fn names(hosts: impl IntoIterator<Item = Host>) -> Vec<String> {
        hosts.into_iter().map(|h| h.name()).collect()
    }

    #[test]
    fn a_path_prefix_is_kept_with_or_without_its_trailing_slash() {
        for url in [
            "http://h:9200/es",
            "http://h:9200/es/",
            "http://h:9200/es/?x=1",
        ] {
            let host = Host::parse(url).unwrap();
            assert_eq!(host.bulk_url().path(), "/es/_bulk", "{url}");
            assert_eq!(host.bulk_url().query(), Some(BULK_QUERY), "{url}");
            assert_eq!(host.url("_nodes/http").unwrap().path(), "/es/_nodes/http");
        }
        let gateway = Host::parse("https://gw.example/elasticsearch").unwrap();
        assert_eq!(
            gateway.bulk_url().as_str(),
            format!("https://gw.example/elasticsearch/_bulk?{BULK_QUERY}")
        );
        for url in ["http://h:9200", "http://h:9200/"] {
            assert_eq!(Host::parse(url).unwrap().bulk_url().path(), "/_bulk");
        }
        assert!(Host::parse("ftp://h/").is_none());
    }

    #[test]
    fn requests_go_round_robin_over_the_hosts() {
        let p = pool(&["http://a:9200", "http://b:9200", "http://c:9200"]);
        let seen: Vec<Host> = (0..6).filter_map(|_| p.next()).collect();
        assert_eq!(
            names(seen),
            ["a:9200", "b:9200", "c:9200", "a:9200", "b:9200", "c:9200"]
        );
    }

    #[test]
    fn a_failed_host_is_set_aside_and_returns_after_its_backoff() {
        let p = pool(&["http://a:9200", "http://b:9200"]);
        let t0 = Instant::now();
        let a = p.next_at(t0).unwrap();
        p.failed_at(&a, "connection refused", t0);
        // Only b, for at least half the first backoff.
        let during: Vec<Host> = (0..4).filter_map(|_| p.next_at(t0)).collect();
        assert_eq!(names(during), ["b:9200"; 4]);
        assert_eq!(p.set_aside_hosts(), ["a:9200 (1 failures in a row)"]);
        // Past the longest first backoff, a gets one request on trial...
        let later = t0 + QUICK.first;
        let round: Vec<Host> = (0..4).filter_map(|_| p.next_at(later)).collect();
        assert_eq!(
            names(round.clone())
                .iter()
                .filter(|n| *n == "a:9200")
                .count(),
            1,
            "one trial request, not every request: {:?}",
            names(round)
        );
        // ...and once it answers, its share again.
        p.succeeded(&a);
        let back: Vec<Host> = (0..4).filter_map(|_| p.next_at(later)).collect();
        assert_eq!(names(back).iter().filter(|n| *n == "a:9200").count(), 2);
        assert!(p.set_aside_hosts().is_empty());
    }

    #[test]
    fn a_trial_request_that_never_reports_back_does_not_keep_its_host_out() {
        let p = pool(&["http://a:9200", "http://b:9200"]);
        let t0 = Instant::now();
        let a = p.next_at(t0).unwrap();
        p.failed_at(&a, "timeout", t0);
        let later = t0 + QUICK.first;
        let a_in = |round: Vec<Host>| round.iter().filter(|h| **h == a).count();
        let trial: Vec<Host> = (0..2).filter_map(|_| p.next_at(later)).collect();
        assert_eq!(a_in(trial), 1, "the trial request");
        // That request's task ended without a word: a is not handed out while it may still
        // be running, and is tried again once it cannot be.
        let during: Vec<Host> = (0..4).filter_map(|_| p.next_at(later)).collect();
        assert_eq!(a_in(during), 0);
        let after = later + QUICK.trial;
        let again: Vec<Host> = (0..4).filter_map(|_| p.next_at(after)).collect();
        assert_eq!(a_in(again), 1, "a new trial");
    }

    #[test]
    fn each_failure_in_a_row_sets_a_host_aside_longer_up_to_the_cap() {
        for failures in 1..=10u32 {
            let full = (QUICK.first * 2u32.pow(failures - 1)).min(QUICK.max);
            for _ in 0..20 {
                let w = QUICK.after(failures);
                assert!(w >= full / 2 && w <= full, "{failures}: {w:?} vs {full:?}");
            }
        }
        assert!(QUICK.after(u32::MAX) <= QUICK.max);
    }

    #[test]
    fn when_every_host_is_set_aside_the_one_due_first_is_handed_out() {
        let p = pool(&["http://a:9200", "http://b:9200"]);
        let t0 = Instant::now();
        let (a, b) = (p.next_at(t0).unwrap(), p.next_at(t0).unwrap());
        // b has failed three times in a row, a once: a's backoff ends first.
        for _ in 0..3 {
            p.failed_at(&b, "timeout", t0);
        }
        p.failed_at(&a, "timeout", t0);
        for _ in 0..3 {
            assert_eq!(p.next_at(t0), Some(a.clone()), "never no host");
        }
        let gauge = |state| {
            p.metrics
                .elasticsearch_hosts
                .get_or_create(&[("state", state)])
                .get()
        };
        assert_eq!((gauge("alive"), gauge("set_aside")), (0, 2));
        p.succeeded(&b);
        assert_eq!((gauge("alive"), gauge("set_aside")), (1, 1));
    }

    #[test]
    fn sniffing_is_off_by_default_and_its_interval_is_a_duration() {
        use crate::config::Config;
        let none = |_: &str| None;
        let c = Config::from_toml("", none).unwrap();
        assert!(!c.elasticsearch.sniff);
        assert_eq!(c.elasticsearch.sniff_interval.0, Duration::from_secs(300));
        let c = Config::from_toml(
            "[elasticsearch]\nsniff = true\nsniff_interval = \"30s\"\n",
            none,
        )
        .unwrap();
        assert!(c.elasticsearch.sniff);
        assert_eq!(c.elasticsearch.sniff_interval.0, Duration::from_secs(30));
        // A zero interval would ask the cluster in a loop.
        let problems = Config::from_toml(
            "[elasticsearch]\nsniff = true\nsniff_interval = \"0s\"\n",
            none,
        )
        .unwrap_err();
        assert_eq!(
            problems[0].key.as_deref(),
            Some("elasticsearch.sniff_interval"),
            "{problems:?}"
        );
    }

    #[test]
    fn sniffed_nodes_keep_the_scheme_and_prefix_and_skip_dedicated_masters() {
        let like = Host::parse("https://gw.example/es").unwrap();
        let body = br#"{"_nodes":{"total":4},"cluster_name":"c","nodes":{
            "n1":{"name":"es-1","roles":["data","ingest"],"http":{"bound_address":["[::]:9200"],"publish_address":"10.0.0.1:9200"}},
            "n2":{"name":"es-2","http":{"publish_address":"es-2.example/10.0.0.2:9201"}},
            "n3":{"name":"m","roles":["master"],"http":{"publish_address":"10.0.0.3:9200"}},
            "n4":{"name":"v6","roles":["data"],"http":{"publish_address":"[fd00::4]:9200"}},
            "n5":{"name":"no-http","roles":["data"]}}}"#;
        let hosts = learned_hosts(body, &like).unwrap();
        let urls: Vec<String> = hosts.iter().map(|h| h.bulk_url().to_string()).collect();
        assert_eq!(
            urls,
            [
                format!("https://10.0.0.1:9200/es/_bulk?{BULK_QUERY}"),
                format!("https://[fd00::4]:9200/es/_bulk?{BULK_QUERY}"),
                format!("https://es-2.example:9201/es/_bulk?{BULK_QUERY}"),
            ]
        );
        assert!(learned_hosts(b"{\"nodes\": 3}", &like).is_err());
    }

    #[test]
    fn a_sniffed_set_replaces_the_members_and_keeps_a_set_aside_host_aside() {
        let p = pool(&["http://seed:9200"]);
        let t0 = Instant::now();
        p.replace(vec![
            Host::parse("http://a:9200").unwrap(),
            Host::parse("http://b:9200").unwrap(),
        ]);
        let a = Host::parse("http://a:9200").unwrap();
        p.failed_at(&a, "refused", t0);
        p.replace(vec![a.clone(), Host::parse("http://c:9200").unwrap()]);
        let seen: Vec<Host> = (0..3).filter_map(|_| p.next_at(t0)).collect();
        assert_eq!(names(seen), ["c:9200"; 3]);
        // An empty answer is no reason to forget every host.
        p.replace(Vec::new());
        assert_eq!(names(p.hosts()), ["a:9200", "c:9200"]);
    }
}
