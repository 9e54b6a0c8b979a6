//! MessagePack, read from bytes already in memory, as the forward protocol needs it.
//!
//! Written here rather than taken from a crate because of what a listener owes its peers: a
//! length is checked against the bytes that are actually there before anything is allocated
//! (a 1 GiB string header in a 20-byte frame is "incomplete", never a 1 GiB allocation), a
//! value that is not all there yet says so ([`Error::Incomplete`], so the connection reads on),
//! and nesting is bounded, so no frame can exhaust the stack. Strings and binaries borrow from
//! the frame.

/// One decoded value; strings and binaries point into the frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Ext(i8, &'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The value goes on past the bytes there are.
    Incomplete,
    /// Not MessagePack (a reserved byte), or nested deeper than [`MAX_DEPTH`].
    Invalid(&'static str),
}

/// Deeper than any log record; far from what the stack can take.
pub const MAX_DEPTH: usize = 64;

/// Reads the value at the start of `buf`: it and the number of bytes it took.
pub fn read(buf: &[u8]) -> Result<(Value<'_>, usize), Error> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

impl<'a> Value<'a> {
    /// A string's (or, as old Fluentd clients send strings, a binary's) bytes.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Str(b) | Value::Bin(b) => Some(b),
            _ => None,
        }
    }
}

/// Reads values one after another from a frame, building nothing it is not asked for: the
/// entries of a frame are walked ([`Reader::skip`]) and their records written as JSON
/// ([`Reader::transcode`]) straight from the bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// An array or a map's header, read; or neither, left unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    Array(usize),
    Map(usize),
    Scalar,
}

