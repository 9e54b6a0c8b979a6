//! The one pass every looked-at string costs: says which built-in rules could match at all, so
//! the common line (no `@`, no card-, phone- or SSN-shaped digits, no `eyJ`, no `Bearer`, no
//! `AKIA`/`ASIA`, no dotted quad) is done with no regex run and no allocation.
//!
//! The literal signs (`@`, `eyJ`, `earer`/`EARER`, `AKIA`, `ASIA`, and the `\u` escape that
//! could hide any of them) are searched for with SIMD (`memchr`). The shapes (a run of
//! digits with separators, digits between dots) are not literals: eight bytes at a time are
//! classified with integer arithmetic to find where one could be, and only there a
//! hand-written loop says which (a `RegexSet` would scan with a DFA per rule set, slower).
//! Measured with `scripts/bench` (`redact` against `one-file`, 2026-12-06): looking for the
//! literals in that loop, at every `e`, `b` and `A`, made the stage cost 1.50–1.60× one-file;
//! the loop alone over every byte, 1.38–1.46×; a table automaton first, 1.13–1.42× (median
//! 1.32×); see [`digit_shapes`] for what replaced the automaton.
//!
//! A flagged rule then runs its own regex over the string (the regex crate's lazy DFA, linear
//! time); [`Hit`]s of all rules are merged, the leftmost-longest winning an overlap.

use super::rules::BuiltIn;
use crate::vocab::swar::{HIGH, byte_is, count, first, within, word};
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

/// Not a rule: a `\u` escape, behind which JSON text can hide any sign from this scan.
pub(super) const UNICODE_ESCAPE: Candidates = 1 << 15;

/// `bearer`, `Bearer` or `BEARER` (the rule's spellings).
static BEARER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("earer"));
static BEARER_UP: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new("EARER"));
/// `AKIA` and `ASIA`, found by what they share: `IA` is rare in text, and one search.
static AWS: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("IA"));

/// Which built-in rules could match in `s` (and [`UNICODE_ESCAPE`] if `s` has one). Never
/// misses a rule's match (each regex implies the sign tested here); may say yes where the
/// rule then finds nothing.
///
/// The literal signs are searched for with SIMD (`memchr`), many bytes at a time, by their
/// rarest bytes: `@`, the `J` of `eyJ` and the `\` of `\u` in one search, `IA` for both AWS
/// prefixes. Measured with `scripts/bench` (`redact` against `one-file`): one `aho-corasick`
/// search for all seven signs made the stage cost more (1.37–1.47×, against 1.14–1.23× for
/// separate searches in the same runs): its prefilter is only as good as the commonest first
/// byte, and `e` is the commonest letter.
pub(super) fn candidates(s: &[u8]) -> Candidates {
    let mut found = digit_shapes(s);
    for at in memchr::memchr3_iter(b'@', b'J', b'\\', s) {
        found |= match s[at] {
            b'@' => bit(BuiltIn::Email),
            b'J' if at >= 2 && &s[at - 2..at] == b"ey" => bit(BuiltIn::Jwt),
            b'\\' if s.get(at + 1) == Some(&b'u') => UNICODE_ESCAPE,
            _ => 0,
        };
    }
    if BEARER.find(s).is_some() || BEARER_UP.find(s).is_some() {
        found |= bit(BuiltIn::Bearer);
    }
    if AWS
        .find_iter(s)
        .any(|at| at >= 2 && matches!(&s[at - 2..at], b"AK" | b"AS"))
    {
        found |= bit(BuiltIn::AwsKey);
    }
    found
}

