//! Coming from Fluentd: what a cut-over reads of the Fluentd it replaces, and nothing of the
//! agent's own running.
//!
//! - [`convert`]: `logferry convert`, a Fluentd configuration in, a logferry config out;
//! - [`pos_file`]: Fluentd's `in_tail` positions, handed to discovery on the agent's first
//!   start on a node as the offsets to start each file from.
//!
//! Uses only [`crate::config`]: discovery (`crate::source::files`) and the binary use it, never the
//! other way round.

pub mod convert;
pub mod pos_file;
