//! docker's json-file line: `{"log":"…","stream":"stdout","time":"…"}`. A record longer than
//! 16 KiB is split over several lines; only the last piece's `log` ends with `\n`.

use super::{Piece, Stream, cri::looks_like_rfc3339};
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
    let l: Line = serde_json::from_slice(line).ok()?;
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
}
