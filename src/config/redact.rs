//! The `[redact]` section: which values are masked (or replaced by a keyed hash) before a
//! document is encoded, so neither the disk buffer nor the index ever holds them.
//!
//! Off by default: with no `rules` and no `[[redact.custom]]` the stage is not built and costs
//! nothing per line. Opting a namespace out is only possible here (`except_namespaces`), never
//! through a pod annotation: whoever can deploy a pod must not be able to turn redaction off.

use serde::Deserialize;
use std::path::PathBuf;

/// The rules built in, by name (`crate::redact` says what each matches and what it leaves).
pub const BUILT_IN_REDACTIONS: &[&str] = &[
    "email", "card", "us_ssn", "phone", "jwt", "bearer", "aws_key", "ipv4",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Redact {
    /// Built-in rules applied (see [`BUILT_IN_REDACTIONS`]); default none. The names of
    /// `[[redact.custom]]` rules are accepted too, but a custom rule applies once defined.
    pub rules: Vec<String>,
    /// Where to look, by top-level key of the document: a key (`"msg"`, or a dotted key the
    /// document has as such), `"key.*"` (every string under `key`), or `"*"` (every string).
    /// Default: `log`, `msg`, `message`, `body`, `query`, `url`, `headers.*`.
    pub fields: Vec<String>,
    /// `mask` (default) writes `[REDACTED:<rule>]`; `hash` writes `[<rule>:<16 hex>]`, a keyed
    /// HMAC-SHA256 of the value, so the same value can be followed across lines unread.
    pub action: RedactAction,
    /// The HMAC key for `action = "hash"` (at least 16 bytes; a trailing newline is ignored).
    /// Read once at start-up; never shown in logs, metrics or `validate`. Default: none.
    pub hash_key_file: Option<PathBuf>,
    /// Rules of one's own, applied in every looked-at value.
    pub custom: Vec<CustomRedaction>,
    /// Namespaces whose pods' lines are left as written (default none).
    pub except_namespaces: Vec<String>,
}

impl Default for Redact {
    fn default() -> Self {
        Redact {
            rules: Vec::new(),
            fields: ["log", "msg", "message", "body", "query", "url", "headers.*"]
                .map(String::from)
                .to_vec(),
            action: RedactAction::Mask,
            hash_key_file: None,
            custom: Vec::new(),
            except_namespaces: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactAction {
    Mask,
    Hash,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRedaction {
    /// The rule's name in replacements and in `logferry_redactions_total{rule}`: lowercase
    /// letters, digits and `_`, not a built-in name.
    pub name: String,
    /// A regular expression (the `regex` crate's syntax); every match is replaced whole.
    pub pattern: String,
}

impl Redact {
    /// Whether the stage runs at all.
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty() || !self.custom.is_empty()
    }
}
