//! Redaction: e-mail addresses, card numbers, SSNs, phone numbers, tokens, keys and addresses
//! replaced in a finished document before it is framed, so neither the disk buffer, the index
//! nor the dead letters ever hold the original (issues 17 and 25).
//!
//! A stage of its own: [`crate::encode`] hands it each document the writer finished (message
//! merged or nested, the raw copy, text that was never parsed — `parser: none`, too deep,
//! malformed, truncated — and the pod fields), and it walks the JSON once (`json.rs`). One
//! place decides what is looked at ([`Redactor::redact_document`]): the message's text in
//! `log` always; every string, key and number of the message at any depth unless `fields`
//! narrows it (paths, any case) or `skip_fields` exempts a path; never the agent's own fields.
//! Escapes are decoded before matching, leniently: a lone surrogate does not hide the rest of
//! its string. It hands back the rewritten document, or None when nothing matched, which is
//! the common case and allocates nothing.
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
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// The shortest text a built-in rule replaces (`a@b.cc`; `1.2.3.4` is longer).
const SHORTEST_MATCH: usize = 6;

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
    /// Whether a rule catches numbers (`card`, `us_ssn`, `phone`), so JSON numbers and strings
    /// of bare digits are looked at too.
    numbers: bool,
    /// Each rule's name (the replacement's and the metric's label) and its counter.
    labels: Vec<(String, Counter)>,
    /// `fields` as lowercased path components (`"headers.*"` as `["headers"]`); unused when
    /// `all_fields`.
    fields: Vec<Vec<String>>,
    all_fields: bool,
    /// `skip_fields`, likewise.
    skip: Vec<Vec<String>>,
    /// `parse.target`: the key the message is nested under, whose paths start below it.
    target: Option<String>,
    /// `None` masks; `Some` holds the HMAC keyed with the operator's key, cloned per value.
    hasher: Option<Arc<KeyedHash>>,
    except_namespaces: Vec<String>,
}

/// The keyed HMAC and what its key file looked like when it was read, so a reload reads the
/// file again only when it has changed.
struct KeyedHash {
    mac: Hmac<Sha256>,
    path: PathBuf,
    stamp: Option<FileStamp>,
}

/// A file's identity, size and modification time.
#[derive(PartialEq, Eq, Clone, Copy)]
struct FileStamp(u64, u64, u64, i64, i64);

impl FileStamp {
    fn of(path: &std::path::Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        // The key is usually a Secret's projected file: a symlink to a new file at a change.
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp(
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
        ))
    }
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
            .field("skip", &self.skip)
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

/// A `fields` entry as lowercased path components.
fn path_of(field: &str) -> Vec<String> {
    let stem = field.strip_suffix(".*").unwrap_or(field);
    stem.split('.').map(str::to_ascii_lowercase).collect()
}

/// Whether the keys `keys` (as written; a key with dots is several components) begin with the
/// components `want` (all of them, when `whole`: the path is exactly `want`).
fn path_matches(keys: &[&str], want: &[String], whole: bool) -> bool {
    let mut want = want.iter();
    for part in keys.iter().flat_map(|k| k.split('.')) {
        match want.next() {
            None => return !whole,
            Some(w) if w.eq_ignore_ascii_case(part) => {}
            Some(_) => return false,
        }
    }
    want.next().is_none()
}

