//! The checkpoints as the buffer keeps them (the agent hands them over as the buffer's
//! `Positions`; this layer does not know the buffer): each chunk's
//! files with the offsets after its records, and every entry at the head of a segment, in the
//! checkpoints file's own format. At start-up the positions the buffer held are taken in: per
//! file, the furthest of them and the checkpoints file wins, so that losing the checkpoints
//! file (or the last second of it, saved once a second) reads nothing twice.

use super::*;

impl Checkpoints {
    /// The entries of the files a chunk carrying `advances` holds records of, each at its
    /// advance: what the buffer writes after the chunk's records.
    pub fn positions_after(&self, advances: &[(FileKey, u64)]) -> Vec<u8> {
        let inner = self.lock();
        let files: HashMap<FileKey, Entry> = advances
            .iter()
            .filter_map(|(key, offset)| {
                let e = inner.files.get(key)?;
                // An advance for content the file no longer holds (see `advance`).
                (e.ids == key.ids || key.ids == IdBasis::Unsettled).then(|| {
                    let mut e = e.clone();
                    e.offset = *offset;
                    (*key, e)
                })
            })
            .collect();
        if files.is_empty() {
            return Vec::new();
        }
        format::to_bytes(&files, None).unwrap_or_default()
    }

    /// Every entry (each durable: entries move only once their chunks are), for the head of a
    /// new buffer segment.
    pub fn positions_snapshot(&self) -> Vec<u8> {
        let inner = self.lock();
        if inner.files.is_empty() {
            return Vec::new();
        }
        format::to_bytes(&inner.files, inner.last_scan).unwrap_or_default()
    }

    /// Takes in the positions the buffer held (oldest first): an entry moves to a later
    /// truncation generation, or further in the same one; a file the checkpoints file lost is
    /// known again. What the buffer held is remembered for [`Checkpoints::reread`].
    pub fn restore(&self, payloads: Vec<Vec<u8>>) {
        let mut inner = self.lock();
        let mut restored = 0usize;
        for payload in payloads {
            let Ok(loaded) = format::parse(&payload, now_ns()) else {
                tracing::warn!(
                    "a positions record in the buffer is unreadable; the checkpoints file covers it"
                );
                continue;
            };
            for (mut key, entry) in loaded.files {
                key.born_ns = entry.born_ns;
                key.time_anchor_ns = entry.time_anchor_ns();
                key.ids = entry.ids;
                let held = (entry.generation, entry.offset);
                let seen = inner.buffered.entry(key).or_insert(held);
                *seen = (*seen).max(held);
                if inner
                    .files
                    .get(&key)
                    .is_some_and(|e| (e.generation, e.offset) >= held)
                {
                    continue;
                }
                // Removed first: `insert` would keep the old key, settled from the old entry.
                inner.files.remove(&key);
                if entry.retire_at.is_none_or(|end| entry.offset < end) {
                    inner.files.insert(key, entry);
                }
                inner.dirty = true;
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::info!(
                restored,
                "files resume from the positions in the buffer, further than the checkpoints file"
            );
        }
    }

    /// How many bytes of the file `key`, about to be read from `from`, the buffer already held
    /// at start-up (asked once per file; 0 when it held none of this generation's).
    pub fn reread(&self, key: &FileKey, from: u64) -> u64 {
        let mut inner = self.lock();
        let Some((generation, held)) = inner.buffered.remove(key) else {
            return 0;
        };
        let current = inner.files.get(key).map(|e| e.generation);
        if current.is_some_and(|g| g != generation) {
            return 0;
        }
        held.saturating_sub(from)
    }
}
