//! Redaction: e-mail addresses, card numbers, SSNs, phone numbers, tokens, keys and addresses
//! replaced in a document's values before it is encoded, so neither the disk buffer nor the
//! index ever holds the original (issue 17).
//!
//! Owns the `[redact]` rules compiled into a [`Redactor`] (once per tailer), the built-in
//! rules and their validators (`rules.rs`), the one-pass prefilter (`scan.rs`) and the walk
//! over a JSON value's text (`json.rs`). `parse` calls it on the message and on the members
//! [`Redactor::wants`]; it hands back the rewritten text, or None when nothing matched, which
//! is the common case and allocates nothing. Keys are never redacted, only string values, and
//! numbers only where a rule says so (`card`: card numbers logged as numbers).
//!
//! **Precision before recall for identifiers.** UUIDs, ISO timestamps, epoch seconds and
//! millis, order numbers, hex request ids and `x.y.z` versions survive the built-ins (the table
//! tests in `tests.rs` hold them to it). The one known casualty: a four-part version written
//! bare, `1.2.3.4`, is an IPv4 address to `ipv4` (each octet ≤ 255, not part of a longer dotted
//! run such as an OID); `v1.2.3.4` and `1.2.3` survive.
//!
//! **One pass.** Every looked-at string costs one byte scan ([`scan`]) that flags the rules
//! which could match; only flagged rules run their regex. A line with nothing that looks like
//! any rule's value costs that scan and nothing else. Custom rules have no cheap sign the
//! agent can know, so each costs one regex search per string (the regex crate's own literal
//! prefilter makes `MRN…` cheap).
//!
//! **Mask or hash.** `mask` writes `[REDACTED:<rule>]`. `hash` writes `[<rule>:<16 hex>]`:
//! the first 64 bits of HMAC-SHA256 under the operator's key of the value (normalised: the
//! digits of a card, SSN or phone number, an address in lower case), so an investigator can
//! follow one card across lines without reading it. 64 bits make a collision among even a
//! billion distinct values unlikely (about 3 %) and are plenty to correlate. They are not
//! what protects the value: an SSN has 10⁹ possibilities and a phone number 10¹⁰, so a bare
//! hash of any length is undone by trying them all. The key is what protects it — without it
//! no guess can be checked — which is why `hash` needs `hash_key_file`, why the key is read
//! once and held only inside the keyed MAC state, and why it never appears in a log line, a
//! metric, `validate` or this type's `Debug`.

mod json;
mod rules;
mod scan;
#[cfg(test)]
mod tests;

use crate::config::{self, RedactAction};
use crate::metrics::Metrics;
use hmac::{Hmac, Mac};
use prometheus_client::metrics::counter::Counter;
use regex::Regex;
use rules::BuiltIn;
use scan::{Candidates, Hit};
use sha2::Sha256;
use std::fmt;
use std::path::PathBuf;

