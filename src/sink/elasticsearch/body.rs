//! Request bodies built from a batch's items as they lie in the buffer, so a shipper never
//! holds a whole uncompressed batch: with gzip the body is compressed piece by piece as the
//! items are read; without, the pieces are streamed with a known length.

use crate::buffer::Pieces;
use bytes::Bytes;
use flate2::Compression as Level;
use flate2::write::GzEncoder;
use http_body::{Frame, SizeHint};
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The gzip-compressed body of `pieces`; `len` (the uncompressed size) sizes the output.
pub fn gzip(pieces: Pieces, len: u64) -> std::io::Result<Vec<u8>> {
    // Level 1: logs compress well even at the fastest level, and CPU is the node's.
    let mut enc = GzEncoder::new(Vec::with_capacity(len as usize / 8), Level::fast());
    for piece in pieces {
        enc.write_all(&piece?)?;
    }
    enc.finish()
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
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
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
