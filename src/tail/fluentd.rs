//! Picking up where Fluentd stopped: its `in_tail` `pos_file`, read once on the agent's first
//! start on a node, so that a cut-over from Fluentd neither ships again what Fluentd read nor
//! skips what it had not.
//!
//! Fluentd writes one line per file it watches: `path<TAB>position<TAB>inode`, the position and
//! the inode as 16 hex digits, `ffffffffffffffff` as the position of a file it stopped watching.
//! It appends rather than rewrites, so a path can appear more than once: the last line counts.
//!
//! A position is used only for the very file Fluentd read: the same inode at the same path (or
//! at the path the same symlink leads to), or — the file rotated since — the same inode among
//! the files renamed from it (`0.log.<time>`), read to its end. The position must also make
//! sense in the file: within it, and just after a newline (Fluentd only ever stops at a line's
//! end); otherwise the inode was reused by another file, and that file is read as any file
//! Fluentd never saw, from `read_from`. Every file Fluentd never saw is read from `read_from`.
//! What was imported is logged and counted in `logferry_fluentd_positions_total{outcome}`.

use super::FileKey;
use super::discover::Discoverer;
use super::file::identify;
use super::rotated::find_rotated;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
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
        let mut by_path: HashMap<&str, (u64, u64)> = HashMap::new();
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
                    // The last line of a path counts: Fluentd appends as it goes.
                    by_path.insert(path, (pos, ino));
                }
                _ => skipped = Some(skipped.map_or((i + 1, 1), |(l, n)| (l, n + 1))),
            }
        }
        let by_inode = by_path
            .into_iter()
            .filter(|(_, (pos, _))| *pos != UNWATCHED)
            .map(|(path, (offset, ino))| {
                let path = PathBuf::from(path);
                let real = std::fs::canonicalize(&path).ok();
                (ino, Position { path, real, offset })
            })
            .collect();
        (Positions { by_inode }, skipped)
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

impl Discoverer {
    /// The offset Fluentd's pos_file gives the file `key` found at `path`, if it gives one that
    /// fits; counted either way.
    pub(super) fn fluentd_offset(
        &mut self,
        file: &File,
        key: &FileKey,
        path: &Path,
        real: &Path,
    ) -> Option<u64> {
        let p = self.fluentd.as_mut()?.take(key.ino, path, real)?;
        if fits(file, p.offset) {
            self.counted("resumed");
            tracing::info!(path = %path.display(), offset = p.offset, "starting where Fluentd stopped");
            Some(p.offset)
        } else {
            self.counted("refused");
            tracing::warn!(path = %path.display(), offset = p.offset, "Fluentd's position does not fit this file (past its end, or not at a line's start: the inode was reused); reading it as a file Fluentd never saw");
            None
        }
    }

    /// After the first scan: the files of the pos_file not found at their paths were rotated
    /// since Fluentd read them (or are gone). Each is looked for by inode among the files
    /// renamed from its path, and read to its end from Fluentd's position. Only the positions
    /// of files still at a matched path but not opened yet (waiting for a descriptor) are kept,
    /// for when they are; the pos_file itself is never read again.
    pub(super) fn resume_rotated_fluentd_files(&mut self) {
        let Some(positions) = self.fluentd.take() else {
            return;
        };
        let mut waiting = Positions::default();
        let mut legacy = None;
        for (ino, p) in positions.by_inode {
            // Fluentd's path is the one its glob matched: is it ours too?
            if !self.is_ours(Some(&p.path), &p.path, &mut legacy) {
                self.counted("excluded");
                continue;
            }
            // At a matched path still (waiting for its first line, or for a descriptor): not
            // rotated; its position waits for it to be opened.
            if self.looks.values().any(|l| l.ino == ino) {
                waiting.by_inode.insert(ino, p);
                continue;
            }
            let real = p.real.clone().unwrap_or_else(|| p.path.clone());
            self.shared.descriptors.take_anyway();
            let mut later = false;
            let found = find_rotated(&real, &mut later, |file, meta| {
                if meta.ino() != ino || self.shared.follows_inode(meta.dev(), meta.ino()) {
                    return None;
                }
                identify(file, true).ok().flatten()
            });
            match found {
                Some((path, file, key))
                    if fits(&file, p.offset) && !self.shared.is_followed(&key) =>
                {
                    self.counted("rotated");
                    tracing::info!(path = %path.display(), offset = p.offset, "finishing a file Fluentd was reading, rotated since");
                    self.follow_draining(&path, file, key, p.offset);
                }
                Some((path, file, _)) => {
                    self.counted("refused");
                    tracing::warn!(path = %path.display(), offset = p.offset, "Fluentd's position does not fit the rotated file; it is left alone");
                    self.close(file);
                }
                None => {
                    self.shared.descriptors.put_back();
                    self.counted("gone");
                    tracing::info!(path = %p.path.display(), "a file in Fluentd's pos_file is gone");
                }
            }
        }
        self.fluentd = (!waiting.is_empty()).then_some(waiting);
    }

    fn counted(&self, outcome: &'static str) {
        self.metrics
            .fluentd_positions
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }
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
