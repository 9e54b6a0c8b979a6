//! Request bodies built from a batch's items as they lie in the buffer, so a shipper never
//! holds a whole uncompressed batch: with gzip the body is compressed piece by piece as the
//! items are read; without, the pieces are streamed with a known length.

use crate::buffer::Pieces;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A gzip member compressed by ISA-L's igzip at level 1, straight into the request body.
/// igzip's level 1 costs about 2.6 times less CPU than zlib's (zlib-rs) on these bodies and
/// writes a quarter fewer bytes (dynamic Huffman tables where zlib's level 1 uses fixed ones);
/// see docs/speed.md. Boxed: the encoder's state holds its 64 KiB window inline.
struct Gzip(Box<isal::write::Encoder<Vec<u8>>>);

// SAFETY: isal-rs's encoder is not `Send` only because ISA-L's stream struct holds raw
// pointers, and each one is safe to carry to another thread between calls: `level_buf` points
// into a `Vec` the encoder owns (a heap block that moves with it), `hufftables` to ISA-L's
// static default tables (read-only), `next_in`/`next_out` to the buffers of the call in
// progress (set again at the start of every call, never read once it returns). The stream's
// internal state holds no pointers, and ISA-L keeps no per-thread state. A `Gzip` is used by
// one thread at a time (`&mut self`); it is never shared, so it is not `Sync`.
#[allow(unsafe_code)]
unsafe impl Send for Gzip {}

impl Gzip {
    fn new(capacity: usize) -> Gzip {
        Gzip(Box::new(isal::write::Encoder::new(
            Vec::with_capacity(capacity.max(ROOM)),
            // Level 1: logs compress well even at the fastest level, and CPU is the node's.
            isal::CompressionLevel::One,
            isal::Codec::Gzip,
        )))
    }

    /// After an error the member is dropped, never finished: the failed call left ISA-L's
    /// input pointer on the caller's buffer, which `finish` would read again. Both callers
    /// ([`gzip`], [`GzipOnRead`]) give up on the body at the first error.
    fn write(&mut self, input: &[u8]) -> io::Result<()> {
        self.0.write_all(input)
    }

    /// The member, its trailer (CRC-32 and length) written.
    fn finish(self) -> io::Result<Vec<u8>> {
        self.0.finish()
    }
}

/// The least room the body starts with.
const ROOM: usize = 32 * 1024;

/// The gzip-compressed body of `pieces`; `len` (the uncompressed size) sizes the output.
pub fn gzip(pieces: Pieces, len: u64) -> io::Result<Vec<u8>> {
    let mut gz = Gzip::new(len as usize / 8);
    for piece in pieces {
        gz.write(&piece?)?;
    }
    gz.finish()
}

/// A batch's first request body, compressed from the items as the buffer reads them for the
/// lease: the bytes are read once, not once to hand the batch out and again for its body.
/// Retries, and batches another shipper gave back, are built from the buffer by [`gzip`].
pub struct GzipOnRead {
    gz: Option<Gzip>,
    /// Items are gathered up to [`STAGE`] bytes: the compressor costs more per call than a copy.
    stage: Vec<u8>,
    failed: Option<io::Error>,
}

const STAGE: usize = 64 * 1024;

impl Default for GzipOnRead {
    fn default() -> Self {
        GzipOnRead {
            gz: None,
            stage: Vec::with_capacity(STAGE),
            failed: None,
        }
    }
}

impl GzipOnRead {
    /// Compresses `bytes`, or the stage when `bytes` is `None`, and empties the stage.
    fn pour(&mut self, bytes: Option<&[u8]>) {
        if let (Some(gz), None) = (&mut self.gz, &self.failed)
            && let Err(e) = gz.write(bytes.unwrap_or(&self.stage))
        {
            self.failed = Some(e);
        }
        self.stage.clear();
    }

    /// The compressed body of the items read since the last start.
    pub fn finish(&mut self) -> io::Result<Vec<u8>> {
        self.pour(None);
        let gz = self.gz.take();
        match self.failed.take() {
            Some(e) => Err(e),
            None => gz.map_or_else(|| Ok(Vec::new()), Gzip::finish),
        }
    }
}

impl crate::buffer::ReadInto for GzipOnRead {
    fn start(&mut self) {
        self.stage.clear();
        self.failed = None;
        self.gz = Some(Gzip::new(STAGE));
    }

