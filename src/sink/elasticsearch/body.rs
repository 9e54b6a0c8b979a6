//! Request bodies built from a batch's items as they lie in the buffer, so a shipper never
//! holds a whole uncompressed batch: with gzip the body is compressed piece by piece as the
//! items are read; without, the pieces are streamed with a known length.

use crate::buffer::Pieces;
use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use http_body::{Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A gzip member compressed straight into the request body: `flate2`'s `GzEncoder` compresses
/// into a buffer of its own and copies that into its output.
struct Gzip {
    deflate: Compress,
    crc: Crc,
    out: Vec<u8>,
}

impl Gzip {
    fn new(capacity: usize) -> Gzip {
        let mut out = Vec::with_capacity(capacity.max(ROOM));
        // ID1 ID2, deflate, no flags, no time, no extra flags, OS unknown (RFC 1952).
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        Gzip {
            // Level 1: logs compress well even at the fastest level, and CPU is the node's.
            deflate: Compress::new(Compression::fast(), false),
            crc: Crc::new(),
            out,
        }
    }

    fn write(&mut self, mut input: &[u8]) -> io::Result<()> {
        self.crc.update(input);
        while !input.is_empty() {
            let taken = self.step(input, FlushCompress::None)?.0;
            input = &input[taken..];
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<u8>> {
        while self.step(&[], FlushCompress::Finish)?.1 != Status::StreamEnd {}
        self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
        self.out.extend_from_slice(&self.crc.amount().to_le_bytes());
        Ok(self.out)
    }

    /// One call of the compressor, with room for its output: how much input it took.
    fn step(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<(usize, Status)> {
        if self.out.capacity() - self.out.len() < ROOM {
            self.out.reserve(self.out.capacity().max(ROOM));
        }
        let (read, wrote) = (self.deflate.total_in(), self.deflate.total_out());
        let status = self
            .deflate
            .compress_vec(input, &mut self.out, flush)
            .map_err(io::Error::other)?;
        if status != Status::StreamEnd
            && self.deflate.total_in() == read
            && self.deflate.total_out() == wrote
        {
            return Err(io::Error::other("the compressor made no progress"));
        }
        Ok(((self.deflate.total_in() - read) as usize, status))
    }
}

/// The least free space the compressor is given for its output.
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
