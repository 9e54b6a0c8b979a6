//! Fluentd's Forward Protocol v1: one frame (a msgpack array) into its tag, its entries and
//! its options, in any of the four modes.
//!
//! - Message: `[tag, time, record, option?]`
//! - Forward: `[tag, [[time, record], …], option?]`
//! - PackedForward: `[tag, entries as one bin/str of msgpack [time, record] arrays, option?]`
//! - CompressedPackedForward: the same, gzipped, with `option.compressed = "gzip"`
//!
//! The time is an integer (seconds), a float, or the EventTime extension (type 0: seconds and
//! nanoseconds, big-endian), alone or, as Fluent Bit 2.1 and later send it, paired with a
//! metadata map. `option.chunk` asks for an `{"ack": chunk}` answer.

use super::msgpack::{self, Value};
use std::io::Read as _;

/// One frame, decoded.
#[derive(Debug)]
pub struct Frame<'a> {
    pub tag: &'a [u8],
    pub entries: Vec<(i64, Value<'a>)>,
    /// `option.chunk`: the forwarder waits for this back in an ack.
    pub chunk: Option<&'a [u8]>,
}

/// Why a frame was refused: the connection is closed, and a forwarder that asked for an ack
/// sends the chunk again on its next connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a forward protocol frame: {0}")]
    Shape(&'static str),
    #[error("not MessagePack: {0}")]
    Msgpack(&'static str),
    #[error("the gzipped entries are not gzip: {0}")]
    Gzip(String),
    #[error("the entries unpack to more than {0} bytes")]
    TooLarge(usize),
}

/// Decodes `v` (one frame) into a tag and entries. A gzipped PackedForward is unpacked into
/// `unpacked`, at most `limit` bytes, which the entries then borrow from.
pub fn frame<'a>(
    v: Value<'a>,
    unpacked: &'a mut Vec<u8>,
    limit: usize,
) -> Result<Frame<'a>, Refused> {
    let Value::Array(items) = v else {
        return Err(Refused::Shape("a frame must be an array"));
    };
    let mut items = items.into_iter();
    let tag = items
        .next()
        .as_ref()
        .and_then(Value::as_bytes)
        .ok_or(Refused::Shape(
            "the first element must be the tag, a string",
        ))?;
    let second = items
        .next()
        .ok_or(Refused::Shape("a frame needs entries after its tag"))?;
    let (entries, option) = match second {
        Value::Array(list) => {
            let entries = list.into_iter().map(entry).collect::<Result<_, _>>()?;
            (entries, items.next())
        }
        Value::Str(packed) | Value::Bin(packed) => {
            let option = items.next();
            let packed: &'a [u8] = if option_str(option.as_ref(), "compressed") == Some(b"gzip") {
                gunzip(packed, &mut *unpacked, limit)?;
                unpacked
            } else {
                packed
            };
            let values = msgpack::read_all(packed).map_err(|e| match e {
                msgpack::Error::Incomplete => Refused::Shape("the packed entries end mid-entry"),
                msgpack::Error::Invalid(why) => Refused::Msgpack(why),
            })?;
            let entries = values.into_iter().map(entry).collect::<Result<_, _>>()?;
            (entries, option)
        }
        time => {
            let record = items
                .next()
                .ok_or(Refused::Shape("a message needs a record after its time"))?;
            (vec![(event_time(&time)?, record)], items.next())
        }
    };
    Ok(Frame {
        tag,
        entries,
        chunk: option_str(option.as_ref(), "chunk"),
    })
}

fn entry(e: Value<'_>) -> Result<(i64, Value<'_>), Refused> {
    let Value::Array(mut pair) = e else {
        return Err(Refused::Shape("an entry must be [time, record]"));
    };
    if pair.len() != 2 {
        return Err(Refused::Shape("an entry must be [time, record]"));
    }
    let record = pair.pop().unwrap_or(Value::Nil);
    Ok((event_time(&pair[0])?, record))
}

/// An entry's time in Unix nanoseconds. Fluent Bit 2.1 and later send its log events' own
/// shape, `[[time, metadata], record]`: the time is the first of the pair (the metadata, empty
/// unless a processor set some, is not kept).
fn event_time(v: &Value) -> Result<i64, Refused> {
    if let Value::Array(pair) = v
        && let [time, Value::Map(_)] = pair.as_slice()
    {
        return event_time(time);
    }
    const BAD: Refused = Refused::Shape("a time must be an integer, a float or an EventTime");
    let ns = match v {
        Value::Uint(s) => i64::try_from(*s)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000)),
        Value::Int(s) => s.checked_mul(1_000_000_000),
        // Rounded to the microsecond first: a float's nanoseconds are noise.
        Value::Float(f) if f.is_finite() && f.abs() < 9.2e9 => {
            Some(((f * 1e6).round() as i64) * 1000)
        }
        Value::Ext(0, b) if b.len() == 8 => {
            let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let nanos = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            Some(i64::from(secs) * 1_000_000_000 + i64::from(nanos.min(999_999_999)))
        }
        _ => None,
    };
    ns.ok_or(BAD)
}

/// A string member of the option map.
fn option_str<'a>(option: Option<&Value<'a>>, name: &str) -> Option<&'a [u8]> {
    let Some(Value::Map(pairs)) = option else {
        return None;
    };
    pairs
        .iter()
        .find(|(k, _)| k.as_bytes() == Some(name.as_bytes()))
        .and_then(|(_, v)| v.as_bytes())
}

/// Every gzip member of `packed` (Fluent Bit writes one per flush, concatenated) into `out`,
/// refusing at `limit` bytes: a small frame must not unpack into gigabytes.
fn gunzip(packed: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Refused> {
    out.clear();
    let mut d = flate2::read::MultiGzDecoder::new(packed).take(limit as u64 + 1);
    d.read_to_end(out)
        .map_err(|e| Refused::Gzip(e.to_string()))?;
    if out.len() > limit {
        return Err(Refused::TooLarge(limit));
    }
    Ok(())
}

/// The answer to a frame whose option carried `chunk`: `{"ack": chunk}`.
pub fn ack(chunk: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81, 0xa3, b'a', b'c', b'k'];
    let n = chunk.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xda);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(chunk);
    out
}
