//! The on-disk format of a segment, and reading it back without trusting it.
//!
//! A segment file starts with [`SEGMENT_MAGIC`] and holds frames back to back:
//!
//! ```text
//! magic "LFr1" | payload length u32 LE | append time (Unix ms) u64 LE | CRC32C u32 LE | payload
//! ```
//!
//! Format 2 (this version's) adds frames with the magic "LFp1" and the same layout: the
//! sources' positions (see [`super::Positions`]), written in the same write as the records
//! they follow, so that the fsync that makes those records durable makes them durable too.
//! A segment the appender started after sealing another begins with a link frame ("LFl1": the
//! previous segment's id and final length), so that start-up can tell a segment cut short by
//! a power loss from one that ended there: positions written after a lost chunk must not be
//! believed. Format 1 segments (no positions) are still read. A segment of a later format is refused by
//! name ([`version`]): an older agent must stop rather than take a newer buffer for damage.
//!
//! The CRC covers the first 16 header bytes and the payload, so a torn or flipped length is
//! caught as surely as a flipped payload byte. The per-frame magic lets a reader find the next
//! good frame after a corrupt one without trying every byte position as a frame start.

/// The first bytes of every segment file (the last byte is the format version).
pub const SEGMENT_MAGIC: &[u8; 8] = b"LFSEG\0\0\x02";
/// The segment magic without its version byte.
const SEGMENT_FAMILY: &[u8; 7] = b"LFSEG\0\0";
/// The formats this version reads: 1 (records only) and 2 (records and positions).
pub const FORMATS: std::ops::RangeInclusive<u8> = 1..=2;
const FRAME_MAGIC: &[u8; 4] = b"LFr1";
const POSITIONS_MAGIC: &[u8; 4] = b"LFp1";
const LINK_MAGIC: &[u8; 4] = b"LFl1";
pub const HEADER: usize = 20;
/// Larger payloads are not ours: a record is capped far below this by `max_line_bytes`.
const MAX_PAYLOAD: usize = 1 << 30;

/// Appends one frame to `out` (the agent writes frames in place: [`seal`]).
#[cfg(test)]
pub fn encode(out: &mut Vec<u8>, time_ms: u64, payload: &[u8]) {
    append_as(FRAME_MAGIC, out, time_ms, &[payload]);
}

/// Fills in the header of `frame`: [`HEADER`] bytes of room followed by the payload. Lets the
/// encoder write items straight into their frames, with no copy.
pub fn seal(frame: &mut [u8], time_ms: u64) {
    seal_as(FRAME_MAGIC, frame, time_ms);
}

/// Appends a link frame to `out`: the segment before this one is `previous`, `length` bytes.
pub fn encode_link(out: &mut Vec<u8>, time_ms: u64, previous: u64, length: u64) {
    let payload = [previous.to_le_bytes(), length.to_le_bytes()];
    append_as(LINK_MAGIC, out, time_ms, &[&payload[0], &payload[1]]);
}

/// Appends a positions frame holding `payload` to `out`.
pub fn encode_positions(out: &mut Vec<u8>, time_ms: u64, payload: &[u8]) {
    append_as(POSITIONS_MAGIC, out, time_ms, &[payload]);
}

/// Appends a frame with `magic` whose payload is `parts`, back to back.
fn append_as(magic: &[u8; 4], out: &mut Vec<u8>, time_ms: u64, parts: &[&[u8]]) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    for part in parts {
        out.extend_from_slice(part);
    }
    seal_as(magic, &mut out[start..], time_ms);
}

