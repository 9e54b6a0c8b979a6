//! docker's json-file line: `{"log":"…","stream":"stdout","time":"…"}`. A record longer than
//! 16 KiB is split over several lines; only the last piece's `log` ends with `\n`.

use super::{Piece, Stream, cri::looks_like_rfc3339};
use crate::vocab::escape::UNESCAPED;
use crate::vocab::swar;
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    time: &'a str,
}

pub(super) fn parse(line: &[u8]) -> Option<Piece<'_>> {
    let l = match exact(line) {
        Some(l) => l,
        None => serde_json::from_slice(line).ok()?,
    };
    if !looks_like_rfc3339(l.time) {
        return None;
    }
    let stream = match &*l.stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let (message, partial) = match l.log {
        Cow::Borrowed(s) => match s.strip_suffix('\n') {
            Some(m) => (Cow::Borrowed(m.as_bytes()), false),
            None => (Cow::Borrowed(s.as_bytes()), true),
        },
        Cow::Owned(mut s) => {
            let partial = !s.ends_with('\n');
            if !partial {
                s.pop();
            }
            (Cow::Owned(s.into_bytes()), partial)
        }
    };
    Some(Piece {
        time: l.time,
        stream,
        message,
        partial,
    })
}

/// The line exactly as docker writes it (`{"log":…,"stream":…,"time":…}`, in that order, no
/// spaces), read without serde: unescaping `log` in one pass into a buffer of its final size
/// is most of what a docker file costs. Anything else (other order, `attrs`, a lone surrogate,
/// bytes serde would refuse) is `None`, left to serde, so both ways read a line the same.
fn exact(line: &[u8]) -> Option<Line<'_>> {
    let rest = line.strip_prefix(br#"{"log":""#)?;
    let (log, rest) = string(rest)?;
    let rest = rest.strip_prefix(br#","stream":""#)?;
    let (stream, rest) = rest.split_at_checked(6)?;
    let rest = rest.strip_prefix(br#"","time":""#)?;
    let time = rest.strip_suffix(br#""}"#)?;
    if time.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    Some(Line {
        log,
        stream: Cow::Borrowed(std::str::from_utf8(stream).ok()?),
        time: std::str::from_utf8(time).ok()?,
    })
}

/// The JSON string at the start of `s` (its opening quote already read), unescaped, and what
/// follows its closing quote.
fn string(s: &[u8]) -> Option<(Cow<'_, str>, &[u8])> {
    let end = stop(s)?;
    if s[end] == b'"' {
        let text = std::str::from_utf8(&s[..end]).ok()?;
        return Some((Cow::Borrowed(text), &s[end + 1..]));
    }
    // A JSON message escapes a quote every few bytes: rather than a copy of each run between
    // escapes (a `memcpy` call apiece), each word of eight is copied whole and the copy cut
    // back to the escape found in it.
    let mut out = Vec::with_capacity(s.len() + 8);
    out.extend_from_slice(&s[..end]);
    let mut at = end;
    loop {
        let next = match swar::word(&s[at..]) {
            Some(w) => {
                let kept = out.len();
                out.extend_from_slice(&w.to_le_bytes());
                let marks = special(w);
                if marks == 0 {
                    at += 8;
                    continue;
                }
                out.truncate(kept + swar::first(marks));
                at + swar::first(marks)
            }
            None => {
                let next = at + stop(&s[at..])?;
                out.extend_from_slice(&s[at..next]);
                next
            }
        };
        match s[next] {
            b'"' => return Some((Cow::Owned(String::from_utf8(out).ok()?), &s[next + 1..])),
            b'\\' => {}
            _ => return None,
        }
        at = next + 2;
        let escaped = *s.get(next + 1)?;
        match UNESCAPED[usize::from(escaped)] {
            0 if escaped == b'u' => {
                let (c, used) = unicode_escape(&s[next + 2..])?;
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                at += used;
            }
            0 => return None,
            byte => out.push(byte),
        }
    }
}

/// Where the string's first quote, backslash or control character is (JSON has no raw
/// control characters in a string; serde refuses them, so does this).
fn stop(s: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(w) = swar::word(&s[at..]) {
        let marks = special(w);
        if marks != 0 {
            return Some(at + swar::first(marks));
        }
        at += 8;
    }
    s[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|p| at + p)
}

/// Marks a word's quotes, backslashes and control characters.
fn special(w: u64) -> u64 {
    swar::byte_is(w, b'"') | swar::byte_is(w, b'\\') | swar::below(w, 0x20)
}

/// The character of a `\u` escape whose four hex digits start `s` (a surrogate pair takes
/// a second escape), and the bytes it took; `None` for a lone surrogate.
fn unicode_escape(s: &[u8]) -> Option<(char, usize)> {
    let hex = |s: &[u8]| -> Option<u32> {
        let digits = std::str::from_utf8(s.get(..4)?).ok()?;
        u32::from_str_radix(digits, 16)
            .ok()
            .filter(|_| digits.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let first = hex(s)?;
    if !(0xD800..0xDC00).contains(&first) {
        return char::from_u32(first).map(|c| (c, 4));
    }
    let low = hex(s.get(4..)?.strip_prefix(b"\\u")?)?;
    if !(0xDC00..0xE000).contains(&low) {
        return None;
    }
    char::from_u32(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)).map(|c| (c, 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: [(&str, super::super::tests::Want); 6] = [
            (
                r#"{"log":"hi\n","stream":"stdout","time":"2026-11-26T17:00:00.1Z"}"#,
                Some((Stream::Stdout, false, "hi")),
            ),
            (
                r#"{"log":"a \"q\"\n","stream":"stderr","time":"2026-11-26T17:00:00Z"}"#,
                Some((Stream::Stderr, false, "a \"q\"")),
            ),
            (
                r#"{"log":"piece","stream":"stdout","time":"2026-11-26T17:00:00Z","attrs":{}}"#,
                Some((Stream::Stdout, true, "piece")),
            ),
            (r#"{"log":"x\n","stream":"stdout"}"#, None),
            (
                r#"{"log":"x\n","stream":"stdin","time":"2026-11-26T17:00:00Z"}"#,
                None,
            ),
            (
                r#"{"log":"x\n","stream":"stdout","time":"2026-11-26T17:00:0"#,
                None,
            ),
        ];
        super::super::tests::check_table(parse, &cases);
    }

    fn serde(line: &[u8]) -> Option<(String, String, String)> {
        let l: Line = serde_json::from_slice(line).ok()?;
        Some((l.log.into_owned(), l.stream.into_owned(), l.time.to_owned()))
    }

    fn fast(line: &[u8]) -> Option<(String, String, String)> {
        let l = exact(line)?;
        Some((l.log.into_owned(), l.stream.into_owned(), l.time.to_owned()))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever the message, docker's own lines take the fast path and read as serde reads
        /// them; and any bytes at all in the string are read as serde reads them or left to it.
        #[test]
        fn the_fast_path_reads_every_line_as_serde_does(
            text in "(\\PC|[\"\\\\/\u{0}-\u{1f}\u{7f}\u{2028}\u{fffd}😀é]){0,80}",
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            pick in 0..8usize,
            stream in proptest::sample::select(vec!["stdout", "stderr"]),
        ) {
            let encoded = serde_json::to_string(&text).unwrap();
            let line = format!(r#"{{"log":{encoded},"stream":"{stream}","time":"2026-12-07T10:00:00.5Z"}}"#);
            let want = Some((text.clone(), stream.to_owned(), "2026-12-07T10:00:00.5Z".to_owned()));
            proptest::prop_assert_eq!(fast(line.as_bytes()), want.clone());
            proptest::prop_assert_eq!(serde(line.as_bytes()), want);
            // Hostile bytes in the string, some of them escapes serde refuses.
            let mut bytes = br#"{"log":""#.to_vec();
            let pieces: [&[u8]; 8] = [
                &raw, b"\\ud83d", b"\\udc00x", b"\\ud83d\\u0041", b"\\u00", b"\\x", b"\\n", b"\\u00e9",
            ];
            bytes.extend_from_slice(pieces[pick]);
            bytes.extend_from_slice(&raw);
            bytes.extend_from_slice(br#"","stream":"stdout","time":"2026-12-07T10:00:00Z"}"#);
            if let Some(got) = fast(&bytes) {
                proptest::prop_assert_eq!(Some(got), serde(&bytes));
            }
        }
    }
}