/// The length of the value at the start of `buf` (a whole frame), allocating nothing.
pub fn value_len(buf: &[u8]) -> Result<usize, Error> {
    let mut r = Reader::new(buf);
    r.skip()?;
    Ok(r.pos)
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next value, built (for small ones: a tag, a time, an option map).
    pub fn read(&mut self) -> Result<Value<'a>, Error> {
        self.value(0)
    }

    /// Reads an array's or a map's header; a scalar is left to be read.
    pub fn head(&mut self) -> Result<Head, Error> {
        let b = *self.buf.get(self.pos).ok_or(Error::Incomplete)?;
        let head = match b {
            0x80..=0x8f => Head::Map(usize::from(b & 0x0f)),
            0x90..=0x9f => Head::Array(usize::from(b & 0x0f)),
            0xdc..=0xdf => {
                self.pos += 1;
                let n = self.len(2 << (b & 1))?;
                return Ok(if b < 0xde {
                    Head::Array(n)
                } else {
                    Head::Map(n)
                });
            }
            _ => return Ok(Head::Scalar),
        };
        self.pos += 1;
        Ok(head)
    }

    /// Passes over the next value; its bytes.
    pub fn skip(&mut self) -> Result<&'a [u8], Error> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<&'a [u8], Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Invalid("nested deeper than 64 levels"));
        }
        let start = self.pos;
        match self.head()? {
            Head::Array(n) => {
                for _ in 0..n {
                    self.skip_at(depth + 1)?;
                }
            }
            Head::Map(n) => {
                for _ in 0..2 * n {
                    self.skip_at(depth + 1)?;
                }
            }
            Head::Scalar => {
                self.value(depth)?;
            }
        }
        Ok(&self.buf[start..self.pos])
    }

    /// Writes the next value as JSON (as [`write_json`] does), allocating nothing.
    pub fn transcode(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.transcode_at(out, 0)
    }

    fn transcode_at(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Invalid("nested deeper than 64 levels"));
        }
        match self.head()? {
            Head::Array(n) => {
                out.push(b'[');
                for i in 0..n {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.transcode_at(out, depth + 1)?;
                }
                out.push(b']');
            }
            Head::Map(n) => {
                out.push(b'{');
                for i in 0..n {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.key(out, depth + 1)?;
                    out.push(b':');
                    self.transcode_at(out, depth + 1)?;
                }
                out.push(b'}');
            }
            Head::Scalar => write_json(&self.value(depth)?, out),
        }
        Ok(())
    }

    /// Writes the next value, a map's key, as a JSON string.
    pub fn key(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), Error> {
        let start = self.pos;
        match self.head()? {
            Head::Scalar => write_key(&self.value(depth)?, out),
            // A key that is an array or a map (the format allows it): its JSON as the name.
            _ => {
                self.pos = start;
                let mut text = Vec::new();
                self.transcode_at(&mut text, depth)?;
                write_str(&text, out);
            }
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Incomplete)?;
        let s = self.buf.get(self.pos..end).ok_or(Error::Incomplete)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, Error> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    }

    /// The length of a string, binary, array or map: checked against what is left, since each
    /// element takes at least one byte, so a claimed length never sizes an allocation alone.
    fn len(&mut self, n: usize) -> Result<usize, Error> {
        let len = usize::try_from(self.be(n)?).map_err(|_| Error::Incomplete)?;
        if len > self.buf.len() - self.pos {
            return Err(Error::Incomplete);
        }
        Ok(len)
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Invalid("nested deeper than 64 levels"));
        }
        let b = self.byte()?;
        Ok(match b {
            0x00..=0x7f => Value::Uint(u64::from(b)),
            0x80..=0x8f => self.map(usize::from(b & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(b & 0x0f), depth)?,
            0xa0..=0xbf => Value::Str(self.take(usize::from(b & 0x1f))?),
            0xc0 => Value::Nil,
            0xc1 => return Err(Error::Invalid("the reserved byte 0xc1")),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (b - 0xc4))?;
                Value::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (b - 0xc7))?;
                let t = self.byte()? as i8;
                Value::Ext(t, self.take(n)?)
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => Value::Uint(self.be(1 << (b - 0xcc))?),
            0xd0 => Value::Int(i64::from(self.byte()? as i8)),
            0xd1 => Value::Int(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => Value::Int(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => Value::Int(self.be(8)? as i64),
            0xd4..=0xd8 => {
                let t = self.byte()? as i8;
                Value::Ext(t, self.take(1 << (b - 0xd4))?)
            }
            0xd9..=0xdb => {
                let n = self.len(1 << (b - 0xd9))?;
                Value::Str(self.take(n)?)
            }
            0xdc | 0xdd => {
                let n = self.len(2 << (b - 0xdc))?;
                self.array(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.len(2 << (b - 0xde))?;
                self.map(n, depth)?
            }
            0xe0..=0xff => Value::Int(i64::from(b as i8)),
        })
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value<'a>, Error> {
        let mut items = Vec::with_capacity(n.min(self.buf.len() - self.pos));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value<'a>, Error> {
        let mut pairs = Vec::with_capacity(n.min((self.buf.len() - self.pos) / 2));
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
        }
        Ok(Value::Map(pairs))
    }
}

/// Writes `v` as JSON: strings as UTF-8 (invalid bytes replaced), binaries as strings (old
/// Fluentd clients send text that way), map keys that are not strings as their JSON text,
/// floats that JSON cannot hold (NaN, infinities) as null, extension values as null.
pub fn write_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil | Value::Ext(..) => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Uint(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Float(f) if f.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::Str(s) | Value::Bin(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out);
            }
            out.push(b']');
        }
        Value::Map(pairs) => {
            out.push(b'{');
            for (i, (k, val)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_key(k, out);
                out.push(b':');
                write_json(val, out);
            }
            out.push(b'}');
        }
    }
}

/// A map key as a JSON string.
pub fn write_key(k: &Value, out: &mut Vec<u8>) {
    match k.as_bytes() {
        Some(s) => write_str(s, out),
        None => {
            let mut text = Vec::new();
            write_json(k, &mut text);
            write_str(&text, out);
        }
    }
}

