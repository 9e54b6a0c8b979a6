//! The librdkafka producer as `[kafka]` asks for it: idempotent (`enable.idempotence`, which
//! brings `acks=all` and ordered retries within the client), the compression chosen, TLS and
//! SASL from their files; and its context, through which librdkafka's logs reach the agent's
//! and a cluster it cannot reach reaches `/health`.

use crate::config::{self, KafkaCompression};
use crate::sink::SinkState;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use std::sync::Arc;

pub type Producer = FutureProducer<Context>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kafka.sasl.{key} {path}: {source}")]
    Secret {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the Kafka producer: {0}")]
    Client(#[source] KafkaError),
}

/// What librdkafka tells the agent outside of delivery reports.
pub struct Context {
    pub(super) state: Arc<SinkState>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                tracing::debug!(target: "librdkafka", facility, "{message}");
            }
            _ => tracing::trace!(target: "librdkafka", facility, "{message}"),
        }
    }

    /// Errors of the client as a whole. A single connection dropped is librdkafka's own to
    /// mend (it reconnects); no broker reachable, or one that refuses the agent, is news for
    /// `/health` and logged once.
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::BrokerTransportFailure) {
            tracing::debug!(target: "librdkafka", %reason, "connection to a broker failed");
            return;
        }
        let kind = match code {
            Some(RDKafkaErrorCode::AllBrokersDown) => "unreachable",
            _ => "client",
        };
        let reason = format!("Kafka: {reason}");
        if self.state.failing(kind, &reason) {
            tracing::warn!(%reason, "the Kafka brokers cannot be used; records wait in the buffer");
        }
    }
}

/// The producer's settings from `[kafka]`; reads the SASL files.
pub fn client_config(kafka: &config::Kafka) -> Result<ClientConfig, Error> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", kafka.brokers.join(","))
        .set("client.id", "logferry")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", kafka.compression.as_str())
        .set(
            "message.timeout.ms",
            kafka.delivery_timeout.0.as_millis().to_string(),
        )
        .set("linger.ms", "5")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000")
        .set("log_level", "4");
    match kafka.compression {
        KafkaCompression::None => {
            c.remove("compression.type");
        }
        // The fastest level, as for Elasticsearch's gzip: logs compress well even so, and the
        // CPU is the node's (zstd at its default level 3 was a tenth of the agent's CPU in
        // kafka-out; lz4 and snappy are fast at their defaults).
        KafkaCompression::Zstd | KafkaCompression::Gzip => {
            c.set("compression.level", "1");
        }
        KafkaCompression::Lz4 | KafkaCompression::Snappy => {}
    }
    secure(&mut c, kafka.tls.as_ref(), kafka.sasl.as_ref())?;
    Ok(c)
}

/// TLS and SASL as `[kafka]` (or a Kafka input) asks: the security protocol, the files of the
/// certificates, and the user name and password read from theirs.
pub fn secure(
    c: &mut ClientConfig,
    tls: Option<&config::KafkaTls>,
    sasl: Option<&config::Sasl>,
) -> Result<(), Error> {
    let protocol = match (tls, sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = tls {
        for (key, path) in [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ] {
            if let Some(p) = path {
                c.set(key, p.display().to_string());
            }
        }
    }
    if let Some(sasl) = sasl {
        let read = |key: &'static str, path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|source| Error::Secret {
                    key,
                    path: path.display().to_string(),
                    source,
                })
        };
        c.set("sasl.mechanism", sasl.mechanism.as_str())
            .set("sasl.username", read("username_file", &sasl.username_file)?)
            .set("sasl.password", read("password_file", &sasl.password_file)?);
    }
    Ok(())
}

/// A producer for `[kafka]`, reporting to `state`. Connecting happens in librdkafka's own
/// threads, later: this fails only for settings librdkafka refuses (an unreadable certificate).
pub fn producer(kafka: &config::Kafka, state: Arc<SinkState>) -> Result<Producer, Error> {
    client_config(kafka)?
        .create_with_context(Context { state })
        .map_err(Error::Client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaTls, Sasl, SaslMechanism};

    #[test]
    fn the_producer_is_idempotent_and_secured_as_the_config_says() {
        let dir = tempfile::tempdir().unwrap();
        let (user, pass) = (dir.path().join("user"), dir.path().join("pass"));
        std::fs::write(&user, "shipper\n").unwrap();
        std::fs::write(&pass, "s3cret\n").unwrap();
        let mut kafka = config::Kafka {
            brokers: vec!["k0:9092".into(), "k1:9092".into()],
            ..config::Kafka::default()
        };
        let c = client_config(&kafka).unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("k0:9092,k1:9092"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(c.get("compression.level"), Some("1"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        kafka.tls = Some(KafkaTls {
            ca_file: Some("/etc/ca.pem".into()),
            ..KafkaTls::default()
        });
        kafka.sasl = Some(Sasl {
            mechanism: SaslMechanism::ScramSha512,
            username_file: user,
            password_file: pass.clone(),
        });
        let c = client_config(&kafka).unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("shipper"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        std::fs::remove_file(&pass).unwrap();
        let e = client_config(&kafka).unwrap_err().to_string();
        assert!(e.contains("kafka.sasl.password_file"), "{e}");
    }
}
