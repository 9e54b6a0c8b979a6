//! The one pass every looked-at string costs: says which built-in rules could match at all, so
//! the common line (no `@`, no card-, phone- or SSN-shaped digits, no `eyJ`, no `Bearer`, no
//! `AKIA`/`ASIA`, no dotted quad) is done with no regex run and no allocation.
//!
//! The literal signs (`@`, `eyJ`, `earer`/`EARER`, `AKIA`, `ASIA`, and the `\u` escape that
//! could hide any of them) are searched for with SIMD (`memchr`). The shapes (a run of
//! digits with separators, digits between dots) are not literals: a table automaton says where
//! one could begin, and only there a hand-written loop says which (a `RegexSet` would scan
//! with a DFA per rule set, slower). Measured with `scripts/bench` (`redact` against
//! `one-file`, 2026-12-06): looking for the literals in that loop, at every `e`, `b` and `A`,
//! made the stage cost 1.50–1.60× one-file; the loop alone over every byte, 1.38–1.46×; the
//! automaton first, 1.13–1.42× (median 1.32×); the loop only around where the automaton
//! opens: see the README's redaction section.
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

/// Bytes looked at together for "any digit here?": one vector compare on x86-64's SSE2.
const LANES: usize = 16;

/// The rules that need digits in a shape (a card's, a phone number's, an SSN's, a dotted
/// quad). Every one of them needs a run of 9 digits (through gaps of at most two separators)
/// or four dot-separated digit groups; [`Gate`] says whether the text has either, at one
/// table lookup per byte and none for a stretch of [`LANES`] bytes without a digit. Only text
/// that has one goes through [`Shapes::step`], byte by byte, for which rules it may be.
///
/// Measured with `scripts/bench` (`redact` against `one-file`, 2026-12-06): [`Shapes::step`]
/// over every byte made the stage cost 1.38–1.46× one-file, and 1.33× with digit-free
/// stretches passed over (a JSON line's timestamp, ids and numbers put a digit in most).
pub(super) fn digit_shapes(s: &[u8]) -> Candidates {
    let mut found = 0;
    let mut from = 0;
    while let Some(chunk) = GATE.opens_in(s, from) {
        // No shape is possible before the gate opens, and the state both keep is empty after
        // a byte of neither digits nor separators: start where such a byte last was (or where
        // the gate started), run through the chunk that opened the gate, and hand back to the
        // gate at the next such byte. A trace that names one address is looked at byte by
        // byte around the address only, not to its end.
        let start = s[from..chunk]
            .iter()
            .rposition(|&b| CLASS[usize::from(b)] == OTHER)
            .map_or(from, |at| from + at + 1);
        let mut shapes = Shapes::default();
        let mut i = start;
        while i < s.len() && (i < chunk + LANES || CLASS[usize::from(s[i])] != OTHER) {
            shapes.step(s, i);
            i += 1;
        }
        found |= shapes.found;
        if found == ALL_SHAPES {
            break;
        }
        from = i + 1;
    }
    found
}

/// Every rule [`digit_shapes`] can flag.
const ALL_SHAPES: Candidates =
    bit(BuiltIn::Card) | bit(BuiltIn::Phone) | bit(BuiltIn::UsSsn) | bit(BuiltIn::Ipv4);

/// Every byte through [`Shapes::step`]: what the gate and its hand-overs must agree with.
#[cfg(test)]
pub(super) fn shapes_bytewise(s: &[u8]) -> Candidates {
    let mut shapes = Shapes::default();
    for i in 0..s.len() {
        shapes.step(s, i);
    }
    shapes.found
}

/// Whether any of the bytes is an ASCII digit; written so that it compiles to a vector compare.
fn has_digit(chunk: &[u8]) -> bool {
    chunk
        .iter()
        .fold(0u8, |any, &b| any | u8::from(b.wrapping_sub(b'0') < 10))
        != 0
}

/// A deterministic automaton over byte classes that reaches [`Gate::OPEN`] (and stays there)
/// exactly when [`Shapes`]'s digit run reaches 9 or its dotted groups reach 4. Built once, by
/// running [`GateState::next`] (the same transitions as [`Shapes::step`], on the counts
/// capped where they no longer matter) from the start over every class: about a hundred
/// states, a table of `u8`.
struct Gate {
    next: [u8; 256 * 4],
}

static GATE: LazyLock<Gate> = LazyLock::new(Gate::build);

