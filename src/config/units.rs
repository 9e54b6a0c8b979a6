//! Units in config values: durations like `"250ms"`, `"5s"`, `"72h"` and sizes like `"256KiB"`,
//! `"2M"`. A value always carries its unit, so a reader never has to guess what `5` meant.

use serde::{Deserialize, Deserializer, de};
use std::fmt;
use std::time::Duration;

/// A duration written with its unit: `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

/// A size in bytes written with its unit. `KiB`/`MiB`/`GiB` and Fluentd's `K`/`M`/`G` are powers of
/// 1024; `KB`/`MB`/`GB` are powers of 1000; a bare integer or `B` is bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

/// Splits `"12.5MiB"` into `(12.5, "MiB")`.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..end].parse().ok()?;
    Some((n, s[end..].trim()))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {s:?}: write a number and a unit, like \"500ms\", \"5s\", \"1m\", \"72h\""
        )
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {s:?}: write a number and a unit, like \"256KiB\", \"5MiB\", \"1GiB\""
        )
    };
    let (n, unit) = split_number(s).ok_or_else(bad)?;
    let factor: f64 = match unit {
        "" | "B" => 1.0,
        "K" | "KiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return Err(bad()),
    };
    let bytes = n * factor;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Span).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like \"5MiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("250ms", Some(0.25)),
            ("5s", Some(5.0)),
            ("1.5m", Some(90.0)),
            ("72h", Some(259200.0)),
            ("1d", Some(86400.0)),
            ("5", None),
            ("5 sec", None),
            ("", None),
            ("-1s", None),
        ];
        for (input, want) in cases {
            let got = parse_duration(input).ok().map(|d| d.as_secs_f64());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn sizes() {
        let cases = [
            ("256KiB", Some(262144)),
            ("2M", Some(2097152)),
            ("5MiB", Some(5242880)),
            ("1GB", Some(1_000_000_000)),
            ("1.5KiB", Some(1536)),
            ("100", Some(100)),
            ("10 MiB", Some(10485760)),
            ("5Mb", None),
            ("lots", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).ok(), want, "{input:?}");
        }
    }
}
