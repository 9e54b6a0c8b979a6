//! Sources other than the log files `tail` follows: records that come to the agent rather
//! than being read by it. Each hands what it receives to an output the agent gives it, as the
//! tailer does, and knows neither the encoder nor the buffer.

pub mod forward;
pub mod kafka;
