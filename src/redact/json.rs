//! Walking the JSON text of one value as written (an object, an array, a string, a number)
//! and rewriting only the string values and numbers a rule replaces: keys, structure,
//! whitespace and every untouched byte stay as they were, and nothing is allocated until the
//! first replacement.
//!
//! The text comes from the parser, so it is valid JSON; if a string is cut short anyway, its
//! rest is still redacted as plain text (the result is no more valid than the input) — the
//! walk never panics.

/// A value token, as written: a string with its quotes and escapes, a number, or the rest of
/// the text after a string's opening quote when the string never ends.
pub(super) enum Token<'a> {
    Str(&'a str),
    Num(&'a str),
    Cut(&'a str),
}

/// `raw` with each token `replace` returns a replacement for (the replacement's JSON text)
/// put in its place; None when there is none.
pub(super) fn rewrite(
    raw: &str,
    mut replace: impl FnMut(Token<'_>) -> Option<String>,
) -> Option<String> {
    let b = raw.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let (end, token) = match b[i] {
            b'"' => {
                match string_end(b, i) {
                    // A string followed by `:` is a key: never redacted.
                    Some(end) if next_significant(b, end) == Some(b':') => {
                        i = end;
                        continue;
                    }
                    Some(end) => (end, Token::Str(&raw[i..end])),
                    // Cut short: what is left is one string's content; still looked at.
                    None => (b.len(), Token::Cut(&raw[i + 1..])),
                }
            }
            b'-' | b'0'..=b'9' => {
                let end = i + b[i..]
                    .iter()
                    .take_while(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .count();
                (end, Token::Num(&raw[i..end]))
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if let Some(replacement) = replace(token) {
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
