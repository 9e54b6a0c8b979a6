//! Fluentd's `in_tail` `pos_file`, as a cut-over from Fluentd reads it: the positions Fluentd
//! reached, by inode, for discovery to start each file where Fluentd stopped (see
//! `crate::source::files`'s `fluentd.rs`, which finds the files). Read once, on the agent's first start
//! on a node.
//!
//! Fluentd writes one line per file it watches: `path<TAB>position<TAB>inode`, the position and
//! the inode as 16 hex digits, `ffffffffffffffff` as the position of a file it stopped watching.
//! It appends rather than rewrites, so a path can appear more than once: the last line of a
//! path *and inode* counts. With `follow_inodes true` Fluentd keeps a line per inode of one path
//! (the file and its rotated predecessors), each a position of its own.
//!
//! A position must also make sense in its file: within it, and just after a newline (Fluentd
//! only ever stops at a line's end); otherwise the inode was reused by another file.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Fluentd's position for a file it no longer watches.
const UNWATCHED: u64 = u64::MAX;

/// One position from the pos_file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The path as Fluentd had it (a `/var/log/containers` link, usually).
    pub path: PathBuf,
    /// Where that path leads now, when it still leads anywhere.
    pub real: Option<PathBuf>,
    pub offset: u64,
}

/// The positions of a pos_file by inode, not yet used.
#[derive(Debug, Default)]
pub struct Positions {
    by_inode: HashMap<u64, Position>,
}

impl Positions {
    /// Reads `path`; lines that are not Fluentd's format are skipped and said once.
    pub fn read(path: &Path) -> std::io::Result<Positions> {
        let text = std::fs::read_to_string(path)?;
        let (positions, skipped) = Positions::parse(&text);
        if let Some((line, count)) = skipped {
            tracing::warn!(pos_file = %path.display(), first_bad_line = line, lines = count, "lines of the Fluentd pos_file that are not `path<TAB>position<TAB>inode` were skipped");
        }
        Ok(positions)
    }

    /// The positions in a pos_file's text, and (first bad line, bad lines) when some were not
    /// in its format.
    pub fn parse(text: &str) -> (Positions, Option<(usize, usize)>) {
        let mut by_path: HashMap<(&str, u64), u64> = HashMap::new();
        let mut skipped: Option<(usize, usize)> = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.rsplitn(3, '\t');
            let (Some(ino), Some(pos), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                skipped = Some(skipped.map_or((i + 1, 1), |(l, n)| (l, n + 1)));
                continue;
            };
            match (u64::from_str_radix(pos, 16), u64::from_str_radix(ino, 16)) {
                (Ok(pos), Ok(ino)) if !path.is_empty() => {
                    // The last line of a path and inode counts: Fluentd appends as it goes.
                    by_path.insert((path, ino), pos);
                }
                _ => skipped = Some(skipped.map_or((i + 1, 1), |(l, n)| (l, n + 1))),
            }
        }
        let by_inode = by_path
            .into_iter()
            .filter(|(_, pos)| *pos != UNWATCHED)
            .map(|((path, ino), offset)| {
                let path = PathBuf::from(path);
                let real = std::fs::canonicalize(&path).ok();
                (ino, Position { path, real, offset })
            })
            .collect();
        (Positions { by_inode }, skipped)
    }

    /// Every position not taken yet, by inode.
    pub fn into_entries(self) -> impl Iterator<Item = (u64, Position)> {
        self.by_inode.into_iter()
    }

    /// Keeps a position for later (a file found but not opened yet).
    pub fn keep(&mut self, ino: u64, p: Position) {
        self.by_inode.insert(ino, p);
    }

    pub fn len(&self) -> usize {
        self.by_inode.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inode.is_empty()
    }

    /// The position of the file with inode `ino` found at `path` (leading to `real`), taken
    /// out: a position is used once.
    pub fn take(&mut self, ino: u64, path: &Path, real: &Path) -> Option<Position> {
        let p = self.by_inode.get(&ino)?;
        let same_path = p.path == path || p.real.as_deref() == Some(real);
        if !same_path {
            return None;
        }
        self.by_inode.remove(&ino)
    }
}

/// Whether Fluentd could have stopped at `offset` in `file`: within it, and at a line's start.
pub fn fits(file: &File, offset: u64) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if offset == 0 {
        return true;
    }
    if offset > meta.len() {
        return false;
    }
    let mut before = [0u8; 1];
    file.read_exact_at(&mut before, offset - 1).is_ok() && before[0] == b'\n'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_a_path_counts_and_unwatched_files_are_left_out() {
        let text = "/var/log/containers/a.log\t0000000000000010\t0000000000000101\n\
                    /var/log/containers/b.log\tffffffffffffffff\t0000000000000102\n\
                    /var/log/containers/a.log\t00000000000000ff\t0000000000000101\n\
                    not a position line\n\
                    /var/log/containers/c.log\t00000000000003e8\t0000000000000103\n\
                    /var/log/containers/d.log\tzz\t0000000000000104\n";
        let (p, skipped) = Positions::parse(text);
        assert_eq!(skipped, Some((4, 2)), "the first bad line and how many");
        assert_eq!(p.len(), 2);
        assert_eq!(p.by_inode[&0x101].offset, 0xff, "the last line of a.log");
        assert_eq!(p.by_inode[&0x103].offset, 1000);
        assert!(!p.by_inode.contains_key(&0x102), "unwatched");
    }

    #[test]
    fn follow_inodes_keeps_a_position_per_inode_of_one_path() {
        let text = "/var/log/containers/a.log\t0000000000000010\t0000000000000101\n\
                    /var/log/containers/a.log\t0000000000000020\t0000000000000202\n\
                    /var/log/containers/a.log\t0000000000000030\t0000000000000101\n";
        let (p, _) = Positions::parse(text);
        assert_eq!(p.len(), 2, "the rotated file and the current one");
        assert_eq!(
            p.by_inode[&0x101].offset, 0x30,
            "the last line of that inode"
        );
        assert_eq!(p.by_inode[&0x202].offset, 0x20);
    }

    #[test]
    fn a_position_is_only_for_the_file_fluentd_read_and_only_once() {
        let (mut p, _) = Positions::parse("/logs/a.log\t0000000000000010\t0000000000000101\n");
        assert_eq!(
            p.take(0x101, Path::new("/logs/b.log"), Path::new("/x/b")),
            None
        );
        assert_eq!(
            p.take(0x999, Path::new("/logs/a.log"), Path::new("/x/a")),
            None
        );
        assert_eq!(
            p.take(0x101, Path::new("/logs/a.log"), Path::new("/x/a"))
                .map(|p| p.offset),
            Some(16)
        );
        assert_eq!(
            p.take(0x101, Path::new("/logs/a.log"), Path::new("/x/a")),
            None
        );
    }

    #[test]
    fn a_position_fits_only_at_a_lines_start_within_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one\ntwo\n").unwrap();
        let f = File::open(&path).unwrap();
        for (offset, fits_here) in [(0, true), (4, true), (8, true), (2, false), (9, false)] {
            assert_eq!(fits(&f, offset), fits_here, "{offset}");
        }
    }
}
