//! The sources: the log files the agent reads ([`files`]), and records that come to the agent
//! rather than being read by it ([`forward`], [`kafka`]). Each hands what it has to an output
//! the agent gives it, and knows neither the encoder, the buffer nor the sinks.

pub mod files;
/// `[[input.forward]]`: Fluentd's forward protocol.
pub mod forward;
/// `[[input.kafka]]`: the consumer of a Kafka tier.
pub mod kafka;
