//! The keys of one parsed object: which member of a repeated key is written (the last, as
//! `JSON.parse` keeps), and the free `app_…` name under which an application key that belongs
//! to the agent is written.
//!
//! The work stays linear in the number of keys: a usual line is scanned, a wide one gets a
//! hash map, so a line with thousands of keys cannot stall the tailer.

use super::fields::Member;
use crate::config;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// Up to this many members, a key is looked for by scanning the others: a usual log line has
/// about a dozen, and comparing a dozen short strings is cheaper than building a hash map per
/// line. Above it, a map keeps the work linear in the number of keys.
const SCAN_MAX_KEYS: usize = 32;

/// Whether an application key is written under another name (`app_<key>`) at the top level:
/// a key of the agent's, or a dotted key into one (`kubernetes.namespace_name` would be the
/// agent's field to Elasticsearch, which reads dots as objects); and `log` (the message's own
/// field) unless it is a string where the agent writes none: `log.level` (ECS loggers) or an
/// object in `log` would clash with the text `log` of every plain line.
pub(super) fn is_reserved(key: &str, value: &RawValue, keep_original: bool) -> bool {
    // Most keys start with a byte no reserved key starts with: done without finding the head.
    if !key
        .as_bytes()
        .first()
        .is_some_and(|&b| RESERVED_FIRST[usize::from(b)])
    {
        return false;
    }
    // Keys are short: a plain loop beats a substring searcher's set-up, per key per line.
    let head = match key.bytes().position(|b| b == b'.') {
        Some(dot) => &key[..dot],
        None => key,
    };
    if config::AGENT_KEYS.contains(&head) {
        return true;
    }
    head == "log" && (key != "log" || keep_original || !value.get().starts_with('"'))
}

/// The first bytes of the agent's keys and of `log`.
const RESERVED_FIRST: [bool; 256] = {
    let mut first = [false; 256];
    let mut i = 0;
    while i < config::AGENT_KEYS.len() {
        first[config::AGENT_KEYS[i].as_bytes()[0] as usize] = true;
        i += 1;
    }
    first[b'l' as usize] = true;
    first
};

/// The keys of one object, to find which member of a repeated key is written and which name a
/// renamed key can take.
// On the stack for one line: boxing the prints would cost an allocation per line.
#[allow(clippy::large_enum_variant)]
pub(super) enum KeyIndex<'f, 'a> {
    /// The members, and a fingerprint of each key: two keys with different fingerprints
    /// differ, so most comparisons are of two integers, not two strings. `None` in place of
    /// the fingerprints when no two are alike (the usual line): then no key repeats.
    Scan(&'f [Member<'a>], Option<[u64; SCAN_MAX_KEYS]>),
    /// Each key and the position of its last member.
    Hashed(HashMap<&'f str, usize>),
}

impl<'f, 'a> KeyIndex<'f, 'a> {
    pub(super) fn new(fields: &'f [Member<'a>]) -> Self {
        if fields.len() <= SCAN_MAX_KEYS {
            let mut prints = [0; SCAN_MAX_KEYS];
            // One bit of 256 per fingerprint: a dozen keys rarely share one (about one line in
            // four), and when none do, no key is compared with another.
            let mut seen = [0u64; 4];
            let mut alike = false;
            for (p, (k, _)) in prints.iter_mut().zip(fields) {
                *p = fingerprint(k);
                let bit = (p.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize;
                alike |= seen[bit / 64] & 1 << (bit % 64) != 0;
                seen[bit / 64] |= 1 << (bit % 64);
            }
            return KeyIndex::Scan(fields, alike.then_some(prints));
        }
        let mut last = HashMap::with_capacity(fields.len());
        for (i, (k, _)) in fields.iter().enumerate() {
            probed();
            last.insert(k.as_ref(), i);
        }
        KeyIndex::Hashed(last)
    }

    /// Whether no key is given twice (every member is the last with its key).
    pub(super) fn unique(&self) -> bool {
        matches!(self, KeyIndex::Scan(_, None))
    }

    /// Whether member `i` (named `key`) is the last with its key, the one that is written.
    pub(super) fn is_last(&self, i: usize, key: &str) -> bool {
        match self {
            KeyIndex::Scan(_, None) => true,
            KeyIndex::Scan(fields, Some(prints)) => {
                let print = prints[i];
                !(i + 1..fields.len()).any(|j| {
                    probed();
                    prints[j] == print && fields[j].0 == key
                })
            }
            KeyIndex::Hashed(last) => {
                probed();
                last.get(key) == Some(&i)
            }
        }
    }

    /// Whether the object has a member named `name`.
    fn contains(&self, name: &str) -> bool {
        match self {
            KeyIndex::Scan(fields, prints) => {
                let print = fingerprint(name);
                fields.iter().enumerate().any(|(i, (k, _))| {
                    probed();
                    prints.is_none_or(|p| p[i] == print) && k == name
                })
            }
            KeyIndex::Hashed(last) => {
                probed();
                last.contains_key(name)
            }
        }
    }

    /// The name an application key that belongs to the agent is written under: `app_<key>`,
    /// or, when the application has that key too, `app_app_<key>`, and so on until the object
    /// has no such key. No two keys of a document can then be equal: reserved names never
    /// start with `app_`, each reserved key is written once (repeats keep the last), and two
    /// different reserved keys cannot end in the same name. The search is bounded by the
    /// message size: every `app_` more needs a longer key in the line.
    pub(super) fn free_name(&self, key: &str) -> String {
        let mut name = format!("app_{key}");
        while self.contains(&name) {
            name.insert_str(0, "app_");
        }
        name
    }
}

/// The length and the first, middle and last bytes of a key: equal keys have equal prints.
fn fingerprint(key: &str) -> u64 {
    let b = key.as_bytes();
    let at = |i: usize| u64::from(b.get(i).copied().unwrap_or(0));
    (b.len() as u64) << 24 | at(0) << 16 | at(b.len() / 2) << 8 | at(b.len().wrapping_sub(1))
}

// Counts key comparisons and hash probes in tests, so that the cost of a wide object can be
// asserted without a clock.
#[cfg(test)]
thread_local! {
    pub(super) static KEY_PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn probed() {
    #[cfg(test)]
    KEY_PROBES.with(|c| c.set(c.get() + 1));
}
