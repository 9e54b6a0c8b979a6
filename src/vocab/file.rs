//! File identity: what names a followed file's content, and what its records' ids are made of.
//!
//! A leaf: imports nothing of the crate. The tailer identifies a file by its inode and a
//! fingerprint of its first line; the device number travels along as a hint only, because LVM
//! and btrfs can number the same filesystem differently after a reboot. What a file's document
//! ids are computed from ([`IdBasis`]) is settled once, when the file is first tracked, and kept
//! in its checkpoint entry: a line read again after a crash gets the id it had the first time,
//! whatever changed in between (the device number, the node's name, this crate's formula).

use std::hash::{Hash, Hasher};

/// What names a file's content across renames: its inode, plus a fingerprint of its first line
/// so that a reused inode is not mistaken for the file that had it before.
///
/// Equality and hashing look at `ino` and `fingerprint` only. The other fields describe the
/// file as the tailer found it (`dev`, `born_ns`) or as its checkpoint settled it
/// (`time_anchor_ns`, `ids`) and travel with the key to the encoder and the committer.
#[derive(Debug, Clone, Copy)]
pub struct FileKey {
    /// The device the file was last seen on: a hint, not identity (renumbered across reboots).
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: u64,
    /// The file's birth time (statx), Unix nanoseconds; 0 where the filesystem does not say.
    /// Tells a reused inode from the file that had it, and anchors records without a time.
    pub born_ns: i64,
    /// The time given to a record whose line carries no usable time of its own and follows no
    /// line that did (Unix nanoseconds): the file's birth time, else when it was first tracked.
    /// Kept in the checkpoint entry, so a line read again after a restart gets the same one.
    pub time_anchor_ns: i64,
    /// What the document ids of this file's records are made of.
    pub ids: IdBasis,
}

/// The input of a file's document ids, fixed when the file is first tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdBasis {
    /// Just identified, not tracked yet. Records are only read from tracked files; should one
    /// slip through, its ids are still those of a first generation ([`seed`] without a node).
    Unsettled,
    /// A file first tracked by a version before checkpoint format 2: ids hash the device (as it
    /// was then), inode, fingerprint and offset, exactly as that version did, so that records
    /// it buffered and shipped still meet their own ids on a replay.
    V1 { dev: u64 },
    /// Ids hash this seed and the offset; the seed is [`seed`] of the file's node, inode,
    /// fingerprint, birth time and truncation generation.
    V2 { seed: u128 },
}

impl PartialEq for FileKey {
    fn eq(&self, other: &Self) -> bool {
        self.ino == other.ino && self.fingerprint == other.fingerprint
    }
}

impl Eq for FileKey {}

impl Hash for FileKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.ino.hash(state);
        self.fingerprint.hash(state);
    }
}

impl FileKey {
    /// A key as the tailer's `identify` finds it: not settled by a checkpoint yet.
    pub fn new(dev: u64, ino: u64, fingerprint: u64) -> FileKey {
        FileKey {
            dev,
            ino,
            fingerprint,
            born_ns: 0,
            time_anchor_ns: 0,
            ids: IdBasis::Unsettled,
        }
    }

    /// Stands for a file seen but not yet identifiable (its first line is incomplete): it is
    /// remembered by inode so that a crash cannot make the agent forget it.
    pub fn placeholder(dev: u64, ino: u64) -> FileKey {
        FileKey::new(dev, ino, 0)
    }

    pub fn is_placeholder(&self) -> bool {
        self.fingerprint == 0
    }

    /// Equal, and not told apart by birth times either: where both are known and differ, the
    /// inode was freed and reused by a file that starts with the same line.
    pub fn same_file(&self, other: &FileKey) -> bool {
        self == other && (self.born_ns == 0 || other.born_ns == 0 || self.born_ns == other.born_ns)
    }
}

/// The id seed of a file first tracked by this version: everything that tells two files'
/// lines at the same offset apart, and nothing that can change while the file lives.
///
/// - `node` separates the same image-baked file (same inode, same first line) on two nodes.
/// - `born_ns` separates a reused inode whose new file starts with the same constant line; it
///   is the birth time from the filesystem, so a file read again after its checkpoint was lost
///   gets its old ids back. Where the filesystem has no birth time, the caller passes when the
///   file was first tracked: still distinct, but lost with the checkpoint.
/// - `generation` counts truncations (copytruncate): each new content gets new ids although
///   its first line and offsets repeat the old one's.
pub fn seed(node: &str, ino: u64, fingerprint: u64, born_ns: i64, generation: u32) -> u128 {
    let mut input = Vec::with_capacity(64 + node.len());
    input.extend_from_slice(b"logferry ids v2\0");
    input.extend_from_slice(node.as_bytes());
    // The node name cannot hold a NUL, so the fields after it cannot shift into it.
    input.push(0);
    input.extend_from_slice(&ino.to_le_bytes());
    input.extend_from_slice(&fingerprint.to_le_bytes());
    input.extend_from_slice(&born_ns.to_le_bytes());
    input.extend_from_slice(&generation.to_le_bytes());
    xxhash_rust::xxh3::xxh3_128(&input)
}

/// The name that goes into new files' id seeds: the configured one (`kubernetes.node_name`),
/// else `NODE_NAME`, else the host name (in a pod without host networking that is the pod's
/// name, which changes with every rollout: only files first tracked after it are affected,
/// since seeds are kept in the checkpoints).
pub fn node_name(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_owned();
    }
    if let Ok(n) = std::env::var("NODE_NAME")
        && !n.is_empty()
    {
        return n;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_renumbered_device_is_the_same_file() {
        let before = FileKey::new(2049, 7, 0xfeed);
        let after_reboot = FileKey::new(64768, 7, 0xfeed);
        assert_eq!(before, after_reboot);
        let set: HashSet<FileKey> = [before].into();
        assert!(set.contains(&after_reboot));
        assert_ne!(before, FileKey::new(2049, 7, 0xbeef), "other first line");
        assert_ne!(before, FileKey::new(2049, 8, 0xfeed), "other inode");
    }

    #[test]
    fn a_reused_inode_is_told_apart_by_its_birth_time() {
        let born = |ns| FileKey {
            born_ns: ns,
            ..FileKey::new(2049, 7, 0xfeed)
        };
        assert!(born(1_000).same_file(&born(1_000)));
        assert!(!born(1_000).same_file(&born(2_000)));
        // Unknown on one side (a filesystem without birth times, an old checkpoint): the
        // inode and first line decide.
        assert!(born(0).same_file(&born(2_000)));
    }

    #[test]
    fn seeds_tell_apart_every_case_the_review_found() {
        let base = seed("node-a", 7, 0xfeed, 1_000, 0);
        assert_eq!(base, seed("node-a", 7, 0xfeed, 1_000, 0), "deterministic");
        for (case, other) in [
            (
                "same file baked into the image on another node",
                seed("node-b", 7, 0xfeed, 1_000, 0),
            ),
            (
                "copytruncate with the same first line",
                seed("node-a", 7, 0xfeed, 1_000, 1),
            ),
            (
                "inode reused with a constant first line",
                seed("node-a", 7, 0xfeed, 2_000, 0),
            ),
            (
                "node name running into the inode",
                seed("node-a\u{7}", 7, 0xfeed, 1_000, 0),
            ),
        ] {
            assert_ne!(base, other, "{case}");
        }
        // Pinned: a change here changes the ids of every file first tracked after an upgrade
        // whose checkpoint is then lost.
        assert_eq!(format!("{base:032x}"), "c91b21be352b0907e4c4fa9167613f3d");
    }
}
