//! `[kafka]`: records go to a Kafka topic instead of Elasticsearch (the node role of a Kafka
//! tier). Present or absent as a whole: with it, `[elasticsearch]` still names each record's
//! index (`elasticsearch.index` and the routes) but needs no hosts, and nothing is installed in
//! a cluster (`[elasticsearch.setup]` is the aggregator's business).
//!
//! The connection: `brokers` (`host:port`, the bootstrap list), `[kafka.tls]` (present: TLS,
//! with the system's roots unless `ca_file`), `[kafka.sasl]` (a mechanism and the files holding
//! the user name and password, as a mounted Secret provides them).

use super::Span;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kafka {
    /// Bootstrap brokers, `host:port`; the client learns the rest of the cluster from them.
    pub brokers: Vec<String>,
    /// The topic every record goes to; default `"logs"`.
    pub topic: String,
    /// Message-set compression: `none`, `gzip`, `snappy`, `lz4` or `zstd` (the default).
    pub compression: KafkaCompression,
    /// How long the client keeps trying to deliver one message (reconnecting, retrying within
    /// its idempotent session) before it gives it back as failed; the agent then backs off
    /// (`buffer.retry_wait` … `retry_max_interval`) and produces it again. Default `"60s"`.
    pub delivery_timeout: Span,
    /// TLS to the brokers; absent (the default) is plaintext.
    pub tls: Option<KafkaTls>,
    /// SASL authentication; absent (the default) is none.
    pub sasl: Option<Sasl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaCompression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl KafkaCompression {
    /// librdkafka's name for it (`compression.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaCompression::None => "none",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Zstd => "zstd",
        }
    }
}

/// `[kafka.tls]`: present means TLS.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTls {
    /// PEM bundle of the CAs to trust; the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for brokers that require one; with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key_file: Option<PathBuf>,
}

/// `[kafka.sasl]`: the mechanism and the files holding the credentials (read at start and at
/// each reload).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    pub username_file: PathBuf,
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's name for it (`sasl.mechanism`).
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            brokers: Vec::new(),
            topic: "logs".into(),
            compression: KafkaCompression::Zstd,
            delivery_timeout: Span(Duration::from_secs(60)),
            tls: None,
            sasl: None,
        }
    }
}

impl Kafka {
    /// The checks the types cannot make: (dotted key, message), in the order found.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let mut bad = |key: &str, message: String| found.push((key.to_owned(), message));
        if self.brokers.is_empty() {
            bad(
                "kafka.brokers",
                "needs at least one broker (host:port)".into(),
            );
        }
        for b in &self.brokers {
            if let Err(why) = broker(b) {
                bad("kafka.brokers", format!("{b:?}: {why}"));
            }
        }
        if let Err(why) = topic(&self.topic) {
            bad("kafka.topic", format!("{:?}: {why}", self.topic));
        }
        if self.delivery_timeout.0 < Duration::from_secs(1) {
            bad("kafka.delivery_timeout", "must be at least 1s".into());
        }
        if let Some(tls) = &self.tls {
            match (&tls.cert_file, &tls.key_file) {
                (Some(_), None) => bad("kafka.tls.cert_file", "needs key_file too".into()),
                (None, Some(_)) => bad("kafka.tls.key_file", "needs cert_file too".into()),
                _ => {}
            }
        }
        found
    }
}

/// `host:port`, as librdkafka takes it (a URL scheme is a common slip).
fn broker(b: &str) -> Result<(), &'static str> {
    if b.contains("://") {
        return Err("a broker is host:port, without a scheme");
    }
    let Some((host, port)) = b.rsplit_once(':') else {
        return Err("a broker is host:port");
    };
    if host.trim_matches(['[', ']']).is_empty() || host.contains(char::is_whitespace) {
        return Err("the host is missing or has spaces");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

/// Kafka's own rule for topic names.
fn topic(t: &str) -> Result<(), &'static str> {
    if t.is_empty() || t == "." || t == ".." {
        return Err("must be a name");
    }
    if t.len() > 249 {
        return Err("must be at most 249 characters");
    }
    if !t
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return Err("may hold only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_and_topics_as_kafka_takes_them() {
        for ok in ["kafka-0.kafka.logging:9092", "127.0.0.1:1", "[::1]:9092"] {
            assert_eq!(broker(ok), Ok(()), "{ok}");
        }
        for bad in [
            "kafka:0",
            "kafka",
            "tcp://kafka:9092",
            ":9092",
            "kafka:x",
            "a b:1",
        ] {
            assert!(broker(bad).is_err(), "{bad}");
        }
        for ok in ["logs", "logs.node-1_a"] {
            assert_eq!(topic(ok), Ok(()), "{ok}");
        }
        for bad in ["", "..", "logs/x", "lögs", &"x".repeat(250)] {
            assert!(topic(bad).is_err(), "{bad}");
        }
    }
}