impl Redactor {
    /// None when `[redact]` has no rules (the stage is off: no per-line cost). Reads
    /// `hash_key_file` for `action = "hash"`, unless `previous` (the redactor this one replaces
    /// at a reload) read the same file and it has not changed since.
    pub fn new(
        cfg: &config::Redact,
        metrics: &Metrics,
        previous: Option<&Redactor>,
    ) -> Result<Option<Redactor>> {
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
            RedactAction::Hash => Some(keyed_hash(
                cfg.hash_key_file.as_ref(),
                previous.and_then(|p| p.hasher.as_ref()),
            )?),
        };
        Ok(Some(Redactor {
            active: built_in.iter().fold(0, |a, (r, _, _)| a | scan::bit(*r)),
            numbers: built_in.iter().any(|(r, _, _)| r.applies_to_numbers()),
            built_in,
            custom,
            labels,
            all_fields: cfg.fields.iter().any(|f| f == "*"),
            fields: cfg.fields.iter().map(|f| path_of(f)).collect(),
            skip: cfg.skip_fields.iter().map(|f| path_of(f)).collect(),
            target: None,
            hasher,
            except_namespaces: cfg.except_namespaces.clone(),
        }))
    }

    /// The message is nested under `target` (`parse.target`; empty: merged at the top), so
    /// `fields` paths start below it.
    #[must_use]
    pub fn with_target(mut self, target: &str) -> Self {
        self.target = (!target.is_empty()).then(|| target.to_owned());
        self
    }

    /// Whether pods of this namespace are left alone (`except_namespaces`).
    pub fn skips_namespace(&self, ns: &str) -> bool {
        self.except_namespaces.iter().any(|n| n == ns)
    }

    /// A short tag of the hash key in use (a MAC of a fixed text), to tell whether a reload
    /// changed it without holding or showing the key; None when masking.
    pub fn key_tag(&self) -> Option<[u8; 8]> {
        let mut mac = self.hasher.as_ref()?.mac.clone();
        mac.update(b"logferry: which key");
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag[..8]);
        Some(out)
    }

    /// The finished document (the JSON object the writer made) with every looked-at string,
    /// key and number redacted; None when nothing matched (allocating nothing). Looked at: the
    /// message's text in `log` always, and the message's members as `fields` and
    /// `skip_fields` say; never the agent's own fields (`@timestamp`, `kubernetes`, …).
    ///
    /// `message` is the byte range of `doc` that holds the message's members, as the writer
    /// wrote them; the caller vouches that the members outside it are the agent's own, which
    /// nothing looks at: they are passed over unread. The common document, where no rule could
    /// match, costs one prefilter scan of that range and no walk.
    pub fn redact_document(&self, doc: &str, message: Range<usize>) -> Option<String> {
        let part = doc.get(message.clone())?;
        if !self.may_match(part.as_bytes()) {
            return None;
        }
        self.rewrite(doc, message)
    }

    /// [`Redactor::redact_document`] for a message [`Redactor::may_match`] already said yes to:
    /// the walk, without the prefilter's pass again.
    pub fn rewrite(&self, doc: &str, message: Range<usize>) -> Option<String> {
        json::rewrite(doc, message, &mut Scope(self))
    }

    /// Whether a rule may match in the message's members `part`: false is certain, and
    /// [`Redactor::redact_document`] would then find nothing. For a caller holding bytes, so the
    /// common document is not even checked for UTF-8.
    pub fn may_match(&self, part: &[u8]) -> bool {
        !self.custom.is_empty()
            || scan::candidates(part) & (self.active | scan::UNICODE_ESCAPE) != 0
    }

    /// Whether the value at `path` (keys from the document's root) is looked at.
    fn looks_at(&self, path: &[&str], parent: bool) -> bool {
        let Some((head, rest)) = path.split_first() else {
            return false;
        };
        if config::AGENT_KEYS.contains(head) {
            return false;
        }
        if rest.is_empty() && *head == "log" {
            return true;
        }
        let message = match &self.target {
            Some(t) if t == head => rest,
            _ => path,
        };
        if message.is_empty() {
            return self.all_fields;
        }
        if self.skip.iter().any(|s| path_matches(message, s, true)) {
            return false;
        }
        parent || self.all_fields || self.fields.iter().any(|f| path_matches(message, f, false))
    }

    /// The string with every match replaced, or None when nothing matched (allocating nothing).
    pub fn redact_str(&self, s: &str) -> Option<String> {
        let hits = self.hits(s);
        if hits.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(s.len() + 16 * hits.len());
        self.splice(&hits, s, s, |at| at, &mut out);
        Some(out)
    }

    /// Appends `written` with each of `hits` (found in `found_in`) replaced; `at` says where a
    /// place in `found_in` is in `written`.
    fn splice(
        &self,
        hits: &[Hit],
        found_in: &str,
        written: &str,
        at: impl Fn(usize) -> usize,
        out: &mut String,
    ) {
        let mut copied = 0;
        for h in hits {
            out.push_str(&written[copied..at(h.start)]);
            self.replacement(h.rule, &found_in[h.start..h.end], out);
            copied = at(h.end);
        }
        out.push_str(&written[copied..]);
    }

    /// Every value in `s` a rule replaces, in order, none overlapping; empty (allocating
    /// nothing) when none is.
    fn hits(&self, s: &str) -> Vec<Hit> {
        let flagged = scan::candidates(s.as_bytes()) & self.active;
        let mut hits: Vec<Hit> = Vec::new();
        if flagged == 0 && self.custom.is_empty() {
            return hits;
        }
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
        scan::settle(&mut hits);
        hits
    }

    /// One JSON string (a value or a key), quotes included, rewritten as JSON text; `key` the
    /// nearest key above a value, which says whether bare digits are a phone number or an SSN.
    fn redact_json_string(&self, quoted: &str, key: Option<&str>) -> Option<String> {
        let content = quoted.get(1..quoted.len().saturating_sub(1))?;
        // No built-in value is shorter than an address like `a@b.cc` (escapes only lengthen
        // the text): most keys and many values are done here.
        if content.len() < SHORTEST_MATCH && self.custom.is_empty() {
            return None;
        }
        if !content.contains('\\') {
            // Unescaped, the text is the string itself, and what replaces a match is plain
            // ASCII without quotes or backslashes: the result is valid JSON as it stands.
            return self
                .redact_str(content)
                .or_else(|| self.redact_digits(content, key?))
                .map(|r| format!("\"{r}\""));
        }
        // `\n`, `\"` and the like decode to characters no built-in's sign contains, so the
        // escaped text shows the same signs as the decoded one; `\u` escapes can hide any.
        if self.custom.is_empty()
            && scan::candidates(content.as_bytes()) & (self.active | scan::UNICODE_ESCAPE) == 0
        {
            return None;
        }
        if let Some((decoded, escapes)) = json::unescape_short(content) {
            return self.splice_escaped(content, &decoded, &escapes);
        }
        // Decoded leniently: a lone surrogate (a string cut inside an emoji) must not hide the
        // rest of the string from the rules.
        let decoded = json::unescape_lossy(content);
        let redacted = self.redact_str(&decoded)?;
        serde_json::to_string(&redacted).ok()
    }

    /// The JSON string whose content as written is `content`, decoded `decoded` by
    /// [`json::unescape_short`] with its escapes at `escapes`, with each match replaced in the
    /// text as written: the rest keeps its escapes, and the string is not escaped again (a
    /// stack trace of 20 KiB with an address on every line is copied once, not decoded,
    /// rewritten and serialised).
    fn splice_escaped(&self, content: &str, decoded: &str, escapes: &[usize]) -> Option<String> {
        let hits = self.hits(decoded);
        if hits.is_empty() {
            return None;
        }
        // Each escape before a place in the decoded text is one byte longer as written. A
        // match starts and ends between characters, so never inside an escape.
        let written = |at: usize| at + escapes.partition_point(|&e| e < at);
        let mut out = String::with_capacity(content.len() + 2 + 16 * hits.len());
        out.push('"');
        self.splice(&hits, decoded, content, written, &mut out);
        out.push('"');
        Some(out)
    }

    /// A JSON number that is a card number, or under a key that names a phone number or an
    /// SSN one of those, as the quoted replacement.
    fn redact_number(&self, n: &str, key: Option<&str>) -> Option<String> {
        let r = self.redact_digits(n, key.unwrap_or_default())?;
        Some(format!("\"{r}\""))
    }

    /// Bare digits (a JSON number, or a string of nothing else) that a rule catching numbers
    /// accepts under `key`, as their replacement.
    fn redact_digits(&self, digits: &str, key: &str) -> Option<String> {
        if !self.numbers || digits.len() < 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (_, _, label) = self
            .built_in
            .iter()
            .find(|(r, _, _)| r.applies_to_numbers() && r.accepts_bare(digits, key))?;
        let mut out = String::new();
        self.replacement(*label, digits, &mut out);
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
        let mut mac = keyed.mac.clone();
        mac.update(normalized.as_bytes());
        let tag = mac.finalize().into_bytes();
        out.push('[');
        out.push_str(name);
        out.push(':');
        out.push_str(&hex::encode(&tag[..8]));
        out.push(']');
    }
}

