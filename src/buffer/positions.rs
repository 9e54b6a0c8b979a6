//! Where the sources will resume, kept in the buffer beside their records.
//!
//! Each chunk a source appends ends with a positions frame (see [`frame`]): for every source
//! the chunk holds records of, the position after its last record, as the source writes it.
//! The write and fsync that make the records durable make their positions durable with them,
//! so that at start-up the buffer says how far each source got, whatever happened to the
//! sources' own files (the checkpoints file is saved once a second, and may be lost). Each new
//! segment starts with every position durable so far: segments are deleted once acknowledged,
//! and the positions of the deleted ones are then still in a later one.
//!
//! The buffer does not read positions: they are bytes the source makes ([`Positions`]) and
//! reads back at start-up ([`Buffer::take_recovered_positions`]).

use super::*;

/// What a source keeps in the buffer about itself. Sources tell their payloads apart at
/// start-up: the buffer keeps them in order, whoever wrote them.
pub trait Positions: Send + Sync {
    /// The positions after the records of a chunk that carries `advances` (the files'). A
    /// source that states its positions on the chunk ([`Chunk::positions`]) keeps this default.
    fn after(&self, _advances: &[(FileKey, u64)]) -> Vec<u8> {
        Vec::new()
    }
    /// Every position that is durable already (for the head of a new segment).
    fn snapshot(&self) -> Vec<u8>;
}

/// The positions frames start-up found, oldest first, as far as they can be trusted.
#[derive(Default)]
pub(super) struct Trail {
    pub payloads: Vec<Vec<u8>>,
    /// Damage was seen: frames after it are not taken. A chunk cut short by a power loss may
    /// have lost records while a later frame survived; what the sources saved themselves is
    /// then the truth.
    pub broken: bool,
    /// Where each segment seen so far ends (its last intact frame), for the next one's link.
    ends: std::collections::HashMap<u64, u64>,
}

impl Trail {
    /// Takes the positions of segment `id`, up to its first damage. A segment whose link says
    /// the one before it was longer than it is now (its end lost to a power cut, the file
    /// shorter than what was written) breaks the trail before its own frames.
    pub fn take(&mut self, id: u64, content: &[u8], scan: &frame::Scan, newest: bool) {
        if let Some((previous, length)) = scan.link
            && self.ends.get(&previous).is_some_and(|&end| end < length)
        {
            self.broken = true;
        }
        self.ends.insert(id, scan.end);
        if self.broken {
            return;
        }
        let first_damage = scan.corrupt.first().map_or(u64::MAX, |c| c.0);
        for &(start, end) in &scan.positions {
            if start as u64 > first_damage {
                break;
            }
            self.payloads.push(content[start..end].to_vec());
        }
        // A torn end is the crash itself in the segment being written; in an older one, a
        // later segment's frames may have outlived it.
        self.broken = first_damage != u64::MAX || (scan.torn > 0 && !newest);
    }
}

impl Buffer {
    /// The positions frames start-up found in the segments, oldest first (empty after the
    /// first call). Frames after any damage are left out.
    pub fn take_recovered_positions(&self) -> Vec<Vec<u8>> {
        std::mem::take(
            &mut self
                .recovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}
