//! Sources other than the log files `tail` follows: records that come to the agent rather
//! than being read by it. Each hands what it receives to an output the agent gives it, as the
//! tailer does, and knows neither the encoder nor the buffer.

/// `[[input.forward]]`: Fluentd's forward protocol.
pub mod forward;
/// `[[input.kafka]]`: the consumer of a Kafka tier.
pub mod kafka;
