//! The `[multiline]` section: which lines are joined into one record (a stack trace is one
//! document), and the limits on a joined record.
//!
//! Off by default: `rules` is empty. A pod's `logferry.io/multiline` annotation names the rules
//! for its containers and overrides this (`"none"` turns joining off for the pod).

use super::{ByteSize, Span};
use serde::Deserialize;
use std::time::Duration;

/// The rules built in, by name; `auto` stands for all of them.
pub const BUILT_IN_RULES: &[&str] = &["node", "java", "python", "go"];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Multiline {
    /// Rules tried, in order, on every container's lines: built-in names (`node`, `java`,
    /// `python`, `go`), `auto` (all built-ins), or the names of `[[multiline.custom]]` rules.
    pub rules: Vec<String>,
    /// A joined record holds at most this many lines; a longer trace is split (never cut) and
    /// its later parts are flagged `logferry.multiline_split`.
    pub max_lines: usize,
    /// The same, in bytes of the joined message.
    pub max_bytes: ByteSize,
    /// A trace that has not grown for this long is complete and shipped.
    pub flush_timeout: Span,
    /// Rules of one's own: a line matching `start_pattern` starts a record; the lines after it
    /// that match `continue_pattern` (every line that does not match `start_pattern`, when
    /// unset) belong to it.
    pub custom: Vec<CustomRule>,
}

impl Default for Multiline {
    fn default() -> Self {
        Multiline {
            rules: Vec::new(),
            max_lines: 500,
            max_bytes: ByteSize(1024 * 1024),
            flush_timeout: Span(Duration::from_secs(1)),
            custom: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// How `rules` and the pod annotation refer to it.
    pub name: String,
    /// A regular expression (the `regex` crate's syntax) matching a record's first line.
    pub start_pattern: String,
    /// A regular expression matching the lines that continue a record.
    #[serde(default)]
    pub continue_pattern: Option<String>,
}

impl Multiline {
    /// Whether any container's lines are joined unless a pod says otherwise.
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }
}
