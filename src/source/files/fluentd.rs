//! Picking up where Fluentd stopped, as discovery does it: the positions of its `pos_file`
//! (read by [`crate::migrate::pos_file`] on the agent's first start on a node) applied to the
//! files found, so that a cut-over from Fluentd neither ships again what Fluentd read nor skips
//! what it had not.
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
use crate::config;
use crate::migrate::pos_file::{Positions, fits};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
        for (ino, p) in positions.into_entries() {
            // Fluentd's path is the one its glob matched: is it ours too?
            if !self.is_ours(Some(&p.path), &p.path, &mut legacy) {
                self.counted("excluded");
                continue;
            }
            // At a matched path still (waiting for its first line, or for a descriptor): not
            // rotated; its position waits for it to be opened.
            if self.looks.values().any(|l| l.ino == ino) {
                waiting.keep(ino, p);
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

/// Fluentd's positions, on the agent's first start on a node when `input.fluentd_pos_file` is
/// set (see [`crate::migrate::pos_file`]); a pos_file that cannot be read leaves every file to `read_from`.
pub(super) fn fluentd_positions(cfg: &config::Input, first_start: bool) -> Option<Positions> {
    let path = cfg.fluentd_pos_file.as_ref()?;
    if !first_start {
        tracing::info!(pos_file = %path.display(), "Fluentd's pos_file is not read: the agent has checkpoints of its own on this node");
        return None;
    }
    match Positions::read(path) {
        Ok(p) => {
            tracing::info!(pos_file = %path.display(), files = p.len(), "first start: files Fluentd was reading start where it stopped");
            Some(p)
        }
        // A node that never ran Fluentd (one added after the cut-over): nothing to say.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(pos_file = %path.display(), "no Fluentd pos_file on this node; files are read from read_from");
            None
        }
        Err(e) => {
            tracing::warn!(pos_file = %path.display(), error = %e, read_from = ?cfg.read_from, "cannot read Fluentd's pos_file; files are read from read_from");
            None
        }
    }
}
