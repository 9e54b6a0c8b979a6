//! The one pass every looked-at string costs: a byte loop that says which built-in rules could
//! match at all, so the common line (no `@`, no run of 9 digits, no `eyJ`, no `Bearer`, no
//! `AKIA`/`ASIA`, no dotted quad) is done after one scan, with no regex run and no allocation.
//!
//! Why a hand-written loop and not a `RegexSet` or Aho–Corasick: the cheap signs of most rules
//! are not literals but shapes (a run of digits with separators, digits between dots), which a
//! literal prefilter cannot express and a `RegexSet` would scan for with a DFA per rule set,
//! slower than one table lookup per byte. The literals (`@`, `eyJ`, `bearer`, `AKIA`) are
//! checked in the same loop, only at the bytes they start with.
//!
//! A flagged rule then runs its own regex over the string (the regex crate's lazy DFA, linear
//! time); [`Hit`]s of all rules are merged, the leftmost-longest winning an overlap.

use super::rules::BuiltIn;

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
const AT: u8 = 4;
/// First bytes of the literal signs, checked where they occur.
const LOWER_E: u8 = 5;
const LETTER_B: u8 = 6;
const UPPER_A: u8 = 7;

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
    c[b'@' as usize] = AT;
    c[b'e' as usize] = LOWER_E;
    c[b'B' as usize] = LETTER_B;
    c[b'b' as usize] = LETTER_B;
    c[b'A' as usize] = UPPER_A;
    c
};

/// Which built-in rules could match in `s`. Never misses a rule's match (each regex implies
/// the sign tested here); may say yes where the rule then finds nothing.
pub(super) fn candidates(s: &[u8]) -> Candidates {
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
                found |= literal_at(class, &s[i..]);
            }
        }
        last = class;
    }
    found
}

/// The rule a literal sign starting here points to, if any.
fn literal_at(class: u8, rest: &[u8]) -> Candidates {
    match class {
        AT => bit(BuiltIn::Email),
        LOWER_E if rest.starts_with(b"eyJ") => bit(BuiltIn::Jwt),
        LETTER_B if rest.len() >= 6 && rest[..6].eq_ignore_ascii_case(b"bearer") => {
            bit(BuiltIn::Bearer)
        }
        UPPER_A if rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") => bit(BuiltIn::AwsKey),
        _ => 0,
    }
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