fn seal_as(magic: &[u8; 4], frame: &mut [u8], time_ms: u64) {
    let (header, payload) = frame.split_at_mut(HEADER);
    header[..4].copy_from_slice(magic);
    // Payloads are bounded by chunk_limit_size and max_line_bytes, both far below 4 GiB.
    header[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&time_ms.to_le_bytes());
    let crc = checksum(&header[..16], payload);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32C of a frame's first 16 header bytes, then its payload.
fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    crc.update(header);
    crc.update(payload);
    crc.finalize() as u32
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole, intact frame of `len` bytes (header included).
    Record {
        time_ms: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// An intact positions frame of `len` bytes: no record, what the sources had written.
    Positions { payload: &'a [u8], len: usize },
    /// An intact link frame: the segment before this one, and its length when it was sealed.
    Link {
        previous: u64,
        length: u64,
        len: usize,
    },
    /// The bytes end before the frame does: read more, or it is a torn write.
    Incomplete { len: usize },
    /// Not a frame: wrong magic, an impossible length, or a CRC mismatch.
    Invalid,
}

/// Reads the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Frame<'_> {
    if buf.len() < HEADER {
        let start = &buf[..buf.len().min(4)];
        return if FRAME_MAGIC.starts_with(start) || POSITIONS_MAGIC.starts_with(start) {
            Frame::Incomplete { len: HEADER }
        } else {
            Frame::Invalid
        };
    }
    let positions = &buf[..4] == POSITIONS_MAGIC;
    let link = &buf[..4] == LINK_MAGIC;
    if &buf[..4] != FRAME_MAGIC && !positions && !link {
        return Frame::Invalid;
    }
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let payload_len = word(4) as usize;
    if payload_len > MAX_PAYLOAD {
        return Frame::Invalid;
    }
    let len = HEADER + payload_len;
    if buf.len() < len {
        return Frame::Incomplete { len };
    }
    let payload = &buf[HEADER..len];
    let crc = checksum(&buf[..16], payload);
    if crc != word(16) {
        return Frame::Invalid;
    }
    if positions {
        return Frame::Positions { payload, len };
    }
    if link {
        let Some((previous, length)) = payload.split_at_checked(8) else {
            return Frame::Invalid;
        };
        let (Ok(previous), Ok(length)) = (previous.try_into(), length.try_into()) else {
            return Frame::Invalid;
        };
        return Frame::Link {
            previous: u64::from_le_bytes(previous),
            length: u64::from_le_bytes(length),
            len,
        };
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&buf[8..16]);
    Frame::Record {
        time_ms: u64::from_le_bytes(time),
        payload,
        len,
    }
}

/// The next intact frame (a record or positions) at or after `from`, if any.
pub fn next_valid(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < buf.len() {
        // Both magics start with "LFr"/"LFp": look for "LF" and let the decoder decide.
        let i = at + memchr::memmem::find(&buf[at..], b"LF")?;
        if matches!(
            decode(&buf[i..]),
            Frame::Record { .. } | Frame::Positions { .. } | Frame::Link { .. }
        ) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

/// A segment's format version, read from its magic: `Some(v)` for a logferry segment of any
/// version (a later one than [`FORMATS`] is refused by the caller), `None` when the magic is
/// not ours or damaged.
pub fn version(buf: &[u8]) -> Option<u8> {
    let family = buf.get(..SEGMENT_FAMILY.len())?;
    (family == SEGMENT_FAMILY).then(|| buf.get(SEGMENT_FAMILY.len()).copied())?
}

/// What a whole segment holds, as far as it can be trusted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Intact records.
    pub records: u64,
    /// Append time of the first intact record.
    pub first_ms: Option<u64>,
    /// Byte ranges between intact frames that are not frames: each is at least one lost record.
    pub corrupt: Vec<(u64, u64)>,
    /// Where the last intact frame ends; anything after it is a torn write.
    pub end: u64,
    /// Bytes after `end` (a write cut short by a crash or a full disk).
    pub torn: u64,
    /// The segment's own magic is damaged (the frames after it are checked as usual).
    pub header_damaged: bool,
    /// The payloads of the intact positions frames, in order, as byte ranges.
    pub positions: Vec<(usize, usize)>,
    /// What the link frame says of the segment before: its id and final length.
    pub link: Option<(u64, u64)>,
}

/// Checks a whole segment file's content. `None` when it does not even look like a segment:
/// neither [`SEGMENT_MAGIC`] nor a single intact frame after where it would be. A damaged
/// magic alone loses nothing: the frames carry their own magic and CRC, so the ones after it
/// are kept ([`Scan::header_damaged`]).
pub fn scan(buf: &[u8]) -> Option<Scan> {
    let data = SEGMENT_MAGIC.len();
    let header_damaged = !version(buf).is_some_and(|v| FORMATS.contains(&v));
    if header_damaged && (buf.len() <= data || next_valid(buf, data).is_none()) {
        return None;
    }
    let mut s = Scan {
        header_damaged,
        ..Scan::default()
    };
    let mut at = data;
    s.end = at as u64;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Frame::Record { time_ms, len, .. } => {
                s.records += 1;
                s.first_ms.get_or_insert(time_ms);
                at += len;
                s.end = at as u64;
            }
            Frame::Positions { payload, len } => {
                let start = at + HEADER;
                s.positions.push((start, start + payload.len()));
                at += len;
                s.end = at as u64;
            }
            Frame::Link {
                previous,
                length,
                len,
            } => {
                s.link.get_or_insert((previous, length));
                at += len;
                s.end = at as u64;
            }
            Frame::Incomplete { .. } | Frame::Invalid => match next_valid(buf, at + 1) {
                Some(next) => {
                    s.corrupt.push((at as u64, next as u64));
                    at = next;
                }
                None => break,
            },
        }
    }
    s.torn = buf.len() as u64 - s.end;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = SEGMENT_MAGIC.to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode(&mut buf, 1000 + i as u64, p);
        }
        buf
    }

    /// Segments written by every earlier build are read by this one: the checksum is CRC-32C
    /// (Castagnoli) over the header's first 16 bytes and the payload, whichever library
    /// computes it. The check values are RFC 3720's (iSCSI) and the catalogue's `123456789`.
    #[test]
    fn the_frame_checksum_is_crc32c_of_header_then_payload() {
        assert_eq!(checksum(b"1234", b"56789"), 0xe306_9283);
        assert_eq!(checksum(&[0; 16], &[0; 16]), 0x8a91_36aa);
        assert_eq!(checksum(&[0xff; 16], &[0xff; 16]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(checksum(&ascending[..16], &ascending[16..]), 0x46dd_794e);
        let long: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let split = checksum(&long[..16], &long[16..]);
        assert_eq!(
            split,
            checksum(&[], &long),
            "the split does not change the sum"
        );
    }

    #[test]
    fn frames_read_back_with_their_time() {
        let buf = segment(&[b"first", b"", b"third"]);
        let at = SEGMENT_MAGIC.len();
        assert_eq!(
            decode(&buf[at..]),
            Frame::Record {
                time_ms: 1000,
                payload: b"first",
                len: HEADER + 5
            }
        );
        let s = scan(&buf).unwrap();
        assert_eq!((s.records, s.first_ms, s.torn), (3, Some(1000), 0));
        assert!(s.corrupt.is_empty());
    }

    #[test]
    fn a_torn_last_frame_is_cut_off_and_measured() {
        let whole = segment(&[b"one", b"two"]);
        for cut in 1..HEADER + 3 {
            let buf = &whole[..whole.len() - cut];
            let s = scan(buf).unwrap();
            assert_eq!(s.records, 1, "cut {cut}");
            assert_eq!(s.end as usize + s.torn as usize, buf.len());
            assert_eq!(s.torn as usize, HEADER + 3 - cut);
        }
    }

    #[test]
    fn a_flipped_byte_loses_that_record_only() {
        let whole = segment(&[b"one", b"two", b"three"]);
        let second = SEGMENT_MAGIC.len() + HEADER + 3;
        // Every byte of the second frame, header or payload.
        for i in second..second + HEADER + 3 {
            let mut buf = whole.clone();
            buf[i] ^= 0x40;
            let s = scan(&buf).unwrap();
            assert_eq!(s.records, 2, "flip at {i}");
            assert_eq!(s.corrupt.len(), 1, "flip at {i}");
            assert_eq!(s.torn, 0);
        }
    }

    #[test]
    fn a_file_that_is_not_a_segment_is_refused() {
        assert_eq!(scan(b"LFSEG"), None);
        assert_eq!(scan(b"hello, world"), None);
    }

    #[test]
    fn a_segment_whose_header_is_damaged_keeps_its_good_frames() {
        let whole = segment(&[b"one", b"two", b"three"]);
        for i in 0..SEGMENT_MAGIC.len() {
            let mut buf = whole.clone();
            buf[i] ^= 0x01;
            let s = scan(&buf).unwrap();
            assert!(s.header_damaged, "flip at {i}");
            assert_eq!((s.records, s.torn), (3, 0), "flip at {i}");
            assert!(s.corrupt.is_empty(), "flip at {i}");
        }
        // The header and the first frame's magic both gone: the others are still found.
        let mut buf = whole.clone();
        buf[..SEGMENT_MAGIC.len() + 2].fill(0);
        let s = scan(&buf).unwrap();
        assert_eq!(s.records, 2);
        assert_eq!(s.corrupt.len(), 1);
    }

    proptest! {
        /// Whatever happens to the bytes, the scan never panics, and every record it reports
        /// intact is one that was written.
        #[test]
        fn damaged_segments_yield_only_written_records(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
            let mut buf = segment(&refs);
            for (at, byte) in damage {
                let i = at.index(buf.len());
                if i >= SEGMENT_MAGIC.len() {
                    buf[i] = byte;
                }
            }
            let keep = SEGMENT_MAGIC.len() + cut.index(buf.len() - SEGMENT_MAGIC.len() + 1);
            buf.truncate(keep);
            let s = scan(&buf).unwrap();
            let mut at = SEGMENT_MAGIC.len();
            let mut found = 0;
            while at < s.end as usize {
                if let Some(&(start, end)) = s.corrupt.iter().find(|c| c.0 as usize == at) {
                    prop_assert!(end > start);
                    at = end as usize;
                    continue;
                }
                let Frame::Record { payload, len, .. } = decode(&buf[at..]) else {
                    return Err(TestCaseError::fail(format!("no frame at {at}")));
                };
                prop_assert!(payloads.iter().any(|p| p.as_slice() == payload));
                found += 1;
                at += len;
            }
            prop_assert_eq!(found, s.records);
        }
    }
}
