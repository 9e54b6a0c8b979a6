//! `[[input.kafka]]`: an aggregator's consumer of the topic node agents produce to (`[kafka]`).

use super::{KafkaTls, Sasl, Span};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaInput {
    /// The bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topics: Vec<String>,
    /// The consumer group: the aggregators of one tier share it, each taking some partitions.
    pub group_id: String,
    /// How long the group waits for a silent member before its partitions go to another
    /// (`session.timeout.ms`); heartbeats go at a third of it.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: Span,
    pub tls: Option<KafkaTls>,
    pub sasl: Option<Sasl>,
}

fn default_session_timeout() -> Span {
    Span(Duration::from_secs(30))
}

impl KafkaInput {
    /// The checks its types cannot make: (dotted key, message).
    pub(super) fn problems(&self, i: usize) -> Vec<(String, String)> {
        let key = |k: &str| format!("input.kafka[{i}].{k}");
        let mut out = Vec::new();
        if self.brokers.is_empty() {
            out.push((key("brokers"), "needs at least one host:port".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            out.push((key("topics"), "needs at least one topic name".into()));
        }
        if self.group_id.is_empty() {
            out.push((key("group_id"), "must not be empty".into()));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.session_timeout.0) {
            out.push((key("session_timeout"), "must be between 1s and 5m".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn an_aggregator_of_a_kafka_tier_reads_no_files_and_bad_keys_are_named() {
        let ok = "[input]\ninclude = []\n[[input.kafka]]\nbrokers = [\"k:9092\"]\ntopics = [\"logs\"]\ngroup_id = \"agg\"\n";
        let cfg = Config::from_toml(ok, |_| None).unwrap();
        assert_eq!(cfg.input.kafka[0].session_timeout.0.as_secs(), 30);
        let bad = "[input]\ninclude = []\n[[input.kafka]]\nbrokers = []\ntopics = [\"\"]\ngroup_id = \"\"\nsession_timeout = \"10m\"\n";
        let problems = Config::from_toml(bad, |_| None).unwrap_err();
        let keys: Vec<_> = problems.iter().filter_map(|p| p.key.clone()).collect();
        assert_eq!(
            keys,
            [
                "input.kafka[0].brokers",
                "input.kafka[0].topics",
                "input.kafka[0].group_id",
                "input.kafka[0].session_timeout"
            ]
        );
        assert!(problems.iter().all(|p| p.line.is_some()));
    }
}