/// The walk over one document, asking the redactor what to look at and what to replace.
struct Scope<'r>(&'r Redactor);

impl json::Visit for Scope<'_> {
    fn look(&mut self, path: &[&str], parent: bool) -> bool {
        self.0.looks_at(path, parent)
    }

    fn replace(&mut self, path: &[&str], token: json::Token<'_>) -> Option<String> {
        let key = path.last().copied();
        match token {
            json::Token::Key(quoted) => self.0.redact_json_string(quoted, None),
            json::Token::Str(quoted) => self.0.redact_json_string(quoted, key),
            json::Token::Num(n) => self.0.redact_number(n, key),
        }
    }
}

/// The keyed HMAC for `path`: `previous`'s when it read the same file and the file has not
/// changed since, else read now.
fn keyed_hash(path: Option<&PathBuf>, previous: Option<&Arc<KeyedHash>>) -> Result<Arc<KeyedHash>> {
    let path = path.ok_or(Error::MissingKey)?;
    let stamp = FileStamp::of(path);
    if let Some(p) = previous
        && p.path == *path
        && stamp.is_some()
        && p.stamp == stamp
    {
        return Ok(Arc::clone(p));
    }
    Ok(Arc::new(KeyedHash {
        mac: keyed_hmac(path)?,
        path: path.clone(),
        stamp,
    }))
}

/// The HMAC keyed with the key file's bytes (a trailing newline, as `echo` leaves, dropped).
fn keyed_hmac(path: &PathBuf) -> Result<Hmac<Sha256>> {
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
