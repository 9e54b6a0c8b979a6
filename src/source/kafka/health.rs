//! Whether the Kafka inputs can consume, for `/health` (`kafka_input`): `degraded` while a
//! consumer cannot reach its brokers (the records wait in Kafka; restarting would not help),
//! `healthy` again once it consumes or the brokers answer.

use crate::observe::health::{Check, Level};
use crate::vocab::clock;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Each failing consumer (by group) since when, and why.
#[derive(Default)]
pub struct Consuming {
    failing: Mutex<BTreeMap<String, (u64, String)>>,
}

impl Consuming {
    /// `group`'s consumer failed with `error`; true if it was not failing already.
    pub fn failed(&self, group: &str, error: &str) -> bool {
        let mut failing = self.lock();
        let first = !failing.contains_key(group);
        failing
            .entry(group.to_owned())
            .or_insert_with(|| (clock::now_ms(), String::new()))
            .1 = error.to_owned();
        first
    }

    /// `group`'s consumer works (it consumed, or its brokers answered).
    pub fn works(&self, group: &str) {
        self.lock().remove(group);
    }

    pub fn is_failing(&self, group: &str) -> bool {
        self.lock().contains_key(group)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, String)>> {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Check for Consuming {
    fn name(&self) -> &'static str {
        "kafka_input"
    }

    fn health(&self, now: u64) -> (Level, String) {
        let failing = self.lock();
        match failing.iter().next() {
            None => (Level::Healthy, "consuming".into()),
            Some((group, (since, error))) => (
                Level::Degraded,
                format!(
                    "group {group} cannot consume for {} s: {error}; the records wait in Kafka",
                    now.saturating_sub(*since) / 1000
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_consumer_degrades_until_it_works_again() {
        let c = Consuming::default();
        assert_eq!(c.health(clock::now_ms()).0, Level::Healthy);
        assert!(c.failed("aggregators", "all brokers down"));
        assert!(!c.failed("aggregators", "still down"), "reported once");
        let (level, detail) = c.health(clock::now_ms() + 7_000);
        assert_eq!(level, Level::Degraded);
        assert!(detail.contains("aggregators") && detail.contains("still down"));
        assert!(detail.contains("for 7 s"), "{detail}");
        c.works("aggregators");
        assert_eq!(c.health(clock::now_ms()).0, Level::Healthy);
    }
}
