//! The Kafka inputs' offsets as positions the buffer keeps beside their records.
//!
//! Each batch a consumer appends states, after its records, the next offset of every partition
//! the batch read (`Chunk::positions`): durable in the same fsync as the records, so at
//! start-up the buffer says how far each partition got into it, even where the commit to the
//! group never happened (an aggregator killed between the two). A record below that position
//! is in this agent's buffer already: consumed again, it is skipped, not buffered twice.
//!
//! Skipping is only safe while the partition is the log the position was taken in: a topic
//! deleted and created again under its name starts at offset 0, and its records would be
//! skipped, lost. So a position also holds a fingerprint of the last record it covers (as a
//! file's checkpoint holds one of the file's head), and a restarted input believes it only
//! once the broker still has that record there ([`super::verify`]); otherwise it consumes what
//! the group says, and a record it held is a 409.
//!
//! The rule is "what this buffer holds is not taken again", so a group whose offsets an
//! operator resets to replay a range skips what this agent had buffered of it; a replay reads
//! with a new `group_id` (positions are kept per group).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Marks a payload as the Kafka inputs' (the files' are JSON objects).
const TAG: &[u8] = b"kafka-offsets ";

/// A partition of a topic, as one group reads it.
pub type Partition = (String, String, i32);

/// Where a partition resumes: the next offset to take, and the fingerprint of the record
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub next: i64,
    pub last: u64,
}

/// Each partition's mark, per group.
#[derive(Default)]
pub struct Offsets {
    durable: Mutex<BTreeMap<Partition, Mark>>,
}

/// A partition's next offset and last fingerprint, as a batch leaves them.
pub type Next = BTreeMap<(String, i32), Mark>;

impl Offsets {
    /// Whether a payload the buffer recovered is the Kafka inputs'.
    pub fn is_ours(payload: &[u8]) -> bool {
        payload.starts_with(TAG)
    }

    /// The offsets the buffer held (payloads oldest first; others' ignored): each partition
    /// at the furthest position any of them reached.
    pub fn restore(payloads: &[Vec<u8>]) -> Offsets {
        let mut durable = BTreeMap::new();
        for p in payloads.iter().filter(|p| Offsets::is_ours(p)) {
            let Ok(list) = serde_json::from_slice::<Vec<Partitioned>>(&p[TAG.len()..]) else {
                tracing::warn!(
                    "kafka input: a positions record in the buffer is unreadable; the group's committed offsets cover it"
                );
                continue;
            };
            for (group, topic, partition, next, last) in list {
                let mark = Mark { next, last };
                let at = durable.entry((group, topic, partition)).or_insert(mark);
                if at.next < next {
                    *at = mark;
                }
            }
        }
        if !durable.is_empty() {
            tracing::info!(
                partitions = durable.len(),
                "kafka input: positions found in the buffer"
            );
        }
        Offsets {
            durable: Mutex::new(durable),
        }
    }

    /// The payload stating `next` (each partition's mark) for `group`.
    pub fn payload(group: &str, next: &Next) -> Vec<u8> {
        let list: Vec<Listed> = next
            .iter()
            .map(|((topic, partition), m)| (group, topic.as_str(), *partition, m.next, m.last))
            .collect();
        encode(&list)
    }

    /// Every partition `group` has a mark for.
    pub fn of_group(&self, group: &str) -> Next {
        self.lock()
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, topic, partition), m)| ((topic.clone(), *partition), *m))
            .collect()
    }

    /// `next` is durable for `group`: it goes into every new segment's head.
    pub fn durable(&self, group: &str, next: &Next) {
        let mut durable = self.lock();
        for ((topic, partition), m) in next {
            let at = durable
                .entry((group.to_owned(), topic.clone(), *partition))
                .or_insert(*m);
            if at.next < m.next {
                *at = *m;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Partition, Mark>> {
        self.durable.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `(group, topic, partition, next, last)` as stored.
type Partitioned = (String, String, i32, i64, u64);
type Listed<'a> = (&'a str, &'a str, i32, i64, u64);

fn encode(list: &[Listed<'_>]) -> Vec<u8> {
    let mut out = TAG.to_vec();
    // Strings and integers only: serialising cannot fail.
    serde_json::to_writer(&mut out, list).expect("offsets serialise");
    out
}

impl Offsets {
    /// Every partition's durable position, for the head of a new buffer segment.
    pub fn snapshot(&self) -> Vec<u8> {
        let durable = self.lock();
        if durable.is_empty() {
            return Vec::new();
        }
        let list: Vec<Listed> = durable
            .iter()
            .map(|((g, t, p), m)| (g.as_str(), t.as_str(), *p, m.next, m.last))
            .collect();
        encode(&list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(items: &[(&str, i32, i64)]) -> Next {
        items
            .iter()
            .map(|(t, p, n)| {
                let last = *n as u64 * 31;
                ((t.to_string(), *p), Mark { next: *n, last })
            })
            .collect()
    }

    fn resume_at(o: &Offsets, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let marks = o.of_group(group);
        let mark = marks.get(&(topic.to_owned(), partition))?;
        assert_eq!(
            mark.last,
            mark.next as u64 * 31,
            "the mark's own fingerprint"
        );
        Some(mark.next)
    }

    #[test]
    fn the_furthest_position_of_each_partition_and_group_is_restored() {
        let payloads = vec![
            Offsets::payload("g", &next(&[("logs", 0, 10), ("logs", 1, 4)])),
            br#"{"version":2,"files":[]}"#.to_vec(),
            Offsets::payload("g", &next(&[("logs", 0, 25)])),
            Offsets::payload("other", &next(&[("logs", 0, 3)])),
            // An older snapshot after a newer chunk: positions never move back.
            Offsets::payload("g", &next(&[("logs", 0, 12)])),
        ];
        let o = Offsets::restore(&payloads);
        assert_eq!(resume_at(&o, "g", "logs", 0), Some(25));
        assert_eq!(resume_at(&o, "g", "logs", 1), Some(4));
        assert_eq!(resume_at(&o, "other", "logs", 0), Some(3));
        assert_eq!(resume_at(&o, "g", "logs", 2), None);
        assert_eq!(resume_at(&o, "g", "audit", 0), None);
    }

    #[test]
    fn the_snapshot_holds_what_was_restored_and_what_became_durable() {
        let o = Offsets::restore(&[Offsets::payload("g", &next(&[("logs", 0, 10)]))]);
        o.durable("g", &next(&[("logs", 1, 7)]));
        let again = Offsets::restore(&[o.snapshot()]);
        assert_eq!(resume_at(&again, "g", "logs", 0), Some(10));
        assert_eq!(resume_at(&again, "g", "logs", 1), Some(7));
        assert!(Offsets::default().snapshot().is_empty());
    }

    #[test]
    fn a_damaged_payload_is_skipped_not_fatal() {
        let mut bad = TAG.to_vec();
        bad.extend_from_slice(b"[[\"g\",\"logs\"");
        let o = Offsets::restore(&[bad, Offsets::payload("g", &next(&[("logs", 0, 1)]))]);
        assert_eq!(resume_at(&o, "g", "logs", 0), Some(1));
    }
}