/// What the gate remembers: [`Shapes`]'s run, gap and groups, and the previous byte's class.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct GateState {
    run: u8,
    gap: u8,
    groups: u8,
    last: u8,
}

impl GateState {
    const START: GateState = GateState {
        run: 0,
        gap: 0,
        groups: 0,
        last: OTHER,
    };

    /// The state after a byte of `class`; None once a shape is possible.
    fn next(self, class: u8) -> Option<GateState> {
        let mut s = self;
        s.last = class;
        match class {
            DIGIT => {
                if s.gap > 2 {
                    s.run = 0;
                }
                s.run += 1;
                s.gap = 0;
                if self.last != DIGIT {
                    s.groups = if self.last == DOT && s.groups > 0 {
                        s.groups + 1
                    } else {
                        1
                    };
                }
                if u32::from(s.run) >= SSN_RUN || s.groups >= 4 {
                    return None;
                }
            }
            DOT | SEP => {
                // Past two, more separators change nothing: the next digit starts over.
                s.gap = (s.gap + 1).min(3);
                if class == SEP || self.last != DIGIT {
                    s.groups = 0;
                }
            }
            _ => return Some(GateState::START),
        }
        Some(s)
    }
}

impl Gate {
    const START: u8 = 0;
    const OPEN: u8 = 1;

    fn build() -> Gate {
        let mut next = [Gate::OPEN; 256 * 4];
        let mut states = vec![GateState::START, GateState::START];
        let mut ids = std::collections::HashMap::from([(GateState::START, Gate::START)]);
        let mut at = 0;
        while at < states.len() {
            if at != Gate::OPEN as usize {
                for class in [OTHER, DIGIT, DOT, SEP] {
                    let to = match states[at].next(class) {
                        None => Gate::OPEN,
                        Some(n) => *ids.entry(n).or_insert_with(|| {
                            states.push(n);
                            u8::try_from(states.len() - 1).expect("the gate has under 256 states")
                        }),
                    };
                    next[at * 4 + class as usize] = to;
                }
            }
            at += 1;
        }
        Gate { next }
    }

    fn step(&self, state: u8, b: u8) -> u8 {
        self.next[usize::from(state) << 2 | usize::from(CLASS[usize::from(b)])]
    }

    /// Where, in `s` from `from` on, the first run of 9 digits or four dotted groups ends: the
    /// start of the stretch of [`LANES`] bytes (counted from `from`) in which the gate opened.
    /// A stretch without a digit is passed over, starting again after it: no run or dotted
    /// group continues through it (three separators, or anything else, end one), and the
    /// separators at its end change nothing the gate counts (a `+` leading a number is
    /// [`Shapes`]'s).
    fn opens_in(&self, s: &[u8], from: usize) -> Option<usize> {
        let rest = s.get(from..)?;
        let mut state = Gate::START;
        let mut chunks = rest.chunks_exact(LANES);
        let mut at = from;
        for chunk in &mut chunks {
            if has_digit(chunk) {
                for &b in chunk {
                    state = self.step(state, b);
                }
                if state == Gate::OPEN {
                    return Some(at);
                }
            } else {
                state = Gate::START;
            }
            at += LANES;
        }
        for &b in chunks.remainder() {
            state = self.step(state, b);
        }
        (state == Gate::OPEN).then_some(at)
    }
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
                    self.plus = s[i - 1] == b'+';
                }
                self.run += 1;
                if last == DIGIT {
                    self.group += 1;
                } else {
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
                }
                self.gap = 0;
                if self.run >= CARD_RUN {
                    self.found |= bit(BuiltIn::Card);
                }
                // A phone number is `+` and digits, or NANP's 3-3-4 (the regex's only other
                // form), or 10 bare digits (a `phone` key's value): a log line's
                // `2026-12-07 10:15` runs 10 digits through its separators, and is none.
                if self.group >= PHONE_RUN
                    || (self.plus && self.run >= PHONE_RUN - 1)
                    || (self.group == 4 && self.prior[1] == 3 && self.prior[0] >= 3)
                {
                    self.found |= bit(BuiltIn::Phone);
                }
                if self.group >= SSN_RUN || (self.group == 4 && self.before == [3, 2]) {
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
                self.gap = 0;
                self.groups = 0;
                self.group = 0;
                self.before = [0, 0];
                self.prior = [0, 0];
                self.plus = false;
            }
        }
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