/// A string as a JSON string. Most log text needs no escape and is valid UTF-8: that is
/// checked in one pass the compiler vectorises and copied whole (serde_json's escaper, byte by
/// byte, was the largest share of `forward-in` after compression).
pub fn write_str(s: &[u8], out: &mut Vec<u8>) {
    let plain = !s.iter().fold(false, |esc, &b| {
        esc | (b < 0x20) | (b == b'"') | (b == b'\\') | (b >= 0x80)
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
        return;
    }
    let s = String::from_utf8_lossy(s);
    let _ = serde_json::to_writer(&mut *out, s.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> String {
        let (v, n) = read(bytes).unwrap();
        assert_eq!(n, bytes.len());
        let mut out = Vec::new();
        write_json(&v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_family_of_types_reads_and_becomes_json() {
        // {"a":1,"b":[true,nil,-1],"c":"é"} with a str8, an int8 and a float64.
        let mut b = vec![0x83, 0xa1, b'a', 0x01, 0xa1, b'b', 0x93, 0xc3, 0xc0, 0xff];
        b.extend_from_slice(&[0xa1, b'c', 0xd9, 2, 0xc3, 0xa9]);
        assert_eq!(json(&b), r#"{"a":1,"b":[true,null,-1],"c":"é"}"#);
        let mut f = vec![0xcb];
        f.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        assert_eq!(json(&f), "1.5");
        assert_eq!(json(&[0xd1, 0xff, 0x38]), "-200");
        assert_eq!(json(&[0xcd, 0x01, 0x00]), "256");
        // A map keyed by an integer, and a binary holding text.
        assert_eq!(json(&[0x81, 0x07, 0xc4, 2, b'h', b'i']), r#"{"7":"hi"}"#);
        // Invalid UTF-8 is replaced, never passed on.
        assert_eq!(json(&[0xa2, 0xff, b'x']), "\"\u{fffd}x\"");
    }

    #[test]
    fn a_huge_claimed_length_is_incomplete_not_an_allocation() {
        // A str32 of 1 GiB, an array32 of 4 billion elements, a map32: only a few bytes follow.
        assert_eq!(read(&[0xdb, 0x40, 0, 0, 0, b'x']), Err(Error::Incomplete));
        assert_eq!(
            read(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(Error::Incomplete)
        );
        assert_eq!(
            read(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            Err(Error::Incomplete)
        );
        assert_eq!(read(&[0xc6, 0x40, 0, 0, 0]), Err(Error::Incomplete));
        // A value cut anywhere is incomplete.
        let whole = [0x92, 0xa3, b'a', b'b', b'c', 0xcd, 0x01, 0x00];
        for cut in 0..whole.len() {
            assert_eq!(read(&whole[..cut]), Err(Error::Incomplete), "cut at {cut}");
        }
        assert!(read(&whole).is_ok());
    }

    #[test]
    fn deep_nesting_and_reserved_bytes_are_invalid() {
        let deep = vec![0x91; 10_000];
        assert!(matches!(read(&deep), Err(Error::Invalid(_))));
        assert!(matches!(read(&[0xc1]), Err(Error::Invalid(_))));
        let ok = [vec![0x91; MAX_DEPTH], vec![0x01]].concat();
        assert!(read(&ok).is_ok());
    }

    #[test]
    fn transcoding_writes_what_reading_then_writing_does() {
        let cases: [&[u8]; 4] = [
            // {"a":[1,{"b":"x"}],"c":null}
            &[
                0x82, 0xa1, b'a', 0x92, 0x01, 0x81, 0xa1, b'b', 0xa1, b'x', 0xa1, b'c', 0xc0,
            ],
            // A map keyed by a map, and by an integer, in 16-bit headers.
            &[0xde, 0, 2, 0x81, 0x01, 0x02, 0xc3, 0x05, 0xdc, 0, 1, 0xc2],
            &[0xa2, 0xff, b'x'],
            &[0x90],
        ];
        for bytes in cases {
            let (v, n) = read(bytes).unwrap();
            let mut want = Vec::new();
            write_json(&v, &mut want);
            let mut got = Vec::new();
            let mut r = Reader::new(bytes);
            r.transcode(&mut got).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
            assert!(r.at_end());
            assert_eq!(value_len(bytes), Ok(n));
            assert_eq!(Reader::new(bytes).skip(), Ok(bytes));
        }
        assert_eq!(value_len(&[0x92, 0x01]), Err(Error::Incomplete));
        assert!(matches!(
            value_len(&vec![0x91; 1000]),
            Err(Error::Invalid(_))
        ));
    }
}
