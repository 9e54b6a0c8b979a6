//! The CRI log line: `<RFC3339Nano time> <stdout|stderr> <tags> <message>`, where tags is `P`
//! (partial) or `F` (full), possibly followed by more `:`-separated tags.

use super::{Piece, Stream};
use std::borrow::Cow;

pub(super) fn parse(line: &[u8]) -> Option<Piece<'_>> {
    let sp1 = memchr::memchr(b' ', line)?;
    let time = std::str::from_utf8(&line[..sp1]).ok()?;
    if !looks_like_rfc3339(time) {
        return None;
    }
    let rest = &line[sp1 + 1..];
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout ") {
        (Stream::Stdout, r)
    } else if let Some(r) = rest.strip_prefix(b"stderr ") {
        (Stream::Stderr, r)
    } else {
        return None;
    };
    // The tags field ends at the next space; the message may be empty (and then the space that
    // separates it may be missing too).
    let (tags, message) = match memchr::memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let partial = match tags.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return None,
    };
    Some(Piece {
        time,
        stream,
        message: Cow::Borrowed(message),
        partial,
    })
}

/// A cheap shape check (`YYYY-MM-DDTHH:MM:SS…`): the index name is later derived from this
/// time, so a line whose first field is not a time must count as malformed.
pub(super) fn looks_like_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (line, Some((stream, partial, message))) or None when malformed.
        let cases: [(&str, super::super::tests::Want); 9] = [
            (
                "2026-11-26T17:00:00.123456789Z stdout F hi",
                Some((Stream::Stdout, false, "hi")),
            ),
            (
                "2026-11-26T17:00:00.1+02:00 stderr P a b  c",
                Some((Stream::Stderr, true, "a b  c")),
            ),
            (
                "2026-11-26T17:00:00Z stdout F:extra msg",
                Some((Stream::Stdout, false, "msg")),
            ),
            (
                "2026-11-26T17:00:00Z stdout F",
                Some((Stream::Stdout, false, "")),
            ),
            (
                "2026-11-26T17:00:00Z stdout F ",
                Some((Stream::Stdout, false, "")),
            ),
            ("2026-11-26T17:00:00Z stdout X msg", None),
            ("2026-11-26T17:00:00Z console F msg", None),
            ("yesterday stdout F msg", None),
            ("", None),
        ];
        super::super::tests::check_table(parse, &cases);
    }
}
