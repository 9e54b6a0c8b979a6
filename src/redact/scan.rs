//! The one pass every looked-at string costs: says which built-in rules could match at all, so
//! the common line (no `@`, no card-, phone- or SSN-shaped digits, no `eyJ`, no `Bearer`, no
//! `AKIA`/`ASIA`, no dotted quad) is done with no regex run and no allocation.
//!
//! The literal signs (`@`, `eyJ`, `earer`/`EARER`, `AKIA`, `ASIA`) are searched for with SIMD
//! (`memchr`), many bytes at a time. The shapes (a run of digits with separators, digits between
//! dots) are not literals: a hand-written loop finds them, one table lookup per byte, skipping
//! a run of letters at one comparison a byte (a `RegexSet` would scan with a DFA per rule set,
//! slower). Measured with `scripts/bench` (`redact` against `one-file`, 2026-12-06): looking for
//! the literals in that loop, at every `e`, `b` and `A`, made the stage cost 1.50–1.60× one-file
//! where this costs 1.38–1.46×.
//!
//! A flagged rule then runs its own regex over the string (the regex crate's lazy DFA, linear
//! time); [`Hit`]s of all rules are merged, the leftmost-longest winning an overlap.

use super::rules::BuiltIn;
use memchr::memmem;
use std::sync::LazyLock;

/// Bit `1 << rule as u16` per built-in rule that may match.
pub(super) type Candidates = u16;

pub(super) const fn bit(rule: BuiltIn) -> Candidates {
    1 << rule as u16
}

/// The digits (through single separators) a card needs; a phone number 10, or 9 after a `+`
/// (E.164); an SSN 9, written `ddd-dd-dddd` or bare. Shorter runs (years, ports, counts,
/// HTTP statuses) are none of them, and a UUID's digits, run together through its dashes, are
/// rarely 10 and never shaped like an SSN.
const CARD_RUN: u32 = 13;
const PHONE_RUN: u32 = 10;
const SSN_RUN: u32 = 9;

/// Byte classes: everything else is `OTHER`, which ends digit runs.
const OTHER: u8 = 0;
const DIGIT: u8 = 1;
const DOT: u8 = 2;
/// Characters that may sit between the digits of one number: `4111 1111`, `(415) 555-2671`.
const SEP: u8 = 3;

const CLASS: [u8; 256] = {
    let mut c = [OTHER; 256];
    let mut d = b'0';
    while d <= b'9' {
        c[d as usize] = DIGIT;
        d += 1;
    }
    c[b'.' as usize] = DOT;
    c[b' ' as usize] = SEP;
    c[b'-' as usize] = SEP;
    c[b'(' as usize] = SEP;
    c[b')' as usize] = SEP;
    c[b'+' as usize] = SEP;
    c
};

/// The literal signs, searched for with SIMD (`memchr`): much faster than looking at each
/// byte, and most text has none of them.
static JWT: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("eyJ"));
static BEARER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("earer"));
static BEARER_UP: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("EARER"));
static AKIA: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("AKIA"));
static ASIA: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("ASIA"));

/// Which built-in rules could match in `s`. Never misses a rule's match (each regex implies
/// the sign tested here); may say yes where the rule then finds nothing.
pub(super) fn candidates(s: &[u8]) -> Candidates {
    let mut found = digit_shapes(s);
    if memchr::memchr(b'@', s).is_some() {
        found |= bit(BuiltIn::Email);
    }
    if JWT.find(s).is_some() {
        found |= bit(BuiltIn::Jwt);
    }
    // `bearer`, `Bearer` or `BEARER` (the rule's spellings).
    if BEARER.find(s).is_some() || BEARER_UP.find(s).is_some() {
        found |= bit(BuiltIn::Bearer);
    }
    if AKIA.find(s).is_some() || ASIA.find(s).is_some() {
        found |= bit(BuiltIn::AwsKey);
    }
    found
}

/// The rules that need digits in a shape (a card's, a phone number's, an SSN's, a dotted
/// quad): one loop over the bytes, which skips letters quickly.
fn digit_shapes(s: &[u8]) -> Candidates {
    let mut found: Candidates = 0;
    // Digits in the current run, and separators since its last digit (two allowed: `) `).
    let mut run = 0u32;
    let mut gap = 0u8;
    // Dot-separated digit groups in the current `1.2.3.4`-shaped run; the previous class.
    let mut groups = 0u8;
    let mut last = OTHER;
    // The digits of the current group and the two before it (through one `-` each), for the
    // `ddd-dd-dddd` shape; whether a `+` leads the run.
    let (mut group, mut before) = (0u32, [0u32; 2]);
    let mut plus = false;
    for (i, &b) in s.iter().enumerate() {
        let class = CLASS[b as usize];
        if class == OTHER && last == OTHER {
            // Most bytes: a letter after a letter. Nothing to reset, nothing to look for.
            continue;
        }
        match class {
            DIGIT => {
                if gap > 2 {
                    run = 0;
                    plus = false;
                }
                run += 1;
                if last == DIGIT {
                    group += 1;
                } else {
                    before = if last == SEP && gap == 1 && s[i - 1] == b'-' {
                        [before[1], group]
                    } else {
                        [0, 0]
                    };
                    group = 1;
                }
                gap = 0;
                if run >= CARD_RUN {
                    found |= bit(BuiltIn::Card);
                }
                if run >= PHONE_RUN || (plus && run >= PHONE_RUN - 1) {
                    found |= bit(BuiltIn::Phone);
                }
                if group >= SSN_RUN || (group == 4 && before == [3, 2]) {
                    found |= bit(BuiltIn::UsSsn);
                }
                if last != DIGIT {
                    groups = if last == DOT && groups > 0 {
                        groups + 1
                    } else {
                        1
                    };
                    if groups >= 4 {
                        found |= bit(BuiltIn::Ipv4);
                    }
                }
            }
            DOT | SEP => {
                gap = gap.saturating_add(1);
                plus |= b == b'+';
                if class == SEP || last != DIGIT {
                    groups = 0;
                }
            }
            _ => {
                run = 0;
                gap = 0;
                groups = 0;
                group = 0;
                before = [0, 0];
                plus = false;
            }
        }
        last = class;
    }
    found
}

/// One value to replace: `start..end` in the string, and the index of the rule that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub start: usize,
    pub end: usize,
    pub rule: usize,
}

/// Orders hits and drops those overlapping an earlier one: leftmost first, then longest, then
/// the rule configured first (`Bearer eyJ…` is one replacement, not two).
pub(super) fn settle(hits: &mut Vec<Hit>) {
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.rule));
    let mut reached = 0;
    hits.retain(|h| {
        let keep = h.start >= reached;
        if keep {
            reached = h.end;
        }
        keep
    });
}
