//! A batch: bulk items a shipper sends together, read from the buffer where they lie.
//!
//! A batch from the disk buffer holds only where its items are in their segment file, not the
//! items: a shipper's first request body is built as the lease reads them
//! ([`super::ReadInto`]), and they are read back (from the page cache, almost always) each time
//! a later body is built. A shipper's memory is then a small read window and the compressed body, however large
//! `chunk_limit_size` is — the items are on disk until acknowledged anyway.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The most bytes read from a segment at once while a body is built.
const SPAN: u64 = 256 * 1024;

#[derive(Debug, Clone)]
enum Source {
    Segment(Arc<File>),
    Memory(Arc<[u8]>),
}

#[derive(Debug)]
pub struct Batch {
    /// Its place in the order shippers took batches.
    pub seq: u64,
    /// When its oldest record was buffered (Unix ms), for latency.
    pub oldest_ms: u64,
    /// Where each item (its action and document lines) is in the source: offset and length.
    items: Vec<(u64, u32)>,
    source: Source,
}

impl Batch {
    pub(super) fn in_segment(file: Arc<File>, items: Vec<(u64, u32)>) -> Batch {
        Batch {
            seq: 0,
            oldest_ms: 0,
            items,
            source: Source::Segment(file),
        }
    }

    /// A batch of items built in memory (dead letters on their way to their own index):
    /// `starts` holds where each item starts in `body`.
    pub fn in_memory(body: Vec<u8>, starts: &[u32]) -> Batch {
        let items = starts
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let end = starts.get(i + 1).map_or(body.len() as u32, |&e| e);
                (u64::from(s), end - s)
            })
            .collect();
        Batch {
            seq: 0,
            oldest_ms: 0,
            items,
            source: Source::Memory(body.into()),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The bytes of the request body for these items, if all were sent.
    pub fn body_len(&self, selection: &[usize]) -> u64 {
        selection
            .iter()
            .filter_map(|&i| self.items.get(i))
            .map(|&(_, len)| u64::from(len))
            .sum()
    }

    /// Item `i`: its action line and its document line.
    pub fn item(&self, i: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for piece in self.pieces(vec![i]) {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// All items, one after the other: the whole request body.
    pub fn body(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for piece in self.pieces((0..self.len()).collect()) {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// The request body for the selected items, in pieces of about [`SPAN`] bytes.
    pub fn pieces(&self, selection: Vec<usize>) -> Pieces {
        Pieces {
            source: self.source.clone(),
            items: selection
                .into_iter()
                .filter_map(|i| self.items.get(i).copied())
                .collect(),
            next: 0,
            scratch: Vec::new(),
        }
    }
}

/// Reads a request body piece by piece. Owns what it needs, so it can go into a request body
/// stream.
pub struct Pieces {
    source: Source,
    items: Vec<(u64, u32)>,
    next: usize,
    /// The span of the segment holding a piece's items, frame headers included.
    scratch: Vec<u8>,
}

impl Iterator for Pieces {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = *self.items.get(self.next)?;
        // Items close together in the file are read with one read.
        let mut last = self.next + 1;
        while let Some(&(at, len)) = self.items.get(last) {
            if at < first.0 || at + u64::from(len) - first.0 > SPAN {
                break;
            }
            last += 1;
        }
        let group = &self.items[self.next..last];
        self.next = last;
        let end = group
            .iter()
            .map(|&(at, len)| at + u64::from(len))
            .max()
            .unwrap_or(first.0);
        let span: &[u8] = match &self.source {
            Source::Memory(body) => body.get(first.0 as usize..end as usize).unwrap_or(&[]),
            Source::Segment(file) => {
                self.scratch.resize((end - first.0) as usize, 0);
                if let Err(e) = file.read_exact_at(&mut self.scratch, first.0) {
                    return Some(Err(e));
                }
                &self.scratch
            }
        };
        let size = group.iter().map(|&(_, len)| len as usize).sum();
        let mut out = Vec::with_capacity(size);
        for &(at, len) in group {
            let from = (at - first.0) as usize;
            out.extend_from_slice(&span[from..from + len as usize]);
        }
        Some(Ok(out))
    }
}
