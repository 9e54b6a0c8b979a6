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

use super::msgpack::{self, Head, Reader, Value};
use std::io::Read as _;

/// One frame, decoded down to its entries: each a time and its record's bytes, which
/// [`super::entry`] writes as JSON straight from the frame.
#[derive(Debug)]
pub struct Frame<'a> {
    pub tag: &'a [u8],
    pub entries: Vec<(i64, &'a [u8])>,
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

impl From<msgpack::Error> for Refused {
    fn from(e: msgpack::Error) -> Refused {
        match e {
            // The frame is whole (its length was read first): what ends early is inside it.
            msgpack::Error::Incomplete => Refused::Shape("a value inside the frame ends early"),
            msgpack::Error::Invalid(why) => Refused::Msgpack(why),
        }
    }
}

/// Decodes `bytes` (one whole frame) into a tag and entries. A gzipped PackedForward is
/// unpacked into `unpacked`, at most `limit` bytes, which the entries then borrow from.
pub fn frame<'a>(
    bytes: &'a [u8],
    unpacked: &'a mut Vec<u8>,
    limit: usize,
) -> Result<Frame<'a>, Refused> {
    let mut r = Reader::new(bytes);
    let Head::Array(len) = r.head()? else {
        return Err(Refused::Shape("a frame must be an array"));
    };
    if len < 2 {
        return Err(Refused::Shape("a frame needs entries after its tag"));
    }
    let tag = r.read()?.as_bytes().ok_or(Refused::Shape(
        "the first element must be the tag, a string",
    ))?;
    let mut option_at = 2;
    let entries = match r.head()? {
        Head::Array(n) => (0..n).map(|_| entry(&mut r)).collect::<Result<_, _>>()?,
        Head::Map(_) => return Err(Refused::Shape("entries must be an array or packed")),
        Head::Scalar => match r.read()? {
            Value::Str(packed) | Value::Bin(packed) => {
                let option = (len > 2).then(|| r.read()).transpose()?;
                let packed: &'a [u8] = if option_str(option.as_ref(), "compressed") == Some(b"gzip")
                {
                    gunzip(packed, &mut *unpacked, limit)?;
                    unpacked
                } else {
                    packed
                };
                let mut p = Reader::new(packed);
                let mut entries = Vec::new();
                while !p.at_end() {
                    entries.push(entry(&mut p)?);
                }
                return Ok(Frame {
                    tag,
                    entries,
                    chunk: option_str(option.as_ref(), "chunk"),
                });
            }
            time => {
                if len < 3 {
                    return Err(Refused::Shape("a message needs a record after its time"));
                }
                option_at = 3;
                vec![(event_time(&time)?, r.skip()?)]
            }
        },
    };
    let option = (len > option_at).then(|| r.read()).transpose()?;
    Ok(Frame {
        tag,
        entries,
        chunk: option_str(option.as_ref(), "chunk"),
    })
}

/// `[time, record]`, where the time may be `[time, metadata]` (Fluent Bit 2.1 and later).
fn entry<'a>(r: &mut Reader<'a>) -> Result<(i64, &'a [u8]), Refused> {
    if r.head()? != Head::Array(2) {
        return Err(Refused::Shape("an entry must be [time, record]"));
    }
    let time = match r.head()? {
        Head::Array(2) => {
            let time = r.read()?;
            r.skip()?;
            time
        }
        Head::Scalar => r.read()?,
        _ => return Err(Refused::Shape("an entry's time must be a time")),
    };
    Ok((event_time(&time)?, r.skip()?))
}

/// An entry's time in Unix nanoseconds. Fluent Bit 2.1 and later send its log events' own
/// shape, `[[time, metadata], record]`: the time is the first of the pair (the metadata, empty
/// unless a processor set some, is not kept; see [`entry`]).
fn event_time(v: &Value) -> Result<i64, Refused> {
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