/// The rules that need digits in a shape (a card's, a phone number's, an SSN's, a dotted
/// quad). Each needs a stretch of at least [`MIN_STRETCH`] bytes that are all digits, dots
/// or separators (`1.1.1.1`; nine digits for the others), and [`Shapes`] is back where it
/// started after any other byte. So the text is read eight bytes at a time, each word
/// classified at once ([`shape_bytes`]), for four such bytes in a row at a multiple of four
/// from where the look started, which any stretch of seven holds; only the stretch around such
/// a group goes through [`Shapes::step`], byte by byte. A JSON line's date, UUID and numbers
/// make a few such stretches, each a dozen bytes.
///
/// Measured with `scripts/bench` (`production`, 2026-12-07): a table automaton over every
/// 16 bytes that held a digit (a dependent load per byte) made this pass 11 % of the samples.
pub(super) fn digit_shapes(s: &[u8]) -> Candidates {
    let mut found = 0;
    let mut from = 0;
    while let Some(group) = four_in_a_row(s, from) {
        // `from` follows a byte of no shape (or is 0): the stretch starts at or after it.
        let start = s[from..group]
            .iter()
            .rposition(|&b| CLASS[usize::from(b)] == OTHER)
            .map_or(from, |at| from + at + 1);
        let stretch = Stretch::from(s, start);
        if stretch.may_be_a_shape() {
            let mut shapes = Shapes::default();
            for i in start..stretch.end {
                shapes.step(s, i);
            }
            found |= shapes.found;
            if found == ALL_SHAPES {
                break;
            }
        }
        from = stretch.end + 1;
    }
    found
}

/// A run of digits, dots and separators, counted before [`Shapes`] looks at it byte by byte
/// (which costs several times more per byte): a date's eight digits or a UUID's few between
/// its letters are no shape.
struct Stretch {
    /// Where the run ends: at a byte of no shape, or the end of the text.
    end: usize,
    digits: u32,
    dots: u32,
}

impl Stretch {
    fn from(s: &[u8], start: usize) -> Stretch {
        let mut stretch = Stretch {
            end: start,
            digits: 0,
            dots: 0,
        };
        // A word at a time: its bytes up to the first of no shape are counted at once.
        while let Some(w) = word(&s[stretch.end..]) {
            let ends = !shape_bytes(w) & HIGH;
            // The high bits of the bytes before the first that ends the run (all eight if none).
            let kept = (ends & ends.wrapping_neg()).wrapping_sub(1) & HIGH;
            stretch.digits += count(within(w, b'0', b'9') & kept);
            stretch.dots += count(byte_is(w, b'.') & kept);
            if ends != 0 {
                stretch.end += first(ends);
                return stretch;
            }
            stretch.end += 8;
        }
        for &b in &s[stretch.end..] {
            match CLASS[usize::from(b)] {
                OTHER => break,
                DIGIT => stretch.digits += 1,
                DOT => stretch.dots += 1,
                _ => {}
            }
            stretch.end += 1;
        }
        stretch
    }

    /// Whether [`Shapes`] could flag anything in it: every shape but a dotted quad has at
    /// least [`SSN_RUN`] digits, and a dotted quad four digits and three dots.
    fn may_be_a_shape(&self) -> bool {
        self.digits >= SSN_RUN || (self.digits >= 4 && self.dots >= 3)
    }
}

/// The shortest stretch of digits, dots and separators a shape can be: `1.1.1.1`.
const MIN_STRETCH: usize = 7;

/// Every rule [`digit_shapes`] can flag.
const ALL_SHAPES: Candidates =
    bit(BuiltIn::Card) | bit(BuiltIn::Phone) | bit(BuiltIn::UsSsn) | bit(BuiltIn::Ipv4);

/// Every byte through [`Shapes::step`]: what [`digit_shapes`] must agree with.
#[cfg(test)]
pub(super) fn shapes_bytewise(s: &[u8]) -> Candidates {
    let mut shapes = Shapes::default();
    for i in 0..s.len() {
        shapes.step(s, i);
    }
    shapes.found
}

