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

/// Level 1: logs compress well even at the fastest level, and CPU is the node's.
fn level() -> Level {
    Level::fast()
}

/// The gzip-compressed body of `pieces`; `len` (the uncompressed size) sizes the output.
pub fn gzip(pieces: Pieces, len: u64) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(len as usize / 8), level());
    for piece in pieces {
        enc.write_all(&piece?)?;
    }
    enc.finish()
}

/// A batch's first request body, compressed from the items as the buffer reads them for the
/// lease: the bytes are read once, not once to hand the batch out and again for its body.
/// Retries, and batches another shipper gave back, are built from the buffer by [`gzip`].
pub struct GzipOnRead {
    enc: Option<GzEncoder<Vec<u8>>>,
    /// Items are gathered up to [`STAGE`] bytes: the compressor costs more per call than a copy.
    stage: Vec<u8>,
    failed: Option<std::io::Error>,
}

const STAGE: usize = 64 * 1024;

impl Default for GzipOnRead {
    fn default() -> Self {
        GzipOnRead {
            enc: None,
            stage: Vec::with_capacity(STAGE),
            failed: None,
        }
    }
}

impl GzipOnRead {
    /// Compresses `bytes`, or the stage when `bytes` is `None`, and empties the stage.
    fn pour(&mut self, bytes: Option<&[u8]>) {
        if let (Some(enc), None) = (&mut self.enc, &self.failed)
            && let Err(e) = enc.write_all(bytes.unwrap_or(&self.stage))
        {
            self.failed = Some(e);
        }
        self.stage.clear();
    }

    /// The compressed body of the items read since the last start.
    pub fn finish(&mut self) -> std::io::Result<Vec<u8>> {
        self.pour(None);
        let enc = self.enc.take();
        match self.failed.take() {
            Some(e) => Err(e),
            None => enc.map_or_else(|| Ok(Vec::new()), GzEncoder::finish),
        }
    }
}

impl crate::buffer::ReadInto for GzipOnRead {
    fn start(&mut self) {
        self.stage.clear();
        self.failed = None;
        self.enc = Some(GzEncoder::new(Vec::with_capacity(STAGE), level()));
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
    }
}