/// Keys shorter than this are refused: a short key can be guessed, and then every hash with it.
const MIN_KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redact.rules: unknown rule {0:?}")]
    UnknownRule(String),
    #[error(
        "redact.custom: {0:?} is not a usable rule name (lowercase letters, digits, _; not a built-in)"
    )]
    RuleName(String),
    #[error("redact.custom {name:?}: invalid pattern")]
    Pattern {
        name: String,
        #[source]
        source: regex::Error,
    },
    #[error("redact.action = \"hash\" needs redact.hash_key_file")]
    MissingKey,
    #[error("cannot read redact.hash_key_file {}", path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("redact.hash_key_file {} holds {len} bytes; the key needs at least {MIN_KEY_BYTES}", path.display())]
    ShortKey { path: PathBuf, len: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `[redact]` rules, compiled; cheap to clone (the regexes and counters are shared).
#[derive(Clone)]
pub struct Redactor {
    /// Built-in rules in use, with their candidate finder and their index in `labels`.
    built_in: Vec<(BuiltIn, Regex, usize)>,
    /// `[[redact.custom]]` rules with their index in `labels`.
    custom: Vec<(Regex, usize)>,
    /// The prefilter bits of `built_in`: a string flagging none of them skips every regex.
    active: Candidates,
    /// Whether `card` is on, so JSON numbers are looked at too.
    numbers: bool,
    /// Each rule's name (the replacement's and the metric's label) and its counter.
    labels: Vec<(String, Counter)>,
    /// The top-level keys looked at (`key` and `key.*` alike), or every key.
    fields: Vec<String>,
    all_fields: bool,
    /// `None` masks; `Some` holds the HMAC keyed with the operator's key, cloned per value.
    hasher: Option<Hmac<Sha256>>,
    except_namespaces: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays out; say only which rules run and how.
        f.debug_struct("Redactor")
            .field(
                "rules",
                &self.labels.iter().map(|l| &l.0).collect::<Vec<_>>(),
            )
            .field("fields", &self.fields)
            .field("all_fields", &self.all_fields)
            .field(
                "action",
                &if self.hasher.is_some() {
                    "hash"
                } else {
                    "mask"
                },
            )
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// None when `[redact]` has no rules (the stage is off: no per-line cost). Reads
    /// `hash_key_file` for `action = "hash"`.
    pub fn new(cfg: &config::Redact, metrics: &Metrics) -> Result<Option<Redactor>> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let mut labels: Vec<(String, Counter)> = Vec::new();
        let mut label = |name: &str| {
            let counter = metrics
                .redactions
                .get_or_create(&vec![("rule", name.to_owned())])
                .clone();
            labels.push((name.to_owned(), counter));
            labels.len() - 1
        };
        let mut built_in = Vec::new();
        let custom_names: Vec<&str> = cfg.custom.iter().map(|c| c.name.as_str()).collect();
        for name in &cfg.rules {
            match BuiltIn::from_name(name) {
                Some(rule) if !built_in.iter().any(|(r, _, _)| *r == rule) => {
                    // A built-in pattern that does not compile is a bug the tests catch.
                    let regex = Regex::new(&rule.pattern()).map_err(|source| Error::Pattern {
                        name: name.clone(),
                        source,
                    })?;
                    built_in.push((rule, regex, label(name)));
                }
                Some(_) => {}
                None if custom_names.contains(&name.as_str()) => {}
                None => return Err(Error::UnknownRule(name.clone())),
            }
        }
        let mut custom = Vec::new();
        for c in &cfg.custom {
            let label_safe = !c.name.is_empty()
                && c.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !label_safe || BuiltIn::from_name(&c.name).is_some() {
                return Err(Error::RuleName(c.name.clone()));
            }
            let regex = Regex::new(&c.pattern).map_err(|source| Error::Pattern {
                name: c.name.clone(),
                source,
            })?;
            custom.push((regex, label(&c.name)));
        }
        let hasher = match cfg.action {
            RedactAction::Mask => None,
            RedactAction::Hash => Some(keyed_hmac(cfg.hash_key_file.as_ref())?),
        };
        Ok(Some(Redactor {
            active: built_in.iter().fold(0, |a, (r, _, _)| a | scan::bit(*r)),
            numbers: built_in.iter().any(|(r, _, _)| r.applies_to_numbers()),
            built_in,
            custom,
            labels,
            all_fields: cfg.fields.iter().any(|f| f == "*"),
            fields: cfg
                .fields
                .iter()
                .map(|f| f.strip_suffix(".*").unwrap_or(f).to_owned())
                .collect(),
            hasher,
            except_namespaces: cfg.except_namespaces.clone(),
        }))
    }

    /// Whether values under this top-level key (as the document has it) are to be looked at;
    /// `fields` entries like `"headers.*"` and `"*"` included.
    pub fn wants(&self, key: &str) -> bool {
        self.all_fields || self.fields.iter().any(|f| f == key)
    }

    /// Whether pods of this namespace are left alone (`except_namespaces`).
    pub fn skips_namespace(&self, ns: &str) -> bool {
        self.except_namespaces.iter().any(|n| n == ns)
    }

    /// The string with every match replaced, or None when nothing matched (allocating nothing).
    pub fn redact_str(&self, s: &str) -> Option<String> {
        let flagged = scan::candidates(s.as_bytes()) & self.active;
        if flagged == 0 && self.custom.is_empty() {
            return None;
        }
        let mut hits: Vec<Hit> = Vec::new();
        for (rule, regex, label) in &self.built_in {
            if flagged & scan::bit(*rule) == 0 {
                continue;
            }
            for m in regex.find_iter(s) {
                if let Some(r) = rule.accept(s, m.range()) {
                    hits.push(Hit {
                        start: r.start,
                        end: r.end,
                        rule: *label,
                    });
                }
            }
        }
        for (regex, label) in &self.custom {
            hits.extend(regex.find_iter(s).filter(|m| !m.is_empty()).map(|m| Hit {
                start: m.start(),
                end: m.end(),
                rule: *label,
            }));
        }
        if hits.is_empty() {
            return None;
        }
        scan::settle(&mut hits);
        let mut out = String::with_capacity(s.len() + 16 * hits.len());
        let mut copied = 0;
        for h in &hits {
            out.push_str(&s[copied..h.start]);
            self.replacement(h.rule, &s[h.start..h.end], &mut out);
            copied = h.end;
        }
        out.push_str(&s[copied..]);
        Some(out)
    }

    /// A JSON value as written (a string, number, object, array): the JSON text with every
    /// string value (and, for `card`, every number) inside redacted, keys untouched; None when
    /// nothing matched.
    pub fn redact_json(&self, raw: &str) -> Option<String> {
        json::rewrite(raw, |token| match token {
            json::Token::Str(quoted) => self.redact_json_string(quoted),
            json::Token::Num(n) if self.numbers => self.redact_card_number(n),
            json::Token::Num(_) => None,
            json::Token::Cut(rest) => self.redact_str(rest).map(|r| format!("\"{r}")),
        })
    }

    /// One JSON string value, quotes included, rewritten as JSON text.
    fn redact_json_string(&self, quoted: &str) -> Option<String> {
        let content = quoted.get(1..quoted.len().saturating_sub(1))?;
        if !content.contains('\\') {
            // Unescaped, the text is the string itself, and what replaces a match is plain
            // ASCII without quotes or backslashes: the result is valid JSON as it stands.
            return self.redact_str(content).map(|r| format!("\"{r}\""));
        }
        // `\n`, `\"` and the like decode to characters no built-in's sign contains, so the
        // escaped text shows the same signs as the decoded one; `\u` escapes can hide any.
        if !content.contains("\\u")
            && self.custom.is_empty()
            && scan::candidates(content.as_bytes()) & self.active == 0
        {
            return None;
        }
        let decoded: String = serde_json::from_str(quoted).ok()?;
        let redacted = self.redact_str(&decoded)?;
        serde_json::to_string(&redacted).ok()
    }

    /// A JSON number that is a card number, as the quoted replacement.
    fn redact_card_number(&self, n: &str) -> Option<String> {
        if !(13..=19).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (_, _, label) = self
            .built_in
            .iter()
            .find(|(r, _, _)| r.applies_to_numbers())?;
        rules::card(n)?;
        let mut out = String::from("\"");
        self.replacement(*label, n, &mut out);
        out.push('"');
        Some(out)
    }

    /// Appends what replaces `value`, found by rule `label`, and counts it.
    fn replacement(&self, label: usize, value: &str, out: &mut String) {
        let (name, counter) = &self.labels[label];
        counter.inc();
        let Some(keyed) = &self.hasher else {
            out.push_str("[REDACTED:");
            out.push_str(name);
            out.push(']');
            return;
        };
        let normalized = match BuiltIn::from_name(name) {
            Some(rule) => rule.normalize(value),
            None => value.to_owned(),
        };
        let mut mac = keyed.clone();
        mac.update(normalized.as_bytes());
        let tag = mac.finalize().into_bytes();
        out.push('[');
        out.push_str(name);
        out.push(':');
        out.push_str(&hex::encode(&tag[..8]));
        out.push(']');
    }
}

/// The HMAC keyed with the key file's bytes (a trailing newline, as `echo` leaves, dropped).
fn keyed_hmac(path: Option<&PathBuf>) -> Result<Hmac<Sha256>> {
    let path = path.ok_or(Error::MissingKey)?;
    let mut key = std::fs::read(path).map_err(|source| Error::KeyFile {
        path: path.clone(),
        source,
    })?;
    while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        key.pop();
    }
    if key.len() < MIN_KEY_BYTES {
        return Err(Error::ShortKey {
            path: path.clone(),
            len: key.len(),
        });
    }
    // HMAC takes a key of any length; the error case cannot happen, but is not unwrapped.
    Hmac::<Sha256>::new_from_slice(&key).map_err(|_| Error::ShortKey {
        path: path.clone(),
        len: key.len(),
    })
}