/// Where, in `s` from `from` on, four digits, dots or separators in a row first start at a
/// multiple of four bytes from `from`. A stretch of [`MIN_STRETCH`] such bytes always holds
/// one (seven bytes cover a whole aligned four, wherever they start).
fn four_in_a_row(s: &[u8], from: usize) -> Option<usize> {
    const _: () = assert!(MIN_STRETCH >= 2 * 4 - 1);
    let mut at = from;
    while let Some(w) = word(s.get(at..)?) {
        // Every shape byte is within ` `..=`9`, one test that most words of text fail; the
        // exact one (four times the arithmetic) runs only where it passes.
        if four_of(within(w, b' ', b'9')).is_some()
            && let Some(four) = four_of(shape_bytes(w))
        {
            return Some(at + four);
        }
        at += 8;
    }
    // A zero byte is of no shape: the last word is padded with them.
    let mut last = [0; 8];
    last[..s.len() - at].copy_from_slice(&s[at..]);
    four_of(shape_bytes(u64::from_le_bytes(last))).map(|four| at + four)
}

/// The first half of a word (0 or 4) whose bytes [`shape_bytes`] all marked.
fn four_of(marked: u64) -> Option<usize> {
    const FOUR: u64 = 0x8080_8080;
    if marked & FOUR == FOUR {
        Some(0)
    } else if (marked >> 32) & FOUR == FOUR {
        Some(4)
    } else {
        None
    }
}

/// The high bit of each byte of `w` that is not [`OTHER`] (a digit, `.`, space, `-`, `(`,
/// `)` or `+`): `(..=9` but `*`, `,` and `/`, and the space.
fn shape_bytes(w: u64) -> u64 {
    let punctuation = byte_is(w, b'*') | byte_is(w, b',') | byte_is(w, b'/');
    (within(w, b'(', b'9') & !punctuation) | byte_is(w, b' ')
}

/// What [`digit_shapes`] knows of the bytes so far.
#[derive(Default)]
struct Shapes {
    found: Candidates,
    /// Digits in the current run, and separators since its last digit (two allowed: `) `).
    run: u32,
    gap: u8,
    /// Dot-separated digit groups in the current `1.2.3.4`-shaped run.
    groups: u8,
    /// The previous byte's class (`OTHER` at the start).
    last: u8,
    /// The digits of the current group and the two before it (through one `-` each), for the
    /// `ddd-dd-dddd` shape.
    group: u32,
    before: [u32; 2],
    /// The lengths of the two groups before the current one, each followed by one or two
    /// separators (`415-555-`, `(415) 555-`), for the NANP shape.
    prior: [u32; 2],
    /// Whether a `+` leads the run.
    plus: bool,
    /// Digits in the current run a card's match could start from: not those of a first group
    /// that follows a letter (the card rule's `\b` must come before its first digit).
    card_run: u32,
    /// Whether the current group follows a letter, digit or `_` (a word byte) directly.
    word_led: bool,
    /// Whether the current group starts where a JSON value can (a string's quote, after a
    /// key's colon, in an array, after whitespace, or at the text's start): only there can
    /// its digits be a whole value, the bare number a `phone` or `ssn` key's value is.
    bare: bool,
}

/// A word byte to the rules' `\b` (they are compiled without Unicode: `[0-9A-Za-z_]`).
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether a JSON string or number can start right after `b`.
fn opens_a_value(b: u8) -> bool {
    matches!(b, b'"' | b':' | b'[' | b',' | b' ' | b'\t' | b'\n' | b'\r')
}

