//! The [`HostPool`]: which host the next request goes to — round robin over the live hosts,
//! each failing host [`SetAside`] with its own exponential backoff and tried again by one
//! request at a time — and the `elasticsearch_hosts` gauge that shows it.
//!
//! Sniffing (in `sniff`) changes the members only through [`HostPool::replace`].

use super::Host;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a failing host is set aside: `first`, doubling with each failure in a row, at
/// most `max`, each wait drawn from its upper half so hosts failed together come back apart
/// and none comes back early.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetAside {
    pub first: Duration,
    pub max: Duration,
    /// The longest a trial request can take (the request timeout, with slack): a trial that
    /// never said how it went — its task ended — does not keep the host out for good.
    pub trial: Duration,
}

impl SetAside {
    pub(super) fn after(&self, failures: u32) -> Duration {
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
    pub(super) metrics: Arc<Metrics>,
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

    pub(super) fn next_at(&self, now: Instant) -> Option<Host> {
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

    pub(super) fn failed_at(&self, host: &Host, reason: &str, now: Instant) {
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
    pub(super) fn replace(&self, learned: Vec<Host>) {
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

    /// The hosts to ask for the cluster's nodes, in order: the configured hosts first — the
    /// addresses the operator named, usually a stable service name, where learned nodes come
    /// and go — then the live members, then those set aside.
    pub(super) fn sniff_order(&self) -> Vec<Host> {
        let mut ask: Vec<Host> = self.configured.clone();
        let m = self.lock();
        let (alive, aside): (Vec<&Member>, Vec<&Member>) =
            m.list.iter().partition(|x| x.state == State::Alive);
        for x in alive.into_iter().chain(aside) {
            if !ask.contains(&x.host) {
                ask.push(x.host.clone());
            }
        }
        ask
    }
}