    fn item(&mut self, payload: &[u8]) {
        if self.stage.len() + payload.len() > STAGE {
            self.pour(None);
        }
        if payload.len() >= STAGE {
            self.pour(Some(payload));
        } else {
            self.stage.extend_from_slice(payload);
        }
    }
}

/// The uncompressed body, read piece by piece while it is sent. `Content-Length` is known up
/// front (some proxies in front of clusters refuse chunked requests).
pub struct Streamed {
    pieces: Pieces,
    remaining: u64,
}

impl Streamed {
    pub fn new(pieces: Pieces, len: u64) -> Streamed {
        Streamed {
            pieces,
            remaining: len,
        }
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        // Reading a piece is a pread of at most 256 KiB, from the page cache almost always:
        // short enough to do on the runtime's thread.
        Poll::Ready(match self.pieces.next() {
            Some(Ok(piece)) => {
                self.remaining = self.remaining.saturating_sub(piece.len() as u64);
                Some(Ok(Frame::data(Bytes::from(piece))))
            }
            Some(Err(e)) => Some(Err(e)),
            None => None,
        })
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::ReadInto;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Small items gathered, large ones (over the stage) compressed as they come, in order;
    /// a new start forgets what the read before it handed on.
    #[test]
    fn the_body_built_on_read_is_the_items_in_order_since_the_last_start() {
        let items: Vec<Vec<u8>> = (0..40u8)
            .map(|n| vec![b'a' + n % 26; [10, 700, STAGE - 1, STAGE, 3 * STAGE][n as usize % 5]])
            .collect();
        let mut body = GzipOnRead::default();
        body.start();
        body.item(b"a read that failed half-way");
        body.start();
        for i in &items {
            body.item(i);
        }
        assert_eq!(gunzip(&body.finish().unwrap()), items.concat());
        body.start();
        body.item(b"next");
        assert_eq!(gunzip(&body.finish().unwrap()), b"next");
        body.start();
        assert_eq!(
            gunzip(&body.finish().unwrap()),
            b"",
            "an empty body is a gzip member too"
        );
    }

    /// Log lines are what the compressor is for: a body of JSON lines that differ in their
    /// ids, times and numbers still leaves at under a fifth of its size.
    #[test]
    fn a_body_of_log_lines_is_sent_at_a_fraction_of_its_size() {
        let items: Vec<Vec<u8>> = (0..5_000u64)
            .map(|n| {
                let id = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                format!(
                    "{{\"create\":{{\"_index\":\"logs\",\"_id\":\"{id:016x}\"}}}}\n{{\"@timestamp\":\"2026-12-07T10:{:02}:{:02}.{:03}Z\",\"level\":\"info\",\"message\":\"request completed\",\"requestId\":\"{:012x}\",\"status\":200,\"duration\":{}.{:02}}}\n",
                    n / 60_000 % 60,
                    n / 1000 % 60,
                    n % 1000,
                    id >> 16,
                    n % 250,
                    n % 100
                )
                .into_bytes()
            })
            .collect();
        let mut body = GzipOnRead::default();
        body.start();
        items.iter().for_each(|i| body.item(i));
        let sent = body.finish().unwrap();
        let all = items.concat();
        assert_eq!(gunzip(&sent), all);
        assert!(
            sent.len() * 5 < all.len(),
            "{} bytes of log lines sent as {}",
            all.len(),
            sent.len()
        );
    }

    /// What a retry sends: the same bytes from the buffer's pieces, checksum and length right
    /// (the decoder checks both), however many megabytes and however incompressible.
    #[test]
    fn a_body_built_from_pieces_is_a_whole_gzip_member_of_the_items() {
        let mut noise = 1u64;
        let items: Vec<Vec<u8>> = (0..300)
            .map(|n| {
                (0..10_000 + n)
                    .map(|_| {
                        noise = noise
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        (noise >> 56) as u8
                    })
                    .collect()
            })
            .collect();
        let starts: Vec<u32> = items
            .iter()
            .scan(0u32, |at, i| {
                let s = *at;
                *at += i.len() as u32;
                Some(s)
            })
            .collect();
        let batch = crate::buffer::Batch::in_memory(items.concat(), &starts);
        let all: Vec<usize> = (0..items.len()).collect();
        let body = gzip(batch.pieces(all.clone()), batch.body_len(&all)).unwrap();
        assert_eq!(gunzip(&body), items.concat());
    }
}
