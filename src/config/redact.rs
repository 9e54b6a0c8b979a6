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
    /// Where to look in the message, to narrow the stage: a path (`"msg"`, `"user.email"`:
    /// a dotted path reaches into nested objects, and a key written with dots is the same
    /// path), matched case-insensitively, covering everything under it; `"key.*"` is the same
    /// as `"key"`. Default `"*"`: every string (and key) of the message at any depth. The
    /// message's text in `log` (a line that is not JSON, `parser: none`, a line too deep or
    /// malformed, `keep_original`'s raw copy) is always looked at, whatever this says.
    pub fields: Vec<String>,
    /// Exact paths (as in `fields`) left alone, with everything under them: ids an operator
    /// knows are safe, for speed. `log` cannot be skipped. Default none.
    pub skip_fields: Vec<String>,
    /// `mask` (default) writes `[REDACTED:<rule>]`; `hash` writes `[<rule>:<16 hex>]`, a keyed
    /// HMAC-SHA256 of the value, so the same value can be followed across lines unread.
    pub action: RedactAction,
    /// The HMAC key for `action = "hash"` (at least 16 bytes; a trailing newline is ignored).
    /// Read at start-up, and again at a reload only when the file has changed (which is
    /// logged: tags from then on differ); never shown in logs, metrics or `validate`.
    /// Default: none.
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
            fields: vec!["*".to_owned()],
            skip_fields: Vec::new(),
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

/// Top-level keys of a document that are the agent's own (an application's are renamed
/// `app_<key>`): never looked at by redaction, so a `fields` path starting with one of them
/// can never match.
pub const AGENT_KEYS: [&str; 5] = ["@timestamp", "stream", "kubernetes", "docker", "logferry"];

impl Redact {
    /// Whether the stage runs at all.
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty() || !self.custom.is_empty()
    }

    /// What `validate` says about the section without refusing it: `fields` entries that can
    /// never match anything the stage looks at.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.fields.iter().chain(&self.skip_fields) {
            let head = f.split('.').next().unwrap_or_default();
            if AGENT_KEYS.iter().any(|k| k.eq_ignore_ascii_case(head)) {
                out.push(format!(
                    "redact: {f:?} names the agent's own field {head:?}, which redaction never looks at (only the message is): it matches nothing"
                ));
            }
        }
        if self.enabled()
            && self
                .skip_fields
                .iter()
                .any(|f| f.eq_ignore_ascii_case("log"))
        {
            out.push("redact.skip_fields: \"log\" (the message's text) is always looked at; the entry has no effect".to_owned());
        }
        out
    }
}
