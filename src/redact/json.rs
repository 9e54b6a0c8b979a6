//! Walking the JSON text of one finished document as written and rewriting only the tokens
//! the caller replaces (string values, keys, numbers): structure, whitespace and every
//! untouched byte stay as they were, and nothing is allocated until the first replacement.
//!
//! Each token comes with where it is: the keys from the document's root down to it (array
//! levels add none), so the caller can decide by path what is looked at. A whole subtree the
//! caller does not look at is still walked (its end must be found) but costs no callback
//! beyond one per key.
//!
//! The text is the agent's own document, so it is valid JSON; if a string is cut short anyway,
//! its rest is still handed over as a string (the result is no more valid than the input) —
//! the walk never panics.

use crate::vocab::escape::UNESCAPED;
use std::ops::Range;

/// A token as written: a string with its quotes and escapes (a value or a key), or a number.
pub(super) enum Token<'a> {
    Key(&'a str),
    Str(&'a str),
    Num(&'a str),
}

/// What the walk asks of its caller.
pub(super) trait Visit {
    /// Whether the value under `path` (keys as written, without quotes; the last one is the
    /// value's own) is looked at, given whether its parent was.
    fn look(&mut self, path: &[&str], parent: bool) -> bool;
    /// The JSON text replacing a looked-at token, if any; `path` as for [`Visit::look`] (for a
    /// key, its own value's path).
    fn replace(&mut self, path: &[&str], token: Token<'_>) -> Option<String>;
}

struct Frame<'a> {
    object: bool,
    /// Whether the container itself is looked at (what an array's items inherit).
    looked: bool,
    /// An object's current key, and whether its value is looked at.
    key: &'a str,
    key_looked: bool,
}

/// `raw` with every token `visit` replaces put in its place; None when nothing was. Only
/// `within` is read: the members of the root object outside it are passed over unread.
pub(super) fn rewrite(raw: &str, within: Range<usize>, visit: &mut impl Visit) -> Option<String> {
    let b = raw.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut stack: Vec<Frame> = Vec::with_capacity(8);
    let mut path: Vec<&str> = Vec::with_capacity(8);
    let mut i = 0;
    while i < b.len() {
        if stack.len() == 1 {
            if i < within.start {
                i = within.start;
                continue;
            }
            if i >= within.end {
                break;
            }
        }
        let looked = match stack.last() {
            Some(f) if f.object => f.key_looked,
            Some(f) => f.looked,
            None => false,
        };
        let (end, replacement) = match b[i] {
            open @ (b'{' | b'[') => {
                stack.push(Frame {
                    object: open == b'{',
                    looked,
                    key: "",
                    key_looked: false,
                });
                i += 1;
                continue;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
                continue;
            }
            b'"' => string(raw, i, looked, (&mut stack, &mut path), visit),
            b'-' | b'0'..=b'9' => {
                let end = i + b[i..]
                    .iter()
                    .take_while(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .count();
                if looked {
                    keys_to(&stack, &mut path);
                    (end, visit.replace(&path, Token::Num(&raw[i..end])))
                } else {
                    (end, None)
                }
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if let Some(replacement) = replacement {
            let o = out.get_or_insert_with(|| String::with_capacity(raw.len() + 16));
            o.push_str(&raw[copied..i]);
            o.push_str(&replacement);
            copied = end;
        }
        i = end;
    }
    out.map(|mut o| {
        o.push_str(&raw[copied..]);
        o
    })
}

/// The string opening at `i`: a key (its value's path settled, and whether that is looked
/// at) or a value; its end, and what replaces it.
fn string<'a>(
    raw: &'a str,
    i: usize,
    looked: bool,
    (stack, path): (&mut Vec<Frame<'a>>, &mut Vec<&'a str>),
    visit: &mut impl Visit,
) -> (usize, Option<String>) {
    let b = raw.as_bytes();
    let end = string_end(b, i).unwrap_or(b.len());
    let in_object = stack.last().is_some_and(|f| f.object);
    if in_object && next_significant(b, end) == Some(b':') {
        let key = raw.get(i + 1..end - 1).unwrap_or_default();
        keys_to(&stack[..stack.len() - 1], path);
        path.push(key);
        let parent = stack.last().is_some_and(|f| f.looked);
        let key_looked = visit.look(path, parent);
        if let Some(f) = stack.last_mut() {
            f.key = key;
            f.key_looked = key_looked;
        }
        let replacement = key_looked
            .then(|| visit.replace(path, Token::Key(&raw[i..end])))
            .flatten();
        (end, replacement)
    } else if looked {
        keys_to(stack, path);
        (end, visit.replace(path, Token::Str(&raw[i..end])))
    } else {
        (end, None)
    }
}

/// The keys of the objects in `stack`, root first, into `path`.
fn keys_to<'a>(stack: &[Frame<'a>], path: &mut Vec<&'a str>) {
    path.clear();
    path.extend(
        stack
            .iter()
            .filter(|f| f.object && !f.key.is_empty())
            .map(|f| f.key),
    );
}

/// The index just past the closing quote of the string opening at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b[i] == b'\\' {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

fn next_significant(b: &[u8], from: usize) -> Option<u8> {
    b.get(from..)?
        .iter()
        .copied()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
}

/// A JSON string's content (between its quotes) decoded, when its only escapes are the
/// two-byte ones (`\n`, `\"`, `\\`, `\t`, …, each one byte decoded), with where each escape's
/// byte is in the decoded text; None when it has a `\u` escape or one JSON does not know,
/// which [`unescape_lossy`] decodes.
pub(super) fn unescape_short(content: &str) -> Option<(String, Vec<usize>)> {
    let b = content.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut escapes = Vec::new();
    let mut from = 0;
    for at in memchr::memchr_iter(b'\\', b) {
        if at < from {
            // The second backslash of `\\`.
            continue;
        }
        out.extend_from_slice(&b[from..at]);
        escapes.push(out.len());
        out.push(match UNESCAPED[usize::from(*b.get(at + 1)?)] {
            0 => return None,
            byte => byte,
        });
        from = at + 2;
    }
    out.extend_from_slice(&b[from..]);
    // Only ASCII bytes were taken out or put in: the rest is the text's own UTF-8.
    Some((String::from_utf8(out).ok()?, escapes))
}

/// A JSON string's content (between its quotes) decoded, with what cannot be decoded (a lone
/// surrogate, an unknown escape) kept as U+FFFD or as written, so the text on both sides of a
/// bad escape is still there to be scanned. `serde_json` refuses the whole string instead.
pub(super) fn unescape_lossy(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let esc = &rest[at..];
        let mut chars = esc[1..].chars();
        let short = |c: char| u8::try_from(c).map_or(0, |b| UNESCAPED[usize::from(b)]);
        let taken = match chars.next() {
            Some(c) if short(c) != 0 => push(&mut out, char::from(short(c)), 2),
            Some('u') => match hex4(esc.get(2..6)) {
                Some(hi @ 0xD800..=0xDBFF) => {
                    let lo = esc
                        .get(6..8)
                        .filter(|s| *s == "\\u")
                        .and_then(|_| hex4(esc.get(8..12)))
                        .filter(|lo| (0xDC00..=0xDFFF).contains(lo));
                    match lo {
                        Some(lo) => {
                            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            push(&mut out, char::from_u32(c).unwrap_or('\u{FFFD}'), 12)
                        }
                        None => push(&mut out, '\u{FFFD}', 6),
                    }
                }
                Some(u) => push(&mut out, char::from_u32(u).unwrap_or('\u{FFFD}'), 6),
                None => push(&mut out, '\\', 1),
            },
            _ => push(&mut out, '\\', 1),
        };
        rest = &esc[taken..];
    }
    out.push_str(rest);
    out
}

fn push(out: &mut String, c: char, taken: usize) -> usize {
    out.push(c);
    taken
}

fn hex4(s: Option<&str>) -> Option<u32> {
    let s = s?;
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}