impl Shapes {
    /// Takes in byte `s[i]`.
    #[inline(always)]
    fn step(&mut self, s: &[u8], i: usize) {
        let b = s[i];
        let class = CLASS[b as usize];
        let last = self.last;
        self.last = class;
        if class == OTHER && last == OTHER {
            // Most bytes: a letter after a letter. Nothing to reset, nothing to look for.
            return;
        }
        match class {
            DIGIT => {
                if self.gap > 2 {
                    // A `+` right before the digits leads this run, whatever came before it
                    // (` (+44 20…`).
                    self.run = 0;
                    self.card_run = 0;
                    self.plus = s[i - 1] == b'+';
                }
                self.run += 1;
                if last == DIGIT {
                    self.group += 1;
                } else {
                    self.start_group(s, i, last);
                }
                self.gap = 0;
                if !self.word_led {
                    self.card_run += 1;
                }
                // The card rule's match ends at a digit before a byte that is no word byte.
                if self.card_run >= CARD_RUN && !s.get(i + 1).is_some_and(|&b| is_word(b)) {
                    self.found |= bit(BuiltIn::Card);
                }
                // A phone number is `+` and digits, or NANP's 3-3-4 (the regex's only other
                // form), or 10 bare digits (a `phone` key's value): a log line's
                // `2026-12-07 10:15` runs 10 digits through its separators, and is none, and
                // neither is a UUID's last group of digits (after a `-`).
                if (self.bare && self.group >= PHONE_RUN)
                    || (self.plus && self.run >= PHONE_RUN - 1)
                    || (self.group == 4 && self.prior[1] == 3 && self.prior[0] >= 3)
                {
                    self.found |= bit(BuiltIn::Phone);
                }
                if (self.bare && self.group >= SSN_RUN)
                    || (self.group == 4 && self.before == [3, 2])
                {
                    self.found |= bit(BuiltIn::UsSsn);
                }
                if last != DIGIT {
                    self.groups = if last == DOT && self.groups > 0 {
                        self.groups + 1
                    } else {
                        1
                    };
                    if self.groups >= 4 {
                        self.found |= bit(BuiltIn::Ipv4);
                    }
                }
            }
            DOT | SEP => {
                self.gap = self.gap.saturating_add(1);
                self.plus |= b == b'+';
                if class == SEP || last != DIGIT {
                    self.groups = 0;
                }
            }
            _ => {
                self.run = 0;
                self.card_run = 0;
                self.gap = 0;
                self.groups = 0;
                self.group = 0;
                self.before = [0, 0];
                self.prior = [0, 0];
                self.plus = false;
            }
        }
    }

    /// A group of digits starts at `s[i]`, after a byte of class `last`: what the groups
    /// before it were, and what comes right before it.
    #[inline(always)]
    fn start_group(&mut self, s: &[u8], i: usize, last: u8) {
        self.before = if last == SEP && self.gap == 1 && s[i - 1] == b'-' {
            [self.before[1], self.group]
        } else {
            [0, 0]
        };
        self.prior = if (1..=2).contains(&self.gap) && self.group > 0 {
            [self.prior[1], self.group]
        } else {
            [0, 0]
        };
        self.group = 1;
        self.bare = i == 0 || opens_a_value(s[i - 1]);
        // In JSON text, `\n` before the digits is a control character in the string, where
        // the rule's `\b` holds: a word byte after a backslash does not lead the group.
        self.word_led = i > 0 && is_word(s[i - 1]) && !(i > 1 && s[i - 2] == b'\\');
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value, at every place in a word, among neighbours of either kind: the word
    /// arithmetic marks exactly the bytes the class table calls digits, dots or separators.
    #[test]
    fn the_word_classifier_agrees_with_the_class_table_on_every_byte() {
        for b in 0..=255u8 {
            for at in 0..8 {
                for fill in [0u8, b'5', b' ', b'a', 0x80, 0xff] {
                    let mut w = [fill; 8];
                    w[at] = b;
                    let marked = shape_bytes(u64::from_le_bytes(w));
                    for (i, &byte) in w.iter().enumerate() {
                        let is_shape = CLASS[usize::from(byte)] != OTHER;
                        assert_eq!(
                            marked >> (8 * i) & 0xff,
                            if is_shape { 0x80 } else { 0 },
                            "byte {byte:#04x} at {i} of {w:?}"
                        );
                    }
                }
            }
        }
    }
}
